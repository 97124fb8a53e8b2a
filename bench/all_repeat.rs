//! bench-all's repeated phase: the points the performance targets are judged at, measured
//! again for several rounds with the servers interleaved inside each round. On a shared
//! machine one measurement of a point can swing by a factor of ten (a neighbour's burst
//! lands on one server's turn), so a ratio is taken inside each round, where both servers
//! saw the same machine, and the median of those per-round ratios is reported.
//!
//! A round only counts when both of its measurements are valid ([`invalid_reasons`]): a
//! host that stalls for part of the phase produces rounds that measured the stall, and a
//! median over them is a number about the host. Too few valid rounds and the median reads
//! *undecided* instead of a number.

use std::collections::BTreeMap;
use std::fmt;

use super::all::{Ctx, Progress, LAG_SATURATED_US};
use super::csv::{self, Fields, Layout};
use super::hist::{format_us, Percentiles};
use super::loadgen::{self, LoadSpec};
use super::openloop::{self, OpenSpec};
use super::results::LatencyRow;
use super::servers::Target;
use crate::error::{Context, Result};

/// Where the repeated measurements go inside a results directory.
pub const REPEATED_CSV: &str = "repeated.csv";

/// The columns every file has had; files written before the validity columns existed
/// have only these, and are still read (their rounds are judged on what they kept).
const LEGACY_HEADER: &str = "kind,conns,size,rate,round,server,echoes_per_sec,\
                             machine_us_per_echo,server_us_per_echo,p50_us,p99_us,errors";

const HEADER: &str = "kind,conns,size,rate,round,server,echoes_per_sec,machine_us_per_echo,\
                      server_us_per_echo,p50_us,p99_us,errors,echoes,scheduled,unfinished,\
                      stalled,client_cpu_pct,load_threads,lag_p99_us,valid,reasons";

const LAYOUT: Layout = Layout {
    header: Some(HEADER),
    what: "repeated",
    width: 21,
};

const LEGACY_LAYOUT: Layout = Layout {
    header: Some(LEGACY_HEADER),
    what: "repeated",
    width: 12,
};

/// The closed-loop points the targets name: (connections, message size).
const CLOSED_POINTS: [(usize, usize); 3] = [(100, 64), (1000, 64), (100, 65536)];
/// The open-loop rate the targets name, as a percentage of epoll's peak.
const OPEN_PERCENT: u32 = 50;

/// An open-loop measurement that achieved less than this share of its rate measured a
/// server (or host) that could not keep the schedule, not its latency at that rate: a
/// healthy point here achieves the rate exactly (every message due in the window is
/// echoed), and 10% slack leaves room for the window's edges.
pub const MIN_RATE_KEPT: f64 = 0.9;

/// Fewer echoes than this in the measured window and a measurement is invalid: a p99 of
/// under 1,000 samples rests on fewer than ten of them, and a healthy target point here
/// makes 25,000 or more per second (the slowest, 100 × 64 KiB), so a count this low
/// means the host stalled for most of the window.
pub const MIN_ECHOES: u64 = 1000;

/// Open loop: a corrected p50 above one slot of a connection's schedule (connections ÷
/// rate) means most messages were due while their connection's previous message was
/// still out: the point measured a queue, not the latency at that rate. A healthy point
/// here has a p50 of about 20 µs against a slot of over 1 ms. The load generator's send
/// lag cannot show this: it is sampled only where the connection was idle at its slot,
/// so a backlog leaves it with no samples at all.
pub fn backlog_slot_us(conns: u64, rate: f64) -> f64 {
    conns as f64 / rate * 1e6
}

/// A closed-loop load thread busy for at least this share of its CPU, %, is the limit:
/// both servers answer as fast as they are asked, so the ratio is the client's.
pub const CLIENT_LIMIT_PCT: f64 = 90.0;

/// Valid rounds a median needs before it is a number: at least half the rounds, and at
/// least two. A median of one round is the single measurement this phase exists to
/// avoid, and when most rounds are invalid the host was disturbed for most of the phase,
/// so the survivors are not a fair sample of it.
pub fn min_valid_rounds(rounds: usize) -> usize {
    rounds.div_ceil(2).max(2)
}

/// One point to repeat.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Closed loop (`rate` is 0) or open loop at `rate` messages/s.
    pub open: bool,
    /// Connections.
    pub conns: usize,
    /// Message size, bytes.
    pub size: usize,
    /// Open loop: messages per second (0 for the closed loop).
    pub rate: f64,
}

/// The points of `profile`'s matrix that the targets name, and the open-loop rate at
/// 50% of epoll's peak if the latency phase ran one (`rates` are its rates in the order
/// of the profile's percentages).
pub fn points(conns: &[usize], sizes: &[usize], percents: &[u32], rates: &[f64]) -> Vec<Point> {
    let mut v: Vec<Point> = CLOSED_POINTS
        .iter()
        .filter(|(c, s)| conns.contains(c) && sizes.contains(s))
        .map(|&(conns, size)| Point {
            open: false,
            conns,
            size,
            rate: 0.0,
        })
        .collect();
    if let Some(&rate) = percents
        .iter()
        .position(|&p| p == OPEN_PERCENT)
        .and_then(|i| rates.get(i))
    {
        v.push(Point {
            open: true,
            conns: 100,
            size: 64,
            rate,
        });
    }
    v
}

/// The distinct rates of the latency phase's rows, in the order they ran.
pub fn latency_rates(rows: &[LatencyRow]) -> Vec<f64> {
    let mut rates: Vec<f64> = Vec::new();
    for r in rows {
        if !rates.contains(&r.rate) {
            rates.push(r.rate);
        }
    }
    rates
}

/// One measurement of the repeated phase: one line of `repeated.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// Open loop (at `rate`) or closed loop.
    pub open: bool,
    /// Connections.
    pub conns: u64,
    /// Message size, bytes.
    pub size: u64,
    /// Open loop: the schedule's messages/s (0 for the closed loop).
    pub rate: f64,
    /// Round, from 1.
    pub round: u32,
    /// `uring`, `epoll` or `kernel`.
    pub server: String,
    /// Echoes per second (open loop: achieved).
    pub echoes_per_sec: f64,
    /// CPU per echo, µs: the whole machine and the server process (NaN: not measured,
    /// as for the module, which has no process).
    pub machine_us_per_echo: f64,
    pub server_us_per_echo: f64,
    /// Latency, µs (open loop: corrected).
    pub p50_us: f64,
    pub p99_us: f64,
    /// Wrong bytes, resets, failed connects.
    pub errors: u64,
    /// Echoes in the measured window. This and the fields below are `None` when read
    /// from a file written before they were kept.
    pub echoes: Option<u64>,
    /// Open loop: messages due in the window, and those not echoed by the end of the
    /// drain (0 and 0 for the closed loop).
    pub scheduled: Option<u64>,
    pub unfinished: Option<u64>,
    /// Closed loop: connections that made no progress in the whole window.
    pub stalled: Option<u64>,
    /// Load generator CPU, % of one CPU, and its threads.
    pub client_cpu_pct: Option<f64>,
    pub load_threads: Option<u64>,
    /// Open loop: p99 of the load generator's own send lateness, µs (NaN: closed loop).
    pub lag_p99_us: Option<f64>,
}

/// Why a measurement does not count.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// Wrong bytes, resets or failed connects.
    Errors(u64),
    /// Nothing came back.
    NoEchoes,
    /// Echoes in the window, under [`MIN_ECHOES`].
    TooFewEchoes(u64),
    /// Open loop: achieved below [`MIN_RATE_KEPT`] of the rate.
    RateNotKept { achieved: f64, rate: f64 },
    /// Open loop: messages due in the window never echoed.
    Unfinished { unfinished: u64, scheduled: u64 },
    /// Closed loop: connections that made no progress in the whole window.
    Stalled(u64),
    /// Open loop: the load generator's send lag p99, µs, above [`LAG_SATURATED_US`].
    LoadGeneratorBehind(f64),
    /// Open loop: corrected p50 above one slot ([`backlog_slot_us`]), both µs.
    Backlogged { p50_us: f64, slot_us: f64 },
}

// No commas: the reasons go into one CSV field.
impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Errors(n) => write!(f, "{n} errors (wrong bytes/resets/failed connects)"),
            Reason::NoEchoes => write!(f, "no echo completed"),
            Reason::TooFewEchoes(n) => write!(f, "only {n} echoes (floor {MIN_ECHOES})"),
            Reason::RateNotKept { achieved, rate } => write!(
                f,
                "rate not kept: {achieved:.0} of {rate:.0}/s ({:.0}%; floor {:.0}%)",
                achieved / rate * 100.0,
                MIN_RATE_KEPT * 100.0
            ),
            Reason::Unfinished {
                unfinished,
                scheduled,
            } => write!(f, "{unfinished} of {scheduled} messages unfinished"),
            Reason::Stalled(n) => write!(f, "{n} connections stalled for the whole window"),
            Reason::Backlogged { p50_us, slot_us } => write!(
                f,
                "backlogged: corrected p50 {p50_us:.0} µs above one slot of a connection \
                 ({slot_us:.0} µs)"
            ),
            Reason::LoadGeneratorBehind(lag) => write!(
                f,
                "load generator behind (send lag p99 {lag:.0} µs; limit {LAG_SATURATED_US:.0}): \
                 it measured the harness"
            ),
        }
    }
}

/// The one validity rule of the repeated phase: every reason `m` does not count, none
/// when it is valid. A figure the file did not keep (`None`) is not checked.
pub fn invalid_reasons(m: &Measurement) -> Vec<Reason> {
    let mut why = Vec::new();
    if m.errors > 0 {
        why.push(Reason::Errors(m.errors));
    }
    let none = match m.echoes {
        Some(n) => n == 0,
        None => m.echoes_per_sec <= 0.0 || !m.echoes_per_sec.is_finite(),
    };
    if none {
        why.push(Reason::NoEchoes);
    } else if let Some(n) = m.echoes.filter(|&n| n < MIN_ECHOES) {
        why.push(Reason::TooFewEchoes(n));
    }
    if m.open {
        if m.rate > 0.0 && !none && m.echoes_per_sec < MIN_RATE_KEPT * m.rate {
            why.push(Reason::RateNotKept {
                achieved: m.echoes_per_sec,
                rate: m.rate,
            });
        }
        if let (Some(unfinished), Some(scheduled)) = (m.unfinished, m.scheduled) {
            if unfinished > 0 {
                why.push(Reason::Unfinished {
                    unfinished,
                    scheduled,
                });
            }
        }
        if let Some(lag) = m.lag_p99_us.filter(|&l| l > LAG_SATURATED_US) {
            why.push(Reason::LoadGeneratorBehind(lag));
        }
        if m.rate > 0.0 {
            let slot_us = backlog_slot_us(m.conns, m.rate);
            if m.p50_us > slot_us {
                why.push(Reason::Backlogged {
                    p50_us: m.p50_us,
                    slot_us,
                });
            }
        }
    } else if let Some(n) = m.stalled.filter(|&n| n > 0) {
        why.push(Reason::Stalled(n));
    }
    why
}

impl Measurement {
    /// Where it was measured, as the summary names it.
    pub fn point(&self) -> String {
        if self.open {
            format!(
                "open loop {} conns × {} B at {:.0}/s",
                self.conns, self.size, self.rate
            )
        } else {
            format!("{} conns × {} B", self.conns, self.size)
        }
    }

    /// Whether the load generator was the limit (closed loop: its threads at least
    /// [`CLIENT_LIMIT_PCT`] busy): the client's CPU share then, or `None`.
    pub fn client_bound(&self) -> Option<f64> {
        let (pct, threads) = (self.client_cpu_pct?, self.load_threads?.max(1));
        (!self.open && pct >= CLIENT_LIMIT_PCT * threads as f64).then_some(pct)
    }

    /// One line of `repeated.csv`, with the rule's verdict in the last two columns.
    fn to_csv_line(&self) -> String {
        let reasons: Vec<String> = invalid_reasons(self)
            .iter()
            .map(ToString::to_string)
            .collect();
        let opt = |v: Option<u64>| v.map_or("NaN".to_string(), |v| v.to_string());
        let optf = |v: Option<f64>, d: usize| v.map_or("NaN".to_string(), |v| format!("{v:.d$}"));
        format!(
            "{},{},{},{:.0},{},{},{:.1},{:.3},{:.3},{:.1},{:.1},{},{},{},{},{},{},{},{},{},{}\n",
            if self.open { "open" } else { "closed" },
            self.conns,
            self.size,
            self.rate,
            self.round,
            self.server,
            self.echoes_per_sec,
            self.machine_us_per_echo,
            self.server_us_per_echo,
            self.p50_us,
            self.p99_us,
            self.errors,
            opt(self.echoes),
            opt(self.scheduled),
            opt(self.unfinished),
            opt(self.stalled),
            optf(self.client_cpu_pct, 1),
            opt(self.load_threads),
            optf(self.lag_p99_us, 1),
            reasons.is_empty(),
            reasons.join("; ")
        )
    }
}

/// The columns both layouts share.
fn parse_common(f: &Fields<'_>) -> Option<Measurement> {
    let open = match f.str(0)? {
        "open" => true,
        "closed" => false,
        _ => return None,
    };
    Some(Measurement {
        open,
        conns: f.parse(1)?,
        size: f.parse(2)?,
        rate: f.parse(3)?,
        round: f.parse(4)?,
        server: f.str(5)?.to_string(),
        echoes_per_sec: f.parse(6)?,
        machine_us_per_echo: f.parse(7)?,
        server_us_per_echo: f.parse(8)?,
        p50_us: f.parse(9)?,
        p99_us: f.parse(10)?,
        errors: f.parse(11)?,
        echoes: None,
        scheduled: None,
        unfinished: None,
        stalled: None,
        client_cpu_pct: None,
        load_threads: None,
        lag_p99_us: None,
    })
}

/// `repeated.csv`'s measurements, from either layout. `valid` and `reasons` are not read
/// back: the rule is applied again to the figures, so they cannot disagree with it.
pub fn parse(text: &str) -> Result<Vec<Measurement>> {
    if text.lines().next() == Some(LEGACY_HEADER) {
        return csv::rows(text, &LEGACY_LAYOUT, parse_common);
    }
    csv::rows(text, &LAYOUT, |f| {
        // "NaN" where a figure does not apply: none.
        let opt = |i: usize| -> Option<Option<u64>> {
            match f.str(i)? {
                "NaN" => Some(None),
                s => s.parse().ok().map(Some),
            }
        };
        let optf = |i: usize| -> Option<Option<f64>> {
            let v: f64 = f.parse(i)?;
            Some((!v.is_nan()).then_some(v))
        };
        Some(Measurement {
            echoes: opt(12)?,
            scheduled: opt(13)?,
            unfinished: opt(14)?,
            stalled: opt(15)?,
            client_cpu_pct: optf(16)?,
            load_threads: opt(17)?,
            lag_p99_us: optf(18)?,
            ..parse_common(f)?
        })
    })
}

impl Ctx<'_> {
    /// Every point, `rounds` times, servers interleaved inside each point of each round,
    /// in reverse order every other round (A B, B A, ...): a machine that drifts faster or
    /// slower during a round then favours no server; returns `repeated.csv`'s text.
    pub(super) fn repeated(
        &self,
        targets: &[Target],
        points: &[Point],
        rounds: u32,
        progress: &mut Progress,
    ) -> Result<String> {
        let (closed_secs, open_secs) = self.profile.repeat_step_secs();
        let mut csv = format!("{HEADER}\n");
        for round in 1..=rounds {
            for pt in points {
                let forward = round % 2 == 1;
                let order: Vec<&Target> = if forward {
                    targets.iter().collect()
                } else {
                    targets.iter().rev().collect()
                };
                for t in order {
                    let what = describe(pt);
                    progress.starting(format!("{} {what}, round {round}/{rounds}", t.name));
                    let m = self.measure(t, pt, round)?;
                    if m.errors > 0 || m.echoes == Some(0) {
                        // A server that died explains its errors better than they do.
                        t.check_alive()?;
                    }
                    let line = if pt.open {
                        format!(
                            "corrected p50 {}, p99 {}",
                            format_us(m.p50_us),
                            format_us(m.p99_us)
                        )
                    } else {
                        format!(
                            "{:.0} echoes/s, {:.2} µs/echo",
                            m.echoes_per_sec, m.machine_us_per_echo
                        )
                    };
                    let why: Vec<String> = invalid_reasons(&m)
                        .iter()
                        .map(ToString::to_string)
                        .collect();
                    let left = if why.is_empty() {
                        String::new()
                    } else {
                        format!("; LEFT OUT: {}", why.join("; "))
                    };
                    progress.finished(
                        if pt.open { open_secs } else { closed_secs },
                        &format!("{:<6} {what} r{round}/{rounds}: {line}{left}", t.name),
                    );
                    csv += &m.to_csv_line();
                }
            }
        }
        Ok(csv)
    }

    /// One measurement of `pt` against `t`.
    fn measure(&self, t: &Target, pt: &Point, round: u32) -> Result<Measurement> {
        let p = self.profile;
        let threads = if pt.open {
            // As in the latency phase: one thread per client CPU.
            self.args.client_cpus.len().clamp(1, pt.conns)
        } else {
            self.client_threads(pt.conns)
        };
        let load = LoadSpec {
            addr: t.addr,
            conns: pt.conns,
            size: pt.size,
            warmup: p.warmup,
            duration: if pt.open { p.latency_secs } else { p.secs },
            threads,
            cpus: self.args.client_cpus.clone(),
            seed: u64::from(round) * 104_729 + pt.size as u64,
            server_pid: t.pid(),
        };
        let base = Measurement {
            open: pt.open,
            conns: pt.conns as u64,
            size: pt.size as u64,
            rate: pt.rate,
            round,
            server: t.name.clone(),
            echoes_per_sec: 0.0,
            machine_us_per_echo: f64::NAN,
            server_us_per_echo: f64::NAN,
            p50_us: f64::NAN,
            p99_us: f64::NAN,
            errors: 0,
            echoes: None,
            scheduled: Some(0),
            unfinished: Some(0),
            stalled: Some(0),
            client_cpu_pct: None,
            load_threads: Some(threads as u64),
            lag_p99_us: None,
        };
        if pt.open {
            let r = openloop::run(&OpenSpec {
                load,
                rate: pt.rate,
            })?;
            let c = Percentiles::of(&r.corrected);
            let secs = r.window.as_secs_f64();
            let per_echo = |d: Option<std::time::Duration>| match d {
                Some(d) if r.echoes > 0 => d.as_secs_f64() * 1e6 / r.echoes as f64,
                _ => f64::NAN,
            };
            Ok(Measurement {
                echoes_per_sec: r.echoes as f64 / secs,
                machine_us_per_echo: per_echo(r.machine_cpu),
                server_us_per_echo: per_echo(r.server_cpu),
                p50_us: c.p50,
                p99_us: c.p99,
                errors: r.errors.total(),
                echoes: Some(r.echoes),
                scheduled: Some(r.scheduled),
                unfinished: Some(r.unfinished),
                client_cpu_pct: Some(r.client_cpu.as_secs_f64() / secs * 100.0),
                // No samples (every connection busy at its slot) is no figure, not 0.
                lag_p99_us: {
                    let lag = Percentiles::of(&r.send_lag);
                    (lag.count > 0).then_some(lag.p99)
                },
                ..base
            })
        } else {
            let r = loadgen::run(&load)?;
            let row = super::all::to_row(&t.name, pt.conns, pt.size, &r);
            Ok(Measurement {
                echoes_per_sec: row.echoes_per_sec,
                machine_us_per_echo: row.machine_us_per_echo,
                server_us_per_echo: row.server_us_per_echo,
                p50_us: row.p50_us,
                p99_us: row.p99_us,
                errors: row.errors,
                echoes: Some(r.echoes),
                stalled: Some(row.stalled),
                client_cpu_pct: Some(row.client_cpu_pct),
                ..base
            })
        }
    }
}

/// A point as the console's progress lines name it (short: they fit 80 columns).
fn describe(pt: &Point) -> String {
    if pt.open {
        format!("open {:.0}/s, {} x {} B", pt.rate, pt.conns, pt.size)
    } else {
        format!("{} x {} B", pt.conns, pt.size)
    }
}

/// The median of `v` (NaN for none), the mean of the middle two for an even count.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Reads one figure of a measurement.
type Figure = fn(&Measurement) -> f64;

/// One round's ratio to epoll, or why the round has none.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Server ÷ epoll, both measured validly in this round.
    Ratio(f64),
    /// One of the round's two measurements is invalid (listed under the rounds left out).
    Invalid,
    /// Both valid, but a figure is missing or zero (why, e.g. "epoll's ... read 0").
    NoFigure(String),
}

/// What a measure's rounds add up to.
#[derive(Debug, Clone, PartialEq)]
pub enum Median {
    /// Enough valid rounds: their median ratio, min and max.
    Decided {
        median: f64,
        min: f64,
        max: f64,
        valid: usize,
        rounds: usize,
    },
    /// Fewer valid rounds than [`min_valid_rounds`].
    Undecided { valid: usize, rounds: usize },
    /// Enough valid rounds, but the figure is missing or zero in them (why).
    NotApplicable(String),
}

impl Median {
    /// "1.02× (0.99–1.29)", "undecided (1 of 7 rounds valid)" or "n/a (why)"; `bold`
    /// marks the figure to quote in Markdown.
    fn render(&self, bold: bool) -> String {
        match self {
            Median::Decided {
                median, min, max, ..
            } => {
                let b = if bold { "**" } else { "" };
                format!("{b}{median:.2}×{b} ({min:.2}–{max:.2})")
            }
            Median::Undecided { valid, rounds } => {
                format!("undecided ({valid} of {rounds} rounds valid)")
            }
            Median::NotApplicable(why) => format!("n/a ({why})"),
        }
    }
}

/// One measure of one server against epoll at one point, every round.
#[derive(Debug, Clone, PartialEq)]
pub struct Measure {
    /// `echoes/s`, `corrected p99`, ...
    pub name: &'static str,
    /// In round order.
    pub cells: Vec<Cell>,
    /// Over the valid rounds.
    pub median: Median,
}

/// One server against epoll at one point.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// As [`Measurement::point`] names it.
    pub point: String,
    /// Open loop, and the message size (which chart shows the point).
    pub open: bool,
    pub size: u64,
    /// The server compared with epoll.
    pub server: String,
    /// The first is the one the target names (echoes/s, or corrected p99).
    pub measures: Vec<Measure>,
    /// The load generator's median CPU %, when it was the limit in most valid rounds.
    pub client_bound: Option<f64>,
    /// The rounds the cells are of, in order.
    pub rounds: Vec<u32>,
}

/// A measurement left out of every median, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct LeftOut {
    /// Where, in which round, and which server: enough to find its line in the CSV.
    pub point: String,
    pub round: u32,
    pub server: String,
    /// Every reason [`invalid_reasons`] gave, none left out.
    pub reasons: Vec<Reason>,
}

/// The repeated phase judged: per point and server, the ratios to epoll and their
/// medians over valid rounds, and every measurement left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// Per point (in run order) and server other than epoll.
    pub comparisons: Vec<Comparison>,
    /// In run order, for the problems list.
    pub left_out: Vec<LeftOut>,
}

impl Analysis {
    /// Judge `rows` (every point in run order; servers in order of appearance).
    pub fn of(rows: &[Measurement]) -> Analysis {
        let mut order: Vec<String> = Vec::new();
        let mut servers: Vec<&str> = Vec::new();
        let mut by: BTreeMap<(String, &str), BTreeMap<u32, &Measurement>> = BTreeMap::new();
        let mut rounds: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        let mut left_out = Vec::new();
        for m in rows {
            let point = m.point();
            if !order.contains(&point) {
                order.push(point.clone());
            }
            if m.server != "epoll" && !servers.contains(&m.server.as_str()) {
                servers.push(&m.server);
            }
            let r = rounds.entry(point.clone()).or_default();
            if !r.contains(&m.round) {
                r.push(m.round);
            }
            let reasons = invalid_reasons(m);
            if !reasons.is_empty() {
                left_out.push(LeftOut {
                    point: point.clone(),
                    round: m.round,
                    server: m.server.clone(),
                    reasons,
                });
            }
            by.entry((point, m.server.as_str()))
                .or_default()
                .insert(m.round, m);
        }
        let mut comparisons = Vec::new();
        for point in &order {
            let Some(base) = by.get(&(point.clone(), "epoll")) else {
                continue;
            };
            let mut rs = rounds.get(point).cloned().unwrap_or_default();
            rs.sort_unstable();
            for &server in &servers {
                let Some(mine) = by.get(&(point.clone(), server)) else {
                    continue;
                };
                let Some(first) = mine.values().next() else {
                    continue;
                };
                let (open, size) = (first.open, first.size);
                let measures: Vec<(&'static str, Figure)> = if open {
                    // p50 and the server's CPU per echo explain a p99 ratio that is not
                    // noise: at a fixed rate each wake-up echoes few messages, so a
                    // longer per-message path shows in every percentile.
                    vec![
                        ("corrected p99", |m| m.p99_us),
                        ("corrected p50", |m| m.p50_us),
                        ("server CPU per echo", |m| m.server_us_per_echo),
                    ]
                } else {
                    vec![
                        ("echoes/s", |m| m.echoes_per_sec),
                        ("machine CPU per echo", |m| m.machine_us_per_echo),
                    ]
                };
                // Both measurements of a round, when both are valid.
                let pairs: Vec<Option<(&Measurement, &Measurement)>> = rs
                    .iter()
                    .map(|r| {
                        let (a, b) = (mine.get(r)?, base.get(r)?);
                        (invalid_reasons(a).is_empty() && invalid_reasons(b).is_empty())
                            .then_some((*a, *b))
                    })
                    .collect();
                let valid: Vec<(&Measurement, &Measurement)> =
                    pairs.iter().flatten().copied().collect();
                let measures = measures
                    .into_iter()
                    .map(|(name, get)| {
                        let cells: Vec<Cell> = pairs
                            .iter()
                            .map(|p| match p {
                                None => Cell::Invalid,
                                Some((a, b)) => ratio(name, a, b, get),
                            })
                            .collect();
                        let median = summarise(&cells, rs.len());
                        Measure {
                            name,
                            cells,
                            median,
                        }
                    })
                    .collect();
                let bound: Vec<f64> = valid
                    .iter()
                    .flat_map(|(a, b)| [a.client_bound(), b.client_bound()])
                    .flatten()
                    .collect();
                let client_bound =
                    (!valid.is_empty() && bound.len() > valid.len()).then(|| median(bound));
                comparisons.push(Comparison {
                    point: point.clone(),
                    open,
                    size,
                    server: server.to_string(),
                    measures,
                    client_bound,
                    rounds: rs.clone(),
                });
            }
        }
        Analysis {
            comparisons,
            left_out,
        }
    }

    /// The figures to quote: per comparison, the measure the target names.
    pub fn verdict(&self) -> Verdict {
        let mut charts: Vec<String> = Vec::new();
        let mut lines = Vec::new();
        for c in &self.comparisons {
            let chart = if c.open {
                format!("latency_spectrum_{OPEN_PERCENT}pct.png")
            } else {
                format!("throughput_{}B.png", c.size)
            };
            if !charts.contains(&chart) {
                charts.push(chart);
            }
            let Some(m) = c.measures.first() else {
                continue;
            };
            let sv = ServerVerdict {
                server: c.server.clone(),
                median: m.median.clone(),
                client_bound: c.client_bound,
            };
            match lines
                .iter_mut()
                .find(|l: &&mut VerdictLine| l.point == c.point)
            {
                Some(l) => l.servers.push(sv),
                None => lines.push(VerdictLine {
                    point: c.point.clone(),
                    measure: m.name,
                    servers: vec![sv],
                }),
            }
        }
        Verdict {
            lines,
            charts,
            left_out: self.left_out.len(),
        }
    }
}

/// `get(a) / get(b)`, or why there is none.
fn ratio(name: &str, a: &Measurement, b: &Measurement, get: Figure) -> Cell {
    let missing = |m: &Measurement| {
        let v = get(m);
        if v.is_nan() {
            Some(format!("no {name} figure for {}", m.server))
        } else if v <= 0.0 || v.is_infinite() {
            Some(format!("{}'s {name} read {v}", m.server))
        } else {
            None
        }
    };
    match missing(b).or_else(|| missing(a)) {
        Some(why) => Cell::NoFigure(why),
        None => Cell::Ratio(get(a) / get(b)),
    }
}

/// The median of `cells`' ratios out of `rounds`, if enough rounds are valid.
fn summarise(cells: &[Cell], rounds: usize) -> Median {
    let ratios: Vec<f64> = cells
        .iter()
        .filter_map(|c| match c {
            Cell::Ratio(r) => Some(*r),
            _ => None,
        })
        .collect();
    let valid = cells.iter().filter(|c| !matches!(c, Cell::Invalid)).count();
    let need = min_valid_rounds(rounds);
    if valid < need {
        return Median::Undecided { valid, rounds };
    }
    if ratios.len() < need {
        let why = cells.iter().find_map(|c| match c {
            Cell::NoFigure(why) => Some(why.clone()),
            _ => None,
        });
        return Median::NotApplicable(why.unwrap_or_else(|| "no figure".into()));
    }
    let min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let max = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Median::Decided {
        median: median(ratios.clone()),
        min,
        max,
        valid: ratios.len(),
        rounds,
    }
}

/// Every server against epoll at one target point, the measure the target names: one
/// line of the verdict, so that it stays a few lines with the module in the run too.
#[derive(Debug, Clone, PartialEq)]
pub struct VerdictLine {
    /// As [`Measurement::point`] names it.
    pub point: String,
    /// The measure the target names there.
    pub measure: &'static str,
    /// Each server but epoll, in run order.
    pub servers: Vec<ServerVerdict>,
}

/// One server's figure in a [`VerdictLine`].
#[derive(Debug, Clone, PartialEq)]
pub struct ServerVerdict {
    /// The server, and its median ratio to epoll (or why there is none).
    pub server: String,
    pub median: Median,
    /// The load generator's CPU %, when it was the limit.
    pub client_bound: Option<f64>,
}

/// The run's answer, first thing in `summary.md` and last on the console.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// One per target point.
    pub lines: Vec<VerdictLine>,
    /// The charts that show the target points.
    pub charts: Vec<String>,
    /// Measurements left out.
    pub left_out: usize,
}

impl Verdict {
    /// Whether every target point has a number (none undecided or n/a).
    pub fn decided(&self) -> bool {
        self.lines
            .iter()
            .flat_map(|l| &l.servers)
            .all(|v| matches!(v.median, Median::Decided { .. }))
    }

    /// The verdict's lines: a heading, one per point and server, where to look next.
    /// `md`: Markdown (a list, the medians bold), else plain console text.
    pub fn render(&self, md: bool) -> Vec<String> {
        if self.lines.is_empty() {
            return Vec::new();
        }
        let mut out = vec![if md {
            "**Verdict**: each server against epoll at the target points, the median of \
             per-round ratios over valid rounds (min–max):"
                .to_string()
        } else {
            "verdict: each server against epoll at the target points, the median of \
             per-round ratios over valid rounds (min–max):"
                .to_string()
        }];
        let item = if md { "- " } else { "  " };
        for l in &self.lines {
            let each: Vec<String> = l
                .servers
                .iter()
                .map(|v| {
                    let mut s = format!("{} {}", v.server, v.median.render(md));
                    if let Median::Decided { valid, rounds, .. } = v.median {
                        s += &format!(", {valid} of {rounds} rounds");
                    }
                    if let Some(pct) = v.client_bound {
                        s += &format!(
                            ", the load generator was the limit (client CPU {pct:.0}%): \
                             the ratio is the client's"
                        );
                    }
                    s
                })
                .collect();
            out.push(format!(
                "{item}{}, {}: {}",
                l.point,
                l.measure,
                each.join("; ")
            ));
        }
        let left = match self.left_out {
            0 => String::new(),
            1 => "; 1 measurement left out, and why".to_string(),
            n => format!("; {n} measurements left out, and why"),
        };
        out.push(format!(
            "{item}Look next: summary.md, \"Repeated points\" (every round{left}); charts {}",
            self.charts.join(", ")
        ));
        out
    }
}

/// Why there is no verdict, when servers were measured but epoll, the baseline of every
/// ratio, was not (`bench-all --only` without it): said rather than left out, so that a
/// reader does not look for ratios to a server that did not run.
pub fn no_baseline(rows: &[Measurement]) -> Option<String> {
    if rows.is_empty() || rows.iter().any(|m| m.server == "epoll") {
        return None;
    }
    Some(
        "none: epoll, the baseline of every ratio, did not run (`--only`), so no server is \
         compared with another; the figures stand alone"
            .into(),
    )
}

/// The verdict of `repeated.csv`'s text, as summary.md opens with it ("" without epoll).
pub fn verdict_md(text: &str) -> Result<String> {
    let rows = parse(text).context(REPEATED_CSV)?;
    if let Some(none) = no_baseline(&rows) {
        return Ok(format!("**Verdict**: {none}\n\n"));
    }
    let lines = Analysis::of(&rows).verdict().render(true);
    Ok(if lines.is_empty() {
        String::new()
    } else {
        lines.join("\n") + "\n\n"
    })
}

/// `repeated.csv` as a Markdown section: per point and server, the ratio to epoll in
/// each round, their median over valid rounds, and the rounds left out with their
/// reasons. Empty if there is no epoll row to compare with.
pub fn repeated_md(text: &str) -> Result<String> {
    let rows = parse(text).context(REPEATED_CSV)?;
    let a = Analysis::of(&rows);
    if a.comparisons.is_empty() {
        return Ok(String::new());
    }
    let mut s = format!(
        "\n## Repeated points (the performance targets)\n\nThe points the targets name, \
         measured again in rounds with the servers interleaved; each cell is the ratio to \
         epoll *in the same round* (one round on a shared machine can swing by a factor of \
         ten). A round counts only when both of its measurements are valid; the median of \
         the valid rounds' ratios, with their min–max, is the figure to quote. With valid \
         rounds fewer than half the rounds, or fewer than two, it reads *undecided*. `—`: \
         a round left out (listed below, with why); `n/a`: a figure missing or zero.\n\n\
         A measurement is invalid with errors, with no echo or fewer than {MIN_ECHOES} in \
         its window, with connections stalled for the whole window (closed loop), or, in \
         the open loop, with the rate not kept (achieved below {:.0}% of it), messages \
         left unfinished, a corrected p50 above one slot of a connection's schedule \
         (connections ÷ rate: the messages queued), or the load generator's send lag p99 \
         above {LAG_SATURATED_US:.0} µs (it measured the harness). Where the load generator's CPU was at \
         {CLIENT_LIMIT_PCT:.0}% or more in most valid rounds, the ratio is the client's \
         and the note says so.\n\n\
         | point | server | measure | per round | median (min–max) | note |\n\
         |---|---|---|---|---|---|\n",
        MIN_RATE_KEPT * 100.0
    );
    for c in &a.comparisons {
        for m in &c.measures {
            let cells: Vec<String> = m
                .cells
                .iter()
                .map(|cell| match cell {
                    Cell::Ratio(r) => format!("{r:.2}"),
                    Cell::Invalid => "—".to_string(),
                    Cell::NoFigure(_) => "n/a".to_string(),
                })
                .collect();
            let mut notes: Vec<String> = Vec::new();
            if let (Some(pct), "echoes/s") = (c.client_bound, m.name) {
                notes.push(format!(
                    "load generator at its limit (client CPU {pct:.0}%)"
                ));
            }
            // Each n/a cell's reason, unless the median already gives it.
            if !matches!(m.median, Median::NotApplicable(_)) {
                for (round, cell) in c.rounds.iter().zip(&m.cells) {
                    if let Cell::NoFigure(why) = cell {
                        notes.push(format!("n/a in round {round}: {why}"));
                    }
                }
            }
            let note = notes.join("; ");
            s += &format!(
                "| {} | {} | {} | {} | {} | {note} |\n",
                c.point,
                c.server,
                m.name,
                cells.join(", "),
                m.median.render(true)
            );
        }
    }
    if !a.left_out.is_empty() {
        s += "\n### Rounds left out (problems)\n\n";
        for l in &a.left_out {
            let why: Vec<String> = l.reasons.iter().map(ToString::to_string).collect();
            s += &format!(
                "- {}, round {}, {}: {}\n",
                l.point,
                l.round,
                l.server,
                why.join("; ")
            );
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid closed-loop measurement of 100 × 64 B.
    #[test]
    fn without_epoll_there_is_no_baseline_and_the_verdict_says_so() {
        let others = [closed(1, "uring", 1e5, 9.0), closed(1, "ext", 2e5, 9.0)];
        let none = no_baseline(&others).expect("no epoll");
        assert!(none.starts_with("none: epoll, the baseline"), "{none}");
        assert!(Analysis::of(&others).verdict().lines.is_empty());
        let with = [closed(1, "ext", 2e5, 9.0), closed(1, "epoll", 1e5, 9.0)];
        assert_eq!(no_baseline(&with), None);
        assert_eq!(no_baseline(&[]), None, "nothing measured, nothing to say");
    }

    fn closed(round: u32, server: &str, eps: f64, cpu: f64) -> Measurement {
        Measurement {
            open: false,
            conns: 100,
            size: 64,
            rate: 0.0,
            round,
            server: server.into(),
            echoes_per_sec: eps,
            machine_us_per_echo: cpu,
            server_us_per_echo: cpu / 2.0,
            p50_us: 10.0,
            p99_us: 20.0,
            errors: 0,
            echoes: Some(100_000),
            scheduled: Some(0),
            unfinished: Some(0),
            stalled: Some(0),
            client_cpu_pct: Some(50.0),
            load_threads: Some(1),
            lag_p99_us: None,
        }
    }

    /// A valid open-loop measurement at 50,000/s.
    fn open(round: u32, server: &str, p99: f64) -> Measurement {
        Measurement {
            open: true,
            rate: 50_000.0,
            echoes_per_sec: 50_000.0,
            p99_us: p99,
            scheduled: Some(50_000),
            lag_p99_us: Some(5.0),
            ..closed(round, server, 0.0, 4.0)
        }
    }

    fn csv_of(rows: &[Measurement]) -> String {
        let mut s = format!("{HEADER}\n");
        for r in rows {
            s += &r.to_csv_line();
        }
        s
    }

    #[test]
    fn median_of_odd_even_and_non_finite() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(vec![f64::NAN, 5.0]), 5.0);
        assert!(median(vec![]).is_nan());
    }

    #[test]
    fn points_are_the_targets_that_the_profile_measures() {
        let quick = points(&[1, 10, 100], &[64, 4096], &[50], &[71300.0]);
        assert_eq!(quick.len(), 2);
        assert!(!quick[0].open && quick[0].conns == 100 && quick[0].size == 64);
        assert!(quick[1].open && quick[1].rate == 71300.0);
        let full = points(
            &[1, 10, 100, 1000, 10000],
            &[64, 512, 4096, 65536],
            &[25, 50, 75],
            &[1.0, 2.0, 3.0],
        );
        assert_eq!(full.len(), 4);
        assert_eq!(full[3].rate, 2.0, "the 50% rate");
        assert!(points(&[1], &[64], &[25], &[1.0]).is_empty());
    }

    #[test]
    fn a_clean_measurement_has_no_reason() {
        assert_eq!(invalid_reasons(&closed(1, "uring", 1e5, 9.0)), vec![]);
        assert_eq!(invalid_reasons(&open(1, "uring", 30.0)), vec![]);
    }

    #[test]
    fn each_reason_on_its_own() {
        let c = closed(1, "epoll", 1e5, 9.0);
        let o = open(1, "epoll", 30.0);
        let cases: Vec<(Measurement, Reason)> = vec![
            (
                Measurement {
                    errors: 3,
                    ..c.clone()
                },
                Reason::Errors(3),
            ),
            (
                Measurement {
                    echoes: Some(0),
                    echoes_per_sec: 0.0,
                    ..c.clone()
                },
                Reason::NoEchoes,
            ),
            (
                Measurement {
                    echoes: Some(MIN_ECHOES - 1),
                    ..c.clone()
                },
                Reason::TooFewEchoes(MIN_ECHOES - 1),
            ),
            (
                Measurement {
                    stalled: Some(7),
                    ..c.clone()
                },
                Reason::Stalled(7),
            ),
            (
                Measurement {
                    echoes_per_sec: 0.89 * 50_000.0,
                    ..o.clone()
                },
                Reason::RateNotKept {
                    achieved: 0.89 * 50_000.0,
                    rate: 50_000.0,
                },
            ),
            (
                Measurement {
                    unfinished: Some(2),
                    ..o.clone()
                },
                Reason::Unfinished {
                    unfinished: 2,
                    scheduled: 50_000,
                },
            ),
            (
                Measurement {
                    lag_p99_us: Some(LAG_SATURATED_US + 1.0),
                    ..o.clone()
                },
                Reason::LoadGeneratorBehind(LAG_SATURATED_US + 1.0),
            ),
            (
                // 100 connections at 50,000/s: a slot every 2,000 µs per connection.
                Measurement {
                    p50_us: 2001.0,
                    lag_p99_us: None,
                    ..o.clone()
                },
                Reason::Backlogged {
                    p50_us: 2001.0,
                    slot_us: 2000.0,
                },
            ),
        ];
        for (m, want) in cases {
            assert_eq!(invalid_reasons(&m), vec![want.clone()], "{m:?}");
            assert!(!want.to_string().contains(','), "one CSV field: {want}");
        }
        // At the floors themselves, still valid.
        let at = Measurement {
            echoes: Some(MIN_ECHOES),
            ..c.clone()
        };
        assert_eq!(invalid_reasons(&at), vec![]);
        let kept = Measurement {
            echoes_per_sec: MIN_RATE_KEPT * 50_000.0,
            lag_p99_us: Some(LAG_SATURATED_US),
            p50_us: 2000.0,
            ..o.clone()
        };
        assert_eq!(invalid_reasons(&kept), vec![]);
        // Stalled is the closed loop's; the open loop counts unfinished messages instead.
        let open_stalled = Measurement {
            stalled: Some(5),
            ..o
        };
        assert_eq!(invalid_reasons(&open_stalled), vec![]);
        // A busy load generator is a note about the ratio, not a broken measurement.
        let busy = Measurement {
            client_cpu_pct: Some(99.0),
            ..c
        };
        assert_eq!(invalid_reasons(&busy), vec![]);
        assert_eq!(busy.client_bound(), Some(99.0));
    }

    #[test]
    fn the_issue_12_rounds_are_all_invalid() {
        // 14 open-loop rounds at 51,200/s achieving 0–23,000/s, corrected p50 in seconds.
        let slow = Measurement {
            rate: 51_200.0,
            echoes_per_sec: 23_000.0,
            echoes: Some(115_000),
            scheduled: Some(256_000),
            unfinished: Some(141_000),
            p50_us: 2.6e6,
            ..open(1, "uring", 3.9e6)
        };
        let why = invalid_reasons(&slow);
        assert!(
            matches!(why[0], Reason::RateNotKept { .. })
                && matches!(why[2], Reason::Backlogged { .. })
                && why.len() == 3,
            "{why:?}"
        );
        // 100 × 64 B at 114 echoes/s for 1 s.
        let crawl = Measurement {
            echoes_per_sec: 114.0,
            echoes: Some(114),
            stalled: Some(40),
            ..closed(1, "epoll", 0.0, 9.0)
        };
        assert_eq!(
            invalid_reasons(&crawl),
            vec![Reason::TooFewEchoes(114), Reason::Stalled(40)]
        );
    }

    #[test]
    fn legacy_files_are_judged_on_what_they_kept() {
        let text = format!(
            "{LEGACY_HEADER}\n\
             closed,1000,64,0,1,uring,140000.0,13.0,6.0,7000.0,9000.0,0\n\
             closed,1000,64,0,1,epoll,0.0,NaN,NaN,NaN,NaN,0\n"
        );
        let rows = parse(&text).expect("legacy parses");
        assert_eq!(rows[0].echoes, None);
        assert_eq!(invalid_reasons(&rows[0]), vec![]);
        assert_eq!(invalid_reasons(&rows[1]), vec![Reason::NoEchoes]);
    }

    #[test]
    fn undecided_needs_half_the_rounds_and_at_least_two() {
        assert_eq!(min_valid_rounds(1), 2);
        assert_eq!(min_valid_rounds(2), 2);
        assert_eq!(min_valid_rounds(7), 4);
        assert_eq!(min_valid_rounds(14), 7);
        let r = |x: f64| Cell::Ratio(x);
        let three_of_seven = [
            r(1.0),
            r(1.1),
            r(0.9),
            Cell::Invalid,
            Cell::Invalid,
            Cell::Invalid,
            Cell::Invalid,
        ];
        assert_eq!(
            summarise(&three_of_seven, 7),
            Median::Undecided {
                valid: 3,
                rounds: 7
            }
        );
        let mut four = three_of_seven.clone();
        four[3] = r(2.0);
        assert_eq!(
            summarise(&four, 7),
            Median::Decided {
                median: 1.05,
                min: 0.9,
                max: 2.0,
                valid: 4,
                rounds: 7
            }
        );
    }

    #[test]
    fn a_zero_or_missing_figure_is_na_with_the_reason() {
        let uring = closed(1, "uring", 1e5, 9.0);
        let zero = Measurement {
            server_us_per_echo: 0.0,
            ..closed(1, "epoll", 1e5, 9.0)
        };
        let cpu: Figure = |m| m.server_us_per_echo;
        assert_eq!(
            ratio("server CPU per echo", &uring, &zero, cpu),
            Cell::NoFigure("epoll's server CPU per echo read 0".into())
        );
        assert_eq!(
            ratio("server CPU per echo", &zero, &uring, cpu),
            Cell::NoFigure("epoll's server CPU per echo read 0".into()),
            "a zero numerator is no ratio either (it read 0.00 before)"
        );
        let kernel = Measurement {
            server_us_per_echo: f64::NAN,
            server: "kernel".into(),
            ..uring.clone()
        };
        let cells = [ratio("server CPU per echo", &kernel, &uring, cpu)];
        assert_eq!(
            summarise(&cells, 1),
            Median::Undecided {
                valid: 1,
                rounds: 1
            }
        );
        // Three rounds, epoll's server CPU read 0 in the first: the median is of the
        // other two, and the cell's note says why it is n/a.
        let mut rows = vec![uring.clone(), zero.clone()];
        for round in 2..=3 {
            rows.push(closed(round, "uring", 1e5, 9.0));
            rows.push(closed(round, "epoll", 1e5, 9.0));
        }
        let open_rows: Vec<Measurement> = rows
            .iter()
            .map(|m| Measurement {
                open: true,
                rate: 50_000.0,
                echoes_per_sec: 50_000.0,
                ..m.clone()
            })
            .collect();
        let md = repeated_md(&csv_of(&open_rows)).expect("renders");
        assert!(
            md.contains(
                "| server CPU per echo | n/a, 1.00, 1.00 | **1.00×** (1.00–1.00) | n/a in \
                 round 1: epoll's server CPU per echo read 0 |"
            ),
            "{md}"
        );
        let two = [cells[0].clone(), cells[0].clone()];
        assert_eq!(
            summarise(&two, 2),
            Median::NotApplicable("no server CPU per echo figure for kernel".into())
        );
    }

    #[test]
    fn csv_round_trips_and_keeps_the_verdict_columns() {
        let rows = vec![
            closed(1, "uring", 2e5, 9.0),
            Measurement {
                stalled: Some(3),
                ..closed(1, "epoll", 1e5, 9.0)
            },
            Measurement {
                lag_p99_us: Some(250.0),
                ..open(1, "uring", 30.0)
            },
        ];
        let text = csv_of(&rows);
        let back = parse(&text).expect("parses");
        assert_eq!(back.len(), 3);
        assert_eq!(back[1].stalled, Some(3));
        assert_eq!(back[0].lag_p99_us, None, "NaN: the closed loop has no lag");
        assert_eq!(back[2].lag_p99_us, Some(250.0));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].ends_with(",true,"), "{}", lines[1]);
        assert!(
            lines[2].ends_with(",false,3 connections stalled for the whole window"),
            "{}",
            lines[2]
        );
        assert!(
            lines[3].contains(",false,load generator behind"),
            "{}",
            lines[3]
        );
        let e = parse(&format!("{HEADER}\nclosed,100\n")).expect_err("short row");
        assert_eq!(e.to_string(), "line 2: malformed");
        assert!(parse("kind,whatever\n").is_err(), "unknown header");
    }

    #[test]
    fn summary_and_verdict_from_rows_with_an_invalid_round_and_an_undecided_median() {
        let mut rows = Vec::new();
        // Closed loop, 3 rounds: round 2's epoll stalled, so round 2 is left out and the
        // median is of rounds 1 and 3.
        for (round, u, e) in [(1, 200.0, 100.0), (2, 90.0, 100.0), (3, 330.0, 300.0)] {
            rows.push(Measurement {
                client_cpu_pct: Some(97.0),
                ..closed(round, "uring", u * 1000.0, 5.0)
            });
            let mut epoll = Measurement {
                client_cpu_pct: Some(97.0),
                ..closed(round, "epoll", e * 1000.0, 10.0)
            };
            if round == 2 {
                epoll.stalled = Some(12);
                epoll.echoes = Some(500);
            }
            rows.push(epoll);
        }
        // Open loop, 3 rounds, only round 1 valid: undecided.
        for round in 1..=3 {
            rows.push(open(round, "uring", 50.0));
            let mut e = open(round, "epoll", 100.0);
            if round > 1 {
                e.echoes_per_sec = 20_000.0;
                e.unfinished = Some(30_000);
            }
            rows.push(e);
        }
        let text = csv_of(&rows);
        let md = repeated_md(&text).expect("renders");
        assert!(
            md.contains(
                "| 100 conns × 64 B | uring | echoes/s | 2.00, —, 1.10 | **1.55×** (1.10–2.00) \
                 | load generator at its limit (client CPU 97%) |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| machine CPU per echo | 0.50, —, 0.50 | **0.50×** (0.50–0.50) |  |"),
            "{md}"
        );
        assert!(
            md.contains("| corrected p99 | 0.50, —, — | undecided (1 of 3 rounds valid) |"),
            "{md}"
        );
        assert!(
            md.contains(
                "- 100 conns × 64 B, round 2, epoll: only 500 echoes (floor 1000); 12 \
                 connections stalled for the whole window\n"
            ),
            "{md}"
        );
        assert!(
            md.contains("- open loop 100 conns × 64 B at 50000/s, round 3, epoll: rate not kept"),
            "{md}"
        );
        assert!(!md.contains("**0.50×** (0.50–0.50) | undecided"), "{md}");

        let v = Analysis::of(&parse(&text).expect("parses")).verdict();
        assert!(!v.decided(), "the open loop is undecided");
        let lines = v.render(false);
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert!(lines[0].starts_with("verdict: "), "{lines:#?}");
        assert_eq!(
            lines[1],
            "  100 conns × 64 B, echoes/s: uring 1.55× (1.10–2.00), 2 of 3 rounds, the load \
             generator was the limit (client CPU 97%): the ratio is the client's"
        );
        assert_eq!(
            lines[2],
            "  open loop 100 conns × 64 B at 50000/s, corrected p99: uring undecided (1 of 3 \
             rounds valid)"
        );
        assert!(
            lines[3].contains("3 measurements left out")
                && lines[3].contains("throughput_64B.png, latency_spectrum_50pct.png"),
            "{}",
            lines[3]
        );
        let vmd = verdict_md(&text).expect("renders");
        assert!(vmd.starts_with("**Verdict**"), "{vmd}");
        assert!(
            vmd.contains("- 100 conns × 64 B, echoes/s: uring **1.55×**"),
            "{vmd}"
        );
    }

    #[test]
    fn every_server_at_a_point_shares_its_verdict_line() {
        let mut rows = Vec::new();
        for round in 1..=2 {
            rows.push(closed(round, "uring", 1.1e5, 9.0));
            rows.push(closed(round, "epoll", 1e5, 9.0));
            rows.push(Measurement {
                server_us_per_echo: f64::NAN,
                ..closed(round, "kernel", 2e5, 9.0)
            });
        }
        let v = Analysis::of(&rows).verdict();
        assert!(v.decided());
        let lines = v.render(false);
        assert_eq!(
            lines[1],
            "  100 conns × 64 B, echoes/s: uring 1.10× (1.10–1.10), 2 of 2 rounds; kernel \
             2.00× (2.00–2.00), 2 of 2 rounds"
        );
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert!(lines[2].ends_with("(every round); charts throughput_64B.png"));
    }

    #[test]
    fn nothing_to_compare_is_no_section_and_no_ratios() {
        let only_uring = csv_of(&[closed(1, "uring", 1e5, 9.0)]);
        assert_eq!(repeated_md(&only_uring).expect("parses"), "");
        // Without epoll the verdict says why there are no ratios rather than vanish.
        assert_eq!(
            verdict_md(&only_uring).expect("parses"),
            format!(
                "**Verdict**: {}\n\n",
                no_baseline(&[closed(1, "uring", 1e5, 9.0)]).expect("none")
            )
        );
        let only_epoll = csv_of(&[closed(1, "epoll", 1e5, 9.0)]);
        assert_eq!(repeated_md(&only_epoll).expect("parses"), "");
        assert_eq!(verdict_md(&only_epoll).expect("parses"), "");
    }
}
