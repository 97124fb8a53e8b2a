//! Memory per idle connection: open N connections that never send, and read how much the
//! server process's resident memory grew (`VmRSS` in `/proc/PID/status`). An io_uring
//! server whose receives pick buffers only when data arrives should hold almost nothing
//! per idle connection; one that parks a buffer per connection holds the buffer size.
//! Kernel socket memory is not in RSS and not counted (it is the same for every server).

use std::time::{Duration, Instant};

use super::loadgen;
use crate::epoll::sys::{self, Epoll};
use crate::error::{Context, Error, Result};

/// The outcome.
#[derive(Debug, Clone, Copy)]
pub struct IdleResult {
    /// Connections that connected and stayed open.
    pub conns: usize,
    /// Server RSS before and with the connections open, KiB.
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
    parse_rss(&status)
}

/// The `VmRSS:` value (KiB) of a `/proc/PID/status` text.
pub fn parse_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Open `conns` idle connections to `addr`, let the server settle for `settle`, and
/// measure `pid`'s RSS growth. Connections close when this returns.
pub fn run(
    addr: std::net::SocketAddr,
    pid: u32,
    conns: usize,
    settle: Duration,
) -> Result<IdleResult> {
    crate::net::raise_nofile_limit();
    let before = rss_kib(pid).ok_or_else(|| {
        Error::msg(format!(
            "cannot read /proc/{pid}/status: is {pid} the server's pid?"
        ))
    })?;
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
    let after = rss_kib(pid)
        .ok_or_else(|| Error::msg(format!("the server (pid {pid}) went away during the run")))?;
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
    fn reads_vmrss() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t    6468 kB\nThreads:\t3\n";
        assert_eq!(parse_rss(status), Some(6468));
        assert_eq!(parse_rss("Name: x\n"), None);
        let me = rss_kib(std::process::id()).expect("own rss");
        assert!(me > 0);
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
