//! `patrol tickets list|show|open|ack|comment|assign|resolve|close|reopen`:
//! tickets on a running collector, through its API
//! (`/api/patrol/v1/tickets`; an operator or admin token to change them).
//!
//! `list` without filters is the work queue (tickets not yet closed); with
//! any filter it searches every ticket, so that closed ones, the problem
//! library with their solutions, are found too.

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
    /// Tickets, newest first: those not yet closed, or with --all or any
    /// filter every ticket, closed ones (the problem library) included.
    List(ListArgs),
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

/// `patrol tickets list`: each filter is a parameter of
/// `GET /api/patrol/v1/tickets`; times are RFC 3339 or Unix seconds.
#[derive(Args)]
struct ListArgs {
    /// Closed tickets too (implied by any filter).
    #[arg(long)]
    all: bool,
    /// Words that must all appear (any case) in the title, description,
    /// solution, comments, host or alert name.
    #[arg(long, value_name = "WORDS")]
    search: Option<String>,
    /// Only tickets about this host.
    #[arg(long)]
    host: Option<String>,
    /// Only tickets opened by this alert.
    #[arg(long)]
    alertname: Option<String>,
    #[arg(long, value_parser = ["open", "acknowledged", "in_progress", "resolved", "closed", "reopened"])]
    state: Option<String>,
    #[arg(long, value_parser = ["fault", "consultation", "request"])]
    kind: Option<String>,
    #[arg(long, value_parser = ["critical", "high", "medium", "low"])]
    priority: Option<String>,
    /// Opened at or after this time.
    #[arg(long, value_name = "TIME")]
    from: Option<String>,
    /// Opened before this time.
    #[arg(long, value_name = "TIME")]
    to: Option<String>,
    /// At most this many tickets.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    limit: Option<u64>,
}

impl ListArgs {
    /// The query string, and whether closed tickets are to be left out
    /// here (the API has no "not closed" filter, so then `limit` is
    /// applied here too, after leaving them out).
    fn query(&self) -> anyhow::Result<(String, bool)> {
        let filters = [
            ("q", &self.search),
            ("host", &self.host),
            ("alertname", &self.alertname),
            ("state", &self.state),
            ("kind", &self.kind),
            ("priority", &self.priority),
            ("from", &self.from),
            ("to", &self.to),
        ];
        let searching = filters.iter().any(|(_, v)| v.is_some());
        let hide_closed = !self.all && !searching;
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in filters {
            let Some(value) = value else { continue };
            if matches!(name, "from" | "to") {
                check_time(&format!("--{name}"), value)?;
            }
            query.append_pair(name, value);
        }
        if let Some(limit) = self.limit.filter(|_| !hide_closed) {
            query.append_pair("limit", &limit.to_string());
        }
        Ok((query.finish(), hide_closed))
    }
}

/// Refuses a time the collector would refuse, naming the flag.
pub(super) fn check_time(flag: &str, value: &str) -> anyhow::Result<()> {
    patrol_collector::http::api::parse_time(flag, value)
        .map(|_| ())
        .map_err(|_| {
            anyhow::anyhow!(
                "{flag} {value:?}: expected RFC 3339 (2026-11-25T14:00:00Z) or Unix seconds"
            )
        })
}

/// Sends a request to the collector's Patrol API and returns the answer's
/// `data`; an answer other than 2xx is an error ([`Api::send_ok`]).
pub(super) async fn call(
    api: &super::client::Api,
    method: hyper::Method,
    path: &str,
    body: Option<&Json>,
) -> anyhow::Result<Json> {
    let (headers, bytes): (&[(&str, &str)], Vec<u8>) = match body {
        Some(b) => (
            &[("content-type", "application/json")],
            b.to_string().into_bytes(),
        ),
        None => (&[], Vec::new()),
    };
    let text = api.send_ok(method.clone(), path, headers, bytes).await?;
    let mut answer: Json = serde_json::from_str(&text)
        .with_context(|| format!("{method} {path}: the collector's answer is not JSON"))?;
    Ok(answer["data"].take())
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
        let api = &api;
        let act = |id: u64, action: Json| async move {
            let path = format!("/api/patrol/v1/tickets/{id}/actions");
            call(api, hyper::Method::POST, &path, Some(&action)).await?;
            println!("ticket {id}: done");
            anyhow::Ok(())
        };
        match args.command {
            TicketsCommand::List(list) => {
                let (query, hide_closed) = list.query()?;
                let path = format!("/api/patrol/v1/tickets?{query}");
                let tickets = call(api, hyper::Method::GET, &path, None).await?;
                let shown = tickets
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|t| !(hide_closed && t["state"] == "closed"))
                    .take(list.limit.map_or(usize::MAX, |n| n as usize));
                print_list(shown);
            }
            TicketsCommand::Show { id } => {
                let path = format!("/api/patrol/v1/tickets/{id}");
                let t = call(api, hyper::Method::GET, &path, None).await?;
                print_ticket(id, &t);
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
                let path = "/api/patrol/v1/tickets";
                let answer = call(api, hyper::Method::POST, path, Some(&body)).await?;
                println!("{}", answer["id"]);
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

/// One line per ticket; a ticket's solution (the problem library's
/// answer) on the line after it.
fn print_list<'a>(tickets: impl Iterator<Item = &'a Json>) {
    println!(
        "{:>5}  {:<12}  {:<8}  {:<12}  {:<24}  {:<10}  title",
        "id", "state", "priority", "kind", "opened", "assignee"
    );
    for t in tickets {
        println!(
            "{:>5}  {:<12}  {:<8}  {:<12}  {:<24}  {:<10}  {}",
            t["id"].to_string(),
            t["state"].as_str().unwrap_or(""),
            t["priority"].as_str().unwrap_or(""),
            t["kind"].as_str().unwrap_or(""),
            time_text(&t["createdAt"]),
            t["assignee"].as_str().unwrap_or("-"),
            t["title"].as_str().unwrap_or("")
        );
        if let Some(solution) = t["solution"].as_str().filter(|s| !s.is_empty()) {
            println!("{:>5}  solution: {solution}", "");
        }
    }
}

fn print_ticket(id: u64, t: &Json) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        list: ListArgs,
    }

    fn query(args: &[&str]) -> anyhow::Result<(String, bool)> {
        let cli = Cli::try_parse_from(std::iter::once("list").chain(args.iter().copied()))?;
        cli.list.query()
    }

    #[test]
    fn without_filters_closed_tickets_are_left_out_here() {
        assert_eq!(query(&[]).unwrap(), (String::new(), true));
        assert_eq!(
            query(&["--limit", "5"]).unwrap(),
            (String::new(), true),
            "the limit counts the tickets shown, so it is applied here"
        );
        assert_eq!(
            query(&["--all", "--limit", "5"]).unwrap(),
            ("limit=5".into(), false)
        );
    }

    #[test]
    fn filters_search_every_ticket_closed_ones_included() {
        let (q, hide_closed) = query(&[
            "--search",
            "disk full",
            "--host",
            "db",
            "--alertname",
            "DiskFilling",
            "--state",
            "closed",
            "--from",
            "2026-01-01T00:00:00Z",
            "--to",
            "1767225600",
            "--limit",
            "3",
        ])
        .unwrap();
        assert!(!hide_closed);
        assert_eq!(
            q,
            "q=disk+full&host=db&alertname=DiskFilling&state=closed\
             &from=2026-01-01T00%3A00%3A00Z&to=1767225600&limit=3"
        );
        assert!(!query(&["--priority", "high"]).unwrap().1);
    }

    #[test]
    fn bad_flags_are_refused_before_asking_the_collector() {
        let err = query(&["--from", "yesterday"]).unwrap_err().to_string();
        assert!(err.contains("--from") && err.contains("RFC 3339"), "{err}");
        assert!(query(&["--state", "done"]).is_err());
        assert!(query(&["--limit", "0"]).is_err());
    }
}
