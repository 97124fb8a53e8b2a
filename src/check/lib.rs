//! `ringecho check`: a conformance suite for any TCP echo server (ours, the kernel
//! module, anyone's), or with `--udp` for any UDP one. It prints one line per case, what
//! was tried and what came back, and a closing `result:` line; the exit status is non-zero
//! if any case failed.

mod cases;
mod hostile;
mod payload;
pub mod seq;
pub mod udp;

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Args;

pub use cases::{Plan, SUITE};

use crate::error::Result;

/// The syscall boundary's modules, under the names this crate's code uses.
pub use ringecho_sys::{bail, error, net};

/// `len` reproducible random bytes (NULs included) for `seed`: the checker's payloads,
/// shared with the load generator.
pub fn payload_bytes(seed: u64, len: usize) -> Vec<u8> {
    payload::Rng::new(seed).bytes(len)
}

/// `ringecho check` flags.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// The server to test, as HOST:PORT (e.g. 127.0.0.1:12346, [::1]:12346, localhost:12346).
    pub addr: String,

    /// Test a UDP echo server instead: datagram sizes up to 65,507 bytes, 10,000 datagrams
    /// from 64 source ports with loss counted, no reply to a guarded source port, no
    /// endless loop when its echoes are echoed back.
    #[arg(long)]
    pub udp: bool,

    /// Limit in seconds for any one connect, read or write of a case (UDP: for any one
    /// echo, resends included).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub timeout: f64,

    /// Connections held open at once by the concurrency case (TCP).
    #[arg(long, default_value_t = 1000)]
    pub conns: usize,

    /// Clients that write until they block and never read while fresh clients must still
    /// be echoed (the many-non-readers case).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub non_readers: usize,

    /// Seed of the random payloads [default: from the clock]; printed, so a failure replays.
    #[arg(long)]
    pub seed: Option<u64>,
}

/// What every case of a suite gets; `P` is the suite's plan (its sizes).
#[derive(Debug, Clone)]
pub struct Ctx<P> {
    /// The server under test.
    pub addr: SocketAddr,
    /// Limit for any one connect, read or write (UDP: for any one echo, resends
    /// included).
    pub timeout: Duration,
    /// Case sizes.
    pub plan: P,
    /// Seed of this case's payloads.
    pub seed: u64,
}

/// Why a case failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The case failed; the string says how.
    Fail(String),
    /// Nothing answers at the address at all: the remaining cases are not run.
    Unreachable(String),
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure::Fail(s)
    }
}

/// Pass with a detail line, or fail with one.
pub type Outcome = Result<String, Failure>;

/// One named case of a suite whose plan is `P`.
pub struct Case<P> {
    /// Its name in the table.
    pub name: &'static str,
    /// Runs it.
    pub run: fn(&Ctx<P>) -> Outcome,
}

impl<P> Case<P> {
    /// The case `name`, run by `run`: a suite's table is a list of these.
    pub const fn new(name: &'static str, run: fn(&Ctx<P>) -> Outcome) -> Case<P> {
        Case { name, run }
    }
}

/// One case's outcome.
#[derive(Debug, Clone)]
pub struct CaseOutcome {
    /// Case name.
    pub name: &'static str,
    /// Passed?
    pub pass: bool,
    /// What was tried and what came back.
    pub detail: String,
    /// How long it took.
    pub took: Duration,
}

/// The rows of a run, and whether it stopped early because nothing answered.
#[derive(Debug, Clone)]
pub struct Report {
    /// `TCP` or `UDP`, for the closing line.
    pub proto: &'static str,
    /// One per case run.
    pub rows: Vec<CaseOutcome>,
    /// Cases not run because the server was unreachable (0 when it was reached).
    pub not_run: usize,
    /// A case found nothing answering, and the run stopped there.
    pub unreachable: bool,
}

impl Report {
    /// Every case ran and passed.
    pub fn passed(&self) -> bool {
        !self.unreachable && self.rows.iter().all(|r| r.pass)
    }

    /// The closing line.
    pub fn summary(&self, addr: SocketAddr) -> String {
        let failed = self.rows.iter().filter(|r| !r.pass).count();
        if self.unreachable {
            format!(
                "result: FAILED: no {} echo from {addr}; {} other case{} not run",
                self.proto,
                self.not_run,
                if self.not_run == 1 { "" } else { "s" }
            )
        } else if failed == 0 {
            format!("result: all {} cases passed", self.rows.len())
        } else {
            format!("result: {failed} of {} cases FAILED", self.rows.len())
        }
    }
}

/// Run the suite; Ok(true) when every case passed.
pub fn run(args: &CheckArgs) -> Result<bool> {
    if !(args.timeout > 0.0 && args.timeout <= 3600.0) {
        crate::bail!("--timeout must be between 0 and 3600 seconds");
    }
    if args.conns == 0 {
        crate::bail!("--conns must be at least 1");
    }
    if args.non_readers == 0 {
        crate::bail!("--non-readers must be at least 1");
    }
    let addr = crate::net::resolve(&args.addr)?;
    let seed = args.seed.unwrap_or_else(clock_seed);
    let timeout = Duration::from_secs_f64(args.timeout);
    if !args.udp {
        crate::net::probe_tcp(addr)?;
    }
    println!(
        "ringecho check {}{addr} (seed {seed}, timeout {}s)",
        if args.udp { "--udp " } else { "" },
        args.timeout
    );
    let report = if args.udp {
        udp::SUITE.run(addr, timeout, udp::Plan::default(), seed, print_row)
    } else {
        let plan = Plan {
            conns: args.conns,
            non_readers: args.non_readers,
            ..Plan::default()
        };
        SUITE.run(addr, timeout, plan, seed, print_row)
    };
    println!("{}", report.summary(addr));
    Ok(report.passed())
}

/// Print a row as soon as its case finishes.
fn print_row(row: &CaseOutcome) {
    println!("{}", format_row(row));
    let _ = std::io::stdout().flush();
}

/// A suite: its cases, for servers of one protocol.
pub struct Suite<P: 'static> {
    /// `TCP` or `UDP`.
    pub proto: &'static str,
    /// Every case, in the order they run.
    pub cases: &'static [Case<P>],
}

impl<P> Suite<P> {
    /// The `proto` suite of `cases`, in the order they run.
    pub const fn new(proto: &'static str, cases: &'static [Case<P>]) -> Suite<P> {
        Suite { proto, cases }
    }
}

impl<P: Clone> Suite<P> {
    /// The one runner of both suites: every case against `addr` in order, each with its
    /// own seed, each row reported as it finishes. Stops after a case that found nothing
    /// answering at all.
    pub fn run(
        &self,
        addr: SocketAddr,
        timeout: Duration,
        plan: P,
        seed: u64,
        mut report: impl FnMut(&CaseOutcome),
    ) -> Report {
        let mut rows = Vec::with_capacity(self.cases.len());
        for (i, case) in self.cases.iter().enumerate() {
            let ctx = Ctx {
                addr,
                timeout,
                plan: plan.clone(),
                seed: seed.wrapping_add(i as u64 * 0x9e37_79b9),
            };
            let start = Instant::now();
            let (pass, detail, stop) = match (case.run)(&ctx) {
                Ok(d) => (true, d, false),
                Err(Failure::Fail(d)) => (false, d, false),
                Err(Failure::Unreachable(d)) => (false, d, true),
            };
            let row = CaseOutcome {
                name: case.name,
                pass,
                detail,
                took: start.elapsed(),
            };
            report(&row);
            rows.push(row);
            if stop {
                return Report {
                    proto: self.proto,
                    rows,
                    not_run: self.cases.len() - i - 1,
                    unreachable: true,
                };
            }
        }
        Report {
            proto: self.proto,
            rows,
            not_run: 0,
            unreachable: false,
        }
    }
}

/// One table line: name, PASS/FAIL, detail, time.
pub fn format_row(r: &CaseOutcome) -> String {
    format!(
        "  {:<24} {}  {:>7.2}s  {}",
        r.name,
        if r.pass { "PASS" } else { "FAIL" },
        r.took.as_secs_f64(),
        r.detail
    )
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{Shutdown, TcpListener, TcpStream};

    /// A thread-per-connection echo server whose echo `mangle`s each chunk; closes after
    /// echoing everything if `closes` is set.
    fn server(mangle: fn(&mut [u8], usize), closes: bool) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 16 << 10];
                    let mut total = 0;
                    loop {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                mangle(&mut buf[..n], total);
                                total += n;
                                if s.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    if closes {
                        let _ = s.shutdown(Shutdown::Both);
                    } else {
                        std::thread::sleep(Duration::from_secs(30));
                    }
                });
            }
        });
        addr
    }

    fn small() -> Plan {
        Plan {
            conns: 100,
            slow_reader_bytes: 1 << 20,
            pipelined_writes: 1000,
            non_readers: 50,
            fresh_within: Duration::from_secs(5),
        }
    }

    fn rows(addr: SocketAddr, timeout: Duration) -> Vec<CaseOutcome> {
        let report = SUITE.run(addr, timeout, small(), 42, |_| {});
        assert!(!report.unreachable && report.not_run == 0, "{report:#?}");
        report.rows
    }

    /// The closing line of a TCP run with these rows.
    fn summary(rows: &[CaseOutcome]) -> String {
        let report = Report {
            proto: "TCP",
            rows: rows.to_vec(),
            not_run: 0,
            unreachable: false,
        };
        report.summary("127.0.0.1:7".parse().expect("addr"))
    }

    #[test]
    fn a_correct_server_passes_every_case() {
        let addr = server(|_, _| {}, true);
        let r = rows(addr, Duration::from_secs(10));
        assert!(r.iter().all(|r| r.pass), "{r:#?}");
        assert_eq!(
            summary(&r),
            format!("result: all {} cases passed", SUITE.cases.len())
        );
    }

    #[test]
    fn a_corrupting_server_fails_with_the_offset() {
        // Flips one byte 70,000 bytes into every stream: only streams that long fail.
        let addr = server(
            |b, off| {
                if (off..off + b.len()).contains(&70_000) {
                    b[70_000 - off] ^= 0xff;
                }
            },
            true,
        );
        let r = rows(addr, Duration::from_secs(5));
        let failed: Vec<_> = r.iter().filter(|r| !r.pass).map(|r| r.name).collect();
        assert_eq!(
            failed,
            [
                "1 MiB binary",
                "half-close",
                "slow reader",
                "one non-reader bounded"
            ],
            "{r:#?}"
        );
        let mib = r.iter().find(|r| r.name == "1 MiB binary").expect("row");
        assert!(mib.detail.contains("byte 70000 differs"), "{}", mib.detail);
        // The non-reader's data is a repeated block: its offsets still count from the start.
        let nr = r.iter().find(|r| r.name == "one non-reader bounded");
        let nr = nr.expect("row");
        assert!(nr.detail.contains("byte 70000 differs"), "{}", nr.detail);
        assert!(summary(&r).contains("4 of 11 cases FAILED"));
    }

    #[test]
    fn a_server_that_never_closes_fails_the_close_cases() {
        let addr = server(|_, _| {}, false);
        let r = rows(addr, Duration::from_millis(700));
        let failed: Vec<_> = r.iter().filter(|r| !r.pass).map(|r| r.name).collect();
        assert_eq!(failed, ["connect, close, no data", "half-close"], "{r:#?}");
        assert!(r[1].detail.contains("did not close"), "{}", r[1].detail);
    }

    #[test]
    fn nobody_listening_fails_every_case_quickly() {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        let r = rows(port, Duration::from_secs(2));
        assert!(
            r.iter().all(|r| !r.pass && r.detail.contains("connect")),
            "{r:#?}"
        );
        let _ = TcpStream::connect(port);
    }

    #[test]
    fn rows_are_one_line_with_status_and_time() {
        let row = CaseOutcome {
            name: "one byte",
            pass: false,
            detail: "timed out".into(),
            took: Duration::from_millis(1500),
        };
        let s = format_row(&row);
        assert!(s.contains("one byte") && s.contains("FAIL") && s.contains("1.50s"));
        assert!(!s.contains('\n'));
    }

    #[test]
    fn bad_addresses_are_one_line_errors() {
        assert!(crate::net::resolve("nonsense").is_err());
        assert!(crate::net::resolve("127.0.0.1:99999").is_err());
        assert_eq!(
            crate::net::resolve("[::1]:7").expect("v6").to_string(),
            "[::1]:7"
        );
    }
}
