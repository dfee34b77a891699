//! The systemd side of issue 8: the unit files in `systemd/` pass
//! `systemd-analyze verify`, and the real binaries speak sd_notify to the
//! socket in `NOTIFY_SOCKET` (READY=1 once serving, WATCHDOG=1 at half of
//! `WATCHDOG_USEC`, RELOADING=1 and READY=1 around the agent's reload on
//! SIGHUP, STOPPING=1 on SIGTERM) and survive SIGHUP.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const UNITS: [&str; 2] = ["patrol-agent.service", "patrol-collector.service"];

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd")
}

/// `systemd-analyze`, or `None` (with a note) where it is missing; under CI
/// a missing tool is a failure, since .ci/run installs it.
fn systemd_analyze() -> Option<&'static str> {
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("systemd-analyze");
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "systemd-analyze is missing under CI: .ci/run should install the Debian package systemd"
    );
    eprintln!("note: systemd-analyze not found (Debian package systemd); skipping");
    None
}

/// Copies the units to `dir`, pointing ExecStart at executables that exist
/// here (verify refuses a unit whose command is missing).
fn units_with_local_binaries(dir: &Path) -> Vec<PathBuf> {
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    for name in ["patrol-agent", "patrol-collector"] {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_patrol"), bin.join(name)).unwrap();
    }
    UNITS
        .iter()
        .map(|unit| {
            let text = std::fs::read_to_string(units_dir().join(unit)).unwrap();
            let text = text.replace("/usr/local/bin/", &format!("{}/", bin.display()));
            let path = dir.join(unit);
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect()
}

#[test]
fn unit_files_pass_systemd_analyze_verify() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let units = units_with_local_binaries(dir.path());
    let out = Command::new(analyze)
        .args(["verify", "--man=no"])
        .args(&units)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify warns: {stderr}"
    );
}

#[test]
fn units_declare_notify_watchdog_restart_and_sandbox() {
    for unit in UNITS {
        let text = std::fs::read_to_string(units_dir().join(unit)).unwrap();
        for line in [
            "Type=notify",
            "Restart=on-failure",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "PrivateTmp=yes",
            "SystemCallFilter=@system-service",
            "ReadWritePaths=/var/lib/patrol",
            "ExecReload=/bin/kill -HUP $MAINPID",
        ] {
            assert!(text.lines().any(|l| l == line), "{unit} lacks {line}");
        }
        for key in [
            "WatchdogSec=",
            "RestartSec=",
            "StartLimitBurst=",
            "ProtectHome=",
            "RestrictAddressFamilies=",
            "User=patrol",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(key)),
                "{unit} lacks {key}"
            );
        }
    }
    let agent = std::fs::read_to_string(units_dir().join(UNITS[0])).unwrap();
    assert!(agent.contains("\nCapabilityBoundingSet=CAP_DAC_READ_SEARCH\n"));
    let collector = std::fs::read_to_string(units_dir().join(UNITS[1])).unwrap();
    assert!(collector.contains("\nCapabilityBoundingSet=\n"));
}

/// A notify socket in a temp folder, as systemd would pass it.
struct NotifySocket {
    _dir: tempfile::TempDir,
    path: PathBuf,
    socket: UnixDatagram,
    seen: Vec<String>,
}

impl NotifySocket {
    fn bind() -> NotifySocket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        NotifySocket {
            _dir: dir,
            path,
            socket,
            seen: Vec::new(),
        }
    }

    /// Waits until a datagram has a line `line`, failing at once if
    /// `process` ends first without sending it.
    fn expect(&mut self, process: &mut Process, line: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 4096];
        loop {
            if self.seen.iter().any(|m| m.lines().any(|l| l == line)) {
                return;
            }
            if let Some(status) = process.0.try_wait().unwrap() {
                // Its last datagrams may still be queued.
                while let Ok(n) = self.socket.recv(&mut buf) {
                    self.seen
                        .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
                assert!(
                    self.seen.iter().any(|m| m.lines().any(|l| l == line)),
                    "exited ({status}) without {line}; received {:?}",
                    self.seen
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no {line} within {limit:?}; received {:?}",
                self.seen
            );
            if let Ok(n) = self.socket.recv(&mut buf) {
                self.seen
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    }

    fn forget(&mut self) {
        self.seen.clear();
    }
}

fn start(role: &str, config: &Path, notify: &NotifySocket) -> Process {
    let child = Command::new(env!("CARGO_BIN_EXE_patrol"))
        .args([role, "--config"])
        .arg(config)
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start patrol");
    Process(child)
}

fn signal(process: &Process, signal: rustix::process::Signal) {
    rustix::process::kill_process(rustix::process::Pid::from_child(&process.0), signal)
        .expect("signal");
}

fn still_running(process: &mut Process) -> bool {
    process.0.try_wait().unwrap().is_none()
}

#[test]
fn collector_notifies_ready_feeds_watchdog_and_says_stopping() {
    let pki = TestPki::new();
    let mut config = collector_config(&pki);
    // The binary refuses port 0 (an operator would not know where to
    // connect); the in-process TestCollector may use it.
    config.ingest.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    config.http.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let path = pki.path().join("collector.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    let mut notify = NotifySocket::bind();
    let mut collector = start("collector", &path, &notify);
    notify.expect(&mut collector, "READY=1", Duration::from_secs(20));
    // Two pings after READY: the watchdog keeps going, at 200 ms.
    notify.forget();
    notify.expect(&mut collector, "WATCHDOG=1", Duration::from_secs(2));
    notify.forget();
    notify.expect(&mut collector, "WATCHDOG=1", Duration::from_secs(2));

    signal(&collector, rustix::process::Signal::HUP);
    notify.forget();
    notify.expect(&mut collector, "WATCHDOG=1", Duration::from_secs(2));
    assert!(still_running(&mut collector), "SIGHUP ended the collector");

    signal(&collector, rustix::process::Signal::TERM);
    notify.expect(&mut collector, "STOPPING=1", Duration::from_secs(5));
    let status = collector.0.wait().unwrap();
    assert!(status.success(), "collector exit: {status}");
}

#[test]
fn agent_notifies_ready_and_survives_sighup() {
    let pki = TestPki::new();
    // No collector listens there: the agent is ready anyway and retries.
    let addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = agent_config(&pki, "db", addr);
    let path = pki.path().join("agent.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    let mut notify = NotifySocket::bind();
    let mut agent = start("agent", &path, &notify);
    notify.expect(&mut agent, "READY=1", Duration::from_secs(20));
    notify.forget();
    notify.expect(&mut agent, "WATCHDOG=1", Duration::from_secs(2));

    // A reload (the file is valid): RELOADING=1, then READY=1 once the
    // agent runs again with it, as sd_notify(3) asks.
    notify.forget();
    signal(&agent, rustix::process::Signal::HUP);
    notify.expect(&mut agent, "RELOADING=1", Duration::from_secs(5));
    notify.expect(&mut agent, "READY=1", Duration::from_secs(10));
    notify.forget();
    notify.expect(&mut agent, "WATCHDOG=1", Duration::from_secs(2));
    assert!(still_running(&mut agent), "SIGHUP ended the agent");

    signal(&agent, rustix::process::Signal::TERM);
    notify.expect(&mut agent, "STOPPING=1", Duration::from_secs(5));
    let status = agent.0.wait().unwrap();
    assert!(status.success(), "agent exit: {status}");
}
