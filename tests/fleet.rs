//! The reference deployment over loopback: one collector, four agents (db,
//! training, evaluation, courseware), each with its own certificate.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_agents_stream_host_metrics_under_their_certificate_names() {
    let pki = TestPki::new();
    let collector = TestCollector::start(collector_config(&pki)).await;
    let hosts = ["db", "training", "evaluation", "courseware"];
    let mut agents = Vec::new();
    for host in hosts {
        let mut config = agent_config(&pki, host, collector.ingest);
        if host == "evaluation" {
            // Claims to be db, in its Hello and in a static label.
            config.hostname = Some("db".into());
            config.labels.insert("host".into(), "db".into());
        }
        agents.push(spawn_agent(config));
    }

    let text = wait_for(
        Duration::from_secs(20),
        "all four hosts on /metrics",
        || async {
            let text = collector.metrics().await;
            hosts
                .iter()
                .all(|h| {
                    let label = format!("host=\"{h}\"");
                    !lines_with(&text, "node_cpu_seconds_total", &label).is_empty()
                        && !lines_with(&text, "node_memory_MemAvailable_bytes", &label).is_empty()
                })
                .then_some(text)
        },
    )
    .await;

    for host in hosts {
        let label = format!("host=\"{host}\"");
        let instance = format!("instance=\"{host}\"");
        let mem = lines_with(&text, "node_memory_MemAvailable_bytes", &label);
        assert_eq!(mem.len(), 1, "one MemAvailable series for {host}: {mem:?}");
        assert!(mem[0].contains(&instance), "{}", mem[0]);
        let cpu = lines_with(&text, "node_cpu_seconds_total", &label);
        assert!(cpu.iter().any(|l| l.contains("mode=\"idle\"")), "{cpu:?}");
    }
    assert_eq!(
        value_of(&text, "patrol_ingest_connected_agents"),
        4.0,
        "{text}"
    );

    for (cancel, handle) in agents {
        cancel.cancel();
        handle.await.expect("agent stops");
    }
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_never_go_backwards_between_cycles() {
    let pki = TestPki::new();
    let collector = TestCollector::start(collector_config(&pki)).await;
    let (cancel, handle) = spawn_agent(agent_config(&pki, "db", collector.ingest));
    let series = "patrol_agent_batches_acked_total{host=\"db\",instance=\"db\"}";
    let first = wait_for(Duration::from_secs(20), "first cycles", || async {
        let text = collector.metrics().await;
        (value_of(&text, series) >= 1.0).then_some(text)
    })
    .await;
    let second = wait_for(Duration::from_secs(20), "later cycles", || async {
        let text = collector.metrics().await;
        (value_of(&text, series) >= value_of(&first, series) + 2.0).then_some(text)
    })
    .await;
    let counters = |text: &str| -> Vec<(String, f64)> {
        text.lines()
            .filter(|l| l.starts_with("node_") && l.contains("_total{"))
            .filter_map(|l| {
                let (series, rest) = l.rsplit_once("} ")?;
                Some((series.to_owned(), rest.split(' ').next()?.parse().ok()?))
            })
            .collect()
    };
    let before: std::collections::HashMap<_, _> = counters(&first).into_iter().collect();
    let after = counters(&second);
    assert!(after.len() > 10, "counters present: {}", after.len());
    for (series, value) in after {
        if let Some(old) = before.get(&series) {
            assert!(value >= *old, "{series} went from {old} to {value}");
        }
    }
    cancel.cancel();
    handle.await.unwrap();
    collector.stop().await;
}
