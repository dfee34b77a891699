//! The outbox kept in the collector's store (its `state` tree, durable on
//! every write): pending notifications under `outbox/ID`, the delivery log
//! under `attempts/TIME-ID-N`, the oldest log entries dropped past a bound.

use std::sync::Arc;

use super::outbox::{Attempt, OutboxError, OutboxId, OutboxRecord, OutboxStore};
use crate::storage::Store;

/// Log entries kept.
const MAX_ATTEMPTS: usize = 10_000;

/// See the module comment.
pub struct StoreOutbox {
    store: Arc<dyn Store>,
}

impl StoreOutbox {
    pub fn new(store: Arc<dyn Store>) -> StoreOutbox {
        StoreOutbox { store }
    }
}

fn unavailable(e: crate::storage::StoreError) -> OutboxError {
    OutboxError::Unavailable(e.to_string())
}

/// The newest `limit` delivery attempts kept in `store`, newest first.
pub fn attempts_in(store: &dyn Store, limit: usize) -> Result<Vec<Attempt>, OutboxError> {
    let all = store.state_entries("attempts/").map_err(unavailable)?;
    all.iter()
        .rev()
        .take(limit)
        .map(|(_, bytes)| Attempt::decode(bytes))
        .collect()
}

fn pending_key(id: OutboxId) -> String {
    format!("outbox/{id:020}")
}

impl OutboxStore for StoreOutbox {
    fn put(&self, record: &OutboxRecord) -> Result<(), OutboxError> {
        let bytes = record.encode()?;
        self.store
            .put_state(&pending_key(record.id), Some(&bytes))
            .map_err(unavailable)
    }

    fn remove(&self, id: OutboxId) -> Result<(), OutboxError> {
        self.store
            .put_state(&pending_key(id), None)
            .map_err(unavailable)
    }

    fn list(&self) -> Result<Vec<OutboxRecord>, OutboxError> {
        self.store
            .state_entries("outbox/")
            .map_err(unavailable)?
            .iter()
            .map(|(_, bytes)| OutboxRecord::decode(bytes))
            .collect()
    }

    fn record_attempt(&self, attempt: &Attempt) -> Result<(), OutboxError> {
        let key = format!(
            "attempts/{:020}-{:020}-{:010}",
            attempt.at.max(0),
            attempt.id,
            attempt.number
        );
        self.store
            .put_state(&key, Some(&attempt.encode()?))
            .map_err(unavailable)?;
        let all = self.store.state_entries("attempts/").map_err(unavailable)?;
        for (old, _) in all.iter().take(all.len().saturating_sub(MAX_ATTEMPTS)) {
            self.store.put_state(old, None).map_err(unavailable)?;
        }
        Ok(())
    }

    fn put_notification_log(&self, bytes: &[u8]) -> Result<(), OutboxError> {
        self.store
            .put_state("notify/log", Some(bytes))
            .map_err(unavailable)
    }

    fn notification_log(&self) -> Result<Option<Vec<u8>>, OutboxError> {
        self.store.get_state("notify/log").map_err(unavailable)
    }

    fn attempts(&self, limit: usize) -> Result<Vec<Attempt>, OutboxError> {
        attempts_in(self.store.as_ref(), limit)
    }
}
