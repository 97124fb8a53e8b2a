//! Connection state for the io_uring engine: its send queue, and [`step`], the pure state
//! machine that turns a completion (or a decision of the worker's) into the operations the
//! connection needs next. No syscall and no ring here, so every transition is unit-tested;
//! `tcp.rs` carries the actions out.
//!
//! A connection's unsent echo is a FIFO of receive buffers. The queue is intrusive: each
//! buffer's [`Segment`] (its unsent byte range and the next buffer in the queue) lives in
//! one worker-wide table indexed by buffer id, so queues need no allocation at all and an
//! idle connection is a few dozen bytes. This works because a buffer belongs to at most one
//! connection at a time (it is held from the receive completion until its bytes are sent).

use super::token;

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

    /// True when no operation of this connection is in flight: the receive has ended and
    /// no send is outstanding, so closing cannot race anything.
    pub fn quiescent(&self) -> bool {
        !matches!(self.recv, RecvState::Armed | RecvState::Cancelling) && !self.queue.in_flight()
    }

    /// Start a new arming of the receive: its completions carry the new generation.
    pub fn arm_recv(&mut self) {
        self.recv_gen = token::next_generation(self.recv_gen);
        self.recv = RecvState::Armed;
    }

    /// Should a received buffer join the queue (rather than go straight back)?
    pub fn keeps_data(&self) -> bool {
        matches!(self.life, Life::Open | Life::Draining)
    }
}

/// What happened to a connection: the input of [`step`]. Any queue bookkeeping the event
/// implies (a received buffer queued, sent buffers removed, a failed send no longer in
/// flight) is done before the step, so the step sees the queue as it now is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnEvent {
    /// A receive completion of arming `gen`: its result, and whether the multishot goes on.
    Recv { gen: u32, res: i32, more: bool },
    /// The send completed with `res`: bytes sent, or a negative errno (0 counts as failed:
    /// a zero-byte send would repeat forever).
    Sent { res: i32 },
    /// The hold policy closes the connection (shed under pressure, or stalled).
    Shed,
    /// Buffers came back and the worker offers a starved receive its turn.
    Refill,
}

/// The worker's side of a step: limits and modes that are not the connection's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conditions {
    /// Buffers one connection may hold before its receive is paused.
    pub cap: u16,
    /// The worker is under memory pressure (see `Conn::backpressure`).
    pub pressure: bool,
    /// Shutdown has begun: cancel-all targets every operation, and closing the ring
    /// closes every connection.
    pub stopping: bool,
}

/// The output of [`step`]: what the worker must do, in this order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Actions {
    /// Count an error (a reset, a failed send).
    pub count_error: bool,
    /// The receive ended with ENOBUFS: count it and queue the connection for a refill.
    pub starved: bool,
    /// Give every buffer not in flight back to the ring.
    pub drop_unsent: bool,
    /// Cancel the send in flight (its client does not read).
    pub cancel_send: bool,
    /// Cancel the armed receive (generation `recv_gen`).
    pub cancel_recv: bool,
    /// That cancel is backpressure: count a pause.
    pub paused: bool,
    /// Arm the receive (generation `recv_gen`, already advanced).
    pub arm_recv: bool,
    /// Start a send of the queue's first buffers.
    pub send: bool,
    /// Close the descriptor (life is now `Closing`).
    pub close: bool,
    /// The connection's state was settled: the hold table should learn what it holds.
    pub settled: bool,
}

/// Apply `ev` to connection `c` and decide its next operations. Pure: the only effects are
/// on `c`'s receive state, life and receive generation; everything else is in the
/// returned [`Actions`].
pub fn step(c: &mut Conn, ev: ConnEvent, cond: Conditions) -> Actions {
    let mut a = Actions::default();
    match ev {
        ConnEvent::Recv { gen, res, more } => {
            if gen != c.recv_gen {
                // Cannot happen (an arming's final CQE precedes the next arming), but a
                // stale completion must never steer the current arming.
                return a;
            }
            if res < 0
                && !matches!(-res, libc::ENOBUFS | libc::ECANCELED)
                && matches!(c.life, Life::Open | Life::Draining)
            {
                // ECONNRESET, ETIMEDOUT, ...: this connection is over; nothing else is.
                c.life = Life::Aborting;
                a.count_error = true;
            }
            if !more {
                c.recv = match (res, c.life) {
                    (0, _) => RecvState::Done,
                    (_, Life::Open) if res == -libc::ENOBUFS => RecvState::Starved,
                    (_, Life::Open) => RecvState::Paused,
                    _ => RecvState::Done,
                };
                if res == 0 && c.life == Life::Open {
                    // The peer shut down its write side: echo what we have, then close.
                    c.life = Life::Draining;
                }
                a.starved = c.recv == RecvState::Starved;
            }
        }
        ConnEvent::Sent { res } => {
            if res <= 0 && matches!(c.life, Life::Open | Life::Draining) {
                // EPIPE, ECONNRESET, ECANCELED (stopping or shed): this connection is over.
                c.life = Life::Aborting;
                a.count_error = res != -libc::ECANCELED;
            }
        }
        ConnEvent::Shed => {
            if c.life == Life::Closing {
                return a;
            }
            c.life = Life::Aborting;
            // The send waits for a client that does not read: cancel it, or its buffers
            // stay held. Its completion ends the abort like any failed send.
            a.cancel_send = c.queue.in_flight();
        }
        ConnEvent::Refill => {
            if c.life != Life::Open || c.recv != RecvState::Starved {
                return a;
            }
            // Paused, then settled: re-armed now unless backpressure keeps it paused (then
            // its next send completion re-arms it).
            c.recv = RecvState::Paused;
        }
    }
    settle(c, cond, &mut a);
    a
}

/// The part of every step that decides operations from the state alone.
fn settle(c: &mut Conn, cond: Conditions, a: &mut Actions) {
    a.settled = true;
    if cond.stopping && c.life != Life::Closing {
        // Cancel-all already targets every operation; only hand buffers back.
        c.life = Life::Aborting;
    }
    let sendable = !c.queue.is_empty() && !c.queue.in_flight();
    match c.life {
        Life::Open => {
            match c.backpressure(cond.cap, cond.pressure) {
                Backpressure::Pause => {
                    // The client is not reading its echo. Stop receiving until the queue
                    // drains, so it cannot hoard the buffer pool.
                    c.recv = RecvState::Cancelling;
                    a.cancel_recv = true;
                    a.paused = true;
                }
                Backpressure::Resume => {
                    c.arm_recv();
                    a.arm_recv = true;
                }
                Backpressure::Keep => {}
            }
            a.send = sendable;
        }
        Life::Draining => {
            a.send = sendable;
            if c.queue.is_empty() && c.quiescent() {
                c.life = Life::Closing;
                a.close = true;
            }
        }
        Life::Aborting => {
            a.drop_unsent = !c.queue.is_empty();
            match c.recv {
                RecvState::Armed if !cond.stopping => {
                    c.recv = RecvState::Cancelling;
                    a.cancel_recv = true;
                }
                RecvState::Paused | RecvState::Starved => c.recv = RecvState::Done,
                _ => {}
            }
            // Dropping the unsent buffers leaves the in-flight ones, so the queue's
            // `in_flight` (all `quiescent` reads of it) is unchanged by it.
            if c.quiescent() && !cond.stopping {
                c.life = Life::Closing;
                a.close = true;
            }
        }
        Life::Closing => {}
    }
}

/// Connections of one worker, with a free list, indexed by the `user_data` index. A slot is
/// freed only when its close completes, the last completion the connection will ever get,
/// so no completion can reach a slot reused by another connection.
#[derive(Default)]
pub struct ConnTable {
    conns: Vec<Conn>,
    free: Vec<u32>,
    live: u32,
}

impl ConnTable {
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
    fn the_table_reuses_freed_slots() {
        let mut s = ConnTable::default();
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

    /// A connection in `life`/`recv` at receive generation 5 with `queued` buffers, the
    /// first of them in a send when `sending`.
    fn conn(life: Life, recv: RecvState, queued: u16, sending: bool) -> Conn {
        let mut segs = Segments::new(32);
        let mut c = Conn::new(7);
        c.recv_gen = 5;
        c.life = life;
        c.recv = recv;
        for b in 0..queued {
            c.queue.push(&mut segs, b, 10);
        }
        if sending {
            let mut part = [(0, 0, 0); 1];
            assert_eq!(c.queue.start_send(&segs, &mut part), 1);
        }
        c
    }

    /// The actions as names, in execution order; "unsettled" when the step left the
    /// connection alone.
    fn names(a: Actions) -> Vec<&'static str> {
        let all = [
            (a.count_error, "count_error"),
            (a.starved, "starved"),
            (a.drop_unsent, "drop_unsent"),
            (a.cancel_send, "cancel_send"),
            (a.cancel_recv, "cancel_recv"),
            (a.paused, "paused"),
            (a.arm_recv, "arm_recv"),
            (a.send, "send"),
            (a.close, "close"),
            (!a.settled, "unsettled"),
        ];
        all.iter().filter(|(on, _)| *on).map(|&(_, n)| n).collect()
    }

    /// One line of the transition table: name, (life, receive, queued, sending), the
    /// worker's side, the event, the (life, receive) after, and the actions.
    type Transition = (
        &'static str,
        (Life, RecvState, u16, bool),
        Conditions,
        ConnEvent,
        (Life, RecvState),
        &'static [&'static str],
    );

    #[test]
    fn every_transition_of_the_connection_state_machine() {
        use Life::*;
        use RecvState::*;
        const RUN: Conditions = Conditions {
            cap: 4,
            pressure: false,
            stopping: false,
        };
        const PRESSURE: Conditions = Conditions {
            pressure: true,
            ..RUN
        };
        const STOP: Conditions = Conditions {
            stopping: true,
            ..RUN
        };
        let recv = |res: i32, more: bool| ConnEvent::Recv { gen: 5, res, more };
        let sent = |res: i32| ConnEvent::Sent { res };
        let (reset, pipe) = (-libc::ECONNRESET, -libc::EPIPE);
        let (nobufs, cancelled) = (-libc::ENOBUFS, -libc::ECANCELED);
        #[rustfmt::skip]
        let table: &[Transition] = &[
            ("data while open goes out", (Open, Armed, 1, false), RUN, recv(10, true), (Open, Armed), &["send"]),
            ("data behind a send in flight waits", (Open, Armed, 2, true), RUN, recv(10, true), (Open, Armed), &[]),
            ("the cap pauses the receive", (Open, Armed, 4, true), RUN, recv(10, true), (Open, Cancelling), &["cancel_recv", "paused"]),
            ("pressure pauses a holder whose send waits", (Open, Armed, 1, true), PRESSURE, recv(10, true), (Open, Cancelling), &["cancel_recv", "paused"]),
            ("the pause's cancel ends a drained queue: resume", (Open, Cancelling, 0, false), RUN, recv(cancelled, false), (Open, Armed), &["arm_recv"]),
            ("the pause's cancel ends a full queue: stay paused", (Open, Cancelling, 4, true), RUN, recv(cancelled, false), (Open, Paused), &[]),
            ("ENOBUFS while open starves", (Open, Armed, 0, false), RUN, recv(nobufs, false), (Open, Starved), &["starved"]),
            ("ENOBUFS while cancelling for backpressure starves", (Open, Cancelling, 4, true), RUN, recv(nobufs, false), (Open, Starved), &["starved"]),
            ("ENOBUFS from a stale arming while paused: nothing", (Open, Paused, 4, true), RUN, ConnEvent::Recv { gen: 4, res: nobufs, more: false }, (Open, Paused), &["unsettled"]),
            ("ENOBUFS while aborting is no starvation", (Aborting, Cancelling, 0, false), RUN, recv(nobufs, false), (Closing, Done), &["close"]),
            ("a multishot that ends with data re-arms", (Open, Armed, 1, false), RUN, recv(10, false), (Open, Armed), &["arm_recv", "send"]),
            ("EOF with nothing queued closes", (Open, Armed, 0, false), RUN, recv(0, false), (Closing, Done), &["close"]),
            ("EOF with echo queued drains first", (Open, Armed, 2, false), RUN, recv(0, false), (Draining, Done), &["send"]),
            ("EOF while cancelling drains behind the send", (Open, Cancelling, 4, true), RUN, recv(0, false), (Draining, Done), &[]),
            ("draining: a short send continues", (Draining, Done, 1, false), RUN, sent(5), (Draining, Done), &["send"]),
            ("draining: the last send closes", (Draining, Done, 0, false), RUN, sent(10), (Closing, Done), &["close"]),
            ("a send error while draining closes", (Draining, Done, 2, false), RUN, sent(pipe), (Closing, Done), &["count_error", "drop_unsent", "close"]),
            ("a send error while open cancels the receive", (Open, Armed, 1, false), RUN, sent(reset), (Aborting, Cancelling), &["count_error", "drop_unsent", "cancel_recv"]),
            ("a zero-byte send is a failure", (Open, Armed, 1, false), RUN, sent(0), (Aborting, Cancelling), &["count_error", "drop_unsent", "cancel_recv"]),
            ("a send error while paused closes", (Open, Paused, 3, false), RUN, sent(pipe), (Closing, Done), &["count_error", "drop_unsent", "close"]),
            ("the abort's cancel completes: close", (Aborting, Cancelling, 0, false), RUN, recv(cancelled, false), (Closing, Done), &["close"]),
            ("a reset while open closes", (Open, Armed, 1, false), RUN, recv(reset, false), (Closing, Done), &["count_error", "drop_unsent", "close"]),
            ("a reset waits for the send in flight", (Open, Armed, 2, true), RUN, recv(reset, false), (Aborting, Done), &["count_error", "drop_unsent"]),
            ("the send after a reset completes: close", (Aborting, Done, 1, false), RUN, sent(10), (Closing, Done), &["drop_unsent", "close"]),
            ("stop in the middle of a send", (Open, Armed, 2, false), STOP, sent(cancelled), (Aborting, Armed), &["drop_unsent"]),
            ("stop: a send's bytes arrive", (Open, Armed, 1, false), STOP, sent(10), (Aborting, Armed), &["drop_unsent"]),
            ("stop: the cancelled receive ends, the ring closes", (Aborting, Armed, 0, false), STOP, recv(cancelled, false), (Aborting, Done), &[]),
            ("stop while paused", (Open, Paused, 1, false), STOP, sent(10), (Aborting, Done), &["drop_unsent"]),
            ("stop leaves a closing connection closing", (Closing, Done, 0, false), STOP, recv(cancelled, false), (Closing, Done), &[]),
            ("shed with a send in flight cancels it", (Open, Paused, 4, true), RUN, ConnEvent::Shed, (Aborting, Done), &["drop_unsent", "cancel_send"]),
            ("shed while receiving cancels the receive", (Open, Armed, 0, false), RUN, ConnEvent::Shed, (Aborting, Cancelling), &["cancel_recv"]),
            ("shed while starved closes", (Open, Starved, 0, false), RUN, ConnEvent::Shed, (Closing, Done), &["close"]),
            ("shed while closing: nothing", (Closing, Done, 0, false), RUN, ConnEvent::Shed, (Closing, Done), &["unsettled"]),
            ("refill re-arms a starved receive", (Open, Starved, 0, false), RUN, ConnEvent::Refill, (Open, Armed), &["arm_recv"]),
            ("refill with the queue still full stays paused", (Open, Starved, 4, true), RUN, ConnEvent::Refill, (Open, Paused), &[]),
            ("refill after the connection ended: nothing", (Aborting, Done, 0, false), RUN, ConnEvent::Refill, (Aborting, Done), &["unsettled"]),
        ];
        for &(name, (life, recv_state, queued, sending), cond, ev, (want_life, want_recv), want) in
            table
        {
            let mut c = conn(life, recv_state, queued, sending);
            let a = step(&mut c, ev, cond);
            assert_eq!((c.life, c.recv), (want_life, want_recv), "{name}");
            assert_eq!(names(a), want, "{name}");
            let gen = if a.arm_recv { 6 } else { 5 };
            assert_eq!(c.recv_gen, gen, "{name}: a new arming, a new generation");
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
