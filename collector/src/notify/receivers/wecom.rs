//! The WeCom (企业微信) group robot: a `markdown` message, at most 4096
//! bytes of content. WeCom robots are not signed; the webhook's `key` is
//! the secret. WeCom answers 200 with `errcode` ≠ 0 when it refuses.

use serde_json::json;

use super::super::config::WeComConfig;
use super::super::payload::Notification;
use super::message::{body, subject, Style};
use super::{json_body, robot_code, Context, Request};

/// WeCom's limit on markdown content, in bytes.
const MAX_CONTENT: usize = 4096;

pub fn render(c: &WeComConfig, n: &Notification, ctx: Context<'_>) -> Result<Request, String> {
    let title = format!("### {}\n", subject(n));
    let text = body(
        Style::WeCom,
        n,
        ctx.external_url,
        MAX_CONTENT.saturating_sub(title.len()),
    );
    let message = json!({
        "msgtype": "markdown",
        "markdown": { "content": format!("{title}{text}") },
    });
    Ok(Request {
        url: c.url.clone(),
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
    use crate::notify::payload::tests::sample;

    #[test]
    fn the_message_is_wecom_markdown() {
        let c = WeComConfig {
            url: "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k".into(),
        };
        let ctx = Context {
            external_url: "",
            now_ms: 0,
        };
        let req = render(&c, &sample(), ctx).unwrap();
        assert_eq!(req.url, c.url);
        let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(v["msgtype"], "markdown");
        let content = v["markdown"]["content"].as_str().unwrap();
        assert!(
            content.starts_with("### [FIRING:1] DiskFull (critical)\n"),
            "{content}"
        );
        assert!(content.len() <= MAX_CONTENT);
        assert!(check(br#"{"errcode":93000,"errmsg":"invalid webhook url"}"#).is_err());
        assert!(check(br#"{"errcode":0,"errmsg":"ok"}"#).is_ok());
    }
}
