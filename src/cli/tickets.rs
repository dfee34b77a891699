//! `patrol tickets list|show|open|ack|comment|assign|resolve|close|reopen`:
//! tickets on a running collector, through its API
//! (`/api/patrol/v1/tickets`; an operator or admin token to change them).

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{json, Value as Json};

#[derive(Args)]
pub struct TicketsArgs {
    #[command(subcommand)]
    command: TicketsCommand,
    #[command(flatten)]
    api: super::client::ApiArgs,
}

#[derive(Subcommand)]
enum TicketsCommand {
    /// Every ticket, newest first (open ones unless --all).
    List {
        #[arg(long)]
        all: bool,
    },
    /// One ticket with its SLA clocks and timeline.
    Show { id: u64 },
    /// Open a ticket by hand.
    Open {
        title: String,
        /// fault, consultation or request.
        #[arg(long, default_value = "fault")]
        kind: String,
        /// critical, high, medium or low.
        #[arg(long, default_value = "medium")]
        priority: String,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long)]
        host: Option<String>,
        #[arg(long, default_value_t = whoami())]
        reporter: String,
        #[arg(long, default_value = "")]
        contact: String,
    },
    /// Acknowledge a ticket (stops its response clock).
    Ack { id: u64 },
    /// Add a comment.
    Comment { id: u64, text: String },
    /// Assign a ticket to someone.
    Assign { id: u64, to: String },
    /// Record the solution.
    Resolve { id: u64, solution: String },
    /// Close a resolved ticket, optionally with the customer's rating.
    Close {
        id: u64,
        /// The solution, if none was recorded when it was resolved.
        #[arg(long)]
        solution: Option<String>,
        /// 1 (poor) to 5 (excellent).
        #[arg(long)]
        rating: Option<u8>,
        #[arg(long, default_value = "")]
        rating_comment: String,
    },
    /// Reopen a resolved or closed ticket.
    Reopen { id: u64, reason: String },
}

fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| "unknown".into())
}

fn time_text(ms: &Json) -> String {
    ms.as_i64()
        .map(patrol_shared::model::rfc3339)
        .unwrap_or_default()
}

pub fn run(args: TicketsArgs) -> anyhow::Result<()> {
    let (api, runtime) = args.api.connect()?;
    runtime.block_on(async {
        let json_headers = [("content-type", "application/json")];
        let act = |id: u64, action: Json| {
            let api = &api;
            async move {
                api.send_ok(
                    hyper::Method::POST,
                    &format!("/api/patrol/v1/tickets/{id}/actions"),
                    &json_headers,
                    action.to_string().into_bytes(),
                )
                .await
                .map(|_| println!("ticket {id}: done"))
            }
        };
        match args.command {
            TicketsCommand::List { all } => {
                let text = api
                    .send_ok(
                        hyper::Method::GET,
                        "/api/patrol/v1/tickets",
                        &[],
                        Vec::new(),
                    )
                    .await?;
                let list: Json =
                    serde_json::from_str(&text).context("the collector's answer is not JSON")?;
                println!(
                    "{:>5}  {:<12}  {:<8}  {:<12}  {:<20}  {:<10}  title",
                    "id", "state", "priority", "kind", "opened", "assignee"
                );
                for t in list["data"].as_array().into_iter().flatten() {
                    let state = t["state"].as_str().unwrap_or("");
                    if state == "closed" && !all {
                        continue;
                    }
                    println!(
                        "{:>5}  {:<12}  {:<8}  {:<12}  {:<20}  {:<10}  {}",
                        t["id"],
                        state,
                        t["priority"].as_str().unwrap_or(""),
                        t["kind"].as_str().unwrap_or(""),
                        time_text(&t["createdAt"]),
                        t["assignee"].as_str().unwrap_or("-"),
                        t["title"].as_str().unwrap_or("")
                    );
                }
            }
            TicketsCommand::Show { id } => {
                let text = api
                    .send_ok(
                        hyper::Method::GET,
                        &format!("/api/patrol/v1/tickets/{id}"),
                        &[],
                        Vec::new(),
                    )
                    .await?;
                let t: Json =
                    serde_json::from_str(&text).context("the collector's answer is not JSON")?;
                let t = &t["data"];
                println!("ticket {id}: {}", t["title"].as_str().unwrap_or(""));
                println!(
                    "  {} · {} · {} · host {} · assignee {}",
                    t["kind"].as_str().unwrap_or(""),
                    t["priority"].as_str().unwrap_or(""),
                    t["state"].as_str().unwrap_or(""),
                    t["host"].as_str().unwrap_or("-"),
                    t["assignee"].as_str().unwrap_or("-")
                );
                for c in t["sla"].as_array().into_iter().flatten() {
                    println!(
                        "  SLA {:<9} {:<8} due {}  remaining {} s",
                        c["kind"].as_str().unwrap_or(""),
                        c["state"].as_str().unwrap_or(""),
                        time_text(&c["due_at"]),
                        c["remaining_ms"].as_i64().unwrap_or(0) / 1000
                    );
                }
                for e in t["timeline"].as_array().into_iter().flatten() {
                    let what = e
                        .get("what")
                        .or_else(|| e.get("kind"))
                        .cloned()
                        .unwrap_or(Json::Null);
                    println!(
                        "  {}  {:<10}  {}",
                        time_text(&e["at"]),
                        e["actor"].as_str().unwrap_or(""),
                        what
                    );
                }
            }
            TicketsCommand::Open {
                title,
                kind,
                priority,
                description,
                host,
                reporter,
                contact,
            } => {
                let body = json!({
                    "kind": kind, "title": title, "priority": priority,
                    "description": description, "host": host,
                    "reporter": reporter, "contact": contact,
                });
                let text = api
                    .send_ok(
                        hyper::Method::POST,
                        "/api/patrol/v1/tickets",
                        &json_headers,
                        body.to_string().into_bytes(),
                    )
                    .await?;
                let answer: Json =
                    serde_json::from_str(&text).context("the collector's answer is not JSON")?;
                println!("{}", answer["data"]["id"]);
            }
            TicketsCommand::Ack { id } => act(id, json!({"action": "acknowledge"})).await?,
            TicketsCommand::Comment { id, text } => {
                act(id, json!({"action": "comment", "text": text})).await?
            }
            TicketsCommand::Assign { id, to } => {
                act(id, json!({"action": "assign", "to": to})).await?
            }
            TicketsCommand::Resolve { id, solution } => {
                act(id, json!({"action": "resolve", "solution": solution})).await?
            }
            TicketsCommand::Close {
                id,
                solution,
                rating,
                rating_comment,
            } => {
                let rating = rating.map(|score| json!({"score": score, "comment": rating_comment}));
                act(
                    id,
                    json!({"action": "close", "solution": solution, "rating": rating}),
                )
                .await?
            }
            TicketsCommand::Reopen { id, reason } => {
                act(id, json!({"action": "reopen", "reason": reason})).await?
            }
        }
        anyhow::Ok(())
    })
}
