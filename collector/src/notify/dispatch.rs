//! Grouping and timing, as Alertmanager's dispatcher does them, as a pure
//! state machine: [`Dispatcher::process`] takes the current alerts at time
//! `now` (an injected clock, ms) and returns the notifications that are due.
//!
//! Each alert goes to the routes the [`Router`] picks, and on each route
//! into the group named by its `group_by` labels. A new group waits
//! `group_wait` for more alerts (no wait when its first alert is already
//! older than that), then is looked at every `group_interval`. At each look
//! the group is sent when Alertmanager's notification log would send it:
//! a firing alert the receiver was not told about, a newly resolved alert
//! (with `send_resolved`), the last firing alert gone, or `repeat_interval`
//! passed since the last message while alerts still fire. Resolved alerts
//! leave the group once looked at, so each is sent as resolved once.
//!
//! An alert that disappears from the input without having resolved (its
//! rule was deleted, its resolution was no longer kept) is taken as
//! resolved at that moment.
//!
//! The notification log (what each group last told its receiver) is kept
//! in the outbox's store ([`Dispatcher::notification_log`]) and taken back
//! at start, so a restart does not send again what was already sent; an
//! entry is dropped after five days without use, as Alertmanager's.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::config::NotifyConfig;
use super::payload::{Alert, Notification};
use super::route::{label_set_string, Route, Router};
use crate::rules::alert::LabelMap;

/// A group: its route (by index) and its group labels.
type GroupId = (usize, LabelMap);

/// See the module comment.
#[derive(Debug)]
pub struct Dispatcher {
    router: Router,
    send_resolved: BTreeMap<String, bool>,
    groups: BTreeMap<GroupId, Group>,
    /// Counts calls to `process`, to tell which alerts were in this input.
    tick: u64,
    /// Log entries taken back at start whose group has not formed again.
    restored: BTreeMap<String, LogEntry>,
}

/// How long a log entry is kept without its group (Alertmanager's 120 h).
const LOG_RETENTION_MS: i64 = 120 * 3600 * 1000;

#[derive(Debug)]
struct Group {
    key: String,
    labels: LabelMap,
    /// By fingerprint.
    alerts: BTreeMap<u64, Held>,
    next_flush: i64,
    flushed: bool,
    /// What the receiver was last told (Alertmanager's notification log).
    log: Option<LogEntry>,
}

#[derive(Debug)]
struct Held {
    alert: Alert,
    seen_tick: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LogEntry {
    firing: BTreeSet<u64>,
    resolved: BTreeSet<u64>,
    at: i64,
}

impl Dispatcher {
    /// A dispatcher for a config's routes and receivers; the problems when
    /// they are not valid.
    pub fn new(config: &NotifyConfig) -> Result<Dispatcher, Vec<String>> {
        let names = config.receivers.iter().map(|r| r.name.clone()).collect();
        Ok(Dispatcher {
            router: Router::new(&config.route, &names)?,
            send_resolved: config
                .receivers
                .iter()
                .map(|r| (r.name.clone(), r.send_resolved))
                .collect(),
            groups: BTreeMap::new(),
            tick: 0,
            restored: BTreeMap::new(),
        })
    }

    /// The notification log, encoded: every group's entry and the restored
    /// ones still waiting for their group, less those unused for 5 days.
    pub fn notification_log(&self, now: i64) -> Vec<u8> {
        let mut log: BTreeMap<&str, &LogEntry> = self
            .restored
            .iter()
            .filter(|(_, e)| now - e.at < LOG_RETENTION_MS)
            .map(|(k, e)| (k.as_str(), e))
            .collect();
        for g in self.groups.values() {
            if let Some(e) = &g.log {
                log.insert(&g.key, e);
            }
        }
        bincode::serde::encode_to_vec(&log, bincode::config::standard()).unwrap_or_default()
    }

    /// Takes back a log written by [`Dispatcher::notification_log`]; an
    /// unreadable one is reported and ignored.
    pub fn restore_notification_log(&mut self, bytes: &[u8]) -> Result<usize, String> {
        let (log, _): (BTreeMap<String, LogEntry>, _) = bincode::serde::decode_from_slice(
            bytes,
            bincode::config::standard().with_limit::<{ 64 << 20 }>(),
        )
        .map_err(|e| e.to_string())?;
        let n = log.len();
        self.restored = log;
        Ok(n)
    }

    /// Number of groups held.
    #[cfg(test)]
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Takes every current alert (firing, and resolved ones still
    /// reported) at `now`, and returns the notifications due now.
    pub fn process(&mut self, now: i64, alerts: &[Alert]) -> Vec<Notification> {
        self.tick += 1;
        for alert in alerts {
            self.insert(now, alert);
        }
        let tick = self.tick;
        for group in self.groups.values_mut() {
            for held in group.alerts.values_mut() {
                if held.seen_tick != tick && !held.alert.is_resolved_at(now) {
                    held.alert.ends_at = Some(now);
                }
            }
        }
        let due: Vec<GroupId> = self
            .groups
            .iter()
            .filter(|(_, g)| g.next_flush <= now)
            .map(|(id, _)| id.clone())
            .collect();
        let mut out = Vec::new();
        for id in due {
            let Some(route) = self.router.routes().get(id.0) else {
                continue;
            };
            let send_resolved = self.send_resolved.get(&route.receiver).copied();
            let Some(group) = self.groups.get_mut(&id) else {
                continue;
            };
            out.extend(group.flush(route, now, send_resolved.unwrap_or(true)));
            if group.alerts.is_empty() {
                self.groups.remove(&id);
            }
        }
        out
    }

    fn insert(&mut self, now: i64, alert: &Alert) {
        let fingerprint = alert.fingerprint();
        let resolved = alert.is_resolved_at(now);
        for route in self.router.route(&alert.labels) {
            let labels = route.group_labels(&alert.labels);
            let id = (route.index, labels);
            let key = format!("{}:{}", route.key, label_set_string(&id.1));
            let group = match self.groups.get_mut(&id) {
                Some(g) => g,
                // A resolved alert only matters to a group that may have
                // told someone it fired (before a restart, too); a new
                // group would drop it unsent.
                None if resolved && !self.restored.contains_key(&key) => continue,
                None => {
                    let log = self.restored.remove(&key);
                    self.groups.entry(id.clone()).or_insert_with(|| Group {
                        key,
                        labels: id.1.clone(),
                        alerts: BTreeMap::new(),
                        next_flush: now.saturating_add(route.group_wait_ms),
                        flushed: false,
                        log,
                    })
                }
            };
            // An alert already older than group_wait has waited enough.
            if !group.flushed && alert.starts_at.saturating_add(route.group_wait_ms) < now {
                group.next_flush = group.next_flush.min(now);
            }
            group.alerts.insert(
                fingerprint,
                Held {
                    alert: alert.clone(),
                    seen_tick: self.tick,
                },
            );
        }
    }
}

impl Group {
    /// Looks at the group: the notification, when one is needed. Resolved
    /// alerts leave the group either way.
    fn flush(&mut self, route: &Route, now: i64, send_resolved: bool) -> Option<Notification> {
        let (mut resolved, mut firing) = (BTreeSet::new(), BTreeSet::new());
        for (fp, held) in &self.alerts {
            if held.alert.is_resolved_at(now) {
                resolved.insert(*fp);
            } else {
                firing.insert(*fp);
            }
        }
        let mut notification = None;
        let log = self.log.as_ref();
        if needs_update(
            log,
            &firing,
            &resolved,
            send_resolved,
            route.repeat_interval_ms,
            now,
        ) {
            let mut alerts: Vec<Alert> = self
                .alerts
                .values()
                .map(|h| &h.alert)
                .filter(|a| send_resolved || !a.is_resolved_at(now))
                .cloned()
                .collect();
            alerts.sort_by(|a, b| a.labels.cmp(&b.labels));
            if !alerts.is_empty() {
                notification = Some(Notification {
                    receiver: route.receiver.clone(),
                    group_key: self.key.clone(),
                    group_labels: self.labels.clone(),
                    alerts,
                    created_at: now,
                    refresh_ms: route
                        .repeat_interval_ms
                        .saturating_add(route.group_interval_ms.saturating_mul(2)),
                    ticket: None,
                });
            }
            self.log = Some(LogEntry {
                firing,
                resolved: resolved.clone(),
                at: now,
            });
        }
        self.alerts.retain(|fp, _| !resolved.contains(fp));
        self.flushed = true;
        self.next_flush = now.saturating_add(route.group_interval_ms);
        notification
    }
}

/// Alertmanager's `DedupStage.needsUpdate`.
fn needs_update(
    log: Option<&LogEntry>,
    firing: &BTreeSet<u64>,
    resolved: &BTreeSet<u64>,
    send_resolved: bool,
    repeat_ms: i64,
    now: i64,
) -> bool {
    let Some(entry) = log else {
        return !firing.is_empty();
    };
    if !firing.is_subset(&entry.firing) {
        return true;
    }
    if firing.is_empty() {
        // Everything resolved: tell the receiver if it was told something
        // fired (even without send_resolved, so the log forgets them).
        return !entry.firing.is_empty();
    }
    if send_resolved && !resolved.is_subset(&entry.resolved) {
        return true;
    }
    entry.at < now.saturating_sub(repeat_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::payload::tests::labels;

    const S: i64 = 1000;
    const MIN: i64 = 60 * S;
    const HOUR: i64 = 60 * MIN;

    /// `route` is the root route's body; empty for the usual one.
    fn config(route: &str) -> NotifyConfig {
        let route = if route.is_empty() {
            "receiver = \"ops\"\ngroup_by = [\"alertname\"]"
        } else {
            route
        };
        toml::from_str(&format!(
            r#"
            [route]
            {route}
            [[receivers]]
            name = "ops"
            kind = "webhook"
            url = "http://127.0.0.1:1/"
            [[receivers]]
            name = "quiet"
            kind = "slack"
            url = "http://127.0.0.1:1/"
            send_resolved = false
            "#
        ))
        .unwrap()
    }

    fn dispatcher(route: &str) -> Dispatcher {
        Dispatcher::new(&config(route)).unwrap()
    }

    fn alert(name: &str, host: &str, starts_at: i64) -> Alert {
        Alert {
            labels: labels(&[("alertname", name), ("host", host)]),
            annotations: labels(&[("summary", "s")]),
            starts_at,
            ends_at: None,
            generator_url: String::new(),
        }
    }

    fn resolved(mut a: Alert, at: i64) -> Alert {
        a.ends_at = Some(at);
        a
    }

    fn hosts(n: &Notification) -> Vec<(String, &'static str)> {
        n.alerts
            .iter()
            .map(|a| {
                let status = if n.is_resolved(a) {
                    "resolved"
                } else {
                    "firing"
                };
                (a.labels["host"].clone(), status)
            })
            .collect()
    }

    #[test]
    fn a_restart_with_the_kept_log_does_not_send_again_but_sends_the_resolution() {
        let mut d = dispatcher("");
        let a = alert("DiskFull", "db1", 0);
        assert!(d.process(0, std::slice::from_ref(&a)).is_empty());
        assert_eq!(d.process(30 * S, std::slice::from_ref(&a)).len(), 1);
        let log = d.notification_log(30 * S);
        // The collector restarts: a new dispatcher, the log taken back.
        let mut again = dispatcher("");
        assert_eq!(again.restore_notification_log(&log), Ok(1));
        for t in [31 * S, MIN, 10 * MIN] {
            assert!(
                again.process(t, std::slice::from_ref(&a)).is_empty(),
                "at {t}"
            );
        }
        let done = again.process(20 * MIN, &[resolved(a.clone(), 15 * MIN)]);
        assert_eq!(hosts(&done[0]), [("db1".to_string(), "resolved")]);
        // Without the log, the firing alert is sent once more.
        let mut fresh = dispatcher("");
        assert_eq!(fresh.process(MIN, std::slice::from_ref(&a)).len(), 1);
        assert!(again.restore_notification_log(b"garbage").is_err());
    }

    #[test]
    fn the_first_message_waits_group_wait() {
        let mut d = dispatcher("");
        let a = alert("DiskFull", "db1", 0);
        assert!(d.process(0, std::slice::from_ref(&a)).is_empty());
        assert!(d.process(29 * S, std::slice::from_ref(&a)).is_empty());
        let b = alert("DiskFull", "web1", 29 * S);
        let sent = d.process(30 * S, &[a.clone(), b.clone()]);
        assert_eq!(sent.len(), 1);
        let n = &sent[0];
        assert_eq!(n.receiver, "ops");
        assert_eq!(n.group_key, r#"{}:{alertname="DiskFull"}"#);
        assert_eq!(n.group_labels, labels(&[("alertname", "DiskFull")]));
        assert_eq!(
            hosts(n),
            [("db1".into(), "firing"), ("web1".into(), "firing")]
        );
        assert_eq!(n.created_at, 30 * S);
        assert_eq!(n.refresh_ms, 4 * HOUR + 10 * MIN);
    }

    #[test]
    fn changes_wait_for_group_interval_and_unchanged_groups_repeat() {
        let mut d = dispatcher("");
        let a = alert("DiskFull", "db1", 0);
        d.process(0, std::slice::from_ref(&a));
        assert_eq!(d.process(30 * S, std::slice::from_ref(&a)).len(), 1);
        // A new alert joins; the group is looked at again after 5m.
        let b = alert("DiskFull", "web1", MIN);
        assert!(d.process(MIN, &[a.clone(), b.clone()]).is_empty());
        assert!(d.process(5 * MIN, &[a.clone(), b.clone()]).is_empty());
        let sent = d.process(5 * MIN + 30 * S, &[a.clone(), b.clone()]);
        assert_eq!(hosts(&sent[0]).len(), 2);
        // Nothing changes: nothing is sent until repeat_interval passed
        // (strictly, as Alertmanager compares), at a group_interval tick.
        let both = [a.clone(), b.clone()];
        let mut t = 5 * MIN + 30 * S;
        let mut repeats = Vec::new();
        while t < 5 * MIN + 30 * S + 5 * HOUR {
            t += 5 * MIN;
            if !d.process(t, &both).is_empty() {
                repeats.push(t - (5 * MIN + 30 * S));
            }
        }
        assert_eq!(repeats, [4 * HOUR + 5 * MIN]);
    }

    #[test]
    fn a_resolved_alert_is_sent_once_as_resolved() {
        let mut d = dispatcher("");
        let (a, b) = (alert("DiskFull", "db1", 0), alert("DiskFull", "web1", 0));
        d.process(0, &[a.clone(), b.clone()]);
        assert_eq!(d.process(30 * S, &[a.clone(), b.clone()]).len(), 1);
        // db1 resolves; the rules keep reporting it resolved for a while.
        let a_done = resolved(a.clone(), 2 * MIN);
        assert!(d.process(2 * MIN, &[a_done.clone(), b.clone()]).is_empty());
        let sent = d.process(5 * MIN + 30 * S, &[a_done.clone(), b.clone()]);
        assert_eq!(
            hosts(&sent[0]),
            [("db1".into(), "resolved"), ("web1".into(), "firing")]
        );
        assert_eq!(sent[0].status(), "firing");
        for k in 2..6 {
            let t = 30 * S + k * 5 * MIN;
            assert!(
                d.process(t, &[a_done.clone(), b.clone()]).is_empty(),
                "at {t}"
            );
        }
        // web1 vanishes from the input (and db1's resolution is no longer
        // reported): web1 is resolved then, and sent as such, once.
        let t = 30 * S + 6 * 5 * MIN;
        let sent = d.process(t, &[]);
        assert_eq!(hosts(&sent[0]), [("web1".into(), "resolved")]);
        assert_eq!(sent[0].status(), "resolved");
        assert_eq!(sent[0].alerts[0].ends_at, Some(t));
        assert_eq!(d.group_count(), 0);
        assert!(d.process(t + HOUR, &[a_done]).is_empty());
        assert_eq!(d.group_count(), 0, "a resolved alert opens no group");
    }

    #[test]
    fn an_alert_older_than_group_wait_is_sent_at_once() {
        let mut d = dispatcher("");
        let sent = d.process(HOUR, &[alert("DiskFull", "db1", 0)]);
        assert_eq!(sent.len(), 1);
    }

    #[test]
    fn an_alert_that_fired_and_resolved_unseen_is_not_sent() {
        let mut d = dispatcher("");
        let a = alert("DiskFull", "db1", 0);
        d.process(0, std::slice::from_ref(&a));
        assert!(d.process(30 * S, &[resolved(a, 10 * S)]).is_empty());
        assert_eq!(d.group_count(), 0);
    }

    #[test]
    fn without_send_resolved_resolutions_are_left_out() {
        let mut d = dispatcher("receiver = \"quiet\"\ngroup_by = [\"alertname\"]");
        let (a, b) = (alert("X", "db1", 0), alert("X", "web1", 0));
        d.process(0, &[a.clone(), b.clone()]);
        assert_eq!(d.process(30 * S, &[a.clone(), b.clone()]).len(), 1);
        let a_done = resolved(a, MIN);
        assert!(
            d.process(5 * MIN + 30 * S, &[a_done.clone(), b.clone()])
                .is_empty(),
            "a resolution alone is no change"
        );
        assert!(
            d.process(10 * MIN + 30 * S, &[a_done, resolved(b, 6 * MIN)])
                .is_empty(),
            "an all-resolved message would be empty"
        );
        assert_eq!(d.group_count(), 0);
    }

    #[test]
    fn group_by_splits_and_continue_sends_to_both() {
        let route = r#"
            receiver = "ops"
            group_by = ["host"]
            group_wait = "0s"
            [[route.routes]]
            receiver = "quiet"
            matchers = ['alertname="Down"']
            continue = true
        "#;
        let mut d = dispatcher(route);
        let sent = d.process(
            0,
            &[
                alert("Down", "db1", 0),
                alert("Disk", "db1", 0),
                alert("Disk", "web1", 0),
            ],
        );
        let mut got: Vec<(String, String, usize)> = sent
            .iter()
            .map(|n| (n.receiver.clone(), n.group_key.clone(), n.alerts.len()))
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                ("ops".into(), r#"{}:{host="db1"}"#.into(), 1),
                ("ops".into(), r#"{}:{host="web1"}"#.into(), 1),
                (
                    "quiet".into(),
                    r#"{}/{alertname="Down"}:{host="db1"}"#.into(),
                    1
                ),
            ]
        );
    }
}
