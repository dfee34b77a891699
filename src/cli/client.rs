//! A small HTTP(S) client for the subcommands that talk to a running
//! collector's API (`patrol import`, `patrol silence`), with its token.

use std::path::PathBuf;

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// Where the subcommands find a running collector's API, and with what.
///
/// Each setting is taken from the first of: the flag, the environment
/// (`PATROL_URL`, `PATROL_TOKEN` — the token itself — or
/// `PATROL_TOKEN_FILE`, `PATROL_CA`), the CLI config file (`PATROL_CLI_CONFIG`,
/// else `$XDG_CONFIG_HOME/patrol/cli.toml` or `~/.config/patrol/cli.toml`:
/// keys `url`, `token`, `token_file`, `ca`), the default (the local
/// collector `patrol up` runs, with its admin token).
#[derive(clap::Args)]
pub struct ApiArgs {
    /// The collector's HTTP API [default: http://127.0.0.1:9470].
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// A file holding an API token with the role the command needs
    /// (docs/api.md): viewer to read, operator to change tickets, admin for
    /// schedules, silences and the audit log, writer to import
    /// [default: patrol-data/admin-token].
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// The CA certificate (PEM) to trust for an https:// URL.
    #[arg(long, global = true)]
    pub ca: Option<PathBuf>,
}

/// The CLI config file (see [`ApiArgs`]).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CliConfig {
    pub url: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub ca: Option<PathBuf>,
}

impl CliConfig {
    /// The file named by `PATROL_CLI_CONFIG` (which must exist), else the
    /// per-user one if it exists, else nothing.
    pub fn load(env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<CliConfig> {
        let (path, required) = match env("PATROL_CLI_CONFIG") {
            Some(p) => (PathBuf::from(p), true),
            None => match env("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".config")))
            {
                Some(dir) => (dir.join("patrol").join("cli.toml"), false),
                None => return Ok(CliConfig::default()),
            },
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(CliConfig::default())
            }
            Err(e) => bail!("cannot read the CLI config {}: {e}", path.display()),
        };
        let mut config: CliConfig = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim()))?;
        // Relative paths in the file are relative to the file.
        let base = path.parent().unwrap_or(std::path::Path::new("."));
        for p in [&mut config.token_file, &mut config.ca]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(config)
    }
}

/// Where and how to reach the API, settled.
#[derive(Debug, PartialEq)]
pub struct Resolved {
    pub url: String,
    pub token: String,
    pub ca: Option<PathBuf>,
}

impl ApiArgs {
    /// Settles url, token and CA from flags, environment and config file.
    pub fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Resolved> {
        let config = CliConfig::load(env)?;
        let url = self
            .url
            .clone()
            .or_else(|| env("PATROL_URL"))
            .or(config.url)
            .unwrap_or_else(|| "http://127.0.0.1:9470".into());
        let ca = self
            .ca
            .clone()
            .or_else(|| env("PATROL_CA").map(PathBuf::from))
            .or(config.ca);
        let read = |file: PathBuf| -> anyhow::Result<String> {
            std::fs::read_to_string(&file)
                .map(|t| t.trim().to_owned())
                .with_context(|| format!("cannot read the token file {}", file.display()))
        };
        let token = if let Some(file) = &self.token_file {
            read(file.clone())?
        } else if let Some(token) = env("PATROL_TOKEN").filter(|t| !t.trim().is_empty()) {
            token.trim().to_owned()
        } else if let Some(file) = env("PATROL_TOKEN_FILE") {
            read(PathBuf::from(file))?
        } else if let Some(token) = config.token {
            token.trim().to_owned()
        } else {
            read(
                config
                    .token_file
                    .unwrap_or_else(|| super::default_data_dir().join("admin-token")),
            )?
        };
        if token.is_empty() {
            bail!("the API token is empty");
        }
        Ok(Resolved { url, token, ca })
    }

    /// The API with its token, and a runtime to talk to it on.
    pub fn connect(&self) -> anyhow::Result<(Api, tokio::runtime::Runtime)> {
        let r = self.resolve(&|name| std::env::var(name).ok())?;
        let api = Api::new(&r.url, r.ca.as_deref(), &r.token)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        Ok((api, runtime))
    }
}

/// A collector's API: where it is, TLS if https, and the token to send.
pub struct Api {
    host: String,
    port: u16,
    tls: Option<tokio_rustls::TlsConnector>,
    token: String,
}

impl Api {
    /// `url` is http://HOST:PORT or https://HOST:PORT (with `ca`, the CA
    /// certificate to trust).
    pub fn new(url: &str, ca: Option<&std::path::Path>, token: &str) -> anyhow::Result<Api> {
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            bail!("API url {url:?}: expected http://HOST:PORT or https://HOST:PORT");
        };
        let authority = rest.trim_end_matches('/');
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h.trim_matches(|c| c == '[' || c == ']').to_owned(),
                p.parse()
                    .with_context(|| format!("API url {url:?}: bad port {p:?}"))?,
            ),
            None => (authority.to_owned(), if https { 443 } else { 80 }),
        };
        let tls = if https {
            let ca = ca.context("an https:// --url needs --ca (the CA certificate to trust)")?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in patrol_shared::tls::load_certs(ca)? {
                roots
                    .add(cert)
                    .with_context(|| format!("{}: not a usable CA certificate", ca.display()))?;
            }
            let config =
                rustls::ClientConfig::builder_with_provider(patrol_shared::tls::provider())
                    .with_safe_default_protocol_versions()?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
            Some(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
                config,
            )))
        } else {
            None
        };
        Ok(Api {
            host,
            port,
            tls,
            token: token.to_owned(),
        })
    }

    /// Sends a request; the status and the body as text.
    pub async fn send(
        &self,
        method: hyper::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> anyhow::Result<(hyper::StatusCode, String)> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .with_context(|| format!("cannot connect to {}:{}", self.host, self.port))?;
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.host)
            .header(
                hyper::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            );
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::from(body)))?;
        match &self.tls {
            None => exchange(TokioIo::new(tcp), request).await,
            Some(tls) => {
                let name = rustls_pki_types::ServerName::try_from(self.host.clone())
                    .with_context(|| format!("{:?} is not a valid server name", self.host))?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .with_context(|| format!("TLS with {} failed", self.host))?;
                exchange(TokioIo::new(stream), request).await
            }
        }
    }

    /// [`Api::send`], failing unless the answer is 2xx: the error names the
    /// request, the status and the problem's text.
    pub async fn send_ok(
        &self,
        method: hyper::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> anyhow::Result<String> {
        let (status, text) = self.send(method.clone(), path, headers, body).await?;
        if !status.is_success() {
            // The Patrol and query APIs answer `{"error": …}`; anything
            // else is shown as it came.
            let detail = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|p| p["error"].as_str().map(str::to_owned))
                .unwrap_or_else(|| text.trim().to_owned());
            bail!("{method} {path}: the collector answered {status}: {detail}");
        }
        Ok(text)
    }
}

async fn exchange<T>(
    io: T,
    request: hyper::Request<Full<Bytes>>,
) -> anyhow::Result<(hyper::StatusCode, String)>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .context("HTTP handshake failed")?;
    tokio::spawn(conn);
    let response = sender
        .send_request(request)
        .await
        .context("request failed")?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn args() -> ApiArgs {
        ApiArgs {
            url: None,
            token_file: None,
            ca: None,
        }
    }

    #[test]
    fn flags_then_environment_then_config_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("patrol")).unwrap();
        std::fs::write(
            dir.path().join("patrol/cli.toml"),
            "url = \"https://collector:9470\"\ntoken_file = \"token\"\nca = \"ca.pem\"\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("patrol/token"), "from-config\n").unwrap();
        let mut vars: HashMap<&str, String> =
            HashMap::from([("XDG_CONFIG_HOME", dir.path().to_string_lossy().into_owned())]);
        fn env(vars: &HashMap<&str, String>) -> impl Fn(&str) -> Option<String> {
            let vars: HashMap<String, String> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            move |name: &str| vars.get(name).cloned()
        }
        let r = args().resolve(&env(&vars)).unwrap();
        assert_eq!(r.url, "https://collector:9470");
        assert_eq!(r.token, "from-config");
        assert_eq!(r.ca, Some(dir.path().join("patrol/ca.pem")));

        vars.insert("PATROL_TOKEN", "from-env".into());
        vars.insert("PATROL_URL", "http://127.0.0.1:1".into());
        let r = args().resolve(&env(&vars)).unwrap();
        assert_eq!(
            (r.url.as_str(), r.token.as_str()),
            ("http://127.0.0.1:1", "from-env")
        );

        std::fs::write(dir.path().join("flag-token"), "from-flag").unwrap();
        let mut a = args();
        a.token_file = Some(dir.path().join("flag-token"));
        a.url = Some("http://127.0.0.1:2".into());
        let r = a.resolve(&env(&vars)).unwrap();
        assert_eq!(
            (r.url.as_str(), r.token.as_str()),
            ("http://127.0.0.1:2", "from-flag")
        );
    }

    #[test]
    fn a_bad_config_file_is_named_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cli.toml");
        std::fs::write(&file, "url = \"http://x:1\"\ntokn = \"typo\"\n").unwrap();
        let path = file.to_string_lossy().into_owned();
        let err = args()
            .resolve(&move |name| (name == "PATROL_CLI_CONFIG").then(|| path.clone()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cli.toml") && err.contains("line 2"), "{err}");
        assert!(err.contains("tokn"), "{err}");
    }
}
