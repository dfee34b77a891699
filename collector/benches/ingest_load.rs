//! Many agents against one collector, over real mTLS on loopback: how many
//! connect, the samples per second it sustains with durable acks, the ack
//! latency, its memory per connected agent and its CPU per million samples.
//!
//! `cargo bench -p patrol-collector --bench ingest_load`
//! Knobs: PATROL_LOAD_AGENTS (default 200, at most 20,000),
//! PATROL_LOAD_SECONDS of steady streaming (default 30, at most 600),
//! PATROL_LOAD_SERIES per agent (default 500), PATROL_LOAD_INTERVAL_MS
//! between an agent's batches before compression (default 10000),
//! PATROL_LOAD_SPEEDUP to divide it by (default 1), PATROL_LOAD_PHASE
//! `spread` (default) or `sync`.
//!
//! The collector is the real `patrol-collector` binary in its own process,
//! with a temp data folder and no rules, so its memory and CPU are read
//! from /proc alone. Each simulated agent has its own client certificate
//! from a CA made here, says Hello as `agent/src/link.rs` does, and sends
//! one batch of its series per interval, waiting for the Ack (a window of
//! one). A real fleet's agents are phased by when each one started, so by
//! default agent i sends at i/N of the interval; `sync` sends every agent's
//! batch at the same instant each interval, the worst case. The agents run
//! in this process, on the same cores as the collector; this process's
//! CPU is reported too.
//!
//! Phases: the collector idle with no agent (RSS); every agent connected
//! and idle (RSS; the difference over the count is memory per idle agent);
//! the first cycle, one batch per agent, which creates every series (how
//! long until all are acked, their ack latency, the collector's CPU); then
//! steady streaming for the set time into the series that now exist
//! (samples acked per second, ack latency, CPU per million samples, RSS
//! per agent with its series).
//!
//! Every loop is bounded: connecting by 120 s, the first cycle by one
//! interval plus 120 s, each ack by 30 s, streaming by the set time.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
    sync: bool,
}

fn main() {
    let interval_ms = env("PATROL_LOAD_INTERVAL_MS", 10_000) / env("PATROL_LOAD_SPEEDUP", 1).max(1);
    let knobs = Knobs {
        agents: env("PATROL_LOAD_AGENTS", 200).clamp(1, 20_000) as usize,
        seconds: env("PATROL_LOAD_SECONDS", 30).min(600),
        series: env("PATROL_LOAD_SERIES", 500) as usize,
        interval: Duration::from_millis(interval_ms.max(10)),
        sync: std::env::var("PATROL_LOAD_PHASE").is_ok_and(|p| p == "sync"),
    };
    raise_fd_limit(knobs.agents as u64 * 2 + 1024);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(knobs));
}

/// What the agents are told to do next.
#[derive(Clone, Copy, Debug)]
enum Signal {
    Wait,
    /// Send batch 1 at this instant plus the agent's phase.
    First(tokio::time::Instant),
    /// Send a batch every interval from this instant plus the agent's
    /// phase, until the second instant.
    Steady(tokio::time::Instant, tokio::time::Instant),
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
        "ingest_load: {} agents × {} series every {:?}, phases {}, {} s steady (collector pid {pid})",
        knobs.agents,
        knobs.series,
        knobs.interval,
        if knobs.sync { "synchronized" } else { "spread" },
        knobs.seconds
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

    let (signal_tx, signal_rx) = watch::channel(Signal::Wait);
    let stats = Arc::new(Stats::default());
    let dial = Arc::new(Semaphore::new(32));
    let mut tasks = tokio::task::JoinSet::new();
    let connecting = Instant::now();
    for (i, tls) in configs.into_iter().enumerate() {
        let phase = if knobs.sync {
            Duration::ZERO
        } else {
            knobs.interval.mul_f64(i as f64 / knobs.agents as f64)
        };
        let agent = SimAgent {
            index: i,
            series: knobs.series,
            interval: knobs.interval,
            phase,
        };
        let (stats, signal, dial) = (stats.clone(), signal_rx.clone(), dial.clone());
        tasks.spawn(async move { agent.run(tls, ingest, dial, signal, stats).await });
    }
    let connected = wait_for(&stats.connected, knobs.agents, Duration::from_secs(120)).await;
    let connect_time = connecting.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_idle = rss_bytes(pid);
    println!(
        "  connected {connected}/{} in {connect_time:.1?}; collector RSS {:.1} MiB empty, {:.1} MiB with them idle: {:.1} KiB per idle agent",
        knobs.agents,
        mib(rss_empty),
        mib(rss_idle),
        (rss_idle - rss_empty) / connected.max(1) as f64 / 1024.0
    );

    let first = Meter::start(pid);
    let _ = signal_tx.send(Signal::First(tokio::time::Instant::now()));
    let limit = knobs.interval + Duration::from_secs(120);
    let done = wait_for(&stats.first_done, connected, limit).await;
    let first = first.stop(pid);
    let latencies = stats.take(|s| &s.first);
    println!(
        "  first cycle ({} new series): {done}/{connected} batches done in {:.1} s; ack p50 {}, p99 {}, max {}; collector {:.1} CPU s ({:.1} per million samples), RSS {:.1} MiB",
        connected * knobs.series,
        first.wall,
        pct(&latencies, 0.50),
        pct(&latencies, 0.99),
        pct(&latencies, 1.0),
        first.collector_cpu,
        first.collector_cpu / (latencies.len() * knobs.series).max(1) as f64 * 1e6,
        mib(rss_bytes(pid)),
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    let threads_before = thread_cpu(pid);
    let steady = Meter::start(pid);
    let began = tokio::time::Instant::now();
    let until = began + Duration::from_secs(knobs.seconds);
    let _ = signal_tx.send(Signal::Steady(began, until));
    // The collector's RSS every 10 s while streaming, to see it level off
    // (or not) and what its once-a-minute maintenance does.
    let sampler = tokio::spawn(async move {
        let mut rss = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        while tokio::time::Instant::now() < until {
            tick.tick().await;
            rss.push(format!("{:.0}", mib(rss_bytes(pid))));
        }
        rss
    });
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            eprintln!("agent task failed: {e}");
        }
    }
    let steady = steady.stop(pid);
    if let Ok(rss) = sampler.await {
        println!(
            "  collector RSS every 10 s while streaming (MiB): {}",
            rss.join(" ")
        );
    }
    report_steady(&knobs, &stats, &steady, connected);
    print_thread_cpu(&threads_before, &thread_cpu(pid));
    let rss_active = rss_bytes(pid);
    println!(
        "  collector RSS {:.1} MiB after streaming: {:.1} KiB per agent with its {} series",
        mib(rss_active),
        (rss_active - rss_empty) / connected.max(1) as f64 / 1024.0,
        knobs.series
    );
    let _ = collector.kill();
    let _ = collector.wait();
}

fn report_steady(knobs: &Knobs, stats: &Stats, steady: &Measured, connected: usize) {
    let latencies = stats.take(|s| &s.steady);
    let samples = latencies.len() as f64 * knobs.series as f64;
    // Synchronized agents are all done soon after their last burst, well
    // before the set time: the rate is over the set time or, if acks
    // lagged past it, until the last one.
    let window = steady.wall.max(knobs.seconds as f64);
    let offered = connected as f64 * knobs.series as f64 / knobs.interval.as_secs_f64();
    println!(
        "  steady: {:.0} samples/s acked (offered {offered:.0}) over {:.1} s; {} batches acked, {} failed; ack p50 {}, p99 {}, max {}",
        samples / window,
        window,
        latencies.len(),
        stats.failures.load(Ordering::Relaxed),
        pct(&latencies, 0.50),
        pct(&latencies, 0.99),
        pct(&latencies, 1.0),
    );
    println!(
        "  CPU: collector {:.1} s = {:.2} cores, {:.2} CPU s per million samples; load generator {:.1} s = {:.2} cores",
        steady.collector_cpu,
        steady.collector_cpu / steady.wall,
        steady.collector_cpu / (samples / 1e6).max(1e-9),
        steady.generator_cpu,
        steady.generator_cpu / steady.wall,
    );
}

fn mib(bytes: f64) -> f64 {
    bytes / 1048576.0
}

fn pct(sorted: &[Duration], p: f64) -> String {
    let at = ((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(at).map_or("-".into(), |d| {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    })
}

/// Wall time and CPU of the collector and of this process over a phase.
struct Meter {
    at: Instant,
    collector: f64,
    generator: f64,
}

struct Measured {
    wall: f64,
    collector_cpu: f64,
    generator_cpu: f64,
}

impl Meter {
    fn start(pid: u32) -> Meter {
        Meter {
            at: Instant::now(),
            collector: cpu_seconds(&format!("/proc/{pid}/stat")),
            generator: cpu_seconds("/proc/self/stat"),
        }
    }

    fn stop(self, pid: u32) -> Measured {
        Measured {
            wall: self.at.elapsed().as_secs_f64(),
            collector_cpu: cpu_seconds(&format!("/proc/{pid}/stat")) - self.collector,
            generator_cpu: cpu_seconds("/proc/self/stat") - self.generator,
        }
    }
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
    // Simulated agents send no heartbeats while they wait between phases.
    config.ingest.idle_timeout = Duration::from_secs(900);
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
    /// Agents whose first batch was acked or failed.
    first_done: AtomicU64,
    failures: AtomicU64,
    first: Mutex<Vec<Duration>>,
    steady: Mutex<Vec<Duration>>,
}

impl Stats {
    fn record(&self, which: impl Fn(&Stats) -> &Mutex<Vec<Duration>>, latency: Duration) {
        which(self)
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(latency);
    }

    /// The latencies recorded so far, sorted.
    fn take(&self, which: impl Fn(&Stats) -> &Mutex<Vec<Duration>>) -> Vec<Duration> {
        let mut all = std::mem::take(&mut *which(self).lock().unwrap_or_else(|p| p.into_inner()));
        all.sort_unstable();
        all
    }
}

async fn wait_for(counter: &AtomicU64, want: usize, limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        let n = counter.load(Ordering::Relaxed) as usize;
        if n >= want || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct SimAgent {
    index: usize,
    series: usize,
    interval: Duration,
    /// Offset of this agent's sends within the interval.
    phase: Duration,
}

struct Link {
    stream: TlsStream<TcpStream>,
    seq: u64,
    buf: Vec<u8>,
}

impl SimAgent {
    async fn run(
        self,
        tls: Arc<ClientConfig>,
        addr: SocketAddr,
        dial: Arc<Semaphore>,
        mut signal: watch::Receiver<Signal>,
        stats: Arc<Stats>,
    ) {
        let session = {
            let _permit = dial.acquire().await;
            self.connect(tls, addr).await
        };
        let mut link = match session {
            Ok(link) => link,
            Err(e) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                eprintln!("{}: {e}", agent_name(self.index));
                return;
            }
        };
        stats.connected.fetch_add(1, Ordering::Relaxed);
        let Ok(Signal::First(at)) = signal
            .wait_for(|s| matches!(s, Signal::First(_)))
            .await
            .map(|s| *s)
        else {
            return;
        };
        tokio::time::sleep_until(at + self.phase).await;
        let first = self.send(&mut link).await;
        stats.first_done.fetch_add(1, Ordering::Relaxed);
        match first {
            Ok(latency) => stats.record(|s| &s.first, latency),
            Err(e) => return self.failed(&stats, link.seq, &e),
        }
        let Ok(Signal::Steady(began, until)) = signal
            .wait_for(|s| matches!(s, Signal::Steady(..)))
            .await
            .map(|s| *s)
        else {
            return;
        };
        let mut next = began + self.phase;
        while next < until {
            tokio::time::sleep_until(next).await;
            next += self.interval;
            match self.send(&mut link).await {
                Ok(latency) => stats.record(|s| &s.steady, latency),
                Err(e) => return self.failed(&stats, link.seq, &e),
            }
        }
        let bye = AgentMessage::Bye {
            reason: "load test done".into(),
        };
        let _ = codec::write_message(&mut link.stream, &bye).await;
    }

    fn failed(&self, stats: &Stats, seq: u64, e: &str) {
        stats.failures.fetch_add(1, Ordering::Relaxed);
        eprintln!("{}: batch {seq}: {e}", agent_name(self.index));
    }

    /// Sends the next batch and waits for its Ack; returns the latency.
    async fn send(&self, link: &mut Link) -> Result<Duration, String> {
        link.seq += 1;
        let seq = link.seq;
        let batch = self.batch(seq);
        let sent = Instant::now();
        let acked = async {
            codec::write_message(&mut link.stream, &batch).await?;
            codec::read_message::<_, CollectorMessage>(&mut link.stream, 1 << 20, &mut link.buf)
                .await
        };
        match tokio::time::timeout(Duration::from_secs(30), acked).await {
            Ok(Ok(Some(CollectorMessage::Ack { seq: s }))) if s == seq => Ok(sent.elapsed()),
            Err(_) => Err("no Ack within 30 s".into()),
            Ok(other) => Err(format!("{other:?}")),
        }
    }

    async fn connect(&self, tls: Arc<ClientConfig>, addr: SocketAddr) -> Result<Link, String> {
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
            Some(CollectorMessage::Welcome(w)) => Ok(Link {
                stream,
                seq: w.last_applied_seq,
                buf,
            }),
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

/// User plus system CPU seconds from a /proc `stat` file (a process's,
/// every thread, or one thread's).
fn cpu_seconds(stat_path: &str) -> f64 {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    // After the command name, which may hold spaces: utime and stime are
    // the 14th and 15th fields.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
        .sum();
    ticks / rustix::param::clock_ticks_per_second() as f64
}

/// CPU seconds of each live thread of `pid`, by thread id, with its name.
fn thread_cpu(pid: u32) -> Vec<(String, String, f64)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .map(|t| {
            let path = t.path();
            let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            let cpu = cpu_seconds(&path.join("stat").to_string_lossy());
            let tid = t.file_name().to_string_lossy().into_owned();
            (tid, name.trim().to_owned(), cpu)
        })
        .collect()
}

/// The collector's CPU over the steady phase by thread name: which part
/// of it works (threads that ended in between are missing).
fn print_thread_cpu(before: &[(String, String, f64)], after: &[(String, String, f64)]) {
    let mut by_name: Vec<(String, f64, usize)> = Vec::new();
    for (tid, name, cpu) in after {
        let was = before
            .iter()
            .find(|(t, ..)| t == tid)
            .map_or(0.0, |(.., c)| *c);
        match by_name.iter_mut().find(|(n, ..)| n == name) {
            Some(entry) => {
                entry.1 += cpu - was;
                entry.2 += 1;
            }
            None => by_name.push((name.clone(), cpu - was, 1)),
        }
    }
    by_name.sort_by(|a, b| b.1.total_cmp(&a.1));
    let parts: Vec<String> = by_name
        .iter()
        .filter(|(_, cpu, _)| *cpu >= 0.05)
        .map(|(name, cpu, n)| format!("{name} ×{n} {cpu:.1} s"))
        .collect();
    println!("  collector CPU by thread: {}", parts.join(", "));
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
