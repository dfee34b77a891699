//! `patrol-collector --config FILE`: the collector alone, for real
//! deployments (systemd runs this).

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

/// Patrol's collector: mTLS ingest from agents and the HTTP API.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Config file (TOML).
    #[arg(long, short, default_value = "/etc/patrol/collector.toml")]
    config: PathBuf,
    /// Check the config file and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    patrol_shared::logging::init();
    let config = patrol_collector::CollectorConfig::load(&args.config)?;
    if args.check_config {
        patrol_shared::tls::server_config(&config.tls)?;
        println!("{}: OK", args.config.display());
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let cancel = CancellationToken::new();
        let running = patrol_collector::start(config, cancel.clone()).await?;
        tracing::info!(ingest = %running.ingest_addr, http = %running.http_addr, "collector running");
        patrol_shared::signal::until_shutdown().await;
        tracing::info!("shutting down");
        cancel.cancel();
        running.wait().await;
        Ok(())
    })
}
