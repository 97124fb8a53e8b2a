//! UDP echo: `ringecho check --udp` against our own servers (both engines, both io_uring
//! feature sets, IPv4, IPv6 and dual stack), the reflection guard seen from a socket bound
//! to a guarded port, the largest datagram, and the checker against fake servers that are
//! wrong in one way each, to show it fails the right case.
//!
//! Every checker run binds a guarded source port (11211, 1900 or 5353), so each test
//! that gets that far runs its servers, fakes and checkers inside a network namespace
//! of its own: none of them holds a port on the host, and they run in parallel.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::netns::Netns;
use common::{check_udp, check_udp_in, each_engine, Server, ENGINES};

/// The ports the server never answers (its deny list).
const DENY: [u16; 15] = [
    7, 13, 17, 19, 37, 53, 111, 123, 137, 161, 389, 1900, 3702, 5353, 11211,
];

/// The guarded ports a test may bind (unprivileged), in the checker's order.
const BINDABLE_GUARDED: [u16; 3] = [11211, 1900, 5353];

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Run the checker (in `ns`) against `target` and require every case to pass, with the
/// numbers the issue asks for.
fn assert_passes(ns: &Netns, target: SocketAddr, what: &str) {
    let out = check_udp_in(ns, target, &["--timeout", "10"]);
    let t = text(&out);
    assert!(
        out.status.success(),
        "check --udp {target} failed against {what}:\n{t}"
    );
    assert!(t.contains("result: all 4 cases passed"), "{what}:\n{t}");
    assert!(!t.contains("FAIL"), "{what}:\n{t}");
    assert!(t.contains("1, 0, 1472, 8192, 65507 B"), "{what}:\n{t}");
    assert!(
        t.contains("10000 datagrams of 8..200 B from 64 ports") && t.contains("none lost"),
        "{what}:\n{t}"
    );
    assert!(
        t.contains("no reply to 3 datagrams from port"),
        "{what}:\n{t}"
    );
    assert!(
        t.contains("1 bounce answered, then silence")
            && t.contains("a new payload from that port was still echoed"),
        "{what}:\n{t}"
    );
}

/// A namespace of its own and `serve ENGINE MORE...` inside it, with the arguments (for
/// messages). Bound in this order, the server stops before its namespace goes.
fn server_in_netns<'a>(engine: &[&'a str], more: &[&'a str]) -> (Netns, Server, Vec<&'a str>) {
    let args = [engine, more].concat();
    let ns = Netns::new();
    let s = Server::start_in(&ns, &args);
    (ns, s, args)
}

/// The checker against a server on 127.0.0.1, on ::1, and on each wildcard reached
/// through every loopback address of its families. 127.0.0.2 is loopback too but not
/// the address the kernel would pick to reply from: an echo from the wrong source fails.
fn conforms_everywhere(engine: &[&str]) {
    let v4 = |o| IpAddr::V4(Ipv4Addr::new(127, 0, 0, o));
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let plans: [(&str, Vec<IpAddr>); 4] = [
        ("127.0.0.1", vec![v4(1)]),
        ("::1", vec![v6]),
        ("0.0.0.0", vec![v4(1), v4(2)]),
        ("::", vec![v4(1), v4(2), v6]),
    ];
    for (bind, targets) in plans {
        let (ns, s, args) = server_in_netns(engine, &["--bind", bind, "--threads", "2"]);
        for ip in targets {
            let target = SocketAddr::new(ip, s.udp_addr().port());
            assert_passes(&ns, target, &format!("serve {args:?}"));
        }
    }
}

#[test]
fn every_engine_conforms_on_every_address() {
    each_engine(conforms_everywhere);
}

#[test]
fn udp_only_servers_conform_and_serve_no_tcp() {
    for engine in ENGINES {
        let (ns, s, args) = server_in_netns(engine, &["--proto", "udp", "--threads", "1"]);
        assert!(
            s.banner.contains("listening on udp 127.0.0.1:") && !s.banner.contains("tcp"),
            "{}",
            s.banner
        );
        assert_eq!(s.udp_addr(), s.addr);
        let tcp = ns.run(|| std::net::TcpStream::connect(s.addr));
        assert!(tcp.is_err(), "TCP served");
        assert_passes(&ns, s.udp_connect_addr(), &format!("serve {args:?}"));
    }
}

/// A socket on the first guarded port free here; panics naming why none was.
fn bind_guarded(ip: IpAddr) -> (UdpSocket, u16) {
    let mut why = Vec::new();
    for port in BINDABLE_GUARDED {
        match UdpSocket::bind(SocketAddr::new(ip, port)) {
            Ok(s) => return (s, port),
            Err(e) => why.push(format!("{port}: {e}")),
        }
    }
    panic!("no guarded port could be bound to test the guard: {why:?}");
}

/// Send `data` from `s` and wait (resending, bounded) for its echo from `target`.
fn echo(s: &UdpSocket, target: SocketAddr, data: &[u8]) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut buf = vec![0u8; 1 << 16];
    for _ in 0..6 {
        s.send_to(data, target).expect("send");
        if let Ok((n, from)) = s.recv_from(&mut buf) {
            assert_eq!(from, target, "echo from the wrong address");
            return buf[..n].to_vec();
        }
    }
    panic!("no echo of {} bytes from {target} in 6 tries", data.len());
}

#[test]
fn guarded_ports_get_no_reply_while_ordinary_ones_do() {
    for engine in ENGINES {
        for bind in ["127.0.0.1", "::1"] {
            let (ns, s, args) = server_in_netns(engine, &["--bind", bind, "--threads", "1"]);
            let target = s.udp_connect_addr();
            let ip: IpAddr = bind.parse().expect("ip");
            let ((guarded, port), ordinary) = ns.run(|| {
                let ordinary = UdpSocket::bind(SocketAddr::new(ip, 0)).expect("bind");
                (bind_guarded(ip), ordinary)
            });
            for i in 0..3u8 {
                guarded.send_to(&[i; 40], target).expect("send");
            }
            let data = common::payload(1000, 11);
            assert_eq!(echo(&ordinary, target, &data), data, "{args:?}");
            guarded
                .set_read_timeout(Some(Duration::from_millis(500)))
                .expect("timeout");
            let mut buf = [0u8; 64];
            let got = guarded.recv_from(&mut buf);
            assert!(
                got.is_err(),
                "serve {args:?}: guarded port {port} got a reply: {got:?}"
            );
        }
    }
}

#[test]
fn the_largest_ipv6_datagram_comes_back_whole() {
    // No flag sets the server's UDP buffer size (every buffer holds 64 KiB), so the
    // closest test of "never echoed truncated" is the largest datagram there is: 65,527
    // bytes, possible only over IPv6 (the checker asks 65,507 of both families).
    for engine in ENGINES {
        let mut args = engine.to_vec();
        args.extend(["--bind", "::1", "--threads", "1"]);
        let s = Server::start(&args);
        let c = UdpSocket::bind("[::1]:0").expect("bind");
        let data = common::payload(65_527, 3);
        let got = echo(&c, s.udp_connect_addr(), &data);
        assert_eq!(got.len(), data.len(), "{args:?}");
        assert!(got == data, "{args:?}: bytes differ");
    }
}

/// How a fake server is wrong.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    /// None: a correct echo server with the guard and a loop breaker.
    Correct,
    /// Has the guard but no loop breaker: echoes its own echo bounced back, forever.
    Loops,
    /// Flips byte 100 of every datagram longer than that.
    FlipByte100,
    /// Drops every 100th datagram it receives.
    DropEvery100th,
    /// Echoes every 50th datagram twice.
    DuplicateEvery50th,
    /// Has no guard (and no loop breaker): answers guarded ports too.
    ReflectAll,
    /// Never answers.
    Silent,
}

/// A UDP echo server in a thread of this process, wrong in one way. Stops on drop.
struct Fake {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Fake {
    /// Bound to `bind` (port 0) in `ns`.
    fn start(ns: &Netns, fault: Fault, bind: &str) -> Fake {
        let sock = ns.run(|| Fake::socket(bind));
        Fake::serve(sock, fault)
    }

    fn socket(bind: &str) -> UdpSocket {
        let sock = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .expect("socket");
        // Room for everything the checker has in flight: the fake must lose nothing by
        // itself, or the loss it is told to cause would not be exact.
        sock.set_recv_buffer_size(4 << 20).expect("rcvbuf");
        let bind: SocketAddr = format!("{bind}:0").parse().expect("addr");
        sock.bind(&bind.into()).expect("bind");
        sock.into()
    }

    fn serve(s: UdpSocket, fault: Fault) -> Fake {
        s.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let addr = s.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            let mut n: u64 = 0;
            // The loop breaker: what was last echoed to each peer, and when.
            let mut last: HashMap<SocketAddr, (Vec<u8>, Instant)> = HashMap::new();
            while !flag.load(Ordering::Relaxed) {
                let Ok((len, from)) = s.recv_from(&mut buf) else {
                    continue;
                };
                n += 1;
                let d = &mut buf[..len];
                let guarded = from.port() == 0 || DENY.contains(&from.port());
                let bounced = last.get(&from).is_some_and(|(sent, at)| {
                    sent[..] == d[..] && at.elapsed() < Duration::from_millis(50)
                });
                let send = match fault {
                    Fault::Silent => 0,
                    Fault::ReflectAll => 1,
                    _ if guarded => 0,
                    Fault::Loops => 1,
                    _ if bounced => 0,
                    Fault::Correct => 1,
                    Fault::FlipByte100 => {
                        if let Some(b) = d.get_mut(100) {
                            *b ^= 0x20;
                        }
                        1
                    }
                    Fault::DropEvery100th => usize::from(!n.is_multiple_of(100)),
                    Fault::DuplicateEvery50th => 1 + usize::from(n.is_multiple_of(50)),
                };
                for _ in 0..send {
                    let _ = s.send_to(d, from);
                }
                if send > 0 {
                    last.insert(from, (d.to_vec(), Instant::now()));
                }
            }
        });
        Fake {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Run the checker against `target` (in `ns`, if given); return its output and the names
/// of the failed cases.
fn failed_cases(ns: Option<&Netns>, target: SocketAddr, timeout: &str) -> (String, Vec<String>) {
    let args = ["--timeout", timeout, "--seed", "5"];
    let out = match ns {
        Some(ns) => check_udp_in(ns, target, &args),
        None => check_udp(target, &args),
    };
    let t = text(&out);
    let failed: Vec<String> = t
        .lines()
        .filter(|l| l.contains(" FAIL "))
        .map(|l| l.split(" FAIL ").next().unwrap_or("").trim().to_string())
        .collect();
    assert_eq!(
        out.status.success(),
        failed.is_empty(),
        "exit status disagrees with the table:\n{t}"
    );
    assert!(
        t.starts_with(&format!("ringecho check --udp {target} (seed 5, ")),
        "{t}"
    );
    (t, failed)
}

/// The checker (`--timeout TIMEOUT`) against a fake with `fault` on 127.0.0.1, both in
/// a namespace of their own: its output and the names of the failed cases.
fn against_fake(fault: Fault, timeout: &str) -> (String, Vec<String>) {
    let ns = Netns::new();
    let f = Fake::start(&ns, fault, "127.0.0.1");
    failed_cases(Some(&ns), f.addr, timeout)
}

#[test]
fn the_checker_passes_a_correct_fake() {
    let (t, failed) = against_fake(Fault::Correct, "5");
    assert!(failed.is_empty(), "{t}");
    assert!(t.contains("result: all 4 cases passed"), "{t}");
}

#[test]
fn a_flipped_byte_fails_the_sizes_and_the_many_ports_case() {
    let (t, failed) = against_fake(Fault::FlipByte100, "5");
    assert_eq!(
        failed,
        ["datagram sizes", "many ports, loss counted"],
        "{t}"
    );
    assert!(
        t.contains("1472 B: byte 100 differs")
            && t.contains("8192 B: byte 100 differs")
            && t.contains("65507 B: byte 100 differs"),
        "{t}"
    );
    // Datagrams are 8..200 bytes: about half are long enough to be flipped.
    let wrong = count_after(&t, "wrong ");
    assert!((3000..7000).contains(&wrong), "{wrong} wrong:\n{t}");
    assert!(t.contains("lost 0 (0.00%)"), "{t}");
    assert!(t.contains("result: 2 of 4 cases FAILED"), "{t}");
}

#[test]
fn a_dropped_datagram_in_a_hundred_is_counted_exactly() {
    let (t, failed) = against_fake(Fault::DropEvery100th, "1");
    assert_eq!(failed, ["many ports, loss counted"], "{t}");
    // The sizes case sends 5 datagrams first, so the 10,000 of this case are the fake's
    // 6th to 10,005th: exactly 100 multiples of 100.
    assert!(
        t.contains("9900 of 10000 echoed; lost 100 (1.00%), duplicated 0, wrong 0"),
        "{t}"
    );
}

#[test]
fn duplicates_are_counted() {
    let (t, failed) = against_fake(Fault::DuplicateEvery50th, "5");
    assert_eq!(failed, ["many ports, loss counted"], "{t}");
    assert!(t.contains("10000 of 10000 echoed; lost 0"), "{t}");
    // 200 duplicates were sent; one trailing the last echo of its socket may be missed.
    let dup = count_after(&t, "duplicated ");
    assert!((150..=200).contains(&dup), "{dup} duplicates:\n{t}");
}

#[test]
fn a_server_without_the_guard_fails_the_guard_and_loop_cases() {
    let (t, failed) = against_fake(Fault::ReflectAll, "5");
    assert_eq!(failed, ["guarded source port", "echo loop"], "{t}");
    assert!(t.contains("reflects to a guarded port"), "{t}");
}

#[test]
fn a_looping_server_fails_the_loop_case_alone() {
    let start = Instant::now();
    let (t, failed) = against_fake(Fault::Loops, "5");
    assert_eq!(failed, ["echo loop"], "{t}");
    assert!(
        t.contains("echo loop: the server answered 3 bounces of its own echo in a row"),
        "{t}"
    );
    assert!(t.contains("result: 1 of 4 cases FAILED"), "{t}");
    // Caught at once, not after waiting out a timeout.
    assert!(start.elapsed() < Duration::from_secs(5), "{t}");
}

#[test]
fn a_reply_from_the_wrong_address_fails() {
    // Bound to the wildcard and replying without asking where each datagram arrived:
    // asked on 127.0.0.2, the reply leaves from 127.0.0.1.
    let ns = Netns::new();
    let f = Fake::start(&ns, Fault::Correct, "0.0.0.0");
    let target = SocketAddr::new(Ipv4Addr::new(127, 0, 0, 2).into(), f.addr.port());
    let (t, failed) = failed_cases(Some(&ns), target, "2");
    assert_eq!(
        failed,
        [
            "datagram sizes",
            "many ports, loss counted",
            "guarded source port",
            "echo loop"
        ],
        "{t}"
    );
    let from = format!("came from 127.0.0.1:{}, not from {target}", f.addr.port());
    assert!(t.contains(&from), "{t}");
    assert!(t.contains("from another address 10000"), "{t}");
    assert!(t.contains("proves nothing"), "{t}");
    // The same fake reached on the address it replies from passes.
    let (t, failed) = failed_cases(
        Some(&ns),
        SocketAddr::new(Ipv4Addr::LOCALHOST.into(), f.addr.port()),
        "5",
    );
    assert!(failed.is_empty(), "{t}");
}

/// The checker against `target`, where no UDP echo server answers: within `limit`, the
/// header, one FAIL row saying `why`, and the closing line naming the cases not run.
fn assert_unreachable(target: SocketAddr, timeout: &str, limit: Duration, why: &str) {
    let start = Instant::now();
    let (t, failed) = failed_cases(None, target, timeout);
    assert!(start.elapsed() < limit, "{t}");
    assert_eq!(failed, ["datagram sizes"], "{t}");
    assert!(t.contains(why), "{t}");
    let summary = format!("result: FAILED: no UDP echo from {target}; 3 other cases not run");
    assert!(t.trim_end().ends_with(&summary), "{t}");
    assert_eq!(t.lines().count(), 3, "{t}");
}

#[test]
fn a_silent_server_is_one_unreachable_line() {
    // Unreachable after the first case: no guarded port is bound, so on the host.
    let f = Fake::serve(Fake::socket("127.0.0.1"), Fault::Silent);
    let why = "nothing came back from udp";
    assert_unreachable(f.addr, "1", Duration::from_secs(5), why);
}

#[test]
fn a_closed_port_is_reported_at_once() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port");
    let why = "ICMP port unreachable: nothing listens there";
    assert_unreachable(port, "10", Duration::from_secs(3), why);
}

#[test]
fn no_free_guarded_port_is_a_failure_not_a_skip() {
    let ns = Netns::new();
    // Hold every guarded port the checker could use (one held by someone else is just
    // as unusable to it).
    let held: Vec<_> = ns.run(|| {
        BINDABLE_GUARDED
            .iter()
            .map(|&p| UdpSocket::bind(("0.0.0.0", p)).expect("a free guarded port"))
            .collect()
    });
    let f = Fake::start(&ns, Fault::Correct, "127.0.0.1");
    let (t, failed) = failed_cases(Some(&ns), f.addr, "5");
    assert_eq!(failed, ["guarded source port"], "{t}");
    assert!(
        t.contains("could not bind any guarded source port") && t.contains("11211"),
        "{t}"
    );
    drop(held);
}

/// The number after the first `label` in `t`.
fn count_after(t: &str, label: &str) -> usize {
    t.split(label)
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {label:?} in:\n{t}"))
}
