//! The io_uring TCP echo worker: one listener, every connection of this thread, driven by
//! the [`EventLoop`]. Completion-driven: nothing here waits on a socket; every completion
//! of a connection becomes a [`conn::step`], the pure state machine that decides the
//! connection's next operations, and [`TcpEcho::apply`] carries them out.
//!
//! A byte's path: the multishot accept completes with a direct descriptor → a multishot
//! receive is armed on it → a receive CQE names the buffer the kernel filled → the buffer
//! joins the connection's send queue → one send at a time echoes the queue's first buffers
//! (one `sendmsg` for up to 16 of them) → the send CQE returns every fully sent buffer to
//! the ring.

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use io_uring::cqueue;
use io_uring::opcode;
use io_uring::types::Fixed;

use super::accept::AcceptBackoff;
use super::buf_ring::BufRing;
use super::conn::{
    self, Actions, Conditions, Conn, ConnEvent, ConnTable, Segments, SendPart, MAX_SEND_SEGS,
};
use super::event_loop::{EventLoop, Handler, Issuer, KernelMemory, BGID};
use super::probe::Features;
use super::ring;
use super::token::{self, Op};
use crate::error::{Error, Result};
use crate::hold::{Holders, Reason};
use crate::ratelog::RateLimited;
use crate::server::WorkerCtx;
use crate::stats::bump;

/// Spare direct-descriptor slots beyond `--max-conns`: refused connections occupy one
/// briefly before their close completes.
const SPARE_SLOTS: u32 = 256;

/// What the kernel reads for one multi-buffer send.
struct SendMsgSlot {
    hdr: libc::msghdr,
    iov: [libc::iovec; MAX_SEND_SEGS],
}

/// The TCP worker's part of [`KernelMemory`]: the `sendmsg` header and `iovec`s of each
/// multi-buffer send, indexed by the id of its first buffer (unique among sends in
/// flight: a buffer is in one queue, and a queue has one send in flight). Boxed, so the
/// kernel's pointer into a slot survives any move of the owner.
pub struct SendMsgs(Box<[SendMsgSlot]>);

/// Serve TCP connections on `ctx.socket` until shutdown.
pub fn serve(ctx: WorkerCtx, features: &Features) -> Result<()> {
    let cfg = &ctx.cfg;
    let buffers = cfg.pool_buffers();
    let entries = u16::try_from(buffers)
        .map_err(|_| Error::msg(format!("{buffers} receive buffers are too many")))?;
    let bufs = BufRing::new(entries, cfg.buffer_size, BGID)?;
    let files = (cfg.max_conns.saturating_add(SPARE_SLOTS))
        .min(crate::net::nofile_limit().min(u64::from(u32::MAX)) as u32)
        .min(1 << 20);
    let cq = ring::cq_entries(buffers, cfg.max_conns, cfg.backlog);
    let send_msgs = (0..entries)
        .map(|_| SendMsgSlot {
            // SAFETY: msghdr and iovec are plain C structs; all-zero is valid.
            hdr: unsafe { std::mem::zeroed() },
            // SAFETY: as above.
            iov: unsafe { std::mem::zeroed() },
        })
        .collect();
    let mem = KernelMemory {
        bufs,
        slots: SendMsgs(send_msgs),
    };
    let mut lp = EventLoop::new(features, cq, files, mem)?;
    let conn_cap = u16::try_from(cfg.conn_buffers).unwrap_or(u16::MAX);
    // The pool is the budget: the kernel can fill no buffer the ring does not have.
    let holds = Holders::new(u64::from(buffers) * u64::from(cfg.buffer_size), cfg.stall());
    let mut echo = TcpEcho {
        segs: Segments::new(entries),
        conns: ConnTable::default(),
        starved: VecDeque::new(),
        starved_new: VecDeque::new(),
        conn_cap,
        holds,
        now_ms: 0,
        files,
        table_full_log: RateLimited::new(),
        max_conns_log: RateLimited::new(),
        accept_armed: false,
        accept_backoff: AcceptBackoff::default(),
        ctx: &ctx,
    };
    lp.run(&ctx, &mut echo)
}

/// The TCP worker's state: its connections and their send queues, the starved
/// receives, and the hold policy.
pub struct TcpEcho<'w> {
    segs: Segments,
    conns: ConnTable,
    /// Connections whose receive ended with ENOBUFS, oldest first, to re-arm as buffers
    /// return: those that have received data before, and those that never have (new
    /// connections, served first).
    starved: VecDeque<u32>,
    starved_new: VecDeque<u32>,
    ctx: &'w WorkerCtx,
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
    accept_armed: bool,
    /// When to re-arm an accept that keeps failing.
    accept_backoff: AcceptBackoff,
}

type TcpIssuer<'a> = Issuer<'a, SendMsgs>;

impl Handler for TcpEcho<'_> {
    type Slots = SendMsgs;

    fn wait_limit(&self) -> Option<Duration> {
        let holds = self.holds.next_deadline(self.now_ms);
        match (holds, self.accept_backoff.wait(self.now_ms)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn turn_start(&mut self) {
        self.now_ms = self.holds.now_ms(Instant::now());
    }

    fn complete(
        &mut self,
        io: &mut TcpIssuer<'_>,
        op: Op,
        idx: u32,
        gen: u32,
        cqe: &cqueue::Entry,
    ) -> Result<()> {
        let (res, flags) = (cqe.result(), cqe.flags());
        match op {
            Op::Accept => self.on_accept(io, res, cqueue::more(flags)),
            Op::Recv => self.on_recv(io, idx, gen, res, flags),
            Op::Send => self.on_send(io, idx, res),
            Op::Close => {
                self.holds.reset(idx);
                self.conns.remove(idx);
                self.ctx.shared.release();
                bump(&self.ctx.stats.closed, 1);
                if self.accept_backoff.resume() && !io.stopping() {
                    self.arm_accept(io)?;
                }
                Ok(())
            }
            // Their outcome changes nothing: the operations they target report for
            // themselves (the loop handles Wake and CancelAll).
            Op::Cancel | Op::Refuse | Op::Wake | Op::CancelAll => Ok(()),
        }
    }

    fn turn_end(&mut self, io: &mut TcpIssuer<'_>) -> Result<()> {
        if io.stopping() {
            return Ok(());
        }
        // Armed unless a failing accept is paused (see `accept`): this is also where the
        // worker's first accept is armed.
        if self.accept_backoff.may_arm(self.now_ms) {
            self.arm_accept(io)?;
        }
        if !(self.starved.is_empty() && self.starved_new.is_empty()) {
            self.rearm_starved(io)?;
        }
        self.shed_stalled(io)
    }
}

impl TcpEcho<'_> {
    fn on_accept(&mut self, io: &mut TcpIssuer<'_>, res: i32, more: bool) -> Result<()> {
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
        // A table-full refusal consumed its connection (the kernel closed it), so the
        // next accept is a new one: re-arm at once, refusing at the rate they come. Any
        // other failure may leave its connection queued, and a second one in a row waits
        // before the accept is re-armed (see `accept`), or it would come back at once,
        // forever.
        let rearm_now = res >= 0
            || match classify_accept_error(-res) {
                AcceptError::Skip => self.accept_backoff.failed(self.now_ms),
                _ => true,
            };
        if !more && !io.stopping() && rearm_now {
            self.arm_accept(io)?;
        }
        if res < 0 {
            return Ok(());
        }
        self.accept_backoff.accepted();
        let fd = res as u32;
        if io.stopping() || !self.ctx.shared.try_admit() {
            if !io.stopping() {
                bump(&self.ctx.stats.refused, 1);
                if let Some(n) = self.max_conns_log.hit(Instant::now()) {
                    eprintln!(
                        "ringecho: worker {}: --max-conns {} reached; refused {n} connection(s), \
                         still serving",
                        self.ctx.id, self.ctx.cfg.max_conns
                    );
                }
            }
            return io.close(fd, token::encode(Op::Refuse, fd, 0));
        }
        bump(&self.ctx.stats.accepted, 1);
        let idx = self.conns.insert(Conn::new(fd));
        self.holds.reset(idx);
        let c = self.conns.get_mut(idx);
        c.arm_recv();
        io.recv_multi(fd, token::encode(Op::Recv, idx, c.recv_gen))
    }

    fn on_recv(
        &mut self,
        io: &mut TcpIssuer<'_>,
        idx: u32,
        gen: u32,
        res: i32,
        flags: u32,
    ) -> Result<()> {
        if let Some(bid) = cqueue::buffer_select(flags) {
            self.take_received(&mut io.mem.bufs, idx, bid, res)?;
        }
        let more = cqueue::more(flags);
        self.step(io, idx, ConnEvent::Recv { gen, res, more })?;
        Ok(())
    }

    /// A receive CQE handed us buffer `bid` holding `res` bytes: queue it for echo, or
    /// give it straight back if it is empty or the connection is ending.
    fn take_received(&mut self, bufs: &mut BufRing, idx: u32, bid: u16, res: i32) -> Result<()> {
        bufs.take(bid)?;
        let len = u32::try_from(res).unwrap_or(0).min(bufs.buf_size());
        let c = self.conns.get_mut(idx);
        c.fed |= len > 0;
        if len > 0 && c.keeps_data() {
            c.queue.push(&mut self.segs, bid, len);
        } else {
            bufs.give_back(bid)?;
        }
        Ok(())
    }

    fn on_send(&mut self, io: &mut TcpIssuer<'_>, idx: u32, res: i32) -> Result<()> {
        let c = self.conns.get_mut(idx);
        if res > 0 {
            let sent = res as u32;
            bump(&self.ctx.stats.bytes, u64::from(sent));
            let bufs = &mut io.mem.bufs;
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
            c.queue.fail_send();
        }
        self.step(io, idx, ConnEvent::Sent { res })?;
        Ok(())
    }

    /// Run connection `idx`'s state machine on `ev` and carry out what it decides; the
    /// hold table then learns how many buffers the connection holds.
    fn step(&mut self, io: &mut TcpIssuer<'_>, idx: u32, ev: ConnEvent) -> Result<Actions> {
        let cond = Conditions {
            cap: self.conn_cap,
            pressure: self.holds.pressure(),
            stopping: io.stopping(),
        };
        let actions = conn::step(self.conns.get_mut(idx), ev, cond);
        let res = self.apply(io, idx, actions);
        if actions.settled {
            let held = u32::from(self.conns.get_mut(idx).queue.len()) * io.mem.bufs.buf_size();
            self.holds.update(idx, held, self.now_ms);
        }
        res.map(|()| actions)
    }

    /// Carry out a step's actions for connection `idx`, in the order [`Actions`] lists.
    fn apply(&mut self, io: &mut TcpIssuer<'_>, idx: u32, a: Actions) -> Result<()> {
        if a.count_error {
            bump(&self.ctx.stats.errors, 1);
        }
        if a.starved {
            bump(&self.ctx.stats.starved, 1);
            io.mem.bufs.note_starved();
            if self.conns.get_mut(idx).fed {
                self.starved.push_back(idx);
            } else {
                self.starved_new.push_back(idx);
            }
        }
        if a.drop_unsent {
            let bufs = &mut io.mem.bufs;
            let mut broken = None;
            self.conns
                .get_mut(idx)
                .queue
                .drain_unsent(&mut self.segs, |b| {
                    if let Err(e) = bufs.give_back(b) {
                        broken = Some(e);
                    }
                });
            if let Some(e) = broken {
                return Err(e.into());
            }
        }
        if a.cancel_send {
            io.cancel(
                token::encode(Op::Send, idx, 0),
                token::encode(Op::Cancel, idx, 0),
            )?;
        }
        let c = *self.conns.get_mut(idx);
        if a.cancel_recv {
            if a.paused {
                bump(&self.ctx.stats.paused, 1);
            }
            io.cancel(
                token::encode(Op::Recv, idx, c.recv_gen),
                token::encode(Op::Cancel, idx, c.recv_gen),
            )?;
        }
        if a.arm_recv {
            // One buffer per completion, never a bundle (`RecvMultiBundle`, 6.10): a
            // bundle receive that fills the ring's last free buffers while more data is
            // queued keeps them, unposted, until more buffers come back, so while a slow
            // reader holds the rest of the pool this connection stalls as long as it does
            // (docs/design.md).
            io.recv_multi(c.fd, token::encode(Op::Recv, idx, c.recv_gen))?;
        }
        if a.send {
            self.start_send(io, idx)?;
        }
        if a.close {
            io.close(c.fd, token::encode(Op::Close, idx, 0))?;
        }
        Ok(())
    }

    fn start_send(&mut self, io: &mut TcpIssuer<'_>, idx: u32) -> Result<()> {
        let c = self.conns.get_mut(idx);
        let mut parts: [SendPart; MAX_SEND_SEGS] = [(0, 0, 0); MAX_SEND_SEGS];
        let n = c.queue.start_send(&self.segs, &mut parts);
        let fd = Fixed(c.fd);
        // WAITALL: the kernel itself retries a short send (5.18+); short completions are
        // still handled. NOSIGNAL: a vanished peer is EPIPE, not SIGPIPE.
        let flags = libc::MSG_NOSIGNAL | libc::MSG_WAITALL;
        let ud = token::encode(Op::Send, idx, 0);
        let mem = &mut *io.mem;
        let send = match n {
            0 => return Ok(()),
            1 => {
                let (bid, off, len) = parts[0];
                let ptr = mem.bufs.buf_ptr(bid).wrapping_add(off as usize);
                opcode::Send::new(fd, ptr, len).flags(flags).build()
            }
            _ => {
                let slot = &mut mem.slots.0[usize::from(parts[0].0)];
                for (iov, &(bid, off, len)) in slot.iov.iter_mut().zip(&parts[..n]) {
                    iov.iov_base = mem.bufs.buf_ptr(bid).wrapping_add(off as usize) as *mut _;
                    iov.iov_len = len as usize;
                }
                slot.hdr.msg_iov = slot.iov.as_mut_ptr();
                slot.hdr.msg_iovlen = n as _;
                opcode::SendMsg::new(fd, &slot.hdr)
                    .flags(flags as u32)
                    .build()
            }
        };
        // SAFETY: the SQE points at held buffers of `io.mem.bufs` (they stay held, queued
        // and in flight, until this send completes) and, for a sendmsg, at this send's
        // header slot in `io.mem.slots`, which no other send in flight uses; `io.mem` is
        // freed only once nothing is in flight.
        unsafe { io.push(&send.user_data(ud)) }
    }

    fn arm_accept(&mut self, io: &mut TcpIssuer<'_>) -> Result<()> {
        if self.accept_armed {
            return Ok(());
        }
        self.accept_armed = true;
        io.accept_multi(self.ctx.socket.as_raw_fd(), token::encode(Op::Accept, 0, 0))
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
    fn rearm_starved(&mut self, io: &mut TcpIssuer<'_>) -> Result<()> {
        let mut free = io.mem.bufs.free();
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
            if self.step(io, idx, ConnEvent::Refill)?.arm_recv {
                free -= 1;
            }
        }
        Ok(())
    }

    /// Close every holder the hold policy names (see `hold`): stalled ones, and under
    /// pressure the ones without progress for longest.
    fn shed_stalled(&mut self, io: &mut TcpIssuer<'_>) -> Result<()> {
        while let Some((idx, reason)) = self.holds.victim(self.now_ms) {
            self.holds.retire(idx);
            let counter = match reason {
                Reason::Shed => &self.ctx.stats.shed,
                Reason::Stalled => &self.ctx.stats.stalled,
            };
            bump(counter, 1);
            self.step(io, idx, ConnEvent::Shed)?;
        }
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
        // A listener that is unusable fails every re-arm at once: stop, do not spin.
        for errno in [
            libc::EINVAL,
            libc::EBADF,
            libc::ENOTSOCK,
            libc::EOPNOTSUPP,
            libc::EFAULT,
        ] {
            assert_eq!(classify_accept_error(errno), AcceptError::Fatal, "{errno}");
        }
    }
}
