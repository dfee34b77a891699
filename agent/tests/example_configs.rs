//! The example agent configs in docs/examples load and validate: every
//! check compiles, and each server checks what its role needs.

use std::path::{Path, PathBuf};

use patrol_agent::checks::Kind;
use patrol_agent::AgentConfig;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples")
}

fn load(name: &str) -> AgentConfig {
    let path = examples().join(name);
    AgentConfig::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn kinds(config: &AgentConfig) -> Vec<Kind> {
    config
        .checks
        .iter()
        .enumerate()
        .map(|(i, c)| c.compile(&format!("checks[{i}]")).unwrap().kind)
        .collect()
}

#[test]
fn every_example_loads() {
    let mut seen = 0;
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            AgentConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
            seen += 1;
        }
    }
    assert_eq!(seen, 4);
}

#[test]
fn each_server_checks_what_its_role_needs() {
    let db = load("db.toml");
    assert!(db.baseline.database);
    assert!(kinds(&db).contains(&Kind::Database));
    for name in ["training.toml", "evaluation.toml", "courseware.toml"] {
        let web = load(name);
        let kinds = kinds(&web);
        for kind in [Kind::Process, Kind::Systemd, Kind::Http, Kind::Command] {
            assert!(kinds.contains(&kind), "{name}: no {kind:?} check");
        }
        assert_eq!(web.baseline.allowed_tcp_ports, vec![22, 80, 443], "{name}");
        assert!(
            web.fim
                .paths
                .iter()
                .any(|p| p.path == Path::new("/etc/nginx") && p.recursive),
            "{name}"
        );
    }
}
