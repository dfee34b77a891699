//! The collector's rules: the shipped defaults and the configured files,
//! each group evaluated on its interval (aligned to the clock), reloaded on
//! SIGHUP and when a file changes. A file with an error is refused as a
//! whole, with file, line and reason in the log, and the groups it had keep
//! running; alert state carries over for rules whose name and expression
//! did not change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value as Json};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::alert::State;
use super::file::{self, Group, RuleError, RuleKind};
use super::group::GroupState;
use crate::query::Limits;
use crate::storage::Store;

/// The rule files shipped in `rules/`, built in.
const DEFAULTS: [(&str, &str); 4] = [
    ("host.yml", include_str!("../../../rules/host.yml")),
    ("services.yml", include_str!("../../../rules/services.yml")),
    ("security.yml", include_str!("../../../rules/security.yml")),
    (
        "collector.yml",
        include_str!("../../../rules/collector.yml"),
    ),
];

/// What the manager is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Rule files (absolute paths).
    pub files: Vec<PathBuf>,
    /// Whether the shipped rules run.
    pub defaults: bool,
    /// Interval of groups that name none.
    pub interval: Duration,
    pub external_labels: BTreeMap<String, String>,
}

/// See the module comment.
pub struct Manager {
    settings: Settings,
    /// Groups by source (a file, or `<builtin>/NAME`), in order.
    groups: Mutex<BTreeMap<PathBuf, Vec<GroupState>>>,
}

fn builtin(name: &str) -> PathBuf {
    Path::new("<builtin>").join(name)
}

impl Manager {
    /// Loads every rule file; any error stops the collector from starting.
    pub fn load(settings: Settings) -> Result<Manager, RuleError> {
        let mut groups = BTreeMap::new();
        if settings.defaults {
            for (name, text) in DEFAULTS {
                let path = builtin(name);
                let parsed = file::parse(&path, text)?;
                groups.insert(path, parsed.into_iter().map(GroupState::new).collect());
            }
        }
        for path in &settings.files {
            let parsed = file::load(path)?;
            groups.insert(
                path.clone(),
                parsed.into_iter().map(GroupState::new).collect(),
            );
        }
        Ok(Manager {
            settings,
            groups: Mutex::new(groups),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<PathBuf, Vec<GroupState>>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the configured files again. A file that fails keeps its old
    /// groups; the errors are returned (and logged).
    pub fn reload(&self) -> Vec<RuleError> {
        let mut errors = Vec::new();
        for path in &self.settings.files {
            match file::load(path) {
                Ok(parsed) => {
                    let mut groups = self.lock();
                    let old = groups.remove(path).unwrap_or_default();
                    groups.insert(path.clone(), carry_over(old, parsed));
                }
                Err(e) => {
                    error!(error = %e, "rule file refused; its previous rules keep running");
                    errors.push(e);
                }
            }
        }
        info!(
            groups = self.lock().values().map(Vec::len).sum::<usize>(),
            "rules reloaded"
        );
        errors
    }

    /// Evaluates every group whose interval slot containing `now_ms` has
    /// not been evaluated yet, at the slot's start, and keeps each group's
    /// alert state in the store, so a restart neither loses a firing alert
    /// nor starts it over.
    pub fn evaluate_due(&self, store: &dyn Store, limits: &Limits, now_ms: i64) {
        let default_ms = self.settings.interval.as_millis() as i64;
        let mut groups = self.lock();
        for g in groups.values_mut().flatten() {
            let interval = g.group.interval_ms.unwrap_or(default_ms).max(1000);
            let slot = now_ms - now_ms.rem_euclid(interval);
            if g.last_evaluation.is_none_or(|last| last < slot) {
                g.evaluate(store, limits, slot, &self.settings.external_labels);
                if let Err(e) = save(store, g) {
                    tracing::warn!(group = %g.group.name, error = %e, "cannot keep the alert state");
                }
            }
        }
    }

    /// Takes back the alert state kept by a previous run, for rules whose
    /// group, name and expression are the same.
    pub fn restore(&self, store: &dyn Store) {
        let mut groups = self.lock();
        for g in groups.values_mut().flatten() {
            let saved: Vec<SavedRule> = match store.get_state(&state_key(&g.group)) {
                Ok(Some(bytes)) => {
                    match bincode::serde::decode_from_slice(&bytes, bincode::config::standard()) {
                        Ok((saved, _)) => saved,
                        Err(e) => {
                            tracing::warn!(group = %g.group.name, error = %e, "kept alert state unreadable; starting afresh");
                            continue;
                        }
                    }
                }
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(group = %g.group.name, error = %e, "cannot read the kept alert state");
                    continue;
                }
            };
            for (i, rule) in g.group.rules.iter().enumerate() {
                if let Some(s) = saved
                    .iter()
                    .find(|s| s.name == rule.name() && s.expr == rule.expr)
                {
                    g.alerts[i] = s.alerts.clone();
                }
            }
            g.last_evaluation = saved.first().and_then(|s| s.last_evaluation);
        }
    }

    /// The files watched for changes.
    pub fn files(&self) -> &[PathBuf] {
        &self.settings.files
    }

    /// `/api/v1/rules` data; `kind` filters on "alert" or "record".
    pub fn rules_json(&self, kind: Option<&str>) -> Json {
        let default_ms = self.settings.interval.as_millis() as i64;
        let groups = self.lock();
        let list: Vec<Json> = groups
            .values()
            .flatten()
            .map(|g| {
                let rules: Vec<Json> = g
                    .group
                    .rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| match kind {
                        Some("alert") => matches!(r.kind, RuleKind::Alert { .. }),
                        Some("record") => matches!(r.kind, RuleKind::Record { .. }),
                        _ => true,
                    })
                    .map(|(i, r)| {
                        let h = &g.health[i];
                        let health = match (&h.last_evaluation, &h.last_error) {
                            (None, _) => "unknown",
                            (_, Some(_)) => "err",
                            _ => "ok",
                        };
                        let mut rule = json!({
                            "name": r.name(),
                            "query": r.expr,
                            "labels": r.labels,
                            "health": health,
                            "lastError": h.last_error.clone().unwrap_or_default(),
                            "evaluationTime": h.duration_seconds,
                            "lastEvaluation": rfc3339(h.last_evaluation),
                        });
                        if let RuleKind::Alert {
                            for_ms,
                            keep_firing_for_ms,
                            annotations,
                            ..
                        } = &r.kind
                        {
                            rule["type"] = json!("alerting");
                            rule["state"] = json!(g.rule_state(i).as_str());
                            rule["duration"] = json!(*for_ms as f64 / 1000.0);
                            rule["keepFiringFor"] = json!(*keep_firing_for_ms as f64 / 1000.0);
                            rule["annotations"] = json!(annotations);
                            rule["alerts"] =
                                json!(g.alerts[i].active().map(alert_json).collect::<Vec<_>>());
                        } else {
                            rule["type"] = json!("recording");
                        }
                        rule
                    })
                    .collect();
                json!({
                    "name": g.group.name,
                    "file": g.group.file.display().to_string(),
                    "interval": g.group.interval_ms.unwrap_or(default_ms) as f64 / 1000.0,
                    "limit": g.group.limit,
                    "evaluationTime": g.duration_seconds,
                    "lastEvaluation": rfc3339(g.last_evaluation),
                    "rules": rules,
                })
            })
            .collect();
        json!({ "groups": list })
    }

    /// `/api/v1/alerts` data: every pending and firing alert, with the
    /// ids of the silences covering it (`silencedBy`, empty if none).
    pub fn alerts_json(&self, silenced: impl Fn(&BTreeMap<String, String>) -> Vec<String>) -> Json {
        let groups = self.lock();
        let alerts: Vec<Json> = groups
            .values()
            .flatten()
            .flat_map(|g| g.alerts.iter().flat_map(|set| set.active()))
            .map(|a| {
                let mut j = alert_json(a);
                j["silencedBy"] = json!(silenced(&a.labels));
                j
            })
            .collect();
        json!({ "alerts": alerts })
    }

    /// Every alert the rules hold: pending, firing, and resolved ones still
    /// kept for their resolution to be sent.
    pub fn alerts(&self) -> Vec<super::alert::Alert> {
        let groups = self.lock();
        groups
            .values()
            .flatten()
            .flat_map(|g| g.alerts.iter().flat_map(|s| s.alerts.values().cloned()))
            .collect()
    }

    /// Every pending or firing alert's state (for tests and the notifier).
    pub fn active_states(&self) -> Vec<(BTreeMap<String, String>, State)> {
        let groups = self.lock();
        groups
            .values()
            .flatten()
            .flat_map(|g| {
                g.alerts
                    .iter()
                    .flat_map(|s| s.active().map(|a| (a.labels.clone(), a.state)))
            })
            .collect()
    }
}

/// A rule's alert state as kept in the store.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedRule {
    name: String,
    expr: String,
    alerts: super::alert::AlertSet,
    last_evaluation: Option<i64>,
}

fn state_key(g: &Group) -> String {
    format!("alerts/{}/{}", g.file.display(), g.name)
}

fn save(store: &dyn Store, g: &GroupState) -> Result<(), String> {
    let saved: Vec<SavedRule> = g
        .group
        .rules
        .iter()
        .zip(&g.alerts)
        .map(|(r, a)| SavedRule {
            name: r.name().to_owned(),
            expr: r.expr.clone(),
            alerts: a.clone(),
            last_evaluation: g.last_evaluation,
        })
        .collect();
    let bytes = bincode::serde::encode_to_vec(&saved, bincode::config::standard())
        .map_err(|e| e.to_string())?;
    store
        .put_state(&state_key(&g.group), Some(&bytes))
        .map_err(|e| e.to_string())
}

/// New groups of a file, with the alert state of rules that kept their
/// group, name and expression.
fn carry_over(old: Vec<GroupState>, parsed: Vec<Group>) -> Vec<GroupState> {
    parsed
        .into_iter()
        .map(|group| {
            let mut state = GroupState::new(group);
            if let Some(before) = old.iter().find(|o| o.group.name == state.group.name) {
                for (i, rule) in state.group.rules.iter().enumerate() {
                    let same = before
                        .group
                        .rules
                        .iter()
                        .position(|r| r.name() == rule.name() && r.expr == rule.expr);
                    if let Some(j) = same {
                        state.alerts[i] = before.alerts[j].clone();
                        state.health[i] = before.health[j].clone();
                    }
                }
                state.last_evaluation = before.last_evaluation;
            }
            state
        })
        .collect()
}

fn alert_json(a: &super::alert::Alert) -> Json {
    json!({
        "labels": a.labels,
        "annotations": a.annotations,
        "state": a.state.as_str(),
        "activeAt": rfc3339(Some(a.active_at)),
        "value": super::template::go_exp(&format!("{:e}", a.value)),
    })
}

fn rfc3339(ms: Option<i64>) -> String {
    match ms {
        Some(ms) => patrol_shared::model::rfc3339(ms),
        None => "0001-01-01T00:00:00Z".into(),
    }
}

/// Evaluates due groups every second and reloads on SIGHUP or a change to
/// a rule file, until `cancel` fires.
pub async fn run(
    manager: Arc<Manager>,
    store: Arc<dyn Store>,
    limits: Limits,
    cancel: CancellationToken,
) {
    let (changed_tx, mut changed_rx) = tokio::sync::mpsc::channel::<()>(1);
    let _watcher = watch(manager.files(), changed_tx.clone());
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let reload = tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => false,
            Some(()) = changed_rx.recv() => true,
            Some(()) = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                info!("SIGHUP: reloading rules");
                true
            }
        };
        let (m, s, l) = (manager.clone(), store.clone(), limits.clone());
        let now = patrol_shared::model::now_ms();
        let _ = tokio::task::spawn_blocking(move || {
            if reload {
                m.reload();
            }
            m.evaluate_due(s.as_ref(), &l, now);
        })
        .await;
    }
}

/// Watches the rule files' folders; a change to one of the files sends on
/// `changed` (coalesced: the channel holds one).
fn watch(
    files: &[PathBuf],
    changed: tokio::sync::mpsc::Sender<()>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    if files.is_empty() {
        return None;
    }
    let wanted: Vec<PathBuf> = files.to_vec();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if event
                .paths
                .iter()
                .any(|p| wanted.iter().any(|w| p.ends_with(w) || w.ends_with(p)))
            {
                let _ = changed.try_send(());
            }
        }
    })
    .map_err(|e| error!(error = %e, "cannot watch rule files; reload with SIGHUP"))
    .ok()?;
    let mut dirs: Vec<&Path> = files.iter().filter_map(|f| f.parent()).collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        if let Err(e) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
            error!(dir = %dir.display(), error = %e, "cannot watch a rule folder; reload with SIGHUP");
        }
    }
    Some(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(files: Vec<PathBuf>) -> Settings {
        Settings {
            files,
            defaults: false,
            interval: Duration::from_secs(60),
            external_labels: BTreeMap::new(),
        }
    }

    #[test]
    fn defaults_load_and_a_bad_reload_keeps_the_old_rules() {
        let m = Manager::load(Settings {
            defaults: true,
            ..settings(vec![])
        })
        .unwrap();
        assert!(m.rules_json(None)["groups"].as_array().unwrap().len() >= 4);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mine.yml");
        std::fs::write(
            &path,
            "groups:\n  - name: mine\n    rules:\n      - alert: Always\n        expr: vector(1)\n",
        )
        .unwrap();
        let m = Manager::load(settings(vec![path.clone()])).unwrap();
        let store_dir = tempfile::tempdir().unwrap();
        let store = crate::storage::disk::DiskStore::open(store_dir.path()).unwrap();
        m.evaluate_due(&store, &Limits::default(), 120_000);
        assert_eq!(m.active_states()[0].1, State::Firing);
        std::fs::write(
            &path,
            "groups:\n  - name: mine\n    rules:\n      - alert: Always\n        expr: vector(\n",
        )
        .unwrap();
        let errors = m.reload();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].to_string().contains("mine.yml:4:"),
            "{}",
            errors[0]
        );
        assert_eq!(
            m.active_states().len(),
            1,
            "the old rule still runs, its alert kept"
        );
        std::fs::write(&path, "groups:\n  - name: mine\n    rules:\n      - alert: Always\n        expr: vector(1)\n      - record: two\n        expr: vector(2)\n").unwrap();
        assert!(m.reload().is_empty());
        assert_eq!(m.active_states()[0].1, State::Firing, "state carried over");
        let rules = m.rules_json(Some("record"));
        assert_eq!(rules["groups"][0]["rules"][0]["name"], "two");
        // A restart finds the alert firing still, from the same moment.
        let fired_at = |m: &Manager| {
            m.lock().values().flatten().next().unwrap().alerts[0]
                .active()
                .next()
                .and_then(|a| a.fired_at)
        };
        let before = fired_at(&m);
        drop(m);
        let again = Manager::load(settings(vec![path.clone()])).unwrap();
        again.restore(&store);
        assert_eq!(again.active_states()[0].1, State::Firing);
        assert_eq!(fired_at(&again), before);
        let m = again;
        let alerts = m.alerts_json(|_| vec!["s1".into()]);
        assert_eq!(alerts["alerts"][0]["value"], "1e+00");
        assert_eq!(alerts["alerts"][0]["silencedBy"][0], "s1");
    }
}
