//! Entry points for the fuzz targets in `fuzz/` (docs/fuzzing.md): each
//! parser of the baseline over one file's text, used as the checks use it.
//! Not an API: the parsers stay crate-private, and these functions only
//! exist so that a separate crate can drive them with hostile input.
//!
//! Include directives are answered with the same text again, so a file
//! that includes itself exercises the nesting limits the way a real
//! include loop on an inspected host would.

use super::env_file::EnvFile;
use super::login_defs::{strtol, LoginDefs};
use super::pam::{effective_number, ModuleConf, PamStack};
use super::sshd_config::{seconds, SshdConfig};

/// `/etc/login.defs`, then the numbers the checks read from it.
pub fn login_defs(text: &str) {
    let defs = LoginDefs::parse(text, "/etc/login.defs");
    for name in [
        "PASS_MAX_DAYS",
        "PASS_MIN_DAYS",
        "PASS_WARN_AGE",
        "UID_MIN",
        "UMASK",
    ] {
        let _ = defs.number(name);
        let _ = defs.evidence(name);
    }
    for line in text.lines() {
        let _ = strtol(line);
    }
}

/// `sshd_config` with every `Include` answered by the same text, then the
/// time values the checks read.
pub fn sshd_config(text: &str) {
    let mut config = SshdConfig::default();
    let mut load = |_: &str| {
        Ok(vec![(
            "/etc/ssh/sshd_config.d/self.conf".into(),
            text.into(),
        )])
    };
    let _ = config.parse_into(text, "/etc/ssh/sshd_config", false, 0, &mut load);
    for entry in &config.entries {
        let _ = entry.evidence();
        for arg in &entry.args {
            let _ = seconds(arg);
        }
    }
    let _ = config.get("ClientAliveInterval");
    let _ = config.all("AllowUsers").count();
}

/// A PAM service file with every include answered by the same text, and
/// the same text read as a module's `name = value` file.
pub fn pam(text: &str) {
    let conf = ModuleConf::parse(text, "/etc/security/pwquality.conf");
    for kind in [None, Some("password"), Some("auth")] {
        let mut stack = PamStack::default();
        let mut load = |_: &str| Ok(Some(("/etc/pam.d/self".to_owned(), text.to_owned())));
        let _ = stack.parse_into(text, "/etc/pam.d/common-password", kind, 0, &mut load);
        for rule in &stack.rules {
            let _ = rule.evidence();
            let _ = effective_number(rule, &conf, "minlen");
        }
        let _ = stack.first_of(&["pam_pwquality.so", "pam_cracklib.so"]);
    }
    let env = EnvFile::parse(text, "/etc/default/useradd");
    let _ = env.get("INACTIVE");
}
