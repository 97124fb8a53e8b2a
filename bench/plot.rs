//! Charts from a results directory's data files alone (`throughput.csv`, `burst.csv`,
//! `udp.csv`, `histograms/*.hlog`, the note in `metadata.txt`): `bench-all` draws through here after
//! writing them, and `ringecho plot DIR` redraws without rerunning anything.

use std::collections::BTreeMap;
use std::path::Path;

use hdrhistogram::Histogram;

use super::chart::{self, Series};
use super::results::UdpRow;
use super::{all_repeat, csv, hist, hlog, results};
use crate::error::{Context, Error, Result};

/// Where the per-server histogram logs go inside a results directory.
pub const HIST_DIR: &str = "histograms";

/// `ringecho plot DIR`: redraw every chart, and `summary.md`, from `DIR`'s data.
pub fn plot(dir: &Path) -> Result<bool> {
    let charts = draw_everything(dir)?;
    write_summary(dir)?;
    println!(
        "redrew summary.md and {} charts in {}: {}",
        charts.len(),
        dir.display(),
        charts.join(", ")
    );
    Ok(true)
}

/// The `note:` line of `DIR/metadata.txt` (where the run was measured), or "".
pub fn read_note(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("metadata.txt"))
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("note: ").map(str::to_string))
        })
        .unwrap_or_default()
}

/// The UDP results file inside a results directory.
pub const UDP_CSV: &str = "udp.csv";

/// `DIR/summary.md` from `throughput.csv`, `latency.csv` and `udp.csv` (if any) and
/// `metadata.txt`.
pub fn write_summary(dir: &Path) -> Result<()> {
    let rows = results::read_csv(dir)?;
    let lat_path = dir.join("latency.csv");
    let latency = match std::fs::read_to_string(&lat_path) {
        Ok(text) => {
            results::latency_from_csv(&text).with_context(|| lat_path.display().to_string())?
        }
        Err(_) => Vec::new(),
    };
    let udp = read_udp(dir)?;
    let meta = std::fs::read_to_string(dir.join("metadata.txt")).unwrap_or_default();
    let mut md = results::summary_md(&rows, &latency, &udp, &meta);
    // Optional sections go before the machine section, which closes the summary.
    let mut extra = String::new();
    if let Ok(text) = std::fs::read_to_string(dir.join(all_repeat::REPEATED_CSV)) {
        extra += &all_repeat::repeated_md(&text)?;
        // The verdict opens the summary, under its title.
        let verdict = all_repeat::verdict_md(&text)?;
        if let Some(at) = md.find("\n\n") {
            md.insert_str(at + 2, &verdict);
        }
    }
    if let Ok(text) = std::fs::read_to_string(dir.join(MEMORY_CSV)) {
        extra += &memory_md(&text);
    }
    match md.find("\n## Machine") {
        Some(at) => md.insert_str(at, &extra),
        None => md += &extra,
    }
    let path = dir.join("summary.md");
    std::fs::write(&path, md).with_context(|| format!("writing {}", path.display()))
}

/// Where the idle-connection memory measurement goes inside a results directory.
pub const MEMORY_CSV: &str = "memory.csv";

/// `memory.csv` as a Markdown section.
fn memory_md(text: &str) -> String {
    let mut s = String::from(
        "\n## Memory per idle connection\n\nServer RSS before and with the connections open \
         and idle (kernel socket memory is not in RSS).\n\n\
         | server | idle conns | RSS before KiB | RSS with them KiB | bytes per connection |\n\
         |---|---:|---:|---:|---:|\n",
    );
    for (_, line) in csv::data_lines(text) {
        s += &format!("| {} |\n", line.replace(',', " | "));
    }
    s
}

/// `DIR/udp.csv`'s rows; none if the run had no UDP phase.
pub fn read_udp(dir: &Path) -> Result<Vec<UdpRow>> {
    let path = dir.join(UDP_CSV);
    match std::fs::read_to_string(&path) {
        Ok(text) => results::udp_from_csv(&text).with_context(|| path.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::from(e).context(format!("reading {}", path.display()))),
    }
}

/// Per datagram size, `udp_pps_*B.png`: closed-loop echoes/s against client sockets,
/// one line per server.
fn draw_udp(dir: &Path, rows: &[UdpRow], note: &str) -> Result<Vec<String>> {
    let closed: Vec<&UdpRow> = rows.iter().filter(|r| r.corrected.is_none()).collect();
    let mut sizes: Vec<u64> = closed.iter().map(|r| r.size).collect();
    sizes.sort();
    sizes.dedup();
    let mut servers: Vec<&str> = closed.iter().map(|r| r.server.as_str()).collect();
    servers.sort();
    servers.dedup();
    let mut written = Vec::new();
    for size in sizes {
        let at_size: Vec<&&UdpRow> = closed.iter().filter(|r| r.size == size).collect();
        let series: Vec<Series> = servers
            .iter()
            .map(|srv| {
                let mut pts: Vec<(f64, f64)> = at_size
                    .iter()
                    .filter(|r| r.server == *srv)
                    .map(|r| (r.sockets as f64, r.echoes_per_sec))
                    .collect();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                Series::new(*srv, pts)
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
        let chart = chart::Chart {
            title: &title,
            note,
            x_desc: "client sockets (source ports, log scale)",
            y_desc: "echoes per second",
            x: chart::Axis::Log,
            y: chart::Axis::Linear,
        };
        chart::line_chart(&dir.join(&name), &chart, &series)?;
        written.push(name);
    }
    Ok(written)
}

/// Every chart the data in `dir` supports; returns the files written.
pub fn draw_everything(dir: &Path) -> Result<Vec<String>> {
    let note = read_note(dir);
    let rows = results::read_csv(dir)?;
    let mut charts = chart::draw_all(dir, &rows, &note)?;
    let burst = dir.join("burst.csv");
    if burst.exists() {
        let text = std::fs::read_to_string(&burst)
            .with_context(|| format!("reading {}", burst.display()))?;
        let samples =
            results::burst_from_csv(&text).with_context(|| burst.display().to_string())?;
        charts.extend(draw_burst(dir, &samples, &note)?);
    }
    charts.extend(draw_udp(dir, &read_udp(dir)?, &note)?);
    let hist_dir = dir.join(HIST_DIR);
    if hist_dir.is_dir() {
        charts.extend(draw_spectra(dir, &hist_dir, &note)?);
    }
    Ok(charts)
}

/// The seed's rank-vs-response chart and the response-time percentile spectrum.
fn draw_burst(
    dir: &Path,
    samples: &[(String, super::burst::Sample)],
    note: &str,
) -> Result<Vec<String>> {
    let mut by_server: BTreeMap<&str, Vec<super::burst::Sample>> = BTreeMap::new();
    for (srv, x) in samples {
        by_server.entry(srv).or_default().push(*x);
    }
    let means: Vec<(String, Vec<(u32, f64)>)> = by_server
        .iter()
        .map(|(srv, mine)| (srv.to_string(), super::burst::mean_by_rank(mine)))
        .collect();
    let mut written = vec![chart::draw_burst(dir, &means, note)?];
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
    let conns = samples.iter().map(|(_, x)| x.rank + 1).max().unwrap_or(0);
    let name = "burst_percentiles.png".to_string();
    chart::draw_spectrum(
        &dir.join(&name),
        &format!("Burst: response-time percentiles, {conns} connections released at once"),
        note,
        &spectra,
    )?;
    written.push(name);
    Ok(written)
}

/// One open-loop point, parsed from a histogram tag
/// `latency:c100-s64-r50000-f50:corrected`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LatencyTag {
    /// Percent of the reference rate (epoll's closed-loop peak at that point).
    pub fraction: u32,
    pub rate: u64,
    pub conns: u64,
    pub size: u64,
}

impl LatencyTag {
    /// The tag of this point's `kind` (`corrected` or `uncorrected`) histogram.
    pub fn tag(&self, kind: &str) -> String {
        format!(
            "latency:c{}-s{}-r{}-f{}:{kind}",
            self.conns, self.size, self.rate, self.fraction
        )
    }

    /// Parse a tag made by [`LatencyTag::tag`]; returns the point and the kind.
    pub fn parse(tag: &str) -> Option<(LatencyTag, &str)> {
        let rest = tag.strip_prefix("latency:")?;
        let (point, kind) = rest.split_once(':')?;
        let mut t = LatencyTag {
            fraction: 0,
            rate: 0,
            conns: 0,
            size: 0,
        };
        for part in point.split('-') {
            let (k, v) = part.split_at_checked(1)?;
            match k {
                "c" => t.conns = v.parse().ok()?,
                "s" => t.size = v.parse().ok()?,
                "r" => t.rate = v.parse().ok()?,
                "f" => t.fraction = v.parse().ok()?,
                _ => return None,
            }
        }
        Some((t, kind))
    }
}

/// One open-loop UDP point, parsed from a histogram tag
/// `udp-latency:s64-b64-r50000-f50:corrected`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UdpLatencyTag {
    /// Percent of the reference rate (epoll's UDP closed-loop peak at that point).
    pub fraction: u32,
    pub rate: u64,
    /// Client sockets.
    pub sockets: u64,
    /// Datagram size, bytes.
    pub size: u64,
}

impl UdpLatencyTag {
    /// The tag of this point's `kind` (`corrected` or `uncorrected`) histogram.
    pub fn tag(&self, kind: &str) -> String {
        format!(
            "udp-latency:s{}-b{}-r{}-f{}:{kind}",
            self.sockets, self.size, self.rate, self.fraction
        )
    }

    /// Parse a tag made by [`UdpLatencyTag::tag`]; returns the point and the kind.
    pub fn parse(tag: &str) -> Option<(UdpLatencyTag, &str)> {
        let rest = tag.strip_prefix("udp-latency:")?;
        let (point, kind) = rest.split_once(':')?;
        let mut t = UdpLatencyTag {
            fraction: 0,
            rate: 0,
            sockets: 0,
            size: 0,
        };
        for part in point.split('-') {
            let (k, v) = part.split_at_checked(1)?;
            match k {
                "s" => t.sockets = v.parse().ok()?,
                "b" => t.size = v.parse().ok()?,
                "r" => t.rate = v.parse().ok()?,
                "f" => t.fraction = v.parse().ok()?,
                _ => return None,
            }
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

/// One spectrum chart per open-loop point, TCP (`latency_spectrum_*pct.png`) and UDP
/// (`udp_latency_spectrum_*pct.png`): every server's corrected (solid) and uncorrected
/// (dashed) latency.
fn draw_spectra(dir: &Path, hist_dir: &Path, note: &str) -> Result<Vec<String>> {
    let mut tcp: BTreeMap<LatencyTag, Vec<Line>> = BTreeMap::new();
    let mut udp: BTreeMap<UdpLatencyTag, Vec<Line>> = BTreeMap::new();
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
            if let Some((point, kind)) = LatencyTag::parse(&e.tag) {
                tcp.entry(point)
                    .or_default()
                    .push((server.clone(), kind.to_string(), e.hist));
            } else if let Some((point, kind)) = UdpLatencyTag::parse(&e.tag) {
                udp.entry(point)
                    .or_default()
                    .push((server.clone(), kind.to_string(), e.hist));
            }
        }
    }
    let mut written = Vec::new();
    for (p, lines) in tcp {
        let name = format!("latency_spectrum_{}pct.png", p.fraction);
        let title = format!(
            "Open-loop latency at {} msg/s ({}% of epoll's peak), {} conns x {} B",
            p.rate, p.fraction, p.conns, p.size
        );
        chart::draw_spectrum(&dir.join(&name), &title, note, &spectrum_series(&lines))?;
        written.push(name);
    }
    for (p, lines) in udp {
        let name = format!("udp_latency_spectrum_{}pct.png", p.fraction);
        let title = format!(
            "UDP open-loop latency at {} datagrams/s ({}% of epoll's peak), {} sockets x {} B",
            p.rate, p.fraction, p.sockets, p.size
        );
        chart::draw_spectrum(&dir.join(&name), &title, note, &spectrum_series(&lines))?;
        written.push(name);
    }
    Ok(written)
}

/// Corrected lines solid, then uncorrected ones dashed.
fn spectrum_series(lines: &[Line]) -> Vec<Series> {
    ["corrected", "uncorrected"]
        .iter()
        .flat_map(|kind| {
            lines.iter().filter(move |l| l.1 == *kind).map(move |l| {
                let mut s = Series::new(format!("{} {kind}", l.0), chart::spectrum(&l.2));
                s.dashed = *kind == "uncorrected";
                s
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_tags_round_trip() {
        let t = LatencyTag {
            fraction: 50,
            rate: 48000,
            conns: 100,
            size: 64,
        };
        let tag = t.tag("corrected");
        assert_eq!(tag, "latency:c100-s64-r48000-f50:corrected");
        assert_eq!(LatencyTag::parse(&tag), Some((t, "corrected")));
        assert_eq!(LatencyTag::parse("throughput:c1-s64"), None);
        assert_eq!(LatencyTag::parse("latency:c1-x2:corrected"), None);
    }

    #[test]
    fn udp_latency_tags_round_trip_and_stay_apart_from_tcp_ones() {
        let t = UdpLatencyTag {
            fraction: 25,
            rate: 40000,
            sockets: 64,
            size: 64,
        };
        let tag = t.tag("uncorrected");
        assert_eq!(tag, "udp-latency:s64-b64-r40000-f25:uncorrected");
        assert_eq!(UdpLatencyTag::parse(&tag), Some((t, "uncorrected")));
        assert_eq!(LatencyTag::parse(&tag), None);
        assert_eq!(
            UdpLatencyTag::parse("latency:c100-s64-r1-f1:corrected"),
            None
        );
        assert_eq!(UdpLatencyTag::parse(&udp_tag(64, 1472)), None);
        assert_eq!(udp_tag(1, 64), "udp:s1-b64");
    }
}
