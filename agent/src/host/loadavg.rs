//! /proc/loadavg: the 1, 5 and 15 minute load averages.

use patrol_shared::model::Family;

use super::number;

pub fn parse(text: &str, out: &mut Vec<Family>) -> Result<(), String> {
    let mut fields = text.split_ascii_whitespace();
    for (name, help) in [
        ("node_load1", "1m load average."),
        ("node_load5", "5m load average."),
        ("node_load15", "15m load average."),
    ] {
        let value = number(fields.next(), &format!("/proc/loadavg {name}"))?;
        out.push(Family::gauge(name, help).with_value(value));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_averages() {
        let mut out = Vec::new();
        parse("0.52 0.58 0.59 2/1013 12345\n", &mut out).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].name, "node_load15");
        assert_eq!(out[2].series[0].value, 0.59);
        assert!(parse("0.5\n", &mut Vec::new()).is_err());
    }
}
