//! One agent connection, from the TLS handshake to its end: Hello, Welcome,
//! then batches acked as they are stored and heartbeats answered.
//!
//! A batch is acked once its inspection records and file-integrity events
//! ([`Store::record`]) and then its samples ([`Store::append`]) are durable:
//! both run in one blocking step, and an error in either leaves the batch
//! unacked, so the agent sends it again.

use std::sync::Arc;

use patrol_shared::codec::{self, FrameError};
use patrol_shared::model::{now_ms, Label};
use patrol_shared::protocol::{
    AgentMessage, Batch, CollectorMessage, Entry, Hello, Welcome, PROTOCOL_VERSION,
};
use patrol_shared::tls::RevocationList;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::stamp::{self, Rejected};
use super::{handshake, IngestContext, Peer};
use crate::storage::{Appended, BatchRecords, StampedBatch, Store, FIM_EVENT_KIND};

/// Largest frame buffer a session keeps between frames.
const KEPT_BUFFER_BYTES: usize = 4096;

/// Why a session ended; logged once.
enum End {
    Bye(String),
    Closed,
    Shutdown,
    /// A refusal before Welcome: counted as a refused connection.
    Refused(&'static str, String),
    /// A bad frame after Welcome.
    BadFrame(&'static str, String),
    IdleTimeout,
    /// The revocation list now names this agent's certificate.
    Revoked(String),
    Storage(String),
    Io(String),
}

/// Serves one connection to its end.
pub async fn run(ctx: Arc<IngestContext>, tcp: TcpStream, peer: Peer, cancel: CancellationToken) {
    // Subscribed before the handshake: a revocation that lands while it
    // runs is seen by the check below or by the session's watch.
    let mut revoked = ctx.credentials.revoked();
    let accepted = handshake::accept(&ctx, tcp).await.and_then(|(tls, id)| {
        if revoked.borrow_and_update().revokes(&id.serial) {
            Err(handshake::revoked(&id))
        } else {
            Ok((tls, id))
        }
    });
    let (mut tls, identity) = match accepted {
        Ok(pair) => pair,
        Err(refusal) => {
            ctx.telemetry.refuse(refusal.reason);
            warn!(%peer, reason = refusal.reason, detail = %refusal.detail, "connection refused");
            return;
        }
    };
    let mut session = Session {
        ctx: &ctx,
        peer,
        host: identity.host,
        serial: identity.serial,
        revoked,
        buf: Vec::new(),
        static_labels: Vec::new(),
    };
    let end = session.serve(&mut tls, &cancel).await;
    session.finish(&mut tls, end).await;
}

struct Session<'a> {
    ctx: &'a IngestContext,
    peer: Peer,
    host: String,
    serial: Vec<u8>,
    revoked: watch::Receiver<Arc<RevocationList>>,
    buf: Vec<u8>,
    static_labels: Vec<Label>,
}

impl Session<'_> {
    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        cancel: &CancellationToken,
    ) -> End {
        let hello = match self.read_hello(io).await {
            Ok(hello) => hello,
            Err(end) => return end,
        };
        self.static_labels = stamp::usable_static_labels(&hello.labels);
        let welcome = CollectorMessage::Welcome(Welcome {
            protocol_version: PROTOCOL_VERSION,
            server_time_ms: now_ms(),
            host: self.host.clone(),
            last_applied_seq: self.ctx.store.last_applied(&self.host, hello.stream_id),
        });
        if let Err(e) = codec::write_message(io, &welcome).await {
            return End::Io(e.to_string());
        }
        self.ctx.telemetry.connections_accepted.inc();
        self.ctx.telemetry.connected_agents.inc();
        info!(host = %self.host, peer = %self.peer, agent_version = %hello.agent_version,
              claimed_hostname = %hello.hostname, stream = hello.stream_id, "agent connected");
        let end = self.stream(io, hello.stream_id, cancel).await;
        self.ctx.telemetry.connected_agents.dec();
        end
    }

    /// Reads the first frame, which must be a Hello of a version we speak.
    async fn read_hello<S: AsyncRead + Unpin>(&mut self, io: &mut S) -> Result<Hello, End> {
        let limits = &self.ctx.limits;
        let read = codec::read_payload(io, limits.max_frame_bytes, &mut self.buf);
        match tokio::time::timeout(limits.hello_timeout, read).await {
            Err(_) => {
                return Err(End::Refused(
                    "hello_timeout",
                    format!("no Hello within {:?}", limits.hello_timeout),
                ))
            }
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return Err(End::Refused("no_hello", "closed before Hello".into())),
            Ok(Err(e)) => return Err(End::Refused(e.reason(), e.to_string())),
        }
        self.count_frame();
        match codec::decode_payload::<AgentMessage>(&self.buf) {
            Ok(AgentMessage::Hello(hello)) if codec::version_supported(hello.protocol_version) => {
                Ok(hello)
            }
            Ok(AgentMessage::Hello(hello)) => Err(unsupported(hello.protocol_version)),
            Ok(_) => Err(End::Refused(
                "no_hello",
                "first message was not Hello".into(),
            )),
            Err(e) => match codec::peek_hello_version(&self.buf) {
                Some(v) if !codec::version_supported(v) => Err(unsupported(v)),
                _ => Err(End::Refused(e.reason(), e.to_string())),
            },
        }
    }

    /// Batches and heartbeats until the agent leaves or something breaks.
    async fn stream<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        stream_id: u64,
        cancel: &CancellationToken,
    ) -> End {
        let limits = self.ctx.limits.clone();
        loop {
            let got = {
                let read = codec::read_payload(io, limits.max_frame_bytes, &mut self.buf);
                let read = tokio::time::timeout(limits.idle_timeout, read);
                tokio::pin!(read);
                // The read is kept across revocation-list changes: dropping
                // it halfway through a frame would lose the bytes read.
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return End::Shutdown,
                        Ok(()) = self.revoked.changed() => {
                            if self.revoked.borrow_and_update().revokes(&self.serial) {
                                return End::Revoked(patrol_shared::tls::serial_hex(&self.serial));
                            }
                        }
                        r = &mut read => break r,
                    }
                }
            };
            match got {
                Err(_) => return End::IdleTimeout,
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => return End::Closed,
                Ok(Err(FrameError::Io(e))) => return End::Io(e.to_string()),
                Ok(Err(e)) => return End::BadFrame(e.reason(), e.to_string()),
            }
            self.count_frame();
            let reply = match codec::decode_payload::<AgentMessage>(&self.buf) {
                Err(e) => return End::BadFrame(e.reason(), e.to_string()),
                Ok(AgentMessage::Batch(batch)) => match self.apply(stream_id, batch).await {
                    Ok(seq) => CollectorMessage::Ack { seq },
                    Err(end) => return end,
                },
                Ok(AgentMessage::Heartbeat) => CollectorMessage::Heartbeat,
                Ok(AgentMessage::Bye { reason }) => return End::Bye(reason),
                Ok(AgentMessage::Hello(_)) => {
                    return End::BadFrame("unexpected_hello", "second Hello".into());
                }
            };
            if let Err(e) = codec::write_message(io, &reply).await {
                return End::Io(e.to_string());
            }
            // An agent sends a batch every few seconds and is idle between:
            // a batch-sized buffer kept by every connection would be most of
            // the collector's memory per agent.
            if self.buf.capacity() > KEPT_BUFFER_BYTES {
                self.buf = Vec::new();
            }
        }
    }

    /// Stamps and stores one batch; returns the seq to ack.
    async fn apply(&mut self, stream_id: u64, batch: Batch) -> Result<u64, End> {
        let seq = batch.seq;
        let mut rejected = Rejected::default();
        let mut sets = Vec::new();
        let mut records = BatchRecords {
            host: self.host.clone(),
            stream_id,
            seq,
            ..BatchRecords::default()
        };
        for entry in batch.entries {
            match entry {
                Entry::Samples(set) => sets.push(stamp::stamp(
                    &self.host,
                    &self.static_labels,
                    set,
                    &mut rejected,
                )),
                Entry::Event(event) => {
                    info!(host = %self.host, kind = %event.kind, message = %event.message, "agent event");
                    if event.kind == FIM_EVENT_KIND {
                        records.fim_events.push(event);
                    }
                }
                Entry::Inspection(inspection) => {
                    debug!(
                        host = %self.host,
                        checks = inspection.results.len(),
                        score = ?inspection.score,
                        "inspection received"
                    );
                    records.inspections.push(inspection);
                }
            }
        }
        for (reason, n) in rejected.counts {
            self.ctx
                .telemetry
                .samples_rejected
                .get_or_create(&crate::telemetry::ReasonLabel { reason })
                .inc_by(n);
        }
        let stamped = StampedBatch {
            host: self.host.clone(),
            stream_id,
            seq,
            sets,
        };
        let store = self.ctx.store.clone();
        let outcome = tokio::task::spawn_blocking(move || store_batch(&*store, records, stamped))
            .await
            .map_err(|e| End::Storage(format!("store task failed: {e}")))?;
        match outcome {
            Ok(Appended::Applied { samples }) => {
                self.ctx.telemetry.batch("applied");
                self.ctx.telemetry.samples_ingested.inc_by(samples as u64);
            }
            Ok(Appended::Duplicate) => {
                self.ctx.telemetry.batch("duplicate");
                debug!(host = %self.host, seq, "replayed batch dropped");
            }
            Err(e) => {
                self.ctx.telemetry.batch("failed");
                return Err(End::Storage(e.to_string()));
            }
        }
        Ok(seq)
    }

    fn count_frame(&self) {
        self.ctx.telemetry.frames_received.inc();
        self.ctx
            .telemetry
            .bytes_received
            .inc_by(self.buf.len() as u64 + 4);
    }

    /// Logs and counts how the session ended, and says Bye where that helps.
    async fn finish<S: AsyncWrite + Unpin>(&self, io: &mut S, end: End) {
        let (host, peer) = (&self.host, self.peer);
        let bye = match end {
            End::Bye(reason) => {
                info!(%host, %peer, %reason, "agent disconnected");
                None
            }
            End::Closed => {
                info!(%host, %peer, "agent disconnected: connection closed");
                None
            }
            End::Shutdown => Some("collector shutting down".to_owned()),
            End::Refused(reason, detail) => {
                self.ctx.telemetry.refuse(reason);
                warn!(%host, %peer, reason, %detail, "connection refused");
                Some(detail)
            }
            End::BadFrame(reason, detail) => {
                self.ctx.telemetry.bad_frame(reason);
                warn!(%host, %peer, reason, %detail, "bad frame; closing connection");
                Some(format!("bad frame: {detail}"))
            }
            End::IdleTimeout => {
                warn!(%host, %peer, timeout = ?self.ctx.limits.idle_timeout, "agent idle; closing connection");
                Some("idle timeout".to_owned())
            }
            End::Revoked(serial) => {
                self.ctx.telemetry.refuse("certificate_revoked");
                warn!(%host, %peer, %serial, "certificate revoked; closing the agent's session");
                Some(format!("certificate (serial {serial}) is revoked"))
            }
            End::Storage(detail) => {
                warn!(%host, %peer, %detail, "cannot store batch; closing connection so the agent keeps it");
                Some(format!("collector cannot store data now: {detail}"))
            }
            End::Io(detail) => {
                info!(%host, %peer, %detail, "agent disconnected: i/o error");
                None
            }
        };
        if let Some(reason) = bye {
            let msg = CollectorMessage::Bye { reason };
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(1),
                codec::write_message(io, &msg),
            )
            .await;
        }
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            tokio::io::AsyncWriteExt::shutdown(io),
        )
        .await;
    }
}

/// Records first, then samples: see [`Store::record`] for why this order
/// keeps every acked batch's records exactly once.
fn store_batch(
    store: &dyn Store,
    records: BatchRecords,
    stamped: StampedBatch,
) -> Result<Appended, crate::storage::StoreError> {
    let (host, seq) = (records.host.clone(), records.seq);
    let kept = store.record(records)?;
    if kept > 0 {
        debug!(%host, seq, records = kept, "inspection and file-integrity records stored");
    }
    store.append(stamped)
}

fn unsupported(version: u16) -> End {
    End::Refused(
        "unsupported_version",
        format!(
            "unsupported protocol version {version}; this collector speaks version {PROTOCOL_VERSION}"
        ),
    )
}
