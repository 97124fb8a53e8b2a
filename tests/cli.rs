//! Bad input: every mistake is one clear line on stderr and a non-zero exit, never a panic.

mod common;

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use common::{assert_one_line_error, assert_usage_error, bin, ringecho, run_bounded, Server};

fn serve(args: &[&str]) -> std::process::Output {
    ringecho(&[&["serve"], args].concat())
}

#[test]
fn unknown_engine() {
    let out = serve(&["--engine", "kqueue"]);
    assert_usage_error(
        &out,
        "invalid value 'kqueue' for '--engine <ENGINE>' (see 'ringecho serve --help')",
        &["[possible values: uring, epoll]"],
    );
}

#[test]
fn port_out_of_range() {
    let out = serve(&["--port", "70000"]);
    assert_one_line_error(&out, "70000");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn zero_threads() {
    let out = serve(&["--threads", "0"]);
    assert_one_line_error(&out, "--threads must be at least 1");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bad_buffer_settings() {
    assert_one_line_error(&serve(&["--hold-budget", "12Q"]), "--hold-budget");
    assert_one_line_error(&serve(&["--hold-budget", "64K"]), "--hold-budget");
    assert_one_line_error(&serve(&["--stall-timeout", "100000"]), "--stall-timeout");
    assert_one_line_error(&serve(&["--buffer-size", "10"]), "--buffer-size");
    assert_one_line_error(&serve(&["--conn-buffers", "0"]), "--conn-buffers");
    assert_one_line_error(&serve(&["--bind", "not-an-ip"]), "--bind");
    assert_one_line_error(&serve(&["--udp-buffers", "3"]), "--udp-buffers");
    assert_one_line_error(&serve(&["--udp-rate", "0"]), "--udp-rate");
    assert_usage_error(
        &serve(&["--proto", "sctp"]),
        "invalid value 'sctp' for '--proto",
        &[
            "[possible values: tcp, udp, both]",
            "tip: a similar value exists: 'tcp'",
        ],
    );
}

#[test]
fn port_in_use_by_a_plain_listener() {
    let holder = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = holder.local_addr().expect("addr").port().to_string();
    for engine in ["uring", "epoll"] {
        let out = serve(&["--engine", engine, "--port", &port]);
        assert_one_line_error(&out, "Address already in use");
        assert_eq!(out.status.code(), Some(1));
    }
}

#[test]
fn udp_port_in_use_is_named_too() {
    // Someone holds the UDP port only: TCP alone still starts, both (the default) does not.
    // An ephemeral UDP port's TCP twin may be some other test's client port at that
    // moment: then the server (rightly) fails on TCP first, so try a fresh port.
    for engine in ["uring", "epoll"] {
        let mut last = None;
        for _ in 0..20 {
            let held = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            let port = held.local_addr().expect("addr").port().to_string();
            let out = serve(&["--engine", engine, "--port", &port]);
            let tcp_taken = String::from_utf8_lossy(&out.stderr).contains("cannot listen");
            last = Some(out);
            if !tcp_taken {
                break;
            }
        }
        let out = last.expect("at least one try");
        assert_one_line_error(&out, "cannot bind udp");
    }
    let s = Server::start(&["--proto", "tcp"]);
    assert!(
        s.banner.contains("listening on tcp") && !s.banner.contains("udp"),
        "{}",
        s.banner
    );
}

#[test]
fn port_in_use_by_another_ringecho() {
    // Both set SO_REUSEPORT, which would let the second silently share the port: the
    // first listener binds exclusively to catch exactly this.
    let first = Server::start(&["--threads", "2"]);
    let port = first.addr.port().to_string();
    let out = serve(&["--port", &port]);
    assert_one_line_error(&out, "Address already in use");
}

#[test]
fn unknown_subcommand_and_missing_address() {
    let out = ringecho(&["frobnicate"]);
    assert_usage_error(&out, "unrecognized subcommand 'frobnicate'", &[]);
    let out = run_bounded(Command::new(bin()).arg("check"), Duration::from_secs(10));
    assert_usage_error(
        &out,
        "the following required arguments were not provided: <ADDR> (see 'ringecho check --help')",
        &[],
    );
    let out = ringecho(&["bench", "latency", "127.0.0.1:9"]);
    assert_usage_error(
        &out,
        "not provided: --rate <RATE> (see 'ringecho bench latency --help')",
        &[],
    );
}

#[test]
fn a_misspelt_flag_gets_clap_s_suggestion() {
    assert_usage_error(
        &serve(&["--prot", "tcp"]),
        "unexpected argument '--prot' found (see 'ringecho serve --help')",
        &["tip: a similar argument exists: '--proto'"],
    );
    let out = ringecho(&["bench-all", "--quik"]);
    assert_usage_error(
        &out,
        "unexpected argument '--quik' found (see 'ringecho bench-all --help')",
        &["tip: a similar argument exists: '--quick'"],
    );
}

/// `serve ARGS` under `prlimit LIMIT`, timed.
fn serve_limited(limit: &str, args: &[&str]) -> (std::process::Output, Duration) {
    let start = std::time::Instant::now();
    let out = run_bounded(
        Command::new("prlimit")
            .arg(limit)
            .arg(bin())
            .args(["serve", "--port", "0"])
            .args(args),
        Duration::from_secs(20),
    );
    (out, start.elapsed())
}

/// A start-up failure is one line naming the cause, at once: the worker whose failure
/// ends start-up is not a straggler to wait out the stop grace for, nor to report.
fn assert_fails_at_once(out: &std::process::Output, took: Duration, cause: &str) {
    assert_one_line_error(out, cause);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("did not stop"), "{err}");
    assert!(out.stdout.is_empty(), "announced anyway: {:?}", out.stdout);
    assert!(took < Duration::from_secs(5), "took {took:?}: {err}");
}

#[test]
fn startup_failure_for_too_few_descriptors_is_one_line_at_once() {
    // Eight descriptors let one of two workers set up and not the other; which one, and
    // whether the first would already be accepting (an accept fails with EMFILE even with
    // no connection waiting), is a race: hence a few tries each.
    for engine in ["uring", "epoll"] {
        for _ in 0..10 {
            let (out, took) =
                serve_limited("--nofile=8:8", &["--engine", engine, "--threads", "2"]);
            assert_fails_at_once(&out, took, "Too many open files");
        }
    }
}

#[test]
fn startup_failure_for_a_pool_too_big_to_map_is_one_line_at_once() {
    // A 32 GiB pool (the io_uring pool is the hold budget) under a 4 GiB address-space
    // limit: the map fails on any host, whatever its overcommit policy.
    let (out, took) = serve_limited(
        "--as=4294967296",
        &[
            "--engine",
            "uring",
            "--threads",
            "2",
            "--hold-budget",
            "32G",
            "--buffer-size",
            "1048576",
        ],
    );
    assert_fails_at_once(&out, took, "Cannot allocate memory");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("buffer ring"), "{err}");
}

#[test]
fn bench_thread_counts_no_machine_can_spawn_are_refused() {
    // Tens of thousands of threads exhaust the kernel's map limit, where a thread that did
    // start aborts the process (its signal stack), so such counts are refused up front.
    for (args, needle) in [
        (
            &["throughput", "--threads", "100000"][..],
            "--threads must be",
        ),
        (
            &["latency", "--rate", "100", "--threads", "100000"][..],
            "--threads must be",
        ),
        (&["burst", "--threads", "100000"][..], "--threads must be"),
    ] {
        let out = run_bounded(
            Command::new(bin())
                .arg("bench")
                .args(args)
                .arg("127.0.0.1:9"),
            Duration::from_secs(20),
        );
        assert_one_line_error(&out, needle);
    }
}

#[test]
fn bench_thread_spawn_failure_is_one_line() {
    // RLIMIT_NPROC of 20 tasks lets a few threads start and then fails the next spawn. It
    // binds only a user without CAP_SYS_RESOURCE, so root runs the bench as nobody.
    let server = Server::start(&["--threads", "1", "--proto", "tcp"]);
    let addr = server.connect_addr().to_string();
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    for (args, needle) in [
        (
            &["throughput", "--threads", "64", "--secs", "1"][..],
            "spawning load thread",
        ),
        (
            &[
                "latency",
                "--rate",
                "100",
                "--conns",
                "64",
                "--threads",
                "64",
                "--secs",
                "1",
            ][..],
            "spawning load thread",
        ),
        (
            &["burst", "--threads", "1000", "--rounds", "1"][..],
            "spawning burst thread",
        ),
    ] {
        let mut cmd = if root {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "prlimit",
            ]);
            c
        } else {
            Command::new("prlimit")
        };
        cmd.arg("--nproc=20")
            .arg(bin())
            .arg("bench")
            .args(args)
            .arg(&addr);
        let out = run_bounded(&mut cmd, Duration::from_secs(30));
        assert_one_line_error(&out, needle);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Resource temporarily unavailable"),
            "{out:?}"
        );
    }
}

#[test]
fn check_needs_at_least_one_non_reader() {
    let out = ringecho(&["check", "127.0.0.1:9", "--non-readers", "0"]);
    assert_one_line_error(&out, "--non-readers must be at least 1");
}

/// A port that was free a moment ago: a listener the test opened and closed.
fn closed_tcp_port() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    addr.to_string()
}

#[test]
fn clients_against_a_port_nobody_listens_on_fail_in_one_line() {
    let addr = closed_tcp_port();
    let pid = std::process::id().to_string();
    let want = format!("nothing listens on {addr} (connection refused)");
    for args in [
        &["check", &addr][..],
        &["bench", "throughput", &addr],
        &["bench", "latency", &addr, "--rate", "100"],
        &["bench", "burst", &addr],
        &["bench", "idle", &addr, "--server-pid", &pid],
    ] {
        let out = run_bounded(Command::new(bin()).args(args), Duration::from_secs(20));
        assert_one_line_error(&out, &want);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        // Before the probe, check printed a failure per case and bench a report of zeros.
        assert!(out.stdout.is_empty(), "{args:?} printed {out:?}");
    }
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let udp_addr = udp.local_addr().expect("addr").to_string();
    drop(udp);
    let out = ringecho(&["bench", "udp", &udp_addr]);
    assert_one_line_error(
        &out,
        &format!("nothing listens on udp {udp_addr} (ICMP port unreachable)"),
    );
    assert!(out.stdout.is_empty(), "{out:?}");
}

/// `ringecho check ... | head -1`: the tool stops quietly when its reader goes away, with
/// no panic or backtrace (Rust ignores SIGPIPE, so `println!` would panic).
#[test]
fn a_closed_stdout_ends_the_run_quietly() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let s = Server::start(&["--threads", "1", "--proto", "tcp"]);
    let mut child = Command::new(bin())
        .args(["check", &s.connect_addr().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn check");
    let stdout = child.stdout.take().expect("stdout piped");
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .expect("the first line");
    // The reader is dropped here: the pipe closes, and check's next line fails.
    assert!(first.starts_with("ringecho check "), "{first}");
    let out = run_bounded_child(child, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(141), "{stderr}");
}

/// Wait for a spawned child, killing it after `limit`.
fn run_bounded_child(mut child: std::process::Child, limit: Duration) -> std::process::Output {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    child.wait_with_output().expect("wait")
}
