//! Incidents in the running collector: the [`Desk`] kept in the store's
//! `state` tree, fed every few seconds with the rules' alerts (firing ones
//! open or join tickets — unless a silence covers them — resolved ones
//! record the recovery), its SLA clocks and escalations ticked, and what
//! the API and `/metrics` show of it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{json, Value as Json};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::desk::{AlertSignal, Desk, IncidentConfig};
use super::sla;
use crate::rules::alert::{fingerprint, Alert, State};
use crate::storage::Store;

const KEY: &str = "incidents/desk";
const TICK: Duration = Duration::from_secs(5);

/// See the module comment.
pub struct IncidentService {
    config: IncidentConfig,
    desk: Mutex<Desk>,
    store: Arc<dyn Store>,
    /// Where ticket events go, once the notifier is running.
    outbox: OnceLock<Outlet>,
    /// Rung when a person changed a ticket, so its events go out at once.
    wake: tokio::sync::Notify,
}

/// The notification outbox and the URL messages link to.
struct Outlet {
    outbox: crate::notify::delivery::Outbox,
    external_url: String,
}

/// Ticket events ready for the outbox: per ticket, the messages and how
/// far along its timeline they reach.
pub struct Notices {
    pub upto: Vec<(u64, usize)>,
    pub messages: Vec<crate::notify::Notification>,
}

impl IncidentService {
    /// The desk as the store kept it (empty the first time; an unreadable
    /// one is reported and kept aside, never overwritten silently).
    pub fn load(config: IncidentConfig, store: Arc<dyn Store>) -> Result<IncidentService, String> {
        let desk = match store.get_state(KEY).map_err(|e| e.to_string())? {
            None => Desk::default(),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("the kept tickets ({KEY}) cannot be read: {e}"))?,
        };
        info!(tickets = desk.tickets.len(), "incidents loaded");
        Ok(IncidentService {
            config,
            desk: Mutex::new(desk),
            store,
            outbox: OnceLock::new(),
            wake: tokio::sync::Notify::new(),
        })
    }

    /// Sends ticket events through `outbox` from now on; messages link to
    /// `external_url`.
    pub fn attach_outbox(&self, outbox: crate::notify::delivery::Outbox, external_url: &str) {
        let _ = self.outbox.set(Outlet {
            outbox,
            external_url: external_url.to_owned(),
        });
    }

    /// The ticket events not yet in the outbox, as messages for their
    /// receivers. Without an outbox, or with nobody to tell, the events
    /// are let go (so turning notifications on later does not replay
    /// history).
    pub fn pending_notices(&self, now: i64) -> Notices {
        use super::notice;
        let desk = self.lock();
        let mut out = Notices {
            upto: Vec::new(),
            messages: Vec::new(),
        };
        let outlet = self
            .outbox
            .get()
            .filter(|_| self.config.notify.sends(&self.config.contacts));
        for t in desk.tickets.values() {
            let done = desk.notified.get(&t.id).copied().unwrap_or(0);
            if t.timeline.len() <= done {
                continue;
            }
            out.upto.push((t.id, t.timeline.len()));
            let Some(outlet) = outlet else { continue };
            for event in &t.timeline[done..] {
                for receiver in
                    notice::receivers_for(&self.config.notify, &self.config.contacts, event)
                {
                    let message = notice::message(
                        t,
                        event,
                        &self.config.sla,
                        &receiver,
                        &outlet.external_url,
                        now,
                    );
                    out.messages.push(crate::notify::Notification {
                        receiver,
                        group_key: format!("ticket/{}", t.id),
                        group_labels: BTreeMap::from([("ticket".into(), t.id.to_string())]),
                        alerts: Vec::new(),
                        created_at: event.at,
                        refresh_ms: 0,
                        ticket: Some(message.to_string()),
                    });
                }
            }
        }
        out
    }

    /// Records that the events up to each mark are in the outbox.
    pub fn mark_notified(&self, upto: &[(u64, usize)]) -> Result<(), String> {
        if upto.is_empty() {
            return Ok(());
        }
        let mut desk = self.lock();
        for (id, n) in upto {
            let mark = desk.notified.entry(*id).or_default();
            *mark = (*mark).max(*n);
        }
        self.save(&desk)
    }

    /// Queues the pending ticket events, then marks them sent: a crash in
    /// between sends some twice rather than none.
    async fn deliver_notices(self: &Arc<Self>) -> Result<usize, String> {
        let now = patrol_shared::model::now_ms();
        let Notices { upto, messages } = self.pending_notices(now);
        if upto.is_empty() {
            return Ok(0);
        }
        let count = messages.len();
        if let Some(outlet) = self.outbox.get() {
            for m in messages {
                outlet
                    .outbox
                    .enqueue(m)
                    .await
                    .map_err(|e| format!("cannot queue a ticket event: {e}"))?;
            }
        }
        let service = self.clone();
        tokio::task::spawn_blocking(move || service.mark_notified(&upto))
            .await
            .map_err(|e| format!("incident task failed: {e}"))??;
        Ok(count)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Desk> {
        self.desk.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Feeds the alerts at `now`, ticks the clocks, and keeps the desk if
    /// anything changed. `silenced` says whether a silence covers labels.
    pub fn step(
        &self,
        alerts: &[Alert],
        silenced: impl Fn(&BTreeMap<String, String>) -> bool,
        now: i64,
    ) -> Result<usize, String> {
        let mut desk = self.lock();
        let before = serde_json::to_vec(&*desk).map_err(|e| e.to_string())?;
        for a in alerts {
            let fp = fingerprint(&a.labels);
            match a.state {
                State::Firing if !silenced(&a.labels) => {
                    let signal = AlertSignal {
                        fingerprint: fp,
                        labels: a.labels.clone(),
                        annotations: a.annotations.clone(),
                    };
                    desk.alert_firing(&self.config, &signal, now);
                }
                State::Inactive => {
                    desk.alert_resolved(fp, now);
                }
                _ => {}
            }
        }
        let events = desk.tick(&self.config, now);
        let after = serde_json::to_vec(&*desk).map_err(|e| e.to_string())?;
        if after != before {
            self.store
                .put_state(KEY, Some(&after))
                .map_err(|e| format!("cannot keep the tickets: {e}"))?;
        }
        Ok(events.len())
    }

    /// Opens a ticket by hand and keeps the desk.
    pub fn open(&self, new: super::ticket::NewTicket, now: i64) -> Result<u64, String> {
        if new.title.trim().is_empty() {
            return Err("a ticket needs a title".into());
        }
        if new.reporter.trim().is_empty() {
            return Err("a ticket needs a reporter".into());
        }
        let mut desk = self.lock();
        let id = desk.open(new, now);
        self.save(&desk)?;
        self.wake.notify_one();
        Ok(id)
    }

    /// A person acts on a ticket; the desk is kept once it is done.
    pub fn act(
        &self,
        id: u64,
        action: super::ticket::Action,
        actor: &str,
        now: i64,
    ) -> Result<(), super::ticket::TicketError> {
        let mut desk = self.lock();
        desk.act(id, action, actor, now)?;
        if let Err(e) = self.save(&desk) {
            error!(error = %e, ticket = id, "cannot keep the tickets after an action");
        }
        self.wake.notify_one();
        Ok(())
    }

    fn save(&self, desk: &Desk) -> Result<(), String> {
        let bytes = serde_json::to_vec(desk).map_err(|e| e.to_string())?;
        self.store
            .put_state(KEY, Some(&bytes))
            .map_err(|e| format!("cannot keep the tickets: {e}"))
    }

    /// `/api/patrol/v1/sla-report`: the tickets opened in [from, to): how
    /// many, per SLA clock how many met, breached or still open, the median
    /// calendar time of the met and breached ones, and the average
    /// satisfaction rating.
    pub fn report_json(&self, from: i64, to: i64, now: i64) -> Json {
        use super::sla::{ClockKind, ClockState};
        let desk = self.lock();
        let tickets: Vec<_> = desk
            .tickets
            .values()
            .filter(|t| (from..to).contains(&t.created_at))
            .collect();
        let median = |mut v: Vec<i64>| -> Option<f64> {
            if v.is_empty() {
                return None;
            }
            v.sort_unstable();
            let mid = v.len() / 2;
            let ms = if v.len().is_multiple_of(2) {
                (v[mid - 1] + v[mid]) as f64 / 2.0
            } else {
                v[mid] as f64
            };
            Some(ms / 1000.0)
        };
        let mut clocks = serde_json::Map::new();
        for kind in [ClockKind::Response, ClockKind::Solution, ClockKind::OnSite] {
            let (mut met, mut breached, mut open, mut spent) = (0, 0, 0, Vec::new());
            for t in &tickets {
                for c in sla::views(t, &self.config.sla, now)
                    .into_iter()
                    .filter(|c| c.kind == kind)
                {
                    match c.state {
                        ClockState::Met => {
                            met += 1;
                            spent.push(c.spent_ms);
                        }
                        ClockState::Breached => {
                            breached += 1;
                            spent.push(c.spent_ms);
                        }
                        ClockState::Running | ClockState::Paused => open += 1,
                    }
                }
            }
            let decided = met + breached;
            clocks.insert(
                kind.as_str().to_owned(),
                json!({
                    "met": met,
                    "breached": breached,
                    "open": open,
                    "metRatio": if decided > 0 { Some(met as f64 / decided as f64) } else { None },
                    "medianSeconds": median(spent),
                }),
            );
        }
        let ratings: Vec<f64> = tickets
            .iter()
            .filter_map(|t| t.rating.as_ref().map(|r| f64::from(r.score)))
            .collect();
        json!({
            "from": from,
            "to": to,
            "tickets": tickets.len(),
            "clocks": clocks,
            "ratings": ratings.len(),
            "satisfaction": if ratings.is_empty() { None } else { Some(ratings.iter().sum::<f64>() / ratings.len() as f64) },
        })
    }

    /// `/api/patrol/v1/oncall`: per schedule, who is on call at `at` in each
    /// layer (and why), and the coverage gaps of the next 14 days.
    pub fn oncall_json(&self, at: i64) -> Json {
        use super::oncall::{Role, GAP_HORIZON_MS};
        let schedules = self.lock().schedules(&self.config);
        let schedules: Vec<Json> = schedules
            .iter()
            .map(|s| {
                json!({
                    "name": s.name,
                    "timeZone": s.time_zone,
                    "primary": s.on_call(Role::Primary, at),
                    "secondary": s.on_call(Role::Secondary, at),
                    "gaps": s.gaps(at, at.saturating_add(GAP_HORIZON_MS)),
                })
            })
            .collect();
        json!({ "at": at, "schedules": schedules })
    }

    /// `/api/patrol/v1/schedules`: every schedule with its layers, who is
    /// on each now, and the overrides made over the API.
    pub fn schedules_json(&self, now: i64) -> Json {
        use super::oncall::Role;
        let desk = self.lock();
        let list: Vec<Json> = desk
            .schedules(&self.config)
            .iter()
            .map(|s| {
                json!({
                    "name": s.name,
                    "timeZone": s.time_zone,
                    "layers": s.roles(),
                    "primary": s.on_call(Role::Primary, now),
                    "secondary": s.on_call(Role::Secondary, now),
                    "holidayRosters": s.holiday_rosters.iter().map(|h| json!({
                        "name": h.name, "from": h.from.to_string(), "to": h.to.to_string(),
                    })).collect::<Vec<_>>(),
                    "overrides": desk.overrides.iter().filter(|o| o.schedule == s.name).collect::<Vec<_>>(),
                })
            })
            .collect();
        Json::Array(list)
    }

    /// `/api/patrol/v1/schedules/NAME`: its rotations, and per layer who is
    /// on call through `[from, to)` (gaps included), with the overrides.
    pub fn schedule_json(&self, name: &str, from: i64, to: i64) -> Option<Json> {
        let desk = self.lock();
        let schedules = desk.schedules(&self.config);
        let s = schedules.iter().find(|s| s.name == name)?;
        let layers: Vec<Json> = s
            .roles()
            .into_iter()
            .map(|role| json!({ "role": role, "shifts": s.shifts(role, from, to) }))
            .collect();
        Some(json!({
            "name": s.name,
            "timeZone": s.time_zone,
            "from": from,
            "to": to,
            "rotations": s.rotations,
            "holidayRosters": s.holiday_rosters,
            "configOverrides": self.config.schedule(name).map(|c| &c.overrides),
            "overrides": desk.overrides.iter().filter(|o| o.schedule == s.name).collect::<Vec<_>>(),
            "layers": layers,
        }))
    }

    /// Adds an override (admin, over the API) and keeps it.
    #[allow(clippy::too_many_arguments)]
    pub fn add_override(
        &self,
        schedule: &str,
        role: super::oncall::Role,
        who: &str,
        starts_at: i64,
        ends_at: i64,
        by: &str,
        reason: &str,
        now: i64,
    ) -> Result<u64, String> {
        let mut desk = self.lock();
        let id = desk
            .add_override(
                &self.config,
                schedule,
                role,
                who,
                starts_at,
                ends_at,
                by,
                reason,
                now,
            )
            .map_err(|e| e.to_string())?;
        self.save(&desk)?;
        Ok(id)
    }

    /// Takes an override back; Ok(false) if there is none with that id.
    pub fn remove_override(&self, schedule: &str, id: u64) -> Result<bool, String> {
        let mut desk = self.lock();
        if desk.remove_override(schedule, id).is_err() {
            return Ok(false);
        }
        self.save(&desk)?;
        Ok(true)
    }

    /// `/api/patrol/v1/tickets`: the tickets `filter` lets through, without
    /// their timelines, newest first, with their SLA clocks; closed ones
    /// with their solutions form the problem library.
    pub fn tickets_json(&self, filter: &TicketFilter, now: i64) -> Json {
        let desk = self.lock();
        let list: Vec<Json> = desk
            .tickets
            .values()
            .rev()
            .filter(|t| filter.admits(t))
            .take(filter.limit.unwrap_or(usize::MAX))
            .map(|t| {
                json!({
                    "id": t.id,
                    "kind": t.kind,
                    "title": t.title,
                    "host": t.host,
                    "priority": t.priority,
                    "state": t.state,
                    "assignee": t.assignee,
                    "createdAt": t.created_at,
                    "alertname": t.alert.as_ref().map(|a| &a.alertname),
                    "alertFiring": t.alert_firing,
                    "solution": t.solution,
                    "rating": t.rating,
                    "sla": sla::views(t, &self.config.sla, now),
                })
            })
            .collect();
        Json::Array(list)
    }

    /// `/api/patrol/v1/tickets/ID`: the whole ticket with its timeline and
    /// SLA clocks.
    pub fn ticket_json(&self, id: u64, now: i64) -> Option<Json> {
        let desk = self.lock();
        let t = desk.get(id)?;
        let mut j = serde_json::to_value(t).ok()?;
        j["sla"] = json!(sla::views(t, &self.config.sla, now));
        Some(j)
    }

    /// The incident metrics (docs/metrics.md): `patrol_tickets`,
    /// `patrol_ticket_sla_remaining_seconds`, `patrol_ticket_sla_clocks`,
    /// `patrol_ticket_rating_sum`/`_count`, `patrol_oncall` and
    /// `patrol_oncall_coverage_gap_seconds`.
    pub fn families(&self, now: i64) -> Vec<crate::storage::LatestFamily> {
        use super::oncall::{Source, GAP_HORIZON_MS};
        use crate::storage::{LatestFamily, LatestSample};
        use patrol_shared::model::MetricKind;
        fn word(v: impl serde::Serialize) -> String {
            match serde_json::to_value(v) {
                Ok(Json::String(s)) => s,
                _ => String::new(),
            }
        }
        let sample = |labels: &[(&str, &str)], value: f64| LatestSample {
            labels: labels
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            value,
            timestamp_ms: now,
        };
        let gauge = |name: &str, help: &str, samples: Vec<LatestSample>| LatestFamily {
            name: name.into(),
            help: help.into(),
            kind: MetricKind::Gauge,
            samples,
        };
        let desk = self.lock();
        let mut counts: BTreeMap<(String, String), f64> = BTreeMap::new();
        let mut clocks: BTreeMap<(String, String), f64> = BTreeMap::new();
        let (mut rating_sum, mut rating_count) = (0.0, 0.0);
        let mut remaining = Vec::new();
        for t in desk.tickets.values() {
            *counts.entry((word(t.priority), word(t.state))).or_default() += 1.0;
            if let Some(r) = &t.rating {
                rating_sum += f64::from(r.score);
                rating_count += 1.0;
            }
            for clock in sla::views(t, &self.config.sla, now) {
                *clocks
                    .entry((clock.kind.as_str().into(), word(clock.state)))
                    .or_default() += 1.0;
                if t.state.is_active() {
                    let (priority, id) = (word(t.priority), t.id.to_string());
                    let mut labels = vec![
                        ("clock", clock.kind.as_str()),
                        ("priority", priority.as_str()),
                        ("ticket", id.as_str()),
                    ];
                    if let Some(host) = &t.host {
                        labels.push(("host", host));
                    }
                    labels.sort();
                    remaining.push(sample(&labels, clock.remaining_ms as f64 / 1000.0));
                }
            }
        }
        let mut on_call = Vec::new();
        let mut gaps = Vec::new();
        for s in desk.schedules(&self.config) {
            let found = s.gaps(now, now.saturating_add(GAP_HORIZON_MS));
            for role in s.roles() {
                let role_word = word(role);
                if let Some(o) = s.on_call(role, now) {
                    let source = match &o.source {
                        Source::Override => "override",
                        Source::HolidayRoster { .. } => "holiday_roster",
                        Source::Rotation => "rotation",
                    };
                    on_call.push(sample(
                        &[
                            ("person", &o.who),
                            ("role", &role_word),
                            ("schedule", &s.name),
                            ("source", source),
                        ],
                        1.0,
                    ));
                }
                let uncovered: i64 = found
                    .iter()
                    .filter(|g| g.role == role)
                    .map(|g| g.to - g.from)
                    .sum();
                gaps.push(sample(
                    &[("role", &role_word), ("schedule", &s.name)],
                    uncovered as f64 / 1000.0,
                ));
            }
        }
        let pairs = |map: BTreeMap<(String, String), f64>, names: [&str; 2]| {
            map.into_iter()
                .map(|((a, b), v)| sample(&[(names[0], &a), (names[1], &b)], v))
                .collect::<Vec<_>>()
        };
        vec![
            gauge(
                "patrol_tickets",
                "Tickets by state and priority.",
                pairs(counts, ["priority", "state"]),
            ),
            gauge(
                "patrol_ticket_sla_remaining_seconds",
                "Time left on each open ticket's SLA clocks (negative once breached).",
                remaining,
            ),
            gauge(
                "patrol_ticket_sla_clocks",
                "SLA clocks of every ticket ever opened, by clock and state (running, paused, met, breached).",
                pairs(clocks, ["clock", "state"]),
            ),
            gauge(
                "patrol_ticket_rating_sum",
                "Sum of the satisfaction ratings (1-5) given when tickets were closed.",
                vec![sample(&[], rating_sum)],
            ),
            gauge(
                "patrol_ticket_rating_count",
                "Closed tickets that were given a satisfaction rating.",
                vec![sample(&[], rating_count)],
            ),
            gauge(
                "patrol_oncall",
                "1 for each person on call now, per schedule and layer, with what put them there.",
                on_call,
            ),
            gauge(
                "patrol_oncall_coverage_gap_seconds",
                "Seconds in the next 14 days in which a schedule's layer has nobody on call.",
                gaps,
            ),
        ]
    }
}

/// Which tickets a list shows: every given criterion must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TicketFilter {
    /// Words that must all appear (any case) in the title, description,
    /// solution, comments, host or alert name.
    pub words: Vec<String>,
    pub host: Option<String>,
    pub alertname: Option<String>,
    pub state: Option<super::ticket::TicketState>,
    pub kind: Option<super::ticket::TicketKind>,
    pub priority: Option<super::ticket::Priority>,
    /// Opened in `[from, to)` (Unix ms).
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub limit: Option<usize>,
}

impl TicketFilter {
    pub fn admits(&self, t: &super::ticket::Ticket) -> bool {
        use super::ticket::EventKind;
        if self
            .host
            .as_ref()
            .is_some_and(|h| t.host.as_ref() != Some(h))
            || self
                .alertname
                .as_ref()
                .is_some_and(|a| t.alert.as_ref().map(|r| &r.alertname) != Some(a))
            || self.state.is_some_and(|s| s != t.state)
            || self.kind.is_some_and(|k| k != t.kind)
            || self.priority.is_some_and(|p| p != t.priority)
            || self.from.is_some_and(|f| t.created_at < f)
            || self.to.is_some_and(|to| t.created_at >= to)
        {
            return false;
        }
        if self.words.is_empty() {
            return true;
        }
        let mut text = format!(
            "{}\n{}\n{}\n{}\n{}",
            t.title,
            t.description,
            t.solution.as_deref().unwrap_or(""),
            t.host.as_deref().unwrap_or(""),
            t.alert.as_ref().map_or("", |a| a.alertname.as_str())
        );
        for e in &t.timeline {
            match &e.what {
                EventKind::Commented { text: c, .. } => text.push_str(c),
                EventKind::Resolved { solution: Some(c) } => text.push_str(c),
                EventKind::Reopened { reason } => text.push_str(reason),
                _ => continue,
            }
            text.push('\n');
        }
        let text = text.to_lowercase();
        self.words.iter().all(|w| text.contains(&w.to_lowercase()))
    }
}

/// Steps the service every 5 seconds (and at once after a person changed
/// a ticket) until `cancel` fires, and sends the ticket events.
pub async fn run(
    service: Arc<IncidentService>,
    rules: Arc<crate::rules::manager::Manager>,
    silences: Arc<crate::silence::SilenceBook>,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
            _ = service.wake.notified() => {}
        }
        let (stepping, rules, silences) = (service.clone(), rules.clone(), silences.clone());
        let now = patrol_shared::model::now_ms();
        let result = tokio::task::spawn_blocking(move || {
            let alerts = rules.alerts();
            stepping.step(
                &alerts,
                |labels| !silences.silencing(labels, now).is_empty(),
                now,
            )
        })
        .await;
        let problem = match result {
            Ok(Ok(_)) => service.deliver_notices().await.err(),
            Ok(Err(e)) => Some(e),
            Err(e) => Some(format!("incident task failed: {e}")),
        };
        match problem {
            None => failing = false,
            Some(e) => {
                if !failing {
                    error!(error = %e, "incident step failed; will retry");
                }
                failing = true;
            }
        }
    }
}
