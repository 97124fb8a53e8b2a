//! The conformance cases. Each is independent (its own connections), bounded by the
//! socket timeouts, and returns what it tried and what came back, pass or fail.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::payload::{first_mismatch, Rng};
use super::{Case, Ctx, Outcome, Suite};

/// Sizes the cases use. The CLI uses [`Plan::default`]; tests shrink it.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Connections open at once in the concurrency case.
    pub conns: usize,
    /// Bytes the slow reader writes before reading anything.
    pub slow_reader_bytes: usize,
    /// Writes in the pipelining case.
    pub pipelined_writes: usize,
    /// Clients that write until they block and never read, in the many-non-readers case.
    pub non_readers: usize,
    /// How soon a fresh client must be echoed while they hold the server, and after.
    pub fresh_within: Duration,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            conns: 1000,
            slow_reader_bytes: 8 << 20,
            pipelined_writes: 10_000,
            non_readers: 1000,
            fresh_within: Duration::from_secs(5),
        }
    }
}

/// The TCP suite: every case, in the order they run.
pub const SUITE: Suite<Plan> = Suite::new(
    "TCP",
    &[
        Case::new("one byte", one_byte),
        Case::new("connect, close, no data", connect_close),
        Case::new("64 KiB binary", |c| bulk(c, 64 << 10)),
        Case::new("1 MiB binary", |c| bulk(c, 1 << 20)),
        Case::new("concurrent connections", concurrent),
        Case::new("pipelined small writes", pipelined),
        Case::new("half-close", half_close),
        Case::new("slow reader", slow_reader),
        Case::new("reset mid-transfer", reset_mid_transfer),
        Case::new("one non-reader bounded", super::hostile::one_non_reader),
        Case::new("many non-readers", super::hostile::many_non_readers),
    ],
);

fn one_byte(ctx: &Ctx<Plan>) -> Outcome {
    let s = connect(ctx)?;
    let b = Rng::new(ctx.seed).bytes(1);
    (&s).write_all(&b)
        .map_err(|e| format!("write failed: {e}"))?;
    read_expect(ctx, &s, &b)?;
    Ok(format!("sent {:#04x}, got it back", b[0]))
}

fn connect_close(ctx: &Ctx<Plan>) -> Outcome {
    let s = connect(ctx)?;
    s.shutdown(Shutdown::Write)
        .map_err(|e| format!("shutdown failed: {e}"))?;
    expect_eof(ctx, &s)?;
    Ok("shut down our write side; the server closed with no data".into())
}

fn bulk(ctx: &Ctx<Plan>, size: usize) -> Outcome {
    let data = Rng::new(ctx.seed).bytes(size);
    let s = connect(ctx)?;
    echo_exact(ctx, &s, &data)?;
    Ok(format!("{} random bytes (NULs included) byte-exact", size))
}

fn concurrent(ctx: &Ctx<Plan>) -> Outcome {
    let n = ctx.plan.conns;
    need_descriptors(n, "connections")?;
    let mut rng = Rng::new(ctx.seed);
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        conns.push(connect(ctx).map_err(|e| format!("conn {i}: {e}"))?);
    }
    let payloads: Vec<Vec<u8>> = (0..n)
        .map(|_| {
            let len = rng.range(1, 2000);
            rng.bytes(len)
        })
        .collect();
    for (i, (s, p)) in conns.iter().zip(&payloads).enumerate() {
        (&*s)
            .write_all(p)
            .map_err(|e| format!("conn {i}: write failed: {e}"))?;
    }
    for (i, (s, p)) in conns.iter().zip(&payloads).enumerate() {
        read_expect(ctx, s, p).map_err(|e| format!("conn {i}: {e}"))?;
    }
    Ok(format!(
        "{n} connections open at once, 1..2000 B each: all byte-exact"
    ))
}

fn pipelined(ctx: &Ctx<Plan>) -> Outcome {
    let mut rng = Rng::new(ctx.seed);
    let sizes: Vec<usize> = (0..ctx.plan.pipelined_writes)
        .map(|_| rng.range(1, 64))
        .collect();
    let data = rng.bytes(sizes.iter().sum());
    let s = connect(ctx)?;
    let _ = s.set_nodelay(true);
    with_writer(
        &s,
        || {
            let mut off = 0;
            for len in &sizes {
                (&s).write_all(&data[off..off + len])?;
                off += len;
            }
            Ok(())
        },
        || read_expect(ctx, &s, &data),
    )?;
    Ok(format!(
        "{} writes of 1..64 B ({} B) without waiting: byte-exact, in order",
        sizes.len(),
        data.len()
    ))
}

fn half_close(ctx: &Ctx<Plan>) -> Outcome {
    let data = Rng::new(ctx.seed).bytes(256 << 10);
    let s = connect(ctx)?;
    with_writer(
        &s,
        || {
            (&s).write_all(&data)?;
            s.shutdown(Shutdown::Write)
        },
        || read_expect(ctx, &s, &data),
    )?;
    expect_eof(ctx, &s)?;
    Ok("wrote 256 KiB, shut down writing: all echoed, then the server closed".into())
}

fn slow_reader(ctx: &Ctx<Plan>) -> Outcome {
    let data = Rng::new(ctx.seed).bytes(ctx.plan.slow_reader_bytes);
    let other = Rng::new(ctx.seed ^ 0x5157).bytes(64 << 10);
    let a = connect(ctx)?;
    let written = AtomicUsize::new(0);
    let write = || {
        for chunk in data.chunks(64 << 10) {
            (&a).write_all(chunk)?;
            written.fetch_add(chunk.len(), Ordering::Relaxed);
        }
        Ok(())
    };
    let read = || {
        // Let A fill every buffer between us and the server: wait until its writes stall
        // (or finish) before checking that someone else is still served.
        let start = Instant::now();
        let (mut last, mut since) = (0, Instant::now());
        while start.elapsed() < ctx.timeout && last < data.len() {
            std::thread::sleep(Duration::from_millis(50));
            let now = written.load(Ordering::Relaxed);
            if now != last {
                (last, since) = (now, Instant::now());
            } else if since.elapsed() > Duration::from_millis(300) {
                break;
            }
        }
        let queued = written.load(Ordering::Relaxed);
        connect(ctx)
            .and_then(|b| echo_exact(ctx, &b, &other))
            .map_err(|e| format!("client B, while A had {queued} B unread: {e}"))?;
        read_expect(ctx, &a, &data).map_err(|e| format!("client A: {e}"))?;
        Ok(queued)
    };
    let queued = with_writer(&a, write, read)?;
    Ok(format!(
        "B echoed 64 KiB while A had {queued} B unread; A then read all {} B back byte-exact",
        data.len()
    ))
}

fn reset_mid_transfer(ctx: &Ctx<Plan>) -> Outcome {
    let data = Rng::new(ctx.seed).bytes(1 << 20);
    let c = connect(ctx)?;
    (&c).write_all(&data[..256 << 10])
        .map_err(|e| format!("write failed: {e}"))?;
    socket2::SockRef::from(&c)
        .set_linger(Some(Duration::ZERO))
        .map_err(|e| format!("SO_LINGER failed: {e}"))?;
    drop(c); // linger 0: close sends RST with data still unread
    std::thread::sleep(Duration::from_millis(50));
    let other = Rng::new(ctx.seed ^ 0x7e57).bytes(64 << 10);
    let d = connect(ctx).map_err(|e| format!("after the reset: {e}"))?;
    echo_exact(ctx, &d, &other).map_err(|e| format!("after the reset: {e}"))?;
    Ok("reset a connection after 256 KiB; the next client echoed 64 KiB byte-exact".into())
}

/// Raise the open-file limit as far as it goes; fail, saying so, if it stays too low for
/// `n` client sockets (`what`) and some to spare.
pub(super) fn need_descriptors(n: usize, what: &str) -> Result<(), String> {
    let limit = crate::net::raise_nofile_limit();
    if limit < n as u64 + 64 {
        return Err(format!(
            "the open-file limit {limit} is too low for {n} {what} (raise ulimit -n)"
        ));
    }
    Ok(())
}

/// Connect with the case timeout applied to the connect and to every read and write.
fn connect(ctx: &Ctx<Plan>) -> Result<TcpStream, String> {
    let s = TcpStream::connect_timeout(&ctx.addr, ctx.timeout)
        .map_err(|e| format!("connect to {} failed: {e}", ctx.addr))?;
    s.set_read_timeout(Some(ctx.timeout))
        .and_then(|()| s.set_write_timeout(Some(ctx.timeout)))
        .map_err(|e| format!("setting timeouts failed: {e}"))?;
    Ok(s)
}

/// Write `data` from a second thread while reading the echo here, so that no payload
/// size can deadlock on full socket buffers.
fn echo_exact(ctx: &Ctx<Plan>, s: &TcpStream, data: &[u8]) -> Result<(), String> {
    with_writer(s, || (&*s).write_all(data), || read_expect(ctx, s, data))
}

/// Run `write` on a second thread while `read` runs on this one. If the read fails, the
/// socket is shut down so a writer blocked on a full socket stops at once instead of at
/// its timeout. The read's failure is reported first (it is the one that says what the
/// server did wrong), then the writer's.
fn with_writer<T>(
    s: &TcpStream,
    write: impl FnOnce() -> std::io::Result<()> + Send,
    read: impl FnOnce() -> Result<T, String>,
) -> Result<T, String> {
    std::thread::scope(|sc| {
        let writer = std::thread::Builder::new()
            .spawn_scoped(sc, write)
            .map_err(|e| format!("spawning a writer thread failed: {e}"))?;
        let got = read();
        if got.is_err() {
            let _ = s.shutdown(Shutdown::Both);
        }
        let wrote = writer
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("writer thread panicked")));
        let got = got?;
        wrote.map_err(|e| format!("write failed: {e}"))?;
        Ok(got)
    })
}

/// Read exactly `want.len()` bytes, comparing as they arrive.
fn read_expect(ctx: &Ctx<Plan>, s: &TcpStream, want: &[u8]) -> Result<(), String> {
    read_checked(s, want.len(), Wait::Each(ctx.timeout), |offset, got| {
        first_mismatch(want, offset, got)
    })
}

/// How long [`read_checked`] may wait.
#[derive(Debug, Clone, Copy)]
pub(super) enum Wait {
    /// Up to this long for each read.
    Each(Duration),
    /// Until this instant, for all of them.
    Until(Instant),
}

/// Read exactly `total` bytes, checking each chunk as it arrives with `differs(offset,
/// chunk)`: None when the chunk is what belongs at `offset` of the stream, else what
/// differs.
pub(super) fn read_checked(
    mut s: &TcpStream,
    total: usize,
    wait: Wait,
    differs: impl Fn(usize, &[u8]) -> Option<String>,
) -> Result<(), String> {
    let late = |got: usize| match wait {
        Wait::Each(t) => format!(
            "timed out after {}s having received {got} of {total} bytes",
            t.as_secs_f64()
        ),
        Wait::Until(_) => format!("got {got} of {total} bytes back in time"),
    };
    let set_timeout = |t| {
        s.set_read_timeout(Some(t))
            .map_err(|e| format!("SO_RCVTIMEO: {e}"))
    };
    if let Wait::Each(t) = wait {
        set_timeout(t)?;
    }
    let mut buf = vec![0u8; 64 << 10];
    let mut got = 0;
    while got < total {
        if let Wait::Until(deadline) = wait {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(late(got));
            }
            set_timeout(left)?;
        }
        let room = buf.len().min(total - got);
        match s.read(&mut buf[..room]) {
            Ok(0) => return Err(format!("server closed after {got} of {total} bytes")),
            Ok(n) => {
                if let Some(m) = differs(got, &buf[..n]) {
                    return Err(m);
                }
                got += n;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(late(got))
            }
            Err(e) => return Err(format!("read failed after {got} of {total} bytes: {e}")),
        }
    }
    Ok(())
}

/// Expect the server to close the connection cleanly (FIN) with nothing more to read.
fn expect_eof(ctx: &Ctx<Plan>, mut s: &TcpStream) -> Result<(), String> {
    let mut b = [0u8; 4096];
    loop {
        return match s.read(&mut b) {
            Ok(0) => Ok(()),
            Ok(n) => Err(format!("{n} unexpected bytes instead of the close")),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Err(
                format!("server did not close within {}s", ctx.timeout.as_secs_f64()),
            ),
            Err(e) => Err(format!("server reset instead of closing: {e}")),
        };
    }
}
