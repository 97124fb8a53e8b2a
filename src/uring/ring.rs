//! Ring set-up for one worker: flags from the probed feature set, queue sizes that keep the
//! completion queue from overflowing, the registered ring fd, and the sparse table of
//! direct descriptors that multishot accept fills.

use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::time::Duration;

use io_uring::types::{SubmitArgs, Timespec};
use io_uring::{cqueue, squeue, IoUring, Submitter};

use super::probe::Features;
use crate::error::{Context, Error, Result};

/// Submission queue entries. Completions are reaped in batches and each produces at most a
/// couple of SQEs; a full SQ is flushed with a submit, never an error.
pub const SQ_ENTRIES: u32 = 1024;

/// The kernel's ceiling for CQ entries (`IORING_MAX_CQ_ENTRIES`).
const CQ_MAX: u32 = 65536;

/// CQ entries for a worker: every buffer can be in a completion at once, and each
/// connection can have a receive end, a send, a cancel and a close pending; plus room for
/// a burst of accepts. Capped at the kernel's maximum: beyond it, `IORING_FEAT_NODROP`
/// keeps overflowed completions instead of losing them (slower, never wrong).
pub fn cq_entries(buffers: u32, max_conns: u32, backlog: u32) -> u32 {
    let want = u64::from(buffers) + 4 * u64::from(max_conns) + u64::from(backlog) + 64;
    let want = want.clamp(u64::from(2 * SQ_ENTRIES), u64::from(CQ_MAX));
    (want as u32).next_power_of_two().min(CQ_MAX)
}

/// A worker's ring together with the one [`Submitter`] that remembers the registered ring
/// fd. (The io-uring crate hands out a fresh `Submitter`, which has forgotten the
/// registration, on every `IoUring::submitter()` call; keeping one is the only way every
/// `io_uring_enter` actually passes `IORING_ENTER_REGISTERED_RING`.)
///
/// The ring lives on the heap at a fixed address so the `Submitter` can borrow it for the
/// wrapper's whole life; everything accesses it through shared references only.
pub struct Ring {
    ring: NonNull<IoUring>,
    submitter: ManuallyDrop<Submitter<'static>>,
}

impl Ring {
    fn new(ring: IoUring) -> Result<Ring> {
        let ring = NonNull::from(Box::leak(Box::new(ring)));
        // SAFETY: the allocation is live until Drop, which drops the submitter first; the
        // 'static borrow never escapes this struct (accessors reborrow for &self).
        let shared: &'static IoUring = unsafe { ring.as_ref() };
        let mut wrapped = Ring {
            ring,
            submitter: ManuallyDrop::new(shared.submitter()),
        };
        // Saves the fd lookup on every io_uring_enter (5.18). On error `wrapped` drops
        // normally.
        wrapped
            .submitter
            .register_ring_fd()
            .context("registering the ring fd")?;
        Ok(wrapped)
    }

    fn io_uring(&self) -> &IoUring {
        // SAFETY: live until Drop; only shared references are ever made.
        unsafe { self.ring.as_ref() }
    }

    /// The submitter, with the registered ring fd.
    pub fn submitter(&self) -> &Submitter<'static> {
        &self.submitter
    }

    /// The underlying ring (for registration calls).
    pub fn inner(&self) -> &IoUring {
        self.io_uring()
    }

    /// Queue one SQE; false if the SQ is full.
    ///
    /// # Safety
    /// Every pointer in `sqe` must stay valid until its completion arrives.
    pub unsafe fn push(&self, sqe: &squeue::Entry) -> bool {
        // SAFETY: this is the only place a SubmissionQueue is made, and it is dropped
        // (publishing the tail) before returning, so two never coexist. The caller
        // vouches for the SQE's pointers.
        unsafe { self.io_uring().submission_shared().push(sqe).is_ok() }
    }

    /// Queue one SQE, flushing the SQ to the kernel first whenever it is full, so a
    /// burst of completions that each want an SQE never fails for want of room.
    ///
    /// # Safety
    /// As for [`Ring::push`]: every pointer in `sqe` must stay valid until its
    /// completion arrives.
    pub unsafe fn push_flushing(&self, sqe: &squeue::Entry) -> Result<()> {
        loop {
            // SAFETY: the caller vouches for the SQE's pointers.
            if unsafe { self.push(sqe) } {
                return Ok(());
            }
            match self.submitter.submit() {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(Error::from(e).context("flushing a full submission queue")),
            }
        }
    }

    /// Submit what is queued and wait for at least one completion; with `bounded`, wait
    /// at most 20 ms (a stopping worker must notice its deadline even if no completion
    /// ever comes).
    pub fn enter(&self, bounded: bool) -> Result<()> {
        self.enter_for(bounded.then_some(Duration::from_millis(20)))
    }

    /// Submit what is queued and wait for at least one completion, or at most `limit`
    /// (a worker with a deadline of its own). Interrupted, timed out or "reap the CQ
    /// first" all just mean "reap".
    pub fn enter_for(&self, limit: Option<Duration>) -> Result<()> {
        let res = match limit {
            Some(d) => {
                let d = d.max(Duration::from_millis(1));
                let ts = Timespec::new().sec(d.as_secs()).nsec(d.subsec_nanos());
                let args = SubmitArgs::new().timespec(&ts);
                self.submitter.submit_with_args(1, &args)
            }
            None => self.submitter.submit_and_wait(1),
        };
        match res {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR | libc::ETIME | libc::EBUSY | libc::EAGAIN)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(Error::from(e).context("io_uring_enter")),
        }
    }

    /// Move up to `max` completions into `out`, releasing their CQ slots.
    pub fn reap_into(&self, out: &mut Vec<cqueue::Entry>, max: usize) {
        // SAFETY: the only place a CompletionQueue is made; dropped (publishing the new
        // head) before returning.
        let cq = unsafe { self.io_uring().completion_shared() };
        out.extend(cq.take(max));
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: the submitter borrows the ring, so it goes first; then the box made in
        // `new` is reclaimed exactly once.
        unsafe {
            ManuallyDrop::drop(&mut self.submitter);
            drop(Box::from_raw(self.ring.as_ptr()));
        }
    }
}

/// Build the worker's ring with the feature set's flags, register its fd, and create a
/// sparse file table of `files` direct descriptors.
pub fn build(features: &Features, cq: u32, files: u32) -> Result<Ring> {
    let mut b = IoUring::builder();
    b.setup_cqsize(cq).setup_clamp().setup_submit_all();
    // The probe refuses kernels without these (see `Features::select`).
    b.setup_single_issuer().setup_defer_taskrun();
    if features.no_sqarray {
        b.setup_no_sqarray();
    }
    let ring = b
        .build(SQ_ENTRIES)
        .with_context(|| format!("setting up an io_uring with {cq} CQ entries"))?;
    let ring = Ring::new(ring)?;
    ring.submitter()
        .register_files_sparse(files)
        .with_context(|| {
            format!("registering {files} direct descriptors (is the open-file limit lower?)")
        })?;
    Ok(ring)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cq_is_a_power_of_two_within_kernel_limits() {
        assert_eq!(cq_entries(4096, 100, 128), 8192);
        assert_eq!(cq_entries(16, 1, 1), 2048, "at least twice the SQ");
        assert_eq!(cq_entries(32768, 65536, 4096), CQ_MAX);
        for (b, c, l) in [(1, 1, 1), (4096, 10_000, 4096), (8, 3, 5)] {
            let n = cq_entries(b, c, l);
            assert!(n.is_power_of_two() && (2 * SQ_ENTRIES..=CQ_MAX).contains(&n));
        }
    }
}
