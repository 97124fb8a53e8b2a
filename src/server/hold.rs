//! The TCP hold budget both engines enforce: which connections hold memory for echoes
//! they could not send yet, how much, and since when their echo last made progress.
//!
//! An echo server holds bytes on behalf of a client only while that client is not
//! reading its echo. A client that never reads would hold them forever, and enough such
//! clients would hold all of them, so each worker bounds the total (`--hold-budget`) and
//! frees it with one policy, the same on both engines:
//!
//! - **Under pressure** (from when the worker holds three quarters of its budget until
//!   it is back under half), the holder whose echo has made no progress for longest is
//!   shed (closed) if it has made none for [`SHED_GRACE`]. Connections that are being
//!   echoed make progress every few milliseconds, so they are never the ones shed;
//!   clients that stopped reading are. Shedding down to half, not just under three
//!   quarters, frees room for many fresh clients at each round, not a few.
//! - **Stalled** holders, whose echo has made no progress for `--stall-timeout`, are
//!   closed whatever the pressure, so a client that vanished mid-echo frees its memory.
//!
//! The holders form an intrusive list ordered by last progress, oldest first, with its
//! links in a table indexed by the engine's connection slot: every update is O(1), needs
//! no allocation once the table has grown to the slot count, and the next victim is
//! always the list's head.

use std::time::{Duration, Instant};

/// How long a holder must have made no progress before pressure may shed it: long enough
/// that a connection being echoed (its sends complete within milliseconds) is never
/// taken for a stalled one, short enough that a fresh client waits at most about this
/// long when non-readers have filled the budget.
pub const SHED_GRACE: Duration = Duration::from_millis(500);

/// "No slot": the end of the list.
const NIL: u32 = u32::MAX;

/// Where one slot stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// Holds nothing (or the slot is unused).
    Free,
    /// Holds bytes; on the list.
    Listed,
    /// Being shed: off the list and out of the total (its memory returns as soon as its
    /// operations end); updates are ignored until the slot is reset for a new connection.
    Retired,
}

#[derive(Debug, Clone, Copy)]
struct Link {
    prev: u32,
    next: u32,
    bytes: u32,
    mark: Mark,
    /// Milliseconds since the table's epoch of the last progress (or of the first byte
    /// held, if none since).
    since: u32,
}

const FREE: Link = Link {
    prev: NIL,
    next: NIL,
    bytes: 0,
    mark: Mark::Free,
    since: 0,
};

/// Why a holder is to be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The worker is under pressure and this holder made no progress for the grace period.
    Shed,
    /// It made no progress for the stall timeout.
    Stalled,
}

/// One worker's holders and its budget. Single-threaded, like the worker.
#[derive(Debug)]
pub struct Holders {
    links: Vec<Link>,
    head: u32,
    tail: u32,
    held: u64,
    budget: u64,
    /// Under pressure: set at three quarters of the budget, cleared under half.
    pressure: bool,
    stall: Option<Duration>,
    epoch: Instant,
}

impl Holders {
    /// A table for a worker allowed to hold `budget` bytes, closing holders stalled for
    /// `stall` (never, if `None`).
    pub fn new(budget: u64, stall: Option<Duration>) -> Holders {
        Holders {
            links: Vec::new(),
            head: NIL,
            tail: NIL,
            held: 0,
            budget,
            pressure: false,
            stall,
            epoch: Instant::now(),
        }
    }

    /// Milliseconds since the table's epoch: the clock every call takes. (Wraps after 49
    /// days; ages are compared with wrapping arithmetic and never exceed the stall
    /// timeout by much, so the wrap is harmless.)
    pub fn now_ms(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.epoch).as_millis() as u32
    }

    /// Bytes held by listed connections.
    pub fn held(&self) -> u64 {
        self.held
    }

    /// The budget.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Holding at least the budget: the epoll engine stops reading until it falls.
    pub fn full(&self) -> bool {
        self.held >= self.budget
    }

    /// Under pressure (see the module doc): stale holders are shed, and holders get no
    /// more memory.
    pub fn pressure(&self) -> bool {
        self.pressure
    }

    /// The total changed: enter pressure at three quarters, leave it under half.
    fn set_held(&mut self, held: u64) {
        self.held = held;
        if held >= self.budget - self.budget / 4 {
            self.pressure = true;
        } else if held < self.budget / 2 {
            self.pressure = false;
        }
    }

    /// Is anyone holding anything?
    pub fn is_empty(&self) -> bool {
        self.head == NIL
    }

    /// Slot `slot` now belongs to a new connection: it holds nothing and is not retired.
    pub fn reset(&mut self, slot: u32) {
        self.unlink(slot);
        if let Some(l) = self.links.get_mut(slot as usize) {
            *l = FREE;
        }
    }

    /// Slot `slot` now holds `bytes` unsent. A slot that starts holding joins the list as
    /// its newest member; one that stops holding leaves it. Its progress time is kept:
    /// only [`Holders::progressed`] moves it.
    pub fn update(&mut self, slot: u32, bytes: u32, now_ms: u32) {
        let i = slot as usize;
        if i >= self.links.len() {
            if bytes == 0 {
                return;
            }
            // Grows to the engine's slot count once; never per echo after that.
            self.links.resize(i + 1, FREE);
        }
        match self.links[i].mark {
            Mark::Retired => {}
            Mark::Free if bytes > 0 => {
                self.links[i].bytes = bytes;
                self.links[i].since = now_ms;
                self.set_held(self.held + u64::from(bytes));
                self.push_tail(slot);
            }
            Mark::Free => {}
            Mark::Listed if bytes == 0 => self.unlink(slot),
            Mark::Listed => {
                let old = std::mem::replace(&mut self.links[i].bytes, bytes);
                self.set_held(self.held - u64::from(old) + u64::from(bytes));
            }
        }
    }

    /// Slot `slot`'s echo made progress (bytes left for the client): it becomes the
    /// newest holder.
    pub fn progressed(&mut self, slot: u32, now_ms: u32) {
        let Some(l) = self.links.get(slot as usize) else {
            return;
        };
        if l.mark != Mark::Listed {
            return;
        }
        self.detach(slot);
        self.links[slot as usize].since = now_ms;
        self.push_tail(slot);
    }

    /// The holder to close now, if any: the one without progress for longest, when it
    /// has been stalled for the stall timeout, or for the grace period under pressure.
    /// The caller closes it and calls [`Holders::retire`] before asking again.
    pub fn victim(&self, now_ms: u32) -> Option<(u32, Reason)> {
        if self.head == NIL {
            return None;
        }
        let age = u64::from(now_ms.wrapping_sub(self.links[self.head as usize].since));
        if let Some(stall) = self.stall {
            if age >= stall.as_millis() as u64 {
                return Some((self.head, Reason::Stalled));
            }
        }
        if self.pressure() && age >= SHED_GRACE.as_millis() as u64 {
            return Some((self.head, Reason::Shed));
        }
        None
    }

    /// How long until [`Holders::victim`] could name someone with no other change: the
    /// time a worker may sleep without missing a deadline. `None`: no deadline.
    pub fn next_deadline(&self, now_ms: u32) -> Option<Duration> {
        if self.head == NIL {
            return None;
        }
        let age = u64::from(now_ms.wrapping_sub(self.links[self.head as usize].since));
        let mut due = self.stall.map(|s| s.as_millis() as u64);
        if self.pressure() {
            let grace = SHED_GRACE.as_millis() as u64;
            due = Some(due.map_or(grace, |d| d.min(grace)));
        }
        due.map(|d| Duration::from_millis(d.saturating_sub(age)))
    }

    /// Slot `slot` is being closed: it leaves the list and the total now, and updates
    /// are ignored until [`Holders::reset`].
    pub fn retire(&mut self, slot: u32) {
        self.unlink(slot);
        if let Some(l) = self.links.get_mut(slot as usize) {
            l.mark = Mark::Retired;
        }
    }

    fn unlink(&mut self, slot: u32) {
        let Some(l) = self.links.get(slot as usize) else {
            return;
        };
        if l.mark != Mark::Listed {
            return;
        }
        self.set_held(self.held - u64::from(l.bytes));
        self.detach(slot);
        let l = &mut self.links[slot as usize];
        l.bytes = 0;
        l.mark = Mark::Free;
    }

    /// Take a listed slot out of the list (its bytes stay counted).
    fn detach(&mut self, slot: u32) {
        let Link { prev, next, .. } = self.links[slot as usize];
        match prev {
            NIL => self.head = next,
            p => self.links[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.links[n as usize].prev = prev,
        }
    }

    fn push_tail(&mut self, slot: u32) {
        let l = &mut self.links[slot as usize];
        l.mark = Mark::Listed;
        l.prev = self.tail;
        l.next = NIL;
        match self.tail {
            NIL => self.head = slot,
            t => self.links[t as usize].next = slot,
        }
        self.tail = slot;
    }

    /// Slots in list order, oldest progress first (for tests).
    #[cfg(test)]
    fn order(&self) -> Vec<u32> {
        let mut v = Vec::new();
        let mut s = self.head;
        while s != NIL {
            v.push(s);
            s = self.links[s as usize].next;
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: u32 = SHED_GRACE.as_millis() as u32;

    #[test]
    fn holders_join_in_order_and_leave_when_drained() {
        let mut h = Holders::new(1000, None);
        h.update(3, 100, 0);
        h.update(1, 50, 5);
        h.update(7, 10, 6);
        assert_eq!(h.order(), vec![3, 1, 7]);
        assert_eq!(h.held(), 160);
        // More bytes without progress: same place.
        h.update(3, 200, 9);
        assert_eq!(h.order(), vec![3, 1, 7]);
        assert_eq!(h.held(), 260);
        h.update(1, 0, 10);
        assert_eq!(h.order(), vec![3, 7]);
        assert_eq!(h.held(), 210);
        h.update(3, 0, 11);
        h.update(7, 0, 11);
        assert!(h.is_empty());
        assert_eq!(h.held(), 0);
        // Nothing held, nothing listed (and no growth for an idle slot).
        h.update(1000, 0, 12);
        assert!(h.links.len() <= 8);
    }

    #[test]
    fn progress_moves_a_holder_to_the_back() {
        let mut h = Holders::new(1000, None);
        for s in [0, 1, 2] {
            h.update(s, 10, 0);
        }
        h.progressed(0, 20);
        assert_eq!(h.order(), vec![1, 2, 0]);
        h.progressed(2, 30);
        assert_eq!(h.order(), vec![1, 0, 2]);
        // Progress of a non-holder changes nothing.
        h.progressed(9, 40);
        h.progressed(1, 50);
        assert_eq!(h.order(), vec![0, 2, 1]);
    }

    #[test]
    fn pressure_sheds_only_holders_past_the_grace_period() {
        let mut h = Holders::new(400, None);
        h.update(0, 100, 0);
        h.update(1, 100, 100);
        assert!(!h.pressure());
        assert_eq!(h.victim(10 * GRACE), None, "no pressure, no stall timeout");
        h.update(2, 100, 200);
        assert!(h.pressure(), "300 of 400 is three quarters");
        assert!(!h.full());
        assert_eq!(h.victim(GRACE - 1), None, "nobody stale yet");
        assert_eq!(h.next_deadline(GRACE - 1), Some(Duration::from_millis(1)));
        assert_eq!(h.victim(GRACE), Some((0, Reason::Shed)));
        h.retire(0);
        assert_eq!(h.held(), 200);
        assert!(h.pressure(), "shedding goes on down to half");
        assert_eq!(h.victim(GRACE + 100), Some((1, Reason::Shed)));
        h.retire(1);
        assert!(!h.pressure(), "under half");
        assert_eq!(h.victim(10 * GRACE), None);
        h.update(1, 0, 0);
        assert_eq!(h.held(), 100);
        // A retired slot ignores updates until it is reset for a new connection.
        h.update(0, 100, 0);
        h.progressed(0, 0);
        assert_eq!(h.held(), 100);
        h.reset(0);
        h.update(0, 100, 5000);
        assert_eq!(h.order(), vec![2, 0]);
    }

    #[test]
    fn stalled_holders_go_whatever_the_pressure() {
        let mut h = Holders::new(1 << 30, Some(Duration::from_secs(2)));
        h.update(4, 1, 0);
        h.update(5, 1, 1000);
        assert_eq!(h.next_deadline(500), Some(Duration::from_millis(1500)));
        assert_eq!(h.victim(1999), None);
        assert_eq!(h.victim(2000), Some((4, Reason::Stalled)));
        h.retire(4);
        assert_eq!(h.victim(2000), None);
        assert_eq!(h.victim(3000), Some((5, Reason::Stalled)));
        // Progress restarts the clock.
        h.progressed(5, 2900);
        assert_eq!(h.victim(4000), None);
    }

    #[test]
    fn full_means_at_the_budget() {
        let mut h = Holders::new(100, None);
        h.update(0, 99, 0);
        assert!(!h.full());
        h.update(0, 100, 0);
        assert!(h.full());
        h.reset(0);
        assert_eq!(h.held(), 0);
        assert!(h.is_empty());
    }

    #[test]
    fn no_deadline_without_holders_or_limits() {
        let mut h = Holders::new(100, None);
        assert_eq!(h.next_deadline(0), None);
        h.update(0, 10, 0);
        assert_eq!(h.next_deadline(0), None, "no stall timeout, no pressure");
    }
}
