//! Closed chunks in append-only segment files, deleted whole by retention
//! so that disk space really comes back (sled kept what it was told to
//! delete; see docs/benchmarks.md).
//!
//! Files `chunks/NNNNNNNN.seg`, each a run of records: four LEB128
//! varints — payload length, series id, min time as a zig-zag delta from
//! the previous record's min time in the file (from 0 for the first), and
//! max time − min time — then a little-endian crc32 of those varints and
//! the payload, then the payload: 15 bytes or so per chunk. A new file is
//! started when the current one passes 64 MiB or has been written to for
//! two hours of data time, so each file covers a
//! bounded span and can be dropped once its newest chunk is past retention.
//! At open the files are scanned (headers only) to rebuild the in-memory
//! map of series → chunk locations; a torn record at the end of the last
//! file (a crash mid-write) is cut off. Chunks are also in the write-ahead
//! log until [`ChunkFiles::sync`] has made them durable.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::head::ClosedChunk;
use super::index::SeriesId;

/// Longest record header: four varints and the crc.
const MAX_HEADER: usize = 4 * 10 + 4;
const MAX_FILE_BYTES: u64 = 64 << 20;
const MAX_FILE_SPAN_MS: i64 = 2 * 3600 * 1000;
/// No chunk is anywhere near this; a larger length is corruption.
const MAX_PAYLOAD: u32 = 16 << 20;

/// Where one chunk lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ChunkRef {
    file: u32,
    /// Where the record starts in its file.
    offset: u32,
    /// Header bytes before the payload.
    head: u8,
    len: u32,
    min_t: i64,
    max_t: i64,
}

struct FileInfo {
    handle: File,
    size: u64,
    /// Min time of the file's last record: the next one's is a delta.
    last_min_t: i64,
    first_max_t: i64,
    newest_max_t: i64,
}

/// See the module comment.
pub struct ChunkFiles {
    dir: PathBuf,
    files: BTreeMap<u32, FileInfo>,
    /// Per series, its chunks ordered by max time.
    chunks: HashMap<SeriesId, Vec<ChunkRef>>,
    /// Written since the last `sync`.
    dirty: bool,
}

fn file_name(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{n:08}.seg"))
}

impl ChunkFiles {
    /// Opens the folder (creating it), scanning every file.
    pub fn open(dir: &Path) -> io::Result<ChunkFiles> {
        std::fs::create_dir_all(dir)?;
        let mut numbers: Vec<u32> = std::fs::read_dir(dir)?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
            .collect();
        numbers.sort_unstable();
        let mut files = ChunkFiles {
            dir: dir.to_owned(),
            files: BTreeMap::new(),
            chunks: HashMap::new(),
            dirty: false,
        };
        let last = numbers.last().copied();
        for n in numbers {
            files.scan(n, Some(n) == last)?;
        }
        for refs in files.chunks.values_mut() {
            refs.sort_by_key(|r| r.max_t);
        }
        Ok(files)
    }

    /// Reads one file's headers into the map; cuts a torn tail off the last.
    fn scan(&mut self, n: u32, last: bool) -> io::Result<()> {
        let path = file_name(&self.dir, n);
        let handle = OpenOptions::new().read(true).append(true).open(&path)?;
        let size = handle.metadata()?.len();
        let mut info = FileInfo {
            handle: handle.try_clone()?,
            size,
            last_min_t: 0,
            first_max_t: i64::MAX,
            newest_max_t: i64::MIN,
        };
        let mut reader = io::BufReader::with_capacity(64 << 10, handle);
        let mut offset = 0u64;
        while offset < size {
            let Some((header, head)) = read_header(&mut reader, info.last_min_t)? else {
                break;
            };
            let end = offset + head as u64 + u64::from(header.len);
            let Ok(start) = u32::try_from(offset) else {
                break;
            };
            if header.len > MAX_PAYLOAD || end > size {
                break;
            }
            reader.seek_relative(i64::from(header.len))?;
            self.chunks
                .entry(header.series)
                .or_default()
                .push(ChunkRef {
                    file: n,
                    offset: start,
                    head,
                    len: header.len,
                    min_t: header.min_t,
                    max_t: header.max_t,
                });
            info.last_min_t = header.min_t;
            info.first_max_t = info.first_max_t.min(header.max_t);
            info.newest_max_t = info.newest_max_t.max(header.max_t);
            offset = end;
        }
        if offset < size {
            if !last {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: corrupt record at byte {offset}", path.display()),
                ));
            }
            tracing::warn!(file = %path.display(), at = offset, "cutting a torn chunk record off the end");
            info.handle.set_len(offset)?;
            info.size = offset;
        }
        self.files.insert(n, info);
        Ok(())
    }

    pub fn append(&mut self, chunks: &[ClosedChunk]) -> io::Result<()> {
        for c in chunks {
            let len = u32::try_from(c.bytes.len())
                .ok()
                .filter(|l| *l <= MAX_PAYLOAD)
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "chunk too large"))?;
            let n = self.current_file(c.max_t)?;
            let info = self
                .files
                .get_mut(&n)
                .ok_or_else(|| io::Error::other("segment vanished"))?;
            let mut record = Vec::with_capacity(MAX_HEADER + c.bytes.len());
            put_varint(&mut record, u64::from(len));
            put_varint(&mut record, c.series);
            put_varint(&mut record, zigzag(c.min_t.wrapping_sub(info.last_min_t)));
            put_varint(&mut record, c.max_t.wrapping_sub(c.min_t) as u64);
            let mut crc = crc32fast::Hasher::new();
            crc.update(&record);
            crc.update(&c.bytes);
            record.extend_from_slice(&crc.finalize().to_le_bytes());
            let head = record.len() as u8;
            record.extend_from_slice(&c.bytes);
            let offset = u32::try_from(info.size)
                .map_err(|_| io::Error::other("segment file past 4 GiB"))?;
            if let Err(e) = info.handle.write_all(&record) {
                // Drop a partial record so the file stays readable.
                let _ = info.handle.set_len(u64::from(offset));
                return Err(e);
            }
            info.size += record.len() as u64;
            info.last_min_t = c.min_t;
            info.first_max_t = info.first_max_t.min(c.max_t);
            info.newest_max_t = info.newest_max_t.max(c.max_t);
            let refs = self.chunks.entry(c.series).or_default();
            let at = refs.partition_point(|r| r.max_t <= c.max_t);
            refs.insert(
                at,
                ChunkRef {
                    file: n,
                    offset,
                    head,
                    len,
                    min_t: c.min_t,
                    max_t: c.max_t,
                },
            );
            self.dirty = true;
        }
        Ok(())
    }

    /// The file to append a chunk with this max time to, starting a new one
    /// when the current is full or spans too long.
    fn current_file(&mut self, max_t: i64) -> io::Result<u32> {
        if let Some((&n, info)) = self.files.iter().next_back() {
            let span = max_t
                .saturating_sub(info.first_max_t)
                .max(info.newest_max_t.saturating_sub(max_t));
            if info.size < MAX_FILE_BYTES && (info.size == 0 || span <= MAX_FILE_SPAN_MS) {
                return Ok(n);
            }
        }
        // The file that stops being current is made durable now; `sync`
        // only has the current one to care about.
        if let Some(info) = self.files.values().next_back() {
            info.handle.sync_data()?;
        }
        let n = self.files.keys().next_back().map_or(1, |n| n + 1);
        let handle = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(file_name(&self.dir, n))?;
        self.files.insert(
            n,
            FileInfo {
                handle,
                size: 0,
                last_min_t: 0,
                first_max_t: i64::MAX,
                newest_max_t: i64::MIN,
            },
        );
        Ok(n)
    }

    /// Makes everything appended so far durable (before the WAL behind it goes).
    pub fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            if let Some(info) = self.files.values().next_back() {
                info.handle.sync_data()?;
            }
            // Earlier files were synced when they stopped being current.
            File::open(&self.dir)?.sync_all()?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Chunks of a series whose time range meets [mint, maxt], in time order.
    pub fn read(&self, series: SeriesId, mint: i64, maxt: i64) -> io::Result<Vec<Vec<u8>>> {
        let Some(refs) = self.chunks.get(&series) else {
            return Ok(Vec::new());
        };
        let from = refs.partition_point(|r| r.max_t < mint);
        let mut out = Vec::new();
        for r in &refs[from..] {
            if r.min_t > maxt {
                break;
            }
            out.push(self.read_one(r)?);
        }
        Ok(out)
    }

    fn read_one(&self, r: &ChunkRef) -> io::Result<Vec<u8>> {
        let info = self
            .files
            .get(&r.file)
            .ok_or_else(|| io::Error::other("segment file gone"))?;
        let head = usize::from(r.head);
        let mut record = vec![0u8; head + r.len as usize];
        info.handle
            .read_exact_at(&mut record, u64::from(r.offset))?;
        let payload = record.split_off(head);
        let (varints, stored) = record.split_at(head.saturating_sub(4));
        let mut crc = crc32fast::Hasher::new();
        crc.update(varints);
        crc.update(&payload);
        if stored != crc.finalize().to_le_bytes() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: checksum mismatch at byte {}",
                    file_name(&self.dir, r.file).display(),
                    r.offset
                ),
            ));
        }
        Ok(payload)
    }

    /// The newest chunk of every series, for seeding the head at start.
    pub fn newest(&self) -> impl Iterator<Item = (SeriesId, io::Result<Vec<u8>>)> + '_ {
        self.chunks
            .iter()
            .filter_map(|(id, refs)| refs.last().map(|r| (*id, self.read_one(r))))
    }

    /// Deletes every file whose chunks all end before `cutoff` (an empty
    /// file is kept); returns how many.
    pub fn delete_before(&mut self, cutoff: i64) -> io::Result<usize> {
        let old: Vec<u32> = self
            .files
            .iter()
            .filter(|(_, info)| info.size > 0 && info.newest_max_t < cutoff)
            .map(|(n, _)| *n)
            .collect();
        for n in &old {
            std::fs::remove_file(file_name(&self.dir, *n))?;
            self.files.remove(n);
        }
        if !old.is_empty() {
            self.chunks.retain(|_, refs| {
                refs.retain(|r| !old.contains(&r.file));
                !refs.is_empty()
            });
        }
        Ok(old.len())
    }

    /// Bytes of all segment files.
    pub fn bytes(&self) -> u64 {
        self.files.values().map(|f| f.size).sum()
    }
}

/// A record's header as read back.
struct Header {
    len: u32,
    series: SeriesId,
    min_t: i64,
    max_t: i64,
}

/// Reads one record header; None at a clean end of file or a torn header.
/// Returns the header and its length in bytes, crc included.
fn read_header(r: &mut impl Read, last_min_t: i64) -> io::Result<Option<(Header, u8)>> {
    let mut head = 0usize;
    let mut next = |head: &mut usize| -> io::Result<Option<u64>> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let mut byte = [0u8];
            if r.read(&mut byte)? == 0 {
                return Ok(None);
            }
            *head += 1;
            value |= u64::from(byte[0] & 0x7f) << shift;
            if byte[0] & 0x80 == 0 {
                return Ok(Some(value));
            }
        }
        Ok(None)
    };
    let (Some(len), Some(series), Some(min_delta), Some(span)) = (
        next(&mut head)?,
        next(&mut head)?,
        next(&mut head)?,
        next(&mut head)?,
    ) else {
        return Ok(None);
    };
    let mut crc = [0u8; 4];
    if r.read_exact(&mut crc).is_err() {
        return Ok(None);
    }
    let min_t = last_min_t.wrapping_add(unzigzag(min_delta));
    Ok(Some((
        Header {
            len: u32::try_from(len).unwrap_or(u32::MAX),
            series,
            min_t,
            max_t: min_t.wrapping_add(span as i64),
        },
        (head + 4) as u8,
    )))
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(series: SeriesId, min_t: i64, max_t: i64, fill: u8) -> ClosedChunk {
        ClosedChunk {
            series,
            min_t,
            max_t,
            bytes: vec![fill; 100],
        }
    }

    #[test]
    fn chunks_read_back_by_range_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = ChunkFiles::open(dir.path()).unwrap();
        files
            .append(&[
                chunk(1, 0, 100, 1),
                chunk(2, 0, 100, 2),
                chunk(1, 101, 200, 3),
            ])
            .unwrap();
        files.sync().unwrap();
        assert_eq!(files.read(1, 150, 160).unwrap(), vec![vec![3u8; 100]]);
        assert_eq!(files.read(1, 0, 1000).unwrap().len(), 2);
        drop(files);
        let files = ChunkFiles::open(dir.path()).unwrap();
        assert_eq!(
            files.read(1, 0, 1000).unwrap(),
            vec![vec![1u8; 100], vec![3u8; 100]]
        );
        assert_eq!(files.read(2, 0, 1000).unwrap(), vec![vec![2u8; 100]]);
        assert_eq!(files.newest().count(), 2);
    }

    #[test]
    fn a_torn_tail_is_cut_and_a_flipped_bit_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = ChunkFiles::open(dir.path()).unwrap();
        files
            .append(&[chunk(1, 0, 100, 1), chunk(1, 101, 200, 2)])
            .unwrap();
        drop(files);
        let path = file_name(dir.path(), 1);
        let len = std::fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 10).unwrap();
        let files = ChunkFiles::open(dir.path()).unwrap();
        assert_eq!(
            files.read(1, 0, 1000).unwrap().len(),
            1,
            "the torn record is gone"
        );
        drop(files);
        let mut bytes = std::fs::read(&path).unwrap();
        // A byte of the first record's payload (its header is short).
        bytes[20] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let files = ChunkFiles::open(dir.path()).unwrap();
        let err = files.read(1, 0, 1000).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
    }

    #[test]
    fn retention_deletes_whole_old_files_and_space_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = ChunkFiles::open(dir.path()).unwrap();
        let hour = 3_600_000;
        for h in 0..10 {
            files
                .append(&[chunk(1, h * hour, h * hour + 1000, h as u8)])
                .unwrap();
        }
        assert!(files.files.len() >= 4, "files roll every two hours of data");
        let before = files.bytes();
        let deleted = files.delete_before(6 * hour).unwrap();
        assert!(deleted >= 2);
        assert!(files.bytes() < before);
        let left = files.read(1, 0, i64::MAX).unwrap();
        assert!(left.iter().all(|c| c[0] >= 4), "only old chunks went");
        let on_disk: u64 = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.metadata().unwrap().len())
            .sum();
        assert_eq!(on_disk, files.bytes());
    }
}
