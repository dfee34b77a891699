//! What PromQL expressions evaluate to: scalars, strings, instant vectors
//! and range vectors (matrices), with label sets shared by reference.

use std::sync::Arc;

/// Hash maps and sets of the query engine (foldhash: queries hash label
/// sets and addresses by the million).
pub type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub type Set<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// The label that holds a series' metric name.
pub const METRIC_NAME: &str = "__name__";

/// The value bits Prometheus writes to mark a series stale.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Whether a value is Prometheus' staleness marker.
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// Label pairs, sorted by name.
pub type LabelPairs = Vec<(String, String)>;

/// A label set, shared between the samples of a series.
pub type Labels = Arc<LabelPairs>;

/// Label set helpers.
pub fn get<'a>(labels: &'a [(String, String)], name: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Label sets derived during one query, kept so that each is computed
/// once per series rather than once per series per step, and so that equal
/// sets share one `Arc` (results are then grouped by pointer).
#[derive(Default)]
pub struct LabelCache {
    inner: std::cell::RefCell<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    /// (what was derived, the input's address) → (the input, kept alive so
    /// the address is not reused, and the result).
    derived: Map<(usize, usize), (Labels, Labels)>,
    interned: Map<LabelPairs, Labels>,
}

/// What [`LabelCache::derive`] derives: `WITHOUT_NAME`, or an aggregation
/// or matching node's address.
pub const WITHOUT_NAME: usize = 0;

impl LabelCache {
    /// `f` of `labels`, computed once per input set and interned.
    pub fn derive(
        &self,
        what: usize,
        labels: &Labels,
        f: impl FnOnce(&LabelPairs) -> LabelPairs,
    ) -> Labels {
        let key = (what, Arc::as_ptr(labels) as usize);
        let mut inner = self.inner.borrow_mut();
        if let Some((_, out)) = inner.derived.get(&key) {
            return out.clone();
        }
        let pairs = f(labels);
        let out = match inner.interned.get(&pairs) {
            Some(existing) => existing.clone(),
            None => {
                let out = Arc::new(pairs.clone());
                inner.interned.insert(pairs, out.clone());
                out
            }
        };
        inner.derived.insert(key, (labels.clone(), out.clone()));
        out
    }

    /// The label set without `__name__`.
    pub fn without_name(&self, labels: &Labels) -> Labels {
        if !labels.iter().any(|(n, _)| n == METRIC_NAME) {
            return labels.clone();
        }
        self.derive(WITHOUT_NAME, labels, |l| {
            l.iter()
                .filter(|(n, _)| n != METRIC_NAME)
                .cloned()
                .collect()
        })
    }
}

/// Sets (or, with an empty value, removes) a label, keeping the set sorted.
pub fn set(labels: &mut Vec<(String, String)>, name: &str, value: &str) {
    match labels.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
        Ok(at) if value.is_empty() => {
            labels.remove(at);
        }
        Ok(at) => labels[at].1 = value.to_owned(),
        Err(_) if value.is_empty() => {}
        Err(at) => labels.insert(at, (name.to_owned(), value.to_owned())),
    }
}

/// One element of an instant vector. `t` is the evaluation time, except
/// straight out of a selector, where it is the sample's own time (which
/// `timestamp()` reports).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub t: i64,
    pub v: f64,
}

/// A series with points: an element of a range vector or a query result.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub points: Vec<(i64, f64)>,
}

/// The value of an expression at one time.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(f64),
    String(String),
    Vector(Vec<Sample>),
    Matrix(Vec<Series>),
}

impl Value {
    /// The type's name in errors and in API responses.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::String(_) => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// Formats a value as Prometheus does in its API (Go's shortest `'f'`
/// form, `+Inf`, `-Inf`, `NaN`).
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_format_as_prometheus_does() {
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(0.1), "0.1");
        assert_eq!(format_value(-2.5e-7), "-0.00000025");
        assert_eq!(format_value(1e21), "1000000000000000000000");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
    }

    #[test]
    fn labels_set_keeps_order_and_empty_removes() {
        let mut l = vec![("a".to_string(), "1".to_string())];
        set(&mut l, "c", "3");
        set(&mut l, "b", "2");
        assert_eq!(get(&l, "b"), Some("2"));
        set(&mut l, "a", "");
        let names: Vec<&str> = l.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["b", "c"]);
    }
}
