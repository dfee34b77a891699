//! The ingest listener's TLS material, reloaded while it runs: the CA, the
//! collector's certificate and key, and the revocation list.
//!
//! A watcher task looks at the files' modification stamps every
//! [`CHECK_INTERVAL`]; when one changed it builds a whole new rustls
//! `ServerConfig` and swaps it in, so the next handshake uses it and
//! sessions already running keep theirs. A file that does not load is
//! logged with its path once per change, and the old material keeps
//! serving: a half-copied certificate never takes the collector down.
//!
//! The revoked serial numbers are published on a `watch` channel; each
//! session holds a receiver and ends itself when its own certificate's
//! serial appears, so revoking an agent also cuts its open connection.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use patrol_shared::tls::{self, RevocationList, TlsError, TlsFiles};
use rustls::ServerConfig;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How often the files are looked at. A `stat` of four files a second
/// costs nothing next to a TLS handshake.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The files' identity: a rename over the file (how careful tools write)
/// changes the inode, an in-place write the time and usually the length.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: (u64, u64),
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: (meta.dev(), meta.ino()),
    })
}

/// The listener's current TLS config and revocation list.
pub struct Credentials {
    files: TlsFiles,
    crl: Option<PathBuf>,
    config: RwLock<Arc<ServerConfig>>,
    /// The stamps last loaded or last tried, so a bad file is reported once.
    seen: Mutex<Vec<Option<Stamp>>>,
    revoked: watch::Sender<Arc<RevocationList>>,
}

impl Credentials {
    /// Loads everything once; at start-up a bad file is an error.
    pub fn load(files: TlsFiles, crl: Option<PathBuf>) -> Result<Credentials, TlsError> {
        let seen = stamps(&files, crl.as_deref());
        let (config, revoked) = build(&files, crl.as_deref())?;
        Ok(Credentials {
            files,
            crl,
            config: RwLock::new(config),
            seen: Mutex::new(seen),
            revoked: watch::Sender::new(Arc::new(revoked)),
        })
    }

    /// An acceptor with the config of this moment.
    pub fn acceptor(&self) -> TlsAcceptor {
        let config = match self.config.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        TlsAcceptor::from(config)
    }

    /// The revoked serials, now and as they change.
    pub fn revoked(&self) -> watch::Receiver<Arc<RevocationList>> {
        self.revoked.subscribe()
    }

    /// Reloads when a file changed since the last look. Returns whether a
    /// new config is in use.
    pub fn check(&self) -> bool {
        let stamps = stamps(&self.files, self.crl.as_deref());
        {
            let Ok(mut seen) = self.seen.lock() else {
                return false;
            };
            if *seen == stamps {
                return false;
            }
            *seen = stamps;
        }
        match build(&self.files, self.crl.as_deref()) {
            Ok((config, revoked)) => {
                if let Ok(mut current) = self.config.write() {
                    *current = config;
                }
                let serials = revoked.serials.len();
                self.revoked.send_replace(Arc::new(revoked));
                info!(cert = %self.files.cert.display(), ca = %self.files.ca.display(),
                      crl = ?self.crl, revoked = serials, "ingest TLS material reloaded");
                true
            }
            Err(e) => {
                warn!(error = %e, "ingest TLS material not reloaded; the previous certificate and revocation list stay in use");
                false
            }
        }
    }
}

fn stamps(files: &TlsFiles, crl: Option<&Path>) -> Vec<Option<Stamp>> {
    [
        files.ca.as_path(),
        files.cert.as_path(),
        files.key.as_path(),
    ]
    .into_iter()
    .chain(crl)
    .map(stamp)
    .collect()
}

fn build(
    files: &TlsFiles,
    crl: Option<&Path>,
) -> Result<(Arc<ServerConfig>, RevocationList), TlsError> {
    let revoked = match crl {
        Some(path) => tls::load_crls(path, &files.ca)?,
        None => RevocationList::default(),
    };
    let config = tls::server_config_with_crls(files, revoked.crls.clone())?;
    Ok((config, revoked))
}

/// Looks at the files every [`CHECK_INTERVAL`] until `cancel` fires.
pub async fn watch_files(credentials: Arc<Credentials>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let creds = credentials.clone();
        // stat and PEM parsing are blocking file I/O.
        let _ = tokio::task::spawn_blocking(move || creds.check()).await;
    }
}
