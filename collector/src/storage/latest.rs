//! An in-memory store of each series' newest sample. Enough for `/metrics`
//! and for tests of the ingest path; it forgets everything at restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use patrol_shared::model::MetricKind;

use super::{Appended, LatestFamily, LatestSample, StampedBatch, Store, StoreError};

type Labels = Vec<(String, String)>;

#[derive(Default)]
struct FamilyState {
    help: String,
    kind: Option<MetricKind>,
    series: BTreeMap<Labels, (f64, i64)>,
}

#[derive(Default)]
struct Inner {
    families: BTreeMap<String, FamilyState>,
    /// host → (stream id, highest seq applied). One stream per host: a new
    /// stream (agent restarted without its spool) replaces the old one.
    streams: HashMap<String, (u64, u64)>,
}

/// See the module comment.
#[derive(Default)]
pub struct LatestStore {
    inner: RwLock<Inner>,
}

impl LatestStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Store for LatestStore {
    fn last_applied(&self, host: &str, stream_id: u64) -> u64 {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        match inner.streams.get(host) {
            Some((stream, seq)) if *stream == stream_id => *seq,
            _ => 0,
        }
    }

    fn append(&self, batch: StampedBatch) -> Result<Appended, StoreError> {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let last = match inner.streams.get(&batch.host) {
            Some((stream, seq)) if *stream == batch.stream_id => *seq,
            _ => 0,
        };
        if batch.seq <= last {
            return Ok(Appended::Duplicate);
        }
        let mut samples = 0;
        for (timestamp_ms, families) in batch.sets {
            for family in families {
                let state = inner.families.entry(family.name).or_default();
                state.help = family.help;
                state.kind = Some(family.kind);
                for series in family.series {
                    samples += 1;
                    let slot = state.series.entry(series.labels).or_insert((0.0, i64::MIN));
                    // Out-of-order sets never replace a newer value.
                    if timestamp_ms >= slot.1 {
                        *slot = (series.value, timestamp_ms);
                    }
                }
            }
        }
        inner
            .streams
            .insert(batch.host, (batch.stream_id, batch.seq));
        Ok(Appended::Applied { samples })
    }

    fn latest(&self, since_ms: i64) -> Vec<LatestFamily> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner
            .families
            .iter()
            .filter_map(|(name, state)| {
                let samples: Vec<LatestSample> = state
                    .series
                    .iter()
                    .filter(|(_, (_, ts))| *ts >= since_ms)
                    .map(|(labels, (value, ts))| LatestSample {
                        labels: labels.clone(),
                        value: *value,
                        timestamp_ms: *ts,
                    })
                    .collect();
                (!samples.is_empty()).then(|| LatestFamily {
                    name: name.clone(),
                    help: state.help.clone(),
                    kind: state.kind.unwrap_or(MetricKind::Unknown),
                    samples,
                })
            })
            .collect()
    }

    fn series_count(&self) -> usize {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner.families.values().map(|f| f.series.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use patrol_shared::model::Family;

    fn batch(host: &str, stream: u64, seq: u64, ts: i64, value: f64) -> StampedBatch {
        let mut f = Family::gauge("node_load1", "load");
        f.push(&[("host", host), ("instance", host)], value);
        StampedBatch {
            host: host.into(),
            stream_id: stream,
            seq,
            sets: vec![(ts, vec![f])],
        }
    }

    #[test]
    fn replayed_batch_is_stored_once() {
        let store = LatestStore::new();
        assert_eq!(
            store.append(batch("db", 1, 1, 10, 1.0)).unwrap(),
            Appended::Applied { samples: 1 }
        );
        assert_eq!(
            store.append(batch("db", 1, 1, 10, 9.0)).unwrap(),
            Appended::Duplicate
        );
        assert_eq!(store.last_applied("db", 1), 1);
        assert_eq!(store.latest(0)[0].samples[0].value, 1.0);
    }

    #[test]
    fn a_new_stream_starts_from_zero() {
        let store = LatestStore::new();
        store.append(batch("db", 1, 5, 10, 1.0)).unwrap();
        assert_eq!(store.last_applied("db", 2), 0);
        assert!(matches!(
            store.append(batch("db", 2, 1, 20, 2.0)).unwrap(),
            Appended::Applied { .. }
        ));
    }

    #[test]
    fn older_sample_never_replaces_newer_and_stale_series_are_hidden() {
        let store = LatestStore::new();
        store.append(batch("db", 1, 1, 100, 1.0)).unwrap();
        store.append(batch("db", 1, 2, 50, 2.0)).unwrap();
        assert_eq!(store.latest(0)[0].samples[0].value, 1.0);
        assert!(store.latest(101).is_empty());
        assert_eq!(store.series_count(), 1);
    }
}
