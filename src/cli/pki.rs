//! `patrol pki init`, `patrol pki issue` and `patrol pki revoke`: the fleet
//! CA, the certificates it signs, and the list of those it no longer vouches
//! for.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use patrol_shared::pki::{Ca, Role};

#[derive(Subcommand)]
pub enum PkiCommand {
    /// Create a new fleet CA (ca.pem, ca-key.pem) in --dir.
    Init {
        /// Folder for the CA files.
        #[arg(long)]
        dir: PathBuf,
        /// How long the CA is valid, e.g. "10years", "3650d".
        #[arg(long, default_value = "10years", value_parser = parse_duration)]
        validity: Duration,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Issue a certificate signed by the fleet CA: NAME.pem and NAME-key.pem.
    Issue {
        /// agent (client certificate) or collector (server certificate).
        role: RoleArg,
        /// The certificate's name: the host name an agent is filed under,
        /// or the collector's name.
        name: String,
        /// Extra DNS names or IP addresses (the names agents dial the
        /// collector by).
        #[arg(long = "san", num_args = 1..)]
        sans: Vec<String>,
        /// Folder holding the CA; the new files go there too.
        #[arg(long)]
        dir: PathBuf,
        /// How long the certificate is valid, e.g. "365d", "90d".
        #[arg(long, default_value = "365d", value_parser = parse_duration)]
        validity: Duration,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Revoke certificates: add them to the CA's revocation list (crl.pem in
    /// --dir, created when missing). Point the collector's `ingest.crl` at
    /// that file: it refuses the certificates and closes their sessions.
    Revoke {
        /// Names of issued certificates (NAME.pem in --dir) or paths to
        /// certificate files. With none, the list is written (or re-signed,
        /// current for another year) as it is.
        certs: Vec<String>,
        /// Folder holding the CA.
        #[arg(long)]
        dir: PathBuf,
        /// The CRL file to write (default: crl.pem in --dir).
        #[arg(long)]
        crl: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Agent,
    Collector,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    patrol_shared::config::parse_duration(text)
}

pub fn run(command: PkiCommand) -> anyhow::Result<()> {
    match command {
        PkiCommand::Init {
            dir,
            validity,
            force,
        } => {
            let ca = Ca::generate(validity)?;
            let (cert, key) = ca.write(&dir, force)?;
            println!(
                "created the fleet CA:\n  {}\n  {} (private, mode 0600)",
                cert.display(),
                key.display()
            );
            println!(
                "next: patrol pki issue collector NAME --san DNS_OR_IP --dir {}",
                dir.display()
            );
        }
        PkiCommand::Issue {
            role,
            name,
            sans,
            dir,
            validity,
            force,
        } => {
            let ca = Ca::load(&dir).with_context(|| {
                format!(
                    "no usable CA in {} (create one with `patrol pki init --dir {}`)",
                    dir.display(),
                    dir.display()
                )
            })?;
            let role = match role {
                RoleArg::Agent => Role::Agent,
                RoleArg::Collector => Role::Collector,
            };
            let issued = ca.issue(role, &name, &sans, validity)?;
            let (cert, key) = issued.write(&dir, &name, force)?;
            println!(
                "issued {} certificate {name:?}:\n  {}\n  {} (private, mode 0600)",
                match role {
                    Role::Agent => "agent",
                    Role::Collector => "collector",
                },
                cert.display(),
                key.display()
            );
        }
        PkiCommand::Revoke { certs, dir, crl } => {
            let ca =
                Ca::load(&dir).with_context(|| format!("no usable CA in {}", dir.display()))?;
            let crl = crl.unwrap_or_else(|| dir.join("crl.pem"));
            let paths: Vec<PathBuf> = certs
                .iter()
                .map(|c| {
                    let path = PathBuf::from(c);
                    if c.ends_with(".pem") || path.components().count() > 1 {
                        path
                    } else {
                        patrol_shared::pki::leaf_paths(&dir, c).0
                    }
                })
                .collect();
            let (added, total) = ca.revoke(&crl, &paths)?;
            for serial in &added {
                println!("revoked serial {serial}");
            }
            println!(
                "{}: {} certificate(s) revoked in all ({} new)",
                crl.display(),
                total,
                added.len()
            );
        }
    }
    Ok(())
}
