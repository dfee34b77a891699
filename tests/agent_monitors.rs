//! The agent's monitors end to end: service checks, the security baseline
//! and file integrity, each running on its own schedule inside a real
//! agent, reach the collector's store with the host metrics.

mod common;

use std::time::Duration;

use common::*;
use patrol_agent::checks::{CheckConfig, TcpCheck};
use patrol_agent::fim::WatchPath;

/// The value of the first sample of `name` whose labels include `label`.
fn sample(text: &str, name: &str, label: &str) -> Option<f64> {
    let line = lines_with(text, name, label).into_iter().next()?;
    line.rsplit_once('}')?
        .1
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn tcp_check(name: &str, address: &str) -> CheckConfig {
    CheckConfig {
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        tcp: Some(TcpCheck {
            address: address.to_owned(),
        }),
        ..CheckConfig::new(name)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_baseline_and_file_integrity_reach_the_collector() {
    let pki = TestPki::new();
    let collector = TestCollector::start(collector_config(&pki)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open = listener.local_addr().unwrap().to_string();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let watched = tempfile::tempdir().unwrap();
    let hosts_file = watched.path().join("hosts");
    std::fs::write(&hosts_file, "127.0.0.1 localhost\n").unwrap();
    let root = tempfile::tempdir().unwrap();

    let mut config = agent_config(&pki, "db", collector.ingest);
    config.checks = vec![tcp_check("open", &open), tcp_check("closed", &closed)];
    config.baseline.root = root.path().to_owned();
    config.fim.paths = vec![WatchPath {
        path: watched.path().to_owned(),
        recursive: true,
    }];
    config.fim.debounce = Duration::from_millis(100);
    assert!(config.problems().is_empty(), "{:?}", config.problems());
    let (cancel, handle) = spawn_agent(config);

    let text = wait_for(
        Duration::from_secs(20),
        "check, baseline and FIM series",
        || async {
            let text = collector.metrics().await;
            let ready = sample(&text, "patrol_service_up", "check=\"closed\"").is_some()
                && sample(&text, "patrol_service_up", "check=\"open\"").is_some()
                && sample(
                    &text,
                    "patrol_baseline_last_run_timestamp_seconds",
                    "host=\"db\"",
                )
                .is_some()
                && sample(&text, "patrol_fim_files", "host=\"db\"").is_some();
            ready.then_some(text)
        },
    )
    .await;
    assert_eq!(
        sample(&text, "patrol_service_up", "check=\"open\""),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "patrol_service_up", "check=\"closed\""),
        Some(0.0)
    );
    let states = lines_with(&text, "patrol_service_state", "check=\"open\"");
    assert_eq!(states.len(), 3, "{states:?}");
    assert!(!lines_with(
        &text,
        "patrol_baseline_results",
        "verdict=\"not_applicable\""
    )
    .is_empty());

    // A change under the watched directory is counted within seconds.
    std::fs::write(&hosts_file, "10.9.9.9 localhost\n").unwrap();
    let path_label = format!("path=\"{}\"", watched.path().display());
    wait_for(
        Duration::from_secs(20),
        "patrol_fim_events_total",
        || async {
            let text = collector.metrics().await;
            (sample(&text, "patrol_fim_events_total", &path_label) == Some(1.0)).then_some(())
        },
    )
    .await;

    // The service goes away: the next sample says down.
    drop(listener);
    wait_for(Duration::from_secs(20), "open check down", || async {
        let text = collector.metrics().await;
        (sample(&text, "patrol_service_up", "check=\"open\"") == Some(0.0)).then_some(())
    })
    .await;

    cancel.cancel();
    handle.await.expect("agent stops");
    collector.stop().await;
}
