//! Alerting and recording rules, as Prometheus has them: rule files
//! ([`file`]), label and annotation templates ([`template`]).
//! Evaluation, alert state and notifications come in their own modules.

pub mod file;
pub mod template;
