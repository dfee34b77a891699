//! Where ingested samples go, and where readers find them.
//!
//! Ingest talks to storage only through [`Store`]: it hands over a batch whose
//! labels are already stamped and learns whether it was applied or was a
//! replay. The store keeps, with the samples, the highest batch number applied
//! per agent stream, so that dropping replays and storing samples are one
//! step. The store is [`disk::DiskStore`]: Gorilla chunks and a write-ahead
//! log in append-only files, and a series index on sled, which nothing
//! outside this module sees. The same database keeps the inspection records
//! and file-integrity events agents send ([`records`]).

pub mod chunk;
mod commit;
pub mod disk;
pub mod head;
pub mod index;
pub mod maintenance;
pub mod records;
pub mod recovering;
mod segments;
mod wal;

use patrol_shared::model::Family;

pub use records::{
    BatchRecords, FimEvent, InspectionRecord, InspectionSummary, RecordQuery, FIM_EVENT_KIND,
};

/// A batch ready to store: from one host's stream, labels stamped.
#[derive(Debug, Clone)]
pub struct StampedBatch {
    pub host: String,
    pub stream_id: u64,
    pub seq: u64,
    /// Sample sets in the order the agent took them: (timestamp ms, families).
    pub sets: Vec<(i64, Vec<Family>)>,
}

/// What became of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored; this many samples.
    Applied { samples: usize },
    /// Its seq was at or below the stream's highest applied seq: dropped.
    Duplicate,
}

/// Why the store could not take a batch. The batch is not acked, so the
/// agent keeps it and sends it again.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

/// The newest sample of one series, with its family's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct LatestSample {
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub timestamp_ms: i64,
}

/// A family as readers see it: every series' newest sample.
#[derive(Debug, Clone, PartialEq)]
pub struct LatestFamily {
    pub name: String,
    pub help: String,
    pub kind: patrol_shared::model::MetricKind,
    pub samples: Vec<LatestSample>,
}

/// The storage interface ingest and readers use. Calls may block (a durable
/// store flushes before it returns from `append`).
pub trait Store: Send + Sync + 'static {
    /// The highest seq applied from this host's stream (0 if none).
    fn last_applied(&self, host: &str, stream_id: u64) -> u64;
    /// Stores a batch unless it is a replay; returns once it is durable.
    fn append(&self, batch: StampedBatch) -> Result<Appended, StoreError>;
    /// Newest sample of every series not older than `since_ms`, sorted by
    /// family name and then labels.
    fn latest(&self, since_ms: i64) -> Vec<LatestFamily>;
    /// How many series the store holds.
    fn series_count(&self) -> usize;
    /// Series matching `matchers` with their samples in [mint, maxt].
    fn select(
        &self,
        matchers: &[index::Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<disk::SeriesSamples>, StoreError>;
    /// Label names of the series matching `matchers` (all if none).
    fn label_names(&self, matchers: &[index::Matcher]) -> Vec<String>;
    /// Values of label `name` among the series matching `matchers`.
    fn label_values(&self, name: &str, matchers: &[index::Matcher]) -> Vec<String>;
    /// Every metric name with its type and help.
    fn metadata(&self) -> Vec<(String, patrol_shared::model::MetricKind, String)>;

    /// Keeps (or, with None, deletes) a small piece of state other parts
    /// of the collector need across restarts (alert state, silences);
    /// returns once it is durable.
    fn put_state(&self, _key: &str, _value: Option<&[u8]>) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("this store keeps no state".into()))
    }
    /// The state kept under `key`.
    fn get_state(&self, _key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }
    /// Every piece of state whose key starts with `prefix`, in key order.
    fn state_entries(&self, _prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(Vec::new())
    }
    /// The last `limit` pieces of state whose key starts with `prefix` and
    /// sorts below `before` (all, without it), last key first.
    fn state_newest(
        &self,
        prefix: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut all = self.state_entries(prefix)?;
        all.retain(|(k, _)| before.is_none_or(|b| k.as_str() < b));
        Ok(all.into_iter().rev().take(limit).collect())
    }

    /// Keeps a batch's inspection records and file-integrity events;
    /// returns once they are durable.
    ///
    /// Ingest calls this before [`Store::append`] with the same host, stream
    /// and seq, and acks only after both returned. Records go first so that
    /// a batch whose seq is applied always has its records kept: if storing
    /// the samples then fails, the batch is not acked, the agent sends it
    /// again, and its records are written again under the same keys (keys
    /// are derived from host, stream, seq and place in the batch), so they
    /// are never kept twice. A batch at or below the stream's applied seq is
    /// a replay whose records are already kept: nothing is written.
    ///
    /// A separate call rather than a field of [`StampedBatch`], so that the
    /// sample path and its other callers (remote write, rules) stay as they
    /// are. Stores that keep no records refuse non-empty ones, so nothing is
    /// acked and lost.
    fn record(&self, records: BatchRecords) -> Result<usize, StoreError> {
        if records.is_empty() {
            return Ok(0);
        }
        Err(StoreError::Unavailable(
            "this store keeps no inspection or file-integrity records".into(),
        ))
    }
    /// Inspections, newest first, without their results.
    fn inspections(&self, _query: &RecordQuery) -> Result<Vec<InspectionSummary>, StoreError> {
        Err(no_records())
    }
    /// One inspection, whole; none if `id` names none.
    fn inspection(&self, _id: &str) -> Result<Option<InspectionRecord>, StoreError> {
        Err(no_records())
    }
    /// File-integrity events, newest first.
    fn fim_events(&self, _query: &RecordQuery) -> Result<Vec<FimEvent>, StoreError> {
        Err(no_records())
    }
    /// Figures for the collector's own metrics.
    fn stats(&self) -> StoreStats {
        StoreStats {
            series: self.series_count() as u64,
            ..StoreStats::default()
        }
    }
}

fn no_records() -> StoreError {
    StoreError::Unavailable("this store keeps no records".into())
}

impl Default for StoreStats {
    fn default() -> Self {
        StoreStats {
            series: 0,
            samples_appended: 0,
            samples_out_of_order: 0,
            samples_duplicate: 0,
            chunks_written: 0,
            wal_records: 0,
            wal_bytes: 0,
            bytes_on_disk: 0,
            last_flush_seconds: 0.0,
            available: true,
        }
    }
}

/// What the store reports about itself (`patrol_storage_*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoreStats {
    pub series: u64,
    pub samples_appended: u64,
    pub samples_out_of_order: u64,
    pub samples_duplicate: u64,
    pub chunks_written: u64,
    pub wal_records: u64,
    pub wal_bytes: u64,
    pub bytes_on_disk: u64,
    pub last_flush_seconds: f64,
    /// False while the store is failing (disk full, I/O error).
    pub available: bool,
}
