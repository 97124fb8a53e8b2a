//! The CSV exporter: typed rows to and from files through serde and the `csv` crate. The
//! header comes from the row's fields; a column a row type added later reads back as its
//! default from an older file, and a column it no longer has is ignored.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Context, Error, Result};

/// `rows` as CSV text, header first ("" for no rows: the header comes from a row).
pub fn to_string<T: Serialize>(rows: &[T]) -> Result<String> {
    let mut w = ::csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r).map_err(|e| Error::msg(e.to_string()))?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| Error::msg(format!("flushing CSV: {e}")))?;
    String::from_utf8(bytes).map_err(|e| Error::msg(format!("CSV is not UTF-8: {e}")))
}

/// The rows of CSV `text`; an error names the line and the field.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<Vec<T>> {
    ::csv::Reader::from_reader(text.as_bytes())
        .deserialize()
        .map(|r| {
            r.map_err(|e| {
                let line = e
                    .position()
                    .map_or(String::new(), |p| format!("line {}: ", p.line()));
                Error::msg(format!("{line}{}", describe(&e)))
            })
        })
        .collect()
}

/// The error's words without the crate's position prefix (the line is given apart).
fn describe(e: &::csv::Error) -> String {
    match e.kind() {
        ::csv::ErrorKind::Deserialize { err, .. } => match err.field() {
            Some(f) => format!("field {}: {}", f + 1, err.kind()),
            None => err.kind().to_string(),
        },
        ::csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} fields where the header has {expected_len}"),
        _ => e.to_string(),
    }
}

/// Write `rows` to `path`; with no rows there is no file (a phase that measured nothing
/// leaves nothing behind).
pub fn write<T: Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let text = to_string(rows).with_context(|| format!("writing {}", path.display()))?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The rows of `path`, none if there is no such file.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<Option<Vec<T>>> {
    match std::fs::read_to_string(path) {
        Ok(text) => from_str(&text)
            .with_context(|| path.display().to_string())
            .map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::from(e).context(format!("reading {}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Pair {
        name: String,
        n: u32,
        #[serde(default)]
        later: Option<u64>,
        x: f64,
    }

    fn pair(name: &str, n: u32, x: f64) -> Pair {
        Pair {
            name: name.into(),
            n,
            later: None,
            x,
        }
    }

    #[test]
    fn header_from_the_fields_and_a_round_trip() {
        let rows = vec![pair("a", 1, 1.5), pair("b", 2, f64::NAN)];
        let text = to_string(&rows).expect("writes");
        assert_eq!(text.lines().next(), Some("name,n,later,x"));
        assert_eq!(text.lines().nth(2), Some("b,2,,NaN"));
        let back: Vec<Pair> = from_str(&text).expect("reads");
        assert_eq!(back[0], rows[0]);
        assert!(back[1].x.is_nan(), "NaN survives");
        assert_eq!(to_string::<Pair>(&[]).expect("empty"), "");
    }

    #[test]
    fn columns_added_or_dropped_since_a_file_was_written() {
        let old: Vec<Pair> = from_str("name,n,x,gone\nz,9,2,whatever\n").expect("reads");
        assert_eq!(old, vec![pair("z", 9, 2.0)]);
    }

    #[test]
    fn errors_name_the_line_and_the_field() {
        let e = from_str::<Pair>("name,n,later,x\na,1,,1\nb,x,,1\n").expect_err("not a number");
        assert!(e.to_string().starts_with("line 3: field 2:"), "{e}");
        let e = from_str::<Pair>("name,n,later,x\na,1\n").expect_err("short");
        assert!(e.to_string().starts_with("line 2: "), "{e}");
        let e = from_str::<Pair>("nom,n\na,1\n").expect_err("wrong header");
        assert!(e.to_string().contains("name"), "{e}");
    }

    #[test]
    fn a_missing_file_is_none_and_no_rows_write_no_file() {
        let dir = std::env::temp_dir().join(format!("ringecho-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("p.csv");
        let _ = std::fs::remove_file(&path);
        assert_eq!(read::<Pair>(&path).expect("reads"), None);
        write::<Pair>(&path, &[]).expect("writes");
        assert!(!path.exists());
        write(&path, &[pair("q", 3, 0.25)]).expect("writes");
        assert_eq!(
            read::<Pair>(&path).expect("reads"),
            Some(vec![pair("q", 3, 0.25)])
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
