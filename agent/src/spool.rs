//! Batches between the collection loop and the collector, on disk: each is
//! numbered, written to the spool and flushed before the link may send it,
//! and removed once the collector acknowledges it. Collection pushes; the
//! link reads from the front and acks.
//!
//! The spool is a sled database in `state_dir/spool` (sled stays inside
//! this file). It outlives the agent: at start the batches still waiting are
//! found again and sent first, in order, with the new ones behind them, and
//! numbering continues above anything kept. The stream id that names this
//! numbering to the collector is kept with it, so after a restart the
//! collector still knows which seqs it has applied and drops replays.
//!
//! It is bounded by the bytes of the batches it holds: past the bound the
//! oldest go, and are counted. A record that fails its checksum is logged
//! with its key and skipped. Only a small index (seq and size of each batch)
//! is held in memory; frames are read back from sled when they are sent.
//!
//! sled's calls block (a push waits for its flush): the async methods run
//! them on tokio's blocking pool.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use patrol_shared::codec::{encode_frame, FrameError};
use patrol_shared::protocol::{AgentMessage, Batch, Entry};
use tokio::sync::Notify;
use tracing::{error, info, warn};

/// The spool's folder inside the agent's state folder.
pub const SPOOL_DIR: &str = "spool";
/// sled's page cache: the agent stays small; batches are read once each.
const CACHE_BYTES: u64 = 4 << 20;
/// How long opening waits for a previous run in this process (a config
/// reload) to let go of the database's lock.
const LOCK_WAIT: Duration = Duration::from_secs(10);
const META_STREAM_ID: &[u8] = b"stream_id";
const META_NEXT_SEQ: &[u8] = b"next_seq";

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
    pub corrupt_batches: u64,
}

/// Why the spool could not open or take a batch.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("cannot open the spool at {path}: {error}")]
    Open { path: String, error: String },
    #[error("spool at {path}: cannot write batch {seq}: {error}")]
    Write {
        path: String,
        seq: u64,
        error: String,
    },
    #[error(transparent)]
    Encode(#[from] FrameError),
    #[error("spool task failed: {0}")]
    Task(String),
}

/// One batch held: its seq and frame size.
#[derive(Debug, Clone, Copy)]
struct Held {
    seq: u64,
    len: usize,
}

struct State {
    index: VecDeque<Held>,
    bytes: usize,
    next_seq: u64,
    /// Set at the first drop, cleared when an ack makes room: one log line
    /// per spell of being full.
    full: bool,
}

/// Counters read on the async threads without waiting for a flush.
#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    bytes: AtomicU64,
    dropped: AtomicU64,
    acked: AtomicU64,
    corrupt: AtomicU64,
}

/// The sled side; every method blocks.
struct Disk {
    /// For log lines and errors: the folder, or "memory".
    place: String,
    db: sled::Db,
    batches: sled::Tree,
    meta: sled::Tree,
    state: Mutex<State>,
    counters: Counters,
    max_bytes: usize,
}

/// See the module comment.
pub struct Spool {
    disk: Arc<Disk>,
    stream_id: u64,
    pushed: Notify,
}

impl Spool {
    /// Opens (or creates) the spool in `state_dir/spool`; with no folder, a
    /// temporary one that goes with the process. Blocks: batches kept from
    /// a previous run are read and checked.
    pub fn open(state_dir: Option<&Path>, max_bytes: usize) -> Result<Spool, SpoolError> {
        let path = state_dir.map(|d| d.join(SPOOL_DIR));
        let place = path
            .as_ref()
            .map_or_else(|| "memory".to_owned(), |p| p.display().to_string());
        let db = open_db(path.as_deref(), &place)?;
        let open_err = |e: sled::Error| SpoolError::Open {
            path: place.clone(),
            error: e.to_string(),
        };
        let batches = db.open_tree("batches").map_err(open_err)?;
        let meta = db.open_tree("meta").map_err(open_err)?;
        let stream_id = match read_u64(&meta, META_STREAM_ID, &place) {
            Some(id) if id != 0 => id,
            _ => {
                let id = fastrand::u64(1..);
                meta.insert(META_STREAM_ID, &id.to_be_bytes())
                    .map_err(open_err)?;
                id
            }
        };
        let stored_next = read_u64(&meta, META_NEXT_SEQ, &place).unwrap_or(1);
        let disk = Disk {
            place: place.clone(),
            db,
            batches,
            meta,
            state: Mutex::new(State {
                index: VecDeque::new(),
                bytes: 0,
                next_seq: stored_next.max(1),
                full: false,
            }),
            counters: Counters::default(),
            max_bytes,
        };
        disk.load();
        disk.db.flush().map_err(open_err)?;
        let stats = disk.stats();
        if stats.batches > 0 {
            info!(spool = %place, batches = stats.batches, bytes = stats.bytes,
                  "batches kept from before; they are sent first");
        }
        Ok(Spool {
            disk: Arc::new(disk),
            stream_id,
            pushed: Notify::new(),
        })
    }

    /// Names this spool's sequence of seqs, for the Hello; kept across
    /// restarts with the batches.
    pub fn stream_id(&self) -> u64 {
        self.stream_id
    }

    /// Numbers a batch and writes it to disk; returns once it is durable.
    /// Drops the oldest while over the bound.
    pub async fn push(&self, entries: Vec<Entry>) -> Result<u64, SpoolError> {
        let disk = self.disk.clone();
        let seq = tokio::task::spawn_blocking(move || disk.push(entries))
            .await
            .map_err(|e| SpoolError::Task(e.to_string()))??;
        self.pushed.notify_one();
        Ok(seq)
    }

    /// The first batch held with a seq above `after`; corrupt records on
    /// the way are logged and skipped.
    pub async fn next_after(&self, after: u64) -> Option<Queued> {
        let disk = self.disk.clone();
        tokio::task::spawn_blocking(move || disk.next_after(after))
            .await
            .ok()
            .flatten()
    }

    /// Removes every batch up to and including `seq`.
    pub async fn ack(&self, seq: u64) {
        let disk = self.disk.clone();
        let _ = tokio::task::spawn_blocking(move || disk.ack(seq)).await;
    }

    /// Seq of the oldest batch still held, if any.
    pub fn oldest(&self) -> Option<u64> {
        self.disk.lock().index.front().map(|h| h.seq)
    }

    pub fn stats(&self) -> SpoolStats {
        self.disk.stats()
    }

    /// Resolves when a batch has been pushed since the last call.
    pub async fn wait_for_push(&self) {
        self.pushed.notified().await
    }

    /// Flushes and lets go of the database, so that it can be opened again
    /// (a config reload in the same process). Dropping closes it too, once
    /// nothing else holds the spool.
    pub async fn close(self) {
        let disk = self.disk;
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = disk.db.flush() {
                warn!(spool = %disk.place, error = %e, "cannot flush the spool at exit");
            }
            drop(disk);
        })
        .await;
    }
}

/// Opens sled at `path` (temporary without one). A database sled calls
/// corrupt is moved aside, logged, and a new one started: the agent keeps
/// monitoring rather than refusing to start.
fn open_db(path: Option<&Path>, place: &str) -> Result<sled::Db, SpoolError> {
    let config = sled::Config::new()
        .cache_capacity(CACHE_BYTES)
        .mode(sled::Mode::LowSpace)
        .flush_every_ms(Some(1000));
    let Some(path) = path else {
        return config
            .temporary(true)
            .open()
            .map_err(|e| open_error(place, e));
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| SpoolError::Open {
            path: place.to_owned(),
            error: format!("cannot create {}: {e}", parent.display()),
        })?;
    }
    let config = config.path(path);
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            // A previous run in this process may still be letting go.
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(sled::Error::Corruption { .. }) => {
                let aside = set_aside(path);
                error!(spool = %place, moved_to = %aside.display(),
                       "spool database is corrupt; moved aside, starting an empty spool (its batches are lost)");
                std::fs::rename(path, &aside).map_err(|e| SpoolError::Open {
                    path: place.to_owned(),
                    error: format!("corrupt, and cannot move it to {}: {e}", aside.display()),
                })?;
                return config.open().map_err(|e| open_error(place, e));
            }
            Err(e) => return Err(open_error(place, e)),
        }
    }
}

fn open_error(place: &str, e: sled::Error) -> SpoolError {
    SpoolError::Open {
        path: place.to_owned(),
        error: e.to_string(),
    }
}

fn set_aside(path: &Path) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".corrupt-{secs}"));
    PathBuf::from(name)
}

fn read_u64(tree: &sled::Tree, key: &[u8], place: &str) -> Option<u64> {
    match tree.get(key) {
        Ok(Some(v)) => match <[u8; 8]>::try_from(v.as_ref()) {
            Ok(b) => Some(u64::from_be_bytes(b)),
            Err(_) => {
                warn!(spool = %place, key = %String::from_utf8_lossy(key), len = v.len(),
                      "spool metadata record is not 8 bytes; ignored");
                None
            }
        },
        Ok(None) => None,
        Err(e) => {
            warn!(spool = %place, key = %String::from_utf8_lossy(key), error = %e,
                  "cannot read spool metadata; ignored");
            None
        }
    }
}

/// A stored record: CRC-32 of key and frame (little-endian), then the frame.
fn seal(key: &[u8; 8], frame: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(4 + frame.len());
    record.extend_from_slice(&checksum(key, frame).to_le_bytes());
    record.extend_from_slice(frame);
    record
}

fn checksum(key: &[u8], frame: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(key);
    h.update(frame);
    h.finalize()
}

/// The seq and frame of a stored record, or what is wrong with it.
fn unseal<'a>(key: &[u8], record: &'a [u8]) -> Result<(u64, &'a [u8]), String> {
    let seq = <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| format!("key of {} bytes, expected 8", key.len()))?;
    if record.len() < 8 {
        return Err(format!("record of {} bytes is too short", record.len()));
    }
    let (sum, frame) = record.split_at(4);
    let sum = u32::from_le_bytes([sum[0], sum[1], sum[2], sum[3]]);
    if sum != checksum(key, frame) {
        return Err("checksum mismatch".into());
    }
    let len = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    if len != frame.len() - 4 {
        return Err(format!(
            "frame says {len} bytes of payload, record holds {}",
            frame.len() - 4
        ));
    }
    Ok((seq, frame))
}

fn hex(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

impl Disk {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the index of what a previous run left, skipping (and removing)
    /// corrupt records, then applies the bound.
    fn load(&self) {
        let mut state = self.lock();
        let mut bad = Vec::new();
        for item in self.batches.iter() {
            match item {
                Ok((key, record)) => match unseal(&key, &record) {
                    Ok((seq, frame)) => {
                        state.index.push_back(Held {
                            seq,
                            len: frame.len(),
                        });
                        state.bytes += frame.len();
                        state.next_seq = state.next_seq.max(seq.saturating_add(1));
                    }
                    Err(why) => {
                        error!(spool = %self.place, key = %hex(&key), reason = %why,
                               "corrupt spool record skipped");
                        bad.push(key);
                    }
                },
                Err(e) => {
                    error!(spool = %self.place, error = %e,
                           "cannot read the spool past this point; the rest is skipped");
                    break;
                }
            }
        }
        self.counters
            .corrupt
            .fetch_add(bad.len() as u64, Ordering::Relaxed);
        for key in bad {
            let _ = self.batches.remove(key);
        }
        self.drop_oldest(&mut state, 0);
        self.publish(&state);
    }

    fn push(&self, entries: Vec<Entry>) -> Result<u64, SpoolError> {
        let mut state = self.lock();
        let seq = state.next_seq;
        let frame = encode_frame(&AgentMessage::Batch(Batch { seq, entries }))?;
        let key = seq.to_be_bytes();
        // Never reuse a seq, even one whose write failed half-way.
        state.next_seq = seq + 1;
        let write = |e: sled::Error| SpoolError::Write {
            path: self.place.clone(),
            seq,
            error: e.to_string(),
        };
        self.meta
            .insert(META_NEXT_SEQ, &(seq + 1).to_be_bytes())
            .map_err(write)?;
        self.batches
            .insert(key, seal(&key, &frame))
            .map_err(write)?;
        // Keep the newest batch even if it alone is over the bound.
        self.drop_oldest(&mut state, frame.len());
        self.db.flush().map_err(write)?;
        state.index.push_back(Held {
            seq,
            len: frame.len(),
        });
        state.bytes += frame.len();
        self.publish(&state);
        Ok(seq)
    }

    /// Drops the oldest batches until `incoming` more bytes fit.
    fn drop_oldest(&self, state: &mut State, incoming: usize) {
        let mut dropped = 0u64;
        while state.bytes + incoming > self.max_bytes {
            let Some(old) = state.index.pop_front() else {
                break;
            };
            if let Err(e) = self.batches.remove(old.seq.to_be_bytes()) {
                warn!(spool = %self.place, seq = old.seq, error = %e, "cannot remove dropped batch");
            }
            state.bytes -= old.len;
            dropped += 1;
        }
        if dropped > 0 {
            self.counters.dropped.fetch_add(dropped, Ordering::Relaxed);
            if !state.full {
                state.full = true;
                warn!(spool = %self.place, max_bytes = self.max_bytes,
                      "spool full; dropping the oldest batches (counted in patrol_agent_spool_dropped_batches_total)");
            }
        }
    }

    fn next_after(&self, after: u64) -> Option<Queued> {
        loop {
            let held = {
                let state = self.lock();
                let at = state.index.partition_point(|h| h.seq <= after);
                *state.index.get(at)?
            };
            let key = held.seq.to_be_bytes();
            let why = match self.batches.get(key) {
                Ok(Some(record)) => match unseal(&key, &record) {
                    Ok((_, frame)) => {
                        return Some(Queued {
                            seq: held.seq,
                            frame: Arc::new(frame.to_vec()),
                        })
                    }
                    Err(why) => why,
                },
                // Acked or dropped since the index was read: look again.
                Ok(None) if !self.holds(held.seq) => continue,
                Ok(None) => "record missing".to_owned(),
                Err(e) => {
                    warn!(spool = %self.place, seq = held.seq, error = %e, "cannot read batch from the spool");
                    return None;
                }
            };
            error!(spool = %self.place, key = %hex(&key), reason = %why, "corrupt spool record skipped");
            let _ = self.batches.remove(key);
            let mut state = self.lock();
            if let Some(at) = state.index.iter().position(|h| h.seq == held.seq) {
                if let Some(h) = state.index.remove(at) {
                    state.bytes -= h.len;
                    self.counters.corrupt.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.publish(&state);
        }
    }

    fn holds(&self, seq: u64) -> bool {
        self.lock()
            .index
            .binary_search_by_key(&seq, |h| h.seq)
            .is_ok()
    }

    /// No flush: an ack that is lost in a crash only means the collector
    /// sees the batch again, and drops it.
    fn ack(&self, seq: u64) {
        let mut state = self.lock();
        let mut acked = 0;
        while state.index.front().is_some_and(|h| h.seq <= seq) {
            if let Some(done) = state.index.pop_front() {
                if let Err(e) = self.batches.remove(done.seq.to_be_bytes()) {
                    warn!(spool = %self.place, seq = done.seq, error = %e, "cannot remove acked batch");
                }
                state.bytes -= done.len;
                acked += 1;
            }
        }
        if acked > 0 {
            state.full = false;
        }
        // The collector has applied seqs this spool has not numbered yet:
        // its numbering was lost (the spool's metadata went). Continue above
        // it, or every new batch would be dropped as a replay.
        if seq >= state.next_seq {
            warn!(spool = %self.place, collector_seq = seq, next_seq = state.next_seq,
                  "collector has applied seqs above this spool's; numbering continues above them");
            state.next_seq = seq.saturating_add(1);
            let _ = self
                .meta
                .insert(META_NEXT_SEQ, &state.next_seq.to_be_bytes());
        }
        self.counters.acked.fetch_add(acked, Ordering::Relaxed);
        self.publish(&state);
    }

    fn publish(&self, state: &State) {
        let c = &self.counters;
        c.batches.store(state.index.len() as u64, Ordering::Relaxed);
        c.bytes.store(state.bytes as u64, Ordering::Relaxed);
    }

    fn stats(&self) -> SpoolStats {
        let c = &self.counters;
        SpoolStats {
            batches: c.batches.load(Ordering::Relaxed) as usize,
            bytes: c.bytes.load(Ordering::Relaxed) as usize,
            dropped_batches: c.dropped.load(Ordering::Relaxed),
            acked_batches: c.acked.load(Ordering::Relaxed),
            corrupt_batches: c.corrupt.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use patrol_shared::model::AgentEvent;

    fn event(n: u64) -> Vec<Entry> {
        vec![Entry::Event(AgentEvent {
            timestamp_ms: n as i64,
            kind: "test".into(),
            message: "x".repeat(1000),
        })]
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// The event number a queued frame carries.
    fn number(q: &Queued) -> i64 {
        let msg: AgentMessage = patrol_shared::codec::decode_payload(&q.frame[4..]).unwrap();
        match msg {
            AgentMessage::Batch(Batch { seq, entries }) => {
                assert_eq!(seq, q.seq);
                match &entries[0] {
                    Entry::Event(e) => e.timestamp_ms,
                    other => panic!("{other:?}"),
                }
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn batches_come_out_in_order_and_leave_only_when_acked() {
        runtime().block_on(async {
            let spool = Spool::open(None, 1 << 20).unwrap();
            for n in 1..=3 {
                assert_eq!(spool.push(event(n)).await.unwrap(), n);
            }
            let first = spool.next_after(0).await.unwrap();
            assert_eq!((first.seq, number(&first)), (1, 1));
            assert_eq!(spool.next_after(1).await.unwrap().seq, 2);
            assert!(spool.next_after(3).await.is_none());
            spool.ack(2).await;
            assert_eq!(spool.oldest(), Some(3));
            assert_eq!(spool.next_after(0).await.unwrap().seq, 3);
            let stats = spool.stats();
            assert_eq!((stats.acked_batches, stats.batches), (2, 1));
        });
    }

    #[test]
    fn a_restart_keeps_unacked_batches_the_stream_and_the_numbering() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime();
        let stream = rt.block_on(async {
            let spool = Spool::open(Some(dir.path()), 1 << 20).unwrap();
            for n in 1..=4 {
                spool.push(event(n)).await.unwrap();
            }
            spool.ack(2).await;
            let id = spool.stream_id();
            spool.close().await;
            id
        });
        rt.block_on(async {
            let spool = Spool::open(Some(dir.path()), 1 << 20).unwrap();
            assert_eq!(spool.stream_id(), stream);
            let q = spool.next_after(0).await.unwrap();
            assert_eq!((q.seq, number(&q)), (3, 3));
            assert_eq!(spool.push(event(5)).await.unwrap(), 5);
            spool.ack(5).await;
            spool.close().await;
        });
        // Everything acked: numbering still continues above it.
        rt.block_on(async {
            let spool = Spool::open(Some(dir.path()), 1 << 20).unwrap();
            assert_eq!(spool.stats().batches, 0);
            assert_eq!(spool.push(event(6)).await.unwrap(), 6);
        });
    }

    #[test]
    fn full_spool_drops_oldest_and_counts() {
        runtime().block_on(async {
            let spool = Spool::open(None, 3000).unwrap();
            for n in 1..=5 {
                spool.push(event(n)).await.unwrap();
            }
            let stats = spool.stats();
            assert!(stats.bytes <= 3000, "{stats:?}");
            assert_eq!(stats.dropped_batches as usize + stats.batches, 5);
            assert_eq!(spool.oldest(), Some(5 - stats.batches as u64 + 1));
            let q = spool.next_after(0).await.unwrap();
            assert_eq!(number(&q), q.seq as i64, "the newest are kept");
        });
    }

    #[test]
    fn a_smaller_bound_at_restart_drops_the_oldest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime();
        rt.block_on(async {
            let spool = Spool::open(Some(dir.path()), 1 << 20).unwrap();
            for n in 1..=6 {
                spool.push(event(n)).await.unwrap();
            }
            spool.close().await;
            let spool = Spool::open(Some(dir.path()), 3000).unwrap();
            let stats = spool.stats();
            assert!(stats.dropped_batches >= 3, "{stats:?}");
            assert_eq!(spool.oldest(), Some(7 - stats.batches as u64));
        });
    }

    #[test]
    fn corrupt_records_are_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime();
        rt.block_on(async {
            let spool = Spool::open(Some(dir.path()), 1 << 20).unwrap();
            for n in 1..=4 {
                spool.push(event(n)).await.unwrap();
            }
            // Damaged while running: seen when it is read for sending.
            let mut record = spool
                .disk
                .batches
                .get(2u64.to_be_bytes())
                .unwrap()
                .unwrap()
                .to_vec();
            record[10] ^= 0xff;
            spool
                .disk
                .batches
                .insert(2u64.to_be_bytes(), record)
                .unwrap();
            assert_eq!(spool.next_after(1).await.unwrap().seq, 3);
            assert_eq!(spool.stats().corrupt_batches, 1);
            // Damaged at rest: a short record and a key of the wrong size.
            spool
                .disk
                .batches
                .insert(3u64.to_be_bytes(), &b"junk"[..])
                .unwrap();
            spool.disk.batches.insert(b"odd", &b"junk"[..]).unwrap();
            spool.close().await;
            let spool = Spool::open(Some(dir.path()), 1 << 20).unwrap();
            let stats = spool.stats();
            assert_eq!((stats.corrupt_batches, stats.batches), (2, 2), "{stats:?}");
            assert_eq!(spool.next_after(0).await.unwrap().seq, 1);
            assert_eq!(spool.next_after(1).await.unwrap().seq, 4);
            assert_eq!(spool.push(event(5)).await.unwrap(), 5);
        });
    }

    #[test]
    fn unseal_rejects_what_seal_did_not_write() {
        let key = 7u64.to_be_bytes();
        let frame = encode_frame(&AgentMessage::Heartbeat).unwrap();
        let record = seal(&key, &frame);
        assert_eq!(unseal(&key, &record).unwrap(), (7, &frame[..]));
        assert!(unseal(&8u64.to_be_bytes(), &record).is_err(), "other key");
        assert!(unseal(&key, &record[..record.len() - 1]).is_err());
        assert!(unseal(&key[..4], &record).is_err());
        assert!(unseal(&key, &[]).is_err());
    }
}
