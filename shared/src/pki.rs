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
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use time::OffsetDateTime;

use crate::tls::is_valid_host_name;

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
}
