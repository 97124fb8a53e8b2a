//! PNG charts drawn with plotters, with the DejaVu Sans font compiled in (no system fonts,
//! no gnuplot): the same pixels on any machine.
//!
//! Every axis is drawn on a linear f64 coordinate in a transformed space (log10 for log
//! and percentile axes), with tick positions chosen here and labelled by one formatter
//! ([`tick`], [`duration`]), so all charts share one tick format. Lines are stroked
//! here, segment by segment in pixels: plotters' wide polylines polygonise sharp or
//! zero-length joins into spikes that cross the whole image.

use std::path::Path;
use std::sync::Once;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::prelude::*;

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

/// The spread of a point's repeated rounds: a whisker from `lo` to `hi` at `x`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub x: f64,
    pub lo: f64,
    pub hi: f64,
}

/// One line of a chart: a name for the legend and its points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed (a secondary measure of the same server, e.g. uncorrected latency).
    pub dashed: bool,
    /// Drawn pale: the whole line is flagged (e.g. it measures the load generator); the
    /// reason belongs in the name or the chart's notes.
    pub faded: bool,
    /// The x of points flagged as unreliable (errors, starvation, an invalid round):
    /// drawn hollow.
    pub flagged: Vec<f64>,
    /// Single values drawn as hollow markers only (e.g. rounds flagged invalid, kept out
    /// of the whisker but shown).
    pub loose: Vec<(f64, f64)>,
    /// Whiskers: the spread of repeated rounds at some of the points.
    pub spreads: Vec<Spread>,
}

impl Series {
    /// A solid line.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            points,
            dashed: false,
            faded: false,
            flagged: Vec::new(),
            loose: Vec::new(),
            spreads: Vec::new(),
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

/// What an axis's values are, for its tick labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Numbers: 1, 10, 1.5k, 2M.
    Plain,
    /// Microseconds, labelled in µs, ms or s ("500 µs", "2 ms").
    Micros,
}

/// Titles, axes, legend extras and notes of one chart.
pub struct Chart<'a> {
    pub title: &'a str,
    /// A second, smaller title line (e.g. where the run was measured); empty for none.
    pub note: &'a str,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
    pub x: Axis,
    pub y: Axis,
    pub y_unit: Unit,
    /// Ticks of a log x axis at the data's x values (few distinct points, e.g. 1, 8, 64
    /// sockets) rather than at powers of ten.
    pub x_at_data: bool,
    /// Legend text of the hollow marker, shown when a series has flagged or loose points.
    pub hollow_label: String,
    /// Legend text of the whisker, shown when a series has spreads.
    pub spread_label: String,
    /// Lines of text under the legend: what was flagged and why, loss, caveats.
    pub notes: Vec<String>,
}

impl<'a> Chart<'a> {
    /// A chart with linear axes, plain units, default legend texts and no notes.
    pub fn new(title: &'a str, note: &'a str, x_desc: &'a str, y_desc: &'a str) -> Chart<'a> {
        Chart {
            title,
            note,
            x_desc,
            y_desc,
            x: Axis::Linear,
            y: Axis::Linear,
            y_unit: Unit::Plain,
            x_at_data: false,
            hollow_label: "hollow: flagged point (see notes)".into(),
            spread_label: "whisker: spread of repeated rounds".into(),
            notes: Vec::new(),
        }
    }

    /// The same with a log x axis ticked at the data's x values (connections, sockets:
    /// few distinct points).
    pub fn log_x_at_data(self) -> Chart<'a> {
        Chart {
            x: Axis::Log,
            x_at_data: true,
            ..self
        }
    }
}

/// `c` mixed with white: a pale but opaque colour (alpha would darken where strokes
/// overlap).
fn pale(c: RGBColor, faded: bool) -> RGBColor {
    if !faded {
        return c;
    }
    let m = |v: u8| (f64::from(v) + (255.0 - f64::from(v)) * 0.6).round() as u8;
    RGBColor(m(c.0), m(c.1), m(c.2))
}

/// Colours for other servers (`bench-all --server`), none of ours.
const OTHERS: [(u8, u8, u8); 6] = [
    (0xff, 0x7f, 0x0e),
    (0x94, 0x67, 0xbd),
    (0x8c, 0x56, 0x4b),
    (0xe3, 0x77, 0xc2),
    (0xbc, 0xbd, 0x22),
    (0x17, 0xbe, 0xcf),
];

/// A server's colour, as (r, g, b), from the legend name up to the first space ("uring
/// corrected" → uring): fixed for ours, and for any other server one of [`OTHERS`]
/// chosen by its name, so that it keeps its colour from run to run and chart to chart.
pub fn server_rgb(name: &str) -> (u8, u8, u8) {
    match name.split(' ').next().unwrap_or(name) {
        "uring" => (0xd6, 0x27, 0x28),
        "epoll" => (0x1f, 0x77, 0xb4),
        "kernel" => (0x2c, 0xa0, 0x2c),
        other => {
            let h = other.bytes().fold(0usize, |h, b| {
                h.wrapping_mul(31).wrapping_add(usize::from(b))
            });
            OTHERS[h % OTHERS.len()]
        }
    }
}

/// [`server_rgb`] for plotters.
fn color(name: &str) -> RGBColor {
    let (r, g, b) = server_rgb(name);
    RGBColor(r, g, b)
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

/// A value → its place on `axis` (log10 for log and percentile axes); None where the
/// axis cannot show it (zero or negative on a log axis, 100% on a percentile axis).
fn forward(axis: Axis, v: f64) -> Option<f64> {
    let t = match axis {
        Axis::Linear => v,
        Axis::Log if v > 0.0 => v.log10(),
        Axis::Percentile if v < 100.0 => percentile_pos(v).log10(),
        _ => return None,
    };
    t.is_finite().then_some(t)
}

/// The inverse of [`forward`] (a percentile axis gives back the position, 1 / (1 - p)).
fn back(axis: Axis, t: f64) -> f64 {
    match axis {
        Axis::Linear => t,
        Axis::Log | Axis::Percentile => 10f64.powf(t),
    }
}

/// `v` rounded to three significant digits.
fn round_sig(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let scale = 10f64.powi(2 - v.abs().log10().floor() as i32);
    (v * scale).round() / scale
}

/// A number with up to three significant digits, no trailing zeros, k/M for thousands
/// and millions: 0.5, 1, 2.5, 10, 250, 1k, 1.5k, 100k, 2M. The one tick format.
pub fn tick(v: f64) -> String {
    let v = round_sig(v);
    if v == 0.0 {
        return "0".into();
    }
    let (scaled, suffix) = match v.abs() {
        a if a >= 1e6 => (v / 1e6, "M"),
        a if a >= 1e3 => (v / 1e3, "k"),
        _ => (v, ""),
    };
    let decimals = (2 - scaled.abs().log10().floor() as i32).clamp(0, 6) as usize;
    let s = format!("{scaled:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    format!("{s}{suffix}")
}

/// The unit a duration of `us` microseconds reads best in: (divisor, name).
fn time_unit(us: f64) -> (f64, &'static str) {
    match us.abs() {
        a if a >= 1e6 => (1e6, "s"),
        a if a >= 1e3 => (1e3, "ms"),
        _ => (1.0, "µs"),
    }
}

/// Microseconds in the unit that reads best: "35 µs", "2.5 ms", "1.2 s".
pub fn duration(us: f64) -> String {
    if us == 0.0 {
        return "0".into();
    }
    let (div, unit) = time_unit(round_sig(us));
    format!("{} {unit}", tick(us / div))
}

/// Nice linear tick positions in `lo..=hi`: about six, at 1, 2, 2.5 or 5 × 10^k.
fn linear_ticks(lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>) {
    let raw = (hi - lo) / 6.0;
    // Also catches NaN: an empty or degenerate range gets one tick.
    if raw.is_nan() || raw <= 0.0 {
        return (vec![lo], vec![]);
    }
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let at = |step: f64| -> Vec<f64> {
        let first = (lo / step).ceil() as i64;
        let last = (hi / step + 1e-9).floor() as i64;
        (first..=last).map(|k| k as f64 * step).collect()
    };
    (at(step), at(step / 2.0))
}

/// Log tick positions (as values, not logs) in `lo..=hi`: powers of ten where those give
/// four or more, else 1-2-5 per decade, else every integer multiple.
fn log_ticks(lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>) {
    let at = |mults: &[f64]| -> Vec<f64> {
        let (d0, d1) = (lo.log10().floor() as i32 - 1, hi.log10().ceil() as i32 + 1);
        (d0..=d1)
            .flat_map(|d| mults.iter().map(move |m| round_sig(m * 10f64.powi(d))))
            .filter(|v| *v >= lo * (1.0 - 1e-9) && *v <= hi * (1.0 + 1e-9))
            .collect()
    };
    let all: [f64; 9] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
    let bold = [&[1.0][..], &[1.0, 2.0, 5.0][..]]
        .iter()
        .map(|m| at(m))
        .find(|t| t.len() >= 4)
        .unwrap_or_else(|| at(&all));
    (bold, at(&all))
}

/// The values a log x axis is labelled at when it labels the data: the distinct x values,
/// if there are 2 to 12 of them.
fn data_ticks(xs: &[f64]) -> Option<Vec<f64>> {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| *x > 0.0).collect();
    v.sort_by(f64::total_cmp);
    v.dedup();
    (2..=12).contains(&v.len()).then_some(v)
}

/// One axis, in transformed space: its range, bold (labelled) and light tick positions.
struct Scale {
    axis: Axis,
    range: (f64, f64),
    bold: Vec<f64>,
    light: Vec<f64>,
}

impl Scale {
    /// The axis for values `vals` (already usable on `axis`); `at_data`: label them.
    fn new(axis: Axis, vals: &[f64], is_x: bool, at_data: bool) -> Scale {
        let (lo, hi) = vals
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
        let (tlo, thi) = (
            forward(axis, lo).unwrap_or(0.0),
            forward(axis, hi).unwrap_or(1.0),
        );
        let span = thi - tlo;
        let range = match axis {
            // A rank axis ends at the data; a measure axis starts at zero with headroom.
            Axis::Linear if is_x => (lo.min(0.0), if hi > lo { hi } else { lo + 1.0 }),
            Axis::Linear => (lo.min(0.0), if hi > 0.0 { hi * 1.08 } else { 1.0 }),
            Axis::Log => {
                let pad = if at_data {
                    (span * 0.06).max(0.12)
                } else {
                    (span * 0.05).max(0.05)
                };
                (tlo - pad, thi + pad)
            }
            // Room at the left for the whiskers at 50%.
            Axis::Percentile => (tlo - 0.06, thi + 0.04),
        };
        let (bold, light) = match axis {
            Axis::Linear => linear_ticks(range.0, range.1),
            Axis::Log => {
                let (vlo, vhi) = (back(axis, range.0), back(axis, range.1));
                let (b, l) = log_ticks(vlo, vhi);
                let b = if at_data {
                    data_ticks(vals).unwrap_or(b)
                } else {
                    b
                };
                let log = |v: Vec<f64>| v.into_iter().map(f64::log10).collect();
                (log(b), log(l))
            }
            Axis::Percentile => {
                let inside = |t: &f64| *t >= range.0 && *t <= range.1;
                let bold = [50.0, 90.0, 99.0, 99.9, 99.99, 99.999]
                    .iter()
                    .filter_map(|p| forward(axis, *p))
                    .filter(inside)
                    .collect();
                let (_, l) = log_ticks(back(axis, range.0), back(axis, range.1));
                (bold, l.into_iter().map(f64::log10).filter(inside).collect())
            }
        };
        Scale {
            axis,
            range,
            bold,
            light,
        }
    }

    /// A tick's label.
    fn label(&self, t: f64, unit: Unit, linear_div: (f64, &'static str)) -> String {
        let v = back(self.axis, t);
        match (self.axis, unit) {
            (Axis::Percentile, _) => percentile_label(v),
            (_, Unit::Plain) => tick(v),
            // Per tick on a log axis (each decade reads best in its own unit); one unit
            // for the whole of a linear axis (0, 0.5 ms, 1 ms, ...).
            (Axis::Log, Unit::Micros) => duration(v),
            (Axis::Linear, Unit::Micros) if v == 0.0 => "0".into(),
            (Axis::Linear, Unit::Micros) => {
                format!("{} {}", tick(v / linear_div.0), linear_div.1)
            }
        }
    }
}

/// A linear f64 coordinate whose ticks are the given positions (plotters' own
/// key-point wrapper loses the label formatter for f64).
#[derive(Clone)]
struct Ticked {
    lo: f64,
    hi: f64,
    bold: Vec<f64>,
    light: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let span = self.hi - self.lo;
        if span <= 0.0 {
            return (limit.0 + limit.1) / 2;
        }
        let f = (v - self.lo) / span;
        limit.0 + (f * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.light.clone()
        } else {
            self.bold.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

impl Scale {
    /// The plotters coordinate of this axis.
    fn coord(&self) -> Ticked {
        Ticked {
            lo: self.range.0,
            hi: self.range.1,
            bold: self.bold.clone(),
            light: self.light.clone(),
        }
    }
}

/// Pixels of the legend band: row height, sample width.
const ROW: i32 = 21;
const NOTE_ROW: i32 = 18;
const SAMPLE: i32 = 34;

/// One legend entry: what its sample looks like and its text.
enum Glyph {
    Line {
        col: RGBColor,
        dashed: bool,
        faded: bool,
        marker: bool,
    },
    Hollow,
    Whisker,
}

/// Split `text` into lines no wider than `width` pixels in `font`.
fn wrap<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    text: &str,
    font: &TextStyle,
    width: u32,
) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in text.split(' ') {
        let cand = if cur.is_empty() {
            word.to_string()
        } else {
            format!("{cur} {word}")
        };
        let w = area.estimate_text_size(&cand, font).map_or(0, |s| s.0);
        if w > width && !cur.is_empty() {
            lines.push(std::mem::replace(&mut cur, word.to_string()));
        } else {
            cur = cand;
        }
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

/// Stroke the polyline `pix` segment by segment, with round joins (a dot at each inner
/// point) when wider than one pixel, dashed `(on, off)` pixels if asked. Zero-length
/// segments are skipped: plotters turns them into spikes.
fn stroke<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    pix: &[(f64, f64)],
    style: ShapeStyle,
    dash: Option<(f64, f64)>,
) -> std::result::Result<(), String> {
    let r = |p: (f64, f64)| (p.0.round() as i32, p.1.round() as i32);
    let mut segs: Vec<((f64, f64), (f64, f64))> = Vec::new();
    let mut phase = 0.0; // distance along the current dash period
    for w in pix.windows(2) {
        let (a, b) = (w[0], w[1]);
        let len = ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt();
        if len < 0.5 {
            continue;
        }
        let Some((on, off)) = dash else {
            segs.push((a, b));
            continue;
        };
        let at = |d: f64| (a.0 + (b.0 - a.0) * d / len, a.1 + (b.1 - a.1) * d / len);
        let mut d = 0.0;
        while d < len {
            let in_period = phase % (on + off);
            let left = if in_period < on {
                on - in_period
            } else {
                on + off - in_period
            };
            let step = left.min(len - d);
            if in_period < on {
                segs.push((at(d), at(d + step)));
            }
            d += step;
            phase += step;
        }
    }
    // A wide stroke is w one-pixel lines (plotters draws those without polygons) side
    // by side, shifted along the axis across the segment's direction: every column (or
    // row) of a segment gets exactly w pixels, with no gaps and no spikes.
    let w = style.stroke_width.max(1) as i32;
    let thin = ShapeStyle {
        stroke_width: 1,
        ..style
    };
    for (a, b) in &segs {
        let (p, q) = (r(*a), r(*b));
        if p == q {
            continue;
        }
        let shallow = (q.0 - p.0).abs() >= (q.1 - p.1).abs();
        for k in -(w - 1) / 2..=w / 2 {
            let off = |c: (i32, i32)| {
                if shallow {
                    (c.0, c.1 + k)
                } else {
                    (c.0 + k, c.1)
                }
            };
            root.draw(&PathElement::new(vec![off(p), off(q)], thin))
                .map_err(|e| e.to_string())?;
        }
    }
    let w = f64::from(w);
    if dash.is_none() && w > 1.0 {
        let rad = style.stroke_width.div_ceil(2);
        for p in pix.iter().skip(1).take(pix.len().saturating_sub(2)) {
            root.draw(&Circle::new(r(*p), rad - 1, style.color.filled()))
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// The most note lines under a chart (a sixth of its height).
const MAX_NOTE_LINES: usize = 7;

/// Draw `series` as a line chart into the PNG at `path`, with the legend and the notes
/// in a band under the plot (never over the data).
pub fn line_chart(path: &Path, c: &Chart, series: &[Series]) -> Result<()> {
    register_font();
    let draw_err = |e: String| Error::msg(format!("drawing {}: {e}", path.display()));
    let usable = |x: f64, y: f64| forward(c.x, x).is_some() && forward(c.y, y).is_some();
    let pts: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|s| {
            s.points
                .iter()
                .copied()
                .filter(|&(x, y)| usable(x, y))
                .collect()
        })
        .collect();
    let mut xs: Vec<f64> = pts.iter().flatten().map(|p| p.0).collect();
    if xs.is_empty() {
        crate::bail!("no data for {}", path.display());
    }
    let mut ys: Vec<f64> = pts.iter().flatten().map(|p| p.1).collect();
    for s in series {
        for sp in &s.spreads {
            for y in [sp.lo, sp.hi] {
                if usable(sp.x, y) {
                    ys.push(y);
                }
            }
        }
        for &(x, y) in &s.loose {
            if usable(x, y) {
                xs.push(x);
                ys.push(y);
            }
        }
    }
    let sx = Scale::new(c.x, &xs, true, c.x_at_data);
    let sy = Scale::new(c.y, &ys, false, false);

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

    // The legend: one entry per series, then the hollow marker and the whisker if used.
    let markers = c.x != Axis::Percentile;
    let mut entries: Vec<(Glyph, String)> = series
        .iter()
        .zip(&pts)
        .map(|(s, p)| {
            let glyph = Glyph::Line {
                col: color(&s.name),
                dashed: s.dashed,
                faded: s.faded,
                marker: markers && p.len() <= 64,
            };
            (glyph, s.name.clone())
        })
        .collect();
    if series
        .iter()
        .any(|s| !s.flagged.is_empty() || !s.loose.is_empty())
    {
        entries.push((Glyph::Hollow, c.hollow_label.clone()));
    }
    if series.iter().any(|s| !s.spreads.is_empty()) {
        entries.push((Glyph::Whisker, c.spread_label.clone()));
    }
    let legend_font: TextStyle = ("sans-serif", 15).into();
    let note_font: TextStyle = ("sans-serif", 14).into_font().color(&RGBColor(60, 60, 60));
    let width = area.dim_in_pixel().0 as i32 - 40;
    let mut placed: Vec<(i32, i32, usize)> = Vec::new(); // x, row, entry
    let (mut x, mut row) = (0, 0);
    for (i, (_, text)) in entries.iter().enumerate() {
        let w = SAMPLE
            + 8
            + area
                .estimate_text_size(text, &legend_font)
                .map_or(0, |s| s.0 as i32)
            + 24;
        if x > 0 && x + w > width {
            (x, row) = (0, row + 1);
        }
        placed.push((x, row, i));
        x += w;
    }
    // Notes take room from the plot: whole notes while they fit in a few lines, then a
    // line saying how many more there are (summary.md lists every flagged point).
    let wrapped: Vec<Vec<String>> = c
        .notes
        .iter()
        .map(|n| wrap(&area, n, &note_font, width as u32))
        .collect();
    let mut notes: Vec<String> = Vec::new();
    let total: usize = wrapped.iter().map(Vec::len).sum();
    for (i, w) in wrapped.iter().enumerate() {
        let room = if total <= MAX_NOTE_LINES {
            MAX_NOTE_LINES
        } else {
            MAX_NOTE_LINES - 1
        };
        if notes.len() + w.len() > room {
            let more = wrapped.len() - i;
            notes.push(format!(
                "... and {more} more: every flagged point is in summary.md."
            ));
            break;
        }
        notes.extend(w.iter().cloned());
    }
    let band = (row + 1) * ROW + notes.len() as i32 * NOTE_ROW + 10;
    let (plot_area, legend_area) = area.split_vertically(area.dim_in_pixel().1 as i32 - band);

    let mut chart = ChartBuilder::on(&plot_area)
        .margin(12)
        .margin_right(28)
        .x_label_area_size(50)
        .y_label_area_size(82)
        .build_cartesian_2d(sx.coord(), sy.coord())
        .map_err(|e| draw_err(e.to_string()))?;
    // A linear time axis reads in the unit of its largest tick.
    let ydiv = time_unit(sy.bold.iter().fold(0.0f64, |m, t| m.max(t.abs())));
    let x_label = |t: &f64| sx.label(*t, Unit::Plain, (1.0, ""));
    let y_label = |t: &f64| sy.label(*t, c.y_unit, ydiv);
    chart
        .configure_mesh()
        .x_desc(c.x_desc)
        .y_desc(c.y_desc)
        .axis_desc_style(("sans-serif", 18))
        .label_style(("sans-serif", 15))
        .x_label_formatter(&x_label)
        .y_label_formatter(&y_label)
        .bold_line_style(BLACK.mix(0.18))
        .light_line_style(BLACK.mix(0.05))
        .draw()
        .map_err(|e| draw_err(e.to_string()))?;

    let to_pix =
        |chart: &ChartContext<_, Cartesian2d<_, _>>, x: f64, y: f64| -> Option<(f64, f64)> {
            let (tx, ty) = (forward(c.x, x)?, forward(c.y, y)?);
            let p = chart_pixel(chart, tx, ty);
            Some(p)
        };
    // Whiskers (and the loose rounds beside them) of servers sharing an x stand side by
    // side, centred on it: offsets among the series that have any.
    let with_spread: Vec<usize> = (0..series.len())
        .filter(|&i| !series[i].spreads.is_empty() || !series[i].loose.is_empty())
        .collect();
    let m = with_spread.len() as f64;
    let offset = |i: usize| {
        with_spread
            .iter()
            .position(|&j| j == i)
            .map_or(0.0, |j| (j as f64 - (m - 1.0) / 2.0) * 7.0)
    };
    // Whiskers first, under the lines; side by side where servers share an x.
    for (i, s) in series.iter().enumerate() {
        let col = color(&s.name);
        let dx = offset(i);
        for sp in &s.spreads {
            let (Some(a), Some(b)) = (to_pix(&chart, sp.x, sp.lo), to_pix(&chart, sp.x, sp.hi))
            else {
                continue;
            };
            let xw = a.0 + dx;
            let style = col.stroke_width(2);
            stroke(&root, &[(xw, a.1), (xw, b.1)], style, None).map_err(draw_err)?;
            for y in [a.1, b.1] {
                stroke(&root, &[(xw - 5.0, y), (xw + 5.0, y)], style, None).map_err(draw_err)?;
            }
        }
    }
    for (i, (s, p)) in series.iter().zip(&pts).enumerate() {
        let col = pale(color(&s.name), s.faded);
        let dx = offset(i);
        // Dense lines (a rank per connection) are thin: wide strokes would merge them.
        let width = if p.len() > 200 { 1 } else { 3 };
        let style = col.stroke_width(width);
        let pix: Vec<(f64, f64)> = p
            .iter()
            .filter_map(|&(x, y)| to_pix(&chart, x, y))
            .collect();
        let dash = s.dashed.then_some((10.0, 6.0));
        stroke(&root, &pix, style, dash).map_err(draw_err)?;
        if markers && p.len() <= 64 {
            for (&(x, _), &q) in p.iter().zip(&pix) {
                let q = (q.0.round() as i32, q.1.round() as i32);
                if s.flagged.contains(&x) {
                    root.draw(&Circle::new(q, 6, WHITE.filled()))
                        .map_err(|e| draw_err(e.to_string()))?;
                    root.draw(&Circle::new(q, 6, col.stroke_width(2)))
                        .map_err(|e| draw_err(e.to_string()))?;
                } else {
                    root.draw(&Circle::new(q, 5, col.filled()))
                        .map_err(|e| draw_err(e.to_string()))?;
                }
            }
        }
        for &(x, y) in &s.loose {
            if let Some(q) = to_pix(&chart, x, y) {
                // Beside its server's whisker, as the whiskers are.
                let q = ((q.0 + dx).round() as i32, q.1.round() as i32);
                // The round, not the main run, is what is flagged: full colour.
                root.draw(&Circle::new(q, 4, color(&s.name).stroke_width(2)))
                    .map_err(|e| draw_err(e.to_string()))?;
            }
        }
    }

    // The legend band, under the x axis description.
    let (ox, oy) = (
        legend_area.get_pixel_range().0.start + 20,
        legend_area.get_pixel_range().1.start + 4,
    );
    for (x, row, i) in placed {
        let (glyph, text) = &entries[i];
        let (gx, gy) = (ox + x, oy + row * ROW + ROW / 2);
        let fx = |v: i32| f64::from(v);
        match glyph {
            Glyph::Line {
                col,
                dashed,
                faded,
                marker,
            } => {
                let col = pale(*col, *faded);
                let style = col.stroke_width(3);
                let dash = dashed.then_some((8.0, 5.0));
                stroke(
                    &root,
                    &[(fx(gx), fx(gy)), (fx(gx + SAMPLE), fx(gy))],
                    style,
                    dash,
                )
                .map_err(draw_err)?;
                if *marker {
                    root.draw(&Circle::new((gx + SAMPLE / 2, gy), 5, col.filled()))
                        .map_err(|e| draw_err(e.to_string()))?;
                }
            }
            Glyph::Hollow => {
                let grey = RGBColor(80, 80, 80);
                root.draw(&Circle::new((gx + SAMPLE / 2, gy), 6, grey.stroke_width(2)))
                    .map_err(|e| draw_err(e.to_string()))?;
            }
            Glyph::Whisker => {
                let st = RGBColor(80, 80, 80).stroke_width(2);
                let m = fx(gx + SAMPLE / 2);
                let (t, b) = (fx(gy - 8), fx(gy + 8));
                stroke(&root, &[(m, t), (m, b)], st, None).map_err(draw_err)?;
                for y in [t, b] {
                    stroke(&root, &[(m - 5.0, y), (m + 5.0, y)], st, None).map_err(draw_err)?;
                }
            }
        }
        root.draw(&Text::new(
            text.clone(),
            (gx + SAMPLE + 8, gy - 9),
            legend_font.clone(),
        ))
        .map_err(|e| draw_err(e.to_string()))?;
    }
    let mut ny = oy + (row + 1) * ROW + 2;
    for line in notes {
        root.draw(&Text::new(line, (ox, ny), note_font.clone()))
            .map_err(|e| draw_err(e.to_string()))?;
        ny += NOTE_ROW;
    }
    root.present().map_err(|e| draw_err(e.to_string()))
}

/// The pixel of transformed coordinates (tx, ty) on `chart`.
fn chart_pixel<DB: DrawingBackend>(
    chart: &ChartContext<DB, Cartesian2d<Ticked, Ticked>>,
    tx: f64,
    ty: f64,
) -> (f64, f64) {
    let p = chart.backend_coord(&(tx, ty));
    (f64::from(p.0), f64::from(p.1))
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

/// A histogram's percentile spectrum, (percentile, µs) pairs at [`spectrum_percentiles`];
/// empty for an empty histogram (nothing came back).
pub fn spectrum(h: &hdrhistogram::Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    spectrum_percentiles()
        .into_iter()
        .map(|p| (p, h.value_at_quantile(p / 100.0) as f64 / 1000.0))
        .collect()
}

/// A latency percentile spectrum: x = percentile (50% to 99.99%, one width per nine),
/// y = latency on a log scale in µs/ms/s, one line per series; `notes` under the legend.
pub fn draw_spectrum(
    path: &Path,
    title: &str,
    note: &str,
    series: &[Series],
    notes: Vec<String>,
) -> Result<()> {
    let mut chart = Chart::new(
        title,
        note,
        "percentile (each nine gets the same width)",
        "latency (log scale)",
    );
    chart.x = Axis::Percentile;
    chart.y = Axis::Log;
    chart.y_unit = Unit::Micros;
    chart.notes = notes;
    line_chart(path, &chart, series)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_tick_format() {
        let t: Vec<String> = [
            0.0,
            0.5,
            1.0,
            2.5,
            10.0,
            250.0,
            999.9,
            1000.0,
            1500.0,
            5000.0,
            12345.0,
            100_000.0,
            210_115.0,
            2_500_000.0,
            4.567,
            0.456,
            0.05,
        ]
        .iter()
        .map(|&v| tick(v))
        .collect();
        assert_eq!(
            t,
            [
                "0", "0.5", "1", "2.5", "10", "250", "1k", "1k", "1.5k", "5k", "12.3k", "100k",
                "210k", "2.5M", "4.57", "0.456", "0.05"
            ]
        );
        assert_eq!(duration(35.0), "35 µs");
        assert_eq!(duration(500.0), "500 µs");
        assert_eq!(duration(2500.0), "2.5 ms");
        assert_eq!(duration(999.99), "1 ms");
        assert_eq!(duration(1_200_000.0), "1.2 s");
    }

    #[test]
    fn log_ticks_are_decades_or_one_two_five_and_never_repeat_a_label() {
        let (b, _) = log_ticks(30.0, 600_000.0);
        assert_eq!(b, [100.0, 1000.0, 10_000.0, 100_000.0]);
        let (b, _) = log_ticks(300.0, 40_000.0);
        assert_eq!(b, [500.0, 1000.0, 2000.0, 5000.0, 10_000.0, 20_000.0]);
        let (b, l) = log_ticks(2000.0, 9000.0);
        assert!(b.len() >= 4 && b.len() == l.len(), "{b:?}");
        for (lo, hi) in [(0.3, 3e5), (80.0, 1.2e5), (1.0, 1e4), (5000.0, 2e5)] {
            let (b, _) = log_ticks(lo, hi);
            let labels: Vec<String> = b.iter().map(|&v| tick(v)).collect();
            let mut d = labels.clone();
            d.dedup();
            assert_eq!(d, labels, "{lo}..{hi}");
        }
        assert_eq!(
            data_ticks(&[64.0, 1.0, 8.0, 8.0]),
            Some(vec![1.0, 8.0, 64.0])
        );
        assert_eq!(data_ticks(&[3.0]), None);
    }

    #[test]
    fn linear_ticks_are_round() {
        let (b, _) = linear_ticks(0.0, 5400.0);
        assert_eq!(b, [0.0, 1000.0, 2000.0, 3000.0, 4000.0, 5000.0]);
        let (b, _) = linear_ticks(0.0, 300_000.0);
        assert_eq!(b.last(), Some(&300_000.0));
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
        assert!(spectrum(&crate::hist::new_histogram()).is_empty());
    }

    #[test]
    fn draws_a_decodable_png_of_the_documented_size() {
        let dir = std::env::temp_dir().join(format!("ringecho-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("t.png");
        let mut uring = Series::new("uring", vec![(1.0, 10.0), (100.0, 300.0), (10000.0, 250.0)]);
        uring.flagged = vec![100.0];
        uring.spreads = vec![Spread {
            x: 100.0,
            lo: 200.0,
            hi: 400.0,
        }];
        uring.loose = vec![(100.0, 500.0)];
        let s = [
            uring,
            Series::new(
                "epoll",
                vec![(1.0, 9.0), (100.0, 200.0), (10000.0, f64::NAN)],
            ),
        ];
        let mut chart = Chart::new("t", "a note", "x", "y").log_x_at_data();
        chart.notes = vec!["a note under the legend, long enough to be wrapped onto a second line when it does not fit in the width of the chart at all".into()];
        line_chart(&path, &chart, &s).expect("draw");
        chart.x = Axis::Linear;
        chart.y = Axis::Log;
        chart.y_unit = Unit::Micros;
        line_chart(&dir.join("lin.png"), &chart, &s).expect("linear x, log y");
        for f in ["t.png", "lin.png"] {
            let img = image::open(dir.join(f)).expect("decodes");
            assert_eq!((img.width(), img.height()), SIZE);
        }
        let mut h = crate::hist::new_histogram();
        for v in 1..=100_000u64 {
            crate::hist::record(&mut h, v * 100);
        }
        let mut dashed = Series::new("uring uncorrected", spectrum(&h));
        dashed.dashed = true;
        let spec = [Series::new("uring corrected", spectrum(&h)), dashed];
        draw_spectrum(&dir.join("s.png"), "spectrum", "", &spec, vec![]).expect("spectrum");
        let img = image::open(dir.join("s.png")).expect("decodes");
        assert_eq!((img.width(), img.height()), SIZE);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn jagged_dense_lines_stay_inside_the_plot() {
        // The burst chart's failure: a thousand noisy points, repeats among them, drew
        // lines through the title. Nothing red may land in the title band.
        let dir = std::env::temp_dir().join(format!("ringecho-jagged-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("j.png");
        let pts: Vec<(f64, f64)> = (0..1000)
            .map(|i| {
                let y = if i % 7 == 0 {
                    5000.0
                } else {
                    1000.0 + f64::from(i % 13) * 50.0
                };
                (f64::from(i / 2), y)
            })
            .collect();
        let mut chart = Chart::new("", "", "rank", "response");
        chart.y_unit = Unit::Micros;
        line_chart(&path, &chart, &[Series::new("uring", pts)]).expect("draw");
        let img = image::open(&path).expect("decodes").to_rgb8();
        let red = |p: &image::Rgb<u8>| p.0[0] > 150 && p.0[1] < 120 && p.0[2] < 120;
        let stray = (0..SIZE.0)
            .flat_map(|x| (0..18).map(move |y| (x, y)))
            .filter(|&(x, y)| red(img.get_pixel(x, y)))
            .count();
        assert_eq!(stray, 0, "red pixels in the top band");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
