//! SIGHUP reloads a running agent process (issue 8): a changed config file
//! (a new label, a new check) reaches the collector without a restart of
//! the process; a broken one is logged with its file and line and the agent
//! goes on with the config it had. Its log on a pipe has no colour codes.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// The agent process, killed if the test ends early.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn start(config: &Path, log: PathBuf) -> Agent {
        let stderr = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_patrol"))
            .args(["agent", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start patrol agent");
        Agent { child, log }
    }

    fn signal(&self, signal: rustix::process::Signal) {
        rustix::process::kill_process(rustix::process::Pid::from_child(&self.child), signal)
            .expect("signal the agent");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("agent log:\n{}", self.log());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The timestamp of the newest `node_load1` sample with the second
/// config's label, 0 before the first.
fn newest_sample(text: &str) -> f64 {
    lines_with(text, "node_load1", "stage=\"after\"")
        .iter()
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .fold(0.0, f64::max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_changed_config_and_keeps_the_old_one_when_broken() {
    let pki = TestPki::new();
    let collector = TestCollector::start(collector_config(&pki)).await;
    let mut config = agent_config(&pki, "db", collector.ingest);
    config.labels.insert("stage".into(), "before".into());
    let path = pki.path().join("agent.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    let mut agent = Agent::start(&path, pki.path().join("agent.log"));

    wait_for(
        Duration::from_secs(30),
        "the first config's label",
        || async {
            let text = collector.metrics().await;
            (!lines_with(&text, "node_load1", "stage=\"before\"").is_empty()).then_some(())
        },
    )
    .await;

    // A new label and a new check: both are fixed when a run starts, so
    // seeing them proves the agent restarted its run with the new file.
    config.labels.insert("stage".into(), "after".into());
    let mut check = patrol_agent::checks::CheckConfig::new("collector-port");
    check.interval = Duration::from_secs(1);
    check.timeout = Duration::from_secs(1);
    check.tcp = Some(patrol_agent::checks::TcpCheck {
        address: collector.ingest.to_string(),
    });
    config.checks.push(check);
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    agent.signal(rustix::process::Signal::HUP);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let last = collector.metrics().await;
        let label = !lines_with(&last, "node_load1", "stage=\"after\"").is_empty();
        let check = lines_with(&last, "patrol_service_up", "check=\"collector-port\"")
            .iter()
            .any(|l| l.contains("stage=\"after\"") && l.contains("} 1"));
        if label && check {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no new label and check 30 s after SIGHUP; node_load1: {:?}; patrol_service_up: {:?}",
            lines_with(&last, "node_load1", ""),
            lines_with(&last, "patrol_service_up", ""),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        agent.running(),
        "the reload ended the agent:\n{}",
        agent.log()
    );

    // A broken file: logged with where it breaks; the agent keeps sending.
    std::fs::write(
        &path,
        toml::to_string(&config).unwrap() + "\ninterval = [not toml\n",
    )
    .unwrap();
    agent.signal(rustix::process::Signal::HUP);
    let log = wait_for(
        Duration::from_secs(10),
        "the config error in the log",
        || async {
            let log = agent.log();
            log.contains("the config file has errors").then_some(log)
        },
    )
    .await;
    let line = log
        .lines()
        .find(|l| l.contains("the config file has errors"))
        .unwrap();
    assert!(line.contains("ERROR"), "{line}");
    assert!(
        line.contains(&format!("{}:", path.display())),
        "the error names the file and line: {line}"
    );
    let before = newest_sample(&collector.metrics().await);
    wait_for(
        Duration::from_secs(30),
        "new samples after the broken reload",
        || async { (newest_sample(&collector.metrics().await) >= before + 1.0).then_some(()) },
    )
    .await;
    assert!(
        agent.running(),
        "a broken config ended the agent:\n{}",
        agent.log()
    );

    let log = agent.log();
    assert!(!log.contains('\x1b'), "colour codes on a pipe: {log:?}");
    assert!(
        log.contains("SIGHUP: config is valid; restarting the agent with it"),
        "{log}"
    );

    agent.signal(rustix::process::Signal::TERM);
    let status = tokio::task::spawn_blocking(move || {
        let status = agent.child.wait();
        (status, agent)
    })
    .await
    .unwrap()
    .0
    .expect("wait for the agent");
    assert!(status.success(), "agent exit: {status}");
    collector.stop().await;
}
