//! Notification delivery against real HTTP servers on 127.0.0.1 that the
//! tests start: retries until a receiver accepts, a notification pending
//! in the outbox store at a restart, the webhook signature checked by the
//! receiver, HTTPS with a configured CA, the whole pipeline from alerts to
//! the webhook payload, and forwarding to a real `prometheus-alertmanager`
//! (Debian package; skipped with a note when it is missing, unless `CI` is
//! set).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use patrol_collector::notify::delivery::{self, Outbox};
use patrol_collector::notify::outbox::Outcome;
use patrol_collector::notify::{
    payload, system_clock, Alert, AlertSource, MemoryOutbox, Notification, NotificationCounters,
    Notifier, NotifyConfig, OutboxStore,
};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// One request a test server received.
#[derive(Debug, Clone)]
struct Received {
    target: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

/// A tiny HTTP/1.1 server: answers the n-th request with `status(n)` and
/// keeps every request.
struct Server {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    cancel: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Server {
    async fn start(status: impl Fn(usize) -> u16 + Send + Sync + 'static) -> Server {
        Server::start_with(status, None).await
    }

    async fn start_with(
        status: impl Fn(usize) -> u16 + Send + Sync + 'static,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let cancel = CancellationToken::new();
        let (list, stop, status) = (received.clone(), cancel.clone(), Arc::new(status));
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(_) => return,
                    },
                };
                let (list, status, tls) = (list.clone(), status.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                serve_one(stream, list, status).await;
                            }
                        }
                        None => serve_one(tcp, list, status).await,
                    }
                });
            }
        });
        Server {
            addr,
            received,
            cancel,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

async fn serve_one<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    list: Arc<Mutex<Vec<Received>>>,
    status: Arc<impl Fn(usize) -> u16>,
) {
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    let n = {
        let mut list = list.lock().unwrap();
        list.push(request);
        list.len() - 1
    };
    let code = status(n);
    let answer = format!("HTTP/1.1 {code} Test\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}");
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
}

async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let target = lines.next()?.split(' ').nth(1)?.to_owned();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers.get("content-length")?.parse().ok()?;
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(Received {
        target,
        headers,
        body: buf[head_end..head_end + length].to_vec(),
    })
}

/// Polls `check` every 20 ms until it holds; fails after `within`.
async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `route` adds to the root route, whose receiver is "ops" unless it says.
fn config(receivers: &str, route: &str) -> NotifyConfig {
    let root = if route.contains("receiver") {
        ""
    } else {
        "receiver = \"ops\""
    };
    let text = format!(
        r#"
        external_url = "http://patrol.test"
        [route]
        {root}
        group_by = ["alertname"]
        {route}
        [delivery]
        backoff_initial = "20ms"
        backoff_max = "100ms"
        deadline = "30s"
        timeout = "5s"
        {receivers}
        "#
    );
    let config: NotifyConfig = toml::from_str(&text).unwrap();
    assert!(config.problems().is_empty(), "{:?}", config.problems());
    config
}

fn webhook(name: &str, url: &str, extra: &str) -> String {
    format!("[[receivers]]\nname = \"{name}\"\nkind = \"webhook\"\nurl = \"{url}\"\n{extra}\n")
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn alert(host: &str, starts_at: i64) -> Alert {
    Alert {
        labels: labels(&[
            ("alertname", "DiskFull"),
            ("host", host),
            ("severity", "critical"),
        ]),
        annotations: labels(&[("summary", "disk almost full")]),
        starts_at,
        ends_at: None,
        generator_url: "http://patrol.test/graph".into(),
    }
}

fn notification(receiver: &str) -> Notification {
    let now = patrol_shared::model::now_ms();
    Notification {
        receiver: receiver.into(),
        group_key: r#"{}:{alertname="DiskFull"}"#.into(),
        group_labels: labels(&[("alertname", "DiskFull")]),
        alerts: vec![alert("db1", now - 60_000)],
        created_at: now,
        refresh_ms: 600_000,
        ticket: None,
    }
}

struct Running {
    outbox: Outbox,
    counters: Arc<NotificationCounters>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        self.cancel.cancel();
        self.task.await.unwrap();
    }
}

async fn start_worker(config: &NotifyConfig, store: Arc<dyn OutboxStore>) -> Running {
    let counters = Arc::new(NotificationCounters::new(
        config.receivers.iter().map(|r| r.name.clone()),
    ));
    let (outbox, worker) = delivery::open(config, store, counters.clone(), system_clock())
        .await
        .unwrap();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(worker.run(cancel.clone()));
    Running {
        outbox,
        counters,
        cancel,
        task,
    }
}

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn a_receiver_that_fails_twice_gets_the_notification_exactly_once_more() {
    let server = Server::start(|n| if n < 2 { 500 } else { 200 }).await;
    let config = config(&webhook("ops", &server.url("/hook"), ""), "");
    let store = Arc::new(MemoryOutbox::default());
    let running = start_worker(&config, store.clone()).await;
    let id = running.outbox.enqueue(notification("ops")).await.unwrap();

    let counters = running.counters.clone();
    eventually("delivery", WAIT, || {
        counters.get("ops", Outcome::Delivered) == 1
    })
    .await;
    // Time for any stray extra attempt (backoffs are 20–100 ms) to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = server.received();
    assert_eq!(got.len(), 3, "two failures, then exactly one delivery");
    assert!(got
        .iter()
        .all(|r| r.body == got[0].body && r.target == "/hook"));
    assert_eq!(counters.get("ops", Outcome::Failed), 2);
    assert!(store.list().unwrap().is_empty(), "removed after the 2xx");

    let log = store.attempts(10).unwrap();
    let seen: Vec<(Option<u16>, Outcome, u32)> = log
        .iter()
        .map(|a| (a.status, a.outcome, a.number))
        .collect();
    assert_eq!(
        seen,
        [
            (Some(200), Outcome::Delivered, 3),
            (Some(500), Outcome::Failed, 2),
            (Some(500), Outcome::Failed, 1),
        ]
    );
    assert!(log.iter().all(|a| a.id == id && a.receiver == "ops"));
    assert!(log[1].error.as_deref().unwrap().starts_with("HTTP 500"));
    assert!(log[2].at <= log[1].at && log[1].at <= log[0].at);
    running.stop().await;
}

#[tokio::test]
async fn a_notification_pending_at_restart_is_delivered_by_the_next_worker() {
    let down = Server::start(|_| 503).await;
    let store = Arc::new(MemoryOutbox::default());
    let first = start_worker(
        &config(&webhook("ops", &down.url("/"), ""), ""),
        store.clone(),
    )
    .await;
    first.outbox.enqueue(notification("ops")).await.unwrap();
    let log = store.clone();
    eventually("a failed attempt", WAIT, || {
        !log.attempts(1).unwrap().is_empty()
    })
    .await;
    first.stop().await;
    let pending = store.list().unwrap();
    assert_eq!(pending.len(), 1, "still in the outbox after the stop");

    // "Restart": a new worker over the same store, the receiver back up.
    let up = Server::start(|_| 200).await;
    let second = start_worker(
        &config(&webhook("ops", &up.url("/"), ""), ""),
        store.clone(),
    )
    .await;
    eventually("delivery after the restart", WAIT, || {
        up.received().len() == 1
    })
    .await;
    let counters = second.counters.clone();
    eventually("the delivery recorded", WAIT, || {
        counters.get("ops", Outcome::Delivered) == 1
    })
    .await;
    assert!(store.list().unwrap().is_empty());
    let body = up.received()[0].json();
    assert_eq!(body["groupKey"], r#"{}:{alertname="DiskFull"}"#);
    assert_eq!(body["alerts"][0]["labels"]["host"], "db1");
    second.stop().await;
}

#[tokio::test]
async fn the_receiver_verifies_the_webhook_signature() {
    let server = Server::start(|_| 200).await;
    let receivers = webhook("ops", &server.url("/signed"), "secret = \"correct horse\"");
    let running = start_worker(&config(&receivers, ""), Arc::new(MemoryOutbox::default())).await;
    running.outbox.enqueue(notification("ops")).await.unwrap();
    eventually("the signed request", WAIT, || server.received().len() == 1).await;
    let request = &server.received()[0];
    let header = request.headers.get("x-patrol-signature").expect("signed");
    let hex = header.strip_prefix("sha256=").expect("sha256= prefix");
    let mac: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"correct horse");
    ring::hmac::verify(&key, &request.body, &mac).expect("the signature verifies");
    let wrong = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"wrong");
    assert!(ring::hmac::verify(&wrong, &request.body, &mac).is_err());
    assert_eq!(request.headers["content-type"], "application/json");
    running.stop().await;
}

#[tokio::test]
async fn an_https_receiver_is_reached_with_its_ca_file_or_without_verification() {
    let dir = tempfile::tempdir().unwrap();
    let ca = patrol_shared::pki::Ca::generate(Duration::from_secs(3600)).unwrap();
    let leaf = ca
        .issue(
            patrol_shared::pki::Role::Collector,
            "localhost",
            &[],
            Duration::from_secs(3600),
        )
        .unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.cert_pem()).unwrap();
    let (cert, key) = leaf.write(dir.path(), "receiver", false).unwrap();
    let server_tls = patrol_shared::tls::https_config(&cert, &key).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(server_tls);
    let server = Server::start_with(|_| 200, Some(acceptor)).await;
    let url = format!("https://localhost:{}/tls", server.addr.port());

    let receivers = format!(
        "{}{}",
        webhook(
            "ops",
            &url,
            &format!("tls_ca_file = {:?}", path_str(&ca_path))
        ),
        webhook("lax", &url, "tls_insecure_skip_verify = true"),
    );
    let running = start_worker(&config(&receivers, ""), Arc::new(MemoryOutbox::default())).await;
    running.outbox.enqueue(notification("ops")).await.unwrap();
    running.outbox.enqueue(notification("lax")).await.unwrap();
    eventually("both TLS requests", WAIT, || server.received().len() == 2).await;
    let counters = running.counters.clone();
    eventually("both recorded", WAIT, || {
        counters.get("ops", Outcome::Delivered) + counters.get("lax", Outcome::Delivered) == 2
    })
    .await;
    running.stop().await;
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Alerts a test sets.
#[derive(Default)]
struct Alerts(Mutex<Vec<Alert>>);

impl AlertSource for Alerts {
    fn alerts(&self) -> Vec<Alert> {
        self.0.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn firing_and_resolved_alerts_reach_the_webhook_in_alertmanagers_format() {
    let server = Server::start(|_| 200).await;
    let route = "group_wait = \"0s\"\ngroup_interval = \"1s\"";
    let config = config(&webhook("ops", &server.url("/am"), ""), route);
    let source = Arc::new(Alerts::default());
    let now = patrol_shared::model::now_ms();
    *source.0.lock().unwrap() = vec![alert("db1", now - 5_000), alert("web1", now - 5_000)];
    let notifier = Notifier::open(&config, Arc::new(MemoryOutbox::default()), system_clock())
        .await
        .unwrap();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(notifier.run(source.clone(), cancel.clone()));

    eventually("the firing message", WAIT, || server.received().len() == 1).await;
    let firing = server.received()[0].json();
    assert_eq!(firing["version"], "4");
    assert_eq!(firing["status"], "firing");
    assert_eq!(firing["receiver"], "ops");
    assert_eq!(firing["groupKey"], r#"{}:{alertname="DiskFull"}"#);
    assert_eq!(
        firing["groupLabels"],
        serde_json::json!({"alertname": "DiskFull"})
    );
    assert_eq!(firing["commonLabels"]["severity"], "critical");
    assert!(firing["commonLabels"].get("host").is_none());
    assert_eq!(firing["commonAnnotations"]["summary"], "disk almost full");
    assert_eq!(firing["externalURL"], "http://patrol.test");
    assert_eq!(firing["truncatedAlerts"], 0);
    let alerts = firing["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[0]["labels"]["host"], "db1");
    assert_eq!(alerts[0]["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(alerts[0]["startsAt"], payload::rfc3339(now - 5_000));
    assert_eq!(
        alerts[0]["fingerprint"],
        format!("{:016x}", payload::fingerprint(&alert("db1", 0).labels))
    );

    // Both resolve; one message says so, once.
    let end = patrol_shared::model::now_ms();
    for a in source.0.lock().unwrap().iter_mut() {
        a.ends_at = Some(end);
    }
    eventually("the resolved message", WAIT, || {
        server.received().len() == 2
    })
    .await;
    let resolved = server.received()[1].json();
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["alerts"][1]["status"], "resolved");
    assert_eq!(resolved["alerts"][1]["endsAt"], payload::rfc3339(end));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(server.received().len(), 2, "resolution sent once");
    cancel.cancel();
    task.await.unwrap();
}

/// A `prometheus-alertmanager` the test started; killed when dropped.
struct Alertmanager {
    child: std::process::Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";

async fn start_alertmanager() -> Option<Alertmanager> {
    if !Path::new(ALERTMANAGER).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{ALERTMANAGER} is missing; .ci/run installs the prometheus-alertmanager package"
        );
        eprintln!(
            "note: {ALERTMANAGER} is missing (apt-get install prometheus-alertmanager); skipping"
        );
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: nobody\nreceivers:\n  - name: nobody\n",
    )
    .unwrap();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let child = std::process::Command::new(ALERTMANAGER)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--cluster.listen-address=")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("alertmanager starts");
    let am = Alertmanager {
        child,
        addr,
        _dir: dir,
    };
    let start = Instant::now();
    loop {
        if let Some((200, _)) = http_get(addr, "/-/ready").await {
            return Some(am);
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "alertmanager did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A GET over HTTP/1.0 (so the answer is neither chunked nor kept open).
async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.ok()?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

async fn alertmanager_alerts(addr: SocketAddr) -> Vec<Value> {
    let (status, body) = http_get(addr, "/api/v2/alerts").await.expect("answer");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn parse_ms(text: &Value) -> i64 {
    let t = time::OffsetDateTime::parse(
        text.as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

#[tokio::test]
async fn alerts_forwarded_to_a_real_alertmanager_can_be_read_back() {
    let Some(am) = start_alertmanager().await else {
        return;
    };
    let receivers = format!(
        "[[receivers]]\nname = \"am\"\nkind = \"alertmanager\"\nurl = \"http://{}\"\n",
        am.addr
    );
    let config = config(&receivers, "receiver = \"am\"");
    let running = start_worker(&config, Arc::new(MemoryOutbox::default())).await;
    let mut n = notification("am");
    n.alerts[0].starts_at -= n.alerts[0].starts_at % 1000;
    let sent = n.alerts[0].clone();
    running.outbox.enqueue(n.clone()).await.unwrap();
    let counters = running.counters.clone();
    eventually("the forward", WAIT, || {
        counters.get("am", Outcome::Delivered) == 1
    })
    .await;

    let listed = alertmanager_alerts(am.addr).await;
    let got = listed
        .iter()
        .find(|a| a["labels"]["host"] == "db1")
        .unwrap_or_else(|| panic!("not listed: {listed:?}"));
    assert_eq!(got["labels"], serde_json::to_value(&sent.labels).unwrap());
    assert_eq!(got["annotations"]["summary"], "disk almost full");
    assert_eq!(parse_ms(&got["startsAt"]), sent.starts_at);
    assert!(parse_ms(&got["endsAt"]) > patrol_shared::model::now_ms() + 500_000);
    assert_eq!(got["generatorURL"], "http://patrol.test/graph");
    assert_eq!(got["status"]["state"], "active");
    assert_eq!(
        got["fingerprint"],
        format!("{:016x}", sent.fingerprint()),
        "Patrol's fingerprint is Alertmanager's"
    );

    // Forward the resolution: Alertmanager no longer lists it as active.
    let now = patrol_shared::model::now_ms();
    n.alerts[0].ends_at = Some(now - 1000);
    n.created_at = now;
    running.outbox.enqueue(n).await.unwrap();
    eventually("the resolution forward", WAIT, || {
        counters.get("am", Outcome::Delivered) == 2
    })
    .await;
    let listed = alertmanager_alerts(am.addr).await;
    assert!(
        listed.iter().all(|a| a["labels"]["host"] != "db1"),
        "resolved alerts are not listed: {listed:?}"
    );
    running.stop().await;
}
