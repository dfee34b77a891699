//! Query speed against Prometheus on the same data, both over HTTP on
//! loopback: a 24 h range query at a 15 s step for one series, and
//! `sum by (host) (rate(node_cpu_seconds_total[5m]))` over 4 hosts × 8
//! CPUs × 8 modes, instant and as a 1 h panel at 15 s. Each query runs
//! alternately against both, and the median of each is compared.
//!
//! `cargo bench -p patrol-collector --bench query_vs_prometheus`
//! (needs `prometheus` and `promtool`, Debian package `prometheus`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use patrol_collector::storage::disk::DiskStore;
use patrol_collector::storage::{StampedBatch, Store};
use patrol_shared::model::{Family, MetricKind, Series};
use patrol_shared::pki::{Ca, Role, DEFAULT_CA_VALIDITY, DEFAULT_LEAF_VALIDITY};

const STEP_MS: i64 = 15_000;
const POINTS: i64 = 24 * 240;
const TOKEN: &str = "patrol_bench_token";
/// Runs of each query (PATROL_BENCH_RUNS), median reported.
fn runs() -> usize {
    std::env::var("PATROL_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15)
}

/// A series at one point: name, labels, value.
type Point = (&'static str, Vec<(&'static str, String)>, f64);

fn series_at(i: i64) -> Vec<Point> {
    let mut out = Vec::new();
    for h in 0..4 {
        let host = format!("h{h}");
        for cpu in 0..8 {
            for (m, mode) in [
                "idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice",
            ]
            .iter()
            .enumerate()
            {
                let ticks = 100_000 + i * (h * 13 + cpu * 7 + m as i64 * 3 + 1) + (i % 5);
                out.push((
                    "node_cpu_seconds_total",
                    vec![
                        ("cpu", cpu.to_string()),
                        ("host", host.clone()),
                        ("instance", host.clone()),
                        ("mode", mode.to_string()),
                    ],
                    ticks as f64 / 100.0,
                ));
            }
        }
        out.push((
            "node_load1",
            vec![("host", host.clone()), ("instance", host.clone())],
            ((1.0 + (i as f64 / 40.0 + h as f64).sin()) * 100.0).round() / 100.0,
        ));
    }
    out
}

fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, usize) {
    let mut tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(120))).ok();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(tcp, "GET {path} HTTP/1.0\r\nHost: bench\r\n{auth}\r\n").expect("send");
    let mut body = Vec::new();
    tcp.read_to_end(&mut body).expect("read");
    let status = std::str::from_utf8(&body[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.len())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_ready(addr: SocketAddr, token: Option<&str>) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if TcpStream::connect(addr).is_ok() && get(addr, "/-/ready", token).0 == 200 {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{addr} never became ready");
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    for program in ["prometheus", "promtool"] {
        if Command::new(program).arg("--version").output().is_err() {
            eprintln!("{program} is not installed (Debian package prometheus); nothing to compare");
            return;
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let now = patrol_shared::model::now_ms();
    let start_ms = (now - POINTS * STEP_MS - 300_000) / 60_000 * 60_000;
    let end_ms = start_ms + (POINTS - 1) * STEP_MS;

    // The same data for both.
    let store_dir = dir.path().join("patrol");
    let mut om = String::new();
    {
        let store = DiskStore::open(&store_dir).expect("store");
        let mut lines: Vec<Vec<String>> = Vec::new();
        for i in 0..POINTS {
            let t = start_ms + i * STEP_MS;
            let mut families: std::collections::BTreeMap<&str, Family> = Default::default();
            for (k, (name, labels, v)) in series_at(i).into_iter().enumerate() {
                if lines.len() <= k {
                    lines.push(Vec::new());
                }
                let text: Vec<String> =
                    labels.iter().map(|(n, v)| format!("{n}=\"{v}\"")).collect();
                lines[k].push(format!("{name}{{{}}} {v} {}\n", text.join(","), t / 1000));
                families
                    .entry(name)
                    .or_insert_with(|| Family::new(name, MetricKind::Unknown, ""))
                    .series
                    .push(Series {
                        labels: labels.into_iter().map(|(n, v)| (n.to_owned(), v)).collect(),
                        value: v,
                    });
            }
            store
                .append(StampedBatch {
                    host: "bench".into(),
                    stream_id: 1,
                    seq: i as u64 + 1,
                    sets: vec![(t, families.into_values().collect())],
                })
                .expect("append");
        }
        store.maintain(end_ms, 1000 * 3_600_000).expect("upkeep");
        om.push_str("# TYPE node_cpu_seconds_total unknown\n");
        for series in lines.iter().take(lines.len()) {
            if series[0].starts_with("node_cpu") {
                om.extend(series.iter().cloned());
            }
        }
        om.push_str("# TYPE node_load1 unknown\n");
        for series in &lines {
            if series[0].starts_with("node_load1") {
                om.extend(series.iter().cloned());
            }
        }
        om.push_str("# EOF\n");
    }
    let om_path = dir.path().join("data.om");
    std::fs::write(&om_path, om).expect("write om");
    let tsdb = dir.path().join("tsdb");
    let ok = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om_path)
        .arg(&tsdb)
        .stdout(Stdio::null())
        .status()
        .expect("promtool")
        .success();
    assert!(ok, "promtool failed");

    // Prometheus.
    let prom_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    std::fs::write(dir.path().join("prometheus.yml"), "global: {}\n").unwrap();
    let mut prometheus = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!("--storage.tsdb.path={}", tsdb.display()))
        .arg(format!("--web.listen-address={prom_addr}"))
        .arg("--storage.tsdb.retention.time=30d")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");

    // Patrol's collector on the store written above.
    let pki = dir.path().join("pki");
    let ca = Ca::generate(DEFAULT_CA_VALIDITY).unwrap();
    ca.write(&pki, false).unwrap();
    ca.issue(
        Role::Collector,
        "collector",
        &["127.0.0.1".into()],
        DEFAULT_LEAF_VALIDITY,
    )
    .unwrap()
    .write(&pki, "collector", false)
    .unwrap();
    let mut config = patrol_collector::CollectorConfig::example(&pki, &store_dir);
    config.ingest.listen = "127.0.0.1:0".parse().unwrap();
    config.http.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    config.http.tokens = vec![patrol_collector::http::auth::TokenConfig {
        name: "bench".into(),
        role: patrol_collector::http::auth::Role::Viewer,
        sha256: patrol_collector::http::auth::hash_token(TOKEN),
    }];
    let patrol_addr = config.http.listen;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let _running = runtime
        .block_on(patrol_collector::start(config, cancel.clone()))
        .expect("collector");
    wait_ready(prom_addr, None);
    wait_ready(patrol_addr, Some(TOKEN));

    let enc = |q: &str| -> String { form_urlencoded::byte_serialize(q.as_bytes()).collect() };
    let (s, e) = (start_ms as f64 / 1000.0, end_ms as f64 / 1000.0);
    let rate = "sum by (host) (rate(node_cpu_seconds_total[5m]))";
    let cases = [
        (
            "24 h range, one series, 15 s step",
            format!(
                "/api/v1/query_range?query={}&start={s}&end={e}&step=15",
                enc("node_load1{host=\"h1\"}")
            ),
        ),
        (
            "sum by (host) (rate(...[5m])), 256 series, instant",
            format!("/api/v1/query?query={}&time={e}", enc(rate)),
        ),
        (
            "sum by (host) (rate(...[5m])), 256 series, 1 h at 15 s",
            format!(
                "/api/v1/query_range?query={}&start={}&end={e}&step=15",
                enc(rate),
                e - 3600.0
            ),
        ),
    ];
    println!(
        "query speed, Patrol vs Prometheus 2.42 on the same data (median of {}, HTTP on loopback)",
        runs()
    );
    println!(
        "{:<52} {:>12} {:>12} {:>8}",
        "", "Patrol", "Prometheus", "ratio"
    );
    for (what, path) in &cases {
        // Warm both, and check both answer.
        let (ps, pbytes) = get(patrol_addr, path, Some(TOKEN));
        let (qs, qbytes) = get(prom_addr, path, None);
        assert_eq!((ps, qs), (200, 200), "{what}: both answer");
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..runs() {
            let t = Instant::now();
            get(patrol_addr, path, Some(TOKEN));
            ours.push(t.elapsed());
            let t = Instant::now();
            get(prom_addr, path, None);
            theirs.push(t.elapsed());
        }
        let (a, b) = (median(ours), median(theirs));
        println!(
            "{what:<52} {:>10.2}ms {:>10.2}ms {:>7.2}x   ({pbytes} vs {qbytes} bytes)",
            a.as_secs_f64() * 1000.0,
            b.as_secs_f64() * 1000.0,
            b.as_secs_f64() / a.as_secs_f64()
        );
    }
    println!("ratio = Prometheus time / Patrol time: above 1 means Patrol is faster");
    cancel.cancel();
    let _ = prometheus.kill();
    let _ = prometheus.wait();
}
