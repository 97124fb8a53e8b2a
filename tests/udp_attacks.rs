//! UDP attacks against the real server, each inside network namespaces the test creates
//! and removes: a forged datagram from our own port on this host (a self-loop), two
//! servers started echoing at each other by one forged datagram, broadcast and
//! multicast "fraggle" datagrams, one address spreading over many source ports to beat
//! `--udp-rate`, and `--bind` to a group address. Also that legitimate clients that
//! repeat a payload are served exactly as the loop breaker's rule promises. Sources are
//! forged with raw sockets (`IPPROTO_RAW`, which implies `IP_HDRINCL`) inside the
//! namespaces only. Counts come from the server's own `--stats` lines.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::netns::Netns;
use common::{each_engine, Server, ENGINES};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// The loop breaker's window (src/server/udp/loops.rs), and a pace safely outside it.
const WINDOW: Duration = Duration::from_millis(200);
const SLOW: Duration = Duration::from_millis(300);

/// The UDP totals of one `--stats` line, by name ("echoed", "loops", ...).
fn udp_totals(line: &str) -> HashMap<String, u64> {
    let udp = line
        .split("| udp:")
        .nth(1)
        .unwrap_or_else(|| panic!("no udp part in {line}"));
    let totals = udp
        .split("total: ")
        .nth(1)
        .unwrap_or_else(|| panic!("no udp totals in {line}"));
    totals
        .split(", ")
        .map(|kv| {
            let (n, name) = kv
                .trim()
                .split_once(' ')
                .unwrap_or_else(|| panic!("bad total {kv:?} in {line}"));
            let n = n
                .parse()
                .unwrap_or_else(|_| panic!("bad count {kv:?} in {line}"));
            (name.to_string(), n)
        })
        .collect()
}

/// Totals from a `--stats 1` line printed at least `settle` from now (so it counts
/// everything done before this call and whatever followed within `settle`).
fn totals_after(s: &Server, settle: Duration) -> HashMap<String, u64> {
    std::thread::sleep(settle);
    while s.lines.try_recv().is_ok() {}
    let line = s
        .wait_line("| udp:", Duration::from_secs(3))
        .expect("a --stats line");
    udp_totals(&line)
}

fn count(t: &HashMap<String, u64>, name: &str) -> u64 {
    *t.get(name)
        .unwrap_or_else(|| panic!("no {name:?} total in {t:?}"))
}

/// Send one UDP datagram with a forged source, through a raw socket (`IPPROTO_RAW`, so
/// the IP header is ours: `IP_HDRINCL`, `IPV6_HDRINCL`). Over IPv4 the kernel fills in
/// the length, the id and the header checksum, and the UDP checksum may be left out;
/// over IPv6 it is mandatory, so it is computed here over the pseudo-header. Must run
/// inside the namespace it forges in.
fn forge(src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
    let udp_len = 8 + payload.len();
    let mut udp = Vec::with_capacity(udp_len);
    udp.extend(src.port().to_be_bytes());
    udp.extend(dst.port().to_be_bytes());
    udp.extend((udp_len as u16).to_be_bytes());
    udp.extend([0, 0]); // the checksum
    udp.extend(payload);
    let proto = libc::IPPROTO_UDP as u8;
    let (domain, mut p, to) = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut h = vec![0u8; 20];
            h[0] = 0x45; // IPv4, 5-word header
            h[2..4].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
            h[8] = 64; // TTL
            h[9] = proto;
            h[12..16].copy_from_slice(&s.octets());
            h[16..20].copy_from_slice(&d.octets());
            (Domain::IPV4, h, dst)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut h = vec![0u8; 40];
            h[0] = 0x60; // version 6
            h[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
            h[6] = proto;
            h[7] = 64; // hop limit
            h[8..24].copy_from_slice(&s.octets());
            h[24..40].copy_from_slice(&d.octets());
            // One's-complement sum of the pseudo-header (addresses, length, next
            // header) and the UDP header and payload.
            let mut sum: u32 = 0;
            let mut add = |b: &[u8]| {
                for pair in b.chunks(2) {
                    let hi = u32::from(pair[0]) << 8;
                    sum += hi | pair.get(1).map_or(0, |&lo| u32::from(lo));
                }
            };
            add(&h[8..40]);
            add(&(udp_len as u32).to_be_bytes());
            add(&[0, 0, 0, proto]);
            add(&udp);
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            let csum = match !(sum as u16) {
                0 => 0xffff,
                c => c,
            };
            udp[6..8].copy_from_slice(&csum.to_be_bytes());
            (Domain::IPV6, h, SocketAddr::new(d.into(), 0))
        }
        _ => panic!("forging {src} -> {dst}: one family, please"),
    };
    p.extend(udp);
    let raw = Socket::new(domain, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW)))
        .expect("raw socket");
    let sent = raw.send_to(&p, &SockAddr::from(to)).expect("forged send");
    assert_eq!(sent, p.len());
}

/// Send `data` from `c` to `to` and wait up to `wait` for exactly it to come back.
fn echoed(c: &UdpSocket, to: SocketAddr, data: &[u8], wait: Duration) -> bool {
    c.send_to(data, to).expect("send");
    c.set_read_timeout(Some(wait)).expect("timeout");
    let mut buf = [0u8; 2048];
    match c.recv_from(&mut buf) {
        Ok((n, from)) => {
            assert_eq!(from, to, "reply from the wrong address");
            assert_eq!(&buf[..n], data, "wrong echo");
            true
        }
        Err(_) => false,
    }
}

/// `ringecho serve --proto udp --stats 1 --threads THREADS` with `engine`'s flags and then
/// `more`, inside `ns`; returns it and its arguments (for messages).
fn udp_server<'a>(
    ns: &Netns,
    engine: &[&'a str],
    threads: &'a str,
    more: &[&'a str],
) -> (Server, Vec<&'a str>) {
    let mut args = engine.to_vec();
    args.extend(["--proto", "udp", "--threads", threads, "--stats", "1"]);
    args.extend_from_slice(more);
    (Server::start_in(ns, &args), args)
}

/// A veth pair d0-d1 inside `ns`, both ends up: more addresses of this one "host", on
/// interfaces that are not loopback. Each of `addrs` is the rest of an `ip addr add`.
fn local_links(ns: &Netns, addrs: &[&[&str]]) {
    ns.ip(&["link", "add", "d0", "type", "veth", "peer", "name", "d1"]);
    for a in addrs {
        let mut cmd = vec!["addr", "add"];
        cmd.extend_from_slice(a);
        ns.ip(&cmd);
    }
    ns.ip(&["link", "set", "d0", "up"]);
    ns.ip(&["link", "set", "d1", "up"]);
}

/// After `forge_all` (inside `ns`) has sent `forged` datagrams that would make `s` answer
/// itself, a client bound to `client` is still echoed at `to`, every forgery was counted
/// as from ourselves, and only the client was echoed.
fn assert_only_the_client_echoed(
    ns: &Netns,
    s: &Server,
    args: &[&str],
    forge_all: impl FnOnce() + Send,
    (client, to): (SocketAddr, SocketAddr),
    forged: u64,
) {
    ns.run(|| {
        forge_all();
        let c = UdpSocket::bind(client).expect("bind");
        assert!(echoed(&c, to, b"still served", Duration::from_secs(2)));
    });
    let t = totals_after(s, Duration::from_millis(1200));
    assert_eq!(count(&t, "ourselves"), forged, "{args:?}: {t:?}");
    assert_eq!(count(&t, "echoed"), 1, "{args:?}: only the client: {t:?}");
    assert_eq!(count(&t, "loops"), 0, "{args:?}: {t:?}");
}

#[test]
fn a_forged_datagram_from_our_own_port_on_this_host_is_not_echoed() {
    // Two more addresses of this "host", on non-loopback interfaces, and datagrams
    // that would each be answered from our port to our port on another local address:
    // into this server again, forever. (bind, links, forged (from, to), client address)
    let v4_links: &[&[&str]] = &[
        &["10.77.0.1/24", "dev", "d0"],
        &["10.88.0.1/24", "dev", "d1"],
    ];
    let v4_loops = [
        ("127.0.0.2", "127.0.0.1"),
        ("127.0.0.1", "127.0.0.2"),
        ("10.77.0.1", "127.0.0.1"),
        ("127.0.0.1", "10.77.0.1"),
        ("10.88.0.1", "10.77.0.1"),
    ];
    let v6_links: &[&[&str]] = &[&["fd88::1/64", "dev", "d0", "nodad"]];
    let v6_loops = [("fd88::1", "::1"), ("::1", "fd88::1")];
    let cases = [
        ("0.0.0.0", v4_links, &v4_loops[..], "127.0.0.1"),
        ("::", v4_links, &v4_loops[..], "127.0.0.1"),
        ("::", v6_links, &v6_loops[..], "::1"),
    ];
    each_engine(|engine| {
        for (bind, links, loops, client) in cases {
            let ns = Netns::new();
            local_links(&ns, links);
            let (s, args) = udp_server(&ns, engine, "2", &["--bind", bind]);
            let port = s.udp_addr().port();
            let at = |ip: &str| SocketAddr::new(ip.parse().expect("ip"), port);
            let forge_all = || {
                for (i, (from, to)) in loops.iter().enumerate() {
                    let payload = format!("self loop {}", i + 1);
                    forge(at(from), at(to), payload.as_bytes());
                }
            };
            let bound = SocketAddr::new(client.parse().expect("ip"), 0);
            let forged = loops.len() as u64;
            assert_only_the_client_echoed(&ns, &s, &args, forge_all, (bound, at(client)), forged);
        }
    });
}

#[test]
fn two_servers_started_on_each_other_stop_after_a_bounce() {
    let pairs: [(&[&str], &[&str]); 3] = [
        (ENGINES[0], ENGINES[0]),
        (ENGINES[2], ENGINES[2]),
        (ENGINES[1], ENGINES[2]),
    ];
    std::thread::scope(|sc| {
        let hs: Vec<_> = pairs
            .iter()
            .map(|(ea, eb)| {
                sc.spawn(move || {
                    let ns = Netns::new();
                    let start = |e: &[&'static str]| udp_server(&ns, e, "2", &[]).0;
                    let (a, b) = (start(ea), start(eb));
                    let (pa, pb) = (a.udp_addr().port(), b.udp_addr().port());
                    let at = |p| SocketAddr::from((Ipv4Addr::LOCALHOST, p));
                    // "From A" to B: B echoes to A, A echoes to B, and so on.
                    ns.run(|| forge(at(pa), at(pb), b"ping-pong between two echo servers"));
                    let ta = totals_after(&a, Duration::from_millis(1200));
                    let tb = totals_after(&b, Duration::ZERO);
                    let what = format!("A {ea:?} {ta:?}, B {eb:?} {tb:?}");
                    let echoes = count(&ta, "echoed") + count(&tb, "echoed");
                    // The rule: each side echoes the first arrival and one repeat, and B
                    // drops its second repeat: 4 echoes, 1 loop drop. A bounce delayed
                    // past the window (a stalled machine) restarts the count, so allow
                    // one such restart, not more.
                    assert!((4..=8).contains(&echoes), "{what}");
                    let loops = count(&ta, "loops") + count(&tb, "loops");
                    assert!((1..=2).contains(&loops), "{what}");
                    // And it stays over.
                    let later = totals_after(&a, Duration::from_millis(1000));
                    assert_eq!(count(&later, "echoed"), count(&ta, "echoed"), "{what}");
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        }
    });
}

#[test]
fn clients_that_repeat_a_payload_are_served_as_the_rule_promises() {
    each_engine(|engine| {
        let ns = Netns::new();
        let (s, args) = udp_server(&ns, engine, "2", &[]);
        let to = s.udp_connect_addr();
        let c = ns.run(|| UdpSocket::bind("127.0.0.1:0").expect("bind"));
        let wait = Duration::from_secs(2);
        // The same payload again and again, each a little more than the window after
        // its echo: every one served.
        for i in 0..6 {
            assert!(echoed(&c, to, b"probe", wait), "{args:?}: repeat {i}");
            std::thread::sleep(SLOW);
        }
        // A resend at once (as after a lost echo) is served; a second one in a row is
        // the loop the breaker stops; after the window it is served again.
        assert!(echoed(&c, to, b"resend", wait), "{args:?}");
        assert!(echoed(&c, to, b"resend", wait), "{args:?}: first repeat");
        assert!(
            !echoed(&c, to, b"resend", Duration::from_millis(300)),
            "{args:?}: second repeat in a row echoed"
        );
        std::thread::sleep(WINDOW);
        assert!(
            echoed(&c, to, b"resend", wait),
            "{args:?}: after the window"
        );
        // Distinct payloads as fast as they are echoed (64 in flight): none dropped.
        c.set_read_timeout(Some(wait)).expect("timeout");
        let mut buf = [0u8; 64];
        for burst in 0..300u32 {
            for i in 0..64u32 {
                let d = (burst * 64 + i).to_le_bytes();
                c.send_to(&d, to).expect("send");
            }
            for i in 0..64u32 {
                let (n, _) = c
                    .recv_from(&mut buf)
                    .expect("every distinct datagram echoed");
                assert_eq!(&buf[..n], (burst * 64 + i).to_le_bytes(), "{args:?}");
            }
        }
        let t = totals_after(&s, Duration::ZERO);
        assert_eq!(count(&t, "loops"), 1, "{args:?}: {t:?}");
        assert_eq!(count(&t, "echoed"), 6 + 3 + 300 * 64, "{args:?}: {t:?}");
    });
}

#[test]
fn broadcast_and_multicast_get_no_echo_and_unicast_does() {
    each_engine(|engine| {
        for bind in ["0.0.0.0", "::"] {
            let (server_ns, client_ns) = (Netns::new(), Netns::new());
            server_ns.veth_to(&client_ns, ("ve0", "10.77.0.1/24"), ("ve1", "10.77.0.2/24"));
            let (s, args) = udp_server(&server_ns, engine, "2", &["--bind", bind]);
            let p = s.udp_addr().port();
            let c = client_ns.run(|| {
                let c =
                    Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
                c.set_broadcast(true).expect("SO_BROADCAST");
                // The limited broadcast and the group need an interface to leave by.
                c.bind_device(Some(b"ve1")).expect("SO_BINDTODEVICE");
                c.bind(&SockAddr::from(SocketAddr::from(([10, 77, 0, 2], 0))))
                    .expect("bind");
                UdpSocket::from(c)
            });
            c.set_read_timeout(Some(Duration::from_millis(500)))
                .expect("timeout");
            let mut buf = [0u8; 64];
            for dst in ["10.77.0.255", "255.255.255.255", "224.0.0.1"] {
                let to = SocketAddr::new(dst.parse().expect("ip"), p);
                c.send_to(b"to everyone", to).expect("send");
                let got = c.recv_from(&mut buf);
                assert!(got.is_err(), "{args:?}: {dst} drew {got:?}");
            }
            let unicast = SocketAddr::from(([10, 77, 0, 1], p));
            assert!(
                echoed(&c, unicast, b"to one", Duration::from_secs(2)),
                "{args:?}"
            );
            let mut groups = 3;
            if bind == "::" {
                // IPv6 has no broadcast; all-nodes multicast reaches every host. (An
                // address without duplicate detection, to send from at once.)
                server_ns.ip(&["addr", "add", "fd77::1/64", "dev", "ve0", "nodad"]);
                client_ns.ip(&["addr", "add", "fd77::2/64", "dev", "ve1", "nodad"]);
                let c6 = client_ns.run(|| {
                    let c = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))
                        .expect("socket");
                    c.bind_device(Some(b"ve1")).expect("SO_BINDTODEVICE");
                    UdpSocket::from(c)
                });
                let ifindex = client_ns.run(|| {
                    // SAFETY: if_nametoindex reads the NUL-terminated name only.
                    unsafe { libc::if_nametoindex(c"ve1".as_ptr()) }
                });
                let to = SocketAddr::V6(std::net::SocketAddrV6::new(
                    "ff02::1".parse().expect("ip"),
                    p,
                    0,
                    ifindex,
                ));
                c6.set_read_timeout(Some(Duration::from_millis(500)))
                    .expect("timeout");
                let before = count(&totals_after(&s, Duration::ZERO), "broadcast");
                c6.send_to(b"to every node", to).expect("send");
                let got = c6.recv_from(&mut buf);
                assert!(got.is_err(), "{args:?}: ff02::1 drew {got:?}");
                let after = count(&totals_after(&s, Duration::ZERO), "broadcast");
                assert!(
                    after > before,
                    "{args:?}: ff02::1 not counted ({before}, {after})"
                );
                groups += 1;
            }
            // Each datagram reaches at least one worker (on 0.0.0.0, every worker's
            // socket of the SO_REUSEPORT group gets its own copy), and none is answered.
            let t = totals_after(&s, Duration::ZERO);
            assert!(count(&t, "broadcast") >= groups, "{args:?}: {t:?}");
            assert_eq!(count(&t, "send errors"), 0, "{args:?}: {t:?}");
            assert_eq!(count(&t, "echoed"), 1, "{args:?}: {t:?}");
        }
    });
}

#[test]
fn bind_to_a_broadcast_or_multicast_address_is_refused() {
    for bad in [
        "255.255.255.255",
        "224.0.0.1",
        "239.255.255.250",
        "ff02::1",
        "ff0e::1",
    ] {
        let out = common::ringecho(&["serve", "--port", "0", "--bind", bad]);
        common::assert_one_line_error(&out, &format!("--bind {bad} is"));
    }
    let ns = Netns::new();
    local_links(&ns, &[&["10.77.0.1/24", "brd", "+", "dev", "d0"]]);
    let out = common::run_bounded(
        ns.command(common::bin())
            .args(["serve", "--port", "0", "--bind", "10.77.0.255"]),
        Duration::from_secs(10),
    );
    common::assert_one_line_error(
        &out,
        "--bind 10.77.0.255 is an interface's broadcast address",
    );
    // Its unicast address next door is fine.
    let s = Server::start_in(&ns, &["--bind", "10.77.0.1"]);
    assert!(s.banner.contains("udp 10.77.0.1:"), "{}", s.banner);
}

#[test]
fn udp_rate_is_per_address_over_all_ports_and_workers() {
    const RATE: u64 = 100;
    const SECS: f64 = 2.0;
    each_engine(|engine| {
        let ns = Netns::new();
        let (s, args) = udp_server(&ns, engine, "4", &["--udp-rate", "100"]);
        let to = s.udp_connect_addr();
        // Two addresses, 32 source ports each: SO_REUSEPORT spreads the ports over the
        // four workers.
        let socks: Vec<(usize, UdpSocket)> = ns.run(|| {
            (0..64)
                .map(|i| {
                    let ip = if i < 32 { "127.0.0.1" } else { "127.0.0.2" };
                    let u = UdpSocket::bind((ip, 0)).expect("bind");
                    u.set_nonblocking(true).expect("nonblocking");
                    (i / 32, u)
                })
                .collect()
        });
        let mut got = [0u64; 2];
        let mut buf = [0u8; 64];
        let start = Instant::now();
        let mut seq = 0u64;
        let mut drain = |got: &mut [u64; 2]| {
            for (who, u) in &socks {
                while u.recv_from(&mut buf).is_ok() {
                    got[*who] += 1;
                }
            }
        };
        // Each port sends 100 distinct datagrams a second: 3,200/s per address.
        while start.elapsed().as_secs_f64() < SECS {
            for (_, u) in &socks {
                seq += 1;
                let _ = u.send_to(&seq.to_le_bytes(), to);
            }
            drain(&mut got);
            std::thread::sleep(Duration::from_millis(10));
        }
        let sent_for = start.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_millis(300));
        drain(&mut got);
        // A second's worth of burst, then the rate: per address, whatever the workers.
        let most = ((RATE as f64) * (1.0 + sent_for) * 1.25) as u64;
        let least = RATE + (RATE as f64 * SECS * 0.5) as u64;
        for (who, &n) in got.iter().enumerate() {
            assert!(
                (least..=most).contains(&n),
                "{args:?}: address {who} got {n} echoes in {sent_for:.1}s at --udp-rate {RATE} (want {least}..={most})"
            );
        }
        let t = totals_after(&s, Duration::ZERO);
        assert!(count(&t, "rate-limited") > 5000, "{args:?}: {t:?}");
    });
}
