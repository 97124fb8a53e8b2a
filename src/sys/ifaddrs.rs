//! The host's interfaces as `getifaddrs(3)` lists them: which interface indexes are
//! loopback and which addresses are the host's own (how the UDP policy recognises a
//! datagram from this host itself), and which are an interface's broadcast address
//! (which `--bind` refuses).

use std::ffi::CStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What the server needs to know about the host's interfaces.
#[derive(Debug, Clone, Default)]
pub struct Interfaces {
    /// Indexes of interfaces flagged `IFF_LOOPBACK`.
    pub loopback: Vec<u32>,
    /// Every address of every interface, IPv4 and IPv6.
    pub addrs: Vec<IpAddr>,
    /// Broadcast addresses of interfaces flagged `IFF_BROADCAST`.
    pub broadcast: Vec<Ipv4Addr>,
}

impl Interfaces {
    /// Read them now (a few syscalls and allocations: never per datagram).
    pub fn read() -> std::io::Result<Interfaces> {
        let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
        // SAFETY: getifaddrs writes a list head into the pointer we pass, or fails.
        if unsafe { libc::getifaddrs(&mut head) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut found = Interfaces::default();
        let mut at = head;
        while !at.is_null() {
            // SAFETY: `at` is a node of the list getifaddrs returned, which stays valid
            // until the freeifaddrs below; the loop reads each node once and follows
            // its `ifa_next`.
            let ifa = unsafe { &*at };
            at = ifa.ifa_next;
            let flags = ifa.ifa_flags;
            if flags & libc::IFF_LOOPBACK as u32 != 0 && !ifa.ifa_name.is_null() {
                // SAFETY: a non-null ifa_name is a NUL-terminated string of the list.
                let name = unsafe { CStr::from_ptr(ifa.ifa_name) };
                // SAFETY: if_nametoindex reads the NUL-terminated name only.
                let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
                if index != 0 && !found.loopback.contains(&index) {
                    found.loopback.push(index);
                }
            }
            // SAFETY: ifa_addr is null or a sockaddr of the list, its family telling its
            // real type.
            if let Some(a) = unsafe { ip_of(ifa.ifa_addr) } {
                if !found.addrs.contains(&a) {
                    found.addrs.push(a);
                }
            }
            if flags & libc::IFF_BROADCAST as u32 != 0 {
                // SAFETY: with IFF_BROADCAST set, ifa_ifu is ifa_broadaddr; a non-null
                // one points at a sockaddr of the list whose family says its type.
                if let Some(IpAddr::V4(b)) = unsafe { ip_of(ifa.ifa_ifu) } {
                    if !found.broadcast.contains(&b) {
                        found.broadcast.push(b);
                    }
                }
            }
        }
        // SAFETY: `head` came from getifaddrs and is freed once; no reference into the
        // list outlives this call (names and addresses were copied out).
        unsafe { libc::freeifaddrs(head) };
        Ok(found)
    }
}

/// The address in `sa`, if it is a `sockaddr_in` or `sockaddr_in6`.
///
/// # Safety
/// `sa` is null or points at a valid `sockaddr` whose family tells its real size.
unsafe fn ip_of(sa: *const libc::sockaddr) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    match i32::from((*sa).sa_family) {
        libc::AF_INET => {
            let sin = &*sa.cast::<libc::sockaddr_in>();
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                sin.sin_addr.s_addr,
            ))))
        }
        libc::AF_INET6 => {
            let sin6 = &*sa.cast::<libc::sockaddr_in6>();
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

/// Why `ip` may not be a listening address, if it may not: a datagram sent to a
/// broadcast or multicast address reaches every host listening there, so an echo server
/// bound to one answers (and amplifies) whole networks. `ifaces` supplies the
/// broadcast addresses of this host's interfaces, which only the host knows.
pub fn bind_refusal(ip: IpAddr, ifaces: &Interfaces) -> Option<&'static str> {
    match ip.to_canonical() {
        IpAddr::V4(v4) if v4.is_broadcast() => Some("is the broadcast address"),
        IpAddr::V4(v4) if v4.is_multicast() => Some("is a multicast address (224.0.0.0/4)"),
        IpAddr::V4(v4) if ifaces.broadcast.contains(&v4) => {
            Some("is an interface's broadcast address")
        }
        IpAddr::V6(v6) if v6.is_multicast() => Some("is a multicast address (ff00::/8)"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_host_has_a_loopback_interface_and_address() {
        let i = Interfaces::read().expect("getifaddrs");
        assert!(!i.loopback.is_empty(), "{i:?}");
        assert!(i.addrs.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)), "{i:?}");
    }

    #[test]
    fn group_addresses_are_refused_and_unicast_ones_are_not() {
        let ifaces = Interfaces {
            loopback: vec![1],
            addrs: vec![],
            broadcast: vec![Ipv4Addr::new(10, 77, 0, 255)],
        };
        for bad in [
            "255.255.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "10.77.0.255",
            "ff02::1",
            "ff05::fb",
            "::ffff:224.0.0.251",
        ] {
            let ip: IpAddr = bad.parse().expect("ip");
            assert!(bind_refusal(ip, &ifaces).is_some(), "{bad}");
        }
        for good in [
            "127.0.0.1",
            "0.0.0.0",
            "::",
            "::1",
            "10.77.0.1",
            "10.77.1.255",
        ] {
            let ip: IpAddr = good.parse().expect("ip");
            assert_eq!(bind_refusal(ip, &ifaces), None, "{good}");
        }
    }
}
