//! `patrol_notifications_total{receiver,outcome}`: one count per delivery
//! attempt, by what came of it (`delivered`, `failed` — another attempt
//! follows — or `given_up`). The receivers are the configured ones, fixed
//! when the notifier starts, so the labels stay bounded; [`rows`] gives
//! the values for whoever exposes `/metrics`.
//!
//! [`rows`]: NotificationCounters::rows

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use super::outbox::Outcome;

/// The counter's name.
pub const NOTIFICATIONS_TOTAL: &str = "patrol_notifications_total";

/// One series: name, labels, value.
pub type MetricRow = (&'static str, Vec<(&'static str, String)>, u64);

/// See the module comment.
#[derive(Debug, Default)]
pub struct NotificationCounters {
    by_receiver: BTreeMap<String, [AtomicU64; 3]>,
}

fn slot(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Delivered => 0,
        Outcome::Failed => 1,
        Outcome::GivenUp => 2,
    }
}

impl NotificationCounters {
    /// Counters for these receivers, all at 0.
    pub fn new<I: IntoIterator<Item = String>>(receivers: I) -> NotificationCounters {
        NotificationCounters {
            by_receiver: receivers
                .into_iter()
                .map(|r| (r, Default::default()))
                .collect(),
        }
    }

    /// Counts one attempt; a receiver not configured at start is not
    /// counted (its notifications are given up and logged).
    pub fn inc(&self, receiver: &str, outcome: Outcome) {
        if let Some(c) = self.by_receiver.get(receiver) {
            c[slot(outcome)].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn get(&self, receiver: &str, outcome: Outcome) -> u64 {
        self.by_receiver
            .get(receiver)
            .map_or(0, |c| c[slot(outcome)].load(Ordering::Relaxed))
    }

    /// The counters as a family for `/metrics`.
    pub fn family(&self, now_ms: i64) -> crate::storage::LatestFamily {
        crate::storage::LatestFamily {
            name: NOTIFICATIONS_TOTAL.into(),
            help: "Notification delivery attempts by receiver and outcome.".into(),
            kind: patrol_shared::model::MetricKind::Counter,
            samples: self
                .rows()
                .into_iter()
                .map(|(_, labels, value)| crate::storage::LatestSample {
                    labels: labels.into_iter().map(|(n, v)| (n.to_owned(), v)).collect(),
                    value: value as f64,
                    timestamp_ms: now_ms,
                })
                .collect(),
        }
    }

    /// Every series: name, labels (`receiver`, `outcome`), value.
    pub fn rows(&self) -> Vec<MetricRow> {
        let mut rows = Vec::new();
        for (receiver, counts) in &self.by_receiver {
            for outcome in Outcome::ALL {
                rows.push((
                    NOTIFICATIONS_TOTAL,
                    vec![
                        ("receiver", receiver.clone()),
                        ("outcome", outcome.as_str().to_owned()),
                    ],
                    counts[slot(outcome)].load(Ordering::Relaxed),
                ));
            }
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_receiver_and_outcome_has_a_row() {
        let c = NotificationCounters::new(["ops".to_owned(), "dba".to_owned()]);
        c.inc("ops", Outcome::Failed);
        c.inc("ops", Outcome::Failed);
        c.inc("ops", Outcome::Delivered);
        c.inc("nobody", Outcome::Delivered);
        assert_eq!(c.get("ops", Outcome::Failed), 2);
        let rows = c.rows();
        assert_eq!(rows.len(), 6);
        let ops_failed = rows
            .iter()
            .find(|(_, l, _)| l[0].1 == "ops" && l[1].1 == "failed")
            .unwrap();
        assert_eq!(ops_failed.0, "patrol_notifications_total");
        assert_eq!(ops_failed.2, 2);
        assert!(rows.iter().all(|(_, l, _)| l[0].1 != "nobody"));
    }
}
