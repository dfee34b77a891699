//! Aggregation operators (`sum`, `avg`, `min`, `max`, `count`,
//! `count_values`, `stddev`, `stdvar`, `topk`, `bottomk`, `quantile`,
//! `group`) with `by` and `without`, as Prometheus computes them.

use std::sync::Arc;

use promql_parser::parser::token::{self, TokenType};
use promql_parser::parser::LabelModifier;

use super::value::{format_value, LabelCache, Labels, Map, Sample, Value, METRIC_NAME};
use super::QueryError;

/// The labels an aggregation keeps for a sample's group.
fn group_labels(
    labels: &[(String, String)],
    modifier: Option<&LabelModifier>,
) -> Vec<(String, String)> {
    match modifier {
        Some(LabelModifier::Include(by)) => labels
            .iter()
            .filter(|(n, _)| by.labels.iter().any(|l| l == n))
            .cloned()
            .collect(),
        Some(LabelModifier::Exclude(without)) => labels
            .iter()
            .filter(|(n, _)| n != METRIC_NAME && !without.labels.iter().any(|l| l == n))
            .cloned()
            .collect(),
        None => Vec::new(),
    }
}

struct Group {
    labels: Labels,
    samples: Vec<Sample>,
}

/// Evaluates an aggregation of `input` at `t`.
pub fn eval(
    op: TokenType,
    modifier: Option<&LabelModifier>,
    param: Option<Value>,
    input: Vec<Sample>,
    t: i64,
    cache: &LabelCache,
    node: usize,
) -> Result<Value, QueryError> {
    let scalar_param = |what: &str| -> Result<f64, QueryError> {
        match &param {
            Some(Value::Scalar(v)) => Ok(*v),
            _ => Err(QueryError::Execution(format!(
                "{what} needs a scalar parameter"
            ))),
        }
    };
    if op.id() == token::T_COUNT_VALUES {
        let Some(Value::String(label)) = &param else {
            return Err(QueryError::Execution(
                "count_values needs a string parameter".into(),
            ));
        };
        return count_values(label, modifier, input, t);
    }
    let mut groups: Vec<Group> = Vec::new();
    // Group label sets are interned by the cache: equal sets, one pointer.
    let mut by_key: Map<usize, usize> = Map::default();
    for s in input {
        let key = cache.derive(node, &s.labels, |l| group_labels(l, modifier));
        let at = *by_key.entry(Arc::as_ptr(&key) as usize).or_insert_with(|| {
            groups.push(Group {
                labels: key,
                samples: Vec::new(),
            });
            groups.len() - 1
        });
        groups[at].samples.push(s);
    }
    let mut out = Vec::new();
    match op.id() {
        token::T_TOPK | token::T_BOTTOMK => {
            let k = scalar_param("topk/bottomk")?;
            if k.is_nan() {
                return Err(QueryError::Execution("parameter k cannot be NaN".into()));
            }
            let k = if k >= 1.0 { k.min(1e9) as usize } else { 0 };
            let top = op.id() == token::T_TOPK;
            for g in groups {
                let mut samples = g.samples;
                // NaN sorts last either way, as Prometheus keeps it out of
                // the top unless nothing else is left.
                samples.sort_by(|a, b| order(a.v, b.v, top));
                out.extend(samples.into_iter().take(k).map(|s| Sample { t, ..s }));
            }
        }
        _ => {
            let q = if op.id() == token::T_QUANTILE {
                Some(scalar_param("quantile")?)
            } else {
                None
            };
            for g in groups {
                let values: Vec<f64> = g.samples.iter().map(|s| s.v).collect();
                let v = reduce(op, &values, q)?;
                out.push(Sample {
                    labels: g.labels,
                    t,
                    v,
                });
            }
        }
    }
    Ok(Value::Vector(out))
}

/// Sort order for topk (descending) and bottomk (ascending), NaN last.
fn order(a: f64, b: f64, descending: bool) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ if descending => b.partial_cmp(&a).unwrap_or(Ordering::Equal),
        _ => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

fn reduce(op: TokenType, values: &[f64], q: Option<f64>) -> Result<f64, QueryError> {
    let n = values.len() as f64;
    Ok(match op.id() {
        token::T_SUM => kahan_sum(values),
        token::T_AVG => mean(values),
        token::T_COUNT => n,
        token::T_GROUP => 1.0,
        token::T_MIN => {
            values
                .iter()
                .copied()
                .fold(f64::NAN, |m, v| if m.is_nan() || v < m { v } else { m })
        }
        token::T_MAX => {
            values
                .iter()
                .copied()
                .fold(f64::NAN, |m, v| if m.is_nan() || v > m { v } else { m })
        }
        token::T_STDDEV => variance(values).sqrt(),
        token::T_STDVAR => variance(values),
        token::T_QUANTILE => quantile(q.unwrap_or(f64::NAN), values),
        _ => {
            return Err(QueryError::Execution(format!(
                "aggregation {op} is not supported"
            )))
        }
    })
}

/// Sum with Kahan-Babuška compensation, as Prometheus sums.
pub fn kahan_sum(values: &[f64]) -> f64 {
    let (mut sum, mut c) = (0.0f64, 0.0f64);
    for &v in values {
        let t = sum + v;
        if t.is_infinite() {
            c = 0.0;
        } else if sum.abs() >= v.abs() {
            c += (sum - t) + v;
        } else {
            c += (v - t) + sum;
        }
        sum = t;
    }
    if sum.is_infinite() {
        sum
    } else {
        sum + c
    }
}

/// Mean as Prometheus computes it: a plain sum divided by the count,
/// switching to an incremental mean only if the sum would overflow.
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let sum = kahan_sum(values);
    if sum.is_finite() || values.iter().any(|v| v.is_infinite() || v.is_nan()) {
        return sum / values.len() as f64;
    }
    let mut m = 0.0;
    for (i, v) in values.iter().enumerate() {
        m += v / (i + 1) as f64 - m / (i + 1) as f64;
    }
    m
}

/// Population variance (Welford), as stdvar.
pub fn variance(values: &[f64]) -> f64 {
    let (mut count, mut mean, mut m2) = (0.0f64, 0.0f64, 0.0f64);
    for &v in values {
        count += 1.0;
        let delta = v - mean;
        mean += delta / count;
        m2 += delta * (v - mean);
    }
    if count == 0.0 {
        f64::NAN
    } else {
        m2 / count
    }
}

/// The φ-quantile of values, interpolating linearly (Prometheus'
/// `quantile`): −Inf below 0, +Inf above 1, NaN for NaN or no values.
pub fn quantile(q: f64, values: &[f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = sorted.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    sorted[lower as usize] * (1.0 - weight) + sorted[upper as usize] * weight
}

fn count_values(
    label: &str,
    modifier: Option<&LabelModifier>,
    input: Vec<Sample>,
    t: i64,
) -> Result<Value, QueryError> {
    if !valid_label_name(label) {
        return Err(QueryError::Execution(format!(
            "invalid label name {label:?}"
        )));
    }
    let mut counts: Map<Vec<(String, String)>, f64> = Map::default();
    let mut order: Vec<Vec<(String, String)>> = Vec::new();
    for s in input {
        let mut labels = group_labels(&s.labels, modifier);
        super::value::set(&mut labels, label, &format_value(s.v));
        let entry = counts.entry(labels.clone()).or_insert_with(|| {
            order.push(labels);
            0.0
        });
        *entry += 1.0;
    }
    Ok(Value::Vector(
        order
            .into_iter()
            .map(|labels| {
                let v = counts.get(&labels).copied().unwrap_or(0.0);
                Sample {
                    labels: Labels::new(labels),
                    t,
                    v,
                }
            })
            .collect(),
    ))
}

/// Prometheus' label name rule: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates_and_bounds() {
        assert_eq!(quantile(0.5, &[1.0, 2.0, 3.0, 4.0]), 2.5);
        assert_eq!(quantile(0.0, &[3.0, 1.0]), 1.0);
        assert_eq!(quantile(1.0, &[3.0, 1.0]), 3.0);
        assert_eq!(quantile(-1.0, &[1.0]), f64::NEG_INFINITY);
        assert_eq!(quantile(2.0, &[1.0]), f64::INFINITY);
        assert!(quantile(0.5, &[]).is_nan());
    }

    #[test]
    fn sums_compensate_and_variance_is_population() {
        assert_eq!(kahan_sum(&[1e16, 1.0, -1e16]), 1.0);
        assert_eq!(variance(&[1.0, 3.0]), 1.0);
        assert_eq!(mean(&[f64::MAX, f64::MAX]), f64::MAX);
    }
}
