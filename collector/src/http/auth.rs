//! Who may use the HTTP API: API tokens with roles, checked on every route
//! but the health routes. A token is sent as `Authorization: Bearer TOKEN`
//! or as the password of HTTP basic auth with the token's name as the user
//! (the two ways Grafana's datasource settings offer). The config keeps
//! only each token's SHA-256, so a leaked config leaks no token.

use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read: queries, series, labels, `/metrics`.
    Viewer,
    /// Write samples (remote write), nothing else.
    Writer,
    /// Read, and work tickets.
    Operator,
    /// Everything, including on-call schedules, silences and the audit log.
    Admin,
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Operate,
    /// Change schedules and silences, read the audit log.
    Administer,
}

impl Role {
    pub fn allows(self, access: Access) -> bool {
        matches!(
            (self, access),
            (Role::Admin, _)
                | (Role::Viewer | Role::Operator, Access::Read)
                | (Role::Writer, Access::Write)
                | (Role::Operator, Access::Operate)
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Writer => "writer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// One token as the config keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who or what the token is for; the user name for basic auth.
    pub name: String,
    pub role: Role,
    /// Hex SHA-256 of the token.
    pub sha256: String,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 401: no credentials, or unknown ones.
    Unauthenticated(&'static str),
    /// 403: a known token whose role does not allow this.
    Forbidden { name: String, role: Role },
}

impl Refusal {
    pub fn message(&self, access: Access) -> String {
        match self {
            Refusal::Unauthenticated(why) => why.to_string(),
            Refusal::Forbidden { name, role } => format!(
                "token {name:?} has role {}, which may not {}",
                role.as_str(),
                match access {
                    Access::Read => "read",
                    Access::Write => "write samples",
                    Access::Operate => "do this",
                    Access::Administer => "do this (admin only)",
                }
            ),
        }
    }
}

/// Hex SHA-256 of a token, as the config stores it.
pub fn hash_token(token: &str) -> String {
    let d = digest::digest(&digest::SHA256, token.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random token: `patrol_` and 32 random bytes in hex.
pub fn generate_token() -> Result<String, ring::error::Unspecified> {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes)?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("patrol_{hex}"))
}

/// The configured tokens, checking requests.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    tokens: Vec<TokenConfig>,
}

impl Authenticator {
    pub fn new(tokens: Vec<TokenConfig>) -> Authenticator {
        Authenticator { tokens }
    }

    /// Checks an `Authorization` header value for `access`; the token's
    /// name and role when it may.
    pub fn check(
        &self,
        authorization: Option<&str>,
        access: Access,
    ) -> Result<(String, Role), Refusal> {
        let Some(header) = authorization else {
            return Err(Refusal::Unauthenticated(
                "authentication required: send Authorization: Bearer TOKEN, or basic auth with the token's name and the token",
            ));
        };
        let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header, ""));
        let (user, token) = if scheme.eq_ignore_ascii_case("bearer") {
            (None, rest.trim().to_owned())
        } else if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64_decode(rest.trim())
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or(Refusal::Unauthenticated("malformed basic auth header"))?;
            let (user, password) = decoded
                .split_once(':')
                .ok_or(Refusal::Unauthenticated("malformed basic auth header"))?;
            (Some(user.to_owned()), password.to_owned())
        } else {
            return Err(Refusal::Unauthenticated(
                "unsupported authorization scheme; use Bearer or Basic",
            ));
        };
        let hash = hash_token(&token);
        let found = self
            .tokens
            .iter()
            .find(|t| {
                t.sha256.eq_ignore_ascii_case(&hash) && user.as_ref().is_none_or(|u| *u == t.name)
            })
            .ok_or(Refusal::Unauthenticated("unknown token"))?;
        if found.role.allows(access) {
            Ok((found.name.clone(), found.role))
        } else {
            Err(Refusal::Forbidden {
                name: found.name.clone(),
                role: found.role,
            })
        }
    }
}

/// Standard base64, padded or not; None if malformed.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> (Authenticator, String, String) {
        let viewer = generate_token().unwrap();
        let writer = generate_token().unwrap();
        let a = Authenticator::new(vec![
            TokenConfig {
                name: "grafana".into(),
                role: Role::Viewer,
                sha256: hash_token(&viewer),
            },
            TokenConfig {
                name: "prometheus".into(),
                role: Role::Writer,
                sha256: hash_token(&writer),
            },
        ]);
        (a, viewer, writer)
    }

    #[test]
    fn bearer_and_basic_auth_with_roles() {
        let (a, viewer, writer) = auth();
        let bearer = format!("Bearer {viewer}");
        assert_eq!(
            a.check(Some(&bearer), Access::Read).unwrap().1,
            Role::Viewer
        );
        assert!(matches!(
            a.check(Some(&bearer), Access::Write),
            Err(Refusal::Forbidden { .. })
        ));
        let basic = format!("Basic {}", base64_encode(&format!("prometheus:{writer}")));
        assert_eq!(
            a.check(Some(&basic), Access::Write).unwrap().0,
            "prometheus"
        );
        let wrong_user = format!("Basic {}", base64_encode(&format!("grafana:{writer}")));
        assert!(matches!(
            a.check(Some(&wrong_user), Access::Write),
            Err(Refusal::Unauthenticated(_))
        ));
        assert!(a.check(None, Access::Read).is_err());
        assert!(a.check(Some("Bearer patrol_nope"), Access::Read).is_err());
        assert!(a.check(Some("Basic !!!"), Access::Read).is_err());
        assert!(a.check(Some("Digest x"), Access::Read).is_err());
    }

    #[test]
    fn tokens_are_random_and_hashes_are_sha256() {
        assert_ne!(generate_token().unwrap(), generate_token().unwrap());
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(base64_decode("YWJj").unwrap(), b"abc");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
    }

    fn base64_encode(s: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    }
}
