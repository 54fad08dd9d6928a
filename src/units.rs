//! Units: what a metric's name says it measures, and numbers printed in it.
//!
//! This module owns the one number format people read: the live page, its
//! charts' axes, the log sink's line, the demo and Alertmanager's summary
//! all print a quantity with [`Unit::format`]: three significant digits and
//! the unit's SI prefix (`14.8 GB`, `180 ms`, `1.25 k/s`, `35.2 %`). The
//! unit comes from the metric name's suffix, as Prometheus names announce
//! it (`_bytes`, `_seconds`, `_per_second`, ...; [`Unit::of_metric`]); a
//! counter learned as its per-second rate is per second (`B/s`, `/s`).
//! Machine-readable outputs (the alert JSON, annotations other than the
//! summary, the API's numbers) keep plain numbers. `src/ui/assets/app.js`
//! formats the page's live updates the same way, from the API's
//! `unit_symbol` and `unit_prefixes`.
//!
//! It knows nothing of the crate: a leaf.

use std::borrow::Cow;

/// Which SI prefixes a unit takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefixes {
    /// Both ways: `ms`, `µs` below the unit, `k`, `M` above (seconds,
    /// watts, ...).
    Both,
    /// Only from a thousand up (`kB`, `GB`; `k/s`): fractions of a byte or
    /// of an event print as decimals.
    Up,
    /// None: percentages, ratios, degrees, milliseconds.
    None,
}

impl Prefixes {
    /// The name in the page's API: `both`, `up` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Both => "both",
            Self::Up => "up",
            Self::None => "none",
        }
    }
}

/// A unit as printed: its symbol (`B`, `s`, `B/s`, or empty) and the
/// prefixes it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// The symbol after the prefix; empty for a plain number.
    pub symbol: Cow<'static, str>,
    /// Which prefixes apply.
    pub prefixes: Prefixes,
}

/// Metric name suffixes (after a `_total`), their long name (the chart's
/// axis title), symbol and prefixes.
const SUFFIXES: &[(&str, &str, &str, Prefixes)] = &[
    ("_per_second", "per second", "/s", Prefixes::Up),
    ("_seconds", "seconds", "s", Prefixes::Both),
    ("_milliseconds", "milliseconds", "ms", Prefixes::None),
    ("_bytes", "bytes", "B", Prefixes::Up),
    ("_percent", "percent", "%", Prefixes::None),
    ("_ratio", "ratio", "", Prefixes::None),
    ("_celsius", "°C", "°C", Prefixes::None),
    ("_meters", "meters", "m", Prefixes::Both),
    ("_volts", "volts", "V", Prefixes::Both),
    ("_amperes", "amperes", "A", Prefixes::Both),
    ("_joules", "joules", "J", Prefixes::Both),
    ("_watts", "watts", "W", Prefixes::Both),
    ("_grams", "grams", "g", Prefixes::Both),
    ("_hertz", "hertz", "Hz", Prefixes::Both),
];

fn suffix_of(name: &str) -> Option<&'static (&'static str, &'static str, &'static str, Prefixes)> {
    let name = name.strip_suffix("_total").unwrap_or(name);
    SUFFIXES.iter().find(|(suffix, ..)| name.ends_with(suffix))
}

/// The unit a Prometheus-style name announces by its suffix, in words
/// (`http_latency_p99_seconds` → `seconds`), or `None`.
pub fn unit_of_metric(name: &str) -> Option<&'static str> {
    suffix_of(name).map(|(_, long, ..)| *long)
}

/// SI prefixes from 10^-12 to 10^15, by thousands.
const PREFIXES: [(i32, &str); 10] = [
    (-12, "p"),
    (-9, "n"),
    (-6, "µ"),
    (-3, "m"),
    (0, ""),
    (3, "k"),
    (6, "M"),
    (9, "G"),
    (12, "T"),
    (15, "P"),
];

/// Significant digits of [`Unit::format`].
const DIGITS: i32 = 3;

impl Unit {
    /// A plain number (no symbol), prefixed from a thousand up.
    pub fn none() -> Self {
        Self {
            symbol: Cow::Borrowed(""),
            prefixes: Prefixes::Up,
        }
    }

    /// The unit of metric `name` (its suffix, see [`unit_of_metric`]); per
    /// second when `rate` (a counter learned as its rate): `bytes` become
    /// `B/s`, a count `/s`, CPU `seconds` `s/s`.
    pub fn of_metric(name: &str, rate: bool) -> Self {
        let (symbol, prefixes) = match suffix_of(name) {
            Some((_, _, symbol, prefixes)) => (*symbol, *prefixes),
            None => ("", Prefixes::Up),
        };
        if !rate || symbol.ends_with("/s") {
            return Self {
                symbol: Cow::Borrowed(symbol),
                prefixes,
            };
        }
        // A per-second rate of a plain count or a ratio takes prefixes
        // upward only ("m/s" would read as metres per second).
        let prefixes = if symbol.is_empty() || prefixes == Prefixes::None {
            Prefixes::Up
        } else {
            prefixes
        };
        Self {
            symbol: Cow::Owned(format!("{symbol}/s")),
            prefixes,
        }
    }

    /// The prefix exponent (a multiple of 3) for magnitude `a` (> 0).
    fn exponent(&self, a: f64) -> i32 {
        let e = (a.log10().floor() as i32).div_euclid(3) * 3;
        let (lo, hi) = match self.prefixes {
            Prefixes::Both => (-12, 15),
            Prefixes::Up => (0, 15),
            Prefixes::None => (0, 0),
        };
        e.clamp(lo, hi)
    }

    fn prefix(e: i32) -> &'static str {
        PREFIXES
            .iter()
            .find(|(x, _)| *x == e)
            .map_or("", |(_, p)| p)
    }

    /// `v` with three significant digits and the unit's prefix: `14.8 GB`,
    /// `180 ms`, `0.5`, `1.25 k/s`. `∞`/`−∞` for an unbounded band edge
    /// (non-finite or beyond 1e300); numbers no prefix covers are
    /// scientific (`1.23e-7`).
    pub fn format(&self, v: f64) -> String {
        if !v.is_finite() || v.abs() >= 1e300 {
            return if v < 0.0 { "−∞" } else { "∞" }.to_owned();
        }
        let a = v.abs();
        if a == 0.0 {
            return self.join("0", "");
        }
        let mut e = self.exponent(a);
        let mut m = v / 10f64.powi(e);
        // Rounding to three digits may carry into the next prefix
        // (999.7 k → 1000 k → 1 M).
        if round_sig(m.abs()) >= 1000.0 && self.exponent(a * 1000.0) > e {
            e += 3;
            m = v / 10f64.powi(e);
        }
        let am = m.abs();
        if !(1e-3..1e6).contains(&am) {
            // Beyond the prefixes (or none apply): scientific.
            let s = format!("{:.*e}", (DIGITS - 1) as usize, v);
            return self.join(&trim_exp(&s), "");
        }
        let decimals = (DIGITS - 1 - am.log10().floor() as i32).max(0) as usize;
        let s = format!("{m:.decimals$}");
        let s = if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s
        };
        self.join(&s, Self::prefix(e))
    }

    /// A value-axis tick: `v` on an axis whose ticks are `step` apart and
    /// whose largest magnitude is `top`, all ticks with one prefix and as
    /// many decimals as the step needs (`17.5 GB`, `150 ms`, `40 %`).
    pub fn format_tick(&self, v: f64, step: f64, top: f64) -> String {
        let top = top.abs().max(step.abs());
        let e = if top > 0.0 && top.is_finite() {
            self.exponent(top)
        } else {
            0
        };
        let scale = 10f64.powi(e);
        let s = step / scale;
        let mut decimals = (-s.log10().floor()).clamp(0.0, 9.0) as usize;
        if (s * 10f64.powi(decimals as i32)).fract().abs() > 1e-6 {
            decimals += 1;
        }
        let x = v / scale;
        // Avoid "-0".
        let x = if x.abs() < s / 1e6 { 0.0 } else { x };
        self.join(&format!("{x:.decimals$}"), Self::prefix(e))
    }

    fn join(&self, number: &str, prefix: &str) -> String {
        if prefix.is_empty() && self.symbol.is_empty() {
            number.to_owned()
        } else {
            format!("{number} {prefix}{}", self.symbol)
        }
    }
}

/// `x` (> 0) rounded to [`DIGITS`] significant digits.
fn round_sig(x: f64) -> f64 {
    let mag = 10f64.powi(x.log10().floor() as i32 - (DIGITS - 1));
    (x / mag).round() * mag
}

/// `1.23e4` as Rust prints it, without a `+` or leading zeros in the
/// exponent (it prints neither; kept for clarity).
fn trim_exp(s: &str) -> String {
    match s.split_once('e') {
        Some((m, e)) => {
            let m = if m.contains('.') {
                m.trim_end_matches('0').trim_end_matches('.')
            } else {
                m
            };
            format!("{m}e{e}")
        }
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, rate: bool, v: f64) -> String {
        Unit::of_metric(name, rate).format(v)
    }

    #[test]
    fn quantities_take_their_units_si_prefix() {
        assert_eq!(f("node_memory_used_bytes", false, 1.483e10), "14.8 GB");
        assert_eq!(f("node_memory_used_bytes", false, 1.48e9), "1.48 GB");
        assert_eq!(f("node_memory_used_bytes", false, 512.0), "512 B");
        assert_eq!(f("http_latency_p99_seconds", false, 0.18), "180 ms");
        assert_eq!(f("http_latency_p99_seconds", false, 2.5), "2.5 s");
        assert_eq!(f("http_latency_p99_seconds", false, 4.2e-5), "42 µs");
        assert_eq!(f("cpu_usage_percent", false, 35.214), "35.2 %");
        assert_eq!(f("cpu_usage_percent", false, 0.0), "0 %");
        assert_eq!(f("http_requests_per_second", false, 850.4), "850 /s");
        assert_eq!(f("http_requests_per_second", false, 1250.0), "1.25 k/s");
        assert_eq!(f("up", false, 1.0), "1");
        assert_eq!(f("queue_depth", false, 0.5), "0.5");
        assert_eq!(f("queue_depth", false, 12_345.0), "12.3 k");
        assert_eq!(f("queue_depth", false, -12_345.0), "-12.3 k");
        assert_eq!(f("request_latency_milliseconds", false, 1500.0), "1500 ms");
        assert_eq!(f("x", false, 1.234e-7), "1.23e-7");
        assert_eq!(f("x", false, f64::MAX), "∞");
        assert_eq!(f("x", false, f64::MIN), "−∞");
        assert_eq!(f("x", false, f64::NAN), "∞");
    }

    #[test]
    fn rates_are_per_second() {
        assert_eq!(
            f("node_network_receive_bytes_total", true, 1.2e6),
            "1.2 MB/s"
        );
        assert_eq!(f("node_cpu_seconds_total", true, 0.25), "250 ms/s");
        assert_eq!(f("http_requests_total", true, 0.5), "0.5 /s");
        assert_eq!(f("http_requests_total", true, 4200.0), "4.2 k/s");
        // Already per second: not twice.
        assert_eq!(f("http_requests_per_second", true, 3.0), "3 /s");
    }

    #[test]
    fn rounding_carries_into_the_next_prefix() {
        assert_eq!(f("m_bytes", false, 999_700.0), "1 MB");
        assert_eq!(f("m_bytes", false, 999.96), "1 kB");
        assert_eq!(f("m_seconds", false, 0.99996), "1 s");
        assert_eq!(f("m_percent", false, 99.96), "100 %");
    }

    #[test]
    fn ticks_share_one_prefix_and_the_steps_decimals() {
        let b = Unit::of_metric("m_bytes", false);
        assert_eq!(b.format_tick(1.75e10, 5e8, 2e10), "17.5 GB");
        assert_eq!(b.format_tick(6.0e9, 5e8, 2e10), "6.0 GB");
        let s = Unit::of_metric("m_seconds", false);
        assert_eq!(s.format_tick(0.15, 0.05, 0.3), "150 ms");
        let n = Unit::none();
        assert_eq!(n.format_tick(40.0, 10.0, 100.0), "40");
        assert_eq!(n.format_tick(12_000.0, 2_000.0, 20_000.0), "12 k");
        assert_eq!(n.format_tick(-0.0, 0.1, 1.0), "0.0");
        assert_eq!(n.format_tick(0.15, 0.05, 1.0), "0.15");
    }

    #[test]
    fn names_give_units() {
        assert_eq!(unit_of_metric("http_latency_p99_seconds"), Some("seconds"));
        assert_eq!(unit_of_metric("node_cpu_seconds_total"), Some("seconds"));
        assert_eq!(
            unit_of_metric("http_requests_per_second"),
            Some("per second")
        );
        assert_eq!(unit_of_metric("up"), None);
        assert_eq!(Unit::of_metric("m_ratio", false).symbol, "");
        assert_eq!(Unit::of_metric("m_ratio", false).prefixes, Prefixes::None);
        assert_eq!(Unit::of_metric("m_ratio", true).symbol, "/s");
    }
}
