//! `ringecho bench-all`: one run that measures every server side by side. It starts the
//! userspace servers itself (uring and epoll, one worker each, pinned to CPU 0), includes
//! the kernel module when something answers on its port, adds any `--server`, and runs
//! the plan's phases (`plan.rs`) against each server in turn, interleaved per point so
//! drift hits all servers alike, with the load generator pinned to the other CPUs:
//! throughput (closed loop), latency (open loop), the seed's burst, UDP both ways
//! (`all_udp.rs`), the target points repeated (`all_repeat.rs`), idle memory.
//!
//! Stages, as in hyperfine: run (this file and the phase files: each step returns a typed
//! row), export (`export/`: each phase's CSV as soon as it ends, then summary.md), output
//! (`plot.rs`'s charts, drawn from the files, and the console's verdict).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;

use super::all_repeat;
use super::export::{self, Results};
use super::hist::{format_us, Percentiles};
use super::loadgen::{self, LoadSpec, RunSpec};
use super::openloop::{self, OpenSpec};
use super::plan::{format_eta, Phase, Plan, Progress, ServerKind, Step, Work};
use super::plot::{self, OpenLoop, OpenTag};
use super::results::{self, BurstRow, LatencyRow, MemoryRow, ThroughputRow};
use super::servers::{self, Target};
use super::validity::{self, Judged};
use super::{hlog, machine, stop};
use crate::error::{Context, Error, Result};

/// `ringecho bench-all` flags.
#[derive(Debug, Clone, Args)]
pub struct BenchAllArgs {
    /// A small matrix with short points (about a minute); the default profile takes
    /// about ten.
    #[arg(long)]
    pub quick: bool,
    /// For the harness's own tests: `--quick`'s matrix with every point cut to a few
    /// hundred milliseconds, so that every phase, file and chart is checked end to end
    /// in half the time. Its figures are not measurements, so it is not in `--help`.
    #[arg(long, hide = true)]
    pub smoke: bool,
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

    /// `--smoke`: the quick matrix, each point a few hundred milliseconds.
    pub fn smoke() -> Profile {
        Profile {
            warmup: Duration::from_millis(100),
            secs: Duration::from_millis(300),
            latency_secs: Duration::from_millis(300),
            udp_warmup: Duration::from_millis(100),
            udp_secs: Duration::from_millis(200),
            ..Profile::new(true)
        }
    }
}

/// Per-server histogram logs being collected.
pub(super) type Logs = BTreeMap<String, Vec<hlog::Entry>>;

/// How a run ended, for the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every echo checked out.
    Passed,
    /// Some point saw broken echoes (wrong bytes, resets, failed connects) or none.
    Failed,
    /// Stopped by Ctrl-C; the finished phases are written.
    Interrupted,
}

/// Run the whole comparison: the plan's phases in order, each phase's files written as
/// soon as it ends; on Ctrl-C or an error, the finished phases are summarised and kept.
pub fn run(a: &BenchAllArgs) -> Result<Outcome> {
    let profile = if a.smoke {
        Profile::smoke()
    } else {
        Profile::new(a.quick)
    };
    if a.client_threads.is_some_and(|t| t == 0 || t > 64) {
        crate::bail!("--client-threads must be between 1 and 64");
    }
    if a.note.contains('\n') {
        crate::bail!("--note must be one line");
    }
    let outside = outside_servers(&a.servers)?;
    let only = only_list(a.only.as_deref(), &outside)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    export::clear(&a.out)?;
    // Before any thread starts (the servers' readers, the load threads), so that all of
    // them inherit the blocked signals.
    stop::install()?;
    for w in machine::environment_warnings(&profile, &a.client_cpus) {
        eprintln!("warning: {w}");
    }
    let targets = start_targets(a, &outside, only.as_deref())?;
    let kinds: Vec<ServerKind> = targets
        .iter()
        .map(|t| ServerKind {
            udp: t.udp.is_some(),
        })
        .collect();
    let plan = Plan::new(&profile, &kinds);
    let placement = format!(
        "servers pinned to CPU 0 (one worker); load generator: {} thread(s) on CPU(s) {:?}",
        a.client_threads.unwrap_or(a.client_cpus.len()),
        a.client_cpus
    );
    let meta = machine::metadata(&targets, &placement, &a.note);
    // Until the run ends, the metadata says it has not: a run killed outright still
    // leaves a directory that says what it is.
    export::write_text(
        &a.out,
        export::METADATA_TXT,
        &format!("{meta}incomplete: the run did not finish.\n"),
    )?;
    announce(a, &profile, &targets, &plan);
    let mut progress = Progress::new(&plan);
    let ctx = PhaseRunner {
        args: a,
        profile: &profile,
        run_start: Instant::now(),
    };
    let mut results = Results::default();
    let mut logs = Logs::new();
    let mut finished: Vec<Phase> = Vec::new();
    let mut broke: Option<(Phase, Error)> = None;
    'phases: for phase in Phase::ALL {
        if plan.count(phase) == 0 {
            continue;
        }
        if phase == Phase::Memory {
            // A server that died mid-run made every later point's errors: say so, with
            // its words, before measuring a fresh one.
            if let Some(e) = targets.iter().find_map(|t| t.check_alive().err()) {
                broke = Some((phase, e));
                break;
            }
        }
        for step in plan.of(phase) {
            if stop::requested() {
                break 'phases;
            }
            if let Err(e) = ctx.step(step, &targets, &mut results, &mut logs, &mut progress) {
                if !stop::requested() {
                    broke = Some((phase, e));
                }
                break 'phases;
            }
        }
        let files = write_phase(&a.out, phase, &results, &logs, &a.note)?;
        progress.say(&format!("  {} phase done: wrote {files}", phase.name()));
        finished.push(phase);
    }
    progress.done();
    drop(targets);
    let complete = finished.len() == Phase::ALL.iter().filter(|&&p| plan.count(p) > 0).count();
    let incomplete = (!complete).then(|| {
        let not_run: Vec<&str> = Phase::ALL
            .iter()
            .filter(|&&p| plan.count(p) > 0 && !finished.contains(&p))
            .map(|p| p.name())
            .collect();
        let how = match &broke {
            Some((phase, _)) => format!("stopped by an error in the {} phase", phase.name()),
            None => "interrupted".to_string(),
        };
        format!("{how}; not run or not finished: {}", not_run.join(", "))
    });
    let meta = match &incomplete {
        Some(why) => format!("{meta}incomplete: {why}.\n"),
        None => meta,
    };
    export::write_text(&a.out, export::METADATA_TXT, &meta)?;
    results.metadata = meta;
    if !results.is_empty() {
        plot::write_summary(&a.out, &results)?;
        let charts = plot::draw_everything(&a.out, &results)?;
        println!(
            "{}",
            fit(
                &format!(
                    "wrote {}/: the CSV files of {}, {}/*.hlog, summary.md, metadata.txt, {}",
                    a.out.display(),
                    count(finished.len(), "phase"),
                    export::HIST_DIR,
                    count(charts.len(), "chart")
                ),
                2
            )
        );
    }
    print_problems(&results);
    if finished.contains(&Phase::Repeated) {
        // Last, so that it is what a run ends with.
        print_verdict(&results.repeated);
    }
    if let Some((phase, e)) = broke {
        return Err(e.context(format!(
            "bench-all stopped in the {} phase; the finished phases are in {}/",
            phase.name(),
            a.out.display()
        )));
    }
    if let Some(why) = incomplete {
        println!(
            "{}",
            fit(
                &format!("bench-all: {why}; the finished phases are kept"),
                2
            )
        );
        return Ok(Outcome::Interrupted);
    }
    Ok(if any_failed(&results) {
        Outcome::Failed
    } else {
        Outcome::Passed
    })
}

/// Start the servers the run measures: ours, the module if it answers, the outside ones,
/// as `--only` picks.
fn start_targets(
    a: &BenchAllArgs,
    outside: &[(String, String)],
    only: Option<&[String]>,
) -> Result<Vec<Target>> {
    let runs = |name: &str| only.is_none_or(|l| l.iter().any(|n| n == name));
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
    for (name, command) in outside {
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
    Ok(targets)
}

/// The plan, in a few lines, before the first step.
fn announce(a: &BenchAllArgs, p: &Profile, targets: &[Target], plan: &Plan) {
    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    let rounds = p.repeat_rounds as usize;
    let repeated = plan.count(Phase::Repeated) / (targets.len() * rounds).max(1);
    println!(
        "bench-all: {} ({}), {} steps, about {}, writing to {}/\n  \
         TCP: {}, {}, a burst\n  UDP: {}, {}\n  repeated: {} x {}\n  \
         Ctrl-C stops after the step in progress and keeps the finished phases",
        count(targets.len(), "server"),
        names.join(", "),
        plan.steps.len(),
        format_eta(plan.secs()),
        a.out.display(),
        count(p.conns.len() * p.sizes.len(), "closed-loop point"),
        count(p.latency_percents.len(), "open-loop rate"),
        count(p.udp_sockets.len() * p.udp_sizes.len(), "closed-loop point"),
        count(p.udp_latency_percents.len(), "open-loop rate"),
        count(repeated, "target point"),
        count(rounds, "round"),
    );
}

/// Write `phase`'s files (and every histogram log so far); returns their names.
fn write_phase(dir: &Path, phase: Phase, r: &Results, logs: &Logs, note: &str) -> Result<String> {
    let name = r.write_phase(dir, phase)?;
    let hist_dir = dir.join(export::HIST_DIR);
    std::fs::create_dir_all(&hist_dir)
        .with_context(|| format!("creating {}", hist_dir.display()))?;
    for (server, entries) in logs {
        let comment = format!("ringecho bench-all: server {server}\n{note}");
        hlog::write(
            &hist_dir.join(format!("{server}.hlog")),
            comment.trim_end(),
            entries,
        )?;
    }
    Ok(if logs.is_empty() {
        name.to_string()
    } else {
        format!("{name}, {}/", export::HIST_DIR)
    })
}

/// Whether any point failed by the rule (broken or no echoes), the burst included.
fn any_failed(r: &Results) -> bool {
    r.throughput.iter().any(Judged::failed)
        || r.latency.iter().any(Judged::failed)
        || r.udp.iter().any(Judged::failed)
        || r.repeated.iter().any(Judged::failed)
        || r.burst_failed.iter().any(|(_, n)| *n > 0)
}

/// Every measurement the rule leaves out, one line each (with why).
fn print_problems(r: &Results) {
    let mut bad: Vec<String> = Vec::new();
    let mut note = |label: String, row: &dyn Fn() -> String| {
        let why = row();
        if !why.is_empty() {
            bad.push(format!("{label}: {why}"));
        }
    };
    for x in &r.throughput {
        note(
            format!("{} {} conns x {} B", x.server, x.conns, x.size),
            &|| validity::describe(&x.reasons()),
        );
    }
    for x in &r.latency {
        note(
            format!("{} open loop at {:.0}/s", x.server, x.rate),
            &|| validity::describe(&x.reasons()),
        );
    }
    for x in &r.udp {
        let point = if x.is_open() {
            format!(
                "open loop at {:.0}/s ({} sockets x {} B)",
                x.rate, x.sockets, x.size
            )
        } else {
            format!("{} sockets x {} B", x.sockets, x.size)
        };
        note(format!("{} UDP {point}", x.server), &|| {
            validity::describe(&x.reasons())
        });
    }
    for (server, n) in &r.burst_failed {
        note(format!("{server} burst"), &|| {
            if *n > 0 {
                format!("{n} connections FAILED (no echo)")
            } else {
                String::new()
            }
        });
    }
    for l in all_repeat::Analysis::of(&r.repeated).left_out {
        bad.push(format!(
            "{} {}, repeated round {}: left out: {}",
            l.server,
            l.point,
            l.round,
            validity::describe(&l.reasons)
        ));
    }
    if !bad.is_empty() {
        println!("points with problems (see summary.md):");
        for b in &bad {
            println!("{}", fit(&format!("  {b}"), 4));
        }
    }
}

/// The verdict, or why there is none.
fn print_verdict(rows: &[all_repeat::Measurement]) {
    if let Some(none) = all_repeat::no_baseline(rows) {
        println!("{}", fit(&format!("verdict: {none}"), 4));
        return;
    }
    for line in all_repeat::Analysis::of(rows).verdict().render(false) {
        println!("{}", fit(&line, 4));
    }
}

/// A measured row, its progress line, and its histograms.
pub(super) struct Measured<R> {
    pub(super) row: R,
    pub(super) line: String,
    pub(super) logs: Vec<hlog::Entry>,
}

impl<R: results::HasProblems> Measured<R> {
    /// Keep the row in `rows`; returns its line, its notes (the rule's reasons) and its
    /// histograms.
    fn keep(mut self, rows: &mut Vec<R>) -> (String, String, Vec<hlog::Entry>) {
        let notes = self.row.problems_mut().clone();
        rows.push(self.row);
        (self.line, notes, self.logs)
    }
}

/// What every phase needs.
pub(super) struct PhaseRunner<'a> {
    pub(super) args: &'a BenchAllArgs,
    pub(super) profile: &'a Profile,
    pub(super) run_start: Instant,
}

impl PhaseRunner<'_> {
    /// Load threads for a closed-loop point over `conns` connections (or sockets):
    /// `--client-threads`, else one per client CPU, never more than connections.
    pub(super) fn client_threads(&self, conns: usize) -> usize {
        let t = self
            .args
            .client_threads
            .unwrap_or(self.args.client_cpus.len());
        t.clamp(1, conns.max(1))
    }

    /// Load threads for an open-loop point over `conns` connections (or sockets): one per
    /// client CPU. Two threads sharing a CPU delay each other's scheduled sends, which the
    /// corrected latency would charge to the server.
    pub(super) fn open_threads(&self, conns: usize) -> usize {
        self.args.client_cpus.len().clamp(1, conns.max(1))
    }

    /// A TCP load against `t` at (conns, size), measured for `duration` from `threads`
    /// load threads after the profile's warm-up, its payload from `seed`.
    pub(super) fn load_spec(
        &self,
        t: &Target,
        (conns, size): (usize, usize),
        (duration, threads): (Duration, usize),
        seed: u64,
    ) -> LoadSpec {
        LoadSpec {
            addr: t.addr,
            conns,
            size,
            run: self.run_spec(t, (self.profile.warmup, duration), threads, seed),
        }
    }

    /// How a load against `t` runs: warm-up and measured time, threads on the client
    /// CPUs, the payload seed, and the server process whose CPU is read.
    pub(super) fn run_spec(
        &self,
        t: &Target,
        (warmup, duration): (Duration, Duration),
        threads: usize,
        seed: u64,
    ) -> RunSpec {
        RunSpec {
            warmup,
            duration,
            threads,
            cpus: self.args.client_cpus.clone(),
            seed,
            server_pid: t.pid(),
        }
    }

    /// Run `measure`; its result and when it began, from the start of the run (the
    /// histogram logs' time base).
    pub(super) fn timed<T>(&self, measure: impl FnOnce() -> Result<T>) -> Result<(Duration, T)> {
        let began = self.run_start.elapsed();
        Ok((began, measure()?))
    }

    /// Run `step` against its server, add its rows to `results` and its histograms to
    /// `logs`, and say how it went.
    fn step(
        &self,
        step: &Step,
        targets: &[Target],
        results: &mut Results,
        logs: &mut Logs,
        progress: &mut Progress,
    ) -> Result<()> {
        let t = targets
            .get(step.server)
            .ok_or_else(|| Error::msg("a step for a server that is not running"))?;
        let name = &t.name;
        let udp_addr = || {
            t.udp
                .ok_or_else(|| Error::msg(format!("{name} serves no UDP")))
        };
        let (line, notes, entries) = match step.work {
            Work::Closed { conns, size } => {
                progress.starting(format!("{name} {conns} conns x {size} B"));
                self.closed(t, conns, size)?.keep(&mut results.throughput)
            }
            Work::Open {
                conns,
                size,
                percent,
            } => {
                let rate = open_rate(&results.throughput, conns, size, percent);
                progress.starting(format!("{name} open loop at {rate:.0}/s"));
                let m = self.open(t, (conns, size, percent), rate)?;
                m.keep(&mut results.latency)
            }
            Work::Burst { threads, rounds } => {
                progress.starting(format!("{name} burst"));
                let (rows, failed, line, entry) = self.burst(t, threads, rounds)?;
                results.burst.extend(rows);
                results.burst_failed.push((name.clone(), failed));
                (line, String::new(), vec![entry])
            }
            Work::UdpClosed { sockets, size } => {
                progress.starting(format!("{name} UDP {sockets} sockets x {size} B"));
                let m = self.udp_closed(t, udp_addr()?, sockets, size)?;
                m.keep(&mut results.udp)
            }
            Work::UdpOpen {
                sockets,
                size,
                percent,
            } => {
                progress.starting(format!("{name} UDP open loop at {percent}%"));
                let m = self.udp_open(t, udp_addr()?, (sockets, size, percent), &results.udp)?;
                m.keep(&mut results.udp)
            }
            Work::Repeat {
                point,
                round,
                rounds,
            } => {
                let rate = if point.open {
                    open_rate(
                        &results.throughput,
                        point.conns,
                        point.size,
                        all_repeat::OPEN_PERCENT,
                    )
                } else {
                    0.0
                };
                progress.starting(format!("{name} repeated round {round}/{rounds}"));
                let (m, line) = self.repeat(t, &point, (round, rounds), rate)?;
                let notes = if m.problems.is_empty() {
                    String::new()
                } else {
                    format!("LEFT OUT: {}", m.problems)
                };
                results.repeated.push(m);
                (line, notes, Vec::new())
            }
            Work::Memory { conns } => {
                progress.starting(format!("{name} memory, {conns} idle connections"));
                let (rows, line) = self.memory(t, conns)?;
                results.memory.extend(rows);
                (line, String::new(), Vec::new())
            }
        };
        logs.entry(name.clone()).or_default().extend(entries);
        progress.finished(step, &line, &notes);
        Ok(())
    }

    /// Idle-connection memory of `t`: the RSS growth of a freshly started server with
    /// `conns` connections open and idle. Fresh, because a server that already held that
    /// many connections keeps the memory it grew for them, so RSS would not move; fewer
    /// connections would hide in RSS's page granularity. The module, which has no
    /// process, gets two rows in kernel memory instead (see `idle::run_kernel`).
    fn memory(&self, t: &Target, conns: usize) -> Result<(Vec<MemoryRow>, String)> {
        let settle = Duration::from_secs(1);
        if t.pid().is_none() {
            let (own, slab) = match super::idle::run_kernel(t.addr, conns, settle) {
                Ok(r) => r,
                Err(e) => {
                    return Ok((
                        Vec::new(),
                        format!("{:<6} memory not measured: {e}", t.name),
                    ))
                }
            };
            let rows: Vec<MemoryRow> = [
                ("module allocations", own),
                ("slab growth incl. both ends' sockets", slab),
            ]
            .into_iter()
            .map(|(label, r)| memory_row(&format!("{} (kernel memory: {label})", t.name), &r))
            .collect();
            let line = format!(
                "{:<6} {} idle: module {:.0} B, slab {:.0} B per connection",
                t.name, own.conns, rows[0].bytes_per_conn, rows[1].bytes_per_conn
            );
            return Ok((rows, line));
        }
        let fresh = match &t.command {
            Some(command) => servers::start_outside(&t.name, command)?,
            None => servers::start_server(&t.name)?,
        };
        let pid = fresh
            .pid()
            .ok_or_else(|| Error::msg("a server without a process"))?;
        let r = super::idle::run(fresh.addr, pid, conns, settle)?;
        let line = format!(
            "{:<6} {} idle: RSS {} -> {} KiB, {:.0} B per connection{}",
            t.name,
            r.conns,
            r.rss_before_kib,
            r.rss_after_kib,
            r.bytes_per_conn(),
            super::idle_failed(&r)
        );
        Ok((vec![memory_row(&t.name, &r)], line))
    }

    /// One closed-loop point against `t`.
    fn closed(&self, t: &Target, conns: usize, size: usize) -> Result<Measured<ThroughputRow>> {
        let p = self.profile;
        let threads = self.client_threads(conns);
        let spec = self.load_spec(
            t,
            (conns, size),
            (p.secs, threads),
            (conns * 31 + size) as u64,
        );
        let (began, r) = self.timed(|| loadgen::run(&spec))?;
        let row = to_row(&t.name, &spec, &r);
        let line = format!(
            "{:<6} {:>5} conns x {:>5} B: {:>7.0} echoes/s, p99 {:>7}",
            t.name,
            conns,
            size,
            row.echoes_per_sec,
            format_us(row.p99_us),
        );
        let logs = vec![hlog::Entry {
            tag: format!("throughput:c{conns}-s{size}"),
            start: began + p.warmup,
            length: p.secs,
            hist: r.latency,
        }];
        Ok(Measured { row, line, logs })
    }

    /// The open loop at `rate` (`pct`% of epoll's closed-loop peak at the point).
    fn open(
        &self,
        t: &Target,
        (conns, size, pct): (usize, usize, u32),
        rate: f64,
    ) -> Result<Measured<LatencyRow>> {
        let p = self.profile;
        let tag = OpenTag::new((conns, size, pct), rate);
        let spec = OpenSpec {
            load: self.load_spec(
                t,
                (conns, size),
                (p.latency_secs, self.open_threads(conns)),
                u64::from(pct) * 7919 + size as u64,
            ),
            rate,
        };
        let (began, r) = self.timed(|| openloop::run(&spec))?;
        let row = latency_row(&t.name, &spec, &r);
        let line = format!(
            "{:<6} open {rate:>6.0}/s ({pct}%): p99 {} (uncorr. {})",
            t.name,
            format_us(row.c_p99_us),
            format_us(row.u_p99_us),
        );
        let logs = open_logs(
            (OpenLoop::Tcp, &tag),
            (began + p.warmup, p.latency_secs),
            r.corrected,
            r.uncorrected,
        );
        Ok(Measured { row, line, logs })
    }

    /// The seed's burst against `t`: its rows, its line, its histogram.
    fn burst(
        &self,
        t: &Target,
        threads: usize,
        rounds: u32,
    ) -> Result<(Vec<BurstRow>, u64, String, hlog::Entry)> {
        let (began, r) =
            self.timed(|| super::burst::run(t.addr, threads, rounds, Duration::from_secs(10)))?;
        let p = Percentiles::of(&r.response);
        let line = format!(
            "{:<6} burst {} x {}: response p50 {}, p99 {}{}",
            t.name,
            threads,
            count(rounds as usize, "round"),
            format_us(p.p50),
            format_us(p.p99),
            if r.errors > 0 {
                format!(", {} FAILED connections", r.errors)
            } else {
                String::new()
            }
        );
        let entry = hlog::Entry {
            tag: format!("burst:n{threads}-r{rounds}"),
            start: began,
            length: self.run_start.elapsed().saturating_sub(began),
            hist: r.response.clone(),
        };
        let rows: Vec<BurstRow> = r.samples.iter().map(|s| BurstRow::of(&t.name, s)).collect();
        Ok((rows, r.errors, line, entry))
    }
}

/// An open-loop point's two histogram log entries, tagged as `point`'s `corrected` and
/// `uncorrected` histograms of loop `l`, over the window (start, length) of the run.
pub(super) fn open_logs(
    (l, point): (OpenLoop, &OpenTag),
    (start, length): (Duration, Duration),
    corrected: hdrhistogram::Histogram<u64>,
    uncorrected: hdrhistogram::Histogram<u64>,
) -> Vec<hlog::Entry> {
    [("corrected", corrected), ("uncorrected", uncorrected)]
        .into_iter()
        .map(|(kind, hist)| hlog::Entry {
            tag: point.tag(l, kind),
            start,
            length,
            hist,
        })
        .collect()
}

/// Epoll's figure among `at_point` (server, echoes/s), else the best server's, else
/// 10,000; never below 100: the peak an open-loop rate is a fraction of.
pub(super) fn peak_reference<'a>(at_point: impl Iterator<Item = (&'a str, f64)>) -> f64 {
    let v: Vec<(&str, f64)> = at_point.collect();
    v.iter()
        .find(|(s, _)| *s == "epoll")
        .or_else(|| v.iter().max_by(|a, b| a.1.total_cmp(&b.1)))
        .map_or(10_000.0, |r| r.1)
        .max(100.0)
}

/// `pct`% of `reference`, rounded to a hundred, at least 100.
pub(super) fn fraction_of(reference: f64, pct: u32) -> f64 {
    ((reference * f64::from(pct) / 100.0) / 100.0)
        .round()
        .max(1.0)
        * 100.0
}

/// The open-loop rate at `pct`% of the closed-loop peak at (conns, size) in `closed`.
fn open_rate(closed: &[ThroughputRow], conns: usize, size: usize, pct: u32) -> f64 {
    let at = closed
        .iter()
        .filter(|r| r.conns == conns as u64 && r.size == size as u64)
        .map(|r| (r.server.as_str(), r.echoes_per_sec));
    fraction_of(peak_reference(at), pct)
}

/// The result of the open loop `spec` as its row, judged.
pub(super) fn latency_row(server: &str, spec: &OpenSpec, r: &openloop::OpenResult) -> LatencyRow {
    let secs = r.usage.window.as_secs_f64();
    let mut row = LatencyRow {
        server: server.into(),
        conns: spec.load.conns as u64,
        size: spec.load.size as u64,
        rate: spec.rate,
        achieved: r.echoes as f64 / secs,
        scheduled: r.scheduled,
        unfinished: r.unfinished,
        machine_us_per_echo: r
            .usage
            .machine_cpu
            .map_or(f64::NAN, |m| m.as_secs_f64() * 1e6 / r.echoes.max(1) as f64),
        client_cpu_pct: r.usage.client_cpu.as_secs_f64() / secs * 100.0,
        lag_p99_us: {
            // No samples (every connection busy at its slot) is no figure, not 0.
            let lag = Percentiles::of(&r.send_lag);
            if lag.count > 0 {
                lag.p99
            } else {
                f64::NAN
            }
        },
        errors: r.errors.failures(),
        echoes: Some(r.echoes),
        server_wait_pct: r.usage.waits.pct(r.usage.window).0,
        client_wait_pct: r.usage.waits.pct(r.usage.window).1,
        problems: String::new(),
        ..LatencyRow::default()
    };
    row.set_latency(
        &Percentiles::of(&r.corrected),
        &Percentiles::of(&r.uncorrected),
    );
    results::judge(row)
}

fn memory_row(server: &str, r: &super::idle::IdleResult) -> MemoryRow {
    MemoryRow {
        server: server.into(),
        conns: r.conns as u64,
        rss_before_kib: r.rss_before_kib,
        rss_after_kib: r.rss_after_kib,
        bytes_per_conn: r.bytes_per_conn(),
    }
}

/// The result of the closed loop `spec` as its row, judged.
pub(super) fn to_row(server: &str, spec: &LoadSpec, r: &loadgen::LoadResult) -> ThroughputRow {
    let secs = r.usage.window.as_secs_f64();
    let per = |d: Option<Duration>| match d {
        Some(d) if r.echoes > 0 => d.as_secs_f64() * 1e6 / r.echoes as f64,
        _ => f64::NAN,
    };
    let p = Percentiles::of(&r.latency);
    results::judge(ThroughputRow {
        server: server.into(),
        workload: "throughput".into(),
        conns: spec.conns as u64,
        size: spec.size as u64,
        echoes_per_sec: r.echoes as f64 / secs,
        mb_per_sec: r.bytes as f64 / secs / 1e6,
        p50_us: p.p50,
        p90_us: p.p90,
        p99_us: p.p99,
        p999_us: p.p999,
        max_us: p.max,
        machine_us_per_echo: per(r.usage.machine_cpu),
        client_us_per_echo: per(Some(r.usage.client_cpu)),
        server_us_per_echo: per(r.usage.server_cpu),
        client_cpu_pct: r.usage.client_cpu.as_secs_f64() / secs * 100.0,
        errors: r.errors.failures(),
        stalled: r.errors.stalled,
        echoes: Some(r.echoes),
        load_threads: Some(spec.run.threads as u64),
        server_wait_pct: r.usage.waits.pct(r.usage.window).0,
        client_wait_pct: r.usage.waits.pct(r.usage.window).1,
        problems: String::new(),
    })
}

/// The console's line width: every line bench-all prints fits it.
const COLUMNS: usize = 80;

/// `line` wrapped at spaces to [`COLUMNS`], continuation lines indented by `indent`.
pub(super) fn fit(line: &str, indent: usize) -> String {
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

/// "1 open-loop rate", "3 open-loop rates".
pub(super) fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::{count, fit, fraction_of, peak_reference, COLUMNS};

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
    fn rates_are_fractions_of_epolls_peak() {
        let at = [("uring", 90_000.0), ("epoll", 71_234.0)];
        assert_eq!(peak_reference(at.into_iter()), 71_234.0);
        assert_eq!(
            peak_reference(at[..1].iter().copied()),
            90_000.0,
            "no epoll"
        );
        assert_eq!(
            peak_reference(std::iter::empty()),
            10_000.0,
            "nothing measured"
        );
        assert_eq!(
            peak_reference([("epoll", 3.0)].into_iter()),
            100.0,
            "a floor"
        );
        assert_eq!(fraction_of(71_234.0, 50), 35_600.0);
        assert_eq!(fraction_of(100.0, 1), 100.0, "at least 100");
    }

    #[test]
    fn counts_read_as_words() {
        assert_eq!(count(1, "open-loop rate"), "1 open-loop rate");
        assert_eq!(count(3, "open-loop rate"), "3 open-loop rates");
        assert_eq!(count(0, "chart"), "0 charts");
    }
}
