//! The TLS handshake and the agent's identity: who is at the other end,
//! and, when the handshake fails, why, in a word fit for a metric label.

use std::io;

use rustls::{CertificateError, Error as TlsError};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::IngestContext;

/// Why a connection was refused before the protocol started.
#[derive(Debug)]
pub struct Refusal {
    pub reason: &'static str,
    pub detail: String,
}

/// Who is at the other end, from its certificate.
#[derive(Debug)]
pub struct Identity {
    /// The subject common name: the `host` label of its data.
    pub host: String,
    /// The certificate's serial number, to notice its revocation later.
    pub serial: Vec<u8>,
}

/// Completes the TLS handshake within the configured time and returns the
/// stream and who the client certificate names.
pub async fn accept(
    ctx: &IngestContext,
    tcp: TcpStream,
) -> Result<(TlsStream<TcpStream>, Identity), Refusal> {
    // The acceptor of this moment: a certificate reloaded since the last
    // connection is used from this handshake on.
    let acceptor = ctx.credentials.acceptor();
    let tls = tokio::time::timeout(ctx.limits.handshake_timeout, acceptor.accept(tcp))
        .await
        .map_err(|_| Refusal {
            reason: "handshake_timeout",
            detail: format!("no TLS handshake within {:?}", ctx.limits.handshake_timeout),
        })?
        .map_err(|e| Refusal {
            reason: classify(&e),
            detail: e.to_string(),
        })?;
    let identity = {
        let (_, conn) = tls.get_ref();
        let cert = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or_else(|| Refusal {
                reason: "no_client_certificate",
                detail: "the client sent no certificate".into(),
            })?;
        let bad = |e: patrol_shared::tls::TlsError| Refusal {
            reason: "bad_identity",
            detail: e.to_string(),
        };
        Identity {
            host: patrol_shared::tls::certificate_identity(cert).map_err(bad)?,
            serial: patrol_shared::tls::certificate_serial(cert).map_err(bad)?,
        }
    };
    Ok((tls, identity))
}

/// The refusal for a certificate the revocation list names.
pub fn revoked(identity: &Identity) -> Refusal {
    Refusal {
        reason: "certificate_revoked",
        detail: format!(
            "certificate of {} (serial {}) is revoked",
            identity.host,
            patrol_shared::tls::serial_hex(&identity.serial)
        ),
    }
}

/// Maps a handshake error to a bounded reason label.
fn classify(err: &io::Error) -> &'static str {
    let Some(tls) = err.get_ref().and_then(|e| e.downcast_ref::<TlsError>()) else {
        return match err.kind() {
            io::ErrorKind::UnexpectedEof => "closed_during_handshake",
            _ => "io_error",
        };
    };
    match tls {
        TlsError::InvalidCertificate(cert) => match cert {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "certificate_expired"
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "certificate_not_yet_valid"
            }
            // Every Patrol CA has the same subject, so a certificate from
            // another fleet's CA fails on the signature, not the name.
            CertificateError::UnknownIssuer | CertificateError::BadSignature => "unknown_ca",
            CertificateError::Revoked => "certificate_revoked",
            _ => "bad_certificate",
        },
        TlsError::NoCertificatesPresented => "no_client_certificate",
        TlsError::InvalidMessage(_) | TlsError::InappropriateHandshakeMessage { .. } => "not_tls",
        TlsError::InappropriateMessage { .. } => "not_tls",
        TlsError::PeerIncompatible(_) => "tls_incompatible",
        TlsError::AlertReceived(_) => "alert_from_peer",
        _ => "tls_error",
    }
}
