//! One HTTP/1.1 POST to a receiver, over TCP or TLS, with a time limit.
//!
//! TLS: the workspace carries no bundled web PKI roots, so an `https`
//! receiver's certificate is checked against `tls_ca_file` when set, else
//! against the system's CA bundle (the first of [`SYSTEM_BUNDLES`] that
//! exists: Debian/Ubuntu's `ca-certificates`, RHEL's, Alpine's/BSDs');
//! `tls_insecure_skip_verify` accepts any certificate. A receiver whose
//! roots cannot be loaded is refused when the notifier starts.
//!
//! Errors name the receiver's host but never its URL, which for the chat
//! robots holds their access token.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::config::ReceiverConfig;
use super::receivers::Request;

/// Where the system's CA bundle may be, in the order tried.
pub const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

/// The most of an answer's body that is read (for error messages and the
/// chat robots' error codes).
const MAX_ANSWER: usize = 64 * 1024;

/// A receiver's answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// The TLS client for a receiver, when its URL is `https`.
pub fn tls_for(receiver: &ReceiverConfig) -> Result<Option<TlsConnector>, String> {
    if !receiver.kind.url().starts_with("https:") {
        return Ok(None);
    }
    let provider = patrol_shared::tls::provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let mut config = if receiver.tls_insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        builder
            .with_root_certificates(roots(receiver.tls_ca_file.as_deref())?)
            .with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsConnector::from(Arc::new(config))))
}

fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, String> {
    let path = match ca_file {
        Some(p) => p,
        None => SYSTEM_BUNDLES
            .iter()
            .map(Path::new)
            .find(|p| p.is_file())
            .ok_or_else(|| {
                format!(
                    "no system CA bundle (looked for {}); set tls_ca_file",
                    SYSTEM_BUNDLES.join(", ")
                )
            })?,
    };
    let certs = patrol_shared::tls::load_certs(path).map_err(|e| e.to_string())?;
    let mut roots = RootCertStore::empty();
    // A system bundle may hold certificates webpki cannot use; skip those.
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("{}: no usable CA certificate", path.display()));
    }
    Ok(roots)
}

/// Accepts any server certificate (`tls_insecure_skip_verify`), but still
/// checks the handshake signatures so the connection itself is sound.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Posts `request`, waiting at most `timeout` for the whole exchange.
pub async fn post(
    request: &Request,
    tls: Option<&TlsConnector>,
    timeout: Duration,
) -> Result<Answer, String> {
    let uri = super::config::check_url(&request.url).map_err(|_| "invalid URL".to_owned())?;
    let host = uri.host().unwrap_or_default().to_owned();
    match tokio::time::timeout(timeout, exchange(&uri, &host, request, tls)).await {
        Ok(result) => result.map_err(|e| format!("{host}: {e}")),
        Err(_) => Err(format!("{host}: no answer within {timeout:?}")),
    }
}

async fn exchange(
    uri: &hyper::Uri,
    host: &str,
    request: &Request,
    tls: Option<&TlsConnector>,
) -> Result<Answer, String> {
    let https = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    // An IPv6 literal comes bracketed in URLs, bare in addresses.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = TcpStream::connect((bare, port))
        .await
        .map_err(|e| format!("cannot connect to port {port}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = uri.authority().map_or(host, |a| a.as_str());
    let mut builder = hyper::Request::post(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(
            hyper::header::USER_AGENT,
            concat!("Patrol/", env!("CARGO_PKG_VERSION")),
        );
    for (name, value) in &request.headers {
        builder = builder.header(*name, value);
    }
    let req = builder
        .body(Full::new(Bytes::from(request.body.clone())))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    if !https {
        return send(TokioIo::new(tcp), req).await;
    }
    let Some(tls) = tls else {
        return Err("https URL but no TLS client was set up".into());
    };
    let name = ServerName::try_from(bare.to_owned())
        .map_err(|e| format!("{bare:?} is not a valid TLS server name: {e}"))?;
    let stream = tls
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    send(TokioIo::new(stream), req).await
}

async fn send<T>(io: T, req: hyper::Request<Full<Bytes>>) -> Result<Answer, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    // The connection task ends when the sender is dropped, or is aborted
    // with this future when the timeout fires.
    let conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let response = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        // A body too long or cut short still leaves the status to judge by.
        .unwrap_or_default();
    drop(sender);
    drop(conn);
    Ok(Answer { status, body })
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
