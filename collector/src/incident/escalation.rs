//! Escalation: who must hear of an unacknowledged ticket, and when. Per
//! priority, the on-call primary is told at once, the secondary once a
//! fraction of the response clock has gone by unacknowledged, the person in
//! charge (负责人) at the breach; each level can repeat until someone
//! acknowledges.
//!
//! [`due`] is a pure function of the ticket, its SLA config, the schedule and
//! `now`. What was already sent is read from the ticket's timeline (each step
//! becomes an `escalated` event there), so after a restart nothing pending is
//! lost and nothing is sent twice. Delivery goes through the notification
//! outbox once it is wired.

use std::time::Duration;

use patrol_shared::config as cfg;
use serde::{Deserialize, Serialize};

use super::oncall::{Role, Schedule};
use super::sla::{self, ClockKind, SlaConfig};
use super::ticket::{EventKind, Priority, Ticket};

/// How far up a step goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Primary,
    Secondary,
    PersonInCharge,
}

/// One escalation sent (or to send): also the payload of its timeline event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub level: Level,
    /// Who is told; empty only when nobody could be found at all.
    pub to: Vec<String>,
    /// 0 for the first notice, then 1, 2, … for repeats.
    pub round: u32,
    pub reason: String,
}

/// The escalation rules for some priorities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationPolicy {
    /// Empty: every priority.
    #[serde(default)]
    pub priorities: Vec<Priority>,
    /// The on-call schedule's name.
    pub schedule: String,
    /// Fraction of the response clock after which the secondary is told.
    #[serde(default = "half")]
    pub secondary_at: f64,
    /// The people in charge, told at the breach (and when no one is on call).
    pub person_in_charge: Vec<String>,
    /// Repeat each level at this interval until acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<Interval>,
}

/// An interval as people write it ("30m").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Interval(#[serde(with = "cfg::duration")] pub Duration);

fn half() -> f64 {
    0.5
}

impl EscalationPolicy {
    /// Every problem, each saying where.
    pub fn validate(&self, at: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if !(self.secondary_at > 0.0 && self.secondary_at < 1.0) {
            problems.push(format!(
                "{at}.secondary_at = {}: expected a fraction between 0 and 1",
                self.secondary_at
            ));
        }
        if self.person_in_charge.is_empty() {
            problems.push(format!("{at}.person_in_charge: name at least one person"));
        }
        if self.repeat.is_some_and(|r| r.0 < Duration::from_secs(60)) {
            problems.push(format!("{at}.repeat: repeat at most once a minute"));
        }
        problems
    }

    pub fn applies_to(&self, priority: Priority) -> bool {
        self.priorities.is_empty() || self.priorities.contains(&priority)
    }
}

/// The escalation steps due for a ticket at `now`, in level order.
pub fn due(
    ticket: &Ticket,
    sla: &SlaConfig,
    policy: &EscalationPolicy,
    schedule: Option<&Schedule>,
    now: i64,
) -> Vec<Step> {
    // Escalation chases acknowledgement; a ticket someone has taken up, or
    // that waits for the customer, needs nobody woken.
    if !ticket.state.is_unacknowledged() || ticket.waiting {
        return Vec::new();
    }
    let episode = ticket.episode_start();
    let sent: Vec<(i64, &Step)> = ticket
        .timeline
        .iter()
        .filter(|e| e.at >= episode)
        .filter_map(|e| match &e.what {
            EventKind::Escalated(step) => Some((e.at, step)),
            _ => None,
        })
        .collect();
    let response = response_progress(ticket, sla, now);
    let mut steps = Vec::new();
    for level in [Level::Primary, Level::Secondary, Level::PersonInCharge] {
        let reached = match (level, response) {
            (Level::Primary, _) => true,
            (Level::Secondary, Some((spent, target))) => {
                spent as f64 >= policy.secondary_at * target as f64
            }
            (Level::PersonInCharge, Some((spent, target))) => spent >= target,
            (_, None) => false,
        };
        if !reached {
            continue;
        }
        let last = sent
            .iter()
            .filter(|(_, s)| s.level == level)
            .max_by_key(|(at, s)| (s.round, *at));
        let round = match (last, policy.repeat) {
            (None, _) => 0,
            (Some((at, s)), Some(every)) if now - at >= ms(every.0) => s.round + 1,
            _ => continue,
        };
        steps.push(step(level, round, policy, schedule, now));
    }
    steps
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Calendar time spent on the current response clock and its target.
fn response_progress(ticket: &Ticket, sla: &SlaConfig, now: i64) -> Option<(i64, i64)> {
    let policy = sla.policy_for(ticket.kind, ticket.priority)?;
    let clocks = sla::replay(ticket, sla);
    let clock = clocks.get(&ClockKind::Response)?;
    Some((clock.spent(sla.calendar_of(policy), now), clock.target_ms))
}

fn step(
    level: Level,
    round: u32,
    policy: &EscalationPolicy,
    schedule: Option<&Schedule>,
    now: i64,
) -> Step {
    let role = match level {
        Level::Primary => Some(Role::Primary),
        Level::Secondary => Some(Role::Secondary),
        Level::PersonInCharge => None,
    };
    let why = match level {
        Level::Primary => "ticket opened",
        Level::Secondary => "not acknowledged in time",
        Level::PersonInCharge => "response deadline breached",
    };
    let on_call = role.and_then(|r| schedule.and_then(|s| s.on_call(r, now)));
    let (to, reason) = match (role, on_call) {
        (None, _) => (policy.person_in_charge.clone(), why.to_string()),
        (Some(_), Some(on)) => (vec![on.who], why.to_string()),
        // A gap in coverage must not swallow the alarm: whoever is in charge
        // hears of it instead.
        (Some(r), None) => (
            policy.person_in_charge.clone(),
            format!(
                "{why}; nobody on call as {r:?} in schedule {:?}",
                policy.schedule
            ),
        ),
    };
    let reason = if round > 0 {
        format!("{reason} (repeat {round})")
    } else {
        reason
    };
    Step {
        level,
        to,
        round,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::ticket::{Action, NewTicket, TicketKind};

    const M: i64 = 60_000;

    fn policy(repeat: Option<u64>) -> EscalationPolicy {
        EscalationPolicy {
            priorities: vec![],
            schedule: "ops".into(),
            secondary_at: 0.5,
            person_in_charge: vec!["boss".into()],
            repeat: repeat.map(|m| Interval(Duration::from_secs(m * 60))),
        }
    }

    fn ticket() -> Ticket {
        Ticket::open(
            3,
            NewTicket {
                kind: TicketKind::Fault,
                title: "db1 down".into(),
                description: String::new(),
                host: Some("db1".into()),
                priority: Priority::Critical,
                reporter: "patrol".into(),
                contact: String::new(),
            },
            0,
        )
    }

    fn send(t: &mut Ticket, steps: Vec<Step>, now: i64) {
        for s in steps {
            t.record(now, "patrol", EventKind::Escalated(s));
        }
    }

    #[test]
    fn nobody_on_call_falls_back_to_person_in_charge() {
        let t = ticket();
        let steps = due(&t, &SlaConfig::default(), &policy(None), None, 0);
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].to, ["boss"]);
        assert!(
            steps[0].reason.contains("nobody on call"),
            "{}",
            steps[0].reason
        );
    }

    #[test]
    fn levels_repeat_until_acknowledged() {
        let sla = SlaConfig::default();
        let p = policy(Some(30));
        let mut t = ticket();
        let steps = due(&t, &sla, &p, None, 0);
        send(&mut t, steps, 0);
        assert!(due(&t, &sla, &p, None, 29 * M).is_empty());
        let steps = due(&t, &sla, &p, None, 30 * M);
        assert_eq!((steps[0].level, steps[0].round), (Level::Primary, 1));
        send(&mut t, steps, 30 * M);
        let steps = due(&t, &sla, &p, None, 60 * M);
        let levels: Vec<_> = steps.iter().map(|s| (s.level, s.round)).collect();
        assert_eq!(levels, [(Level::Primary, 2), (Level::Secondary, 0)]);
        t.apply(Action::Acknowledge, "anna", 61 * M).unwrap();
        assert!(due(&t, &sla, &p, None, 200 * M).is_empty());
    }

    #[test]
    fn policy_validation_names_fields() {
        let mut p = policy(Some(0));
        p.secondary_at = 1.5;
        p.person_in_charge.clear();
        assert_eq!(p.validate("escalation[0]").len(), 3);
    }
}
