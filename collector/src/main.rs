//! `patrol-collector --config FILE`: the collector alone, for real
//! deployments (systemd runs this).

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let args = patrol_collector::cli::Args::parse();
    patrol_shared::logging::init();
    patrol_collector::cli::main(args)
}
