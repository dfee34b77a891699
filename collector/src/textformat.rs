//! The Prometheus text exposition format and OpenMetrics, read for
//! `patrol import`: samples with their labels, values and timestamps,
//! and each family's type and help. Prometheus text gives timestamps in
//! milliseconds, OpenMetrics in seconds (a file ending in `# EOF` is
//! OpenMetrics). An error names the line and what was expected there.

use std::collections::HashMap;

use patrol_shared::model::MetricKind;

/// Label pairs as written.
type Labels = Vec<(String, String)>;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct TextSample {
    pub name: String,
    /// Labels as written, without the name.
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
}

/// What a file holds.
#[derive(Debug, Default)]
pub struct Parsed {
    pub samples: Vec<TextSample>,
    /// Family name → type and help, from `# TYPE` and `# HELP`.
    pub meta: HashMap<String, (MetricKind, String)>,
}

/// A problem at a line (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct TextError {
    pub line: usize,
    pub message: String,
}

/// Whether the text is OpenMetrics (it ends with `# EOF`).
pub fn is_openmetrics(text: &str) -> bool {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(str::trim)
        == Some("# EOF")
}

/// Parses a whole file; `openmetrics` decides the timestamp unit.
pub fn parse(text: &str, openmetrics: bool) -> Result<Parsed, TextError> {
    let mut out = Parsed::default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        let err = |message: String| TextError {
            line: i + 1,
            message,
        };
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    let kind = match kind.trim() {
                        "counter" => MetricKind::Counter,
                        "gauge" => MetricKind::Gauge,
                        _ => MetricKind::Unknown,
                    };
                    out.meta
                        .entry(name.to_owned())
                        .or_insert((kind, String::new()))
                        .0 = kind;
                }
                (Some("HELP"), Some(name), help) => {
                    let help = help.unwrap_or("").to_owned();
                    out.meta
                        .entry(name.to_owned())
                        .or_insert((MetricKind::Unknown, String::new()))
                        .1 = help;
                }
                _ => {}
            }
            continue;
        }
        out.samples.push(sample(line, openmetrics).map_err(err)?);
    }
    Ok(out)
}

fn sample(line: &str, openmetrics: bool) -> Result<TextSample, String> {
    let name_end = line
        .find(['{', ' ', '\t'])
        .ok_or_else(|| format!("expected a metric name, labels and a value, got {line:?}"))?;
    let name = &line[..name_end];
    if name.is_empty() {
        return Err("missing metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, remaining) = label_set(after)?;
        labels = parsed;
        rest = remaining;
    }
    // Drop an OpenMetrics exemplar.
    let rest = rest.split(" # ").next().unwrap_or("");
    let mut fields = rest.split_whitespace();
    let value_text = fields
        .next()
        .ok_or_else(|| format!("{name}: missing value"))?;
    let value =
        parse_value(value_text).ok_or_else(|| format!("{name}: invalid value {value_text:?}"))?;
    let timestamp_ms = match fields.next() {
        None => None,
        Some(t) if openmetrics => Some(
            t.parse::<f64>()
                .ok()
                .filter(|s| s.is_finite())
                .map(|s| (s * 1000.0).round() as i64)
                .ok_or_else(|| format!("{name}: invalid timestamp {t:?} (OpenMetrics: seconds)"))?,
        ),
        Some(t) => Some(t.parse::<i64>().map_err(|_| {
            format!("{name}: invalid timestamp {t:?} (Prometheus text: milliseconds)")
        })?),
    };
    if let Some(extra) = fields.next() {
        return Err(format!("{name}: unexpected {extra:?} after the timestamp"));
    }
    Ok(TextSample {
        name: name.to_owned(),
        labels,
        value,
        timestamp_ms,
    })
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok().filter(|v: &f64| v.is_finite()),
    }
}

/// `name="value", ...}` → labels and what follows the brace.
fn label_set(mut s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let eq = s.find('=').ok_or("expected label=\"value\"")?;
        let name = s[..eq].trim();
        if name.is_empty() {
            return Err("empty label name".into());
        }
        let after = s[eq + 1..].trim_start();
        let body = after
            .strip_prefix('"')
            .ok_or_else(|| format!("label {name}: expected a quoted value"))?;
        let mut value = String::new();
        let mut chars = body.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("label {name}: unterminated value")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    Some((_, c)) => {
                        value.push('\\');
                        value.push(c);
                    }
                    None => return Err(format!("label {name}: unterminated value")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((name.to_owned(), value));
        s = body[end + 1..].trim_start();
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err(format!("after label {name}: expected ',' or '}}'"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn prometheus_text_with_escapes_and_timestamps() {
        let text = "# HELP up Whether the target is up.\n# TYPE up gauge\nup{job=\"a\\\"b\",x=\"1\\n2\",} 1 1700000000000\nplain 2.5\nnan NaN\n";
        let p = parse(text, is_openmetrics(text)).unwrap();
        assert_eq!(p.samples.len(), 3);
        assert_eq!(
            p.samples[0].labels,
            [("job".into(), "a\"b".into()), ("x".into(), "1\n2".into())]
        );
        assert_eq!(p.samples[0].timestamp_ms, Some(1_700_000_000_000));
        assert_eq!(p.samples[1].timestamp_ms, None);
        assert!(p.samples[2].value.is_nan());
        assert_eq!(
            p.meta["up"],
            (MetricKind::Gauge, "Whether the target is up.".into())
        );
    }

    #[test]
    fn openmetrics_timestamps_are_seconds() {
        let text = "# TYPE x gauge\nx 1 1700000000.5 # {trace=\"t\"} 1\n# EOF\n";
        assert!(is_openmetrics(text));
        let p = parse(text, true).unwrap();
        assert_eq!(p.samples[0].timestamp_ms, Some(1_700_000_000_500));
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse("ok 1\nbad{a=\"1\" 2\n", false).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("expected ','"), "{err}");
        assert_eq!(parse("x one\n", false).unwrap_err().line, 1);
        assert!(parse("x 1 12.5\n", false).is_err());
    }

    proptest! {
        #[test]
        fn never_panics(text in "\\PC{0,200}") {
            let _ = parse(&text, false);
            let _ = parse(&text, true);
        }
    }
}
