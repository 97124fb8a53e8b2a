//! What both engines need to echo a UDP datagram correctly and safely, whatever drives
//! the socket: which local address a datagram arrived on and how to reply from it
//! ([`pktinfo`]), and whether to reply at all ([`guard`]'s policy, with its loop breaker
//! in [`loops`] and the shared `--udp-rate` table in [`limiter`]).
//!
//! UDP echo (RFC 862) is a classic reflection, loop and amplification vector: a spoofed
//! datagram "from" another echo or chargen service (or from this very server) makes two
//! services talk to each other forever, one sent to a broadcast address draws an echo
//! from every host, and a spoofed victim address gets our replies. The policy drops what
//! would loop or reflect; the optional per-source rate limit bounds what one address can
//! make us send.

pub mod guard;
pub mod limiter;
pub mod loops;

/// The cmsg, sockaddr and interface-address code lives at the syscall boundary.
pub use ringecho_sys::{ifaddrs, pktinfo, sockaddr};

/// Largest UDP payload over IPv6 (65,535 minus the 8-byte UDP header); IPv4's is 65,507.
pub const MAX_DATAGRAM: usize = 65_527;
