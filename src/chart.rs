//! Charts of a series against its model, as self-contained SVG.
//!
//! This module owns drawing only: given the points of one series (value,
//! expected value, band, warm-up, alert state), [`Chart::render`] writes an
//! SVG document with a title (wrapped between label pairs when long), a
//! time axis (UTC dates), a value axis in the series' own unit with its SI
//! prefix ([`crate::units`]), a legend, the band, the value line, the
//! expected line drawn on top of both, warm-up shaded and alert spans
//! marked with their severity. A span of an alert the `stuck` channel
//! raised is drawn hatched in a neutral grey: the value repeats, and may
//! well sit inside the band, so it is not painted as a value anomaly.
//! `anomalyd backtest --plot` and the live page ([`crate::ui`]) both draw
//! with it, so a backtest plot and the page look alike.
//!
//! No plotting dependency: a chart is a few paths and rectangles. Styling is
//! in presentation attributes (no `<style>`, no `style=""`), so the same
//! SVG reads the same as a standalone file and inline under the page's
//! Content-Security-Policy. Every text is escaped ([`escape`]).
//!
//! The `<svg>` element carries the plot's geometry for scripts that map a
//! pointer position back to time (the page's hover read-out):
//! `data-x0`/`data-x1` are the plot's left and right edges in viewBox units,
//! `data-t0`/`data-t1` the times there (epoch milliseconds), `data-top` and
//! `data-bottom` its top and bottom edges, `data-v1`/`data-v0` the values
//! there.

use std::borrow::Cow;
use std::fmt::Write;

use chrono::DateTime;

use crate::alert::Severity;
use crate::units::Unit;

pub use crate::units::unit_of_metric;

/// The model's view of one observation: what it expected and the band of
/// values that would not have alerted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Expected {
    /// The forecast.
    pub expected: f64,
    /// Lower edge of the band (may be `f64::MIN`: unbounded).
    pub lower: f64,
    /// Upper edge of the band (may be `f64::MAX`: unbounded).
    pub upper: f64,
}

/// One point of a chart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Event time, epoch milliseconds (UTC).
    pub ts_ms: i64,
    /// The observed value; `None` for a row that could not be read.
    pub value: Option<f64>,
    /// The model's expectation; `None` when the observation was not scored.
    pub model: Option<Expected>,
    /// Scored while the series was still warming up (it could not alert).
    pub warming: bool,
    /// The alert state after this observation: firing with this severity,
    /// or quiet.
    pub alert: Option<Severity>,
    /// That alert was raised by the `stuck` channel (the value repeats).
    pub stuck: bool,
}

/// Colours, one place: the legend and the marks must agree.
mod colour {
    pub const VALUE: &str = "#111827";
    pub const EXPECTED: &str = "#c2410c";
    pub const BAND: &str = "#60a5fa";
    pub const WARMUP: &str = "#d1d5db";
    pub const WARNING: &str = "#f59e0b";
    pub const CRITICAL: &str = "#dc2626";
    pub const STUCK: &str = "#6b7280";
    pub const GRID: &str = "#e5e7eb";
    pub const AXIS: &str = "#6b7280";
    pub const TEXT: &str = "#374151";
}

const FONT: &str = "font-family=\"system-ui, -apple-system, 'Segoe UI', sans-serif\"";

/// A chart's frame: title, unit and size. Build with [`Chart::new`].
#[derive(Debug, Clone)]
pub struct Chart<'a> {
    title: &'a str,
    unit: Option<&'a str>,
    quantity: Unit,
    width: f64,
    height: f64,
}

/// Height of one title line.
const TITLE_LINE: f64 = 19.0;

/// Title lines at most (a longer title ends in `…`; the `<title>` element
/// keeps it whole).
const MAX_TITLE_LINES: usize = 4;

impl<'a> Chart<'a> {
    /// A 1000 × 380 chart titled `title` (escaped when drawn).
    pub fn new(title: &'a str) -> Self {
        Self {
            title,
            unit: None,
            quantity: Unit::none(),
            width: 1000.0,
            height: 380.0,
        }
    }

    /// Names the value axis' unit (as given, never converted), e.g.
    /// `seconds`; see [`unit_of_metric`].
    pub fn unit(mut self, unit: Option<&'a str>) -> Self {
        self.unit = unit;
        self
    }

    /// The unit the value axis' ticks are printed in, with its SI prefix
    /// (default: a plain number).
    pub fn quantity(mut self, unit: Unit) -> Self {
        self.quantity = unit;
        self
    }

    /// Sets the size in SVG user units (the `viewBox`; the page scales it
    /// to its width).
    pub fn size(mut self, width: f64, height: f64) -> Self {
        self.width = width.max(300.0);
        self.height = height.max(200.0);
        self
    }

    /// Draws `points` (in time order) as an SVG document.
    pub fn render(&self, points: &[Point]) -> String {
        // About 8.3 units per character at the title's size.
        let per_line = ((self.width - 96.0) / 8.3).max(20.0) as usize;
        let title_lines = wrap_title(self.title, per_line, MAX_TITLE_LINES);
        let extra = TITLE_LINE * (title_lines.len().max(1) - 1) as f64;
        let plot = Plot::new(self, points, extra);
        let mut s = String::with_capacity(4096 + points.len() * 48);
        let (w, h) = (self.width, self.height);
        // Writing to a String cannot fail; results are ignored on purpose.
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" data-x0="{:.1}" data-x1="{:.1}" data-t0="{}" data-t1="{}" data-top="{:.1}" data-bottom="{:.1}" data-v0="{}" data-v1="{}" data-points="{}" {FONT} font-size="12">"#,
            plot.left,
            plot.right,
            plot.t0,
            plot.t1,
            plot.top,
            plot.bottom,
            plot.lo,
            plot.hi,
            points.len(),
        );
        let _ = write!(
            s,
            "\n<title>{}</title>\n<rect class=\"background\" width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n",
            escape(self.title)
        );
        let _ = write!(
            s,
            r#"<text class="title" x="{:.1}" y="20" font-size="15" font-weight="600" fill="{}">"#,
            plot.left,
            colour::TEXT,
        );
        for (i, line) in title_lines.iter().enumerate() {
            let dy = if i == 0 { 0.0 } else { TITLE_LINE };
            let _ = write!(
                s,
                r#"<tspan x="{:.1}" dy="{dy}">{}</tspan>"#,
                plot.left,
                escape(line)
            );
        }
        s.push_str("</text>\n");
        s.push_str(concat!(
            r#"<defs><pattern id="stuck-hatch" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">"#,
            r##"<rect width="8" height="8" fill="#6b7280" fill-opacity="0.08"/><line x1="0" y1="0" x2="0" y2="8" stroke="#6b7280" stroke-width="3" stroke-opacity="0.35"/></pattern></defs>"##,
            "\n"
        ));
        self.legend(&mut s, &plot, 38.0 + extra);
        plot.grid_and_axes(&mut s, self.unit, &self.quantity);
        if plot.empty {
            let _ = writeln!(
                s,
                r#"<text class="empty" x="{:.1}" y="{:.1}" text-anchor="middle" fill="{}">no data yet</text>"#,
                (plot.left + plot.right) / 2.0,
                (plot.top + plot.bottom) / 2.0,
                colour::AXIS
            );
        } else {
            plot.spans(&mut s, points);
            plot.band(&mut s, points);
            plot.line(&mut s, points, "value", colour::VALUE, "1.3", None, |p| {
                p.value
            });
            // Last, so the forecast stays visible over the band and the data.
            plot.line(
                &mut s,
                points,
                "expected",
                colour::EXPECTED,
                "1.6",
                Some("6 3"),
                |p| p.model.map(|m| m.expected),
            );
        }
        s.push_str("</svg>\n");
        s
    }

    /// One row under the title: a swatch and a word per mark.
    fn legend(&self, s: &mut String, plot: &Plot, y: f64) {
        /// A line swatch (colour, dash), a filled one (colour, opacity) or
        /// the stuck hatching.
        enum Swatch {
            Line(&'static str, &'static str),
            Fill(&'static str, &'static str),
            Hatch,
        }
        const ITEMS: [(Swatch, &str); 7] = [
            (Swatch::Line(colour::VALUE, ""), "value"),
            (
                Swatch::Line(colour::EXPECTED, r#" stroke-dasharray="6 3""#),
                "expected",
            ),
            (Swatch::Fill(colour::BAND, "0.35"), "normal band"),
            (Swatch::Fill(colour::WARMUP, "0.6"), "warm-up"),
            (Swatch::Fill(colour::WARNING, "0.5"), "warning alert"),
            (Swatch::Fill(colour::CRITICAL, "0.45"), "critical alert"),
            (Swatch::Hatch, "stuck alert (repeated value)"),
        ];
        let mut x = plot.left;
        let _ = write!(s, r#"<g class="legend" fill="{}">"#, colour::TEXT);
        for (swatch, label) in ITEMS {
            let _ = match swatch {
                Swatch::Line(c, dash) => write!(
                    s,
                    r#"<line x1="{x:.1}" y1="{y}" x2="{:.1}" y2="{y}" stroke="{c}" stroke-width="2"{dash}/>"#,
                    x + 16.0
                ),
                Swatch::Fill(c, opacity) => write!(
                    s,
                    r#"<rect x="{x:.1}" y="{:.1}" width="16" height="10" fill="{c}" fill-opacity="{opacity}"/>"#,
                    y - 5.0
                ),
                Swatch::Hatch => write!(
                    s,
                    r#"<rect x="{x:.1}" y="{:.1}" width="16" height="10" fill="url(#stuck-hatch)" stroke="{}" stroke-width="0.5"/>"#,
                    y - 5.0,
                    colour::STUCK
                ),
            };
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}">{label}</text>"#,
                x + 22.0,
                y + 4.0
            );
            x += 30.0 + 7.0 * label.len() as f64;
        }
        s.push_str("</g>\n");
    }
}

/// `title` in lines of at most `width` characters, broken after a `,`
/// (between a selector's label pairs), else at a space, `{` or `/`, else
/// anywhere; at most `max_lines` lines, the last one ending in `…` when
/// the title is longer still.
pub fn wrap_title(title: &str, width: usize, max_lines: usize) -> Vec<String> {
    let chars: Vec<char> = title.chars().collect();
    let mut lines = Vec::new();
    let mut start = 0;
    while start < chars.len() {
        if lines.len() + 1 == max_lines.max(1) || chars.len() - start <= width {
            let rest: String = chars[start..].iter().collect();
            if chars.len() - start > width {
                let cut: String = chars[start..start + width.saturating_sub(1)]
                    .iter()
                    .collect();
                lines.push(format!("{cut}…"));
            } else {
                lines.push(rest);
            }
            break;
        }
        let window = &chars[start..start + width];
        let best = |set: &[char]| {
            window
                .iter()
                .rposition(|c| set.contains(c))
                .filter(|&i| i > 0)
        };
        let end = best(&[','])
            .or_else(|| best(&[' ', '{', '/']))
            .map_or(width, |i| i + 1);
        lines.push(
            chars[start..start + end]
                .iter()
                .collect::<String>()
                .trim_end()
                .to_owned(),
        );
        start += end;
    }
    if lines.is_empty() {
        lines.push(String::new());
    }
    lines
}

/// Escapes text for XML and HTML, in element content and in quoted
/// attribute values alike, and makes what would hide or disguise text
/// visible as `\u{…}` (`\n`, `\t`, `\r` for those three): control
/// characters (a NUL is not allowed in XML even as a reference, so a chart
/// with one would not parse), the bidirectional formatting characters that
/// make a label read as another (U+061C, U+200E–U+200F, U+202A–U+202E,
/// U+2066–U+2069), zero-width characters and the two non-characters
/// U+FFFE and U+FFFF. `assets/app.js` shows text the same way.
pub fn escape(s: &str) -> Cow<'_, str> {
    let plain =
        |b: &u8| (0x20..0x7f).contains(b) && !matches!(b, b'&' | b'<' | b'>' | b'"' | b'\'');
    if s.as_bytes().iter().all(plain) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if hidden(c) => {
                use std::fmt::Write;
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Characters [`escape`] writes as `\u{…}`.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
                | '\u{fffe}'
                | '\u{ffff}'
        )
}

/// The plot area and its scales.
struct Plot {
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    t0: i64,
    t1: i64,
    lo: f64,
    hi: f64,
    /// Value-axis tick step.
    step: f64,
    /// Times further apart than this break the lines (a gap in the data).
    gap_ms: i64,
    empty: bool,
}

/// Band edges further than this many value ranges beyond the data are
/// clipped: an unbounded or very wide band must not flatten the series.
const BAND_REACH: f64 = 1.0;

impl Plot {
    /// The plot of `points` under a title `extra` units taller than one
    /// line.
    fn new(chart: &Chart<'_>, points: &[Point], extra: f64) -> Self {
        let (left, right) = (72.0, chart.width - 24.0);
        let (top, bottom) = (54.0 + extra, chart.height - 46.0);
        let (mut t0, mut t1) = (i64::MAX, i64::MIN);
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for p in points {
            t0 = t0.min(p.ts_ms);
            t1 = t1.max(p.ts_ms);
            for v in p.value.into_iter().chain(p.model.map(|m| m.expected)) {
                if v.is_finite() {
                    lo = lo.min(v);
                    hi = hi.max(v);
                }
            }
        }
        let empty = !lo.is_finite();
        if empty {
            (lo, hi) = (0.0, 1.0);
        }
        if t0 > t1 {
            let now = chrono::Utc::now().timestamp_millis();
            (t0, t1) = (now - 3_600_000, now);
        }
        if t0 == t1 {
            (t0, t1) = (t0 - 30_000, t1 + 30_000);
        }
        // The band widens the range, but only so far.
        let span = (hi - lo).max(hi.abs().max(lo.abs()) * 0.05).max(1e-9);
        let (reach_lo, reach_hi) = (lo - BAND_REACH * span, hi + BAND_REACH * span);
        for m in points.iter().filter_map(band_of) {
            if m.lower.is_finite() && m.lower >= reach_lo {
                lo = lo.min(m.lower);
            }
            if m.upper.is_finite() && m.upper <= reach_hi {
                hi = hi.max(m.upper);
            }
        }
        if hi - lo < span * 0.1 {
            (lo, hi) = (lo - span * 0.5, hi + span * 0.5);
        }
        let pad = (hi - lo) * 0.04;
        let step = nice_step((hi - lo + 2.0 * pad) / 5.0);
        let lo = ((lo - pad) / step).floor() * step;
        let hi = ((hi + pad) / step).ceil() * step;
        Self {
            left,
            right,
            top,
            bottom,
            t0,
            t1,
            lo,
            hi,
            step,
            gap_ms: gap_threshold(points),
            empty,
        }
    }

    fn x(&self, ts_ms: i64) -> f64 {
        self.left + (self.right - self.left) * (ts_ms - self.t0) as f64 / (self.t1 - self.t0) as f64
    }

    fn y(&self, v: f64) -> f64 {
        let v = v.clamp(self.lo, self.hi);
        self.bottom - (self.bottom - self.top) * (v - self.lo) / (self.hi - self.lo)
    }

    fn grid_and_axes(&self, s: &mut String, unit: Option<&str>, quantity: &Unit) {
        let _ = write!(
            s,
            r#"<g class="axis value-axis" fill="{}" font-size="11">"#,
            colour::AXIS
        );
        let ticks = ((self.hi - self.lo) / self.step).round() as i64;
        for i in 0..=ticks {
            let v = self.lo + i as f64 * self.step;
            let y = self.y(v);
            let _ = write!(
                s,
                r#"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{}"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                self.left,
                self.right,
                colour::GRID,
                self.left - 6.0,
                y + 4.0,
                escape(&quantity.format_tick(v, self.step, self.lo.abs().max(self.hi.abs())))
            );
        }
        let label = unit.map_or(Cow::Borrowed("value"), |u| {
            Cow::Owned(format!("value ({})", escape(u)))
        });
        let mid = (self.top + self.bottom) / 2.0;
        let _ = write!(
            s,
            r#"<text class="unit" x="14" y="{mid:.1}" text-anchor="middle" transform="rotate(-90 14 {mid:.1})">{label}</text></g>"#
        );
        s.push('\n');
        let _ = write!(
            s,
            r#"<g class="axis time-axis" fill="{}" font-size="11">"#,
            colour::AXIS
        );
        let step = time_step(self.t1 - self.t0, self.right - self.left);
        let mut t = self.t0.div_euclid(step) * step;
        if t < self.t0 {
            t += step;
        }
        let mut last_date = String::new();
        while t <= self.t1 {
            let x = self.x(t);
            let (time, date) = format_time(t, step);
            let _ = write!(
                s,
                r#"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="{}"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{time}</text>"#,
                self.top,
                self.bottom + 4.0,
                colour::GRID,
                self.bottom + 17.0
            );
            // The date under the first tick and wherever it changes.
            if !date.is_empty() && date != last_date {
                let _ = write!(
                    s,
                    r#"<text class="date" x="{x:.1}" y="{:.1}" text-anchor="middle" font-weight="600">{date}</text>"#,
                    self.bottom + 31.0
                );
                last_date = date;
            }
            t += step;
        }
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">time (UTC)</text></g>"#,
            self.right,
            self.bottom + 42.0
        );
        let _ = writeln!(
            s,
            "\n<rect class=\"frame\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" stroke=\"{}\"/>",
            self.left,
            self.top,
            self.right - self.left,
            self.bottom - self.top,
            colour::AXIS
        );
    }

    /// Warm-up shading and alert spans, behind the data.
    fn spans(&self, s: &mut String, points: &[Point]) {
        let height = self.bottom - self.top;
        for run in runs(points, |p| p.warming.then_some(())) {
            let (x, w) = self.span_x(run);
            let _ = writeln!(
                s,
                r#"<rect class="warmup" x="{x:.1}" y="{:.1}" width="{w:.1}" height="{height:.1}" fill="{}" fill-opacity="0.6"><title>warm-up: the model is still learning and cannot alert</title></rect>"#,
                self.top,
                colour::WARMUP
            );
        }
        // A run: consecutive firing points of one kind (stuck or not).
        for run in runs(points, |p| p.alert.map(|_| p.stuck)) {
            let severity = run.iter().filter_map(|p| p.alert).max();
            let Some(severity) = severity else { continue };
            let stuck = run[0].stuck;
            let (fill, opacity, bar) = match (stuck, severity) {
                (true, _) => ("url(#stuck-hatch)", "1", colour::STUCK),
                (false, Severity::Warning) => (colour::WARNING, "0.22", colour::WARNING),
                (false, Severity::Critical) => (colour::CRITICAL, "0.18", colour::CRITICAL),
            };
            let (x, w) = self.span_x(run);
            let (from, to) = (run[0].ts_ms, run[run.len() - 1].ts_ms);
            let (class, what) = if stuck {
                (
                    format!("alert-span stuck {}", severity.as_str()),
                    format!("stuck ({} alert): the value repeats", severity.as_str()),
                )
            } else {
                (
                    format!("alert-span {}", severity.as_str()),
                    format!("{} alert", severity.as_str()),
                )
            };
            let _ = write!(
                s,
                r#"<g class="{class}" data-severity="{sev}" data-reason="{reason}" data-from="{from}" data-to="{to}"><title>{what}, {} to {}</title><rect x="{x:.1}" y="{:.1}" width="{w:.1}" height="{height:.1}" fill="{fill}" fill-opacity="{opacity}"/><rect x="{x:.1}" y="{:.1}" width="{w:.1}" height="5" fill="{bar}"/>"#,
                crate::alert::lifecycle::rfc3339_ms(from),
                crate::alert::lifecycle::rfc3339_ms(to),
                self.top,
                self.top,
                sev = severity.as_str(),
                reason = if stuck { "stuck" } else { "" },
            );
            if w >= 48.0 {
                let _ = write!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" font-size="10" font-weight="600" fill="{bar}">{}</text>"#,
                    x + 3.0,
                    self.top + 16.0,
                    if stuck { "stuck" } else { severity.as_str() }
                );
            }
            s.push_str("</g>\n");
        }
    }

    /// The x extent of a run of points, at least 3 units wide so a single
    /// point shows.
    fn span_x(&self, run: &[Point]) -> (f64, f64) {
        let x0 = self.x(run[0].ts_ms);
        let x1 = self.x(run[run.len() - 1].ts_ms);
        if x1 - x0 >= 3.0 {
            (x0, x1 - x0)
        } else {
            ((x0 + x1) / 2.0 - 1.5, 3.0)
        }
    }

    /// The band, one filled path per run of warm points without a gap.
    fn band(&self, s: &mut String, points: &[Point]) {
        let mut d = String::new();
        for run in runs(points, band_of) {
            for seg in split_gaps(run, self.gap_ms) {
                // Along the upper edge, back along the lower one.
                let edges = seg.iter().map(|p| (p, true));
                let back = seg.iter().rev().map(|p| (p, false));
                for (i, (p, upper)) in edges.chain(back).enumerate() {
                    let Some(m) = band_of(p) else { continue };
                    let cmd = if i == 0 { 'M' } else { 'L' };
                    let v = if upper { m.upper } else { m.lower };
                    let _ = write!(d, "{cmd}{:.1},{:.1}", self.x(p.ts_ms), self.y(v));
                }
                d.push('Z');
            }
        }
        if !d.is_empty() {
            let _ = writeln!(
                s,
                r#"<path class="band" d="{d}" fill="{}" fill-opacity="0.35" stroke="none"/>"#,
                colour::BAND
            );
        }
    }

    /// One path through the points where `get` gives a finite number,
    /// broken at missing values and gaps in time.
    #[allow(clippy::too_many_arguments)]
    fn line(
        &self,
        s: &mut String,
        points: &[Point],
        class: &str,
        stroke: &str,
        width: &str,
        dash: Option<&str>,
        get: impl Fn(&Point) -> Option<f64>,
    ) {
        let mut d = String::new();
        let finite = |p: &Point| get(p).filter(|v| v.is_finite());
        for run in runs(points, finite) {
            for seg in split_gaps(run, self.gap_ms) {
                for (i, p) in seg.iter().enumerate() {
                    let cmd = if i == 0 { 'M' } else { 'L' };
                    let v = finite(p).unwrap_or(self.lo);
                    let _ = write!(d, "{cmd}{:.1},{:.1}", self.x(p.ts_ms), self.y(v));
                }
                if seg.len() == 1 {
                    // A lone point: a short stub so it is visible.
                    d.push_str("h1.5");
                }
            }
        }
        if d.is_empty() {
            return;
        }
        let dash = dash.map_or(String::new(), |d| format!(r#" stroke-dasharray="{d}""#));
        let _ = writeln!(
            s,
            r#"<path class="{class}" d="{d}" fill="none" stroke="{stroke}" stroke-width="{width}" stroke-linejoin="round"{dash}/>"#
        );
    }
}

/// The band a point shows: none during warm-up, when nothing can alert
/// (the warm-up shading says so) and the band is as wide as it is
/// meaningless.
fn band_of(p: &Point) -> Option<Expected> {
    p.model.filter(|_| !p.warming)
}

/// Maximal runs of consecutive points for which `get` is `Some`.
fn runs<T>(points: &[Point], get: impl Fn(&Point) -> Option<T>) -> Vec<&[Point]> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, p) in points.iter().enumerate() {
        match (get(p).is_some(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push(&points[s..i]);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(&points[s..]);
    }
    out
}

/// Splits a run where consecutive times are more than `gap_ms` apart.
fn split_gaps(run: &[Point], gap_ms: i64) -> impl Iterator<Item = &[Point]> {
    run.chunk_by(move |a, b| b.ts_ms - a.ts_ms <= gap_ms)
}

/// Five times the median step between points (at least one second): a
/// missed scrape or two stays joined, an outage shows as a gap.
fn gap_threshold(points: &[Point]) -> i64 {
    let mut steps: Vec<i64> = points
        .windows(2)
        .map(|w| w[1].ts_ms - w[0].ts_ms)
        .filter(|&d| d > 0)
        .collect();
    if steps.is_empty() {
        return i64::MAX;
    }
    let mid = steps.len() / 2;
    let (_, median, _) = steps.select_nth_unstable(mid);
    median.saturating_mul(5).max(1000)
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|&s| s >= raw * 0.999)
        .unwrap_or(10.0 * mag)
}

/// A time-axis step for `span_ms` over `width` units: about one tick per
/// 110 units, on round UTC boundaries.
fn time_step(span_ms: i64, width: f64) -> i64 {
    const S: i64 = 1000;
    const M: i64 = 60 * S;
    const H: i64 = 60 * M;
    const D: i64 = 24 * H;
    const STEPS: &[i64] = &[
        S,
        2 * S,
        5 * S,
        10 * S,
        15 * S,
        30 * S,
        M,
        2 * M,
        5 * M,
        10 * M,
        15 * M,
        30 * M,
        H,
        2 * H,
        3 * H,
        6 * H,
        12 * H,
        D,
        2 * D,
        7 * D,
        14 * D,
        28 * D,
        91 * D,
        182 * D,
        364 * D,
    ];
    let max_ticks = (width / 110.0).max(2.0);
    let want = span_ms as f64 / max_ticks;
    STEPS
        .iter()
        .copied()
        .find(|&s| s as f64 >= want)
        .unwrap_or_else(|| (want / (364 * D) as f64).ceil() as i64 * 364 * D)
}

/// The tick label (time of day, or the date for steps of a day and more)
/// and the date line under it (empty when the label is the date).
fn format_time(t_ms: i64, step: i64) -> (String, String) {
    let Some(t) = DateTime::from_timestamp_millis(t_ms) else {
        return (String::new(), String::new());
    };
    if step >= 24 * 3_600_000 {
        (t.format("%Y-%m-%d").to_string(), String::new())
    } else if step < 60_000 {
        (
            t.format("%H:%M:%S").to_string(),
            t.format("%Y-%m-%d").to_string(),
        )
    } else {
        (
            t.format("%H:%M").to_string(),
            t.format("%Y-%m-%d").to_string(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(i: i64, value: f64, alert: Option<Severity>) -> Point {
        Point {
            ts_ms: 1_767_225_600_000 + i * 60_000,
            value: Some(value),
            model: (i > 0).then_some(Expected {
                expected: 10.0,
                lower: 9.0,
                upper: 11.0,
            }),
            warming: (1..4).contains(&i),
            alert,
            stuck: false,
        }
    }

    fn series() -> Vec<Point> {
        let mut p: Vec<Point> = (0..60).map(|i| point(i, 10.0, None)).collect();
        p[30] = point(30, 20.0, Some(Severity::Warning));
        p[31] = point(31, 25.0, Some(Severity::Critical));
        p[32] = point(32, 10.0, Some(Severity::Critical));
        p[50] = point(50, 0.0, Some(Severity::Warning));
        p
    }

    fn count(s: &str, needle: &str) -> usize {
        s.matches(needle).count()
    }

    #[test]
    fn draws_axes_legend_band_lines_warmup_and_alert_spans() {
        let s = Chart::new("latency{host=\"a\"}")
            .unit(Some("seconds"))
            .render(&series());
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert_eq!(count(&s, r#"<path class="band""#), 1);
        assert_eq!(count(&s, r#"<path class="value""#), 1);
        assert_eq!(count(&s, r#"<path class="expected""#), 1);
        // Two alert spans, each with its (highest) severity.
        assert_eq!(count(&s, r#"class="alert-span critical""#), 1, "{s}");
        assert_eq!(count(&s, r#"class="alert-span warning""#), 1);
        assert_eq!(count(&s, r#"class="warmup""#), 1);
        for word in [
            "value",
            "expected",
            "normal band",
            "warm-up",
            "warning alert",
            "critical alert",
            "stuck alert (repeated value)",
        ] {
            assert!(s.contains(&format!(">{word}</text>")), "legend {word}");
        }
        assert!(s.contains("value (seconds)"));
        assert!(
            s.contains(">2026-01-01</text>"),
            "the date on the time axis"
        );
        assert!(s.contains(">00:10</text>"), "times of day on the axis: {s}");
        assert!(s.contains("latency{host=&quot;a&quot;}"));
        // The forecast is drawn after the band and the value line.
        let pos = |n: &str| s.find(n).unwrap();
        assert!(pos(r#"class="expected""#) > pos(r#"class="value""#));
        assert!(pos(r#"class="value""#) > pos(r#"class="band""#));
        assert!(pos(r#"class="band""#) > pos("alert-span"));
    }

    #[test]
    fn titles_are_escaped() {
        let s = Chart::new("<script>alert(1)</script>").render(&series());
        assert!(!s.contains("<script>"));
        assert!(s.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert_eq!(escape("a&b'\""), "a&amp;b&#39;&quot;");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn hidden_and_deceptive_characters_are_shown_escaped() {
        // A NUL, a newline, a right-to-left override and a zero-width space.
        assert_eq!(
            escape("a\u{0}b\nc\u{202e}d\u{200b}é"),
            "a\\u{0}b\\nc\\u{202e}d\\u{200b}é"
        );
        // A chart titled with them is still well-formed XML: no raw control
        // character, no bidi override left.
        let s = Chart::new("m{x=\"\u{0}\u{1b}[31m\u{202e}gnp.exe\"}").render(&series());
        assert!(!s.chars().any(|c| c.is_control() && c != '\n'), "{s}");
        assert!(!s.contains('\u{202e}'));
        assert!(s.contains("\\u{0}\\u{1b}[31m\\u{202e}gnp.exe"));
    }

    #[test]
    fn unbounded_bands_and_gaps_do_not_distort_the_plot() {
        let mut p = series();
        for q in &mut p[10..20] {
            q.model = Some(Expected {
                expected: 10.0,
                lower: f64::MIN,
                upper: f64::MAX,
            });
        }
        // An outage: the last ten points an hour later.
        for q in &mut p[50..] {
            q.ts_ms += 3_600_000;
        }
        let chart = Chart::new("x");
        let plot = Plot::new(&chart, &p, 0.0);
        assert!(
            plot.lo >= -25.0 && plot.hi <= 50.0,
            "{} {}",
            plot.lo,
            plot.hi
        );
        let s = chart.render(&p);
        let value_path = s
            .lines()
            .find(|l| l.starts_with(r#"<path class="value""#))
            .unwrap();
        assert_eq!(count(value_path, "M"), 2, "the gap breaks the line");
    }

    #[test]
    fn empty_and_single_point_charts_render() {
        let s = Chart::new("none").render(&[]);
        assert!(s.contains("no data yet"));
        let s = Chart::new("one").render(&[point(0, 1.0, None)]);
        assert!(s.contains(r#"<path class="value""#));
    }

    #[test]
    fn ticks_are_round_and_labelled() {
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(13.0), 20.0);
        assert_eq!(nice_step(0.0021), 0.0025);
        assert_eq!(time_step(3_600_000, 900.0), 10 * 60_000);
        assert_eq!(time_step(30 * 86_400_000, 900.0), 7 * 86_400_000);
        let (t, d) = format_time(1_767_225_600_000 + 90 * 60_000, 30 * 60_000);
        assert_eq!((t.as_str(), d.as_str()), ("01:30", "2026-01-01"));
    }

    #[test]
    fn stuck_spans_are_hatched_not_painted_as_value_anomalies() {
        let mut p = series();
        for q in &mut p[40..45] {
            q.alert = Some(Severity::Critical);
            q.stuck = true;
        }
        let s = Chart::new("x").render(&p);
        assert_eq!(count(&s, r#"class="alert-span stuck critical""#), 1, "{s}");
        assert_eq!(count(&s, r#"data-reason="stuck""#), 1);
        assert!(s.contains(r#"fill="url(#stuck-hatch)""#));
        assert!(s.contains("stuck (critical alert): the value repeats"));
        // The other spans keep their colours.
        assert_eq!(count(&s, r#"class="alert-span critical""#), 1);
    }

    #[test]
    fn long_titles_wrap_between_label_pairs() {
        let title = "node_network_receive_bytes_total{device=\"eth0\",instance=\"localhost:9090\",job=\"node\"}";
        let lines = wrap_title(title, 40, 4);
        assert!(lines.len() >= 2, "{lines:?}");
        assert!(lines.iter().all(|l| l.chars().count() <= 40), "{lines:?}");
        assert_eq!(lines.concat(), title, "nothing lost, nothing added");
        // Breaks fall after a comma, never inside a value.
        for l in &lines[..lines.len() - 1] {
            assert!(l.ends_with(',') || l.ends_with('{'), "{lines:?}");
        }
        assert_eq!(wrap_title("short", 40, 4), ["short"]);
        let long = "x".repeat(200);
        let cut = wrap_title(&long, 40, 2);
        assert_eq!(cut.len(), 2);
        assert!(cut[1].ends_with('…'));
        // Drawn as lines, and the plot moves down to make room.
        let s = Chart::new(title).size(500.0, 300.0).render(&series());
        assert!(count(&s, "<tspan") >= 2, "{s}");
        assert!(s.contains("localhost:9090"));
        let top = |s: &str| -> f64 {
            let i = s.find("data-top=\"").unwrap() + 10;
            s[i..].split('"').next().unwrap().parse().unwrap()
        };
        assert!(top(&s) > top(&Chart::new("x").render(&series())));
    }

    #[test]
    fn ticks_carry_the_unit_and_its_prefix() {
        let mut p = series();
        for (i, q) in p.iter_mut().enumerate() {
            q.value = Some(1.5e10 + i as f64 * 1e8);
            q.model = None;
        }
        let s = Chart::new("mem")
            .unit(Some("bytes"))
            .quantity(Unit::of_metric("mem_bytes", false))
            .render(&p);
        assert!(s.contains(" GB</text>"), "{s}");
    }

    #[test]
    fn units_come_from_the_metric_name() {
        assert_eq!(unit_of_metric("http_latency_p99_seconds"), Some("seconds"));
        assert_eq!(unit_of_metric("memory_used_bytes"), Some("bytes"));
        assert_eq!(unit_of_metric("cpu_usage_percent"), Some("percent"));
        assert_eq!(
            unit_of_metric("http_requests_per_second"),
            Some("per second")
        );
        assert_eq!(unit_of_metric("node_cpu_seconds_total"), Some("seconds"));
        assert_eq!(unit_of_metric("up"), None);
    }
}
