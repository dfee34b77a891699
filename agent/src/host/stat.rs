//! /proc/stat: CPU time per CPU and mode, boot time, context switches,
//! forks, interrupts, and running and blocked processes.

use patrol_shared::model::Family;

use super::number;

/// The kernel counts CPU time in USER_HZ ticks, 100 per second on every
/// Linux architecture the agent runs on (node_exporter assumes the same).
const USER_HZ: f64 = 100.0;

/// The modes of a `cpuN` line, in the kernel's order.
const MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

pub fn parse(text: &str, out: &mut Vec<Family>) -> Result<(), String> {
    let mut cpu = Family::counter(
        "node_cpu_seconds_total",
        "Seconds the CPUs spent in each mode.",
    );
    let mut guest = Family::counter(
        "node_cpu_guest_seconds_total",
        "Seconds the CPUs spent in guests (VMs) for each mode.",
    );
    let mut singles = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(key) = fields.next() else { continue };
        if let Some(id) = key.strip_prefix("cpu").filter(|id| !id.is_empty()) {
            parse_cpu(id, fields, &mut cpu, &mut guest)?;
            continue;
        }
        let (name, help, counter) = match key {
            "btime" => (
                "node_boot_time_seconds",
                "Node boot time, in unixtime.",
                false,
            ),
            "ctxt" => (
                "node_context_switches_total",
                "Total number of context switches.",
                true,
            ),
            "processes" => ("node_forks_total", "Total number of forks.", true),
            "intr" => (
                "node_intr_total",
                "Total number of interrupts serviced.",
                true,
            ),
            "procs_running" => (
                "node_procs_running",
                "Number of processes in runnable state.",
                false,
            ),
            "procs_blocked" => (
                "node_procs_blocked",
                "Number of processes blocked waiting for I/O to complete.",
                false,
            ),
            _ => continue,
        };
        let value = number(fields.next(), &format!("/proc/stat {key}"))?;
        let family = if counter {
            Family::counter(name, help)
        } else {
            Family::gauge(name, help)
        };
        singles.push(family.with_value(value));
    }
    if cpu.series.is_empty() {
        return Err("/proc/stat: no cpuN lines".into());
    }
    out.push(cpu);
    out.push(guest);
    out.extend(singles);
    Ok(())
}

fn parse_cpu<'a>(
    id: &str,
    mut fields: impl Iterator<Item = &'a str>,
    cpu: &mut Family,
    guest: &mut Family,
) -> Result<(), String> {
    if !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("/proc/stat: odd CPU line cpu{id}"));
    }
    for mode in MODES {
        // Old kernels have fewer columns; what is absent is not reported.
        let Some(field) = fields.next() else {
            return Ok(());
        };
        let ticks = number(Some(field), &format!("/proc/stat cpu{id} {mode}"))?;
        cpu.push(&[("cpu", id), ("mode", mode)], ticks / USER_HZ);
    }
    for mode in ["user", "nice"] {
        let Some(field) = fields.next() else {
            return Ok(());
        };
        let ticks = number(Some(field), &format!("/proc/stat cpu{id} guest {mode}"))?;
        guest.push(&[("cpu", id), ("mode", mode)], ticks / USER_HZ);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = "cpu  10132153 290696 3084719 46828483 16683 0 25195 0 175628 0
cpu0 1393280 32966 572056 13343292 6130 0 17875 0 23933 0
cpu1 1335 7 2005 13345 61 0 7 0 12 3
intr 199292360 37 1 0 0 0 0 3 0 1 0
ctxt 38014093
btime 1700000000
processes 26442
procs_running 2
procs_blocked 1
softirq 5057579 250191 1481983 1647 211099 186066 0 1783454 622196 12499 508444
";

    fn find<'a>(out: &'a [Family], name: &str) -> &'a Family {
        out.iter().find(|f| f.name == name).unwrap()
    }

    #[test]
    fn cpu_time_is_per_cpu_and_mode_in_seconds() {
        let mut out = Vec::new();
        parse(FIXTURE, &mut out).unwrap();
        let cpu = find(&out, "node_cpu_seconds_total");
        assert_eq!(
            cpu.series.len(),
            16,
            "two CPUs, eight modes, no aggregate line"
        );
        let idle0 = cpu
            .series
            .iter()
            .find(|s| s.labels == vec![("cpu".into(), "0".into()), ("mode".into(), "idle".into())])
            .unwrap();
        assert_eq!(idle0.value, 133432.92);
        assert_eq!(
            find(&out, "node_cpu_guest_seconds_total").series[3].value,
            0.03
        );
        assert_eq!(find(&out, "node_boot_time_seconds").series[0].value, 1.7e9);
        assert_eq!(
            find(&out, "node_context_switches_total").series[0].value,
            38014093.0
        );
        assert_eq!(find(&out, "node_forks_total").series[0].value, 26442.0);
        assert_eq!(find(&out, "node_intr_total").series[0].value, 199292360.0);
        assert_eq!(find(&out, "node_procs_blocked").series[0].value, 1.0);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut out = Vec::new();
        assert!(parse("cpu0 12 x\n", &mut out).is_err());
        assert!(parse("", &mut out).is_err());
        assert!(parse("cpuX 1 2 3\n", &mut out).is_err());
        // A short line from an old kernel is fine.
        let mut out = Vec::new();
        parse("cpu0 1 2 3 4\n", &mut out).unwrap();
        assert_eq!(out[0].series.len(), 4);
    }
}
