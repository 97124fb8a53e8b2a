//! `ringecho bench-all`: one run that measures every server side by side. It starts the
//! userspace servers itself (uring and epoll, one worker each, pinned to CPU 0), includes
//! the kernel module when something answers on its port, drives each matrix point against
//! each server in turn (interleaved, so drift hits all servers alike) with the load
//! generator pinned to the other CPUs, and writes CSV, charts, a summary and the machine's
//! metadata.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Args;

use super::chart;
use super::hist::Percentiles;
use super::loadgen::{self, LoadSpec};
use super::results::{self, Row};
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
}

/// The matrix and timing of a run.
#[derive(Debug, Clone)]
pub struct Profile {
    pub conns: Vec<usize>,
    pub sizes: Vec<usize>,
    pub warmup: Duration,
    pub secs: Duration,
    /// Burst: connections released at once, and rounds.
    pub burst_threads: usize,
    pub burst_rounds: u32,
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
                burst_threads: 100,
                burst_rounds: 2,
            }
        } else {
            Profile {
                conns: vec![1, 10, 100, 1000, 10000],
                sizes: vec![64, 512, 4096, 65536],
                warmup: Duration::from_secs(1),
                secs: Duration::from_secs(4),
                burst_threads: 1000,
                burst_rounds: 10,
            }
        }
    }
}

/// A server under test: its name, address, and process (none for the module).
struct Target {
    name: String,
    addr: SocketAddr,
    child: Option<Child>,
    banner: String,
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            // SAFETY: kill(2) on our own child's pid; SIGTERM lets it close cleanly.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Run the whole comparison; Ok(false) if any point saw errors.
pub fn run(a: &BenchAllArgs) -> Result<bool> {
    let profile = Profile::new(a.quick);
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    for w in environment_warnings(&profile, &a.client_cpus) {
        eprintln!("warning: {w}");
    }
    let mut targets = vec![start_server("uring")?, start_server("epoll")?];
    match kmod_target(&a.kmod) {
        Some(t) => targets.push(t),
        None => eprintln!(
            "kernel module: nothing answers on {}; comparing the userspace servers only \
             (load it with `just load-kmod`, or see kernel/README.md)",
            a.kmod
        ),
    }
    let points: Vec<(usize, usize)> = profile
        .sizes
        .iter()
        .flat_map(|&s| profile.conns.iter().map(move |&c| (c, s)))
        .collect();
    let total = points.len() * targets.len();
    let per = profile.warmup + profile.secs + Duration::from_millis(100);
    println!(
        "bench-all: {} servers x {} points, about {:.0}s; results in {}",
        targets.len(),
        points.len(),
        (per * total as u32).as_secs_f64(),
        a.out.display()
    );
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut done = 0;
    for &(conns, size) in &points {
        for t in &targets {
            let spec = LoadSpec {
                addr: t.addr,
                conns,
                size,
                warmup: profile.warmup,
                duration: profile.secs,
                threads: a.client_cpus.len().clamp(1, conns),
                cpus: a.client_cpus.clone(),
                seed: (conns * 31 + size) as u64,
                server_pid: t.child.as_ref().map(Child::id),
            };
            let r = loadgen::run(&spec)?;
            let row = to_row(&t.name, conns, size, &r);
            done += 1;
            let eta = started.elapsed().as_secs_f64() / done as f64 * (total - done) as f64;
            println!(
                "[{done:>3}/{total}] {:<6} {:>5} conns x {:>5} B: {:>9.0} echoes/s, p99 {:>8.1} µs{}  (eta {:.0}s)",
                t.name,
                conns,
                size,
                row.echoes_per_sec,
                row.p99_us,
                problems(&row),
                eta
            );
            let _ = std::io::stdout().flush();
            rows.push(row);
        }
    }
    let mut burst_rows = Vec::new();
    let mut burst_errors = 0;
    for t in &targets {
        let r = super::burst::run(
            t.addr,
            profile.burst_threads,
            profile.burst_rounds,
            Duration::from_secs(10),
        )?;
        println!(
            "burst  {:<6} {} at once x {} rounds: response {}{}",
            t.name,
            profile.burst_threads,
            profile.burst_rounds,
            Percentiles::of(&r.response).describe(),
            if r.errors > 0 {
                format!(", {} FAILED connections", r.errors)
            } else {
                String::new()
            }
        );
        burst_errors += r.errors;
        burst_rows.extend(r.samples.into_iter().map(|s| (t.name.clone(), s)));
    }
    write(
        &a.out.join("burst.csv"),
        &results::burst_to_csv(&burst_rows),
    )?;
    let meta = metadata(&targets);
    results::write_csv(&a.out, &rows)?;
    write(&a.out.join("metadata.txt"), &meta)?;
    write(
        &a.out.join("summary.md"),
        &results::summary_md(&rows, &meta),
    )?;
    let charts = draw_everything(&a.out, &rows)?;
    println!(
        "wrote {}/throughput.csv, burst.csv, summary.md, metadata.txt and {} charts: {}",
        a.out.display(),
        charts.len(),
        charts.join(", ")
    );
    let bad: Vec<String> = rows
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
    if !bad.is_empty() {
        println!(
            "points with problems (see summary.md):\n  {}",
            bad.join("\n  ")
        );
    }
    // Wrong bytes, resets and failed connects are failures; starvation is a result.
    Ok(rows.iter().all(|r| r.errors == 0) && burst_errors == 0)
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

/// `ringecho plot DIR`: redraw the charts from `DIR/throughput.csv`.
pub fn plot(dir: &Path) -> Result<bool> {
    let rows = results::read_csv(dir)?;
    let charts = draw_everything(dir, &rows)?;
    println!(
        "redrew {} charts in {}: {}",
        charts.len(),
        dir.display(),
        charts.join(", ")
    );
    Ok(true)
}

/// Throughput charts from `rows`, and the burst chart if `dir/burst.csv` exists.
fn draw_everything(dir: &Path, rows: &[Row]) -> Result<Vec<String>> {
    let mut charts = chart::draw_all(dir, rows)?;
    let burst = dir.join("burst.csv");
    if burst.exists() {
        let text = std::fs::read_to_string(&burst)
            .with_context(|| format!("reading {}", burst.display()))?;
        let samples = results::burst_from_csv(&text)?;
        let mut servers: Vec<String> = samples.iter().map(|(s, _)| s.clone()).collect();
        servers.sort();
        servers.dedup();
        let per: Vec<(String, Vec<(u32, f64)>)> = servers
            .into_iter()
            .map(|srv| {
                let mine: Vec<_> = samples
                    .iter()
                    .filter(|(s, _)| *s == srv)
                    .map(|(_, x)| *x)
                    .collect();
                let means = super::burst::mean_by_rank(&mine);
                (srv, means)
            })
            .collect();
        charts.push(chart::draw_burst(dir, &per)?);
    }
    Ok(charts)
}

fn to_row(server: &str, conns: usize, size: usize, r: &loadgen::LoadResult) -> Row {
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

/// Start `ringecho serve --engine NAME` on a free port, one worker pinned to CPU 0.
fn start_server(engine: &str) -> Result<Target> {
    let exe = std::env::current_exe().context("finding the ringecho binary")?;
    let mut child = Command::new(exe)
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
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting the {engine} server"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::msg("server stdout not captured"))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(l)) = lines.next() {
            let _ = tx.send(l);
        }
        // Keep draining so the server never blocks on a full pipe.
        for _ in lines {}
    });
    let banner = rx.recv_timeout(Duration::from_secs(10)).map_err(|_| {
        let _ = child.kill();
        Error::msg(format!("the {engine} server did not start"))
    })?;
    let addr = banner
        .split("listening on tcp ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| Error::msg(format!("unexpected start-up line: {banner}")))?;
    Ok(Target {
        name: engine.into(),
        addr,
        child: Some(child),
        banner,
    })
}

/// The module, if something answers on its address.
fn kmod_target(addr: &str) -> Option<Target> {
    let a = crate::net::resolve(addr).ok()?;
    TcpStream::connect_timeout(&a, Duration::from_millis(300)).ok()?;
    Some(Target {
        name: "kernel".into(),
        addr: a,
        child: None,
        banner: format!("fastecho.ko on {a}"),
    })
}

/// Conditions that distort results, said before the run.
pub fn environment_warnings(p: &Profile, client_cpus: &[usize]) -> Vec<String> {
    let mut w = Vec::new();
    let max_conns = p.conns.iter().copied().max().unwrap_or(0) as u64;
    let cpus = crate::net::online_cpus();
    if cpus < 2 || client_cpus.contains(&0) {
        w.push("server and load generator share a CPU: the run measures both".into());
    }
    if let Some(s) = read_num("/proc/sys/net/core/somaxconn") {
        if s < max_conns.min(4096) {
            w.push(format!(
                "net.core.somaxconn is {s}, below the {max_conns} connections made at once"
            ));
        }
    }
    let nofile = crate::net::raise_nofile_limit();
    if nofile < max_conns + 256 {
        w.push(format!(
            "the open-file limit {nofile} is below {max_conns} connections"
        ));
    }
    if let Ok(g) = std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    {
        if g.trim() != "performance" {
            w.push(format!("CPU frequency scaling governor is '{}'", g.trim()));
        }
    }
    w
}

fn read_num(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Kernel, CPU, servers and the sysctls that matter.
fn metadata(targets: &[Target]) -> String {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let mut m = format!(
        "kernel: {}\ncpu: {} x {}\n",
        crate::uring::probe::kernel_release(),
        crate::net::online_cpus(),
        cpu_model
    );
    for (k, p) in [
        ("net.core.somaxconn", "/proc/sys/net/core/somaxconn"),
        (
            "net.ipv4.tcp_max_syn_backlog",
            "/proc/sys/net/ipv4/tcp_max_syn_backlog",
        ),
    ] {
        m += &format!(
            "{k}: {}\n",
            read_num(p).map_or("?".into(), |v| v.to_string())
        );
    }
    m += &format!("open-file limit: {}\n", crate::net::nofile_limit());
    m += "placement: servers pinned to CPU 0 (one worker); load generator on the other CPU(s)\n";
    for t in targets {
        m += &format!("server {}: {}\n", t.name, t.banner);
    }
    m
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
