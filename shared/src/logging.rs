//! Log set-up shared by the binaries: `tracing` to stderr, level from
//! `RUST_LOG` (default `info`), one line per event.
//!
//! What journald shows well: no ANSI colours unless stderr is a terminal
//! (and `NO_COLOR` is unset), and, when stderr is the journal's own stream
//! (systemd names it in `JOURNAL_STREAM`), no timestamp of ours (the journal
//! stamps every line) and a `<N>` syslog priority prefix that journald
//! turns into the entry's priority, so `journalctl -p warning` and the red
//! and bold of `journalctl` work on Patrol's warnings and errors.

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; a second call is a no-op.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let journal = stderr_is_journal();
    let ansi = use_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
        journal,
    );
    let _ = tracing::subscriber::set_global_default(subscriber(
        filter,
        Style { ansi, journal },
        std::io::stderr,
    ));
}

/// How lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Style {
    ansi: bool,
    journal: bool,
}

/// Colours only for a person at a terminal who has not asked for none
/// (<https://no-color.org>), never into the journal.
fn use_colour(stderr_is_terminal: bool, no_color: bool, journal: bool) -> bool {
    stderr_is_terminal && !no_color && !journal
}

fn subscriber<W>(filter: EnvFilter, style: Style, writer: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(style.ansi)
        .with_target(false);
    if style.journal {
        let lines = format::Format::default()
            .without_time()
            .with_target(false)
            .with_ansi(false);
        Box::new(builder.event_format(Journald(lines)).finish())
    } else {
        Box::new(builder.finish())
    }
}

/// Whether stderr is the stream systemd connected to the journal: the
/// device and inode in `JOURNAL_STREAM` are stderr's (sd_journal_stream_fd(3),
/// systemd.exec(5)). A child that inherited the variable but not the stream
/// (a pipe to a test, a terminal) gets plain lines.
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(meta) = std::fs::File::from(fd).metadata() else {
        return false;
    };
    names_stream(&stream.to_string_lossy(), meta.dev(), meta.ino())
}

/// `JOURNAL_STREAM` is `DEVICE:INODE`, both decimal.
fn names_stream(value: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = value.trim().split_once(':') else {
        return false;
    };
    d.parse() == Ok(dev) && i.parse() == Ok(ino)
}

/// Wraps a line format with the `<N>` prefix journald reads as the syslog
/// priority (sd-daemon(3)).
struct Journald<F>(F);

impl<S, N, F> FormatEvent<S, N> for Journald<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "<{}>", priority(*event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// syslog(3) priorities: err, warning, info, debug.
fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(style: Style) -> String {
        let buffer = Buffer::default();
        let out = buffer.clone();
        let subscriber = subscriber(EnvFilter::new("debug"), style, move || out.clone());
        tracing::subscriber::with_default(subscriber, || {
            let error = std::io::Error::other("disk on fire");
            tracing::error!(config = "/etc/patrol/agent.toml", error = %error, "cannot read");
            tracing::warn!(host = "db", "collector unreachable");
            tracing::info!("agent starting");
            tracing::debug!(retry = 3, "dialling");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        text
    }

    #[test]
    fn plain_lines_have_no_colour_codes() {
        let text = logged(Style {
            ansi: false,
            journal: false,
        });
        assert_eq!(text.lines().count(), 4, "{text}");
        assert!(!text.contains('\x1b'), "escape codes in {text:?}");
        assert!(text.contains("ERROR cannot read"), "{text}");
        assert!(text.contains("error=disk on fire"), "{text}");
    }

    #[test]
    fn terminal_lines_are_coloured() {
        let text = logged(Style {
            ansi: true,
            journal: false,
        });
        assert!(text.contains("\x1b["), "no colour in {text:?}");
    }

    #[test]
    fn journal_lines_start_with_their_priority_and_have_no_timestamp() {
        let text = logged(Style {
            ansi: false,
            journal: true,
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("<3>ERROR cannot read"), "{text}");
        assert!(
            lines[1].starts_with("<4> WARN collector unreachable"),
            "{text}"
        );
        assert!(lines[2].starts_with("<6> INFO agent starting"), "{text}");
        assert!(lines[3].starts_with("<7>DEBUG dialling"), "{text}");
        assert!(!text.contains('\x1b'), "escape codes in {text:?}");
    }

    #[test]
    fn colour_only_for_a_terminal_without_no_color_outside_the_journal() {
        assert!(use_colour(true, false, false));
        assert!(!use_colour(false, false, false));
        assert!(!use_colour(true, true, false));
        assert!(!use_colour(true, false, true));
    }

    #[test]
    fn journal_stream_must_name_this_device_and_inode() {
        assert!(names_stream("8:12345", 8, 12345));
        assert!(names_stream("8:12345\n", 8, 12345));
        assert!(!names_stream("8:12346", 8, 12345));
        assert!(!names_stream("9:12345", 8, 12345));
        assert!(!names_stream("garbage", 8, 12345));
        assert!(!names_stream("", 8, 12345));
    }
}
