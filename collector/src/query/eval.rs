//! The evaluator: an expression at one time. Every selector's data is
//! fetched once for the whole query before evaluation starts ([`plan`]),
//! so a range query of many steps reads the store once per selector.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use promql_parser::label::MatchOp;
use promql_parser::parser::token::{self, TokenType};
use promql_parser::parser::{
    AtModifier, Expr, MatrixSelector, Offset, SubqueryExpr, VectorSelector,
};

use super::value::{is_stale, LabelCache, Labels, Map, Sample, Series, Value};
use super::{aggregate, binary, functions, QueryError, Source};
use crate::storage::index::Matcher;

/// What evaluation needs besides the expression.
pub struct Context {
    /// Query start and end (ms), for `@ start()` and `@ end()`.
    pub start: i64,
    pub end: i64,
    pub lookback_ms: i64,
    /// Step of subqueries that name none.
    pub default_step_ms: i64,
    pub deadline: Instant,
    pub max_samples: usize,
    pub max_series: usize,
}

/// One series' points in a range window, borrowed from the fetched data
/// where possible.
pub struct Window<'a> {
    pub labels: Labels,
    pub points: Cow<'a, [(i64, f64)]>,
}

/// One selector's series as fetched.
struct Fetched {
    labels: Labels,
    samples: Vec<(i64, f64)>,
    /// Where the last two searches ended: a range query's steps move
    /// forward, so the next search usually starts a sample or two away.
    cursors: [std::cell::Cell<usize>; 2],
}

impl Fetched {
    /// The number of samples with time `< t` (`inclusive`: `<= t`),
    /// searched from cursor `c`.
    fn count_before(&self, t: i64, inclusive: bool, c: usize) -> usize {
        let before = |st: i64| if inclusive { st <= t } else { st < t };
        let s = &self.samples;
        let mut at = self.cursors[c].get().min(s.len());
        if at > 0 && !before(s[at - 1].0) {
            // Went backwards: search from scratch.
            at = s.partition_point(|(st, _)| before(*st));
        } else {
            let mut steps = 0;
            while at < s.len() && before(s[at].0) {
                at += 1;
                steps += 1;
                if steps == 8 {
                    at += s[at..].partition_point(|(st, _)| before(*st));
                    break;
                }
            }
        }
        self.cursors[c].set(at);
        at
    }
}

/// See the module comment.
pub struct Evaluator<'a> {
    ctx: &'a Context,
    data: Map<usize, Vec<Fetched>>,
    labels: LabelCache,
}

fn key(vs: &VectorSelector) -> usize {
    vs as *const VectorSelector as usize
}

fn offset_ms(offset: &Option<Offset>) -> i64 {
    match offset {
        None => 0,
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
    }
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The time an `@` modifier pins evaluation to, if any.
fn at_ms(at: &Option<AtModifier>, ctx: &Context) -> Option<i64> {
    match at {
        None => None,
        Some(AtModifier::Start) => Some(ctx.start),
        Some(AtModifier::End) => Some(ctx.end),
        Some(AtModifier::At(t)) => Some(match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => millis(d),
            Err(e) => -millis(e.duration()),
        }),
    }
}

/// The store matchers of a selector: its name and label matchers (each
/// `or` alternative separately).
pub fn matchers(vs: &VectorSelector) -> Result<Vec<Vec<Matcher>>, QueryError> {
    let convert = |list: &[promql_parser::label::Matcher]| -> Result<Vec<Matcher>, QueryError> {
        let mut out = Vec::with_capacity(list.len() + 1);
        if let Some(name) = &vs.name {
            out.push(Matcher::equal(super::value::METRIC_NAME, name));
        }
        for m in list {
            out.push(match &m.op {
                MatchOp::Equal => Matcher::equal(&m.name, &m.value),
                MatchOp::NotEqual => Matcher::not_equal(&m.name, &m.value),
                MatchOp::Re(_) => Matcher::regex(&m.name, &m.value, false).map_err(|e| {
                    QueryError::BadData(format!("invalid regex {:?}: {e}", m.value))
                })?,
                MatchOp::NotRe(_) => Matcher::regex(&m.name, &m.value, true).map_err(|e| {
                    QueryError::BadData(format!("invalid regex {:?}: {e}", m.value))
                })?,
            });
        }
        Ok(out)
    };
    if vs.matchers.or_matchers.is_empty() {
        Ok(vec![convert(&vs.matchers.matchers)?])
    } else {
        vs.matchers
            .or_matchers
            .iter()
            .map(|group| convert(group))
            .collect()
    }
}

/// Walks the expression and records, for each selector, the time range its
/// data must cover when the expression is evaluated at times in
/// [start, end].
fn plan(expr: &Expr, start: i64, end: i64, ctx: &Context, out: &mut Map<usize, (i64, i64)>) {
    let mut note = |vs: &VectorSelector, before: i64| {
        let (s, e) = match at_ms(&vs.at, ctx) {
            Some(at) => (at, at),
            None => (start, end),
        };
        let off = offset_ms(&vs.offset);
        let range = (s - off - before, e - off);
        let entry = out.entry(key(vs)).or_insert(range);
        entry.0 = entry.0.min(range.0);
        entry.1 = entry.1.max(range.1);
    };
    match expr {
        Expr::VectorSelector(vs) => note(vs, ctx.lookback_ms),
        Expr::MatrixSelector(ms) => note(&ms.vs, millis(ms.range)),
        Expr::Subquery(sq) => {
            let (s, e) = match at_ms(&sq.at, ctx) {
                Some(at) => (at, at),
                None => (start, end),
            };
            let off = offset_ms(&sq.offset);
            plan(&sq.expr, s - off - millis(sq.range), e - off, ctx, out);
        }
        Expr::Aggregate(a) => {
            plan(&a.expr, start, end, ctx, out);
            if let Some(p) = &a.param {
                plan(p, start, end, ctx, out);
            }
        }
        Expr::Unary(u) => plan(&u.expr, start, end, ctx, out),
        Expr::Binary(b) => {
            plan(&b.lhs, start, end, ctx, out);
            plan(&b.rhs, start, end, ctx, out);
        }
        Expr::Paren(p) => plan(&p.expr, start, end, ctx, out),
        Expr::Call(c) => {
            for a in &c.args.args {
                plan(a, start, end, ctx, out);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// Every selector node of the expression.
fn selectors<'e>(expr: &'e Expr, out: &mut Vec<&'e VectorSelector>) {
    match expr {
        Expr::VectorSelector(vs) => out.push(vs),
        Expr::MatrixSelector(ms) => out.push(&ms.vs),
        Expr::Subquery(sq) => selectors(&sq.expr, out),
        Expr::Aggregate(a) => {
            selectors(&a.expr, out);
            if let Some(p) = &a.param {
                selectors(p, out);
            }
        }
        Expr::Unary(u) => selectors(&u.expr, out),
        Expr::Binary(b) => {
            selectors(&b.lhs, out);
            selectors(&b.rhs, out);
        }
        Expr::Paren(p) => selectors(&p.expr, out),
        Expr::Call(c) => c.args.args.iter().for_each(|a| selectors(a, out)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

impl<'a> Evaluator<'a> {
    /// Fetches every selector's data for evaluating `expr` at times in
    /// [start, end].
    pub fn new<S: Source + ?Sized>(
        ctx: &'a Context,
        source: &S,
        expr: &Expr,
        start: i64,
        end: i64,
    ) -> Result<Evaluator<'a>, QueryError> {
        let mut ranges = Map::default();
        plan(expr, start, end, ctx, &mut ranges);
        let mut nodes = Vec::new();
        selectors(expr, &mut nodes);
        let mut data = Map::default();
        let (mut samples, mut series_count) = (0usize, 0usize);
        for vs in nodes {
            let Some(&(mint, maxt)) = ranges.get(&key(vs)) else {
                continue;
            };
            if data.contains_key(&key(vs)) {
                continue;
            }
            let mut fetched: Vec<Fetched> = Vec::new();
            let mut seen: Map<Labels, ()> = Map::default();
            for group in matchers(vs)? {
                for s in source.select(&group, mint, maxt)? {
                    let labels: Labels = Arc::new(s.labels);
                    if seen.insert(labels.clone(), ()).is_some() {
                        continue;
                    }
                    samples += s.samples.len();
                    series_count += 1;
                    if series_count > ctx.max_series {
                        return Err(QueryError::TooManySeries(ctx.max_series));
                    }
                    if samples > ctx.max_samples {
                        return Err(QueryError::TooManySamples(ctx.max_samples));
                    }
                    fetched.push(Fetched {
                        labels,
                        samples: s.samples,
                        cursors: Default::default(),
                    });
                }
            }
            data.insert(key(vs), fetched);
        }
        Ok(Evaluator {
            ctx,
            data,
            labels: LabelCache::default(),
        })
    }

    fn check_deadline(&self) -> Result<(), QueryError> {
        if Instant::now() >= self.ctx.deadline {
            Err(QueryError::Timeout)
        } else {
            Ok(())
        }
    }

    /// The expression's value at time `t` (ms).
    pub fn eval(&self, expr: &Expr, t: i64) -> Result<Value, QueryError> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::VectorSelector(vs) => Ok(Value::Vector(self.instant(vs, t))),
            Expr::MatrixSelector(ms) => Ok(Value::Matrix(self.range(ms, t))),
            Expr::Subquery(sq) => self.subquery(sq, t).map(Value::Matrix),
            Expr::Unary(u) => match self.eval(&u.expr, t)? {
                Value::Scalar(v) => Ok(Value::Scalar(-v)),
                Value::Vector(vec) => Ok(Value::Vector(
                    vec.into_iter()
                        .map(|s| Sample {
                            labels: self.labels.without_name(&s.labels),
                            t,
                            v: -s.v,
                        })
                        .collect(),
                )),
                other => Err(QueryError::Execution(format!(
                    "unary minus on a {}",
                    other.type_name()
                ))),
            },
            Expr::Binary(b) => {
                let lhs = self.eval(&b.lhs, t)?;
                let rhs = self.eval(&b.rhs, t)?;
                binary::eval(b, lhs, rhs, t, &self.labels)
            }
            Expr::Aggregate(a) => {
                let param = match &a.param {
                    Some(p) => Some(self.eval(p, t)?),
                    None => None,
                };
                let Value::Vector(input) = self.eval(&a.expr, t)? else {
                    return Err(QueryError::Execution(
                        "aggregation over a non-vector".into(),
                    ));
                };
                let node = a as *const _ as usize;
                aggregate::eval(
                    a.op,
                    a.modifier.as_ref(),
                    param,
                    input,
                    t,
                    &self.labels,
                    node,
                )
            }
            Expr::Call(call) => functions::call(self, call, t),
            Expr::Extension(_) => Err(QueryError::Execution(
                "extension expressions are not supported".into(),
            )),
        }
    }

    /// A vector selector at `t`: each series' newest sample within the
    /// lookback window, unless that sample is a staleness marker. Samples
    /// keep their own time.
    pub fn instant(&self, vs: &VectorSelector, t: i64) -> Vec<Sample> {
        let at = at_ms(&vs.at, self.ctx).unwrap_or(t) - offset_ms(&vs.offset);
        let from = at - self.ctx.lookback_ms;
        let Some(series) = self.data.get(&key(vs)) else {
            return Vec::new();
        };
        series
            .iter()
            .filter_map(|s| {
                let end = s.count_before(at, true, 0);
                let &(st, v) = s.samples.get(end.checked_sub(1)?)?;
                (st >= from && !is_stale(v)).then(|| Sample {
                    labels: s.labels.clone(),
                    t: st,
                    v,
                })
            })
            .collect()
    }

    /// A vector selector at every step of a range query at once, series by
    /// series: what evaluating it step by step gives, without building a
    /// vector per step.
    pub fn instant_steps(
        &self,
        vs: &VectorSelector,
        start: i64,
        end: i64,
        step: i64,
    ) -> Vec<Series> {
        let Some(series) = self.data.get(&key(vs)) else {
            return Vec::new();
        };
        let pinned = at_ms(&vs.at, self.ctx);
        let offset = offset_ms(&vs.offset);
        let mut out = Vec::new();
        for s in series {
            let mut points = Vec::new();
            let mut t = start;
            while t <= end {
                let at = pinned.unwrap_or(t) - offset;
                let before = s.count_before(at, true, 0);
                if let Some(&(st, v)) = before.checked_sub(1).and_then(|i| s.samples.get(i)) {
                    if st >= at - self.ctx.lookback_ms && !is_stale(v) {
                        points.push((t, v));
                    }
                }
                t += step;
            }
            if !points.is_empty() {
                out.push(Series {
                    labels: s.labels.clone(),
                    points,
                });
            }
        }
        out
    }

    /// A range selector at `t`: each series' samples in [t - range, t]
    /// (closed, as Prometheus 2 selects), staleness markers left out.
    pub fn range(&self, ms: &MatrixSelector, t: i64) -> Vec<Series> {
        let vs = &ms.vs;
        let at = at_ms(&vs.at, self.ctx).unwrap_or(t) - offset_ms(&vs.offset);
        let from = at - millis(ms.range);
        let Some(series) = self.data.get(&key(vs)) else {
            return Vec::new();
        };
        series
            .iter()
            .filter_map(|s| {
                let lo = s.samples.partition_point(|(st, _)| *st < from);
                let hi = s.samples.partition_point(|(st, _)| *st <= at);
                let points: Vec<(i64, f64)> = s.samples[lo..hi]
                    .iter()
                    .copied()
                    .filter(|(_, v)| !is_stale(*v))
                    .collect();
                (!points.is_empty()).then(|| Series {
                    labels: s.labels.clone(),
                    points,
                })
            })
            .collect()
    }

    /// A range selector at `t` without copying: each series' samples in
    /// [t - range, t] as a slice of the fetched data (copied only when
    /// staleness markers must be left out).
    pub fn windows(&self, ms: &MatrixSelector, t: i64) -> Vec<Window<'_>> {
        let vs = &ms.vs;
        let at = at_ms(&vs.at, self.ctx).unwrap_or(t) - offset_ms(&vs.offset);
        let from = at - millis(ms.range);
        let Some(series) = self.data.get(&key(vs)) else {
            return Vec::new();
        };
        series
            .iter()
            .filter_map(|s| {
                let lo = s.count_before(from, false, 0);
                let hi = s.count_before(at, true, 1).max(lo);
                let slice = &s.samples[lo..hi];
                if slice.is_empty() {
                    return None;
                }
                let points = if slice.iter().any(|(_, v)| is_stale(*v)) {
                    let kept: Vec<(i64, f64)> = slice
                        .iter()
                        .copied()
                        .filter(|(_, v)| !is_stale(*v))
                        .collect();
                    if kept.is_empty() {
                        return None;
                    }
                    Cow::Owned(kept)
                } else {
                    Cow::Borrowed(slice)
                };
                Some(Window {
                    labels: s.labels.clone(),
                    points,
                })
            })
            .collect()
    }

    /// The time range a range selector covers at `t`: (start, end) in ms.
    pub fn range_bounds(&self, ms: &MatrixSelector, t: i64) -> (i64, i64) {
        let vs = &ms.vs;
        let at = at_ms(&vs.at, self.ctx).unwrap_or(t) - offset_ms(&vs.offset);
        (at - millis(ms.range), at)
    }

    /// A subquery at `t`: the inner expression at every step-aligned time
    /// in [t - range, t], as a range vector.
    pub fn subquery(&self, sq: &SubqueryExpr, t: i64) -> Result<Vec<Series>, QueryError> {
        let end = at_ms(&sq.at, self.ctx).unwrap_or(t) - offset_ms(&sq.offset);
        let step = sq
            .step
            .map(millis)
            .unwrap_or(self.ctx.default_step_ms)
            .max(1);
        let from = end - millis(sq.range);
        let mut first = from.div_euclid(step) * step;
        if first < from {
            first += step;
        }
        let mut out: Map<Labels, Vec<(i64, f64)>> = Map::default();
        let mut order: Vec<Labels> = Vec::new();
        let mut ts = first;
        while ts <= end {
            self.check_deadline()?;
            match self.eval(&sq.expr, ts)? {
                Value::Vector(v) => {
                    for s in v {
                        let labels = s.labels;
                        let entry = out.entry(labels.clone()).or_insert_with(|| {
                            order.push(labels);
                            Vec::new()
                        });
                        entry.push((ts, s.v));
                    }
                }
                Value::Scalar(v) => {
                    let labels: Labels = Arc::new(Vec::new());
                    let entry = out.entry(labels.clone()).or_insert_with(|| {
                        order.push(labels);
                        Vec::new()
                    });
                    entry.push((ts, v));
                }
                other => {
                    return Err(QueryError::Execution(format!(
                        "subquery over a {}",
                        other.type_name()
                    )))
                }
            }
            ts += step;
        }
        Ok(order
            .into_iter()
            .filter_map(|labels| {
                let points = out.remove(&labels)?;
                Some(Series { labels, points })
            })
            .collect())
    }

    /// A range-vector argument (selector or subquery) at `t`, with the time
    /// range it covers.
    pub fn range_arg(
        &self,
        expr: &Expr,
        t: i64,
    ) -> Result<(Vec<Window<'_>>, (i64, i64)), QueryError> {
        match unwrap_parens(expr) {
            Expr::MatrixSelector(ms) => Ok((self.windows(ms, t), self.range_bounds(ms, t))),
            Expr::Subquery(sq) => {
                let end = at_ms(&sq.at, self.ctx).unwrap_or(t) - offset_ms(&sq.offset);
                let series = self
                    .subquery(sq, t)?
                    .into_iter()
                    .map(|s| Window {
                        labels: s.labels,
                        points: Cow::Owned(s.points),
                    })
                    .collect();
                Ok((series, (end - millis(sq.range), end)))
            }
            other => Err(QueryError::Execution(format!(
                "expected a range vector, got {}",
                other.value_type()
            ))),
        }
    }

    /// The query's label cache.
    pub fn labels(&self) -> &LabelCache {
        &self.labels
    }

    /// Whether `t` is past the query's deadline.
    pub fn deadline(&self) -> Result<(), QueryError> {
        self.check_deadline()
    }
}

/// The expression inside any parentheses.
pub fn unwrap_parens(expr: &Expr) -> &Expr {
    match expr {
        Expr::Paren(p) => unwrap_parens(&p.expr),
        other => other,
    }
}

/// Whether an operator compares (and, without `bool`, filters).
pub fn is_comparison(op: TokenType) -> bool {
    matches!(
        op.id(),
        token::T_EQLC | token::T_NEQ | token::T_GTR | token::T_LSS | token::T_GTE | token::T_LTE
    )
}
