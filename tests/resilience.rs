//! The agent keeps trying: collector down at agent start, collector
//! restarted while the agent runs, and one log line per change of state.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn db_seen(text: &str) -> bool {
    !lines_with(text, "node_load1", "host=\"db\"").is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_started_before_the_collector_connects_once_it_is_up() {
    let pki = TestPki::new();
    let mut config = collector_config(&pki);
    let port = free_port();
    config.ingest.listen = format!("127.0.0.1:{port}").parse().unwrap();
    let agent = spawn_agent(agent_config(&pki, "db", config.ingest.listen));
    // Let the agent fail a few times first.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let collector = TestCollector::start(config).await;
    wait_for(
        Duration::from_secs(20),
        "db after the collector came up",
        || async { db_seen(&collector.metrics().await).then_some(()) },
    )
    .await;
    agent.0.cancel();
    agent.1.await.unwrap();
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_resumes_streaming_after_a_collector_restart() {
    let pki = TestPki::new();
    let mut config = collector_config(&pki);
    config.ingest.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let first = TestCollector::start(config.clone()).await;
    let agent = spawn_agent(agent_config(&pki, "db", first.ingest));
    wait_for(
        Duration::from_secs(20),
        "db on the first collector",
        || async { db_seen(&first.metrics().await).then_some(()) },
    )
    .await;
    first.stop().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = TestCollector::start(config).await;
    wait_for(
        Duration::from_secs(20),
        "db on the restarted collector",
        || async { db_seen(&second.metrics().await).then_some(()) },
    )
    .await;
    agent.0.cancel();
    agent.1.await.unwrap();
    second.stop().await;
}

#[test]
fn agent_process_logs_one_line_while_the_collector_stays_down() {
    let pki = TestPki::new();
    let mut config = agent_config(
        &pki,
        "db",
        format!("127.0.0.1:{}", free_port()).parse().unwrap(),
    );
    config.collector.backoff_max = Duration::from_millis(200);
    let path = pki.path().join("agent.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_patrol"))
        .args(["agent", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Many retries at ≤ 200 ms backoff happen in this time.
    std::thread::sleep(Duration::from_secs(3));
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        status.success(),
        "clean exit on SIGTERM: {status:?}\n{stderr}"
    );
    let down_lines = stderr.matches("cannot reach collector").count();
    assert_eq!(
        down_lines, 1,
        "one line for the outage, not one per retry:\n{stderr}"
    );
    assert!(stderr.contains("agent stopped"), "{stderr}");
}
