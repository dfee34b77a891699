//! Patrol's own read routes under `/api/patrol/v1/`: the inspection records
//! and file-integrity events agents sent, as JSON, from the store's record
//! trees ([`crate::storage::records`]).
//!
//! - `GET inspections?host=&since=&limit=`: newest first, without results;
//! - `GET inspections/ID`: one inspection, whole;
//! - `GET fim-events?host=&since=&limit=`: newest first.
//!
//! Answers use the envelope of Prometheus' API (`status`, `data`, or
//! `errorType` and `error`), so the same client code reads both. A bad
//! parameter is a 400 naming it; an id that names no inspection is a 404.
//! The caller's role (viewer at least) is checked before a request gets here.

use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::json;

use super::{respond, HttpState};
use crate::storage::{RecordQuery, Store};

/// Records one answer lists when the request does not say.
const DEFAULT_LIMIT: usize = 100;
/// Records one answer lists at most.
const MAX_LIMIT: usize = 1000;

const JSON: &str = "application/json";

/// Serves one request to `/api/patrol/v1/ROUTE`.
pub(crate) async fn serve(
    state: Arc<HttpState>,
    route: String,
    caller: String,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    if *req.method() == Method::POST && route.starts_with("tickets") {
        return ticket_action(state, route, caller, req).await;
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "method not allowed; use GET\n".into(),
        );
    }
    let query = req.uri().query().map(str::to_owned);
    if let Some(answer) = tickets(&state, &route, query.as_deref()) {
        return respond(answer.status, JSON, answer.body);
    }
    let store = state.store.clone();
    // sled reads block.
    match tokio::task::spawn_blocking(move || answer(&*store, &route, query.as_deref())).await {
        Ok(a) => respond(a.status, JSON, a.body),
        Err(e) => {
            let e = Problem::Internal(format!("request task failed: {e}"));
            respond(e.status(), JSON, e.body())
        }
    }
}

/// `POST tickets` (open one by hand: a `NewTicket`) and `POST
/// tickets/ID/actions` (an `Action`: acknowledge, comment, assign,
/// resolve, close, …), by an operator; the token's name is the actor on the
/// ticket's timeline.
async fn ticket_action(
    state: Arc<HttpState>,
    route: String,
    caller: String,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    use http_body_util::BodyExt;
    let body = match http_body_util::Limited::new(req.into_body(), 1 << 20)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let p = Problem::BadData(format!("cannot read the request body: {e}"));
            return respond(p.status(), JSON, p.body());
        }
    };
    let now = patrol_shared::model::now_ms();
    let outcome = tokio::task::spawn_blocking(move || -> Result<String, Problem> {
        let incidents = &state.incidents;
        if route == "tickets" {
            let new: crate::incident::ticket::NewTicket = serde_json::from_slice(&body)
                .map_err(|e| Problem::BadData(format!("not a ticket: {e}")))?;
            let id = incidents.open(new, now).map_err(Problem::BadData)?;
            return success(&json!({ "id": id }));
        }
        let id = route
            .strip_prefix("tickets/")
            .and_then(|r| r.strip_suffix("/actions"))
            .and_then(|id| id.parse::<u64>().ok())
            .ok_or_else(|| {
                Problem::NotFound(format!(
                    "no route POST /api/patrol/v1/{route}; use tickets/ID/actions"
                ))
            })?;
        let action: crate::incident::ticket::Action = serde_json::from_slice(&body)
            .map_err(|e| Problem::BadData(format!("not an action: {e}")))?;
        incidents
            .act(id, action, &caller, now)
            .map_err(|e| match e {
                crate::incident::ticket::TicketError::NotFound(_) => {
                    Problem::NotFound(e.to_string())
                }
                other => Problem::BadData(other.to_string()),
            })?;
        success(&incidents.ticket_json(id, now))
    })
    .await;
    match outcome {
        Ok(Ok(body)) => respond(StatusCode::OK, JSON, body),
        Ok(Err(p)) => respond(p.status(), JSON, p.body()),
        Err(e) => {
            let p = Problem::Internal(format!("request task failed: {e}"));
            respond(p.status(), JSON, p.body())
        }
    }
}

/// `tickets`, `tickets/ID` and `oncall`, from the incident desk in memory.
fn tickets(state: &HttpState, route: &str, query: Option<&str>) -> Option<Answer> {
    let now = patrol_shared::model::now_ms();
    if route == "sla-report" {
        let time = |name: &str, default: i64| -> Result<i64, Problem> {
            match parameters(query).find(|(n, _)| n == name) {
                None => Ok(default),
                Some((_, v)) => {
                    super::api::parse_time(name, &v).map_err(|e| Problem::BadData(e.to_string()))
                }
            }
        };
        let answer = time("from", now - 30 * 86_400_000)
            .and_then(|from| time("to", now).map(|to| (from, to)))
            .and_then(|(from, to)| success(&state.incidents.report_json(from, to, now)));
        return Some(Answer::from(answer));
    }
    if route == "oncall" {
        let at = match parameters(query).find(|(n, _)| n == "at") {
            None => Ok(now),
            Some((_, v)) => {
                super::api::parse_time("at", &v).map_err(|e| Problem::BadData(e.to_string()))
            }
        };
        let answer = at.and_then(|at| success(&state.incidents.oncall_json(at)));
        return Some(Answer::from(answer));
    }
    let found = match route.strip_prefix("tickets") {
        Some("") => Ok(state.incidents.tickets_json(now)),
        Some(rest) => match rest.strip_prefix('/').map(str::parse::<u64>) {
            Some(Ok(id)) => state
                .incidents
                .ticket_json(id, now)
                .ok_or_else(|| Problem::NotFound(format!("no ticket {id}"))),
            _ => Err(Problem::NotFound(format!(
                "no route /api/patrol/v1/{route}; tickets are tickets/ID with a number"
            ))),
        },
        None => return None,
    };
    Some(Answer::from(found.and_then(|data| success(&data))))
}

/// Status and JSON body.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub body: String,
}

#[derive(Debug, PartialEq)]
enum Problem {
    BadData(String),
    NotFound(String),
    Internal(String),
}

impl Problem {
    fn status(&self) -> StatusCode {
        match self {
            Problem::BadData(_) => StatusCode::BAD_REQUEST,
            Problem::NotFound(_) => StatusCode::NOT_FOUND,
            Problem::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn body(&self) -> String {
        let (kind, error) = match self {
            Problem::BadData(e) => ("bad_data", e),
            Problem::NotFound(e) => ("not_found", e),
            Problem::Internal(e) => ("internal", e),
        };
        json!({"status": "error", "errorType": kind, "error": error}).to_string()
    }
}

impl From<crate::storage::StoreError> for Problem {
    fn from(e: crate::storage::StoreError) -> Self {
        Problem::Internal(e.to_string())
    }
}

/// The answer to `route` (the path after `/api/patrol/v1/`) with the query
/// string `query`.
pub(crate) fn answer(store: &dyn Store, route: &str, query: Option<&str>) -> Answer {
    Answer::from(data(store, route, query))
}

impl From<Result<String, Problem>> for Answer {
    /// 200 with the body, or the problem's status and error body.
    fn from(result: Result<String, Problem>) -> Answer {
        match result {
            Ok(body) => Answer {
                status: StatusCode::OK,
                body,
            },
            Err(p) => Answer {
                status: p.status(),
                body: p.body(),
            },
        }
    }
}

fn data(store: &dyn Store, route: &str, query: Option<&str>) -> Result<String, Problem> {
    match route.split_once('/') {
        None if route == "inspections" => success(&store.inspections(&list_query(query)?)?),
        None if route == "fim-events" => success(&store.fim_events(&list_query(query)?)?),
        None if route == "notifications" => {
            let q = list_query(query)?;
            if q.host.is_some() || q.since_ms != RecordQuery::default().since_ms {
                return Err(Problem::BadData(
                    "notifications take only \"limit\"".into(),
                ));
            }
            let attempts = crate::notify::store_outbox::attempts_in(store, q.limit)
                .map_err(|e| Problem::Internal(e.to_string()))?;
            success(&attempts)
        }
        Some(("inspections", id)) if !id.is_empty() && !id.contains('/') => {
            if let Some(name) = parameters(query).next().map(|(n, _)| n) {
                return Err(Problem::BadData(format!(
                    "unknown parameter \"{name}\": an inspection by id takes none"
                )));
            }
            match store.inspection(id)? {
                Some(record) => success(&record),
                None => Err(Problem::NotFound(format!(
                    "no inspection with id \"{id}\" (ids are 32 hex digits, as the list gives them)"
                ))),
            }
        }
        _ => Err(Problem::NotFound(format!(
            "no route /api/patrol/v1/{route}; try inspections, inspections/ID, fim-events or notifications"
        ))),
    }
}

fn success<T: Serialize>(data: &T) -> Result<String, Problem> {
    serde_json::to_string(&json!({"status": "success", "data": data}))
        .map_err(|e| Problem::Internal(format!("cannot write JSON: {e}")))
}

fn parameters(query: Option<&str>) -> impl Iterator<Item = (String, String)> + '_ {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned()
}

/// `host`, `since` and `limit`, each checked; an unknown parameter is an
/// error too, so that a misspelt filter does not list everything.
fn list_query(query: Option<&str>) -> Result<RecordQuery, Problem> {
    let mut q = RecordQuery {
        limit: DEFAULT_LIMIT,
        ..RecordQuery::default()
    };
    for (name, value) in parameters(query) {
        match name.as_str() {
            "host" => {
                if !patrol_shared::tls::is_valid_host_name(&value) {
                    return Err(Problem::BadData(format!(
                        "invalid parameter \"host\": {value:?} is not a host name (letters, digits, '.', '-', '_')"
                    )));
                }
                q.host = Some(value);
            }
            "since" => {
                q.since_ms = super::api::parse_time("since", &value)
                    .map_err(|e| Problem::BadData(e.to_string()))?;
            }
            "limit" => {
                q.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        Problem::BadData(format!(
                            "invalid parameter \"limit\": {value:?} is not a whole number from 1 to {MAX_LIMIT}"
                        ))
                    })?;
            }
            other => {
                return Err(Problem::BadData(format!(
                    "unknown parameter \"{other}\"; use host, since and limit"
                )))
            }
        }
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::recovering::Storage;
    use crate::storage::BatchRecords;
    use patrol_shared::inspection::{Inspection, Summary};
    use patrol_shared::model::AgentEvent;

    fn store() -> (tempfile::TempDir, Storage) {
        let dir = tempfile::tempdir().unwrap();
        let store = Storage::open(dir.path()).unwrap();
        let inspection = |t| Inspection {
            host: "db".into(),
            root: "/".into(),
            time_ms: t,
            agent_version: "0.1.0".into(),
            score: Some(50.0),
            summary: Summary::default(),
            results: Vec::new(),
        };
        let event = |t, m: &str| AgentEvent {
            timestamp_ms: t,
            kind: "file_integrity".into(),
            message: m.into(),
        };
        store
            .record(BatchRecords {
                host: "db".into(),
                stream_id: 1,
                seq: 1,
                inspections: vec![inspection(1_000), inspection(2_000_000)],
                fim_events: vec![event(1_500, "/etc/hosts modified: mode 0644 → 0666")],
            })
            .unwrap();
        (dir, store)
    }

    fn get(store: &Storage, route: &str, query: &str) -> (StatusCode, serde_json::Value) {
        let a = answer(store, route, Some(query));
        (a.status, serde_json::from_str(&a.body).unwrap())
    }

    #[test]
    fn lists_filter_by_host_since_and_limit() {
        let (_dir, store) = store();
        let (status, body) = get(&store, "inspections", "");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "success");
        assert_eq!(body["data"].as_array().unwrap().len(), 2);
        assert_eq!(body["data"][0]["time_ms"], 2_000_000);
        let (_, body) = get(&store, "inspections", "host=db&since=1000&limit=5");
        assert_eq!(body["data"].as_array().unwrap().len(), 1);
        let (_, body) = get(&store, "inspections", "since=1970-01-01T00:00:00Z&limit=1");
        assert_eq!(body["data"].as_array().unwrap().len(), 1);
        let (_, body) = get(&store, "inspections", "host=web");
        assert!(body["data"].as_array().unwrap().is_empty());
        let (_, body) = get(&store, "fim-events", "host=db");
        assert_eq!(body["data"][0]["path"], "/etc/hosts");
        assert_eq!(body["data"][0]["change"], "modified");
    }

    #[test]
    fn one_inspection_by_id_or_404() {
        let (_dir, store) = store();
        let (_, list) = get(&store, "inspections", "");
        let id = list["data"][0]["id"].as_str().unwrap().to_owned();
        let (status, body) = get(&store, &format!("inspections/{id}"), "");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["data"]["id"], id.as_str());
        assert_eq!(body["data"]["host"], "db");
        assert!(body["data"]["results"].is_array());
        for missing in ["0".repeat(32), "nope".to_owned()] {
            let (status, body) = get(&store, &format!("inspections/{missing}"), "");
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert_eq!(body["errorType"], "not_found");
        }
        let (status, _) = get(&store, "nothing-here", "");
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn bad_parameters_are_400s_naming_the_parameter() {
        let (_dir, store) = store();
        for (route, query, name) in [
            ("inspections", "since=yesterday", "\"since\""),
            ("inspections", "limit=0", "\"limit\""),
            ("inspections", "limit=100000", "\"limit\""),
            ("fim-events", "limit=ten", "\"limit\""),
            ("fim-events", "host=a%20b", "\"host\""),
            ("fim-events", "hots=db", "\"hots\""),
        ] {
            let (status, body) = get(&store, route, query);
            assert_eq!(status, StatusCode::BAD_REQUEST, "{route}?{query}");
            assert_eq!(body["errorType"], "bad_data");
            let error = body["error"].as_str().unwrap();
            assert!(error.contains(name), "{route}?{query}: {error}");
        }
    }
}
