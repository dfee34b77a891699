//! Notifications: alerts in, messages to people out, reliably.
//!
//! The pipeline, one way:
//!
//! 1. an [`AlertSource`] (the rule manager) gives the current alerts as
//!    [`Alert`]s;
//! 2. the dispatcher (`dispatch`) routes them through the [`config`]'s
//!    routing tree (`route`, `matcher`), groups them and decides, on an
//!    injected clock, which group messages are due, as Alertmanager does;
//! 3. each due [`Notification`] is written to the durable outbox
//!    ([`outbox::OutboxStore`]) through [`delivery::Outbox`];
//! 4. the [`delivery::Worker`] renders it for its receiver kind
//!    (`receivers`: Alertmanager's webhook format from [`payload`],
//!    DingTalk, WeCom, Feishu, Slack, or an Alertmanager), posts it
//!    (`transport`, HTTP or HTTPS), retries with backoff until a deadline,
//!    records every attempt and counts it ([`metrics`]).
//!
//! [`Notifier`] runs steps 1–4 as one task. The outbox's sled store lives
//! in `storage`; this module only defines what it must do.

pub mod config;
pub mod delivery;
pub(crate) mod dispatch;
pub(crate) mod matcher;
pub mod metrics;
pub mod outbox;
pub mod payload;
pub(crate) mod receivers;
pub(crate) mod route;
pub mod source;
pub mod store_outbox;
pub(crate) mod transport;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::error;

pub use config::NotifyConfig;
pub use metrics::NotificationCounters;
pub use outbox::{MemoryOutbox, OutboxError, OutboxStore};
pub use payload::{Alert, Notification};

/// Wall-clock time in ms since the epoch; tests pass their own.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(patrol_shared::model::now_ms)
}

/// How often the dispatcher looks at the alerts.
const DISPATCH_TICK: Duration = Duration::from_secs(1);

/// Why the notifier could not start.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("invalid notify configuration:\n  - {}", .0.join("\n  - "))]
    Config(Vec<String>),
    #[error("notify.receivers {receiver:?}: TLS: {reason}")]
    Tls { receiver: String, reason: String },
    #[error(transparent)]
    Store(#[from] OutboxError),
}

/// Where the notifier reads the current alerts: firing ones, and resolved
/// ones for as long as they are kept (pending ones are left out).
pub trait AlertSource: Send + Sync {
    fn alerts(&self) -> Vec<Alert>;
}

/// The whole pipeline; see the module comment.
pub struct Notifier {
    dispatcher: dispatch::Dispatcher,
    store: Arc<dyn OutboxStore>,
    outbox: delivery::Outbox,
    worker: delivery::Worker,
    counters: Arc<NotificationCounters>,
    clock: Clock,
}

impl Notifier {
    /// Checks the config, sets up the receivers and loads what the outbox
    /// store still holds from before a restart.
    pub async fn open(
        config: &NotifyConfig,
        store: Arc<dyn OutboxStore>,
        clock: Clock,
    ) -> Result<Notifier, NotifyError> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(NotifyError::Config(problems));
        }
        let mut dispatcher = dispatch::Dispatcher::new(config).map_err(NotifyError::Config)?;
        let kept = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.notification_log())
                .await
                .map_err(|e| OutboxError::Unavailable(e.to_string()))??
        };
        if let Some(bytes) = kept {
            match dispatcher.restore_notification_log(&bytes) {
                Ok(n) => tracing::info!(groups = n, "notification log taken back"),
                Err(e) => error!(error = %e, "kept notification log unreadable; groups start over"),
            }
        }
        let counters = Arc::new(NotificationCounters::new(
            config.receivers.iter().map(|r| r.name.clone()),
        ));
        let (outbox, worker) =
            delivery::open(config, store.clone(), counters.clone(), clock.clone()).await?;
        Ok(Notifier {
            dispatcher,
            store,
            outbox,
            worker,
            counters,
            clock,
        })
    }

    /// The delivery counters, for `/metrics`.
    pub fn counters(&self) -> Arc<NotificationCounters> {
        self.counters.clone()
    }

    /// A handle to queue notifications directly (ticket events, tests).
    pub fn outbox(&self) -> delivery::Outbox {
        self.outbox.clone()
    }

    /// Dispatches the source's alerts every second and delivers what is
    /// due, until `cancel` fires.
    pub async fn run(self, source: Arc<dyn AlertSource>, cancel: CancellationToken) {
        let Notifier {
            mut dispatcher,
            store,
            outbox,
            worker,
            clock,
            ..
        } = self;
        let dispatching = async {
            let mut tick = tokio::time::interval(DISPATCH_TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let alerts = source.alerts();
                let now = clock();
                let due = dispatcher.process(now, &alerts);
                if due.is_empty() {
                    continue;
                }
                for n in due {
                    if let Err(e) = outbox.enqueue(n).await {
                        error!(error = %e, "cannot queue a notification");
                    }
                }
                // After the messages are queued: a crash in between sends
                // one again rather than none.
                let (log, store) = (dispatcher.notification_log(now), store.clone());
                let saved =
                    tokio::task::spawn_blocking(move || store.put_notification_log(&log)).await;
                if let Ok(Err(e)) = saved {
                    error!(error = %e, "cannot keep the notification log");
                }
            }
        };
        tokio::join!(worker.run(cancel.clone()), dispatching);
    }
}
