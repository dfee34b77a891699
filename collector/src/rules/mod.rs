//! Alerting and recording rules, as Prometheus has them: rule files
//! ([`file`]), label and annotation templates ([`template`]), the alert
//! state machine ([`alert`]), group evaluation ([`group`]) and the set of
//! groups the collector runs, reloaded on change ([`manager`]).

pub mod alert;
pub mod file;
pub mod group;
pub mod manager;
pub mod template;
