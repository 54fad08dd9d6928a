//! Hand-written SVG plots of a backtest: the series, the expected value, the
//! band of values below the alert threshold, and the alerts.
//!
//! This module owns only drawing (no plotting dependency: a plot is a few
//! polylines). The x axis is the row number, so gaps and repeated timestamps
//! do not distort it; the y axis spans the values (the band is clipped to a
//! margin around them, so one wide band cannot flatten the series).

use std::fmt::Write;

use super::Row;

const WIDTH: f64 = 1200.0;
const HEIGHT: f64 = 400.0;
const MARGIN: f64 = 30.0;

/// Renders `rows` as an SVG document titled `title`.
pub fn svg(title: &str, rows: &[Row]) -> String {
    let values: Vec<f64> = rows.iter().filter_map(|r| r.value).collect();
    let (mut lo, mut hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.1).max(hi.abs() * 1e-9).max(1e-12);
    let (lo, hi) = (lo - pad, hi + pad);
    let n = rows.len().max(2) as f64 - 1.0;
    let x = |i: usize| MARGIN + (WIDTH - 2.0 * MARGIN) * i as f64 / n;
    let y = |v: f64| {
        let v = v.clamp(lo, hi);
        HEIGHT - MARGIN - (HEIGHT - 2.0 * MARGIN) * (v - lo) / (hi - lo)
    };
    let mut s = String::new();
    // Writing to a String cannot fail; the results are ignored on purpose.
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}">
<rect width="100%" height="100%" fill="white"/>
<text x="{MARGIN}" y="20" font-family="sans-serif" font-size="14">{}</text>
"##,
        escape(title)
    );
    // The band, one polygon per run of scored rows.
    let scored: Vec<(usize, f64, f64, f64)> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.decision.map(|d| (i, d.lower, d.upper, d.expected)))
        .collect();
    for run in scored.chunk_by(|a, b| b.0 == a.0 + 1) {
        let mut pts = String::new();
        for &(i, _, upper, _) in run {
            let _ = write!(pts, "{:.1},{:.1} ", x(i), y(upper));
        }
        for &(i, lower, _, _) in run.iter().rev() {
            let _ = write!(pts, "{:.1},{:.1} ", x(i), y(lower));
        }
        let _ = writeln!(
            s,
            r##"<polygon class="band" points="{pts}" fill="#9ecae1" fill-opacity="0.5" stroke="none"/>"##
        );
        let line: String = run
            .iter()
            .map(|&(i, _, _, e)| format!("{:.1},{:.1} ", x(i), y(e)))
            .collect();
        let _ = writeln!(
            s,
            r##"<polyline class="expected" points="{line}" fill="none" stroke="#3182bd" stroke-width="1"/>"##
        );
    }
    let line: String = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.value.map(|v| format!("{:.1},{:.1} ", x(i), y(v))))
        .collect();
    let _ = writeln!(
        s,
        r##"<polyline class="value" points="{line}" fill="none" stroke="black" stroke-width="1"/>"##
    );
    for (i, r) in rows.iter().enumerate() {
        if let (true, Some(v)) = (r.alert, r.value) {
            let _ = writeln!(
                s,
                r##"<circle class="alert" cx="{:.1}" cy="{:.1}" r="4" fill="red"/>"##,
                x(i),
                y(v)
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::Decision;

    #[test]
    fn draws_band_series_and_alerts() {
        let d = Decision {
            score: 0.9,
            expected: 1.0,
            lower: 0.5,
            upper: 1.5,
            warm: true,
        };
        let rows = [
            Row {
                ts_ms: Some(0),
                value: Some(1.0),
                decision: Some(d),
                alert: false,
            },
            Row {
                ts_ms: Some(1),
                value: Some(5.0),
                decision: Some(d),
                alert: true,
            },
        ];
        let s = svg("a<b", &rows);
        assert!(s.starts_with("<svg"));
        assert!(s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<circle").count(), 1);
        assert_eq!(s.matches("class=\"band\"").count(), 1);
        assert!(s.contains("a&lt;b"));
    }
}
