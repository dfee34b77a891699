//! The PAM password policy (AUTH-004, 005, 006, 011, 013): what the
//! `password` and `auth` stacks enforce, with each module's own file
//! (`pwquality.conf` and its `.d`, `faillock.conf`, `pwhistory.conf`)
//! supplying the values its stack line does not override, and the
//! module's compiled-in default when neither does.

use super::pam::{effective_number, ModuleConf, PamRule, PamStack};
use super::{BaselineError, Context, Evidence, Outcome};

const PWQUALITY: &str = "pam_pwquality.so";
const CRACKLIB: &str = "pam_cracklib.so";
const UNIX: &str = "pam_unix.so";

fn no_password_stack() -> Outcome {
    Outcome::not_applicable("no /etc/pam.d/common-password or /etc/pam.d/system-auth")
}

/// The quality module of the password stack and its settings file (an
/// empty one for pam_cracklib, which reads none).
fn quality<'s>(
    cx: &Context<'_>,
    stack: &'s PamStack,
) -> Result<Option<(&'s PamRule, ModuleConf)>, BaselineError> {
    let Some(rule) = stack.first_of(&[PWQUALITY, CRACKLIB]) else {
        return Ok(None);
    };
    let conf = if rule.module == PWQUALITY {
        ModuleConf::load(
            &cx.tree,
            "etc/security/pwquality.conf",
            Some("etc/security/pwquality.conf.d"),
        )?
    } else {
        ModuleConf::default()
    };
    Ok(Some((rule, conf)))
}

/// A setting in force, or the module's default with a note saying so.
fn setting(rule: &PamRule, conf: &ModuleConf, key: &str, default: i64) -> (i64, Evidence) {
    effective_number(rule, conf, key).unwrap_or_else(|| {
        (
            default,
            Evidence::note(format!(
                "{key} not set: {}'s default {default}",
                rule.module
            )),
        )
    })
}

pub(super) fn min_length(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let Some(stack) = cx.pam_password()? else {
        return Ok(no_password_stack());
    };
    if let Some((rule, conf)) = quality(cx, stack)? {
        let default = if rule.module == PWQUALITY { 8 } else { 9 };
        let (minlen, evidence) = setting(rule, &conf, "minlen", default);
        let mut evidence = vec![evidence, rule.evidence()];
        evidence.dedup();
        return Ok(Outcome::judge(minlen >= 8, evidence));
    }
    // pam_unix alone still enforces its own minlen=.
    if let Some((minlen, evidence)) = stack
        .module(UNIX)
        .find_map(|r| Some((r.arg("minlen")?.parse::<i64>().ok()?, r.evidence())))
    {
        return Ok(Outcome::judge(minlen >= 8, vec![evidence]));
    }
    Ok(Outcome::fail(vec![
        stack.absent("pam_pwquality.so or pam_cracklib.so")
    ]))
}

pub(super) fn complexity(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let Some(stack) = cx.pam_password()? else {
        return Ok(no_password_stack());
    };
    let Some((rule, conf)) = quality(cx, stack)? else {
        return Ok(Outcome::fail(vec![
            stack.absent("pam_pwquality.so or pam_cracklib.so")
        ]));
    };
    // pam_cracklib gives credits by default (1 each); pwquality does not.
    let credit_default = if rule.module == PWQUALITY { 0 } else { 1 };
    let mut evidence = vec![rule.evidence()];
    let (minclass, seen) = setting(rule, &conf, "minclass", 0);
    evidence.push(seen);
    let mut required = 0;
    for key in ["dcredit", "ucredit", "lcredit", "ocredit"] {
        let (credit, seen) = setting(rule, &conf, key, credit_default);
        if credit <= -1 {
            required += 1;
        }
        evidence.push(seen);
    }
    evidence.dedup();
    evidence.insert(
        0,
        Evidence::note(format!(
            "minclass {minclass}; {required} of dcredit/ucredit/lcredit/ocredit at -1 or below"
        )),
    );
    Ok(Outcome::judge(minclass >= 3 || required >= 3, evidence))
}

pub(super) fn lockout(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let Some(stack) = cx.pam_auth()? else {
        return Ok(Outcome::not_applicable(
            "no /etc/pam.d/common-auth, /etc/pam.d/system-auth or /etc/pam.d/password-auth",
        ));
    };
    let faillock: Vec<&PamRule> = stack.module("pam_faillock.so").collect();
    let (deny, unlock, mut evidence) = if !faillock.is_empty() {
        let conf = ModuleConf::load(&cx.tree, "etc/security/faillock.conf", None)?;
        // The authfail line is the one that counts failures.
        let rule = faillock
            .iter()
            .find(|r| r.flag("authfail"))
            .unwrap_or(&faillock[0]);
        let (deny, d) = setting(rule, &conf, "deny", 3);
        let (unlock, u) = setting(rule, &conf, "unlock_time", 600);
        (deny, unlock, vec![d, u, rule.evidence()])
    } else if let Some(rule) = stack.module("pam_tally2.so").next() {
        let (deny, d) = setting(rule, &ModuleConf::default(), "deny", 0);
        let (unlock, u) = setting(rule, &ModuleConf::default(), "unlock_time", 0);
        (deny, unlock, vec![d, u, rule.evidence()])
    } else {
        return Ok(Outcome::fail(vec![
            stack.absent("pam_faillock.so or pam_tally2.so")
        ]));
    };
    evidence.dedup();
    let ok = (1..=5).contains(&deny) && (unlock == 0 || unlock >= 300);
    Ok(Outcome::judge(ok, evidence))
}

/// pam_unix's hashing flags, weakest first.
const UNIX_ALGORITHMS: &[&str] = &[
    "bigcrypt",
    "md5",
    "blowfish",
    "sha256",
    "gost_yescrypt",
    "sha512",
    "yescrypt",
];

fn strong(method: &str) -> bool {
    method.eq_ignore_ascii_case("sha512") || method.eq_ignore_ascii_case("yescrypt")
}

pub(super) fn hashing(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let defs = cx.login_defs()?;
    let stack = cx.pam_password()?;
    if defs.is_none() && stack.is_none() {
        return Ok(Outcome::not_applicable(
            "no /etc/login.defs and no PAM password stack",
        ));
    }
    let mut methods: Vec<(String, Evidence)> = Vec::new();
    if let Some(defs) = defs {
        match defs.get("ENCRYPT_METHOD") {
            Some(s) => methods.push((
                s.value.clone(),
                defs.evidence("ENCRYPT_METHOD")
                    .unwrap_or_else(|| defs.unset("ENCRYPT_METHOD")),
            )),
            None => methods.push(("DES".into(), defs.unset("ENCRYPT_METHOD"))),
        }
    }
    if let Some(rule) = stack.and_then(|s| s.module(UNIX).next()) {
        if let Some(flag) = UNIX_ALGORITHMS.iter().rev().find(|a| rule.flag(a)) {
            methods.push(((*flag).to_owned(), rule.evidence()));
        }
    }
    let ok = !methods.is_empty() && methods.iter().all(|(m, _)| strong(m));
    Ok(Outcome::judge(
        ok,
        methods.into_iter().map(|(_, e)| e).collect(),
    ))
}

pub(super) fn history(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let Some(stack) = cx.pam_password()? else {
        return Ok(no_password_stack());
    };
    if let Some(rule) = stack.module("pam_pwhistory.so").next() {
        let conf = ModuleConf::load(&cx.tree, "etc/security/pwhistory.conf", None)?;
        let (remember, seen) = setting(rule, &conf, "remember", 10);
        let mut evidence = vec![seen, rule.evidence()];
        evidence.dedup();
        return Ok(Outcome::judge(remember >= 5, evidence));
    }
    if let Some((remember, evidence)) = stack
        .module(UNIX)
        .find_map(|r| Some((r.arg("remember")?.parse::<i64>().ok()?, r.evidence())))
    {
        return Ok(Outcome::judge(remember >= 5, vec![evidence]));
    }
    Ok(Outcome::fail(vec![
        stack.absent("pam_pwhistory.so or pam_unix.so remember=")
    ]))
}
