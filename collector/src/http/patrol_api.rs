//! Patrol's own routes under `/api/patrol/v1/`: the incident routes
//! (tickets, on call, schedules, SLA report, audit log) are in
//! [`super::incident_api`]; here, the inspection records and
//! file-integrity events agents sent, as JSON, from the store's record
//! trees ([`crate::storage::records`]), and the notification log.
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
use hyper::body::Bytes;
use hyper::{Method, Response, StatusCode};
use serde::Serialize;
use serde_json::json;

use super::{respond, HttpState};
use crate::storage::{RecordQuery, Store};

/// Records one answer lists when the request does not say.
const DEFAULT_LIMIT: usize = 100;
/// Records one answer lists at most.
const MAX_LIMIT: usize = 1000;

const JSON: &str = "application/json";

/// One request to `/api/patrol/v1/ROUTE`, its body already read.
pub(crate) struct Call {
    /// The path after `/api/patrol/v1/`.
    pub route: String,
    /// The token's name.
    pub caller: String,
    pub method: Method,
    pub query: Option<String>,
    pub body: Bytes,
}

/// Serves one request to `/api/patrol/v1/ROUTE`.
pub(crate) async fn serve(state: Arc<HttpState>, call: Call) -> Response<Full<Bytes>> {
    if let Some(answer) = super::incident_api::serve(&state, &call).await {
        return respond(answer.status, JSON, answer.body);
    }
    if !matches!(call.method, Method::GET | Method::HEAD) {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "method not allowed; use GET\n".into(),
        );
    }
    let store = state.store.clone();
    let Call { route, query, .. } = call;
    // sled reads block.
    match tokio::task::spawn_blocking(move || answer(&*store, &route, query.as_deref())).await {
        Ok(a) => respond(a.status, JSON, a.body),
        Err(e) => {
            let e = Problem::Internal(format!("request task failed: {e}"));
            respond(e.status(), JSON, e.body())
        }
    }
}

/// Status and JSON body.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub body: String,
}

#[derive(Debug, PartialEq)]
pub(super) enum Problem {
    BadData(String),
    NotFound(String),
    Internal(String),
}

impl Problem {
    pub(super) fn status(&self) -> StatusCode {
        match self {
            Problem::BadData(_) => StatusCode::BAD_REQUEST,
            Problem::NotFound(_) => StatusCode::NOT_FOUND,
            Problem::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub(super) fn body(&self) -> String {
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

pub(super) fn success<T: Serialize>(data: &T) -> Result<String, Problem> {
    serde_json::to_string(&json!({"status": "success", "data": data}))
        .map_err(|e| Problem::Internal(format!("cannot write JSON: {e}")))
}

pub(super) fn parameters(query: Option<&str>) -> impl Iterator<Item = (String, String)> + '_ {
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
