//! Prometheus rule files: YAML groups of alerting and recording rules,
//! checked (names, PromQL, durations, label templates) as the collector
//! checks them on load and reload.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use patrol_collector::rules::file;

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
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match file::parse(Path::new("fuzz.rules.yml"), text) {
        Ok(groups) => {
            for group in &groups {
                for rule in &group.rules {
                    assert!(!rule.name().is_empty());
                }
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
