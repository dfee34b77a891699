//! Turns what an agent sent into what the store keeps: names checked, the
//! `host` and `instance` labels set from the certificate (whatever the agent
//! claimed), the agent's static labels added, labels sorted.

use std::collections::BTreeMap;

use patrol_shared::model::{Family, Label, SampleSet, Series};

/// Limits on one series' labels, against runaway or hostile agents.
const MAX_LABELS: usize = 32;
const MAX_LABEL_NAME: usize = 128;
const MAX_LABEL_VALUE: usize = 2048;

/// Labels only the collector sets.
const RESERVED: [&str; 2] = ["host", "instance"];

/// Samples dropped while stamping, by reason.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rejected {
    pub counts: BTreeMap<&'static str, u64>,
}

impl Rejected {
    fn add(&mut self, reason: &'static str, n: usize) {
        if n > 0 {
            *self.counts.entry(reason).or_default() += n as u64;
        }
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub fn valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` (reserved).
pub fn valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= MAX_LABEL_NAME
        && !name.starts_with("__")
        && matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The agent's static labels that can be used: valid, not reserved.
pub fn usable_static_labels(labels: &[Label]) -> Vec<Label> {
    let mut out: Vec<Label> = labels
        .iter()
        .filter(|(n, v)| {
            valid_label_name(n) && !RESERVED.contains(&n.as_str()) && v.len() <= MAX_LABEL_VALUE
        })
        .cloned()
        .collect();
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

/// Stamps one sample set. `static_labels` must come from
/// [`usable_static_labels`].
pub fn stamp(
    host: &str,
    static_labels: &[Label],
    set: SampleSet,
    rejected: &mut Rejected,
) -> (i64, Vec<Family>) {
    let mut families = Vec::with_capacity(set.families.len());
    for mut family in set.families {
        if !valid_metric_name(&family.name) {
            rejected.add("invalid_metric_name", family.series.len());
            continue;
        }
        let before = family.series.len();
        family.series = family
            .series
            .into_iter()
            .filter_map(|s| stamp_series(host, static_labels, s))
            .collect();
        rejected.add("invalid_labels", before - family.series.len());
        if !family.series.is_empty() {
            families.push(family);
        }
    }
    (set.timestamp_ms, families)
}

fn stamp_series(host: &str, static_labels: &[Label], series: Series) -> Option<Series> {
    if series.labels.len() > MAX_LABELS {
        return None;
    }
    let mut labels: Vec<Label> = Vec::with_capacity(series.labels.len() + static_labels.len() + 2);
    for (name, value) in series.labels {
        if RESERVED.contains(&name.as_str()) {
            continue;
        }
        if !valid_label_name(&name) || value.len() > MAX_LABEL_VALUE {
            return None;
        }
        labels.push((name, value));
    }
    labels.sort();
    if labels.windows(2).any(|w| w[0].0 == w[1].0) {
        return None;
    }
    for (name, value) in static_labels {
        if labels.binary_search_by(|(n, _)| n.cmp(name)).is_err() {
            labels.push((name.clone(), value.clone()));
        }
    }
    for name in RESERVED {
        labels.push((name.to_owned(), host.to_owned()));
    }
    labels.sort();
    Some(Series {
        labels,
        value: series.value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(labels: &[(&str, &str)]) -> SampleSet {
        let mut f = Family::gauge("node_load1", "");
        f.push(labels, 1.0);
        SampleSet {
            timestamp_ms: 5,
            families: vec![f],
        }
    }

    fn labels_of(families: &[Family]) -> Vec<Label> {
        families[0].series[0].labels.clone()
    }

    #[test]
    fn host_claimed_by_the_agent_is_replaced_by_the_certificate_name() {
        let mut rejected = Rejected::default();
        let (_, families) = stamp(
            "db",
            &[],
            set(&[("host", "courseware"), ("instance", "x")]),
            &mut rejected,
        );
        assert_eq!(
            labels_of(&families),
            vec![
                ("host".into(), "db".into()),
                ("instance".into(), "db".into())
            ]
        );
    }

    #[test]
    fn static_labels_are_added_but_never_override() {
        let statics = usable_static_labels(&[
            ("env".into(), "prod".into()),
            ("cpu".into(), "ignored".into()),
            ("host".into(), "evil".into()),
            ("bad-name".into(), "x".into()),
        ]);
        let mut rejected = Rejected::default();
        let (_, families) = stamp("db", &statics, set(&[("cpu", "0")]), &mut rejected);
        let labels = labels_of(&families);
        assert!(labels.contains(&("cpu".into(), "0".into())));
        assert!(labels.contains(&("env".into(), "prod".into())));
        assert!(labels.contains(&("host".into(), "db".into())));
        assert!(!labels.iter().any(|(n, _)| n == "bad-name"));
    }

    #[test]
    fn bad_names_and_duplicate_labels_are_rejected_and_counted() {
        let mut rejected = Rejected::default();
        let mut bad = Family::gauge("1bad", "");
        bad.push(&[], 1.0);
        let mut dup = Family::gauge("ok", "");
        dup.push(&[("a", "1"), ("a", "2")], 1.0);
        dup.push(&[("__name__", "x")], 1.0);
        dup.push(&[("a", "1")], 1.0);
        let (_, families) = stamp(
            "db",
            &[],
            SampleSet {
                timestamp_ms: 0,
                families: vec![bad, dup],
            },
            &mut rejected,
        );
        assert_eq!(families.len(), 1);
        assert_eq!(families[0].series.len(), 1);
        assert_eq!(rejected.counts.get("invalid_metric_name"), Some(&1));
        assert_eq!(rejected.counts.get("invalid_labels"), Some(&2));
    }
}
