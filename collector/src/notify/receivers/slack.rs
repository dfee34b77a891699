//! The Slack incoming webhook: `text` (the subject, also the fallback for
//! notifications) and `blocks`: a header and the body as mrkdwn, cut to
//! the 3000 characters a section takes. Slack answers 200 `ok` when it
//! accepts.

use serde_json::json;

use super::super::config::SlackConfig;
use super::super::payload::Notification;
use super::message::{body, subject, Style};
use super::{json_body, Context, Request};

/// Slack's limit on a section's text.
const MAX_SECTION: usize = 3000;
/// Slack's limit on a header's text.
const MAX_HEADER: usize = 150;

pub fn render(c: &SlackConfig, n: &Notification, ctx: Context<'_>) -> Result<Request, String> {
    let title = subject(n);
    let header: String = title.chars().take(MAX_HEADER).collect();
    let text = body(Style::Slack, n, ctx.external_url, MAX_SECTION);
    let message = json!({
        "text": title,
        "blocks": [
            { "type": "header", "text": { "type": "plain_text", "text": header } },
            { "type": "section", "text": { "type": "mrkdwn", "text": text } },
        ],
    });
    Ok(Request {
        url: c.url.clone(),
        headers: Vec::new(),
        body: json_body(&message)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::payload::tests::sample;

    #[test]
    fn the_message_has_text_and_blocks() {
        let c = SlackConfig {
            url: "https://hooks.slack.com/services/T/B/X".into(),
        };
        let ctx = Context {
            external_url: "https://patrol.example",
            now_ms: 0,
        };
        let req = render(&c, &sample(), ctx).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(v["text"], "[FIRING:1] DiskFull (critical)");
        assert_eq!(v["blocks"][0]["type"], "header");
        assert_eq!(v["blocks"][0]["text"]["type"], "plain_text");
        assert_eq!(v["blocks"][1]["text"]["type"], "mrkdwn");
        let text = v["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(text.contains("*Firing (1)*"), "{text}");
        assert!(text.contains("<https://patrol.example|Patrol>"), "{text}");
    }
}
