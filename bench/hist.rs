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

    /// `p50 12.3 p90 ... p99.99 ... max ...` in µs.
    pub fn describe(&self) -> String {
        format!(
            "p50 {:.1} p90 {:.1} p99 {:.1} p99.9 {:.1} p99.99 {:.1} max {:.1} µs",
            self.p50, self.p90, self.p99, self.p999, self.p9999, self.max
        )
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
