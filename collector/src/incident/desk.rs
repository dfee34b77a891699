//! The service desk: every ticket, the alert → ticket mapping, and the
//! periodic tick that records SLA warnings, breaches and escalations.
//!
//! A firing (not silenced: the caller filters those) alert whose `severity`
//! maps to a priority opens one ticket per alert fingerprint. Firing again
//! while that ticket is unresolved goes onto it; firing within the reopen
//! window after it was resolved or closed reopens it; later, it opens a new
//! ticket. An alert resolving only records "recovered": a person closes the
//! ticket, with a solution.
//!
//! [`Desk`] is plain state (serde), and its config is passed to each call, so
//! the store can keep the one and reload the other; time is always `now`.

use std::collections::BTreeMap;
use std::time::Duration;

use patrol_shared::config as cfg;
use serde::{Deserialize, Serialize};

use super::escalation::{self, EscalationPolicy};
use super::notice::NoticeConfig;
use super::oncall::{Override, Role, Schedule};
use super::sla::{self, SlaConfig};
use super::ticket::{
    Action, AlertRef, Event, EventKind, NewTicket, Priority, Ticket, TicketError, TicketKind,
};

/// The actor of what the system does.
pub const SYSTEM: &str = "patrol";

/// Incident settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentConfig {
    #[serde(default)]
    pub sla: SlaConfig,
    /// The first policy matching a ticket's priority applies.
    #[serde(default)]
    pub escalation: Vec<EscalationPolicy>,
    #[serde(default)]
    pub schedules: Vec<Schedule>,
    /// How long after a ticket was resolved or closed its alert reopens it.
    #[serde(default = "default_reopen_window", with = "cfg::duration")]
    pub reopen_window: Duration,
    /// Alert `severity` label → ticket priority; other severities open none.
    #[serde(default = "default_severities")]
    pub severities: BTreeMap<String, Priority>,
    /// Which ticket events go out through the notification outbox.
    #[serde(default)]
    pub notify: NoticeConfig,
    /// Person → the receivers (from `[notify]`) that reach them, for the
    /// escalations and assignments that name them.
    #[serde(default)]
    pub contacts: BTreeMap<String, Vec<String>>,
}

fn default_reopen_window() -> Duration {
    Duration::from_secs(24 * 3600)
}

fn default_severities() -> BTreeMap<String, Priority> {
    BTreeMap::from([
        ("critical".to_string(), Priority::Critical),
        ("warning".to_string(), Priority::High),
    ])
}

impl Default for IncidentConfig {
    fn default() -> Self {
        IncidentConfig {
            sla: SlaConfig::default(),
            escalation: Vec::new(),
            schedules: Vec::new(),
            reopen_window: default_reopen_window(),
            severities: default_severities(),
            notify: NoticeConfig::default(),
            contacts: BTreeMap::new(),
        }
    }
}

impl IncidentConfig {
    /// Every problem in the incident config, each saying where.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = self.sla.validate();
        problems.extend(self.notify.validate_events());
        for (i, p) in self.escalation.iter().enumerate() {
            problems.extend(p.validate(&format!("escalation[{i}]")));
            if !self.schedules.iter().any(|s| s.name == p.schedule) {
                problems.push(format!(
                    "escalation[{i}].schedule: no schedule named {:?}",
                    p.schedule
                ));
            }
        }
        for s in &self.schedules {
            problems.extend(s.validate());
        }
        problems
    }

    pub fn schedule(&self, name: &str) -> Option<&Schedule> {
        self.schedules.iter().find(|s| s.name == name)
    }
}

/// A firing or resolved alert, as the rule engine reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertSignal {
    pub fingerprint: u64,
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// What a firing alert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "ticket", rename_all = "snake_case")]
pub enum AlertOutcome {
    Opened(u64),
    /// Went onto its unresolved ticket.
    Attached(u64),
    Reopened(u64),
    /// Its severity opens no ticket.
    Ignored,
}

/// All tickets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Desk {
    pub tickets: BTreeMap<u64, Ticket>,
    /// Alert fingerprint → its latest ticket.
    pub by_fingerprint: BTreeMap<u64, u64>,
    pub next_id: u64,
    /// Ticket → how many of its timeline events are in the notification
    /// outbox (or were let go because nothing was to be told).
    #[serde(default)]
    pub notified: BTreeMap<u64, usize>,
    /// Overrides people made over the API, on top of the config's.
    #[serde(default)]
    pub overrides: Vec<ApiOverride>,
    #[serde(default)]
    pub next_override: u64,
}

/// An override made over the API: someone stands in on a layer of a
/// schedule for a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiOverride {
    pub id: u64,
    pub schedule: String,
    pub role: Role,
    pub who: String,
    /// Unix ms, `[starts_at, ends_at)`.
    pub starts_at: i64,
    pub ends_at: i64,
    pub created_at: i64,
    pub created_by: String,
    #[serde(default)]
    pub reason: String,
}

/// Why an override was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    #[error("no schedule named {0:?}")]
    NoSchedule(String),
    #[error("role: schedule {schedule:?} has no {} layer", role.as_str())]
    NoLayer { schedule: String, role: Role },
    #[error("{0}")]
    Invalid(String),
    #[error("schedule {schedule:?} has no override {id}")]
    NotFound { schedule: String, id: u64 },
}

impl Desk {
    pub fn get(&self, id: u64) -> Option<&Ticket> {
        self.tickets.get(&id)
    }

    /// The config's schedules with the API's overrides added.
    pub fn schedules(&self, config: &IncidentConfig) -> Vec<Schedule> {
        let mut out = config.schedules.clone();
        for s in &mut out {
            s.overrides.extend(
                self.overrides
                    .iter()
                    .filter(|o| o.schedule == s.name)
                    .map(|o| Override {
                        role: o.role,
                        who: o.who.clone(),
                        starts_at: o.starts_at,
                        ends_at: o.ends_at,
                        created_at: o.created_at,
                    }),
            );
        }
        out
    }

    /// Puts `who` on a layer of a schedule for `[starts_at, ends_at)`;
    /// returns the override's id.
    #[allow(clippy::too_many_arguments)]
    pub fn add_override(
        &mut self,
        config: &IncidentConfig,
        schedule: &str,
        role: Role,
        who: &str,
        starts_at: i64,
        ends_at: i64,
        by: &str,
        reason: &str,
        now: i64,
    ) -> Result<u64, OverrideError> {
        let s = config
            .schedule(schedule)
            .ok_or_else(|| OverrideError::NoSchedule(schedule.to_owned()))?;
        if !s.roles().contains(&role) {
            return Err(OverrideError::NoLayer {
                schedule: schedule.to_owned(),
                role,
            });
        }
        if who.trim().is_empty() {
            return Err(OverrideError::Invalid(
                "who: name the person on call".into(),
            ));
        }
        if ends_at <= starts_at {
            return Err(OverrideError::Invalid(
                "to: the override must end after it starts (from)".into(),
            ));
        }
        self.next_override += 1;
        let id = self.next_override;
        self.overrides.push(ApiOverride {
            id,
            schedule: schedule.to_owned(),
            role,
            who: who.trim().to_owned(),
            starts_at,
            ends_at,
            created_at: now,
            created_by: by.to_owned(),
            reason: reason.to_owned(),
        });
        Ok(id)
    }

    /// Takes an API override back.
    pub fn remove_override(&mut self, schedule: &str, id: u64) -> Result<(), OverrideError> {
        let before = self.overrides.len();
        self.overrides
            .retain(|o| !(o.id == id && o.schedule == schedule));
        if self.overrides.len() == before {
            return Err(OverrideError::NotFound {
                schedule: schedule.to_owned(),
                id,
            });
        }
        Ok(())
    }

    /// Opens a ticket by hand.
    pub fn open(&mut self, new: NewTicket, now: i64) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.tickets.insert(id, Ticket::open(id, new, now));
        id
    }

    /// A person acts on a ticket.
    pub fn act(
        &mut self,
        id: u64,
        action: Action,
        actor: &str,
        now: i64,
    ) -> Result<(), TicketError> {
        self.tickets
            .get_mut(&id)
            .ok_or(TicketError::NotFound(id))?
            .apply(action, actor, now)
    }

    /// An alert is firing (call it on every evaluation; it is idempotent).
    pub fn alert_firing(
        &mut self,
        config: &IncidentConfig,
        alert: &AlertSignal,
        now: i64,
    ) -> AlertOutcome {
        let severity = alert
            .labels
            .get("severity")
            .map(String::as_str)
            .unwrap_or("");
        let Some(priority) = config.severities.get(severity).copied() else {
            return AlertOutcome::Ignored;
        };
        let fingerprint = alert.fingerprint;
        let window = i64::try_from(config.reopen_window.as_millis()).unwrap_or(i64::MAX);
        let existing = self
            .by_fingerprint
            .get(&fingerprint)
            .and_then(|id| self.tickets.get_mut(id));
        if let Some(ticket) = existing {
            let id = ticket.id;
            if ticket.state.is_active() {
                if !ticket.alert_firing {
                    ticket.alert_firing = true;
                    ticket.record(now, SYSTEM, EventKind::AlertFired { fingerprint });
                }
                return AlertOutcome::Attached(id);
            }
            if ticket.finished_at.is_some_and(|t| now - t <= window) {
                let name = alertname(alert);
                ticket.reopen(format!("alert {name} fired again"), SYSTEM, now);
                ticket.alert_firing = true;
                ticket.record(now, SYSTEM, EventKind::AlertFired { fingerprint });
                return AlertOutcome::Reopened(id);
            }
        }
        let id = self.open(new_from_alert(alert, priority), now);
        self.by_fingerprint.insert(fingerprint, id);
        if let Some(ticket) = self.tickets.get_mut(&id) {
            ticket.alert = Some(AlertRef {
                fingerprint,
                alertname: alertname(alert).to_string(),
            });
            ticket.alert_firing = true;
            ticket.record(now, SYSTEM, EventKind::AlertFired { fingerprint });
        }
        AlertOutcome::Opened(id)
    }

    /// An alert resolved: its ticket records the recovery and stays open.
    pub fn alert_resolved(&mut self, fingerprint: u64, now: i64) -> Option<u64> {
        let id = *self.by_fingerprint.get(&fingerprint)?;
        let ticket = self.tickets.get_mut(&id)?;
        if !ticket.alert_firing {
            return None;
        }
        ticket.alert_firing = false;
        ticket.record(now, SYSTEM, EventKind::AlertRecovered { fingerprint });
        Some(id)
    }

    /// Records the SLA warnings, breaches and escalations due at `now` on
    /// each ticket's timeline, and returns them for the outbox.
    pub fn tick(&mut self, config: &IncidentConfig, now: i64) -> Vec<(u64, Event)> {
        let mut recorded = Vec::new();
        let schedules = self.schedules(config);
        for ticket in self.tickets.values_mut() {
            if !ticket.state.is_active() {
                continue;
            }
            let mut due: Vec<EventKind> = sla::due_events(ticket, &config.sla, now);
            if let Some(policy) = config
                .escalation
                .iter()
                .find(|p| p.applies_to(ticket.priority))
            {
                let schedule = schedules.iter().find(|s| s.name == policy.schedule);
                let steps = escalation::due(ticket, &config.sla, policy, schedule, now);
                due.extend(steps.into_iter().map(EventKind::Escalated));
            }
            for what in due {
                ticket.record(now, SYSTEM, what);
                if let Some(event) = ticket.timeline.last() {
                    recorded.push((ticket.id, event.clone()));
                }
            }
        }
        recorded
    }
}

fn alertname(alert: &AlertSignal) -> &str {
    alert
        .labels
        .get("alertname")
        .map_or("unnamed", String::as_str)
}

fn new_from_alert(alert: &AlertSignal, priority: Priority) -> NewTicket {
    let name = alertname(alert);
    let host = alert.labels.get("host").cloned();
    let title = alert
        .annotations
        .get("summary")
        .cloned()
        .unwrap_or_else(|| match &host {
            Some(h) => format!("{name} on {h}"),
            None => name.to_string(),
        });
    NewTicket {
        kind: TicketKind::Fault,
        title,
        description: alert
            .annotations
            .get("description")
            .cloned()
            .unwrap_or_default(),
        host,
        priority,
        reporter: SYSTEM.to_string(),
        contact: String::new(),
    }
}

#[cfg(test)]
mod tests;
