//! File integrity monitoring: the files an intruder or a careless change
//! would touch first (accounts, sudoers, sshd, cron, systemd units) are
//! watched with inotify (the `notify` crate), and every change of content
//! (SHA-256), mode, owner or existence becomes an agent event (kind
//! `file_integrity`) naming the path and the states before and after,
//! plus a count in `patrol_fim_changes_total{path}`.
//!
//! How it stays correct:
//! - Each watched path's *parent* directory is watched too, so an editor
//!   that writes a new file and renames it over the old one, and a file
//!   deleted and created again, are both seen: inotify watches on the
//!   file itself would be lost with its inode.
//! - Events only mark paths dirty; once they have been quiet for
//!   `debounce` (or at most three times that after the first), the dirty
//!   paths are read again and compared with the kept states. A burst of
//!   writes is one change, and what is reported is what is on disk.
//! - The watches are set before the first scan, so nothing between the
//!   two is missed; when inotify's queue overflows, everything is rescanned.
//!
//! Hashing and directory walks block, so all of it runs on one dedicated
//! thread; it hands events to the async side through the bounded event
//! channel. The kept states live in memory: changes made while the agent
//! is stopped are not reported yet.

mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};
use patrol_shared::config as cfg;
use patrol_shared::model::{now_ms, AgentEvent, Family};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use self::state::{diff, read_state, scan, FileState};

/// `[fim]` of the agent config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FimConfig {
    pub enabled: bool,
    pub paths: Vec<WatchPath>,
    /// Quiet time after a change before the path is read again.
    #[serde(with = "cfg::duration")]
    pub debounce: Duration,
    /// Larger files are not hashed; their size and modification time
    /// stand in for the content.
    #[serde(with = "cfg::bytes")]
    pub max_file_bytes: usize,
    /// Paths kept per watched entry, at most.
    pub max_files: usize,
}

/// One watched path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchPath {
    pub path: PathBuf,
    /// For a directory: watch everything below it, not only its entries.
    #[serde(default)]
    pub recursive: bool,
}

/// The files issue 5 names, as a fresh install has them.
const DEFAULT_PATHS: &[(&str, bool)] = &[
    ("/etc/passwd", false),
    ("/etc/shadow", false),
    ("/etc/group", false),
    ("/etc/gshadow", false),
    ("/etc/sudoers", false),
    ("/etc/sudoers.d", false),
    ("/etc/ssh/sshd_config", false),
    ("/etc/crontab", false),
    ("/etc/cron.d", false),
    ("/etc/hosts", false),
    ("/etc/systemd/system", true),
];

impl Default for FimConfig {
    fn default() -> Self {
        FimConfig {
            enabled: true,
            paths: DEFAULT_PATHS
                .iter()
                .map(|(p, recursive)| WatchPath {
                    path: PathBuf::from(p),
                    recursive: *recursive,
                })
                .collect(),
            debounce: Duration::from_millis(300),
            max_file_bytes: 64 << 20,
            max_files: 10_000,
        }
    }
}

impl FimConfig {
    /// Every problem, each naming its key.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        for (i, w) in self.paths.iter().enumerate() {
            if !w.path.is_absolute() {
                p.push(format!(
                    "fim.paths[{i}].path: {} is not an absolute path",
                    w.path.display()
                ));
            }
            if self.paths[..i].iter().any(|o| o.path == w.path) {
                p.push(format!(
                    "fim.paths[{i}].path: {} is listed twice",
                    w.path.display()
                ));
            }
        }
        if self.debounce < Duration::from_millis(10) || self.debounce > Duration::from_secs(1) {
            p.push("fim.debounce: between 10ms and 1s (changes are reported within 2s)".into());
        }
        if self.max_files == 0 {
            p.push("fim.max_files: at least 1".into());
        }
        p
    }
}

/// Why the watch could not start.
#[derive(Debug, thiserror::Error)]
pub enum FimError {
    #[error("cannot start the file watcher (inotify): {0}")]
    Watcher(#[from] notify::Error),
    #[error("cannot start the file-integrity thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Figures for the metrics, per configured path.
#[derive(Debug, Default)]
struct Counts {
    changes: BTreeMap<String, u64>,
    files: BTreeMap<String, usize>,
}

/// The running watch.
pub struct FileIntegrity {
    counts: Arc<Mutex<Counts>>,
    ready: watch::Receiver<bool>,
}

/// Events queued by inotify before the thread reads them; past this the
/// thread rescans everything instead.
const QUEUE: usize = 4096;
/// Events sent per rescan; the rest are summed up in one more event.
const MAX_EVENTS_PER_SCAN: usize = 100;
/// How often the thread looks at the cancellation token.
const POLL: Duration = Duration::from_millis(100);

impl FileIntegrity {
    /// Sets the watches, then (on its own thread) takes the first states
    /// and reports changes until `cancel` fires.
    pub fn start(
        config: &FimConfig,
        events: mpsc::Sender<AgentEvent>,
        cancel: CancellationToken,
    ) -> Result<FileIntegrity, FimError> {
        let (tx, rx) = std_mpsc::sync_channel(QUEUE);
        let overflow = Arc::new(AtomicBool::new(false));
        let flag = overflow.clone();
        let watcher = notify::recommended_watcher(move |event| {
            if let Err(std_mpsc::TrySendError::Full(_)) = tx.try_send(event) {
                flag.store(true, Ordering::Relaxed);
            }
        })?;
        let counts = Arc::new(Mutex::new(Counts::default()));
        let (ready_tx, ready) = watch::channel(false);
        let mut monitor = Monitor {
            entries: config
                .paths
                .iter()
                .map(|w| Entry {
                    path: w.path.clone(),
                    recursive: w.recursive,
                    files: BTreeMap::new(),
                })
                .collect(),
            watcher,
            watched: BTreeMap::new(),
            max_hash: config.max_file_bytes as u64,
            max_files: config.max_files,
            debounce: config.debounce,
            events,
            counts: counts.clone(),
        };
        std::thread::Builder::new()
            .name("patrol-fim".into())
            .spawn(move || {
                monitor.ensure_watches();
                monitor.baseline();
                ready_tx.send_replace(true);
                monitor.run(&rx, &overflow, &cancel);
            })?;
        Ok(FileIntegrity { counts, ready })
    }

    /// Waits until the first states are taken: changes after this are
    /// reported.
    pub async fn ready(&self) {
        let mut ready = self.ready.clone();
        let _ = ready.wait_for(|r| *r).await;
    }

    /// `patrol_fim_changes_total{path}` and `patrol_fim_files{path}`.
    pub fn families(&self) -> Vec<Family> {
        let Ok(counts) = self.counts.lock() else {
            return Vec::new();
        };
        let mut changes = Family::counter(
            "patrol_fim_changes_total",
            "Changes seen below a watched path (content, mode, owner, creation, deletion).",
        );
        for (path, n) in &counts.changes {
            changes.push(&[("path", path)], *n as f64);
        }
        let mut files = Family::gauge(
            "patrol_fim_files",
            "Paths whose state is kept below a watched path.",
        );
        for (path, n) in &counts.files {
            files.push(&[("path", path)], *n as f64);
        }
        vec![changes, files]
    }
}

/// One configured path and the states kept below it.
struct Entry {
    path: PathBuf,
    recursive: bool,
    files: BTreeMap<PathBuf, FileState>,
}

impl Entry {
    /// Whether a change at `p` concerns this entry.
    fn covers(&self, p: &Path) -> bool {
        p == self.path
            || p.parent() == Some(self.path.as_path())
            || (self.recursive && p.starts_with(&self.path))
    }

    fn label(&self) -> String {
        self.path.display().to_string()
    }
}

struct Monitor {
    entries: Vec<Entry>,
    watcher: notify::RecommendedWatcher,
    /// Directories watched now, and whether recursively.
    watched: BTreeMap<PathBuf, bool>,
    max_hash: u64,
    max_files: usize,
    debounce: Duration,
    events: mpsc::Sender<AgentEvent>,
    counts: Arc<Mutex<Counts>>,
}

impl Monitor {
    /// The directories that should be watched: each entry's parent, and
    /// each entry that is a directory.
    fn wanted_watches(&self) -> BTreeMap<PathBuf, bool> {
        let mut wanted: BTreeMap<PathBuf, bool> = BTreeMap::new();
        for e in &self.entries {
            if let Some(parent) = e.path.parent() {
                wanted.entry(parent.to_owned()).or_insert(false);
            }
            if e.path.is_dir() {
                let r = wanted.entry(e.path.clone()).or_insert(false);
                *r |= e.recursive;
            }
        }
        wanted
    }

    /// Adds watches for directories that (re)appeared; forgets those gone.
    fn ensure_watches(&mut self) {
        for (dir, recursive) in self.wanted_watches() {
            let exists = dir.is_dir();
            match (self.watched.get(&dir), exists) {
                (Some(r), true) if *r == recursive => {}
                (_, true) => {
                    let mode = if recursive {
                        RecursiveMode::Recursive
                    } else {
                        RecursiveMode::NonRecursive
                    };
                    match self.watcher.watch(&dir, mode) {
                        Ok(()) => {
                            self.watched.insert(dir, recursive);
                        }
                        Err(e) => warn!(path = %dir.display(), error = %e, "cannot watch"),
                    }
                }
                (Some(_), false) => {
                    let _ = self.watcher.unwatch(&dir);
                    self.watched.remove(&dir);
                }
                (None, false) => {}
            }
        }
    }

    fn baseline(&mut self) {
        let mut total = 0;
        for e in &mut self.entries {
            e.files = scan(&e.path, e.recursive, self.max_hash, self.max_files);
            total += e.files.len();
            if e.files.is_empty() {
                debug!(path = %e.path.display(), "watched path does not exist (yet)");
            }
        }
        self.update_file_counts();
        info!(
            paths = self.entries.len(),
            files = total,
            "file integrity watch started"
        );
    }

    fn update_file_counts(&self) {
        if let Ok(mut c) = self.counts.lock() {
            for e in &self.entries {
                c.files.insert(e.label(), e.files.len());
            }
        }
    }

    fn run(
        &mut self,
        rx: &std_mpsc::Receiver<notify::Result<notify::Event>>,
        overflow: &AtomicBool,
        cancel: &CancellationToken,
    ) {
        let mut dirty: BTreeSet<(usize, PathBuf)> = BTreeSet::new();
        let mut first: Option<Instant> = None;
        let mut last = Instant::now();
        while !cancel.is_cancelled() {
            match rx.recv_timeout(POLL) {
                Ok(Ok(event)) => {
                    let rescan_all = event.need_rescan();
                    for p in &event.paths {
                        self.mark(p, &mut dirty);
                    }
                    if rescan_all {
                        overflow.store(true, Ordering::Relaxed);
                    }
                    last = Instant::now();
                    if !dirty.is_empty() {
                        first.get_or_insert(last);
                    }
                }
                Ok(Err(e)) => debug!(error = %e, "file watch error"),
                Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
            }
            if overflow.swap(false, Ordering::Relaxed) {
                for (i, e) in self.entries.iter().enumerate() {
                    dirty.insert((i, e.path.clone()));
                }
                first.get_or_insert_with(Instant::now);
            }
            let due = first.is_some_and(|f| {
                last.elapsed() >= self.debounce || f.elapsed() >= self.debounce * 3
            });
            if due {
                let batch = std::mem::take(&mut dirty);
                first = None;
                if !self.rescan(batch) {
                    return;
                }
                self.ensure_watches();
            }
        }
    }

    fn mark(&self, p: &Path, dirty: &mut BTreeSet<(usize, PathBuf)>) {
        for (i, e) in self.entries.iter().enumerate() {
            if e.covers(p) {
                dirty.insert((i, p.to_owned()));
            }
        }
    }

    /// Reads the dirty paths again and reports what changed; false when
    /// the agent is gone.
    fn rescan(&mut self, dirty: BTreeSet<(usize, PathBuf)>) -> bool {
        let mut changes = Vec::new();
        for (i, p) in dirty {
            let Some(e) = self.entries.get_mut(i) else {
                continue;
            };
            let fresh = if p == e.path {
                scan(&e.path, e.recursive, self.max_hash, self.max_files)
            } else if e.recursive {
                scan(&p, true, self.max_hash, self.max_files)
            } else {
                read_state(&p, self.max_hash)
                    .map(|s| BTreeMap::from([(p.clone(), s)]))
                    .unwrap_or_default()
            };
            let in_scope = |k: &Path| {
                k == p || (p == e.path && e.covers(k)) || (e.recursive && k.starts_with(&p))
            };
            let mut keys: BTreeSet<PathBuf> =
                e.files.keys().filter(|k| in_scope(k)).cloned().collect();
            keys.extend(fresh.keys().cloned());
            for k in keys {
                let after = fresh.get(&k);
                let Some(change) = diff(e.files.get(&k), after) else {
                    continue;
                };
                match after {
                    Some(s) if e.files.contains_key(&k) || e.files.len() < self.max_files => {
                        e.files.insert(k.clone(), s.clone());
                    }
                    Some(_) => continue,
                    None => {
                        e.files.remove(&k);
                    }
                }
                changes.push((e.label(), change.describe(&k)));
            }
        }
        self.update_file_counts();
        self.report(changes)
    }

    fn report(&self, changes: Vec<(String, String)>) -> bool {
        if let Ok(mut c) = self.counts.lock() {
            for (label, _) in &changes {
                *c.changes.entry(label.clone()).or_default() += 1;
            }
        }
        let extra = changes.len().saturating_sub(MAX_EVENTS_PER_SCAN);
        let mut messages: Vec<String> = changes
            .into_iter()
            .take(MAX_EVENTS_PER_SCAN)
            .map(|(_, m)| m)
            .collect();
        if extra > 0 {
            messages.push(format!(
                "and {extra} more file changes in the same burst (see patrol_fim_changes_total)"
            ));
        }
        for message in messages {
            info!(%message, "file integrity");
            let event = AgentEvent {
                timestamp_ms: now_ms(),
                kind: "file_integrity".into(),
                message,
            };
            // Called on the FIM thread, never inside the runtime.
            if self.events.blocking_send(event).is_err() {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_files_issue_5_names() {
        let c = FimConfig::default();
        assert!(c.validate().is_empty());
        assert!(c.enabled);
        let recursive: Vec<_> = c
            .paths
            .iter()
            .filter(|p| p.recursive)
            .map(|p| p.path.clone())
            .collect();
        assert_eq!(recursive, vec![PathBuf::from("/etc/systemd/system")]);
        assert_eq!(c.paths.len(), 11);
    }

    #[test]
    fn bad_paths_are_reported() {
        let c = FimConfig {
            paths: vec![
                WatchPath {
                    path: "etc/passwd".into(),
                    recursive: false,
                },
                WatchPath {
                    path: "/etc/hosts".into(),
                    recursive: false,
                },
                WatchPath {
                    path: "/etc/hosts".into(),
                    recursive: true,
                },
            ],
            debounce: Duration::from_secs(5),
            ..FimConfig::default()
        };
        let p = c.validate().join("\n");
        assert!(p.contains("fim.paths[0].path"), "{p}");
        assert!(p.contains("fim.paths[2].path"), "{p}");
        assert!(p.contains("fim.debounce"), "{p}");
    }

    #[test]
    fn entries_cover_themselves_their_children_and_below_when_recursive() {
        let flat = Entry {
            path: "/etc/cron.d".into(),
            recursive: false,
            files: BTreeMap::new(),
        };
        assert!(flat.covers(Path::new("/etc/cron.d")));
        assert!(flat.covers(Path::new("/etc/cron.d/backup")));
        assert!(!flat.covers(Path::new("/etc/cron.d/sub/x")));
        assert!(!flat.covers(Path::new("/etc/crontab")));
        let deep = Entry {
            recursive: true,
            ..flat
        };
        assert!(deep.covers(Path::new("/etc/cron.d/sub/x")));
        let file = Entry {
            path: "/etc/passwd".into(),
            recursive: false,
            files: BTreeMap::new(),
        };
        assert!(file.covers(Path::new("/etc/passwd")));
        assert!(!file.covers(Path::new("/etc/passwd-")));
        assert!(!file.covers(Path::new("/etc/group")));
    }
}
