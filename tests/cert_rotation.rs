//! The collector's certificate, key and revocation list are files an
//! operator replaces while it runs: the next handshake uses the new
//! certificate, a broken file leaves the old one serving, and a revoked
//! agent is refused and its open session closed, while a good agent keeps
//! streaming through all of it.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use patrol_shared::codec;
use patrol_shared::pki::Role;
use patrol_shared::protocol::{AgentMessage, CollectorMessage, Hello};
use patrol_shared::tls::{certificate_serial, client_config, TlsFiles};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

const GOOD: &str = "patrol_agent_batches_acked_total{host=\"db\",instance=\"db\"}";

/// The serial number of the certificate the collector presents now.
async fn served_serial(files: &TlsFiles, addr: SocketAddr) -> Result<Vec<u8>, String> {
    let config = client_config(files).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").expect("server name");
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no server certificate")?;
    certificate_serial(cert).map_err(|e| e.to_string())
}

fn serial_of(files: &TlsFiles) -> Vec<u8> {
    let certs = patrol_shared::tls::load_certs(&files.cert).expect("cert");
    certificate_serial(&certs[0]).expect("serial")
}

async fn keeps_streaming(collector: &TestCollector) {
    let before = value_of(&collector.metrics().await, GOOD);
    wait_for(
        Duration::from_secs(20),
        "the good agent to keep streaming",
        || async { (value_of(&collector.metrics().await, GOOD) > before).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_collector_certificate_is_served_without_a_restart() {
    let pki = TestPki::new();
    let collector = TestCollector::start(collector_config(&pki)).await;
    let agent = spawn_agent(agent_config(&pki, "db", collector.ingest));
    keeps_streaming(&collector).await;
    let probe = pki.issue(Role::Agent, "probe");
    let old = serial_of(&pki.files("collector"));
    assert_eq!(served_serial(&probe, collector.ingest).await.unwrap(), old);

    // Rotate: a new key and certificate written over the old files.
    let new = serial_of(&pki.issue(Role::Collector, "collector"));
    assert_ne!(old, new);
    wait_for(
        Duration::from_secs(10),
        "the new certificate to be served",
        || async { (served_serial(&probe, collector.ingest).await.ok()? == new).then_some(()) },
    )
    .await;
    // The agent's session, begun with the old certificate, keeps going.
    keeps_streaming(&collector).await;

    agent.0.cancel();
    agent.1.await.unwrap();
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_certificate_file_leaves_the_old_one_serving() {
    let pki = TestPki::new();
    let collector = TestCollector::start(collector_config(&pki)).await;
    let probe = pki.issue(Role::Agent, "probe");
    let old = serial_of(&pki.files("collector"));
    let files = pki.files("collector");
    // Half a rotation: a certificate that does not parse, then one that
    // does not match the key.
    std::fs::write(&files.cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(served_serial(&probe, collector.ingest).await.unwrap(), old);
    let other = pki
        .ca
        .issue(
            Role::Collector,
            "collector",
            &["localhost".into()],
            Duration::from_secs(3600),
        )
        .unwrap();
    std::fs::write(&files.cert, other.cert_pem).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(served_serial(&probe, collector.ingest).await.unwrap(), old);
    // Finishing the rotation (the matching key) is picked up.
    std::fs::write(&files.key, other.key_pem).unwrap();
    let new = serial_of(&files);
    wait_for(
        Duration::from_secs(10),
        "the completed rotation",
        || async { (served_serial(&probe, collector.ingest).await.ok()? == new).then_some(()) },
    )
    .await;
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_agent_is_cut_off_and_refused_at_its_next_connection() {
    let pki = TestPki::new();
    let crl = pki.path().join("crl.pem");
    pki.ca.revoke(&crl, &[]).unwrap();
    let mut config = collector_config(&pki);
    config.ingest.crl = Some(crl.clone());
    let collector = TestCollector::start(config).await;
    let good = spawn_agent(agent_config(&pki, "db", collector.ingest));
    let doomed = spawn_agent(agent_config(&pki, "training", collector.ingest));
    let connected = "patrol_ingest_connected_agents";
    wait_for(Duration::from_secs(20), "both agents connected", || async {
        (value_of(&collector.metrics().await, connected) == 2.0).then_some(())
    })
    .await;

    pki.ca.revoke(&crl, &[pki.files("training").cert]).unwrap();
    // Its session is closed (one refusal), and each reconnection the agent
    // tries is refused in the handshake.
    let revoked = "patrol_ingest_connections_refused_total{reason=\"certificate_revoked\"}";
    wait_for(
        Duration::from_secs(20),
        "the revoked agent cut off and refused again",
        || async {
            let text = collector.metrics().await;
            (value_of(&text, connected) == 1.0 && value_of(&text, revoked) >= 2.0).then_some(())
        },
    )
    .await;
    keeps_streaming(&collector).await;

    // By hand: the handshake fails, no Welcome ever comes.
    let files = pki.files("training");
    if let Ok(tls) = tls_connect(&files, collector.ingest).await {
        let mut tls = tls;
        let hello = AgentMessage::Hello(Hello {
            protocol_version: 1,
            agent_version: "test".into(),
            hostname: "training".into(),
            os: String::new(),
            kernel: String::new(),
            boot_time: 0,
            labels: vec![],
            stream_id: 1,
        });
        let _ = codec::write_message(&mut tls, &hello).await;
        let mut buf = Vec::new();
        let reply = tokio::time::timeout(
            Duration::from_secs(5),
            codec::read_message::<_, CollectorMessage>(&mut tls, 1 << 20, &mut buf),
        )
        .await
        .expect("the collector answers or closes");
        assert!(
            !matches!(reply, Ok(Some(CollectorMessage::Welcome(_)))),
            "{reply:?}"
        );
    }

    doomed.0.cancel();
    good.0.cancel();
    doomed.1.await.unwrap();
    good.1.await.unwrap();
    collector.stop().await;
}

async fn tls_connect(
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

/// `--check-config` loads what the collector would: a revocation list
/// that does not parse is named before the collector is started with it.
#[test]
fn check_config_reads_the_revocation_list() {
    let pki = TestPki::new();
    let files = pki.issue(Role::Collector, "collector");
    let crl = pki.path().join("crl.pem");
    pki.ca.revoke(&crl, &[]).unwrap();
    let config = pki.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "[ingest]\nlisten = \"127.0.0.1:0\"\ncrl = {:?}\n[tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\n[storage]\npath = {:?}\n",
            crl,
            files.ca,
            files.cert,
            files.key,
            pki.path().join("data")
        ),
    )
    .unwrap();
    let check = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_patrol"))
            .args(["collector", "--check-config", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    };
    let out = check();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&crl, "not a revocation list\n").unwrap();
    let out = check();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("crl.pem"), "{stderr}");
}
