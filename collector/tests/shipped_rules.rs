//! The rule files shipped in `rules/` load in Patrol and pass
//! `promtool check rules` (Debian package `prometheus`, which `.ci/run`
//! installs; without it the promtool half is skipped, except under CI).

use std::path::PathBuf;
use std::process::Command;

fn rule_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../rules");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("rules/ exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn shipped_rules_load_and_every_alert_has_severity_and_summary() {
    let files = rule_files();
    assert!(files.len() >= 4, "{files:?}");
    let mut alerts = 0;
    for file in &files {
        let groups = patrol_collector::rules::file::load(file).unwrap_or_else(|e| panic!("{e}"));
        for rule in groups.iter().flat_map(|g| &g.rules) {
            if let patrol_collector::rules::file::RuleKind::Alert { annotations, .. } = &rule.kind {
                alerts += 1;
                let severity = rule.labels.get("severity").map(String::as_str);
                assert!(
                    matches!(severity, Some("critical" | "warning" | "info")),
                    "{}: {} has severity {severity:?}",
                    file.display(),
                    rule.name()
                );
                for key in ["summary", "description"] {
                    assert!(
                        annotations.contains_key(key),
                        "{}: {} lacks {key}",
                        file.display(),
                        rule.name()
                    );
                }
            }
        }
    }
    assert!(alerts >= 14, "{alerts} alerts");
}

#[test]
fn shipped_rules_pass_promtool() {
    let have = Command::new("promtool").arg("--version").output().is_ok();
    if !have {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is needed in CI (package prometheus)"
        );
        eprintln!("note: promtool not installed; skipped");
        return;
    }
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .args(rule_files())
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `promtool test rules` on the unit tests in `tests/rules/`: the shipped
/// alerts fire when they should, with the annotations they should.
#[test]
fn shipped_rules_pass_their_promtool_unit_tests() {
    let have = Command::new("promtool").arg("--version").output().is_ok();
    if !have {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is needed in CI (package prometheus)"
        );
        eprintln!("note: promtool not installed; skipped");
        return;
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/rules");
    let mut tests: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/rules exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    tests.sort();
    assert!(!tests.is_empty());
    let out = Command::new("promtool")
        .current_dir(&dir)
        .args(["test", "rules"])
        .args(&tests)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
