//! The epoll engine: the readiness-driven baseline the io_uring engine is measured against.

mod pending;
mod slab;
mod sys;

use crate::error::Result;
use crate::server::WorkerCtx;

/// Serve connections on `ctx.listener` until shutdown.
pub fn run_worker(ctx: WorkerCtx) -> Result<()> {
    ctx.ready();
    crate::bail!("epoll engine not written yet")
}
