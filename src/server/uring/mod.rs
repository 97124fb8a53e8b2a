//! The io_uring engine: one ring per worker thread, shared-nothing.
//!
//! - [`probe`]: what the kernel offers and which feature set is used.
//! - [`ring`]: ring set-up (flags, queue sizes, direct-descriptor table).
//! - [`event_loop`]: the loop both transports run, and the one owner of the memory the
//!   kernel may touch.
//! - [`buf_ring`]: the provided buffer ring receives fill.
//! - [`conn`]: per-connection state, the intrusive send queue, and the pure TCP state
//!   machine.
//! - [`token`]: what a completion's `user_data` says.
//! - [`tcp`]: the TCP worker, accept to echo.
//! - [`udp`]: the UDP worker: multishot `recvmsg` to `sendmsg`, buffer to buffer.
//!
//! The engine's one entry point is [`run`]; nothing here is reached from another engine,
//! so an engine beside it (epoll, a future BPF one) needs nothing from this module but
//! the same `WorkerCtx`.

pub mod accept;
pub mod buf_ring;
pub mod conn;
pub mod event_loop;
pub mod probe;
pub mod ring;
pub mod tcp;
pub mod token;
pub mod udp;

use crate::error::Result;
use crate::server::{Transport, WorkerCtx};

/// Serve `ctx.socket` (connections or datagrams, by its transport) until shutdown.
pub fn run(ctx: WorkerCtx, features: &probe::Features) -> Result<()> {
    match ctx.transport {
        Transport::Tcp => tcp::serve(ctx, features),
        Transport::Udp => udp::serve(ctx, features),
    }
}
