//! Sequence-numbered datagrams for the UDP checker: how each one is built (a header naming
//! its socket and sequence number, then reproducible random bytes) and the bookkeeping of
//! what came back (echoed, lost, duplicated, wrong), kept apart from the sockets so it can
//! be tested on its own.

use super::payload::{first_mismatch, Rng};

/// Bytes of header on every sequenced datagram: socket index and sequence number, both
/// u32 little-endian.
pub const HEADER: usize = 8;

/// Most random bytes after the header (datagrams are 8..=200 bytes: small, so thousands
/// in flight fit any socket buffer).
pub const MAX_BODY: usize = 192;

/// Datagram `seq` of socket `socket` for `seed`: the header, then 0..=[`MAX_BODY`] random
/// bytes (NULs included) that depend on all three, so no echo of one can pass for another.
pub fn datagram(seed: u64, socket: u32, seq: u32) -> Vec<u8> {
    let mut rng = Rng::new(
        seed ^ ((u64::from(socket) << 32) | u64::from(seq)).wrapping_mul(0x9e37_79b9_7f4a_7c15),
    );
    let len = rng.range(0, MAX_BODY);
    let mut d = Vec::with_capacity(HEADER + len);
    d.extend_from_slice(&socket.to_le_bytes());
    d.extend_from_slice(&seq.to_le_bytes());
    d.extend_from_slice(&rng.bytes(len));
    d
}

/// The (socket, sequence number) a datagram's header claims, if it has one.
pub fn header(d: &[u8]) -> Option<(u32, u32)> {
    let socket = u32::from_le_bytes(d.get(0..4)?.try_into().ok()?);
    let seq = u32::from_le_bytes(d.get(4..8)?.try_into().ok()?);
    Some((socket, seq))
}

/// What one reply was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The echo of a datagram sent and not yet echoed, byte-exact.
    Echo,
    /// A second echo of a datagram already echoed.
    Duplicate,
    /// Anything else: a datagram never sent, another socket's, or wrong bytes.
    Wrong(String),
}

/// One socket's record: which of its datagrams were sent, which came back, and what else
/// arrived.
#[derive(Debug, Clone)]
pub struct Tally {
    seed: u64,
    socket: u32,
    echoed: Vec<bool>,
    /// Datagrams sent (sequence numbers `0..sent`).
    pub sent: usize,
    /// Distinct datagrams echoed byte-exact.
    pub received: usize,
    /// Echoes of a datagram already echoed.
    pub duplicates: usize,
    /// Replies that were no echo of ours (see [`Reply::Wrong`]), from the right address.
    pub wrong: usize,
    /// Datagrams from an address other than the server's.
    pub foreign: usize,
    /// What the first wrong or foreign reply was.
    pub first_problem: Option<String>,
}

impl Tally {
    /// A record for socket `socket`, which will send at most `total` datagrams.
    pub fn new(seed: u64, socket: u32, total: usize) -> Tally {
        Tally {
            seed,
            socket,
            echoed: vec![false; total],
            sent: 0,
            received: 0,
            duplicates: 0,
            wrong: 0,
            foreign: 0,
            first_problem: None,
        }
    }

    /// The next datagram to send (sequence numbers run from 0), or None when all are
    /// sent. It counts as sent from here on.
    pub fn next_datagram(&mut self) -> Option<Vec<u8>> {
        if self.sent >= self.echoed.len() {
            return None;
        }
        let seq = u32::try_from(self.sent).ok()?;
        self.sent += 1;
        Some(datagram(self.seed, self.socket, seq))
    }

    /// Replies that answered a datagram, rightly or wrongly (duplicates excluded).
    pub fn answered(&self) -> usize {
        self.received + self.wrong + self.foreign
    }

    /// Sent and not (yet) answered: lost, once no more replies are awaited. A wrong reply
    /// is taken to answer one datagram (a corrupted echo), so it is counted as wrong, not
    /// also as lost.
    pub fn missing(&self) -> usize {
        self.sent.saturating_sub(self.answered())
    }

    /// The socket index this record is for.
    pub fn socket(&self) -> u32 {
        self.socket
    }

    /// Record a reply from the server's address.
    pub fn reply(&mut self, got: &[u8]) -> Reply {
        let r = self.judge(got);
        match &r {
            Reply::Echo => self.received += 1,
            Reply::Duplicate => self.duplicates += 1,
            Reply::Wrong(why) => {
                self.wrong += 1;
                if self.first_problem.is_none() {
                    self.first_problem = Some(why.clone());
                }
            }
        }
        r
    }

    /// Record a datagram that came from somewhere other than the server.
    pub fn foreign(&mut self, what: String) {
        self.foreign += 1;
        if self.first_problem.is_none() {
            self.first_problem = Some(what);
        }
    }

    fn judge(&mut self, got: &[u8]) -> Reply {
        let Some((socket, seq)) = header(got) else {
            return Reply::Wrong(format!(
                "socket {}: a {}-byte reply, shorter than any datagram sent",
                self.socket,
                got.len()
            ));
        };
        let idx = seq as usize;
        if socket != self.socket || idx >= self.sent {
            return Reply::Wrong(format!(
                "socket {}: a reply headed socket {socket} datagram {seq}, which this socket never sent",
                self.socket
            ));
        }
        let want = datagram(self.seed, socket, seq);
        if got.len() != want.len() {
            return Reply::Wrong(format!(
                "socket {} datagram {seq}: {} bytes came back, {} were sent",
                self.socket,
                got.len(),
                want.len()
            ));
        }
        if let Some(m) = first_mismatch(&want, 0, got) {
            return Reply::Wrong(format!("socket {} datagram {seq}: {m}", self.socket));
        }
        if std::mem::replace(&mut self.echoed[idx], true) {
            Reply::Duplicate
        } else {
            Reply::Echo
        }
    }
}

/// Every socket's tallies added up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// Datagrams sent.
    pub sent: usize,
    /// Distinct datagrams echoed byte-exact.
    pub received: usize,
    /// Sent and never answered (see [`Tally::missing`]).
    pub lost: usize,
    /// Extra echoes of a datagram already echoed.
    pub duplicates: usize,
    /// Replies that were no echo of ours.
    pub wrong: usize,
    /// Datagrams from an address other than the server's.
    pub foreign: usize,
    /// The first wrong or foreign reply, described.
    pub first_problem: Option<String>,
}

impl Totals {
    /// Add one socket's record.
    pub fn add(&mut self, t: &Tally) {
        self.sent += t.sent;
        self.received += t.received;
        self.lost += t.missing();
        self.duplicates += t.duplicates;
        self.wrong += t.wrong;
        self.foreign += t.foreign;
        if self.first_problem.is_none() {
            self.first_problem.clone_from(&t.first_problem);
        }
    }

    /// Everything sent came back once, byte-exact, and nothing else came.
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.duplicates == 0 && self.wrong == 0 && self.foreign == 0
    }

    /// `lost L (P%), duplicated D, wrong W, from elsewhere F`, and the first problem.
    pub fn describe(&self) -> String {
        let pct = if self.sent == 0 {
            0.0
        } else {
            100.0 * self.lost as f64 / self.sent as f64
        };
        let mut s = format!(
            "{} of {} echoed; lost {} ({pct:.2}%), duplicated {}, wrong {}",
            self.received, self.sent, self.lost, self.duplicates, self.wrong
        );
        if self.foreign > 0 {
            s += &format!(", from another address {}", self.foreign);
        }
        if let Some(p) = &self.first_problem {
            s += &format!("; first: {p}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_are_reproducible_distinct_and_carry_their_header() {
        let a = datagram(1, 3, 7);
        assert_eq!(a, datagram(1, 3, 7));
        assert_ne!(a, datagram(1, 3, 8));
        assert_ne!(a, datagram(1, 4, 7));
        assert_ne!(a, datagram(2, 3, 7));
        assert_eq!(header(&a), Some((3, 7)));
        assert_eq!(header(&a[..7]), None);
        let lens: Vec<usize> = (0..1000).map(|s| datagram(9, 0, s).len()).collect();
        assert!(lens
            .iter()
            .all(|&l| (HEADER..=HEADER + MAX_BODY).contains(&l)));
        assert!(
            lens.iter().any(|&l| l == HEADER || l < HEADER + 8),
            "{lens:?}"
        );
    }

    fn sent(n: usize) -> (Tally, Vec<Vec<u8>>) {
        let mut t = Tally::new(5, 2, n);
        let d: Vec<_> = std::iter::from_fn(|| t.next_datagram()).collect();
        assert_eq!((d.len(), t.sent), (n, n));
        (t, d)
    }

    #[test]
    fn every_echo_once_is_clean() {
        let (mut t, d) = sent(10);
        for x in d.iter().rev() {
            assert_eq!(t.reply(x), Reply::Echo);
        }
        assert_eq!((t.received, t.missing()), (10, 0));
        let mut tot = Totals::default();
        tot.add(&t);
        assert!(tot.clean(), "{tot:?}");
        assert!(tot
            .describe()
            .starts_with("10 of 10 echoed; lost 0 (0.00%)"));
    }

    #[test]
    fn loss_and_duplicates_are_counted_separately() {
        let (mut t, d) = sent(100);
        for (i, x) in d.iter().enumerate() {
            if i % 10 != 0 {
                t.reply(x);
            }
        }
        assert_eq!(t.reply(&d[1]), Reply::Duplicate);
        assert_eq!(t.reply(&d[1]), Reply::Duplicate);
        // A late echo of a "lost" one still counts: loss is whatever never came.
        assert_eq!(t.reply(&d[0]), Reply::Echo);
        assert_eq!((t.received, t.missing(), t.duplicates), (91, 9, 2));
        let mut tot = Totals::default();
        tot.add(&t);
        tot.add(&t);
        assert_eq!((tot.sent, tot.lost, tot.duplicates), (200, 18, 4));
        assert!(!tot.clean());
        assert!(
            tot.describe()
                .starts_with("182 of 200 echoed; lost 18 (9.00%), duplicated 4, wrong 0"),
            "{}",
            tot.describe()
        );
    }

    #[test]
    fn wrong_bytes_wrong_lengths_and_strangers_are_wrong() {
        let (mut t, d) = sent(4);
        let mut flipped = d[2].clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        let Reply::Wrong(why) = t.reply(&flipped) else {
            panic!("flipped byte accepted")
        };
        assert!(why.contains("datagram 2") && why.contains(&format!("byte {last} differs")));
        let short = &d[1][..d[1].len() - 1];
        assert!(matches!(t.reply(short), Reply::Wrong(w) if w.contains("bytes came back")));
        assert!(matches!(t.reply(&d[3][..5]), Reply::Wrong(w) if w.contains("shorter")));
        // Not sent yet (seq 4 of a 4-datagram socket) and another socket's datagram.
        assert!(matches!(t.reply(&datagram(5, 2, 4)), Reply::Wrong(_)));
        assert!(matches!(t.reply(&datagram(5, 9, 0)), Reply::Wrong(w) if w.contains("socket 9")));
        t.foreign("from 10.0.0.1:7".into());
        assert_eq!((t.wrong, t.foreign, t.received), (5, 1, 0));
        // Six answers to four datagrams: nothing is missing, and it never underflows.
        assert_eq!((t.answered(), t.missing()), (6, 0));
        // The first problem is the one reported.
        assert!(t
            .first_problem
            .as_deref()
            .is_some_and(|p| p.contains("datagram 2")));
        let mut tot = Totals::default();
        tot.add(&t);
        assert!(tot.describe().contains("from another address 1"));
        // A wrong reply does not mark the datagram echoed: the real echo still counts.
        assert_eq!(t.reply(&d[2]), Reply::Echo);
    }

    #[test]
    fn a_corrupted_echo_is_wrong_not_also_lost() {
        let (mut t, d) = sent(3);
        let mut bad = d[0].clone();
        bad[0] ^= 1; // header now names another socket
        t.reply(&bad);
        t.reply(&d[1]);
        assert_eq!((t.received, t.wrong, t.missing()), (1, 1, 1));
        let mut tot = Totals::default();
        tot.add(&t);
        assert!(
            tot.describe()
                .starts_with("1 of 3 echoed; lost 1 (33.33%), duplicated 0, wrong 1; first: "),
            "{}",
            tot.describe()
        );
    }

    #[test]
    fn nothing_sent_nothing_lost() {
        let t = Tally::new(0, 0, 0);
        let mut tot = Totals::default();
        tot.add(&t);
        assert!(tot.clean());
        assert!(tot.describe().contains("lost 0 (0.00%)"));
    }
}
