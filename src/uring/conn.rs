//! Connection state for the io_uring engine, and its send queue.
//!
//! A connection's unsent echo is a FIFO of receive buffers. The queue is intrusive: each
//! buffer's [`Segment`] (its unsent byte range and the next buffer in the queue) lives in
//! one worker-wide table indexed by buffer id, so queues need no allocation at all and an
//! idle connection is a few dozen bytes. This works because a buffer belongs to at most one
//! connection at a time (it is held from the receive completion until its bytes are sent).

/// "No buffer": the end of a queue. Buffer ids are below 32768 (the kernel's ring limit).
pub const NO_BUF: u16 = u16::MAX;

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
/// Invariant: at most one send is in flight and it is always for the head segment (two
/// sends in flight on one TCP socket may complete out of order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendQueue {
    head: u16,
    tail: u16,
    len: u16,
    in_flight: bool,
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
            in_flight: false,
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

    /// Is a send of the head segment in flight?
    pub fn in_flight(&self) -> bool {
        self.in_flight
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

    /// If nothing is in flight and bytes are waiting, mark the head in flight and return
    /// `(bid, offset, len)` of the bytes to send.
    pub fn start_send(&mut self, segs: &Segments) -> Option<(u16, u32, u32)> {
        if self.in_flight || self.head == NO_BUF {
            return None;
        }
        let s = segs.0[usize::from(self.head)];
        self.in_flight = true;
        Some((self.head, s.start, s.end - s.start))
    }

    /// The in-flight send wrote `sent` bytes. Returns the buffer id if that finished the
    /// head segment (it leaves the queue and may go back to the ring); a short send leaves
    /// the rest of the head to be sent next.
    pub fn complete_send(&mut self, segs: &mut Segments, sent: u32) -> Option<u16> {
        debug_assert!(self.in_flight && self.head != NO_BUF);
        self.in_flight = false;
        if self.head == NO_BUF {
            return None;
        }
        let bid = self.head;
        let seg = &mut segs.0[usize::from(bid)];
        seg.start = seg.start.saturating_add(sent).min(seg.end);
        if seg.start < seg.end {
            return None;
        }
        self.head = seg.next;
        if self.head == NO_BUF {
            self.tail = NO_BUF;
        }
        self.len -= 1;
        Some(bid)
    }

    /// The in-flight send failed: nothing is in flight any more (the head stays queued).
    pub fn fail_send(&mut self) {
        self.in_flight = false;
    }

    /// Remove every segment that is not in flight, handing each buffer id to `give_back`.
    pub fn drain_unsent(&mut self, segs: &mut Segments, mut give_back: impl FnMut(u16)) {
        let mut bid = self.head;
        if self.in_flight && bid != NO_BUF {
            // The kernel may still be reading the head: it stays, alone, until its send
            // completes.
            let head = &mut segs.0[usize::from(bid)];
            bid = head.next;
            head.next = NO_BUF;
            self.tail = self.head;
            self.len = 1;
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

    #[test]
    fn fifo_order_and_one_send_in_flight() {
        let mut segs = Segments::new(8);
        let mut q = SendQueue::new();
        q.push(&mut segs, 5, 100);
        q.push(&mut segs, 2, 50);
        assert_eq!(q.len(), 2);
        assert_eq!(q.start_send(&segs), Some((5, 0, 100)));
        assert_eq!(q.start_send(&segs), None, "one send in flight");
        assert_eq!(q.complete_send(&mut segs, 100), Some(5));
        assert_eq!(q.start_send(&segs), Some((2, 0, 50)));
        assert_eq!(q.complete_send(&mut segs, 50), Some(2));
        assert!(q.is_empty());
        assert_eq!(q.start_send(&segs), None);
    }

    #[test]
    fn short_send_resumes_where_it_stopped() {
        let mut segs = Segments::new(4);
        let mut q = SendQueue::new();
        q.push(&mut segs, 1, 4096);
        assert_eq!(q.start_send(&segs), Some((1, 0, 4096)));
        assert_eq!(q.complete_send(&mut segs, 1000), None);
        assert_eq!(q.start_send(&segs), Some((1, 1000, 3096)));
        assert_eq!(q.complete_send(&mut segs, 3000), None);
        assert_eq!(q.start_send(&segs), Some((1, 4000, 96)));
        assert_eq!(q.complete_send(&mut segs, 96), Some(1));
        assert!(q.is_empty());
    }

    #[test]
    fn drain_keeps_the_in_flight_head_until_it_completes() {
        let mut segs = Segments::new(8);
        let mut q = SendQueue::new();
        for b in [3, 0, 7] {
            q.push(&mut segs, b, 10);
        }
        q.start_send(&segs);
        assert_eq!(drained(&mut q, &mut segs), vec![0, 7]);
        assert_eq!(q.len(), 1);
        assert!(q.in_flight());
        assert_eq!(q.complete_send(&mut segs, 10), Some(3));
        assert!(q.is_empty());
        // A queue whose send failed gives back everything.
        q.push(&mut segs, 4, 10);
        q.push(&mut segs, 6, 10);
        q.start_send(&segs);
        q.fail_send();
        assert_eq!(drained(&mut q, &mut segs), vec![4, 6]);
        assert!(q.is_empty());
        // Pushing after a drain links from scratch.
        q.push(&mut segs, 1, 5);
        assert_eq!(q.start_send(&segs), Some((1, 0, 5)));
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
    fn quiescent_only_without_recv_or_send_in_flight() {
        let mut segs = Segments::new(2);
        let mut c = Conn::new(0);
        assert!(!c.quiescent());
        c.recv = RecvState::Done;
        assert!(c.quiescent());
        c.queue.push(&mut segs, 0, 1);
        c.queue.start_send(&segs);
        assert!(!c.quiescent());
    }
}
