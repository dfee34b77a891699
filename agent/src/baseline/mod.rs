//! The security baseline: the daily inspection of a host against the MLPS 2.0
//! level 2 host controls (identity, access control, audit, intrusion
//! prevention, malware prevention, resource control), as the catalogue in
//! docs/baseline.md lists them.
//!
//! Every check reads files below a root directory (`/` on a live host, a
//! copy of one in tests and for offline audits) through `tree::Tree`,
//! which resolves symbolic links inside the root, so a fixture or a mounted
//! image is never mixed with the machine running the agent. Checks of live
//! state (processes, sockets, sysctls) read `ROOT/proc`, so a fixture can
//! supply it too; where it is absent they say not-applicable and why.
//!
//! Each check family is a module (`identity`, `ssh`, `access`, …) holding a
//! table of `Check`s; the parsers they share follow the programs' own
//! rules (`login_defs`, `sshd_config`, `pam`, …). A check is a plain
//! function from a `Context` (the tree plus parsed files, each parsed
//! once per run) to an `Outcome`; [`run`] calls them all in catalogue
//! order and weighs the results into a score. Nothing here writes, runs a
//! command, or uses the clock: the caller passes the time. The agent's
//! schedule (`[baseline]`, the inspection's metrics) is in [`schedule`].

mod access;
mod accounts;
mod audit;
mod context;
mod dpkg;
mod env_file;
mod firewall;
#[doc(hidden)]
pub mod fuzzing;
mod identity;
mod intrusion;
mod login_defs;
mod logrotate;
mod malware;
mod netfilter;
mod pam;
mod password;
mod patch;
mod procfs;
mod resource;
pub mod schedule;
mod services;
mod ssh;
mod sshd_config;
mod sudoers;
mod systemd;
mod tree;

use std::path::Path;

use serde::{Deserialize, Serialize};

// The inspection record lives in patrol-shared, which the collector reads
// too; re-exported so that callers keep naming it `baseline::Inspection`.
pub use patrol_shared::inspection::{
    score, Category, CheckResult, Evidence, Inspection, Severity, Summary, Verdict,
};

pub(crate) use self::context::Context;
use self::tree::Tree;

/// The agent's version, as recorded in each inspection.
const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the catalogue leaves to each host: its role and its allowlists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaselineConfig {
    /// TCP ports that may listen on a non-loopback address (NET-001).
    pub allowed_tcp_ports: Vec<u16>,
    /// UDP ports that may be bound on a non-loopback address (NET-001).
    pub allowed_udp_ports: Vec<u16>,
    /// The host forwards packets, so IP forwarding is expected (NET-003).
    pub router: bool,
    /// A database host, which must have swap (RES-004).
    pub database: bool,
    /// An appliance that cannot run an antivirus engine (MAL-001, MAL-002).
    pub antivirus_exempt: bool,
    /// Patrol's own file-integrity watch covers this host (IDS-001).
    pub file_integrity_watch: bool,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        BaselineConfig {
            allowed_tcp_ports: vec![22],
            allowed_udp_ports: Vec::new(),
            router: false,
            database: false,
            antivirus_exempt: false,
            file_integrity_watch: false,
        }
    }
}

/// Why the baseline could not run at all, or a file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaselineError {
    #[error("cannot read {path}: {cause}")]
    Unreadable { path: String, cause: String },
    #[error("{path}: includes nest deeper than {limit} levels (a loop?)")]
    IncludeDepth { path: String, limit: usize },
    #[error("cannot inspect {root}: {cause}")]
    Root { root: String, cause: String },
}

/// Runs the whole catalogue with the default host settings.
pub fn run(root: &Path, host: &str, now_ms: i64) -> Inspection {
    run_with(root, host, now_ms, &BaselineConfig::default())
}

/// Runs the whole catalogue with this host's settings.
pub fn run_with(root: &Path, host: &str, now_ms: i64, config: &BaselineConfig) -> Inspection {
    let cx = Context::new(root, config, now_ms);
    let results: Vec<CheckResult> = catalogue()
        .flat_map(|(category, checks)| checks.iter().map(move |c| (category, c)))
        .map(|(category, check)| evaluate(&cx, category, check))
        .collect();
    let mut summary = Summary::default();
    for r in &results {
        match r.verdict {
            Verdict::Pass => summary.pass += 1,
            Verdict::Fail => summary.fail += 1,
            Verdict::NotApplicable => summary.not_applicable += 1,
            Verdict::Error => summary.error += 1,
        }
    }
    Inspection {
        host: host.to_owned(),
        root: root.display().to_string(),
        time_ms: now_ms,
        agent_version: AGENT_VERSION.to_owned(),
        score: score(&results),
        summary,
        results,
    }
}

/// Checks that `root` is a directory that can be listed: a root that
/// cannot be read would turn every check into an error.
pub fn check_root(root: &Path) -> Result<(), BaselineError> {
    std::fs::read_dir(root)
        .map(|_| ())
        .map_err(|e| BaselineError::Root {
            root: root.display().to_string(),
            cause: e.to_string(),
        })
}

/// The host name written in `ROOT/etc/hostname`, if any.
pub fn host_name(root: &Path) -> Option<String> {
    let text = Tree::new(root).read("etc/hostname").ok()??;
    let name = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    Some(name.to_owned())
}

/// Every check id, in catalogue order.
pub fn check_ids() -> Vec<&'static str> {
    catalogue()
        .flat_map(|(_, checks)| checks.iter().map(|c| c.id))
        .collect()
}

/// The families in catalogue order.
fn catalogue() -> impl Iterator<Item = (Category, &'static [Check])> {
    [
        (Category::Identity, identity::CHECKS),
        (Category::Ssh, ssh::CHECKS),
        (Category::Access, access::CHECKS),
        (Category::Audit, audit::CHECKS),
        (Category::Intrusion, intrusion::CHECKS),
        (Category::Firewall, firewall::CHECKS),
        (Category::Malware, malware::CHECKS),
        (Category::Resource, resource::CHECKS),
    ]
    .into_iter()
}

fn evaluate(cx: &Context<'_>, category: Category, check: &Check) -> CheckResult {
    // A bug in one check must not take the others (or the agent) down; the
    // parsers are written not to panic, this is the backstop.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (check.run)(cx)))
        .unwrap_or_else(|_| Ok(Outcome::error(format!("{}: internal error", check.id))))
        .unwrap_or_else(|e| Outcome::error(e.to_string()));
    CheckResult {
        id: check.id.to_owned(),
        title: check.title.to_owned(),
        category,
        severity: check.severity,
        verdict: outcome.verdict,
        evidence: outcome.evidence,
        reason: outcome.reason,
        remediation: check.remediation.to_owned(),
    }
}

/// One entry of the catalogue.
pub(crate) struct Check {
    pub id: &'static str,
    pub title: &'static str,
    pub severity: Severity,
    pub remediation: &'static str,
    pub run: fn(&Context<'_>) -> Result<Outcome, BaselineError>,
}

/// What a check found.
#[derive(Debug)]
pub(crate) struct Outcome {
    verdict: Verdict,
    evidence: Vec<Evidence>,
    reason: Option<String>,
}

impl Outcome {
    pub fn pass(evidence: Vec<Evidence>) -> Self {
        Outcome {
            verdict: Verdict::Pass,
            evidence,
            reason: None,
        }
    }

    pub fn fail(evidence: Vec<Evidence>) -> Self {
        Outcome {
            verdict: Verdict::Fail,
            evidence,
            reason: None,
        }
    }

    /// Pass when `ok`, fail otherwise, with the same evidence.
    pub fn judge(ok: bool, evidence: Vec<Evidence>) -> Self {
        if ok {
            Outcome::pass(evidence)
        } else {
            Outcome::fail(evidence)
        }
    }

    pub fn not_applicable(reason: impl Into<String>) -> Self {
        Outcome {
            verdict: Verdict::NotApplicable,
            evidence: Vec::new(),
            reason: Some(reason.into()),
        }
    }

    pub fn error(reason: impl Into<String>) -> Self {
        Outcome {
            verdict: Verdict::Error,
            evidence: Vec::new(),
            reason: Some(reason.into()),
        }
    }

    /// Adds evidence (to a not-applicable outcome, say).
    pub fn with(mut self, evidence: Vec<Evidence>) -> Self {
        self.evidence.extend(evidence);
        self
    }
}
