//! Ticket events leave through the notification outbox: a ticket opened
//! over HTTP is announced to the team's webhook with the primary on call
//! paged; unacknowledged, the secondary is paged at half the response time
//! (on the team's webhook and on the secondary's own), the person in charge
//! at the breach; the acknowledgement goes out too. Every message is the
//! ticket-event JSON of docs/incidents.md.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value as Json};

fn post(addr: SocketAddr, path: &str, body: &Json) -> (u16, Json) {
    http_call(addr, "POST", TEST_TOKEN, path, Some(body))
}

/// Messages from `hook` until `pred` holds for one, at most `within`.
fn until(
    hook: &std::sync::mpsc::Receiver<(Instant, Json)>,
    within: Duration,
    what: &str,
    seen: &mut Vec<Json>,
    pred: impl Fn(&Json) -> bool,
) -> Json {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match hook.recv_timeout(left) {
            Ok((_, m)) => {
                seen.push(m.clone());
                if pred(&m) {
                    return m;
                }
            }
            Err(_) => panic!("no {what} within {within:?}; got {seen:#?}"),
        }
    }
}

fn escalated_to(m: &Json, level: &str) -> bool {
    m["event"]["type"] == "escalated" && m["event"]["level"] == level
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalations_and_ticket_steps_reach_the_webhooks() {
    let pki = TestPki::new();
    let (team_url, team) = webhook_receiver(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let (dora_url, dora) = webhook_receiver(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let mut config = collector_config(&pki);
    config.rules.defaults = false;
    config.notify = Some(
        toml::from_str(&format!(
            r#"
external_url = "http://patrol.test"
[route]
receiver = "team"
[[receivers]]
name = "team"
kind = "webhook"
url = "{team_url}"
[[receivers]]
name = "dora-phone"
kind = "webhook"
url = "{dora_url}"
"#
        ))
        .unwrap(),
    );
    config.incidents = toml::from_str(
        r#"
[notify]
receivers = ["team"]
[contacts]
dora = ["dora-phone"]
[[sla.policies]]
kind = "fault"
priorities = []
[sla.policies.targets]
response = "12s"
solution = "1h"
[[escalation]]
schedule = "ops"
secondary_at = 0.5
person_in_charge = ["director"]
[[schedules]]
name = "ops"
time_zone = "UTC"
[[schedules.rotations]]
role = "primary"
members = ["anna"]
shift = "1d"
handoff = "00:00:00"
start_date = "2020-01-01"
[[schedules.rotations]]
role = "secondary"
members = ["dora"]
shift = "1d"
handoff = "00:00:00"
start_date = "2020-01-01"
"#,
    )
    .unwrap();
    let collector = TestCollector::start(config).await;
    let http = collector.http;

    let (team, dora) = tokio::task::spawn_blocking(move || {
        let new = json!({"kind": "fault", "title": "db backups fail", "priority": "high",
                         "reporter": "customer", "host": "db"});
        let (status, body) = post(http, "/api/patrol/v1/tickets", &new);
        assert_eq!(status, 200, "{body}");
        let id = body["data"]["id"].as_u64().unwrap();
        let mut seen = Vec::new();

        let opened = until(&team, Duration::from_secs(10), "opened", &mut seen, |m| {
            m["event"]["type"] == "opened"
        });
        assert_eq!(opened["type"], "ticket_event");
        assert_eq!(opened["version"], "1");
        assert_eq!(opened["receiver"], "team");
        assert_eq!(opened["event"]["actor"], "customer");
        assert_eq!(opened["ticket"]["id"], id);
        assert_eq!(opened["ticket"]["title"], "db backups fail");
        assert_eq!(opened["ticket"]["host"], "db");
        assert_eq!(opened["ticket"]["priority"], "high");
        assert_eq!(
            opened["ticket"]["url"],
            format!("http://patrol.test/api/patrol/v1/tickets/{id}")
        );
        let response = opened["ticket"]["sla"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["clock"] == "response")
            .cloned()
            .unwrap();
        assert_eq!(response["state"], "running");
        assert!(response["dueAt"].as_str().is_some(), "{response}");

        let primary = until(
            &team,
            Duration::from_secs(10),
            "primary page",
            &mut seen,
            |m| escalated_to(m, "primary"),
        );
        assert_eq!(primary["event"]["to"], json!(["anna"]));

        // Half the response time (6 s) unacknowledged: the secondary,
        // on the team's hook and on her own.
        let secondary = until(
            &team,
            Duration::from_secs(20),
            "secondary page",
            &mut seen,
            |m| escalated_to(m, "secondary"),
        );
        assert_eq!(secondary["event"]["to"], json!(["dora"]));
        let mut dora_seen = Vec::new();
        let own = until(
            &dora,
            Duration::from_secs(10),
            "dora's page",
            &mut dora_seen,
            |m| escalated_to(m, "secondary"),
        );
        assert_eq!(own["receiver"], "dora-phone");

        // The breach: the person in charge.
        until(&team, Duration::from_secs(20), "breach", &mut seen, |m| {
            m["event"]["type"] == "sla_breached" && m["event"]["clock"] == "response"
        });
        let boss = until(
            &team,
            Duration::from_secs(10),
            "person in charge",
            &mut seen,
            |m| escalated_to(m, "person_in_charge"),
        );
        assert_eq!(boss["event"]["to"], json!(["director"]));

        let (status, body) = post(
            http,
            &format!("/api/patrol/v1/tickets/{id}/actions"),
            &json!({"action": "acknowledge"}),
        );
        assert_eq!(status, 200, "{body}");
        let ack = until(
            &team,
            Duration::from_secs(10),
            "acknowledgement",
            &mut seen,
            |m| m["event"]["type"] == "acknowledged",
        );
        assert_eq!(ack["event"]["actor"], "test");
        assert_eq!(ack["ticket"]["state"], "acknowledged");
        // Each event went out once.
        let pages = seen.iter().filter(|m| escalated_to(m, "secondary")).count();
        assert_eq!(pages, 1, "{seen:#?}");
        (team, dora)
    })
    .await
    .unwrap();
    drop((team, dora));
    collector.stop().await;
}
