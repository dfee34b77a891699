//! The write-ahead log: append-only segment files, so that a batch costs
//! one `write` and a share of one `fdatasync`.
//!
//! Files `wal/NNNNNNNN.wal`, each a run of records
//! `[u32 payload length][u32 crc32 of payload][payload]`, little-endian. A
//! new file is started when the current one passes [`SEGMENT_BYTES`]; the
//! old one is synced first. The log is truncated a whole file at a time:
//! a file goes once every sample in it is in a closed, synced chunk.
//!
//! At open every file is read in order and each record handed to the
//! caller. A torn record at the end of the newest file (a crash mid-write;
//! it was never acked) is cut off. A bad record anywhere else is corruption:
//! the rest of that file cannot be framed, so it is reported with file and
//! byte, and reading goes on with the next file.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Size at which a new segment file is started.
pub const SEGMENT_BYTES: u64 = 16 << 20;
const HEADER: usize = 8;
/// No batch is anywhere near this; a larger length is corruption.
const MAX_RECORD: u32 = 256 << 20;

struct Segment {
    number: u32,
    size: u64,
    records: u64,
    /// Newest sample time in any record of the file.
    newest: i64,
}

/// The file the group-commit thread syncs: the current segment.
#[derive(Clone)]
pub struct WalSync(Arc<Mutex<File>>);

impl WalSync {
    /// Makes everything written to the current segment durable.
    pub fn sync(&self) -> io::Result<()> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).sync_data()
    }
}

/// See the module comment.
pub struct Wal {
    dir: PathBuf,
    /// Oldest first; the last is the one written to.
    segments: VecDeque<Segment>,
    current: File,
    sync: WalSync,
}

fn file_name(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{n:08}.wal"))
}

impl Wal {
    /// Opens the log in `dir` (creating it) and hands every intact record,
    /// oldest first, to `replay`, which returns the newest sample time in
    /// it or an error that stops the opening.
    pub fn open(
        dir: &Path,
        mut replay: impl FnMut(&[u8]) -> Result<i64, String>,
    ) -> io::Result<Wal> {
        std::fs::create_dir_all(dir)?;
        let mut numbers: Vec<u32> = std::fs::read_dir(dir)?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".wal")?.parse().ok())
            .collect();
        numbers.sort_unstable();
        let mut segments = VecDeque::new();
        let last = numbers.last().copied();
        for n in numbers {
            let path = file_name(dir, n);
            let bytes = std::fs::read(&path)?;
            let mut segment = Segment {
                number: n,
                size: 0,
                records: 0,
                newest: i64::MIN,
            };
            let mut at = 0usize;
            while let Some((payload, next)) = frame(&bytes, at) {
                let newest = replay(payload).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: record at byte {at}: {e}", path.display()),
                    )
                })?;
                segment.newest = segment.newest.max(newest);
                segment.records += 1;
                at = next;
            }
            segment.size = at as u64;
            if at < bytes.len() {
                if Some(n) == last {
                    tracing::warn!(file = %path.display(), at, "cutting a torn WAL record off the end");
                    OpenOptions::new()
                        .write(true)
                        .open(&path)?
                        .set_len(at as u64)?;
                } else {
                    tracing::error!(file = %path.display(), at,
                        "corrupt WAL record; the rest of this file is skipped");
                }
            }
            segments.push_back(segment);
        }
        if segments.is_empty() {
            segments.push_back(Segment {
                number: 1,
                size: 0,
                records: 0,
                newest: i64::MIN,
            });
        }
        let newest_file = segments.back().map_or(1, |s| s.number);
        let current = OpenOptions::new()
            .create(true)
            .append(true)
            .open(file_name(dir, newest_file))?;
        sync_dir(dir)?;
        let sync = WalSync(Arc::new(Mutex::new(current.try_clone()?)));
        Ok(Wal {
            dir: dir.to_owned(),
            segments,
            current,
            sync,
        })
    }

    /// The handle the group-commit thread syncs.
    pub fn sync_handle(&self) -> WalSync {
        self.sync.clone()
    }

    /// Appends one record whose newest sample is at `newest`. Not durable
    /// until the current segment is synced. On a failed write the file is
    /// cut back, so no partial record stays behind.
    pub fn append(&mut self, payload: &[u8], newest: i64) -> io::Result<()> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|l| *l <= MAX_RECORD)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "WAL record too large"))?;
        if self
            .segments
            .back()
            .is_some_and(|s| s.size >= SEGMENT_BYTES)
        {
            self.roll()?;
        }
        let mut record = Vec::with_capacity(HEADER + payload.len());
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        record.extend_from_slice(payload);
        let segment = self
            .segments
            .back_mut()
            .ok_or_else(|| io::Error::other("no WAL segment"))?;
        if let Err(e) = self.current.write_all(&record) {
            let _ = self.current.set_len(segment.size);
            return Err(e);
        }
        segment.size += record.len() as u64;
        segment.records += 1;
        segment.newest = segment.newest.max(newest);
        Ok(())
    }

    /// Syncs the current file and starts the next.
    fn roll(&mut self) -> io::Result<()> {
        self.current.sync_data()?;
        let number = self.segments.back().map_or(1, |s| s.number + 1);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(file_name(&self.dir, number))?;
        sync_dir(&self.dir)?;
        *self.sync.0.lock().unwrap_or_else(|p| p.into_inner()) = file.try_clone()?;
        self.current = file;
        self.segments.push_back(Segment {
            number,
            size: 0,
            records: 0,
            newest: i64::MIN,
        });
        Ok(())
    }

    /// Makes every record written so far durable.
    pub fn sync(&self) -> io::Result<()> {
        self.current.sync_data()
    }

    /// Deletes the files whose every sample is older than `keep_from`; if
    /// that is all of them, a new file is started first. The caller has made
    /// those samples durable elsewhere. Returns how many files went.
    pub fn truncate_before(&mut self, keep_from: i64) -> io::Result<usize> {
        let count = self.removable(keep_from);
        if count == 0 {
            return Ok(0);
        }
        if count == self.segments.len() {
            self.roll()?;
        }
        for _ in 0..count {
            let Some(s) = self.segments.pop_front() else {
                break;
            };
            match std::fs::remove_file(file_name(&self.dir, s.number)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    self.segments.push_front(s);
                    return Err(e);
                }
            }
        }
        Ok(count)
    }

    /// How many files [`Wal::truncate_before`] would delete: the oldest
    /// ones whose samples are all older than `keep_from`, an empty current
    /// file excepted.
    pub fn removable(&self, keep_from: i64) -> usize {
        let old = self
            .segments
            .iter()
            .take_while(|s| s.newest < keep_from)
            .count();
        if old == self.segments.len() && self.segments.back().is_some_and(|s| s.records == 0) {
            old - 1
        } else {
            old
        }
    }

    /// Bytes of all files.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    /// Records in all files.
    pub fn records(&self) -> u64 {
        self.segments.iter().map(|s| s.records).sum()
    }

    /// Files in the log.
    #[cfg(test)]
    fn files(&self) -> usize {
        self.segments.len()
    }
}

/// The record framed at `at`, and where the next begins; None at the end
/// or at a torn or corrupt record.
fn frame(bytes: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let header = bytes.get(at..at.checked_add(HEADER)?)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_RECORD {
        return None;
    }
    let start = at + HEADER;
    let payload = bytes.get(start..start.checked_add(len as usize)?)?;
    (crc32fast::hash(payload) == crc).then_some((payload, start + len as usize))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(dir: &Path) -> Vec<Vec<u8>> {
        let mut seen = Vec::new();
        Wal::open(dir, |p| {
            seen.push(p.to_vec());
            Ok(i64::from(p[0]))
        })
        .unwrap();
        seen
    }

    #[test]
    fn records_come_back_in_order_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), |_| Ok(0)).unwrap();
        for i in 0..10u8 {
            wal.append(&[i; 100], i64::from(i)).unwrap();
        }
        wal.sync_handle().sync().unwrap();
        assert_eq!(wal.records(), 10);
        drop(wal);
        let seen = read_all(dir.path());
        assert_eq!(seen, (0..10u8).map(|i| vec![i; 100]).collect::<Vec<_>>());
    }

    #[test]
    fn torn_tail_is_cut_and_writing_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), |_| Ok(0)).unwrap();
        wal.append(&[1; 50], 1).unwrap();
        wal.append(&[2; 50], 2).unwrap();
        drop(wal);
        let path = file_name(dir.path(), 1);
        let len = std::fs::metadata(&path).unwrap().len();
        // A crash in the middle of the second record.
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 20)
            .unwrap();
        assert_eq!(read_all(dir.path()), [vec![1; 50]]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 58);
        let mut wal = Wal::open(dir.path(), |_| Ok(0)).unwrap();
        wal.append(&[3; 50], 3).unwrap();
        drop(wal);
        assert_eq!(read_all(dir.path()), [vec![1; 50], vec![3; 50]]);
    }

    #[test]
    fn corruption_in_an_old_file_skips_only_that_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), |_| Ok(0)).unwrap();
        let big = vec![7u8; SEGMENT_BYTES as usize];
        wal.append(&big, 7).unwrap();
        wal.append(&[8; 10], 8).unwrap();
        assert_eq!(wal.files(), 2);
        drop(wal);
        // Flip a byte in the first file's payload.
        let path = file_name(dir.path(), 1);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[100] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(read_all(dir.path()), [vec![8; 10]]);
    }

    #[test]
    fn truncation_removes_whole_old_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), |_| Ok(0)).unwrap();
        let big = vec![0u8; SEGMENT_BYTES as usize / 2 + 1];
        for t in [10, 20, 30, 40, 50] {
            wal.append(&big, t).unwrap();
        }
        // Files: [10, 20], [30, 40], [50].
        assert_eq!(wal.files(), 3);
        assert_eq!(wal.truncate_before(30).unwrap(), 1);
        assert_eq!(wal.truncate_before(50).unwrap(), 1);
        assert_eq!(wal.files(), 1);
        // All old: a fresh file is started, and the old ones go.
        assert_eq!(wal.truncate_before(1000).unwrap(), 1);
        assert_eq!((wal.files(), wal.records(), wal.bytes()), (1, 0, 0));
        assert_eq!(wal.truncate_before(1000).unwrap(), 0);
        wal.append(&[1; 10], 60).unwrap();
        drop(wal);
        assert_eq!(read_all(dir.path()), [vec![1; 10]]);
    }

    #[test]
    fn a_replay_error_names_file_and_byte() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), |_| Ok(0)).unwrap();
        wal.append(&[1; 4], 1).unwrap();
        drop(wal);
        let err = Wal::open(dir.path(), |_| Err("unknown record".into()))
            .err()
            .unwrap();
        let msg = err.to_string();
        assert!(
            msg.contains("00000001.wal") && msg.contains("byte 0"),
            "{msg}"
        );
    }
}
