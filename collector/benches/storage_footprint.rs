//! The store under data shaped like real hosts, against the targets of the
//! storage issue: ingest throughput with durable acks, bytes on disk per
//! sample, reading one series over the whole span, memory per series.
//!
//! `cargo bench -p patrol-collector --bench storage_footprint`
//! Knobs: PATROL_BENCH_HOSTS (default 100), PATROL_BENCH_SERIES per host
//! (default 500), PATROL_BENCH_HOURS of data at 10 s (default 2).
//! Each host's series are node_exporter-like: a third counters that grow
//! at their own pace, the rest gauges that wander. Each step appends one
//! durable batch per host, as ingest does (from 8 threads at once, as
//! concurrent agent sessions append), with the store's upkeep once a minute
//! of data time.

use std::time::{Duration, Instant};

use patrol_collector::storage::disk::DiskStore;
use patrol_collector::storage::index::Matcher;
use patrol_collector::storage::{StampedBatch, Store};
use patrol_shared::model::Family;

const START_MS: i64 = 1_800_000_000_000;
const STEP_MS: i64 = 10_000;
/// Concurrent appenders, like concurrent agent sessions.
const WRITERS: usize = 8;

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

/// One host's batch at `step`: counters grow, gauges wander.
fn batch(host: usize, series: usize, step: i64) -> StampedBatch {
    let name = format!("host{host:03}");
    let mut counters = Family::counter("bench_counter_total", "");
    let mut gauges = Family::gauge("bench_gauge", "");
    for s in 0..series {
        let id = s.to_string();
        let labels = [
            ("host", name.as_str()),
            ("instance", name.as_str()),
            ("series", id.as_str()),
        ];
        if s % 3 == 0 {
            let rate = (s % 17 + 1) as f64 * 13.0;
            counters.push(&labels, (step as f64 * rate).floor());
        } else {
            let wander = ((step + s as i64) % 29) as f64 / 29.0;
            gauges.push(&labels, 1e9 + (s as f64) * 1000.0 + wander * 512.0);
        }
    }
    StampedBatch {
        host: name,
        stream_id: 1,
        seq: step as u64 + 1,
        sets: vec![(START_MS + step * STEP_MS, vec![counters, gauges])],
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
    let mut append_time = Duration::ZERO;
    for step in 0..steps {
        // Build outside the timed part: encoding batches is ingest's job.
        let batches: Vec<StampedBatch> = (0..hosts).map(|h| batch(h, series, step)).collect();
        let started = Instant::now();
        // Agents' sessions append at the same time, as they do in the
        // collector, so batches share flushes (group commit).
        let mut queues: Vec<Vec<StampedBatch>> = (0..WRITERS).map(|_| Vec::new()).collect();
        for (i, b) in batches.into_iter().enumerate() {
            queues[i % WRITERS].push(b);
        }
        std::thread::scope(|scope| {
            for queue in queues {
                let store = &store;
                scope.spawn(move || {
                    for b in queue {
                        store.append(b).expect("append");
                    }
                });
            }
        });
        if step % 6 == 5 {
            store
                .maintain(START_MS + step * STEP_MS, 1000 * 3_600_000)
                .expect("upkeep");
        }
        append_time += started.elapsed();
    }
    let samples = (hosts * series) as f64 * steps as f64;
    let rss = rss_bytes() - rss_before;
    let folder = dir_bytes(dir.path()) as f64;
    let (index, chunks) = (store.index_bytes() as f64, store.chunk_bytes() as f64);

    // One series over the whole span, chunks and head.
    let matchers = [
        Matcher::equal("__name__", "bench_gauge"),
        Matcher::equal("host", "host000"),
        Matcher::equal("series", "1"),
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
    println!("{:<48} {:>14} {:>10}", "", "figure", "target");
    println!(
        "{:<48} {:>14.0} {:>10}",
        "ingest, samples/s (durable append per batch)",
        samples / append_time.as_secs_f64(),
        ">= 1e6"
    );
    println!(
        "{:<48} {:>14.2} {:>10}",
        "whole folder, bytes/sample",
        folder / samples,
        "<= 1.5"
    );
    println!(
        "{:<48} {:>14.2} {:>10}",
        "  chunk files, bytes/sample",
        chunks / samples,
        ""
    );
    println!(
        "{:<48} {:>14.2} {:>10}",
        "  sled (series, streams, WAL), bytes/sample",
        index / samples,
        ""
    );
    println!(
        "{:<48} {:>14.3} {:>10}",
        format!("read one series, {read_samples} samples, ms"),
        read.as_secs_f64() * 1000.0,
        "< 1"
    );
    println!(
        "{:<48} {:>14.0} {:>10}",
        "memory per series, bytes (RSS added / series)",
        rss / (hosts * series) as f64,
        ""
    );
    println!("store stats: {:?}", store.stats());
}
