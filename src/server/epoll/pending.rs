//! The slow path of an echo: bytes a connection read but could not send yet because the
//! socket's send buffer was full (the client is not reading fast enough).
//!
//! The fast path never touches this: a read chunk is sent straight from the worker's
//! scratch buffer. Only the unsent remainder of a short send is copied here, and the buffer
//! exists only while bytes are waiting, so an idle connection holds none. Drained buffers go
//! back to a small per-worker [`BufPool`], so a connection that bounces in and out of
//! backpressure does not pay for an allocation (or, past glibc's mmap threshold, an
//! mmap/munmap pair and page faults) every time.

use std::io;

/// Smallest capacity a pending buffer starts with, to avoid a string of tiny regrowths.
const MIN_CAPACITY: usize = 4096;

/// Bytes waiting to be echoed, oldest first. `buf[head..]` is unsent; `buf[..head]` has
/// been sent and is reclaimed by compaction when space runs out.
#[derive(Debug, Default)]
pub struct Pending {
    buf: Vec<u8>,
    head: usize,
    /// Read chunks (wholly or partly) in `buf`; counted as echoed when it drains.
    chunks: u32,
}

/// What one [`Pending::flush`] achieved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    /// Bytes the kernel accepted.
    pub bytes: usize,
    /// Read chunks now fully echoed (non-zero only when the buffer drained).
    pub echoes: u32,
}

impl Pending {
    /// Unsent bytes.
    pub fn len(&self) -> usize {
        self.buf.len() - self.head
    }

    /// Nothing waiting? (Then no memory is held either.)
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of heap this buffer holds right now.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Queue `bytes` (the unsent part of one read chunk) behind what is already waiting.
    ///
    /// The caller guarantees `self.len() + bytes.len() <= limit` (it stops reading once
    /// the backlog reaches the cap, and one read adds at most one chunk), and the buffer's
    /// capacity never grows past `limit`.
    pub fn push(&mut self, bytes: &[u8], pool: &mut BufPool, limit: usize) {
        debug_assert!(self.len() + bytes.len() <= limit, "pending over its limit");
        if bytes.is_empty() {
            return;
        }
        if self.buf.capacity() == 0 {
            self.buf = pool.take();
        }
        if self.head > 0 && self.buf.len() + bytes.len() > self.buf.capacity() {
            // Reclaim the sent prefix before growing: keeps capacity within the limit.
            let live = self.len();
            self.buf.copy_within(self.head.., 0);
            self.buf.truncate(live);
            self.head = 0;
        }
        let need = self.buf.len() + bytes.len();
        if need > self.buf.capacity() {
            let target = (self.buf.capacity() * 2)
                .max(MIN_CAPACITY)
                .min(limit)
                .max(need);
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(bytes);
        self.chunks += 1;
    }

    /// Send waiting bytes with `send` until none are left or it would block. On draining,
    /// the buffer goes back to `pool`. A hard send error is returned as is: the caller
    /// closes the connection, so the bytes left do not matter any more.
    pub fn flush(
        &mut self,
        mut send: impl FnMut(&[u8]) -> io::Result<usize>,
        pool: &mut BufPool,
    ) -> io::Result<Flushed> {
        let mut done = Flushed::default();
        while !self.is_empty() {
            match send(&self.buf[self.head..]) {
                // A stream socket accepts at least one byte or says EAGAIN; zero would
                // mean no progress ever, so treat it as the connection being broken.
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.head += n;
                    done.bytes += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(done),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        done.echoes = std::mem::take(&mut self.chunks);
        self.head = 0;
        pool.give(std::mem::take(&mut self.buf));
        Ok(done)
    }

    /// Hand the buffer back (the connection is closing with bytes unsent).
    pub fn discard(&mut self, pool: &mut BufPool) {
        self.head = 0;
        self.chunks = 0;
        pool.give(std::mem::take(&mut self.buf));
    }
}

/// A few drained pending buffers kept for reuse by the next connection that needs one.
#[derive(Debug)]
pub struct BufPool {
    free: Vec<Vec<u8>>,
    keep: usize,
}

impl BufPool {
    /// A pool that keeps at most `keep` buffers (bounded memory: at most `keep` times the
    /// per-connection limit).
    pub fn new(keep: usize) -> BufPool {
        BufPool {
            free: Vec::with_capacity(keep),
            keep,
        }
    }

    /// A cleared buffer, with capacity if one was kept, else an unallocated one.
    pub fn take(&mut self) -> Vec<u8> {
        self.free.pop().unwrap_or_default()
    }

    /// Keep `buf` for reuse, or free it if the pool is full.
    pub fn give(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() > 0 && self.free.len() < self.keep {
            buf.clear();
            self.free.push(buf);
        }
    }

    /// Buffers held for reuse.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake socket that accepts at most `room` bytes, then says EAGAIN.
    struct Sink {
        out: Vec<u8>,
        room: usize,
        per_call: usize,
    }

    impl Sink {
        fn new(room: usize, per_call: usize) -> Sink {
            Sink {
                out: Vec::new(),
                room,
                per_call,
            }
        }
        fn send(&mut self, b: &[u8]) -> io::Result<usize> {
            let n = b.len().min(self.room).min(self.per_call);
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.out.extend_from_slice(&b[..n]);
            self.room -= n;
            Ok(n)
        }
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn empty_pending_holds_no_memory() {
        let p = Pending::default();
        assert!(p.is_empty());
        assert_eq!(p.capacity(), 0);
    }

    #[test]
    fn bytes_come_out_in_order_across_partial_flushes() {
        let mut pool = BufPool::new(4);
        let mut p = Pending::default();
        let a = pattern(10_000, 1);
        let b = pattern(7_000, 2);
        p.push(&a, &mut pool, 64 << 10);
        let mut sink = Sink::new(3_333, 1_000);
        let f = p.flush(|x| sink.send(x), &mut pool).unwrap();
        assert_eq!(
            f,
            Flushed {
                bytes: 3_333,
                echoes: 0
            }
        );
        p.push(&b, &mut pool, 64 << 10);
        assert_eq!(p.len(), 10_000 - 3_333 + 7_000);
        sink.room = usize::MAX;
        let f = p.flush(|x| sink.send(x), &mut pool).unwrap();
        assert_eq!(f.echoes, 2);
        assert_eq!(sink.out, [a, b].concat());
        assert!(p.is_empty());
        assert_eq!(p.capacity(), 0, "drained buffer must be released");
        assert_eq!(pool.held(), 1);
    }

    #[test]
    fn compaction_keeps_capacity_within_the_limit() {
        let limit = 20_000;
        let mut pool = BufPool::new(1);
        let mut p = Pending::default();
        let mut sink = Sink::new(0, usize::MAX);
        let mut expect = Vec::new();
        for round in 0..50u8 {
            // Keep the backlog just under the limit while the sink drains slowly.
            let chunk = pattern(limit - p.len(), round);
            p.push(&chunk, &mut pool, limit);
            expect.extend_from_slice(&chunk);
            assert!(p.capacity() <= limit, "capacity {} > {limit}", p.capacity());
            sink.room = 1_234;
            p.flush(|x| sink.send(x), &mut pool).unwrap();
        }
        sink.room = usize::MAX;
        p.flush(|x| sink.send(x), &mut pool).unwrap();
        assert_eq!(sink.out, expect);
    }

    #[test]
    fn growth_is_geometric_then_capped() {
        let mut pool = BufPool::new(0);
        let mut p = Pending::default();
        p.push(&[1; 100], &mut pool, 1 << 20);
        assert_eq!(p.capacity(), MIN_CAPACITY);
        p.push(&[2; 4000], &mut pool, 1 << 20);
        assert_eq!(p.capacity(), 2 * MIN_CAPACITY);
        p.push(&[3; 30_000], &mut pool, 40_000);
        assert_eq!(p.capacity(), 34_100);
    }

    #[test]
    fn flush_stops_at_would_block_and_reports_errors() {
        let mut pool = BufPool::new(1);
        let mut p = Pending::default();
        p.push(b"hello", &mut pool, 1024);
        let f = p
            .flush(|_| Err(io::ErrorKind::WouldBlock.into()), &mut pool)
            .unwrap();
        assert_eq!(f, Flushed::default());
        assert_eq!(p.len(), 5);
        let mut calls = 0;
        let f = p.flush(
            |b| {
                calls += 1;
                if calls == 1 {
                    Err(io::ErrorKind::Interrupted.into())
                } else {
                    Ok(b.len())
                }
            },
            &mut pool,
        );
        assert_eq!(
            f.unwrap(),
            Flushed {
                bytes: 5,
                echoes: 1
            }
        );
        p.push(b"x", &mut pool, 1024);
        let e = p
            .flush(
                |_| Err(io::Error::from_raw_os_error(libc::EPIPE)),
                &mut pool,
            )
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPIPE));
        assert!(p.flush(|_| Ok(0), &mut pool).is_err());
        p.discard(&mut pool);
        assert!(p.is_empty());
        assert_eq!(p.capacity(), 0);
    }

    #[test]
    fn pool_is_bounded_and_reuses_capacity() {
        let mut pool = BufPool::new(2);
        for _ in 0..5 {
            pool.give(Vec::with_capacity(100));
        }
        pool.give(Vec::new());
        assert_eq!(pool.held(), 2);
        let mut p = Pending::default();
        p.push(&[0; 10], &mut pool, 1 << 20);
        assert!(p.capacity() >= 100);
        assert_eq!(pool.held(), 1);
    }
}
