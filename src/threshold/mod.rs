//! Adaptive thresholds on the model's output, and the score contract.
//!
//! This module owns how one forecast becomes an anomaly score, why, and when
//! a series is trusted to be scored at all. It does not forecast
//! ([`crate::model`]) or decide alerts (the alert lifecycle compares scores
//! with its thresholds).
//!
//! # The score contract
//!
//! Every event gets a **surprise** `L ≥ 0` in nats (`L = -ln p`, `p` the
//! probability, under the series' learned normal behaviour, of something at
//! least as unusual), and
//!
//! ```text
//! score = r / (r + 1),  r = (L / SURPRISE_AT_HALF)^1.5     (SURPRISE_AT_HALF = 10 nats)
//! ```
//!
//! - `score` is in `[0, 1)`, and 0 while the series warms up;
//! - for a given series state it is monotone in how improbable the event is
//!   over the whole range: nothing caps it, so on a Gaussian series a 30σ
//!   spike scores above a 10σ one (about 0.99 and 0.9), which scores above
//!   a 4.5σ one (0.5), and a 3σ one stays at about 0.2;
//! - scores of different series are comparable: each is judged against its
//!   own learned distributions;
//! - it never reaches 1.0 (`L` is capped at [`MAX_SURPRISE`]).
//!
//! [`DEFAULT_ALERT_THRESHOLD`] = 0.5 is `L` = 10 nats: what a series' normal
//! behaviour produces about once in 22,000 events per channel.
//!
//! Beside the score, every event gets an **onset** score: the same, less
//! what the series' recent anomaly already explains (echo suppression,
//! below). An anomaly's first event has both high; its echo (the return
//! after a spike) and its plateau (the events after a level shift) keep a
//! high score but a low onset. Alerts fire on the onset, so one anomaly is
//! one alert, and report the score, so the alert says how big it is.
//!
//! # Channels
//!
//! Four channels each turn the event into a magnitude, learn its normal
//! distribution per series, and give a surprise; `L` is the largest, and the
//! channel that gave it is the event's [`Reason`]:
//!
//! - **forecast**: `value - expected`, in the series' typical steps;
//! - **level**: where the series sits now (a short average, confirmed by
//!   the last two values) against its baseline: a slow offset plus a daily
//!   season (three harmonics, learned by least mean squares), in deviations
//!   of the deseasonalised value. It sees what the forecast follows: a
//!   drift, a level the series never sits at, a day without its usual
//!   peak;
//! - **drift**: a two-sided CUSUM (Page 1954) of the deseasonalised value,
//!   standardised and discounted for its autocorrelation: small deviations
//!   that keep one sign (a slow drift, a broken season) which no single
//!   event shows;
//! - **stuck**: how many times in a row the value repeated exactly, against
//!   a two-state Markov estimate of how often this series repeats (a frozen
//!   exporter). A repeated zero is an idle counter, not a frozen one.
//!
//! The drift and stuck channels accumulate evidence event by event; they
//! need [`SLOW_MARGIN`] more nats than the others, so that evidence hovering
//! near the threshold does not fire them.
//!
//! # How a channel's surprise is computed
//!
//! A threshold *kind* ([`ewma`] by default, [`quantile`] or [`spot`]) learns
//! the *body* of the magnitude's distribution and gives its surprise. On top
//! sits the **record bound** ([`Record`]), kept per direction (a series
//! whose drops are normal, like a sawtooth or a disk that is cleaned up, may
//! still never jump up): from the peaks of the channel's recent
//! *excursions*, a magnitude up to the second-largest peak `t2` (it happened
//! at least twice: once is an anomaly, twice a pattern) has surprise at most
//! `ln((m + 1) / 2)` after `m` excursions, and beyond `t2` the surprise
//! grows as a Weibull tail anchored there: with the body's shape (2 for the
//! Gaussian) when `t2` is where the body expects it, gentler when the
//! series' tail is heavier than its body. For a Gaussian series the bound
//! hardly binds; for a spiky one it calibrates the tail. Records learn from
//! excursion peaks, not events, so a slowly rising magnitude cannot walk its
//! record up a step at a time.
//!
//! Channels learn each event after scoring it: the body with the magnitude
//! clipped at the one whose surprise is [`LEARN_CLIP_SURPRISE`] (an anomaly
//! moves it no more than an event past the alert threshold), the records
//! with the peaks as they were (peaks fade by half over `horizon_events`).
//!
//! **Echo suppression.** A channel's surprise at or above the alert
//! threshold becomes its *echo peak*, held while the channel stays at alert
//! level and decaying with a time constant of [`ECHO_EVENTS`] events once
//! it is back below; the onset score counts only what exceeds it.
//!
//! # Warm-up
//!
//! A new series is silent (score 0) until it is trusted: at least
//! `warmup_events` events and `warmup_secs` of event time, and the forecast
//! residual's deviation known to within [`WARM_RELATIVE_ERROR`] (its
//! standard error, from the spread of the residuals seen: a heavy-tailed
//! series takes longer). The level and drift channels also wait for a day
//! of event time: their season needs one. Warmth is part of the state, so a
//! restored series is warm at once; a new, evicted or relearned one warms
//! up again, while every channel learns.
//!
//! All of it is a fixed handful of numbers per series (one boxed slab) and
//! O(1) work per event.

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

/// How steeply the score rises with surprise: `score = r / (r + 1)` with
/// `r = (L / SURPRISE_AT_HALF)^SCORE_POWER`. Above 1, so that the scale
/// spreads where it matters: 3 nats below the alert level are far below
/// 0.5 and three times its surprise is 0.84.
pub const SCORE_POWER: f64 = 1.5;

/// Cap on surprise: a residual can never make the score reach 1.0.
pub const MAX_SURPRISE: f64 = 1e6;

/// The score at which to alert by default: [`SURPRISE_AT_HALF`] nats.
pub const DEFAULT_ALERT_THRESHOLD: f64 = 0.5;

/// A channel's body learns a magnitude of at most the one with this
/// surprise.
pub const LEARN_CLIP_SURPRISE: f64 = 12.0;

/// The forecast residual's deviation must be known to within this relative
/// standard error before a series is scored.
pub const WARM_RELATIVE_ERROR: f64 = 0.1;

/// Extra nats the accumulating channels (drift, stuck) need.
pub const SLOW_MARGIN: f64 = 3.0;

/// Each channel's margin: forecast, level, drift, stuck.
const MARGINS: [f64; 4] = [0.0, 0.0, SLOW_MARGIN, SLOW_MARGIN];

/// Time constant, in events, of the echo peaks' decay.
pub const ECHO_EVENTS: f64 = 50.0;

/// Event time the level and drift channels need to have seen (one day: one
/// season).
const SLOW_WARMUP_MS: f64 = 86_400_000.0;

/// Time constant of the seasonal coefficients (three days).
const SEASON_MEMORY_MS: f64 = 3.0 * 86_400_000.0;

/// Events in the level channel's short average.
const LEVEL_EVENTS: f64 = 10.0;

/// How gently a heavy tail extrapolates: the record's shape is the body's
/// divided by `heaviness^TAIL_GENTLENESS` (never below exponential).
const TAIL_GENTLENESS: f64 = 0.25;

/// A record binds only when its second-largest peak is this many times
/// above where the body expects it (the spread of that peak between
/// samples of a Gaussian is about a tenth of it).
const RECORD_TOLERANCE: f64 = 1.3;

/// Records with fewer excursions than `ln((m + 1) / 2)` reaching this bound
/// nothing.
const RECORD_MIN_CAP: f64 = 0.3;

/// The CUSUM's reference value, in deviations: it accumulates deviations
/// beyond `1.5` standardised units on average.
const CUSUM_K: f64 = 0.75;

/// Largest standardised deviation one event adds to the CUSUM.
const CUSUM_CLIP: f64 = 3.0;

/// The CUSUM is held at the value of this surprise, so it forgets an
/// anomaly within a few dozen events of its end.
const CUSUM_CAP_SURPRISE: f64 = 40.0;

/// Completed CUSUM excursions (exponentially weighted) the drift channel
/// needs before it scores.
const DRIFT_MIN_EXCURSIONS: f64 = 3.0;

/// Floor on the evidence one autocorrelated deviation carries (see
/// [`Thresholds::evidence`]).
const EVIDENCE_FLOOR: f64 = 0.5;

/// Weight (in transitions) of the stuck channel's prior that repeats are
/// independent.
const STUCK_PRIOR: f64 = 20.0;

/// Events the baseline learns before the level and drift channels learn
/// distances in its deviation.
const BASE_READY: f64 = 20.0;

/// Events the level or drift channel must report a change in a row before
/// it is accepted as the new normal (see [`Thresholds::observe`]).
const ACCEPT_EVENTS: f64 = 30.0;

/// The baseline learns deviations clipped at this many of its own.
const BASE_CLIP: f64 = 5.0;

/// Runs `$body` with `$t` bound to the concrete kind: static dispatch, so
/// the kind's code inlines into the per-event path.
macro_rules! with_kind {
    ($kind:expr, $t:ident => $body:expr) => {
        match $kind {
            Kind::Ewma($t) => $body,
            Kind::Quantile($t) => $body,
            Kind::Spot($t) => $body,
        }
    };
}

/// Maps a surprise in nats to a score in `[0, 1)` (see the module docs).
#[inline]
pub fn score_from_surprise(surprise: f64) -> f64 {
    if surprise > 0.0 {
        // x^SCORE_POWER as x·√x: this runs twice per event.
        const _: () = assert!(SCORE_POWER == 1.5);
        let x = surprise.min(MAX_SURPRISE) / SURPRISE_AT_HALF;
        let r = x * x.sqrt();
        r / (r + 1.0)
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
        (SURPRISE_AT_HALF * (score / (1.0 - score)).powf(1.0 / SCORE_POWER)).min(MAX_SURPRISE)
    }
}

/// One exponentially weighted mean step whose horizon grows from 1 to
/// `horizon` (equal weights at first, so warm-up is short). `s` is
/// `[count, mean]`; returns the weight of the new value.
#[inline]
pub(crate) fn ew_update_mean(s: &mut [f64], horizon: f64, inv_horizon: f64, x: f64) -> f64 {
    let n = (s[0] + 1.0).min(horizon);
    s[0] = n;
    let alpha = if n >= horizon { inv_horizon } else { 1.0 / n };
    s[1] += alpha * (x - s[1]);
    alpha
}

/// [`ew_update_mean`] plus the variance: `s` is `[count, mean, variance]`.
#[inline]
pub(crate) fn ew_update(s: &mut [f64], horizon: f64, inv_horizon: f64, x: f64) {
    let delta = x - s[1];
    let alpha = ew_update_mean(&mut s[..2], horizon, inv_horizon, x);
    s[2] = (1.0 - alpha) * (s[2] + alpha * delta * delta);
}

/// The shape of a threshold kind: it learns the distribution of a
/// magnitude `a ≥ 0` in a slice of per-series state and gives the surprise
/// of a new one.
pub trait Threshold {
    /// How many `f64` of per-series state the kind keeps.
    fn state_len(&self) -> usize;
    /// Sets fresh state.
    fn init(&self, state: &mut [f64]);
    /// Surprise in nats of magnitude `a`, non-decreasing in `a`.
    fn surprise(&self, state: &[f64], a: f64) -> f64;
    /// The magnitude whose surprise is `surprise` (inverse of
    /// [`Threshold::surprise`] where it is increasing).
    fn magnitude_at(&self, state: &[f64], surprise: f64) -> f64;
    /// Learns magnitude `a` (after it has been scored).
    fn observe(&self, state: &mut [f64], a: f64);
}

/// Which threshold kind learns the body of each channel's distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdKind {
    /// Gaussian body from an EW mean absolute value ([`ewma`]).
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

/// Which channel gave an event its score (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The value is far from the forecast.
    #[default]
    Forecast,
    /// The series sits far from its usual level.
    Level,
    /// Deviations keep one sign: a drift or a broken season.
    Drift,
    /// The value has repeated exactly for unusually long.
    Stuck,
}

impl Reason {
    /// Every reason, in channel order.
    pub const ALL: [Reason; 4] = [Self::Forecast, Self::Level, Self::Drift, Self::Stuck];

    /// The name in alerts, logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Forecast => "forecast",
            Self::Level => "level",
            Self::Drift => "drift",
            Self::Stuck => "stuck",
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

    /// Builds the shared threshold for alerts at score `alert_threshold`
    /// (echo suppression starts at its surprise). Call
    /// [`ThresholdConfig::validate`] first; out-of-range values are clamped
    /// here.
    pub fn build(&self, alert_threshold: f64) -> Thresholds {
        let horizon = f64::from(self.horizon_events.max(10));
        let body = horizon / 5.0;
        let q = self.quantile.clamp(0.5 + 1e-9, 1.0 - 1e-9);
        let kind = match self.kind {
            ThresholdKind::Ewma => Kind::Ewma(Ewma::new(body)),
            ThresholdKind::Quantile => Kind::Quantile(Quantile { q }),
            ThresholdKind::Spot => Kind::Spot(Spot::new(q, body)),
        };
        let kind_len = with_kind!(&kind, t => t.state_len());
        let channel_len = kind_len + 2 * RECORD_LEN;
        let mut at = HEADER_LEN;
        let mut take = |len: usize| {
            at += len;
            at - len
        };
        let forecast = take(channel_len);
        // The default kind keeps the residual's moments itself.
        let moments = if matches!(kind, Kind::Ewma(_)) {
            forecast
        } else {
            take(MOMENTS_LEN)
        };
        let base = (self.level_channel || self.drift_channel).then(|| take(BASE_LEN));
        let level = self.level_channel.then(|| take(channel_len));
        let drift = self.drift_channel.then(|| take(DRIFT_LEN));
        let stuck = self.stuck_channel.then(|| take(STUCK_LEN));
        Thresholds {
            kind,
            moments_kind: Ewma::new(body),
            kind_len,
            horizon,
            top_decay: 0.5f64.powf(1.0 / horizon),
            keep: 1.0 - 1.0 / horizon,
            echo_decay: (-1.0 / ECHO_EVENTS).exp(),
            warmup_events: f64::from(self.warmup_events.max(1)),
            warmup_ms: self.warmup_secs as f64 * 1000.0,
            level_memory_ms: self.level_memory_secs.max(60) as f64 * 1000.0,
            alert_surprise: surprise_from_score(alert_threshold),
            layout: Layout {
                forecast,
                moments,
                base,
                level,
                drift,
                stuck,
                len: at,
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Ewma(Ewma),
    Quantile(Quantile),
    Spot(Spot),
}

/// Header: `[n (events, saturating at the horizon), first event time (ms),
/// warm (0 or 1), echo peak]`.
const HEADER_LEN: usize = 4;
/// Where the echo peak is.
const ECHO: usize = 3;
/// The forecast residual's moments (an [`Ewma`] state).
const MOMENTS_LEN: usize = 3;
/// The baseline: `[count, offset, last event time, 6 daily coefficients
/// (harmonics 1 to 3, cos and sin), the residual's moments (an Ewma), its
/// lag-1 statistics (last, EW mean of e_t e_{t-1}, of e_t²), the short
/// average, the previous deseasonalised value]`.
const BASE_LEN: usize = 3 + 6 + 3 + 3 + 2 + 1;
/// Where the baseline's daily coefficients start.
const BASE_SEASON: usize = 3;
/// Where the baseline's residual moments start.
const BASE_MOMENTS: usize = 9;
/// Where its lag-1 statistics start.
const BASE_AUTO: usize = 12;
/// Where the short average is.
const BASE_FAST: usize = 15;
/// Where the previous deseasonalised value is.
const BASE_PREV: usize = 16;
/// Where the count of consecutive events the level or drift channel spent
/// at alert level is.
const BASE_ALERTING: usize = 17;
/// Drift: `[S+, S-, record]`.
const DRIFT_LEN: usize = 2 + RECORD_LEN;
/// Stuck: `[last value, run, changes, repeats after a change, repeats,
/// repeats after a repeat, record of completed runs]`, the counts
/// exponentially weighted.
const STUCK_LEN: usize = 6 + RECORD_LEN;

const DAY_MS: f64 = 86_400_000.0;

/// The daily basis at `ts_ms`: harmonics 1 to 3, cos and sin.
#[inline]
fn season_basis(ts_ms: i64) -> [f64; 6] {
    let (s1, c1) =
        crate::model::features::sin_cos_turns((ts_ms as f64).rem_euclid(DAY_MS) / DAY_MS);
    let (c2, s2) = (c1 * c1 - s1 * s1, 2.0 * s1 * c1);
    let (c3, s3) = (c1 * c2 - s1 * s2, s1 * c2 + c1 * s2);
    [c1, s1, c2, s2, c3, s3]
}

/// Where each channel lives in the slab. A kind-scored channel (forecast,
/// level) is `[kind state, record up, record down]`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Layout {
    forecast: usize,
    moments: usize,
    base: Option<usize>,
    level: Option<usize>,
    drift: Option<usize>,
    stuck: Option<usize>,
    len: usize,
}

/// The record bound (see the module docs). State: `[excursions (EW
/// count), largest peak, second largest peak, peak of the current
/// excursion]`.
#[derive(Debug, Clone, Copy)]
struct Record {
    /// `ln((m + 1) / 2)`: the surprise of a magnitude seen twice in `m`
    /// excursions.
    cap: f64,
    /// Second-largest recent peak (0: no bound).
    top: f64,
    /// Shape of the tail beyond it.
    k: f64,
}

/// Length of a [`Record`]'s state.
const RECORD_LEN: usize = 4;

impl Record {
    /// The record in state `r`, for a channel whose body has deviation
    /// `scale` and Weibull shape `body_k` (2 Gaussian, 1 exponential).
    #[inline]
    fn new(r: &[f64], scale: f64, body_k: f64) -> Self {
        let cap = (0.5 * (r[0] + 1.0)).ln();
        if cap < RECORD_MIN_CAP || r[2] <= 0.0 {
            return Self {
                cap: f64::INFINITY,
                top: 0.0,
                k: body_k,
            };
        }
        // Where t2 would sit if the magnitudes followed the body (the
        // expected second-largest of m) and how much heavier than that the
        // tail is: a tail like the body's extrapolates with the body's
        // shape, a heavier one more gently (never below exponential).
        // (k·cap)^(1/k), and below h^-TAIL_GENTLENESS, by square roots for
        // the Gaussian body and the quarter power (this runs several times
        // per event).
        const _: () = assert!(TAIL_GENTLENESS == 0.25);
        let kc = body_k * cap;
        let root = if body_k == 2.0 {
            kc.sqrt()
        } else {
            kc.powf(1.0 / body_k)
        };
        let expected = root * scale.max(1e-300);
        let heaviness = (r[2] / expected).max(1.0);
        if heaviness < RECORD_TOLERANCE {
            // The record is what the body predicts, up to sampling noise:
            // the body alone describes the tail.
            return Self {
                cap: f64::INFINITY,
                top: 0.0,
                k: body_k,
            };
        }
        let k = (body_k / heaviness.sqrt().sqrt()).max(body_k.min(1.0));
        Self { cap, top: r[2], k }
    }

    /// Surprise bound of magnitude `a`: `cap` up to the record, then the
    /// Weibull tail `cap (a / top)^k` (for a Gaussian record, the
    /// Gaussian's own tail `a² / 2σ²`).
    #[inline]
    fn surprise(&self, a: f64) -> f64 {
        if a <= self.top {
            self.cap
        } else {
            self.cap * (a / self.top).powf(self.k)
        }
    }

    /// Smallest magnitude whose bound reaches `l` (0 if all do, ∞ if none).
    #[inline]
    fn magnitude_at(&self, l: f64) -> f64 {
        if l <= self.cap {
            0.0
        } else if self.top <= 0.0 {
            f64::INFINITY
        } else {
            self.top * (l / self.cap).powf(1.0 / self.k)
        }
    }

    /// Learns magnitude `a`: an excursion goes on while `above`, and its
    /// peak joins the record when it ends. `decay` fades the peaks, `keep`
    /// the excursion count.
    #[inline]
    fn learn(r: &mut [f64], a: f64, above: bool, decay: f64, keep: f64) {
        r[1] *= decay;
        r[2] *= decay;
        if above {
            r[3] = r[3].max(a);
            return;
        }
        r[0] *= keep;
        if r[3] > 0.0 {
            let p = r[3];
            r[0] += 1.0;
            r[3] = 0.0;
            if p > r[1] {
                r[2] = r[1];
                r[1] = p;
            } else if p > r[2] {
                r[2] = p;
            }
        }
    }
}

/// A configured threshold (shared by every series).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    kind: Kind,
    /// Learns the forecast residual's moments when the kind does not.
    moments_kind: Ewma,
    kind_len: usize,
    horizon: f64,
    /// Per-event decay of the records' peaks (half over the horizon).
    top_decay: f64,
    /// Per-event weight kept by exponentially weighted counts.
    keep: f64,
    /// Per-event decay of the echo peaks.
    echo_decay: f64,
    warmup_events: f64,
    warmup_ms: f64,
    level_memory_ms: f64,
    /// The alert threshold's surprise: echo peaks track surprises above it.
    alert_surprise: f64,
    layout: Layout,
}

/// Per-series state of a [`Thresholds`]: one slab laid out as
/// [`Thresholds`] says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdState {
    slab: Box<[f64]>,
}

impl ThresholdState {
    /// Bytes held on the heap.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.slab)
    }

    /// Whether every statistic is finite.
    pub fn is_finite(&self) -> bool {
        self.slab.iter().all(|x| x.is_finite())
    }
}

/// A score the band is drawn for (the same for every event of every
/// series).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandTarget {
    /// The score.
    pub score: f64,
    /// Its surprise.
    surprise: f64,
}

impl BandTarget {
    /// Precomputes the target for `score`.
    pub fn new(score: f64) -> Self {
        Self {
            score,
            surprise: surprise_from_score(score),
        }
    }
}

/// What the threshold is told about one event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// `value - expected`, in typical steps of the series.
    pub residual: f64,
    /// The value itself (level, drift and stuck channels).
    pub value: f64,
    /// Event time (the season, and the warm-up in time).
    pub ts_ms: i64,
    /// The daily basis at `ts_ms`, computed once per event.
    season: [f64; 6],
}

impl Observation {
    /// The observation of `value` at `ts_ms` with forecast residual
    /// `residual`.
    #[inline]
    pub fn new(residual: f64, value: f64, ts_ms: i64) -> Self {
        Self {
            residual,
            value,
            ts_ms,
            season: season_basis(ts_ms),
        }
    }
}

/// Surprise per channel: forecast, level, drift, stuck.
type PerChannel = [f64; 4];

/// What a threshold says about one event, before it learns it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// The score in `[0, 1)` (the contract above); 0 while cold.
    pub score: f64,
    /// The onset score: as `score`, less each channel's echo peak.
    pub onset: f64,
    /// The surprise behind `score`, in nats (computed while cold too).
    pub surprise: f64,
    /// The channel that gave the score.
    pub reason: Reason,
    /// Whether the series is trusted to be scored.
    pub warm: bool,
    /// Each channel's surprise (the slow channels without their margin).
    raw: PerChannel,
    /// The CUSUM after this event.
    cusum: (f64, f64),
    /// The run of repeats after this event.
    run: f64,
}

/// Where values would score below a given score, for the band: each bound
/// holds on its own, and the band is their intersection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandLimits {
    /// Largest residual below and above the forecast (typical steps, both
    /// ≥ 0).
    pub residual: (f64, f64),
    /// Values `[lo, hi]` that keep the level and drift channels below the
    /// score; infinite when they are off or cold.
    pub level: (f64, f64),
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
        let l = &self.layout;
        let mut slab = vec![0.0; l.len].into_boxed_slice();
        with_kind!(&self.kind, k => {
            for at in [Some(l.forecast), l.level].into_iter().flatten() {
                k.init(&mut slab[at..at + self.kind_len]);
            }
        });
        ThresholdState { slab }
    }

    /// Whether `state` has this threshold's layout.
    pub fn owns(&self, state: &ThresholdState) -> bool {
        state.slab.len() == self.layout.len
    }

    #[inline]
    fn kind_surprise(&self, s: &[f64], a: f64) -> f64 {
        let l = with_kind!(&self.kind, k => k.surprise(s, a));
        if l.is_nan() { 0.0 } else { l.min(MAX_SURPRISE) }
    }

    #[inline]
    fn kind_magnitude(&self, s: &[f64], l: f64) -> f64 {
        with_kind!(&self.kind, k => k.magnitude_at(s, l))
    }

    /// The kind state of the kind-scored channel at `at`.
    #[inline]
    fn kind_state<'a>(&self, slab: &'a [f64], at: usize) -> &'a [f64] {
        &slab[at..at + self.kind_len]
    }

    /// A kind-scored channel's typical magnitude (surprise ½ nat, 1σ for
    /// the Gaussian body): the floor of its excursions and of its tail.
    #[inline]
    fn scale(&self, slab: &[f64], at: usize) -> f64 {
        self.kind_magnitude(self.kind_state(slab, at), 0.5)
    }

    /// The record of the kind-scored channel at `at`, direction `up`.
    #[inline]
    fn record(&self, slab: &[f64], at: usize, up: bool) -> Record {
        let r = at + self.kind_len + if up { 0 } else { RECORD_LEN };
        Record::new(&slab[r..r + RECORD_LEN], self.scale(slab, at), 2.0)
    }

    /// Surprise of signed deviation `x` on the kind-scored channel at `at`:
    /// the body is symmetric, the records are kept per direction.
    #[inline]
    fn channel_surprise(&self, slab: &[f64], at: usize, x: f64) -> f64 {
        let a = x.abs().min(1e12);
        let body = self.kind_surprise(self.kind_state(slab, at), a);
        body.min(self.record(slab, at, x >= 0.0).surprise(a))
    }

    /// Surprise of signed deviation `x` on the kind-scored channel at `at`
    /// once the excursion it belongs to has joined its record: what the
    /// series will make of this magnitude after it has learned it. Equal to
    /// [`Self::channel_surprise`] for a first large excursion; for one that
    /// repeats an earlier excursion of similar size it is the record's
    /// tempered bound.
    #[inline]
    fn learned_surprise(&self, slab: &[f64], at: usize, x: f64) -> f64 {
        let a = x.abs().min(1e12);
        let up = x >= 0.0;
        let at_r = at + self.kind_len + if up { 0 } else { RECORD_LEN };
        let mut r = [0.0; RECORD_LEN];
        r.copy_from_slice(&slab[at_r..at_r + RECORD_LEN]);
        r[3] = r[3].max(a);
        Record::learn(&mut r, 0.0, false, 1.0, 1.0);
        let body = self.kind_surprise(self.kind_state(slab, at), a);
        body.min(Record::new(&r, self.scale(slab, at), 2.0).surprise(a))
    }

    /// Largest magnitude, in direction `up`, on the channel at `at` whose
    /// surprise is below `l`.
    #[inline]
    fn channel_magnitude(&self, slab: &[f64], at: usize, l: f64, up: bool) -> f64 {
        let body = self.kind_magnitude(self.kind_state(slab, at), l);
        body.max(self.record(slab, at, up).magnitude_at(l))
    }

    /// How much independent evidence one deseasonalised deviation carries
    /// for the drift channel: `√((1 - φ) / (1 + φ))` for its lag-1
    /// autocorrelation `φ > 0` (the deviation of a sum of `n` such values
    /// is `√((1 + φ)/(1 - φ))` times that of `n` independent ones), at least
    /// [`EVIDENCE_FLOOR`], 1 for `φ ≤ 0`.
    #[inline]
    fn evidence(b: &[f64]) -> f64 {
        let a = &b[BASE_AUTO..BASE_AUTO + 3];
        if a[2] <= 0.0 {
            return 1.0;
        }
        let phi = (a[1] / a[2]).clamp(0.0, 0.999);
        ((1.0 - phi) / (1.0 + phi)).sqrt().max(EVIDENCE_FLOOR)
    }

    /// The seasonal part of the baseline `b` at the time of daily basis
    /// `basis`.
    #[inline]
    fn season(b: &[f64], basis: &[f64; 6]) -> f64 {
        basis
            .iter()
            .zip(&b[BASE_SEASON..BASE_SEASON + 6])
            .map(|(x, w)| x * w)
            .sum()
    }

    /// The baseline's value at the time of `basis` (offset plus season)
    /// and the deviation of values around it, in the series' units.
    #[inline]
    fn baseline(b: &[f64], basis: &[f64; 6]) -> (f64, f64) {
        let m = &b[BASE_MOMENTS..BASE_MOMENTS + 3];
        let floor = (1e-9 * b[1].abs()).max(1e-300);
        (
            b[1] + Self::season(b, basis),
            (m[1] * ewma::SQRT_HALF_PI).max(floor),
        )
    }

    /// The short average after `value` at the time of `basis`
    /// (deseasonalised).
    #[inline]
    fn fast_level(b: &[f64], value: f64, basis: &[f64; 6]) -> f64 {
        let d = value - Self::season(b, basis);
        if b[0] < 1.0 {
            return d;
        }
        let n = (b[0] + 1.0).min(LEVEL_EVENTS);
        b[BASE_FAST] + (d - b[BASE_FAST]) / n
    }

    /// The level channel's signed distance, in baseline deviations: the
    /// short average's distance from the offset, but only as far as the
    /// current and the previous value are off the same way too, so that
    /// one stray value (a jitter, a spike: the forecast channel's business)
    /// does not move it, while a level that has really moved does. (The
    /// median of the three was tried: it raised false alarms on the
    /// corpus from 1.8 to 2.3 per 10,000 events.)
    #[inline]
    fn level_distance(b: &[f64], obs: &Observation, dev: f64) -> f64 {
        let off = b[1];
        let f = Self::fast_level(b, obs.value, &obs.season) - off;
        if b[0] < 2.0 {
            return f / dev;
        }
        let now = obs.value - Self::season(b, &obs.season) - off;
        let prev = b[BASE_PREV] - off;
        if f.signum() != now.signum() || f.signum() != prev.signum() {
            return 0.0;
        }
        f.signum() * f.abs().min(now.abs()).min(prev.abs()) / dev
    }

    /// Whether the slow channels (level, drift) may speak at `ts_ms`.
    #[inline]
    fn slow_warm(slab: &[f64], ts_ms: i64) -> bool {
        slab[2] > 0.0 && (ts_ms as f64 - slab[1]) >= SLOW_WARMUP_MS
    }

    /// Whether the drift channel has seen enough of the series' CUSUM
    /// excursions to judge one: a slowly wandering series makes few, long
    /// ones, and until its record holds [`DRIFT_MIN_EXCURSIONS`] the first
    /// of them would look like a drift.
    #[inline]
    fn drift_ready(d: &[f64]) -> bool {
        d[2] >= DRIFT_MIN_EXCURSIONS
    }

    /// Drift surprise of CUSUM value `c` (drift block `d`): the CUSUM's
    /// stationary tail is exponential (rate about 1 nat per unit for
    /// Gaussian deviations), capped by the record of its excursions.
    #[inline]
    fn drift_surprise(d: &[f64], c: f64) -> f64 {
        c.min(Record::new(&d[2..2 + RECORD_LEN], 1.0, 1.0).surprise(c))
    }

    /// Largest CUSUM value with drift surprise below `l`.
    #[inline]
    fn drift_limit(d: &[f64], l: f64) -> f64 {
        l.max(Record::new(&d[2..2 + RECORD_LEN], 1.0, 1.0).magnitude_at(l))
    }

    /// Stuck surprise of a run of `m` repeats (stuck block `st`): the
    /// chance of a run that long under a two-state Markov chain, capped by
    /// the record of completed runs.
    #[inline]
    fn stuck_surprise(st: &[f64], m: f64) -> f64 {
        if m < 1.0 {
            return 0.0;
        }
        // P(repeat | the value changed last time), with half a repeat of
        // prior; P(repeat | it repeated), with the prior that repeats are
        // independent worth STUCK_PRIOR transitions, so a frozen value does
        // not teach in its first few events that repeats go on.
        let p_start = (st[3] + 0.5) / (st[2] + 1.0);
        let p_cont = (st[5] + STUCK_PRIOR * p_start) / (st[4] + STUCK_PRIOR);
        let per = -p_cont.ln();
        let geo = -p_start.ln() + (m - 1.0) * per;
        let r = Record::new(&st[6..6 + RECORD_LEN], 1.0, 1.0);
        if r.top > 0.0 {
            geo.min(r.cap + (m - r.top).max(0.0) * per)
        } else {
            geo
        }
    }

    /// Whether a cold series is trusted from the event at `ts_ms` on.
    #[inline]
    fn becomes_warm(&self, s: &[f64], ts_ms: i64) -> bool {
        let m = &s[self.layout.moments..self.layout.moments + MOMENTS_LEN];
        s[0] >= self.warmup_events
            && (ts_ms as f64 - s[1]) >= self.warmup_ms
            && Ewma::relative_error(m) <= WARM_RELATIVE_ERROR
    }

    /// Scores one event against the state, before the state learns it.
    #[inline]
    pub fn score(&self, state: &ThresholdState, obs: &Observation) -> Scored {
        let s = &state.slab;
        let l = &self.layout;
        let warm = s[2] > 0.0 || (s[0] >= 1.0 && self.becomes_warm(s, obs.ts_ms));
        let slow = Self::slow_warm(s, obs.ts_ms);
        let mut raw = [0.0; 4];
        raw[0] = self.channel_surprise(s, l.forecast, obs.residual);
        let mut cusum = (0.0, 0.0);
        if let Some(b) = l.base {
            let bb = &s[b..b + BASE_LEN];
            let (base, dev) = Self::baseline(bb, &obs.season);
            if let (Some(at), true) = (l.level, slow) {
                raw[1] = self.channel_surprise(s, at, Self::level_distance(bb, obs, dev));
            }
            if let Some(at) = l.drift {
                let d = &s[at..at + DRIFT_LEN];
                let z =
                    ((obs.value - base) / dev).clamp(-CUSUM_CLIP, CUSUM_CLIP) * Self::evidence(bb);
                cusum = ((d[0] + z - CUSUM_K).max(0.0), (d[1] - z - CUSUM_K).max(0.0));
                if slow && Self::drift_ready(d) {
                    raw[2] = Self::drift_surprise(d, cusum.0.max(cusum.1));
                }
            }
        }
        let mut run = 0.0;
        if let Some(at) = l.stuck {
            let st = &s[at..at + STUCK_LEN];
            // A zero that repeats is an idle counter or rate, not a frozen
            // exporter.
            run = if s[0] >= 1.0 && obs.value == st[0] && obs.value != 0.0 {
                st[1] + 1.0
            } else {
                0.0
            };
            raw[3] = Self::stuck_surprise(st, run);
        }
        let mut best = (0.0, Reason::Forecast);
        for (i, reason) in Reason::ALL.into_iter().enumerate() {
            let x = raw[i] - MARGINS[i];
            if x > best.0 {
                best = (x, reason);
            }
        }
        let surprise = best.0.min(MAX_SURPRISE);
        let onset = (surprise - s[ECHO]).max(0.0);
        let cold = |l: f64| if warm { score_from_surprise(l) } else { 0.0 };
        Scored {
            score: cold(surprise),
            onset: cold(onset),
            surprise,
            reason: best.1,
            warm,
            raw,
            cusum,
            run,
        }
    }

    /// The limits on an event that would score below `target` (for the
    /// band): the inverse of [`Thresholds::score`] along each channel.
    #[inline]
    pub fn band(
        &self,
        state: &ThresholdState,
        target: &BandTarget,
        obs: &Observation,
    ) -> BandLimits {
        let ts_ms = obs.ts_ms;
        let s = &state.slab;
        let l = &self.layout;
        let lt = target.surprise;
        let residual = (
            self.channel_magnitude(s, l.forecast, lt, false).max(0.0),
            self.channel_magnitude(s, l.forecast, lt, true).max(0.0),
        );
        let mut level = (f64::NEG_INFINITY, f64::INFINITY);
        if let (Some(b), true) = (l.base, Self::slow_warm(s, ts_ms)) {
            let bb = &s[b..b + BASE_LEN];
            let (base, dev) = Self::baseline(bb, &obs.season);
            if let Some(at) = l.level {
                // |f' - offset| <= h with f' = f + (x - season - f) / n.
                let down = self.channel_magnitude(s, at, lt, false).max(0.0) * dev;
                let up = self.channel_magnitude(s, at, lt, true).max(0.0) * dev;
                let n = (bb[0] + 1.0).clamp(1.0, LEVEL_EVENTS);
                let f = bb[BASE_FAST];
                let center = Self::season(bb, &obs.season) + f + n * (bb[1] - f);
                level = (center - n * down, center + n * up);
            }
            if let Some(at) = l
                .drift
                .filter(|&at| Self::drift_ready(&s[at..at + DRIFT_LEN]))
            {
                let d = &s[at..at + DRIFT_LEN];
                let w = Self::evidence(bb);
                let c = Self::drift_limit(d, lt + SLOW_MARGIN);
                // The standardised deviation that would take the CUSUM to c.
                let hi = (c + CUSUM_K - d[0]) / w;
                let lo = -(c + CUSUM_K - d[1]) / w;
                if hi < CUSUM_CLIP {
                    level.1 = level.1.min(base + hi * dev);
                }
                if lo > -CUSUM_CLIP {
                    level.0 = level.0.max(base + lo * dev);
                }
            }
        }
        BandLimits { residual, level }
    }

    /// Learns signed deviation `x` on the kind-scored channel at `at`: the
    /// body with the magnitude clipped at the one of
    /// [`LEARN_CLIP_SURPRISE`], the record of `x`'s direction with the
    /// magnitude as it is. Returns the clipped magnitude.
    #[inline]
    fn learn_channel(&self, slab: &mut [f64], at: usize, x: f64, recorded: bool) -> f64 {
        let a = x.abs().min(1e12);
        let up = x >= 0.0;
        let clip = self.channel_magnitude(slab, at, LEARN_CLIP_SURPRISE, up);
        let floor = self.scale(slab, at);
        let clipped = if clip.is_finite() && clip > 0.0 && slab[0] >= 1.0 {
            a.min(clip)
        } else {
            a
        };
        // For the level channel an exact 0 is "nothing to measure" (its
        // three values disagree): the body learns the distances there are,
        // so it is not judged against a spread shrunk by zeros.
        if x != 0.0 || at == self.layout.forecast {
            with_kind!(&self.kind, k => k.observe(&mut slab[at..at + self.kind_len], clipped));
        }
        let r = at + self.kind_len;
        let (a_up, a_down) = match (recorded, up) {
            (false, _) => (0.0, 0.0),
            (true, true) => (a, 0.0),
            (true, false) => (0.0, a),
        };
        for (r, a) in [(r, a_up), (r + RECORD_LEN, a_down)] {
            Record::learn(
                &mut slab[r..r + RECORD_LEN],
                a,
                a > floor,
                self.top_decay,
                self.keep,
            );
        }
        clipped
    }

    /// Echo suppression: the series' echo peak holds the surprise of the
    /// anomaly in progress (any channel at or above the alert threshold
    /// raises it, and it holds while one stays there) and decays once the
    /// series is back below, so that what follows an anomaly (its echo, its
    /// plateau, the other channels that see the same change) must be
    /// surprising beyond the anomaly itself to be an onset. `held` is
    /// `None` below the alert's surprise (the peak decays); else the peak
    /// takes it, the anomaly's surprise as the series will see it once
    /// learned (see [`Self::learned_surprise`]): for a first anomaly that is
    /// its surprise; for one that repeats an earlier excursion's size, the
    /// record's bound replaces the peak, since the earlier excursion is by
    /// now part of the normal tail and its echo no reason to stay blind.
    #[inline]
    fn echo(&self, peak: &mut f64, surprise: f64, held: Option<f64>) {
        match held {
            Some(held) if held < surprise => *peak = held,
            Some(held) => *peak = peak.max(held),
            None => *peak *= self.echo_decay,
        }
    }

    /// Learns the baseline: the offset is an exponentially weighted mean
    /// of the deseasonalised value with time constant `level_memory`, the
    /// daily coefficients a least-mean-squares fit with time constant
    /// [`SEASON_MEMORY_MS`] (both shorter while the series is younger than
    /// them, so a new series learns fast), the deviation an [`Ewma`] of the
    /// residual's magnitude. Time constants in event time keep it
    /// independent of the sampling rate.
    fn learn_baseline(&self, b: &mut [f64], obs: &Observation, first_ts: f64) {
        let t = obs.ts_ms as f64;
        b[BASE_FAST] = Self::fast_level(b, obs.value, &obs.season);
        b[BASE_PREV] = obs.value - Self::season(b, &obs.season);
        if b[0] < 1.0 {
            b[0] = 1.0;
            b[1] = obs.value;
            b[2] = t;
            return;
        }
        let (base, dev) = Self::baseline(b, &obs.season);
        let e = obs.value - base;
        let e_clip = if b[0] >= 10.0 {
            e.clamp(-BASE_CLIP * dev, BASE_CLIP * dev)
        } else {
            e
        };
        self.moments_kind
            .observe(&mut b[BASE_MOMENTS..BASE_MOMENTS + 3], e_clip.abs());
        // Lag-1 autocorrelation of the clipped residual.
        let alpha = 1.0 / b[BASE_MOMENTS].max(1.0);
        let au = &mut b[BASE_AUTO..BASE_AUTO + 3];
        au[1] += alpha * (e_clip * au[0] - au[1]);
        au[2] += alpha * (e_clip * e_clip - au[2]);
        au[0] = e_clip;
        b[0] += 1.0;
        let dt = (t - b[2]).max(0.0);
        b[2] = b[2].max(t);
        let age = (t - first_ts).max(dt).max(1.0);
        let rate = |tau: f64| {
            if dt <= 0.0 {
                0.0
            } else {
                -(-dt / tau.min(age)).exp_m1()
            }
        };
        // At least a little per event, so that a series whose clock stands
        // still still follows its level.
        b[1] += rate(self.level_memory_ms).max(1.0 / b[0].min(1e4)) * e_clip;
        // Gradient of ½e² on each coefficient, normalised by E[x²] = ½.
        let a_s = 2.0 * rate(SEASON_MEMORY_MS) * e_clip;
        for (w, x) in b[BASE_SEASON..BASE_SEASON + 6].iter_mut().zip(obs.season) {
            *w += a_s * x;
        }
    }

    /// Learns the event that `scored` scored.
    #[inline]
    pub fn observe(&self, state: &mut ThresholdState, obs: &Observation, scored: &Scored) {
        let l = self.layout;
        let s = &mut state.slab;
        let warm = scored.warm;
        let first_ts = if s[0] < 1.0 { obs.ts_ms as f64 } else { s[1] };
        // The echo holds what the anomaly will mean once learned: a spike
        // that repeats an earlier one's size holds the record's bound, not
        // the body's (which would hide the next larger spike for hundreds
        // of events).
        // (Only an event at the alert's surprise moves the peak, so only
        // such an event pays for the hypothetical record.)
        let anomalous = warm && scored.surprise >= self.alert_surprise;
        let held = match (anomalous, scored.reason) {
            (false, _) => None,
            (true, Reason::Forecast) => Some(
                scored
                    .surprise
                    .min(self.learned_surprise(s, l.forecast, obs.residual) - MARGINS[0]),
            ),
            (true, _) => Some(scored.surprise),
        };
        // An echo (as surprising as an anomaly, but within the anomaly in
        // progress: the forecast's return after a spike) is not an
        // excursion of the series' own.
        let echoed = anomalous && scored.surprise - s[ECHO] < self.alert_surprise;
        let a = self.learn_channel(s, l.forecast, obs.residual, !echoed);
        self.echo(&mut s[ECHO], scored.surprise, held);
        if l.moments != l.forecast {
            self.moments_kind
                .observe(&mut s[l.moments..l.moments + MOMENTS_LEN], a);
        }
        if let Some(b) = l.base {
            let (_, dev) = Self::baseline(&s[b..b + BASE_LEN], &obs.season);
            // The baseline's own deviation needs a few events before
            // distances in it mean anything.
            let ready = s[b] >= BASE_READY;
            if let (Some(at), true) = (l.level, ready) {
                let x = Self::level_distance(&s[b..b + BASE_LEN], obs, dev);
                self.learn_channel(s, at, x, true);
            }
            if let (Some(at), true) = (l.drift, ready) {
                let d = &mut s[at..at + DRIFT_LEN];
                let cap = Self::drift_limit(d, CUSUM_CAP_SURPRISE);
                d[0] = scored.cusum.0.min(cap);
                d[1] = scored.cusum.1.min(cap);
                let c = d[0].max(d[1]);
                Record::learn(&mut d[2..], c, c > 0.0, self.top_decay, self.keep);
            }
            self.learn_baseline(&mut s[b..b + BASE_LEN], obs, first_ts);
            // A change the level or drift channel has reported for
            // ACCEPT_EVENTS events in a row is the new normal: the offset
            // moves to where the series now sits and the CUSUM restarts (as
            // a CUSUM does after it signals), instead of the channels
            // reporting it until the offset's slow memory catches up.
            let slow_alert =
                (scored.raw[1] - MARGINS[1]).max(scored.raw[2] - MARGINS[2]) >= self.alert_surprise;
            let bb = &mut s[b..b + BASE_LEN];
            bb[BASE_ALERTING] = if warm && slow_alert {
                bb[BASE_ALERTING] + 1.0
            } else {
                0.0
            };
            if bb[BASE_ALERTING] >= ACCEPT_EVENTS {
                bb[BASE_ALERTING] = 0.0;
                bb[1] = bb[BASE_FAST];
                if let Some(at) = l.drift {
                    s[at] = 0.0;
                    s[at + 1] = 0.0;
                }
            }
        }
        if let Some(at) = l.stuck {
            let n = s[0];
            let st = &mut s[at..at + STUCK_LEN];
            // A run that has become surprising does not teach how often the
            // series repeats: a frozen exporter is not its new normal until
            // its run ends and joins the record.
            if n >= 1.0 && Self::stuck_surprise(st, scored.run) <= LEARN_CLIP_SURPRISE {
                let (from, hit) = if st[1] >= 1.0 { (4, 5) } else { (2, 3) };
                for c in &mut st[2..6] {
                    *c *= self.keep;
                }
                st[from] += 1.0;
                if scored.run >= 1.0 {
                    st[hit] += 1.0;
                }
            }
            let prev_run = st[1];
            st[0] = obs.value;
            st[1] = scored.run;
            let r = &mut st[6..6 + RECORD_LEN];
            if scored.run >= 1.0 {
                r[3] = r[3].max(scored.run);
            }
            Record::learn(r, prev_run, scored.run >= 1.0, self.top_decay, self.keep);
        }
        if s[0] < 1.0 {
            s[1] = obs.ts_ms as f64;
        }
        s[0] = (s[0] + 1.0).min(self.horizon);
        if warm {
            s[2] = 1.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;

    /// Deterministic noise in [0, 1).
    fn noise(i: usize) -> f64 {
        ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f64 / (1u64 << 24) as f64
    }

    fn obs(residual: f64, value: f64, i: usize) -> Observation {
        Observation::new(residual, value, i as i64 * MINUTE)
    }

    fn build(kind: ThresholdKind) -> Thresholds {
        ThresholdConfig {
            kind,
            warmup_secs: 0,
            ..ThresholdConfig::default()
        }
        .build(DEFAULT_ALERT_THRESHOLD)
    }

    /// A threshold that has learned `n` events of `f(i) -> (residual, value)`.
    fn trained(
        kind: ThresholdKind,
        n: usize,
        f: impl Fn(usize) -> (f64, f64),
    ) -> (Thresholds, ThresholdState) {
        let t = build(kind);
        let mut st = t.new_state();
        feed(&t, &mut st, 0, n, f);
        (t, st)
    }

    /// Scores and learns `n` events of `f(i) -> (residual, value)` from
    /// index `from`; returns the index after them.
    fn feed(
        t: &Thresholds,
        st: &mut ThresholdState,
        from: usize,
        n: usize,
        f: impl Fn(usize) -> (f64, f64),
    ) -> usize {
        for i in from..from + n {
            let (r, v) = f(i);
            learn(t, st, obs(r, v, i));
        }
        from + n
    }

    /// Scores `o`, learns it, and returns its score.
    fn learn(t: &Thresholds, st: &mut ThresholdState, o: Observation) -> Scored {
        let s = t.score(st, &o);
        t.observe(st, &o, &s);
        s
    }

    /// Residuals uniform in (-1, 1), values around 10.
    fn calm(i: usize) -> (f64, f64) {
        (2.0 * noise(i) - 1.0, 10.0 + noise(i + 7))
    }

    const KINDS: [ThresholdKind; 3] = [
        ThresholdKind::Ewma,
        ThresholdKind::Quantile,
        ThresholdKind::Spot,
    ];

    #[test]
    fn score_map_is_in_range_monotone_and_invertible() {
        let mut last = -1.0;
        for k in 0..2000 {
            let l = k as f64 * 0.37;
            let s = score_from_surprise(l);
            assert!((0.0..1.0).contains(&s));
            assert!(s > last || (l == 0.0 && s == 0.0));
            last = s;
            assert!((surprise_from_score(s) - l).abs() < 1e-9 * l.max(1.0));
        }
        assert_eq!(score_from_surprise(f64::NAN), 0.0);
        assert_eq!(score_from_surprise(-3.0), 0.0);
        assert!(score_from_surprise(f64::INFINITY) < 1.0);
        assert_eq!(score_from_surprise(SURPRISE_AT_HALF), 0.5);
        assert_eq!(
            surprise_from_score(DEFAULT_ALERT_THRESHOLD),
            SURPRISE_AT_HALF
        );
        // Three times the alert's surprise is a clear 0.84.
        assert!(score_from_surprise(3.0 * SURPRISE_AT_HALF) > 0.83);
    }

    #[test]
    fn larger_residuals_score_higher_and_never_tie_at_one() {
        for kind in KINDS {
            let (t, st) = trained(kind, 3000, calm);
            let mut last = -1.0;
            for e in 0..14 {
                let r = 10f64.powi(e - 2);
                let s = t.score(&st, &obs(r, 10.5, 3000)).score;
                assert!(s < 1.0, "{kind:?}: {r} -> {s}");
                assert!(s >= last, "{kind:?}: {r} -> {s} < {last}");
                last = s;
            }
            let a = t.score(&st, &obs(50.0, 10.5, 3000)).score;
            let b = t.score(&st, &obs(500.0, 10.5, 3000)).score;
            assert!(b > a, "{kind:?}: {a} vs {b}");
            // Down as up: the body is symmetric.
            let down = t.score(&st, &obs(-50.0, 10.5, 3000)).score;
            assert!((down - a).abs() < 0.05, "{kind:?}: {down} vs {a}");
        }
    }

    #[test]
    fn band_edge_is_where_the_score_crosses_the_target() {
        let target = BandTarget::new(DEFAULT_ALERT_THRESHOLD);
        for kind in KINDS {
            let (t, st) = trained(kind, 3000, calm);
            let limits = t.band(&st, &target, &obs(0.0, 10.5, 3000));
            for (edge, sign) in [(limits.residual.1, 1.0), (limits.residual.0, -1.0)] {
                assert!(edge > 0.0 && edge.is_finite(), "{kind:?}: {limits:?}");
                let below = t.score(&st, &obs(sign * edge * 0.999, 10.5, 3000)).score;
                let above = t.score(&st, &obs(sign * edge * 1.001, 10.5, 3000)).score;
                assert!(below < DEFAULT_ALERT_THRESHOLD, "{kind:?}: {below}");
                assert!(above >= DEFAULT_ALERT_THRESHOLD, "{kind:?}: {above}");
            }
        }
    }

    #[test]
    fn recurring_large_excursions_become_normal_one_direction_at_a_time() {
        // Calm residuals, plus a drop of 30 every 100 events: a sawtooth's
        // reset, or a disk cleaned up.
        let (t, st) = trained(ThresholdKind::Ewma, 3000, |i| {
            let (r, v) = calm(i);
            (if i % 100 == 50 { -30.0 } else { r }, v)
        });
        let drop = t.score(&st, &obs(-30.0, 10.5, 3000));
        assert!(drop.score < 0.3, "a recurring drop: {drop:?}");
        // A drop far beyond any seen still alerts.
        assert!(t.score(&st, &obs(-120.0, 10.5, 3000)).score >= 0.5);
        // The same size upwards was never seen: it alerts.
        let jump = t.score(&st, &obs(30.0, 10.5, 3000));
        assert!(jump.score >= 0.8, "{jump:?}");
        // On calm data alone the body decides: a single record changes
        // nothing a Gaussian would not expect.
        let (t, st) = trained(ThresholdKind::Ewma, 3000, calm);
        let body = t.kind_surprise(t.kind_state(&st.slab, t.layout.forecast), 5.0);
        let score = t.score(&st, &obs(5.0, 10.5, 3000));
        assert!((score.surprise - body).abs() < 1e-9, "{score:?} vs {body}");
    }

    #[test]
    fn one_anomaly_is_learned_clipped_and_does_not_hide_the_next() {
        let (t, mut st) = trained(ThresholdKind::Ewma, 3000, calm);
        let first = t.score(&st, &obs(40.0, 10.5, 3000));
        assert!(first.onset >= 0.5, "{first:?}");
        t.observe(&mut st, &obs(40.0, 10.5, 3000), &first);
        for i in 3001..3500 {
            let (r, v) = calm(i);
            let o = obs(r, v, i);
            let s = t.score(&st, &o);
            t.observe(&mut st, &o, &s);
        }
        let second = t.score(&st, &obs(40.0, 10.5, 3500));
        assert!(second.onset >= 0.5, "{second:?}");
    }

    #[test]
    fn a_spike_twice_the_last_two_is_an_onset_soon_after_them() {
        // Spikes of 20, 40, 80 and 160, 40 events apart: each is larger
        // than anything before, so each is a new onset, although the echo
        // of the one before has not faded (τ = 50 events).
        let (t, mut st) = trained(ThresholdKind::Ewma, 3000, calm);
        let mut i = 3000;
        for (k, size) in [20.0, 40.0, 80.0, 160.0].into_iter().enumerate() {
            i = feed(&t, &mut st, i, 40, calm);
            let s = learn(&t, &mut st, obs(size, 10.5, i));
            assert!(s.onset >= 0.5, "spike {k} of {size}: {s:?}");
            i += 1;
        }
        // A fifth spike the size of the last one is what the series has
        // learned to expect by now: its score stays below the alert's.
        i = feed(&t, &mut st, i, 40, calm);
        let again = t.score(&st, &obs(160.0, 10.5, i));
        assert!(again.onset < 0.5, "{again:?}");
    }

    #[test]
    fn a_slow_wander_is_no_drift_before_its_excursions_are_known() {
        // A level that wanders over three days (a random walk, a filling
        // disk), calm otherwise: on its second day the CUSUM has made only
        // a few long excursions, and the drift channel does not call the
        // next one a drift.
        let t = build(ThresholdKind::Ewma);
        let mut st = t.new_state();
        let mut drift_alerts = 0;
        for i in 0..2 * 1440 {
            let (r, v) = calm(i);
            let wander = 3.0 * (i as f64 * std::f64::consts::TAU / (3.0 * 1440.0)).sin();
            let s = learn(&t, &mut st, obs(r, 10.0 + wander + 1e-3 * (v - 10.0), i));
            if s.raw[2] - SLOW_MARGIN >= t.alert_surprise {
                drift_alerts += 1;
            }
        }
        let d = &st.slab[t.layout.drift.unwrap()..];
        assert!(d[2] < DRIFT_MIN_EXCURSIONS, "excursions: {}", d[2]);
        assert_eq!(drift_alerts, 0);
    }

    #[test]
    fn a_spikes_echo_does_not_teach_the_other_direction() {
        // Two spikes of +40, each followed by its echo of -38 (the forecast
        // still expecting the spike): the echoes are no dips of the
        // series' own, so a real dip of that size still alerts.
        let (t, mut st) = trained(ThresholdKind::Ewma, 3000, calm);
        let mut i = 3000;
        for _ in 0..2 {
            for x in [40.0, -38.0] {
                learn(&t, &mut st, obs(x, 10.5, i));
                i += 1;
            }
            i = feed(&t, &mut st, i, 300, calm);
        }
        let dip = t.score(&st, &obs(-38.0, 10.5, i));
        assert!(dip.onset >= 0.5, "{dip:?}");
    }

    #[test]
    fn an_echo_keeps_its_score_but_is_no_new_onset() {
        let (t, mut st) = trained(ThresholdKind::Ewma, 3000, calm);
        let spike = t.score(&st, &obs(40.0, 10.5, 3000));
        t.observe(&mut st, &obs(40.0, 10.5, 3000), &spike);
        let echo = t.score(&st, &obs(-38.0, 10.5, 3001));
        assert!(echo.score >= 0.5, "{echo:?}");
        assert!(echo.onset < 0.5, "{echo:?}");
    }

    #[test]
    fn a_frozen_value_grows_more_surprising_but_an_idle_zero_does_not() {
        let t = build(ThresholdKind::Ewma);
        let mut st = t.new_state();
        for i in 0..2000 {
            let (r, v) = calm(i);
            let o = obs(r, v, i);
            let s = t.score(&st, &o);
            t.observe(&mut st, &o, &s);
        }
        let mut last = 0.0;
        let mut fired = None;
        // Frozen at an ordinary value: only the repeats are unusual.
        for k in 0..40 {
            let o = obs(0.0, 10.5, 2000 + k);
            let s = t.score(&st, &o);
            assert!(s.raw[3] >= last, "{k}: {s:?}");
            last = s.raw[3];
            if s.onset >= 0.5 && fired.is_none() {
                fired = Some((k, s.reason));
            }
            t.observe(&mut st, &o, &s);
        }
        let (k, reason) = fired.expect("stuck fires");
        assert!(k <= 10, "after {k} repeats");
        assert_eq!(reason, Reason::Stuck);
        // A counter that idles at zero is not stuck.
        let (t, st) = trained(ThresholdKind::Ewma, 2000, |i| {
            (
                2.0 * noise(i) - 1.0,
                if i % 3 == 0 { 0.0 } else { noise(i) * 4.0 },
            )
        });
        let mut st = st;
        for k in 0..200 {
            let o = obs(0.0, 0.0, 2000 + k);
            let s = t.score(&st, &o);
            assert_eq!(s.raw[3], 0.0);
            t.observe(&mut st, &o, &s);
        }
    }

    #[test]
    fn the_series_is_cold_until_trusted_and_a_restored_state_is_warm() {
        let t = ThresholdConfig {
            warmup_events: 50,
            warmup_secs: 3600,
            ..ThresholdConfig::default()
        }
        .build(DEFAULT_ALERT_THRESHOLD);
        let mut st = t.new_state();
        let mut first_warm = None;
        for i in 0..200 {
            let (r, v) = calm(i);
            let o = obs(r, v, i);
            let s = t.score(&st, &o);
            if s.warm && first_warm.is_none() {
                first_warm = Some(i);
            }
            assert!(s.warm || s.score == 0.0);
            t.observe(&mut st, &o, &s);
        }
        assert_eq!(first_warm, Some(60), "an hour of minutes");
        let restored: ThresholdState =
            postcard::from_bytes(&postcard::to_allocvec(&st).unwrap()).unwrap();
        assert!(t.score(&restored, &obs(0.0, 10.0, 200)).warm);
    }

    #[test]
    fn layouts_follow_the_channels() {
        let all = ThresholdConfig::default().build(0.5);
        let none = ThresholdConfig {
            level_channel: false,
            drift_channel: false,
            stuck_channel: false,
            ..ThresholdConfig::default()
        }
        .build(0.5);
        assert!(none.layout.len < all.layout.len);
        assert!(!none.owns(&all.new_state()));
        assert!(all.owns(&all.new_state()));
    }
}

/// Property tests: for any kind and settings and any observations the
/// detector can hand over, the state stays finite, scores keep the contract
/// and the band limits are numbers.
#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;
    use crate::model::proptests::value;

    fn config() -> impl Strategy<Value = ThresholdConfig> {
        (
            prop::sample::select(
                &[
                    ThresholdKind::Ewma,
                    ThresholdKind::Quantile,
                    ThresholdKind::Spot,
                ][..],
            ),
            prop::sample::select(&[10u32, 20, 5000][..]),
            prop::sample::select(&[0.98, 0.5 + 1e-9, 1.0 - 1e-9][..]),
            prop::sample::select(&[60u64, 259_200][..]),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                |(kind, horizon_events, quantile, level_memory_secs, level, drift, stuck)| {
                    ThresholdConfig {
                        kind,
                        warmup_events: 1,
                        warmup_secs: 0,
                        horizon_events,
                        level_memory_secs,
                        quantile,
                        level_channel: level,
                        drift_channel: drift,
                        stuck_channel: stuck,
                        ..ThresholdConfig::default()
                    }
                },
            )
    }

    /// A residual as the detector caps it, with repeats, zeros and the cap.
    fn residual() -> impl Strategy<Value = f64> {
        prop_oneof![
            4 => -5.0..5.0f64,
            1 => -1e12..1e12f64,
            1 => prop::sample::select(&[0.0, 1e-300, -5e-324, 1e12, -1e12][..]),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 512,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x7E5E_01D5),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn state_stays_finite_and_scores_keep_the_contract(
            config in config(),
            target in 0.01..0.99f64,
            events in prop::collection::vec((residual(), value(), 0i64..120_000), 0..300),
        ) {
            let t = config.build(0.5);
            let target = BandTarget::new(target);
            let mut st = t.new_state();
            let mut ts = 1_767_225_600_000i64;
            for (residual, value, step) in events {
                ts += step;
                let obs = Observation::new(residual, value, ts);
                let s = t.score(&st, &obs);
                prop_assert!((0.0..1.0).contains(&s.score), "{obs:?}: {s:?}");
                prop_assert!(s.onset <= s.score, "{s:?}");
                prop_assert!(s.surprise.is_finite() && s.surprise >= 0.0, "{s:?}");
                let b = t.band(&st, &target, &obs);
                prop_assert!(b.residual.0 >= 0.0 && b.residual.1 >= 0.0, "{b:?}");
                prop_assert!(!b.level.0.is_nan() && !b.level.1.is_nan(), "{b:?}");
                t.observe(&mut st, &obs, &s);
                prop_assert!(st.is_finite(), "after {obs:?}: {st:?}");
            }
        }
    }
}
