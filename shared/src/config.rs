//! Reading config files: TOML into typed structs, with errors that name the
//! file, the line and the key, and durations written as people write them
//! ("10s", "2h").

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: invalid configuration:\n  - {}", problems.join("\n  - "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

/// Parses TOML text; `path` is only used to name the source in errors.
pub fn parse_toml<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let (line, column) = e
            .span()
            .map(|span| line_and_column(text, span.start))
            .unwrap_or((1, 1));
        ConfigError::Parse {
            path: path.to_owned(),
            line,
            column,
            message: e.message().trim().to_owned(),
        }
    })
}

/// Reads and parses a TOML file.
pub fn load_toml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_owned(),
        error,
    })?;
    parse_toml(path, &text)
}

/// 1-based line and column of a byte offset.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

/// Parses a duration as people write it: "10s", "5m", "1h 30m", "365d".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| {
        format!("invalid duration {text:?}: {e} (expected e.g. \"10s\", \"5m\", \"2h\")")
    })
}

/// Serde helpers for durations written as "10s", "5m", "1h 30m".
pub mod duration {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// Serde helpers for byte sizes written as an integer or "8MiB", "512KiB", "1GB".
pub mod bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes whole KiB, MiB and GiB with their unit, anything else as a number.
    pub fn serialize<S: Serializer>(n: &usize, s: S) -> Result<S::Ok, S::Error> {
        for (unit, factor) in [("GiB", 1usize << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if *n >= factor && n.is_multiple_of(factor) {
                return s.serialize_str(&format!("{}{unit}", n / factor));
            }
        }
        s.serialize_u64(*n as u64)
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Number(n) => usize::try_from(n).map_err(serde::de::Error::custom),
            Raw::Text(t) => parse(&t).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "invalid size {t:?} (expected e.g. 1048576, \"512KiB\", \"8MiB\", \"1GB\")"
                ))
            }),
        }
    }

    /// Parses "8MiB", "512 KiB", "1GB", "100".
    pub fn parse(text: &str) -> Option<usize> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number.parse().ok()?;
        let factor: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1_000,
            "KiB" => 1 << 10,
            "MB" => 1_000_000,
            "MiB" => 1 << 20,
            "GB" => 1_000_000_000,
            "GiB" => 1 << 30,
            _ => return None,
        };
        usize::try_from(number.checked_mul(factor)?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[serde(with = "duration")]
        interval: Duration,
        #[serde(with = "bytes", default)]
        size: usize,
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let path = Path::new("/etc/patrol/agent.toml");
        let err = parse_toml::<Sample>(path, "interval = \"10s\"\ncolour = 1\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("/etc/patrol/agent.toml:2:1:"), "{text}");
        assert!(text.contains("colour"), "{text}");
    }

    #[test]
    fn bad_durations_say_what_is_expected() {
        let err = parse_toml::<Sample>(Path::new("a.toml"), "interval = \"often\"").unwrap_err();
        assert!(err.to_string().contains("expected e.g. \"10s\""), "{err}");
    }

    #[test]
    fn sizes_accept_units() {
        let s: Sample = parse_toml(Path::new("a"), "interval = \"1m\"\nsize = \"8MiB\"").unwrap();
        assert_eq!(s.size, 8 << 20);
        assert_eq!(s.interval, Duration::from_secs(60));
        assert_eq!(bytes::parse("100"), Some(100));
        assert_eq!(bytes::parse("3 parsecs"), None);
        let text = toml::to_string(&Sized { size: 64 << 20 }).unwrap();
        assert_eq!(text.trim(), "size = \"64MiB\"");
        let text = toml::to_string(&Sized { size: 1000 }).unwrap();
        assert_eq!(text.trim(), "size = 1000");
    }

    #[derive(serde::Serialize)]
    struct Sized {
        #[serde(with = "bytes")]
        size: usize,
    }
}
