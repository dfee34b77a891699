//! What systemd would do at boot, from its files: whether a unit is
//! enabled (a link in some `*.wants/` directory of `/etc/systemd/system`,
//! and not masked) and the settings of its `.conf` files (`journald.conf`
//! and its drop-ins: `[Section]`, `Key=Value`, `#` and `;` comments, the
//! last assignment winning, drop-ins read after the main file in name
//! order).

use super::login_defs::line_number;
use super::tree::Tree;
use super::{BaselineError, Evidence};

const UNIT_DIR: &str = "etc/systemd/system";

/// Evidence of `unit` being enabled, none when it is not (or masked).
pub(crate) fn enabled(tree: &Tree, unit: &str) -> Option<Evidence> {
    let masked = format!("{UNIT_DIR}/{unit}");
    if tree.read_link(&masked).is_some_and(|t| t == "/dev/null") {
        return None;
    }
    let dirs = tree.list(UNIT_DIR).ok()?;
    dirs.iter()
        .filter(|d| d.ends_with(".wants"))
        .map(|d| format!("{UNIT_DIR}/{d}/{unit}"))
        .find(|link| tree.exists(link))
        .map(|link| Evidence::file(tree.show(&link), format!("{unit} enabled")))
}

/// The first of `units` that is enabled.
pub(crate) fn any_enabled(tree: &Tree, units: &[&str]) -> Option<Evidence> {
    units.iter().find_map(|u| enabled(tree, u))
}

/// One section's settings from a systemd `.conf` file and its drop-ins.
#[derive(Debug, Clone, Default)]
pub(crate) struct UnitConf {
    settings: Vec<(String, String, Evidence)>,
}

impl UnitConf {
    /// `main` (`etc/systemd/journald.conf`) then `main.d/*.conf`.
    pub fn load(tree: &Tree, main: &str, section: &str) -> Result<Self, BaselineError> {
        let mut conf = UnitConf::default();
        let mut files = vec![main.to_owned()];
        files.extend(tree.list_suffixed(&format!("{main}.d"), ".conf")?);
        for rel in files {
            if let Some(text) = tree.read(&rel)? {
                conf.parse_into(&text, &tree.show(&rel), section);
            }
        }
        Ok(conf)
    }

    #[cfg(test)]
    pub fn parse(text: &str, file: &str, section: &str) -> Self {
        let mut conf = UnitConf::default();
        conf.parse_into(text, file, section);
        conf
    }

    fn parse_into(&mut self, text: &str, file: &str, section: &str) {
        let mut current = String::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with(['#', ';']) {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                current = name.trim().to_owned();
                continue;
            }
            if current != section {
                continue;
            }
            if let Some((key, value)) = line.split_once('=') {
                let evidence = Evidence::at(file, line_number(i), line.to_owned());
                self.settings
                    .push((key.trim().to_owned(), value.trim().to_owned(), evidence));
            }
        }
    }

    /// The value in force: the last assignment.
    pub fn get(&self, key: &str) -> Option<(&str, &Evidence)> {
        self.settings
            .iter()
            .rev()
            .find(|(k, _, _)| k == key)
            .map(|(_, v, e)| (v.as_str(), e))
    }
}

/// A systemd time span (`180d`, `6month`, `1y 2w`, bare seconds) in seconds.
pub(crate) fn timespan(text: &str) -> Option<u64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(digits);
        let number: f64 = number.parse().ok()?;
        let tail = tail.trim_start();
        let unit_len = tail
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(tail.len());
        let (unit, after) = tail.split_at(unit_len);
        let scale = match unit {
            "" | "s" | "sec" | "second" | "seconds" => 1.0,
            "us" | "usec" => 1e-6,
            "ms" | "msec" => 1e-3,
            "m" | "min" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86_400.0,
            "w" | "week" | "weeks" => 604_800.0,
            "M" | "month" | "months" => 2_629_800.0,
            "y" | "year" | "years" => 31_557_600.0,
            _ => return None,
        };
        total += number * scale;
        rest = after;
    }
    (total.is_finite() && total >= 0.0 && total < u64::MAX as f64).then_some(total as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_and_last_assignment() {
        let c = UnitConf::parse(
            "[Journal]\n#MaxRetentionSec=1y\nMaxRetentionSec=1month\n[Other]\nMaxRetentionSec=9\n[Journal]\nMaxRetentionSec=200d\n",
            "/etc/systemd/journald.conf",
            "Journal",
        );
        let (v, e) = c.get("MaxRetentionSec").unwrap();
        assert_eq!(v, "200d");
        assert_eq!(e.line, Some(7));
    }

    #[test]
    fn time_spans() {
        assert_eq!(timespan("180d"), Some(180 * 86_400));
        assert_eq!(timespan("6month"), Some(6 * 2_629_800));
        assert_eq!(timespan("1y 2w"), Some(31_557_600 + 2 * 604_800));
        assert_eq!(timespan("30"), Some(30));
        assert_eq!(timespan("5m"), Some(300));
        assert_eq!(timespan("5 parsecs"), None);
        assert_eq!(timespan(""), None);
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(text in "(?s).{0,300}") {
            let _ = timespan(&text);
            let _ = UnitConf::parse(&text, "/f", "Journal").get("Storage");
        }
    }
}
