//! People work tickets over HTTP: an operator opens one and takes it from
//! open to closed with a rating; a viewer may read but not act; a refused
//! step says why; every step is on the timeline with its actor.

mod common;

use std::net::SocketAddr;

use common::*;
use patrol_collector::http::auth::{hash_token, Role, TokenConfig};
use serde_json::{json, Value as Json};

const OPERATOR: &str = "patrol_operator_token_for_tests";
const VIEWER: &str = "patrol_viewer_token_for_tests";

fn post(addr: SocketAddr, token: &str, path: &str, body: &Json) -> (u16, Json) {
    http_call(addr, "POST", token, path, Some(body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_takes_a_ticket_from_open_to_closed() {
    let pki = TestPki::new();
    let mut config = collector_config(&pki);
    config.rules.defaults = false;
    config.http.tokens.push(TokenConfig {
        name: "alice".into(),
        role: Role::Operator,
        sha256: hash_token(OPERATOR),
    });
    config.http.tokens.push(TokenConfig {
        name: "grafana".into(),
        role: Role::Viewer,
        sha256: hash_token(VIEWER),
    });
    let collector = TestCollector::start(config).await;
    let http = collector.http;
    tokio::task::spawn_blocking(move || {
        let new = json!({"kind": "fault", "title": "db backups fail", "priority": "high",
                         "reporter": "customer", "host": "db"});
        let (status, _) = post(http, VIEWER, "/api/patrol/v1/tickets", &new);
        assert_eq!(status, 403, "a viewer may not open tickets");
        let (status, body) = post(http, OPERATOR, "/api/patrol/v1/tickets", &new);
        assert_eq!(status, 200, "{body}");
        let id = body["data"]["id"].as_u64().unwrap();
        let act = |action: Json| post(http, OPERATOR, &format!("/api/patrol/v1/tickets/{id}/actions"), &action);
        let (status, body) = act(json!({"action": "close", "solution": null, "rating": null}));
        assert_eq!(status, 400, "{body}");
        assert!(body["error"].as_str().unwrap_or("").contains("cannot close"), "{body}");
        for step in [
            json!({"action": "acknowledge"}),
            json!({"action": "comment", "text": "looking at the backup job"}),
            json!({"action": "assign", "to": "bob"}),
            json!({"action": "start"}),
            json!({"action": "resolve", "solution": "the backup volume was full; rotated old dumps"}),
            json!({"action": "close", "solution": null, "rating": {"score": 5, "comment": "fast"}}),
        ] {
            let (status, body) = act(step.clone());
            assert_eq!(status, 200, "{step}: {body}");
        }
        let (status, body) = act(json!({"action": "nonsense"}));
        assert_eq!(status, 400, "{body}");
        let (status, _) = post(http, OPERATOR, "/api/patrol/v1/tickets/999/actions", &json!({"action": "acknowledge"}));
        assert_eq!(status, 404);
    })
    .await
    .unwrap();
    let ticket: Json =
        serde_json::from_str(&http_get(http, "/api/patrol/v1/tickets/1").await).unwrap();
    let t = &ticket["data"];
    assert_eq!(t["state"], "closed", "{t}");
    assert_eq!(t["rating"]["score"], 5);
    assert_eq!(t["assignee"], "bob");
    let actors: Vec<&str> = t["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["actor"].as_str())
        .collect();
    assert!(actors.contains(&"alice"), "{actors:?}");
    collector.stop().await;
}

/// `patrol tickets` drives the same API from the command line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patrol_tickets_from_the_command_line() {
    let pki = TestPki::new();
    let mut config = collector_config(&pki);
    config.rules.defaults = false;
    let collector = TestCollector::start(config).await;
    let http = collector.http;
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, TEST_TOKEN).unwrap();
        let patrol = |args: &[&str]| {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_patrol"))
                .arg("tickets")
                .args(args)
                .args(["--url", &format!("http://{http}")])
                .arg("--token-file")
                .arg(&token)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let id = patrol(&[
            "open",
            "printer on fire",
            "--priority",
            "high",
            "--host",
            "db",
        ]);
        let id = id.trim().to_owned();
        assert_eq!(id, "1");
        patrol(&["ack", &id]);
        patrol(&["comment", &id, "extinguisher on its way"]);
        let list = patrol(&["list"]);
        assert!(
            list.contains("printer on fire") && list.contains("acknowledged"),
            "{list}"
        );
        let show = patrol(&["show", &id]);
        assert!(
            show.contains("SLA response") && show.contains("extinguisher"),
            "{show}"
        );
        patrol(&["resolve", &id, "put it out"]);
        patrol(&["close", &id, "--rating", "4"]);
        assert!(
            !patrol(&["list"]).contains("printer on fire"),
            "closed tickets are left out"
        );
        assert!(patrol(&["list", "--all"]).contains("closed"));
    })
    .await
    .unwrap();
    collector.stop().await;
}

/// `patrol oncall now` answers from the configured schedules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patrol_oncall_now_names_who_is_on_duty() {
    let pki = TestPki::new();
    let mut config = collector_config(&pki);
    config.rules.defaults = false;
    config.incidents = toml::from_str(
        r#"
[[schedules]]
name = "ops"
time_zone = "Asia/Shanghai"
overrides = []
holiday_rosters = []
[[schedules.rotations]]
role = "primary"
members = ["anna", "ben"]
shift = "1day"
handoff = "09:00:00"
start_date = "2025-06-01"
"#,
    )
    .unwrap();
    let collector = TestCollector::start(config).await;
    let http = collector.http;
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, TEST_TOKEN).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_patrol"))
            .args(["oncall", "now", "--at", "2025-06-01T02:00:00Z"])
            .args(["--url", &format!("http://{http}")])
            .arg("--token-file")
            .arg(&token)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // 10:00 in Shanghai on the rotation's first day: anna.
        assert!(text.contains("ops (Asia/Shanghai): primary anna"), "{text}");
        assert!(text.contains("secondary nobody"), "{text}");
    })
    .await
    .unwrap();
    collector.stop().await;
}
