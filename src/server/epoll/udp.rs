//! The epoll engine's UDP worker: one SO_REUSEPORT socket, level-triggered, read in
//! batches with `recvmmsg` and answered in batches with `sendmmsg` (the echobench way:
//! one syscall per batch, not per datagram). Each datagram is judged by the UDP policy
//! (`crate::udp::guard`, shared with the io_uring worker) and echoed from the buffer it
//! arrived in; a truncated one is dropped, never echoed short.

use std::os::fd::{AsFd, AsRawFd};
use std::time::Instant;

use super::sys;
use crate::error::{Context, Error, Result};
use crate::server::WorkerCtx;
use crate::stats::bump;
use crate::udp::guard::{Policy, Verdict};
use crate::udp::{pktinfo, sockaddr};
use ringecho_sys::mmsg::{transient, MsgVec};

/// Datagrams per `recvmmsg`/`sendmmsg`.
const BATCH: usize = 32;
/// Buffer per datagram: every UDP payload fits (IPv6's largest is 65,527 bytes).
const DGRAM_BUF: usize = 64 << 10;
/// Batches per wake-up before the shutdown flag is looked at again.
const BATCHES_PER_TURN: usize = 64;

const SOCKET: u64 = 0;
const SHUTDOWN: u64 = 1;

/// Serve datagrams on `ctx.socket` until shutdown.
pub fn run_udp_worker(ctx: WorkerCtx) -> Result<()> {
    ctx.socket
        .set_nonblocking(true)
        .context("making the UDP socket non-blocking")?;
    let local = crate::net::local_addr(&ctx.socket)?;
    let wildcard = local.ip().is_unspecified();
    let epoll = sys::Epoll::new().context("creating the epoll instance")?;
    // Level-triggered: a wake-up that leaves datagrams queued (the turn's batch budget
    // ran out) is reported again.
    epoll
        .add(ctx.socket.as_raw_fd(), sys::IN, SOCKET)
        .context("registering the UDP socket with epoll")?;
    epoll
        .add(ctx.shared.shutdown.fd(), sys::IN, SHUTDOWN)
        .context("registering the shutdown eventfd with epoll")?;
    let mut msgs = MsgVec::new(BATCH, DGRAM_BUF);
    let mut policy = Policy::for_worker(&ctx, local)?;
    let mut events = sys::event_buffer(4);
    let stats = &ctx.stats;
    ctx.ready();
    loop {
        if ctx.shared.shutdown.is_triggered() {
            return Ok(());
        }
        epoll.wait(&mut events, -1).context("epoll_wait")?;
        for _ in 0..BATCHES_PER_TURN {
            let n = match msgs.recv(ctx.socket.as_fd()) {
                Ok(n) => n,
                // A reply of ours bounced (ICMP port unreachable...): the error is
                // reported on the next receive; the datagrams behind it are still there.
                Err(e) if transient(&e) => continue,
                Err(e) => return Err(Error::from(e).context("recvmmsg on the UDP socket")),
            };
            if n == 0 {
                break;
            }
            let now = Instant::now();
            for i in 0..n {
                let d = msgs.slot(i);
                if d.truncated {
                    bump(&stats.udp_truncated, 1);
                    continue;
                }
                let Some(src) = sockaddr::parse(d.name) else {
                    continue;
                };
                let arrived = if wildcard {
                    pktinfo::parse(d.control)
                } else {
                    None
                };
                match policy.judge(src, arrived.as_ref(), d.payload, now) {
                    Verdict::Echo => {
                        bump(&stats.udp_bytes, d.payload.len() as u64);
                        msgs.queue_reply(i, arrived.map(|a| a.reply));
                    }
                    dropped => {
                        if let Some(c) = dropped.counter(stats) {
                            bump(c, 1);
                        }
                    }
                }
            }
            let queued = msgs.queued() as u64;
            let refused = msgs.send_replies(ctx.socket.as_fd());
            bump(&stats.udp_echoes, queued - refused);
            bump(&stats.udp_send_errors, refused);
            if n < BATCH {
                break;
            }
        }
    }
}
