//! The epoll engine's syscall boundary: thin, safe wrappers over `epoll_*`, `accept4`,
//! `recv` and `send`. Every `unsafe` block of the engine lives here; callers see
//! `io::Result` and owned or borrowed descriptors, so a closed fd cannot be passed in.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

pub use libc::epoll_event as Event;

/// Readiness bits as epoll reports them (`epoll_event.events` is a `u32`).
pub const IN: u32 = libc::EPOLLIN as u32;
/// The socket can take more bytes.
pub const OUT: u32 = libc::EPOLLOUT as u32;
/// The peer shut down its sending side (FIN received).
pub const RDHUP: u32 = libc::EPOLLRDHUP as u32;
/// TCP urgent data is pending; it makes a read stop short of the end of the queue.
pub const PRI: u32 = libc::EPOLLPRI as u32;
/// A pending socket error (always reported, never requested).
pub const ERR: u32 = libc::EPOLLERR as u32;
/// Both directions are shut down or the connection was reset (always reported).
pub const HUP: u32 = libc::EPOLLHUP as u32;
/// Edge-triggered: report a change once rather than a state on every wait.
pub const ET: u32 = libc::EPOLLET as u32;

/// An epoll instance, closed on drop.
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    /// A new epoll instance (close-on-exec).
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: no pointers; a non-negative result is a new descriptor nothing else owns.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` was just created and is owned by no one else.
        Ok(Epoll {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Register `fd` for `events`; epoll hands `data` back with each of its events.
    ///
    /// The registration lasts until `fd` is closed (no other descriptor refers to the same
    /// open file), so closing a connection needs no `EPOLL_CTL_DEL`.
    pub fn add(&self, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
        let mut ev = Event { events, u64: data };
        // SAFETY: `ev` is a valid epoll_event for the call's duration; the kernel copies it.
        // An fd that is not open is reported as EBADF, not undefined behaviour.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })?;
        Ok(())
    }

    /// Wait up to `timeout_ms` (-1: forever, 0: just poll) and fill `events` from the
    /// front; returns how many were filled. A signal interrupting the wait reads as 0 events.
    pub fn wait(&self, events: &mut [Event], timeout_ms: i32) -> io::Result<usize> {
        let max = events.len().min(i32::MAX as usize) as i32;
        // SAFETY: `events` is valid for writes of `max` entries for the call's duration,
        // and the kernel writes at most `max`.
        let n =
            unsafe { libc::epoll_wait(self.fd.as_raw_fd(), events.as_mut_ptr(), max, timeout_ms) };
        match cvt(n) {
            Ok(n) => Ok(n as usize),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Like [`Epoll::wait`] with a nanosecond timeout (`epoll_pwait2`, Linux 5.11+; where
    /// it is missing, the timeout is rounded up to whole milliseconds).
    pub fn wait_for(
        &self,
        events: &mut [Event],
        timeout: std::time::Duration,
    ) -> io::Result<usize> {
        let max = events.len().min(i32::MAX as usize) as i32;
        let ts = libc::timespec {
            tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
            tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
        };
        // SAFETY: `events` is valid for writes of `max` entries and `ts` for reads for the
        // call's duration; a null sigmask means the mask is unchanged.
        let n = unsafe {
            libc::epoll_pwait2(
                self.fd.as_raw_fd(),
                events.as_mut_ptr(),
                max,
                &ts,
                std::ptr::null(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EINTR) => Ok(0),
                Some(libc::ENOSYS) => {
                    let ms = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128);
                    self.wait(events, ms as i32)
                }
                _ => Err(e),
            };
        }
        Ok(n as usize)
    }
}

/// An event buffer for [`Epoll::wait`].
pub fn event_buffer(len: usize) -> Vec<Event> {
    vec![Event { events: 0, u64: 0 }; len]
}

/// Accept one connection from a listening socket, already non-blocking and close-on-exec
/// (one syscall instead of accept + two fcntl).
pub fn accept4(listener: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: null address pointers are allowed (we do not want the peer's address);
    // `listener` is a live descriptor for the duration of the borrow.
    let fd = cvt(unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    })?;
    // SAFETY: accept4 returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Read up to `buf.len()` bytes; `Ok(0)` is end of stream.
pub fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the call's duration and
    // the kernel writes at most that many; `fd` is live for the borrow.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    cvt_size(n)
}

/// Send from `buf`; may send fewer bytes than given. MSG_NOSIGNAL turns a peer that has
/// gone into EPIPE for this connection instead of SIGPIPE for the process.
pub fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the call's duration; `fd`
    // is live for the borrow.
    let n = unsafe {
        libc::send(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    cvt_size(n)
}

/// Batched datagram I/O (`recvmmsg`/`sendmmsg`) over storage it owns: `n` slots, each a
/// payload buffer, an address and a control buffer. The kernel headers point into that
/// storage, which is allocated once (boxed slices: moving a `MsgVec` moves no byte they
/// point to) and lives as long as the headers, so every pointer handed to the kernel is
/// valid by construction.
pub struct MsgVec {
    hdrs: Box<[libc::mmsghdr]>,
    iovs: Box<[libc::iovec]>,
    bufs: Box<[u8]>,
    names: Box<[[u8; NAME_LEN]]>,
    controls: Box<[[u8; CONTROL_LEN]]>,
    buf_size: usize,
    /// Headers of the replies queued for the next `send`.
    out: Box<[libc::mmsghdr]>,
    queued: usize,
}

use crate::udp::pktinfo::CONTROL_LEN;
use crate::udp::sockaddr::NAME_LEN;

/// One received datagram, as `MsgVec::slot` shows it.
pub struct Datagram<'a> {
    /// The payload (the part that fit the buffer).
    pub payload: &'a [u8],
    /// The datagram did not fit: its payload here is cut short.
    pub truncated: bool,
    /// The sender's address bytes (`sockaddr_in`/`sockaddr_in6`).
    pub name: &'a [u8],
    /// The control messages (pktinfo), if asked for.
    pub control: &'a [u8],
}

impl MsgVec {
    /// `n` slots of `buf_size` bytes each.
    pub fn new(n: usize, buf_size: usize) -> MsgVec {
        // SAFETY: mmsghdr and iovec are plain C structs for which all-zero is valid
        // (null pointers, zero lengths).
        let zero_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let zero_iov: libc::iovec = unsafe { std::mem::zeroed() };
        let mut m = MsgVec {
            hdrs: vec![zero_hdr; n].into_boxed_slice(),
            iovs: vec![zero_iov; n].into_boxed_slice(),
            bufs: vec![0u8; n * buf_size].into_boxed_slice(),
            names: vec![[0u8; NAME_LEN]; n].into_boxed_slice(),
            controls: vec![[0u8; CONTROL_LEN]; n].into_boxed_slice(),
            buf_size,
            out: vec![zero_hdr; n].into_boxed_slice(),
            queued: 0,
        };
        for i in 0..n {
            m.iovs[i].iov_base = m.bufs[i * buf_size..].as_mut_ptr().cast();
            m.iovs[i].iov_len = buf_size;
            let h = &mut m.hdrs[i].msg_hdr;
            h.msg_iov = &mut m.iovs[i];
            h.msg_iovlen = 1;
            h.msg_name = m.names[i].as_mut_ptr().cast();
            h.msg_control = m.controls[i].as_mut_ptr().cast();
        }
        m
    }

    /// Receive up to `n` datagrams without blocking; Ok(0) when none is waiting.
    pub fn recv(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        for (h, iov) in self.hdrs.iter_mut().zip(self.iovs.iter_mut()) {
            iov.iov_len = self.buf_size;
            h.msg_hdr.msg_namelen = NAME_LEN as libc::socklen_t;
            h.msg_hdr.msg_controllen = CONTROL_LEN as _;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        // SAFETY: every header points into this MsgVec's own storage with the lengths set
        // just above (see the type's invariant); the kernel writes at most those lengths.
        let n = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        match cvt(n) {
            Ok(n) => Ok(n as usize),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Received datagram `i` (after `recv` returned more than `i`).
    pub fn slot(&self, i: usize) -> Datagram<'_> {
        let h = &self.hdrs[i];
        let len = (h.msg_len as usize).min(self.buf_size);
        let namelen = (h.msg_hdr.msg_namelen as usize).min(NAME_LEN);
        #[allow(clippy::unnecessary_cast)] // socklen_t on some libcs, usize on glibc
        let ctrlen = (h.msg_hdr.msg_controllen as usize).min(CONTROL_LEN);
        Datagram {
            payload: &self.bufs[i * self.buf_size..i * self.buf_size + len],
            truncated: h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            name: &self.names[i][..namelen],
            control: &self.controls[i][..ctrlen],
        }
    }

    /// Queue datagram `i` to go back to its sender, from `local` if given (the control
    /// message built by `pktinfo::build`, else the socket's own address).
    pub fn queue_reply(&mut self, i: usize, local: Option<crate::udp::pktinfo::Local>) {
        let len = (self.hdrs[i].msg_len as usize).min(self.buf_size);
        self.iovs[i].iov_len = len;
        let mut h = self.hdrs[i];
        h.msg_hdr.msg_flags = 0;
        match local {
            Some(l) => {
                h.msg_hdr.msg_controllen =
                    crate::udp::pktinfo::build(l, &mut self.controls[i]) as _;
            }
            None => {
                h.msg_hdr.msg_control = std::ptr::null_mut();
                h.msg_hdr.msg_controllen = 0;
            }
        }
        self.out[self.queued] = h;
        self.queued += 1;
    }

    /// Replies queued and not yet sent.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Send every queued reply (as many `sendmmsg` calls as it takes); returns how many
    /// the kernel refused (a full send buffer: UDP may drop, and we count it).
    pub fn send_replies(&mut self, fd: BorrowedFd<'_>) -> u64 {
        let mut at = 0;
        let mut refused = 0u64;
        while at < self.queued {
            // SAFETY: the queued headers are copies of this MsgVec's headers, pointing into
            // its storage with the lengths `queue_reply` set (see the type's invariant).
            let n = unsafe {
                libc::sendmmsg(
                    fd.as_raw_fd(),
                    self.out[at..].as_mut_ptr(),
                    (self.queued - at) as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            match cvt(n) {
                Ok(n) if n > 0 => at += n as usize,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The first unsent datagram failed (full buffer, unreachable...): count
                // it and go on with the rest.
                _ => {
                    refused += 1;
                    at += 1;
                }
            }
        }
        self.queued = 0;
        refused
    }
}

/// Let this thread's timers fire within `ns` of when they are due. By default the kernel
/// may fire a normal thread's timeouts up to 50 µs late to batch wake-ups, which the
/// open-loop load generator would report as its own lateness.
pub fn set_timer_slack_ns(ns: u64) -> io::Result<()> {
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and affects only this thread.
    cvt(unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns.max(1) as libc::c_ulong) })?;
    Ok(())
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn cvt_size(rc: libc::ssize_t) -> io::Result<usize> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn epoll_reports_the_registered_data_edge_triggered() {
        let ep = Epoll::new().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        ep.add(a.as_raw_fd(), IN | ET, 42).unwrap();
        let mut evs = event_buffer(4);
        assert_eq!(ep.wait(&mut evs, 0).unwrap(), 0);
        send(b.as_fd(), b"x").unwrap();
        assert_eq!(ep.wait(&mut evs, 1000).unwrap(), 1);
        let (events, data) = (evs[0].events, evs[0].u64);
        assert_eq!(data, 42);
        assert_ne!(events & IN, 0);
        // Edge-triggered: the unread byte is not reported again.
        assert_eq!(ep.wait(&mut evs, 0).unwrap(), 0);
        let mut buf = [0u8; 4];
        assert_eq!(recv(a.as_fd(), &mut buf).unwrap(), 1);
        let e = recv(a.as_fd(), &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn wait_for_times_out_with_sub_millisecond_precision() {
        let ep = Epoll::new().unwrap();
        set_timer_slack_ns(1).unwrap();
        let mut evs = event_buffer(4);
        let start = std::time::Instant::now();
        let delay = std::time::Duration::from_micros(300);
        assert_eq!(ep.wait_for(&mut evs, delay).unwrap(), 0);
        let took = start.elapsed();
        assert!(took >= delay, "{took:?}");
    }

    #[test]
    fn send_to_a_closed_peer_is_epipe_not_sigpipe() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(b);
        let e = send(a.as_fd(), b"x").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPIPE));
    }
}
