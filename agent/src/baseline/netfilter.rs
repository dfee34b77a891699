//! Firewall rulesets as saved for boot: nftables' `nft -f` files
//! (`/etc/nftables.conf` and what it includes) and `iptables-save` output
//! (`/etc/iptables/rules.v4`, `/etc/sysconfig/iptables`).
//!
//! nft files are read as nft reads them: `#` comments, statements ended by
//! a newline or `;`, blocks in braces, `include "glob"` in place. What is
//! kept is what the baseline judges: each chain's hook, policy and last
//! rule, and every rule's text (for connection limits).

use super::login_defs::line_number;
use super::tree::{Loader, Tree};
use super::{BaselineError, Evidence};

const MAX_DEPTH: usize = 16;

/// One chain of a ruleset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Chain {
    /// The table's family (`inet`, `ip`, `ip6`…), empty for iptables.
    pub family: String,
    pub name: String,
    /// `input`, `forward`, `output`… for a base chain.
    pub hook: Option<String>,
    pub policy: Option<(String, Evidence)>,
    pub last_rule: Option<(String, Evidence)>,
}

impl Chain {
    /// Filters packets addressed to the host: drops by default, or ends
    /// with a rule that drops or rejects whatever came that far.
    pub fn filters_input(&self) -> bool {
        let input = self.hook.as_deref() == Some("input")
            && matches!(self.family.as_str(), "" | "inet" | "ip" | "ip6");
        let policy_drops = self.policy.as_ref().is_some_and(|(p, _)| {
            p.eq_ignore_ascii_case("drop") || p.eq_ignore_ascii_case("reject")
        });
        input && (policy_drops || self.last_rule.as_ref().is_some_and(|(r, _)| catch_all(r)))
    }

    /// The evidence that decided: policy, else last rule.
    pub fn evidence(&self) -> Vec<Evidence> {
        self.policy
            .iter()
            .chain(self.last_rule.iter())
            .map(|(_, e)| e.clone())
            .collect()
    }
}

/// An unconditional drop or reject: nft's `drop`, `counter reject with …`,
/// iptables' `-A INPUT -j REJECT --reject-with …`.
fn catch_all(rule: &str) -> bool {
    let words: Vec<&str> = rule.split_whitespace().collect();
    if words.first() == Some(&"-A") {
        // iptables: only the chain, the target and the target's options.
        let target = words
            .iter()
            .position(|w| *w == "-j")
            .and_then(|i| words.get(i + 1));
        let conditions = words.iter().skip(2).take_while(|w| **w != "-j").count();
        return conditions == 0 && matches!(target, Some(&"DROP" | &"REJECT"));
    }
    let Some(at) = words.iter().position(|w| matches!(*w, "drop" | "reject")) else {
        return false;
    };
    // Only counting and logging may come before the verdict.
    words[..at].iter().all(|w| {
        matches!(*w, "counter" | "log" | "prefix" | "level")
            || w.starts_with('"')
            || w.ends_with('"')
    })
}

/// A ruleset: its chains and every rule's text.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ruleset {
    pub files: Vec<String>,
    pub chains: Vec<Chain>,
    pub rules: Vec<(String, Evidence)>,
}

impl Ruleset {
    /// The nft file `rel` with its includes; none when it does not exist.
    pub fn load_nft(tree: &Tree, rel: &str) -> Result<Option<Self>, BaselineError> {
        let Some(text) = tree.read(rel)? else {
            return Ok(None);
        };
        let mut set = Ruleset::default();
        let mut load = |pattern: &str| -> Result<Vec<(String, String)>, BaselineError> {
            let mut files = Vec::new();
            for file in tree.glob(pattern, "etc") {
                if let Some(text) = tree.read(&file)? {
                    files.push((tree.show(&file), text));
                }
            }
            Ok(files)
        };
        set.files.push(tree.show(rel));
        set.parse_nft(&text, &tree.show(rel), &mut Vec::new(), 0, &mut load)?;
        Ok(Some(set))
    }

    /// One nft file alone, includes dropped.
    #[cfg(test)]
    pub fn nft(text: &str, file: &str) -> Self {
        let mut set = Ruleset::default();
        let _ = set.parse_nft(text, file, &mut Vec::new(), 0, &mut |_| Ok(Vec::new()));
        set
    }

    fn parse_nft(
        &mut self,
        text: &str,
        file: &str,
        stack: &mut Vec<Block>,
        depth: usize,
        load: &mut Loader<'_>,
    ) -> Result<(), BaselineError> {
        if depth > MAX_DEPTH {
            return Err(BaselineError::IncludeDepth {
                path: file.to_owned(),
                limit: MAX_DEPTH,
            });
        }
        for (line, token) in nft_tokens(text) {
            let evidence = || Evidence::at(file, line, token.clone());
            match token.as_str() {
                "{" => {
                    let header = stack
                        .last_mut()
                        .and_then(|b| b.pending.take())
                        .unwrap_or_default();
                    let block = Block::open(&header, stack.last());
                    stack.push(block);
                }
                "}" => {
                    if let Some(mut block) = stack.pop() {
                        if let Some(chain) = block.chain.take() {
                            self.chains.push(chain);
                        }
                    }
                }
                _ => {
                    let words: Vec<&str> = token.split_whitespace().collect();
                    if words.first() == Some(&"include") {
                        let pattern = words.get(1).map_or("", |p| p.trim_matches('"'));
                        for (name, text) in load(pattern)? {
                            self.files.push(name.clone());
                            self.parse_nft(&text, &name, stack, depth + 1, load)?;
                        }
                        continue;
                    }
                    if stack.is_empty() {
                        stack.push(Block::default());
                    }
                    let Some(block) = stack.last_mut() else {
                        continue;
                    };
                    // A previous statement that was not followed by `{` was
                    // a plain one.
                    block.pending = Some(token.clone());
                    if let Some(chain) = block.chain.as_mut() {
                        match words.first().copied() {
                            Some("type") => {
                                chain.hook = words
                                    .iter()
                                    .position(|w| *w == "hook")
                                    .and_then(|i| words.get(i + 1))
                                    .map(|h| (*h).to_owned());
                            }
                            Some("policy") => {
                                let p = words.get(1).map_or("", |p| p.trim_end_matches(';'));
                                chain.policy = Some((p.to_owned(), evidence()));
                            }
                            Some("comment" | "devices" | "priority") | None => {}
                            Some(_) => {
                                chain.last_rule = Some((token.clone(), evidence()));
                                self.rules.push((token.clone(), evidence()));
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// An `iptables-save` file.
    pub fn iptables(text: &str, file: &str) -> Self {
        let mut set = Ruleset {
            files: vec![file.to_owned()],
            ..Ruleset::default()
        };
        let mut table = String::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            let evidence = || Evidence::at(file, line_number(i), line.to_owned());
            if let Some(name) = line.strip_prefix('*') {
                table = name.to_owned();
            } else if let Some(rest) = line.strip_prefix(':') {
                let mut words = rest.split_whitespace();
                let (Some(name), Some(policy)) = (words.next(), words.next()) else {
                    continue;
                };
                if table == "filter" {
                    set.chains.push(Chain {
                        family: String::new(),
                        name: name.to_owned(),
                        hook: ["INPUT", "FORWARD", "OUTPUT"]
                            .contains(&name)
                            .then(|| name.to_ascii_lowercase()),
                        policy: (policy != "-").then(|| (policy.to_owned(), evidence())),
                        last_rule: None,
                    });
                }
            } else if line.starts_with("-A ") {
                set.rules.push((line.to_owned(), evidence()));
                let chain_name = line.split_whitespace().nth(1).unwrap_or("");
                if table == "filter" {
                    if let Some(chain) = set.chains.iter_mut().find(|c| c.name == chain_name) {
                        chain.last_rule = Some((line.to_owned(), evidence()));
                    }
                }
            }
        }
        set
    }

    /// The first chain that filters input.
    pub fn input_filter(&self) -> Option<&Chain> {
        self.chains.iter().find(|c| c.filters_input())
    }

    /// The input base chains, for evidence when none filters.
    pub fn input_chains(&self) -> impl Iterator<Item = &Chain> + '_ {
        self.chains
            .iter()
            .filter(|c| c.hook.as_deref() == Some("input"))
    }

    /// Rules that limit connections (`ct count`, `connlimit`, `hashlimit`).
    pub fn connection_limits(&self) -> impl Iterator<Item = &Evidence> + '_ {
        self.rules
            .iter()
            .filter(|(r, _)| {
                r.contains("ct count") || r.contains("connlimit") || r.contains("hashlimit")
            })
            .map(|(_, e)| e)
    }
}

/// An open brace block of an nft file.
#[derive(Debug, Default)]
struct Block {
    /// The last statement, which becomes the header if `{` follows.
    pending: Option<String>,
    family: String,
    chain: Option<Chain>,
}

impl Block {
    fn open(header: &str, parent: Option<&Block>) -> Self {
        let words: Vec<&str> = header.split_whitespace().collect();
        let mut block = Block {
            family: parent.map(|p| p.family.clone()).unwrap_or_default(),
            ..Block::default()
        };
        if let Some(i) = words.iter().position(|w| *w == "table") {
            // `table inet filter` or `table filter` (family ip).
            block.family = match words.len() - i {
                3.. => words[i + 1].to_owned(),
                _ => "ip".to_owned(),
            };
        }
        if let Some(i) = words.iter().position(|w| *w == "chain") {
            if words.len() - i >= 4 {
                // `add chain inet filter input`
                block.family = words[i + 1].to_owned();
            }
            block.chain = Some(Chain {
                family: block.family.clone(),
                name: words.last().map_or("", |w| w).to_owned(),
                ..Chain::default()
            });
        }
        block
    }
}

/// Statements and braces of an nft file, each with its line: comments
/// dropped, `;` and newlines ending statements, quoted strings kept whole.
fn nft_tokens(text: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut line = 1u32;
    let mut start = 1u32;
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let flush = |current: &mut String, start: u32, out: &mut Vec<(u32, String)>| {
        let t = current.trim();
        if !t.is_empty() {
            out.push((start, t.to_owned()));
        }
        current.clear();
    };
    while let Some(c) = chars.next() {
        if current.trim().is_empty() {
            start = line;
        }
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            '\n' => {
                quoted = false;
                flush(&mut current, start, &mut out);
                line = line.saturating_add(1);
            }
            '\\' if chars.peek() == Some(&'\n') => {
                chars.next();
                line = line.saturating_add(1);
                current.push(' ');
            }
            _ if quoted => current.push(c),
            '#' => {
                while chars.peek().is_some_and(|&c| c != '\n') {
                    chars.next();
                }
            }
            ';' => flush(&mut current, start, &mut out),
            '{' | '}' => {
                flush(&mut current, start, &mut out);
                out.push((line, c.to_string()));
            }
            c => current.push(c),
        }
    }
    flush(&mut current, start, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NFT: &str = r#"#!/usr/sbin/nft -f
flush ruleset
table inet filter {
    chain input {
        type filter hook input priority filter; policy drop;
        ct state established,related accept
        iif "lo" accept
        tcp dport 22 ct count over 10 reject # limit
        tcp dport 22 accept
    }
    chain forward { type filter hook forward priority 0; policy drop; }
}
"#;

    #[test]
    fn nft_chains_hooks_and_policies() {
        let set = Ruleset::nft(NFT, "/etc/nftables.conf");
        assert_eq!(set.chains.len(), 2);
        let input = set.input_filter().unwrap();
        assert_eq!(input.family, "inet");
        assert_eq!(input.hook.as_deref(), Some("input"));
        assert_eq!(
            input.policy.as_ref().unwrap().1.to_string(),
            "/etc/nftables.conf:5: policy drop"
        );
        assert_eq!(input.last_rule.as_ref().unwrap().0, "tcp dport 22 accept");
        assert_eq!(set.connection_limits().count(), 1);
    }

    #[test]
    fn nft_accept_policy_with_final_reject_rule() {
        let set = Ruleset::nft(
            "table ip t {\n chain in {\n  type filter hook input priority 0; policy accept;\n  tcp dport 22 accept\n  counter reject with icmp type port-unreachable\n }\n}\n",
            "/f",
        );
        assert!(set.input_filter().is_some());
        let open = Ruleset::nft(
            "table inet filter {\n chain input {\n  type filter hook input priority 0;\n }\n}\n",
            "/f",
        );
        assert!(open.input_filter().is_none());
        assert_eq!(open.input_chains().count(), 1);
    }

    #[test]
    fn iptables_save_policy_and_final_reject() {
        let set = Ruleset::iptables(
            "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT\n-A INPUT -p tcp -m connlimit --connlimit-above 20 -j REJECT\n-A INPUT -j REJECT --reject-with icmp-host-prohibited\nCOMMIT\n",
            "/etc/sysconfig/iptables",
        );
        let input = set.input_filter().unwrap();
        assert_eq!(input.last_rule.as_ref().unwrap().1.line, Some(9));
        assert_eq!(set.connection_limits().count(), 1);
        let open = Ruleset::iptables(
            "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -j DROP\nCOMMIT\n",
            "/f",
        );
        assert!(open.input_filter().is_none());
    }

    #[test]
    fn catch_all_rules() {
        assert!(catch_all("drop"));
        assert!(catch_all("counter drop"));
        assert!(catch_all("log prefix \"dropped\" counter reject"));
        assert!(!catch_all("tcp dport 23 drop"));
        assert!(catch_all("-A INPUT -j DROP"));
        assert!(!catch_all("-A INPUT -s 10.0.0.0/8 -j DROP"));
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(text in "(?s)[a-z0-9{};#\"\\\\:* \n-]{0,400}") {
            let set = Ruleset::nft(&text, "/n");
            let _ = set.input_filter();
            let set = Ruleset::iptables(&text, "/i");
            let _ = set.input_filter();
        }
    }
}
