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
    let (status, answer) = tokio::task::spawn_blocking(move || {
        http_call(http, "POST", TEST_TOKEN, "/api/v2/silences", Some(&silence))
    })
    .await
    .unwrap();
    assert_eq!(status, 200, "{answer}");

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

/// The incident metrics are stored as the collector's own series (job
/// "patrol-collector"), so PromQL, the rules and Grafana see them; /metrics
/// still shows each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incident_metrics_are_stored_and_queryable() {
    let pki = TestPki::new();
    let mut config = collector_config(&pki);
    config.rules.defaults = false;
    // Primary is covered; the secondary layer's only rotation starts in
    // three days, so the next 14 days hold a three-day gap.
    let start = (time::OffsetDateTime::now_utc() + time::Duration::days(3)).date();
    config.incidents = toml::from_str(&format!(
        r#"
[[schedules]]
name = "ops"
time_zone = "UTC"

[[schedules.rotations]]
role = "primary"
members = ["anna", "ben"]
shift = "1day"
handoff = "09:00:00"
start_date = "2020-01-01"

[[schedules.rotations]]
role = "secondary"
members = ["dora"]
shift = "1day"
handoff = "00:00:00"
start_date = "{start}"
"#
    ))
    .expect("incidents config");
    let collector = TestCollector::start(config).await;
    let http = collector.http;
    let query = |q: &str| {
        let path = format!(
            "/api/v1/query?query={}",
            form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
        );
        async move {
            let body = http_get(http, &path).await;
            serde_json::from_str::<Json>(&body).unwrap_or(Json::Null)["data"]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        }
    };
    let gap = wait_for(Duration::from_secs(20), "coverage gap stored", || async {
        let r =
            query(r#"patrol_oncall_coverage_gap_seconds{job="patrol-collector",role="secondary"}"#)
                .await;
        r.first().cloned()
    })
    .await;
    let seconds: f64 = gap["value"][1].as_str().unwrap().parse().unwrap();
    assert!(
        (2.0 * 86_400.0..=3.0 * 86_400.0).contains(&seconds),
        "gap of {seconds} s: {gap}"
    );
    assert_eq!(gap["metric"]["schedule"], "ops");
    let primary = query(r#"patrol_oncall_coverage_gap_seconds{role="primary"}"#).await;
    assert_eq!(primary[0]["value"][1], "0", "{primary:?}");
    let on_call = query(r#"patrol_oncall{schedule="ops"}"#).await;
    assert_eq!(on_call.len(), 1, "{on_call:?}");
    assert!(
        matches!(
            on_call[0]["metric"]["person"].as_str(),
            Some("anna" | "ben")
        ),
        "{on_call:?}"
    );
    assert_eq!(on_call[0]["metric"]["role"], "primary");
    assert_eq!(on_call[0]["metric"]["source"], "rotation");
    let ingest = query(r#"patrol_ingest_connected_agents{job="patrol-collector"}"#).await;
    assert_eq!(ingest.len(), 1, "{ingest:?}");
    // Served live on /metrics, once: not also from the store.
    let metrics = scrape(http).await;
    let lines = metrics
        .lines()
        .filter(|l| l.starts_with("patrol_oncall_coverage_gap_seconds{"))
        .count();
    assert_eq!(lines, 2, "{metrics}");
    assert!(!metrics.contains("job=\"patrol-collector\""), "{metrics}");
    collector.stop().await;
}
