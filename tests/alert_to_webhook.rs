//! Issue 6 end to end: a real agent reports a tiny tmpfs; it fills past the
//! rule's threshold; the rule goes pending, fires after its `for`, and the
//! webhook receiver — a real HTTP server on loopback — gets Alertmanager's
//! webhook payload within one evaluation interval after that.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value as Json;

/// A tmpfs of `size` mounted in a temp dir, unmounted on drop.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk(dir))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

/// A mounted disk filesystem the agent reports (as node_exporter would),
/// and the share of it that is free.
fn reported_filesystem() -> Option<(std::path::PathBuf, f64)> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_, mount, fstype) = (fields.next()?, fields.next()?, fields.next()?);
        let disk = matches!(
            fstype,
            "ext4" | "ext3" | "ext2" | "xfs" | "btrfs" | "f2fs" | "zfs"
        );
        let excluded = [
            "/dev",
            "/proc",
            "/sys",
            "/run/credentials",
            "/var/lib/docker",
        ]
        .iter()
        .any(|p| mount.starts_with(p));
        if !disk || excluded || mount.contains("\\") {
            return None;
        }
        let st = rustix::fs::statvfs(mount).ok()?;
        (st.f_blocks > 0).then(|| (mount.into(), st.f_bavail as f64 / st.f_blocks as f64))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filling_disk_reaches_the_webhook_after_its_for_duration() {
    // A 1 MiB tmpfs that the test fills; where no tmpfs can be mounted (not
    // root, a container without the capability), the root filesystem with
    // a threshold just above how free it is now, so that the rule holds as
    // soon as the agent reports it.
    let disk = SmallDisk::mount("1m");
    let (mount, threshold) = match &disk {
        Some(d) => (d.0.path().to_owned(), 0.5),
        None => {
            let Some((path, free)) = reported_filesystem() else {
                eprintln!(
                    "note: no tmpfs and no disk filesystem here; end-to-end alert test skipped"
                );
                return;
            };
            eprintln!(
                "note: no tmpfs here; using {} with a threshold above its {free:.3} free",
                path.display()
            );
            (path, (free + 0.05).min(0.999))
        }
    };
    let (url, hooks) = webhook_receiver(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let pki = TestPki::new();
    let rules = pki.path().join("disk.yml");
    std::fs::write(
        &rules,
        format!(
            r#"groups:
  - name: disk
    interval: 1s
    rules:
      - alert: TmpfsFilling
        expr: node_filesystem_avail_bytes{{mountpoint="{}"}} / node_filesystem_size_bytes < {threshold}
        for: 3s
        labels:
          severity: critical
        annotations:
          summary: "{{{{ $labels.mountpoint }}}} is {{{{ $value | humanizePercentage }}}} free"
"#,
            mount.display()
        ),
    )
    .unwrap();
    let mut config = collector_config(&pki);
    config.rules.defaults = false;
    config.rules.files = vec![rules];
    config.notify = Some(
        toml::from_str(&format!(
            r#"
external_url = "http://patrol.test"
[route]
receiver = "hook"
group_by = ["alertname"]
group_wait = "0s"
group_interval = "1s"
[[receivers]]
name = "hook"
kind = "webhook"
url = "{url}"
"#
        ))
        .unwrap(),
    );
    let collector = TestCollector::start(config).await;
    let (cancel, handle) = spawn_agent(agent_config(&pki, "db", collector.ingest));

    // Fill the disk to 70 % (the tmpfs); on / the rule already holds.
    tokio::time::sleep(Duration::from_secs(2)).await;
    if disk.is_some() {
        std::fs::write(mount.join("fill"), vec![7u8; 700 * 1024]).unwrap();
    }
    let filled = Instant::now();
    let got = tokio::task::spawn_blocking(move || hooks.recv_timeout(Duration::from_secs(30)))
        .await
        .unwrap()
        .expect("the webhook gets the alert");
    let (at, payload) = got;
    let waited = at.saturating_duration_since(filled);
    eprintln!(
        "alert delivered {:.2} s after the disk filled (for: 3 s, evaluation every 1 s)",
        waited.as_secs_f64()
    );
    // for (3 s) + one evaluation (1 s) + the agent's interval and the
    // rule's evaluation slot (1 s each) + delivery: well within 8 s.
    assert!(
        disk.is_none() || waited >= Duration::from_secs(3),
        "not before its for: {waited:?}"
    );
    assert!(waited < Duration::from_secs(8), "{waited:?}");
    assert_eq!(payload["version"], "4");
    assert_eq!(payload["status"], "firing");
    assert_eq!(payload["receiver"], "hook");
    let alert = &payload["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "TmpfsFilling");
    assert_eq!(alert["labels"]["host"], "db");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert!(
        alert["annotations"]["summary"]
            .as_str()
            .unwrap()
            .ends_with("% free"),
        "{alert}"
    );
    assert_eq!(alert["status"], "firing");
    // The attempt is recorded and counted.
    let http = collector.http;
    let log = wait_for(
        Duration::from_secs(5),
        "the delivery in the log",
        || async move {
            let body = http_get(http, "/api/patrol/v1/notifications?limit=5").await;
            let json: Json = serde_json::from_str(&body).ok()?;
            let first = json["data"][0].clone();
            (first["outcome"] == "delivered").then_some(first)
        },
    )
    .await;
    assert_eq!(log["receiver"], "hook");
    assert_eq!(log["status"], 200);
    let metrics = scrape(http).await;
    assert!(
        metrics.contains("patrol_notifications_total{outcome=\"delivered\",receiver=\"hook\"} 1")
            || metrics
                .contains("patrol_notifications_total{receiver=\"hook\",outcome=\"delivered\"} 1"),
        "{:?}",
        lines_with(&metrics, "patrol_notifications_total", "")
    );
    cancel.cancel();
    let _ = handle.await;
    collector.stop().await;
}
