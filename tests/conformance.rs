//! `ringecho check` against our own servers: both engines, both io_uring feature sets,
//! IPv4 and IPv6, and a starved buffer pool. Each run sends every case's bytes through the
//! real binary and compares every byte.

mod common;

use std::sync::{Mutex, PoisonError};

use common::{check, Server};

/// One check at a time: the many-non-readers case alone takes loopback TCP to the
/// kernel's memory-pressure threshold on a small machine (over 1 GiB queued), and two at
/// once would push each other past it.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn assert_conforms(server_args: &[&str]) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let s = Server::start(server_args);
    let out = check(s.connect_addr(), &["--timeout", "30"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check failed against `serve {server_args:?}`:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("result: all"), "{stdout}");
    assert!(
        stdout.contains("one non-reader bounded") && stdout.contains("many non-readers"),
        "{stdout}"
    );
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn uring_auto() {
    assert_conforms(&["--engine", "uring", "--threads", "2"]);
}

#[test]
fn uring_compat_6_1() {
    assert_conforms(&["--engine", "uring", "--compat", "6.1", "--threads", "2"]);
}

#[test]
fn epoll() {
    assert_conforms(&["--engine", "epoll", "--threads", "2"]);
}

#[test]
fn uring_ipv6() {
    assert_conforms(&["--engine", "uring", "--bind", "::1", "--threads", "1"]);
}

#[test]
fn epoll_ipv6() {
    assert_conforms(&["--engine", "epoll", "--bind", "::1", "--threads", "1"]);
}

#[test]
fn uring_dual_stack_wildcard() {
    assert_conforms(&["--engine", "uring", "--bind", "::", "--threads", "2"]);
}

/// A pool far smaller than the load: ENOBUFS, re-arming and backpressure on every case.
#[test]
fn uring_starved_pool_both_feature_sets() {
    for compat in ["auto", "6.1"] {
        assert_conforms(&[
            "--engine",
            "uring",
            "--compat",
            compat,
            "--threads",
            "1",
            "--hold-budget",
            "32K",
            "--buffer-size",
            "512",
            "--conn-buffers",
            "4",
        ]);
    }
}

#[test]
fn epoll_small_buffers() {
    assert_conforms(&[
        "--engine",
        "epoll",
        "--threads",
        "1",
        "--buffer-size",
        "512",
        "--conn-buffers",
        "4",
    ]);
}
