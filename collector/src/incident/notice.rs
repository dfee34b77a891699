//! Ticket events out through the notification outbox: which events go to
//! which receivers, and the ticket-event message (JSON, documented in
//! docs/incidents.md) each of them gets.
//!
//! Every event on a ticket's timeline is a candidate. The `[incidents.notify]`
//! receivers get the kinds listed in `events`; an escalation, and an
//! assignment, also go to the receivers of the people they name
//! (`[incidents.contacts]`). The desk keeps, per ticket, how many timeline
//! events have been queued, and the service advances it only after the
//! messages are in the durable outbox: a crash sends one again rather than
//! none.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

use super::sla::{self, SlaConfig};
use super::ticket::{Event, EventKind, Ticket};

/// `[incidents.notify]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticeConfig {
    /// Receivers (names from `[notify]`) told of every listed event.
    #[serde(default)]
    pub receivers: Vec<String>,
    /// Which event types go out (the `type` of timeline events).
    #[serde(default = "default_events")]
    pub events: Vec<String>,
}

impl Default for NoticeConfig {
    fn default() -> Self {
        NoticeConfig {
            receivers: Vec::new(),
            events: default_events(),
        }
    }
}

/// Every event type a timeline can hold.
pub const EVENT_TYPES: &[&str] = &[
    "opened",
    "alert_fired",
    "alert_recovered",
    "acknowledged",
    "started",
    "assigned",
    "commented",
    "on_site_requested",
    "on_site_arrived",
    "waiting_for_customer",
    "customer_replied",
    "resolved",
    "closed",
    "reopened",
    "sla_warning",
    "sla_breached",
    "escalated",
];

fn default_events() -> Vec<String> {
    EVENT_TYPES
        .iter()
        .filter(|t| !matches!(**t, "alert_fired" | "commented"))
        .map(|t| t.to_string())
        .collect()
}

impl NoticeConfig {
    /// Unknown event types.
    pub fn validate_events(&self) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| !EVENT_TYPES.contains(&e.as_str()))
            .map(|e| {
                format!(
                    "incidents.notify.events: unknown event type {e:?} (one of {})",
                    EVENT_TYPES.join(", ")
                )
            })
            .collect()
    }

    /// Receivers named here or in `contacts` that `known` (receiver name →
    /// whether it can take ticket events; None without `[notify]`) lacks.
    pub fn validate_receivers(
        &self,
        contacts: &BTreeMap<String, Vec<String>>,
        known: Option<&BTreeMap<String, bool>>,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        let named = self
            .receivers
            .iter()
            .map(|r| ("incidents.notify.receivers".to_string(), r))
            .chain(contacts.iter().flat_map(|(person, rs)| {
                rs.iter()
                    .map(move |r| (format!("incidents.contacts.{person}"), r))
            }));
        for (at, receiver) in named {
            match known {
                None => problems.push(format!(
                    "{at}: receiver {receiver:?} named, but there is no [notify] section"
                )),
                Some(known) => match known.get(receiver) {
                    None => problems.push(format!(
                        "{at}: no receiver {receiver:?} in [notify] receivers"
                    )),
                    Some(false) => problems.push(format!(
                        "{at}: receiver {receiver:?} forwards alerts to an Alertmanager, which takes no ticket events"
                    )),
                    Some(true) => {}
                },
            }
        }
        problems
    }

    /// Whether any event could go anywhere.
    pub fn sends(&self, contacts: &BTreeMap<String, Vec<String>>) -> bool {
        !self.receivers.is_empty() || contacts.values().any(|r| !r.is_empty())
    }
}

/// The `type` of an event, as serialized.
pub fn event_type(what: &EventKind) -> String {
    serde_json::to_value(what)
        .ok()
        .and_then(|v| v["type"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The receivers that get `event`, each once, sorted.
pub fn receivers_for(
    config: &NoticeConfig,
    contacts: &BTreeMap<String, Vec<String>>,
    event: &Event,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let kind = event_type(&event.what);
    if config.events.contains(&kind) {
        out.extend(config.receivers.iter().cloned());
    }
    let people: Vec<&String> = match &event.what {
        EventKind::Escalated(step) => step.to.iter().collect(),
        EventKind::Assigned { to } => vec![to],
        _ => Vec::new(),
    };
    for person in people {
        if let Some(rs) = contacts.get(person) {
            out.extend(rs.iter().cloned());
        }
    }
    out
}

/// The ticket-event message for `receiver` (docs/incidents.md).
pub fn message(
    ticket: &Ticket,
    event: &Event,
    sla_config: &SlaConfig,
    receiver: &str,
    external_url: &str,
    now: i64,
) -> Json {
    let rfc = patrol_shared::model::rfc3339;
    let mut what = serde_json::to_value(&event.what).unwrap_or_else(|_| json!({}));
    if let Some(obj) = what.as_object_mut() {
        obj.insert("at".into(), json!(rfc(event.at)));
        obj.insert("actor".into(), json!(event.actor));
    }
    let clocks: Vec<Json> = sla::views(ticket, sla_config, now)
        .into_iter()
        .map(|c| {
            json!({
                "clock": c.kind.as_str(),
                "state": c.state,
                "dueAt": c.due_at.map(rfc),
                "remainingSeconds": c.remaining_ms / 1000,
            })
        })
        .collect();
    let base = external_url.trim_end_matches('/');
    json!({
        "version": "1",
        "type": "ticket_event",
        "receiver": receiver,
        "event": what,
        "ticket": {
            "id": ticket.id,
            "kind": ticket.kind,
            "title": ticket.title,
            "description": ticket.description,
            "host": ticket.host,
            "priority": ticket.priority,
            "state": ticket.state,
            "assignee": ticket.assignee,
            "reporter": ticket.reporter,
            "alertname": ticket.alert.as_ref().map(|a| a.alertname.clone()),
            "alertFiring": ticket.alert_firing,
            "createdAt": rfc(ticket.created_at),
            "url": format!("{base}/api/patrol/v1/tickets/{}", ticket.id),
            "sla": clocks,
        },
        "externalURL": external_url,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::escalation::{Level, Step};
    use crate::incident::ticket::{NewTicket, Priority, TicketKind};

    fn ticket() -> Ticket {
        Ticket::open(
            7,
            NewTicket {
                kind: TicketKind::Fault,
                title: "Disk full on db".into(),
                description: String::new(),
                host: Some("db".into()),
                priority: Priority::Critical,
                reporter: "patrol".into(),
                contact: String::new(),
            },
            1_000,
        )
    }

    #[test]
    fn escalations_reach_the_people_they_name_and_the_listed_receivers() {
        let config = NoticeConfig {
            receivers: vec!["ops".into()],
            ..NoticeConfig::default()
        };
        let contacts = BTreeMap::from([
            ("dora".to_string(), vec!["dora-phone".to_string()]),
            ("emil".to_string(), vec!["emil-phone".to_string()]),
        ]);
        let escalated = Event {
            at: 2_000,
            actor: "patrol".into(),
            what: EventKind::Escalated(Step {
                level: Level::Secondary,
                to: vec!["dora".into()],
                round: 0,
                reason: "not acknowledged".into(),
            }),
        };
        let got: Vec<String> = receivers_for(&config, &contacts, &escalated)
            .into_iter()
            .collect();
        assert_eq!(got, ["dora-phone", "ops"]);
        let comment = Event {
            at: 2_000,
            actor: "anna".into(),
            what: EventKind::Commented {
                text: "looking".into(),
                answer: true,
            },
        };
        assert!(receivers_for(&config, &contacts, &comment).is_empty());
    }

    #[test]
    fn the_message_carries_the_event_and_the_ticket() {
        let t = ticket();
        let event = t.timeline[0].clone();
        let m = message(
            &t,
            &event,
            &SlaConfig::default(),
            "ops",
            "http://patrol:9470/",
            1_000,
        );
        assert_eq!(m["type"], "ticket_event");
        assert_eq!(m["event"]["type"], "opened");
        assert_eq!(m["event"]["at"], "1970-01-01T00:00:01Z");
        assert_eq!(m["ticket"]["id"], 7);
        assert_eq!(m["ticket"]["priority"], "critical");
        assert_eq!(
            m["ticket"]["url"],
            "http://patrol:9470/api/patrol/v1/tickets/7"
        );
        let clocks = m["ticket"]["sla"].as_array().unwrap();
        assert!(clocks.iter().any(|c| c["clock"] == "response"));
    }

    #[test]
    fn unknown_events_and_receivers_are_named() {
        let config = NoticeConfig {
            receivers: vec!["ops".into(), "am".into()],
            events: vec!["escalated".into(), "exploded".into()],
        };
        let contacts = BTreeMap::from([("dora".to_string(), vec!["nowhere".to_string()])]);
        let known = BTreeMap::from([("ops".to_string(), true), ("am".to_string(), false)]);
        let mut problems = config.validate_events();
        problems.extend(config.validate_receivers(&contacts, Some(&known)));
        let problems = problems.join("\n");
        assert!(problems.contains("\"exploded\""), "{problems}");
        assert!(problems.contains("\"am\" forwards alerts"), "{problems}");
        assert!(
            problems.contains("incidents.contacts.dora: no receiver \"nowhere\""),
            "{problems}"
        );
        assert!(config
            .validate_receivers(&contacts, None)
            .iter()
            .any(|p| p.contains("no [notify] section")));
    }
}
