//! Bad input: every mistake is one clear line on stderr and a non-zero exit, never a panic.

mod common;

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use common::{assert_one_line_error, bin, run_bounded, Server};

fn serve(args: &[&str]) -> std::process::Output {
    run_bounded(
        Command::new(bin()).arg("serve").args(args),
        Duration::from_secs(20),
    )
}

#[test]
fn unknown_engine() {
    let out = serve(&["--engine", "kqueue"]);
    assert_one_line_error(&out, "invalid value 'kqueue' for '--engine");
    assert_eq!(out.status.code(), Some(2));
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
    assert_one_line_error(&serve(&["--proto", "sctp"]), "--proto");
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
    let out = run_bounded(
        Command::new(bin()).arg("frobnicate"),
        Duration::from_secs(10),
    );
    assert_one_line_error(&out, "frobnicate");
    let out = run_bounded(Command::new(bin()).arg("check"), Duration::from_secs(10));
    assert!(!out.status.success());
}
