//! What a notification carries, and Alertmanager's webhook format for it.
//!
//! [`Alert`] is the notifier's view of an alert (labels, annotations,
//! startsAt, endsAt, generatorURL), [`Notification`] one message for one
//! group of alerts to one receiver, as the dispatcher decided to send it.
//! Both are plain serde structs so the outbox can store them with bincode.
//!
//! [`webhook_message`] is Alertmanager's webhook payload, version "4", field
//! for field, so existing webhook consumers work unchanged: times are Go's
//! RFC 3339 with the zero time `0001-01-01T00:00:00Z` for an unset end, and
//! fingerprints are Prometheus' label-set hash (FNV-1a 64) in 16 hex digits.

use serde::{Deserialize, Serialize};

use crate::rules::alert::{self as rule_alert, LabelMap};

/// One alert, as the notifier sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub labels: LabelMap,
    pub annotations: LabelMap,
    /// When it started firing (ms since the epoch).
    pub starts_at: i64,
    /// When it resolved; `None` while it fires.
    pub ends_at: Option<i64>,
    /// A link to the expression that raised it; may be empty.
    pub generator_url: String,
}

impl Alert {
    /// Whether it had resolved at `at`.
    pub fn is_resolved_at(&self, at: i64) -> bool {
        self.ends_at.is_some_and(|end| end <= at)
    }

    /// Prometheus' fingerprint of its labels.
    pub fn fingerprint(&self) -> u64 {
        fingerprint(&self.labels)
    }

    /// The notifier's view of a rule's alert: firing and resolved alerts
    /// are notified, pending ones are not (`None`). `startsAt` is when it
    /// fired, as Prometheus sends it.
    pub fn from_rule(a: &rule_alert::Alert, generator_url: &str) -> Option<Alert> {
        let ends_at = match a.state {
            rule_alert::State::Pending => return None,
            rule_alert::State::Firing => None,
            rule_alert::State::Inactive => Some(a.resolved_at.unwrap_or(a.last_seen)),
        };
        Some(Alert {
            labels: a.labels.clone(),
            annotations: a.annotations.clone(),
            starts_at: a.fired_at.unwrap_or(a.active_at),
            ends_at,
            generator_url: generator_url.to_owned(),
        })
    }
}

/// One message to one receiver about one group of alerts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub receiver: String,
    /// Alertmanager's group key: `{route path}:{group labels}`.
    pub group_key: String,
    pub group_labels: LabelMap,
    /// The group's alerts when it was decided, sorted by labels.
    pub alerts: Vec<Alert>,
    /// When the dispatcher decided it (ms); alert status is taken then.
    pub created_at: i64,
    /// How long a firing alert may go without being sent again: the
    /// route's repeat_interval plus twice its group_interval. Forwarding to
    /// an Alertmanager sets `endsAt` this far ahead so that it does not
    /// resolve an alert that Patrol still sees firing.
    pub refresh_ms: i64,
    /// Set for a ticket event instead of alerts: its message, JSON
    /// (`crate::incident::notice::message`).
    pub ticket: Option<String>,
}

/// `firing` or `resolved`.
pub fn status_str(resolved: bool) -> &'static str {
    if resolved {
        "resolved"
    } else {
        "firing"
    }
}

impl Notification {
    /// Whether the alert is resolved in this message.
    pub fn is_resolved(&self, a: &Alert) -> bool {
        a.is_resolved_at(self.created_at)
    }

    pub fn firing(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.iter().filter(|a| !self.is_resolved(a))
    }

    pub fn resolved(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.iter().filter(|a| self.is_resolved(a))
    }

    /// `firing` while any alert fires, else `resolved`.
    pub fn status(&self) -> &'static str {
        status_str(self.firing().next().is_none())
    }

    /// Labels every alert has with the same value.
    pub fn common_labels(&self) -> LabelMap {
        common(self.alerts.iter().map(|a| &a.labels))
    }

    /// Annotations every alert has with the same value.
    pub fn common_annotations(&self) -> LabelMap {
        common(self.alerts.iter().map(|a| &a.annotations))
    }
}

fn common<'a>(mut maps: impl Iterator<Item = &'a LabelMap>) -> LabelMap {
    let Some(first) = maps.next() else {
        return LabelMap::new();
    };
    let mut out = first.clone();
    for m in maps {
        out.retain(|k, v| m.get(k) == Some(v));
    }
    out
}

pub use crate::rules::alert::fingerprint;

/// Go's zero time, which Alertmanager prints for an unset end.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// A time (ms since the epoch) as Go's `time.Time` marshals to JSON in
/// UTC: RFC 3339 with the fraction's trailing zeros dropped.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(secs) else {
        return ZERO_TIME.to_owned();
    };
    let mut out = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if milli != 0 {
        let fraction = format!("{milli:03}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Alertmanager's webhook message, version 4.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookMessage<'a> {
    pub version: &'static str,
    pub group_key: &'a str,
    pub truncated_alerts: u64,
    pub status: &'static str,
    pub receiver: &'a str,
    pub group_labels: &'a LabelMap,
    pub common_labels: LabelMap,
    pub common_annotations: LabelMap,
    #[serde(rename = "externalURL")]
    pub external_url: &'a str,
    pub alerts: Vec<WebhookAlert<'a>>,
}

/// One alert of a [`WebhookMessage`].
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAlert<'a> {
    pub status: &'static str,
    pub labels: &'a LabelMap,
    pub annotations: &'a LabelMap,
    pub starts_at: String,
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: &'a str,
    pub fingerprint: String,
}

/// The webhook message for `n`; `max_alerts` (0: all) keeps the first
/// alerts and counts the rest in `truncatedAlerts`. Common labels and
/// annotations are taken over every alert, as Alertmanager does.
pub fn webhook_message<'a>(
    n: &'a Notification,
    external_url: &'a str,
    max_alerts: usize,
) -> WebhookMessage<'a> {
    let kept = if max_alerts == 0 {
        n.alerts.len()
    } else {
        max_alerts.min(n.alerts.len())
    };
    let alerts = n.alerts[..kept]
        .iter()
        .map(|a| {
            let resolved = n.is_resolved(a);
            WebhookAlert {
                status: status_str(resolved),
                labels: &a.labels,
                annotations: &a.annotations,
                starts_at: rfc3339(a.starts_at),
                // Alertmanager hides the end of an alert still firing.
                ends_at: match a.ends_at {
                    Some(end) if resolved => rfc3339(end),
                    _ => ZERO_TIME.to_owned(),
                },
                generator_url: &a.generator_url,
                fingerprint: format!("{:016x}", a.fingerprint()),
            }
        })
        .collect();
    WebhookMessage {
        version: "4",
        group_key: &n.group_key,
        truncated_alerts: (n.alerts.len() - kept) as u64,
        status: n.status(),
        receiver: &n.receiver,
        group_labels: &n.group_labels,
        common_labels: n.common_labels(),
        common_annotations: n.common_annotations(),
        external_url,
        alerts,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::{json, Value};

    pub(crate) fn labels(pairs: &[(&str, &str)]) -> LabelMap {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// 2024-05-01T08:00:00Z.
    pub(crate) const T0: i64 = 1_714_550_400_000;

    pub(crate) fn sample() -> Notification {
        Notification {
            receiver: "ops".into(),
            group_key: r#"{}:{alertname="DiskFull"}"#.into(),
            group_labels: labels(&[("alertname", "DiskFull")]),
            alerts: vec![
                Alert {
                    labels: labels(&[
                        ("alertname", "DiskFull"),
                        ("host", "db1"),
                        ("severity", "critical"),
                    ]),
                    annotations: labels(&[("summary", "db1: / is 96% full"), ("runbook", "r")]),
                    starts_at: T0,
                    ends_at: None,
                    generator_url: "http://patrol/graph?g0.expr=x".into(),
                },
                Alert {
                    labels: labels(&[
                        ("alertname", "DiskFull"),
                        ("host", "web1"),
                        ("severity", "critical"),
                    ]),
                    annotations: labels(&[("summary", "web1: / is 97% full"), ("runbook", "r")]),
                    starts_at: T0 - 60_500,
                    ends_at: Some(T0 + 30_000),
                    generator_url: String::new(),
                },
            ],
            created_at: T0 + 60_000,
            refresh_ms: 4 * 3_600_000 + 600_000,
            ticket: None,
        }
    }

    #[test]
    fn fingerprints_are_prometheus_label_set_hashes() {
        // FNV-1a 64 of nothing is its offset basis, as for Prometheus'
        // empty label set.
        assert_eq!(fingerprint(&LabelMap::new()), 0xcbf2_9ce4_8422_2325);
        // Computed from the definition: FNV-1a over "a" 0xff "b" 0xff.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in [b'a', 0xff, b'b', 0xff] {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        assert_eq!(fingerprint(&labels(&[("a", "b")])), h);
        // Names and values are separated, so these differ.
        assert_ne!(
            fingerprint(&labels(&[("ab", "c")])),
            fingerprint(&labels(&[("a", "bc")]))
        );
    }

    #[test]
    fn times_are_printed_as_go_prints_them() {
        assert_eq!(rfc3339(T0), "2024-05-01T08:00:00Z");
        assert_eq!(rfc3339(T0 + 500), "2024-05-01T08:00:00.5Z");
        assert_eq!(rfc3339(T0 + 120), "2024-05-01T08:00:00.12Z");
        assert_eq!(rfc3339(T0 + 7), "2024-05-01T08:00:00.007Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn webhook_payload_matches_alertmanager_field_by_field() {
        let n = sample();
        let message = webhook_message(&n, "https://patrol.example", 0);
        let text = serde_json::to_string(&message).unwrap();
        assert!(
            text.starts_with(r#"{"version":"4","groupKey":"#),
            "Alertmanager's field order: {text}"
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        let top: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected_top = vec![
            "version",
            "groupKey",
            "truncatedAlerts",
            "status",
            "receiver",
            "groupLabels",
            "commonLabels",
            "commonAnnotations",
            "externalURL",
            "alerts",
        ];
        expected_top.sort();
        assert_eq!(top, expected_top, "exactly Alertmanager's fields");
        assert_eq!(v["version"], "4");
        assert_eq!(v["groupKey"], r#"{}:{alertname="DiskFull"}"#);
        assert_eq!(v["truncatedAlerts"], 0);
        assert_eq!(v["status"], "firing");
        assert_eq!(v["receiver"], "ops");
        assert_eq!(v["groupLabels"], json!({"alertname": "DiskFull"}));
        assert_eq!(
            v["commonLabels"],
            json!({"alertname": "DiskFull", "severity": "critical"})
        );
        assert_eq!(v["commonAnnotations"], json!({"runbook": "r"}));
        assert_eq!(v["externalURL"], "https://patrol.example");

        let firing = &v["alerts"][0];
        let fields: Vec<&str> = firing
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            fields,
            [
                "annotations",
                "endsAt",
                "fingerprint",
                "generatorURL",
                "labels",
                "startsAt",
                "status"
            ]
        );
        assert_eq!(firing["status"], "firing");
        assert_eq!(firing["labels"]["host"], "db1");
        assert_eq!(firing["annotations"]["summary"], "db1: / is 96% full");
        assert_eq!(firing["startsAt"], "2024-05-01T08:00:00Z");
        assert_eq!(firing["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(firing["generatorURL"], "http://patrol/graph?g0.expr=x");
        let fp = firing["fingerprint"].as_str().unwrap();
        assert_eq!(fp.len(), 16);
        assert!(fp
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(fp, format!("{:016x}", n.alerts[0].fingerprint()));

        let resolved = &v["alerts"][1];
        assert_eq!(resolved["status"], "resolved");
        assert_eq!(resolved["startsAt"], "2024-05-01T07:58:59.5Z");
        assert_eq!(resolved["endsAt"], "2024-05-01T08:00:30Z");
        assert_eq!(resolved["generatorURL"], "");
    }

    #[test]
    fn the_message_is_resolved_only_when_every_alert_is() {
        let mut n = sample();
        n.alerts[0].ends_at = Some(T0 + 1000);
        let v = serde_json::to_value(webhook_message(&n, "", 0)).unwrap();
        assert_eq!(v["status"], "resolved");
        assert_eq!(v["alerts"][0]["endsAt"], "2024-05-01T08:00:01Z");
        // An end still ahead of the message is not an end yet.
        n.alerts[0].ends_at = Some(n.created_at + 1);
        let v = serde_json::to_value(webhook_message(&n, "", 0)).unwrap();
        assert_eq!(v["status"], "firing");
        assert_eq!(v["alerts"][0]["endsAt"], ZERO_TIME);
    }

    #[test]
    fn max_alerts_truncates_and_counts() {
        let n = sample();
        let v = serde_json::to_value(webhook_message(&n, "", 1)).unwrap();
        assert_eq!(v["truncatedAlerts"], 1);
        assert_eq!(v["alerts"].as_array().unwrap().len(), 1);
        assert_eq!(
            v["commonLabels"]["severity"], "critical",
            "common labels are over every alert"
        );
    }

    #[test]
    fn rule_alerts_map_to_notifier_alerts() {
        let mut a = rule_alert::Alert {
            labels: labels(&[("alertname", "X")]),
            annotations: LabelMap::new(),
            state: rule_alert::State::Pending,
            active_at: 1000,
            fired_at: None,
            resolved_at: None,
            last_seen: 1000,
            keep_firing_since: None,
            value: 1.0,
        };
        assert!(
            Alert::from_rule(&a, "").is_none(),
            "pending is not notified"
        );
        a.state = rule_alert::State::Firing;
        a.fired_at = Some(5000);
        let firing = Alert::from_rule(&a, "g").unwrap();
        assert_eq!((firing.starts_at, firing.ends_at), (5000, None));
        a.state = rule_alert::State::Inactive;
        a.resolved_at = Some(9000);
        assert_eq!(Alert::from_rule(&a, "g").unwrap().ends_at, Some(9000));
    }
}
