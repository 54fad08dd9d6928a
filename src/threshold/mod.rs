//! Adaptive thresholds on the model's output, and the score contract.
//!
//! This module owns how one forecast becomes an anomaly score, why, and when
//! a series is trusted to be scored at all. It does not forecast
//! ([`crate::model`]) or decide alerts (the alert lifecycle compares scores
//! with its thresholds).
//!
//! Every event gets a surprise in nats and a score in `[0, 1)` from it (the
//! score contract, [`contract`]). Beside the score, it gets an **onset**
//! score: the same, less what the series' recent anomaly already explains
//! (`echo`). An anomaly's first event has both high; its echo (the return
//! after a spike) and its plateau (the events after a level shift) keep a
//! high score but a low onset. Alerts fire on the onset, so one anomaly is
//! one alert, and report the score, so the alert says how big it is.
//!
//! # Channels
//!
//! Four `channels` each turn the event into a magnitude, learn its normal
//! distribution per series, and give a surprise; the surprise is the
//! largest, beyond each channel's margin, and the channel that gave it is
//! the event's [`Reason`]:
//!
//! - **forecast**: `value - expected`, in the series' typical steps;
//! - **level**: where the series sits now against its seasonal
//!   `baseline`;
//! - **drift**: a CUSUM of the deseasonalised value;
//! - **stuck**: how many times in a row the value repeated exactly.
//!
//! The forecast and level channels score with a body ([`body`]: a threshold
//! *kind*, [`ewma`] by default, [`quantile`] or [`spot`]) bounded per
//! direction by a `record` of the largest recent excursions
//! (`distribution`). Channels learn each event after scoring it: the
//! bodies with the magnitude clipped at the one whose surprise is
//! [`LEARN_CLIP_SURPRISE`], the records with the peaks as they were.
//!
//! A series is silent until trusted (`warmup`).
//!
//! # State
//!
//! One boxed slab of `f64` per series: a `header`, then each channel's
//! slots (and the baseline's, before the first channel that needs it), laid
//! out once per config. O(1) work per event.

mod baseline;
pub mod body;
mod channels;
mod config;
pub mod contract;
mod distribution;
mod echo;
pub mod episode;
pub mod ewma;
pub mod quantile;
mod record;
pub mod spot;
mod warmup;

use std::ops::{Index, IndexMut};

use serde::{Deserialize, Serialize};

pub use body::Threshold;
pub use channels::SLOW_MARGIN;
pub use config::{
    AlertTargets, DEFAULT_MAX_EPISODE_SECS, RESOLVE_SURPRISE_SHARE, RemovedKey, ThresholdConfig,
    ThresholdKind,
};
pub use contract::{
    DEFAULT_ALERT_THRESHOLD, MAX_SURPRISE, SCORE_POWER, SURPRISE_AT_HALF, channel_surprise,
    combined_surprise, score_from_surprise, surprise_from_score,
};
pub use distribution::LEARN_CLIP_SURPRISE;
pub use echo::ECHO_EVENTS;
pub use warmup::WARM_RELATIVE_ERROR;

use baseline::{BaseAt, Baseline};
use body::Kind;
use channels::{AnyChannel, Common, Event, Forecast, Outcome};
use distribution::{Distribution, JUMP_MEMORY_HORIZONS};
use echo::Echo;
use episode::{EpisodeSurprise, Episodes, Phase};
use ewma::Ewma;
use quantile::Quantile;
use record::Fading;
use spot::Spot;
use warmup::Warmup;

/// The slots of a series' header.
pub(crate) mod header {
    /// Events learned, saturating at the horizon.
    pub const EVENTS: usize = 0;
    /// The first event's time (ms).
    pub const FIRST_MS: usize = 1;
    /// Whether the series is trusted (0 or 1).
    pub const WARM: usize = 2;
    /// The echo peak (see [`super::echo`]).
    pub const ECHO: usize = 3;
    /// Whether an episode is going on (0 or 1; see [`super::episode`]).
    pub const EPISODE: usize = 4;
    /// When it started (ms).
    pub const EPISODE_MS: usize = 5;
    /// Its events back to normal in a row.
    pub const QUIET: usize = 6;
    /// Events learned, exponentially weighted over the jumps' memory (see
    /// [`super::distribution`]).
    pub const JUMP_EVENTS: usize = 7;
    /// Length of the header.
    pub const LEN: usize = 8;
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
    /// How many reasons (channels) there are.
    pub const COUNT: usize = 4;

    /// Every reason, in channel order.
    pub const ALL: [Reason; Self::COUNT] = [Self::Forecast, Self::Level, Self::Drift, Self::Stuck];

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

/// One value per channel, indexed by its [`Reason`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PerChannel<T>(pub [T; Reason::COUNT]);

impl<T> Index<Reason> for PerChannel<T> {
    type Output = T;

    #[inline]
    fn index(&self, r: Reason) -> &T {
        &self.0[r as usize]
    }
}

impl<T> IndexMut<Reason> for PerChannel<T> {
    #[inline]
    fn index_mut(&mut self, r: Reason) -> &mut T {
        &mut self.0[r as usize]
    }
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
    /// The surprise each channel may reach below it.
    channel: f64,
}

impl BandTarget {
    /// Precomputes the target for `score` under `thresholds`.
    pub fn new(score: f64, thresholds: &Thresholds) -> Self {
        Self {
            score,
            channel: channel_surprise(surprise_from_score(score), thresholds.channels.len()),
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
    /// The value the model expected.
    pub expected: f64,
    /// The residual's unit: the series' typical step, > 0.
    pub scale: f64,
    /// Event time (the season, and the warm-up in time).
    pub ts_ms: i64,
    /// The daily basis at `ts_ms`, computed once per event.
    season: [f64; 6],
}

impl Observation {
    /// The observation of `value` at `ts_ms`, which the model expected to
    /// be `expected`, with forecast residual `residual` in typical steps of
    /// `scale`.
    #[inline]
    pub fn new(residual: f64, value: f64, expected: f64, scale: f64, ts_ms: i64) -> Self {
        Self {
            residual,
            value,
            expected,
            scale,
            ts_ms,
            season: baseline::season_basis(ts_ms),
        }
    }
}

/// What the channels are told about one event besides the observation
/// ([`Thresholds::prepare`]): the series' age and its baseline at the
/// event's time, as the state was before the event.
#[derive(Debug, Clone, Copy)]
pub struct Prepared {
    events: f64,
    jump_events: f64,
    slow: bool,
    days: f64,
    base: Option<BaseAt>,
}

/// What a threshold says about one event, before it learns it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// The score in `[0, 1)` (the contract above); 0 while cold.
    pub score: f64,
    /// The onset score: as `score`, less the echo peak.
    pub onset: f64,
    /// The surprise behind `score`, in nats (computed while cold too).
    pub surprise: f64,
    /// The channel that gave the score.
    pub reason: Reason,
    /// Whether the series is trusted to be scored.
    pub warm: bool,
    /// Each channel's surprise, without its margin.
    pub raw: PerChannel<f64>,
    /// What the event does to the series' episode.
    pub phase: Phase,
    /// Whether the event teaches nothing of the normal (within an
    /// episode): the model learns its lags only.
    pub censored: bool,
    /// What the episode judged.
    episode: EpisodeSurprise,
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

/// A channel and where its slots start.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Placed {
    channel: AnyChannel,
    at: usize,
    len: usize,
}

impl Placed {
    #[inline]
    fn slots<'a>(&self, slab: &'a [f64]) -> &'a [f64] {
        &slab[self.at..self.at + self.len]
    }

    #[inline]
    fn slots_mut<'a>(&self, slab: &'a mut [f64]) -> &'a mut [f64] {
        &mut slab[self.at..self.at + self.len]
    }
}

/// A configured threshold (shared by every series).
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// The kind's name.
    kind: ThresholdKind,
    /// The channels the config turns on, in [`Reason`] order; the forecast
    /// channel is always the first.
    channels: Vec<Placed>,
    /// The forecast channel (also `channels[0]`): the warm-up reads its
    /// moments.
    forecast: Forecast,
    /// The baseline and where its slots start, when a channel needs it.
    baseline: Option<(Baseline, usize)>,
    warmup: Warmup,
    echo: Echo,
    episodes: Episodes,
    /// The surprise at which one channel alerts (above the alert's: see
    /// [`combined_surprise`]).
    channel_alert: f64,
    /// Events the header counts up to.
    horizon: f64,
    /// Per-event weight kept by the jumps' counts.
    jump_keep: f64,
    /// Slab length.
    len: usize,
}

impl Thresholds {
    /// The threshold `config` describes, for alerts as `targets` says (see
    /// [`ThresholdConfig::build`]).
    fn new(config: &ThresholdConfig, targets: &AlertTargets) -> Self {
        let alert_surprise = surprise_from_score(targets.threshold);
        let horizon = f64::from(config.horizon_events.max(10));
        let body = horizon / 5.0;
        let q = config.quantile.clamp(0.5 + 1e-9, 1.0 - 1e-9);
        let kind = match config.kind {
            ThresholdKind::Ewma => Kind::Ewma(Ewma::new(body)),
            ThresholdKind::Quantile => Kind::Quantile(Quantile { q }),
            ThresholdKind::Spot => Kind::Spot(Spot::new(q, body)),
        };
        let keep = 1.0 - 1.0 / horizon;
        let fading = Fading {
            jump_keep: 1.0 - 1.0 / (JUMP_MEMORY_HORIZONS * horizon),
            normal: 0.5f64.powf(1.0 / horizon),
            // Alerted peaks fade as fast as the bodies forget.
            suspect: 0.5f64.powf(1.0 / body),
            keep,
        };
        let common = Common {
            dist: Distribution::new(kind, fading),
            // The default kind keeps the residual's moments itself.
            moments: (!matches!(kind, Kind::Ewma(_))).then(|| Ewma::new(body)),
            fading,
        };
        let level_memory_ms = config.level_memory_secs.max(60) as f64 * 1000.0;
        let mut at = header::LEN;
        let mut baseline = None;
        let mut channels = Vec::new();
        for channel in channels::build(config, &common) {
            if channel.needs_baseline() && baseline.is_none() {
                baseline = Some((Baseline::new(body, level_memory_ms), at));
                at += baseline::slot::LEN;
            }
            let len = channel.len();
            channels.push(Placed { channel, at, len });
            at += len;
        }
        let channel_alert = channel_surprise(alert_surprise, channels.len());
        let resolve_surprise = surprise_from_score(targets.resolve_threshold).min(alert_surprise);
        let resolve_value = channel_surprise(resolve_surprise, channels.len());
        Self {
            kind: config.kind,
            channels,
            forecast: Forecast::new(&common),
            baseline,
            warmup: Warmup::new(
                f64::from(config.warmup_events.max(1)),
                config.warmup_secs as f64 * 1000.0,
            ),
            echo: Echo::new(alert_surprise),
            episodes: Episodes {
                alert_surprise,
                resolve_surprise,
                resolve_value,
                resolve_events: f64::from(targets.resolve_after_events.max(1)),
                max_ms: targets.max_episode_secs as f64 * 1000.0,
            },
            channel_alert,
            horizon,
            jump_keep: fading.jump_keep,
            len: at,
        }
    }

    /// The kind's name.
    pub fn name(&self) -> &'static str {
        self.kind.as_str()
    }

    /// Fresh per-series state.
    pub fn new_state(&self) -> ThresholdState {
        let mut slab = vec![0.0; self.len].into_boxed_slice();
        for p in &self.channels {
            p.channel.init(p.slots_mut(&mut slab));
        }
        ThresholdState { slab }
    }

    /// Whether `state` has this threshold's layout.
    pub fn owns(&self, state: &ThresholdState) -> bool {
        state.slab.len() == self.len
    }

    /// The forecast channel's placement (always the first).
    #[inline]
    fn forecast_slots<'a>(&self, slab: &'a [f64]) -> &'a [f64] {
        self.channels[0].slots(slab)
    }

    /// What the channels will be told about an event at the time of `obs`
    /// in `state`, until the state learns it: computed once per event
    /// (scoring, the band and learning all read it).
    #[inline]
    pub fn prepare(&self, state: &ThresholdState, obs: &Observation) -> Prepared {
        let s = &state.slab;
        Prepared {
            events: s[header::EVENTS],
            jump_events: s[header::JUMP_EVENTS],
            slow: Warmup::slow(s, obs.ts_ms),
            days: if s[header::EVENTS] >= 1.0 {
                (obs.ts_ms as f64 - s[header::FIRST_MS]) / 86_400_000.0
            } else {
                0.0
            },
            base: self
                .baseline
                .map(|(_, at)| BaseAt::new(&s[at..at + baseline::slot::LEN], obs)),
        }
    }

    /// What the channels are told about the event `obs`.
    #[inline]
    fn event<'a>(p: &'a Prepared, obs: &'a Observation) -> Event<'a> {
        Event {
            obs,
            events: p.events,
            jump_events: p.jump_events,
            slow: p.slow,
            days: p.days,
            base: p.base.as_ref(),
        }
    }

    /// Where the series is expected to be when it is not where it normally
    /// is: the nearest level it is normally at (the level channel's normal
    /// levels at the alert's surprise), when the forecast follows a level the
    /// series is not normally at, during an episode or where the level
    /// channel would fire at the forecast itself; `None` when the forecast
    /// stands (or no channel judges levels).
    #[inline]
    pub fn normal_expectation_prepared(
        &self,
        state: &ThresholdState,
        prepared: &Prepared,
        obs: &Observation,
    ) -> Option<f64> {
        let s = &state.slab;
        let ev = Self::event(prepared, obs);
        let l = self.channel_alert;
        let p = self
            .channels
            .iter()
            .find(|p| p.channel.reason() == Reason::Level)?;
        let (lo, hi) = p.channel.normal_level(p.slots(s), &ev, l)?;
        let inside = |(a, b): (f64, f64), x: f64| a < x && x < b;
        let e = obs.expected;
        if inside((lo, hi), e) || lo >= hi || lo.is_nan() || hi.is_nan() {
            return None;
        }
        let in_episode = s[header::EPISODE] > 0.0;
        let fires_at_forecast = p
            .channel
            .normal_values(p.slots(s), &ev, l)
            .is_some_and(|iv| !inside(iv, e));
        (in_episode || fires_at_forecast).then(|| {
            let width = hi - lo;
            e.clamp(lo + 1e-9 * width, hi - 1e-9 * width)
        })
    }

    /// Scores one event against the state, before the state learns it
    /// (`prepared` made from the state as it is).
    #[inline]
    pub fn score_prepared(
        &self,
        state: &ThresholdState,
        prepared: &Prepared,
        obs: &Observation,
    ) -> Scored {
        let s = &state.slab;
        let moments = self.forecast.moments(self.forecast_slots(s));
        let warm = self.warmup.is_warm(s, moments, obs.ts_ms);
        let ev = Self::event(prepared, obs);
        let mut raw = PerChannel::default();
        let mut best = (0.0, Reason::Forecast);
        let mut value = 0.0f64;
        for p in &self.channels {
            let reason = p.channel.reason();
            raw[reason] = p.channel.surprise(p.slots(s), &ev);
            let x = raw[reason] - p.channel.margin();
            if x > best.0 {
                best = (x, reason);
            }
            if p.channel.value_driven() {
                value = value.max(x);
            }
        }
        // A chance per event of the series, whichever channels are on.
        let k = self.channels.len();
        let surprise = combined_surprise(best.0, k).min(MAX_SURPRISE);
        let onset = Echo::onset(s[header::ECHO], surprise);
        let cold = |l: f64| if warm { score_from_surprise(l) } else { 0.0 };
        let episode = EpisodeSurprise {
            all: surprise,
            value,
            raised_by_value: matches!(best.1, Reason::Forecast | Reason::Level),
        };
        let phase = self.episodes.phase(s, warm, &episode, obs.ts_ms);
        let censored = self.episodes.censors(phase);
        Scored {
            score: cold(surprise),
            onset: cold(onset),
            surprise,
            reason: best.1,
            warm,
            raw,
            phase,
            censored,
            episode,
        }
    }

    /// The limits on an event that would score below `target` (for the
    /// band): the inverse of [`Thresholds::score_prepared`] along each
    /// channel.
    #[inline]
    pub fn band_prepared(
        &self,
        state: &ThresholdState,
        prepared: &Prepared,
        target: &BandTarget,
        obs: &Observation,
    ) -> BandLimits {
        let s = &state.slab;
        let ev = Self::event(prepared, obs);
        let mut limits = BandLimits {
            residual: (0.0, 0.0),
            level: (f64::NEG_INFINITY, f64::INFINITY),
        };
        for p in &self.channels {
            p.channel.band(p.slots(s), &ev, target.channel, &mut limits);
        }
        limits
    }

    /// Learns the event that `scored` scored (`prepared` made from the
    /// state as it is now).
    #[inline]
    pub fn observe_prepared(
        &self,
        state: &mut ThresholdState,
        prepared: &Prepared,
        obs: &Observation,
        scored: &Scored,
    ) {
        let s = &mut state.slab;
        let warm = scored.warm;
        let first_ms = if s[header::EVENTS] < 1.0 {
            obs.ts_ms as f64
        } else {
            s[header::FIRST_MS]
        };
        let ev = Self::event(prepared, obs);
        // (Only an event at the alert's surprise moves the echo peak, so
        // only such an event pays for what its channel holds.)
        let anomalous = self.echo.anomalous(warm, scored.surprise);
        let held = anomalous.then(|| {
            let p = self
                .channels
                .iter()
                .find(|p| p.channel.reason() == scored.reason)
                .expect("the reason is a channel that is on: it gave the surprise");
            let raw = scored.raw[scored.reason] - p.channel.margin();
            combined_surprise(p.channel.held(p.slots(s), &ev, raw), self.channels.len())
        });
        let echoed = anomalous && self.echo.is_echo(s[header::ECHO], scored.surprise);
        for p in &self.channels {
            let raw = scored.raw[p.channel.reason()];
            let outcome = Outcome {
                raw,
                alerting: raw - p.channel.margin() >= self.channel_alert,
                echoed,
                censored: scored.censored,
            };
            p.channel.learn(p.slots_mut(s), &ev, &outcome);
        }
        self.echo
            .update(&mut s[header::ECHO], scored.surprise, held);
        if let Some((baseline, at)) = &self.baseline {
            let b = &mut s[*at..*at + baseline::slot::LEN];
            baseline.learn(b, obs, first_ms, scored.censored);
            if scored.phase == Phase::NewNormal {
                // The change has lasted: where the series sits now is its
                // normal, and what accumulated evidence of the change
                // starts over.
                Baseline::rebase(b);
                for p in self
                    .channels
                    .iter()
                    .filter(|p| p.channel.accepts_new_normal())
                {
                    p.channel.new_normal(p.slots_mut(s));
                }
            }
        }
        if scored.phase == Phase::Returned && Episodes::raised_by_value(s) {
            for p in &self.channels {
                p.channel.episode_over(p.slots_mut(s));
            }
        }
        self.episodes
            .apply(s, scored.phase, &scored.episode, obs.ts_ms);
        if s[header::EVENTS] < 1.0 {
            s[header::FIRST_MS] = obs.ts_ms as f64;
        }
        s[header::EVENTS] = (s[header::EVENTS] + 1.0).min(self.horizon);
        s[header::JUMP_EVENTS] = s[header::JUMP_EVENTS] * self.jump_keep + 1.0;
        if warm {
            s[header::WARM] = 1.0;
        }
        if scored.phase == Phase::NewNormal {
            // The episode lasted: the forecast residual's body, which the
            // episode did not teach, starts over (as the model's typical
            // step does), and the series is not judged until its deviation
            // is known again. A series that went from idle to busy would
            // otherwise alert on its new noise, episode after episode,
            // each of which again taught nothing.
            let f = self.channels[0].slots_mut(s);
            self.forecast.restart(f);
            s[header::WARM] = 0.0;
        }
    }
}

#[cfg(test)]
impl Thresholds {
    /// [`Thresholds::normal_expectation_prepared`], preparing the event.
    pub fn normal_expectation(&self, state: &ThresholdState, obs: &Observation) -> Option<f64> {
        self.normal_expectation_prepared(state, &self.prepare(state, obs), obs)
    }

    /// [`Thresholds::score_prepared`], preparing the event.
    pub fn score(&self, state: &ThresholdState, obs: &Observation) -> Scored {
        self.score_prepared(state, &self.prepare(state, obs), obs)
    }

    /// [`Thresholds::band_prepared`], preparing the event.
    pub fn band(
        &self,
        state: &ThresholdState,
        target: &BandTarget,
        obs: &Observation,
    ) -> BandLimits {
        self.band_prepared(state, &self.prepare(state, obs), target, obs)
    }

    /// [`Thresholds::observe_prepared`], preparing the event.
    pub fn observe(&self, state: &mut ThresholdState, obs: &Observation, scored: &Scored) {
        let prepared = self.prepare(state, obs);
        self.observe_prepared(state, &prepared, obs, scored);
    }

    /// The slots of the channel of `reason` (for tests).
    fn slots_of<'a>(&self, slab: &'a [f64], reason: Reason) -> &'a [f64] {
        let p = self
            .channels
            .iter()
            .find(|p| p.channel.reason() == reason)
            .expect("the channel is on");
        p.slots(slab)
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
        // The residual is the test's own: the model is taken to have
        // expected the value itself, so only the residual channel sees it.
        Observation::new(residual, value, value, 1.0, i as i64 * MINUTE)
    }

    fn build(kind: ThresholdKind) -> Thresholds {
        ThresholdConfig {
            kind,
            warmup_secs: 0,
            ..ThresholdConfig::default()
        }
        .build(&AlertTargets::at(DEFAULT_ALERT_THRESHOLD))
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
        for kind in KINDS {
            let (t, st) = trained(kind, 3000, calm);
            let target = BandTarget::new(DEFAULT_ALERT_THRESHOLD, &t);
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
        // The same size upwards was never seen: it alerts, critical (not
        // higher: a jump at all is one in the 3,000 events seen, see the
        // jump bound).
        let jump = t.score(&st, &obs(30.0, 10.5, 3000));
        assert!(
            jump.onset >= crate::alert::lifecycle::default_critical(DEFAULT_ALERT_THRESHOLD),
            "{jump:?}"
        );
        // On calm data alone the body decides up to the jump floor: a single
        // record changes nothing a Gaussian would not expect. Beyond the
        // floor the jump bound tempers it, and still alerts.
        let (t, st) = trained(ThresholdKind::Ewma, 3000, calm);
        let slots = t.forecast_slots(&st.slab);
        let body = |a: f64| t.forecast.dist().body_surprise(slots, a);
        let below = t.score(&st, &obs(2.2, 10.5, 3000));
        assert!(body(2.2) < distribution::JUMP_FLOOR, "{}", body(2.2));
        assert!(
            (below.raw[Reason::Forecast] - body(2.2)).abs() < 1e-9,
            "{below:?} vs {}",
            body(2.2)
        );
        let beyond = t.score(&st, &obs(5.0, 10.5, 3000));
        assert!(beyond.surprise < body(5.0), "{beyond:?}");
        assert!(beyond.onset >= DEFAULT_ALERT_THRESHOLD, "{beyond:?}");
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
            if s.raw[Reason::Drift] - SLOW_MARGIN >= t.echo.alert_surprise {
                drift_alerts += 1;
            }
        }
        let d = t.slots_of(&st.slab, Reason::Drift);
        let excursions = channels::Drift::excursions(d);
        assert!(
            excursions < channels::Drift::MIN_EXCURSIONS,
            "excursions: {excursions}"
        );
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
            assert!(s.raw[Reason::Stuck] >= last, "{k}: {s:?}");
            last = s.raw[Reason::Stuck];
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
            assert_eq!(s.raw[Reason::Stuck], 0.0);
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
        .build(&AlertTargets::at(DEFAULT_ALERT_THRESHOLD));
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
        let all = ThresholdConfig::default().build(&AlertTargets::at(0.5));
        let none = ThresholdConfig {
            level_channel: false,
            drift_channel: false,
            stuck_channel: false,
            ..ThresholdConfig::default()
        }
        .build(&AlertTargets::at(0.5));
        assert!(none.len < all.len);
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
            let t = config.build(&AlertTargets::at(0.5));
            let target = BandTarget::new(target, &t);
            let mut st = t.new_state();
            let mut ts = 1_767_225_600_000i64;
            for (residual, value, step) in events {
                ts += step;
                let obs = Observation::new(residual, value, value, 1.0, ts);
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
