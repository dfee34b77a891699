//! Remote login: the host-wide values of OpenSSH's server settings (the
//! first one given, outside `Match` blocks, with OpenSSH's own default
//! when none is), the permissions of its files, and the absence of the
//! clear-text remote shells that predate it.

use super::services::{self, Presence};
use super::sshd_config::{seconds, SshdConfig, MAIN};
use super::{BaselineError, Check, Context, Evidence, Outcome, Severity};

pub(super) const CHECKS: &[Check] = &[
    Check {
        id: "SSH-001",
        title: "root login over SSH",
        severity: Severity::High,
        remediation: "Set `PermitRootLogin no` (or `prohibit-password`) at the top of /etc/ssh/sshd_config (before any Include that sets it) and reload sshd.",
        run: root_login,
    },
    Check {
        id: "SSH-002",
        title: "protocol and empty passwords",
        severity: Severity::High,
        remediation: "Set `PermitEmptyPasswords no` in /etc/ssh/sshd_config and reload sshd.",
        run: empty_passwords,
    },
    Check {
        id: "SSH-003",
        title: "authentication tries",
        severity: Severity::Medium,
        remediation: "Set `MaxAuthTries 4` (or fewer) in /etc/ssh/sshd_config and reload sshd.",
        run: auth_tries,
    },
    Check {
        id: "SSH-004",
        title: "idle sessions end",
        severity: Severity::Medium,
        remediation: "Set `ClientAliveInterval 300` and `ClientAliveCountMax 3` (at most 900 s in all) in /etc/ssh/sshd_config and reload sshd.",
        run: idle_sessions,
    },
    Check {
        id: "SSH-005",
        title: "login grace time",
        severity: Severity::Low,
        remediation: "Set `LoginGraceTime 60` (or less, not 0) in /etc/ssh/sshd_config and reload sshd.",
        run: grace_time,
    },
    Check {
        id: "SSH-006",
        title: "X11 forwarding",
        severity: Severity::Low,
        remediation: "Set `X11Forwarding no` in /etc/ssh/sshd_config and reload sshd.",
        run: x11_forwarding,
    },
    Check {
        id: "SSH-007",
        title: "weak ciphers and MACs",
        severity: Severity::Medium,
        remediation: "Remove CBC, arcfour and 3DES ciphers, hmac-md5 and hmac-sha1-96 MACs and diffie-hellman-group1 key exchange from Ciphers, MACs and KexAlgorithms in /etc/ssh/sshd_config (or drop those lines to use OpenSSH's defaults).",
        run: weak_algorithms,
    },
    Check {
        id: "SSH-008",
        title: "host keys and config permissions",
        severity: Severity::Medium,
        remediation: "`chown root:root /etc/ssh/sshd_config; chmod 600 /etc/ssh/sshd_config; chmod 600 /etc/ssh/ssh_host_*_key` (0640 with group ssh_keys is accepted on the RHEL family).",
        run: file_permissions,
    },
    Check {
        id: "SSH-009",
        title: "telnet / rsh / rlogin absent",
        severity: Severity::High,
        remediation: "Stop, disable and remove the telnet, rsh and rlogin servers (e.g. `apt purge telnetd rsh-server` or `dnf remove telnet-server rsh-server`) and their inetd entries; use SSH.",
        run: remote_shells_absent,
    },
];

fn no_sshd() -> Outcome {
    Outcome::not_applicable("no /etc/ssh/sshd_config (OpenSSH server not installed)")
}

/// The host-wide value of a keyword, or OpenSSH's default with a note.
fn value(config: &SshdConfig, keyword: &str, default: &str) -> (String, Evidence) {
    match config.get(keyword) {
        Some(e) => (e.value().to_owned(), e.evidence()),
        None => (
            default.to_owned(),
            Evidence::note(format!("{keyword} not set: OpenSSH default {default}")),
        ),
    }
}

/// Judges one keyword's value with `ok`.
fn setting(
    cx: &Context<'_>,
    keyword: &str,
    default: &str,
    ok: impl Fn(&str) -> bool,
) -> Result<Outcome, BaselineError> {
    let Some(config) = cx.sshd()? else {
        return Ok(no_sshd());
    };
    let (value, evidence) = value(config, keyword, default);
    Ok(Outcome::judge(
        ok(&value.to_ascii_lowercase()),
        vec![evidence],
    ))
}

fn root_login(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    setting(cx, "PermitRootLogin", "prohibit-password", |v| {
        matches!(
            v,
            "no" | "prohibit-password" | "without-password" | "forced-commands-only"
        )
    })
}

fn empty_passwords(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    setting(cx, "PermitEmptyPasswords", "no", |v| v == "no")
}

fn auth_tries(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    setting(cx, "MaxAuthTries", "6", |v| {
        v.parse::<u32>().is_ok_and(|n| n <= 4)
    })
}

fn grace_time(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    // 0 means no limit at all.
    setting(cx, "LoginGraceTime", "120", |v| {
        seconds(v).is_some_and(|s| (1..=60).contains(&s))
    })
}

fn x11_forwarding(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    setting(cx, "X11Forwarding", "no", |v| v == "no")
}

fn idle_sessions(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let Some(config) = cx.sshd()? else {
        return Ok(no_sshd());
    };
    let (interval, e1) = value(config, "ClientAliveInterval", "0");
    let (count, e2) = value(config, "ClientAliveCountMax", "3");
    let total = seconds(&interval)
        .zip(count.parse::<u64>().ok())
        .map(|(i, c)| i.saturating_mul(c));
    let summary = match total {
        Some(t) => Evidence::note(format!("idle sessions end after {t} s")),
        None => Evidence::note("idle timeout unreadable"),
    };
    let ok = total.is_some_and(|t| (1..=900).contains(&t));
    Ok(Outcome::judge(ok, vec![e1, e2, summary]))
}

/// Parts of algorithm names that make them weak; `group1-` so that
/// diffie-hellman-group14 and group16 are not caught.
const WEAK_ALGORITHMS: &[&str] = &[
    "cbc",
    "arcfour",
    "3des",
    "hmac-md5",
    "hmac-sha1-96",
    "diffie-hellman-group1-",
];

/// The weak algorithms a `Ciphers`/`MACs`/`KexAlgorithms` value adds.
fn weak_in(list: &str) -> Vec<&str> {
    // `-list` removes from the defaults, so it cannot add a weak one.
    if list.starts_with('-') {
        return Vec::new();
    }
    list.trim_start_matches(['+', '^'])
        .split(',')
        .filter(|alg| {
            let alg = alg.to_ascii_lowercase();
            WEAK_ALGORITHMS.iter().any(|w| alg.contains(w))
        })
        .collect()
}

fn weak_algorithms(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let Some(config) = cx.sshd()? else {
        return Ok(no_sshd());
    };
    let mut weak = Vec::new();
    let mut seen = Vec::new();
    for keyword in ["Ciphers", "MACs", "KexAlgorithms"] {
        let Some(entry) = config.get(keyword) else {
            seen.push(Evidence::note(format!(
                "{keyword} not set: OpenSSH defaults"
            )));
            continue;
        };
        let bad = weak_in(entry.value());
        if bad.is_empty() {
            seen.push(entry.evidence());
        } else {
            let e = entry.evidence();
            weak.push(Evidence {
                text: format!("{} (weak: {})", e.text, bad.join(", ")),
                ..e
            });
        }
    }
    Ok(if weak.is_empty() {
        Outcome::pass(seen)
    } else {
        Outcome::fail(weak)
    })
}

fn file_permissions(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let Some(config) = cx.tree.stat(MAIN)? else {
        return Ok(no_sshd());
    };
    let ssh_keys_gid = cx
        .group()?
        .and_then(|g| g.by_name("ssh_keys"))
        .map(|g| g.gid);
    let mut good = Vec::new();
    let mut bad = Vec::new();
    let config_ok = config.uid == 0 && config.mode & !0o644 == 0;
    let line = config.evidence(cx.tree.show(MAIN));
    (if config_ok { &mut good } else { &mut bad }).push(line);
    for rel in cx.tree.glob("ssh_host_*_key", "etc/ssh") {
        let Some(key) = cx.tree.stat(&rel)? else {
            continue;
        };
        let group_readable_ok = ssh_keys_gid == Some(key.gid) && key.mode & !0o640 == 0;
        let ok = key.uid == 0 && (key.mode & !0o600 == 0 || group_readable_ok);
        let line = key.evidence(cx.tree.show(&rel));
        (if ok { &mut good } else { &mut bad }).push(line);
    }
    Ok(if bad.is_empty() {
        Outcome::pass(good)
    } else {
        Outcome::fail(bad)
    })
}

fn remote_shells_absent(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let mut found = Vec::new();
    for service in [&services::TELNET, &services::RSH, &services::RLOGIN] {
        found.extend(services::signs(cx, service, Presence::Installed)?);
    }
    Ok(if found.is_empty() {
        let scope = if cx.processes().is_some() {
            "no telnet, rsh or rlogin server installed, enabled, running or listening"
        } else {
            "no telnet, rsh or rlogin server installed or enabled (no process table to check)"
        };
        Outcome::pass(vec![Evidence::note(scope)])
    } else {
        Outcome::fail(found)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_algorithms_by_name() {
        assert_eq!(
            weak_in("aes128-cbc,aes256-ctr,3des-cbc"),
            ["aes128-cbc", "3des-cbc"]
        );
        assert_eq!(weak_in("+hmac-md5-96"), ["hmac-md5-96"]);
        assert_eq!(weak_in("-aes128-cbc"), Vec::<&str>::new());
        assert_eq!(weak_in("diffie-hellman-group1-sha1,diffie-hellman-group14-sha256,diffie-hellman-group16-sha512"), ["diffie-hellman-group1-sha1"]);
        assert!(weak_in("hmac-sha1,hmac-sha2-512-etm@openssh.com").is_empty());
    }
}
