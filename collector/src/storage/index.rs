//! The series index: each label set (metric name included as `__name__`)
//! has a series id, and each label pair a posting list of the series that
//! carry it, so a selector finds its series without scanning them all.
//! Kept in memory; rebuilt at start from the store's `series` tree.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use foldhash::fast::RandomState;

use regex::Regex;

/// A series' identity in the store.
pub type SeriesId = u64;

/// Labels sorted by name, `__name__` among them.
pub type Labels = Vec<(String, String)>;

/// How a matcher compares a label's value.
#[derive(Debug, Clone)]
pub enum MatchOp {
    Equal(String),
    NotEqual(String),
    /// Anchored at both ends, as Prometheus anchors them.
    Regex(Regex),
    NotRegex(Regex),
}

/// One label matcher of a selector.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
}

impl Matcher {
    pub fn equal(name: &str, value: &str) -> Matcher {
        Matcher {
            name: name.to_owned(),
            op: MatchOp::Equal(value.to_owned()),
        }
    }

    /// A regex matcher; the pattern is anchored as Prometheus anchors it.
    pub fn regex(name: &str, pattern: &str, negate: bool) -> Result<Matcher, regex::Error> {
        let re = Regex::new(&format!("^(?:{pattern})$"))?;
        Ok(Matcher {
            name: name.to_owned(),
            op: if negate {
                MatchOp::NotRegex(re)
            } else {
                MatchOp::Regex(re)
            },
        })
    }

    pub fn not_equal(name: &str, value: &str) -> Matcher {
        Matcher {
            name: name.to_owned(),
            op: MatchOp::NotEqual(value.to_owned()),
        }
    }

    /// Whether a value (empty when the label is absent) matches.
    pub fn matches(&self, value: &str) -> bool {
        match &self.op {
            MatchOp::Equal(v) => v == value,
            MatchOp::NotEqual(v) => v != value,
            MatchOp::Regex(re) => re.is_match(value),
            MatchOp::NotRegex(re) => !re.is_match(value),
        }
    }
}

type Sym = u32;

/// Every label name and value once, numbered.
#[derive(Debug, Default)]
struct Strings {
    syms: HashMap<Arc<str>, Sym, RandomState>,
    texts: Vec<Arc<str>>,
}

impl Strings {
    fn intern(&mut self, s: &str) -> Sym {
        if let Some(sym) = self.syms.get(s) {
            return *sym;
        }
        let text: Arc<str> = Arc::from(s);
        let sym = self.texts.len() as Sym;
        self.texts.push(text.clone());
        self.syms.insert(text, sym);
        sym
    }

    fn find(&self, s: &str) -> Option<Sym> {
        self.syms.get(s).copied()
    }

    fn text(&self, sym: Sym) -> &str {
        self.texts.get(sym as usize).map_or("", |t| t)
    }
}

/// The series whose labels hash alike: almost always one.
#[derive(Debug)]
enum Bucket {
    One(SeriesId),
    Many(Vec<SeriesId>),
}

impl Bucket {
    fn ids(&self) -> &[SeriesId] {
        match self {
            Bucket::One(id) => std::slice::from_ref(id),
            Bucket::Many(ids) => ids,
        }
    }
}

/// See the module comment. A series' labels are kept as one contiguous
/// record (each name and value length-prefixed, sorted by name) found by a
/// hash of the labels, so looking a series up touches one allocation.
/// Label strings are interned for the postings.
#[derive(Debug, Default)]
pub struct SeriesIndex {
    strings: Strings,
    /// By series id; empty for ids not in use.
    series: Vec<Box<[u8]>>,
    by_hash: HashMap<u64, Bucket, RandomState>,
    hasher: RandomState,
    /// name → value → sorted series ids.
    postings: HashMap<Sym, HashMap<Sym, Vec<SeriesId>, RandomState>, RandomState>,
    count: usize,
    next_id: SeriesId,
}

impl SeriesIndex {
    pub fn new() -> Self {
        SeriesIndex {
            next_id: 1,
            ..Default::default()
        }
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The hash of a series: its name, then its other labels (sorted) in
    /// order.
    pub fn hash<'a>(&self, name: &str, labels: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
        let mut h = self.hasher.build_hasher();
        name.hash(&mut h);
        for (n, v) in labels {
            n.hash(&mut h);
            v.hash(&mut h);
        }
        h.finish()
    }

    fn stored(&self, id: SeriesId) -> Option<&[u8]> {
        self.series
            .get(usize::try_from(id).ok()?)
            .map(|b| &**b)
            .filter(|b| !b.is_empty())
    }

    /// The id of the series named `name` with `labels` (without
    /// `__name__`), without building its label set.
    pub fn get(&self, name: &str, labels: &[(String, String)]) -> Option<SeriesId> {
        if !labels.is_sorted() {
            let mut sorted = labels.to_vec();
            sorted.sort();
            return self.get(name, &sorted);
        }
        let hash = self.hash(name, labels.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        self.get_hashed(hash, name, labels)
    }

    /// [`SeriesIndex::get`] with the hash already computed and the labels
    /// known to be sorted.
    pub fn get_hashed(
        &self,
        hash: u64,
        name: &str,
        labels: &[(String, String)],
    ) -> Option<SeriesId> {
        self.by_hash.get(&hash)?.ids().iter().copied().find(|id| {
            self.stored(*id)
                .is_some_and(|record| matches(record, name, labels))
        })
    }

    /// Whether `id` is in use.
    pub fn contains(&self, id: SeriesId) -> bool {
        self.stored(id).is_some()
    }

    /// A series' labels, `__name__` among them.
    pub fn labels(&self, id: SeriesId) -> Option<Labels> {
        Some(
            pairs(self.stored(id)?)
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    /// The id a new series would get next.
    pub fn next_id(&self) -> SeriesId {
        self.next_id
    }

    /// Adds a series (labels sorted, `__name__` among them) under a known
    /// id (at start, from disk) or the next id; a series already known keeps
    /// its id, which is returned.
    pub fn insert(&mut self, labels: Labels, id: Option<SeriesId>) -> SeriesId {
        let name = labels
            .iter()
            .find(|(n, _)| n == NAME)
            .map_or("", |(_, v)| v.as_str());
        let others: Vec<(String, String)> =
            labels.iter().filter(|(n, _)| n != NAME).cloned().collect();
        if let Some(existing) = self.get(name, &others) {
            return existing;
        }
        let hash = self.hash(name, others.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let id = id.unwrap_or(self.next_id);
        self.next_id = self.next_id.max(id + 1);
        let mut record = Vec::new();
        for (n, v) in &labels {
            put_str(&mut record, n);
            put_str(&mut record, v);
        }
        for (n, v) in &labels {
            let (n, v) = (self.strings.intern(n), self.strings.intern(v));
            let list = self.postings.entry(n).or_default().entry(v).or_default();
            // New series get ever higher ids: append without a search
            // through lists that reach millions of ids in a large fleet.
            if list.last().is_none_or(|last| *last < id) {
                list.push(id);
            } else if let Err(at) = list.binary_search(&id) {
                list.insert(at, id);
            }
        }
        match self.by_hash.get_mut(&hash) {
            None => {
                self.by_hash.insert(hash, Bucket::One(id));
            }
            Some(Bucket::One(other)) => {
                let other = *other;
                self.by_hash.insert(hash, Bucket::Many(vec![other, id]));
            }
            Some(Bucket::Many(ids)) => ids.push(id),
        }
        let at = usize::try_from(id).unwrap_or(usize::MAX);
        if at >= self.series.len() {
            self.series.resize_with(at + 1, Box::default);
        }
        self.series[at] = record.into_boxed_slice();
        self.count += 1;
        id
    }

    /// Series matching every matcher, in id order. With no matcher that
    /// needs a non-empty value, the scan starts from every series.
    pub fn select(&self, matchers: &[Matcher]) -> Vec<SeriesId> {
        let mut candidates: Option<Vec<SeriesId>> = None;
        for m in matchers {
            if let MatchOp::Equal(v) = &m.op {
                if v.is_empty() {
                    continue;
                }
                let list = self
                    .strings
                    .find(&m.name)
                    .zip(self.strings.find(v))
                    .and_then(|(n, v)| self.postings.get(&n)?.get(&v))
                    .cloned()
                    .unwrap_or_default();
                candidates = Some(match candidates {
                    None => list,
                    Some(c) => intersect(&c, &list),
                });
            }
        }
        let mut ids = candidates.unwrap_or_else(|| {
            (0..self.series.len() as SeriesId)
                .filter(|id| self.contains(*id))
                .collect()
        });
        ids.retain(|id| {
            let Some(stored) = self.stored(*id) else {
                return false;
            };
            matchers
                .iter()
                .all(|m| m.matches(value_of(stored, &m.name)))
        });
        ids
    }

    /// Every label name, sorted.
    pub fn label_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .postings
            .keys()
            .map(|n| self.strings.text(*n).to_owned())
            .collect();
        names.sort();
        names
    }

    /// Every value of one label, sorted.
    pub fn label_values(&self, name: &str) -> Vec<String> {
        let mut values: Vec<String> = self
            .strings
            .find(name)
            .and_then(|n| self.postings.get(&n))
            .map(|values| {
                values
                    .keys()
                    .map(|v| self.strings.text(*v).to_owned())
                    .collect()
            })
            .unwrap_or_default();
        values.sort();
        values
    }
}

/// The label that holds a series' metric name.
const NAME: &str = "__name__";

/// Appends a length-prefixed (LEB128) string to a series record.
fn put_str(out: &mut Vec<u8>, s: &str) {
    let mut len = s.len();
    while len >= 0x80 {
        out.push(len as u8 | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(s.as_bytes());
}

/// The next string of a series record and the rest.
fn next_str(record: &[u8]) -> Option<(&str, &[u8])> {
    let (mut len, mut at) = (0usize, 0usize);
    loop {
        let b = *record.get(at)?;
        len |= usize::from(b & 0x7f) << (7 * at);
        at += 1;
        if b & 0x80 == 0 {
            break;
        }
    }
    let s = record.get(at..at.checked_add(len)?)?;
    Some((std::str::from_utf8(s).ok()?, &record[at + len..]))
}

/// The (name, value) pairs of a series record.
fn pairs(mut record: &[u8]) -> impl Iterator<Item = (&str, &str)> {
    std::iter::from_fn(move || {
        let (n, rest) = next_str(record)?;
        let (v, rest) = next_str(rest)?;
        record = rest;
        Some((n, v))
    })
}

/// The value of label `name` in a series record ("" if absent).
fn value_of<'a>(record: &'a [u8], name: &str) -> &'a str {
    pairs(record)
        .find(|(n, _)| *n == name)
        .map_or("", |(_, v)| v)
}

/// Whether a series record is `name` with `labels` (sorted, without
/// `__name__`).
fn matches(record: &[u8], name: &str, labels: &[(String, String)]) -> bool {
    let mut given = labels.iter();
    let mut named = false;
    for (n, v) in pairs(record) {
        if n == NAME {
            if v != name {
                return false;
            }
            named = true;
            continue;
        }
        match given.next() {
            Some((gn, gv)) if gn == n && gv == v => {}
            _ => return false,
        }
    }
    named && given.next().is_none()
}

fn intersect(a: &[SeriesId], b: &[SeriesId]) -> Vec<SeriesId> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        let mut l: Labels = pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        l.sort();
        l
    }

    fn index() -> SeriesIndex {
        let mut idx = SeriesIndex::new();
        idx.insert(labels(&[("__name__", "up"), ("host", "db")]), None);
        idx.insert(labels(&[("__name__", "up"), ("host", "training")]), None);
        idx.insert(labels(&[("__name__", "node_load1"), ("host", "db")]), None);
        idx.insert(
            labels(&[("__name__", "up"), ("host", "evaluation"), ("env", "prod")]),
            None,
        );
        idx
    }

    #[test]
    fn all_four_matcher_kinds() {
        let idx = index();
        assert_eq!(idx.select(&[Matcher::equal("__name__", "up")]), [1, 2, 4]);
        assert_eq!(
            idx.select(&[
                Matcher::equal("__name__", "up"),
                Matcher::not_equal("host", "db")
            ]),
            [2, 4]
        );
        let re = Matcher::regex("host", "db|train.*", false).unwrap();
        assert_eq!(idx.select(&[Matcher::equal("__name__", "up"), re]), [1, 2]);
        // Anchored: "rain" alone does not match "training".
        let partial = Matcher::regex("host", "rain", false).unwrap();
        assert!(idx.select(&[partial]).is_empty());
        let not_re = Matcher::regex("host", "d.*", true).unwrap();
        assert_eq!(
            idx.select(&[Matcher::equal("__name__", "up"), not_re]),
            [2, 4]
        );
    }

    #[test]
    fn absent_labels_match_the_empty_value() {
        let idx = index();
        assert_eq!(
            idx.select(&[Matcher::equal("__name__", "up"), Matcher::equal("env", "")]),
            [1, 2]
        );
        assert_eq!(idx.select(&[Matcher::not_equal("env", "")]), [4]);
    }

    #[test]
    fn ids_are_stable_and_names_and_values_listed() {
        let mut idx = index();
        let again = idx.insert(labels(&[("__name__", "up"), ("host", "db")]), None);
        assert_eq!(again, 1);
        assert_eq!(idx.insert(labels(&[("__name__", "x")]), Some(10)), 10);
        assert_eq!(idx.next_id(), 11);
        assert_eq!(idx.label_names(), ["__name__", "env", "host"]);
        assert_eq!(idx.label_values("host"), ["db", "evaluation", "training"]);
    }

    #[test]
    fn found_by_name_and_labels_in_any_order() {
        let idx = index();
        let l = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(idx.get("up", &l(&[("host", "db")])), Some(1));
        assert_eq!(idx.get("node_load1", &l(&[("host", "db")])), Some(3));
        assert_eq!(
            idx.get("up", &l(&[("host", "evaluation"), ("env", "prod")])),
            Some(4)
        );
        assert_eq!(idx.get("up", &l(&[("host", "db"), ("env", "prod")])), None);
        assert_eq!(idx.get("up", &l(&[])), None);
        assert_eq!(idx.get("down", &l(&[("host", "db")])), None);
        assert_eq!(
            idx.labels(4).unwrap(),
            labels(&[("__name__", "up"), ("env", "prod"), ("host", "evaluation")])
        );
    }
}
