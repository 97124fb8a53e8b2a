//! `ringecho check --udp`: the UDP cases. Each is independent (its own sockets), bounded
//! in time by `--timeout`, and says what it sent and what came back.
//!
//! UDP may drop a datagram, so a missing echo is resent a bounded number of times where
//! one datagram is the point (sizes, the guard's liveness check), and counted as loss
//! where many are (a loopback server at a modest rate should lose none). Every reply must
//! come from the address and port the datagram was sent to. Client sockets ask for ICMP
//! errors (`IP_RECVERR`), so a port nobody listens on shows at once as "port
//! unreachable" instead of as silence.

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::payload::{first_mismatch, Rng};
use super::seq::{Tally, Totals, HEADER, MAX_BODY};
use super::{Case, Ctx, Failure, Outcome, Suite};

/// Datagram sizes echoed byte-exact. 1 goes first: it is the reachability probe. 65,507
/// is the largest IPv4 payload (IPv6 allows 65,527, but 65,507 is asked of both).
pub const SIZES: [usize; 5] = [1, 0, 1472, 8192, 65_507];

/// Resends of one datagram whose echo did not come (the first send not counted).
pub const RESENDS: u32 = 3;

/// Source ports the guard case binds, in order of preference: memcached, SSDP, mDNS, all
/// above 1023 so no privilege is needed, all on every UDP echo server's deny list.
pub const GUARDED_PORTS: [(u16, &str); 3] = [(11211, "memcached"), (1900, "SSDP"), (5353, "mDNS")];

/// How long a datagram from a guarded port is given to (wrongly) draw a reply.
pub const GUARD_WAIT: Duration = Duration::from_millis(500);

/// Socket buffer size asked for on client sockets (the kernel caps it at
/// `net.core.rmem_max`/`wmem_max`): room for the largest datagrams.
const CLIENT_BUF: usize = 1 << 20;

/// Bounces of one datagram the loop case tolerates: the checker echoes each echo back
/// at once from the same port, as a second echo server would; a server that answers
/// more than this many in a row would go on forever against a real one.
pub const LOOP_BOUNCES: u32 = 2;

/// Silence after its last answer that ends the loop case: at least this, and at least
/// four of the first echo's round trips (a distant server answers more slowly).
const LOOP_QUIET: Duration = Duration::from_millis(100);

/// How long a loss-case socket keeps listening after its last echo, for stragglers.
const DRAIN: Duration = Duration::from_millis(50);

/// Receive buffer: larger than any UDP payload, so nothing is truncated on our side.
const RECV_BUF: usize = 1 << 16;

/// Sizes the cases use. The CLI uses [`Plan::default`]; tests shrink it.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Datagrams in the loss case, spread over `sockets`.
    pub datagrams: usize,
    /// Client sockets (distinct source ports) in the loss case.
    pub sockets: usize,
    /// Datagrams one socket sends before waiting for their echoes: at most this many are
    /// unanswered per socket, which paces the case to what the server keeps up with.
    pub burst: usize,
    /// Source ports the guard case tries to send from, in order (the CLI's:
    /// [`GUARDED_PORTS`]).
    pub guarded: Vec<(u16, &'static str)>,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            datagrams: 10_000,
            sockets: 64,
            burst: 4,
            guarded: GUARDED_PORTS.to_vec(),
        }
    }
}

/// The UDP suite: every case, in the order they run.
pub const SUITE: Suite<Plan> = Suite::new(
    "UDP",
    &[
        Case::new("datagram sizes", sizes),
        Case::new("many ports, loss counted", many_ports),
        Case::new("guarded source port", guarded_port),
        Case::new("echo loop", echo_loop),
    ],
);

fn sizes(ctx: &Ctx<Plan>) -> Outcome {
    let mut resent = Vec::new();
    let mut failed = Vec::new();
    for (i, &size) in SIZES.iter().enumerate() {
        let data = Rng::new(ctx.seed.wrapping_add(i as u64)).bytes(size);
        // A socket per size: a late echo of one size cannot be taken for the next's.
        let s = client_socket(ctx.addr, 0).map_err(|e| format!("client socket: {e}"))?;
        match echo_one(ctx, &s, &data) {
            Ok(0) => {}
            Ok(n) => resent.push(format!("{size} B x{n}")),
            Err(EchoError::Silent) if i == 0 => {
                return Err(Failure::Unreachable(format!(
                    "nothing came back from udp {} in {}s ({} datagrams sent): no UDP echo server answers there",
                    ctx.addr,
                    ctx.timeout.as_secs_f64(),
                    RESENDS + 1
                )))
            }
            Err(EchoError::Refused) if i == 0 => {
                return Err(Failure::Unreachable(format!(
                    "udp {} answered ICMP port unreachable: nothing listens there",
                    ctx.addr
                )))
            }
            Err(e) => failed.push(format!("{size} B: {}", e.describe(ctx))),
        }
    }
    let list = SIZES.map(|n| n.to_string()).join(", ") + " B";
    let resends = if resent.is_empty() {
        "no resends".to_string()
    } else {
        format!("resent {}", resent.join(", "))
    };
    if failed.is_empty() {
        Ok(format!(
            "{list}: each echoed as one datagram, byte-exact ({resends})"
        ))
    } else {
        Err(Failure::Fail(format!("{} ({resends})", failed.join("; "))))
    }
}

fn many_ports(ctx: &Ctx<Plan>) -> Outcome {
    let p = &ctx.plan;
    if p.sockets == 0 || p.burst == 0 {
        return Err(Failure::Fail("the plan needs sockets and a burst".into()));
    }
    let sockets = (0..p.sockets)
        .map(|i| client_socket(ctx.addr, 0).map_err(|e| format!("client socket {i}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now();
    let results: Vec<(Tally, Option<String>)> = std::thread::scope(|sc| {
        let handles: Vec<_> = sockets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let share = p.datagrams / p.sockets + usize::from(i < p.datagrams % p.sockets);
                let index = u32::try_from(i).unwrap_or(u32::MAX);
                std::thread::Builder::new().spawn_scoped(sc, move || drive(ctx, s, index, share))
            })
            .collect();
        handles
            .into_iter()
            .enumerate()
            .map(|(i, h)| {
                let index = u32::try_from(i).unwrap_or(u32::MAX);
                let failed = |why: String| (Tally::new(ctx.seed, index, 0), Some(why));
                match h {
                    Ok(h) => h
                        .join()
                        .unwrap_or_else(|_| failed(format!("socket {i}: its thread panicked"))),
                    Err(e) => failed(format!("socket {i}: its thread could not start: {e}")),
                }
            })
            .collect()
    });
    let took = start.elapsed().as_secs_f64();
    let mut totals = Totals::default();
    let mut stops = Vec::new();
    for (t, stop) in &results {
        totals.add(t);
        stops.extend(stop.clone());
    }
    let what = format!(
        "{} datagrams of {HEADER}..{} B from {} ports, at most {} unanswered per port",
        totals.sent,
        HEADER + MAX_BODY,
        p.sockets,
        p.burst
    );
    if totals.clean() && stops.is_empty() && totals.sent == p.datagrams {
        let rate = totals.sent as f64 / took.max(1e-9);
        return Ok(format!(
            "{what}: every one echoed once, byte-exact, none lost ({rate:.0}/s)"
        ));
    }
    let mut detail = format!("{what}: {}", totals.describe());
    if let Some(first) = stops.first() {
        detail += &format!(
            "; {} port{} stopped early, first: {first}",
            stops.len(),
            if stops.len() == 1 { "" } else { "s" }
        );
    }
    Err(Failure::Fail(detail))
}

/// Record one datagram a loss-case socket received.
fn tally(ctx: &Ctx<Plan>, t: &mut Tally, got: &[u8], from: SocketAddr) {
    if same_endpoint(from, ctx.addr) {
        t.reply(got);
    } else {
        t.foreign(format!(
            "socket {}: a {}-byte datagram from {from}, not from {}",
            t.socket(),
            got.len(),
            ctx.addr
        ));
    }
}

/// One socket's share of the loss case: send a burst, wait (up to the timeout) for its
/// echoes, repeat. Echoes that never come are loss; a burst that draws no answer at all
/// stops this socket (the server is gone; waiting more would only make the case slow).
fn drive(ctx: &Ctx<Plan>, s: &UdpSocket, index: u32, share: usize) -> (Tally, Option<String>) {
    let mut t = Tally::new(ctx.seed, index, share);
    let mut buf = vec![0u8; RECV_BUF];
    let mut lost_before = 0;
    loop {
        let mut burst = 0;
        while burst < ctx.plan.burst {
            let Some(d) = t.next_datagram() else { break };
            if let Err(e) = s.send_to(&d, ctx.addr) {
                return (t, Some(format!("socket {index}: send failed: {e}")));
            }
            burst += 1;
        }
        if burst == 0 {
            // Everything sent and waited for: catch what trails in (duplicates above all).
            let deadline = Instant::now() + DRAIN;
            loop {
                match recv_until(s, &mut buf, deadline) {
                    Ok(Some((n, from))) => tally(ctx, &mut t, &buf[..n], from),
                    Ok(None) => return (t, None),
                    Err(e) => {
                        return (
                            t,
                            Some(format!("socket {index}: {}", describe_recv_error(&e))),
                        )
                    }
                }
            }
        }
        let answered_before = t.answered();
        let deadline = Instant::now() + ctx.timeout;
        while t.missing() > lost_before {
            match recv_until(s, &mut buf, deadline) {
                Ok(Some((n, from))) => tally(ctx, &mut t, &buf[..n], from),
                Ok(None) => break,
                Err(e) => {
                    return (
                        t,
                        Some(format!("socket {index}: {}", describe_recv_error(&e))),
                    )
                }
            }
        }
        if t.answered() == answered_before {
            let sent = t.sent;
            return (
                t,
                Some(format!(
                    "socket {index}: nothing came back for {}s after {sent} of {share} sent",
                    ctx.timeout.as_secs_f64()
                )),
            );
        }
        lost_before = t.missing();
    }
}

fn guarded_port(ctx: &Ctx<Plan>) -> Outcome {
    let (g, port, service) = bind_guarded(ctx)?;
    let mut rng = Rng::new(ctx.seed);
    for _ in 0..3 {
        let len = rng.range(16, 64);
        g.send_to(&rng.bytes(len), ctx.addr)
            .map_err(|e| format!("send from port {port} failed: {e}"))?;
    }
    let sent_at = Instant::now();
    // Silence proves something only if the server answers an ordinary port meanwhile.
    let ordinary = client_socket(ctx.addr, 0).map_err(|e| format!("client socket: {e}"))?;
    let len = rng.range(16, 64);
    let probe = rng.bytes(len);
    let resends = echo_one(ctx, &ordinary, &probe).map_err(|e| {
        format!(
            "an ordinary port got no good echo either ({}), so silence toward port {port} proves nothing",
            e.describe(ctx)
        )
    })?;
    let deadline = (sent_at + GUARD_WAIT).max(Instant::now() + Duration::from_millis(100));
    let mut buf = vec![0u8; RECV_BUF];
    match recv_until(&g, &mut buf, deadline) {
        Ok(None) => Ok(format!(
            "no reply to 3 datagrams from port {port} ({service}) in {} ms; an ordinary port was echoed{}",
            GUARD_WAIT.as_millis(),
            if resends == 0 {
                String::new()
            } else {
                format!(" ({resends} resends)")
            }
        )),
        Ok(Some((n, from))) => Err(Failure::Fail(format!(
            "port {port} ({service}) got a {n}-byte reply from {from}: the server reflects to a guarded port"
        ))),
        Err(e) => Err(Failure::Fail(format!(
            "port {port} ({service}): {}",
            describe_recv_error(&e)
        ))),
    }
}

/// Play a second echo server: echo the server's echo back to it from the same port, and
/// again for every answer, as two RFC 862 servers started by one spoofed datagram
/// would. A server without a loop breaker answers every bounce; this case stops after
/// [`LOOP_BOUNCES`] answers (plus one per resend the first echo needed, whose late
/// duplicate may be among them) and fails. Then the same port must still be served
/// with a new payload: breaking a loop must not block a peer.
fn echo_loop(ctx: &Ctx<Plan>) -> Outcome {
    let s = client_socket(ctx.addr, 0).map_err(|e| format!("client socket: {e}"))?;
    let mut rng = Rng::new(ctx.seed);
    let len = rng.range(16, 64);
    let data = rng.bytes(len);
    let start = Instant::now();
    let resends = echo_one(ctx, &s, &data).map_err(|e| {
        format!(
            "the first datagram got no good echo ({}), so no loop was tried",
            e.describe(ctx)
        )
    })?;
    let quiet = (start.elapsed() * 4).clamp(LOOP_QUIET, ctx.timeout.max(LOOP_QUIET));
    let allowed = LOOP_BOUNCES + resends;
    let mut buf = vec![0u8; RECV_BUF];
    let mut answered = 0u32;
    loop {
        s.send_to(&data, ctx.addr)
            .map_err(|e| format!("bounce {} failed to send: {e}", answered + 1))?;
        match recv_until(&s, &mut buf, Instant::now() + quiet) {
            Ok(None) => break,
            Ok(Some((n, from))) => {
                if !same_endpoint(from, ctx.addr) || buf[..n] != data[..] {
                    return Err(Failure::Fail(format!(
                        "bounce {}: a {n}-byte datagram from {from} that is not our echo",
                        answered + 1
                    )));
                }
                answered += 1;
                if answered > allowed {
                    return Err(Failure::Fail(format!(
                        "echo loop: the server answered {answered} bounces of its own echo in a row (more than {allowed}); against another echo server it would never stop"
                    )));
                }
            }
            Err(e) => return Err(Failure::Fail(describe_recv_error(&e))),
        }
    }
    let len = rng.range(16, 64);
    let fresh = rng.bytes(len);
    echo_one(ctx, &s, &fresh).map_err(|e| {
        format!(
            "the loop stopped after {answered} bounces, but then a new payload from the same port got no good echo ({}): the peer is blocked",
            e.describe(ctx)
        )
    })?;
    Ok(format!(
        "its echo bounced back at once from the same port: {answered} bounce{} answered, then silence for {} ms; a new payload from that port was still echoed",
        if answered == 1 { "" } else { "s" },
        quiet.as_millis()
    ))
}

/// A client socket on the first of the plan's guarded ports that is free here.
fn bind_guarded(ctx: &Ctx<Plan>) -> Result<(UdpSocket, u16, &'static str), String> {
    let mut why = Vec::new();
    for &(port, service) in &ctx.plan.guarded {
        match client_socket(ctx.addr, port) {
            Ok(s) => return Ok((s, port, service)),
            Err(e) => why.push(format!("{port}: {e}")),
        }
    }
    Err(format!(
        "could not bind any guarded source port to send from ({}): the guard was not tested",
        why.join("; ")
    ))
}

/// Why [`echo_one`] got no good echo.
#[derive(Debug)]
enum EchoError {
    /// Nothing came back to any send.
    Silent,
    /// ICMP port unreachable.
    Refused,
    /// Something came back, but not the echo (or a socket call failed).
    Bad(String),
}

impl EchoError {
    fn describe(&self, ctx: &Ctx<Plan>) -> String {
        match self {
            EchoError::Silent => format!(
                "no echo in {}s ({} sends)",
                ctx.timeout.as_secs_f64(),
                RESENDS + 1
            ),
            EchoError::Refused => "ICMP port unreachable: nothing listens any more".into(),
            EchoError::Bad(s) => s.clone(),
        }
    }
}

/// Send `data` and wait for its echo from the server's address, resending up to
/// [`RESENDS`] times; the waits add up to the case timeout. Ok(resends needed).
fn echo_one(ctx: &Ctx<Plan>, s: &UdpSocket, data: &[u8]) -> Result<u32, EchoError> {
    let wait = ctx.timeout / (RESENDS + 1);
    let mut buf = vec![0u8; RECV_BUF];
    for attempt in 0..=RESENDS {
        match s.send_to(data, ctx.addr) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Err(EchoError::Refused),
            Err(e) => return Err(EchoError::Bad(format!("send failed: {e}"))),
        }
        let deadline = Instant::now() + wait;
        match recv_until(s, &mut buf, deadline) {
            Ok(None) => {}
            Ok(Some((n, from))) => {
                if !same_endpoint(from, ctx.addr) {
                    return Err(EchoError::Bad(format!(
                        "a {n}-byte reply came from {from}, not from {}",
                        ctx.addr
                    )));
                }
                return match compare(data, &buf[..n]) {
                    None => Ok(attempt),
                    Some(why) => Err(EchoError::Bad(why)),
                };
            }
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Err(EchoError::Refused),
            Err(e) => return Err(EchoError::Bad(describe_recv_error(&e))),
        }
    }
    Err(EchoError::Silent)
}

/// None if `got` is `want`, else what differs (length first: a truncated echo is named).
fn compare(want: &[u8], got: &[u8]) -> Option<String> {
    if got.len() < want.len() {
        return Some(format!(
            "{} of {} bytes came back (truncated)",
            got.len(),
            want.len()
        ));
    }
    if got.len() > want.len() {
        return Some(format!(
            "{} bytes came back, {} were sent",
            got.len(),
            want.len()
        ));
    }
    first_mismatch(want, 0, got)
}

/// Same IP and port (ignoring IPv6 flow labels; scope ids are part of the IP's meaning).
fn same_endpoint(a: SocketAddr, b: SocketAddr) -> bool {
    a.ip().to_canonical() == b.ip().to_canonical() && a.port() == b.port()
}

fn describe_recv_error(e: &std::io::Error) -> String {
    if e.kind() == ErrorKind::ConnectionRefused {
        "ICMP port unreachable: nothing listens any more".into()
    } else {
        format!("receive failed: {e}")
    }
}

/// Wait until `deadline` for one datagram: Ok(None) once the deadline passes.
fn recv_until(
    s: &UdpSocket,
    buf: &mut [u8],
    deadline: Instant,
) -> std::io::Result<Option<(usize, SocketAddr)>> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        s.set_read_timeout(Some(left))?;
        match s.recv_from(buf) {
            Ok(r) => return Ok(Some(r)),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
}

/// A UDP socket of `target`'s family bound to `port` (0: an ephemeral one) on the
/// wildcard address, with buffers for the largest datagram and ICMP errors reported
/// (`IP_RECVERR`/`IPV6_RECVERR`: without them an unconnected socket never learns that a
/// port is closed). An IPv6 socket on a fixed port is IPv6-only, so it does not also
/// claim the port for IPv4.
fn client_socket(target: SocketAddr, port: u16) -> std::io::Result<UdpSocket> {
    let s = Socket::new(
        Domain::for_address(target),
        Type::DGRAM.cloexec(),
        Some(Protocol::UDP),
    )?;
    let local = match target.ip() {
        IpAddr::V4(_) => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port),
        IpAddr::V6(ip) => {
            if port != 0 && ip.to_ipv4_mapped().is_none() {
                s.set_only_v6(true)?;
            }
            SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port)
        }
    };
    s.set_recv_buffer_size(CLIENT_BUF)?;
    s.set_send_buffer_size(CLIENT_BUF)?;
    crate::net::set_int_opt(&s, libc::IPPROTO_IP, libc::IP_RECVERR, 1)?;
    if target.is_ipv6() {
        crate::net::set_int_opt(&s, libc::IPPROTO_IPV6, libc::IPV6_RECVERR, 1)?;
    }
    s.bind(&local.into())?;
    Ok(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread echoing every datagram on loopback, except (with `guard`) those from the
    /// plan's guarded ports and a datagram that is the last echo bounced straight back.
    fn fake(plan: &Plan, guard: bool) -> SocketAddr {
        let guarded: Vec<u16> = plan.guarded.iter().map(|&(p, _)| p).collect();
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = s.local_addr().expect("addr");
        std::thread::spawn(move || {
            let mut buf = vec![0u8; RECV_BUF];
            let mut last: Option<(SocketAddr, Vec<u8>, Instant)> = None;
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                if guard && guarded.contains(&from.port()) {
                    continue;
                }
                let bounced = last.as_ref().is_some_and(|(p, d, at)| {
                    *p == from && d[..] == buf[..n] && at.elapsed() < Duration::from_millis(50)
                });
                if guard && bounced {
                    continue;
                }
                let _ = s.send_to(&buf[..n], from);
                last = Some((from, buf[..n].to_vec(), Instant::now()));
            }
        });
        addr
    }

    /// A port free on this host now (the kernel's pick, released at once).
    fn free_port() -> u16 {
        UdpSocket::bind("0.0.0.0:0")
            .and_then(|s| s.local_addr())
            .expect("free port")
            .port()
    }

    /// Small sizes, and guarded ports the kernel just found free: never the fixed
    /// well-known ones, which anything on this host may hold. Two, as the checker falls
    /// back to the next when one has been taken meanwhile.
    fn small() -> Plan {
        Plan {
            datagrams: 500,
            sockets: 8,
            burst: 4,
            guarded: vec![(free_port(), "test A"), (free_port(), "test B")],
        }
    }

    #[test]
    fn a_correct_server_passes_every_case() {
        let plan = small();
        let addr = fake(&plan, true);
        let r = SUITE.run(addr, Duration::from_secs(5), plan, 7, |_| {});
        assert!(r.passed(), "{r:#?}");
        assert_eq!(r.rows.len(), SUITE.cases.len());
        assert!(r.rows[1].detail.starts_with("500 datagrams"), "{r:#?}");
        assert_eq!(r.summary(addr), "result: all 4 cases passed");
    }

    #[test]
    fn a_server_with_no_guard_fails_the_guard_and_the_loop() {
        let plan = small();
        let addr = fake(&plan, false);
        let r = SUITE.run(addr, Duration::from_secs(5), plan, 7, |_| {});
        let failed: Vec<_> = r.rows.iter().filter(|r| !r.pass).map(|r| r.name).collect();
        assert_eq!(failed, ["guarded source port", "echo loop"], "{r:#?}");
        assert!(
            r.rows[2].detail.contains("reflects to a guarded port"),
            "{r:#?}"
        );
        let expect = format!("answered {} bounces", LOOP_BOUNCES + 1);
        assert!(r.rows[3].detail.contains(&expect), "{r:#?}");
    }

    #[test]
    fn a_silent_server_is_unreachable_after_the_timeout() {
        let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = silent.local_addr().expect("addr");
        let start = Instant::now();
        let r = SUITE.run(addr, Duration::from_millis(400), small(), 1, |_| {});
        assert!(start.elapsed() < Duration::from_secs(2), "{r:#?}");
        assert!(r.unreachable && r.rows.len() == 1, "{r:#?}");
        assert!(r.rows[0].detail.contains("nothing came back"), "{r:#?}");
        // Every send reached the socket: the first datagram and its resends.
        silent.set_nonblocking(true).expect("nonblocking");
        let mut buf = [0u8; 16];
        let got = std::iter::from_fn(|| silent.recv_from(&mut buf).ok()).count();
        assert_eq!(got, RESENDS as usize + 1);
    }

    #[test]
    fn truncation_and_length_are_named() {
        assert_eq!(compare(b"abc", b"abc"), None);
        assert_eq!(
            compare(b"abc", b"ab").as_deref(),
            Some("2 of 3 bytes came back (truncated)")
        );
        assert_eq!(
            compare(b"abc", b"abcd").as_deref(),
            Some("4 bytes came back, 3 were sent")
        );
        assert!(compare(b"abc", b"abd").is_some_and(|m| m.contains("byte 2 differs")));
    }

    #[test]
    fn endpoints_compare_by_ip_and_port() {
        let a: SocketAddr = "127.0.0.1:7".parse().expect("addr");
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:7".parse().expect("addr");
        assert!(same_endpoint(a, mapped));
        assert!(!same_endpoint(a, "127.0.0.1:8".parse().expect("addr")));
        assert!(!same_endpoint(a, "127.0.0.2:7".parse().expect("addr")));
    }
}
