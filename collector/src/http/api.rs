//! Prometheus' HTTP API (`/api/v1/...`), so Grafana's Prometheus
//! datasource reads the collector directly: the same routes, parameters,
//! JSON shapes, `errorType`s and status codes.

use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use promql_parser::parser::Expr;
use serde_json::{json, Map, Value as Json};

use crate::query::eval::matchers;
use crate::query::value::{format_value, Labels};
use crate::query::{self, Limits, QueryError, Value};
use crate::storage::index::Matcher;
use crate::storage::Store;

/// A request's parameters: the query string and, for form POSTs, the body.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(query: Option<&str>, form: Option<&[u8]>) -> Params {
        let mut out: Vec<(String, String)> = Vec::new();
        if let Some(q) = query {
            out.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
        }
        if let Some(body) = form {
            out.extend(form_urlencoded::parse(body).into_owned());
        }
        Params(out)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// An API answer: status and JSON body.
pub struct Answer {
    pub status: StatusCode,
    pub body: String,
}

fn success(data: Json) -> Answer {
    Answer {
        status: StatusCode::OK,
        body: json!({"status": "success", "data": data}).to_string(),
    }
}

/// Data already written as JSON.
pub enum Data {
    Json(Json),
    Raw(String),
}

fn failure(err: &QueryError) -> Answer {
    let status = match err {
        QueryError::BadData(_) | QueryError::TooManyPoints(_) => StatusCode::BAD_REQUEST,
        QueryError::Execution(_) | QueryError::TooManySamples(_) | QueryError::TooManySeries(_) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        QueryError::Timeout => StatusCode::SERVICE_UNAVAILABLE,
        QueryError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    Answer {
        status,
        body: json!({"status": "error", "errorType": err.error_type(), "error": err.to_string()})
            .to_string(),
    }
}

/// A time parameter: RFC 3339 or Unix seconds with decimals, in ms.
pub fn parse_time(name: &str, s: &str) -> Result<i64, QueryError> {
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() {
            return Ok((secs * 1000.0).round() as i64);
        }
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| {
            QueryError::BadData(format!(
                "invalid parameter \"{name}\": cannot parse \"{s}\" to a valid timestamp"
            ))
        })
}

/// A duration parameter: seconds with decimals, or a Prometheus duration
/// such as `1m30s`, in ms.
pub fn parse_duration(name: &str, s: &str) -> Result<i64, QueryError> {
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok((secs * 1000.0).round() as i64);
        }
    }
    query::duration_ms(s).ok_or_else(|| {
        QueryError::BadData(format!(
            "invalid parameter \"{name}\": cannot parse \"{s}\" to a valid duration"
        ))
    })
}

fn labels_json(labels: &Labels) -> Json {
    let mut m = Map::new();
    for (n, v) in labels.iter() {
        m.insert(n.clone(), Json::String(v.clone()));
    }
    Json::Object(m)
}

/// Appends a JSON string literal.
fn push_str_json(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn push_labels(out: &mut String, labels: &Labels) {
    out.push('{');
    for (i, (n, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str_json(out, n);
        out.push(':');
        push_str_json(out, v);
    }
    out.push('}');
}

/// `[seconds, "value"]`, as Prometheus writes a point: the time in
/// seconds with its milliseconds (trailing zeros dropped), written from the
/// integer so no float formatting is needed.
fn push_point(out: &mut String, t: i64, v: f64) {
    use std::fmt::Write;
    out.push('[');
    push_seconds(out, t);
    out.push_str(",\"");
    if v.is_finite() {
        let _ = write!(out, "{v}");
    } else {
        out.push_str(&format_value(v));
    }
    out.push_str("\"]");
}

fn push_seconds(out: &mut String, t: i64) {
    use std::fmt::Write;
    let (secs, ms) = (t.div_euclid(1000), t.rem_euclid(1000));
    if secs < 0 && ms != 0 {
        // A negative time with a fraction: let the float formatter do it.
        let _ = write!(out, "{}", t as f64 / 1000.0);
        return;
    }
    let _ = write!(out, "{secs}");
    if ms != 0 {
        let frac = format!("{ms:03}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
}

/// The JSON `data` of a query result, written straight into a string (a
/// 24 h range of one series is 5,760 points).
pub fn result_json(value: &Value, t: i64) -> String {
    let mut out = String::with_capacity(256);
    match value {
        Value::Scalar(v) => {
            out.push_str("{\"resultType\":\"scalar\",\"result\":");
            push_point(&mut out, t, *v);
        }
        Value::String(s) => {
            out.push_str("{\"resultType\":\"string\",\"result\":[");
            out.push_str(&(t as f64 / 1000.0).to_string());
            out.push(',');
            push_str_json(&mut out, s);
            out.push(']');
        }
        Value::Vector(samples) => {
            out.push_str("{\"resultType\":\"vector\",\"result\":[");
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                push_labels(&mut out, &s.labels);
                out.push_str(",\"value\":");
                push_point(&mut out, s.t, s.v);
                out.push('}');
            }
            out.push(']');
        }
        Value::Matrix(series) => {
            out.push_str("{\"resultType\":\"matrix\",\"result\":[");
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                push_labels(&mut out, &s.labels);
                out.push_str(",\"values\":[");
                out.reserve(s.points.len() * 24);
                for (j, (pt, v)) in s.points.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    push_point(&mut out, *pt, *v);
                }
                out.push_str("]}");
            }
            out.push(']');
        }
    }
    out.push('}');
    out
}

fn timeout(params: &Params) -> Result<Option<Duration>, QueryError> {
    params
        .get("timeout")
        .map(|t| parse_duration("timeout", t).map(|ms| Duration::from_millis(ms as u64)))
        .transpose()
}

fn required<'a>(params: &'a Params, name: &str) -> Result<&'a str, QueryError> {
    params
        .get(name)
        .ok_or_else(|| QueryError::BadData(format!("invalid parameter \"{name}\": missing")))
}

/// Answers an `/api/v1/...` route (the path after `/api/v1/`); None if
/// there is no such route.
pub fn answer(
    store: &Arc<dyn Store>,
    rules: &crate::rules::manager::Manager,
    silences: &crate::silence::SilenceBook,
    limits: &Limits,
    route: &str,
    params: &Params,
    now_ms: i64,
) -> Option<Answer> {
    let result = match route {
        "query" => instant_query(store, limits, params, now_ms).map(Data::Raw),
        "query_range" => range_query(store, limits, params).map(Data::Raw),
        "series" => series(store, params).map(Data::Json),
        "labels" => labels(store, params).map(Data::Json),
        "metadata" => metadata(store, params).map(Data::Json),
        "status/buildinfo" => Ok(Data::Json(json!({
            "version": env!("CARGO_PKG_VERSION"),
            "revision": "",
            "branch": "",
            "buildUser": "",
            "buildDate": "",
            "goVersion": "",
        }))),
        "rules" => Ok(Data::Json(rules.rules_json(params.get("type")))),
        "alerts" => Ok(Data::Json(
            rules.alerts_json(|labels| silences.silencing(labels, now_ms)),
        )),
        "query_exemplars" => Ok(Data::Json(json!([]))),
        "status/flags" => Ok(Data::Json(json!({}))),
        _ => match route
            .strip_prefix("label/")
            .and_then(|r| r.strip_suffix("/values"))
        {
            Some(name) => label_values(store, name, params).map(Data::Json),
            None => return None,
        },
    };
    Some(match result {
        Ok(Data::Json(data)) => success(data),
        Ok(Data::Raw(data)) => Answer {
            status: StatusCode::OK,
            body: format!("{{\"status\":\"success\",\"data\":{data}}}"),
        },
        Err(e) => failure(&e),
    })
}

fn instant_query(
    store: &Arc<dyn Store>,
    limits: &Limits,
    params: &Params,
    now_ms: i64,
) -> Result<String, QueryError> {
    let q = required(params, "query")?;
    let t = match params.get("time") {
        Some(t) => parse_time("time", t)?,
        None => now_ms,
    };
    let value = query::instant(store.as_ref(), limits, q, t, timeout(params)?)?;
    Ok(result_json(&value, t))
}

fn range_query(
    store: &Arc<dyn Store>,
    limits: &Limits,
    params: &Params,
) -> Result<String, QueryError> {
    let q = required(params, "query")?;
    let start = parse_time("start", required(params, "start")?)?;
    let end = parse_time("end", required(params, "end")?)?;
    let step = parse_duration("step", required(params, "step")?)?;
    let series = query::range(
        store.as_ref(),
        limits,
        q,
        start,
        end,
        step,
        timeout(params)?,
    )?;
    Ok(result_json(&Value::Matrix(series), end))
}

/// The `match[]` selectors, each a set of store matchers (`or`
/// alternatives separately).
fn selectors(params: &Params) -> Result<Vec<Vec<Matcher>>, QueryError> {
    let mut out = Vec::new();
    for m in params.all("match[]") {
        let expr = query::parse(m)
            .map_err(|e| QueryError::BadData(format!("invalid parameter \"match[]\": {e}")))?;
        let Expr::VectorSelector(vs) = expr else {
            return Err(QueryError::BadData(format!(
                "invalid parameter \"match[]\": {m:?} is not a series selector"
            )));
        };
        out.extend(matchers(&vs)?);
    }
    Ok(out)
}

fn time_range(params: &Params) -> Result<(i64, i64), QueryError> {
    let start = params
        .get("start")
        .map(|s| parse_time("start", s))
        .transpose()?
        .unwrap_or(i64::MIN);
    let end = params
        .get("end")
        .map(|s| parse_time("end", s))
        .transpose()?
        .unwrap_or(i64::MAX);
    Ok((start, end))
}

fn limit(params: &Params) -> Result<usize, QueryError> {
    match params.get("limit") {
        None => Ok(usize::MAX),
        Some(l) => match l.parse::<i64>() {
            Ok(0) => Ok(usize::MAX),
            Ok(n) if n > 0 => Ok(n as usize),
            _ => Err(QueryError::BadData(format!(
                "invalid parameter \"limit\": cannot parse \"{l}\" to a positive integer"
            ))),
        },
    }
}

/// Series matching any selector with samples in the range, by labels.
fn matching_series(
    store: &Arc<dyn Store>,
    params: &Params,
) -> Result<Vec<Vec<(String, String)>>, QueryError> {
    let (start, end) = time_range(params)?;
    let mut found: Vec<Vec<(String, String)>> = Vec::new();
    for group in selectors(params)? {
        for s in store.select(&group, start, end)? {
            found.push(s.labels);
        }
    }
    found.sort();
    found.dedup();
    Ok(found)
}

fn series(store: &Arc<dyn Store>, params: &Params) -> Result<Json, QueryError> {
    if params.all("match[]").is_empty() {
        return Err(QueryError::BadData("no match[] parameter provided".into()));
    }
    let limit = limit(params)?;
    let found = matching_series(store, params)?;
    Ok(Json::Array(
        found
            .into_iter()
            .take(limit)
            .map(|l| labels_json(&Arc::new(l)))
            .collect(),
    ))
}

fn labels(store: &Arc<dyn Store>, params: &Params) -> Result<Json, QueryError> {
    let limit = limit(params)?;
    let names: Vec<String> = if params.all("match[]").is_empty() {
        store.label_names(&[])
    } else {
        let mut names: Vec<String> = matching_series(store, params)?
            .into_iter()
            .flat_map(|l| l.into_iter().map(|(n, _)| n))
            .collect();
        names.sort();
        names.dedup();
        names
    };
    Ok(json!(names.into_iter().take(limit).collect::<Vec<_>>()))
}

fn label_values(store: &Arc<dyn Store>, name: &str, params: &Params) -> Result<Json, QueryError> {
    if !crate::query::aggregate::valid_label_name(name) {
        return Err(QueryError::BadData(format!("invalid label name: {name:?}")));
    }
    let limit = limit(params)?;
    let values: Vec<String> = if params.all("match[]").is_empty() {
        store.label_values(name, &[])
    } else {
        let mut values: Vec<String> = matching_series(store, params)?
            .into_iter()
            .filter_map(|l| l.into_iter().find(|(n, _)| n == name).map(|(_, v)| v))
            .collect();
        values.sort();
        values.dedup();
        values
    };
    Ok(json!(values.into_iter().take(limit).collect::<Vec<_>>()))
}

fn metadata(store: &Arc<dyn Store>, params: &Params) -> Result<Json, QueryError> {
    let limit = limit(params)?;
    let only = params.get("metric");
    let mut out = Map::new();
    for (name, kind, help) in store.metadata() {
        if only.is_some_and(|m| m != name) || out.len() >= limit {
            continue;
        }
        out.insert(
            name,
            json!([{"type": kind.as_str(), "help": help, "unit": ""}]),
        );
    }
    Ok(Json::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_valid_json_whatever_the_labels_hold() {
        let labels: Labels = Arc::new(vec![
            ("a".into(), "quote\" back\\ nl\n tab\t bell\u{7} 雪".into()),
            ("b".into(), String::new()),
        ]);
        let value = Value::Vector(vec![crate::query::Sample {
            labels: labels.clone(),
            t: 1_700_000_000_500,
            v: f64::NEG_INFINITY,
        }]);
        let json: Json = serde_json::from_str(&result_json(&value, 0)).unwrap();
        assert_eq!(json["result"][0]["metric"]["a"], labels[0].1.as_str());
        assert_eq!(json["result"][0]["value"], json!([1700000000.5, "-Inf"]));
    }

    #[test]
    fn point_times_are_written_as_prometheus_writes_them() {
        for (t, want) in [
            (1_700_000_000_000, "1700000000"),
            (1_700_000_000_500, "1700000000.5"),
            (1_700_000_000_007, "1700000000.007"),
            (1_700_000_000_120, "1700000000.12"),
            (0, "0"),
            (-1_500, "-1.5"),
            (-2_000, "-2"),
        ] {
            let mut out = String::new();
            push_seconds(&mut out, t);
            assert_eq!(out, want);
        }
    }

    #[test]
    fn times_and_durations_parse_as_prometheus_does() {
        assert_eq!(
            parse_time("time", "1700000000.123").unwrap(),
            1_700_000_000_123
        );
        assert_eq!(
            parse_time("time", "2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
        assert!(parse_time("time", "yesterday").is_err());
        assert_eq!(parse_duration("step", "15").unwrap(), 15_000);
        assert_eq!(parse_duration("step", "0.5").unwrap(), 500);
        assert_eq!(parse_duration("step", "1m30s").unwrap(), 90_000);
        assert_eq!(parse_duration("step", "1d").unwrap(), 86_400_000);
        let err = parse_duration("step", "5x").unwrap_err().to_string();
        assert!(err.contains("\"step\"") && err.contains("5x"), "{err}");
    }
}
