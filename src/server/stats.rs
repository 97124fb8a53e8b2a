//! Counters the engines bump on their hot paths and the `--stats` reporter reads.
//!
//! Each worker owns one [`WorkerStats`], padded to its own cache lines and written by that
//! worker alone, so a bump is a plain load and store: no lock, no contended atomic per echo.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

/// One worker's counters. Single writer (the worker), any number of readers.
#[derive(Default, Debug)]
#[repr(align(128))]
pub struct WorkerStats {
    /// Connections accepted and served.
    pub accepted: AtomicU64,
    /// Connections closed after being served.
    pub closed: AtomicU64,
    /// Connections closed at once because `--max-conns` was reached.
    pub refused: AtomicU64,
    /// Bytes echoed back (fully sent).
    pub bytes: AtomicU64,
    /// Receive completions echoed back in full (io_uring) / reads echoed (epoll).
    pub echoes: AtomicU64,
    /// Connections that ended with an error (reset, broken pipe...).
    pub errors: AtomicU64,
    /// Times reading from a connection was paused because its echo was unsent.
    pub paused: AtomicU64,
    /// Times the buffer pool ran dry (ENOBUFS) and a receive had to be re-armed.
    pub starved: AtomicU64,
    /// Connections closed to free the hold budget: their echo had made no progress while
    /// the worker was short of memory (see `hold`).
    pub shed: AtomicU64,
    /// Connections closed because their echo made no progress for `--stall-timeout`.
    pub stalled: AtomicU64,
    /// UDP datagrams echoed (the reply was sent).
    pub udp_echoes: AtomicU64,
    /// UDP payload bytes echoed.
    pub udp_bytes: AtomicU64,
    /// UDP datagrams dropped because they did not fit a receive buffer (never echoed
    /// truncated).
    pub udp_truncated: AtomicU64,
    /// UDP datagrams dropped by the reflection guard (source port 0, reflecting services).
    pub udp_guarded: AtomicU64,
    /// UDP datagrams dropped because they were sent to a broadcast or multicast address.
    pub udp_to_many: AtomicU64,
    /// UDP datagrams dropped because they came from our own port on this host.
    pub udp_ourselves: AtomicU64,
    /// UDP datagrams dropped by the loop breaker (a peer bouncing our echoes back).
    pub udp_loops: AtomicU64,
    /// UDP datagrams dropped by `--udp-rate`.
    pub udp_limited: AtomicU64,
    /// UDP replies the kernel refused (e.g. the socket's send buffer was full).
    pub udp_send_errors: AtomicU64,
}

/// Add `n` to a counter only this thread writes.
#[inline]
pub fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

/// A point-in-time sum over every worker.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub accepted: u64,
    pub closed: u64,
    pub refused: u64,
    pub bytes: u64,
    pub echoes: u64,
    pub errors: u64,
    pub paused: u64,
    pub starved: u64,
    pub shed: u64,
    pub stalled: u64,
    pub udp_echoes: u64,
    pub udp_bytes: u64,
    pub udp_truncated: u64,
    pub udp_guarded: u64,
    pub udp_to_many: u64,
    pub udp_ourselves: u64,
    pub udp_loops: u64,
    pub udp_limited: u64,
    pub udp_send_errors: u64,
}

impl Totals {
    /// Sum the counters of every worker.
    pub fn collect(workers: &[Arc<WorkerStats>]) -> Totals {
        let mut t = Totals::default();
        for w in workers {
            t.accepted += w.accepted.load(Relaxed);
            t.closed += w.closed.load(Relaxed);
            t.refused += w.refused.load(Relaxed);
            t.bytes += w.bytes.load(Relaxed);
            t.echoes += w.echoes.load(Relaxed);
            t.errors += w.errors.load(Relaxed);
            t.paused += w.paused.load(Relaxed);
            t.starved += w.starved.load(Relaxed);
            t.shed += w.shed.load(Relaxed);
            t.stalled += w.stalled.load(Relaxed);
            t.udp_echoes += w.udp_echoes.load(Relaxed);
            t.udp_bytes += w.udp_bytes.load(Relaxed);
            t.udp_truncated += w.udp_truncated.load(Relaxed);
            t.udp_guarded += w.udp_guarded.load(Relaxed);
            t.udp_to_many += w.udp_to_many.load(Relaxed);
            t.udp_ourselves += w.udp_ourselves.load(Relaxed);
            t.udp_loops += w.udp_loops.load(Relaxed);
            t.udp_limited += w.udp_limited.load(Relaxed);
            t.udp_send_errors += w.udp_send_errors.load(Relaxed);
        }
        t
    }

    /// The running totals the `--stats` line shows, in its order: (value, name, whether
    /// it is in the line's UDP part).
    fn named(&self) -> [(u64, &'static str, bool); 15] {
        [
            (self.accepted, "accepted", false),
            (self.refused, "refused", false),
            (self.errors, "errors", false),
            (self.paused, "paused", false),
            (self.starved, "starved", false),
            (self.shed, "shed", false),
            (self.stalled, "stalled", false),
            (self.udp_echoes, "echoed", true),
            (self.udp_truncated, "truncated", true),
            (self.udp_guarded, "guarded", true),
            (self.udp_ourselves, "ourselves", true),
            (self.udp_to_many, "broadcast", true),
            (self.udp_loops, "loops", true),
            (self.udp_limited, "rate-limited", true),
            (self.udp_send_errors, "send errors", true),
        ]
    }

    /// Connections open right now.
    pub fn open(&self) -> u64 {
        self.accepted.saturating_sub(self.closed)
    }
}

/// Turns successive [`Totals`] into the `--stats` line.
pub struct Reporter {
    last: Totals,
    at: Instant,
    udp: bool,
}

impl Reporter {
    /// Start measuring from now.
    pub fn new(workers: &[Arc<WorkerStats>], udp: bool) -> Self {
        Reporter {
            last: Totals::collect(workers),
            at: Instant::now(),
            udp,
        }
    }

    /// One line with rates since the previous call.
    pub fn line(&mut self, workers: &[Arc<WorkerStats>]) -> String {
        let now = Totals::collect(workers);
        let secs = self.at.elapsed().as_secs_f64().max(1e-9);
        let rate = |a: u64, b: u64| (a.saturating_sub(b)) as f64 / secs;
        // "N what, N what, ...": the running totals of the TCP or the UDP part.
        let totals = |udp: bool| {
            let each: Vec<String> = now
                .named()
                .iter()
                .filter(|&&(_, _, of_udp)| of_udp == udp)
                .map(|(n, what, _)| format!("{n} {what}"))
                .collect();
            each.join(", ")
        };
        let mut line = format!(
            "stats: {} open, {:.0} conn/s, {:.0} echo/s, {:.2} MB/s | total: {}",
            now.open(),
            rate(now.accepted, self.last.accepted),
            rate(now.echoes, self.last.echoes),
            rate(now.bytes, self.last.bytes) / 1e6,
            totals(false),
        );
        if self.udp {
            line += &format!(
                " | udp: {:.0} dgram/s, {:.2} MB/s | total: {}",
                rate(now.udp_echoes, self.last.udp_echoes),
                rate(now.udp_bytes, self.last.udp_bytes) / 1e6,
                totals(true),
            );
        }
        self.last = now;
        self.at = Instant::now();
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_every_total_in_order() {
        let w = Arc::new(WorkerStats::default());
        let workers = [Arc::clone(&w)];
        let mut r = Reporter::new(&workers, true);
        let fields = [
            &w.accepted,
            &w.refused,
            &w.errors,
            &w.paused,
            &w.starved,
            &w.shed,
            &w.stalled,
            &w.udp_echoes,
            &w.udp_truncated,
            &w.udp_guarded,
            &w.udp_ourselves,
            &w.udp_to_many,
            &w.udp_loops,
            &w.udp_limited,
            &w.udp_send_errors,
        ];
        for (i, c) in fields.into_iter().enumerate() {
            bump(c, i as u64 + 1);
        }
        bump(&w.closed, 1);
        let line = r.line(&workers);
        let tail = line.split(" | ").collect::<Vec<_>>();
        assert_eq!(tail.len(), 4, "{line}");
        assert!(tail[0].starts_with("stats: 0 open, "), "{line}");
        assert_eq!(
            tail[1],
            "total: 1 accepted, 2 refused, 3 errors, 4 paused, 5 starved, 6 shed, 7 stalled"
        );
        assert_eq!(
            tail[3],
            "total: 8 echoed, 9 truncated, 10 guarded, 11 ourselves, 12 broadcast, 13 loops, \
             14 rate-limited, 15 send errors"
        );
        let tcp_only = Reporter::new(&workers, false).line(&workers);
        assert_eq!(tcp_only.split(" | ").count(), 2, "{tcp_only}");
    }
}
