//! `ringecho bench-all` end to end (its own test binary, so that its load never
//! runs beside another binary's timing-sensitive tests): every phase's files, the
//! verdict, `--server`/`--only`, `plot` redrawing the committed runs, and Ctrl-C keeping
//! the finished phases.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, run_bounded};
use ringecho_bench::export::Results;

/// A fresh scratch directory for one test.
fn scratch(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ringecho-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `bench-all --smoke` (`--quick`'s matrix with points of a few hundred milliseconds:
/// every phase, file and chart, in half the time) into `out` with `args`, no kernel
/// module; asserts it passed and returns its stdout and stderr. An undecided target point
/// (too few valid rounds on a busy machine) is a result the verdict states, not a
/// failure: with no broken echo the run passes either way.
fn smoke_run(out: &Path, args: &[&str]) -> (String, String) {
    let run = run_bounded(
        Command::new(bin())
            .args(["bench-all", "--smoke", "--kmod", "127.0.0.1:1"])
            .args(args)
            .arg("--out")
            .arg(out),
        Duration::from_secs(180),
    );
    let text = String::from_utf8_lossy(&run.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "{text}\n{stderr}");
    (text, stderr)
}

#[test]
fn bench_all_writes_csv_charts_summary_and_plot_redraws() {
    let out = scratch("bench-all");
    let (text, stderr) = smoke_run(&out, &[]);
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
    assert!(stderr.contains("nothing answers on 127.0.0.1:1"));
    for out in [&text, &stderr] {
        assert!(
            !out.contains("SIGTERM, stopping"),
            "the servers' own stderr stays off the console: {out}"
        );
    }

    let results = Results::read(&out).expect("every file reads back");
    clean_closed_loop(&results, &["uring", "epoll"]);
    let header = std::fs::read_to_string(out.join("throughput.csv")).expect("csv");
    assert!(
        header.starts_with("server,workload,conns,size,echoes_per_sec,"),
        "the header is the row's fields: {header}"
    );
    let meta = std::fs::read_to_string(out.join("metadata.txt")).expect("metadata");
    assert!(
        !meta.contains("incomplete"),
        "a finished run says nothing of it: {meta}"
    );
    for phase in [
        "throughput",
        "latency",
        "burst",
        "UDP",
        "repeated",
        "memory",
    ] {
        assert!(
            text.contains(&format!("  {phase} phase done: wrote ")),
            "{phase}: {text}"
        );
    }
    let summary = std::fs::read_to_string(out.join("summary.md")).expect("summary");
    assert!(summary.contains("| uring | 100 | 4096 |"), "{summary}");
    // Repeated target points: 2 rounds x (100 x 64 B closed, the 50% open-loop rate) x
    // both servers, error-free, and their per-round ratios in the summary.
    let measured = &results.repeated;
    for server in ["uring", "epoll"] {
        for open in [false, true] {
            let mine: Vec<_> = measured
                .iter()
                .filter(|m| m.server == server && m.open == open && m.conns == 100)
                .collect();
            assert_eq!(mine.len(), 2, "{server} open={open}: {measured:?}");
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
    for server in ["uring", "epoll"] {
        grew_with_idle_connections(&results, server);
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
    for server in ["uring", "epoll"] {
        let n = results.burst.iter().filter(|r| r.server == server).count();
        assert_eq!(n, 100 * 2, "{server}: 100 connections x 2 rounds");
    }
    // Open loop: one row per server at 50% of epoll's peak, every message answered.
    let lat = &results.latency;
    assert_eq!(lat.len(), 2, "{lat:?}");
    for r in lat {
        assert_eq!(r.errors, 0, "{r:?}");
        assert!(r.scheduled > 0 && r.c_p50_us > 0.0, "{r:?}");
        assert!(
            r.c_p99_us >= r.u_p50_us,
            "corrected counts from the due time: {r:?}"
        );
    }
    assert_eq!(lat[0].rate, lat[1].rate, "same schedule for every server");
    // Histograms: one log per server, every point in it, and they decode.
    for server in ["uring", "epoll"] {
        let path = out.join("histograms").join(format!("{server}.hlog"));
        let entries =
            ringecho_bench::hlog::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
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
    let udp = &results.udp;
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
                assert!(r.sent > 0 && r.p50_us > 0.0, "{r:?}");
            }
        }
        let r = udp
            .iter()
            .find(|r| r.server == server && r.workload == "latency")
            .unwrap_or_else(|| panic!("no UDP open-loop row for {server}"));
        assert!(r.errors == 0 && r.fraction == 50, "{r:?}");
        let c = r.corrected().expect("corrected percentiles");
        assert!(c.p99 >= r.p50_us, "{r:?}");
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
fn copy_tree(from: &Path, to: &Path) {
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
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
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

/// The closed-loop phase measured exactly `servers` at each of the smoke profile's 3
/// connection counts x 2 sizes, every point with echoes and no error.
fn clean_closed_loop(results: &Results, servers: &[&str]) {
    let rows = &results.throughput;
    assert_eq!(rows.len(), servers.len() * 3 * 2, "{servers:?}: {rows:?}");
    for server in servers {
        for conns in [1, 10, 100] {
            for size in [64, 4096] {
                let row = rows
                    .iter()
                    .find(|r| r.server == *server && r.conns == conns && r.size == size)
                    .unwrap_or_else(|| panic!("no row {server} {conns} {size}: {rows:?}"));
                assert!(row.errors == 0 && row.echoes > Some(0), "{row:?}");
            }
        }
    }
}

/// The memory phase measured `server` with its 10,000 idle connections, all made, and
/// its RSS grew with them.
fn grew_with_idle_connections(results: &Results, server: &str) {
    let row = results
        .memory
        .iter()
        .find(|r| r.server == server)
        .unwrap_or_else(|| panic!("no memory row for {server}: {:?}", results.memory));
    assert!(
        row.conns == 10_000 && row.rss_after_kib > row.rss_before_kib,
        "{row:?}"
    );
}

/// Whether the PNG at `path` has a pixel of exactly `rgb` (a series' line or marker).
fn has_color(path: &Path, rgb: (u8, u8, u8)) -> bool {
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
    let out = scratch("outside");
    let marker = format!("RINGECHO_OUTSIDE_TEST={}", std::process::id());
    // Our epoll engine under another name: an echo server the harness knows nothing of.
    // `& wait` keeps the shell as the server's parent, so stopping it must reach the
    // whole process group, and the memory phase must find the server behind the shell.
    let server = format!(
        "ext={marker} {} serve --engine epoll --threads 1 --port {{port}} & wait",
        bin()
    );
    let (text, _) = smoke_run(&out, &["--only", "epoll,ext", "--server", &server]);
    assert!(text.contains("2 servers (epoll, ext)"), "{text}");
    let left = processes_with(&marker);
    assert!(left.is_empty(), "outside server processes left: {left:?}");

    let results = Results::read(&out).expect("reads back");
    clean_closed_loop(&results, &["epoll", "ext"]);
    let rows = &results.throughput;
    assert!(
        !rows.iter().any(|r| r.server == "uring"),
        "--only leaves uring out: {rows:?}"
    );
    let summary = std::fs::read_to_string(out.join("summary.md")).expect("summary");
    assert!(summary.contains("| ext | 100 | 4096 |"), "{summary}");
    assert!(
        summary.contains("| 100 conns × 64 B | ext | echoes/s |"),
        "ext's ratios to epoll: {summary}"
    );
    // Every phase: open loop, burst, UDP (it answers UDP on the same port), memory.
    assert!(results.latency.iter().any(|r| r.server == "ext"));
    let n = results.burst.iter().filter(|r| r.server == "ext").count();
    assert_eq!(n, 100 * 2, "ext: 100 connections x 2 rounds");
    let ext_udp: Vec<_> = results.udp.iter().filter(|r| r.server == "ext").collect();
    assert_eq!(ext_udp.len(), 2 * 2 + 1, "{:?}", results.udp);
    for r in ext_udp {
        assert!(r.errors == 0 && r.echoes_per_sec > 0.0, "{r:?}");
    }
    // The server's RSS, not the shell's (a shell's RSS would not move).
    grew_with_idle_connections(&results, "ext");
    // Charts: ext's line in its own colour beside epoll's; uring, left out, has none.
    use ringecho_bench::chart::server_rgb;
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
    let out = scratch("pyecho");
    let marker = format!("RINGECHO_PYECHO_TEST={}", std::process::id());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pyecho.py");
    let server = format!("pyecho={marker} exec python3 {script} {{port}}");
    let (text, stderr) = smoke_run(&out, &["--only", "pyecho", "--server", &server]);
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
    let results = Results::read(&out).expect("reads back");
    clean_closed_loop(&results, &["pyecho"]);
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
    assert!(!out.join("udp.csv").exists(), "no UDP phase, no file");
    assert!(results.udp.is_empty());
    grew_with_idle_connections(&results, "pyecho");
    let path = out.join("throughput_64B.png");
    assert!(has_color(
        &path,
        ringecho_bench::chart::server_rgb("pyecho")
    ));
    assert!(!has_color(
        &path,
        ringecho_bench::chart::server_rgb("epoll")
    ));
    let _ = std::fs::remove_dir_all(&out);
}

/// Start `bench-all --smoke` into `out` with `marker` in its environment (its servers
/// inherit it), and return it with its stdout and stderr lines arriving on a channel.
fn start_bench_all(
    out: &Path,
    marker: &str,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let (key, value) = marker.split_once('=').expect("KEY=VALUE");
    let mut child = Command::new(bin())
        .args(["bench-all", "--smoke", "--kmod", "127.0.0.1:1", "--out"])
        .arg(out)
        .env(key, value)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bench-all");
    let (tx, rx) = std::sync::mpsc::channel();
    let forward = |from: Box<dyn std::io::Read + Send>, tx: std::sync::mpsc::Sender<String>| {
        std::thread::spawn(move || {
            for line in BufReader::new(from).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
    };
    forward(Box::new(child.stdout.take().expect("stdout")), tx.clone());
    forward(Box::new(child.stderr.take().expect("stderr")), tx);
    (child, rx)
}

/// Lines from `rx` until one contains `needle` (all of them, that one last); panics
/// after `limit`.
fn lines_until(
    rx: &std::sync::mpsc::Receiver<String>,
    needle: &str,
    limit: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                let hit = line.contains(needle);
                seen.push(line);
                if hit {
                    return seen;
                }
            }
            Err(_) => break,
        }
    }
    panic!(
        "no line with {needle:?} within {limit:?}:\n{}",
        seen.join("\n")
    );
}

/// Wait for `child` at most `limit`; kill it and panic if it does not exit.
fn wait_bounded(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("bench-all did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sigint(child: &std::process::Child) {
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
}

#[test]
fn ctrl_c_keeps_the_finished_phases_and_says_the_run_is_incomplete() {
    let out = scratch("interrupted");
    let marker = format!("RINGECHO_INTERRUPT_TEST={}", std::process::id());
    let (mut child, rx) = start_bench_all(&out, &marker);
    // The throughput phase's file is on disk as soon as the phase ends.
    lines_until(
        &rx,
        "throughput phase done: wrote throughput.csv",
        Duration::from_secs(120),
    );
    let early = Results::read(&out).expect("reads mid-run");
    assert_eq!(
        early.throughput.len(),
        2 * 3 * 2,
        "written when its phase ended"
    );
    sigint(&child);
    let status = wait_bounded(&mut child, Duration::from_secs(60));
    let rest: Vec<String> = rx.try_iter().collect();
    let text = rest.join("\n");
    assert_eq!(status.code(), Some(130), "{text}");
    assert!(
        text.contains("bench-all: interrupted; not run or not finished: ")
            && text.contains("the finished phases are kept"),
        "{text}"
    );
    let left = processes_with(&marker);
    assert!(left.is_empty(), "servers left running: {left:?}");
    let kept = Results::read(&out).expect("reads back");
    assert_eq!(kept.throughput.len(), 2 * 3 * 2);
    assert!(kept.memory.is_empty(), "the last phase never ran");
    assert!(
        kept.metadata
            .contains("incomplete: interrupted; not run or not finished: ")
            && kept.metadata.contains("memory"),
        "{}",
        kept.metadata
    );
    let summary = std::fs::read_to_string(out.join("summary.md")).expect("summary of what ran");
    assert!(
        summary.contains("**This run is incomplete: interrupted;")
            && summary.contains("## Closed loop"),
        "{summary}"
    );
    assert!(
        image::open(out.join("throughput_64B.png")).is_ok(),
        "its charts too"
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_second_ctrl_c_quits_at_once_and_stops_the_servers() {
    let out = scratch("interrupted-twice");
    let marker = format!("RINGECHO_INTERRUPT2_TEST={}", std::process::id());
    let (mut child, rx) = start_bench_all(&out, &marker);
    lines_until(&rx, "] uring ", Duration::from_secs(60));
    sigint(&child);
    // Two signals sent before the first is taken would arrive as one.
    lines_until(&rx, "stopping after this step", Duration::from_secs(10));
    sigint(&child);
    let status = wait_bounded(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(130));
    // SIGKILLed by the harness on its way out: give the kernel a moment to reap them.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_with(&marker).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left = processes_with(&marker);
    assert!(left.is_empty(), "servers left running: {left:?}");
    let meta = std::fs::read_to_string(out.join("metadata.txt")).expect("metadata");
    assert!(
        meta.contains("incomplete: the run did not finish."),
        "{meta}"
    );
    let _ = std::fs::remove_dir_all(&out);
}
