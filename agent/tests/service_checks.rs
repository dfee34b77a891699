//! Each service-check kind against a real thing on loopback that the test
//! starts: a TCP listener, an HTTPS server whose certificate expires in
//! three days, fake MySQL and PostgreSQL servers speaking the real wire
//! bytes, shell-script plugins (run by the check without a shell), a
//! fixture procfs and this test's own process. Every wait is bounded.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use patrol_agent::checks::{
    CheckConfig, CheckSet, CommandCheck, DatabaseCheck, Engine, Env, HttpCheck, Observation,
    ProcessCheck, Status, TcpCheck,
};
use patrol_shared::pki::{Ca, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const TIMEOUT: Duration = Duration::from_secs(5);

fn env() -> Env {
    Env {
        exclude_pid: None,
        ..Env::host(Path::new("/proc"))
    }
}

async fn run(config: CheckConfig) -> Observation {
    let check = config.compile("checks[0]").expect("valid check");
    check.run(&env()).await
}

fn with_timeout(mut config: CheckConfig, timeout: Duration) -> CheckConfig {
    config.timeout = timeout;
    config
}

// ---------------------------------------------------------------- TCP

fn tcp(address: &str) -> CheckConfig {
    CheckConfig {
        tcp: Some(TcpCheck {
            address: address.to_owned(),
        }),
        ..CheckConfig::new("tcp")
    }
}

#[tokio::test]
async fn tcp_check_is_up_while_the_listener_is_open_and_down_after() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let seen = run(tcp(&address)).await;
    assert_eq!(seen.status, Status::Ok, "{seen:?}");
    assert!(seen.message.contains(&address), "{seen:?}");
    drop(listener);
    let seen = run(tcp(&address)).await;
    assert_eq!(seen.status, Status::Critical, "{seen:?}");
}

// ---------------------------------------------------------------- HTTP(S)

struct Site {
    address: String,
    ca: PathBuf,
    _dir: tempfile::TempDir,
}

/// An HTTPS server for `localhost` whose certificate, from a fresh CA,
/// expires `valid_for` from now. Answers every request with `body`.
async fn https_site(valid_for: Duration, body: &'static str) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate(Duration::from_secs(365 * 86_400)).unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.cert_pem()).unwrap();
    let leaf = ca
        .issue(
            Role::Collector,
            "localhost",
            &["127.0.0.1".into()],
            valid_for,
        )
        .unwrap();
    let (cert, key) = leaf.write(dir.path(), "localhost", false).unwrap();
    let tls = patrol_shared::tls::https_config(&cert, &key).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                serve(hyper_util::rt::TokioIo::new(stream), body).await;
            });
        }
    });
    Site {
        address,
        ca: ca_path,
        _dir: dir,
    }
}

async fn serve<I>(io: I, body: &'static str)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(
        move |req: hyper::Request<hyper::body::Incoming>| async move {
            let status = if req.uri().path() == "/missing" {
                404
            } else {
                200
            };
            let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
            Ok::<_, Infallible>(response)
        },
    );
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .await;
}

fn http(url: &str) -> HttpCheck {
    HttpCheck::new(url)
}

#[tokio::test]
async fn https_check_reports_status_body_and_the_certificate_days_left() {
    let site = https_site(Duration::from_secs(3 * 86_400), "training portal: ready").await;
    let port = site.address.rsplit_once(':').unwrap().1;
    let check = CheckConfig {
        http: Some(HttpCheck {
            body_regex: Some("portal: (ready|ok)".into()),
            ca_file: Some(site.ca.clone()),
            address: Some(site.address.clone()),
            ..http(&format!("https://localhost:{port}/healthz"))
        }),
        ..CheckConfig::new("training")
    };
    let seen = run(check.clone()).await;
    assert_eq!(seen.status, Status::Ok, "{seen:?}");
    assert_eq!(seen.details.http_status, Some(200));
    let not_after = seen.details.cert_not_after.expect("certificate expiry");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let days_left = (not_after - now) as f64 / 86_400.0;
    assert!((2.9..=3.01).contains(&days_left), "{days_left} days left");
    assert!(
        seen.message.contains("certificate expires in 3.0 days")
            || seen.message.contains("certificate expires in 2.9 days"),
        "{seen:?}"
    );

    // The same site: a body that does not match, a 404, and a check that
    // does not trust the CA (which still learns the expiry).
    let mut mismatch = check.clone();
    mismatch.http.as_mut().unwrap().body_regex = Some("maintenance".into());
    let seen = run(mismatch).await;
    assert_eq!(seen.status, Status::Critical, "{seen:?}");
    assert!(seen.message.contains("does not match"), "{seen:?}");

    let mut missing = check.clone();
    missing.http.as_mut().unwrap().url = format!("https://localhost:{port}/missing");
    let seen = run(missing).await;
    assert_eq!(seen.status, Status::Critical, "{seen:?}");
    assert_eq!(seen.details.http_status, Some(404));

    let mut untrusted = check.clone();
    let dir = tempfile::tempdir().unwrap();
    let other_ca = dir.path().join("other-ca.pem");
    std::fs::write(
        &other_ca,
        Ca::generate(Duration::from_secs(86_400))
            .unwrap()
            .cert_pem(),
    )
    .unwrap();
    untrusted.http.as_mut().unwrap().ca_file = Some(other_ca);
    let seen = run(untrusted.clone()).await;
    assert_eq!(seen.status, Status::Critical, "{seen:?}");
    assert!(seen.message.contains("TLS handshake"), "{seen:?}");
    assert_eq!(seen.details.cert_not_after, Some(not_after));

    let mut unverified = untrusted;
    unverified.http.as_mut().unwrap().tls_verify = false;
    let seen = run(unverified).await;
    assert_eq!(seen.status, Status::Ok, "{seen:?}");
    assert_eq!(seen.details.cert_not_after, Some(not_after));
}

#[tokio::test]
async fn plain_http_check_and_a_server_that_never_answers() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(serve(hyper_util::rt::TokioIo::new(tcp), "ok"));
        }
    });
    let seen = run(CheckConfig {
        http: Some(http(&format!("http://{address}/"))),
        ..CheckConfig::new("web")
    })
    .await;
    assert_eq!(seen.status, Status::Ok, "{seen:?}");
    assert_eq!(seen.details.cert_not_after, None);

    // Accepts, reads, never says a word: down at the timeout.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_address = silent.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            held.push(tcp);
        }
    });
    let started = Instant::now();
    let seen = run(with_timeout(
        CheckConfig {
            http: Some(http(&format!("http://{silent_address}/"))),
            ..CheckConfig::new("silent")
        },
        Duration::from_secs(1),
    ))
    .await;
    assert_eq!(seen.status, Status::Critical, "{seen:?}");
    assert!(seen.message.contains("no answer within 1s"), "{seen:?}");
    assert!(started.elapsed() < Duration::from_secs(4));
}

// ---------------------------------------------------------------- databases

/// A server that sends `greeting` to each connection and then, for each
/// `(expect, reply)` step, reads `expect.len()` bytes, checks them and
/// sends `reply`. Returns the address and what the peer sent.
async fn greeter(
    greeting: Vec<u8>,
    expect_len: usize,
    reply: Vec<u8>,
    tail_len: usize,
) -> (String, tokio::sync::oneshot::Receiver<(Vec<u8>, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let Ok((mut tcp, _)) = listener.accept().await else {
            return;
        };
        let _ = tcp.write_all(&greeting).await;
        let mut got = vec![0u8; expect_len];
        if expect_len > 0 && tcp.read_exact(&mut got).await.is_err() {
            return;
        }
        let _ = tcp.write_all(&reply).await;
        let mut tail = vec![0u8; tail_len];
        if tail_len > 0 {
            let _ = tokio::time::timeout(TIMEOUT, tcp.read_exact(&mut tail)).await;
        }
        let _ = tx.send((got, tail));
    });
    (address, rx)
}

fn database(engine: Engine, address: &str) -> CheckConfig {
    CheckConfig {
        database: Some(DatabaseCheck {
            engine,
            address: address.to_owned(),
            user: "patrol".into(),
        }),
        ..CheckConfig::new("db")
    }
}

/// A MySQL packet: 3-byte little-endian length, sequence id, payload.
fn mysql_packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut p = vec![len as u8, (len >> 8) as u8, (len >> 16) as u8, seq];
    p.extend_from_slice(payload);
    p
}

/// MySQL 8.0.36's initial handshake packet (protocol 10), as sent.
const MYSQL_8_GREETING: &[u8] = &[
    0x4a, 0x00, 0x00, 0x00, // length 74, sequence 0
    0x0a, // protocol version 10
    b'8', b'.', b'0', b'.', b'3', b'6', 0x00, // server version
    0x0d, 0x00, 0x00, 0x00, // connection id 13
    0x1f, 0x3e, 0x52, 0x12, 0x6b, 0x0c, 0x4d, 0x3a, // auth-plugin-data part 1
    0x00, // filler
    0xff, 0xff, // capability flags (lower)
    0xff, // character set utf8mb4_0900_ai_ci
    0x02, 0x00, // status: autocommit
    0xff, 0xdf, // capability flags (upper)
    0x15, // auth-plugin-data length 21
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // reserved
    0x05, 0x79, 0x1c, 0x06, 0x5f, 0x31, 0x10, 0x41, 0x2e, 0x23, 0x6a, 0x52, 0x00, // part 2
    b'c', b'a', b'c', b'h', b'i', b'n', b'g', b'_', b's', b'h', b'a', b'2', b'_', b'p', b'a', b's',
    b's', b'w', b'o', b'r', b'd', 0x00, // auth plugin name
];

#[tokio::test]
async fn mysql_greeting_gives_the_server_version() {
    assert_eq!(MYSQL_8_GREETING.len(), 4 + 74);
    let (address, _) = greeter(MYSQL_8_GREETING.to_vec(), 0, Vec::new(), 0).await;
    let seen = run(database(Engine::Mysql, &address)).await;
    assert_eq!(seen.status, Status::Ok, "{seen:?}");
    assert_eq!(seen.details.version.as_deref(), Some("8.0.36"));
    assert_eq!(seen.message, "MySQL protocol 10, server 8.0.36");
}

#[tokio::test]
async fn mariadb_greeting_drops_the_compatibility_prefix() {
    let mut payload = vec![0x0a];
    payload.extend_from_slice(b"5.5.5-10.11.6-MariaDB-0+deb12u1\0");
    payload.extend_from_slice(&[0x05, 0, 0, 0]);
    payload.extend_from_slice(b"Z:w,0t(H\0");
    payload.extend_from_slice(&[0xfe, 0xf7, 0x2d, 0x02, 0x00, 0xff, 0x81, 0x15]);
    payload.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x1d, 0, 0, 0]);
    payload.extend_from_slice(b"q0bv^#M+4m%N\0mysql_native_password\0");
    let (address, _) = greeter(mysql_packet(0, &payload), 0, Vec::new(), 0).await;
    let seen = run(database(Engine::Mysql, &address)).await;
    assert_eq!(seen.status, Status::Ok, "{seen:?}");
    assert_eq!(
        seen.details.version.as_deref(),
        Some("10.11.6-MariaDB-0+deb12u1")
    );
}

#[tokio::test]
async fn mysql_that_refuses_connections_is_down() {
    let mut payload = vec![0xff, 0x10, 0x04];
    payload.extend_from_slice(b"Too many connections");
    let (address, _) = greeter(mysql_packet(0, &payload), 0, Vec::new(), 0).await;
    let seen = run(database(Engine::Mysql, &address)).await;
    assert_eq!(seen.status, Status::Critical, "{seen:?}");
    assert!(
        seen.message.contains("1040 Too many connections"),
        "{seen:?}"
    );
}

/// The StartupMessage the check sends, as PostgreSQL reads it.
fn expected_startup() -> Vec<u8> {
    let mut body = vec![0, 3, 0, 0];
    body.extend_from_slice(b"user\0patrol\0database\0patrol\0application_name\0patrol-agent\0\0");
    let mut m = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    m.extend_from_slice(&body);
    m
}

fn pg_message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

#[tokio::test]
async fn postgres_asking_for_a_password_is_up_without_a_version() {
    let startup = expected_startup();
    // AuthenticationSASL, offering SCRAM-SHA-256.
    let mut sasl = 10u32.to_be_bytes().to_vec();
    sasl.extend_from_slice(b"SCRAM-SHA-256\0\0");
    let (address, got) = greeter(Vec::new(), startup.len(), pg_message(b'R', &sasl), 0).await;
    let seen = run(database(Engine::Postgresql, &address)).await;
    assert_eq!(seen.status, Status::Ok, "{seen:?}");
    assert!(seen.message.contains("SASL"), "{seen:?}");
    assert_eq!(seen.details.version, None);
    let (sent, _) = tokio::time::timeout(TIMEOUT, got).await.unwrap().unwrap();
    assert_eq!(
        sent, startup,
        "the StartupMessage is protocol 3.0, byte for byte"
    );
}

#[tokio::test]
async fn postgres_under_trust_announces_its_version_and_is_left_politely() {
    let startup = expected_startup();
    let mut reply = pg_message(b'R', &0u32.to_be_bytes());
    reply.extend(pg_message(b'S', b"application_name\0patrol-agent\0"));
    reply.extend(pg_message(
        b'S',
        b"server_version\x0016.3 (Debian 16.3-1.pgdg120+1)\0",
    ));
    reply.extend(pg_message(
        b'K',
        &[0, 0, 0x30, 0x39, 0xde, 0xad, 0xbe, 0xef],
    ));
    reply.extend(pg_message(b'Z', b"I"));
    let (address, got) = greeter(Vec::new(), startup.len(), reply, 5).await;
    let seen = run(database(Engine::Postgresql, &address)).await;
    assert_eq!(seen.status, Status::Ok, "{seen:?}");
    assert_eq!(
        seen.details.version.as_deref(),
        Some("16.3 (Debian 16.3-1.pgdg120+1)")
    );
    let (_, tail) = tokio::time::timeout(TIMEOUT, got).await.unwrap().unwrap();
    assert_eq!(tail, vec![b'X', 0, 0, 0, 4], "Terminate");
}

#[tokio::test]
async fn postgres_starting_up_is_down_and_garbage_is_not_a_panic() {
    let startup = expected_startup();
    let error = pg_message(
        b'E',
        b"SFATAL\0VFATAL\0C57P03\0Mthe database system is starting up\0Fpostmaster.c\0\0",
    );
    let (address, _) = greeter(Vec::new(), startup.len(), error, 0).await;
    let seen = run(database(Engine::Postgresql, &address)).await;
    assert_eq!(seen.status, Status::Critical, "{seen:?}");
    assert!(seen.message.contains("57P03"), "{seen:?}");

    // A length of 4 GiB, then silence: refused before anything is read.
    let (address, _) = greeter(
        Vec::new(),
        startup.len(),
        vec![b'R', 0xff, 0xff, 0xff, 0xff],
        0,
    )
    .await;
    let seen = run(database(Engine::Postgresql, &address)).await;
    assert_eq!(seen.status, Status::Critical, "{seen:?}");
    assert!(seen.message.contains("not a PostgreSQL answer"), "{seen:?}");

    // An HTTP server where MySQL was expected.
    let (address, _) = greeter(
        b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(),
        0,
        Vec::new(),
        0,
    )
    .await;
    let seen = run(database(Engine::Mysql, &address)).await;
    assert_eq!(seen.status, Status::Critical, "{seen:?}");
}

// ---------------------------------------------------------------- commands

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn command(argv: &[&str]) -> CheckConfig {
    CheckConfig {
        command: Some(CommandCheck {
            argv: argv.iter().map(|a| (*a).to_owned()).collect(),
            env: BTreeMap::from([("PATROL_TEST".to_owned(), "yes".to_owned())]),
        }),
        ..CheckConfig::new("plugin")
    }
}

#[tokio::test]
async fn command_check_reads_a_plugins_exit_message_and_perfdata() {
    let dir = tempfile::tempdir().unwrap();
    // `$1` is passed as one argument, spaces and all: no shell in between.
    let plugin = script(
        dir.path(),
        "check_training",
        "[ \"$PATROL_TEST\" = yes ] || exit 3\necho \"TRAINING WARNING - $1 | sessions=12;10;100;0 'resp time'=250ms\"\necho 'long text'\nexit 1\n",
    );
    let seen = run(command(&[
        plugin.to_str().unwrap(),
        "12 sessions; $(id) `id`",
    ]))
    .await;
    assert_eq!(seen.status, Status::Warning, "{seen:?}");
    assert_eq!(seen.message, "TRAINING WARNING - 12 sessions; $(id) `id`");
    let perf: Vec<(&str, f64)> = seen
        .details
        .perfdata
        .iter()
        .map(|p| (p.label.as_str(), p.value))
        .collect();
    assert_eq!(perf, vec![("sessions", 12.0), ("resp time", 0.25)]);

    let critical = script(
        dir.path(),
        "check_down",
        "echo 'EVAL CRITICAL - 502 from upstream'\nexit 2\n",
    );
    let seen = run(command(&[critical.to_str().unwrap()])).await;
    assert_eq!(seen.status, Status::Critical, "{seen:?}");

    let seen = run(command(&[dir.path().join("absent").to_str().unwrap()])).await;
    assert_eq!(seen.status, Status::Unknown, "{seen:?}");
}

/// Dead, or a zombie waiting for a parent that is not ours to reap it.
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

async fn wait_gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if gone(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn a_plugin_past_its_timeout_is_killed_with_its_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("child.pid");
    let plugin = script(
        dir.path(),
        "check_hangs",
        "sleep 300 &\necho $! > \"$1\"\necho 'still thinking'\nsleep 300\n",
    );
    let started = Instant::now();
    let seen = run(with_timeout(
        command(&[plugin.to_str().unwrap(), pid_file.to_str().unwrap()]),
        Duration::from_secs(1),
    ))
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(seen.status, Status::Unknown, "{seen:?}");
    assert!(
        seen.message.contains("process group was killed"),
        "{seen:?}"
    );
    let child: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        wait_gone(child).await,
        "the plugin's child {child} survived"
    );
}

#[tokio::test]
async fn a_plugin_that_leaves_a_child_holding_its_output_still_gives_its_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("child.pid");
    let plugin = script(
        dir.path(),
        "check_leaves",
        "sleep 300 &\necho $! > \"$1\"\necho 'BACKUP OK - done'\nexit 0\n",
    );
    let started = Instant::now();
    let seen = run(with_timeout(
        command(&[plugin.to_str().unwrap(), pid_file.to_str().unwrap()]),
        Duration::from_secs(8),
    ))
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(seen.status, Status::Ok, "{seen:?}");
    assert_eq!(seen.message, "BACKUP OK - done");
    let child: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        wait_gone(child).await,
        "the plugin's child {child} survived"
    );
}

// ---------------------------------------------------------------- processes

/// A procfs with two nginx processes, a MySQL server and a kernel thread.
fn fixture_proc(dir: &Path) -> PathBuf {
    let proc = dir.join("proc");
    let stat = |pid: u32, comm: &str, utime: u64, stime: u64, rss: u64| {
        format!("{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194560 0 0 0 0 {utime} {stime} 0 0 20 0 1 0 1000 100000000 {rss} 18446744073709551615 1 1 0 0 0\n")
    };
    for (pid, comm, cmdline, utime, stime, rss) in [
        (
            100,
            "nginx",
            &b"nginx: master process /usr/sbin/nginx -g daemon on;\0"[..],
            150,
            50,
            2560,
        ),
        (
            101,
            "nginx",
            &b"nginx: worker process\0\0"[..],
            30,
            10,
            1024,
        ),
        (
            200,
            "mysqld",
            &b"/usr/sbin/mysqld\0--user=mysql\0"[..],
            9000,
            1000,
            100_000,
        ),
        (2, "kthreadd", &b""[..], 0, 0, 0),
    ] {
        let d = proc.join(pid.to_string());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("stat"), stat(pid, comm, utime, stime, rss)).unwrap();
        std::fs::write(d.join("cmdline"), cmdline).unwrap();
    }
    std::fs::create_dir_all(proc.join("sys")).unwrap();
    // A process that ended between the listing and the read.
    std::fs::create_dir_all(proc.join("300")).unwrap();
    proc
}

#[tokio::test]
async fn process_check_counts_and_sums_matching_processes_in_a_fixture_procfs() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env {
        exclude_pid: None,
        ..Env::host(&fixture_proc(dir.path()))
    };
    let check = CheckConfig {
        process: Some(ProcessCheck {
            min_count: 2,
            ..ProcessCheck::by_name("nginx")
        }),
        ..CheckConfig::new("nginx")
    }
    .compile("checks[0]")
    .unwrap();
    let seen = check.run(&env).await;
    assert_eq!(seen.status, Status::Ok, "{seen:?}");
    let figures = seen.details.process.unwrap();
    let page = rustix::param::page_size() as f64;
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    assert_eq!(figures.count, 2);
    assert_eq!(figures.resident_bytes, (2560.0 + 1024.0) * page);
    assert!((figures.cpu_seconds - 240.0 / ticks).abs() < 1e-9);

    let by_pattern = CheckConfig {
        process: Some(ProcessCheck {
            name: None,
            pattern: Some("--user=mysql".into()),
            min_count: 1,
            max_count: Some(1),
        }),
        ..CheckConfig::new("mysql")
    }
    .compile("checks[1]")
    .unwrap();
    let seen = by_pattern.run(&env).await;
    assert_eq!(seen.status, Status::Ok, "{seen:?}");
    assert_eq!(seen.details.process.unwrap().count, 1);

    let missing = CheckConfig {
        process: Some(ProcessCheck::by_name("postgres")),
        ..CheckConfig::new("pg")
    }
    .compile("checks[2]")
    .unwrap();
    let seen = missing.run(&env).await;
    assert_eq!(seen.status, Status::Critical, "{seen:?}");
    assert_eq!(seen.message, "no process matches");
}

#[tokio::test]
async fn process_check_finds_this_test_process_by_its_command_line() {
    let argv0 = std::env::args().next().unwrap();
    let check = CheckConfig {
        process: Some(ProcessCheck {
            name: None,
            pattern: Some(regex_escape(&argv0)),
            min_count: 1,
            max_count: None,
        }),
        ..CheckConfig::new("self")
    };
    let seen = run(check.clone()).await;
    assert_eq!(seen.status, Status::Ok, "{seen:?}");
    let figures = seen.details.process.unwrap();
    assert!(figures.count >= 1);
    assert!(figures.resident_bytes > 1_000_000.0, "{figures:?}");
    // The agent leaves itself out, so its own config cannot match it.
    let me = Env::host(Path::new("/proc"));
    let seen = check.compile("c").unwrap().run(&me).await;
    assert_eq!(seen.status, Status::Critical, "{seen:?}");
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '/' || c == '_' || c == '-' {
                c.to_string()
            } else {
                format!("\\x{{{:x}}}", c as u32)
            }
        })
        .collect()
}

// ---------------------------------------------------------------- runner

#[tokio::test]
async fn the_runner_reports_metrics_and_an_event_when_a_service_goes_down() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let mut config = tcp(&address);
    config.interval = Duration::from_secs(1);
    config.timeout = Duration::from_secs(1);
    let (events_tx, mut events) = tokio::sync::mpsc::channel(16);
    let cancel = CancellationToken::new();
    let set = CheckSet::start(
        vec![config.compile("checks[0]").unwrap()],
        env(),
        events_tx,
        &cancel,
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    while set.reports()[0].1.is_none() {
        assert!(Instant::now() < deadline, "no report");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let families = set.families();
    let up = families
        .iter()
        .find(|f| f.name == "patrol_service_up")
        .unwrap();
    assert_eq!(up.series[0].value, 1.0);
    let labels: Vec<_> = up.series[0]
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        labels,
        vec![
            ("check", "tcp"),
            ("kind", "tcp"),
            ("target", address.as_str())
        ]
    );
    assert!(families
        .iter()
        .any(|f| f.name == "patrol_check_duration_seconds"));

    drop(listener);
    let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("a state-change event within 10s")
        .unwrap();
    assert_eq!(event.kind, "service_check");
    assert!(event.message.contains("is critical, was ok"), "{event:?}");
    let up = set
        .families()
        .into_iter()
        .find(|f| f.name == "patrol_service_up")
        .unwrap();
    assert_eq!(up.series[0].value, 0.0);
    cancel.cancel();
}
