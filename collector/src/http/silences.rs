//! Silences over HTTP, in Alertmanager's v2 shapes so `amtool` and
//! scripts written for Alertmanager work: `GET /api/v2/silences`,
//! `GET /api/v2/silence/ID`, `POST /api/v2/silences` (create, or update
//! with an `id`), `DELETE /api/v2/silence/ID` (expire). Reading needs the
//! viewer role, changing the operator role.

use hyper::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value as Json};

use crate::silence::{Silence, SilenceBook, SilenceError, SilenceMatcher};

/// An answer: status and JSON body.
pub struct Answer {
    pub status: StatusCode,
    pub body: String,
}

fn answer(status: StatusCode, body: Json) -> Answer {
    Answer {
        status,
        body: body.to_string(),
    }
}

fn error(status: StatusCode, message: String) -> Answer {
    answer(status, json!({ "error": message }))
}

/// A silence as posted: times in RFC 3339.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Posted {
    #[serde(default)]
    id: String,
    matchers: Vec<SilenceMatcher>,
    starts_at: String,
    ends_at: String,
    created_by: String,
    comment: String,
}

fn parse_time(field: &str, s: &str) -> Result<i64, String> {
    super::api::parse_time(field, s).map_err(|e| e.to_string())
}

/// A silence in Alertmanager's `gettableSilence` shape.
pub fn silence_json(s: &Silence, now: i64) -> Json {
    json!({
        "id": s.id,
        "status": { "state": s.state(now).as_str() },
        "matchers": s.matchers,
        "startsAt": patrol_shared::model::rfc3339(s.starts_at),
        "endsAt": patrol_shared::model::rfc3339(s.ends_at),
        "updatedAt": patrol_shared::model::rfc3339(s.starts_at.min(now)),
        "createdBy": s.created_by,
        "comment": s.comment,
    })
}

/// Answers a `/api/v2/...` silence route (the path after `/api/v2/`);
/// None if it is not one.
pub fn serve(
    book: &SilenceBook,
    method: &Method,
    route: &str,
    body: &[u8],
    now: i64,
) -> Option<Answer> {
    let id = route.strip_prefix("silence/").filter(|id| !id.is_empty());
    Some(match (method, route, id) {
        (&Method::GET, "silences", _) => answer(
            StatusCode::OK,
            Json::Array(book.list().iter().map(|s| silence_json(s, now)).collect()),
        ),
        (&Method::POST, "silences", _) => {
            let posted: Posted = match serde_json::from_slice(body) {
                Ok(p) => p,
                Err(e) => {
                    return Some(error(
                        StatusCode::BAD_REQUEST,
                        format!("cannot read the silence: {e}"),
                    ))
                }
            };
            let times = parse_time("startsAt", &posted.starts_at)
                .and_then(|s| parse_time("endsAt", &posted.ends_at).map(|e| (s, e)));
            let (starts_at, ends_at) = match times {
                Ok(t) => t,
                Err(e) => return Some(error(StatusCode::BAD_REQUEST, e)),
            };
            let silence = Silence {
                id: posted.id,
                matchers: posted.matchers,
                starts_at,
                ends_at,
                created_by: posted.created_by,
                comment: posted.comment,
            };
            match book.put(silence, now) {
                Ok(id) => answer(StatusCode::OK, json!({ "silenceID": id })),
                Err(e @ SilenceError::NotFound(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
                Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
            }
        }
        (&Method::GET, _, Some(id)) => match book.get(id) {
            Some(s) => answer(StatusCode::OK, silence_json(&s, now)),
            None => error(StatusCode::NOT_FOUND, format!("no silence with id {id:?}")),
        },
        (&Method::DELETE, _, Some(id)) => match book.expire(id, now) {
            Ok(()) => answer(StatusCode::OK, json!({})),
            Err(e @ SilenceError::NotFound(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
        (_, "silences", _) | (_, _, Some(_)) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed here"),
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_list_get_and_expire() {
        let book = SilenceBook::in_memory();
        let body = json!({
            "matchers": [{"name": "host", "value": "db", "isRegex": false, "isEqual": true}],
            "startsAt": "2026-11-25T10:00:00Z",
            "endsAt": "2026-11-25T12:00:00Z",
            "createdBy": "ops",
            "comment": "disk swap",
        });
        let now = 1_795_600_000_000 + 3_600_000; // within the window
        let a = serve(
            &book,
            &Method::POST,
            "silences",
            body.to_string().as_bytes(),
            now,
        )
        .unwrap();
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        let id = serde_json::from_str::<Json>(&a.body).unwrap()["silenceID"]
            .as_str()
            .unwrap()
            .to_owned();
        let list: Json = serde_json::from_str(
            &serve(&book, &Method::GET, "silences", b"", now)
                .unwrap()
                .body,
        )
        .unwrap();
        assert_eq!(list[0]["id"], id.as_str());
        assert_eq!(list[0]["matchers"][0]["name"], "host");
        let route = format!("silence/{id}");
        assert_eq!(
            serve(&book, &Method::DELETE, &route, b"", now)
                .unwrap()
                .status,
            StatusCode::OK
        );
        let one: Json =
            serde_json::from_str(&serve(&book, &Method::GET, &route, b"", now).unwrap().body)
                .unwrap();
        assert_eq!(one["status"]["state"], "expired");
        assert_eq!(
            serve(&book, &Method::DELETE, "silence/nope", b"", now)
                .unwrap()
                .status,
            StatusCode::NOT_FOUND
        );
        let bad = serve(&book, &Method::POST, "silences", b"{\"matchers\": []}", now).unwrap();
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert!(bad.body.contains("missing field"), "{}", bad.body);
        assert!(serve(&book, &Method::GET, "status", b"", now).is_none());
    }
}
