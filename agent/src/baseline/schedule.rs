//! The baseline on the agent's schedule: the `[baseline]` config section,
//! a task that runs the catalogue at start, every `interval` and on demand
//! (SIGUSR1: `systemctl kill -s USR1 patrol-agent`, or `kill -USR1 PID`;
//! on the blocking pool: it reads hundreds of files), hands each inspection to
//! the link whole, and keeps its figures as metrics for every sample set:
//!
//! - `patrol_baseline_check_passed{check_id,category,severity}`: 1 pass,
//!   0 fail; left out for not-applicable checks and for checks that could
//!   not be evaluated (an error is not a verdict on the host);
//! - `patrol_baseline_score`: the weighted score as a ratio (0–1), not the
//!   percent of the record; absent when no check applies;
//! - `patrol_baseline_results{verdict}`: how many checks ended each way;
//! - `patrol_baseline_last_run_timestamp_seconds`.
//!
//! The collector adds the `host` label, from the agent's certificate.

use std::path::PathBuf;
use std::time::Duration;

use patrol_shared::config as cfg;
use patrol_shared::model::{now_ms, Family};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{BaselineConfig, Inspection, Verdict};

/// `[baseline]` of the agent config: when and where to inspect, and the
/// catalogue's per-host settings ([`BaselineConfig`], whose keys are
/// repeated here so that the section is read, and its mistakes reported,
/// line by line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaselineSection {
    pub enabled: bool,
    #[serde(with = "cfg::duration")]
    pub interval: Duration,
    /// The directory the host's files are read below.
    pub root: PathBuf,
    pub allowed_tcp_ports: Vec<u16>,
    pub allowed_udp_ports: Vec<u16>,
    pub router: bool,
    pub database: bool,
    pub antivirus_exempt: bool,
    /// Set by the agent when its own `[fim]` watch is on.
    pub file_integrity_watch: bool,
}

impl Default for BaselineSection {
    fn default() -> Self {
        let c = BaselineConfig::default();
        BaselineSection {
            enabled: true,
            interval: Duration::from_secs(24 * 3600),
            root: PathBuf::from("/"),
            allowed_tcp_ports: c.allowed_tcp_ports,
            allowed_udp_ports: c.allowed_udp_ports,
            router: c.router,
            database: c.database,
            antivirus_exempt: c.antivirus_exempt,
            file_integrity_watch: c.file_integrity_watch,
        }
    }
}

impl BaselineSection {
    /// The catalogue's settings.
    pub fn catalogue(&self) -> BaselineConfig {
        BaselineConfig {
            allowed_tcp_ports: self.allowed_tcp_ports.clone(),
            allowed_udp_ports: self.allowed_udp_ports.clone(),
            router: self.router,
            database: self.database,
            antivirus_exempt: self.antivirus_exempt,
            file_integrity_watch: self.file_integrity_watch,
        }
    }

    /// Every problem, each naming its key.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.interval < Duration::from_secs(60) {
            p.push("baseline.interval: at least 1m (the contract asks for one a day)".into());
        }
        if !self.root.is_absolute() {
            p.push(format!(
                "baseline.root: {} is not an absolute path",
                self.root.display()
            ));
        }
        p
    }
}

/// The scheduled inspections: the latest one's metrics.
pub struct Inspector {
    latest: watch::Receiver<Vec<Family>>,
}

impl Inspector {
    /// Runs the catalogue now and every `section.interval` until `cancel`
    /// fires; each inspection goes to `out`.
    pub fn start(
        section: &BaselineSection,
        host: String,
        out: mpsc::Sender<Inspection>,
        cancel: CancellationToken,
    ) -> Inspector {
        let (tx, latest) = watch::channel(Vec::new());
        tokio::spawn(schedule(section.clone(), host, out, tx, cancel));
        Inspector { latest }
    }

    /// The latest inspection's families; none before the first finished.
    pub fn families(&self) -> Vec<Family> {
        self.latest.borrow().clone()
    }
}

async fn schedule(
    section: BaselineSection,
    host: String,
    out: mpsc::Sender<Inspection>,
    latest: watch::Sender<Vec<Family>>,
    cancel: CancellationToken,
) {
    let mut ticker = tokio::time::interval(section.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let catalogue = section.catalogue();
    let mut on_demand =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()).ok();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
            Some(()) = async {
                match on_demand.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                info!("SIGUSR1: running the security baseline now");
            }
        }
        let (root, name, settings) = (section.root.clone(), host.clone(), catalogue.clone());
        let run = tokio::task::spawn_blocking(move || {
            super::check_root(&root)?;
            Ok::<_, super::BaselineError>(super::run_with(&root, &name, now_ms(), &settings))
        });
        let inspection = match run.await {
            Ok(Ok(inspection)) => inspection,
            Ok(Err(e)) => {
                warn!(error = %e, "security baseline not run");
                continue;
            }
            Err(e) => {
                warn!(error = %e, "security baseline failed");
                continue;
            }
        };
        info!(
            score = ?inspection.score,
            failed = inspection.summary.fail,
            errors = inspection.summary.error,
            "security baseline inspected"
        );
        latest.send_replace(families(&inspection));
        tokio::select! {
            _ = cancel.cancelled() => return,
            sent = out.send(inspection) => if sent.is_err() { return },
        }
    }
}

/// The metrics of one inspection.
pub fn families(inspection: &Inspection) -> Vec<Family> {
    let mut checks = Family::gauge(
        "patrol_baseline_check_passed",
        "Security-baseline check: 1 passed, 0 failed; absent when not applicable or not evaluated.",
    );
    for r in &inspection.results {
        let value = match r.verdict {
            Verdict::Pass => 1.0,
            Verdict::Fail => 0.0,
            Verdict::NotApplicable | Verdict::Error => continue,
        };
        let labels = [
            ("check_id", r.id.as_str()),
            ("category", r.category.as_str()),
            ("severity", r.severity.as_str()),
        ];
        checks.push(&labels, value);
    }
    let mut results = Family::gauge(
        "patrol_baseline_results",
        "Security-baseline checks by verdict in the last inspection.",
    );
    let s = &inspection.summary;
    for (verdict, n) in [
        (Verdict::Pass, s.pass),
        (Verdict::Fail, s.fail),
        (Verdict::NotApplicable, s.not_applicable),
        (Verdict::Error, s.error),
    ] {
        results.push(&[("verdict", verdict.as_str())], n as f64);
    }
    let mut out = vec![checks, results];
    if let Some(score) = inspection.score {
        out.push(
            Family::gauge(
                "patrol_baseline_score",
                "Weighted security-baseline score as a ratio (0-1): passed over applicable checks, by severity.",
            )
            .with_value(score / 100.0),
        );
    }
    out.push(
        Family::gauge(
            "patrol_baseline_last_run_timestamp_seconds",
            "When the last security-baseline inspection ran.",
        )
        .with_value(inspection.time_ms as f64 / 1000.0),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_section_carries_the_catalogue_defaults() {
        let s = BaselineSection::default();
        assert_eq!(s.catalogue(), BaselineConfig::default());
        assert_eq!(s.interval, Duration::from_secs(86_400));
        assert!(s.validate().is_empty());
        let bad = BaselineSection {
            interval: Duration::from_secs(1),
            root: "relative".into(),
            ..s
        };
        let p = bad.validate().join("\n");
        assert!(
            p.contains("baseline.interval") && p.contains("baseline.root"),
            "{p}"
        );
    }

    #[test]
    fn metrics_leave_out_what_does_not_apply() {
        let dir = tempfile::tempdir().unwrap();
        let inspection = super::super::run(dir.path(), "empty", 1_748_736_000_000);
        let f = families(&inspection);
        let checks = &f[0];
        assert_eq!(checks.name, "patrol_baseline_check_passed");
        assert!(checks
            .series
            .iter()
            .all(|s| s.labels.iter().any(|(n, _)| n == "check_id")));
        let applicable = inspection.summary.pass + inspection.summary.fail;
        assert_eq!(checks.series.len(), applicable);
        let last = f
            .iter()
            .find(|f| f.name == "patrol_baseline_last_run_timestamp_seconds")
            .unwrap();
        assert_eq!(last.series[0].value, 1_748_736_000.0);
        if let Some(score) = inspection.score {
            let ratio = f
                .iter()
                .find(|f| f.name == "patrol_baseline_score")
                .unwrap();
            assert!((ratio.series[0].value - score / 100.0).abs() < 1e-9);
        }
        let results = f
            .iter()
            .find(|f| f.name == "patrol_baseline_results")
            .unwrap();
        let total: f64 = results.series.iter().map(|s| s.value).sum();
        assert_eq!(total as usize, inspection.results.len());
    }
}
