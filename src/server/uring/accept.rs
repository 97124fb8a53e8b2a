//! When to re-arm the listener's multishot accept after it ended in an error that is
//! neither a refusal (no free direct descriptor: the kernel closed that connection, and
//! the worker re-arms at once, refusing at the rate they come) nor fatal. Such a failure
//! (no memory, no buffer space) may leave its connection queued and fail again on the
//! very next accept: re-arming at once would spin the worker at full CPU for as long as
//! it lasts. So a second one in a row, with no connection accepted between, waits before
//! the next try, doubling from [`FIRST`] up to [`MOST`], or until a connection closes;
//! the first accepted connection resets it.

use std::time::Duration;

/// The wait after the second failed accept in a row.
pub const FIRST: Duration = Duration::from_millis(5);
/// The longest wait between tries.
pub const MOST: Duration = Duration::from_millis(200);

/// The accept's back-off state, on the worker's millisecond clock.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AcceptBackoff {
    /// Failed accepts since the last accepted connection.
    failures: u32,
    /// When the paused accept is to be re-armed (none: not paused).
    retry_at_ms: Option<u32>,
}

impl AcceptBackoff {
    /// A connection was accepted: the listener works.
    pub fn accepted(&mut self) {
        self.failures = 0;
    }

    /// The accept ended with an error at `now_ms`: whether to re-arm it at once (else it
    /// is paused until [`AcceptBackoff::due`]).
    pub fn failed(&mut self, now_ms: u32) -> bool {
        self.failures = self.failures.saturating_add(1);
        if self.failures < 2 {
            return true;
        }
        let doublings = (self.failures - 2).min(16);
        let wait = FIRST.saturating_mul(1 << doublings).min(MOST);
        self.retry_at_ms = Some(now_ms.wrapping_add(wait.as_millis() as u32));
        false
    }

    /// Whether a paused accept is due at `now_ms`; clears the pause when it is.
    pub fn due(&mut self, now_ms: u32) -> bool {
        match self.retry_at_ms {
            Some(at) if (now_ms.wrapping_sub(at) as i32) >= 0 => {
                self.retry_at_ms = None;
                true
            }
            _ => false,
        }
    }

    /// Whether the accept may be armed at `now_ms`: it is not paused, or its pause is
    /// over (which clears it).
    pub fn may_arm(&mut self, now_ms: u32) -> bool {
        self.retry_at_ms.is_none() || self.due(now_ms)
    }

    /// A descriptor was freed (a connection closed): a paused accept may work now, so it
    /// is due at once; whether it was paused.
    pub fn resume(&mut self) -> bool {
        self.retry_at_ms.take().is_some()
    }

    /// How long until a paused accept is due (none: not paused).
    pub fn wait(&self, now_ms: u32) -> Option<Duration> {
        let at = self.retry_at_ms?;
        let left = at.wrapping_sub(now_ms) as i32;
        Some(Duration::from_millis(left.max(0) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_failure_rearms_at_once() {
        let mut b = AcceptBackoff::default();
        assert!(b.failed(100));
        assert_eq!(b.wait(100), None);
        assert!(!b.due(100));
    }

    #[test]
    fn repeated_failures_wait_longer_each_time_up_to_the_most() {
        let mut b = AcceptBackoff::default();
        assert!(b.failed(0));
        assert!(!b.failed(0), "the second in a row waits");
        assert_eq!(b.wait(0), Some(FIRST));
        assert!(!b.due(4));
        assert_eq!(b.wait(4), Some(Duration::from_millis(1)));
        assert!(b.due(5), "due once its wait is over");
        assert_eq!(b.wait(5), None, "and no longer paused");
        assert!(!b.failed(5));
        assert_eq!(b.wait(5), Some(2 * FIRST));
        for _ in 0..20 {
            b.failed(5);
        }
        assert_eq!(b.wait(5), Some(MOST));
    }

    #[test]
    fn an_accepted_connection_resets_it() {
        let mut b = AcceptBackoff::default();
        b.failed(0);
        b.failed(0);
        assert!(b.due(10));
        b.accepted();
        assert!(
            b.failed(10),
            "a failure after a success re-arms at once again"
        );
    }

    #[test]
    fn a_freed_descriptor_resumes_a_paused_accept() {
        let mut b = AcceptBackoff::default();
        assert!(!b.resume(), "nothing paused");
        b.failed(0);
        b.failed(0);
        assert!(b.resume());
        assert_eq!(b.wait(0), None);
        assert!(!b.due(1000), "resumed, not due again");
    }

    #[test]
    fn the_accept_may_be_armed_unless_paused() {
        let mut b = AcceptBackoff::default();
        assert!(b.may_arm(0), "a new worker arms its first accept");
        b.failed(0);
        assert!(b.may_arm(0), "one failure: at once");
        b.failed(0);
        assert!(!b.may_arm(4), "paused");
        assert!(b.may_arm(5), "the pause is over");
        assert_eq!(b.wait(5), None, "and cleared");
    }

    #[test]
    fn the_clock_may_wrap() {
        let mut b = AcceptBackoff::default();
        let now = u32::MAX - 2;
        b.failed(now);
        b.failed(now);
        assert!(!b.due(now.wrapping_add(4)));
        assert!(b.due(now.wrapping_add(5)));
    }
}
