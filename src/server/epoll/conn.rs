//! One echo connection: its socket, the state of its read side, and the bytes it owes the
//! client. The worker loop decides *when* a connection runs; this module decides *what* it
//! does when it runs, and tells the loop what to do next ([`Step`]).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use super::pending::{BufPool, Pending};
use super::sys;
use crate::hold::Holders;
use crate::stats::{bump, WorkerStats};

/// Reads one connection may do per turn before others get theirs. With a 64 KiB chunk
/// that is up to 1 MiB per turn: large enough to amortise the wakeup, small enough that a
/// bulk sender cannot make a neighbour's one-byte echo wait on megabytes.
pub const READS_PER_TURN: u32 = 16;

/// Whether a short read (fewer bytes than asked) may be taken to mean "drained" without
/// the extra `recv` that would return EAGAIN. See [`Conn::on_event`] for why this is safe
/// for TCP with edge-triggered epoll; set to `false` to read strictly until EAGAIN.
const TRUST_SHORT_READS: bool = true;

/// Where the read side of a connection stands. Edge-triggered epoll reports *new* data,
/// not data that is already there, so whenever we stop reading before the kernel said
/// EAGAIN we must remember that bytes may be waiting: that is what `Backlog` and `Paused`
/// are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadSide {
    /// Drained: the next EPOLLIN edge says when to read again.
    Idle,
    /// Cut off by the per-turn budget with bytes possibly waiting. The connection's token
    /// is on the worker's ready list exactly while it is in this state.
    Backlog,
    /// Not reading because the unsent echo reached the cap (backpressure). Bytes may be
    /// waiting; reading resumes as soon as the echo has drained.
    Paused,
    /// Not reading because the worker holds its whole budget (see `hold`). Bytes may be
    /// waiting; the worker puts the connection back on the ready list when memory is
    /// freed. Its token is on the worker's blocked list exactly while it is here.
    Blocked,
    /// The peer sent FIN. Nothing more to read; close once everything is echoed.
    Eof,
}

/// What the worker loop must do with a connection after it ran.
#[derive(Debug)]
pub enum Step {
    /// Nothing: wait for its next event.
    Wait,
    /// It entered [`ReadSide::Backlog`]: put its token on the ready list.
    Queue,
    /// It entered [`ReadSide::Blocked`]: put its token on the blocked list.
    Block,
    /// Close it: `None` after a clean end (FIN and everything echoed), `Some` on an error.
    Close(Option<io::Error>),
}

/// The worker's resources every connection uses in turn while it runs.
pub struct Env {
    /// Where reads land (one per worker, shared by every connection in turn).
    pub scratch: Box<[u8]>,
    /// Recycled pending buffers.
    pub pool: BufPool,
    /// This worker's counters.
    pub stats: Arc<WorkerStats>,
    /// Unsent bytes at which reading pauses (`conn_byte_cap`).
    pub cap: usize,
    /// Who holds pending bytes, and the worker's budget for them.
    pub holds: Holders,
    /// Set when a flush got bytes out: the running connection's echo made progress.
    pub progressed: bool,
}

impl Env {
    /// The most a pending buffer can ever hold: reading stops at `cap`, and the read that
    /// crosses it adds at most one scratch buffer.
    pub fn limit(&self) -> usize {
        self.cap + self.scratch.len()
    }
}

/// An accepted, admitted connection. Small on purpose: an idle one is a descriptor, a
/// state byte and an empty [`Pending`], with no heap memory.
#[derive(Debug)]
pub struct Conn {
    fd: OwnedFd,
    read: ReadSide,
    pending: Pending,
}

impl Conn {
    /// Wrap a freshly accepted non-blocking socket.
    pub fn new(fd: OwnedFd) -> Conn {
        Conn {
            fd,
            read: ReadSide::Idle,
            pending: Pending::default(),
        }
    }

    /// The read side's state.
    #[cfg(test)]
    pub fn read_side(&self) -> ReadSide {
        self.read
    }

    /// Unsent bytes.
    #[cfg(test)]
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Memory this connection holds for its unsent echo (what the hold budget counts).
    pub fn held_bytes(&self) -> u32 {
        u32::try_from(self.pending.capacity()).unwrap_or(u32::MAX)
    }

    /// Memory was freed while this connection was [`ReadSide::Blocked`]: it may read
    /// again, from the ready list (bytes may be waiting, and no edge will say so).
    /// Returns whether it was blocked.
    pub fn unblock(&mut self) -> bool {
        if self.read == ReadSide::Blocked {
            self.read = ReadSide::Backlog;
            true
        } else {
            false
        }
    }

    /// Make the close a reset (zero linger): the connection is being shed, and its
    /// socket's queued bytes should be freed now, not sent to a client that is not
    /// reading. Best effort: a close is a close either way.
    pub fn reset_on_close(&self) {
        let _ = socket2::SockRef::from(&self.fd).set_linger(Some(std::time::Duration::ZERO));
    }

    /// Give the pending buffer back before the connection is dropped.
    pub fn release_buffers(&mut self, pool: &mut BufPool) {
        self.pending.discard(pool);
    }

    /// Handle an epoll event with readiness `mask`.
    ///
    /// Write side first: flushing may end a pause, and a resumed read side must be read at
    /// once, since the bytes it left in the socket will not produce another edge.
    ///
    /// About short reads: TCP `recv` returns less than asked only when the receive queue
    /// is empty at that moment (or at an urgent mark, which EPOLLPRI announces). Any later
    /// arrival wakes the epoll item again, because edge-triggered epoll re-queues on every
    /// wakeup after the item was harvested, so stopping after a short read loses nothing.
    /// The exception is news already delivered in this very mask: a FIN or error present
    /// at harvest time produces no further wakeup, so with RDHUP, HUP, ERR or PRI in the
    /// mask we read on until EOF or EAGAIN.
    pub fn on_event(&mut self, mask: u32, env: &mut Env) -> Step {
        let writable = mask & (sys::OUT | sys::ERR | sys::HUP) != 0;
        let readable = mask & (sys::IN | sys::RDHUP | sys::PRI | sys::ERR | sys::HUP) != 0;
        let trust_short =
            TRUST_SHORT_READS && mask & (sys::RDHUP | sys::PRI | sys::ERR | sys::HUP) == 0;

        let mut read_now = readable && self.read == ReadSide::Idle;
        if writable && !self.pending.is_empty() {
            if let Err(e) = self.flush(env) {
                return Step::Close(Some(e));
            }
            if self.pending.is_empty() {
                match self.read {
                    ReadSide::Paused => read_now = true,
                    ReadSide::Eof => return Step::Close(None),
                    ReadSide::Idle | ReadSide::Backlog | ReadSide::Blocked => {}
                }
            }
        }
        // A Backlog connection is already on the ready list; it reads there, once per round.
        if !read_now {
            return Step::Wait;
        }
        self.read_turn(env, trust_short)
    }

    /// Run a connection taken off the ready list (it is in [`ReadSide::Backlog`]).
    pub fn on_ready(&mut self, env: &mut Env) -> Step {
        if self.read != ReadSide::Backlog {
            debug_assert!(false, "ready list held a {:?} connection", self.read);
            return Step::Wait;
        }
        // No mask to tell whether a FIN already arrived: read until EAGAIN or EOF.
        self.read_turn(env, false)
    }

    /// Read and echo up to [`READS_PER_TURN`] chunks, then report what comes next.
    fn read_turn(&mut self, env: &mut Env, trust_short: bool) -> Step {
        let mut reads = 0;
        self.read = loop {
            if reads == READS_PER_TURN {
                break ReadSide::Backlog;
            }
            if env.holds.full() {
                // The worker holds its whole budget: leave the bytes in the kernel
                // (TCP flow control stops the client) until memory is freed.
                break ReadSide::Blocked;
            }
            let n = match sys::recv(self.fd.as_fd(), &mut env.scratch) {
                Ok(0) => break ReadSide::Eof,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break ReadSide::Idle,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Step::Close(Some(e)),
            };
            reads += 1;
            if let Err(e) = self.echo(n, env) {
                return Step::Close(Some(e));
            }
            // Backpressure: at its own cap, or as soon as it holds anything while the
            // worker is short of memory (the share of each holder shrinks to what it
            // has, so the budget goes to clients whose echo goes straight out).
            if self.pending.len() >= env.cap || (!self.pending.is_empty() && env.holds.pressure()) {
                bump(&env.stats.paused, 1);
                break ReadSide::Paused;
            }
            if trust_short && n < env.scratch.len() {
                break ReadSide::Idle;
            }
        };
        match self.read {
            ReadSide::Backlog => Step::Queue,
            ReadSide::Blocked => Step::Block,
            ReadSide::Eof if self.pending.is_empty() => Step::Close(None),
            _ => Step::Wait,
        }
    }

    /// Echo the first `n` bytes of the scratch buffer: straight to the socket if nothing
    /// is queued before them, else behind the queue (order is the whole contract).
    fn echo(&mut self, n: usize, env: &mut Env) -> io::Result<()> {
        let limit = env.limit();
        let chunk = &env.scratch[..n];
        if !self.pending.is_empty() {
            // The socket was full at the last try; EPOLLOUT will say when it has room.
            self.pending.push(chunk, &mut env.pool, limit);
            return Ok(());
        }
        let sent = loop {
            match sys::send(self.fd.as_fd(), chunk) {
                Ok(sent) => break sent,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 0,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        bump(&env.stats.bytes, sent as u64);
        if sent == n {
            bump(&env.stats.echoes, 1);
        } else {
            self.pending.push(&chunk[sent..], &mut env.pool, limit);
        }
        Ok(())
    }

    fn flush(&mut self, env: &mut Env) -> io::Result<()> {
        let fd = self.fd.as_fd();
        let done = self.pending.flush(|b| sys::send(fd, b), &mut env.pool)?;
        if done.bytes > 0 {
            env.progressed = true;
        }
        bump(&env.stats.bytes, done.bytes as u64);
        bump(&env.stats.echoes, u64::from(done.echoes));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::Ordering::Relaxed;

    /// A connection over a non-blocking Unix stream pair (same state machine, no network):
    /// returns the connection and the "client" end.
    fn pair() -> (Conn, UnixStream) {
        let (server, client) = UnixStream::pair().unwrap();
        server.set_nonblocking(true).unwrap();
        client.set_nonblocking(true).unwrap();
        (Conn::new(OwnedFd::from(server)), client)
    }

    fn fixture(scratch: usize, cap: usize) -> Env {
        Env {
            scratch: vec![0; scratch].into_boxed_slice(),
            pool: BufPool::new(4),
            stats: Arc::default(),
            cap,
            holds: Holders::new(1 << 30, None),
            progressed: false,
        }
    }

    /// One event plus the ready-list turns it leads to, as the worker loop would run them.
    fn turn(conn: &mut Conn, mask: u32, fx: &mut Env) -> Step {
        let mut step = conn.on_event(mask, fx);
        while matches!(step, Step::Queue) {
            step = conn.on_ready(fx);
        }
        step
    }

    /// Read everything the client end can read right now.
    fn drain(client: &mut UnixStream) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match client.read(&mut buf) {
                Ok(0) => return out,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return out,
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// Write until the socket refuses; returns what was written.
    fn fill(client: &mut UnixStream, total: usize) -> Vec<u8> {
        let data: Vec<u8> = (0..total).map(|i| (i * 7 + 3) as u8).collect();
        let mut off = 0;
        while off < data.len() {
            match client.write(&data[off..]) {
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        data[..off].to_vec()
    }

    #[test]
    fn a_small_echo_takes_the_fast_path_and_holds_no_buffer() {
        let mut fx = fixture(64 << 10, 64 << 10);
        let (mut conn, mut client) = pair();
        client.write_all(b"ping").unwrap();
        assert!(matches!(
            conn.on_event(sys::IN | sys::OUT, &mut fx),
            Step::Wait
        ));
        assert_eq!(conn.read_side(), ReadSide::Idle);
        assert_eq!(conn.pending.capacity(), 0);
        assert_eq!(drain(&mut client), b"ping");
        assert_eq!(fx.stats.echoes.load(Relaxed), 1);
        assert_eq!(fx.stats.bytes.load(Relaxed), 4);
    }

    /// A connection whose client wrote `data` and shut down its write side, with a
    /// 4 KiB scratch buffer and cap.
    fn half_closed(data: &[u8]) -> (Env, Conn, UnixStream) {
        let fx = fixture(4096, 4096);
        let (conn, mut client) = pair();
        client.write_all(data).unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        (fx, conn, client)
    }

    #[test]
    fn eof_with_nothing_pending_closes_cleanly() {
        let (mut fx, mut conn, mut client) = half_closed(b"bye");
        let step = conn.on_event(sys::IN | sys::RDHUP, &mut fx);
        assert!(matches!(step, Step::Close(None)), "{step:?}");
        assert_eq!(conn.read_side(), ReadSide::Eof);
        assert_eq!(drain(&mut client), b"bye");
    }

    #[test]
    fn a_short_read_ends_the_turn_unless_the_mask_reports_fin() {
        let (mut fx, mut conn, mut client) = half_closed(b"last words");
        // The mask this test claims (IN only) says no FIN had arrived at harvest time, so
        // the short read ends the turn; a real FIN arriving later brings a fresh event...
        assert!(matches!(conn.on_event(sys::IN, &mut fx), Step::Wait));
        assert_eq!(conn.read_side(), ReadSide::Idle);
        // ...whose mask carries RDHUP, and then the connection reads on to EOF.
        assert!(matches!(
            conn.on_event(sys::IN | sys::RDHUP, &mut fx),
            Step::Close(None)
        ));
        assert_eq!(drain(&mut client), b"last words");
    }

    #[test]
    fn the_read_budget_puts_a_busy_connection_in_backlog() {
        // Tiny scratch so the budget runs out long before the data does.
        let mut fx = fixture(64, 1 << 20);
        let (mut conn, mut client) = pair();
        let sent = fill(&mut client, 64 * READS_PER_TURN as usize * 3);
        assert!(sent.len() > 64 * READS_PER_TURN as usize);
        assert!(matches!(conn.on_event(sys::IN, &mut fx), Step::Queue));
        assert_eq!(conn.read_side(), ReadSide::Backlog);
        // Another event while in backlog must not read again (it is already queued).
        assert!(matches!(
            conn.on_event(sys::IN | sys::OUT, &mut fx),
            Step::Wait
        ));
        let mut echoed = drain(&mut client);
        assert_eq!(echoed.len(), 64 * READS_PER_TURN as usize);
        loop {
            match conn.on_ready(&mut fx) {
                Step::Queue => echoed.extend(drain(&mut client)),
                Step::Wait => break,
                Step::Block => panic!("blocked with an unlimited budget"),
                Step::Close(e) => panic!("closed: {e:?}"),
            }
        }
        echoed.extend(drain(&mut client));
        assert_eq!(conn.read_side(), ReadSide::Idle);
        assert_eq!(echoed, sent);
    }

    #[test]
    fn a_full_budget_blocks_reading_until_the_worker_unblocks_it() {
        let mut fx = fixture(4096, 1 << 20);
        fx.holds = Holders::new(100, None);
        // Another connection (slot 9) holds the whole budget.
        fx.holds.update(9, 100, 0);
        let (mut conn, mut client) = pair();
        let sent = fill(&mut client, 1000);
        assert!(matches!(conn.on_event(sys::IN, &mut fx), Step::Block));
        assert_eq!(conn.read_side(), ReadSide::Blocked);
        assert!(drain(&mut client).is_empty(), "nothing read while blocked");
        // Events while blocked read nothing either: the worker owns the resumption.
        assert!(matches!(conn.on_event(sys::IN, &mut fx), Step::Wait));
        // Memory freed: the worker unblocks it onto the ready list, and it reads.
        fx.holds.update(9, 0, 1);
        assert!(conn.unblock());
        assert!(!conn.unblock(), "only once");
        assert_eq!(conn.read_side(), ReadSide::Backlog);
        let step = conn.on_ready(&mut fx);
        assert!(matches!(step, Step::Wait), "{step:?}");
        assert_eq!(drain(&mut client), sent);
        assert_eq!(conn.read_side(), ReadSide::Idle);
    }

    #[test]
    fn a_flush_that_gets_bytes_out_counts_as_progress() {
        let cap = 8192;
        let mut fx = fixture(4096, cap);
        let (mut conn, mut client) = pair();
        let sent = fill(&mut client, 512 << 10);
        turn(&mut conn, sys::IN, &mut fx);
        assert!(
            conn.held_bytes() > 0,
            "a client that does not read leaves bytes pending"
        );
        fx.progressed = false;
        assert!(matches!(conn.on_event(sys::OUT, &mut fx), Step::Wait));
        assert!(!fx.progressed, "nothing could be sent yet");
        let mut echoed = drain(&mut client);
        turn(&mut conn, sys::OUT, &mut fx);
        assert!(fx.progressed);
        echoed.extend(drain(&mut client));
        assert!(!echoed.is_empty() && sent.starts_with(&echoed));
    }

    #[test]
    fn a_client_that_does_not_read_pauses_reading_then_resumes_when_drained() {
        let cap = 8192;
        let mut fx = fixture(4096, cap);
        let (mut conn, mut client) = pair();
        let mut sent = Vec::new();
        let mut echoed = Vec::new();
        // The client writes without reading: first the kernel buffers fill, then ours.
        for _ in 0..1000 {
            sent.extend(fill(&mut client, 4096));
            let step = turn(&mut conn, sys::IN | sys::OUT, &mut fx);
            assert!(!matches!(step, Step::Close(_)));
            if conn.read_side() == ReadSide::Paused {
                break;
            }
        }
        assert_eq!(conn.read_side(), ReadSide::Paused);
        assert!(conn.pending_len() >= cap);
        assert!(conn.pending.capacity() <= fx.limit());
        assert_eq!(fx.stats.paused.load(Relaxed), 1);
        // While paused, readability alone reads nothing.
        let before = conn.pending_len();
        assert!(matches!(conn.on_event(sys::IN, &mut fx), Step::Wait));
        assert_eq!(conn.pending_len(), before);

        // The client reads; EPOLLOUT flushes, and the read side resumes by itself.
        for _ in 0..1000 {
            echoed.extend(drain(&mut client));
            if let Step::Close(e) = turn(&mut conn, sys::OUT, &mut fx) {
                panic!("closed: {e:?}");
            }
            if conn.read_side() == ReadSide::Idle && conn.pending_len() == 0 {
                break;
            }
        }
        echoed.extend(drain(&mut client));
        assert_eq!(conn.read_side(), ReadSide::Idle);
        assert_eq!(conn.pending.capacity(), 0, "drained buffer not released");
        assert_eq!(echoed.len(), sent.len());
        assert!(echoed == sent, "echo differs from what was sent");
    }

    #[test]
    fn eof_waits_for_pending_bytes_then_closes() {
        let mut fx = fixture(4096, 1 << 20);
        let (mut conn, mut client) = pair();
        let mut sent = Vec::new();
        // Fill until the server owes bytes it cannot send.
        while conn.pending_len() == 0 {
            sent.extend(fill(&mut client, 4096));
            assert!(matches!(turn(&mut conn, sys::IN, &mut fx), Step::Wait));
        }
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let mut echoed = Vec::new();
        let mut closed = false;
        for _ in 0..10_000 {
            echoed.extend(drain(&mut client));
            if let Step::Close(e) = turn(&mut conn, sys::IN | sys::OUT | sys::RDHUP, &mut fx) {
                assert!(e.is_none(), "{e:?}");
                closed = true;
                break;
            }
        }
        assert!(closed);
        assert_eq!(conn.pending_len(), 0);
        echoed.extend(drain(&mut client));
        assert!(echoed == sent, "{} vs {} bytes", echoed.len(), sent.len());
    }

    #[test]
    fn a_vanished_peer_closes_with_an_error() {
        let mut fx = fixture(4096, 1 << 20);
        let (mut conn, mut client) = pair();
        client.write_all(b"abc").unwrap();
        drop(client);
        // Reading gets the bytes, echoing them gets EPIPE: close with an error.
        match conn.on_event(sys::IN | sys::OUT | sys::HUP, &mut fx) {
            Step::Close(Some(e)) => assert_eq!(e.raw_os_error(), Some(libc::EPIPE)),
            other => panic!("{other:?}"),
        }
    }
}
