//! Open-loop load generator (wrk2's method): every connection sends on a fixed schedule,
//! whatever the server does, and latency is measured from when a message was *due*, not
//! from when it went out. A closed-loop client that waits for a slow echo before sending
//! the next one stops asking exactly when the server is slow, so its percentiles leave
//! out the wait its missed sends would have seen ("coordinated omission"). Both numbers
//! are kept: corrected (from the scheduled time) and uncorrected (from the actual send).
//!
//! Each thread spreads its share of the rate evenly over its connections: slot `i` of a
//! thread is connection `i % conns`, message `i / conns`, due at `start + i / rate`. A
//! connection keeps at most one message in flight; when its next slot comes while it is
//! still busy, that message goes out as soon as the echo is back, and its latency still
//! counts from its slot. The thread sleeps in `epoll_pwait2` until the next slot (plain
//! `epoll_wait` only has milliseconds), with its timer slack cut to 1 ns; when the next
//! slot is closer than [`SPIN`], it polls instead of sleeping, because a sleep and a
//! wake-up per message would cost more CPU than the message itself at high rates. Its
//! CPU share therefore says little about whether it kept up: the *send lag* (how late
//! each measured message went out) does, and is reported.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use socket2::Socket;

use super::hist;
use super::loadgen::{self, CpuWindow, Errors, LoadSpec, Tally, Usage, Wire};
use crate::error::{Context, Result};
use ringecho_sys::epoll as sys;

/// What to run: the closed-loop generator's connections, sizes and timing, plus a rate.
#[derive(Debug, Clone)]
pub struct OpenSpec {
    /// Server, connections, message size, warm-up, measured time (messages *due* in it
    /// are measured), threads, CPUs, seed, server pid.
    pub load: LoadSpec,
    /// Messages per second, all connections together.
    pub rate: f64,
}

/// After the window, how long messages due in it may still take to come back.
const DRAIN: Duration = Duration::from_secs(1);

/// A slot closer than this is waited for by polling, not sleeping.
pub const SPIN: Duration = Duration::from_micros(50);

/// The outcome, all threads merged (each thread counts its own in one).
#[derive(Debug)]
pub struct OpenResult {
    /// Messages due inside the window.
    pub scheduled: u64,
    /// Of those, echoed back complete and byte-exact.
    pub echoes: u64,
    /// Due inside the window but not echoed by the end of the drain (the server, or the
    /// load generator, could not keep the rate); their waits so far are in `corrected`.
    pub unfinished: u64,
    /// Completion minus scheduled send, ns (coordinated omission corrected).
    pub corrected: Histogram<u64>,
    /// Completion minus actual send, ns (what a closed-loop client would report).
    pub uncorrected: Histogram<u64>,
    /// Actual send minus scheduled send, ns: the load generator's own lateness (a high
    /// tail means it, not the server, fell behind).
    pub send_lag: Histogram<u64>,
    /// The window's length, CPU and waits: the whole run's (a thread's own is unset). The
    /// load threads' CPU includes the drain after the window: the window's last echoes
    /// are their work too.
    pub usage: Usage,
    /// Problems seen (stalled is not used: see `unfinished`).
    pub errors: Errors,
}

impl Tally for OpenResult {
    fn merge(&mut self, o: OpenResult) {
        self.scheduled += o.scheduled;
        self.echoes += o.echoes;
        self.unfinished += o.unfinished;
        let _ = self.corrected.add(&o.corrected);
        let _ = self.uncorrected.add(&o.uncorrected);
        let _ = self.send_lag.add(&o.send_lag);
        self.errors.add(&o.errors);
    }
}

/// One thread's send schedule: its share of the rate, spread evenly over its connections.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    start: Instant,
    /// Seconds between two consecutive slots of this thread.
    gap: f64,
    conns: u64,
}

impl Schedule {
    /// `rate` messages per second over `conns` connections, the first due at `start`.
    pub fn new(start: Instant, rate: f64, conns: usize) -> Schedule {
        Schedule {
            start,
            gap: 1.0 / rate,
            conns: conns.max(1) as u64,
        }
    }

    /// When slot `i` is due.
    pub fn slot_time(&self, i: u64) -> Instant {
        self.start + Duration::from_secs_f64(i as f64 * self.gap)
    }

    /// When message `n` of connection `conn` is due.
    pub fn due(&self, conn: usize, n: u64) -> Instant {
        self.slot_time(n * self.conns + conn as u64)
    }

    /// The first slot due at or after `t`.
    pub fn first_slot_at(&self, t: Instant) -> u64 {
        let secs = t.saturating_duration_since(self.start).as_secs_f64();
        let mut i = (secs / self.gap).floor() as u64;
        // Float rounding may land one slot early or late; settle on the exact one.
        while i > 0 && self.slot_time(i - 1) >= t {
            i -= 1;
        }
        while self.slot_time(i) < t {
            i += 1;
        }
        i
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    /// Connected; nothing in flight, its next message not yet due.
    Idle,
    /// One message out (maybe partly sent), its echo not all back.
    Busy,
    Dead,
}

/// One connection.
struct Conn {
    sock: Socket,
    offset: usize,
    state: State,
    /// Index of the next message to send (its slot is `due(k, next)`).
    next: u64,
    sent: usize,
    received: usize,
    /// The in-flight message's scheduled and actual send times.
    due: Instant,
    sent_at: Instant,
}

/// What one thread's loop needs at hand.
struct ThreadPlan<'a> {
    sched: Schedule,
    msg_len: usize,
    pattern: &'a [u8],
    window: (Instant, Instant),
}

impl ThreadPlan<'_> {
    fn msg(&self, c: &Conn) -> &[u8] {
        &self.pattern[c.offset..c.offset + self.msg_len]
    }

    /// Send connection `k`'s next message if it is due (and due before the window ends:
    /// nothing new starts after it). `on_time`: the connection was idle when its slot
    /// came, so any delay is the load generator's own (its send lag); a message sent on
    /// catch-up after a late echo is the server's delay, and is not counted as lag.
    fn send_if_due(
        &self,
        k: usize,
        c: &mut Conn,
        now: Instant,
        on_time: bool,
        out: &mut OpenResult,
    ) {
        let due = self.sched.due(k, c.next);
        if c.state != State::Idle || due > now || due >= self.window.1 {
            return;
        }
        c.state = State::Busy;
        c.next += 1;
        c.sent = 0;
        c.received = 0;
        c.due = due;
        c.sent_at = Instant::now();
        if on_time && due >= self.window.0 {
            hist::record(
                &mut out.send_lag,
                ns(c.sent_at.saturating_duration_since(due)),
            );
        }
        let msg = &self.pattern[c.offset..c.offset + self.msg_len];
        match loadgen::write_rest(&c.sock, msg, &mut c.sent) {
            Wire::Done | Wire::WouldBlock => {}
            failed => kill(c, failed, out),
        }
    }

    /// Advance connection `k` on an epoll event.
    fn step(&self, k: usize, c: &mut Conn, bits: u32, scratch: &mut [u8], out: &mut OpenResult) {
        if c.state == State::Connecting {
            if bits & (sys::OUT | sys::ERR | sys::HUP) == 0 {
                return;
            }
            match c.sock.take_error() {
                Ok(None) if bits & sys::ERR == 0 => c.state = State::Idle,
                _ => {
                    out.errors.connect += 1;
                    c.state = State::Dead;
                    return;
                }
            }
        }
        if c.state == State::Busy {
            let msg = self.msg(c);
            match loadgen::read_echo(&c.sock, msg, c.sent, &mut c.received, scratch) {
                Wire::Done => {
                    let done = Instant::now();
                    if c.due >= self.window.0 && c.due < self.window.1 {
                        out.echoes += 1;
                        hist::record(&mut out.corrected, ns(done - c.due));
                        hist::record(&mut out.uncorrected, ns(done - c.sent_at));
                    }
                    c.state = State::Idle;
                }
                Wire::WouldBlock => match loadgen::write_rest(&c.sock, msg, &mut c.sent) {
                    Wire::Done | Wire::WouldBlock => {}
                    failed => return kill(c, failed, out),
                },
                failed => return kill(c, failed, out),
            }
        } else if c.state == State::Idle && bits & (sys::IN | sys::RDHUP | sys::HUP) != 0 {
            // Nothing is owed to an idle connection: data is a stray echo, EOF a close.
            let mut none = 0;
            match loadgen::read_echo(&c.sock, &[], 0, &mut none, scratch) {
                Wire::WouldBlock => {}
                Wire::Done | Wire::Mismatch => return kill(c, Wire::Mismatch, out),
                failed => return kill(c, failed, out),
            }
        }
        // A message that fell due while this one was in flight goes out now.
        self.send_if_due(k, c, Instant::now(), false, out);
    }
}

fn kill(c: &mut Conn, why: Wire, out: &mut OpenResult) {
    c.state = State::Dead;
    out.errors.count(why);
}

fn ns(d: Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}

/// Run the load and wait for it; errors only for set-up failures.
pub fn run(open: &OpenSpec) -> Result<OpenResult> {
    let spec = &open.load;
    if spec.run.threads == 0 || spec.conns == 0 || spec.size == 0 {
        crate::bail!("threads, connections and message size must all be at least 1");
    }
    if !(open.rate.is_finite() && open.rate >= 1.0) {
        crate::bail!("the rate must be at least 1 message per second");
    }
    let (start, pool) = spec.run.pool(spec.run.threads.min(spec.conns), spec.conns);
    let window = pool.window;
    let (mut r, usage) = pool.run(|t, share| {
        let rate = open.rate * share as f64 / spec.conns as f64;
        drive(spec, t, share, Schedule::new(start, rate, share), window)
    })?;
    r.usage = usage;
    Ok(r)
}

/// One load thread: connect its share, send on the schedule until the window closes,
/// then wait (up to `DRAIN`) for the window's last echoes.
fn drive(
    spec: &LoadSpec,
    thread: usize,
    share: usize,
    sched: Schedule,
    window: (Instant, Instant),
) -> Result<(OpenResult, Duration)> {
    let (ep, pattern) = spec.run.thread_start(thread, spec.size + 256, true)?;
    let ctx = ThreadPlan {
        sched,
        msg_len: spec.size,
        pattern: &pattern,
        window,
    };
    let mut out = OpenResult {
        scheduled: sched.first_slot_at(window.1) - sched.first_slot_at(window.0),
        echoes: 0,
        unfinished: 0,
        corrected: hist::new_histogram(),
        uncorrected: hist::new_histogram(),
        send_lag: hist::new_histogram(),
        usage: Usage::default(),
        errors: Errors::default(),
    };
    // Connection k (its index here, and its token) has the schedule's k-th slots; the
    // slots of connections that failed to connect (the last ones) are never sent and
    // count as unfinished.
    let mut conns = Vec::with_capacity(share);
    for k in 0..share {
        match loadgen::start_connect(spec.addr) {
            Ok(sock) => {
                ep.add(
                    loadgen::sock_fd(&sock),
                    sys::IN | sys::OUT | sys::RDHUP | sys::ET,
                    conns.len() as u64,
                )
                .context("registering a load connection")?;
                let now = Instant::now();
                conns.push(Conn {
                    sock,
                    offset: (k * 7) % 256,
                    state: State::Connecting,
                    next: 0,
                    sent: 0,
                    received: 0,
                    due: now,
                    sent_at: now,
                });
            }
            Err(_) => {
                out.errors.connect += 1;
            }
        }
    }
    let mut events = sys::event_buffer(1024);
    let mut scratch = vec![0u8; spec.size.clamp(4096, 1 << 20)];
    let mut next_slot = 0u64;
    let drain_end = window.1 + DRAIN;
    // The thread's CPU counts from the window's start until the drain ends.
    let mut cpu = CpuWindow::default();
    loop {
        let now = Instant::now();
        cpu.tick(now, (window.0, drain_end));
        // Wake every idle connection whose slot has come; busy ones catch up when their
        // echo is back.
        let mut slot_at = sched.slot_time(next_slot);
        while slot_at <= now && slot_at < window.1 {
            let k = (next_slot % share as u64) as usize;
            if let Some(c) = conns.get_mut(k) {
                ctx.send_if_due(k, c, now, true, &mut out);
            }
            next_slot += 1;
            slot_at = sched.slot_time(next_slot);
        }
        if now >= window.1 {
            let owed = conns
                .iter()
                .any(|c| matches!(c.state, State::Busy | State::Connecting));
            if !owed || now >= drain_end {
                break;
            }
        }
        let wake = if slot_at < window.1 {
            slot_at
        } else {
            drain_end
        };
        let until = wake.saturating_duration_since(now);
        let timeout = if until < SPIN {
            Duration::ZERO
        } else {
            until.min(Duration::from_millis(100))
        };
        let n = ep.wait_for(&mut events, timeout).context("epoll_pwait2")?;
        for ev in &events[..n] {
            let (token, bits) = (ev.u64, ev.events);
            let k = token as usize;
            if let Some(c) = conns.get_mut(k) {
                ctx.step(k, c, bits, &mut scratch, &mut out);
            }
        }
    }
    let cpu = cpu.used();
    out.unfinished = out.scheduled.saturating_sub(out.echoes);
    // What never came back still waited at least until now: record that lower bound so
    // the corrected tail shows the server fell behind instead of hiding it.
    let end = Instant::now();
    for (k, c) in conns.iter().enumerate() {
        if c.state == State::Busy && c.due >= window.0 && c.due < window.1 {
            hist::record(&mut out.corrected, ns(end - c.due));
            hist::record(&mut out.uncorrected, ns(end - c.sent_at));
        }
        let mut n = c.next;
        loop {
            let due = sched.due(k, n);
            if due >= window.1 {
                break;
            }
            if due >= window.0 {
                hist::record(&mut out.corrected, ns(end - due));
            }
            n += 1;
        }
    }
    Ok((out, cpu))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_evenly_spaced_at_the_rate() {
        let t0 = Instant::now();
        let s = Schedule::new(t0, 1000.0, 10);
        assert_eq!(s.slot_time(0), t0);
        assert_eq!(s.slot_time(1000) - t0, Duration::from_secs(1));
        for i in 0..2000 {
            let gap = s.slot_time(i + 1) - s.slot_time(i);
            assert!(
                gap.abs_diff(Duration::from_millis(1)) < Duration::from_nanos(2),
                "{gap:?}"
            );
        }
    }

    #[test]
    fn each_connection_gets_every_nth_slot() {
        let t0 = Instant::now();
        let s = Schedule::new(t0, 100.0, 4);
        // Connection 2's messages: slots 2, 6, 10: every 40 ms, starting 20 ms in.
        assert_eq!(s.due(2, 0) - t0, Duration::from_millis(20));
        assert_eq!(s.due(2, 1) - s.due(2, 0), Duration::from_millis(40));
        assert_eq!(s.due(2, 2), s.slot_time(10));
    }

    #[test]
    fn first_slot_at_is_exact_at_boundaries() {
        let t0 = Instant::now();
        let s = Schedule::new(t0, 3.0, 1);
        assert_eq!(s.first_slot_at(t0), 0);
        assert_eq!(s.first_slot_at(t0 + Duration::from_nanos(1)), 1);
        assert_eq!(s.first_slot_at(s.slot_time(7)), 7);
        assert_eq!(s.first_slot_at(s.slot_time(7) + Duration::from_nanos(1)), 8);
        // Slots in a window: 3 per second for 2 s.
        let w = (t0 + Duration::from_secs(1), t0 + Duration::from_secs(3));
        assert_eq!(s.first_slot_at(w.1) - s.first_slot_at(w.0), 6);
    }
}
