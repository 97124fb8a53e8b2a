//! ringecho: an io_uring completion-driven echo server (RFC 862), the epoll server it is
//! measured against, and a conformance checker for any TCP echo server.
//!
//! Where a byte goes, accept to echo: [`server`] opens one SO_REUSEPORT listener per worker
//! ([`net`]) and starts the chosen engine on each. In [`uring`], a multishot accept hands
//! the worker a direct descriptor ([`uring::tcp`]); a multishot recv fills buffers from the
//! worker's provided buffer ring ([`uring::buf_ring`]); each filled buffer joins the
//! connection's send queue ([`uring::conn`]) and goes back to the ring once its bytes are
//! sent. [`epoll`] does the same with readiness events and `read`/`write`.

#[path = "../bench/mod.rs"]
pub mod bench;
pub mod check;
pub mod config;
pub mod epoll;
pub mod error;
pub mod hold;
pub mod net;
pub mod ratelog;
pub mod server;
pub mod shutdown;
pub mod stats;
pub mod udp;
pub mod uring;
