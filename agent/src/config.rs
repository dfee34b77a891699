//! The agent's config file (TOML). Defaults live here and only here;
//! `load` reports every problem at once, each naming its key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use patrol_shared::config::{self as cfg, ConfigError};
use patrol_shared::tls::TlsFiles;
use serde::{Deserialize, Serialize};

use crate::baseline::schedule::BaselineSection;
use crate::checks::CheckConfig;
use crate::fim::FimConfig;
use crate::host::HostConfig;

/// The whole agent config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// How often host metrics are collected.
    #[serde(with = "cfg::duration", default = "default_interval")]
    pub interval: Duration,
    /// The name this agent calls itself in its Hello (informational: the
    /// collector files data under the certificate's name). Default: the
    /// system host name.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Static labels added to every series this agent sends.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub collector: CollectorLink,
    pub tls: TlsFiles,
    #[serde(default)]
    pub spool: SpoolConfig,
    #[serde(default)]
    pub host: HostConfig,
    /// `[[checks]]`: service checks, each on its own interval.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckConfig>,
    /// `[baseline]`: the security-baseline inspection's schedule and settings.
    #[serde(default)]
    pub baseline: BaselineSection,
    /// `[fim]`: file integrity monitoring.
    #[serde(default)]
    pub fim: FimConfig,
    /// Where the agent keeps what must outlive a restart (the spool of
    /// unacknowledged batches, the file-integrity states). Default when
    /// loaded from a file: the config file's folder. None (a config built
    /// in code) keeps them in memory, for the life of the process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
}

fn default_interval() -> Duration {
    Duration::from_secs(10)
}

/// `[collector]`: where to send, and how to keep the link.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorLink {
    /// `host:port` of each collector, tried in order (the first is the
    /// preferred one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// A single collector's `host:port`: the short form of `addresses`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The name the collector's certificate must carry; default: the host
    /// part of the address being dialled.
    #[serde(default)]
    pub server_name: Option<String>,
    #[serde(with = "cfg::duration", default = "default_connect_timeout")]
    pub connect_timeout: Duration,
    /// Idle link check: a heartbeat goes out after this long without
    /// traffic, and the link is dropped after three without an answer.
    #[serde(with = "cfg::duration", default = "default_heartbeat")]
    pub heartbeat: Duration,
    /// Longest wait between reconnection attempts.
    #[serde(with = "cfg::duration", default = "default_backoff_max")]
    pub backoff_max: Duration,
    /// Batches sent and not yet acknowledged, at most.
    #[serde(default = "default_window")]
    pub window: usize,
    /// While connected to a collector other than the first listed, how
    /// often the earlier ones are tried again; the agent moves back to one
    /// as soon as it answers. Zero: stay until the connection is lost.
    #[serde(with = "cfg::duration", default = "default_failback")]
    pub failback: Duration,
}

impl CollectorLink {
    /// The collectors to try, in order of preference.
    pub fn targets(&self) -> Vec<String> {
        self.address
            .iter()
            .chain(&self.addresses)
            .cloned()
            .collect()
    }
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_heartbeat() -> Duration {
    Duration::from_secs(15)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(30)
}
fn default_window() -> usize {
    16
}
fn default_failback() -> Duration {
    Duration::from_secs(60)
}

/// `[spool]`: batches waiting for the collector's acknowledgement.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Bound on the bytes of batches kept (in `state_dir/spool`); past it
    /// the oldest are dropped and counted.
    #[serde(with = "cfg::bytes")]
    pub max_bytes: usize,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            max_bytes: 256 << 20,
        }
    }
}

impl AgentConfig {
    /// Reads, resolves relative paths against the file's folder, validates.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let mut config: AgentConfig = cfg::load_toml(path)?;
        let base = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        config.tls.resolve(base);
        config.state_dir = Some(match config.state_dir.take() {
            Some(dir) if dir.is_relative() => base.join(dir),
            Some(dir) => dir,
            None => base.to_owned(),
        });
        for check in &mut config.checks {
            check.resolve(base);
        }
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            });
        }
        // One form from here on, for code that sets the list.
        config.collector.addresses = config.collector.targets();
        config.collector.address = None;
        Ok(config)
    }

    /// Every problem in the config, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.interval < Duration::from_millis(100) {
            p.push(format!(
                "interval: {:?} is too short (at least 100ms)",
                self.interval
            ));
        }
        let link = &self.collector;
        let named = link
            .address
            .iter()
            .map(|a| ("collector.address".to_owned(), a))
            .chain(
                link.addresses
                    .iter()
                    .enumerate()
                    .map(|(i, a)| (format!("collector.addresses[{i}]"), a)),
            );
        match (&link.address, link.addresses.is_empty()) {
            (None, true) => p.push(
                "collector.addresses: list at least one collector as \"host:port\" (or give collector.address)"
                    .into(),
            ),
            (Some(_), false) => p.push(
                "collector.address: give either collector.address or collector.addresses, not both"
                    .into(),
            ),
            _ => {}
        }
        for (key, addr) in named {
            if split_host_port(addr).is_none() {
                p.push(format!(
                    "{key}: {addr:?} is not \"host:port\" (e.g. \"collector.example:9471\", \"[::1]:9471\")"
                ));
            }
        }
        for (key, d) in [
            ("collector.connect_timeout", link.connect_timeout),
            ("collector.heartbeat", link.heartbeat),
            ("collector.backoff_max", link.backoff_max),
        ] {
            if d.is_zero() {
                p.push(format!("{key}: must be over 0"));
            }
        }
        if link.window == 0 {
            p.push("collector.window: must be at least 1".into());
        }
        if self.spool.max_bytes < 64 << 10 {
            p.push("spool.max_bytes: at least 64KiB".into());
        }
        for name in self.labels.keys() {
            let mut bytes = name.bytes();
            let valid = matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
                && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !name.starts_with("__");
            if !valid {
                p.push(format!(
                    "labels.{name}: not a label name (letters, digits and '_', not starting with a digit or '__')"
                ));
            } else if name == "host" || name == "instance" {
                p.push(format!(
                    "labels.{name}: set by the collector from the certificate; remove it"
                ));
            }
        }
        if let Some(name) = &self.hostname {
            if !patrol_shared::tls::is_valid_host_name(name) {
                p.push(format!("hostname: {name:?} is not a host name"));
            }
        }
        p.extend(self.host.validate());
        p.extend(crate::checks::validate(&self.checks));
        p.extend(self.baseline.validate());
        p.extend(self.fim.validate());
        p
    }

    /// The config `patrol up` writes for the local agent.
    pub fn example(pki_dir: &Path, name: &str, collector: &str) -> AgentConfig {
        AgentConfig {
            interval: default_interval(),
            hostname: None,
            labels: BTreeMap::new(),
            collector: CollectorLink {
                addresses: vec![collector.to_owned()],
                address: None,
                server_name: None,
                connect_timeout: default_connect_timeout(),
                heartbeat: default_heartbeat(),
                backoff_max: default_backoff_max(),
                window: default_window(),
                failback: default_failback(),
            },
            tls: TlsFiles {
                ca: pki_dir.join("ca.pem"),
                cert: pki_dir.join(format!("{name}.pem")),
                key: pki_dir.join(format!("{name}-key.pem")),
            },
            spool: SpoolConfig::default(),
            host: HostConfig::default(),
            checks: Vec::new(),
            baseline: BaselineSection::default(),
            fim: FimConfig::default(),
            state_dir: None,
        }
    }
}

/// Splits "host:port", "[v6]:port" into host and port.
pub fn split_host_port(addr: &str) -> Option<(&str, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty() && !host.contains(':') || addr.starts_with('[')).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<AgentConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let ca = patrol_shared::pki::Ca::generate(Duration::from_secs(3600)).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, text).unwrap();
        AgentConfig::load(&path)
    }

    const MINIMAL: &str =
        "[collector]\naddresses = [\"127.0.0.1:9471\"]\n[tls]\nca = \"ca.pem\"\ncert = \"a.pem\"\nkey = \"a-key.pem\"\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let c = load(MINIMAL).unwrap();
        assert_eq!(c.interval, Duration::from_secs(10));
        assert_eq!(c.collector.window, 16);
        assert!(c.tls.ca.is_absolute());
        let state = c.state_dir.unwrap();
        assert_eq!(
            Some(state.as_path()),
            c.tls.ca.parent(),
            "next to the config"
        );
    }

    #[test]
    fn a_relative_state_dir_is_read_from_the_config_folder() {
        let c = load(&format!("state_dir = \"state\"\n{MINIMAL}")).unwrap();
        let state = c.state_dir.unwrap();
        assert!(state.is_absolute() && state.ends_with("state"), "{state:?}");
        let c = load(&format!("state_dir = \"/var/lib/patrol-agent\"\n{MINIMAL}")).unwrap();
        assert_eq!(c.state_dir.unwrap(), Path::new("/var/lib/patrol-agent"));
    }

    #[test]
    fn bad_address_and_interval_are_both_reported() {
        let text = MINIMAL
            .replace("127.0.0.1:9471", "nowhere")
            .replace("[collector]", "interval = \"1ms\"\n[collector]");
        let err = load(&text).unwrap_err().to_string();
        assert!(err.contains("collector.addresses[0]"), "{err}");
        assert!(err.contains("interval"), "{err}");
    }

    #[test]
    fn bad_label_names_are_reported() {
        let err = load(&format!(
            "{MINIMAL}[labels]\n\"2x\" = \"a\"\nhost = \"b\"\nrole = \"db\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("labels.2x"), "{err}");
        assert!(err.contains("labels.host"), "{err}");
        assert!(!err.contains("labels.role"), "{err}");
    }

    #[test]
    fn unknown_key_names_line() {
        let err = load(&format!("{MINIMAL}[spool]\nmax_batches = 3\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(":8:1"), "{err}");
        assert!(err.contains("max_batches"), "{err}");
    }

    #[test]
    fn checks_baseline_and_fim_sections_load_with_defaults() {
        let c = load(&format!(
            "{MINIMAL}\n[[checks]]\nname = \"pg\"\ninterval = \"30s\"\ntcp = {{ address = \"127.0.0.1:5432\" }}\n\n[[checks]]\nname = \"web\"\nhttp.url = \"https://training.example/\"\nhttp.ca_file = \"ca.pem\"\n\n[baseline]\ndatabase = true\ninterval = \"12h\"\n\n[fim]\npaths = [{{ path = \"/etc/passwd\" }}, {{ path = \"/etc/cron.d\", recursive = true }}]\n"
        ))
        .unwrap();
        assert_eq!(c.checks.len(), 2);
        assert_eq!(c.checks[0].interval, Duration::from_secs(30));
        assert_eq!(c.checks[1].timeout, Duration::from_secs(10));
        let ca = c.checks[1].http.as_ref().unwrap().ca_file.as_ref().unwrap();
        assert!(ca.is_absolute(), "{}", ca.display());
        assert!(c.baseline.enabled && c.baseline.database);
        assert_eq!(c.baseline.interval, Duration::from_secs(12 * 3600));
        assert_eq!(c.baseline.root, Path::new("/"));
        assert_eq!(c.fim.paths.len(), 2);
        assert!(c.fim.paths[1].recursive);
    }

    #[test]
    fn a_mistake_in_a_later_check_names_its_own_line() {
        let text = format!(
            "{MINIMAL}[[checks]]\nname = \"a\"\ntcp.address = \"127.0.0.1:1\"\n\n[[checks]]\nname = \"b\"\nhttp = {{ url = \"http://x/\", body_regex = \"ok\", colour = 1 }}\n"
        );
        let err = load(&text).unwrap_err().to_string();
        assert!(err.contains("agent.toml:13:"), "{err}");
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn check_problems_name_their_keys() {
        let text = format!(
            "{MINIMAL}[[checks]]\nname = \"a\"\n\n[[checks]]\nname = \"a\"\nprocess.pattern = \"(\"\n\n[baseline]\nroot = \"relative\"\n"
        );
        let err = load(&text).unwrap_err().to_string();
        assert!(err.contains("checks[0]: give exactly one of"), "{err}");
        assert!(err.contains("checks[1].process.pattern"), "{err}");
        assert!(err.contains("checks[1].name"), "{err}");
        assert!(err.contains("baseline.root"), "{err}");
    }

    #[test]
    fn the_example_config_writes_and_reads_back() {
        let mut c = AgentConfig::example(Path::new("/pki"), "db", "127.0.0.1:9471");
        c.checks = vec![
            CheckConfig {
                tcp: Some(crate::checks::TcpCheck {
                    address: "127.0.0.1:3306".into(),
                }),
                ..CheckConfig::new("mysql")
            },
            CheckConfig {
                http: Some(crate::checks::HttpCheck::new("https://training.example/")),
                ..CheckConfig::new("site")
            },
        ];
        let text = toml::to_string(&c).unwrap();
        let back: AgentConfig = toml::from_str(&text).unwrap();
        assert_eq!(back.checks, c.checks, "{text}");
        assert_eq!(back.baseline, c.baseline);
        assert_eq!(back.fim, c.fim);
    }

    #[test]
    fn one_collector_address_or_a_list() {
        let one = load(&MINIMAL.replace(
            "addresses = [\"127.0.0.1:9471\"]",
            "address = \"127.0.0.1:9471\"",
        ))
        .unwrap();
        assert_eq!(one.collector.targets(), ["127.0.0.1:9471"]);
        let two = load(&MINIMAL.replace(
            "\"127.0.0.1:9471\"]",
            "\"a.example:9471\", \"b.example:9471\"]\nfailback = \"5m\"",
        ))
        .unwrap();
        assert_eq!(
            two.collector.targets(),
            ["a.example:9471", "b.example:9471"]
        );
        assert_eq!(two.collector.failback, Duration::from_secs(300));
        assert_eq!(one.collector.failback, Duration::from_secs(60));
        assert_eq!(one.spool.max_bytes, 256 << 20);
        let both = load(&MINIMAL.replace("[collector]", "[collector]\naddress = \"nowhere\""))
            .unwrap_err()
            .to_string();
        assert!(both.contains("not both"), "{both}");
        assert!(both.contains("collector.address: \"nowhere\""), "{both}");
        let none = load(&MINIMAL.replace("addresses = [\"127.0.0.1:9471\"]", ""))
            .unwrap_err()
            .to_string();
        assert!(none.contains("at least one collector"), "{none}");
    }

    #[test]
    fn host_ports_split() {
        assert_eq!(
            split_host_port("db.example:9471"),
            Some(("db.example", 9471))
        );
        assert_eq!(split_host_port("[::1]:9471"), Some(("::1", 9471)));
        assert_eq!(split_host_port("::1"), None);
        assert_eq!(split_host_port("db:port"), None);
    }
}
