//! `ringecho check` against our own servers: both engines, both io_uring feature sets,
//! IPv4 and IPv6, and a starved buffer pool. Each run sends every case's bytes through the
//! real binary and compares every byte.

mod common;

use std::sync::{Mutex, PoisonError};

use common::{check, Server, ENGINES};

/// One check at a time: the many-non-readers case alone takes loopback TCP to the
/// kernel's memory-pressure threshold on a small machine (over 1 GiB queued), and two at
/// once would push each other past it.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Every server the suite must pass against: both engines and both io_uring feature sets
/// with two workers, across IPv4, IPv6 and the dual-stack wildcard (the address family is
/// handled by code both engines share, so each family is one engine's run), and each
/// engine with buffers far smaller than the load (on io_uring a starved pool: ENOBUFS,
/// re-arming and backpressure on every case).
fn servers() -> Vec<Vec<&'static str>> {
    const SMALL_BUFFERS: [&str; 4] = ["--buffer-size", "512", "--conn-buffers", "4"];
    let binds = ["127.0.0.1", "::1", "::"];
    let mut all: Vec<Vec<&str>> = ENGINES
        .iter()
        .zip(binds)
        .map(|(e, bind)| [e, &["--threads", "2", "--bind", bind][..]].concat())
        .collect();
    for engine in ENGINES {
        let pool: &[&str] = if engine[1] == "uring" {
            &["--threads", "1", "--hold-budget", "32K"]
        } else {
            &["--threads", "1"]
        };
        all.push([engine, pool, &SMALL_BUFFERS].concat());
    }
    all
}

/// The suite against `serve SERVER_ARGS`: None if every case passed, else why not.
fn conforms(server_args: &[&str]) -> Option<String> {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let s = Server::start(server_args);
    let out = check(s.connect_addr(), &["--timeout", "30"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let complete = stdout.contains("result: all")
        && stdout.contains("one non-reader bounded")
        && stdout.contains("many non-readers")
        && !stdout.contains("FAIL");
    (!out.status.success() || !complete).then(|| {
        format!(
            "check against `serve {server_args:?}` ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Each server on its own thread (they still check one at a time); every failure is
/// reported, not only the first.
#[test]
fn every_server_configuration_conforms() {
    let servers = servers();
    let failures: Vec<String> = std::thread::scope(|sc| {
        let hs: Vec<_> = servers
            .iter()
            .map(|args| sc.spawn(move || conforms(args)))
            .collect();
        hs.into_iter()
            .filter_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
