//! `--udp-rate PPS`: at most PPS echoes a second to one source address, whatever its
//! ports and whichever workers its datagrams reach. One table for the whole server,
//! shared by its UDP workers: `SO_REUSEPORT` spreads one address's source ports over
//! every worker, so per-worker tables would grant it threads x PPS.
//!
//! A token bucket per source address (a second's worth of burst). The table is fixed:
//! [`SETS`] sets of [`WAYS`] buckets, each set behind its own mutex, allocated once when
//! the flag is given (none of it exists, and no lock is taken, without it). A source
//! hashes (keyed) to one set; two workers contend only when their sources share a set.
//! A newcomer takes a free bucket or one idle long enough to have refilled (forgetting
//! it loses nothing); if its set holds only live buckets the newcomer is dropped, so a
//! flood from spoofed addresses costs bounded memory and bounded work per datagram, and
//! can never evict (and so reset) the bucket of an address that is over its rate.

use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use std::hash::BuildHasher;

use foldhash::quality::RandomState;

/// Sets of buckets (a power of two).
pub const SETS: usize = 8192;

/// Buckets per set: [`SETS`] x [`WAYS`] = 65,536 sources tracked at once.
pub const WAYS: usize = 8;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// The source, as an IPv6 address (IPv4 mapped).
    ip: u128,
    /// Nanoseconds on the limiter's clock at the last update, plus one (0: free).
    at: u64,
    tokens: f64,
}

/// The server-wide per-source token buckets.
#[derive(Debug)]
pub struct Limiter {
    rate: f64,
    epoch: Instant,
    key: RandomState,
    sets: Box<[Mutex<[Bucket; WAYS]>]>,
}

impl Limiter {
    /// A limiter granting `rate` echoes a second per source address.
    pub fn new(rate: u32) -> Limiter {
        Limiter {
            rate: f64::from(rate.max(1)),
            epoch: Instant::now(),
            key: RandomState::default(),
            sets: (0..SETS)
                .map(|_| Mutex::new([Bucket::default(); WAYS]))
                .collect(),
        }
    }

    /// Take one token for a datagram from `ip` at `now`; false if it has none.
    pub fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        let ip = match ip {
            IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
            IpAddr::V6(v6) => u128::from(v6),
        };
        let t = now.saturating_duration_since(self.epoch).as_nanos() as u64 + 1;
        let set = self.key.hash_one(ip) as usize & (SETS - 1);
        // Poisoning cannot leave a bucket half-written (plain numbers), so go on.
        let mut set = self.sets[set]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let rate = self.rate;
        let refilled = |b: &Bucket| {
            let idle = t.saturating_sub(b.at) as f64 / 1e9;
            (b.tokens + idle * rate).min(rate)
        };
        let mut free = None;
        for (i, b) in set.iter_mut().enumerate() {
            if b.at != 0 && b.ip == ip {
                let tokens = refilled(b);
                b.at = t;
                if tokens >= 1.0 {
                    b.tokens = tokens - 1.0;
                    return true;
                }
                b.tokens = tokens;
                return false;
            }
            if free.is_none() && (b.at == 0 || refilled(b) >= rate) {
                free = Some(i);
            }
        }
        match free {
            Some(i) => {
                set[i] = Bucket {
                    ip,
                    at: t,
                    tokens: rate - 1.0,
                };
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_rate_per_source() {
        let l = Limiter::new(10);
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let t0 = Instant::now();
        let first = (0..20).filter(|_| l.allow(ip, t0)).count();
        assert_eq!(first, 10, "one second's worth at once");
        assert!(!l.allow(ip, t0 + Duration::from_millis(50)));
        assert!(
            l.allow(ip, t0 + Duration::from_millis(110)),
            "one token per 100 ms"
        );
        let other: IpAddr = "192.0.2.2".parse().expect("ip");
        assert!(l.allow(other, t0), "per source, not global");
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");
        assert!(
            !l.allow(mapped, t0 + Duration::from_millis(120)),
            "a dual-stack socket's view of an IPv4 source is the same source"
        );
    }

    #[test]
    fn shared_by_threads() {
        let l = Arc::new(Limiter::new(100));
        let t0 = Instant::now();
        let ip: IpAddr = "198.51.100.7".parse().expect("ip");
        let granted: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let l = &l;
                    s.spawn(move || (0..100).filter(|_| l.allow(ip, t0)).count())
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        assert_eq!(granted, 100, "one bucket, whichever thread asks");
    }

    #[test]
    fn the_table_is_bounded_and_never_resets_a_live_bucket() {
        let l = Limiter::new(1);
        let t0 = Instant::now();
        let heavy: IpAddr = "203.0.113.9".parse().expect("ip");
        assert!(l.allow(heavy, t0));
        assert!(!l.allow(heavy, t0), "its one token is spent");
        let mut admitted = 0;
        for i in 0..(SETS * WAYS * 4) as u32 {
            admitted += usize::from(l.allow(IpAddr::from(i.to_be_bytes()), t0));
        }
        assert!(
            admitted < SETS * WAYS,
            "{admitted}: more sources than buckets"
        );
        assert!(!l.allow(heavy, t0), "the flood did not refill it");
        // Idle buckets make room again.
        assert!(l.allow(
            "10.255.255.254".parse().expect("ip"),
            t0 + Duration::from_secs(2)
        ));
    }
}
