//! `patrol sla report [--from TIME] [--to TIME]`: the SLA report of a
//! running collector for the tickets opened in a period (default: the last
//! 30 days).

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::Value as Json;

#[derive(Args)]
pub struct SlaArgs {
    #[command(subcommand)]
    command: SlaCommand,
    #[command(flatten)]
    api: super::client::ApiArgs,
}

#[derive(Subcommand)]
enum SlaCommand {
    /// Met and breached clocks, median times and satisfaction for a period
    /// (times RFC 3339 or Unix seconds).
    Report {
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
    },
}

fn hours(v: &Json) -> String {
    v.as_f64()
        .map(|s| format!("{:.1} h", s / 3600.0))
        .unwrap_or_else(|| "-".into())
}

pub fn run(args: SlaArgs) -> anyhow::Result<()> {
    let SlaCommand::Report { from, to } = args.command;
    let (api, runtime) = args.api.connect()?;
    runtime.block_on(async {
        let mut query: Vec<String> = Vec::new();
        for (name, value) in [("from", &from), ("to", &to)] {
            if let Some(v) = value {
                let v: String = form_urlencoded::byte_serialize(v.as_bytes()).collect();
                query.push(format!("{name}={v}"));
            }
        }
        let path = format!("/api/patrol/v1/sla-report?{}", query.join("&"));
        let text = api
            .send_ok(hyper::Method::GET, &path, &[], Vec::new())
            .await?;
        let answer: Json =
            serde_json::from_str(&text).context("the collector's answer is not JSON")?;
        let r = &answer["data"];
        let time = |v: &Json| {
            v.as_i64()
                .map(patrol_shared::model::rfc3339)
                .unwrap_or_default()
        };
        println!(
            "SLA report, tickets opened from {} to {}",
            time(&r["from"]),
            time(&r["to"])
        );
        println!("  tickets: {}", r["tickets"]);
        println!(
            "  {:<10} {:>5} {:>9} {:>5} {:>8} {:>10}",
            "clock", "met", "breached", "open", "met %", "median"
        );
        for kind in ["response", "solution", "on_site"] {
            let c = &r["clocks"][kind];
            let ratio = c["metRatio"]
                .as_f64()
                .map(|m| format!("{:.0} %", m * 100.0))
                .unwrap_or_else(|| "-".into());
            println!(
                "  {:<10} {:>5} {:>9} {:>5} {:>8} {:>10}",
                kind,
                // A JSON value ignores width: print its text.
                c["met"].to_string(),
                c["breached"].to_string(),
                c["open"].to_string(),
                ratio,
                hours(&c["medianSeconds"])
            );
        }
        match r["satisfaction"].as_f64() {
            Some(s) => println!("  satisfaction: {s:.2} of 5 ({} ratings)", r["ratings"]),
            None => println!("  satisfaction: no ratings"),
        }
        anyhow::Ok(())
    })
}
