//! The alerts the notifier sends: the rules' firing and resolved alerts,
//! less those an active silence covers (they still show as firing in the
//! API, with the silence's id, but reach no one).

use std::sync::Arc;

use super::{Alert, AlertSource, Clock};
use crate::rules::manager::Manager;
use crate::silence::SilenceBook;

/// See the module comment.
pub struct RuleAlerts {
    pub rules: Arc<Manager>,
    pub silences: Arc<SilenceBook>,
    /// Where an alert's rule can be seen (`generatorURL`).
    pub generator_url: String,
    pub clock: Clock,
}

impl AlertSource for RuleAlerts {
    fn alerts(&self) -> Vec<Alert> {
        let now = (self.clock)();
        self.rules
            .alerts()
            .iter()
            .filter(|a| self.silences.silencing(&a.labels, now).is_empty())
            .filter_map(|a| Alert::from_rule(a, &self.generator_url))
            .collect()
    }
}
