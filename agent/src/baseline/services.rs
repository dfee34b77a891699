//! Network services the baseline wants gone (telnet, rsh, ftp, …), and the
//! signs that one is on a host: installed (its program file), enabled (a
//! systemd unit, an `inetd.conf` line, an `xinetd.d` entry not disabled),
//! running (a process) or listening (its port). SSH-009 counts all four;
//! NET-002 counts all but installed.

use super::login_defs::line_number;
use super::procfs::is_program;
use super::systemd;
use super::{BaselineError, Context, Evidence};

/// One unwanted service and how to recognise it.
pub(crate) struct Service {
    pub name: &'static str,
    /// `comm` of its daemons.
    pub programs: &'static [&'static str],
    /// Its program files, relative to the root.
    pub binaries: &'static [&'static str],
    /// Its well-known ports.
    pub ports: &'static [(&'static str, u16)],
    pub units: &'static [&'static str],
    /// Its names in `inetd.conf` and `xinetd.d`.
    pub inetd: &'static [&'static str],
}

pub(crate) const TELNET: Service = Service {
    name: "telnet",
    programs: &["in.telnetd", "telnetd"],
    binaries: &[
        "usr/sbin/in.telnetd",
        "usr/sbin/telnetd",
        "usr/libexec/telnetd",
    ],
    ports: &[("tcp", 23)],
    units: &[
        "telnet.socket",
        "telnetd.socket",
        "inetutils-telnetd.service",
    ],
    inetd: &["telnet"],
};

pub(crate) const RSH: Service = Service {
    name: "rsh",
    programs: &["in.rshd", "rshd"],
    binaries: &["usr/sbin/in.rshd", "usr/sbin/rshd"],
    ports: &[("tcp", 514)],
    units: &["rsh.socket"],
    inetd: &["shell", "rsh"],
};

pub(crate) const RLOGIN: Service = Service {
    name: "rlogin",
    programs: &["in.rlogind", "rlogind"],
    binaries: &["usr/sbin/in.rlogind", "usr/sbin/rlogind"],
    ports: &[("tcp", 513)],
    units: &["rlogin.socket"],
    inetd: &["login", "rlogin"],
};

/// NET-002's list: the remote shells and the other legacy or desktop
/// services a server does not need.
pub(crate) const UNNECESSARY: &[Service] = &[
    TELNET,
    RSH,
    RLOGIN,
    Service {
        name: "rexec",
        programs: &["in.rexecd", "rexecd"],
        binaries: &["usr/sbin/in.rexecd"],
        ports: &[("tcp", 512)],
        units: &["rexec.socket"],
        inetd: &["exec", "rexec"],
    },
    Service {
        name: "ftp",
        programs: &["vsftpd", "proftpd", "pure-ftpd", "in.ftpd", "ftpd"],
        binaries: &[
            "usr/sbin/vsftpd",
            "usr/sbin/proftpd",
            "usr/sbin/pure-ftpd",
            "usr/sbin/in.ftpd",
        ],
        ports: &[("tcp", 21)],
        units: &["vsftpd.service", "proftpd.service", "pure-ftpd.service"],
        inetd: &["ftp"],
    },
    Service {
        name: "tftp",
        programs: &["in.tftpd", "tftpd"],
        binaries: &["usr/sbin/in.tftpd"],
        ports: &[("udp", 69)],
        units: &["tftp.socket", "tftpd-hpa.service"],
        inetd: &["tftp"],
    },
    Service {
        name: "finger",
        programs: &["in.fingerd", "fingerd"],
        binaries: &["usr/sbin/in.fingerd"],
        ports: &[("tcp", 79)],
        units: &["finger.socket"],
        inetd: &["finger"],
    },
    Service {
        name: "talk",
        programs: &["in.talkd", "in.ntalkd", "talkd"],
        binaries: &["usr/sbin/in.talkd", "usr/sbin/in.ntalkd"],
        ports: &[("udp", 517), ("udp", 518)],
        units: &["talk.socket", "ntalk.socket"],
        inetd: &["talk", "ntalk"],
    },
    Service {
        name: "xinetd/inetd",
        programs: &["xinetd", "inetd"],
        binaries: &["usr/sbin/xinetd", "usr/sbin/inetd"],
        ports: &[],
        units: &["xinetd.service", "inetd.service", "openbsd-inetd.service"],
        inetd: &[],
    },
    Service {
        name: "avahi",
        programs: &["avahi-daemon"],
        binaries: &["usr/sbin/avahi-daemon"],
        ports: &[("udp", 5353)],
        units: &["avahi-daemon.service", "avahi-daemon.socket"],
        inetd: &[],
    },
    Service {
        name: "cups",
        programs: &["cupsd"],
        binaries: &["usr/sbin/cupsd"],
        ports: &[("tcp", 631)],
        units: &["cups.service", "cups.socket", "cups.path"],
        inetd: &[],
    },
];

/// Whether to count a service that is merely installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presence {
    Installed,
    Active,
}

/// Every sign of `service` on the host.
pub(crate) fn signs(
    cx: &Context<'_>,
    service: &Service,
    presence: Presence,
) -> Result<Vec<Evidence>, BaselineError> {
    let mut out = Vec::new();
    for p in cx.processes().unwrap_or_default() {
        if service
            .programs
            .iter()
            .any(|name| is_program(&p.comm, name))
        {
            out.push(Evidence::note(format!(
                "{}: {}[{}] running",
                service.name, p.comm, p.pid
            )));
        }
    }
    for l in cx.listeners()?.unwrap_or_default() {
        if service.ports.contains(&(l.proto, l.port)) {
            out.push(Evidence::note(format!(
                "{}: listening on {}",
                service.name,
                l.describe()
            )));
        }
    }
    if let Some(e) = systemd::any_enabled(&cx.tree, service.units) {
        out.push(Evidence {
            text: format!("{}: {}", service.name, e.text),
            ..e
        });
    }
    out.extend(inetd_entries(cx, service)?);
    if presence == Presence::Installed {
        for rel in service.binaries {
            if cx.tree.exists(rel) {
                out.push(Evidence::file(
                    cx.tree.show(rel),
                    format!("{}: installed", service.name),
                ));
            }
        }
    }
    Ok(out)
}

/// Enabled entries for the service in `inetd.conf` and `xinetd.d`.
fn inetd_entries(cx: &Context<'_>, service: &Service) -> Result<Vec<Evidence>, BaselineError> {
    let mut out = Vec::new();
    if service.inetd.is_empty() {
        return Ok(out);
    }
    if let Some(text) = cx.tree.read("etc/inetd.conf")? {
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            let name = line.split_whitespace().next().unwrap_or("");
            if !line.starts_with('#') && service.inetd.contains(&name) {
                out.push(Evidence::at(
                    cx.tree.show("etc/inetd.conf"),
                    line_number(i),
                    line.to_owned(),
                ));
            }
        }
    }
    for name in service.inetd {
        let rel = format!("etc/xinetd.d/{name}");
        let Some(text) = cx.tree.read(&rel)? else {
            continue;
        };
        // xinetd runs a service unless its entry says `disable = yes`.
        let disabled = text.lines().any(|l| {
            let l = l.split('#').next().unwrap_or("");
            l.split_once('=')
                .is_some_and(|(k, v)| k.trim() == "disable" && v.trim().eq_ignore_ascii_case("yes"))
        });
        if !disabled {
            out.push(Evidence::file(
                cx.tree.show(&rel),
                format!("{}: xinetd entry not disabled", service.name),
            ));
        }
    }
    Ok(out)
}
