//! Issue 5 end to end: a real agent inspects a fixture root and watches a
//! temp dir; its inspection and a file change are read back from the
//! collector's `/api/patrol/v1` routes (the change within 2 s), the
//! baseline and file-integrity series from `/api/v1/query`; the records
//! outlive a collector restart, and a change made while the agent was
//! stopped is reported when it starts again.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use patrol_agent::fim::WatchPath;
use patrol_agent::AgentConfig;
use patrol_collector::storage::disk::DiskStore;
use serde_json::Value as Json;

/// The figure: a change is readable from the API within this.
const FIM_LATENCY: Duration = Duration::from_secs(2);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/baseline")
        .join(name)
}

/// GET with the test token: status and JSON body.
async fn get(addr: SocketAddr, path: &str) -> (u16, Json) {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut tcp = TcpStream::connect(addr).expect("connect to http");
        tcp.set_read_timeout(Some(Duration::from_secs(5))).ok();
        write!(
            tcp,
            "GET {path} HTTP/1.0\r\nHost: test\r\nAuthorization: Bearer {TEST_TOKEN}\r\n\r\n"
        )
        .expect("send request");
        let mut text = String::new();
        tcp.read_to_string(&mut text).expect("read response");
        let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        (status, json)
    })
    .await
    .expect("http task")
}

/// The result vector of an instant query.
async fn query(addr: SocketAddr, promql: &str) -> Vec<Json> {
    let q: String = form_urlencoded(promql);
    let (status, json) = get(addr, &format!("/api/v1/query?query={q}")).await;
    assert_eq!(status, 200, "{promql}: {json}");
    json["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn form_urlencoded(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn sample_value(series: &Json) -> f64 {
    series["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// File-integrity events of host db about `path` (newest first).
async fn events_about(http: SocketAddr, path: &Path) -> Vec<Json> {
    let (status, json) = get(http, "/api/patrol/v1/fim-events?host=db&limit=1000").await;
    assert_eq!(status, 200, "{json}");
    let path = path.display().to_string();
    json["data"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter(|e| e["path"] == path.as_str())
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

fn agent(pki: &TestPki, collector: SocketAddr, watched: &Path, state: &Path) -> AgentConfig {
    let mut config = agent_config(pki, "db", collector);
    config.baseline.root = fixture("weak");
    config.fim.paths = vec![WatchPath {
        path: watched.to_owned(),
        recursive: true,
    }];
    // fim.debounce keeps its default (300 ms): the latency measured is
    // what a default agent gives.
    config.state_dir = Some(state.to_owned());
    assert!(config.problems().is_empty(), "{:?}", config.problems());
    config
}

/// Starts a collector on `config`'s data once the previous one has let go
/// of its database (its last connection tasks may hold it a moment).
async fn start_collector(config: &patrol_collector::CollectorConfig) -> TestCollector {
    let path = config.storage.path.clone();
    wait_for(Duration::from_secs(10), "the store to be free", || {
        let path = path.clone();
        async move {
            tokio::task::spawn_blocking(move || DiskStore::open(&path).ok().map(drop))
                .await
                .ok()
                .flatten()
        }
    })
    .await;
    TestCollector::start(config.clone()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspections_and_file_changes_are_served_kept_and_caught_up_after_restarts() {
    let pki = TestPki::new();
    let collector_config = collector_config(&pki);
    let collector = TestCollector::start(collector_config.clone()).await;
    let watched = tempfile::tempdir().unwrap();
    let hosts = watched.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    let state = tempfile::tempdir().unwrap();
    let (cancel, handle) = spawn_agent(agent(&pki, collector.ingest, watched.path(), state.path()));
    let http = collector.http;

    // The inspection of the weak fixture: listed, then read whole.
    let listed = wait_for(Duration::from_secs(20), "an inspection", || async {
        let (_, json) = get(http, "/api/patrol/v1/inspections?host=db").await;
        json["data"].as_array()?.first().cloned()
    })
    .await;
    assert_eq!(listed["host"], "db");
    assert_eq!(listed["root"], fixture("weak").display().to_string());
    assert!(listed["summary"]["fail"].as_u64().unwrap() > 40, "{listed}");
    assert!(
        listed.get("results").is_none(),
        "the list leaves results out"
    );
    let id = listed["id"].as_str().unwrap().to_owned();
    let (status, whole) = get(http, &format!("/api/patrol/v1/inspections/{id}")).await;
    assert_eq!(status, 200, "{whole}");
    let record = &whole["data"];
    assert_eq!(record["id"], id.as_str());
    let results = record["results"].as_array().unwrap();
    assert_eq!(results.len() as u64, listed["checks"].as_u64().unwrap());
    let auth_001 = results.iter().find(|r| r["id"] == "AUTH-001").unwrap();
    assert_eq!(auth_001["verdict"], "fail");
    assert_eq!(auth_001["evidence"][0]["text"], "PASS_MAX_DAYS 99999");
    let (status, json) = get(
        http,
        &format!("/api/patrol/v1/inspections/{}", "0".repeat(32)),
    )
    .await;
    assert_eq!(
        (status, json["errorType"].as_str()),
        (404, Some("not_found"))
    );
    let (status, json) = get(http, "/api/patrol/v1/fim-events?since=soon").await;
    assert_eq!(status, 400);
    assert!(
        json["error"].as_str().unwrap().contains("\"since\""),
        "{json}"
    );

    // The watch is up once its counter is in the store (it starts at 0).
    wait_for(
        Duration::from_secs(20),
        "patrol_fim_events_total",
        || async {
            let found = query(http, "patrol_fim_events_total{host=\"db\"}").await;
            (!found.is_empty()).then_some(())
        },
    )
    .await;

    // A change, read back from the API within 2 s.
    let started = Instant::now();
    std::fs::write(&hosts, "10.9.9.9 localhost\n").unwrap();
    let event = wait_for(FIM_LATENCY, "the file-integrity event", || async {
        events_about(http, &hosts).await.into_iter().next()
    })
    .await;
    let latency = started.elapsed();
    eprintln!("file change readable from /api/patrol/v1/fim-events after {latency:?}");
    assert!(latency < FIM_LATENCY, "{latency:?}");
    assert_eq!(event["change"], "modified");
    assert_eq!(event["host"], "db");
    let message = event["message"].as_str().unwrap();
    assert!(message.contains("content sha256 "), "{message}");

    // The series rules and dashboards use.
    let checks = wait_for(Duration::from_secs(10), "baseline series", || async {
        let found = query(http, "patrol_baseline_check_passed{host=\"db\"}").await;
        (found.len() > 40).then_some(found)
    })
    .await;
    for c in &checks {
        for label in ["check_id", "category", "severity", "host"] {
            assert!(c["metric"][label].is_string(), "{c}");
        }
        assert!([0.0, 1.0].contains(&sample_value(c)), "{c}");
    }
    let auth = query(http, "patrol_baseline_check_passed{check_id=\"AUTH-001\"}").await;
    assert_eq!(sample_value(&auth[0]), 0.0);
    let score = query(http, "patrol_baseline_score{host=\"db\"}").await;
    let score = sample_value(&score[0]);
    assert!((0.0..=1.0).contains(&score), "{score}");
    let path = watched.path().display().to_string();
    wait_for(Duration::from_secs(5), "the change counted", || async {
        let found = query(http, "patrol_fim_events_total{host=\"db\"}").await;
        let counted = found
            .iter()
            .any(|s| s["metric"]["path"] == path.as_str() && sample_value(s) >= 1.0);
        counted.then_some(())
    })
    .await;

    // The agent stops; the file changes meanwhile; the collector restarts.
    cancel.cancel();
    handle.await.expect("agent stops");
    std::fs::write(&hosts, "10.6.6.6 localhost\n").unwrap();
    collector.stop().await;
    let collector = start_collector(&collector_config).await;
    let http = collector.http;
    let (status, again) = get(http, &format!("/api/patrol/v1/inspections/{id}")).await;
    assert_eq!(status, 200, "the inspection outlived the restart: {again}");
    assert_eq!(again["data"]["results"], record["results"]);
    let kept = events_about(http, &hosts).await;
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0]["id"], event["id"]);

    // The agent's next start reports the change it missed.
    let (cancel, handle) = spawn_agent(agent(&pki, collector.ingest, watched.path(), state.path()));
    let caught_up = wait_for(Duration::from_secs(20), "the missed change", || async {
        events_about(http, &hosts)
            .await
            .into_iter()
            .find(|e| e["id"] != event["id"])
    })
    .await;
    let message = caught_up["message"].as_str().unwrap();
    assert!(
        message.ends_with("(while the agent was stopped)") && message.contains("content sha256"),
        "{message}"
    );
    cancel.cancel();
    handle.await.expect("agent stops");
    collector.stop().await;
}
