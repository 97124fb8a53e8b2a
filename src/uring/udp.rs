//! The io_uring UDP echo worker: one ring, one SO_REUSEPORT socket, one buffer ring.
//!
//! A datagram's path: the multishot `recvmsg` (`RecvMsgMulti`) completes naming the buffer
//! the kernel filled → the buffer holds an `io_uring_recvmsg_out` header, the sender's
//! address, the control messages (pktinfo, on a wildcard socket) and the payload, in that
//! order → the guard judges the sender → a `sendmsg` echoes the payload straight from that
//! buffer to the sender (from the arrival address) → its completion returns the buffer to
//! the ring. No copy, no allocation per datagram: each buffer id has its own reply slot
//! (`msghdr`, `iovec`, address, control) that lives as long as the worker.
//!
//! The completion's length counts the header, the name and the control space as well as
//! the payload: `RecvMsgOut::parse` splits them using the `msghdr` the receive was armed
//! with. A datagram that did not fit its buffer (`MSG_TRUNC`) is dropped and counted.
//! ENOBUFS (every buffer is held by a reply in flight) and a multishot that ended re-arm
//! the receive once buffers are back.

use std::mem::ManuallyDrop;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use io_uring::types::{CancelBuilder, Fd, RecvMsgOut};
use io_uring::{cqueue, opcode, squeue};

use super::buf_ring::BufRing;
use super::probe::Features;
use super::ring;
use super::token::{self, Op};
use crate::error::{Context, Error, Result};
use crate::server::WorkerCtx;
use crate::stats::bump;
use crate::udp::guard::Policy;
use crate::udp::pktinfo::{self, CONTROL_LEN};
use crate::udp::sockaddr::{self, NAME_LEN};

/// Buffer group id of this worker's buffer ring.
const BGID: u16 = 0;
/// One buffer: the recvmsg header, name and control space, then any UDP payload.
const BUF_SIZE: u32 = (64 << 10) + 256;
/// Completions copied out of the CQ per pass.
const REAP_BATCH: usize = 256;
/// How long a stopping worker waits for cancelled operations to complete.
const STOP_WAIT: Duration = Duration::from_millis(500);

/// The `sendmsg` of one buffer's echo: everything the kernel reads while it is in flight.
struct Reply {
    hdr: libc::msghdr,
    iov: libc::iovec,
    name: [u8; NAME_LEN],
    control: [u8; CONTROL_LEN],
    len: u32,
}

/// One io_uring UDP worker. `Drop` closes the ring before unmapping the buffers.
pub struct UdpWorker {
    ring: ManuallyDrop<ring::Ring>,
    bufs: ManuallyDrop<BufRing>,
    /// Reply slot per buffer id (boxed: the kernel holds pointers into it while a send
    /// is in flight, so it never moves; leaked with the buffers, see Drop).
    replies: ManuallyDrop<Box<[Reply]>>,
    /// The header the multishot receive was armed with: it says how much name and
    /// control space each buffer reserves (boxed: the kernel reads it at every arming;
    /// leaked with the buffers, see Drop).
    recv_hdr: ManuallyDrop<Box<libc::msghdr>>,
    ctx: WorkerCtx,
    policy: Policy,
    wildcard: bool,
    /// The clock the policy reads, taken once per pass over the completion queue.
    now: Instant,
    batch: Vec<cqueue::Entry>,
    recv_armed: bool,
    /// The receive ended for lack of buffers: re-arm once some are back.
    starved: bool,
    inflight: u32,
    stopping: Option<Instant>,
}

impl UdpWorker {
    /// Set up the ring and the buffer ring for `ctx.socket`.
    pub fn new(ctx: WorkerCtx, features: Features) -> Result<UdpWorker> {
        let entries = u16::try_from(ctx.cfg.udp_buffers).map_err(|_| {
            Error::msg(format!("--udp-buffers {} is too many", ctx.cfg.udp_buffers))
        })?;
        let bufs = BufRing::new(entries, BUF_SIZE, BGID)?;
        // Receives, sends (one per buffer) and the control operations.
        let cq = (u32::from(entries) * 4).next_power_of_two().max(1024);
        let ring = ring::build(&features, cq, 1)?;
        // SAFETY: the worker owns both; `Drop` tears the ring down before the buffer ring
        // is unmapped, and the group is registered exactly once.
        unsafe { bufs.register(ring.inner(), 0) }.with_context(|| {
            format!("registering a UDP buffer ring of {entries} x {BUF_SIZE} bytes")
        })?;
        let local = crate::net::local_addr(&ctx.socket)?;
        let wildcard = local.ip().is_unspecified();
        // SAFETY: msghdr is a plain C struct for which all-zero is valid.
        let mut recv_hdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        recv_hdr.msg_namelen = NAME_LEN as libc::socklen_t;
        recv_hdr.msg_controllen = if wildcard { CONTROL_LEN } else { 0 };
        let replies = (0..entries)
            .map(|_| Reply {
                // SAFETY: as above, for msghdr and iovec.
                hdr: unsafe { std::mem::zeroed() },
                // SAFETY: as above.
                iov: unsafe { std::mem::zeroed() },
                name: [0; NAME_LEN],
                control: [0; CONTROL_LEN],
                len: 0,
            })
            .collect();
        let policy = Policy::for_worker(&ctx, local)?;
        Ok(UdpWorker {
            ring: ManuallyDrop::new(ring),
            bufs: ManuallyDrop::new(bufs),
            replies: ManuallyDrop::new(replies),
            recv_hdr: ManuallyDrop::new(recv_hdr),
            policy,
            wildcard,
            now: Instant::now(),
            batch: Vec::with_capacity(REAP_BATCH),
            recv_armed: false,
            starved: false,
            inflight: 0,
            stopping: None,
            ctx,
        })
    }

    /// Serve until the shutdown eventfd fires, then cancel everything and return.
    pub fn run(mut self) -> Result<()> {
        self.arm_recv()?;
        let wake = opcode::PollAdd::new(Fd(self.ctx.shared.shutdown.fd()), libc::POLLIN as u32)
            .build()
            .user_data(token::encode(Op::Wake, 0, 0));
        self.push(wake)?;
        self.ctx.ready();
        loop {
            self.ring.enter(self.stopping.is_some())?;
            self.reap()?;
            if let Some(since) = self.stopping {
                if self.inflight == 0 || since.elapsed() > STOP_WAIT {
                    return Ok(());
                }
            }
        }
    }

    /// Handle every completion available, return buffers in one tail update, and re-arm
    /// the receive if it ended.
    fn reap(&mut self) -> Result<()> {
        loop {
            self.batch.clear();
            self.ring.reap_into(&mut self.batch, REAP_BATCH);
            if self.batch.is_empty() {
                break;
            }
            self.now = Instant::now();
            for i in 0..self.batch.len() {
                let cqe = self.batch[i].clone();
                self.handle(cqe)?;
            }
        }
        self.bufs.publish();
        // A starved receive waits until the ring has a buffer again.
        if !self.recv_armed && self.stopping.is_none() && (!self.starved || self.bufs.in_ring() > 0)
        {
            self.arm_recv()?;
        }
        Ok(())
    }

    fn handle(&mut self, cqe: cqueue::Entry) -> Result<()> {
        let flags = cqe.flags();
        let more = cqueue::more(flags);
        if !more {
            self.inflight = self.inflight.saturating_sub(1);
        }
        let Some((op, idx, _)) = token::decode(cqe.user_data()) else {
            return Err(Error::msg(format!(
                "completion with unknown user_data {:#x}",
                cqe.user_data()
            )));
        };
        match op {
            Op::Recv => self.on_recv(cqe.result(), flags, more),
            Op::Send => self.on_send(idx, cqe.result()),
            Op::Wake => {
                self.begin_stop();
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn on_recv(&mut self, res: i32, flags: u32, more: bool) -> Result<()> {
        if !more {
            self.recv_armed = false;
        }
        if res == -libc::ENOBUFS {
            bump(&self.ctx.stats.starved, 1);
            self.bufs.note_starved();
            self.starved = true;
            return Ok(());
        }
        self.starved = false;
        let Some(bid) = cqueue::buffer_select(flags) else {
            // An error without a buffer (the socket's own, or a cancel): the re-arm in
            // `reap` takes care of it.
            return Ok(());
        };
        self.bufs
            .take(bid)
            .map_err(|e| Error::msg(format!("UDP receive named buffer {bid}: {e:?}")))?;
        if res < 0 || !self.echo(bid, res as usize)? {
            self.give_back(bid)?;
        }
        Ok(())
    }

    /// Judge the datagram in buffer `bid` and send its echo; false if it is dropped.
    fn echo(&mut self, bid: u16, len: usize) -> Result<bool> {
        let data = self.bufs.bytes(bid, len);
        let Ok(out) = RecvMsgOut::parse(data, &self.recv_hdr) else {
            return Ok(false);
        };
        if out.is_payload_truncated() {
            bump(&self.ctx.stats.udp_truncated, 1);
            return Ok(false);
        }
        let Some(src) = sockaddr::parse(out.name_data()) else {
            return Ok(false);
        };
        let arrived = if self.wildcard {
            pktinfo::parse(out.control_data())
        } else {
            None
        };
        let payload = out.payload_data();
        let verdict = self.policy.judge(src, arrived.as_ref(), payload, self.now);
        if let Some(c) = verdict.counter(&self.ctx.stats) {
            bump(c, 1);
            return Ok(false);
        }
        let r = &mut self.replies[usize::from(bid)];
        r.len = payload.len() as u32;
        r.iov.iov_base = payload.as_ptr() as *mut libc::c_void;
        r.iov.iov_len = payload.len();
        let namelen = sockaddr::write(src, &mut r.name);
        r.hdr.msg_name = r.name.as_mut_ptr().cast();
        r.hdr.msg_namelen = namelen;
        r.hdr.msg_iov = &mut r.iov;
        r.hdr.msg_iovlen = 1;
        match arrived {
            Some(a) => {
                r.hdr.msg_controllen = pktinfo::build(a.reply, &mut r.control);
                r.hdr.msg_control = r.control.as_mut_ptr().cast();
            }
            None => {
                r.hdr.msg_control = std::ptr::null_mut();
                r.hdr.msg_controllen = 0;
            }
        }
        let send = opcode::SendMsg::new(Fd(self.ctx.socket.as_raw_fd()), &r.hdr)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build()
            .user_data(token::encode(Op::Send, u32::from(bid), 0));
        self.push(send)?;
        Ok(true)
    }

    fn on_send(&mut self, idx: u32, res: i32) -> Result<()> {
        let bid = u16::try_from(idx)
            .map_err(|_| Error::msg(format!("send completion for buffer {idx}")))?;
        if res >= 0 {
            bump(&self.ctx.stats.udp_echoes, 1);
            bump(
                &self.ctx.stats.udp_bytes,
                u64::from(self.replies[idx as usize].len),
            );
        } else {
            bump(&self.ctx.stats.udp_send_errors, 1);
        }
        self.give_back(bid)
    }

    fn give_back(&mut self, bid: u16) -> Result<()> {
        self.bufs
            .give_back(bid)
            .map_err(|e| Error::msg(format!("returning UDP buffer {bid}: {e:?}")))
    }

    fn arm_recv(&mut self) -> Result<()> {
        let recv =
            opcode::RecvMsgMulti::new(Fd(self.ctx.socket.as_raw_fd()), &**self.recv_hdr, BGID)
                .build()
                .user_data(token::encode(Op::Recv, 0, 0));
        self.push(recv)?;
        self.recv_armed = true;
        Ok(())
    }

    fn begin_stop(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        self.stopping = Some(Instant::now());
        let all = opcode::AsyncCancel2::new(CancelBuilder::any())
            .build()
            .user_data(token::encode(Op::CancelAll, 0, 0));
        let _ = self.push(all);
    }

    /// Queue an SQE (flushing the SQ if it is full) and count it in flight.
    fn push(&mut self, sqe: squeue::Entry) -> Result<()> {
        // SAFETY: every pointer an SQE carries is into the buffer ring, `replies` or
        // `recv_hdr`: boxed or mapped, so they never move, and freed only by Drop, after
        // the ring, and only if no operation is still in flight (else leaked). The
        // kernel holds its own references to the socket and the shutdown eventfd.
        unsafe { self.ring.push_flushing(&sqe) }?;
        self.inflight += 1;
        Ok(())
    }
}

impl Drop for UdpWorker {
    fn drop(&mut self) {
        // SAFETY: the ring is dropped exactly once, here, before the buffers.
        unsafe { ManuallyDrop::drop(&mut self.ring) };
        if self.inflight == 0 {
            // SAFETY: nothing is in flight, so the kernel holds no pointer into the
            // buffers, the reply slots or the receive header; each dropped exactly once.
            unsafe {
                ManuallyDrop::drop(&mut self.bufs);
                ManuallyDrop::drop(&mut self.replies);
                ManuallyDrop::drop(&mut self.recv_hdr);
            }
        }
        // Otherwise an operation that ignored cancellation might still read or write
        // them: leak all three (the process is stopping) rather than risk it.
    }
}
