//! bench-all's repeated phase: the points the performance targets are judged at, measured
//! again for several rounds with the servers interleaved inside each round. On a shared
//! machine one measurement of a point can swing by a factor of ten (a neighbour's burst
//! lands on one server's turn), so a ratio is taken inside each round, where both servers
//! saw the same machine, and the median of those per-round ratios is reported.

use std::collections::BTreeMap;

use super::all::{Ctx, Progress};
use super::csv::{self, Layout};
use super::hist::Percentiles;
use super::loadgen::{self, LoadSpec};
use super::openloop::{self, OpenSpec};
use super::results::LatencyRow;
use super::servers::Target;
use crate::error::{Context, Result};

/// Where the repeated measurements go inside a results directory.
pub const REPEATED_CSV: &str = "repeated.csv";

const HEADER: &str = "kind,conns,size,rate,round,server,echoes_per_sec,machine_us_per_echo,\
                      server_us_per_echo,p50_us,p99_us,errors";

/// The header is skipped unread, as it always has been.
const LAYOUT: Layout = Layout {
    header: None,
    what: "repeated",
    width: 12,
};

/// The closed-loop points the targets name: (connections, message size).
const CLOSED_POINTS: [(usize, usize); 3] = [(100, 64), (1000, 64), (100, 65536)];
/// The open-loop rate the targets name, as a percentage of epoll's peak.
const OPEN_PERCENT: u32 = 50;

/// One point to repeat.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Closed loop (`rate` is 0) or open loop at `rate` messages/s.
    pub open: bool,
    pub conns: usize,
    pub size: usize,
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
        let p = self.profile;
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
                    let load = LoadSpec {
                        addr: t.addr,
                        conns: pt.conns,
                        size: pt.size,
                        warmup: p.warmup,
                        duration: if pt.open { p.latency_secs } else { p.secs },
                        threads: if pt.open {
                            // As in the latency phase: one thread per client CPU.
                            self.args.client_cpus.len().clamp(1, pt.conns)
                        } else {
                            self.client_threads(pt.conns)
                        },
                        cpus: self.args.client_cpus.clone(),
                        seed: u64::from(round) * 104_729 + pt.size as u64,
                        server_pid: t.pid(),
                    };
                    let what = describe(pt);
                    progress.starting(format!("{} {what}, round {round}/{rounds}", t.name));
                    let (line, planned) = if pt.open {
                        let r = openloop::run(&OpenSpec {
                            load,
                            rate: pt.rate,
                        })?;
                        let c = Percentiles::of(&r.corrected);
                        let secs = r.window.as_secs_f64();
                        let per_echo = |d: Option<std::time::Duration>| {
                            d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e6 / r.echoes.max(1) as f64)
                        };
                        csv += &format!(
                            "open,{},{},{:.0},{round},{},{:.1},{:.3},{:.3},{:.1},{:.1},{}\n",
                            pt.conns,
                            pt.size,
                            pt.rate,
                            t.name,
                            r.echoes as f64 / secs,
                            per_echo(r.machine_cpu),
                            per_echo(r.server_cpu),
                            c.p50,
                            c.p99,
                            r.errors.total()
                        );
                        (
                            format!("corrected p50 {:.1} µs, p99 {:.1} µs", c.p50, c.p99),
                            open_secs,
                        )
                    } else {
                        let r = loadgen::run(&load)?;
                        let row = super::all::to_row(&t.name, pt.conns, pt.size, &r);
                        csv += &format!(
                            "closed,{},{},0,{round},{},{:.1},{:.3},{:.3},{:.1},{:.1},{}\n",
                            pt.conns,
                            pt.size,
                            t.name,
                            row.echoes_per_sec,
                            row.machine_us_per_echo,
                            row.server_us_per_echo,
                            row.p50_us,
                            row.p99_us,
                            row.errors
                        );
                        (
                            format!(
                                "{:.0} echoes/s, machine CPU {:.2} µs/echo",
                                row.echoes_per_sec, row.machine_us_per_echo
                            ),
                            closed_secs,
                        )
                    };
                    progress.finished(
                        planned,
                        &format!("{:<6} {what}, round {round}/{rounds}: {line}", t.name),
                    );
                }
            }
        }
        Ok(csv)
    }
}

fn describe(pt: &Point) -> String {
    if pt.open {
        format!(
            "open loop {:.0}/s, {} conns x {} B",
            pt.rate, pt.conns, pt.size
        )
    } else {
        format!("{} conns x {} B", pt.conns, pt.size)
    }
}

/// Reads one figure of a measurement.
type Figure = fn(&Measurement) -> f64;

/// One parsed line of `repeated.csv`.
#[derive(Debug, Clone, PartialEq)]
struct Measurement {
    point: String,
    round: u32,
    server: String,
    echoes_per_sec: f64,
    machine_us_per_echo: f64,
    server_us_per_echo: f64,
    p50_us: f64,
    p99_us: f64,
}

fn parse(text: &str) -> Result<Vec<Measurement>> {
    csv::rows(text, &LAYOUT, |f| {
        let (conns, size) = (f.str(1)?, f.str(2)?);
        let point = if f.str(0)? == "open" {
            format!("open loop {conns} conns × {size} B at {}/s", f.str(3)?)
        } else {
            format!("{conns} conns × {size} B")
        };
        Some(Measurement {
            point,
            round: f.parse(4)?,
            server: f.str(5)?.to_string(),
            echoes_per_sec: f.parse(6)?,
            machine_us_per_echo: f.parse(7)?,
            server_us_per_echo: f.parse(8)?,
            p50_us: f.parse(9)?,
            p99_us: f.parse(10)?,
        })
    })
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

/// `repeated.csv` as a Markdown section: per point and server, the ratio to epoll in
/// each round and their median. Empty if there is no epoll row to compare with.
pub fn repeated_md(text: &str) -> Result<String> {
    let rows = parse(text).context(REPEATED_CSV)?;
    // point -> server -> round -> measurement, keeping the points in run order.
    let mut order: Vec<String> = Vec::new();
    let mut by: BTreeMap<(String, String), BTreeMap<u32, &Measurement>> = BTreeMap::new();
    for m in &rows {
        if !order.contains(&m.point) {
            order.push(m.point.clone());
        }
        by.entry((m.point.clone(), m.server.clone()))
            .or_default()
            .insert(m.round, m);
    }
    let mut servers: Vec<&str> = Vec::new();
    for m in &rows {
        if m.server != "epoll" && !servers.contains(&m.server.as_str()) {
            servers.push(&m.server);
        }
    }
    let mut s = String::from(
        "\n## Repeated points (the performance targets)\n\nThe points the targets name, \
         measured again in rounds with the servers interleaved; each cell is the ratio to \
         epoll *in the same round*, and the median of those ratios is the figure to quote \
         (one round on a shared machine can swing by a factor of ten).\n\n\
         | point | server | measure | per round | median |\n|---|---|---|---|---:|\n",
    );
    let mut any = false;
    for point in &order {
        let Some(base) = by.get(&(point.clone(), "epoll".into())) else {
            continue;
        };
        let open = point.starts_with("open");
        for server in &servers {
            let Some(mine) = by.get(&(point.clone(), server.to_string())) else {
                continue;
            };
            let measures: Vec<(&str, Figure)> = if open {
                // p50 and the server's CPU per echo explain a p99 ratio that is not
                // noise: at a fixed rate each wake-up echoes few messages, so a longer
                // per-message path shows in every percentile.
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
            for (name, get) in measures {
                let ratios: Vec<f64> = mine
                    .iter()
                    .filter_map(|(round, m)| base.get(round).map(|b| get(m) / get(b)))
                    .collect();
                // The module has no server process, so no server CPU: "n/a", not "NaN".
                let fmt = |r: f64| {
                    if r.is_finite() {
                        format!("{r:.2}")
                    } else {
                        "n/a".to_string()
                    }
                };
                let cells: Vec<String> = ratios.iter().map(|&r| fmt(r)).collect();
                let mid = median(ratios);
                let mid = if mid.is_finite() {
                    format!("**{mid:.2}×**")
                } else {
                    "n/a".to_string()
                };
                s += &format!(
                    "| {point} | {server} | {name} | {} | {mid} |\n",
                    cells.join(", ")
                );
                any = true;
            }
        }
    }
    Ok(if any { s } else { String::new() })
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn ratios_are_taken_within_a_round_then_the_median() {
        let csv = format!(
            "{HEADER}\n\
             closed,100,64,0,1,uring,200,5,2,10,20,0\n\
             closed,100,64,0,1,epoll,100,10,3,10,20,0\n\
             closed,100,64,0,2,uring,90,9,2,10,20,0\n\
             closed,100,64,0,2,epoll,100,10,3,10,20,0\n\
             closed,100,64,0,3,uring,330,3,2,10,20,0\n\
             closed,100,64,0,3,epoll,300,3,3,10,20,0\n\
             open,100,64,96700,1,uring,96700,1,1,20,50,0\n\
             open,100,64,96700,1,epoll,96700,1,1,20,100,0\n\
             open,100,64,96700,1,kernel,96700,1,NaN,20,100,0\n"
        );
        let md = repeated_md(&csv).expect("parses");
        assert!(
            md.contains("| kernel | server CPU per echo | n/a | n/a |"),
            "a figure the module has not is n/a: {md}"
        );
        assert!(
            md.contains("| 100 conns × 64 B | uring | echoes/s | 2.00, 0.90, 1.10 | **1.10×** |"),
            "{md}"
        );
        assert!(
            md.contains("| machine CPU per echo | 0.50, 0.90, 1.00 | **0.90×** |"),
            "{md}"
        );
        assert!(
            md.contains("open loop 100 conns × 64 B at 96700/s | uring | corrected p99 | 0.50 |"),
            "{md}"
        );
    }

    #[test]
    fn nothing_to_compare_is_no_section_and_garbage_is_an_error() {
        let only_uring = format!("{HEADER}\nclosed,100,64,0,1,uring,1,1,1,1,1,0\n");
        assert_eq!(repeated_md(&only_uring).expect("parses"), "");
        let e = repeated_md(&format!("{HEADER}\nclosed,100\n")).expect_err("short row");
        assert_eq!(e.to_string(), "repeated.csv: line 2: malformed");
    }
}
