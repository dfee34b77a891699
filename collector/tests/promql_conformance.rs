//! PromQL conformance: a fixed dataset goes into Patrol's store and, through
//! `promtool tsdb create-blocks-from openmetrics`, into a real Prometheus on
//! loopback; every query of the corpus is run by both, instant and range,
//! and the answers must agree (labels exactly, values within float
//! tolerance). Nothing here is typed by hand but the queries.
//!
//! Needs `prometheus` and `promtool` (Debian package `prometheus`, which
//! `.ci/run` installs); without them the test says so and passes, except
//! under CI, where it fails.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use patrol_collector::http::api::result_json;
use patrol_collector::query::{self, Limits, Value};
use patrol_collector::storage::disk::DiskStore;
use patrol_collector::storage::{StampedBatch, Store};
use patrol_shared::model::{Family, MetricKind, Series};
use serde_json::Value as Json;

const STEP_MS: i64 = 15_000;
const POINTS: i64 = 480; // two hours

/// Differences that are Prometheus 2.42 quirks rather than ours, with why.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[(
    "node_load1 atan2 2",
    "Prometheus 2.42 keeps __name__ on atan2; Patrol drops it, as for every other arithmetic operator",
)];

/// The corpus. Each is run as an instant query at three times and as a
/// range query.
const QUERIES: &[&str] = &[
    // Selectors and matchers.
    "node_load1",
    "node_load1{host=\"h1\"}",
    "node_load1{host!=\"h1\"}",
    "node_load1{host=~\"h[12]\"}",
    "node_load1{host!~\"h[12]\"}",
    "node_cpu_seconds_total{mode=\"idle\"}",
    "node_cpu_seconds_total{mode=~\"user|system\", cpu=\"0\"}",
    "{__name__=~\"node_memory_.*\"}",
    "{__name__=\"node_load1\", host=\"h2\"}",
    "up",
    "up == 1",
    "node_load1 offset 10m",
    "node_load1 offset -5m",
    "node_load1 @ end()",
    "node_load1 @ start()",
    "gappy",
    "temperature_celsius",
    // Range functions.
    "rate(node_cpu_seconds_total[5m])",
    "rate(node_cpu_seconds_total[1m])",
    "rate(node_cpu_seconds_total{mode=\"user\"}[10m])",
    "irate(node_cpu_seconds_total[5m])",
    "increase(node_cpu_seconds_total[5m])",
    "increase(node_cpu_seconds_total[1h])",
    "delta(node_load1[5m])",
    "idelta(node_load1[5m])",
    "deriv(node_load1[10m])",
    "predict_linear(node_filesystem_avail_bytes[30m], 3600)",
    "predict_linear(node_filesystem_avail_bytes[1h], 86400) < 0",
    "avg_over_time(node_load1[5m])",
    "min_over_time(node_load1[10m])",
    "max_over_time(node_load1[10m])",
    "sum_over_time(node_load1[5m])",
    "count_over_time(node_load1[5m])",
    "last_over_time(node_load1[5m])",
    "quantile_over_time(0.9, node_load1[15m])",
    "quantile_over_time(0.5, temperature_celsius[10m])",
    "stddev_over_time(node_load1[10m])",
    "stdvar_over_time(node_load1[10m])",
    "present_over_time(gappy[5m])",
    "changes(node_load1[10m])",
    "changes(up[30m])",
    "resets(node_cpu_seconds_total[30m])",
    "rate(node_cpu_seconds_total[5m] offset 10m)",
    "rate(node_cpu_seconds_total[5m] @ end())",
    "avg_over_time(temperature_celsius[3m])",
    "max_over_time(gappy[2m])",
    // Absent.
    "absent(node_load1)",
    "absent(nonexistent)",
    "absent(nonexistent{host=\"h1\", job=\"x\"})",
    "absent(up{host=\"h4\"})",
    "absent_over_time(nonexistent[5m])",
    "absent_over_time(node_load1[5m])",
    "absent_over_time(gappy{host=\"h1\"}[1m])",
    // Math.
    "abs(temperature_celsius)",
    "ceil(node_load1)",
    "floor(node_load1)",
    "round(node_load1)",
    "round(node_load1, 0.1)",
    "sqrt(node_load1)",
    "exp(node_load1)",
    "ln(node_load1)",
    "log2(node_memory_MemTotal_bytes)",
    "log10(node_memory_MemTotal_bytes)",
    "clamp(temperature_celsius, -5, 20)",
    "clamp_min(temperature_celsius, 0)",
    "clamp_max(node_load1, 1.5)",
    "clamp(node_load1, 3, 1)",
    "-node_load1",
    "time()",
    "timestamp(node_load1)",
    "timestamp(gappy)",
    "vector(1)",
    "vector(time())",
    "scalar(node_load1{host=\"h1\"})",
    "scalar(node_load1)",
    "node_load1 * scalar(up{host=\"h1\"})",
    "day_of_week()",
    "hour()",
    "hour(timestamp(node_load1))",
    "day_of_week(vector(1700000000))",
    "month()",
    "year()",
    "minute()",
    "day_of_month()",
    "days_in_month()",
    // Labels.
    "label_replace(node_load1, \"short\", \"$1\", \"host\", \"h(.*)\")",
    "label_replace(node_load1, \"host\", \"\", \"host\", \"h1\")",
    "label_replace(node_load1, \"x\", \"y\", \"nolabel\", \"\")",
    "label_join(node_load1, \"both\", \"-\", \"host\", \"instance\")",
    "label_join(node_cpu_seconds_total, \"key\", \":\", \"cpu\", \"mode\")",
    // Sorting.
    "sort(node_load1)",
    "sort_desc(node_load1)",
    "sort(rate(node_cpu_seconds_total[5m]))",
    // Histograms.
    "histogram_quantile(0.5, rate(http_request_duration_seconds_bucket[5m]))",
    "histogram_quantile(0.9, rate(http_request_duration_seconds_bucket[5m]))",
    "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[10m])))",
    "histogram_quantile(0.5, sum by (le, host) (rate(http_request_duration_seconds_bucket[5m])))",
    "histogram_quantile(1, rate(http_request_duration_seconds_bucket[5m]))",
    "histogram_quantile(0, rate(http_request_duration_seconds_bucket[5m]))",
    "rate(http_request_duration_seconds_sum[5m]) / rate(http_request_duration_seconds_count[5m])",
    // Aggregations.
    "sum(node_load1)",
    "sum by (host) (rate(node_cpu_seconds_total[5m]))",
    "sum without (cpu) (rate(node_cpu_seconds_total[5m]))",
    "sum by (mode) (rate(node_cpu_seconds_total[5m]))",
    "avg(node_load1)",
    "avg by (mode) (rate(node_cpu_seconds_total[5m]))",
    "min(node_load1)",
    "max(node_load1)",
    "min by (host) (temperature_celsius)",
    "max without (sensor) (temperature_celsius)",
    "count(node_cpu_seconds_total)",
    "count by (host) (node_cpu_seconds_total)",
    "count_values(\"load\", round(node_load1))",
    "count_values by (host) (\"cpus\", count by (host, mode) (node_cpu_seconds_total))",
    "stddev(node_load1)",
    "stdvar(node_load1)",
    "stddev by (mode) (rate(node_cpu_seconds_total[5m]))",
    "topk(2, node_load1)",
    "bottomk(2, node_load1)",
    "topk by (host) (1, rate(node_cpu_seconds_total[5m]))",
    "bottomk without (cpu) (1, rate(node_cpu_seconds_total[5m]))",
    "quantile(0.5, node_load1)",
    "quantile(0.9, rate(node_cpu_seconds_total[5m]))",
    "quantile by (host) (0.25, temperature_celsius)",
    "group(node_load1)",
    "group by (host) (node_cpu_seconds_total)",
    "sum(up)",
    "count(up == 1)",
    "sum by (host) (node_filesystem_size_bytes - node_filesystem_avail_bytes)",
    // Arithmetic.
    "node_load1 + 1",
    "1 - node_load1",
    "node_load1 * 2 / 4",
    "node_load1 % 0.3",
    "node_load1 ^ 2",
    "2 ^ node_load1",
    "node_load1 atan2 2",
    "node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes",
    "100 * (1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)",
    "node_filesystem_avail_bytes / node_filesystem_size_bytes",
    "node_filesystem_avail_bytes / on (host, mountpoint) node_filesystem_size_bytes",
    "node_filesystem_avail_bytes / ignoring (fstype) node_filesystem_size_bytes",
    "node_load1 / on (host) group_left up",
    "up * on (host) group_right node_load1",
    "rate(node_cpu_seconds_total[5m]) / on (host) group_left count by (host) (node_cpu_seconds_total{mode=\"idle\"})",
    "sum by (host) (rate(node_cpu_seconds_total[5m])) / on (host) group_left count by (host) (node_load1)",
    "node_load1 * on (host) group_left (instance) up",
    "1 + 2 * 3",
    "2 ^ 3 ^ 2",
    "(1 + 2) * 3",
    "10 % 3",
    "-(node_load1)",
    // Comparisons.
    "node_load1 > 1",
    "node_load1 > bool 1",
    "1 < node_load1",
    "1 < bool node_load1",
    "node_load1 >= 1.2 <= 2",
    "node_load1 != 0",
    "node_load1 == bool node_load1",
    "node_memory_MemAvailable_bytes < node_memory_MemTotal_bytes",
    "node_memory_MemAvailable_bytes < bool node_memory_MemTotal_bytes",
    "temperature_celsius > on (host, sensor) temperature_celsius offset 5m",
    "1 > bool 2",
    "node_filesystem_avail_bytes / node_filesystem_size_bytes < 0.5",
    // Set operators.
    "node_load1 and up",
    "node_load1 and on (host) up",
    "node_load1 or up",
    "node_load1 unless up",
    "node_load1 unless on (host) up{host=\"h1\"}",
    "up or vector(0)",
    "node_load1 > 1 or node_load1 < 0.5",
    "rate(node_cpu_seconds_total[5m]) and on (mode) rate(node_cpu_seconds_total{cpu=\"1\", host=\"h1\", mode=\"user\"}[5m])",
    // Subqueries.
    "max_over_time(rate(node_cpu_seconds_total[5m])[30m:1m])",
    "avg_over_time(node_load1[10m:1m])",
    "max_over_time(node_load1[10m:])",
    "min_over_time(sum(node_load1)[20m:2m])",
    "rate(sum(node_cpu_seconds_total)[10m:1m])",
    "quantile_over_time(0.5, node_load1[15m:30s])",
    "max_over_time(deriv(node_load1[5m])[15m:1m])",
    "avg_over_time(node_load1[10m:1m] offset 5m)",
    "count_over_time((node_load1 > 1)[20m:1m])",
    "sum_over_time(vector(1)[5m:1m])",
    // Lookback and staleness.
    "up{host=\"h4\"}",
    "count(up)",
    "last_over_time(up{host=\"h4\"}[30m])",
];

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One series of the dataset.
struct DataSeries {
    name: &'static str,
    labels: Vec<(&'static str, String)>,
    /// Value at point i, or None where the series has no sample.
    value: Box<dyn Fn(i64) -> Option<f64>>,
}

fn dataset() -> Vec<DataSeries> {
    let mut out: Vec<DataSeries> = Vec::new();
    let hosts = ["h1", "h2", "h3", "h4"];
    for (hi, host) in hosts.iter().enumerate() {
        let h = hi as i64 + 1;
        let base = |extra: Vec<(&'static str, String)>| {
            let mut l = vec![
                ("host", host.to_string()),
                ("instance", format!("{host}:9100")),
            ];
            l.extend(extra);
            l
        };
        for cpu in 0..2i64 {
            for (mi, mode) in ["idle", "user", "system"].iter().enumerate() {
                let per_step = (h * 7 + cpu * 3 + mi as i64 * 5 + 1) as f64;
                let reset = *host == "h2" && cpu == 0 && *mode == "user";
                out.push(DataSeries {
                    name: "node_cpu_seconds_total",
                    labels: base(vec![("cpu", cpu.to_string()), ("mode", mode.to_string())]),
                    value: Box::new(move |i| {
                        // Ticks in hundredths, as /proc/stat gives them.
                        let ticks = if reset && i >= 300 {
                            (i - 300) as f64 * per_step * 13.0
                        } else {
                            1000.0 + i as f64 * per_step * 13.0 + (i % 7) as f64
                        };
                        Some(ticks / 100.0)
                    }),
                });
            }
        }
        out.push(DataSeries {
            name: "node_load1",
            labels: base(vec![]),
            value: Box::new(move |i| {
                Some(
                    ((1.0 + (i as f64 / 20.0 + h as f64).sin() * 0.8 + h as f64 * 0.2) * 100.0)
                        .round()
                        / 100.0,
                )
            }),
        });
        let total = (h * 4 + 4) as f64 * 1024.0 * 1024.0 * 1024.0;
        out.push(DataSeries {
            name: "node_memory_MemTotal_bytes",
            labels: base(vec![]),
            value: Box::new(move |_| Some(total)),
        });
        out.push(DataSeries {
            name: "node_memory_MemAvailable_bytes",
            labels: base(vec![]),
            value: Box::new(move |i| Some(total * 0.5 + ((i * 4096 * h) % 100_000_000) as f64)),
        });
        for (mp, size) in [("/", 50.0e9), ("/data", 2.0e12)] {
            out.push(DataSeries {
                name: "node_filesystem_size_bytes",
                labels: base(vec![("fstype", "ext4".into()), ("mountpoint", mp.into())]),
                value: Box::new(move |_| Some(size)),
            });
            out.push(DataSeries {
                name: "node_filesystem_avail_bytes",
                labels: base(vec![("fstype", "ext4".into()), ("mountpoint", mp.into())]),
                value: Box::new(move |i| Some(size * 0.6 - i as f64 * 4096.0 * 1000.0 * h as f64)),
            });
        }
        let silent_from = if *host == "h4" { POINTS - 80 } else { i64::MAX };
        out.push(DataSeries {
            name: "up",
            labels: base(vec![]),
            value: Box::new(move |i| {
                (i < silent_from).then_some(if i % 97 == 50 { 0.0 } else { 1.0 })
            }),
        });
        for sensor in ["cpu", "inlet"] {
            let offset = if sensor == "cpu" { 20.0 } else { -10.0 };
            out.push(DataSeries {
                name: "temperature_celsius",
                labels: base(vec![("sensor", sensor.into())]),
                value: Box::new(move |i| Some(offset + ((i * 3 + h) % 25) as f64 * 0.5)),
            });
        }
        out.push(DataSeries {
            name: "gappy",
            labels: base(vec![]),
            value: Box::new(move |i| ((i / 20) % 3 != 1).then_some(i as f64)),
        });
        let buckets = [("0.1", 0.3), ("0.5", 0.7), ("1", 0.9), ("+Inf", 1.0)];
        for (le, share) in buckets {
            out.push(DataSeries {
                name: "http_request_duration_seconds_bucket",
                labels: base(vec![("le", le.into())]),
                value: Box::new(move |i| Some(((i * (h * 10 + 3)) as f64 * share).floor())),
            });
        }
        out.push(DataSeries {
            name: "http_request_duration_seconds_count",
            labels: base(vec![]),
            value: Box::new(move |i| Some((i * (h * 10 + 3)) as f64)),
        });
        out.push(DataSeries {
            name: "http_request_duration_seconds_sum",
            labels: base(vec![]),
            value: Box::new(move |i| Some((i * (h * 10 + 3)) as f64 * 0.25)),
        });
    }
    out
}

/// The dataset in the OpenMetrics text format, for promtool.
fn openmetrics(data: &[DataSeries], start_ms: i64) -> String {
    let mut by_family: BTreeMap<&str, Vec<&DataSeries>> = BTreeMap::new();
    for s in data {
        by_family.entry(s.name).or_default().push(s);
    }
    let mut out = String::new();
    for (name, series) in by_family {
        out.push_str(&format!("# TYPE {name} unknown\n"));
        for s in series {
            let labels: Vec<String> = s
                .labels
                .iter()
                .map(|(n, v)| format!("{n}=\"{v}\""))
                .collect();
            for i in 0..POINTS {
                if let Some(v) = (s.value)(i) {
                    let t = (start_ms + i * STEP_MS) / 1000;
                    out.push_str(&format!("{name}{{{}}} {v} {t}\n", labels.join(",")));
                }
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

/// The dataset appended to Patrol's store, one batch per point in time.
fn load_patrol(store: &DiskStore, data: &[DataSeries], start_ms: i64) {
    for i in 0..POINTS {
        let mut families: BTreeMap<&str, Family> = BTreeMap::new();
        for s in data {
            if let Some(v) = (s.value)(i) {
                let family = families
                    .entry(s.name)
                    .or_insert_with(|| Family::new(s.name, MetricKind::Unknown, ""));
                family.series.push(Series {
                    labels: s
                        .labels
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.clone()))
                        .collect(),
                    value: v,
                });
            }
        }
        let batch = StampedBatch {
            host: "dataset".into(),
            stream_id: 1,
            seq: i as u64 + 1,
            sets: vec![(start_ms + i * STEP_MS, families.into_values().collect())],
        };
        store.append(batch).expect("append");
    }
}

struct Prometheus {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn start_prometheus(dir: &Path, om: &str) -> Prometheus {
    let om_path = dir.join("data.om");
    std::fs::write(&om_path, om).expect("write openmetrics");
    let tsdb = dir.join("tsdb");
    let status = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om_path)
        .arg(&tsdb)
        .stdout(Stdio::null())
        .status()
        .expect("run promtool");
    assert!(status.success(), "promtool could not create blocks");
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global:\n  evaluation_interval: 1m\n").expect("write config");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", tsdb.display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--storage.tsdb.retention.time=30d")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let prometheus = Prometheus { child, addr };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if get(addr, "/-/ready").is_some_and(|(status, _)| status == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "prometheus never became ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    prometheus
}

/// GET over HTTP/1.0 (so the answer is never chunked): status and body.
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut tcp = TcpStream::connect(addr).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(tcp, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").ok()?;
    let mut text = String::new();
    tcp.read_to_string(&mut text).ok()?;
    let status = text.get(9..12)?.parse().ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    Some((status, body.to_owned()))
}

fn encode(q: &str) -> String {
    form_urlencoded::byte_serialize(q.as_bytes()).collect()
}

/// Results in a comparable form: label set → points, in result order.
/// A result's series: labels as JSON text, and (time, value) points.
type Rows = Vec<(String, Vec<(f64, String)>)>;

fn normalise(data: &Json) -> (String, Rows) {
    let kind = data["resultType"].as_str().unwrap_or("").to_owned();
    let point = |p: &Json| {
        (
            p[0].as_f64().unwrap_or(f64::NAN),
            p[1].as_str().unwrap_or("").to_owned(),
        )
    };
    let rows = match kind.as_str() {
        "vector" => data["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| (r["metric"].to_string(), vec![point(&r["value"])]))
            .collect(),
        "matrix" => data["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                (
                    r["metric"].to_string(),
                    r["values"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(point)
                        .collect(),
                )
            })
            .collect(),
        _ => vec![(String::new(), vec![point(&data["result"])])],
    };
    (kind, rows)
}

fn close(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => {
            let scale = x.abs().max(y.abs()).max(1e-300);
            (x - y).abs() / scale < 1e-9 || (x - y).abs() < 1e-12
        }
        _ => false,
    }
}

/// Compares two answers; None if they agree, else what differs.
fn differs(ours: &Json, theirs: &Json, ordered: bool) -> Option<String> {
    let (k1, mut r1) = normalise(ours);
    let (k2, mut r2) = normalise(theirs);
    if k1 != k2 {
        return Some(format!("result type {k1} vs {k2}"));
    }
    if !ordered {
        r1.sort_by(|a, b| a.0.cmp(&b.0));
        r2.sort_by(|a, b| a.0.cmp(&b.0));
    }
    if r1.len() != r2.len() {
        let ours: Vec<&String> = r1.iter().map(|r| &r.0).collect();
        let theirs: Vec<&String> = r2.iter().map(|r| &r.0).collect();
        return Some(format!(
            "{} series vs {}: {ours:?} vs {theirs:?}",
            r1.len(),
            r2.len()
        ));
    }
    for ((l1, p1), (l2, p2)) in r1.iter().zip(&r2) {
        if l1 != l2 {
            return Some(format!("labels {l1} vs {l2}"));
        }
        if p1.len() != p2.len() {
            return Some(format!("{l1}: {} points vs {}", p1.len(), p2.len()));
        }
        for ((t1, v1), (t2, v2)) in p1.iter().zip(p2) {
            if (t1 - t2).abs() > 1e-6 || !close(v1, v2) {
                return Some(format!("{l1} at {t1}: {v1} vs {v2} (at {t2})"));
            }
        }
    }
    None
}

#[test]
fn patrol_answers_the_corpus_as_prometheus_does() {
    if !have("prometheus") || !have("promtool") {
        assert!(
            std::env::var_os("CI").is_none(),
            "prometheus and promtool are needed in CI (Debian package prometheus)"
        );
        eprintln!("note: prometheus/promtool not installed; conformance test skipped");
        return;
    }
    assert!(
        QUERIES.len() >= 150,
        "the corpus has {} queries",
        QUERIES.len()
    );
    let now = patrol_shared::model::now_ms();
    // Two hours of data ending a few minutes ago, on the 15 s grid.
    let start_ms = (now - POINTS * STEP_MS - 600_000) / 60_000 * 60_000;
    let end_ms = start_ms + (POINTS - 1) * STEP_MS;
    let data = dataset();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = DiskStore::open(&dir.path().join("patrol")).expect("open store");
    load_patrol(&store, &data, start_ms);
    let prometheus = start_prometheus(dir.path(), &openmetrics(&data, start_ms));
    let limits = Limits::default();

    let instants = [
        end_ms,
        end_ms - 17 * 60_000 - 30_000,
        start_ms + 300 * STEP_MS + 7_000,
    ];
    let (range_start, range_end, range_step) = (start_ms + 30 * 60_000, end_ms, 60_000);
    let mut failures = Vec::new();
    let mut compared = 0;
    let mut empty = 0;
    for q in QUERIES {
        if KNOWN_DIFFERENCES.iter().any(|(k, _)| k == q) {
            continue;
        }
        let ordered = q.starts_with("sort");
        for &t in &instants {
            let ours = match query::instant(&store, &limits, q, t, None) {
                Ok(v) => serde_json::from_str(&result_json(&v, t)).expect("our JSON"),
                Err(e) => {
                    failures.push(format!("{q} @ {t}: Patrol failed: {e}"));
                    continue;
                }
            };
            let path = format!(
                "/api/v1/query?query={}&time={}",
                encode(q),
                t as f64 / 1000.0
            );
            let (status, body) = get(prometheus.addr, &path).expect("prometheus answers");
            let theirs: Json = serde_json::from_str(&body).expect("prometheus json");
            if status != 200 {
                failures.push(format!("{q} @ {t}: Prometheus failed: {body}"));
                continue;
            }
            compared += 1;
            if theirs["data"]["result"]
                .as_array()
                .is_some_and(|r| r.is_empty())
            {
                empty += 1;
            }
            if let Some(d) = differs(&ours, &theirs["data"], ordered) {
                failures.push(format!("instant {q} @ {t}: {d}"));
            }
        }
        let ours = match query::range(&store, &limits, q, range_start, range_end, range_step, None)
        {
            Ok(series) => serde_json::from_str(&result_json(&Value::Matrix(series), range_end))
                .expect("our JSON"),
            Err(e) => {
                failures.push(format!("range {q}: Patrol failed: {e}"));
                continue;
            }
        };
        let path = format!(
            "/api/v1/query_range?query={}&start={}&end={}&step={}",
            encode(q),
            range_start as f64 / 1000.0,
            range_end as f64 / 1000.0,
            range_step / 1000
        );
        let (status, body) = get(prometheus.addr, &path).expect("prometheus answers");
        if status != 200 {
            failures.push(format!("range {q}: Prometheus failed: {body}"));
            continue;
        }
        let theirs: Json = serde_json::from_str(&body).expect("prometheus json");
        compared += 1;
        if theirs["data"]["result"]
            .as_array()
            .is_some_and(|r| r.is_empty())
        {
            empty += 1;
        }
        if let Some(d) = differs(&ours, &theirs["data"], false) {
            failures.push(format!("range {q}: {d}"));
        }
    }
    drop(prometheus);
    eprintln!(
        "{compared} comparisons of {} queries, {empty} with empty answers",
        QUERIES.len()
    );
    // The dataset must reach the queries: an empty answer is the rare case.
    assert!(
        empty * 10 < compared,
        "{empty} of {compared} answers are empty"
    );
    assert!(
        failures.is_empty(),
        "{} of {compared} comparisons differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
