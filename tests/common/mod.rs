//! Shared test harness: start the real `ringecho` binary on a free port, find the address
//! it announces, and stop it. Every wait is bounded.

#![allow(dead_code)]

pub mod netns;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Every engine and io_uring feature set the tests cover.
pub const ENGINES: [&[&str]; 3] = [
    &["--engine", "uring"],
    &["--engine", "uring", "--compat", "6.1"],
    &["--engine", "epoll"],
];

/// Run `f` once per engine of [`ENGINES`], each on its own thread (such tests wait on
/// timers and the network, not the CPU); a panic in any is this test's.
pub fn each_engine(f: impl Fn(&[&str]) + Sync) {
    std::thread::scope(|s| {
        let hs: Vec<_> = ENGINES.iter().map(|e| s.spawn(|| f(e))).collect();
        for h in hs {
            h.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        }
    });
}

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ringecho")
}

/// A running `ringecho serve`, stopped (SIGKILL if need be) on drop.
pub struct Server {
    pub child: Child,
    /// The TCP address it announced (for `--proto udp`, the UDP one).
    pub addr: SocketAddr,
    /// The UDP address it announced, if it serves UDP.
    pub udp: Option<SocketAddr>,
    /// The start-up line.
    pub banner: String,
    /// Later stdout lines (e.g. `--stats`), as they arrive.
    pub lines: mpsc::Receiver<String>,
}

impl Server {
    /// `ringecho serve --port 0 ARGS...`; waits up to 10 s for the start-up line.
    pub fn start(args: &[&str]) -> Server {
        Server::start_with(args, |_| {})
    }

    /// One worker of `engine` with `--stats 1`, then `more`.
    pub fn one_worker(engine: &[&str], more: &[&str]) -> Server {
        Server::one_worker_with(engine, more, |_| {})
    }

    /// As [`Server::one_worker`], with `setup` applied to the command first.
    pub fn one_worker_with(
        engine: &[&str],
        more: &[&str],
        setup: impl FnOnce(&mut Command),
    ) -> Server {
        let args = [engine, &["--threads", "1", "--stats", "1"], more].concat();
        Server::start_with(&args, setup)
    }

    /// As [`Server::start`], with `setup` applied to the command first (limits, say).
    pub fn start_with(args: &[&str], setup: impl FnOnce(&mut Command)) -> Server {
        let mut cmd = Command::new(bin());
        setup(&mut cmd);
        Server::start_cmd(cmd, args)
    }

    /// The same inside network namespace `ns`.
    pub fn start_in(ns: &netns::Netns, args: &[&str]) -> Server {
        Server::start_cmd(ns.command(bin()), args)
    }

    fn start_cmd(mut cmd: Command, args: &[&str]) -> Server {
        let mut child = cmd
            .arg("serve")
            .args(["--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringecho serve");
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let banner = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("wait");
                panic!(
                    "server {args:?} printed no start-up line; stderr: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        };
        let tcp = ringecho_server::server::announced(&banner, "tcp");
        let udp = ringecho_server::server::announced(&banner, "udp");
        let addr = tcp
            .or(udp)
            .unwrap_or_else(|| panic!("unexpected start-up line: {banner}"));
        Server {
            child,
            addr,
            udp,
            banner,
            lines: rx,
        }
    }

    /// The UDP address it announced; panics if it serves no UDP.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp
            .unwrap_or_else(|| panic!("no udp address in: {}", self.banner))
    }

    /// The UDP address to send to (a wildcard bind is reached through loopback).
    pub fn udp_connect_addr(&self) -> SocketAddr {
        loopback_for(self.udp_addr())
    }

    /// The address to connect to (a wildcard bind is reached through loopback).
    pub fn connect_addr(&self) -> SocketAddr {
        loopback_for(self.addr)
    }

    /// Send SIGTERM and wait up to `limit` for the exit; returns the status and how long
    /// the server took.
    pub fn terminate(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return (status, start.elapsed());
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                panic!("server did not exit within {limit:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything the server wrote to stderr (after it exited).
    pub fn stderr(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }

    /// Wait up to `limit` for a stdout line containing `needle`.
    pub fn wait_line(&self, needle: &str, limit: Duration) -> Option<String> {
        let end = Instant::now() + limit;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return Some(l),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    }
}

/// `a`, with a wildcard IP replaced by the loopback address of its family.
fn loopback_for(mut a: SocketAddr) -> SocketAddr {
    if a.ip().is_unspecified() {
        a.set_ip(if a.is_ipv4() {
            "127.0.0.1".parse().expect("ip")
        } else {
            "::1".parse().expect("ip")
        });
    }
    a
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `ringecho ARGS...` to completion (20 s at most): for the commands that must
/// fail at once, or finish quickly.
pub fn ringecho(args: &[&str]) -> Output {
    run_bounded(Command::new(bin()).args(args), Duration::from_secs(20))
}

/// Run `ringecho check ADDR ARGS...` with a hard time limit.
pub fn check(addr: SocketAddr, args: &[&str]) -> Output {
    run_bounded(
        Command::new(bin())
            .arg("check")
            .arg(addr.to_string())
            .args(args),
        Duration::from_secs(240),
    )
}

/// Run `ringecho check --udp ADDR ARGS...` with a hard time limit.
pub fn check_udp(addr: SocketAddr, args: &[&str]) -> Output {
    run_bounded(
        Command::new(bin())
            .args(["check", "--udp"])
            .arg(addr.to_string())
            .args(args),
        Duration::from_secs(120),
    )
}

/// `ringecho check --udp ADDR ARGS...` inside network namespace `ns`.
pub fn check_udp_in(ns: &netns::Netns, addr: SocketAddr, args: &[&str]) -> Output {
    run_bounded(
        ns.command(bin())
            .args(["check", "--udp"])
            .arg(addr.to_string())
            .args(args),
        Duration::from_secs(120),
    )
}

/// Run a command to completion, killing it past `limit`.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            panic!("command ran past {limit:?}: {cmd:?}");
        }
    }
}

/// Echo `data` through one connection (a writer thread, so large payloads cannot deadlock
/// on socket buffers) and return what came back before the server closed.
pub fn echo_once(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut w = s.try_clone().expect("clone");
    let payload = data.to_vec();
    let writer = std::thread::spawn(move || {
        w.write_all(&payload).expect("write");
        w.shutdown(std::net::Shutdown::Write).expect("shutdown");
    });
    let mut got = Vec::with_capacity(data.len());
    (&s).read_to_end(&mut got).expect("read echo");
    writer.join().expect("writer");
    got
}

/// Deterministic pseudo-random bytes with plenty of NULs.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x.is_multiple_of(5) {
                0
            } else {
                x as u8
            }
        })
        .collect()
}

/// Assert an output has exactly one stderr line, no panic text, and a failing status.
pub fn assert_one_line_error(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got {:?}",
        out.status
    );
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err:?}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "panic: {err}"
    );
    assert!(err.contains(needle), "stderr {err:?} lacks {needle:?}");
}

/// Assert a usage error as clap reports it through ringecho: exit code 2, no panic, a
/// first line `ringecho: ...` containing `needle`, then exactly the indented `details`
/// lines clap adds (possible values, a "did you mean" tip), in order.
pub fn assert_usage_error(out: &Output, needle: &str, details: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit status for {err:?}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "panic: {err}"
    );
    let lines: Vec<&str> = err.trim_end().lines().collect();
    let first = lines.first().copied().unwrap_or("");
    assert!(first.starts_with("ringecho: "), "stderr {err:?}");
    assert!(
        first.contains(needle),
        "first line {first:?} lacks {needle:?}"
    );
    let got: Vec<&str> = lines[1..]
        .iter()
        .map(|l| {
            l.strip_prefix("  ")
                .unwrap_or_else(|| panic!("unindented {l:?} in {err:?}"))
        })
        .collect();
    assert_eq!(got, details, "detail lines of {err:?}");
}
