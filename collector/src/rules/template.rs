//! Label and annotation templates, the subset of Go's text/template that
//! Prometheus rules use: `{{ $labels.NAME }}`, `{{ $value }}`,
//! `{{ $externalLabels.NAME }}`, pipelines (`{{ $value | humanize }}`),
//! calls (`{{ printf "%.1f" $value }}`), `{{-`/`-}}` trimming, and the
//! helpers humanize, humanize1024, humanizePercentage, humanizeDuration,
//! printf, toUpper, toLower and title, formatting numbers as Go does.

use std::collections::BTreeMap;

/// What a template can refer to.
pub struct Context<'a> {
    pub labels: &'a BTreeMap<String, String>,
    pub value: f64,
    pub external_labels: &'a BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Str(String),
    Num(f64),
}

impl Val {
    fn text(&self) -> String {
        match self {
            Val::Str(s) => s.clone(),
            Val::Num(v) => go_float(*v, 'g', None),
        }
    }

    fn num(&self) -> Result<f64, String> {
        match self {
            Val::Num(v) => Ok(*v),
            Val::Str(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a number")),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Arg {
    Labels(Option<String>),
    External(Option<String>),
    Value,
    Str(String),
    Num(f64),
    Func(String),
}

const FUNCTIONS: [&str; 8] = [
    "humanize",
    "humanize1024",
    "humanizePercentage",
    "humanizeDuration",
    "printf",
    "toUpper",
    "toLower",
    "title",
];

/// Checks a template without rendering it.
pub fn check(template: &str) -> Result<(), String> {
    for part in split(template)? {
        if let Part::Action(action) = part {
            pipeline(&action)?;
        }
    }
    Ok(())
}

/// Renders a template.
pub fn render(template: &str, ctx: &Context<'_>) -> Result<String, String> {
    let mut out = String::new();
    for part in split(template)? {
        match part {
            Part::Text(t) => out.push_str(&t),
            Part::Action(action) => {
                let commands = pipeline(&action)?;
                let mut carried: Option<Val> = None;
                for command in commands {
                    carried = Some(run(&command, carried, ctx)?);
                }
                if let Some(v) = carried {
                    out.push_str(&v.text());
                }
            }
        }
    }
    Ok(out)
}

enum Part {
    Text(String),
    Action(String),
}

/// Text and `{{ … }}` actions, with `{{-` and `-}}` trimming whitespace.
fn split(template: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let mut text = rest[..open].to_owned();
        let mut inner = &rest[open + 2..];
        if let Some(trimmed) = inner.strip_prefix('-') {
            text = text.trim_end().to_owned();
            inner = trimmed;
        }
        parts.push(Part::Text(text));
        let close = inner
            .find("}}")
            .ok_or_else(|| "unclosed action: missing }}".to_owned())?;
        let mut action = &inner[..close];
        rest = &inner[close + 2..];
        if let Some(trimmed) = action.strip_suffix('-') {
            action = trimmed;
            rest = rest.trim_start();
        }
        parts.push(Part::Action(action.trim().to_owned()));
    }
    parts.push(Part::Text(rest.to_owned()));
    Ok(parts)
}

/// An action as commands separated by `|`, each a list of arguments.
fn pipeline(action: &str) -> Result<Vec<Vec<Arg>>, String> {
    let mut commands = vec![Vec::new()];
    let mut chars = action.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '|' {
            chars.next();
            commands.push(Vec::new());
        } else if c == '"' || c == '`' {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    None => return Err("unterminated string".into()),
                    Some(q) if q == c => break,
                    Some('\\') if c == '"' => match chars.next() {
                        Some('n') => s.push('\n'),
                        Some('t') => s.push('\t'),
                        Some(other) => s.push(other),
                        None => return Err("unterminated string".into()),
                    },
                    Some(other) => s.push(other),
                }
            }
            if let Some(command) = commands.last_mut() {
                command.push(Arg::Str(s));
            }
        } else {
            let mut word = String::new();
            while let Some(&w) = chars.peek() {
                if w.is_whitespace() || w == '|' {
                    break;
                }
                word.push(w);
                chars.next();
            }
            let arg = if word == "$value" || word == "$.Value" {
                Arg::Value
            } else if let Some(rest) = word.strip_prefix("$labels") {
                Arg::Labels(field(rest, &word)?)
            } else if let Some(rest) = word.strip_prefix("$externalLabels") {
                Arg::External(field(rest, &word)?)
            } else if word.starts_with('$') {
                return Err(format!("unknown variable {word}"));
            } else if let Ok(n) = word.parse::<f64>() {
                Arg::Num(n)
            } else if FUNCTIONS.contains(&word.as_str()) {
                Arg::Func(word)
            } else {
                return Err(format!("function {word:?} not defined"));
            };
            if let Some(command) = commands.last_mut() {
                command.push(arg);
            }
        }
    }
    if commands.iter().any(|c| c.is_empty()) {
        return Err("empty command in pipeline".into());
    }
    Ok(commands)
}

fn field(rest: &str, word: &str) -> Result<Option<String>, String> {
    if rest.is_empty() {
        return Ok(None);
    }
    rest.strip_prefix('.')
        .filter(|f| !f.is_empty())
        .map(|f| Some(f.to_owned()))
        .ok_or_else(|| format!("cannot read {word}"))
}

fn value(arg: &Arg, ctx: &Context<'_>) -> Result<Val, String> {
    let map_text = |m: &BTreeMap<String, String>| {
        let inner: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        format!("map[{}]", inner.join(" "))
    };
    Ok(match arg {
        Arg::Value => Val::Num(ctx.value),
        Arg::Labels(Some(name)) => Val::Str(ctx.labels.get(name).cloned().unwrap_or_default()),
        Arg::Labels(None) => Val::Str(map_text(ctx.labels)),
        Arg::External(Some(name)) => {
            Val::Str(ctx.external_labels.get(name).cloned().unwrap_or_default())
        }
        Arg::External(None) => Val::Str(map_text(ctx.external_labels)),
        Arg::Str(s) => Val::Str(s.clone()),
        Arg::Num(n) => Val::Num(*n),
        Arg::Func(f) => return Err(format!("{f} used as a value")),
    })
}

/// Runs one command; `carried` is the previous command's result, passed as
/// the last argument.
fn run(command: &[Arg], carried: Option<Val>, ctx: &Context<'_>) -> Result<Val, String> {
    let Some(Arg::Func(name)) = command.first() else {
        if command.len() == 1 && carried.is_none() {
            return value(&command[0], ctx);
        }
        return Err("a value cannot take arguments".into());
    };
    let mut args: Vec<Val> = command[1..]
        .iter()
        .map(|a| value(a, ctx))
        .collect::<Result<_, _>>()?;
    args.extend(carried);
    let one = |args: &[Val]| -> Result<Val, String> {
        match args {
            [v] => Ok(v.clone()),
            _ => Err(format!("{name} takes one argument, got {}", args.len())),
        }
    };
    Ok(match name.as_str() {
        "humanize" => Val::Str(humanize(one(&args)?.num()?, 1000.0)),
        "humanize1024" => Val::Str(humanize(one(&args)?.num()?, 1024.0)),
        "humanizePercentage" => Val::Str(format!(
            "{}%",
            go_float(one(&args)?.num()? * 100.0, 'g', Some(4))
        )),
        "humanizeDuration" => Val::Str(humanize_duration(one(&args)?.num()?)),
        "toUpper" => Val::Str(one(&args)?.text().to_uppercase()),
        "toLower" => Val::Str(one(&args)?.text().to_lowercase()),
        "title" => Val::Str(title(&one(&args)?.text())),
        "printf" => {
            let (format, rest) = args
                .split_first()
                .ok_or_else(|| "printf needs a format".to_owned())?;
            Val::Str(printf(&format.text(), rest)?)
        }
        other => return Err(format!("function {other:?} not defined")),
    })
}

fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric() && c != '\'';
    }
    out
}

/// Prometheus' humanize: SI prefixes (or binary ones for 1024), four
/// significant digits.
fn humanize(v: f64, base: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return go_float(v, 'g', Some(4));
    }
    if v.abs() >= 1.0 {
        let prefixes: &[&str] = if base == 1024.0 {
            &["", "ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"]
        } else {
            &["", "k", "M", "G", "T", "P", "E", "Z", "Y"]
        };
        let (mut v, mut i) = (v, 0);
        while v.abs() >= base && i + 1 < prefixes.len() {
            v /= base;
            i += 1;
        }
        return format!("{}{}", go_float(v, 'g', Some(4)), prefixes[i]);
    }
    if base == 1024.0 {
        return go_float(v, 'g', Some(4));
    }
    let prefixes = ["", "m", "u", "n", "p", "f", "a", "z", "y"];
    let (mut v, mut i) = (v, 0);
    while v.abs() < 1.0 && i + 1 < prefixes.len() {
        v *= 1000.0;
        i += 1;
    }
    format!("{}{}", go_float(v, 'g', Some(4)), prefixes[i])
}

fn humanize_duration(v: f64) -> String {
    if !v.is_finite() {
        return go_float(v, 'g', Some(4));
    }
    if v == 0.0 {
        return format!("{}s", go_float(v, 'g', Some(4)));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        let v = v.abs();
        let d = v as i64;
        let (secs, mins, hours, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86_400);
        return if days != 0 {
            format!("{sign}{days}d {hours}h {mins}m {secs}s")
        } else if hours != 0 {
            format!("{sign}{hours}h {mins}m {secs}s")
        } else if mins != 0 {
            format!("{sign}{mins}m {secs}s")
        } else {
            format!("{sign}{}s", go_float(v, 'g', Some(4)))
        };
    }
    let (mut v, mut prefix) = (v, "");
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", go_float(v, 'g', Some(4)))
}

/// Go's `%g` (shortest when `precision` is None, as `%v` prints floats),
/// `%e` and `%f`.
fn go_float(v: f64, verb: char, precision: Option<usize>) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    match verb {
        'f' => format!("{:.*}", precision.unwrap_or(6), v),
        'e' => go_exp(&format!("{:.*e}", precision.unwrap_or(6), v)),
        _ => {
            // Digits and exponent of the value rounded as asked.
            let sci = match precision {
                Some(p) => format!("{:.*e}", p.max(1) - 1, v),
                None => format!("{v:e}"),
            };
            let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
            let exp: i32 = exp.parse().unwrap_or(0);
            let limit = precision.map_or(6, |p| p.max(1) as i32);
            if exp < -4 || exp >= limit {
                let mantissa = trim_zeros(mantissa);
                go_exp(&format!("{mantissa}e{exp}"))
            } else {
                let digits = mantissa.replace(['.', '-'], "").len() as i32;
                let decimals = (digits - 1 - exp).max(0) as usize;
                trim_zeros(&format!("{:.*}", decimals, v)).to_owned()
            }
        }
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// Rust's `1.5e6` as Go's `1.5e+06`.
pub fn go_exp(s: &str) -> String {
    let Some((m, e)) = s.split_once('e') else {
        return s.to_owned();
    };
    let (sign, digits) = match e.strip_prefix('-') {
        Some(d) => ('-', d),
        None => ('+', e),
    };
    format!("{m}e{sign}{digits:0>2}")
}

/// Go's printf for the verbs rules use: %s %v %q %d %f %e %g with an
/// optional precision, and %%.
fn printf(format: &str, args: &[Val]) -> Result<String, String> {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut precision = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut digits = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                digits.push(*d);
                chars.next();
            }
            precision = Some(digits.parse().unwrap_or(0));
        }
        let verb = chars.next().ok_or("printf: format ends in %")?;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let arg = args
            .next()
            .ok_or_else(|| format!("printf: no argument for %{verb}"))?;
        match verb {
            's' | 'v' => out.push_str(&arg.text()),
            'q' => out.push_str(&format!("{:?}", arg.text())),
            'd' => out.push_str(&format!("{}", arg.num()?.trunc() as i64)),
            'f' | 'e' | 'g' => out.push_str(&go_float(arg.num()?, verb, precision)),
            other => return Err(format!("printf: verb %{other} not supported")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_with(t: &str, value: f64) -> String {
        let labels = BTreeMap::from([
            ("host".to_string(), "db".to_string()),
            ("mountpoint".to_string(), "/var".to_string()),
        ]);
        let external = BTreeMap::from([("site".to_string(), "hq".to_string())]);
        render(
            t,
            &Context {
                labels: &labels,
                value,
                external_labels: &external,
            },
        )
        .unwrap()
    }

    #[test]
    fn variables_pipelines_and_helpers() {
        assert_eq!(
            render_with(
                "{{ $labels.mountpoint }} on {{ $labels.host }} at {{$externalLabels.site}}",
                0.0
            ),
            "/var on db at hq"
        );
        assert_eq!(render_with("{{ $value }}", 1_000_000.0), "1e+06");
        assert_eq!(render_with("{{ $value }}", 0.5), "0.5");
        assert_eq!(render_with("{{ $value | humanize }}", 1234567.0), "1.235M");
        assert_eq!(render_with("{{ humanize $value }}", 0.0123), "12.3m");
        assert_eq!(render_with("{{ $value | humanize1024 }}", 2048.0), "2ki");
        assert_eq!(
            render_with("{{ $value | humanizePercentage }}", 0.0473),
            "4.73%"
        );
        assert_eq!(
            render_with("{{ $value | humanizeDuration }}", 93784.0),
            "1d 2h 3m 4s"
        );
        assert_eq!(
            render_with("{{ $value | humanizeDuration }}", 0.25),
            "250ms"
        );
        assert_eq!(
            render_with("{{ printf \"%.1f%%\" $value }}", 95.26),
            "95.3%"
        );
        assert_eq!(render_with("{{ $labels.host | toUpper }}", 0.0), "DB");
        assert_eq!(render_with("{{ \"disk full\" | title }}", 0.0), "Disk Full");
        assert_eq!(render_with("a  {{- $labels.host -}}  b", 0.0), "adbb");
        assert_eq!(render_with("{{ $labels.missing }}", 0.0), "");
    }

    #[test]
    fn bad_templates_are_refused_with_a_reason() {
        assert!(check("{{ $value | nosuch }}")
            .unwrap_err()
            .contains("nosuch"));
        assert!(check("{{ $value").unwrap_err().contains("unclosed"));
        assert!(check("{{ $nope }}").unwrap_err().contains("$nope"));
        assert!(check("plain text").is_ok());
    }

    #[test]
    fn go_float_formats_as_go() {
        assert_eq!(go_float(123456.0, 'g', None), "123456");
        assert_eq!(go_float(0.00001, 'g', None), "1e-05");
        assert_eq!(go_float(1.0 / 3.0, 'g', Some(4)), "0.3333");
        assert_eq!(go_float(12345.0, 'g', Some(4)), "1.234e+04");
        assert_eq!(go_float(100.0, 'g', Some(4)), "100");
    }
}
