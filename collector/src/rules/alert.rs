//! The alert state machine of one alerting rule, as Prometheus runs it:
//! inactive → pending → firing → resolved. A result seen for the first time
//! is pending (firing at once when the rule has no `for`); it fires once it
//! has held for `for`; when the condition clears it is resolved (a pending
//! one is just dropped), unless `keep_firing_for` keeps it firing a while.
//! Resolved alerts are kept 15 minutes so the notifier can send the
//! resolution. Time is a parameter: tests move it instead of sleeping.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::file::{Rule, RuleKind};
use super::template::{self, Context};
use crate::query::Sample;

/// How long a resolved alert is kept.
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Firing,
    /// Resolved: the condition cleared after it fired.
    Inactive,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Firing => "firing",
            State::Inactive => "inactive",
        }
    }
}

/// One alert of a rule: a label set the rule's expression returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub state: State,
    /// When the condition first held (ms).
    pub active_at: i64,
    pub fired_at: Option<i64>,
    pub resolved_at: Option<i64>,
    /// When the condition last held.
    pub last_seen: i64,
    /// Since when `keep_firing_for` has kept it firing.
    pub keep_firing_since: Option<i64>,
    pub value: f64,
}

/// The alerts of one alerting rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertSet {
    /// By label set.
    pub alerts: BTreeMap<Vec<(String, String)>, Alert>,
}

/// Label names to values, sorted.
pub type LabelMap = BTreeMap<String, String>;

/// An alert's labels and annotations, and its value.
struct Raised {
    labels: LabelMap,
    annotations: LabelMap,
    value: f64,
}

/// Prometheus' `LabelSet.Fingerprint`: FNV-1a 64 over each sorted name and
/// value, each followed by the byte 0xff.
pub fn fingerprint(labels: &LabelMap) -> u64 {
    const OFFSET: u64 = 14_695_981_039_346_656_037;
    const PRIME: u64 = 1_099_511_628_211;
    let mut h = OFFSET;
    let mut add = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    for (name, value) in labels {
        add(name.as_bytes());
        add(&[0xff]);
        add(value.as_bytes());
        add(&[0xff]);
    }
    h
}

/// The labels and annotations of the alert a result raises.
fn alert_for(
    rule: &Rule,
    name: &str,
    annotations: &BTreeMap<String, String>,
    sample: &Sample,
    external: &BTreeMap<String, String>,
) -> Result<(LabelMap, LabelMap), String> {
    let mut labels: BTreeMap<String, String> = sample
        .labels
        .iter()
        .filter(|(n, _)| n != crate::query::value::METRIC_NAME)
        .cloned()
        .collect();
    let ctx = Context {
        labels: &labels.clone(),
        value: sample.v,
        external_labels: external,
    };
    for (k, v) in &rule.labels {
        let value = template::render(v, &ctx).map_err(|e| format!("label {k}: {e}"))?;
        if value.is_empty() {
            labels.remove(k);
        } else {
            labels.insert(k.clone(), value);
        }
    }
    labels.insert("alertname".into(), name.to_owned());
    let mut rendered = BTreeMap::new();
    for (k, v) in annotations {
        rendered.insert(
            k.clone(),
            template::render(v, &ctx).map_err(|e| format!("annotation {k}: {e}"))?,
        );
    }
    Ok((labels, rendered))
}

impl AlertSet {
    /// Takes the rule's results at time `t`. `limit` (0: none) bounds the
    /// alerts the rule may hold; past it every alert is dropped and the
    /// evaluation fails, as Prometheus does.
    pub fn update(
        &mut self,
        rule: &Rule,
        results: &[Sample],
        t: i64,
        limit: usize,
        external: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        let RuleKind::Alert {
            name,
            for_ms,
            keep_firing_for_ms,
            annotations,
        } = &rule.kind
        else {
            return Err("not an alerting rule".into());
        };
        let mut seen: BTreeMap<Vec<(String, String)>, Raised> = BTreeMap::new();
        for sample in results {
            let (labels, annotations) = alert_for(rule, name, annotations, sample, external)?;
            let key: Vec<(String, String)> = labels.clone().into_iter().collect();
            let raised = Raised {
                labels,
                annotations,
                value: sample.v,
            };
            if seen.insert(key, raised).is_some() {
                return Err(
                    "vector contains metrics with the same labelset after applying alert labels"
                        .into(),
                );
            }
        }
        for (key, raised) in &seen {
            let Raised {
                labels,
                annotations,
                value,
            } = raised;
            match self.alerts.get_mut(key) {
                Some(a) if a.state != State::Inactive => {
                    a.value = *value;
                    a.annotations = annotations.clone();
                    a.last_seen = t;
                    a.keep_firing_since = None;
                }
                _ => {
                    self.alerts.insert(
                        key.clone(),
                        Alert {
                            labels: labels.clone(),
                            annotations: annotations.clone(),
                            state: State::Pending,
                            active_at: t,
                            fired_at: None,
                            resolved_at: None,
                            last_seen: t,
                            keep_firing_since: None,
                            value: *value,
                        },
                    );
                }
            }
        }
        self.alerts.retain(|key, a| {
            if seen.contains_key(key) {
                return true;
            }
            if a.state == State::Firing
                && *keep_firing_for_ms > 0
                && t - a.last_seen < *keep_firing_for_ms
            {
                a.keep_firing_since.get_or_insert(t);
                return true;
            }
            match a.state {
                State::Pending => false,
                State::Inactive => a
                    .resolved_at
                    .is_some_and(|r| t - r <= RESOLVED_RETENTION_MS),
                State::Firing => {
                    a.state = State::Inactive;
                    a.resolved_at = Some(t);
                    true
                }
            }
        });
        let active = self
            .alerts
            .values()
            .filter(|a| a.state != State::Inactive)
            .count();
        if limit > 0 && active > limit {
            self.alerts.clear();
            return Err(format!("exceeded limit of {limit} with {active} alerts"));
        }
        for a in self.alerts.values_mut() {
            if a.state == State::Pending && t - a.active_at >= *for_ms {
                a.state = State::Firing;
                a.fired_at = Some(t);
            }
        }
        Ok(())
    }

    /// The rule's state: the most severe of its alerts.
    pub fn state(&self) -> State {
        let states = self.alerts.values().map(|a| a.state);
        if states.clone().any(|s| s == State::Firing) {
            State::Firing
        } else if states.into_iter().any(|s| s == State::Pending) {
            State::Pending
        } else {
            State::Inactive
        }
    }

    /// Pending and firing alerts.
    pub fn active(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.values().filter(|a| a.state != State::Inactive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn rule(for_ms: i64, keep_ms: i64) -> Rule {
        Rule {
            kind: RuleKind::Alert {
                name: "DiskFull".into(),
                for_ms,
                keep_firing_for_ms: keep_ms,
                annotations: BTreeMap::from([(
                    "summary".into(),
                    "{{ $labels.host }} at {{ $value | humanizePercentage }}".into(),
                )]),
            },
            expr: "x".into(),
            labels: BTreeMap::from([("severity".into(), "critical".into())]),
            line: 1,
        }
    }

    fn sample(host: &str, v: f64) -> Sample {
        Sample {
            labels: Arc::new(vec![
                ("__name__".into(), "x".into()),
                ("host".into(), host.into()),
            ]),
            t: 0,
            v,
        }
    }

    const MIN: i64 = 60_000;

    #[test]
    fn pending_then_firing_after_for_then_resolved() {
        let (r, mut set, ext) = (rule(5 * MIN, 0), AlertSet::default(), BTreeMap::new());
        set.update(&r, &[sample("db", 0.04)], 0, 0, &ext).unwrap();
        let a = set.active().next().unwrap();
        assert_eq!(a.state, State::Pending);
        assert_eq!(a.labels["alertname"], "DiskFull");
        assert_eq!(a.labels["severity"], "critical");
        assert!(!a.labels.contains_key("__name__"));
        assert_eq!(a.annotations["summary"], "db at 4%");
        set.update(&r, &[sample("db", 0.03)], 4 * MIN, 0, &ext)
            .unwrap();
        assert_eq!(set.state(), State::Pending);
        set.update(&r, &[sample("db", 0.02)], 5 * MIN, 0, &ext)
            .unwrap();
        assert_eq!(set.state(), State::Firing);
        let a = set.active().next().unwrap();
        assert_eq!((a.active_at, a.fired_at, a.value), (0, Some(5 * MIN), 0.02));
        set.update(&r, &[], 6 * MIN, 0, &ext).unwrap();
        let a = set.alerts.values().next().unwrap();
        assert_eq!((a.state, a.resolved_at), (State::Inactive, Some(6 * MIN)));
        assert_eq!(set.state(), State::Inactive);
        // Kept for the notifier, then dropped.
        set.update(&r, &[], 6 * MIN + RESOLVED_RETENTION_MS + 1, 0, &ext)
            .unwrap();
        assert!(set.alerts.is_empty());
    }

    #[test]
    fn a_pending_alert_that_clears_is_dropped_and_starts_over() {
        let (r, mut set, ext) = (rule(5 * MIN, 0), AlertSet::default(), BTreeMap::new());
        set.update(&r, &[sample("db", 0.04)], 0, 0, &ext).unwrap();
        set.update(&r, &[], MIN, 0, &ext).unwrap();
        assert!(set.alerts.is_empty());
        set.update(&r, &[sample("db", 0.04)], 2 * MIN, 0, &ext)
            .unwrap();
        assert_eq!(set.active().next().unwrap().active_at, 2 * MIN);
    }

    #[test]
    fn no_for_fires_at_once_and_keep_firing_for_holds_it() {
        let (r, mut set, ext) = (rule(0, 3 * MIN), AlertSet::default(), BTreeMap::new());
        set.update(&r, &[sample("db", 1.0)], 0, 0, &ext).unwrap();
        assert_eq!(set.state(), State::Firing);
        set.update(&r, &[], MIN, 0, &ext).unwrap();
        let a = set.active().next().unwrap();
        assert_eq!((a.state, a.keep_firing_since), (State::Firing, Some(MIN)));
        set.update(&r, &[], 2 * MIN, 0, &ext).unwrap();
        assert_eq!(set.state(), State::Firing);
        set.update(&r, &[], 3 * MIN, 0, &ext).unwrap();
        assert_eq!(set.state(), State::Inactive);
    }

    #[test]
    fn limits_and_duplicate_label_sets_fail_the_evaluation() {
        let (r, mut set, ext) = (rule(0, 0), AlertSet::default(), BTreeMap::new());
        let err = set
            .update(&r, &[sample("a", 1.0), sample("b", 1.0)], 0, 1, &ext)
            .unwrap_err();
        assert!(err.contains("exceeded limit of 1 with 2 alerts"), "{err}");
        assert!(set.alerts.is_empty());
        let twins = [sample("a", 1.0), sample("a", 2.0)];
        assert!(set
            .update(&r, &twins, 0, 0, &ext)
            .unwrap_err()
            .contains("same labelset"));
    }
}
