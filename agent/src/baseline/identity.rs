//! Identity (身份鉴别): password ageing in `login.defs`, the account
//! databases, session timeouts. The checks of the PAM password policy
//! (length, complexity, lockout, hashing, history) are in `password`;
//! this table lists all fourteen in catalogue order.

use std::collections::BTreeMap;

use super::accounts::User;
use super::login_defs::line_number;
use super::password;
use super::{BaselineError, Check, Context, Evidence, Outcome, Severity};
use patrol_shared::inspection::civil_date;

pub(super) const CHECKS: &[Check] = &[
    Check {
        id: "AUTH-001",
        title: "password maximum age",
        severity: Severity::Medium,
        remediation: "Set `PASS_MAX_DAYS 90` (or less) in /etc/login.defs, and `chage --maxdays 90 USER` for existing accounts.",
        run: max_age,
    },
    Check {
        id: "AUTH-002",
        title: "password minimum age",
        severity: Severity::Low,
        remediation: "Set `PASS_MIN_DAYS 1` in /etc/login.defs, and `chage --mindays 1 USER` for existing accounts.",
        run: min_age,
    },
    Check {
        id: "AUTH-003",
        title: "password expiry warning",
        severity: Severity::Low,
        remediation: "Set `PASS_WARN_AGE 7` (or more) in /etc/login.defs, and `chage --warndays 7 USER` for existing accounts.",
        run: warn_age,
    },
    Check {
        id: "AUTH-004",
        title: "password minimum length",
        severity: Severity::High,
        remediation: "Install libpam-pwquality (or libpwquality) so pam_pwquality.so is in the password stack, and set `minlen = 8` (or more) in /etc/security/pwquality.conf.",
        run: password::min_length,
    },
    Check {
        id: "AUTH-005",
        title: "password complexity",
        severity: Severity::High,
        remediation: "Set `minclass = 3` (or `dcredit = -1`, `ucredit = -1`, `lcredit = -1`, `ocredit = -1`) in /etc/security/pwquality.conf, with pam_pwquality.so in the password stack.",
        run: password::complexity,
    },
    Check {
        id: "AUTH-006",
        title: "login failure lockout",
        severity: Severity::High,
        remediation: "Add pam_faillock.so to the auth stack (Debian: `pam-auth-update --enable faillock`; RHEL: `authselect enable-feature with-faillock`) and set `deny = 5` and `unlock_time = 900` in /etc/security/faillock.conf.",
        run: password::lockout,
    },
    Check {
        id: "AUTH-007",
        title: "no empty passwords",
        severity: Severity::High,
        remediation: "Lock each listed account (`passwd -l USER`) or give it a password; never leave the password field of /etc/shadow empty.",
        run: no_empty_passwords,
    },
    Check {
        id: "AUTH-008",
        title: "only root has UID 0",
        severity: Severity::High,
        remediation: "Give every account other than root its own non-zero UID (`usermod -u UID USER`) or remove it; use sudo for administration.",
        run: only_root_uid0,
    },
    Check {
        id: "AUTH-009",
        title: "no duplicate UIDs or user names",
        severity: Severity::Medium,
        remediation: "Give each account a unique name and UID (`usermod -u`, `usermod -l`), then fix the ownership of the files of the changed UIDs.",
        run: no_duplicates,
    },
    Check {
        id: "AUTH-010",
        title: "system accounts cannot log in",
        severity: Severity::Medium,
        remediation: "Set the shell of each listed system account to /usr/sbin/nologin (`usermod -s /usr/sbin/nologin USER`).",
        run: system_accounts_nologin,
    },
    Check {
        id: "AUTH-011",
        title: "password hashing algorithm",
        severity: Severity::Medium,
        remediation: "Set `ENCRYPT_METHOD YESCRYPT` (or SHA512) in /etc/login.defs and use `yescrypt` (or `sha512`) on the pam_unix.so password line; users' hashes change at their next password change.",
        run: password::hashing,
    },
    Check {
        id: "AUTH-012",
        title: "shell session timeout",
        severity: Severity::Medium,
        remediation: "Add /etc/profile.d/tmout.sh with `TMOUT=900`, `readonly TMOUT` and `export TMOUT`.",
        run: session_timeout,
    },
    Check {
        id: "AUTH-013",
        title: "password reuse remembered",
        severity: Severity::Low,
        remediation: "Add pam_pwhistory.so to the password stack before pam_unix.so and set `remember = 5` (or more) in /etc/security/pwhistory.conf or on its line.",
        run: password::history,
    },
    Check {
        id: "AUTH-014",
        title: "accounts with passwords past max age",
        severity: Severity::Low,
        remediation: "Make each listed user change their password (`passwd -e USER` forces it at next login), or lock the account if it is no longer used.",
        run: expired_passwords,
    },
];

/// A login.defs number judged by `ok`; unset counts as failing, since the
/// compiled-in defaults are the weak values.
fn login_defs_number(
    cx: &Context<'_>,
    name: &str,
    ok: impl Fn(i64) -> bool,
) -> Result<Outcome, BaselineError> {
    let Some(defs) = cx.login_defs()? else {
        return Ok(Outcome::not_applicable(
            "no /etc/login.defs (shadow-utils is not installed)",
        ));
    };
    Ok(match defs.number(name) {
        Some((value, evidence)) => Outcome::judge(ok(value), vec![evidence]),
        None => Outcome::fail(vec![match defs.evidence(name) {
            Some(bad) => Evidence {
                text: format!("{} (not a number)", bad.text),
                ..bad
            },
            None => defs.unset(name),
        }]),
    })
}

fn max_age(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    login_defs_number(cx, "PASS_MAX_DAYS", |v| (0..=90).contains(&v))
}

fn min_age(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    login_defs_number(cx, "PASS_MIN_DAYS", |v| v >= 1)
}

fn warn_age(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    login_defs_number(cx, "PASS_WARN_AGE", |v| v >= 7)
}

fn no_empty_passwords(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    if let Some(shadow) = cx.shadow()? {
        let empty: Vec<Evidence> = shadow
            .entries
            .iter()
            .filter(|e| e.hash.is_empty())
            .map(|e| {
                Evidence::at(
                    &shadow.file,
                    e.line,
                    format!("{}: empty password field", e.name),
                )
            })
            .collect();
        let checked = Evidence::file(
            &shadow.file,
            format!(
                "{} accounts, none with an empty password",
                shadow.entries.len()
            ),
        );
        return Ok(if empty.is_empty() {
            Outcome::pass(vec![checked])
        } else {
            Outcome::fail(empty)
        });
    }
    // Without shadow passwords, the hash is in /etc/passwd itself.
    let Some(passwd) = cx.passwd()? else {
        return Ok(Outcome::not_applicable("no /etc/shadow and no /etc/passwd"));
    };
    let empty: Vec<Evidence> = passwd
        .users
        .iter()
        .filter(|u| u.password.is_empty())
        .map(|u| user_evidence(&passwd.file, u, "empty password field (no /etc/shadow)"))
        .collect();
    Ok(if empty.is_empty() {
        Outcome::pass(vec![Evidence::file(
            &passwd.file,
            "no empty password field",
        )])
    } else {
        Outcome::fail(empty)
    })
}

fn user_evidence(file: &str, user: &User, what: &str) -> Evidence {
    Evidence::at(file, user.line, format!("{}: {what}", user.name))
}

fn only_root_uid0(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let Some(passwd) = cx.passwd()? else {
        return Ok(Outcome::not_applicable("no /etc/passwd"));
    };
    let zero: Vec<&User> = passwd.users.iter().filter(|u| u.uid == 0).collect();
    let evidence = zero
        .iter()
        .map(|u| user_evidence(&passwd.file, u, "UID 0"))
        .collect();
    let ok = zero.len() == 1 && zero[0].name == "root";
    Ok(Outcome::judge(ok, evidence))
}

fn no_duplicates(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let Some(passwd) = cx.passwd()? else {
        return Ok(Outcome::not_applicable("no /etc/passwd"));
    };
    let mut by_uid: BTreeMap<u32, Vec<&User>> = BTreeMap::new();
    let mut by_name: BTreeMap<&str, Vec<&User>> = BTreeMap::new();
    for u in &passwd.users {
        by_uid.entry(u.uid).or_default().push(u);
        by_name.entry(u.name.as_str()).or_default().push(u);
    }
    let lines = |users: &[&User]| {
        users
            .iter()
            .map(|u| format!("{} (line {})", u.name, u.line))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut found = Vec::new();
    for (uid, users) in by_uid.iter().filter(|(_, v)| v.len() > 1) {
        found.push(Evidence::file(
            &passwd.file,
            format!("UID {uid} shared by {}", lines(users)),
        ));
    }
    for (name, users) in by_name.iter().filter(|(_, v)| v.len() > 1) {
        found.push(Evidence::file(
            &passwd.file,
            format!("name {name} on {}", lines(users)),
        ));
    }
    Ok(if found.is_empty() {
        Outcome::pass(vec![Evidence::file(
            &passwd.file,
            format!("{} accounts, names and UIDs unique", passwd.users.len()),
        )])
    } else {
        Outcome::fail(found)
    })
}

/// A shell that refuses interactive logins.
fn is_nologin(shell: &str) -> bool {
    shell.ends_with("/nologin") || shell.ends_with("/false") || shell == "/dev/null"
}

/// The accounts whose shell is their one job (`sync:…:/bin/sync`).
fn is_special_account(u: &User) -> bool {
    matches!(
        (u.name.as_str(), u.shell.rsplit('/').next()),
        ("sync", Some("sync")) | ("shutdown", Some("shutdown")) | ("halt", Some("halt"))
    )
}

fn system_accounts_nologin(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let Some(passwd) = cx.passwd()? else {
        return Ok(Outcome::not_applicable("no /etc/passwd"));
    };
    let uid_min = cx
        .login_defs()?
        .and_then(|d| d.number("UID_MIN"))
        .map_or(1000, |(v, _)| v);
    let shell_of = |u: &User| {
        if u.shell.is_empty() {
            "/bin/sh (empty shell field)".to_owned()
        } else {
            u.shell.clone()
        }
    };
    let can_login: Vec<Evidence> = passwd
        .users
        .iter()
        .filter(|u| i64::from(u.uid) < uid_min && u.name != "root")
        .filter(|u| !is_nologin(&u.shell) && !is_special_account(u))
        .map(|u| {
            user_evidence(
                &passwd.file,
                u,
                &format!("UID {} has shell {}", u.uid, shell_of(u)),
            )
        })
        .collect();
    Ok(if can_login.is_empty() {
        Outcome::pass(vec![Evidence::file(
            &passwd.file,
            format!("every account below UID {uid_min} other than root has a nologin shell"),
        )])
    } else {
        Outcome::fail(can_login)
    })
}

/// Files where login shells pick up `TMOUT`.
fn profile_files(cx: &Context<'_>) -> Result<Vec<String>, BaselineError> {
    let mut files = vec!["etc/profile".to_owned()];
    files.extend(cx.tree.list_suffixed("etc/profile.d", ".sh")?);
    files.push("etc/bash.bashrc".to_owned());
    files.push("etc/bashrc".to_owned());
    Ok(files)
}

/// What the shell files do with TMOUT: its assignments (value, where) and
/// the places that make it read-only.
#[derive(Debug, Default)]
struct Tmout {
    assigned: Vec<(Option<u64>, Evidence)>,
    readonly: Vec<Evidence>,
}

impl Tmout {
    fn scan(&mut self, text: &str, file: &str) {
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.starts_with('#') || !line.contains("TMOUT") {
                continue;
            }
            let evidence = Evidence::at(file, line_number(i), line.to_owned());
            for statement in line.split([';', '&', '|']) {
                self.statement(statement, &evidence);
            }
        }
    }

    fn statement(&mut self, statement: &str, evidence: &Evidence) {
        let mut words = statement.split_whitespace().peekable();
        while words
            .peek()
            .is_some_and(|w| matches!(*w, "then" | "else" | "do" | "{"))
        {
            words.next();
        }
        let Some(first) = words.next() else {
            return;
        };
        let words: Vec<&str> = std::iter::once(first).chain(words).collect();
        let readonly = match first {
            "readonly" => true,
            "declare" | "typeset" => words.iter().any(|w| w.starts_with('-') && w.contains('r')),
            _ => false,
        };
        let declaring = matches!(first, "export" | "readonly" | "declare" | "typeset");
        let names = if declaring { &words[1..] } else { &words[..1] };
        for word in names {
            if word.starts_with('#') {
                break;
            }
            let (name, value) = match word.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (*word, None),
            };
            if name != "TMOUT" {
                continue;
            }
            if let Some(value) = value {
                let value = value.trim_matches(['"', '\'']);
                self.assigned.push((value.parse().ok(), evidence.clone()));
            }
            if readonly {
                self.readonly.push(evidence.clone());
            }
        }
    }
}

fn session_timeout(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let mut tmout = Tmout::default();
    for rel in profile_files(cx)? {
        if let Some(text) = cx.tree.read(&rel)? {
            tmout.scan(&text, &cx.tree.show(&rel));
        }
    }
    if tmout.assigned.is_empty() {
        return Ok(Outcome::fail(vec![Evidence::note(
            "TMOUT not set in /etc/profile, /etc/profile.d/*.sh, /etc/bash.bashrc or /etc/bashrc",
        )]));
    }
    let values_ok = tmout
        .assigned
        .iter()
        .all(|(v, _)| v.is_some_and(|v| (1..=900).contains(&v)));
    let mut evidence: Vec<Evidence> = tmout.assigned.iter().map(|(_, e)| e.clone()).collect();
    if tmout.readonly.is_empty() {
        evidence.push(Evidence::note("TMOUT is not made readonly"));
    } else {
        evidence.extend(tmout.readonly.iter().cloned());
    }
    evidence.dedup();
    Ok(Outcome::judge(
        values_ok && !tmout.readonly.is_empty(),
        evidence,
    ))
}

fn expired_passwords(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let Some(shadow) = cx.shadow()? else {
        return Ok(Outcome::not_applicable("no /etc/shadow"));
    };
    let today = cx.today();
    let mut expired = Vec::new();
    for e in shadow.entries.iter().filter(|e| e.has_usable_password()) {
        // 0 means "change at next login", 99999 and more mean "never".
        let (Some(changed), Some(max)) = (e.last_change, e.max_days) else {
            continue;
        };
        if changed <= 0 || !(0..99_999).contains(&max) {
            continue;
        }
        let expires = changed.saturating_add(max);
        let disabled = e
            .inactive
            .is_some_and(|i| today > expires.saturating_add(i))
            || e.expire.is_some_and(|x| x >= 0 && today >= x);
        if today > expires && !disabled {
            expired.push(Evidence::at(
                &shadow.file,
                e.line,
                format!(
                    "{}: password changed {}, max {max} days, expired {}",
                    e.name,
                    civil_date(changed),
                    civil_date(expires)
                ),
            ));
        }
    }
    Ok(if expired.is_empty() {
        Outcome::pass(vec![Evidence::file(
            &shadow.file,
            format!(
                "no active account past its password max age on {}",
                civil_date(today)
            ),
        )])
    } else {
        Outcome::fail(expired)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmout_assignments_and_readonly_forms() {
        let mut t = Tmout::default();
        t.scan(
            "# TMOUT=5\nTMOUT=600\nreadonly TMOUT\nexport TMOUT\nif true; then declare -rx TMOUT=\"300\"; fi\n",
            "/etc/profile.d/tmout.sh",
        );
        let values: Vec<Option<u64>> = t.assigned.iter().map(|(v, _)| *v).collect();
        assert_eq!(values, [Some(600), Some(300)]);
        assert_eq!(t.readonly.len(), 2);
        assert_eq!(t.readonly[0].line, Some(3));
    }

    #[test]
    fn special_accounts_and_nologin_shells() {
        let user = |name: &str, shell: &str| User {
            name: name.into(),
            password: "x".into(),
            uid: 5,
            gid: 0,
            home: "/".into(),
            shell: shell.into(),
            line: 1,
        };
        assert!(is_special_account(&user("sync", "/bin/sync")));
        assert!(!is_special_account(&user("sync", "/bin/bash")));
        assert!(is_nologin("/usr/sbin/nologin"));
        assert!(is_nologin("/bin/false"));
        assert!(!is_nologin("/bin/sh"));
    }

    proptest::proptest! {
        #[test]
        fn tmout_scan_never_panics(text in "(?s)[A-Za-z=;&|\"' \n#-]{0,300}TMOUT[=0-9 ;\n-]{0,40}") {
            Tmout::default().scan(&text, "/etc/profile");
        }
    }
}
