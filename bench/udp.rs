//! UDP load generator, the echobench way: many client sockets, each bound to its own
//! ephemeral source port (so a NIC's or `SO_REUSEPORT`'s hash spreads them over receive
//! queues and server workers), driven by a few threads, each with one epoll instance,
//! sending and receiving in batches (`sendmmsg`/`recvmmsg`, see `ringecho_sys::mmsg`).
//!
//! Two modes share everything but the sending rule:
//!
//! - **closed loop** (`window` set): every socket keeps up to `window` datagrams in
//!   flight and sends the next as soon as an echo frees a slot; peak packets per second.
//! - **open loop** (`rate` set): datagrams go out on a fixed schedule (the
//!   [`Schedule`] the TCP open loop uses: each thread's share of the rate spread evenly
//!   over its sockets), whatever comes back; latency counts from when each was *due*
//!   (corrected) and from when it went out (uncorrected). Like the TCP open loop it
//!   polls instead of sleeping when the next slot is under [`SPIN`] away, and reports
//!   its *send lag* (how late each datagram went out), which says whether it kept up.
//!
//! Every echo is checked byte-exact against what that socket sent (`udp_seq.rs`). UDP
//! may drop: a datagram not back within `timeout` is lost and frees its slot; one that
//! comes back later still is *late* (counted, not an error). Wrong bytes and duplicates
//! are errors.
//!
//! Counting, per mode. Closed loop: echoes/s counts echoes that arrived inside the
//! measured window; loss is over the datagrams *sent* inside it (each gets the full
//! timeout, after the window, to come back). Open loop: everything is over the datagrams
//! *due* inside the window: echoes are those answered within the timeout, the rest are
//! lost (including any the client could not send); lost datagrams are not in the latency
//! histograms (they have no latency: the loss figure is their measure).

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use socket2::{Domain, Protocol, Socket, Type};

use super::hist;
use super::loadgen::{counters, CpuWindow, RunSpec, Tally, Usage};
use super::openloop::{Schedule, SPIN};
use super::udp_seq::{self, Echo, Tracker, HEAD};
use crate::error::{Context, Result};
use ringecho_sys::epoll::{self as sys, Epoll};
use ringecho_sys::mmsg::{self, MsgVec, SendBatch};

/// Datagrams per `sendmmsg`/`recvmmsg`.
const BATCH: usize = 32;
/// Receive batches taken from one socket per wake-up before the others get a turn.
const BATCHES_PER_WAKE: usize = 8;
/// How often waiting datagrams are checked against the timeout.
const EXPIRY_EVERY: Duration = Duration::from_millis(5);
/// Memory the sequence trackers of one run may take, all sockets together.
const TRACKER_BUDGET: usize = 32 << 20;
/// Seconds after which a datagram not echoed counts as lost (`bench udp --timeout`'s
/// default, and bench-all's). Loopback echoes take microseconds; even a server with a
/// 4 MiB receive queue full of 64-byte datagrams drains it in a few tens of ms.
pub const TIMEOUT_SECS: f64 = 0.2;
pub use super::validity::MAX_LOSS_PCT;
/// The largest UDP payload over IPv4.
pub const MAX_SIZE: usize = 65_507;
/// In-flight datagrams (sockets × window) a closed loop may ask for: more than any
/// socket buffer holds, so more would only measure drops.
pub const MAX_IN_FLIGHT: usize = 65_536;

/// What to run.
#[derive(Debug, Clone)]
pub struct UdpSpec {
    /// The server's UDP address.
    pub addr: SocketAddr,
    /// Client sockets (source ports), all threads together.
    pub sockets: usize,
    /// Datagram size in bytes, [`HEAD`]..=[`MAX_SIZE`].
    pub size: usize,
    /// Closed loop: datagrams in flight per socket. Ignored when `rate` is set.
    pub window: usize,
    /// Open loop: datagrams per second, all sockets together.
    pub rate: Option<f64>,
    /// A datagram not back within this long is lost.
    pub timeout: Duration,
    /// Warm-up, measured time, threads (at most one per socket is used), CPUs, seed,
    /// server pid.
    pub run: RunSpec,
}

counters! {
    /// Datagram counts; see the module documentation for what is over which window.
    pub struct Counts {
        /// Closed loop: datagrams sent in the window. Open loop: datagrams due in it.
        pub sent: u64,
        /// Closed loop: echoes that arrived in the window. Open loop: datagrams due in the
        /// window whose echo came back within the timeout. Byte-exact, first copies only.
        pub echoes: u64,
        /// Of `sent`, not echoed within the timeout (open loop: `sent - echoes`).
        pub lost: u64,
        /// Echoes that came after their datagram was counted lost (any time in the run).
        pub late: u64,
        /// Datagrams the client could not send (its send buffer full); open loop only, and
        /// already in `lost`.
        pub unsent: u64,
        /// Echoes with wrong bytes: cut, altered, another socket's, never sent.
        pub wrong: u64,
        /// Second copies of an echo.
        pub duplicate: u64,
    }
}

impl Counts {
    /// Wrong bytes and duplicates: what makes a run incorrect rather than lossy.
    pub fn errors(&self) -> u64 {
        self.wrong + self.duplicate
    }

    /// `lost` as a percentage of `sent` (0 when nothing was sent).
    pub fn loss_pct(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            self.lost as f64 * 100.0 / self.sent as f64
        }
    }
}

/// The outcome, all threads merged (each thread counts its own in one).
#[derive(Debug)]
pub struct UdpResult {
    /// Datagram counts.
    pub counts: Counts,
    /// Echoed payload bytes (the counted echoes').
    pub bytes: u64,
    /// Latency from the actual send to the echo, ns (open loop: "uncorrected").
    pub latency: Histogram<u64>,
    /// Open loop only: latency from when each datagram was due, ns (corrected).
    pub corrected: Option<Histogram<u64>>,
    /// Open loop only: actual send minus scheduled send, ns, of the datagrams due in the
    /// window: the load generator's own lateness.
    pub send_lag: Option<Histogram<u64>>,
    /// The window's length, CPU and waits: the whole run's (a thread's own is unset).
    pub usage: Usage,
    /// Send or receive calls that failed for a reason other than a full buffer or an
    /// ICMP error (e.g. the socket was shut), counted rather than fatal.
    pub io_errors: u64,
}

impl Tally for UdpResult {
    fn merge(&mut self, o: UdpResult) {
        self.counts.add(&o.counts);
        self.bytes += o.bytes;
        let _ = self.latency.add(&o.latency);
        if let (Some(c), Some(o)) = (&mut self.corrected, &o.corrected) {
            let _ = c.add(o);
        }
        if let (Some(l), Some(o)) = (&mut self.send_lag, &o.send_lag) {
            let _ = l.add(o);
        }
        self.io_errors += o.io_errors;
    }
}

impl UdpResult {
    /// Echoes per second over the window.
    pub fn echoes_per_sec(&self) -> f64 {
        self.counts.echoes as f64 / self.usage.window.as_secs_f64()
    }
}

/// Run the load and wait for it; errors only for set-up failures (no socket at all).
pub fn run(spec: &UdpSpec) -> Result<UdpResult> {
    if spec.run.threads == 0 || spec.sockets == 0 || spec.window == 0 {
        crate::bail!("threads, sockets and window must all be at least 1");
    }
    if !(HEAD..=MAX_SIZE).contains(&spec.size) {
        crate::bail!("the datagram size must be between {HEAD} and {MAX_SIZE} bytes");
    }
    if let Some(r) = spec.rate {
        if !(r.is_finite() && r >= 1.0) {
            crate::bail!("the rate must be at least 1 datagram per second");
        }
    }
    let threads = spec.run.threads.min(spec.sockets);
    let (start, pool) = spec.run.pool(threads, spec.sockets);
    let window = pool.window;
    // The run's tag: a stray datagram from another run (or a server echoing stale data)
    // does not check.
    let tag = (spec.run.seed as u32) ^ (std::process::id() << 8) ^ 0x5eed_u32;
    let (mut r, usage) = pool.run(|t, share| {
        // Socket ids are global: thread t's sockets follow those of threads 0..t.
        let first_id = t * (spec.sockets / threads) + t.min(spec.sockets % threads);
        drive(spec, t, share, first_id as u32, tag, start, window)
    })?;
    r.usage = usage;
    Ok(r)
}

/// One client socket.
struct Client {
    sock: Socket,
    id: u32,
    /// Start of its body in the thread's pattern.
    offset: usize,
    tracker: Tracker,
}

/// What one thread's loop needs at hand. Times are ns from `epoch`.
struct ThreadPlan<'a> {
    epoch: Instant,
    /// The measured window, ns.
    window: (u64, u64),
    body_len: usize,
    pattern: &'a [u8],
    tag: u32,
    open: bool,
}

impl ThreadPlan<'_> {
    fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch)
            .as_nanos()
            .min(u128::from(u64::MAX)) as u64
    }

    fn now(&self) -> u64 {
        self.ns(Instant::now())
    }

    fn body(&self, c: &Client) -> &[u8] {
        &self.pattern[c.offset..c.offset + self.body_len]
    }

    fn in_window(&self, t: u64) -> bool {
        t >= self.window.0 && t < self.window.1
    }

    /// Send `dues.len()` datagrams on `c` (at most one batch), due at those times; returns
    /// how many went out. Closed loop: each is counted sent if it left in the window.
    fn send(
        &self,
        c: &mut Client,
        dues: &[u64],
        heads: &mut [[u8; HEAD]],
        batch: &mut SendBatch,
        out: &mut UdpResult,
    ) -> usize {
        let n = dues.len().min(heads.len()).min(batch.capacity());
        let first = c.tracker.next_seq();
        for (i, h) in heads[..n].iter_mut().enumerate() {
            *h = udp_seq::head(first + i as u64, c.id, self.tag);
        }
        let sent_at = self.now();
        let body = &self.pattern[c.offset..c.offset + self.body_len];
        let k = match batch.send(c.sock.as_fd(), &heads[..n], body) {
            Ok(k) => k,
            Err(e) if mmsg::transient(&e) => 0,
            Err(_) => {
                out.io_errors += 1;
                0
            }
        };
        for &due in &dues[..k] {
            // Only the open loop has a send lag.
            if let (Some(lag), true) = (&mut out.send_lag, self.in_window(due)) {
                hist::record(lag, sent_at.saturating_sub(due));
            }
            // A closed loop's datagram is due when it goes out.
            let due = if self.open { due } else { sent_at };
            if c.tracker.push(due, sent_at).is_some() && !self.open {
                // Closed loops check room first; only the open loop overruns the ring,
                // and it counts loss from what was due, not from here.
                out.counts.lost += 1;
            }
        }
        if !self.open && self.in_window(sent_at) {
            out.counts.sent += k as u64;
        }
        k
    }

    /// Take every echo waiting on `c` (a few batches at most) and account for each.
    fn receive(&self, c: &mut Client, batch: &mut MsgVec, out: &mut UdpResult) {
        for _ in 0..BATCHES_PER_WAKE {
            let n = match batch.recv(c.sock.as_fd()) {
                Ok(n) => n,
                Err(e) if mmsg::transient(&e) => continue,
                Err(_) => {
                    out.io_errors += 1;
                    return;
                }
            };
            if n == 0 {
                return;
            }
            let now = self.now();
            for i in 0..n {
                let d = batch.slot(i);
                let (dgram, truncated) = (d.payload, d.truncated);
                let seq = match udp_seq::check(dgram, c.id, self.tag, self.body(c)) {
                    Some(seq) if !truncated => seq,
                    _ => {
                        out.counts.wrong += 1;
                        continue;
                    }
                };
                match c.tracker.echo(seq) {
                    Echo::Answered { due, sent } => {
                        // Closed loop: echoes arriving in the window; open loop: echoes
                        // of datagrams due in it.
                        let counted = if self.open {
                            self.in_window(due)
                        } else {
                            self.in_window(now)
                        };
                        if counted {
                            out.counts.echoes += 1;
                            out.bytes += dgram.len() as u64;
                            hist::record(&mut out.latency, now.saturating_sub(sent));
                            // Only the open loop's latency is corrected.
                            if let Some(corrected) = &mut out.corrected {
                                hist::record(corrected, now.saturating_sub(due));
                            }
                        }
                    }
                    Echo::Late => out.counts.late += 1,
                    Echo::Duplicate => out.counts.duplicate += 1,
                    Echo::Unknown => out.counts.wrong += 1,
                }
            }
            if n < batch.capacity() {
                return;
            }
        }
    }

    /// Count every datagram of `c` sent at or before `deadline` and still waiting as lost.
    fn expire(&self, c: &mut Client, deadline: u64, out: &mut UdpResult) {
        let (open, window) = (self.open, self.window);
        let lost = &mut out.counts.lost;
        c.tracker.expire(deadline, |l| {
            if !open && l.sent >= window.0 && l.sent < window.1 {
                *lost += 1;
            }
        });
    }
}

/// A connected, non-blocking UDP socket on its own ephemeral port that the server's
/// reflection guard will answer.
fn client_socket(addr: SocketAddr) -> io::Result<Socket> {
    for _ in 0..16 {
        let s = Socket::new(
            Domain::for_address(addr),
            Type::DGRAM.nonblocking().cloexec(),
            Some(Protocol::UDP),
        )?;
        // Room for a whole window of echoes (the kernel caps it at net.core.rmem_max).
        let _ = s.set_recv_buffer_size(1 << 20);
        s.connect(&addr.into())?;
        let port = s
            .local_addr()?
            .as_socket()
            .map_or(0, |a: SocketAddr| a.port());
        if !ringecho_server::udp::guard::REFLECTING_PORTS.contains(&port) {
            return Ok(s);
        }
    }
    Err(io::Error::other(
        "only ports the server refuses to answer were free",
    ))
}

/// Ring length for each socket's tracker: room for the window (closed loop) or for a
/// timeout's worth of the socket's rate (open loop) several times over, within
/// [`TRACKER_BUDGET`] for all sockets together, and never below twice the window.
fn ring_len(spec: &UdpSpec) -> usize {
    let per_socket_budget = (TRACKER_BUDGET / 24 / spec.sockets.max(1)).max(2);
    let want = match spec.rate {
        Some(rate) => {
            let per_socket = rate / spec.sockets.max(1) as f64;
            (per_socket * spec.timeout.as_secs_f64() * 4.0) as usize + 64
        }
        None => spec.window.saturating_mul(64).clamp(64, 4096),
    };
    let floor = (spec.window.saturating_mul(2)).max(16);
    want.min(per_socket_budget).max(floor).next_power_of_two()
}

/// One load thread: open its sockets, run its mode until the window closes, then wait
/// (up to the timeout) for what is still in flight.
fn drive(
    spec: &UdpSpec,
    thread: usize,
    share: usize,
    first_id: u32,
    tag: u32,
    start: Instant,
    window: (Instant, Instant),
) -> Result<(UdpResult, Duration)> {
    let (ep, pattern) =
        spec.run
            .thread_start(thread, spec.size - HEAD + 256, spec.rate.is_some())?;
    let epoch = start;
    let ctx = ThreadPlan {
        epoch,
        window: (
            window.0.duration_since(epoch).as_nanos() as u64,
            window.1.duration_since(epoch).as_nanos() as u64,
        ),
        body_len: spec.size - HEAD,
        pattern: &pattern,
        tag,
        open: spec.rate.is_some(),
    };
    let ring = ring_len(spec);
    let mut clients = Vec::with_capacity(share);
    for k in 0..share {
        let sock = client_socket(spec.addr)
            .with_context(|| format!("opening a UDP socket to {}", spec.addr))?;
        // Level-triggered: a wake-up that leaves echoes queued is reported again.
        ep.add(crate::net::raw(&sock), sys::IN, k as u64)
            .context("registering a load socket")?;
        clients.push(Client {
            sock,
            id: first_id + k as u32,
            offset: (k * 7) % 256,
            tracker: Tracker::new(ring),
        });
    }
    let mut out = UdpResult {
        counts: Counts::default(),
        bytes: 0,
        latency: hist::new_histogram(),
        corrected: spec.rate.map(|_| hist::new_histogram()),
        send_lag: spec.rate.map(|_| hist::new_histogram()),
        usage: Usage::default(),
        io_errors: 0,
    };
    let mut io = Io {
        events: sys::event_buffer(256),
        heads: vec![[0u8; HEAD]; BATCH],
        dues: vec![0u64; BATCH],
        send: SendBatch::new(BATCH),
        recv: MsgVec::new(BATCH, spec.size + 1),
    };
    let cpu = match spec.rate {
        None => closed_loop(spec, &ctx, &ep, &mut clients, &mut io, &mut out)?,
        Some(rate) => {
            let rate = rate * share as f64 / spec.sockets as f64;
            let sched = Schedule::new(start, rate, share);
            open_loop(spec, &ctx, sched, &ep, &mut clients, &mut io, &mut out)?
        }
    };
    Ok((out, cpu))
}

/// A thread's batches and buffers, allocated once.
struct Io {
    events: Vec<sys::Event>,
    heads: Vec<[u8; HEAD]>,
    dues: Vec<u64>,
    send: SendBatch,
    recv: MsgVec,
}

/// Keep `window` datagrams in flight on every socket until the window closes.
fn closed_loop(
    spec: &UdpSpec,
    ctx: &ThreadPlan,
    ep: &Epoll,
    clients: &mut [Client],
    io: &mut Io,
    out: &mut UdpResult,
) -> Result<Duration> {
    let timeout = spec.timeout.as_nanos() as u64;
    let drain_end = ctx.window.1 + timeout;
    let mut cpu = CpuWindow::default();
    let mut next_expiry = 0u64;
    loop {
        let now = ctx.now();
        cpu.tick(now, ctx.window);
        let sending = now < ctx.window.1;
        if now >= next_expiry || !sending {
            for c in clients.iter_mut() {
                ctx.expire(c, now.saturating_sub(timeout), out);
            }
            next_expiry = now + EXPIRY_EVERY.as_nanos() as u64;
        }
        if sending {
            for c in clients.iter_mut() {
                refill(spec, ctx, c, now, io, out);
            }
        } else if now >= drain_end || clients.iter().all(|c| c.tracker.in_flight() == 0) {
            break;
        }
        let n = ep.wait(&mut io.events, 1).context("epoll_wait")?;
        for i in 0..n {
            let token = io.events[i].u64;
            if let Some(c) = clients.get_mut(token as usize) {
                ctx.receive(c, &mut io.recv, out);
                if ctx.now() < ctx.window.1 {
                    refill(spec, ctx, c, now, io, out);
                }
            }
        }
    }
    for c in clients.iter_mut() {
        ctx.expire(c, u64::MAX, out);
    }
    Ok(cpu.used())
}

/// Top `c` up to the window (as far as its tracker has room), in batches.
fn refill(
    spec: &UdpSpec,
    ctx: &ThreadPlan,
    c: &mut Client,
    now: u64,
    io: &mut Io,
    out: &mut UdpResult,
) {
    loop {
        let want = spec
            .window
            .saturating_sub(c.tracker.in_flight())
            .min(c.tracker.room())
            .min(BATCH);
        if want == 0 {
            return;
        }
        io.dues[..want].fill(now);
        let k = ctx.send(c, &io.dues[..want], &mut io.heads, &mut io.send, out);
        if k < want {
            return;
        }
    }
}

/// Send on the schedule until the window closes, then drain.
fn open_loop(
    spec: &UdpSpec,
    ctx: &ThreadPlan,
    sched: Schedule,
    ep: &Epoll,
    clients: &mut [Client],
    io: &mut Io,
    out: &mut UdpResult,
) -> Result<Duration> {
    let share = clients.len() as u64;
    let epoch = ctx.epoch;
    let win_end = epoch + Duration::from_nanos(ctx.window.1);
    let last_slot = sched.first_slot_at(win_end);
    out.counts.sent = last_slot - sched.first_slot_at(epoch + Duration::from_nanos(ctx.window.0));
    let timeout = spec.timeout.as_nanos() as u64;
    let drain_end = ctx.window.1 + timeout;
    let mut cpu = CpuWindow::default();
    let mut next_slot = 0u64;
    let mut next_expiry = 0u64;
    loop {
        let now_i = Instant::now();
        let now = ctx.ns(now_i);
        cpu.tick(now, ctx.window);
        // Every slot due by now (and before the window's end) goes out, batched per
        // socket: socket k's due slots are k, k + share, k + 2 share, ...
        let due_end = sched
            .first_slot_at(now_i + Duration::from_nanos(1))
            .min(last_slot);
        if due_end > next_slot {
            let count = due_end - next_slot;
            for j in 0..count.min(share) {
                let first = next_slot + j;
                let k = (first % share) as usize;
                let mut slot = first;
                while slot < due_end {
                    let mut n = 0;
                    while n < BATCH && slot < due_end {
                        io.dues[n] = ctx.ns(sched.slot_time(slot));
                        n += 1;
                        slot += share;
                    }
                    let c = &mut clients[k];
                    let sent = ctx.send(c, &io.dues[..n], &mut io.heads, &mut io.send, out);
                    out.counts.unsent += (n - sent) as u64;
                }
            }
            next_slot = due_end;
        }
        if now >= next_expiry || now >= ctx.window.1 {
            for c in clients.iter_mut() {
                ctx.expire(c, now.saturating_sub(timeout), out);
            }
            next_expiry = now + EXPIRY_EVERY.as_nanos() as u64;
        }
        if now >= ctx.window.1
            && (now >= drain_end || clients.iter().all(|c| c.tracker.in_flight() == 0))
        {
            break;
        }
        let wake = if next_slot < last_slot {
            ctx.ns(sched.slot_time(next_slot))
        } else {
            drain_end
        };
        let until = Duration::from_nanos(wake.saturating_sub(ctx.now()));
        let wait = if until < SPIN {
            Duration::ZERO
        } else {
            until.min(EXPIRY_EVERY)
        };
        let n = ep.wait_for(&mut io.events, wait).context("epoll_pwait2")?;
        for ev in &io.events[..n] {
            let token = ev.u64;
            if let Some(c) = clients.get_mut(token as usize) {
                ctx.receive(c, &mut io.recv, out);
            }
        }
    }
    for c in clients.iter_mut() {
        ctx.expire(c, u64::MAX, out);
    }
    out.counts.lost = out.counts.sent.saturating_sub(out.counts.echoes);
    Ok(cpu.used())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(sockets: usize, window: usize, rate: Option<f64>) -> UdpSpec {
        UdpSpec {
            addr: "127.0.0.1:9".parse().expect("addr"),
            sockets,
            size: 64,
            window,
            rate,
            timeout: Duration::from_millis(200),
            run: RunSpec {
                warmup: Duration::ZERO,
                duration: Duration::from_secs(1),
                threads: 1,
                cpus: Vec::new(),
                seed: 1,
                server_pid: None,
            },
        }
    }

    #[test]
    fn rings_cover_the_window_and_the_budget() {
        assert_eq!(ring_len(&spec(64, 4, None)), 256);
        assert_eq!(ring_len(&spec(1, 1024, None)), 4096);
        // 10,000 sockets: the budget wins, but never below twice the window.
        let r = ring_len(&spec(10_000, 6, None));
        assert!(r * 24 * 10_000 <= 2 * TRACKER_BUDGET && r >= 12, "{r}");
        // Open loop: 100,000/s over 10 sockets with a 200 ms timeout is 2,000 in flight
        // per socket at worst; the ring holds several times that.
        let r = ring_len(&spec(10, 1, Some(100_000.0)));
        assert!(r >= 8_000, "{r}");
        assert!(r.is_power_of_two());
    }

    #[test]
    fn loss_is_a_share_of_what_was_sent() {
        let c = Counts {
            sent: 200,
            lost: 3,
            ..Counts::default()
        };
        assert!((c.loss_pct() - 1.5).abs() < 1e-9);
        assert_eq!(Counts::default().loss_pct(), 0.0);
        let bad = Counts {
            wrong: 2,
            duplicate: 1,
            late: 5,
            ..Counts::default()
        };
        assert_eq!(bad.errors(), 3, "late echoes are not errors");
    }
}
