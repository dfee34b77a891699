//! What file integrity compares: each watched file's type, mode, owner and
//! SHA-256 (a symlink's target instead of a hash), taken without following
//! links, and the difference between two such states as people read it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::Metadata;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The state of one path (kept across restarts by [`super::state_file`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileState {
    pub kind: FileKind,
    /// Permission bits, setuid/setgid/sticky included.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Nanoseconds; stands in for the content when it cannot be hashed.
    pub mtime_ns: i128,
    /// Hex SHA-256 of a regular file's content; none when it could not be
    /// read (permissions) or is over the size limit.
    pub sha256: Option<String>,
    /// Where a symlink points.
    pub link: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FileKind {
    File,
    Directory,
    Symlink,
    Other,
}

impl FileKind {
    fn as_str(self) -> &'static str {
        match self {
            FileKind::File => "file",
            FileKind::Directory => "directory",
            FileKind::Symlink => "symlink",
            FileKind::Other => "special file",
        }
    }
}

/// Reads a path's state; none when it does not exist (or cannot be
/// looked at, which for this purpose is the same).
pub(crate) fn read_state(path: &Path, max_hash_bytes: u64) -> Option<FileState> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    Some(state_of(path, &meta, max_hash_bytes))
}

fn state_of(path: &Path, meta: &Metadata, max_hash_bytes: u64) -> FileState {
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        FileKind::File
    } else if ft.is_dir() {
        FileKind::Directory
    } else if ft.is_symlink() {
        FileKind::Symlink
    } else {
        FileKind::Other
    };
    let sha256 = (kind == FileKind::File && meta.len() <= max_hash_bytes)
        .then(|| hash_file(path))
        .flatten();
    let link = (kind == FileKind::Symlink)
        .then(|| std::fs::read_link(path).ok())
        .flatten()
        .map(|t| t.display().to_string());
    FileState {
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        size: meta.len(),
        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        sha256,
        link,
    }
}

/// Hex SHA-256 of a file, streamed.
pub(crate) fn hash_file(path: &Path) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => ctx.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    let mut hex = String::with_capacity(64);
    for b in ctx.finish().as_ref() {
        let _ = write!(hex, "{b:02x}");
    }
    Some(hex)
}

/// Every path of a watch entry and its state: the entry itself, and for a
/// directory its children (all descendants when `recursive`), links not
/// followed, at most `max_files` paths.
pub(crate) fn scan(
    root: &Path,
    recursive: bool,
    max_hash_bytes: u64,
    max_files: usize,
) -> BTreeMap<PathBuf, FileState> {
    let mut out = BTreeMap::new();
    let Some(state) = read_state(root, max_hash_bytes) else {
        return out;
    };
    let is_dir = state.kind == FileKind::Directory;
    out.insert(root.to_owned(), state);
    if is_dir {
        walk(root, recursive, max_hash_bytes, max_files, 0, &mut out);
    }
    out
}

/// Deep enough for any config tree; a loop of bind mounts stops here.
const MAX_DEPTH: usize = 16;

fn walk(
    dir: &Path,
    recursive: bool,
    max_hash_bytes: u64,
    max_files: usize,
    depth: usize,
    out: &mut BTreeMap<PathBuf, FileState>,
) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    names.sort();
    for path in names {
        if out.len() >= max_files {
            return;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let state = state_of(&path, &meta, max_hash_bytes);
        let descend = recursive && state.kind == FileKind::Directory && depth < MAX_DEPTH;
        out.insert(path.clone(), state);
        if descend {
            walk(&path, recursive, max_hash_bytes, max_files, depth + 1, out);
        }
    }
}

/// How a path changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    Created(FileState),
    Deleted(FileState),
    Modified { before: FileState, after: FileState },
}

/// The change between two states of a path, if any. Directories change
/// size and time whenever an entry is added; only their type, mode and
/// owner count.
pub(crate) fn diff(before: Option<&FileState>, after: Option<&FileState>) -> Option<Change> {
    match (before, after) {
        (None, None) => None,
        (None, Some(a)) => Some(Change::Created(a.clone())),
        (Some(b), None) => Some(Change::Deleted(b.clone())),
        (Some(b), Some(a)) => {
            let same = b.kind == a.kind
                && b.mode == a.mode
                && b.uid == a.uid
                && b.gid == a.gid
                && b.link == a.link
                && (a.kind != FileKind::File || same_content(b, a));
            (!same).then(|| Change::Modified {
                before: b.clone(),
                after: a.clone(),
            })
        }
    }
}

fn same_content(b: &FileState, a: &FileState) -> bool {
    match (&b.sha256, &a.sha256) {
        (Some(x), Some(y)) => x == y,
        // Unhashable on either side: size and modification time decide.
        _ => b.size == a.size && b.mtime_ns == a.mtime_ns,
    }
}

impl Change {
    /// One line naming the path and everything that changed, with the
    /// hashes, modes and owners before and after.
    pub(crate) fn describe(&self, path: &Path) -> String {
        let path = path.display();
        match self {
            Change::Created(a) => format!("{path} created: {}", summary(a)),
            Change::Deleted(b) => format!("{path} deleted (was {})", summary(b)),
            Change::Modified {
                before: b,
                after: a,
            } => {
                let mut what = Vec::new();
                if b.kind != a.kind {
                    what.push(format!("type {} → {}", b.kind.as_str(), a.kind.as_str()));
                }
                if a.kind == FileKind::File && b.kind == FileKind::File && !same_content(b, a) {
                    what.push(match (&b.sha256, &a.sha256) {
                        (Some(x), Some(y)) => format!("content sha256 {x} → {y}"),
                        _ => format!(
                            "content (size {} → {} bytes; not hashed: unreadable or too large)",
                            b.size, a.size
                        ),
                    });
                }
                if b.link != a.link {
                    what.push(format!(
                        "link target {} → {}",
                        b.link.as_deref().unwrap_or("-"),
                        a.link.as_deref().unwrap_or("-")
                    ));
                }
                if b.mode != a.mode {
                    what.push(format!("mode {:04o} → {:04o}", b.mode, a.mode));
                }
                if (b.uid, b.gid) != (a.uid, a.gid) {
                    what.push(format!("owner {}:{} → {}:{}", b.uid, b.gid, a.uid, a.gid));
                }
                format!("{path} modified: {}", what.join("; "))
            }
        }
    }
}

fn summary(s: &FileState) -> String {
    let mut text = s.kind.as_str().to_owned();
    if let Some(h) = &s.sha256 {
        let _ = write!(text, ", sha256 {h}");
    }
    if let Some(l) = &s.link {
        let _ = write!(text, ", → {l}");
    }
    let _ = write!(text, ", mode {:04o}, owner {}:{}", s.mode, s.uid, s.gid);
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const MAX: u64 = 1 << 20;

    #[test]
    fn hashes_are_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("abc");
        std::fs::write(&f, "abc").unwrap();
        assert_eq!(
            hash_file(&f).as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
    }

    #[test]
    fn content_mode_and_creation_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("hosts");
        std::fs::write(&f, "127.0.0.1 localhost\n").unwrap();
        let before = read_state(&f, MAX).unwrap();
        assert_eq!(diff(Some(&before), Some(&before)), None);

        std::fs::write(&f, "10.0.0.9 localhost\n").unwrap();
        let edited = read_state(&f, MAX).unwrap();
        let change = diff(Some(&before), Some(&edited)).unwrap();
        let text = change.describe(&f);
        assert!(text.contains("modified: content sha256 "), "{text}");
        assert!(text.contains(before.sha256.as_deref().unwrap()), "{text}");
        assert!(text.contains(edited.sha256.as_deref().unwrap()), "{text}");

        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
        let opened = read_state(&f, MAX).unwrap();
        let text = diff(Some(&edited), Some(&opened)).unwrap().describe(&f);
        assert!(
            text.contains("modified: mode ") && text.ends_with(" → 0666"),
            "{text}"
        );
        assert!(!text.contains("content"), "{text}");

        let text = diff(None, Some(&opened)).unwrap().describe(&f);
        assert!(text.contains("created: file, sha256 "), "{text}");
        let text = diff(Some(&opened), None).unwrap().describe(&f);
        assert!(text.contains("deleted (was file"), "{text}");
    }

    #[test]
    fn directories_change_only_by_type_mode_and_owner() {
        let dir = tempfile::tempdir().unwrap();
        let before = read_state(dir.path(), MAX).unwrap();
        std::fs::write(dir.path().join("new"), "x").unwrap();
        let after = read_state(dir.path(), MAX).unwrap();
        assert_eq!(diff(Some(&before), Some(&after)), None);
    }

    #[test]
    fn unhashable_files_compare_by_size_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("big");
        std::fs::write(&f, "0123456789").unwrap();
        let before = read_state(&f, 4).unwrap();
        assert_eq!(before.sha256, None);
        std::fs::write(&f, "0123456789abc").unwrap();
        let after = read_state(&f, 4).unwrap();
        let text = diff(Some(&before), Some(&after)).unwrap().describe(&f);
        assert!(text.contains("size 10 → 13 bytes"), "{text}");
    }

    #[test]
    fn scans_are_bounded_and_do_not_follow_links() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("a/b")).unwrap();
        std::fs::write(d.join("a/b/deep"), "x").unwrap();
        std::fs::write(d.join("top"), "y").unwrap();
        std::os::unix::fs::symlink("/etc", d.join("link")).unwrap();
        let flat = scan(d, false, MAX, 100);
        assert!(flat.contains_key(&d.join("top")));
        assert!(flat.contains_key(&d.join("a")));
        assert!(!flat.contains_key(&d.join("a/b/deep")));
        assert_eq!(flat[&d.join("link")].link.as_deref(), Some("/etc"));
        let deep = scan(d, true, MAX, 100);
        assert!(deep.contains_key(&d.join("a/b/deep")));
        let link = d.join("link");
        assert!(!deep.keys().any(|k| k.starts_with(&link) && *k != link));
        assert_eq!(scan(d, true, MAX, 2).len(), 2);
        assert!(scan(&d.join("missing"), true, MAX, 100).is_empty());
    }
}
