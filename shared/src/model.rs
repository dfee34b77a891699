//! The data model both sides agree on: metric families, series and samples.
//!
//! A collection cycle on the agent produces one [`SampleSet`]: every family it
//! measured, all stamped with the same timestamp. Names, types and units follow
//! the Prometheus exposition conventions (and node_exporter's names where the
//! quantity is the same), so the collector can store and expose them unchanged.

use serde::{Deserialize, Serialize};

/// A label: name and value, as in Prometheus.
pub type Label = (String, String);

/// What kind of quantity a family is, as in the OpenMetrics type line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MetricKind {
    /// Monotonic; only resets when the thing it counts restarts.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Type not known (node_exporter exposes netstat fields this way).
    Unknown,
}

impl MetricKind {
    /// The word OpenMetrics uses on a `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Unknown => "unknown",
        }
    }
}

/// One series of a family: its own labels and its value at the set's time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub labels: Vec<Label>,
    pub value: f64,
}

/// A metric family: every series of one metric name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub kind: MetricKind,
    pub series: Vec<Series>,
}

impl Family {
    pub fn new(name: impl Into<String>, kind: MetricKind, help: impl Into<String>) -> Self {
        Family {
            name: name.into(),
            help: help.into(),
            kind,
            series: Vec::new(),
        }
    }

    pub fn counter(name: impl Into<String>, help: impl Into<String>) -> Self {
        Self::new(name, MetricKind::Counter, help)
    }

    pub fn gauge(name: impl Into<String>, help: impl Into<String>) -> Self {
        Self::new(name, MetricKind::Gauge, help)
    }

    pub fn unknown(name: impl Into<String>, help: impl Into<String>) -> Self {
        Self::new(name, MetricKind::Unknown, help)
    }

    /// Adds a series with the given labels.
    pub fn push(&mut self, labels: &[(&str, &str)], value: f64) {
        let labels = labels
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        self.series.push(Series { labels, value });
    }

    /// Adds an unlabelled series and returns the family, for one-value gauges.
    pub fn with_value(mut self, value: f64) -> Self {
        self.push(&[], value);
        self
    }
}

/// Every family measured in one collection cycle, at one time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleSet {
    /// Milliseconds since the Unix epoch, as Prometheus stores time.
    pub timestamp_ms: i64,
    pub families: Vec<Family>,
}

impl SampleSet {
    /// Number of series (samples) in the set.
    pub fn series_count(&self) -> usize {
        self.families.iter().map(|f| f.series.len()).sum()
    }
}

/// Something that happened on the agent that an operator may want to see
/// (started, a collector over its time budget, spool overflow).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentEvent {
    pub timestamp_ms: i64,
    pub kind: String,
    pub message: String,
}

/// A time in Unix milliseconds as RFC 3339 (`2026-11-25T14:00:00.5Z`), as
/// APIs show times; empty for a time outside what RFC 3339 can write.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
