//! Adaptive thresholds on the model's output, and the score contract.
//!
//! This module owns how one forecast becomes an anomaly score, why, and when
//! a series is trusted to be scored at all. It does not forecast
//! ([`crate::model`]) or decide alerts (the alert lifecycle compares the
//! score with its threshold).
//!
//! # The score contract
//!
//! Every event gets a **surprise** `L ≥ 0` in nats (`L = -ln p`, `p` the
//! probability of something at least as unusual), and
//!
//! ```text
//! score = L / (L + SURPRISE_AT_HALF)        (SURPRISE_AT_HALF = 10 nats)
//! ```
//!
//! - `score` is in `[0, 1)`, 0 while the series warms up;
//! - it is monotone in how improbable the event is over the whole range: no
//!   stage caps it, so a 30σ spike scores above a 10σ one, which scores
//!   above a 4σ one (on a Gaussian series: 3σ ≈ 0.31, 4.5σ ≈ 0.5, 10σ ≈
//!   0.83, 30σ ≈ 0.98);
//! - scores of different series are comparable: each is judged against its
//!   own learned distributions;
//! - it never reaches 1.0 (`L` is capped at [`MAX_SURPRISE`]).
//!
//! [`DEFAULT_ALERT_THRESHOLD`] = 0.5 is `L` = 10 nats, an event that a
//! series' normal behaviour produces about once in 22,000 events.
//!
//! # Channels
//!
//! Four channels each turn the event into a magnitude, learn its normal
//! distribution per series, and give a surprise; `L` is the largest, and the
//! channel that gave it is the event's [`Reason`]:
//!
//! - **forecast**: `|value - expected|` in the series' typical steps;
//! - **level**: `|value - long-run mean|` in deviations of the level, so a
//!   value can be unusual for the series even when the forecast followed it;
//! - **drift**: a two-sided CUSUM of the standardised forecast residual
//!   (Page 1954, reference value ½σ: the log-likelihood ratio of a 1σ
//!   shift, in nats), for small errors that keep the same sign (a drift, a
//!   seasonality that stopped) which no single event shows;
//! - **stuck**: how many times in a row the value repeated exactly, against
//!   a two-state Markov estimate of how often this series repeats (a frozen
//!   exporter, a flatline).
//!
//! # How a channel's surprise is computed
//!
//! A threshold *kind* ([`ewma`] by default, [`quantile`] or [`spot`]) learns
//! the *body* of the magnitude's distribution and gives its surprise. On top
//! sits the **record bound** ([`Record`]): a magnitude no larger than the
//! largest this series produced recently (`top`) is capped at `ln(n + 1)`
//! after `n` events, the surprise of a new record among `n + 1` exchangeable
//! events, so a heavy-tailed series does not alert on what it does every so
//! often; beyond `top` the surprise grows again, as a Gaussian tail whose
//! deviation is `top / 4`. For a Gaussian series the bound hardly binds (its
//! `top` sits near 4σ), for a spiky one it is what calibrates the tail.
//!
//! Channels learn each event after scoring it, with the magnitude clipped at
//! the one whose surprise is [`LEARN_CLIP_SURPRISE`]: an anomaly moves the
//! statistics no more than an event just past the alert threshold, a lasting
//! change is learned over a few events.
//!
//! # Warm-up
//!
//! A new series is silent (score 0) until it is trusted: at least
//! `warmup_events` events, and the forecast residual's deviation known to
//! within [`WARM_RELATIVE_ERROR`] (its standard error, from the spread of
//! the residuals seen; heavy-tailed series take longer). The level and drift
//! channels need to have seen a whole day of event time as well: before
//! that, a daily cycle's first afternoon looks like a level shift. Warmth is
//! part of the state, so a restored series is warm at once; a new, evicted
//! or relearned one warms up again.
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

/// Cap on surprise: a residual can never make the score reach 1.0.
pub const MAX_SURPRISE: f64 = 1e6;

/// The score at which to alert by default: [`SURPRISE_AT_HALF`] nats.
pub const DEFAULT_ALERT_THRESHOLD: f64 = 0.5;

/// A channel learns a magnitude of at most the one with this surprise.
pub const LEARN_CLIP_SURPRISE: f64 = 12.0;

/// The forecast residual's deviation must be known to within this relative
/// standard error before a series is scored.
pub const WARM_RELATIVE_ERROR: f64 = 0.1;

/// Event time the level and drift channels need to have seen (one day).
pub const SLOW_WARMUP_MS: f64 = 86_400_000.0;

/// Where the record bound puts the largest magnitude seen, in deviations of
/// the Gaussian tail it extrapolates with.
const RECORD_AT_SIGMAS: f64 = 4.0;

/// The CUSUM's reference value, in deviations of the residual: the
/// increment `z - K` is the log-likelihood ratio, in nats, of a mean shift
/// of `2K` deviations.
const CUSUM_K: f64 = 0.5;

/// Largest standardised residual one event adds to the CUSUM: one outlier
/// is the forecast channel's to judge, not evidence of drift.
const CUSUM_CLIP: f64 = 3.0;



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

/// Which channel gave an event its surprise (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The value is far from the forecast.
    #[default]
    Forecast,
    /// The value is far from the series' long-run level.
    Level,
    /// Forecast errors keep the same sign: a drift or a broken season.
    Drift,
    /// The value has repeated exactly for unusually long.
    Stuck,
}

impl Reason {
    /// Every reason, for metrics.
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
    /// Fewest events before a series is scored (it also waits until its
    /// residual's deviation is known to 10 %). At least 1.
    pub warmup_events: u32,
    /// Events over which the channels' statistics are averaged (after that
    /// many, old events fade at rate 1/`horizon_events`), and over which the
    /// largest recent magnitude halves. At least 2.
    pub horizon_events: u32,
    /// `quantile`: the tracked quantile; `spot`: the level of the initial
    /// threshold. Between 0.5 and 1, exclusive.
    pub quantile: f64,
    /// Score how far the value is from the series' long-run mean.
    pub level_channel: bool,
    /// Score runs of same-signed forecast errors (CUSUM): drifts and broken
    /// seasons.
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
            horizon_events: 5000,
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
            self.horizon_events >= 2,
            key("horizon_events"),
            "must be at least 2 (5000 is the default)",
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
                "the anomaly-likelihood stage was removed; the drift channel scores sustained errors",
            ),
            (
                "inflation_events",
                self.inflation_events,
                "inflation after anomalies was removed; channels now learn anomalies clipped",
            ),
            (
                "range_novelty",
                self.range_novelty,
                "range novelty was removed; the level channel's record bound covers new ranges",
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
        let horizon = f64::from(self.horizon_events.max(2));
        let knobs = Knobs {
            learn_clip: knob("LEARN_CLIP", LEARN_CLIP_SURPRISE),
            record_sigmas: knob("RECORD_SIGMAS", RECORD_AT_SIGMAS),
            cusum_k: knob("CUSUM_K", 0.75),
            cusum_clip: knob("CUSUM_CLIP", CUSUM_CLIP),
            warm_rel: knob("WARM_REL", WARM_RELATIVE_ERROR),
            slow_warmup_ms: knob("SLOW_WARMUP_MS", SLOW_WARMUP_MS),
            body_horizon: knob("BODY_HORIZON", 1000.0),
            level_tau_ms: knob("LEVEL_TAU_H", 72.0) * 3_600_000.0,
            season_tau_ms: knob("SEASON_TAU_D", 3.0) * 86_400_000.0,
            top_halflife: knob("TOP_HALFLIFE", 5000.0),
            echo_events: knob("ECHO_EVENTS", 50.0),
            evidence_floor: knob("EVIDENCE_FLOOR", 0.5),
            heavy_alpha: knob("HEAVY_ALPHA", 0.0),
            weekday: knob("WEEKDAY", 0.0),
            level_events: knob("LEVEL_EVENTS", 10.0),
            dev_clip: knob("DEV_CLIP", 5.0),
            cal_w0: knob("CAL_W0", 0.0),
            cal_horizon: knob("CAL_HORIZON", 20000.0),
            echo_slow: knob("ECHO_SLOW", 1.0),
            cusum_cap: knob("CUSUM_CAP", 40.0),
            rec_cold: knob("REC_COLD", 1.0),
            drift_k: knob("DRIFT_K", 2.0),
            warm_excursions: knob("WARM_EXC", 0.0),
            record_growth: knob("RECORD_GROWTH", 1e9),
            fast_warmup_ms: knob("FAST_WARMUP_MS", 86_400_000.0),
            level_min: knob("LEVEL_MIN", 1.0),
            seen_once: knob("SEEN_ONCE", 0.0),
            echo_forget: knob("ECHO_FORGET", 1e9),
            shift: [
                0.0,
                knob("LEVEL_SHIFT", 0.0),
                knob("SLOW_SHIFT", 3.0),
                knob("SLOW_SHIFT", 3.0),
            ],
        };
        let body = knobs.body_horizon.max(2.0);
        let q = self.quantile.clamp(0.5 + 1e-9, 1.0 - 1e-9);
        let kind = match self.kind {
            ThresholdKind::Ewma => Kind::Ewma(Ewma::new(body)),
            ThresholdKind::Quantile => Kind::Quantile(Quantile { q }),
            ThresholdKind::Spot => Kind::Spot(Spot::new(q, body)),
        };
        let kind_len = with_kind!(&kind, t => t.state_len());
        let channel_len = 1 + kind_len + 2 * RECORD_LEN;
        let mut at = HEADER_LEN;
        let mut take = |len: usize| {
            at += len;
            at - len
        };
        let forecast = take(channel_len);
        let moments = if matches!(kind, Kind::Ewma(_)) {
            forecast + 1
        } else {
            take(MOMENTS_LEN)
        };
        let base = (self.level_channel || self.drift_channel).then(|| take(BASE_LEN));
        let level = self.level_channel.then(|| take(channel_len));
        let drift = self.drift_channel.then(|| take(DRIFT_LEN));
        let stuck = self.stuck_channel.then(|| take(STUCK_LEN));
        let ages = take(4);
        let cal = take(CAL_LEN);
        let len = at;
        Thresholds {
            knobs,
            kind,
            moments_kind: Ewma::new(body),
            base_kind: Ewma::new(knob("DEV_HORIZON", 1000.0).max(2.0)),
            kind_len,
            horizon,
            top_decay: 0.5f64.powf(1.0 / knobs.top_halflife.max(1.0)),
            echo_decay: (-1.0 / knobs.echo_events.max(1e-9)).exp(),
            keep: 1.0 - 1.0 / horizon,
            warmup_events: f64::from(self.warmup_events.max(1)),
            alert_surprise: surprise_from_score(alert_threshold),
            layout: Layout {
                forecast,
                moments,
                base,
                level,
                drift,
                stuck,
                ages,
                cal,
                len,
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
/// warm (0 or 1)]`.
const HEADER_LEN: usize = 3;
/// The forecast residual's moments (an [`Ewma`] state).
const MOMENTS_LEN: usize = 3;
/// Surprise levels at which each channel's calibration counts exceedances.
const CAL_LEVELS: [f64; 4] = [6.0, 10.0, 16.0, 26.0];
/// Calibration: `[events (EW), then per channel the EW count of events
/// whose surprise reached each level]`.
const CAL_LEN: usize = 1 + 4 * CAL_LEVELS.len();

/// The calibration of one channel (see [`Thresholds::calibrate`]): `ln P`
/// of reaching each level, from the counts with the prior that the channel
/// is calibrated (`P = e^-l`) worth `w0` events.
#[inline]
fn cal_table(n: f64, counts: &[f64], w0: f64) -> [f64; 4] {
    let mut out = [0.0; 4];
    let mut last = 0.0f64;
    for (j, l) in CAL_LEVELS.iter().enumerate() {
        let p = (counts[j] + w0 * (-l).exp()) / (n + w0);
        // Never above the level itself (no evidence makes an event more
        // surprising than its channel says), never increasing.
        last = p.ln().max(-l).min(last);
        out[j] = last;
    }
    out
}

/// Calibrated surprise of channel surprise `e` (piecewise linear in `ln P`
/// between the levels, slope -1 beyond the last).
#[inline]
fn cal_apply(t: &[f64; 4], e: f64) -> f64 {
    if e <= 0.0 {
        return 0.0;
    }
    let (mut l0, mut p0) = (0.0, 0.0);
    for (j, &l1) in CAL_LEVELS.iter().enumerate() {
        let p1 = t[j];
        if e <= l1 {
            return -(p0 + (p1 - p0) * (e - l0) / (l1 - l0));
        }
        (l0, p0) = (l1, p1);
    }
    -(p0 - (e - l0))
}

/// The channel surprise whose calibrated surprise is `c` (inverse of
/// [`cal_apply`]; the smallest such where it is flat).
#[inline]
fn cal_invert(t: &[f64; 4], c: f64) -> f64 {
    if c <= 0.0 {
        return 0.0;
    }
    let (mut l0, mut p0) = (0.0, 0.0);
    for (j, &l1) in CAL_LEVELS.iter().enumerate() {
        let p1 = t[j];
        if c <= -p1 {
            let slope = p0 - p1;
            return if slope > 0.0 {
                l0 + (c + p0) / slope * (l1 - l0)
            } else {
                l0
            };
        }
        (l0, p0) = (l1, p1);
    }
    l0 + (c + p0)
}
/// The level baseline: `[count, offset, last event time, 6 daily
/// coefficients (harmonics 1 to 3, cos and sin), 7 weekday amplitudes (the
/// daily shape is scaled per day of the week: weekends are often quieter),
/// an Ewma state of the deseasonalised residual's magnitude, then the
/// residual's lag-1 statistics]`.
const BASE_LEN: usize = 3 + 6 + 7 + 3 + 3 + 1 + 1;
/// Where the previous deseasonalised value is.
const BASE_PREV: usize = 23;
/// Where the fast level (an EW mean of the deseasonalised value over
/// `LEVEL_EVENTS` events) is.
const BASE_FAST: usize = 22;
/// Events the baseline learns before the level and drift channels learn
/// distances in its deviation.
const BASE_READY: f64 = 20.0;
/// Where the weekday amplitudes start (each 1 + the stored value).
const BASE_WEEKDAY: usize = 9;
/// Where the baseline's residual moments start in its block.
const BASE_MOMENTS: usize = 16;
/// Where its autocorrelation statistics start: `[last residual, EW mean of
/// e_t e_{t-1}, EW mean of e_t²]`.
const BASE_AUTO: usize = 19;
/// Weight (in transitions) of the prior that repeats are independent.
const STUCK_PRIOR: f64 = 20.0;
/// Drift: `[echo peak, S+, S-, record]`.
const DRIFT_LEN: usize = 3 + RECORD_LEN;
/// Stuck: `[echo peak, last value, run, changes, stays after a change,
/// stays, stays after a stay, record of completed runs]`, the counts
/// exponentially weighted.
const STUCK_LEN: usize = 7 + RECORD_LEN;

const DAY_MS: f64 = 86_400_000.0;
const WEEK_MS: f64 = 7.0 * DAY_MS;

/// The seasonal basis at `ts_ms` (daily harmonics 1 to 3, cos and sin)
/// and the day of the week (0 = Thursday, 1970-01-01).
#[inline]
fn season_basis(ts_ms: i64) -> ([f64; 6], usize) {
    use crate::model::features::sin_cos_turns;
    let t = ts_ms as f64;
    let (s1, c1) = sin_cos_turns(t.rem_euclid(DAY_MS) / DAY_MS);
    let (c2, s2) = (c1 * c1 - s1 * s1, 2.0 * s1 * c1);
    let (c3, s3) = (c1 * c2 - s1 * s2, s1 * c2 + c1 * s2);
    let day = (t.rem_euclid(WEEK_MS) / DAY_MS) as usize;
    ([c1, s1, c2, s2, c3, s3], day.min(6))
}

/// Where each channel lives in the slab. A kind-scored channel (forecast,
/// level) is `[echo peak, kind state, record]`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Layout {
    forecast: usize,
    moments: usize,
    base: Option<usize>,
    level: Option<usize>,
    drift: Option<usize>,
    stuck: Option<usize>,
    /// Events since each channel's echo peak was raised.
    ages: usize,
    cal: usize,
    len: usize,
}

/// The record bound (see the module docs), learned from the peaks of
/// *excursions* (maximal runs of events whose magnitude is above a floor),
/// not from single events, so that a channel whose magnitude moves slowly
/// (a level, a CUSUM, a run of repeats) cannot walk its record up one small
/// step at a time. State: `[excursions (EW count), largest peak, second
/// largest peak, peak of the current excursion]`.
///
/// A magnitude up to the second-largest recent peak `t2` is capped at
/// `ln((m + 1) / 2)` after `m` excursions (it happened at least twice: once
/// is an anomaly, twice a pattern); beyond `t2` the bound grows as a
/// Gaussian tail with deviation `t2 / RECORD_AT_SIGMAS`, at least `scale`.
#[derive(Debug, Clone, Copy)]
struct Record {
    /// `ln((m + 1) / 2)`: the surprise of a magnitude seen twice in `m`
    /// excursions.
    cap: f64,
    /// Second-largest recent peak (0: no bound).
    top: f64,
    /// Shape of the tail beyond it: 2 Gaussian, 1 exponential.
    k: f64,
    /// The largest recent peak, when magnitudes seen once are capped too
    /// (0: not used).
    once: f64,
    /// `ln(m + 1)`: the surprise of a magnitude seen once in `m`.
    cap_once: f64,
}

/// Length of a [`Record`]'s state.
const RECORD_LEN: usize = 6;

/// Fewest excursions (`cap ≥ 1`) before a record bounds anything.
const RECORD_MIN_CAP: f64 = 0.3;

impl Record {
    /// The record in state `r`, for a channel whose body has deviation
    /// `scale` (the Gaussian it assumes); `k_fixed` forces the tail shape
    /// (0: from the data).
    #[inline]
    fn new(r: &[f64], scale: f64, k_fixed: f64) -> Self {
        let cap = (0.5 * (r[0] + 1.0)).ln();
        let (once, cap_once) = if knob_seen_once() > 0.0 && r[1] > 0.0 {
            (r[1], (r[0] + 1.0).ln())
        } else {
            (0.0, f64::INFINITY)
        };
        if cap < RECORD_MIN_CAP || r[2] <= 0.0 {
            return Self {
                cap: f64::INFINITY,
                top: 0.0,
                k: 2.0,
                once,
                cap_once,
            };
        }
        // `k_fixed` is the body's shape (2 Gaussian, 1 exponential). Where
        // t2 would sit if the magnitudes followed the body (the expected
        // second-largest of m), and how much heavier than that the tail is:
        // a tail like the body extrapolates with the body's shape, a heavier
        // one more gently.
        let kb = k_fixed;
        let e = (kb * cap).powf(1.0 / kb);
        let heavy = (r[2] / (scale.max(1e-300) * e)).max(1.0);
        let k = (kb * heavy.powf(-knob_k_min())).max(knob_k_floor().min(kb));
        Self {
            cap,
            top: r[2],
            k,
            once,
            cap_once,
        }
    }

    /// Surprise bound of magnitude `a`: `cap` up to the record, then a
    /// Weibull tail `cap (a / top)^k` (which for a Gaussian record is the
    /// Gaussian's own tail, `a² / 2σ²`).
    #[inline]
    fn surprise(&self, a: f64) -> f64 {
        let twice = if a <= self.top {
            self.cap
        } else {
            self.cap * (a / self.top).powf(self.k)
        };
        // Up to the largest recent peak, seen once in m excursions: at most
        // ln(m + 1).
        if self.once > 0.0 && a <= self.once {
            twice.min(self.cap_once)
        } else {
            twice
        }
    }

    /// Smallest magnitude whose bound reaches `l` (0 if all do).
    #[inline]
    fn magnitude_at(&self, l: f64) -> f64 {
        let twice = if l <= self.cap {
            0.0
        } else if self.top <= 0.0 {
            f64::INFINITY
        } else {
            self.top * (l / self.cap).powf(1.0 / self.k)
        };
        if self.once > 0.0 && l > self.cap_once {
            twice.max(self.once)
        } else {
            twice
        }
    }

    /// Learns magnitude `a`: an excursion goes on while `above`, and its
    /// peak joins the record when it ends. `decay` ages the peaks, `keep`
    /// the excursion count.
    #[inline]
    fn learn(r: &mut [f64], a: f64, above: bool, decay: f64, keep: f64, clip: f64) {
        let window = knob_window();
        if window > 0.0 {
            r[4] += 1.0;
            r[5] += 1.0;
            if r[4] > window {
                (r[1], r[4]) = (r[2], r[5]);
                (r[2], r[5]) = (0.0, 0.0);
            }
            if r[5] > window {
                (r[2], r[5]) = (0.0, 0.0);
            }
        } else {
            r[1] *= decay;
            r[2] *= decay;
        }
        if above {
            r[3] = r[3].max(a);
            return;
        }
        r[0] *= keep;
        if r[3] > 0.0 {
            let p = if clip > 0.0 && r[2] > 0.0 { r[3].min(clip) } else { r[3] };
            r[0] += 1.0;
            r[3] = 0.0;
            if p > r[1] {
                (r[2], r[5]) = (r[1], r[4]);
                (r[1], r[4]) = (p, 0.0);
            } else if p > r[2] {
                (r[2], r[5]) = (p, 0.0);
            }
        }
    }
}

/// Development knobs (temporary): the constants, overridable from the
/// environment for cross-validation runs.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Knobs {
    learn_clip: f64,
    record_sigmas: f64,
    cusum_k: f64,
    cusum_clip: f64,
    warm_rel: f64,
    slow_warmup_ms: f64,
    body_horizon: f64,
    level_tau_ms: f64,
    season_tau_ms: f64,
    top_halflife: f64,
    echo_events: f64,
    evidence_floor: f64,
    heavy_alpha: f64,
    weekday: f64,
    level_events: f64,
    dev_clip: f64,
    cal_w0: f64,
    cal_horizon: f64,
    echo_slow: f64,
    cusum_cap: f64,
    rec_cold: f64,
    drift_k: f64,
    warm_excursions: f64,
    shift: [f64; 4],
    record_growth: f64,
    fast_warmup_ms: f64,
    level_min: f64,
    seen_once: f64,
    echo_forget: f64,
}

fn knob_k_floor() -> f64 {
    static K: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *K.get_or_init(|| knob("K_FLOOR", 1.0))
}

fn knob_seen_once() -> f64 {
    static K: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *K.get_or_init(|| knob("SEEN_ONCE", 0.0))
}

fn knob_window() -> f64 {
    static K: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *K.get_or_init(|| knob("REC_WINDOW", 0.0))
}

fn knob_k_min() -> f64 {
    static K: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *K.get_or_init(|| knob("HEAVY_BETA", 0.25))
}

fn knob(name: &str, default: f64) -> f64 {
    std::env::var(format!("ANOMALYD_KNOB_{name}"))
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A configured threshold (shared by every series).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    knobs: Knobs,
    kind: Kind,
    /// Learns the forecast residual's moments when the kind does not.
    moments_kind: Ewma,
    /// Learns the deseasonalised residual's magnitude.
    base_kind: Ewma,
    kind_len: usize,
    horizon: f64,
    /// Per-event decay of the largest recent magnitudes.
    top_decay: f64,
    /// Per-event decay of the echo peaks.
    echo_decay: f64,
    /// Per-event weight kept by exponentially weighted counts.
    keep: f64,
    warmup_events: f64,
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
    /// Event time (season, and the day the slow channels wait for).
    pub ts_ms: i64,
}

/// Surprise per channel, before echo suppression: forecast, level, drift,
/// stuck.
type Raw = [f64; 4];

/// What a threshold says about one event, before it learns it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// The score in `[0, 1)` (the contract above); 0 while cold.
    pub score: f64,
    /// The score of what is new in this event: as `score`, but each
    /// channel's surprise beyond the anomaly it reported recently (see echo
    /// suppression), so an anomaly's echoes and plateau score low.
    pub onset: f64,
    /// The surprise behind `score`, in nats (computed while cold too).
    pub surprise: f64,
    /// The channel that gave the surprise.
    pub reason: Reason,
    /// Whether the series is trusted to be scored.
    pub warm: bool,
    /// Each channel's surprise before echo suppression.
    raw: Raw,
    /// Each channel's surprise after echo suppression, before calibration.
    echoed: Raw,
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
            k.init(&mut slab[l.forecast + 1..l.forecast + 1 + self.kind_len]);
            if let Some(at) = l.level {
                k.init(&mut slab[at + 1..at + 1 + self.kind_len]);
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
        &slab[at + 1..at + 1 + self.kind_len]
    }

    /// A kind-scored channel's typical magnitude (surprise ½ nat, 1σ for
    /// the Gaussian body): the floor of its excursions and of its tail.
    #[inline]
    fn scale(&self, slab: &[f64], at: usize) -> f64 {
        self.kind_magnitude(self.kind_state(slab, at), 0.5)
    }

    /// The record bound of a kind-scored channel at `at`.
    #[inline]
    fn record(&self, slab: &[f64], at: usize, up: bool) -> Record {
        let k = at + 1 + self.kind_len + if up { 0 } else { RECORD_LEN };
        Record::new(&slab[k..k + RECORD_LEN], self.scale(slab, at), 2.0)
    }

    /// Surprise of signed deviation `x` on the kind-scored channel at `at`:
    /// the body is symmetric, the records are kept per direction (a series
    /// whose drops are normal, like a sawtooth or a disk that is cleaned
    /// up, may still never jump up).
    #[inline]
    fn channel_surprise(&self, slab: &[f64], at: usize, x: f64) -> f64 {
        let a = x.abs().min(1e12);
        let body = self.kind_surprise(self.kind_state(slab, at), a);
        body.min(self.record(slab, at, x >= 0.0).surprise(a))
    }

    /// Largest magnitude, in direction `up`, on the channel at `at` whose
    /// surprise is below `l`.
    #[inline]
    fn channel_magnitude(&self, slab: &[f64], at: usize, l: f64, up: bool) -> f64 {
        let body = self.kind_magnitude(self.kind_state(slab, at), l);
        body.max(self.record(slab, at, up).magnitude_at(l))
    }

    /// Deviation of the forecast residual (typical steps).
    #[inline]
    fn residual_sigma(&self, slab: &[f64]) -> f64 {
        Ewma::sigma(&slab[self.layout.moments..self.layout.moments + MOMENTS_LEN])
    }

    /// How much independent evidence one deseasonalised residual carries:
    /// `√((1 - φ) / (1 + φ))` for its lag-1 autocorrelation `φ > 0` (the
    /// deviation of a sum of `n` such residuals is `√((1 + φ)/(1 - φ))`
    /// times that of `n` independent ones), 1 for `φ ≤ 0`.
    #[inline]
    fn evidence(&self, b: &[f64]) -> f64 {
        let a = &b[BASE_AUTO..BASE_AUTO + 3];
        if a[2] <= 0.0 {
            return 1.0;
        }
        let phi = (a[1] / a[2]).clamp(0.0, 0.999);
        ((1.0 - phi) / (1.0 + phi)).sqrt().max(self.knobs.evidence_floor)
    }

    /// The baseline block's value at `ts_ms` (offset plus season) and its
    /// residual deviation, in the series' units.
    #[inline]
    fn baseline(b: &[f64], ts_ms: i64) -> (f64, f64) {
        let season = Self::season(b, ts_ms);
        let m = &b[BASE_MOMENTS..BASE_MOMENTS + 3];
        let floor = (1e-9 * b[1].abs()).max(1e-300);
        (b[1] + season, (m[1] * ewma::SQRT_HALF_PI).max(floor))
    }

    /// The seasonal part of the baseline at `ts_ms`.
    #[inline]
    fn season(b: &[f64], ts_ms: i64) -> f64 {
        let (basis, day) = season_basis(ts_ms);
        let shape: f64 = basis.iter().zip(&b[3..9]).map(|(x, w)| x * w).sum();
        (1.0 + b[BASE_WEEKDAY + day]) * shape
    }

    /// The fast level after `value` at `ts_ms` (deseasonalised).
    #[inline]
    fn fast_level(&self, b: &[f64], value: f64, ts_ms: i64) -> f64 {
        let d = value - Self::season(b, ts_ms);
        if b[0] < 1.0 {
            return d;
        }
        let n = (b[0] + 1.0).min(self.knobs.level_events);
        b[BASE_FAST] + (d - b[BASE_FAST]) / n
    }

    /// The level channel's signed distance, in baseline deviations: the
    /// fast level's distance from the offset, but only as far as the
    /// current and the previous value are off the same way too, so one
    /// stray value (a jitter, a spike: the forecast channel's business)
    /// does not move it, while a level that has really moved does.
    #[inline]
    fn level_distance(&self, b: &[f64], obs: &Observation, dev: f64) -> f64 {
        let off = b[1];
        let f = self.fast_level(b, obs.value, obs.ts_ms) - off;
        if self.knobs.level_min <= 0.0 || b[0] < 2.0 {
            return f / dev;
        }
        let now = obs.value - Self::season(b, obs.ts_ms) - off;
        let prev = b[BASE_PREV] - off;
        if f.signum() != now.signum() || f.signum() != prev.signum() {
            return 0.0;
        }
        f.signum() * f.abs().min(now.abs()).min(prev.abs()) / dev
    }

    /// Whether the slow channels (level, drift) may speak at `ts_ms`.
    #[inline]
    fn slow_warm(&self, slab: &[f64], ts_ms: i64) -> bool {
        slab[2] > 0.0 && (ts_ms as f64 - slab[1]) >= self.knobs.slow_warmup_ms
    }

    /// Drift surprise of CUSUM value `c` (drift block `d`): the CUSUM's
    /// stationary tail is exponential with rate 1 (nats) for Gaussian
    /// residuals, capped by the record of its excursions.
    #[inline]
    fn drift_surprise(&self, d: &[f64], c: f64) -> f64 {
        c.min(Record::new(&d[3..3 + RECORD_LEN], 1.0, 1.0).surprise(c))
    }

    /// Largest CUSUM value with drift surprise below `l`.
    #[inline]
    fn drift_limit(&self, d: &[f64], l: f64) -> f64 {
        l.max(Record::new(&d[3..3 + RECORD_LEN], 1.0, 1.0).magnitude_at(l))
    }

    /// Stuck surprise of a run of `m` repeats (stuck block `st`).
    #[inline]
    fn stuck_surprise(&self, st: &[f64], m: f64) -> f64 {
        if m < 1.0 {
            return 0.0;
        }
        // P(repeat | the value changed last time) and P(repeat | it
        // repeated), with half a repeat of prior each.
        let p_start = (st[4] + 0.5) / (st[3] + 1.0);
        // Until many repeats have been followed, assume a repeat is
        // followed by another as often as a change is (independence): a
        // frozen value must not teach, in its first few events, that
        // repeats go on.
        let p_cont = (st[6] + STUCK_PRIOR * p_start) / (st[5] + STUCK_PRIOR);
        let per = -p_cont.ln();
        let geo = -p_start.ln() + (m - 1.0) * per;
        let r = Record::new(&st[7..7 + RECORD_LEN], 1.0, 1.0);
        if r.top > 0.0 {
            geo.min(r.cap + (m - r.top).max(0.0) * per)
        } else {
            geo
        }
    }

    /// Calibrated surprise of channel `i`'s (echo-suppressed) surprise `e`:
    /// a channel that, on this series, often says "rare" is discounted by
    /// how often it does. Counts of exceedances at a few surprise levels,
    /// with the prior that the channel is calibrated, give `P(surprise ≥ l)`;
    /// the calibrated surprise is `-ln` of it. On a series the channel
    /// describes well nothing changes; on a spiky, wandering or ill-fitted
    /// one the surprises shrink to what the series really does.
    #[inline]
    fn calibrate(&self, s: &[f64], i: usize, e: f64) -> f64 {
        if self.knobs.cal_w0 <= 0.0 {
            return e.max(0.0);
        }
        let c = &s[self.layout.cal..self.layout.cal + CAL_LEN];
        let k = CAL_LEVELS.len();
        cal_apply(&cal_table(c[0], &c[1 + i * k..1 + (i + 1) * k], self.knobs.cal_w0), e)
    }

    /// Inverse of [`Thresholds::calibrate`].
    #[inline]
    fn uncalibrate(&self, s: &[f64], i: usize, l: f64) -> f64 {
        if self.knobs.cal_w0 <= 0.0 {
            return l;
        }
        let c = &s[self.layout.cal..self.layout.cal + CAL_LEN];
        let k = CAL_LEVELS.len();
        cal_invert(&cal_table(c[0], &c[1 + i * k..1 + (i + 1) * k], self.knobs.cal_w0), l)
    }

    /// Whether a cold series is trusted from this event on.
    #[inline]
    fn becomes_warm(&self, s: &[f64], ts_ms: i64) -> bool {
        let m = &s[self.layout.moments..self.layout.moments + MOMENTS_LEN];
        let k = self.layout.forecast + 1 + self.kind_len;
        s[0] >= self.warmup_events
            && Ewma::relative_error(m) <= self.knobs.warm_rel
            && s[k] >= self.knobs.warm_excursions
            && (ts_ms as f64 - s[1]) >= self.knobs.fast_warmup_ms
    }

    /// Scores one event against the state, before the state learns it.
    #[inline]
    pub fn score(&self, state: &ThresholdState, obs: &Observation) -> Scored {
        let s = &state.slab;
        let l = &self.layout;
        let warm = s[2] > 0.0 || (s[0] >= 1.0 && self.becomes_warm(s, obs.ts_ms));
        let slow = self.slow_warm(s, obs.ts_ms);
        let mut raw = [0.0; 4];
        let mut peaks = [0.0; 4];
        raw[0] = self.channel_surprise(s, l.forecast, obs.residual);
        peaks[0] = s[l.forecast];
        let mut cusum = (0.0, 0.0);
        if let Some(b) = l.base {
            let (base, dev) = Self::baseline(&s[b..b + BASE_LEN], obs.ts_ms);
            let z = (obs.value - base) / dev;
            if let (Some(at), true) = (l.level, slow) {
                let zl = self.level_distance(&s[b..b + BASE_LEN], obs, dev);
                raw[1] = self.channel_surprise(s, at, zl);
                peaks[1] = s[at];
            }
            if let Some(at) = l.drift {
                let d = &s[at..at + DRIFT_LEN];
                let kn = &self.knobs;
                let w = self.evidence(&s[b..b + BASE_LEN]);
                let z = z.clamp(-kn.cusum_clip, kn.cusum_clip) * w;
                cusum = ((d[1] + z - kn.cusum_k).max(0.0), (d[2] - z - kn.cusum_k).max(0.0));
                if slow {
                    raw[2] = self.drift_surprise(d, cusum.0.max(cusum.1));
                    peaks[2] = d[0];
                }
            }
        }
        let mut run = 0.0;
        if let Some(at) = l.stuck {
            let st = &s[at..at + STUCK_LEN];
            // A zero that repeats is an idle counter or rate, not a frozen
            // exporter.
            run = if s[0] >= 1.0 && obs.value == st[1] && obs.value != 0.0 {
                st[2] + 1.0
            } else {
                0.0
            };
            raw[3] = self.stuck_surprise(st, run);
            peaks[3] = st[0];
        }
        let mut best = (0.0, Reason::Forecast);
        let mut onset = 0.0f64;
        for (i, reason) in Reason::ALL.into_iter().enumerate() {
            let x = self.calibrate(s, i, raw[i] - self.knobs.shift[i]);
            if x > best.0 {
                best = (x, reason);
            }
            onset = onset.max(self.calibrate(s, i, raw[i] - peaks[i] - self.knobs.shift[i]));
        }
        let surprise = best.0.clamp(0.0, MAX_SURPRISE);
        let onset = onset.clamp(0.0, MAX_SURPRISE);
        Scored {
            score: if warm {
                score_from_surprise(surprise)
            } else {
                0.0
            },
            onset: if warm { score_from_surprise(onset) } else { 0.0 },
            surprise,
            reason: best.1,
            warm,
            raw,
            echoed: std::array::from_fn(|i| raw[i] - peaks[i]),
            cusum,
            run,
        }
    }

    /// The limits on an event that would score below `target` (for the
    /// band): the inverse of [`Thresholds::score`] along each channel.
    #[inline]
    pub fn band(&self, state: &ThresholdState, target: &BandTarget, ts_ms: i64) -> BandLimits {
        let s = &state.slab;
        let l = &self.layout;
        let lt = target.surprise;
        let lf = self.uncalibrate(s, 0, lt);
        let residual = (
            self.channel_magnitude(s, l.forecast, lf, false).max(0.0),
            self.channel_magnitude(s, l.forecast, lf, true).max(0.0),
        );
        let mut level = (f64::NEG_INFINITY, f64::INFINITY);
        if let (Some(b), true) = (l.base, self.slow_warm(s, ts_ms)) {
            let (base, dev) = Self::baseline(&s[b..b + BASE_LEN], ts_ms);
            if let Some(at) = l.level {
                // |f' - offset| <= h with f' = f + (d - f)/n, d = x - season.
                let bb = &s[b..b + BASE_LEN];
                let ll = self.uncalibrate(s, 1, lt);
                let down = self.channel_magnitude(s, at, ll, false).max(0.0) * dev;
                let up = self.channel_magnitude(s, at, ll, true).max(0.0) * dev;
                let n = (bb[0] + 1.0).min(self.knobs.level_events).max(1.0);
                let f = bb[BASE_FAST];
                let center = Self::season(bb, ts_ms) + f + n * (bb[1] - f);
                level = (center - n * down, center + n * up);
            }
            if let Some(at) = l.drift {
                let d = &s[at..at + DRIFT_LEN];
                let kn = &self.knobs;
                let w = self.evidence(&s[b..b + BASE_LEN]);
                let c = self.drift_limit(d, self.uncalibrate(s, 2, lt));
                // The standardised residual that would take the CUSUM to c.
                let hi = (c + kn.cusum_k - d[1]) / w;
                let lo = -(c + kn.cusum_k - d[2]) / w;
                if hi < kn.cusum_clip {
                    level.1 = level.1.min(base + hi * dev);
                }
                if lo > -kn.cusum_clip {
                    level.0 = level.0.max(base + lo * dev);
                }
            }
        }
        BandLimits { residual, level }
    }

    /// Learns `a` on the kind-scored channel at `at`: the body with `a`
    /// clipped at the magnitude of [`LEARN_CLIP_SURPRISE`], the record with
    /// `a` itself once the series is warm (before, its errors say how well
    /// the model has learned yet, not what the series does). Returns the
    /// clipped magnitude.
    #[inline]
    fn learn_channel(&self, slab: &mut [f64], at: usize, x: f64, warm: bool) -> f64 {
        let a = x.abs().min(1e12);
        let up = x >= 0.0;
        let clip = self.channel_magnitude(slab, at, self.knobs.learn_clip, up);
        let floor = self.scale(slab, at);
        let clipped = if clip.is_finite() && clip > 0.0 && slab[0] >= 1.0 {
            a.min(clip)
        } else {
            a
        };
        // A peak joins its record at most this large: a magnitude far past
        // the alert boundary (an anomaly) teaches the record only as much
        // as one at the boundary times the growth allowance, so one anomaly
        // does not hide the next; something that keeps recurring still
        // climbs in a few steps.
        let grow = |up: bool| {
            self.record(slab, at, up).magnitude_at(self.alert_surprise) * self.knobs.record_growth
        };
        let (clip_up, clip_down) = (grow(true), grow(false));
        with_kind!(&self.kind, k => k.observe(&mut slab[at + 1..at + 1 + self.kind_len], clipped));
        let k = at + 1 + self.kind_len;
        let a = if warm || self.knobs.rec_cold > 0.0 { a } else { 0.0 };
        let (a_up, a_down) = if up { (a, 0.0) } else { (0.0, a) };
        Record::learn(&mut slab[k..k + RECORD_LEN], a_up, a_up > floor, self.top_decay, self.keep, clip_up);
        let k = k + RECORD_LEN;
        Record::learn(&mut slab[k..k + RECORD_LEN], a_down, a_down > floor, self.top_decay, self.keep, clip_down);
        clipped
    }

    /// Echo suppression: a channel's peak decays, and a surprise above the
    /// alert threshold raises it, so that what follows an anomaly (its
    /// echo, its plateau) must be surprising beyond the anomaly itself.
    #[inline]
    fn echo(&self, s: &mut [f64], raw: &Raw, warm: bool) {
        let l = self.layout;
        let peaks = [Some(l.forecast), l.level, l.drift, l.stuck];
        for (i, at) in peaks.into_iter().enumerate() {
            let Some(at) = at else { continue };
            let age = &mut s[l.ages + i];
            *age += 1.0;
            let fresh = warm && raw[i] >= self.alert_surprise + self.knobs.shift[i];
            if fresh {
                *age = 0.0;
            }
            let forget = *age > self.knobs.echo_forget;
            let peak = &mut s[at];
            *peak *= self.echo_decay;
            if fresh {
                *peak = peak.max(raw[i]);
            } else if forget {
                *peak = 0.0;
            }
        }
    }

    /// Learns the baseline: the offset is an exponentially weighted mean
    /// of the deseasonalised value with time constant `level_tau`, the
    /// seasonal coefficients a least-mean-squares fit with time constant
    /// `season_tau` (both shorter while the series is younger than them, so
    /// a new series learns fast), the residual's magnitude an [`Ewma`].
    /// Time constants in event time make it independent of the sampling
    /// rate.
    fn learn_baseline(&self, b: &mut [f64], obs: &Observation, first_ts: f64) {
        let t = obs.ts_ms as f64;
        let fast = self.fast_level(b, obs.value, obs.ts_ms);
        b[BASE_FAST] = fast;
        b[BASE_PREV] = obs.value - Self::season(b, obs.ts_ms);
        if b[0] < 1.0 {
            b[0] = 1.0;
            b[1] = obs.value;
            b[2] = t;
            return;
        }
        let (base, dev) = Self::baseline(b, obs.ts_ms);
        let e = obs.value - base;
        // The residual's magnitude, clipped like a channel's.
        let a = if b[0] >= 10.0 {
            e.abs().min(self.knobs.dev_clip * dev)
        } else {
            e.abs()
        };
        self.base_kind
            .observe(&mut b[BASE_MOMENTS..BASE_MOMENTS + 3], a);
        // Lag-1 autocorrelation of the (clipped) residual.
        let ec = e.clamp(-5.0 * dev, 5.0 * dev);
        let alpha = 1.0 / b[BASE_MOMENTS].max(1.0);
        let au = &mut b[BASE_AUTO..BASE_AUTO + 3];
        au[1] += alpha * (ec * au[0] - au[1]);
        au[2] += alpha * (ec * ec - au[2]);
        au[0] = ec;
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
        let a_off = rate(self.knobs.level_tau_ms).max(1.0 / b[0].min(1e4));
        let e_clip = e.clamp(-5.0 * dev, 5.0 * dev);
        b[1] += a_off * e_clip;
        // Gradient of ½e² on each daily coefficient (normalised by E[x²] =
        // ½) and on the day's amplitude (normalised by the shape's mean
        // square, so its step does not depend on the series' units).
        let a_s = 2.0 * rate(self.knobs.season_tau_ms);
        let (basis, day) = season_basis(obs.ts_ms);
        let amp = 1.0 + b[BASE_WEEKDAY + day];
        let mut shape = 0.0;
        let mut power = 0.0;
        for (w, x) in b[3..9].iter_mut().zip(basis) {
            shape += *w * x;
            power += *w * *w;
            *w += a_s * e_clip * x * amp;
        }
        // A weekday is seen a seventh of the time: its rate is 7 times the
        // daily one, for the same time constant.
        if power > 0.0 && self.knobs.weekday > 0.0 {
            let a_d = (7.0 * a_s).min(1.0);
            let g = a_d * e_clip * shape / power;
            b[BASE_WEEKDAY + day] = (b[BASE_WEEKDAY + day] + g).clamp(-1.0, 3.0);
        }
    }

    /// Learns the event that `scored` scored.
    #[inline]
    pub fn observe(&self, state: &mut ThresholdState, obs: &Observation, scored: &Scored) {
        let l = self.layout;
        let s = &mut state.slab;
        let warm = s[2] > 0.0;
        let first_ts = if s[0] < 1.0 { obs.ts_ms as f64 } else { s[1] };
        let a = self.learn_channel(s, l.forecast, obs.residual, warm);
        if l.moments != l.forecast + 1 {
            self.moments_kind
                .observe(&mut s[l.moments..l.moments + MOMENTS_LEN], a);
        }
        if let Some(b) = l.base {
            let (base, dev) = Self::baseline(&s[b..b + BASE_LEN], obs.ts_ms);
            let z = ((obs.value - base) / dev).abs().min(1e12);
            // The baseline's own deviation needs a few events before
            // distances in it mean anything.
            let ready = s[b] >= BASE_READY;
            if let (Some(at), true) = (l.level, ready) {
                let zl = self.level_distance(&s[b..b + BASE_LEN], obs, dev);
                self.learn_channel(s, at, zl, warm);
            }
            if let (Some(at), true) = (l.drift, ready) {
                // The CUSUM itself is clipped too, so it forgets an anomaly
                // within a few events of its end.
                let clip = self.drift_limit(&s[at..at + DRIFT_LEN], self.knobs.cusum_cap);
                let d = &mut s[at..at + DRIFT_LEN];
                d[1] = scored.cusum.0.min(clip);
                d[2] = scored.cusum.1.min(clip);
                let c = if warm || self.knobs.rec_cold > 0.0 { d[1].max(d[2]) } else { 0.0 };
                Record::learn(&mut d[3..], c, c > 0.0, self.top_decay, self.keep, 0.0);
            }
            self.learn_baseline(&mut s[b..b + BASE_LEN], obs, first_ts);
        }
        if let Some(at) = l.stuck {
            let keep = self.keep;
            let n = s[0];
            let surprising = self.stuck_surprise(&s[at..at + STUCK_LEN], scored.run)
                > self.knobs.learn_clip;
            let st = &mut s[at..at + STUCK_LEN];
            // A run that has become surprising does not teach how often the
            // series repeats: a frozen exporter is not its new normal until
            // its run ends and joins the record.
            if n >= 1.0 && !surprising {
                let repeat = scored.run >= 1.0;
                let (from, hit) = if st[2] >= 1.0 { (5, 6) } else { (3, 4) };
                for c in &mut st[3..7] {
                    *c *= keep;
                }
                st[from] += 1.0;
                if repeat {
                    st[hit] += 1.0;
                }
            }
            let prev_run = st[2];
            st[1] = obs.value;
            st[2] = scored.run;
            let r = &mut st[7..7 + RECORD_LEN];
            if scored.run >= 1.0 {
                r[3] = r[3].max(scored.run);
            }
            Record::learn(r, prev_run, scored.run >= 1.0, self.top_decay, keep, 0.0);
        }
        self.echo(s, &scored.raw, warm);
        if warm {
            let keep = 1.0 - 1.0 / self.knobs.cal_horizon;
            let c = &mut s[l.cal..l.cal + CAL_LEN];
            c[0] = c[0] * keep + 1.0;
            let k = CAL_LEVELS.len();
            for (i, &e) in scored.echoed.iter().enumerate() {
                for (j, lvl) in CAL_LEVELS.iter().enumerate() {
                    let x = &mut c[1 + i * k + j];
                    *x = *x * keep + f64::from(u8::from(e >= *lvl));
                }
            }
        }
        if s[0] < 1.0 {
            s[1] = obs.ts_ms as f64;
        }
        s[0] = (s[0] + 1.0).min(self.horizon);
        if scored.warm {
            s[2] = 1.0;
        }
    }
}
