//! The channels: each turns an event into a magnitude, learns its normal
//! distribution per series and gives the event a surprise.
//!
//! One file per channel, each a [`Channel`]; [`AnyChannel`] lists them (in
//! [`Reason`] order, which breaks ties), and [`build`] makes the ones the
//! config turns on. A new channel is a file here, a [`Reason`] variant, a
//! `*_channel` flag in [`ThresholdConfig`], and its line in [`AnyChannel`],
//! `dispatch!` and [`build`].

mod drift;
mod forecast;
mod level;
mod stuck;

#[cfg(test)]
pub(crate) use drift::Drift;
pub(crate) use forecast::Forecast;

use super::baseline::BaseAt;
use super::distribution::{Distribution, Seen};
use super::record::Fading;
use super::{BandLimits, Observation, Reason, ThresholdConfig};
use crate::threshold::ewma::Ewma;

/// Extra nats the accumulating channels (drift, stuck) need, so that
/// evidence hovering near the threshold does not fire them.
pub const SLOW_MARGIN: f64 = 3.0;

/// What the channels are told about one event (before any of them learns
/// it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Event<'a> {
    /// The event.
    pub obs: &'a Observation,
    /// Events the series has learned (saturating at the horizon).
    pub events: f64,
    /// Events the series has learned, over the jumps' memory.
    pub jump_events: f64,
    /// Whether the slow channels (level, drift) may speak: the series is
    /// warm and has seen a day of event time (a season).
    pub slow: bool,
    /// Days of event time since the series' first event.
    pub days: f64,
    /// The baseline, when a channel needs one.
    pub base: Option<&'a BaseAt>,
}

impl Event<'_> {
    /// Whether the series has learned any event before this one.
    #[inline]
    pub fn seen(&self) -> bool {
        self.events >= 1.0
    }

    /// What a distribution is told about the series' age, for magnitudes
    /// in `unit`s of the series.
    #[inline]
    pub fn counts(&self, unit: f64) -> Seen {
        Seen::new(self.events, self.jump_events, self.obs.ts_ms as f64, unit)
    }
}

/// What a channel learns along with the event, once it is scored.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome {
    /// The channel's own surprise of the event (without its margin).
    pub raw: f64,
    /// The channel raised an alert on the event, or would have were the
    /// series already trusted: its surprise, beyond the margin, is at the
    /// alert's. (An excursion learned before the series was trusted is not
    /// vouched for as normal just because nobody was told of it.)
    pub alerting: bool,
    /// The event is an echo: as surprising as an anomaly, but within the
    /// anomaly in progress (the forecast's return after a spike). It is no
    /// excursion of the series' own.
    pub echoed: bool,
    /// The event is anomalous within an episode: it teaches nothing of the
    /// normal.
    pub censored: bool,
}

/// What every channel shares: how the bodies and records learn.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Common {
    /// A body and two records, as the forecast and level channels keep.
    pub dist: Distribution,
    /// Learns moments when the kind does not keep them (events of memory
    /// as the bodies).
    pub moments: Option<Ewma>,
    /// How the records fade (and the exponentially weighted counts).
    pub fading: Fading,
}

/// One channel. Its state is a run of `len` slots of the series' slab; it
/// scores an event before any channel learns it, then learns it.
pub(crate) trait Channel {
    /// The reason the channel gives.
    const REASON: Reason;
    /// Nats beyond the alert threshold's that the channel needs.
    const MARGIN: f64 = 0.0;
    /// Whether it measures against the seasonal baseline.
    const NEEDS_BASELINE: bool = false;
    /// Whether it judges the value itself (forecast, level), as opposed to
    /// accumulating evidence over events (drift, stuck).
    const VALUE_DRIVEN: bool = false;
    /// Whether a change it reports for long enough becomes the new normal
    /// (the baseline's offset moves, see [`super::episode`]).
    const ACCEPTS_NEW_NORMAL: bool = false;

    /// Slots of per-series state.
    fn len(&self) -> usize;
    /// Sets fresh state.
    fn init(&self, _s: &mut [f64]) {}
    /// The event's surprise, in nats, without the margin.
    fn surprise(&self, s: &[f64], ev: &Event) -> f64;
    /// Narrows `limits` to what keeps this channel's surprise below `l`
    /// (the value-driven channels only: forecast and level).
    fn band(&self, _s: &[f64], _ev: &Event, _l: f64, _limits: &mut BandLimits) {}
    /// The open interval of values (in the series' units) that keep this
    /// channel's surprise below `l`, for a channel that judges where the
    /// series sits (level); `None` for the others.
    fn normal_values(&self, _s: &[f64], _ev: &Event, _l: f64) -> Option<(f64, f64)> {
        None
    }
    /// The open interval of levels the series is normally at (surprise
    /// below `l` were it to sit there), for a channel that judges it.
    fn normal_level(&self, _s: &[f64], _ev: &Event, _l: f64) -> Option<(f64, f64)> {
        None
    }
    /// What the echo holds when this channel raised an anomaly of
    /// `surprise`: what the anomaly will mean once learned.
    fn held(&self, _s: &[f64], _ev: &Event, surprise: f64) -> f64 {
        surprise
    }
    /// Learns the event.
    fn learn(&self, s: &mut [f64], ev: &Event, outcome: &Outcome);
    /// The change the channel reported is the new normal: restart what
    /// accumulates evidence.
    fn new_normal(&self, _s: &mut [f64]) {}
    /// The series is back from an episode a value-driven channel raised:
    /// what accumulated during it was that anomaly's, not news.
    fn episode_over(&self, _s: &mut [f64]) {}
}

/// Every channel, dispatched statically.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum AnyChannel {
    Forecast(forecast::Forecast),
    Level(level::Level),
    Drift(drift::Drift),
    Stuck(stuck::Stuck),
}

/// Runs `$body` with `$c` bound to the concrete channel.
macro_rules! dispatch {
    ($any:expr, $c:ident => $body:expr) => {
        match $any {
            AnyChannel::Forecast($c) => $body,
            AnyChannel::Level($c) => $body,
            AnyChannel::Drift($c) => $body,
            AnyChannel::Stuck($c) => $body,
        }
    };
}

/// The channels `config` turns on, in [`Reason`] order.
pub(crate) fn build(config: &ThresholdConfig, common: &Common) -> Vec<AnyChannel> {
    [
        Some(AnyChannel::Forecast(Forecast::new(common))),
        config
            .level_channel
            .then(|| AnyChannel::Level(level::Level::new(common))),
        config
            .drift_channel
            .then(|| AnyChannel::Drift(drift::Drift::new(common))),
        config
            .stuck_channel
            .then(|| AnyChannel::Stuck(stuck::Stuck::new(common))),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// A channel's constants, read through an instance.
fn consts<C: Channel>(_: &C) -> (Reason, f64, bool, bool, bool) {
    (
        C::REASON,
        C::MARGIN,
        C::NEEDS_BASELINE,
        C::ACCEPTS_NEW_NORMAL,
        C::VALUE_DRIVEN,
    )
}

impl AnyChannel {
    /// The reason it gives.
    #[inline]
    pub fn reason(&self) -> Reason {
        dispatch!(self, c => consts(c).0)
    }

    /// Its margin.
    #[inline]
    pub fn margin(&self) -> f64 {
        dispatch!(self, c => consts(c).1)
    }

    /// Whether it needs the baseline.
    pub fn needs_baseline(&self) -> bool {
        dispatch!(self, c => consts(c).2)
    }

    /// Whether what it reports long enough becomes the new normal.
    #[inline]
    pub fn accepts_new_normal(&self) -> bool {
        dispatch!(self, c => consts(c).3)
    }

    /// Whether it judges the value itself.
    #[inline]
    pub fn value_driven(&self) -> bool {
        dispatch!(self, c => consts(c).4)
    }

    /// See [`Channel::episode_over`].
    pub fn episode_over(&self, s: &mut [f64]) {
        dispatch!(self, c => c.episode_over(s))
    }

    /// See [`Channel::len`].
    #[inline]
    pub fn len(&self) -> usize {
        dispatch!(self, c => c.len())
    }

    /// See [`Channel::init`].
    pub fn init(&self, s: &mut [f64]) {
        dispatch!(self, c => c.init(s))
    }

    /// See [`Channel::surprise`].
    #[inline]
    pub fn surprise(&self, s: &[f64], ev: &Event) -> f64 {
        dispatch!(self, c => c.surprise(s, ev))
    }

    /// See [`Channel::band`].
    #[inline]
    pub fn band(&self, s: &[f64], ev: &Event, l: f64, limits: &mut BandLimits) {
        dispatch!(self, c => c.band(s, ev, l, limits))
    }

    /// See [`Channel::normal_values`].
    #[inline]
    pub fn normal_values(&self, s: &[f64], ev: &Event, l: f64) -> Option<(f64, f64)> {
        dispatch!(self, c => c.normal_values(s, ev, l))
    }

    /// See [`Channel::normal_level`].
    #[inline]
    pub fn normal_level(&self, s: &[f64], ev: &Event, l: f64) -> Option<(f64, f64)> {
        dispatch!(self, c => c.normal_level(s, ev, l))
    }

    /// See [`Channel::held`].
    #[inline]
    pub fn held(&self, s: &[f64], ev: &Event, surprise: f64) -> f64 {
        dispatch!(self, c => c.held(s, ev, surprise))
    }

    /// See [`Channel::learn`].
    #[inline]
    pub fn learn(&self, s: &mut [f64], ev: &Event, outcome: &Outcome) {
        dispatch!(self, c => c.learn(s, ev, outcome))
    }

    /// See [`Channel::new_normal`].
    #[inline]
    pub fn new_normal(&self, s: &mut [f64]) {
        dispatch!(self, c => c.new_normal(s))
    }
}
