//! Database checks: connect, and read the server's first words, without
//! credentials.
//!
//! - MySQL and MariaDB speak first: an initial handshake packet (protocol
//!   version 10, then the server version, NUL-terminated), or an error
//!   packet (`Too many connections`, `Host … is not allowed to connect`),
//!   which is down. MariaDB prefixes its version with `5.5.5-` for old
//!   clients; the prefix is dropped.
//! - PostgreSQL waits for a StartupMessage (protocol 3.0, user `patrol`
//!   unless configured), then asks for authentication (`R`): the server is
//!   up. An error about who we are (SQLSTATE class 28, or 3D000: no such
//!   database) also proves it is up; one about the server itself
//!   (57P03 starting up or shutting down, 53300 too many connections) is
//!   down. Under `trust` authentication it goes on to announce its
//!   `server_version`, which is then reported; the probe says Terminate.
//!
//! Every length a server sends is checked against a small bound before it
//! is used; anything unexpected is reported, never trusted.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::tcp::{check_address, connect};
use super::Observation;

/// `database = { … }` of a `[[checks]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseCheck {
    pub engine: Engine,
    /// `host:port` of the server.
    pub address: String,
    /// PostgreSQL: the user named in the StartupMessage. No password is
    /// ever sent; a user the server does not know still proves it is up.
    #[serde(default = "default_user")]
    pub user: String,
}

fn default_user() -> String {
    "patrol".into()
}

/// Which server's greeting to expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    #[serde(alias = "mariadb")]
    Mysql,
    #[serde(alias = "postgres")]
    Postgresql,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Mysql => "mysql",
            Engine::Postgresql => "postgresql",
        }
    }
}

/// A MySQL greeting is about a hundred bytes; an error packet's message
/// at most 512.
const MAX_MYSQL_PACKET: usize = 4096;
/// Any single PostgreSQL message before authentication is small.
const MAX_PG_MESSAGE: usize = 8192;
/// Messages read after AuthenticationOk before giving up on ReadyForQuery.
const MAX_PG_MESSAGES: usize = 64;
/// Longest version string kept (it becomes a label value).
const MAX_VERSION: usize = 64;

impl DatabaseCheck {
    pub(super) fn compile(&self, key: &str) -> Result<(Probe, String), Vec<String>> {
        let mut problems = check_address(&format!("{key}.address"), &self.address)
            .err()
            .unwrap_or_default();
        if self.user.is_empty() || self.user.contains('\0') || self.user.len() > 63 {
            problems.push(format!("{key}.user: {:?} is not a user name", self.user));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok((
            Probe {
                engine: self.engine,
                address: self.address.clone(),
                user: self.user.clone(),
            },
            self.address.clone(),
        ))
    }
}

#[derive(Debug)]
pub(super) struct Probe {
    engine: Engine,
    address: String,
    user: String,
}

impl Probe {
    pub(super) async fn run(&self, timeout: Duration) -> Observation {
        let probe = async {
            let mut stream = connect(&self.address).await?;
            Ok::<_, String>(match self.engine {
                Engine::Mysql => mysql_greeting(&mut stream).await,
                Engine::Postgresql => postgres_greeting(&mut stream, &self.user).await,
            })
        };
        match tokio::time::timeout(timeout, probe).await {
            Ok(Ok(observation)) => observation,
            Ok(Err(e)) => Observation::critical(e),
            Err(_) => {
                Observation::critical(format!("no greeting within {}", super::human(timeout)))
            }
        }
    }
}

/// Reads exactly `n` bytes, naming what was expected on failure.
async fn read_exact<R: AsyncRead + Unpin>(
    io: &mut R,
    n: usize,
    what: &str,
) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; n];
    io.read_exact(&mut buf)
        .await
        .map_err(|e| format!("connection ended before the {what}: {e}"))?;
    Ok(buf)
}

async fn mysql_greeting<S: AsyncRead + Unpin>(io: &mut S) -> Observation {
    let packet = match read_mysql_packet(io).await {
        Ok(p) => p,
        Err(e) => return Observation::critical(e),
    };
    parse_mysql_greeting(&packet)
}

async fn read_mysql_packet<S: AsyncRead + Unpin>(io: &mut S) -> Result<Vec<u8>, String> {
    let header = read_exact(io, 4, "MySQL greeting").await?;
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    if len == 0 || len > MAX_MYSQL_PACKET {
        return Err(format!(
            "not a MySQL greeting (a packet of {len} bytes announced)"
        ));
    }
    read_exact(io, len, "MySQL greeting").await
}

/// The verdict on a MySQL server's first packet.
fn parse_mysql_greeting(packet: &[u8]) -> Observation {
    match packet.first() {
        Some(&protocol @ 9..=10) => {
            let rest = &packet[1..];
            let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
            let mut version = super::printable(&rest[..end], MAX_VERSION);
            if let Some(mariadb) = version.strip_prefix("5.5.5-") {
                version = mariadb.to_owned();
            }
            let mut o = Observation::ok(format!("MySQL protocol {protocol}, server {version}"));
            if !version.is_empty() {
                o.details.version = Some(version);
            }
            o
        }
        Some(0xff) => {
            let code = packet
                .get(1..3)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .unwrap_or(0);
            let mut message = packet.get(3..).unwrap_or(&[]);
            // A 4.1-style error carries '#' and a five-character SQLSTATE.
            if message.first() == Some(&b'#') {
                message = message.get(6..).unwrap_or(&[]);
            }
            Observation::critical(format!(
                "server refused the connection: {code} {}",
                super::printable(message, 200)
            ))
        }
        Some(other) => {
            Observation::critical(format!("not a MySQL greeting (first byte {other:#04x})"))
        }
        None => Observation::critical("empty MySQL greeting"),
    }
}

/// The StartupMessage of protocol 3.0 for `user`.
fn startup_message(user: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196_608u32.to_be_bytes());
    for (k, v) in [
        ("user", user),
        ("database", user),
        ("application_name", "patrol-agent"),
    ] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let len = u32::try_from(body.len() + 4).unwrap_or(u32::MAX);
    let mut message = len.to_be_bytes().to_vec();
    message.extend_from_slice(&body);
    message
}

/// One backend message: its type byte and body.
async fn read_pg_message<S: AsyncRead + Unpin>(io: &mut S) -> Result<(u8, Vec<u8>), String> {
    let header = read_exact(io, 5, "PostgreSQL answer").await?;
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if !(4..=MAX_PG_MESSAGE + 4).contains(&len) {
        return Err(format!(
            "not a PostgreSQL answer (type {:#04x}, length {len})",
            header[0]
        ));
    }
    let body = read_exact(io, len - 4, "PostgreSQL message").await?;
    Ok((header[0], body))
}

async fn postgres_greeting<S: AsyncRead + AsyncWriteExt + Unpin>(
    io: &mut S,
    user: &str,
) -> Observation {
    if let Err(e) = io.write_all(&startup_message(user)).await {
        return Observation::critical(format!("cannot send the startup message: {e}"));
    }
    let mut version = None;
    for _ in 0..MAX_PG_MESSAGES {
        let (kind, body) = match read_pg_message(io).await {
            Ok(m) => m,
            Err(e) => return Observation::critical(e),
        };
        match kind {
            b'R' => {
                let code = body
                    .get(..4)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                match code {
                    Some(0) => continue,
                    Some(code) => {
                        return Observation::ok(format!(
                            "PostgreSQL asks for {} authentication",
                            auth_name(code)
                        ))
                    }
                    None => return Observation::critical("truncated authentication request"),
                }
            }
            b'S' => {
                if let Some((name, value)) = parameter(&body) {
                    if name == b"server_version" {
                        version = Some(super::printable(value, MAX_VERSION));
                    }
                }
            }
            b'Z' => {
                // Trust authentication let us in: leave politely.
                let _ = io.write_all(&[b'X', 0, 0, 0, 4]).await;
                let mut o = Observation::ok(match &version {
                    Some(v) => format!("PostgreSQL {v} accepted the connection"),
                    None => "PostgreSQL accepted the connection".to_owned(),
                });
                o.details.version = version.filter(|v| !v.is_empty());
                return o;
            }
            b'E' => return judge_pg_error(&error_fields(&body)),
            // BackendKeyData, NoticeResponse, NegotiateProtocolVersion.
            b'K' | b'N' | b'v' => {}
            other => {
                return Observation::critical(format!(
                    "not a PostgreSQL answer (message type {other:#04x})"
                ))
            }
        }
    }
    Observation::critical("PostgreSQL never said it was ready")
}

fn auth_name(code: u32) -> &'static str {
    match code {
        2 => "Kerberos V5",
        3 => "password",
        5 => "MD5 password",
        7 => "GSSAPI",
        9 => "SSPI",
        10 => "SASL (SCRAM)",
        _ => "an unknown kind of",
    }
}

/// A ParameterStatus body: name and value, each NUL-terminated.
fn parameter(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut parts = body.split(|b| *b == 0);
    let name = parts.next()?;
    let value = parts.next()?;
    Some((name, value))
}

/// An ErrorResponse body: (field type, text) pairs, ended by a zero byte.
fn error_fields(body: &[u8]) -> Vec<(u8, String)> {
    let mut fields = Vec::new();
    let mut rest = body;
    while let Some((&kind, after)) = rest.split_first() {
        if kind == 0 {
            break;
        }
        let end = after.iter().position(|b| *b == 0).unwrap_or(after.len());
        fields.push((kind, super::printable(&after[..end], 200)));
        rest = after.get(end + 1..).unwrap_or(&[]);
    }
    fields
}

fn judge_pg_error(fields: &[(u8, String)]) -> Observation {
    let field = |k: u8| {
        fields
            .iter()
            .find(|(kind, _)| *kind == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let code = field(b'C');
    let text = format!("{} {}: {}", field(b'S'), code, field(b'M'));
    // About us (no such role, no pg_hba.conf entry, no such database):
    // the server is up and working.
    if code.starts_with("28") || code == "3D000" {
        Observation::ok(format!("PostgreSQL answered: {text}"))
    } else {
        Observation::critical(format!("PostgreSQL refused: {text}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Status;

    /// A MySQL 8 greeting as the server sends it (payload only).
    fn mysql8_payload() -> Vec<u8> {
        let mut p = vec![10];
        p.extend_from_slice(b"8.0.36\0");
        p.extend_from_slice(&[0x0d, 0, 0, 0]);
        p.extend_from_slice(b"abcdefgh\0");
        p.extend_from_slice(&[0xff, 0xff, 0xff, 0x02, 0x00, 0xff, 0xdf, 0x15]);
        p.extend_from_slice(&[0; 10]);
        p.extend_from_slice(b"ijklmnopqrst\0caching_sha2_password\0");
        p
    }

    #[test]
    fn mysql_greetings_give_the_version() {
        let o = parse_mysql_greeting(&mysql8_payload());
        assert_eq!(o.status, Status::Ok);
        assert_eq!(o.details.version.as_deref(), Some("8.0.36"));
        let mut maria = vec![10];
        maria.extend_from_slice(b"5.5.5-10.11.6-MariaDB-0+deb12u1\0rest");
        let o = parse_mysql_greeting(&maria);
        assert_eq!(
            o.details.version.as_deref(),
            Some("10.11.6-MariaDB-0+deb12u1")
        );
    }

    #[test]
    fn mysql_error_packets_are_down_with_their_message() {
        let mut err = vec![0xff];
        err.extend_from_slice(&1040u16.to_le_bytes());
        err.extend_from_slice(b"Too many connections");
        let o = parse_mysql_greeting(&err);
        assert_eq!(o.status, Status::Critical);
        assert_eq!(
            o.message,
            "server refused the connection: 1040 Too many connections"
        );
        let mut with_state = vec![0xff, 0x6a, 0x04];
        with_state.extend_from_slice(b"#HY000Host 'x' is not allowed to connect");
        assert!(parse_mysql_greeting(&with_state)
            .message
            .ends_with("1130 Host 'x' is not allowed to connect"));
        assert_eq!(parse_mysql_greeting(b"HTTP/1.1").status, Status::Critical);
        assert_eq!(parse_mysql_greeting(&[0xff]).status, Status::Critical);
        assert_eq!(parse_mysql_greeting(&[]).status, Status::Critical);
    }

    #[tokio::test]
    async fn oversized_mysql_lengths_are_refused_before_reading() {
        let mut io: &[u8] = &[0xff, 0xff, 0xff, 0, 1, 2, 3];
        let err = read_mysql_packet(&mut io).await.unwrap_err();
        assert!(err.contains("16777215 bytes"), "{err}");
    }

    #[test]
    fn the_startup_message_is_protocol_3() {
        let m = startup_message("patrol");
        assert_eq!(
            u32::from_be_bytes([m[0], m[1], m[2], m[3]]) as usize,
            m.len()
        );
        assert_eq!(&m[4..8], &[0, 3, 0, 0]);
        assert!(m.ends_with(b"patrol-agent\0\0"));
    }

    #[test]
    fn postgres_errors_about_us_mean_up() {
        let body =
            b"SFATAL\0VFATAL\0C28000\0Mno pg_hba.conf entry for host \"127.0.0.1\"\0Fauth.c\0\0";
        let o = judge_pg_error(&error_fields(body));
        assert_eq!(o.status, Status::Ok, "{o:?}");
        assert!(o.message.contains("28000"), "{o:?}");
        let body = b"SFATAL\0C57P03\0Mthe database system is starting up\0\0";
        assert_eq!(judge_pg_error(&error_fields(body)).status, Status::Critical);
        assert_eq!(error_fields(b"S"), vec![(b'S', String::new())]);
        assert_eq!(error_fields(b""), vec![]);
    }

    proptest::proptest! {
        #[test]
        fn greetings_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse_mysql_greeting(&bytes);
            let _ = judge_pg_error(&error_fields(&bytes));
            let _ = parameter(&bytes);
        }
    }
}
