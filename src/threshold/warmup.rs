//! Warm-up: when a series is trusted to be scored.
//!
//! A new series is silent (score 0) until it is trusted: at least
//! `warmup_events` events and `warmup_secs` of event time, and the forecast
//! residual's deviation known to within [`WARM_RELATIVE_ERROR`] (its
//! standard error, from the spread of the residuals seen: a heavy-tailed
//! series takes longer). The level and drift channels also wait for a day
//! of event time: their season needs one. Warmth is part of the state, so a
//! restored series is warm at once; a new, evicted or relearned one warms
//! up again, while every channel learns.

use super::ewma::Ewma;
use super::header;

/// The forecast residual's deviation must be known to within this relative
/// standard error before a series is scored.
pub const WARM_RELATIVE_ERROR: f64 = 0.1;

/// Event time the level and drift channels need to have seen (one day: one
/// season).
const SLOW_WARMUP_MS: f64 = 86_400_000.0;

/// The warm-up rule (shared by every series).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Warmup {
    /// Fewest events.
    events: f64,
    /// Least event time (ms).
    ms: f64,
}

impl Warmup {
    /// The rule of at least `events` events and `ms` of event time.
    pub fn new(events: f64, ms: f64) -> Self {
        Self { events, ms }
    }

    /// Whether the series with header `h` and forecast residual moments `m`
    /// (an [`Ewma`] state) is trusted at the event at `ts_ms`.
    #[inline]
    pub fn is_warm(&self, h: &[f64], m: &[f64], ts_ms: i64) -> bool {
        h[header::WARM] > 0.0 || (h[header::EVENTS] >= 1.0 && self.becomes_warm(h, m, ts_ms))
    }

    /// Whether a cold series is trusted from the event at `ts_ms` on.
    #[inline]
    fn becomes_warm(&self, h: &[f64], m: &[f64], ts_ms: i64) -> bool {
        h[header::EVENTS] >= self.events
            && (ts_ms as f64 - h[header::FIRST_MS]) >= self.ms
            && Ewma::relative_error(m) <= WARM_RELATIVE_ERROR
    }

    /// Whether the slow channels (level, drift) may speak at `ts_ms`.
    #[inline]
    pub fn slow(h: &[f64], ts_ms: i64) -> bool {
        h[header::WARM] > 0.0 && (ts_ms as f64 - h[header::FIRST_MS]) >= SLOW_WARMUP_MS
    }
}
