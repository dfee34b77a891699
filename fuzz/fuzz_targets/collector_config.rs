//! The collector's TOML config, read through its public loader (`CollectorConfig::load`) as
//! the binary reads it at start: parsed, paths resolved, every value
//! validated. The text is written to a file of this process first.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use patrol_collector::CollectorConfig;

fn path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("patrol-fuzz-collector-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary folder");
        dir.join("collector.toml")
    })
}

fuzz_target!(|data: &[u8]| {
    let path = path();
    std::fs::write(path, data).expect("write the config");
    match CollectorConfig::load(path) {
        Ok(config) => {
            let _ = config.problems();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
