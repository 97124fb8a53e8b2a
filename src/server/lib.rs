//! ringecho's servers: the io_uring completion-driven echo server (RFC 862) and the epoll
//! server it is measured against, TCP and UDP, with the policies both enforce against
//! hostile clients.
//!
//! Where a byte goes, accept to echo: [`server`] opens one SO_REUSEPORT listener per worker
//! (`ringecho_sys::net`) and starts the chosen engine on each. In [`uring`], a multishot
//! accept hands the worker a direct descriptor ([`uring::tcp`]); a multishot recv fills
//! buffers from the worker's provided buffer ring ([`uring::buf_ring`]); each filled buffer
//! joins the connection's send queue ([`uring::conn`]) and goes back to the ring once its
//! bytes are sent. [`epoll`] does the same with readiness events and `read`/`write`. What
//! both hold for clients that do not read is bounded by [`hold`]; what UDP replies to is
//! decided by [`udp`]'s policy.

pub mod config;
pub mod epoll;
pub mod hold;
pub mod ratelog;
pub mod server;
pub mod stats;
pub mod udp;
pub mod uring;

/// The syscall boundary's modules, under the names this crate's code uses.
pub use ringecho_sys::{bail, error, net, shutdown};
