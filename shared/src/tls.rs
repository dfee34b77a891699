//! TLS for the wire protocol: TLS 1.3 only, both sides authenticated by
//! certificates chained to the fleet CA.
//!
//! Certificates and keys are read from PEM files; every error names the file.
//! The crypto provider is *ring*, chosen once here so agent and collector
//! cannot drift apart.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::collections::HashSet;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use x509_parser::extensions::ParsedExtension;

/// Where one side's certificate material lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The fleet CA certificate (PEM) that peers must chain to.
    pub ca: PathBuf,
    /// This side's certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// This side's private key (PEM, PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
}

impl TlsFiles {
    /// Resolves relative paths against `base` (the config file's folder).
    pub fn resolve(&mut self, base: &Path) {
        for p in [&mut self.ca, &mut self.cert, &mut self.key] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }
}

/// Why TLS could not be set up, or a peer not identified.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: not valid PEM: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("{path}: no certificate in the file (expected a PEM 'CERTIFICATE' block)")]
    NoCertificate { path: PathBuf },
    #[error("{path}: no private key in the file (expected a PEM 'PRIVATE KEY' block)")]
    NoKey { path: PathBuf },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("peer certificate: {0}")]
    Identity(String),
}

/// The crypto provider both sides use.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        path: path.to_owned(),
        error,
    })
}

/// Reads every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Reads the first private key in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_owned(),
        },
        other => TlsError::Pem {
            path: path.to_owned(),
            reason: other.to_string(),
        },
    })
}

fn load_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| TlsError::Invalid {
            path: path.to_owned(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(Arc::new(roots))
}

/// Server side: TLS 1.3, client certificate required and chained to the CA.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with_crls(files, Vec::new())
}

/// [`server_config`] that also refuses client certificates these CRLs
/// revoke (see [`load_crls`]).
pub fn server_config_with_crls(
    files: &TlsFiles,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let roots = load_roots(&files.ca)?;
    // A certificate no CRL speaks for is let in: the CRL is a deny list, and
    // a CRL file that does not cover the CA must not lock the fleet out
    // ([`load_crls`] refuses such files anyway).
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
        .with_crls(crls)
        .allow_unknown_revocation_status()
        .build()
        .map_err(|e| TlsError::Invalid {
            path: files.ca.clone(),
            reason: e.to_string(),
        })?;
    let certs = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Invalid {
            path: files.cert.clone(),
            reason: e.to_string(),
        })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Invalid {
            path: files.key.clone(),
            reason: format!("certificate and key do not form a usable pair: {e}"),
        })?;
    Ok(Arc::new(config))
}

/// An HTTPS server (the collector's API): TLS 1.2 and 1.3, no client
/// certificate, HTTP/1.1 offered over ALPN.
pub fn https_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = load_certs(cert)?;
    let key_der = load_key(key)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid {
            path: cert.to_owned(),
            reason: e.to_string(),
        })?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| TlsError::Invalid {
            path: key.to_owned(),
            reason: format!("certificate and key do not form a usable pair: {e}"),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Client side: TLS 1.3, the collector chained to the CA, our certificate sent.
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = load_roots(&files.ca)?;
    let certs = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Invalid {
            path: files.cert.clone(),
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| TlsError::Invalid {
            path: files.key.clone(),
            reason: format!("certificate and key do not form a usable pair: {e}"),
        })?;
    Ok(Arc::new(config))
}

/// The CRLs of a file (PEM, one or more `X509 CRL` blocks, or one DER CRL),
/// checked against the CA in `ca`: each must name it as issuer, and by its
/// key where both carry key identifiers, so a CRL of another fleet (whose CA
/// has the same name) is refused here rather than failing every agent's
/// signature check later. Returns the CRLs for rustls and the revoked
/// serial numbers (see [`certificate_serial`]).
pub fn load_crls(path: &Path, ca: &Path) -> Result<RevocationList, TlsError> {
    let bytes = read(path)?;
    let invalid = |reason: String| TlsError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let crls: Vec<CertificateRevocationListDer<'static>> = if bytes.starts_with(b"-----") {
        CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::Pem {
                path: path.to_owned(),
                reason: e.to_string(),
            })?
    } else {
        vec![CertificateRevocationListDer::from(bytes)]
    };
    if crls.is_empty() {
        return Err(invalid(
            "no CRL in the file (expected PEM 'X509 CRL' blocks or a DER CRL)".into(),
        ));
    }
    let ca_certs = load_certs(ca)?;
    let mut serials = HashSet::new();
    for (n, crl) in crls.iter().enumerate() {
        let (_, parsed) = x509_parser::parse_x509_crl(crl.as_ref())
            .map_err(|e| invalid(format!("CRL #{}: cannot parse: {e}", n + 1)))?;
        if !ca_certs.iter().any(|ca| crl_is_from(&parsed, ca)) {
            return Err(invalid(format!(
                "CRL #{} was not issued by the CA in {} (issuer {})",
                n + 1,
                ca.display(),
                parsed.issuer()
            )));
        }
        for revoked in parsed.iter_revoked_certificates() {
            serials.insert(trim_serial(revoked.raw_serial()).to_vec());
        }
    }
    Ok(RevocationList { crls, serials })
}

/// The CRLs of one file and the serial numbers they revoke.
#[derive(Debug, Clone, Default)]
pub struct RevocationList {
    pub crls: Vec<CertificateRevocationListDer<'static>>,
    pub serials: HashSet<Vec<u8>>,
}

impl RevocationList {
    /// Whether a certificate with this serial (from [`certificate_serial`])
    /// is revoked.
    pub fn revokes(&self, serial: &[u8]) -> bool {
        self.serials.contains(trim_serial(serial))
    }
}

fn crl_is_from(
    crl: &x509_parser::revocation_list::CertificateRevocationList<'_>,
    ca: &CertificateDer<'_>,
) -> bool {
    let Ok((_, ca)) = x509_parser::parse_x509_certificate(ca.as_ref()) else {
        return false;
    };
    if crl.issuer() != ca.subject() {
        return false;
    }
    let ski = ca
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0),
            _ => None,
        });
    let aki = crl
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|id| id.0)
            }
            _ => None,
        });
    match (ski, aki) {
        (Some(ski), Some(aki)) => ski == aki,
        _ => true,
    }
}

/// A certificate's serial number, as the big-endian bytes of a positive
/// integer without leading zeros (how revocation lists are compared).
pub fn certificate_serial(cert: &CertificateDer<'_>) -> Result<Vec<u8>, TlsError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| TlsError::Identity(format!("cannot parse: {e}")))?;
    Ok(trim_serial(parsed.raw_serial()).to_vec())
}

/// DER integers carry a leading zero when the high bit is set; drop it.
pub(crate) fn trim_serial(raw: &[u8]) -> &[u8] {
    let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
    &raw[start..]
}

/// A serial number as colon-separated hex, the way `openssl x509 -serial`
/// and operators' tools print it.
pub fn serial_hex(serial: &[u8]) -> String {
    serial
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The identity a certificate names: its subject common name.
pub fn certificate_identity(cert: &CertificateDer<'_>) -> Result<String, TlsError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| TlsError::Identity(format!("cannot parse: {e}")))?;
    let cn = parsed
        .subject()
        .iter_common_name()
        .next()
        .ok_or_else(|| TlsError::Identity("subject has no common name".into()))?;
    let cn = cn
        .as_str()
        .map_err(|e| TlsError::Identity(format!("common name is not a string: {e}")))?;
    if !is_valid_host_name(cn) {
        return Err(TlsError::Identity(format!(
            "common name {cn:?} is not a host name (letters, digits, '.', '-', '_')"
        )));
    }
    Ok(cn.to_owned())
}

/// Host names as Patrol accepts them for identities and labels.
pub fn is_valid_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}
