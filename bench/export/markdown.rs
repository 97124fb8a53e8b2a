//! The Markdown exporter: `summary.md`, built from a results directory's typed rows.
//! It opens with the verdict (the repeated phase's median ratios), then one table per
//! phase, each row with the validity rule's notes, then the machine.

use super::super::all_repeat::{self, Analysis, Cell, Measurement, Median};
use super::super::hist::Percentiles;
use super::super::results::{rate_reference, LatencyRow, MemoryRow, ThroughputRow, UdpRow};
use super::super::validity::{
    self, Judged, CLIENT_LIMIT_PCT, LAG_SATURATED_US, MAX_CPU_WAIT_PCT, MAX_LOSS_PCT, MIN_ECHOES,
    MIN_RATE_KEPT,
};
use super::Results;

/// A column's alignment.
#[derive(Clone, Copy)]
enum Align {
    Left,
    Right,
}
use Align::{Left, Right};

/// One column of a table of `R`s: its heading, alignment, and what a row shows in it.
struct Column<R: ?Sized> {
    name: &'static str,
    align: Align,
    cell: Box<dyn Fn(&R) -> String>,
}

/// A column.
fn col<R: ?Sized + 'static>(name: &'static str, align: Align, cell: fn(&R) -> String) -> Column<R> {
    col_with(name, align, cell)
}

/// A column whose cell is any function of the row.
fn col_with<R: ?Sized>(
    name: &'static str,
    align: Align,
    cell: impl Fn(&R) -> String + 'static,
) -> Column<R> {
    Column {
        name,
        align,
        cell: Box::new(cell),
    }
}

/// The latency columns' headings, in [`Percentiles::columns`]' order.
const LATENCY_HEADS: [&str; 6] = [
    "p50 µs",
    "p90 µs",
    "p99 µs",
    "p99.9 µs",
    "p99.99 µs",
    "max µs",
];

/// The whole machine's busy CPU per echo: a number column's heading and decimals.
const MACHINE_CPU: (&str, usize) = ("machine CPU µs/echo", 2);
/// The server process's CPU per echo.
const SERVER_CPU: (&str, usize) = ("server CPU µs/echo", 2);
/// The load generator's CPU, % of one CPU.
const CLIENT_CPU: (&str, usize) = ("client CPU %", 0);
/// The load generator's send lag p99 (open loops).
const SEND_LAG: (&str, usize) = ("send lag p99 µs", 1);

/// Latency columns, µs: the percentiles at `which` (indices into
/// [`Percentiles::columns`]) of what `of` gives, the first headed `first`.
fn latency_columns<R: 'static>(
    first: &'static str,
    which: &[usize],
    of: fn(&R) -> Percentiles,
) -> Vec<Column<R>> {
    which
        .iter()
        .enumerate()
        .map(|(n, &i)| {
            let name = if n == 0 { first } else { LATENCY_HEADS[i] };
            col_with(name, Right, move |r| num(of(r).columns()[i], 1))
        })
        .collect()
}

/// Right-aligned number columns, one per (heading, decimals) of `heads`, each cell the
/// matching figure of those `of` a row gives.
fn numbers<R: 'static, const N: usize>(
    heads: [(&'static str, usize); N],
    of: fn(&R) -> [f64; N],
) -> Vec<Column<R>> {
    heads
        .into_iter()
        .enumerate()
        .map(|(i, (name, decimals))| col_with(name, Right, move |r| num(of(r)[i], decimals)))
        .collect()
}

/// The closed loops' columns after their rates: p50, p99 and p99.9 µs of `latency`, then
/// what `cpu` gives: the whole machine's and the server process's CPU per echo, the load
/// generator's CPU %.
fn closed_columns<R: 'static>(
    latency: fn(&R) -> Percentiles,
    cpu: fn(&R) -> [f64; 3],
) -> Vec<Column<R>> {
    let mut cols = latency_columns("p50 µs", &[0, 2, 3], latency);
    cols.extend(numbers([MACHINE_CPU, SERVER_CPU, CLIENT_CPU], cpu));
    cols
}

/// The open loops' columns after their rates: corrected p50 to p99.99, uncorrected p50,
/// p99 and p99.99, µs; then what `cpu_lag` gives: the whole machine's CPU per echo, the
/// load generator's CPU % and its send lag p99.
fn open_columns<R: 'static>(
    corrected: fn(&R) -> Percentiles,
    uncorrected: fn(&R) -> Percentiles,
    cpu_lag: fn(&R) -> [f64; 3],
) -> Vec<Column<R>> {
    let mut cols = latency_columns("corrected p50 µs", &[0, 2, 3, 4], corrected);
    cols.extend(latency_columns(
        "uncorrected p50 µs",
        &[0, 2, 4],
        uncorrected,
    ));
    cols.extend(numbers([MACHINE_CPU, CLIENT_CPU, SEND_LAG], cpu_lag));
    cols
}

/// The columns that name a point: the server, its connections (headed `conns`:
/// connections or client sockets) and the message size, as `of` gives them.
fn point_columns<R: 'static>(
    conns: &'static str,
    of: fn(&R) -> (&str, u64, u64),
) -> Vec<Column<R>> {
    vec![
        col_with("server", Left, move |r| of(r).0.to_string()),
        col_with(conns, Right, move |r| of(r).1.to_string()),
        col_with("size (B)", Right, move |r| of(r).2.to_string()),
    ]
}

/// An open loop's schedule rate and the rate it achieved, per second.
fn rate_columns<R: 'static>(rates: fn(&R) -> [f64; 2]) -> Vec<Column<R>> {
    numbers([("rate /s", 0), ("achieved /s", 0)], rates)
}

/// The errors column, as the rule counts them.
fn errors<R: Judged + 'static>() -> Column<R> {
    col_with("errors", Right, |r: &R| r.observed().errors.to_string())
}

/// A Markdown table of `rows` in `cols`.
fn table<R: ?Sized>(cols: &[Column<R>], rows: &[&R]) -> String {
    let names: Vec<&str> = cols.iter().map(|c| c.name).collect();
    let rule: Vec<&str> = cols
        .iter()
        .map(|c| match c.align {
            Left => "---",
            Right => "---:",
        })
        .collect();
    let mut s = format!("| {} |\n|{}|\n", names.join(" | "), rule.join("|"));
    for r in rows {
        let cells: Vec<String> = cols.iter().map(|c| (c.cell)(r)).collect();
        s += &format!("| {} |\n", cells.join(" | "));
    }
    s
}

/// `v` with `d` decimals, "n/a" where it was not measured (NaN).
fn num(v: f64, d: usize) -> String {
    if v.is_nan() {
        "n/a".into()
    } else {
        format!("{v:.d$}")
    }
}

/// The notes column: the rule's reasons, and where the load generator was the limit.
fn notes(row: &impl Judged) -> String {
    let mut v = Vec::new();
    let why = row.reasons();
    if !why.is_empty() {
        v.push(format!("**invalid**: {}", validity::describe(&why)));
    }
    if let Some(pct) = validity::client_bound(&row.observed()) {
        v.push(format!(
            "load generator at its limit (client CPU {pct:.0}%)"
        ));
    }
    v.join("; ")
}

/// The whole summary.
pub fn summary(r: &Results) -> String {
    let mut s = String::from("# ringecho benchmark summary\n\n");
    if let Some(line) = r.metadata.lines().find(|l| l.starts_with("incomplete: ")) {
        s += &format!("**This run is {line}** The tables hold the phases that finished.\n\n");
    }
    s += &verdict(&r.repeated);
    s += &throughput(&r.throughput);
    s += &latency(&r.latency, &r.throughput);
    s += &udp(&r.udp);
    s += &repeated(&r.repeated);
    s += &memory(&r.memory);
    s += "\n## Machine\n\n```\n";
    s += &r.metadata;
    s += "```\n";
    s
}

/// The verdict, as summary.md opens with it ("" without a repeated phase).
pub fn verdict(rows: &[Measurement]) -> String {
    if let Some(none) = all_repeat::no_baseline(rows) {
        return format!("**Verdict**: {none}\n\n");
    }
    let lines = Analysis::of(rows).verdict().render(true);
    if lines.is_empty() {
        String::new()
    } else {
        lines.join("\n") + "\n\n"
    }
}

/// What makes a measurement invalid, said once for every table.
fn rule_text() -> String {
    format!(
        "A measurement is invalid (its row says why, it is drawn hollow and left out of \
         every median) with errors, with no echo or fewer than {MIN_ECHOES} in its window, \
         with connections stalled for the whole window (closed loop), with more than \
         {MAX_LOSS_PCT}% of datagrams lost (UDP), or, in the open loop, with the rate not \
         kept (achieved below {:.0}% of it), messages left unfinished, a corrected p50 \
         above one slot of a connection's schedule (connections ÷ rate: the messages \
         queued), or the load generator's send lag p99 above {LAG_SATURATED_US:.0} µs (it \
         measured the harness); and in every loop when the server's or the load \
         generator's threads waited for a CPU more than {MAX_CPU_WAIT_PCT:.0}% of the \
         window (the host was busy). Where the load generator's CPU was at {CLIENT_LIMIT_PCT:.0}% \
         or more per thread, the point compares the client, and the row says so.\n\n",
        MIN_RATE_KEPT * 100.0
    )
}

fn throughput(rows: &[ThroughputRow]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "## Closed loop (throughput)\n\nPing-pong, one message in flight per connection, \
         every byte checked. Compare servers within this run; absolute numbers drift \
         between runs and machines.\n\n",
    );
    s += &rule_text();
    let mut cols = point_columns("conns", |r: &ThroughputRow| (&r.server, r.conns, r.size));
    cols.extend([
        col("echoes/s", Right, |r: &ThroughputRow| {
            num(r.echoes_per_sec, 0)
        }),
        col("MB/s", Right, |r: &ThroughputRow| num(r.mb_per_sec, 2)),
    ]);
    cols.extend(closed_columns(ThroughputRow::latency, |r| {
        [
            r.machine_us_per_echo,
            r.server_us_per_echo,
            r.client_cpu_pct,
        ]
    }));
    cols.extend([
        errors(),
        col("stalled conns", Right, |r: &ThroughputRow| {
            r.stalled.to_string()
        }),
        col("notes", Left, notes),
    ]);
    s += &table(&cols, &rows.iter().collect::<Vec<_>>());
    s
}

fn latency(rows: &[LatencyRow], closed: &[ThroughputRow]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut s = format!(
        "\n## Open loop (fixed request rates)\n\nEach connection sends on a schedule; \
         *corrected* latency counts from when a message was due (coordinated omission \
         corrected), *uncorrected* from when it was sent. Rates are fractions of \
         {reference} closed-loop echoes/s at the same point. *Unfinished*: messages due \
         in the window that were not echoed in time (the rate was not kept). *Send lag \
         p99*: how late the load generator sent messages whose connection was idle at \
         their slot, its own lateness. (It polls instead of sleeping between close slots, \
         so its CPU share is not a measure of saturation.)\n\n",
        reference = rate_reference(closed.iter().map(|r| r.server.as_str()))
    );
    let mut cols = point_columns("conns", |r: &LatencyRow| (&r.server, r.conns, r.size));
    cols.extend(rate_columns(|r: &LatencyRow| [r.rate, r.achieved]));
    cols.extend(open_columns(
        LatencyRow::corrected,
        LatencyRow::uncorrected,
        |r| [r.machine_us_per_echo, r.client_cpu_pct, r.lag_p99_us],
    ));
    cols.extend([
        col("unfinished", Right, |r: &LatencyRow| {
            r.unfinished.to_string()
        }),
        errors(),
        col("notes", Left, notes),
    ]);
    s += &table(&cols, &rows.iter().collect::<Vec<_>>());
    s
}

/// A UDP row's point: server, client sockets, datagram size.
fn udp_point(r: &UdpRow) -> (&str, u64, u64) {
    (&r.server, r.sockets, r.size)
}

fn udp(rows: &[UdpRow]) -> String {
    let mut s = String::new();
    let (open, closed): (Vec<&UdpRow>, Vec<&UdpRow>) = rows.iter().partition(|r| r.is_open());
    if !closed.is_empty() {
        s += "\n## UDP, closed loop (peak packets per second)\n\n\
              Many client sockets (source ports), each keeping *window* datagrams in flight, \
              sent and received in batches; every echo checked byte-exact. *Lost*: sent in \
              the window and not echoed within the timeout (*late*: echoed after that).\n\n";
        let mut cols = point_columns("sockets", udp_point);
        cols.extend([
            col("window", Right, |r: &UdpRow| r.window.to_string()),
            col("echoes/s", Right, |r: &UdpRow| num(r.echoes_per_sec, 0)),
            col("MB/s", Right, |r: &UdpRow| num(r.mb_per_sec, 2)),
            col("lost", Right, |r: &UdpRow| r.lost.to_string()),
            col("loss %", Right, |r: &UdpRow| num(r.loss_pct, 3)),
            col("late", Right, |r: &UdpRow| r.late.to_string()),
        ]);
        cols.extend(closed_columns(UdpRow::latency, |r| {
            [
                r.machine_us_per_echo,
                r.server_us_per_echo,
                r.client_cpu_pct,
            ]
        }));
        cols.extend([errors(), col("notes", Left, notes)]);
        s += &table(&cols, &closed);
    }
    if !open.is_empty() {
        s += &format!(
            "\n## UDP, open loop (fixed rates)\n\nDatagrams sent on a schedule at fractions \
             of {reference} UDP closed-loop peak, whatever comes back. *Corrected* latency \
             counts from when a datagram was due, *uncorrected* from when it went out. \
             *Lost*: due in the window and not echoed within the timeout (not in the \
             percentiles). *Send lag p99*: how late the load generator sent, its own \
             lateness.\n\n",
            reference = rate_reference(rows.iter().map(|r| r.server.as_str()))
        );
        let mut cols = point_columns("sockets", udp_point);
        cols.extend(rate_columns(|r: &UdpRow| [r.rate, r.echoes_per_sec]));
        cols.extend([
            col("lost", Right, |r: &UdpRow| r.lost.to_string()),
            col("loss %", Right, |r: &UdpRow| num(r.loss_pct, 3)),
        ]);
        cols.extend(open_columns(UdpRow::scheduled, UdpRow::latency, |r| {
            [r.machine_us_per_echo, r.client_cpu_pct, r.lag_p99_us]
        }));
        cols.extend([errors(), col("notes", Left, notes)]);
        s += &table(&cols, &open);
    }
    s
}

/// Per point and server, the ratio to epoll in each round, their median over valid
/// rounds, and the rounds left out with their reasons ("" with nothing to compare).
pub fn repeated(rows: &[Measurement]) -> String {
    let a = Analysis::of(rows);
    if a.comparisons.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "\n## Repeated points (the performance targets)\n\nThe points the targets name, \
         measured again in rounds with the servers interleaved; each cell is the ratio to \
         epoll *in the same round* (one round on a shared machine can swing by a factor of \
         ten). A round counts only when both of its measurements are valid (the rule \
         above); the median of the valid rounds' ratios, with their min–max, is the figure \
         to quote. With valid rounds fewer than half the rounds, or fewer than two, it \
         reads *undecided*. `—`: a round left out (listed below, with why); `n/a`: a \
         figure missing or zero.\n\n",
    );
    let mut lines = Vec::new();
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
            lines.push([
                c.point.clone(),
                c.server.clone(),
                m.name.to_string(),
                cells.join(", "),
                m.median.render(true),
                notes.join("; "),
            ]);
        }
    }
    let cols: [Column<[String; 6]>; 6] = [
        col("point", Left, |r| r[0].clone()),
        col("server", Left, |r| r[1].clone()),
        col("measure", Left, |r| r[2].clone()),
        col("per round", Left, |r| r[3].clone()),
        col("median (min–max)", Left, |r| r[4].clone()),
        col("note", Left, |r| r[5].clone()),
    ];
    s += &table(&cols, &lines.iter().collect::<Vec<_>>());
    if !a.left_out.is_empty() {
        s += "\n### Rounds left out (problems)\n\n";
        for l in &a.left_out {
            s += &format!(
                "- {}, round {}, {}: {}\n",
                l.point,
                l.round,
                l.server,
                validity::describe(&l.reasons)
            );
        }
    }
    s
}

fn memory(rows: &[MemoryRow]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "\n## Memory per idle connection\n\nServer RSS before and with the connections open \
         and idle (kernel socket memory is not in RSS).\n\n",
    );
    let cols: [Column<MemoryRow>; 5] = [
        col("server", Left, |r| r.server.clone()),
        col("idle conns", Right, |r| r.conns.to_string()),
        col("RSS before KiB", Right, |r| r.rss_before_kib.to_string()),
        col("RSS with them KiB", Right, |r| r.rss_after_kib.to_string()),
        col("bytes per connection", Right, |r| num(r.bytes_per_conn, 1)),
    ];
    s += &table(&cols, &rows.iter().collect::<Vec<_>>());
    s
}

#[cfg(test)]
mod tests {
    use super::super::super::results::tests::{latency_row, row, udp_row};
    use super::super::super::results::{judge, ThroughputRow};
    use super::*;

    #[test]
    fn tables_have_a_line_per_row_and_the_machine() {
        let r = Results {
            throughput: vec![row("uring", 1), row("epoll", 1)],
            metadata: "kernel: x\n".into(),
            ..Results::default()
        };
        let md = summary(&r);
        assert_eq!(md.matches("\n| uring |").count(), 1, "{md}");
        assert_eq!(md.matches("\n| epoll |").count(), 1);
        assert!(md.contains("| n/a |") && md.contains("kernel: x"));
        assert!(!md.contains("## Open loop") && !md.contains("## UDP"));
        assert!(!md.contains("incomplete"));
    }

    #[test]
    fn an_invalid_row_says_why_and_a_client_bound_one_says_so() {
        let stalled = judge(ThroughputRow {
            stalled: 3,
            ..row("uring", 100)
        });
        let busy = ThroughputRow {
            client_cpu_pct: 97.0,
            ..row("epoll", 100)
        };
        let md = throughput(&[stalled, busy]);
        assert!(
            md.contains("**invalid**: 3 connections stalled for the whole window |"),
            "{md}"
        );
        assert!(
            md.contains("| load generator at its limit (client CPU 97%) |"),
            "{md}"
        );
    }

    #[test]
    fn udp_and_open_loop_sections_from_their_rows() {
        let c = udp_row("epoll", None).latency();
        let r = Results {
            latency: vec![latency_row("epoll", 10.0)],
            udp: vec![udp_row("epoll", None), udp_row("epoll", Some(c))],
            ..Results::default()
        };
        let md = summary(&r);
        assert!(md.contains("## Open loop") && md.contains("| epoll | 100 | 64 | 50000 |"));
        assert!(md.contains("## UDP, closed loop") && md.contains("## UDP, open loop"));
        assert_eq!(md.matches("\n| epoll | 64 | 1472 |").count(), 2, "{md}");
        assert!(
            md.contains("fractions of the fastest server's"),
            "no epoll closed loop"
        );
    }

    #[test]
    fn an_incomplete_run_says_so_first() {
        let r = Results {
            throughput: vec![row("uring", 1)],
            metadata: "incomplete: interrupted during latency; not run: burst, udp.\n".into(),
            ..Results::default()
        };
        let md = summary(&r);
        let at = md.find("**This run is incomplete").expect("said");
        assert!(at < md.find("## Closed loop").expect("table"));
    }
}
