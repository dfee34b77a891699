//! Host metrics, named, typed and labelled as node_exporter names them, so
//! that dashboards, alert rules and people's habits carry over.
//!
//! Each source of numbers is its own module with a pure `parse` function
//! (tested on fixture text) and is read straight from /proc: one read per
//! source per cycle, nothing refreshed that is not reported. A source that
//! fails reports its error and the others still run. `statfs` alone can
//! block (a dead NFS server), so it runs on a worker thread with a deadline
//! (see [`filesystem`]).

mod diskstats;
mod filefd;
mod filesystem;
mod loadavg;
mod meminfo;
mod netdev;
mod netstat;
mod sockstat;
mod stat;
mod uname;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use patrol_shared::model::Family;
use serde::{Deserialize, Serialize};

/// `[host]` of the agent config: where to read from and what to skip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    /// Where procfs is mounted (node_exporter's `--path.procfs`).
    pub proc_path: PathBuf,
    /// Prefix for `statfs` of each mount point (node_exporter's
    /// `--path.rootfs`), for an agent that sees the host's root elsewhere.
    pub rootfs_path: PathBuf,
    /// A `statfs` slower than this marks the mount stuck: it is reported
    /// with `node_filesystem_device_error 1` and skipped until the call returns.
    #[serde(with = "patrol_shared::config::duration")]
    pub filesystem_timeout: Duration,
    /// Filesystem types not reported (exact names).
    pub fs_types_exclude: Vec<String>,
    /// Mount points not reported: an entry excludes that path and all below
    /// it; an entry ending in `/` excludes only what is below it.
    pub mount_points_exclude: Vec<String>,
    /// Network devices not reported (exact names).
    pub net_devices_exclude: Vec<String>,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            proc_path: PathBuf::from("/proc"),
            rootfs_path: PathBuf::from("/"),
            filesystem_timeout: Duration::from_secs(5),
            fs_types_exclude: filesystem::DEFAULT_FS_TYPES_EXCLUDE
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            mount_points_exclude: filesystem::DEFAULT_MOUNT_POINTS_EXCLUDE
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            net_devices_exclude: Vec::new(),
        }
    }
}

impl HostConfig {
    /// Every problem, each naming its key.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.filesystem_timeout.is_zero() {
            problems.push("host.filesystem_timeout: must be over 0".into());
        }
        for (key, path) in [
            ("host.proc_path", &self.proc_path),
            ("host.rootfs_path", &self.rootfs_path),
        ] {
            if !path.is_absolute() {
                problems.push(format!("{key}: {} is not an absolute path", path.display()));
            }
        }
        for (i, m) in self.mount_points_exclude.iter().enumerate() {
            if !m.starts_with('/') {
                problems.push(format!(
                    "host.mount_points_exclude[{i}]: {m:?} is not an absolute path"
                ));
            }
        }
        problems
    }
}

/// How one source did in one cycle.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectorReport {
    pub name: &'static str,
    pub duration: Duration,
    pub error: Option<String>,
}

/// One cycle's families and how each source did.
#[derive(Debug, Default)]
pub struct HostCycle {
    pub families: Vec<Family>,
    pub reports: Vec<CollectorReport>,
}

/// The host collectors and the little state they keep between cycles.
pub struct HostMetrics {
    config: HostConfig,
    filesystems: filesystem::Filesystems,
    /// Reused between cycles: most /proc files fit in a few KiB.
    buf: String,
}

impl HostMetrics {
    pub fn new(config: HostConfig) -> Self {
        HostMetrics {
            filesystems: filesystem::Filesystems::new(&config),
            config,
            buf: String::with_capacity(16 * 1024),
        }
    }

    /// One collection cycle. Blocking: run it off the async threads.
    pub fn collect(&mut self) -> HostCycle {
        let mut cycle = HostCycle::default();
        let proc = self.config.proc_path.clone();
        self.file_source(&mut cycle, "stat", &proc.join("stat"), stat::parse);
        self.file_source(&mut cycle, "meminfo", &proc.join("meminfo"), meminfo::parse);
        self.file_source(&mut cycle, "loadavg", &proc.join("loadavg"), loadavg::parse);
        self.file_source(
            &mut cycle,
            "diskstats",
            &proc.join("diskstats"),
            diskstats::parse,
        );
        let exclude = self.config.net_devices_exclude.clone();
        self.file_source(&mut cycle, "netdev", &proc.join("net/dev"), |t, out| {
            netdev::parse(t, &exclude, out)
        });
        self.file_source(
            &mut cycle,
            "filefd",
            &proc.join("sys/fs/file-nr"),
            filefd::parse,
        );
        self.file_source(
            &mut cycle,
            "netstat",
            &proc.join("net/snmp"),
            netstat::parse_snmp,
        );
        self.file_source(
            &mut cycle,
            "netstat_ext",
            &proc.join("net/netstat"),
            netstat::parse_snmp,
        );
        self.file_source(
            &mut cycle,
            "netstat6",
            &proc.join("net/snmp6"),
            netstat::parse_snmp6,
        );
        self.file_source(
            &mut cycle,
            "sockstat",
            &proc.join("net/sockstat"),
            sockstat::parse,
        );
        timed(&mut cycle, "filesystem", |out| {
            self.filesystems.collect(&proc, out)
        });
        timed(&mut cycle, "uname", |out| {
            uname::collect(out);
            Ok(())
        });
        cycle
    }

    /// Reads one file and parses it, timing both.
    fn file_source(
        &mut self,
        cycle: &mut HostCycle,
        name: &'static str,
        path: &Path,
        parse: impl FnOnce(&str, &mut Vec<Family>) -> Result<(), String>,
    ) {
        let buf = &mut self.buf;
        timed(cycle, name, |out| {
            read_into(path, buf)?;
            parse(buf, out)
        });
    }
}

/// Runs one source, recording its time and error.
fn timed(
    cycle: &mut HostCycle,
    name: &'static str,
    run: impl FnOnce(&mut Vec<Family>) -> Result<(), String>,
) {
    let started = Instant::now();
    let error = run(&mut cycle.families).err();
    cycle.reports.push(CollectorReport {
        name,
        duration: started.elapsed(),
        error,
    });
}

/// Reads a whole file into `buf` (cleared first); the error names the path.
fn read_into(path: &Path, buf: &mut String) -> Result<(), String> {
    use std::io::Read;
    buf.clear();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_string(buf))
        .map(|_| ())
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Parses a number field, naming what it was on failure.
fn number(field: Option<&str>, what: &str) -> Result<f64, String> {
    let text = field.ok_or_else(|| format!("{what}: missing"))?;
    text.parse::<f64>()
        .map_err(|_| format!("{what}: {text:?} is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cycle_on_this_machine_reports_the_node_exporter_basics() {
        let mut host = HostMetrics::new(HostConfig::default());
        let cycle = host.collect();
        let names: Vec<&str> = cycle.families.iter().map(|f| f.name.as_str()).collect();
        for want in [
            "node_cpu_seconds_total",
            "node_memory_MemAvailable_bytes",
            "node_load1",
            "node_boot_time_seconds",
            "node_filesystem_avail_bytes",
            "node_network_receive_bytes_total",
            "node_filefd_allocated",
            "node_netstat_Tcp_CurrEstab",
            "node_sockstat_TCP_inuse",
            "node_procs_running",
            "node_uname_info",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        for r in &cycle.reports {
            // snmp6 is absent where IPv6 is disabled; nothing else may fail.
            if r.name != "netstat6" {
                assert!(r.error.is_none(), "{r:?}");
            }
        }
    }

    #[test]
    fn a_missing_proc_is_an_error_per_source_not_a_panic() {
        let config = HostConfig {
            proc_path: PathBuf::from("/nonexistent/proc"),
            ..HostConfig::default()
        };
        let cycle = HostMetrics::new(config).collect();
        let stat = cycle.reports.iter().find(|r| r.name == "stat").unwrap();
        assert!(stat
            .error
            .as_deref()
            .unwrap()
            .contains("/nonexistent/proc/stat"));
    }

    proptest::proptest! {
        #[test]
        fn no_parser_panics_on_any_text(text in "(?s).{0,400}", lines in proptest::collection::vec("[a-zA-Z0-9():_ \\\\]{0,60}", 0..12)) {
            let joined = lines.join("\n");
            for input in [text.as_str(), joined.as_str()] {
                let mut out = Vec::new();
                let _ = stat::parse(input, &mut out);
                let _ = meminfo::parse(input, &mut out);
                let _ = loadavg::parse(input, &mut out);
                let _ = diskstats::parse(input, &mut out);
                let _ = netdev::parse(input, &[], &mut out);
                let _ = filefd::parse(input, &mut out);
                let _ = netstat::parse_snmp(input, &mut out);
                let _ = netstat::parse_snmp6(input, &mut out);
                let _ = sockstat::parse(input, &mut out);
                let _ = filesystem::parse_mounts(input);
            }
        }
    }

    #[test]
    fn config_problems_name_their_keys() {
        let config = HostConfig {
            proc_path: PathBuf::from("proc"),
            filesystem_timeout: Duration::ZERO,
            mount_points_exclude: vec!["dev".into()],
            ..HostConfig::default()
        };
        let problems = config.validate().join("\n");
        assert!(problems.contains("host.proc_path"), "{problems}");
        assert!(problems.contains("host.filesystem_timeout"), "{problems}");
        assert!(
            problems.contains("host.mount_points_exclude[0]"),
            "{problems}"
        );
    }
}
