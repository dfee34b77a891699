//! The agent as a process: arguments, runtime, signals. Used by the
//! `patrol-agent` binary and by `patrol agent`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::AgentConfig;

/// Patrol's agent: measures this host and streams to the collector.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Args {
    /// Config file (TOML).
    #[arg(long, short, default_value = "/etc/patrol/agent.toml")]
    pub config: PathBuf,
    /// Check the config file and the TLS files it names, then exit.
    #[arg(long)]
    pub check_config: bool,
}

/// Runs the agent until SIGINT or SIGTERM.
pub fn main(args: Args) -> anyhow::Result<()> {
    let config = AgentConfig::load(&args.config)?;
    if args.check_config {
        patrol_shared::tls::client_config(&config.tls)?;
        println!("{}: OK", args.config.display());
        return Ok(());
    }
    // One thread is plenty for an agent and keeps it small; blocking reads
    // run on tokio's blocking pool.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let cancel = CancellationToken::new();
        let shutdown = cancel.clone();
        tokio::spawn(async move {
            patrol_shared::signal::until_shutdown().await;
            tracing::info!("shutting down");
            shutdown.cancel();
        });
        crate::run(config, cancel).await?;
        Ok(())
    })
}
