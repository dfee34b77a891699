//! The receiver kinds: how a [`Notification`] becomes an HTTP request for
//! each of them, and how each says it accepted one.
//!
//! A request is rendered at each attempt, not when queued, because the
//! signed kinds (DingTalk, Feishu) sign with the current time and their
//! servers refuse old signatures.

pub mod alertmanager;
pub mod dingtalk;
pub mod feishu;
pub mod message;
pub mod slack;
pub mod webhook;
pub mod wecom;

use ring::hmac;

use super::config::{ReceiverConfig, ReceiverKind};
use super::payload::Notification;

/// One HTTP POST to make.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub url: String,
    /// Besides `Host`, `Content-Type: application/json` and `User-Agent`.
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// What rendering needs besides the notification.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// `[notify] external_url`.
    pub external_url: &'a str,
    /// The time of this attempt (ms), for signatures and Alertmanager's
    /// `endsAt`.
    pub now_ms: i64,
}

/// The request that sends `n` to `receiver`.
pub fn render(
    receiver: &ReceiverConfig,
    n: &Notification,
    ctx: Context<'_>,
) -> Result<Request, String> {
    match &receiver.kind {
        ReceiverKind::Webhook(c) => webhook::render(c, n, ctx),
        ReceiverKind::DingTalk(c) => dingtalk::render(c, n, ctx),
        ReceiverKind::WeCom(c) => wecom::render(c, n, ctx),
        ReceiverKind::Feishu(c) => feishu::render(c, n, ctx),
        ReceiverKind::Slack(c) => slack::render(c, n, ctx),
        ReceiverKind::Alertmanager(c) => alertmanager::render(c, n, ctx),
    }
}

/// Checks a 2xx answer's body: the chat robots answer 200 with an error
/// code in the body when they refuse a message.
pub fn check_accepted(kind: &ReceiverKind, body: &[u8]) -> Result<(), String> {
    match kind {
        ReceiverKind::DingTalk(_) => dingtalk::check(body),
        ReceiverKind::WeCom(_) => wecom::check(body),
        ReceiverKind::Feishu(_) => feishu::check(body),
        ReceiverKind::Webhook(_) | ReceiverKind::Slack(_) | ReceiverKind::Alertmanager(_) => Ok(()),
    }
}

/// HMAC-SHA256 of `message` with `key`.
pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::sign(&key, message).as_ref().to_vec()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn json_body<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, String> {
    serde_json::to_vec(value).map_err(|e| format!("cannot encode the message as JSON: {e}"))
}

/// Reads the error code of a chat robot's JSON answer: `Ok` when `field`
/// is 0 or absent, else the code and message.
pub(crate) fn robot_code(body: &[u8], field: &str, message: &str) -> Result<(), String> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        // Not JSON: nothing to read an error from; the status said 2xx.
        return Ok(());
    };
    match v.get(field).and_then(serde_json::Value::as_i64) {
        None | Some(0) => Ok(()),
        Some(code) => Err(format!(
            "refused with {field} {code}: {}",
            v.get(message)
                .and_then(serde_json::Value::as_str)
                .unwrap_or("(no message)")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_test_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn robot_codes_are_read_from_the_body() {
        assert!(robot_code(br#"{"errcode":0,"errmsg":"ok"}"#, "errcode", "errmsg").is_ok());
        assert!(robot_code(b"ok", "errcode", "errmsg").is_ok());
        let err = robot_code(
            br#"{"errcode":310000,"errmsg":"sign not match"}"#,
            "errcode",
            "errmsg",
        )
        .unwrap_err();
        assert_eq!(err, "refused with errcode 310000: sign not match");
    }
}
