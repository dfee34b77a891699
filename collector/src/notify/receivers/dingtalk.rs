//! The DingTalk (钉钉) group robot: a `markdown` message. A robot with a
//! signing secret ("加签") needs `&timestamp=<ms>&sign=<sign>` on the URL,
//! where sign is the URL-encoded base64 of HMAC-SHA256 keyed with the
//! secret over `timestamp + "\n" + secret`; DingTalk refuses a timestamp
//! more than an hour off. It answers 200 with `errcode` ≠ 0 when it
//! refuses a message.

use base64::Engine as _;
use serde_json::json;

use super::super::config::DingTalkConfig;
use super::super::payload::Notification;
use super::message::{body, subject, Style};
use super::{hmac_sha256, json_body, robot_code, Context, Request};

/// DingTalk's limit on a markdown message's text, in bytes.
const MAX_TEXT: usize = 20_000;

/// The `sign` parameter for `timestamp_ms`, not yet URL-encoded.
pub fn sign(secret: &str, timestamp_ms: i64) -> String {
    let string_to_sign = format!("{timestamp_ms}\n{secret}");
    let mac = hmac_sha256(secret.as_bytes(), string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac)
}

/// The robot URL with the signature parameters.
pub fn signed_url(url: &str, secret: &str, timestamp_ms: i64) -> String {
    let sign: String =
        form_urlencoded::byte_serialize(sign(secret, timestamp_ms).as_bytes()).collect();
    let joiner = if url.contains('?') { '&' } else { '?' };
    format!("{url}{joiner}timestamp={timestamp_ms}&sign={sign}")
}

pub fn render(c: &DingTalkConfig, n: &Notification, ctx: Context<'_>) -> Result<Request, String> {
    let title = subject(n);
    let heading = format!("### {title}\n\n");
    let text = body(
        Style::DingTalk,
        n,
        ctx.external_url,
        MAX_TEXT.saturating_sub(heading.len()),
    );
    let message = json!({
        "msgtype": "markdown",
        "markdown": { "title": title, "text": format!("{heading}{text}") },
    });
    let url = match &c.secret {
        Some(secret) => signed_url(&c.url, secret.expose(), ctx.now_ms),
        None => c.url.clone(),
    };
    Ok(Request {
        url,
        headers: Vec::new(),
        body: json_body(&message)?,
    })
}

pub fn check(body: &[u8]) -> Result<(), String> {
    robot_code(body, "errcode", "errmsg")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::config::Secret;
    use crate::notify::payload::tests::sample;

    const SECRET: &str = "SEC0123456789abcdef";
    const TS: i64 = 1_714_550_400_123;

    #[test]
    fn the_url_is_signed_as_dingtalk_documents() {
        // The documented algorithm, step by step.
        let string_to_sign = format!("{TS}\n{SECRET}");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
        let mac = ring::hmac::sign(&key, string_to_sign.as_bytes());
        let b64 = base64::engine::general_purpose::STANDARD.encode(mac.as_ref());
        let encoded = b64
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D");
        assert_eq!(sign(SECRET, TS), b64);
        let base = "https://oapi.dingtalk.com/robot/send?access_token=abc";
        assert_eq!(
            signed_url(base, SECRET, TS),
            format!("{base}&timestamp={TS}&sign={encoded}")
        );
    }

    #[test]
    fn the_message_is_dingtalk_markdown() {
        let c = DingTalkConfig {
            url: "https://oapi.dingtalk.com/robot/send?access_token=abc".into(),
            secret: Some(Secret(SECRET.into())),
        };
        let ctx = Context {
            external_url: "https://patrol.example",
            now_ms: TS,
        };
        let req = render(&c, &sample(), ctx).unwrap();
        assert!(
            req.url.contains(&format!("&timestamp={TS}&sign=")),
            "{}",
            req.url
        );
        let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(v["msgtype"], "markdown");
        assert_eq!(v["markdown"]["title"], "[FIRING:1] DiskFull (critical)");
        let text = v["markdown"]["text"].as_str().unwrap();
        assert!(
            text.starts_with("### [FIRING:1] DiskFull (critical)\n\n**Firing (1)**"),
            "{text}"
        );
        let unsigned = DingTalkConfig { secret: None, ..c };
        assert_eq!(render(&unsigned, &sample(), ctx).unwrap().url, unsigned.url);
        assert!(check(br#"{"errcode":310000,"errmsg":"sign not match"}"#).is_err());
    }
}
