//! The io_uring TCP echo worker: one ring, one listener, one buffer ring, every connection
//! of this thread. Completion-driven: nothing here waits on a socket; everything happens
//! in response to a CQE, and every CQE's handler ends in [`Worker::settle`], the one place
//! that decides a connection's next operations from its state.
//!
//! A byte's path: the multishot accept completes with a direct descriptor → a multishot
//! receive is armed on it → a receive CQE names the buffer the kernel filled → the buffer
//! joins the connection's send queue → one send at a time echoes the queue's first buffers
//! (one `sendmsg` for up to 16 of them) → the send CQE returns every fully sent buffer to
//! the ring.

use std::collections::VecDeque;
use std::mem::ManuallyDrop;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use io_uring::types::{CancelBuilder, Fd, Fixed};
use io_uring::{cqueue, opcode, squeue};

use super::buf_ring::BufRing;
use super::conn::{Backpressure, Conn, Life, RecvState, Segments, SendPart, Slab, MAX_SEND_SEGS};
use super::probe::Features;
use super::ring;
use super::token::{self, Op};
use crate::error::{Context, Error, Result};
use crate::hold::{Holders, Reason};
use crate::ratelog::RateLimited;
use crate::server::WorkerCtx;
use crate::stats::bump;

/// Completions copied out of the CQ per pass (the CQ ring is unlocked while we handle them).
const REAP_BATCH: usize = 256;
/// Buffer group id of the worker's buffer ring (one ring per worker, so one group).
const BGID: u16 = 0;
/// Spare direct-descriptor slots beyond `--max-conns`: refused connections occupy one
/// briefly before their close completes.
const SPARE_SLOTS: u32 = 256;
/// How long a stopping worker waits for cancelled operations to complete.
const STOP_WAIT: Duration = Duration::from_millis(500);
/// How often a stopping worker looks at its deadline while it waits.
const STOP_POLL: Duration = Duration::from_millis(20);

/// What the kernel reads for one multi-buffer send.
struct SendMsgSlot {
    hdr: libc::msghdr,
    iov: [libc::iovec; MAX_SEND_SEGS],
}

/// One io_uring worker. Field order matters only through `Drop`, which closes the ring
/// before unmapping the buffers the kernel may write into.
pub struct Worker {
    ring: ManuallyDrop<ring::Ring>,
    bufs: ManuallyDrop<BufRing>,
    segs: Segments,
    /// The `sendmsg` header and `iovec`s of a multi-buffer send, indexed by the id of its
    /// first buffer (unique among sends in flight: a buffer is in one queue, and a queue
    /// has one send in flight). The kernel reads them until the send completes; boxed,
    /// they never move; leaked with the buffers (see Drop).
    send_msgs: ManuallyDrop<Box<[SendMsgSlot]>>,
    conns: Slab,
    /// Connections whose receive ended with ENOBUFS, oldest first, to re-arm as buffers
    /// return: those that have received data before, and those that never have (new
    /// connections, served first).
    starved: VecDeque<u32>,
    starved_new: VecDeque<u32>,
    batch: Vec<cqueue::Entry>,
    ctx: WorkerCtx,
    /// Buffers one connection may hold before its receive is paused.
    conn_cap: u16,
    /// Who holds buffers for unsent echoes, since when: the hold budget (the pool) and
    /// the shedding policy.
    holds: Holders,
    /// The holders' clock, read once per loop turn.
    now_ms: u32,
    /// Slots in the direct-descriptor table.
    files: u32,
    /// Connections refused because the direct-descriptor table was full.
    table_full_log: RateLimited,
    /// Connections refused at `--max-conns`.
    max_conns_log: RateLimited,
    /// SQEs submitted whose final CQE has not arrived (a multishot counts once).
    inflight: u32,
    accept_armed: bool,
    stopping: Option<Instant>,
}

impl Worker {
    /// Set up the ring, the buffer ring and the direct-descriptor table.
    pub fn new(ctx: WorkerCtx, features: Features) -> Result<Worker> {
        let cfg = &ctx.cfg;
        let buffers = cfg.pool_buffers();
        let entries = u16::try_from(buffers)
            .map_err(|_| Error::msg(format!("{buffers} receive buffers are too many")))?;
        let bufs = BufRing::new(entries, cfg.buffer_size, BGID)?;
        let files = (cfg.max_conns.saturating_add(SPARE_SLOTS))
            .min(crate::net::nofile_limit().min(u64::from(u32::MAX)) as u32)
            .min(1 << 20);
        let cq = ring::cq_entries(buffers, cfg.max_conns, cfg.backlog);
        let ring = ring::build(&features, cq, files)?;
        // SAFETY: the worker owns both; `Drop` tears the ring down before the buffer ring
        // is unmapped, and the group is registered exactly once.
        unsafe { bufs.register(ring.inner(), 0) }.with_context(|| {
            format!(
                "registering a buffer ring of {buffers} x {} bytes",
                cfg.buffer_size
            )
        })?;
        let conn_cap = u16::try_from(cfg.conn_buffers).unwrap_or(u16::MAX);
        // The pool is the budget: the kernel can fill no buffer the ring does not have.
        let holds = Holders::new(u64::from(buffers) * u64::from(cfg.buffer_size), cfg.stall());
        let send_msgs: Box<[SendMsgSlot]> = (0..entries)
            .map(|_| SendMsgSlot {
                // SAFETY: msghdr and iovec are plain C structs; all-zero is valid.
                hdr: unsafe { std::mem::zeroed() },
                // SAFETY: as above.
                iov: unsafe { std::mem::zeroed() },
            })
            .collect();
        Ok(Worker {
            ring: ManuallyDrop::new(ring),
            segs: Segments::new(entries),
            send_msgs: ManuallyDrop::new(send_msgs),
            bufs: ManuallyDrop::new(bufs),
            conns: Slab::default(),
            starved: VecDeque::new(),
            starved_new: VecDeque::new(),
            batch: Vec::with_capacity(REAP_BATCH),
            conn_cap,
            holds,
            now_ms: 0,
            files,
            table_full_log: RateLimited::new(),
            max_conns_log: RateLimited::new(),
            inflight: 0,
            accept_armed: false,
            stopping: None,
            ctx,
        })
    }

    /// Serve until the shutdown eventfd fires, then cancel everything and return.
    pub fn run(mut self) -> Result<()> {
        self.arm_accept()?;
        let wake = opcode::PollAdd::new(Fd(self.ctx.shared.shutdown.fd()), libc::POLLIN as u32)
            .build()
            .user_data(token::encode(Op::Wake, 0, 0));
        self.push(wake)?;
        self.ctx.ready();
        loop {
            let limit = match self.stopping {
                Some(_) => Some(STOP_POLL),
                None => self.holds.next_deadline(self.now_ms),
            };
            self.ring.enter_for(limit)?;
            self.now_ms = self.holds.now_ms(Instant::now());
            self.reap()?;
            if self.stopping.is_none() {
                self.shed_stalled()?;
            }
            if let Some(since) = self.stopping {
                if self.inflight == 0 || since.elapsed() > STOP_WAIT {
                    return Ok(());
                }
            }
        }
    }

    /// Handle every completion available, then hand returned buffers to the kernel in one
    /// tail update and re-arm receives that starved for buffers.
    fn reap(&mut self) -> Result<()> {
        loop {
            self.batch.clear();
            self.ring.reap_into(&mut self.batch, REAP_BATCH);
            if self.batch.is_empty() {
                break;
            }
            for i in 0..self.batch.len() {
                let cqe = self.batch[i].clone();
                self.handle(cqe)?;
            }
        }
        self.bufs.publish();
        if !(self.starved.is_empty() && self.starved_new.is_empty()) && self.stopping.is_none() {
            self.rearm_starved()?;
        }
        Ok(())
    }

    fn handle(&mut self, cqe: cqueue::Entry) -> Result<()> {
        let flags = cqe.flags();
        let more = cqueue::more(flags);
        if !more {
            self.inflight = self.inflight.saturating_sub(1);
        }
        let Some((op, idx, gen)) = token::decode(cqe.user_data()) else {
            return Err(Error::msg(format!(
                "completion with unknown user_data {:#x}",
                cqe.user_data()
            )));
        };
        let res = cqe.result();
        match op {
            Op::Accept => self.on_accept(res, more),
            Op::Recv => self.on_recv(idx, gen, res, flags, more),
            Op::Send => self.on_send(idx, res),
            Op::Close => {
                self.holds.reset(idx);
                self.conns.remove(idx);
                self.ctx.shared.release();
                bump(&self.ctx.stats.closed, 1);
                Ok(())
            }
            Op::Wake => {
                self.begin_stop();
                Ok(())
            }
            // Their outcome changes nothing: the operations they target report for themselves.
            Op::Cancel | Op::Refuse | Op::CancelAll => Ok(()),
        }
    }

    fn on_accept(&mut self, res: i32, more: bool) -> Result<()> {
        if !more {
            self.accept_armed = false;
        }
        if res < 0 {
            match classify_accept_error(-res) {
                AcceptError::Cancelled => {}
                AcceptError::TableFull => {
                    // The kernel accepted the connection, found no free direct
                    // descriptor and closed it: refused, at once.
                    bump(&self.ctx.stats.refused, 1);
                    if let Some(n) = self.table_full_log.hit(Instant::now()) {
                        eprintln!(
                            "ringecho: worker {}: descriptor table full ({} slots: the open-file \
                             limit or --max-conns); refused {n} connection(s), still serving",
                            self.ctx.id, self.files
                        );
                    }
                }
                AcceptError::Skip => bump(&self.ctx.stats.errors, 1),
                AcceptError::Fatal => {
                    return Err(Error::from(std::io::Error::from_raw_os_error(-res))
                        .context("accepting on the listener"))
                }
            }
        }
        if !more && self.stopping.is_none() {
            self.arm_accept()?;
        }
        if res < 0 {
            return Ok(());
        }
        let fd = res as u32;
        if self.stopping.is_some() || !self.ctx.shared.try_admit() {
            if self.stopping.is_none() {
                bump(&self.ctx.stats.refused, 1);
                if let Some(n) = self.max_conns_log.hit(Instant::now()) {
                    eprintln!(
                        "ringecho: worker {}: --max-conns {} reached; refused {n} connection(s), \
                         still serving",
                        self.ctx.id, self.ctx.cfg.max_conns
                    );
                }
            }
            let close = opcode::Close::new(Fixed(fd))
                .build()
                .user_data(token::encode(Op::Refuse, fd, 0));
            return self.push(close);
        }
        bump(&self.ctx.stats.accepted, 1);
        let idx = self.conns.insert(Conn::new(fd));
        self.holds.reset(idx);
        self.arm_recv(idx)
    }

    fn on_recv(&mut self, idx: u32, gen: u32, res: i32, flags: u32, more: bool) -> Result<()> {
        if let Some(bid) = cqueue::buffer_select(flags) {
            self.take_received(idx, bid, res)?;
        }
        let c = self.conns.get_mut(idx);
        if gen != c.recv_gen {
            // Cannot happen (an arming's final CQE precedes the next arming), but a stale
            // completion must never steer the current arming.
            return Ok(());
        }
        if res < 0 && !matches!(-res, libc::ENOBUFS | libc::ECANCELED) {
            // ECONNRESET, ETIMEDOUT, ...: this connection is over; nothing else is affected.
            if c.life != Life::Aborting {
                c.life = Life::Aborting;
                bump(&self.ctx.stats.errors, 1);
            }
        }
        if !more {
            c.recv = match (res, c.life) {
                (0, _) => RecvState::Done,
                (_, Life::Open) if res == -libc::ENOBUFS => RecvState::Starved,
                (_, Life::Open) => RecvState::Paused,
                _ => RecvState::Done,
            };
            if res == 0 && c.life == Life::Open {
                // The peer shut down its write side: echo what we have, then close.
                c.life = Life::Draining;
            }
            if c.recv == RecvState::Starved {
                bump(&self.ctx.stats.starved, 1);
                self.bufs.note_starved();
                if c.fed {
                    self.starved.push_back(idx);
                } else {
                    self.starved_new.push_back(idx);
                }
            }
        }
        self.settle(idx)
    }

    /// A receive CQE handed us buffer `bid` holding `res` bytes: queue it for echo, or
    /// give it straight back if it is empty or the connection is ending.
    fn take_received(&mut self, idx: u32, bid: u16, res: i32) -> Result<()> {
        self.bufs.take(bid)?;
        let len = u32::try_from(res).unwrap_or(0).min(self.bufs.buf_size());
        let c = self.conns.get_mut(idx);
        c.fed |= len > 0;
        if len > 0 && matches!(c.life, Life::Open | Life::Draining) {
            c.queue.push(&mut self.segs, bid, len);
        } else {
            self.bufs.give_back(bid)?;
        }
        Ok(())
    }

    fn on_send(&mut self, idx: u32, res: i32) -> Result<()> {
        let c = self.conns.get_mut(idx);
        if res > 0 {
            let sent = res as u32;
            bump(&self.ctx.stats.bytes, u64::from(sent));
            let bufs = &mut *self.bufs;
            let stats = &self.ctx.stats;
            let mut broken = None;
            c.queue.complete_send(&mut self.segs, sent, |bid| {
                bump(&stats.echoes, 1);
                if let Err(e) = bufs.give_back(bid) {
                    broken = Some(e);
                }
            });
            if let Some(e) = broken {
                return Err(e.into());
            }
            self.holds.progressed(idx, self.now_ms);
        } else {
            // EPIPE, ECONNRESET, ECANCELED (stopping or shed), or a zero-byte send that would
            // otherwise repeat forever: this connection is over.
            c.queue.fail_send();
            if !matches!(c.life, Life::Aborting | Life::Closing) {
                c.life = Life::Aborting;
                if res != -libc::ECANCELED {
                    bump(&self.ctx.stats.errors, 1);
                }
            }
        }
        self.settle(idx)
    }

    /// Decide a connection's next operations from its state. Every handler ends here,
    /// and so the hold table learns here how many buffers the connection holds.
    fn settle(&mut self, idx: u32) -> Result<()> {
        let res = self.settle_ops(idx);
        let held = u32::from(self.conns.get_mut(idx).queue.len()) * self.bufs.buf_size();
        self.holds.update(idx, held, self.now_ms);
        res
    }

    fn settle_ops(&mut self, idx: u32) -> Result<()> {
        let cap = self.conn_cap;
        let pressure = self.holds.pressure();
        let stopping = self.stopping.is_some();
        let c = self.conns.get_mut(idx);
        if stopping && c.life != Life::Closing {
            // Cancel-all already targets every operation; only hand buffers back.
            c.life = Life::Aborting;
        }
        match c.life {
            Life::Open => {
                match c.backpressure(cap, pressure) {
                    Backpressure::Pause => {
                        // The client is not reading its echo. Stop receiving until the
                        // queue drains, so it cannot hoard the buffer pool.
                        c.recv = RecvState::Cancelling;
                        bump(&self.ctx.stats.paused, 1);
                        let target = token::encode(Op::Recv, idx, c.recv_gen);
                        let cancel = opcode::AsyncCancel::new(target)
                            .build()
                            .user_data(token::encode(Op::Cancel, idx, c.recv_gen));
                        self.push(cancel)?;
                    }
                    Backpressure::Resume => self.arm_recv(idx)?,
                    Backpressure::Keep => {}
                }
                self.start_send(idx)
            }
            Life::Draining => {
                self.start_send(idx)?;
                let c = self.conns.get_mut(idx);
                if c.queue.is_empty() && c.quiescent() {
                    self.close(idx)?;
                }
                Ok(())
            }
            Life::Aborting => {
                let bufs = &mut *self.bufs;
                let mut broken = None;
                c.queue.drain_unsent(&mut self.segs, |b| {
                    if let Err(e) = bufs.give_back(b) {
                        broken = Some(e);
                    }
                });
                if let Some(e) = broken {
                    return Err(e.into());
                }
                let c = self.conns.get_mut(idx);
                match c.recv {
                    RecvState::Armed if !stopping => {
                        c.recv = RecvState::Cancelling;
                        let target = token::encode(Op::Recv, idx, c.recv_gen);
                        let cancel = opcode::AsyncCancel::new(target)
                            .build()
                            .user_data(token::encode(Op::Cancel, idx, c.recv_gen));
                        self.push(cancel)?;
                    }
                    RecvState::Paused | RecvState::Starved => c.recv = RecvState::Done,
                    _ => {}
                }
                let c = self.conns.get_mut(idx);
                if c.quiescent() && !stopping {
                    self.close(idx)?;
                }
                Ok(())
            }
            Life::Closing => Ok(()),
        }
    }

    fn start_send(&mut self, idx: u32) -> Result<()> {
        let c = self.conns.get_mut(idx);
        let mut parts: [SendPart; MAX_SEND_SEGS] = [(0, 0, 0); MAX_SEND_SEGS];
        let n = c.queue.start_send(&self.segs, &mut parts);
        let fd = Fixed(c.fd);
        // WAITALL: the kernel itself retries a short send (5.18+); short completions are
        // still handled. NOSIGNAL: a vanished peer is EPIPE, not SIGPIPE.
        let flags = libc::MSG_NOSIGNAL | libc::MSG_WAITALL;
        let ud = token::encode(Op::Send, idx, 0);
        let send = match n {
            0 => return Ok(()),
            1 => {
                let (bid, off, len) = parts[0];
                // SAFETY (pointer arithmetic): off < buf_size, so it stays in the buffer.
                let ptr = unsafe { self.bufs.buf_ptr(bid).add(off as usize) };
                opcode::Send::new(fd, ptr, len).flags(flags).build()
            }
            _ => {
                let slot = &mut self.send_msgs[usize::from(parts[0].0)];
                for (iov, &(bid, off, len)) in slot.iov.iter_mut().zip(&parts[..n]) {
                    // SAFETY (pointer arithmetic): as above.
                    iov.iov_base = unsafe { self.bufs.buf_ptr(bid).add(off as usize) } as *mut _;
                    iov.iov_len = len as usize;
                }
                slot.hdr.msg_iov = slot.iov.as_mut_ptr();
                slot.hdr.msg_iovlen = n as _;
                opcode::SendMsg::new(fd, &slot.hdr)
                    .flags(flags as u32)
                    .build()
            }
        };
        self.push(send.user_data(ud))
    }

    fn arm_recv(&mut self, idx: u32) -> Result<()> {
        let c = self.conns.get_mut(idx);
        c.recv_gen = token::next_generation(c.recv_gen);
        c.recv = RecvState::Armed;
        // One buffer per completion, never a bundle (`RecvMultiBundle`, 6.10): on 6.18 a
        // bundle receive that fills the ring's last free buffers while more data is queued
        // keeps them, unposted, until more buffers come back. When a slow reader holds the
        // rest of the pool, that connection stalls for as long as the slow reader does
        // (the conformance test's starved pool caught it). Bundles measured no faster here
        // at 64 B and within noise at 64 KiB, so the one-buffer receive is the design.
        let recv = opcode::RecvMulti::new(Fixed(c.fd), BGID)
            .build()
            .user_data(token::encode(Op::Recv, idx, c.recv_gen));
        self.push(recv)
    }

    fn arm_accept(&mut self) -> Result<()> {
        if self.accept_armed {
            return Ok(());
        }
        self.accept_armed = true;
        let accept = opcode::AcceptMulti::new(Fd(self.ctx.socket.as_raw_fd()))
            .allocate_file_index(true)
            .build()
            .user_data(token::encode(Op::Accept, 0, 0));
        self.push(accept)
    }

    fn close(&mut self, idx: u32) -> Result<()> {
        let c = self.conns.get_mut(idx);
        c.life = Life::Closing;
        let close = opcode::Close::new(Fixed(c.fd))
            .build()
            .user_data(token::encode(Op::Close, idx, 0));
        self.push(close)
    }

    /// Buffers came back: give starved connections their receive again, oldest first, but
    /// no more of them than there are free buffers. Re-arming all of them at once would
    /// have most hit ENOBUFS again at once: a thundering herd that burns the CPU and, with
    /// thousands of connections, starves some for seconds. Free buffers include spares
    /// the ring's window leaves out: re-arms beyond the window that starve again are what
    /// grows it (see `BufRing::note_starved`).
    ///
    /// Connections that have never received a byte go first: a new client's first
    /// message must not wait behind clients that keep the pool busy. Under memory
    /// pressure the rest go newest first: the oldest starved are then mostly clients
    /// that do not read, each starving again as soon as it is re-armed.
    fn rearm_starved(&mut self) -> Result<()> {
        let mut free = self.bufs.free();
        let newest_first = self.holds.pressure();
        while free > 0 {
            let next = self.starved_new.pop_front().or_else(|| {
                if newest_first {
                    self.starved.pop_back()
                } else {
                    self.starved.pop_front()
                }
            });
            let Some(idx) = next else {
                break;
            };
            let c = self.conns.get_mut(idx);
            if c.life == Life::Open && c.recv == RecvState::Starved {
                // Paused, then settle: re-armed now unless backpressure keeps it paused
                // (then its next send completion re-arms it).
                c.recv = RecvState::Paused;
                self.settle(idx)?;
                if self.conns.get_mut(idx).recv == RecvState::Armed {
                    free -= 1;
                }
            }
        }
        Ok(())
    }

    /// Close every holder the hold policy names (see `hold`): stalled ones, and under
    /// pressure the ones without progress for longest.
    fn shed_stalled(&mut self) -> Result<()> {
        while let Some((idx, reason)) = self.holds.victim(self.now_ms) {
            self.holds.retire(idx);
            let counter = match reason {
                Reason::Shed => &self.ctx.stats.shed,
                Reason::Stalled => &self.ctx.stats.stalled,
            };
            bump(counter, 1);
            let c = self.conns.get_mut(idx);
            if c.life == Life::Closing {
                continue;
            }
            if !matches!(c.life, Life::Aborting) {
                c.life = Life::Aborting;
            }
            if c.queue.in_flight() {
                // The send waits for a client that does not read: cancel it, or its
                // buffers stay held. Its completion (ECANCELED, or the bytes it got out
                // before) ends the abort like any failed send.
                let cancel = opcode::AsyncCancel::new(token::encode(Op::Send, idx, 0))
                    .build()
                    .user_data(token::encode(Op::Cancel, idx, 0));
                self.push(cancel)?;
            }
            self.settle(idx)?;
        }
        Ok(())
    }

    /// Shutdown requested: stop accepting and cancel every operation in flight. The
    /// worker returns once they have all completed (or the grace period ends).
    fn begin_stop(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        self.stopping = Some(Instant::now());
        let all = opcode::AsyncCancel2::new(CancelBuilder::any())
            .build()
            .user_data(token::encode(Op::CancelAll, 0, 0));
        // A failure here only means the stop takes the grace period.
        let _ = self.push(all);
    }

    /// Queue an SQE (flushing the SQ if it is full) and count it in flight.
    fn push(&mut self, sqe: squeue::Entry) -> Result<()> {
        // SAFETY: every buffer an SQE points at is in the buffer ring's mapping, and every
        // sendmsg header in `send_msgs`: mapped or boxed, so they never move, and freed
        // only by Drop, after the ring, and only if no operation is still in flight
        // (else leaked). The kernel holds its own references to the listener and the
        // shutdown eventfd.
        unsafe { self.ring.push_flushing(&sqe) }?;
        self.inflight += 1;
        Ok(())
    }
}

/// How the worker reacts to a failed accept completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AcceptError {
    /// Cancelled (stopping).
    Cancelled,
    /// No free direct descriptor (or file): the kernel already closed that connection.
    TableFull,
    /// That one connection failed (aborted while queued, a signal, memory): go on.
    Skip,
    /// The listener itself is unusable: re-arming would fail forever, so stop.
    Fatal,
}

fn classify_accept_error(errno: i32) -> AcceptError {
    match errno {
        libc::ECANCELED => AcceptError::Cancelled,
        libc::ENFILE | libc::EMFILE => AcceptError::TableFull,
        libc::EBADF | libc::EFAULT | libc::EINVAL | libc::ENOTSOCK | libc::EOPNOTSUPP => {
            AcceptError::Fatal
        }
        _ => AcceptError::Skip,
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // SAFETY: the ring is dropped exactly once, here, before the buffers. Closing it
        // releases the direct descriptors (closing every connection).
        unsafe { ManuallyDrop::drop(&mut self.ring) };
        if self.inflight == 0 {
            // SAFETY: no operation is in flight, so the kernel holds no pointer into the
            // buffers or the sendmsg headers; each dropped exactly once.
            unsafe {
                ManuallyDrop::drop(&mut self.bufs);
                ManuallyDrop::drop(&mut self.send_msgs);
            }
        }
        // Otherwise an operation that ignored cancellation might still write into a
        // buffer or read a header: leak both (the process is stopping) rather than risk
        // it.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_neither_spin_nor_kill_the_worker() {
        assert_eq!(
            classify_accept_error(libc::ECANCELED),
            AcceptError::Cancelled
        );
        assert_eq!(classify_accept_error(libc::ENFILE), AcceptError::TableFull);
        assert_eq!(classify_accept_error(libc::EMFILE), AcceptError::TableFull);
        assert_eq!(classify_accept_error(libc::ECONNABORTED), AcceptError::Skip);
        assert_eq!(classify_accept_error(libc::ENOMEM), AcceptError::Skip);
        assert_eq!(classify_accept_error(libc::EINVAL), AcceptError::Fatal);
    }
}
