//! The durable outbox: notifications waiting to be delivered, and the log
//! of delivery attempts, behind [`OutboxStore`].
//!
//! A notification is put in the store before the first attempt and removed
//! only once its receiver accepted it (or it was given up), so one that is
//! pending when the collector stops is delivered after it starts again.
//! The store is small on purpose: the collector keeps it in a sled tree of
//! its database (implemented in `storage`), tests in [`MemoryOutbox`].
//! Records are plain serde structs; [`OutboxRecord::encode`] and
//! [`Attempt::encode`] give the bytes a store keeps (a version byte, then
//! bincode), and keys are ids as big-endian bytes, so they sort by age.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::payload::Notification;

/// A notification's id: unique, and increasing with the time it was queued.
pub type OutboxId = u64;

/// One pending notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxRecord {
    pub id: OutboxId,
    /// When it was queued (ms); the delivery deadline counts from here.
    pub queued_at: i64,
    pub notification: Notification,
}

/// What came of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The receiver accepted it; the notification left the outbox.
    Delivered,
    /// It failed; another attempt follows.
    Failed,
    /// It failed and the deadline has passed (or the receiver is no longer
    /// configured); the notification left the outbox undelivered.
    GivenUp,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Delivered, Outcome::Failed, Outcome::GivenUp];

    /// The `outcome` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Failed => "failed",
            Outcome::GivenUp => "given_up",
        }
    }
}

/// One delivery attempt, for the delivery log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub id: OutboxId,
    pub receiver: String,
    pub group_key: String,
    /// When the attempt started (ms).
    pub at: i64,
    /// 1 for the first attempt (since this collector started).
    pub number: u32,
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// Why it failed; `None` when delivered.
    pub error: Option<String>,
    pub outcome: Outcome,
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox store unavailable: {0}")]
    Unavailable(String),
    #[error("cannot encode an outbox {0}")]
    Encode(String),
    #[error("outbox record {key}: cannot decode: {reason}")]
    Corrupt { key: String, reason: String },
}

/// Where pending notifications and the delivery log are kept. Calls may
/// block (disk); the delivery worker makes them off the async runtime.
pub trait OutboxStore: Send + Sync {
    /// Stores (or replaces) a pending notification; durable on return.
    fn put(&self, record: &OutboxRecord) -> Result<(), OutboxError>;
    /// Removes a notification; removing a missing id is not an error.
    fn remove(&self, id: OutboxId) -> Result<(), OutboxError>;
    /// Every pending notification, oldest first.
    fn list(&self) -> Result<Vec<OutboxRecord>, OutboxError>;
    /// Appends to the delivery log (the store may drop its oldest entries).
    fn record_attempt(&self, attempt: &Attempt) -> Result<(), OutboxError>;
    /// The newest `limit` attempts, newest first.
    fn attempts(&self, limit: usize) -> Result<Vec<Attempt>, OutboxError>;
    /// Keeps the dispatcher's notification log (what each group last
    /// told its receiver); durable on return.
    fn put_notification_log(&self, bytes: &[u8]) -> Result<(), OutboxError>;
    /// The notification log kept, if any.
    fn notification_log(&self) -> Result<Option<Vec<u8>>, OutboxError>;
}

/// Version of the encoded records: 2 added `Notification::ticket`.
const FORMAT: u8 = 2;
/// The most bytes one decoded record may take.
const DECODE_LIMIT: usize = 16 << 20;

fn encode<T: Serialize>(what: &str, value: &T) -> Result<Vec<u8>, OutboxError> {
    let mut out = vec![FORMAT];
    let bytes = bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_err(|e| OutboxError::Encode(format!("{what}: {e}")))?;
    out.extend(bytes);
    Ok(out)
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, OutboxError> {
    match bytes.split_first() {
        Some((&FORMAT, rest)) => decode_body(key, rest),
        Some((v, _)) => Err(corrupt(key, format!("unknown format version {v}"))),
        None => Err(corrupt(key, "empty".into())),
    }
}

fn corrupt(key: &str, reason: String) -> OutboxError {
    OutboxError::Corrupt {
        key: key.to_owned(),
        reason,
    }
}

fn decode_body<T: DeserializeOwned>(key: &str, body: &[u8]) -> Result<T, OutboxError> {
    let config = bincode::config::standard().with_limit::<DECODE_LIMIT>();
    bincode::serde::decode_from_slice(body, config)
        .map(|(v, _)| v)
        .map_err(|e| corrupt(key, e.to_string()))
}

/// A notification as format 1 kept it (before ticket events).
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct RecordV1 {
    id: OutboxId,
    queued_at: i64,
    notification: NotificationV1,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct NotificationV1 {
    receiver: String,
    group_key: String,
    group_labels: crate::rules::alert::LabelMap,
    alerts: Vec<super::payload::Alert>,
    created_at: i64,
    refresh_ms: i64,
}

impl OutboxRecord {
    /// The store key: the id, big-endian.
    pub fn key(&self) -> [u8; 8] {
        self.id.to_be_bytes()
    }

    pub fn encode(&self) -> Result<Vec<u8>, OutboxError> {
        encode("notification", self)
    }

    pub fn decode(bytes: &[u8]) -> Result<OutboxRecord, OutboxError> {
        if let Some((1, rest)) = bytes.split_first() {
            let v1: RecordV1 = decode_body("notification", rest)?;
            let n = v1.notification;
            return Ok(OutboxRecord {
                id: v1.id,
                queued_at: v1.queued_at,
                notification: Notification {
                    receiver: n.receiver,
                    group_key: n.group_key,
                    group_labels: n.group_labels,
                    alerts: n.alerts,
                    created_at: n.created_at,
                    refresh_ms: n.refresh_ms,
                    ticket: None,
                },
            });
        }
        decode("notification", bytes)
    }
}

impl Attempt {
    pub fn encode(&self) -> Result<Vec<u8>, OutboxError> {
        encode("attempt", self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Attempt, OutboxError> {
        decode("attempt", bytes)
    }
}

/// An outbox in memory, for tests and for running without a database.
/// Records go through [`OutboxRecord::encode`] so tests cover the codec.
#[derive(Debug)]
pub struct MemoryOutbox {
    inner: Mutex<Memory>,
    max_attempts: usize,
}

#[derive(Debug, Default)]
struct Memory {
    pending: BTreeMap<OutboxId, Vec<u8>>,
    attempts: VecDeque<Attempt>,
    log: Option<Vec<u8>>,
}

impl Default for MemoryOutbox {
    fn default() -> Self {
        MemoryOutbox::new(10_000)
    }
}

impl MemoryOutbox {
    /// Keeps at most `max_attempts` log entries.
    pub fn new(max_attempts: usize) -> MemoryOutbox {
        MemoryOutbox {
            inner: Mutex::new(Memory::default()),
            max_attempts,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl OutboxStore for MemoryOutbox {
    fn put(&self, record: &OutboxRecord) -> Result<(), OutboxError> {
        let bytes = record.encode()?;
        self.lock().pending.insert(record.id, bytes);
        Ok(())
    }

    fn remove(&self, id: OutboxId) -> Result<(), OutboxError> {
        self.lock().pending.remove(&id);
        Ok(())
    }

    fn list(&self) -> Result<Vec<OutboxRecord>, OutboxError> {
        self.lock()
            .pending
            .values()
            .map(|b| OutboxRecord::decode(b))
            .collect()
    }

    fn record_attempt(&self, attempt: &Attempt) -> Result<(), OutboxError> {
        let mut m = self.lock();
        m.attempts.push_back(attempt.clone());
        while m.attempts.len() > self.max_attempts {
            m.attempts.pop_front();
        }
        Ok(())
    }

    fn attempts(&self, limit: usize) -> Result<Vec<Attempt>, OutboxError> {
        Ok(self
            .lock()
            .attempts
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect())
    }

    fn put_notification_log(&self, bytes: &[u8]) -> Result<(), OutboxError> {
        self.lock().log = Some(bytes.to_vec());
        Ok(())
    }

    fn notification_log(&self) -> Result<Option<Vec<u8>>, OutboxError> {
        Ok(self.lock().log.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::payload::tests::sample;

    fn record(id: OutboxId) -> OutboxRecord {
        OutboxRecord {
            id,
            queued_at: 5,
            notification: sample(),
        }
    }

    #[test]
    fn format_1_records_are_still_read() {
        let r = record(7);
        let n = r.notification.clone();
        let v1 = RecordV1 {
            id: r.id,
            queued_at: r.queued_at,
            notification: NotificationV1 {
                receiver: n.receiver,
                group_key: n.group_key,
                group_labels: n.group_labels,
                alerts: n.alerts,
                created_at: n.created_at,
                refresh_ms: n.refresh_ms,
            },
        };
        let mut bytes = vec![1];
        bytes.extend(bincode::serde::encode_to_vec(&v1, bincode::config::standard()).unwrap());
        assert_eq!(OutboxRecord::decode(&bytes).unwrap(), r);
    }

    #[test]
    fn records_round_trip_through_their_encoding() {
        let r = record(7);
        assert_eq!(OutboxRecord::decode(&r.encode().unwrap()).unwrap(), r);
        let a = Attempt {
            id: 7,
            receiver: "ops".into(),
            group_key: "{}:{}".into(),
            at: 9,
            number: 2,
            status: Some(500),
            error: Some("HTTP 500".into()),
            outcome: Outcome::Failed,
        };
        assert_eq!(Attempt::decode(&a.encode().unwrap()).unwrap(), a);
        let mut bad = r.encode().unwrap();
        bad[0] = 99;
        assert!(OutboxRecord::decode(&bad)
            .unwrap_err()
            .to_string()
            .contains("unknown format version 99"));
        assert!(OutboxRecord::decode(&r.encode().unwrap()[..10]).is_err());
    }

    #[test]
    fn the_memory_outbox_lists_oldest_first_and_bounds_its_log() {
        let store = MemoryOutbox::new(2);
        for id in [3, 1, 2] {
            store.put(&record(id)).unwrap();
        }
        store.remove(2).unwrap();
        store.remove(42).unwrap();
        let ids: Vec<OutboxId> = store.list().unwrap().iter().map(|r| r.id).collect();
        assert_eq!(ids, [1, 3]);
        for number in 1..=3 {
            let a = Attempt {
                id: 1,
                receiver: "ops".into(),
                group_key: String::new(),
                at: 0,
                number,
                status: None,
                error: None,
                outcome: Outcome::Delivered,
            };
            store.record_attempt(&a).unwrap();
        }
        let numbers: Vec<u32> = store
            .attempts(10)
            .unwrap()
            .iter()
            .map(|a| a.number)
            .collect();
        assert_eq!(numbers, [3, 2]);
    }
}
