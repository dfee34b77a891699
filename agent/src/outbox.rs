//! What the monitors have to tell at once — agent events (a check changing
//! state, a file changed) and inspection records — queued for the spool as
//! soon as it arrives, rather than waiting for the next collection cycle.
//!
//! The queues are bounded: a monitor that outruns the spool waits (FIM) or
//! drops and logs (checks), it never grows memory.

use std::sync::Arc;

use patrol_shared::inspection::Inspection;
use patrol_shared::model::AgentEvent;
use patrol_shared::protocol::Entry;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::spool::Spool;

/// Agent events waiting for the spool.
pub const EVENT_QUEUE: usize = 256;
/// Inspection records waiting for the spool (one a day, usually).
pub const INSPECTION_QUEUE: usize = 2;
/// Events sent in one batch, at most.
const EVENTS_PER_BATCH: usize = 64;

/// Moves events and inspections into the spool until `cancel` fires or
/// every sender is gone.
pub async fn run(
    spool: Arc<Spool>,
    mut events: mpsc::Receiver<AgentEvent>,
    mut inspections: mpsc::Receiver<Inspection>,
    cancel: CancellationToken,
) {
    let mut buf = Vec::with_capacity(EVENTS_PER_BATCH);
    loop {
        let entries = tokio::select! {
            _ = cancel.cancelled() => return,
            n = events.recv_many(&mut buf, EVENTS_PER_BATCH), if !events.is_closed() || !events.is_empty() => {
                if n == 0 {
                    continue;
                }
                buf.drain(..).map(Entry::Event).collect()
            }
            Some(inspection) = inspections.recv() => vec![Entry::Inspection(inspection)],
            else => return,
        };
        if let Err(e) = spool.push(entries).await {
            warn!(error = %e, "cannot queue events");
        }
    }
}
