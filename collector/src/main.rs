//! `patrol-collector --config FILE`: the collector alone, for real
//! deployments (systemd runs this).

use clap::Parser;

/// jemalloc rather than glibc's malloc: each batch frees thousands of small
/// label strings on one thread that another allocated, and rustls' record
/// buffers then made glibc consolidate them, about half of ingest's CPU
/// under load (docs/benchmarks.md).
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    let args = patrol_collector::cli::Args::parse();
    patrol_shared::logging::init();
    patrol_collector::cli::main(args)
}
