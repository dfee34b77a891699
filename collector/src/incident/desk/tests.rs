//! The issue's proof scenarios, with an injected clock.

use super::*;
use crate::incident::escalation::{Level, Step};
use crate::incident::oncall::{Role, Rotation};
use crate::incident::sla::{ClockKind, ClockState, ClockView};
use crate::incident::ticket::{Rating, TicketState};
use jiff::civil::{date, time};

const M: i64 = 60_000;
const H: i64 = 60 * M;

fn shanghai(local: &str) -> i64 {
    let z: jiff::Zoned = format!("{local}[Asia/Shanghai]").parse().unwrap();
    z.timestamp().as_millisecond()
}

fn rotation(role: Role, members: &[&str]) -> Rotation {
    Rotation {
        role,
        members: members.iter().map(|m| m.to_string()).collect(),
        shift: Duration::from_secs(86_400),
        handoff: time(9, 0, 0, 0),
        start_date: date(2025, 6, 1),
    }
}

fn config() -> IncidentConfig {
    let config = IncidentConfig {
        escalation: vec![EscalationPolicy {
            priorities: vec![],
            schedule: "ops".into(),
            secondary_at: 0.5,
            person_in_charge: vec!["director".into()],
            repeat: None,
        }],
        schedules: vec![Schedule {
            name: "ops".into(),
            time_zone: "Asia/Shanghai".into(),
            rotations: vec![
                rotation(Role::Primary, &["anna", "ben"]),
                rotation(Role::Secondary, &["dora", "emil"]),
            ],
            overrides: vec![],
            holiday_rosters: vec![],
        }],
        reopen_window: Duration::from_secs(3600),
        ..IncidentConfig::default()
    };
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    config
}

fn disk_full() -> AlertSignal {
    AlertSignal {
        fingerprint: 0xfeed,
        labels: BTreeMap::from([
            ("alertname".to_string(), "DiskFull".to_string()),
            ("host".to_string(), "db1".to_string()),
            ("severity".to_string(), "critical".to_string()),
        ]),
        annotations: BTreeMap::new(),
    }
}

fn clock(desk: &Desk, config: &IncidentConfig, id: u64, kind: ClockKind, now: i64) -> ClockView {
    let ticket = desk.get(id).unwrap();
    sla::views(ticket, &config.sla, now)
        .into_iter()
        .find(|v| v.kind == kind)
        .unwrap()
}

fn states(desk: &Desk, config: &IncidentConfig, id: u64, now: i64) -> (ClockState, ClockState) {
    (
        clock(desk, config, id, ClockKind::Response, now).state,
        clock(desk, config, id, ClockKind::Solution, now).state,
    )
}

fn escalated(events: &[(u64, Event)]) -> Vec<(Level, Vec<String>)> {
    events
        .iter()
        .filter_map(|(_, e)| match &e.what {
            EventKind::Escalated(Step { level, to, .. }) => Some((*level, to.clone())),
            _ => None,
        })
        .collect()
}

fn kinds(events: &[(u64, Event)]) -> Vec<EventKind> {
    events.iter().map(|(_, e)| e.what.clone()).collect()
}

#[test]
fn unacknowledged_fault_escalates_to_breach_then_closes_with_rating() {
    use ClockState::*;
    let config = config();
    let mut desk = Desk::default();
    // 2025-06-10 is shift 9 since 06-01 09:00: ben primary, emil secondary.
    let t0 = shanghai("2025-06-10T10:00:00");

    // An alert fires → ticket opened → primary notified.
    let id = match desk.alert_firing(&config, &disk_full(), t0) {
        AlertOutcome::Opened(id) => id,
        other => panic!("{other:?}"),
    };
    assert_eq!(desk.get(id).unwrap().title, "DiskFull on db1");
    let events = desk.tick(&config, t0);
    assert_eq!(
        escalated(&events),
        [(Level::Primary, vec!["ben".to_string()])]
    );
    assert_eq!(states(&desk, &config, id, t0), (Running, Running));
    assert_eq!(
        clock(&desk, &config, id, ClockKind::Response, t0).due_at,
        Some(t0 + 2 * H)
    );
    assert_eq!(
        clock(&desk, &config, id, ClockKind::Solution, t0).due_at,
        Some(t0 + 4 * H)
    );

    // No ack: nothing more until half the response time has gone.
    assert!(desk.tick(&config, t0 + 59 * M).is_empty());
    let events = desk.tick(&config, t0 + H);
    assert_eq!(
        escalated(&events),
        [(Level::Secondary, vec!["emil".to_string()])]
    );
    assert!(kinds(&events).contains(&EventKind::SlaWarning {
        clock: ClockKind::Response,
        percent: 50
    }));
    assert_eq!(states(&desk, &config, id, t0 + H), (Running, Running));

    let events = desk.tick(&config, t0 + 96 * M);
    assert_eq!(
        kinds(&events),
        [EventKind::SlaWarning {
            clock: ClockKind::Response,
            percent: 80
        }]
    );

    // Breach at 2 h → the person in charge hears of it.
    let events = desk.tick(&config, t0 + 2 * H);
    assert!(kinds(&events).contains(&EventKind::SlaBreached {
        clock: ClockKind::Response
    }));
    assert!(kinds(&events).contains(&EventKind::SlaWarning {
        clock: ClockKind::Solution,
        percent: 50
    }));
    assert_eq!(
        escalated(&events),
        [(Level::PersonInCharge, vec!["director".to_string()])]
    );
    assert_eq!(states(&desk, &config, id, t0 + 2 * H), (Breached, Running));
    assert!(desk.tick(&config, t0 + 2 * H + M).is_empty());

    // Ack: escalation stops; the response clock stays breached.
    desk.act(id, Action::Acknowledge, "ben", t0 + 130 * M)
        .unwrap();
    assert_eq!(
        states(&desk, &config, id, t0 + 131 * M),
        (Breached, Running)
    );
    assert!(escalated(&desk.tick(&config, t0 + 3 * H)).is_empty());

    // The alert recovers; the ticket stays open until a person closes it.
    assert_eq!(desk.alert_resolved(0xfeed, t0 + 150 * M), Some(id));
    assert_eq!(desk.get(id).unwrap().state, TicketState::Acknowledged);

    // Solution within 4 h, then closed with a rating.
    desk.act(
        id,
        Action::Resolve {
            solution: Some("purged old WAL segments".into()),
        },
        "ben",
        t0 + 3 * H + 30 * M,
    )
    .unwrap();
    assert_eq!(states(&desk, &config, id, t0 + 5 * H), (Breached, Met));
    let rating = Rating {
        score: 4,
        comment: "fixed, but answer sooner".into(),
    };
    desk.act(
        id,
        Action::Close {
            solution: None,
            rating: Some(rating.clone()),
        },
        "customer",
        t0 + 5 * H,
    )
    .unwrap();
    let ticket = desk.get(id).unwrap();
    assert_eq!(ticket.state, TicketState::Closed);
    assert_eq!(ticket.rating, Some(rating));
    assert_eq!(states(&desk, &config, id, t0 + 10 * H), (Breached, Met));
    assert!(desk.tick(&config, t0 + 10 * H).is_empty());
}

#[test]
fn flapping_alert_reopens_its_ticket() {
    let config = config();
    let mut desk = Desk::default();
    let alert = disk_full();
    let id = match desk.alert_firing(&config, &alert, 0) {
        AlertOutcome::Opened(id) => id,
        other => panic!("{other:?}"),
    };
    // Called on every evaluation: idempotent while it keeps firing.
    assert_eq!(
        desk.alert_firing(&config, &alert, M),
        AlertOutcome::Attached(id)
    );
    assert_eq!(desk.alert_resolved(alert.fingerprint, 2 * M), Some(id));
    assert_eq!(desk.alert_resolved(alert.fingerprint, 3 * M), None);
    // Fires again while the ticket is open: same ticket.
    assert_eq!(
        desk.alert_firing(&config, &alert, 4 * M),
        AlertOutcome::Attached(id)
    );
    desk.act(
        id,
        Action::Resolve {
            solution: Some("restarted".into()),
        },
        "anna",
        10 * M,
    )
    .unwrap();
    desk.alert_resolved(alert.fingerprint, 10 * M);
    // Fires within the reopen window after it was resolved: reopened.
    assert_eq!(
        desk.alert_firing(&config, &alert, 50 * M),
        AlertOutcome::Reopened(id)
    );
    let ticket = desk.get(id).unwrap();
    assert_eq!(ticket.state, TicketState::Reopened);
    let fired = ticket
        .timeline
        .iter()
        .filter(|e| matches!(e.what, EventKind::AlertFired { .. }))
        .count();
    assert_eq!(fired, 3);
    // A reopen restarts the response clock and escalation from the primary.
    let events = desk.tick(&config, 50 * M);
    assert_eq!(escalated(&events).len(), 1);
    assert_eq!(
        clock(&desk, &config, id, ClockKind::Response, 50 * M).due_at,
        Some(50 * M + 2 * H)
    );
    // Closed, and the window passes: the next firing is a new ticket.
    desk.act(id, Action::Resolve { solution: None }, "anna", 60 * M)
        .unwrap();
    desk.act(
        id,
        Action::Close {
            solution: None,
            rating: None,
        },
        "anna",
        61 * M,
    )
    .unwrap();
    desk.alert_resolved(alert.fingerprint, 61 * M);
    assert_eq!(
        desk.alert_firing(&config, &alert, 61 * M + H + 1),
        AlertOutcome::Opened(id + 1)
    );
    assert_eq!(desk.by_fingerprint.get(&alert.fingerprint), Some(&(id + 1)));
}

#[test]
fn info_alerts_open_no_ticket() {
    let mut alert = disk_full();
    alert.labels.insert("severity".into(), "info".into());
    let mut desk = Desk::default();
    assert_eq!(
        desk.alert_firing(&config(), &alert, 0),
        AlertOutcome::Ignored
    );
    assert!(desk.tickets.is_empty());
}

#[test]
fn restart_in_the_middle_loses_nothing() {
    let config = config();
    let t0 = shanghai("2025-06-10T10:00:00");
    let mut desk = Desk::default();
    let id = match desk.alert_firing(&config, &disk_full(), t0) {
        AlertOutcome::Opened(id) => id,
        other => panic!("{other:?}"),
    };
    desk.tick(&config, t0);
    desk.act(
        id,
        Action::WaitForCustomer {
            reason: "need a maintenance window".into(),
        },
        "ben",
        t0 + 30 * M,
    )
    .unwrap();
    desk.act(id, Action::CustomerReplied, "customer", t0 + 50 * M)
        .unwrap();
    desk.tick(&config, t0 + 55 * M);

    // Kept in the store and read back (JSON here; the store may use bincode).
    let kept = serde_json::to_string(&desk).unwrap();
    let mut restored: Desk = serde_json::from_str(&kept).unwrap();
    assert_eq!(restored, desk);
    let config: IncidentConfig =
        serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();

    for now in [t0 + 80 * M, t0 + 2 * H, t0 + 140 * M, t0 + 3 * H] {
        let before = desk.tick(&config, now);
        let after = restored.tick(&config, now);
        assert_eq!(before, after, "at +{} min", (now - t0) / M);
        assert_eq!(
            sla::views(desk.get(id).unwrap(), &config.sla, now),
            sla::views(restored.get(id).unwrap(), &config.sla, now)
        );
    }
    // The 20 min pause moved both deadlines: secondary at 1 h 20 m, breach at 2 h 20 m.
    let ticket = restored.get(id).unwrap();
    let at_of = |level| {
        ticket.timeline.iter().find_map(|e| match &e.what {
            EventKind::Escalated(s) if s.level == level => Some(e.at),
            _ => None,
        })
    };
    assert_eq!(at_of(Level::Secondary), Some(t0 + 80 * M));
    assert_eq!(at_of(Level::PersonInCharge), Some(t0 + 140 * M));
    assert_eq!(
        clock(&restored, &config, id, ClockKind::Response, t0 + 3 * H).due_at,
        Some(t0 + 140 * M)
    );
}

#[test]
fn the_documented_config_example_is_valid() {
    let doc = include_str!("../../../../docs/incidents.md");
    let start = doc
        .find("```toml\n[incidents]")
        .expect("an [incidents] example in docs/incidents.md");
    let body = &doc[start + "```toml\n".len()..];
    let body = &body[..body.find("```").expect("closed")];
    let parsed: toml::Table = toml::from_str(body).expect("valid TOML");
    let config: IncidentConfig = parsed["incidents"]
        .clone()
        .try_into()
        .expect("an incident config");
    assert!(config.validate().is_empty(), "{:?}", config.validate());
}

#[test]
fn an_api_override_pages_the_stand_in_and_survives_a_restart() {
    let config = config();
    let mut desk = Desk::default();
    let t0 = shanghai("2025-06-10T10:00:00");
    let id = desk
        .add_override(
            &config,
            "ops",
            Role::Primary,
            "zoe",
            t0 - H,
            t0 + 3 * H,
            "admin",
            "ben is ill",
            t0 - 2 * H,
        )
        .unwrap();
    // The desk is kept as JSON; a restart reads it back.
    let mut desk: Desk = serde_json::from_slice(&serde_json::to_vec(&desk).unwrap()).unwrap();
    desk.alert_firing(&config, &disk_full(), t0);
    let events = desk.tick(&config, t0);
    assert_eq!(
        escalated(&events),
        [(Level::Primary, vec!["zoe".to_string()])]
    );
    let errors = [
        desk.add_override(
            &config,
            "night",
            Role::Primary,
            "x",
            t0,
            t0 + H,
            "a",
            "",
            t0,
        ),
        desk.add_override(&config, "ops", Role::Primary, " ", t0, t0 + H, "a", "", t0),
        desk.add_override(&config, "ops", Role::Primary, "x", t0, t0, "a", "", t0),
    ];
    let errors: Vec<String> = errors
        .into_iter()
        .map(|r| r.unwrap_err().to_string())
        .collect();
    assert_eq!(errors[0], "no schedule named \"night\"");
    assert!(errors[1].starts_with("who:"), "{}", errors[1]);
    assert!(
        errors[2].starts_with("to: the override must end after"),
        "{}",
        errors[2]
    );
    desk.remove_override("ops", id).unwrap();
    assert!(desk.remove_override("ops", id).is_err());
    assert!(desk.schedules(&config)[0].overrides.is_empty());
}
