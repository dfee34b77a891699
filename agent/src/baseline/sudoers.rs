//! `/etc/sudoers` and what it includes, as sudo reads them: `#` starts a
//! comment (but `#include`, `#includedir` and `#` followed by a UID do
//! not), a trailing backslash continues a line, `@include`/`#include`
//! name a file (relative to the including file's directory),
//! `@includedir`/`#includedir` a directory whose files are read in order,
//! except names ending in `~` or containing a `.`.
//!
//! Only what the baseline judges is kept: the files read, and the user
//! specifications that grant every command without a password.

use super::login_defs::line_number;
use super::tree::Tree;
use super::{BaselineError, Evidence};

pub(crate) const MAIN: &str = "etc/sudoers";
const MAX_DEPTH: usize = 128;

/// A user specification granting `NOPASSWD: ALL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NopasswdAll {
    /// Users, `%groups` and aliases as written.
    pub who: Vec<String>,
    pub evidence: Evidence,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Sudoers {
    /// Every file read, relative to the root.
    pub files: Vec<String>,
    pub nopasswd_all: Vec<NopasswdAll>,
}

/// An include directive: a file or a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Include {
    File(String),
    Dir(String),
}

impl Sudoers {
    /// The policy of the inspected host; none without `/etc/sudoers`.
    pub fn load(tree: &Tree) -> Result<Option<Self>, BaselineError> {
        if tree.stat(MAIN)?.is_none() {
            return Ok(None);
        }
        let mut sudoers = Sudoers::default();
        sudoers.read(tree, MAIN, 0)?;
        Ok(Some(sudoers))
    }

    fn read(&mut self, tree: &Tree, rel: &str, depth: usize) -> Result<(), BaselineError> {
        if depth > MAX_DEPTH {
            return Err(BaselineError::IncludeDepth {
                path: tree.show(rel),
                limit: MAX_DEPTH,
            });
        }
        let Some(text) = tree.read(rel)? else {
            return Ok(());
        };
        self.files.push(rel.to_owned());
        let includes = self.parse_into(&text, &tree.show(rel));
        let here = rel.rsplit_once('/').map_or("", |(dir, _)| dir);
        for include in includes {
            match include {
                Include::File(path) => {
                    let target = tree.glob(&path, here);
                    for file in target {
                        self.read(tree, &file, depth + 1)?;
                    }
                }
                Include::Dir(path) => {
                    let dir = if path.starts_with('/') {
                        path.trim_start_matches('/').to_owned()
                    } else {
                        format!("{here}/{path}")
                    };
                    for name in tree.list(&dir)? {
                        if name.ends_with('~') || name.contains('.') {
                            continue;
                        }
                        self.read(tree, &format!("{dir}/{name}"), depth + 1)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// One file's text alone.
    #[cfg(test)]
    pub fn parse(text: &str, file: &str) -> Self {
        let mut sudoers = Sudoers::default();
        let _ = sudoers.parse_into(text, file);
        sudoers
    }

    fn parse_into(&mut self, text: &str, file: &str) -> Vec<Include> {
        let mut includes = Vec::new();
        let mut logical = String::new();
        let mut start = 1;
        for (i, raw) in text.lines().enumerate() {
            if logical.is_empty() {
                start = line_number(i);
            }
            if let Some(head) = raw.strip_suffix('\\') {
                logical.push_str(head);
                logical.push(' ');
                continue;
            }
            logical.push_str(raw);
            let line = std::mem::take(&mut logical);
            let line = line.trim();
            if let Some(include) = include_directive(line) {
                includes.push(include);
                continue;
            }
            let line = strip_comment(line).trim();
            if let Some(grant) = nopasswd_all(line) {
                self.nopasswd_all.push(NopasswdAll {
                    who: grant,
                    evidence: Evidence::at(file, start, line.to_owned()),
                });
            }
        }
        includes
    }
}

fn include_directive(line: &str) -> Option<Include> {
    let (word, rest) = line.split_once(char::is_whitespace)?;
    let path = rest.trim().trim_matches('"').to_owned();
    match word {
        "#include" | "@include" => Some(Include::File(path)),
        "#includedir" | "@includedir" => Some(Include::Dir(path)),
        _ => None,
    }
}

/// The line up to a comment; `#123` is a UID, not a comment.
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && !bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            return &line[..i];
        }
    }
    line
}

/// The users of a `users hosts = [(runas)] NOPASSWD: ALL` specification.
fn nopasswd_all(line: &str) -> Option<Vec<String>> {
    let first = line.split_whitespace().next()?;
    if first.starts_with("Defaults") || first.ends_with("_Alias") {
        return None;
    }
    let (left, right) = line.split_once('=')?;
    let at = right.find("NOPASSWD:")?;
    let commands = &right[at + "NOPASSWD:".len()..];
    // Later tags (SETENV:, NOEXEC:) may follow before the command list.
    let commands = commands.rsplit(':').next().unwrap_or(commands);
    if !commands.split(',').any(|c| c.trim() == "ALL") {
        return None;
    }
    let mut words: Vec<&str> = left.split_whitespace().collect();
    words.pop()?; // the host list
    let who: Vec<String> = words
        .join(" ")
        .split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect();
    (!who.is_empty()).then_some(who)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nopasswd_all_grants_are_found() {
        let s = Sudoers::parse(
            "Defaults env_reset\n# alice ALL=(ALL) NOPASSWD: ALL\nroot ALL=(ALL:ALL) ALL\n%wheel ALL=(ALL) NOPASSWD: ALL\ndeploy, ci ALL=(root) NOPASSWD: /usr/bin/systemctl\nbob ALL = (ALL) NOPASSWD: SETENV: \\\n   ALL\n#1001 ALL=(ALL) NOPASSWD:ALL\n",
            "/etc/sudoers",
        );
        let who: Vec<Vec<String>> = s.nopasswd_all.iter().map(|g| g.who.clone()).collect();
        assert_eq!(who, [vec!["%wheel"], vec!["bob"], vec!["#1001"]]);
        assert_eq!(s.nopasswd_all[1].evidence.line, Some(6));
    }

    #[test]
    fn include_directives() {
        assert_eq!(
            include_directive("@includedir /etc/sudoers.d"),
            Some(Include::Dir("/etc/sudoers.d".into()))
        );
        assert_eq!(
            include_directive("#include \"x\""),
            Some(Include::File("x".into()))
        );
        assert_eq!(include_directive("# include x"), None);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(text in "(?s)[a-zA-Z%#@=:,()\\\\ \n]{0,400}") {
            let _ = Sudoers::parse(&text, "/etc/sudoers");
        }
    }
}
