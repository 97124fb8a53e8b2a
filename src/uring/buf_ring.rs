//! The provided buffer ring (`IORING_REGISTER_PBUF_RING`, Linux 5.19): a ring of buffer
//! descriptors shared with the kernel, from which multishot receives pick a buffer per
//! completion, so an idle connection holds no memory.
//!
//! Ownership is the invariant everything rests on. A buffer is either *in the ring* (the
//! kernel may fill it) or *held* (a completion handed it to us and its bytes await their
//! echo). [`BufRing::take`] moves it from ring to held when a completion says
//! `IORING_CQE_F_BUFFER`; [`BufRing::give_back`] moves it back once its bytes are sent. Both
//! check the move against a bitmap, so a double give-back (the bug that crosses data
//! between connections) is an error instead of silent corruption.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::IoUring;

use crate::error::{Context, Error, Result};

/// An anonymous private mapping, unmapped on drop. Pages cost RSS only once touched.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> Result<Mapping> {
        // SAFETY: an anonymous private mapping with no address hint aliases nothing.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("mapping {len} bytes for the buffer ring"));
        }
        let ptr = NonNull::new(p.cast()).ok_or_else(|| Error::msg("mmap returned null"))?;
        Ok(Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; nothing borrows the mapping past
        // the owner's lifetime (the owner unregisters from the kernel first, see BufRing).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// Why a take or give-back was refused: the bookkeeping would break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnershipError {
    /// A completion named a buffer that is not in the ring (already held).
    NotInRing(u16),
    /// A buffer was given back that is already in the ring.
    AlreadyInRing(u16),
    /// The buffer id is beyond the ring's size.
    OutOfRange(u16),
}

impl std::fmt::Display for OwnershipError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OwnershipError::NotInRing(b) => write!(f, "kernel selected buffer {b} we still hold"),
            OwnershipError::AlreadyInRing(b) => write!(f, "buffer {b} given back twice"),
            OwnershipError::OutOfRange(b) => write!(f, "buffer id {b} out of range"),
        }
    }
}

impl From<OwnershipError> for Error {
    fn from(e: OwnershipError) -> Self {
        Error::msg(format!("buffer ring bookkeeping: {e}"))
    }
}

/// One worker's buffer ring and the buffers behind it.
pub struct BufRing {
    ring: Mapping,
    slab: Mapping,
    entries: u16,
    buf_size: u32,
    bgid: u16,
    /// Our tail: entries written so far (wrapping). The kernel sees it only on `publish`.
    tail: u16,
    /// Tail value last made visible to the kernel.
    published: u16,
    /// Bit per buffer: set while the buffer is in the ring (the kernel may fill it).
    in_ring: Vec<u64>,
    held: u32,
}

impl BufRing {
    /// A ring of `entries` buffers of `buf_size` bytes, all of them in the ring and
    /// published. `entries` must be a power of two, at most 32768 (the kernel's limit).
    pub fn new(entries: u16, buf_size: u32, bgid: u16) -> Result<BufRing> {
        if !entries.is_power_of_two() || entries > 32768 {
            crate::bail!("buffer ring size {entries} is not a power of two up to 32768");
        }
        let page = 4096;
        let ring_bytes =
            (usize::from(entries) * std::mem::size_of::<BufRingEntry>()).div_ceil(page) * page;
        let ring = Mapping::new(ring_bytes)?;
        let slab = Mapping::new(usize::from(entries) * buf_size as usize)?;
        let mut br = BufRing {
            ring,
            slab,
            entries,
            buf_size,
            bgid,
            tail: 0,
            published: 0,
            in_ring: vec![0; usize::from(entries).div_ceil(64)],
            held: u32::from(entries),
        };
        for bid in 0..entries {
            br.give_back(bid)?;
        }
        br.publish();
        Ok(br)
    }

    /// Register the ring with `ring` under this ring's group id (`flags`: 0 or
    /// `IOU_PBUF_RING_INC`).
    ///
    /// # Safety
    /// The kernel keeps writing to the buffers and reading the descriptors until the group
    /// is unregistered or the io_uring instance is gone: `self` must outlive both, and must
    /// not be registered twice.
    pub unsafe fn register(&self, ring: &IoUring, flags: u16) -> std::io::Result<()> {
        // SAFETY: the descriptor mapping is page-aligned and `entries` long; the caller
        // guarantees it stays mapped while registered.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                self.ring.ptr.as_ptr() as u64,
                self.entries,
                self.bgid,
                flags,
            )
        }
    }

    /// The buffer group id completions and receives refer to.
    pub fn bgid(&self) -> u16 {
        self.bgid
    }

    /// Size of each buffer.
    pub fn buf_size(&self) -> u32 {
        self.buf_size
    }

    /// Number of buffers (the ring's size).
    pub fn entries(&self) -> u16 {
        self.entries
    }

    /// Buffers we hold (taken, not yet given back); the rest are the kernel's to fill.
    pub fn held(&self) -> u32 {
        self.held
    }

    /// Start of buffer `bid`. Valid for `buf_size` bytes while the ring lives.
    pub fn buf_ptr(&self, bid: u16) -> *const u8 {
        debug_assert!(bid < self.entries);
        // SAFETY: bid < entries, so the offset stays inside the slab mapping.
        unsafe {
            self.slab
                .ptr
                .as_ptr()
                .add(usize::from(bid) * self.buf_size as usize)
        }
    }

    /// The first `len` bytes of held buffer `bid`.
    pub fn bytes(&self, bid: u16, len: usize) -> &[u8] {
        let len = len.min(self.buf_size as usize);
        // SAFETY: in range (see buf_ptr); the buffer is held, so the kernel is not writing it.
        unsafe { std::slice::from_raw_parts(self.buf_ptr(bid), len) }
    }

    /// A completion handed us buffer `bid`: it leaves the ring.
    pub fn take(&mut self, bid: u16) -> Result<(), OwnershipError> {
        let (word, bit) = self.slot(bid)?;
        if self.in_ring[word] & bit == 0 {
            return Err(OwnershipError::NotInRing(bid));
        }
        self.in_ring[word] &= !bit;
        self.held += 1;
        Ok(())
    }

    /// Buffer `bid`'s bytes are fully echoed: put it back in the ring (visible to the
    /// kernel at the next [`BufRing::publish`]).
    pub fn give_back(&mut self, bid: u16) -> Result<(), OwnershipError> {
        let (word, bit) = self.slot(bid)?;
        if self.in_ring[word] & bit != 0 {
            return Err(OwnershipError::AlreadyInRing(bid));
        }
        self.in_ring[word] |= bit;
        self.held -= 1;
        let idx = usize::from(self.tail & (self.entries - 1));
        // SAFETY: idx < entries, inside the descriptor mapping. The kernel reads only
        // entries between its head and the published tail, and this one is past the
        // published tail, so nobody reads it while we write it.
        let entry = unsafe { &mut *self.ring.ptr.as_ptr().cast::<BufRingEntry>().add(idx) };
        entry.set_addr(self.buf_ptr(bid) as u64);
        entry.set_len(self.buf_size);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        Ok(())
    }

    /// Make every given-back buffer visible to the kernel: one release store of the tail,
    /// once per event-loop turn however many buffers came back. True if any did.
    pub fn publish(&mut self) -> bool {
        if self.tail == self.published {
            return false;
        }
        // SAFETY: the tail is the u16 the kernel reads at the ring's base (it overlays
        // entry 0's reserved field); the mapping is live and suitably aligned.
        let tail = unsafe {
            AtomicU16::from_ptr(BufRingEntry::tail(self.ring.ptr.as_ptr().cast()).cast_mut())
        };
        // Release: the descriptor writes above must be visible before the new tail.
        tail.store(self.tail, Ordering::Release);
        self.published = self.tail;
        true
    }

    /// The tail the kernel currently sees.
    pub fn published_tail(&self) -> u16 {
        self.published
    }

    fn slot(&self, bid: u16) -> Result<(usize, u64), OwnershipError> {
        if bid >= self.entries {
            return Err(OwnershipError::OutOfRange(bid));
        }
        Ok((usize::from(bid / 64), 1u64 << (bid % 64)))
    }
}

/// Can this kernel consume provided buffers incrementally (`IOU_PBUF_RING_INC`, 6.12)?
/// Answered by registering a one-entry ring with the flag and unregistering it again.
pub fn incremental_supported(ring: &IoUring) -> bool {
    const PROBE_BGID: u16 = u16::MAX;
    let Ok(br) = BufRing::new(1, 64, PROBE_BGID) else {
        return false;
    };
    // SAFETY: `br` outlives the registration: it is unregistered below before `br` drops.
    let ok = unsafe { br.register(ring, io_uring::types::IOU_PBUF_RING_INC as u16) }.is_ok();
    if ok {
        let _ = ring.submitter().unregister_buf_ring(PROBE_BGID);
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(br: &BufRing, idx: u16) -> (u64, u32, u16) {
        // SAFETY: test-only read of a descriptor inside the mapping.
        let e = unsafe {
            &*br.ring
                .ptr
                .as_ptr()
                .cast::<BufRingEntry>()
                .add(usize::from(idx))
        };
        (e.addr(), e.len(), e.bid())
    }

    #[test]
    fn a_new_ring_offers_every_buffer_once() {
        let br = BufRing::new(8, 128, 3).expect("ring");
        assert_eq!(br.held(), 0);
        assert_eq!(br.published_tail(), 8);
        for i in 0..8u16 {
            let (addr, len, bid) = entry(&br, i);
            assert_eq!(bid, i);
            assert_eq!(len, 128);
            assert_eq!(addr, br.buf_ptr(i) as u64);
        }
    }

    #[test]
    fn take_and_give_back_balance_and_publish_once_per_batch() {
        let mut br = BufRing::new(4, 64, 0).expect("ring");
        br.take(2).expect("in ring");
        br.take(0).expect("in ring");
        assert_eq!(br.held(), 2);
        assert!(!br.publish(), "nothing new to publish");
        br.give_back(0).expect("held");
        br.give_back(2).expect("held");
        assert_eq!(br.held(), 0);
        assert_eq!(br.published_tail(), 4, "not visible before publish");
        assert!(br.publish());
        assert_eq!(br.published_tail(), 6);
        // The descriptors wrapped around the 4-entry ring, in give-back order.
        assert_eq!(entry(&br, 0).2, 0);
        assert_eq!(entry(&br, 1).2, 2);
    }

    #[test]
    fn double_give_back_and_foreign_take_are_refused() {
        let mut br = BufRing::new(4, 64, 0).expect("ring");
        assert_eq!(br.give_back(1), Err(OwnershipError::AlreadyInRing(1)));
        br.take(1).expect("in ring");
        assert_eq!(br.take(1), Err(OwnershipError::NotInRing(1)));
        assert_eq!(br.take(9), Err(OwnershipError::OutOfRange(9)));
        br.give_back(1).expect("held");
        assert_eq!(br.give_back(1), Err(OwnershipError::AlreadyInRing(1)));
    }

    #[test]
    fn tail_wraps_past_u16() {
        let mut br = BufRing::new(2, 64, 0).expect("ring");
        for _ in 0..40_000 {
            br.take(1).expect("in ring");
            br.give_back(1).expect("held");
            br.publish();
        }
        assert_eq!(br.published_tail(), 2u16.wrapping_add(40_000));
    }

    #[test]
    fn rejects_sizes_the_kernel_would() {
        assert!(BufRing::new(3, 64, 0).is_err());
        assert!(BufRing::new(0, 64, 0).is_err());
    }
}
