//! Process checks: how many processes match a name or a command-line
//! pattern, and together how much memory and CPU time they use, read from
//! procfs (`Env::proc_path`, so tests can use a fixture tree).
//!
//! A name matches the way `pgrep -x` and `pidof` both do: the kernel's
//! process name (`comm`, cut to 15 bytes) or the base name of `argv[0]`.
//! A pattern is a regex searched in the command line, its arguments joined
//! by spaces (`pgrep -f`); a kernel thread, which has no command line, is
//! matched by its name in brackets, as `ps` shows it.

use std::path::Path;
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::{Env, Observation, ProcessFigures};

/// `process = { … }` of a `[[checks]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessCheck {
    /// The process name (`nginx`, `mysqld`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A regex searched in the whole command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Fewer matching processes than this is down.
    #[serde(default = "one")]
    pub min_count: u64,
    /// More matching processes than this is down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_count: Option<u64>,
}

fn one() -> u64 {
    1
}

/// The kernel keeps 15 bytes of a process name.
const COMM_LEN: usize = 15;
/// Command lines are read up to this many bytes.
const MAX_CMDLINE: u64 = 64 << 10;

impl ProcessCheck {
    pub fn by_name(name: &str) -> ProcessCheck {
        ProcessCheck {
            name: Some(name.to_owned()),
            pattern: None,
            min_count: 1,
            max_count: None,
        }
    }

    pub(super) fn compile(&self, key: &str) -> Result<(Probe, String), Vec<String>> {
        let mut problems = Vec::new();
        if self.name.is_none() && self.pattern.is_none() {
            problems.push(format!("{key}: give a name, a pattern, or both"));
        }
        if let Some(name) = &self.name {
            if name.is_empty() || name.contains('/') {
                problems.push(format!(
                    "{key}.name: {name:?} is not a process name (use pattern for paths)"
                ));
            }
        }
        let pattern = match self.pattern.as_deref().map(Regex::new).transpose() {
            Ok(p) => p,
            Err(e) => {
                problems.push(format!("{key}.pattern: not a regex: {e}"));
                None
            }
        };
        if let Some(max) = self.max_count {
            if max < self.min_count {
                problems.push(format!(
                    "{key}.max_count: {max} is below min_count ({})",
                    self.min_count
                ));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let target = match (&self.name, &self.pattern) {
            (Some(n), Some(p)) => format!("{n} /{p}/"),
            (Some(n), None) => n.clone(),
            (None, Some(p)) => format!("/{p}/"),
            (None, None) => String::new(),
        };
        Ok((
            Probe {
                name: self.name.clone(),
                pattern,
                min_count: self.min_count,
                max_count: self.max_count,
            },
            target,
        ))
    }
}

#[derive(Debug)]
pub(super) struct Probe {
    name: Option<String>,
    pattern: Option<Regex>,
    min_count: u64,
    max_count: Option<u64>,
}

/// What procfs says about one process.
#[derive(Debug, Clone, PartialEq)]
struct ProcessInfo {
    comm: String,
    /// Arguments; empty for kernel threads.
    args: Vec<String>,
    /// User plus system CPU time, in clock ticks.
    cpu_ticks: u64,
    /// Resident pages.
    rss_pages: u64,
}

impl Probe {
    pub(super) async fn run(&self, env: &Env, timeout: Duration) -> Observation {
        let matcher = Matcher {
            name: self.name.clone(),
            pattern: self.pattern.clone(),
        };
        let proc_path = env.proc_path.clone();
        let exclude = env.exclude_pid;
        // A /proc walk blocks on the file system: keep it off the async
        // threads, and stop waiting for it at the timeout.
        let walk = tokio::task::spawn_blocking(move || scan(&proc_path, exclude, &matcher));
        let figures = match tokio::time::timeout(timeout, walk).await {
            Ok(Ok(Ok(figures))) => figures,
            Ok(Ok(Err(e))) => return Observation::unknown(e),
            Ok(Err(e)) => return Observation::unknown(format!("process scan failed: {e}")),
            Err(_) => {
                return Observation::unknown(format!(
                    "process scan took longer than {}",
                    super::human(timeout)
                ))
            }
        };
        self.judge(figures)
    }

    fn judge(&self, figures: ProcessFigures) -> Observation {
        let n = figures.count;
        let mut observation = if n < self.min_count {
            if n == 0 {
                Observation::critical("no process matches")
            } else {
                Observation::critical(format!(
                    "{n} processes match, at least {} expected",
                    self.min_count
                ))
            }
        } else if self.max_count.is_some_and(|max| n > max) {
            Observation::critical(format!(
                "{n} processes match, at most {} expected",
                self.max_count.unwrap_or(n)
            ))
        } else {
            Observation::ok(format!(
                "{n} process{} match, {:.1} MiB resident",
                if n == 1 { "" } else { "es" },
                figures.resident_bytes / f64::from(1u32 << 20)
            ))
        };
        observation.details.process = Some(figures);
        observation
    }
}

#[derive(Debug, Clone)]
struct Matcher {
    name: Option<String>,
    pattern: Option<Regex>,
}

impl Matcher {
    fn matches(&self, p: &ProcessInfo) -> bool {
        if let Some(name) = &self.name {
            let comm_match = p.comm == *name
                || (name.len() > COMM_LEN
                    && name.as_bytes().get(..COMM_LEN) == Some(p.comm.as_bytes()));
            let argv0_match = p
                .args
                .first()
                .and_then(|a| Path::new(a).file_name())
                .is_some_and(|base| base == name.as_str());
            if !comm_match && !argv0_match {
                return false;
            }
        }
        if let Some(pattern) = &self.pattern {
            let line = if p.args.is_empty() {
                format!("[{}]", p.comm)
            } else {
                p.args.join(" ")
            };
            if !pattern.is_match(&line) {
                return false;
            }
        }
        true
    }
}

/// Counts and sums the matching processes under `proc_path`.
fn scan(
    proc_path: &Path,
    exclude: Option<u32>,
    matcher: &Matcher,
) -> Result<ProcessFigures, String> {
    let entries = std::fs::read_dir(proc_path)
        .map_err(|e| format!("cannot list {}: {e}", proc_path.display()))?;
    let ticks = rustix::param::clock_ticks_per_second().max(1) as f64;
    let page = rustix::param::page_size() as f64;
    let mut figures = ProcessFigures::default();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if Some(pid) == exclude {
            continue;
        }
        // A process may end between the listing and the read: skip it.
        let Some(info) = read_process(&entry.path()) else {
            continue;
        };
        if matcher.matches(&info) {
            figures.count += 1;
            figures.resident_bytes += info.rss_pages as f64 * page;
            figures.cpu_seconds += info.cpu_ticks as f64 / ticks;
        }
    }
    Ok(figures)
}

fn read_process(dir: &Path) -> Option<ProcessInfo> {
    use std::io::Read;
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let (comm, cpu_ticks, rss_pages) = parse_stat(&stat)?;
    let mut cmdline = Vec::new();
    if let Ok(file) = std::fs::File::open(dir.join("cmdline")) {
        let _ = file.take(MAX_CMDLINE).read_to_end(&mut cmdline);
    }
    Some(ProcessInfo {
        comm,
        args: parse_cmdline(&cmdline),
        cpu_ticks,
        rss_pages,
    })
}

/// Name, utime + stime and rss from `/proc/PID/stat`. The name sits in
/// parentheses and may itself hold spaces and parentheses, so the fields
/// are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<(String, u64, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // Whole-line fields 14 (utime), 15 (stime) and 24 (rss) are 11, 12
    // and 21 after the name.
    let number = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let cpu = number(11)?.saturating_add(number(12)?);
    let rss = number(21).unwrap_or(0);
    Some((comm, cpu, rss))
}

/// NUL-separated arguments; a trailing NUL ends the last one.
fn parse_cmdline(bytes: &[u8]) -> Vec<String> {
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(comm: &str, args: &[&str]) -> ProcessInfo {
        ProcessInfo {
            comm: comm.into(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            cpu_ticks: 0,
            rss_pages: 0,
        }
    }

    fn matcher(name: Option<&str>, pattern: Option<&str>) -> Matcher {
        Matcher {
            name: name.map(str::to_owned),
            pattern: pattern.map(|p| Regex::new(p).unwrap()),
        }
    }

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 4 0 100 123456789 2048 18446744073709551615";
        assert_eq!(parse_stat(line), Some(("my (odd) name".into(), 300, 2048)));
        assert_eq!(parse_stat("12 (x"), None);
        assert_eq!(parse_stat(")("), None);
        assert_eq!(parse_stat("1 (a) S"), None);
    }

    #[test]
    fn names_match_comm_argv0_and_truncated_comm() {
        let nginx = info("nginx", &["nginx: worker process"]);
        assert!(matcher(Some("nginx"), None).matches(&nginx));
        let java = info("java", &["/usr/lib/jvm/bin/java", "-jar", "app.jar"]);
        assert!(matcher(Some("java"), None).matches(&java));
        assert!(!matcher(Some("jav"), None).matches(&java));
        let long = info("postgres-export", &[]);
        assert!(matcher(Some("postgres-exporter"), None).matches(&long));
        let renamed = info("python3", &["/opt/app/bin/gunicorn", "app:wsgi"]);
        assert!(matcher(Some("gunicorn"), None).matches(&renamed));
    }

    #[test]
    fn patterns_search_the_command_line_or_a_kernel_threads_name() {
        let java = info("java", &["/usr/bin/java", "-jar", "/srv/training/app.jar"]);
        assert!(matcher(None, Some(r"training/app\.jar")).matches(&java));
        assert!(!matcher(None, Some("evaluation")).matches(&java));
        assert!(matcher(Some("java"), Some("-jar")).matches(&java));
        assert!(!matcher(Some("python3"), Some("-jar")).matches(&java));
        let kthread = info("kworker/0:1", &[]);
        assert!(matcher(None, Some(r"^\[kworker")).matches(&kthread));
    }

    #[test]
    fn cmdline_splits_on_nul() {
        assert_eq!(parse_cmdline(b"a\0b c\0"), vec!["a", "b c"]);
        assert_eq!(parse_cmdline(b""), Vec::<String>::new());
        assert_eq!(parse_cmdline(b"\0"), Vec::<String>::new());
        assert_eq!(parse_cmdline(b"x\xff"), vec!["x\u{fffd}"]);
    }

    #[test]
    fn counts_outside_the_bounds_are_down() {
        let (probe, _) = ProcessCheck {
            min_count: 2,
            max_count: Some(3),
            ..ProcessCheck::by_name("nginx")
        }
        .compile("p")
        .unwrap();
        let with = |count| ProcessFigures {
            count,
            ..ProcessFigures::default()
        };
        assert_eq!(probe.judge(with(0)).status, super::super::Status::Critical);
        assert_eq!(probe.judge(with(1)).status, super::super::Status::Critical);
        assert_eq!(probe.judge(with(2)).status, super::super::Status::Ok);
        assert_eq!(probe.judge(with(4)).status, super::super::Status::Critical);
    }

    #[test]
    fn config_problems_are_reported() {
        let bad = ProcessCheck {
            name: None,
            pattern: Some("(".into()),
            min_count: 3,
            max_count: Some(1),
        };
        let problems = bad.compile("checks[0].process").unwrap_err().join("\n");
        assert!(problems.contains("checks[0].process.pattern"), "{problems}");
        assert!(
            problems.contains("checks[0].process.max_count"),
            "{problems}"
        );
    }
}
