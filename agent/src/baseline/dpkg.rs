//! Debian package metadata: version ordering as dpkg defines it
//! (`epoch:upstream-revision`, `~` sorting before everything, digit runs
//! compared as numbers), and the RFC 822-style stanzas of
//! `/var/lib/dpkg/status` and apt's `Packages` lists, streamed a line at a
//! time since the lists run to megabytes.

use std::cmp::Ordering;
use std::io::BufRead;

/// Compares two Debian versions.
pub(crate) fn compare(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| verrevcmp(ua.as_bytes(), ub.as_bytes()))
        .then_with(|| verrevcmp(ra.as_bytes(), rb.as_bytes()))
}

/// (epoch, upstream, revision).
fn split(version: &str) -> (u64, &str, &str) {
    let version = version.trim();
    let (epoch, rest) = match version.split_once(':') {
        Some((e, rest)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => {
            (e.parse().unwrap_or(u64::MAX), rest)
        }
        _ => (0, version),
    };
    match rest.rsplit_once('-') {
        Some((upstream, revision)) => (epoch, upstream, revision),
        None => (epoch, rest, ""),
    }
}

/// dpkg's weight of a character in a non-digit run.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
    let digit = |s: &[u8], i: usize| s.get(i).is_some_and(u8::is_ascii_digit);
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        // Equal-length digit runs compare by their first difference;
        // otherwise the longer run is the larger number.
        let mut first_diff = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

/// The fields of one package stanza that the baseline uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Stanza {
    pub package: String,
    pub version: String,
    pub architecture: String,
    /// `Status:` of dpkg's database (`install ok installed`).
    pub status: String,
}

impl Stanza {
    pub fn installed(&self) -> bool {
        self.status.split_whitespace().last() == Some("installed")
    }
}

/// Calls `each` for every stanza of a status file or Packages list; lines
/// that are not valid UTF-8 are read leniently, read errors end the walk.
pub(crate) fn stanzas(reader: impl BufRead, mut each: impl FnMut(Stanza)) {
    let mut current = Stanza::default();
    let flush = |s: &mut Stanza, each: &mut dyn FnMut(Stanza)| {
        if !s.package.is_empty() {
            each(std::mem::take(s));
        } else {
            *s = Stanza::default();
        }
    };
    for line in reader.split(b'\n') {
        let Ok(line) = line else {
            break;
        };
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end();
        if line.is_empty() {
            flush(&mut current, &mut each);
            continue;
        }
        if line.starts_with([' ', '\t']) {
            continue; // a continuation of a multi-line field
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().to_owned();
        match key {
            "Package" => current.package = value,
            "Version" => current.version = value,
            "Architecture" => current.architecture = value,
            "Status" => current.status = value,
            _ => {}
        }
    }
    flush(&mut current, &mut each);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_like_dpkg() {
        let lt = |a: &str, b: &str| assert_eq!(compare(a, b), Ordering::Less, "{a} < {b}");
        lt("1.0", "1.1");
        lt("1.0~rc1", "1.0");
        lt("1.0", "1.0+deb12u1");
        lt("1.9", "1.10");
        lt("3.0.11-1~deb12u2", "3.0.13-1~deb12u1");
        lt("1:0.9", "2:0.1");
        lt("9.9", "1:0.1");
        lt("2.36-9", "2.36-9+deb12u4");
        lt("6.8.0-40-generic", "6.8.0-45-generic");
        lt("5.14.0-362.el9.x86_64", "5.14.0-427.el9.x86_64");
        assert_eq!(compare("1.0-1", "1.0-1"), Ordering::Equal);
        assert_eq!(compare("01.0", "1.0"), Ordering::Equal);
    }

    #[test]
    fn stanzas_are_split_on_blank_lines() {
        let text = "Package: openssl\nStatus: install ok installed\nVersion: 3.0.11-1~deb12u2\nDescription: x\n more\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n";
        let mut out = Vec::new();
        stanzas(text.as_bytes(), |s| out.push(s));
        assert_eq!(out.len(), 2);
        assert!(out[0].installed());
        assert!(!out[1].installed());
        assert_eq!(out[0].version, "3.0.11-1~deb12u2");
    }

    proptest::proptest! {
        #[test]
        fn compare_never_panics_and_is_antisymmetric(a in "[0-9a-z.:~+-]{0,16}", b in "[0-9a-z.:~+-]{0,16}") {
            proptest::prop_assert_eq!(compare(&a, &b), compare(&b, &a).reverse());
        }

        #[test]
        fn stanzas_never_panic(text in "(?s).{0,400}") {
            stanzas(text.as_bytes(), |_| {});
        }
    }
}
