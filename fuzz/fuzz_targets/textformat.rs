//! Prometheus text exposition and OpenMetrics, as `patrol import` reads
//! them: both timestamp units, whatever the file says it is.
#![no_main]

use libfuzzer_sys::fuzz_target;
use patrol_collector::textformat;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = textformat::is_openmetrics(text);
    let _ = textformat::parse(text, false);
    let _ = textformat::parse(text, true);
});
