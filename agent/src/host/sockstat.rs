//! /proc/net/sockstat: sockets in use by protocol, TCP sockets in TIME_WAIT
//! and orphaned, and socket buffer memory.

use patrol_shared::model::Family;

use super::number;

pub fn parse(text: &str, out: &mut Vec<Family>) -> Result<(), String> {
    let page = rustix::param::page_size() as f64;
    for line in text.lines() {
        let Some((proto, rest)) = line.split_once(':') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
        for pair in fields.chunks(2) {
            let [key, value] = pair else {
                return Err(format!("sockstat {proto}: odd number of fields"));
            };
            let value = number(Some(value), &format!("sockstat {proto} {key}"))?;
            if proto == "sockets" {
                out.push(
                    Family::gauge(
                        format!("node_sockstat_sockets_{key}"),
                        format!("Number of IPv4 sockets in use ({key})."),
                    )
                    .with_value(value),
                );
                continue;
            }
            out.push(
                Family::gauge(
                    format!("node_sockstat_{proto}_{key}"),
                    format!("Number of {proto} sockets in state {key}."),
                )
                .with_value(value),
            );
            // The kernel counts socket memory in pages.
            if *key == "mem" {
                out.push(
                    Family::gauge(
                        format!("node_sockstat_{proto}_mem_bytes"),
                        format!("Number of {proto} sockets in state mem_bytes."),
                    )
                    .with_value(value * page),
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_in_use_time_wait_and_memory() {
        let mut out = Vec::new();
        parse(
            "sockets: used 290\nTCP: inuse 5 orphan 0 tw 2 alloc 8 mem 3\nUDP: inuse 3 mem 2\nFRAG: inuse 0 memory 0\n",
            &mut out,
        )
        .unwrap();
        let get = |n: &str| out.iter().find(|f| f.name == n).map(|f| f.series[0].value);
        assert_eq!(get("node_sockstat_sockets_used"), Some(290.0));
        assert_eq!(get("node_sockstat_TCP_inuse"), Some(5.0));
        assert_eq!(get("node_sockstat_TCP_tw"), Some(2.0));
        assert_eq!(
            get("node_sockstat_TCP_mem_bytes"),
            Some(3.0 * rustix::param::page_size() as f64)
        );
        assert_eq!(get("node_sockstat_FRAG_memory"), Some(0.0));
        assert!(parse("TCP: inuse\n", &mut Vec::new()).is_err());
    }
}
