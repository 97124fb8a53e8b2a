//! The hostile-client cases of `ringecho check` against deliberately flawed servers
//! written here: each flaw must fail exactly the case written for it, and the same server
//! without the flaw (or with shedding) must pass every case.

mod common;

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ringecho_sys::epoll::{self as sys, Epoll};
use socket2::{Domain, Socket, Type};

use common::check;

/// A loopback listener with a backlog deep enough for a thousand clients at once (std's
/// default of 128 would make the checker's connects wait on SYN retries).
fn listener() -> TcpListener {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    s.set_reuse_address(true).expect("SO_REUSEADDR");
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    s.bind(&any.into()).expect("bind");
    s.listen(4096).expect("listen");
    s.into()
}

/// Flaw (a): reads everything into memory as fast as it comes and echoes when it can, so
/// a client that never reads makes it grow without limit. Otherwise a correct echo server.
fn unbounded_server() -> SocketAddr {
    let l = listener();
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            let Ok(mut w) = s.try_clone() else { continue };
            let (tx, rx) = mpsc::channel::<Vec<u8>>();
            std::thread::spawn(move || {
                for chunk in rx {
                    if w.write_all(&chunk).is_err() {
                        return;
                    }
                }
                let _ = w.shutdown(Shutdown::Write);
            });
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if tx.send(buf[..n].to_vec()).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Receive buffers the pool server shares among all its connections.
const POOL: usize = 64;
/// Bytes in each.
const BUF: usize = 16 << 10;
/// The most one connection holds while its echo is unsent.
const PER_CONN: usize = 4;

/// One connection of the pool server.
struct Conn {
    s: TcpStream,
    /// Buffers read and not yet fully echoed: (buffer, length, bytes sent).
    queue: VecDeque<(usize, usize, usize)>,
    readable: bool,
    writable: bool,
    eof: bool,
    /// Wants a buffer and found the pool empty.
    starved: bool,
}

/// Flaw (b), the one the many-non-readers case exists for: one thread and a fixed pool of
/// receive buffers shared by every connection, each holding up to [`PER_CONN`] until its
/// echo is sent (as io_uring's provided buffers are). Non-readers soon hold the whole
/// pool and every other client starves. With `shed`, the server instead resets the
/// stalled connection holding the most buffers when the pool runs dry, as a budgeted
/// server would; `shed_count` counts those resets.
fn pool_server(shed: bool, shed_count: Arc<AtomicU64>) -> SocketAddr {
    let l = listener();
    l.set_nonblocking(true).expect("nonblocking");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        let ep = Epoll::new().expect("epoll");
        const LISTENER: u64 = u64::MAX;
        ep.add(l.as_raw_fd(), sys::IN, LISTENER).expect("add");
        let mut pool = vec![vec![0u8; BUF]; POOL];
        let mut free: Vec<usize> = (0..POOL).collect();
        let mut conns: HashMap<u64, Conn> = HashMap::new();
        let mut next = 0u64;
        let mut events = sys::event_buffer(1024);
        loop {
            let n = ep.wait(&mut events, 20).expect("epoll_wait");
            let mut dirty = Vec::new();
            for ev in &events[..n] {
                // epoll_event is packed: copy the fields out before borrowing them.
                let (tok, bits) = (ev.u64, ev.events);
                if tok == LISTENER {
                    while let Ok((s, _)) = l.accept() {
                        s.set_nonblocking(true).expect("nonblocking");
                        let tok = next;
                        next += 1;
                        ep.add(
                            s.as_raw_fd(),
                            sys::IN | sys::OUT | sys::RDHUP | sys::ET,
                            tok,
                        )
                        .expect("add");
                        conns.insert(
                            tok,
                            Conn {
                                s,
                                queue: VecDeque::new(),
                                readable: true,
                                writable: true,
                                eof: false,
                                starved: false,
                            },
                        );
                        dirty.push(tok);
                    }
                } else if let Some(c) = conns.get_mut(&tok) {
                    if bits & (sys::IN | sys::RDHUP | sys::HUP | sys::ERR) != 0 {
                        c.readable = true;
                    }
                    if bits & (sys::OUT | sys::HUP | sys::ERR) != 0 {
                        c.writable = true;
                    }
                    dirty.push(tok);
                }
            }
            if !free.is_empty() {
                dirty.extend(conns.iter().filter(|(_, c)| c.starved).map(|(t, _)| *t));
            }
            for tok in dirty {
                serve_conn(tok, &mut conns, &mut pool, &mut free, shed, &shed_count);
            }
        }
    });
    addr
}

/// Echo what `tok` can, read what it may; close it when done or broken.
fn serve_conn(
    tok: u64,
    conns: &mut HashMap<u64, Conn>,
    pool: &mut [Vec<u8>],
    free: &mut Vec<usize>,
    shed: bool,
    shed_count: &AtomicU64,
) {
    let mut dead = false;
    loop {
        let Some(c) = conns.get_mut(&tok) else { return };
        let mut progress = false;
        while c.writable {
            let Some(&(b, len, sent)) = c.queue.front() else {
                break;
            };
            match c.s.write(&pool[b][sent..len]) {
                Ok(k) if sent + k == len => {
                    c.queue.pop_front();
                    free.push(b);
                    progress = true;
                }
                Ok(k) => c.queue[0].2 += k,
                Err(e) if e.kind() == ErrorKind::WouldBlock => c.writable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    dead = true;
                    break;
                }
            }
        }
        if dead {
            break;
        }
        c.starved = false;
        if c.readable && !c.eof && c.queue.len() < PER_CONN {
            if free.is_empty() && shed {
                shed_one(tok, conns, free, shed_count);
            }
            let Some(c) = conns.get_mut(&tok) else { return };
            match free.pop() {
                None => c.starved = true,
                Some(b) => match c.s.read(&mut pool[b]) {
                    Ok(0) => {
                        c.eof = true;
                        free.push(b);
                    }
                    Ok(k) => {
                        c.queue.push_back((b, k, 0));
                        progress = true;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        c.readable = false;
                        free.push(b);
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => free.push(b),
                    Err(_) => {
                        free.push(b);
                        dead = true;
                        break;
                    }
                },
            }
        }
        let Some(c) = conns.get_mut(&tok) else { return };
        if c.eof && c.queue.is_empty() {
            let _ = c.s.shutdown(Shutdown::Write);
            dead = true;
            break;
        }
        if !progress {
            return;
        }
    }
    if dead {
        if let Some(c) = conns.remove(&tok) {
            free.extend(c.queue.iter().map(|q| q.0));
        }
    }
}

/// Reset the stalled connection (not `except`) holding the most buffers.
fn shed_one(except: u64, conns: &mut HashMap<u64, Conn>, free: &mut Vec<usize>, n: &AtomicU64) {
    let victim = conns
        .iter()
        .filter(|(t, c)| **t != except && !c.writable && !c.queue.is_empty())
        .max_by_key(|(_, c)| c.queue.len())
        .map(|(t, _)| *t);
    if let Some(c) = victim.and_then(|t| conns.remove(&t)) {
        let _ = socket2::SockRef::from(&c.s).set_linger(Some(Duration::ZERO));
        free.extend(c.queue.iter().map(|q| q.0));
        n.fetch_add(1, Ordering::Relaxed);
    }
}

/// One check at a time: the many non-readers queue over 1 GiB in loopback TCP, near the
/// kernel's memory-pressure threshold on a small machine; two runs would push each other
/// past it.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// `check` run against `addr`: (its stdout, how long it took).
fn run_check(addr: SocketAddr, args: &[&str]) -> (String, Duration) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let start = Instant::now();
    let out = check(addr, args);
    let took = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}(check took {took:?})");
    (stdout, took)
}

/// The row of case `name`: (passed, the whole line).
fn row<'a>(stdout: &'a str, name: &str) -> (bool, &'a str) {
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with(name))
        .unwrap_or_else(|| panic!("no row {name:?} in:\n{stdout}"));
    let pass = line.contains(" PASS ");
    assert!(pass || line.contains(" FAIL "), "{line}");
    (pass, line)
}

/// Every case but `failing` passed; `failing` did not.
fn only_fails(stdout: &str, failing: &str) {
    let failed: Vec<&str> = stdout.lines().filter(|l| l.contains(" FAIL ")).collect();
    assert_eq!(
        failed.len(),
        1,
        "expected only {failing:?} to fail:\n{stdout}"
    );
    assert!(!row(stdout, failing).0, "{stdout}");
    assert!(stdout.contains("result: 1 of"), "{stdout}");
}

#[test]
fn a_server_that_buffers_without_limit_fails_one_non_reader_bounded() {
    // Few non-readers and connections: this server keeps in memory all they send.
    let addr = unbounded_server();
    let (out, _) = run_check(addr, &["--non-readers", "20", "--conns", "100"]);
    only_fails(&out, "one non-reader bounded");
    let (_, line) = row(&out, "one non-reader bounded");
    assert!(
        line.contains("buffers without a bound (limit 64 MiB)"),
        "{line}"
    );
}

#[test]
fn a_server_whose_non_readers_starve_the_rest_fails_many_non_readers() {
    let addr = pool_server(false, Arc::default());
    let (out, _) = run_check(addr, &[]);
    only_fails(&out, "many non-readers");
    let (_, line) = row(&out, "many non-readers");
    assert!(
        line.contains("1000 non-readers")
            && line.contains(
                "fresh clients within 5s: FAILED: fresh client 1 of 4: got 0 of 1000 bytes"
            ),
        "{line}"
    );
}

#[test]
fn the_same_pool_server_passes_when_it_sheds_stalled_connections() {
    let sheds = Arc::new(AtomicU64::new(0));
    let addr = pool_server(true, Arc::clone(&sheds));
    let (out, _) = run_check(addr, &[]);
    assert!(out.contains("result: all 11 cases passed"), "{out}");
    let shed = sheds.load(Ordering::Relaxed);
    assert!(
        shed > 0,
        "the pool never ran dry: the case did not bite\n{out}"
    );
    // The checker counts at least the resets that happened before it looked.
    let (_, line) = row(&out, "many non-readers");
    let counted: u64 = line
        .split(" shed by the server")
        .next()
        .and_then(|h| h.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no shed count in {line}"));
    assert!(
        counted > 0 && counted <= shed,
        "counted {counted}, server shed {shed}: {line}"
    );
}
