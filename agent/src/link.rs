//! The link to the collector: dial (failing over through the listed
//! addresses in order), TLS, Hello/Welcome, then stream the spool's batches
//! with a window of unacknowledged ones, answer-checked heartbeats, and
//! reconnect with capped exponential backoff and jitter when anything breaks.
//!
//! Every connection attempt starts from the first address listed. While
//! connected to a later one, the earlier ones are tried every `failback`;
//! when one answers, the batches in flight are acknowledged first and the
//! link moves over (a primary/standby pair returns to the primary).
//!
//! The TLS client settings are read again from their files when those
//! change ([`ClientTls`]), so a renewed certificate is used from the next
//! connection on without a restart.
//!
//! The operator sees one log line per change of state, never one per retry.

use std::collections::VecDeque;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use patrol_shared::codec::{self, FrameError};
use patrol_shared::protocol::{AgentMessage, CollectorMessage, Hello, PROTOCOL_VERSION};
use patrol_shared::tls::TlsFiles;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::{split_host_port, CollectorLink};
use crate::spool::Spool;

/// Largest frame the agent accepts from the collector (acks are tiny).
const MAX_COLLECTOR_FRAME: usize = 1 << 20;
/// First wait before reconnecting.
const BACKOFF_START: Duration = Duration::from_millis(500);

/// Counters the agent reports about its link.
#[derive(Debug, Default)]
pub struct LinkCounters {
    pub connected: AtomicBool,
    pub connections: AtomicU64,
    pub batches_sent: AtomicU64,
}

/// Everything the link needs.
pub struct Link {
    pub config: CollectorLink,
    pub tls: ClientTls,
    pub spool: Arc<Spool>,
    pub hello: Hello,
    pub counters: Arc<LinkCounters>,
}

/// Why a connection attempt or a session ended.
enum Failure {
    /// Could not reach or handshake with any collector.
    Unreachable(String),
    /// The collector said no (Bye before Welcome, or a version we don't speak).
    Refused(String),
    /// An established session ended.
    Lost(String),
    Shutdown,
    /// A collector listed before the one in use answered: move to it.
    Failback(usize, Box<TlsStream<TcpStream>>),
}

/// A connection to the collector listed at this position.
type Dialled = (usize, Box<TlsStream<TcpStream>>);

/// The agent's TLS client settings, built from its files (CA, certificate,
/// key) and built again when any of them changes: each connection attempt
/// looks at the files' inode, size and mtime. Files that changed but do not
/// load (half written, key not matching) are logged once and the previous
/// settings kept, to be tried again at the next attempt.
pub struct ClientTls {
    files: TlsFiles,
    loaded: Mutex<Loaded>,
}

/// What identifies a version of a file without reading it.
type Stamp = [Option<(u64, Option<SystemTime>, u64)>; 3];

struct Loaded {
    stamp: Stamp,
    config: Arc<ClientConfig>,
    failed: Option<String>,
}

impl ClientTls {
    /// `config` is what `files` hold now (loaded by the caller, who
    /// refuses to start without it).
    pub fn new(files: TlsFiles, config: Arc<ClientConfig>) -> ClientTls {
        ClientTls {
            loaded: Mutex::new(Loaded {
                stamp: stamp(&files),
                config,
                failed: None,
            }),
            files,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Loaded> {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The settings for the next connection.
    async fn current(&self) -> Arc<ClientConfig> {
        let files = self.files.clone();
        let before = self.lock().stamp;
        let fresh = tokio::task::spawn_blocking(move || {
            let now = stamp(&files);
            (now != before).then(|| (now, patrol_shared::tls::client_config(&files)))
        })
        .await
        .ok()
        .flatten();
        let mut loaded = self.lock();
        match fresh {
            None => {}
            Some((now, Ok(config))) => {
                info!(cert = %self.files.cert.display(), "TLS files changed; connecting with them from now on");
                *loaded = Loaded {
                    stamp: now,
                    config,
                    failed: None,
                };
            }
            Some((_, Err(e))) => {
                let why = e.to_string();
                if loaded.failed.as_ref() != Some(&why) {
                    warn!(error = %why, "TLS files changed but cannot be used; connecting with the previous ones");
                    loaded.failed = Some(why);
                }
            }
        }
        loaded.config.clone()
    }
}

fn stamp(files: &TlsFiles) -> Stamp {
    [&files.ca, &files.cert, &files.key].map(|path| {
        std::fs::metadata(path)
            .ok()
            .map(|m| (m.ino(), m.modified().ok(), m.len()))
    })
}

impl Link {
    /// Runs until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) {
        let mut backoff = BACKOFF_START;
        let mut last_logged: Option<String> = None;
        while !cancel.is_cancelled() {
            let failure = self.connect_and_stream(&cancel).await;
            let (line, connected_before) = match &failure {
                Failure::Shutdown => break,
                // Handled inside connect_and_stream; never seen here.
                Failure::Failback(..) => continue,
                Failure::Lost(why) => (format!("lost: {why}"), true),
                Failure::Unreachable(why) => (format!("unreachable: {why}"), false),
                Failure::Refused(why) => (format!("refused: {why}"), false),
            };
            if connected_before {
                backoff = BACKOFF_START;
                warn!(reason = %line, "collector link down; reconnecting");
                last_logged = Some(line);
            } else if last_logged.as_deref() != Some(line.as_str()) {
                match failure {
                    Failure::Refused(_) => {
                        error!(reason = %line, "collector refused this agent; retrying with backoff")
                    }
                    _ => warn!(reason = %line, max_backoff = ?self.config.backoff_max,
                               "cannot reach collector; retrying with backoff (batches are kept)"),
                }
                last_logged = Some(line);
            } else {
                debug!(reason = %line, "collector still unavailable");
            }
            // Full jitter in the upper half, so many agents do not return in step.
            let wait = backoff.mul_f64(0.5 + fastrand::f64() * 0.5);
            backoff = (backoff * 2).min(self.config.backoff_max);
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Tries each address in order; streams on the first that accepts us,
    /// and moves on to a preferred one when it comes back.
    async fn connect_and_stream(&self, cancel: &CancellationToken) -> Failure {
        let targets = self.config.targets();
        let mut next = None;
        loop {
            let (at, tls) = match next.take() {
                Some(dialled) => dialled,
                None => {
                    let dialled = tokio::select! {
                        _ = cancel.cancelled() => return Failure::Shutdown,
                        d = self.dial_first(&targets, targets.len()) => d,
                    };
                    match dialled {
                        Ok(d) => d,
                        Err(why) => return Failure::Unreachable(why),
                    }
                }
            };
            match self.session(&targets, at, tls, cancel).await {
                Failure::Failback(to, tls) => {
                    info!(from = %targets[at], to = %targets[to], "a preferred collector answers again; moving back to it");
                    next = Some((to, tls));
                }
                other => return other,
            }
        }
    }

    /// The first of `targets[..upto]` that accepts a TLS connection.
    async fn dial_first(&self, targets: &[String], upto: usize) -> Result<Dialled, String> {
        let mut reasons = Vec::new();
        for (i, addr) in targets.iter().take(upto).enumerate() {
            match self.dial(addr).await {
                Ok(tls) => return Ok((i, Box::new(tls))),
                Err(why) => reasons.push(format!("{addr}: {why}")),
            }
        }
        Err(reasons.join("; "))
    }

    /// While connected to `targets[at]`: every `failback`, tries the ones
    /// before it. Never resolves for the first, or with failback off.
    async fn failback_probe(&self, targets: &[String], at: usize) -> Dialled {
        if at == 0 || self.config.failback.is_zero() {
            return std::future::pending().await;
        }
        loop {
            tokio::time::sleep(self.config.failback).await;
            match self.dial_first(targets, at).await {
                Ok(dialled) => return dialled,
                Err(why) => debug!(reason = %why, "preferred collectors still unreachable"),
            }
        }
    }

    /// TCP connect and TLS handshake, each within the connect timeout.
    async fn dial(&self, addr: &str) -> Result<TlsStream<TcpStream>, String> {
        let timeout = self.config.connect_timeout;
        let (host, _) = split_host_port(addr).ok_or("not host:port")?;
        let name = self
            .config
            .server_name
            .as_deref()
            .unwrap_or(host)
            .to_owned();
        let server_name =
            ServerName::try_from(name.clone()).map_err(|e| format!("server name {name:?}: {e}"))?;
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("no TCP connection within {timeout:?}"))?
            .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let connector = TlsConnector::from(self.tls.current().await);
        tokio::time::timeout(timeout, connector.connect(server_name, tcp))
            .await
            .map_err(|_| format!("no TLS handshake within {timeout:?}"))?
            .map_err(|e| format!("TLS: {e}"))
    }

    /// Hello/Welcome, then stream until the session ends.
    async fn session(
        &self,
        targets: &[String],
        at: usize,
        mut tls: Box<TlsStream<TcpStream>>,
        cancel: &CancellationToken,
    ) -> Failure {
        let welcome = match self.greet(&mut tls).await {
            Ok(w) => w,
            Err(f) => return f,
        };
        // What the collector already has leaves the spool unsent.
        self.spool.ack(welcome.last_applied_seq).await;
        self.counters.connected.store(true, Ordering::Relaxed);
        self.counters.connections.fetch_add(1, Ordering::Relaxed);
        info!(collector = %targets[at], host = %welcome.host, stream = self.hello.stream_id,
              "connected to collector");
        let (reader, writer) = tokio::io::split(*tls);
        let (tx, rx) = mpsc::channel(64);
        let read_task = tokio::spawn(read_messages(reader, tx));
        let end = Streamer {
            link: self,
            writer,
            rx,
            last_sent: welcome.last_applied_seq,
            unacked: VecDeque::new(),
        }
        .run(targets, at, cancel)
        .await;
        read_task.abort();
        self.counters.connected.store(false, Ordering::Relaxed);
        end
    }

    async fn greet(
        &self,
        tls: &mut TlsStream<TcpStream>,
    ) -> Result<patrol_shared::protocol::Welcome, Failure> {
        let lost = |e: FrameError| Failure::Unreachable(e.to_string());
        codec::write_message(tls, &AgentMessage::Hello(self.hello.clone()))
            .await
            .map_err(lost)?;
        let mut buf = Vec::new();
        let reply = tokio::time::timeout(
            self.config.connect_timeout,
            codec::read_message::<_, CollectorMessage>(tls, MAX_COLLECTOR_FRAME, &mut buf),
        )
        .await
        .map_err(|_| Failure::Unreachable("no Welcome in time".into()))?
        .map_err(lost)?;
        match reply {
            Some(CollectorMessage::Welcome(w)) if w.protocol_version == PROTOCOL_VERSION => Ok(w),
            Some(CollectorMessage::Welcome(w)) => {
                let reason = format!(
                    "unsupported protocol version {}; this agent speaks version {PROTOCOL_VERSION}",
                    w.protocol_version
                );
                let bye = AgentMessage::Bye {
                    reason: reason.clone(),
                };
                let _ = codec::write_message(tls, &bye).await;
                Err(Failure::Refused(reason))
            }
            Some(CollectorMessage::Bye { reason }) => Err(Failure::Refused(reason)),
            Some(other) => Err(Failure::Unreachable(format!(
                "expected Welcome, got {other:?}"
            ))),
            None => Err(Failure::Unreachable(
                "collector closed the connection after Hello".into(),
            )),
        }
    }
}

/// Reads the collector's messages into a channel, so the streaming loop can
/// wait on them together with new batches without losing half-read frames.
async fn read_messages(
    mut reader: ReadHalf<TlsStream<TcpStream>>,
    tx: mpsc::Sender<Result<Option<CollectorMessage>, FrameError>>,
) {
    let mut buf = Vec::new();
    loop {
        let msg = codec::read_message(&mut reader, MAX_COLLECTOR_FRAME, &mut buf).await;
        let done = !matches!(msg, Ok(Some(_)));
        if tx.send(msg).await.is_err() || done {
            return;
        }
    }
}

/// The streaming half of a session.
struct Streamer<'a> {
    link: &'a Link,
    writer: WriteHalf<TlsStream<TcpStream>>,
    rx: mpsc::Receiver<Result<Option<CollectorMessage>, FrameError>>,
    last_sent: u64,
    unacked: VecDeque<u64>,
}

impl Streamer<'_> {
    async fn run(mut self, targets: &[String], at: usize, cancel: &CancellationToken) -> Failure {
        let link = self.link;
        let heartbeat = link.config.heartbeat;
        let mut last_rx = Instant::now();
        let mut last_tx = Instant::now();
        let probe = link.failback_probe(targets, at);
        tokio::pin!(probe);
        // A preferred collector that answered, and until when the batches
        // in flight here may take to be acked before moving to it.
        let mut moving: Option<(Dialled, Instant)> = None;
        loop {
            if let Some((_, until)) = &moving {
                if self.unacked.is_empty() || Instant::now() >= *until {
                    let bye = AgentMessage::Bye {
                        reason: "moving to a preferred collector".into(),
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(1), self.write(&bye)).await;
                    let _ = self.writer.shutdown().await;
                    if let Some(((to, tls), _)) = moving.take() {
                        return Failure::Failback(to, tls);
                    }
                }
            } else if let Err(f) = self.send_window(&mut last_tx).await {
                return f;
            }
            let window_open = moving.is_none() && self.in_flight() < link.config.window;
            let mut next_check = (last_tx + heartbeat).min(last_rx + heartbeat * 3);
            if let Some((_, until)) = &moving {
                next_check = next_check.min(*until);
            }
            tokio::select! {
                _ = cancel.cancelled() => {
                    let bye = AgentMessage::Bye { reason: "agent shutting down".into() };
                    let _ = tokio::time::timeout(Duration::from_secs(1), self.write(&bye)).await;
                    let _ = self.writer.shutdown().await;
                    return Failure::Shutdown;
                }
                dialled = &mut probe, if moving.is_none() => {
                    moving = Some((dialled, Instant::now() + link.config.connect_timeout));
                }
                _ = link.spool.wait_for_push(), if window_open => {}
                msg = self.rx.recv() => {
                    last_rx = Instant::now();
                    match msg {
                        Some(Ok(Some(CollectorMessage::Ack { seq }))) => {
                            link.spool.ack(seq).await;
                            while self.unacked.front().is_some_and(|s| *s <= seq) {
                                self.unacked.pop_front();
                            }
                        }
                        Some(Ok(Some(CollectorMessage::Heartbeat))) => {}
                        Some(Ok(Some(CollectorMessage::Bye { reason }))) => {
                            return Failure::Lost(format!("collector said: {reason}"));
                        }
                        Some(Ok(Some(CollectorMessage::Welcome(_)))) => {
                            return Failure::Lost("unexpected second Welcome".into());
                        }
                        Some(Ok(None)) | None => return Failure::Lost("connection closed".into()),
                        Some(Err(e)) => return Failure::Lost(e.to_string()),
                    }
                }
                _ = tokio::time::sleep_until(next_check) => {
                    if last_rx.elapsed() >= heartbeat * 3 {
                        return Failure::Lost(format!("no answer from collector for {:?}", heartbeat * 3));
                    }
                    if last_tx.elapsed() >= heartbeat {
                        if let Err(f) = self.write(&AgentMessage::Heartbeat).await {
                            return f;
                        }
                        last_tx = Instant::now();
                    }
                }
            }
        }
    }

    /// Counted from the seqs sent, not by subtraction: batches dropped from
    /// a full spool leave gaps in the numbering.
    fn in_flight(&self) -> usize {
        self.unacked.len()
    }

    /// Sends queued batches while the window has room.
    async fn send_window(&mut self, last_tx: &mut Instant) -> Result<(), Failure> {
        while self.in_flight() < self.link.config.window {
            let Some(next) = self.link.spool.next_after(self.last_sent).await else {
                return Ok(());
            };
            self.write_raw(&next.frame).await?;
            self.last_sent = next.seq;
            self.unacked.push_back(next.seq);
            *last_tx = Instant::now();
            self.link
                .counters
                .batches_sent
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn write(&mut self, msg: &AgentMessage) -> Result<(), Failure> {
        let frame = codec::encode_frame(msg).map_err(|e| Failure::Lost(e.to_string()))?;
        self.write_raw(&frame).await
    }

    async fn write_raw(&mut self, frame: &[u8]) -> Result<(), Failure> {
        let timeout = self.link.config.heartbeat * 3;
        let write = async {
            self.writer.write_all(frame).await?;
            self.writer.flush().await
        };
        tokio::time::timeout(timeout, write)
            .await
            .map_err(|_| Failure::Lost(format!("write stalled for {timeout:?}")))?
            .map_err(|e| Failure::Lost(e.to_string()))
    }
}
