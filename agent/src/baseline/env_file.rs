//! Shell-style `KEY=value` files: `/etc/default/*`, `ufw.conf`,
//! `firewalld.conf`. `#` lines are comments, values may be quoted, the
//! last assignment wins (as sourcing the file would leave it).

use super::login_defs::line_number;
use super::tree::Tree;
use super::{BaselineError, Evidence};

#[derive(Debug, Clone, Default)]
pub(crate) struct EnvFile {
    settings: Vec<(String, String, Evidence)>,
}

impl EnvFile {
    /// The file's assignments; empty when it does not exist.
    pub fn load(tree: &Tree, rel: &str) -> Result<Self, BaselineError> {
        Ok(tree
            .read(rel)?
            .map(|text| EnvFile::parse(&text, &tree.show(rel)))
            .unwrap_or_default())
    }

    pub fn parse(text: &str, file: &str) -> Self {
        let mut settings = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim();
            let value = ['"', '\'']
                .iter()
                .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
                .unwrap_or(value);
            settings.push((
                key.trim().to_owned(),
                value.to_owned(),
                Evidence::at(file, line_number(i), line.to_owned()),
            ));
        }
        EnvFile { settings }
    }

    /// The value in force and where it was set.
    pub fn get(&self, key: &str) -> Option<(&str, &Evidence)> {
        self.settings
            .iter()
            .rev()
            .find(|(k, _, _)| k == key)
            .map(|(_, v, e)| (v.as_str(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_and_last_assignment() {
        let f = EnvFile::parse(
            "# ENABLED=no\nENABLED=no\nENABLED=yes\nDEFAULT_INPUT_POLICY=\"DROP\"\n",
            "/etc/ufw/ufw.conf",
        );
        let (v, e) = f.get("ENABLED").unwrap();
        assert_eq!((v, e.line), ("yes", Some(3)));
        assert_eq!(f.get("DEFAULT_INPUT_POLICY").unwrap().0, "DROP");
        assert!(f.get("MISSING").is_none());
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(text in "(?s).{0,300}") {
            let _ = EnvFile::parse(&text, "/f").get("A");
        }
    }
}
