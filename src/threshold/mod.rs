//! Adaptive thresholds on the model's residual, and the score contract.
//!
//! This module owns how a residual becomes an anomaly score. It does not
//! forecast ([`crate::model`]) or decide alerts (the alert lifecycle compares
//! the score with its threshold).
//!
//! # The score contract
//!
//! Every threshold kind turns the magnitude of the residual, `a = |residual|`
//! (in deviations of the series), into a **surprise** `L ≥ 0` in nats: an
//! estimate of `-ln P(A ≥ a)` under the residual distribution it has learned
//! for this series. The `anomaly_score` is then
//!
//! ```text
//! score = L / (L + SURPRISE_AT_HALF)        (SURPRISE_AT_HALF = 10 nats)
//! ```
//!
//! so that:
//! - `score` is in `[0, 1)`, and is 0 while the series warms up;
//! - it is monotone in how unlikely the residual is (strictly increasing in
//!   `L`, and `L` is non-decreasing in `a`), and scores of different series
//!   are comparable because `L` is a tail probability, not a raw error;
//! - it never reaches 1.0 for an ordinary outlier: `L` is capped at
//!   [`MAX_SURPRISE`] nats, where the score is `1 - 1e-5`, and below the cap
//!   distinct surprises give distinct scores, so one threshold swept over
//!   many series (as NAB does) does not meet a wall of ties at 1.0;
//! - `score = 0.5` means a tail probability of about `e^-10 ≈ 4.5e-5`, and
//!   [`DEFAULT_ALERT_THRESHOLD`] is the score at which to alert by default.
//!
//! [`score_from_surprise`] and [`surprise_from_score`] are the two directions
//! of the map; the band of the detector uses the second to find the residual
//! that would just reach the alert threshold.
//!
//! # Kinds
//!
//! - [`ewma`]: exponentially weighted mean/variance of `a`, Gaussian tail.
//! - [`quantile`]: P² streaming quantiles of `a`, exponential tail beyond.
//! - [`spot`]: peaks over threshold with a generalised Pareto tail fitted by
//!   the method of moments on weighted excess moments (SPOT/DSPOT).
//!
//! All keep a fixed handful of numbers per series and do O(1) work per event.
//! On top of any kind, the detector smooths surprise over a short window and
//! compares it with its long-run level (see [`Smoother`]), which is what
//! HTM's "anomaly likelihood" does: it damps isolated blips on noisy series
//! and lets a sustained change accumulate.

pub mod ewma;
pub mod quantile;
pub mod spot;

use serde::{Deserialize, Serialize};

use crate::config::Problems;
use ewma::Ewma;
use quantile::Quantile;
use spot::Spot;

/// Surprise (nats) at which the score is 0.5.
pub const SURPRISE_AT_HALF: f64 = 10.0;

/// Cap on surprise: a residual can never make the score reach 1.0.
pub const MAX_SURPRISE: f64 = 1e6;

/// The score at which to alert by default, chosen on NAB (see the README):
/// the same value for every series.
pub const DEFAULT_ALERT_THRESHOLD: f64 = 0.5;

/// Maps a surprise in nats to a score in `[0, 1)` (see the module docs).
#[inline]
pub fn score_from_surprise(surprise: f64) -> f64 {
    if surprise > 0.0 {
        let l = surprise.min(MAX_SURPRISE);
        l / (l + SURPRISE_AT_HALF)
    } else {
        // Also maps NaN to 0: a broken estimate must not alert.
        0.0
    }
}

/// The surprise at which the score equals `score` (inverse of
/// [`score_from_surprise`]); `score ≥ 1` maps to [`MAX_SURPRISE`].
#[inline]
pub fn surprise_from_score(score: f64) -> f64 {
    if score <= 0.0 {
        0.0
    } else if score >= 1.0 {
        MAX_SURPRISE
    } else {
        (SURPRISE_AT_HALF * score / (1.0 - score)).min(MAX_SURPRISE)
    }
}

/// One exponentially weighted mean/variance step whose horizon grows from 1
/// to `horizon` (equal weights at first, so warm-up is short).
/// `s` is `[count, mean, variance]`.
#[inline]
pub(crate) fn ew_update(s: &mut [f64], horizon: f64, x: f64) {
    let n = (s[0] + 1.0).min(horizon);
    s[0] = n;
    let alpha = 1.0 / n;
    let delta = x - s[1];
    s[1] += alpha * delta;
    s[2] = (1.0 - alpha) * (s[2] + alpha * delta * delta);
}

/// The shape of a threshold kind: state per series, surprise of a residual
/// magnitude, its inverse, and learning.
pub trait Threshold {
    /// Per-series state (a fixed-size array).
    type State;
    /// State of a new series.
    fn new_state(&self) -> Self::State;
    /// Surprise in nats of magnitude `a ≥ 0`, non-decreasing in `a`.
    fn surprise(&self, state: &Self::State, a: f64) -> f64;
    /// The magnitude whose surprise is `surprise` (inverse of
    /// [`Threshold::surprise`] where it is increasing).
    fn magnitude_at(&self, state: &Self::State, surprise: f64) -> f64;
    /// Learns magnitude `a` (after it has been scored).
    fn observe(&self, state: &mut Self::State, a: f64);
}

/// Which threshold kind scores residuals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdKind {
    /// EWMA mean/variance z-score ([`ewma`]).
    Ewma,
    /// P² streaming quantile ([`quantile`]).
    Quantile,
    /// SPOT generalised Pareto tail ([`spot`]).
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

/// `[detector.threshold]`: how residuals become scores.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThresholdConfig {
    /// `spot` (default), `ewma` or `quantile`.
    pub kind: ThresholdKind,
    /// Events a new series learns before it is scored: until then its score
    /// is 0 and it cannot alert. At least 1.
    pub warmup_events: u32,
    /// Events over which the residual statistics are averaged (after that
    /// many, old residuals fade at rate 1/`horizon_events`). At least 2.
    pub horizon_events: u32,
    /// `quantile`: the tracked quantile; `spot`: the level of the initial
    /// threshold. Between 0.5 and 1 (exclusive).
    pub quantile: f64,
    /// Events in the short window over which surprise is averaged before it
    /// is compared with its long-run level (1 disables smoothing).
    pub smoothing_events: u32,
}

impl Default for ThresholdConfig {
    fn default() -> Self {
        Self {
            kind: ThresholdKind::Spot,
            warmup_events: 100,
            horizon_events: 2000,
            quantile: 0.98,
            smoothing_events: 1,
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
            self.horizon_events >= 2,
            key("horizon_events"),
            "must be at least 2 (2000 is the default)",
        );
        problems.check(
            self.quantile > 0.5 && self.quantile < 1.0,
            key("quantile"),
            "must be between 0.5 and 1, exclusive (0.98 is the default)",
        );
        problems.check(
            (1..=MAX_SMOOTHING).contains(&self.smoothing_events),
            key("smoothing_events"),
            format!("must be between 1 and {MAX_SMOOTHING}"),
        );
    }

    /// Builds the shared threshold. Call [`ThresholdConfig::validate`] first.
    pub fn build(&self) -> Thresholds {
        let horizon = f64::from(self.horizon_events.max(2));
        let q = self.quantile.clamp(0.5 + 1e-9, 1.0 - 1e-9);
        let kind = match self.kind {
            ThresholdKind::Ewma => Kind::Ewma(Ewma { horizon }),
            ThresholdKind::Quantile => Kind::Quantile(Quantile { q }),
            ThresholdKind::Spot => Kind::Spot(Spot { q, horizon }),
        };
        Thresholds {
            kind,
            smoother: Smoother {
                window: f64::from(self.smoothing_events.clamp(1, MAX_SMOOTHING)),
            },
        }
    }
}

/// Longest smoothing window.
pub const MAX_SMOOTHING: u32 = 1000;

/// HTM-style smoothing of surprise: an exponentially weighted short-window
/// mean of the per-event surprise. With `window = 1` it is the identity.
/// Because the newest surprise enters the mean with weight `1/window`, the
/// smoothed surprise is still increasing in the newest residual, so the band
/// can be inverted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Smoother {
    /// Events in the short window.
    pub window: f64,
}

impl Smoother {
    /// Smoothed surprise if the newest event has surprise `l`, given the
    /// previous smoothed value.
    #[inline]
    pub fn apply(&self, prev: f64, l: f64) -> f64 {
        prev + (l - prev) / self.window
    }

    /// The newest surprise needed for the smoothed value to reach `target`.
    #[inline]
    pub fn invert(&self, prev: f64, target: f64) -> f64 {
        prev + (target - prev) * self.window
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Ewma(Ewma),
    Quantile(Quantile),
    Spot(Spot),
}

/// A configured threshold (shared by every series).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    kind: Kind,
    smoother: Smoother,
}

/// Per-series state of a [`Thresholds`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdState {
    /// The kind's state.
    kind: KindState,
    /// Smoothed surprise so far.
    smoothed: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum KindState {
    Ewma([f64; 3]),
    Quantile([f64; 11]),
    Spot([f64; 7]),
}

/// What a threshold says about one residual.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// The score in `[0, 1)` (the contract above).
    pub score: f64,
    /// Smoothed surprise after this event (to be committed by
    /// [`Thresholds::observe`]).
    smoothed: f64,
}

impl Thresholds {
    /// The kind's name.
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Ewma(_) => ThresholdKind::Ewma.as_str(),
            Kind::Quantile(_) => ThresholdKind::Quantile.as_str(),
            Kind::Spot(_) => ThresholdKind::Spot.as_str(),
        }
    }

    /// Fresh per-series state.
    pub fn new_state(&self) -> ThresholdState {
        let kind = match &self.kind {
            Kind::Ewma(t) => KindState::Ewma(t.new_state()),
            Kind::Quantile(t) => KindState::Quantile(t.new_state()),
            Kind::Spot(t) => KindState::Spot(t.new_state()),
        };
        ThresholdState {
            kind,
            smoothed: 0.0,
        }
    }

    /// Whether `state` belongs to this kind.
    pub fn owns(&self, state: &ThresholdState) -> bool {
        matches!(
            (&self.kind, &state.kind),
            (Kind::Ewma(_), KindState::Ewma(_))
                | (Kind::Quantile(_), KindState::Quantile(_))
                | (Kind::Spot(_), KindState::Spot(_))
        )
    }

    #[inline]
    fn raw_surprise(&self, state: &ThresholdState, a: f64) -> f64 {
        let l = match (&self.kind, &state.kind) {
            (Kind::Ewma(t), KindState::Ewma(s)) => t.surprise(s, a),
            (Kind::Quantile(t), KindState::Quantile(s)) => t.surprise(s, a),
            (Kind::Spot(t), KindState::Spot(s)) => t.surprise(s, a),
            _ => 0.0,
        };
        if l.is_nan() { 0.0 } else { l.min(MAX_SURPRISE) }
    }

    /// Scores residual magnitude `a` against the state, before the state
    /// learns it.
    #[inline]
    pub fn score(&self, state: &ThresholdState, a: f64) -> Scored {
        let l = self.raw_surprise(state, a);
        let smoothed = self.smoother.apply(state.smoothed, l);
        Scored {
            score: score_from_surprise(smoothed),
            smoothed,
        }
    }

    /// The residual magnitude at which the score would be `score` (for the
    /// band). 0 when even a perfect forecast would score that high.
    #[inline]
    pub fn magnitude_at(&self, state: &ThresholdState, score: f64) -> f64 {
        let target = surprise_from_score(score);
        let l = self.smoother.invert(state.smoothed, target);
        if l <= 0.0 {
            return 0.0;
        }
        let a = match (&self.kind, &state.kind) {
            (Kind::Ewma(t), KindState::Ewma(s)) => t.magnitude_at(s, l),
            (Kind::Quantile(t), KindState::Quantile(s)) => t.magnitude_at(s, l),
            (Kind::Spot(t), KindState::Spot(s)) => t.magnitude_at(s, l),
            _ => 0.0,
        };
        a.max(0.0)
    }

    /// Learns magnitude `a` and commits the smoothed surprise of `scored`.
    #[inline]
    pub fn observe(&self, state: &mut ThresholdState, a: f64, scored: &Scored) {
        state.smoothed = scored.smoothed;
        match (&self.kind, &mut state.kind) {
            (Kind::Ewma(t), KindState::Ewma(s)) => t.observe(s, a),
            (Kind::Quantile(t), KindState::Quantile(s)) => t.observe(s, a),
            (Kind::Spot(t), KindState::Spot(s)) => t.observe(s, a),
            _ => {}
        }
    }
}
