//! Delivery: the [`Outbox`] handle that queues notifications (durably,
//! before anything is sent) and the [`Worker`] task that sends them.
//!
//! The worker holds every pending notification: those the store had when
//! it started (queued before a restart) and those queued since. It posts
//! each to its receiver, and removes it from the store only once the
//! receiver answered 2xx (and, for the chat robots, no error code in the
//! body). A failure is retried after an exponential backoff with jitter
//! (`backoff_initial`, doubling, at most `backoff_max`, each wait between
//! half and all of that) until `deadline` after it was queued: one last
//! attempt is made at the deadline, and if that fails the notification is
//! given up. Every attempt is recorded in the store's delivery log and
//! counted in `patrol_notifications_total`.
//!
//! Notifications of the same group to the same receiver go out in the
//! order they were queued: a newer one waits while an older one retries,
//! so a receiver never sees a group's resolution before its firing.
//! Different groups and receivers do not wait for each other
//! (`concurrency` requests at once).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::config::{DeliveryConfig, NotifyConfig, ReceiverConfig};
use super::metrics::NotificationCounters;
use super::outbox::{Attempt, OutboxError, OutboxId, OutboxRecord, OutboxStore, Outcome};
use super::payload::Notification;
use super::receivers::{self, Context};
use super::{transport, Clock, NotifyError};

/// Notifications queued but not yet taken by the worker.
const QUEUE: usize = 256;
/// How long the worker sleeps with nothing due; a new notification or an
/// answer wakes it sooner.
const IDLE: Duration = Duration::from_secs(3600);

/// Queues notifications; cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    store: Arc<dyn OutboxStore>,
    tx: mpsc::Sender<OutboxRecord>,
    ids: Arc<AtomicU64>,
    clock: Clock,
}

impl Outbox {
    /// Writes the notification to the store, then hands it to the worker.
    /// Once this returns it survives a restart.
    pub async fn enqueue(&self, notification: Notification) -> Result<OutboxId, OutboxError> {
        let now = (self.clock)();
        let record = OutboxRecord {
            id: next_id(&self.ids, now),
            queued_at: now,
            notification,
        };
        let (store, copy) = (self.store.clone(), record.clone());
        blocking(move || store.put(&copy)).await?;
        let id = record.id;
        // Without a worker (shutting down) the record waits in the store
        // for the next start.
        let _ = self.tx.send(record).await;
        Ok(id)
    }
}

/// An id above every id handed out so far, and above `now` in µs so ids
/// from an earlier run (which ended before now) stay below.
fn next_id(last: &AtomicU64, now_ms: i64) -> OutboxId {
    let floor = u64::try_from(now_ms).unwrap_or(0).saturating_mul(1000);
    let previous = last
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| {
            Some(l.saturating_add(1).max(floor))
        })
        .unwrap_or(0);
    previous.saturating_add(1).max(floor)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, OutboxError> + Send + 'static,
) -> Result<T, OutboxError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| OutboxError::Unavailable(format!("store task failed: {e}")))?
}

/// A receiver and its TLS client.
struct Endpoint {
    receiver: ReceiverConfig,
    tls: Option<TlsConnector>,
}

struct Pending {
    record: Arc<OutboxRecord>,
    /// Attempts made since this worker started.
    attempts: u32,
    next_at: i64,
    in_flight: bool,
}

/// What one attempt came to.
struct Done {
    id: OutboxId,
    at: i64,
    status: Option<u16>,
    error: Option<String>,
    /// No later attempt can succeed (the receiver is gone, the message
    /// cannot be rendered).
    permanent: bool,
}

/// Sends what the outbox holds; see the module comment.
pub struct Worker {
    store: Arc<dyn OutboxStore>,
    endpoints: BTreeMap<String, Arc<Endpoint>>,
    settings: DeliveryConfig,
    external_url: Arc<str>,
    counters: Arc<NotificationCounters>,
    clock: Clock,
    rx: mpsc::Receiver<OutboxRecord>,
    pending: BTreeMap<OutboxId, Pending>,
}

/// Loads what the store holds and sets up each receiver's TLS client; the
/// queue handle and the worker to run.
pub async fn open(
    config: &NotifyConfig,
    store: Arc<dyn OutboxStore>,
    counters: Arc<NotificationCounters>,
    clock: Clock,
) -> Result<(Outbox, Worker), NotifyError> {
    let mut endpoints = BTreeMap::new();
    for receiver in &config.receivers {
        let tls = transport::tls_for(receiver).map_err(|reason| NotifyError::Tls {
            receiver: receiver.name.clone(),
            reason,
        })?;
        let endpoint = Endpoint {
            receiver: receiver.clone(),
            tls,
        };
        endpoints.insert(receiver.name.clone(), Arc::new(endpoint));
    }
    let listing = store.clone();
    let records = blocking(move || listing.list()).await?;
    let now = clock();
    let ids = Arc::new(AtomicU64::new(
        records.iter().map(|r| r.id).max().unwrap_or(0),
    ));
    let pending = records
        .into_iter()
        .map(|record| {
            let p = Pending {
                record: Arc::new(record),
                attempts: 0,
                next_at: now,
                in_flight: false,
            };
            (p.record.id, p)
        })
        .collect::<BTreeMap<_, _>>();
    if !pending.is_empty() {
        info!(
            pending = pending.len(),
            "notifications queued before the restart will be delivered"
        );
    }
    let (tx, rx) = mpsc::channel(QUEUE);
    let outbox = Outbox {
        store: store.clone(),
        tx,
        ids,
        clock: clock.clone(),
    };
    let worker = Worker {
        store,
        endpoints,
        settings: config.delivery.clone(),
        external_url: config.external_url.as_str().into(),
        counters,
        clock,
        rx,
        pending,
    };
    Ok((outbox, worker))
}

/// The wait after `attempts` failures: `initial · 2^(attempts-1)`, at most
/// `max`, scaled by `0.5 + jitter/2` (`jitter` in 0..1) so that retries
/// spread out but never come sooner than half the backoff.
pub fn backoff(settings: &DeliveryConfig, attempts: u32, jitter: f64) -> Duration {
    let doublings = attempts.saturating_sub(1).min(32);
    let base = settings
        .backoff_initial
        .saturating_mul(1u32 << doublings.min(31))
        .min(settings.backoff_max);
    base.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0)
}

impl Worker {
    /// Runs until `cancel` fires. Attempts in flight then are dropped; their
    /// notifications stay in the store for the next start.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut in_flight: JoinSet<Done> = JoinSet::new();
        loop {
            self.start_due(&mut in_flight);
            let wait = if in_flight.len() >= self.settings.concurrency {
                // Full: an answer wakes the loop.
                IDLE
            } else {
                self.until_next_due()
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                Some(record) = self.rx.recv() => self.add(record),
                Some(done) = in_flight.join_next() => match done {
                    Ok(done) => self.finish(done).await,
                    Err(e) => error!(error = %e, "notification attempt task failed"),
                },
                _ = tokio::time::sleep(wait) => {}
            }
        }
        in_flight.abort_all();
    }

    fn add(&mut self, record: OutboxRecord) {
        let next_at = (self.clock)();
        let p = Pending {
            record: Arc::new(record),
            attempts: 0,
            next_at,
            in_flight: false,
        };
        self.pending.insert(p.record.id, p);
    }

    /// The oldest pending notification of each (receiver, group), when due
    /// and not already being sent.
    fn heads(&self) -> Vec<OutboxId> {
        let mut seen = BTreeSet::new();
        self.pending
            .values()
            .filter(|p| {
                let n = &p.record.notification;
                seen.insert((n.receiver.as_str(), n.group_key.as_str()))
            })
            .map(|p| p.record.id)
            .collect()
    }

    fn start_due(&mut self, in_flight: &mut JoinSet<Done>) {
        let now = (self.clock)();
        for id in self.heads() {
            if in_flight.len() >= self.settings.concurrency {
                return;
            }
            let Some(p) = self.pending.get_mut(&id) else {
                continue;
            };
            if p.in_flight || p.next_at > now {
                continue;
            }
            p.in_flight = true;
            let endpoint = self.endpoints.get(&p.record.notification.receiver).cloned();
            in_flight.spawn(attempt(
                endpoint,
                p.record.clone(),
                self.external_url.clone(),
                self.settings.timeout,
                self.clock.clone(),
            ));
        }
    }

    fn until_next_due(&self) -> Duration {
        let now = (self.clock)();
        self.heads()
            .iter()
            .filter_map(|id| self.pending.get(id))
            .filter(|p| !p.in_flight)
            .map(|p| Duration::from_millis(u64::try_from(p.next_at - now).unwrap_or(0)))
            .min()
            .unwrap_or(IDLE)
    }

    async fn finish(&mut self, done: Done) {
        let now = (self.clock)();
        let Some(p) = self.pending.get_mut(&done.id) else {
            return;
        };
        p.in_flight = false;
        p.attempts += 1;
        let deadline = p
            .record
            .queued_at
            .saturating_add(i64::try_from(self.settings.deadline.as_millis()).unwrap_or(i64::MAX));
        let outcome = match &done.error {
            None => Outcome::Delivered,
            Some(_) if done.permanent || now >= deadline => Outcome::GivenUp,
            Some(_) => Outcome::Failed,
        };
        let n = &p.record.notification;
        let log = Attempt {
            id: done.id,
            receiver: n.receiver.clone(),
            group_key: n.group_key.clone(),
            at: done.at,
            number: p.attempts,
            status: done.status,
            error: done.error.clone(),
            outcome,
        };
        self.counters.inc(&n.receiver, outcome);
        log_outcome(n, outcome, p.attempts, done.error.as_deref());
        if outcome == Outcome::Failed {
            let wait = backoff(&self.settings, p.attempts, fastrand::f64());
            let wait_ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
            p.next_at = now.saturating_add(wait_ms).min(deadline);
        } else {
            self.pending.remove(&done.id);
            let (store, id) = (self.store.clone(), done.id);
            if let Err(e) = blocking(move || store.remove(id)).await {
                error!(error = %e, id, "cannot remove a finished notification from the outbox; it may be sent again after a restart");
            }
        }
        let store = self.store.clone();
        if let Err(e) = blocking(move || store.record_attempt(&log)).await {
            warn!(error = %e, "cannot record a delivery attempt");
        }
    }
}

/// One line per change of a notification's state: the first failure, a
/// delivery after failures, giving up. Repeated failures only at debug.
fn log_outcome(n: &Notification, outcome: Outcome, attempts: u32, error: Option<&str>) {
    let (receiver, group) = (&n.receiver, &n.group_key);
    let error = error.unwrap_or_default();
    match outcome {
        Outcome::Delivered if attempts > 1 => {
            info!(%receiver, %group, attempts, "notification delivered after retrying");
        }
        Outcome::Delivered => debug!(%receiver, %group, "notification delivered"),
        Outcome::Failed if attempts == 1 => {
            warn!(%receiver, %group, %error, "notification delivery failed; retrying");
        }
        Outcome::Failed => {
            debug!(%receiver, %group, attempts, %error, "notification delivery failed again");
        }
        Outcome::GivenUp => {
            error!(%receiver, %group, attempts, %error, "notification given up");
        }
    }
}

/// One attempt: render at the attempt's time, post, judge the answer.
async fn attempt(
    endpoint: Option<Arc<Endpoint>>,
    record: Arc<OutboxRecord>,
    external_url: Arc<str>,
    timeout: Duration,
    clock: Clock,
) -> Done {
    let at = clock();
    let mut done = Done {
        id: record.id,
        at,
        status: None,
        error: None,
        permanent: false,
    };
    let Some(endpoint) = endpoint else {
        done.error = Some(format!(
            "receiver {:?} is no longer configured",
            record.notification.receiver
        ));
        done.permanent = true;
        return done;
    };
    let ctx = Context {
        external_url: &external_url,
        now_ms: at,
    };
    let request = match receivers::render(&endpoint.receiver, &record.notification, ctx) {
        Ok(r) => r,
        Err(e) => {
            done.error = Some(e);
            done.permanent = true;
            return done;
        }
    };
    match transport::post(&request, endpoint.tls.as_ref(), timeout).await {
        Ok(answer) => {
            done.status = Some(answer.status);
            if (200..300).contains(&answer.status) {
                if let Err(e) = receivers::check_accepted(&endpoint.receiver.kind, &answer.body) {
                    done.error = Some(e);
                }
            } else {
                let text = String::from_utf8_lossy(&answer.body);
                let snippet: String = text.trim().chars().take(200).collect();
                done.error = Some(format!("HTTP {}: {snippet}", answer.status));
            }
        }
        Err(e) => done.error = Some(e),
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_equal_jitter() {
        let s = DeliveryConfig {
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            ..DeliveryConfig::default()
        };
        let full: Vec<u64> = (1..=8).map(|n| backoff(&s, n, 1.0).as_secs()).collect();
        assert_eq!(full, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(backoff(&s, 3, 0.0), Duration::from_secs(2), "half at least");
        assert_eq!(backoff(&s, 3, 0.5), Duration::from_secs(3));
        assert_eq!(backoff(&s, u32::MAX, 1.0), Duration::from_secs(60));
    }

    #[test]
    fn ids_increase_and_stay_above_the_clock() {
        let last = AtomicU64::new(0);
        let a = next_id(&last, 1000);
        let b = next_id(&last, 1000);
        let c = next_id(&last, 999);
        assert_eq!(a, 1_000_000);
        assert!(a < b && b < c);
        let earlier_run = AtomicU64::new(5_000_000);
        assert_eq!(next_id(&earlier_run, 1000), 5_000_001);
    }
}
