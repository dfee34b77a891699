//! The operator's command line, run as a real process: `patrol pki`, config
//! errors that name file and key, and `patrol up` from an empty folder.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn patrol(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_patrol"))
        .args(args)
        .output()
        .expect("run patrol")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn pki_init_and_issue_write_private_keys_and_never_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = patrol(&["pki", "init", "--dir", d]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = patrol(&["pki", "issue", "agent", "db", "--dir", d]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = patrol(&[
        "pki",
        "issue",
        "collector",
        "collector",
        "--san",
        "patrol.example",
        "10.0.0.5",
        "--dir",
        d,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for key in ["ca-key.pem", "db-key.pem", "collector-key.pem"] {
        let mode = std::fs::metadata(dir.path().join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    let ca_before = std::fs::read(dir.path().join("ca.pem")).unwrap();
    let again = patrol(&["pki", "init", "--dir", d]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(std::fs::read(dir.path().join("ca.pem")).unwrap(), ca_before);
    let again = patrol(&["pki", "issue", "agent", "db", "--dir", d]);
    assert!(
        text(&again.stderr).contains("db.pem already exists"),
        "{}",
        text(&again.stderr)
    );
    let forced = patrol(&["pki", "issue", "agent", "db", "--dir", d, "--force"]);
    assert!(forced.status.success());
}

#[test]
fn issuing_without_a_ca_says_how_to_make_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = patrol(&[
        "pki",
        "issue",
        "agent",
        "db",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("patrol pki init"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn config_errors_name_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        "interval = \"10s\"\n[collector]\naddresses = [\"127.0.0.1:9471\"]\nretries = 3\n",
    )
    .unwrap();
    let out = patrol(&["agent", "--config", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("agent.toml:4:1"), "{err}");
    assert!(err.contains("retries"), "{err}");

    let path = dir.path().join("collector.toml");
    std::fs::write(
        &path,
        "[tls]\nca = \"missing/ca.pem\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
    )
    .unwrap();
    let out = patrol(&["collector", "--config", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(&dir.path().join("missing/ca.pem").display().to_string()),
        "{err}"
    );
}

#[test]
fn up_creates_everything_streams_this_host_and_reuses_it_next_time() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("patrol-data");
    let first = run_up(&data);
    let ca = std::fs::read(data.join("pki/ca.pem")).unwrap();
    for file in [
        "collector.toml",
        "agent.toml",
        "pki/collector.pem",
        "pki/ca-key.pem",
    ] {
        assert!(data.join(file).exists(), "{file}");
    }
    assert!(first.contains("To add another host"), "{first}");
    run_up(&data);
    assert_eq!(
        std::fs::read(data.join("pki/ca.pem")).unwrap(),
        ca,
        "CA reused"
    );
}

/// Runs `patrol up`, waits for this host's samples on /metrics, stops it
/// with SIGTERM and checks it exits cleanly. Returns what it printed.
fn run_up(data: &std::path::Path) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_patrol"))
        .args(["up", "--dir"])
        .arg(data)
        .args([
            "--http-listen",
            "127.0.0.1:0",
            "--ingest-listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut printed = String::new();
    let mut metrics_url = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while metrics_url.is_none() && Instant::now() < deadline {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(url) = line.trim().strip_prefix("metrics:") {
            metrics_url = Some(url.trim().to_owned());
        }
        printed.push_str(&line);
    }
    let url = metrics_url.unwrap_or_else(|| panic!("no metrics URL printed:\n{printed}"));
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .parse()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(wait_for(
        Duration::from_secs(30),
        "this host's samples",
        || async {
            let token = std::fs::read_to_string(data.join("admin-token")).unwrap_or_default();
            let text = http_get_with(addr, "/metrics", token.trim()).await;
            text.lines()
                .any(|l| l.starts_with("node_load1{") && l.contains("host=\""))
                .then_some(())
        },
    ));
    // The rest of the banner.
    let mut rest = String::new();
    for _ in 0..12 {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        rest.push_str(&line);
    }
    printed.push_str(&rest);
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "clean exit: {status:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "patrol up did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    printed
}
