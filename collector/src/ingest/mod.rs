//! mTLS ingest: accepts agents, checks who they are, reads their frames and
//! hands stamped batches to the store, acking each once it is stored.
//!
//! One task per connection; a bad peer only ever ends its own connection.
//! Every refusal and bad frame is logged with the peer and counted by reason.

pub mod credentials;
mod handshake;
mod session;
pub mod stamp;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::IngestConfig;
use crate::storage::Store;
use crate::telemetry::Telemetry;

/// What every connection task shares.
pub struct IngestContext {
    pub limits: IngestConfig,
    /// The TLS config of the moment and the revoked serials (reloaded
    /// from their files while the collector runs).
    pub credentials: Arc<credentials::Credentials>,
    pub store: Arc<dyn Store>,
    pub telemetry: Arc<Telemetry>,
}

/// Accepts connections until `cancel` fires. Past `max_connections` a new
/// connection is closed at once and counted as refused.
pub async fn serve(listener: TcpListener, ctx: Arc<IngestContext>, cancel: CancellationToken) {
    let slots = Arc::new(Semaphore::new(ctx.limits.max_connections));
    if let Ok(addr) = listener.local_addr() {
        info!(listen = %addr, "ingest listening");
    }
    let watcher = tokio::spawn(credentials::watch_files(
        ctx.credentials.clone(),
        cancel.clone(),
    ));
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let Some((tcp, peer)) = crate::listener::next(&listener, &cancel, "ingest").await else {
            break;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            ctx.telemetry.refuse("connection_limit");
            warn!(%peer, limit = ctx.limits.max_connections, "connection refused: limit reached");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let ctx = ctx.clone();
        let cancel = cancel.clone();
        connections.spawn(async move {
            session::run(ctx, tcp, peer, cancel).await;
            drop(permit);
        });
    }
    crate::listener::drain(connections, "ingest").await;
    let _ = watcher.await;
    info!("ingest stopped");
}

/// The peer address type connection tasks log.
pub type Peer = SocketAddr;
