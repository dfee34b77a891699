//! A small HTTP(S) client for the subcommands that talk to a running
//! collector's API (`patrol import`, `patrol silence`), with its token.

use std::path::PathBuf;

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// Where the subcommands find a running collector's API, and with what.
#[derive(clap::Args)]
pub struct ApiArgs {
    /// The collector's HTTP API.
    #[arg(long, global = true, default_value = "http://127.0.0.1:9470")]
    pub url: String,
    /// A file holding an API token with the role the command needs
    /// (docs/api.md): viewer to read, operator to change tickets and
    /// silences, writer to import.
    #[arg(long, global = true, default_value_os_t = super::default_data_dir().join("admin-token"))]
    pub token_file: PathBuf,
    /// The CA certificate (PEM) to trust for an https:// URL.
    #[arg(long, global = true)]
    pub ca: Option<PathBuf>,
}

impl ApiArgs {
    /// The API with the token read from its file, and a runtime to talk to
    /// it on.
    pub fn connect(&self) -> anyhow::Result<(Api, tokio::runtime::Runtime)> {
        let token = std::fs::read_to_string(&self.token_file)
            .with_context(|| format!("cannot read the token file {}", self.token_file.display()))?;
        let api = Api::new(&self.url, self.ca.as_deref(), token.trim())?;
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
            bail!("--url {url:?}: expected http://HOST:PORT or https://HOST:PORT");
        };
        let authority = rest.trim_end_matches('/');
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h.trim_matches(|c| c == '[' || c == ']').to_owned(),
                p.parse()
                    .with_context(|| format!("--url {url:?}: bad port {p:?}"))?,
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

    /// [`Api::send`], failing with the collector's answer unless it is 2xx.
    pub async fn send_ok(
        &self,
        method: hyper::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> anyhow::Result<String> {
        let (status, text) = self.send(method, path, headers, body).await?;
        if !status.is_success() {
            bail!("the collector answered {status}: {}", text.trim());
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
