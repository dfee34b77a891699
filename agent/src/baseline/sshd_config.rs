//! `/etc/ssh/sshd_config`, read as OpenSSH's `servconf.c` reads it.
//!
//! Keywords are case-insensitive and may be followed by `=`; arguments may
//! be double-quoted; a line or a word starting with `#` is a comment. For
//! most keywords the first value obtained wins, so a later line (or a
//! later file) cannot loosen an earlier one — which is why distributions
//! put `Include /etc/ssh/sshd_config.d/*.conf` at the top. `Include`
//! expands its glob in sorted order, relative names from `/etc/ssh`, in
//! place, at most 16 levels deep. Lines after `Match` (up to `Match all`
//! or the end of the file that opened it) apply only to some connections,
//! so they do not count for the host-wide value.

use super::login_defs::line_number;
use super::tree::{Loader, Tree};
use super::{BaselineError, Evidence};

/// The main file, relative to the root.
pub(crate) const MAIN: &str = "etc/ssh/sshd_config";
/// OpenSSH's limit on nested `Include`s.
const MAX_DEPTH: usize = 16;

/// One keyword line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The keyword, lower-cased.
    pub keyword: String,
    /// The keyword as written.
    pub name: String,
    pub args: Vec<String>,
    pub file: String,
    pub line: u32,
    /// Inside a `Match` block.
    pub conditional: bool,
}

impl Entry {
    pub fn value(&self) -> &str {
        self.args.first().map_or("", String::as_str)
    }

    pub fn evidence(&self) -> Evidence {
        Evidence::at(
            &self.file,
            self.line,
            format!("{} {}", self.name, self.args.join(" ")),
        )
    }
}

/// Every keyword line of the configuration, includes expanded in place.
#[derive(Debug, Clone, Default)]
pub(crate) struct SshdConfig {
    pub entries: Vec<Entry>,
}

impl SshdConfig {
    /// The configuration of the inspected host; none without a main file.
    pub fn load(tree: &Tree) -> Result<Option<Self>, BaselineError> {
        let Some(text) = tree.read(MAIN)? else {
            return Ok(None);
        };
        let mut loader = |pattern: &str| -> Result<Vec<(String, String)>, BaselineError> {
            let mut files = Vec::new();
            for rel in tree.glob(pattern, "etc/ssh") {
                if let Some(text) = tree.read(&rel)? {
                    files.push((tree.show(&rel), text));
                }
            }
            Ok(files)
        };
        let mut config = SshdConfig::default();
        config.parse_into(&text, &tree.show(MAIN), false, 0, &mut loader)?;
        Ok(Some(config))
    }

    /// One file's text alone, its `Include`s kept as plain entries.
    #[cfg(test)]
    pub fn parse(text: &str, file: &str) -> Self {
        let mut config = SshdConfig::default();
        let mut none = |_: &str| Ok(Vec::new());
        let _ = config.parse_into(text, file, false, 0, &mut none);
        config
    }

    pub(super) fn parse_into(
        &mut self,
        text: &str,
        file: &str,
        mut conditional: bool,
        depth: usize,
        load: &mut Loader<'_>,
    ) -> Result<(), BaselineError> {
        if depth > MAX_DEPTH {
            return Err(BaselineError::IncludeDepth {
                path: file.to_owned(),
                limit: MAX_DEPTH,
            });
        }
        for (i, raw) in text.lines().enumerate() {
            let Some((name, args)) = split_line(raw) else {
                continue;
            };
            let keyword = name.to_ascii_lowercase();
            let entry = Entry {
                keyword: keyword.clone(),
                name,
                args,
                file: file.to_owned(),
                line: line_number(i),
                conditional,
            };
            match keyword.as_str() {
                "match" => {
                    conditional =
                        !(entry.args.len() == 1 && entry.args[0].eq_ignore_ascii_case("all"));
                    self.entries.push(entry);
                }
                "include" => {
                    let patterns = entry.args.clone();
                    self.entries.push(entry);
                    for pattern in &patterns {
                        for (name, text) in load(pattern)? {
                            // The Match state of the includer is restored
                            // after each file, as servconf.c does.
                            self.parse_into(&text, &name, conditional, depth + 1, load)?;
                        }
                    }
                }
                _ => self.entries.push(entry),
            }
        }
        Ok(())
    }

    /// The host-wide value of a keyword: its first line outside `Match`.
    pub fn get(&self, keyword: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| !e.conditional && e.keyword.eq_ignore_ascii_case(keyword))
    }

    /// Every host-wide line of a keyword that accumulates (`AllowUsers`).
    pub fn all(&self, keyword: &str) -> impl Iterator<Item = &Entry> + '_ {
        let keyword = keyword.to_ascii_lowercase();
        self.entries
            .iter()
            .filter(move |e| !e.conditional && e.keyword == keyword)
    }
}

/// Keyword and arguments of a line, none for blank and comment lines.
fn split_line(raw: &str) -> Option<(String, Vec<String>)> {
    let line = raw.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let (name, rest) = line.split_at(end);
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest);
    Some((name.to_owned(), words(rest)))
}

/// `argv_split`: whitespace-separated words, double quotes grouping, a
/// backslash escaping the next character, a word starting with `#` ending
/// the line.
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.peek() {
            None | Some('#') => return out,
            _ => {}
        }
        let mut word = String::new();
        let mut quoted = false;
        while let Some(c) = chars.next() {
            match c {
                '"' => quoted = !quoted,
                '\\' => word.extend(chars.next()),
                c if c.is_whitespace() && !quoted => break,
                c => word.push(c),
            }
        }
        out.push(word);
    }
}

/// sshd's time format: seconds, or number-unit pairs (`1h30m`, `2m`);
/// units s, m, h, d, w in either case.
pub(crate) fn seconds(text: &str) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return None,
        };
        let n: u64 = number.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        number.clear();
    }
    if !number.is_empty() {
        total = total.checked_add(number.parse().ok()?)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_value_wins_and_match_blocks_do_not_count() {
        let c = SshdConfig::parse(
            "# PermitRootLogin yes\nPermitRootLogin=no\npermitrootlogin yes\nMatch User backup\n  X11Forwarding yes\nMatch all\nX11Forwarding no\n",
            "/etc/ssh/sshd_config",
        );
        let root = c.get("PermitRootLogin").unwrap();
        assert_eq!(root.value(), "no");
        assert_eq!(
            root.evidence().to_string(),
            "/etc/ssh/sshd_config:2: PermitRootLogin no"
        );
        assert_eq!(c.get("x11forwarding").unwrap().line, 7);
    }

    #[test]
    fn includes_expand_in_place_and_restore_the_match_state() {
        let mut load = |pattern: &str| -> Result<Vec<(String, String)>, BaselineError> {
            Ok(match pattern {
                "sshd_config.d/*.conf" => vec![
                    ("/a.conf".into(), "Match User x\nMaxAuthTries 9\n".into()),
                    ("/b.conf".into(), "MaxAuthTries 3\n".into()),
                ],
                _ => Vec::new(),
            })
        };
        let mut c = SshdConfig::default();
        c.parse_into(
            "Include sshd_config.d/*.conf\nMaxAuthTries 6\n",
            "/etc/ssh/sshd_config",
            false,
            0,
            &mut load,
        )
        .unwrap();
        let tries = c.get("MaxAuthTries").unwrap();
        assert_eq!((tries.value(), tries.file.as_str()), ("3", "/b.conf"));
    }

    #[test]
    fn an_include_loop_is_an_error_not_a_stack_overflow() {
        let mut load = |_: &str| {
            Ok(vec![(
                "/loop.conf".to_owned(),
                "Include loop.conf\n".to_owned(),
            )])
        };
        let mut c = SshdConfig::default();
        let err = c
            .parse_into(
                "Include loop.conf\n",
                "/etc/ssh/sshd_config",
                false,
                0,
                &mut load,
            )
            .unwrap_err();
        assert!(err.to_string().contains("nest deeper"), "{err}");
    }

    #[test]
    fn words_quotes_and_trailing_comments() {
        assert_eq!(words(r#"a "b c" d\ e # comment"#), ["a", "b c", "d e"]);
        assert_eq!(
            split_line("Ciphers = aes256-ctr,aes128-cbc").unwrap().1,
            ["aes256-ctr,aes128-cbc"]
        );
    }

    #[test]
    fn times_in_sshd_format() {
        assert_eq!(seconds("120"), Some(120));
        assert_eq!(seconds("1m30s"), Some(90));
        assert_eq!(seconds("1h"), Some(3600));
        assert_eq!(seconds("5x"), None);
        assert_eq!(seconds("m"), None);
        assert_eq!(seconds("99999999999999999999w"), None);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(text in "(?s).{0,400}") {
            let c = SshdConfig::parse(&text, "/etc/ssh/sshd_config");
            let _ = c.get("PermitRootLogin");
            let _ = seconds(&text);
        }
    }
}
