//! The security-baseline catalogue run on two fixture hosts: a hardened
//! one, on which every check passes or says why it does not apply, and a
//! weak one, on which every check that a fixture can express fails.
//!
//! git keeps neither modes (beyond the executable bit) nor owners, so each
//! tree is copied into a temporary directory and given the modes and
//! owners of the tables below before the run. Owners need root; without
//! it the checks that judge owners are left out and the test says so.

use std::fs;
use std::os::unix::fs::{lchown, symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use patrol_agent::baseline::{self, BaselineConfig, CheckResult, Inspection, Verdict};

/// 2025-06-01T00:00:00Z.
const NOW_MS: i64 = 1_748_736_000_000;

/// (path, mode, owner uid:gid); everything else is 0644 or 0755, root's.
type Modes = &'static [(&'static str, u32, Option<(u32, u32)>)];

const HARDENED_MODES: Modes = &[
    ("etc/shadow", 0o640, Some((0, 42))),
    ("etc/gshadow", 0o640, Some((0, 42))),
    ("etc/sudoers", 0o440, None),
    ("etc/sudoers.d/deploy", 0o440, None),
    ("etc/sudoers.d/old.bak", 0o440, None),
    ("etc/ssh/sshd_config", 0o600, None),
    ("etc/ssh/ssh_host_ed25519_key", 0o600, None),
    ("etc/ssh/ssh_host_rsa_key", 0o600, None),
    ("etc/cron.daily/logrotate", 0o755, None),
    ("usr/bin/ls", 0o755, None),
    ("usr/bin/passwd", 0o4755, None),
    ("usr/sbin/sshd", 0o755, None),
    ("usr/lib/shared", 0o1777, None),
    ("var/log/auth.log", 0o640, Some((0, 4))),
    ("var/log/syslog", 0o640, Some((104, 4))),
];

const WEAK_MODES: Modes = &[
    ("etc/passwd", 0o666, None),
    ("etc/shadow", 0o644, None),
    ("etc/group", 0o666, None),
    ("etc/gshadow", 0o644, None),
    ("etc/sudoers", 0o440, None),
    ("etc/sudoers.d/alice", 0o644, None),
    ("etc/ssh/sshd_config", 0o666, None),
    ("etc/ssh/ssh_host_ed25519_key", 0o644, None),
    ("etc/crontab", 0o666, None),
    ("etc/cron.d/backup", 0o644, Some((1000, 1000))),
    ("etc/shared", 0o777, None),
    ("usr/bin/backup.sh", 0o777, None),
    ("usr/bin/orphan", 0o755, Some((4242, 4242))),
    ("usr/sbin/in.telnetd", 0o755, None),
    ("var/log/auth.log", 0o644, Some((0, 4))),
];

/// Checks whose verdict depends on file owners, which only root can set.
const OWNER_CHECKS: &[&str] = &[
    "FILE-001", "FILE-002", "FILE-007", "FILE-008", "SSH-008", "AUD-005",
];

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/baseline")
        .join(name)
}

/// Copies `from` into `to`, links as links.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_symlink() {
            symlink(fs::read_link(entry.path()).unwrap(), &target).unwrap();
        } else if kind.is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Default modes and owners for everything, then the table's.
fn set_modes(dir: &Path, root: bool) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = fs::symlink_metadata(&path).unwrap();
        if meta.file_type().is_symlink() {
            if root {
                lchown(&path, Some(0), Some(0)).unwrap();
            }
            continue;
        }
        let mode = if meta.is_dir() { 0o755 } else { 0o644 };
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        if root {
            lchown(&path, Some(0), Some(0)).unwrap();
        }
        if meta.is_dir() {
            set_modes(&path, root);
        }
    }
}

/// The fixture `name` in a temporary directory, with `modes` applied.
fn install(name: &str, modes: Modes) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixture(name), dir.path());
    let root = is_root();
    set_modes(dir.path(), root);
    for (rel, mode, owner) in modes {
        let path = dir.path().join(rel);
        fs::set_permissions(&path, fs::Permissions::from_mode(*mode))
            .unwrap_or_else(|e| panic!("{rel}: {e}"));
        if let (Some((uid, gid)), true) = (owner, root) {
            lchown(&path, Some(*uid), Some(*gid)).unwrap();
        }
    }
    dir
}

/// The settings the fixtures are written for: a database host (RES-004).
fn config() -> BaselineConfig {
    BaselineConfig {
        database: true,
        ..BaselineConfig::default()
    }
}

fn inspect(name: &str, modes: Modes) -> (tempfile::TempDir, Inspection) {
    let dir = install(name, modes);
    let inspection = baseline::run_with(dir.path(), name, NOW_MS, &config());
    (dir, inspection)
}

fn result<'a>(inspection: &'a Inspection, id: &str) -> &'a CheckResult {
    inspection
        .result(id)
        .unwrap_or_else(|| panic!("{id} missing from the inspection"))
}

fn evidence(inspection: &Inspection, id: &str) -> Vec<String> {
    result(inspection, id)
        .evidence
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Asserts some evidence line of `id` is exactly `line`.
#[track_caller]
fn assert_evidence(inspection: &Inspection, id: &str, line: &str) {
    let all = evidence(inspection, id);
    assert!(
        all.iter().any(|e| e == line),
        "{id}: no {line:?} in {all:#?}"
    );
}

/// Asserts every check's verdict against `expected`, which must list the
/// whole catalogue in order.
fn assert_verdicts(inspection: &Inspection, expected: &[(&str, Verdict)]) {
    let ids: Vec<&str> = expected.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        ids,
        baseline::check_ids(),
        "the table must list every check in order"
    );
    let root = is_root();
    if !root {
        eprintln!("not root: owners cannot be set, skipping {OWNER_CHECKS:?}");
    }
    let mut wrong = Vec::new();
    for (id, want) in expected {
        if !root && OWNER_CHECKS.contains(id) {
            continue;
        }
        let r = result(inspection, id);
        if r.verdict != *want {
            wrong.push(format!(
                "{id}: {:?}, expected {want:?}; reason {:?}; evidence {:?}",
                r.verdict,
                r.reason,
                r.evidence
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            ));
        }
        match r.verdict {
            Verdict::NotApplicable | Verdict::Error => {
                assert!(
                    r.reason.as_deref().is_some_and(|s| !s.is_empty()),
                    "{id} needs a reason"
                )
            }
            Verdict::Fail => assert!(!r.evidence.is_empty(), "{id} failed without evidence"),
            Verdict::Pass => {}
        }
    }
    assert!(wrong.is_empty(), "wrong verdicts:\n{}", wrong.join("\n"));
}

#[test]
fn hardened_host_passes_every_check_it_can() {
    use Verdict::{NotApplicable as NA, Pass};
    let (_dir, inspection) = inspect("hardened", HARDENED_MODES);
    #[rustfmt::skip]
    let expected = [
        ("AUTH-001", Pass), ("AUTH-002", Pass), ("AUTH-003", Pass), ("AUTH-004", Pass),
        ("AUTH-005", Pass), ("AUTH-006", Pass), ("AUTH-007", Pass), ("AUTH-008", Pass),
        ("AUTH-009", Pass), ("AUTH-010", Pass), ("AUTH-011", Pass), ("AUTH-012", Pass),
        ("AUTH-013", Pass), ("AUTH-014", Pass),
        ("SSH-001", Pass), ("SSH-002", Pass), ("SSH-003", Pass), ("SSH-004", Pass),
        ("SSH-005", Pass), ("SSH-006", Pass), ("SSH-007", Pass), ("SSH-008", Pass),
        ("SSH-009", Pass),
        ("FILE-001", Pass), ("FILE-002", Pass), ("FILE-003", Pass), ("FILE-004", Pass),
        ("FILE-005", Pass), ("FILE-006", Pass), ("FILE-007", Pass), ("FILE-008", Pass),
        ("ACC-001", Pass), ("ACC-002", Pass),
        ("AUD-001", Pass), ("AUD-002", Pass), ("AUD-003", Pass), ("AUD-004", Pass),
        ("AUD-005", Pass), ("AUD-006", Pass), ("AUD-007", Pass),
        ("NET-001", Pass), ("NET-002", Pass), ("NET-003", Pass), ("NET-004", Pass),
        ("NET-005", Pass), ("NET-006", Pass), ("NET-007", Pass),
        ("PATCH-001", Pass), ("PATCH-002", Pass),
        ("KRNL-001", Pass), ("KRNL-002", Pass), ("KRNL-003", Pass),
        ("IDS-001", Pass),
        ("FW-001", Pass), ("FW-002", Pass),
        ("MAL-001", Pass), ("MAL-002", Pass),
        // statvfs under a fixture would measure the test machine's disk.
        ("RES-001", NA), ("RES-002", Pass), ("RES-003", Pass), ("RES-004", Pass),
    ];
    assert_verdicts(&inspection, &expected);
    if is_root() {
        assert_eq!(inspection.score, Some(100.0));
    }
    assert_eq!(inspection.summary.error, 0);
}

#[test]
fn hardened_evidence_names_file_and_line() {
    let (_dir, i) = inspect("hardened", HARDENED_MODES);
    // login.defs: the last PASS_MAX_DAYS line wins.
    assert_evidence(&i, "AUTH-001", "/etc/login.defs:6: PASS_MAX_DAYS 90");
    // pwquality: the main file after its .d directory.
    assert_evidence(
        &i,
        "AUTH-004",
        "/etc/security/pwquality.conf:3: minlen = 14",
    );
    assert_evidence(
        &i,
        "AUTH-005",
        "/etc/security/pwquality.conf.d/50-baseline.conf:2: minclass = 3",
    );
    assert_evidence(&i, "AUTH-006", "/etc/security/faillock.conf:3: deny = 5");
    assert_evidence(
        &i,
        "AUTH-006",
        "/etc/security/faillock.conf:4: unlock_time = 900",
    );
    assert_evidence(&i, "AUTH-012", "/etc/profile.d/tmout.sh:3: readonly TMOUT");
    assert_evidence(
        &i,
        "AUTH-013",
        "/etc/security/pwhistory.conf:2: remember = 12",
    );
    // sshd: the included file comes first, and the first value wins.
    assert_evidence(
        &i,
        "SSH-001",
        "/etc/ssh/sshd_config.d/50-baseline.conf:2: PermitRootLogin no",
    );
    assert_evidence(&i, "SSH-003", "/etc/ssh/sshd_config:8: MaxAuthTries 4");
    assert_evidence(&i, "SSH-004", "idle sessions end after 900 s");
    assert_evidence(&i, "SSH-005", "/etc/ssh/sshd_config:11: LoginGraceTime 1m");
    if is_root() {
        assert_evidence(&i, "SSH-008", "/etc/ssh/sshd_config: mode 0600, owner 0:0");
        assert_evidence(&i, "FILE-002", "/etc/shadow: mode 0640, owner 0:42");
    }
    // sudoers.d/old.bak is not read (a dot in the name); deploy is a
    // system account.
    assert_evidence(
        &i,
        "FILE-004",
        "/etc/sudoers.d/deploy:2: deploy ALL=(root) NOPASSWD: ALL (system account, allowed)",
    );
    assert!(!evidence(&i, "FILE-004")
        .iter()
        .any(|e| e.contains("old.bak")));
    assert_evidence(&i, "ACC-001", "/etc/group:7: sudo (GID 27): alice");
    assert_evidence(&i, "AUD-001", "auditd[310] running");
    assert_evidence(&i, "AUD-003", "systemd-journal[321] running");
    // logrotate.d/rsyslog.dpkg-old is skipped as logrotate skips it.
    assert_evidence(&i, "AUD-004", "rotated logs kept 182 days");
    assert_evidence(
        &i,
        "AUD-006",
        "/etc/rsyslog.d/90-forward.conf:2: *.* @@loghost.example.internal:514 — forwards to loghost.example.internal:514 (tcp)",
    );
    assert_evidence(&i, "NET-001", "tcp 0.0.0.0:22 sshd[400] (allowed)");
    assert_evidence(&i, "NET-001", "tcp [::]:22 sshd[400] (allowed)");
    assert_evidence(
        &i,
        "NET-001",
        "udp 127.0.0.1:323 chronyd[330] (loopback only)",
    );
    assert_evidence(
        &i,
        "NET-001",
        "tcp 127.0.0.1:3310 clamd[500] (loopback only)",
    );
    assert_evidence(
        &i,
        "NET-006",
        "/etc/exports:2: /srv/backup 10.0.0.0/24(ro,sync,root_squash,no_subtree_check)",
    );
    assert_evidence(
        &i,
        "PATCH-001",
        "0 security updates pending (4 installed packages against 1 security lists)",
    );
    assert_evidence(
        &i,
        "PATCH-002",
        "/proc/sys/kernel/osrelease: running 6.8.0-45-generic",
    );
    assert_evidence(&i, "FW-001", "/etc/nftables.conf:6: policy drop");
    assert_evidence(
        &i,
        "FW-001",
        "/etc/systemd/system/sysinit.target.wants/nftables.service: nftables.service enabled",
    );
    assert_evidence(
        &i,
        "MAL-002",
        "/var/lib/clamav/daily.cld: version 27654, built 2025-05-31 (0 days old)",
    );
    assert_evidence(&i, "RES-004", "/proc/swaps:2: swap /swap.img (2097148 kB)");
    let disk = result(&i, "RES-001");
    assert!(
        disk.reason.as_deref().unwrap().contains("live root"),
        "{disk:?}"
    );
}

#[test]
fn weak_host_fails_every_check_a_fixture_can_express() {
    use Verdict::{Fail, NotApplicable as NA};
    let (_dir, inspection) = inspect("weak", WEAK_MODES);
    #[rustfmt::skip]
    let expected = [
        ("AUTH-001", Fail), ("AUTH-002", Fail), ("AUTH-003", Fail), ("AUTH-004", Fail),
        ("AUTH-005", Fail), ("AUTH-006", Fail), ("AUTH-007", Fail), ("AUTH-008", Fail),
        ("AUTH-009", Fail), ("AUTH-010", Fail), ("AUTH-011", Fail), ("AUTH-012", Fail),
        ("AUTH-013", Fail), ("AUTH-014", Fail),
        ("SSH-001", Fail), ("SSH-002", Fail), ("SSH-003", Fail), ("SSH-004", Fail),
        ("SSH-005", Fail), ("SSH-006", Fail), ("SSH-007", Fail), ("SSH-008", Fail),
        ("SSH-009", Fail),
        ("FILE-001", Fail), ("FILE-002", Fail), ("FILE-003", Fail), ("FILE-004", Fail),
        ("FILE-005", Fail), ("FILE-006", Fail), ("FILE-007", Fail), ("FILE-008", Fail),
        ("ACC-001", Fail), ("ACC-002", Fail),
        ("AUD-001", Fail), ("AUD-002", Fail), ("AUD-003", Fail), ("AUD-004", Fail),
        ("AUD-005", Fail), ("AUD-006", Fail), ("AUD-007", Fail),
        ("NET-001", Fail), ("NET-002", Fail), ("NET-003", Fail), ("NET-004", Fail),
        ("NET-005", Fail), ("NET-006", Fail), ("NET-007", Fail),
        ("PATCH-001", Fail), ("PATCH-002", Fail),
        ("KRNL-001", Fail), ("KRNL-002", Fail), ("KRNL-003", Fail),
        ("IDS-001", Fail),
        ("FW-001", Fail), ("FW-002", Fail),
        ("MAL-001", Fail), ("MAL-002", Fail),
        ("RES-001", NA), ("RES-002", Fail), ("RES-003", Fail), ("RES-004", Fail),
    ];
    assert_verdicts(&inspection, &expected);
    assert_eq!(inspection.score, Some(0.0));
}

#[test]
fn weak_evidence_names_what_is_wrong() {
    let (_dir, i) = inspect("weak", WEAK_MODES);
    assert_evidence(&i, "AUTH-001", "/etc/login.defs:3: PASS_MAX_DAYS 99999");
    assert_evidence(&i, "AUTH-003", "/etc/login.defs: PASS_WARN_AGE not set");
    // The argument on the PAM line overrides pwquality.conf's minlen = 12.
    assert_evidence(
        &i,
        "AUTH-004",
        "/etc/pam.d/common-password:2: password requisite pam_pwquality.so retry=3 minlen=6",
    );
    assert_evidence(
        &i,
        "AUTH-006",
        "/etc/pam.d/common-auth:3: auth [default=die] pam_faillock.so authfail deny=10 unlock_time=60",
    );
    assert_evidence(&i, "AUTH-007", "/etc/shadow:6: guest: empty password field");
    assert_evidence(&i, "AUTH-008", "/etc/passwd:5: toor: UID 0");
    assert_evidence(
        &i,
        "AUTH-009",
        "/etc/passwd: UID 0 shared by root (line 1), toor (line 5)",
    );
    assert_evidence(
        &i,
        "AUTH-009",
        "/etc/passwd: name bob on bob (line 9), bob (line 10)",
    );
    assert_evidence(
        &i,
        "AUTH-010",
        "/etc/passwd:3: games: UID 5 has shell /bin/sh",
    );
    assert_evidence(&i, "AUTH-011", "/etc/login.defs:8: ENCRYPT_METHOD MD5");
    assert_evidence(&i, "AUTH-012", "TMOUT is not made readonly");
    assert_evidence(
        &i,
        "AUTH-014",
        "/etc/shadow:7: alice: password changed 2022-01-08, max 90 days, expired 2022-04-08",
    );
    assert_evidence(&i, "SSH-001", "/etc/ssh/sshd_config:3: PermitRootLogin yes");
    assert_evidence(&i, "SSH-004", "idle sessions end after 0 s");
    assert_evidence(
        &i,
        "SSH-007",
        "/etc/ssh/sshd_config:9: Ciphers aes128-cbc,3des-cbc,aes256-ctr (weak: aes128-cbc, 3des-cbc)",
    );
    assert_evidence(
        &i,
        "SSH-009",
        "telnet: listening on tcp 0.0.0.0:23 in.telnetd[410]",
    );
    assert_evidence(&i, "SSH-009", "/usr/sbin/in.telnetd: telnet: installed");
    assert_evidence(
        &i,
        "FILE-004",
        "/etc/sudoers.d/alice:1: alice ALL=(ALL) NOPASSWD: ALL (NOPASSWD: ALL for alice)",
    );
    assert_evidence(&i, "FILE-006", "/usr/bin/backup.sh (mode 0777)");
    assert_evidence(&i, "FILE-006", "/etc/shared (mode 0777)");
    if is_root() {
        assert_evidence(&i, "FILE-004", "/etc/sudoers.d/alice: mode 0644, owner 0:0");
        assert_evidence(
            &i,
            "FILE-008",
            "UID 4242 (no such user): 1 entries, e.g. /usr/bin/orphan",
        );
    }
    assert_evidence(&i, "ACC-001", "/etc/group:6: sudo (GID 27): no members");
    assert_evidence(&i, "AUD-002", "not audited: writes to /etc/passwd, writes to /etc/shadow, writes to /etc/group, writes to /etc/sudoers, execution of privileged commands");
    assert_evidence(&i, "AUD-004", "rotated logs kept 28 days");
    assert_evidence(
        &i,
        "NET-001",
        "tcp 0.0.0.0:23 in.telnetd[410] (not in the allowlist)",
    );
    assert_evidence(
        &i,
        "NET-001",
        "udp 0.0.0.0:5353 avahi-daemon[440] (not in the allowlist)",
    );
    assert_evidence(
        &i,
        "NET-002",
        "/etc/systemd/system/multi-user.target.wants/vsftpd.service: ftp: vsftpd.service enabled",
    );
    assert_evidence(&i, "NET-002", "cups: cupsd[430] running");
    assert_evidence(
        &i,
        "NET-006",
        "/etc/exports:1: /srv/data *(rw,sync,no_root_squash) (risky)",
    );
    assert_evidence(
        &i,
        "NET-006",
        "/etc/samba/smb.conf:3: share [public]: guest ok = yes (risky)",
    );
    assert_evidence(
        &i,
        "PATCH-001",
        "openssl 3.0.11-1~deb12u2 → 3.0.15-1~deb12u1",
    );
    assert_evidence(
        &i,
        "PATCH-001",
        "openssh-server 1:9.2p1-2+deb12u1 → 1:9.2p1-2+deb12u3",
    );
    assert_evidence(&i, "PATCH-002", "newest installed 6.8.0-45-generic");
    assert_evidence(
        &i,
        "FW-001",
        "chain input has no policy and no rules (accepts everything)",
    );
    assert_evidence(&i, "FW-002", "conntrack table 91 % full");
    assert_evidence(
        &i,
        "MAL-002",
        "/var/lib/clamav/daily.cvd: version 27150, built 2024-01-10 (507 days old)",
    );
    assert_evidence(
        &i,
        "RES-002",
        "/proc/meminfo: MemAvailable 500000 kB of MemTotal 16316412 kB (3 %)",
    );
    assert_evidence(&i, "RES-004", "/proc/swaps: no swap configured");
}

#[test]
fn the_json_form_has_every_field_and_reads_back() {
    let (_dir, inspection) = inspect("weak", WEAK_MODES);
    let json = inspection.to_json().unwrap();
    let back: Inspection = serde_json::from_str(&json).unwrap();
    assert_eq!(back, inspection);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    for key in [
        "host",
        "root",
        "time_ms",
        "agent_version",
        "score",
        "summary",
        "results",
    ] {
        assert!(value.get(key).is_some(), "{key} missing");
    }
    assert_eq!(value["time_ms"], NOW_MS);
    assert_eq!(value["host"], "weak");
    let first = &value["results"][0];
    assert_eq!(first["id"], "AUTH-001");
    assert_eq!(first["category"], "identity");
    assert_eq!(first["severity"], "medium");
    assert_eq!(first["verdict"], "fail");
    assert_eq!(first["evidence"][0]["file"], "/etc/login.defs");
    assert_eq!(first["evidence"][0]["line"], 3);
    assert!(first["remediation"]
        .as_str()
        .unwrap()
        .contains("PASS_MAX_DAYS"));
    let na = value["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "RES-001")
        .unwrap();
    assert_eq!(na["verdict"], "not_applicable");
    assert!(na["reason"].is_string());
}

#[test]
fn the_text_report_puts_failures_first_with_their_fix() {
    let (_dir, inspection) = inspect("weak", WEAK_MODES);
    let text = inspection.to_text();
    assert!(text.starts_with("Security baseline of weak ("), "{text}");
    assert!(text.contains("Score: 0.0 %"), "{text}");
    let resource = text
        .split("== Resource control (资源控制) ==")
        .nth(1)
        .unwrap();
    let lines: Vec<&str> = resource.lines().filter(|l| !l.is_empty()).collect();
    assert!(lines[0].starts_with("  FAIL   RES-002"), "{resource}");
    assert!(
        lines[1].trim_start().starts_with("evidence: /proc/meminfo"),
        "{resource}"
    );
    assert!(lines[2].trim_start().starts_with("fix: "), "{resource}");
    assert!(
        lines.last().unwrap().starts_with("  n/a    RES-001"),
        "{resource}"
    );
    let fixes = text
        .lines()
        .filter(|l| l.trim_start().starts_with("fix: "))
        .count();
    assert_eq!(fixes, inspection.summary.fail);
}

#[test]
fn the_score_weighs_passes_over_applicable_checks() {
    let (_dir, inspection) = inspect("hardened", HARDENED_MODES);
    let mut results = inspection.results.clone();
    results.retain(|r| ["AUTH-004", "AUTH-002", "AUTH-001", "RES-001"].contains(&r.id.as_str()));
    // high 3 passes, low 1 fails, medium 2 passes, RES-001 does not count.
    results[1].verdict = Verdict::Fail;
    assert_eq!(baseline::score(&results), Some(83.3));
    results
        .iter_mut()
        .for_each(|r| r.verdict = Verdict::NotApplicable);
    assert_eq!(baseline::score(&results), None);
}

#[test]
fn the_default_settings_make_swap_a_database_question() {
    let dir = install("hardened", HARDENED_MODES);
    let inspection = baseline::run(dir.path(), "hardened-01", NOW_MS);
    let swap = result(&inspection, "RES-004");
    assert_eq!(swap.verdict, Verdict::NotApplicable);
    assert!(swap.reason.as_deref().unwrap().contains("database"));
    assert_eq!(
        swap.evidence[0].to_string(),
        "/proc/swaps:2: swap /swap.img (2097148 kB)"
    );
    assert_eq!(
        baseline::host_name(dir.path()).as_deref(),
        Some("hardened-01")
    );
}

#[test]
fn an_empty_tree_is_not_applicable_or_failing_never_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let inspection = baseline::run(dir.path(), "empty", NOW_MS);
    assert_eq!(inspection.results.len(), baseline::check_ids().len());
    for r in &inspection.results {
        assert_ne!(r.verdict, Verdict::Error, "{r:?}");
        if r.verdict == Verdict::NotApplicable {
            assert!(r.reason.is_some(), "{r:?}");
        }
    }
    let auditd = result(&inspection, "AUD-001");
    assert!(
        auditd
            .reason
            .as_deref()
            .unwrap()
            .contains("no process table"),
        "{auditd:?}"
    );
}

#[test]
fn an_unreadable_file_is_an_error_naming_it() {
    let dir = install("hardened", HARDENED_MODES);
    // A directory where a file should be cannot be read, even by root.
    fs::remove_file(dir.path().join("etc/shadow")).unwrap();
    fs::create_dir(dir.path().join("etc/shadow")).unwrap();
    fs::remove_file(dir.path().join("etc/ssh/sshd_config.d/50-baseline.conf")).unwrap();
    fs::create_dir(dir.path().join("etc/ssh/sshd_config.d/50-baseline.conf")).unwrap();
    let inspection = baseline::run(dir.path(), "broken", NOW_MS);
    for id in ["AUTH-007", "AUTH-014"] {
        let r = result(&inspection, id);
        assert_eq!(r.verdict, Verdict::Error, "{r:?}");
        assert!(
            r.reason
                .as_deref()
                .unwrap()
                .starts_with("cannot read /etc/shadow: "),
            "{r:?}"
        );
    }
    let ssh = result(&inspection, "SSH-001");
    assert_eq!(ssh.verdict, Verdict::Error);
    assert!(
        ssh.reason
            .as_deref()
            .unwrap()
            .contains("/etc/ssh/sshd_config.d/50-baseline.conf"),
        "{ssh:?}"
    );
    assert!(inspection.has_errors());
}

#[test]
fn links_in_the_tree_never_leave_it() {
    let dir = install("hardened", HARDENED_MODES);
    // An absolute link resolves inside the root, as under chroot: this
    // one names the fixture's own passwd, not the test machine's.
    fs::rename(
        dir.path().join("etc/passwd"),
        dir.path().join("etc/passwd.real"),
    )
    .unwrap();
    symlink("/etc/passwd.real", dir.path().join("etc/passwd")).unwrap();
    let inspection = baseline::run(dir.path(), "linked", NOW_MS);
    assert_eq!(
        result(&inspection, "AUTH-008").evidence[0].to_string(),
        "/etc/passwd:1: root: UID 0"
    );
    assert_eq!(result(&inspection, "AUTH-010").verdict, Verdict::Pass);
}

/// Files whose parsers get arbitrary bytes in the property test below.
const FUZZED: &[&str] = &[
    "etc/login.defs",
    "etc/passwd",
    "etc/shadow",
    "etc/group",
    "etc/ssh/sshd_config",
    "etc/pam.d/common-password",
    "etc/pam.d/common-auth",
    "etc/security/pwquality.conf",
    "etc/sudoers",
    "etc/profile",
    "etc/logrotate.d/rsyslog",
    "etc/audit/rules.d/50-baseline.rules",
    "etc/rsyslog.conf",
    "etc/nftables.conf",
    "etc/exports",
    "etc/security/limits.conf",
    "proc/net/tcp",
    "proc/meminfo",
    "proc/swaps",
    "proc/sys/kernel/osrelease",
    "var/lib/clamav/daily.cld",
    "var/lib/dpkg/status",
];

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Whatever a file holds, every check ends in a verdict: none panics
    /// (which the runner would report as an internal error).
    #[test]
    fn no_check_panics_on_any_file_content(
        contents in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..600), FUZZED.len()),
        text in "(?s)[ -~\n\t]{0,400}",
    ) {
        let dir = install("hardened", HARDENED_MODES);
        for (i, (rel, bytes)) in FUZZED.iter().zip(&contents).enumerate() {
            // Half the files get random bytes, half printable text.
            let data = if i % 2 == 0 { bytes.clone() } else { text.clone().into_bytes() };
            fs::write(dir.path().join(rel), data).unwrap();
        }
        let inspection = baseline::run_with(dir.path(), "fuzzed", NOW_MS, &config());
        for r in &inspection.results {
            proptest::prop_assert!(
                !r.reason.as_deref().unwrap_or("").contains("internal error"),
                "{:?}", r
            );
        }
    }
}

#[test]
fn the_live_host_can_be_inspected() {
    // What this machine's verdicts are is not the point: no check may
    // panic, and an error must say why.
    let inspection = baseline::run(Path::new("/"), "live", NOW_MS);
    assert_eq!(inspection.results.len(), baseline::check_ids().len());
    for r in &inspection.results {
        assert!(
            !r.reason.as_deref().unwrap_or("").contains("internal error"),
            "{r:?}"
        );
        if r.verdict == Verdict::Error {
            assert!(r.reason.is_some(), "{r:?}");
        }
    }
}
