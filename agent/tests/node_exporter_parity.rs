//! The agent's host metrics agree with node_exporter's on this machine:
//! same names, types and label names, and the same values within a few
//! percent. Runs the real node_exporter (Debian package
//! prometheus-node-exporter) on loopback; CI installs it.

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use patrol_agent::host::{HostConfig, HostMetrics};
use patrol_shared::model::{Family, MetricKind};

const BINARY: &str = "/usr/bin/prometheus-node-exporter";

/// Kills node_exporter however the test ends.
struct Exporter(Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One scraped sample: label set and value.
type Samples = Vec<(Vec<(String, String)>, f64)>;

struct Scrape {
    types: HashMap<String, String>,
    samples: HashMap<String, Samples>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn get(port: u16) -> Option<String> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(tcp, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut text = String::new();
    tcp.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
}

fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some((name, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, e)) = chars.next() {
                        value.push(match e {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((name.trim_start_matches(',').to_owned(), value));
        rest = &after[end..];
    }
    out.sort();
    out
}

fn parse_exposition(text: &str) -> Scrape {
    let mut types = HashMap::new();
    let mut samples: HashMap<String, Samples> = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut f = rest.split_whitespace();
            if let (Some(n), Some(t)) = (f.next(), f.next()) {
                types.insert(n.to_owned(), t.to_owned());
            }
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some(pair) => pair,
            None => continue,
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, parse_labels(l.trim_end_matches('}'))),
            None => (series, Vec::new()),
        };
        samples
            .entry(name.to_owned())
            .or_default()
            .push((labels, value));
    }
    Scrape { types, samples }
}

fn kind_word(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::Counter => "counter",
        MetricKind::Gauge => "gauge",
        MetricKind::Unknown => "untyped",
    }
}

fn family<'a>(ours: &'a [Family], name: &str) -> &'a Family {
    ours.iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("we do not report {name}"))
}

fn label(labels: &[(String, String)], name: &str) -> String {
    labels
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

fn close(a: f64, b: f64, tolerance: f64) -> bool {
    (a - b).abs() <= tolerance * a.abs().max(b.abs()).max(1.0)
}

fn start_exporter() -> Option<(Exporter, u16)> {
    if !std::path::Path::new(BINARY).exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{BINARY} is missing: install the Debian package prometheus-node-exporter"
        );
        eprintln!("note: {BINARY} not installed; parity with node_exporter not checked");
        return None;
    }
    let port = free_port();
    let child = Command::new(BINARY)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        // Debian's build also skips /run, /mnt and /media; compare with
        // upstream's default, which is the agent's.
        .arg(
            "--collector.filesystem.mount-points-exclude=\
             ^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start node_exporter");
    let exporter = Exporter(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(port).is_none() {
        assert!(Instant::now() < deadline, "node_exporter did not answer");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((exporter, port))
}

#[test]
fn host_metrics_agree_with_node_exporter() {
    let Some((_exporter, port)) = start_exporter() else {
        return;
    };
    let theirs = parse_exposition(&get(port).expect("scrape node_exporter"));
    let ours = HostMetrics::new(HostConfig::default()).collect().families;

    // Names, types and label names.
    let mut compared = 0;
    for f in ours.iter().filter(|f| f.name.starts_with("node_")) {
        let base = f.name.strip_suffix("_total").unwrap_or(&f.name);
        let their_type = theirs.types.get(&f.name).or_else(|| theirs.types.get(base));
        let (Some(their_type), Some(their_samples)) = (their_type, theirs.samples.get(&f.name))
        else {
            continue;
        };
        compared += 1;
        assert_eq!(their_type, kind_word(f.kind), "type of {}", f.name);
        if let (Some(s), Some((labels, _))) = (f.series.first(), their_samples.first()) {
            let our_names: BTreeSet<&str> = s.labels.iter().map(|(n, _)| n.as_str()).collect();
            let their_names: BTreeSet<&str> = labels.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(our_names, their_names, "label names of {}", f.name);
        }
    }
    assert!(compared > 40, "only {compared} families in common");

    // Stable gauges agree within 1 %.
    for name in [
        "node_memory_MemTotal_bytes",
        "node_memory_SwapTotal_bytes",
        "node_filefd_maximum",
        "node_boot_time_seconds",
    ] {
        let mine = family(&ours, name).series[0].value;
        let theirs = theirs.samples[name][0].1;
        assert!(
            close(mine, theirs, 0.01),
            "{name}: ours {mine}, node_exporter {theirs}"
        );
    }

    // The same filesystems, the same sizes.
    let mount = |labels: &[(String, String)]| label(labels, "mountpoint");
    let our_sizes: HashMap<String, f64> = family(&ours, "node_filesystem_size_bytes")
        .series
        .iter()
        .map(|s| (mount(&s.labels), s.value))
        .collect();
    let their_sizes: HashMap<String, f64> = theirs.samples["node_filesystem_size_bytes"]
        .iter()
        .map(|(l, v)| (mount(l), *v))
        .collect();
    let ours_set: BTreeSet<_> = our_sizes.keys().collect();
    let theirs_set: BTreeSet<_> = their_sizes.keys().collect();
    assert_eq!(ours_set, theirs_set, "mount points");
    for (mp, size) in &our_sizes {
        assert!(
            close(*size, their_sizes[mp], 0.01),
            "size of {mp}: {size} vs {}",
            their_sizes[mp]
        );
    }

    // Counters: read after node_exporter's scrape, so ours are not lower,
    // and close.
    let cpu_total = |samples: &mut dyn Iterator<Item = f64>| samples.sum::<f64>();
    let mine = cpu_total(
        &mut family(&ours, "node_cpu_seconds_total")
            .series
            .iter()
            .map(|s| s.value),
    );
    let theirs_cpu = cpu_total(
        &mut theirs.samples["node_cpu_seconds_total"]
            .iter()
            .map(|(_, v)| *v),
    );
    assert!(
        mine >= theirs_cpu - 0.05 && close(mine, theirs_cpu, 0.05),
        "cpu: {mine} vs {theirs_cpu}"
    );
    // The busiest interface both report (node_exporter 1.5 leaves out lo).
    let device = |labels: &[(String, String)]| label(labels, "device");
    let our_rx: HashMap<String, f64> = family(&ours, "node_network_receive_bytes_total")
        .series
        .iter()
        .map(|s| (device(&s.labels), s.value))
        .collect();
    let (busiest, theirs_rx) = theirs.samples["node_network_receive_bytes_total"]
        .iter()
        .filter(|(l, _)| our_rx.contains_key(&device(l)))
        .map(|(l, v)| (device(l), *v))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .expect("an interface both report");
    let mine = our_rx[&busiest];
    assert!(
        mine >= theirs_rx && close(mine, theirs_rx, 0.05),
        "{busiest} receive bytes: ours {mine}, node_exporter {theirs_rx}"
    );
}
