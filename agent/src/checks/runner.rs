//! Runs each check in its own task on its own interval, keeps the latest
//! [`Report`] of each where the collection loop can read it, and tells the
//! operator (an agent event, one log line) when a check changes state.
//!
//! The collection loop never waits for a check: it adds whatever each
//! check last reported ([`CheckSet::families`]), so a slow check delays
//! nothing but itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use patrol_shared::model::{now_ms, AgentEvent, Family};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Check, Env, Kind, Observation, ServiceState, Status};

/// Added to a check's timeout before the runner gives up on it: every
/// kind keeps to its timeout itself, this is the backstop.
const BACKSTOP: Duration = Duration::from_secs(5);

/// The latest run of one check.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub observation: Observation,
    pub duration: Duration,
    /// When the run ended, Unix milliseconds.
    pub at_ms: i64,
}

/// The running checks and their latest reports.
pub struct CheckSet {
    checks: Vec<(Arc<Check>, watch::Receiver<Option<Report>>)>,
}

impl CheckSet {
    /// Starts one task per check; they end when `cancel` fires. State
    /// changes go to `events` (dropped with a log line when it is full:
    /// a check never waits for the link).
    pub fn start(
        checks: Vec<Check>,
        env: Env,
        events: mpsc::Sender<AgentEvent>,
        cancel: &CancellationToken,
    ) -> CheckSet {
        let env = Arc::new(env);
        let checks = checks
            .into_iter()
            .map(|check| {
                let check = Arc::new(check);
                let (tx, rx) = watch::channel(None);
                tokio::spawn(run_check(
                    check.clone(),
                    env.clone(),
                    tx,
                    events.clone(),
                    cancel.clone(),
                ));
                (check, rx)
            })
            .collect();
        CheckSet { checks }
    }

    /// The latest report of each check, by name; none before its first run.
    pub fn reports(&self) -> Vec<(String, Option<Report>)> {
        self.checks
            .iter()
            .map(|(c, rx)| (c.name.clone(), rx.borrow().clone()))
            .collect()
    }

    /// Every check's latest figures as metric families.
    pub fn families(&self) -> Vec<Family> {
        let reports: Vec<(Arc<Check>, Report)> = self
            .checks
            .iter()
            .filter_map(|(c, rx)| rx.borrow().clone().map(|r| (c.clone(), r)))
            .collect();
        families(reports.iter().map(|(c, r)| (&**c, r)))
    }
}

async fn run_check(
    check: Arc<Check>,
    env: Arc<Env>,
    latest: watch::Sender<Option<Report>>,
    events: mpsc::Sender<AgentEvent>,
    cancel: CancellationToken,
) {
    let mut ticker = tokio::time::interval(check.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<Status> = None;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let started = Instant::now();
        let run = tokio::time::timeout(check.timeout + BACKSTOP, check.run(&env));
        let observation = tokio::select! {
            _ = cancel.cancelled() => return,
            o = run => o.unwrap_or_else(|_| Observation::unknown(format!(
                "no result within {}", super::human(check.timeout + BACKSTOP)
            ))),
        };
        let duration = started.elapsed();
        if let Some(event) = transition(&check, last, &observation) {
            if events.try_send(event).is_err() {
                debug!(check = %check.name, "event queue full; state change not sent");
            }
        }
        last = Some(observation.status);
        latest.send_replace(Some(Report {
            observation,
            duration,
            at_ms: now_ms(),
        }));
    }
}

/// An event (and a log line) when the status changed, or when the first
/// run is not OK.
fn transition(check: &Check, last: Option<Status>, now: &Observation) -> Option<AgentEvent> {
    let message = match last {
        Some(before) if before == now.status => return None,
        None if now.status == Status::Ok => return None,
        Some(before) => format!(
            "check {} ({} {}) is {}, was {}: {}",
            check.name,
            check.kind.as_str(),
            check.target,
            now.status.as_str(),
            before.as_str(),
            now.message
        ),
        None => format!(
            "check {} ({} {}) is {}: {}",
            check.name,
            check.kind.as_str(),
            check.target,
            now.status.as_str(),
            now.message
        ),
    };
    if now.status == Status::Ok {
        info!(check = %check.name, status = now.status.as_str(), message = %now.message, "check recovered");
    } else {
        warn!(check = %check.name, status = now.status.as_str(), message = %now.message, "check changed state");
    }
    Some(AgentEvent {
        timestamp_ms: now_ms(),
        kind: "service_check".into(),
        message,
    })
}

/// The families of a set of reports, each family once, in a fixed order.
pub(crate) fn families<'a>(reports: impl Iterator<Item = (&'a Check, &'a Report)>) -> Vec<Family> {
    let mut up = Family::gauge(
        "patrol_service_up",
        "1 when the checked service is up, 0 when down; absent when its state is unknown.",
    );
    let mut state = Family::gauge(
        "patrol_service_state",
        "The checked service's state: 1 for the current one of up, down, unknown.",
    );
    let mut duration = Family::gauge(
        "patrol_check_duration_seconds",
        "How long the check's last run took.",
    );
    let mut last_run = Family::gauge(
        "patrol_check_last_run_timestamp_seconds",
        "When the check last ran.",
    );
    let mut status = Family::gauge(
        "patrol_check_status",
        "A command check's verdict: 1 for the current one of ok, warning, critical, unknown.",
    );
    let mut perfdata = Family::gauge(
        "patrol_check_perfdata",
        "A command check's performance data, in base units (seconds, bytes; percentages 0-100).",
    );
    let mut expiry = Family::gauge(
        "patrol_tls_cert_expiry_timestamp_seconds",
        "When the server's TLS certificate expires.",
    );
    let mut http_status = Family::gauge(
        "patrol_http_status_code",
        "The status code of the HTTP check's last answer.",
    );
    let mut count = Family::gauge(
        "patrol_process_count",
        "Processes matching the process check.",
    );
    let mut rss = Family::gauge(
        "patrol_process_resident_memory_bytes",
        "Resident memory of the processes matching the process check, together.",
    );
    let mut cpu = Family::counter(
        "patrol_process_cpu_seconds_total",
        "CPU time (user and system) of the processes matching the process check, together.",
    );
    let mut unit = Family::gauge(
        "patrol_systemd_unit_info",
        "A systemd unit's ActiveState and SubState as labels; always 1.",
    );
    let mut version = Family::gauge(
        "patrol_database_info",
        "The version a database server announced; always 1.",
    );
    for (check, report) in reports {
        let (name, kind, target) = (
            check.name.as_str(),
            check.kind.as_str(),
            check.target.as_str(),
        );
        let o = &report.observation;
        let current = o.status.service_state();
        match current {
            ServiceState::Up => {
                up.push(&[("check", name), ("kind", kind), ("target", target)], 1.0)
            }
            ServiceState::Down => {
                up.push(&[("check", name), ("kind", kind), ("target", target)], 0.0)
            }
            ServiceState::Unknown => {}
        }
        for s in ServiceState::ALL {
            let labels = [
                ("check", name),
                ("kind", kind),
                ("target", target),
                ("state", s.as_str()),
            ];
            state.push(&labels, f64::from(u8::from(s == current)));
        }
        duration.push(
            &[("check", name), ("kind", kind)],
            report.duration.as_secs_f64(),
        );
        last_run.push(&[("check", name)], report.at_ms as f64 / 1000.0);
        if check.kind == Kind::Command {
            for s in Status::ALL {
                status.push(
                    &[("check", name), ("status", s.as_str())],
                    f64::from(u8::from(s == o.status)),
                );
            }
        }
        let d = &o.details;
        for p in &d.perfdata {
            perfdata.push(&[("check", name), ("label", p.label.as_str())], p.value);
        }
        if let Some(t) = d.cert_not_after {
            expiry.push(&[("check", name), ("target", target)], t as f64);
        }
        if let Some(code) = d.http_status {
            http_status.push(&[("check", name), ("target", target)], f64::from(code));
        }
        if let Some(p) = &d.process {
            count.push(&[("check", name)], p.count as f64);
            rss.push(&[("check", name)], p.resident_bytes);
            cpu.push(&[("check", name)], p.cpu_seconds);
        }
        if let Some((active, sub)) = &d.unit_state {
            let labels = [
                ("check", name),
                ("unit", target),
                ("active_state", active.as_str()),
                ("sub_state", sub.as_str()),
            ];
            unit.push(&labels, 1.0);
        }
        if let Some(v) = &d.version {
            version.push(
                &[("check", name), ("target", target), ("version", v.as_str())],
                1.0,
            );
        }
    }
    [
        up,
        state,
        duration,
        last_run,
        status,
        perfdata,
        expiry,
        http_status,
        count,
        rss,
        cpu,
        unit,
        version,
    ]
    .into_iter()
    .filter(|f| !f.series.is_empty())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::{CheckConfig, CommandCheck, Perfdatum, SystemdCheck, TcpCheck};

    fn check(config: CheckConfig) -> Check {
        config.compile("c").unwrap()
    }

    fn report(status: Status) -> Report {
        Report {
            observation: Observation::new(status, "seen"),
            duration: Duration::from_millis(250),
            at_ms: 1_700_000_000_000,
        }
    }

    fn series<'a>(families: &'a [Family], name: &str) -> Vec<(Vec<(&'a str, &'a str)>, f64)> {
        families
            .iter()
            .filter(|f| f.name == name)
            .flat_map(|f| &f.series)
            .map(|s| {
                let labels = s
                    .labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                (labels, s.value)
            })
            .collect()
    }

    #[test]
    fn unknown_leaves_service_up_out_and_says_so_in_service_state() {
        let unit = check(CheckConfig {
            systemd: Some(SystemdCheck {
                unit: "nginx.service".into(),
            }),
            ..CheckConfig::new("nginx")
        });
        let db = check(CheckConfig {
            tcp: Some(TcpCheck {
                address: "127.0.0.1:5432".into(),
            }),
            ..CheckConfig::new("pg")
        });
        let (r1, r2) = (report(Status::Unknown), report(Status::Critical));
        let f = families([(&unit, &r1), (&db, &r2)].into_iter());
        assert_eq!(
            series(&f, "patrol_service_up"),
            vec![(
                vec![
                    ("check", "pg"),
                    ("kind", "tcp"),
                    ("target", "127.0.0.1:5432")
                ],
                0.0
            )]
        );
        let states = series(&f, "patrol_service_state");
        assert_eq!(states.len(), 6);
        assert!(states.contains(&(
            vec![
                ("check", "nginx"),
                ("kind", "systemd"),
                ("target", "nginx.service"),
                ("state", "unknown")
            ],
            1.0
        )));
        assert!(states.contains(&(
            vec![
                ("check", "nginx"),
                ("kind", "systemd"),
                ("target", "nginx.service"),
                ("state", "down")
            ],
            0.0
        )));
        assert_eq!(series(&f, "patrol_check_duration_seconds")[0].1, 0.25);
        assert!(series(&f, "patrol_check_status").is_empty());
        // Each family appears once, however many checks feed it.
        let mut names: Vec<_> = f.iter().map(|f| f.name.as_str()).collect();
        names.dedup();
        assert_eq!(names.len(), f.len());
    }

    #[test]
    fn command_checks_report_their_status_set_and_perfdata() {
        let plugin = check(CheckConfig {
            command: Some(CommandCheck {
                argv: vec!["check_load".into()],
                env: Default::default(),
            }),
            ..CheckConfig::new("load")
        });
        let mut r = report(Status::Warning);
        r.observation.details.perfdata = vec![Perfdatum {
            label: "load1".into(),
            value: 4.5,
        }];
        let f = families([(&plugin, &r)].into_iter());
        let status = series(&f, "patrol_check_status");
        assert!(status.contains(&(vec![("check", "load"), ("status", "warning")], 1.0)));
        assert!(status.contains(&(vec![("check", "load"), ("status", "ok")], 0.0)));
        assert_eq!(
            series(&f, "patrol_check_perfdata"),
            vec![(vec![("check", "load"), ("label", "load1")], 4.5)]
        );
        // A warning still serves.
        assert_eq!(series(&f, "patrol_service_up")[0].1, 1.0);
    }

    #[test]
    fn events_mark_changes_and_a_bad_start() {
        let c = check(CheckConfig {
            tcp: Some(TcpCheck {
                address: "127.0.0.1:1".into(),
            }),
            ..CheckConfig::new("t")
        });
        let ok = Observation::ok("fine");
        let down = Observation::critical("refused");
        assert!(transition(&c, None, &ok).is_none());
        assert!(transition(&c, Some(Status::Ok), &ok).is_none());
        let e = transition(&c, Some(Status::Ok), &down).unwrap();
        assert_eq!(e.kind, "service_check");
        assert_eq!(
            e.message,
            "check t (tcp 127.0.0.1:1) is critical, was ok: refused"
        );
        assert!(transition(&c, None, &down).is_some());
        assert!(transition(&c, Some(Status::Critical), &ok).is_some());
    }
}
