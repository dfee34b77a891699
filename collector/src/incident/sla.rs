//! SLA clocks: how long the team has to respond to, solve and attend a
//! ticket, counted in calendar time. The targets come from a policy chosen by
//! ticket kind and priority; the contract's figures are the defaults
//! (fault: response 2 h, solution 4 h, on site 12 h; consultation: response
//! 2 h, solution 24 h).
//!
//! Clocks are not stored: they are replayed from the ticket's timeline
//! ([`replay`]), so a ticket restored after a restart has exactly the clocks it
//! had, and the timeline stays the one source of truth. Events drive them:
//! opening starts response and solution; the first acknowledgement, start of
//! work, answer or resolution stops response; resolution stops solution;
//! on-site attendance runs from its request to the arrival; waiting for the
//! customer pauses what runs; a reopen starts a fresh response clock and
//! lets the solution clock run on from where it stopped.
//!
//! A clock is breached once its spent time reaches the target: the due time
//! is the deadline itself, so stopping exactly at it is late.

use std::collections::BTreeMap;
use std::time::Duration;

use patrol_shared::config as cfg;
use serde::{Deserialize, Serialize};

use super::calendar::Calendar;
use super::ticket::{EventKind, Priority, Ticket, TicketKind};

/// Which promise a clock measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockKind {
    Response,
    Solution,
    OnSite,
}

impl ClockKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClockKind::Response => "response",
            ClockKind::Solution => "solution",
            ClockKind::OnSite => "on_site",
        }
    }
}

/// A target as people write it ("2h").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Target(#[serde(with = "cfg::duration")] pub Duration);

impl Target {
    fn ms(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }
}

/// The targets for tickets of one kind (and some priorities).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaPolicy {
    pub kind: TicketKind,
    /// Empty: every priority.
    #[serde(default)]
    pub priorities: Vec<Priority>,
    pub targets: BTreeMap<ClockKind, Target>,
    /// Overrides the config's calendar for these tickets.
    #[serde(default)]
    pub calendar: Option<Calendar>,
}

/// Every SLA policy, the calendar and the warning thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaConfig {
    /// The first policy that matches a ticket's kind and priority applies.
    #[serde(default = "contract_policies")]
    pub policies: Vec<SlaPolicy>,
    /// Fractions of a target at which a warning is recorded.
    #[serde(default = "default_warnings")]
    pub warn_at: Vec<f64>,
    #[serde(default)]
    pub calendar: Calendar,
}

impl Default for SlaConfig {
    fn default() -> Self {
        SlaConfig {
            policies: contract_policies(),
            warn_at: default_warnings(),
            calendar: Calendar::AlwaysOn,
        }
    }
}

fn default_warnings() -> Vec<f64> {
    vec![0.5, 0.8]
}

const HOUR: u64 = 3600;

/// The contract's figures.
fn contract_policies() -> Vec<SlaPolicy> {
    let hours = |h| Target(Duration::from_secs(h * HOUR));
    vec![
        SlaPolicy {
            kind: TicketKind::Fault,
            priorities: Vec::new(),
            targets: BTreeMap::from([
                (ClockKind::Response, hours(2)),
                (ClockKind::Solution, hours(4)),
                (ClockKind::OnSite, hours(12)),
            ]),
            calendar: None,
        },
        SlaPolicy {
            kind: TicketKind::Consultation,
            priorities: Vec::new(),
            targets: BTreeMap::from([
                (ClockKind::Response, hours(2)),
                (ClockKind::Solution, hours(24)),
            ]),
            calendar: None,
        },
    ]
}

impl SlaConfig {
    /// Every problem, each saying where.
    pub fn validate(&self) -> Vec<String> {
        let mut problems: Vec<String> = self.calendar.validate();
        for (i, f) in self.warn_at.iter().enumerate() {
            if !(*f > 0.0 && *f < 1.0) {
                problems.push(format!(
                    "sla.warn_at[{i}] = {f}: expected a fraction between 0 and 1"
                ));
            }
        }
        for (i, p) in self.policies.iter().enumerate() {
            if let Some(cal) = &p.calendar {
                problems.extend(
                    cal.validate()
                        .into_iter()
                        .map(|e| format!("sla.policies[{i}]: {e}")),
                );
            }
            for (clock, target) in &p.targets {
                if target.0.is_zero() {
                    problems.push(format!(
                        "sla.policies[{i}].targets.{}: must be more than 0",
                        clock.as_str()
                    ));
                }
            }
        }
        problems
    }

    /// The policy for a ticket, if any.
    pub fn policy_for(&self, kind: TicketKind, priority: Priority) -> Option<&SlaPolicy> {
        self.policies.iter().find(|p| {
            p.kind == kind && (p.priorities.is_empty() || p.priorities.contains(&priority))
        })
    }

    /// The calendar a policy counts in.
    pub fn calendar_of<'a>(&'a self, policy: &'a SlaPolicy) -> &'a Calendar {
        policy.calendar.as_ref().unwrap_or(&self.calendar)
    }
}

/// Where a clock is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    Running { since: i64 },
    Paused { since: i64 },
    Stopped { at: i64 },
}

/// One SLA clock of a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clock {
    pub kind: ClockKind,
    pub target_ms: i64,
    /// When it (last) started from zero.
    pub started_at: i64,
    /// Calendar time spent in segments that have ended.
    pub spent_ms: i64,
    pub phase: Phase,
    /// The due time as of the last running segment.
    pub due_at: Option<i64>,
}

/// A clock's verdict at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockState {
    Running,
    Paused,
    Met,
    Breached,
}

/// What the API and metrics show of a clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClockView {
    pub kind: ClockKind,
    pub state: ClockState,
    /// None while paused: the deadline moves until it runs again.
    pub due_at: Option<i64>,
    pub spent_ms: i64,
    /// Negative once breached.
    pub remaining_ms: i64,
    pub target_ms: i64,
    pub started_at: i64,
}

impl Clock {
    fn start(kind: ClockKind, target_ms: i64, cal: &Calendar, now: i64) -> Clock {
        Clock {
            kind,
            target_ms,
            started_at: now,
            spent_ms: 0,
            phase: Phase::Running { since: now },
            due_at: Some(cal.add_working(now, target_ms)),
        }
    }

    /// Calendar time spent up to `now`.
    pub fn spent(&self, cal: &Calendar, now: i64) -> i64 {
        match self.phase {
            Phase::Running { since } => self.spent_ms + cal.working_ms(since, now),
            _ => self.spent_ms,
        }
    }

    pub fn is_stopped(&self) -> bool {
        matches!(self.phase, Phase::Stopped { .. })
    }

    fn pause(&mut self, cal: &Calendar, now: i64) {
        if let Phase::Running { since } = self.phase {
            self.spent_ms += cal.working_ms(since, now);
            self.phase = Phase::Paused { since: now };
        }
    }

    fn resume(&mut self, cal: &Calendar, now: i64) {
        if !matches!(self.phase, Phase::Running { .. }) {
            self.phase = Phase::Running { since: now };
            if self.spent_ms < self.target_ms {
                self.due_at = Some(cal.add_working(now, self.target_ms - self.spent_ms));
            }
        }
    }

    fn stop(&mut self, cal: &Calendar, now: i64) {
        self.spent_ms = self.spent(cal, now);
        self.phase = Phase::Stopped { at: now };
    }

    pub fn state(&self, cal: &Calendar, now: i64) -> ClockState {
        let breached = self.spent(cal, now) >= self.target_ms;
        match self.phase {
            _ if breached => ClockState::Breached,
            Phase::Stopped { .. } => ClockState::Met,
            Phase::Paused { .. } => ClockState::Paused,
            Phase::Running { .. } => ClockState::Running,
        }
    }

    pub fn view(&self, cal: &Calendar, now: i64) -> ClockView {
        let spent = self.spent(cal, now);
        ClockView {
            kind: self.kind,
            state: self.state(cal, now),
            due_at: match self.phase {
                Phase::Paused { .. } if spent < self.target_ms => None,
                _ => self.due_at,
            },
            spent_ms: spent,
            remaining_ms: self.target_ms - spent,
            target_ms: self.target_ms,
            started_at: self.started_at,
        }
    }
}

/// A ticket's clocks, replayed from its timeline.
pub type Clocks = BTreeMap<ClockKind, Clock>;

/// Replays a ticket's timeline into its clocks, as they stand at the last
/// event (the caller evaluates them at `now`).
pub fn replay(ticket: &Ticket, config: &SlaConfig) -> Clocks {
    let mut clocks = Clocks::new();
    let Some(policy) = config.policy_for(ticket.kind, ticket.priority) else {
        return clocks;
    };
    let cal = config.calendar_of(policy);
    let target = |kind: ClockKind| policy.targets.get(&kind).map(|t| t.ms());
    let start = |clocks: &mut Clocks, kind: ClockKind, at: i64| {
        if let Some(ms) = target(kind) {
            clocks.insert(kind, Clock::start(kind, ms, cal, at));
        }
    };
    let stop = |clocks: &mut Clocks, kind: ClockKind, at: i64| {
        if let Some(c) = clocks.get_mut(&kind) {
            if !c.is_stopped() {
                c.stop(cal, at);
            }
        }
    };
    for event in &ticket.timeline {
        let at = event.at;
        match &event.what {
            EventKind::Opened => {
                start(&mut clocks, ClockKind::Response, at);
                start(&mut clocks, ClockKind::Solution, at);
            }
            EventKind::Acknowledged
            | EventKind::Started
            | EventKind::Commented { answer: true, .. } => {
                stop(&mut clocks, ClockKind::Response, at);
            }
            EventKind::Resolved { .. } => {
                stop(&mut clocks, ClockKind::Response, at);
                stop(&mut clocks, ClockKind::Solution, at);
            }
            EventKind::Closed { .. } => {
                for kind in [ClockKind::Response, ClockKind::Solution, ClockKind::OnSite] {
                    stop(&mut clocks, kind, at);
                }
            }
            EventKind::OnSiteRequested => start(&mut clocks, ClockKind::OnSite, at),
            EventKind::OnSiteArrived => stop(&mut clocks, ClockKind::OnSite, at),
            EventKind::WaitingForCustomer { .. } => {
                clocks.values_mut().for_each(|c| c.pause(cal, at));
            }
            EventKind::CustomerReplied => {
                for c in clocks.values_mut() {
                    if matches!(c.phase, Phase::Paused { .. }) {
                        c.resume(cal, at);
                    }
                }
            }
            EventKind::Reopened { .. } => {
                start(&mut clocks, ClockKind::Response, at);
                if let Some(c) = clocks.get_mut(&ClockKind::Solution) {
                    c.resume(cal, at);
                }
            }
            _ => {}
        }
    }
    clocks
}

/// A ticket's clocks as they stand at `now`.
pub fn views(ticket: &Ticket, config: &SlaConfig, now: i64) -> Vec<ClockView> {
    let Some(policy) = config.policy_for(ticket.kind, ticket.priority) else {
        return Vec::new();
    };
    let cal = config.calendar_of(policy);
    replay(ticket, config)
        .values()
        .map(|c| c.view(cal, now))
        .collect()
}

/// The SLA events a ticket is owed at `now` and has not had yet: warnings at
/// each configured fraction of a running clock, and each breach, once per
/// clock start.
pub fn due_events(ticket: &Ticket, config: &SlaConfig, now: i64) -> Vec<EventKind> {
    let Some(policy) = config.policy_for(ticket.kind, ticket.priority) else {
        return Vec::new();
    };
    let cal = config.calendar_of(policy);
    let mut due = Vec::new();
    for clock in replay(ticket, config).values() {
        if clock.is_stopped() {
            continue;
        }
        let recorded = |what: &EventKind| {
            ticket
                .timeline
                .iter()
                .any(|e| e.at >= clock.started_at && &e.what == what)
        };
        let spent = clock.spent(cal, now);
        for fraction in &config.warn_at {
            let percent = (fraction * 100.0).round() as u32;
            let warning = EventKind::SlaWarning {
                clock: clock.kind,
                percent,
            };
            if spent as f64 >= fraction * clock.target_ms as f64
                && spent < clock.target_ms
                && !recorded(&warning)
            {
                due.push(warning);
            }
        }
        let breach = EventKind::SlaBreached { clock: clock.kind };
        if spent >= clock.target_ms && !recorded(&breach) {
            due.push(breach);
        }
    }
    due
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::ticket::{Action, NewTicket};

    const H: i64 = 3_600_000;
    const M: i64 = 60_000;

    fn fault(now: i64) -> Ticket {
        Ticket::open(
            1,
            NewTicket {
                kind: TicketKind::Fault,
                title: "courseware video stalls".into(),
                description: String::new(),
                host: Some("video1".into()),
                priority: Priority::High,
                reporter: "customer".into(),
                contact: String::new(),
            },
            now,
        )
    }

    fn state_of(ticket: &Ticket, config: &SlaConfig, kind: ClockKind, now: i64) -> ClockView {
        views(ticket, config, now)
            .into_iter()
            .find(|v| v.kind == kind)
            .unwrap()
    }

    #[test]
    fn contract_defaults_start_response_and_solution() {
        let config = SlaConfig::default();
        assert!(config.validate().is_empty());
        let t = fault(0);
        let v = views(&t, &config, 30 * M);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].kind, ClockKind::Response);
        assert_eq!(v[0].due_at, Some(2 * H));
        assert_eq!(v[0].remaining_ms, 90 * M);
        assert_eq!(v[1].due_at, Some(4 * H));
        let request = Ticket {
            kind: TicketKind::Request,
            ..t
        };
        assert!(views(&request, &config, 0).is_empty());
    }

    #[test]
    fn waiting_for_customer_pauses_and_moves_the_deadline() {
        let config = SlaConfig::default();
        let mut t = fault(0);
        t.apply(Action::Acknowledge, "li", 10 * M).unwrap();
        t.apply(
            Action::WaitForCustomer {
                reason: "need logs".into(),
            },
            "li",
            H,
        )
        .unwrap();
        let v = state_of(&t, &config, ClockKind::Solution, 3 * H);
        assert_eq!(
            (v.state, v.due_at, v.spent_ms),
            (ClockState::Paused, None, H)
        );
        t.apply(Action::CustomerReplied, "customer", 5 * H).unwrap();
        let v = state_of(&t, &config, ClockKind::Solution, 6 * H);
        assert_eq!((v.state, v.due_at), (ClockState::Running, Some(8 * H)));
        assert_eq!(
            state_of(&t, &config, ClockKind::Response, 6 * H).state,
            ClockState::Met
        );
        assert_eq!(
            state_of(&t, &config, ClockKind::Solution, 8 * H).state,
            ClockState::Breached
        );
    }

    #[test]
    fn on_site_clock_runs_from_request_to_arrival() {
        let config = SlaConfig::default();
        let mut t = fault(0);
        t.apply(Action::Start, "li", M).unwrap();
        t.apply(Action::RequestOnSite, "li", H).unwrap();
        let v = state_of(&t, &config, ClockKind::OnSite, 2 * H);
        assert_eq!((v.state, v.due_at), (ClockState::Running, Some(13 * H)));
        t.apply(Action::ArriveOnSite, "zhao", 9 * H).unwrap();
        let v = state_of(&t, &config, ClockKind::OnSite, 20 * H);
        assert_eq!((v.state, v.spent_ms), (ClockState::Met, 8 * H));
    }

    #[test]
    fn warnings_and_breach_are_due_once() {
        let config = SlaConfig::default();
        let mut t = fault(0);
        assert!(due_events(&t, &config, 59 * M).is_empty());
        let due = due_events(&t, &config, H);
        assert_eq!(
            due,
            [EventKind::SlaWarning {
                clock: ClockKind::Response,
                percent: 50
            }]
        );
        for what in due {
            t.record(H, "patrol", what);
        }
        assert!(due_events(&t, &config, H + M).is_empty());
        let due = due_events(&t, &config, 2 * H);
        assert!(
            due.contains(&EventKind::SlaBreached {
                clock: ClockKind::Response
            }),
            "{due:?}"
        );
        // 80 % of response was skipped by the tick, but not owed after the breach.
        assert!(!due.contains(&EventKind::SlaWarning {
            clock: ClockKind::Response,
            percent: 80
        }));
        assert!(due.contains(&EventKind::SlaWarning {
            clock: ClockKind::Solution,
            percent: 50
        }));
    }

    #[test]
    fn business_hours_policy_counts_office_time_only() {
        let calendar = toml::from_str(
            "type = \"business_hours\"\ntime_zone = \"Asia/Shanghai\"\nstart = \"09:00\"\nend = \"18:00\"\nholidays = [\"2025-06-02\"]\n",
        )
        .unwrap();
        let config = SlaConfig {
            calendar,
            ..SlaConfig::default()
        };
        assert!(config.validate().is_empty());
        let friday_5pm: jiff::Zoned = "2025-05-30T17:00:00[Asia/Shanghai]".parse().unwrap();
        let opened = friday_5pm.timestamp().as_millisecond();
        let t = fault(opened);
        let tuesday_10am: jiff::Zoned = "2025-06-03T10:00:00[Asia/Shanghai]".parse().unwrap();
        let v = state_of(&t, &config, ClockKind::Response, opened);
        assert_eq!(v.due_at, Some(tuesday_10am.timestamp().as_millisecond()));
        let monday: jiff::Zoned = "2025-06-02T12:00:00[Asia/Shanghai]".parse().unwrap();
        let v = state_of(
            &t,
            &config,
            ClockKind::Response,
            monday.timestamp().as_millisecond(),
        );
        assert_eq!((v.state, v.spent_ms), (ClockState::Running, H));
    }

    #[test]
    fn bad_config_is_reported_whole() {
        let config: SlaConfig = toml::from_str(
            "warn_at = [0.5, 1.5]\n[[policies]]\nkind = \"fault\"\ntargets = { response = \"0s\" }\ncalendar = { type = \"business_hours\", time_zone = \"Nowhere\", start = \"09:00\", end = \"18:00\" }\n",
        )
        .unwrap();
        let problems = config.validate();
        assert_eq!(problems.len(), 3, "{problems:?}");
    }
}
