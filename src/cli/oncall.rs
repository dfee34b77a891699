//! `patrol oncall now [--at TIME]`: who is on call on a running collector,
//! per schedule and layer, and the coverage gaps of the next 14 days.

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::Value as Json;

#[derive(Args)]
pub struct OncallArgs {
    #[command(subcommand)]
    command: OncallCommand,
    #[command(flatten)]
    api: super::client::ApiArgs,
}

#[derive(Subcommand)]
enum OncallCommand {
    /// Who is on call now (or --at a time, RFC 3339 or Unix seconds).
    Now {
        #[arg(long)]
        at: Option<String>,
    },
}

fn who(layer: &Json) -> String {
    match layer["who"].as_str() {
        Some(who) => format!(
            "{who} ({})",
            layer["source"]["type"].as_str().unwrap_or("rotation")
        ),
        None => "nobody".into(),
    }
}

pub fn run(args: OncallArgs) -> anyhow::Result<()> {
    let (api, runtime) = args.api.connect()?;
    let OncallCommand::Now { at } = args.command;
    runtime.block_on(async {
        let path = match &at {
            Some(at) => format!(
                "/api/patrol/v1/oncall?at={}",
                form_urlencoded::byte_serialize(at.as_bytes()).collect::<String>()
            ),
            None => "/api/patrol/v1/oncall".into(),
        };
        let text = api
            .send_ok(hyper::Method::GET, &path, &[], Vec::new())
            .await?;
        let answer: Json =
            serde_json::from_str(&text).context("the collector's answer is not JSON")?;
        let schedules = answer["data"]["schedules"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if schedules.is_empty() {
            println!(
                "no on-call schedules configured ([[incidents.schedules]], docs/incidents.md)"
            );
        }
        for s in schedules {
            println!(
                "{} ({}): primary {}, secondary {}",
                s["name"].as_str().unwrap_or(""),
                s["timeZone"].as_str().unwrap_or(""),
                who(&s["primary"]),
                who(&s["secondary"])
            );
            for g in s["gaps"].as_array().into_iter().flatten() {
                println!(
                    "  gap: no {} from {} to {}",
                    g["role"].as_str().unwrap_or(""),
                    g["from"]
                        .as_i64()
                        .map(patrol_shared::model::rfc3339)
                        .unwrap_or_default(),
                    g["to"]
                        .as_i64()
                        .map(patrol_shared::model::rfc3339)
                        .unwrap_or_default()
                );
            }
        }
        anyhow::Ok(())
    })
}
