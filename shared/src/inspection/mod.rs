//! The record of one security-baseline inspection (the contract's daily
//! 巡检): which host, when, by which agent, every check's verdict with its
//! evidence and remediation, and the weighted score.
//!
//! The agent makes inspections (`patrol_agent::baseline` runs the
//! catalogue) and sends each one whole in an `Entry::Inspection`; the
//! collector keeps them. Both sides therefore share the type, and with it
//! the two renderings people read: the text report and the JSON form.
//!
//! Every field is always written, including empty optional ones: the wire
//! encoding (bincode) is not self-describing, so a field skipped when
//! empty could not be read back.

mod report;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use self::report::{civil_date, civil_time};

/// The MLPS host-control family a check belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Identity,
    Ssh,
    Access,
    Audit,
    Intrusion,
    Firewall,
    Malware,
    Resource,
}

impl Category {
    /// The name used in JSON and metric labels (`identity`, `ssh`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Identity => "identity",
            Category::Ssh => "ssh",
            Category::Access => "access",
            Category::Audit => "audit",
            Category::Intrusion => "intrusion",
            Category::Firewall => "firewall",
            Category::Malware => "malware",
            Category::Resource => "resource",
        }
    }

    /// The heading used in reports.
    pub fn title(self) -> &'static str {
        match self {
            Category::Identity => "Identity (身份鉴别)",
            Category::Ssh => "Remote login (SSH)",
            Category::Access => "Access control (访问控制)",
            Category::Audit => "Audit (安全审计)",
            Category::Intrusion => "Intrusion prevention (入侵防范)",
            Category::Firewall => "Firewall",
            Category::Malware => "Malware prevention (恶意代码防范)",
            Category::Resource => "Resource control (资源控制)",
        }
    }
}

/// How much a check weighs in the score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    High,
    Medium,
    Low,
}

impl Severity {
    /// high 3, medium 2, low 1.
    pub fn weight(self) -> u32 {
        match self {
            Severity::High => 3,
            Severity::Medium => 2,
            Severity::Low => 1,
        }
    }

    /// The name used in reports, JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }
}

/// A check's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    /// The check does not apply to this host; `reason` says why.
    NotApplicable,
    /// The check could not be evaluated; `reason` says what went wrong.
    Error,
}

impl Verdict {
    /// The name used in JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::NotApplicable => "not_applicable",
            Verdict::Error => "error",
        }
    }
}

/// One thing a check saw: a value, and where it was when it came from a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The file as the inspected host names it (`/etc/login.defs`).
    #[serde(default)]
    pub file: Option<String>,
    /// 1-based line number in `file`.
    #[serde(default)]
    pub line: Option<u32>,
    pub text: String,
}

impl Evidence {
    /// A value with no file behind it.
    pub fn note(text: impl Into<String>) -> Self {
        Evidence {
            file: None,
            line: None,
            text: text.into(),
        }
    }

    /// A value seen in a file, as a whole.
    pub fn file(file: impl Into<String>, text: impl Into<String>) -> Self {
        Evidence {
            file: Some(file.into()),
            line: None,
            text: text.into(),
        }
    }

    /// A value seen on one line of a file.
    pub fn at(file: impl Into<String>, line: u32, text: impl Into<String>) -> Self {
        Evidence {
            file: Some(file.into()),
            line: Some(line),
            text: text.into(),
        }
    }
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{file}:{line}: {}", self.text),
            (Some(file), None) => write!(f, "{file}: {}", self.text),
            _ => f.write_str(&self.text),
        }
    }
}

/// One check's result in an inspection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub id: String,
    pub title: String,
    pub category: Category,
    pub severity: Severity,
    pub verdict: Verdict,
    pub evidence: Vec<Evidence>,
    /// Why the check is not applicable or could not be evaluated.
    #[serde(default)]
    pub reason: Option<String>,
    pub remediation: String,
}

/// How many checks ended in each verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub pass: usize,
    pub fail: usize,
    pub not_applicable: usize,
    pub error: usize,
}

/// One inspection record: a host, when, by which agent, every result and
/// the weighted score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inspection {
    pub host: String,
    /// The directory the host's files were read from (`/` on a live host).
    pub root: String,
    /// When the inspection ran, in Unix milliseconds (given by the caller).
    pub time_ms: i64,
    pub agent_version: String,
    /// Weight of passed checks over weight of applicable (pass or fail)
    /// checks, in percent with one decimal; none when nothing applies.
    pub score: Option<f64>,
    pub summary: Summary,
    pub results: Vec<CheckResult>,
}

impl Inspection {
    /// Some check failed.
    pub fn has_failures(&self) -> bool {
        self.summary.fail > 0
    }

    /// Some check could not be evaluated.
    pub fn has_errors(&self) -> bool {
        self.summary.error > 0
    }

    /// The result of one check, by id.
    pub fn result(&self, id: &str) -> Option<&CheckResult> {
        self.results.iter().find(|r| r.id == id)
    }

    /// The human report: score, then each category with its failures first.
    pub fn to_text(&self) -> String {
        report::render(self)
    }

    /// The stable machine form: every field of every result.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }
}

/// The weighted score, in percent rounded to one decimal.
pub fn score(results: &[CheckResult]) -> Option<f64> {
    let weight = |v: Verdict| -> u32 {
        results
            .iter()
            .filter(|r| r.verdict == v)
            .map(|r| r.severity.weight())
            .sum()
    };
    let passed = weight(Verdict::Pass);
    let applicable = passed + weight(Verdict::Fail);
    if applicable == 0 {
        return None;
    }
    let percent = f64::from(passed) * 100.0 / f64::from(applicable);
    Some((percent * 10.0).round() / 10.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Inspection {
        let results = vec![
            CheckResult {
                id: "AUTH-001".into(),
                title: "Passwords expire".into(),
                category: Category::Identity,
                severity: Severity::Medium,
                verdict: Verdict::Fail,
                evidence: vec![
                    Evidence::at("/etc/login.defs", 3, "PASS_MAX_DAYS 99999"),
                    Evidence::note("no file behind this"),
                ],
                reason: None,
                remediation: "Set PASS_MAX_DAYS 90.".into(),
            },
            CheckResult {
                id: "RES-001".into(),
                title: "Disk quotas".into(),
                category: Category::Resource,
                severity: Severity::Low,
                verdict: Verdict::NotApplicable,
                evidence: Vec::new(),
                reason: Some("in a container".into()),
                remediation: String::new(),
            },
            CheckResult {
                id: "SSH-001".into(),
                title: "Root cannot log in".into(),
                category: Category::Ssh,
                severity: Severity::High,
                verdict: Verdict::Pass,
                evidence: vec![Evidence::file("/etc/ssh/sshd_config", "PermitRootLogin no")],
                reason: None,
                remediation: String::new(),
            },
        ];
        Inspection {
            host: "db".into(),
            root: "/".into(),
            time_ms: 1_748_736_000_000,
            agent_version: "0.1.0".into(),
            score: score(&results),
            summary: Summary {
                pass: 1,
                fail: 1,
                not_applicable: 1,
                error: 0,
            },
            results,
        }
    }

    #[test]
    fn score_weighs_passes_by_severity() {
        // high (3) passed, medium (2) failed, low not applicable: 3 / 5.
        assert_eq!(sample().score, Some(60.0));
        assert_eq!(score(&[]), None);
    }

    #[test]
    fn an_inspection_with_empty_optional_fields_survives_the_wire_encoding() {
        let inspection = sample();
        let frame = crate::codec::encode_frame(&inspection).unwrap();
        let back: Inspection = crate::codec::decode_payload(&frame[4..]).unwrap();
        assert_eq!(back, inspection);
    }

    #[test]
    fn json_reads_back_and_names_enums_in_snake_case() {
        let inspection = sample();
        let json = inspection.to_json().unwrap();
        let back: Inspection = serde_json::from_str(&json).unwrap();
        assert_eq!(back, inspection);
        assert!(json.contains("\"not_applicable\""), "{json}");
        for c in [Category::Identity, Category::Resource] {
            let quoted = serde_json::to_string(&c).unwrap();
            assert_eq!(quoted, format!("\"{}\"", c.as_str()));
        }
        for v in [Verdict::Pass, Verdict::NotApplicable, Verdict::Error] {
            let quoted = serde_json::to_string(&v).unwrap();
            assert_eq!(quoted, format!("\"{}\"", v.as_str()));
        }
    }
}
