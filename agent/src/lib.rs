//! Patrol's agent: measures its host every `interval` ([`host`]), writes
//! each cycle as a numbered batch to its on-disk spool ([`spool`]) and
//! streams the batches to the collector over mutual TLS ([`link`]), which
//! acknowledges each once stored; only then does it leave the spool.
//!
//! Beside the host metrics, each on its own schedule: service checks
//! ([`checks`]), the daily security-baseline inspection ([`baseline`]) and
//! file integrity monitoring ([`fim`]). Their latest figures join every
//! cycle's sample set; what they have to tell at once (a check changing
//! state, a file changed, an inspection record) goes to the spool as soon
//! as it happens, through a bounded queue (the outbox).
//!
//! [`run`] is the whole agent; the `patrol-agent` binary and `patrol up`
//! call it with a config and a cancellation token.

pub mod baseline;
pub mod checks;
pub mod cli;
pub mod config;
pub mod fim;
pub mod host;
pub mod link;
mod outbox;
pub mod spool;
pub mod telemetry;

use std::sync::Arc;
use std::time::Instant;

use patrol_shared::inspection::Inspection;
use patrol_shared::model::{now_ms, AgentEvent, Family, SampleSet};
use patrol_shared::protocol::{Entry, Hello, PROTOCOL_VERSION};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::AgentConfig;

use crate::baseline::schedule::Inspector;
use crate::checks::CheckSet;
use crate::fim::FileIntegrity;
use crate::host::HostMetrics;
use crate::link::{ClientTls, Link, LinkCounters};
use crate::spool::Spool;
use crate::telemetry::{AgentTelemetry, CycleFacts};

/// How long the agent waits at exit for the file-integrity thread (which
/// may be hashing a large file) to stop.
const FIM_STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Tls(#[from] patrol_shared::tls::TlsError),
    #[error(transparent)]
    Spool(#[from] spool::SpoolError),
}

/// Runs the agent until `cancel` fires; on the way out it tells the
/// collector goodbye and closes the spool, so that another run in the same
/// process (a config reload) can open it again.
pub async fn run(config: AgentConfig, cancel: CancellationToken) -> Result<(), AgentError> {
    let tls = patrol_shared::tls::client_config(&config.tls)?;
    let (state_dir, max_bytes) = (config.state_dir.clone(), config.spool.max_bytes);
    let spool = tokio::task::spawn_blocking(move || Spool::open(state_dir.as_deref(), max_bytes))
        .await
        .map_err(|e| spool::SpoolError::Task(e.to_string()))??;
    let spool = Arc::new(spool);
    let counters = Arc::new(LinkCounters::default());
    let hello = hello(&config, spool.stream_id());
    let host_name = hello.hostname.clone();
    let link = Link {
        config: config.collector.clone(),
        tls: ClientTls::new(config.tls.clone(), tls),
        spool: spool.clone(),
        hello,
        counters: counters.clone(),
    };
    info!(interval = ?config.interval, collectors = ?config.collector.targets(), "agent starting");
    let link_task = tokio::spawn(link.run(cancel.clone()));
    let (events_tx, events) = mpsc::channel(outbox::EVENT_QUEUE);
    let (inspections_tx, inspections) = mpsc::channel(outbox::INSPECTION_QUEUE);
    let outbox_task = tokio::spawn(outbox::run(
        spool.clone(),
        events,
        inspections,
        cancel.clone(),
    ));
    let monitors = Monitors::start(&config, host_name, events_tx, inspections_tx, &cancel);
    collect_loop(&config, &spool, &counters, &monitors, &cancel).await;
    let _ = link_task.await;
    let _ = outbox_task.await;
    match Arc::try_unwrap(spool) {
        Ok(spool) => spool.close().await,
        Err(_) => warn!("spool still in use at exit; it closes when released"),
    }
    if let Some(fim) = &monitors.fim {
        // Its states saved, so that the next start compares with them.
        if tokio::time::timeout(FIM_STOP_WAIT, fim.stopped())
            .await
            .is_err()
        {
            warn!(wait = ?FIM_STOP_WAIT, "file integrity watch still busy; not waiting for it");
        }
    }
    info!("agent stopped");
    Ok(())
}

/// What the agent watches besides host metrics, each on its own schedule;
/// their latest figures join every sample set.
struct Monitors {
    checks: CheckSet,
    baseline: Option<Inspector>,
    fim: Option<FileIntegrity>,
}

impl Monitors {
    fn start(
        config: &AgentConfig,
        host_name: String,
        events: mpsc::Sender<AgentEvent>,
        inspections: mpsc::Sender<Inspection>,
        cancel: &CancellationToken,
    ) -> Monitors {
        let mut checks = Vec::new();
        for (i, c) in config.checks.iter().enumerate() {
            // A loaded config has been validated; one built in code may
            // not have been.
            match c.compile(&format!("checks[{i}]")) {
                Ok(check) => checks.push(check),
                Err(problems) => warn!(check = %c.name, ?problems, "check not started"),
            }
        }
        let env = checks::Env::host(&config.host.proc_path);
        let checks = CheckSet::start(checks, env, events.clone(), cancel);
        let fim = if config.fim.enabled {
            FileIntegrity::start(
                &config.fim,
                config.state_dir.as_deref(),
                events,
                cancel.clone(),
            )
            .map_err(|e| warn!(error = %e, "file integrity monitoring not started"))
            .ok()
        } else {
            None
        };
        let baseline = config.baseline.enabled.then(|| {
            let mut section = config.baseline.clone();
            section.file_integrity_watch |= fim.is_some() && !config.fim.paths.is_empty();
            Inspector::start(&section, host_name, inspections, cancel.clone())
        });
        Monitors {
            checks,
            baseline,
            fim,
        }
    }

    fn families(&self) -> Vec<Family> {
        let mut families = self.checks.families();
        if let Some(b) = &self.baseline {
            families.extend(b.families());
        }
        if let Some(f) = &self.fim {
            families.extend(f.families());
        }
        families
    }
}

/// Sample times from the ticker's schedule rather than from when the task
/// woke, so that samples are exactly one interval apart and the
/// collector's chunks store each timestamp in one bit (what Prometheus'
/// scrape timestamp tolerance achieves). The schedule is tied to the wall
/// clock at the first tick, and again whenever the two drift more than
/// [`TickClock::TOLERANCE_MS`] apart (a clock step, a suspended host).
#[derive(Debug, Default)]
struct TickClock {
    base: Option<(Instant, i64)>,
}

impl TickClock {
    const TOLERANCE_MS: i64 = 500;

    fn stamp(&mut self, tick: Instant, wall_ms: i64) -> i64 {
        if let Some((at, base_ms)) = self.base {
            let since =
                i64::try_from(tick.saturating_duration_since(at).as_millis()).unwrap_or(i64::MAX);
            let scheduled = base_ms.saturating_add(since);
            if (wall_ms - scheduled).abs() <= Self::TOLERANCE_MS {
                return scheduled;
            }
        }
        self.base = Some((tick, wall_ms));
        wall_ms
    }
}

/// Every `interval`: measure the host, add the monitors' latest figures
/// and the agent's own metrics, queue.
async fn collect_loop(
    config: &AgentConfig,
    spool: &Spool,
    counters: &LinkCounters,
    monitors: &Monitors,
    cancel: &CancellationToken,
) {
    let mut host = Some(HostMetrics::new(config.host.clone()));
    let mut own = AgentTelemetry::default();
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut clock = TickClock::default();
    let mut cycles = 0u64;
    loop {
        let tick = tokio::select! {
            _ = cancel.cancelled() => return,
            tick = ticker.tick() => tick.into_std(),
        };
        let Some(mut metrics) = host.take() else {
            return;
        };
        let started = Instant::now();
        let timestamp_ms = clock.stamp(tick, now_ms());
        // /proc reads and statfs block: keep them off the async threads.
        let (metrics, cycle) = match tokio::task::spawn_blocking(move || {
            let cycle = metrics.collect();
            (metrics, cycle)
        })
        .await
        {
            Ok(done) => done,
            Err(e) => {
                warn!(error = %e, "host collection failed; stopping collection");
                return;
            }
        };
        host = Some(metrics);
        cycles += 1;
        let mut families = cycle.families;
        families.extend(monitors.families());
        let series = families.iter().map(|f| f.series.len()).sum();
        families.extend(own.families(&CycleFacts {
            reports: &cycle.reports,
            cycle: started.elapsed(),
            cycles,
            series,
            spool: spool.stats(),
            link: counters,
        }));
        let set = SampleSet {
            timestamp_ms,
            families,
        };
        if let Err(e) = spool.push(vec![Entry::Samples(set)]).await {
            warn!(error = %e, "cannot queue batch");
        }
    }
}

/// What the agent tells the collector about itself.
fn hello(config: &AgentConfig, stream_id: u64) -> Hello {
    use sysinfo::System;
    Hello {
        protocol_version: PROTOCOL_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        hostname: config
            .hostname
            .clone()
            .or_else(|| System::host_name().ok())
            .unwrap_or_default(),
        os: System::long_os_version().unwrap_or_default(),
        kernel: System::kernel_version().unwrap_or_default(),
        boot_time: System::boot_time().map(|t| t as i64).unwrap_or(0),
        labels: config
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        stream_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn samples_are_stamped_on_schedule_and_realigned_after_a_clock_step() {
        let mut clock = TickClock::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(clock.stamp(at(0), 1_000_003), 1_000_003);
        // Woken late by 7 ms and 120 ms: still on the 10 s grid.
        assert_eq!(clock.stamp(at(10), 1_010_010), 1_010_003);
        assert_eq!(clock.stamp(at(20), 1_020_123), 1_020_003);
        // The wall clock stepped a minute ahead: follow it.
        assert_eq!(clock.stamp(at(30), 1_090_050), 1_090_050);
        assert_eq!(clock.stamp(at(40), 1_100_051), 1_100_050);
    }
}
