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
}

fn color(name: &str) -> RGBColor {
    match name {
        "uring" => RGBColor(0xd6, 0x27, 0x28),
        "epoll" => RGBColor(0x1f, 0x77, 0xb4),
        "kernel" => RGBColor(0x2c, 0xa0, 0x2c),
        _ => RGBColor(0x7f, 0x7f, 0x7f),
    }
}

/// A line chart with a linear y axis from zero and a log-scale x axis (connection counts
/// span decades) or, with `log_x` false, a linear one.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
    log_x: bool,
) -> Result<()> {
    register_font();
    let draw_err = |e: String| Error::msg(format!("drawing {}: {e}", path.display()));
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (x0, x1) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    let y1 = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|y| y.is_finite())
        .fold(0.0f64, f64::max);
    if x0 > x1 {
        crate::bail!("no data for {}", path.display());
    }
    let y1 = if y1 > 0.0 { y1 * 1.1 } else { 1.0 };
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_err(e.to_string()))?;
    let builder = || {
        let mut b = ChartBuilder::on(&root);
        b.caption(title, ("sans-serif", 24))
            .margin(20)
            .x_label_area_size(55)
            .y_label_area_size(90);
        b
    };
    // The coordinate type differs between log and linear axes; the drawing is the same.
    macro_rules! draw {
        ($xrange:expr) => {{
            let mut chart = builder()
                .build_cartesian_2d($xrange, 0.0..y1)
                .map_err(|e| draw_err(e.to_string()))?;
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc(y_desc)
                .axis_desc_style(("sans-serif", 18))
                .label_style(("sans-serif", 15))
                .x_label_formatter(&|x| human(*x))
                .y_label_formatter(&|y| human(*y))
                .draw()
                .map_err(|e| draw_err(e.to_string()))?;
            for s in series {
                let c = color(&s.name);
                let pts: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .copied()
                    .filter(|p| p.1.is_finite())
                    .collect();
                chart
                    .draw_series(LineSeries::new(pts.clone(), c.stroke_width(3)))
                    .map_err(|e| draw_err(e.to_string()))?
                    .label(s.name.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3))
                    });
                if pts.len() <= 64 {
                    chart
                        .draw_series(pts.iter().map(|p| Circle::new(*p, 5, c.filled())))
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
    if log_x {
        draw!((x0.max(1.0) / 1.5..x1.max(1.0) * 1.5).log_scale());
    } else {
        draw!(x0.min(0.0)..x1.max(1.0));
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

/// Every chart for a set of throughput rows; returns the files written.
pub fn draw_all(dir: &Path, rows: &[Row]) -> Result<Vec<String>> {
    let mut servers: Vec<&str> = rows.iter().map(|r| r.server.as_str()).collect();
    servers.dedup();
    servers.sort();
    servers.dedup();
    let mut sizes: Vec<u64> = rows.iter().map(|r| r.size).collect();
    sizes.sort();
    sizes.dedup();
    let mut written = Vec::new();
    let series_for = |size: u64, f: &dyn Fn(&Row) -> f64| -> Vec<Series> {
        servers
            .iter()
            .map(|srv| Series {
                name: srv.to_string(),
                points: rows
                    .iter()
                    .filter(|r| r.server == *srv && r.size == size)
                    .map(|r| (r.conns as f64, f(r)))
                    .collect(),
            })
            .filter(|s| !s.points.is_empty())
            .collect()
    };
    for &size in &sizes {
        let name = format!("throughput_{size}B.png");
        line_chart(
            &dir.join(&name),
            &format!("Echoes per second, {size}-byte messages (closed loop)"),
            "concurrent connections (log scale)",
            "echoes per second",
            &series_for(size, &|r| r.echoes_per_sec),
            true,
        )?;
        written.push(name);
        let name = format!("cpu_per_echo_{size}B.png");
        line_chart(
            &dir.join(&name),
            &format!("Whole-machine CPU per echo, {size}-byte messages (lower is better)"),
            "concurrent connections (log scale)",
            "busy CPU µs per echo",
            &series_for(size, &|r| r.machine_us_per_echo),
            true,
        )?;
        written.push(name);
        let name = format!("latency_p99_{size}B.png");
        line_chart(
            &dir.join(&name),
            &format!("p99 round-trip latency, {size}-byte messages (lower is better)"),
            "concurrent connections (log scale)",
            "p99 latency (µs)",
            &series_for(size, &|r| r.p99_us),
            true,
        )?;
        written.push(name);
    }
    Ok(written)
}

/// The seed's chart: connection number (completion order) against its mean response
/// time over the rounds, one line per server.
pub fn draw_burst(dir: &Path, per_server: &[(String, Vec<(u32, f64)>)]) -> Result<String> {
    let name = "burst_response.png".to_string();
    let series: Vec<Series> = per_server
        .iter()
        .map(|(srv, v)| Series {
            name: srv.clone(),
            points: v.iter().map(|&(r, us)| (f64::from(r), us)).collect(),
        })
        .collect();
    line_chart(
        &dir.join(&name),
        "Burst: all connections released at once, 13-byte message (mean over rounds)",
        "connection number, in order of completion",
        "response time (µs)",
        &series,
        false,
    )?;
    Ok(name)
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
    fn draws_a_decodable_png_of_the_documented_size() {
        let dir = std::env::temp_dir().join(format!("ringecho-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("t.png");
        let s = [
            Series {
                name: "uring".into(),
                points: vec![(1.0, 10.0), (100.0, 300.0), (10000.0, 250.0)],
            },
            Series {
                name: "epoll".into(),
                points: vec![(1.0, 9.0), (100.0, 200.0), (10000.0, f64::NAN)],
            },
        ];
        line_chart(&path, "t", "x", "y", &s, true).expect("draw");
        line_chart(&dir.join("lin.png"), "t", "x", "y", &s, false).expect("linear x");
        let img = image::open(&path).expect("decodes");
        assert_eq!((img.width(), img.height()), SIZE);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
