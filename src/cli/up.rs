//! `patrol up`: everything on one machine with no setup. The first run
//! creates a data folder with a CA, certificates, a collector config and an
//! agent config; every run starts the collector and an agent for this host
//! in one process, says where to look, and stops cleanly on Ctrl-C/SIGTERM.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use patrol_agent::AgentConfig;
use patrol_collector::CollectorConfig;
use patrol_shared::pki::{self, Ca, Role};
use tokio_util::sync::CancellationToken;

#[derive(Args)]
pub struct UpArgs {
    /// The data folder (created if absent, reused if present).
    #[arg(long, default_value_os_t = super::default_data_dir())]
    dir: PathBuf,
    /// Override the collector's http.listen for this run.
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// Override the collector's ingest.listen for this run.
    #[arg(long)]
    ingest_listen: Option<SocketAddr>,
}

const HEADER: &str = "# Written by `patrol up`; edit freely, it is reused on the next run.\n\
                      # Every key is described in docs/configuration.md.\n\n";

pub fn run(args: UpArgs) -> anyhow::Result<()> {
    let dir = &args.dir;
    let pki_dir = dir.join("pki");
    for folder in [dir.join("data"), pki_dir.clone()] {
        create_private_dir(&folder)?;
    }
    let agent_name = local_agent_name();
    prepare_pki(&pki_dir, &agent_name)?;
    let collector_path = dir.join("collector.toml");
    let agent_path = dir.join("agent.toml");
    write_if_absent(
        &collector_path,
        &CollectorConfig::example(Path::new("pki"), Path::new("data")),
    )?;
    write_if_absent(
        &agent_path,
        &AgentConfig::example(Path::new("pki"), &agent_name, "127.0.0.1:9471"),
    )?;
    ensure_admin_token(dir, &collector_path)?;
    let mut collector = CollectorConfig::load(&collector_path)?;
    let mut agent = AgentConfig::load(&agent_path)?;
    if let Some(listen) = args.http_listen {
        collector.http.listen = listen;
    }
    if let Some(listen) = args.ingest_listen {
        collector.ingest.listen = listen;
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let cancel = CancellationToken::new();
        let running = patrol_collector::start(collector, cancel.clone()).await?;
        // The local agent always talks to the collector in this process.
        agent.collector.addresses = vec![dial_address(running.ingest_addr)];
        let agent_name = agent_cert_name(&agent);
        let agent_cancel = CancellationToken::new();
        let agent_task = tokio::spawn(patrol_agent::run(agent, agent_cancel.clone()));
        print_banner(dir, &running, &agent_name);
        patrol_shared::signal::until_shutdown().await;
        eprintln!("stopping…");
        // The agent first, so its goodbye reaches a collector still running.
        agent_cancel.cancel();
        let agent_result = agent_task.await;
        cancel.cancel();
        running.wait().await;
        match agent_result {
            Ok(result) => result.map_err(anyhow::Error::from),
            Err(e) => Err(anyhow::anyhow!("agent task failed: {e}")),
        }
    })
}

/// Creates the CA, the collector's and this host's certificates if absent.
fn prepare_pki(pki_dir: &Path, agent_name: &str) -> anyhow::Result<()> {
    let (ca_cert, _) = pki::ca_paths(pki_dir);
    let ca = if ca_cert.exists() {
        Ca::load(pki_dir)?
    } else {
        let ca = Ca::generate(pki::DEFAULT_CA_VALIDITY)?;
        ca.write(pki_dir, false)?;
        ca
    };
    if !pki::leaf_paths(pki_dir, "collector").0.exists() {
        let mut sans = vec!["localhost".to_owned(), "127.0.0.1".into(), "::1".into()];
        if agent_name != "localhost" {
            sans.push(agent_name.to_owned());
        }
        ca.issue(
            Role::Collector,
            "collector",
            &sans,
            pki::DEFAULT_LEAF_VALIDITY,
        )?
        .write(pki_dir, "collector", false)?;
    }
    if !pki::leaf_paths(pki_dir, agent_name).0.exists() {
        ca.issue(Role::Agent, agent_name, &[], pki::DEFAULT_LEAF_VALIDITY)?
            .write(pki_dir, agent_name, false)?;
    }
    Ok(())
}

/// The admin API token: created on first use in `DIR/admin-token` (only its
/// owner may read it), its hash added to the collector config.
fn ensure_admin_token(dir: &Path, collector_path: &Path) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let token_path = dir.join("admin-token");
    let token = match std::fs::read_to_string(&token_path) {
        Ok(t) => t.trim().to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = patrol_collector::http::auth::generate_token()
                .map_err(|_| anyhow::anyhow!("cannot draw random bytes for a token"))?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&token_path)
                .with_context(|| format!("cannot create {}", token_path.display()))?;
            writeln!(file, "{token}")
                .with_context(|| format!("cannot write {}", token_path.display()))?;
            token
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", token_path.display())),
    };
    let hash = patrol_collector::http::auth::hash_token(&token);
    let text = std::fs::read_to_string(collector_path)
        .with_context(|| format!("cannot read {}", collector_path.display()))?;
    if !text.contains(&hash) {
        let block = format!(
            "\n# The admin token `patrol up` created (the token itself is in admin-token).\n\
             [[http.tokens]]\nname = \"admin\"\nrole = \"admin\"\nsha256 = \"{hash}\"\n"
        );
        std::fs::write(collector_path, format!("{text}{block}"))
            .with_context(|| format!("cannot write {}", collector_path.display()))?;
    }
    Ok(())
}

/// Creates a folder only its owner can enter (keys and data live there).
fn create_private_dir(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if path.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

fn write_if_absent<T: serde::Serialize>(path: &Path, config: &T) -> anyhow::Result<()> {
    if path.exists() {
        return Ok(());
    }
    let text = toml::to_string(config).context("cannot write the default config")?;
    std::fs::write(path, format!("{HEADER}{text}"))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// This host's name as a certificate name: lower case, only the characters
/// certificates and labels accept; "localhost" when there is none.
fn local_agent_name() -> String {
    let raw = sysinfo::System::host_name().unwrap_or_default();
    let name: String = raw
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .collect();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// The name in the agent's certificate file, for the banner.
fn agent_cert_name(agent: &AgentConfig) -> String {
    patrol_shared::tls::load_certs(&agent.tls.cert)
        .ok()
        .and_then(|c| {
            c.first()
                .and_then(|c| patrol_shared::tls::certificate_identity(c).ok())
        })
        .unwrap_or_else(|| "?".into())
}

/// Where a local client reaches a listener bound to `addr`.
fn dial_address(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port()).to_string()
}

fn print_banner(dir: &Path, running: &patrol_collector::Running, agent_name: &str) {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    let pki = dir.join("pki");
    println!(
        "\nPatrol is up.\n\
         \x20 metrics:   http://{http}/metrics\n\
         \x20 query API: http://{http}/api/v1/ (Prometheus' API; a Grafana Prometheus datasource)\n\
         \x20 API token: {data}/admin-token (role admin)\n\
         \x20 ingest:    {ingest} (mutual TLS)\n\
         \x20 data:      {data}\n\
         \x20 this host: agent {agent_name:?}, configured in {data}/agent.toml\n\n\
         To add another host:\n\
         \x20 1. patrol pki issue agent NAME --dir {pki}\n\
         \x20 2. copy {pki}/ca.pem, NAME.pem and NAME-key.pem to that host, with an agent.toml\n\
         \x20    like {data}/agent.toml whose collector.addresses name this machine\n\
         \x20    (its certificate accepts: localhost, 127.0.0.1, ::1, this host's name;\n\
         \x20    reissue it with --san for other names)\n\
         \x20 3. on that host: patrol-agent --config agent.toml\n\
         Query it:\n\
         \x20 curl -H \"Authorization: Bearer $(cat {data}/admin-token)\" 'http://{http}/api/v1/query?query=node_load1'\n\
         In Grafana: add a Prometheus data source with URL http://{http} and, under\n\
         \x20 Authentication, basic auth with user \"admin\" and the token as password\n\
         \x20 (or a custom header Authorization: Bearer TOKEN).\n\
         See docs/ for a real fleet. Ctrl-C stops.\n",
        http = running.http_addr,
        ingest = running.ingest_addr,
        data = dir.display(),
        pki = pki.display(),
    );
}
