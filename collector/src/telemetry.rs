//! The collector's own metrics (`patrol_*`), registered with
//! prometheus-client and served on `/metrics` after the agents' series.
//! Label values are bounded: reasons are fixed words, never peer input.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

/// Every metric the collector keeps about itself.
pub struct Telemetry {
    pub registry: Registry,
    pub connected_agents: Gauge,
    pub connections_accepted: Counter,
    pub connections_refused: Family<ReasonLabel, Counter>,
    pub bad_frames: Family<ReasonLabel, Counter>,
    pub frames_received: Counter,
    pub bytes_received: Counter,
    pub batches: Family<ResultLabel, Counter>,
    pub samples_ingested: Counter,
    pub samples_rejected: Family<ReasonLabel, Counter>,
}

impl Telemetry {
    pub fn new() -> Telemetry {
        let mut registry = Registry::with_prefix("patrol");
        let t = Telemetry {
            connected_agents: Gauge::default(),
            connections_accepted: Counter::default(),
            connections_refused: Family::default(),
            bad_frames: Family::default(),
            frames_received: Counter::default(),
            bytes_received: Counter::default(),
            batches: Family::default(),
            samples_ingested: Counter::default(),
            samples_rejected: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "ingest_connected_agents",
            "Agents connected now (past the handshake and Hello)",
            t.connected_agents.clone(),
        );
        registry.register(
            "ingest_connections_accepted",
            "Agent connections that completed the handshake and Hello",
            t.connections_accepted.clone(),
        );
        registry.register(
            "ingest_connections_refused",
            "Connections refused, by reason",
            t.connections_refused.clone(),
        );
        registry.register(
            "ingest_bad_frames",
            "Frames that could not be read or decoded, by reason; each ends its connection",
            t.bad_frames.clone(),
        );
        registry.register(
            "ingest_frames_received",
            "Frames received from agents",
            t.frames_received.clone(),
        );
        registry.register(
            "ingest_received_bytes",
            "Bytes of frames received from agents (length prefixes included)",
            t.bytes_received.clone(),
        );
        registry.register(
            "ingest_batches",
            "Batches received, by result (applied, duplicate, failed)",
            t.batches.clone(),
        );
        registry.register(
            "ingest_samples",
            "Samples stored from agents",
            t.samples_ingested.clone(),
        );
        registry.register(
            "ingest_samples_rejected",
            "Samples dropped at ingest, by reason",
            t.samples_rejected.clone(),
        );
        registry.register(
            "build",
            "The collector's version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        Telemetry { registry, ..t }
    }

    /// Counts a refused connection.
    pub fn refuse(&self, reason: &'static str) {
        self.connections_refused
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Counts a bad frame.
    pub fn bad_frame(&self, reason: &'static str) {
        self.bad_frames.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Counts a batch by its result.
    pub fn batch(&self, result: &'static str) {
        self.batches.get_or_create(&ResultLabel { result }).inc();
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}
