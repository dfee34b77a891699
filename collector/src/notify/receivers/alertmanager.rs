//! Forwarding to an existing Alertmanager: `POST <url>/api/v2/alerts` with
//! its JSON (labels, annotations, startsAt, endsAt, generatorURL); that
//! Alertmanager then groups, silences and routes on its own.
//!
//! Alertmanager resolves an alert whose `endsAt` passes without a refresh.
//! Patrol sends a firing alert again at least every repeat_interval (plus
//! group_interval ticks), so a firing alert's `endsAt` is set
//! [`Notification::refresh_ms`] past the attempt; a resolved one carries
//! its real end.

use serde::Serialize;

use super::super::config::AlertmanagerConfig;
use super::super::payload::{rfc3339, Notification};
use super::{json_body, Context, Request};
use crate::rules::alert::LabelMap;

/// One alert of Alertmanager's `postableAlerts`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PostableAlert<'a> {
    labels: &'a LabelMap,
    annotations: &'a LabelMap,
    starts_at: String,
    ends_at: String,
    #[serde(rename = "generatorURL", skip_serializing_if = "str::is_empty")]
    generator_url: &'a str,
}

/// The endpoint under an Alertmanager's base URL.
pub fn alerts_url(base: &str) -> String {
    format!("{}/api/v2/alerts", base.trim_end_matches('/'))
}

pub fn render(
    c: &AlertmanagerConfig,
    n: &Notification,
    ctx: Context<'_>,
) -> Result<Request, String> {
    if n.ticket.is_some() {
        return Err("an Alertmanager takes alerts, not ticket events".into());
    }
    let alerts: Vec<PostableAlert<'_>> = n
        .alerts
        .iter()
        .map(|a| PostableAlert {
            labels: &a.labels,
            annotations: &a.annotations,
            starts_at: rfc3339(a.starts_at),
            ends_at: match a.ends_at {
                Some(end) if n.is_resolved(a) => rfc3339(end),
                _ => rfc3339(ctx.now_ms.saturating_add(n.refresh_ms)),
            },
            generator_url: &a.generator_url,
        })
        .collect();
    Ok(Request {
        url: alerts_url(&c.url),
        headers: Vec::new(),
        body: json_body(&alerts)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::payload::tests::{sample, T0};

    #[test]
    fn alerts_are_posted_in_alertmanagers_format() {
        let c = AlertmanagerConfig {
            url: "http://127.0.0.1:9093/".into(),
        };
        let n = sample();
        let ctx = Context {
            external_url: "",
            now_ms: T0 + 120_000,
        };
        let req = render(&c, &n, ctx).unwrap();
        assert_eq!(req.url, "http://127.0.0.1:9093/api/v2/alerts");
        let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        let firing = &v[0];
        assert_eq!(firing["labels"]["host"], "db1");
        assert_eq!(firing["annotations"]["summary"], "db1: / is 96% full");
        assert_eq!(firing["startsAt"], "2024-05-01T08:00:00Z");
        assert_eq!(firing["endsAt"], rfc3339(T0 + 120_000 + n.refresh_ms));
        assert_eq!(firing["generatorURL"], "http://patrol/graph?g0.expr=x");
        let resolved = &v[1];
        assert_eq!(resolved["endsAt"], "2024-05-01T08:00:30Z");
        assert!(resolved.get("generatorURL").is_none(), "empty is left out");
        assert!(firing.get("status").is_none() && firing.get("fingerprint").is_none());
    }
}
