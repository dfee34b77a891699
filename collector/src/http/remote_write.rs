//! Prometheus remote write 1.0 (`POST /api/v1/write`): a snappy-compressed
//! protobuf `WriteRequest`, turned into a batch for the same durable append
//! agents' batches take. An existing Prometheus, Grafana Alloy, Telegraf or
//! Vector can write into Patrol this way.
//!
//! Each writer (API token) is one stream: its requests are numbered and
//! appended one at a time, so none is mistaken for a replay. The answer is
//! 204 once the samples are durable, 400 for a request that cannot be read
//! or holds invalid series (the valid ones are kept; senders do not retry
//! a 400), and 503 while the store is unavailable (senders retry).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use patrol_shared::model::{Family, MetricKind, Series};

use crate::ingest::stamp::{valid_label_name, valid_metric_name};
use crate::storage::{StampedBatch, Store, StoreError};

/// Largest decompressed request accepted.
pub const MAX_DECODED_BYTES: usize = 64 << 20;
/// Largest compressed request read.
pub const MAX_BODY_BYTES: usize = 32 << 20;

#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricMetadata {
    /// 0 unknown, 1 counter, 2 gauge, 3 histogram, 4 gauge histogram,
    /// 5 summary, 6 info, 7 stateset.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    #[prost(string, tag = "4")]
    pub help: String,
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// Why a write was refused.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The request cannot be read, or some series in it are invalid (400).
    #[error("{0}")]
    BadRequest(String),
    /// The store cannot take it now (503).
    #[error(transparent)]
    Unavailable(#[from] StoreError),
}

/// Decodes a request body.
pub fn decode(body: &[u8]) -> Result<WriteRequest, WriteError> {
    let len = snap::raw::decompress_len(body)
        .map_err(|e| WriteError::BadRequest(format!("body is not snappy-compressed: {e}")))?;
    if len > MAX_DECODED_BYTES {
        return Err(WriteError::BadRequest(format!(
            "request decompresses to {len} bytes, over the {MAX_DECODED_BYTES}-byte limit"
        )));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| WriteError::BadRequest(format!("body is not snappy-compressed: {e}")))?;
    prost::Message::decode(raw.as_slice()).map_err(|e| {
        WriteError::BadRequest(format!("body is not a remote-write WriteRequest: {e}"))
    })
}

/// Encodes a request (for `patrol import` and tests).
pub fn encode(req: &WriteRequest) -> Vec<u8> {
    let raw = prost::Message::encode_to_vec(req);
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .unwrap_or_default()
}

fn kind(t: i32) -> MetricKind {
    match t {
        1 => MetricKind::Counter,
        2 => MetricKind::Gauge,
        _ => MetricKind::Unknown,
    }
}

/// A request as the store takes it.
pub struct Converted {
    /// Samples grouped by time.
    pub sets: Vec<(i64, Vec<Family>)>,
    /// Series left out, and the first one's problem.
    pub rejected: usize,
    pub first_problem: Option<String>,
}

/// The samples of a request grouped by time, and the series left out.
pub fn to_sets(req: WriteRequest) -> Converted {
    let meta: HashMap<String, (MetricKind, String)> = req
        .metadata
        .into_iter()
        .map(|m| (m.metric_family_name, (kind(m.r#type), m.help)))
        .collect();
    let mut by_time: BTreeMap<i64, BTreeMap<String, Family>> = BTreeMap::new();
    let (mut rejected, mut first_problem) = (0usize, None);
    for (n, ts) in req.timeseries.into_iter().enumerate() {
        let (name, labels) = match series_labels(ts.labels) {
            Ok(v) => v,
            Err(problem) => {
                rejected += 1;
                first_problem.get_or_insert_with(|| format!("timeseries[{n}]: {problem}"));
                continue;
            }
        };
        for s in ts.samples {
            let family = by_time
                .entry(s.timestamp)
                .or_default()
                .entry(name.clone())
                .or_insert_with(|| {
                    let (kind, help) = meta
                        .get(&name)
                        .cloned()
                        .unwrap_or((MetricKind::Unknown, String::new()));
                    Family::new(name.clone(), kind, help)
                });
            family.series.push(Series {
                labels: labels.clone(),
                value: s.value,
            });
        }
    }
    let sets = by_time
        .into_iter()
        .map(|(t, families)| (t, families.into_values().collect()))
        .collect();
    Converted {
        sets,
        rejected,
        first_problem,
    }
}

/// A series' metric name and other labels, sorted, or what is wrong.
fn series_labels(labels: Vec<Label>) -> Result<(String, Vec<(String, String)>), String> {
    let mut name = None;
    let mut out = Vec::with_capacity(labels.len());
    for l in labels {
        if l.name == "__name__" {
            if !valid_metric_name(&l.value) {
                return Err(format!("invalid metric name {:?}", l.value));
            }
            name = Some(l.value);
        } else if !valid_label_name(&l.name) {
            return Err(format!("invalid label name {:?}", l.name));
        } else if !l.value.is_empty() {
            out.push((l.name, l.value));
        }
    }
    out.sort();
    if let Some(w) = out.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(format!("label {:?} appears twice", w[0].0));
    }
    let name = name.ok_or("no __name__ label")?;
    Ok((name, out))
}

/// The writers' streams: one per token, requests numbered in order.
pub struct Writers {
    stream_id: u64,
    next: Mutex<HashMap<String, std::sync::Arc<Mutex<u64>>>>,
}

impl Default for Writers {
    fn default() -> Self {
        Writers {
            stream_id: fastrand::u64(1..),
            next: Mutex::new(HashMap::new()),
        }
    }
}

impl Writers {
    /// Appends a request from `writer` durably; the samples stored.
    pub fn write(&self, store: &dyn Store, writer: &str, body: &[u8]) -> Result<usize, WriteError> {
        let Converted {
            sets,
            rejected,
            first_problem: problem,
        } = to_sets(decode(body)?);
        let samples: usize = sets
            .iter()
            .flat_map(|(_, f)| f.iter().map(|f| f.series.len()))
            .sum();
        if samples > 0 {
            let counter = self
                .next
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(writer.to_owned())
                .or_default()
                .clone();
            // One request of a writer at a time, so numbers arrive in order.
            let mut seq = counter.lock().unwrap_or_else(|p| p.into_inner());
            *seq += 1;
            store.append(StampedBatch {
                host: format!("remote_write/{writer}"),
                stream_id: self.stream_id,
                seq: *seq,
                sets,
            })?;
        }
        match problem {
            Some(p) => Err(WriteError::BadRequest(format!(
                "{rejected} series refused, {samples} samples stored; first: {p}"
            ))),
            None => Ok(samples),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(n: &str, v: &str) -> Label {
        Label {
            name: n.into(),
            value: v.into(),
        }
    }

    #[test]
    fn requests_round_trip_and_group_by_time() {
        let req = WriteRequest {
            timeseries: vec![
                TimeSeries {
                    labels: vec![label("__name__", "up"), label("job", "node")],
                    samples: vec![
                        Sample {
                            value: 1.0,
                            timestamp: 2000,
                        },
                        Sample {
                            value: 0.0,
                            timestamp: 1000,
                        },
                    ],
                },
                TimeSeries {
                    labels: vec![label("job", "x")],
                    samples: vec![Sample {
                        value: 1.0,
                        timestamp: 1000,
                    }],
                },
            ],
            metadata: vec![MetricMetadata {
                r#type: 2,
                metric_family_name: "up".into(),
                help: "Up.".into(),
                unit: String::new(),
            }],
        };
        let decoded = decode(&encode(&req)).unwrap();
        assert_eq!(decoded, req);
        let Converted {
            sets,
            rejected,
            first_problem: problem,
        } = to_sets(decoded);
        assert_eq!(rejected, 1);
        assert!(problem.unwrap().contains("timeseries[1]: no __name__"));
        assert_eq!(sets.len(), 2);
        assert_eq!(sets[0].0, 1000);
        assert_eq!(sets[0].1[0].kind, MetricKind::Gauge);
        assert_eq!(sets[0].1[0].series[0].value, 0.0);
    }

    #[test]
    fn garbage_and_bombs_are_refused() {
        assert!(decode(b"not snappy at all").is_err());
        // A snappy header claiming a huge length.
        let bomb = [0xff, 0xff, 0xff, 0xff, 0x7f];
        assert!(decode(&bomb).is_err());
        let not_proto = snap::raw::Encoder::new().compress_vec(&[0xff; 10]).unwrap();
        assert!(decode(&not_proto).is_err());
    }
}
