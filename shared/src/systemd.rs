//! Telling systemd how the service is doing (`Type=notify` units): READY=1
//! once the daemon serves, WATCHDOG=1 at half the unit's `WatchdogSec`,
//! RELOADING=1 when a reload starts (READY=1 again when it is done),
//! STOPPING=1 on the way out. Outside systemd (`NOTIFY_SOCKET` unset) every
//! call is a no-op, so the binaries call these unconditionally.
//!
//! The protocol is one datagram of `KEY=value` lines to the unix socket
//! named by `NOTIFY_SOCKET` (sd_notify(3)); a name starting with `@` is in
//! the abstract namespace. That is small enough to write here; the
//! `sd-notify` crate (0.5) treats `@` names as file paths, which fails in
//! the containers and test harnesses that use them.
//!
//! The watchdog is fed from a task on the binary's own runtime: if that
//! runtime stalls (a blocking call on the agent's single thread, a
//! deadlock), the pings stop and systemd restarts the service, which is
//! what `WatchdogSec` is for.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Tells systemd the service is up; `status` shows in `systemctl status`.
pub fn ready(status: &str) {
    send(&format!("READY=1\nSTATUS={status}\n"));
}

/// Tells systemd a reload has begun; [`ready`] again says it is done, as
/// sd_notify(3) asks. `systemctl status` shows "reloading" in between.
/// No MONOTONIC_USEC: only `Type=notify-reload` units (systemd 253 and
/// later) use it to match a reload to its request, and std has no portable
/// way to read CLOCK_MONOTONIC as a number.
pub fn reloading() {
    send("RELOADING=1\nSTATUS=reloading the config\n");
}

/// Tells systemd the service is shutting down.
pub fn stopping() {
    send("STOPPING=1\nSTATUS=stopping\n");
}

/// Updates the free-text status line only.
pub fn status(status: &str) {
    send(&format!("STATUS={status}\n"));
}

/// How often to ping the watchdog: half of `WATCHDOG_USEC`, as
/// sd_watchdog_enabled(3) advises; `None` when the unit has no watchdog or
/// it is meant for another process (`WATCHDOG_PID`).
pub fn watchdog_period() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec) / 2)
}

/// Spawns a task that sends WATCHDOG=1 every [`watchdog_period`] until it is
/// aborted; `None` when there is no watchdog to feed. Needs a tokio runtime.
pub fn spawn_watchdog() -> Option<tokio::task::JoinHandle<()>> {
    let period = watchdog_period()?;
    tracing::debug!(?period, "feeding the systemd watchdog");
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            send("WATCHDOG=1\n");
        }
    }))
}

fn send(message: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    // A lost notification is not worth stopping the service for; systemd
    // says so itself (start timeout, watchdog) when it matters.
    if let Err(e) = notify(&socket, message) {
        tracing::warn!(socket = ?socket, error = %e, "cannot notify systemd");
    }
}

/// Sends `message` as one datagram to `socket` (a path, or `@name` for the
/// abstract namespace).
fn notify(socket: &OsStr, message: &str) -> io::Result<()> {
    let addr = match socket.as_bytes() {
        [b'@', name @ ..] => abstract_addr(name)?,
        _ => SocketAddr::from_pathname(socket)?,
    };
    let sender = UnixDatagram::unbound()?;
    let sent = sender.send_to_addr(message.as_bytes(), &addr)?;
    if sent != message.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short datagram"));
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn abstract_addr(name: &[u8]) -> io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(target_os = "linux"))]
fn abstract_addr(_name: &[u8]) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract unix sockets exist only on Linux",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(receiver: &UnixDatagram) -> String {
        let mut buf = [0u8; 256];
        receiver
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let n = receiver.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn message_reaches_a_socket_named_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let receiver = UnixDatagram::bind(&path).unwrap();
        notify(path.as_os_str(), "READY=1\n").unwrap();
        assert_eq!(receive(&receiver), "READY=1\n");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn message_reaches_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("patrol-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let receiver = UnixDatagram::bind_addr(&addr).unwrap();
        notify(OsStr::new(&format!("@{name}")), "WATCHDOG=1\n").unwrap();
        assert_eq!(receive(&receiver), "WATCHDOG=1\n");
    }

    #[test]
    fn missing_socket_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        assert!(notify(dir.path().join("absent").as_os_str(), "READY=1\n").is_err());
    }
}
