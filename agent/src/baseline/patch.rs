//! Patch level (PATCH-001, PATCH-002): security updates that apt knows of
//! but that are not installed, and a kernel installed since the last boot.
//!
//! Pending updates are found the way `apt list --upgradable` would find
//! them, without running apt: each installed package of dpkg's database
//! against the `Packages` lists that apt fetched from security archives
//! (`*security*_Packages` under /var/lib/apt/lists). The RHEL family
//! needs `dnf updateinfo`, a command the baseline does not run.

use std::collections::BTreeMap;
use std::io::BufReader;

use super::dpkg::{self, Stanza};
use super::{BaselineError, Context, Evidence, Outcome};

const DPKG_STATUS: &str = "var/lib/dpkg/status";
const APT_LISTS: &str = "var/lib/apt/lists";
/// Pending packages named in the evidence, at most.
const NAMED: usize = 20;

pub(super) fn security_updates(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let Some(status) = cx.tree.open(DPKG_STATUS)? else {
        let reason = if cx.tree.exists("var/lib/rpm") {
            "an RPM-based host: pending security updates come from `dnf updateinfo`, which the baseline does not run"
        } else {
            "no package database (/var/lib/dpkg/status)"
        };
        return Ok(Outcome::not_applicable(reason));
    };
    let mut installed: BTreeMap<(String, String), String> = BTreeMap::new();
    dpkg::stanzas(BufReader::new(status), |s| {
        if s.installed() {
            installed.insert((s.package, s.architecture), s.version);
        }
    });
    let lists: Vec<String> = cx
        .tree
        .list(APT_LISTS)?
        .into_iter()
        .filter(|n| n.contains("security") && n.ends_with("_Packages"))
        .collect();
    if lists.is_empty() {
        return Ok(Outcome::not_applicable(
            "no security package lists in /var/lib/apt/lists (no security archive configured, lists compressed, or `apt-get update` never ran): cannot tell what is pending",
        ));
    }
    // package → (installed, newest security version)
    let mut pending: BTreeMap<String, (String, String)> = BTreeMap::new();
    for name in &lists {
        let Some(file) = cx.tree.open(&format!("{APT_LISTS}/{name}"))? else {
            continue;
        };
        dpkg::stanzas(BufReader::new(file), |s| {
            consider(&installed, &mut pending, s);
        });
    }
    let mut evidence = vec![Evidence::note(format!(
        "{} security updates pending ({} installed packages against {} security lists)",
        pending.len(),
        installed.len(),
        lists.len()
    ))];
    evidence.extend(
        pending
            .iter()
            .take(NAMED)
            .map(|(name, (have, new))| Evidence::note(format!("{name} {have} → {new}"))),
    );
    Ok(Outcome::judge(pending.is_empty(), evidence))
}

/// Records `candidate` if it is newer than the installed package of the
/// same name and architecture (`all` matching any).
fn consider(
    installed: &BTreeMap<(String, String), String>,
    pending: &mut BTreeMap<String, (String, String)>,
    candidate: Stanza,
) {
    let have = installed
        .get(&(candidate.package.clone(), candidate.architecture.clone()))
        .or_else(|| {
            installed
                .range((candidate.package.clone(), String::new())..)
                .take_while(|((p, _), _)| *p == candidate.package)
                .find(|((_, arch), _)| candidate.architecture == "all" || arch == "all")
                .map(|(_, v)| v)
        });
    let Some(have) = have else {
        return;
    };
    if dpkg::compare(&candidate.version, have).is_gt() {
        let entry = pending
            .entry(candidate.package)
            .or_insert_with(|| (have.clone(), candidate.version.clone()));
        if dpkg::compare(&candidate.version, &entry.1).is_gt() {
            entry.1 = candidate.version;
        }
    }
}

pub(super) fn kernel_current(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let rel = "proc/sys/kernel/osrelease";
    let Some(running) = cx.tree.read(rel)? else {
        return Ok(Outcome::not_applicable(format!(
            "no {} (not a live host)",
            cx.tree.show_root(rel)
        )));
    };
    let running = running.trim().to_owned();
    let mut kernels: Vec<String> = cx
        .tree
        .list("boot")?
        .into_iter()
        .filter_map(|n| n.strip_prefix("vmlinuz-").map(str::to_owned))
        .collect();
    for version in cx.tree.list("usr/lib/modules")? {
        if cx
            .tree
            .exists(&format!("usr/lib/modules/{version}/vmlinuz"))
        {
            kernels.push(version);
        }
    }
    let Some(newest) = kernels.iter().max_by(|a, b| dpkg::compare(a, b)).cloned() else {
        return Ok(Outcome::not_applicable(
            "no /boot/vmlinuz-* or /usr/lib/modules/*/vmlinuz (the kernel is not managed here, e.g. a container)",
        ));
    };
    let evidence = vec![
        Evidence::file(cx.tree.show(rel), format!("running {running}")),
        Evidence::note(format!("newest installed {newest}")),
    ];
    let ok = dpkg::compare(&running, &newest).is_ge();
    Ok(Outcome::judge(ok, evidence))
}
