//! Audit (安全审计): the audit daemon and its rules, system logging, how
//! long logs are kept (180 days: the Cybersecurity Law's minimum), who may
//! read them, whether they leave the host, and whether the clock that
//! stamps them is synchronised.

use super::login_defs::line_number;
use super::logrotate::{self, Logrotate};
use super::systemd::{self, timespan, UnitConf};
use super::{BaselineError, Check, Context, Evidence, Outcome, Severity};

pub(super) const CHECKS: &[Check] = &[
    Check {
        id: "AUD-001",
        title: "audit daemon running",
        severity: Severity::High,
        remediation: "Install and start auditd (`apt install auditd` or `dnf install audit`; `systemctl enable --now auditd`).",
        run: auditd_running,
    },
    Check {
        id: "AUD-002",
        title: "audit rules cover identity and privilege changes",
        severity: Severity::Medium,
        remediation: "Add /etc/audit/rules.d/50-identity.rules with `-w /etc/passwd -p wa -k identity`, the same for /etc/shadow, /etc/group and /etc/sudoers (and /etc/sudoers.d), and `-a always,exit -F arch=b64 -S execve -F euid=0 -F auid>=1000 -F auid!=unset -k privileged`; then `augenrules --load`.",
        run: audit_rules,
    },
    Check {
        id: "AUD-003",
        title: "system logging running",
        severity: Severity::High,
        remediation: "Start rsyslog or systemd-journald (`systemctl enable --now rsyslog`).",
        run: logging_running,
    },
    Check {
        id: "AUD-004",
        title: "logs kept ≥ 180 days",
        severity: Severity::Medium,
        remediation: "In /etc/logrotate.d/rsyslog (or syslog) keep at least 180 days: `weekly` with `rotate 26`, or `monthly` with `rotate 6`; for journald alone set `MaxRetentionSec=180d` and `Storage=persistent` in /etc/systemd/journald.conf.",
        run: log_retention,
    },
    Check {
        id: "AUD-005",
        title: "log file permissions",
        severity: Severity::Medium,
        remediation: "`chmod o-rwx /var/log/auth.log /var/log/syslog` (secure, messages on the RHEL family) and keep them owned by root or syslog; set `$FileCreateMode 0640` in rsyslog.conf.",
        run: log_permissions,
    },
    Check {
        id: "AUD-006",
        title: "remote log forwarding",
        severity: Severity::Low,
        remediation: "Forward logs to the central log server: add `*.* @@LOGHOST:514` (TCP) to /etc/rsyslog.d/90-forward.conf, or configure systemd-journal-upload.",
        run: remote_logging,
    },
    Check {
        id: "AUD-007",
        title: "time synchronisation",
        severity: Severity::Medium,
        remediation: "Enable a time service with the site's NTP servers: chrony (`server NTP iburst` in chrony.conf, `systemctl enable --now chronyd`) or systemd-timesyncd.",
        run: time_sync,
    },
];

/// The inspected host is a container, where auditd cannot run.
fn in_container(cx: &Context<'_>) -> Option<String> {
    for marker in [".dockerenv", "run/.containerenv"] {
        if cx.tree.exists(marker) {
            return Some(format!("{} exists", cx.tree.show(marker)));
        }
    }
    let environ = cx.tree.read_bytes("proc/1/environ", 64 * 1024).ok()??;
    environ
        .split(|&b| b == 0)
        .find(|v| v.starts_with(b"container="))
        .map(|v| format!("PID 1 runs with {}", String::from_utf8_lossy(v)))
}

fn auditd_running(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    if let Some(why) = in_container(cx) {
        return Ok(Outcome::not_applicable(format!(
            "a container ({why}): auditing is the host's job"
        )));
    }
    if cx.processes().is_none() {
        return Ok(Outcome::not_applicable(cx.no_process_table()));
    }
    Ok(match cx.running(&["auditd"]) {
        Some(p) => Outcome::pass(vec![Evidence::note(format!("auditd[{}] running", p.pid))]),
        None => Outcome::fail(vec![Evidence::note("no auditd process")]),
    })
}

/// One audit rule's watch: a path, whether it covers writes, whether it
/// watches program execution.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Watch {
    path: Option<String>,
    write: bool,
    exec: bool,
    /// An execve syscall rule.
    execve: bool,
}

/// Reads `-w PATH -p PERMS` and `-a … -F path=|dir= -F perm= -S execve`.
fn parse_rule(line: &str) -> Option<Watch> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut path = None;
    let mut perms: Option<&str> = None;
    let mut execve = false;
    let mut syscall_rule = false;
    let mut i = 0;
    while i < words.len() {
        let next = words.get(i + 1).copied();
        match words[i] {
            "-w" => path = next,
            "-p" => perms = next,
            "-a" | "-A" => syscall_rule = true,
            "-S" => {
                execve |= next.is_some_and(|s| s.split(',').any(|s| s == "execve" || s == "59"))
            }
            "-F" => {
                if let Some((key, value)) = next.and_then(|f| f.split_once('=')) {
                    match key {
                        "path" | "dir" => path = Some(value),
                        "perm" => perms = Some(value),
                        _ => {}
                    }
                }
            }
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    if path.is_none() && !execve {
        return None;
    }
    // A watch without -p covers every kind of access.
    let perms = perms.unwrap_or(if syscall_rule && path.is_some() {
        ""
    } else {
        "rwxa"
    });
    Some(Watch {
        path: path.map(|p| p.trim_end_matches('/').to_owned()),
        write: perms.contains('w'),
        exec: perms.contains('x'),
        execve,
    })
}

/// What AUD-002 wants watched for writes.
const IDENTITY_FILES: &[&str] = &["/etc/passwd", "/etc/shadow", "/etc/group", "/etc/sudoers"];

fn covers(watch: &Watch, file: &str) -> bool {
    watch.write
        && watch
            .path
            .as_deref()
            .is_some_and(|p| p == file || file.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
}

fn audit_rules(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let mut files = cx.tree.list_suffixed("etc/audit/rules.d", ".rules")?;
    files.push("etc/audit/audit.rules".to_owned());
    let mut rules: Vec<(Watch, Evidence)> = Vec::new();
    let mut read_any = false;
    for rel in &files {
        let Some(text) = cx.tree.read(rel)? else {
            continue;
        };
        read_any = true;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.starts_with('#') {
                continue;
            }
            if let Some(w) = parse_rule(line) {
                rules.push((
                    w,
                    Evidence::at(cx.tree.show(rel), line_number(i), line.to_owned()),
                ));
            }
        }
    }
    if !read_any {
        return Ok(Outcome::fail(vec![Evidence::note(
            "no /etc/audit/rules.d/*.rules or /etc/audit/audit.rules",
        )]));
    }
    let mut evidence = Vec::new();
    let mut missing = Vec::new();
    for file in IDENTITY_FILES {
        match rules.iter().find(|(w, _)| covers(w, file)) {
            Some((_, e)) => evidence.push(e.clone()),
            None => missing.push(format!("writes to {file}")),
        }
    }
    let privileged = rules.iter().find(|(w, _)| {
        w.execve
            || (w.exec
                && w.path.as_deref().is_some_and(|p| {
                    ["/usr/bin/", "/usr/sbin/", "/bin/", "/sbin/"]
                        .iter()
                        .any(|d| p.starts_with(d))
                }))
    });
    match privileged {
        Some((_, e)) => evidence.push(e.clone()),
        None => missing.push("execution of privileged commands".to_owned()),
    }
    evidence.dedup();
    if missing.is_empty() {
        return Ok(Outcome::pass(evidence));
    }
    evidence.push(Evidence::note(format!(
        "not audited: {}",
        missing.join(", ")
    )));
    Ok(Outcome::fail(evidence))
}

fn logging_running(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    if cx.processes().is_none() {
        return Ok(Outcome::not_applicable(cx.no_process_table()));
    }
    let daemons = ["rsyslogd", "systemd-journald", "syslog-ng", "syslogd"];
    let running: Vec<Evidence> = cx
        .processes()
        .unwrap_or_default()
        .iter()
        .filter(|p| {
            daemons
                .iter()
                .any(|d| super::procfs::is_program(&p.comm, d))
        })
        .map(|p| Evidence::note(format!("{}[{}] running", p.comm, p.pid)))
        .collect();
    Ok(if running.is_empty() {
        Outcome::fail(vec![Evidence::note(
            "no rsyslogd, systemd-journald, syslog-ng or syslogd process",
        )])
    } else {
        Outcome::pass(running)
    })
}

/// The system logs whose rotation decides retention.
const SYSTEM_LOGS: &[&str] = &[
    "/var/log/syslog",
    "/var/log/messages",
    "/var/log/auth.log",
    "/var/log/secure",
];
const RETENTION_DAYS: u64 = 180;

fn log_retention(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let rotate = Logrotate::load(&cx.tree)?;
    if let Some(block) = rotate
        .as_ref()
        .and_then(|r| SYSTEM_LOGS.iter().find_map(|log| r.block_for(log)))
    {
        let days = block.retention.days();
        let mut evidence = vec![block.evidence.clone()];
        evidence.extend(block.retention.evidence());
        evidence.push(Evidence::note(match days {
            Some(u64::MAX) => "rotated logs kept without limit".to_owned(),
            Some(d) => format!("rotated logs kept {d} days"),
            None => "no rotation period: retention unknown".to_owned(),
        }));
        return Ok(Outcome::judge(
            days.is_some_and(|d| d >= RETENTION_DAYS),
            evidence,
        ));
    }
    let journald = UnitConf::load(&cx.tree, "etc/systemd/journald.conf", "Journal")?;
    let mut evidence = Vec::new();
    if rotate.is_some() {
        evidence.push(Evidence::file(
            cx.tree.show(logrotate::MAIN),
            "no rotation block for /var/log/syslog, messages, auth.log or secure",
        ));
    }
    let kept = journald.get("MaxRetentionSec").map(|(v, e)| {
        evidence.push(e.clone());
        timespan(v).unwrap_or(0)
    });
    let persistent = match journald.get("Storage") {
        Some((v, e)) => {
            evidence.push(e.clone());
            v == "persistent" || (v == "auto" && cx.tree.exists("var/log/journal"))
        }
        None => cx.tree.exists("var/log/journal"),
    };
    if kept.is_none() {
        evidence.push(Evidence::note(
            "journald MaxRetentionSec not set: kept only as long as the size limits allow",
        ));
    }
    let ok = persistent && kept.is_some_and(|s| s >= RETENTION_DAYS * 86_400);
    Ok(Outcome::judge(ok, evidence))
}

fn log_permissions(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let syslog_uid = cx
        .passwd()?
        .and_then(|p| p.by_name("syslog"))
        .map(|u| u.uid);
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for rel in [
        "var/log/auth.log",
        "var/log/secure",
        "var/log/syslog",
        "var/log/messages",
    ] {
        let Some(stat) = cx.tree.stat(rel)? else {
            continue;
        };
        let owner_ok = stat.uid == 0 || Some(stat.uid) == syslog_uid;
        let e = stat.evidence(cx.tree.show(rel));
        if owner_ok && stat.mode & 0o007 == 0 {
            good.push(e);
        } else {
            bad.push(e);
        }
    }
    Ok(match (good.is_empty(), bad.is_empty()) {
        (true, true) => Outcome::not_applicable(
            "no /var/log/auth.log, secure, syslog or messages (logs only in the journal)",
        ),
        (_, true) => Outcome::pass(good),
        _ => Outcome::fail(bad),
    })
}

/// Forwarding targets in one rsyslog file: legacy `@host`/`@@host`
/// actions and `omfwd` actions, with the files it includes.
fn rsyslog_targets(text: &str, file: &str) -> (Vec<Evidence>, Vec<String>) {
    let mut targets = Vec::new();
    let mut includes = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"$IncludeConfig") {
            includes.extend(words.get(1).map(|p| (*p).to_owned()));
            continue;
        }
        if let Some(at) = line.find("include(") {
            includes.extend(quoted_value(&line[at..], "file="));
            continue;
        }
        let legacy = words.iter().skip(1).find(|w| w.starts_with('@')).map(|w| {
            let proto = if w.starts_with("@@") { "tcp" } else { "udp" };
            let host = w.trim_start_matches('@');
            let host = host
                .strip_prefix('(')
                .and_then(|h| h.split_once(')'))
                .map_or(host, |(_, h)| h);
            format!("forwards to {host} ({proto})")
        });
        let omfwd = line
            .contains("omfwd")
            .then(|| {
                // The target may sit on a later line of the action(...).
                let rest: String = text.lines().skip(i).take(10).collect::<Vec<_>>().join(" ");
                quoted_value(&rest, "target=")
            })
            .flatten()
            .map(|t| format!("forwards to {t} (omfwd)"));
        if let Some(text) = legacy.or(omfwd) {
            targets.push(Evidence::at(
                file,
                line_number(i),
                format!("{line} — {text}"),
            ));
        }
    }
    (targets, includes)
}

/// `key="value"` within `text`.
fn quoted_value(text: &str, key: &str) -> Option<String> {
    let at = text.find(key)? + key.len();
    let rest = text[at..].strip_prefix('"')?;
    Some(rest.split('"').next()?.to_owned())
}

fn remote_logging(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let mut targets = Vec::new();
    let mut queue = vec!["etc/rsyslog.conf".to_owned()];
    let mut seen: Vec<String> = Vec::new();
    while let Some(rel) = queue.pop() {
        if seen.contains(&rel) || seen.len() > 256 {
            continue;
        }
        seen.push(rel.clone());
        let Some(text) = cx.tree.read(&rel)? else {
            continue;
        };
        let (found, includes) = rsyslog_targets(&text, &cx.tree.show(&rel));
        targets.extend(found);
        for pattern in includes {
            queue.extend(cx.tree.glob(&pattern, "etc").into_iter().rev());
        }
    }
    let upload = UnitConf::load(&cx.tree, "etc/systemd/journal-upload.conf", "Upload")?;
    if let Some((url, e)) = upload.get("URL").filter(|(u, _)| !u.is_empty()) {
        if systemd::enabled(&cx.tree, "systemd-journal-upload.service").is_some() {
            targets.push(Evidence {
                text: format!("journal uploaded to {url}"),
                ..e.clone()
            });
        }
    }
    Ok(if targets.is_empty() {
        Outcome::fail(vec![Evidence::note(
            "no forwarding in /etc/rsyslog.conf, /etc/rsyslog.d or journal-upload.conf",
        )])
    } else {
        Outcome::pass(targets)
    })
}

/// `server`/`pool` lines of an NTP or chrony configuration.
fn ntp_sources(cx: &Context<'_>) -> Result<Vec<Evidence>, BaselineError> {
    let mut out = Vec::new();
    for rel in [
        "etc/chrony.conf",
        "etc/chrony/chrony.conf",
        "etc/ntp.conf",
        "etc/ntpsec/ntp.conf",
    ] {
        let Some(text) = cx.tree.read(rel)? else {
            continue;
        };
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if matches!(
                line.split_whitespace().next(),
                Some("server" | "pool" | "peer")
            ) {
                out.push(Evidence::at(
                    cx.tree.show(rel),
                    line_number(i),
                    line.to_owned(),
                ));
            }
        }
    }
    Ok(out)
}

const TIME_DAEMONS: &[&str] = &["chronyd", "ntpd", "systemd-timesyncd", "openntpd"];
const TIME_UNITS: &[&str] = &[
    "chrony.service",
    "chronyd.service",
    "ntp.service",
    "ntpd.service",
    "ntpsec.service",
    "systemd-timesyncd.service",
];

fn time_sync(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let mut evidence = ntp_sources(cx)?;
    let enabled = systemd::any_enabled(&cx.tree, TIME_UNITS);
    evidence.extend(enabled.clone());
    let Some(processes) = cx.processes() else {
        // No live state: what would start at boot, and with servers to use.
        let configured = enabled.is_some() && !evidence.is_empty();
        return Ok(if configured {
            Outcome::pass(evidence)
        } else {
            Outcome::fail(evidence).with(vec![Evidence::note(
                "no time service enabled (and no process table to check)",
            )])
        });
    };
    let running = processes.iter().find(|p| {
        TIME_DAEMONS
            .iter()
            .any(|d| super::procfs::is_program(&p.comm, d))
    });
    Ok(match running {
        Some(p) => {
            evidence.insert(0, Evidence::note(format!("{}[{}] running", p.comm, p.pid)));
            Outcome::pass(evidence)
        }
        None => {
            evidence.push(Evidence::note(
                "no chronyd, ntpd or systemd-timesyncd process",
            ));
            Outcome::fail(evidence)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_rules_watch_forms() {
        let w = parse_rule("-w /etc/passwd -p wa -k identity").unwrap();
        assert!(covers(&w, "/etc/passwd") && !w.exec);
        let w =
            parse_rule("-a always,exit -F arch=b64 -F path=/etc/shadow -F perm=wa -k x").unwrap();
        assert!(covers(&w, "/etc/shadow"));
        let w = parse_rule("-w /etc/ -p wa").unwrap();
        assert!(covers(&w, "/etc/sudoers"));
        let w = parse_rule("-w /etc/passwd -p r").unwrap();
        assert!(!covers(&w, "/etc/passwd"));
        let w = parse_rule("-a always,exit -F arch=b64 -S execve -F euid=0 -k root").unwrap();
        assert!(w.execve);
        assert!(parse_rule("-D").is_none());
        assert!(parse_rule("-b 8192").is_none());
    }

    #[test]
    fn rsyslog_forwarding_forms() {
        let (t, inc) = rsyslog_targets(
            "# *.* @@old:514\n$IncludeConfig /etc/rsyslog.d/*.conf\n*.* @@(o)logs.example:6514\nauth.* @10.0.0.9\naction(type=\"omfwd\"\n  target=\"central\" port=\"514\")\n",
            "/etc/rsyslog.conf",
        );
        let texts: Vec<String> = t.iter().map(|e| e.text.clone()).collect();
        assert!(
            texts[0].ends_with("forwards to logs.example:6514 (tcp)"),
            "{texts:?}"
        );
        assert!(texts[1].ends_with("forwards to 10.0.0.9 (udp)"));
        assert!(texts[2].ends_with("forwards to central (omfwd)"));
        assert_eq!(inc, ["/etc/rsyslog.d/*.conf"]);
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(text in "(?s)[a-z@()=\"./*$ \n-]{0,300}") {
            for line in text.lines() {
                let _ = parse_rule(line);
            }
            let _ = rsyslog_targets(&text, "/f");
            let _ = quoted_value(&text, "target=");
        }
    }
}
