//! /proc/sys/fs/file-nr: file handles allocated and the system maximum.

use patrol_shared::model::Family;

use super::number;

pub fn parse(text: &str, out: &mut Vec<Family>) -> Result<(), String> {
    let mut fields = text.split_ascii_whitespace();
    let allocated = number(fields.next(), "file-nr allocated")?;
    let _unused = fields.next();
    let maximum = number(fields.next(), "file-nr maximum")?;
    out.push(
        Family::gauge(
            "node_filefd_allocated",
            "File descriptor statistics: allocated.",
        )
        .with_value(allocated),
    );
    out.push(
        Family::gauge(
            "node_filefd_maximum",
            "File descriptor statistics: maximum.",
        )
        .with_value(maximum),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocated_and_maximum() {
        let mut out = Vec::new();
        parse("1632\t0\t9223372036854775807\n", &mut out).unwrap();
        assert_eq!(out[0].series[0].value, 1632.0);
        assert_eq!(out[1].series[0].value, 9223372036854775807.0);
        assert!(parse("12\n", &mut Vec::new()).is_err());
    }
}
