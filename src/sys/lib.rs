//! ringecho's syscall boundary: every raw `libc` call the servers, the checker and the
//! load generators make, with its `unsafe` and the invariant that makes it sound, behind
//! safe functions; and the one error type all of ringecho's crates share.
//!
//! - [`net`]: listeners and client sockets, socket options, CPU affinity, rlimits;
//! - [`epoll`]: epoll, `accept4`, `recv`/`send`;
//! - [`mmsg`]: the one `sendmmsg`/`recvmmsg` wrapper, for the epoll UDP worker and the
//!   UDP load generator alike;
//! - [`pktinfo`], [`sockaddr`], [`ifaddrs`]: control messages, socket addresses, the
//!   host's interface addresses;
//! - [`shutdown`]: the stop signal (SIGINT/SIGTERM taken by one thread, an eventfd).

pub mod epoll;
pub mod error;
pub mod ifaddrs;
pub mod mmsg;
pub mod net;
pub mod pktinfo;
pub mod shutdown;
pub mod sockaddr;
