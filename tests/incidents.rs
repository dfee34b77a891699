//! Alerts become tickets in the running collector: a firing critical alert
//! opens one ticket (with its SLA clocks running), a silenced one opens
//! none, tickets show on /metrics and survive a restart.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value as Json;

async fn tickets(http: std::net::SocketAddr) -> Vec<Json> {
    let body = http_get(http, "/api/patrol/v1/tickets").await;
    serde_json::from_str::<Json>(&body)
        .ok()
        .and_then(|j| j["data"].as_array().cloned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_alert_opens_a_ticket_and_a_silenced_one_does_not() {
    let pki = TestPki::new();
    let rules = pki.path().join("r.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: g\n    interval: 1s\n    rules:\n      - alert: DiskBroken\n        expr: vector(1)\n        for: 2s\n        labels:\n          severity: critical\n      - alert: Quiet\n        expr: vector(2)\n        for: 2s\n        labels:\n          severity: critical\n",
    )
    .unwrap();
    let mut config = collector_config(&pki);
    config.rules.defaults = false;
    config.rules.files = vec![rules];
    let collector = TestCollector::start(config.clone()).await;
    let http = collector.http;
    // Silence Quiet before it fires.
    let silence = serde_json::json!({
        "matchers": [{"name": "alertname", "value": "Quiet", "isRegex": false, "isEqual": true}],
        "startsAt": patrol_shared::model::rfc3339(patrol_shared::model::now_ms() - 1000),
        "endsAt": patrol_shared::model::rfc3339(patrol_shared::model::now_ms() + 3_600_000),
        "createdBy": "test",
        "comment": "quiet",
    });
    let body = silence.to_string();
    let status = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut tcp = std::net::TcpStream::connect(http).unwrap();
        write!(
            tcp,
            "POST /api/v2/silences HTTP/1.0\r\nAuthorization: Bearer {TEST_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut text = String::new();
        tcp.read_to_string(&mut text).unwrap();
        text
    })
    .await
    .unwrap();
    assert!(status.contains(" 200 OK"), "{status}");

    let list = wait_for(
        Duration::from_secs(20),
        "a ticket for DiskBroken",
        || async move {
            let list = tickets(http).await;
            (!list.is_empty()).then_some(list)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let list_after = tickets(http).await;
    assert_eq!(
        list_after.len(),
        1,
        "the silenced alert opens no ticket: {list_after:?}"
    );
    let t = &list[0];
    assert_eq!(t["priority"], "critical");
    assert_eq!(t["state"], "open");
    assert_eq!(t["alertFiring"], true);
    let clocks: Vec<&str> = t["sla"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["kind"].as_str())
        .collect();
    assert!(clocks.contains(&"response"), "{clocks:?}");
    let id = t["id"].as_u64().unwrap();
    let one: Json =
        serde_json::from_str(&http_get(http, &format!("/api/patrol/v1/tickets/{id}")).await)
            .unwrap();
    assert!(
        one["data"]["timeline"].as_array().unwrap().len() >= 2,
        "{one}"
    );
    let metrics = scrape(http).await;
    assert!(
        metrics.contains("patrol_tickets{priority=\"critical\",state=\"open\"} 1"),
        "{:?}",
        lines_with(&metrics, "patrol_tickets", "")
    );
    assert!(metrics.contains("patrol_ticket_sla_remaining_seconds{clock=\"response\""));
    collector.stop().await;

    // A restart keeps the ticket, and does not open a second one.
    let collector = TestCollector::start(config).await;
    let http = collector.http;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let list = tickets(http).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["id"].as_u64(), Some(id));
    collector.stop().await;
}
