//! The io_uring engine: one ring per worker thread, shared-nothing.
//!
//! - [`probe`]: what the kernel offers and which feature set is used.
//! - [`ring`]: ring set-up (flags, queue sizes, registered fd, direct-descriptor table).
//! - [`buf_ring`]: the provided buffer ring receives fill.
//! - [`conn`]: per-connection state and the intrusive send queue.
//! - [`token`]: what a completion's `user_data` says.
//! - [`tcp`]: the TCP worker's event loop and the handlers, accept to echo.
//! - [`udp`]: the UDP worker: multishot `recvmsg` to `sendmsg`, buffer to buffer.

pub mod buf_ring;
pub mod conn;
pub mod probe;
pub mod ring;
pub mod tcp;
pub mod token;
pub mod udp;

use crate::error::Result;
use crate::server::WorkerCtx;

/// Serve connections on `ctx.socket` until shutdown.
pub fn run_worker(ctx: WorkerCtx, features: probe::Features) -> Result<()> {
    tcp::Worker::new(ctx, features)?.run()
}

/// Serve datagrams on `ctx.socket` until shutdown.
pub fn run_udp_worker(ctx: WorkerCtx, features: probe::Features) -> Result<()> {
    udp::UdpWorker::new(ctx, features)?.run()
}
