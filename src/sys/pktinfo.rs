//! The local address a datagram arrived on (`IP_PKTINFO` / `IPV6_PKTINFO` control
//! messages) and the control message that makes the reply leave from it.
//!
//! A socket bound to a wildcard address would otherwise answer from whatever address the
//! routing table picks for the client, which on a multi-homed host may not be the one the
//! client wrote to, and the client's stack then drops the reply as unrelated. Control
//! messages are parsed and built as bytes here (layout from `<sys/socket.h>`: a
//! `cmsghdr` of `size_t len, int level, int type`, data aligned to `size_t`), so no
//! pointer arithmetic is needed.

use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Control-buffer space for what a wildcard socket receives: both kinds of pktinfo
/// message at once (40 + 32 bytes: a dual-stack socket gets both for an IPv4 datagram).
pub const CONTROL_LEN: usize = 128;

/// Where a datagram arrived: the local address to reply from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// An IPv4 datagram (also on a dual-stack IPv6 socket): `ipi_spec_dst`, the local
    /// address the kernel would use for it.
    V4(Ipv4Addr),
    /// An IPv6 datagram: the destination address and the interface it came in on (which
    /// link-local replies need).
    V6(Ipv6Addr, u32),
}

const ALIGN: usize = size_of::<usize>();
const HDR: usize = (size_of::<libc::cmsghdr>() + ALIGN - 1) & !(ALIGN - 1);

fn space(data: usize) -> usize {
    HDR + ((data + ALIGN - 1) & !(ALIGN - 1))
}

fn field<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at + N)?.try_into().ok()
}

/// What the pktinfo control message says about one received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// The local address to reply from.
    pub reply: Local,
    /// The destination address in the datagram's IP header (`ipi_addr` / `ipi6_addr`):
    /// unlike `reply`, a broadcast or multicast address when the datagram was sent to one.
    pub dst: IpAddr,
    /// The interface it arrived on (`ipi_ifindex` / `ipi6_ifindex`).
    pub ifindex: u32,
}

impl Arrival {
    /// The datagram was addressed to many hosts at once (broadcast or multicast): an
    /// echo of it would be one reply per listening host, an amplifier ("fraggle").
    /// For IPv4 the kernel sets `ipi_spec_dst` to the header destination for unicast
    /// delivered locally and to an interface address otherwise (`fib_compute_spec_dst`),
    /// so a difference also catches a subnet's directed broadcast, which no address
    /// test can recognise without the netmask.
    pub fn to_many(&self) -> bool {
        match (self.dst.to_canonical(), self.reply) {
            (IpAddr::V4(dst), Local::V4(spec_dst)) => {
                dst != spec_dst || dst.is_broadcast() || dst.is_multicast()
            }
            (IpAddr::V4(dst), Local::V6(..)) => dst.is_broadcast() || dst.is_multicast(),
            (IpAddr::V6(dst), _) => dst.is_multicast(),
        }
    }
}

/// The pktinfo control message in `control` (the first `len` bytes the kernel filled).
/// A dual-stack socket gets both kinds for an IPv4 datagram (`IPV6_PKTINFO` first, with
/// the destination mapped); the `IP_PKTINFO` one wins, since only it carries
/// `ipi_spec_dst`, which tells a directed broadcast from unicast.
pub fn parse(control: &[u8]) -> Option<Arrival> {
    let mut v6 = None;
    let mut at = 0;
    while at + HDR <= control.len() {
        let len = usize::from_ne_bytes(field(control, at)?);
        let level = i32::from_ne_bytes(field(control, at + ALIGN)?);
        let kind = i32::from_ne_bytes(field(control, at + ALIGN + 4)?);
        if len < HDR || at + len > control.len() {
            break;
        }
        let data = &control[at + HDR..at + len];
        match (level, kind) {
            // struct in_pktinfo { int ipi_ifindex; in_addr ipi_spec_dst; in_addr ipi_addr; }
            (libc::IPPROTO_IP, libc::IP_PKTINFO) if data.len() >= 12 => {
                let ifindex = i32::from_ne_bytes(field(data, 0)?);
                let spec_dst: [u8; 4] = field(data, 4)?;
                let dst: [u8; 4] = field(data, 8)?;
                return Some(Arrival {
                    reply: Local::V4(Ipv4Addr::from(spec_dst)),
                    dst: IpAddr::V4(Ipv4Addr::from(dst)),
                    ifindex: ifindex as u32,
                });
            }
            // struct in6_pktinfo { in6_addr ipi6_addr; unsigned ipi6_ifindex; }
            (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) if data.len() >= 20 => {
                let addr = Ipv6Addr::from(field::<16>(data, 0)?);
                let ifindex = u32::from_ne_bytes(field(data, 16)?);
                v6 = Some(Arrival {
                    reply: Local::V6(addr, ifindex),
                    dst: IpAddr::V6(addr),
                    ifindex,
                });
            }
            _ => {}
        }
        at += space(len - HDR);
    }
    v6
}

/// Write the control message that sends a reply from `local` into `out`; returns its
/// length (what `msg_controllen` must say). `out` must hold [`CONTROL_LEN`] bytes.
pub fn build(local: Local, out: &mut [u8]) -> usize {
    let (level, kind, data): (i32, i32, [u8; 20]) = match local {
        Local::V4(ip) => {
            let mut d = [0u8; 20];
            // ipi_ifindex 0 (route decides), ipi_spec_dst = our address, ipi_addr unused.
            d[4..8].copy_from_slice(&ip.octets());
            (libc::IPPROTO_IP, libc::IP_PKTINFO, d)
        }
        Local::V6(ip, ifindex) => {
            let mut d = [0u8; 20];
            d[..16].copy_from_slice(&ip.octets());
            d[16..20].copy_from_slice(&ifindex.to_ne_bytes());
            (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, d)
        }
    };
    let data_len = if matches!(local, Local::V4(_)) {
        12
    } else {
        20
    };
    let total = space(data_len);
    out[..total].fill(0);
    out[..ALIGN].copy_from_slice(&(HDR + data_len).to_ne_bytes());
    out[ALIGN..ALIGN + 4].copy_from_slice(&level.to_ne_bytes());
    out[ALIGN + 4..ALIGN + 8].copy_from_slice(&kind.to_ne_bytes());
    out[HDR..HDR + data_len].copy_from_slice(&data[..data_len]);
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_messages_parse_back() {
        let mut buf = [0u8; CONTROL_LEN];
        for local in [
            Local::V4(Ipv4Addr::new(192, 0, 2, 7)),
            Local::V6("fe80::1".parse().expect("ip"), 3),
        ] {
            let n = build(local, &mut buf);
            assert!(n <= CONTROL_LEN);
            assert_eq!(parse(&buf[..n]).map(|a| a.reply), Some(local));
        }
    }

    #[test]
    fn layout_matches_the_kernel_macros() {
        // SAFETY: CMSG_SPACE/CMSG_LEN are pure arithmetic on their argument.
        let (sp, ln) = unsafe { (libc::CMSG_SPACE(12), libc::CMSG_LEN(12)) };
        assert_eq!(space(12), sp as usize);
        assert_eq!(HDR + 12, ln as usize);
        // SAFETY: as above.
        assert!(space(20) <= CONTROL_LEN && unsafe { libc::CMSG_SPACE(20) } as usize == space(20));
    }

    /// An `in_pktinfo` message as the kernel writes it.
    fn v4_message(ifindex: i32, spec_dst: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut b = vec![0u8; space(12)];
        b[..ALIGN].copy_from_slice(&(HDR + 12).to_ne_bytes());
        b[ALIGN..ALIGN + 4].copy_from_slice(&libc::IPPROTO_IP.to_ne_bytes());
        b[ALIGN + 4..ALIGN + 8].copy_from_slice(&libc::IP_PKTINFO.to_ne_bytes());
        b[HDR..HDR + 4].copy_from_slice(&ifindex.to_ne_bytes());
        b[HDR + 4..HDR + 8].copy_from_slice(&spec_dst);
        b[HDR + 8..HDR + 12].copy_from_slice(&dst);
        b
    }

    #[test]
    fn the_header_destination_and_interface_are_read() {
        let a = parse(&v4_message(7, [10, 0, 0, 1], [10, 0, 0, 1])).expect("parsed");
        assert_eq!(a.reply, Local::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!((a.dst, a.ifindex), (IpAddr::from([10, 0, 0, 1]), 7));
        assert!(!a.to_many(), "unicast");
        for dst in [[10, 0, 0, 255], [255, 255, 255, 255], [224, 0, 0, 251]] {
            let a = parse(&v4_message(7, [10, 0, 0, 1], dst)).expect("parsed");
            assert!(a.to_many(), "{dst:?}");
        }
        // Even if the kernel named the group itself as the reply address.
        let a = parse(&v4_message(7, [239, 1, 2, 3], [239, 1, 2, 3])).expect("parsed");
        assert!(a.to_many());
        let mut buf = [0u8; CONTROL_LEN];
        let n = build(Local::V6("ff02::1".parse().expect("ip"), 2), &mut buf);
        assert!(parse(&buf[..n]).expect("parsed").to_many());
        let n = build(Local::V6("2001:db8::1".parse().expect("ip"), 2), &mut buf);
        let a = parse(&buf[..n]).expect("parsed");
        assert!(!a.to_many() && a.ifindex == 2);
    }

    #[test]
    fn ip_pktinfo_wins_over_a_mapped_ipv6_one() {
        let mut buf = vec![0u8; CONTROL_LEN];
        let mapped: Ipv6Addr = "::ffff:10.0.0.255".parse().expect("ip");
        let n = build(Local::V6(mapped, 7), &mut buf);
        buf.truncate(n);
        buf.extend(v4_message(7, [10, 0, 0, 1], [10, 0, 0, 255]));
        let a = parse(&buf).expect("parsed");
        assert_eq!(a.reply, Local::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert!(a.to_many(), "the directed broadcast is seen");
        assert_eq!(parse(&buf[..n]).map(|a| a.dst), Some(IpAddr::V6(mapped)));
    }

    #[test]
    fn garbage_and_other_messages_are_ignored() {
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&[0xff; 40]), None);
        let mut buf = [0u8; CONTROL_LEN];
        let n = build(Local::V4(Ipv4Addr::LOCALHOST), &mut buf);
        buf[ALIGN..ALIGN + 4].copy_from_slice(&libc::SOL_SOCKET.to_ne_bytes());
        assert_eq!(parse(&buf[..n]), None);
    }
}
