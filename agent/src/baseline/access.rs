//! Access control (访问控制): who owns and may change the files that define
//! accounts, privileges and scheduled jobs; the default umask; files in
//! system directories that anyone may write or that nobody owns; and who
//! may become root.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::login_defs::{line_number, strtol};
use super::pam::PamStack;
use super::sudoers::{self, Sudoers};
use super::tree::Tree;
use super::{BaselineError, Check, Context, Evidence, Outcome, Severity};

pub(super) const CHECKS: &[Check] = &[
    Check {
        id: "FILE-001",
        title: "/etc/passwd permissions",
        severity: Severity::High,
        remediation: "`chown root:root /etc/passwd; chmod 644 /etc/passwd`.",
        run: passwd_permissions,
    },
    Check {
        id: "FILE-002",
        title: "/etc/shadow permissions",
        severity: Severity::High,
        remediation: "`chown root:shadow /etc/shadow; chmod 640 /etc/shadow` (root:root and 000 on the RHEL family).",
        run: shadow_permissions,
    },
    Check {
        id: "FILE-003",
        title: "/etc/group and gshadow permissions",
        severity: Severity::Medium,
        remediation: "`chmod 644 /etc/group; chmod 640 /etc/gshadow`.",
        run: group_permissions,
    },
    Check {
        id: "FILE-004",
        title: "sudoers permissions and NOPASSWD",
        severity: Severity::Medium,
        remediation: "`chmod 440 /etc/sudoers /etc/sudoers.d/*`; remove `NOPASSWD: ALL` from the rules of people and groups (keep it, if at all, for named system accounts with named commands); edit with visudo.",
        run: sudoers_policy,
    },
    Check {
        id: "FILE-005",
        title: "default umask",
        severity: Severity::Low,
        remediation: "Set `UMASK 027` in /etc/login.defs and `umask 027` in /etc/profile (and /etc/bashrc on the RHEL family).",
        run: default_umask,
    },
    Check {
        id: "FILE-006",
        title: "world-writable files in system dirs",
        severity: Severity::Medium,
        remediation: "Remove the write bit for others from each listed file (`chmod o-w FILE`), or set the sticky bit on a shared directory (`chmod +t DIR`).",
        run: world_writable,
    },
    Check {
        id: "FILE-007",
        title: "cron files permissions",
        severity: Severity::Medium,
        remediation: "`chown root:root` and `chmod og-w` /etc/crontab, /etc/cron.d and its files, and /etc/cron.{hourly,daily,weekly,monthly}.",
        run: cron_permissions,
    },
    Check {
        id: "FILE-008",
        title: "unowned files in system dirs",
        severity: Severity::Low,
        remediation: "Give each listed file a current owner and group (`chown root:root FILE`), or remove it if it belonged to a deleted account or package.",
        run: unowned_files,
    },
    Check {
        id: "ACC-001",
        title: "separation of admin roles",
        severity: Severity::Low,
        remediation: "Give each administrator a named account in the sudo (Debian) or wheel (RHEL) group (`usermod -aG sudo NAME`) instead of sharing root; review the list.",
        run: admin_roles,
    },
    Check {
        id: "ACC-002",
        title: "su restricted",
        severity: Severity::Low,
        remediation: "Uncomment or add `auth required pam_wheel.so use_uid` in /etc/pam.d/su, so only members of the wheel (or sudo) group can su.",
        run: su_restricted,
    },
];

/// Judges one file's mode and owners; none when the file is absent.
fn file_mode(
    cx: &Context<'_>,
    rel: &str,
    max_mode: u32,
    owner_root: bool,
    groups: &[u32],
) -> Result<Option<(bool, Evidence)>, BaselineError> {
    let Some(stat) = cx.tree.stat(rel)? else {
        return Ok(None);
    };
    let ok = stat.mode & !max_mode == 0
        && (!owner_root || stat.uid == 0)
        && (groups.is_empty() || groups.contains(&stat.gid));
    Ok(Some((ok, stat.evidence(cx.tree.show(rel)))))
}

/// Judges a list of (file, max mode, owner must be root, allowed groups);
/// not applicable when none of them exists.
fn files_mode(
    cx: &Context<'_>,
    files: &[(&str, u32, bool, &[u32])],
) -> Result<Outcome, BaselineError> {
    let mut all_ok = true;
    let mut evidence = Vec::new();
    for (rel, max, root, groups) in files {
        if let Some((ok, e)) = file_mode(cx, rel, *max, *root, groups)? {
            all_ok &= ok;
            evidence.push(e);
        }
    }
    if evidence.is_empty() {
        let names: Vec<String> = files.iter().map(|f| cx.tree.show(f.0)).collect();
        return Ok(Outcome::not_applicable(format!(
            "no {}",
            names.join(" or ")
        )));
    }
    Ok(Outcome::judge(all_ok, evidence))
}

fn passwd_permissions(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    files_mode(cx, &[("etc/passwd", 0o644, true, &[])])
}

fn shadow_permissions(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let mut groups = vec![0];
    if let Some(g) = cx.group()?.and_then(|g| g.by_name("shadow")) {
        groups.push(g.gid);
    }
    files_mode(cx, &[("etc/shadow", 0o640, true, &groups)])
}

fn group_permissions(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    files_mode(
        cx,
        &[
            ("etc/group", 0o644, false, &[]),
            ("etc/gshadow", 0o640, false, &[]),
        ],
    )
}

/// A sudoers subject that is a person or a group of people: anything but
/// a named account below UID_MIN.
fn is_human(cx: &Context<'_>, who: &str, uid_min: i64) -> Result<bool, BaselineError> {
    if who.starts_with('%') || who == "ALL" {
        return Ok(true);
    }
    let uid = match who.strip_prefix('#') {
        Some(n) => n.parse::<i64>().ok(),
        None => cx
            .passwd()?
            .and_then(|p| p.by_name(who))
            .map(|u| i64::from(u.uid)),
    };
    // Unknown names and aliases are treated as people.
    Ok(uid.is_none_or(|uid| uid >= uid_min))
}

fn sudoers_policy(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let Some(sudoers) = Sudoers::load(&cx.tree)? else {
        return Ok(Outcome::not_applicable(
            "no /etc/sudoers (sudo is not installed)",
        ));
    };
    let uid_min = cx
        .login_defs()?
        .and_then(|d| d.number("UID_MIN"))
        .map_or(1000, |(v, _)| v);
    let mut ok = true;
    let mut evidence = Vec::new();
    for rel in &sudoers.files {
        if let Some((mode_ok, e)) = file_mode(cx, rel, 0o440, false, &[])? {
            ok &= mode_ok;
            if !mode_ok || rel == sudoers::MAIN {
                evidence.push(e);
            }
        }
    }
    for grant in &sudoers.nopasswd_all {
        let mut humans = Vec::new();
        for who in &grant.who {
            if is_human(cx, who, uid_min)? {
                humans.push(who.as_str());
            }
        }
        let text = if humans.is_empty() {
            format!("{} (system account, allowed)", grant.evidence.text)
        } else {
            ok = false;
            format!(
                "{} (NOPASSWD: ALL for {})",
                grant.evidence.text,
                humans.join(", ")
            )
        };
        evidence.push(Evidence {
            text,
            ..grant.evidence.clone()
        });
    }
    Ok(Outcome::judge(ok, evidence))
}

/// `umask NNN` lines of the shell start-up files.
fn shell_umasks(cx: &Context<'_>) -> Result<Vec<(Option<u32>, Evidence)>, BaselineError> {
    let mut files = vec!["etc/profile".to_owned()];
    files.extend(cx.tree.list_suffixed("etc/profile.d", ".sh")?);
    files.extend(["etc/bash.bashrc".to_owned(), "etc/bashrc".to_owned()]);
    let mut out = Vec::new();
    for rel in files {
        let Some(text) = cx.tree.read(&rel)? else {
            continue;
        };
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            let mut words = line
                .split(|c: char| c.is_whitespace() || c == ';')
                .filter(|w| !w.is_empty())
                .skip_while(|w| matches!(*w, "then" | "else" | "do" | "{"));
            if words.next() != Some("umask") {
                continue;
            }
            let value = words
                .next()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| (b'0'..=b'7').contains(&b)))
                .and_then(|v| u32::from_str_radix(v, 8).ok());
            out.push((
                value,
                Evidence::at(cx.tree.show(&rel), line_number(i), line.to_owned()),
            ));
        }
    }
    Ok(out)
}

fn default_umask(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let mut seen: Vec<(Option<u32>, Evidence)> = Vec::new();
    if let Some(defs) = cx.login_defs()? {
        match defs.get("UMASK") {
            Some(s) => seen.push((
                strtol(&s.value).and_then(|v| u32::try_from(v).ok()),
                defs.evidence("UMASK")
                    .unwrap_or_else(|| defs.unset("UMASK")),
            )),
            None => seen.push((Some(0o022), defs.unset("UMASK"))),
        }
    }
    seen.extend(shell_umasks(cx)?);
    if seen.is_empty() {
        return Ok(Outcome::fail(vec![Evidence::note(
            "no umask set in /etc/login.defs or the shell profiles: the default 022 applies",
        )]));
    }
    // "027 or stricter": every bit of 027 masked.
    let ok = seen
        .iter()
        .all(|(v, _)| v.is_some_and(|v| v & 0o027 == 0o027));
    Ok(Outcome::judge(
        ok,
        seen.into_iter().map(|(_, e)| e).collect(),
    ))
}

/// The system directories walked for FILE-006 and FILE-008.
const WALKED: &[&str] = &["etc", "usr/bin", "usr/sbin", "usr/lib"];
const WALK_MAX_ENTRIES: usize = 200_000;
const WALK_MAX_DEPTH: usize = 12;
/// Paths kept per finding kind, for evidence.
const SAMPLES: usize = 20;

/// What one walk of the system directories found.
#[derive(Debug, Default)]
pub(crate) struct Walk {
    pub entries: usize,
    pub truncated: bool,
    pub world_writable: Vec<String>,
    pub world_writable_count: usize,
    /// Per owner UID: how many entries, and a few of them.
    pub by_uid: BTreeMap<u32, (usize, Vec<String>)>,
    pub by_gid: BTreeMap<u32, (usize, Vec<String>)>,
}

impl Walk {
    /// Walks without following links, bounded in depth and in entries.
    pub fn run(tree: &Tree) -> Self {
        let mut walk = Walk::default();
        for dir in WALKED {
            let Ok(real) = tree.resolve(dir) else {
                continue;
            };
            walk.visit(&real, &tree.show(dir), 0);
        }
        walk
    }

    fn visit(&mut self, real: &Path, shown: &str, depth: usize) {
        let Ok(entries) = fs::read_dir(real) else {
            return;
        };
        let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            if self.entries >= WALK_MAX_ENTRIES {
                self.truncated = true;
                return;
            }
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.file_type().is_symlink() {
                continue;
            }
            self.entries += 1;
            let path = format!("{shown}/{}", entry.file_name().to_string_lossy());
            let mode = meta.mode();
            let sticky_dir = meta.is_dir() && mode & 0o1000 != 0;
            if mode & 0o002 != 0 && !sticky_dir {
                self.world_writable_count += 1;
                if self.world_writable.len() < SAMPLES {
                    self.world_writable
                        .push(format!("{path} (mode {:04o})", mode & 0o7777));
                }
            }
            for (map, id) in [
                (&mut self.by_uid, meta.uid()),
                (&mut self.by_gid, meta.gid()),
            ] {
                let (count, samples) = map.entry(id).or_default();
                *count += 1;
                if samples.len() < SAMPLES {
                    samples.push(path.clone());
                }
            }
            if meta.is_dir() {
                if depth + 1 < WALK_MAX_DEPTH {
                    self.visit(&entry.path(), &path, depth + 1);
                } else {
                    self.truncated = true;
                }
            }
        }
    }

    fn scope(&self) -> Evidence {
        let bound = if self.truncated {
            format!(
                " (bounded walk: nothing deeper than {WALK_MAX_DEPTH} levels or past {WALK_MAX_ENTRIES} entries was looked at)"
            )
        } else {
            String::new()
        };
        Evidence::note(format!(
            "{} entries under /etc, /usr/bin, /usr/sbin, /usr/lib{bound}",
            self.entries
        ))
    }
}

fn world_writable(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let walk = cx.walk();
    let mut evidence = vec![walk.scope()];
    if walk.world_writable_count == 0 {
        return Ok(Outcome::pass(evidence));
    }
    evidence.extend(walk.world_writable.iter().map(Evidence::note));
    if walk.world_writable_count > walk.world_writable.len() {
        evidence.push(Evidence::note(format!(
            "… {} world-writable in all",
            walk.world_writable_count
        )));
    }
    Ok(Outcome::fail(evidence))
}

fn unowned_files(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let (Some(passwd), Some(group)) = (cx.passwd()?, cx.group()?) else {
        return Ok(Outcome::not_applicable(
            "no /etc/passwd or /etc/group to match owners against",
        ));
    };
    let walk = cx.walk();
    let mut found = Vec::new();
    for (uid, (count, samples)) in walk.by_uid.iter().filter(|(uid, _)| !passwd.has_uid(**uid)) {
        found.push(Evidence::note(format!(
            "UID {uid} (no such user): {count} entries, e.g. {}",
            samples
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    for (gid, (count, samples)) in walk.by_gid.iter().filter(|(gid, _)| !group.has_gid(**gid)) {
        found.push(Evidence::note(format!(
            "GID {gid} (no such group): {count} entries, e.g. {}",
            samples
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut evidence = vec![walk.scope()];
    let ok = found.is_empty();
    evidence.extend(found);
    Ok(Outcome::judge(ok, evidence))
}

const CRON_PATHS: &[&str] = &[
    "etc/crontab",
    "etc/cron.d",
    "etc/cron.hourly",
    "etc/cron.daily",
    "etc/cron.weekly",
    "etc/cron.monthly",
];

fn cron_permissions(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let mut paths: Vec<String> = CRON_PATHS.iter().map(|p| (*p).to_owned()).collect();
    paths.extend(
        cx.tree
            .list("etc/cron.d")?
            .into_iter()
            .map(|n| format!("etc/cron.d/{n}")),
    );
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for rel in &paths {
        let Some(stat) = cx.tree.stat(rel)? else {
            continue;
        };
        let ok = stat.uid == 0 && stat.mode & 0o022 == 0;
        let e = stat.evidence(cx.tree.show(rel));
        if ok {
            good.push(e);
        } else {
            bad.push(e);
        }
    }
    Ok(match (good.is_empty(), bad.is_empty()) {
        (true, true) => {
            Outcome::not_applicable("no /etc/crontab or /etc/cron.* (cron is not installed)")
        }
        (_, true) => Outcome::pass(good),
        _ => Outcome::fail(bad),
    })
}

fn admin_roles(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let Some(group) = cx.group()? else {
        return Ok(Outcome::not_applicable("no /etc/group"));
    };
    let passwd = cx.passwd()?;
    let mut admins = Vec::new();
    let mut evidence = Vec::new();
    for name in ["sudo", "wheel", "admin"] {
        let Some(g) = group.by_name(name) else {
            continue;
        };
        let mut members: Vec<&str> = g.members.iter().map(String::as_str).collect();
        if let Some(p) = passwd {
            members.extend(
                p.users
                    .iter()
                    .filter(|u| u.gid == g.gid)
                    .map(|u| u.name.as_str()),
            );
        }
        members.retain(|m| *m != "root");
        members.sort_unstable();
        members.dedup();
        let list = if members.is_empty() {
            "no members".to_owned()
        } else {
            members.join(", ")
        };
        evidence.push(Evidence::at(
            &group.file,
            g.line,
            format!("{name} (GID {}): {list}", g.gid),
        ));
        admins.extend(members);
    }
    if evidence.is_empty() {
        evidence.push(Evidence::file(&group.file, "no sudo, wheel or admin group"));
    }
    Ok(Outcome::judge(!admins.is_empty(), evidence))
}

fn su_restricted(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let Some(stack) = PamStack::load_first(&cx.tree, &["su"], "auth")? else {
        return Ok(Outcome::not_applicable("no /etc/pam.d/su"));
    };
    let wheel: Vec<_> = stack.module("pam_wheel.so").collect();
    Ok(match wheel.iter().find(|r| r.flag("use_uid")) {
        Some(rule) => Outcome::pass(vec![rule.evidence()]),
        None => Outcome::fail(match wheel.first() {
            Some(rule) => vec![rule.evidence()],
            None => vec![stack.absent("pam_wheel.so use_uid")],
        }),
    })
}
