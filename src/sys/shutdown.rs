//! Cooperative shutdown: one flag plus one eventfd every worker watches.
//!
//! SIGINT/SIGTERM are blocked in every thread and taken synchronously by one signal thread
//! (no async-signal-safety puzzles). Triggering sets the flag and makes the eventfd readable;
//! nobody ever reads it, so it stays readable and wakes every worker's poll at once, whether
//! the worker sleeps in `io_uring_enter` or `epoll_wait`.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Context, Result};

/// The shared "stop now" signal.
#[derive(Debug)]
pub struct Shutdown {
    flag: AtomicBool,
    efd: OwnedFd,
}

impl Shutdown {
    /// A fresh, untriggered signal.
    pub fn new() -> Result<Self> {
        // SAFETY: eventfd has no memory preconditions; a non-negative result is a new fd we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("creating the shutdown eventfd");
        }
        // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
        let efd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Shutdown {
            flag: AtomicBool::new(false),
            efd,
        })
    }

    /// Ask every worker to stop.
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::Release);
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own. A failure (counter
        // saturated) still leaves the fd readable, which is all the workers need.
        unsafe {
            libc::write(self.efd.as_raw_fd(), (&one as *const u64).cast(), 8);
        }
    }

    /// Has [`Shutdown::trigger`] been called?
    pub fn is_triggered(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// The eventfd that becomes readable on trigger (poll it; never read it).
    pub fn fd(&self) -> RawFd {
        self.efd.as_raw_fd()
    }
}

/// Block SIGINT and SIGTERM in the calling thread (threads spawned later inherit the mask).
pub fn block_signals() -> Result<()> {
    let set = termination_set();
    // SAFETY: `set` is an initialised sigset_t; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc)).context("blocking SIGINT/SIGTERM");
    }
    Ok(())
}

/// Wait (in a thread that has them blocked) until SIGINT or SIGTERM arrives.
pub fn wait_for_signal() -> i32 {
    let set = termination_set();
    let mut sig: libc::c_int = 0;
    loop {
        // SAFETY: `set` is initialised and `sig` is a valid out-pointer.
        if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
            return sig;
        }
    }
}

fn termination_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set before sigaddset touches it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}
