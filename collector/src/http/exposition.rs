//! Renders the store's newest samples and the collector's own metrics in
//! the OpenMetrics text format, the format Prometheus scrapes.

use std::fmt::Write;

use patrol_shared::model::MetricKind;

use crate::storage::{LatestFamily, StoreStats};
use crate::telemetry::Telemetry;

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Agents' series first, then the collector's own, then `# EOF`.
pub fn render(families: &[LatestFamily], store: &StoreStats, telemetry: &Telemetry) -> String {
    let mut out = String::with_capacity(256 * families.len() + 4096);
    for family in families {
        render_family(&mut out, family);
    }
    render_store(&mut out, store);
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode_registry(&mut out, &telemetry.registry);
    out.push_str("# EOF\n");
    out
}

fn render_family(out: &mut String, family: &LatestFamily) {
    // OpenMetrics names a counter family without its `_total` suffix; a
    // "counter" without the suffix cannot be written as one, so it goes out
    // as unknown rather than as invalid exposition.
    let (family_name, kind) = match family.kind {
        MetricKind::Counter => match family.name.strip_suffix("_total") {
            Some(base) => (base, "counter"),
            None => (family.name.as_str(), "unknown"),
        },
        other => (family.name.as_str(), other.as_str()),
    };
    let _ = writeln!(out, "# TYPE {family_name} {kind}");
    if !family.help.is_empty() {
        let _ = writeln!(out, "# HELP {family_name} {}", escape(&family.help, false));
    }
    for sample in &family.samples {
        out.push_str(&family.name);
        if !sample.labels.is_empty() {
            out.push('{');
            for (i, (name, value)) in sample.labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{name}=\"{}\"", escape(value, true));
            }
            out.push('}');
        }
        let _ = writeln!(
            out,
            " {} {}.{:03}",
            format_value(sample.value),
            sample.timestamp_ms.div_euclid(1000),
            sample.timestamp_ms.rem_euclid(1000)
        );
    }
}

/// A family of the store's figures: name, type, help, (reason, value)s.
type StoreFamily = (
    &'static str,
    &'static str,
    &'static str,
    Vec<(&'static str, f64)>,
);

/// The store's figures, as of now (no timestamps).
fn render_store(out: &mut String, s: &StoreStats) {
    let families: [StoreFamily; 8] = [
        (
            "patrol_storage_series",
            "gauge",
            "Series in the store.",
            vec![("", s.series as f64)],
        ),
        (
            "patrol_storage_samples_appended",
            "counter",
            "Samples appended to the store.",
            vec![("", s.samples_appended as f64)],
        ),
        (
            "patrol_storage_samples_rejected",
            "counter",
            "Samples refused by the store, by reason.",
            vec![
                ("out_of_order", s.samples_out_of_order as f64),
                ("duplicate", s.samples_duplicate as f64),
            ],
        ),
        (
            "patrol_storage_chunks_written",
            "counter",
            "Closed chunks written.",
            vec![("", s.chunks_written as f64)],
        ),
        (
            "patrol_storage_wal_records",
            "gauge",
            "Records in the write-ahead log.",
            vec![("", s.wal_records as f64)],
        ),
        (
            "patrol_storage_wal_bytes",
            "gauge",
            "Bytes of the write-ahead log's files.",
            vec![("", s.wal_bytes as f64)],
        ),
        (
            "patrol_storage_disk_bytes",
            "gauge",
            "Bytes the store takes on disk: index, write-ahead log and chunks.",
            vec![("", s.bytes_on_disk as f64)],
        ),
        (
            "patrol_storage_flush_duration_seconds",
            "gauge",
            "How long the last flush to disk took.",
            vec![("", s.last_flush_seconds)],
        ),
    ];
    for (name, kind, help, samples) in families {
        let _ = writeln!(out, "# TYPE {name} {kind}\n# HELP {name} {help}");
        let suffix = if kind == "counter" { "_total" } else { "" };
        for (reason, v) in samples {
            if reason.is_empty() {
                let _ = writeln!(out, "{name}{suffix} {}", format_value(v));
            } else {
                let _ = writeln!(
                    out,
                    "{name}{suffix}{{reason=\"{reason}\"}} {}",
                    format_value(v)
                );
            }
        }
    }
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v:?}")
    }
}

fn escape(text: &str, quote: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LatestSample;

    fn family(name: &str, kind: MetricKind, value: f64) -> LatestFamily {
        LatestFamily {
            name: name.into(),
            help: "Help with a \\ and\nnewline.".into(),
            kind,
            samples: vec![LatestSample {
                labels: vec![("host".into(), "d\"b".into())],
                value,
                timestamp_ms: 1_700_000_000_123,
            }],
        }
    }

    #[test]
    fn counters_gauges_and_escapes_follow_openmetrics() {
        let text = render(
            &[
                family("node_cpu_seconds_total", MetricKind::Counter, 12.5),
                family("node_load1", MetricKind::Gauge, f64::NAN),
                family("odd_counter", MetricKind::Counter, 1.0),
            ],
            &StoreStats::default(),
            &Telemetry::new(),
        );
        assert!(text.contains("# TYPE node_cpu_seconds counter\n"), "{text}");
        assert!(text.contains("# HELP node_cpu_seconds Help with a \\\\ and\\nnewline.\n"));
        assert!(text.contains("node_cpu_seconds_total{host=\"d\\\"b\"} 12.5 1700000000.123\n"));
        assert!(text.contains("node_load1{host=\"d\\\"b\"} NaN 1700000000.123\n"));
        assert!(text.contains("# TYPE odd_counter unknown\n"));
        assert!(text.contains("# TYPE patrol_ingest_connected_agents gauge"));
        assert!(text.contains("patrol_storage_samples_rejected_total{reason=\"out_of_order\"} 0"));
        assert!(text.ends_with("# EOF\n"));
    }
}
