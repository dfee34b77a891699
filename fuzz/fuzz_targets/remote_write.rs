//! Prometheus remote write: a snappy-compressed protobuf body, decoded and
//! turned into the batches the store takes. The input is tried both as a
//! body and, compressed here first, as a raw protobuf, so the fuzzer
//! reaches the protobuf decoder and the conversion without having to
//! produce valid snappy itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use patrol_collector::http::remote_write;

fn convert(body: &[u8]) {
    if let Ok(req) = remote_write::decode(body) {
        let converted = remote_write::to_sets(req);
        for (_, families) in &converted.sets {
            for family in families {
                assert!(!family.series.is_empty());
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    convert(data);
    if let Ok(body) = snap::raw::Encoder::new().compress_vec(data) {
        convert(&body);
    }
});
