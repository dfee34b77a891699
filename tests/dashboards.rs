//! The Grafana side of issue 8: every dashboard in `dashboards/` is JSON
//! Grafana accepts (uid, title, version, panels, the `$datasource` and
//! `$host` variables, no data source named outright), every panel query
//! parses once its variables are substituted the way Grafana would, and,
//! against a collector fed by a real agent, runs, with data in the host
//! panels. The provisioning files point Grafana at the collector.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use patrol_agent::checks::{CheckConfig, HttpCheck, TcpCheck};
use serde_json::Value;

/// The host the live test's agent reports as (its certificate's name).
const HOST: &str = "db";

/// Panels that need more than this test's agent gives them, by dashboard:
/// firing alerts, HTTPS and process checks, systemd (none in a container),
/// disk devices (a container may have none in /proc/diskstats), a breached
/// SLA clock.
const MAY_BE_EMPTY: &[(&str, &str)] = &[
    ("fleet-overview.json", "Firing alerts"),
    ("host-detail.json", "Disk throughput"),
    ("host-detail.json", "Disk busy"),
    ("services.json", "Certificate expiry"),
    ("services.json", "Processes matched"),
    ("services.json", "Process memory"),
    ("services.json", "systemd units"),
    ("incidents-sla.json", "SLA breaches in the period"),
];

fn dashboards_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards")
}

/// Every dashboard file with its parsed JSON, in name order.
fn dashboards() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dashboards_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "expected at least five dashboards, found {files:?}"
    );
    files
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                json,
            )
        })
        .collect()
}

/// Panels, those inside collapsed rows included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        out.push(panel);
        if let Some(inner) = panel["panels"].as_array() {
            out.extend(inner);
        }
    }
    out
}

/// What a query panel asks: (dashboard, panel title, expression).
fn queries() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (file, dashboard) in dashboards() {
        for panel in panels(&dashboard) {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap_or_else(|| {
                    panic!("{file}: panel {} has a target without expr", panel["title"])
                });
                out.push((
                    file.clone(),
                    panel["title"].as_str().unwrap().to_owned(),
                    expr.to_owned(),
                ));
            }
        }
    }
    out
}

/// Substitutes template variables as Grafana does before a query is sent:
/// `$host` (one host picked; a multi-value pick would be a `(a|b)` regex,
/// which `=~` also takes), and the interval variables for a 6-hour
/// dashboard at a 10 s scrape interval.
fn substitute(expr: &str, host: &str) -> String {
    [
        ("${host}", host),
        ("$host", host),
        ("$__rate_interval", "1m"),
        ("$__interval", "15s"),
        ("$__range", "6h"),
    ]
    .iter()
    .fold(expr.to_owned(), |e, (var, value)| e.replace(var, value))
}

#[test]
fn every_dashboard_has_the_fields_grafana_requires_and_a_unique_uid() {
    let mut uids = BTreeSet::new();
    for (file, d) in dashboards() {
        let uid = d["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: no uid"));
        assert!(!uid.is_empty() && uid.len() <= 40, "{file}: uid {uid:?}");
        assert!(uids.insert(uid.to_owned()), "{file}: uid {uid} used twice");
        assert!(
            d["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{file}: title"
        );
        assert!(
            d["version"].as_u64().is_some_and(|v| v >= 1),
            "{file}: version"
        );
        assert!(
            d["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
            "{file}: schemaVersion"
        );
        assert!(
            d["time"]["from"].is_string() && d["time"]["to"].is_string(),
            "{file}: time"
        );
        assert!(
            d.get("id").is_none_or(Value::is_null),
            "{file}: a provisioned dashboard has no id"
        );

        let vars = d["templating"]["list"]
            .as_array()
            .unwrap_or_else(|| panic!("{file}: templating"));
        let var = |name: &str| {
            vars.iter()
                .find(|v| v["name"] == name)
                .unwrap_or_else(|| panic!("{file}: no ${name} variable"))
        };
        assert_eq!(var("datasource")["type"], "datasource", "{file}");
        assert_eq!(var("datasource")["query"], "prometheus", "{file}");
        assert_eq!(var("host")["type"], "query", "{file}");
        assert_eq!(
            var("host")["query"]["query"],
            "label_values(node_load1, host)",
            "{file}"
        );

        let mut ids = BTreeSet::new();
        for panel in panels(&d) {
            let title = panel["title"]
                .as_str()
                .unwrap_or_else(|| panic!("{file}: untitled panel"));
            assert!(panel["type"].is_string(), "{file}: {title}: type");
            assert!(
                ids.insert(panel["id"].as_u64().unwrap()),
                "{file}: {title}: id reused"
            );
            for key in ["h", "w", "x", "y"] {
                assert!(
                    panel["gridPos"][key].is_u64(),
                    "{file}: {title}: gridPos.{key}"
                );
            }
            if panel["type"] != "row" {
                assert!(
                    panel["targets"].as_array().is_some_and(|t| !t.is_empty()),
                    "{file}: {title}: targets"
                );
            }
        }
    }
}

/// Every `datasource` anywhere in a dashboard is the variable (or Grafana's
/// own, for the built-in annotations), never a name or uid of one install.
#[test]
fn no_dashboard_names_a_data_source() {
    fn walk(file: &str, v: &Value, found: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (key, value) in map {
                    if key == "datasource" {
                        let uid = value["uid"].as_str().unwrap_or("");
                        let ok = matches!(uid, "${datasource}" | "$datasource" | "-- Grafana --");
                        if !ok {
                            found.push(format!("{file}: datasource {value}"));
                        }
                    }
                    walk(file, value, found);
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(file, i, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    for (file, d) in dashboards() {
        walk(&file, &d, &mut found);
    }
    assert!(found.is_empty(), "hard-coded data sources: {found:#?}");
}

#[test]
fn every_panel_query_parses_after_substitution() {
    let mut failures = Vec::new();
    let all = queries();
    assert!(all.len() > 40, "only {} queries", all.len());
    for (file, title, expr) in all {
        let query = substitute(&expr, HOST);
        assert!(
            !query.contains('$'),
            "{file}: {title}: variable left in {query}"
        );
        if let Err(e) = patrol_collector::query::parse(&query) {
            failures.push(format!("{file}: {title}: {query}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "queries that do not parse:\n{}",
        failures.join("\n")
    );
}

#[test]
fn provisioning_points_grafana_at_the_collector_with_a_token_from_the_environment() {
    let dir = dashboards_dir().join("provisioning");
    let read = |p: &str| -> serde_yaml_ng::Value {
        serde_yaml_ng::from_str(&std::fs::read_to_string(dir.join(p)).unwrap()).unwrap()
    };
    let sources = read("datasources/patrol.yaml");
    let source = &sources["datasources"][0];
    assert_eq!(source["type"].as_str(), Some("prometheus"));
    assert_eq!(source["url"].as_str(), Some("${PATROL_COLLECTOR_URL}"));
    assert_eq!(
        source["jsonData"]["httpHeaderName1"].as_str(),
        Some("Authorization")
    );
    assert_eq!(
        source["secureJsonData"]["httpHeaderValue1"].as_str(),
        Some("Bearer ${PATROL_API_TOKEN}")
    );
    let providers = read("dashboards/patrol.yaml");
    assert_eq!(providers["providers"][0]["type"].as_str(), Some("file"));
    assert!(providers["providers"][0]["options"]["path"]
        .as_str()
        .is_some());
}

/// Percent-encodes a query parameter (RFC 3986 unreserved bytes kept).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// POSTs `body` as JSON with the test token; panics unless answered 2xx.
async fn post_ok(http: std::net::SocketAddr, path: &str, body: &Value) -> Value {
    let (path, body) = (path.to_owned(), body.clone());
    let (status, answer) = tokio::task::spawn_blocking(move || {
        http_call(http, "POST", TEST_TOKEN, &path, Some(&body))
    })
    .await
    .unwrap();
    assert!((200..300).contains(&status), "{status}: {answer}");
    answer
}

/// Opens a fault ticket; its id.
async fn open_ticket(http: std::net::SocketAddr, title: &str, host: Option<&str>) -> u64 {
    let answer = post_ok(
        http,
        "/api/patrol/v1/tickets",
        &serde_json::json!({
            "kind": "fault", "title": title, "description": "", "host": host,
            "priority": "high", "reporter": "customer", "contact": "",
        }),
    )
    .await;
    answer["data"]["id"]
        .as_u64()
        .or(answer["id"].as_u64())
        .unwrap_or_else(|| panic!("no id in {answer}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panel_queries_run_against_a_collector_fed_by_a_real_agent() {
    let pki = TestPki::new();
    let mut collector_config = collector_config(&pki);
    collector_config.incidents = toml::from_str(
        r#"
[[schedules]]
name = "ops"
time_zone = "Europe/Berlin"

[[schedules.rotations]]
role = "primary"
members = ["anna", "ben"]
shift = "1day"
handoff = "09:00:00"
start_date = "2025-06-01"
"#,
    )
    .expect("incidents config");
    let collector = TestCollector::start(collector_config).await;
    let mut config = agent_config(&pki, HOST, collector.ingest);
    // Checks of the collector itself, so that the service panels have data.
    config.checks = vec![
        CheckConfig {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            tcp: Some(TcpCheck {
                address: collector.ingest.to_string(),
            }),
            ..CheckConfig::new("ingest")
        },
        CheckConfig {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            http: Some(HttpCheck::new(&format!(
                "http://{}/-/healthy",
                collector.http
            ))),
            ..CheckConfig::new("api")
        },
    ];
    let (agent, agent_task) = spawn_agent(config);
    // Tickets for the incidents dashboard: one closed with a rating (its
    // response clock met), one open on the agent's host.
    let closed = open_ticket(collector.http, "Backup failed", None).await;
    for action in [
        serde_json::json!({"action": "acknowledge"}),
        serde_json::json!({"action": "resolve", "solution": "re-ran the backup"}),
        serde_json::json!({"action": "close", "rating": {"score": 4, "comment": ""}}),
    ] {
        post_ok(
            collector.http,
            &format!("/api/patrol/v1/tickets/{closed}/actions"),
            &action,
        )
        .await;
    }
    open_ticket(collector.http, "Disk filling", Some(HOST)).await;
    // Rates need two samples of every counter inside their window.
    let checks = format!("/api/v1/query?query={}", encode("patrol_service_up"));
    wait_for(
        Duration::from_secs(20),
        "the agent's check results",
        || async {
            http_get(collector.http, &checks)
                .await
                .contains("\"api\"")
                .then_some(())
        },
    )
    .await;
    let node_load = format!(
        "/api/v1/query?query={}",
        encode(&format!("node_load1{{host=\"{HOST}\"}}"))
    );
    wait_for(Duration::from_secs(20), "the agent's samples", || async {
        http_get(collector.http, &node_load)
            .await
            .contains(HOST)
            .then_some(())
    })
    .await;
    // The collector stores its own series every 15 s; rates over them need
    // two samples of the met clocks.
    let rating = format!(
        "/api/v1/query?query={}",
        encode("count_over_time(patrol_ticket_sla_clocks{state=\"met\"}[2m]) >= 2")
    );
    wait_for(
        Duration::from_secs(45),
        "the collector's ticket series",
        || async {
            http_get(collector.http, &rating)
                .await
                .contains("patrol-collector")
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut empty = BTreeMap::<String, Vec<String>>::new();
    let mut failures = Vec::new();
    for (file, title, expr) in queries() {
        let query = substitute(&expr, HOST);
        let end = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let path = format!(
            "/api/v1/query_range?query={}&start={}&end={end}&step=5",
            encode(&query),
            end - 120
        );
        let body = http_get(collector.http, &path).await;
        let answer: Value = match serde_json::from_str(&body) {
            Ok(v) => v,
            Err(_) => {
                failures.push(format!("{file}: {title}: not JSON: {body}"));
                continue;
            }
        };
        if answer["status"] != "success" {
            failures.push(format!("{file}: {title}: {query}: {body}"));
        } else if answer["data"]["result"]
            .as_array()
            .is_none_or(Vec::is_empty)
        {
            empty.entry(file).or_default().push(title);
        }
    }
    agent.cancel();
    let _ = agent_task.await;
    collector.stop().await;
    assert!(
        failures.is_empty(),
        "queries the collector refused:\n{}",
        failures.join("\n")
    );

    eprintln!("panels without data from this agent: {empty:#?}");
    // Every panel shows the agent's data, but for those that need more.
    let missing: Vec<String> = empty
        .iter()
        .flat_map(|(file, titles)| titles.iter().map(move |t| (file.as_str(), t.as_str())))
        .filter(|panel| !MAY_BE_EMPTY.contains(panel))
        .map(|(file, title)| format!("{file}: {title}"))
        .collect();
    assert!(missing.is_empty(), "panels without data: {missing:#?}");
}
