//! The collector's own metrics (ingest, storage, notifications, tickets,
//! SLA clocks, on-call), served on `/metrics` and also written into the
//! collector's own store every [`INTERVAL`], the way a Prometheus server
//! scrapes itself. So the rules (`OnCallCoverageGap`) and Grafana's
//! incidents dashboard query them like any agent's series, labelled
//! `job="patrol-collector"`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use patrol_shared::model::{Family, Label, MetricKind, Series};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::http::exposition;
use crate::incident::service::IncidentService;
use crate::notify::NotificationCounters;
use crate::storage::{LatestFamily, StampedBatch, Store};
use crate::telemetry::Telemetry;
use crate::textformat;

/// How often the own metrics are stored: Prometheus' default scrape interval.
pub const INTERVAL: Duration = Duration::from_secs(15);
/// The `job` label of the stored own series.
pub const JOB: &str = "patrol-collector";
/// The stream the own series are stored under (not a host name: agents'
/// host names cannot contain `/`).
const STREAM: &str = "patrol-collector/self";

/// Everything the collector reports about itself.
pub struct OwnMetrics {
    pub store: Arc<dyn Store>,
    pub telemetry: Arc<Telemetry>,
    pub incidents: Arc<IncidentService>,
    /// Delivery counters, when notifications are configured.
    pub notifications: Option<Arc<NotificationCounters>>,
}

impl OwnMetrics {
    /// `/metrics`: every agent's newest sample, then the collector's own.
    /// The stored copies of the own series are left out: they are served
    /// live instead, once.
    pub fn exposition(&self, since_ms: i64, now_ms: i64) -> String {
        let mut families = self.store.latest(since_ms);
        for f in &mut families {
            f.samples
                .retain(|s| !s.labels.iter().any(|(n, v)| n == "job" && v == JOB));
        }
        families.retain(|f| !f.samples.is_empty());
        families.extend(self.families(now_ms));
        exposition::render(&families, &self.store.stats(), &self.telemetry)
    }

    /// The collector's own families alone, as text.
    fn own_text(&self, now_ms: i64) -> String {
        exposition::render(&self.families(now_ms), &self.store.stats(), &self.telemetry)
    }

    fn families(&self, now_ms: i64) -> Vec<LatestFamily> {
        let mut families = Vec::new();
        if let Some(counters) = &self.notifications {
            families.push(counters.family(now_ms));
        }
        families.extend(self.incidents.families(now_ms));
        families
    }

    /// The own metrics at `now_ms` as one set, each series labelled
    /// `job="patrol-collector"`.
    pub fn snapshot(&self, now_ms: i64) -> Result<Vec<Family>, textformat::TextError> {
        let parsed = textformat::parse(&self.own_text(now_ms), true)?;
        let mut families: BTreeMap<String, Family> = BTreeMap::new();
        for s in parsed.samples {
            let family = families.entry(s.name.clone()).or_insert_with(|| {
                // A counter's metadata is under its name without `_total`.
                let meta = parsed.meta.get(&s.name).or_else(|| {
                    s.name
                        .strip_suffix("_total")
                        .and_then(|base| parsed.meta.get(base))
                });
                let (kind, help) = meta
                    .cloned()
                    .unwrap_or((MetricKind::Unknown, String::new()));
                Family::new(s.name.clone(), kind, help)
            });
            let mut labels: Vec<Label> = s.labels.into_iter().filter(|(n, _)| n != "job").collect();
            labels.push(("job".into(), JOB.into()));
            labels.sort();
            family.series.push(Series {
                labels,
                value: s.value,
            });
        }
        Ok(families.into_values().collect())
    }
}

/// Stores the own metrics every [`INTERVAL`] until `cancel` fires.
pub async fn run(own: Arc<OwnMetrics>, cancel: CancellationToken) {
    let stream_id = fastrand::u64(1..);
    let mut seq = 0u64;
    let mut ticker = tokio::time::interval(INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let own = own.clone();
        seq += 1;
        let stored = tokio::task::spawn_blocking(move || {
            let now = patrol_shared::model::now_ms();
            let families = own
                .snapshot(now)
                .map_err(|e| format!("own metrics do not parse: {e}"))?;
            own.store
                .append(StampedBatch {
                    host: STREAM.into(),
                    stream_id,
                    seq,
                    sets: vec![(now, families)],
                })
                .map_err(|e| e.to_string())
        })
        .await;
        match stored {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(error = %e, "own metrics not stored"),
            Err(e) => warn!(error = %e, "own metrics task failed"),
        }
    }
}
