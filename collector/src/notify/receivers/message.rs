//! The human-readable message the chat receivers send: a subject line as
//! Alertmanager's default templates write it (`[FIRING:2] DiskFull db1
//! (critical)`) and a markdown body listing firing and resolved alerts,
//! in the dialect each chat speaks, cut to the size it accepts.

use super::super::payload::{Alert, Notification};

/// Which markdown dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// DingTalk's markdown: headings, bold, lists, links.
    DingTalk,
    /// WeCom's markdown: bold, links, quotes and `<font color>`.
    WeCom,
    /// Feishu's card markdown (`lark_md`): bold, links, `<font color>`.
    Feishu,
    /// Slack's mrkdwn: `*bold*`, `<url|text>`.
    Slack,
}

/// Alertmanager's default subject, or for a ticket event
/// `[Ticket #7 critical] Disk full on db: escalated to secondary (dora)`.
pub fn subject(n: &Notification) -> String {
    if let Some(t) = ticket_message(n) {
        return ticket_subject(&t);
    }
    let firing = n.firing().count();
    let mut out = match n.status() {
        "firing" => format!("[FIRING:{firing}]"),
        _ => "[RESOLVED]".to_owned(),
    };
    for v in n.group_labels.values() {
        out.push(' ');
        out.push_str(v);
    }
    let common = n.common_labels();
    let rest: Vec<&str> = common
        .iter()
        .filter(|(k, _)| !n.group_labels.contains_key(*k))
        .map(|(_, v)| v.as_str())
        .collect();
    if !rest.is_empty() {
        out.push_str(&format!(" ({})", rest.join(" ")));
    }
    out
}

fn bold(style: Style, s: &str) -> String {
    match style {
        Style::Slack => format!("*{s}*"),
        _ => format!("**{s}**"),
    }
}

fn link(style: Style, text: &str, url: &str) -> String {
    match style {
        Style::Slack => format!("<{url}|{text}>"),
        _ => format!("[{text}]({url})"),
    }
}

fn colored(style: Style, s: &str, firing: bool) -> String {
    match (style, firing) {
        (Style::WeCom, true) => format!("<font color=\"warning\">{s}</font>"),
        (Style::WeCom, false) => format!("<font color=\"info\">{s}</font>"),
        (Style::Feishu, true) => format!("<font color='red'>{s}</font>"),
        (Style::Feishu, false) => format!("<font color='green'>{s}</font>"),
        _ => s.to_owned(),
    }
}

/// A time for people: `2024-05-01 08:00:00 UTC`.
pub fn human_time(ms: i64) -> String {
    let text = super::super::payload::rfc3339(ms - ms.rem_euclid(1000));
    format!("{} UTC", text.trim_end_matches('Z').replace('T', " "))
}

fn alert_lines(style: Style, n: &Notification, a: &Alert) -> String {
    let title = a
        .annotations
        .get("summary")
        .or_else(|| a.labels.get("alertname"))
        .map_or("alert", String::as_str);
    let mut out = format!("- {}\n", bold(style, title));
    let labels: Vec<String> = a
        .labels
        .iter()
        .filter(|(k, _)| k.as_str() != "alertname")
        .map(|(k, v)| format!("`{k}={v}`"))
        .collect();
    if !labels.is_empty() {
        out.push_str(&format!("  {}\n", labels.join(" ")));
    }
    if let Some(d) = a.annotations.get("description").filter(|d| !d.is_empty()) {
        out.push_str(&format!("  {}\n", d.replace('\n', " ")));
    }
    match a.ends_at {
        Some(end) if n.is_resolved(a) => out.push_str(&format!(
            "  started {}, resolved {}\n",
            human_time(a.starts_at),
            human_time(end)
        )),
        _ => out.push_str(&format!("  started {}\n", human_time(a.starts_at))),
    }
    if let Some(url) = a.annotations.get("runbook_url").filter(|u| !u.is_empty()) {
        out.push_str(&format!("  {}\n", link(style, "runbook", url)));
    }
    out
}

/// The body: a section of firing alerts, one of resolved ones, and a link
/// to Patrol, at most `limit` bytes (alerts past it are counted instead).
pub fn body(style: Style, n: &Notification, external_url: &str, limit: usize) -> String {
    if let Some(t) = ticket_message(n) {
        return cut(ticket_body(style, &t), limit);
    }
    let mut out = String::new();
    let footer = if external_url.is_empty() {
        String::new()
    } else {
        format!("\n{}\n", link(style, "Patrol", external_url))
    };
    // Room for the "… and N more" line and the footer.
    let budget = limit.saturating_sub(footer.len() + 64);
    let mut left_out = 0;
    for (heading, firing) in [("Firing", true), ("Resolved", false)] {
        let alerts: Vec<&Alert> = if firing {
            n.firing().collect()
        } else {
            n.resolved().collect()
        };
        if alerts.is_empty() {
            continue;
        }
        let head = format!(
            "{}\n",
            colored(
                style,
                &bold(style, &format!("{heading} ({})", alerts.len())),
                firing
            )
        );
        if out.len() + head.len() > budget {
            left_out += alerts.len();
            continue;
        }
        out.push_str(&head);
        for a in alerts {
            let lines = alert_lines(style, n, a);
            if out.len() + lines.len() > budget {
                left_out += 1;
            } else {
                out.push_str(&lines);
            }
        }
    }
    if left_out > 0 {
        out.push_str(&format!("… and {left_out} more alerts\n"));
    }
    out.push_str(&footer);
    out
}

/// A ticket event's message, parsed; None for alerts.
fn ticket_message(n: &Notification) -> Option<serde_json::Value> {
    n.ticket
        .as_deref()
        .map(|t| serde_json::from_str(t).unwrap_or(serde_json::Value::Null))
}

fn text<'a>(v: &'a serde_json::Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// What happened, in a few words.
fn ticket_event_phrase(event: &serde_json::Value) -> String {
    let actor = text(event, "actor");
    match text(event, "type") {
        "opened" => format!("opened by {actor}"),
        "escalated" => {
            let to: Vec<&str> = event["to"]
                .as_array()
                .map(|a| a.iter().filter_map(|p| p.as_str()).collect())
                .unwrap_or_default();
            let level = text(event, "level").replace('_', " ");
            let mut out = format!("escalated to {level} ({})", to.join(", "));
            if let Some(round) = event["round"].as_u64().filter(|r| *r > 0) {
                out.push_str(&format!(", reminder {round}"));
            }
            out
        }
        "sla_warning" => format!(
            "{}% of the {} time used",
            event["percent"].as_u64().unwrap_or(0),
            text(event, "clock").replace('_', "-")
        ),
        "sla_breached" => format!("{} SLA breached", text(event, "clock").replace('_', "-")),
        "assigned" => format!("assigned to {} by {actor}", text(event, "to")),
        "reopened" => format!("reopened: {}", text(event, "reason")),
        "alert_recovered" => "its alert recovered".to_owned(),
        "alert_fired" => "its alert fired again".to_owned(),
        other => format!("{} by {actor}", other.replace('_', " ")),
    }
}

fn ticket_subject(m: &serde_json::Value) -> String {
    let t = &m["ticket"];
    format!(
        "[Ticket #{} {}] {}: {}",
        t["id"].as_u64().unwrap_or(0),
        text(t, "priority"),
        text(t, "title"),
        ticket_event_phrase(&m["event"])
    )
}

fn ticket_body(style: Style, m: &serde_json::Value) -> String {
    let (t, e) = (&m["ticket"], &m["event"]);
    let urgent = matches!(
        text(e, "type"),
        "escalated" | "sla_breached" | "sla_warning"
    );
    let mut out = format!(
        "{}\n",
        colored(style, &bold(style, &ticket_event_phrase(e)), urgent)
    );
    if let Some(reason) = e["reason"].as_str().filter(|r| !r.is_empty()) {
        out.push_str(&format!("- why: {reason}\n"));
    }
    out.push_str(&format!(
        "- ticket: {} ({}, {}), {}\n",
        text(t, "title"),
        text(t, "kind"),
        text(t, "priority"),
        text(t, "state").replace('_', " ")
    ));
    if let Some(host) = t["host"].as_str() {
        out.push_str(&format!("- host: `{host}`\n"));
    }
    if let Some(who) = t["assignee"].as_str() {
        out.push_str(&format!("- assignee: {who}\n"));
    }
    for c in t["sla"].as_array().into_iter().flatten() {
        let left = c["remainingSeconds"].as_i64().unwrap_or(0);
        let due = c["dueAt"]
            .as_str()
            .map_or(String::new(), |d| format!(", due {d}"));
        out.push_str(&format!(
            "- {}: {}{due} ({})\n",
            text(c, "clock").replace('_', "-"),
            text(c, "state"),
            if left >= 0 {
                format!("{} left", short_duration(left))
            } else {
                format!("{} over", short_duration(-left))
            }
        ));
    }
    if let Some(url) = t["url"].as_str().filter(|u| u.starts_with("http")) {
        out.push_str(&format!("\n{}\n", link(style, "Ticket", url)));
    }
    out
}

/// `1h 20m`, `45m`, `30s`.
fn short_duration(seconds: i64) -> String {
    let (h, m, s) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m"),
        (h, 0) => format!("{h}h"),
        (h, m) => format!("{h}h {m}m"),
    }
}

/// `s` cut to at most `limit` bytes, at a character boundary.
fn cut(mut s: String, limit: usize) -> String {
    if s.len() > limit {
        let mut end = limit.saturating_sub(3);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::payload::tests::sample;

    #[test]
    fn the_subject_is_alertmanagers_default() {
        let mut n = sample();
        assert_eq!(subject(&n), "[FIRING:1] DiskFull (critical)");
        for a in &mut n.alerts {
            a.ends_at = Some(a.starts_at + 1);
        }
        assert_eq!(subject(&n), "[RESOLVED] DiskFull (critical)");
    }

    #[test]
    fn the_body_lists_firing_then_resolved_alerts() {
        let n = sample();
        let text = body(Style::DingTalk, &n, "https://patrol.example", 10_000);
        let firing = text.find("**Firing (1)**").unwrap();
        let resolved = text.find("**Resolved (1)**").unwrap();
        assert!(firing < resolved, "{text}");
        assert!(text.contains("**db1: / is 96% full**"), "{text}");
        assert!(text.contains("`host=db1` `severity=critical`"), "{text}");
        assert!(text.contains("started 2024-05-01 08:00:00 UTC\n"), "{text}");
        assert!(text.contains("resolved 2024-05-01 08:00:30 UTC"), "{text}");
        assert!(
            text.ends_with("[Patrol](https://patrol.example)\n"),
            "{text}"
        );
        let slack = body(Style::Slack, &n, "https://patrol.example", 10_000);
        assert!(
            slack.contains("*Firing (1)*") && slack.contains("<https://patrol.example|Patrol>")
        );
        let wecom = body(Style::WeCom, &n, "", 10_000);
        assert!(
            wecom.contains("<font color=\"warning\">**Firing (1)**</font>"),
            "{wecom}"
        );
    }

    #[test]
    fn a_long_body_is_cut_and_says_how_many_are_left_out() {
        let mut n = sample();
        let one = n.alerts[0].clone();
        n.alerts = (0..100)
            .map(|i| {
                let mut a = one.clone();
                a.labels.insert("host".into(), format!("host{i:03}"));
                a
            })
            .collect();
        let text = body(Style::WeCom, &n, "https://patrol.example", 4096);
        assert!(text.len() <= 4096, "{}", text.len());
        assert!(text.contains("more alerts"), "{text}");
        assert!(text.contains("host000"));
    }

    fn ticket_notification(event: serde_json::Value) -> Notification {
        let message = serde_json::json!({
            "version": "1", "type": "ticket_event", "receiver": "ops",
            "event": event,
            "ticket": {"id": 7, "kind": "fault", "title": "Disk full on db", "host": "db",
                "priority": "critical", "state": "open", "assignee": null,
                "url": "http://patrol:9470/api/patrol/v1/tickets/7",
                "sla": [{"clock": "response", "state": "running",
                    "dueAt": "2026-12-01T12:00:00Z", "remainingSeconds": 3600}]},
        });
        Notification {
            receiver: "ops".into(),
            group_key: "ticket/7".into(),
            group_labels: Default::default(),
            alerts: Vec::new(),
            created_at: 0,
            refresh_ms: 0,
            ticket: Some(message.to_string()),
        }
    }

    #[test]
    fn a_ticket_event_reads_as_one() {
        let n = ticket_notification(serde_json::json!({
            "type": "escalated", "level": "secondary", "to": ["dora"], "round": 0,
            "reason": "not acknowledged after 50% of the response time",
            "at": "2026-12-01T11:00:00Z", "actor": "patrol"}));
        assert_eq!(
            subject(&n),
            "[Ticket #7 critical] Disk full on db: escalated to secondary (dora)"
        );
        let text = body(Style::DingTalk, &n, "", 10_000);
        assert!(text.contains("**escalated to secondary (dora)**"), "{text}");
        assert!(text.contains("- why: not acknowledged"), "{text}");
        assert!(
            text.contains("- response: running, due 2026-12-01T12:00:00Z (1h left)"),
            "{text}"
        );
        assert!(text.contains("[Ticket](http://patrol:9470/api/patrol/v1/tickets/7)"));
        assert!(body(Style::DingTalk, &n, "", 40).len() <= 40);
    }
}
