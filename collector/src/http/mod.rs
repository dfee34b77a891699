//! The collector's HTTP server (hyper 1): `/metrics`, health, and
//! Prometheus' query API under `/api/v1/` ([`api`]). Routes are few and
//! plain; each answers from shared state. Queries run on the blocking pool.

pub mod api;
pub mod auth;
pub mod exposition;
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
    pub incidents: Arc<crate::incident::service::IncidentService>,
    /// Delivery counters, when notifications are configured.
    pub notifications: Option<Arc<crate::notify::NotificationCounters>>,
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
    loop {
        let Some((tcp, peer)) = crate::listener::next(&listener, &cancel, "http").await else {
            break;
        };
        let state = state.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn({
                let state = state.clone();
                move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(route(state, req).await) }
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
    info!("http stopped");
}

/// What a route needs of its caller; None for the open health routes.
fn access(method: &Method, path: &str) -> Option<auth::Access> {
    match path {
        "/-/healthy" | "/-/ready" => None,
        "/api/v1/write" => Some(auth::Access::Write),
        _ if (path.starts_with("/api/v2/silence")
            || path.starts_with("/api/patrol/v1/tickets"))
            && method != Method::GET
            && method != Method::HEAD =>
        {
            Some(auth::Access::Operate)
        }
        _ if method == Method::DELETE => Some(auth::Access::Operate),
        _ => Some(auth::Access::Read),
    }
}

async fn route(state: Arc<HttpState>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let mut caller = String::new();
    if let Some(access) = access(req.method(), req.uri().path()) {
        let header = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match state.auth.check(header, access) {
            Ok((name, _)) => caller = name,
            Err(refusal) => return refuse(&refusal, access),
        }
    }
    if req.uri().path() == "/api/v1/write" {
        return write(state, caller, req).await;
    }
    if let Some(patrol_route) = req.uri().path().strip_prefix("/api/patrol/v1/") {
        let patrol_route = patrol_route.to_owned();
        return patrol_api::serve(state, patrol_route, caller, req).await;
    }
    if let Some(v2_route) = req.uri().path().strip_prefix("/api/v2/") {
        let v2_route = v2_route.to_owned();
        return v2(state, v2_route, req).await;
    }
    if let Some(api_route) = req.uri().path().strip_prefix("/api/v1/") {
        let api_route = api_route.to_owned();
        return api(state, api_route, req).await;
    }
    match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            let since = patrol_shared::model::now_ms() - STALE_AFTER.as_millis() as i64;
            let mut families = state.store.latest(since);
            let now = patrol_shared::model::now_ms();
            if let Some(counters) = &state.notifications {
                families.push(counters.family(now));
            }
            families.extend(state.incidents.families(now));
            let body = exposition::render(&families, &state.store.stats(), &state.telemetry);
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
async fn v2(state: Arc<HttpState>, route: String, req: Request<Incoming>) -> Response<Full<Bytes>> {
    const JSON: &str = "application/json";
    let method = req.method().clone();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let body = serde_json::json!({"error": format!("cannot read the request body: {e}")});
            return respond(StatusCode::BAD_REQUEST, JSON, body.to_string());
        }
    };
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
