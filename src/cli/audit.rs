//! `patrol audit [--since TIME] [--until TIME] [--actor NAME] [--limit N]`:
//! the audit log of a running collector (`GET /api/patrol/v1/audit`, an
//! admin token), newest first: every change made through the API, and every
//! refused attempt by a known token, with who, from where and how it ended.

use clap::Args;
use serde_json::Value as Json;

use super::tickets::{call, check_time};

/// Request bodies are cut to this many characters on the list.
const REQUEST_WIDTH: usize = 100;

#[derive(Args)]
pub struct AuditArgs {
    /// Entries at or after this time (RFC 3339 or Unix seconds).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Entries at or before this time.
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Only this token's entries (the token's name).
    #[arg(long, value_name = "NAME")]
    actor: Option<String>,
    /// At most this many entries [collector's default: 100; at most 10000].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    limit: Option<u64>,
    #[command(flatten)]
    api: super::client::ApiArgs,
}

pub fn run(args: AuditArgs) -> anyhow::Result<()> {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in [("since", &args.since), ("until", &args.until)] {
        if let Some(v) = value {
            check_time(&format!("--{name}"), v)?;
            query.append_pair(name, v);
        }
    }
    if let Some(actor) = &args.actor {
        query.append_pair("actor", actor);
    }
    if let Some(limit) = args.limit {
        query.append_pair("limit", &limit.to_string());
    }
    let path = format!("/api/patrol/v1/audit?{}", query.finish());
    let (api, runtime) = args.api.connect()?;
    let entries = runtime.block_on(call(&api, hyper::Method::GET, &path, None))?;
    println!(
        "{:<24}  {:<16}  {:<8}  {:<21}  {:>6}  {:<6}  path / request",
        "at", "actor", "role", "from", "status", "method"
    );
    for e in entries.as_array().into_iter().flatten() {
        println!(
            "{:<24}  {:<16}  {:<8}  {:<21}  {:>6}  {:<6}  {}{}",
            e["at"]
                .as_i64()
                .map(patrol_shared::model::rfc3339)
                .unwrap_or_default(),
            e["actor"].as_str().unwrap_or(""),
            e["role"].as_str().unwrap_or(""),
            e["from"].as_str().unwrap_or(""),
            e["status"].to_string(),
            e["method"].as_str().unwrap_or(""),
            e["path"].as_str().unwrap_or(""),
            request_text(&e["request"])
        );
    }
    Ok(())
}

/// The request body, after the path: compact JSON cut to a readable width.
fn request_text(request: &Json) -> String {
    if request.is_null() {
        return String::new();
    }
    let text = request.to_string();
    match text.char_indices().nth(REQUEST_WIDTH) {
        Some((cut, _)) => format!(" {}…", &text[..cut]),
        None => format!(" {text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_request_bodies_are_cut_on_a_character_boundary() {
        assert_eq!(request_text(&Json::Null), "");
        assert_eq!(
            request_text(&serde_json::json!({"who": "carl"})),
            " {\"who\":\"carl\"}"
        );
        let long = Json::String("值".repeat(300));
        let cut = request_text(&long);
        assert!(cut.ends_with('…'), "{cut}");
        assert_eq!(cut.chars().count(), 1 + REQUEST_WIDTH + 1);
    }
}
