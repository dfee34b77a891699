//! systemd unit checks: a unit's ActiveState and SubState, as
//! `systemctl show` prints them (no D-Bus client needed).
//!
//! `active` and `reloading` are up; `inactive`, `failed`, `deactivating`
//! and `activating` are down (a unit stuck in `activating (auto-restart)`
//! is crash-looping). A unit systemd does not know, or a masked one, is
//! down: the service it should provide is not there. On a host that was not
//! booted with systemd (a container, an old init) the state is `unknown`,
//! never down: there is nothing to ask.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::command::{run_program, Ending};
use super::{Env, Observation};

/// `systemd = { … }` of a `[[checks]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemdCheck {
    /// The unit (`nginx.service`, `mysql`, `backup.timer`).
    pub unit: String,
}

impl SystemdCheck {
    pub(super) fn compile(&self, key: &str) -> Result<(Probe, String), Vec<String>> {
        let unit = self.unit.trim();
        if unit.is_empty()
            || unit.starts_with('-')
            || unit.len() > 256
            || unit
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '/')
        {
            return Err(vec![format!(
                "{key}.unit: {:?} is not a unit name (e.g. \"nginx.service\")",
                self.unit
            )]);
        }
        Ok((
            Probe {
                unit: unit.to_owned(),
            },
            unit.to_owned(),
        ))
    }
}

#[derive(Debug)]
pub(super) struct Probe {
    unit: String,
}

impl Probe {
    pub(super) async fn run(&self, env: &Env, timeout: Duration) -> Observation {
        // sd_booted(3): the directory exists only while systemd is init.
        if !env.systemd_marker.is_dir() {
            return Observation::unknown(format!(
                "systemd is not running on this host ({} is absent)",
                env.systemd_marker.display()
            ));
        }
        let argv = [
            env.systemctl.display().to_string(),
            "show".into(),
            "--property=LoadState,ActiveState,SubState".into(),
            "--".into(),
            self.unit.clone(),
        ];
        // Untranslated, unpaged output whatever the agent's environment.
        let vars = BTreeMap::from([
            ("LC_ALL".to_owned(), "C".to_owned()),
            ("SYSTEMD_PAGER".to_owned(), String::new()),
        ]);
        let ran = run_program(&argv, &vars, timeout).await;
        match ran.ending {
            Ending::Exited(0) => judge(&parse_show(&ran.stdout)),
            Ending::NotStarted(e) => Observation::unknown(e),
            Ending::TimedOut => Observation::unknown(format!(
                "systemctl gave no answer within {}",
                super::human(timeout)
            )),
            Ending::Exited(_) | Ending::Signalled(_) => {
                let why = super::printable(&ran.stderr, 200);
                Observation::unknown(format!("systemctl failed: {why}"))
            }
        }
    }
}

/// `Key=Value` lines; later lines win, unknown keys are kept.
fn parse_show(stdout: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), super::printable(v.as_bytes(), 64)))
        .collect()
}

fn judge(props: &BTreeMap<String, String>) -> Observation {
    let get = |k: &str| props.get(k).map(String::as_str).unwrap_or("");
    let (load, active, sub) = (get("LoadState"), get("ActiveState"), get("SubState"));
    if active.is_empty() {
        return Observation::unknown("systemctl did not say the unit's ActiveState");
    }
    let state = format!("{active} ({sub})");
    let mut observation = match (load, active) {
        ("not-found", _) => Observation::critical("unit not found"),
        ("masked", _) => Observation::critical(format!("unit is masked, {state}")),
        (_, "active" | "reloading") => Observation::ok(state),
        _ => Observation::critical(state),
    };
    observation.details.unit_state = Some((active.to_owned(), sub.to_owned()));
    observation
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Status;

    fn seen(text: &str) -> Observation {
        judge(&parse_show(text.as_bytes()))
    }

    #[test]
    fn active_states_map_to_up_and_down() {
        let up = seen("LoadState=loaded\nActiveState=active\nSubState=running\n");
        assert_eq!(up.status, Status::Ok);
        assert_eq!(up.message, "active (running)");
        assert_eq!(
            up.details.unit_state,
            Some(("active".into(), "running".into()))
        );
        let oneshot = seen("LoadState=loaded\nActiveState=active\nSubState=exited\n");
        assert_eq!(oneshot.status, Status::Ok);
        let failed = seen("LoadState=loaded\nActiveState=failed\nSubState=failed\n");
        assert_eq!(failed.status, Status::Critical);
        let looping = seen("LoadState=loaded\nActiveState=activating\nSubState=auto-restart\n");
        assert_eq!(looping.status, Status::Critical);
        assert_eq!(looping.message, "activating (auto-restart)");
        let missing = seen("LoadState=not-found\nActiveState=inactive\nSubState=dead\n");
        assert_eq!(missing.status, Status::Critical);
        assert_eq!(missing.message, "unit not found");
        assert_eq!(seen("garbage\n\0\n").status, Status::Unknown);
    }

    #[tokio::test]
    async fn without_systemd_the_state_is_unknown_not_down() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env {
            systemd_marker: dir.path().join("run/systemd/system"),
            ..Env::host(dir.path())
        };
        let (probe, target) = SystemdCheck {
            unit: "nginx.service".into(),
        }
        .compile("s")
        .unwrap();
        assert_eq!(target, "nginx.service");
        let seen = probe.run(&env, Duration::from_secs(5)).await;
        assert_eq!(seen.status, Status::Unknown, "{seen:?}");
        assert!(seen.message.contains("not running"), "{seen:?}");
    }

    #[tokio::test]
    async fn systemctl_output_is_read_without_a_shell() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("systemd");
        std::fs::create_dir(&marker).unwrap();
        // A stand-in systemctl that answers like the real one.
        let fake = dir.path().join("systemctl");
        std::fs::write(
            &fake,
            "#!/bin/sh\n[ \"$1 $2 $3 $4\" = \"show --property=LoadState,ActiveState,SubState -- nginx.service\" ] || exit 1\nprintf 'LoadState=loaded\\nActiveState=reloading\\nSubState=reload\\n'\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let env = Env {
            systemd_marker: marker,
            systemctl: fake,
            ..Env::host(dir.path())
        };
        let (probe, _) = SystemdCheck {
            unit: "nginx.service".into(),
        }
        .compile("s")
        .unwrap();
        let seen = probe.run(&env, Duration::from_secs(5)).await;
        assert_eq!(seen.status, Status::Ok, "{seen:?}");
        assert_eq!(seen.message, "reloading (reload)");
    }

    #[test]
    fn unit_names_are_checked() {
        for bad in ["", "-x", "a b", "../x"] {
            assert!(
                SystemdCheck { unit: bad.into() }.compile("s").is_err(),
                "{bad:?}"
            );
        }
    }
}
