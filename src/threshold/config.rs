//! `[detector.threshold]`: how the model's output becomes scores.
//!
//! This module owns the section's keys, their validation and the building
//! of the shared [`Thresholds`] from them.

use serde::{Deserialize, Serialize};

use super::Thresholds;
use crate::config::Problems;

/// Which threshold kind learns the body of each channel's distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdKind {
    /// Gaussian body from an EW mean absolute value ([`super::ewma`]).
    Ewma,
    /// P² streaming quantile ([`super::quantile`]).
    Quantile,
    /// SPOT generalised Pareto tail ([`super::spot`]).
    Spot,
}

impl ThresholdKind {
    /// The name used in config.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Ewma => "ewma",
            Self::Quantile => "quantile",
            Self::Spot => "spot",
        }
    }
}

/// A config key that existed in an earlier version and was removed: any
/// value is accepted by the parser so that validation can say what to do.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RemovedKey;

impl<'de> Deserialize<'de> for RemovedKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| RemovedKey)
    }
}

/// `[detector.threshold]`: how the model's output becomes scores.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThresholdConfig {
    /// `ewma` (default), `quantile` or `spot`: how each channel learns the
    /// body of its distribution.
    pub kind: ThresholdKind,
    /// Fewest events before a series is scored. At least 1.
    pub warmup_events: u32,
    /// Least event time (seconds) before a series is scored: a series with
    /// a daily cycle is not judged before it has seen one.
    pub warmup_secs: u64,
    /// Events over which the channels remember what is normal: the largest
    /// excursions fade by half over this many events, the bodies over a
    /// fifth of it. At least 10.
    pub horizon_events: u32,
    /// Time constant (seconds) of the level channel's baseline: how long a
    /// new level takes to become the normal one. At least 60.
    pub level_memory_secs: u64,
    /// `quantile`: the tracked quantile; `spot`: the level of the initial
    /// threshold. Between 0.5 and 1, exclusive.
    pub quantile: f64,
    /// Score where the series sits against its seasonal baseline.
    pub level_channel: bool,
    /// Score small deviations that keep one sign (CUSUM).
    pub drift_channel: bool,
    /// Score values that repeat exactly for unusually long.
    pub stuck_channel: bool,
    /// Removed in 0.2 (the anomaly-likelihood stage).
    #[serde(skip_serializing)]
    pub smoothing_events: Option<RemovedKey>,
    /// Removed in 0.2 (inflation after an anomaly).
    #[serde(skip_serializing)]
    pub inflation_events: Option<RemovedKey>,
    /// Removed in 0.2 (range novelty).
    #[serde(skip_serializing)]
    pub range_novelty: Option<RemovedKey>,
}

impl Default for ThresholdConfig {
    fn default() -> Self {
        Self {
            kind: ThresholdKind::Ewma,
            warmup_events: 100,
            warmup_secs: 86_400,
            horizon_events: 5000,
            level_memory_secs: 3 * 86_400,
            quantile: 0.98,
            level_channel: true,
            drift_channel: true,
            stuck_channel: true,
            smoothing_events: None,
            inflation_events: None,
            range_novelty: None,
        }
    }
}

impl ThresholdConfig {
    /// Records every problem with its full key (`prefix` is e.g.
    /// `detector.threshold`).
    pub fn validate(&self, prefix: &str, problems: &mut Problems) {
        let key = |k: &str| format!("{prefix}.{k}");
        problems.check(
            self.warmup_events >= 1,
            key("warmup_events"),
            "must be at least 1 (100 is the default)",
        );
        problems.check(
            self.horizon_events >= 10,
            key("horizon_events"),
            "must be at least 10 (5000 is the default)",
        );
        problems.check(
            self.level_memory_secs >= 60,
            key("level_memory_secs"),
            "must be at least 60 seconds (259200, three days, is the default)",
        );
        problems.check(
            self.quantile > 0.5 && self.quantile < 1.0,
            key("quantile"),
            "must be between 0.5 and 1, exclusive (0.98 is the default)",
        );
        for (name, removed, what) in [
            (
                "smoothing_events",
                self.smoothing_events,
                "the anomaly-likelihood stage was removed; the drift channel scores sustained deviations",
            ),
            (
                "inflation_events",
                self.inflation_events,
                "inflation after anomalies was removed; echo suppression keeps an anomaly to one alert",
            ),
            (
                "range_novelty",
                self.range_novelty,
                "range novelty was removed; the records of the level channel cover new ranges",
            ),
        ] {
            problems.check(
                removed.is_none(),
                key(name),
                format!("was removed in 0.2 ({what}); delete this key"),
            );
        }
    }

    /// Builds the shared threshold for alerts as `targets` says (echo
    /// suppression and episodes start at the alert's surprise). Call
    /// [`ThresholdConfig::validate`] first; out-of-range values are clamped
    /// here.
    pub fn build(&self, targets: &AlertTargets) -> Thresholds {
        Thresholds::new(self, targets)
    }
}

/// What the alert rule asks of the threshold: where an anomaly starts,
/// where it is over, and when a change has lasted long enough to be the
/// new normal (see [`super::episode`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlertTargets {
    /// The alert threshold (score).
    pub threshold: f64,
    /// The score below which an event is back to normal.
    pub resolve_threshold: f64,
    /// Events back to normal in a row that end an episode.
    pub resolve_after_events: u32,
    /// Event time after which a change is the new normal (seconds).
    pub max_episode_secs: u64,
}

impl AlertTargets {
    /// The default rule's targets for alerts at score `threshold`.
    pub fn at(threshold: f64) -> Self {
        use super::{score_from_surprise, surprise_from_score};
        Self {
            threshold,
            resolve_threshold: score_from_surprise(
                RESOLVE_SURPRISE_SHARE * surprise_from_score(threshold),
            ),
            resolve_after_events: 3,
            max_episode_secs: DEFAULT_MAX_EPISODE_SECS,
        }
    }
}

/// The default resolve threshold is the score of this share of the alert
/// threshold's surprise (0.32 for 0.5): an alert is not resolved and
/// re-fired by scores that hover around the threshold.
pub const RESOLVE_SURPRISE_SHARE: f64 = 0.6;

/// A change that lasts this long (six hours of event time) is the new
/// normal by default: long enough for an incident to be one alert, short
/// enough that a deploy that doubles memory for good stops paging the same
/// day.
pub const DEFAULT_MAX_EPISODE_SECS: u64 = 6 * 3600;

impl ThresholdConfig {}
