//! Hostile TCP clients against the real binary, on both engines and both io_uring
//! feature sets: clients that write and never read must not starve anyone else, must
//! not grow the server past its hold budget, and are shed or timed out (counted); at the
//! open-file limit new connections are refused at once (logged), and the server keeps
//! serving.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use common::{payload, Server, ENGINES};
use socket2::{Domain, Protocol, Socket, Type};

/// A client that writes until its socket blocks and never reads. A 4 KiB receive buffer
/// makes the server's echo back up into the server quickly.
fn non_reader(addr: SocketAddr) -> Socket {
    let s =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).expect("socket");
    s.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    s.connect_timeout(&addr.into(), Duration::from_secs(5))
        .expect("non-reader connects");
    s.set_nonblocking(true).expect("non-blocking");
    s
}

/// Write to every non-reader until all of them block (or are reset by the server),
/// bounded in bytes and time. Returns the bytes written.
fn push_until_blocked(socks: &[Socket], limit: Duration) -> u64 {
    let chunk = payload(64 << 10, 7);
    let start = Instant::now();
    let mut total = 0u64;
    let mut quiet_rounds = 0;
    while quiet_rounds < 3 && start.elapsed() < limit {
        let mut wrote = 0u64;
        for s in socks {
            for _ in 0..64 {
                match (&*s).write(&chunk) {
                    Ok(n) => wrote += n as u64,
                    Err(_) => break, // blocked, or reset by the server: both fine here
                }
            }
        }
        total += wrote;
        quiet_rounds = if wrote == 0 { quiet_rounds + 1 } else { 0 };
        std::thread::sleep(Duration::from_millis(50));
    }
    total
}

/// A fresh client's 1,000-byte echo, byte-exact; returns how long it took.
fn fresh_echo(addr: SocketAddr, seed: u64, limit: Duration) -> Result<Duration, String> {
    let t0 = Instant::now();
    let data = payload(1000, seed);
    let mut s = TcpStream::connect_timeout(&addr, limit).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(limit)).map_err(|e| e.to_string())?;
    s.write_all(&data).map_err(|e| format!("write: {e}"))?;
    let mut got = vec![0u8; data.len()];
    s.read_exact(&mut got)
        .map_err(|e| format!("no echo within {limit:?}: {e}"))?;
    if got != data {
        return Err("echo differs".into());
    }
    Ok(t0.elapsed())
}

/// The named counter from the newest `--stats` line.
fn counter(line: &str, name: &str) -> u64 {
    let words: Vec<&str> = line.split([' ', ',']).filter(|w| !w.is_empty()).collect();
    words
        .windows(2)
        .find(|w| w[1] == name)
        .and_then(|w| w[0].parse().ok())
        .unwrap_or_else(|| panic!("no '{name}' in: {line}"))
}

/// The latest `--stats` line printed within `limit`.
fn latest_stats(s: &Server, limit: Duration) -> String {
    let mut last = s.wait_line("stats:", limit).expect("a --stats line");
    while let Ok(l) = s.lines.recv_timeout(Duration::from_millis(10)) {
        if l.starts_with("stats:") {
            last = l;
        }
    }
    last
}

/// Has the peer reset or closed `s`? Looks without reading.
fn hung_up(s: &Socket, wait: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the call's duration; the socket outlives it.
    let n = unsafe { libc::poll(&mut pfd, 1, wait.as_millis() as i32) };
    n > 0 && pfd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// 200 clients that never read (half of them half-closed), against a worker whose
/// budget 16 of them fill: fresh
/// clients are still echoed, some non-readers are shed (counted), and the server's
/// memory stays within the budget.
#[test]
fn non_readers_neither_starve_fresh_clients_nor_grow_the_server() {
    const BUDGET: u64 = 4 << 20;
    for engine in ENGINES {
        let s = Server::one_worker(engine, &["--proto", "tcp", "--hold-budget", "4M"]);
        let addr = s.connect_addr();
        fresh_echo(addr, 1, Duration::from_secs(5)).expect("echo before the attack");
        let rss_before = rss_kib(s.child.id());

        let attackers: Vec<Socket> = (0..200).map(|_| non_reader(addr)).collect();
        let pushed = push_until_blocked(&attackers, Duration::from_secs(20));
        // Half of them also half-close: the server then owes them an echo it can never
        // deliver, which must not keep what it holds either.
        for a in attackers.iter().step_by(2) {
            let _ = a.shutdown(std::net::Shutdown::Write);
        }
        // While the attack settles: served, within a few grace periods.
        let during = fresh_echo(addr, 2, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{engine:?}: fresh client during the attack: {e}"));
        // Settled (nobody shed for two --stats periods: the non-readers left are parked
        // within the budget): served at once, every time.
        let settle = Instant::now();
        let mut shed = u64::MAX;
        while settle.elapsed() < Duration::from_secs(20) {
            let now = counter(&latest_stats(&s, Duration::from_secs(3)), "shed");
            std::thread::sleep(Duration::from_millis(1100));
            if now == shed && now == counter(&latest_stats(&s, Duration::from_secs(3)), "shed") {
                break;
            }
            shed = now;
        }
        let mut worst = Duration::ZERO;
        for seed in 3..8 {
            let t = fresh_echo(addr, seed, Duration::from_secs(5)).unwrap_or_else(|e| {
                panic!("{engine:?}: fresh client {seed} beside non-readers: {e}")
            });
            worst = worst.max(t);
        }
        assert!(
            worst < Duration::from_secs(1),
            "{engine:?}: fresh echo took {worst:?} beside settled non-readers"
        );
        let grown = rss_kib(s.child.id()).saturating_sub(rss_before) << 10;
        let stats = latest_stats(&s, Duration::from_secs(3));
        eprintln!(
            "{engine:?}: pushed {} MiB from 200 non-readers; fresh echo {during:?} during, \
             worst {worst:?} after; RSS grew {} KiB; {stats}",
            pushed >> 20,
            grown >> 10
        );
        assert!(
            counter(&stats, "shed") > 0,
            "{engine:?}: nobody shed: {stats}"
        );
        // The budget, plus what the epoll engine keeps besides it (a 64 KiB read buffer
        // and 16 recycled pending buffers of at most 320 KiB), plus slack for the
        // allocator and the connection tables.
        let bound = BUDGET + (64 << 10) + 16 * (320 << 10) + (4 << 20);
        assert!(
            grown <= bound,
            "{engine:?}: RSS grew {grown} B with 200 non-readers, over {bound} B"
        );

        drop(attackers);
        std::thread::sleep(Duration::from_millis(300));
        let after = fresh_echo(addr, 9, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{engine:?}: after the non-readers left: {e}"));
        assert!(
            after < Duration::from_secs(1),
            "{engine:?}: {after:?} after"
        );
    }
}

/// A client that stops reading with bytes owed to it is closed after --stall-timeout,
/// counted as stalled, even when the server has memory to spare.
#[test]
fn a_stalled_echo_is_closed_after_the_stall_timeout() {
    for engine in ENGINES {
        let s = Server::one_worker(engine, &["--proto", "tcp", "--stall-timeout", "1"]);
        let addr = s.connect_addr();
        let victim = non_reader(addr);
        push_until_blocked(std::slice::from_ref(&victim), Duration::from_secs(10));
        // An idle connection holds nothing and is never timed out.
        let idle = TcpStream::connect(addr).expect("idle connects");
        let t0 = Instant::now();
        let mut closed = false;
        // Not reading (that would be progress): wait for the reset or FIN to show.
        while !closed && t0.elapsed() < Duration::from_secs(8) {
            closed = hung_up(&victim, Duration::from_millis(100));
        }
        assert!(
            closed,
            "{engine:?}: stalled connection still open after 8 s"
        );
        // The next --stats line counts it.
        std::thread::sleep(Duration::from_millis(1100));
        let stats = latest_stats(&s, Duration::from_secs(3));
        assert!(counter(&stats, "stalled") >= 1, "{engine:?}: {stats}");
        assert_eq!(
            counter(&stats, "shed"),
            0,
            "{engine:?}: no pressure: {stats}"
        );
        let mut idle = idle;
        idle.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        idle.write_all(b"still here").expect("idle writes");
        let mut back = [0u8; 10];
        idle.read_exact(&mut back).expect("idle is still served");
        assert_eq!(&back, b"still here");
    }
}

/// With 64 descriptors, connections beyond what the server can hold are closed at once
/// (never left connected and unserved), a line says so once, and it keeps serving.
#[test]
fn at_the_descriptor_limit_new_connections_are_refused_at_once() {
    for engine in ENGINES {
        let mut s = Server::one_worker_with(engine, &["--proto", "tcp"], |cmd| {
            // SAFETY: runs in the forked child before exec and makes one
            // async-signal-safe syscall on a local struct.
            unsafe {
                cmd.pre_exec(|| {
                    let lim = libc::rlimit {
                        rlim_cur: 64,
                        rlim_max: 64,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        });
        let addr = s.connect_addr();
        let mut conns = Vec::new();
        for _ in 0..100 {
            let c = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
            c.set_read_timeout(Some(Duration::from_secs(3)))
                .expect("timeout");
            conns.push(c);
        }
        // Each connection is either served (echoes) or already closed: none hangs.
        let (mut served, mut refused) = (0, 0);
        for (i, c) in conns.iter().enumerate() {
            let mut c = c;
            let msg = format!("hello {i:03}");
            let _ = c.write_all(msg.as_bytes());
            let mut back = [0u8; 9];
            match c.read_exact(&mut back) {
                Ok(()) => {
                    assert_eq!(&back, msg.as_bytes());
                    served += 1;
                }
                Err(e) => {
                    assert!(
                        !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                        "{engine:?}: connection {i} left hanging"
                    );
                    refused += 1;
                }
            }
        }
        assert!(served >= 20, "{engine:?}: only {served} served");
        assert!(refused > 0, "{engine:?}: the limit never hit");
        let stats = latest_stats(&s, Duration::from_secs(3));
        assert!(counter(&stats, "refused") >= refused, "{engine:?}: {stats}");
        drop(conns);
        std::thread::sleep(Duration::from_millis(300));
        fresh_echo(addr, 11, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{engine:?}: after the limit: {e}"));
        s.terminate(Duration::from_secs(5));
        let err = s.stderr();
        let lines = err.lines().filter(|l| l.contains("refused")).count();
        assert_eq!(lines, 1, "{engine:?}: one rate-limited line, got:\n{err}");
        eprintln!("{engine:?}: {served} served, {refused} refused; {err}");
    }
}
