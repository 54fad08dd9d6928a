//! Alerts: the message users receive, its lifecycle, and the sinks.
//!
//! This module owns the messages users receive: the lifecycle's alert
//! ([`Alert`]), the per-series alert as the sinks deliver it
//! ([`SeriesAlert`]: the alert, whether its numbers are a rate, its
//! incident) and what a sink is handed ([`Notice`]: such an alert or an
//! incident notification). The lifecycle (when a series starts and stops
//! firing), incidents (which alerts belong together), the `[alert]`
//! section, the daemon's notifier and the sinks live in submodules.

pub mod config;
pub mod incident;
pub mod lifecycle;
mod metrics;
pub mod notify;
pub mod sink;

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};

use serde::{Deserialize, Serialize};

pub use crate::threshold::Reason;
pub use incident::Incident;
pub use metrics::EmittedCounters;

/// The Alertmanager label an alert about a counter carries: its value,
/// expected value and band are per-second rates (see [`crate::counter`]).
/// The other sinks say so in [`SeriesAlert::value_kind`].
pub const VALUE_LABEL: &str = "anomalyd_value";

/// [`VALUE_LABEL`]'s value on an alert about a rate.
pub const RATE: &str = "rate";

/// What an alert's numbers are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueKind {
    /// The series' own values.
    #[default]
    Value,
    /// A counter's per-second rate (`rate(<series>)` in PromQL terms).
    Rate,
}

impl ValueKind {
    /// The name in JSON and logs: `value` or `rate`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Value => "value",
            Self::Rate => "rate",
        }
    }
}

/// A per-series alert as the sinks deliver it: the lifecycle's [`Alert`]
/// (its fields at the top level of the JSON) with what the notification
/// path adds. Reads as an [`Alert`] through `Deref`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesAlert {
    /// The alert.
    #[serde(flatten)]
    pub alert: Alert,
    /// `value`, or `rate` when `value`, `expected` and the band are a
    /// counter's per-second rate.
    #[serde(default)]
    pub value_kind: ValueKind,
    /// The id of the incident the alert belongs to (see
    /// [`incident`]); `null` when it belongs to none the daemon knows.
    #[serde(default)]
    pub incident: Option<String>,
}

impl SeriesAlert {
    /// `alert` about values of `kind`, in no incident yet.
    pub fn new(alert: Alert, value_kind: ValueKind) -> Self {
        Self {
            alert,
            value_kind,
            incident: None,
        }
    }

    /// Whether the numbers are per-second rates of a counter.
    pub fn is_rate(&self) -> bool {
        self.value_kind == ValueKind::Rate
    }

    /// The unit its numbers are in (from the metric name; per second for
    /// a rate), for printing them.
    pub fn unit(&self) -> crate::units::Unit {
        let name = self.labels.get("__name__").map_or("", String::as_str);
        crate::units::Unit::of_metric(name, self.is_rate())
    }

    /// The series as people read it: `rate(<series>)` for a rate.
    pub fn display_series(&self) -> String {
        if self.is_rate() {
            format!("rate({})", self.series)
        } else {
            self.series.clone()
        }
    }
}

impl From<Alert> for SeriesAlert {
    fn from(alert: Alert) -> Self {
        Self::new(alert, ValueKind::Value)
    }
}

impl Deref for SeriesAlert {
    type Target = Alert;
    fn deref(&self) -> &Alert {
        &self.alert
    }
}

impl DerefMut for SeriesAlert {
    fn deref_mut(&mut self) -> &mut Alert {
        &mut self.alert
    }
}

/// One message for the sinks: a per-series alert or an incident
/// notification.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// A series started firing, escalated or resolved.
    Alert(SeriesAlert),
    /// An incident opened, changed, resolved or merged.
    Incident(Incident),
}

/// Which kind a [`Notice`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoticeKind {
    /// [`Notice::Alert`].
    Alert,
    /// [`Notice::Incident`].
    Incident,
}

impl Notice {
    /// Its kind.
    pub fn kind(&self) -> NoticeKind {
        match self {
            Self::Alert(_) => NoticeKind::Alert,
            Self::Incident(_) => NoticeKind::Incident,
        }
    }

    /// What a newer message replaces in a queue: the series' fingerprint
    /// or the incident's id (each carries the whole current state).
    pub fn key(&self) -> &str {
        match self {
            Self::Alert(a) => &a.fingerprint,
            Self::Incident(i) => &i.id,
        }
    }

    /// Firing, or resolved (an incident that resolved or merged).
    pub fn status(&self) -> AlertStatus {
        match self {
            Self::Alert(a) => a.status,
            Self::Incident(i) => match i.status {
                incident::IncidentStatus::Firing => AlertStatus::Firing,
                _ => AlertStatus::Resolved,
            },
        }
    }

    /// The alert, if it is one.
    pub fn as_alert(&self) -> Option<&SeriesAlert> {
        match self {
            Self::Alert(a) => Some(a),
            Self::Incident(_) => None,
        }
    }

    /// The incident, if it is one.
    pub fn as_incident(&self) -> Option<&Incident> {
        match self {
            Self::Incident(i) => Some(i),
            Self::Alert(_) => None,
        }
    }
}

impl From<Alert> for Notice {
    fn from(a: Alert) -> Self {
        Self::Alert(a.into())
    }
}

impl From<SeriesAlert> for Notice {
    fn from(a: SeriesAlert) -> Self {
        Self::Alert(a)
    }
}

impl From<Incident> for Notice {
    fn from(i: Incident) -> Self {
        Self::Incident(i)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON sinks (webhook, Kafka) serialise the resolution with serde,
    /// the log and Alertmanager with `as_str`: both say the same word.
    #[test]
    fn every_sink_names_a_resolution_alike() {
        for (r, name) in [
            (Resolution::Returned, "returned"),
            (Resolution::NewNormal, "new_normal"),
        ] {
            assert_eq!(r.as_str(), name);
            assert_eq!(serde_json::to_value(r).unwrap(), name);
        }
    }
}
