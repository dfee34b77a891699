//! The baseline runs at agent start and again on demand: SIGUSR1 to the
//! agent's process makes it inspect now, and the new record reaches the
//! collector. (Its own test binary: the signal goes to this process.)

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

async fn inspections(http: std::net::SocketAddr) -> usize {
    let body = http_get(http, "/api/patrol/v1/inspections?host=db").await;
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|j| {
            j.as_array()
                .map(Vec::len)
                .or_else(|| j["inspections"].as_array().map(Vec::len))
                .or_else(|| j["data"].as_array().map(Vec::len))
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_runs_the_baseline_now() {
    let pki = TestPki::new();
    let collector = TestCollector::start(collector_config(&pki)).await;
    let mut config = agent_config(&pki, "db", collector.ingest);
    config.baseline.root =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/baseline/weak");
    config.baseline.interval = Duration::from_secs(24 * 3600);
    let (cancel, handle) = spawn_agent(config);
    let http = collector.http;
    wait_for(
        Duration::from_secs(30),
        "the inspection at start",
        || async move { (inspections(http).await == 1).then_some(()) },
    )
    .await;
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::USR1)
        .expect("signal");
    wait_for(
        Duration::from_secs(30),
        "the inspection on demand",
        || async move { (inspections(http).await == 2).then_some(()) },
    )
    .await;
    cancel.cancel();
    let _ = handle.await;
    collector.stop().await;
}
