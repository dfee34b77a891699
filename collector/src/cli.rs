//! The collector as a process: arguments, runtime, signals. Used by the
//! `patrol-collector` binary and by `patrol collector`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::CollectorConfig;

/// Patrol's collector: mTLS ingest from agents and the HTTP API.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Args {
    /// Config file (TOML).
    #[arg(long, short, default_value = "/etc/patrol/collector.toml")]
    pub config: PathBuf,
    /// Check the config file and the TLS files it names, then exit.
    #[arg(long)]
    pub check_config: bool,
}

/// Runs the collector until SIGINT or SIGTERM.
pub fn main(args: Args) -> anyhow::Result<()> {
    let config = CollectorConfig::load(&args.config)?;
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
        let running = crate::start(config, cancel.clone()).await?;
        tracing::info!(ingest = %running.ingest_addr, http = %running.http_addr, "collector running");
        patrol_shared::signal::until_shutdown().await;
        tracing::info!("shutting down");
        cancel.cancel();
        running.wait().await;
        Ok(())
    })
}
