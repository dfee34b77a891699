//! Live state from `ROOT/proc`: the process table (`proc/PID/comm`) and
//! the sockets that accept connections (`proc/net/{tcp,udp}{,6}`), each
//! mapped to its process through the `socket:[INODE]` links in
//! `proc/PID/fd`. A fixture supplies these as plain files and links; a
//! tree without them has no live state, and the checks that need it say
//! not-applicable.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::login_defs::line_number;
use super::tree::Tree;
use super::BaselineError;

/// Processes looked at, at most: a bound on a pathological /proc.
const MAX_PROCESSES: usize = 1 << 18;
/// Descriptors looked at, at most, when mapping sockets to processes.
const MAX_FDS: usize = 1 << 20;
/// The kernel keeps 15 characters of a program's name in `comm`.
const COMM_LEN: usize = 15;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Process {
    pub pid: u32,
    pub comm: String,
}

/// The process table, none when `ROOT/proc` has no process directories.
pub(crate) fn processes(tree: &Tree) -> Option<Vec<Process>> {
    let mut out = Vec::new();
    for name in tree.list("proc").ok()? {
        let Ok(pid) = name.parse::<u32>() else {
            continue;
        };
        if out.len() >= MAX_PROCESSES {
            break;
        }
        // A process may exit between listing and reading: skip it.
        let Ok(Some(comm)) = tree.read_bytes(&format!("proc/{pid}/comm"), 64) else {
            continue;
        };
        let comm = String::from_utf8_lossy(&comm).trim_end().to_owned();
        out.push(Process { pid, comm });
    }
    (!out.is_empty()).then_some(out)
}

/// Whether a `comm` value is the program `name` (which the kernel cut to
/// 15 characters: `systemd-journald` shows as `systemd-journal`).
pub(crate) fn is_program(comm: &str, name: &str) -> bool {
    comm == name.get(..COMM_LEN).unwrap_or(name)
}

/// A socket accepting connections: TCP in LISTEN, or an unconnected bound
/// UDP socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listener {
    pub proto: &'static str,
    pub addr: IpAddr,
    pub port: u16,
    pub inode: u64,
    /// `comm[pid]` of a process holding it.
    pub process: Option<String>,
}

impl Listener {
    /// Bound to a loopback address only: not reachable from the network.
    pub fn is_loopback(&self) -> bool {
        match self.addr {
            IpAddr::V4(a) => a.is_loopback(),
            IpAddr::V6(a) => {
                a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
        }
    }

    /// `tcp 0.0.0.0:22 sshd[400]`.
    pub fn describe(&self) -> String {
        let addr = match self.addr {
            IpAddr::V4(a) => format!("{a}:{}", self.port),
            IpAddr::V6(a) => format!("[{a}]:{}", self.port),
        };
        let process = self.process.as_deref().unwrap_or("process unknown");
        format!("{} {addr} {process}", self.proto)
    }
}

/// Every listening socket, none when `ROOT/proc/net` has no socket tables.
pub(crate) fn listeners(tree: &Tree) -> Result<Option<Vec<Listener>>, BaselineError> {
    let mut out = Vec::new();
    let mut seen_table = false;
    for (file, proto) in [
        ("proc/net/tcp", "tcp"),
        ("proc/net/tcp6", "tcp"),
        ("proc/net/udp", "udp"),
        ("proc/net/udp6", "udp"),
    ] {
        let Some(text) = tree.read(file)? else {
            continue;
        };
        seen_table = true;
        out.extend(parse_table(&text, proto));
    }
    if !seen_table {
        return Ok(None);
    }
    if !out.is_empty() {
        name_owners(tree, &mut out);
    }
    out.sort_by(|a, b| (a.proto, a.port, a.addr).cmp(&(b.proto, b.port, b.addr)));
    out.dedup_by(|a, b| (a.proto, a.port, a.addr) == (b.proto, b.port, b.addr));
    Ok(Some(out))
}

/// The accepting sockets of one `/proc/net/{tcp,udp}{,6}` table.
pub(crate) fn parse_table(text: &str, proto: &'static str) -> Vec<Listener> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line_number(i) == 1 {
            continue; // the header
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(remote), Some(state), Some(inode)) =
            (fields.get(1), fields.get(2), fields.get(3), fields.get(9))
        else {
            continue;
        };
        let accepting = match proto {
            "tcp" => *state == "0A",
            _ => *state == "07" && remote.ends_with(":0000"),
        };
        if !accepting {
            continue;
        }
        let (Some((addr, port)), Ok(inode)) = (endpoint(local), inode.parse()) else {
            continue;
        };
        out.push(Listener {
            proto,
            addr,
            port,
            inode,
            process: None,
        });
    }
    out
}

/// `0100007F:0016` or a 32-digit IPv6 address: each 32-bit word is
/// printed in the host's byte order, the port in network order.
fn endpoint(text: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    if !addr.is_ascii() {
        return None;
    }
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = addr.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some((ip, port))
}

/// Names the process holding each socket, from the `socket:[INODE]`
/// links in `proc/PID/fd`.
fn name_owners(tree: &Tree, sockets: &mut [Listener]) {
    let Some(processes) = processes(tree) else {
        return;
    };
    let mut budget = MAX_FDS;
    for p in processes {
        let dir = format!("proc/{}/fd", p.pid);
        for fd in tree.list(&dir).unwrap_or_default() {
            if budget == 0 {
                return;
            }
            budget -= 1;
            let Some(target) = tree.read_link(&format!("{dir}/{fd}")) else {
                continue;
            };
            let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok())
            else {
                continue;
            };
            for s in sockets
                .iter_mut()
                .filter(|s| s.inode == inode && s.process.is_none())
            {
                s.process = Some(format!("{}[{}]", p.comm, p.pid));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 21880 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0019 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 21990 1 0000000000000000 100 0 0 10 0
   2: 0F02000A:0016 0202000A:C350 01 00000000:00000000 02:0009C3A3 00000000     0        0 30001 4 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn tcp_listeners_and_addresses() {
        let l = parse_table(TCP, "tcp");
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].describe(), "tcp 0.0.0.0:22 process unknown");
        assert!(!l[0].is_loopback());
        assert_eq!(l[1].addr, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert!(l[1].is_loopback());
        assert_eq!(l[1].inode, 21990);
    }

    #[test]
    fn ipv6_words_are_in_host_order() {
        let (ip, port) = endpoint("00000000000000000000000001000000:0277").unwrap();
        assert_eq!(ip, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(port, 631);
        let udp = "  sl  local_address rem_address st\n  1: 00000000000000000000000000000000:14E9 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000 104 0 4321 2\n";
        let l = parse_table(udp, "udp");
        assert_eq!(l[0].describe(), "udp [::]:5353 process unknown");
    }

    #[test]
    fn program_names_are_cut_like_comm() {
        assert!(is_program("systemd-journal", "systemd-journald"));
        assert!(is_program("sshd", "sshd"));
        assert!(!is_program("sshd", "sshd-session"));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(text in "(?s)[0-9A-Fa-f: \n]{0,400}") {
            let _ = parse_table(&text, "tcp");
            let _ = parse_table(&text, "udp");
            let _ = endpoint(&text);
        }
    }
}
