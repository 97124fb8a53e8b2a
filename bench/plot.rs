//! Charts from a results directory's data files alone (`throughput.csv`, `burst.csv`,
//! `udp.csv`, `histograms/*.hlog`, the note in `metadata.txt`): `bench-all` draws through here after
//! writing them, and `ringecho plot DIR` redraws without rerunning anything.

use std::collections::BTreeMap;
use std::path::Path;

use hdrhistogram::Histogram;

use super::all_repeat::Measurement;
use super::chart::{self, Series};
use super::export::{self, markdown, Results, HIST_DIR, SUMMARY_MD};
use super::results::{BurstRow, LatencyRow, ThroughputRow, UdpRow};
use super::validity::{self, Judged};
use super::{hist, hlog, results};
use crate::error::{Context, Result};

/// `ringecho plot DIR`: redraw every chart, and `summary.md`, from `DIR`'s data.
pub fn plot(dir: &Path) -> Result<bool> {
    let results = Results::read(dir)?;
    if results.is_empty() {
        crate::bail!(
            "{} holds no ringecho results (no throughput.csv, latency.csv, udp.csv, ...)",
            dir.display()
        );
    }
    write_summary(dir, &results)?;
    let charts = draw_everything(dir, &results)?;
    println!(
        "redrew summary.md and {} charts in {}: {}",
        charts.len(),
        dir.display(),
        charts.join(", ")
    );
    Ok(true)
}

/// `DIR/summary.md` from `results`.
pub fn write_summary(dir: &Path, results: &Results) -> Result<()> {
    export::write_text(dir, SUMMARY_MD, &markdown::summary(results))
}

/// A whisker from valid rounds' `get` (none with fewer than two), and the invalid
/// rounds' values as loose hollow points; with the count of valid rounds.
fn spread_of(
    rounds: &[&Measurement],
    x: f64,
    get: &dyn Fn(&Measurement) -> f64,
) -> (Option<chart::Spread>, Vec<(f64, f64)>, usize) {
    let vals: Vec<f64> = rounds
        .iter()
        .filter(|r| r.valid())
        .map(|r| get(r))
        .filter(|v| v.is_finite())
        .collect();
    let loose = rounds
        .iter()
        .filter(|r| !r.valid())
        .map(|r| (x, get(r)))
        .filter(|p| p.1.is_finite())
        .collect();
    let spread = (vals.len() >= 2).then(|| chart::Spread {
        x,
        lo: vals.iter().copied().fold(f64::MAX, f64::min),
        hi: vals.iter().copied().fold(f64::MIN, f64::max),
    });
    (spread, loose, vals.len())
}

/// Notes naming the invalid rounds of `rounds`, with the rule's reasons.
fn invalid_notes(rounds: &[&Measurement]) -> Vec<String> {
    rounds
        .iter()
        .filter(|r| !r.valid())
        .map(|r| {
            format!(
                "{}, {} conns x {} B, repeated round {}: left out ({}); hollow, not in the whisker.",
                r.server,
                r.conns,
                r.size,
                r.round,
                validity::describe(&r.reasons())
            )
        })
        .collect()
}

/// A value read off a result row, and the same value off a repeated round.
type Metric<'a> = (
    &'a dyn Fn(&ThroughputRow) -> f64,
    &'a dyn Fn(&Measurement) -> f64,
);

/// Per message size, `throughput_*B.png` (MB/s from 64 KiB up, where bandwidth is the
/// measure), `cpu_per_echo_*B.png` and `latency_p99_*B.png` against connections, one
/// line per server; repeated points get their rounds' spread, flagged rows are hollow.
pub fn draw_all(
    dir: &Path,
    rows: &[ThroughputRow],
    rounds: &[Measurement],
    note: &str,
) -> Result<Vec<String>> {
    let mut servers: Vec<&str> = rows.iter().map(|r| r.server.as_str()).collect();
    servers.sort();
    servers.dedup();
    let mut sizes: Vec<u64> = rows.iter().map(|r| r.size).collect();
    sizes.sort();
    sizes.dedup();
    let mut written = Vec::new();
    for &size in &sizes {
        let mbps = size >= 64 * 1024;
        let mb = move |eps: f64| eps * size as f64 / 1e6;
        // A round keeps echoes/s only; its MB/s is the same product the main run's is.
        let tp_row = move |r: &ThroughputRow| if mbps { r.mb_per_sec } else { r.echoes_per_sec };
        let tp_round = move |r: &Measurement| {
            if mbps {
                mb(r.echoes_per_sec)
            } else {
                r.echoes_per_sec
            }
        };
        let (tp_title, tp_desc) = if mbps {
            (
                format!("Throughput, {size}-byte messages (closed loop): MB/s echoed"),
                "MB/s echoed (10^6 B/s, one direction)",
            )
        } else {
            (
                format!("Echoes per second, {size}-byte messages (closed loop)"),
                "echoes per second",
            )
        };
        let charts: [(&str, String, &str, chart::Axis, chart::Unit, Metric); 3] = [
            (
                "throughput",
                tp_title,
                tp_desc,
                chart::Axis::Linear,
                chart::Unit::Plain,
                (&tp_row, &tp_round),
            ),
            (
                "cpu_per_echo",
                format!("Whole-machine CPU per echo, {size}-byte messages (lower is better)"),
                "busy CPU time per echo",
                chart::Axis::Linear,
                chart::Unit::Micros,
                (
                    &|r: &ThroughputRow| r.machine_us_per_echo,
                    &|r: &Measurement| r.machine_us_per_echo,
                ),
            ),
            (
                "latency_p99",
                format!("p99 round-trip latency, {size}-byte messages (lower is better)"),
                "p99 latency (log scale)",
                chart::Axis::Log,
                chart::Unit::Micros,
                (&|r: &ThroughputRow| r.p99_us, &|r: &Measurement| r.p99_us),
            ),
        ];
        for (stem, title, y_desc, y, unit, (get, get_round)) in charts {
            let mut notes = Vec::new();
            let mut most_rounds = 0;
            let series: Vec<Series> = servers
                .iter()
                .filter_map(|srv| {
                    let mine: Vec<&ThroughputRow> = rows
                        .iter()
                        .filter(|r| r.server == *srv && r.size == size)
                        .collect();
                    if mine.is_empty() {
                        return None;
                    }
                    let mut s = Series::new(
                        *srv,
                        mine.iter().map(|r| (r.conns as f64, get(r))).collect(),
                    );
                    for r in &mine {
                        let mut p = validity::describe(&r.reasons());
                        if let Some(pct) = validity::client_bound(&r.observed()) {
                            // Harness-bound: the echoes are real, but they measure the
                            // client, so the point is hollow too.
                            let bound = format!("load generator at its limit ({pct:.0}% CPU)");
                            p = [p, bound]
                                .into_iter()
                                .filter(|x| !x.is_empty())
                                .collect::<Vec<_>>()
                                .join("; ");
                        }
                        if !p.is_empty() {
                            s.flagged.push(r.conns as f64);
                            notes.push(format!(
                                "{srv} at {} connections: {p}.",
                                chart::tick(r.conns as f64)
                            ));
                        }
                        let rs: Vec<&Measurement> = rounds
                            .iter()
                            .filter(|x| {
                                !x.open && x.server == *srv && x.conns == r.conns && x.size == size
                            })
                            .collect();
                        let (spread, loose, n) = spread_of(&rs, r.conns as f64, get_round);
                        most_rounds = most_rounds.max(n);
                        s.spreads.extend(spread);
                        s.loose.extend(loose);
                        if stem == "throughput" {
                            notes.extend(invalid_notes(&rs));
                        }
                    }
                    Some(s)
                })
                .collect();
            let name = format!("{stem}_{size}B.png");
            let mut c =
                chart::Chart::new(&title, note, "concurrent connections (log scale)", y_desc)
                    .log_x_at_data();
            c.y = y;
            c.y_unit = unit;
            c.spread_label =
                format!("whisker: min to max of {most_rounds} repeated rounds (dot: the main run)");
            c.hollow_label = "hollow: invalid or load-generator-bound (see notes)".into();
            c.notes = notes;
            chart::line_chart(&dir.join(&name), &c, &series)?;
            written.push(name);
        }
    }
    Ok(written)
}

/// The seed's chart: connection number (completion order) against its mean response
/// time over the rounds, one line per server.
fn draw_burst_response(
    dir: &Path,
    per_server: &[(String, Vec<(u32, f64)>)],
    rounds: u32,
    note: &str,
) -> Result<String> {
    let name = "burst_response.png".to_string();
    let series: Vec<Series> = per_server
        .iter()
        .map(|(srv, v)| {
            Series::new(
                srv.clone(),
                v.iter().map(|&(r, us)| (f64::from(r) + 1.0, us)).collect(),
            )
        })
        .collect();
    let title = format!(
        "Burst: all connections released at once, 13-byte message (mean over {rounds} rounds)"
    );
    let mut c = chart::Chart::new(
        &title,
        note,
        "connection number, in order of completion",
        "response time",
    );
    c.y_unit = chart::Unit::Micros;
    chart::line_chart(&dir.join(&name), &c, &series)?;
    Ok(name)
}

/// Per datagram size, `udp_pps_*B.png`: closed-loop echoes/s against client sockets,
/// one line per server; points with errors, loss or a lagging generator hollow.
fn draw_udp(dir: &Path, rows: &[UdpRow], note: &str) -> Result<Vec<String>> {
    let closed: Vec<&UdpRow> = rows.iter().filter(|r| !r.is_open()).collect();
    let mut sizes: Vec<u64> = closed.iter().map(|r| r.size).collect();
    sizes.sort();
    sizes.dedup();
    let mut servers: Vec<&str> = closed.iter().map(|r| r.server.as_str()).collect();
    servers.sort();
    servers.dedup();
    let mut written = Vec::new();
    for size in sizes {
        let at_size: Vec<&&UdpRow> = closed.iter().filter(|r| r.size == size).collect();
        let mut notes = Vec::new();
        let series: Vec<Series> = servers
            .iter()
            .map(|srv| {
                let mut mine: Vec<&&&UdpRow> =
                    at_size.iter().filter(|r| r.server == *srv).collect();
                mine.sort_by_key(|r| r.sockets);
                let mut s = Series::new(
                    *srv,
                    mine.iter()
                        .map(|r| (r.sockets as f64, r.echoes_per_sec))
                        .collect(),
                );
                for r in &mine {
                    let p = validity::describe(&r.reasons());
                    if !p.is_empty() {
                        s.flagged.push(r.sockets as f64);
                        notes.push(format!("{srv} at {} sockets: {p}.", r.sockets));
                    }
                }
                s
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        let windows: Vec<u64> = at_size.iter().map(|r| r.window).collect();
        let window = if windows.windows(2).all(|w| w[0] == w[1]) {
            format!(
                ", {} in flight per socket",
                windows.first().copied().unwrap_or(0)
            )
        } else {
            String::new()
        };
        let name = format!("udp_pps_{size}B.png");
        let title = format!("UDP echoes per second, {size}-byte datagrams (closed loop{window})");
        let mut c = chart::Chart::new(
            &title,
            note,
            "client sockets (source ports, log scale)",
            "echoes per second",
        )
        .log_x_at_data();
        c.hollow_label = "hollow: unreliable (see notes)".into();
        c.notes = notes;
        chart::line_chart(&dir.join(&name), &c, &series)?;
        written.push(name);
    }
    Ok(written)
}

/// Every chart `results` (read from `dir`, where the charts go) supports; returns the
/// files written.
pub fn draw_everything(dir: &Path, results: &Results) -> Result<Vec<String>> {
    let note = results.note();
    let mut charts = draw_all(dir, &results.throughput, &results.repeated, &note)?;
    if !results.burst.is_empty() {
        charts.extend(draw_burst(dir, &results.burst, &note)?);
    }
    charts.extend(draw_udp(dir, &results.udp, &note)?);
    let hist_dir = dir.join(HIST_DIR);
    if hist_dir.is_dir() {
        let data = OpenData {
            latency: &results.latency,
            udp: &results.udp,
            rounds: &results.repeated,
        };
        charts.extend(draw_spectra(dir, &hist_dir, &note, &data)?);
    }
    Ok(charts)
}

/// The seed's rank-vs-response chart and the response-time percentile spectrum.
fn draw_burst(dir: &Path, samples: &[BurstRow], note: &str) -> Result<Vec<String>> {
    let mut by_server: BTreeMap<&str, Vec<super::burst::Sample>> = BTreeMap::new();
    for x in samples {
        by_server.entry(&x.server).or_default().push(x.sample());
    }
    let means: Vec<(String, Vec<(u32, f64)>)> = by_server
        .iter()
        .map(|(srv, mine)| (srv.to_string(), super::burst::mean_by_rank(mine)))
        .collect();
    let rounds = samples.iter().map(|x| x.round + 1).max().unwrap_or(0);
    let mut written = vec![draw_burst_response(dir, &means, rounds, note)?];
    let spectra: Vec<Series> = by_server
        .iter()
        .map(|(srv, mine)| {
            let mut h = hist::new_histogram();
            for x in mine {
                hist::record(&mut h, (x.response_us * 1000.0) as u64);
            }
            Series::new(*srv, chart::spectrum(&h))
        })
        .collect();
    let conns = samples.iter().map(|x| x.rank + 1).max().unwrap_or(0);
    let name = "burst_percentiles.png".to_string();
    chart::draw_spectrum(
        &dir.join(&name),
        &format!("Burst: response-time percentiles, {conns} connections released at once, {rounds} rounds"),
        note,
        &spectra,
        Vec::new(),
    )?;
    written.push(name);
    Ok(written)
}

/// Which open loop a histogram tag is of: TCP (`latency:c100-s64-r50000-f50:corrected`)
/// or UDP (`udp-latency:s64-b64-r50000-f50:corrected`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenLoop {
    Tcp,
    Udp,
}

impl OpenLoop {
    /// The tag's prefix, and the letters of its connections (sockets) and size fields.
    fn spelling(self) -> (&'static str, &'static str, &'static str) {
        match self {
            OpenLoop::Tcp => ("latency:", "c", "s"),
            OpenLoop::Udp => ("udp-latency:", "s", "b"),
        }
    }

    /// The spectrum chart of point `p` (its servers' `lines`): its file name and title.
    fn spectrum(self, p: &OpenTag, lines: &[Line]) -> (String, String) {
        let (file, what, unit, conns) = match self {
            OpenLoop::Tcp => ("latency_spectrum", "Open-loop", "msg/s", "conns"),
            OpenLoop::Udp => (
                "udp_latency_spectrum",
                "UDP open-loop",
                "datagrams/s",
                "sockets",
            ),
        };
        let title = format!(
            "{what} latency at {} {unit} ({}% of {} peak), {} {conns} x {} B",
            p.rate,
            p.fraction,
            results::rate_reference(lines.iter().map(|l| l.0.as_str())),
            p.conns,
            p.size
        );
        (format!("{file}_{}pct.png", p.fraction), title)
    }
}

/// A spectrum line drawn pale when `row` (of `server`) broke the validity rule: the
/// server into `faded`, the reasons into `notes`.
fn pale_if_invalid(
    server: &str,
    row: &impl Judged,
    (notes, faded): (&mut Vec<String>, &mut Vec<String>),
) {
    let why = validity::describe(&row.reasons());
    if !why.is_empty() {
        notes.push(format!("{server} (pale): {why}."));
        faded.push(server.to_string());
    }
}

/// One open-loop point, as its histograms' tags name it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OpenTag {
    /// Percent of the reference rate (epoll's closed-loop peak at that point).
    pub fraction: u32,
    pub rate: u64,
    /// Connections (UDP: client sockets).
    pub conns: u64,
    /// Message (datagram) size, bytes.
    pub size: u64,
}

impl OpenTag {
    /// The point (connections or sockets, size, `fraction`%) run at `rate`.
    pub fn new((conns, size, fraction): (usize, usize, u32), rate: f64) -> OpenTag {
        OpenTag {
            fraction,
            rate: rate as u64,
            conns: conns as u64,
            size: size as u64,
        }
    }

    /// The tag of this point's `kind` (`corrected` or `uncorrected`) histogram.
    pub fn tag(&self, l: OpenLoop, kind: &str) -> String {
        let (prefix, c, s) = l.spelling();
        format!(
            "{prefix}{c}{}-{s}{}-r{}-f{}:{kind}",
            self.conns, self.size, self.rate, self.fraction
        )
    }

    /// Parse a tag made by [`OpenTag::tag`] for `l`; returns the point and the kind.
    pub fn parse(tag: &str, l: OpenLoop) -> Option<(OpenTag, &str)> {
        let (prefix, c, s) = l.spelling();
        let (point, kind) = tag.strip_prefix(prefix)?.split_once(':')?;
        let mut t = OpenTag {
            fraction: 0,
            rate: 0,
            conns: 0,
            size: 0,
        };
        for part in point.split('-') {
            let (k, v) = part.split_at_checked(1)?;
            let field = match k {
                "r" => &mut t.rate,
                _ if k == c => &mut t.conns,
                _ if k == s => &mut t.size,
                "f" => {
                    t.fraction = v.parse().ok()?;
                    continue;
                }
                _ => return None,
            };
            *field = v.parse().ok()?;
        }
        Some((t, kind))
    }
}

/// The tag of a UDP closed-loop point's histogram: `udp:s64-b64`.
pub fn udp_tag(sockets: u64, size: u64) -> String {
    format!("udp:s{sockets}-b{size}")
}

/// One histogram of one server: (server, kind, histogram).
type Line = (String, String, Histogram<u64>);

/// The open-loop rows a spectrum chart annotates: TCP latency rows, UDP rows and the
/// repeated rounds.
pub struct OpenData<'a> {
    pub latency: &'a [LatencyRow],
    pub udp: &'a [UdpRow],
    pub rounds: &'a [Measurement],
}

/// One spectrum chart per open-loop point, TCP (`latency_spectrum_*pct.png`) and UDP
/// (`udp_latency_spectrum_*pct.png`): every server's corrected (solid) and uncorrected
/// (dashed) latency; lines of flagged rows pale with the reason in the notes, UDP loss
/// in the legend, repeated rounds' p50 and p99 spread as whiskers.
fn draw_spectra(dir: &Path, hist_dir: &Path, note: &str, data: &OpenData) -> Result<Vec<String>> {
    let mut tcp: BTreeMap<OpenTag, Vec<Line>> = BTreeMap::new();
    let mut udp: BTreeMap<OpenTag, Vec<Line>> = BTreeMap::new();
    let mut files: Vec<_> = std::fs::read_dir(hist_dir)
        .with_context(|| format!("listing {}", hist_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "hlog"))
        .collect();
    files.sort();
    for path in files {
        let server = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        for e in hlog::read(&path)? {
            if let Some((point, kind)) = OpenTag::parse(&e.tag, OpenLoop::Tcp) {
                tcp.entry(point)
                    .or_default()
                    .push((server.clone(), kind.to_string(), e.hist));
            } else if let Some((point, kind)) = OpenTag::parse(&e.tag, OpenLoop::Udp) {
                udp.entry(point)
                    .or_default()
                    .push((server.clone(), kind.to_string(), e.hist));
            }
        }
    }
    let mut written = Vec::new();
    for (p, lines) in tcp {
        let (name, title) = OpenLoop::Tcp.spectrum(&p, &lines);
        let same_rate = |a: f64| (a - p.rate as f64).abs() < 0.5;
        let mut notes = Vec::new();
        let mut faded = Vec::new();
        for r in data.latency {
            if r.conns == p.conns && r.size == p.size && same_rate(r.rate) {
                pale_if_invalid(&r.server, r, (&mut notes, &mut faded));
            }
        }
        let mut series = spectrum_series(&lines, &faded, &|_| String::new());
        // The repeated phase measures this point again: its rounds' corrected p50 and
        // p99 as whiskers on the corrected lines.
        let mut most = 0;
        for s in series.iter_mut().filter(|s| !s.dashed) {
            let server = s.name.split(' ').next().unwrap_or("").to_string();
            let rs: Vec<&Measurement> = data
                .rounds
                .iter()
                .filter(|r| {
                    r.open
                        && r.server == server
                        && r.conns == p.conns
                        && r.size == p.size
                        && same_rate(r.rate)
                })
                .collect();
            for (x, get) in [
                (
                    50.0,
                    &(|r: &Measurement| r.p50_us) as &dyn Fn(&Measurement) -> f64,
                ),
                (99.0, &|r: &Measurement| r.p99_us),
            ] {
                let (spread, loose, n) = spread_of(&rs, x, get);
                most = most.max(n);
                s.spreads.extend(spread);
                s.loose.extend(loose);
            }
            notes.extend(invalid_notes(&rs));
        }
        let mut c = spectrum_chart(&title, note, notes);
        c.spread_label = format!("whisker: corrected p50, p99 over {most} repeated rounds");
        c.hollow_label = "hollow: a round flagged invalid".into();
        chart::line_chart(&dir.join(&name), &c, &series)?;
        written.push(name);
    }
    for (p, lines) in udp {
        let (name, title) = OpenLoop::Udp.spectrum(&p, &lines);
        let mine: Vec<&UdpRow> = data
            .udp
            .iter()
            .filter(|r| {
                r.is_open() && r.sockets == p.conns && r.size == p.size && r.fraction == p.fraction
            })
            .collect();
        let mut notes = Vec::new();
        let mut faded = Vec::new();
        for r in &mine {
            if r.lost > 0 {
                notes.push(format!(
                    "{}: {} of {} datagrams lost ({:.2}%); lost ones are not in the percentiles, its lines are the {:.2}% that came back.",
                    r.server,
                    r.lost,
                    r.sent,
                    r.loss_pct,
                    100.0 - r.loss_pct
                ));
            }
            pale_if_invalid(&r.server, *r, (&mut notes, &mut faded));
        }
        let loss = |server: &str| {
            mine.iter()
                .find(|r| r.server == server)
                .filter(|r| r.lost > 0)
                .map(|r| {
                    if r.echoes_per_sec == 0.0 || r.lost >= r.sent {
                        ", nothing came back".to_string()
                    } else {
                        format!(", {:.2}% lost", r.loss_pct)
                    }
                })
                .unwrap_or_default()
        };
        let series = spectrum_series(&lines, &faded, &loss);
        let drawn = series.iter().filter(|s| !s.points.is_empty()).count();
        if drawn == 0 {
            // Nothing came back at all: a chart with no line would say nothing.
            continue;
        }
        let c = spectrum_chart(&title, note, notes);
        chart::line_chart(&dir.join(&name), &c, &series)?;
        written.push(name);
    }
    Ok(written)
}

/// A latency spectrum's chart: percentiles across (each nine the same width), latency
/// up on a log scale, `notes` under it.
fn spectrum_chart<'a>(title: &'a str, note: &'a str, notes: Vec<String>) -> chart::Chart<'a> {
    let mut c = chart::Chart::new(
        title,
        note,
        "percentile (each nine gets the same width)",
        "latency (log scale)",
    );
    c.x = chart::Axis::Percentile;
    c.y = chart::Axis::Log;
    c.y_unit = chart::Unit::Micros;
    c.notes = notes;
    c
}

/// Corrected lines solid, then uncorrected ones dashed; servers in `faded` pale, and
/// `suffix(server)` appended to each name (e.g. its loss).
fn spectrum_series(
    lines: &[Line],
    faded: &[String],
    suffix: &dyn Fn(&str) -> String,
) -> Vec<Series> {
    ["corrected", "uncorrected"]
        .iter()
        .flat_map(|kind| {
            lines.iter().filter(move |l| l.1 == *kind).map(move |l| {
                let mut s = Series::new(
                    format!("{} {kind}{}", l.0, suffix(&l.0)),
                    chart::spectrum(&l.2),
                );
                s.dashed = *kind == "uncorrected";
                s.faded = faded.contains(&l.0);
                s
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_loop_tags_round_trip_and_stay_apart() {
        let t = OpenTag {
            fraction: 50,
            rate: 48000,
            conns: 100,
            size: 64,
        };
        let tcp = t.tag(OpenLoop::Tcp, "corrected");
        assert_eq!(tcp, "latency:c100-s64-r48000-f50:corrected");
        assert_eq!(
            OpenTag::parse(&tcp, OpenLoop::Tcp),
            Some((t.clone(), "corrected"))
        );
        let udp = t.tag(OpenLoop::Udp, "uncorrected");
        assert_eq!(udp, "udp-latency:s100-b64-r48000-f50:uncorrected");
        assert_eq!(
            OpenTag::parse(&udp, OpenLoop::Udp),
            Some((t, "uncorrected"))
        );
        assert_eq!(OpenTag::parse(&udp, OpenLoop::Tcp), None);
        assert_eq!(OpenTag::parse(&tcp, OpenLoop::Udp), None);
        assert_eq!(OpenTag::parse("throughput:c1-s64", OpenLoop::Tcp), None);
        assert_eq!(
            OpenTag::parse("latency:c1-x2:corrected", OpenLoop::Tcp),
            None
        );
        assert_eq!(OpenTag::parse(&udp_tag(64, 1472), OpenLoop::Udp), None);
        assert_eq!(udp_tag(1, 64), "udp:s1-b64");
    }

    const REPEATED_OLD: &str = "kind,conns,size,rate,round,server,echoes_per_sec,machine_us_per_echo,server_us_per_echo,p50_us,p99_us,errors
closed,100,64,0,1,uring,200000,9,4.4,450,540,0
closed,100,64,0,1,epoll,190000,9.3,4.5,460,760,0
closed,100,64,0,2,uring,150000,13,6.3,640,950,2
";

    #[test]
    fn rounds_are_judged_by_the_repeated_phase_rule_in_both_layouts() {
        let dir = std::env::temp_dir().join(format!("ringecho-rounds-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        assert!(Results::read(&dir).expect("no file").repeated.is_empty());
        std::fs::write(dir.join(export::REPEATED_CSV), REPEATED_OLD).expect("write");
        let old = Results::read(&dir).expect("old layout").repeated;
        assert_eq!(old.len(), 3);
        assert!(old[0].valid() && old[1].valid());
        assert!(!old[2].valid(), "a round with errors does not count");
        assert!(old[2].problems.contains("2 errors"), "{}", old[2].problems);
        let refs: Vec<&Measurement> = old.iter().filter(|r| r.server == "uring").collect();
        let (spread, loose, n) = spread_of(&refs, 100.0, &|r| r.echoes_per_sec);
        assert_eq!(n, 1);
        assert!(spread.is_none(), "one valid round is no spread");
        assert_eq!(loose, vec![(100.0, 150000.0)]);
        let notes = invalid_notes(&refs);
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("round 2"), "{notes:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A UDP row as udp.csv holds it: closed loop without a rate, open loop with one.
    fn udp_line(server: &str, open: bool, sockets: u64, sent: u64, lost: u64) -> String {
        let (workload, rate, fraction, window) = if open {
            ("latency", 50000.0, 75, 0)
        } else {
            ("throughput", 0.0, 0, 4)
        };
        let back = sent - lost;
        let c = if open {
            "30,40,50,60,70,80"
        } else {
            "NaN,NaN,NaN,NaN,NaN,NaN"
        };
        let lag = if open { "350" } else { "NaN" };
        format!(
            "{server},{workload},{sockets},64,{window},{rate:.1},{fraction},{back}.0,1.0,{sent},{lost},{:.4},0,\
             10,20,30,40,50,60,{c},7.0,3.0,4.0,99.0,{lag},0\n",
            lost as f64 * 100.0 / sent as f64
        )
    }

    #[test]
    fn every_chart_draws_with_loss_flags_and_invalid_rounds() {
        let dir = std::env::temp_dir().join(format!("ringecho-plot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join(HIST_DIR)).expect("dir");
        let mut tp = String::from(
            "server,workload,conns,size,echoes_per_sec,mb_per_sec,p50_us,p90_us,p99_us,p999_us,\
             max_us,machine_us_per_echo,client_us_per_echo,server_us_per_echo,client_cpu_pct,\
             errors,stalled\n",
        );
        for (srv, stalled) in [("uring", 12), ("epoll", 0)] {
            for (conns, size) in [(1, 64), (100, 64), (10000, 64), (1, 65536), (100, 65536)] {
                let st = if conns == 10000 { stalled } else { 0 };
                tp += &format!(
                    "{srv},throughput,{conns},{size},1000.0,65.5,10,20,{},40,50,9,4,4,99,0,{st}\n",
                    30 * conns
                );
            }
        }
        std::fs::write(dir.join("throughput.csv"), tp).expect("write");
        std::fs::write(dir.join(export::REPEATED_CSV), REPEATED_OLD).expect("write");
        let header = "server,workload,sockets,size,window,rate,fraction,echoes_per_sec,\
mb_per_sec,sent,lost,loss_pct,late,p50_us,p90_us,p99_us,p999_us,p9999_us,max_us,\
c_p50_us,c_p90_us,c_p99_us,c_p999_us,c_p9999_us,c_max_us,\
machine_us_per_echo,client_us_per_echo,server_us_per_echo,client_cpu_pct,lag_p99_us,errors\n";
        let udp = String::from(header)
            + &udp_line("uring", false, 1, 1000, 0)
            + &udp_line("uring", false, 8, 1000, 20)
            + &udp_line("uring", true, 64, 10000, 9675)
            + &udp_line("epoll", true, 64, 10000, 10000);
        std::fs::write(dir.join(export::UDP_CSV), udp).expect("write");
        let point = OpenTag {
            fraction: 75,
            rate: 50000,
            conns: 64,
            size: 64,
        };
        let mut back = hist::new_histogram();
        for v in 1..=325u64 {
            hist::record(&mut back, v * 10_000);
        }
        let entry = |kind: &str, h: &Histogram<u64>| hlog::Entry {
            tag: point.tag(OpenLoop::Udp, kind),
            start: std::time::Duration::ZERO,
            length: std::time::Duration::from_secs(1),
            hist: h.clone(),
        };
        hlog::write(
            &dir.join(HIST_DIR).join("uring.hlog"),
            "",
            &[entry("corrected", &back), entry("uncorrected", &back)],
        )
        .expect("hlog");
        // Nothing came back to epoll: empty histograms, no line, and no failure.
        let empty = hist::new_histogram();
        hlog::write(
            &dir.join(HIST_DIR).join("epoll.hlog"),
            "",
            &[entry("corrected", &empty), entry("uncorrected", &empty)],
        )
        .expect("hlog");
        let results = Results::read(&dir).expect("reads");
        assert!(
            results.throughput.iter().any(|r| !r.valid()),
            "stalled rows"
        );
        let charts = draw_everything(&dir, &results).expect("draws");
        for c in [
            "throughput_64B.png",
            "throughput_65536B.png",
            "latency_p99_64B.png",
            "udp_pps_64B.png",
            "udp_latency_spectrum_75pct.png",
        ] {
            assert!(charts.iter().any(|x| x == c), "{c} in {charts:?}");
            let img = image::open(dir.join(c)).expect("decodes");
            assert_eq!((img.width(), img.height()), chart::SIZE);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
