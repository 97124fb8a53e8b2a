//! The servers under test in `bench-all`: the userspace engines, started and stopped by
//! the harness (one worker each, pinned to CPU 0), and the kernel module when something
//! already answers on its address.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{Context, Error, Result};

/// A server under test: its name, address, and process (none for the module).
pub struct Target {
    /// `uring`, `epoll` or `kernel`: the name in every CSV row and chart legend.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where it serves UDP, if it does (the module is TCP only).
    pub udp: Option<SocketAddr>,
    /// The server process, which the harness stops on drop (none for the module).
    pub child: Option<Child>,
    /// Its start-up line, for the metadata.
    pub banner: String,
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            // SAFETY: kill(2) on our own child's pid; SIGTERM lets it close cleanly.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Target {
    /// The server process's pid, for its CPU time.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// Start `ringecho serve --engine NAME` on a free port, one worker pinned to CPU 0.
pub fn start_server(engine: &str) -> Result<Target> {
    let exe = std::env::current_exe().context("finding the ringecho binary")?;
    let mut child = Command::new(exe)
        .args([
            "serve",
            "--engine",
            engine,
            "--port",
            "0",
            "--threads",
            "1",
            "--pin",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting the {engine} server"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::msg("server stdout not captured"))?;
    let (tx, rx) = mpsc::channel();
    let drain = std::thread::Builder::new().spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(l)) = lines.next() {
            let _ = tx.send(l);
        }
        // Keep draining so the server never blocks on a full pipe.
        for _ in lines {}
    });
    if let Err(e) = drain {
        let _ = child.kill();
        let _ = child.wait();
        return Err(Error::from(e).context(format!("spawning the {engine} server's output reader")));
    }
    let banner = rx.recv_timeout(Duration::from_secs(10)).map_err(|_| {
        let _ = child.kill();
        Error::msg(format!("the {engine} server did not start"))
    })?;
    let addr = banner_addr(&banner, "tcp")
        .ok_or_else(|| Error::msg(format!("unexpected start-up line: {banner}")))?;
    Ok(Target {
        name: engine.into(),
        addr,
        udp: banner_addr(&banner, "udp"),
        child: Some(child),
        banner,
    })
}

/// The `PROTO` address of a start-up line (`listening on tcp A and udp B (...)`, or one
/// of them alone).
pub fn banner_addr(banner: &str, proto: &str) -> Option<SocketAddr> {
    let head = banner.split(" (").next()?;
    let (_, rest) = head.split_once(&format!("{proto} "))?;
    rest.split_whitespace().next()?.parse().ok()
}

/// The module, if something answers on its address.
pub fn kmod_target(addr: &str) -> Option<Target> {
    let a = crate::net::resolve(addr).ok()?;
    TcpStream::connect_timeout(&a, Duration::from_millis(300)).ok()?;
    Some(Target {
        name: "kernel".into(),
        addr: a,
        udp: None,
        child: None,
        banner: format!("fastecho.ko on {a}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_up_lines_name_each_protocol_address() {
        let both = "ringecho: listening on tcp 127.0.0.1:4000 and udp 127.0.0.1:4000 \
                    (engine uring, 1 worker; io_uring: multishot accept, no-sqarray)";
        assert_eq!(banner_addr(both, "tcp"), "127.0.0.1:4000".parse().ok());
        assert_eq!(banner_addr(both, "udp"), "127.0.0.1:4000".parse().ok());
        let udp = "ringecho: listening on udp [::1]:5 (engine epoll, 2 workers)";
        assert_eq!(banner_addr(udp, "udp"), "[::1]:5".parse().ok());
        assert_eq!(banner_addr(udp, "tcp"), None);
        let tcp = "ringecho: listening on tcp 127.0.0.1:7 (engine epoll; udp off)";
        assert_eq!(
            banner_addr(tcp, "udp"),
            None,
            "only the part before the features"
        );
    }
}
