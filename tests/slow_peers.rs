//! Peers that connect and then dawdle: thousands of TCP connections that
//! never start TLS, clients that finish TLS and say nothing, and clients
//! that send one byte a second, before and after the handshake. While they
//! hang on, a real agent's data keeps arriving and a new agent can still
//! connect; afterwards the collector has closed every one of them.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use patrol_shared::codec;
use patrol_shared::pki::Role;
use patrol_shared::protocol::{AgentMessage, Hello};
use patrol_shared::tls::{client_config, TlsFiles};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Idle TCP connections held at once. Each costs two descriptors in this
/// process (ours and the collector's).
const IDLE_TCP: usize = 3000;
/// TLS clients that never send a frame.
const SILENT_TLS: usize = 20;
/// Clients of each trickling kind.
const TRICKLERS: usize = 5;

fn raise_fd_limit(needed: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    let soft = limit.current.unwrap_or(u64::MAX);
    if soft < needed {
        let raised = Rlimit {
            current: Some(needed.min(hard)),
            maximum: limit.maximum,
        };
        setrlimit(Resource::Nofile, raised).expect("raise RLIMIT_NOFILE");
    }
    let now = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    assert!(
        now >= needed,
        "this test needs {needed} file descriptors; the hard limit is {hard}"
    );
}

fn hello() -> AgentMessage {
    AgentMessage::Hello(Hello {
        protocol_version: 1,
        agent_version: "test".into(),
        hostname: "slow".into(),
        os: String::new(),
        kernel: String::new(),
        boot_time: 0,
        labels: vec![],
        stream_id: 1,
    })
}

async fn tls(
    files: &TlsFiles,
    addr: SocketAddr,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let config = client_config(files).expect("client TLS config");
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("server name");
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// The first bytes a TLS client sends (its ClientHello).
fn client_hello_bytes(files: &TlsFiles) -> Vec<u8> {
    let config = client_config(files).expect("client TLS config");
    let name = ServerName::try_from("localhost").expect("server name");
    let mut conn = rustls::ClientConnection::new(config, name).expect("client connection");
    let mut bytes = Vec::new();
    conn.write_tls(&mut bytes).expect("client hello");
    bytes
}

/// Writes `bytes` one a second until they run out, the peer closes, or
/// `limit` passes; returns how long the peer put up with it.
async fn trickle<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    let mut sink = [0u8; 256];
    for b in bytes {
        if started.elapsed() > limit || stream.write_all(&[*b]).await.is_err() {
            break;
        }
        let _ = stream.flush().await;
        // A read that ends (0 bytes or an error) means the peer closed.
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut sink)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            _ => {}
        }
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dawdling_peers_do_not_stop_a_real_agent() {
    raise_fd_limit((IDLE_TCP * 2 + 512) as u64);
    let pki = TestPki::new();
    let mut config = collector_config(&pki);
    config.ingest.handshake_timeout = Duration::from_secs(10);
    config.ingest.hello_timeout = Duration::from_secs(3);
    config.ingest.idle_timeout = Duration::from_secs(5);
    let collector = TestCollector::start(config).await;
    let db = spawn_agent(agent_config(&pki, "db", collector.ingest));
    let acked = |host: &str| {
        format!("patrol_agent_batches_acked_total{{host=\"{host}\",instance=\"{host}\"}}")
    };
    let streaming = |host: String| {
        let http = collector.http;
        async move {
            let before = value_of(&scrape(http).await, &host);
            wait_for(
                Duration::from_secs(10),
                &format!("{host} to keep streaming"),
                || async { (value_of(&scrape(http).await, &host) > before).then_some(()) },
            )
            .await;
        }
    };
    streaming(acked("db")).await;

    let addr = collector.ingest;
    let files = Arc::new(pki.issue(Role::Agent, "slowpoke"));
    let started = Instant::now();
    // Thousands of TCP connections that never send a byte.
    let mut idle = Vec::with_capacity(IDLE_TCP);
    for _ in 0..IDLE_TCP {
        idle.push(TcpStream::connect(addr).await.expect("idle connection"));
    }
    let mut tasks = tokio::task::JoinSet::new();
    // TLS done, then silence.
    for _ in 0..SILENT_TLS {
        let files = files.clone();
        tasks.spawn(async move {
            let mut s = tls(&files, addr).await.expect("silent TLS");
            let mut sink = Vec::new();
            let t = Instant::now();
            let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut sink)).await;
            ("silent", t.elapsed())
        });
    }
    // A ClientHello, one byte a second.
    let client_hello = client_hello_bytes(&files);
    for _ in 0..TRICKLERS {
        let bytes = client_hello.clone();
        tasks.spawn(async move {
            let mut s = TcpStream::connect(addr).await.expect("trickle TCP");
            (
                "handshake_trickle",
                trickle(&mut s, &bytes, Duration::from_secs(20)).await,
            )
        });
    }
    // TLS done, then a Hello, one byte a second.
    let hello_frame = codec::encode_frame(&hello()).expect("hello frame");
    for _ in 0..TRICKLERS {
        let (files, bytes) = (files.clone(), hello_frame.clone());
        tasks.spawn(async move {
            let mut s = tls(&files, addr).await.expect("trickle TLS");
            (
                "hello_trickle",
                trickle(&mut s, &bytes, Duration::from_secs(20)).await,
            )
        });
    }

    // While all of them hang on, the agent's batches keep being acked and
    // a new agent gets in.
    streaming(acked("db")).await;
    let web = spawn_agent(agent_config(&pki, "web", collector.ingest));
    streaming(acked("web")).await;
    streaming(acked("db")).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "checked while the idle connections were still held ({:?})",
        started.elapsed()
    );

    // Every dawdler is closed by the collector within its timeout.
    while let Some(done) = tasks.join_next().await {
        let (kind, lasted) = done.expect("client task");
        assert!(
            lasted < Duration::from_secs(15),
            "{kind} held on for {lasted:?}"
        );
    }
    let refused =
        |reason: &str| format!("patrol_ingest_connections_refused_total{{reason=\"{reason}\"}}");
    wait_for(
        Duration::from_secs(20),
        "the idle connections closed by the collector",
        || async {
            let text = collector.metrics().await;
            (value_of(&text, &refused("handshake_timeout")) >= (IDLE_TCP + TRICKLERS) as f64
                && value_of(&text, &refused("hello_timeout")) >= (SILENT_TLS + TRICKLERS) as f64)
                .then_some(())
        },
    )
    .await;
    for mut tcp in idle {
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(1), tcp.read(&mut b)).await;
        assert!(
            matches!(n, Ok(Ok(0)) | Ok(Err(_))),
            "idle connection still open: {n:?}"
        );
    }
    streaming(acked("db")).await;

    web.0.cancel();
    db.0.cancel();
    web.1.await.unwrap();
    db.1.await.unwrap();
    collector.stop().await;
}
