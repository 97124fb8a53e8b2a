//! The one reader behind every CSV file a results directory holds (throughput, latency,
//! UDP, burst, repeated, memory), so that `ringecho plot` reads them all back the same
//! way: header checked, blank lines skipped, field count checked, typed fields, and an
//! error that names the line.

use std::fmt::Write as _;
use std::str::FromStr;

use super::hist::Percentiles;
use crate::error::{Error, Result};

/// What a CSV file looks like, for [`rows`].
#[derive(Debug, Clone, Copy)]
pub struct Layout<'a> {
    /// The line the file must start with; `None`: the first line is skipped unread.
    pub header: Option<&'a str>,
    /// What the file holds, for the wrong-header error (`not a ringecho {what} CSV`).
    pub what: &'a str,
    /// Fields on every row.
    pub width: usize,
}

/// One row split on `,`, with getters that give `None` for a field that is missing or
/// does not parse (the row is then malformed).
#[derive(Debug)]
pub struct Fields<'a>(Vec<&'a str>);

impl<'a> Fields<'a> {
    /// Field `i` as text.
    pub fn str(&self, i: usize) -> Option<&'a str> {
        self.0.get(i).copied()
    }

    /// Field `i` parsed as a `T` (`NaN` reads back as NaN for the floats).
    pub fn parse<T: FromStr>(&self, i: usize) -> Option<T> {
        self.str(i)?.parse().ok()
    }

    /// The six columns from `at` that [`push_percentiles`] writes. The count is 0: the
    /// files keep no sample count.
    pub fn percentiles(&self, at: usize) -> Option<Percentiles> {
        Some(Percentiles {
            count: 0,
            p50: self.parse(at)?,
            p90: self.parse(at + 1)?,
            p99: self.parse(at + 2)?,
            p999: self.parse(at + 3)?,
            p9999: self.parse(at + 4)?,
            max: self.parse(at + 5)?,
        })
    }
}

/// Every line after the first that is not blank, with its 1-based line number.
pub fn data_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .skip(1)
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l))
}

/// The rows of `text` laid out as `layout` says, each made by `parse`; a row with the
/// wrong number of fields, or that `parse` rejects, is an error naming its line.
pub fn rows<T>(
    text: &str,
    layout: &Layout,
    parse: impl Fn(&Fields<'_>) -> Option<T>,
) -> Result<Vec<T>> {
    if let Some(header) = layout.header {
        if text.lines().next() != Some(header) {
            crate::bail!("not a ringecho {} CSV (unexpected header)", layout.what);
        }
    }
    data_lines(text)
        .map(|(n, line)| {
            let f = Fields(line.split(',').collect());
            let row = if f.0.len() == layout.width {
                parse(&f)
            } else {
                None
            };
            row.ok_or_else(|| Error::msg(format!("line {n}: malformed")))
        })
        .collect()
}

/// Append `p` as six columns, p50 to max with two decimals, each after a `,`.
pub fn push_percentiles(s: &mut String, p: &Percentiles) {
    for v in [p.p50, p.p90, p.p99, p.p999, p.p9999, p.max] {
        let _ = write!(s, ",{v:.2}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAIRS: Layout = Layout {
        header: Some("name,n"),
        what: "pairs",
        width: 2,
    };

    fn pair(f: &Fields<'_>) -> Option<(String, u32)> {
        Some((f.str(0)?.to_string(), f.parse(1)?))
    }

    #[test]
    fn blank_lines_are_skipped_and_counted() {
        let back = rows("name,n\n\na,1\n  \nb,2\n", &PAIRS, pair).expect("parses");
        assert_eq!(back, vec![("a".to_string(), 1), ("b".to_string(), 2)]);
        assert_eq!(rows("name,n\n", &PAIRS, pair).expect("empty").len(), 0);
    }

    #[test]
    fn errors_name_the_line() {
        let e = rows("nom,n\na,1\n", &PAIRS, pair).expect_err("wrong header");
        assert_eq!(
            e.to_string(),
            "not a ringecho pairs CSV (unexpected header)"
        );
        assert!(rows("", &PAIRS, pair).is_err(), "no header at all");
        let e = rows("name,n\na,1\n\nb,2,3\n", &PAIRS, pair).expect_err("too many fields");
        assert_eq!(e.to_string(), "line 4: malformed");
        let e = rows("name,n\n\n\nc\n", &PAIRS, pair).expect_err("too few fields");
        assert_eq!(e.to_string(), "line 4: malformed");
        let e = rows("name,n\na,1\nb,x\n", &PAIRS, pair).expect_err("not a number");
        assert_eq!(e.to_string(), "line 3: malformed");
    }

    #[test]
    fn without_a_header_the_first_line_is_skipped_unread() {
        let any = Layout {
            header: None,
            ..PAIRS
        };
        let back = rows("anything\nz,9\n", &any, pair).expect("parses");
        assert_eq!(back, vec![("z".to_string(), 9)]);
        let e = rows("anything\nz,-1\n", &any, pair).expect_err("negative u32");
        assert_eq!(e.to_string(), "line 2: malformed");
    }

    #[test]
    fn percentiles_read_back_what_push_percentiles_wrote() {
        let p = Percentiles {
            count: 7,
            p50: 1.5,
            p90: 2.25,
            p99: 3.0,
            p999: f64::NAN,
            p9999: 5.0,
            max: 60.75,
        };
        let mut s = String::from("x");
        push_percentiles(&mut s, &p);
        assert_eq!(s, "x,1.50,2.25,3.00,NaN,5.00,60.75");
        let f = Fields(s.split(',').collect());
        let back = f.percentiles(1).expect("six columns");
        assert_eq!((back.count, back.p50, back.max), (0, 1.5, 60.75));
        assert!(back.p999.is_nan());
        assert_eq!(f.percentiles(2), None, "past the end is none, not a panic");
        assert_eq!(f.parse::<f64>(0), None);
    }
}
