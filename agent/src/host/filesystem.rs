//! Filesystems: size, free and available bytes, inodes, read-only, per
//! mount, from `statfs` on each mount point listed in /proc/1/mounts.
//!
//! Pseudo filesystems and system mount points are skipped as node_exporter
//! skips them. `statfs` on a dead network mount can block for minutes, so
//! the calls run on a worker thread and the cycle waits at most
//! `filesystem_timeout` for each: a mount that does not answer is reported
//! with `node_filesystem_device_error 1`, the worker is left behind, and the
//! mount is skipped until its call returns.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use patrol_shared::model::Family;

use super::{read_into, HostConfig};

/// node_exporter's default `--collector.filesystem.fs-types-exclude`.
pub const DEFAULT_FS_TYPES_EXCLUDE: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "fusectl",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "procfs",
    "pstore",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "erofs",
    "sysfs",
    "tracefs",
];

/// node_exporter's default `--collector.filesystem.mount-points-exclude`,
/// `^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)`.
pub const DEFAULT_MOUNT_POINTS_EXCLUDE: &[&str] = &[
    "/dev",
    "/proc",
    "/run/credentials/",
    "/sys",
    "/var/lib/docker/",
    "/var/lib/containers/storage/",
];

/// One line of /proc/mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub device: String,
    pub mount_point: String,
    pub fs_type: String,
    pub read_only: bool,
}

/// Parses /proc/mounts text, decoding the kernel's octal escapes.
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_ascii_whitespace();
            let (device, mount_point, fs_type, options) =
                (f.next()?, f.next()?, f.next()?, f.next()?);
            Some(Mount {
                device: unescape(device),
                mount_point: unescape(mount_point),
                fs_type: fs_type.to_owned(),
                read_only: options.split(',').any(|o| o == "ro"),
            })
        })
        .collect()
}

/// `\040` → space, and so on for any three octal digits.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                let v = u32::from(d[0] - b'0') * 64
                    + u32::from(d[1] - b'0') * 8
                    + u32::from(d[2] - b'0');
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a mount point is excluded by the prefix list.
fn mount_point_excluded(mount_point: &str, exclude: &[String]) -> bool {
    exclude.iter().any(|e| {
        if e.ends_with('/') {
            // Only what is below it.
            mount_point.len() > e.len() && mount_point.starts_with(e.as_str())
        } else {
            mount_point == e
                || mount_point
                    .strip_prefix(e.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        }
    })
}

/// Figures from one `statfs`.
#[derive(Debug, Clone, Copy)]
struct Usage {
    size: f64,
    free: f64,
    avail: f64,
    files: f64,
    files_free: f64,
}

type Reply = (PathBuf, Result<Usage, String>);

/// The thread that makes the `statfs` calls.
struct Worker {
    requests: SyncSender<PathBuf>,
    replies: Receiver<Reply>,
}

impl Worker {
    fn spawn(stuck: Arc<Mutex<HashSet<PathBuf>>>, statfs: StatFn) -> Option<Worker> {
        let (requests, rx) = sync_channel::<PathBuf>(1);
        let (tx, replies) = sync_channel::<Reply>(1);
        std::thread::Builder::new()
            .name("patrol-statfs".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                for path in rx {
                    let usage = statfs(&path);
                    // Clear and reply under the lock, so the collector's
                    // timeout cannot slip between the two (see `collect`).
                    let mut stuck = stuck.lock().unwrap_or_else(|p| p.into_inner());
                    stuck.remove(&path);
                    if tx.send((path, usage)).is_err() {
                        return;
                    }
                }
            })
            .ok()?;
        Some(Worker { requests, replies })
    }
}

/// The call that may hang; a parameter so tests can stand in a slow one.
type StatFn = fn(&Path) -> Result<Usage, String>;

fn statfs(path: &Path) -> Result<Usage, String> {
    let s = rustix::fs::statvfs(path).map_err(|e| format!("statfs {}: {e}", path.display()))?;
    // node_exporter multiplies by the block size (f_bsize), so do we.
    let block = s.f_bsize as f64;
    Ok(Usage {
        size: s.f_blocks as f64 * block,
        free: s.f_bfree as f64 * block,
        avail: s.f_bavail as f64 * block,
        files: s.f_files as f64,
        files_free: s.f_ffree as f64,
    })
}

/// The filesystem collector and its worker.
pub struct Filesystems {
    rootfs: PathBuf,
    timeout: Duration,
    fs_types_exclude: Vec<String>,
    mount_points_exclude: Vec<String>,
    worker: Option<Worker>,
    stuck: Arc<Mutex<HashSet<PathBuf>>>,
    statfs: StatFn,
    buf: String,
}

impl Filesystems {
    pub fn new(config: &HostConfig) -> Self {
        Filesystems {
            rootfs: config.rootfs_path.clone(),
            timeout: config.filesystem_timeout,
            fs_types_exclude: config.fs_types_exclude.clone(),
            mount_points_exclude: config.mount_points_exclude.clone(),
            worker: None,
            stuck: Arc::default(),
            statfs,
            buf: String::new(),
        }
    }

    pub fn collect(&mut self, proc: &Path, out: &mut Vec<Family>) -> Result<(), String> {
        let mut buf = std::mem::take(&mut self.buf);
        let read = read_into(&proc.join("1/mounts"), &mut buf)
            .or_else(|_| read_into(&proc.join("self/mounts"), &mut buf));
        let mounts = parse_mounts(&buf);
        self.buf = buf;
        read?;
        let names = [
            ("node_filesystem_size_bytes", "Filesystem size in bytes."),
            (
                "node_filesystem_free_bytes",
                "Filesystem free space in bytes.",
            ),
            (
                "node_filesystem_avail_bytes",
                "Filesystem space available to non-root users in bytes.",
            ),
            ("node_filesystem_files", "Filesystem total file nodes."),
            (
                "node_filesystem_files_free",
                "Filesystem total free file nodes.",
            ),
            ("node_filesystem_readonly", "Filesystem read-only status."),
            (
                "node_filesystem_device_error",
                "Whether an error occurred while getting statistics for the given device.",
            ),
        ];
        let mut families: Vec<Family> = names.iter().map(|(n, h)| Family::gauge(*n, *h)).collect();
        let mut seen = HashSet::new();
        let mut errors = Vec::new();
        for m in mounts {
            if self.fs_types_exclude.contains(&m.fs_type)
                || mount_point_excluded(&m.mount_point, &self.mount_points_exclude)
                || !seen.insert((m.device.clone(), m.mount_point.clone()))
            {
                continue;
            }
            let labels = [
                ("device", m.device.as_str()),
                ("fstype", m.fs_type.as_str()),
                ("mountpoint", m.mount_point.as_str()),
            ];
            let path = self.rootfs.join(m.mount_point.trim_start_matches('/'));
            let usage = self.stat(path);
            if let Err(e) = &usage {
                errors.push(e.clone());
            }
            let ro = f64::from(u8::from(m.read_only));
            match usage {
                Ok(u) => {
                    for (family, v) in families.iter_mut().zip([
                        u.size,
                        u.free,
                        u.avail,
                        u.files,
                        u.files_free,
                        ro,
                        0.0,
                    ]) {
                        family.push(&labels, v);
                    }
                }
                Err(_) => {
                    families[5].push(&labels, ro);
                    families[6].push(&labels, 1.0);
                }
            }
        }
        out.extend(families);
        // A mount that cannot be read (permissions, stuck) is a per-mount
        // fact, reported in device_error; the collector itself succeeded.
        if !errors.is_empty() {
            tracing::debug!(errors = ?errors, "some filesystems could not be read");
        }
        Ok(())
    }

    /// One `statfs`, on the worker, within the timeout.
    fn stat(&mut self, path: PathBuf) -> Result<Usage, String> {
        if self
            .stuck
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&path)
        {
            return Err(format!("statfs {}: still stuck", path.display()));
        }
        if self.worker.is_none() {
            self.worker = Worker::spawn(self.stuck.clone(), self.statfs);
        }
        let worker = self
            .worker
            .as_ref()
            .ok_or("cannot start the statfs thread")?;
        if worker.requests.send(path.clone()).is_err() {
            self.worker = None;
            return Err("statfs thread is gone".into());
        }
        match worker.replies.recv_timeout(self.timeout) {
            Ok((_, usage)) => usage,
            Err(RecvTimeoutError::Timeout) => {
                let mut stuck = self.stuck.lock().unwrap_or_else(|p| p.into_inner());
                // The reply may have landed between the timeout and the lock.
                if let Ok((_, usage)) = worker.replies.try_recv() {
                    return usage;
                }
                stuck.insert(path.clone());
                drop(stuck);
                tracing::warn!(mountpoint = %path.display(), timeout = ?self.timeout,
                               "statfs did not answer; skipping this mount until it does");
                self.worker = None;
                Err(format!(
                    "statfs {}: no answer within {:?}",
                    path.display(),
                    self.timeout
                ))
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.worker = None;
                Err("statfs thread is gone".into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
/dev/vda1 / ext4 rw,relatime 0 0
/dev/vdb1 /srv/video\\040files xfs ro,relatime 0 0
tmpfs /run tmpfs rw,nosuid,nodev,size=1628k,mode=755 0 0
overlay /var/lib/docker/overlay2/abc/merged overlay rw 0 0
tmpfs /run/credentials/x.service tmpfs ro 0 0
/dev/vda1 / ext4 rw,relatime 0 0
garbage
";

    #[test]
    fn mounts_are_parsed_and_unescaped() {
        let mounts = parse_mounts(MOUNTS);
        assert_eq!(mounts.len(), 8, "the garbage line is skipped");
        assert_eq!(mounts[3].mount_point, "/srv/video files");
        assert!(mounts[3].read_only);
        assert!(!mounts[2].read_only);
        assert_eq!(unescape("a\\134b\\011"), "a\\b\t");
        assert_eq!(unescape("trailing\\04"), "trailing\\04");
    }

    #[test]
    fn exclusion_follows_node_exporter_defaults() {
        let ex: Vec<String> = DEFAULT_MOUNT_POINTS_EXCLUDE
            .iter()
            .map(|s| s.to_string())
            .collect();
        for excluded in [
            "/dev",
            "/dev/shm",
            "/proc",
            "/sys/fs/cgroup",
            "/run/credentials/a",
            "/var/lib/docker/x",
        ] {
            assert!(mount_point_excluded(excluded, &ex), "{excluded}");
        }
        for kept in [
            "/",
            "/devices",
            "/run",
            "/run/credentials",
            "/var/lib/docker",
            "/srv",
        ] {
            assert!(!mount_point_excluded(kept, &ex), "{kept}");
        }
    }

    #[test]
    fn this_machine_reports_its_root_filesystem() {
        let mut fs = Filesystems::new(&HostConfig::default());
        let mut out = Vec::new();
        fs.collect(Path::new("/proc"), &mut out).unwrap();
        let size = out
            .iter()
            .find(|f| f.name == "node_filesystem_size_bytes")
            .unwrap();
        let root = size
            .series
            .iter()
            .find(|s| s.labels.iter().any(|(n, v)| n == "mountpoint" && v == "/"))
            .expect("root filesystem");
        assert!(root.value > 0.0);
        for family in &out {
            let mut keys: Vec<_> = family.series.iter().map(|s| &s.labels).collect();
            let n = keys.len();
            keys.dedup();
            assert_eq!(n, keys.len(), "no duplicate series in {}", family.name);
        }
    }

    #[test]
    fn a_missing_mount_point_is_a_device_error_not_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("1")).unwrap();
        std::fs::write(
            dir.path().join("1/mounts"),
            "/dev/x /no/such/place ext4 rw 0 0\n",
        )
        .unwrap();
        let mut fs = Filesystems::new(&HostConfig::default());
        let mut out = Vec::new();
        fs.collect(dir.path(), &mut out).unwrap();
        let err = out
            .iter()
            .find(|f| f.name == "node_filesystem_device_error")
            .unwrap();
        assert_eq!(err.series[0].value, 1.0);
        let size = out
            .iter()
            .find(|f| f.name == "node_filesystem_size_bytes")
            .unwrap();
        assert!(size.series.is_empty());
    }

    #[test]
    fn a_stuck_statfs_is_skipped_until_it_returns() {
        fn slow(path: &Path) -> Result<Usage, String> {
            std::thread::sleep(Duration::from_millis(300));
            statfs(path)
        }
        let mut fs = Filesystems::new(&HostConfig {
            filesystem_timeout: Duration::from_millis(50),
            ..HostConfig::default()
        });
        fs.statfs = slow;
        let path = PathBuf::from("/");
        let first = fs.stat(path.clone()).unwrap_err();
        assert!(first.contains("no answer within"), "{first}");
        let started = std::time::Instant::now();
        let second = fs.stat(path.clone()).unwrap_err();
        assert!(second.contains("still stuck"), "{second}");
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "no second wait"
        );
        // Once the hung call returns, the mount is tried again.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while fs.stuck.lock().unwrap().contains(&path) {
            assert!(
                std::time::Instant::now() < deadline,
                "stuck mark never cleared"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        fs.statfs = statfs;
        assert!(fs.stat(path).is_ok());
    }
}
