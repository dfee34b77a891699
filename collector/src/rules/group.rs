//! Evaluating a rule group at one time: each rule in order, recording rules
//! writing their results as series (later rules see them), alerting rules
//! moving their alerts on and writing `ALERTS` and `ALERTS_FOR_STATE`, as
//! Prometheus does. What each rule did last is kept for `/api/v1/rules`.

use std::collections::BTreeMap;
use std::time::Instant;

use patrol_shared::model::{Family, MetricKind, Series};

use super::alert::{AlertSet, State};
use super::file::{Group, Rule, RuleKind};
use crate::query::{self, Limits, Value};
use crate::storage::{StampedBatch, Store};

/// How the last evaluation of a rule went.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleHealth {
    /// None before the first evaluation.
    pub last_evaluation: Option<i64>,
    pub last_error: Option<String>,
    pub duration_seconds: f64,
}

/// A group and what its rules hold between evaluations.
#[derive(Debug, Clone)]
pub struct GroupState {
    pub group: Group,
    /// Per rule (by index): its alerts (empty for recording rules).
    pub alerts: Vec<AlertSet>,
    pub health: Vec<RuleHealth>,
    pub last_evaluation: Option<i64>,
    pub duration_seconds: f64,
    /// The stream the group's writes go to, and its batch number.
    stream_id: u64,
    seq: u64,
}

impl GroupState {
    pub fn new(group: Group) -> GroupState {
        let n = group.rules.len();
        GroupState {
            group,
            alerts: vec![AlertSet::default(); n],
            health: vec![RuleHealth::default(); n],
            last_evaluation: None,
            duration_seconds: 0.0,
            stream_id: fastrand::u64(1..),
            seq: 0,
        }
    }

    /// The stream name of the group's writes.
    fn host(&self) -> String {
        format!("rules/{}/{}", self.group.file.display(), self.group.name)
    }

    /// Evaluates every rule at `t` (ms) and writes what they produce.
    pub fn evaluate(
        &mut self,
        store: &dyn Store,
        limits: &Limits,
        t: i64,
        external: &BTreeMap<String, String>,
    ) {
        let started = Instant::now();
        for i in 0..self.group.rules.len() {
            let rule_started = Instant::now();
            let rule = self.group.rules[i].clone();
            let result = self.evaluate_rule(&rule, i, store, limits, t, external);
            let health = &mut self.health[i];
            health.last_evaluation = Some(t);
            health.last_error = result.err();
            health.duration_seconds = rule_started.elapsed().as_secs_f64();
            if let Some(e) = &health.last_error {
                tracing::warn!(group = %self.group.name, rule = %rule.name(), error = %e, "rule evaluation failed");
            }
        }
        self.last_evaluation = Some(t);
        self.duration_seconds = started.elapsed().as_secs_f64();
    }

    fn evaluate_rule(
        &mut self,
        rule: &Rule,
        index: usize,
        store: &dyn Store,
        limits: &Limits,
        t: i64,
        external: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        let value =
            query::instant(store, limits, &rule.expr, t, None).map_err(|e| e.to_string())?;
        let samples = match value {
            Value::Vector(v) => v,
            Value::Scalar(v) => vec![query::Sample {
                labels: std::sync::Arc::new(Vec::new()),
                t,
                v,
            }],
            other => {
                return Err(format!(
                    "the expression gives a {}, not a vector",
                    other.type_name()
                ))
            }
        };
        let limit = self.group.limit;
        let families = match &rule.kind {
            RuleKind::Record { name } => {
                if limit > 0 && samples.len() > limit {
                    return Err(format!(
                        "exceeded limit of {limit} with {} series",
                        samples.len()
                    ));
                }
                let mut family = Family::new(name.clone(), MetricKind::Unknown, "");
                for s in &samples {
                    let mut labels: BTreeMap<String, String> = s
                        .labels
                        .iter()
                        .filter(|(n, _)| n != query::value::METRIC_NAME)
                        .cloned()
                        .collect();
                    for (k, v) in &rule.labels {
                        labels.insert(k.clone(), v.clone());
                    }
                    family.series.push(Series {
                        labels: labels.into_iter().collect(),
                        value: s.v,
                    });
                }
                vec![family]
            }
            RuleKind::Alert { .. } => {
                self.alerts[index].update(rule, &samples, t, limit, external)?;
                alert_series(&self.alerts[index])
            }
        };
        if families.iter().all(|f| f.series.is_empty()) {
            return Ok(());
        }
        self.seq += 1;
        store
            .append(StampedBatch {
                host: self.host(),
                stream_id: self.stream_id,
                seq: self.seq,
                sets: vec![(t, families)],
            })
            .map(|_| ())
            .map_err(|e| format!("cannot store the results: {e}"))
    }

    /// The rule group's state for `/api/v1/rules`: the most severe of its
    /// alerting rules.
    pub fn rule_state(&self, index: usize) -> State {
        self.alerts
            .get(index)
            .map_or(State::Inactive, AlertSet::state)
    }
}

/// `ALERTS` (1 per pending or firing alert, with `alertstate`) and
/// `ALERTS_FOR_STATE` (when it became active, in seconds).
fn alert_series(set: &AlertSet) -> Vec<Family> {
    let mut alerts = Family::new("ALERTS", MetricKind::Gauge, "Pending and firing alerts.");
    let mut for_state = Family::new(
        "ALERTS_FOR_STATE",
        MetricKind::Gauge,
        "When each pending or firing alert became active (Unix seconds).",
    );
    for a in set.active() {
        let labels: Vec<(String, String)> = a.labels.clone().into_iter().collect();
        let mut with_state = labels.clone();
        with_state.push(("alertstate".into(), a.state.as_str().into()));
        with_state.sort();
        alerts.series.push(Series {
            labels: with_state,
            value: 1.0,
        });
        for_state.series.push(Series {
            labels,
            value: a.active_at as f64 / 1000.0,
        });
    }
    vec![alerts, for_state]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::disk::DiskStore;
    use crate::storage::index::Matcher;
    use std::path::Path;

    const MIN: i64 = 60_000;

    fn put(store: &DiskStore, seq: u64, t: i64, free: f64) {
        let mut f = Family::gauge("disk_free_ratio", "");
        f.push(&[("host", "db"), ("mountpoint", "/")], free);
        store
            .append(StampedBatch {
                host: "db".into(),
                stream_id: 1,
                seq,
                sets: vec![(t, vec![f])],
            })
            .unwrap();
    }

    #[test]
    fn a_group_records_alerts_and_writes_alerts_series() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let groups = super::super::file::parse(
            Path::new("g.yml"),
            r#"groups:
  - name: disk
    rules:
      - record: disk:used:ratio
        expr: 1 - disk_free_ratio
      - alert: DiskFull
        expr: "disk:used:ratio > 0.9"
        for: 2m
        labels:
          severity: critical
        annotations:
          summary: "{{ $labels.host }} {{ $value | humanizePercentage }} used"
"#,
        )
        .unwrap();
        let mut g = GroupState::new(groups.into_iter().next().unwrap());
        let (limits, ext) = (Limits::default(), BTreeMap::new());
        let t0 = 1_800_000_000_000;
        for (i, free) in [0.5, 0.05, 0.04, 0.04, 0.5].iter().enumerate() {
            let t = t0 + i as i64 * MIN;
            put(&store, i as u64 + 1, t, *free);
            g.evaluate(&store, &limits, t, &ext);
            assert!(
                g.health.iter().all(|h| h.last_error.is_none()),
                "{:?}",
                g.health
            );
            let expected = match i {
                0 => State::Inactive,
                1 | 2 => State::Pending,
                3 => State::Firing,
                _ => State::Inactive,
            };
            assert_eq!(g.rule_state(1), expected, "step {i}");
        }
        let select = |name: &str| {
            store
                .select(&[Matcher::equal("__name__", name)], t0, t0 + 10 * MIN)
                .unwrap()
        };
        let recorded = select("disk:used:ratio");
        assert_eq!(recorded[0].samples.len(), 5);
        assert_eq!(recorded[0].samples[1].1, 0.95);
        let alerts = select("ALERTS");
        let states: Vec<&str> = alerts
            .iter()
            .map(|s| {
                s.labels
                    .iter()
                    .find(|(n, _)| n == "alertstate")
                    .unwrap()
                    .1
                    .as_str()
            })
            .collect();
        assert_eq!(states, ["pending", "firing"]);
        let for_state = select("ALERTS_FOR_STATE");
        assert_eq!(for_state[0].samples[0].1, (t0 + MIN) as f64 / 1000.0);
        let a = g.alerts[1].alerts.values().next().unwrap();
        assert_eq!(a.annotations["summary"], "db 96% used");
        assert_eq!(a.resolved_at, Some(t0 + 4 * MIN));
    }

    #[test]
    fn an_error_is_kept_per_rule_and_the_others_still_run() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let groups = super::super::file::parse(
            Path::new("g.yml"),
            "groups:\n  - name: g\n    rules:\n      - alert: Bad\n        expr: 'label_replace(vector(1), \"1bad\", \"x\", \"y\", \".*\")'\n      - alert: Always\n        expr: vector(1)\n",
        )
        .unwrap();
        let mut g = GroupState::new(groups.into_iter().next().unwrap());
        g.evaluate(&store, &Limits::default(), 1_000, &BTreeMap::new());
        assert!(g.health[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("invalid destination label"));
        assert_eq!(g.rule_state(1), State::Firing);
    }
}
