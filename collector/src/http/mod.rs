//! The collector's HTTP server (hyper 1): `/metrics`, health, and
//! Prometheus' query API under `/api/v1/` ([`api`]). Routes are few and
//! plain; each answers from shared state. Queries run on the blocking pool.

pub mod api;
pub mod auth;
pub mod exposition;
mod incident_api;
mod patrol_api;
pub mod remote_write;
pub mod silences;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::storage::Store;
use crate::telemetry::Telemetry;

/// Series whose newest sample is older than this are left out of `/metrics`
/// (Prometheus' lookback delta): a host that stopped reporting disappears.
const STALE_AFTER: Duration = Duration::from_secs(300);

/// Largest request body read (form-encoded queries).
const MAX_BODY: usize = 1 << 20;

/// What the handlers read.
pub struct HttpState {
    /// Every change made through the API.
    pub audit: crate::audit::AuditLog,
    pub incidents: Arc<crate::incident::service::IncidentService>,
    /// What `/metrics` serves about the collector itself.
    pub own: Arc<crate::own_metrics::OwnMetrics>,
    pub rules: Arc<crate::rules::manager::Manager>,
    pub silences: Arc<crate::silence::SilenceBook>,
    pub store: Arc<dyn Store>,
    pub telemetry: Arc<Telemetry>,
    pub limits: crate::query::Limits,
    pub auth: auth::Authenticator,
    /// Set when `http.tls` is: HTTPS instead of HTTP.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub writers: remote_write::Writers,
}

/// Serves HTTP until `cancel` fires.
pub async fn serve(listener: TcpListener, state: Arc<HttpState>, cancel: CancellationToken) {
    if let Ok(addr) = listener.local_addr() {
        info!(listen = %addr, "http listening");
    }
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let Some((tcp, peer)) = crate::listener::next(&listener, &cancel, "http").await else {
            break;
        };
        let state = state.clone();
        let cancel = cancel.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn({
                let state = state.clone();
                move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(route(state, req, peer).await) }
                }
            });
            let builder = {
                let mut b = hyper::server::conn::http1::Builder::new();
                b.header_read_timeout(Duration::from_secs(10))
                    .timer(hyper_util::rt::TokioTimer::new());
                b
            };
            let result = match &state.tls {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(tcp), service);
                    tokio::select! {
                        r = conn => r,
                        _ = cancel.cancelled() => Ok(()),
                    }
                }
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp));
                    let stream = match handshake.await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            debug!(%peer, error = %e, "https handshake failed");
                            return;
                        }
                        Err(_) => {
                            debug!(%peer, "https handshake timed out");
                            return;
                        }
                    };
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        r = conn => r,
                        _ = cancel.cancelled() => Ok(()),
                    }
                }
            };
            if let Err(e) = result {
                debug!(%peer, error = %e, "http connection ended");
            }
        });
    }
    crate::listener::drain(connections, "http").await;
    info!("http stopped");
}

/// What a route needs of its caller; None for the open health routes.
/// Viewers read, operators work tickets, admins change schedules and
/// silences and read the audit log.
fn access(method: &Method, path: &str) -> Option<auth::Access> {
    let reads = *method == Method::GET || *method == Method::HEAD;
    match path {
        "/-/healthy" | "/-/ready" => None,
        "/api/v1/write" => Some(auth::Access::Write),
        "/api/patrol/v1/audit" => Some(auth::Access::Administer),
        _ if !reads
            && (path.starts_with("/api/v2/silence")
                || path.starts_with("/api/patrol/v1/schedules")) =>
        {
            Some(auth::Access::Administer)
        }
        _ if !reads && path.starts_with("/api/patrol/v1/tickets") => Some(auth::Access::Operate),
        _ if *method == Method::DELETE => Some(auth::Access::Administer),
        _ => Some(auth::Access::Read),
    }
}

/// Whether a request changes something, and so goes in the audit log:
/// anything but reads under Patrol's and Alertmanager's APIs.
fn audited(method: &Method, path: &str) -> bool {
    !matches!(*method, Method::GET | Method::HEAD)
        && (path.starts_with("/api/patrol/v1/") || path.starts_with("/api/v2/"))
}

async fn route(
    state: Arc<HttpState>,
    req: Request<Incoming>,
    peer: std::net::SocketAddr,
) -> Response<Full<Bytes>> {
    let mut caller = String::new();
    let mut role = None;
    let path = req.uri().path().to_owned();
    if let Some(access) = access(req.method(), &path) {
        let header = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match state.auth.check(header, access) {
            Ok((name, r)) => (caller, role) = (name, Some(r)),
            Err(refusal) => {
                let response = refuse(&refusal, access);
                if let auth::Refusal::Forbidden { name, role } = &refusal {
                    if audited(req.method(), &path) {
                        let (parts, body) = req.into_parts();
                        let body = Limited::new(body, MAX_BODY)
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let who = (name.as_str(), role.as_str());
                        audit(&state, &parts, who, peer, response.status(), &body).await;
                    }
                }
                return response;
            }
        }
    }
    if path == "/api/v1/write" {
        return write(state, caller, req).await;
    }
    let patrol_route = path.strip_prefix("/api/patrol/v1/");
    let v2_route = path.strip_prefix("/api/v2/");
    if patrol_route.is_some() || v2_route.is_some() {
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                let body = serde_json::json!({"status": "error", "errorType": "bad_data",
                    "error": format!("cannot read the request body (at most {MAX_BODY} bytes): {e}")});
                return respond(
                    StatusCode::BAD_REQUEST,
                    "application/json",
                    body.to_string(),
                );
            }
        };
        let response = match patrol_route {
            Some(r) => {
                let call = patrol_api::Call {
                    route: r.to_owned(),
                    caller: caller.clone(),
                    method: parts.method.clone(),
                    query: parts.uri.query().map(str::to_owned),
                    body: body.clone(),
                };
                patrol_api::serve(state.clone(), call).await
            }
            None => {
                let r = v2_route.unwrap_or_default().to_owned();
                v2(state.clone(), r, parts.method.clone(), body.clone()).await
            }
        };
        if audited(&parts.method, &path) {
            let role = role.map_or("", |r| r.as_str());
            audit(
                &state,
                &parts,
                (&caller, role),
                peer,
                response.status(),
                &body,
            )
            .await;
        }
        return response;
    }
    if let Some(api_route) = path.strip_prefix("/api/v1/") {
        let api_route = api_route.to_owned();
        return api(state, api_route, req).await;
    }
    match (req.method(), path.as_str()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            let now = patrol_shared::model::now_ms();
            let body = state
                .own
                .exposition(now - STALE_AFTER.as_millis() as i64, now);
            respond(StatusCode::OK, exposition::CONTENT_TYPE, body)
        }
        (&Method::GET | &Method::HEAD, "/-/healthy" | "/-/ready") => {
            respond(StatusCode::OK, "text/plain; charset=utf-8", "OK\n".into())
        }
        (_, "/metrics" | "/-/healthy" | "/-/ready") => respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "method not allowed\n".into(),
        ),
        (_, path) => respond(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            format!("no route {path}; try /metrics\n"),
        ),
    }
}

/// An `/api/v1/` request: GET, or POST with a form body.
async fn api(
    state: Arc<HttpState>,
    route: String,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    const JSON: &str = "application/json";
    let query = req.uri().query().map(str::to_owned);
    let form = match *req.method() {
        Method::GET | Method::HEAD => None,
        Method::POST => {
            let form_encoded = req
                .headers()
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
            match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(body) if form_encoded => Some(body.to_bytes()),
                Ok(_) => None,
                Err(e) => {
                    let body = serde_json::json!({"status": "error", "errorType": "bad_data",
                        "error": format!("cannot read the request body: {e}")});
                    return respond(StatusCode::BAD_REQUEST, JSON, body.to_string());
                }
            }
        }
        _ => {
            return respond(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain; charset=utf-8",
                "method not allowed; use GET or POST\n".into(),
            )
        }
    };
    let answer = tokio::task::spawn_blocking(move || {
        let params = api::Params::parse(query.as_deref(), form.as_deref());
        let now = patrol_shared::model::now_ms();
        api::answer(
            &state.store,
            &state.rules,
            &state.silences,
            &state.limits,
            &route,
            &params,
            now,
        )
    })
    .await;
    match answer {
        Ok(Some(a)) => respond(a.status, JSON, a.body),
        Ok(None) => respond(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "no such API route\n".into(),
        ),
        Err(e) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            JSON,
            serde_json::json!({"status": "error", "errorType": "internal", "error": e.to_string()})
                .to_string(),
        ),
    }
}

/// `/api/v2/…`: silences, as Alertmanager serves them.
async fn v2(
    state: Arc<HttpState>,
    route: String,
    method: Method,
    body: Bytes,
) -> Response<Full<Bytes>> {
    const JSON: &str = "application/json";
    let now = patrol_shared::model::now_ms();
    let answer = tokio::task::spawn_blocking(move || {
        silences::serve(&state.silences, &method, &route, &body, now)
    })
    .await;
    match answer {
        Ok(Some(a)) => respond(a.status, JSON, a.body),
        Ok(None) => respond(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "no such API route\n".into(),
        ),
        Err(e) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            JSON,
            serde_json::json!({"error": e.to_string()}).to_string(),
        ),
    }
}

/// Writes one audit entry; a failure is logged (the change itself stands).
async fn audit(
    state: &Arc<HttpState>,
    parts: &hyper::http::request::Parts,
    (actor, role): (&str, &str),
    peer: std::net::SocketAddr,
    status: StatusCode,
    body: &Bytes,
) {
    let entry = crate::audit::AuditEntry {
        at: patrol_shared::model::now_ms(),
        actor: actor.to_owned(),
        role: role.to_owned(),
        from: peer.to_string(),
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |p| p.to_string()),
        status: status.as_u16(),
        request: crate::audit::AuditLog::request_summary(body),
    };
    let state = state.clone();
    let written = tokio::task::spawn_blocking(move || state.audit.write(&entry)).await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "cannot write the audit log"),
        Err(e) => tracing::error!(error = %e, "audit task failed"),
    }
}

/// `POST /api/v1/write`: remote write, answered once durable.
async fn write(
    state: Arc<HttpState>,
    caller: String,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if req.method() != Method::POST {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "remote write takes POST\n".into(),
        );
    }
    let body = match Limited::new(req.into_body(), remote_write::MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(e) => {
            return respond(
                StatusCode::BAD_REQUEST,
                TEXT,
                format!(
                    "cannot read the request body (at most {} bytes): {e}\n",
                    remote_write::MAX_BODY_BYTES
                ),
            )
        }
    };
    let outcome = tokio::task::spawn_blocking(move || {
        state.writers.write(state.store.as_ref(), &caller, &body)
    })
    .await;
    match outcome {
        Ok(Ok(_)) => respond(StatusCode::NO_CONTENT, TEXT, String::new()),
        Ok(Err(remote_write::WriteError::BadRequest(why))) => {
            respond(StatusCode::BAD_REQUEST, TEXT, format!("{why}\n"))
        }
        Ok(Err(e @ remote_write::WriteError::Unavailable(_))) => {
            respond(StatusCode::SERVICE_UNAVAILABLE, TEXT, format!("{e}\n"))
        }
        Err(e) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            TEXT,
            format!("write task failed: {e}\n"),
        ),
    }
}

/// 401 (with the schemes to use) or 403, as JSON in Prometheus' shape.
fn refuse(refusal: &auth::Refusal, access: auth::Access) -> Response<Full<Bytes>> {
    let status = match refusal {
        auth::Refusal::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        auth::Refusal::Forbidden { .. } => StatusCode::FORBIDDEN,
    };
    let body = serde_json::json!({"status": "error", "errorType": "unauthorized",
        "error": refusal.message(access)});
    let mut resp = respond(status, "application/json", body.to_string());
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static(
                "Bearer realm=\"patrol\", Basic realm=\"patrol\"",
            ),
        );
    }
    resp
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        resp.headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    resp
}
