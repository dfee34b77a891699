//! The routing tree, compiled from [`RouteConfig`]: which routes an alert
//! goes to, and the labels that put it in a group there.
//!
//! Matching is Alertmanager's: an alert enters at the root (which matches
//! everything) and walks down depth-first; at each level it takes the first
//! child that matches, and goes on to the next siblings only when that child
//! has `continue`. A route none of whose children matched is itself the
//! match. Unset settings are inherited from the parent.

use std::collections::BTreeSet;
use std::time::Duration;

use super::config::{
    RouteConfig, DEFAULT_GROUP_INTERVAL, DEFAULT_GROUP_WAIT, DEFAULT_REPEAT_INTERVAL,
};
use super::matcher::{quote, Matcher};
use crate::rules::alert::LabelMap;

/// What a route groups by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    Labels(Vec<String>),
    /// `"..."`: every label; one group per distinct label set.
    All,
}

/// One compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Its place in [`Router::routes`] (pre-order).
    pub index: usize,
    /// Alertmanager's route key: the matchers of the path from the root,
    /// `{}/{severity="critical"}`.
    pub key: String,
    pub receiver: String,
    pub group_by: GroupBy,
    pub group_wait_ms: i64,
    pub group_interval_ms: i64,
    pub repeat_interval_ms: i64,
    matchers: Vec<Matcher>,
    continue_matching: bool,
    children: Vec<usize>,
}

impl Route {
    /// The labels of `labels` that name the alert's group on this route.
    pub fn group_labels(&self, labels: &LabelMap) -> LabelMap {
        match &self.group_by {
            GroupBy::All => labels.clone(),
            GroupBy::Labels(names) => names
                .iter()
                .filter_map(|n| labels.get(n).map(|v| (n.clone(), v.clone())))
                .collect(),
        }
    }
}

/// The compiled tree; see the module comment.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<Route>,
}

/// Settings a route passes to its children.
struct Inherited<'a> {
    receiver: Option<&'a str>,
    group_by: Option<&'a [String]>,
    group_wait_ms: i64,
    group_interval_ms: i64,
    repeat_interval_ms: i64,
}

impl Router {
    /// Compiles the tree; `receivers` are the configured receiver names.
    /// Every problem is reported, keyed as `notify.route.routes[0]…`.
    pub fn new(root: &RouteConfig, receivers: &BTreeSet<String>) -> Result<Router, Vec<String>> {
        let mut router = Router { routes: Vec::new() };
        let mut problems = Vec::new();
        let key = "notify.route";
        if root.receiver.is_none() {
            problems.push(format!("{key}.receiver: the root route needs a receiver"));
        }
        if !root.matchers.is_empty() {
            problems.push(format!(
                "{key}.matchers: the root route matches every alert; put matchers on child routes"
            ));
        }
        if root.continue_matching {
            problems.push(format!("{key}.continue: the root route cannot continue"));
        }
        let inherited = Inherited {
            receiver: None,
            group_by: None,
            group_wait_ms: millis(DEFAULT_GROUP_WAIT),
            group_interval_ms: millis(DEFAULT_GROUP_INTERVAL),
            repeat_interval_ms: millis(DEFAULT_REPEAT_INTERVAL),
        };
        router.add(root, key, None, &inherited, receivers, &mut problems);
        if problems.is_empty() {
            Ok(router)
        } else {
            Err(problems)
        }
    }

    fn add(
        &mut self,
        config: &RouteConfig,
        key: &str,
        parent: Option<usize>,
        inherited: &Inherited<'_>,
        receivers: &BTreeSet<String>,
        problems: &mut Vec<String>,
    ) -> usize {
        let receiver = config.receiver.as_deref().or(inherited.receiver);
        if let Some(name) = &config.receiver {
            if !receivers.contains(name) {
                problems.push(format!(
                    "{key}.receiver: {name:?} is not a configured receiver"
                ));
            }
        }
        let group_by = config.group_by.as_deref().or(inherited.group_by);
        if let Some(names) = &config.group_by {
            group_by_problems(key, names, problems);
        }
        let matchers = compile_matchers(key, &config.matchers, problems);
        let list: Vec<String> = matchers.iter().map(Matcher::to_string).collect();
        let own_key = format!("{{{}}}", list.join(","));
        let route_key = match parent {
            Some(p) => format!("{}/{own_key}", self.routes[p].key),
            None => own_key,
        };
        let mut duration = |name: &str, value: Option<Duration>, fallback: i64| match value {
            Some(d) if d.is_zero() && name != "group_wait" => {
                problems.push(format!("{key}.{name}: must be over 0"));
                fallback
            }
            Some(d) => millis(d),
            None => fallback,
        };
        let group_wait_ms = duration("group_wait", config.group_wait, inherited.group_wait_ms);
        let group_interval_ms = duration(
            "group_interval",
            config.group_interval,
            inherited.group_interval_ms,
        );
        let repeat_interval_ms = duration(
            "repeat_interval",
            config.repeat_interval,
            inherited.repeat_interval_ms,
        );
        let index = self.routes.len();
        self.routes.push(Route {
            index,
            key: route_key,
            receiver: receiver.unwrap_or_default().to_owned(),
            group_by: match group_by {
                Some(names) if names.iter().any(|n| n == "...") => GroupBy::All,
                Some(names) => GroupBy::Labels(names.to_vec()),
                None => GroupBy::Labels(Vec::new()),
            },
            group_wait_ms,
            group_interval_ms,
            repeat_interval_ms,
            matchers,
            continue_matching: config.continue_matching,
            children: Vec::new(),
        });
        let passed = Inherited {
            receiver,
            group_by,
            group_wait_ms,
            group_interval_ms,
            repeat_interval_ms,
        };
        for (i, child) in config.routes.iter().enumerate() {
            let child_key = format!("{key}.routes[{i}]");
            let c = self.add(child, &child_key, Some(index), &passed, receivers, problems);
            self.routes[index].children.push(c);
        }
        index
    }

    /// Every route, in pre-order (the root first).
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The routes an alert with `labels` goes to, in tree order.
    pub fn route(&self, labels: &LabelMap) -> Vec<&Route> {
        let mut out = Vec::new();
        self.walk(0, labels, &mut out);
        out
    }

    /// Alertmanager's `Route.Match`: appends the matches under `index` and
    /// says whether there were any.
    fn walk<'a>(&'a self, index: usize, labels: &LabelMap, out: &mut Vec<&'a Route>) -> bool {
        let Some(route) = self.routes.get(index) else {
            return false;
        };
        if !route.matchers.iter().all(|m| m.matches(labels)) {
            return false;
        }
        let before = out.len();
        for &child in &route.children {
            if self.walk(child, labels, out) && !self.routes[child].continue_matching {
                break;
            }
        }
        if out.len() == before {
            out.push(route);
        }
        true
    }
}

/// Parses a route's matchers, sorted as Alertmanager sorts them so that
/// the route's key does not depend on the order they were written in.
fn compile_matchers(key: &str, texts: &[String], problems: &mut Vec<String>) -> Vec<Matcher> {
    let mut matchers = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        match Matcher::parse(text) {
            Ok(m) => matchers.push(m),
            Err(e) => problems.push(format!("{key}.matchers[{i}]: {e}")),
        }
    }
    matchers.sort_by(|a, b| (&a.name, &a.value, a.op).cmp(&(&b.name, &b.value, b.op)));
    matchers
}

fn group_by_problems(key: &str, names: &[String], problems: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
    for name in names {
        if name == "..." {
            if names.len() > 1 {
                problems.push(format!(
                    "{key}.group_by: \"...\" (every label) cannot be combined with label names"
                ));
            }
        } else if !crate::query::aggregate::valid_label_name(name) {
            problems.push(format!(
                "{key}.group_by: {name:?} is not a valid label name"
            ));
        } else if !seen.insert(name) {
            problems.push(format!("{key}.group_by: {name:?} is listed twice"));
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A label set as Prometheus prints one: `{a="1", b="2"}`, sorted.
pub fn label_set_string(labels: &LabelMap) -> String {
    let mut pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", quote(v)))
        .collect();
    pairs.sort();
    format!("{{{}}}", pairs.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> LabelMap {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn router(toml_text: &str) -> Router {
        let config: RouteConfig = toml::from_str(toml_text).unwrap();
        let names = ["ops", "dba", "sec", "web", "all"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        Router::new(&config, &names).unwrap()
    }

    fn receivers(r: &Router, l: &LabelMap) -> Vec<String> {
        r.route(l).iter().map(|r| r.receiver.clone()).collect()
    }

    const TREE: &str = r#"
        receiver = "ops"
        group_by = ["alertname"]
        [[routes]]
        receiver = "sec"
        matchers = ['category="security"']
        continue = true
        [[routes]]
        receiver = "dba"
        matchers = ['host=~"db.*"']
        group_wait = "1m"
        [[routes.routes]]
        receiver = "all"
        matchers = ['severity="critical"']
        [[routes]]
        receiver = "web"
        matchers = ['host=~"web.*"']
        group_by = ["..."]
    "#;

    #[test]
    fn the_first_matching_route_wins_unless_it_continues() {
        let r = router(TREE);
        assert_eq!(receivers(&r, &labels(&[("host", "db1")])), ["dba"]);
        assert_eq!(receivers(&r, &labels(&[("host", "web1")])), ["web"]);
        assert_eq!(receivers(&r, &labels(&[("host", "mail")])), ["ops"]);
        let secure_db = labels(&[("host", "db1"), ("category", "security")]);
        assert_eq!(receivers(&r, &secure_db), ["sec", "dba"]);
        let critical_db = labels(&[("host", "db1"), ("severity", "critical")]);
        assert_eq!(receivers(&r, &critical_db), ["all"], "depth first");
    }

    #[test]
    fn settings_are_inherited_and_keys_follow_alertmanager() {
        let r = router(TREE);
        let critical_db = labels(&[("host", "db1"), ("severity", "critical")]);
        let route = r.route(&critical_db)[0];
        assert_eq!(route.group_wait_ms, 60_000, "from its parent");
        assert_eq!(route.group_interval_ms, 300_000, "the default");
        assert_eq!(route.repeat_interval_ms, 4 * 3_600_000);
        assert_eq!(route.group_by, GroupBy::Labels(vec!["alertname".into()]));
        assert_eq!(route.key, r#"{}/{host=~"db.*"}/{severity="critical"}"#);
        let web = r.route(&labels(&[("host", "web1"), ("alertname", "X")]))[0];
        assert_eq!(web.group_by, GroupBy::All);
        assert_eq!(
            label_set_string(&web.group_labels(&labels(&[("host", "web1"), ("alertname", "X")]))),
            r#"{alertname="X", host="web1"}"#
        );
        assert_eq!(r.routes()[0].key, "{}");
    }

    #[test]
    fn group_labels_skip_labels_the_alert_lacks() {
        let r = router(TREE);
        let route = r.route(&labels(&[("host", "mail")]))[0];
        assert!(route.group_labels(&labels(&[("host", "mail")])).is_empty());
        let with_name = labels(&[("host", "mail"), ("alertname", "Down")]);
        assert_eq!(
            route.group_labels(&with_name),
            labels(&[("alertname", "Down")])
        );
    }

    #[test]
    fn matcher_order_does_not_change_the_key() {
        let a = router("receiver = \"ops\"\n[[routes]]\nmatchers = ['b=\"2\"', 'a=\"1\"']\n");
        let b = router("receiver = \"ops\"\n[[routes]]\nmatchers = ['a=\"1\"', 'b=\"2\"']\n");
        assert_eq!(a.routes()[1].key, b.routes()[1].key);
        assert_eq!(a.routes()[1].key, r#"{}/{a="1",b="2"}"#);
    }

    #[test]
    fn the_root_must_name_a_receiver_and_match_everything() {
        let config: RouteConfig =
            toml::from_str("matchers = ['a=\"1\"']\ncontinue = true").unwrap();
        let problems = Router::new(&config, &BTreeSet::new()).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
    }
}
