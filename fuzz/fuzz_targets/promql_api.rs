//! Prometheus' HTTP API as Grafana calls it: a route and its parameters
//! (`query`, `time`, `start`, `end`, `step`, `timeout`, `match[]`,
//! `limit`), parsed and answered over a small in-memory store. The first
//! byte picks the route; the rest up to a newline is the URL's query
//! string, anything after it a form body. The parameter parsers (times,
//! durations, PromQL) are also driven directly with the whole text.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use patrol_collector::http::api::{self, Params};
use patrol_collector::query::{self, Limits};
use patrol_collector::rules::manager::{Manager, Settings};
use patrol_collector::silence::{SilenceBook, Silences};
use patrol_collector::storage::disk::SeriesSamples;
use patrol_collector::storage::index::Matcher;
use patrol_collector::storage::{
    Appended, LatestFamily, StampedBatch, Store, StoreError,
};
use patrol_shared::model::MetricKind;

const ROUTES: [&str; 8] = [
    "query",
    "query_range",
    "series",
    "labels",
    "label/job/values",
    "label/__name__/values",
    "metadata",
    "rules",
];

/// A few series an hour long, one with a staleness marker.
struct Fixed(Vec<SeriesSamples>);

impl Fixed {
    fn new() -> Self {
        let labels = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let every = |f: &dyn Fn(i64) -> f64| -> Vec<(i64, f64)> {
            (0..240).map(|i| (i * 15_000, f(i))).collect()
        };
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        Fixed(vec![
            SeriesSamples {
                labels: labels(&[("__name__", "up"), ("host", "a"), ("job", "node")]),
                samples: every(&|_| 1.0),
            },
            SeriesSamples {
                labels: labels(&[("__name__", "up"), ("host", "b"), ("job", "node")]),
                samples: every(&|i| if i == 100 { stale } else { 0.0 }),
            },
            SeriesSamples {
                labels: labels(&[
                    ("__name__", "node_cpu_seconds_total"),
                    ("host", "a"),
                    ("mode", "idle"),
                ]),
                samples: every(&|i| if i == 50 { 3.0 } else { i as f64 * 7.5 }),
            },
        ])
    }

    fn matching<'a>(&'a self, m: &'a [Matcher]) -> impl Iterator<Item = &'a SeriesSamples> {
        self.0.iter().filter(move |s| {
            m.iter().all(|m| {
                let v = s.labels.iter().find(|(k, _)| *k == m.name).map_or("", |(_, v)| v);
                m.matches(v)
            })
        })
    }
}

impl Store for Fixed {
    fn last_applied(&self, _: &str, _: u64) -> u64 {
        0
    }
    fn append(&self, _: StampedBatch) -> Result<Appended, StoreError> {
        Err(StoreError::Unavailable("read-only".into()))
    }
    fn latest(&self, _: i64) -> Vec<LatestFamily> {
        Vec::new()
    }
    fn series_count(&self) -> usize {
        self.0.len()
    }
    fn select(&self, m: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<SeriesSamples>, StoreError> {
        Ok(self
            .matching(m)
            .map(|s| SeriesSamples {
                labels: s.labels.clone(),
                samples: s.samples.iter().copied().filter(|(t, _)| (mint..=maxt).contains(t)).collect(),
            })
            .collect())
    }
    fn label_names(&self, m: &[Matcher]) -> Vec<String> {
        let mut names: Vec<String> =
            self.matching(m).flat_map(|s| s.labels.iter().map(|(k, _)| k.clone())).collect();
        names.sort();
        names.dedup();
        names
    }
    fn label_values(&self, name: &str, m: &[Matcher]) -> Vec<String> {
        let mut values: Vec<String> = self
            .matching(m)
            .flat_map(|s| s.labels.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()))
            .collect();
        values.sort();
        values.dedup();
        values
    }
    fn metadata(&self) -> Vec<(String, MetricKind, String)> {
        vec![("up".into(), MetricKind::Gauge, "Whether the host reports.".into())]
    }
}

struct World {
    store: Arc<dyn Store>,
    rules: Manager,
    silences: SilenceBook,
    limits: Limits,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| World {
        store: Arc::new(Fixed::new()),
        rules: Manager::load(Settings {
            files: Vec::new(),
            defaults: true,
            interval: Duration::from_secs(60),
            external_labels: Default::default(),
        })
        .expect("the shipped rules load"),
        silences: SilenceBook::new(Silences::default(), Box::new(|_| Ok(()))),
        // Tighter than the defaults so that one input stays fast; a query
        // that outlives its deadline shows up as a libFuzzer timeout.
        limits: Limits {
            timeout: Duration::from_secs(1),
            max_samples: 1_000_000,
            max_series: 10_000,
            max_points: 1_000_000,
            ..Limits::default()
        },
    })
}

fuzz_target!(
    init: {
        // libfuzzer-sys's panic hook aborts before unwinding, which would
        // count the panics `query::parse` catches from promql-parser (see
        // docs/fuzzing.md) as crashes. With the default hook they unwind to
        // that catch; a panic nobody catches still reaches libfuzzer-sys's
        // own catch around this closure, which aborts.
        drop(std::panic::take_hook());
    },
    |data: &[u8]| {
    let Some((&route, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let _ = query::duration_ms(&text);
    let _ = api::parse_time("time", &text);
    let _ = api::parse_duration("step", &text);
    let _ = query::parse(&text);

    let (url_query, form) = match rest.iter().position(|&b| b == b'\n') {
        Some(nl) => (&rest[..nl], Some(&rest[nl + 1..])),
        None => (rest, None),
    };
    let url_query = String::from_utf8_lossy(url_query);
    let params = Params::parse(Some(&url_query), form);
    let w = world();
    let route = ROUTES[usize::from(route) % ROUTES.len()];
    let answer = api::answer(&w.store, &w.rules, &w.silences, &w.limits, route, &params, 3_600_000)
        .expect("every route fuzzed exists");
    // Whatever the input, the body is JSON.
    assert!(
        serde_json_valid(&answer.body),
        "answer is not JSON: {}",
        answer.body
    );
});

fn serde_json_valid(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body).is_ok()
}
