//! The io_uring event loop both transports run: one ring per worker thread, its buffer
//! ring, the count of operations in flight, the stop sequence, and the one owner of every
//! byte the kernel may read or write on the worker's behalf.
//!
//! A transport is a [`Handler`]: it arms its first operations, handles each completion,
//! and does its per-turn work (re-arms) after the loop has handed returned buffers back
//! to the kernel. The loop owns the rest: waiting, reaping in batches, publishing the
//! buffer ring once per turn, the shutdown poll and cancel-all, and teardown.
//!
//! Memory: everything an SQE may point at lives in one [`KernelMemory`], and
//! [`EventLoop`]'s `Drop` frees it as a unit only when no operation is in flight (after
//! unregistering the buffer ring), and leaks it as a unit otherwise. Every
//! `unsafe { io.push(..) }` in the transports relies on exactly that.

use std::mem::ManuallyDrop;
use std::time::{Duration, Instant};

use io_uring::types::{CancelBuilder, Fd, Fixed, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, CompletionQueue, IoUring, SubmissionQueue, Submitter};

use super::buf_ring::BufRing;
use super::probe::Features;
use super::ring;
use super::token::{self, Op};
use crate::error::{Context, Error, Result};
use crate::server::WorkerCtx;

/// Buffer group id of the worker's buffer ring (one ring per worker, so one group).
pub const BGID: u16 = 0;
/// Completions copied out of the CQ per pass (their CQ slots are released before they are
/// handled, so the kernel can post more meanwhile).
const REAP_BATCH: usize = 256;
/// How long a stopping worker waits for cancelled operations to complete.
const STOP_WAIT: Duration = Duration::from_millis(500);
/// How often a stopping worker looks at its deadline while it waits (a stopping worker
/// must notice its deadline even if no completion ever comes).
const STOP_POLL: Duration = Duration::from_millis(20);

/// Everything the kernel may read or write for one worker: the receive buffers and their
/// descriptor ring, and the transport's `slots` (sendmsg headers, reply slots, the
/// recvmsg header). It is freed or leaked as a unit by [`EventLoop`], so a pointer into
/// it stays valid for as long as any operation can use it.
///
/// Two rules keep that true, and every `unsafe { io.push(..) }` rests on them: `slots`
/// keeps what SQEs point at behind its own heap allocation (a `Box`), so that moving the
/// `KernelMemory` never moves it; and a handler writes headers and slots in place, never
/// replacing a field or a box (which would free what an operation may still use). A
/// replaced `bufs` would be safe anyway: a registered `BufRing` leaks when dropped.
pub struct KernelMemory<S> {
    /// The provided buffer ring receives fill.
    pub bufs: BufRing,
    /// The transport's kernel-visible headers and slots.
    pub slots: S,
}

/// What a transport does inside the event loop. Every method runs on the worker thread,
/// between two `io_uring_enter` calls.
pub trait Handler {
    /// The transport's part of [`KernelMemory`].
    type Slots;

    /// The longest wait for a completion while serving (`None`: until one comes).
    fn wait_limit(&self) -> Option<Duration> {
        None
    }

    /// Called once per turn, after the wait and before any completion is handled.
    fn turn_start(&mut self) {}

    /// Called before each batch of completions is handled.
    fn batch_start(&mut self) {}

    /// One completion of an operation this transport submitted (`op`, `index` and
    /// `generation` decoded from its `user_data`).
    fn complete(
        &mut self,
        io: &mut Issuer<'_, Self::Slots>,
        op: Op,
        index: u32,
        generation: u32,
        cqe: &cqueue::Entry,
    ) -> Result<()>;

    /// Arm whatever should be armed and is not (the accept, a starved receive): once
    /// before the first wait, which is how the first operations start, then once per
    /// turn, after every completion was handled and returned buffers were published to
    /// the kernel.
    fn turn_end(&mut self, io: &mut Issuer<'_, Self::Slots>) -> Result<()>;
}

/// One worker's ring and the memory its operations use. `Drop` tears them down in the one
/// order that is sound (see its comments).
pub struct EventLoop<S> {
    ring: ManuallyDrop<IoUring>,
    mem: ManuallyDrop<KernelMemory<S>>,
    /// SQEs submitted whose final CQE has not arrived (a multishot counts once). Updated
    /// as each SQE is queued and each final CQE reaped, so that `Drop` sees the truth even
    /// after a panic.
    inflight: u32,
}

impl<S> EventLoop<S> {
    /// Set up the ring (`cq` completion entries, `files` direct descriptors) and register
    /// `mem`'s buffer ring with it.
    pub fn new(features: &Features, cq: u32, files: u32, mem: KernelMemory<S>) -> Result<Self> {
        let ring = ring::build(features, cq, files)?;
        let mut lp = EventLoop {
            ring: ManuallyDrop::new(ring),
            mem: ManuallyDrop::new(mem),
            inflight: 0,
        };
        let (entries, size) = (lp.mem.bufs.entries(), lp.mem.bufs.buf_size());
        let submitter = lp.ring.submitter();
        // SAFETY: the buffer ring lives in `lp.mem`, which `Drop` frees only after
        // unregistering it with no operation in flight, and leaks otherwise; it is
        // registered only here, once.
        unsafe { lp.mem.bufs.register(&submitter, 0) }
            .with_context(|| format!("registering a buffer ring of {entries} x {size} bytes"))?;
        Ok(lp)
    }

    /// Serve `ctx`'s worker until its shutdown signal: the handler's operations, then
    /// cancel everything and wait for it (at most `STOP_WAIT`).
    pub fn run<H: Handler<Slots = S>>(&mut self, ctx: &WorkerCtx, handler: &mut H) -> Result<()> {
        // The crate remembers a registered ring fd only in the `Submitter` that registered
        // it (a fresh one from `split` or `submitter` passes the raw fd again), so this one
        // drives every `io_uring_enter` of the loop. It borrows the ring from this frame,
        // not from the struct, so nothing is self-referential.
        let (mut submitter, sq, mut cq) = self.ring.split();
        submitter
            .register_ring_fd()
            .context("registering the ring fd")?;
        let mut io = Issuer {
            submitter,
            sq,
            inflight: &mut self.inflight,
            stopping: None,
            mem: &mut self.mem,
        };
        let res = io.serve(&mut cq, ctx, handler);
        // A registered ring fd holds a reference to the ring: drop it so that closing the
        // ring in `Drop` tears it down, closing the direct descriptors.
        let _ = io.submitter.unregister_ring_fd();
        res
    }
}

impl<S> Drop for EventLoop<S> {
    fn drop(&mut self) {
        let idle = self.inflight == 0;
        if idle {
            // The kernel lets go of the descriptor ring; if this fails the buffer ring
            // stays marked registered and leaks its mappings when dropped.
            let _ = self.mem.bufs.unregister(&self.ring.submitter());
        }
        // SAFETY: dropped exactly once, here; nothing borrows it (`run` has returned).
        unsafe { ManuallyDrop::drop(&mut self.ring) };
        if idle {
            // SAFETY: no operation is in flight, so the kernel holds no pointer into the
            // memory; dropped exactly once, here.
            unsafe { ManuallyDrop::drop(&mut self.mem) };
        }
        // Otherwise an operation that ignored cancellation might still write into a
        // buffer or read a header: the whole of `mem` is leaked (the worker is ending)
        // rather than freed under it.
    }
}

/// The loop as a handler sees it: queue SQEs, read the stop state, reach the memory.
pub struct Issuer<'a, S> {
    submitter: Submitter<'a>,
    sq: SubmissionQueue<'a>,
    inflight: &'a mut u32,
    stopping: Option<Instant>,
    /// The memory SQEs may point at.
    pub mem: &'a mut KernelMemory<S>,
}

impl<S> Issuer<'_, S> {
    /// Has shutdown begun? (Cancel-all is then in flight and no new work starts.)
    pub fn stopping(&self) -> bool {
        self.stopping.is_some()
    }

    /// Queue one SQE and count it in flight, flushing the SQ to the kernel first whenever
    /// it is full, so a burst of completions that each want an SQE never fails for want
    /// of room.
    ///
    /// # Safety
    /// Every pointer in `sqe` must point into [`Issuer::mem`] (freed only once no operation is
    /// in flight) or at memory the kernel holds its own reference to.
    pub unsafe fn push(&mut self, sqe: &squeue::Entry) -> Result<()> {
        loop {
            // SAFETY: the caller vouches for the SQE's pointers.
            if unsafe { self.sq.push(sqe) }.is_ok() {
                *self.inflight += 1;
                return Ok(());
            }
            self.sq.sync();
            match self.submitter.submit() {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(Error::from(e).context("flushing a full submission queue")),
            }
            self.sq.sync();
        }
    }

    /// Cancel the operation whose `user_data` is `target`.
    pub fn cancel(&mut self, target: u64, user_data: u64) -> Result<()> {
        let sqe = opcode::AsyncCancel::new(target)
            .build()
            .user_data(user_data);
        // SAFETY: a cancel carries no pointer.
        unsafe { self.push(&sqe) }
    }

    /// Close direct descriptor `fd`.
    pub fn close(&mut self, fd: u32, user_data: u64) -> Result<()> {
        let sqe = opcode::Close::new(Fixed(fd)).build().user_data(user_data);
        // SAFETY: a close carries no pointer.
        unsafe { self.push(&sqe) }
    }

    /// Arm a multishot receive on direct descriptor `fd` into the worker's buffer ring,
    /// one buffer per completion.
    pub fn recv_multi(&mut self, fd: u32, user_data: u64) -> Result<()> {
        let sqe = opcode::RecvMulti::new(Fixed(fd), BGID)
            .build()
            .user_data(user_data);
        // SAFETY: no pointer; the kernel writes only into buffers of group BGID, which
        // live in `mem.bufs`.
        unsafe { self.push(&sqe) }
    }

    /// Arm a multishot accept on `listener` that installs direct descriptors.
    pub fn accept_multi(&mut self, listener: i32, user_data: u64) -> Result<()> {
        let sqe = opcode::AcceptMulti::new(Fd(listener))
            .allocate_file_index(true)
            .build()
            .user_data(user_data);
        // SAFETY: no address is asked for, so the SQE carries no pointer; the kernel holds
        // its own reference to the listener.
        unsafe { self.push(&sqe) }
    }

    fn serve<H: Handler<Slots = S>>(
        &mut self,
        cq: &mut CompletionQueue<'_>,
        ctx: &WorkerCtx,
        h: &mut H,
    ) -> Result<()> {
        h.turn_end(self)?;
        let wake = opcode::PollAdd::new(Fd(ctx.shared.shutdown.fd()), libc::POLLIN as u32)
            .build()
            .user_data(token::encode(Op::Wake, 0, 0));
        // SAFETY: a poll carries no pointer; the kernel holds its own reference to the
        // eventfd.
        unsafe { self.push(&wake) }?;
        ctx.ready();
        let mut batch: Vec<cqueue::Entry> = Vec::with_capacity(REAP_BATCH);
        loop {
            let limit = match self.stopping {
                Some(_) => Some(STOP_POLL),
                None => h.wait_limit(),
            };
            self.enter(limit)?;
            h.turn_start();
            cq.sync();
            loop {
                batch.clear();
                batch.extend(cq.by_ref().take(REAP_BATCH));
                // Release the slots (and see what arrived meanwhile) before handling.
                cq.sync();
                if batch.is_empty() {
                    break;
                }
                h.batch_start();
                for cqe in &batch {
                    self.complete(h, cqe)?;
                }
            }
            self.mem.bufs.publish();
            h.turn_end(self)?;
            if let Some(since) = self.stopping {
                if *self.inflight == 0 || since.elapsed() > STOP_WAIT {
                    return Ok(());
                }
            }
        }
    }

    fn complete<H: Handler<Slots = S>>(&mut self, h: &mut H, cqe: &cqueue::Entry) -> Result<()> {
        if !cqueue::more(cqe.flags()) {
            *self.inflight = self.inflight.saturating_sub(1);
        }
        let Some((op, index, generation)) = token::decode(cqe.user_data()) else {
            return Err(Error::msg(format!(
                "completion with unknown user_data {:#x}",
                cqe.user_data()
            )));
        };
        match op {
            Op::Wake => {
                self.begin_stop();
                Ok(())
            }
            // Its outcome changes nothing: the operations it targets report for themselves.
            Op::CancelAll => Ok(()),
            _ => h.complete(self, op, index, generation, cqe),
        }
    }

    /// Shutdown requested: cancel every operation in flight. The loop returns once they
    /// have all completed (or `STOP_WAIT` is over).
    fn begin_stop(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        self.stopping = Some(Instant::now());
        let all = opcode::AsyncCancel2::new(CancelBuilder::any())
            .build()
            .user_data(token::encode(Op::CancelAll, 0, 0));
        // SAFETY: a cancel carries no pointer. A failure only means the stop takes
        // `STOP_WAIT`.
        let _ = unsafe { self.push(&all) };
    }

    /// Submit what is queued and wait for at least one completion, or at most `limit`.
    /// Interrupted, timed out or "reap the CQ first" all just mean "reap".
    fn enter(&mut self, limit: Option<Duration>) -> Result<()> {
        self.sq.sync();
        let res = match limit {
            Some(d) => {
                let d = d.max(Duration::from_millis(1));
                let ts = Timespec::new().sec(d.as_secs()).nsec(d.subsec_nanos());
                let args = SubmitArgs::new().timespec(&ts);
                self.submitter.submit_with_args(1, &args)
            }
            None => self.submitter.submit_and_wait(1),
        };
        self.sq.sync();
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
}
