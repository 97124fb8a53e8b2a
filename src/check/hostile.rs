//! The hostile-client cases: clients that write and never read. A robust server bounds
//! what it holds for each of them and keeps serving everyone else; it may reset or close
//! non-readers to do so (shedding), which these cases count but never fail.

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::cases::{need_descriptors, read_checked, Plan, Wait};
use super::payload::{first_mismatch, Rng};
use super::{Ctx, Outcome};
use ringecho_sys::epoll::{self as sys, Epoll};

/// The receive buffer every non-reader asks for: small, so the server's echo backs up
/// into the server rather than into the client's kernel. (The kernel doubles it and
/// rounds it up to its minimum.)
const CLIENT_RCVBUF: usize = 4096;
/// The send buffer of each of the many non-readers: small, so a thousand of them cost the
/// client little kernel memory. It does not shorten what the server must hold: a client
/// stops only once everything between it and the server is full.
const MANY_SNDBUF: usize = 64 << 10;
/// Bytes per write.
const CHUNK: usize = 64 << 10;
/// The many non-readers count as blocked once none has taken a byte for this long.
const QUIET: Duration = Duration::from_millis(500);
/// The longest the many non-readers spend writing before the fresh clients are tried.
const FILL_TIME: Duration = Duration::from_secs(10);
/// The most one of the many non-readers writes: a server that buffers without limit never
/// blocks them, and is the one-non-reader case's to fail, not this machine's memory's.
const PER_NON_READER_CAP: usize = 4 << 20;
/// The most all the many non-readers write together.
const TOTAL_CAP: usize = 2 << 30;
/// Fresh clients tried each time (more than one: with SO_REUSEPORT each may land on a
/// different worker, and one starving worker is enough to fail).
const FRESH_CLIENTS: usize = 4;
/// What each fresh client sends and must get back byte-exact.
const FRESH_BYTES: usize = 1000;

/// One client that never reads must see its writes stall before it has written this much.
/// Generous: both kernels' socket buffers on loopback (a few MiB each way, autotuned) plus
/// whatever bounded buffering the server adds; a server that buffers without limit takes
/// it in well under a second.
pub const ONE_NON_READER_LIMIT: usize = 64 << 20;
/// ... and within this long.
pub const ONE_NON_READER_TIME: Duration = Duration::from_secs(20);
/// A write that takes no byte for this long has stalled.
const STALLED_AFTER: Duration = Duration::from_secs(1);
/// Period of the one non-reader's data: not a power of two, so an echo that skipped or
/// repeated a buffer's worth cannot match by accident.
const PERIOD: usize = (1 << 20) + 13;

/// Many clients write until they block and never read; fresh clients must still be echoed
/// within the plan's bound, and again after the non-readers close.
pub fn many_non_readers(ctx: &Ctx<Plan>) -> Outcome {
    let n = ctx.plan.non_readers;
    need_descriptors(n, "non-readers")?;
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let s = non_reader(ctx, Some(MANY_SNDBUF)).map_err(|e| format!("non-reader {i}: {e}"))?;
        s.set_nonblocking(true)
            .map_err(|e| format!("non-reader {i}: O_NONBLOCK: {e}"))?;
        clients.push(NonReader {
            s,
            written: 0,
            shed: false,
            error: None,
        });
    }
    let block = Rng::new(ctx.seed).bytes(CHUNK);
    let fill = fill(&mut clients, &block);
    let bound = ctx.plan.fresh_within;
    let during = fresh_echoes(ctx, ctx.seed ^ 0xf7e5, bound);
    let shed = count_shed(&clients);
    drop(clients);
    // Tried whatever happened before: a server that starved them may still recover.
    let after = fresh_echoes(ctx, ctx.seed ^ 0xaf7e, bound);
    let shed = match shed {
        Ok(k) => format!("{k} shed by the server"),
        Err(e) => format!("shed not counted ({e})"),
    };
    let fresh = |r: &Result<Duration, String>| match r {
        Ok(d) => format!(
            "all {FRESH_CLIENTS} x {FRESH_BYTES} B byte-exact, slowest {}",
            ms(*d)
        ),
        Err(e) => format!("FAILED: {e}"),
    };
    let detail = format!(
        "{}, {shed}; fresh clients within {}s: {}; after the non-readers closed: {}",
        fill.describe(n),
        bound.as_secs_f64(),
        fresh(&during),
        fresh(&after)
    );
    match (during, after) {
        (Ok(_), Ok(_)) => Ok(detail),
        _ => Err(detail.into()),
    }
}

/// One client that never reads: its writes must stall within the stated bounds; then it
/// reads everything back byte-exact.
pub fn one_non_reader(ctx: &Ctx<Plan>) -> Outcome {
    let block = Rng::new(ctx.seed).bytes(PERIOD);
    let s = non_reader(ctx, None)?;
    s.set_write_timeout(Some(STALLED_AFTER))
        .map_err(|e| format!("SO_SNDTIMEO: {e}"))?;
    let s = TcpStream::from(s);
    let start = Instant::now();
    let mut written = 0;
    loop {
        if written >= ONE_NON_READER_LIMIT {
            return Err(format!(
                "the server took {} MiB in {:.1}s from a client that never read and its \
                 writes never stalled: it buffers without a bound (limit {} MiB)",
                written >> 20,
                start.elapsed().as_secs_f64(),
                ONE_NON_READER_LIMIT >> 20
            )
            .into());
        }
        if start.elapsed() > ONE_NON_READER_TIME {
            return Err(format!(
                "a client that never read was still writing after {}s ({} B taken): its \
                 writes did not stall",
                ONE_NON_READER_TIME.as_secs(),
                written
            )
            .into());
        }
        let off = written % PERIOD;
        let len = (PERIOD - off)
            .min(4 * CHUNK)
            .min(ONE_NON_READER_LIMIT - written);
        match (&s).write(&block[off..off + len]) {
            Ok(0) => return Err(format!("write took 0 bytes after {written} B").into()),
            Ok(k) => written += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) if is_shed(&e) => {
                return Ok(format!(
                    "a client that never read: the server shed it after {written} B in \
                     {:.1}s ({e}; bound {} MiB, {}s)",
                    start.elapsed().as_secs_f64(),
                    ONE_NON_READER_LIMIT >> 20,
                    ONE_NON_READER_TIME.as_secs()
                ))
            }
            Err(e) => return Err(format!("write failed after {written} B: {e}").into()),
        }
    }
    let stalled = start.elapsed();
    read_periodic(ctx, &s, &block, written)
        .map_err(|e| format!("its writes stalled after {written} B; reading it back: {e}"))?;
    Ok(format!(
        "a client that never read: its writes stalled after {written} B ({:.1} MiB) in \
         {:.1}s (bound {} MiB, {}s); it then read all of it back byte-exact",
        written as f64 / (1 << 20) as f64,
        stalled.as_secs_f64(),
        ONE_NON_READER_LIMIT >> 20,
        ONE_NON_READER_TIME.as_secs()
    ))
}

/// A connected client with the small receive buffer set before the handshake (the window
/// it advertises is fixed then) and `sndbuf` if given.
fn non_reader(ctx: &Ctx<Plan>, sndbuf: Option<usize>) -> Result<Socket, String> {
    let s = Socket::new(
        Domain::for_address(ctx.addr),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .map_err(|e| format!("socket failed: {e}"))?;
    s.set_recv_buffer_size(CLIENT_RCVBUF)
        .map_err(|e| format!("SO_RCVBUF failed: {e}"))?;
    if let Some(b) = sndbuf {
        s.set_send_buffer_size(b)
            .map_err(|e| format!("SO_SNDBUF failed: {e}"))?;
    }
    s.connect_timeout(&SockAddr::from(ctx.addr), ctx.timeout)
        .map_err(|e| format!("connect to {} failed: {e}", ctx.addr))?;
    s.set_read_timeout(Some(ctx.timeout))
        .map_err(|e| format!("setting timeouts failed: {e}"))?;
    Ok(s)
}

/// One of the many non-readers.
struct NonReader {
    s: Socket,
    written: usize,
    /// A write failed: the server reset or closed it.
    shed: bool,
    /// A write failed otherwise; this one writes no more.
    error: Option<String>,
}

/// How the many non-readers' writing ended.
struct Fill {
    total: usize,
    took: Duration,
    /// Clients that reached [`PER_NON_READER_CAP`] still writing.
    capped: usize,
    /// Why writing stopped.
    end: FillEnd,
    /// Clients whose writes failed other than by a reset, and the first such error.
    errors: (usize, Option<String>),
}

#[derive(PartialEq)]
enum FillEnd {
    /// No client took a byte for [`QUIET`]: all blocked (or shed).
    Blocked,
    /// [`TOTAL_CAP`] reached.
    Cap,
    /// [`FILL_TIME`] ran out with clients still writing.
    Time,
}

impl Fill {
    fn describe(&self, n: usize) -> String {
        let how = match self.end {
            FillEnd::Blocked if self.capped == 0 => "until every one blocked".to_string(),
            FillEnd::Blocked if self.capped == n => format!(
                "until each reached the {} MiB cap, none blocked",
                PER_NON_READER_CAP >> 20
            ),
            FillEnd::Blocked => format!(
                "until blocked ({} reached the {} MiB cap first)",
                self.capped,
                PER_NON_READER_CAP >> 20
            ),
            FillEnd::Cap => format!("up to the {} MiB total cap", TOTAL_CAP >> 20),
            FillEnd::Time => format!("for {}s, still not all blocked", FILL_TIME.as_secs()),
        };
        let errors = match &self.errors {
            (0, _) => String::new(),
            (k, e) => format!(
                " ({k} writes failed, first: {})",
                e.as_deref().unwrap_or("?")
            ),
        };
        format!(
            "{n} non-readers wrote {:.1} MiB {how} in {:.1}s{errors}",
            self.total as f64 / (1 << 20) as f64,
            self.took.as_secs_f64()
        )
    }
}

/// Write to every non-reader, round after round, until none takes a byte for [`QUIET`]
/// (or a cap or [`FILL_TIME`] is reached).
fn fill(clients: &mut [NonReader], block: &[u8]) -> Fill {
    let start = Instant::now();
    let mut last_progress = start;
    let mut total = 0usize;
    let end = loop {
        let mut progressed = false;
        // One write each per round, so that the caps, if reached, leave every client its
        // share rather than the first few everything.
        for c in clients.iter_mut() {
            if c.shed || c.error.is_some() || c.written >= PER_NON_READER_CAP || total >= TOTAL_CAP
            {
                continue;
            }
            let len = block.len().min(PER_NON_READER_CAP - c.written);
            match c.s.send(&block[..len]) {
                Ok(k) => {
                    c.written += k;
                    total += k;
                    progressed = true;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                Err(e) if is_shed(&e) => c.shed = true,
                Err(e) => c.error = Some(e.to_string()),
            }
        }
        let now = Instant::now();
        if progressed {
            last_progress = now;
        }
        if total >= TOTAL_CAP {
            break FillEnd::Cap;
        }
        if now - last_progress >= QUIET {
            break FillEnd::Blocked;
        }
        if now - start >= FILL_TIME {
            break FillEnd::Time;
        }
        if !progressed {
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    Fill {
        total,
        took: start.elapsed(),
        capped: clients
            .iter()
            .filter(|c| !c.shed && c.written >= PER_NON_READER_CAP)
            .count(),
        end,
        errors: (
            clients.iter().filter(|c| c.error.is_some()).count(),
            clients.iter().find_map(|c| c.error.clone()),
        ),
    }
}

/// Non-readers the server has reset or closed: a write failed, or the socket reports an
/// error, a hang-up or the server's FIN.
fn count_shed(clients: &[NonReader]) -> Result<usize, String> {
    let ep = Epoll::new().map_err(|e| format!("epoll_create failed: {e}"))?;
    for (i, c) in clients.iter().enumerate() {
        // Level-triggered, so a state already reached is reported by the first wait.
        ep.add(c.s.as_raw_fd(), sys::RDHUP, i as u64)
            .map_err(|e| format!("epoll_ctl failed: {e}"))?;
    }
    let mut hung = vec![false; clients.len()];
    let mut events = sys::event_buffer(clients.len().max(1));
    let got = ep
        .wait(&mut events, 0)
        .map_err(|e| format!("epoll_wait failed: {e}"))?;
    for ev in &events[..got] {
        if ev.events & (sys::RDHUP | sys::HUP | sys::ERR) != 0 {
            if let Some(h) = hung.get_mut(ev.u64 as usize) {
                *h = true;
            }
        }
    }
    Ok(clients
        .iter()
        .zip(&hung)
        .filter(|(c, h)| c.shed || **h)
        .count())
}

/// Connect [`FRESH_CLIENTS`] clients, send each its own [`FRESH_BYTES`] and expect every
/// echo byte-exact within `bound` of the first connect; returns when the last one was
/// complete.
fn fresh_echoes(ctx: &Ctx<Plan>, seed: u64, bound: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    let deadline = start + bound;
    let mut rng = Rng::new(seed);
    let mut clients = Vec::with_capacity(FRESH_CLIENTS);
    for i in 0..FRESH_CLIENTS {
        let which = format!("fresh client {} of {FRESH_CLIENTS}", i + 1);
        let s = TcpStream::connect_timeout(&ctx.addr, bound)
            .map_err(|e| format!("{which}: connect to {} failed: {e}", ctx.addr))?;
        let _ = s.set_nodelay(true);
        let data = rng.bytes(FRESH_BYTES);
        // Far less than any socket buffer: the write cannot wait on the echo.
        s.set_write_timeout(Some(bound))
            .and_then(|()| (&s).write_all(&data))
            .map_err(|e| format!("{which}: write failed: {e}"))?;
        clients.push((which, s, data));
    }
    for (which, s, data) in &clients {
        read_checked(s, data.len(), Wait::Until(deadline), |offset, got| {
            first_mismatch(data, offset, got)
        })
        .map_err(|e| format!("{which}: {e}"))?;
    }
    Ok(start.elapsed())
}

/// Read `total` bytes of `block` repeated, comparing as they arrive.
fn read_periodic(ctx: &Ctx<Plan>, s: &TcpStream, block: &[u8], total: usize) -> Result<(), String> {
    read_checked(s, total, Wait::Each(ctx.timeout), |offset, got| {
        let sent = |i: usize| block[(offset + i) % block.len()];
        let i = got.iter().enumerate().position(|(i, &b)| b != sent(i))?;
        Some(format!(
            "byte {} differs: sent {:#04x} got {:#04x}",
            offset + i,
            sent(i),
            got[i]
        ))
    })
}

/// A write error that means the server reset or closed the connection.
fn is_shed(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted
    )
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}
