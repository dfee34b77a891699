//! PromQL's functions, computed as Prometheus computes them: the rate
//! family with its extrapolation and counter-reset handling, the
//! `*_over_time` family, math, clamping, time, label manipulation, sorting
//! and `histogram_quantile`.

use std::sync::Arc;

use promql_parser::parser::{Call, Expr};

use super::aggregate::{kahan_sum, mean, quantile, valid_label_name, variance};
use super::eval::{matchers, unwrap_parens, Evaluator};
use super::value::{get, set, LabelPairs, Labels, Map, Sample, Series, Set, Value, METRIC_NAME};
use super::QueryError;

/// Calls `call` at time `t`.
pub fn call(ev: &Evaluator<'_>, call: &Call, t: i64) -> Result<Value, QueryError> {
    let name = call.func.name;
    let args = &call.args.args;
    let arg = |i: usize| -> Result<&Expr, QueryError> {
        args.get(i)
            .map(|a| a.as_ref())
            .ok_or_else(|| QueryError::BadData(format!("{name}: missing argument {}", i + 1)))
    };
    let scalar = |i: usize| -> Result<f64, QueryError> {
        match ev.eval(arg(i)?, t)? {
            Value::Scalar(v) => Ok(v),
            other => Err(QueryError::Execution(format!(
                "{name}: argument {} is a {}, expected a scalar",
                i + 1,
                other.type_name()
            ))),
        }
    };
    let string = |i: usize| -> Result<String, QueryError> {
        match ev.eval(arg(i)?, t)? {
            Value::String(s) => Ok(s),
            other => Err(QueryError::Execution(format!(
                "{name}: argument {} is a {}, expected a string",
                i + 1,
                other.type_name()
            ))),
        }
    };
    let vector = |i: usize| -> Result<Vec<Sample>, QueryError> {
        match ev.eval(arg(i)?, t)? {
            Value::Vector(v) => Ok(v),
            other => Err(QueryError::Execution(format!(
                "{name}: argument {} is a {}, expected an instant vector",
                i + 1,
                other.type_name()
            ))),
        }
    };
    // A function of each sample's value that drops the metric name.
    let map = |f: &dyn Fn(f64) -> f64| -> Result<Value, QueryError> {
        Ok(Value::Vector(
            vector(0)?
                .into_iter()
                .map(|s| Sample {
                    labels: ev.labels().without_name(&s.labels),
                    t,
                    v: f(s.v),
                })
                .collect(),
        ))
    };
    match name {
        "rate" => over_range(ev, arg(0)?, t, |pts, (s, e)| {
            extrapolated(pts, s, e, true, true)
        }),
        "increase" => over_range(ev, arg(0)?, t, |pts, (s, e)| {
            extrapolated(pts, s, e, true, false)
        }),
        "delta" => over_range(ev, arg(0)?, t, |pts, (s, e)| {
            extrapolated(pts, s, e, false, false)
        }),
        "irate" => over_range(ev, arg(0)?, t, |pts, _| instant_change(pts, true)),
        "idelta" => over_range(ev, arg(0)?, t, |pts, _| instant_change(pts, false)),
        "deriv" => over_range(ev, arg(0)?, t, |pts, _| {
            (pts.len() >= 2).then(|| linear_regression(pts, pts[0].0).0)
        }),
        "predict_linear" => {
            let duration = scalar(1)?;
            over_range(ev, arg(0)?, t, |pts, _| {
                (pts.len() >= 2).then(|| {
                    let (slope, intercept) = linear_regression(pts, t);
                    slope * duration + intercept
                })
            })
        }
        "avg_over_time" => over_range(ev, arg(0)?, t, |pts, _| Some(mean(&values(pts)))),
        "sum_over_time" => over_range(ev, arg(0)?, t, |pts, _| Some(kahan_sum(&values(pts)))),
        "count_over_time" => over_range(ev, arg(0)?, t, |pts, _| Some(pts.len() as f64)),
        "min_over_time" => over_range(ev, arg(0)?, t, |pts, _| {
            Some(pts.iter().fold(
                f64::NAN,
                |m, (_, v)| if m.is_nan() || *v < m { *v } else { m },
            ))
        }),
        "max_over_time" => over_range(ev, arg(0)?, t, |pts, _| {
            Some(pts.iter().fold(
                f64::NAN,
                |m, (_, v)| if m.is_nan() || *v > m { *v } else { m },
            ))
        }),
        "last_over_time" => last_over_time(ev, arg(0)?, t),
        "present_over_time" => over_range(ev, arg(0)?, t, |_, _| Some(1.0)),
        "stddev_over_time" => {
            over_range(ev, arg(0)?, t, |pts, _| Some(variance(&values(pts)).sqrt()))
        }
        "stdvar_over_time" => over_range(ev, arg(0)?, t, |pts, _| Some(variance(&values(pts)))),
        "quantile_over_time" => {
            let q = scalar(0)?;
            over_range(ev, arg(1)?, t, |pts, _| Some(quantile(q, &values(pts))))
        }
        "changes" => over_range(ev, arg(0)?, t, |pts, _| {
            Some(
                pts.windows(2)
                    .filter(|w| !(w[0].1 == w[1].1 || (w[0].1.is_nan() && w[1].1.is_nan())))
                    .count() as f64,
            )
        }),
        "resets" => over_range(ev, arg(0)?, t, |pts, _| {
            Some(pts.windows(2).filter(|w| w[1].1 < w[0].1).count() as f64)
        }),
        "absent" => absent(ev, arg(0)?, t, false),
        "absent_over_time" => absent(ev, arg(0)?, t, true),
        "abs" => map(&f64::abs),
        "ceil" => map(&f64::ceil),
        "floor" => map(&f64::floor),
        "sqrt" => map(&f64::sqrt),
        "exp" => map(&f64::exp),
        "ln" => map(&f64::ln),
        "log2" => map(&f64::log2),
        "log10" => map(&f64::log10),
        "sgn" => map(&|v| {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                v
            }
        }),
        "round" => {
            let to = if args.len() > 1 { scalar(1)? } else { 1.0 };
            let inverse = 1.0 / to;
            map(&|v| (v * inverse + 0.5).floor() / inverse)
        }
        "clamp" => {
            let (lo, hi) = (scalar(1)?, scalar(2)?);
            if hi < lo {
                return Ok(Value::Vector(Vec::new()));
            }
            map(&|v| v.max(lo).min(hi))
        }
        "clamp_min" => {
            let lo = scalar(1)?;
            map(&|v| v.max(lo))
        }
        "clamp_max" => {
            let hi = scalar(1)?;
            map(&|v| v.min(hi))
        }
        "time" => Ok(Value::Scalar(t as f64 / 1000.0)),
        "timestamp" => timestamp(ev, arg(0)?, t),
        "vector" => Ok(Value::Vector(vec![Sample {
            labels: Arc::new(Vec::new()),
            t,
            v: scalar(0)?,
        }])),
        "scalar" => {
            let v = vector(0)?;
            Ok(Value::Scalar(if v.len() == 1 { v[0].v } else { f64::NAN }))
        }
        "sort" | "sort_desc" => {
            let mut v = vector(0)?;
            let desc = name == "sort_desc";
            v.sort_by(|a, b| {
                use std::cmp::Ordering;
                match (a.v.is_nan(), b.v.is_nan()) {
                    (true, true) => Ordering::Equal,
                    (true, false) => Ordering::Greater,
                    (false, true) => Ordering::Less,
                    _ if desc => b.v.partial_cmp(&a.v).unwrap_or(Ordering::Equal),
                    _ => a.v.partial_cmp(&b.v).unwrap_or(Ordering::Equal),
                }
            });
            Ok(Value::Vector(
                v.into_iter().map(|s| Sample { t, ..s }).collect(),
            ))
        }
        "label_replace" => {
            let v = vector(0)?;
            let (dst, replacement, src, regex) = (string(1)?, string(2)?, string(3)?, string(4)?);
            label_replace(v, &dst, &replacement, &src, &regex, t)
        }
        "label_join" => {
            let v = vector(0)?;
            let (dst, sep) = (string(1)?, string(2)?);
            let mut srcs = Vec::new();
            for i in 3..args.len() {
                srcs.push(string(i)?);
            }
            label_join(v, &dst, &sep, &srcs, t)
        }
        "histogram_quantile" => {
            let q = scalar(0)?;
            Ok(Value::Vector(histogram_quantile(q, vector(1)?, t)))
        }
        "day_of_week" | "day_of_month" | "day_of_year" | "days_in_month" | "hour" | "minute"
        | "month" | "year" => {
            let input = if args.is_empty() {
                vec![Sample {
                    labels: Arc::new(Vec::new()),
                    t,
                    v: t as f64 / 1000.0,
                }]
            } else {
                vector(0)?
            };
            Ok(Value::Vector(
                input
                    .into_iter()
                    .map(|s| Sample {
                        labels: ev.labels().without_name(&s.labels),
                        t,
                        v: calendar(name, s.v),
                    })
                    .collect(),
            ))
        }
        _ => Err(QueryError::BadData(format!(
            "function {name:?} is not supported"
        ))),
    }
}

fn values(points: &[(i64, f64)]) -> Vec<f64> {
    points.iter().map(|(_, v)| *v).collect()
}

/// A function of each series' points in a range: one sample per series
/// where `f` gives a value, metric name dropped.
fn over_range(
    ev: &Evaluator<'_>,
    expr: &Expr,
    t: i64,
    f: impl Fn(&[(i64, f64)], (i64, i64)) -> Option<f64>,
) -> Result<Value, QueryError> {
    let (series, bounds) = ev.range_arg(expr, t)?;
    Ok(Value::Vector(
        series
            .into_iter()
            .filter_map(|s| {
                let v = f(&s.points, bounds)?;
                Some(Sample {
                    labels: ev.labels().without_name(&s.labels),
                    t,
                    v,
                })
            })
            .collect(),
    ))
}

/// `last_over_time` keeps the metric name.
fn last_over_time(ev: &Evaluator<'_>, expr: &Expr, t: i64) -> Result<Value, QueryError> {
    let (series, _) = ev.range_arg(expr, t)?;
    Ok(Value::Vector(
        series
            .into_iter()
            .filter_map(|s| {
                let &(_, v) = s.points.last()?;
                Some(Sample {
                    labels: s.labels,
                    t,
                    v,
                })
            })
            .collect(),
    ))
}

/// rate, increase and delta: the change over the points, corrected for
/// counter resets, extrapolated to the range's edges (Prometheus'
/// `extrapolatedRate`).
fn extrapolated(
    points: &[(i64, f64)],
    range_start: i64,
    range_end: i64,
    counter: bool,
    per_second: bool,
) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (first_t, first_v) = points[0];
    let (last_t, last_v) = points[points.len() - 1];
    let mut result = last_v - first_v;
    if counter {
        let mut prev = first_v;
        for &(_, v) in &points[1..] {
            if v < prev {
                result += prev;
            }
            prev = v;
        }
    }
    let mut to_start = (first_t - range_start) as f64 / 1000.0;
    let to_end = (range_end - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let average = sampled / (points.len() - 1) as f64;
    if counter && result > 0.0 && first_v >= 0.0 {
        let to_zero = sampled * (first_v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = average * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        average / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        average / 2.0
    };
    result *= interval / sampled;
    if per_second {
        result /= (range_end - range_start) as f64 / 1000.0;
    }
    Some(result)
}

/// irate and idelta: from the last two points.
fn instant_change(points: &[(i64, f64)], rate: bool) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (t1, v1) = points[points.len() - 2];
    let (t2, v2) = points[points.len() - 1];
    let mut result = if rate && v2 < v1 { v2 } else { v2 - v1 };
    if rate {
        let interval = (t2 - t1) as f64 / 1000.0;
        if interval == 0.0 {
            return None;
        }
        result /= interval;
    }
    Some(result)
}

/// Least-squares slope and intercept, x in seconds from `intercept_t`.
fn linear_regression(points: &[(i64, f64)], intercept_t: i64) -> (f64, f64) {
    let (mut n, mut sum_x, mut sum_y, mut sum_xy, mut sum_x2) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let first = points[0].1;
    let mut constant = true;
    for &(t, v) in points {
        if v != first {
            constant = false;
        }
        n += 1.0;
        let x = (t - intercept_t) as f64 / 1000.0;
        sum_x += x;
        sum_y += v;
        sum_xy += x * v;
        sum_x2 += x * x;
    }
    if constant {
        if first.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, first);
    }
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

/// `timestamp(v)`: each sample's own time, for a selector; the evaluation
/// time otherwise.
fn timestamp(ev: &Evaluator<'_>, expr: &Expr, t: i64) -> Result<Value, QueryError> {
    let samples = match unwrap_parens(expr) {
        Expr::VectorSelector(vs) => ev.instant(vs, t),
        other => match ev.eval(other, t)? {
            Value::Vector(v) => v,
            v => {
                return Err(QueryError::Execution(format!(
                    "timestamp of a {}",
                    v.type_name()
                )))
            }
        },
    };
    Ok(Value::Vector(
        samples
            .into_iter()
            .map(|s| Sample {
                labels: ev.labels().without_name(&s.labels),
                t,
                v: s.t as f64 / 1000.0,
            })
            .collect(),
    ))
}

/// absent and absent_over_time: nothing if the argument has samples, else
/// one sample of 1 labelled with the selector's equality matchers.
fn absent(ev: &Evaluator<'_>, expr: &Expr, t: i64, over_time: bool) -> Result<Value, QueryError> {
    let empty = if over_time {
        ev.range_arg(expr, t)?.0.is_empty()
    } else {
        match ev.eval(expr, t)? {
            Value::Vector(v) => v.is_empty(),
            other => {
                return Err(QueryError::Execution(format!(
                    "absent of a {}",
                    other.type_name()
                )))
            }
        }
    };
    if !empty {
        return Ok(Value::Vector(Vec::new()));
    }
    let selector = match unwrap_parens(expr) {
        Expr::VectorSelector(vs) => Some(vs),
        Expr::MatrixSelector(ms) => Some(&ms.vs),
        _ => None,
    };
    let mut labels: Vec<(String, String)> = Vec::new();
    if let Some(vs) = selector {
        let groups = matchers(vs)?;
        if groups.len() == 1 {
            let mut seen: Map<String, usize> = Map::default();
            for m in &groups[0] {
                *seen.entry(m.name.clone()).or_default() += 1;
            }
            for m in &groups[0] {
                if let crate::storage::index::MatchOp::Equal(v) = &m.op {
                    if m.name != METRIC_NAME && seen.get(&m.name) == Some(&1) {
                        set(&mut labels, &m.name, v);
                    }
                }
            }
        }
    }
    Ok(Value::Vector(vec![Sample {
        labels: Arc::new(labels),
        t,
        v: 1.0,
    }]))
}

fn label_replace(
    v: Vec<Sample>,
    dst: &str,
    replacement: &str,
    src: &str,
    regex: &str,
    t: i64,
) -> Result<Value, QueryError> {
    let re = regex::Regex::new(&format!("^(?s:{regex})$")).map_err(|e| {
        QueryError::Execution(format!(
            "invalid regular expression in label_replace(): {e}"
        ))
    })?;
    if !valid_label_name(dst) {
        return Err(QueryError::Execution(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let mut out = Vec::with_capacity(v.len());
    for s in v {
        let value = get(&s.labels, src).unwrap_or("");
        let labels = match re.captures(value) {
            Some(caps) => {
                let mut expanded = String::new();
                caps.expand(replacement, &mut expanded);
                let mut l = s.labels.as_ref().clone();
                set(&mut l, dst, &expanded);
                Arc::new(l)
            }
            None => s.labels,
        };
        out.push(Sample { labels, t, v: s.v });
    }
    check_unique(&out, "label_replace")?;
    Ok(Value::Vector(out))
}

fn label_join(
    v: Vec<Sample>,
    dst: &str,
    sep: &str,
    srcs: &[String],
    t: i64,
) -> Result<Value, QueryError> {
    if !valid_label_name(dst) {
        return Err(QueryError::Execution(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let mut out = Vec::with_capacity(v.len());
    for s in v {
        let joined: Vec<&str> = srcs
            .iter()
            .map(|n| get(&s.labels, n).unwrap_or(""))
            .collect();
        let mut l = s.labels.as_ref().clone();
        set(&mut l, dst, &joined.join(sep));
        out.push(Sample {
            labels: Arc::new(l),
            t,
            v: s.v,
        });
    }
    check_unique(&out, "label_join")?;
    Ok(Value::Vector(out))
}

fn check_unique(v: &[Sample], function: &str) -> Result<(), QueryError> {
    let mut seen = Set::default();
    for s in v {
        if !seen.insert(&s.labels) {
            return Err(QueryError::Execution(format!(
                "vector cannot contain metrics with the same labelset (after {function})"
            )));
        }
    }
    Ok(())
}

/// Prometheus' `histogram_quantile` over classic buckets (`le` labels).
fn histogram_quantile(q: f64, input: Vec<Sample>, t: i64) -> Vec<Sample> {
    let mut groups: Map<LabelPairs, Vec<(f64, f64)>> = Map::default();
    let mut order: Vec<Vec<(String, String)>> = Vec::new();
    for s in input {
        let Some(le) = get(&s.labels, "le").and_then(|le| le.trim().parse::<f64>().ok()) else {
            continue;
        };
        let key: Vec<(String, String)> = s
            .labels
            .iter()
            .filter(|(n, _)| n != "le" && n != METRIC_NAME)
            .cloned()
            .collect();
        groups
            .entry(key.clone())
            .or_insert_with(|| {
                order.push(key);
                Vec::new()
            })
            .push((le, s.v));
    }
    order
        .into_iter()
        .filter_map(|key| {
            let buckets = groups.remove(&key)?;
            Some(Sample {
                labels: Arc::new(key),
                t,
                v: bucket_quantile(q, buckets),
            })
        })
        .collect()
}

fn bucket_quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    if buckets.len() < 2 || buckets.last().is_none_or(|(le, _)| *le != f64::INFINITY) {
        return f64::NAN;
    }
    // Merge equal bounds, then force monotonic counts.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for (le, c) in buckets {
        match merged.last_mut() {
            Some(last) if last.0 == le => last.1 += c,
            _ => merged.push((le, c)),
        }
    }
    let mut max = f64::NEG_INFINITY;
    for b in &mut merged {
        if b.1 > max {
            max = b.1;
        } else {
            b.1 = max;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let rank = q * observations;
    let b = merged
        .partition_point(|(_, c)| *c < rank)
        .min(merged.len() - 1);
    if b == merged.len() - 1 {
        return merged[merged.len() - 2].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let (mut start, end, mut count, mut rank) = (0.0, merged[b].0, merged[b].1, rank);
    if b > 0 {
        start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

/// The calendar functions, on a Unix time in seconds (UTC).
fn calendar(name: &str, seconds: f64) -> f64 {
    if !seconds.is_finite() {
        return f64::NAN;
    }
    let Ok(dt) = time::OffsetDateTime::from_unix_timestamp(seconds.floor() as i64) else {
        return f64::NAN;
    };
    match name {
        "day_of_week" => f64::from(dt.weekday().number_days_from_sunday()),
        "day_of_month" => f64::from(dt.day()),
        "day_of_year" => f64::from(dt.ordinal()),
        "days_in_month" => f64::from(dt.month().length(dt.year())),
        "hour" => f64::from(dt.hour()),
        "minute" => f64::from(dt.minute()),
        "month" => f64::from(u8::from(dt.month())),
        "year" => f64::from(dt.year()),
        _ => f64::NAN,
    }
}

/// The value of a range query at every step, as series. Series are found
/// by their label set's address first (a series keeps one `Arc` across
/// steps), by its content otherwise.
pub fn collect_steps(steps: Vec<(i64, Value)>) -> Result<Vec<Series>, QueryError> {
    let mut series: Vec<Series> = Vec::new();
    let mut by_ptr: Map<usize, usize> = Map::default();
    let mut by_content: Map<Labels, usize> = Map::default();
    let empty: Labels = Arc::new(Vec::new());
    for (t, value) in steps {
        let samples = match value {
            Value::Vector(v) => v,
            Value::Scalar(v) => vec![Sample {
                labels: empty.clone(),
                t,
                v,
            }],
            other => {
                return Err(QueryError::BadData(format!(
                    "range queries need an instant vector or scalar expression, got {}",
                    other.type_name()
                )))
            }
        };
        for s in samples {
            let ptr = Arc::as_ptr(&s.labels) as usize;
            let at = match by_ptr.get(&ptr) {
                Some(at) => *at,
                None => {
                    let at = *by_content.entry(s.labels.clone()).or_insert_with(|| {
                        series.push(Series {
                            labels: s.labels.clone(),
                            points: Vec::new(),
                        });
                        series.len() - 1
                    });
                    // Keep the sample's set alive so its address stays its own.
                    if Arc::ptr_eq(&series[at].labels, &s.labels) {
                        by_ptr.insert(ptr, at);
                    }
                    at
                }
            };
            let points = &mut series[at].points;
            if points.last().is_some_and(|(pt, _)| *pt == t) {
                return Err(QueryError::Execution(
                    "vector cannot contain metrics with the same labelset".into(),
                ));
            }
            points.push((t, s.v));
        }
    }
    Ok(series)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_extrapolates_to_the_range_edges() {
        // 0..=60 s at 10 s, +10 each: 60 over 60 s, range 60 s.
        let points: Vec<(i64, f64)> = (0..=6).map(|i| (i * 10_000, i as f64 * 10.0)).collect();
        let r = extrapolated(&points, 0, 60_000, true, true).unwrap();
        assert!((r - 1.0).abs() < 1e-12, "{r}");
        // A counter reset adds the value before it.
        let reset = [(0, 10.0), (10_000, 20.0), (20_000, 5.0)];
        let inc = extrapolated(&reset, 0, 20_000, true, false).unwrap();
        assert!((inc - 15.0).abs() < 1e-9, "{inc}");
    }

    #[test]
    fn bucket_quantile_interpolates_within_the_bucket() {
        let buckets = vec![(0.1, 10.0), (0.5, 20.0), (1.0, 40.0), (f64::INFINITY, 40.0)];
        let v = bucket_quantile(0.5, buckets);
        assert!((v - 0.5).abs() < 1e-12, "{v}");
        assert!(bucket_quantile(0.5, vec![(1.0, 1.0)]).is_nan());
    }

    #[test]
    fn calendar_functions_in_utc() {
        // 2026-11-25 (a Wednesday) 14:30:00 UTC.
        let t = 1_795_617_000.0;
        assert_eq!(calendar("day_of_week", t), 3.0);
        assert_eq!(calendar("hour", t), 14.0);
        assert_eq!(calendar("days_in_month", t), 30.0);
    }
}
