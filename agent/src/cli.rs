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

/// Runs the agent until SIGINT or SIGTERM, telling systemd (if it started
/// us) when it is ready and that it is alive.
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
            patrol_shared::systemd::stopping();
            shutdown.cancel();
        });
        tokio::spawn(answer_hangups(args.config.clone()));
        let watchdog = patrol_shared::systemd::spawn_watchdog();
        // The agent has nothing to serve; it is ready once its tasks run,
        // and it reconnects to the collector on its own.
        let agent = tokio::spawn(crate::run(config, cancel));
        patrol_shared::systemd::ready("measuring and streaming");
        let result = agent.await.context("the agent task failed")?;
        if let Some(watchdog) = watchdog {
            watchdog.abort();
        }
        result?;
        Ok(())
    })
}

/// SIGHUP: the running agent cannot swap its config (its collectors,
/// checks and labels are fixed when [`crate::run`] starts), so it only checks
/// the file, so that the operator knows whether a restart would succeed.
/// Handling the signal at all matters: its default action ends the process.
async fn answer_hangups(path: PathBuf) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hangup.recv().await.is_some() {
        match AgentConfig::load(&path) {
            Ok(_) => tracing::warn!(
                config = %path.display(),
                "SIGHUP: config reload is not supported for patrol-agent; restart the service (the file is valid)"
            ),
            Err(e) => tracing::error!(
                config = %path.display(),
                error = %e,
                "SIGHUP: config reload is not supported for patrol-agent, and the file has errors: fix them before restarting"
            ),
        }
    }
}
