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

/// A collector with the schedule "ops" (anna and ben on primary, handing
/// over daily at 09:00 in Shanghai), the admin token in `dir/admin` and an
/// operator's ("alice") in `dir/operator`.
async fn incident_collector(dir: &std::path::Path) -> (TestPki, TestCollector) {
    use patrol_collector::http::auth::{hash_token, Role, TokenConfig};
    const OPERATOR: &str = "patrol_operator_token_for_cli_tests";
    let pki = TestPki::new();
    let mut config = collector_config(&pki);
    config.rules.defaults = false;
    config.http.tokens.push(TokenConfig {
        name: "alice".into(),
        role: Role::Operator,
        sha256: hash_token(OPERATOR),
    });
    config.incidents = toml::from_str(
        r#"
[[schedules]]
name = "ops"
time_zone = "Asia/Shanghai"
[[schedules.rotations]]
role = "primary"
members = ["anna", "ben"]
shift = "1day"
handoff = "09:00:00"
start_date = "2025-06-01"
"#,
    )
    .unwrap();
    std::fs::write(dir.join("admin"), TEST_TOKEN).unwrap();
    std::fs::write(dir.join("operator"), OPERATOR).unwrap();
    let collector = TestCollector::start(config).await;
    (pki, collector)
}

/// Runs `patrol ARGS --url … --token-file dir/TOKEN`.
fn patrol_api(
    http: std::net::SocketAddr,
    dir: &std::path::Path,
    token: &str,
    args: &[&str],
) -> Output {
    Command::new(env!("CARGO_BIN_EXE_patrol"))
        .args(args)
        .args(["--url", &format!("http://{http}")])
        .arg("--token-file")
        .arg(dir.join(token))
        .output()
        .expect("run patrol")
}

/// Stdout of a run that must succeed.
fn ok(out: Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// Stderr of a run that must fail; the collector's problem is shown
/// without its JSON wrapping.
fn refused(out: Output, what: &str) -> String {
    assert!(!out.status.success(), "{what}: {}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(!err.contains("errorType"), "{what}: {err}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oncall_override_shows_in_the_schedule_until_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (_pki, collector) = incident_collector(dir.path()).await;
    let http = collector.http;
    let d = dir.path().to_owned();
    tokio::task::spawn_blocking(move || {
        let run = |token: &str, args: &[&str]| patrol_api(http, &d, token, args);
        let window = [
            "--from",
            "2026-06-30T00:00:00Z",
            "--to",
            "2026-07-03T00:00:00Z",
        ];
        let add = [
            "oncall",
            "override",
            "ops",
            "--who",
            "carl",
            "--from",
            "2026-07-01T00:00:00Z",
            "--to",
            "1782950400",
            "--reason",
            "anna is at a wedding",
        ];
        let err = refused(run("operator", &add), "an operator adds an override");
        assert!(err.contains("403") && err.contains("admin only"), "{err}");
        let id = ok(run("admin", &add), "override");
        assert_eq!(id.trim(), "1");

        let show = ok(
            run("admin", &[&["oncall", "show", "ops"][..], &window].concat()),
            "show",
        );
        assert!(
            show.starts_with("ops (Asia/Shanghai), 2026-06-30T00:00:00Z to 2026-07-03T00:00:00Z"),
            "{show}"
        );
        assert!(
            show.contains("  2026-07-01T00:00:00Z  2026-07-02T00:00:00Z  carl (override)"),
            "{show}"
        );
        assert!(
            show.contains("anna (rotation)") && show.contains("ben (rotation)"),
            "{show}"
        );
        assert!(
            show.contains("carl (by test): anna is at a wedding"),
            "{show}"
        );
        let now = ok(
            run("admin", &["oncall", "now", "--at", "2026-07-01T12:00:00Z"]),
            "now",
        );
        assert!(
            now.contains("ops (Asia/Shanghai): primary carl (override)"),
            "{now}"
        );

        let removed = ok(
            run("admin", &["oncall", "override", "ops", "--remove", "1"]),
            "remove",
        );
        assert!(removed.contains("removed override 1"), "{removed}");
        let show = ok(
            run("admin", &[&["oncall", "show", "ops"][..], &window].concat()),
            "show",
        );
        assert!(!show.contains("carl"), "{show}");

        let err = refused(
            run("admin", &["oncall", "override", "ops", "--remove", "1"]),
            "again",
        );
        assert!(
            err.contains("404") && err.contains("no override 1"),
            "{err}"
        );
        let err = refused(
            run("admin", &["oncall", "show", "night"]),
            "unknown schedule",
        );
        assert!(
            err.contains("404") && err.contains("no schedule named \"night\""),
            "{err}"
        );
        let err = refused(
            run(
                "admin",
                &[
                    "oncall",
                    "show",
                    "ops",
                    "--from",
                    "2026-01-01T00:00:00Z",
                    "--to",
                    "2026-06-01T00:00:00Z",
                ],
            ),
            "too long",
        );
        assert!(err.contains("400") && err.contains("92 days"), "{err}");
        let err = refused(
            run("admin", &["oncall", "show", "ops", "--from", "yesterday"]),
            "bad time",
        );
        assert!(err.contains("--from \"yesterday\""), "{err}");
        let err = refused(
            run("admin", &["oncall", "override", "ops", "--who", "carl"]),
            "no period",
        );
        assert!(err.contains("--from"), "{err}");
    })
    .await
    .unwrap();
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_list_search_finds_closed_tickets() {
    let dir = tempfile::tempdir().unwrap();
    let (_pki, collector) = incident_collector(dir.path()).await;
    let http = collector.http;
    let d = dir.path().to_owned();
    tokio::task::spawn_blocking(move || {
        let run = |args: &[&str]| {
            let args = [&["tickets"][..], args].concat();
            ok(patrol_api(http, &d, "operator", &args), &args.join(" "))
        };
        run(&["open", "printer on fire", "--host", "office"]);
        // The newest ticket is closed: a limit counts what is shown.
        let backup = run(&[
            "open",
            "backup job fails",
            "--host",
            "db",
            "--priority",
            "high",
        ]);
        let backup = backup.trim();
        run(&["ack", backup]);
        run(&[
            "resolve",
            backup,
            "rotated the old dumps off the backup volume",
        ]);
        run(&["close", backup, "--rating", "5"]);

        let queue = run(&["list"]);
        assert!(queue.contains("printer on fire"), "{queue}");
        assert!(
            !queue.contains("backup job fails"),
            "closed tickets are not work: {queue}"
        );
        let found = run(&["list", "--search", "old DUMPS"]);
        assert!(
            found.contains("backup job fails") && found.contains("closed"),
            "{found}"
        );
        assert!(found.contains("solution: rotated the old dumps"), "{found}");
        assert!(!found.contains("printer"), "{found}");
        for filter in [
            &["--host", "db"][..],
            &["--state", "closed"],
            &["--priority", "high"],
            &["--search", "backup", "--kind", "fault"],
        ] {
            let found = run(&[&["list"][..], filter].concat());
            assert!(found.contains("backup job fails"), "{filter:?}: {found}");
            assert!(!found.contains("printer"), "{filter:?}: {found}");
        }
        let now = patrol_shared::model::now_ms() / 1000;
        let (from, to) = ((now - 3600).to_string(), (now + 3600).to_string());
        let period = run(&["list", "--from", &from, "--to", &to]);
        assert!(
            period.contains("backup job fails") && period.contains("printer"),
            "{period}"
        );
        let later = run(&["list", "--from", &to]);
        assert_eq!(later.lines().count(), 1, "just the header: {later}");
        let newest = run(&["list", "--all", "--limit", "1"]);
        assert!(
            newest.contains("backup") && !newest.contains("printer"),
            "{newest}"
        );
        let one_open = run(&["list", "--limit", "1"]);
        assert!(one_open.contains("printer"), "{one_open}");

        let err = refused(
            patrol_api(
                http,
                &d,
                "operator",
                &["tickets", "list", "--to", "tomorrow"],
            ),
            "bad time",
        );
        assert!(err.contains("--to \"tomorrow\""), "{err}");
    })
    .await
    .unwrap();
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_lists_changes_and_refusals_for_admins_only() {
    let dir = tempfile::tempdir().unwrap();
    let (_pki, collector) = incident_collector(dir.path()).await;
    let http = collector.http;
    let d = dir.path().to_owned();
    tokio::task::spawn_blocking(move || {
        let run = |token: &str, args: &[&str]| patrol_api(http, &d, token, args);
        ok(
            run(
                "operator",
                &[
                    "tickets",
                    "open",
                    "how long are logs kept?",
                    "--kind",
                    "consultation",
                ],
            ),
            "open",
        );
        refused(
            run(
                "operator",
                &[
                    "oncall",
                    "override",
                    "ops",
                    "--who",
                    "carl",
                    "--from",
                    "1782864000",
                    "--to",
                    "1782950400",
                ],
            ),
            "operator override",
        );
        let log = ok(run("admin", &["audit"]), "audit");
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 3, "header and two entries: {log}");
        assert!(lines[0].starts_with("at "), "{log}");
        for (line, words) in [
            (
                lines[1],
                [
                    "alice",
                    "operator",
                    "403",
                    "POST",
                    "/api/patrol/v1/schedules/ops/overrides",
                ],
            ),
            (
                lines[2],
                ["alice", "operator", "200", "POST", "/api/patrol/v1/tickets"],
            ),
        ] {
            for w in words {
                assert!(line.contains(w), "{w}: {line}");
            }
            assert!(line.contains("127.0.0.1:"), "{line}");
        }
        assert!(
            lines[1].contains("\"who\":\"carl\""),
            "the request: {}",
            lines[1]
        );
        let newest = ok(
            run("admin", &["audit", "--limit", "1", "--actor", "alice"]),
            "limit",
        );
        assert_eq!(newest.lines().count(), 2, "{newest}");
        assert!(newest.contains("overrides"), "{newest}");
        let none = ok(run("admin", &["audit", "--actor", "bob"]), "bob");
        assert_eq!(none.lines().count(), 1, "{none}");
        let later = (patrol_shared::model::now_ms() / 1000 + 60).to_string();
        let none = ok(run("admin", &["audit", "--since", &later]), "since");
        assert_eq!(none.lines().count(), 1, "{none}");
        let err = refused(run("operator", &["audit"]), "operator reads the log");
        assert!(err.contains("403") && err.contains("admin only"), "{err}");
        let err = refused(run("admin", &["audit", "--until", "noon"]), "bad time");
        assert!(err.contains("--until \"noon\""), "{err}");
    })
    .await
    .unwrap();
    collector.stop().await;
}
