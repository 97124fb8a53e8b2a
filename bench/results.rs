//! Benchmark results as data: one row per server × workload point, written to and read
//! back from CSV (so charts can be redrawn without rerunning), and the `summary.md` table.

use std::fmt::Write as _;
use std::path::Path;

use super::csv::{self, Layout};
use super::hist::Percentiles;
use crate::error::{Context, Result};

/// One measured point.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// `uring`, `epoll` or `kernel`.
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
    /// Connections that made no progress during the whole measured window (starvation:
    /// a result about the server, not a harness failure).
    pub stalled: u64,
}

const HEADER: &str = "server,workload,conns,size,echoes_per_sec,mb_per_sec,p50_us,p90_us,p99_us,p999_us,max_us,machine_us_per_echo,client_us_per_echo,server_us_per_echo,client_cpu_pct,errors,stalled";

const LAYOUT: Layout = Layout {
    header: Some(HEADER),
    what: "results",
    width: 17,
};

/// Rows as CSV text (with header).
pub fn to_csv(rows: &[Row]) -> String {
    let mut s = format!("{HEADER}\n");
    for r in rows {
        let _ = writeln!(
            s,
            "{},{},{},{},{:.1},{:.3},{:.2},{:.2},{:.2},{:.2},{:.2},{:.3},{:.3},{:.3},{:.1},{},{}",
            r.server,
            r.workload,
            r.conns,
            r.size,
            r.echoes_per_sec,
            r.mb_per_sec,
            r.p50_us,
            r.p90_us,
            r.p99_us,
            r.p999_us,
            r.max_us,
            r.machine_us_per_echo,
            r.client_us_per_echo,
            r.server_us_per_echo,
            r.client_cpu_pct,
            r.errors,
            r.stalled
        );
    }
    s
}

/// Parse CSV written by [`to_csv`]; errors name the line.
pub fn from_csv(text: &str) -> Result<Vec<Row>> {
    csv::rows(text, &LAYOUT, |f| {
        Some(Row {
            server: f.str(0)?.to_string(),
            workload: f.str(1)?.to_string(),
            conns: f.parse(2)?,
            size: f.parse(3)?,
            echoes_per_sec: f.parse(4)?,
            mb_per_sec: f.parse(5)?,
            p50_us: f.parse(6)?,
            p90_us: f.parse(7)?,
            p99_us: f.parse(8)?,
            p999_us: f.parse(9)?,
            max_us: f.parse(10)?,
            machine_us_per_echo: f.parse(11)?,
            client_us_per_echo: f.parse(12)?,
            server_us_per_echo: f.parse(13)?,
            client_cpu_pct: f.parse(14)?,
            errors: f.parse(15)?,
            stalled: f.parse(16)?,
        })
    })
}

/// Write `rows` to `dir/throughput.csv`.
pub fn write_csv(dir: &Path, rows: &[Row]) -> Result<()> {
    let p = dir.join("throughput.csv");
    std::fs::write(&p, to_csv(rows)).with_context(|| format!("writing {}", p.display()))
}

/// Read `dir/throughput.csv`.
pub fn read_csv(dir: &Path) -> Result<Vec<Row>> {
    let p = dir.join("throughput.csv");
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    from_csv(&text).with_context(|| p.display().to_string())
}

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

/// A Markdown table of every point, servers side by side, plus each server's ratio to
/// epoll at that point.
pub fn summary_md(rows: &[Row], latency: &[LatencyRow], udp: &[UdpRow], meta: &str) -> String {
    let mut s = String::from("# ringecho benchmark summary\n\n");
    s += "Closed-loop ping-pong (one message in flight per connection), every byte checked. ";
    s += "Compare servers within this run; absolute numbers drift between runs and machines.\n\n";
    s += "| server | conns | size (B) | echoes/s | MB/s | p50 µs | p99 µs | p99.9 µs | machine CPU µs/echo | server CPU µs/echo | client CPU % | errors | stalled conns |\n";
    s += "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for r in rows {
        let server_cpu = if r.server_us_per_echo.is_nan() {
            "n/a".to_string()
        } else {
            format!("{:.2}", r.server_us_per_echo)
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.0} | {:.2} | {:.1} | {:.1} | {:.1} | {:.2} | {} | {:.0} | {} | {} |",
            r.server,
            r.conns,
            r.size,
            r.echoes_per_sec,
            r.mb_per_sec,
            r.p50_us,
            r.p99_us,
            r.p999_us,
            r.machine_us_per_echo,
            server_cpu,
            r.client_cpu_pct,
            r.errors,
            r.stalled
        );
    }
    if !latency.is_empty() {
        s += "\n## Open loop (fixed request rates)\n\n";
        s += &format!(
            "Each connection sends on a schedule; *corrected* latency counts from when a message \
              was due (coordinated omission corrected), *uncorrected* from when it was sent. \
              Rates are fractions of {reference} closed-loop echoes/s at the same point. \
              *Unfinished*: messages due in the window that were not echoed in time \
              (the rate was not kept). *Send lag p99*: how late the load generator sent \
              messages whose connection was idle at their slot, its own lateness; where it \
              is high, the point measures the harness, not the server. (It polls instead of \
              sleeping between close slots, so its CPU share is not a measure of saturation.)\n\n",
            reference = rate_reference(rows.iter().map(|r| r.server.as_str()))
        );
        s += "| server | conns | size (B) | rate /s | achieved /s | corrected p50 µs | p99 µs | p99.9 µs | p99.99 µs | uncorrected p50 µs | p99 µs | p99.99 µs | machine CPU µs/echo | client CPU % | send lag p99 µs | unfinished | errors |\n";
        s += "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
        for r in latency {
            let (c, u) = (&r.corrected, &r.uncorrected);
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.0} | {:.1} | {} | {} |",
                r.server, r.conns, r.size, r.rate, r.achieved, c.p50, c.p99, c.p999, c.p9999,
                u.p50, u.p99, u.p9999, r.machine_us_per_echo, r.client_cpu_pct, r.lag_p99_us,
                r.unfinished, r.errors
            );
        }
    }
    s += &udp_summary_md(udp);
    s += "\n## Machine\n\n```\n";
    s += meta;
    s += "```\n";
    s
}

/// One open-loop point: a server at a fixed request rate.
#[derive(Debug, Clone, PartialEq)]
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
    /// From the scheduled send (coordinated omission corrected), µs.
    pub corrected: Percentiles,
    /// From the actual send, µs.
    pub uncorrected: Percentiles,
    /// Busy CPU of the whole machine per echo, µs.
    pub machine_us_per_echo: f64,
    /// Load generator CPU as a share of one CPU, %.
    pub client_cpu_pct: f64,
    /// p99 of how late the load generator sent messages whose connection was idle, µs.
    pub lag_p99_us: f64,
    /// Wrong bytes, connections closed by the server, failed connects.
    pub errors: u64,
}

const LATENCY_HEADER: &str = "server,conns,size,rate,achieved,scheduled,unfinished,\
c_p50_us,c_p90_us,c_p99_us,c_p999_us,c_p9999_us,c_max_us,\
u_p50_us,u_p90_us,u_p99_us,u_p999_us,u_p9999_us,u_max_us,\
machine_us_per_echo,client_cpu_pct,lag_p99_us,errors";

const LATENCY_LAYOUT: Layout = Layout {
    header: Some(LATENCY_HEADER),
    what: "latency",
    width: 23,
};

/// Open-loop rows as CSV (`c_` columns corrected, `u_` uncorrected).
pub fn latency_to_csv(rows: &[LatencyRow]) -> String {
    let mut s = format!("{LATENCY_HEADER}\n");
    for r in rows {
        let _ = write!(
            s,
            "{},{},{},{:.1},{:.1},{},{}",
            r.server, r.conns, r.size, r.rate, r.achieved, r.scheduled, r.unfinished
        );
        csv::push_percentiles(&mut s, &r.corrected);
        csv::push_percentiles(&mut s, &r.uncorrected);
        let _ = writeln!(
            s,
            ",{:.3},{:.1},{:.2},{}",
            r.machine_us_per_echo, r.client_cpu_pct, r.lag_p99_us, r.errors
        );
    }
    s
}

/// Parse [`latency_to_csv`]'s output; errors name the line.
pub fn latency_from_csv(text: &str) -> Result<Vec<LatencyRow>> {
    csv::rows(text, &LATENCY_LAYOUT, |f| {
        Some(LatencyRow {
            server: f.str(0)?.to_string(),
            conns: f.parse(1)?,
            size: f.parse(2)?,
            rate: f.parse(3)?,
            achieved: f.parse(4)?,
            scheduled: f.parse(5)?,
            unfinished: f.parse(6)?,
            corrected: f.percentiles(7)?,
            uncorrected: f.percentiles(13)?,
            machine_us_per_echo: f.parse(19)?,
            client_cpu_pct: f.parse(20)?,
            lag_p99_us: f.parse(21)?,
            errors: f.parse(22)?,
        })
    })
}

/// One UDP point: a server under the closed loop (`workload` `throughput`) or at a fixed
/// rate (`latency`).
#[derive(Debug, Clone, PartialEq)]
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
    pub latency: Percentiles,
    /// Open loop only: from the scheduled send (coordinated omission corrected), µs.
    pub corrected: Option<Percentiles>,
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
}

const UDP_HEADER: &str = "server,workload,sockets,size,window,rate,fraction,echoes_per_sec,\
mb_per_sec,sent,lost,loss_pct,late,\
p50_us,p90_us,p99_us,p999_us,p9999_us,max_us,\
c_p50_us,c_p90_us,c_p99_us,c_p999_us,c_p9999_us,c_max_us,\
machine_us_per_echo,client_us_per_echo,server_us_per_echo,client_cpu_pct,lag_p99_us,errors";

const UDP_LAYOUT: Layout = Layout {
    header: Some(UDP_HEADER),
    what: "UDP",
    width: 31,
};

/// UDP rows as CSV (`c_` columns: corrected latency, NaN for the closed loop).
pub fn udp_to_csv(rows: &[UdpRow]) -> String {
    let mut s = format!("{UDP_HEADER}\n");
    let nan = Percentiles {
        count: 0,
        p50: f64::NAN,
        p90: f64::NAN,
        p99: f64::NAN,
        p999: f64::NAN,
        p9999: f64::NAN,
        max: f64::NAN,
    };
    for r in rows {
        let _ = write!(
            s,
            "{},{},{},{},{},{:.1},{},{:.1},{:.3},{},{},{:.4},{}",
            r.server,
            r.workload,
            r.sockets,
            r.size,
            r.window,
            r.rate,
            r.fraction,
            r.echoes_per_sec,
            r.mb_per_sec,
            r.sent,
            r.lost,
            r.loss_pct,
            r.late
        );
        csv::push_percentiles(&mut s, &r.latency);
        csv::push_percentiles(&mut s, r.corrected.as_ref().unwrap_or(&nan));
        let _ = writeln!(
            s,
            ",{:.3},{:.3},{:.3},{:.1},{:.2},{}",
            r.machine_us_per_echo,
            r.client_us_per_echo,
            r.server_us_per_echo,
            r.client_cpu_pct,
            r.lag_p99_us,
            r.errors
        );
    }
    s
}

/// Parse [`udp_to_csv`]'s output; errors name the line.
pub fn udp_from_csv(text: &str) -> Result<Vec<UdpRow>> {
    csv::rows(text, &UDP_LAYOUT, |f| {
        let corrected = f.percentiles(19)?;
        Some(UdpRow {
            server: f.str(0)?.to_string(),
            workload: f.str(1)?.to_string(),
            sockets: f.parse(2)?,
            size: f.parse(3)?,
            window: f.parse(4)?,
            rate: f.parse(5)?,
            fraction: f.parse(6)?,
            echoes_per_sec: f.parse(7)?,
            mb_per_sec: f.parse(8)?,
            sent: f.parse(9)?,
            lost: f.parse(10)?,
            loss_pct: f.parse(11)?,
            late: f.parse(12)?,
            latency: f.percentiles(13)?,
            corrected: (!corrected.p50.is_nan()).then_some(corrected),
            machine_us_per_echo: f.parse(25)?,
            client_us_per_echo: f.parse(26)?,
            server_us_per_echo: f.parse(27)?,
            client_cpu_pct: f.parse(28)?,
            lag_p99_us: f.parse(29)?,
            errors: f.parse(30)?,
        })
    })
}

/// The UDP sections of `summary.md` ("" without UDP rows).
fn udp_summary_md(rows: &[UdpRow]) -> String {
    let mut s = String::new();
    let closed: Vec<&UdpRow> = rows.iter().filter(|r| r.corrected.is_none()).collect();
    let open: Vec<&UdpRow> = rows.iter().filter(|r| r.corrected.is_some()).collect();
    let na = |v: f64| {
        if v.is_nan() {
            "n/a".to_string()
        } else {
            format!("{v:.2}")
        }
    };
    if !closed.is_empty() {
        s += "\n## UDP, closed loop (peak packets per second)\n\n";
        s += "Many client sockets (source ports), each keeping *window* datagrams in flight, \
              sent and received in batches; every echo checked byte-exact. *Lost*: sent in \
              the window and not echoed within the timeout (*late*: echoed after that).\n\n";
        s += "| server | sockets | size (B) | window | echoes/s | MB/s | lost | loss % | late | p50 µs | p99 µs | p99.9 µs | machine CPU µs/echo | server CPU µs/echo | client CPU % | errors |\n";
        s += "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
        for r in closed {
            let p = &r.latency;
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {:.0} | {:.2} | {} | {:.3} | {} | {:.1} | {:.1} | {:.1} | {} | {} | {:.0} | {} |",
                r.server, r.sockets, r.size, r.window, r.echoes_per_sec, r.mb_per_sec, r.lost,
                r.loss_pct, r.late, p.p50, p.p99, p.p999, na(r.machine_us_per_echo),
                na(r.server_us_per_echo), r.client_cpu_pct, r.errors
            );
        }
    }
    if !open.is_empty() {
        s += "\n## UDP, open loop (fixed rates)\n\n";
        s += &format!(
            "Datagrams sent on a schedule at fractions of {reference} UDP closed-loop peak, \
              whatever comes back. *Corrected* latency counts from when a datagram was due, \
              *uncorrected* from when it went out. *Lost*: due in the window and not echoed \
              within the timeout (not in the percentiles). *Send lag p99*: how late the load \
              generator sent, its own lateness; where it is high, the point measures the \
              harness.\n\n",
            reference = rate_reference(rows.iter().map(|r| r.server.as_str()))
        );
        s += "| server | sockets | size (B) | rate /s | achieved /s | lost | loss % | corrected p50 µs | p99 µs | p99.9 µs | p99.99 µs | uncorrected p50 µs | p99 µs | p99.99 µs | machine CPU µs/echo | client CPU % | send lag p99 µs | errors |\n";
        s += "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
        for r in open {
            let u = &r.latency;
            let Some(c) = &r.corrected else { continue };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.0} | {:.0} | {} | {:.3} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:.0} | {:.1} | {} |",
                r.server, r.sockets, r.size, r.rate, r.echoes_per_sec, r.lost, r.loss_pct,
                c.p50, c.p99, c.p999, c.p9999, u.p50, u.p99, u.p9999,
                na(r.machine_us_per_echo), r.client_cpu_pct, r.lag_p99_us, r.errors
            );
        }
    }
    s
}

const BURST_HEADER: &str = "server,round,rank,connect_us,response_us";

/// The header is skipped unread, as it always has been.
const BURST_LAYOUT: Layout = Layout {
    header: None,
    what: "burst",
    width: 5,
};

/// Burst samples as CSV: `server,round,rank,connect_us,response_us`.
pub fn burst_to_csv(samples: &[(String, super::burst::Sample)]) -> String {
    let mut s = format!("{BURST_HEADER}\n");
    for (srv, x) in samples {
        let _ = writeln!(
            s,
            "{srv},{},{},{:.1},{:.1}",
            x.round, x.rank, x.connect_us, x.response_us
        );
    }
    s
}

/// Parse [`burst_to_csv`]'s output; errors name the line.
pub fn burst_from_csv(text: &str) -> Result<Vec<(String, super::burst::Sample)>> {
    csv::rows(text, &BURST_LAYOUT, |f| {
        Some((
            f.str(0)?.to_string(),
            super::burst::Sample {
                round: f.parse(1)?,
                rank: f.parse(2)?,
                connect_us: f.parse(3)?,
                response_us: f.parse(4)?,
            },
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(server: &str, conns: u64) -> Row {
        Row {
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
            stalled: 3,
        }
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
    fn csv_round_trips_every_field() {
        let rows = vec![row("uring", 1), row("kernel", 10000)];
        let back = from_csv(&to_csv(&rows)).expect("parse");
        assert_eq!(back.len(), 2);
        assert_eq!(back[1].server, "kernel");
        assert_eq!(back[1].conns, 10000);
        assert_eq!(back[0].p90_us, 12.25);
        assert!(
            back[0].server_us_per_echo.is_nan(),
            "NaN survives for the module"
        );
    }

    #[test]
    fn latency_csv_round_trips() {
        let p = |base: f64| Percentiles {
            count: 0,
            p50: base,
            p90: base + 1.0,
            p99: base + 2.0,
            p999: base + 3.0,
            p9999: base + 4.5,
            max: base + 100.0,
        };
        let r = LatencyRow {
            server: "uring".into(),
            conns: 100,
            size: 64,
            rate: 50000.0,
            achieved: 49990.5,
            scheduled: 100_000,
            unfinished: 2,
            corrected: p(20.0),
            uncorrected: p(10.0),
            machine_us_per_echo: 12.5,
            client_cpu_pct: 40.0,
            lag_p99_us: 3.25,
            errors: 0,
        };
        let back = latency_from_csv(&latency_to_csv(std::slice::from_ref(&r))).expect("parse");
        assert_eq!(back, vec![r]);
        assert!(latency_from_csv("x\n").is_err());
        let bad = latency_to_csv(&[]) + "uring,1\n";
        assert!(latency_from_csv(&bad)
            .expect_err("short")
            .to_string()
            .contains("line 2"));
    }

    fn udp_row(workload: &str, corrected: Option<Percentiles>) -> UdpRow {
        UdpRow {
            server: "epoll".into(),
            workload: workload.into(),
            sockets: 64,
            size: 1472,
            window: if corrected.is_some() { 0 } else { 4 },
            rate: if corrected.is_some() { 50000.0 } else { 0.0 },
            fraction: if corrected.is_some() { 50 } else { 0 },
            echoes_per_sec: 123456.5,
            mb_per_sec: 181.75,
            sent: 600_000,
            lost: 3,
            loss_pct: 0.0005,
            late: 1,
            latency: Percentiles {
                count: 0,
                p50: 10.5,
                p90: 11.0,
                p99: 20.25,
                p999: 30.0,
                p9999: 40.0,
                max: 99.0,
            },
            corrected,
            machine_us_per_echo: 7.5,
            client_us_per_echo: 3.25,
            server_us_per_echo: f64::NAN,
            client_cpu_pct: 88.0,
            lag_p99_us: if corrected.is_some() { 4.5 } else { f64::NAN },
            errors: 0,
        }
    }

    #[test]
    fn udp_csv_round_trips_both_workloads() {
        let c = Percentiles {
            count: 0,
            p50: 12.0,
            p90: 13.0,
            p99: 25.5,
            p999: 31.0,
            p9999: 45.0,
            max: 120.0,
        };
        let rows = vec![udp_row("throughput", None), udp_row("latency", Some(c))];
        let back = udp_from_csv(&udp_to_csv(&rows)).expect("parse");
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].corrected, None, "NaN columns read back as none");
        assert_eq!(back[1].corrected, Some(c));
        assert!(back[0].server_us_per_echo.is_nan());
        for (a, b) in rows.iter().zip(&back) {
            // NaN != NaN: compare the rest field by field through a copy without it.
            let strip = |r: &UdpRow| UdpRow {
                server_us_per_echo: 0.0,
                lag_p99_us: if r.lag_p99_us.is_nan() {
                    -1.0
                } else {
                    r.lag_p99_us
                },
                ..r.clone()
            };
            assert_eq!(strip(a), strip(b));
        }
        assert!(udp_from_csv("nope\n").is_err());
        let bad = udp_to_csv(&[]) + "epoll,throughput,64\n";
        assert!(udp_from_csv(&bad)
            .expect_err("short")
            .to_string()
            .contains("line 2"));
        let md = summary_md(&[], &[], &rows, "");
        assert!(md.contains("## UDP, closed loop") && md.contains("## UDP, open loop"));
        assert_eq!(md.matches("\n| epoll | 64 | 1472 |").count(), 2, "{md}");
    }

    #[test]
    fn burst_csv_round_trips() {
        let x = super::super::burst::Sample {
            round: 2,
            rank: 7,
            connect_us: 12.5,
            response_us: 99.0,
        };
        let back = burst_from_csv(&burst_to_csv(&[("epoll".into(), x)])).expect("parse");
        assert_eq!(back.len(), 1);
        assert_eq!((back[0].1.round, back[0].1.rank), (2, 7));
        assert_eq!(back[0].1.response_us, 99.0);
        let e = burst_from_csv("h\nx,1\n").expect_err("short row");
        assert!(e.to_string().contains("line 2"), "{e}");
    }

    #[test]
    fn malformed_csv_names_the_line() {
        let mut text = to_csv(&[row("uring", 1)]);
        text += "uring,throughput,oops\n";
        let e = from_csv(&text).expect_err("malformed");
        assert!(e.to_string().contains("line 3"), "{e}");
        assert!(from_csv("a,b\n").is_err());
    }

    #[test]
    fn summary_has_a_line_per_row_and_the_machine() {
        let md = summary_md(&[row("uring", 1), row("epoll", 1)], &[], &[], "kernel: x\n");
        assert_eq!(md.matches("\n| uring |").count(), 1);
        assert_eq!(md.matches("\n| epoll |").count(), 1);
        assert!(md.contains("| n/a |") && md.contains("kernel: x"));
    }
}
