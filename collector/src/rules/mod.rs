//! Alerting and recording rules, as Prometheus has them: rule files
//! ([`file`]), label and annotation templates ([`template`]), the alert
//! state machine ([`alert`]) and group evaluation ([`group`]).

pub mod alert;
pub mod file;
pub mod group;
pub mod template;
