//! `ringecho bench-all`: one run that measures every server side by side. It starts the
//! userspace servers itself (uring and epoll, one worker each, pinned to CPU 0), includes
//! the kernel module when something answers on its port, and drives three workloads
//! against each server in turn (interleaved per point, so drift hits all servers alike)
//! with the load generator pinned to the other CPUs:
//!
//! 1. throughput: the closed-loop matrix of connections × message sizes;
//! 2. latency: open loop at fixed fractions of epoll's closed-loop peak;
//! 3. burst: the seed's N connections released at once;
//! 4. UDP (servers that serve it; not the module): closed-loop packets/s over client
//!    sockets × datagram sizes, then open loop at fractions of epoll's UDP peak
//!    (`all_udp.rs`).
//!
//! It writes CSV, HdrHistogram logs, a summary and the machine's metadata, then draws the
//! charts from those files (the same code `ringecho plot` runs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::all_repeat;
use super::hist::{format_us, Percentiles};
use super::loadgen::{self, LoadSpec};
use super::openloop::{self, OpenSpec};
use super::plot::{self, LatencyTag};
use super::results::{self, LatencyRow, Row};
use super::servers::{self, Target};
use super::{hlog, machine};
use crate::error::{Context, Error, Result};

/// `ringecho bench-all` flags.
#[derive(Debug, Clone, Args)]
pub struct BenchAllArgs {
    /// A small matrix with short points (about a minute); the default profile takes
    /// about ten.
    #[arg(long)]
    pub quick: bool,
    /// Where results go.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// The kernel module's address; included when something answers there.
    #[arg(long, default_value = "127.0.0.1:12345")]
    pub kmod: String,
    /// CPUs for the load generator's threads (the servers run on CPU 0).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub client_cpus: Vec<usize>,
    /// Load generator threads for the closed-loop matrix, each driving its share of the
    /// connections (default: one per client CPU; two threads sharing a CPU add the
    /// scheduler's time slices to the measured latency).
    #[arg(long)]
    pub client_threads: Option<usize>,
    /// A line drawn under every chart title and kept in metadata.txt, e.g. where the run
    /// was measured.
    #[arg(long, default_value = "")]
    pub note: String,
    /// An outside echo server to measure beside ours, `NAME=COMMAND` (repeatable):
    /// `sh -c COMMAND` with `{port}` replaced by a free TCP port, pinned to CPU 0.
    #[arg(long = "server", value_name = "NAME=COMMAND")]
    pub servers: Vec<String>,
    /// Which servers run, comma-separated (uring, epoll, kernel, outside names); default
    /// all. Ratios are to epoll, so without it there are none.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub only: Option<Vec<String>>,
}

/// Our servers' names, which outside servers may not take.
const OURS: [&str; 3] = ["uring", "epoll", "kernel"];

/// `--server` values as (name, command), checked: a label, unique, not one of ours,
/// and a command with `{port}` in it (else the harness could not know where it listens).
fn outside_servers(values: &[String]) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for v in values {
        let Some((name, command)) = v.split_once('=') else {
            crate::bail!("--server {v:?}: expected NAME=COMMAND");
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            crate::bail!("--server {name:?}: NAME must be letters, digits, '-' or '_'");
        }
        if OURS.contains(&name) {
            crate::bail!("--server {name}: the name is one of ours (uring, epoll, kernel)");
        }
        if out.iter().any(|(n, _)| n == name) {
            crate::bail!("--server {name}: the name is given twice");
        }
        if !command.contains("{port}") {
            crate::bail!("--server {name}: COMMAND must contain {{port}}, the port to listen on");
        }
        out.push((name.into(), command.into()));
    }
    Ok(out)
}

/// `--only`'s names, checked against the servers there are (none: every server runs).
fn only_list(only: Option<&[String]>, outside: &[(String, String)]) -> Result<Option<Vec<String>>> {
    let Some(list) = only else {
        return Ok(None);
    };
    for n in list {
        if !OURS.contains(&n.as_str()) && !outside.iter().any(|(o, _)| o == n) {
            crate::bail!("--only {n}: no such server (uring, epoll, kernel, or a --server NAME)");
        }
    }
    if list.is_empty() {
        crate::bail!("--only: name at least one server");
    }
    Ok(Some(list.to_vec()))
}

/// The matrix and timing of a run.
#[derive(Debug, Clone)]
pub struct Profile {
    pub conns: Vec<usize>,
    pub sizes: Vec<usize>,
    pub warmup: Duration,
    pub secs: Duration,
    /// Open loop: connections, message size, and rates as percentages of epoll's
    /// closed-loop echoes/s at that point.
    pub latency_conns: usize,
    pub latency_size: usize,
    pub latency_percents: Vec<u32>,
    pub latency_secs: Duration,
    /// Burst: connections released at once, and rounds.
    pub burst_threads: usize,
    pub burst_rounds: u32,
    /// UDP closed loop: client sockets × datagram sizes, each socket keeping
    /// `udp_window` datagrams in flight.
    pub udp_sockets: Vec<usize>,
    pub udp_sizes: Vec<usize>,
    pub udp_window: usize,
    /// UDP open loop: sockets, datagram size, and rates as percentages of epoll's UDP
    /// closed-loop echoes/s at that point.
    pub udp_latency_sockets: usize,
    pub udp_latency_size: usize,
    pub udp_latency_percents: Vec<u32>,
    /// UDP warm-up and measured time per point, both loops.
    pub udp_warmup: Duration,
    pub udp_secs: Duration,
    /// Rounds of the repeated phase (the target points measured again, interleaved).
    pub repeat_rounds: u32,
}

impl Profile {
    /// `--quick` or the default.
    pub fn new(quick: bool) -> Profile {
        if quick {
            Profile {
                conns: vec![1, 10, 100],
                sizes: vec![64, 4096],
                warmup: Duration::from_millis(300),
                secs: Duration::from_secs(1),
                latency_conns: 100,
                latency_size: 64,
                latency_percents: vec![50],
                latency_secs: Duration::from_secs(1),
                burst_threads: 100,
                burst_rounds: 2,
                udp_sockets: vec![1, 64],
                udp_sizes: vec![64, 1472],
                udp_window: super::UDP_WINDOW,
                udp_latency_sockets: 64,
                udp_latency_size: 64,
                udp_latency_percents: vec![50],
                udp_warmup: Duration::from_millis(200),
                udp_secs: Duration::from_millis(500),
                repeat_rounds: 2,
            }
        } else {
            Profile {
                conns: vec![1, 10, 100, 1000, 10000],
                sizes: vec![64, 512, 4096, 65536],
                warmup: Duration::from_secs(1),
                secs: Duration::from_secs(4),
                latency_conns: 100,
                latency_size: 64,
                latency_percents: vec![25, 50, 75],
                latency_secs: Duration::from_secs(5),
                burst_threads: 1000,
                burst_rounds: 10,
                udp_sockets: vec![1, 8, 64],
                udp_sizes: vec![64, 1472],
                udp_window: super::UDP_WINDOW,
                udp_latency_sockets: 64,
                udp_latency_size: 64,
                udp_latency_percents: vec![25, 50, 75],
                udp_warmup: Duration::from_secs(1),
                udp_secs: Duration::from_secs(4),
                repeat_rounds: 7,
            }
        }
    }

    /// Planned seconds of each kind of step, for the progress bar and its ETA.
    fn step_secs(&self) -> (f64, f64, f64) {
        let throughput = (self.warmup + self.secs).as_secs_f64() + 0.1;
        let latency = (self.warmup + self.latency_secs).as_secs_f64() + 0.2;
        let burst = 0.5 * f64::from(self.burst_rounds);
        (throughput, latency, burst)
    }

    /// Planned seconds of a repeated closed-loop and open-loop step (as in their phases).
    pub(super) fn repeat_step_secs(&self) -> (f64, f64) {
        let (closed, open, _) = self.step_secs();
        (closed, open)
    }

    /// Planned seconds of a UDP closed-loop and a UDP open-loop step (a lossy point may
    /// take up to one timeout longer).
    pub(super) fn udp_step_secs(&self) -> (f64, f64) {
        let step = (self.udp_warmup + self.udp_secs).as_secs_f64();
        (step + 0.1, step + 0.2)
    }

    /// The UDP closed-loop points, (sockets, size), size-major like the TCP matrix.
    pub(super) fn udp_points(&self) -> Vec<(usize, usize)> {
        self.udp_sizes
            .iter()
            .flat_map(|&b| self.udp_sockets.iter().map(move |&s| (s, b)))
            .collect()
    }
}

/// A progress bar over the run's planned seconds (on a terminal), plus one plain line per
/// finished step with an ETA (always, so logs show progress too). The ETA is ours alone:
/// the bar shows none, since indicatif's own estimate, from the bar's recent speed,
/// disagreed with the line's.
pub(super) struct Progress {
    bar: ProgressBar,
    started: Instant,
    planned_total: f64,
    planned_done: f64,
    step: usize,
    steps: usize,
}

impl Progress {
    fn new(steps: usize, planned_total: f64) -> Progress {
        let bar = ProgressBar::new((planned_total * 1000.0) as u64);
        // The template is a constant that indicatif parses; a failure would only lose
        // the bar's layout, so fall back to the default style.
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] [{bar:24}] {percent:>3}% {msg}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress {
            bar,
            started: Instant::now(),
            planned_total,
            planned_done: 0.0,
            step: 0,
            steps,
        }
    }

    /// Say what runs next.
    pub(super) fn starting(&self, what: String) {
        self.bar.set_message(what);
    }

    /// A step of `planned` seconds finished with result `line`.
    pub(super) fn finished(&mut self, planned: f64, line: &str) {
        self.finished_noting(planned, line, "");
    }

    /// As `finished`, with what went wrong at the point (", 3 ERRORS ..." as `problems`
    /// writes it, or "") on an indented line of its own, so the result line stays short.
    pub(super) fn finished_noting(&mut self, planned: f64, line: &str, notes: &str) {
        self.step += 1;
        self.planned_done += planned;
        self.bar.set_position((self.planned_done * 1000.0) as u64);
        // Remaining planned time, scaled by how far reality ran from the plan so far.
        let pace = self.started.elapsed().as_secs_f64() / self.planned_done.max(1e-9);
        let eta = (self.planned_total - self.planned_done).max(0.0) * pace;
        let width = self.steps.to_string().len();
        let text = format!(
            "[{:>width$}/{}] {line}  eta {}",
            self.step,
            self.steps,
            format_eta(eta)
        );
        let notes = notes.trim_start_matches(", ");
        let indent = 2 * width + 4;
        self.bar.suspend(|| {
            println!("{text}");
            if !notes.is_empty() {
                println!("{:indent$}{notes}", "");
            }
        });
    }

    fn done(&self) {
        self.bar.finish_and_clear();
    }
}

/// "42s", "7m05s", "1h02m": a countdown as short as its size allows.
fn format_eta(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// "1 open-loop rate", "3 open-loop rates".
pub(super) fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// Per-server histogram logs being collected.
pub(super) type Logs = BTreeMap<String, Vec<hlog::Entry>>;

/// Run the whole comparison; Ok(false) if any point saw errors.
pub fn run(a: &BenchAllArgs) -> Result<bool> {
    let profile = Profile::new(a.quick);
    if a.client_threads.is_some_and(|t| t == 0 || t > 64) {
        crate::bail!("--client-threads must be between 1 and 64");
    }
    if a.note.contains('\n') {
        crate::bail!("--note must be one line");
    }
    let outside = outside_servers(&a.servers)?;
    let only = only_list(a.only.as_deref(), &outside)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    for w in machine::environment_warnings(&profile, &a.client_cpus) {
        eprintln!("warning: {w}");
    }
    let runs = |name: &str| only.as_ref().is_none_or(|l| l.iter().any(|n| n == name));
    let mut targets = Vec::new();
    for engine in ["uring", "epoll"] {
        if runs(engine) {
            targets.push(servers::start_server(engine)?);
        }
    }
    if runs("kernel") {
        match servers::kmod_target(&a.kmod) {
            Some(t) => targets.push(t),
            None => eprintln!(
                "{}",
                fit(
                    &format!(
                        "kernel module: nothing answers on {}; comparing the userspace \
                         servers only (load it with `just load-kmod`, or see \
                         kernel/README.md)",
                        a.kmod
                    ),
                    2
                )
            ),
        }
    }
    for (name, command) in &outside {
        if runs(name) {
            targets.push(servers::start_outside(name, command)?);
        }
    }
    if targets.is_empty() {
        crate::bail!("--only: none of its servers runs here (is the module loaded?)");
    }
    if !runs("epoll") {
        // The ratios are to epoll, and nothing else stands in for it: a ratio to another
        // server would read as one to the baseline.
        eprintln!(
            "{}",
            fit(
                "--only leaves epoll out: no ratios and no verdict; open-loop rates are \
                 fractions of the fastest server's closed-loop peak at their point",
                2
            )
        );
    }
    let points: Vec<(usize, usize)> = profile
        .sizes
        .iter()
        .flat_map(|&s| profile.conns.iter().map(move |&c| (c, s)))
        .collect();
    let n = targets.len();
    let n_udp = targets.iter().filter(|t| t.udp.is_some()).count();
    let udp_points = profile.udp_points();
    let (t_secs, l_secs, b_secs) = profile.step_secs();
    let (ut_secs, ul_secs) = profile.udp_step_secs();
    // The repeated points' rates come from the latency phase; their number is known now.
    let planned_repeats = all_repeat::points(
        &profile.conns,
        &profile.sizes,
        &profile.latency_percents,
        &vec![0.0; profile.latency_percents.len()],
    );
    let rep_open = planned_repeats.iter().filter(|p| p.open).count();
    let rep_closed = planned_repeats.len() - rep_open;
    let rounds = profile.repeat_rounds as usize;
    let steps = n * (points.len() + profile.latency_percents.len() + 1)
        + n_udp * (udp_points.len() + profile.udp_latency_percents.len())
        + n * rounds * planned_repeats.len();
    let planned = n as f64
        * (points.len() as f64 * t_secs + profile.latency_percents.len() as f64 * l_secs + b_secs)
        + n_udp as f64
            * (udp_points.len() as f64 * ut_secs
                + profile.udp_latency_percents.len() as f64 * ul_secs)
        + (n * rounds) as f64 * (rep_closed as f64 * t_secs + rep_open as f64 * l_secs);
    println!(
        "bench-all: {} ({}), about {}, writing to {}/\n  \
         TCP: {}, {}, a burst\n  UDP: {}, {}\n  repeated: {} x {}",
        count(n, "server"),
        targets
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        format_eta(planned),
        a.out.display(),
        count(points.len(), "closed-loop point"),
        count(profile.latency_percents.len(), "open-loop rate"),
        count(udp_points.len(), "closed-loop point"),
        count(profile.udp_latency_percents.len(), "open-loop rate"),
        count(planned_repeats.len(), "target point"),
        count(rounds, "round"),
    );
    let mut progress = Progress::new(steps, planned);
    let mut logs = Logs::new();
    let run_start = Instant::now();
    let ctx = Ctx {
        args: a,
        profile: &profile,
        run_start,
    };
    let rows = ctx.throughput(&targets, &points, &mut progress, &mut logs)?;
    let lat_rows = ctx.latency(&targets, &rows, &mut progress, &mut logs)?;
    let (burst_rows, burst_errors) = ctx.burst(&targets, &mut progress, &mut logs)?;
    let mut udp_rows = ctx.udp(&targets, &udp_points, &mut progress, &mut logs)?;
    udp_rows.extend(ctx.udp_latency(&targets, &udp_rows, &mut progress, &mut logs)?);
    let repeat_points = all_repeat::points(
        &profile.conns,
        &profile.sizes,
        &profile.latency_percents,
        &all_repeat::latency_rates(&lat_rows),
    );
    let repeated = ctx.repeated(
        &targets,
        &repeat_points,
        profile.repeat_rounds,
        &mut progress,
    )?;
    progress.done();
    // A server that died mid-run made every later point's errors: say so, with its words.
    for t in &targets {
        t.check_alive()?;
    }
    let memory = ctx.memory(&targets)?;

    let placement = format!(
        "servers pinned to CPU 0 (one worker); load generator: {} thread(s) on CPU(s) {:?}",
        a.client_threads.unwrap_or(a.client_cpus.len()),
        a.client_cpus
    );
    let meta = machine::metadata(&targets, &placement, &a.note);
    drop(targets);
    results::write_csv(&a.out, &rows)?;
    write(
        &a.out.join("latency.csv"),
        &results::latency_to_csv(&lat_rows),
    )?;
    write(
        &a.out.join("burst.csv"),
        &results::burst_to_csv(&burst_rows),
    )?;
    write(&a.out.join(plot::UDP_CSV), &results::udp_to_csv(&udp_rows))?;
    write(&a.out.join(plot::MEMORY_CSV), &memory)?;
    write(&a.out.join(all_repeat::REPEATED_CSV), &repeated)?;
    write(&a.out.join("metadata.txt"), &meta)?;
    let hist_dir = a.out.join(plot::HIST_DIR);
    std::fs::create_dir_all(&hist_dir)
        .with_context(|| format!("creating {}", hist_dir.display()))?;
    for (server, entries) in &logs {
        let comment = format!("ringecho bench-all: server {server}\n{}", a.note);
        hlog::write(
            &hist_dir.join(format!("{server}.hlog")),
            comment.trim_end(),
            entries,
        )?;
    }
    plot::write_summary(&a.out)?;
    let charts = plot::draw_everything(&a.out)?;
    println!(
        "wrote {}/: 6 CSV files, {}/*.hlog, summary.md, metadata.txt, {}",
        a.out.display(),
        plot::HIST_DIR,
        count(charts.len(), "chart")
    );
    let mut bad: Vec<String> = rows
        .iter()
        .filter(|r| r.errors > 0 || r.stalled > 0 || r.echoes_per_sec == 0.0)
        .map(|r| {
            format!(
                "{} {} conns x {} B: {}",
                r.server,
                r.conns,
                r.size,
                problems(r).trim_start_matches(", ")
            )
        })
        .collect();
    bad.extend(
        lat_rows
            .iter()
            .filter(|r| r.errors > 0 || r.unfinished > 0 || !saturation(r).is_empty())
            .map(|r| {
                format!(
                    "{} open loop at {:.0}/s: {} errors, {} of {} messages unfinished{}",
                    r.server,
                    r.rate,
                    r.errors,
                    r.unfinished,
                    r.scheduled,
                    saturation(r)
                )
            }),
    );
    bad.extend(
        udp_rows
            .iter()
            .filter(|r| !super::all_udp::problems(r).is_empty())
            .map(|r| {
                format!(
                    "{} UDP {}: {}",
                    r.server,
                    super::all_udp::point(r),
                    super::all_udp::problems(r).trim_start_matches(", ")
                )
            }),
    );
    let measured = all_repeat::parse(&repeated).context(all_repeat::REPEATED_CSV)?;
    let analysis = all_repeat::Analysis::of(&measured);
    bad.extend(analysis.left_out.iter().map(|l| {
        let why: Vec<String> = l.reasons.iter().map(ToString::to_string).collect();
        format!(
            "{} {}, repeated round {}: left out: {}",
            l.server,
            l.point,
            l.round,
            why.join("; ")
        )
    }));
    if !bad.is_empty() {
        println!("points with problems (see summary.md):");
        for b in &bad {
            println!("{}", fit(&format!("  {b}"), 4));
        }
    }
    // Last, so that it is what a run ends with.
    let verdict = analysis.verdict();
    for line in verdict.render(false) {
        println!("{}", fit(&line, 4));
    }
    if let Some(none) = all_repeat::no_baseline(&measured) {
        println!("{}", fit(&format!("verdict: {none}"), 4));
    }
    // Wrong bytes, resets and failed connects are failures, and so is a UDP point that
    // got nothing back; starvation, a rate not kept and UDP loss are results about the
    // server. So is an undecided target point: the verdict says so, and which rounds were
    // left out and why, but a busy host is not a failed run (the Quick start's first
    // command, and the VM run, whose open loop is always harness-bound, must not fail on
    // it).
    Ok(rows.iter().all(|r| r.errors == 0)
        && lat_rows.iter().all(|r| r.errors == 0)
        && burst_errors == 0
        && udp_rows
            .iter()
            .all(|r| r.errors == 0 && r.echoes_per_sec > 0.0))
}

/// What every phase needs.
pub(super) struct Ctx<'a> {
    pub(super) args: &'a BenchAllArgs,
    pub(super) profile: &'a Profile,
    pub(super) run_start: Instant,
}

impl Ctx<'_> {
    /// Load threads for a closed-loop point of `conns` connections.
    pub(super) fn client_threads(&self, conns: usize) -> usize {
        let t = self
            .args
            .client_threads
            .unwrap_or(self.args.client_cpus.len());
        t.clamp(1, conns.max(1))
    }

    /// Memory: the RSS growth of a freshly started server of each process target's engine
    /// with 10,000 connections (or the profile's largest count, if more) open and idle;
    /// returns `memory.csv`'s text. Fresh, because a server that already held that many
    /// connections keeps the memory it grew for them, so RSS would not move. Fewer
    /// connections would hide in RSS's page granularity. The module, which has no
    /// process, gets two rows in kernel memory instead (see `idle::run_kernel`).
    fn memory(&self, targets: &[Target]) -> Result<String> {
        let conns = self
            .profile
            .conns
            .iter()
            .copied()
            .max()
            .unwrap_or(0)
            .max(10_000);
        let mut csv = String::from("server,conns,rss_before_kib,rss_after_kib,bytes_per_conn\n");
        for t in targets.iter().filter(|t| t.pid().is_some()) {
            let fresh = match &t.command {
                Some(command) => servers::start_outside(&t.name, command)?,
                None => servers::start_server(&t.name)?,
            };
            let pid = fresh
                .pid()
                .ok_or_else(|| Error::msg("a server without a process"))?;
            let r = super::idle::run(fresh.addr, pid, conns, Duration::from_secs(1))?;
            println!(
                "memory {:<6} {} idle: RSS {} -> {} KiB, {:.0} B per connection{}",
                t.name,
                r.conns,
                r.rss_before_kib,
                r.rss_after_kib,
                r.bytes_per_conn(),
                if r.failed > 0 {
                    format!(" ({} failed to connect)", r.failed)
                } else {
                    String::new()
                }
            );
            csv += &format!(
                "{},{},{},{},{:.1}\n",
                t.name,
                r.conns,
                r.rss_before_kib,
                r.rss_after_kib,
                r.bytes_per_conn()
            );
        }
        for t in targets.iter().filter(|t| t.pid().is_none()) {
            let (own, slab) = match super::idle::run_kernel(t.addr, conns, Duration::from_secs(1)) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("memory {}: not measured: {e}", t.name);
                    continue;
                }
            };
            for (label, r) in [
                ("module allocations", own),
                ("slab growth incl. both ends' sockets", slab),
            ] {
                let line = format!(
                    "memory {:<6} {} idle: kernel memory ({label}) {} -> {} KiB, {:.0} B per \
                     connection",
                    t.name,
                    r.conns,
                    r.rss_before_kib,
                    r.rss_after_kib,
                    r.bytes_per_conn()
                );
                println!("{}", fit(&line, 4));
                csv += &format!(
                    "{} (kernel memory: {label}),{},{},{},{:.1}\n",
                    t.name,
                    r.conns,
                    r.rss_before_kib,
                    r.rss_after_kib,
                    r.bytes_per_conn()
                );
            }
        }
        Ok(csv)
    }

    /// The closed-loop matrix.
    fn throughput(
        &self,
        targets: &[Target],
        points: &[(usize, usize)],
        progress: &mut Progress,
        logs: &mut Logs,
    ) -> Result<Vec<Row>> {
        let p = self.profile;
        let mut rows = Vec::new();
        for &(conns, size) in points {
            for t in targets {
                progress.starting(format!("{} {conns} conns x {size} B", t.name));
                let spec = LoadSpec {
                    addr: t.addr,
                    conns,
                    size,
                    warmup: p.warmup,
                    duration: p.secs,
                    threads: self.client_threads(conns),
                    cpus: self.args.client_cpus.clone(),
                    seed: (conns * 31 + size) as u64,
                    server_pid: t.pid(),
                };
                let began = self.run_start.elapsed();
                let r = loadgen::run(&spec)?;
                let row = to_row(&t.name, conns, size, &r);
                progress.finished_noting(
                    p.step_secs().0,
                    &format!(
                        "{:<6} {:>5} conns x {:>5} B: {:>7.0} echoes/s, p99 {:>7}",
                        t.name,
                        conns,
                        size,
                        row.echoes_per_sec,
                        format_us(row.p99_us),
                    ),
                    &problems(&row),
                );
                logs.entry(t.name.clone()).or_default().push(hlog::Entry {
                    tag: format!("throughput:c{conns}-s{size}"),
                    start: began + p.warmup,
                    length: p.secs,
                    hist: r.latency,
                });
                rows.push(row);
            }
        }
        Ok(rows)
    }

    /// Open loop at fractions of epoll's closed-loop peak at the latency point.
    fn latency(
        &self,
        targets: &[Target],
        rows: &[Row],
        progress: &mut Progress,
        logs: &mut Logs,
    ) -> Result<Vec<LatencyRow>> {
        let p = self.profile;
        let (conns, size) = (p.latency_conns, p.latency_size);
        let at_point = |r: &&Row| r.conns == conns as u64 && r.size == size as u64;
        let reference = rows
            .iter()
            .filter(at_point)
            .find(|r| r.server == "epoll")
            .or_else(|| {
                rows.iter()
                    .filter(at_point)
                    .max_by(|a, b| a.echoes_per_sec.total_cmp(&b.echoes_per_sec))
            })
            .map_or(10_000.0, |r| r.echoes_per_sec)
            .max(100.0);
        let mut out = Vec::new();
        for &pct in &p.latency_percents {
            let rate = ((reference * f64::from(pct) / 100.0) / 100.0)
                .round()
                .max(1.0)
                * 100.0;
            let tag = LatencyTag {
                fraction: pct,
                rate: rate as u64,
                conns: conns as u64,
                size: size as u64,
            };
            for t in targets {
                progress.starting(format!("{} open loop at {rate:.0}/s", t.name));
                let spec = OpenSpec {
                    load: LoadSpec {
                        addr: t.addr,
                        conns,
                        size,
                        warmup: p.warmup,
                        duration: p.latency_secs,
                        // One thread per client CPU: two threads sharing a CPU delay each
                        // other's scheduled sends, which the corrected latency would
                        // charge to the server.
                        threads: self.args.client_cpus.len().clamp(1, conns),
                        cpus: self.args.client_cpus.clone(),
                        seed: u64::from(pct) * 7919 + size as u64,
                        server_pid: t.pid(),
                    },
                    rate,
                };
                let began = self.run_start.elapsed();
                let r = openloop::run(&spec)?;
                let secs = r.window.as_secs_f64();
                let row = LatencyRow {
                    server: t.name.clone(),
                    conns: conns as u64,
                    size: size as u64,
                    rate,
                    achieved: r.echoes as f64 / secs,
                    scheduled: r.scheduled,
                    unfinished: r.unfinished,
                    corrected: Percentiles::of(&r.corrected),
                    uncorrected: Percentiles::of(&r.uncorrected),
                    machine_us_per_echo: r
                        .machine_cpu
                        .map_or(f64::NAN, |m| m.as_secs_f64() * 1e6 / r.echoes.max(1) as f64),
                    client_cpu_pct: r.client_cpu.as_secs_f64() / secs * 100.0,
                    lag_p99_us: Percentiles::of(&r.send_lag).p99,
                    errors: r.errors.total(),
                };
                progress.finished_noting(
                    p.step_secs().1,
                    &format!(
                        "{:<6} open {rate:>6.0}/s ({pct}%): p99 {} (uncorr. {})",
                        t.name,
                        format_us(row.corrected.p99),
                        format_us(row.uncorrected.p99),
                    ),
                    &format!(
                        "{}{}{}",
                        if row.unfinished > 0 {
                            format!(", rate not kept ({} unfinished)", row.unfinished)
                        } else {
                            String::new()
                        },
                        if row.errors > 0 {
                            format!(", {} ERRORS", row.errors)
                        } else {
                            String::new()
                        },
                        saturation(&row)
                    ),
                );
                let log = logs.entry(t.name.clone()).or_default();
                for (kind, h) in [("corrected", r.corrected), ("uncorrected", r.uncorrected)] {
                    log.push(hlog::Entry {
                        tag: tag.tag(kind),
                        start: began + p.warmup,
                        length: p.latency_secs,
                        hist: h,
                    });
                }
                out.push(row);
            }
        }
        Ok(out)
    }

    /// The seed's burst against each server.
    fn burst(
        &self,
        targets: &[Target],
        progress: &mut Progress,
        logs: &mut Logs,
    ) -> Result<(Vec<(String, super::burst::Sample)>, u64)> {
        let p = self.profile;
        let (mut samples, mut errors) = (Vec::new(), 0);
        for t in targets {
            progress.starting(format!("{} burst", t.name));
            let began = self.run_start.elapsed();
            let r = super::burst::run(
                t.addr,
                p.burst_threads,
                p.burst_rounds,
                Duration::from_secs(10),
            )?;
            progress.finished(
                p.step_secs().2,
                &format!(
                    "{:<6} burst {} x {}: response p50 {}, p99 {}{}",
                    t.name,
                    p.burst_threads,
                    count(p.burst_rounds as usize, "round"),
                    format_us(Percentiles::of(&r.response).p50),
                    format_us(Percentiles::of(&r.response).p99),
                    if r.errors > 0 {
                        format!(", {} FAILED connections", r.errors)
                    } else {
                        String::new()
                    }
                ),
            );
            logs.entry(t.name.clone()).or_default().push(hlog::Entry {
                tag: format!("burst:n{}-r{}", p.burst_threads, p.burst_rounds),
                start: began,
                length: self.run_start.elapsed().saturating_sub(began),
                hist: r.response.clone(),
            });
            errors += r.errors;
            samples.extend(r.samples.into_iter().map(|s| (t.name.clone(), s)));
        }
        Ok((samples, errors))
    }
}

/// Above this send-lag p99 the load generator, not the server, set the pace.
pub(super) const LAG_SATURATED_US: f64 = 100.0;

/// ", load generator behind ..." when the open-loop client could not keep its own
/// schedule, or "".
fn saturation(r: &LatencyRow) -> String {
    if r.lag_p99_us > LAG_SATURATED_US {
        format!(
            ", load generator behind (send lag p99 {}): measures the harness",
            format_us(r.lag_p99_us)
        )
    } else {
        String::new()
    }
}

/// ", 3 ERRORS (wrong bytes/closed/connect), 12 stalled connections" or "".
fn problems(r: &Row) -> String {
    let mut s = String::new();
    if r.errors > 0 {
        s += &format!(
            ", {} ERRORS (wrong bytes, resets or failed connects)",
            r.errors
        );
    }
    if r.stalled > 0 {
        s += &format!(", {} connections starved for the whole window", r.stalled);
    }
    if r.echoes_per_sec == 0.0 {
        s += ", no echo completed";
    }
    s
}

pub(super) fn to_row(server: &str, conns: usize, size: usize, r: &loadgen::LoadResult) -> Row {
    let secs = r.window.as_secs_f64();
    let per = |d: Option<Duration>| match d {
        Some(d) if r.echoes > 0 => d.as_secs_f64() * 1e6 / r.echoes as f64,
        _ => f64::NAN,
    };
    let p = Percentiles::of(&r.latency);
    Row {
        server: server.into(),
        workload: "throughput".into(),
        conns: conns as u64,
        size: size as u64,
        echoes_per_sec: r.echoes as f64 / secs,
        mb_per_sec: r.bytes as f64 / secs / 1e6,
        p50_us: p.p50,
        p90_us: p.p90,
        p99_us: p.p99,
        p999_us: p.p999,
        max_us: p.max,
        machine_us_per_echo: per(r.machine_cpu),
        client_us_per_echo: per(Some(r.client_cpu)),
        server_us_per_echo: per(r.server_cpu),
        client_cpu_pct: r.client_cpu.as_secs_f64() / secs * 100.0,
        errors: r.errors.connect + r.errors.mismatch + r.errors.closed,
        stalled: r.errors.stalled,
    }
}

/// The console's line width: every line bench-all prints fits it.
const COLUMNS: usize = 80;

/// `line` wrapped at spaces to [`COLUMNS`], continuation lines indented by `indent`.
fn fit(line: &str, indent: usize) -> String {
    let mut out = String::new();
    let mut width = 0;
    for (i, word) in line.split(' ').enumerate() {
        let w = word.chars().count();
        if i > 0 {
            if width > indent && width + 1 + w > COLUMNS {
                out.push('\n');
                out.push_str(&" ".repeat(indent));
                width = indent;
            } else {
                out.push(' ');
                width += 1;
            }
        }
        out.push_str(word);
        width += w;
    }
    out
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::{count, fit, format_eta, COLUMNS};

    #[test]
    fn long_lines_wrap_at_spaces_with_an_indent() {
        let long = format!("  {}", ["word"; 40].join(" "));
        let wrapped = fit(&long, 4);
        let lines: Vec<&str> = wrapped.lines().collect();
        assert!(lines.len() > 1, "{wrapped}");
        assert!(
            lines.iter().all(|l| l.chars().count() <= COLUMNS),
            "{wrapped}"
        );
        assert!(lines[0].starts_with("  word"), "{wrapped}");
        assert!(
            lines[1..].iter().all(|l| l.starts_with("    word")),
            "{wrapped}"
        );
        assert_eq!(wrapped.replace("\n    ", " "), long, "nothing lost");
        assert_eq!(fit("short line", 4), "short line");
    }

    #[test]
    fn eta_and_counts_read_as_words() {
        assert_eq!(format_eta(-3.0), "0s");
        assert_eq!(format_eta(42.4), "42s");
        assert_eq!(format_eta(59.6), "1m00s");
        assert_eq!(format_eta(462.0), "7m42s");
        assert_eq!(format_eta(3725.0), "1h02m");
        assert_eq!(count(1, "open-loop rate"), "1 open-loop rate");
        assert_eq!(count(3, "open-loop rate"), "3 open-loop rates");
        assert_eq!(count(0, "chart"), "0 charts");
    }
}
