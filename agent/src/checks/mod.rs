//! Service checks: is each server's job being done? A check looks at one
//! thing (a process, a systemd unit, a TCP port, a web page, a database's
//! greeting, a Nagios plugin's verdict) every `interval`, gives up after
//! `timeout`, and reports a [`Status`] with a one-line message.
//!
//! Each kind is its own module holding its config struct (the `[[checks]]`
//! sub-table of the same name) and its probe. [`CheckConfig::compile`]
//! turns a config entry into a ready-to-run [`Check`] (regexes compiled,
//! CA files read) and is what validation calls too, so a config that
//! loads is a config that runs. [`runner`] runs every check in its own
//! task and turns the latest observation of each into metrics:
//!
//! - `patrol_service_up{check,kind,target}`: 1 up, 0 down, and *absent*
//!   when the state is unknown (no systemd on the host, a plugin that said
//!   UNKNOWN or timed out), so "service down" rules never fire on a
//!   question the check could not answer;
//! - `patrol_service_state{check,kind,target,state}`: the same as a state
//!   set (`up`, `down`, `unknown`; 1 for the current one), which does say
//!   unknown;
//! - `patrol_check_duration_seconds{check,kind}` and the kinds' own figures.
//!
//! Nothing a checked server sends can panic a probe: every length read off
//! the network is bounded before it is used, and parsers return what they
//! could read.

mod command;
mod database;
mod http;
mod process;
mod runner;
mod systemd;
mod tcp;

use std::path::{Path, PathBuf};
use std::time::Duration;

use patrol_shared::config as cfg;
use serde::{Deserialize, Serialize};

pub use self::command::CommandCheck;
pub use self::database::{DatabaseCheck, Engine};
pub use self::http::{HttpCheck, Method};
pub use self::process::ProcessCheck;
pub use self::runner::{CheckSet, Report};
pub use self::systemd::SystemdCheck;
pub use self::tcp::TcpCheck;

/// One `[[checks]]` entry: a name, a schedule, and exactly one kind
/// sub-table (`process`, `systemd`, `tcp`, `http`, `database`, `command`).
///
/// The kind is a sub-table rather than a `kind = "…"` tag so that serde
/// reads each entry without buffering it, and a mistake is reported at its
/// own line rather than at the first `[[checks]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    /// Unique among the agent's checks; the `check` label.
    pub name: String,
    #[serde(with = "cfg::duration", default = "default_interval")]
    pub interval: Duration,
    #[serde(with = "cfg::duration", default = "default_timeout")]
    pub timeout: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd: Option<SystemdCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandCheck>,
}

fn default_interval() -> Duration {
    Duration::from_secs(60)
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Longest check name: it is a label value on every series of the check.
const MAX_NAME_LEN: usize = 64;

impl CheckConfig {
    /// A check of one kind with the default schedule (for tests and
    /// examples).
    pub fn new(name: &str) -> CheckConfig {
        CheckConfig {
            name: name.to_owned(),
            interval: default_interval(),
            timeout: default_timeout(),
            process: None,
            systemd: None,
            tcp: None,
            http: None,
            database: None,
            command: None,
        }
    }

    /// Makes relative file names (an HTTP check's `ca_file`) relative to
    /// `base`, the config file's folder.
    pub fn resolve(&mut self, base: &Path) {
        if let Some(http) = &mut self.http {
            if let Some(ca) = &mut http.ca_file {
                if ca.is_relative() {
                    *ca = base.join(&*ca);
                }
            }
        }
    }

    /// The kind sub-tables that are set, by name.
    fn kinds_set(&self) -> Vec<&'static str> {
        let mut set = Vec::new();
        for (kind, present) in [
            (Kind::Process, self.process.is_some()),
            (Kind::Systemd, self.systemd.is_some()),
            (Kind::Tcp, self.tcp.is_some()),
            (Kind::Http, self.http.is_some()),
            (Kind::Database, self.database.is_some()),
            (Kind::Command, self.command.is_some()),
        ] {
            if present {
                set.push(kind.as_str());
            }
        }
        set
    }

    /// The ready-to-run check, or every problem with this entry, each
    /// naming its key under `key` (`checks[2]`).
    pub fn compile(&self, key: &str) -> Result<Check, Vec<String>> {
        let mut problems = Vec::new();
        if self.name.trim().is_empty() {
            problems.push(format!("{key}.name: must not be empty"));
        } else if self.name.len() > MAX_NAME_LEN || self.name.chars().any(char::is_control) {
            problems.push(format!(
                "{key}.name: {:?} is not a usable name (at most {MAX_NAME_LEN} bytes, no control characters)",
                self.name
            ));
        }
        if self.interval < Duration::from_secs(1) {
            problems.push(format!("{key}.interval: at least 1s"));
        }
        if self.timeout.is_zero() {
            problems.push(format!("{key}.timeout: must be over 0"));
        } else if self.timeout > self.interval {
            problems.push(format!(
                "{key}.timeout: {} is longer than the interval ({})",
                humantime::format_duration(self.timeout),
                humantime::format_duration(self.interval)
            ));
        }
        let kinds = self.kinds_set();
        if kinds.len() != 1 {
            problems.push(format!(
                "{key}: give exactly one of process, systemd, tcp, http, database, command (found {})",
                if kinds.is_empty() { "none".to_owned() } else { kinds.join(", ") }
            ));
        }
        let probe = self.probe(key, &mut problems);
        match probe {
            Some((probe, target)) if problems.is_empty() => Ok(Check {
                name: self.name.clone(),
                kind: probe.kind(),
                target,
                interval: self.interval,
                timeout: self.timeout,
                probe,
            }),
            _ => Err(problems),
        }
    }

    /// The first kind set, compiled; problems go to `problems`.
    fn probe(&self, key: &str, problems: &mut Vec<String>) -> Option<(Probe, String)> {
        let result = if let Some(c) = &self.process {
            c.compile(&format!("{key}.process"))
                .map(|(p, t)| (Probe::Process(p), t))
        } else if let Some(c) = &self.systemd {
            c.compile(&format!("{key}.systemd"))
                .map(|(p, t)| (Probe::Systemd(p), t))
        } else if let Some(c) = &self.tcp {
            c.compile(&format!("{key}.tcp"))
                .map(|(p, t)| (Probe::Tcp(p), t))
        } else if let Some(c) = &self.http {
            c.compile(&format!("{key}.http"))
                .map(|(p, t)| (Probe::Http(Box::new(p)), t))
        } else if let Some(c) = &self.database {
            c.compile(&format!("{key}.database"))
                .map(|(p, t)| (Probe::Database(p), t))
        } else if let Some(c) = &self.command {
            c.compile(&format!("{key}.command"))
                .map(|(p, t)| (Probe::Command(p), t))
        } else {
            return None;
        };
        result.map_err(|mut p| problems.append(&mut p)).ok()
    }
}

/// Every problem with a list of checks: each entry's, and duplicate names.
pub fn validate(checks: &[CheckConfig]) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, check) in checks.iter().enumerate() {
        let key = format!("checks[{i}]");
        if let Err(mut p) = check.compile(&key) {
            problems.append(&mut p);
        }
        if let Some(first) = checks[..i].iter().position(|c| c.name == check.name) {
            problems.push(format!(
                "{key}.name: {:?} is already the name of checks[{first}]",
                check.name
            ));
        }
    }
    problems
}

/// The kind of a check; the `kind` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Process,
    Systemd,
    Tcp,
    Http,
    Database,
    Command,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Process => "process",
            Kind::Systemd => "systemd",
            Kind::Tcp => "tcp",
            Kind::Http => "http",
            Kind::Database => "database",
            Kind::Command => "command",
        }
    }
}

/// A check's verdict, in the four states of a Nagios plugin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    Ok,
    Warning,
    Critical,
    #[default]
    Unknown,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Ok,
        Status::Warning,
        Status::Critical,
        Status::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Critical => "critical",
            Status::Unknown => "unknown",
        }
    }

    /// What the status says about the service: a warning still serves.
    pub fn service_state(self) -> ServiceState {
        match self {
            Status::Ok | Status::Warning => ServiceState::Up,
            Status::Critical => ServiceState::Down,
            Status::Unknown => ServiceState::Unknown,
        }
    }
}

/// Up, down, or not known (`patrol_service_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceState {
    Up,
    Down,
    Unknown,
}

impl ServiceState {
    pub const ALL: [ServiceState; 3] =
        [ServiceState::Up, ServiceState::Down, ServiceState::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Up => "up",
            ServiceState::Down => "down",
            ServiceState::Unknown => "unknown",
        }
    }
}

/// What one run of a check found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observation {
    pub status: Status,
    /// One line for people: what was seen, or what went wrong.
    pub message: String,
    pub details: Details,
}

impl Observation {
    pub fn new(status: Status, message: impl Into<String>) -> Observation {
        Observation {
            status,
            message: message.into(),
            details: Details::default(),
        }
    }

    pub fn ok(message: impl Into<String>) -> Observation {
        Observation::new(Status::Ok, message)
    }

    pub fn critical(message: impl Into<String>) -> Observation {
        Observation::new(Status::Critical, message)
    }

    pub fn unknown(message: impl Into<String>) -> Observation {
        Observation::new(Status::Unknown, message)
    }
}

/// The figures a kind measured besides its status.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Details {
    pub process: Option<ProcessFigures>,
    /// The HTTP status code answered.
    pub http_status: Option<u16>,
    /// When the server's TLS certificate expires, in Unix seconds.
    pub cert_not_after: Option<i64>,
    /// The version a database announced.
    pub version: Option<String>,
    /// A systemd unit's ActiveState and SubState.
    pub unit_state: Option<(String, String)>,
    /// A plugin's performance data, in base units.
    pub perfdata: Vec<Perfdatum>,
}

/// The processes a process check matched, together.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ProcessFigures {
    pub count: u64,
    pub resident_bytes: f64,
    pub cpu_seconds: f64,
}

/// One `label=value[UOM]` of a plugin's performance data.
#[derive(Debug, Clone, PartialEq)]
pub struct Perfdatum {
    pub label: String,
    /// Converted to base units: seconds, bytes; percentages stay 0–100.
    pub value: f64,
}

/// What the checks read of the machine they run on; tests point it at
/// fixtures.
#[derive(Debug, Clone)]
pub struct Env {
    /// Where procfs is mounted.
    pub proc_path: PathBuf,
    /// A process never counted by process checks: the agent itself, whose
    /// command line would otherwise match patterns taken from its config.
    pub exclude_pid: Option<u32>,
    /// Exists only while systemd is the init system (sd_booted(3)).
    pub systemd_marker: PathBuf,
    /// The systemctl program (found in PATH when bare).
    pub systemctl: PathBuf,
}

impl Env {
    /// The live host: procfs at `proc_path`, the agent excluded.
    pub fn host(proc_path: &Path) -> Env {
        Env {
            proc_path: proc_path.to_owned(),
            exclude_pid: Some(std::process::id()),
            systemd_marker: PathBuf::from("/run/systemd/system"),
            systemctl: PathBuf::from("systemctl"),
        }
    }
}

/// A check ready to run: config checked, regexes compiled, files read.
#[derive(Debug)]
pub struct Check {
    pub name: String,
    pub kind: Kind,
    /// What is checked, as the `target` label shows it.
    pub target: String,
    pub interval: Duration,
    pub timeout: Duration,
    probe: Probe,
}

#[derive(Debug)]
enum Probe {
    Process(process::Probe),
    Systemd(systemd::Probe),
    Tcp(tcp::Probe),
    Http(Box<http::Probe>),
    Database(database::Probe),
    Command(command::Probe),
}

impl Probe {
    fn kind(&self) -> Kind {
        match self {
            Probe::Process(_) => Kind::Process,
            Probe::Systemd(_) => Kind::Systemd,
            Probe::Tcp(_) => Kind::Tcp,
            Probe::Http(_) => Kind::Http,
            Probe::Database(_) => Kind::Database,
            Probe::Command(_) => Kind::Command,
        }
    }
}

impl Check {
    /// Runs the check once. Every kind keeps to `self.timeout` itself (a
    /// command's process group is killed at it); the runner adds a margin
    /// on top as a backstop.
    pub async fn run(&self, env: &Env) -> Observation {
        let timeout = self.timeout;
        match &self.probe {
            Probe::Process(p) => p.run(env, timeout).await,
            Probe::Systemd(p) => p.run(env, timeout).await,
            Probe::Tcp(p) => p.run(timeout).await,
            Probe::Http(p) => p.run(timeout).await,
            Probe::Database(p) => p.run(timeout).await,
            Probe::Command(p) => p.run(timeout).await,
        }
    }
}

/// Text from a peer or a program, made safe for a log line or a label
/// value: control characters dropped, at most `max` characters.
pub(crate) fn printable(bytes: &[u8], max: usize) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .filter(|c| !c.is_control())
        .take(max)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// "1.5s", "250ms": a duration for a message.
pub(crate) fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_millis(d.as_millis() as u64)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(name: &str, address: &str) -> CheckConfig {
        CheckConfig {
            tcp: Some(TcpCheck {
                address: address.into(),
            }),
            ..CheckConfig::new(name)
        }
    }

    #[test]
    fn a_valid_check_compiles_with_its_target() {
        let check = tcp("pg", "127.0.0.1:5432").compile("checks[0]").unwrap();
        assert_eq!(check.kind, Kind::Tcp);
        assert_eq!(check.target, "127.0.0.1:5432");
    }

    #[test]
    fn every_problem_of_an_entry_is_named_by_key() {
        let mut c = tcp("", "nowhere");
        c.timeout = Duration::from_secs(120);
        c.http = Some(HttpCheck::new("http://x/"));
        let problems = c.compile("checks[3]").unwrap_err();
        let text = problems.join("\n");
        assert!(text.contains("checks[3].name"), "{text}");
        assert!(text.contains("checks[3].timeout"), "{text}");
        assert!(text.contains("exactly one of"), "{text}");
        assert!(text.contains("found tcp, http"), "{text}");
        assert!(text.contains("checks[3].tcp.address"), "{text}");
    }

    #[test]
    fn duplicate_names_are_reported() {
        let problems = validate(&[
            tcp("a", "127.0.0.1:1"),
            tcp("b", "127.0.0.1:2"),
            tcp("a", "127.0.0.1:3"),
        ]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("checks[2].name"), "{problems:?}");
        assert!(problems[0].contains("checks[0]"), "{problems:?}");
    }

    #[test]
    fn warning_still_serves_and_unknown_is_not_down() {
        assert_eq!(Status::Warning.service_state(), ServiceState::Up);
        assert_eq!(Status::Critical.service_state(), ServiceState::Down);
        assert_eq!(Status::Unknown.service_state(), ServiceState::Unknown);
    }

    #[test]
    fn printable_drops_control_characters_and_bounds_length() {
        assert_eq!(printable(b"8.0.36\x00\x1b[31m", 64), "8.0.36[31m");
        assert_eq!(printable(&[0xff, b'a', b'b', b'c'], 2), "\u{fffd}a");
    }
}
