//! Server behaviour that is not echo conformance: start-up line, shutdown, address
//! families, admission control, stats, and io_uring being unavailable.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{assert_one_line_error, bin, echo_once, payload, run_bounded, Server, ENGINES};

#[test]
fn banner_names_engine_and_features() {
    let s = Server::start(&["--threads", "1"]);
    assert!(s.banner.contains("engine uring"), "{}", s.banner);
    assert!(s.banner.contains("multishot recv"), "{}", s.banner);
    let s = Server::start(&["--threads", "1", "--compat", "6.1"]);
    assert!(s.banner.contains("feature set 6.1"), "{}", s.banner);
    assert!(!s.banner.contains("no-sqarray"), "{}", s.banner);
    // The environment picks the feature set too (CI runs the whole suite that way).
    let out = run_bounded(
        Command::new(bin())
            .args(["serve", "--port", "0"])
            .env("RINGECHO_COMPAT", "bogus"),
        Duration::from_secs(10),
    );
    common::assert_usage_error(
        &out,
        "invalid value 'bogus' for '--compat",
        &["[possible values: auto, 6.1]"],
    );
    let s = Server::start(&["--threads", "1", "--engine", "epoll"]);
    assert!(s.banner.contains("engine epoll"), "{}", s.banner);
}

#[test]
fn sigterm_stops_cleanly_within_a_second_with_connections_open() {
    for engine in ENGINES {
        let mut s = Server::start(&[engine, &["--threads", "2"]].concat());
        let addr = s.connect_addr();
        // Idle connections, one that echoed, and one mid-way through a big transfer.
        let idle: Vec<TcpStream> = (0..50)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        assert_eq!(echo_once(addr, b"ping"), b"ping");
        let mut busy = TcpStream::connect(addr).expect("connect");
        busy.write_all(&payload(1 << 20, 7)).expect("write");
        let (status, took) = s.terminate(Duration::from_secs(3));
        assert!(status.success(), "{engine:?}: exit {status:?}");
        assert!(took < Duration::from_secs(1), "{engine:?}: took {took:?}");
        // Every connection was closed by the server.
        for mut c in idle {
            c.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let mut b = [0u8; 1];
            // EOF or a reset: a read timeout would mean the server silently kept it.
            assert!(
                closed_by_peer(c.read(&mut b)),
                "{engine:?}: idle connection still open"
            );
        }
        assert!(s.stderr().contains("SIGTERM"));
    }
}

#[test]
fn ipv6_loopback() {
    for engine in ENGINES {
        let s = Server::start(&[engine, &["--bind", "::1", "--threads", "1"]].concat());
        assert!(s.addr.is_ipv6(), "{}", s.banner);
        let data = payload(200_000, 3);
        assert_eq!(echo_once(s.addr, &data), data, "{engine:?}");
        // A specific IPv6 address does not also answer on IPv4.
        let v4: SocketAddr = format!("127.0.0.1:{}", s.addr.port())
            .parse()
            .expect("addr");
        assert!(
            TcpStream::connect(v4).is_err(),
            "{engine:?} answers on {v4}"
        );
    }
}

#[test]
fn dual_stack_wildcard_answers_ipv4_and_ipv6() {
    for engine in ENGINES {
        let s = Server::start(&[engine, &["--bind", "::", "--threads", "2"]].concat());
        let port = s.addr.port();
        for host in ["127.0.0.1", "[::1]"] {
            let addr: SocketAddr = format!("{host}:{port}").parse().expect("addr");
            let data = payload(10_000, 11);
            assert_eq!(echo_once(addr, &data), data, "{engine:?} via {host}");
        }
    }
}

#[test]
fn max_conns_refuses_beyond_the_limit_and_counts_it() {
    for engine in ENGINES {
        let s = Server::start(&[engine, &["--max-conns", "3", "--stats", "1"]].concat());
        let addr = s.connect_addr();
        let mut held: Vec<TcpStream> = (0..3)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        // Make sure all three are admitted before the fourth arrives.
        for (i, c) in held.iter_mut().enumerate() {
            c.write_all(&[i as u8]).expect("write");
            let mut b = [0u8; 1];
            c.read_exact(&mut b).expect("echo");
            assert_eq!(b[0], i as u8);
        }
        let mut extra = TcpStream::connect(addr).expect("the kernel completes the handshake");
        extra
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let _ = extra.write_all(b"x");
        let mut b = [0u8; 1];
        assert!(
            closed_by_peer(extra.read(&mut b)),
            "{engine:?}: 4th connection was served"
        );
        let line = s
            .wait_line("1 refused", Duration::from_secs(5))
            .unwrap_or_else(|| panic!("{engine:?}: no stats line counting the refusal"));
        assert!(line.contains("3 open"), "{line}");
        // Closing one admits a new one.
        drop(held.pop());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut c = TcpStream::connect(addr).expect("connect");
            c.set_read_timeout(Some(Duration::from_secs(2)))
                .expect("timeout");
            let _ = c.write_all(b"y");
            let mut b = [0u8; 1];
            if matches!(c.read(&mut b), Ok(1)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{engine:?}: no slot freed after a close"
            );
        }
    }
}

#[test]
fn tiny_buffer_pool_still_echoes_everything() {
    // 8 buffers of 64 bytes shared by 64 connections: receives starve (ENOBUFS) and
    // pause constantly; every byte must still come back, in order.
    for engine in ENGINES {
        let pool = [
            "--hold-budget",
            "512",
            "--buffer-size",
            "64",
            "--conn-buffers",
            "2",
        ];
        let s = Server::one_worker(engine, &pool);
        let addr = s.connect_addr();
        let workers: Vec<_> = (0..64u64)
            .map(|i| {
                std::thread::spawn(move || {
                    let data = payload(20_000 + i as usize * 37, i);
                    (echo_once(addr, &data) == data, i)
                })
            })
            .collect();
        for w in workers {
            let (ok, i) = w.join().expect("client thread");
            assert!(ok, "{engine:?}: connection {i} not byte-exact");
        }
        if engine[1] == "uring" {
            let line = s
                .wait_line("stats:", Duration::from_secs(5))
                .expect("stats line");
            assert!(!line.contains(" 0 starved"), "pool never ran dry? {line}");
        }
    }
}

#[test]
fn io_uring_unavailable_is_one_line_naming_epoll() {
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "--port", "0"]);
    // SAFETY: the closure runs in the forked child before exec and only makes two
    // async-signal-safe syscalls (prctl) on data it owns.
    unsafe {
        cmd.pre_exec(deny_io_uring_setup);
    }
    let out = run_bounded(&mut cmd, Duration::from_secs(20));
    assert_one_line_error(&out, "use --engine epoll");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("io_uring is unavailable"), "{err}");
}

/// A seccomp filter making io_uring_setup fail with EPERM, as Docker's default profile
/// or `kernel.io_uring_disabled=2` would.
fn deny_io_uring_setup() -> std::io::Result<()> {
    const IO_URING_SETUP: u32 = 425;
    let filter = [
        // Load the syscall number (offset 0 of struct seccomp_data).
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: IO_URING_SETUP,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points at `filter`, both alive for the duration of the call; the
    // kernel copies the program.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const libc::sock_fprog,
            ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[test]
fn udp_rate_limit_drops_the_excess_per_source_and_counts_it() {
    for engine in ["uring", "epoll"] {
        let s = Server::start(&[
            "--engine",
            engine,
            "--threads",
            "1",
            "--udp-rate",
            "10",
            "--stats",
            "1",
        ]);
        let target = s.connect_addr();
        let a = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        a.set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        for i in 0..50u8 {
            a.send_to(&[i], target).expect("send");
        }
        let mut got = 0;
        let mut buf = [0u8; 16];
        while a.recv_from(&mut buf).is_ok() {
            got += 1;
        }
        // A second's worth of burst (10), maybe one more token refilled meanwhile.
        assert!((10..=12).contains(&got), "{engine}: {got} echoes of 50");
        // The limit is per source: another address is not affected.
        let b = std::net::UdpSocket::bind("127.0.0.2:0").expect("bind");
        b.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        b.send_to(b"other", target).expect("send");
        let (n, from) = b.recv_from(&mut buf).expect("echo to another source");
        assert_eq!((&buf[..n], from), (&b"other"[..], target));
        // Counters are cumulative: read stats lines until the drops show (bounded).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let (mut limited, mut line) = (0u64, String::new());
        while limited < 38 && std::time::Instant::now() < deadline {
            line = s
                .wait_line("rate-limited", Duration::from_secs(2))
                .expect("stats line");
            limited = line
                .split(" rate-limited")
                .next()
                .and_then(|l| l.rsplit(", ").next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no count in {line}"));
        }
        assert!(limited >= 38, "{engine}: {line}");
    }
}

/// Did a read see the peer close (EOF) or reset the connection? A timeout is neither.
fn closed_by_peer(r: std::io::Result<usize>) -> bool {
    match r {
        Ok(n) => n == 0,
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
        ),
    }
}
