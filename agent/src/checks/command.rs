//! Command checks: a Nagios-plugin-style program says how things are by
//! its exit code (0 ok, 1 warning, 2 critical, 3 unknown) and its first
//! line of output, with performance data after a `|`
//! (`DISK OK - free space: / 3326 MB (56%) | /=2643MB;5948;5958;0;5968`).
//!
//! The program runs without a shell (its `argv` as given), with stdin
//! closed, in a process group of its own. At the timeout the whole group
//! is killed, so a plugin's children (a `sleep`, an `ssh`) go with it; a
//! plugin that exits but leaves a child holding its output open gets its
//! group killed too, a moment later. [`run_program`] is shared with the
//! systemd check, which asks `systemctl` the same way.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use super::{Observation, Perfdatum, Status};

/// `command = { … }` of a `[[checks]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandCheck {
    /// The program and its arguments; the program is an absolute path or
    /// a bare name looked up in PATH.
    pub argv: Vec<String>,
    /// Variables added to the agent's environment for the program.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// Output kept from a program; the rest is read and dropped, so that the
/// program never blocks on a full pipe.
const MAX_STDOUT: usize = 64 << 10;
const MAX_STDERR: usize = 4 << 10;
/// Performance data items kept per run.
const MAX_PERFDATA: usize = 64;
/// How long a program that exited may leave its output open.
const LINGER: Duration = Duration::from_secs(1);
/// How long to wait for a killed process group to be reaped.
const REAP: Duration = Duration::from_secs(2);

impl CommandCheck {
    pub(super) fn compile(&self, key: &str) -> Result<(Probe, String), Vec<String>> {
        let mut problems = Vec::new();
        match self.argv.first() {
            None => problems.push(format!("{key}.argv: give the program and its arguments")),
            Some(program) if program.is_empty() => {
                problems.push(format!("{key}.argv[0]: must not be empty"))
            }
            Some(program) if program.contains('/') && !Path::new(program).is_absolute() => {
                problems.push(format!(
                    "{key}.argv[0]: {program:?} is relative; give an absolute path or a bare name found in PATH"
                ))
            }
            Some(_) => {}
        }
        for name in self.env.keys() {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                problems.push(format!("{key}.env.{name}: not a variable name"));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let target = self.argv[0].clone();
        Ok((
            Probe {
                argv: self.argv.clone(),
                env: self.env.clone(),
            },
            target,
        ))
    }
}

#[derive(Debug)]
pub(super) struct Probe {
    argv: Vec<String>,
    env: BTreeMap<String, String>,
}

impl Probe {
    pub(super) async fn run(&self, timeout: Duration) -> Observation {
        let ran = run_program(&self.argv, &self.env, timeout).await;
        judge(&ran, timeout)
    }
}

/// How a program ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ending {
    Exited(i32),
    Signalled(i32),
    /// Still running at the timeout; its process group was killed.
    TimedOut,
    /// It could not be started (not found, not executable).
    NotStarted(String),
}

/// What a program said and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ran {
    pub ending: Ending,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Runs `argv` in its own process group, without a shell, for at most
/// `timeout`.
pub(crate) async fn run_program(
    argv: &[String],
    env: &BTreeMap<String, String>,
    timeout: Duration,
) -> Ran {
    let deadline = Instant::now() + timeout;
    let not_started = |e: String| Ran {
        ending: Ending::NotStarted(e),
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    let Some((program, args)) = argv.split_first() else {
        return not_started("no program given".into());
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match spawn(&mut command).await {
        Ok(child) => child,
        Err(e) => return not_started(format!("cannot run {program}: {e}")),
    };
    // With process_group(0) the group id is the child's pid.
    let group = child.id().and_then(|id| i32::try_from(id).ok());
    let stdout = tokio::spawn(read_capped(child.stdout.take(), MAX_STDOUT));
    let stderr = tokio::spawn(read_capped(child.stderr.take(), MAX_STDERR));
    let ending = match tokio::time::timeout_at(deadline, child.wait()).await {
        Ok(Ok(status)) => ending_of(status),
        Ok(Err(e)) => Ending::NotStarted(format!("cannot wait for {program}: {e}")),
        Err(_) => {
            kill_group(group);
            let _ = tokio::time::timeout(REAP, child.wait()).await;
            Ending::TimedOut
        }
    };
    // Output ends when the last process holding the pipes lets go. A
    // plugin's leftover child may hold them past its parent's exit: give
    // it a moment, then end the group.
    let linger = Instant::now() + LINGER.min(deadline.saturating_duration_since(Instant::now()));
    let mut outputs = [stdout, stderr];
    let mut texts = [Vec::new(), Vec::new()];
    for (task, text) in outputs.iter_mut().zip(texts.iter_mut()) {
        match tokio::time::timeout_at(linger, &mut *task).await {
            Ok(Ok(bytes)) => *text = bytes,
            Ok(Err(_)) => {}
            Err(_) => {
                kill_group(group);
                if let Ok(Ok(bytes)) = tokio::time::timeout(REAP, &mut *task).await {
                    *text = bytes;
                } else {
                    task.abort();
                }
            }
        }
    }
    let [stdout, stderr] = texts;
    Ran {
        ending,
        stdout,
        stderr,
    }
}

/// Spawns, retrying a moment later while the program file is still open
/// for writing somewhere (ETXTBSY: a plugin being replaced, or another
/// thread's fork holding a just-written script).
async fn spawn(command: &mut tokio::process::Command) -> std::io::Result<tokio::process::Child> {
    let busy = rustix::io::Errno::TXTBSY.raw_os_error();
    let mut tries = 0;
    loop {
        match command.spawn() {
            Err(e) if e.raw_os_error() == Some(busy) && tries < 5 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

fn ending_of(status: std::process::ExitStatus) -> Ending {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Ending::Exited(code),
        (None, Some(signal)) => Ending::Signalled(signal),
        (None, None) => Ending::Exited(-1),
    }
}

/// Sends SIGKILL to a whole process group.
fn kill_group(group: Option<i32>) {
    if let Some(pid) = group.and_then(rustix::process::Pid::from_raw) {
        // ESRCH (already gone) is the usual answer and is fine.
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// Reads a pipe to its end, keeping the first `max` bytes.
async fn read_capped<R: AsyncRead + Unpin>(pipe: Option<R>, max: usize) -> Vec<u8> {
    let Some(mut pipe) = pipe else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = max.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// The plugin's verdict from its exit and output.
fn judge(ran: &Ran, timeout: Duration) -> Observation {
    let output = PluginOutput::parse(&ran.stdout);
    let stderr_line = || super::printable(first_line(&ran.stderr), 200);
    let (status, message) = match &ran.ending {
        Ending::Exited(code @ 0..=3) => {
            let status = Status::ALL[*code as usize];
            let message = if output.message.is_empty() {
                let err = stderr_line();
                if err.is_empty() {
                    "(no output)".to_owned()
                } else {
                    err
                }
            } else {
                output.message.clone()
            };
            (status, message)
        }
        Ending::Exited(code) => (
            Status::Unknown,
            with_detail(format!("exited with status {code}"), &stderr_line()),
        ),
        Ending::Signalled(signal) => (
            Status::Unknown,
            with_detail(format!("killed by signal {signal}"), &stderr_line()),
        ),
        Ending::TimedOut => (
            Status::Unknown,
            format!(
                "no verdict within {}; its process group was killed",
                super::human(timeout)
            ),
        ),
        Ending::NotStarted(e) => (Status::Unknown, e.clone()),
    };
    let mut observation = Observation::new(status, message);
    observation.details.perfdata = output.perfdata;
    observation
}

fn with_detail(head: String, detail: &str) -> String {
    if detail.is_empty() {
        head
    } else {
        format!("{head}: {detail}")
    }
}

fn first_line(bytes: &[u8]) -> &[u8] {
    bytes.split(|b| *b == b'\n').next().unwrap_or(&[])
}

/// A plugin's output split as Nagios reads it: the first line's text, and
/// the performance data after `|` on the first line and after the first
/// `|` in the long output that follows.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct PluginOutput {
    pub message: String,
    pub perfdata: Vec<Perfdatum>,
}

impl PluginOutput {
    pub(crate) fn parse(stdout: &[u8]) -> PluginOutput {
        let text = String::from_utf8_lossy(stdout);
        let mut lines = text.lines();
        let first = lines.next().unwrap_or("");
        let (message, mut perf) = match first.split_once('|') {
            Some((m, p)) => (m, p.to_owned()),
            None => (first, String::new()),
        };
        let mut in_perf = false;
        for line in lines {
            if in_perf {
                perf.push(' ');
                perf.push_str(line);
            } else if let Some((_, p)) = line.split_once('|') {
                in_perf = true;
                perf.push(' ');
                perf.push_str(p);
            }
        }
        PluginOutput {
            message: super::printable(message.as_bytes(), 500),
            perfdata: parse_perfdata(&perf),
        }
    }
}

/// `'label'=value[UOM];[warn];[crit];[min];[max]` items, separated by
/// spaces; a label with spaces is quoted, with `''` for a quote. Items
/// that do not parse, and `U` (undetermined) values, are skipped.
pub(crate) fn parse_perfdata(text: &str) -> Vec<Perfdatum> {
    let mut out = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() && out.len() < MAX_PERFDATA {
        let (label, after) = match take_label(rest) {
            Some(pair) => pair,
            None => break,
        };
        let end = after.find(char::is_whitespace).unwrap_or(after.len());
        let (item, next) = after.split_at(end);
        rest = next.trim_start();
        let label = super::printable(label.as_bytes(), 128);
        if label.is_empty() {
            continue;
        }
        if let Some(value) = item.split(';').next().and_then(parse_value) {
            out.push(Perfdatum { label, value });
        }
    }
    out
}

/// The label and what follows its `=`, or none when the text is broken
/// (an unclosed quote, no `=`).
fn take_label(text: &str) -> Option<(String, &str)> {
    if let Some(quoted) = text.strip_prefix('\'') {
        let mut label = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            if c != '\'' {
                label.push(c);
                continue;
            }
            if quoted[i + 1..].starts_with('\'') {
                label.push('\'');
                chars.next();
                continue;
            }
            let after = quoted[i + 1..].strip_prefix('=')?;
            return Some((label, after));
        }
        None
    } else {
        let eq = text.find('=')?;
        let label = &text[..eq];
        if label.contains(char::is_whitespace) {
            // "garbage label=1": drop the garbage, keep the item.
            let word = label.rsplit(char::is_whitespace).next().unwrap_or("");
            return Some((word.to_owned(), &text[eq + 1..]));
        }
        Some((label.to_owned(), &text[eq + 1..]))
    }
}

/// A number with its unit of measure, in base units.
fn parse_value(text: &str) -> Option<f64> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | ',' | '-' | '+')))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    // Some plugins print a decimal comma in their locale.
    let value: f64 = number.replace(',', ".").parse().ok()?;
    let factor = match unit {
        "" | "s" | "%" | "c" | "B" => 1.0,
        "ms" => 1e-3,
        "us" => 1e-6,
        "ns" => 1e-9,
        // The plugins' guidelines leave the base open; check_disk and
        // check_swap mean powers of 1024, and so do we.
        "KB" | "kB" | "KiB" => 1024.0,
        "MB" | "MiB" => 1024.0 * 1024.0,
        "GB" | "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TB" | "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => 1.0,
    };
    let value = value * factor;
    value.is_finite().then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perf(items: &[(&str, f64)]) -> Vec<Perfdatum> {
        items
            .iter()
            .map(|(l, v)| Perfdatum {
                label: (*l).to_owned(),
                value: *v,
            })
            .collect()
    }

    #[test]
    fn first_line_is_the_message_and_perfdata_follows_the_bar() {
        let out = PluginOutput::parse(
            b"DISK OK - free space: / 3326 MB (56%) | /=2643MB;5948;5958;0;5968\n/ 15272 MB (77%);\n/boot 68 MB (69%);\n| /boot=68MB;88;93;0;98\n/home=69357MB;253404;253409;0;253414\n",
        );
        assert_eq!(out.message, "DISK OK - free space: / 3326 MB (56%)");
        assert_eq!(
            out.perfdata,
            perf(&[
                ("/", 2643.0 * 1048576.0),
                ("/boot", 68.0 * 1048576.0),
                ("/home", 69357.0 * 1048576.0),
            ])
        );
    }

    #[test]
    fn perfdata_units_quotes_and_garbage() {
        assert_eq!(
            parse_perfdata(
                "time=0.0123s;1;2;0 'used mem'=42%;80;90 'it''s'=5 size=2KB rtt=150ms hits=10c"
            ),
            perf(&[
                ("time", 0.0123),
                ("used mem", 42.0),
                ("it's", 5.0),
                ("size", 2048.0),
                ("rtt", 0.15),
                ("hits", 10.0),
            ])
        );
        assert_eq!(parse_perfdata("load1=U;1;2 x=1,5"), perf(&[("x", 1.5)]));
        assert_eq!(parse_perfdata("'unclosed=1"), Vec::new());
        assert_eq!(parse_perfdata("no equals sign"), Vec::new());
        assert_eq!(parse_perfdata("=3 a=nan b=-"), Vec::new());
        assert_eq!(parse_perfdata("junk a=1"), perf(&[("a", 1.0)]));
    }

    #[test]
    fn perfdata_is_bounded() {
        let many: String = (0..500).map(|i| format!("m{i}=1 ")).collect();
        assert_eq!(parse_perfdata(&many).len(), MAX_PERFDATA);
    }

    #[test]
    fn exit_codes_map_to_statuses() {
        let ran = |ending, stdout: &[u8]| Ran {
            ending,
            stdout: stdout.to_vec(),
            stderr: b"oops\nmore".to_vec(),
        };
        let t = Duration::from_secs(3);
        for (code, status) in [
            (0, Status::Ok),
            (1, Status::Warning),
            (2, Status::Critical),
            (3, Status::Unknown),
        ] {
            let seen = judge(&ran(Ending::Exited(code), b"LOAD fine|load1=0.5"), t);
            assert_eq!(seen.status, status);
            assert_eq!(seen.message, "LOAD fine");
            assert_eq!(seen.details.perfdata, perf(&[("load1", 0.5)]));
        }
        let seen = judge(&ran(Ending::Exited(127), b""), t);
        assert_eq!(seen.status, Status::Unknown);
        assert_eq!(seen.message, "exited with status 127: oops");
        let seen = judge(&ran(Ending::Exited(0), b""), t);
        assert_eq!(seen.message, "oops");
        let seen = judge(&ran(Ending::Signalled(9), b""), t);
        assert_eq!(seen.message, "killed by signal 9: oops");
        let seen = judge(&ran(Ending::TimedOut, b""), t);
        assert_eq!(seen.status, Status::Unknown);
        assert!(seen.message.contains("within 3s"), "{seen:?}");
    }

    #[test]
    fn argv_must_name_a_program() {
        let check = |argv: &[&str]| CommandCheck {
            argv: argv.iter().map(|a| (*a).to_owned()).collect(),
            env: BTreeMap::new(),
        };
        assert!(check(&[]).compile("c").is_err());
        assert!(check(&["./plugin"]).compile("c").is_err());
        assert!(check(&["check_load", "-w", "5"]).compile("c").is_ok());
        let (_, target) = check(&["/usr/lib/nagios/plugins/check_load"])
            .compile("c")
            .unwrap();
        assert_eq!(target, "/usr/lib/nagios/plugins/check_load");
    }

    #[tokio::test]
    async fn a_missing_program_is_unknown_not_a_panic() {
        let ran = run_program(
            &["/nonexistent/patrol-plugin".into()],
            &BTreeMap::new(),
            Duration::from_secs(5),
        )
        .await;
        assert!(matches!(ran.ending, Ending::NotStarted(_)), "{ran:?}");
    }

    proptest::proptest! {
        #[test]
        fn plugin_output_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let out = PluginOutput::parse(&bytes);
            proptest::prop_assert!(out.perfdata.len() <= MAX_PERFDATA);
        }

        #[test]
        fn perfdata_never_panics(text in "[ 'a-z=;0-9.,%|UKMBs-]{0,200}") {
            let _ = parse_perfdata(&text);
        }
    }
}
