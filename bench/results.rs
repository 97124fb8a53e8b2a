//! Benchmark results as data: one typed row per measurement, one type per phase. The
//! rows are the CSV records themselves (serde names every column after its field, so
//! there are no positional fields), each says what it saw to the one validity rule
//! ([`Judged`]), and everything downstream (summary.md, the charts, the console's
//! problem list) is built from them.

use serde::{Deserialize, Serialize};

use super::hist::Percentiles;
use super::validity::{self, Judged, Observed};

/// One closed-loop point of the throughput matrix: `throughput.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThroughputRow {
    /// `uring`, `epoll`, `kernel` or an outside server's name.
    pub server: String,
    /// `throughput` (closed loop).
    pub workload: String,
    pub conns: u64,
    pub size: u64,
    pub echoes_per_sec: f64,
    pub mb_per_sec: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    /// Busy CPU of the whole machine per echo, µs.
    pub machine_us_per_echo: f64,
    /// Load generator CPU per echo, µs.
    pub client_us_per_echo: f64,
    /// Server process CPU per echo, µs (NaN where there is no process: the kernel module).
    pub server_us_per_echo: f64,
    /// Load generator CPU as a share of one CPU, %.
    pub client_cpu_pct: f64,
    /// Correctness failures: wrong bytes, connections closed by the server, failed connects.
    pub errors: u64,
    /// Connections that made no progress during the whole measured window.
    pub stalled: u64,
    /// Echoes in the measured window, and the load threads (none in older files).
    #[serde(default)]
    pub echoes: Option<u64>,
    #[serde(default)]
    pub load_threads: Option<u64>,
    /// How long the server's and the load generator's threads waited for a CPU, % of
    /// the window (none without a server process, or in older files).
    #[serde(default)]
    pub server_wait_pct: Option<f64>,
    #[serde(default)]
    pub client_wait_pct: Option<f64>,
    /// The validity rule's reasons when the file was written ("" when valid); recomputed
    /// on reading, so a file cannot disagree with the rule.
    #[serde(default)]
    pub problems: String,
}

impl ThroughputRow {
    /// The latency (the file has no p99.99 column: NaN).
    pub fn latency(&self) -> Percentiles {
        Percentiles::from_columns([
            self.p50_us,
            self.p90_us,
            self.p99_us,
            self.p999_us,
            f64::NAN,
            self.max_us,
        ])
    }
}

impl Judged for ThroughputRow {
    fn observed(&self) -> Observed {
        Observed {
            conns: self.conns,
            echoes: self.echoes,
            echoes_per_sec: self.echoes_per_sec,
            errors: self.errors,
            stalled: Some(self.stalled),
            client_cpu_pct: Some(self.client_cpu_pct),
            load_threads: self.load_threads,
            server_wait_pct: self.server_wait_pct,
            client_wait_pct: self.client_wait_pct,
            ..Observed::default()
        }
    }
}

/// One open-loop point: a server at a fixed request rate: `latency.csv` (`c_` columns
/// corrected for coordinated omission, `u_` uncorrected).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyRow {
    pub server: String,
    pub conns: u64,
    pub size: u64,
    /// The schedule's rate, messages per second.
    pub rate: f64,
    /// Echoes per second actually completed for messages due in the window.
    pub achieved: f64,
    /// Messages due in the window, and those not echoed by the end of the drain.
    pub scheduled: u64,
    pub unfinished: u64,
    /// From the scheduled send, µs.
    pub c_p50_us: f64,
    pub c_p90_us: f64,
    pub c_p99_us: f64,
    pub c_p999_us: f64,
    pub c_p9999_us: f64,
    pub c_max_us: f64,
    /// From the actual send, µs.
    pub u_p50_us: f64,
    pub u_p90_us: f64,
    pub u_p99_us: f64,
    pub u_p999_us: f64,
    pub u_p9999_us: f64,
    pub u_max_us: f64,
    /// Busy CPU of the whole machine per echo, µs.
    pub machine_us_per_echo: f64,
    /// Load generator CPU as a share of one CPU, %.
    pub client_cpu_pct: f64,
    /// p99 of how late the load generator sent messages whose connection was idle, µs
    /// (NaN: no such message).
    pub lag_p99_us: f64,
    /// Wrong bytes, connections closed by the server, failed connects.
    pub errors: u64,
    /// Echoes in the measured window (none in older files).
    #[serde(default)]
    pub echoes: Option<u64>,
    /// How long the server's and the load generator's threads waited for a CPU, % of
    /// the window (none without a server process, or in older files).
    #[serde(default)]
    pub server_wait_pct: Option<f64>,
    #[serde(default)]
    pub client_wait_pct: Option<f64>,
    /// As [`ThroughputRow::problems`].
    #[serde(default)]
    pub problems: String,
}

/// A getter and a setter for six latency columns (p50 to max) as one [`Percentiles`].
macro_rules! percentile_columns {
    ($get:ident, $set:ident, $what:literal: $p50:ident, $p90:ident, $p99:ident, $p999:ident,
     $p9999:ident, $max:ident) => {
        #[doc = concat!("The ", $what, " latency.")]
        pub fn $get(&self) -> Percentiles {
            Percentiles::from_columns([
                self.$p50,
                self.$p90,
                self.$p99,
                self.$p999,
                self.$p9999,
                self.$max,
            ])
        }

        #[doc = concat!("Set the ", $what, " latency's columns.")]
        pub fn $set(&mut self, p: &Percentiles) {
            [
                self.$p50,
                self.$p90,
                self.$p99,
                self.$p999,
                self.$p9999,
                self.$max,
            ] = p.columns();
        }
    };
}

impl LatencyRow {
    percentile_columns!(corrected, set_corrected, "corrected (from the scheduled send)":
        c_p50_us, c_p90_us, c_p99_us, c_p999_us, c_p9999_us, c_max_us);
    percentile_columns!(uncorrected, set_uncorrected, "uncorrected (from the actual send)":
        u_p50_us, u_p90_us, u_p99_us, u_p999_us, u_p9999_us, u_max_us);

    /// Set both latencies' columns.
    pub fn set_latency(&mut self, corrected: &Percentiles, uncorrected: &Percentiles) {
        self.set_corrected(corrected);
        self.set_uncorrected(uncorrected);
    }
}

impl Judged for LatencyRow {
    fn observed(&self) -> Observed {
        Observed {
            open: true,
            conns: self.conns,
            rate: self.rate,
            echoes: self.echoes,
            echoes_per_sec: self.achieved,
            errors: self.errors,
            scheduled: Some(self.scheduled),
            unfinished: Some(self.unfinished),
            lag_p99_us: self.lag_p99_us.is_finite().then_some(self.lag_p99_us),
            queued_p50_us: Some(self.c_p50_us),
            server_wait_pct: self.server_wait_pct,
            client_wait_pct: self.client_wait_pct,
            ..Observed::default()
        }
    }
}

/// One UDP point: a server under the closed loop (`workload` `throughput`) or at a fixed
/// rate (`latency`): `udp.csv`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UdpRow {
    pub server: String,
    /// `throughput` (closed loop, peak packets/s) or `latency` (open loop, fixed rate).
    pub workload: String,
    /// Client sockets (source ports).
    pub sockets: u64,
    /// Datagram size, bytes.
    pub size: u64,
    /// Closed loop: datagrams in flight per socket (0 for the open loop).
    pub window: u64,
    /// Open loop: the schedule's rate, datagrams/s, and that rate as a percentage of
    /// epoll's closed-loop peak (both 0 for the closed loop).
    pub rate: f64,
    pub fraction: u32,
    /// Verified echoes per second.
    pub echoes_per_sec: f64,
    pub mb_per_sec: f64,
    /// Datagrams counted (closed loop: sent in the window; open loop: due in it), of
    /// them not echoed within the timeout, that as a percentage, and echoes that came
    /// after being counted lost.
    pub sent: u64,
    pub lost: u64,
    pub loss_pct: f64,
    pub late: u64,
    /// From the actual send, µs (the open loop's "uncorrected").
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub p9999_us: f64,
    pub max_us: f64,
    /// Open loop only: from the scheduled send, µs (NaN for the closed loop).
    pub c_p50_us: f64,
    pub c_p90_us: f64,
    pub c_p99_us: f64,
    pub c_p999_us: f64,
    pub c_p9999_us: f64,
    pub c_max_us: f64,
    /// CPU per echo, µs: the whole machine, the load generator, the server process
    /// (NaN where unknown).
    pub machine_us_per_echo: f64,
    pub client_us_per_echo: f64,
    pub server_us_per_echo: f64,
    /// Load generator CPU as a share of one CPU, %.
    pub client_cpu_pct: f64,
    /// Open loop: p99 of how late the load generator sent, µs (NaN for the closed loop).
    pub lag_p99_us: f64,
    /// Wrong bytes and duplicate echoes.
    pub errors: u64,
    /// Echoes in the measured window (none in older files).
    #[serde(default)]
    pub echoes: Option<u64>,
    /// How long the server's and the load generator's threads waited for a CPU, % of
    /// the window (none without a server process, or in older files).
    #[serde(default)]
    pub server_wait_pct: Option<f64>,
    #[serde(default)]
    pub client_wait_pct: Option<f64>,
    /// As [`ThroughputRow::problems`].
    #[serde(default)]
    pub problems: String,
}

impl UdpRow {
    /// The open loop (fixed rate) rather than the closed loop.
    pub fn is_open(&self) -> bool {
        self.workload == "latency"
    }

    percentile_columns!(latency, set_uncorrected, "uncorrected (from the actual send)":
        p50_us, p90_us, p99_us, p999_us, p9999_us, max_us);
    percentile_columns!(scheduled, set_scheduled, "corrected (from the scheduled send)":
        c_p50_us, c_p90_us, c_p99_us, c_p999_us, c_p9999_us, c_max_us);

    /// Open loop: latency from the scheduled send; none for the closed loop.
    pub fn corrected(&self) -> Option<Percentiles> {
        self.is_open().then(|| self.scheduled())
    }

    /// Set the latency columns (`corrected` none: the closed loop, NaN columns).
    pub fn set_latency(&mut self, latency: &Percentiles, corrected: Option<&Percentiles>) {
        self.set_uncorrected(latency);
        let nan = Percentiles::from_columns([f64::NAN; 6]);
        self.set_scheduled(corrected.unwrap_or(&nan));
    }
}

impl Judged for UdpRow {
    fn observed(&self) -> Observed {
        Observed {
            open: self.is_open(),
            conns: self.sockets,
            rate: self.rate,
            echoes: self.echoes,
            echoes_per_sec: self.echoes_per_sec,
            errors: self.errors,
            sent: Some(self.sent),
            lost: Some(self.lost),
            lag_p99_us: self.lag_p99_us.is_finite().then_some(self.lag_p99_us),
            server_wait_pct: self.server_wait_pct,
            client_wait_pct: self.client_wait_pct,
            ..Observed::default()
        }
    }
}

/// One connection of one burst round: `burst.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BurstRow {
    pub server: String,
    /// Round number (0-based).
    pub round: u32,
    /// Completion order within the round (0 = first echo back).
    pub rank: u32,
    /// connect() time, µs.
    pub connect_us: f64,
    /// Send to full echo, µs.
    pub response_us: f64,
}

impl BurstRow {
    /// `server`'s row of sample `s`.
    pub fn of(server: &str, s: &super::burst::Sample) -> BurstRow {
        BurstRow {
            server: server.into(),
            round: s.round,
            rank: s.rank,
            connect_us: s.connect_us,
            response_us: s.response_us,
        }
    }

    /// The sample, without the server.
    pub fn sample(&self) -> super::burst::Sample {
        super::burst::Sample {
            round: self.round,
            rank: self.rank,
            connect_us: self.connect_us,
            response_us: self.response_us,
        }
    }
}

/// Idle-connection memory of one server: `memory.csv`. The module, which has no
/// process, has two rows in kernel memory, its name saying which.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryRow {
    pub server: String,
    /// Connections held open and idle (those that connected).
    pub conns: u64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub bytes_per_conn: f64,
}

/// Fill in `row`'s `problems` column from the rule, as every row is before it is
/// written and after it is read.
pub fn judge<T: Judged + HasProblems>(mut row: T) -> T {
    *row.problems_mut() = validity::describe(&row.reasons());
    row
}

/// Rows with a `problems` column.
pub trait HasProblems {
    /// The column.
    fn problems_mut(&mut self) -> &mut String;
}

macro_rules! has_problems {
    ($($t:ty),*) => {$(
        impl HasProblems for $t {
            fn problems_mut(&mut self) -> &mut String {
                &mut self.problems
            }
        }
    )*};
}
has_problems!(ThroughputRow, LatencyRow, UdpRow);

/// Whose closed-loop peak the open-loop rates are fractions of, as a possessive: epoll's
/// when it ran, else the fastest server's at that point (`bench-all --only` without
/// epoll), so that no text names a baseline that did not run.
pub fn rate_reference<'a>(mut servers: impl Iterator<Item = &'a str>) -> &'static str {
    if servers.any(|s| s == "epoll") {
        "epoll's"
    } else {
        "the fastest server's"
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A healthy closed-loop row of `server` at `conns` × 64 B.
    pub fn row(server: &str, conns: u64) -> ThroughputRow {
        ThroughputRow {
            server: server.into(),
            workload: "throughput".into(),
            conns,
            size: 64,
            echoes_per_sec: 12345.6,
            mb_per_sec: 0.79,
            p50_us: 10.5,
            p90_us: 12.25,
            p99_us: 30.0,
            p999_us: 99.5,
            max_us: 1000.0,
            machine_us_per_echo: 9.125,
            client_us_per_echo: 4.5,
            server_us_per_echo: f64::NAN,
            client_cpu_pct: 55.0,
            errors: 0,
            stalled: 0,
            echoes: Some(49_382),
            load_threads: Some(1),
            server_wait_pct: Some(0.5),
            client_wait_pct: Some(0.25),
            problems: String::new(),
        }
    }

    /// An open-loop row at 50,000/s, latencies from `base` µs.
    pub fn latency_row(server: &str, base: f64) -> LatencyRow {
        let p = |base: f64| Percentiles {
            count: 0,
            p50: base,
            p90: base + 1.0,
            p99: base + 2.0,
            p999: base + 3.0,
            p9999: base + 4.5,
            max: base + 100.0,
        };
        let mut r = LatencyRow {
            server: server.into(),
            conns: 100,
            size: 64,
            rate: 50000.0,
            achieved: 49990.5,
            scheduled: 100_000,
            unfinished: 0,
            machine_us_per_echo: 12.5,
            client_cpu_pct: 40.0,
            lag_p99_us: 3.25,
            errors: 0,
            echoes: Some(99_981),
            server_wait_pct: None,
            client_wait_pct: Some(1.0),
            problems: String::new(),
            ..LatencyRow::default()
        };
        r.set_latency(&p(base * 2.0), &p(base));
        r
    }

    /// A UDP row, open loop when `corrected` is some.
    pub fn udp_row(server: &str, corrected: Option<Percentiles>) -> UdpRow {
        let open = corrected.is_some();
        let mut r = UdpRow {
            server: server.into(),
            workload: if open { "latency" } else { "throughput" }.into(),
            sockets: 64,
            size: 1472,
            window: if open { 0 } else { 4 },
            rate: if open { 50000.0 } else { 0.0 },
            fraction: if open { 50 } else { 0 },
            echoes_per_sec: 123456.5,
            mb_per_sec: 181.75,
            sent: 600_000,
            lost: 3,
            loss_pct: 0.0005,
            late: 1,
            machine_us_per_echo: 7.5,
            client_us_per_echo: 3.25,
            server_us_per_echo: f64::NAN,
            client_cpu_pct: 88.0,
            lag_p99_us: if open { 4.5 } else { f64::NAN },
            errors: 0,
            echoes: Some(599_997),
            server_wait_pct: Some(2.0),
            client_wait_pct: None,
            problems: String::new(),
            ..UdpRow::default()
        };
        let latency = Percentiles {
            count: 0,
            p50: 10.5,
            p90: 11.0,
            p99: 20.25,
            p999: 30.0,
            p9999: 40.0,
            max: 99.0,
        };
        r.set_latency(&latency, corrected.as_ref());
        r
    }

    #[test]
    fn open_loop_rates_name_epoll_only_when_it_ran() {
        assert_eq!(rate_reference(["ext", "epoll"].into_iter()), "epoll's");
        assert_eq!(
            rate_reference(["ext", "uring"].into_iter()),
            "the fastest server's"
        );
    }

    #[test]
    fn latency_columns_set_and_read_back() {
        let r = latency_row("uring", 10.0);
        assert_eq!(r.corrected().p50, 20.0);
        assert_eq!(r.uncorrected().p9999, 14.5);
        assert_eq!(r.c_max_us, 120.0);
        let u = udp_row("epoll", None);
        assert!(!u.is_open() && u.corrected().is_none() && u.c_p99_us.is_nan());
        assert_eq!(u.latency().p99, 20.25);
        let c = u.latency();
        let o = udp_row("epoll", Some(c));
        assert!(o.is_open());
        assert_eq!(o.corrected(), Some(c));
    }

    #[test]
    fn every_row_type_goes_through_the_one_rule() {
        assert!(row("uring", 1).valid());
        let stalled = ThroughputRow {
            stalled: 4,
            ..row("uring", 100)
        };
        assert_eq!(
            stalled.reasons(),
            vec![validity::Reason::Stalled(4)],
            "stalls leave a point out"
        );
        assert!(!stalled.failed(), "but do not fail the run");
        let broken = ThroughputRow {
            errors: 1,
            ..row("uring", 100)
        };
        assert!(broken.failed());
        let few = ThroughputRow {
            echoes: Some(12),
            ..row("uring", 100)
        };
        assert_eq!(few.reasons(), vec![validity::Reason::TooFewEchoes(12)]);

        assert!(latency_row("uring", 10.0).valid());
        let slow = LatencyRow {
            achieved: 1000.0,
            unfinished: 30,
            ..latency_row("uring", 10.0)
        };
        assert_eq!(slow.reasons().len(), 2, "{:?}", slow.reasons());
        let mut behind = latency_row("uring", 10.0);
        behind.lag_p99_us = 500.0;
        assert_eq!(
            behind.reasons(),
            vec![validity::Reason::LoadGeneratorBehind(500.0)]
        );

        assert!(udp_row("epoll", None).valid());
        let lossy = UdpRow {
            lost: 60_000,
            ..udp_row("epoll", None)
        };
        assert!(matches!(
            lossy.reasons()[..],
            [validity::Reason::Lost { lost: 60_000, .. }]
        ));
        let judged = judge(lossy);
        assert!(judged.problems.contains("60000 of 600000 datagrams lost"));
        assert_eq!(judge(row("uring", 1)).problems, "");
    }
}
