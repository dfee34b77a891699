//! TCP checks: can a connection to `host:port` be opened? The HTTP and
//! database checks connect the same way ([`connect`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

use super::Observation;
use crate::config::split_host_port;

/// `tcp = { … }` of a `[[checks]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpCheck {
    /// `host:port` (`[::1]:22` for IPv6).
    pub address: String,
}

impl TcpCheck {
    pub(super) fn compile(&self, key: &str) -> Result<(Probe, String), Vec<String>> {
        check_address(&format!("{key}.address"), &self.address)?;
        Ok((
            Probe {
                address: self.address.clone(),
            },
            self.address.clone(),
        ))
    }
}

/// The same "host:port" rule as the collector addresses.
pub(super) fn check_address(key: &str, address: &str) -> Result<(), Vec<String>> {
    match split_host_port(address) {
        Some(_) => Ok(()),
        None => Err(vec![format!(
            "{key}: {address:?} is not \"host:port\" (e.g. \"127.0.0.1:5432\", \"[::1]:22\")"
        )]),
    }
}

#[derive(Debug)]
pub(super) struct Probe {
    address: String,
}

impl Probe {
    pub(super) async fn run(&self, timeout: Duration) -> Observation {
        match tokio::time::timeout(timeout, connect(&self.address)).await {
            Ok(Ok(stream)) => {
                let peer = stream
                    .peer_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_else(|_| self.address.clone());
                Observation::ok(format!("connected to {peer}"))
            }
            Ok(Err(e)) => Observation::critical(e),
            Err(_) => {
                Observation::critical(format!("no connection within {}", super::human(timeout)))
            }
        }
    }
}

/// Resolves `address` and connects to its addresses in turn; the error
/// names the last failure.
pub(super) async fn connect(address: &str) -> Result<TcpStream, String> {
    let addrs = tokio::net::lookup_host(address)
        .await
        .map_err(|e| format!("cannot resolve {address}: {e}"))?;
    let mut last = format!("{address} resolves to no address");
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Status;

    #[tokio::test]
    async fn an_open_port_is_up_and_a_closed_one_down() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().to_string();
        let (probe, target) = TcpCheck {
            address: open.clone(),
        }
        .compile("t")
        .unwrap();
        assert_eq!(target, open);
        let seen = probe.run(Duration::from_secs(5)).await;
        assert_eq!(seen.status, Status::Ok, "{seen:?}");
        drop(listener);
        let seen = probe.run(Duration::from_secs(5)).await;
        assert_eq!(seen.status, Status::Critical, "{seen:?}");
        assert!(seen.message.contains("cannot connect"), "{seen:?}");
    }

    #[test]
    fn addresses_without_a_port_are_refused() {
        let err = TcpCheck {
            address: "db.example".into(),
        }
        .compile("checks[1].tcp")
        .unwrap_err();
        assert!(err[0].starts_with("checks[1].tcp.address:"), "{err:?}");
    }
}
