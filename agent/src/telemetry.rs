//! The agent's own metrics (`patrol_agent_*`), sent with every cycle's host
//! metrics: what the agent costs (memory, CPU), how long each collector
//! took, and how the link and spool are doing.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use patrol_shared::model::Family;

use crate::host::CollectorReport;
use crate::link::LinkCounters;
use crate::spool::SpoolStats;

/// Totals that live across cycles.
#[derive(Debug, Default)]
pub struct AgentTelemetry {
    collector_errors: BTreeMap<&'static str, u64>,
}

/// What one cycle measured about the agent.
pub struct CycleFacts<'a> {
    pub reports: &'a [CollectorReport],
    pub cycle: Duration,
    /// Cycles run since the agent started, this one included.
    pub cycles: u64,
    pub series: usize,
    pub spool: SpoolStats,
    pub link: &'a LinkCounters,
}

impl AgentTelemetry {
    /// The agent's families for this cycle.
    pub fn families(&mut self, facts: &CycleFacts<'_>) -> Vec<Family> {
        let mut duration = Family::gauge(
            "patrol_agent_collector_duration_seconds",
            "Time each host collector took in the last cycle.",
        );
        for r in facts.reports {
            duration.push(&[("collector", r.name)], r.duration.as_secs_f64());
            let errors = self.collector_errors.entry(r.name).or_default();
            if r.error.is_some() {
                *errors += 1;
            }
        }
        let mut errors = Family::counter(
            "patrol_agent_collector_errors_total",
            "Cycles in which a host collector failed.",
        );
        for (name, n) in &self.collector_errors {
            errors.push(&[("collector", name)], *n as f64);
        }
        let mut build = Family::gauge("patrol_agent_build_info", "The agent's version.");
        build.push(&[("version", env!("CARGO_PKG_VERSION"))], 1.0);
        let own = own_process();
        let link = facts.link;
        let mut out = vec![
            build,
            duration,
            errors,
            Family::gauge(
                "patrol_agent_cycle_duration_seconds",
                "Time the last collection cycle took.",
            )
            .with_value(facts.cycle.as_secs_f64()),
            Family::counter(
                "patrol_agent_cycles_total",
                "Collection cycles run since the agent started, this one included.",
            )
            .with_value(facts.cycles as f64),
            Family::gauge("patrol_agent_series", "Series collected in the last cycle.")
                .with_value(facts.series as f64),
            Family::gauge("patrol_agent_spool_batches", "Batches waiting for an ack.")
                .with_value(facts.spool.batches as f64),
            Family::gauge(
                "patrol_agent_spool_bytes",
                "Bytes of batches waiting for an ack.",
            )
            .with_value(facts.spool.bytes as f64),
            Family::counter(
                "patrol_agent_spool_dropped_batches_total",
                "Batches dropped, oldest first, because the spool was full.",
            )
            .with_value(facts.spool.dropped_batches as f64),
            Family::counter(
                "patrol_agent_spool_corrupt_batches_total",
                "Spool records that failed their checksum and were skipped.",
            )
            .with_value(facts.spool.corrupt_batches as f64),
            Family::counter(
                "patrol_agent_batches_acked_total",
                "Batches the collector acknowledged.",
            )
            .with_value(facts.spool.acked_batches as f64),
            Family::counter(
                "patrol_agent_batches_sent_total",
                "Batches sent to the collector, resends included.",
            )
            .with_value(link.batches_sent.load(Ordering::Relaxed) as f64),
            Family::gauge(
                "patrol_agent_connected",
                "1 while the agent has a session with a collector.",
            )
            .with_value(f64::from(u8::from(link.connected.load(Ordering::Relaxed)))),
            Family::counter(
                "patrol_agent_connections_total",
                "Sessions established with a collector.",
            )
            .with_value(link.connections.load(Ordering::Relaxed) as f64),
        ];
        if let Some((rss, cpu)) = own {
            out.push(
                Family::gauge(
                    "patrol_agent_resident_memory_bytes",
                    "The agent's resident memory.",
                )
                .with_value(rss),
            );
            out.push(
                Family::counter(
                    "patrol_agent_cpu_seconds_total",
                    "CPU time the agent has used, user and system.",
                )
                .with_value(cpu),
            );
        }
        out
    }
}

/// This process's resident bytes and CPU seconds, from /proc/self.
pub fn own_process() -> Option<(f64, f64)> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which may contain spaces: skip past ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let page = rustix::param::page_size() as f64;
    Some((pages * page, (utime + stime) / ticks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_figures_are_plausible() {
        let (rss, cpu) = own_process().unwrap();
        assert!(rss > 100_000.0, "{rss}");
        assert!(cpu >= 0.0);
    }

    #[test]
    fn collector_errors_accumulate_across_cycles() {
        let mut t = AgentTelemetry::default();
        let link = LinkCounters::default();
        let reports = [CollectorReport {
            name: "cpu",
            duration: Duration::from_millis(1),
            error: Some("boom".into()),
        }];
        let facts = CycleFacts {
            reports: &reports,
            cycle: Duration::from_millis(2),
            cycles: 1,
            series: 3,
            spool: SpoolStats::default(),
            link: &link,
        };
        t.families(&facts);
        let families = t.families(&facts);
        let errors = families
            .iter()
            .find(|f| f.name == "patrol_agent_collector_errors_total")
            .unwrap();
        assert_eq!(errors.series[0].value, 2.0);
    }
}
