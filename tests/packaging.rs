//! The packaging paths of issue 8: `packaging/install.sh` installed into a
//! temp `DESTDIR` (files, modes, the patrol user and its ownership, configs
//! never replaced, units that `systemd-analyze verify` accepts), and the
//! `cargo deb` metadata naming files that exist, with unit copies that do not
//! drift from `systemd/`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn source() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A folder with the three binaries install.sh expects (copies of `patrol`:
/// only their names matter here).
fn built_binaries(dir: &Path) -> PathBuf {
    let bin = dir.join("release");
    std::fs::create_dir(&bin).unwrap();
    for name in ["patrol", "patrol-agent", "patrol-collector"] {
        std::fs::copy(env!("CARGO_BIN_EXE_patrol"), bin.join(name)).unwrap();
    }
    bin
}

fn install(destdir: &Path, bindir: &Path, envs: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new("sh")
        .arg(source().join("packaging/install.sh"))
        .args(args)
        .env("DESTDIR", destdir)
        .env("BINDIR", bindir)
        .env_remove("PREFIX")
        .env_remove("UNITDIR")
        .envs(envs.iter().copied())
        .output()
        .expect("run install.sh")
}

fn succeeded(out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "install.sh: {}\n{text}", out.status);
    text
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// uid and gid of `name` in DESTDIR's own passwd file.
fn ids_in(destdir: &Path, name: &str) -> (u32, u32) {
    let passwd = std::fs::read_to_string(destdir.join("etc/passwd")).unwrap();
    let fields: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {passwd}"))
        .split(':')
        .collect();
    (fields[2].parse().unwrap(), fields[3].parse().unwrap())
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[test]
fn install_script_puts_everything_in_place_with_modes_and_owners() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = built_binaries(tmp.path());
    let root = tmp.path().join("root");
    succeeded(&install(&root, &bin, &[], &[]));

    for (path, want) in [
        ("usr/local/bin/patrol-agent", 0o755),
        ("usr/local/bin/patrol-collector", 0o755),
        ("usr/local/bin/patrol", 0o755),
        ("etc/systemd/system/patrol-agent.service", 0o644),
        ("etc/systemd/system/patrol-collector.service", 0o644),
        ("usr/lib/sysusers.d/patrol.conf", 0o644),
        ("etc/patrol", 0o750),
        ("etc/patrol/pki", 0o750),
        ("etc/patrol/agent.toml", 0o640),
        ("etc/patrol/collector.toml", 0o640),
        ("var/lib/patrol", 0o750),
        ("usr/local/share/doc/patrol/deploy.md", 0o644),
        ("usr/local/share/doc/patrol/examples/db.toml", 0o644),
    ] {
        assert_eq!(mode(&root.join(path)), want, "mode of {path}");
    }
    let unit =
        std::fs::read_to_string(root.join("etc/systemd/system/patrol-agent.service")).unwrap();
    assert!(
        unit.contains("\nExecStart=/usr/local/bin/patrol-agent --config /etc/patrol/agent.toml\n")
    );
    assert_eq!(
        std::fs::read(root.join("etc/patrol/agent.toml")).unwrap(),
        std::fs::read(source().join("packaging/agent.toml")).unwrap()
    );

    if is_root() {
        // The user made in DESTDIR by systemd-sysusers --root; the state
        // folder is its, the configs readable by its group only.
        let (uid, gid) = ids_in(&root, "patrol");
        let state = std::fs::metadata(root.join("var/lib/patrol")).unwrap();
        assert_eq!((state.uid(), state.gid()), (uid, gid));
        for path in ["etc/patrol", "etc/patrol/agent.toml", "etc/patrol/pki"] {
            let meta = std::fs::metadata(root.join(path)).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (0, gid), "owner of {path}");
        }
    } else {
        eprintln!("note: not root: ownership not checked");
    }
}

#[test]
fn install_script_never_replaces_a_config() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = built_binaries(tmp.path());
    let root = tmp.path().join("root");
    succeeded(&install(&root, &bin, &[], &["agent"]));
    let conf = root.join("etc/patrol/agent.toml");
    std::fs::write(&conf, "# mine\n").unwrap();
    let text = succeeded(&install(&root, &bin, &[], &["agent"]));
    assert!(text.contains("kept"), "{text}");
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "# mine\n");
    // Only the agent was asked for.
    assert!(!root.join("usr/local/bin/patrol-collector").exists());
    assert!(!root.join("etc/patrol/collector.toml").exists());
}

#[test]
fn install_script_points_the_units_at_its_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = built_binaries(tmp.path());
    let root = tmp.path().join("root");
    succeeded(&install(
        &root,
        &bin,
        &[("PREFIX", "/usr"), ("UNITDIR", "/usr/lib/systemd/system")],
        &["collector"],
    ));
    assert!(root.join("usr/bin/patrol-collector").exists());
    let unit =
        std::fs::read_to_string(root.join("usr/lib/systemd/system/patrol-collector.service"))
            .unwrap();
    assert!(
        unit.contains("\nExecStart=/usr/bin/patrol-collector "),
        "{unit}"
    );
    assert!(!unit.contains("/usr/local/"), "{unit}");
}

#[test]
fn install_script_without_a_build_stops_before_installing_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let out = install(&root, &tmp.path().join("no-build"), &[], &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cargo build --release --bins"), "{stderr}");
    assert!(!root.exists(), "install.sh wrote to DESTDIR");
    let bad = install(&root, &tmp.path().join("no-build"), &[], &["web"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn installed_units_pass_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-analyze is missing under CI: .ci/run should install the Debian package systemd"
        );
        eprintln!("note: systemd-analyze not found (Debian package systemd); skipping");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let bin = built_binaries(tmp.path());
    let root = tmp.path().join("root");
    succeeded(&install(&root, &bin, &[], &[]));
    // As tests/systemd_units.rs does: verify wants the commands to exist,
    // and here they are under DESTDIR.
    let units: Vec<PathBuf> = ["patrol-agent.service", "patrol-collector.service"]
        .iter()
        .map(|unit| {
            let text = std::fs::read_to_string(root.join("etc/systemd/system").join(unit)).unwrap();
            let text = text.replace(
                "/usr/local/bin/",
                &format!("{}/", root.join("usr/local/bin").display()),
            );
            let path = tmp.path().join(unit);
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&units)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify warns: {stderr}"
    );
}

/// The package's copies of the units are `systemd/`'s with /usr/bin for
/// /usr/local/bin (Debian packages never install under /usr/local), so a
/// change to one is a change to both.
#[test]
fn deb_units_match_the_systemd_units() {
    for role in ["agent", "collector"] {
        let unit = format!("patrol-{role}.service");
        let settings = |path: PathBuf| -> Vec<String> {
            std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                .lines()
                .filter(|l| !l.starts_with('#'))
                .map(str::to_owned)
                .collect()
        };
        let want: Vec<String> = settings(source().join("systemd").join(&unit))
            .into_iter()
            .map(|l| {
                l.replace("/usr/local/bin/", "/usr/bin/").replace(
                    "/usr/local/share/doc/patrol/",
                    &format!("/usr/share/doc/patrol-{role}/"),
                )
            })
            .collect();
        assert_eq!(settings(source().join("packaging/deb").join(&unit)), want);
    }
}

/// Every asset `cargo deb` would package exists (the binaries once built),
/// each package has its maintainer scripts, and /etc files are conffiles.
#[test]
fn cargo_deb_metadata_names_files_that_exist() {
    for (krate, binary) in [
        ("agent", "patrol-agent"),
        ("collector", "patrol-collector"),
        (".", "patrol"),
    ] {
        let dir = source().join(krate);
        let manifest: toml::Table = std::fs::read_to_string(dir.join("Cargo.toml"))
            .unwrap()
            .parse()
            .unwrap();
        let deb = manifest["package"]["metadata"]["deb"].as_table().unwrap();
        assert_eq!(deb["name"].as_str(), Some(binary));
        let assets = deb["assets"].as_array().unwrap();
        let mut targets = Vec::new();
        for asset in assets {
            let [from, to, _mode] = asset.as_array().unwrap().as_slice() else {
                panic!("{krate}: an asset is [source, target, mode]: {asset}");
            };
            let (from, to) = (from.as_str().unwrap(), to.as_str().unwrap());
            targets.push(to.to_owned());
            if from.starts_with("target/release/") {
                assert_eq!(from, format!("target/release/{binary}"));
                continue;
            }
            let pattern = dir.join(from);
            let found = match pattern.file_name().and_then(|n| n.to_str()) {
                Some(name) if name.starts_with('*') => std::fs::read_dir(pattern.parent().unwrap())
                    .unwrap()
                    .any(|e| {
                        e.unwrap()
                            .file_name()
                            .to_string_lossy()
                            .ends_with(&name[1..])
                    }),
                _ => pattern.is_file(),
            };
            assert!(found, "{krate}: asset {from} is missing");
        }
        assert!(
            targets.iter().any(|t| t == "usr/bin/"),
            "{krate}: {targets:?}"
        );
        if let Some(scripts) = deb.get("maintainer-scripts").and_then(|s| s.as_str()) {
            for script in ["postinst", "prerm", "postrm"] {
                let path = dir.join(scripts).join(script);
                assert_eq!(mode(&path), 0o755, "{}", path.display());
                let out = Command::new("sh").arg("-n").arg(&path).output().unwrap();
                assert!(out.status.success(), "{}: not valid sh", path.display());
            }
            let conf = deb["conf-files"].as_array().unwrap();
            for target in targets.iter().filter(|t| t.starts_with("etc/")) {
                assert!(
                    conf.iter()
                        .any(|c| c.as_str() == Some(&format!("/{target}"))),
                    "{krate}: {target} is not a conffile"
                );
            }
        }
    }
}

/// The defaults install.sh and the packages put in /etc/patrol are valid
/// configs apart from the certificates the operator still has to make.
#[test]
fn default_configs_parse() {
    for (file, role) in [("agent.toml", "agent"), ("collector.toml", "collector")] {
        let path = source().join("packaging").join(file);
        let out = Command::new(env!("CARGO_BIN_EXE_patrol"))
            .args([role, "--check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // The TLS files do not exist here, which is the only complaint.
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains("pki/"), "{file}: {stderr}");
        assert!(
            !stderr.contains("invalid configuration") && !stderr.contains(&format!("{file}:")),
            "{file} itself has errors: {stderr}"
        );
    }
}
