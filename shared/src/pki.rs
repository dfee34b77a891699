//! The fleet's certificate authority: create it, and issue agent and
//! collector certificates signed by it (ECDSA P-256, rcgen).
//!
//! Files in a PKI folder: `ca.pem` and `ca-key.pem` for the CA, `NAME.pem` and
//! `NAME-key.pem` for each issued certificate. Private keys are written with
//! mode 0600, and no existing file is replaced unless the caller says so.
//! Serial numbers are rcgen's: a SHA-256 of the fresh public key, so unique.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use time::OffsetDateTime;
use x509_parser::extensions::ParsedExtension;

use crate::tls::{certificate_serial, is_valid_host_name, load_certs, serial_hex};

/// How long a CRL written by [`Ca::revoke`] says it is current. Patrol's
/// collector does not refuse a CRL past this date (it has no other to
/// fetch), but other tools may: revoke again, or rewrite it, within a year.
pub const CRL_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// Default validity of an issued (leaf) certificate: one year.
pub const DEFAULT_LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Default validity of the CA: ten years.
pub const DEFAULT_CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Which side a certificate is for; decides its extended key usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// TLS client authentication.
    Agent,
    /// TLS server authentication.
    Collector,
}

/// Why a PKI operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path} already exists; refusing to overwrite it (pass --force to replace it)")]
    Exists { path: PathBuf },
    #[error("cannot write {path}: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("invalid name {name:?}: {reason}")]
    Name { name: String, reason: String },
    #[error("cannot build certificate: {0}")]
    Build(#[from] rcgen::Error),
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A CA in memory: its certificate and the key that signs with it.
pub struct Ca {
    cert_pem: String,
    key: KeyPair,
}

impl Ca {
    /// Creates a new self-signed CA.
    pub fn generate(validity: Duration) -> Result<Ca, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name("Patrol fleet CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + validity;
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            key,
        })
    }

    /// Loads the CA of a PKI folder.
    pub fn load(dir: &Path) -> Result<Ca, PkiError> {
        let (cert_path, key_path) = ca_paths(dir);
        let cert_pem = read(&cert_path)?;
        let key_pem = read(&key_path)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| PkiError::Parse {
            path: key_path,
            reason: e.to_string(),
        })?;
        // Parse once now so a broken CA file is reported by its own name.
        Issuer::from_ca_cert_pem(&cert_pem, &key).map_err(|e| PkiError::Parse {
            path: cert_path,
            reason: e.to_string(),
        })?;
        Ok(Ca { cert_pem, key })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Writes `ca.pem` and `ca-key.pem` into `dir`.
    pub fn write(&self, dir: &Path, force: bool) -> Result<(PathBuf, PathBuf), PkiError> {
        let (cert_path, key_path) = ca_paths(dir);
        check_free(&[&cert_path, &key_path], force)?;
        write_file(&key_path, self.key.serialize_pem().as_bytes(), 0o600, force)?;
        write_file(&cert_path, self.cert_pem.as_bytes(), 0o644, force)?;
        Ok((cert_path, key_path))
    }

    /// Issues a certificate valid from now for `validity`.
    pub fn issue(
        &self,
        role: Role,
        name: &str,
        sans: &[String],
        validity: Duration,
    ) -> Result<Issued, PkiError> {
        let now = OffsetDateTime::now_utc();
        self.issue_between(
            role,
            name,
            sans,
            now - time::Duration::minutes(5),
            now + validity,
        )
    }

    /// Issues a certificate valid between two times (tests use this for
    /// expired and not-yet-valid certificates).
    pub fn issue_between(
        &self,
        role: Role,
        cn: &str,
        sans: &[String],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Issued, PkiError> {
        if !is_valid_host_name(cn) {
            return Err(PkiError::Name {
                name: cn.to_owned(),
                reason: "use letters, digits, '.', '-' and '_' only".into(),
            });
        }
        let mut all_sans = vec![cn.to_owned()];
        all_sans.extend(sans.iter().filter(|s| s.as_str() != cn).cloned());
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        for san in &all_sans {
            params.subject_alt_names.push(san_of(san)?);
        }
        params.distinguished_name = name(cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match role {
            Role::Agent => ExtendedKeyUsagePurpose::ClientAuth,
            Role::Collector => ExtendedKeyUsagePurpose::ServerAuth,
        }];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl Ca {
    /// Adds the certificates in `certs` (PEM files) to the revocation list
    /// at `crl` (created when missing; PEM), keeping what it already
    /// revokes, and re-signs it with a higher CRL number. Returns the
    /// serial numbers added (hex) and the number now revoked.
    pub fn revoke(&self, crl: &Path, certs: &[PathBuf]) -> Result<(Vec<String>, usize), PkiError> {
        let parse = |path: &Path, reason: String| PkiError::Parse {
            path: path.to_owned(),
            reason,
        };
        let (mut revoked, number) = match crl.exists() {
            true => read_crl(crl)?,
            false => (Vec::new(), 0),
        };
        let now = OffsetDateTime::now_utc();
        let mut added = Vec::new();
        for path in certs {
            let leaf = load_certs(path)
                .map_err(|e| parse(path, e.to_string()))?
                .into_iter()
                .next()
                .ok_or_else(|| parse(path, "no certificate".into()))?;
            let serial = certificate_serial(&leaf).map_err(|e| parse(path, e.to_string()))?;
            if revoked
                .iter()
                .any(|r: &RevokedCertParams| r.serial_number.as_ref() == serial)
            {
                continue;
            }
            added.push(serial_hex(&serial));
            revoked.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&serial),
                revocation_time: now,
                reason_code: None,
                invalidity_date: None,
            });
        }
        let count = revoked.len();
        let params = CertificateRevocationListParams {
            this_update: now - time::Duration::minutes(5),
            next_update: now + CRL_VALIDITY,
            crl_number: SerialNumber::from(number + 1),
            issuing_distribution_point: None,
            revoked_certs: revoked,
            key_identifier_method: self.key_identifier(),
        };
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)?;
        let pem = params.signed_by(&issuer)?.pem()?;
        write_file(crl, pem.as_bytes(), 0o644, true)?;
        Ok((added, count))
    }

    /// The CA's own subject key identifier, so the CRL's authority key
    /// identifier matches it whichever tool made the CA.
    fn key_identifier(&self) -> KeyIdMethod {
        let ski = CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
            .ok()
            .and_then(|der| {
                let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
                cert.extensions()
                    .iter()
                    .find_map(|e| match e.parsed_extension() {
                        ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                        _ => None,
                    })
            });
        ski.map_or(KeyIdMethod::Sha256, KeyIdMethod::PreSpecified)
    }
}

/// The entries and CRL number of an existing CRL file (PEM or DER).
fn read_crl(path: &Path) -> Result<(Vec<RevokedCertParams>, u64), PkiError> {
    let bytes = std::fs::read(path).map_err(|error| PkiError::Read {
        path: path.to_owned(),
        error,
    })?;
    let parse = |reason: String| PkiError::Parse {
        path: path.to_owned(),
        reason,
    };
    let der = if bytes.starts_with(b"-----") {
        CertificateRevocationListDer::from_pem_slice(&bytes).map_err(|e| parse(e.to_string()))?
    } else {
        CertificateRevocationListDer::from(bytes)
    };
    let (_, crl) = x509_parser::parse_x509_crl(der.as_ref()).map_err(|e| parse(e.to_string()))?;
    let number = crl
        .crl_number()
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0);
    let mut revoked = Vec::new();
    for entry in crl.iter_revoked_certificates() {
        let time = OffsetDateTime::from_unix_timestamp(entry.revocation_date.timestamp())
            .map_err(|e| parse(e.to_string()))?;
        revoked.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(crate::tls::trim_serial(entry.raw_serial())),
            revocation_time: time,
            reason_code: None,
            invalidity_date: None,
        });
    }
    Ok((revoked, number))
}

impl Issued {
    /// Writes `NAME.pem` and `NAME-key.pem` into `dir`.
    pub fn write(
        &self,
        dir: &Path,
        name: &str,
        force: bool,
    ) -> Result<(PathBuf, PathBuf), PkiError> {
        let (cert_path, key_path) = leaf_paths(dir, name);
        check_free(&[&cert_path, &key_path], force)?;
        write_file(&key_path, self.key_pem.as_bytes(), 0o600, force)?;
        write_file(&cert_path, self.cert_pem.as_bytes(), 0o644, force)?;
        Ok((cert_path, key_path))
    }
}

/// `ca.pem` and `ca-key.pem` in `dir`.
pub fn ca_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("ca.pem"), dir.join("ca-key.pem"))
}

/// `NAME.pem` and `NAME-key.pem` in `dir`.
pub fn leaf_paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}-key.pem")),
    )
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Patrol");
    dn.push(DnType::CommonName, cn);
    dn
}

fn san_of(s: &str) -> Result<SanType, PkiError> {
    if let Ok(ip) = s.parse() {
        return Ok(SanType::IpAddress(ip));
    }
    let dns = s
        .to_owned()
        .try_into()
        .map_err(|e: rcgen::Error| PkiError::Name {
            name: s.to_owned(),
            reason: format!("not a DNS name or IP address: {e}"),
        })?;
    Ok(SanType::DnsName(dns))
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|error| PkiError::Read {
        path: path.to_owned(),
        error,
    })
}

fn check_free(paths: &[&Path], force: bool) -> Result<(), PkiError> {
    if force {
        return Ok(());
    }
    match paths.iter().find(|p| p.exists()) {
        Some(p) => Err(PkiError::Exists {
            path: p.to_path_buf(),
        }),
        None => Ok(()),
    }
}

fn write_file(path: &Path, contents: &[u8], mode: u32, force: bool) -> Result<(), PkiError> {
    let err = |error| PkiError::Write {
        path: path.to_owned(),
        error,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    if force && path.exists() {
        std::fs::remove_file(path).map_err(err)?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                PkiError::Exists {
                    path: path.to_owned(),
                }
            } else {
                err(e)
            }
        })?;
    file.write_all(contents).map_err(err)?;
    file.sync_all().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{certificate_identity, load_certs};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn issued_certificate_names_its_host_and_key_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::generate(DEFAULT_CA_VALIDITY).unwrap();
        ca.write(dir.path(), false).unwrap();
        let ca = Ca::load(dir.path()).unwrap();
        let issued = ca
            .issue(Role::Agent, "db", &[], DEFAULT_LEAF_VALIDITY)
            .unwrap();
        let (cert, key) = issued.write(dir.path(), "db", false).unwrap();
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let certs = load_certs(&cert).unwrap();
        assert_eq!(certificate_identity(&certs[0]).unwrap(), "db");
    }

    #[test]
    fn existing_files_are_not_overwritten_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::generate(DEFAULT_CA_VALIDITY).unwrap();
        ca.write(dir.path(), false).unwrap();
        let err = ca.write(dir.path(), false).unwrap_err();
        assert!(err.to_string().contains("ca.pem already exists"), "{err}");
        ca.write(dir.path(), true).unwrap();
    }

    #[test]
    fn bad_names_are_refused() {
        let ca = Ca::generate(DEFAULT_CA_VALIDITY).unwrap();
        let err = ca
            .issue(Role::Agent, "db/../x", &[], DEFAULT_LEAF_VALIDITY)
            .unwrap_err();
        assert!(matches!(err, PkiError::Name { .. }));
    }

    #[test]
    fn revoking_twice_keeps_both_serials_and_the_collector_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::generate(DEFAULT_CA_VALIDITY).unwrap();
        ca.write(dir.path(), false).unwrap();
        let mut serials = Vec::new();
        for name in ["db", "web"] {
            let (cert, _) = ca
                .issue(Role::Agent, name, &[], DEFAULT_LEAF_VALIDITY)
                .unwrap()
                .write(dir.path(), name, false)
                .unwrap();
            serials.push(certificate_serial(&load_certs(&cert).unwrap()[0]).unwrap());
        }
        let crl = dir.path().join("crl.pem");
        let (added, count) = ca.revoke(&crl, &[dir.path().join("db.pem")]).unwrap();
        assert_eq!((added.len(), count), (1, 1));
        let (added, count) = ca
            .revoke(
                &crl,
                &[dir.path().join("db.pem"), dir.path().join("web.pem")],
            )
            .unwrap();
        assert_eq!((added.len(), count), (1, 2));
        let list = crate::tls::load_crls(&crl, &dir.path().join("ca.pem")).unwrap();
        assert!(list.revokes(&serials[0]) && list.revokes(&serials[1]));
    }

    #[test]
    fn a_crl_of_another_ca_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ours = Ca::generate(DEFAULT_CA_VALIDITY).unwrap();
        ours.write(dir.path(), false).unwrap();
        let other = Ca::generate(DEFAULT_CA_VALIDITY).unwrap();
        let (cert, _) = other
            .issue(Role::Agent, "db", &[], DEFAULT_LEAF_VALIDITY)
            .unwrap()
            .write(dir.path(), "db", false)
            .unwrap();
        let crl = dir.path().join("crl.pem");
        other.revoke(&crl, &[cert]).unwrap();
        let err = crate::tls::load_crls(&crl, &dir.path().join("ca.pem")).unwrap_err();
        assert!(err.to_string().contains("not issued by the CA"), "{err}");
    }
}
