//! The kernel's identity (`node_uname_info`) and the host's clock
//! (`node_time_seconds`), so a dashboard can show the kernel and skew.

use patrol_shared::model::Family;

pub fn collect(out: &mut Vec<Family>) {
    let u = rustix::system::uname();
    let text = |c: &std::ffi::CStr| c.to_string_lossy().into_owned();
    let (sysname, nodename, release, version, machine, domainname) = (
        text(u.sysname()),
        text(u.nodename()),
        text(u.release()),
        text(u.version()),
        text(u.machine()),
        text(u.domainname()),
    );
    let mut info = Family::gauge(
        "node_uname_info",
        "Labeled system information as provided by the uname system call.",
    );
    info.push(
        &[
            ("domainname", &domainname),
            ("machine", &machine),
            ("nodename", &nodename),
            ("release", &release),
            ("sysname", &sysname),
            ("version", &version),
        ],
        1.0,
    );
    out.push(info);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    out.push(
        Family::gauge(
            "node_time_seconds",
            "System time in seconds since epoch (1970).",
        )
        .with_value(now),
    );
}
