//! Ring set-up for one worker: flags from the probed feature set, queue sizes that keep the
//! completion queue from overflowing, and the sparse table of direct descriptors that
//! multishot accept fills. The ring fd is registered where the ring is driven
//! ([`super::event_loop`]), because only the `Submitter` that registered it remembers it.

use io_uring::IoUring;

use super::probe::Features;
use crate::error::{Context, Result};

/// Submission queue entries. Completions are reaped in batches and each produces at most a
/// couple of SQEs; a full SQ is flushed with a submit, never an error.
pub const SQ_ENTRIES: u32 = 1024;

/// The kernel's ceiling for CQ entries (`IORING_MAX_CQ_ENTRIES`).
const CQ_MAX: u32 = 65536;

/// CQ entries for a TCP worker: every buffer can be in a completion at once, and each
/// connection can have a receive end, a send, a cancel and a close pending; plus room for
/// a burst of accepts. Capped at the kernel's maximum: beyond it, `IORING_FEAT_NODROP`
/// keeps overflowed completions instead of losing them (slower, never wrong).
pub fn cq_entries(buffers: u32, max_conns: u32, backlog: u32) -> u32 {
    let want = u64::from(buffers) + 4 * u64::from(max_conns) + u64::from(backlog) + 64;
    let want = want.clamp(u64::from(2 * SQ_ENTRIES), u64::from(CQ_MAX));
    (want as u32).next_power_of_two().min(CQ_MAX)
}

/// Build a worker's ring with the feature set's flags and a sparse file table of `files`
/// direct descriptors.
pub fn build(features: &Features, cq: u32, files: u32) -> Result<IoUring> {
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
