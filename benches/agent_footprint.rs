//! The agent's footprint against node_exporter's, measured on this machine
//! in the same run: resident memory, CPU time per collection cycle (per
//! scrape for node_exporter), and series per cycle.
//!
//! `cargo bench --bench agent_footprint` (knobs: PATROL_BENCH_INTERVAL,
//! default "1s"; PATROL_BENCH_CYCLES, default 20). Exits non-zero when a
//! target is missed: agent RSS under 10 MiB, agent CPU per cycle under half
//! of node_exporter's per scrape. Prints SKIP and exits 0 when
//! /usr/bin/prometheus-node-exporter is not installed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use patrol_agent::AgentConfig;
use patrol_collector::CollectorConfig;
use patrol_shared::pki::{Ca, Role, DEFAULT_CA_VALIDITY, DEFAULT_LEAF_VALIDITY};

const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";
const RSS_TARGET_BYTES: f64 = 10.0 * 1024.0 * 1024.0;
const CPU_TARGET_RATIO: f64 = 0.5;

/// Kills the child however the bench ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What one process cost over the measured window.
struct Footprint {
    cpu_per_cycle_ms: f64,
    rss_bytes: f64,
    hwm_bytes: f64,
    series: usize,
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benches; nothing to list.
    }
    let interval = std::env::var("PATROL_BENCH_INTERVAL").unwrap_or_else(|_| "1s".into());
    let interval_d =
        patrol_shared::config::parse_duration(&interval).expect("PATROL_BENCH_INTERVAL");
    let cycles: u32 = std::env::var("PATROL_BENCH_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(20);
    if !Path::new(NODE_EXPORTER).exists() {
        println!("SKIP: {NODE_EXPORTER} not installed (apt-get install prometheus-node-exporter)");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = measure_agent(dir.path(), interval_d, cycles);
    let node = measure_node_exporter(interval_d, cycles);
    report(&agent, &node, &interval, cycles);
}

fn measure_agent(dir: &Path, interval: Duration, cycles: u32) -> Footprint {
    let ca = Ca::generate(DEFAULT_CA_VALIDITY).expect("CA");
    ca.write(dir, false).expect("write CA");
    let sans = ["127.0.0.1".to_owned()];
    ca.issue(Role::Collector, "collector", &sans, DEFAULT_LEAF_VALIDITY)
        .and_then(|i| i.write(dir, "collector", false))
        .expect("collector cert");
    ca.issue(Role::Agent, "bench", &[], DEFAULT_LEAF_VALIDITY)
        .and_then(|i| i.write(dir, "bench", false))
        .expect("agent cert");
    let (ingest, http) = (free_port(), free_port());
    let mut collector = CollectorConfig::example(dir, &dir.join("data"));
    collector.ingest.listen = format!("127.0.0.1:{ingest}").parse().expect("addr");
    collector.http.listen = format!("127.0.0.1:{http}").parse().expect("addr");
    let mut agent = AgentConfig::example(dir, "bench", &format!("127.0.0.1:{ingest}"));
    agent.interval = interval;
    write_toml(&dir.join("collector.toml"), &collector);
    write_toml(&dir.join("agent.toml"), &agent);

    let _collector = spawn(&[
        "collector",
        "--config",
        &dir.join("collector.toml").display().to_string(),
    ]);
    let agent_proc = spawn(&[
        "agent",
        "--config",
        &dir.join("agent.toml").display().to_string(),
    ]);
    let pid = agent_proc.0.id();
    let series_line = "patrol_agent_series{host=\"bench\",instance=\"bench\"}";
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(http, series_line).is_none() {
        assert!(
            Instant::now() < deadline,
            "agent never reached the collector"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(interval * 3); // warm-up
    let before = cpu_ns(pid);
    std::thread::sleep(interval * cycles);
    let after = cpu_ns(pid);
    let (rss, hwm) = memory(pid);
    Footprint {
        cpu_per_cycle_ms: (after - before) as f64 / f64::from(cycles) / 1e6,
        rss_bytes: rss,
        hwm_bytes: hwm,
        series: metric(http, series_line).unwrap_or(0.0) as usize,
    }
}

fn measure_node_exporter(interval: Duration, cycles: u32) -> Footprint {
    let port = free_port();
    let child = Command::new(NODE_EXPORTER)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start node_exporter");
    let guard = Guard(child);
    let pid = guard.0.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(port, "/metrics").is_none() {
        assert!(Instant::now() < deadline, "node_exporter did not answer");
        std::thread::sleep(Duration::from_millis(100));
    }
    for _ in 0..3 {
        get(port, "/metrics");
        std::thread::sleep(interval);
    }
    let before = cpu_ns(pid);
    let mut series = 0;
    for _ in 0..cycles {
        let started = Instant::now();
        if let Some(body) = get(port, "/metrics") {
            series = body
                .lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
                .count();
        }
        std::thread::sleep(interval.saturating_sub(started.elapsed()));
    }
    let after = cpu_ns(pid);
    let (rss, hwm) = memory(pid);
    Footprint {
        cpu_per_cycle_ms: (after - before) as f64 / f64::from(cycles) / 1e6,
        rss_bytes: rss,
        hwm_bytes: hwm,
        series,
    }
}

fn report(agent: &Footprint, node: &Footprint, interval: &str, cycles: u32) {
    let mib = |b: f64| b / 1024.0 / 1024.0;
    println!("agent footprint vs node_exporter: interval {interval}, {cycles} cycles, same machine, same run");
    println!(
        "{:<28} {:>12} {:>14} {:>8}",
        "", "patrol agent", "node_exporter", "ratio"
    );
    println!(
        "{:<28} {:>12.2} {:>14.2} {:>8.2}",
        "RSS (MiB)",
        mib(agent.rss_bytes),
        mib(node.rss_bytes),
        agent.rss_bytes / node.rss_bytes
    );
    println!(
        "{:<28} {:>12.2} {:>14.2} {:>8.2}",
        "peak RSS (MiB)",
        mib(agent.hwm_bytes),
        mib(node.hwm_bytes),
        agent.hwm_bytes / node.hwm_bytes
    );
    println!(
        "{:<28} {:>12.3} {:>14.3} {:>8.2}",
        "CPU per cycle/scrape (ms)",
        agent.cpu_per_cycle_ms,
        node.cpu_per_cycle_ms,
        agent.cpu_per_cycle_ms / node.cpu_per_cycle_ms
    );
    println!(
        "{:<28} {:>12} {:>14} {:>8.2}",
        "series per cycle/scrape",
        agent.series,
        node.series,
        agent.series as f64 / node.series as f64
    );
    let rss_ok = agent.rss_bytes < RSS_TARGET_BYTES;
    let cpu_ok = agent.cpu_per_cycle_ms < CPU_TARGET_RATIO * node.cpu_per_cycle_ms;
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    println!(
        "target: agent RSS < 10 MiB .................. {}",
        verdict(rss_ok)
    );
    println!(
        "target: agent CPU/cycle < 0.5 x node_exporter {}",
        verdict(cpu_ok)
    );
    if !(rss_ok && cpu_ok) {
        std::process::exit(1);
    }
}

fn spawn(args: &[&str]) -> Guard {
    let child = Command::new(env!("CARGO_BIN_EXE_patrol"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start patrol");
    Guard(child)
}

fn write_toml<T: serde::Serialize>(path: &Path, value: &T) {
    std::fs::write(path, toml::to_string(value).expect("toml")).expect("write config");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn get(port: u16, path: &str) -> Option<String> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(tcp, "GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n").ok()?;
    let mut text = String::new();
    tcp.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
}

fn metric(port: u16, series: &str) -> Option<f64> {
    let body = get(port, "/metrics")?;
    body.lines().find_map(|l| {
        l.strip_prefix(series)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// On-CPU nanoseconds of every thread the process has now
/// (/proc/PID/task/*/schedstat, first field): finer than the 10 ms ticks
/// of /proc/PID/stat. Threads that exited are not counted.
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// VmRSS and VmHWM in bytes.
fn memory(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .split_whitespace()
                    .next()?
                    .parse::<f64>()
                    .ok()
            })
            .map_or(0.0, |kb| kb * 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
