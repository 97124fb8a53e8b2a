//! The provided buffer ring (`IORING_REGISTER_PBUF_RING`, Linux 5.19): a ring of buffer
//! descriptors shared with the kernel, from which multishot receives pick a buffer per
//! completion, so an idle connection holds no memory.
//!
//! Ownership is the invariant everything rests on. A buffer is *in the ring* (the kernel
//! may fill it), *held* (a completion handed it to us and its bytes await their echo), or
//! *spare* (ours, idle). [`BufRing::take`] moves it from ring to held when a completion
//! says `IORING_CQE_F_BUFFER`; [`BufRing::give_back`] moves it from held to spare once its
//! bytes are sent; [`BufRing::publish`] moves spares into the ring. Take and give-back
//! check the move against a bitmap, so a double give-back (the bug that crosses data
//! between connections) is an error instead of silent corruption.
//!
//! The ring holds a *window* of buffers, not the whole pool, and is refilled from the
//! spares most recently given back. The kernel takes buffers in ring order, so a ring
//! holding the whole pool cycles every buffer through memory in turn (the default pool is
//! 64 MiB, larger than a typical L3), every receive writes into cold memory, and the whole
//! pool becomes resident. A window just big enough for one event-loop turn's receives
//! keeps the buffers in use few and the rest of the pool untouched (docs/performance.md
//! has the RSS it saved). The window doubles when a receive finds the ring empty while
//! spares exist, and halves after a long stretch of turns that never used half of it.

use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::Submitter;

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
        // SAFETY: ptr/len are exactly what mmap returned, unmapped once. A mapping is only
        // ever owned by a BufRing, which drops it only while not registered with a ring
        // (see `BufRing`'s Drop); and a registered BufRing's owner, `EventLoop`, drops it
        // only once no operation is in flight, and leaks it otherwise. So neither the
        // kernel nor a slice we handed out reaches this address afterwards.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// Why a take or give-back was refused: the bookkeeping would break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnershipError {
    /// A completion named a buffer that is not in the ring (held or spare).
    NotInRing(u16),
    /// A buffer was given back, or read, that is not held (given back twice, or never
    /// taken).
    NotHeld(u16),
    /// The buffer id is beyond the ring's size.
    OutOfRange(u16),
}

impl std::fmt::Display for OwnershipError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OwnershipError::NotInRing(b) => write!(f, "kernel selected buffer {b} not in the ring"),
            OwnershipError::NotHeld(b) => write!(f, "buffer {b} given back but not held"),
            OwnershipError::OutOfRange(b) => write!(f, "buffer id {b} out of range"),
        }
    }
}

impl From<OwnershipError> for Error {
    fn from(e: OwnershipError) -> Self {
        Error::msg(format!("buffer ring bookkeeping: {e}"))
    }
}

/// The smallest window: small enough that the buffers in use stay in a core's cache at the
/// default buffer size; a turn that receives on more connections than this grows it at
/// the cost of one re-arm.
const MIN_WINDOW: u16 = 16;
/// Event-loop turns between shrink checks: long enough that a window that was just
/// grown is not given up on one quiet stretch, so ENOBUFS re-arms stay rare.
const SHRINK_TURNS: u32 = 1024;

/// One worker's buffer ring and the buffers behind it: the descriptors the kernel reads
/// (`ring`) and the buffers it fills (`pool`).
pub struct BufRing {
    ring: ManuallyDrop<Mapping>,
    pool: ManuallyDrop<Mapping>,
    /// Registered with a ring (set by `register`, cleared by `unregister`): while set, the
    /// kernel may read the descriptors, so Drop leaks the mappings instead of unmapping.
    registered: bool,
    entries: u16,
    buf_size: u32,
    bgid: u16,
    /// Our tail: entries written so far (wrapping). The kernel sees it only on `publish`.
    tail: u16,
    /// Tail value last made visible to the kernel.
    published: u16,
    /// Bit per buffer: set while the buffer is in the ring (the kernel may fill it).
    in_ring: Vec<u64>,
    /// Bit per buffer: set while we hold it (taken, not yet given back).
    held: Vec<u64>,
    /// Buffers neither in the ring nor held; the last given back on top.
    spare: Vec<u16>,
    /// How many buffers `publish` keeps in the ring.
    window: u16,
    /// Buffers in the ring, written or published.
    ring_count: u16,
    held_count: u32,
    /// A receive found the ring empty since the last `publish`.
    starved: bool,
    /// Fewest buffers left in the ring at a `publish` since the last shrink check.
    low_water: u16,
    /// `publish` calls since the last shrink check.
    turns: u32,
}

impl BufRing {
    /// A pool of `entries` buffers of `buf_size` bytes, the first window of them in the
    /// ring and published. `entries` must be a power of two, at most 32768 (the kernel's
    /// limit).
    pub fn new(entries: u16, buf_size: u32, bgid: u16) -> Result<BufRing> {
        if !entries.is_power_of_two() || entries > 32768 {
            crate::bail!("buffer ring size {entries} is not a power of two up to 32768");
        }
        let page = 4096;
        let ring_bytes =
            (usize::from(entries) * std::mem::size_of::<BufRingEntry>()).div_ceil(page) * page;
        let ring = ManuallyDrop::new(Mapping::new(ring_bytes)?);
        let pool = ManuallyDrop::new(Mapping::new(usize::from(entries) * buf_size as usize)?);
        let words = usize::from(entries).div_ceil(64);
        let window = MIN_WINDOW.min(entries);
        let mut br = BufRing {
            ring,
            pool,
            registered: false,
            entries,
            buf_size,
            bgid,
            tail: 0,
            published: 0,
            in_ring: vec![0; words],
            held: vec![0; words],
            // Buffer 0 on top: the low buffers are used first and the rest stay untouched.
            spare: (0..entries).rev().collect(),
            window,
            ring_count: 0,
            held_count: 0,
            starved: false,
            low_water: window,
            turns: 0,
        };
        br.publish();
        Ok(br)
    }

    /// Register the buffer ring with the ring `submitter` drives, under this ring's group
    /// id (`flags`: 0 or `IOU_PBUF_RING_INC`).
    ///
    /// # Safety
    /// Operations of that ring write into the buffers they pick until they complete: the
    /// caller must not drop `self` while one may still be in flight (unregistering does
    /// not stop them), and must register it with one ring only.
    pub unsafe fn register(
        &mut self,
        submitter: &Submitter<'_>,
        flags: u16,
    ) -> std::io::Result<()> {
        // SAFETY: the descriptor mapping is page-aligned and `entries` long; while
        // `registered` is set, Drop never unmaps it.
        unsafe {
            submitter.register_buf_ring_with_flags(
                self.ring.ptr.as_ptr() as u64,
                self.entries,
                self.bgid,
                flags,
            )
        }?;
        self.registered = true;
        Ok(())
    }

    /// Unregister the buffer ring from the ring `submitter` drives: the kernel stops
    /// reading the descriptors, and Drop may unmap again.
    pub fn unregister(&mut self, submitter: &Submitter<'_>) -> std::io::Result<()> {
        if self.registered {
            submitter.unregister_buf_ring(self.bgid)?;
            self.registered = false;
        }
        Ok(())
    }

    /// The buffer group id completions and receives refer to.
    pub fn bgid(&self) -> u16 {
        self.bgid
    }

    /// Size of each buffer.
    pub fn buf_size(&self) -> u32 {
        self.buf_size
    }

    /// Number of buffers in the pool (the ring's size).
    pub fn entries(&self) -> u16 {
        self.entries
    }

    /// Buffers we hold (taken, not yet given back).
    pub fn held(&self) -> u32 {
        self.held_count
    }

    /// Buffers not held: in the ring, or spare and put there by the next `publish`.
    pub fn free(&self) -> u32 {
        u32::from(self.entries) - self.held_count
    }

    /// Buffers in the ring now (some perhaps not yet published).
    pub fn in_ring(&self) -> u16 {
        self.ring_count
    }

    /// How many buffers `publish` keeps in the ring.
    pub fn window(&self) -> u16 {
        self.window
    }

    /// Start of buffer `bid`, for an SQE (a send of its bytes). Valid for `buf_size`
    /// bytes while the buffer ring lives; only a held buffer's bytes are ours to send.
    pub fn buf_ptr(&self, bid: u16) -> *const u8 {
        debug_assert!(bid < self.entries);
        // wrapping_add: plain address arithmetic; for bid < entries it stays inside the
        // pool mapping.
        self.pool
            .ptr
            .as_ptr()
            .wrapping_add(usize::from(bid) * self.buf_size as usize)
    }

    /// The first `len` bytes (at most the buffer size) of buffer `bid`, which must be
    /// held: a buffer in the ring may be written by the kernel at any time.
    pub fn bytes(&self, bid: u16, len: usize) -> Result<&[u8], OwnershipError> {
        let (word, bit) = self.slot(bid)?;
        if self.held[word] & bit == 0 {
            return Err(OwnershipError::NotHeld(bid));
        }
        let len = len.min(self.buf_size as usize);
        // SAFETY: bid < entries and len <= buf_size, so the slice is inside the pool
        // mapping, which lives as long as `self`. The buffer is held (checked above), so
        // it is not in the ring and no operation can pick it to write into; it leaves
        // `held` only through `give_back(&mut self)`, which this borrow excludes.
        Ok(unsafe { std::slice::from_raw_parts(self.buf_ptr(bid), len) })
    }

    /// A completion handed us buffer `bid`: it leaves the ring.
    pub fn take(&mut self, bid: u16) -> Result<(), OwnershipError> {
        let (word, bit) = self.slot(bid)?;
        if self.in_ring[word] & bit == 0 {
            return Err(OwnershipError::NotInRing(bid));
        }
        self.in_ring[word] &= !bit;
        self.held[word] |= bit;
        self.ring_count -= 1;
        self.held_count += 1;
        Ok(())
    }

    /// Buffer `bid`'s bytes are fully echoed: it becomes a spare, on top, so the next
    /// `publish` puts it back in the ring first and the buffers in use stay few.
    pub fn give_back(&mut self, bid: u16) -> Result<(), OwnershipError> {
        let (word, bit) = self.slot(bid)?;
        if self.held[word] & bit == 0 {
            return Err(OwnershipError::NotHeld(bid));
        }
        self.held[word] &= !bit;
        self.held_count -= 1;
        // Cannot reallocate: the stack has room for the whole pool.
        self.spare.push(bid);
        Ok(())
    }

    /// A receive ended with ENOBUFS: the ring ran dry. If spares were left out of it,
    /// the window was too small for a turn's receives; the next `publish` doubles it.
    pub fn note_starved(&mut self) {
        self.starved = true;
    }

    /// Adjust the window, refill the ring to it from the top of the spares, and make the
    /// new entries visible to the kernel: one release store of the tail, once per
    /// event-loop turn however many buffers came back. True if any entry was published.
    pub fn publish(&mut self) -> bool {
        self.resize_window();
        while self.ring_count < self.window {
            let Some(bid) = self.spare.pop() else {
                break;
            };
            self.write_entry(bid);
        }
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

    /// Grow the window after a starved turn; halve it after `SHRINK_TURNS` turns in which
    /// the ring never fell below half of it (the kernel consumes only inside our
    /// `io_uring_enter`, so the count before a refill is the turn's low point).
    fn resize_window(&mut self) {
        if std::mem::take(&mut self.starved) {
            if !self.spare.is_empty() {
                self.window = self.window.saturating_mul(2).min(self.entries);
            }
            self.turns = 0;
            self.low_water = self.window;
            return;
        }
        self.low_water = self.low_water.min(self.ring_count);
        self.turns += 1;
        if self.turns >= SHRINK_TURNS {
            if self.low_water >= self.window / 2 {
                self.window = (self.window / 2).max(MIN_WINDOW.min(self.entries));
            }
            self.turns = 0;
            self.low_water = self.window;
        }
    }

    /// Put spare buffer `bid` in the ring at our tail (seen by the kernel on publish).
    fn write_entry(&mut self, bid: u16) {
        let (word, bit) = (usize::from(bid / 64), 1u64 << (bid % 64));
        debug_assert!(self.in_ring[word] & bit == 0 && self.held[word] & bit == 0);
        self.in_ring[word] |= bit;
        self.ring_count += 1;
        let idx = usize::from(self.tail & (self.entries - 1));
        // SAFETY: idx < entries, inside the descriptor mapping. The kernel reads only
        // entries between its head and the published tail, and this one is past the
        // published tail (the ring holds at most `entries` buffers, so the slot is free),
        // so nobody reads it while we write it.
        let entry = unsafe { &mut *self.ring.ptr.as_ptr().cast::<BufRingEntry>().add(idx) };
        entry.set_addr(self.buf_ptr(bid) as u64);
        entry.set_len(self.buf_size);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
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

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.registered {
            // The kernel may still read the descriptors (unregistering failed or never
            // happened): leave both mappings in place for the rest of the process.
            return;
        }
        // SAFETY: each mapping is dropped exactly once, here, and never used again.
        unsafe {
            ManuallyDrop::drop(&mut self.ring);
            ManuallyDrop::drop(&mut self.pool);
        }
    }
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

    /// Do what the kernel does with a receive: fill the buffer at ring slot `idx`, which
    /// the completion hands to us (held). Returns its id.
    fn kernel_fills(br: &mut BufRing, idx: u16) -> u16 {
        let bid = entry(br, idx).2;
        br.take(bid).expect("in ring");
        bid
    }

    #[test]
    fn a_new_ring_offers_the_first_window_of_buffers_once() {
        let br = BufRing::new(64, 128, 3).expect("ring");
        assert_eq!(br.held(), 0);
        assert_eq!(br.free(), 64);
        assert_eq!(br.window(), MIN_WINDOW);
        assert_eq!(br.published_tail(), MIN_WINDOW);
        for i in 0..MIN_WINDOW {
            let (addr, len, bid) = entry(&br, i);
            assert_eq!(bid, i, "low buffers first");
            assert_eq!(len, 128);
            assert_eq!(addr, br.buf_ptr(i) as u64);
        }
        let small = BufRing::new(4, 64, 0).expect("ring");
        assert_eq!((small.window(), small.published_tail()), (4, 4));
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
        // The last given back goes back first.
        assert_eq!(entry(&br, 0).2, 2);
        assert_eq!(entry(&br, 1).2, 0);
    }

    #[test]
    fn double_give_back_and_foreign_take_are_refused() {
        let mut br = BufRing::new(64, 64, 0).expect("ring");
        assert_eq!(br.give_back(1), Err(OwnershipError::NotHeld(1)));
        assert_eq!(br.give_back(40), Err(OwnershipError::NotHeld(40)), "spare");
        assert_eq!(br.take(40), Err(OwnershipError::NotInRing(40)), "spare");
        br.take(1).expect("in ring");
        assert_eq!(br.take(1), Err(OwnershipError::NotInRing(1)));
        assert_eq!(br.take(99), Err(OwnershipError::OutOfRange(99)));
        br.give_back(1).expect("held");
        assert_eq!(br.give_back(1), Err(OwnershipError::NotHeld(1)));
        assert_eq!(
            br.take(1),
            Err(OwnershipError::NotInRing(1)),
            "spare until published"
        );
    }

    #[test]
    fn recently_returned_buffers_are_reused_and_the_rest_stay_untouched() {
        let mut br = BufRing::new(1024, 64, 0).expect("ring");
        let mut seen = vec![false; 1024];
        let mut next = 0u16; // ring position the kernel would take next
        for _ in 0..10_000 {
            // The kernel fills the oldest ring entry; we echo it and give it back.
            let bid = kernel_fills(&mut br, next & 1023);
            next = next.wrapping_add(1);
            seen[usize::from(bid)] = true;
            br.give_back(bid).expect("held");
            br.publish();
        }
        let used = seen.iter().filter(|&&s| s).count();
        assert_eq!(
            used,
            usize::from(MIN_WINDOW),
            "a one-at-a-time load cycles one window"
        );
    }

    #[test]
    fn the_window_grows_when_starved_and_shrinks_when_idle() {
        let mut br = BufRing::new(256, 64, 0).expect("ring");
        // A turn takes the whole window and starves.
        let bids: Vec<u16> = (0..MIN_WINDOW).map(|i| kernel_fills(&mut br, i)).collect();
        assert_eq!(br.in_ring(), 0);
        br.note_starved();
        br.publish();
        assert_eq!(br.window(), 2 * MIN_WINDOW);
        assert_eq!(br.in_ring(), 2 * MIN_WINDOW, "refilled from the spares");
        for &b in &bids {
            br.give_back(b).expect("held");
        }
        // Quiet turns: nothing taken, so the ring never falls below half the window.
        for _ in 0..SHRINK_TURNS {
            br.publish();
        }
        assert_eq!(br.window(), MIN_WINDOW);
        // Shrinking leaves buffers already in the ring there; none is lost.
        assert_eq!(br.free(), 256);
        assert_eq!(br.held(), 0);
    }

    #[test]
    fn a_starved_ring_with_no_spares_keeps_its_window() {
        // 64 buffers, a window of 16: take every buffer, one window per turn, so that
        // none is left spare, then starve. Growing would only spread future receives.
        let mut br = BufRing::new(64, 64, 0).expect("ring");
        for i in 0..64u16 {
            kernel_fills(&mut br, i & 63);
            if br.in_ring() == 0 {
                br.publish();
            }
        }
        assert_eq!((br.free(), br.window()), (0, MIN_WINDOW));
        br.note_starved();
        assert!(!br.publish());
        assert_eq!(br.window(), MIN_WINDOW, "no spares: the window stays");
    }

    #[test]
    fn tail_wraps_past_u16() {
        let mut br = BufRing::new(2, 64, 0).expect("ring");
        for i in 0..40_000u16 {
            let b = kernel_fills(&mut br, i & 1);
            br.give_back(b).expect("held");
            br.publish();
        }
        assert_eq!(br.published_tail(), 2u16.wrapping_add(40_000));
    }

    #[test]
    fn bytes_are_readable_only_while_held() {
        let mut br = BufRing::new(4, 64, 0).expect("ring");
        assert_eq!(
            br.bytes(0, 8),
            Err(OwnershipError::NotHeld(0)),
            "in the ring"
        );
        br.take(0).expect("in ring");
        assert_eq!(
            br.bytes(0, 1000).map(<[u8]>::len),
            Ok(64),
            "capped at the size"
        );
        assert_eq!(br.bytes(0, 5).map(<[u8]>::len), Ok(5));
        br.give_back(0).expect("held");
        assert_eq!(br.bytes(0, 8), Err(OwnershipError::NotHeld(0)), "spare");
        assert_eq!(br.bytes(9, 8), Err(OwnershipError::OutOfRange(9)));
    }

    /// Is the page at `addr` mapped? (`mincore` fails with ENOMEM on an unmapped range.)
    fn mapped(addr: *const u8) -> bool {
        let mut vec = 0u8;
        // SAFETY: mincore only reads the page tables; `vec` has room for one page's byte.
        unsafe { libc::mincore(addr.cast_mut().cast(), 1, &mut vec) == 0 }
    }

    #[test]
    fn a_registered_ring_is_leaked_not_unmapped() {
        let Ok(ring) = io_uring::IoUring::new(4) else {
            eprintln!("skipped: io_uring unavailable here");
            return;
        };
        let submitter = ring.submitter();
        let mut kept = BufRing::new(4, 64, 1).expect("ring");
        // SAFETY: no operation of `ring` ever uses the group.
        unsafe { kept.register(&submitter, 0) }.expect("register");
        let (descs, pool) = (kept.ring.ptr.as_ptr().cast_const(), kept.buf_ptr(0));
        drop(kept);
        assert!(
            mapped(descs) && mapped(pool),
            "registered: leaked, not unmapped"
        );

        // Unregistered, it unmaps again (not asserted through `mapped`: a test running
        // in parallel may map the same address at once).
        let mut freed = BufRing::new(4, 64, 2).expect("ring");
        // SAFETY: as above.
        unsafe { freed.register(&submitter, 0) }.expect("register");
        assert!(freed.registered);
        freed.unregister(&submitter).expect("unregister");
        assert!(!freed.registered, "Drop unmaps");
        freed
            .unregister(&submitter)
            .expect("a second unregister is a no-op");
    }

    #[test]
    fn rejects_sizes_the_kernel_would() {
        assert!(BufRing::new(3, 64, 0).is_err());
        assert!(BufRing::new(0, 64, 0).is_err());
    }
}
