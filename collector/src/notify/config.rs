//! The `[notify]` configuration: an Alertmanager-like routing tree
//! (`route`), the named `receivers` it sends to, and how delivery retries
//! (`delivery`). Defaults live here and only here; [`NotifyConfig::problems`]
//! reports every problem at once, each naming its key, so the collector's
//! config loader can add them to its own list.
//!
//! In TOML:
//!
//! ```toml
//! [notify]
//! external_url = "https://patrol.example.com"
//!
//! [notify.route]
//! receiver = "ops"
//! group_by = ["alertname", "host"]
//!
//! [[notify.route.routes]]
//! receiver = "dba"
//! matchers = ['host=~"db.*"', 'severity="critical"']
//!
//! [[notify.receivers]]
//! name = "ops"
//! kind = "webhook"
//! url = "https://hooks.example.com/patrol"
//! secret = "shared secret"
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use patrol_shared::config as cfg;
use serde::{Deserialize, Serialize};

use super::route::Router;

/// `group_wait` of a route tree that sets none.
pub const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);
/// `group_interval` of a route tree that sets none.
pub const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// `repeat_interval` of a route tree that sets none.
pub const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);

/// `[notify]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Patrol's address as people reach it; links in messages point there
    /// and webhooks get it as `externalURL`.
    #[serde(default)]
    pub external_url: String,
    /// The root of the routing tree; every alert enters here.
    pub route: RouteConfig,
    #[serde(default)]
    pub receivers: Vec<ReceiverConfig>,
    #[serde(default)]
    pub delivery: DeliveryConfig,
}

/// One node of the routing tree. Unset values are inherited from the
/// parent (the root takes the defaults above).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver: Option<String>,
    /// Label names whose values form a group; `["..."]` groups by every
    /// label (one group per alert).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<Vec<String>>,
    /// How long a new group waits for more alerts before its first message.
    #[serde(
        default,
        with = "optional_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub group_wait: Option<Duration>,
    /// How long a group waits before it sends about a change.
    #[serde(
        default,
        with = "optional_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub group_interval: Option<Duration>,
    /// How long before a message that changed nothing is sent again.
    #[serde(
        default,
        with = "optional_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub repeat_interval: Option<Duration>,
    /// Prometheus-style matchers (`severity="critical"`, `host=~"db.*"`,
    /// `env!="test"`, `job!~"tmp.*"`); all must match.
    #[serde(default)]
    pub matchers: Vec<String>,
    /// Keep looking at the following sibling routes after this one matched.
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

/// A named receiver: where and how one kind of message is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceiverConfig {
    pub name: String,
    /// Whether resolved alerts are sent (a group whose alerts all resolved
    /// is then sent once more as resolved).
    #[serde(default = "yes")]
    pub send_resolved: bool,
    /// CA certificates (PEM) that an `https` receiver's certificate must
    /// chain to; the system bundle when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
    /// Accept any certificate from an `https` receiver. Only for tests and
    /// closed networks: anyone on the path can read and change messages.
    #[serde(default)]
    pub tls_insecure_skip_verify: bool,
    /// The kind and its settings (`kind = "webhook"`, `url = …`). Keys
    /// this struct does not know go to the kind's struct, which refuses
    /// unknown ones (serde cannot deny them here, next to `flatten`).
    #[serde(flatten)]
    pub kind: ReceiverKind,
}

fn yes() -> bool {
    true
}

/// The receiver kinds, by their `kind` value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ReceiverKind {
    /// Alertmanager's webhook (payload version 4).
    Webhook(WebhookConfig),
    /// A DingTalk (钉钉) group robot.
    DingTalk(DingTalkConfig),
    /// A WeCom (企业微信) group robot.
    WeCom(WeComConfig),
    /// A Feishu (飞书) custom bot.
    Feishu(FeishuConfig),
    /// A Slack incoming webhook.
    Slack(SlackConfig),
    /// An existing Alertmanager, which takes over grouping and routing.
    Alertmanager(AlertmanagerConfig),
}

impl ReceiverKind {
    pub fn name(&self) -> &'static str {
        match self {
            ReceiverKind::Webhook(_) => "webhook",
            ReceiverKind::DingTalk(_) => "dingtalk",
            ReceiverKind::WeCom(_) => "wecom",
            ReceiverKind::Feishu(_) => "feishu",
            ReceiverKind::Slack(_) => "slack",
            ReceiverKind::Alertmanager(_) => "alertmanager",
        }
    }

    /// Whether ticket events can go to it: everything but an Alertmanager,
    /// which only takes alerts.
    pub fn takes_ticket_events(&self) -> bool {
        !matches!(self, ReceiverKind::Alertmanager(_))
    }

    /// The URL the kind posts to (for the Alertmanager kind, its base).
    pub fn url(&self) -> &str {
        match self {
            ReceiverKind::Webhook(c) => &c.url,
            ReceiverKind::DingTalk(c) => &c.url,
            ReceiverKind::WeCom(c) => &c.url,
            ReceiverKind::Feishu(c) => &c.url,
            ReceiverKind::Slack(c) => &c.url,
            ReceiverKind::Alertmanager(c) => &c.url,
        }
    }
}

/// `kind = "webhook"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// When set, each request carries `X-Patrol-Signature: sha256=<hex>`,
    /// the HMAC-SHA256 of the body with this key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// Most alerts in one message (0: all); the rest are counted in
    /// `truncatedAlerts`.
    #[serde(default)]
    pub max_alerts: usize,
}

/// `kind = "dingtalk"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DingTalkConfig {
    /// The robot's webhook, with its `access_token`.
    pub url: String,
    /// The robot's signing secret ("加签", `SEC…`), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
}

/// `kind = "wecom"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeComConfig {
    /// The group robot's webhook, with its `key`.
    pub url: String,
}

/// `kind = "feishu"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeishuConfig {
    /// The custom bot's webhook.
    pub url: String,
    /// The bot's signature secret ("签名校验"), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
}

/// `kind = "slack"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The incoming webhook.
    pub url: String,
}

/// `kind = "alertmanager"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// The Alertmanager's base URL (`http://am.example.com:9093`); alerts
    /// are posted to `<url>/api/v2/alerts`.
    pub url: String,
}

/// A secret from the config file: kept out of `Debug` output and logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// `[notify.delivery]`: timeouts and retries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Longest one request may take, connecting included.
    #[serde(with = "cfg::duration")]
    pub timeout: Duration,
    /// Wait after the first failed attempt; doubled after each failure.
    #[serde(with = "cfg::duration")]
    pub backoff_initial: Duration,
    /// Longest wait between attempts.
    #[serde(with = "cfg::duration")]
    pub backoff_max: Duration,
    /// A notification not delivered this long after it was queued is
    /// given up (recorded, counted and dropped).
    #[serde(with = "cfg::duration")]
    pub deadline: Duration,
    /// Requests in flight at once, over all receivers.
    pub concurrency: usize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(5 * 60),
            deadline: Duration::from_secs(3600),
            concurrency: 4,
        }
    }
}

impl NotifyConfig {
    /// Resolves relative CA file paths against `base` (the config file's
    /// folder).
    pub fn resolve(&mut self, base: &Path) {
        for r in &mut self.receivers {
            if let Some(p) = r.tls_ca_file.as_mut().filter(|p| p.is_relative()) {
                *p = base.join(&*p);
            }
        }
    }

    /// The receiver called `name`.
    pub fn receiver(&self, name: &str) -> Option<&ReceiverConfig> {
        self.receivers.iter().find(|r| r.name == name)
    }

    /// Every problem, each prefixed with its key (`notify.route.routes[0].
    /// matchers[1]: …`); empty when the config is usable.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(route_problems) = Router::new(&self.route, &self.receiver_names()) {
            problems.extend(route_problems);
        }
        let mut names = BTreeSet::new();
        for (i, r) in self.receivers.iter().enumerate() {
            let key = format!("notify.receivers[{i}]");
            if r.name.trim().is_empty() {
                problems.push(format!("{key}.name: must not be empty"));
            } else if !names.insert(r.name.as_str()) {
                problems.push(format!("{key}.name: {:?} is used twice", r.name));
            }
            receiver_problems(&key, r, &mut problems);
        }
        if !self.external_url.is_empty() {
            if let Err(e) = check_url(&self.external_url) {
                problems.push(format!("notify.external_url: {e}"));
            }
        }
        delivery_problems(&self.delivery, &mut problems);
        problems
    }

    fn receiver_names(&self) -> BTreeSet<String> {
        self.receivers.iter().map(|r| r.name.clone()).collect()
    }
}

fn receiver_problems(key: &str, r: &ReceiverConfig, problems: &mut Vec<String>) {
    if let Err(e) = check_url(r.kind.url()) {
        problems.push(format!("{key}.url: {e}"));
    }
    let secret = match &r.kind {
        ReceiverKind::Webhook(c) => c.secret.as_ref(),
        ReceiverKind::DingTalk(c) => c.secret.as_ref(),
        ReceiverKind::Feishu(c) => c.secret.as_ref(),
        _ => None,
    };
    if secret.is_some_and(|s| s.0.is_empty()) {
        problems.push(format!(
            "{key}.secret: must not be empty (leave it out instead)"
        ));
    }
    if r.tls_insecure_skip_verify && r.tls_ca_file.is_some() {
        problems.push(format!(
            "{key}.tls_ca_file: has no effect with tls_insecure_skip_verify = true; set one of them"
        ));
    }
}

fn delivery_problems(d: &DeliveryConfig, problems: &mut Vec<String>) {
    for (key, value) in [
        ("notify.delivery.timeout", d.timeout),
        ("notify.delivery.backoff_initial", d.backoff_initial),
        ("notify.delivery.deadline", d.deadline),
    ] {
        if value.is_zero() {
            problems.push(format!("{key}: must be over 0"));
        }
    }
    if d.backoff_max < d.backoff_initial {
        problems.push(format!(
            "notify.delivery.backoff_max: {:?} is shorter than backoff_initial ({:?})",
            d.backoff_max, d.backoff_initial
        ));
    }
    if d.concurrency == 0 {
        problems.push("notify.delivery.concurrency: must be at least 1".into());
    }
}

/// Checks that `url` is an absolute `http` or `https` URL with a host.
pub(crate) fn check_url(url: &str) -> Result<hyper::Uri, String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("{url:?}: expected an http:// or https:// URL")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{url:?}: no host"));
    }
    Ok(uri)
}

/// Serde helpers for an optional duration written as "30s", "5m".
mod optional_duration {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => cfg::duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        cfg::duration::deserialize(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NotifyConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    const MINIMAL: &str = r#"
        [route]
        receiver = "ops"
        [[receivers]]
        name = "ops"
        kind = "webhook"
        url = "http://127.0.0.1:9000/hook"
    "#;

    #[test]
    fn a_minimal_config_takes_the_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        assert_eq!(c.delivery, DeliveryConfig::default());
        let r = c.receiver("ops").unwrap();
        assert!(r.send_resolved);
        assert!(matches!(&r.kind, ReceiverKind::Webhook(w) if w.secret.is_none()));
    }

    #[test]
    fn every_receiver_kind_parses() {
        let c = parse(
            r#"
            external_url = "https://patrol.example.com"
            [route]
            receiver = "hook"
            group_by = ["..."]
            group_wait = "10s"
            [[route.routes]]
            receiver = "ding"
            matchers = ['severity="critical"']
            continue = true
            [[receivers]]
            name = "hook"
            kind = "webhook"
            url = "https://hooks.example.com/x"
            secret = "s3cret"
            max_alerts = 10
            [[receivers]]
            name = "ding"
            kind = "dingtalk"
            url = "https://oapi.dingtalk.com/robot/send?access_token=abc"
            secret = "SECabc"
            [[receivers]]
            name = "wecom"
            kind = "wecom"
            url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k"
            [[receivers]]
            name = "feishu"
            kind = "feishu"
            url = "https://open.feishu.cn/open-apis/bot/v2/hook/x"
            secret = "f"
            [[receivers]]
            name = "slack"
            kind = "slack"
            url = "https://hooks.slack.com/services/T/B/X"
            send_resolved = false
            [[receivers]]
            name = "am"
            kind = "alertmanager"
            url = "http://127.0.0.1:9093"
            tls_insecure_skip_verify = true
            [delivery]
            deadline = "2h"
            backoff_initial = "100ms"
            "#,
        )
        .unwrap();
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        let kinds: Vec<&str> = c.receivers.iter().map(|r| r.kind.name()).collect();
        assert_eq!(
            kinds,
            [
                "webhook",
                "dingtalk",
                "wecom",
                "feishu",
                "slack",
                "alertmanager"
            ]
        );
        assert_eq!(c.route.group_wait, Some(Duration::from_secs(10)));
        assert!(c.route.routes[0].continue_matching);
        assert_eq!(c.delivery.deadline, Duration::from_secs(7200));
        assert_eq!(c.delivery.backoff_initial, Duration::from_millis(100));
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "secrets stay out of Debug"
        );
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let err = parse(&MINIMAL.replace("url =", "urll =")).unwrap_err();
        assert!(err.contains("urll"), "{err}");
        // In a receiver table (its kind's fields are checked) and at the top.
        let err = parse(&format!("{MINIMAL}\ncolour = 1\n")).unwrap_err();
        assert!(err.contains("colour"), "{err}");
        let err = parse(&format!("colour = 1\n{MINIMAL}")).unwrap_err();
        assert!(err.contains("colour"), "{err}");
        let err =
            parse(&MINIMAL.replace("receiver = \"ops\"", "receiver = \"ops\"\nwait = \"1s\""))
                .unwrap_err();
        assert!(err.contains("wait"), "{err}");
        let err = parse(&MINIMAL.replace("\"webhook\"", "\"pager\"")).unwrap_err();
        assert!(err.contains("pager"), "{err}");
    }

    #[test]
    fn problems_name_their_keys() {
        let c = parse(
            r#"
            external_url = "ftp://x"
            [route]
            receiver = "nobody"
            group_by = ["...", "host"]
            group_interval = "0s"
            [[route.routes]]
            matchers = ['severity=~"("', "no operator"]
            [[receivers]]
            name = "a"
            kind = "webhook"
            url = "not a url"
            secret = ""
            [[receivers]]
            name = "a"
            kind = "slack"
            url = "https://hooks.slack.com/x"
            [delivery]
            timeout = "0s"
            backoff_initial = "10s"
            backoff_max = "1s"
            concurrency = 0
            "#,
        )
        .unwrap();
        let problems = c.problems();
        let text = problems.join("\n");
        for expected in [
            "notify.route.receiver: \"nobody\" is not a configured receiver",
            "notify.route.group_by:",
            "notify.route.group_interval: must be over 0",
            "notify.route.routes[0].matchers[0]:",
            "notify.route.routes[0].matchers[1]:",
            "notify.receivers[0].url:",
            "notify.receivers[0].secret:",
            "notify.receivers[1].name: \"a\" is used twice",
            "notify.external_url:",
            "notify.delivery.timeout: must be over 0",
            "notify.delivery.backoff_max:",
            "notify.delivery.concurrency:",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }

    #[test]
    fn relative_ca_files_resolve_against_the_config_folder() {
        let mut c = parse(&format!("{MINIMAL}\ntls_ca_file = \"ca.pem\"\n")).unwrap();
        c.resolve(Path::new("/etc/patrol"));
        assert_eq!(
            c.receivers[0].tls_ca_file.as_deref(),
            Some(Path::new("/etc/patrol/ca.pem"))
        );
    }
}
