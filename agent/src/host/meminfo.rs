//! /proc/meminfo: every field as `node_memory_<Field>[_bytes]`, named as
//! node_exporter names them (`Active(anon)` becomes `Active_anon_bytes`;
//! fields without a kB unit, such as `HugePages_Total`, have no suffix).

use patrol_shared::model::Family;

use super::number;

pub fn parse(text: &str, out: &mut Vec<Family>) -> Result<(), String> {
    let before = out.len();
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut fields = rest.split_ascii_whitespace();
        let value = number(fields.next(), &format!("/proc/meminfo {key}"))?;
        let key = key.trim().replace('(', "_").replace(')', "");
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue;
        }
        let (name, value) = match fields.next() {
            Some("kB") => (format!("node_memory_{key}_bytes"), value * 1024.0),
            _ => (format!("node_memory_{key}"), value),
        };
        out.push(Family::gauge(name, format!("Memory information field {key}.")).with_value(value));
    }
    if out.len() == before {
        return Err("/proc/meminfo: no fields".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = "MemTotal:       16316412 kB
MemFree:         1234567 kB
MemAvailable:    8000000 kB
Buffers:          200000 kB
Cached:          3000000 kB
SwapTotal:       2097148 kB
SwapFree:        2097148 kB
Active(anon):     123456 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
";

    #[test]
    fn fields_are_named_and_scaled_like_node_exporter() {
        let mut out = Vec::new();
        parse(FIXTURE, &mut out).unwrap();
        let get = |n: &str| out.iter().find(|f| f.name == n).map(|f| f.series[0].value);
        assert_eq!(get("node_memory_MemTotal_bytes"), Some(16316412.0 * 1024.0));
        assert_eq!(
            get("node_memory_MemAvailable_bytes"),
            Some(8000000.0 * 1024.0)
        );
        assert_eq!(
            get("node_memory_Active_anon_bytes"),
            Some(123456.0 * 1024.0)
        );
        assert_eq!(get("node_memory_HugePages_Total"), Some(0.0));
        assert_eq!(get("node_memory_SwapFree_bytes"), Some(2097148.0 * 1024.0));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse("MemTotal: lots kB\n", &mut Vec::new()).is_err());
        assert!(parse("nothing here\n", &mut Vec::new()).is_err());
    }
}
