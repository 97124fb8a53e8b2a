//! The loop breaker: two echo servers (or one echo server and any service that answers
//! everything) started talking to each other by one spoofed datagram echo it back and
//! forth forever, each receiving from its peer exactly what it last sent to that peer.
//!
//! The rule: a datagram from a peer (address and port) whose payload is the one we last
//! echoed to that peer, arriving within [`WINDOW`] of that echo, is a *repeat*. The
//! [`STRIKES`]th repeat in a row is dropped, and so is every repeat after it; a datagram
//! that is not a repeat (another payload, or the same one more than [`WINDOW`] after our
//! last echo to that peer) is echoed and starts the count again. A drop does not count
//! as an echo, so a peer that keeps repeating is answered again once [`WINDOW`] has
//! passed since the last echo: at most [`STRIKES`] echoes of one payload per window.
//!
//! So a loop through a peer that answers within the window ends after [`STRIKES`]
//! bounces, while a client that repeats a payload is always served if it waits more
//! than [`WINDOW`] after each echo before sending it again, and a quick resend after a
//! lost echo is served too (it is the first repeat). A client sending distinct payloads
//! is never affected, at any rate.
//!
//! Peers are kept in a fixed table ([`SETS`] sets of [`WAYS`]), allocated once: a flood
//! from millions of spoofed addresses evicts entries but costs no memory and no
//! allocation; the oldest entry of a set is the one evicted. A loop whose bounces are
//! further apart than a full table's turnover can be evicted between bounces and go on;
//! the window bounds that anyway to 1/RTT datagrams a second, per spoofed datagram.

use std::time::Duration;

/// How soon after our echo the same payload from the same peer counts as a repeat.
/// Loops between hosts on one machine, a LAN or a data centre bounce within a
/// millisecond and between continents within about 200 ms; a person or a probe repeating
/// a payload on purpose waits longer than that.
pub const WINDOW: Duration = Duration::from_millis(200);

/// Repeats in a row that make a loop: the second is dropped. One repeat is allowed
/// because a client that lost our echo resends the same payload at once.
pub const STRIKES: u32 = 2;

/// Sets in the peer table (a power of two).
pub const SETS: usize = 2048;

/// Peers per set.
pub const WAYS: usize = 2;

/// One peer: what we last echoed to it and when.
#[derive(Debug, Clone, Copy, Default)]
struct Peer {
    /// Hash of the peer's address and port (0: the entry is free).
    tag: u64,
    /// Hash of the payload we last echoed to it.
    payload: u64,
    /// Microseconds on the policy's clock when we echoed it.
    at: u64,
    /// Its length (the hash already covers it; this makes a collision rarer still).
    len: u32,
    /// Repeats in a row so far.
    strikes: u32,
}

/// What the table says about one datagram: where its peer is (or goes) and its
/// repeats in a row, this one included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Look {
    slot: usize,
    strikes: u32,
}

impl Look {
    /// The datagram is a repeat too many: drop it.
    pub fn is_loop(&self) -> bool {
        self.strikes >= STRIKES
    }
}

/// One worker's peer table. Per worker, not shared: `SO_REUSEPORT` picks a worker by a
/// hash of the 4-tuple, so every datagram of one peer to one local address meets the
/// same worker, both ways around a loop.
#[derive(Debug)]
pub struct Loops {
    peers: Box<[Peer]>,
}

impl Default for Loops {
    fn default() -> Self {
        Loops {
            peers: vec![Peer::default(); SETS * WAYS].into_boxed_slice(),
        }
    }
}

impl Loops {
    /// Judge a datagram from peer `tag` (non-zero) with payload hash `payload` and length
    /// `len`, at `now_us`. A loop's strike is recorded at once; an echo is recorded by
    /// [`Loops::echoed`] once every other rule has let the datagram through.
    pub fn look(&mut self, tag: u64, payload: u64, len: u32, now_us: u64) -> Look {
        let set = (tag as usize & (SETS - 1)) * WAYS;
        let ways = &mut self.peers[set..set + WAYS];
        if let Some(i) = ways.iter().position(|p| p.tag == tag) {
            let p = &mut ways[i];
            let repeat = p.payload == payload
                && p.len == len
                && now_us.saturating_sub(p.at) <= WINDOW.as_micros() as u64;
            let strikes = if repeat {
                p.strikes.saturating_add(1)
            } else {
                0
            };
            if strikes >= STRIKES {
                p.strikes = strikes;
            }
            return Look {
                slot: set + i,
                strikes,
            };
        }
        // A new peer takes a free way, or the one echoed to longest ago.
        let victim = ways
            .iter()
            .enumerate()
            .min_by_key(|(_, p)| if p.tag == 0 { 0 } else { p.at.max(1) })
            .map_or(0, |(i, _)| i);
        Look {
            slot: set + victim,
            strikes: 0,
        }
    }

    /// Record that we echoed `payload` to `tag` at `now_us`, after [`Loops::look`] said
    /// it was no loop.
    pub fn echoed(&mut self, look: Look, tag: u64, payload: u64, len: u32, now_us: u64) {
        self.peers[look.slot] = Peer {
            tag,
            payload,
            at: now_us,
            len,
            strikes: look.strikes,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1000;

    /// Feed one datagram; true if it is echoed.
    fn feed(l: &mut Loops, tag: u64, payload: u64, now_us: u64) -> bool {
        let look = l.look(tag, payload, 10, now_us);
        if look.is_loop() {
            return false;
        }
        l.echoed(look, tag, payload, 10, now_us);
        true
    }

    #[test]
    fn a_loop_ends_after_the_strikes() {
        let mut l = Loops::default();
        // A bounce every 30 us, as between two servers on loopback.
        let echoed = (0..1000).filter(|&i| feed(&mut l, 5, 77, i * 30)).count();
        assert_eq!(echoed, STRIKES as usize, "the first echo and one repeat");
    }

    #[test]
    fn a_repeating_client_outside_the_window_is_always_served() {
        let mut l = Loops::default();
        let step = WINDOW.as_micros() as u64 + MS;
        assert!((0..100).all(|i| feed(&mut l, 5, 77, i * step)));
    }

    #[test]
    fn one_quick_resend_is_served_and_distinct_payloads_always_are() {
        let mut l = Loops::default();
        assert!(feed(&mut l, 5, 77, 0));
        assert!(feed(&mut l, 5, 77, 10 * MS), "a resend after a lost echo");
        assert!(
            feed(&mut l, 5, 78, 11 * MS),
            "another payload resets the count"
        );
        assert!(feed(&mut l, 5, 78, 12 * MS));
        assert!(!feed(&mut l, 5, 78, 13 * MS), "second repeat in a row");
        assert!((0..10_000).all(|i| feed(&mut l, 6, 1000 + i, i)));
    }

    #[test]
    fn a_flood_of_one_payload_gets_strikes_echoes_per_window() {
        let mut l = Loops::default();
        let w = WINDOW.as_micros() as u64;
        // 10 windows of one datagram every 100 us.
        let echoed = (0..10 * w / 100)
            .filter(|&i| feed(&mut l, 5, 77, i * 100))
            .count();
        let most = 10 * STRIKES as usize + STRIKES as usize;
        assert!((10..=most).contains(&echoed), "{echoed}");
    }

    #[test]
    fn the_table_is_bounded_and_keeps_a_fresh_loop() {
        let mut l = Loops::default();
        let before = l.peers.len();
        for i in 1..1_000_000u64 {
            feed(&mut l, i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1, i, i);
        }
        assert_eq!(l.peers.len(), before);
        // A peer of a full set evicts the entry echoed to longest ago, not the newest.
        let t = 2_000_000;
        let tag = (7u64 << 40) | 3;
        assert!(feed(&mut l, tag, 1, t));
        let rival = (9u64 << 40) | 3;
        assert!(feed(&mut l, rival, 2, t + 1));
        assert!(feed(&mut l, tag, 1, t + 2));
        assert!(!feed(&mut l, tag, 1, t + 3), "both peers of the set kept");
    }
}
