//! Binary operators: arithmetic, comparison (filtering or with `bool`) and
//! set operators, between scalars and vectors, with `on`/`ignoring` and
//! `group_left`/`group_right` vector matching, as Prometheus defines them.

use std::sync::Arc;

use promql_parser::parser::token::{self, TokenType};
use promql_parser::parser::{BinModifier, BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::value::{LabelCache, Labels, Map, Sample, Set, Value, METRIC_NAME};
use super::QueryError;

/// Applies an arithmetic or comparison operator to two numbers: the
/// result, and whether a comparison held.
fn apply(op: TokenType, l: f64, r: f64) -> (f64, bool) {
    match op.id() {
        token::T_ADD => (l + r, true),
        token::T_SUB => (l - r, true),
        token::T_MUL => (l * r, true),
        token::T_DIV => (l / r, true),
        token::T_MOD => (l % r, true),
        token::T_POW => (l.powf(r), true),
        token::T_ATAN2 => (l.atan2(r), true),
        token::T_EQLC => (l, l == r),
        token::T_NEQ => (l, l != r),
        token::T_GTR => (l, l > r),
        token::T_LSS => (l, l < r),
        token::T_GTE => (l, l >= r),
        token::T_LTE => (l, l <= r),
        _ => (f64::NAN, false),
    }
}

/// Evaluates `lhs op rhs`, both already evaluated at `t`.
pub fn eval(
    b: &BinaryExpr,
    lhs: Value,
    rhs: Value,
    t: i64,
    cache: &LabelCache,
) -> Result<Value, QueryError> {
    let op = b.op;
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    let comparison = op.is_comparison_operator();
    match (lhs, rhs) {
        (Value::Scalar(l), Value::Scalar(r)) => {
            let (v, keep) = apply(op, l, r);
            Ok(Value::Scalar(if comparison {
                if keep {
                    1.0
                } else {
                    0.0
                }
            } else {
                v
            }))
        }
        (Value::Vector(vec), Value::Scalar(s)) => Ok(Value::Vector(vector_scalar(
            op,
            vec,
            s,
            false,
            return_bool,
            t,
            cache,
        ))),
        (Value::Scalar(s), Value::Vector(vec)) => Ok(Value::Vector(vector_scalar(
            op,
            vec,
            s,
            true,
            return_bool,
            t,
            cache,
        ))),
        (Value::Vector(l), Value::Vector(r)) => {
            let modifier = b.modifier.clone().unwrap_or_default();
            if op.is_set_operator() {
                Ok(Value::Vector(set_op(op, &modifier, l, r, t)))
            } else {
                vector_vector(op, &modifier, l, r, t).map(Value::Vector)
            }
        }
        (l, r) => Err(QueryError::Execution(format!(
            "operator {op} between a {} and a {}",
            l.type_name(),
            r.type_name()
        ))),
    }
}

fn vector_scalar(
    op: TokenType,
    vec: Vec<Sample>,
    s: f64,
    scalar_left: bool,
    return_bool: bool,
    t: i64,
    cache: &LabelCache,
) -> Vec<Sample> {
    let comparison = op.is_comparison_operator();
    vec.into_iter()
        .filter_map(|sample| {
            let (l, r) = if scalar_left {
                (s, sample.v)
            } else {
                (sample.v, s)
            };
            let (mut v, keep) = apply(op, l, r);
            if comparison && scalar_left {
                // The vector's own value is the result, even on the right.
                v = sample.v;
            }
            if return_bool {
                v = if keep { 1.0 } else { 0.0 };
            } else if !keep {
                return None;
            }
            let labels = if !comparison || return_bool {
                cache.without_name(&sample.labels)
            } else {
                sample.labels
            };
            Some(Sample { labels, t, v })
        })
        .collect()
}

/// The labels that decide which samples match: `on` keeps the listed
/// ones, `ignoring` (and the default) drops them and the metric name.
fn signature(
    labels: &[(String, String)],
    matching: Option<&LabelModifier>,
) -> Vec<(String, String)> {
    match matching {
        Some(LabelModifier::Include(on)) => labels
            .iter()
            .filter(|(n, _)| on.labels.iter().any(|l| l == n))
            .cloned()
            .collect(),
        Some(LabelModifier::Exclude(ignoring)) => labels
            .iter()
            .filter(|(n, _)| n != METRIC_NAME && !ignoring.labels.iter().any(|l| l == n))
            .cloned()
            .collect(),
        None => labels
            .iter()
            .filter(|(n, _)| n != METRIC_NAME)
            .cloned()
            .collect(),
    }
}

fn set_op(op: TokenType, m: &BinModifier, l: Vec<Sample>, r: Vec<Sample>, t: i64) -> Vec<Sample> {
    let matching = m.matching.as_ref();
    let right: Set<Vec<(String, String)>> =
        r.iter().map(|s| signature(&s.labels, matching)).collect();
    match op.id() {
        token::T_LAND => l
            .into_iter()
            .filter(|s| right.contains(&signature(&s.labels, matching)))
            .map(|s| Sample { t, ..s })
            .collect(),
        token::T_LUNLESS => l
            .into_iter()
            .filter(|s| !right.contains(&signature(&s.labels, matching)))
            .map(|s| Sample { t, ..s })
            .collect(),
        _ => {
            let left: Set<Vec<(String, String)>> =
                l.iter().map(|s| signature(&s.labels, matching)).collect();
            let mut out: Vec<Sample> = l.into_iter().map(|s| Sample { t, ..s }).collect();
            out.extend(
                r.into_iter()
                    .filter(|s| !left.contains(&signature(&s.labels, matching)))
                    .map(|s| Sample { t, ..s }),
            );
            out
        }
    }
}

fn vector_vector(
    op: TokenType,
    m: &BinModifier,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    t: i64,
) -> Result<Vec<Sample>, QueryError> {
    let matching = m.matching.as_ref();
    let comparison = op.is_comparison_operator();
    // The "one" side is indexed; group_right swaps the roles.
    let (many, one, swapped, include) = match &m.card {
        VectorMatchCardinality::OneToMany(include) => (rhs, lhs, true, include.labels.clone()),
        VectorMatchCardinality::ManyToOne(include) => (lhs, rhs, false, include.labels.clone()),
        _ => (lhs, rhs, false, Vec::new()),
    };
    let one_to_one = matches!(m.card, VectorMatchCardinality::OneToOne);
    let mut index: Map<Vec<(String, String)>, &Sample> = Map::default();
    for s in &one {
        let sig = signature(&s.labels, matching);
        if index.insert(sig.clone(), s).is_some() {
            return Err(QueryError::Execution(format!(
                "found duplicate series for the match group {} on the {} hand-side of the operation; many-to-many matching not allowed: matching labels must be unique on one side",
                format_labels(&sig),
                if swapped { "left" } else { "right" }
            )));
        }
    }
    let mut matched_many: Set<Vec<(String, String)>> = Set::default();
    let mut out_labels: Set<Labels> = Set::default();
    let mut out = Vec::new();
    for s in &many {
        let sig = signature(&s.labels, matching);
        let Some(other) = index.get(&sig) else {
            continue;
        };
        if one_to_one && !matched_many.insert(sig.clone()) {
            return Err(QueryError::Execution(format!(
                "found duplicate series for the match group {} on the left hand-side of the operation; many-to-many matching not allowed: matching labels must be unique on one side",
                format_labels(&sig)
            )));
        }
        let (l, r) = if swapped {
            (other.v, s.v)
        } else {
            (s.v, other.v)
        };
        let (mut v, keep) = apply(op, l, r);
        if m.return_bool {
            v = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        let labels = result_labels(&s.labels, &other.labels, op, m, &include, comparison);
        if !one_to_one && !out_labels.insert(labels.clone()) {
            return Err(QueryError::Execution(
                "multiple matches for labels: grouping labels must ensure unique matches".into(),
            ));
        }
        out.push(Sample { labels, t, v });
    }
    Ok(out)
}

/// The labels of a result sample: those of the "many" side, less the
/// metric name for arithmetic and `bool`, reduced to `on` or less
/// `ignoring` for one-to-one matches, plus the `group_*` labels copied
/// from the "one" side.
fn result_labels(
    many: &Labels,
    one: &Labels,
    op: TokenType,
    m: &BinModifier,
    include: &[String],
    comparison: bool,
) -> Labels {
    let mut labels: Vec<(String, String)> = many.as_ref().clone();
    if !comparison || m.return_bool {
        labels.retain(|(n, _)| n != METRIC_NAME);
    }
    if matches!(m.card, VectorMatchCardinality::OneToOne) {
        match &m.matching {
            Some(LabelModifier::Include(on)) => {
                labels.retain(|(n, _)| on.labels.iter().any(|l| l == n));
            }
            Some(LabelModifier::Exclude(ignoring)) => {
                labels.retain(|(n, _)| !ignoring.labels.iter().any(|l| l == n));
            }
            None => {}
        }
    }
    for name in include {
        let value = super::value::get(one, name).unwrap_or("");
        super::value::set(&mut labels, name, value);
    }
    let _ = op;
    Arc::new(labels)
}

/// `{a="1", b="2"}`, for error messages.
pub fn format_labels(labels: &[(String, String)]) -> String {
    let inner: Vec<String> = labels.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}
