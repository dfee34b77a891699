//! `patrol import FILE`: backfills a Prometheus text or OpenMetrics file
//! into a running collector through remote write, so the samples take the
//! same durable path as agents' (each request answered once it is on disk).

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use patrol_collector::http::remote_write::{
    encode, Label, MetricMetadata, Sample, TimeSeries, WriteRequest,
};
use patrol_collector::textformat;
use patrol_shared::model::MetricKind;

#[derive(Args)]
pub struct ImportArgs {
    /// The file: Prometheus text format (timestamps in ms) or OpenMetrics
    /// (ending in `# EOF`, timestamps in seconds).
    file: PathBuf,
    #[command(flatten)]
    api: super::client::ApiArgs,
    /// Samples per request.
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
}

pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let parsed = textformat::parse(&text, textformat::is_openmetrics(&text))
        .map_err(|e| anyhow::anyhow!("{}:{}: {}", args.file.display(), e.line, e.message))?;
    let requests = requests(parsed, args.batch.max(1), patrol_shared::model::now_ms());
    let (api, runtime) = args.api.connect()?;
    runtime.block_on(async {
        let mut sent = 0;
        for (body, samples) in requests {
            let headers = [
                ("content-type", "application/x-protobuf"),
                ("content-encoding", "snappy"),
                ("x-prometheus-remote-write-version", "0.1.0"),
            ];
            api.send_ok(hyper::Method::POST, "/api/v1/write", &headers, body)
                .await?;
            sent += samples;
        }
        println!("imported {sent} samples from {}", args.file.display());
        anyhow::Ok(())
    })
}

/// A series: its name and sorted labels.
type SeriesKey = (String, Vec<(String, String)>);

/// The file's samples as remote-write bodies of about `batch` samples,
/// each with its sample count. Samples without a timestamp get `now_ms`.
fn requests(parsed: textformat::Parsed, batch: usize, now_ms: i64) -> Vec<(Vec<u8>, usize)> {
    let metadata: Vec<MetricMetadata> = parsed
        .meta
        .iter()
        .map(|(name, (kind, help))| MetricMetadata {
            r#type: match kind {
                MetricKind::Counter => 1,
                MetricKind::Gauge => 2,
                MetricKind::Unknown => 0,
            },
            metric_family_name: name.clone(),
            help: help.clone(),
            unit: String::new(),
        })
        .collect();
    let mut out = Vec::new();
    let mut series: Vec<TimeSeries> = Vec::new();
    let mut index: HashMap<SeriesKey, usize> = HashMap::new();
    let mut pending = 0;
    let flush = |series: &mut Vec<TimeSeries>,
                 index: &mut HashMap<SeriesKey, usize>,
                 pending: &mut usize,
                 out: &mut Vec<(Vec<u8>, usize)>| {
        if *pending > 0 {
            let req = WriteRequest {
                timeseries: std::mem::take(series),
                metadata: metadata.clone(),
            };
            out.push((encode(&req), *pending));
        }
        index.clear();
        *pending = 0;
    };
    for s in parsed.samples {
        let mut labels = s.labels;
        labels.sort();
        let key = (s.name, labels);
        let at = match index.get(&key) {
            Some(at) => *at,
            None => {
                let mut l = vec![Label {
                    name: "__name__".into(),
                    value: key.0.clone(),
                }];
                l.extend(key.1.iter().map(|(n, v)| Label {
                    name: n.clone(),
                    value: v.clone(),
                }));
                series.push(TimeSeries {
                    labels: l,
                    samples: Vec::new(),
                });
                index.insert(key, series.len() - 1);
                series.len() - 1
            }
        };
        series[at].samples.push(Sample {
            value: s.value,
            timestamp: s.timestamp_ms.unwrap_or(now_ms),
        });
        pending += 1;
        if pending >= batch {
            flush(&mut series, &mut index, &mut pending, &mut out);
        }
    }
    flush(&mut series, &mut index, &mut pending, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_grouped_by_series_into_bounded_requests() {
        let text = "a{x=\"1\"} 1 1000\na{x=\"1\"} 2 2000\nb 3\n";
        let parsed = textformat::parse(text, false).unwrap();
        let reqs = requests(parsed, 2, 99);
        assert_eq!(reqs.iter().map(|(_, n)| n).collect::<Vec<_>>(), [&2, &1]);
        let first = patrol_collector::http::remote_write::decode(&reqs[0].0).unwrap();
        assert_eq!(first.timeseries.len(), 1);
        assert_eq!(first.timeseries[0].samples.len(), 2);
        let second = patrol_collector::http::remote_write::decode(&reqs[1].0).unwrap();
        assert_eq!(second.timeseries[0].samples[0].timestamp, 99);
    }
}
