//! Host metrics, the node_exporter way (TEMPORARY STUB by the lead so the rest compiles; the host-metrics engineer replaces this whole file).

use std::path::PathBuf;
use std::time::Duration;

use patrol_shared::model::Family;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    pub proc_path: PathBuf,
}
impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            proc_path: "/proc".into(),
        }
    }
}
impl HostConfig {
    pub fn validate(&self) -> Vec<String> {
        Vec::new()
    }
}
pub struct HostMetrics {
    config: HostConfig,
}
pub struct HostCycle {
    pub families: Vec<Family>,
    pub reports: Vec<CollectorReport>,
}
pub struct CollectorReport {
    pub name: &'static str,
    pub duration: Duration,
    pub error: Option<String>,
}
impl HostMetrics {
    pub fn new(config: HostConfig) -> Self {
        HostMetrics { config }
    }
    pub fn collect(&mut self) -> HostCycle {
        let text =
            std::fs::read_to_string(self.config.proc_path.join("loadavg")).unwrap_or_default();
        let load: f64 = text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let mut cpu = Family::counter("node_cpu_seconds_total", "cpu");
        cpu.push(&[("cpu", "0"), ("mode", "idle")], 1.0);
        HostCycle {
            families: vec![
                Family::gauge("node_load1", "load").with_value(load),
                cpu,
                Family::gauge("node_memory_MemAvailable_bytes", "m").with_value(1.0),
            ],
            reports: vec![],
        }
    }
}
