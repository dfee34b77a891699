//! `patrol oncall now|show|override`: on-call schedules of a running
//! collector. `now` says who is on call (and the coverage gaps of the next
//! 14 days), `show` lists one schedule's shifts per layer, `override` puts
//! someone on a layer for a period or takes such an override back (an admin
//! token; the token's name is recorded as who made it).
//!
//! Times are RFC 3339 or Unix seconds, as the collector's API takes them.

use clap::{Args, Subcommand};
use serde_json::{json, Value as Json};

use super::tickets::{call, check_time};

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
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
    },
    /// One schedule's shifts per layer, from --from (default now) to --to
    /// (default 7 days later; at most 92 days), and its overrides.
    Show {
        name: String,
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        #[arg(long, value_name = "TIME")]
        to: Option<String>,
    },
    /// Put someone on a layer of a schedule from --from to --to (admin),
    /// printing the override's id; or take one back with --remove ID.
    Override(OverrideArgs),
}

#[derive(Args)]
struct OverrideArgs {
    /// The schedule, as configured.
    name: String,
    /// Who stands in.
    #[arg(long, required_unless_present = "remove")]
    who: Option<String>,
    /// When the override starts.
    #[arg(long, value_name = "TIME", required_unless_present = "remove")]
    from: Option<String>,
    /// When it ends.
    #[arg(long, value_name = "TIME", required_unless_present = "remove")]
    to: Option<String>,
    /// The layer.
    #[arg(long, default_value = "primary", value_parser = ["primary", "secondary"])]
    role: String,
    /// Why (kept with the override and in the audit log).
    #[arg(long, default_value = "")]
    reason: String,
    /// Take back the override with this id (as `show` lists them).
    #[arg(long, value_name = "ID", conflicts_with_all = ["who", "from", "to", "reason"])]
    remove: Option<u64>,
}

pub fn run(args: OncallArgs) -> anyhow::Result<()> {
    let (api, runtime) = args.api.connect()?;
    runtime.block_on(async {
        let api = &api;
        match args.command {
            OncallCommand::Now { at } => {
                let mut query = form_urlencoded::Serializer::new(String::new());
                if let Some(at) = &at {
                    check_time("--at", at)?;
                    query.append_pair("at", at);
                }
                let path = format!("/api/patrol/v1/oncall?{}", query.finish());
                let answer = call(api, hyper::Method::GET, &path, None).await?;
                print_now(&answer);
            }
            OncallCommand::Show { name, from, to } => {
                let mut query = form_urlencoded::Serializer::new(String::new());
                for (param, value) in [("from", &from), ("to", &to)] {
                    if let Some(v) = value {
                        check_time(&format!("--{param}"), v)?;
                        query.append_pair(param, v);
                    }
                }
                let path = format!(
                    "/api/patrol/v1/schedules/{}?{}",
                    segment(&name),
                    query.finish()
                );
                let schedule = call(api, hyper::Method::GET, &path, None).await?;
                print_schedule(&schedule);
            }
            OncallCommand::Override(o) => match (o.remove, o.who, o.from, o.to) {
                (Some(id), ..) => {
                    let path = format!(
                        "/api/patrol/v1/schedules/{}/overrides/{id}",
                        segment(&o.name)
                    );
                    call(api, hyper::Method::DELETE, &path, None).await?;
                    println!("removed override {id} from {}", o.name);
                }
                (None, Some(who), Some(from), Some(to)) => {
                    check_time("--from", &from)?;
                    check_time("--to", &to)?;
                    let body = json!({
                        "role": o.role, "who": who, "from": from, "to": to, "reason": o.reason,
                    });
                    let path = format!("/api/patrol/v1/schedules/{}/overrides", segment(&o.name));
                    let answer = call(api, hyper::Method::POST, &path, Some(&body)).await?;
                    println!("{}", answer["id"]);
                }
                // clap requires --who, --from and --to without --remove.
                _ => anyhow::bail!("give --who, --from and --to, or --remove ID"),
            },
        }
        anyhow::Ok(())
    })
}

/// A schedule name as one path segment: unreserved characters as they
/// are, everything else percent-encoded.
fn segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn time_text(ms: &Json) -> String {
    ms.as_i64()
        .map(patrol_shared::model::rfc3339)
        .unwrap_or_default()
}

/// "anna (rotation)", "carl (override)", "nobody".
fn who(on_call: &Json) -> String {
    match on_call["who"].as_str() {
        Some(who) => format!(
            "{who} ({})",
            on_call["source"]["type"].as_str().unwrap_or("rotation")
        ),
        None => "nobody".into(),
    }
}

fn print_now(answer: &Json) {
    let schedules = answer["schedules"].as_array().cloned().unwrap_or_default();
    if schedules.is_empty() {
        println!("no on-call schedules configured ([[incidents.schedules]], docs/incidents.md)");
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
                time_text(&g["from"]),
                time_text(&g["to"])
            );
        }
    }
}

fn print_schedule(s: &Json) {
    println!(
        "{} ({}), {} to {}",
        s["name"].as_str().unwrap_or(""),
        s["timeZone"].as_str().unwrap_or(""),
        time_text(&s["from"]),
        time_text(&s["to"])
    );
    for layer in s["layers"].as_array().into_iter().flatten() {
        println!("{}:", layer["role"].as_str().unwrap_or(""));
        for shift in layer["shifts"].as_array().into_iter().flatten() {
            println!(
                "  {}  {}  {}",
                time_text(&shift["from"]),
                time_text(&shift["to"]),
                who(&shift["on_call"])
            );
        }
    }
    let overrides = s["overrides"].as_array().cloned().unwrap_or_default();
    if !overrides.is_empty() {
        println!("overrides made over the API:");
    }
    for o in overrides {
        let reason = o["reason"].as_str().filter(|r| !r.is_empty());
        println!(
            "  {:>4}  {:<9}  {}  {}  {} (by {}){}",
            o["id"].to_string(),
            o["role"].as_str().unwrap_or(""),
            time_text(&o["starts_at"]),
            time_text(&o["ends_at"]),
            o["who"].as_str().unwrap_or(""),
            o["created_by"].as_str().unwrap_or(""),
            reason.map(|r| format!(": {r}")).unwrap_or_default()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_names_are_one_path_segment() {
        assert_eq!(segment("ops-24x7"), "ops-24x7");
        assert_eq!(segment("night shift/db"), "night%20shift%2Fdb");
        assert_eq!(segment("值班"), "%E5%80%BC%E7%8F%AD");
    }
}
