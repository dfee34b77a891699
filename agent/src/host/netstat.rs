//! /proc/net/snmp, /proc/net/netstat and /proc/net/snmp6: protocol
//! counters as `node_netstat_<Protocol>_<Field>`, limited to node_exporter's
//! default field list (TCP connections and segments, UDP datagrams, errors).
//! node_exporter exposes these untyped; so do we.

use patrol_shared::model::Family;

use super::number;

/// snmp and netstat: a header line of field names, then a line of values,
/// both starting with "Protocol:".
pub fn parse_snmp(text: &str, out: &mut Vec<Family>) -> Result<(), String> {
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let (Some((proto, names)), Some((proto2, values))) =
            (names.split_once(':'), values.split_once(':'))
        else {
            return Err(format!("netstat: malformed line {names:?}"));
        };
        if proto != proto2 {
            return Err(format!("netstat: header {proto} followed by {proto2}"));
        }
        for (name, value) in names
            .split_ascii_whitespace()
            .zip(values.split_ascii_whitespace())
        {
            push(out, &format!("{proto}_{name}"), value)?;
        }
    }
    Ok(())
}

/// snmp6: one "Ip6InOctets 123" pair per line.
pub fn parse_snmp6(text: &str, out: &mut Vec<Family>) -> Result<(), String> {
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(key), Some(value)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Some(proto) = ["Ip6", "Icmp6", "UdpLite6", "Udp6"]
            .into_iter()
            .find(|p| key.starts_with(p))
        else {
            continue;
        };
        push(out, &format!("{proto}_{}", &key[proto.len()..]), value)?;
    }
    Ok(())
}

fn push(out: &mut Vec<Family>, key: &str, value: &str) -> Result<(), String> {
    if !wanted(key) {
        return Ok(());
    }
    let value = number(Some(value), &format!("netstat {key}"))?;
    out.push(
        Family::unknown(
            format!("node_netstat_{key}"),
            format!("Statistic {}.", key.replace('_', "")),
        )
        .with_value(value),
    );
    Ok(())
}

/// node_exporter's default `--collector.netstat.fields`:
/// `^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts|TCPOFOQueue|TCPRcvQDrop)|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$`
fn wanted(key: &str) -> bool {
    let Some((proto, field)) = key.split_once('_') else {
        return false;
    };
    if field == "InErrors" || field == "InErrs" {
        return true;
    }
    match proto {
        "Ip" => field == "Forwarding",
        "Ip6" | "IpExt" => matches!(field, "InOctets" | "OutOctets"),
        "Icmp" | "Icmp6" => matches!(field, "InMsgs" | "OutMsgs"),
        "TcpExt" => {
            field.starts_with("Listen")
                || field.starts_with("Syncookies")
                || matches!(
                    field,
                    "TCPSynRetrans" | "TCPTimeouts" | "TCPOFOQueue" | "TCPRcvQDrop"
                )
        }
        "Tcp" => matches!(
            field,
            "ActiveOpens"
                | "InSegs"
                | "OutSegs"
                | "OutRsts"
                | "PassiveOpens"
                | "RetransSegs"
                | "CurrEstab"
        ),
        "Udp" | "Udp6" => matches!(
            field,
            "InDatagrams" | "OutDatagrams" | "NoPorts" | "RcvbufErrors" | "SndbufErrors"
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNMP: &str = "Ip: Forwarding DefaultTTL InReceives
Ip: 1 64 1000
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors
Tcp: 1 200 120000 -1 300 40 5 6 7 5000 6000 12 1 9 0
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 100 2 3 90 0 0 0 0 0
";

    fn value(out: &[Family], name: &str) -> Option<f64> {
        out.iter()
            .find(|f| f.name == name)
            .map(|f| f.series[0].value)
    }

    #[test]
    fn default_fields_only() {
        let mut out = Vec::new();
        parse_snmp(SNMP, &mut out).unwrap();
        assert_eq!(value(&out, "node_netstat_Tcp_CurrEstab"), Some(7.0));
        assert_eq!(value(&out, "node_netstat_Tcp_InErrs"), Some(1.0));
        assert_eq!(value(&out, "node_netstat_Udp_InErrors"), Some(3.0));
        assert_eq!(value(&out, "node_netstat_Ip_Forwarding"), Some(1.0));
        assert_eq!(value(&out, "node_netstat_Tcp_MaxConn"), None);
        assert_eq!(value(&out, "node_netstat_Ip_DefaultTTL"), None);
        let estab = out
            .iter()
            .find(|f| f.name == "node_netstat_Tcp_CurrEstab")
            .unwrap();
        assert_eq!(estab.help, "Statistic TcpCurrEstab.");
    }

    #[test]
    fn snmp6_pairs() {
        let mut out = Vec::new();
        parse_snmp6(
            "Ip6InOctets 123\nIp6InDiscards 2\nUdp6InDatagrams 9\nUdpLite6InErrors 0\n",
            &mut out,
        )
        .unwrap();
        assert_eq!(value(&out, "node_netstat_Ip6_InOctets"), Some(123.0));
        assert_eq!(value(&out, "node_netstat_Udp6_InDatagrams"), Some(9.0));
        assert_eq!(value(&out, "node_netstat_UdpLite6_InErrors"), Some(0.0));
        assert_eq!(value(&out, "node_netstat_Ip6_InDiscards"), None);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_snmp("Tcp: CurrEstab\nUdp: 1\n", &mut Vec::new()).is_err());
        assert!(parse_snmp("Tcp: CurrEstab\nTcp: x\n", &mut Vec::new()).is_err());
    }
}
