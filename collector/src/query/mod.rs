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
    check_size(query)?;
    parse_unwinding(query).map_err(|e| {
        let at = locate(query, &e)
            .map(|(line, col)| format!("{line}:{col}: "))
            .unwrap_or_default();
        QueryError::BadData(format!("invalid parameter \"query\": {at}parse error: {e}"))
    })
}

/// `promql-parser`'s parse, with its panics turned into errors: it turns
/// a float duration into a `Duration` with `Duration::from_secs_f64`,
/// which panics past about 5.8e11 years (`up[1e300]`, found by
/// fuzz/fuzz_targets/promql_api.rs). Query text comes from the network;
/// a panic there is a parse error like any other.
fn parse_unwinding(query: &str) -> Result<Expr, String> {
    std::panic::catch_unwind(|| parser::parse(query))
        .unwrap_or_else(|_| Err("a duration or number in the query is out of range".into()))
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
        lookback_ms: millis(limits.lookback),
        default_step_ms: millis(limits.default_subquery_step),
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
    check_time(time)?;
    let ctx = context(limits, time, time, timeout);
    check_expr(&expr, time.abs(), 0, &ctx)?;
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
    check_time(start)?;
    check_time(end)?;
    // A step past the whole range gives one point, whatever its size;
    // bounding it keeps `t + step` far from overflowing.
    let step = step.min(2 * MAX_TIME_MS + 1);
    if (end - start) / step > 11_000 {
        return Err(QueryError::BadData(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
        ));
    }
    let expr = parse(query)?;
    let ctx = context(limits, start, end, timeout);
    check_expr(&expr, start.abs().max(end.abs()), 0, &ctx)?;
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

/// Furthest from the Unix epoch a query may be evaluated, in ms (2^52 ms,
/// about 142,000 years either way; Prometheus' API takes any int64).
const MAX_TIME_MS: i64 = 1 << 52;

/// Furthest from the epoch any time derived while evaluating may fall:
/// an evaluation time, moved by every `@`, offset, range, subquery step
/// and the lookback along one path of the expression. The evaluator does
/// that arithmetic in plain i64; holding the sum under 2^61 leaves room
/// for one more step on top, so hostile times and durations are refused
/// here instead of overflowing there.
const MAX_REACH_MS: i64 = 1 << 61;

/// Most tokens a query may have. The parser, and dropping the tree it
/// builds, recurse once per level, and a chain of operators is as deep as
/// it is long: about 50,000 `-` overflow a 2 MiB stack, the size of the
/// blocking-pool threads queries run on. Real queries have a few hundred.
const MAX_TOKENS: usize = 8192;

/// Most brackets a query may nest, checked before parsing.
const MAX_BRACKETS: usize = 256;

/// How deep an expression may nest, in units of stack: evaluation recurses
/// once per level, a call, aggregation or subquery costing about four
/// times an operator. 256 units is 64 nested calls; a debug build
/// overflows a 2 MiB stack at about 200.
const MAX_NESTING: usize = 256;

/// Refuses a query too large or too deeply bracketed to parse safely.
fn check_size(query: &str) -> Result<(), QueryError> {
    let tokens = token_ends(query);
    if tokens.len() > MAX_TOKENS {
        return Err(QueryError::BadData(format!(
            "invalid parameter \"query\": {} tokens, over the limit of {MAX_TOKENS}",
            tokens.len()
        )));
    }
    let mut depth = 0usize;
    for &(start, end) in &tokens {
        match &query[start..end] {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth > MAX_BRACKETS {
            return Err(too_deep());
        }
    }
    Ok(())
}

fn too_deep() -> QueryError {
    QueryError::BadData(format!(
        "invalid parameter \"query\": expression nests too deeply (over {MAX_NESTING} levels)"
    ))
}

/// Refuses an evaluation time outside [`MAX_TIME_MS`].
fn check_time(t: i64) -> Result<(), QueryError> {
    if t.checked_abs().is_some_and(|a| a <= MAX_TIME_MS) {
        Ok(())
    } else {
        Err(QueryError::BadData(format!(
            "time {t} ms is out of range (at most {MAX_TIME_MS} ms from 1970, about 142,000 years)"
        )))
    }
}

/// A duration in ms, saturating.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `reach` moved by each of `by`, or an error past [`MAX_REACH_MS`].
fn extend(reach: i64, by: &[i64]) -> Result<i64, QueryError> {
    let total = by
        .iter()
        .fold(reach, |r, d| r.saturating_add(d.saturating_abs()));
    if total > MAX_REACH_MS {
        return Err(QueryError::BadData(format!(
            "invalid parameter \"query\": its times, offsets and ranges reach over {MAX_REACH_MS} ms from 1970"
        )));
    }
    Ok(total)
}

fn offset_ms(offset: &Option<parser::Offset>) -> i64 {
    match offset {
        None => 0,
        Some(parser::Offset::Pos(d) | parser::Offset::Neg(d)) => millis(*d),
    }
}

/// How far from 1970 a subtree is evaluated: `reach`, unless an `@` pins it.
fn pinned(at: &Option<parser::AtModifier>, reach: i64) -> i64 {
    match at {
        Some(parser::AtModifier::At(t)) => match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => millis(d),
            Err(e) => millis(e.duration()),
        },
        // @ start() and @ end() are query times, already within `reach`.
        _ => reach,
    }
}

/// Checks what evaluating `expr` at times up to `reach` ms from 1970 will
/// do: how deep it recurses and how far its time arithmetic goes.
fn check_expr(
    expr: &Expr,
    reach: i64,
    depth: usize,
    ctx: &eval::Context,
) -> Result<(), QueryError> {
    let depth = depth
        + match expr {
            Expr::Call(_) | Expr::Aggregate(_) | Expr::Subquery(_) => 4,
            _ => 1,
        };
    if depth > MAX_NESTING {
        return Err(too_deep());
    }
    match expr {
        Expr::VectorSelector(vs) => extend(
            pinned(&vs.at, reach),
            &[offset_ms(&vs.offset), ctx.lookback_ms],
        )
        .map(drop),
        Expr::MatrixSelector(ms) => extend(
            pinned(&ms.vs.at, reach),
            &[offset_ms(&ms.vs.offset), millis(ms.range), ctx.lookback_ms],
        )
        .map(drop),
        Expr::Subquery(sq) => {
            let step = sq.step.map_or(ctx.default_step_ms, millis);
            let inner = extend(
                pinned(&sq.at, reach),
                &[offset_ms(&sq.offset), millis(sq.range), step],
            )?;
            check_expr(&sq.expr, inner, depth, ctx)
        }
        Expr::Aggregate(a) => {
            check_expr(&a.expr, reach, depth, ctx)?;
            match &a.param {
                Some(p) => check_expr(p, reach, depth, ctx),
                None => Ok(()),
            }
        }
        Expr::Unary(u) => check_expr(&u.expr, reach, depth, ctx),
        Expr::Binary(b) => {
            check_expr(&b.lhs, reach, depth, ctx)?;
            check_expr(&b.rhs, reach, depth, ctx)
        }
        Expr::Paren(p) => check_expr(&p.expr, reach, depth, ctx),
        Expr::Call(c) => c
            .args
            .args
            .iter()
            .try_for_each(|a| check_expr(a, reach, depth, ctx)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => Ok(()),
    }
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
    let completable = |prefix: &str| match parse_unwinding(prefix) {
        Ok(_) => true,
        Err(e) if e.starts_with("unexpected end") || e.starts_with("unclosed") => true,
        Err(_) => ENDINGS
            .iter()
            .any(|end| parse_unwinding(&format!("{prefix}{end}")).is_ok()),
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

    /// Runs `f` on a thread with the stack of tokio's blocking pool, where
    /// the HTTP API evaluates queries.
    fn on_blocking_pool_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap()
    }

    fn empty_store() -> (tempfile::TempDir, DiskStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        (dir, store)
    }

    // Found by fuzz/fuzz_targets/promql_api.rs: `start=-1e300&end=1e300`
    // parse to i64::MIN and i64::MAX, and `end - start` overflowed.
    #[test]
    fn range_over_the_whole_int64_span_is_refused_not_overflowed() {
        let (_dir, store) = empty_store();
        let limits = Limits::default();
        let err = range(&store, &limits, "up", i64::MIN, i64::MAX, i64::MAX, None).unwrap_err();
        assert_eq!(err.error_type(), "bad_data", "{err}");
        assert!(err.to_string().contains("out of range"), "{err}");
        // A step far past the range still gives its one point.
        assert!(range(&store, &limits, "1", 0, 1000, i64::MAX, None).is_ok());
    }

    // Found by the same target: `time=-1e300` made the selector's lookback
    // window start before i64::MIN (eval.rs, planning the selectors).
    #[test]
    fn instant_query_at_the_ends_of_int64_is_refused() {
        let (_dir, store) = empty_store();
        let limits = Limits::default();
        for t in [i64::MIN, i64::MAX, -(1 << 53)] {
            let err = instant(&store, &limits, "up", t, None).unwrap_err();
            assert_eq!(err.error_type(), "bad_data", "{err}");
        }
        assert!(instant(&store, &limits, "up", MAX_TIME_MS, None).is_ok());
    }

    #[test]
    fn offsets_ranges_and_at_times_that_reach_past_int64_are_refused() {
        let (_dir, store) = empty_store();
        let limits = Limits::default();
        for q in [
            "up offset 100000000y",
            "up offset -100000000y",
            "up @ 9e15",
            "up @ -9e15",
            "rate(up[4294967295w])",
            "max_over_time(up[5m:4294967295w])",
            "max_over_time((up offset 100000000y)[100000000y:])",
        ] {
            match instant(&store, &limits, q, 1_700_000_000_000, None) {
                Err(err) => assert!(err.to_string().contains("reach"), "{q}: {err}"),
                Ok(v) => panic!("{q}: {v:?}"),
            }
        }
        assert!(instant(&store, &limits, "up offset 1y @ 0", 0, None).is_ok());
    }

    // Found by the same target: `abs(` nested 3000 times overflowed the
    // stack while evaluating (functions::call ↔ Evaluator::eval), which
    // aborts the whole collector.
    #[test]
    fn deeply_nested_queries_are_refused_before_they_overflow_the_stack() {
        let nested =
            |open: &str, close: &str, n: usize| format!("{}up{}", open.repeat(n), close.repeat(n));
        let queries = [
            nested("abs(", ")", 3000),
            nested("(", ")", 3000),
            nested("sum(", ")", 300),
            nested("max_over_time(", "[5m:])", 100),
            format!("up{}", " + up".repeat(2000)),
            format!("{}up", "-".repeat(2000)),
            // Past the parser's own limit on a 2 MiB stack.
            format!("{}1", "-".repeat(60_000)),
            format!("1{}", "+1".repeat(30_000)),
        ];
        let outcomes = on_blocking_pool_stack(move || {
            let (_dir, store) = empty_store();
            queries
                .iter()
                .map(|q| instant(&store, &Limits::default(), q, 0, None).map(drop))
                .collect::<Vec<_>>()
        });
        for outcome in outcomes {
            let err = outcome.unwrap_err();
            assert_eq!(err.error_type(), "bad_data", "{err}");
        }
        let fine = on_blocking_pool_stack(|| {
            let (_dir, store) = empty_store();
            let q = format!("{}up{}", "abs(".repeat(60), ")".repeat(60));
            instant(&store, &Limits::default(), &q, 0, None).map(drop)
        });
        assert!(fine.is_ok(), "{fine:?}");
    }

    // Found by fuzz/fuzz_targets/promql_api.rs: promql-parser panics in
    // `Duration::from_secs_f64` on a float duration too large for it.
    #[test]
    fn float_durations_too_large_for_the_parser_are_parse_errors() {
        for q in [
            "up[1e300]",
            "up offset 1e300",
            "up offset -1e300",
            "max_over_time(up[5m:1e300])",
        ] {
            let err = parse(q).unwrap_err();
            assert_eq!(err.error_type(), "bad_data", "{q}: {err}");
            assert!(err.to_string().contains("out of range"), "{q}: {err}");
        }
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
