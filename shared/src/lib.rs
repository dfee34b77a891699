//! What agent and collector must agree on: the data model
//! ([`model`]), the security-baseline inspection record ([`inspection`]),
//! the protocol messages ([`protocol`]), how they are framed on the wire
//! ([`codec`]), TLS set-up ([`tls`]) and, with the `pki` feature,
//! the fleet's certificate authority ([`pki`]). What both binaries do the
//! same way lives here too: reading config files ([`config`]), logging
//! ([`logging`]), waiting for Ctrl-C or SIGTERM ([`signal`]) and telling
//! systemd how the service is doing ([`systemd`]).

pub mod codec;
pub mod config;
pub mod inspection;
pub mod logging;
pub mod model;
#[cfg(feature = "pki")]
pub mod pki;
pub mod protocol;
pub mod signal;
pub mod systemd;
pub mod tls;
