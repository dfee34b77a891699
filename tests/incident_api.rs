//! The incident API over loopback HTTP, with tokens of each role: only an
//! admin changes on-call schedules, an override shows in the schedule and
//! in who is on call until it is taken back; every change and every refusal
//! lands in the audit log, which only an admin reads; ticket search finds
//! closed tickets (the problem library) by words, host, alert, state and
//! time; bad input is a 4xx that names the field.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use patrol_collector::http::auth::{hash_token, Role, TokenConfig};
use serde_json::{json, Value as Json};

const ADMIN: &str = TEST_TOKEN;
const OPERATOR: &str = "patrol_operator_token_for_tests";
const VIEWER: &str = "patrol_viewer_token_for_tests";

/// 2026-07-01T00:00:00Z and the next two midnights, Unix seconds.
const JULY_1: i64 = 1_782_864_000;
const JULY_2: i64 = 1_782_950_400;

/// A collector with an admin ("test"), an operator ("alice") and a viewer
/// ("grafana"), and the schedule "ops": anna and ben on primary, dora and
/// emil on secondary, handing over daily at 09:00 in Shanghai.
async fn collector(rules: Option<std::path::PathBuf>) -> (TestPki, TestCollector) {
    let pki = TestPki::new();
    let mut config = collector_config(&pki);
    config.rules.defaults = false;
    config.rules.files = rules.into_iter().collect();
    for (name, role, token) in [
        ("alice", Role::Operator, OPERATOR),
        ("grafana", Role::Viewer, VIEWER),
    ] {
        config.http.tokens.push(TokenConfig {
            name: name.into(),
            role,
            sha256: hash_token(token),
        });
    }
    config.incidents = toml::from_str(
        r#"
[[schedules]]
name = "ops"
time_zone = "Asia/Shanghai"
[[schedules.rotations]]
role = "primary"
members = ["anna", "ben"]
shift = "1day"
handoff = "09:00:00"
start_date = "2025-06-01"
[[schedules.rotations]]
role = "secondary"
members = ["dora", "emil"]
shift = "1day"
handoff = "09:00:00"
start_date = "2025-06-01"
[[schedules]]
name = "值班 night"
time_zone = "Asia/Shanghai"
[[schedules.rotations]]
role = "primary"
members = ["fang"]
shift = "1day"
handoff = "09:00:00"
start_date = "2025-06-01"
"#,
    )
    .unwrap();
    let collector = TestCollector::start(config).await;
    (pki, collector)
}

/// GET that must answer 200; its `data`.
fn data(addr: SocketAddr, token: &str, path: &str) -> Json {
    let (status, body) = http_call(addr, "GET", token, path, None);
    assert_eq!(status, 200, "GET {path}: {body}");
    body["data"].clone()
}

fn error_of(body: &Json) -> &str {
    body["error"].as_str().unwrap_or("")
}

fn override_body(who: &str) -> Json {
    json!({"who": who, "from": "2026-07-01T00:00:00Z", "to": "2026-07-02T00:00:00Z",
           "reason": "anna is at a wedding"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrides_need_an_admin_and_show_in_the_schedule_and_on_call_until_removed() {
    let (_pki, collector) = collector(None).await;
    let http = collector.http;
    tokio::task::spawn_blocking(move || {
        let path = "/api/patrol/v1/schedules/ops/overrides";
        for token in [OPERATOR, VIEWER] {
            let (status, body) = http_call(http, "POST", token, path, Some(&override_body("carl")));
            assert_eq!(status, 403, "{body}");
            assert!(error_of(&body).contains("admin only"), "{body}");
        }
        let (status, body) = http_call(http, "POST", ADMIN, path, Some(&override_body("carl")));
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["id"], 1);
        // Unix seconds work as well as RFC 3339; the role defaults to primary.
        let secondary = json!({"role": "secondary", "who": "fay",
                               "from": JULY_1.to_string(), "to": JULY_2.to_string()});
        let (status, body) = http_call(http, "POST", ADMIN, path, Some(&secondary));
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["id"], 2);

        // The schedule's shifts: the rotation, carl for the day, the rotation.
        let s = data(
            http,
            VIEWER,
            "/api/patrol/v1/schedules/ops?from=2026-06-30T00:00:00Z&to=2026-07-03T00:00:00Z",
        );
        assert_eq!(s["from"], (JULY_1 - 86_400) * 1000);
        let primary = &s["layers"][0];
        assert_eq!(primary["role"], "primary", "{s}");
        let carl: Vec<&Json> = primary["shifts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|sh| sh["on_call"]["who"] == "carl")
            .collect();
        assert_eq!(carl.len(), 1, "{primary}");
        assert_eq!(carl[0]["on_call"]["source"]["type"], "override");
        assert_eq!(
            (carl[0]["from"].as_i64(), carl[0]["to"].as_i64()),
            (Some(JULY_1 * 1000), Some(JULY_2 * 1000))
        );
        let overrides = s["overrides"].as_array().unwrap();
        assert_eq!(overrides.len(), 2, "{s}");
        assert_eq!(overrides[0]["created_by"], "test");
        assert_eq!(overrides[0]["reason"], "anna is at a wedding");
        let list = data(http, VIEWER, "/api/patrol/v1/schedules");
        assert_eq!(list[0]["overrides"].as_array().map(Vec::len), Some(2));

        let noon = "/api/patrol/v1/oncall?at=2026-07-01T12:00:00Z";
        let now = data(http, VIEWER, noon);
        let ops = &now["schedules"][0];
        assert_eq!(ops["primary"]["who"], "carl", "{now}");
        assert_eq!(ops["primary"]["source"]["type"], "override");
        assert_eq!(ops["secondary"]["who"], "fay");

        let one = "/api/patrol/v1/schedules/ops/overrides/1";
        for token in [OPERATOR, VIEWER] {
            let (status, body) = http_call(http, "DELETE", token, one, None);
            assert_eq!(status, 403, "{body}");
        }
        let (status, body) = http_call(http, "DELETE", ADMIN, one, None);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["removed"], 1);
        let now = data(http, VIEWER, noon);
        assert_eq!(
            now["schedules"][0]["primary"]["source"]["type"], "rotation",
            "{now}"
        );
        assert_ne!(now["schedules"][0]["primary"]["who"], "carl");
        assert_eq!(now["schedules"][0]["secondary"]["who"], "fay");
        let (status, body) = http_call(http, "DELETE", ADMIN, one, None);
        assert_eq!(status, 404, "removed already: {body}");
    })
    .await
    .unwrap();
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_keeps_changes_and_refusals_and_only_admins_read_it() {
    let (_pki, collector) = collector(None).await;
    let http = collector.http;
    tokio::task::spawn_blocking(move || {
        let started = patrol_shared::model::now_ms();
        let path = "/api/patrol/v1/schedules/ops/overrides";
        let (status, _) = http_call(http, "POST", OPERATOR, path, Some(&override_body("carl")));
        assert_eq!(status, 403);
        let (status, _) = http_call(http, "POST", ADMIN, path, Some(&override_body("carl")));
        assert_eq!(status, 200);
        let (status, _) = http_call(http, "DELETE", VIEWER, &format!("{path}/1"), None);
        assert_eq!(status, 403);
        let (status, _) = http_call(http, "DELETE", ADMIN, &format!("{path}/1"), None);
        assert_eq!(status, 200);
        let ticket = json!({"kind": "consultation", "title": "how long are logs kept?",
                            "priority": "low", "reporter": "customer"});
        let (status, _) = http_call(
            http,
            "POST",
            OPERATOR,
            "/api/patrol/v1/tickets",
            Some(&ticket),
        );
        assert_eq!(status, 200);

        for token in [OPERATOR, VIEWER] {
            let (status, body) = http_call(http, "GET", token, "/api/patrol/v1/audit", None);
            assert_eq!(status, 403, "{body}");
            assert!(error_of(&body).contains("admin only"), "{body}");
        }
        let log = data(http, ADMIN, "/api/patrol/v1/audit");
        let entries = log.as_array().unwrap();
        let seen: Vec<(&str, &str, &str, u64)> = entries
            .iter()
            .map(|e| {
                (
                    e["actor"].as_str().unwrap(),
                    e["method"].as_str().unwrap(),
                    e["path"].as_str().unwrap(),
                    e["status"].as_u64().unwrap(),
                )
            })
            .collect();
        // Newest first; reads (the refused GETs of the log) are not changes.
        assert_eq!(
            seen,
            [
                ("alice", "POST", "/api/patrol/v1/tickets", 200),
                (
                    "test",
                    "DELETE",
                    "/api/patrol/v1/schedules/ops/overrides/1",
                    200
                ),
                (
                    "grafana",
                    "DELETE",
                    "/api/patrol/v1/schedules/ops/overrides/1",
                    403
                ),
                (
                    "test",
                    "POST",
                    "/api/patrol/v1/schedules/ops/overrides",
                    200
                ),
                (
                    "alice",
                    "POST",
                    "/api/patrol/v1/schedules/ops/overrides",
                    403
                ),
            ],
            "{log}"
        );
        let refused = &entries[4];
        assert_eq!(refused["role"], "operator");
        assert_eq!(refused["request"]["who"], "carl", "the body is kept");
        for e in entries {
            let from = e["from"].as_str().unwrap();
            assert!(from.starts_with("127.0.0.1:"), "{e}");
            assert!(e["at"].as_i64().unwrap() >= started, "{e}");
        }
        assert_eq!(entries[2]["role"], "viewer");

        let alice = data(http, ADMIN, "/api/patrol/v1/audit?actor=alice");
        assert_eq!(alice.as_array().map(Vec::len), Some(2), "{alice}");
        let newest = data(http, ADMIN, "/api/patrol/v1/audit?limit=1");
        assert_eq!(newest[0]["path"], "/api/patrol/v1/tickets", "{newest}");
        assert_eq!(newest.as_array().map(Vec::len), Some(1));
        let later = (patrol_shared::model::now_ms() + 60_000) / 1000;
        let none = data(http, ADMIN, &format!("/api/patrol/v1/audit?since={later}"));
        assert_eq!(none, json!([]));
        let before = (started - 60_000) / 1000;
        let none = data(http, ADMIN, &format!("/api/patrol/v1/audit?until={before}"));
        assert_eq!(none, json!([]));
        let all = data(
            http,
            ADMIN,
            &format!(
                "/api/patrol/v1/audit?since={}&until={later}",
                started / 1000
            ),
        );
        assert_eq!(all.as_array().map(Vec::len), Some(5), "{all}");
    })
    .await
    .unwrap();
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_search_finds_closed_tickets_in_the_problem_library() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("backup.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: backup\n    interval: 1s\n    rules:\n      - alert: BackupFailed\n        expr: vector(1)\n        labels:\n          severity: warning\n          host: db\n",
    )
    .unwrap();
    let (_pki, collector) = collector(Some(rules)).await;
    let http = collector.http;
    let alert = wait_for(
        Duration::from_secs(30),
        "a ticket for BackupFailed",
        || async move {
            let body = http_get(http, "/api/patrol/v1/tickets?alertname=BackupFailed").await;
            let list: Json = serde_json::from_str(&body).ok()?;
            list["data"][0]["id"].as_u64()
        },
    )
    .await;
    tokio::task::spawn_blocking(move || {
        let started = patrol_shared::model::now_ms();
        // Silenced, the still-firing alert does not reopen its ticket once closed.
        let silence = json!({
            "matchers": [{"name": "alertname", "value": "BackupFailed", "isRegex": false, "isEqual": true}],
            "startsAt": patrol_shared::model::rfc3339(started - 1000),
            "endsAt": patrol_shared::model::rfc3339(started + 3_600_000),
            "createdBy": "test", "comment": "being fixed",
        });
        let (status, body) = http_call(http, "POST", ADMIN, "/api/v2/silences", Some(&silence));
        assert_eq!(status, 200, "{body}");
        let act = |id: u64, action: Json| {
            let path = format!("/api/patrol/v1/tickets/{id}/actions");
            let (status, body) = http_call(http, "POST", OPERATOR, &path, Some(&action));
            assert_eq!(status, 200, "{action}: {body}");
        };
        act(alert, json!({"action": "acknowledge"}));
        act(alert, json!({"action": "comment", "text": "the restic repository is locked"}));
        act(alert, json!({"action": "resolve", "solution": "Removed the stale lock; backups run again"}));
        act(alert, json!({"action": "close", "solution": null, "rating": {"score": 5, "comment": ""}}));
        let open = |title: &str, kind: &str, host: &str| {
            let new = json!({"kind": kind, "title": title, "priority": "medium",
                             "reporter": "customer", "host": host});
            let (status, body) = http_call(http, "POST", OPERATOR, "/api/patrol/v1/tickets", Some(&new));
            assert_eq!(status, 200, "{body}");
            body["data"]["id"].as_u64().unwrap()
        };
        let printer = open("printer jams on tray 2", "request", "office");
        act(printer, json!({"action": "resolve", "solution": "replaced the feed roller"}));
        act(printer, json!({"action": "close", "solution": null, "rating": null}));
        let disk = open("disk almost full", "fault", "web");

        let ids = |query: &str| -> Vec<u64> {
            let list = data(http, VIEWER, &format!("/api/patrol/v1/tickets?{query}"));
            list.as_array().unwrap().iter().filter_map(|t| t["id"].as_u64()).collect()
        };
        assert_eq!(ids("state=closed"), [printer, alert]);
        assert_eq!(ids("q=STALE+lock"), [alert], "solution words, any case");
        assert_eq!(ids("q=restic"), [alert], "comment words");
        assert_eq!(ids("q=roller"), [printer]);
        assert_eq!(ids("q=roller+stale"), Vec::<u64>::new(), "every word must appear");
        assert_eq!(ids("q=lock&state=closed"), [alert]);
        assert_eq!(ids("host=db"), [alert]);
        assert_eq!(ids("alertname=BackupFailed&state=closed"), [alert]);
        assert_eq!(ids("kind=request"), [printer]);
        assert_eq!(ids("priority=high"), [alert], "severity warning is priority high");
        assert_eq!(ids("state=open"), [disk]);
        let (hour_ago, in_an_hour) = ((started - 3_600_000) / 1000, (started + 3_600_000) / 1000);
        assert_eq!(ids(&format!("from={hour_ago}&to={in_an_hour}")), [disk, printer, alert]);
        assert_eq!(ids(&format!("from={in_an_hour}")), Vec::<u64>::new());
        assert_eq!(ids(&format!("to={hour_ago}&state=closed")), Vec::<u64>::new());
        assert_eq!(ids("state=closed&limit=1"), [printer], "newest first");

        let closed = data(http, VIEWER, "/api/patrol/v1/tickets?q=lock");
        assert_eq!(closed[0]["solution"], "Removed the stale lock; backups run again");
        assert_eq!(closed[0]["alertname"], "BackupFailed");
        assert_eq!(closed[0]["rating"]["score"], 5);
    })
    .await
    .unwrap();
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_4xx_naming_the_field() {
    let (_pki, collector) = collector(None).await;
    let http = collector.http;
    tokio::task::spawn_blocking(move || {
        let s = "/api/patrol/v1/schedules/ops";
        for (path, status, words) in [
            (format!("{s}?from=yesterday"), 400, &["\"from\""][..]),
            (format!("{s}?to=soon"), 400, &["\"to\""]),
            (format!("{s}?form=1"), 400, &["\"form\"", "from, to"]),
            ("/api/patrol/v1/schedules/night".into(), 404, &["\"night\""]),
            (
                format!("{s}?from=2026-07-02T00:00:00Z&to=2026-07-01T00:00:00Z"),
                400,
                &["\"to\" must be after \"from\""],
            ),
            (
                format!("{s}?from=2026-01-01T00:00:00Z&to=2026-06-01T00:00:00Z"),
                400,
                &["92 days"],
            ),
            // Far out of range: must not wrap around the 92-day check.
            (format!("{s}?from=-1e300&to=1e300"), 400, &["92 days"]),
            ("/api/patrol/v1/oncall?at=noon".into(), 400, &["\"at\""]),
            (
                "/api/patrol/v1/tickets?state=done".into(),
                400,
                &["\"state\""],
            ),
            ("/api/patrol/v1/tickets?kind=bug".into(), 400, &["\"kind\""]),
            (
                "/api/patrol/v1/tickets?from=last+week".into(),
                400,
                &["\"from\""],
            ),
            ("/api/patrol/v1/tickets?limit=0".into(), 400, &["\"limit\""]),
            ("/api/patrol/v1/tickets?sort=new".into(), 400, &["\"sort\""]),
            (
                "/api/patrol/v1/audit?since=monday".into(),
                400,
                &["\"since\""],
            ),
            (
                "/api/patrol/v1/audit?until=friday".into(),
                400,
                &["\"until\""],
            ),
            ("/api/patrol/v1/audit?limit=all".into(), 400, &["\"limit\""]),
        ] {
            let (got, body) = http_call(http, "GET", ADMIN, &path, None);
            assert_eq!(got, status, "{path}: {body}");
            for w in words {
                assert!(error_of(&body).contains(w), "{path}: {body}");
            }
        }

        let post = |schedule: &str, body: Json| {
            let path = format!("/api/patrol/v1/schedules/{schedule}/overrides");
            http_call(http, "POST", ADMIN, &path, Some(&body))
        };
        let with = |field: &str, value: Json| {
            let mut b = override_body("carl");
            b[field] = value;
            b
        };
        for (schedule, body, status, words) in [
            (
                "ops",
                with("from", json!("tomorrow")),
                400,
                &["\"from\""][..],
            ),
            ("ops", with("to", json!("later")), 400, &["\"to\""]),
            (
                "night",
                override_body("carl"),
                404,
                &["no schedule named \"night\""],
            ),
            (
                "ops",
                with("to", json!("2026-06-30T00:00:00Z")),
                400,
                &["to: the override must end after it starts"],
            ),
            (
                "ops",
                with("role", json!("tertiary")),
                400,
                &["role", "tertiary"],
            ),
            (
                "%E5%80%BC%E7%8F%AD%20night",
                with("role", json!("secondary")),
                400,
                &["role: schedule \"值班 night\" has no secondary layer"],
            ),
            ("ops", with("who", json!(" ")), 400, &["who"]),
            ("ops", json!({"from": "1", "to": "2"}), 400, &["who"]),
            ("ops", with("start", json!("1")), 400, &["start"]),
        ] {
            let (got, answer) = post(schedule, body.clone());
            assert_eq!(got, status, "{body}: {answer}");
            for w in words {
                assert!(error_of(&answer).contains(w), "{body}: {answer}");
            }
        }
        let (got, body) = http_call(
            http,
            "DELETE",
            ADMIN,
            "/api/patrol/v1/schedules/ops/overrides/x",
            None,
        );
        assert_eq!(got, 404, "{body}");
        assert!(error_of(&body).contains("\"x\""), "{body}");
        let (got, body) = http_call(
            http,
            "DELETE",
            ADMIN,
            "/api/patrol/v1/schedules/ops/overrides/9",
            None,
        );
        assert_eq!(got, 404, "{body}");
        assert!(error_of(&body).contains("no override 9"), "{body}");
        // A name in any script, percent-encoded in the path.
        let (got, body) = http_call(
            http,
            "GET",
            ADMIN,
            "/api/patrol/v1/schedules/%E5%80%BC%E7%8F%AD%20night",
            None,
        );
        assert_eq!(got, 200, "{body}");
        assert!(body.to_string().contains("fang"), "{body}");
        // Times at the ends of the range are no server error.
        let (got, body) = http_call(http, "GET", ADMIN, "/api/patrol/v1/oncall?at=1e300", None);
        assert!(got < 500, "{got}: {body}");
        // Nothing was changed by any of it.
        let s = data(http, ADMIN, "/api/patrol/v1/schedules/ops");
        assert_eq!(s["overrides"], json!([]), "{s}");
    })
    .await
    .unwrap();
    collector.stop().await;
}
