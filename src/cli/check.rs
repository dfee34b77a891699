//! `patrol check`: the security baseline of this host (or of a host's
//! files mounted or copied below `--root`), as a report or as JSON.
//!
//! The exit code is for scripts: 0 when no check fails, 1 when some check
//! fails, 2 when the inspection could not be made or some check could not
//! be evaluated (and none failed). clap exits with 2 on bad arguments.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use patrol_agent::baseline;

#[derive(Args)]
pub struct CheckArgs {
    /// Inspect the files below this directory instead of this host's
    /// (a mounted disk, a container image, a copy).
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

/// Runs the inspection and exits with its code.
pub fn run(args: CheckArgs) -> anyhow::Result<()> {
    let code = match inspect(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    };
    // `main` maps every error to 1; this command's codes say more.
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

/// The exit code of a finished inspection.
fn inspect(args: &CheckArgs) -> anyhow::Result<i32> {
    baseline::check_root(&args.root)?;
    // Under another root, this machine's name would be the wrong one.
    let live = args.root == std::path::Path::new("/");
    let host = baseline::host_name(&args.root)
        .or_else(|| live.then(|| sysinfo::System::host_name().ok()).flatten())
        .unwrap_or_else(|| args.root.display().to_string());
    let inspection = baseline::run(&args.root, &host, patrol_shared::model::now_ms());
    let out = match args.format {
        Format::Text => inspection.to_text(),
        Format::Json => inspection
            .to_json()
            .context("cannot write the inspection as JSON")?,
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", out.trim_end()).context("cannot write the report")?;
    Ok(if inspection.has_failures() {
        1
    } else if inspection.has_errors() {
        2
    } else {
        0
    })
}
