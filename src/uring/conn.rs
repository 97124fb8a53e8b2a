//! Connection state for the io_uring engine, and its send queue.
//!
//! A connection's unsent echo is a FIFO of receive buffers. The queue is intrusive: each
//! buffer's [`Segment`] (its unsent byte range and the next buffer in the queue) lives in
//! one worker-wide table indexed by buffer id, so queues need no allocation at all and an
//! idle connection is a few dozen bytes. This works because a buffer belongs to at most one
//! connection at a time (it is held from the receive completion until its bytes are sent).

/// "No buffer": the end of a queue. Buffer ids are below 32768 (the kernel's ring limit).
pub const NO_BUF: u16 = u16::MAX;

/// Most queued buffers one send carries (one `iovec` each): a 64 KiB message received
/// into 4 KiB buffers goes back in one `sendmsg`, not sixteen sends.
pub const MAX_SEND_SEGS: usize = 16;

/// One part of a send: buffer id, offset of the unsent bytes, their length.
pub type SendPart = (u16, u32, u32);

/// The unsent part of one held buffer, and the link to the next buffer of its queue.
#[derive(Debug, Clone, Copy)]
pub struct Segment {
    start: u32,
    end: u32,
    next: u16,
}

/// Segment table for one worker, indexed by buffer id.
pub struct Segments(Vec<Segment>);

impl Segments {
    /// A table for a ring of `entries` buffers.
    pub fn new(entries: u16) -> Self {
        Segments(vec![
            Segment {
                start: 0,
                end: 0,
                next: NO_BUF,
            };
            usize::from(entries)
        ])
    }
}

/// One connection's echo backlog: buffers in arrival order, the head possibly half sent.
///
/// Invariant: at most one send is in flight (two on one TCP socket may complete out of
/// order) and it covers the first `in_flight` segments of the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendQueue {
    head: u16,
    tail: u16,
    len: u16,
    in_flight: u16,
}

impl Default for SendQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl SendQueue {
    /// An empty queue.
    pub const fn new() -> Self {
        SendQueue {
            head: NO_BUF,
            tail: NO_BUF,
            len: 0,
            in_flight: 0,
        }
    }

    /// Buffers held by this queue.
    pub fn len(&self) -> u16 {
        self.len
    }

    /// No bytes waiting and nothing in flight.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Is a send in flight?
    pub fn in_flight(&self) -> bool {
        self.in_flight > 0
    }

    /// Queue the first `len` bytes of buffer `bid`.
    pub fn push(&mut self, segs: &mut Segments, bid: u16, len: u32) {
        segs.0[usize::from(bid)] = Segment {
            start: 0,
            end: len,
            next: NO_BUF,
        };
        if self.tail == NO_BUF {
            self.head = bid;
        } else {
            segs.0[usize::from(self.tail)].next = bid;
        }
        self.tail = bid;
        self.len += 1;
    }

    /// If nothing is in flight and bytes are waiting, mark the first segments (up to
    /// `out.len()`) in flight, write their parts into `out` and return how many.
    pub fn start_send(&mut self, segs: &Segments, out: &mut [SendPart]) -> usize {
        if self.in_flight > 0 {
            return 0;
        }
        let mut n = 0;
        let mut bid = self.head;
        while bid != NO_BUF && n < out.len() {
            let s = segs.0[usize::from(bid)];
            out[n] = (bid, s.start, s.end - s.start);
            n += 1;
            bid = s.next;
        }
        self.in_flight = n as u16;
        n
    }

    /// The in-flight send wrote `sent` bytes: every segment it finished leaves the queue
    /// and is handed to `done` (its buffer may go back to the ring); a partly sent one
    /// stays at the head, to be continued by the next send.
    pub fn complete_send(&mut self, segs: &mut Segments, sent: u32, mut done: impl FnMut(u16)) {
        debug_assert!(self.in_flight > 0 && self.head != NO_BUF);
        self.in_flight = 0;
        let mut left = sent;
        while self.head != NO_BUF {
            let bid = self.head;
            let seg = &mut segs.0[usize::from(bid)];
            let take = left.min(seg.end - seg.start);
            seg.start += take;
            left -= take;
            if seg.start < seg.end {
                return;
            }
            self.head = seg.next;
            self.len -= 1;
            done(bid);
            if left == 0 {
                break;
            }
        }
        if self.head == NO_BUF {
            self.tail = NO_BUF;
        }
    }

    /// The in-flight send failed: nothing is in flight any more (its segments stay queued).
    pub fn fail_send(&mut self) {
        self.in_flight = 0;
    }

    /// Remove every segment that is not in flight, handing each buffer id to `give_back`.
    pub fn drain_unsent(&mut self, segs: &mut Segments, mut give_back: impl FnMut(u16)) {
        let mut bid = self.head;
        if self.in_flight > 0 {
            // The kernel may still be reading the in-flight segments: they stay, alone,
            // until their send completes.
            let mut last = bid;
            for _ in 1..self.in_flight {
                last = segs.0[usize::from(last)].next;
            }
            let rest = &mut segs.0[usize::from(last)];
            bid = rest.next;
            rest.next = NO_BUF;
            self.tail = last;
            self.len = self.in_flight;
        } else {
            *self = SendQueue::new();
        }
        while bid != NO_BUF {
            let next = segs.0[usize::from(bid)].next;
            give_back(bid);
            bid = next;
        }
    }
}

/// The receive side of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvState {
    /// A multishot receive is armed.
    Armed,
    /// We asked the kernel to cancel the armed receive; its final completion is pending.
    Cancelling,
    /// No receive armed because too much echo is unsent (backpressure); re-armed when the
    /// queue drains.
    Paused,
    /// The buffer pool was empty (ENOBUFS); re-armed once buffers come back.
    Starved,
    /// Never receiving again: the peer closed its write side, or the connection is ending.
    Done,
}

/// What backpressure asks of a connection's receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backpressure {
    /// Cancel the armed receive.
    Pause,
    /// Arm the receive again.
    Resume,
    /// Leave it as it is.
    Keep,
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    /// Echoing.
    Open,
    /// The peer shut down its write side: echo what is queued, then close.
    Draining,
    /// Broken (reset, error) or server stopping: drop the queue, wait for in-flight
    /// operations, then close.
    Aborting,
    /// The close is submitted; its completion frees the slot.
    Closing,
}

/// One served connection.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    /// Its direct descriptor (slot in the ring's registered file table).
    pub fd: u32,
    /// Generation of the current receive arming (see `token`).
    pub recv_gen: u32,
    /// Receive side.
    pub recv: RecvState,
    /// Life cycle.
    pub life: Life,
    /// Unsent echo.
    pub queue: SendQueue,
    /// Has it ever received a byte? A starved connection that has not is served before
    /// the others (see `Worker::rearm_starved`).
    pub fed: bool,
}

impl Conn {
    /// A freshly accepted connection whose receive is about to be armed.
    pub fn new(fd: u32) -> Self {
        Conn {
            fd,
            recv_gen: 0,
            recv: RecvState::Armed,
            life: Life::Open,
            queue: SendQueue::new(),
            fed: false,
        }
    }

    /// Whether an open connection's receive should be paused or resumed. It is paused at
    /// `cap` queued buffers, or, while the worker is under memory pressure, as soon as it
    /// holds a buffer whose send is waiting: then each holder's share shrinks to what it
    /// has, and free buffers go to connections whose echo goes straight out. It resumes
    /// once its queue is empty, or half empty without pressure.
    pub fn backpressure(&self, cap: u16, pressure: bool) -> Backpressure {
        let len = self.queue.len();
        match self.recv {
            RecvState::Armed if len >= cap || (pressure && len > 0 && self.queue.in_flight()) => {
                Backpressure::Pause
            }
            RecvState::Paused if len == 0 || (!pressure && len <= cap / 2) => Backpressure::Resume,
            _ => Backpressure::Keep,
        }
    }

    /// True when no operation of this connection is in flight except possibly none:
    /// the receive has ended and no send is outstanding, so closing cannot race anything.
    pub fn quiescent(&self) -> bool {
        !matches!(self.recv, RecvState::Armed | RecvState::Cancelling) && !self.queue.in_flight()
    }
}

/// Connections of one worker: a slab with a free list, indexed by the `user_data` index.
/// A slot is freed only when its close completes, the last completion the connection will
/// ever get, so no completion can reach a slot reused by another connection.
#[derive(Default)]
pub struct Slab {
    conns: Vec<Conn>,
    free: Vec<u32>,
    live: u32,
}

impl Slab {
    /// Store a connection; returns its index.
    pub fn insert(&mut self, c: Conn) -> u32 {
        self.live += 1;
        match self.free.pop() {
            Some(i) => {
                self.conns[i as usize] = c;
                i
            }
            None => {
                self.conns.push(c);
                (self.conns.len() - 1) as u32
            }
        }
    }

    /// Release index `i` for reuse.
    pub fn remove(&mut self, i: u32) {
        self.live -= 1;
        self.free.push(i);
    }

    /// The connection at index `i`.
    pub fn get_mut(&mut self, i: u32) -> &mut Conn {
        &mut self.conns[i as usize]
    }

    /// Connections currently stored.
    pub fn live(&self) -> u32 {
        self.live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drained(q: &mut SendQueue, segs: &mut Segments) -> Vec<u16> {
        let mut v = Vec::new();
        q.drain_unsent(segs, |b| v.push(b));
        v
    }

    fn start(q: &mut SendQueue, segs: &Segments, max: usize) -> Vec<SendPart> {
        let mut parts = [(0, 0, 0); MAX_SEND_SEGS];
        let n = q.start_send(segs, &mut parts[..max]);
        parts[..n].to_vec()
    }

    fn complete(q: &mut SendQueue, segs: &mut Segments, sent: u32) -> Vec<u16> {
        let mut v = Vec::new();
        q.complete_send(segs, sent, |b| v.push(b));
        v
    }

    #[test]
    fn fifo_order_and_one_send_in_flight() {
        let mut segs = Segments::new(8);
        let mut q = SendQueue::new();
        q.push(&mut segs, 5, 100);
        q.push(&mut segs, 2, 50);
        assert_eq!(q.len(), 2);
        assert_eq!(start(&mut q, &segs, 1), vec![(5, 0, 100)]);
        assert_eq!(start(&mut q, &segs, 1), vec![], "one send in flight");
        assert_eq!(complete(&mut q, &mut segs, 100), vec![5]);
        assert_eq!(start(&mut q, &segs, 1), vec![(2, 0, 50)]);
        assert_eq!(complete(&mut q, &mut segs, 50), vec![2]);
        assert!(q.is_empty());
        assert_eq!(start(&mut q, &segs, 1), vec![]);
    }

    #[test]
    fn one_send_carries_several_buffers_and_a_short_one_resumes_mid_buffer() {
        let mut segs = Segments::new(8);
        let mut q = SendQueue::new();
        for b in [4, 1, 6] {
            q.push(&mut segs, b, 4096);
        }
        assert_eq!(
            start(&mut q, &segs, MAX_SEND_SEGS),
            vec![(4, 0, 4096), (1, 0, 4096), (6, 0, 4096)]
        );
        // Short: all of 4, part of 1.
        assert_eq!(complete(&mut q, &mut segs, 5000), vec![4]);
        assert_eq!(q.len(), 2);
        assert_eq!(
            start(&mut q, &segs, MAX_SEND_SEGS),
            vec![(1, 904, 3192), (6, 0, 4096)]
        );
        assert_eq!(complete(&mut q, &mut segs, 3192 + 4096), vec![1, 6]);
        assert!(q.is_empty());
        // The cap holds.
        for b in 0..5 {
            q.push(&mut segs, b, 10);
        }
        assert_eq!(start(&mut q, &segs, 2).len(), 2);
    }

    #[test]
    fn short_send_resumes_where_it_stopped() {
        let mut segs = Segments::new(4);
        let mut q = SendQueue::new();
        q.push(&mut segs, 1, 4096);
        assert_eq!(start(&mut q, &segs, 4), vec![(1, 0, 4096)]);
        assert_eq!(complete(&mut q, &mut segs, 1000), vec![]);
        assert_eq!(start(&mut q, &segs, 4), vec![(1, 1000, 3096)]);
        assert_eq!(complete(&mut q, &mut segs, 3000), vec![]);
        assert_eq!(start(&mut q, &segs, 4), vec![(1, 4000, 96)]);
        assert_eq!(complete(&mut q, &mut segs, 96), vec![1]);
        assert!(q.is_empty());
    }

    #[test]
    fn drain_keeps_the_in_flight_segments_until_they_complete() {
        let mut segs = Segments::new(8);
        let mut q = SendQueue::new();
        for b in [3, 0, 7, 5] {
            q.push(&mut segs, b, 10);
        }
        start(&mut q, &segs, 2);
        assert_eq!(drained(&mut q, &mut segs), vec![7, 5]);
        assert_eq!(q.len(), 2);
        assert!(q.in_flight());
        assert_eq!(complete(&mut q, &mut segs, 20), vec![3, 0]);
        assert!(q.is_empty());
        // A queue whose send failed gives back everything.
        q.push(&mut segs, 4, 10);
        q.push(&mut segs, 6, 10);
        start(&mut q, &segs, 1);
        q.fail_send();
        assert_eq!(drained(&mut q, &mut segs), vec![4, 6]);
        assert!(q.is_empty());
        // Pushing after a drain links from scratch.
        q.push(&mut segs, 1, 5);
        assert_eq!(start(&mut q, &segs, 4), vec![(1, 0, 5)]);
    }

    #[test]
    fn slab_reuses_freed_slots() {
        let mut s = Slab::default();
        let a = s.insert(Conn::new(10));
        let b = s.insert(Conn::new(11));
        s.remove(a);
        let c = s.insert(Conn::new(12));
        assert_eq!(c, a);
        assert_eq!(s.get_mut(c).fd, 12);
        assert_eq!(s.get_mut(b).fd, 11);
        assert_eq!(s.live(), 2);
    }

    #[test]
    fn backpressure_pauses_at_the_cap_or_under_pressure_and_resumes_when_drained() {
        let mut segs = Segments::new(8);
        let mut c = Conn::new(0);
        let mut parts = [(0, 0, 0); MAX_SEND_SEGS];
        assert_eq!(c.backpressure(4, false), Backpressure::Keep);
        assert_eq!(c.backpressure(4, true), Backpressure::Keep, "holds nothing");
        c.queue.push(&mut segs, 0, 10);
        assert_eq!(
            c.backpressure(4, true),
            Backpressure::Keep,
            "its send not started"
        );
        c.queue.start_send(&segs, &mut parts);
        assert_eq!(
            c.backpressure(4, false),
            Backpressure::Keep,
            "under its cap"
        );
        assert_eq!(
            c.backpressure(4, true),
            Backpressure::Pause,
            "pressure: no more"
        );
        for b in 1..4 {
            c.queue.push(&mut segs, b, 10);
        }
        assert_eq!(c.backpressure(4, false), Backpressure::Pause, "at its cap");
        c.recv = RecvState::Cancelling;
        assert_eq!(c.backpressure(4, false), Backpressure::Keep);
        c.recv = RecvState::Paused;
        assert_eq!(c.backpressure(4, false), Backpressure::Keep, "still full");
        c.queue.complete_send(&mut segs, 10, |_| {});
        c.queue.start_send(&segs, &mut parts);
        c.queue.complete_send(&mut segs, 10, |_| {});
        assert_eq!(c.queue.len(), 2);
        assert_eq!(
            c.backpressure(4, true),
            Backpressure::Keep,
            "pressure: drain first"
        );
        assert_eq!(c.backpressure(4, false), Backpressure::Resume, "half empty");
        c.queue.start_send(&segs, &mut parts);
        c.queue.complete_send(&mut segs, 20, |_| {});
        assert_eq!(c.backpressure(4, true), Backpressure::Resume, "empty");
        // Starved and done receives are not backpressure's business.
        for r in [RecvState::Starved, RecvState::Done] {
            c.recv = r;
            assert_eq!(c.backpressure(4, true), Backpressure::Keep);
        }
    }

    #[test]
    fn quiescent_only_without_recv_or_send_in_flight() {
        let mut segs = Segments::new(2);
        let mut c = Conn::new(0);
        assert!(!c.quiescent());
        c.recv = RecvState::Done;
        assert!(c.quiescent());
        c.queue.push(&mut segs, 0, 1);
        let mut parts = [(0, 0, 0); 1];
        c.queue.start_send(&segs, &mut parts);
        assert!(!c.quiescent());
    }
}
