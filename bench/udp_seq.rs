//! What a UDP load datagram says, and what became of each one a socket sent.
//!
//! A datagram is a 16-byte head (sequence number, the sending socket's id, a per-run
//! tag; little-endian) followed by the socket's own body (its window into a random
//! pattern), so an echo that is cut, altered, from another socket or another run, or of
//! a sequence number never sent, is caught.
//!
//! [`Tracker`] keeps one socket's sequence numbers in a ring: each is waiting, answered,
//! lost (not back within the timeout), or lost and then seen late. An echo is answered at
//! most once: a second copy is a duplicate. Times are nanoseconds from an epoch the
//! caller picks.

/// Bytes of the head; the smallest datagram the load generator sends.
pub const HEAD: usize = 16;

/// The head of datagram `seq` from socket `id` in run `tag`.
pub fn head(seq: u64, id: u32, tag: u32) -> [u8; HEAD] {
    let mut h = [0u8; HEAD];
    h[..8].copy_from_slice(&seq.to_le_bytes());
    h[8..12].copy_from_slice(&id.to_le_bytes());
    h[12..].copy_from_slice(&tag.to_le_bytes());
    h
}

/// The sequence number of `echo` if it is exactly a datagram socket `id` of run `tag`
/// sent (head, then `body`); `None` for anything else.
pub fn check(echo: &[u8], id: u32, tag: u32, body: &[u8]) -> Option<u64> {
    if echo.len() != HEAD + body.len() || echo[8..HEAD] != head(0, id, tag)[8..] {
        return None;
    }
    if echo[HEAD..] != *body {
        return None;
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&echo[..8]);
    Some(u64::from_le_bytes(seq))
}

/// What an echo of a sequence number turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    /// The first echo of a datagram still waiting: it was due at `due` and went out at
    /// `sent` (ns).
    Answered { due: u64, sent: u64 },
    /// The first echo of a datagram already counted lost (or too old to tell).
    Late,
    /// A second echo of the same datagram.
    Duplicate,
    /// A sequence number this socket never sent.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Answered,
    Lost,
    /// Lost, then its echo came after all.
    LateSeen,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    due: u64,
    sent: u64,
    state: State,
}

/// A datagram counted lost: when it was due and when it went out (ns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lost {
    pub due: u64,
    pub sent: u64,
}

/// One socket's sequence numbers in flight, and the recent past of the rest.
#[derive(Debug)]
pub struct Tracker {
    ring: Box<[Entry]>,
    mask: u64,
    /// The next sequence number to send.
    next: u64,
    /// Every sequence number below this one is resolved (answered or lost).
    oldest: u64,
    in_flight: usize,
}

impl Tracker {
    /// A tracker remembering the last `ring` sequence numbers (rounded up to a power of
    /// two, at least 2): at most that many can be unresolved at once, and echoes older
    /// than that are all [`Echo::Late`] (duplicates among them go unnoticed).
    pub fn new(ring: usize) -> Tracker {
        let len = ring.max(2).next_power_of_two();
        Tracker {
            ring: vec![
                Entry {
                    due: 0,
                    sent: 0,
                    state: State::Answered,
                };
                len
            ]
            .into_boxed_slice(),
            mask: len as u64 - 1,
            next: 0,
            oldest: 0,
            in_flight: 0,
        }
    }

    /// The sequence number the next [`Tracker::push`] gives.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// Datagrams sent and neither answered nor lost.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// How many more can be pushed before the oldest unresolved one must be resolved.
    pub fn room(&self) -> usize {
        self.ring.len() - (self.next - self.oldest) as usize
    }

    /// Record that datagram `next_seq()` went out at `sent`, due at `due` (the same for a
    /// closed loop). Callers check [`Tracker::room`] first; with no room the oldest
    /// unresolved datagram is counted lost to make some, and returned.
    pub fn push(&mut self, due: u64, sent: u64) -> Option<Lost> {
        let dropped = if self.room() == 0 {
            self.force_oldest()
        } else {
            None
        };
        self.ring[(self.next & self.mask) as usize] = Entry {
            due,
            sent,
            state: State::Waiting,
        };
        self.next += 1;
        self.in_flight += 1;
        dropped
    }

    /// An echo of `seq` arrived.
    pub fn echo(&mut self, seq: u64) -> Echo {
        if seq >= self.next {
            return Echo::Unknown;
        }
        if self.next - seq > self.ring.len() as u64 {
            return Echo::Late;
        }
        let e = &mut self.ring[(seq & self.mask) as usize];
        match e.state {
            State::Waiting => {
                e.state = State::Answered;
                let (due, sent) = (e.due, e.sent);
                self.in_flight -= 1;
                self.advance();
                Echo::Answered { due, sent }
            }
            State::Lost => {
                e.state = State::LateSeen;
                Echo::Late
            }
            State::Answered | State::LateSeen => Echo::Duplicate,
        }
    }

    /// Count every datagram sent at or before `deadline` and still waiting as lost,
    /// oldest first, calling `lost` for each.
    pub fn expire(&mut self, deadline: u64, mut lost: impl FnMut(Lost)) {
        while self.oldest < self.next {
            let e = &mut self.ring[(self.oldest & self.mask) as usize];
            if e.state == State::Waiting {
                if e.sent > deadline {
                    return;
                }
                e.state = State::Lost;
                self.in_flight -= 1;
                lost(Lost {
                    due: e.due,
                    sent: e.sent,
                });
            }
            self.oldest += 1;
        }
    }

    /// Count everything still waiting as lost (the run is over).
    pub fn expire_all(&mut self, lost: impl FnMut(Lost)) {
        self.expire(u64::MAX, lost);
    }

    /// Resolve the oldest unresolved datagram as lost.
    fn force_oldest(&mut self) -> Option<Lost> {
        self.advance();
        if self.oldest == self.next {
            return None;
        }
        let e = &mut self.ring[(self.oldest & self.mask) as usize];
        e.state = State::Lost;
        self.in_flight -= 1;
        self.oldest += 1;
        let l = Lost {
            due: e.due,
            sent: e.sent,
        };
        self.advance();
        Some(l)
    }

    /// Move `oldest` past resolved datagrams.
    fn advance(&mut self) {
        while self.oldest < self.next
            && self.ring[(self.oldest & self.mask) as usize].state != State::Waiting
        {
            self.oldest += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_datagram_checks() {
        let body = b"0123456789abcdef";
        let mut d = head(42, 7, 99).to_vec();
        d.extend_from_slice(body);
        assert_eq!(check(&d, 7, 99, body), Some(42));
        assert_eq!(check(&d, 8, 99, body), None, "another socket's");
        assert_eq!(check(&d, 7, 98, body), None, "another run's");
        assert_eq!(check(&d[..d.len() - 1], 7, 99, body), None, "cut short");
        let mut long = d.clone();
        long.push(0);
        assert_eq!(check(&long, 7, 99, body), None, "too long");
        let mut flipped = d.clone();
        flipped[HEAD + 3] ^= 1;
        assert_eq!(check(&flipped, 7, 99, body), None, "body altered");
        assert_eq!(check(&head(5, 1, 2), 1, 2, b""), Some(5), "head only");
    }

    #[test]
    fn answered_once_then_duplicate() {
        let mut t = Tracker::new(8);
        assert_eq!(t.next_seq(), 0);
        t.push(10, 11);
        t.push(20, 21);
        assert_eq!(t.in_flight(), 2);
        assert_eq!(t.echo(1), Echo::Answered { due: 20, sent: 21 });
        assert_eq!(t.echo(1), Echo::Duplicate);
        assert_eq!(t.echo(0), Echo::Answered { due: 10, sent: 11 });
        assert_eq!(t.echo(2), Echo::Unknown, "never sent");
        assert_eq!(t.in_flight(), 0);
        assert_eq!(t.room(), 8, "both resolved: the whole ring is free");
    }

    #[test]
    fn expiry_counts_loss_in_send_order_and_late_echoes_are_not_errors() {
        let mut t = Tracker::new(8);
        for s in 0..4 {
            t.push(s * 100, s * 100);
        }
        assert!(matches!(t.echo(1), Echo::Answered { .. }));
        let mut lost = Vec::new();
        t.expire(200, |l| lost.push(l.sent));
        assert_eq!(
            lost,
            [0, 200],
            "1 was answered, 3 is younger than the deadline"
        );
        assert_eq!(t.in_flight(), 1);
        assert_eq!(t.echo(0), Echo::Late);
        assert_eq!(t.echo(0), Echo::Duplicate, "late, then again");
        assert_eq!(
            t.echo(3),
            Echo::Answered {
                due: 300,
                sent: 300
            }
        );
        t.expire_all(|_| panic!("nothing is waiting"));
    }

    #[test]
    fn a_full_ring_resolves_its_oldest_as_lost() {
        let mut t = Tracker::new(4);
        for s in 0..4 {
            assert_eq!(t.push(s, s), None);
        }
        assert_eq!(t.room(), 0);
        assert!(matches!(t.echo(2), Echo::Answered { .. }));
        assert_eq!(t.room(), 0, "0 still waits, so nothing moves");
        assert_eq!(t.push(4, 4), Some(Lost { due: 0, sent: 0 }));
        // 1 waits; 2 is answered; the ring now holds 1..=4.
        assert_eq!(t.push(5, 5), Some(Lost { due: 1, sent: 1 }));
        assert_eq!(t.in_flight(), 3, "3, 4 and 5");
        assert_eq!(
            t.echo(0),
            Echo::Late,
            "older than the ring: cannot tell, never an error"
        );
        assert_eq!(t.echo(1), Echo::Late);
        let mut n = 0;
        t.expire_all(|_| n += 1);
        assert_eq!((n, t.in_flight()), (3, 0));
    }

    #[test]
    fn sequence_numbers_wrap_the_ring_many_times() {
        let mut t = Tracker::new(16);
        let mut answered = 0;
        for s in 0..10_000u64 {
            t.push(s, s);
            // Answer all but every 100th; expire anything more than 8 behind.
            if s % 100 != 0 {
                if let Echo::Answered { sent, .. } = t.echo(s) {
                    assert_eq!(sent, s);
                    answered += 1;
                }
            }
            t.expire(s.saturating_sub(8), |_| {});
            assert!(t.room() > 0 && t.in_flight() <= 9);
        }
        assert_eq!(answered, 9_900);
        let mut lost = 0;
        t.expire_all(|_| lost += 1);
        assert_eq!(t.next_seq(), 10_000);
        assert!(
            lost <= 1,
            "all but the last unanswered one were expired on the way"
        );
    }
}
