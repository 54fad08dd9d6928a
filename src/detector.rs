//! The per-event code path shared by the daemon and `anomalyd backtest`.
//!
//! This module owns [`Decision`], what the detector says about one
//! observation of one series.

use serde::{Deserialize, Serialize};

/// What the detector concluded about one observation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Anomaly score in [0, 1), monotone in how unlikely the residual is; 0
    /// while the series is warming up.
    pub score: f64,
    /// The value the model expected (its prediction before learning this
    /// observation).
    pub expected: f64,
    /// Lower edge of the band of values that would score below the alert
    /// threshold.
    pub lower: f64,
    /// Upper edge of that band.
    pub upper: f64,
    /// False while the series is still learning: the score is 0 and the
    /// series cannot alert.
    pub warm: bool,
}
