//! The incident routes under `/api/patrol/v1/` (docs/api.md):
//!
//! - `GET tickets?q=&host=&alertname=&state=&kind=&priority=&from=&to=&limit=`
//!   (the problem library is `state=closed`), `GET tickets/ID`;
//! - `POST tickets` (open one), `POST tickets/ID/actions` (operator);
//! - `GET oncall?at=`, `GET schedules`, `GET schedules/NAME?from=&to=`;
//! - `POST schedules/NAME/overrides`, `DELETE schedules/NAME/overrides/ID`
//!   (admin);
//! - `GET sla-report?from=&to=`;
//! - `GET audit?since=&until=&actor=&limit=` (admin).
//!
//! Roles are checked before a request gets here; the token's name is the
//! actor on timelines and overrides.

use std::sync::Arc;

use hyper::Method;
use serde::Deserialize;
use serde_json::json;

use super::patrol_api::{parameters, success, Answer, Call, Problem};
use super::HttpState;
use crate::incident::oncall::Role;
use crate::incident::service::TicketFilter;

/// Days of shifts `schedules/NAME` shows when `to` is not given.
const DEFAULT_DAYS: i64 = 7;
const DAY_MS: i64 = 86_400_000;

/// The answer, or None when `call` is not an incident route.
pub(super) async fn serve(state: &Arc<HttpState>, call: &Call) -> Option<Answer> {
    let route = call.route.as_str();
    let head = route.split('/').next().unwrap_or("");
    if !matches!(
        head,
        "tickets" | "oncall" | "schedules" | "sla-report" | "audit"
    ) {
        return None;
    }
    let now = patrol_shared::model::now_ms();
    let (state, route, query) = (state.clone(), route.to_owned(), call.query.clone());
    let (method, caller, body) = (call.method.clone(), call.caller.clone(), call.body.clone());
    // The desk's lock and the store may block.
    let result = tokio::task::spawn_blocking(move || {
        let query = query.as_deref();
        match method {
            Method::GET | Method::HEAD => read(&state, &route, query, now),
            Method::POST => change(&state, &route, &caller, &body, now),
            Method::DELETE => remove(&state, &route),
            other => Err(Problem::BadData(format!(
                "method {other} not allowed on /api/patrol/v1/{route}"
            ))),
        }
    })
    .await
    .unwrap_or_else(|e| Err(Problem::Internal(format!("request task failed: {e}"))));
    Some(Answer::from(result))
}

fn read(state: &HttpState, route: &str, query: Option<&str>, now: i64) -> Result<String, Problem> {
    let incidents = &state.incidents;
    let parts = segments(route);
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    match parts.as_slice() {
        ["tickets"] => success(&incidents.tickets_json(&ticket_filter(query)?, now)),
        ["tickets", id] => {
            let id = ticket_id(id)?;
            let ticket = incidents.ticket_json(id, now);
            success(&ticket.ok_or_else(|| Problem::NotFound(format!("no ticket {id}")))?)
        }
        ["oncall"] => {
            let at = times(query, &["at"])?.first().copied().flatten();
            success(&incidents.oncall_json(at.unwrap_or(now)))
        }
        ["schedules"] => {
            times(query, &[])?;
            success(&incidents.schedules_json(now))
        }
        ["schedules", name] => {
            let t = times(query, &["from", "to"])?;
            let from = t[0].unwrap_or(now);
            let to = t[1].unwrap_or(from.saturating_add(DEFAULT_DAYS * DAY_MS));
            // Saturating: times far out of range (`from=-1e300&to=1e300`)
            // must fail the 92-day check, not wrap past it.
            if to <= from || to.saturating_sub(from) > 92 * DAY_MS {
                return Err(Problem::BadData(
                    "\"to\" must be after \"from\", and at most 92 days later".into(),
                ));
            }
            let schedule = incidents.schedule_json(name, from, to);
            success(&schedule.ok_or_else(|| no_schedule(name))?)
        }
        ["sla-report"] => {
            let t = times(query, &["from", "to"])?;
            let (from, to) = (t[0].unwrap_or(now - 30 * DAY_MS), t[1].unwrap_or(now));
            success(&incidents.report_json(from, to, now))
        }
        ["audit"] => success(&state.audit.read(&audit_query(query)?)?),
        _ => Err(not_found(route)),
    }
}

/// A new override, as `POST schedules/NAME/overrides` takes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOverride {
    /// "primary" (the default) or "secondary".
    #[serde(default)]
    role: Option<String>,
    who: String,
    /// RFC 3339 or Unix seconds, as the query API takes times.
    from: String,
    to: String,
    #[serde(default)]
    reason: String,
}

fn change(
    state: &HttpState,
    route: &str,
    caller: &str,
    body: &[u8],
    now: i64,
) -> Result<String, Problem> {
    let incidents = &state.incidents;
    let parts = segments(route);
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    match parts.as_slice() {
        ["tickets"] => {
            let new: crate::incident::ticket::NewTicket = serde_json::from_slice(body)
                .map_err(|e| Problem::BadData(format!("not a ticket: {e}")))?;
            let id = incidents.open(new, now).map_err(Problem::BadData)?;
            success(&json!({ "id": id }))
        }
        ["tickets", id, "actions"] => {
            let id = ticket_id(id)?;
            let action: crate::incident::ticket::Action = serde_json::from_slice(body)
                .map_err(|e| Problem::BadData(format!("not an action: {e}")))?;
            incidents
                .act(id, action, caller, now)
                .map_err(|e| match e {
                    crate::incident::ticket::TicketError::NotFound(_) => {
                        Problem::NotFound(e.to_string())
                    }
                    other => Problem::BadData(other.to_string()),
                })?;
            success(&incidents.ticket_json(id, now))
        }
        ["schedules", name, "overrides"] => {
            let new: NewOverride = serde_json::from_slice(body)
                .map_err(|e| Problem::BadData(format!("not an override: {e}")))?;
            let time = |field: &str, v: &str| {
                super::api::parse_time(field, v).map_err(|e| Problem::BadData(e.to_string()))
            };
            let (from, to) = (time("from", &new.from)?, time("to", &new.to)?);
            let role = match new.role.as_deref() {
                None => Role::Primary,
                Some(word) => Role::parse(word).ok_or_else(|| {
                    Problem::BadData(format!(
                        "role: expected \"primary\" or \"secondary\", not {word:?}"
                    ))
                })?,
            };
            let id = incidents
                .add_override(name, role, &new.who, from, to, caller, &new.reason, now)
                .map_err(|e| {
                    if e.starts_with("no schedule") {
                        Problem::NotFound(e)
                    } else {
                        Problem::BadData(e)
                    }
                })?;
            success(&json!({ "id": id }))
        }
        _ => Err(not_found(route)),
    }
}

fn remove(state: &HttpState, route: &str) -> Result<String, Problem> {
    let parts = segments(route);
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let ["schedules", name, "overrides", id] = parts.as_slice() else {
        return Err(not_found(route));
    };
    let id: u64 = id
        .parse()
        .map_err(|_| Problem::NotFound(format!("override ids are numbers, not {id:?}")))?;
    match state.incidents.remove_override(name, id) {
        Ok(true) => success(&json!({ "removed": id })),
        Ok(false) => Err(Problem::NotFound(format!(
            "schedule {name:?} has no override {id} made over the API"
        ))),
        Err(e) => Err(Problem::Internal(e)),
    }
}

/// The route's path segments, percent-decoded (schedule names may hold
/// spaces or any script: `schedules/%E5%80%BC%E7%8F%AD`).
fn segments(route: &str) -> Vec<String> {
    route
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

fn not_found(route: &str) -> Problem {
    Problem::NotFound(format!(
        "no route /api/patrol/v1/{route}; see docs/api.md (tickets, tickets/ID, tickets/ID/actions, oncall, schedules, schedules/NAME, schedules/NAME/overrides, sla-report, audit)"
    ))
}

fn no_schedule(name: &str) -> Problem {
    Problem::NotFound(format!("no schedule named {name:?}"))
}

fn ticket_id(text: &str) -> Result<u64, Problem> {
    text.parse()
        .map_err(|_| Problem::NotFound(format!("ticket ids are numbers, not {text:?}")))
}

/// The time parameters `names` (None where absent); any other parameter
/// is an error, so that a misspelt one does not go unnoticed.
fn times(query: Option<&str>, names: &[&str]) -> Result<Vec<Option<i64>>, Problem> {
    let mut out = vec![None; names.len()];
    for (name, value) in parameters(query) {
        let Some(i) = names.iter().position(|n| *n == name) else {
            return Err(unknown(&name, names));
        };
        out[i] = Some(
            super::api::parse_time(&name, &value).map_err(|e| Problem::BadData(e.to_string()))?,
        );
    }
    Ok(out)
}

fn unknown(name: &str, allowed: &[&str]) -> Problem {
    if allowed.is_empty() {
        Problem::BadData(format!("unknown parameter {name:?}: this route takes none"))
    } else {
        Problem::BadData(format!(
            "unknown parameter {name:?}; use {}",
            allowed.join(", ")
        ))
    }
}

/// A parameter naming one of a serde enum's values.
fn enum_value<T: serde::de::DeserializeOwned>(name: &str, value: &str) -> Result<T, Problem> {
    serde_json::from_value(serde_json::Value::String(value.to_owned()))
        .map_err(|e| Problem::BadData(format!("invalid parameter {name:?}: {e}")))
}

fn limit(value: &str) -> Result<usize, Problem> {
    value.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
        Problem::BadData(format!(
            "invalid parameter \"limit\": {value:?} is not a whole number from 1"
        ))
    })
}

fn ticket_filter(query: Option<&str>) -> Result<TicketFilter, Problem> {
    const NAMES: &[&str] = &[
        "q",
        "host",
        "alertname",
        "state",
        "kind",
        "priority",
        "from",
        "to",
        "limit",
    ];
    let mut f = TicketFilter::default();
    for (name, value) in parameters(query) {
        let time =
            |v: &str| super::api::parse_time(&name, v).map_err(|e| Problem::BadData(e.to_string()));
        match name.as_str() {
            "q" => f.words = value.split_whitespace().map(str::to_owned).collect(),
            "host" => f.host = Some(value),
            "alertname" => f.alertname = Some(value),
            "state" => f.state = Some(enum_value(&name, &value)?),
            "kind" => f.kind = Some(enum_value(&name, &value)?),
            "priority" => f.priority = Some(enum_value(&name, &value)?),
            "from" => f.from = Some(time(&value)?),
            "to" => f.to = Some(time(&value)?),
            "limit" => f.limit = Some(limit(&value)?),
            _ => return Err(unknown(&name, NAMES)),
        }
    }
    Ok(f)
}

fn audit_query(query: Option<&str>) -> Result<crate::audit::AuditQuery, Problem> {
    let mut q = crate::audit::AuditQuery {
        limit: 100,
        ..Default::default()
    };
    for (name, value) in parameters(query) {
        let time =
            |v: &str| super::api::parse_time(&name, v).map_err(|e| Problem::BadData(e.to_string()));
        match name.as_str() {
            "since" => q.since = Some(time(&value)?),
            "until" => q.until = Some(time(&value)?),
            "actor" => q.actor = Some(value),
            "limit" => q.limit = limit(&value)?.min(10_000),
            _ => return Err(unknown(&name, &["since", "until", "actor", "limit"])),
        }
    }
    Ok(q)
}
