//! The series index: each label set (metric name included as `__name__`)
//! has a series id, and each label pair a posting list of the series that
//! carry it, so a selector finds its series without scanning them all.
//! Kept in memory; rebuilt at start from the store's `series` tree.

use std::collections::{BTreeMap, HashMap};

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

/// See the module comment.
#[derive(Debug, Default)]
pub struct SeriesIndex {
    ids: HashMap<Labels, SeriesId>,
    labels: HashMap<SeriesId, Labels>,
    /// name → value → sorted series ids.
    postings: BTreeMap<String, BTreeMap<String, Vec<SeriesId>>>,
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
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn get(&self, labels: &Labels) -> Option<SeriesId> {
        self.ids.get(labels).copied()
    }

    pub fn labels(&self, id: SeriesId) -> Option<&Labels> {
        self.labels.get(&id)
    }

    /// The id a new series would get next.
    pub fn next_id(&self) -> SeriesId {
        self.next_id
    }

    /// Adds a series under a known id (at start, from disk) or the next id.
    pub fn insert(&mut self, labels: Labels, id: Option<SeriesId>) -> SeriesId {
        if let Some(existing) = self.ids.get(&labels) {
            return *existing;
        }
        let id = id.unwrap_or(self.next_id);
        self.next_id = self.next_id.max(id + 1);
        for (name, value) in &labels {
            let list = self
                .postings
                .entry(name.clone())
                .or_default()
                .entry(value.clone())
                .or_default();
            if let Err(at) = list.binary_search(&id) {
                list.insert(at, id);
            }
        }
        self.ids.insert(labels.clone(), id);
        self.labels.insert(id, labels);
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
                    .postings
                    .get(&m.name)
                    .and_then(|values| values.get(v))
                    .cloned()
                    .unwrap_or_default();
                candidates = Some(match candidates {
                    None => list,
                    Some(c) => intersect(&c, &list),
                });
            }
        }
        let mut ids = candidates.unwrap_or_else(|| {
            let mut all: Vec<SeriesId> = self.labels.keys().copied().collect();
            all.sort_unstable();
            all
        });
        ids.retain(|id| {
            let Some(labels) = self.labels.get(id) else {
                return false;
            };
            matchers.iter().all(|m| {
                let value = labels
                    .iter()
                    .find(|(n, _)| *n == m.name)
                    .map_or("", |(_, v)| v.as_str());
                m.matches(value)
            })
        });
        ids
    }

    /// Every label name, sorted.
    pub fn label_names(&self) -> Vec<String> {
        self.postings.keys().cloned().collect()
    }

    /// Every value of one label, sorted.
    pub fn label_values(&self, name: &str) -> Vec<String> {
        self.postings
            .get(name)
            .map(|values| values.keys().cloned().collect())
            .unwrap_or_default()
    }
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
}
