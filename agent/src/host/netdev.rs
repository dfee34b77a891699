//! /proc/net/dev: bytes, packets, errors and drops per network interface,
//! received and transmitted.

use patrol_shared::model::Family;

use super::number;

const RECEIVE: [&str; 8] = [
    "bytes",
    "packets",
    "errs",
    "drop",
    "fifo",
    "frame",
    "compressed",
    "multicast",
];
const TRANSMIT: [&str; 8] = [
    "bytes",
    "packets",
    "errs",
    "drop",
    "fifo",
    "colls",
    "carrier",
    "compressed",
];

pub fn parse(text: &str, exclude: &[String], out: &mut Vec<Family>) -> Result<(), String> {
    let columns: Vec<(String, &str)> = RECEIVE
        .iter()
        .map(|c| ("receive", *c))
        .chain(TRANSMIT.iter().map(|c| ("transmit", *c)))
        .map(|(dir, c)| (format!("{dir}_{c}"), c))
        .collect();
    let mut families: Vec<Family> = columns
        .iter()
        .map(|(stat, _)| {
            Family::counter(
                format!("node_network_{stat}_total"),
                format!("Network device statistic {stat}."),
            )
        })
        .collect();
    // Two header lines, then "  name: v1 v2 …".
    for line in text.lines().skip(2) {
        let Some((device, values)) = line.split_once(':') else {
            continue;
        };
        let device = device.trim();
        if device.is_empty() || exclude.iter().any(|e| e == device) {
            continue;
        }
        let mut fields = values.split_ascii_whitespace();
        for family in families.iter_mut() {
            let value = number(fields.next(), &format!("/proc/net/dev {device}"))?;
            family.push(&[("device", device)], value);
        }
    }
    out.extend(families);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 2776770   11307    0    0    0     0          0         0  2776770   11307    0    0    0     0       0          0
  eth0:1215645     2751    1    2    0     0          0         0  1782404     4324    0    3    0   427       0          0
";

    #[test]
    fn counters_per_device() {
        let mut out = Vec::new();
        parse(FIXTURE, &[], &mut out).unwrap();
        let rx = out
            .iter()
            .find(|f| f.name == "node_network_receive_bytes_total")
            .unwrap();
        assert_eq!(rx.series.len(), 2);
        assert_eq!(rx.series[1].labels[0].1, "eth0");
        assert_eq!(rx.series[1].value, 1215645.0);
        let colls = out
            .iter()
            .find(|f| f.name == "node_network_transmit_colls_total")
            .unwrap();
        assert_eq!(colls.series[1].value, 427.0);
        let drop = out
            .iter()
            .find(|f| f.name == "node_network_transmit_drop_total")
            .unwrap();
        assert_eq!(drop.series[1].value, 3.0);
    }

    #[test]
    fn excluded_devices_are_skipped_and_garbage_is_an_error() {
        let mut out = Vec::new();
        parse(FIXTURE, &["lo".into()], &mut out).unwrap();
        assert_eq!(out[0].series.len(), 1);
        assert!(parse("h\nh\n eth0: 1 2 x\n", &[], &mut Vec::new()).is_err());
    }
}
