//! The load generator against real servers and against broken ones: a clean run reports
//! no errors; wrong bytes and stalls are reported and fail the run, never counted as echoes.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

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
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("10 connections failed"),
        "{out:?}"
    );
}

fn latency(addr: SocketAddr, extra: &[&str]) -> Output {
    run_bounded(
        Command::new(bin())
            .args(["bench", "latency", &addr.to_string()])
            .args(["--secs", "1", "--warmup", "0.3"])
            .args(extra),
        Duration::from_secs(60),
    )
}

#[test]
fn open_loop_keeps_the_rate_and_reports_both_latencies() {
    for engine in ["uring", "epoll"] {
        let s = Server::start(&["--engine", engine, "--threads", "1"]);
        let out = latency(s.connect_addr(), &["--rate", "2000", "--conns", "20"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{engine}: {text}");
        // 2,000/s for 1 s: exactly 2,000 messages due in the window, all answered.
        assert!(
            text.contains("of 2000 scheduled; 0 of 2000 due in the window unfinished"),
            "{engine}: {text}"
        );
        assert!(text.contains("corrected   p50"), "{text}");
        assert!(text.contains("uncorrected p50"), "{text}");
        assert!(text.contains("errors: none"), "{text}");
    }
}

#[test]
fn open_loop_catches_wrong_bytes_and_a_silent_server() {
    let out = latency(
        corrupting_server(),
        &["--rate", "500", "--conns", "4", "--size", "256"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("4 wrong bytes"), "{text}");

    // Accepts and never answers: nothing finishes, and the corrected latency still
    // shows how long the messages waited instead of leaving them out.
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let _hold = std::thread::spawn(move || {
        let conns: Vec<_> = l.incoming().take(4).collect();
        std::thread::sleep(Duration::from_secs(10));
        drop(conns);
    });
    let out = latency(addr, &["--rate", "100", "--conns", "4"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "no echo is a failure: {text}");
    assert!(
        text.contains("100 of 100 due in the window unfinished"),
        "{text}"
    );
    assert!(text.contains("rate was not kept"), "{text}");
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
    let stderr = String::from_utf8_lossy(&run.stderr);
    // The run ends with its verdict, one line per target point, and where to look.
    let verdict = text
        .split("\nverdict: ")
        .nth(1)
        .unwrap_or_else(|| panic!("no verdict: {text}\n{stderr}"));
    assert!(
        verdict.contains("\n  100 conns × 64 B, echoes/s: uring ")
            && verdict.contains("\n  open loop 100 conns × 64 B at ")
            && verdict.contains("\n  Look next: summary.md, \"Repeated points\""),
        "{verdict}"
    );
    // An undecided target point (too few valid rounds on a busy machine) is a result the
    // verdict states, not a failure: with no errors the run passes either way.
    assert!(run.status.success(), "{text}\n{stderr}");
    assert!(stderr.contains("nothing answers on 127.0.0.1:1"));
    for out in [&text, &stderr] {
        assert!(
            !out.contains("SIGTERM, stopping"),
            "the servers' own stderr stays off the console: {out}"
        );
    }

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
    // Repeated target points: 2 rounds x (100 x 64 B closed, the 50% open-loop rate) x
    // both servers, error-free, and their per-round ratios in the summary.
    let repeated = std::fs::read_to_string(out.join("repeated.csv")).expect("repeated.csv");
    let measured = ringecho::bench::all_repeat::parse(&repeated).expect("parse repeated.csv");
    for server in ["uring", "epoll"] {
        for open in [false, true] {
            let mine: Vec<_> = measured
                .iter()
                .filter(|m| m.server == server && m.open == open && m.conns == 100)
                .collect();
            assert_eq!(mine.len(), 2, "{server} open={open}: {repeated}");
            for m in mine {
                assert_eq!(m.errors, 0, "{m:?}");
                assert!(m.echoes.is_some() && m.client_cpu_pct.is_some(), "{m:?}");
            }
        }
    }
    assert!(
        summary.starts_with("# ringecho benchmark summary\n\n**Verdict**: ")
            && summary.contains("## Repeated points")
            && summary.contains("| 100 conns × 64 B | uring | echoes/s |"),
        "{summary}"
    );
    // Memory: both processes measured with 10,000 idle connections, all of them made.
    assert!(
        summary.contains("## Memory per idle connection"),
        "{summary}"
    );
    let memory = std::fs::read_to_string(out.join("memory.csv")).expect("memory.csv");
    for server in ["uring", "epoll"] {
        let row = memory
            .lines()
            .find(|l| l.starts_with(&format!("{server},")))
            .unwrap_or_else(|| panic!("no memory row for {server}: {memory}"));
        let f: Vec<&str> = row.split(',').collect();
        assert_eq!(f[1], "10000", "{row}");
        let after: u64 = f[3].parse().expect("rss after");
        assert!(after > 0, "{row}");
    }
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
    // Open loop: one row per server at 50% of epoll's peak, every message answered.
    let lat = ringecho::bench::results::latency_from_csv(
        &std::fs::read_to_string(out.join("latency.csv")).expect("latency.csv"),
    )
    .expect("parse latency.csv");
    assert_eq!(lat.len(), 2, "{lat:?}");
    for r in &lat {
        assert_eq!(r.errors, 0, "{r:?}");
        assert!(r.scheduled > 0 && r.corrected.p50 > 0.0, "{r:?}");
        assert!(
            r.corrected.p99 >= r.uncorrected.p50,
            "corrected counts from the due time: {r:?}"
        );
    }
    assert_eq!(lat[0].rate, lat[1].rate, "same schedule for every server");
    // Histograms: one log per server, every point in it, and they decode.
    for server in ["uring", "epoll"] {
        let path = out.join("histograms").join(format!("{server}.hlog"));
        let entries = ringecho::bench::hlog::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let tags: Vec<&str> = entries.iter().map(|e| e.tag.as_str()).collect();
        assert_eq!(entries.len(), 6 + 2 + 1 + 4 + 2, "{server}: {tags:?}");
        assert!(tags.contains(&"udp:s64-b1472"), "{tags:?}");
        assert!(
            tags.iter()
                .any(|t| t.starts_with("udp-latency:s64-b64-") && t.ends_with(":corrected")),
            "{tags:?}"
        );
        assert!(tags.contains(&"throughput:c100-s4096"), "{tags:?}");
        assert!(tags.iter().any(|t| t.ends_with(":uncorrected")), "{tags:?}");
        assert!(tags.iter().any(|t| t.starts_with("burst:")), "{tags:?}");
        let t = entries
            .iter()
            .find(|e| e.tag == "throughput:c100-s64")
            .expect("entry");
        assert!(t.hist.len() > 100, "{server}: {} samples", t.hist.len());
    }
    // UDP: both engines at every closed-loop point and the open-loop rate.
    let udp = ringecho::bench::results::udp_from_csv(
        &std::fs::read_to_string(out.join("udp.csv")).expect("udp.csv"),
    )
    .expect("parse udp.csv");
    assert_eq!(udp.len(), 2 * (2 * 2 + 1), "{udp:?}");
    for server in ["uring", "epoll"] {
        for sockets in [1, 64] {
            for size in [64, 1472] {
                let r = udp
                    .iter()
                    .find(|r| {
                        r.server == server
                            && r.workload == "throughput"
                            && r.sockets == sockets
                            && r.size == size
                    })
                    .unwrap_or_else(|| panic!("no UDP row {server} {sockets} {size}"));
                assert!(r.errors == 0 && r.echoes_per_sec > 0.0, "{r:?}");
                assert!(r.sent > 0 && r.latency.p50 > 0.0, "{r:?}");
            }
        }
        let r = udp
            .iter()
            .find(|r| r.server == server && r.workload == "latency")
            .unwrap_or_else(|| panic!("no UDP open-loop row for {server}"));
        assert!(r.errors == 0 && r.fraction == 50, "{r:?}");
        let c = r.corrected.expect("corrected percentiles");
        assert!(c.p99 >= r.latency.p50, "{r:?}");
    }
    assert!(summary.contains("## UDP, closed loop"), "{summary}");
    assert!(summary.contains("## UDP, open loop"), "{summary}");
    for png in [
        "burst_response.png",
        "burst_percentiles.png",
        "latency_spectrum_50pct.png",
        "udp_pps_64B.png",
        "udp_pps_1472B.png",
        "udp_latency_spectrum_50pct.png",
    ] {
        let img = image::open(out.join(png)).unwrap_or_else(|e| panic!("{png}: {e}"));
        assert_eq!((img.width(), img.height()), (1000, 620));
    }
    // `plot` redraws from the data files alone.
    let pngs = [
        "throughput_64B.png",
        "latency_spectrum_50pct.png",
        "udp_pps_1472B.png",
        "udp_latency_spectrum_50pct.png",
    ];
    for png in pngs {
        std::fs::remove_file(out.join(png)).expect("remove");
    }
    std::fs::remove_file(out.join("summary.md")).expect("remove");
    let replot = run_bounded(
        Command::new(bin()).arg("plot").arg(&out),
        Duration::from_secs(60),
    );
    assert!(replot.status.success());
    for png in pngs {
        assert!(image::open(out.join(png)).is_ok(), "{png} redrawn");
    }
    let redrawn = std::fs::read_to_string(out.join("summary.md")).expect("summary redrawn");
    assert_eq!(redrawn, summary, "plot redraws the same summary.md");
    let _ = std::fs::remove_dir_all(&out);
}

/// Copy a directory tree (files and subdirectories) from `from` into `to`.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let dest = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).expect("copy file");
        }
    }
}

/// The committed runs' summaries are what `plot` draws from their data files, so the
/// numbers the README quotes can be traced to the CSV and histograms beside them. `plot`
/// writes into the directory it reads, so it redraws a copy, never the checkout.
#[test]
fn plot_redraws_the_committed_reference_runs_identically() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (i, dir) in ["results/reference", "results/reference/vm"]
        .iter()
        .enumerate()
    {
        let committed = root.join(dir);
        let copy =
            std::env::temp_dir().join(format!("ringecho-reference-{}-{i}", std::process::id()));
        let _ = std::fs::remove_dir_all(&copy);
        copy_tree(&committed, &copy);
        std::fs::remove_file(copy.join("summary.md")).expect("remove summary");
        std::fs::remove_file(copy.join("throughput_64B.png")).expect("remove chart");
        let replot = run_bounded(
            Command::new(bin()).arg("plot").arg(&copy),
            Duration::from_secs(120),
        );
        assert!(
            replot.status.success(),
            "{dir}: {}",
            String::from_utf8_lossy(&replot.stderr)
        );
        assert!(
            image::open(copy.join("throughput_64B.png")).is_ok(),
            "{dir}: chart redrawn"
        );
        let redrawn = std::fs::read_to_string(copy.join("summary.md")).expect("summary redrawn");
        let expected = std::fs::read_to_string(committed.join("summary.md")).expect("summary");
        assert_eq!(
            redrawn, expected,
            "{dir}/summary.md differs from what `ringecho plot` draws from its data files"
        );
        let _ = std::fs::remove_dir_all(&copy);
    }
}

fn udp_bench(addr: SocketAddr, extra: &[&str]) -> Output {
    run_bounded(
        Command::new(bin())
            .args(["bench", "udp", &addr.to_string()])
            .args(["--secs", "1", "--warmup", "0.3", "--threads", "1"])
            .args(extra),
        Duration::from_secs(60),
    )
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
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{engine}: {text}");
        assert!(
            text.contains("closed loop, 16 sockets x 4 in flight x 512 B"),
            "{text}"
        );
        assert!(text.contains("errors: none"), "{engine}: {text}");
        assert_eq!(number_before(&text, " lost ("), 0, "{engine}: {text}");
        assert!(number_before(&text, " echoes/s") > 1000, "{engine}: {text}");
        for field in ["p99.9", "machine", "client", "server", "% of one CPU"] {
            assert!(text.contains(field), "{engine}: no {field:?} in {text}");
        }
        // Open loop: 2,000/s for 1 s is exactly 2,000 datagrams due, all answered.
        let out = udp_bench(
            s.connect_addr(),
            &["--rate", "2000", "--sockets", "8", "--size", "100"],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{engine}: {text}");
        assert!(
            text.contains("of 2000 scheduled; 0 of 2000 due in the window lost (0.000%)"),
            "{engine}: {text}"
        );
        assert!(text.contains("corrected   p50"), "{text}");
        assert!(text.contains("uncorrected p50"), "{text}");
        assert!(text.contains("errors: none"), "{text}");
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
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{text}");
        assert!(number_before(&text, " wrong bytes") > 0, "{text}");
        assert!(
            text.contains("nothing came back"),
            "no echo was right: {text}"
        );
    }
    let out = udp_bench(fake_udp_server(Fake::Twice), &["--sockets", "4"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(number_before(&text, " duplicates") > 100, "{text}");
    assert_eq!(number_before(&text, " wrong bytes"), 0, "{text}");
}

#[test]
fn udp_a_silent_server_is_total_loss_and_fails() {
    let out = udp_bench(
        fake_udp_server(Fake::Silent),
        &["--sockets", "4", "--timeout", "0.1"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("(100.000%)"), "every datagram lost: {text}");
    assert!(text.contains("nothing came back"), "{text}");
    assert!(
        text.contains("errors: none"),
        "loss is not wrong bytes: {text}"
    );
    let out = udp_bench(
        fake_udp_server(Fake::Silent),
        &["--sockets", "4", "--rate", "400"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("400 of 400 due in the window lost (100.000%)"),
        "{text}"
    );
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

/// Whether the PNG at `path` has a pixel of exactly `rgb` (a series' line or marker).
fn has_color(path: &std::path::Path, rgb: (u8, u8, u8)) -> bool {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8();
    img.pixels().any(|p| p.0 == [rgb.0, rgb.1, rgb.2])
}

/// Pids of live processes whose environment holds `marker` (our own, readable ones).
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(env) = std::fs::read(e.path().join("environ")) {
            if env.split(|&b| b == 0).any(|v| v == marker.as_bytes()) {
                found.push(name);
            }
        }
    }
    found
}

#[test]
fn bench_all_measures_an_outside_server_beside_epoll_and_stops_it() {
    let out = std::env::temp_dir().join(format!("ringecho-outside-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let marker = format!("RINGECHO_OUTSIDE_TEST={}", std::process::id());
    // Our epoll engine under another name: an echo server the harness knows nothing of.
    // `& wait` keeps the shell as the server's parent, so stopping it must reach the
    // whole process group, and the memory phase must find the server behind the shell.
    let server = format!(
        "ext={marker} {} serve --engine epoll --threads 1 --port {{port}} & wait",
        bin()
    );
    let run = run_bounded(
        Command::new(bin())
            .args(["bench-all", "--quick", "--kmod", "127.0.0.1:1"])
            .args(["--only", "epoll,ext", "--server", &server, "--out"])
            .arg(&out),
        Duration::from_secs(180),
    );
    let text = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{text}\n{stderr}");
    assert!(text.contains("2 servers (epoll, ext)"), "{text}");
    let left = processes_with(&marker);
    assert!(left.is_empty(), "outside server processes left: {left:?}");

    let csv = std::fs::read_to_string(out.join("throughput.csv")).expect("csv");
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(
        rows.len(),
        2 * 3 * 2,
        "epoll+ext x 3 conns x 2 sizes:\n{csv}"
    );
    for conns in ["1", "10", "100"] {
        for size in ["64", "4096"] {
            let row = rows
                .iter()
                .find(|r| r.starts_with(&format!("ext,throughput,{conns},{size},")))
                .unwrap_or_else(|| panic!("no ext row {conns} {size}:\n{csv}"));
            assert!(row.ends_with(",0,0"), "errors or stalls in {row}");
        }
    }
    assert!(
        !rows.iter().any(|r| r.starts_with("uring,")),
        "--only leaves uring out: {csv}"
    );
    let summary = std::fs::read_to_string(out.join("summary.md")).expect("summary");
    assert!(summary.contains("| ext | 100 | 4096 |"), "{summary}");
    assert!(
        summary.contains("| 100 conns × 64 B | ext | echoes/s |"),
        "ext's ratios to epoll: {summary}"
    );
    // Every phase: open loop, burst, UDP (it answers UDP on the same port), memory.
    let lat = std::fs::read_to_string(out.join("latency.csv")).expect("latency.csv");
    assert!(lat.lines().any(|l| l.starts_with("ext,")), "{lat}");
    let burst = std::fs::read_to_string(out.join("burst.csv")).expect("burst.csv");
    let n = burst.lines().filter(|l| l.starts_with("ext,")).count();
    assert_eq!(n, 100 * 2, "ext: 100 connections x 2 rounds");
    let udp = ringecho::bench::results::udp_from_csv(
        &std::fs::read_to_string(out.join("udp.csv")).expect("udp.csv"),
    )
    .expect("parse udp.csv");
    let ext_udp: Vec<_> = udp.iter().filter(|r| r.server == "ext").collect();
    assert_eq!(ext_udp.len(), 2 * 2 + 1, "{udp:?}");
    for r in ext_udp {
        assert!(r.errors == 0 && r.echoes_per_sec > 0.0, "{r:?}");
    }
    let memory = std::fs::read_to_string(out.join("memory.csv")).expect("memory.csv");
    let row = memory
        .lines()
        .find(|l| l.starts_with("ext,"))
        .unwrap_or_else(|| panic!("no memory row for ext: {memory}"));
    let f: Vec<&str> = row.split(',').collect();
    assert_eq!(f[1], "10000", "{row}");
    // The server's RSS, not the shell's: 10,000 connections grow it by far more than
    // nothing (a shell's RSS would not move).
    let (before, after): (u64, u64) = (f[2].parse().expect("before"), f[3].parse().expect("after"));
    assert!(after > before, "{row}");
    // Charts: ext's line in its own colour beside epoll's; uring, left out, has none.
    use ringecho::bench::chart::server_rgb;
    for png in [
        "throughput_64B.png",
        "udp_pps_64B.png",
        "burst_response.png",
    ] {
        let path = out.join(png);
        assert!(has_color(&path, server_rgb("epoll")), "{png}: epoll");
        assert!(has_color(&path, server_rgb("ext")), "{png}: ext");
        assert!(
            !has_color(&path, server_rgb("uring")),
            "{png}: uring did not run"
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn bad_outside_servers_and_only_lists_are_one_line_errors() {
    for (args, needle) in [
        (&["--server", "nameonly"][..], "NAME=COMMAND"),
        (&["--server", "epoll=x {port}"][..], "one of ours"),
        (&["--server", "kernel=x {port}"][..], "one of ours"),
        (&["--server", "a b=x {port}"][..], "letters, digits"),
        (&["--server", "=x {port}"][..], "letters, digits"),
        (&["--server", "a=x"][..], "{port}"),
        (
            &["--server", "a=x {port}", "--server", "a=y {port}"][..],
            "given twice",
        ),
        (&["--only", "uring,nosuch"][..], "--only nosuch"),
        (&["--only", ""][..], "--only"),
    ] {
        let out = run_bounded(
            Command::new(bin()).arg("bench-all").args(args),
            Duration::from_secs(10),
        );
        common::assert_one_line_error(&out, needle);
    }
    // A server that never answers, or exits, is named in one line (plus its stderr).
    let out = run_bounded(
        Command::new(bin()).args([
            "bench-all",
            "--only",
            "gone",
            "--server",
            "gone=echo cannot bind {port} >&2; exit 3",
        ]),
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the gone server exited before it answered on 127.0.0.1:")
            && err.contains("\n  cannot bind "),
        "{err}"
    );
}

#[test]
fn bench_all_without_epoll_claims_no_ratios_and_skips_udp_for_a_tcp_only_server() {
    let out = std::env::temp_dir().join(format!("ringecho-pyecho-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let marker = format!("RINGECHO_PYECHO_TEST={}", std::process::id());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pyecho.py");
    let server = format!("pyecho={marker} exec python3 {script} {{port}}");
    let run = run_bounded(
        Command::new(bin())
            .args(["bench-all", "--quick", "--kmod", "127.0.0.1:1"])
            .args(["--only", "pyecho", "--server", &server, "--out"])
            .arg(&out),
        Duration::from_secs(180),
    );
    let text = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{text}\n{stderr}");
    assert!(text.contains("1 server (pyecho)"), "{text}");
    assert!(
        stderr.contains("--only leaves epoll out: no ratios"),
        "{stderr}"
    );
    assert!(
        text.contains("\nverdict: none: epoll, the baseline of every ratio, did not run"),
        "{text}"
    );
    let left = processes_with(&marker);
    assert!(left.is_empty(), "pyecho processes left: {left:?}");
    let csv = std::fs::read_to_string(out.join("throughput.csv")).expect("csv");
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 3 * 2, "pyecho x 3 conns x 2 sizes:\n{csv}");
    assert!(
        rows.iter()
            .all(|r| r.starts_with("pyecho,throughput,") && r.ends_with(",0,0")),
        "{csv}"
    );
    let summary = std::fs::read_to_string(out.join("summary.md")).expect("summary");
    assert!(
        summary.contains("**Verdict**: none: epoll, the baseline of every ratio, did not run")
            && summary.contains("fractions of the fastest server's closed-loop echoes/s")
            && !summary.contains("epoll's"),
        "{summary}"
    );
    assert!(
        !summary.contains("## Repeated points"),
        "no ratios: {summary}"
    );
    // TCP only: no UDP rows, and the memory phase measured the Python process.
    let udp = std::fs::read_to_string(out.join("udp.csv")).expect("udp.csv");
    assert_eq!(udp.lines().count(), 1, "only the header: {udp}");
    let memory = std::fs::read_to_string(out.join("memory.csv")).expect("memory.csv");
    let row = memory
        .lines()
        .find(|l| l.starts_with("pyecho,10000,"))
        .unwrap_or_else(|| panic!("no memory row for pyecho: {memory}"));
    let f: Vec<&str> = row.split(',').collect();
    let (before, after): (u64, u64) = (f[2].parse().expect("before"), f[3].parse().expect("after"));
    assert!(after > before, "{row}");
    let path = out.join("throughput_64B.png");
    assert!(has_color(
        &path,
        ringecho::bench::chart::server_rgb("pyecho")
    ));
    assert!(!has_color(
        &path,
        ringecho::bench::chart::server_rgb("epoll")
    ));
    let _ = std::fs::remove_dir_all(&out);
}
