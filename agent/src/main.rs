//! `patrol-agent --config FILE`: the agent alone, for real deployments
//! (systemd runs this on each server).

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let args = patrol_agent::cli::Args::parse();
    patrol_shared::logging::init();
    patrol_agent::cli::main(args)
}
