//! The store under data shaped like real hosts, against the targets of the
//! storage issue: ingest throughput with durable acks, bytes on disk per
//! sample, reading one series over the whole span, memory per series.
//!
//! `cargo bench -p patrol-collector --bench storage_footprint`
//! Knobs: PATROL_BENCH_HOSTS (default 100), PATROL_BENCH_SERIES per host
//! (default 500), PATROL_BENCH_HOURS of data at 10 s (default 2).
//!
//! Each host's series follow what node_exporter reports on an ordinary
//! server (docs/benchmarks.md): 60 % never change (sizes, limits, info
//! series), 15 % are integer counters (bytes, packets, interrupts; idle a
//! third of the time), 10 % are CPU-seconds counters (ticks ÷ 100, as
//! /proc/stat gives them), 15 % are gauges that wander (memory in pages,
//! load averages to two decimals). Samples are exactly 10 s apart, as the
//! agent stamps them.
//!
//! Each step appends one durable batch per host, each from its own thread
//! as each agent's session appends in the collector, so batches share
//! flushes (group commit); the store's upkeep runs once a minute of data
//! time. Ingest is reported per second of wall time and per second of CPU
//! time of the whole process (every core) during the appends: the second
//! is the "samples/s on one core" figure, and does not move with the
//! machine's other load.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use patrol_collector::storage::disk::DiskStore;
use patrol_collector::storage::index::Matcher;
use patrol_collector::storage::{StampedBatch, Store};
use patrol_shared::model::Family;

const START_MS: i64 = 1_800_000_000_000;
const STEP_MS: i64 = 10_000;

fn env(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_bytes() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kb| kb * 1024.0)
}

/// User plus system CPU time of this process, every thread.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is the
    // 14th field of the line, stime the 15th, in clock ticks (100 Hz).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let ticks = fields.get(11).unwrap_or(&0) + fields.get(12).unwrap_or(&0);
    Duration::from_millis(ticks * 10)
}

fn dir_bytes(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[derive(Clone, Copy)]
enum Shape {
    Constant,
    IntCounter,
    CpuSeconds,
    MemoryPages,
    Load,
}

impl Shape {
    fn of(series: usize) -> Shape {
        match series % 20 {
            0..=11 => Shape::Constant,
            12..=14 => Shape::IntCounter,
            15..=16 => Shape::CpuSeconds,
            17 => Shape::Load,
            _ => Shape::MemoryPages,
        }
    }
}

/// One host's series: their labels and where each value stands.
struct Host {
    name: String,
    rng: fastrand::Rng,
    series: Vec<(Shape, String, f64)>,
}

impl Host {
    fn new(index: usize, series: usize) -> Host {
        let mut rng = fastrand::Rng::with_seed(index as u64);
        let series = (0..series)
            .map(|s| {
                let shape = Shape::of(s);
                let start = match shape {
                    Shape::Constant => (rng.u64(1..1 << 20) * 4096) as f64,
                    Shape::IntCounter => rng.u64(0..1 << 40) as f64,
                    Shape::CpuSeconds => rng.u64(0..1 << 30) as f64,
                    Shape::MemoryPages => (rng.u64(1 << 18..1 << 21) * 4096) as f64,
                    Shape::Load => 1.0,
                };
                (shape, s.to_string(), start)
            })
            .collect();
        Host {
            name: format!("host{index:03}"),
            rng,
            series,
        }
    }

    /// The host's batch at `step`, its values moved on by one interval.
    fn batch(&mut self, step: i64) -> StampedBatch {
        let mut counters = Family::counter("bench_counter_total", "");
        let mut gauges = Family::gauge("bench_gauge", "");
        let rng = &mut self.rng;
        for (shape, id, value) in &mut self.series {
            let labels = [
                ("host", self.name.as_str()),
                ("instance", self.name.as_str()),
                ("series", id.as_str()),
            ];
            match shape {
                Shape::Constant => gauges.push(&labels, *value),
                Shape::IntCounter => {
                    if rng.u8(0..3) > 0 {
                        *value += rng.u64(1..5000) as f64;
                    }
                    counters.push(&labels, *value);
                }
                Shape::CpuSeconds => {
                    // The value kept is in ticks; node_exporter divides.
                    *value += rng.u64(0..1000) as f64;
                    counters.push(&labels, *value / 100.0);
                }
                Shape::MemoryPages => {
                    let pages = rng.i64(-256..=256) as f64;
                    *value = (*value + pages * 4096.0).max(4096.0);
                    gauges.push(&labels, *value);
                }
                Shape::Load => {
                    *value = (*value + rng.f64() - 0.5).clamp(0.0, 64.0);
                    gauges.push(&labels, (*value * 100.0).round() / 100.0);
                }
            }
        }
        StampedBatch {
            host: self.name.clone(),
            stream_id: 1,
            seq: step as u64 + 1,
            sets: vec![(START_MS + step * STEP_MS, vec![counters, gauges])],
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let hosts = env("PATROL_BENCH_HOSTS", 100) as usize;
    let series = env("PATROL_BENCH_SERIES", 500) as usize;
    let hours = env("PATROL_BENCH_HOURS", 2);
    let steps = hours * 360;
    let dir = tempfile::tempdir().expect("temp dir");
    let rss_before = rss_bytes();
    let store = DiskStore::open(dir.path()).expect("open store");
    let mut generators: Vec<Host> = (0..hosts).map(|h| Host::new(h, series)).collect();
    let mut wall = Duration::ZERO;
    let mut cpu = Duration::ZERO;
    std::thread::scope(|scope| {
        // One appender per host, as each agent's session is one.
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let senders: Vec<mpsc::Sender<StampedBatch>> = (0..hosts)
            .map(|_| {
                let (tx, rx) = mpsc::channel::<StampedBatch>();
                let (store, done) = (&store, done_tx.clone());
                scope.spawn(move || {
                    for batch in rx {
                        store.append(batch).expect("append");
                        let _ = done.send(());
                    }
                });
                tx
            })
            .collect();
        for step in 0..steps {
            // Built outside the timed part: decoding batches is ingest's job.
            let batches: Vec<StampedBatch> = generators.iter_mut().map(|g| g.batch(step)).collect();
            let (started, cpu_before) = (Instant::now(), cpu_time());
            for (tx, batch) in senders.iter().zip(batches) {
                tx.send(batch).expect("appender alive");
            }
            for _ in 0..hosts {
                done_rx.recv().expect("appender alive");
            }
            if step % 6 == 5 {
                store
                    .maintain(START_MS + step * STEP_MS, 1000 * 3_600_000)
                    .expect("upkeep");
            }
            wall += started.elapsed();
            cpu += cpu_time().saturating_sub(cpu_before);
        }
        drop(senders);
    });
    let samples = (hosts * series) as f64 * steps as f64;
    let rss = rss_bytes() - rss_before;
    let folder = dir_bytes(dir.path()) as f64;
    let (index, wal, chunks) = (
        store.index_bytes() as f64,
        store.wal_bytes() as f64,
        store.chunk_bytes() as f64,
    );

    // One series over the whole span, chunks and head.
    let matchers = [
        Matcher::equal("__name__", "bench_gauge"),
        Matcher::equal("host", "host000"),
        Matcher::equal("series", "19"),
    ];
    let reads = 200;
    let started = Instant::now();
    let mut read_samples = 0;
    for _ in 0..reads {
        let found = store.select(&matchers, i64::MIN, i64::MAX).expect("select");
        read_samples = found.iter().map(|s| s.samples.len()).sum::<usize>();
    }
    let read = started.elapsed() / reads;

    println!("store under {hosts} hosts x {series} series, {hours} h at 10 s: {samples} samples");
    let row = |what: &str, figure: String, target: &str| {
        println!("{what:<52} {figure:>14} {target:>10}");
    };
    row("", "figure".into(), "target");
    row(
        "ingest, samples per CPU-second (durable appends)",
        format!("{:.0}", samples / cpu.as_secs_f64()),
        ">= 1e6",
    );
    row(
        "ingest, samples per wall-clock second",
        format!("{:.0}", samples / wall.as_secs_f64()),
        "",
    );
    row(
        "whole folder, bytes/sample",
        format!("{:.3}", folder / samples),
        "<= 1.5",
    );
    row(
        "  chunk files, bytes/sample",
        format!("{:.3}", chunks / samples),
        "",
    );
    row(
        "  WAL files, bytes/sample",
        format!("{:.3}", wal / samples),
        "",
    );
    row(
        "  series log and sled (metadata, streams), bytes/sample",
        format!("{:.3}", index / samples),
        "",
    );
    row(
        &format!("read one series, {read_samples} samples, ms"),
        format!("{:.3}", read.as_secs_f64() * 1000.0),
        "< 1",
    );
    row(
        "memory per series, bytes (RSS added / series)",
        format!("{:.0}", rss / (hosts * series) as f64),
        "",
    );
    println!("store stats: {:?}", store.stats());
}
