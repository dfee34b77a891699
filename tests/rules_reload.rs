//! Rule files are reloaded when they change: a new rule appears in
//! `/api/v1/rules`; a broken file is refused (the old rules keep running).

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value as Json;

async fn rule_names(http: std::net::SocketAddr) -> Vec<String> {
    let body = http_get(http, "/api/v1/rules").await;
    let json: Json = serde_json::from_str(&body).unwrap_or(Json::Null);
    json["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["name"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_rule_file_is_reloaded_and_a_broken_one_refused() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("site.yml");
    let one =
        "groups:\n  - name: site\n    rules:\n      - alert: First\n        expr: vector(1)\n";
    std::fs::write(&file, one).unwrap();
    let mut config = collector_config(&pki);
    config.rules.defaults = false;
    config.rules.files = vec![file.clone()];
    let collector = TestCollector::start(config).await;
    let http = collector.http;
    assert_eq!(rule_names(http).await, ["First"]);

    let two = format!("{one}      - alert: Second\n        expr: vector(2)\n");
    std::fs::write(&file, two).unwrap();
    wait_for(Duration::from_secs(10), "the second rule", || async move {
        (rule_names(http).await == ["First", "Second"]).then_some(())
    })
    .await;

    std::fs::write(
        &file,
        "groups:\n  - name: site\n    rules:\n      - alert: Broken\n        expr: vector(\n",
    )
    .unwrap();
    // The refused file leaves the rules as they were.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rule_names(http).await, ["First", "Second"]);
    collector.stop().await;
}
