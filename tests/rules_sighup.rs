//! SIGHUP reloads the rule files, even a change the file watch cannot see
//! (here the configured path is a symlink into another folder). Its own
//! test binary: the signal goes to this process.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value as Json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_rules() {
    let pki = TestPki::new();
    let (watched, elsewhere) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let real = elsewhere.path().join("real.yml");
    let one =
        "groups:\n  - name: site\n    rules:\n      - alert: First\n        expr: vector(1)\n";
    std::fs::write(&real, one).unwrap();
    let link = watched.path().join("site.yml");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let mut config = collector_config(&pki);
    config.rules.defaults = false;
    config.rules.files = vec![link];
    let collector = TestCollector::start(config).await;
    let http = collector.http;
    let names = || async move {
        let body = http_get(http, "/api/v1/rules").await;
        let json: Json = serde_json::from_str(&body).unwrap_or(Json::Null);
        json["data"]["groups"][0]["rules"]
            .as_array()
            .map(|r| r.len())
            .unwrap_or(0)
    };
    assert_eq!(names().await, 1);
    std::fs::write(
        &real,
        format!("{one}      - alert: Second\n        expr: vector(2)\n"),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(names().await, 1, "the watch does not see through the link");
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::HUP).unwrap();
    wait_for(
        Duration::from_secs(10),
        "the reload on SIGHUP",
        || async move { (names().await == 2).then_some(()) },
    )
    .await;
    collector.stop().await;
}
