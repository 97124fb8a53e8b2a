//! The load generator against real servers and against broken ones: a clean run reports
//! no errors; wrong bytes and stalls are reported and fail the run, never counted as echoes.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output};
use std::time::Duration;

use common::{bin, run_bounded, Server};

fn bench(addr: SocketAddr, extra: &[&str]) -> Output {
    run_bounded(
        Command::new(bin())
            .args(["bench", "throughput", &addr.to_string()])
            .args(["--secs", "1", "--warmup", "0.5"])
            .args(extra),
        Duration::from_secs(60),
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
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{engine}: {text}");
        assert!(text.contains("errors: none"), "{text}");
        for field in [
            "echoes/s",
            "p99.9",
            "machine",
            "client",
            "server",
            "% of one CPU",
        ] {
            assert!(text.contains(field), "{engine}: no {field:?} in {text}");
        }
    }
}

#[test]
fn many_connections_from_two_threads() {
    let s = Server::start(&["--threads", "1"]);
    let out = bench(s.connect_addr(), &["--conns", "2000", "--threads", "2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("2000 conns"), "{text}");
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
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("ERRORS") && text.contains("8 wrong bytes"),
        "{text}"
    );
}

#[test]
fn a_stalling_server_is_reported_not_counted() {
    // Accepts connections and never answers.
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let _hold = std::thread::spawn(move || {
        let conns: Vec<_> = l.incoming().take(4).collect();
        std::thread::sleep(Duration::from_secs(10));
        drop(conns);
    });
    let out = bench(addr, &["--conns", "4"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("4 stalled"), "{text}");
    assert!(text.contains("no echo completed"), "{text}");
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
    // Nobody listening: every connection fails, and the run says so.
    drop(s);
    let free = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port");
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
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("10 connections failed"));
}

#[test]
fn bad_arguments_are_one_line_errors() {
    let out = run_bounded(
        Command::new(bin()).args(["bench", "throughput", "127.0.0.1:1", "--secs=-3"]),
        Duration::from_secs(10),
    );
    common::assert_one_line_error(&out, "--secs");
}

#[test]
fn bench_all_quick_writes_csv_charts_summary_and_plot_redraws() {
    let out = std::env::temp_dir().join(format!("ringecho-bench-all-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let run = run_bounded(
        Command::new(bin())
            .args(["bench-all", "--quick", "--kmod", "127.0.0.1:1", "--out"])
            .arg(&out),
        Duration::from_secs(180),
    );
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(String::from_utf8_lossy(&run.stderr).contains("nothing answers on 127.0.0.1:1"));

    let csv = std::fs::read_to_string(out.join("throughput.csv")).expect("csv");
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(
        rows.len(),
        2 * 3 * 2,
        "uring+epoll x 3 conns x 2 sizes:\n{csv}"
    );
    for server in ["uring", "epoll"] {
        for conns in ["1", "10", "100"] {
            for size in ["64", "4096"] {
                let row = rows
                    .iter()
                    .find(|r| r.starts_with(&format!("{server},throughput,{conns},{size},")))
                    .unwrap_or_else(|| panic!("no row {server} {conns} {size}"));
                assert!(row.ends_with(",0,0"), "errors or stalls in {row}");
            }
        }
    }
    let summary = std::fs::read_to_string(out.join("summary.md")).expect("summary");
    assert!(summary.contains("| uring | 100 | 4096 |"), "{summary}");
    assert!(std::fs::read_to_string(out.join("metadata.txt"))
        .expect("metadata")
        .contains("net.core.somaxconn"));
    for size in [64, 4096] {
        for kind in ["throughput", "cpu_per_echo", "latency_p99"] {
            let png = out.join(format!("{kind}_{size}B.png"));
            let img = image::open(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
            assert_eq!((img.width(), img.height()), (1000, 620));
        }
    }
    let burst = std::fs::read_to_string(out.join("burst.csv")).expect("burst.csv");
    for server in ["uring", "epoll"] {
        let n = burst
            .lines()
            .filter(|l| l.starts_with(&format!("{server},")))
            .count();
        assert_eq!(n, 100 * 2, "{server}: 100 connections x 2 rounds");
    }
    assert!(image::open(out.join("burst_response.png")).is_ok());
    // `plot` redraws from the CSV alone.
    let png = out.join("throughput_64B.png");
    std::fs::remove_file(&png).expect("remove");
    let replot = run_bounded(
        Command::new(bin()).arg("plot").arg(&out),
        Duration::from_secs(60),
    );
    assert!(replot.status.success());
    assert!(image::open(&png).is_ok());
    let _ = std::fs::remove_dir_all(&out);
}
