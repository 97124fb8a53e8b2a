//! The UDP policy: which datagrams get no echo, and why. Both engines call
//! [`Policy::judge`] with what they know of a datagram (its source, the pktinfo of a
//! wildcard socket, its payload) and act on the [`Verdict`]; each drop reason has its
//! `--stats` counter ([`Verdict::counter`]).
//!
//! Never answered, in the order the rules are checked:
//! - source port 0 (not a real sender) and the well-known ports of services that reply
//!   to anything (another echo, chargen, daytime, NTP, SSDP, memcached...): a spoofed
//!   datagram "from" one of them starts a loop or amplifies an attack ([`Verdict::Guarded`]);
//! - a datagram sent to a broadcast or multicast address: one echo per listening host,
//!   an amplifier ("fraggle"); only a wildcard socket can receive one, and its pktinfo
//!   says so ([`Verdict::ToMany`], see [`Arrival::to_many`]);
//! - ourselves: a source with our port that is our own address, or on a wildcard socket
//!   any address of this host ([`Verdict::Ourselves`]). Answering 127.0.0.2:P from
//!   127.0.0.1:P sends the echo back into this very server, which answers it forever.
//!   "Any address of this host" is two tests, because neither alone is enough: the
//!   interface the datagram arrived on is loopback (`ipi_ifindex`), which covers
//!   every source sent to a loopback destination, whole local ranges included
//!   (127.0.0.0/8, `ip route add local`), with no list to keep fresh; or the source is
//!   one of the host's addresses as `getifaddrs` lists them, because a datagram this
//!   host sends to one of its *non-loopback* addresses is reported as arriving on that
//!   address's interface (the kernel sets `rt_iif` to the route's device), so the
//!   index cannot tell it from a remote one. The list is re-read at most once a second,
//!   and only when a datagram with our port as its source asks for it (ordinary
//!   clients never do), so a flood of them costs one `getifaddrs` a second; an address
//!   added less than a second ago is the loop breaker's to catch;
//! - the second quick repeat in a row of what we last echoed to that peer: two echo
//!   services bouncing one datagram forever ([`Verdict::Loop`], rule in [`super::loops`]);
//! - with `--udp-rate`, a source address over its rate, all workers together
//!   ([`Verdict::Limited`], [`super::limiter`]).

use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use foldhash::quality::RandomState;

use super::ifaddrs::Interfaces;
use super::limiter::Limiter;
use super::loops::Loops;
use super::pktinfo::{Arrival, Local};
use crate::error::{Context, Result};
use crate::server::WorkerCtx;
use crate::stats::WorkerStats;

/// Source ports never answered besides 0: echo 7, daytime 13, qotd 17, chargen 19,
/// time 37, DNS 53, portmap 111, NTP 123, NetBIOS 137, SNMP 161, CLDAP 389, SSDP 1900,
/// WS-Discovery 3702, mDNS 5353, memcached 11211.
pub const REFLECTING_PORTS: [u16; 15] = [
    7, 13, 17, 19, 37, 53, 111, 123, 137, 161, 389, 1900, 3702, 5353, 11211,
];

/// What to do with one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Echo it.
    Echo,
    /// Drop: source port 0 or a reflecting service's port.
    Guarded,
    /// Drop: sent to a broadcast or multicast address.
    ToMany,
    /// Drop: from our own port on this host (the echo would come back to us).
    Ourselves,
    /// Drop: a peer bouncing our last echo back at once, again (an echo loop).
    Loop,
    /// Drop: the source is over `--udp-rate`.
    Limited,
}

impl Verdict {
    /// The `--stats` counter of this drop reason (None for an echo).
    pub fn counter(self, s: &WorkerStats) -> Option<&AtomicU64> {
        match self {
            Verdict::Echo => None,
            Verdict::Guarded => Some(&s.udp_guarded),
            Verdict::ToMany => Some(&s.udp_to_many),
            Verdict::Ourselves => Some(&s.udp_ourselves),
            Verdict::Loop => Some(&s.udp_loops),
            Verdict::Limited => Some(&s.udp_limited),
        }
    }
}

/// How old the list of the host's addresses may be when a datagram needs it.
const HOST_REFRESH: Duration = Duration::from_secs(1);

/// This host's loopback interfaces and addresses, as recently as [`HOST_REFRESH`].
#[derive(Debug)]
struct Host {
    ifaces: Interfaces,
    /// When `ifaces` was read; None: given once, never re-read.
    read_at: Option<Instant>,
}

impl Host {
    /// A datagram from `ip` (canonical) arriving on interface `ifindex` was sent by this
    /// host.
    fn sent(&mut self, ip: IpAddr, ifindex: u32, now: Instant) -> bool {
        if self.ifaces.loopback.contains(&ifindex) || ip.is_loopback() {
            return true;
        }
        if let Some(at) = self.read_at {
            if now.saturating_duration_since(at) > HOST_REFRESH {
                // A failed read keeps the last list: better stale than empty.
                if let Ok(fresh) = Interfaces::read() {
                    self.ifaces = fresh;
                }
                self.read_at = Some(now);
            }
        }
        self.ifaces.addrs.iter().any(|a| a.to_canonical() == ip)
    }
}

/// One UDP worker's policy: its own loop table, and the server's shared rate limiter.
#[derive(Debug)]
pub struct Policy {
    own: SocketAddr,
    wildcard: bool,
    host: Host,
    key: RandomState,
    loops: Loops,
    limiter: Option<Arc<Limiter>>,
    epoch: Instant,
}

impl Policy {
    /// The policy of a worker bound to `own` (its socket's address, port resolved), on a
    /// host with these interfaces (never re-read: for tests), with the server's limiter.
    pub fn new(own: SocketAddr, ifaces: Interfaces, limiter: Option<Arc<Limiter>>) -> Policy {
        Policy {
            own,
            wildcard: own.ip().is_unspecified(),
            host: Host {
                ifaces,
                read_at: None,
            },
            key: RandomState::default(),
            loops: Loops::default(),
            limiter,
            epoch: Instant::now(),
        }
    }

    /// The policy of the worker `ctx` describes, bound to `own`.
    pub fn for_worker(ctx: &WorkerCtx, own: SocketAddr) -> Result<Policy> {
        let ifaces = Interfaces::read().context("listing the host's interfaces")?;
        let limiter = ctx.shared.udp_limiter.clone();
        let mut p = Policy::new(own, ifaces, limiter);
        p.host.read_at = Some(Instant::now());
        Ok(p)
    }

    /// Judge a datagram from `src` carrying `payload`, with the pktinfo of its arrival
    /// (`None` on a socket bound to one address), at `now` (read once per batch by the
    /// caller: the rules need no finer clock). An [`Verdict::Echo`] is recorded as sent.
    pub fn judge(
        &mut self,
        src: SocketAddr,
        arrival: Option<&Arrival>,
        payload: &[u8],
        now: Instant,
    ) -> Verdict {
        let port = src.port();
        if port == 0 || REFLECTING_PORTS.contains(&port) {
            return Verdict::Guarded;
        }
        if arrival.is_some_and(Arrival::to_many) {
            return Verdict::ToMany;
        }
        let ip = src.ip().to_canonical();
        if port == self.own.port() {
            let local = match arrival.map(|a| a.reply) {
                Some(Local::V4(v4)) => IpAddr::V4(v4),
                Some(Local::V6(v6, _)) => IpAddr::V6(v6),
                None => self.own.ip(),
            };
            if ip == local.to_canonical()
                || local.is_unspecified()
                || (self.wildcard && arrival.is_some_and(|a| self.host.sent(ip, a.ifindex, now)))
            {
                return Verdict::Ourselves;
            }
        }
        let now_us = now.saturating_duration_since(self.epoch).as_micros() as u64;
        let peer = self.peer_tag(ip, port);
        let hash = self.key.hash_one(payload);
        let len = payload.len() as u32;
        let look = self.loops.look(peer, hash, len, now_us);
        if look.is_loop() {
            return Verdict::Loop;
        }
        if let Some(l) = &self.limiter {
            if !l.allow(ip, now) {
                return Verdict::Limited;
            }
        }
        self.loops.echoed(look, peer, hash, len, now_us);
        Verdict::Echo
    }

    /// A peer's (address, port) as a non-zero table tag.
    fn peer_tag(&self, ip: IpAddr, port: u16) -> u64 {
        let bits = match ip {
            IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
            IpAddr::V6(v6) => u128::from(v6),
        };
        self.key.hash_one((bits, port)).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    /// A host with loopback interface 1, and 192.168.1.5 on interface 2.
    fn host() -> Interfaces {
        Interfaces {
            loopback: vec![1],
            addrs: vec![
                "127.0.0.1".parse().expect("ip"),
                "192.168.1.5".parse().expect("ip"),
            ],
            broadcast: vec![],
        }
    }

    fn on(reply: [u8; 4], dst: [u8; 4], ifindex: u32) -> Arrival {
        Arrival {
            reply: Local::V4(Ipv4Addr::from(reply)),
            dst: IpAddr::from(dst),
            ifindex,
        }
    }

    /// `g`'s verdict on a datagram from `src` that arrived as [`on`] says, at `t`.
    fn judged(g: &mut Policy, src: &str, arrival: Arrival, t: Instant) -> Verdict {
        g.judge(sa(src), Some(&arrival), b"x", t)
    }

    #[test]
    fn port_zero_reflectors_and_ourselves_are_guarded() {
        let mut g = Policy::new(sa("127.0.0.1:12346"), host(), None);
        let t = Instant::now();
        let local: IpAddr = "127.0.0.1".parse().expect("ip");
        assert_eq!(g.judge(sa("127.0.0.1:40000"), None, b"a", t), Verdict::Echo);
        for p in [0u16, 7, 19, 123, 1900, 11211] {
            let v = g.judge(SocketAddr::new(local, p), None, b"b", t);
            assert_eq!(v, Verdict::Guarded, "{p}");
        }
        assert_eq!(
            g.judge(sa("127.0.0.1:12346"), None, b"c", t),
            Verdict::Ourselves
        );
        // Bound to one address, another may use our port number as its source port.
        assert_eq!(g.judge(sa("127.0.0.2:12346"), None, b"d", t), Verdict::Echo);
        let mut g = Policy::new(sa("[::]:12346"), host(), None);
        // A dual-stack socket sees IPv4 as mapped addresses.
        let a = on([127, 0, 0, 1], [127, 0, 0, 1], 1);
        assert_eq!(
            g.judge(sa("[::ffff:127.0.0.1]:12346"), Some(&a), b"e", t),
            Verdict::Ourselves
        );
    }

    #[test]
    fn on_a_wildcard_any_local_source_with_our_port_is_ourselves() {
        let mut g = Policy::new(sa("0.0.0.0:12346"), host(), None);
        let t = Instant::now();
        let lo = || on([127, 0, 0, 1], [127, 0, 0, 1], 1);
        // 127.0.0.2:P -> 127.0.0.1:P, and the host's LAN address -> 127.0.0.1: loopback.
        for src in ["127.0.0.2:12346", "192.168.1.5:12346"] {
            assert_eq!(judged(&mut g, src, lo(), t), Verdict::Ourselves);
        }
        // The same port from another host (arrived on eth0) is a client like any other.
        let eth = on([192, 168, 1, 5], [192, 168, 1, 5], 2);
        assert_eq!(judged(&mut g, "192.168.1.9:12346", eth, t), Verdict::Echo);
        // Another port on this host is a local client.
        assert_eq!(judged(&mut g, "127.0.0.2:5000", lo(), t), Verdict::Echo);
    }

    #[test]
    fn broadcast_and_multicast_destinations_get_nothing() {
        let mut g = Policy::new(sa("0.0.0.0:12346"), host(), None);
        let t = Instant::now();
        let from = "10.77.0.2:4000";
        for dst in [[10, 77, 0, 255], [255, 255, 255, 255], [224, 0, 0, 1]] {
            let a = on([10, 77, 0, 1], dst, 2);
            assert_eq!(judged(&mut g, from, a, t), Verdict::ToMany);
        }
        let a = on([10, 77, 0, 1], [10, 77, 0, 1], 2);
        assert_eq!(judged(&mut g, from, a, t), Verdict::Echo);
    }

    #[test]
    fn a_bounced_echo_is_a_loop_and_other_peers_are_not() {
        let mut g = Policy::new(sa("127.0.0.1:12346"), host(), None);
        let t = Instant::now();
        let peer = sa("127.0.0.1:12347");
        let v: Vec<_> = (0..4)
            .map(|i| g.judge(peer, None, b"bounce", t + Duration::from_micros(i * 30)))
            .collect();
        assert_eq!(
            v,
            [Verdict::Echo, Verdict::Echo, Verdict::Loop, Verdict::Loop]
        );
        // The same bytes from another port are another peer.
        assert_eq!(
            g.judge(sa("127.0.0.1:12348"), None, b"bounce", t),
            Verdict::Echo
        );
        // And the looping peer is served again with something else.
        assert_eq!(g.judge(peer, None, b"hello", t), Verdict::Echo);
    }

    #[test]
    fn the_rate_limit_is_per_source_address_not_per_port() {
        let l = Arc::new(Limiter::new(3));
        let mut a = Policy::new(sa("127.0.0.1:9"), host(), Some(Arc::clone(&l)));
        let mut b = Policy::new(sa("127.0.0.1:9"), host(), Some(l));
        let t = Instant::now();
        let echoed = (0..20u16)
            .filter(|&i| {
                let src = SocketAddr::new([127, 0, 0, 1].into(), 20_000 + i);
                let w = if i % 2 == 0 { &mut a } else { &mut b };
                w.judge(src, None, &i.to_le_bytes(), t) == Verdict::Echo
            })
            .count();
        assert_eq!(echoed, 3, "one bucket for the address, over both workers");
    }
}
