//! Patrol's collector: mTLS ingest from agents, storage, and the HTTP API.
//!
//! Data flows one way: [`ingest`] → [`storage`] → [`http`]. [`start`] wires
//! them together for the binaries (`patrol-collector` and `patrol up`) and
//! for tests, which bind port 0 and read back the addresses.

pub mod audit;
pub mod cli;
pub mod config;
pub mod http;
pub mod incident;
pub mod ingest;
mod listener;
pub mod notify;
pub mod own_metrics;
pub mod query;
pub mod rules;
pub mod silence;
pub mod storage;
pub mod telemetry;
pub mod textformat;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use config::CollectorConfig;

/// Why the collector could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Tls(#[from] patrol_shared::tls::TlsError),
    #[error(transparent)]
    Storage(#[from] storage::StoreError),
    #[error("rules: {0}")]
    Rules(#[from] rules::file::RuleError),
    #[error("notifications: {0}")]
    Notify(#[from] notify::NotifyError),
    #[error("cannot listen on {addr} ({what}): {error}")]
    Bind {
        addr: SocketAddr,
        what: &'static str,
        error: std::io::Error,
    },
}

/// A collector that is running.
pub struct Running {
    pub ingest_addr: SocketAddr,
    pub http_addr: SocketAddr,
    tasks: JoinSet<()>,
}

impl Running {
    /// Waits until every task has stopped (after the cancel token fired).
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Binds both listeners and starts serving; stops when `cancel` fires.
pub async fn start(
    config: CollectorConfig,
    cancel: CancellationToken,
) -> Result<Running, StartError> {
    let credentials =
        ingest::credentials::Credentials::load(config.tls.clone(), config.ingest.crl.clone())?;
    let rules = Arc::new(rules::manager::Manager::load(config.rules.settings())?);
    let path = config.storage.path.clone();
    let disk = tokio::task::spawn_blocking(move || storage::recovering::Storage::open(&path))
        .await
        .map_err(|e| storage::StoreError::Unavailable(format!("open task failed: {e}")))??;
    let disk = Arc::new(disk);
    let store: Arc<dyn storage::Store> = disk.clone();
    rules.restore(store.as_ref());
    let silences = Arc::new(silence::SilenceBook::load(store.clone()));
    let incidents = Arc::new(
        incident::service::IncidentService::load(config.incidents.clone(), store.clone())
            .map_err(storage::StoreError::Unavailable)?,
    );
    let telemetry = Arc::new(telemetry::Telemetry::new());
    let ingest_listener = bind(config.ingest.listen, "ingest.listen").await?;
    let http_listener = bind(config.http.listen, "http.listen").await?;
    let running_addr = |l: &TcpListener, addr| l.local_addr().unwrap_or(addr);
    let ingest_addr = running_addr(&ingest_listener, config.ingest.listen);
    let http_addr = running_addr(&http_listener, config.http.listen);

    let ingest_ctx = Arc::new(ingest::IngestContext {
        limits: config.ingest.clone(),
        credentials: Arc::new(credentials),
        store: store.clone(),
        telemetry: telemetry.clone(),
    });
    let rules_task = rules::manager::run(
        rules.clone(),
        store.clone(),
        config.query.limits(),
        cancel.clone(),
    );
    let notifier = match &config.notify {
        Some(notify_config) => {
            let outbox = Arc::new(notify::store_outbox::StoreOutbox::new(store.clone()));
            let clock = notify::system_clock();
            let notifier = notify::Notifier::open(notify_config, outbox, clock.clone()).await?;
            incidents.attach_outbox(notifier.outbox(), &notify_config.external_url);
            let source = Arc::new(notify::source::RuleAlerts {
                rules: rules.clone(),
                silences: silences.clone(),
                generator_url: notify_config.external_url.clone(),
                clock,
            });
            Some((notifier, source))
        }
        None => None,
    };
    let notifications = notifier.as_ref().map(|(n, _)| n.counters());
    let incidents_task = incident::service::run(
        incidents.clone(),
        rules.clone(),
        silences.clone(),
        cancel.clone(),
    );
    let own = Arc::new(own_metrics::OwnMetrics {
        store: store.clone(),
        telemetry: telemetry.clone(),
        incidents: incidents.clone(),
        notifications,
    });
    let http_state = Arc::new(http::HttpState {
        audit: audit::AuditLog::new(store.clone()),
        incidents,
        own: own.clone(),
        rules,
        silences,
        store,
        telemetry,
        limits: config.query.limits(),
        auth: http::auth::Authenticator::new(config.http.tokens.clone()),
        tls: match &config.http.tls {
            Some(files) => Some(tokio_rustls::TlsAcceptor::from(
                patrol_shared::tls::https_config(&files.cert, &files.key)?,
            )),
            None => None,
        },
        writers: http::remote_write::Writers::default(),
    });
    let mut tasks = JoinSet::new();
    tasks.spawn(ingest::serve(ingest_listener, ingest_ctx, cancel.clone()));
    tasks.spawn(http::serve(http_listener, http_state, cancel.clone()));
    tasks.spawn(rules_task);
    tasks.spawn(incidents_task);
    tasks.spawn(own_metrics::run(own, cancel.clone()));
    if let Some((notifier, source)) = notifier {
        tasks.spawn(notifier.run(source, cancel.clone()));
    }
    tasks.spawn(storage::maintenance::run(
        disk,
        config.storage.retention,
        cancel,
    ));
    Ok(Running {
        ingest_addr,
        http_addr,
        tasks,
    })
}

async fn bind(addr: SocketAddr, what: &'static str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| StartError::Bind { addr, what, error })
}
