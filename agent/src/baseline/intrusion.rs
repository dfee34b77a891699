//! Intrusion prevention (入侵防范): what listens and what runs, the
//! kernel's network and hardening switches (read from `ROOT/proc/sys`),
//! shared directories, host-based access lists, patches, and an intrusion
//! detection tool.

use super::login_defs::line_number;
use super::patch;
use super::services::{self, Presence};
use super::{BaselineError, Check, Context, Evidence, Outcome, Severity};

pub(super) const CHECKS: &[Check] = &[
    Check {
        id: "NET-001",
        title: "listening ports match the allowlist",
        severity: Severity::High,
        remediation: "Stop or bind to localhost each service listening on a port outside the host's allowlist, or add the port to `allowed_tcp_ports` / `allowed_udp_ports` of the baseline settings once it is approved.",
        run: ports_allowlisted,
    },
    Check {
        id: "NET-002",
        title: "no unnecessary services",
        severity: Severity::Medium,
        remediation: "Stop, disable and remove each listed service (`systemctl disable --now UNIT`, then purge its package; remove its inetd/xinetd entry).",
        run: unnecessary_services,
    },
    Check {
        id: "NET-003",
        title: "IP forwarding off",
        severity: Severity::Medium,
        remediation: "Set `net.ipv4.ip_forward = 0` in /etc/sysctl.d/60-baseline.conf and run `sysctl --system` (or declare the host a router in the baseline settings).",
        run: ip_forwarding,
    },
    Check {
        id: "NET-004",
        title: "ICMP redirects and source routing",
        severity: Severity::Low,
        remediation: "Set `net.ipv4.conf.all.accept_redirects = 0`, `net.ipv4.conf.all.send_redirects = 0`, `net.ipv4.conf.all.accept_source_route = 0` (and the IPv6 equivalents) in /etc/sysctl.d/60-baseline.conf; `sysctl --system`.",
        run: redirects,
    },
    Check {
        id: "NET-005",
        title: "SYN cookies",
        severity: Severity::Low,
        remediation: "Set `net.ipv4.tcp_syncookies = 1` in /etc/sysctl.d/60-baseline.conf; `sysctl --system`.",
        run: syn_cookies,
    },
    Check {
        id: "NET-006",
        title: "shared resources",
        severity: Severity::Medium,
        remediation: "Remove `no_root_squash` from /etc/exports (`exportfs -ra`) and `guest ok = yes` / `public = yes` from smb.conf shares; share only what is needed, to named hosts.",
        run: shared_resources,
    },
    Check {
        id: "NET-007",
        title: "host-based access lists",
        severity: Severity::Low,
        remediation: "Restrict remote administration: `AllowGroups` (or `AllowUsers`) in /etc/ssh/sshd_config, or `sshd: ALL` in /etc/hosts.deny with the admin networks in /etc/hosts.allow.",
        run: access_lists,
    },
    Check {
        id: "PATCH-001",
        title: "pending security updates",
        severity: Severity::High,
        remediation: "Install the pending security updates (`apt-get update && apt-get upgrade`, or unattended-upgrades), then restart the services or reboot as needed.",
        run: patch::security_updates,
    },
    Check {
        id: "PATCH-002",
        title: "kernel running is the newest installed",
        severity: Severity::Medium,
        remediation: "Reboot into the newest installed kernel in the next maintenance window.",
        run: patch::kernel_current,
    },
    Check {
        id: "KRNL-001",
        title: "address space layout randomisation",
        severity: Severity::Medium,
        remediation: "Set `kernel.randomize_va_space = 2` in /etc/sysctl.d/60-baseline.conf; `sysctl --system`.",
        run: aslr,
    },
    Check {
        id: "KRNL-002",
        title: "core dumps of setuid programs",
        severity: Severity::Low,
        remediation: "Set `fs.suid_dumpable = 0` in /etc/sysctl.d/60-baseline.conf and `* hard core 0` in /etc/security/limits.conf.",
        run: suid_dumps,
    },
    Check {
        id: "KRNL-003",
        title: "dmesg and kernel pointers restricted",
        severity: Severity::Low,
        remediation: "Set `kernel.dmesg_restrict = 1` and `kernel.kptr_restrict = 1` (or 2) in /etc/sysctl.d/60-baseline.conf; `sysctl --system`.",
        run: kernel_info,
    },
    Check {
        id: "IDS-001",
        title: "intrusion detection present",
        severity: Severity::Medium,
        remediation: "Enable Patrol's file-integrity watch for this host, or install and initialise AIDE (`aide --init`) or a Wazuh/OSSEC agent.",
        run: intrusion_detection,
    },
];

/// A sysctl under `ROOT/proc/sys`: its value, as `name = value` evidence.
fn sysctl(cx: &Context<'_>, name: &str) -> Result<Option<(String, Evidence)>, BaselineError> {
    let rel = format!("proc/sys/{}", name.replace('.', "/"));
    let Some(text) = cx.tree.read(&rel)? else {
        return Ok(None);
    };
    let value = text.trim().to_owned();
    let evidence = Evidence::file(cx.tree.show(&rel), format!("{name} = {value}"));
    Ok(Some((value, evidence)))
}

/// A sysctl to judge: its name, whether it must exist, and its test.
type Wanted<'a> = (&'a str, bool, fn(i64) -> bool);

/// Judges sysctls; not applicable when no required one can be read.
fn sysctls(cx: &Context<'_>, wanted: &[Wanted<'_>]) -> Result<Outcome, BaselineError> {
    let mut ok = true;
    let mut evidence = Vec::new();
    let mut missing = Vec::new();
    for (name, required, good) in wanted {
        match sysctl(cx, name)? {
            Some((value, e)) => {
                ok &= value.parse::<i64>().is_ok_and(good);
                evidence.push(e);
            }
            None if *required => missing.push(*name),
            None => {}
        }
    }
    if evidence.is_empty() {
        return Ok(Outcome::not_applicable(format!(
            "no {} (not a live host)",
            cx.tree.show_root("proc/sys")
        )));
    }
    if !missing.is_empty() {
        evidence.push(Evidence::note(format!(
            "not present: {}",
            missing.join(", ")
        )));
    }
    Ok(Outcome::judge(ok, evidence))
}

fn zero(v: i64) -> bool {
    v == 0
}

fn ip_forwarding(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    if cx.config.router {
        let seen = sysctl(cx, "net.ipv4.ip_forward")?.map(|(_, e)| e);
        return Ok(Outcome::not_applicable(
            "the host is declared a router (baseline setting `router`)",
        )
        .with(seen.into_iter().collect()));
    }
    sysctls(cx, &[("net.ipv4.ip_forward", true, zero)])
}

fn redirects(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    sysctls(
        cx,
        &[
            ("net.ipv4.conf.all.accept_redirects", true, zero),
            ("net.ipv4.conf.all.send_redirects", true, zero),
            ("net.ipv4.conf.all.accept_source_route", true, zero),
            ("net.ipv6.conf.all.accept_redirects", false, zero),
            ("net.ipv6.conf.all.accept_source_route", false, zero),
        ],
    )
}

fn syn_cookies(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    // 2 sends cookies unconditionally: stricter still.
    sysctls(
        cx,
        &[("net.ipv4.tcp_syncookies", true, |v| v == 1 || v == 2)],
    )
}

fn aslr(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    sysctls(cx, &[("kernel.randomize_va_space", true, |v| v == 2)])
}

fn suid_dumps(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    sysctls(cx, &[("fs.suid_dumpable", true, zero)])
}

fn kernel_info(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    sysctls(
        cx,
        &[
            ("kernel.dmesg_restrict", true, |v| v == 1),
            ("kernel.kptr_restrict", true, |v| v >= 1),
        ],
    )
}

fn ports_allowlisted(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let Some(listeners) = cx.listeners()? else {
        return Ok(Outcome::not_applicable(format!(
            "no {} (not a live host)",
            cx.tree.show_root("proc/net/tcp")
        )));
    };
    let mut outside = Vec::new();
    let mut inside = Vec::new();
    for l in listeners {
        let allowed = match l.proto {
            "tcp" => &cx.config.allowed_tcp_ports,
            _ => &cx.config.allowed_udp_ports,
        };
        if l.is_loopback() {
            inside.push(Evidence::note(format!("{} (loopback only)", l.describe())));
        } else if allowed.contains(&l.port) {
            inside.push(Evidence::note(format!("{} (allowed)", l.describe())));
        } else {
            outside.push(Evidence::note(format!(
                "{} (not in the allowlist)",
                l.describe()
            )));
        }
    }
    Ok(if outside.is_empty() {
        if inside.is_empty() {
            inside.push(Evidence::note("nothing listening"));
        }
        Outcome::pass(inside)
    } else {
        Outcome::fail(outside)
    })
}

fn unnecessary_services(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let mut found = Vec::new();
    for service in services::UNNECESSARY {
        found.extend(services::signs(cx, service, Presence::Active)?);
    }
    Ok(if found.is_empty() {
        let names: Vec<&str> = services::UNNECESSARY.iter().map(|s| s.name).collect();
        Outcome::pass(vec![Evidence::note(format!(
            "none of {} enabled, running or listening",
            names.join(", ")
        ))])
    } else {
        Outcome::fail(found)
    })
}

/// NFS exports (`/etc/exports`): each export line, and whether it is risky.
fn exports(text: &str, file: &str) -> Vec<(bool, Evidence)> {
    let mut out = Vec::new();
    let mut logical = String::new();
    let mut start = 1;
    for (i, raw) in text.lines().enumerate() {
        if logical.is_empty() {
            start = line_number(i);
        }
        let line = raw.split('#').next().unwrap_or("");
        if let Some(head) = line.trim_end().strip_suffix('\\') {
            logical.push_str(head);
            logical.push(' ');
            continue;
        }
        logical.push_str(line);
        let export = std::mem::take(&mut logical);
        let export = export.split_whitespace().collect::<Vec<_>>().join(" ");
        if export.is_empty() {
            continue;
        }
        let risky = export.contains("no_root_squash");
        out.push((risky, Evidence::at(file, start, export)));
    }
    out
}

/// Samba shares (`smb.conf` sections other than `[global]`), and whether
/// a share lets guests in.
fn samba_shares(text: &str, file: &str) -> Vec<(bool, Evidence)> {
    let mut out: Vec<(bool, Evidence)> = Vec::new();
    let mut in_share = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_share = !name.trim().eq_ignore_ascii_case("global");
            if in_share {
                out.push((
                    false,
                    Evidence::at(file, line_number(i), format!("share [{}]", name.trim())),
                ));
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key: String = key
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_lowercase();
        let yes = matches!(
            value.trim().to_ascii_lowercase().as_str(),
            "yes" | "true" | "1"
        );
        if in_share && yes && (key == "guest ok" || key == "public") {
            if let Some(last) = out.last_mut() {
                last.0 = true;
                last.1.text = format!("{}: {line}", last.1.text);
            }
        }
    }
    out
}

fn shared_resources(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let mut shares = Vec::new();
    if let Some(text) = cx.tree.read("etc/exports")? {
        shares.extend(exports(&text, &cx.tree.show("etc/exports")));
    }
    let smb = "etc/samba/smb.conf";
    if let Some(text) = cx.tree.read(smb)? {
        shares.extend(samba_shares(&text, &cx.tree.show(smb)));
    }
    if shares.is_empty() {
        return Ok(Outcome::pass(vec![Evidence::note(
            "no NFS exports and no Samba shares",
        )]));
    }
    let ok = shares.iter().all(|(risky, _)| !risky);
    let evidence = shares
        .into_iter()
        .map(|(risky, e)| {
            if risky {
                Evidence {
                    text: format!("{} (risky)", e.text),
                    ..e
                }
            } else {
                e
            }
        })
        .collect();
    Ok(Outcome::judge(ok, evidence))
}

/// Rules of `hosts.deny` that cover sshd (or every daemon).
fn tcp_wrapper_denies(text: &str, file: &str) -> Vec<Evidence> {
    text.lines()
        .enumerate()
        .filter_map(|(i, raw)| {
            let line = raw.split('#').next().unwrap_or("").trim();
            let (daemons, _) = line.split_once(':')?;
            let covers = daemons.split([',', ' ']).any(|d| d == "ALL" || d == "sshd");
            covers.then(|| Evidence::at(file, line_number(i), line.to_owned()))
        })
        .collect()
}

fn access_lists(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let mut evidence = Vec::new();
    if let Some(sshd) = cx.sshd()? {
        for keyword in ["AllowUsers", "AllowGroups"] {
            evidence.extend(sshd.all(keyword).map(|e| e.evidence()));
        }
    }
    if let Some(text) = cx.tree.read("etc/hosts.deny")? {
        evidence.extend(tcp_wrapper_denies(&text, &cx.tree.show("etc/hosts.deny")));
    }
    Ok(if evidence.is_empty() {
        Outcome::fail(vec![Evidence::note(
            "no AllowUsers/AllowGroups in sshd_config and no sshd or ALL rule in /etc/hosts.deny",
        )])
    } else {
        Outcome::pass(evidence)
    })
}

/// Files that show an integrity checker is set up.
const IDS_FILES: &[(&str, &str)] = &[
    ("etc/aide/aide.conf", "AIDE"),
    ("etc/aide.conf", "AIDE"),
    ("var/lib/aide/aide.db", "AIDE database"),
    ("var/lib/aide/aide.db.gz", "AIDE database"),
    ("var/ossec/etc/ossec.conf", "Wazuh/OSSEC"),
    ("etc/tripwire/tw.cfg", "Tripwire"),
    ("etc/samhainrc", "Samhain"),
];
const IDS_PROGRAMS: &[&str] = &[
    "wazuh-syscheckd",
    "wazuh-agentd",
    "ossec-syscheckd",
    "ossec-agentd",
    "samhain",
];

fn intrusion_detection(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let mut evidence = Vec::new();
    if cx.config.file_integrity_watch {
        evidence.push(Evidence::note(
            "Patrol's file-integrity watch is enabled (baseline setting `file_integrity_watch`)",
        ));
    }
    for (rel, what) in IDS_FILES {
        if cx.tree.exists(rel) {
            evidence.push(Evidence::file(cx.tree.show(rel), format!("{what} present")));
        }
    }
    for p in cx.processes().unwrap_or_default() {
        if IDS_PROGRAMS
            .iter()
            .any(|n| super::procfs::is_program(&p.comm, n))
        {
            evidence.push(Evidence::note(format!("{}[{}] running", p.comm, p.pid)));
        }
    }
    Ok(if evidence.is_empty() {
        Outcome::fail(vec![Evidence::note(
            "no AIDE, Wazuh/OSSEC, Tripwire or Samhain, and Patrol's file-integrity watch is off",
        )])
    } else {
        Outcome::pass(evidence)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_and_shares() {
        let e = exports(
            "# /srv *(rw)\n/srv/data 10.0.0.0/24(rw,sync,root_squash)\n/srv/open \\\n  *(rw,no_root_squash)\n",
            "/etc/exports",
        );
        assert_eq!(e.len(), 2);
        assert!(!e[0].0 && e[1].0);
        assert_eq!(
            e[1].1.to_string(),
            "/etc/exports:3: /srv/open *(rw,no_root_squash)"
        );
        let s = samba_shares(
            "[global]\n  guest ok = yes\n[data]\n  path = /srv\n[pub]\n  Guest  OK = Yes\n",
            "/etc/samba/smb.conf",
        );
        assert_eq!(s.len(), 2);
        assert!(!s[0].0 && s[1].0);
        assert_eq!(s[1].1.text, "share [pub]: Guest  OK = Yes");
    }

    #[test]
    fn hosts_deny_rules() {
        let d = tcp_wrapper_denies(
            "# ALL: ALL\nsshd: ALL\nvsftpd: ALL\nALL EXCEPT in.fingerd: ALL\n",
            "/etc/hosts.deny",
        );
        let lines: Vec<Option<u32>> = d.iter().map(|e| e.line).collect();
        assert_eq!(lines, [Some(2), Some(4)]);
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(text in "(?s)[a-zA-Z0-9\\[\\]=:#;,()\\\\/* \n_]{0,400}") {
            let _ = exports(&text, "/e");
            let _ = samba_shares(&text, "/s");
            let _ = tcp_wrapper_denies(&text, "/d");
        }
    }
}
