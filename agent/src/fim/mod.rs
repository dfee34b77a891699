//! File integrity monitoring: the files an intruder or a careless change
//! would touch first (accounts, sudoers, sshd, cron, systemd units) are
//! watched with inotify (the `notify` crate), and every change of content
//! (SHA-256), mode, owner or existence becomes an agent event (kind
//! `file_integrity`) naming the path and the states before and after,
//! plus a count in `patrol_fim_events_total{path}`.
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
//! - The kept states are written to a file in the agent's state directory
//!   ([`state_file`]) after the first scan and after every change; at the
//!   next start the first scan is compared with them, and what changed
//!   while the agent was stopped is reported like any other change (the
//!   message says so).
//!
//! Hashing and directory walks block, so all of it runs on one dedicated
//! thread; it hands events to the async side through the bounded event
//! channel.
//!
//! An event leaves the agent's (in-memory) spool only once the collector
//! has acked it; one still queued when the agent stops is lost, while the
//! state file already holds the new state.

mod config;
mod state;
mod state_file;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};
use patrol_shared::model::{now_ms, AgentEvent, Family};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use self::config::{FimConfig, WatchPath};
use self::state::{diff, read_state, scan, Change, FileState};
use self::state_file::{EntryStates, StateFile};

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
    phase: watch::Receiver<Phase>,
}

/// Where the watch thread is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Starting,
    Watching,
    Stopped,
}

/// Says `Stopped` when the thread ends, however it ends.
struct StoppedOnDrop(watch::Sender<Phase>);

impl Drop for StoppedOnDrop {
    fn drop(&mut self) {
        self.0.send_replace(Phase::Stopped);
    }
}

/// Events queued by inotify before the thread reads them; past this the
/// thread rescans everything instead.
const QUEUE: usize = 4096;
/// Events sent per rescan; the rest are summed up in one more event.
const MAX_EVENTS_PER_SCAN: usize = 100;
/// How often the thread looks at the cancellation token.
const POLL: Duration = Duration::from_millis(100);

impl FileIntegrity {
    /// Sets the watches, then (on its own thread) takes the first states,
    /// reports what changed since the states kept in `state_dir` (when
    /// given), and reports changes until `cancel` fires. Without a
    /// `state_dir` the states live in memory only.
    pub fn start(
        config: &FimConfig,
        state_dir: Option<&Path>,
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
        let (phase_tx, phase) = watch::channel(Phase::Starting);
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
            state_file: state_dir.map(StateFile::in_dir),
            save_failing: false,
        };
        std::thread::Builder::new()
            .name("patrol-fim".into())
            .spawn(move || {
                let phase = StoppedOnDrop(phase_tx);
                monitor.ensure_watches();
                let offline = monitor.baseline();
                phase.0.send_replace(Phase::Watching);
                if monitor.report(offline) {
                    monitor.save();
                    monitor.run(&rx, &overflow, &cancel);
                }
            })?;
        Ok(FileIntegrity { counts, phase })
    }

    /// Waits until the first states are taken: changes after this are
    /// reported.
    pub async fn ready(&self) {
        let mut phase = self.phase.clone();
        let _ = phase.wait_for(|p| *p >= Phase::Watching).await;
    }

    /// Waits until the watch has stopped (after `cancel` fired): its last
    /// report is sent and its states are saved.
    pub async fn stopped(&self) {
        let mut phase = self.phase.clone();
        let _ = phase.wait_for(|p| *p == Phase::Stopped).await;
    }

    /// `patrol_fim_events_total{path}` and `patrol_fim_files{path}`.
    pub fn families(&self) -> Vec<Family> {
        let Ok(counts) = self.counts.lock() else {
            return Vec::new();
        };
        let mut changes = Family::counter(
            "patrol_fim_events_total",
            "File-integrity events (changes of content, mode, owner, creation, deletion) below a watched path.",
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
    state_file: Option<StateFile>,
    /// The last save failed (logged once until one succeeds).
    save_failing: bool,
}

/// Appended to the message of a change found at start.
const WHILE_STOPPED: &str = " (while the agent was stopped)";

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

    /// Takes the first states; returns the changes since the kept ones
    /// (none on a first start), to be reported before the new states are
    /// saved.
    fn baseline(&mut self) -> Vec<(String, String)> {
        let mut kept = self.load_kept();
        let mut total = 0;
        let mut changes = Vec::new();
        for e in &mut self.entries {
            e.files = scan(&e.path, e.recursive, self.max_hash, self.max_files);
            total += e.files.len();
            if e.files.is_empty() {
                debug!(path = %e.path.display(), "watched path does not exist (yet)");
            }
            // An entry not in the file is new to the watch: nothing to compare.
            if let Some(before) = kept.remove(&(e.path.clone(), e.recursive)) {
                for (path, change) in differences(&before, &e.files) {
                    let message = change.describe(&path) + WHILE_STOPPED;
                    changes.push((e.label(), message));
                }
            }
        }
        self.update_file_counts();
        info!(
            paths = self.entries.len(),
            files = total,
            changed_while_stopped = changes.len(),
            "file integrity watch started"
        );
        changes
    }

    /// The states of the last run; empty when there are none or they
    /// cannot be read (then the first scan starts afresh).
    fn load_kept(&self) -> state_file::Kept {
        let Some(file) = &self.state_file else {
            info!("no state directory: file-integrity states are kept in memory only");
            return state_file::Kept::new();
        };
        match file.load() {
            Ok(Some(kept)) => kept,
            Ok(None) => {
                info!(file = %file.path().display(), "no file-integrity states kept yet; first scan");
                state_file::Kept::new()
            }
            Err(e) => {
                warn!(error = %e, "file-integrity states not read; changes made while the agent was stopped are not reported this time");
                state_file::Kept::new()
            }
        }
    }

    /// Writes every entry's states to the state file, if there is one.
    fn save(&mut self) {
        let Some(file) = &self.state_file else {
            return;
        };
        let entries = self
            .entries
            .iter()
            .map(|e| (e.path.as_path(), e.recursive, &e.files));
        match file.save(entries) {
            Ok(()) if self.save_failing => {
                info!(file = %file.path().display(), "file-integrity states saved again");
                self.save_failing = false;
            }
            Ok(()) => {}
            Err(e) if !self.save_failing => {
                warn!(error = %e, "file-integrity states not saved; a change made while the agent is stopped may go unreported");
                self.save_failing = true;
            }
            Err(_) => {}
        }
    }

    fn update_file_counts(&self) {
        if let Ok(mut c) = self.counts.lock() {
            for e in &self.entries {
                c.files.insert(e.label(), e.files.len());
                // From the start, so that the first change is an increase
                // of a series that exists (what `increase()` needs).
                c.changes.entry(e.label()).or_insert(0);
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
            // Once stopping, nothing more is read: a change from now on
            // is for the next start to find.
            if due && !cancel.is_cancelled() {
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
        let changed = !changes.is_empty();
        // Saved only once reported: if the agent is going away and the
        // report fails, the next start finds the change again.
        let reported = self.report(changes);
        if reported && changed {
            self.save();
        }
        reported
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
                "and {extra} more file changes in the same burst (see patrol_fim_events_total)"
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

/// Each path whose state differs between `before` and `after`, in order.
fn differences(before: &EntryStates, after: &EntryStates) -> Vec<(PathBuf, Change)> {
    let keys: BTreeSet<&PathBuf> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter_map(|k| diff(before.get(k), after.get(k)).map(|c| (k.clone(), c)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
