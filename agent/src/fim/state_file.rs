//! The file-integrity states kept across restarts: one JSON file,
//! `fim-state.json` in the agent's state directory, holding every watched
//! entry's path states. The monitor writes it after its first scan and
//! after every change it reports; at the next start the fresh scan is
//! compared with it, so a change made while the agent was stopped is
//! reported then.
//!
//! The file is rewritten whole and atomically: a temporary file next to
//! it, fsync, rename over the old one, fsync of the directory. A crash
//! leaves the old file or the new one, never half of one. It is one small
//! file rather than a database: sled stays behind the collector's storage
//! and the agent's spool.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::state::FileState;

/// The file's name in the state directory.
pub(crate) const FILE_NAME: &str = "fim-state.json";
/// Bumped when the layout changes; a file of another version is ignored.
const VERSION: u32 = 1;

/// One entry's kept states, by path.
pub(crate) type EntryStates = BTreeMap<PathBuf, FileState>;

/// Kept states by watched entry: its path and whether it is recursive (a
/// changed `recursive` makes it another entry, compared with nothing).
pub(crate) type Kept = BTreeMap<(PathBuf, bool), EntryStates>;

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StateFileError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a file-integrity state file of version {VERSION}: {detail}", path.display())]
    Invalid { path: PathBuf, detail: String },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Serialize, Deserialize)]
struct Layout {
    version: u32,
    entries: Vec<LayoutEntry>,
}

#[derive(Serialize, Deserialize)]
struct LayoutEntry {
    path: StoredPath,
    recursive: bool,
    files: Vec<LayoutFile>,
}

#[derive(Serialize, Deserialize)]
struct LayoutFile {
    path: StoredPath,
    state: FileState,
}

/// A path as text when it is UTF-8 (nearly always), as its bytes otherwise,
/// so that no path is lost or changed on the way through JSON.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum StoredPath {
    Text(String),
    Bytes(Vec<u8>),
}

impl From<&Path> for StoredPath {
    fn from(p: &Path) -> Self {
        match p.to_str() {
            Some(s) => StoredPath::Text(s.to_owned()),
            None => StoredPath::Bytes(p.as_os_str().as_bytes().to_vec()),
        }
    }
}

impl From<StoredPath> for PathBuf {
    fn from(p: StoredPath) -> Self {
        match p {
            StoredPath::Text(s) => PathBuf::from(s),
            StoredPath::Bytes(b) => PathBuf::from(std::ffi::OsString::from_vec(b)),
        }
    }
}

/// The state file of one state directory.
#[derive(Debug, Clone)]
pub(crate) struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub(crate) fn in_dir(dir: &Path) -> StateFile {
        StateFile {
            path: dir.join(FILE_NAME),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The kept states; none when there is no file yet (the first start).
    pub(crate) fn load(&self) -> Result<Option<Kept>, StateFileError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateFileError::Read {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let invalid = |detail: String| StateFileError::Invalid {
            path: self.path.clone(),
            detail,
        };
        let layout: Layout = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        if layout.version != VERSION {
            return Err(invalid(format!("version {}", layout.version)));
        }
        let mut kept = Kept::new();
        for entry in layout.entries {
            let files = entry
                .files
                .into_iter()
                .map(|f| (PathBuf::from(f.path), f.state))
                .collect();
            kept.insert((PathBuf::from(entry.path), entry.recursive), files);
        }
        Ok(Some(kept))
    }

    /// Replaces the file with these entries' states (path, recursive,
    /// states), creating the directory if need be.
    pub(crate) fn save<'a>(
        &self,
        entries: impl Iterator<Item = (&'a Path, bool, &'a EntryStates)>,
    ) -> Result<(), StateFileError> {
        let layout = Layout {
            version: VERSION,
            entries: entries
                .map(|(path, recursive, files)| LayoutEntry {
                    path: path.into(),
                    recursive,
                    files: files
                        .iter()
                        .map(|(p, s)| LayoutFile {
                            path: p.as_path().into(),
                            state: s.clone(),
                        })
                        .collect(),
                })
                .collect(),
        };
        let bytes = serde_json::to_vec(&layout).map_err(|e| StateFileError::Write {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        self.replace(&bytes)
            .map_err(|source| StateFileError::Write {
                path: self.path.clone(),
                source,
            })
    }

    fn replace(&self, bytes: &[u8]) -> std::io::Result<()> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{FILE_NAME}.tmp"));
        // Hashes of /etc/shadow and friends: for the agent's user only.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, &self.path)?;
        std::fs::File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fim::state::read_state;

    #[test]
    fn states_round_trip_through_the_file_and_no_temporary_file_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let watched = dir.path().join("watched");
        std::fs::create_dir(&watched).unwrap();
        std::fs::write(watched.join("hosts"), "127.0.0.1 localhost\n").unwrap();
        std::os::unix::fs::symlink("/etc", watched.join("link")).unwrap();
        let odd = watched.join(std::ffi::OsStr::from_bytes(b"bad\xffname"));
        std::fs::write(&odd, "x").unwrap();
        let states: EntryStates = ["hosts", "link"]
            .iter()
            .map(|n| watched.join(n))
            .chain([odd.clone()])
            .map(|p| {
                let s = read_state(&p, 1 << 20).unwrap();
                (p, s)
            })
            .collect();

        let file = StateFile::in_dir(&dir.path().join("state"));
        assert!(file.load().unwrap().is_none(), "no file yet");
        file.save([(watched.as_path(), true, &states)].into_iter())
            .unwrap();
        let kept = file.load().unwrap().unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[&(watched.clone(), true)], states);
        let names: Vec<_> = std::fs::read_dir(dir.path().join("state"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [FILE_NAME]);
        let mode = std::fs::metadata(file.path()).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );

        // Saving again replaces the whole file.
        file.save(std::iter::empty()).unwrap();
        assert!(file.load().unwrap().unwrap().is_empty());
    }

    #[test]
    fn a_damaged_or_foreign_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::in_dir(dir.path());
        std::fs::write(file.path(), "{\"version\": 1, \"entr").unwrap();
        let err = file.load().unwrap_err().to_string();
        assert!(err.contains(FILE_NAME), "{err}");
        std::fs::write(file.path(), "{\"version\": 99, \"entries\": []}").unwrap();
        let err = file.load().unwrap_err().to_string();
        assert!(err.contains("version 99"), "{err}");
    }
}
