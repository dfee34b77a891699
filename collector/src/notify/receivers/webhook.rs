//! The webhook receiver: Alertmanager's version-4 JSON (see
//! [`webhook_message`]) for alerts, Patrol's ticket-event JSON for ticket
//! events, optionally signed. With a secret, the request
//! carries `X-Patrol-Signature: sha256=<hex>`, the HMAC-SHA256 of the exact
//! body bytes keyed with the secret, as GitHub signs its webhooks; the
//! consumer recomputes it over the raw body and compares in constant time.

use super::super::config::WebhookConfig;
use super::super::payload::{webhook_message, Notification};
use super::{hex, hmac_sha256, json_body, Context, Request};

/// The signature header's name.
pub const SIGNATURE_HEADER: &str = "X-Patrol-Signature";

/// The signature header's value for `body`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hex(&hmac_sha256(secret.as_bytes(), body)))
}

pub fn render(c: &WebhookConfig, n: &Notification, ctx: Context<'_>) -> Result<Request, String> {
    // A ticket event carries its own message (docs/incidents.md).
    let body = match &n.ticket {
        Some(message) => message.clone().into_bytes(),
        None => json_body(&webhook_message(n, ctx.external_url, c.max_alerts))?,
    };
    let mut headers = Vec::new();
    if let Some(secret) = &c.secret {
        headers.push((SIGNATURE_HEADER, signature(secret.expose(), &body)));
    }
    Ok(Request {
        url: c.url.clone(),
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::config::Secret;
    use crate::notify::payload::tests::sample;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        let c = WebhookConfig {
            url: "http://127.0.0.1:1/hook".into(),
            secret: Some(Secret("It's a Secret to Everybody".into())),
            max_alerts: 0,
        };
        let ctx = Context {
            external_url: "",
            now_ms: 0,
        };
        let req = render(&c, &sample(), ctx).unwrap();
        let (name, value) = &req.headers[0];
        assert_eq!(*name, "X-Patrol-Signature");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"It's a Secret to Everybody");
        let hex_sig = value.strip_prefix("sha256=").unwrap();
        let raw: Vec<u8> = (0..hex_sig.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex_sig[i..i + 2], 16).unwrap())
            .collect();
        ring::hmac::verify(&key, &req.body, &raw).expect("signature verifies");
        // GitHub's documented example vector for the same scheme.
        assert_eq!(
            signature("It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        let unsigned = WebhookConfig { secret: None, ..c };
        assert!(render(&unsigned, &sample(), ctx)
            .unwrap()
            .headers
            .is_empty());
    }
}
