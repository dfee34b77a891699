//! The collector's HTTP server (hyper 1): `/metrics` now, the query API
//! later. Routes are few and plain; each answers from shared state.

pub mod exposition;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
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

/// What the handlers read.
pub struct HttpState {
    pub store: Arc<dyn Store>,
    pub telemetry: Arc<Telemetry>,
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
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .header_read_timeout(Duration::from_secs(10))
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(TokioIo::new(tcp), service);
            tokio::select! {
                r = conn => if let Err(e) = r { debug!(%peer, error = %e, "http connection ended") },
                _ = cancel.cancelled() => {}
            }
        });
    }
    info!("http stopped");
}

fn route(state: &HttpState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            let since = patrol_shared::model::now_ms() - STALE_AFTER.as_millis() as i64;
            let body = exposition::render(
                &state.store.latest(since),
                &state.store.stats(),
                &state.telemetry,
            );
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

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        resp.headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    resp
}
