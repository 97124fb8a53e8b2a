//! Histograms saved in HdrHistogram's interval log format (V2, deflate-compressed, base64
//! per line), the format HdrHistogram's own tools (`HistogramLogProcessor`, the online
//! plotter) read. One file per server; each measured point is one tagged interval, so a
//! reader gets the full distribution, not only the percentiles the CSV carries, and
//! `ringecho plot` redraws the percentile spectra from these files.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

use crate::error::{Context, Error, Result};

/// One interval of a log: what was measured (the tag), when, and its histogram (ns).
pub struct Entry {
    /// `WORKLOAD:POINT`, e.g. `throughput:c100-s64` or `latency:r50000-corrected`; no
    /// spaces or commas (the format forbids them).
    pub tag: String,
    /// Start of the interval, from the start of the run.
    pub start: Duration,
    /// Length of the interval.
    pub length: Duration,
    /// Latencies in nanoseconds.
    pub hist: Histogram<u64>,
}

/// Write `entries` as an interval log at `path` (values in ns; the log's max-value column
/// is in µs so it reads like the CSV).
pub fn write(path: &Path, comment: &str, entries: &[Entry]) -> Result<()> {
    let mut out = Vec::new();
    let mut ser = V2DeflateSerializer::new();
    {
        let mut builder = IntervalLogWriterBuilder::new();
        builder.with_max_value_divisor(1000.0);
        for line in comment.lines() {
            builder.add_comment(line);
        }
        builder.add_comment("values are nanoseconds; tags are WORKLOAD:POINT");
        let mut w = builder
            .begin_log_with(&mut out, &mut ser)
            .context("starting a histogram log")?;
        for e in entries {
            let tag = Tag::new(&e.tag).ok_or_else(|| {
                Error::msg(format!("histogram tag '{}' has a space or comma", e.tag))
            })?;
            w.write_histogram(&e.hist, e.start, e.length, Some(tag))
                .map_err(|err| Error::msg(format!("writing histogram {}: {err}", e.tag)))?;
        }
    }
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

/// Read every tagged interval of the log at `path`.
pub fn read(path: &Path) -> Result<Vec<Entry>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&bytes).with_context(|| format!("reading {}", path.display()))
}

/// Parse an interval log's text.
pub fn parse(bytes: &[u8]) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut de = Deserializer::new();
    for item in IntervalLogIterator::new(bytes) {
        let item = item.map_err(|e| Error::msg(format!("malformed histogram log: {e:?}")))?;
        let LogEntry::Interval(iv) = item else {
            continue;
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(iv.encoded_histogram())
            .map_err(|e| Error::msg(format!("histogram is not base64: {e}")))?;
        let hist: Histogram<u64> = de
            .deserialize(&mut raw.as_slice())
            .map_err(|e| Error::msg(format!("histogram does not decode: {e:?}")))?;
        entries.push(Entry {
            tag: iv.tag().map(|t| t.as_str().to_string()).unwrap_or_default(),
            start: iv.start_timestamp(),
            length: iv.duration(),
            hist,
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hist;

    #[test]
    fn histograms_round_trip_through_the_log() {
        let mut a = hist::new_histogram();
        let mut b = hist::new_histogram();
        for v in 1..=10_000u64 {
            hist::record(&mut a, v * 1000);
        }
        hist::record(&mut b, 42);
        hist::record(&mut b, 7_000_000_000);
        let dir = std::env::temp_dir().join(format!("ringecho-hlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("t.hlog");
        let entries = vec![
            Entry {
                tag: "throughput:c100-s64".into(),
                start: Duration::from_millis(1500),
                length: Duration::from_secs(4),
                hist: a.clone(),
            },
            Entry {
                tag: "latency:r1000-corrected".into(),
                start: Duration::from_secs(9),
                length: Duration::from_secs(2),
                hist: b.clone(),
            },
        ];
        write(&path, "ringecho test\nsecond line", &entries).expect("write");
        let text = std::fs::read_to_string(&path).expect("text");
        assert!(text.starts_with("#ringecho test\n#second line\n"), "{text}");
        let back = read(&path).expect("read");
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].tag, "throughput:c100-s64");
        assert_eq!(back[1].tag, "latency:r1000-corrected");
        assert_eq!(back[0].hist, a);
        assert_eq!(back[1].hist, b);
        assert_eq!(back[0].length, Duration::from_secs(4));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_tag_with_a_space_is_refused_not_written_broken() {
        let e = Entry {
            tag: "bad tag".into(),
            start: Duration::ZERO,
            length: Duration::ZERO,
            hist: hist::new_histogram(),
        };
        let path = std::env::temp_dir().join(format!("ringecho-hlog-bad-{}", std::process::id()));
        assert!(write(&path, "", &[e]).is_err());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse(b"Tag=x,0.1,1.0,2.0,not-base64!!\n").is_err());
    }
}
