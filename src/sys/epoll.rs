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
