//! The UDP load generator's syscall boundary: batched `sendmmsg` and `recvmmsg` on
//! connected, non-blocking UDP sockets. Every `unsafe` block of the UDP load generator
//! lives here; callers see `io::Result` and borrowed descriptors and slices.
//!
//! Both batches allocate their headers (and the receive side its buffers) once; nothing
//! is allocated per datagram.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Outgoing datagrams, each a short head followed by one shared body, sent with one
/// `sendmmsg`: the body is never copied (every datagram's second iovec points at it).
pub struct SendBatch {
    hdrs: Box<[libc::mmsghdr]>,
    iovs: Box<[[libc::iovec; 2]]>,
}

impl SendBatch {
    /// Room for `n` datagrams per call.
    pub fn new(n: usize) -> SendBatch {
        // SAFETY: mmsghdr and iovec are plain C structs for which all-zero is valid (null
        // pointers, zero lengths).
        let zero_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let zero_iov: libc::iovec = unsafe { std::mem::zeroed() };
        SendBatch {
            hdrs: vec![zero_hdr; n.max(1)].into_boxed_slice(),
            iovs: vec![[zero_iov; 2]; n.max(1)].into_boxed_slice(),
        }
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
        for ((head, iov), h) in heads[..n]
            .iter()
            .zip(self.iovs.iter_mut())
            .zip(self.hdrs.iter_mut())
        {
            // The kernel only reads from a send's iovecs; the casts to *mut are what the
            // C struct's type demands.
            iov[0].iov_base = head.as_ptr() as *mut libc::c_void;
            iov[0].iov_len = H;
            iov[1].iov_base = body.as_ptr() as *mut libc::c_void;
            iov[1].iov_len = body.len();
            h.msg_hdr.msg_name = std::ptr::null_mut();
            h.msg_hdr.msg_namelen = 0;
            h.msg_hdr.msg_iov = iov.as_mut_ptr();
            h.msg_hdr.msg_iovlen = 2;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        // SAFETY: the first `n` headers point at this batch's iovecs, which point at
        // `heads[i]` (H bytes) and `body` (body.len() bytes), all borrowed for the whole
        // call; the kernel reads those lengths and writes only `msg_len`.
        let rc = unsafe {
            libc::sendmmsg(
                fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        match cvt(rc) {
            Ok(k) => Ok(k as usize),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        }
    }
}

/// Incoming datagrams: `n` buffers of `buf_size` bytes each, filled by one `recvmmsg`.
/// The headers point into the batch's own storage (boxed slices: moving the batch moves
/// no byte they point to), so every pointer handed to the kernel is valid by
/// construction.
pub struct RecvBatch {
    hdrs: Box<[libc::mmsghdr]>,
    iovs: Box<[libc::iovec]>,
    bufs: Box<[u8]>,
    buf_size: usize,
}

impl RecvBatch {
    /// `n` datagrams of up to `buf_size` bytes per call (a longer one is cut short and
    /// flagged truncated).
    pub fn new(n: usize, buf_size: usize) -> RecvBatch {
        let (n, buf_size) = (n.max(1), buf_size.max(1));
        // SAFETY: mmsghdr and iovec are plain C structs for which all-zero is valid.
        let zero_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let zero_iov: libc::iovec = unsafe { std::mem::zeroed() };
        let mut b = RecvBatch {
            hdrs: vec![zero_hdr; n].into_boxed_slice(),
            iovs: vec![zero_iov; n].into_boxed_slice(),
            bufs: vec![0u8; n * buf_size].into_boxed_slice(),
            buf_size,
        };
        for i in 0..n {
            b.iovs[i].iov_base = b.bufs[i * buf_size..].as_mut_ptr().cast();
            b.iovs[i].iov_len = buf_size;
            let h = &mut b.hdrs[i].msg_hdr;
            h.msg_iov = &mut b.iovs[i];
            h.msg_iovlen = 1;
        }
        b
    }

    /// Datagrams one call can receive.
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Receive up to `capacity` datagrams without blocking; `Ok(0)` when none is waiting.
    pub fn recv(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        for h in self.hdrs.iter_mut() {
            h.msg_hdr.msg_name = std::ptr::null_mut();
            h.msg_hdr.msg_namelen = 0;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        // SAFETY: every header points at its own iovec, which points into this batch's
        // buffers with `buf_size` bytes of room (see the type's invariant); the kernel
        // writes at most that much per datagram, and a null timeout means none.
        let rc = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        match cvt(rc) {
            Ok(k) => Ok(k as usize),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Datagram `i` of the last `recv` (which returned more than `i`), and whether it was
    /// longer than the buffer.
    pub fn get(&self, i: usize) -> (&[u8], bool) {
        let h = &self.hdrs[i];
        let len = (h.msg_len as usize).min(self.buf_size);
        let at = i * self.buf_size;
        (
            &self.bufs[at..at + len],
            h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
        )
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
        let mut recv = RecvBatch::new(8, 64);
        let mut got = Vec::new();
        for _ in 0..100 {
            let n = recv.recv(b.as_fd()).expect("recv");
            got.extend((0..n).map(|i| recv.get(i).0.to_vec()));
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
        let mut recv = RecvBatch::new(2, 10);
        let mut n = 0;
        for _ in 0..100 {
            n = recv.recv(b.as_fd()).expect("recv");
            if n > 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(n, 1);
        let (d, truncated) = recv.get(0);
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
        let mut recv = RecvBatch::new(1, 16);
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
