//! Closed-loop load generator: a few threads, each driving thousands of non-blocking
//! connections through one epoll instance (never a thread per connection, which measures
//! the client's scheduler instead of the server). Each connection keeps exactly one
//! message in flight: send it, read the whole echo, check every byte, record the latency,
//! send the next.
//!
//! Messages differ per connection (each reads its own window of a per-thread random
//! pattern), so data crossing between connections is caught as well as corruption.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use socket2::{Domain, Protocol, Socket, Type};

use super::gate::Gate;
use super::{cpu, hist};
use crate::error::{Context, Error, Result};
use ringecho_check::payload_bytes;
use ringecho_sys::epoll::{self as sys, Epoll};

/// The most load threads: each drives many connections, so more than the machine has
/// CPUs measures the client's scheduler; and far more (tens of thousands) exhausts the
/// kernel's map limit, where a thread that did start aborts the process setting up its
/// signal stack instead of failing to spawn.
pub const MAX_THREADS: usize = 1024;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Server address.
    pub addr: SocketAddr,
    /// Connections, all threads together.
    pub conns: usize,
    /// Message size in bytes.
    pub size: usize,
    /// Warm-up, measured time, threads, CPUs, seed, server pid.
    pub run: RunSpec,
}

/// How long a load generator runs, on which threads, and whose CPU it reports: the part
/// of the description every generator (TCP closed and open loop, UDP) shares.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// Time before measuring (connections are made in it).
    pub warmup: Duration,
    /// Measured time.
    pub duration: Duration,
    /// Load threads (all of them in the TCP closed loop; the others use at most one per
    /// connection or socket).
    pub threads: usize,
    /// CPUs to pin load thread i to (`cpus[i % len]`); empty = not pinned.
    pub cpus: Vec<usize>,
    /// Payload seed.
    pub seed: u64,
    /// The server's pid, to report its own CPU (absent for the kernel module).
    pub server_pid: Option<u32>,
}

impl RunSpec {
    /// A pool of `count` load threads sharing `conns` connections, and its start, 20 ms
    /// from now; its measured window begins `warmup` after the start.
    pub(super) fn pool(&self, count: usize, conns: usize) -> (Instant, Threads<'_>) {
        let start = Instant::now() + Duration::from_millis(20);
        let window_start = start + self.warmup;
        let threads = Threads {
            count,
            conns,
            cpus: &self.cpus,
            window: (window_start, window_start + self.duration),
            server_pid: self.server_pid,
        };
        (start, threads)
    }

    /// What load thread `thread` starts with: its epoll instance and its payload pattern
    /// (`len` bytes, its own, from the seed). An open loop (`open`) also cuts the thread's
    /// timer slack to 1 ns, so that it wakes on time for its slots.
    pub(super) fn thread_start(
        &self,
        thread: usize,
        len: usize,
        open: bool,
    ) -> Result<(Epoll, Vec<u8>)> {
        let ep = Epoll::new().context("creating an epoll instance")?;
        if open {
            sys::set_timer_slack_ns(1).context("setting the timer slack")?;
        }
        Ok((ep, payload_bytes(self.seed ^ thread as u64, len)))
    }
}

/// A struct of `u64` counts, written as the struct itself inside `counters! { }`, with
/// `add`, which adds another's counts to its own field by field: how each load thread's
/// counts add up to the run's.
macro_rules! counters {
    (
        $(#[$attr:meta])*
        pub struct $name:ident {
            $( $(#[$doc:meta])* pub $field:ident: u64, )*
        }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct $name {
            $( $(#[$doc])* pub $field: u64, )*
        }

        impl $name {
            /// Add `o`'s counts to these.
            pub(super) fn add(&mut self, o: &$name) {
                $( self.$field += o.$field; )*
            }
        }
    };
}
pub(super) use counters;

counters! {
    /// What went wrong, counted; a run with any of these is not a clean result.
    pub struct Errors {
        /// Connections that failed to connect.
        pub connect: u64,
        /// Echoes that differed from what was sent (the connection is dropped).
        pub mismatch: u64,
        /// Connections the server closed or reset mid-run.
        pub closed: u64,
        /// Connections that made no progress in the whole measured window.
        pub stalled: u64,
    }
}

impl Errors {
    /// Broken echoes: failed connects, wrong bytes, connections the server closed.
    /// Stalled connections are not among them: a starved connection is a result about
    /// the server that makes the measurement invalid (see `validity.rs`), as in bench-all.
    pub fn failures(&self) -> u64 {
        self.connect + self.mismatch + self.closed
    }
}

/// The measured window's outcome, all threads merged (each thread counts its own in one).
#[derive(Debug)]
pub struct LoadResult {
    /// Complete, verified echoes inside the window.
    pub echoes: u64,
    /// Echoed bytes inside the window.
    pub bytes: u64,
    /// Send-to-full-echo latency of each of those echoes, in ns.
    pub latency: Histogram<u64>,
    /// The window's length, CPU and waits: the whole run's (a thread's own is unset).
    pub usage: Usage,
    /// Problems seen.
    pub errors: Errors,
}

impl Tally for LoadResult {
    fn merge(&mut self, o: LoadResult) {
        self.echoes += o.echoes;
        self.bytes += o.bytes;
        let _ = self.latency.add(&o.latency);
        self.errors.add(&o.errors);
    }
}

/// What a load thread counts: its generator's result type, which the run's result is the
/// sum of ([`Threads::run`] merges them).
pub(super) trait Tally: Send {
    /// Add another thread's counts and histograms to these (not the usage: that is the
    /// run's, not a thread's).
    fn merge(&mut self, o: Self);
}

/// One connection's progress through its current message.
struct Client {
    sock: Socket,
    /// Start of this connection's window into the pattern.
    offset: usize,
    sent: usize,
    received: usize,
    started: Instant,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    Running,
    Dead,
}

/// Run the load and wait for it; errors only for set-up failures (no socket at all).
pub fn run(spec: &LoadSpec) -> Result<LoadResult> {
    if spec.run.threads == 0 || spec.conns == 0 || spec.size == 0 {
        crate::bail!("threads, connections and message size must all be at least 1");
    }
    let (_, threads) = spec.run.pool(spec.run.threads, spec.conns);
    let window = threads.window;
    let (mut result, usage) = threads.run(|t, share| drive(spec, t, share, window))?;
    result.usage = usage;
    Ok(result)
}

/// The measured window and what it cost: its length, the CPU used in it (the load
/// threads', the whole machine's, the server's) and the run-queue waits in it. Every load
/// generator's report has one.
#[derive(Debug, Default, Clone, Copy)]
pub struct Usage {
    /// Length of the measured window.
    pub window: Duration,
    /// CPU the load threads used inside the window.
    pub client_cpu: Duration,
    /// Busy CPU of the whole machine inside the window.
    pub machine_cpu: Option<Duration>,
    /// CPU of the server process inside the window.
    pub server_cpu: Option<Duration>,
    /// Run-queue waits of the server's and the load generator's threads in the window.
    pub waits: Waits,
}

/// Time spent runnable but waiting for a CPU over the measured window, summed over the
/// threads: the server's (none without a process, as for the module) and the load
/// generator's own (this process). A CPU hog or a noisy neighbour on their CPUs shows
/// here, where the echo figures alone would only look slow.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Waits {
    pub server: Option<Duration>,
    pub client: Option<Duration>,
}

impl Waits {
    /// Each as a percentage of `window` (the wait summed over threads, so two threads
    /// each waiting the whole window read 200%).
    pub fn pct(&self, window: Duration) -> (Option<f64>, Option<f64>) {
        let of = |d: Option<Duration>| {
            d.map(|d| d.as_secs_f64() / window.as_secs_f64().max(1e-9) * 100.0)
        };
        (of(self.server), of(self.client))
    }
}

/// Load threads sharing the connections, and the CPU sampling around their measured window;
/// shared by every generator (made by [`RunSpec::pool`]).
pub(super) struct Threads<'a> {
    /// Threads to run.
    pub count: usize,
    /// Connections, split as evenly as possible.
    pub conns: usize,
    /// CPUs to pin thread i to (`cpus[i % len]`); empty = not pinned.
    pub cpus: &'a [usize],
    /// The measured window, for the machine's and the server's CPU.
    pub window: (Instant, Instant),
    /// The server's pid, if it is a process.
    pub server_pid: Option<u32>,
}

impl Threads<'_> {
    /// Run `f(thread, connections)` on every thread at once (released together at a
    /// barrier); `f` returns the thread's tally and the CPU it used in the window. Returns
    /// the tallies merged and the window's [`Usage`]: its length, the threads' CPU summed,
    /// and the machine's and the server's busy CPU and waits.
    pub fn run<T: Tally>(
        &self,
        f: impl Fn(usize, usize) -> Result<(T, Duration)> + Sync,
    ) -> Result<(T, Usage)> {
        if self.count > MAX_THREADS {
            crate::bail!(
                "at most {MAX_THREADS} load threads (asked for {})",
                self.count
            );
        }
        crate::net::raise_nofile_limit();
        let gate = Gate::new(self.count);
        let (window_start, window_end) = self.window;
        let server_pid = self.server_pid;
        let (outs, sampled) = std::thread::scope(|sc| {
            let mut handles = Vec::with_capacity(self.count);
            let mut failed = None;
            for t in 0..self.count {
                let (gate, f) = (&gate, &f);
                let spawned = std::thread::Builder::new().spawn_scoped(sc, move || {
                    let pinned = match self.cpus.is_empty() {
                        true => Ok(()),
                        false => {
                            crate::net::pin_current_thread(self.cpus[t % self.cpus.len()]).map(drop)
                        }
                    };
                    // Arrive even when pinning failed, so the others are not kept waiting.
                    if !gate.arrive() {
                        return Err(Error::msg("called off"));
                    }
                    pinned?;
                    let share = self.conns / self.count + usize::from(t < self.conns % self.count);
                    f(t, share)
                });
                match spawned {
                    Ok(h) => handles.push(h),
                    Err(e) => {
                        failed = Some(Error::from(e).context(format!(
                            "spawning load thread {} of {}",
                            t + 1,
                            self.count
                        )));
                        break;
                    }
                }
            }
            // Samples the machine and the server at the window's edges.
            let sampler = match failed {
                Some(_) => None,
                None => match std::thread::Builder::new().spawn_scoped(sc, move || {
                    let waits = |pid: Option<u32>| pid.and_then(cpu::task_waits);
                    sleep_until(window_start);
                    let m0 = cpu::machine_busy();
                    let s0 = server_pid.and_then(cpu::process_cpu);
                    let (sw0, cw0) = (waits(server_pid), waits(Some(std::process::id())));
                    sleep_until(window_end);
                    let m1 = cpu::machine_busy();
                    let s1 = server_pid.and_then(cpu::process_cpu);
                    let (sw1, cw1) = (waits(server_pid), waits(Some(std::process::id())));
                    let waited = |a: Option<Vec<(u32, u64)>>, b: Option<Vec<(u32, u64)>>| {
                        a.zip(b).map(|(a, b)| cpu::waited(&a, &b))
                    };
                    Usage {
                        machine_cpu: m0.zip(m1).map(|(a, b)| b.saturating_sub(a)),
                        server_cpu: s0.zip(s1).map(|(a, b)| b.saturating_sub(a)),
                        waits: Waits {
                            server: waited(sw0, sw1),
                            client: waited(cw0, cw1),
                        },
                        ..Usage::default()
                    }
                }) {
                    Ok(h) => Some(h),
                    Err(e) => {
                        failed = Some(Error::from(e).context("spawning the CPU sampler thread"));
                        None
                    }
                },
            };
            if failed.is_some() {
                gate.call_off();
            }
            let outs: Vec<Result<(T, Duration)>> = handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::msg("load thread panicked")))
                })
                .collect();
            let sampled = sampler.map_or(Usage::default(), |h| h.join().unwrap_or_default());
            match failed {
                Some(e) => Err(e),
                None => Ok((outs, sampled)),
            }
        })?;
        let mut usage = Usage {
            window: window_end - window_start,
            ..sampled
        };
        let mut total: Option<T> = None;
        for out in outs {
            let (out, cpu) = out?;
            usage.client_cpu += cpu;
            match &mut total {
                Some(total) => total.merge(out),
                None => total = Some(out),
            }
        }
        let total = total.ok_or_else(|| Error::msg("no load threads"))?;
        Ok((total, usage))
    }
}

/// One load thread: connect its share, then ping-pong until the window closes.
fn drive(
    spec: &LoadSpec,
    thread: usize,
    share: usize,
    (window_start, window_end): (Instant, Instant),
) -> Result<(LoadResult, Duration)> {
    // Per-thread pattern; connection k's messages are pattern[k % 256 ..][..size].
    let (ep, pattern) = spec.run.thread_start(thread, spec.size + 256, false)?;
    let mut out = LoadResult {
        echoes: 0,
        bytes: 0,
        latency: hist::new_histogram(),
        usage: Usage::default(),
        errors: Errors::default(),
    };
    let mut clients = Vec::with_capacity(share);
    for k in 0..share {
        match start_connect(spec.addr) {
            Ok(sock) => {
                // The token is the index in `clients`, which skips failed connects.
                ep.add(
                    sock_fd(&sock),
                    sys::IN | sys::OUT | sys::RDHUP | sys::ET,
                    clients.len() as u64,
                )
                .context("registering a load connection")?;
                clients.push(Client {
                    sock,
                    offset: (k * 7) % 256,
                    sent: 0,
                    received: 0,
                    started: Instant::now(),
                    state: State::Connecting,
                });
            }
            Err(_) => out.errors.connect += 1,
        }
    }
    let mut events = sys::event_buffer(1024);
    let mut scratch = vec![0u8; spec.size.clamp(4096, 1 << 20)];
    let mut cpu = CpuWindow::default();
    loop {
        let now = Instant::now();
        cpu.tick(now, (window_start, window_end));
        if now >= window_end {
            break;
        }
        let wait = (window_end - now).min(Duration::from_millis(10));
        let n = ep
            .wait(&mut events, wait.as_millis().max(1) as i32)
            .context("epoll_wait")?;
        for ev in &events[..n] {
            let (k, bits) = (ev.u64 as usize, ev.events);
            let Some(c) = clients.get_mut(k) else {
                continue;
            };
            step(
                c,
                bits,
                &pattern[c.offset..c.offset + spec.size],
                &mut scratch,
                (window_start, window_end),
                &mut out,
            );
        }
    }
    // Stalled: a message (or connect) outstanding since before the window began and still
    // not done at its end, i.e. no progress at all while we measured. Slow is not stalled.
    out.errors.stalled = clients
        .iter()
        .filter(|c| c.state != State::Dead && c.started < window_start)
        .count() as u64;
    Ok((out, cpu.used()))
}

/// The calling thread's CPU over a window: from its start to its end, or to now while it
/// has not ended.
#[derive(Default)]
pub(super) struct CpuWindow {
    start: Option<Duration>,
    used: Option<Duration>,
}

impl CpuWindow {
    /// Read the thread's CPU when `now` first reaches the window's start, and again when
    /// it first reaches its end.
    pub fn tick<T: PartialOrd>(&mut self, now: T, window: (T, T)) {
        if self.start.is_none() && now >= window.0 {
            self.start = Some(cpu::thread_cpu());
        }
        if self.used.is_none() && now >= window.1 {
            self.used = Some(cpu::thread_cpu().saturating_sub(self.start.unwrap_or_default()));
        }
    }

    /// The CPU used from the window's start to its end (to now if it has not ended).
    pub fn used(&self) -> Duration {
        self.used
            .unwrap_or_else(|| cpu::thread_cpu().saturating_sub(self.start.unwrap_or_default()))
    }
}

/// Advance one connection on an epoll event.
fn step(
    c: &mut Client,
    bits: u32,
    msg: &[u8],
    scratch: &mut [u8],
    window: (Instant, Instant),
    out: &mut LoadResult,
) {
    if c.state == State::Connecting {
        if bits & (sys::OUT | sys::ERR | sys::HUP) == 0 {
            return;
        }
        match c.sock.take_error() {
            Ok(None) if bits & sys::ERR == 0 => {
                c.state = State::Running;
                begin_message(c);
            }
            _ => {
                out.errors.connect += 1;
                c.state = State::Dead;
                return;
            }
        }
    }
    if c.state != State::Running {
        return;
    }
    match read_echo(&c.sock, msg, c.sent, &mut c.received, scratch) {
        Wire::Done => {
            let done = Instant::now();
            if done >= window.0 && done < window.1 {
                out.echoes += 1;
                out.bytes += msg.len() as u64;
                hist::record(
                    &mut out.latency,
                    done.duration_since(c.started).as_nanos() as u64,
                );
            }
            begin_message(c);
        }
        Wire::WouldBlock => {}
        failed => return fail(c, failed, out),
    }
    match write_rest(&c.sock, msg, &mut c.sent) {
        Wire::Done | Wire::WouldBlock => {}
        failed => fail(c, failed, out),
    }
}

fn fail(c: &mut Client, why: Wire, out: &mut LoadResult) {
    c.state = State::Dead;
    out.errors.count(why);
}

/// What a pass over a connection's socket found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wire {
    /// The whole echo came back (reading) or the whole message went out (writing).
    Done,
    /// Nothing more to do until the next readiness event.
    WouldBlock,
    /// The server closed or reset the connection.
    Closed,
    /// The server sent bytes that differ from (or go beyond) what was sent.
    Mismatch,
}

impl Errors {
    /// Count a failed pass (`Closed` or `Mismatch`).
    pub(super) fn count(&mut self, why: Wire) {
        match why {
            Wire::Mismatch => self.mismatch += 1,
            _ => self.closed += 1,
        }
    }
}

/// Read what has arrived of the echo of `msg` (`sent` bytes of it are out, `*received`
/// back), checking every byte; `Done` as soon as all of `msg` is back. Edge-triggered
/// callers get every byte the socket holds up to that point.
pub(super) fn read_echo(
    sock: &Socket,
    msg: &[u8],
    sent: usize,
    received: &mut usize,
    scratch: &mut [u8],
) -> Wire {
    loop {
        match sys::recv(sock.as_fd(), scratch) {
            Ok(0) => return Wire::Closed,
            Ok(n) => {
                let end = *received + n;
                if end > sent || scratch[..n] != msg[*received..end] {
                    return Wire::Mismatch;
                }
                *received = end;
                if end == msg.len() {
                    return Wire::Done;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Wire::WouldBlock,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Wire::Closed,
        }
    }
}

/// Send what is left of `msg` from `*sent`; `Done` once all of it is out.
pub(super) fn write_rest(sock: &Socket, msg: &[u8], sent: &mut usize) -> Wire {
    while *sent < msg.len() {
        match sys::send(sock.as_fd(), &msg[*sent..]) {
            Ok(n) => *sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Wire::WouldBlock,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Wire::Closed,
        }
    }
    Wire::Done
}

pub(super) fn sleep_until(t: Instant) {
    if let Some(d) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
}

fn begin_message(c: &mut Client) {
    c.sent = 0;
    c.received = 0;
    c.started = Instant::now();
}

/// A non-blocking connect under way (or done) to `addr`, with TCP_NODELAY.
pub(super) fn start_connect(addr: SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    s.set_tcp_nodelay(true)?;
    match s.connect(&addr.into()) {
        Ok(()) => Ok(s),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(s),
        Err(e) => Err(e),
    }
}

pub(super) fn sock_fd(s: &Socket) -> i32 {
    use std::os::fd::AsRawFd;
    s.as_raw_fd()
}
