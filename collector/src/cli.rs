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

/// Runs the collector until SIGINT or SIGTERM, telling systemd (if it
/// started us) once it serves and that it is alive.
pub fn main(args: Args) -> anyhow::Result<()> {
    let config = CollectorConfig::load(&args.config)?;
    if args.check_config {
        // What start() loads: the ingest certificates with the revocation
        // list, and the HTTPS ones.
        crate::ingest::credentials::Credentials::load(
            config.tls.clone(),
            config.ingest.crl.clone(),
        )?;
        if let Some(files) = &config.http.tls {
            patrol_shared::tls::https_config(&files.cert, &files.key)?;
        }
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
        let watchdog = patrol_shared::systemd::spawn_watchdog();
        patrol_shared::systemd::ready(&format!(
            "ingest on {}, HTTP on {}",
            running.ingest_addr, running.http_addr
        ));
        tokio::spawn(answer_hangups(args.config.clone()));
        patrol_shared::signal::until_shutdown().await;
        tracing::info!("shutting down");
        patrol_shared::systemd::stopping();
        cancel.cancel();
        running.wait().await;
        if let Some(watchdog) = watchdog {
            watchdog.abort();
        }
        Ok(())
    })
}

/// SIGHUP: the rules manager reloads the rule files on its own (it listens
/// for the signal too); listeners, TLS, storage and tokens are fixed at
/// start. This checks the file and says which part needs a restart.
async fn answer_hangups(path: PathBuf) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hangup.recv().await.is_some() {
        match CollectorConfig::load(&path) {
            Ok(_) => tracing::info!(
                config = %path.display(),
                "SIGHUP: the rules manager reloads the rule files; config reload is not supported for the other collector settings (listeners, TLS, storage, tokens, receivers); restart the service for those"
            ),
            Err(e) => tracing::error!(
                config = %path.display(),
                error = %e,
                "SIGHUP: the config file has errors; the running collector keeps its settings"
            ),
        }
    }
}
