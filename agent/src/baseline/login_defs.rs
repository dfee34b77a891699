//! `/etc/login.defs`, read as shadow-utils' `getdef.c` reads it: one
//! `NAME value` per line, `#` lines and blank lines skipped, a value in
//! double quotes unquoted, and the last line naming a setting wins.
//! Numbers are C's `strtol` with base 0: `0x1f` is hex and `027` octal,
//! which is how `UMASK 027` means what it says.

use std::collections::HashMap;

use super::Evidence;

/// One setting and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Setting {
    pub value: String,
    pub line: u32,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct LoginDefs {
    file: String,
    settings: HashMap<String, Setting>,
}

impl LoginDefs {
    pub fn parse(text: &str, file: &str) -> Self {
        let mut settings = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, value) = line
                .split_once(|c: char| c.is_ascii_whitespace())
                .unwrap_or((line, ""));
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            settings.insert(
                name.to_owned(),
                Setting {
                    value: value.to_owned(),
                    line: line_number(i),
                },
            );
        }
        LoginDefs {
            file: file.to_owned(),
            settings,
        }
    }

    pub fn get(&self, name: &str) -> Option<&Setting> {
        self.settings.get(name)
    }

    /// The setting as a number, with what was seen; a value that is not a
    /// number counts as unset, as `getdef_num` returns its default then.
    pub fn number(&self, name: &str) -> Option<(i64, Evidence)> {
        let setting = self.get(name)?;
        let value = strtol(&setting.value)?;
        Some((value, self.evidence(name)?))
    }

    /// `NAME value` at its line.
    pub fn evidence(&self, name: &str) -> Option<Evidence> {
        let s = self.get(name)?;
        Some(Evidence::at(
            &self.file,
            s.line,
            format!("{name} {}", s.value),
        ))
    }

    /// "NAME not set", naming the file.
    pub fn unset(&self, name: &str) -> Evidence {
        Evidence::file(&self.file, format!("{name} not set"))
    }
}

/// C's `strtol(text, &end, 0)` with the whole text required to be a number.
pub(crate) fn strtol(text: &str) -> Option<i64> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (radix, digits) = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        (16, hex)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    let value = i64::from_str_radix(digits, radix).ok()?;
    Some(if negative { -value } else { value })
}

/// 1-based line number from an enumerate index, saturating.
pub(crate) fn line_number(index: usize) -> u32 {
    u32::try_from(index).map_or(u32::MAX, |i| i.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_setting_wins_and_comments_are_skipped() {
        let defs = LoginDefs::parse(
            "# PASS_MAX_DAYS 30\nPASS_MAX_DAYS\t99999\n  PASS_MAX_DAYS 90  \nUMASK \"027\"\n",
            "/etc/login.defs",
        );
        let (days, ev) = defs.number("PASS_MAX_DAYS").unwrap();
        assert_eq!(days, 90);
        assert_eq!(ev.to_string(), "/etc/login.defs:3: PASS_MAX_DAYS 90");
        assert_eq!(defs.number("UMASK").unwrap().0, 0o27);
        assert!(defs.get("PASS_MIN_DAYS").is_none());
    }

    #[test]
    fn numbers_follow_strtol_base_zero() {
        assert_eq!(strtol("027"), Some(0o27));
        assert_eq!(strtol("0x1F"), Some(31));
        assert_eq!(strtol("-1"), Some(-1));
        assert_eq!(strtol("0"), Some(0));
        assert_eq!(strtol("12days"), None);
        assert_eq!(strtol("--1"), None);
        assert_eq!(strtol(""), None);
        assert_eq!(strtol("99999999999999999999999"), None);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(text in "(?s).{0,400}") {
            let defs = LoginDefs::parse(&text, "/etc/login.defs");
            for name in ["PASS_MAX_DAYS", "UMASK", "ENCRYPT_METHOD"] {
                let _ = defs.number(name);
            }
            let _ = strtol(&text);
        }
    }
}
