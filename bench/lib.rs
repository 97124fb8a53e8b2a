//! ringecho's benchmark harness: `ringecho bench` (the load generators, one workload at a
//! time), `ringecho bench-all` (every server side by side: run, export, output) and
//! `ringecho plot`. `bench/README.md` lists what each file holds.

pub mod all;
pub mod all_repeat;
pub mod all_udp;
pub mod burst;
pub mod chart;
pub mod cpu;
pub mod export;
pub mod gate;
pub mod hist;
pub mod hlog;
pub mod idle;
pub mod loadgen;
pub mod machine;
pub mod openloop;
pub mod plan;
pub mod plot;
pub mod results;
pub mod servers;
pub mod stop;
pub mod udp;
pub mod udp_seq;
pub mod validity;

use std::time::Duration;

use clap::{Args, Subcommand};

use crate::error::{Error, Result};

use hist::Percentiles;
/// The syscall boundary's modules, under the names this crate's code uses.
pub use ringecho_sys::{bail, error, net, shutdown};
use validity::Judged;

/// `ringecho bench` flags.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub workload: Workload,
}

/// Which workload to run.
#[derive(Debug, Clone, Subcommand)]
pub enum Workload {
    /// Closed-loop ping-pong: each connection keeps one message in flight.
    Throughput(ThroughputArgs),
    /// The seed's burst: N threads released at once, each connect, echo 13 bytes, close.
    Burst(BurstArgs),
    /// Memory: server RSS added by N idle connections (needs the server's pid).
    Idle(IdleArgs),
    /// Open loop (wrk2 style): messages sent on a fixed schedule at a given rate, latency
    /// from when each was due (coordinated omission corrected) and from when it was sent.
    Latency(LatencyArgs),
    /// UDP, the echobench way: many source ports, batched sends. Without --rate, a closed
    /// loop (each socket keeps --window datagrams in flight): packets/s and loss. With
    /// --rate, an open loop: latency from each datagram's scheduled and actual send.
    Udp(UdpArgs),
}

/// `ringecho bench udp` flags.
#[derive(Debug, Clone, Args)]
pub struct UdpArgs {
    /// The server's UDP address, as HOST:PORT.
    pub addr: String,
    /// Client sockets (each its own source port), all load threads together.
    #[arg(long, default_value_t = 64)]
    pub sockets: usize,
    /// Datagram size in bytes (16 to 65507; the first 16 carry the sequence number).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Closed loop: datagrams in flight per socket [default: 4].
    #[arg(long, conflicts_with = "rate")]
    pub window: Option<usize>,
    /// Open loop: datagrams per second, all sockets together.
    #[arg(long)]
    pub rate: Option<f64>,
    #[command(flatten)]
    pub run: RunArgs,
    /// Seconds after which a datagram not echoed counts as lost.
    #[arg(long, default_value_t = udp::TIMEOUT_SECS)]
    pub timeout: f64,
    /// Loss (percent of the datagrams counted) above which the run fails.
    #[arg(long, default_value_t = udp::MAX_LOSS_PCT)]
    pub max_loss: f64,
}

/// Closed-loop datagrams in flight per socket when `--window` is not given.
pub const UDP_WINDOW: usize = 4;

impl UdpArgs {
    /// The validated load description.
    fn spec(&self) -> Result<udp::UdpSpec> {
        if !(1..=10_000).contains(&self.sockets) {
            crate::bail!("--sockets must be between 1 and 10000");
        }
        if !(udp_seq::HEAD..=udp::MAX_SIZE).contains(&self.size) {
            crate::bail!(
                "--size must be between {} and {} bytes",
                udp_seq::HEAD,
                udp::MAX_SIZE
            );
        }
        let window = self.window.unwrap_or(UDP_WINDOW);
        if !(1..=1024).contains(&window) {
            crate::bail!("--window must be between 1 and 1024");
        }
        if self.sockets * window > udp::MAX_IN_FLIGHT {
            crate::bail!(
                "--sockets x --window must be at most {} datagrams in flight",
                udp::MAX_IN_FLIGHT
            );
        }
        if let Some(r) = self.rate {
            if !(r.is_finite() && (1.0..=1e8).contains(&r)) {
                crate::bail!("--rate must be between 1 and 100000000 datagrams per second");
            }
        }
        if !(1..=64).contains(&self.run.threads) {
            crate::bail!("--threads must be between 1 and 64");
        }
        if !(self.timeout.is_finite() && (0.001..=60.0).contains(&self.timeout)) {
            crate::bail!("--timeout must be between 0.001 and 60 seconds");
        }
        if !(self.max_loss.is_finite() && (0.0..=100.0).contains(&self.max_loss)) {
            crate::bail!("--max-loss must be between 0 and 100 percent");
        }
        let run = self.run.spec()?;
        Ok(udp::UdpSpec {
            addr: crate::net::resolve(&self.addr)?,
            sockets: self.sockets,
            size: self.size,
            window,
            rate: self.rate,
            timeout: Duration::from_secs_f64(self.timeout),
            run,
        })
    }
}

/// `ringecho bench idle` flags.
#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    /// The server, as HOST:PORT.
    pub addr: String,
    /// The server's pid (its RSS is what is measured).
    #[arg(long)]
    pub server_pid: u32,
    /// Idle connections to open.
    #[arg(long, default_value_t = 10_000)]
    pub conns: usize,
}

/// `ringecho bench latency` flags.
#[derive(Debug, Clone, Args)]
pub struct LatencyArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Messages per second, all connections together.
    #[arg(long)]
    pub rate: f64,
    /// Also write both histograms to this file in HdrHistogram's interval log format.
    #[arg(long)]
    pub hlog: Option<std::path::PathBuf>,
}

/// `ringecho bench burst` flags.
#[derive(Debug, Clone, Args)]
pub struct BurstArgs {
    /// The server, as HOST:PORT.
    pub addr: String,
    /// Threads (connections) released at once per round (at most 10,000).
    #[arg(long, default_value_t = 1000)]
    pub threads: usize,
    /// Rounds.
    #[arg(long, default_value_t = 10)]
    pub rounds: u32,
    /// Per-connection limit in seconds for connect and echo.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// Write every connection's result (round, rank, connect µs, response µs) to this CSV.
    #[arg(long)]
    pub csv: Option<std::path::PathBuf>,
}

/// `ringecho bench throughput` flags.
#[derive(Debug, Clone, Args)]
pub struct ThroughputArgs {
    #[command(flatten)]
    pub load: LoadArgs,
}

/// The flags both connection-driving workloads share.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// The server, as HOST:PORT.
    pub addr: String,
    /// Connections, all load threads together.
    #[arg(long, default_value_t = 100)]
    pub conns: usize,
    /// Message size in bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    #[command(flatten)]
    pub run: RunArgs,
}

/// The flags every load generator shares: how long, from how many threads where, and
/// whose CPU to report.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Measured seconds.
    #[arg(long, default_value_t = 5.0)]
    pub secs: f64,
    /// Warm-up seconds before measuring (connections are made then).
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Load threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// CPUs to pin the load threads to, comma-separated (e.g. `1` or `2,3`); keep them off
    /// the server's CPUs.
    #[arg(long, value_delimiter = ',')]
    pub cpus: Vec<usize>,
    /// The server's pid, to report its CPU time too.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Payload seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl RunArgs {
    /// The run's description, its warm-up and measured window checked (the window is
    /// never empty).
    fn spec(&self) -> Result<loadgen::RunSpec> {
        let (warmup, duration) = (
            secs_arg("warmup", self.warmup)?,
            secs_arg("secs", self.secs)?,
        );
        if duration.is_zero() {
            crate::bail!("--secs must be more than 0");
        }
        Ok(loadgen::RunSpec {
            warmup,
            duration,
            threads: self.threads,
            cpus: self.cpus.clone(),
            seed: self.seed,
            server_pid: self.server_pid,
        })
    }
}

impl LoadArgs {
    /// The validated load description.
    fn spec(&self) -> Result<loadgen::LoadSpec> {
        let run = self.run.spec()?;
        let spec = loadgen::LoadSpec {
            addr: crate::net::resolve(&self.addr)?,
            conns: self.conns,
            size: self.size,
            run,
        };
        if !(1..=loadgen::MAX_THREADS).contains(&spec.run.threads) {
            crate::bail!("--threads must be between 1 and {}", loadgen::MAX_THREADS);
        }
        Ok(spec)
    }

    /// `C conns x S B, T load thread(s), Ds (+Ws warm-up)`.
    fn describe(spec: &loadgen::LoadSpec) -> String {
        format!(
            "{} conns x {} B, {} load thread(s), {:.1}s (+{:.1}s warm-up)",
            spec.conns,
            spec.size,
            spec.run.threads,
            spec.run.duration.as_secs_f64(),
            spec.run.warmup.as_secs_f64()
        )
    }
}

/// Run a workload; Ok(false) if it saw errors (wrong bytes, resets, stalls) or no echo.
pub fn run(args: &BenchArgs) -> Result<bool> {
    match &args.workload {
        Workload::Throughput(t) => throughput(t),
        Workload::Burst(b) => burst_cmd(b),
        Workload::Latency(l) => latency(l),
        Workload::Idle(i) => idle_cmd(i),
        Workload::Udp(u) => udp_cmd(u),
    }
}

/// `--NAME` as a duration: finite, 0..=3600 s.
fn secs_arg(name: &str, v: f64) -> Result<Duration> {
    if v.is_finite() && (0.0..=3600.0).contains(&v) {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(Error::msg(format!(
            "--{name} must be between 0 and 3600 seconds"
        )))
    }
}

fn idle_cmd(a: &IdleArgs) -> Result<bool> {
    if a.conns == 0 || a.conns > 1_000_000 {
        crate::bail!("--conns must be between 1 and 1000000");
    }
    let addr = crate::net::resolve(&a.addr)?;
    if idle::rss_kib(a.server_pid).is_none() {
        crate::bail!(
            "cannot read /proc/{}/status: is it the server's pid?",
            a.server_pid
        );
    }
    crate::net::probe_tcp(addr)?;
    println!("idle {addr}: {} connections that never send", a.conns);
    let r = idle::run(addr, a.server_pid, a.conns, Duration::from_secs(1))?;
    println!(
        "  server RSS {} KiB -> {} KiB with {} connections open: {:.0} bytes per connection{}",
        r.rss_before_kib,
        r.rss_after_kib,
        r.conns,
        r.bytes_per_conn(),
        idle_failed(&r)
    );
    Ok(r.failed == 0)
}

/// " (N failed to connect)" after an idle run's line, "" when every connection connected.
pub fn idle_failed(r: &idle::IdleResult) -> String {
    if r.failed > 0 {
        format!(" ({} failed to connect)", r.failed)
    } else {
        String::new()
    }
}

fn latency(a: &LatencyArgs) -> Result<bool> {
    if !(a.rate.is_finite() && (1.0..=1e8).contains(&a.rate)) {
        crate::bail!("--rate must be between 1 and 100000000 messages per second");
    }
    let spec = openloop::OpenSpec {
        load: a.load.spec()?,
        rate: a.rate,
    };
    crate::net::probe_tcp(spec.load.addr)?;
    println!(
        "latency {}: {:.0} messages/s (open loop), {}",
        spec.load.addr,
        spec.rate,
        LoadArgs::describe(&spec.load)
    );
    let r = openloop::run(&spec)?;
    println!("{}", latency_report(&r));
    let row = all::latency_row("server", &spec, &r);
    if let Some(path) = &a.hlog {
        let entries =
            [("corrected", &r.corrected), ("uncorrected", &r.uncorrected)].map(|(kind, h)| {
                hlog::Entry {
                    tag: format!("latency:r{:.0}:{kind}", spec.rate),
                    start: spec.load.run.warmup,
                    length: spec.load.run.duration,
                    hist: h.clone(),
                }
            });
        hlog::write(path, "ringecho bench latency", &entries)?;
        println!("  wrote both histograms to {}", path.display());
    }
    Ok(verdict(&row))
}

/// The human-readable result lines of an open-loop run.
pub fn latency_report(r: &openloop::OpenResult) -> String {
    let secs = r.usage.window.as_secs_f64();
    let mut s = format!(
        "  {:.0} echoes/s of {:.0} scheduled; {} of {} due in the window unfinished\n  \
         corrected   {}\n  uncorrected {}",
        r.echoes as f64 / secs,
        r.scheduled as f64 / secs,
        r.unfinished,
        r.scheduled,
        Percentiles::of(&r.corrected).describe(),
        Percentiles::of(&r.uncorrected).describe(),
    );
    s += &send_lag_line(&r.send_lag);
    if let (Some(m), true) = (r.usage.machine_cpu, r.echoes > 0) {
        s += &format!(
            "\n  cpu per echo: machine {:.2} µs",
            m.as_secs_f64() * 1e6 / r.echoes as f64
        );
    }
    s += &client_load_line(r.usage.client_cpu, r.usage.window);
    s += &waits_line(&r.usage.waits, r.usage.window);
    if r.unfinished > 0 {
        s += "\n  note: the rate was not kept (server or load generator saturated): \
              the corrected percentiles include the backlog";
    }
    s += &tcp_errors_line(&r.errors);
    s
}

fn udp_cmd(a: &UdpArgs) -> Result<bool> {
    let spec = a.spec()?;
    crate::net::probe_udp(spec.addr)?;
    let mode = match spec.rate {
        None => format!(
            "closed loop, {} sockets x {} in flight",
            spec.sockets, spec.window
        ),
        Some(r) => format!("open loop at {r:.0} datagrams/s, {} sockets", spec.sockets),
    };
    println!(
        "udp {}: {mode} x {} B, {} load thread(s), {:.1}s (+{:.1}s warm-up), timeout {:.0} ms",
        spec.addr,
        spec.size,
        spec.run.threads.min(spec.sockets),
        spec.run.duration.as_secs_f64(),
        spec.run.warmup.as_secs_f64(),
        spec.timeout.as_secs_f64() * 1e3
    );
    let r = udp::run(&spec)?;
    println!("{}", udp_report(&r));
    let c = r.counts;
    if c.loss_pct() > a.max_loss {
        println!(
            "  LOSS: {:.3}% of the datagrams, above --max-loss {}%",
            c.loss_pct(),
            a.max_loss
        );
    }
    Ok(c.errors() == 0 && c.echoes > 0 && c.loss_pct() <= a.max_loss)
}

/// The human-readable result lines of a UDP run (either mode).
pub fn udp_report(r: &udp::UdpResult) -> String {
    let c = r.counts;
    let secs = r.usage.window.as_secs_f64();
    let mut s = match &r.corrected {
        None => format!(
            "  {:.0} echoes/s, {:.2} MB/s; {} sent in the window, {} lost ({:.3}%), {} late\n  \
             latency {}",
            r.echoes_per_sec(),
            r.bytes as f64 / secs / 1e6,
            c.sent,
            c.lost,
            c.loss_pct(),
            c.late,
            Percentiles::of(&r.latency).describe()
        ),
        Some(corrected) => format!(
            "  {:.0} echoes/s of {:.0} scheduled; {} of {} due in the window lost ({:.3}%), \
             {} late{}\n  corrected   {}\n  uncorrected {}",
            r.echoes_per_sec(),
            c.sent as f64 / secs,
            c.lost,
            c.sent,
            c.loss_pct(),
            c.late,
            if c.unsent > 0 {
                format!(", {} not sent (client send buffer full)", c.unsent)
            } else {
                String::new()
            },
            Percentiles::of(corrected).describe(),
            Percentiles::of(&r.latency).describe()
        ),
    };
    if let Some(lag) = &r.send_lag {
        s += &send_lag_line(lag);
    }
    s += &cpu_per_echo_line(
        c.echoes,
        r.usage.machine_cpu,
        r.usage.client_cpu,
        r.usage.server_cpu,
    );
    s += &client_load_line(r.usage.client_cpu, r.usage.window);
    if r.io_errors > 0 {
        s += &format!("\n  {} socket calls failed", r.io_errors);
    }
    s += &if c.errors() == 0 {
        "\n  errors: none (every byte checked)".to_string()
    } else {
        format!(
            "\n  ERRORS: {} wrong bytes, {} duplicates",
            c.wrong, c.duplicate
        )
    };
    if c.echoes == 0 {
        s += "\n  ERROR: nothing came back in the measured window";
    }
    s
}

fn burst_cmd(a: &BurstArgs) -> Result<bool> {
    if !(a.timeout > 0.0 && a.timeout <= 3600.0) {
        crate::bail!("--timeout must be between 0 and 3600 seconds");
    }
    let addr = crate::net::resolve(&a.addr)?;
    burst::validate(a.threads, a.rounds)?;
    crate::net::probe_tcp(addr)?;
    println!(
        "burst {addr}: {} connections released at once, {} round(s), message {:?}",
        a.threads,
        a.rounds,
        String::from_utf8_lossy(burst::MESSAGE)
    );
    let r = burst::run(
        addr,
        a.threads,
        a.rounds,
        Duration::from_secs_f64(a.timeout),
    )?;
    println!("  response {}", Percentiles::of(&r.response).describe());
    let mut connect = hist::new_histogram();
    for s in &r.samples {
        hist::record(&mut connect, (s.connect_us * 1000.0) as u64);
    }
    println!("  connect  {}", Percentiles::of(&connect).describe());
    if let Some(path) = &a.csv {
        let rows: Vec<results::BurstRow> = r
            .samples
            .iter()
            .map(|s| results::BurstRow::of("server", s))
            .collect();
        export::csv::write(path, &rows)?;
        println!("  wrote {} rows to {}", rows.len(), path.display());
    }
    if r.errors > 0 {
        println!(
            "  ERRORS: {} connections failed (connect, wrong echo or timeout)",
            r.errors
        );
    }
    Ok(r.errors == 0)
}

fn throughput(a: &ThroughputArgs) -> Result<bool> {
    let spec = a.load.spec()?;
    crate::net::probe_tcp(spec.addr)?;
    println!("throughput {}: {}", spec.addr, LoadArgs::describe(&spec));
    let r = loadgen::run(&spec)?;
    println!("{}", report(&r));
    let row = all::to_row("server", &spec, &r);
    Ok(verdict(&row))
}

/// "\n  send lag (the load generator's own lateness): p50 … p99 … max …".
fn send_lag_line(lag: &hdrhistogram::Histogram<u64>) -> String {
    let lag = Percentiles::of(lag);
    format!(
        "\n  send lag (the load generator's own lateness): p50 {} p99 {} max {}",
        hist::format_us(lag.p50),
        hist::format_us(lag.p99),
        hist::format_us(lag.max)
    )
}

/// "\n  cpu per echo: machine 1.23 µs, client 0.45 µs[, server 0.67 µs]" over `echoes`
/// ("n/a" with no echo or no figure; the server only where there is a process).
fn cpu_per_echo_line(
    echoes: u64,
    machine: Option<Duration>,
    client: Duration,
    server: Option<Duration>,
) -> String {
    let per_echo = |d: Duration| {
        if echoes == 0 {
            "n/a".to_string()
        } else {
            format!("{:.2} µs", d.as_secs_f64() * 1e6 / echoes as f64)
        }
    };
    let mut s = format!(
        "\n  cpu per echo: machine {}, client {}",
        machine.map_or("n/a".into(), per_echo),
        per_echo(client)
    );
    if let Some(sc) = server {
        s += &format!(", server {}", per_echo(sc));
    }
    s
}

/// "\n  client load: 55% of one CPU" over the measured `window`.
fn client_load_line(client_cpu: Duration, window: Duration) -> String {
    format!(
        "\n  client load: {:.0}% of one CPU",
        client_cpu.as_secs_f64() / window.as_secs_f64() * 100.0
    )
}

/// "\n  errors: none (every byte checked)", or a TCP run's failures by kind.
fn tcp_errors_line(e: &loadgen::Errors) -> String {
    if e.failures() == 0 {
        "\n  errors: none (every byte checked)".to_string()
    } else {
        format!(
            "\n  ERRORS: {} connect, {} wrong bytes, {} closed by server",
            e.connect, e.mismatch, e.closed
        )
    }
}

/// "\n  waiting for a CPU: server 0.3%, load generator 1.2% of the window".
fn waits_line(w: &loadgen::Waits, window: Duration) -> String {
    let (server, client) = w.pct(window);
    let pct = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.1}%"));
    format!(
        "\n  waiting for a CPU: server {}, load generator {} of the window",
        pct(server),
        pct(client)
    )
}

/// The validity rule's line for a `bench` measurement, as bench-all judges the same
/// point; whether the run passes (no broken or missing echoes).
fn verdict(row: &impl Judged) -> bool {
    let why = row.reasons();
    if why.is_empty() {
        println!("  valid: every check of bench-all's validity rule passed");
    } else {
        println!("  INVALID: {}", validity::describe(&why));
    }
    if let Some(pct) = validity::client_bound(&row.observed()) {
        println!("  note: the load generator was the limit (client CPU {pct:.0}%)");
    }
    !row.failed()
}

/// The human-readable result lines.
pub fn report(r: &loadgen::LoadResult) -> String {
    let secs = r.usage.window.as_secs_f64();
    let mut s = format!(
        "  {:.0} echoes/s, {:.2} MB/s; latency {}",
        r.echoes as f64 / secs,
        r.bytes as f64 / secs / 1e6,
        Percentiles::of(&r.latency).describe(),
    );
    s += &cpu_per_echo_line(
        r.echoes,
        r.usage.machine_cpu,
        r.usage.client_cpu,
        r.usage.server_cpu,
    );
    s += &client_load_line(r.usage.client_cpu, r.usage.window);
    s += &waits_line(&r.usage.waits, r.usage.window);
    s += &tcp_errors_line(&r.errors);
    if r.errors.stalled > 0 {
        s += &format!(
            "\n  stalled: {} connections made no progress in the whole window",
            r.errors.stalled
        );
    }
    s
}
