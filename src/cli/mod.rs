//! The subcommands and their arguments.

mod audit;
mod check;
mod client;
mod import;
mod oncall;
mod pki;
mod silence;
mod sla;
mod tickets;
mod up;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Patrol: host monitoring and incidents for a fleet of Linux servers.
#[derive(Parser)]
#[command(version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a collector and an agent for this host in one process, creating
    /// ./patrol-data (certificates, configs, data) on first use.
    Up(up::UpArgs),
    /// Manage the fleet's certificate authority and certificates.
    Pki {
        #[command(subcommand)]
        command: pki::PkiCommand,
    },
    /// Run the agent alone (as `patrol-agent` does).
    Agent(patrol_agent::cli::Args),
    /// Run the collector alone (as `patrol-collector` does).
    Collector(patrol_collector::cli::Args),
    /// Inspect this host (or the files under --root) against the security
    /// baseline; exit 0 when nothing fails, 1 when a check fails, 2 on error.
    Check(check::CheckArgs),
    /// Backfill a Prometheus text or OpenMetrics file into a running
    /// collector (through remote write; needs a writer or admin token).
    Import(import::ImportArgs),
    /// Silence alerts on a running collector: add, list, expire.
    Silence(silence::SilenceArgs),
    /// Tickets on a running collector: list, show, open, ack, comment,
    /// assign, resolve, close, reopen.
    Tickets(tickets::TicketsArgs),
    /// On-call schedules on a running collector: who is on call, shifts,
    /// overrides.
    Oncall(oncall::OncallArgs),
    /// The SLA report of a running collector.
    Sla(sla::SlaArgs),
    /// The audit log of a running collector: every change made through its
    /// API, and refused attempts (an admin token).
    Audit(audit::AuditArgs),
}

/// Runs the chosen subcommand.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up(args) => up::run(args),
        Command::Pki { command } => pki::run(command),
        Command::Agent(args) => patrol_agent::cli::main(args),
        Command::Collector(args) => patrol_collector::cli::main(args),
        Command::Check(args) => check::run(args),
        Command::Import(args) => import::run(args),
        Command::Silence(args) => silence::run(args),
        Command::Tickets(args) => tickets::run(args),
        Command::Oncall(args) => oncall::run(args),
        Command::Sla(args) => sla::run(args),
        Command::Audit(args) => audit::run(args),
    }
}

/// Default folder for `patrol up`.
fn default_data_dir() -> PathBuf {
    PathBuf::from("patrol-data")
}
