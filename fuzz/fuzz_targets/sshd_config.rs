//! `sshd_config`: keywords, quoting, `Match` blocks and `Include` (answered with the same text, so a self-include nests to the limit), and sshd time values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use patrol_agent::baseline::fuzzing;

fuzz_target!(|data: &[u8]| {
    // The tree reads files leniently: invalid UTF-8 becomes U+FFFD.
    fuzzing::sshd_config(&String::from_utf8_lossy(data));
});
