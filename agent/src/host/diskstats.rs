//! /proc/diskstats: I/O per whole disk. Partitions, RAM disks, loop and
//! floppy devices are skipped, as node_exporter's default
//! `^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$` skips them.

use patrol_shared::model::Family;

use super::number;

/// Sectors in /proc/diskstats are always 512 bytes, whatever the device.
const SECTOR: f64 = 512.0;

/// (column after the name, metric, help, scale, counter?)
const COLUMNS: [(usize, &str, &str, f64, bool); 17] = [
    (
        0,
        "node_disk_reads_completed_total",
        "The total number of reads completed successfully.",
        1.0,
        true,
    ),
    (
        1,
        "node_disk_reads_merged_total",
        "The total number of reads merged.",
        1.0,
        true,
    ),
    (
        2,
        "node_disk_read_bytes_total",
        "The total number of bytes read successfully.",
        SECTOR,
        true,
    ),
    (
        3,
        "node_disk_read_time_seconds_total",
        "The total number of seconds spent by all reads.",
        0.001,
        true,
    ),
    (
        4,
        "node_disk_writes_completed_total",
        "The total number of writes completed successfully.",
        1.0,
        true,
    ),
    (
        5,
        "node_disk_writes_merged_total",
        "The number of writes merged.",
        1.0,
        true,
    ),
    (
        6,
        "node_disk_written_bytes_total",
        "The total number of bytes written successfully.",
        SECTOR,
        true,
    ),
    (
        7,
        "node_disk_write_time_seconds_total",
        "This is the total number of seconds spent by all writes.",
        0.001,
        true,
    ),
    (
        8,
        "node_disk_io_now",
        "The number of I/Os currently in progress.",
        1.0,
        false,
    ),
    (
        9,
        "node_disk_io_time_seconds_total",
        "Total seconds spent doing I/Os.",
        0.001,
        true,
    ),
    (
        10,
        "node_disk_io_time_weighted_seconds_total",
        "The weighted # of seconds spent doing I/Os.",
        0.001,
        true,
    ),
    (
        11,
        "node_disk_discards_completed_total",
        "The total number of discards completed successfully.",
        1.0,
        true,
    ),
    (
        12,
        "node_disk_discards_merged_total",
        "The total number of discards merged.",
        1.0,
        true,
    ),
    (
        13,
        "node_disk_discarded_sectors_total",
        "The total number of sectors discarded successfully.",
        1.0,
        true,
    ),
    (
        14,
        "node_disk_discard_time_seconds_total",
        "This is the total number of seconds spent by all discards.",
        0.001,
        true,
    ),
    (
        15,
        "node_disk_flush_requests_total",
        "The total number of flush requests completed successfully",
        1.0,
        true,
    ),
    (
        16,
        "node_disk_flush_requests_time_seconds_total",
        "This is the total number of seconds spent by all flush requests.",
        0.001,
        true,
    ),
];

pub fn parse(text: &str, out: &mut Vec<Family>) -> Result<(), String> {
    let mut families: Vec<Family> = COLUMNS
        .iter()
        .map(|(_, name, help, _, counter)| {
            if *counter {
                Family::counter(*name, *help)
            } else {
                Family::gauge(*name, *help)
            }
        })
        .collect();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        let Some(device) = fields.get(2) else {
            continue;
        };
        if excluded(device) {
            continue;
        }
        for ((column, _, _, scale, _), family) in COLUMNS.iter().zip(families.iter_mut()) {
            // Older kernels have fewer columns: report what is there.
            let Some(field) = fields.get(3 + column) else {
                break;
            };
            let value = number(Some(field), &format!("/proc/diskstats {device}"))?;
            family.push(&[("device", device)], value * scale);
        }
    }
    out.extend(families.into_iter().filter(|f| !f.series.is_empty()));
    Ok(())
}

/// node_exporter's default device exclusion, without a regex engine.
fn excluded(device: &str) -> bool {
    let digits_after = |prefix_len: usize| {
        let rest = &device[prefix_len..];
        !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit())
    };
    for prefix in ["zram", "ram", "loop", "fd"] {
        if device.starts_with(prefix) && digits_after(prefix.len()) {
            return true;
        }
    }
    for prefix in ["hd", "sd", "vd", "xvd"] {
        if let Some(rest) = device.strip_prefix(prefix) {
            let mut chars = rest.chars();
            if chars.next().is_some_and(|c| c.is_ascii_lowercase())
                && digits_after(prefix.len() + 1)
            {
                return true;
            }
        }
    }
    // nvme\d+n\d+p\d+
    if let Some(rest) = device.strip_prefix("nvme") {
        let parts: Vec<&str> = rest.splitn(2, 'n').collect();
        if let [ctrl, rest] = parts[..] {
            if let Some((ns, part)) = rest.split_once('p') {
                let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
                return all_digits(ctrl) && all_digits(ns) && all_digits(part);
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = "   7       0 loop0 43 0 712 12 0 0 0 0 0 28 12 0 0 0 0 0 0
 253       0 vda 117270 34522 8452186 55113 1140612 745339 27355762 883567 0 1159496 1024131 0 0 0 0 86093 85450
 253       1 vda1 116000 34000 8400000 55000 1140000 745000 27355000 883000 0 1159000 1024000 0 0 0 0 0 0
 259       0 nvme0n1 100 0 800 10 200 0 1600 20 0 30 30
 259       1 nvme0n1p1 1 0 8 1 2 0 16 2 0 3 3
 252       0 dm-0 5 0 40 1 6 0 48 2 1 3 4
";

    #[test]
    fn whole_disks_are_reported_and_partitions_skipped() {
        let mut out = Vec::new();
        parse(FIXTURE, &mut out).unwrap();
        let reads = out
            .iter()
            .find(|f| f.name == "node_disk_read_bytes_total")
            .unwrap();
        let devices: Vec<&str> = reads
            .series
            .iter()
            .map(|s| s.labels[0].1.as_str())
            .collect();
        assert_eq!(devices, ["vda", "nvme0n1", "dm-0"]);
        assert_eq!(reads.series[0].value, 8452186.0 * 512.0);
        let io = out
            .iter()
            .find(|f| f.name == "node_disk_io_time_seconds_total")
            .unwrap();
        assert_eq!(io.series[0].value, 1159.496);
        let flush = out
            .iter()
            .find(|f| f.name == "node_disk_flush_requests_total")
            .unwrap();
        assert_eq!(flush.series.len(), 1, "only vda has flush columns");
        let now = out.iter().find(|f| f.name == "node_disk_io_now").unwrap();
        assert_eq!(now.series[2].value, 1.0);
    }

    #[test]
    fn exclusion_matches_node_exporter() {
        for d in [
            "sda1",
            "vda12",
            "xvdb3",
            "nvme0n1p2",
            "loop7",
            "ram0",
            "zram0",
            "fd0",
        ] {
            assert!(excluded(d), "{d}");
        }
        for d in [
            "sda", "vda", "nvme0n1", "dm-0", "md0", "sdaa1", "loop", "mmcblk0",
        ] {
            assert!(!excluded(d), "{d}");
        }
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse("8 0 sda x 1 2\n", &mut Vec::new()).is_err());
    }
}
