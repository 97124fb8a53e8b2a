//! The servers under test in `bench-all`: the userspace engines, started and stopped by
//! the harness (one worker each, pinned to CPU 0), and the kernel module when something
//! already answers on its address.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Context, Error, Result};

/// A server under test: its name, address, and process (none for the module).
pub struct Target {
    /// `uring`, `epoll` or `kernel`: the name in every CSV row and chart legend.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where it serves UDP, if it does (the module is TCP only).
    pub udp: Option<SocketAddr>,
    /// The server process, which the harness stops on drop (none for the module).
    pub child: Option<Child>,
    /// Its start-up line, for the metadata.
    pub banner: String,
    /// The last lines the server wrote to stderr: kept off the console (its
    /// `SIGTERM, stopping` at every stop would be noise between the harness's lines) and
    /// shown only when the server failed.
    pub stderr: StderrTail,
    /// An outside server's command line (`--server NAME=COMMAND`, `{port}` not yet
    /// replaced): how the memory phase starts a fresh one.
    pub command: Option<String>,
    /// The process whose CPU time and RSS are the server's, when that is not `child`:
    /// an outside server's `sh -c` may stay as a parent of the real server.
    pub measured: Option<u32>,
}

/// The last [`TAIL_LINES`] lines of a server's stderr.
pub type StderrTail = Arc<Mutex<VecDeque<String>>>;

/// How many of a server's last stderr lines an error about it quotes.
const TAIL_LINES: usize = 20;

/// Read `from` to its end, keeping the last [`TAIL_LINES`] lines in `tail` (so the
/// server never blocks on a full pipe).
fn keep_tail(from: impl Read, tail: StderrTail) {
    for line in BufReader::new(from).lines() {
        let Ok(line) = line else { return };
        // A poisoned lock only means another reader panicked; the lines are still good.
        let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
        if t.len() == TAIL_LINES {
            t.pop_front();
        }
        t.push_back(line);
    }
}

/// `tail`'s lines, indented, for an error message ("" when it has none).
fn quote(tail: &StderrTail) -> String {
    let t = tail.lock().unwrap_or_else(|p| p.into_inner());
    if t.is_empty() {
        return String::new();
    }
    let lines: Vec<&str> = t.iter().map(String::as_str).collect();
    format!("; its last stderr lines:\n  {}", lines.join("\n  "))
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            // Every server leads its own process group (see `spawn_in_group`): the
            // negative pid reaches whatever an outside server's shell started as well.
            let group = -(c.id() as i32);
            // SAFETY: kill(2) on our own child's group; SIGTERM lets it close cleanly.
            unsafe {
                libc::kill(group, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(2);
            let mut exited = false;
            while Instant::now() < deadline {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    exited = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            // The leader may have gone while something it started ignores SIGTERM.
            // SAFETY: as above; ESRCH (nothing left in the group) is harmless.
            unsafe {
                libc::kill(group, libc::SIGKILL);
            }
            if !exited {
                let _ = c.kill();
                let _ = c.wait();
            }
            live().retain(|&g| g != group);
        }
    }
}

/// The process groups of the servers running now (negative pids), for
/// [`kill_all_now`].
static LIVE: Mutex<Vec<i32>> = Mutex::new(Vec::new());

fn live() -> std::sync::MutexGuard<'static, Vec<i32>> {
    // A poisoned lock only means a thread panicked holding it; the list is still good.
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Spawn `cmd` as the leader of a process group of its own, so that the terminal's
/// Ctrl-C, which goes to the harness's group, does not reach it, and stopping the group
/// stops all it started; it is recorded for [`kill_all_now`].
fn spawn_in_group(cmd: &mut Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    let child = cmd.process_group(0).spawn()?;
    live().push(-(child.id() as i32));
    Ok(child)
}

/// SIGKILL every server still running: the harness is quitting at once (a second
/// Ctrl-C) and no `Drop` will run.
pub fn kill_all_now() {
    for &group in live().iter() {
        // SAFETY: kill(2) on a process group this harness started.
        unsafe {
            libc::kill(group, libc::SIGKILL);
        }
    }
}

impl Target {
    /// The server process's pid, for its CPU time.
    pub fn pid(&self) -> Option<u32> {
        self.measured.or(self.child.as_ref().map(Child::id))
    }

    /// An error naming the server and quoting its last stderr lines if its process has
    /// exited (a measurement's errors are then the crash's, not the server's answers).
    /// Read from `/proc` so that a shared `&Target` can ask; the module always passes.
    pub fn check_alive(&self) -> Result<()> {
        let Some(pid) = self.pid() else {
            return Ok(());
        };
        // Field 3 of /proc/PID/stat is the state; Z (zombie) or X: it has exited.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(") ")
                    .and_then(|(_, rest)| rest.chars().next())
            });
        match state {
            Some('Z' | 'X') | None => crate::bail!(
                "the {} server (pid {pid}) exited during the run{}",
                self.name,
                quote(&self.stderr)
            ),
            Some(_) => Ok(()),
        }
    }
}

/// Start `ringecho serve --engine NAME` on a free port, one worker pinned to CPU 0.
pub fn start_server(engine: &str) -> Result<Target> {
    let exe = std::env::current_exe().context("finding the ringecho binary")?;
    let mut child = spawn_in_group(
        Command::new(exe)
            .args([
                "serve",
                "--engine",
                engine,
                "--port",
                "0",
                "--threads",
                "1",
                "--pin",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .with_context(|| format!("starting the {engine} server"))?;
    let tail = StderrTail::default();
    if let Some(err) = child.stderr.take() {
        let t = Arc::clone(&tail);
        if let Err(e) = std::thread::Builder::new().spawn(move || keep_tail(err, t)) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(
                Error::from(e).context(format!("spawning the {engine} server's stderr reader"))
            );
        }
    }
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::msg("server stdout not captured"))?;
    let (tx, rx) = mpsc::channel();
    let drain = std::thread::Builder::new().spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(l)) = lines.next() {
            let _ = tx.send(l);
        }
        // Keep draining so the server never blocks on a full pipe.
        for _ in lines {}
    });
    if let Err(e) = drain {
        let _ = child.kill();
        let _ = child.wait();
        return Err(Error::from(e).context(format!("spawning the {engine} server's output reader")));
    }
    let banner = rx.recv_timeout(Duration::from_secs(10)).map_err(|_| {
        let _ = child.kill();
        let _ = child.wait();
        // The reader ends with the pipe; give it a moment to take the last lines.
        std::thread::sleep(Duration::from_millis(100));
        Error::msg(format!("the {engine} server did not start{}", quote(&tail)))
    })?;
    let addr = ringecho_server::server::announced(&banner, "tcp")
        .ok_or_else(|| Error::msg(format!("unexpected start-up line: {banner}")))?;
    Ok(Target {
        name: engine.into(),
        addr,
        udp: ringecho_server::server::announced(&banner, "udp"),
        child: Some(child),
        banner,
        stderr: tail,
        command: None,
        measured: None,
    })
}

/// How long an outside server has to answer its first echo.
const OUTSIDE_START: Duration = Duration::from_secs(10);

/// Start an outside server (`--server NAME=COMMAND`): `sh -c COMMAND` with `{port}`
/// replaced by a free TCP port, pinned to CPU 0 like ours, in its own process group so
/// that stopping it stops whatever the shell started. Ready once a small echo comes back
/// over TCP; UDP is measured if one datagram sent to the same port comes back.
pub fn start_outside(name: &str, command: &str) -> Result<Target> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .with_context(|| format!("finding a free port for the {name} server"))?
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let line = command.replace("{port}", &port.to_string());
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &line])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec only async-signal-safe calls: building a CPU set
        // on the stack and sched_setaffinity(2) on the child itself; its children inherit
        // the mask.
        unsafe {
            cmd.pre_exec(|| {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(0, &mut set);
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = spawn_in_group(&mut cmd)
        .with_context(|| format!("starting the {name} server (sh -c {line:?})"))?;
    let tail = StderrTail::default();
    let mut t = Target {
        name: name.into(),
        addr,
        udp: None,
        child: None,
        banner: format!("outside server, sh -c {line:?}, on tcp {addr}"),
        stderr: Arc::clone(&tail),
        command: Some(command.into()),
        measured: None,
    };
    if let Some(err) = child.stderr.take() {
        let tl = Arc::clone(&tail);
        // Dropping `t` (with the child in it) stops the group on every early return.
        let reader = std::thread::Builder::new().spawn(move || keep_tail(err, tl));
        t.child = Some(child);
        reader.with_context(|| format!("spawning the {name} server's stderr reader"))?;
    } else {
        t.child = Some(child);
    }
    let deadline = Instant::now() + OUTSIDE_START;
    loop {
        if t.check_alive().is_err() {
            std::thread::sleep(Duration::from_millis(100));
            crate::bail!(
                "the {name} server exited before it answered on {addr}{}",
                quote(&tail)
            );
        }
        if echoes_tcp(addr) {
            break;
        }
        if Instant::now() >= deadline {
            crate::bail!(
                "the {name} server did not echo on {addr} within {}s{}",
                OUTSIDE_START.as_secs(),
                quote(&tail)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some(leader) = t.child.as_ref().map(Child::id) {
        t.measured = largest_in_group(leader).filter(|&p| p != leader);
    }
    if echoes_udp(addr) {
        t.udp = Some(addr);
        t.banner += &format!(" and udp {addr}");
    }
    Ok(t)
}

/// The process of group `pgid` with the largest RSS: the server itself when a shell
/// stayed as its parent (a shell is far smaller than an echo server holding sockets).
fn largest_in_group(pgid: u32) -> Option<u32> {
    let mut best: Option<(u64, u32)> = None;
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        // Field 5 of /proc/PID/stat, the third after the command's closing parenthesis.
        let Some(group) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(") ")
                    .and_then(|(_, rest)| rest.split(' ').nth(2)?.parse::<u32>().ok())
            })
        else {
            continue;
        };
        if group != pgid {
            continue;
        }
        let rss = super::idle::rss_kib(pid).unwrap_or(0);
        if best.is_none_or(|(r, _)| rss > r) {
            best = Some((rss, pid));
        }
    }
    best.map(|(_, pid)| pid)
}

/// What the readiness probes send: small, and not all one byte, so an echo is checked.
const PROBE: &[u8] = b"ringecho probe 0123456789\n";

/// Whether `addr` accepts a TCP connection and echoes [`PROBE`] back intact.
fn echoes_tcp(addr: SocketAddr) -> bool {
    use std::io::Write;
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let mut back = [0u8; PROBE.len()];
    s.set_read_timeout(Some(Duration::from_secs(1))).is_ok()
        && s.write_all(PROBE).is_ok()
        && s.read_exact(&mut back).is_ok()
        && back == PROBE
}

/// Whether a datagram sent to `addr` comes back intact (three tries, since UDP may drop).
fn echoes_udp(addr: SocketAddr) -> bool {
    let Ok(s) = std::net::UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    if s.connect(addr).is_err()
        || s.set_read_timeout(Some(Duration::from_millis(300)))
            .is_err()
    {
        return false;
    }
    let mut back = [0u8; 64];
    (0..3)
        .any(|_| s.send(PROBE).is_ok() && matches!(s.recv(&mut back), Ok(n) if back[..n] == *PROBE))
}

/// The module, if something answers on its address.
pub fn kmod_target(addr: &str) -> Option<Target> {
    let a = crate::net::resolve(addr).ok()?;
    TcpStream::connect_timeout(&a, Duration::from_millis(300)).ok()?;
    Some(Target {
        name: "kernel".into(),
        addr: a,
        udp: None,
        child: None,
        banner: format!("fastecho.ko on {a}"),
        stderr: StderrTail::default(),
        command: None,
        measured: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_keeps_only_the_last_lines_and_quotes_them() {
        let tail = StderrTail::default();
        assert_eq!(quote(&tail), "", "nothing to quote");
        let text: String = (1..=TAIL_LINES + 5)
            .map(|i| format!("line {i}\n"))
            .collect();
        keep_tail(text.as_bytes(), Arc::clone(&tail));
        let q = quote(&tail);
        assert!(q.starts_with("; its last stderr lines:\n  line 6\n"), "{q}");
        assert!(q.ends_with(&format!("line {}", TAIL_LINES + 5)), "{q}");
        assert!(!q.contains("line 5\n"), "{q}");
    }

    #[test]
    fn a_server_that_exited_is_an_error_that_quotes_it() {
        let child = Command::new("sh")
            .args(["-c", "echo 'ringecho: cannot bind' >&2; exit 3"])
            .stderr(Stdio::piped())
            .spawn()
            .expect("sh");
        let mut t = Target {
            name: "uring".into(),
            addr: "127.0.0.1:1".parse().expect("addr"),
            udp: None,
            child: Some(child),
            banner: String::new(),
            stderr: StderrTail::default(),
            command: None,
            measured: None,
        };
        let err = t
            .child
            .as_mut()
            .and_then(|c| c.stderr.take())
            .expect("pipe");
        keep_tail(err, Arc::clone(&t.stderr));
        // Exited but not reaped: a zombie, as a crashed server is until the harness waits.
        let deadline = Instant::now() + Duration::from_secs(5);
        while t.check_alive().is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let e = t.check_alive().expect_err("exited");
        assert!(
            e.to_string().contains("the uring server (pid ")
                && e.to_string().ends_with(
                    "exited during the run; its last stderr lines:\n  ringecho: cannot bind"
                ),
            "{e}"
        );
        assert!(
            kmod_like().check_alive().is_ok(),
            "the module has no process to lose"
        );
    }

    fn kmod_like() -> Target {
        Target {
            name: "kernel".into(),
            addr: "127.0.0.1:1".parse().expect("addr"),
            udp: None,
            child: None,
            banner: String::new(),
            stderr: StderrTail::default(),
            command: None,
            measured: None,
        }
    }
}
