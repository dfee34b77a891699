//! Label matchers as Prometheus and Alertmanager write them:
//! `name="value"`, `name!="value"`, `name=~"regex"`, `name!~"regex"`.
//! Regexes are anchored (`^(?:…)$`), and a missing label matches as the
//! empty string, so `env=""` selects alerts without `env`.

use std::fmt;

use regex::Regex;

use crate::rules::alert::LabelMap;

/// How a matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

/// One parsed matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<Regex>,
}

impl Matcher {
    /// Parses `name op value`; the value is double-quoted (with `\"`, `\\`,
    /// `\n`, `\t` escapes) or, as Alertmanager allows, bare.
    pub fn parse(text: &str) -> Result<Matcher, String> {
        let text = text.trim();
        let name_end = text
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(text.len());
        let name = &text[..name_end];
        if !crate::query::aggregate::valid_label_name(name) {
            return Err(format!(
                "{text:?}: expected a label name, an operator (=, !=, =~, !~) and a value, as in severity=\"critical\""
            ));
        }
        let rest = text[name_end..].trim_start();
        let (op, rest) = [
            ("=~", MatchOp::Regex),
            ("!~", MatchOp::NotRegex),
            ("!=", MatchOp::NotEqual),
            ("=", MatchOp::Equal),
        ]
        .into_iter()
        .find_map(|(s, op)| rest.strip_prefix(s).map(|r| (op, r)))
        .ok_or_else(|| format!("{text:?}: expected an operator (=, !=, =~, !~) after {name:?}"))?;
        let value = unquote(rest.trim()).map_err(|e| format!("{text:?}: {e}"))?;
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("{text:?}: invalid regex: {e}"))?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name: name.to_owned(),
            op,
            value,
            regex,
        })
    }

    /// Whether the label set matches.
    pub fn matches(&self, labels: &LabelMap) -> bool {
        let v = labels.get(&self.name).map_or("", String::as_str);
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => v == self.value,
            (MatchOp::NotEqual, _) => v != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(v),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(v),
            (_, None) => false,
        }
    }
}

/// `name="value"` with the value quoted as Go's `%q` does for plain text,
/// which is how Alertmanager spells matchers in group keys.
impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.name, self.op.as_str(), quote(&self.value))
    }
}

/// Double-quotes `s`, escaping as Go's `%q` does for printable text.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn unquote(s: &str) -> Result<String, String> {
    let Some(inner) = s.strip_prefix('"') else {
        if s.contains('"') {
            return Err("a bare value must not contain '\"'".into());
        }
        return Ok(s.to_owned());
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                return if chars.as_str().trim().is_empty() {
                    Ok(out)
                } else {
                    Err(format!(
                        "unexpected {:?} after the closing quote",
                        chars.as_str()
                    ))
                };
            }
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some(c @ ('"' | '\\')) => out.push(c),
                // Kept as written so regex escapes (`\d`, `\.`) work.
                Some(c) => {
                    out.push('\\');
                    out.push(c);
                }
                None => return Err("the value ends inside an escape".into()),
            },
            c => out.push(c),
        }
    }
    Err("the value has no closing quote".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> LabelMap {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn all_four_operators_match_as_prometheus_does() {
        let db = labels(&[("host", "db1"), ("severity", "critical")]);
        let web = labels(&[("host", "web-db1"), ("severity", "warning")]);
        let cases = [
            (r#"severity="critical""#, true, false),
            (r#"severity!="critical""#, false, true),
            (r#"host=~"db.*""#, true, false),
            (r#"host!~"db.*""#, false, true),
            (r#"host =~ "db1|web-db1""#, true, true),
            ("severity=critical", true, false),
            (r#"env="""#, true, true),
            (r#"env!="""#, false, false),
            (r#"host=~"db\d""#, true, false),
        ];
        for (text, on_db, on_web) in cases {
            let m = Matcher::parse(text).unwrap();
            assert_eq!(m.matches(&db), on_db, "{text} on db");
            assert_eq!(m.matches(&web), on_web, "{text} on web");
        }
    }

    #[test]
    fn regexes_are_anchored() {
        let m = Matcher::parse(r#"host=~"db""#).unwrap();
        assert!(m.matches(&labels(&[("host", "db")])));
        assert!(!m.matches(&labels(&[("host", "db1")])));
        assert!(!m.matches(&labels(&[("host", "xdb")])));
    }

    #[test]
    fn escapes_round_trip_through_display() {
        let m = Matcher::parse(r#"msg="say \"hi\"\n""#).unwrap();
        assert_eq!(m.value, "say \"hi\"\n");
        assert_eq!(m.to_string(), r#"msg="say \"hi\"\n""#);
        assert_eq!(
            Matcher::parse("severity = critical").unwrap().to_string(),
            r#"severity="critical""#
        );
    }

    #[test]
    fn bad_matchers_say_what_was_expected() {
        for (text, part) in [
            ("", "expected a label name"),
            ("1abc=\"x\"", "expected a label name"),
            ("host", "expected an operator"),
            ("host==\"x\"", "bare value"),
            (r#"host="x"#, "no closing quote"),
            (r#"host="x" y"#, "after the closing quote"),
            (r#"host=~"(""#, "invalid regex"),
        ] {
            let err = Matcher::parse(text).unwrap_err();
            assert!(err.contains(part), "{text:?}: {err}");
        }
    }
}
