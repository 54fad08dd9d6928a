//! One observation as the page shows it, with its flags.

use crate::alert::Severity;
use crate::detector::Decision;

/// One observation as the page shows it. 48 bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Event time, epoch milliseconds.
    pub ts_ms: i64,
    /// The observed value.
    pub value: f64,
    /// The model's expectation.
    pub expected: f64,
    /// Lower edge of the band (`f64::MIN` when unbounded).
    pub lower: f64,
    /// Upper edge of the band (`f64::MAX` when unbounded).
    pub upper: f64,
    /// The anomaly score (f32 is plenty for a chart and a table).
    pub score: f32,
    /// [`WARMING`], [`WARNING`], [`CRITICAL`], [`RATE`], [`STUCK`].
    flags: u8,
}

const WARMING: u8 = 1;
const WARNING: u8 = 2;
const CRITICAL: u8 = 4;
/// The value is a counter's per-second rate (see [`crate::counter`]).
const RATE: u8 = 8;
/// The alert firing after it was raised by the `stuck` channel: the value
/// repeats, it is not necessarily outside the band.
const STUCK: u8 = 16;

impl Sample {
    /// A sample of one scored observation and the alert state after it.
    pub fn new(ts_ms: i64, value: f64, d: &Decision, alert: Option<Severity>) -> Self {
        let alert = match alert {
            None => 0,
            Some(Severity::Warning) => WARNING,
            Some(Severity::Critical) => CRITICAL,
        };
        Self {
            ts_ms,
            value,
            expected: d.expected,
            lower: d.lower,
            upper: d.upper,
            score: d.score as f32,
            flags: alert | if d.warm { 0 } else { WARMING },
        }
    }

    /// Scored while the series was warming up (it could not alert).
    pub fn warming(&self) -> bool {
        self.flags & WARMING != 0
    }

    /// The value (and expected value, band) is a counter's per-second
    /// rate, not the raw counter.
    pub fn rate(&self) -> bool {
        self.flags & RATE != 0
    }

    /// The same sample, marked as a rate.
    pub(super) fn as_rate(mut self) -> Self {
        self.flags |= RATE;
        self
    }

    /// The same sample, marked as under an alert the `stuck` channel
    /// raised.
    pub(super) fn as_stuck(mut self) -> Self {
        self.flags |= STUCK;
        self
    }

    /// The alert firing after this observation was raised by the `stuck`
    /// channel (the value repeats; it may well lie inside the band).
    pub fn stuck(&self) -> bool {
        self.flags & STUCK != 0
    }

    /// The alert firing after this observation, by severity.
    pub fn alert(&self) -> Option<Severity> {
        if self.flags & CRITICAL != 0 {
            Some(Severity::Critical)
        } else if self.flags & WARNING != 0 {
            Some(Severity::Warning)
        } else {
            None
        }
    }
}
