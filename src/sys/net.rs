//! The socket layer both engines share: TCP listeners and UDP sockets (SO_REUSEPORT,
//! dual-stack, pktinfo), CPU pinning,
//! and the process limits a server that holds many sockets needs raised.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

use crate::error::{Context, Result};

/// Resolve `HOST:PORT` (names, IPv4, `[IPv6]`) to its first address, with a one-line error.
pub fn resolve(addr: &str) -> Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    addr.to_socket_addrs()
        .map_err(|e| {
            crate::error::Error::from(e)
                .context(format!("cannot resolve '{addr}' (want HOST:PORT)"))
        })?
        .next()
        .ok_or_else(|| crate::error::Error::msg(format!("'{addr}' resolves to no address")))
}

/// How long `probe_tcp` waits for its one connection.
pub const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// One TCP connection to `addr`, opened and closed, before a client that would otherwise
/// fail every one of its connections (each case of `check`, every connection of a
/// benchmark) and report each failure: a port nobody listens on is then one line at once.
pub fn probe_tcp(addr: SocketAddr) -> Result<()> {
    match std::net::TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(
            crate::error::Error::msg(format!("nothing listens on {addr} (connection refused)")),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            Err(crate::error::Error::msg(format!(
                "cannot connect to {addr}: no answer within {} s",
                PROBE_TIMEOUT.as_secs()
            )))
        }
        Err(e) => Err(crate::error::Error::from(e).context(format!("cannot connect to {addr}"))),
    }
}

/// The UDP counterpart of `probe_tcp`: one datagram to `addr` from a connected socket, so
/// that an ICMP port unreachable comes back as an error. A reply, or silence for
/// [`PROBE_TIMEOUT`] (a firewall may drop the ICMP), lets the caller go on and measure.
pub fn probe_udp(addr: SocketAddr) -> Result<()> {
    let local: SocketAddr = if addr.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let refused = || {
        crate::error::Error::msg(format!(
            "nothing listens on udp {addr} (ICMP port unreachable)"
        ))
    };
    let sock = std::net::UdpSocket::bind(local).context("creating a UDP socket")?;
    sock.connect(addr)
        .with_context(|| format!("cannot send to udp {addr}"))?;
    sock.set_read_timeout(Some(PROBE_TIMEOUT))
        .context("setting a receive timeout")?;
    match sock.send(b"ringecho probe") {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Err(refused()),
        Err(e) => {
            return Err(crate::error::Error::from(e).context(format!("cannot send to udp {addr}")))
        }
        Ok(_) => {}
    }
    let mut buf = [0u8; 64];
    match sock.recv(&mut buf) {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(refused()),
        _ => Ok(()),
    }
}

/// Online CPUs (the default worker count), at least 1.
pub fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Create one TCP listener on `addr` with SO_REUSEPORT so that every worker can have its own
/// and the kernel spreads connections between them.
///
/// `exclusive` makes the bind fail if *anyone* holds the port, even another SO_REUSEPORT
/// user: the option is set only after the bind (the kernel checks it at bind time against
/// the sockets already there), so a second `ringecho` on the same port is an error instead
/// of silently sharing its connections.
pub fn tcp_listener(addr: SocketAddr, backlog: u32, exclusive: bool) -> Result<Socket> {
    let sock = bound_socket(addr, Type::STREAM, exclusive, || {
        format!("listen on {addr}")
    })?;
    // Accepted sockets inherit TCP_NODELAY from the listener on Linux: echoes go out at once.
    sock.set_tcp_nodelay(true).context("setting TCP_NODELAY")?;
    sock.listen(backlog.min(i32::MAX as u32) as i32)
        .with_context(|| format!("listen on {addr}"))?;
    Ok(sock)
}

/// A TCP (`Type::STREAM`) or UDP (`Type::DGRAM`) socket bound to `addr`, `exclusive` as
/// for [`tcp_listener`]; `what` names the bind in its error ("cannot {what}"). `::`
/// means every address, IPv4 included; a specific IPv6 address means only it. A TCP
/// socket also gets SO_REUSEADDR (a restarted server rebinds at once).
fn bound_socket(
    addr: SocketAddr,
    ty: Type,
    exclusive: bool,
    what: impl FnOnce() -> String,
) -> Result<Socket> {
    let (proto, name) = if ty == Type::STREAM {
        (Protocol::TCP, "TCP")
    } else {
        (Protocol::UDP, "UDP")
    };
    let sock = Socket::new(Domain::for_address(addr), ty.cloexec(), Some(proto))
        .with_context(|| format!("creating a {name} socket"))?;
    if let IpAddr::V6(ip) = addr.ip() {
        sock.set_only_v6(!ip.is_unspecified())
            .context("setting IPV6_V6ONLY")?;
    }
    if ty == Type::STREAM {
        sock.set_reuse_address(true)
            .context("setting SO_REUSEADDR")?;
    }
    // Joining a group takes SO_REUSEPORT before the bind; the first of a group sets it
    // only after its bind, so that a port someone else holds is an error instead of
    // silently sharing its traffic.
    if !exclusive {
        sock.set_reuse_port(true).context("setting SO_REUSEPORT")?;
    }
    sock.bind(&addr.into())
        .with_context(|| format!("cannot {}", what()))?;
    if exclusive {
        sock.set_reuse_port(true).context("setting SO_REUSEPORT")?;
    }
    Ok(sock)
}

/// The address a bound socket really has (resolves port 0).
pub fn local_addr(sock: &Socket) -> Result<SocketAddr> {
    sock.local_addr()
        .context("reading the listener's address")?
        .as_socket()
        .ok_or_else(|| crate::error::Error::msg("listener has a non-IP address"))
}

/// Create `n` listeners on the same address: the first exclusively (which also resolves
/// port 0), the rest joining its SO_REUSEPORT group.
pub fn tcp_listeners(
    addr: SocketAddr,
    backlog: u32,
    n: usize,
) -> Result<(Vec<Socket>, SocketAddr)> {
    let first = tcp_listener(addr, backlog, true)?;
    let bound = local_addr(&first)?;
    let mut all = vec![first];
    for _ in 1..n {
        all.push(tcp_listener(bound, backlog, false)?);
    }
    Ok((all, bound))
}

/// Create one UDP socket on `addr` with SO_REUSEPORT (each worker gets its own and the
/// kernel spreads datagrams by source), `exclusive` as for [`tcp_listener`]. On a wildcard
/// address it also asks for each datagram's local address (`IP_PKTINFO`,
/// `IPV6_RECVPKTINFO`), so replies leave from the address the request came to.
pub fn udp_socket(addr: SocketAddr, exclusive: bool) -> Result<Socket> {
    let sock = bound_socket(addr, Type::DGRAM, exclusive, || format!("bind udp {addr}"))?;
    // Room for bursts of the largest datagrams; the kernel caps it at net.core.rmem_max.
    let _ = sock.set_recv_buffer_size(4 << 20);
    let _ = sock.set_send_buffer_size(4 << 20);
    if addr.ip().is_unspecified() {
        // A dual-stack socket gets IPv4 datagrams' local address from IP_PKTINFO.
        set_int_opt(&sock, libc::IPPROTO_IP, libc::IP_PKTINFO, 1).context("setting IP_PKTINFO")?;
        if addr.is_ipv6() {
            set_int_opt(&sock, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)
                .context("setting IPV6_RECVPKTINFO")?;
        }
    }
    Ok(sock)
}

/// Create `n` UDP sockets on the same address: the first exclusively (which also resolves
/// port 0), the rest joining its SO_REUSEPORT group.
pub fn udp_sockets(addr: SocketAddr, n: usize) -> Result<(Vec<Socket>, SocketAddr)> {
    let first = udp_socket(addr, true)?;
    let bound = local_addr(&first)?;
    let mut all = vec![first];
    for _ in 1..n {
        all.push(udp_socket(bound, false)?);
    }
    Ok((all, bound))
}

/// setsockopt(2) with an int value, for options socket2 does not name.
pub fn set_int_opt(sock: &Socket, level: i32, name: i32, value: i32) -> std::io::Result<()> {
    // SAFETY: `value` is a live c_int and the length passed is its size; the fd is open
    // for the borrow of `sock`.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Pin the calling thread to CPU `index` modulo the CPUs this process may use.
pub fn pin_current_thread(index: usize) -> Result<usize> {
    // SAFETY: cpu_set_t is plain data; zeroed is a valid empty set. sched_getaffinity and
    // sched_setaffinity read/write exactly size_of::<cpu_set_t>() bytes of it.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut allowed) != 0 {
            return Err(std::io::Error::last_os_error()).context("reading CPU affinity");
        }
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &allowed))
            .collect();
        let Some(&cpu) = cpus.get(index % cpus.len().max(1)) else {
            return Err(crate::error::Error::msg("no CPU available to pin to"));
        };
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("pinning to CPU {cpu}"));
        }
        Ok(cpu)
    }
}

/// Raise the soft open-file limit to the hard limit; returns the new soft limit.
///
/// A server holding thousands of sockets needs more than the usual 1024, and io_uring's
/// registered file table is capped by this limit too.
pub fn raise_nofile_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit read/write one rlimit struct we own.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return want.rlim_cur;
            }
        }
        lim.rlim_cur
    }
}

/// The current soft open-file limit.
pub fn nofile_limit() -> u64 {
    // SAFETY: getrlimit writes one rlimit struct we own.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        lim.rlim_cur
    }
}

/// Ignore SIGPIPE process-wide: a peer that vanished must cost one connection, never the
/// process (sends also pass MSG_NOSIGNAL; this covers every other path).
pub fn ignore_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_IGN has no memory-safety preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Raw fd of a socket, for the engines' syscall layer.
pub fn raw(sock: &Socket) -> i32 {
    sock.as_raw_fd()
}
