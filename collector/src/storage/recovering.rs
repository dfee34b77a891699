//! The store as ingest and readers hold it: the on-disk store, reopened
//! after a storage error. sled refuses every write after an I/O error such
//! as a full disk; this wrapper drops the broken database and tries to open
//! it again (at most once a second) until it succeeds, so ingest resumes
//! by itself once the operator has freed space. While it is broken, appends
//! fail, nothing is acked and agents keep their batches.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tracing::{error, info};

use super::disk::{DiskStore, SeriesSamples};
use super::index::Matcher;
use super::records::{BatchRecords, FimEvent, InspectionRecord, InspectionSummary, RecordQuery};
use super::{Appended, LatestFamily, StampedBatch, Store, StoreError, StoreStats};

const RETRY_EVERY: Duration = Duration::from_secs(1);

enum Slot {
    Open(Arc<DiskStore>),
    Broken {
        since: Instant,
        last_try: Instant,
        error: String,
    },
}

/// See the module comment.
pub struct Storage {
    path: PathBuf,
    slot: RwLock<Slot>,
}

impl Storage {
    /// Opens the store; an error here stops the collector from starting.
    pub fn open(path: &Path) -> Result<Storage, StoreError> {
        Ok(Storage {
            path: path.to_owned(),
            slot: RwLock::new(Slot::Open(Arc::new(DiskStore::open(path)?))),
        })
    }

    /// The open store, reopening a broken one when it is time to try.
    fn store(&self) -> Result<Arc<DiskStore>, StoreError> {
        {
            let slot = self.slot.read().unwrap_or_else(|p| p.into_inner());
            match &*slot {
                Slot::Open(store) => return Ok(store.clone()),
                Slot::Broken {
                    last_try, error, ..
                } if last_try.elapsed() < RETRY_EVERY => {
                    return Err(StoreError::Unavailable(error.clone()));
                }
                Slot::Broken { .. } => {}
            }
        }
        let mut slot = self.slot.write().unwrap_or_else(|p| p.into_inner());
        match &mut *slot {
            Slot::Open(store) => Ok(store.clone()),
            Slot::Broken {
                since,
                last_try,
                error,
            } => {
                *last_try = Instant::now();
                match DiskStore::open(&self.path) {
                    Ok(store) => {
                        info!(after = ?since.elapsed(), "storage recovered; ingest resumes");
                        let store = Arc::new(store);
                        *slot = Slot::Open(store.clone());
                        Ok(store)
                    }
                    Err(e) => {
                        *error = e.to_string();
                        Err(e)
                    }
                }
            }
        }
    }

    /// Marks the store broken after `err` (once: later errors of the same
    /// store find it already marked).
    fn fail(&self, failed: &Arc<DiskStore>, err: &StoreError) {
        let mut slot = self.slot.write().unwrap_or_else(|p| p.into_inner());
        if let Slot::Open(current) = &*slot {
            if Arc::ptr_eq(current, failed) {
                error!(error = %err, path = %self.path.display(),
                       "storage failed; not acking batches until it recovers (agents keep them)");
                let now = Instant::now();
                *slot = Slot::Broken {
                    since: now,
                    last_try: now,
                    error: err.to_string(),
                };
            }
        }
    }

    /// Background upkeep (see [`DiskStore::maintain`]).
    pub fn maintain(&self, now_ms: i64, retention_ms: i64) -> Result<(), StoreError> {
        let store = self.store()?;
        store
            .maintain(now_ms, retention_ms)
            .inspect_err(|e| self.fail(&store, e))
    }
}

impl Store for Storage {
    fn put_state(&self, key: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        let store = self.store()?;
        store
            .put_state(key, value)
            .inspect_err(|e| self.fail(&store, e))
    }

    fn get_state(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.store()?.get_state(key)
    }

    fn state_entries(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.store()?.state_entries(prefix)
    }

    fn state_newest(
        &self,
        prefix: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.store()?.state_newest(prefix, before, limit)
    }

    fn last_applied(&self, host: &str, stream_id: u64) -> u64 {
        self.store()
            .map(|s| s.last_applied(host, stream_id))
            .unwrap_or(0)
    }

    fn append(&self, batch: StampedBatch) -> Result<Appended, StoreError> {
        let store = self.store()?;
        store.append(batch).inspect_err(|e| self.fail(&store, e))
    }

    fn latest(&self, since_ms: i64) -> Vec<LatestFamily> {
        self.store().map(|s| s.latest(since_ms)).unwrap_or_default()
    }

    fn series_count(&self) -> usize {
        self.store().map(|s| s.series_count()).unwrap_or(0)
    }

    /// Series and samples in a time range (see [`DiskStore::select`]).
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StoreError> {
        self.store()?.select(matchers, mint, maxt)
    }

    /// Label names (see [`DiskStore::label_names`]).
    fn label_names(&self, matchers: &[Matcher]) -> Vec<String> {
        self.store()
            .map(|s| s.label_names(matchers))
            .unwrap_or_default()
    }

    /// Label values (see [`DiskStore::label_values`]).
    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Vec<String> {
        self.store()
            .map(|s| s.label_values(name, matchers))
            .unwrap_or_default()
    }
    fn metadata(&self) -> Vec<(String, patrol_shared::model::MetricKind, String)> {
        self.store().map(|s| s.metadata()).unwrap_or_default()
    }

    fn record(&self, records: BatchRecords) -> Result<usize, StoreError> {
        let store = self.store()?;
        store.record(records).inspect_err(|e| self.fail(&store, e))
    }

    fn inspections(&self, query: &RecordQuery) -> Result<Vec<InspectionSummary>, StoreError> {
        self.store()?.inspections(query)
    }

    fn inspection(&self, id: &str) -> Result<Option<InspectionRecord>, StoreError> {
        self.store()?.inspection(id)
    }

    fn fim_events(&self, query: &RecordQuery) -> Result<Vec<FimEvent>, StoreError> {
        self.store()?.fim_events(query)
    }

    fn stats(&self) -> StoreStats {
        match self.store() {
            Ok(s) => s.stats(),
            Err(_) => StoreStats {
                available: false,
                ..StoreStats::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use patrol_shared::model::Family;

    /// A tmpfs of `size` mounted in a temp dir, unmounted on drop.
    struct SmallDisk {
        dir: tempfile::TempDir,
    }

    impl SmallDisk {
        fn mount(size: &str) -> Option<SmallDisk> {
            let dir = tempfile::tempdir().ok()?;
            let ok = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir.path())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            ok.then_some(SmallDisk { dir })
        }

        fn path(&self) -> &Path {
            self.dir.path()
        }
    }

    impl Drop for SmallDisk {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg(self.dir.path())
                .status();
        }
    }

    fn batch(seq: u64) -> StampedBatch {
        let mut f = Family::gauge("x", "");
        for i in 0..50 {
            f.push(&[("i", &i.to_string())], seq as f64);
        }
        StampedBatch {
            host: "h".into(),
            stream_id: 1,
            seq,
            sets: vec![(seq as i64 * 1000, vec![f])],
        }
    }

    #[test]
    fn a_full_disk_stops_appends_and_ingest_resumes_once_space_is_freed() {
        let Some(disk) = SmallDisk::mount("4m") else {
            eprintln!("note: cannot mount a tmpfs here (not root?); disk-full test skipped");
            return;
        };
        let storage = Storage::open(&disk.path().join("db")).unwrap();
        for seq in 1..=10 {
            storage.append(batch(seq)).unwrap();
        }
        let filler = disk.path().join("filler");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&filler).unwrap();
            let block = vec![0u8; 64 * 1024];
            while f.write_all(&block).is_ok() {}
        }
        let mut seq = 11;
        let failed = (0..200).find_map(|_| match storage.append(batch(seq)) {
            Ok(_) => {
                seq += 1;
                None
            }
            Err(e) => Some(e),
        });
        assert!(failed.is_some(), "the full disk is noticed");
        assert!(!storage.stats().available);
        std::fs::remove_file(&filler).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while storage.append(batch(seq)).is_err() {
            assert!(Instant::now() < deadline, "storage never recovered");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(storage.stats().available);
        let stored = storage
            .select(&[Matcher::equal("i", "0")], i64::MIN, i64::MAX)
            .unwrap();
        let times: Vec<i64> = stored[0].samples.iter().map(|(t, _)| *t).collect();
        let want: Vec<i64> = (1..=seq as i64).map(|s| s * 1000).collect();
        assert_eq!(times, want, "everything acked before and after is there");
    }
}
