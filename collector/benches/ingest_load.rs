//! Many agents against one collector, over real mTLS on loopback: how many
//! connect, the samples per second it sustains with durable acks, the ack
//! latency, its memory per idle connected agent and its CPU per million
//! samples.
//!
//! `cargo bench -p patrol-collector --bench ingest_load`
//! Knobs: PATROL_LOAD_AGENTS (default 200), PATROL_LOAD_SECONDS of
//! streaming (default 30), PATROL_LOAD_SERIES per agent (default 500),
//! PATROL_LOAD_INTERVAL_MS between an agent's batches before compression
//! (default 10000), PATROL_LOAD_SPEEDUP to divide it by (default 1).
//!
//! The collector is the real `patrol-collector` binary in its own process,
//! with a temp data folder and no rules, so its memory and CPU are read
//! from /proc alone. Each simulated agent has its own client certificate
//! from a CA made here, says Hello as `agent/src/link.rs` does, and sends
//! one batch of its series per interval, waiting for the Ack (a window of
//! one), with start times spread over the first interval. The agents run
//! in this process, on the same cores as the collector.
//!
//! Phases: the collector idle with no agent (RSS), every agent connected
//! and idle (RSS; the difference over the count is memory per idle agent),
//! then streaming for the set time (samples acked per second, ack latency,
//! collector CPU per million samples).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use patrol_collector::CollectorConfig;
use patrol_shared::codec;
use patrol_shared::model::{Family, SampleSet};
use patrol_shared::pki::{Ca, Role, DEFAULT_CA_VALIDITY, DEFAULT_LEAF_VALIDITY};
use patrol_shared::protocol::{AgentMessage, Batch, CollectorMessage, Entry, Hello};
use patrol_shared::tls::{client_config, TlsFiles};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::client::TlsStream;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Knobs {
    agents: usize,
    seconds: u64,
    series: usize,
    interval: Duration,
}

fn main() {
    let interval_ms = env("PATROL_LOAD_INTERVAL_MS", 10_000) / env("PATROL_LOAD_SPEEDUP", 1).max(1);
    let knobs = Knobs {
        agents: env("PATROL_LOAD_AGENTS", 200) as usize,
        seconds: env("PATROL_LOAD_SECONDS", 30).min(600),
        series: env("PATROL_LOAD_SERIES", 500) as usize,
        interval: Duration::from_millis(interval_ms.max(10)),
    };
    raise_fd_limit(knobs.agents as u64 * 2 + 1024);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(knobs));
}

async fn run(knobs: Knobs) {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::generate(DEFAULT_CA_VALIDITY).expect("CA");
    ca.write(dir.path(), false).expect("write CA");
    let sans = ["localhost".to_owned(), "127.0.0.1".to_owned()];
    ca.issue(Role::Collector, "collector", &sans, DEFAULT_LEAF_VALIDITY)
        .expect("collector certificate")
        .write(dir.path(), "collector", false)
        .expect("write collector certificate");
    let (ingest, mut collector) = spawn_collector(dir.path(), knobs.agents);
    let pid = collector.id();
    println!(
        "ingest_load: {} agents × {} series every {:?} for {} s (collector pid {pid})",
        knobs.agents, knobs.series, knobs.interval, knobs.seconds
    );

    let made = Instant::now();
    let configs: Vec<Arc<ClientConfig>> = (0..knobs.agents)
        .map(|i| agent_tls(&ca, dir.path(), &agent_name(i)))
        .collect();
    println!(
        "  {} agent certificates in {:.1?}",
        configs.len(),
        made.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_empty = rss_bytes(pid);

    let (start_tx, start_rx) = watch::channel(None::<Instant>);
    let stats = Arc::new(Stats::default());
    let dial = Arc::new(Semaphore::new(32));
    let mut tasks = tokio::task::JoinSet::new();
    let connecting = Instant::now();
    for (i, tls) in configs.into_iter().enumerate() {
        let agent = SimAgent {
            index: i,
            series: knobs.series,
            interval: knobs.interval,
            agents: knobs.agents,
        };
        let (stats, start, dial) = (stats.clone(), start_rx.clone(), dial.clone());
        tasks.spawn(async move { agent.run(tls, ingest, dial, start, stats).await });
    }
    let connected = wait_connected(&stats, knobs.agents, Duration::from_secs(120)).await;
    let connect_time = connecting.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_idle = rss_bytes(pid);
    let per_agent = (rss_idle - rss_empty) / connected.max(1) as f64;
    println!(
        "  connected {connected}/{} in {connect_time:.1?}; collector RSS {:.1} MiB empty, {:.1} MiB with them idle: {:.1} KiB per idle agent",
        knobs.agents,
        rss_empty / 1048576.0,
        rss_idle / 1048576.0,
        per_agent / 1024.0
    );

    let cpu_before = cpu_seconds(pid);
    let began = Instant::now();
    let _ = start_tx.send(Some(began + Duration::from_secs(knobs.seconds)));
    // Samples counted from the second interval on: the first one spreads
    // the agents' start times and creates every series.
    tokio::time::sleep(knobs.interval).await;
    let (warm_samples, warm_at) = (stats.samples.load(Ordering::Relaxed), Instant::now());
    let cpu_warm = cpu_seconds(pid);
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            eprintln!("agent task failed: {e}");
        }
    }
    let elapsed = warm_at.elapsed().as_secs_f64();
    let samples = stats.samples.load(Ordering::Relaxed) - warm_samples;
    let cpu = cpu_seconds(pid) - cpu_warm;
    let mut latencies = std::mem::take(&mut *stats.latencies.lock().expect("latencies"));
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    let offered = knobs.agents as f64 * knobs.series as f64 / knobs.interval.as_secs_f64();
    println!(
        "  streaming: {:.0} samples/s sustained (offered {offered:.0}); {} batches acked, {} failed; ack latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        samples as f64 / elapsed,
        latencies.len(),
        stats.failures.load(Ordering::Relaxed),
        pct(0.50),
        pct(0.99),
        pct(1.0),
    );
    println!(
        "  collector CPU: {:.2} s over {:.1} s streamed ({:.2} s incl. first interval) = {:.2} CPU s per million samples; RSS at end {:.1} MiB",
        cpu,
        elapsed,
        cpu_seconds(pid) - cpu_before,
        cpu / (samples.max(1) as f64 / 1e6),
        rss_bytes(pid) / 1048576.0
    );
    let _ = collector.kill();
    let _ = collector.wait();
}

fn agent_name(i: usize) -> String {
    format!("load-{i:05}")
}

/// Issues the agent's certificate and builds its client config from the
/// files, as the agent does.
fn agent_tls(ca: &Ca, dir: &Path, name: &str) -> Arc<ClientConfig> {
    ca.issue(Role::Agent, name, &[], DEFAULT_LEAF_VALIDITY)
        .expect("agent certificate")
        .write(dir, name, false)
        .expect("write agent certificate");
    let files = TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}-key.pem")),
    };
    client_config(&files).expect("agent TLS config")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Starts `patrol-collector` on loopback with data in `dir`; returns the
/// ingest address once it accepts connections.
fn spawn_collector(dir: &Path, agents: usize) -> (SocketAddr, Child) {
    let mut config = CollectorConfig::example(dir, &dir.join("data"));
    let ingest: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    config.ingest.listen = ingest;
    config.ingest.max_connections = agents + 100;
    config.http.listen = ([127, 0, 0, 1], free_port()).into();
    config.rules.defaults = false;
    let path = dir.join("collector.toml");
    std::fs::write(&path, toml::to_string(&config).expect("config toml")).expect("write config");
    let log = std::fs::File::create(dir.join("collector.log")).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_patrol-collector"))
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start patrol-collector");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(ingest).is_err() {
        assert!(
            Instant::now() < deadline,
            "collector did not start; see its log in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (ingest, child)
}

#[derive(Default)]
struct Stats {
    connected: AtomicU64,
    samples: AtomicU64,
    failures: AtomicU64,
    latencies: std::sync::Mutex<Vec<Duration>>,
}

async fn wait_connected(stats: &Stats, want: usize, limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        let n = stats.connected.load(Ordering::Relaxed) as usize;
        if n >= want || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct SimAgent {
    index: usize,
    series: usize,
    interval: Duration,
    agents: usize,
}

impl SimAgent {
    async fn run(
        self,
        tls: Arc<ClientConfig>,
        addr: SocketAddr,
        dial: Arc<Semaphore>,
        mut start: watch::Receiver<Option<Instant>>,
        stats: Arc<Stats>,
    ) {
        let session = {
            let _permit = dial.acquire().await;
            self.connect(tls, addr).await
        };
        let (mut stream, mut seq) = match session {
            Ok(pair) => pair,
            Err(e) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                eprintln!("{}: {e}", agent_name(self.index));
                return;
            }
        };
        stats.connected.fetch_add(1, Ordering::Relaxed);
        let Ok(until) = start
            .wait_for(Option::is_some)
            .await
            .map(|v| v.unwrap_or_else(Instant::now))
        else {
            return;
        };
        // Spread over the first interval, as real agents' clocks are.
        let offset = self
            .interval
            .mul_f64(self.index as f64 / self.agents.max(1) as f64);
        let mut next = tokio::time::Instant::now() + offset;
        let mut buf = Vec::new();
        while Instant::now() < until {
            tokio::time::sleep_until(next).await;
            next += self.interval;
            seq += 1;
            let batch = self.batch(seq);
            let sent = Instant::now();
            let acked = async {
                codec::write_message(&mut stream, &batch).await?;
                codec::read_message::<_, CollectorMessage>(&mut stream, 1 << 20, &mut buf).await
            };
            match tokio::time::timeout(Duration::from_secs(30), acked).await {
                Ok(Ok(Some(CollectorMessage::Ack { seq: s }))) if s == seq => {
                    stats
                        .samples
                        .fetch_add(self.series as u64, Ordering::Relaxed);
                    if let Ok(mut l) = stats.latencies.lock() {
                        l.push(sent.elapsed());
                    }
                }
                other => {
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    eprintln!("{}: batch {seq}: {other:?}", agent_name(self.index));
                    return;
                }
            }
        }
        let bye = AgentMessage::Bye {
            reason: "load test done".into(),
        };
        let _ = codec::write_message(&mut stream, &bye).await;
    }

    async fn connect(
        &self,
        tls: Arc<ClientConfig>,
        addr: SocketAddr,
    ) -> Result<(TlsStream<TcpStream>, u64), String> {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
        let mut stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let hello = AgentMessage::Hello(Hello {
            protocol_version: patrol_shared::protocol::PROTOCOL_VERSION,
            agent_version: "ingest_load".into(),
            hostname: agent_name(self.index),
            os: "Linux".into(),
            kernel: String::new(),
            boot_time: 0,
            labels: vec![],
            stream_id: self.index as u64 + 1,
        });
        codec::write_message(&mut stream, &hello)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        let reply = tokio::time::timeout(
            Duration::from_secs(60),
            codec::read_message::<_, CollectorMessage>(&mut stream, 1 << 20, &mut buf),
        )
        .await
        .map_err(|_| "no Welcome within 60 s".to_owned())?
        .map_err(|e| e.to_string())?;
        match reply {
            Some(CollectorMessage::Welcome(w)) => Ok((stream, w.last_applied_seq)),
            other => Err(format!("expected Welcome, got {other:?}")),
        }
    }

    /// One collection cycle: `series` series over 10 families, values that
    /// move like counters and gauges do.
    fn batch(&self, seq: u64) -> AgentMessage {
        let per_family = self.series.div_ceil(10).max(1);
        let mut families = Vec::new();
        let mut left = self.series;
        for f in 0..10 {
            if left == 0 {
                break;
            }
            let mut family = if f % 2 == 0 {
                Family::counter(format!("load_counter_{f}_total"), "load test counter")
            } else {
                Family::gauge(format!("load_gauge_{f}"), "load test gauge")
            };
            for s in 0..per_family.min(left) {
                let value = if f % 2 == 0 {
                    (seq * (s as u64 + 1)) as f64
                } else {
                    ((seq + s as u64) % 100) as f64 / 4.0
                };
                family.push(&[("item", &s.to_string())], value);
            }
            left -= per_family.min(left);
            families.push(family);
        }
        AgentMessage::Batch(Batch {
            seq,
            entries: vec![Entry::Samples(SampleSet {
                timestamp_ms: patrol_shared::model::now_ms(),
                families,
            })],
        })
    }
}

fn rss_bytes(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kb| kb * 1024.0)
}

/// User plus system CPU seconds of the process, every thread.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name, which may hold spaces: utime and stime are
    // the 12th and 13th fields.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
        .sum();
    ticks / rustix::param::clock_ticks_per_second() as f64
}

fn raise_fd_limit(needed: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|c| c < needed) {
        let raised = Rlimit {
            current: Some(limit.maximum.map_or(needed, |m| needed.min(m))),
            maximum: limit.maximum,
        };
        let _ = setrlimit(Resource::Nofile, raised);
    }
}
