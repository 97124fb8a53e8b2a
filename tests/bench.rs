//! The load generator against real servers and against broken ones: a clean run reports
//! no errors; wrong bytes fail the run, stalls make the measurement invalid (bench-all's
//! one rule), and neither is ever counted as an echo.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{bin, run_bounded, Server};

/// `ringecho bench WORKLOAD ADDR` with a short window (`timing`), then `extra`.
fn bench_run(workload: &str, addr: SocketAddr, timing: &[&str], extra: &[&str]) -> Output {
    run_bounded(
        Command::new(bin())
            .args(["bench", workload, &addr.to_string()])
            .args(timing)
            .args(extra),
        Duration::from_secs(60),
    )
}

fn bench(addr: SocketAddr, extra: &[&str]) -> Output {
    bench_run(
        "throughput",
        addr,
        &["--secs", "1", "--warmup", "0.5"],
        extra,
    )
}

#[test]
fn clean_runs_against_both_engines_report_every_field() {
    for engine in ["uring", "epoll"] {
        let s = Server::start(&["--engine", engine, "--threads", "1"]);
        let pid = s.child.id().to_string();
        let out = bench(
            s.connect_addr(),
            &["--conns", "50", "--size", "512", "--server-pid", &pid],
        );
        let text = clean_report(engine, &out);
        assert!(text.contains("echoes/s"), "{engine}: {text}");
    }
}

/// A run that passed with no error and reported every figure: the latency tail, and the
/// CPU of the machine, the load generator and the server.
fn clean_report(engine: &str, out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{engine}: {text}");
    for field in [
        "errors: none",
        "p99.9",
        "machine",
        "client",
        "server",
        "% of one CPU",
    ] {
        assert!(text.contains(field), "{engine}: no {field:?} in {text}");
    }
    text
}

#[test]
fn ten_thousand_connections_from_two_threads() {
    let s = Server::start(&["--threads", "1"]);
    let out = bench(s.connect_addr(), &["--conns", "10000", "--threads", "2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("10000 conns x 64 B, 2 load thread(s)"),
        "{text}"
    );
    assert!(text.contains("errors: none"), "{text}");
}

/// A server that echoes, but flips one bit in the 100th byte of every connection.
fn corrupting_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 4096];
                let mut total = 0usize;
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    if (total..total + n).contains(&100) {
                        buf[100 - total] ^= 1;
                    }
                    total += n;
                    if s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn wrong_bytes_are_reported_and_fail_the_run() {
    let out = bench(corrupting_server(), &["--conns", "8", "--size", "64"]);
    failed_saying(&out, &["ERRORS", "8 wrong bytes"]);
}

/// A run that failed and said each of `says` on stdout; returns what it said.
fn failed_saying(out: &Output, says: &[&str]) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "{text}");
    for s in says {
        assert!(text.contains(s), "no {s:?} in {text}");
    }
    text
}

/// A server that accepts 4 connections and never answers, holding them for 10 s.
fn silent_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        let conns: Vec<_> = l.incoming().take(4).collect();
        std::thread::sleep(Duration::from_secs(10));
        drop(conns);
    });
    addr
}

#[test]
fn a_stalling_server_is_reported_not_counted() {
    let out = bench(silent_server(), &["--conns", "4"]);
    // Both reasons, whatever else a busy host adds (a CPU-wait reason goes between).
    failed_saying(
        &out,
        &[
            "stalled: 4 connections made no progress",
            "INVALID: no echo completed; ",
            "; 4 connections stalled for the whole window",
        ],
    );
}

#[test]
fn burst_releases_every_thread_and_checks_the_echo() {
    let s = Server::start(&["--engine", "epoll", "--threads", "1"]);
    let csv = std::env::temp_dir().join(format!("ringecho-burst-{}.csv", std::process::id()));
    let out = run_bounded(
        Command::new(bin())
            .args(["bench", "burst", &s.connect_addr().to_string()])
            .args(["--threads", "200", "--rounds", "2", "--csv"])
            .arg(&csv),
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("response p50"), "{text}");
    let rows = std::fs::read_to_string(&csv).expect("csv");
    assert_eq!(rows.lines().count(), 1 + 400, "header + 200 x 2");
    let _ = std::fs::remove_file(&csv);
    // A server that goes away after the start-up probe: every connection fails (refused,
    // or reset in the closed listener's queue), and the run says so. (Nobody listening
    // at all is one line before the run: tests/cli.rs.)
    drop(s);
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let free = l.local_addr().expect("port");
    let gone = std::thread::spawn(move || {
        let probe = l.accept();
        drop(l);
        drop(probe);
    });
    let out = run_bounded(
        Command::new(bin()).args([
            "bench",
            "burst",
            &free.to_string(),
            "--threads",
            "10",
            "--rounds",
            "1",
        ]),
        Duration::from_secs(30),
    );
    let _ = gone.join();
    failed_saying(&out, &["10 connections failed"]);
}

fn latency(addr: SocketAddr, extra: &[&str]) -> Output {
    bench_run("latency", addr, &["--secs", "1", "--warmup", "0.3"], extra)
}

/// An open-loop run at 2,000/s for 1 s passed with all 2,000 messages due in the window
/// answered (none `missed`: "unfinished" for TCP, "lost (0.000%)" for UDP), and reported
/// both latencies.
fn open_loop_kept_2000(engine: &str, out: &Output, missed: &str) {
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{engine}: {text}");
    assert!(
        text.contains(&format!(
            "of 2000 scheduled; 0 of 2000 due in the window {missed}"
        )),
        "{engine}: {text}"
    );
    for field in ["corrected   p50", "uncorrected p50", "errors: none"] {
        assert!(text.contains(field), "{engine}: no {field:?} in {text}");
    }
}

#[test]
fn open_loop_keeps_the_rate_and_reports_both_latencies() {
    for engine in ["uring", "epoll"] {
        let s = Server::start(&["--engine", engine, "--threads", "1"]);
        let out = latency(s.connect_addr(), &["--rate", "2000", "--conns", "20"]);
        // 2,000/s for 1 s: exactly 2,000 messages due in the window, all answered.
        open_loop_kept_2000(engine, &out, "unfinished");
    }
}

#[test]
fn open_loop_catches_wrong_bytes_and_a_silent_server() {
    let out = latency(
        corrupting_server(),
        &["--rate", "500", "--conns", "4", "--size", "256"],
    );
    failed_saying(&out, &["4 wrong bytes"]);

    // Accepts and never answers: nothing finishes, and the corrected latency still
    // shows how long the messages waited instead of leaving them out.
    let out = latency(silent_server(), &["--rate", "100", "--conns", "4"]);
    // No echo is a failure.
    let text = failed_saying(
        &out,
        &[
            "100 of 100 due in the window unfinished",
            "rate was not kept",
        ],
    );
    // "corrected   p50 1.27 s p90 ...": a number and its unit.
    let p50 = text
        .split("corrected   p50 ")
        .nth(1)
        .and_then(|r| {
            let mut w = r.split_whitespace();
            let v = w.next()?.parse::<f64>().ok()?;
            let scale = match w.next()? {
                "µs" => 1.0,
                "ms" => 1e3,
                "s" => 1e6,
                _ => return None,
            };
            Some(v * scale)
        })
        .expect("corrected p50");
    assert!(
        p50 > 500_000.0,
        "waits of 0.5 s and more are recorded: {text}"
    );
}

#[test]
fn idle_connections_cost_the_uring_server_almost_no_memory() {
    for engine in ["uring", "epoll"] {
        let s = Server::start(&["--engine", engine, "--threads", "1"]);
        let out = run_bounded(
            Command::new(bin())
                .args(["bench", "idle", &s.connect_addr().to_string()])
                .args(["--conns", "3000", "--server-pid", &s.child.id().to_string()]),
            Duration::from_secs(60),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{engine}: {text}");
        let per: f64 = text
            .split(": ")
            .last()
            .and_then(|t| t.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no bytes per connection in {text}"));
        // Receives take buffers only when data arrives: an idle connection holds none.
        // (Page-granular RSS: one page is about 1 byte per connection here.)
        assert!(
            per < 1024.0,
            "{engine}: {per} bytes per idle connection: {text}"
        );
    }
}

#[test]
fn bad_arguments_are_one_line_errors() {
    let out = run_bounded(
        Command::new(bin()).args(["bench", "throughput", "127.0.0.1:1", "--secs=-3"]),
        Duration::from_secs(10),
    );
    common::assert_one_line_error(&out, "--secs");
    let out = run_bounded(
        Command::new(bin()).args(["bench", "latency", "127.0.0.1:1", "--rate", "0"]),
        Duration::from_secs(10),
    );
    common::assert_one_line_error(&out, "--rate");
    let out = run_bounded(
        Command::new(bin()).args(["bench-all", "--client-threads", "0"]),
        Duration::from_secs(10),
    );
    common::assert_one_line_error(&out, "--client-threads");
    for (args, needle) in [
        (&["--size", "8"][..], "--size"),
        (&["--sockets", "0"][..], "--sockets"),
        (&["--window", "4", "--rate", "100"][..], "--window"),
        (&["--rate", "0"][..], "--rate"),
        (&["--max-loss", "101"][..], "--max-loss"),
        (&["--timeout", "0"][..], "--timeout"),
        (&["--sockets", "1000", "--window", "1000"][..], "in flight"),
    ] {
        let out = run_bounded(
            Command::new(bin())
                .args(["bench", "udp", "127.0.0.1:1"])
                .args(args),
            Duration::from_secs(10),
        );
        common::assert_one_line_error(&out, needle);
    }
}

fn udp_bench(addr: SocketAddr, extra: &[&str]) -> Output {
    let timing = ["--secs", "1", "--warmup", "0.3", "--threads", "1"];
    bench_run("udp", addr, &timing, extra)
}

/// The number just before the first `after` in `text` ("12 lost (" with after = " lost (").
fn number_before(text: &str, after: &str) -> u64 {
    let i = text
        .find(after)
        .unwrap_or_else(|| panic!("no {after:?} in {text}"));
    text[..i]
        .split(|c: char| !c.is_ascii_digit())
        .next_back()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number before {after:?} in {text}"))
}

#[test]
fn udp_clean_runs_against_both_engines_in_both_modes() {
    for engine in ["uring", "epoll"] {
        let s = Server::start(&["--engine", engine, "--threads", "1"]);
        assert!(s.banner.contains(" and udp "), "{}", s.banner);
        let pid = s.child.id().to_string();
        let out = udp_bench(
            s.connect_addr(),
            &["--sockets", "16", "--size", "512", "--server-pid", &pid],
        );
        let text = clean_report(engine, &out);
        assert!(
            text.contains("closed loop, 16 sockets x 4 in flight x 512 B"),
            "{text}"
        );
        assert_eq!(number_before(&text, " lost ("), 0, "{engine}: {text}");
        assert!(number_before(&text, " echoes/s") > 1000, "{engine}: {text}");
        // Open loop: 2,000/s for 1 s is exactly 2,000 datagrams due, all answered.
        let out = udp_bench(
            s.connect_addr(),
            &["--rate", "2000", "--sockets", "8", "--size", "100"],
        );
        open_loop_kept_2000(engine, &out, "lost (0.000%)");
    }
}

/// What an in-test UDP server does with each datagram.
#[derive(Clone, Copy)]
enum Fake {
    /// Echo with one bit of byte 20 flipped.
    Flip,
    /// Echo twice.
    Twice,
    /// Never answer.
    Silent,
    /// Echo all but every tenth.
    DropTenth,
}

/// A UDP server that misbehaves as told, for at most 30 s.
fn fake_udp_server(kind: Fake) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let addr = sock.local_addr().expect("addr");
    std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(30);
        let mut buf = [0u8; 65536];
        let mut n_seen = 0u64;
        while Instant::now() < end {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            n_seen += 1;
            let d = &mut buf[..n];
            match kind {
                Fake::Flip => {
                    if let Some(b) = d.get_mut(20) {
                        *b ^= 1;
                    }
                    let _ = sock.send_to(d, from);
                }
                Fake::Twice => {
                    let _ = sock.send_to(d, from);
                    let _ = sock.send_to(d, from);
                }
                Fake::Silent => {}
                Fake::DropTenth => {
                    if !n_seen.is_multiple_of(10) {
                        let _ = sock.send_to(d, from);
                    }
                }
            }
        }
    });
    addr
}

#[test]
fn udp_wrong_bytes_and_duplicates_are_errors_and_fail_the_run() {
    let flip = fake_udp_server(Fake::Flip);
    for mode in [
        &["--sockets", "8"][..],
        &["--sockets", "8", "--rate", "500"][..],
    ] {
        let out = udp_bench(flip, mode);
        // No echo was right.
        let text = failed_saying(&out, &["nothing came back"]);
        assert!(number_before(&text, " wrong bytes") > 0, "{text}");
    }
    let out = udp_bench(fake_udp_server(Fake::Twice), &["--sockets", "4"]);
    let text = failed_saying(&out, &[]);
    assert!(number_before(&text, " duplicates") > 100, "{text}");
    assert_eq!(number_before(&text, " wrong bytes"), 0, "{text}");
}

#[test]
fn udp_a_silent_server_is_total_loss_and_fails() {
    let out = udp_bench(
        fake_udp_server(Fake::Silent),
        &["--sockets", "4", "--timeout", "0.1"],
    );
    // Every datagram lost, and loss is not wrong bytes.
    failed_saying(&out, &["(100.000%)", "nothing came back", "errors: none"]);
    let out = udp_bench(
        fake_udp_server(Fake::Silent),
        &["--sockets", "4", "--rate", "400"],
    );
    failed_saying(&out, &["400 of 400 due in the window lost (100.000%)"]);
}

#[test]
fn udp_loss_fails_the_run_only_above_max_loss() {
    let addr = fake_udp_server(Fake::DropTenth);
    let args = ["--sockets", "4", "--timeout", "0.05", "--rate", "1000"];
    let out = udp_bench(addr, &args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "10% loss is above the 1% default: {text}"
    );
    assert!(
        text.contains("LOSS:") && text.contains("above --max-loss 1%"),
        "{text}"
    );
    let lost = number_before(&text, " of 1000 due in the window lost");
    assert!((50..=150).contains(&lost), "about one in ten: {text}");
    assert!(text.contains("errors: none"), "{text}");
    let out = udp_bench(addr, &[&args[..], &["--max-loss", "30"]].concat());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "below --max-loss 30: {text}");
    // The closed loop loses as much, and keeps going: a lost datagram frees its slot.
    let out = udp_bench(
        addr,
        &["--sockets", "4", "--timeout", "0.05", "--max-loss", "30"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(number_before(&text, " lost (") > 0, "{text}");
}
