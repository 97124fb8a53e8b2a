//! Ctrl-C during bench-all: the first SIGINT (or SIGTERM) asks the run to stop after the
//! step in progress, so that every finished phase is kept and summarised; a second one
//! stops the servers and quits at once. The signals are blocked in every thread and taken
//! by one thread of their own (`sigwait`), so no load thread ever sees an `EINTR` and no
//! handler has to be async-signal-safe. The servers run in process groups of their own,
//! so the terminal's Ctrl-C reaches only the harness.

use std::sync::atomic::{AtomicBool, Ordering};

use super::servers;
use crate::error::{Context, Result};
use crate::shutdown;

/// Set by the first signal.
static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Block SIGINT and SIGTERM in this thread (and so in every thread it starts later) and
/// start the thread that takes them. Call before any other thread starts.
pub fn install() -> Result<()> {
    shutdown::block_signals()?;
    std::thread::Builder::new()
        .name("bench-all signals".into())
        .spawn(|| loop {
            let sig = shutdown::wait_for_signal();
            let name = if sig == libc::SIGINT {
                "Ctrl-C"
            } else {
                "SIGTERM"
            };
            if REQUESTED.swap(true, Ordering::AcqRel) {
                eprintln!("\nbench-all: {name} again: stopping the servers and quitting");
                servers::kill_all_now();
                std::process::exit(130);
            }
            eprintln!(
                "\nbench-all: {name}: stopping after this step; the finished phases are kept \
                 ({name} again to quit at once)"
            );
        })
        .map(drop)
        .context("starting the signal thread")
}

/// Whether a stop was asked for.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Acquire)
}
