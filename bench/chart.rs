//! PNG charts drawn with plotters, with the DejaVu Sans font compiled in (no system fonts,
//! no gnuplot): the same pixels on any machine.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use super::results::Row;
use crate::error::{Error, Result};

/// Chart size in pixels.
pub const SIZE: (u32, u32) = (1000, 620);

static FONT: Once = Once::new();

fn register_font() {
    FONT.call_once(|| {
        // The bytes are a valid TTF shipped by the dejavu crate; failure would only mean
        // text-less charts, never a crash.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

/// One line of a chart: a name for the legend and its points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed (a secondary measure of the same server, e.g. uncorrected latency).
    pub dashed: bool,
}

impl Series {
    /// A solid line.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            points,
            dashed: false,
        }
    }
}

/// How an axis maps its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    /// Linear from zero (or the data's minimum, if negative).
    Linear,
    /// Logarithmic, for data spanning decades.
    Log,
    /// Percentiles (x in 0..100) spread so that each "nine" gets the same width:
    /// 50%, 90%, 99%, 99.9%, 99.99% are equally spaced (HdrHistogram's spectrum plot).
    Percentile,
}

/// Titles and axes of one chart.
pub struct Chart<'a> {
    pub title: &'a str,
    /// A second, smaller title line (e.g. where the run was measured); empty for none.
    pub note: &'a str,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
    pub x: Axis,
    pub y: Axis,
}

/// A server's colour: the legend name up to the first space ("uring corrected" → uring).
fn color(name: &str) -> RGBColor {
    match name.split(' ').next().unwrap_or(name) {
        "uring" => RGBColor(0xd6, 0x27, 0x28),
        "epoll" => RGBColor(0x1f, 0x77, 0xb4),
        "kernel" => RGBColor(0x2c, 0xa0, 0x2c),
        _ => RGBColor(0x7f, 0x7f, 0x7f),
    }
}

/// Percentile p (in %) → the position on a percentile axis, 1 / (1 - p): 50% → 2,
/// 99% → 100, 99.99% → 10,000; drawn on a log scale.
fn percentile_pos(p: f64) -> f64 {
    100.0 / (100.0 - p.min(99.9999))
}

/// The inverse, for axis labels: 100 → "99%".
fn percentile_label(pos: f64) -> String {
    let p = 100.0 - 100.0 / pos;
    // Decimals a person needs: 99% → 0, 99.9% → 1, 99.99% → 2 (with slack for rounding).
    let decimals = (-(100.0 - p).log10() - 1e-6).ceil().clamp(0.0, 4.0) as usize;
    format!("{p:.decimals$}%")
}

/// Draw `series` as a line chart into the PNG at `path`.
pub fn line_chart(path: &Path, c: &Chart, series: &[Series]) -> Result<()> {
    register_font();
    let draw_err = |e: String| Error::msg(format!("drawing {}: {e}", path.display()));
    let to_x = |x: f64| {
        if c.x == Axis::Percentile {
            percentile_pos(x)
        } else {
            x
        }
    };
    let usable = |p: &&(f64, f64)| {
        p.0.is_finite()
            && p.1.is_finite()
            && (c.y != Axis::Log || p.1 > 0.0)
            && (c.x != Axis::Percentile || p.0 < 100.0)
    };
    let pts: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|s| {
            s.points
                .iter()
                .filter(usable)
                .map(|&(x, y)| (to_x(x), y))
                .collect()
        })
        .collect();
    let all = pts.iter().flatten();
    let (x0, x1, y0, y1) = all.fold(
        (f64::MAX, f64::MIN, f64::MAX, f64::MIN),
        |(a, b, c0, d), p| (a.min(p.0), b.max(p.0), c0.min(p.1), d.max(p.1)),
    );
    if x0 > x1 {
        crate::bail!("no data for {}", path.display());
    }
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_err(e.to_string()))?;
    let mut area = root
        .titled(c.title, ("sans-serif", 24))
        .map_err(|e| draw_err(e.to_string()))?;
    if !c.note.is_empty() {
        area = area
            .titled(
                c.note,
                ("sans-serif", 16).into_font().color(&RGBColor(90, 90, 90)),
            )
            .map_err(|e| draw_err(e.to_string()))?;
    }
    // The coordinate types differ between log and linear axes; the drawing is the same.
    macro_rules! draw {
        ($xrange:expr, $yrange:expr) => {{
            let mut chart = ChartBuilder::on(&area)
                .margin(20)
                .x_label_area_size(55)
                .y_label_area_size(90)
                .build_cartesian_2d($xrange, $yrange)
                .map_err(|e| draw_err(e.to_string()))?;
            let x_label = |x: &f64| {
                if c.x == Axis::Percentile {
                    percentile_label(*x)
                } else {
                    human(*x)
                }
            };
            chart
                .configure_mesh()
                .x_desc(c.x_desc)
                .y_desc(c.y_desc)
                .axis_desc_style(("sans-serif", 18))
                .label_style(("sans-serif", 15))
                .x_label_formatter(&x_label)
                .y_label_formatter(&|y| human(*y))
                .draw()
                .map_err(|e| draw_err(e.to_string()))?;
            for (s, pts) in series.iter().zip(&pts) {
                let col = color(&s.name);
                let style = col.stroke_width(if s.dashed { 2 } else { 3 });
                let drawn = if s.dashed {
                    chart.draw_series(DashedLineSeries::new(pts.clone(), 10, 6, style))
                } else {
                    chart.draw_series(LineSeries::new(pts.clone(), style))
                };
                let dashed = s.dashed;
                drawn
                    .map_err(|e| draw_err(e.to_string()))?
                    .label(s.name.clone())
                    .legend(move |(x, y)| {
                        if dashed {
                            PathElement::new(vec![(x, y), (x + 10, y)], style)
                        } else {
                            PathElement::new(vec![(x, y), (x + 24, y)], style)
                        }
                    });
                // Markers show measured points; a spectrum is a curve, not points.
                if pts.len() <= 64 && c.x != Axis::Percentile {
                    chart
                        .draw_series(pts.iter().map(|p| Circle::new(*p, 5, col.filled())))
                        .map_err(|e| draw_err(e.to_string()))?;
                }
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .label_font(("sans-serif", 17))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(|e| draw_err(e.to_string()))?;
        }};
    }
    let ylin = y0.min(0.0)..if y1 > 0.0 { y1 * 1.1 } else { 1.0 };
    let ylog = (y0.max(1e-3) / 1.5..y1.max(1e-3) * 1.5).log_scale();
    let pad = if c.x == Axis::Percentile { 1.05 } else { 1.5 };
    let xlog = (x0.max(1e-3) / pad..x1.max(1e-3) * pad).log_scale();
    let xlin = x0.min(0.0)..x1.max(1.0);
    match (c.x, c.y) {
        (Axis::Linear, Axis::Linear) => draw!(xlin, ylin),
        (Axis::Linear, _) => draw!(xlin, ylog),
        (_, Axis::Linear) => draw!(xlog, ylin),
        (_, _) => draw!(xlog, ylog),
    }
    root.present().map_err(|e| draw_err(e.to_string()))
}

/// 12345 → "12.3k": axis labels a person can read.
pub fn human(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || a == 0.0 {
        format!("{:.0}", v)
    } else if a >= 1.0 {
        format!("{:.1}", v)
    } else {
        format!("{:.2}", v)
    }
}

/// A value read off a result row.
type Metric = dyn Fn(&Row) -> f64;

/// Every chart for a set of throughput rows; returns the files written. `note` goes
/// under each title (where the run was measured; empty for none).
pub fn draw_all(dir: &Path, rows: &[Row], note: &str) -> Result<Vec<String>> {
    let mut servers: Vec<&str> = rows.iter().map(|r| r.server.as_str()).collect();
    servers.sort();
    servers.dedup();
    let mut sizes: Vec<u64> = rows.iter().map(|r| r.size).collect();
    sizes.sort();
    sizes.dedup();
    let mut written = Vec::new();
    let series_for = |size: u64, f: &dyn Fn(&Row) -> f64| -> Vec<Series> {
        servers
            .iter()
            .map(|srv| {
                let points = rows
                    .iter()
                    .filter(|r| r.server == *srv && r.size == size)
                    .map(|r| (r.conns as f64, f(r)))
                    .collect();
                Series::new(*srv, points)
            })
            .filter(|s| !s.points.is_empty())
            .collect()
    };
    for &size in &sizes {
        let charts: [(&str, String, &str, &Metric); 3] = [
            (
                "throughput",
                format!("Echoes per second, {size}-byte messages (closed loop)"),
                "echoes per second",
                &|r| r.echoes_per_sec,
            ),
            (
                "cpu_per_echo",
                format!("Whole-machine CPU per echo, {size}-byte messages (lower is better)"),
                "busy CPU µs per echo",
                &|r| r.machine_us_per_echo,
            ),
            (
                "latency_p99",
                format!("p99 round-trip latency, {size}-byte messages (lower is better)"),
                "p99 latency (µs)",
                &|r| r.p99_us,
            ),
        ];
        for (stem, title, y_desc, f) in charts {
            let name = format!("{stem}_{size}B.png");
            let chart = Chart {
                title: &title,
                note,
                x_desc: "concurrent connections (log scale)",
                y_desc,
                x: Axis::Log,
                y: Axis::Linear,
            };
            line_chart(&dir.join(&name), &chart, &series_for(size, f))?;
            written.push(name);
        }
    }
    Ok(written)
}

/// The seed's chart: connection number (completion order) against its mean response
/// time over the rounds, one line per server.
pub fn draw_burst(
    dir: &Path,
    per_server: &[(String, Vec<(u32, f64)>)],
    note: &str,
) -> Result<String> {
    let name = "burst_response.png".to_string();
    let series: Vec<Series> = per_server
        .iter()
        .map(|(srv, v)| {
            Series::new(
                srv.clone(),
                v.iter().map(|&(r, us)| (f64::from(r), us)).collect(),
            )
        })
        .collect();
    let chart = Chart {
        title: "Burst: all connections released at once, 13-byte message (mean over rounds)",
        note,
        x_desc: "connection number, in order of completion",
        y_desc: "response time (µs)",
        x: Axis::Linear,
        y: Axis::Linear,
    };
    line_chart(&dir.join(&name), &chart, &series)?;
    Ok(name)
}

/// Percentiles a spectrum line is drawn through: dense enough for a smooth curve from
/// the median to 99.99%, the "nines" HdrHistogram plots show.
pub fn spectrum_percentiles() -> Vec<f64> {
    // 50, 55, ... 85; then nine steps per nine: 90, 91, ... 98; 99, 99.1, ... 99.8; ...
    let mut ps: Vec<f64> = (0..8).map(|i| 50.0 + 5.0 * f64::from(i)).collect();
    for nine in 1..4 {
        let base = 100.0 - 10f64.powi(2 - nine);
        let step = 10f64.powi(1 - nine);
        ps.extend((0..9).map(|i| ((base + step * f64::from(i)) * 1e4).round() / 1e4));
    }
    ps.push(99.99);
    ps
}

/// A histogram's percentile spectrum, (percentile, µs) pairs at [`spectrum_percentiles`].
pub fn spectrum(h: &hdrhistogram::Histogram<u64>) -> Vec<(f64, f64)> {
    spectrum_percentiles()
        .into_iter()
        .map(|p| (p, h.value_at_quantile(p / 100.0) as f64 / 1000.0))
        .collect()
}

/// A latency percentile spectrum: x = percentile (50% to 99.99%, one width per nine),
/// y = latency in µs on a log scale, one line per series.
pub fn draw_spectrum(path: &Path, title: &str, note: &str, series: &[Series]) -> Result<()> {
    let chart = Chart {
        title,
        note,
        x_desc: "percentile (each nine gets the same width)",
        y_desc: "latency (µs, log scale)",
        x: Axis::Percentile,
        y: Axis::Log,
    };
    line_chart(path, &chart, series)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_short() {
        assert_eq!(human(0.0), "0");
        assert_eq!(human(950.0), "950");
        assert_eq!(human(1500.0), "1.5k");
        assert_eq!(human(210_115.0), "210k");
        assert_eq!(human(2_500_000.0), "2.5M");
        assert_eq!(human(4.567), "4.6");
        assert_eq!(human(0.456), "0.46");
    }

    #[test]
    fn percentile_axis_gives_each_nine_the_same_width() {
        let pos: Vec<f64> = [50.0, 90.0, 99.0, 99.9, 99.99]
            .iter()
            .map(|&p| percentile_pos(p).log10())
            .collect();
        for w in pos.windows(2).skip(1) {
            assert!((w[1] - w[0] - 1.0).abs() < 1e-9, "{pos:?}");
        }
        let labels: Vec<String> = [2.0, 10.0, 100.0, 1000.0, 10000.0, 20.0]
            .iter()
            .map(|&x| percentile_label(x))
            .collect();
        assert_eq!(labels, ["50%", "90%", "99%", "99.9%", "99.99%", "95%"]);
    }

    #[test]
    fn spectrum_runs_from_the_median_to_four_nines_in_order() {
        let ps = spectrum_percentiles();
        assert_eq!(ps[0], 50.0);
        assert_eq!(*ps.last().expect("points"), 99.99);
        assert!(ps.windows(2).all(|w| w[0] < w[1]), "{ps:?}");
        assert!(ps.len() > 30 && ps.len() < 60, "{}", ps.len());
    }

    #[test]
    fn draws_a_decodable_png_of_the_documented_size() {
        let dir = std::env::temp_dir().join(format!("ringecho-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("t.png");
        let s = [
            Series::new("uring", vec![(1.0, 10.0), (100.0, 300.0), (10000.0, 250.0)]),
            Series::new(
                "epoll",
                vec![(1.0, 9.0), (100.0, 200.0), (10000.0, f64::NAN)],
            ),
        ];
        let mut chart = Chart {
            title: "t",
            note: "a note",
            x_desc: "x",
            y_desc: "y",
            x: Axis::Log,
            y: Axis::Linear,
        };
        line_chart(&path, &chart, &s).expect("draw");
        chart.x = Axis::Linear;
        chart.y = Axis::Log;
        line_chart(&dir.join("lin.png"), &chart, &s).expect("linear x, log y");
        for f in ["t.png", "lin.png"] {
            let img = image::open(dir.join(f)).expect("decodes");
            assert_eq!((img.width(), img.height()), SIZE);
        }
        let mut h = crate::bench::hist::new_histogram();
        for v in 1..=100_000u64 {
            crate::bench::hist::record(&mut h, v * 100);
        }
        let mut dashed = Series::new("uring uncorrected", spectrum(&h));
        dashed.dashed = true;
        let spec = [Series::new("uring corrected", spectrum(&h)), dashed];
        draw_spectrum(&dir.join("s.png"), "spectrum", "", &spec).expect("spectrum");
        let img = image::open(dir.join("s.png")).expect("decodes");
        assert_eq!((img.width(), img.height()), SIZE);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
