//! The HTTP API as outside tools use it: token auth, remote write from our
//! encoder and from a real Prometheus, and the calls Grafana makes when a
//! Prometheus datasource is added and a dashboard opened.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use patrol_collector::http::auth::{hash_token, Role, TokenConfig};
use patrol_collector::http::remote_write::{encode, Label, Sample, TimeSeries, WriteRequest};
use serde_json::Value as Json;

const VIEWER: &str = "patrol_viewer_token_for_tests";
const WRITER: &str = "patrol_writer_token_for_tests";

/// An HTTP/1.0 request: status and body.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: test\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    tcp.write_all(head.as_bytes()).expect("send head");
    tcp.write_all(body).expect("send body");
    let mut text = Vec::new();
    tcp.read_to_end(&mut text).expect("read");
    let text = String::from_utf8_lossy(&text).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn collector(pki: &TestPki) -> TestCollector {
    let mut config = collector_config(pki);
    config.http.tokens.push(TokenConfig {
        name: "grafana".into(),
        role: Role::Viewer,
        sha256: hash_token(VIEWER),
    });
    config.http.tokens.push(TokenConfig {
        name: "prometheus".into(),
        role: Role::Writer,
        sha256: hash_token(WRITER),
    });
    TestCollector::start(config).await
}

fn write_request(name: &str, job: &str, samples: &[(i64, f64)]) -> Vec<u8> {
    encode(&WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![
                Label {
                    name: "__name__".into(),
                    value: name.into(),
                },
                Label {
                    name: "job".into(),
                    value: job.into(),
                },
            ],
            samples: samples
                .iter()
                .map(|(t, v)| Sample {
                    value: *v,
                    timestamp: *t,
                })
                .collect(),
        }],
        metadata: vec![],
    })
}

fn query(addr: SocketAddr, token: &str, path: &str) -> (u16, Json) {
    let auth = bearer(token);
    let (status, body) = request(addr, "GET", path, &[("Authorization", &auth)], b"");
    let json = serde_json::from_str(&body).unwrap_or(Json::Null);
    (status, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_decide_who_reads_and_who_writes() {
    let pki = TestPki::new();
    let c = collector(&pki).await;
    let addr = c.http;
    tokio::task::spawn_blocking(move || {
        let now = patrol_shared::model::now_ms();
        let body = write_request(
            "temperature_celsius",
            "lab",
            &[(now - 2000, 21.5), (now - 1000, 22.0)],
        );
        // No token, a wrong token, a viewer token: refused.
        let (status, text) = request(addr, "POST", "/api/v1/write", &[], &body);
        assert_eq!(status, 401, "{text}");
        assert!(text.contains("authentication required"), "{text}");
        let wrong = bearer("patrol_wrong");
        let (status, _) = request(
            addr,
            "POST",
            "/api/v1/write",
            &[("Authorization", &wrong)],
            &body,
        );
        assert_eq!(status, 401);
        let viewer = bearer(VIEWER);
        let (status, text) = request(
            addr,
            "POST",
            "/api/v1/write",
            &[("Authorization", &viewer)],
            &body,
        );
        assert_eq!(status, 403, "{text}");
        assert!(text.contains("viewer"), "{text}");
        // The writer's samples are stored and read back by the viewer.
        let writer = bearer(WRITER);
        let headers = [
            ("Authorization", writer.as_str()),
            ("Content-Encoding", "snappy"),
            ("Content-Type", "application/x-protobuf"),
        ];
        let (status, text) = request(addr, "POST", "/api/v1/write", &headers, &body);
        assert_eq!(status, 204, "{text}");
        let (status, json) = query(addr, VIEWER, "/api/v1/query?query=temperature_celsius");
        assert_eq!(status, 200);
        assert_eq!(json["data"]["result"][0]["value"][1], "22");
        assert_eq!(json["data"]["result"][0]["metric"]["job"], "lab");
        // The writer cannot read.
        let (status, _) = query(addr, WRITER, "/api/v1/query?query=up");
        assert_eq!(status, 403);
        // Garbage is a 400 that says why.
        let (status, text) = request(addr, "POST", "/api/v1/write", &headers, b"garbage");
        assert_eq!(status, 400);
        assert!(text.contains("snappy"), "{text}");
        // Basic auth with the token's name works too (Grafana's way).
        let (status, _) = request(
            addr,
            "GET",
            "/api/v1/labels",
            &[(
                "Authorization",
                &format!("Basic {}", basic("grafana", VIEWER)),
            )],
            b"",
        );
        assert_eq!(status, 200);
        // Health needs nothing.
        let (status, _) = request(addr, "GET", "/-/ready", &[], b"");
        assert_eq!(status, 200);
    })
    .await
    .unwrap();
    c.stop().await;
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_datasource_calls_get_prometheus_shaped_answers() {
    let pki = TestPki::new();
    let c = collector(&pki).await;
    let addr = c.http;
    tokio::task::spawn_blocking(move || {
        let now = patrol_shared::model::now_ms() / 1000 * 1000;
        let samples: Vec<(i64, f64)> = (0..60).map(|i| (now - (59 - i) * 15_000, i as f64)).collect();
        let writer = bearer(WRITER);
        for job in ["node", "db"] {
            let (status, text) = request(
                addr,
                "POST",
                "/api/v1/write",
                &[("Authorization", &writer)],
                &write_request("http_requests_total", job, &samples),
            );
            assert_eq!(status, 204, "{text}");
        }
        // "Save & test": buildinfo, then a query.
        let (status, json) = query(addr, VIEWER, "/api/v1/status/buildinfo");
        assert_eq!(status, 200);
        assert!(json["data"]["version"].is_string());
        let (status, json) = query(addr, VIEWER, "/api/v1/query?query=1%2B1&time=1700000000");
        assert_eq!(status, 200);
        assert_eq!(json["data"]["resultType"], "scalar");
        assert_eq!(json["data"]["result"][0].as_f64(), Some(1700000000.0));
        assert_eq!(json["data"]["result"][1], "2");
        // The query editor: metric names, labels, values restricted by match[].
        let (_, json) = query(addr, VIEWER, "/api/v1/label/__name__/values");
        assert!(json["data"].as_array().unwrap().contains(&Json::from("http_requests_total")));
        let start = (now - 3_600_000) / 1000;
        let end = now / 1000;
        let (_, json) = query(
            addr,
            VIEWER,
            &format!("/api/v1/labels?match[]=http_requests_total&start={start}&end={end}"),
        );
        assert_eq!(json["data"], serde_json::json!(["__name__", "job"]));
        let (_, json) = query(
            addr,
            VIEWER,
            &format!("/api/v1/label/job/values?match[]=http_requests_total%7Bjob%3D%22db%22%7D&start={start}&end={end}"),
        );
        assert_eq!(json["data"], serde_json::json!(["db"]));
        let (_, json) = query(
            addr,
            VIEWER,
            &format!("/api/v1/series?match[]=http_requests_total&start={start}&end={end}"),
        );
        assert_eq!(json["data"].as_array().unwrap().len(), 2);
        assert_eq!(json["data"][0]["__name__"], "http_requests_total");
        let (_, json) = query(addr, VIEWER, "/api/v1/metadata");
        assert!(json["data"]["http_requests_total"][0]["type"].is_string());
        // A panel: a range query whose start is not on the step; points
        // fall on start + k·step and the values are numbers as strings.
        let q = "/api/v1/query_range?query=rate(http_requests_total%5B1m%5D)";
        let (status, json) = query(
            addr,
            VIEWER,
            &format!("{q}&start={}&end={}&step=30", start + 7, end),
        );
        assert_eq!(status, 200, "{json}");
        assert_eq!(json["data"]["resultType"], "matrix");
        let series = json["data"]["result"].as_array().unwrap();
        assert_eq!(series.len(), 2);
        for s in series {
            assert!(s["metric"].get("__name__").is_none(), "rate drops the name");
            for p in s["values"].as_array().unwrap() {
                let t = p[0].as_f64().unwrap();
                assert_eq!((t - (start + 7) as f64) % 30.0, 0.0, "{t}");
                let v: f64 = p[1].as_str().unwrap().parse().unwrap();
                // Once the window is full of samples: one per 15 s.
                if t * 1000.0 >= (now - 59 * 15_000 + 60_000) as f64 {
                    assert!((v - 1.0 / 15.0).abs() < 1e-9, "{v} at {t}");
                }
            }
        }
        // Form POST, as Grafana sends by default.
        let form = format!("query=sum(http_requests_total)&time={end}");
        let auth = bearer(VIEWER);
        let (status, body) = request(
            addr,
            "POST",
            "/api/v1/query",
            &[("Authorization", &auth), ("Content-Type", "application/x-www-form-urlencoded")],
            form.as_bytes(),
        );
        assert_eq!(status, 200, "{body}");
        // Errors in Prometheus' shape.
        let (status, json) = query(addr, VIEWER, "/api/v1/query?query=rate(");
        assert_eq!(status, 400);
        assert_eq!(json["errorType"], "bad_data");
        let (status, json) = query(addr, VIEWER, &format!("{q}&start={end}&end={start}&step=30"));
        assert_eq!(status, 400);
        assert_eq!(json["status"], "error");
        let (status, json) = query(addr, VIEWER, "/api/v1/rules");
        assert_eq!(status, 200);
        let groups = json["data"]["groups"].as_array().unwrap();
        assert!(groups.iter().any(|g| g["name"] == "patrol-host"), "the shipped rules run");
        assert!(groups[0]["rules"][0]["health"].is_string());
        let (status, json) = query(addr, VIEWER, "/api/v1/alerts");
        assert_eq!((status, json["data"]["alerts"].clone()), (200, serde_json::json!([])));
    })
    .await
    .unwrap();
    c.stop().await;
}

/// A real Prometheus scrapes itself and remote-writes into Patrol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_remote_writes_into_patrol() {
    let have = Command::new("prometheus")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        assert!(
            std::env::var_os("CI").is_none(),
            "prometheus is needed in CI"
        );
        eprintln!("note: prometheus not installed; remote-write interop test skipped");
        return;
    }
    let pki = TestPki::new();
    let c = collector(&pki).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n\
         remote_write:\n  - url: http://{}/api/v1/write\n    authorization:\n      credentials: {WRITER}\n    queue_config:\n      batch_send_deadline: 1s\n",
        c.http
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let mut child = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = c.http;
    let found = wait_for(
        Duration::from_secs(60),
        "Prometheus' samples in Patrol",
        || async move {
            tokio::task::spawn_blocking(move || {
                let (_, json) = query(addr, VIEWER, "/api/v1/query?query=up%7Bjob%3D%22self%22%7D");
                json["data"]["result"][0]["value"][1]
                    .as_str()
                    .map(str::to_owned)
            })
            .await
            .ok()
            .flatten()
        },
    )
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(found, "1");
    c.stop().await;
}

/// `patrol import` backfills a file through remote write; a bad line is
/// named with its file and line, and nothing of that file is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patrol_import_backfills_a_text_file() {
    let pki = TestPki::new();
    let c = collector(&pki).await;
    let addr = c.http;
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, format!("{WRITER}\n")).unwrap();
        let start = (patrol_shared::model::now_ms() - 3_600_000) / 1000;
        let mut text =
            String::from("# HELP backfilled_total Requests.\n# TYPE backfilled_total counter\n");
        for i in 0..120 {
            text.push_str(&format!(
                "backfilled_total{{job=\"old\"}} {} {}\n",
                i * 10,
                (start + i * 30) as f64
            ));
        }
        text.push_str("# EOF\n");
        let file = dir.path().join("old.om");
        std::fs::write(&file, &text).unwrap();
        let import = |file: &std::path::Path| {
            Command::new(env!("CARGO_BIN_EXE_patrol"))
                .arg("import")
                .arg(file)
                .args(["--url", &format!("http://{addr}"), "--batch", "50"])
                .arg("--token-file")
                .arg(&token)
                .output()
                .unwrap()
        };
        let out = import(&file);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("imported 120 samples"));
        let (_, json) = query(
            addr,
            VIEWER,
            &format!(
                "/api/v1/query?query=count_over_time(backfilled_total%5B2h%5D)&time={}",
                start + 3600
            ),
        );
        assert_eq!(json["data"]["result"][0]["value"][1], "120", "{json}");
        let (_, json) = query(addr, VIEWER, "/api/v1/metadata?metric=backfilled_total");
        assert_eq!(json["data"]["backfilled_total"][0]["type"], "counter");
        let bad = dir.path().join("bad.prom");
        std::fs::write(&bad, "ok_metric 1\nbroken{a=\"1\" 2\n").unwrap();
        let out = import(&bad);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("bad.prom:2:"), "{err}");
    })
    .await
    .unwrap();
    c.stop().await;
}

/// With `http.tls`, the API is served over HTTPS only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_can_be_served_over_https() {
    let pki = TestPki::new();
    let mut config = collector_config(&pki);
    let files = pki.issue(patrol_shared::pki::Role::Collector, "api");
    config.http.tls = Some(patrol_collector::config::HttpTls {
        cert: files.cert.clone(),
        key: files.key.clone(),
    });
    let c = TestCollector::start(config).await;
    let addr = c.http;
    let ca = files.ca.clone();
    tokio::task::spawn_blocking(move || {
        let mut roots = rustls::RootCertStore::empty();
        for cert in patrol_shared::tls::load_certs(&ca).unwrap() {
            roots.add(cert).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(patrol_shared::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        write!(
            tls,
            "GET /api/v1/query?query=1%2B1 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TEST_TOKEN}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        let _ = tls.read_to_string(&mut text);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains("\"result\":["), "{text}");
        // Plain HTTP on the same port gets nowhere.
        let (status, _) = request(addr, "GET", "/-/ready", &[], b"");
        assert_ne!(status, 200);
    })
    .await
    .unwrap();
    c.stop().await;
}

/// `patrol silence add|list|expire` against a running collector; a viewer
/// may list but not add.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_are_added_listed_and_expired_from_the_command_line() {
    let pki = TestPki::new();
    let c = collector(&pki).await;
    let addr = c.http;
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let admin = dir.path().join("admin");
        std::fs::write(&admin, TEST_TOKEN).unwrap();
        let viewer = dir.path().join("viewer");
        std::fs::write(&viewer, VIEWER).unwrap();
        let patrol = |token: &std::path::Path, args: &[&str]| {
            let out = Command::new(env!("CARGO_BIN_EXE_patrol"))
                .arg("silence")
                .args(args)
                .args(["--url", &format!("http://{addr}")])
                .arg("--token-file")
                .arg(token)
                .output()
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let (ok, id, err) = patrol(
            &admin,
            &[
                "add",
                "host=\"db\"",
                "alertname=~\"Disk.*\"",
                "--duration",
                "2h",
                "--comment",
                "disk swap",
                "--author",
                "ops",
            ],
        );
        assert!(ok, "{err}");
        let id = id.trim().to_owned();
        assert_eq!(id.len(), 36, "{id}");
        let (ok, list, _) = patrol(&viewer, &["list"]);
        assert!(ok);
        assert!(
            list.contains(&id) && list.contains("active") && list.contains("alertname=~\"Disk.*\""),
            "{list}"
        );
        let (ok, _, err) = patrol(&viewer, &["add", "host=\"x\"", "--comment", "no"]);
        assert!(!ok && err.contains("403"), "{err}");
        let (ok, _, err) = patrol(&admin, &["add", "host=~\".*\"", "--comment", "all"]);
        assert!(!ok && err.contains("empty string"), "{err}");
        let (ok, out, err) = patrol(&admin, &["expire", &id]);
        assert!(ok, "{err}");
        assert!(out.contains("expired"));
        let (_, list, _) = patrol(&viewer, &["list"]);
        assert!(!list.contains(&id), "{list}");
        let (_, list, _) = patrol(&viewer, &["list", "--all"]);
        assert!(list.contains(&id) && list.contains("expired"), "{list}");
    })
    .await
    .unwrap();
    c.stop().await;
}
