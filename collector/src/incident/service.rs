//! Incidents in the running collector: the [`Desk`] kept in the store's
//! `state` tree, fed every few seconds with the rules' alerts (firing ones
//! open or join tickets — unless a silence covers them — resolved ones
//! record the recovery), its SLA clocks and escalations ticked, and what
//! the API and `/metrics` show of it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
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
        })
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
        let schedules: Vec<Json> = self
            .config
            .schedules
            .iter()
            .map(|s| {
                json!({
                    "name": s.name,
                    "timeZone": s.time_zone,
                    "primary": s.on_call(Role::Primary, at),
                    "secondary": s.on_call(Role::Secondary, at),
                    "gaps": s.gaps(at, at + GAP_HORIZON_MS),
                })
            })
            .collect();
        json!({ "at": at, "schedules": schedules })
    }

    /// `/api/patrol/v1/tickets`: every ticket without its timeline, newest
    /// first, with its SLA clocks.
    pub fn tickets_json(&self, now: i64) -> Json {
        let desk = self.lock();
        let list: Vec<Json> = desk
            .tickets
            .values()
            .rev()
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
                    "alertFiring": t.alert_firing,
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

    /// `patrol_tickets{state,priority}` and
    /// `patrol_ticket_sla_remaining_seconds{ticket,clock}` for `/metrics`.
    pub fn families(&self, now: i64) -> Vec<crate::storage::LatestFamily> {
        use crate::storage::{LatestFamily, LatestSample};
        use patrol_shared::model::MetricKind;
        let desk = self.lock();
        let mut counts: BTreeMap<(String, String), f64> = BTreeMap::new();
        let mut remaining = Vec::new();
        for t in desk.tickets.values() {
            let state = serde_json::to_value(t.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned));
            let priority = serde_json::to_value(t.priority)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned));
            let (state, priority) = (state.unwrap_or_default(), priority.unwrap_or_default());
            *counts.entry((state, priority)).or_default() += 1.0;
            if !t.state.is_active() {
                continue;
            }
            for clock in sla::views(t, &self.config.sla, now) {
                remaining.push(LatestSample {
                    labels: vec![
                        ("clock".into(), clock.kind.as_str().into()),
                        ("ticket".into(), t.id.to_string()),
                    ],
                    value: clock.remaining_ms as f64 / 1000.0,
                    timestamp_ms: now,
                });
            }
        }
        vec![
            LatestFamily {
                name: "patrol_tickets".into(),
                help: "Tickets by state and priority.".into(),
                kind: MetricKind::Gauge,
                samples: counts
                    .into_iter()
                    .map(|((state, priority), v)| LatestSample {
                        labels: vec![("priority".into(), priority), ("state".into(), state)],
                        value: v,
                        timestamp_ms: now,
                    })
                    .collect(),
            },
            LatestFamily {
                name: "patrol_ticket_sla_remaining_seconds".into(),
                help: "Time left on each open ticket's SLA clocks (negative once breached).".into(),
                kind: MetricKind::Gauge,
                samples: remaining,
            },
        ]
    }
}

/// Steps the service every 5 seconds until `cancel` fires.
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
        }
        let (service, rules, silences) = (service.clone(), rules.clone(), silences.clone());
        let now = patrol_shared::model::now_ms();
        let result = tokio::task::spawn_blocking(move || {
            let alerts = rules.alerts();
            service.step(
                &alerts,
                |labels| !silences.silencing(labels, now).is_empty(),
                now,
            )
        })
        .await;
        let problem = match result {
            Ok(Ok(_)) => None,
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
