//! docs/deploy.md followed on this machine: the fleet's certificates made
//! with `patrol pki` as the docs say, a collector in one network namespace
//! and the four servers' agents (docs/examples/*.toml, paths moved to a temp
//! folder) each in its own, joined by veth pairs on a bridge in 10.77.0.0/24
//! (nothing touches this machine's own network: every link is made inside
//! the test's namespaces). It checks, through the collector's API as the
//! docs do, that all four hosts' metrics and baseline inspections arrive,
//! and that the docs' test alert fires after a reload.
//!
//! Namespaces need root (CAP_SYS_ADMIN and CAP_NET_ADMIN); where
//! `ip netns add` fails the test says so and passes without running.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::TEST_TOKEN;

const HOSTS: [&str; 4] = ["db", "training", "evaluation", "courseware"];
const COLLECTOR_IP: &str = "10.77.0.1";
/// The name in the collector's certificate, as in the example configs.
const COLLECTOR_NAME: &str = "patrol.example.internal";

fn patrol() -> Command {
    Command::new(env!("CARGO_BIN_EXE_patrol"))
}

/// Runs `command`, panicking with its output when it fails.
fn run(command: &mut Command) -> Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

/// The namespaces, the processes in them and their logs; dropping it (also
/// when an assertion fails) stops every process and deletes every
/// namespace, which deletes their links.
struct Fleet {
    id: String,
    namespaces: Vec<String>,
    processes: Vec<(String, Child, PathBuf)>,
}

impl Fleet {
    /// `None` (with a note) where this process cannot make namespaces.
    fn create() -> Option<Fleet> {
        let id = format!("patrol{}", std::process::id());
        let mut fleet = Fleet {
            id,
            namespaces: Vec::new(),
            processes: Vec::new(),
        };
        let probe = fleet.ns("collector");
        let made = Command::new("ip")
            .args(["netns", "add", &probe])
            .stderr(Stdio::piped())
            .output();
        match made {
            Ok(out) if out.status.success() => fleet.namespaces.push(probe),
            Ok(out) => {
                eprintln!(
                    "SKIPPED deploy_netns: cannot create a network namespace ({}); run as root \
                     (CAP_SYS_ADMIN, CAP_NET_ADMIN) to follow docs/deploy.md end to end",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                return None;
            }
            Err(e) => {
                eprintln!("SKIPPED deploy_netns: cannot run `ip` (package iproute2): {e}");
                return None;
            }
        }
        Some(fleet)
    }

    fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.id)
    }

    /// The collector's namespace with a bridge at 10.77.0.1, and each
    /// host's namespace with `eth0` at 10.77.0.(2+i) on that bridge.
    fn wire(&mut self) {
        let c = self.ns("collector");
        ip(&["-n", &c, "link", "set", "lo", "up"]);
        ip(&["-n", &c, "link", "add", "br0", "type", "bridge"]);
        ip(&[
            "-n",
            &c,
            "addr",
            "add",
            &format!("{COLLECTOR_IP}/24"),
            "dev",
            "br0",
        ]);
        ip(&["-n", &c, "link", "set", "br0", "up"]);
        for (i, host) in HOSTS.iter().enumerate() {
            let ns = self.ns(host);
            ip(&["netns", "add", &ns]);
            self.namespaces.push(ns.clone());
            let port = format!("v{host}");
            // Both ends made inside the namespaces: no name, however
            // briefly, in this machine's own.
            ip(&[
                "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port,
                "netns", &c,
            ]);
            ip(&["-n", &c, "link", "set", &port, "master", "br0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            let addr = format!("10.77.0.{}/24", i + 2);
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        }
    }

    /// Starts `patrol ROLE --config CONFIG` in namespace `ns`, its log in
    /// `log`.
    fn start(&mut self, ns: &str, role: &str, config: &Path, log: PathBuf) {
        let stderr = std::fs::File::create(&log).expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(env!("CARGO_BIN_EXE_patrol"))
            .args([role, "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start in a namespace");
        self.processes.push((ns.to_owned(), child, log));
    }

    /// GET `path` from the collector's HTTP API on the collector host (its
    /// loopback, as in docs/deploy.md step 6), with bash's /dev/tcp so that
    /// no HTTP client needs to be installed.
    fn api(&self, path: &str) -> String {
        let request = format!(
            "GET {path} HTTP/1.0\r\nHost: patrol\r\nAuthorization: Bearer {TEST_TOKEN}\r\n\r\n"
        );
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns("collector"),
                "timeout",
                "5",
                "bash",
                "-c",
            ])
            .arg(r#"exec 3<>"/dev/tcp/$1/$2" && printf %s "$3" >&3 && cat <&3"#)
            .args(["bash", "127.0.0.1", "9470", &request])
            .output()
            .expect("run bash in the collector's namespace");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default()
    }

    /// Every process still running, or the first one that ended.
    fn all_running(&mut self) -> Result<(), String> {
        for (ns, child, log) in &mut self.processes {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(log).unwrap_or_default();
                return Err(format!("{ns} ended ({status}):\n{log}"));
            }
        }
        Ok(())
    }

    fn signal(&self, index: usize, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_child(&self.processes[index].1);
        rustix::process::kill_process(pid, signal).expect("signal");
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (ns, _, log) in &self.processes {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                eprintln!("--- {ns} (last lines)");
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
        for (_, child, _) in &mut self.processes {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in &self.namespaces {
            // Anything else left inside (there should be nothing).
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Polls `check` every 200 ms for up to `limit`, also failing as soon as a
/// process of the fleet has ended.
fn wait_until<T>(
    fleet: &mut Fleet,
    limit: Duration,
    what: &str,
    mut check: impl FnMut(&Fleet) -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Err(ended) = fleet.all_running() {
            panic!("while waiting for {what}: {ended}");
        }
        match check(fleet) {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {limit:?} waiting for {what}; last: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn data(body: &str) -> Result<serde_json::Value, String> {
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| format!("{e}: {body}"))?;
    match v.get("data") {
        Some(data) => Ok(data.clone()),
        None => Err(body.to_owned()),
    }
}

/// docs/deploy.md step 3: the CA and every certificate, from `patrol pki`.
fn make_certificates(pki: &Path) {
    run(patrol().args(["pki", "init", "--dir"]).arg(pki));
    run(patrol()
        .args([
            "pki",
            "issue",
            "collector",
            "collector",
            "--san",
            COLLECTOR_NAME,
            "--dir",
        ])
        .arg(pki));
    for host in HOSTS {
        run(patrol()
            .args(["pki", "issue", "agent", host, "--dir"])
            .arg(pki));
    }
}

/// docs/deploy.md step 4's collector.toml, with the store and the rules in
/// the temp folder and rules evaluated every second (the default is a
/// minute).
fn collector_config(etc: &Path, data: &Path) -> PathBuf {
    std::fs::create_dir_all(etc.join("rules")).unwrap();
    std::fs::write(etc.join("rules/site.yml"), "groups: []\n").unwrap();
    let text = format!(
        r#"[ingest]
listen = "0.0.0.0:9471"

[tls]
ca = "pki/ca.pem"
cert = "pki/collector.pem"
key = "pki/collector-key.pem"

[http]
listen = "0.0.0.0:9470"

[[http.tokens]]
name = "admin"
role = "admin"
sha256 = "{}"

[storage]
path = "{}"

[rules]
files = ["rules/site.yml"]
evaluation_interval = "1s"
"#,
        patrol_collector::http::auth::hash_token(TEST_TOKEN),
        data.display()
    );
    let path = etc.join("collector.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    path
}

/// docs/deploy.md step 5: the host's example config, with its three PKI
/// files copied beside it (the docs' `scp`), its state in the temp folder,
/// the collector dialled by address under its certificate's name, and a
/// one-second interval so that the test is quick.
fn agent_config(host: &str, pki: &Path, dir: &Path) -> PathBuf {
    let host_pki = dir.join("pki");
    std::fs::create_dir_all(&host_pki).unwrap();
    for file in [
        "ca.pem".to_owned(),
        format!("{host}.pem"),
        format!("{host}-key.pem"),
    ] {
        std::fs::copy(pki.join(&file), host_pki.join(&file)).unwrap();
    }
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("docs/examples/{host}.toml"));
    let text = std::fs::read_to_string(&example).unwrap();
    let mut config: toml::Table = text.parse().unwrap();
    assert_eq!(
        config.get("state_dir").and_then(|v| v.as_str()),
        Some("/var/lib/patrol/agent"),
        "{} lacks the docs' state_dir line",
        example.display()
    );
    let path = |p: PathBuf| toml::Value::String(p.display().to_string());
    config.insert("state_dir".into(), path(dir.join("state")));
    config.insert("interval".into(), "1s".into());
    let tls = config["tls"].as_table_mut().unwrap();
    tls.insert("ca".into(), path(host_pki.join("ca.pem")));
    tls.insert("cert".into(), path(host_pki.join(format!("{host}.pem"))));
    tls.insert("key".into(), path(host_pki.join(format!("{host}-key.pem"))));
    let collector = config["collector"].as_table_mut().unwrap();
    collector.insert(
        "addresses".into(),
        toml::Value::Array(vec![format!("{COLLECTOR_IP}:9471").into()]),
    );
    collector.insert("server_name".into(), COLLECTOR_NAME.into());
    let file = dir.join("agent.toml");
    std::fs::write(&file, toml::to_string(&config).unwrap()).unwrap();
    file
}

#[test]
fn four_servers_in_their_own_namespaces_reach_the_collector_as_deployed() {
    let Some(mut fleet) = Fleet::create() else {
        return;
    };
    fleet.wire();
    let tmp = tempfile::tempdir().unwrap();
    let etc = tmp.path().join("collector-etc");
    let pki = etc.join("pki");
    make_certificates(&pki);

    let config = collector_config(&etc, &tmp.path().join("collector-data"));
    run(patrol()
        .args(["collector", "--check-config", "--config"])
        .arg(&config));
    let collector_ns = fleet.ns("collector");
    fleet.start(
        &collector_ns,
        "collector",
        &config,
        tmp.path().join("collector.log"),
    );
    for host in HOSTS {
        let dir = tmp.path().join(host);
        let config = agent_config(host, &pki, &dir);
        run(patrol()
            .args(["agent", "--check-config", "--config"])
            .arg(&config));
        let ns = fleet.ns(host);
        fleet.start(
            &ns,
            "agent",
            &config,
            tmp.path().join(format!("{host}.log")),
        );
    }

    // Step 6: the four hosts, their metrics, their connections.
    let limit = Duration::from_secs(60);
    wait_until(&mut fleet, limit, "the four hosts' label values", |f| {
        let hosts = data(&f.api("/api/v1/label/host/values"))?;
        let want = serde_json::json!(["courseware", "db", "evaluation", "training"]);
        (hosts == want).then_some(()).ok_or(hosts.to_string())
    });
    wait_until(&mut fleet, limit, "node_load1 of every host", |f| {
        let result = data(&f.api("/api/v1/query?query=count%20by%20(host)%20(node_load1)"))?;
        let n = result["result"].as_array().map_or(0, Vec::len);
        (n == 4).then_some(()).ok_or(result.to_string())
    });
    wait_until(&mut fleet, limit, "four connected agents", |f| {
        let metrics = f.api("/metrics");
        let line = metrics
            .lines()
            .find(|l| l.starts_with("patrol_ingest_connected_agents "))
            .unwrap_or_default();
        (line == "patrol_ingest_connected_agents 4")
            .then_some(())
            .ok_or(line.to_owned())
    });
    // The baseline inspection each agent runs at start.
    wait_until(&mut fleet, limit, "every host's baseline inspection", |f| {
        let list = data(&f.api("/api/patrol/v1/inspections"))?;
        let inspected: Vec<&str> = list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["host"].as_str())
            .collect();
        HOSTS
            .iter()
            .all(|h| inspected.contains(h))
            .then_some(())
            .ok_or(format!("{inspected:?}"))
    });

    // Step 8: the test alert, loaded with a reload (SIGHUP).
    std::fs::write(
        etc.join("rules/site.yml"),
        "groups:\n  - name: deploy-test\n    rules:\n      - alert: PatrolDeployTest\n        \
         expr: vector(1)\n        labels:\n          severity: info\n        annotations:\n          \
         summary: \"Test alert from the deployment checklist\"\n",
    )
    .unwrap();
    fleet.signal(0, rustix::process::Signal::HUP);
    wait_until(&mut fleet, limit, "the firing test alert", |f| {
        let alerts = data(&f.api("/api/v1/alerts"))?;
        alerts["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["labels"]["alertname"] == "PatrolDeployTest" && a["state"] == "firing")
            .then_some(())
            .ok_or(alerts.to_string())
    });

    // Stopped as systemd stops them: SIGTERM, and a clean exit.
    for i in (0..fleet.processes.len()).rev() {
        fleet.signal(i, rustix::process::Signal::TERM);
        let (ns, child, _) = &mut fleet.processes[i];
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "{ns} still running 20 s after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(status.success(), "{ns} exit: {status}");
    }
}
