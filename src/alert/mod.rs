//! Alerts: the message users receive, its lifecycle, and the sinks.
//!
//! This module owns the alert message schema ([`Alert`]). The lifecycle
//! (when a series starts and stops firing), the `[alert]` section with its
//! age limit, and the sinks that deliver alerts live in submodules.

pub mod config;
pub mod lifecycle;
mod metrics;
pub mod sink;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::threshold::Reason;
pub use metrics::EmittedCounters;

/// The label an alert about a counter carries: its value, expected value
/// and band are per-second rates (see [`crate::counter`]).
pub const VALUE_LABEL: &str = "anomalyd_value";

/// [`VALUE_LABEL`]'s value on an alert about a rate.
pub const RATE: &str = "rate";

impl Alert {
    /// Whether the alert's numbers are per-second rates of a counter.
    pub fn is_rate(&self) -> bool {
        self.labels.get(VALUE_LABEL).map(String::as_str) == Some(RATE)
    }
}

/// Whether an alert is active or has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    /// The rule holds: the series is anomalous.
    Firing,
    /// The rule stopped holding; `ended_at` says when.
    Resolved,
}

impl AlertStatus {
    /// The label value used in metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }
}

/// Why an alert resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// The series is back to its normal from before the alert.
    Returned,
    /// The change lasted longer than `alert.max_episode_secs`: where the
    /// series sits now is its new normal.
    NewNormal,
}

impl Resolution {
    /// The label value used in logs and Alertmanager annotations.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Returned => "returned",
            Self::NewNormal => "new_normal",
        }
    }
}

/// How bad an anomaly is, from its score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Score at or above the alert threshold.
    Warning,
    /// Score at or above the critical threshold.
    Critical,
}

impl Severity {
    /// The label value used in metrics, logs and Alertmanager labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// One alert message, as sent to every sink (JSON shape documented in
/// docs/operations.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Stable id of the alerting series: 16 hex digits of
    /// [`crate::event::SeriesKey::fingerprint`]. Firing and resolved messages
    /// of one series share it; it is the Kafka message key.
    pub fingerprint: String,
    /// Firing or resolved.
    pub status: AlertStatus,
    /// The series in selector form, e.g. `cpu{host="a"}`.
    pub series: String,
    /// The series' metric name under `__name__`, plus its labels.
    pub labels: BTreeMap<String, String>,
    /// When the alert started firing (RFC 3339, event time).
    pub started_at: String,
    /// When it resolved (RFC 3339, event time); `null` while firing.
    pub ended_at: Option<String>,
    /// Event time of the observation this message reports (RFC 3339).
    pub ts: String,
    /// The observed value.
    pub value: f64,
    /// The model's expected value.
    pub expected: f64,
    /// Lower edge of the normal band.
    pub lower: f64,
    /// Upper edge of the normal band.
    pub upper: f64,
    /// Anomaly score in [0, 1) of the observation this message reports.
    pub score: f64,
    /// The highest score of the alert so far (the episode's peak).
    #[serde(default)]
    pub peak_score: f64,
    /// The score threshold the rule compares against.
    pub threshold: f64,
    /// Warning or critical.
    pub severity: Severity,
    /// The model kind that produced the expectation (`regression`, ...).
    pub model: String,
    /// Which channel raised the alert: `forecast` (far from the forecast),
    /// `level` (far from the series' usual level), `drift` (forecast
    /// errors that keep one sign: a drift or a broken season) or `stuck`
    /// (the value repeated for unusually long).
    pub reason: Reason,
    /// Resolved messages: `returned` (the series is back to its normal)
    /// or `new_normal` (the change lasted past `alert.max_episode_secs`
    /// and is the series' normal now); `null` while firing.
    #[serde(default)]
    pub resolution: Option<Resolution>,
}
