//! HTTP(S) checks: one request, and a verdict on the status code, an
//! optional regex over the start of the body, and for HTTPS the
//! certificate's expiry.
//!
//! The request is HTTP/1.1 over hyper's connection API (no pool, no
//! redirects followed: a 301 is an answer). TLS is rustls with the
//! certificate verified against `ca_file` or the system's CA bundle. The
//! verifier records the server's certificate before judging it, so the
//! expiry is reported even when verification fails, which is when it
//! matters most (an expired certificate). The body is only read when a
//! regex asks for it, and then at most `body_max_bytes` of it: a check of
//! the courseware server must not download a video.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use patrol_shared::config as cfg;
use regex::Regex;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde::{Deserialize, Serialize};
use tokio_rustls::TlsConnector;

use super::tcp::{check_address, connect};
use super::Observation;

/// `http = { … }` of a `[[checks]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    /// `http://` or `https://` URL.
    pub url: String,
    #[serde(default)]
    pub method: Method,
    /// Status codes that are up; empty means 200–399.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect_status: Vec<u16>,
    /// A regex the body must match (searched in its first
    /// `body_max_bytes`, read as UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_regex: Option<String>,
    #[serde(with = "cfg::bytes", default = "default_body_max")]
    pub body_max_bytes: usize,
    /// Extra request headers (`Host`, `Authorization`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Connect here instead of the URL's host and port (`127.0.0.1:443`
    /// to check a virtual host on this machine by its public name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// CA certificates (PEM) to verify the server against; default: the
    /// system's bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Verify the server's certificate. When false the expiry is still
    /// reported.
    #[serde(default = "yes")]
    pub tls_verify: bool,
}

/// The request method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    Get,
    Head,
}

fn default_body_max() -> usize {
    1 << 20
}

fn yes() -> bool {
    true
}

/// Where distributions keep the CA bundle, first found wins.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

impl HttpCheck {
    pub fn new(url: &str) -> HttpCheck {
        HttpCheck {
            url: url.to_owned(),
            method: Method::Get,
            expect_status: Vec::new(),
            body_regex: None,
            body_max_bytes: default_body_max(),
            headers: BTreeMap::new(),
            address: None,
            ca_file: None,
            tls_verify: true,
        }
    }

    pub(super) fn compile(&self, key: &str) -> Result<(Probe, String), Vec<String>> {
        let mut problems = Vec::new();
        let target = parse_url(&self.url).map_err(|e| problems.push(format!("{key}.url: {e}")));
        let body_regex = match self.body_regex.as_deref().map(Regex::new).transpose() {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("{key}.body_regex: not a regex: {e}"));
                None
            }
        };
        if self.method == Method::Head && self.body_regex.is_some() {
            problems.push(format!(
                "{key}.body_regex: a HEAD request has no body to match; use method = \"GET\""
            ));
        }
        for code in &self.expect_status {
            if !(100..=599).contains(code) {
                problems.push(format!("{key}.expect_status: {code} is not an HTTP status"));
            }
        }
        if self.body_max_bytes == 0 || self.body_max_bytes > 64 << 20 {
            problems.push(format!("{key}.body_max_bytes: between 1 byte and 64MiB"));
        }
        let mut headers = Vec::new();
        for (name, value) in &self.headers {
            match (
                HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(value.as_str()),
            ) {
                (Ok(n), Ok(v)) => headers.push((n, v)),
                _ => problems.push(format!("{key}.headers.{name}: not a valid header")),
            }
        }
        if let Some(address) = &self.address {
            if let Err(mut p) = check_address(&format!("{key}.address"), address) {
                problems.append(&mut p);
            }
        }
        let tls = match (&target, self.ca_file.as_deref()) {
            (Ok(t), ca) if t.tls => Tls::new(ca, self.tls_verify)
                .map(Some)
                .map_err(|e| problems.push(format!("{key}.ca_file: {e}")))
                .unwrap_or(None),
            _ => None,
        };
        let target = match target {
            Ok(t) if problems.is_empty() => t,
            _ => return Err(problems),
        };
        let label = self.url.clone();
        Ok((
            Probe {
                connect_to: self.address.clone().unwrap_or_else(|| target.authority()),
                target,
                method: self.method,
                expect_status: self.expect_status.clone(),
                body_regex,
                body_max_bytes: self.body_max_bytes,
                headers,
                tls,
            },
            label,
        ))
    }
}

/// The parts of a URL a request needs.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    tls: bool,
    /// Without IPv6 brackets.
    host: String,
    port: u16,
    /// Origin-form: path and query.
    path: String,
}

impl Target {
    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The Host header: the port only when it is not the scheme's.
    fn host_header(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

fn parse_url(url: &str) -> Result<Target, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(format!("{url:?}: the scheme must be http or https")),
    };
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("{url:?} names no host"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".to_owned());
    Ok(Target {
        tls,
        host,
        port,
        path,
    })
}

/// TLS settings made once: the provider and the verifier of the roots.
#[derive(Debug)]
struct Tls {
    provider: Arc<CryptoProvider>,
    /// None when verification is off.
    verifier: Option<Arc<WebPkiServerVerifier>>,
    /// Why there is no verifier although verification is on.
    no_roots: Option<String>,
}

impl Tls {
    fn new(ca_file: Option<&Path>, verify: bool) -> Result<Tls, String> {
        let provider = patrol_shared::tls::provider();
        if !verify {
            return Ok(Tls {
                provider,
                verifier: None,
                no_roots: None,
            });
        }
        let mut roots = RootCertStore::empty();
        let source = match ca_file {
            Some(path) => {
                let certs = patrol_shared::tls::load_certs(path).map_err(|e| e.to_string())?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(format!("{}: no usable CA certificate", path.display()));
                }
                path.display().to_string()
            }
            None => system_roots(&mut roots),
        };
        let built =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build();
        let (verifier, no_roots) = match built {
            Ok(v) => (Some(v), None),
            // Only the system bundle can be empty here; the check then
            // says so at each run rather than refusing the config.
            Err(e) => (
                None,
                Some(format!(
                    "no CA certificates to verify against ({source}: {e}); set ca_file"
                )),
            ),
        };
        Ok(Tls {
            provider,
            verifier,
            no_roots,
        })
    }
}

/// Adds the first system CA bundle found; returns its name.
fn system_roots(roots: &mut RootCertStore) -> String {
    for path in SYSTEM_BUNDLES {
        if let Ok(bytes) = std::fs::read(path) {
            let certs = CertificateDer::pem_slice_iter(&bytes).filter_map(Result::ok);
            roots.add_parsable_certificates(certs);
            return (*path).to_owned();
        }
    }
    "no system CA bundle".to_owned()
}

#[derive(Debug)]
pub(super) struct Probe {
    target: Target,
    connect_to: String,
    method: Method,
    expect_status: Vec<u16>,
    body_regex: Option<Regex>,
    body_max_bytes: usize,
    headers: Vec<(HeaderName, HeaderValue)>,
    tls: Option<Tls>,
}

/// What one exchange produced before any verdict.
struct Exchange {
    status: u16,
    /// The start of the body, when a regex needs it.
    body: Option<Vec<u8>>,
}

impl Probe {
    pub(super) async fn run(&self, timeout: Duration) -> Observation {
        let seen_cert = Arc::new(Mutex::new(None));
        let exchange = tokio::time::timeout(timeout, self.exchange(&seen_cert)).await;
        let not_after = seen_cert.lock().ok().and_then(|g| *g);
        let mut observation = match exchange {
            Ok(Ok(x)) => self.judge(&x),
            Ok(Err(e)) => Observation::critical(e),
            Err(_) => Observation::critical(format!("no answer within {}", super::human(timeout))),
        };
        if let Some(not_after) = not_after {
            let days = (not_after - patrol_shared::model::now_ms() / 1000) as f64 / 86_400.0;
            let when = if days >= 0.0 {
                format!("certificate expires in {days:.1} days")
            } else {
                format!("certificate expired {:.1} days ago", -days)
            };
            observation.message = format!("{}; {when}", observation.message);
            observation.details.cert_not_after = Some(not_after);
        }
        observation
    }

    fn judge(&self, x: &Exchange) -> Observation {
        let status_ok = if self.expect_status.is_empty() {
            (200..400).contains(&x.status)
        } else {
            self.expect_status.contains(&x.status)
        };
        let mut o = if !status_ok {
            Observation::critical(format!("status {}", x.status))
        } else {
            match (&self.body_regex, &x.body) {
                (Some(re), Some(body)) if !re.is_match(&String::from_utf8_lossy(body)) => {
                    Observation::critical(format!(
                        "status {}, body does not match /{}/",
                        x.status,
                        re.as_str()
                    ))
                }
                _ => Observation::ok(format!("status {}", x.status)),
            }
        };
        o.details.http_status = Some(x.status);
        o
    }

    async fn exchange(&self, seen_cert: &Arc<Mutex<Option<i64>>>) -> Result<Exchange, String> {
        let tcp = connect(&self.connect_to).await?;
        match &self.tls {
            None => self.request(TokioIo::new(tcp)).await,
            Some(tls) => {
                if let Some(why) = &tls.no_roots {
                    return Err(why.clone());
                }
                let verifier = Arc::new(Recording {
                    inner: tls.verifier.clone(),
                    provider: tls.provider.clone(),
                    not_after: seen_cert.clone(),
                });
                let mut config = ClientConfig::builder_with_provider(tls.provider.clone())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| format!("TLS set-up: {e}"))?
                    .dangerous()
                    .with_custom_certificate_verifier(verifier)
                    .with_no_client_auth();
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                let name = ServerName::try_from(self.target.host.clone())
                    .map_err(|e| format!("{:?} is not a TLS server name: {e}", self.target.host))?;
                let stream = TlsConnector::from(Arc::new(config))
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS handshake with {}: {e}", self.connect_to))?;
                self.request(TokioIo::new(stream)).await
            }
        }
    }

    async fn request<I>(&self, io: I) -> Result<Exchange, String>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        // The connection is driven by its own task; aborting it when done
        // (or dropped at the timeout) closes the socket.
        let driver = AbortOnDrop(tokio::spawn(connection));
        let mut request = Request::builder()
            .method(match self.method {
                Method::Get => hyper::Method::GET,
                Method::Head => hyper::Method::HEAD,
            })
            .uri(self.target.path.as_str())
            .header(hyper::header::HOST, self.target.host_header())
            .header(
                hyper::header::USER_AGENT,
                concat!("patrol-agent/", env!("CARGO_PKG_VERSION")),
            )
            .header(hyper::header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("cannot build the request: {e}"))?;
        for (name, value) in &self.headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("HTTP request: {e}"))?;
        let status = response.status().as_u16();
        let body = match &self.body_regex {
            Some(_) => Some(read_body(response.into_body(), self.body_max_bytes).await?),
            None => None,
        };
        drop(driver);
        Ok(Exchange { status, body })
    }
}

/// Reads at most `max` bytes of a body; the rest is never fetched.
async fn read_body(mut body: hyper::body::Incoming, max: usize) -> Result<Vec<u8>, String> {
    let mut kept = Vec::new();
    while kept.len() < max {
        match body.frame().await {
            None => break,
            Some(Err(e)) => return Err(format!("reading the body: {e}")),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let room = max - kept.len();
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
        }
    }
    Ok(kept)
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Records the server certificate's expiry, then verifies it (or, with
/// verification off, accepts it; handshake signatures are always checked).
#[derive(Debug)]
struct Recording {
    inner: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
    not_after: Arc<Mutex<Option<i64>>>,
}

/// The certificate's notAfter, in Unix seconds.
fn not_after(cert: &CertificateDer<'_>) -> Option<i64> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    Some(parsed.validity().not_after.timestamp())
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut slot) = self.not_after.lock() {
            *slot = not_after(end_entity);
        }
        match &self.inner {
            Some(v) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Status;

    #[test]
    fn urls_split_into_what_a_request_needs() {
        let t = parse_url("https://training.example/healthz?full=1").unwrap();
        assert_eq!(
            t,
            Target {
                tls: true,
                host: "training.example".into(),
                port: 443,
                path: "/healthz?full=1".into()
            }
        );
        assert_eq!(t.host_header(), "training.example");
        let t = parse_url("http://[::1]:8080").unwrap();
        assert_eq!(t.host, "::1");
        assert_eq!(t.path, "/");
        assert_eq!(t.authority(), "[::1]:8080");
        assert_eq!(t.host_header(), "[::1]:8080");
        assert!(parse_url("ftp://x/").is_err());
        assert!(parse_url("/just/a/path").is_err());
        assert!(parse_url("http://").is_err());
    }

    #[test]
    fn config_problems_name_their_keys() {
        let mut c = HttpCheck::new("gopher://x/");
        c.body_regex = Some("(".into());
        c.expect_status = vec![200, 42];
        c.headers.insert("bad header".into(), "x".into());
        c.address = Some("nowhere".into());
        let text = c.compile("checks[0].http").unwrap_err().join("\n");
        for key in [
            "url",
            "body_regex",
            "expect_status",
            "headers.bad header",
            "address",
        ] {
            assert!(
                text.contains(&format!("checks[0].http.{key}:")),
                "{key}: {text}"
            );
        }
        let mut c = HttpCheck::new("https://x/");
        c.ca_file = Some("/nonexistent/ca.pem".into());
        let text = c.compile("h").unwrap_err().join("\n");
        assert!(text.contains("h.ca_file"), "{text}");
    }

    #[test]
    fn statuses_and_bodies_are_judged() {
        let (probe, _) = HttpCheck {
            body_regex: Some("ok".into()),
            ..HttpCheck::new("http://127.0.0.1/")
        }
        .compile("h")
        .unwrap();
        let judge = |status, body: &[u8]| {
            probe
                .judge(&Exchange {
                    status,
                    body: Some(body.to_vec()),
                })
                .status
        };
        assert_eq!(judge(200, b"all ok"), Status::Ok);
        assert_eq!(judge(301, b"ok"), Status::Ok);
        assert_eq!(judge(200, b"error"), Status::Critical);
        assert_eq!(judge(503, b"ok"), Status::Critical);
        assert_eq!(judge(200, b"\xff\xfeok"), Status::Ok);
        let (probe, _) = HttpCheck {
            expect_status: vec![401],
            ..HttpCheck::new("http://127.0.0.1/")
        }
        .compile("h")
        .unwrap();
        let x = |status| Exchange { status, body: None };
        assert_eq!(probe.judge(&x(401)).status, Status::Ok);
        assert_eq!(probe.judge(&x(200)).status, Status::Critical);
    }
}
