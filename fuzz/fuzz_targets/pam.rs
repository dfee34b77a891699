//! PAM service files (continuations, `[...]` controls, `@include`/`include`/`substack` answered with the same text), module `name = value` files and `KEY=value` environment files.
#![no_main]

use libfuzzer_sys::fuzz_target;
use patrol_agent::baseline::fuzzing;

fuzz_target!(|data: &[u8]| {
    // The tree reads files leniently: invalid UTF-8 becomes U+FFFD.
    fuzzing::pam(&String::from_utf8_lossy(data));
});
