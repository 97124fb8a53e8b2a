//! The reflection guard: which datagrams get no echo.
//!
//! Never answered: source port 0 (not a real sender), the well-known ports of services
//! that reply to anything (another echo, chargen, daytime, NTP, SSDP, memcached...: a
//! spoofed datagram "from" one of them starts a loop or amplifies an attack), and our own
//! address and port (a datagram that would echo to itself forever). With `--udp-rate`, a
//! source address gets at most that many echoes per second (token bucket, burst of one
//! second's worth); the table of sources is bounded, so a spoofed flood from millions of
//! addresses costs bounded memory: when it is full, unknown sources are dropped until
//! idle entries expire.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// Source ports never answered besides 0: echo 7, daytime 13, qotd 17, chargen 19,
/// time 37, DNS 53, portmap 111, NTP 123, NetBIOS 137, SNMP 161, CLDAP 389, SSDP 1900,
/// WS-Discovery 3702, mDNS 5353, memcached 11211.
pub const REFLECTING_PORTS: [u16; 15] = [
    7, 13, 17, 19, 37, 53, 111, 123, 137, 161, 389, 1900, 3702, 5353, 11211,
];

/// Sources the rate limiter tracks at once.
const MAX_SOURCES: usize = 65_536;

/// What to do with one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Echo it.
    Echo,
    /// Drop: source port 0, a reflecting service's port, or ourselves.
    Guarded,
    /// Drop: the source is over `--udp-rate`.
    Limited,
}

/// One worker's guard (not shared: each worker sees its own share of the sources).
#[derive(Debug)]
pub struct Guard {
    own_port: u16,
    limiter: Option<Limiter>,
}

impl Guard {
    /// A guard for a server on `own_port`, with an optional per-source rate.
    pub fn new(own_port: u16, rate: Option<u32>) -> Guard {
        Guard {
            own_port,
            limiter: rate.map(Limiter::new),
        }
    }

    /// Judge a datagram from `src` that arrived on local address `local` (the bound
    /// address, or the pktinfo one on a wildcard socket).
    pub fn judge(&mut self, src: SocketAddr, local: IpAddr) -> Verdict {
        let port = src.port();
        if port == 0 || REFLECTING_PORTS.contains(&port) {
            return Verdict::Guarded;
        }
        let ip = canonical(src.ip());
        if port == self.own_port && (ip == canonical(local) || local.is_unspecified()) {
            return Verdict::Guarded;
        }
        let allowed = match &mut self.limiter {
            Some(l) => l.allow(ip, Instant::now()),
            None => true,
        };
        if allowed {
            Verdict::Echo
        } else {
            Verdict::Limited
        }
    }
}

/// An IPv4-mapped IPv6 address (a dual-stack socket's view of IPv4) as the IPv4 one.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Per-source token buckets.
#[derive(Debug)]
struct Limiter {
    rate: f64,
    buckets: HashMap<IpAddr, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Limiter {
    fn new(rate: u32) -> Limiter {
        Limiter {
            rate: f64::from(rate),
            // Reserved up front: admitting a new source never allocates.
            buckets: HashMap::with_capacity(MAX_SOURCES),
        }
    }

    fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= MAX_SOURCES {
            // Full: forget sources idle long enough to have refilled (they would be
            // admitted with a full bucket anyway). If none is, drop the newcomer.
            let rate = self.rate;
            self.buckets
                .retain(|_, b| now.saturating_duration_since(b.at).as_secs_f64() * rate < rate);
            if self.buckets.len() >= MAX_SOURCES {
                return false;
            }
        }
        let rate = self.rate;
        let b = self.buckets.entry(ip).or_insert(Bucket {
            tokens: rate,
            at: now,
        });
        let refill = now.saturating_duration_since(b.at).as_secs_f64() * rate;
        b.tokens = (b.tokens + refill).min(rate);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    #[test]
    fn port_zero_reflectors_and_ourselves_are_guarded() {
        let mut g = Guard::new(12346, None);
        let local: IpAddr = "127.0.0.1".parse().expect("ip");
        assert_eq!(g.judge(sa("127.0.0.1:40000"), local), Verdict::Echo);
        for p in [0u16, 7, 19, 123, 1900, 11211] {
            assert_eq!(
                g.judge(SocketAddr::new(local, p), local),
                Verdict::Guarded,
                "{p}"
            );
        }
        assert_eq!(g.judge(sa("127.0.0.1:12346"), local), Verdict::Guarded);
        // Another host may use our port number as its own source port.
        assert_eq!(g.judge(sa("127.0.0.2:12346"), local), Verdict::Echo);
        // A dual-stack socket sees IPv4 as mapped addresses.
        assert_eq!(
            g.judge(sa("[::ffff:127.0.0.1]:12346"), local),
            Verdict::Guarded
        );
    }

    #[test]
    fn rate_limit_allows_a_burst_then_the_rate() {
        let mut l = Limiter::new(10);
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let t0 = Instant::now();
        let first: usize = (0..20).filter(|_| l.allow(ip, t0)).count();
        assert_eq!(first, 10, "one second's worth at once");
        assert!(!l.allow(ip, t0 + Duration::from_millis(50)));
        assert!(
            l.allow(ip, t0 + Duration::from_millis(100)),
            "one token per 100 ms"
        );
        let other: IpAddr = "192.0.2.2".parse().expect("ip");
        assert!(l.allow(other, t0), "per source, not global");
    }

    #[test]
    fn the_source_table_is_bounded() {
        let mut l = Limiter::new(1);
        let t0 = Instant::now();
        for i in 0..MAX_SOURCES as u32 {
            assert!(l.allow(IpAddr::from(i.to_be_bytes()), t0));
        }
        let newcomer = IpAddr::from([10, 255, 255, 255]);
        assert!(!l.allow(newcomer, t0), "full of live sources: dropped");
        assert_eq!(l.buckets.len(), MAX_SOURCES);
        assert!(
            l.allow(newcomer, t0 + Duration::from_secs(2)),
            "idle ones expire"
        );
        assert!(l.buckets.len() < 10);
    }
}
