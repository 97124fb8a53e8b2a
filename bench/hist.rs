//! Latency histograms: HdrHistogram in nanoseconds, merged across threads (never averaged
//! percentiles), summarised into the percentiles every report and CSV row carries.

use hdrhistogram::Histogram;

/// Highest latency recorded (60 s); anything slower is clamped to it.
const MAX_NS: u64 = 60_000_000_000;

/// A latency histogram in nanoseconds, 3 significant figures.
pub fn new_histogram() -> Histogram<u64> {
    // Bounds are constants that the library accepts (low >= 1, high >= 2 * low, sigfig <= 5).
    Histogram::new_with_bounds(1, MAX_NS, 3).unwrap_or_else(|_| unreachable!())
}

/// Record one latency, clamped to the histogram's range.
pub fn record(h: &mut Histogram<u64>, ns: u64) {
    let _ = h.record(ns.clamp(1, MAX_NS));
}

/// The percentiles reports show, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
}

impl Percentiles {
    /// Summarise `h` (values in ns) in µs.
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50: us(0.5),
            p90: us(0.9),
            p99: us(0.99),
            p999: us(0.999),
            p9999: us(0.9999),
            max: h.max() as f64 / 1000.0,
        }
    }

    /// p50, p90, p99, p99.9, p99.99 and max: the six columns every CSV file keeps of a
    /// latency (flat, since a CSV row cannot nest).
    pub fn columns(&self) -> [f64; 6] {
        [
            self.p50, self.p90, self.p99, self.p999, self.p9999, self.max,
        ]
    }

    /// Back from [`Percentiles::columns`]; the count is 0, since the files keep none.
    pub fn from_columns([p50, p90, p99, p999, p9999, max]: [f64; 6]) -> Percentiles {
        Percentiles {
            count: 0,
            p50,
            p90,
            p99,
            p999,
            p9999,
            max,
        }
    }

    /// `p50 12.3 µs p90 ... max 1.27 s`, each value in its own unit ([`format_us`]).
    pub fn describe(&self) -> String {
        format!(
            "p50 {} p90 {} p99 {} p99.9 {} p99.99 {} max {}",
            format_us(self.p50),
            format_us(self.p90),
            format_us(self.p99),
            format_us(self.p999),
            format_us(self.p9999),
            format_us(self.max)
        )
    }
}

/// A duration given in µs as people read it: µs below 1 ms, ms below 1 s, s above, to 3
/// significant digits ("12.3 µs", "1.27 ms", "1.27 s"). Latencies span nanoseconds to
/// seconds, and "p99 1269825.5 µs" has to be counted to be read. Console output only: the
/// CSV files keep plain µs columns.
pub fn format_us(us: f64) -> String {
    if !us.is_finite() {
        return "n/a".to_string();
    }
    const UNITS: [(f64, &str); 3] = [(1.0, "µs"), (1e3, "ms"), (1e6, "s")];
    let mut i = UNITS
        .iter()
        .rposition(|&(scale, _)| us.abs() >= scale)
        .unwrap_or(0);
    loop {
        let (scale, unit) = UNITS[i];
        let v = us / scale;
        let decimals = match v.abs() {
            a if a < 9.995 => 2,
            a if a < 99.95 => 1,
            _ => 0,
        };
        let text = format!("{v:.decimals$}");
        // 999.6 µs rounds to "1000": that is 1.00 ms.
        if i + 1 < UNITS.len() && v.abs() >= 999.5 {
            i += 1;
            continue;
        }
        return format!("{text} {unit}");
    }
}

/// Merge per-thread histograms into one.
pub fn merge<'a>(parts: impl IntoIterator<Item = &'a Histogram<u64>>) -> Histogram<u64> {
    let mut all = new_histogram();
    for p in parts {
        // Same bounds everywhere, so addition cannot fail; if it ever did, the samples
        // would be missing from the count, which the report shows.
        let _ = all.add(p);
    }
    all
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_scale_their_unit_and_keep_three_significant_digits() {
        use super::format_us;
        for (us, want) in [
            (0.0, "0.00 µs"),
            (0.3, "0.30 µs"),
            (9.994, "9.99 µs"),
            (9.996, "10.0 µs"),
            (12.34, "12.3 µs"),
            (123.4, "123 µs"),
            (999.4, "999 µs"),
            (999.6, "1.00 ms"),
            (1_000.0, "1.00 ms"),
            (1_269.8, "1.27 ms"),
            (45_678.0, "45.7 ms"),
            (999_700.0, "1.00 s"),
            (1_269_825.5, "1.27 s"),
            (60_000_000.0, "60.0 s"),
            (1_234_000_000.0, "1234 s"),
            (f64::NAN, "n/a"),
        ] {
            assert_eq!(format_us(us), want, "{us} µs");
        }
    }

    use super::*;

    #[test]
    fn merged_percentiles_are_over_all_samples_not_an_average() {
        let mut fast = new_histogram();
        let mut slow = new_histogram();
        for _ in 0..990 {
            record(&mut fast, 10_000);
        }
        for _ in 0..10 {
            record(&mut slow, 5_000_000);
        }
        let p = Percentiles::of(&merge([&fast, &slow]));
        assert_eq!(p.count, 1000);
        assert!((p.p50 - 10.0).abs() < 0.1, "{p:?}");
        assert!((p.p99 - 10.0).abs() < 0.1, "p99 is the 990th sample: {p:?}");
        assert!((p.p999 - 5000.0).abs() < 5.0, "{p:?}");
        assert!((p.max - 5000.0).abs() < 5.0, "{p:?}");
    }

    #[test]
    fn out_of_range_values_are_clamped_not_lost() {
        let mut h = new_histogram();
        record(&mut h, 0);
        record(&mut h, u64::MAX);
        assert_eq!(h.len(), 2);
    }
}
