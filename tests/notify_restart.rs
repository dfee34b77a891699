//! A collector killed (SIGKILL) while a notification is pending delivers it
//! after restart, once: the outbox and the notification log are on disk.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value as Json;

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(config: &std::path::Path) -> Process {
    Process(
        Command::new(env!("CARGO_BIN_EXE_patrol"))
            .args(["collector", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start collector"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_notification_survives_a_sigkill_and_is_sent_once() {
    let pki = TestPki::new();
    let hook_port = free_port();
    let rules = pki.path().join("always.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: g\n    interval: 1s\n    rules:\n      - alert: Always\n        expr: vector(1)\n        labels:\n          severity: info\n",
    )
    .unwrap();
    let mut config = collector_config(&pki);
    config.ingest.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    config.http.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    config.storage.path = pki.path().join("data");
    config.rules.defaults = false;
    config.rules.files = vec![rules];
    config.notify = Some(
        toml::from_str(&format!(
            r#"
[route]
receiver = "hook"
group_wait = "0s"
group_interval = "1s"
repeat_interval = "1h"
[[receivers]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:{hook_port}/hook"
[delivery]
backoff_initial = "200ms"
backoff_max = "500ms"
"#
        ))
        .unwrap(),
    );
    let http = config.http.listen;
    let path = pki.path().join("collector.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();

    // Round 1: the receiver is down; the notification fails and waits.
    let mut collector = start(&path);
    wait_for(Duration::from_secs(30), "a failed attempt", || async move {
        std::net::TcpStream::connect(http).ok()?;
        let body = http_get(http, "/api/patrol/v1/notifications?limit=1").await;
        let json: Json = serde_json::from_str(&body).ok()?;
        (json["data"][0]["outcome"] == "failed").then_some(())
    })
    .await;
    collector.0.kill().unwrap(); // SIGKILL
    let _ = collector.0.wait();

    // Round 2: the receiver is up; the restarted collector delivers it.
    let listener = std::net::TcpListener::bind(("127.0.0.1", hook_port)).unwrap();
    let (_, hooks) = webhook_receiver(listener);
    let _collector = start(&path);
    let (first, more) = tokio::task::spawn_blocking(move || {
        let first = hooks.recv_timeout(Duration::from_secs(30));
        // No second message: not the outbox's again, not a new group's.
        let more = hooks.recv_timeout(Duration::from_secs(4));
        (first, more)
    })
    .await
    .unwrap();
    let (_, payload) = first.expect("the pending notification is delivered after the restart");
    assert_eq!(payload["alerts"][0]["labels"]["alertname"], "Always");
    assert_eq!(payload["status"], "firing");
    assert!(more.is_err(), "sent twice: {:?}", more.map(|(_, p)| p));
}
