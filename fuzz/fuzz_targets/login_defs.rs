//! `/etc/login.defs`: settings and the numbers the checks read (strtol, base 0).
#![no_main]

use libfuzzer_sys::fuzz_target;
use patrol_agent::baseline::fuzzing;

fuzz_target!(|data: &[u8]| {
    // The tree reads files leniently: invalid UTF-8 becomes U+FFFD.
    fuzzing::login_defs(&String::from_utf8_lossy(data));
});
