//! "Nothing lost": the agent's on-disk spool, failover between collectors
//! and certificate rotation, with real processes, real TLS and real sled
//! in temp folders, on loopback.
//!
//! Every cycle's sample set carries `patrol_agent_cycles_total`, the
//! cycle's number since the agent started: the values a collector stores
//! for one agent run must be 1, 2, 3, … with no gap and no repeat, and the
//! collector must count no replayed sample (`patrol_storage_samples_rejected_total`).

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use patrol_agent::AgentConfig;
use patrol_collector::CollectorConfig;
use patrol_shared::codec;
use patrol_shared::model::now_ms;
use patrol_shared::pki::Role;
use patrol_shared::protocol::{AgentMessage, CollectorMessage, Entry};
use patrol_shared::tls::TlsFiles;
use rustls_pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};

const CYCLES: &str = "patrol_agent_cycles_total";
const LIMIT: Duration = Duration::from_secs(60);

/// A child process, SIGKILLed when dropped; its stderr goes to a file.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn start(kind: &str, config: &Path) -> Proc {
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let log = config.with_extension(format!("{n}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_patrol"))
            .args([kind, "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start process");
        Proc { child, log }
    }

    fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and the exit awaited (at most 20 s, then SIGKILL).
    fn stop(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.sigkill();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.sigkill();
    }
}

/// A PKI, a collector config file on fixed loopback ports, and agents'
/// config files next to it.
struct Site {
    pki: TestPki,
    collector: CollectorConfig,
    collector_toml: PathBuf,
}

impl Site {
    fn new() -> Site {
        let pki = TestPki::new();
        let mut collector = collector_config(&pki);
        collector.ingest.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        collector.http.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        collector.storage.path = pki.path().join("data");
        let collector_toml = pki.path().join("collector.toml");
        std::fs::write(&collector_toml, toml::to_string(&collector).unwrap()).unwrap();
        Site {
            pki,
            collector,
            collector_toml,
        }
    }

    fn ingest(&self) -> SocketAddr {
        self.collector.ingest.listen
    }

    fn http(&self) -> SocketAddr {
        self.collector.http.listen
    }

    /// Starts the collector process and waits until its API answers.
    async fn start_collector(&self) -> Proc {
        let proc = Proc::start("collector", &self.collector_toml);
        let http = self.http();
        wait_for(LIMIT, "collector up", || async move {
            TcpStream::connect(http).await.ok().map(|_| ())
        })
        .await;
        proc
    }

    /// An agent config sending to `to`, with its spool in its own folder.
    fn agent(&self, name: &str, to: &[SocketAddr]) -> AgentConfig {
        let mut config = agent_config(&self.pki, name, to[0]);
        config.collector.addresses = to.iter().map(|a| a.to_string()).collect();
        config.state_dir = Some(self.pki.path().join(format!("state-{name}")));
        // Only the cycles' batches: the counts below are exact.
        config.baseline.enabled = false;
        config.fim.enabled = false;
        config
    }

    fn write_agent(&self, name: &str, config: &AgentConfig) -> PathBuf {
        let path = self.pki.path().join(format!("agent-{name}.toml"));
        std::fs::write(&path, toml::to_string(config).unwrap()).unwrap();
        path
    }
}

/// Raw samples (ms, value) of `selector` over the last hour, oldest first.
async fn samples(http: SocketAddr, selector: &str) -> Vec<(i64, f64)> {
    let query: String =
        form_urlencoded::byte_serialize(format!("{selector}[1h]").as_bytes()).collect();
    let body = http_get(http, &format!("/api/v1/query?query={query}")).await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let mut out: Vec<(i64, f64)> = json["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|series| series["values"].as_array().cloned().unwrap_or_default())
        .filter_map(|pair| {
            let t = pair[0].as_f64()?;
            let v = pair[1].as_str()?.parse().ok()?;
            Some(((t * 1000.0).round() as i64, v))
        })
        .collect();
    out.sort_by_key(|(t, _)| *t);
    out
}

fn cycles_of(host: &str) -> String {
    format!("{CYCLES}{{host=\"{host}\"}}")
}

/// Samples the collector refused as replays or out of order: a batch
/// applied twice shows here.
async fn replayed_samples(http: SocketAddr) -> f64 {
    let text = scrape(http).await;
    ["duplicate", "out_of_order"]
        .iter()
        .map(|r| {
            value_of(
                &text,
                &format!("patrol_storage_samples_rejected_total{{reason=\"{r}\"}}"),
            )
        })
        .sum()
}

/// Asserts that the cycle numbers stored form `from..=last` exactly once
/// each, in time order; returns `last`.
fn assert_contiguous(what: &str, stored: &[(i64, f64)], from: u64) -> u64 {
    let values: Vec<u64> = stored.iter().map(|(_, v)| *v as u64).collect();
    let last = values.last().copied().unwrap_or(0);
    let expected: Vec<u64> = (from..=last).collect();
    assert_eq!(
        values, expected,
        "{what}: every cycle stored once, in order"
    );
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cycle_taken_while_the_collector_was_down_is_stored_once() {
    let site = Site::new();
    let mut collector = site.start_collector().await;
    let agent_toml = site.write_agent("db", &site.agent("db", &[site.ingest()]));
    let agent = Proc::start("agent", &agent_toml);
    let http = site.http();
    wait_for(LIMIT, "db's first cycles", || async {
        (samples(http, &cycles_of("db")).await.len() >= 3).then_some(())
    })
    .await;
    collector.stop();
    // Many intervals (200 ms) without a collector; the agent keeps measuring.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let restarted_at = now_ms();
    let _collector = site.start_collector().await;
    let stored = wait_for(
        LIMIT,
        "the backlog and the live stream behind it",
        || async {
            let stored = samples(http, &cycles_of("db")).await;
            stored
                .iter()
                .any(|(t, _)| *t > restarted_at + 1000)
                .then_some(stored)
        },
    )
    .await;
    let outage: Vec<_> = stored
        .windows(2)
        .filter(|w| w[1].0 - w[0].0 > 2000)
        .collect();
    assert!(
        outage.is_empty(),
        "no hole in time: {outage:?}\n{}",
        agent.log()
    );
    let last = assert_contiguous("db", &stored, 1);
    assert!(last >= 20, "cycles during the outage are there too: {last}");
    assert_eq!(replayed_samples(http).await, 0.0);
}

/// A stand-in for the collector in front of the real one: it forwards the
/// agent's Hello and its first `forward` batches (the collector stores and
/// acks them, but the acks are kept from the agent) and holds the rest
/// unsent. Records what it saw: (seq, sample time, forwarded).
async fn ack_swallowing_proxy(
    listener: TcpListener,
    front: TlsFiles,
    agent: TlsFiles,
    upstream: SocketAddr,
    forward: u64,
    seen: Arc<Mutex<Vec<(u64, i64, bool)>>>,
) {
    let acceptor =
        tokio_rustls::TlsAcceptor::from(patrol_shared::tls::server_config(&front).unwrap());
    let connector =
        tokio_rustls::TlsConnector::from(patrol_shared::tls::client_config(&agent).unwrap());
    while let Ok((tcp, _)) = listener.accept().await {
        let Ok(mut down) = acceptor.accept(tcp).await else {
            continue;
        };
        let Ok(up) = TcpStream::connect(upstream).await else {
            continue;
        };
        let name = ServerName::try_from("localhost").unwrap();
        let Ok(mut up) = connector.connect(name, up).await else {
            continue;
        };
        let mut buf = Vec::new();
        let Ok(Some(hello)) =
            codec::read_message::<_, AgentMessage>(&mut down, 8 << 20, &mut buf).await
        else {
            continue;
        };
        codec::write_message(&mut up, &hello).await.unwrap();
        let welcome: CollectorMessage = codec::read_message(&mut up, 1 << 20, &mut buf)
            .await
            .unwrap()
            .unwrap();
        codec::write_message(&mut down, &welcome).await.unwrap();
        loop {
            match codec::read_message::<_, AgentMessage>(&mut down, 8 << 20, &mut buf).await {
                Ok(Some(AgentMessage::Batch(batch))) => {
                    let time = batch.entries.iter().find_map(|e| match e {
                        Entry::Samples(set) => Some(set.timestamp_ms),
                        _ => None,
                    });
                    let seq = batch.seq;
                    let forwarded = seq <= forward;
                    if forwarded {
                        codec::write_message(&mut up, &AgentMessage::Batch(batch))
                            .await
                            .unwrap();
                        let ack: CollectorMessage = codec::read_message(&mut up, 1 << 20, &mut buf)
                            .await
                            .unwrap()
                            .unwrap();
                        assert_eq!(ack, CollectorMessage::Ack { seq });
                    }
                    seen.lock()
                        .unwrap()
                        .push((seq, time.unwrap_or_default(), forwarded));
                }
                Ok(Some(AgentMessage::Heartbeat)) => {
                    let _ = codec::write_message(&mut down, &CollectorMessage::Heartbeat).await;
                }
                _ => break,
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_unacked_when_the_agent_is_sigkilled_are_stored_once_after_restart() {
    let site = Site::new();
    let _collector = site.start_collector().await;
    let http = site.http();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap();
    let mut config = site.agent("db", &[proxy]);
    config.collector.heartbeat = Duration::from_secs(10);
    let agent_toml = site.write_agent("db", &config);
    let seen = Arc::new(Mutex::new(Vec::new()));
    tokio::spawn(ack_swallowing_proxy(
        listener,
        site.collector.tls.clone(),
        config.tls.clone(),
        site.ingest(),
        3,
        seen.clone(),
    ));
    let mut agent = Proc::start("agent", &agent_toml);
    wait_for(LIMIT, "3 batches stored, 3 more held", || async {
        let seen = seen.lock().unwrap();
        (seen.iter().filter(|s| !s.2).count() >= 3).then_some(())
    })
    .await;
    agent.sigkill();
    let first_log = agent.log();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.iter().map(|s| s.0).collect::<Vec<_>>(),
        (1..=seen.len() as u64).collect::<Vec<_>>(),
        "one connection, batches in order:\n{first_log}"
    );
    let killed_at = now_ms();

    // The same agent, now straight to the collector.
    config.collector.addresses = vec![site.ingest().to_string()];
    site.write_agent("db", &config);
    let agent = Proc::start("agent", &agent_toml);
    let stored = wait_for(LIMIT, "held batches and new ones stored", || async {
        let stored = samples(http, &cycles_of("db")).await;
        stored
            .iter()
            .any(|(t, _)| *t > killed_at + 600)
            .then_some(stored)
    })
    .await;
    let times: Vec<i64> = stored.iter().map(|(t, _)| *t).collect();
    for (seq, time, forwarded) in &seen {
        let n = times.iter().filter(|t| *t == time).count();
        assert_eq!(
            n,
            1,
            "batch {seq} (forwarded before the kill: {forwarded}) stored once\n{}",
            agent.log()
        );
    }
    let before: Vec<(i64, f64)> = stored
        .iter()
        .copied()
        .filter(|(t, _)| *t <= killed_at)
        .collect();
    assert_contiguous("db before the kill", &before, 1);
    assert_eq!(
        replayed_samples(http).await,
        0.0,
        "the 3 batches the collector had applied were not applied again"
    );
    assert!(
        agent.log().contains("batches kept from before"),
        "{}",
        agent.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_sigkilled_under_load_loses_nothing_and_stores_nothing_twice() {
    let site = Site::new();
    let mut collector = site.start_collector().await;
    let http = site.http();
    let hosts = ["db", "training"];
    let agents: Vec<Proc> = hosts
        .iter()
        .map(|h| {
            let mut config = site.agent(h, &[site.ingest()]);
            config.interval = Duration::from_millis(100);
            Proc::start("agent", &site.write_agent(h, &config))
        })
        .collect();
    wait_for(LIMIT, "both agents streaming", || async {
        for h in hosts {
            if samples(http, &cycles_of(h)).await.len() < 10 {
                return None;
            }
        }
        Some(())
    })
    .await;
    collector.sigkill();
    let restarted_at = now_ms();
    let _collector = site.start_collector().await;
    for (h, agent) in hosts.iter().zip(&agents) {
        let stored = wait_for(LIMIT, "streams resumed", || async {
            let stored = samples(http, &cycles_of(h)).await;
            stored
                .iter()
                .any(|(t, _)| *t > restarted_at + 1000)
                .then_some(stored)
        })
        .await;
        let last = stored.last().map_or(0.0, |s| s.1);
        assert!(last >= 15.0, "{h}: {last}\n{}", agent.log());
        assert_contiguous(h, &stored, 1);
    }
    assert_eq!(replayed_samples(http).await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_first_collector_down_data_goes_to_the_second_and_comes_back() {
    let pki = TestPki::new();
    let first_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut second_config = collector_config(&pki);
    second_config.storage.path = pki.path().join("data-second");
    let second = TestCollector::start(second_config).await;
    let mut config = agent_config(&pki, "db", first_addr);
    config.collector.addresses = vec![first_addr.to_string(), second.ingest.to_string()];
    config.collector.failback = Duration::from_secs(1);
    config.state_dir = Some(pki.path().join("state"));
    config.baseline.enabled = false;
    let (cancel, agent) = spawn_agent(config);
    wait_for(LIMIT, "db at the second collector", || async {
        (!samples(second.http, &cycles_of("db")).await.is_empty()).then_some(())
    })
    .await;

    // The first comes up: within `failback` the agent is back with it.
    let mut first_config = collector_config(&pki);
    first_config.ingest.listen = first_addr;
    first_config.storage.path = pki.path().join("data-first");
    let first = TestCollector::start(first_config).await;
    let on_first = wait_for(LIMIT, "db back at the first collector", || async {
        let stored = samples(first.http, &cycles_of("db")).await;
        (stored.len() >= 3).then_some(stored)
    })
    .await;
    // Between them the two hold every cycle once.
    cancel.cancel();
    agent.await.unwrap();
    let on_second = samples(second.http, &cycles_of("db")).await;
    let mut all: Vec<(i64, f64)> = on_second.iter().chain(&on_first).copied().collect();
    all.sort_by_key(|(t, _)| *t);
    let values: BTreeSet<u64> = all.iter().map(|(_, v)| *v as u64).collect();
    assert_eq!(values.len(), all.len(), "no cycle at both collectors");
    assert!(on_first[0].1 > on_second[0].1, "the second came first");
    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_certificate_files_are_used_from_the_next_connection() {
    let pki = TestPki::new();
    let mut collector_cfg = collector_config(&pki);
    collector_cfg.ingest.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let collector = TestCollector::start(collector_cfg.clone()).await;
    let mut config = agent_config(&pki, "db", collector.ingest);
    config.state_dir = Some(pki.path().join("state"));
    config.baseline.enabled = false;
    let files = config.tls.clone();
    let (cancel, agent) = spawn_agent(config);
    wait_for(LIMIT, "db", || async {
        (!samples(collector.http, &cycles_of("db")).await.is_empty()).then_some(())
    })
    .await;

    // The host's certificate renewed under a new name, written in place
    // (a new file renamed over the old one, as installers do).
    let renewed = pki.issue(Role::Agent, "db-renewed");
    for (from, to) in [(&renewed.key, &files.key), (&renewed.cert, &files.cert)] {
        let tmp = to.with_extension("new");
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, to).unwrap();
    }
    // The next connection: after a collector restart.
    collector.stop().await;
    // A store of its own: the stopped one may still hold its lock a moment.
    collector_cfg.storage.path = pki.path().join("data-after");
    let collector = TestCollector::start(collector_cfg).await;
    wait_for(
        LIMIT,
        "data under the renewed certificate's name",
        || async {
            (!samples(collector.http, &cycles_of("db-renewed"))
                .await
                .is_empty())
            .then_some(())
        },
    )
    .await;
    cancel.cancel();
    agent.await.unwrap();
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_drops_the_oldest_batches_and_counts_them() {
    let site = Site::new();
    let mut config = site.agent("db", &[site.ingest()]);
    config.interval = Duration::from_millis(100);
    config.spool.max_bytes = 64 << 10;
    let agent = Proc::start("agent", &site.write_agent("db", &config));
    // No collector yet: far more cycles than 64 KiB holds.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let started_at = now_ms();
    let _collector = site.start_collector().await;
    let http = site.http();
    let stored = wait_for(LIMIT, "db's spool and live cycles", || async {
        let stored = samples(http, &cycles_of("db")).await;
        stored
            .iter()
            .any(|(t, _)| *t > started_at + 1000)
            .then_some(stored)
    })
    .await;
    let first = stored[0].1 as u64;
    assert!(
        first > 1,
        "the oldest were dropped: {stored:?}\n{}",
        agent.log()
    );
    assert_contiguous("db after the drops", &stored, first);
    let dropped = samples(
        http,
        "patrol_agent_spool_dropped_batches_total{host=\"db\"}",
    )
    .await
    .last()
    .map_or(0.0, |s| s.1);
    assert!(
        dropped >= (first - 1) as f64,
        "each missing batch is counted: {dropped} dropped, first stored cycle {first}"
    );
    assert!(agent.log().contains("spool full"), "{}", agent.log());
}
