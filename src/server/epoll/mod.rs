//! The epoll engine: the readiness-driven baseline the io_uring engine is measured against,
//! written the way a careful classic epoll server is written, so the comparison is fair.
//!
//! One event loop per worker thread, shared-nothing: each worker has its own SO_REUSEPORT
//! listener, epoll instance, connection slab and scratch buffer. Sockets are non-blocking
//! and registered once, edge-triggered, for everything they will ever need
//! (IN | OUT | RDHUP | PRI), so the loop never calls `epoll_ctl` again for a connection.
//!
//! An echo is a `recv` into the worker's scratch buffer and a `send` straight from it. Only
//! when the client reads slower than it writes do bytes land in a per-connection
//! [`pending`] buffer; at `conn_byte_cap` unsent bytes the connection stops being read
//! until its echo drains (backpressure), so a client that never reads costs bounded
//! memory. Each connection gets a bounded number of reads per turn; one cut off early goes
//! on a ready list that is served before the next `epoll_wait` (which then does not
//! sleep), so a bulk sender cannot starve the rest.

mod conn;
mod pending;
mod slab;
/// The epoll and mmsg system calls, at the syscall boundary.
pub use ringecho_sys::epoll as sys;
mod udp;

pub use udp::run_udp_worker;

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Context, Error, Result};
use crate::hold::{Holders, Reason};
use crate::ratelog::RateLimited;
use crate::server::WorkerCtx;
use crate::stats::bump;

use conn::{Conn, Env, Step};
use pending::BufPool;
use slab::{Slab, Token};

/// Token of the listening socket (the slab never issues it).
const LISTENER: u64 = u64::MAX;
/// Token of the shutdown eventfd (the slab never issues it).
const SHUTDOWN: u64 = u64::MAX - 1;

/// Smallest scratch buffer: one `recv` should be able to take a good part of a socket's
/// receive queue, whatever `--buffer-size` says.
const MIN_SCRATCH: usize = 64 << 10;
/// Events taken per `epoll_wait`.
const EVENTS_PER_WAIT: usize = 1024;
/// Connections accepted per turn before the others' events get served; the rest of the
/// accept queue waits for the next turn (the listener is then on the "ready" path).
const ACCEPTS_PER_TURN: u32 = 256;
/// Drained pending buffers kept per worker for reuse.
const POOLED_BUFFERS: usize = 16;
/// How long accepting pauses when the process is out of descriptors or memory and no
/// connection of ours has closed since.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serve connections on `ctx.socket` until shutdown.
pub fn run_worker(ctx: WorkerCtx) -> Result<()> {
    let mut worker = Worker::new(&ctx)?;
    ctx.ready();
    let result = worker.run();
    worker.close_all();
    result
}

/// Whether the listener may have connections waiting. Edge-triggered like the rest: once
/// we stop accepting before EAGAIN, no event will remind us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AcceptState {
    /// Accept queue drained: wait for the listener's next event.
    Idle,
    /// Connections may be waiting: accept before sleeping in `epoll_wait` again.
    Ready,
    /// Out of descriptors or memory: accept nothing until a connection of ours closes or
    /// the backoff ends. Waiting connections stay in the kernel's accept queue.
    Throttled { until: Instant },
}

/// One worker's whole world.
struct Worker<'a> {
    ctx: &'a WorkerCtx,
    epoll: sys::Epoll,
    events: Vec<sys::Event>,
    conns: Slab<Conn>,
    /// Tokens of connections in [`ReadSide::Backlog`], to run before the next wait.
    ready: Vec<Token>,
    /// The previous round's ready list, kept to reuse its allocation.
    ready_spare: Vec<Token>,
    accept: AcceptState,
    /// The hold table's clock, read once per loop turn.
    now_ms: u32,
    /// Tokens of connections in [`ReadSide::Blocked`], to resume when memory is freed.
    blocked: Vec<Token>,
    /// Said once per worker that accepting is throttled, not on every retry.
    warned_throttle: bool,
    /// A descriptor kept open to be given up at the open-file limit, so the connection
    /// that hit it can be accepted and closed (refused) instead of left waiting.
    reserve: Option<OwnedFd>,
    /// Connections refused at the open-file limit.
    nofile_log: RateLimited,
    /// Connections refused at `--max-conns`.
    max_conns_log: RateLimited,
    /// Scratch buffer, buffer pool and counters, lent to each connection as it runs.
    env: Env,
}

impl<'a> Worker<'a> {
    fn new(ctx: &'a WorkerCtx) -> Result<Worker<'a>> {
        ctx.socket
            .set_nonblocking(true)
            .context("making the listener non-blocking")?;
        let epoll = sys::Epoll::new().context("creating the epoll instance")?;
        epoll
            .add(ctx.socket.as_raw_fd(), sys::IN | sys::ET, LISTENER)
            .context("registering the listener with epoll")?;
        // Level-triggered: the eventfd is never read, so once triggered it stays ready.
        epoll
            .add(ctx.shared.shutdown.fd(), sys::IN, SHUTDOWN)
            .context("registering the shutdown eventfd with epoll")?;
        let scratch_len = (ctx.cfg.buffer_size as usize).max(MIN_SCRATCH);
        Ok(Worker {
            ctx,
            epoll,
            events: sys::event_buffer(EVENTS_PER_WAIT),
            conns: Slab::default(),
            ready: Vec::new(),
            ready_spare: Vec::new(),
            // The accept queue may already hold connections made before we registered.
            accept: AcceptState::Ready,
            now_ms: 0,
            blocked: Vec::new(),
            warned_throttle: false,
            reserve: open_reserve(),
            nofile_log: RateLimited::new(),
            max_conns_log: RateLimited::new(),
            env: Env {
                scratch: vec![0; scratch_len].into_boxed_slice(),
                pool: BufPool::new(POOLED_BUFFERS),
                stats: Arc::clone(&ctx.stats),
                cap: ctx.cfg.conn_byte_cap(),
                holds: Holders::new(ctx.cfg.hold_budget, ctx.cfg.stall()),
                progressed: false,
            },
        })
    }

    /// The event loop. Returns Ok on shutdown; Err only if epoll itself or the listener
    /// fails, never because of one connection.
    fn run(&mut self) -> Result<()> {
        loop {
            if self.ctx.shared.shutdown.is_triggered() {
                return Ok(());
            }
            let timeout = self.wait_timeout();
            let n = self
                .epoll
                .wait(&mut self.events, timeout)
                .context("epoll_wait")?;
            self.now_ms = self.env.holds.now_ms(Instant::now());
            for i in 0..n {
                // Copy out: `epoll_event` is packed on x86-64, so no references into it.
                let ev = self.events[i];
                let (mask, data) = (ev.events, ev.u64);
                match data {
                    SHUTDOWN => return Ok(()),
                    LISTENER => {
                        if self.accept == AcceptState::Idle {
                            self.accept = AcceptState::Ready;
                        }
                    }
                    raw => self.on_conn_event(Token::from_raw(raw), mask),
                }
            }
            if let AcceptState::Throttled { until } = self.accept {
                if Instant::now() >= until {
                    self.accept = AcceptState::Ready;
                }
            }
            if self.accept == AcceptState::Ready {
                self.accept_some()?;
            }
            self.run_ready_list();
            self.shed_stalled();
            self.resume_blocked();
        }
    }

    /// Close every holder the hold policy names (see `hold`): stalled ones, and under
    /// pressure the ones without progress for longest. With a zero linger the close is
    /// a reset, so the kernel frees the socket's buffers at once too.
    fn shed_stalled(&mut self) {
        while let Some((slot, reason)) = self.env.holds.victim(self.now_ms) {
            self.env.holds.retire(slot);
            let counter = match reason {
                Reason::Shed => &self.ctx.stats.shed,
                Reason::Stalled => &self.ctx.stats.stalled,
            };
            bump(counter, 1);
            if let Some(token) = self.conns.token_at(slot) {
                if let Some(conn) = self.conns.get_mut(token) {
                    conn.reset_on_close();
                }
                self.close(token, None);
            }
        }
    }

    /// Memory is below the budget again: connections that stopped reading because it was
    /// full go back on the ready list, those holding nothing first, newest first. A
    /// fresh client's echo goes straight out; the clients blocked before it are mostly
    /// ones that do not read, and would fill the budget again before its turn.
    fn resume_blocked(&mut self) {
        if self.blocked.is_empty() || self.env.holds.full() {
            return;
        }
        for holders_pass in [false, true] {
            for &token in self.blocked.iter().rev() {
                let Some(conn) = self.conns.get_mut(token) else {
                    continue;
                };
                if (conn.held_bytes() > 0) == holders_pass && conn.unblock() {
                    self.ready.push(token);
                }
            }
        }
        self.blocked.clear();
    }

    /// Sleep until something is known to be waiting for us, or the next deadline: the
    /// accept backoff's end, or the hold table's next stall.
    fn wait_timeout(&self) -> i32 {
        if !self.ready.is_empty() {
            return 0;
        }
        let accept = match self.accept {
            AcceptState::Idle => None,
            AcceptState::Ready => return 0,
            AcceptState::Throttled { until } => {
                Some(until.saturating_duration_since(Instant::now()))
            }
        };
        let hold = self.env.holds.next_deadline(self.now_ms);
        match (accept, hold) {
            (None, None) => -1,
            (a, h) => {
                let left = a.unwrap_or(Duration::MAX).min(h.unwrap_or(Duration::MAX));
                // Round up so we do not wake a millisecond early and spin.
                left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
            }
        }
    }

    fn on_conn_event(&mut self, token: Token, mask: u32) {
        // Stale: the connection closed earlier in this batch (its slot may be reused).
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        self.env.progressed = false;
        let step = conn.on_event(mask, &mut self.env);
        self.apply(token, step);
    }

    /// Give every connection that was cut off last round its next turn. Connections cut
    /// off again go on the fresh list, for after the next (non-sleeping) `epoll_wait`, so
    /// new events get a look-in between turns.
    fn run_ready_list(&mut self) {
        if self.ready.is_empty() {
            return;
        }
        let mut list = std::mem::replace(&mut self.ready, std::mem::take(&mut self.ready_spare));
        for token in list.drain(..) {
            let Some(conn) = self.conns.get_mut(token) else {
                continue;
            };
            self.env.progressed = false;
            let step = conn.on_ready(&mut self.env);
            self.apply(token, step);
        }
        self.ready_spare = list;
    }

    /// Act on a connection's step, and tell the hold table what it holds now.
    fn apply(&mut self, token: Token, step: Step) {
        if let Some(conn) = self.conns.get_mut(token) {
            let holds = &mut self.env.holds;
            holds.update(token.slot(), conn.held_bytes(), self.now_ms);
            if self.env.progressed {
                holds.progressed(token.slot(), self.now_ms);
            }
        }
        match step {
            Step::Wait => {}
            Step::Queue => self.ready.push(token),
            Step::Block => self.blocked.push(token),
            Step::Close(err) => self.close(token, err),
        }
    }

    /// Accept until the queue is empty or this turn's budget is spent.
    fn accept_some(&mut self) -> Result<()> {
        for _ in 0..ACCEPTS_PER_TURN {
            match sys::accept4(self.ctx.socket.as_fd()) {
                Ok(fd) => self.admit(fd),
                Err(e) => match classify_accept_error(&e) {
                    AcceptError::Drained => {
                        self.accept = AcceptState::Idle;
                        return Ok(());
                    }
                    // That one connection died in the queue (or a signal): try the next.
                    AcceptError::Skip => {}
                    // Linux says EMFILE before looking at the queue: the refusal
                    // tells whether a connection was waiting at all.
                    AcceptError::OutOfFiles => match self.refuse_one() {
                        Refusal::Refused => {}
                        Refusal::Drained => {
                            self.accept = AcceptState::Idle;
                            return Ok(());
                        }
                        Refusal::Failed => {
                            self.throttle(e);
                            return Ok(());
                        }
                    },
                    AcceptError::Exhausted => {
                        self.throttle(e);
                        return Ok(());
                    }
                    AcceptError::Fatal => {
                        return Err(Error::from(e).context("accepting on the listener"))
                    }
                },
            }
        }
        self.accept = AcceptState::Ready;
        Ok(())
    }

    /// At the open-file limit: give up the reserve descriptor, accept the connection that
    /// hit the limit and close it at once (refused, counted, logged now and then), then
    /// take the reserve back.
    fn refuse_one(&mut self) -> Refusal {
        if self.reserve.take().is_none() {
            return Refusal::Failed;
        }
        // Close the refused connection before reopening the reserve: its descriptor is
        // the one the reserve takes back.
        let accepted = sys::accept4(self.ctx.socket.as_fd()).map(drop);
        self.reserve = open_reserve();
        match accepted {
            Ok(()) => {
                bump(&self.ctx.stats.refused, 1);
                if let Some(n) = self.nofile_log.hit(Instant::now()) {
                    eprintln!(
                        "ringecho: worker {}: at the open-file limit ({}); refused {n} \
                         connection(s), still serving",
                        self.ctx.id,
                        crate::net::nofile_limit()
                    );
                }
                Refusal::Refused
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Refusal::Drained,
            // Another thread took the descriptor, or that connection died in the queue.
            Err(_) => Refusal::Failed,
        }
    }

    /// Out of descriptors (EMFILE/ENFILE) or kernel memory: retrying at once would spin,
    /// so stop until one of our connections closes (freeing a descriptor) or the backoff
    /// passes (another worker or process may free one).
    fn throttle(&mut self, e: io::Error) {
        if !self.warned_throttle {
            self.warned_throttle = true;
            eprintln!(
                "ringecho: worker {}: cannot accept ({}); pausing accepts until a connection closes",
                self.ctx.id,
                Error::from(e)
            );
        }
        self.accept = AcceptState::Throttled {
            until: Instant::now() + ACCEPT_BACKOFF,
        };
    }

    fn admit(&mut self, fd: OwnedFd) {
        let stats = &self.ctx.stats;
        if !self.ctx.shared.try_admit() {
            drop(fd);
            bump(&stats.refused, 1);
            if let Some(n) = self.max_conns_log.hit(Instant::now()) {
                eprintln!(
                    "ringecho: worker {}: --max-conns {} reached; refused {n} connection(s), \
                     still serving",
                    self.ctx.id, self.ctx.cfg.max_conns
                );
            }
            return;
        }
        bump(&stats.accepted, 1);
        let raw = fd.as_raw_fd();
        let token = match self.conns.insert(Conn::new(fd)) {
            Ok(token) => {
                self.env.holds.reset(token.slot());
                token
            }
            Err(conn) => {
                // 2^32 slots in use: unreachable under any descriptor limit, but not a panic.
                drop(conn);
                self.count_close(true);
                return;
            }
        };
        // Registered once for everything it will ever need. If data arrived before this,
        // EPOLL_CTL_ADD sees it and reports it at the next wait: nothing is missed.
        let interest = sys::IN | sys::OUT | sys::RDHUP | sys::PRI | sys::ET;
        if let Err(e) = self.epoll.add(raw, interest, token.raw()) {
            // Out of kernel memory or max_user_watches: drop this connection only.
            self.close(token, Some(e));
        }
    }

    fn close(&mut self, token: Token, err: Option<io::Error>) {
        let Some(mut conn) = self.conns.remove(token) else {
            return;
        };
        self.env.holds.reset(token.slot());
        // A Backlog connection's token stays on the ready list; the slab makes it stale.
        conn.release_buffers(&mut self.env.pool);
        drop(conn);
        self.count_close(err.is_some());
        // A descriptor was just freed: accepting can be worth another try.
        if matches!(self.accept, AcceptState::Throttled { .. }) {
            self.accept = AcceptState::Ready;
        }
    }

    fn count_close(&self, error: bool) {
        self.ctx.shared.release();
        bump(&self.ctx.stats.closed, 1);
        if error {
            bump(&self.ctx.stats.errors, 1);
        }
    }

    /// Shutdown: close every connection and count it out. Unsent echoes are dropped; a
    /// peer with unread data in our receive queue gets a reset, as from any closing server.
    fn close_all(&mut self) {
        // Dropping each connection closes its socket (and with it its epoll registration).
        let open = self.conns.drain().count();
        for _ in 0..open {
            self.count_close(false);
        }
        self.ready.clear();
    }
}

/// The descriptor given up at the open-file limit (see `Worker::refuse_one`); `None` if
/// even that cannot be opened (then the limit is met with a back-off).
fn open_reserve() -> Option<OwnedFd> {
    std::fs::File::open("/dev/null").ok().map(OwnedFd::from)
}

/// What [`Worker::refuse_one`] achieved.
enum Refusal {
    /// A connection was accepted and closed.
    Refused,
    /// None was waiting.
    Drained,
    /// No descriptor could be freed for it: back off.
    Failed,
}

/// How the loop reacts to an `accept4` failure.
enum AcceptError {
    /// EAGAIN: the accept queue is empty.
    Drained,
    /// This one attempt failed (a signal, or the connection died while queued): go on.
    Skip,
    /// Out of descriptors: refuse the connection that hit the limit, or back off.
    OutOfFiles,
    /// Out of kernel memory: back off.
    Exhausted,
    /// The listener itself is unusable: a bug, not a condition to ride out.
    Fatal,
}

fn classify_accept_error(e: &io::Error) -> AcceptError {
    if e.kind() == io::ErrorKind::WouldBlock {
        return AcceptError::Drained;
    }
    match e.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE) => AcceptError::OutOfFiles,
        Some(libc::ENOBUFS | libc::ENOMEM) => AcceptError::Exhausted,
        Some(libc::EBADF | libc::EFAULT | libc::EINVAL | libc::ENOTSOCK) => AcceptError::Fatal,
        // EINTR, ECONNABORTED, EPROTO, EPERM (firewall), and the pending network errors
        // Linux passes on from the new socket (ENETDOWN, EHOSTUNREACH, ...).
        _ => AcceptError::Skip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_are_classified_so_the_loop_neither_spins_nor_dies() {
        let kind = |errno| classify_accept_error(&io::Error::from_raw_os_error(errno));
        assert!(matches!(kind(libc::EAGAIN), AcceptError::Drained));
        assert!(matches!(kind(libc::EMFILE), AcceptError::OutOfFiles));
        assert!(matches!(kind(libc::ENFILE), AcceptError::OutOfFiles));
        assert!(matches!(kind(libc::ENOMEM), AcceptError::Exhausted));
        assert!(matches!(kind(libc::ECONNABORTED), AcceptError::Skip));
        assert!(matches!(kind(libc::EINTR), AcceptError::Skip));
        assert!(matches!(kind(libc::EBADF), AcceptError::Fatal));
    }

    #[test]
    fn an_idle_connection_costs_one_small_slot_and_no_heap() {
        let size = Slab::<Conn>::slot_size();
        // A descriptor, a state byte, an empty pending buffer, a generation.
        assert!(size <= 64, "slot is {size} bytes");
    }

    #[test]
    fn reserved_tokens_are_outside_the_slab_range() {
        for raw in [LISTENER, SHUTDOWN] {
            assert!((raw & 0xffff_ffff) as u32 >= Token::MAX_INDEX);
        }
    }
}
