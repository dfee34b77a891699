//! Accepting TCP connections, shared by the ingest and HTTP listeners.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// The next connection, or `None` once `cancel` fires. Accept errors (out
/// of file descriptors and the like) are logged and followed by a short
/// pause rather than a spin.
pub async fn next(
    listener: &TcpListener,
    cancel: &CancellationToken,
    what: &'static str,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok(pair) => return Some(pair),
                Err(e) => {
                    warn!(listener = what, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// How long a stopping listener waits for its connections to end.
const DRAIN_WAIT: Duration = Duration::from_secs(10);

/// Waits (at most [`DRAIN_WAIT`]) for the connection tasks of a listener
/// that has stopped accepting, so that nothing they hold (the store above
/// all) outlives the server: a restart in the same process can open it
/// again.
pub async fn drain(connections: tokio_util::task::TaskTracker, what: &'static str) {
    connections.close();
    if tokio::time::timeout(DRAIN_WAIT, connections.wait())
        .await
        .is_err()
    {
        warn!(
            listener = what,
            open = connections.len(),
            "connections still open at shutdown"
        );
    }
}
