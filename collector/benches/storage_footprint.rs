//! What the store costs on disk and in memory per sample, against the
//! 16 bytes a raw (i64, f64) sample takes: after ingest (WAL and head), after
//! the head's chunks are closed and the WAL truncated, and after retention
//! has deleted everything.
//!
//! `cargo bench -p patrol-collector --bench storage_footprint`
//! (PATROL_BENCH_SERIES, default 1000; PATROL_BENCH_SAMPLES per series,
//! default 2160 = six hours at 10 s).

use std::time::Instant;

use patrol_collector::storage::disk::DiskStore;
use patrol_collector::storage::{StampedBatch, Store};
use patrol_shared::model::Family;

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

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let series = env("PATROL_BENCH_SERIES", 1000);
    let per_series = env("PATROL_BENCH_SAMPLES", 2160);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = DiskStore::open(dir.path()).expect("open store");
    let rss_before = rss_bytes();
    let started = Instant::now();
    for step in 0..per_series {
        let mut family = Family::gauge("bench_value", "");
        for s in 0..series {
            // A realistic mix: slow drifts with noise.
            let v = (s as f64) * 10.0 + ((step * (s % 7 + 1)) % 13) as f64 * 0.5;
            family.push(&[("series", &s.to_string()), ("host", "bench")], v);
        }
        let batch = StampedBatch {
            host: "bench".into(),
            stream_id: 1,
            seq: step as u64 + 1,
            sets: vec![(1_800_000_000_000 + step * 10_000, vec![family])],
        };
        store.append(batch).expect("append");
        // As in production: upkeep once a minute of data time (every 6
        // steps), so WAL records go as soon as their chunks close.
        if step % 6 == 5 {
            store
                .maintain(1_800_000_000_000 + step * 10_000, 1000 * 3_600_000)
                .expect("maintain");
        }
    }
    let elapsed = started.elapsed();
    let samples = (series * per_series) as f64;
    let after_ingest = store.size_on_disk() as f64;
    let ingest_split = (store.index_bytes(), store.chunk_bytes());
    let rss = rss_bytes() - rss_before;
    let end = 1_800_000_000_000 + per_series * 10_000;
    let hour = 3_600_000;
    store
        .maintain(end + 3 * hour, 1000 * hour)
        .expect("maintain");
    let after_close = store.size_on_disk() as f64;
    let close_split = (store.index_bytes(), store.chunk_bytes());
    store
        .maintain(end + 2000 * hour, 1000 * hour)
        .expect("retention");
    let after_retention = store.size_on_disk() as f64;
    let retention_split = (store.index_bytes(), store.chunk_bytes());
    println!("storage footprint: {series} series x {per_series} samples = {samples} samples");
    println!(
        "ingest: {:.0} samples/s (one durable batch per step)",
        samples / elapsed.as_secs_f64()
    );
    println!("{:<44} {:>12} {:>12}", "", "bytes", "B/sample");
    for (what, bytes) in [
        ("raw (i64 + f64) baseline", samples * 16.0),
        ("on disk after ingest (upkeep every minute)", after_ingest),
        ("on disk after chunks closed, WAL truncated", after_close),
        (
            "on disk after retention deleted everything",
            after_retention,
        ),
        ("resident memory added by the store", rss),
    ] {
        println!("{what:<44} {bytes:>12.0} {:>12.2}", bytes / samples);
    }
    for (what, (index, chunks)) in [
        ("after ingest", ingest_split),
        ("after close", close_split),
        ("after retention", retention_split),
    ] {
        println!(
            "  {what:<16} index (sled: series, streams, WAL) {index:>10} B, chunk files {chunks:>10} B ({:.2} B/sample)",
            chunks as f64 / samples
        );
    }
    println!("store stats: {:?}", store.stats());
}
