//! Batches between the collection loop and the collector: numbered, kept
//! until acknowledged, bounded by bytes (the oldest go first, and are
//! counted). Collection pushes; the link reads from the front and acks.
//!
//! This one lives in memory; the durable spool that survives restarts
//! replaces it behind the same methods.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use patrol_shared::codec::{encode_frame, FrameError};
use patrol_shared::protocol::{AgentMessage, Batch, Entry};
use tokio::sync::Notify;

/// A batch ready to send: its seq and its encoded frame.
#[derive(Debug, Clone)]
pub struct Queued {
    pub seq: u64,
    pub frame: Arc<Vec<u8>>,
}

/// Figures for the agent's own metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    pub batches: usize,
    pub bytes: usize,
    pub dropped_batches: u64,
    pub acked_batches: u64,
}

struct Inner {
    queue: VecDeque<Queued>,
    bytes: usize,
    next_seq: u64,
    stats: SpoolStats,
}

/// See the module comment.
pub struct Spool {
    inner: Mutex<Inner>,
    max_bytes: usize,
    stream_id: u64,
    pushed: Notify,
}

impl Spool {
    pub fn new(max_bytes: usize) -> Spool {
        Spool {
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                bytes: 0,
                next_seq: 1,
                stats: SpoolStats::default(),
            }),
            max_bytes,
            // A fresh stream each start: seqs restart at 1 with it.
            stream_id: fastrand::u64(1..),
            pushed: Notify::new(),
        }
    }

    /// Names this spool's sequence of seqs, for the Hello.
    pub fn stream_id(&self) -> u64 {
        self.stream_id
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Numbers and queues a batch; drops the oldest while over the bound.
    pub fn push(&self, entries: Vec<Entry>) -> Result<u64, FrameError> {
        let mut inner = self.lock();
        let seq = inner.next_seq;
        let frame = encode_frame(&AgentMessage::Batch(Batch { seq, entries }))?;
        inner.next_seq += 1;
        inner.bytes += frame.len();
        inner.queue.push_back(Queued {
            seq,
            frame: Arc::new(frame),
        });
        // Keep the newest batch even if it alone is over the bound.
        while inner.bytes > self.max_bytes && inner.queue.len() > 1 {
            if let Some(old) = inner.queue.pop_front() {
                inner.bytes -= old.frame.len();
                inner.stats.dropped_batches += 1;
            }
        }
        drop(inner);
        self.pushed.notify_one();
        Ok(seq)
    }

    /// The first queued batch with a seq above `after`.
    pub fn next_after(&self, after: u64) -> Option<Queued> {
        let inner = self.lock();
        // Seqs are increasing, so a binary search finds the place.
        let at = inner.queue.partition_point(|q| q.seq <= after);
        inner.queue.get(at).cloned()
    }

    /// Removes every batch up to and including `seq`.
    pub fn ack(&self, seq: u64) {
        let mut inner = self.lock();
        while inner.queue.front().is_some_and(|q| q.seq <= seq) {
            if let Some(done) = inner.queue.pop_front() {
                inner.bytes -= done.frame.len();
                inner.stats.acked_batches += 1;
            }
        }
    }

    /// Seq of the oldest batch still queued, if any.
    pub fn oldest(&self) -> Option<u64> {
        self.lock().queue.front().map(|q| q.seq)
    }

    pub fn stats(&self) -> SpoolStats {
        let inner = self.lock();
        SpoolStats {
            batches: inner.queue.len(),
            bytes: inner.bytes,
            ..inner.stats
        }
    }

    /// Resolves when a batch has been pushed since the last call.
    pub async fn wait_for_push(&self) {
        self.pushed.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use patrol_shared::model::AgentEvent;

    fn event() -> Vec<Entry> {
        vec![Entry::Event(AgentEvent {
            timestamp_ms: 0,
            kind: "test".into(),
            message: "x".repeat(1000),
        })]
    }

    #[test]
    fn batches_leave_only_when_acked() {
        let spool = Spool::new(1 << 20);
        let a = spool.push(event()).unwrap();
        let b = spool.push(event()).unwrap();
        assert_eq!((a, b), (1, 2));
        assert_eq!(spool.next_after(0).unwrap().seq, 1);
        assert_eq!(spool.next_after(1).unwrap().seq, 2);
        assert!(spool.next_after(2).is_none());
        spool.ack(1);
        assert_eq!(spool.oldest(), Some(2));
        assert_eq!(spool.stats().acked_batches, 1);
    }

    #[test]
    fn full_spool_drops_oldest_and_counts() {
        let spool = Spool::new(3000);
        for _ in 0..5 {
            spool.push(event()).unwrap();
        }
        let stats = spool.stats();
        assert!(stats.bytes <= 3000, "{stats:?}");
        assert_eq!(stats.dropped_batches as usize + stats.batches, 5);
        assert_eq!(spool.oldest(), Some(5 - stats.batches as u64 + 1));
    }
}
