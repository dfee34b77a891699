//! `patrol silence add|list|expire`: silences on a running collector,
//! through its API (`/api/v2/silences`; an operator or admin token).

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{json, Value as Json};

#[derive(Args)]
pub struct SilenceArgs {
    #[command(subcommand)]
    command: SilenceCommand,
    #[command(flatten)]
    api: super::client::ApiArgs,
}

#[derive(Subcommand)]
enum SilenceCommand {
    /// Silence the alerts matching every MATCHER (`name="value"`,
    /// `name!="value"`, `name=~"regex"`, `name!~"regex"`).
    Add {
        #[arg(required = true)]
        matchers: Vec<String>,
        /// How long, from --start.
        #[arg(long, default_value = "1h")]
        duration: String,
        /// When it starts (RFC 3339); now if absent.
        #[arg(long)]
        start: Option<String>,
        /// Who is silencing.
        #[arg(long, default_value_t = whoami())]
        author: String,
        /// Why (required).
        #[arg(long)]
        comment: String,
    },
    /// List silences (active and pending; --all for expired ones too).
    List {
        #[arg(long)]
        all: bool,
    },
    /// End a silence now.
    Expire { id: String },
}

fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| "unknown".into())
}

pub fn run(args: SilenceArgs) -> anyhow::Result<()> {
    let (api, runtime) = args.api.connect()?;
    runtime.block_on(async {
        match args.command {
            SilenceCommand::Add {
                matchers,
                duration,
                start,
                author,
                comment,
            } => {
                let parsed = matchers
                    .iter()
                    .map(|m| patrol_collector::silence::SilenceMatcher::parse(m))
                    .collect::<Result<Vec<_>, _>>()?;
                let duration_ms = patrol_collector::query::duration_ms(&duration)
                    .filter(|d| *d > 0)
                    .with_context(|| format!("--duration {duration:?}: expected e.g. 2h or 30m"))?;
                let starts = match &start {
                    Some(s) => patrol_collector::http::api::parse_time("--start", s)
                        .map_err(|e| anyhow::anyhow!("{e}"))?,
                    None => patrol_shared::model::now_ms(),
                };
                let body = json!({
                    "matchers": parsed,
                    "startsAt": patrol_shared::model::rfc3339(starts),
                    "endsAt": patrol_shared::model::rfc3339(starts + duration_ms),
                    "createdBy": author,
                    "comment": comment,
                });
                let text = api
                    .send_ok(
                        hyper::Method::POST,
                        "/api/v2/silences",
                        &[("content-type", "application/json")],
                        body.to_string().into_bytes(),
                    )
                    .await?;
                let answer: Json =
                    serde_json::from_str(&text).context("the collector's answer is not JSON")?;
                println!("{}", answer["silenceID"].as_str().unwrap_or_default());
            }
            SilenceCommand::List { all } => {
                let text = api
                    .send_ok(hyper::Method::GET, "/api/v2/silences", &[], Vec::new())
                    .await?;
                let list: Json =
                    serde_json::from_str(&text).context("the collector's answer is not JSON")?;
                println!(
                    "{:<36}  {:<8}  {:<20}  {:<20}  {:<10}  matchers / comment",
                    "id", "state", "starts", "ends", "by"
                );
                for s in list.as_array().into_iter().flatten() {
                    let state = s["status"]["state"].as_str().unwrap_or("");
                    if state == "expired" && !all {
                        continue;
                    }
                    let matchers: Vec<String> = s["matchers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|m| {
                            serde_json::from_value::<patrol_collector::silence::SilenceMatcher>(
                                m.clone(),
                            )
                            .ok()
                        })
                        .map(|m| m.to_string())
                        .collect();
                    println!(
                        "{:<36}  {:<8}  {:<20}  {:<20}  {:<10}  {} / {}",
                        s["id"].as_str().unwrap_or(""),
                        state,
                        s["startsAt"].as_str().unwrap_or(""),
                        s["endsAt"].as_str().unwrap_or(""),
                        s["createdBy"].as_str().unwrap_or(""),
                        matchers.join(", "),
                        s["comment"].as_str().unwrap_or("")
                    );
                }
            }
            SilenceCommand::Expire { id } => {
                api.send_ok(
                    hyper::Method::DELETE,
                    &format!("/api/v2/silence/{id}"),
                    &[],
                    Vec::new(),
                )
                .await?;
                println!("expired {id}");
            }
        }
        anyhow::Ok(())
    })
}
