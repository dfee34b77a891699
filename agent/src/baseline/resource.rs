//! Resource control (资源控制): room left on disks and in memory, per-user
//! limits (`limits.conf`, as pam_limits reads it), and swap where the
//! host's role calls for it.

use std::collections::BTreeSet;

use super::login_defs::line_number;
use super::{BaselineError, Check, Context, Evidence, Outcome, Severity};

pub(super) const CHECKS: &[Check] = &[
    Check {
        id: "RES-001",
        title: "disk usage",
        severity: Severity::Medium,
        remediation: "Free space (old logs, packages caches, core files) or grow the filesystem; keep every filesystem below 85 % of its space and inodes.",
        run: disk_usage,
    },
    Check {
        id: "RES-002",
        title: "memory usage",
        severity: Severity::Medium,
        remediation: "Find what holds the memory (`ps aux --sort=-rss`), fix leaks or limits, or add memory; keep MemAvailable at 10 % or more.",
        run: memory_usage,
    },
    Check {
        id: "RES-003",
        title: "per-user resource limits",
        severity: Severity::Low,
        remediation: "In /etc/security/limits.d/60-baseline.conf set `* hard core 0`, and `nofile` and `nproc` limits for the service accounts (e.g. `postgres - nofile 65536`).",
        run: user_limits,
    },
    Check {
        id: "RES-004",
        title: "swap present on database hosts",
        severity: Severity::Low,
        remediation: "Add swap on database hosts (a swap file or partition in /etc/fstab) so a memory peak pages out instead of waking the OOM killer; set vm.swappiness low.",
        run: swap_on_database_hosts,
    },
];

/// Usage at or above which a filesystem fails RES-001.
const DISK_LIMIT_PERCENT: u64 = 85;
/// Filesystem types that hold files on local storage; others (pseudo,
/// network, read-only images) are skipped, as `df -l -x squashfs` would.
const LOCAL_FS: &[&str] = &[
    "ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs", "vfat", "exfat", "jfs", "reiserfs",
    "nilfs2", "bcachefs", "overlay",
];

fn disk_usage(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    if !cx.tree.is_live() {
        return Ok(Outcome::not_applicable(format!(
            "disk usage is measured with statvfs on the live root (/) only; under {} it would measure the machine running the check",
            cx.tree.show_root("")
        )));
    }
    let Some(mounts) = cx.tree.read("proc/self/mounts")? else {
        return Ok(Outcome::not_applicable("no /proc/self/mounts"));
    };
    let mut seen = BTreeSet::new();
    let mut evidence = Vec::new();
    let mut ok = true;
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(device), Some(mount), Some(fstype)) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            continue;
        };
        if !LOCAL_FS.contains(fstype) || !seen.insert(*device) {
            continue;
        }
        // /proc/mounts escapes spaces as \040.
        let mount = mount.replace("\\040", " ");
        let Ok(stat) = rustix::fs::statvfs(mount.as_str()) else {
            continue;
        };
        let space = percent(stat.f_blocks.saturating_sub(stat.f_bfree), stat.f_bavail);
        let inodes = percent(stat.f_files.saturating_sub(stat.f_ffree), stat.f_ffree);
        let full = space.max(inodes) >= DISK_LIMIT_PERCENT;
        ok &= !full;
        evidence.push(Evidence::note(format!(
            "{mount}: {space} % space, {inodes} % inodes used{}",
            if full { " (over 85 %)" } else { "" }
        )));
    }
    if evidence.is_empty() {
        return Ok(Outcome::not_applicable(
            "no local filesystem in /proc/self/mounts",
        ));
    }
    Ok(Outcome::judge(ok, evidence))
}

/// Used share as `df` computes it: used ÷ (used + available to users).
fn percent(used: u64, available: u64) -> u64 {
    let total = u128::from(used) + u128::from(available);
    if total == 0 {
        return 0;
    }
    // Round up, as df does, so 84.1 % shows as 85 %.
    u64::try_from((u128::from(used) * 100).div_ceil(total)).unwrap_or(100)
}

/// A `/proc/meminfo` field in kB.
fn meminfo_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, rest) = l.split_once(':')?;
        (k.trim() == key).then(|| rest.split_whitespace().next()?.parse().ok())?
    })
}

fn memory_usage(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let rel = "proc/meminfo";
    let Some(text) = cx.tree.read(rel)? else {
        return Ok(Outcome::not_applicable(format!(
            "no {} (not a live host)",
            cx.tree.show_root(rel)
        )));
    };
    let Some(total) = meminfo_field(&text, "MemTotal").filter(|t| *t > 0) else {
        return Ok(Outcome::error(format!(
            "{}: no MemTotal",
            cx.tree.show(rel)
        )));
    };
    // Kernels before 3.14 have no MemAvailable: estimate it as free(1) did.
    let available = meminfo_field(&text, "MemAvailable").unwrap_or_else(|| {
        ["MemFree", "Buffers", "Cached"]
            .iter()
            .filter_map(|k| meminfo_field(&text, k))
            .sum()
    });
    let share = available.saturating_mul(100) / total;
    let evidence = Evidence::file(
        cx.tree.show(rel),
        format!("MemAvailable {available} kB of MemTotal {total} kB ({share} %)"),
    );
    Ok(Outcome::judge(share >= 10, vec![evidence]))
}

/// One `domain type item value` line of limits.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Limit {
    domain: String,
    kind: String,
    item: String,
    value: String,
    evidence: Evidence,
}

fn parse_limits(text: &str, file: &str) -> Vec<Limit> {
    text.lines()
        .enumerate()
        .filter_map(|(i, raw)| {
            let line = raw.split('#').next().unwrap_or("").trim();
            let [domain, kind, item, value] = line.split_whitespace().collect::<Vec<_>>()[..]
            else {
                return None;
            };
            Some(Limit {
                domain: domain.to_owned(),
                kind: kind.to_owned(),
                item: item.to_owned(),
                value: value.to_owned(),
                evidence: Evidence::at(file, line_number(i), line.to_owned()),
            })
        })
        .collect()
}

fn user_limits(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let mut files = vec!["etc/security/limits.conf".to_owned()];
    files.extend(cx.tree.list_suffixed("etc/security/limits.d", ".conf")?);
    let mut limits = Vec::new();
    for rel in &files {
        if let Some(text) = cx.tree.read(rel)? {
            limits.extend(parse_limits(&text, &cx.tree.show(rel)));
        }
    }
    let mut evidence = Vec::new();
    let mut ok = true;
    // Files are read in order and a later line for the same domain wins.
    let core = limits
        .iter()
        .rev()
        .find(|l| l.domain == "*" && l.item == "core" && (l.kind == "hard" || l.kind == "-"));
    match core {
        Some(l) => {
            ok &= l.value == "0";
            evidence.push(l.evidence.clone());
        }
        None => {
            ok = false;
            evidence.push(Evidence::note("no `* hard core 0`"));
        }
    }
    for item in ["nofile", "nproc"] {
        match limits.iter().rev().find(|l| l.item == item) {
            Some(l) => evidence.push(l.evidence.clone()),
            None => {
                ok = false;
                evidence.push(Evidence::note(format!("no {item} limit set")));
            }
        }
    }
    Ok(Outcome::judge(ok, evidence))
}

fn swap_on_database_hosts(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let rel = "proc/swaps";
    let Some(text) = cx.tree.read(rel)? else {
        return Ok(Outcome::not_applicable(format!(
            "no {} (not a live host)",
            cx.tree.show_root(rel)
        )));
    };
    let swaps: Vec<Evidence> = text
        .lines()
        .enumerate()
        .skip(1)
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let text = format!(
                "swap {} ({} kB)",
                f.first().unwrap_or(&"?"),
                f.get(2).unwrap_or(&"?")
            );
            Evidence::at(cx.tree.show(rel), line_number(i), text)
        })
        .collect();
    if !cx.config.database {
        return Ok(
            Outcome::not_applicable("not a database host (baseline setting `database`)")
                .with(swaps),
        );
    }
    Ok(if swaps.is_empty() {
        Outcome::fail(vec![Evidence::file(
            cx.tree.show(rel),
            "no swap configured",
        )])
    } else {
        Outcome::pass(swaps)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_lines_and_comments() {
        let l = parse_limits(
            "# * hard core 0\n*  hard  core  0\n@db - nofile 65536 # comment\nbad line\n",
            "/etc/security/limits.conf",
        );
        assert_eq!(l.len(), 2);
        assert_eq!(l[1].domain, "@db");
        assert_eq!(l[1].evidence.line, Some(3));
    }

    #[test]
    fn usage_rounds_up_like_df() {
        assert_eq!(percent(841, 159), 85);
        assert_eq!(percent(0, 0), 0);
        assert_eq!(percent(u64::MAX, u64::MAX), 50);
        assert_eq!(
            meminfo_field("MemTotal:  100 kB\nMemAvailable: 9 kB\n", "MemAvailable"),
            Some(9)
        );
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(text in "(?s).{0,300}") {
            let _ = parse_limits(&text, "/l");
            let _ = meminfo_field(&text, "MemTotal");
        }
    }
}
