//! Prometheus rule files (YAML, read with the maintained `serde_yaml_ng`
//! fork of serde_yaml): groups of alerting and recording rules, checked as
//! a whole. A file with any problem is refused with the file, the line and
//! the reason, and the caller keeps the rules it had.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::query;

/// A problem in a rule file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {message}", file.display())]
pub struct RuleError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no single line.
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    groups: Vec<RawGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: String,
    interval: Option<String>,
    #[serde(default)]
    limit: usize,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    alert: Option<String>,
    record: Option<String>,
    expr: String,
    #[serde(rename = "for")]
    for_: Option<String>,
    keep_firing_for: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// What a rule does with its results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleKind {
    /// Alerts named `name`, pending for `for_ms` before firing, kept firing
    /// `keep_firing_for_ms` after the condition clears.
    Alert {
        name: String,
        for_ms: i64,
        keep_firing_for_ms: i64,
        annotations: BTreeMap<String, String>,
    },
    /// Writes its results as the series `name`.
    Record { name: String },
}

/// One rule, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub kind: RuleKind,
    pub expr: String,
    pub labels: BTreeMap<String, String>,
    /// Where it is defined, for messages.
    pub line: usize,
}

impl Rule {
    pub fn name(&self) -> &str {
        match &self.kind {
            RuleKind::Alert { name, .. } | RuleKind::Record { name } => name,
        }
    }
}

/// A group: rules evaluated in order, every `interval_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub file: PathBuf,
    pub name: String,
    /// None: the collector's default evaluation interval.
    pub interval_ms: Option<i64>,
    /// Most alerts or series one rule may produce (0: no limit).
    pub limit: usize,
    pub rules: Vec<Rule>,
}

/// Reads and checks a rule file.
pub fn load(path: &Path) -> Result<Vec<Group>, RuleError> {
    let text = std::fs::read_to_string(path).map_err(|e| RuleError {
        file: path.to_owned(),
        line: 0,
        message: format!("cannot read: {e}"),
    })?;
    parse(path, &text)
}

/// Checks a rule file's text.
pub fn parse(path: &Path, text: &str) -> Result<Vec<Group>, RuleError> {
    let err = |line: usize, message: String| RuleError {
        file: path.to_owned(),
        line,
        message,
    };
    let raw: RawFile = serde_yaml_ng::from_str(text).map_err(|e| {
        let line = e.location().map_or(0, |l| l.line());
        err(line, e.to_string())
    })?;
    let mut groups = Vec::new();
    let mut names = std::collections::HashSet::new();
    for g in raw.groups {
        let group_line = find_line(text, &["name:"], &g.name, 0);
        if g.name.is_empty() {
            return Err(err(group_line, "a group needs a name".into()));
        }
        if !names.insert(g.name.clone()) {
            return Err(err(
                group_line,
                format!("group {:?} is defined twice", g.name),
            ));
        }
        let interval_ms = match &g.interval {
            None => None,
            Some(i) => Some(query::duration_ms(i).filter(|ms| *ms > 0).ok_or_else(|| {
                err(
                    group_line,
                    format!("group {:?}: invalid interval {i:?}", g.name),
                )
            })?),
        };
        let mut rules = Vec::new();
        for r in g.rules {
            rules.push(
                rule(r, text, group_line)
                    .map_err(|(line, m)| err(line, format!("group {:?}: {m}", g.name)))?,
            );
        }
        groups.push(Group {
            file: path.to_owned(),
            name: g.name,
            interval_ms,
            limit: g.limit,
            rules,
        });
    }
    Ok(groups)
}

/// Checks one rule; on a problem, its line and what is wrong.
fn rule(r: RawRule, text: &str, after: usize) -> Result<Rule, (usize, String)> {
    let (kind_name, name) = match (&r.alert, &r.record) {
        (Some(a), None) => ("alert", a.clone()),
        (None, Some(n)) => ("record", n.clone()),
        (Some(_), Some(_)) => {
            return Err((after, "a rule has both alert and record".into()));
        }
        (None, None) => {
            let line = find_line(text, &["expr:"], &r.expr, after);
            return Err((line, "a rule needs alert or record".into()));
        }
    };
    let line = find_line(text, &[&format!("{kind_name}:")], &name, after);
    let what = format!("{kind_name} {name:?}");
    let valid_name = if kind_name == "record" {
        crate::ingest::stamp::valid_metric_name(&name)
    } else {
        !name.is_empty()
    };
    if !valid_name {
        return Err((line, format!("{what}: invalid name")));
    }
    query::parse(&r.expr).map_err(|e| (line, format!("{what}: expr: {e}")))?;
    let duration = |key: &str, v: &Option<String>| -> Result<i64, (usize, String)> {
        match v {
            None => Ok(0),
            Some(d) => query::duration_ms(d)
                .ok_or_else(|| (line, format!("{what}: {key}: invalid duration {d:?}"))),
        }
    };
    let for_ms = duration("for", &r.for_)?;
    let keep_firing_for_ms = duration("keep_firing_for", &r.keep_firing_for)?;
    for label in r.labels.keys() {
        if !crate::query::aggregate::valid_label_name(label) || label.starts_with("__") {
            return Err((line, format!("{what}: invalid label name {label:?}")));
        }
    }
    for (key, value) in r.labels.iter().chain(&r.annotations) {
        super::template::check(value)
            .map_err(|e| (line, format!("{what}: template of {key:?}: {e}")))?;
    }
    let kind = if kind_name == "alert" {
        RuleKind::Alert {
            name,
            for_ms,
            keep_firing_for_ms,
            annotations: r.annotations,
        }
    } else {
        if r.for_.is_some() || r.keep_firing_for.is_some() || !r.annotations.is_empty() {
            return Err((
                line,
                format!("{what}: for, keep_firing_for and annotations belong to alerting rules"),
            ));
        }
        RuleKind::Record { name }
    };
    Ok(Rule {
        kind,
        expr: r.expr,
        labels: r.labels,
        line,
    })
}

/// The line (1-based) at or after `after` holding one of `keys` followed by
/// `value`; `after` if none does.
fn find_line(text: &str, keys: &[&str], value: &str, after: usize) -> usize {
    let first_line = value.lines().next().unwrap_or("").trim();
    text.lines()
        .enumerate()
        .skip(after.saturating_sub(1))
        .find(|(_, l)| {
            let l = l.trim_start().trim_start_matches("- ");
            keys.iter().any(|k| {
                l.strip_prefix(k).is_some_and(|rest| {
                    rest.trim().trim_matches(|c| c == '"' || c == '\'') == first_line
                        || rest.trim().starts_with('|')
                        || rest.trim().starts_with('>')
                })
            })
        })
        .map_or(after, |(i, _)| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"groups:
  - name: host
    interval: 30s
    rules:
      - record: instance:cpu_busy:ratio
        expr: 1 - avg by (host) (rate(node_cpu_seconds_total{mode="idle"}[5m]))
      - alert: DiskFull
        expr: node_filesystem_avail_bytes / node_filesystem_size_bytes < 0.05
        for: 5m
        keep_firing_for: 10m
        labels:
          severity: critical
        annotations:
          summary: "{{ $labels.mountpoint }} on {{ $labels.host }} is {{ $value | humanizePercentage }} free"
"#;

    #[test]
    fn a_good_file_loads_with_its_durations() {
        let groups = parse(Path::new("r.yml"), GOOD).unwrap();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].interval_ms, Some(30_000));
        let alert = &groups[0].rules[1];
        assert_eq!(alert.line, 7);
        match &alert.kind {
            RuleKind::Alert {
                for_ms,
                keep_firing_for_ms,
                ..
            } => assert_eq!((*for_ms, *keep_firing_for_ms), (300_000, 600_000)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn problems_name_file_line_and_reason() {
        let bad_expr = GOOD.replace("< 0.05", "< < 0.05");
        let e = parse(Path::new("r.yml"), &bad_expr).unwrap_err();
        assert_eq!(e.line, 7, "{e}");
        assert!(
            e.to_string()
                .starts_with("r.yml:7: group \"host\": alert \"DiskFull\": expr:"),
            "{e}"
        );
        let bad_for = GOOD.replace("for: 5m", "for: soon");
        assert!(parse(Path::new("r.yml"), &bad_for)
            .unwrap_err()
            .message
            .contains("invalid duration \"soon\""));
        let unknown_key = GOOD.replace("keep_firing_for", "keep_fireing_for");
        let e = parse(Path::new("r.yml"), &unknown_key).unwrap_err();
        assert_eq!(e.line, 10, "{e}");
        assert!(e.message.contains("keep_fireing_for"), "{e}");
        let bad_template = GOOD.replace("| humanizePercentage }}", "| nosuchfunc }}");
        assert!(parse(Path::new("r.yml"), &bad_template)
            .unwrap_err()
            .message
            .contains("nosuchfunc"));
        let both = GOOD.replace(
            "      - alert: DiskFull\n",
            "      - alert: DiskFull\n        record: x\n",
        );
        assert!(parse(Path::new("r.yml"), &both)
            .unwrap_err()
            .message
            .contains("both"));
        assert!(parse(Path::new("r.yml"), "groups: [").is_err());
    }
}
