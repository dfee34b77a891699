//! PromQL over the store: parsed by the `promql-parser` crate, evaluated
//! here ([`eval`]) with Prometheus 2's semantics — a 5-minute lookback,
//! staleness markers, closed range windows, rate extrapolation — so that
//! Grafana's Prometheus datasource works against the collector unchanged.

pub mod aggregate;
pub mod binary;
pub mod eval;
pub mod functions;
pub mod value;

use std::time::{Duration, Instant};

use promql_parser::parser::{self, Expr};

use crate::storage::disk::SeriesSamples;
use crate::storage::index::Matcher;
use crate::storage::{Store, StoreError};

pub use value::{Sample, Series, Value};

/// Where queries read series from.
pub trait Source {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StoreError>;
}

impl<T: Store + ?Sized> Source for T {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StoreError> {
        Store::select(self, matchers, mint, maxt)
    }
}

/// Why a query failed, in Prometheus' error types.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query or a parameter is malformed (`bad_data`, HTTP 400).
    #[error("{0}")]
    BadData(String),
    /// The query is well-formed but cannot be computed (`execution`, 422).
    #[error("{0}")]
    Execution(String),
    #[error("query timed out in expression evaluation")]
    Timeout,
    #[error("query processing would load too many samples into memory (more than {0})")]
    TooManySamples(usize),
    #[error("query would select too many series (more than {0}); narrow its selectors")]
    TooManySeries(usize),
    #[error("query would return too many points (more than {0})")]
    TooManyPoints(usize),
    #[error("storage: {0}")]
    Storage(#[from] StoreError),
}

impl QueryError {
    /// Prometheus' `errorType`.
    pub fn error_type(&self) -> &'static str {
        match self {
            QueryError::BadData(_) => "bad_data",
            QueryError::Execution(_)
            | QueryError::TooManySamples(_)
            | QueryError::TooManySeries(_) => "execution",
            QueryError::TooManyPoints(_) => "bad_data",
            QueryError::Timeout => "timeout",
            QueryError::Storage(_) => "internal",
        }
    }
}

/// Limits and defaults of query evaluation.
#[derive(Debug, Clone)]
pub struct Limits {
    pub lookback: Duration,
    pub timeout: Duration,
    /// Samples a query may load from the store.
    pub max_samples: usize,
    /// Series a query may select (all its selectors together).
    pub max_series: usize,
    /// Steps × series a range query may return.
    pub max_points: usize,
    /// Step of subqueries that name none (Prometheus' evaluation interval).
    pub default_subquery_step: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            lookback: Duration::from_secs(300),
            timeout: Duration::from_secs(120),
            max_samples: 50_000_000,
            max_series: 500_000,
            max_points: 11_000 * 1000,
            default_subquery_step: Duration::from_secs(60),
        }
    }
}

/// A Prometheus duration (`1m30s`, `2h`, `500ms`, `1d`, `1w`, `1y`) in ms;
/// None if malformed or too large.
pub fn duration_ms(s: &str) -> Option<i64> {
    let mut total: i64 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let ms = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => return None,
        };
        total = n.checked_mul(ms).and_then(|v| total.checked_add(v))?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

/// Parses a query; an error says where, as `line:column:`, when the
/// parser's message lets us find the place.
pub fn parse(query: &str) -> Result<Expr, QueryError> {
    parser::parse(query).map_err(|e| {
        let at = locate(query, &e)
            .map(|(line, col)| format!("{line}:{col}: "))
            .unwrap_or_default();
        QueryError::BadData(format!("invalid parameter \"query\": {at}parse error: {e}"))
    })
}

/// Where a parse error is: an unclosed bracket's position, the end of the
/// input for an unexpected end, an unknown function's name.
fn locate(query: &str, message: &str) -> Option<(usize, usize)> {
    let offset = if message.starts_with("unclosed left") {
        let (open, close) = if message.contains("parenthesis") {
            ('(', ')')
        } else if message.contains("brace") {
            ('{', '}')
        } else {
            ('[', ']')
        };
        let mut stack = Vec::new();
        let mut quote: Option<char> = None;
        let mut escaped = false;
        for (i, c) in query.char_indices() {
            match quote {
                Some(q) => {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == q {
                        quote = None;
                    }
                }
                None if matches!(c, '"' | '\'' | '`') => quote = Some(c),
                None if c == open => stack.push(i),
                None if c == close => {
                    stack.pop();
                }
                None => {}
            }
        }
        stack.pop()?
    } else if message.starts_with("unexpected end of input") {
        query.trim_end().len()
    } else if let Some(name) = message
        .strip_prefix("unknown function with name '")
        .and_then(|r| r.strip_suffix('\''))
    {
        query.find(&format!("{name}("))?
    } else {
        first_bad_token(query)?
    };
    let before = &query[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Some((line, col))
}

fn context(limits: &Limits, start: i64, end: i64, timeout: Option<Duration>) -> eval::Context {
    let timeout = timeout.map_or(limits.timeout, |t| t.min(limits.timeout));
    eval::Context {
        start,
        end,
        lookback_ms: limits.lookback.as_millis() as i64,
        default_step_ms: limits.default_subquery_step.as_millis() as i64,
        deadline: Instant::now() + timeout,
        max_samples: limits.max_samples,
        max_series: limits.max_series,
    }
}

/// Evaluates `query` at `time` (ms).
pub fn instant<S: Source + ?Sized>(
    source: &S,
    limits: &Limits,
    query: &str,
    time: i64,
    timeout: Option<Duration>,
) -> Result<Value, QueryError> {
    let expr = parse(query)?;
    let ctx = context(limits, time, time, timeout);
    let ev = eval::Evaluator::new(&ctx, source, &expr, time, time)?;
    ev.deadline()?;
    let value = ev.eval(&expr, time)?;
    // A selector's samples carry their own times; results carry the query's.
    Ok(match value {
        Value::Vector(v) => Value::Vector(v.into_iter().map(|s| Sample { t: time, ..s }).collect()),
        other => other,
    })
}

/// Evaluates `query` at every `step` from `start` to `end` (ms).
pub fn range<S: Source + ?Sized>(
    source: &S,
    limits: &Limits,
    query: &str,
    start: i64,
    end: i64,
    step: i64,
    timeout: Option<Duration>,
) -> Result<Vec<Series>, QueryError> {
    if step <= 0 {
        return Err(QueryError::BadData(
            "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
        ));
    }
    if end < start {
        return Err(QueryError::BadData(
            "end timestamp must not be before start time".into(),
        ));
    }
    if (end - start) / step > 11_000 {
        return Err(QueryError::BadData(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
        ));
    }
    let expr = parse(query)?;
    let ctx = context(limits, start, end, timeout);
    let ev = eval::Evaluator::new(&ctx, source, &expr, start, end)?;
    ev.deadline()?;
    if let Expr::VectorSelector(vs) = eval::unwrap_parens(&expr) {
        // The commonest panel: a plain selector, done series by series.
        let series = ev.instant_steps(vs, start, end, step);
        let points: usize = series.iter().map(|s| s.points.len()).sum();
        if points > limits.max_points {
            return Err(QueryError::TooManyPoints(limits.max_points));
        }
        return Ok(series);
    }
    let mut steps = Vec::new();
    let mut points = 0usize;
    let mut t = start;
    while t <= end {
        ev.deadline()?;
        let value = ev.eval(&expr, t)?;
        if let Value::Vector(v) = &value {
            points += v.len();
        } else {
            points += 1;
        }
        if points > limits.max_points {
            return Err(QueryError::TooManyPoints(limits.max_points));
        }
        steps.push((t, value));
        t += step;
    }
    functions::collect_steps(steps)
}

/// For errors the parser does not place: the start of the first token
/// after which the query can no longer be completed. A prefix counts as
/// completable when it parses, when the parser says the input ended early,
/// or when one of a few endings makes it parse.
fn first_bad_token(query: &str) -> Option<usize> {
    const ENDINGS: [&str; 8] = [" 0", " x", ")", "}", "]", " 0)", "\")", "\"}"];
    if query.len() > 2000 {
        return None;
    }
    let completable = |prefix: &str| match parser::parse(prefix) {
        Ok(_) => true,
        Err(e) if e.starts_with("unexpected end") || e.starts_with("unclosed") => true,
        Err(_) => ENDINGS
            .iter()
            .any(|end| parser::parse(&format!("{prefix}{end}")).is_ok()),
    };
    token_ends(query)
        .into_iter()
        .find(|&(_, end)| !completable(&query[..end]))
        .map(|(start, _)| start)
}

/// (start, end) of each token: a run of name or number characters, a
/// quoted string, a two-character operator, or one other character.
fn token_ends(query: &str) -> Vec<(usize, usize)> {
    let chars: Vec<(usize, char)> = query.char_indices().collect();
    let end_of = |i: usize| chars.get(i).map_or(query.len(), |(at, _)| *at);
    let word = |c: char| c.is_alphanumeric() || matches!(c, '_' | ':' | '.');
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (start, c) = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        if word(c) {
            while j < chars.len() && word(chars[j].1) {
                j += 1;
            }
        } else if matches!(c, '"' | '\'' | '`') {
            while j < chars.len() && chars[j].1 != c {
                j += if chars[j].1 == '\\' { 2 } else { 1 };
            }
            j = (j + 1).min(chars.len());
        } else if let Some(&(_, next)) = chars.get(j) {
            if matches!((c, next), ('=' | '!' | '>' | '<', '=') | ('=' | '!', '~')) {
                j += 1;
            }
        }
        out.push((start, end_of(j)));
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::disk::DiskStore;
    use crate::storage::StampedBatch;
    use patrol_shared::model::Family;

    #[test]
    fn queries_over_their_limits_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        for seq in 0..10 {
            let mut f = Family::gauge("temp", "");
            for sensor in ["a", "b", "c"] {
                f.push(&[("sensor", sensor)], seq as f64);
            }
            store
                .append(StampedBatch {
                    host: "h".into(),
                    stream_id: 1,
                    seq: seq + 1,
                    sets: vec![(seq as i64 * 10_000, vec![f])],
                })
                .unwrap();
        }
        let limits = Limits::default();
        assert!(range(&store, &limits, "temp", 0, 90_000, 10_000, None).is_ok());
        let few_series = Limits {
            max_series: 2,
            ..Limits::default()
        };
        let err = instant(&store, &few_series, "temp", 90_000, None).unwrap_err();
        assert!(matches!(err, QueryError::TooManySeries(2)), "{err}");
        assert!(instant(&store, &few_series, "temp{sensor=\"a\"}", 90_000, None).is_ok());
        let few_samples = Limits {
            max_samples: 20,
            ..Limits::default()
        };
        let err = range(&store, &few_samples, "temp", 0, 90_000, 10_000, None).unwrap_err();
        assert!(err.to_string().contains("too many samples"), "{err}");
        assert_eq!(err.error_type(), "execution");
        let err = range(
            &store,
            &limits,
            "temp",
            0,
            90_000,
            10_000,
            Some(Duration::ZERO),
        )
        .unwrap_err();
        assert!(matches!(err, QueryError::Timeout), "{err}");
        assert_eq!(err.error_type(), "timeout");
    }

    #[test]
    fn parse_errors_say_where() {
        let err = |q: &str| parse(q).unwrap_err().to_string();
        assert!(
            err("sum(rate(x[5m])").contains("1:4: parse error: unclosed left parenthesis"),
            "{}",
            err("sum(rate(x[5m])")
        );
        assert!(
            err("x{a=\"b\"").contains("1:8: parse error"),
            "{}",
            err("x{a=\"b\"")
        );
        assert!(
            err("1 +\n nosuch(x)").contains("2:2: parse error: unknown function"),
            "{}",
            err("1 +\n nosuch(x)")
        );
        assert!(
            err("1 +* 2").contains("1:4: parse error"),
            "{}",
            err("1 +* 2")
        );
        assert!(
            err("foo{a=}").contains("1:7: parse error"),
            "{}",
            err("foo{a=}")
        );
        assert!(
            err("up == == 1").contains("1:7: parse error"),
            "{}",
            err("up == == 1")
        );
        assert!(err("rate(x)").contains("expected type matrix"));
    }
}
