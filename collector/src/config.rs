//! The collector's config file (TOML): where it listens, its TLS material
//! and the limits that protect it from slow or hostile peers. Defaults live
//! here and only here; `validate` reports every problem at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use patrol_shared::codec::{DEFAULT_MAX_FRAME_BYTES, MAX_FRAME_BYTES_LIMIT};
use patrol_shared::config::{self as cfg, ConfigError};
use patrol_shared::tls::TlsFiles;
use serde::{Deserialize, Serialize};

/// The whole collector config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    #[serde(default)]
    pub ingest: IngestConfig,
    pub tls: TlsFiles,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub query: QueryConfig,
    #[serde(default)]
    pub rules: RulesConfig,
    /// Tickets, SLA clocks, escalation and on-call (docs/incidents.md).
    #[serde(default)]
    pub incidents: crate::incident::desk::IncidentConfig,
    /// Notifications (docs/notifications.md); none are sent without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<crate::notify::NotifyConfig>,
}

/// `[rules]`: alerting and recording rules.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Prometheus rule files (relative to the config file's folder).
    pub files: Vec<PathBuf>,
    /// Run the rules shipped with Patrol (`rules/` in the source).
    pub defaults: bool,
    /// How often groups that name no interval are evaluated.
    #[serde(with = "cfg::duration")]
    pub evaluation_interval: Duration,
    /// Labels templates can read as `$externalLabels`.
    pub external_labels: std::collections::BTreeMap<String, String>,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            files: Vec::new(),
            defaults: true,
            evaluation_interval: Duration::from_secs(60),
            external_labels: Default::default(),
        }
    }
}

impl RulesConfig {
    pub fn settings(&self) -> crate::rules::manager::Settings {
        crate::rules::manager::Settings {
            files: self.files.clone(),
            defaults: self.defaults,
            interval: self.evaluation_interval,
            external_labels: self.external_labels.clone(),
        }
    }
}

/// `[query]`: limits of PromQL evaluation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// Longest a query may run (a request's `timeout` can only shorten it).
    #[serde(with = "cfg::duration")]
    pub timeout: Duration,
    /// Most samples one query may load from the store.
    pub max_samples: usize,
    /// Most series one query may select.
    pub max_series: usize,
    /// How far back an instant selector looks for a series' newest sample.
    #[serde(with = "cfg::duration")]
    pub lookback_delta: Duration,
}

impl Default for QueryConfig {
    fn default() -> Self {
        let limits = crate::query::Limits::default();
        QueryConfig {
            timeout: limits.timeout,
            max_samples: limits.max_samples,
            max_series: limits.max_series,
            lookback_delta: limits.lookback,
        }
    }
}

impl QueryConfig {
    pub fn limits(&self) -> crate::query::Limits {
        crate::query::Limits {
            timeout: self.timeout,
            max_samples: self.max_samples,
            max_series: self.max_series,
            lookback: self.lookback_delta,
            ..crate::query::Limits::default()
        }
    }
}

/// `[storage]`: where the time series live and for how long.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// The database folder (relative to the config file's folder).
    pub path: PathBuf,
    /// Samples older than this are deleted in the background.
    #[serde(with = "cfg::duration")]
    pub retention: Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: PathBuf::from("data"),
            retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// `[ingest]`: the mTLS listener agents connect to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    pub listen: SocketAddr,
    #[serde(with = "cfg::bytes")]
    pub max_frame_bytes: usize,
    pub max_connections: usize,
    #[serde(with = "cfg::duration")]
    pub handshake_timeout: Duration,
    #[serde(with = "cfg::duration")]
    pub hello_timeout: Duration,
    #[serde(with = "cfg::duration")]
    pub idle_timeout: Duration,
    /// Certificate revocation list (PEM or DER X.509 CRL signed by the
    /// fleet CA, as `patrol pki revoke` writes it). Reloaded when it
    /// changes; agents it names are refused and their sessions closed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crl: Option<PathBuf>,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 9471)),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_connections: 10_000,
            handshake_timeout: Duration::from_secs(10),
            hello_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            crl: None,
        }
    }
}

/// `[http]`: the HTTP API: `/metrics`, health, and the query API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Serve HTTPS with this certificate and key (PEM) instead of HTTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<HttpTls>,
    /// API tokens (`[[http.tokens]]`): every route but the health routes
    /// needs one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<crate::http::auth::TokenConfig>,
}

/// `[http.tls]`: the HTTPS certificate and key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9470)),
            tls: None,
            tokens: Vec::new(),
        }
    }
}

impl CollectorConfig {
    /// Reads, resolves relative paths against the file's folder, validates.
    pub fn load(path: &Path) -> Result<CollectorConfig, ConfigError> {
        let mut config: CollectorConfig = cfg::load_toml(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.tls.resolve(base);
        if let Some(crl) = &mut config.ingest.crl {
            if crl.is_relative() {
                *crl = base.join(&*crl);
            }
        }
        if let Some(tls) = &mut config.http.tls {
            for path in [&mut tls.cert, &mut tls.key] {
                if path.is_relative() {
                    *path = base.join(&*path);
                }
            }
        }
        if let Some(notify) = &mut config.notify {
            notify.resolve(base);
        }
        for file in &mut config.rules.files {
            if file.is_relative() {
                *file = base.join(&*file);
            }
        }
        if config.storage.path.is_relative() {
            config.storage.path = base.join(&config.storage.path);
        }
        config.validate(path)?;
        Ok(config)
    }

    /// Every problem in the config, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let i = &self.ingest;
        if !(1024..=MAX_FRAME_BYTES_LIMIT).contains(&i.max_frame_bytes) {
            problems.push(format!(
                "ingest.max_frame_bytes: {} is out of range (expected 1KiB to 64MiB)",
                i.max_frame_bytes
            ));
        }
        if i.max_connections == 0 {
            problems.push("ingest.max_connections: must be at least 1".into());
        }
        for (key, value) in [
            ("ingest.handshake_timeout", i.handshake_timeout),
            ("ingest.hello_timeout", i.hello_timeout),
            ("ingest.idle_timeout", i.idle_timeout),
        ] {
            if value.is_zero() {
                problems.push(format!("{key}: must be over 0"));
            }
        }
        if self.storage.retention < Duration::from_secs(3600) {
            problems.push("storage.retention: at least 1h".into());
        }
        let mut names = std::collections::HashSet::new();
        for (n, t) in self.http.tokens.iter().enumerate() {
            if t.name.is_empty() || t.name.contains(':') {
                problems.push(format!(
                    "http.tokens[{n}].name: {:?} must be non-empty and without ':'",
                    t.name
                ));
            }
            if !names.insert(&t.name) {
                problems.push(format!("http.tokens[{n}].name: {:?} is used twice", t.name));
            }
            if t.sha256.len() != 64 || !t.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                problems.push(format!(
                    "http.tokens[{n}].sha256: expected 64 hex digits (the token's SHA-256; `patrol token create` prints it)"
                ));
            }
        }
        if self.rules.evaluation_interval < Duration::from_secs(1) {
            problems.push("rules.evaluation_interval: at least 1s".into());
        }
        for name in self.rules.external_labels.keys() {
            if !crate::query::aggregate::valid_label_name(name) {
                problems.push(format!(
                    "rules.external_labels: {name:?} is not a valid label name"
                ));
            }
        }
        if let Some(notify) = &self.notify {
            problems.extend(notify.problems());
        }
        let ticket_receivers = self.notify.as_ref().map(|n| {
            n.receivers
                .iter()
                .map(|r| (r.name.clone(), r.kind.takes_ticket_events()))
                .collect()
        });
        problems.extend(
            self.incidents
                .notify
                .validate_receivers(&self.incidents.contacts, ticket_receivers.as_ref()),
        );
        problems.extend(
            self.incidents
                .validate()
                .into_iter()
                .map(|p| format!("incidents.{p}")),
        );
        if self.query.timeout.is_zero() {
            problems.push("query.timeout: must be over 0".into());
        }
        if self.query.max_samples == 0 {
            problems.push("query.max_samples: must be at least 1".into());
        }
        if self.query.max_series == 0 {
            problems.push("query.max_series: must be at least 1".into());
        }
        if self.query.lookback_delta.is_zero() {
            problems.push("query.lookback_delta: must be over 0".into());
        }
        if i.listen == self.http.listen {
            problems.push(format!(
                "http.listen: {} is also ingest.listen; they need different ports",
                self.http.listen
            ));
        }
        problems
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            })
        }
    }

    /// A config for `pki_dir`'s certificate files and a database in
    /// `data_dir`, as `patrol up` writes it.
    pub fn example(pki_dir: &Path, data_dir: &Path) -> CollectorConfig {
        CollectorConfig {
            ingest: IngestConfig::default(),
            tls: TlsFiles {
                ca: pki_dir.join("ca.pem"),
                cert: pki_dir.join("collector.pem"),
                key: pki_dir.join("collector-key.pem"),
            },
            http: HttpConfig::default(),
            query: QueryConfig::default(),
            rules: RulesConfig::default(),
            notify: None,
            incidents: Default::default(),
            storage: StorageConfig {
                path: data_dir.to_owned(),
                ..StorageConfig::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("collector.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn minimal_config_gets_defaults_and_resolved_paths() {
        let (dir, path) = write("[tls]\nca = \"pki/ca.pem\"\ncert = \"c.pem\"\nkey = \"/k.pem\"\n");
        let c = CollectorConfig::load(&path).unwrap();
        assert_eq!(c.tls.ca, dir.path().join("pki/ca.pem"));
        assert_eq!(c.tls.key, PathBuf::from("/k.pem"));
        assert_eq!(c.ingest.max_frame_bytes, DEFAULT_MAX_FRAME_BYTES);
        assert_eq!(c.http.listen.port(), 9470);
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let (_d, path) =
            write("[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n[ingest]\nlisten_port = 1\n");
        let err = CollectorConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("collector.toml:6:1"), "{err}");
        assert!(err.contains("listen_port"), "{err}");
    }

    #[test]
    fn missing_tls_section_is_named() {
        let (_d, path) = write("[ingest]\nlisten = \"127.0.0.1:1\"\n");
        let err = CollectorConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("missing field `tls`"), "{err}");
    }

    #[test]
    fn every_bad_value_is_reported() {
        let (_d, path) = write(
            "[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n[ingest]\nmax_frame_bytes = 10\nmax_connections = 0\nidle_timeout = \"0s\"\n",
        );
        let err = CollectorConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("ingest.max_frame_bytes"), "{err}");
        assert!(err.contains("ingest.max_connections"), "{err}");
        assert!(err.contains("ingest.idle_timeout"), "{err}");
    }
}
