//! `[fim]` of the agent config: the watched paths (by default the files
//! issue 5 names), the debounce and the bounds.

use std::path::PathBuf;
use std::time::Duration;

use patrol_shared::config as cfg;
use serde::{Deserialize, Serialize};

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
}
