//! The durable store: series index, head, write-ahead log and closed
//! chunks (DESIGN.md, "Storage").
//!
//! Layout: `index/` is a sled database with the trees `meta` (metric name
//! → type and help) and `streams` (host → stream id and highest applied
//! seq, as of the last WAL truncation), the records agents send,
//! `inspections` and `fim_events` ([`super::records`]), and `series` (id →
//! labels), where stores before the series log kept their series;
//! `series/` is the series log, every series' id and labels, appended in
//! the background and never truncated, framed as the WAL is;
//! `wal/` holds the write-ahead log ([`super::wal`]) and `chunks/` the
//! closed Gorilla chunks ([`super::segments`]), both append-only files
//! deleted whole.
//! A batch goes into the WAL, with its host, stream and seq, before it is
//! applied to the head; `append` returns once a (grouped) fdatasync has made
//! it durable, and only then does ingest ack. At start the series are
//! loaded, each series' newest persisted sample seeds the head, and the WAL
//! is replayed, which also brings each stream's seq up to date. WAL files
//! are deleted once every sample in them is in a closed, synced chunk, and
//! the streams are written to sled just before.
//!
//! The WAL began in a sled tree; sled's write path and the space it kept
//! cost more than the rest of ingest together, so it moved to its own
//! files (docs/benchmarks.md). Series followed for the same reason: a sled
//! insert per new series was most of a fleet's first batches, and writing
//! millions of them at once took gigabytes of memory.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use patrol_shared::model::MetricKind;

use super::chunk::ChunkReader;
use super::commit::Committer;
use super::head::{ClosedChunk, Head, Rejection};
use super::index::{Labels, Matcher, SeriesId, SeriesIndex};
use super::records::{
    BatchRecords, FimEvent, InspectionRecord, InspectionSummary, RecordQuery, Records,
};
use super::segments::ChunkFiles;
use super::wal::Wal;
use super::{Appended, LatestFamily, LatestSample, StampedBatch, Store, StoreError, StoreStats};

/// A batch as the write-ahead log keeps it: series by id, with the labels
/// of series first seen in this batch, and metadata changes.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct WalRecord {
    host: String,
    stream_id: u64,
    seq: u64,
    new_series: Vec<(SeriesId, Labels)>,
    meta: Vec<(String, MetricKind, String)>,
    /// Per sample set: its time, and (series id, value) pairs.
    sets: Vec<(i64, Vec<(SeriesId, f64)>)>,
}

impl WalRecord {
    /// The newest sample time in the record: the record can go once every
    /// open chunk starts after it.
    fn newest(&self) -> i64 {
        self.sets.iter().map(|(t, _)| *t).max().unwrap_or(i64::MIN)
    }
}

/// A sled key holding a big-endian u64.
fn key_u64(key: &[u8], what: &str) -> Result<u64, StoreError> {
    key.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Unavailable(format!("corrupt {what} key")))
}

/// One series and its samples in a time range.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSamples {
    pub labels: Labels,
    pub samples: Vec<(i64, f64)>,
}

struct Trees {
    series: sled::Tree,
    meta: sled::Tree,
    streams: sled::Tree,
    /// Small state other parts of the collector keep (alert state,
    /// silences), by key.
    state: sled::Tree,
}

#[derive(Default)]
struct Counters {
    samples: AtomicU64,
    out_of_order: AtomicU64,
    duplicate: AtomicU64,
    chunks_written: AtomicU64,
}

/// What the store knows in memory, apart from the log.
struct State {
    index: SeriesIndex,
    head: Head,
    meta: BTreeMap<String, (MetricKind, String)>,
    streams: HashMap<String, (u64, u64)>,
    chunks: ChunkFiles,
    /// Per host, the (hash, id) of each series of its last batch, in
    /// order: agents send the same series in the same order every time,
    /// so a series is usually resolved by its hash alone, without
    /// touching the index (see [`resolve`]).
    recent: HashMap<String, Vec<(u64, SeriesId)>>,
    /// Series registered but not yet in the series log: the
    /// WAL records that brought them name them until
    /// [`DiskStore::maintain`] writes them, before it truncates the WAL.
    unsaved: Vec<SeriesId>,
}

struct Inner {
    state: State,
    wal: Wal,
    /// Reused to encode WAL records.
    buf: Vec<u8>,
}

/// See the module comment.
pub struct DiskStore {
    db: sled::Db,
    trees: Trees,
    records: Records,
    inner: Mutex<Inner>,
    /// The series log: records of (id, labels) of new series. Locked
    /// after `inner` when both are held.
    series_log: Mutex<Wal>,
    committer: Committer,
    counters: Counters,
}

fn io_err(what: &'static str) -> impl Fn(std::io::Error) -> StoreError {
    move |e| StoreError::Unavailable(format!("{what}: {e}"))
}

fn sled_err(e: sled::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    bincode::serde::encode_to_vec(v, bincode::config::standard())
        .map_err(|e| StoreError::Unavailable(format!("encode: {e}")))
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|e| StoreError::Unavailable(format!("corrupt {what} record: {e}")))
}

impl DiskStore {
    /// Opens (or creates) the store in `path` and replays its WAL.
    pub fn open(path: &Path) -> Result<DiskStore, StoreError> {
        let cannot = |what: &Path, e: &dyn std::fmt::Display| {
            StoreError::Unavailable(format!("cannot open {}: {e}", what.display()))
        };
        // sled first: its lock keeps a second store off the same folder.
        let db = sled::Config::new()
            .path(path.join("index"))
            .cache_capacity(16 << 20)
            .open()
            .map_err(|e| cannot(path, &e))?;
        let open = |name: &str| db.open_tree(name).map_err(sled_err);
        let trees = Trees {
            series: open("series")?,
            meta: open("meta")?,
            streams: open("streams")?,
            state: open("state")?,
        };
        let records = Records::open(&db)?;
        let chunks_dir = path.join("chunks");
        let chunks = ChunkFiles::open(&chunks_dir).map_err(|e| cannot(&chunks_dir, &e))?;
        let mut state = State {
            index: SeriesIndex::new(),
            head: Head::default(),
            meta: BTreeMap::new(),
            streams: HashMap::new(),
            chunks,
            recent: HashMap::new(),
            unsaved: Vec::new(),
        };
        let counters = Counters::default();
        load(&trees, &mut state)?;
        let series_dir = path.join("series");
        let series_log = Wal::open(&series_dir, |bytes| {
            let saved: Vec<(SeriesId, Labels)> =
                decode(bytes, "series log").map_err(|e| e.to_string())?;
            for (id, labels) in saved {
                state.index.insert(labels, Some(id));
            }
            Ok(i64::MIN)
        })
        .map_err(|e| cannot(&series_dir, &e))?;
        let mut closed = Vec::new();
        let mut replayed_error = None;
        let wal_dir = path.join("wal");
        let wal = Wal::open(&wal_dir, |bytes| {
            let record: WalRecord = decode(bytes, "WAL").map_err(|e| e.to_string())?;
            let newest = record.newest();
            let result = apply(&trees, &mut state, &record, None).map(|(_, cut)| cut);
            match result {
                Ok(cut) => closed.extend(cut),
                Err(e) => replayed_error = Some(e),
            }
            state
                .streams
                .insert(record.host, (record.stream_id, record.seq));
            Ok(newest)
        })
        .map_err(|e| cannot(&wal_dir, &e))?;
        if let Some(e) = replayed_error {
            return Err(e);
        }
        write_chunks(&mut state, &counters, &closed)?;
        tracing::info!(
            series = state.index.len(),
            wal_records = wal.records(),
            "storage loaded"
        );
        let syncing = wal.sync_handle();
        let committer =
            Committer::start(move || syncing.sync().map_err(|e| format!("WAL sync failed: {e}")))
                .map_err(|e| StoreError::Unavailable(format!("cannot start flush thread: {e}")))?;
        Ok(DiskStore {
            db,
            trees,
            records,
            inner: Mutex::new(Inner {
                state,
                wal,
                buf: Vec::new(),
            }),
            series_log: Mutex::new(series_log),
            committer,
            counters,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn series_log(&self) -> std::sync::MutexGuard<'_, Wal> {
        self.series_log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Background upkeep at time `now_ms`: close chunks of series quiet for
    /// two hours, delete WAL files wholly in closed chunks, and delete
    /// chunks and records older than `retention_ms`.
    pub fn maintain(&self, now_ms: i64, retention_ms: i64) -> Result<(), StoreError> {
        self.save_series()?;
        let mut inner = self.lock();
        let Inner { state, wal, .. } = &mut *inner;
        let idle = state
            .head
            .close_idle(now_ms.saturating_sub(super::head::MAX_CHUNK_SPAN_MS));
        write_chunks(state, &self.counters, &idle)?;
        let keep_from = state.head.min_open_time().unwrap_or(i64::MAX);
        if wal.removable(keep_from) > 0 {
            // What the files hold must be durable elsewhere first: the
            // chunks, the series and metadata, and each stream's seq.
            state.chunks.sync().map_err(io_err("chunk files"))?;
            wal.sync().map_err(io_err("WAL"))?;
            // Series registered since `save_series` let go of the lock.
            let unsaved = std::mem::take(&mut state.unsaved);
            let mut log = self.series_log();
            append_series(&mut log, &state.index, &unsaved, &mut Vec::new())
                .and_then(|()| log.sync().map_err(io_err("series log")))
                .inspect_err(|_| state.unsaved.extend_from_slice(&unsaved))?;
            drop(log);
            for (host, stream) in &state.streams {
                self.trees
                    .streams
                    .insert(host.as_bytes(), encode(stream)?)
                    .map_err(sled_err)?;
            }
            self.db.flush().map_err(sled_err)?;
            wal.truncate_before(keep_from).map_err(io_err("WAL"))?;
        }
        state
            .chunks
            .delete_before(now_ms.saturating_sub(retention_ms))
            .map_err(io_err("chunk files"))?;
        drop(inner);
        let deleted = self
            .records
            .delete_before(now_ms.saturating_sub(retention_ms))?;
        if deleted > 0 {
            tracing::debug!(deleted, "old inspection and file-integrity records deleted");
        }
        Ok(())
    }

    /// Appends the series registered since the last call to the series
    /// log, a slice at a time, taking the store's lock only to read each
    /// slice's labels: after a fleet's first batches that is millions of
    /// series, and ingest goes on meanwhile. Not synced here; `maintain`
    /// syncs the log before it truncates the WAL.
    fn save_series(&self) -> Result<(), StoreError> {
        const SLICE: usize = 8192;
        let unsaved = std::mem::take(&mut self.lock().state.unsaved);
        let mut buf = Vec::new();
        for (n, ids) in unsaved.chunks(SLICE).enumerate() {
            buf.clear();
            let encoded = {
                let inner = self.lock();
                encode_series(&inner.state.index, ids, &mut buf)
            };
            let written = encoded.and_then(|()| {
                self.series_log()
                    .append(&buf, i64::MIN)
                    .map_err(io_err("series log"))
            });
            if let Err(e) = written {
                // Kept for the next call: their WAL records stay until then.
                self.lock()
                    .state
                    .unsaved
                    .extend_from_slice(&unsaved[n * SLICE..]);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Bytes the store takes on disk: index database, WAL and chunks.
    pub fn size_on_disk(&self) -> u64 {
        self.index_bytes() + self.wal_bytes() + self.chunk_bytes()
    }

    /// Bytes of the series log and the sled database (metadata, streams).
    pub fn index_bytes(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0) + self.series_log().bytes()
    }

    /// Bytes of the write-ahead log.
    pub fn wal_bytes(&self) -> u64 {
        self.lock().wal.bytes()
    }

    /// Bytes of the chunk segment files.
    pub fn chunk_bytes(&self) -> u64 {
        self.lock().state.chunks.bytes()
    }
}

/// Loads index, metadata and streams from sled, and seeds the head with
/// each series' newest persisted sample.
fn load(trees: &Trees, state: &mut State) -> Result<(), StoreError> {
    for item in trees.series.iter() {
        let (k, v) = item.map_err(sled_err)?;
        let id = key_u64(&k, "series")?;
        state.index.insert(decode(&v, "series")?, Some(id));
    }
    for item in trees.meta.iter() {
        let (k, v) = item.map_err(sled_err)?;
        let name = String::from_utf8_lossy(&k).into_owned();
        state.meta.insert(name, decode(&v, "meta")?);
    }
    for item in trees.streams.iter() {
        let (k, v) = item.map_err(sled_err)?;
        let host = String::from_utf8_lossy(&k).into_owned();
        state.streams.insert(host, decode(&v, "stream")?);
    }
    let newest: Vec<(SeriesId, Vec<u8>)> = state
        .chunks
        .newest()
        .map(|(id, bytes)| bytes.map(|b| (id, b)))
        .collect::<Result<_, _>>()
        .map_err(io_err("chunk files"))?;
    for (id, bytes) in newest {
        if let Some(Ok((t, v))) = ChunkReader::new(&bytes).ok().and_then(|r| r.last()) {
            state.head.seed(id, t, v);
        }
    }
    Ok(())
}

/// Gives every series of a batch its id (registering new ones) and
/// records metadata changes: the batch as the WAL keeps it, with each
/// series' labels written once, when it is new.
///
/// A series whose hash equals that of the series at the same place in the
/// host's previous batch is taken to be that series. Only the host's own
/// series are candidates, so a collision (one in 2^64 by chance) could
/// only mix two series of the same host, and the hash's seed is random
/// per process, so a host cannot aim for one.
fn resolve(trees: &Trees, state: &mut State, batch: StampedBatch) -> Result<WalRecord, StoreError> {
    let mut record = WalRecord {
        host: batch.host,
        stream_id: batch.stream_id,
        seq: batch.seq,
        new_series: Vec::new(),
        meta: Vec::new(),
        sets: Vec::with_capacity(batch.sets.len()),
    };
    let previous = state.recent.remove(&record.host).unwrap_or_default();
    let mut current: Vec<(u64, SeriesId)> = Vec::with_capacity(previous.len());
    for (t, families) in batch.sets {
        let mut samples = Vec::with_capacity(families.iter().map(|f| f.series.len()).sum());
        for family in families {
            let known = state
                .meta
                .get(&family.name)
                .is_some_and(|(kind, help)| *kind == family.kind && *help == family.help);
            if !known {
                let meta = (family.kind, family.help.clone());
                put_meta(trees, state, &family.name, meta)?;
                record
                    .meta
                    .push((family.name.clone(), family.kind, family.help.clone()));
            }
            for mut series in family.series {
                if !series.labels.is_sorted() {
                    series.labels.sort();
                }
                let hash = state.index.hash(
                    &family.name,
                    series.labels.iter().map(|(n, v)| (n.as_str(), v.as_str())),
                );
                let cached = previous
                    .get(current.len())
                    .filter(|(h, _)| *h == hash)
                    .map(|(_, id)| *id);
                let found =
                    cached.or_else(|| state.index.get_hashed(hash, &family.name, &series.labels));
                let id = match found {
                    Some(id) => id,
                    None => {
                        let mut labels = series.labels;
                        labels.push(("__name__".into(), family.name.clone()));
                        labels.sort();
                        let id = state.index.next_id();
                        put_series(state, id, &labels);
                        record.new_series.push((id, labels));
                        id
                    }
                };
                current.push((hash, id));
                samples.push((id, series.value));
            }
        }
        record.sets.push((t, samples));
    }
    state.recent.insert(record.host.clone(), current);
    Ok(record)
}

fn put_meta(
    trees: &Trees,
    state: &mut State,
    name: &str,
    meta: (MetricKind, String),
) -> Result<(), StoreError> {
    trees
        .meta
        .insert(name.as_bytes(), encode(&meta)?)
        .map_err(sled_err)?;
    state.meta.insert(name.to_owned(), meta);
    Ok(())
}

/// Encodes the ids and labels of `ids` into `buf`, as a series log record.
fn encode_series(
    index: &SeriesIndex,
    ids: &[SeriesId],
    buf: &mut Vec<u8>,
) -> Result<(), StoreError> {
    let saved: Vec<(SeriesId, Labels)> = ids
        .iter()
        .filter_map(|&id| Some((id, index.labels(id)?)))
        .collect();
    bincode::serde::encode_into_std_write(&saved, buf, bincode::config::standard())
        .map(|_| ())
        .map_err(|e| StoreError::Unavailable(format!("encode: {e}")))
}

fn append_series(
    log: &mut Wal,
    index: &SeriesIndex,
    ids: &[SeriesId],
    buf: &mut Vec<u8>,
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    encode_series(index, ids, buf)?;
    log.append(buf, i64::MIN).map_err(io_err("series log"))
}

/// Registers a series under `id` unless it is known. Only in memory: the
/// WAL record that brought it names it too, and [`DiskStore::maintain`]
/// appends it to the series log before that record can go.
fn put_series(state: &mut State, id: SeriesId, labels: &Labels) {
    if !state.index.contains(id) {
        state.index.insert(labels.clone(), Some(id));
        state.unsaved.push(id);
    }
}

/// Applies a WAL record to index, metadata and head; returns the samples
/// taken and the chunks the head closed (not yet written). Rejected samples
/// are counted when `counters` is given (not on replay).
fn apply(
    trees: &Trees,
    state: &mut State,
    record: &WalRecord,
    counters: Option<&Counters>,
) -> Result<(usize, Vec<ClosedChunk>), StoreError> {
    // On replay the definitions may be newer than the trees.
    for (id, labels) in &record.new_series {
        put_series(state, *id, labels);
    }
    for (name, kind, help) in &record.meta {
        let known = state
            .meta
            .get(name)
            .is_some_and(|(k, h)| k == kind && h == help);
        if !known {
            put_meta(trees, state, name, (*kind, help.clone()))?;
        }
    }
    let mut taken = 0;
    let mut closed = Vec::new();
    for (t, samples) in &record.sets {
        for &(id, v) in samples {
            match state.head.append(id, *t, v) {
                Ok(cut) => {
                    taken += 1;
                    closed.extend(cut);
                }
                Err(rejection) => {
                    if let Some(counters) = counters {
                        let counter = match rejection {
                            Rejection::OutOfOrder => &counters.out_of_order,
                            Rejection::Duplicate => &counters.duplicate,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
    Ok((taken, closed))
}

fn write_chunks(
    state: &mut State,
    counters: &Counters,
    chunks: &[ClosedChunk],
) -> Result<(), StoreError> {
    state.chunks.append(chunks).map_err(io_err("chunk files"))?;
    counters
        .chunks_written
        .fetch_add(chunks.len() as u64, Ordering::Relaxed);
    Ok(())
}

impl Store for DiskStore {
    fn last_applied(&self, host: &str, stream_id: u64) -> u64 {
        match self.lock().state.streams.get(host) {
            Some((stream, seq)) if *stream == stream_id => *seq,
            _ => 0,
        }
    }

    fn append(&self, batch: StampedBatch) -> Result<Appended, StoreError> {
        let mut inner = self.lock();
        let Inner { state, wal, buf } = &mut *inner;
        let last = match state.streams.get(&batch.host) {
            Some((stream, seq)) if *stream == batch.stream_id => *seq,
            _ => 0,
        };
        if batch.seq <= last {
            return Ok(Appended::Duplicate);
        }
        let record = resolve(&self.trees, state, batch)?;
        buf.clear();
        bincode::serde::encode_into_std_write(&record, buf, bincode::config::standard())
            .map_err(|e| StoreError::Unavailable(format!("encode: {e}")))?;
        wal.append(buf, record.newest())
            .map_err(io_err("WAL write"))?;
        let (samples, closed) = apply(&self.trees, state, &record, Some(&self.counters))?;
        write_chunks(state, &self.counters, &closed)?;
        state
            .streams
            .insert(record.host, (record.stream_id, record.seq));
        drop(inner);
        self.committer
            .wait_durable()
            .map_err(StoreError::Unavailable)?;
        self.counters
            .samples
            .fetch_add(samples as u64, Ordering::Relaxed);
        Ok(Appended::Applied { samples })
    }

    fn latest(&self, since_ms: i64) -> Vec<LatestFamily> {
        let inner = self.lock();
        let state = &inner.state;
        let mut families: BTreeMap<String, LatestFamily> = BTreeMap::new();
        for id in state.index.select(&[]) {
            let Some((t, v)) = state.head.last(id) else {
                continue;
            };
            if t < since_ms {
                continue;
            }
            let Some(mut labels) = state.index.labels(id) else {
                continue;
            };
            let Some(at) = labels.iter().position(|(n, _)| n == "__name__") else {
                continue;
            };
            let (_, name) = labels.remove(at);
            let family = families.entry(name).or_insert_with_key(|name| {
                let (kind, help) = state
                    .meta
                    .get(name)
                    .cloned()
                    .unwrap_or((MetricKind::Unknown, String::new()));
                LatestFamily {
                    name: name.clone(),
                    help,
                    kind,
                    samples: Vec::new(),
                }
            });
            family.samples.push(LatestSample {
                labels,
                value: v,
                timestamp_ms: t,
            });
        }
        families
            .into_values()
            .map(|mut f| {
                f.samples.sort_by(|a, b| a.labels.cmp(&b.labels));
                f
            })
            .collect()
    }

    fn series_count(&self) -> usize {
        self.lock().state.index.len()
    }

    /// Series matching `matchers` with their samples in [mint, maxt],
    /// persisted chunks first, then the head.
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StoreError> {
        let inner = self.lock();
        let state = &inner.state;
        let mut out = Vec::new();
        for id in state.index.select(matchers) {
            let mut samples = Vec::new();
            for bytes in state
                .chunks
                .read(id, mint, maxt)
                .map_err(io_err("chunk files"))?
            {
                let reader = ChunkReader::new(&bytes)
                    .map_err(|e| StoreError::Unavailable(format!("chunk of series {id}: {e}")))?;
                let mut past_end = false;
                for sample in reader {
                    let (t, v) = sample.map_err(|e| {
                        StoreError::Unavailable(format!("chunk of series {id}: {e}"))
                    })?;
                    if t > maxt {
                        past_end = true;
                        break;
                    }
                    if t >= mint {
                        samples.push((t, v));
                    }
                }
                if past_end {
                    break;
                }
            }
            samples.extend(state.head.samples(id, mint, maxt));
            if !samples.is_empty() {
                let labels = state.index.labels(id).unwrap_or_default();
                out.push(SeriesSamples { labels, samples });
            }
        }
        Ok(out)
    }

    /// Label names of the series matching `matchers` (all series if none).
    fn label_names(&self, matchers: &[Matcher]) -> Vec<String> {
        let inner = self.lock();
        let index = &inner.state.index;
        if matchers.is_empty() {
            return index.label_names();
        }
        let mut names: Vec<String> = index
            .select(matchers)
            .into_iter()
            .filter_map(|id| index.labels(id))
            .flat_map(|labels| labels.into_iter().map(|(n, _)| n))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Values of label `name` among the series matching `matchers`.
    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Vec<String> {
        let inner = self.lock();
        let index = &inner.state.index;
        if matchers.is_empty() {
            return index.label_values(name);
        }
        let mut values: Vec<String> = index
            .select(matchers)
            .into_iter()
            .filter_map(|id| index.labels(id))
            .filter_map(|labels| labels.into_iter().find(|(n, _)| n == name).map(|(_, v)| v))
            .collect();
        values.sort();
        values.dedup();
        values
    }

    fn metadata(&self) -> Vec<(String, MetricKind, String)> {
        self.lock()
            .state
            .meta
            .iter()
            .map(|(name, (kind, help))| (name.clone(), *kind, help.clone()))
            .collect()
    }

    fn put_state(&self, key: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        match value {
            Some(v) => self.trees.state.insert(key.as_bytes(), v).map(|_| ()),
            None => self.trees.state.remove(key.as_bytes()).map(|_| ()),
        }
        .map_err(sled_err)?;
        self.trees.state.flush().map_err(sled_err)?;
        Ok(())
    }

    fn get_state(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .trees
            .state
            .get(key.as_bytes())
            .map_err(sled_err)?
            .map(|v| v.to_vec()))
    }

    fn state_entries(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.trees
            .state
            .scan_prefix(prefix.as_bytes())
            .map(|item| {
                let (k, v) = item.map_err(sled_err)?;
                Ok((String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
            })
            .collect()
    }

    fn state_newest(
        &self,
        prefix: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let start = prefix.as_bytes().to_vec();
        let range = match before {
            Some(b) if b.starts_with(prefix) => {
                self.trees.state.range(start..b.as_bytes().to_vec())
            }
            Some(b) if b.as_bytes() <= start.as_slice() => return Ok(Vec::new()),
            _ => self.trees.state.scan_prefix(&start),
        };
        range
            .rev()
            .take(limit)
            .map(|item| {
                let (k, v) = item.map_err(sled_err)?;
                Ok((String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
            })
            .collect()
    }

    fn record(&self, records: BatchRecords) -> Result<usize, StoreError> {
        if records.is_empty() || records.seq <= self.last_applied(&records.host, records.stream_id)
        {
            return Ok(0);
        }
        // Not under the store's lock: the flush would hold up every
        // agent's samples.
        self.records.put(records, patrol_shared::model::now_ms())
    }

    fn inspections(&self, query: &RecordQuery) -> Result<Vec<InspectionSummary>, StoreError> {
        self.records.inspections(query)
    }

    fn inspection(&self, id: &str) -> Result<Option<InspectionRecord>, StoreError> {
        self.records.inspection(id)
    }

    fn fim_events(&self, query: &RecordQuery) -> Result<Vec<FimEvent>, StoreError> {
        self.records.fim_events(query)
    }

    fn stats(&self) -> StoreStats {
        let inner = self.lock();
        StoreStats {
            series: inner.state.index.len() as u64,
            samples_appended: self.counters.samples.load(Ordering::Relaxed),
            samples_out_of_order: self.counters.out_of_order.load(Ordering::Relaxed),
            samples_duplicate: self.counters.duplicate.load(Ordering::Relaxed),
            chunks_written: self.counters.chunks_written.load(Ordering::Relaxed),
            wal_records: inner.wal.records(),
            wal_bytes: inner.wal.bytes(),
            bytes_on_disk: self.db.size_on_disk().unwrap_or(0)
                + self.series_log().bytes()
                + inner.wal.bytes()
                + inner.state.chunks.bytes(),
            last_flush_seconds: self.committer.last_flush().as_secs_f64(),
            available: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use patrol_shared::model::Family;

    fn batch(host: &str, stream: u64, seq: u64, samples: &[(i64, f64)]) -> StampedBatch {
        let sets = samples
            .iter()
            .map(|(t, v)| {
                let mut f = Family::gauge("node_load1", "1m load average.");
                f.push(&[("host", host), ("instance", host)], *v);
                let mut c = Family::counter("node_cpu_seconds_total", "cpu");
                c.push(
                    &[
                        ("cpu", "0"),
                        ("host", host),
                        ("instance", host),
                        ("mode", "idle"),
                    ],
                    *v * 2.0,
                );
                (*t, vec![f, c])
            })
            .collect();
        StampedBatch {
            host: host.into(),
            stream_id: stream,
            seq,
            sets,
        }
    }

    fn load1(store: &DiskStore) -> Vec<(i64, u64)> {
        let found = store
            .select(
                &[Matcher::equal("__name__", "node_load1")],
                i64::MIN,
                i64::MAX,
            )
            .unwrap();
        found
            .iter()
            .flat_map(|s| s.samples.iter().map(|(t, v)| (*t, v.to_bits())))
            .collect()
    }

    #[test]
    fn replayed_batch_is_stored_once_even_after_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = DiskStore::open(dir.path()).unwrap();
            assert_eq!(
                store.append(batch("db", 7, 1, &[(1000, 1.0)])).unwrap(),
                Appended::Applied { samples: 2 }
            );
            assert_eq!(
                store.append(batch("db", 7, 1, &[(1000, 1.0)])).unwrap(),
                Appended::Duplicate
            );
        }
        let store = DiskStore::open(dir.path()).unwrap();
        assert_eq!(store.last_applied("db", 7), 1);
        assert_eq!(
            store.append(batch("db", 7, 1, &[(1000, 1.0)])).unwrap(),
            Appended::Duplicate
        );
        assert_eq!(load1(&store), [(1000, 1.0f64.to_bits())]);
    }

    #[test]
    fn restart_reads_back_the_same_samples_from_chunks_and_wal() {
        let dir = tempfile::tempdir().unwrap();
        let samples: Vec<(i64, f64)> = (0..300)
            .map(|i| {
                (
                    1_700_000_000_000 + i * 10_000,
                    if i == 7 { f64::NAN } else { i as f64 * 0.25 },
                )
            })
            .collect();
        let before = {
            let store = DiskStore::open(dir.path()).unwrap();
            for (seq, chunk) in samples.chunks(10).enumerate() {
                store.append(batch("db", 1, seq as u64 + 1, chunk)).unwrap();
            }
            // 300 samples: two chunks closed, the rest in the head and WAL.
            assert!(store.stats().chunks_written >= 4, "{:?}", store.stats());
            let latest = store.latest(0);
            (load1(&store), latest)
        };
        let want: Vec<(i64, u64)> = samples.iter().map(|(t, v)| (*t, v.to_bits())).collect();
        assert_eq!(before.0, want);
        let store = DiskStore::open(dir.path()).unwrap();
        assert_eq!(load1(&store), want, "identical after restart");
        assert_eq!(format!("{:?}", store.latest(0)), format!("{:?}", before.1));
        assert_eq!(store.series_count(), 2);
    }

    #[test]
    fn series_changing_place_between_batches_keep_their_identity() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let batch = |seq: u64, names: &[&str]| {
            let mut f = Family::gauge("temp", "");
            for (i, n) in names.iter().enumerate() {
                f.push(&[("sensor", n)], seq as f64 * 10.0 + i as f64);
            }
            StampedBatch {
                host: "db".into(),
                stream_id: 1,
                seq,
                sets: vec![(seq as i64 * 1000, vec![f])],
            }
        };
        store.append(batch(1, &["a", "b"])).unwrap();
        store.append(batch(2, &["b", "c"])).unwrap();
        store.append(batch(3, &["c", "a", "b"])).unwrap();
        assert_eq!(store.series_count(), 3);
        let values = |sensor: &str| -> Vec<f64> {
            store
                .select(&[Matcher::equal("sensor", sensor)], 0, i64::MAX)
                .unwrap()[0]
                .samples
                .iter()
                .map(|(_, v)| *v)
                .collect()
        };
        assert_eq!(values("a"), [10.0, 31.0]);
        assert_eq!(values("b"), [11.0, 20.0, 32.0]);
        assert_eq!(values("c"), [21.0, 30.0]);
    }

    #[test]
    fn label_names_and_values_optionally_restricted_by_matchers() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        store.append(batch("db", 1, 1, &[(1000, 1.0)])).unwrap();
        store
            .append(batch("training", 2, 1, &[(1000, 1.0)]))
            .unwrap();
        assert_eq!(
            store.label_names(&[]),
            ["__name__", "cpu", "host", "instance", "mode"]
        );
        let load = [Matcher::equal("__name__", "node_load1")];
        assert_eq!(store.label_names(&load), ["__name__", "host", "instance"]);
        assert_eq!(store.label_values("host", &[]), ["db", "training"]);
        let db = [Matcher::equal("host", "db")];
        assert_eq!(
            store.label_values("__name__", &db),
            ["node_cpu_seconds_total", "node_load1"]
        );
        assert!(store.label_values("mode", &load).is_empty());
    }

    #[test]
    fn out_of_order_samples_are_counted_and_do_not_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        store.append(batch("db", 1, 1, &[(2000, 1.0)])).unwrap();
        store
            .append(batch("db", 1, 2, &[(1000, 9.0), (2000, 9.0), (3000, 3.0)]))
            .unwrap();
        assert_eq!(
            load1(&store),
            [(2000, 1.0f64.to_bits()), (3000, 3.0f64.to_bits())]
        );
        let stats = store.stats();
        assert_eq!(
            (stats.samples_out_of_order, stats.samples_duplicate),
            (2, 2)
        );
    }

    #[test]
    fn records_of_a_replayed_batch_are_not_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let records = |seq| BatchRecords {
            host: "db".into(),
            stream_id: 7,
            seq,
            inspections: Vec::new(),
            fim_events: vec![patrol_shared::model::AgentEvent {
                timestamp_ms: 1000 + seq as i64,
                kind: super::super::FIM_EVENT_KIND.into(),
                message: "/etc/hosts modified: mode 0644 → 0600".into(),
            }],
        };
        assert_eq!(store.record(records(1)).unwrap(), 1);
        store.append(batch("db", 7, 1, &[(1000, 1.0)])).unwrap();
        assert_eq!(store.record(records(1)).unwrap(), 0, "seq 1 is applied");
        assert_eq!(store.record(records(2)).unwrap(), 1);
        drop(store);
        let store = DiskStore::open(dir.path()).unwrap();
        let events = store.fim_events(&RecordQuery::default()).unwrap();
        let times: Vec<i64> = events.iter().map(|e| e.time_ms).collect();
        assert_eq!(times, [1002, 1001]);
    }

    #[test]
    fn retention_deletes_old_records_too() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let hour = 3_600_000;
        let event = |t: i64| patrol_shared::model::AgentEvent {
            timestamp_ms: t,
            kind: super::super::FIM_EVENT_KIND.into(),
            message: format!("/etc/hosts{t} created: file"),
        };
        store
            .record(BatchRecords {
                host: "db".into(),
                stream_id: 1,
                seq: 1,
                inspections: Vec::new(),
                fim_events: vec![event(hour), event(40 * 24 * hour)],
            })
            .unwrap();
        store.maintain(41 * 24 * hour, 30 * 24 * hour).unwrap();
        let left = store.fim_events(&RecordQuery::default()).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].time_ms, 40 * 24 * hour);
    }

    #[test]
    fn wal_is_truncated_behind_closed_chunks_and_retention_frees_old_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let hour = 3_600_000;
        for seq in 0..130 {
            store
                .append(batch("db", 1, seq + 1, &[(seq as i64 * 60_000, 1.0)]))
                .unwrap();
        }
        assert_eq!(store.stats().wal_records, 130);
        // Three hours later, every series is quiet: its chunks close.
        let now = 130 * 60_000 + 3 * hour;
        store.maintain(now, 30 * 24 * hour).unwrap();
        assert_eq!(store.stats().wal_records, 0);
        assert_eq!(load1(&store).len(), 130);
        // Thirty days on, retention removes them.
        store
            .maintain(now + 31 * 24 * hour, 30 * 24 * hour)
            .unwrap();
        assert!(load1(&store).is_empty());
        drop(store);
        let store = DiskStore::open(dir.path()).unwrap();
        assert!(load1(&store).is_empty(), "nothing comes back from the WAL");
    }

    #[test]
    fn series_outlive_the_wal_records_that_brought_them() {
        let dir = tempfile::tempdir().unwrap();
        let hour = 3_600_000;
        {
            let store = DiskStore::open(dir.path()).unwrap();
            store.append(batch("db", 1, 1, &[(0, 1.0)])).unwrap();
            store.maintain(3 * hour, 30 * 24 * hour).unwrap();
            assert_eq!(store.stats().wal_records, 0, "the WAL was truncated");
            // A series first seen after the truncation is only in the WAL.
            let mut late = Family::gauge("node_load5", "5m load average.");
            late.push(&[("host", "db"), ("instance", "db")], 2.0);
            let late = StampedBatch {
                host: "db".into(),
                stream_id: 1,
                seq: 2,
                sets: vec![(3 * hour, vec![late])],
            };
            store.append(late).unwrap();
        }
        let store = DiskStore::open(dir.path()).unwrap();
        assert_eq!(store.series_count(), 3);
        assert_eq!(load1(&store), [(0, 1f64.to_bits())]);
        let load5 = store
            .select(
                &[Matcher::equal("__name__", "node_load5")],
                i64::MIN,
                i64::MAX,
            )
            .unwrap();
        assert_eq!(load5.len(), 1);
        assert_eq!(load5[0].samples, [(3 * hour, 2.0)]);
        // Saved by the next upkeep, they are read from the series log alone.
        store.maintain(4 * hour, 30 * 24 * hour).unwrap();
        drop(store);
        let store = DiskStore::open(dir.path()).unwrap();
        assert_eq!(store.series_count(), 3);
        assert!(store.trees.series.is_empty(), "no series goes to sled");
    }
}
