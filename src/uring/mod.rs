//! The io_uring engine: one ring per worker thread, shared-nothing.

pub mod buf_ring;
pub mod probe;

use crate::error::Result;
use crate::server::WorkerCtx;

/// Serve connections on `ctx.listener` until shutdown.
pub fn run_worker(ctx: WorkerCtx, _features: probe::Features) -> Result<()> {
    ctx.ready();
    crate::bail!("uring engine not written yet")
}
