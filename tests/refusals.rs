//! Bad input is refused and counted, and the collector keeps serving a
//! good agent throughout: one test for each kind of bad peer.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use patrol_shared::codec;
use patrol_shared::pki::{Ca, Role, DEFAULT_CA_VALIDITY};
use patrol_shared::protocol::{AgentMessage, CollectorMessage, Hello};
use patrol_shared::tls::{client_config, TlsFiles};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// A collector with one good agent ("db") streaming to it.
struct Scene {
    pki: TestPki,
    collector: TestCollector,
    agent: (CancellationToken, tokio::task::JoinHandle<()>),
}

impl Scene {
    async fn start() -> Scene {
        let pki = TestPki::new();
        let collector = TestCollector::start(collector_config(&pki)).await;
        let agent = spawn_agent(agent_config(&pki, "db", collector.ingest));
        let scene = Scene {
            pki,
            collector,
            agent,
        };
        scene.good_agent_is_streaming().await;
        scene
    }

    /// The good agent's samples keep arriving: its acked-batch counter grows.
    async fn good_agent_is_streaming(&self) {
        let series = "patrol_agent_batches_acked_total{host=\"db\",instance=\"db\"}";
        let before = value_of(&self.collector.metrics().await, series);
        wait_for(
            Duration::from_secs(20),
            "the good agent to keep streaming",
            || async { (value_of(&self.collector.metrics().await, series) > before).then_some(()) },
        )
        .await;
    }

    /// Waits until `series` (a counter line) reaches at least 1.
    async fn counted(&self, series: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.collector.metrics().await;
            if value_of(&text, series) >= 1.0 {
                return;
            }
            if std::time::Instant::now() > deadline {
                let ingest: Vec<&str> = text
                    .lines()
                    .filter(|l| l.starts_with("patrol_ingest_"))
                    .collect();
                panic!(
                    "{series} never counted; ingest metrics:\n{}",
                    ingest.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn finish(self) {
        self.good_agent_is_streaming().await;
        self.agent.0.cancel();
        self.agent.1.await.unwrap();
        self.collector.stop().await;
    }
}

fn refused(reason: &str) -> String {
    format!("patrol_ingest_connections_refused_total{{reason=\"{reason}\"}}")
}

fn bad_frame(reason: &str) -> String {
    format!("patrol_ingest_bad_frames_total{{reason=\"{reason}\"}}")
}

/// Opens TLS with the given client certificate; returns the stream.
async fn tls_client(
    files: &TlsFiles,
    addr: SocketAddr,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let config = client_config(files).expect("client TLS config");
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// Reads until the collector closes (or 5 s pass); returns what it sent.
async fn drain<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut got)).await;
    got
}

fn hello(version: u16) -> AgentMessage {
    AgentMessage::Hello(Hello {
        protocol_version: version,
        agent_version: "test".into(),
        hostname: "rogue".into(),
        os: String::new(),
        kernel: String::new(),
        boot_time: 0,
        labels: vec![],
        stream_id: 1,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_tcp_is_refused() {
    let scene = Scene::start().await;
    let mut tcp = TcpStream::connect(scene.collector.ingest).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    drain(&mut tcp).await;
    scene.counted(&refused("not_tls")).await;
    scene.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_from_another_ca_is_refused() {
    let scene = Scene::start().await;
    let other = Ca::generate(DEFAULT_CA_VALIDITY).unwrap();
    let dir = tempfile::tempdir().unwrap();
    other
        .issue(Role::Agent, "db", &[], Duration::from_secs(3600))
        .unwrap()
        .write(dir.path(), "db", false)
        .unwrap();
    // Trust the real collector, present a certificate from elsewhere.
    let files = TlsFiles {
        ca: scene.pki.path().join("ca.pem"),
        cert: dir.path().join("db.pem"),
        key: dir.path().join("db-key.pem"),
    };
    if let Ok(mut s) = tls_client(&files, scene.collector.ingest).await {
        let _ = codec::write_message(&mut s, &hello(1)).await;
        drain(&mut s).await;
    }
    scene.counted(&refused("unknown_ca")).await;
    scene.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate_is_refused() {
    let scene = Scene::start().await;
    let now = time_now();
    let dir = tempfile::tempdir().unwrap();
    scene
        .pki
        .ca
        .issue_between(
            Role::Agent,
            "training",
            &[],
            now - time::Duration::days(30),
            now - time::Duration::days(1),
        )
        .unwrap()
        .write(dir.path(), "training", false)
        .unwrap();
    let files = TlsFiles {
        ca: scene.pki.path().join("ca.pem"),
        cert: dir.path().join("training.pem"),
        key: dir.path().join("training-key.pem"),
    };
    if let Ok(mut s) = tls_client(&files, scene.collector.ingest).await {
        let _ = codec::write_message(&mut s, &hello(1)).await;
        drain(&mut s).await;
    }
    scene.counted(&refused("certificate_expired")).await;
    scene.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_frame_ends_only_that_connection() {
    let scene = Scene::start().await;
    let files = scene.pki.issue(Role::Agent, "training");
    let mut s = tls_client(&files, scene.collector.ingest).await.unwrap();
    codec::write_message(&mut s, &hello(1)).await.unwrap();
    let mut buf = Vec::new();
    let welcome: Option<CollectorMessage> = codec::read_message(&mut s, 1 << 20, &mut buf)
        .await
        .unwrap();
    assert!(
        matches!(welcome, Some(CollectorMessage::Welcome(_))),
        "{welcome:?}"
    );
    // A frame of 16 bytes that decode as nothing the protocol knows.
    s.write_all(&[0, 0, 0, 16]).await.unwrap();
    s.write_all(&[0xff; 16]).await.unwrap();
    s.flush().await.unwrap();
    drain(&mut s).await;
    scene.counted(&bad_frame("decode")).await;
    scene.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn length_over_the_maximum_is_refused_before_reading_it() {
    let scene = Scene::start().await;
    let files = scene.pki.issue(Role::Agent, "training");
    let mut s = tls_client(&files, scene.collector.ingest).await.unwrap();
    // 1 GiB announced, nothing behind it: refused at once from the prefix.
    s.write_all(&(1u32 << 30).to_be_bytes()).await.unwrap();
    s.flush().await.unwrap();
    drain(&mut s).await;
    scene.counted(&refused("too_large")).await;
    scene.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_protocol_version_is_refused_with_a_reason() {
    let scene = Scene::start().await;
    let files = scene.pki.issue(Role::Agent, "training");
    let mut s = tls_client(&files, scene.collector.ingest).await.unwrap();
    codec::write_message(&mut s, &hello(99)).await.unwrap();
    let mut buf = Vec::new();
    let reply: Option<CollectorMessage> = codec::read_message(&mut s, 1 << 20, &mut buf)
        .await
        .unwrap();
    match reply {
        Some(CollectorMessage::Bye { reason }) => {
            assert!(
                reason.contains("unsupported protocol version 99"),
                "{reason}"
            );
            assert!(reason.contains("speaks version 1"), "{reason}");
        }
        other => panic!("expected Bye, got {other:?}"),
    }
    scene.counted(&refused("unsupported_version")).await;
    scene.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_that_never_says_hello_times_out() {
    let scene = Scene::start().await;
    let files = scene.pki.issue(Role::Agent, "training");
    let mut s = tls_client(&files, scene.collector.ingest).await.unwrap();
    // Say nothing; the collector's hello_timeout (1 s here) closes it.
    let started = std::time::Instant::now();
    drain(&mut s).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed by the collector"
    );
    scene.counted(&refused("hello_timeout")).await;
    scene.finish().await;
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}
