//! `/etc/logrotate.conf` and what it includes, as logrotate reads them:
//! top-level directives set the defaults for the blocks that follow them
//! (in the same file or in an included one), a block (`PATHS { … }`)
//! starts from a copy of those defaults, `#` lines are comments, scripts
//! (`postrotate` … `endscript`) are skipped, and `include` of a directory
//! reads its files in order, skipping backups and package leftovers.
//!
//! Only what retention depends on is kept: the period, `rotate`, `maxage`.

use super::login_defs::line_number;
use super::tree::{wildcard, Loader, Tree};
use super::{BaselineError, Evidence};

pub(crate) const MAIN: &str = "etc/logrotate.conf";
const MAX_DEPTH: usize = 16;
/// Extensions logrotate skips in an included directory (its `tabooext`).
const TABOO: &[&str] = &[
    ".rpmsave",
    ".rpmorig",
    "~",
    ",v",
    ".disabled",
    ".dpkg-old",
    ".dpkg-dist",
    ".dpkg-new",
    ".cfsaved",
    ".ucf-old",
    ".ucf-dist",
    ".ucf-new",
    ".rpmnew",
    ".swp",
    ".rhn-cfg-tmp-*",
];

/// The directives that decide how long rotated logs are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Retention {
    /// Days per rotation (`daily` 1, `weekly` 7, `monthly` 30, `yearly` 365).
    pub period: Option<(u32, Evidence)>,
    pub rotate: Option<(i64, Evidence)>,
    pub maxage: Option<(i64, Evidence)>,
}

impl Retention {
    /// Days of logs kept: rotations × period, capped by `maxage`; none
    /// when that cannot be told (no period), `u64::MAX` for `rotate -1`.
    pub fn days(&self) -> Option<u64> {
        let period = u64::from(self.period.as_ref()?.0);
        let rotate = self.rotate.as_ref().map_or(0, |(n, _)| *n);
        let kept = if rotate < 0 {
            u64::MAX
        } else {
            period.saturating_mul(rotate.unsigned_abs())
        };
        Some(match &self.maxage {
            Some((age, _)) if *age > 0 => kept.min(age.unsigned_abs()),
            _ => kept,
        })
    }

    pub fn evidence(&self) -> Vec<Evidence> {
        [
            &self.period.as_ref().map(|p| &p.1),
            &self.rotate.as_ref().map(|r| &r.1),
            &self.maxage.as_ref().map(|m| &m.1),
        ]
        .into_iter()
        .filter_map(|e| (*e).cloned())
        .collect()
    }

    /// Applies one directive; false when it is not a retention directive.
    fn apply(&mut self, words: &[&str], evidence: Evidence) -> bool {
        let number = || words.get(1).and_then(|n| n.parse::<i64>().ok());
        match words.first().copied() {
            Some("hourly") => self.period = Some((1, evidence)),
            Some("daily") => self.period = Some((1, evidence)),
            Some("weekly") => self.period = Some((7, evidence)),
            Some("monthly") => self.period = Some((30, evidence)),
            Some("yearly") => self.period = Some((365, evidence)),
            Some("rotate") => {
                if let Some(n) = number() {
                    self.rotate = Some((n, evidence));
                }
            }
            Some("maxage") => {
                if let Some(n) = number() {
                    self.maxage = Some((n, evidence));
                }
            }
            _ => return false,
        }
        true
    }
}

/// A `PATHS { … }` block.
#[derive(Debug, Clone)]
pub(crate) struct Block {
    pub paths: Vec<String>,
    pub retention: Retention,
    pub evidence: Evidence,
}

impl Block {
    /// The block rotates `path` (literal or glob match).
    pub fn covers(&self, path: &str) -> bool {
        self.paths
            .iter()
            .any(|p| wildcard(p.as_bytes(), path.as_bytes()))
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Logrotate {
    pub global: Retention,
    pub blocks: Vec<Block>,
}

impl Logrotate {
    /// The configuration of the inspected host; none without its main file.
    pub fn load(tree: &Tree) -> Result<Option<Self>, BaselineError> {
        let Some(text) = tree.read(MAIN)? else {
            return Ok(None);
        };
        let mut config = Logrotate::default();
        let mut load = |path: &str| -> Result<Vec<(String, String)>, BaselineError> {
            let rel = path.trim_start_matches('/');
            let mut files = Vec::new();
            let targets = match tree.stat(rel)? {
                Some(s) if s.is_dir => tree
                    .list(rel)?
                    .into_iter()
                    .filter(|n| {
                        !n.starts_with('.')
                            && !TABOO
                                .iter()
                                .any(|t| wildcard(format!("*{t}").as_bytes(), n.as_bytes()))
                    })
                    .map(|n| format!("{rel}/{n}"))
                    .collect(),
                Some(_) => vec![rel.to_owned()],
                None => Vec::new(),
            };
            for target in targets {
                if let Some(text) = tree.read(&target)? {
                    files.push((tree.show(&target), text));
                }
            }
            Ok(files)
        };
        config.parse_into(&text, &tree.show(MAIN), 0, &mut load)?;
        Ok(Some(config))
    }

    /// One file's text alone, includes dropped.
    #[cfg(test)]
    pub fn parse(text: &str, file: &str) -> Self {
        let mut config = Logrotate::default();
        let _ = config.parse_into(text, file, 0, &mut |_| Ok(Vec::new()));
        config
    }

    fn parse_into(
        &mut self,
        text: &str,
        file: &str,
        depth: usize,
        load: &mut Loader<'_>,
    ) -> Result<(), BaselineError> {
        if depth > MAX_DEPTH {
            return Err(BaselineError::IncludeDepth {
                path: file.to_owned(),
                limit: MAX_DEPTH,
            });
        }
        let mut block: Option<Block> = None;
        // Paths may stand on their own lines before the `{` line.
        let mut pending: Vec<String> = Vec::new();
        let mut in_script = false;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if in_script {
                in_script = line != "endscript";
                continue;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let evidence = Evidence::at(file, line_number(i), line.to_owned());
            if let Some(open) = block.as_mut() {
                // The block ends at `}`; a directive may share its line.
                let (body, closes) = match line.strip_suffix('}') {
                    Some(body) => (body.trim(), true),
                    None => (line, false),
                };
                let words: Vec<&str> = body.split_whitespace().collect();
                if is_script(words.first().copied()) {
                    in_script = true;
                } else if !words.is_empty() {
                    open.retention.apply(&words, evidence);
                }
                if closes {
                    self.blocks.extend(block.take());
                }
                continue;
            }
            if let Some(at) = line.find('{') {
                let (head, rest) = (&line[..at], &line[at + 1..]);
                pending.extend(
                    head.split_whitespace()
                        .map(|p| p.trim_matches('"').to_owned()),
                );
                let paths = std::mem::take(&mut pending);
                let header = Evidence::at(file, line_number(i), format!("{} {{", paths.join(" ")));
                let mut open = Block {
                    paths,
                    retention: self.global.clone(),
                    evidence: header,
                };
                // `PATH { directive }` on one line.
                let (body, closes) = match rest.trim().strip_suffix('}') {
                    Some(body) => (body, true),
                    None => (rest, false),
                };
                let words: Vec<&str> = body.split_whitespace().collect();
                if !words.is_empty() {
                    open.retention.apply(&words, evidence);
                }
                if closes {
                    self.blocks.push(open);
                } else {
                    block = Some(open);
                }
                continue;
            }
            if line.starts_with(['/', '"', '~']) {
                pending.extend(
                    line.split_whitespace()
                        .map(|p| p.trim_matches('"').to_owned()),
                );
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.first() == Some(&"include") {
                if let Some(path) = words.get(1) {
                    for (name, text) in load(path.trim_matches('"'))? {
                        self.parse_into(&text, &name, depth + 1, load)?;
                    }
                }
                continue;
            }
            self.global.apply(&words, evidence);
        }
        Ok(())
    }

    /// The block that rotates `path`, the last one given winning as in
    /// logrotate (which refuses duplicates; the last is what an edit meant).
    pub fn block_for(&self, path: &str) -> Option<&Block> {
        self.blocks.iter().rev().find(|b| b.covers(path))
    }
}

fn is_script(word: Option<&str>) -> bool {
    matches!(
        word,
        Some("postrotate" | "prerotate" | "firstaction" | "lastaction" | "preremove")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = "\
weekly
rotate 4
# rotate 52
/var/log/wtmp {
    monthly
    rotate 1
}
/var/log/syslog
/var/log/auth.log
{
    rotate 26
    postrotate
        rotate 1
    endscript
}
";

    #[test]
    fn blocks_inherit_globals_and_skip_scripts() {
        let c = Logrotate::parse(CONF, "/etc/logrotate.conf");
        let wtmp = c.block_for("/var/log/wtmp").unwrap();
        assert_eq!(wtmp.retention.days(), Some(30));
        // Paths on their own lines before a lone `{` share the block.
        assert!(c.block_for("/var/log/syslog").is_some());
        let auth = c.block_for("/var/log/auth.log").unwrap();
        assert_eq!(auth.retention.days(), Some(26 * 7));
        assert_eq!(auth.retention.rotate.as_ref().unwrap().1.line, Some(11));
        assert_eq!(c.global.days(), Some(28));
    }

    #[test]
    fn maxage_caps_and_minus_one_keeps_forever() {
        let c = Logrotate::parse(
            "daily\nrotate -1\n/var/log/messages { maxage 30 }\n/var/log/secure {\n}\n",
            "/f",
        );
        assert_eq!(
            c.block_for("/var/log/messages").unwrap().retention.days(),
            Some(30)
        );
        assert_eq!(
            c.block_for("/var/log/secure").unwrap().retention.days(),
            Some(u64::MAX)
        );
        assert!(c.block_for("/var/log/other").is_none());
    }

    #[test]
    fn glob_paths_cover_files() {
        let c = Logrotate::parse("/var/log/*.log {\nweekly\nrotate 30\n}\n", "/f");
        assert_eq!(
            c.block_for("/var/log/auth.log").unwrap().retention.days(),
            Some(210)
        );
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(text in "(?s)[a-z0-9/{}*# \n-]{0,400}") {
            let c = Logrotate::parse(&text, "/f");
            let _ = c.block_for("/var/log/syslog").map(|b| b.retention.days());
        }
    }
}
