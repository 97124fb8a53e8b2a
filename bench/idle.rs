//! Memory per idle connection: open N connections that never send, and read how much the
//! server process's resident memory grew (`VmRSS` in `/proc/PID/status`). An io_uring
//! server whose receives pick buffers only when data arrives should hold almost nothing
//! per idle connection; one that parks a buffer per connection holds the buffer size.
//! Kernel socket memory is not in RSS and not counted (it is the same for every server).
//!
//! The kernel module has no process: [`run_kernel`] measures it with the same connections,
//! in kernel memory: what the module itself allocated (`/sys/kernel/fastecho/mem_bytes`,
//! its per-connection state and echo buffers) and, for scale, the growth of the kernel's
//! whole slab (`Slab:` in `/proc/meminfo`), which also holds both ends' sockets.

use std::time::{Duration, Instant};

use super::loadgen;
use crate::error::{Context, Error, Result};
use ringecho_sys::epoll::{self as sys, Epoll};

/// The outcome.
#[derive(Debug, Clone, Copy)]
pub struct IdleResult {
    /// Connections that connected and stayed open.
    pub conns: usize,
    /// Server RSS before and with the connections open, KiB (for [`run_kernel`], the
    /// kernel memory its meter reads instead).
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    /// Connections that failed to connect.
    pub failed: usize,
}

impl IdleResult {
    /// RSS added per connection, bytes.
    pub fn bytes_per_conn(&self) -> f64 {
        (self.rss_after_kib.saturating_sub(self.rss_before_kib) * 1024) as f64
            / self.conns.max(1) as f64
    }
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_kib(&status, "VmRSS")
}

/// Where fastecho.ko publishes the bytes it has allocated now.
pub const KMOD_MEM_BYTES: &str = "/sys/kernel/fastecho/mem_bytes";

/// The value (KiB) of `key` (e.g. `Slab`, `VmRSS`) in a text of `Key: value kB` lines:
/// `/proc/meminfo`, `/proc/PID/status`.
pub fn parse_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The kernel's slab (`Slab:` in `/proc/meminfo`), KiB.
pub fn slab_kib() -> Option<u64> {
    parse_kib(&std::fs::read_to_string("/proc/meminfo").ok()?, "Slab")
}

/// What fastecho.ko has allocated now (its counter), KiB, rounded down.
pub fn kmod_kib() -> Option<u64> {
    let text = std::fs::read_to_string(KMOD_MEM_BYTES).ok()?;
    Some(text.trim().parse::<u64>().ok()? / 1024)
}

/// Idle-connection memory of the kernel module on `addr`, in kernel memory: the module's
/// own allocations and the whole slab's growth, in that order (same connections).
pub fn run_kernel(
    addr: std::net::SocketAddr,
    conns: usize,
    settle: Duration,
) -> Result<(IdleResult, IdleResult)> {
    let read = || -> Result<(u64, u64)> {
        let module = kmod_kib().ok_or_else(|| {
            Error::msg(format!(
                "cannot read {KMOD_MEM_BYTES}: is fastecho.ko loaded (and new enough)?"
            ))
        })?;
        let slab = slab_kib().ok_or_else(|| Error::msg("cannot read Slab from /proc/meminfo"))?;
        Ok((module, slab))
    };
    let mut before = (0, 0);
    let mut after = (0, 0);
    let r = hold(
        addr,
        conns,
        settle,
        || {
            before = read()?;
            Ok(before.0)
        },
        || {
            after = read()?;
            Ok(after.0)
        },
    )?;
    let slab = IdleResult {
        rss_before_kib: before.1,
        rss_after_kib: after.1,
        ..r
    };
    Ok((r, slab))
}

/// Open `conns` idle connections to `addr`, let the server settle for `settle`, and
/// measure `pid`'s RSS growth. Connections close when this returns.
pub fn run(
    addr: std::net::SocketAddr,
    pid: u32,
    conns: usize,
    settle: Duration,
) -> Result<IdleResult> {
    hold(
        addr,
        conns,
        settle,
        || {
            rss_kib(pid).ok_or_else(|| {
                Error::msg(format!(
                    "cannot read /proc/{pid}/status: is {pid} the server's pid?"
                ))
            })
        },
        || {
            rss_kib(pid).ok_or_else(|| {
                Error::msg(format!("the server (pid {pid}) went away during the run"))
            })
        },
    )
}

/// Read `before`, open the connections, wait, read `after` (both KiB).
fn hold(
    addr: std::net::SocketAddr,
    conns: usize,
    settle: Duration,
    before: impl FnOnce() -> Result<u64>,
    after: impl FnOnce() -> Result<u64>,
) -> Result<IdleResult> {
    crate::net::raise_nofile_limit();
    let before = before()?;
    let ep = Epoll::new().context("creating an epoll instance")?;
    let mut socks = Vec::with_capacity(conns);
    let mut failed = 0;
    for k in 0..conns {
        match loadgen::start_connect(addr) {
            Ok(s) => {
                ep.add(loadgen::sock_fd(&s), sys::OUT | sys::ET, k as u64)
                    .context("registering a connection")?;
                socks.push(s);
            }
            Err(_) => failed += 1,
        }
    }
    // Wait (bounded) until every connect has finished one way or the other.
    let mut events = sys::event_buffer(1024);
    let mut done = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while done < socks.len() && Instant::now() < deadline {
        done += ep.wait(&mut events, 100).context("epoll_wait")?;
    }
    let open = socks
        .iter()
        .filter(|s| matches!(s.take_error(), Ok(None)))
        .count();
    failed += socks.len() - open;
    std::thread::sleep(settle);
    let after = after()?;
    Ok(IdleResult {
        conns: open,
        rss_before_kib: before,
        rss_after_kib: after,
        failed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vmrss_and_meminfo() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t    6468 kB\nThreads:\t3\n";
        let meminfo = "MemTotal:        2014552 kB\nSlab:              51234 kB\nSReclaimable:      20000 kB\n";
        for (text, key, want) in [
            (status, "VmRSS", Some(6468)),
            ("Name: x\n", "VmRSS", None),
            (meminfo, "Slab", Some(51234)),
            (meminfo, "MemTotal", Some(2014552)),
            (meminfo, "Sla", None),
            (meminfo, "MemFree", None),
        ] {
            assert_eq!(parse_kib(text, key), want, "{key} in {text:?}");
        }
        let me = rss_kib(std::process::id()).expect("own rss");
        assert!(me > 0);
        assert!(slab_kib().expect("this kernel's slab") > 0);
    }

    #[test]
    fn per_connection_bytes() {
        let r = IdleResult {
            conns: 10_000,
            rss_before_kib: 6000,
            rss_after_kib: 6300,
            failed: 0,
        };
        assert!((r.bytes_per_conn() - 30.72).abs() < 0.01);
    }
}
