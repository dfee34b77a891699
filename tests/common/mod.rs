//! What the scenario tests share: a throw-away PKI, a collector on
//! loopback, agent configs, scraping `/metrics`, and waiting for a condition
//! with a deadline (never a bare sleep).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use patrol_agent::AgentConfig;
use patrol_collector::CollectorConfig;
use patrol_shared::pki::{Ca, Role, DEFAULT_CA_VALIDITY, DEFAULT_LEAF_VALIDITY};
use patrol_shared::tls::TlsFiles;
use tokio_util::sync::CancellationToken;

/// A fleet CA in a temp folder, issuing certificates on demand.
pub struct TestPki {
    pub dir: tempfile::TempDir,
    pub ca: Ca,
}

impl TestPki {
    pub fn new() -> TestPki {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = Ca::generate(DEFAULT_CA_VALIDITY).expect("CA");
        ca.write(dir.path(), false).expect("write CA");
        TestPki { dir, ca }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Issues NAME.pem/NAME-key.pem and returns the TLS files for it.
    pub fn issue(&self, role: Role, name: &str) -> TlsFiles {
        let sans = match role {
            Role::Collector => vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
            Role::Agent => vec![],
        };
        self.ca
            .issue(role, name, &sans, DEFAULT_LEAF_VALIDITY)
            .expect("issue")
            .write(self.path(), name, true)
            .expect("write leaf");
        self.files(name)
    }

    pub fn files(&self, name: &str) -> TlsFiles {
        TlsFiles {
            ca: self.path().join("ca.pem"),
            cert: self.path().join(format!("{name}.pem")),
            key: self.path().join(format!("{name}-key.pem")),
        }
    }
}

/// A collector config on loopback with ephemeral ports and short timeouts.
pub fn collector_config(pki: &TestPki) -> CollectorConfig {
    let mut config = CollectorConfig::example(pki.path(), &pki.path().join("data"));
    config.tls = pki.issue(Role::Collector, "collector");
    config.ingest.listen = "127.0.0.1:0".parse().unwrap();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.ingest.handshake_timeout = Duration::from_secs(2);
    config.ingest.hello_timeout = Duration::from_secs(1);
    config.http.tokens = vec![patrol_collector::http::auth::TokenConfig {
        name: "test".into(),
        role: patrol_collector::http::auth::Role::Admin,
        sha256: patrol_collector::http::auth::hash_token(TEST_TOKEN),
    }];
    config
}

/// The API token of test collectors (role admin).
pub const TEST_TOKEN: &str = "patrol_integration_test_token";

/// A collector running in this test's runtime.
pub struct TestCollector {
    pub ingest: SocketAddr,
    pub http: SocketAddr,
    pub cancel: CancellationToken,
    running: Option<patrol_collector::Running>,
}

impl TestCollector {
    pub async fn start(config: CollectorConfig) -> TestCollector {
        let cancel = CancellationToken::new();
        let running = patrol_collector::start(config, cancel.clone())
            .await
            .expect("collector starts");
        TestCollector {
            ingest: running.ingest_addr,
            http: running.http_addr,
            cancel,
            running: Some(running),
        }
    }

    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(running) = self.running.take() {
            running.wait().await;
        }
    }

    pub async fn metrics(&self) -> String {
        scrape(self.http).await
    }
}

/// An agent config for `name`'s certificate, sending to `collector` often.
pub fn agent_config(pki: &TestPki, name: &str, collector: SocketAddr) -> AgentConfig {
    let mut config = AgentConfig::example(pki.path(), name, &collector.to_string());
    config.tls = pki.issue(Role::Agent, name);
    config.interval = Duration::from_millis(200);
    config.collector.backoff_max = Duration::from_millis(500);
    config.collector.heartbeat = Duration::from_secs(1);
    config
}

/// Starts an agent task; cancel the token to stop it.
pub fn spawn_agent(config: AgentConfig) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    let handle = tokio::spawn(async move {
        patrol_agent::run(config, token).await.expect("agent runs");
    });
    (cancel, handle)
}

/// GET /metrics over plain HTTP/1.0.
pub async fn scrape(http: SocketAddr) -> String {
    http_get(http, "/metrics").await
}

/// A minimal HTTP GET with the test token that returns the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    http_get_with(addr, path, TEST_TOKEN).await
}

/// A minimal HTTP GET with `token` that returns the body.
pub async fn http_get_with(addr: SocketAddr, path: &str, token: &str) -> String {
    let (path, token) = (path.to_owned(), token.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut tcp = TcpStream::connect(addr).expect("connect to http");
        tcp.set_read_timeout(Some(Duration::from_secs(5))).ok();
        write!(
            tcp,
            "GET {path} HTTP/1.0\r\nHost: test\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        .expect("send request");
        let mut text = String::new();
        tcp.read_to_string(&mut text).expect("read response");
        text.split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default()
    })
    .await
    .expect("http task")
}

/// Polls `check` every 50 ms until it returns Some or `limit` passes.
pub async fn wait_for<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Lines of an exposition for metric `name` whose labels include `label`.
pub fn lines_with<'a>(text: &'a str, name: &str, label: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| l.contains(label))
        .collect()
}

/// The value of an unlabelled or exactly-labelled sample, 0 if absent.
pub fn value_of(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// A free loopback port (bound and released: a small race, fine for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Temp path helper.
pub fn path_in(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// A webhook receiver on `listener`: its URL (`/hook`), and every POST
/// body, parsed as JSON, with when it arrived; it answers 200.
pub fn webhook_receiver(
    listener: std::net::TcpListener,
) -> (
    String,
    std::sync::mpsc::Receiver<(Instant, serde_json::Value)>,
) {
    use std::io::{BufRead, BufReader};
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_ok() {
                if let Ok(json) = serde_json::from_slice(&body) {
                    let _ = tx.send((Instant::now(), json));
                }
            }
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (url, rx)
}

/// One request over HTTP/1.0 with `token` (blocking: call it from
/// `spawn_blocking` in async tests): the status and the body as JSON
/// (Null if it is not JSON).
pub fn http_call(
    addr: SocketAddr,
    method: &str,
    token: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    let body = body.map(serde_json::Value::to_string).unwrap_or_default();
    let mut tcp = TcpStream::connect(addr).expect("connect to http");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        tcp,
        "{method} {path} HTTP/1.0\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send request");
    let mut text = String::new();
    tcp.read_to_string(&mut text).expect("read response");
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let json = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(serde_json::Value::Null);
    (status, json)
}
