//! Log set-up shared by the binaries: `tracing` to stderr, level from
//! `RUST_LOG` (default `info`), colours only when stderr is a terminal, so
//! journald shows plain lines.

use std::io::IsTerminal;

/// Installs the global subscriber; a second call is a no-op.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}
