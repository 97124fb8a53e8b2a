//! `ringecho serve`: validates the configuration, opens one SO_REUSEPORT socket per worker
//! and transport (a TCP listener, a UDP socket), starts a worker thread for each, prints
//! the start-up line, and owns the process's lifetime (signals, `--stats`, a worker
//! failing). TCP and UDP workers are separate threads with separate rings (or epoll
//! sets): shared-nothing, so neither transport's load can corrupt the other's state.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use socket2::Socket;

use crate::config::{Engine, ServeConfig};
use crate::error::{Error, Result};
use crate::shutdown::{self, Shutdown};
use crate::stats::{Reporter, WorkerStats};
use crate::udp::limiter::Limiter;
use crate::{epoll, net, uring};

/// State every worker of one server shares.
#[derive(Debug)]
pub struct Shared {
    /// Connections open across all workers (admission control for `--max-conns`).
    active: AtomicU64,
    max_conns: u64,
    /// The stop signal.
    pub shutdown: Shutdown,
    /// Set once start-up is over (every worker ready, or start-up given up); workers wait
    /// for it in [`WorkerCtx::ready`].
    started: (Mutex<bool>, Condvar),
    /// `--udp-rate`'s buckets: one table for every UDP worker, so the rate is per source
    /// address however many ports and workers its datagrams reach.
    pub udp_limiter: Option<Arc<Limiter>>,
}

impl Shared {
    /// Count a new connection in, or say no when `--max-conns` are already open.
    /// One atomic per accepted connection, never per echo.
    pub fn try_admit(&self) -> bool {
        let prev = self.active.fetch_add(1, Ordering::AcqRel);
        if prev >= self.max_conns {
            self.active.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Count a connection out (after its socket is closed).
    pub fn release(&self) {
        self.active.fetch_sub(1, Ordering::AcqRel);
    }

    /// End start-up: let every worker waiting in [`WorkerCtx::ready`] go on.
    fn start(&self) {
        // A bool stays valid whatever a panicking holder was doing.
        let mut s = self
            .started
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *s = true;
        self.started.1.notify_all();
    }

    fn wait_started(&self) {
        let mut s = self
            .started
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while !*s {
            s = self
                .started
                .1
                .wait(s)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Which transport a worker serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

/// Everything one worker thread needs.
pub struct WorkerCtx {
    /// Worker index (0-based); also its CPU index with `--pin`.
    pub id: usize,
    /// What `socket` is.
    pub transport: Transport,
    /// This worker's own socket (SO_REUSEPORT): a listening TCP socket or a bound UDP one.
    pub socket: Socket,
    /// The validated configuration.
    pub cfg: Arc<ServeConfig>,
    /// This worker's counters.
    pub stats: Arc<WorkerStats>,
    /// Admission and shutdown, shared by all workers.
    pub shared: Arc<Shared>,
    events: mpsc::Sender<Event>,
}

impl WorkerCtx {
    /// Tell the main thread this worker finished its set-up, and wait until every worker
    /// has (or start-up failed: then `shared.shutdown` is already triggered). No worker
    /// serves before all could: a worker that failed to start is then the one thing
    /// reported, not also a worker already accepting into the same shortage (an accept
    /// fails with EMFILE even with no connection waiting).
    pub fn ready(&self) {
        let _ = self.events.send(Event::Ready);
        self.shared.wait_started();
    }
}

enum Event {
    Ready,
    Exited(usize, Result<()>),
    Signal(i32),
}

/// How long workers get to wind down after a stop is requested.
const STOP_GRACE: Duration = Duration::from_millis(900);

/// Run the server until SIGINT/SIGTERM (Ok) or a worker fails (Err).
pub fn serve(cfg: ServeConfig) -> Result<()> {
    cfg.validate()?;
    net::ignore_sigpipe();
    net::raise_nofile_limit();

    // Probe before opening sockets so "io_uring unavailable" is the first and only line.
    let features = match cfg.engine {
        Engine::Uring => Some(uring::probe::Features::detect(cfg.compat)?),
        Engine::Epoll => None,
    };

    let workers = cfg.worker_count();
    let mut sockets = Vec::new();
    let mut tcp_bound = None;
    if cfg.proto.tcp() {
        let (listeners, bound) = net::tcp_listeners(cfg.listen_addr(), cfg.backlog, workers)?;
        sockets.extend(listeners.into_iter().map(|s| (Transport::Tcp, s)));
        tcp_bound = Some(bound);
    }
    let mut udp_bound = None;
    if cfg.proto.udp() {
        // The same port number as TCP (RFC 862), including one `--port 0` picked for TCP.
        let port = tcp_bound.map_or(cfg.port, |b| b.port());
        let (socks, bound) = net::udp_sockets(SocketAddr::new(cfg.bind, port), workers)?;
        sockets.extend(socks.into_iter().map(|s| (Transport::Udp, s)));
        udp_bound = Some(bound);
    }

    shutdown::block_signals()?;
    let shared = Arc::new(Shared {
        active: AtomicU64::new(0),
        max_conns: u64::from(cfg.max_conns),
        shutdown: Shutdown::new()?,
        started: (Mutex::new(false), Condvar::new()),
        udp_limiter: cfg.udp_rate.map(|rate| Arc::new(Limiter::new(rate))),
    });
    let cfg = Arc::new(cfg);
    let (tx, rx) = mpsc::channel();
    // One set of counters per thread: each has a single writer.
    let stats: Vec<Arc<WorkerStats>> = sockets.iter().map(|_| Arc::default()).collect();

    let mut handles = Vec::with_capacity(sockets.len());
    for (n, (transport, socket)) in sockets.into_iter().enumerate() {
        let id = n % workers;
        let ctx = WorkerCtx {
            id,
            transport,
            socket,
            cfg: Arc::clone(&cfg),
            stats: Arc::clone(&stats[n]),
            shared: Arc::clone(&shared),
            events: tx.clone(),
        };
        let done = tx.clone();
        let features = features.clone();
        let name = match transport {
            Transport::Tcp => format!("{}-{id}", cfg.engine.name()),
            Transport::Udp => format!("{}-udp-{id}", cfg.engine.name()),
        };
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let res = run_worker(ctx, features);
                let _ = done.send(Event::Exited(id, res));
            })
            .map_err(|e| Error::from(e).context("spawning a worker thread"))?;
        handles.push(handle);
    }
    {
        let tx = tx.clone();
        // The signal thread is never joined: it may sit in sigwait until the process exits.
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || loop {
                let sig = shutdown::wait_for_signal();
                if tx.send(Event::Signal(sig)).is_err() {
                    return;
                }
            })
            .map_err(|e| Error::from(e).context("spawning the signal thread"))?;
    }
    drop(tx);

    let bound = Bound {
        tcp: tcp_bound,
        udp: udp_bound,
    };
    // Counts the workers whose exit supervise already took off the channel (the one whose
    // failure ends it), so the wait below does not wait out its grace for that one.
    let mut exited = 0;
    let result = supervise(
        &cfg,
        &rx,
        &bound,
        features.as_ref(),
        &stats,
        &mut exited,
        &shared,
    );
    // Triggered before start-up ends, so a worker released from `ready` by a failure
    // sees the stop at once.
    shared.shutdown.trigger();
    shared.start();
    let deadline = Instant::now() + STOP_GRACE;
    let mut failure = result.err();
    while exited < handles.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Event::Exited(id, res)) => {
                exited += 1;
                if let (Err(e), None) = (res, &failure) {
                    failure = Some(e.context(format!("worker {id}")));
                }
            }
            Ok(_) => {}
            Err(_) => {
                // Stragglers are abandoned: the process exits and the kernel closes the rest.
                // After a failure, main's one line must name the cause first: the note
                // goes at its end.
                let note = format!("{} worker(s) did not stop in time", handles.len() - exited);
                match failure.take() {
                    Some(e) => failure = Some(Error::msg(format!("{e} ({note})"))),
                    None => eprintln!("ringecho: {note}; exiting anyway"),
                }
                break;
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The addresses the server really has (port 0 resolved), per transport.
struct Bound {
    tcp: Option<SocketAddr>,
    udp: Option<SocketAddr>,
}

impl Bound {
    /// `tcp A and udp B`, `tcp A` or `udp B`: what the start-up line says.
    fn describe(&self) -> String {
        match (self.tcp, self.udp) {
            (Some(t), Some(u)) => format!("tcp {t} and udp {u}"),
            (Some(t), None) => format!("tcp {t}"),
            (None, Some(u)) => format!("udp {u}"),
            (None, None) => "nothing".to_string(),
        }
    }
}

/// The `proto` (`tcp` or `udp`) address of a start-up line as [`supervise`] prints it
/// (`ringecho: listening on tcp A and udp B (...)`, or one of them alone): how the
/// harness and the tests find a server started on port 0.
pub fn announced(line: &str, proto: &str) -> Option<SocketAddr> {
    let head = line.split(" (").next()?;
    let (_, rest) = head.split_once(&format!("{proto} "))?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Wait for every worker thread to be ready, announce, then wait for a signal or a failure.
/// Each worker exit it receives is counted in `exited`.
fn supervise(
    cfg: &ServeConfig,
    rx: &mpsc::Receiver<Event>,
    bound: &Bound,
    features: Option<&uring::probe::Features>,
    stats: &[Arc<WorkerStats>],
    exited: &mut usize,
    shared: &Shared,
) -> Result<()> {
    // One set of counters per worker thread: as many as must report ready.
    let threads = stats.len();
    let mut ready = 0;
    while ready < threads {
        match rx.recv() {
            Ok(Event::Ready) => ready += 1,
            Ok(Event::Exited(id, res)) => {
                *exited += 1;
                return Err(res
                    .err()
                    .unwrap_or_else(|| Error::msg("exited during start-up"))
                    .context(format!("worker {id}")));
            }
            Ok(Event::Signal(_)) => return Ok(()),
            Err(_) => return Err(Error::msg("every worker exited during start-up")),
        }
    }
    shared.start();
    let detail = match features {
        Some(f) => format!("io_uring: {}", f.describe()),
        None => "edge-triggered epoll".to_string(),
    };
    let workers = cfg.worker_count();
    println!(
        "ringecho: listening on {} (engine {}, {workers} worker{}{}; {detail})",
        bound.describe(),
        cfg.engine.name(),
        if workers == 1 { "" } else { "s" },
        if cfg.pin { ", pinned" } else { "" },
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();

    let tick = (cfg.stats > 0).then(|| Duration::from_secs(cfg.stats));
    let mut reporter = Reporter::new(stats, cfg.proto.udp());
    loop {
        let ev = match tick {
            Some(t) => rx.recv_timeout(t),
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        };
        match ev {
            Ok(Event::Signal(sig)) => {
                eprintln!("ringecho: {}, stopping", signal_name(sig));
                return Ok(());
            }
            Ok(Event::Exited(id, res)) => {
                *exited += 1;
                return Err(res
                    .err()
                    .unwrap_or_else(|| Error::msg("stopped unexpectedly"))
                    .context(format!("worker {id}")));
            }
            Ok(Event::Ready) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {
                println!("{}", reporter.line(stats));
                let _ = std::io::stdout().flush();
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(Error::msg("every worker exited"))
            }
        }
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

fn run_worker(ctx: WorkerCtx, features: Option<uring::probe::Features>) -> Result<()> {
    if ctx.cfg.pin {
        net::pin_current_thread(ctx.id)?;
    }
    match (features, ctx.transport) {
        (Some(f), _) => uring::run(ctx, &f),
        (None, Transport::Tcp) => epoll::run_worker(ctx),
        (None, Transport::Udp) => epoll::run_udp_worker(ctx),
    }
}

#[cfg(test)]
mod tests {
    use super::announced;

    #[test]
    fn start_up_lines_name_each_protocol_address() {
        let both = "ringecho: listening on tcp 127.0.0.1:4000 and udp 127.0.0.1:4000 \
                    (engine uring, 1 worker; io_uring: multishot accept, no-sqarray)";
        assert_eq!(announced(both, "tcp"), "127.0.0.1:4000".parse().ok());
        assert_eq!(announced(both, "udp"), "127.0.0.1:4000".parse().ok());
        let udp = "ringecho: listening on udp [::1]:5 (engine epoll, 2 workers)";
        assert_eq!(announced(udp, "udp"), "[::1]:5".parse().ok());
        assert_eq!(announced(udp, "tcp"), None);
        let tcp = "ringecho: listening on tcp 127.0.0.1:7 (engine epoll; udp off)";
        assert_eq!(
            announced(tcp, "udp"),
            None,
            "only the part before the features"
        );
    }
}
