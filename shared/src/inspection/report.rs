//! The human report of an inspection, read like Lynis' or Wazuh SCA's:
//! the score first, then each category with its failures (evidence and
//! remediation) before its errors, passes and not-applicable checks.

use std::fmt::Write;

use super::{CheckResult, Inspection, Verdict};

pub(super) fn render(inspection: &Inspection) -> String {
    let mut out = String::new();
    let s = &inspection.summary;
    let _ = writeln!(
        out,
        "Security baseline of {} ({}) at {}, agent {}",
        inspection.host,
        inspection.root,
        civil_time(inspection.time_ms),
        inspection.agent_version
    );
    let score = inspection
        .score
        .map_or_else(|| "n/a".to_owned(), |s| format!("{s:.1} %"));
    let _ = writeln!(
        out,
        "Score: {score} — {} passed, {} failed, {} not applicable, {} errors ({} checks)",
        s.pass,
        s.fail,
        s.not_applicable,
        s.error,
        inspection.results.len()
    );
    let mut categories: Vec<_> = inspection.results.iter().map(|r| r.category).collect();
    categories.dedup();
    for category in categories {
        let _ = writeln!(out, "\n== {} ==", category.title());
        let in_category = || {
            inspection
                .results
                .iter()
                .filter(move |r| r.category == category)
        };
        for verdict in [
            Verdict::Fail,
            Verdict::Error,
            Verdict::Pass,
            Verdict::NotApplicable,
        ] {
            for r in in_category().filter(|r| r.verdict == verdict) {
                line(&mut out, r);
            }
        }
    }
    out
}

fn line(out: &mut String, r: &CheckResult) {
    const INDENT: &str = "                ";
    match r.verdict {
        Verdict::Fail => {
            let _ = writeln!(
                out,
                "  FAIL   {:<10} {} [{}]",
                r.id,
                r.title,
                r.severity.as_str()
            );
            for e in &r.evidence {
                let _ = writeln!(out, "{INDENT}evidence: {e}");
            }
            let _ = writeln!(out, "{INDENT}fix: {}", r.remediation);
        }
        Verdict::Error => {
            let _ = writeln!(
                out,
                "  ERROR  {:<10} {} [{}]",
                r.id,
                r.title,
                r.severity.as_str()
            );
            let _ = writeln!(
                out,
                "{INDENT}reason: {}",
                r.reason.as_deref().unwrap_or("unknown")
            );
        }
        Verdict::Pass => {
            let first = r
                .evidence
                .first()
                .map(|e| format!(" — {e}"))
                .unwrap_or_default();
            let _ = writeln!(out, "  pass   {:<10} {}{first}", r.id, r.title);
        }
        Verdict::NotApplicable => {
            let _ = writeln!(
                out,
                "  n/a    {:<10} {} — {}",
                r.id,
                r.title,
                r.reason.as_deref().unwrap_or("")
            );
        }
    }
}

/// `YYYY-MM-DD` of a day count since 1970-01-01 (proleptic Gregorian,
/// Howard Hinnant's `civil_from_days`).
pub fn civil_date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe
        .saturating_add(era.saturating_mul(400))
        .saturating_add(i64::from(m <= 2));
    (y, m, d)
}

/// `YYYY-MM-DD HH:MM:SS UTC` of Unix milliseconds.
pub fn civil_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let of_day = secs.rem_euclid(86_400);
    format!(
        "{} {:02}:{:02}:{:02} UTC",
        civil_date(secs.div_euclid(86_400)),
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_from_day_counts() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(19_000), "2022-01-08");
        assert_eq!(civil_date(-1), "1969-12-31");
        assert_eq!(civil_date(20_240), "2025-06-01");
        assert_eq!(
            civil_time(1_748_736_000_000 + 3_723_000),
            "2025-06-01 01:02:03 UTC"
        );
        let _ = civil_date(i64::MAX);
        let _ = civil_date(i64::MIN);
        let _ = civil_time(i64::MIN);
    }
}
