//! Silences and maintenance windows, as Alertmanager has them: label
//! matchers (`=`, `!=`, `=~`, `!~`, regexes anchored), a start and an end,
//! who made it and why. An alert matched by an active silence still shows
//! as firing, with the silence's id, but notifies no one and opens no
//! ticket. Expiring a silence ends it now; expired silences are kept
//! (for the record) until retention drops them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::storage::index::Matcher;

/// One matcher as the API carries it (Alertmanager's v2 shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SilenceMatcher {
    pub name: String,
    pub value: String,
    #[serde(default)]
    pub is_regex: bool,
    #[serde(default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

/// A silence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Silence {
    #[serde(default)]
    pub id: String,
    pub matchers: Vec<SilenceMatcher>,
    /// Unix ms.
    pub starts_at: i64,
    pub ends_at: i64,
    pub created_by: String,
    pub comment: String,
}

/// Where a silence stands at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SilenceState {
    Pending,
    Active,
    Expired,
}

impl SilenceState {
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceState::Pending => "pending",
            SilenceState::Active => "active",
            SilenceState::Expired => "expired",
        }
    }
}

/// Why a silence was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    #[error("{0}")]
    Invalid(String),
    #[error("no silence with id {0:?}")]
    NotFound(String),
}

impl SilenceMatcher {
    /// Parses `name="value"`, `name!="value"`, `name=~"re"`, `name!~"re"`.
    pub fn parse(text: &str) -> Result<SilenceMatcher, SilenceError> {
        // PromQL's selector syntax, with a matcher that needs a value so
        // that the parser takes ones like `a=~".*"` (dropped again).
        const PROBE: &str = "__silence_probe__";
        let expr = crate::query::parse(&format!("{{{PROBE}=\"1\", {text}}}"))
            .map_err(|e| SilenceError::Invalid(format!("matcher {text:?}: {e}")))?;
        let promql_parser::parser::Expr::VectorSelector(vs) = expr else {
            return Err(SilenceError::Invalid(format!(
                "matcher {text:?}: not a label matcher"
            )));
        };
        let given: Vec<_> = vs
            .matchers
            .matchers
            .iter()
            .filter(|m| m.name != PROBE)
            .collect();
        let [m] = given.as_slice() else {
            return Err(SilenceError::Invalid(format!(
                "{text:?}: give one matcher at a time"
            )));
        };
        use promql_parser::label::MatchOp as Op;
        let (is_regex, is_equal) = match m.op {
            Op::Equal => (false, true),
            Op::NotEqual => (false, false),
            Op::Re(_) => (true, true),
            Op::NotRe(_) => (true, false),
        };
        Ok(SilenceMatcher {
            name: m.name.clone(),
            value: m.value.clone(),
            is_regex,
            is_equal,
        })
    }

    fn matcher(&self) -> Result<Matcher, SilenceError> {
        if self.is_regex {
            Matcher::regex(&self.name, &self.value, !self.is_equal)
                .map_err(|e| SilenceError::Invalid(format!("matcher {}: {e}", self.name)))
        } else if self.is_equal {
            Ok(Matcher::equal(&self.name, &self.value))
        } else {
            Ok(Matcher::not_equal(&self.name, &self.value))
        }
    }
}

impl Silence {
    pub fn state(&self, now: i64) -> SilenceState {
        if now < self.starts_at {
            SilenceState::Pending
        } else if now < self.ends_at {
            SilenceState::Active
        } else {
            SilenceState::Expired
        }
    }

    /// Whether the silence covers an alert with these labels (whatever the
    /// time).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matchers.iter().all(|m| match m.matcher() {
            Ok(matcher) => matcher.matches(labels.get(&m.name).map_or("", String::as_str)),
            Err(_) => false,
        })
    }

    /// Every problem with a silence as given.
    pub fn validate(&self) -> Result<(), SilenceError> {
        if self.matchers.is_empty() {
            return Err(SilenceError::Invalid(
                "a silence needs at least one matcher".into(),
            ));
        }
        for m in &self.matchers {
            m.matcher()?;
        }
        // A silence must not match everything: one matcher has to need a
        // non-empty value (as Alertmanager requires).
        let all_match_empty = self.matchers.iter().all(|m| match m.matcher() {
            Ok(matcher) => matcher.matches(""),
            Err(_) => true,
        });
        if all_match_empty {
            return Err(SilenceError::Invalid(
                "at least one matcher must not match the empty string (a silence may not cover everything)".into(),
            ));
        }
        if self.ends_at <= self.starts_at {
            return Err(SilenceError::Invalid(
                "endsAt must be after startsAt".into(),
            ));
        }
        if self.created_by.trim().is_empty() {
            return Err(SilenceError::Invalid("createdBy is required".into()));
        }
        if self.comment.trim().is_empty() {
            return Err(SilenceError::Invalid("comment is required".into()));
        }
        Ok(())
    }
}

/// The silences the collector holds.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silences {
    pub by_id: BTreeMap<String, Silence>,
}

impl Silences {
    /// Adds a silence (a new id) or replaces one still pending or active
    /// (same id); returns its id.
    pub fn put(&mut self, mut silence: Silence, now: i64) -> Result<String, SilenceError> {
        silence.validate()?;
        if silence.id.is_empty() {
            silence.id = new_id();
        } else {
            match self.by_id.get(&silence.id) {
                None => return Err(SilenceError::NotFound(silence.id)),
                Some(old) if old.state(now) == SilenceState::Expired => {
                    return Err(SilenceError::Invalid(format!(
                        "silence {} has expired; create a new one",
                        silence.id
                    )))
                }
                Some(_) => {}
            }
        }
        let id = silence.id.clone();
        self.by_id.insert(id.clone(), silence);
        Ok(id)
    }

    /// Ends a silence now.
    pub fn expire(&mut self, id: &str, now: i64) -> Result<(), SilenceError> {
        let s = self
            .by_id
            .get_mut(id)
            .ok_or_else(|| SilenceError::NotFound(id.to_owned()))?;
        if s.state(now) == SilenceState::Expired {
            return Ok(());
        }
        if s.starts_at > now {
            s.starts_at = now;
        }
        s.ends_at = now;
        Ok(())
    }

    /// Ids of the active silences covering these labels.
    pub fn silencing(&self, labels: &BTreeMap<String, String>, now: i64) -> Vec<String> {
        self.by_id
            .values()
            .filter(|s| s.state(now) == SilenceState::Active && s.matches(labels))
            .map(|s| s.id.clone())
            .collect()
    }

    /// Drops silences that ended before `cutoff`.
    pub fn drop_ended_before(&mut self, cutoff: i64) {
        self.by_id.retain(|_, s| s.ends_at >= cutoff);
    }
}

/// Saves the whole set after each change (silences are few).
pub type Saver = Box<dyn Fn(&Silences) -> Result<(), String> + Send + Sync>;

/// The collector's silences, saved durably after every change.
pub struct SilenceBook {
    inner: std::sync::Mutex<Silences>,
    save: Saver,
}

impl SilenceBook {
    pub fn new(initial: Silences, save: Saver) -> SilenceBook {
        SilenceBook {
            inner: std::sync::Mutex::new(initial),
            save,
        }
    }

    /// The book kept in `store` (state key `silences`): read now, written
    /// after every change. Unreadable kept silences are logged and left
    /// out, never a reason not to start.
    pub fn load(store: std::sync::Arc<dyn crate::storage::Store>) -> SilenceBook {
        const KEY: &str = "silences";
        let initial = match store.get_state(KEY) {
            Ok(Some(bytes)) => {
                match bincode::serde::decode_from_slice::<Silences, _>(
                    &bytes,
                    bincode::config::standard(),
                ) {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "kept silences unreadable; starting with none");
                        Silences::default()
                    }
                }
            }
            Ok(None) => Silences::default(),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the kept silences; starting with none");
                Silences::default()
            }
        };
        SilenceBook::new(
            initial,
            Box::new(move |set| {
                let bytes = bincode::serde::encode_to_vec(set, bincode::config::standard())
                    .map_err(|e| e.to_string())?;
                store
                    .put_state(KEY, Some(&bytes))
                    .map_err(|e| e.to_string())
            }),
        )
    }

    /// A book kept in memory only (tests).
    pub fn in_memory() -> SilenceBook {
        SilenceBook::new(Silences::default(), Box::new(|_| Ok(())))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Silences> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds or replaces a silence and saves; the change is undone if the
    /// save fails.
    pub fn put(&self, silence: Silence, now: i64) -> Result<String, SilenceError> {
        let mut set = self.lock();
        let before = set.clone();
        let id = set.put(silence, now)?;
        if let Err(e) = (self.save)(&set) {
            *set = before;
            return Err(SilenceError::Invalid(format!(
                "cannot save the silence: {e}"
            )));
        }
        Ok(id)
    }

    /// Expires a silence and saves.
    pub fn expire(&self, id: &str, now: i64) -> Result<(), SilenceError> {
        let mut set = self.lock();
        let before = set.clone();
        set.expire(id, now)?;
        if let Err(e) = (self.save)(&set) {
            *set = before;
            return Err(SilenceError::Invalid(format!(
                "cannot save the silence: {e}"
            )));
        }
        Ok(())
    }

    /// Every silence, newest first.
    pub fn list(&self) -> Vec<Silence> {
        let mut all: Vec<Silence> = self.lock().by_id.values().cloned().collect();
        all.sort_by_key(|s| std::cmp::Reverse(s.starts_at));
        all
    }

    pub fn get(&self, id: &str) -> Option<Silence> {
        self.lock().by_id.get(id).cloned()
    }

    /// Ids of the active silences covering these labels.
    pub fn silencing(&self, labels: &BTreeMap<String, String>, now: i64) -> Vec<String> {
        self.lock().silencing(labels, now)
    }
}

/// A random id in the UUID text form, as Alertmanager's.
fn new_id() -> String {
    let (a, b) = (fastrand::u64(..), fastrand::u64(..));
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        (b >> 48) & 0x3fff | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

/// Whether a matcher op is an equality (for display).
pub fn op_text(m: &SilenceMatcher) -> &'static str {
    match (m.is_regex, m.is_equal) {
        (false, true) => "=",
        (false, false) => "!=",
        (true, true) => "=~",
        (true, false) => "!~",
    }
}

impl std::fmt::Display for SilenceMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}{:?}", self.name, op_text(self), self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn silence(matchers: &[&str], starts: i64, ends: i64) -> Silence {
        Silence {
            id: String::new(),
            matchers: matchers
                .iter()
                .map(|m| SilenceMatcher::parse(m).unwrap())
                .collect(),
            starts_at: starts,
            ends_at: ends,
            created_by: "ops".into(),
            comment: "maintenance".into(),
        }
    }

    #[test]
    fn matchers_of_all_four_kinds_and_the_window() {
        let mut set = Silences::default();
        let id = set
            .put(
                silence(
                    &[
                        "host=~\"db.*\"",
                        "severity!=\"info\"",
                        "alertname!~\"Baseline.*\"",
                    ],
                    100,
                    200,
                ),
                0,
            )
            .unwrap();
        let db = labels(&[
            ("host", "db1"),
            ("severity", "critical"),
            ("alertname", "DiskFull"),
        ]);
        assert!(set.silencing(&db, 50).is_empty(), "pending");
        assert_eq!(set.silencing(&db, 150), std::slice::from_ref(&id));
        assert!(set.silencing(&db, 200).is_empty(), "expired");
        let info = labels(&[
            ("host", "db1"),
            ("severity", "info"),
            ("alertname", "DiskFull"),
        ]);
        assert!(set.silencing(&info, 150).is_empty());
        let anchored = labels(&[
            ("host", "xdb1"),
            ("severity", "critical"),
            ("alertname", "DiskFull"),
        ]);
        assert!(
            set.silencing(&anchored, 150).is_empty(),
            "regexes are anchored"
        );
        set.expire(&id, 120).unwrap();
        assert!(set.silencing(&db, 150).is_empty());
        assert_eq!(set.by_id[&id].ends_at, 120);
    }

    #[test]
    fn silences_outlive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let store: std::sync::Arc<dyn crate::storage::Store> =
                std::sync::Arc::new(crate::storage::disk::DiskStore::open(dir.path()).unwrap());
            let book = SilenceBook::load(store);
            book.put(silence(&["host=\"db\""], 0, 1000), 0).unwrap()
        };
        let store: std::sync::Arc<dyn crate::storage::Store> =
            std::sync::Arc::new(crate::storage::disk::DiskStore::open(dir.path()).unwrap());
        let book = SilenceBook::load(store);
        assert_eq!(book.silencing(&labels(&[("host", "db")]), 500), [id]);
    }

    #[test]
    fn bad_silences_are_refused_with_a_reason() {
        let mut set = Silences::default();
        let everything = silence(&["host=~\".*\""], 0, 10);
        assert!(set
            .put(everything, 0)
            .unwrap_err()
            .to_string()
            .contains("empty string"));
        let backwards = silence(&["host=\"db\""], 10, 5);
        assert!(set
            .put(backwards, 0)
            .unwrap_err()
            .to_string()
            .contains("after startsAt"));
        assert!(SilenceMatcher::parse("host=").is_err());
        assert!(SilenceMatcher::parse("a=\"1\", b=\"2\"")
            .unwrap_err()
            .to_string()
            .contains("one matcher"));
        let mut unknown = silence(&["host=\"db\""], 0, 10);
        unknown.id = "nope".into();
        assert!(matches!(
            set.put(unknown, 0),
            Err(SilenceError::NotFound(_))
        ));
        assert!(matches!(
            set.expire("nope", 0),
            Err(SilenceError::NotFound(_))
        ));
    }
}
