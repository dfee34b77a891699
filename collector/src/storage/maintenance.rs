//! The store's background upkeep, once a minute: close chunks of quiet
//! series, truncate the write-ahead log behind closed chunks, and enforce
//! retention. The clock is read here; the work itself
//! ([`super::disk::DiskStore::maintain`]) takes the time as a parameter, so tests move
//! time instead of waiting.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::recovering::Storage;

const EVERY: Duration = Duration::from_secs(60);

/// Runs until `cancel` fires.
pub async fn run(store: Arc<Storage>, retention: Duration, cancel: CancellationToken) {
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
        let store = store.clone();
        let now = patrol_shared::model::now_ms();
        let result = tokio::task::spawn_blocking(move || store.maintain(now, retention_ms)).await;
        match result {
            Ok(Ok(())) => {
                if failing {
                    tracing::info!("storage maintenance recovered");
                }
                failing = false;
            }
            Ok(Err(e)) if !failing => {
                warn!(error = %e, "storage maintenance failed; will retry");
                failing = true;
            }
            Err(e) if !failing => {
                warn!(error = %e, "storage maintenance task failed; will retry");
                failing = true;
            }
            _ => {}
        }
    }
}
