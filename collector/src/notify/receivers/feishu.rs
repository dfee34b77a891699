//! The Feishu (飞书) custom bot: an `interactive` card whose header is the
//! subject and whose body is card markdown. A bot with signature checking
//! ("签名校验") needs `timestamp` (seconds) and `sign` in the body, where
//! sign is the base64 of HMAC-SHA256 keyed with `timestamp + "\n" +
//! secret` over an empty message (Feishu's documented scheme). It answers
//! 200 with `code` ≠ 0 when it refuses.

use base64::Engine as _;
use serde_json::json;

use super::super::config::FeishuConfig;
use super::super::payload::Notification;
use super::message::{body, subject, Style};
use super::{hmac_sha256, json_body, robot_code, Context, Request};

/// Kept well under Feishu's 30 KB limit on a card.
const MAX_TEXT: usize = 20_000;

/// The `sign` field for `timestamp_s`.
pub fn sign(secret: &str, timestamp_s: i64) -> String {
    let key = format!("{timestamp_s}\n{secret}");
    base64::engine::general_purpose::STANDARD.encode(hmac_sha256(key.as_bytes(), b""))
}

pub fn render(c: &FeishuConfig, n: &Notification, ctx: Context<'_>) -> Result<Request, String> {
    let template = if n.status() == "firing" {
        "red"
    } else {
        "green"
    };
    let mut message = json!({
        "msg_type": "interactive",
        "card": {
            "config": { "wide_screen_mode": true },
            "header": {
                "title": { "tag": "plain_text", "content": subject(n) },
                "template": template,
            },
            "elements": [
                { "tag": "markdown", "content": body(Style::Feishu, n, ctx.external_url, MAX_TEXT) },
            ],
        },
    });
    if let Some(secret) = &c.secret {
        let timestamp = ctx.now_ms.div_euclid(1000);
        message["timestamp"] = json!(timestamp.to_string());
        message["sign"] = json!(sign(secret.expose(), timestamp));
    }
    Ok(Request {
        url: c.url.clone(),
        headers: Vec::new(),
        body: json_body(&message)?,
    })
}

pub fn check(body: &[u8]) -> Result<(), String> {
    // Older bots answer with StatusCode/StatusMessage, newer with code/msg.
    robot_code(body, "code", "msg")?;
    robot_code(body, "StatusCode", "StatusMessage")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::config::Secret;
    use crate::notify::payload::tests::sample;

    #[test]
    fn the_body_is_signed_as_feishu_documents() {
        let (secret, ts) = ("demo-secret", 1_599_360_473_i64);
        let key = ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            format!("{ts}\n{secret}").as_bytes(),
        );
        let expected =
            base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&key, b"").as_ref());
        assert_eq!(sign(secret, ts), expected);

        let c = FeishuConfig {
            url: "https://open.feishu.cn/open-apis/bot/v2/hook/x".into(),
            secret: Some(Secret(secret.into())),
        };
        let ctx = Context {
            external_url: "",
            now_ms: ts * 1000 + 999,
        };
        let req = render(&c, &sample(), ctx).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(v["timestamp"], ts.to_string());
        assert_eq!(v["sign"], expected);
        assert_eq!(v["msg_type"], "interactive");
        assert_eq!(
            v["card"]["header"]["title"]["content"],
            "[FIRING:1] DiskFull (critical)"
        );
        assert_eq!(v["card"]["header"]["template"], "red");
        assert_eq!(v["card"]["elements"][0]["tag"], "markdown");
        let unsigned = FeishuConfig { secret: None, ..c };
        let v: serde_json::Value =
            serde_json::from_slice(&render(&unsigned, &sample(), ctx).unwrap().body).unwrap();
        assert!(v.get("sign").is_none());
        assert!(check(br#"{"code":19021,"msg":"sign match fail"}"#).is_err());
        assert!(check(br#"{"StatusCode":0,"StatusMessage":"success"}"#).is_ok());
    }
}
