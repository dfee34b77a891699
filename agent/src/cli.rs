//! The agent as a process: arguments, runtime, signals. Used by the
//! `patrol-agent` binary and by `patrol agent`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
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
/// us) when it is ready and that it is alive; SIGHUP reloads the config
/// file (see [`supervise`]).
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
        let shutdown = CancellationToken::new();
        let on_signal = shutdown.clone();
        tokio::spawn(async move {
            patrol_shared::signal::until_shutdown().await;
            tracing::info!("shutting down");
            patrol_shared::systemd::stopping();
            on_signal.cancel();
        });
        let watchdog = patrol_shared::systemd::spawn_watchdog();
        let result = supervise(&args.config, config, shutdown).await;
        if let Some(watchdog) = watchdog {
            watchdog.abort();
        }
        result
    })
}

/// Runs [`crate::run`] with `config` until `shutdown`, replacing the run on
/// SIGHUP: the file is read again and, when it is valid (TLS files too),
/// the running agent is stopped, awaited to its end (so that its spool and
/// file-integrity state are closed and can be opened again) and started
/// anew with the new config. A file with errors is logged and the running
/// agent keeps its config. systemd hears RELOADING=1 then READY=1, the
/// `Type=notify` convention for a reload.
///
/// Handling SIGHUP at all matters: its default action ends the process.
async fn supervise(
    path: &Path,
    mut config: AgentConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut hangups = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    let mut status = "measuring and streaming";
    loop {
        // Its own token per run: stopping it for a reload leaves
        // `shutdown` alone, and a shutdown stops it.
        let cancel = shutdown.child_token();
        let mut agent = tokio::spawn(crate::run(config, cancel.clone()));
        // The agent has nothing to serve; it is ready once its tasks run,
        // and it reconnects to the collector on its own.
        patrol_shared::systemd::ready(status);
        let next = loop {
            tokio::select! {
                ended = &mut agent => {
                    ended.context("the agent task failed")??;
                    return Ok(());
                }
                hangup = hangups.recv() => {
                    if hangup.is_none() {
                        // No more signals can come; run to the end.
                        (&mut agent).await.context("the agent task failed")??;
                        return Ok(());
                    }
                    if let Some(next) = reread(path) {
                        break next;
                    }
                }
            }
        };
        patrol_shared::systemd::reloading();
        tracing::info!(config = %path.display(), "SIGHUP: config is valid; restarting the agent with it");
        cancel.cancel();
        agent.await.context("the agent task failed")??;
        if shutdown.is_cancelled() {
            return Ok(());
        }
        config = next;
        status = "measuring and streaming (config reloaded)";
    }
}

/// The config file read again for a reload, with its TLS files; `None`
/// (and the reason logged, with the file and line) when it cannot be used.
fn reread(path: &Path) -> Option<AgentConfig> {
    let checked = AgentConfig::load(path)
        .map_err(anyhow::Error::from)
        .and_then(|config| {
            patrol_shared::tls::client_config(&config.tls)?;
            Ok(config)
        });
    match checked {
        Ok(config) => Some(config),
        Err(e) => {
            tracing::error!(
                config = %path.display(),
                // One journal entry, not one per problem.
                error = %format!("{e:#}").replace("\n  - ", "; ").replace('\n', " "),
                "SIGHUP: the config file has errors; the agent keeps running with its previous config"
            );
            None
        }
    }
}
