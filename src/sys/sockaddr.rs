//! Socket addresses as the bytes the kernel reads and writes (`sockaddr_in`,
//! `sockaddr_in6`), converted without pointer casts: io_uring's multishot `recvmsg` puts
//! the sender's address inside the receive buffer, and `recvmmsg`/`sendmmsg` take plain
//! byte buffers, so both engines share this.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Bytes that hold either address (`sizeof(struct sockaddr_in6)`).
pub const NAME_LEN: usize = std::mem::size_of::<libc::sockaddr_in6>();

/// The address in `b` (a `sockaddr_in` or `sockaddr_in6` as the kernel wrote it).
pub fn parse(b: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes(b.get(0..2)?.try_into().ok()?);
    let port = u16::from_be_bytes(b.get(2..4)?.try_into().ok()?);
    match i32::from(family) {
        libc::AF_INET => {
            let ip: [u8; 4] = b.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
        }
        libc::AF_INET6 => {
            let flow = u32::from_be_bytes(b.get(4..8)?.try_into().ok()?);
            let ip: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            let scope = u32::from_ne_bytes(b.get(24..28)?.try_into().ok()?);
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port,
                flow,
                scope,
            )))
        }
        _ => None,
    }
}

/// Write `addr` into `out` as the kernel expects it; returns the length to pass.
pub fn write(addr: SocketAddr, out: &mut [u8; NAME_LEN]) -> u32 {
    out.fill(0);
    out[2..4].copy_from_slice(&addr.port().to_be_bytes());
    match addr {
        SocketAddr::V4(a) => {
            out[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            out[4..8].copy_from_slice(&a.ip().octets());
            std::mem::size_of::<libc::sockaddr_in>() as u32
        }
        SocketAddr::V6(a) => {
            out[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            out[4..8].copy_from_slice(&a.flowinfo().to_be_bytes());
            out[8..24].copy_from_slice(&a.ip().octets());
            out[24..28].copy_from_slice(&a.scope_id().to_ne_bytes());
            NAME_LEN as u32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_families_round_trip() {
        for a in ["192.0.2.9:7", "[2001:db8::5]:65535", "[fe80::1%4]:1"] {
            let addr: SocketAddr = a.parse().expect("addr");
            let mut buf = [0u8; NAME_LEN];
            let len = write(addr, &mut buf) as usize;
            assert_eq!(parse(&buf[..len]), Some(addr), "{a}");
        }
        assert_eq!(parse(&[0u8; 4]), None);
    }
}
