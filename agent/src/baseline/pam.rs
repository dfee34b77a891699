//! PAM stacks (`/etc/pam.d/*`) and the `name = value` files of PAM modules
//! (`pwquality.conf`, `faillock.conf`, `pwhistory.conf`), read as Linux-PAM
//! reads them.
//!
//! A stack line is `type control module arguments…`: `#` starts a comment
//! anywhere, a trailing backslash continues the line, a control or an
//! argument in `[…]` may hold spaces, and a type starting with `-` marks a
//! module that may be missing. `@include FILE` pulls in every line of
//! FILE; `TYPE include FILE` and `TYPE substack FILE` pull in its lines of
//! that type. A module's own file supplies defaults that the arguments on
//! its stack line override.

use std::collections::HashMap;

use super::login_defs::line_number;
use super::tree::Tree;
use super::{BaselineError, Evidence};

const PAM_DIR: &str = "etc/pam.d";
/// Nested includes followed before giving up (a loop).
const MAX_DEPTH: usize = 16;

/// Reads one included service file: (shown name, text), none if absent.
pub(super) type FileLoader<'l> =
    dyn FnMut(&str) -> Result<Option<(String, String)>, BaselineError> + 'l;

/// One module line of a stack, includes expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PamRule {
    /// auth, account, password or session.
    pub kind: String,
    pub control: String,
    /// The module's file name without its directory: `pam_faillock.so`.
    pub module: String,
    pub args: Vec<String>,
    pub file: String,
    pub line: u32,
    /// The line as written, for evidence.
    pub text: String,
}

impl PamRule {
    /// `key=value` argument.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .rev()
            .find_map(|a| a.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v))
    }

    /// A bare flag argument (`use_uid`, `sha512`).
    pub fn flag(&self, name: &str) -> bool {
        self.args.iter().any(|a| a == name)
    }

    pub fn evidence(&self) -> Evidence {
        Evidence::at(&self.file, self.line, self.text.clone())
    }
}

/// The lines of one type from one or more service files.
#[derive(Debug, Clone, Default)]
pub(crate) struct PamStack {
    /// The service files read, as shown.
    pub files: Vec<String>,
    pub rules: Vec<PamRule>,
}

impl PamStack {
    /// The `kind` lines of every file of `names` in `etc/pam.d` that exists
    /// (Debian's `common-*` or the RHEL family's `system-auth` and
    /// `password-auth`); none when none exists.
    pub fn load_first(
        tree: &Tree,
        names: &[&str],
        kind: &str,
    ) -> Result<Option<Self>, BaselineError> {
        let mut stack = PamStack::default();
        for name in names {
            let rel = format!("{PAM_DIR}/{name}");
            let Some(text) = tree.read(&rel)? else {
                continue;
            };
            stack.files.push(tree.show(&rel));
            let mut load = |file: &str| -> Result<Option<(String, String)>, BaselineError> {
                let rel = if file.starts_with('/') {
                    file.trim_start_matches('/').to_owned()
                } else {
                    format!("{PAM_DIR}/{file}")
                };
                Ok(tree.read(&rel)?.map(|text| (tree.show(&rel), text)))
            };
            stack.parse_into(&text, &tree.show(&rel), Some(kind), 0, &mut load)?;
        }
        Ok((!stack.files.is_empty()).then_some(stack))
    }

    /// One file's text alone, includes dropped.
    #[cfg(test)]
    pub fn parse(text: &str, file: &str, kind: Option<&str>) -> Self {
        let mut stack = PamStack::default();
        let _ = stack.parse_into(text, file, kind, 0, &mut |_| Ok(None));
        stack
    }

    pub(super) fn parse_into(
        &mut self,
        text: &str,
        file: &str,
        kind: Option<&str>,
        depth: usize,
        load: &mut FileLoader<'_>,
    ) -> Result<(), BaselineError> {
        if depth > MAX_DEPTH {
            return Err(BaselineError::IncludeDepth {
                path: file.to_owned(),
                limit: MAX_DEPTH,
            });
        }
        for (line, logical) in logical_lines(text) {
            let tokens = tokens(&logical);
            let Some(first) = tokens.first() else {
                continue;
            };
            if first == "@include" {
                if let Some((name, text)) = tokens.get(1).map(|f| load(f)).transpose()?.flatten() {
                    self.parse_into(&text, &name, kind, depth + 1, load)?;
                }
                continue;
            }
            let [rule_kind, control, module, args @ ..] = tokens.as_slice() else {
                continue;
            };
            let rule_kind = rule_kind.trim_start_matches('-').to_ascii_lowercase();
            if kind.is_some_and(|k| k != rule_kind) {
                continue;
            }
            if control == "include" || control == "substack" {
                if let Some((name, text)) = load(module)? {
                    self.parse_into(&text, &name, Some(&rule_kind), depth + 1, load)?;
                }
                continue;
            }
            self.rules.push(PamRule {
                kind: rule_kind,
                control: control.clone(),
                module: module.rsplit('/').next().unwrap_or(module).to_owned(),
                args: args.to_vec(),
                file: file.to_owned(),
                line,
                text: logical.split_whitespace().collect::<Vec<_>>().join(" "),
            });
        }
        Ok(())
    }

    /// The lines calling `module` (`pam_faillock.so`).
    pub fn module<'s>(&'s self, module: &'s str) -> impl Iterator<Item = &'s PamRule> + 's {
        self.rules.iter().filter(move |r| r.module == module)
    }

    /// The first line calling any of `modules`.
    pub fn first_of(&self, modules: &[&str]) -> Option<&PamRule> {
        self.rules
            .iter()
            .find(|r| modules.contains(&r.module.as_str()))
    }

    /// "no MODULE in FILES", as evidence.
    pub fn absent(&self, what: &str) -> Evidence {
        Evidence::note(format!("no {what} in {}", self.files.join(", ")))
    }
}

/// Lines with comments removed and backslash continuations joined, each
/// with the number of its first physical line.
fn logical_lines(text: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut start = 0;
    for (i, raw) in text.lines().enumerate() {
        if current.is_empty() {
            start = line_number(i);
        }
        let without_comment = raw.split('#').next().unwrap_or("");
        match without_comment.trim_end().strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            _ => {
                current.push_str(without_comment);
                if !current.trim().is_empty() {
                    out.push((start, current.trim().to_owned()));
                }
                current.clear();
            }
        }
    }
    if !current.trim().is_empty() {
        out.push((start, current.trim().to_owned()));
    }
    out
}

/// Whitespace-separated tokens, a token starting with `[` running to the
/// matching `]` (brackets dropped for arguments, kept for a control).
fn tokens(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&c) = chars.peek() else {
            return out;
        };
        let mut token = String::new();
        if c == '[' {
            chars.next();
            let control = out.len() == 1;
            if control {
                token.push('[');
            }
            while let Some(c) = chars.next() {
                match c {
                    '\\' if chars.peek() == Some(&']') => token.extend(chars.next()),
                    ']' => break,
                    c => token.push(c),
                }
            }
            if control {
                token.push(']');
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                token.push(c);
                chars.next();
            }
        }
        out.push(token);
    }
}

/// A module's `name = value` file: `#` comments, bare flags allowed, the
/// last line naming a setting wins.
#[derive(Debug, Clone, Default)]
pub(crate) struct ModuleConf {
    settings: HashMap<String, (Option<String>, Evidence)>,
}

impl ModuleConf {
    /// `main` after the `*.conf` files of `dir` (libpwquality reads the
    /// directory first, so the main file overrides it).
    pub fn load(tree: &Tree, main: &str, dir: Option<&str>) -> Result<Self, BaselineError> {
        let mut conf = ModuleConf::default();
        let mut files = match dir {
            Some(dir) => tree.list_suffixed(dir, ".conf")?,
            None => Vec::new(),
        };
        files.push(main.to_owned());
        for rel in files {
            if let Some(text) = tree.read(&rel)? {
                conf.parse_into(&text, &tree.show(&rel));
            }
        }
        Ok(conf)
    }

    /// One file's text alone.
    pub fn parse(text: &str, file: &str) -> Self {
        let mut conf = ModuleConf::default();
        conf.parse_into(text, file);
        conf
    }

    fn parse_into(&mut self, text: &str, file: &str) {
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (key, value) = match line.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim().to_owned())),
                None => (line, None),
            };
            let evidence = Evidence::at(file, line_number(i), line.to_owned());
            self.settings.insert(key.to_owned(), (value, evidence));
        }
    }

    pub fn get(&self, key: &str) -> Option<(Option<&str>, &Evidence)> {
        self.settings.get(key).map(|(v, e)| (v.as_deref(), e))
    }
}

/// A module setting as it takes effect: the stack line's argument, else
/// the module's file, else none.
pub(crate) fn effective(
    rule: &PamRule,
    conf: &ModuleConf,
    key: &str,
) -> Option<(String, Evidence)> {
    if let Some(value) = rule.arg(key) {
        return Some((value.to_owned(), rule.evidence()));
    }
    let (value, evidence) = conf.get(key)?;
    Some((value?.to_owned(), evidence.clone()))
}

/// A numeric module setting as it takes effect.
pub(crate) fn effective_number(
    rule: &PamRule,
    conf: &ModuleConf,
    key: &str,
) -> Option<(i64, Evidence)> {
    let (value, evidence) = effective(rule, conf, key)?;
    Some((value.trim().parse().ok()?, evidence))
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMON_PASSWORD: &str = "\
# here are the per-package modules
password\trequisite\t\t\tpam_pwquality.so retry=3 minlen=12 \\
   dcredit=-1
password\t[success=1 default=ignore]\tpam_unix.so obscure use_authtok try_first_pass yescrypt remember=5 # trailing
password requisite pam_deny.so
-password optional /usr/lib/x86_64-linux-gnu/security/pam_gnome_keyring.so [arg with spaces]
auth required pam_faillock.so
";

    #[test]
    fn stack_lines_controls_continuations_and_kinds() {
        let s = PamStack::parse(
            COMMON_PASSWORD,
            "/etc/pam.d/common-password",
            Some("password"),
        );
        assert_eq!(s.rules.len(), 4);
        let q = &s.rules[0];
        assert_eq!(q.arg("minlen"), Some("12"));
        assert_eq!(q.arg("dcredit"), Some("-1"));
        assert_eq!(q.line, 2);
        let unix = &s.rules[1];
        assert_eq!(unix.control, "[success=1 default=ignore]");
        assert!(unix.flag("yescrypt"));
        assert_eq!(unix.line, 4);
        assert_eq!(
            unix.evidence().to_string(),
            "/etc/pam.d/common-password:4: password [success=1 default=ignore] pam_unix.so obscure use_authtok try_first_pass yescrypt remember=5"
        );
        let keyring = &s.rules[3];
        assert_eq!(keyring.module, "pam_gnome_keyring.so");
        assert_eq!(keyring.args, ["arg with spaces"]);
    }

    #[test]
    fn includes_take_lines_of_their_kind() {
        let mut stack = PamStack::default();
        let mut load = |name: &str| -> Result<Option<(String, String)>, BaselineError> {
            Ok((name == "common-auth").then(|| {
                (
                    "/etc/pam.d/common-auth".to_owned(),
                    "auth required pam_faillock.so preauth\nsession optional pam_x.so\n".to_owned(),
                )
            }))
        };
        stack
            .parse_into(
                "@include common-auth\nauth substack common-auth\naccount include missing\n",
                "/etc/pam.d/sshd",
                None,
                0,
                &mut load,
            )
            .unwrap();
        let kinds: Vec<&str> = stack.rules.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(kinds, ["auth", "session", "auth"]);
    }

    #[test]
    fn module_conf_last_wins_and_arguments_override() {
        let conf = ModuleConf::parse(
            "# minlen = 20\nminlen = 8\nminlen=14\neven_deny_root\n",
            "/etc/security/pwquality.conf",
        );
        let (v, e) = conf.get("minlen").unwrap();
        assert_eq!(v, Some("14"));
        assert_eq!(e.line, Some(3));
        assert_eq!(conf.get("even_deny_root").unwrap().0, None);
        let s = PamStack::parse(COMMON_PASSWORD, "/p", None);
        assert_eq!(
            effective_number(&s.rules[0], &conf, "minlen").unwrap().0,
            12
        );
        assert_eq!(
            effective_number(&s.rules[1], &conf, "minlen").unwrap().0,
            14
        );
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(text in "(?s)[a-z_@\\[\\]=#\\\\ \t\n.-]{0,400}") {
            let s = PamStack::parse(&text, "/p", None);
            let c = ModuleConf::parse(&text, "/c");
            for r in &s.rules {
                let _ = effective_number(r, &c, "minlen");
            }
        }
    }
}
