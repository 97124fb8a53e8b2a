//! The io_uring UDP echo worker: one SO_REUSEPORT socket, driven by the [`EventLoop`].
//!
//! A datagram's path: the multishot `recvmsg` (`RecvMsgMulti`) completes naming the buffer
//! the kernel filled → the buffer holds an `io_uring_recvmsg_out` header, the sender's
//! address, the control messages (pktinfo, on a wildcard socket) and the payload, in that
//! order → the guard judges the sender → a `sendmsg` echoes the payload straight from that
//! buffer to the sender (from the arrival address) → its completion returns the buffer to
//! the ring. No copy, no allocation per datagram: each buffer id has its own reply slot
//! (`msghdr`, `iovec`, address, control) in the worker's [`KernelMemory`].
//!
//! The completion's length counts the header, the name and the control space as well as
//! the payload: `RecvMsgOut::parse` splits them using the `msghdr` the receive was armed
//! with. A datagram that did not fit its buffer (`MSG_TRUNC`) is dropped and counted.
//! ENOBUFS (every buffer is held by a reply in flight) and a multishot that ended re-arm
//! the receive once buffers are back.

use std::os::fd::AsRawFd;
use std::time::Instant;

use io_uring::types::{Fd, RecvMsgOut};
use io_uring::{cqueue, opcode};

use super::buf_ring::BufRing;
use super::event_loop::{EventLoop, Handler, Issuer, KernelMemory, BGID};
use super::probe::Features;
use super::token::{self, Op};
use crate::error::{Error, Result};
use crate::server::WorkerCtx;
use crate::stats::bump;
use crate::udp::guard::Policy;
use crate::udp::pktinfo::{self, CONTROL_LEN};
use crate::udp::sockaddr::{self, NAME_LEN};

/// One buffer: the recvmsg header, name and control space, then any UDP payload.
const BUF_SIZE: u32 = (64 << 10) + 256;

/// The `sendmsg` of one buffer's echo: everything the kernel reads while it is in flight.
struct Reply {
    hdr: libc::msghdr,
    iov: libc::iovec,
    name: [u8; NAME_LEN],
    control: [u8; CONTROL_LEN],
    len: u32,
}

/// The UDP worker's part of [`KernelMemory`], boxed so that the kernel's pointers survive
/// any move of the owner.
pub struct UdpSlots {
    /// Reply slot per buffer id: the kernel reads one while its send is in flight.
    replies: Box<[Reply]>,
    /// The header the multishot receive was armed with: it says how much name and control
    /// space each buffer reserves, and the kernel reads it at every arming.
    recv_hdr: Box<libc::msghdr>,
}

/// Serve datagrams on `ctx.socket` until shutdown.
pub fn serve(ctx: WorkerCtx, features: &Features) -> Result<()> {
    let entries = u16::try_from(ctx.cfg.udp_buffers)
        .map_err(|_| Error::msg(format!("--udp-buffers {} is too many", ctx.cfg.udp_buffers)))?;
    let bufs = BufRing::new(entries, BUF_SIZE, BGID)?;
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
    let mem = KernelMemory {
        bufs,
        slots: UdpSlots { replies, recv_hdr },
    };
    // Receives, sends (one per buffer) and the control operations.
    let cq = (u32::from(entries) * 4).next_power_of_two().max(1024);
    let mut lp = EventLoop::new(features, cq, 1, mem)?;
    let policy = Policy::for_worker(&ctx, local)?;
    let mut echo = UdpEcho {
        policy,
        wildcard,
        now: Instant::now(),
        recv_armed: false,
        starved: false,
        ctx: &ctx,
    };
    lp.run(&ctx, &mut echo)
}

/// The UDP worker's state: the datagram policy and the receive's arming.
pub struct UdpEcho<'w> {
    ctx: &'w WorkerCtx,
    policy: Policy,
    wildcard: bool,
    /// The clock the policy reads, taken once per batch of completions.
    now: Instant,
    recv_armed: bool,
    /// The receive ended for lack of buffers: re-arm once some are back.
    starved: bool,
}

type UdpIssuer<'a> = Issuer<'a, UdpSlots>;

impl Handler for UdpEcho<'_> {
    type Slots = UdpSlots;

    fn batch_start(&mut self) {
        self.now = Instant::now();
    }

    fn complete(
        &mut self,
        io: &mut UdpIssuer<'_>,
        op: Op,
        idx: u32,
        _gen: u32,
        cqe: &cqueue::Entry,
    ) -> Result<()> {
        match op {
            Op::Recv => self.on_recv(io, cqe.result(), cqe.flags()),
            Op::Send => self.on_send(io, idx, cqe.result()),
            _ => Ok(()),
        }
    }

    /// Re-arm the receive if it ended; a starved one waits until the ring has a buffer
    /// again.
    fn turn_end(&mut self, io: &mut UdpIssuer<'_>) -> Result<()> {
        if !self.recv_armed && !io.stopping() && (!self.starved || io.mem.bufs.in_ring() > 0) {
            self.arm_recv(io)?;
        }
        Ok(())
    }
}

impl UdpEcho<'_> {
    fn on_recv(&mut self, io: &mut UdpIssuer<'_>, res: i32, flags: u32) -> Result<()> {
        if !cqueue::more(flags) {
            self.recv_armed = false;
        }
        if res == -libc::ENOBUFS {
            bump(&self.ctx.stats.starved, 1);
            io.mem.bufs.note_starved();
            self.starved = true;
            return Ok(());
        }
        self.starved = false;
        let Some(bid) = cqueue::buffer_select(flags) else {
            // An error without a buffer (the socket's own, or a cancel): the re-arm in
            // `turn_end` takes care of it.
            return Ok(());
        };
        io.mem
            .bufs
            .take(bid)
            .map_err(|e| Error::msg(format!("UDP receive named buffer {bid}: {e:?}")))?;
        if res < 0 || !self.echo(io, bid, res as usize)? {
            give_back(&mut io.mem.bufs, bid)?;
        }
        Ok(())
    }

    /// Judge the datagram in held buffer `bid` and send its echo; false if it is dropped.
    fn echo(&mut self, io: &mut UdpIssuer<'_>, bid: u16, len: usize) -> Result<bool> {
        let mem = &mut *io.mem;
        let data = mem
            .bufs
            .bytes(bid, len)
            .map_err(|e| Error::msg(format!("UDP datagram in buffer {bid}: {e:?}")))?;
        let Ok(out) = RecvMsgOut::parse(data, &mem.slots.recv_hdr) else {
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
        let r = &mut mem.slots.replies[usize::from(bid)];
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
        // SAFETY: the SQE points at reply slot `bid` in `io.mem.slots` and, through it, at
        // held buffer `bid` in `io.mem.bufs`; the buffer stays held (so the slot unused by
        // any other send) until this send completes, and `io.mem` is freed only once
        // nothing is in flight. The kernel holds its own reference to the socket.
        unsafe { io.push(&send) }?;
        Ok(true)
    }

    fn on_send(&mut self, io: &mut UdpIssuer<'_>, idx: u32, res: i32) -> Result<()> {
        let bid = u16::try_from(idx)
            .map_err(|_| Error::msg(format!("send completion for buffer {idx}")))?;
        if res >= 0 {
            let len = io
                .mem
                .slots
                .replies
                .get(usize::from(bid))
                .map_or(0, |r| r.len);
            bump(&self.ctx.stats.udp_echoes, 1);
            bump(&self.ctx.stats.udp_bytes, u64::from(len));
        } else {
            bump(&self.ctx.stats.udp_send_errors, 1);
        }
        give_back(&mut io.mem.bufs, bid)
    }

    fn arm_recv(&mut self, io: &mut UdpIssuer<'_>) -> Result<()> {
        let hdr: *const libc::msghdr = &*io.mem.slots.recv_hdr;
        let recv = opcode::RecvMsgMulti::new(Fd(self.ctx.socket.as_raw_fd()), hdr, BGID)
            .build()
            .user_data(token::encode(Op::Recv, 0, 0));
        // SAFETY: the SQE points at the receive header in `io.mem.slots` (boxed, never
        // written after set-up) and lets the kernel fill buffers of group BGID, which live
        // in `io.mem.bufs`; `io.mem` is freed only once nothing is in flight.
        unsafe { io.push(&recv) }?;
        self.recv_armed = true;
        Ok(())
    }
}

fn give_back(bufs: &mut BufRing, bid: u16) -> Result<()> {
    bufs.give_back(bid)
        .map_err(|e| Error::msg(format!("returning UDP buffer {bid}: {e:?}")))
}
