//! Batched datagram I/O, the one `sendmmsg`/`recvmmsg` wrapper: [`MsgVec`] receives a
//! batch with each datagram's sender and control messages and sends replies from the same
//! slots (the epoll server's UDP worker; the UDP load generator receives with it too), and
//! [`SendBatch`] sends datagrams made of a head and a shared body (the load generator).
//! Callers see `io::Result` and borrowed descriptors and slices.
//!
//! Both batches allocate their headers (and the receive side its buffers) once; nothing
//! is allocated per datagram.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::pktinfo::CONTROL_LEN;
use crate::sockaddr::NAME_LEN;

/// Outgoing datagrams, each a short head followed by one shared body, sent with one
/// `sendmmsg`: the body is never copied (every datagram's second iovec points at it).
/// Header i points at iovec pair i, set once (boxed slices: moving the batch moves
/// neither), with no address (the socket is connected) and no control message.
pub struct SendBatch {
    hdrs: Box<[libc::mmsghdr]>,
    iovs: Box<[[libc::iovec; 2]]>,
}

impl SendBatch {
    /// Room for `n` datagrams per call.
    pub fn new(n: usize) -> SendBatch {
        let (zero_hdr, zero_iov) = zeroed_headers();
        let mut b = SendBatch {
            hdrs: vec![zero_hdr; n.max(1)].into_boxed_slice(),
            iovs: vec![[zero_iov; 2]; n.max(1)].into_boxed_slice(),
        };
        for (h, iov) in b.hdrs.iter_mut().zip(b.iovs.iter_mut()) {
            h.msg_hdr.msg_iov = iov.as_mut_ptr();
            h.msg_hdr.msg_iovlen = 2;
        }
        b
    }

    /// Datagrams one call can send.
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Send datagram i = `heads[i]` then `body`, for the first `min(heads.len(),
    /// capacity)` heads, on the connected socket `fd` without blocking. Returns how many
    /// the kernel took, in order; `Ok(0)` when the socket's send buffer is full.
    pub fn send<const H: usize>(
        &mut self,
        fd: BorrowedFd<'_>,
        heads: &[[u8; H]],
        body: &[u8],
    ) -> io::Result<usize> {
        let n = heads.len().min(self.hdrs.len());
        if n == 0 {
            return Ok(0);
        }
        for (head, iov) in heads[..n].iter().zip(self.iovs.iter_mut()) {
            // The kernel only reads from a send's iovecs; the casts to *mut are what the
            // C struct's type demands.
            iov[0].iov_base = head.as_ptr() as *mut libc::c_void;
            iov[0].iov_len = H;
            iov[1].iov_base = body.as_ptr() as *mut libc::c_void;
            iov[1].iov_len = body.len();
        }
        // SAFETY: the first `n` headers point at this batch's iovecs (see the type's
        // invariant), which point at `heads[i]` (H bytes) and `body` (body.len() bytes),
        // all borrowed for the whole call; the kernel reads those lengths and writes only
        // `msg_len`.
        let rc = unsafe {
            libc::sendmmsg(
                fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        batch_count(rc)
    }
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
    /// `n` slots of `buf_size` bytes each (at least one of one byte); a longer datagram
    /// is cut short and flagged truncated.
    pub fn new(n: usize, buf_size: usize) -> MsgVec {
        let (n, buf_size) = (n.max(1), buf_size.max(1));
        let (zero_hdr, zero_iov) = zeroed_headers();
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

    /// Datagrams one `recv` can take.
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Receive up to `capacity` datagrams without blocking; Ok(0) when none is waiting.
    pub fn recv(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        // The kernel shortens these to what each datagram filled: give the room back.
        for (h, iov) in self.hdrs.iter_mut().zip(self.iovs.iter_mut()) {
            iov.iov_len = self.buf_size;
            h.msg_hdr.msg_namelen = NAME_LEN as libc::socklen_t;
            h.msg_hdr.msg_controllen = CONTROL_LEN as _;
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
        batch_count(n)
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
    pub fn queue_reply(&mut self, i: usize, local: Option<crate::pktinfo::Local>) {
        let len = (self.hdrs[i].msg_len as usize).min(self.buf_size);
        self.iovs[i].iov_len = len;
        let mut h = self.hdrs[i];
        h.msg_hdr.msg_flags = 0;
        match local {
            Some(l) => {
                h.msg_hdr.msg_controllen = crate::pktinfo::build(l, &mut self.controls[i]) as _;
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

/// Errors a connected UDP socket reports about an earlier datagram (an ICMP error that
/// came back), or a momentary shortage, not about the socket itself: the next call works.
pub fn transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNREFUSED
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
                | libc::ENOBUFS
                | libc::ENOMEM
                | libc::EINTR
        )
    )
}

/// All-zero `mmsghdr` and `iovec`, the starting point of every batch's headers.
fn zeroed_headers() -> (libc::mmsghdr, libc::iovec) {
    // SAFETY: mmsghdr and iovec are plain C structs for which all-zero is valid (null
    // pointers, zero lengths).
    unsafe { (std::mem::zeroed(), std::mem::zeroed()) }
}

/// A non-blocking batch call's result: how many datagrams went, 0 when the socket had
/// nothing to give or no room (or a signal came first: the caller's loop tries again).
fn batch_count(rc: libc::c_int) -> io::Result<usize> {
    match cvt(rc) {
        Ok(k) => Ok(k as usize),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(0)
        }
        Err(e) => Err(e),
    }
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    fn pair() -> (UdpSocket, UdpSocket) {
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let b = UdpSocket::bind("127.0.0.1:0").expect("bind");
        a.connect(b.local_addr().expect("addr")).expect("connect");
        b.connect(a.local_addr().expect("addr")).expect("connect");
        a.set_nonblocking(true).expect("nonblocking");
        b.set_nonblocking(true).expect("nonblocking");
        (a, b)
    }

    #[test]
    fn a_batch_goes_out_as_separate_datagrams_head_then_body() {
        let (a, b) = pair();
        let mut send = SendBatch::new(8);
        let heads = [[1u8, 1], [2, 2], [3, 3]];
        assert_eq!(send.send(a.as_fd(), &heads, b"body").expect("send"), 3);
        let mut recv = MsgVec::new(8, 64);
        let mut got = Vec::new();
        for _ in 0..100 {
            let n = recv.recv(b.as_fd()).expect("recv");
            got.extend((0..n).map(|i| recv.slot(i).payload.to_vec()));
            if got.len() == 3 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(
            got,
            [
                b"\x01\x01body".to_vec(),
                b"\x02\x02body".to_vec(),
                b"\x03\x03body".to_vec()
            ]
        );
        assert_eq!(recv.recv(b.as_fd()).expect("empty"), 0, "nothing more");
    }

    #[test]
    fn a_datagram_longer_than_the_buffer_is_flagged() {
        let (a, b) = pair();
        let mut send = SendBatch::new(1);
        assert_eq!(
            send.send(a.as_fd(), &[[9u8; 4]], &[7u8; 20]).expect("send"),
            1
        );
        let mut recv = MsgVec::new(2, 10);
        let mut n = 0;
        for _ in 0..100 {
            n = recv.recv(b.as_fd()).expect("recv");
            if n > 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(n, 1);
        let (d, truncated) = (recv.slot(0).payload, recv.slot(0).truncated);
        assert_eq!(d.len(), 10);
        assert!(truncated);
    }

    #[test]
    fn nobody_listening_is_a_transient_error_not_a_dead_socket() {
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let gone = UdpSocket::bind("127.0.0.1:0").expect("bind");
        a.connect(gone.local_addr().expect("addr"))
            .expect("connect");
        drop(gone);
        a.set_nonblocking(true).expect("nonblocking");
        let mut send = SendBatch::new(1);
        let mut recv = MsgVec::new(1, 16);
        let mut refused = false;
        for _ in 0..100 {
            let r = send
                .send(a.as_fd(), &[[0u8; 1]], b"x")
                .and_then(|_| recv.recv(a.as_fd()));
            match r {
                Err(e) => {
                    assert!(transient(&e), "{e}");
                    refused = true;
                    break;
                }
                Ok(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
        assert!(refused, "the ICMP port unreachable is reported");
    }
}
