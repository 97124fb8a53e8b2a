//! Log lines that an attacker cannot turn into a flood: a condition that can repeat per
//! connection (refusals at a limit, say) is reported when it first happens and then at
//! most once per [`PERIOD`], with how many times it happened in between.

use std::time::{Duration, Instant};

/// Least time between two lines about the same condition.
pub const PERIOD: Duration = Duration::from_secs(10);

/// One condition's log state.
#[derive(Debug, Default)]
pub struct RateLimited {
    last: Option<Instant>,
    /// Occurrences since the last line.
    since_last: u64,
}

impl RateLimited {
    /// A condition not seen yet.
    pub const fn new() -> Self {
        RateLimited {
            last: None,
            since_last: 0,
        }
    }

    /// Record one occurrence at `now`. Returns `Some(n)` when a line is due: `n` counts
    /// this occurrence and the ones not reported since the previous line.
    pub fn hit(&mut self, now: Instant) -> Option<u64> {
        self.since_last += 1;
        let due = self
            .last
            .is_none_or(|t| now.saturating_duration_since(t) >= PERIOD);
        if !due {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.since_last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_then_once_per_period_with_the_count() {
        let mut r = RateLimited::new();
        let t0 = Instant::now();
        assert_eq!(r.hit(t0), Some(1));
        for i in 1..100 {
            assert_eq!(r.hit(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(r.hit(t0 + PERIOD), Some(100));
        assert_eq!(r.hit(t0 + PERIOD + Duration::from_secs(1)), None);
    }
}
