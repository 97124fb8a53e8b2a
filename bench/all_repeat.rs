//! bench-all's repeated phase: the points the performance targets are judged at, measured
//! again for several rounds with the servers interleaved inside each round. On a shared
//! machine one measurement of a point can swing by a factor of ten (a neighbour's burst
//! lands on one server's turn), so a ratio is taken inside each round, where both servers
//! saw the same machine, and the median of those per-round ratios is reported.
//!
//! A round only counts when both of its measurements are valid (the one rule, in
//! `validity.rs`): a
//! host that stalls for part of the phase produces rounds that measured the stall, and a
//! median over them is a number about the host. Too few valid rounds and the median reads
//! *undecided* instead of a number.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::all::PhaseRunner;
use super::hist::{format_us, Percentiles};
use super::loadgen;
use super::openloop::{self, OpenSpec};
use super::servers::Target;
use super::validity::{self, Judged, Observed, Reason};
use crate::error::Result;

/// The closed-loop points the targets name: (connections, message size).
const CLOSED_POINTS: [(usize, usize); 3] = [(100, 64), (1000, 64), (100, 65536)];
/// The open-loop rate the targets name, as a percentage of epoll's peak.
pub const OPEN_PERCENT: u32 = 50;

/// Valid rounds a median needs before it is a number: at least half the rounds, and at
/// least two. A median of one round is the single measurement this phase exists to
/// avoid, and when most rounds are invalid the host was disturbed for most of the phase,
/// so the survivors are not a fair sample of it.
pub fn min_valid_rounds(rounds: usize) -> usize {
    rounds.div_ceil(2).max(2)
}

/// One point the targets name, to measure again: closed loop, or open loop at
/// [`OPEN_PERCENT`] of epoll's peak (the rate is resolved from the throughput phase).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TargetPoint {
    pub open: bool,
    /// Connections.
    pub conns: usize,
    /// Message size, bytes.
    pub size: usize,
}

/// The target points `profile`'s matrix measures: the closed-loop ones its connections
/// and sizes include, and the open-loop one if the latency phase runs [`OPEN_PERCENT`].
pub fn targets(conns: &[usize], sizes: &[usize], percents: &[u32]) -> Vec<TargetPoint> {
    let mut v: Vec<TargetPoint> = CLOSED_POINTS
        .iter()
        .filter(|(c, s)| conns.contains(c) && sizes.contains(s))
        .map(|&(conns, size)| TargetPoint {
            open: false,
            conns,
            size,
        })
        .collect();
    if percents.contains(&OPEN_PERCENT) {
        v.push(TargetPoint {
            open: true,
            conns: 100,
            size: 64,
        });
    }
    v
}

/// One measurement of the repeated phase: one line of `repeated.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// Open loop (at `rate`) or closed loop: the `kind` column, `open` or `closed`.
    #[serde(rename = "kind", with = "loop_kind")]
    pub open: bool,
    /// Connections.
    pub conns: u64,
    /// Message size, bytes.
    pub size: u64,
    /// Open loop: the schedule's messages/s (0 for the closed loop).
    pub rate: f64,
    /// Round, from 1.
    pub round: u32,
    /// `uring`, `epoll`, `kernel` or an outside server's name.
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
    /// from a file written before they were kept (or holding `NaN` for them).
    #[serde(default, deserialize_with = "::csv::invalid_option")]
    pub echoes: Option<u64>,
    /// Open loop: messages due in the window, and those not echoed by the end of the
    /// drain (0 and 0 for the closed loop).
    #[serde(default, deserialize_with = "::csv::invalid_option")]
    pub scheduled: Option<u64>,
    #[serde(default, deserialize_with = "::csv::invalid_option")]
    pub unfinished: Option<u64>,
    /// Closed loop: connections that made no progress in the whole window.
    #[serde(default, deserialize_with = "::csv::invalid_option")]
    pub stalled: Option<u64>,
    /// Load generator CPU, % of one CPU, and its threads.
    #[serde(default, deserialize_with = "finite")]
    pub client_cpu_pct: Option<f64>,
    #[serde(default, deserialize_with = "::csv::invalid_option")]
    pub load_threads: Option<u64>,
    /// Open loop: p99 of the load generator's own send lateness, µs (none: closed loop,
    /// or no connection was idle at its slot).
    #[serde(default, deserialize_with = "finite")]
    pub lag_p99_us: Option<f64>,
    /// How long the server's and the load generator's threads waited for a CPU, % of
    /// the window.
    #[serde(default, deserialize_with = "finite")]
    pub server_wait_pct: Option<f64>,
    #[serde(default, deserialize_with = "finite")]
    pub client_wait_pct: Option<f64>,
    /// The validity rule's reasons ("" when valid), as [`Measurement::judged`] sets them.
    #[serde(default)]
    pub problems: String,
}

/// `open` / `closed` for the `kind` column.
mod loop_kind {
    use super::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(open: &bool, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if *open { "open" } else { "closed" })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        match String::deserialize(d)?.as_str() {
            "open" => Ok(true),
            "closed" => Ok(false),
            other => Err(serde::de::Error::custom(format!(
                "kind {other:?}: expected open or closed"
            ))),
        }
    }
}

/// An optional figure: empty, unparsable or NaN are none.
fn finite<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<f64>, D::Error> {
    Ok(::csv::invalid_option(d)?.filter(|v: &f64| !v.is_nan()))
}

impl Judged for Measurement {
    fn observed(&self) -> Observed {
        Observed {
            open: self.open,
            conns: self.conns,
            rate: self.rate,
            echoes: self.echoes,
            echoes_per_sec: self.echoes_per_sec,
            errors: self.errors,
            scheduled: self.scheduled,
            unfinished: self.unfinished,
            stalled: self.stalled,
            lag_p99_us: self.lag_p99_us,
            queued_p50_us: self.open.then_some(self.p50_us),
            client_cpu_pct: self.client_cpu_pct,
            load_threads: self.load_threads,
            server_wait_pct: self.server_wait_pct,
            client_wait_pct: self.client_wait_pct,
            ..Observed::default()
        }
    }
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

    /// Whether the load generator was the limit: the client's CPU share then, or `None`.
    pub fn client_bound(&self) -> Option<f64> {
        validity::client_bound(&self.observed())
    }

    /// With the `problems` column set from the rule.
    pub fn judged(mut self) -> Measurement {
        self.problems = validity::describe(&self.reasons());
        self
    }
}

impl PhaseRunner<'_> {
    /// One measurement of `pt` against `t` in `round` of `rounds` (`rate`: the open
    /// loop's, 0 for the closed loop), with its progress line; judged.
    pub(super) fn repeat(
        &self,
        t: &Target,
        pt: &TargetPoint,
        (round, rounds): (u32, u32),
        rate: f64,
    ) -> Result<(Measurement, String)> {
        let m = self.measure(t, pt, round, rate)?;
        if m.errors > 0 || m.echoes == Some(0) {
            // A server that died explains its errors better than they do.
            t.check_alive()?;
        }
        let what = describe(pt, rate);
        let figure = if pt.open {
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
        let line = format!("{:<6} {what} r{round}/{rounds}: {figure}", t.name);
        Ok((m.judged(), line))
    }

    /// The measurement itself.
    fn measure(&self, t: &Target, pt: &TargetPoint, round: u32, rate: f64) -> Result<Measurement> {
        let p = self.profile;
        let threads = if pt.open {
            self.open_threads(pt.conns)
        } else {
            self.client_threads(pt.conns)
        };
        let load = self.load_spec(
            t,
            (pt.conns, pt.size),
            (if pt.open { p.latency_secs } else { p.secs }, threads),
            u64::from(round) * 104_729 + pt.size as u64,
        );
        let base = Measurement {
            open: pt.open,
            conns: pt.conns as u64,
            size: pt.size as u64,
            rate,
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
            server_wait_pct: None,
            client_wait_pct: None,
            problems: String::new(),
        };
        if pt.open {
            let r = openloop::run(&OpenSpec { load, rate })?;
            let c = Percentiles::of(&r.corrected);
            let secs = r.usage.window.as_secs_f64();
            let per_echo = |d: Option<std::time::Duration>| match d {
                Some(d) if r.echoes > 0 => d.as_secs_f64() * 1e6 / r.echoes as f64,
                _ => f64::NAN,
            };
            Ok(Measurement {
                echoes_per_sec: r.echoes as f64 / secs,
                machine_us_per_echo: per_echo(r.usage.machine_cpu),
                server_us_per_echo: per_echo(r.usage.server_cpu),
                p50_us: c.p50,
                p99_us: c.p99,
                errors: r.errors.failures(),
                echoes: Some(r.echoes),
                scheduled: Some(r.scheduled),
                unfinished: Some(r.unfinished),
                client_cpu_pct: Some(r.usage.client_cpu.as_secs_f64() / secs * 100.0),
                // No samples (every connection busy at its slot) is no figure, not 0.
                lag_p99_us: {
                    let lag = Percentiles::of(&r.send_lag);
                    (lag.count > 0).then_some(lag.p99)
                },
                server_wait_pct: r.usage.waits.pct(r.usage.window).0,
                client_wait_pct: r.usage.waits.pct(r.usage.window).1,
                ..base
            })
        } else {
            let r = loadgen::run(&load)?;
            let row = super::all::to_row(&t.name, &load, &r);
            Ok(Measurement {
                echoes_per_sec: row.echoes_per_sec,
                machine_us_per_echo: row.machine_us_per_echo,
                server_us_per_echo: row.server_us_per_echo,
                p50_us: row.p50_us,
                p99_us: row.p99_us,
                errors: row.errors,
                echoes: row.echoes,
                stalled: Some(row.stalled),
                client_cpu_pct: Some(row.client_cpu_pct),
                server_wait_pct: row.server_wait_pct,
                client_wait_pct: row.client_wait_pct,
                ..base
            })
        }
    }
}

/// A point as the console's progress lines name it (short: they fit 80 columns).
fn describe(pt: &TargetPoint, rate: f64) -> String {
    if pt.open {
        format!("open {rate:.0}/s, {} x {} B", pt.conns, pt.size)
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
    pub fn render(&self, bold: bool) -> String {
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
    /// Every reason the rule gave, none left out.
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
            let reasons = m.reasons();
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
                        (a.valid() && b.valid()).then_some((*a, *b))
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

#[cfg(test)]
mod tests {
    use super::super::export::{csv, markdown};
    use super::super::validity::{LAG_SATURATED_US, MIN_ECHOES, MIN_RATE_KEPT};
    use super::*;

    /// Rows read back from the CSV they write, judged again.
    fn round_trip(rows: &[Measurement]) -> Vec<Measurement> {
        let text = csv::to_string(rows).expect("writes");
        let back: Vec<Measurement> = csv::from_str(&text).expect("reads");
        back.into_iter().map(Measurement::judged).collect()
    }

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
            server_wait_pct: None,
            client_wait_pct: None,
            problems: String::new(),
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

    #[test]
    fn median_of_odd_even_and_non_finite() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(vec![f64::NAN, 5.0]), 5.0);
        assert!(median(vec![]).is_nan());
    }

    #[test]
    fn targets_are_the_points_that_the_profile_measures() {
        let quick = targets(&[1, 10, 100], &[64, 4096], &[50]);
        assert_eq!(quick.len(), 2);
        assert!(!quick[0].open && quick[0].conns == 100 && quick[0].size == 64);
        assert!(quick[1].open);
        let full = targets(
            &[1, 10, 100, 1000, 10000],
            &[64, 512, 4096, 65536],
            &[25, 50, 75],
        );
        assert_eq!(full.len(), 4);
        assert!(targets(&[1], &[64], &[25]).is_empty());
    }

    #[test]
    fn a_clean_measurement_has_no_reason() {
        assert_eq!(Judged::reasons(&closed(1, "uring", 1e5, 9.0)), vec![]);
        assert_eq!(Judged::reasons(&open(1, "uring", 30.0)), vec![]);
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
            assert_eq!(Judged::reasons(&m), vec![want.clone()], "{m:?}");
            assert!(!want.to_string().contains(','), "one CSV field: {want}");
        }
        // At the floors themselves, still valid.
        let at = Measurement {
            echoes: Some(MIN_ECHOES),
            ..c.clone()
        };
        assert_eq!(Judged::reasons(&at), vec![]);
        let kept = Measurement {
            echoes_per_sec: MIN_RATE_KEPT * 50_000.0,
            lag_p99_us: Some(LAG_SATURATED_US),
            p50_us: 2000.0,
            ..o.clone()
        };
        assert_eq!(Judged::reasons(&kept), vec![]);
        // Stalled is the closed loop's; the open loop counts unfinished messages instead.
        let open_stalled = Measurement {
            stalled: Some(5),
            ..o
        };
        assert_eq!(Judged::reasons(&open_stalled), vec![]);
        // A busy load generator is a note about the ratio, not a broken measurement.
        let busy = Measurement {
            client_cpu_pct: Some(99.0),
            ..c
        };
        assert_eq!(Judged::reasons(&busy), vec![]);
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
        let why = Judged::reasons(&slow);
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
            Judged::reasons(&crawl),
            vec![Reason::TooFewEchoes(114), Reason::Stalled(40)]
        );
    }

    #[test]
    fn legacy_files_are_judged_on_what_they_kept() {
        let text = "kind,conns,size,rate,round,server,echoes_per_sec,machine_us_per_echo,\
                    server_us_per_echo,p50_us,p99_us,errors\n\
                    closed,1000,64,0,1,uring,140000.0,13.0,6.0,7000.0,9000.0,0\n\
                    closed,1000,64,0,1,epoll,0.0,NaN,NaN,NaN,NaN,0\n";
        let rows: Vec<Measurement> = csv::from_str(text).expect("legacy parses");
        assert_eq!(rows[0].echoes, None);
        assert_eq!(rows[0].reasons(), vec![]);
        assert_eq!(rows[1].reasons(), vec![Reason::NoEchoes]);
        // A file of the layout before this one: NaN where a figure did not apply, and
        // the rule's verdict in `valid,reasons`, which is judged again, not read.
        let text = "kind,conns,size,rate,round,server,echoes_per_sec,machine_us_per_echo,\
                    server_us_per_echo,p50_us,p99_us,errors,echoes,scheduled,unfinished,\
                    stalled,client_cpu_pct,load_threads,lag_p99_us,valid,reasons\n\
                    open,100,64,50000,1,epoll,50000.0,4.0,2.0,10.0,20.0,0,250000,250000,0,\
                    NaN,50.0,1,5.0,false,made up\n";
        let rows: Vec<Measurement> = csv::from_str(text).expect("parses");
        assert_eq!((rows[0].stalled, rows[0].lag_p99_us), (None, Some(5.0)));
        assert_eq!(rows[0].clone().judged().problems, "", "judged again");
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
        let md = markdown::repeated(&open_rows);
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
    fn csv_round_trips_and_keeps_the_verdict_column() {
        let rows: Vec<Measurement> = vec![
            closed(1, "uring", 2e5, 9.0),
            Measurement {
                stalled: Some(3),
                ..closed(1, "epoll", 1e5, 9.0)
            },
            Measurement {
                lag_p99_us: Some(250.0),
                ..open(1, "uring", 30.0)
            },
        ]
        .into_iter()
        .map(Measurement::judged)
        .collect();
        let text = csv::to_string(&rows).expect("writes");
        let back = round_trip(&rows);
        assert_eq!(back, rows);
        assert_eq!(back[0].lag_p99_us, None, "the closed loop has no lag");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("kind,conns,size,rate,round,server,"));
        assert!(lines[1].starts_with("closed,100,64,"), "{}", lines[1]);
        assert!(lines[1].ends_with(",1,,,,"), "{}", lines[1]);
        assert!(
            lines[2].ends_with(",3 connections stalled for the whole window"),
            "{}",
            lines[2]
        );
        assert!(lines[3].contains(",load generator behind"), "{}", lines[3]);
        let e = csv::from_str::<Measurement>(&format!("{}\nclosed,100\n", lines[0]))
            .expect_err("short row");
        assert!(e.to_string().starts_with("line 2: "), "{e}");
        let e = csv::from_str::<Measurement>(&text.replacen("closed", "shut", 1))
            .expect_err("bad kind");
        assert!(e.to_string().contains("expected open or closed"), "{e}");
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
        let md = markdown::repeated(&rows);
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

        let v = Analysis::of(&round_trip(&rows)).verdict();
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
        let vmd = markdown::verdict(&rows);
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
        let only_uring = [closed(1, "uring", 1e5, 9.0)];
        assert_eq!(markdown::repeated(&only_uring), "");
        // Without epoll the verdict says why there are no ratios rather than vanish.
        assert_eq!(
            markdown::verdict(&only_uring),
            format!(
                "**Verdict**: {}\n\n",
                no_baseline(&only_uring).expect("none")
            )
        );
        let only_epoll = [closed(1, "epoll", 1e5, 9.0)];
        assert_eq!(markdown::repeated(&only_epoll), "");
        assert_eq!(markdown::verdict(&only_epoll), "");
    }
}
