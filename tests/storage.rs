//! Durability: a collector process killed with SIGKILL in the middle of
//! steady ingest from several agents loses nothing it acknowledged, and
//! ingest continues after it restarts.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use patrol_collector::storage::disk::DiskStore;
use patrol_collector::storage::index::Matcher;
use patrol_collector::storage::Store;
use patrol_shared::codec;
use patrol_shared::model::{Family, SampleSet};
use patrol_shared::pki::Role;
use patrol_shared::protocol::{AgentMessage, Batch, CollectorMessage, Entry, Hello};
use patrol_shared::tls::{client_config, TlsFiles};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

const BASE_MS: i64 = 1_800_000_000_000;

/// The sample a host sends in batch `seq`: odd values, NaN now and then.
fn sample(host_index: u64, seq: u64) -> (i64, f64) {
    let v = if seq.is_multiple_of(7) {
        f64::NAN
    } else {
        (seq as f64) * 1.25 + host_index as f64 / 3.0
    };
    (BASE_MS + seq as i64 * 1000, v)
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_collector(config: &Path) -> Process {
    let child = Command::new(env!("CARGO_BIN_EXE_patrol"))
        .args(["collector", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start collector");
    Process(child)
}

/// Connects, says Hello, and returns the stream and the last applied seq.
async fn connect(
    files: &TlsFiles,
    addr: SocketAddr,
    stream_id: u64,
) -> Option<(tokio_rustls::client::TlsStream<TcpStream>, u64)> {
    let tcp = TcpStream::connect(addr).await.ok()?;
    let name = ServerName::try_from("localhost").ok()?;
    let mut tls = tokio_rustls::TlsConnector::from(client_config(files).ok()?)
        .connect(name, tcp)
        .await
        .ok()?;
    let hello = AgentMessage::Hello(Hello {
        protocol_version: 1,
        agent_version: "crash-test".into(),
        hostname: String::new(),
        os: String::new(),
        kernel: String::new(),
        boot_time: 0,
        labels: vec![],
        stream_id,
    });
    codec::write_message(&mut tls, &hello).await.ok()?;
    let mut buf = Vec::new();
    match codec::read_message(&mut tls, 1 << 20, &mut buf)
        .await
        .ok()?
    {
        Some(CollectorMessage::Welcome(w)) => Some((tls, w.last_applied_seq)),
        _ => None,
    }
}

/// Sends batches `from..` one at a time until `until` or an error;
/// returns the highest seq acked.
async fn stream(
    files: TlsFiles,
    addr: SocketAddr,
    host_index: u64,
    from: u64,
    until: Instant,
) -> u64 {
    let mut acked = from - 1;
    let Some((mut tls, last)) = connect(&files, addr, 42 + host_index).await else {
        return acked;
    };
    acked = acked.max(last);
    let mut seq = acked + 1;
    let mut buf = Vec::new();
    while Instant::now() < until {
        let (t, v) = sample(host_index, seq);
        let mut family = Family::gauge("crash_test_value", "");
        family.push(&[], v);
        let batch = AgentMessage::Batch(Batch {
            seq,
            entries: vec![Entry::Samples(SampleSet {
                timestamp_ms: t,
                families: vec![family],
            })],
        });
        if codec::write_message(&mut tls, &batch).await.is_err() {
            break;
        }
        match codec::read_message(&mut tls, 1 << 20, &mut buf).await {
            Ok(Some(CollectorMessage::Ack { seq: a })) => {
                acked = a;
                seq += 1;
            }
            _ => break,
        }
    }
    acked
}

fn stored(data: &Path) -> BTreeMap<String, Vec<(i64, u64)>> {
    let store = DiskStore::open(data).expect("open the killed collector's store");
    store
        .select(
            &[Matcher::equal("__name__", "crash_test_value")],
            i64::MIN,
            i64::MAX,
        )
        .expect("select")
        .into_iter()
        .map(|s| {
            let host = s
                .labels
                .iter()
                .find(|(n, _)| n == "host")
                .map(|(_, v)| v.clone());
            let samples = s.samples.iter().map(|(t, v)| (*t, v.to_bits())).collect();
            (host.unwrap_or_default(), samples)
        })
        .collect()
}

#[test]
fn samples_acked_before_a_sigkill_are_all_there_after_restart() {
    let pki = TestPki::new();
    let mut config = collector_config(&pki);
    config.ingest.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let data = pki.path().join("data");
    config.storage.path = data.clone();
    let path = pki.path().join("collector.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    let hosts = ["db", "training", "courseware"];
    let files: Vec<TlsFiles> = hosts.iter().map(|h| pki.issue(Role::Agent, h)).collect();
    let addr = config.ingest.listen;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // Round 1: steady ingest, killed in the middle.
    let collector = start_collector(&path);
    runtime.block_on(wait_for(
        Duration::from_secs(20),
        "collector up",
        || async { TcpStream::connect(addr).await.ok().map(|_| ()) },
    ));
    let until = Instant::now() + Duration::from_secs(3);
    let streams: Vec<_> = files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            runtime.spawn(stream(
                f.clone(),
                addr,
                i as u64,
                1,
                until + Duration::from_secs(10),
            ))
        })
        .collect();
    std::thread::sleep(until - Instant::now());
    let mut collector = collector;
    collector.0.kill().unwrap(); // SIGKILL
    collector.0.wait().unwrap();
    let acked: Vec<u64> = streams
        .into_iter()
        .map(|h| runtime.block_on(h).unwrap())
        .collect();
    assert!(
        acked.iter().all(|a| *a >= 5),
        "steady ingest before the kill: {acked:?}"
    );

    let check = |acked: &[u64]| {
        let data = stored(&data);
        for (i, host) in hosts.iter().enumerate() {
            let got = data.get(*host).cloned().unwrap_or_default();
            for seq in 1..=acked[i] {
                let (t, v) = sample(i as u64, seq);
                assert!(
                    got.contains(&(t, v.to_bits())),
                    "{host}: acked batch {seq} missing after SIGKILL ({} stored)",
                    got.len()
                );
            }
            let mut times: Vec<i64> = got.iter().map(|(t, _)| *t).collect();
            let n = times.len();
            times.dedup();
            assert_eq!(n, times.len(), "{host}: a sample stored twice");
        }
    };
    check(&acked);

    // Round 2: restarted on the same data, ingest continues where it was.
    let _collector = start_collector(&path);
    runtime.block_on(wait_for(
        Duration::from_secs(20),
        "collector back",
        || async { TcpStream::connect(addr).await.ok().map(|_| ()) },
    ));
    let until = Instant::now() + Duration::from_secs(1);
    let streams: Vec<_> = files
        .iter()
        .enumerate()
        .map(|(i, f)| runtime.spawn(stream(f.clone(), addr, i as u64, 1, until)))
        .collect();
    let more: Vec<u64> = streams
        .into_iter()
        .map(|h| runtime.block_on(h).unwrap())
        .collect();
    for (before, after) in acked.iter().zip(&more) {
        assert!(after > before, "ingest continued: {acked:?} → {more:?}");
    }
    drop(_collector);
    check(&more);
}
