//! Episodes: from an anomaly's onset until the series is back to normal.
//!
//! An episode starts when a warm series reaches the alert's surprise and ends when the series has scored below the resolve level
//! for `resolve_events` events in a row (it *returned*), or when it has
//! lasted `max_ms` of event time (the change is the *new normal*). While it
//! lasts, what the series does is not normal: the anomalous events teach
//! none of the normal statistics: the bodies, the baseline, how often the
//! value repeats, the model's weights and typical step (its lags still take
//! the values, so the forecast follows the series). The level channel goes
//! on measuring against the level before the episode, so a level shift or
//! a drift holds its one alert until the series is back, or until it is
//! the new normal; the band after the episode is the band before it; and
//! the return, the forecast's echo of the change, is no new onset (see
//! [`super::echo`]).

use super::header;

/// What an event does to the series' episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// No episode.
    #[default]
    Quiet,
    /// This event starts one.
    Started,
    /// One goes on.
    Ongoing,
    /// This event ends one: the series is back to normal.
    Returned,
    /// This event ends one: it lasted so long that the series' present is
    /// its new normal.
    NewNormal,
}

impl Phase {
    /// Whether the series is in an episode after this event.
    pub fn in_episode(self) -> bool {
        matches!(self, Self::Started | Self::Ongoing)
    }
}

/// What an episode is judged on, for one event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpisodeSurprise {
    /// The event's surprise (every channel, beyond its margin).
    pub all: f64,
    /// The value-driven channels' (forecast, level), as one channel's
    /// surprise (not corrected for the channels: see
    /// [`Episodes::resolve_value`]).
    pub value: f64,
    /// Whether a value-driven channel gave the event its surprise.
    pub raised_by_value: bool,
}

/// The header's episode mark of one raised by a value-driven channel.
const RAISED_BY_VALUE: f64 = 1.0;

/// ... and of one raised by an accumulating channel (drift, stuck).
const RAISED_BY_EVIDENCE: f64 = 2.0;

/// The episode rule (shared by every series).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Episodes {
    /// Surprise that starts one (the alert's).
    pub alert_surprise: f64,
    /// Surprise below which an event is back to normal (the resolve
    /// threshold's).
    pub resolve_surprise: f64,
    /// The same for one channel's surprise: what the value-driven channels'
    /// surprise is measured against.
    pub resolve_value: f64,
    /// Events back to normal in a row that end it.
    pub resolve_events: f64,
    /// Event time (ms) after which it is the new normal.
    pub max_ms: f64,
}

impl Episodes {
    /// The phase after an event at `ts_ms`, from header `h`. An episode
    /// starts at any warm event at the alert's surprise (an onset, or a
    /// slow channel that has grown into it), so that whatever holds the
    /// series at alert level ends, one way or the other. One raised by a
    /// value-driven channel (forecast, level) is over when the value is
    /// back: the evidence the accumulating channels gathered during it
    /// does not hold it (it is reset at the return); one raised by drift
    /// or stuck lasts while they do.
    #[inline]
    pub fn phase(&self, h: &[f64], warm: bool, surprise: &EpisodeSurprise, ts_ms: i64) -> Phase {
        if h[header::EPISODE] <= 0.0 {
            if warm && surprise.all >= self.alert_surprise {
                Phase::Started
            } else {
                Phase::Quiet
            }
        } else if ts_ms as f64 - h[header::EPISODE_MS] >= self.max_ms {
            Phase::NewNormal
        } else if self.is_back(h, surprise) && h[header::QUIET] + 1.0 >= self.resolve_events {
            Phase::Returned
        } else {
            Phase::Ongoing
        }
    }

    /// Whether the episode in header `h` was raised by a value-driven
    /// channel.
    #[inline]
    pub fn raised_by_value(h: &[f64]) -> bool {
        h[header::EPISODE] == RAISED_BY_VALUE
    }

    /// Whether the series of header `h` is back to normal at this event.
    #[inline]
    fn is_back(&self, h: &[f64], surprise: &EpisodeSurprise) -> bool {
        if Self::raised_by_value(h) {
            surprise.value < self.resolve_value
        } else {
            surprise.all < self.resolve_surprise
        }
    }

    /// Whether the event is censored: within an episode (its return
    /// included, whose errors are still measured from the anomaly), so it
    /// teaches nothing of the normal.
    #[inline]
    pub fn censors(&self, phase: Phase) -> bool {
        matches!(phase, Phase::Started | Phase::Ongoing | Phase::Returned)
    }

    /// Applies `phase` to header `h` after an event of `surprise` at
    /// `ts_ms`.
    #[inline]
    pub fn apply(&self, h: &mut [f64], phase: Phase, surprise: &EpisodeSurprise, ts_ms: i64) {
        match phase {
            Phase::Quiet => {}
            Phase::Started => {
                h[header::EPISODE] = if surprise.raised_by_value {
                    RAISED_BY_VALUE
                } else {
                    RAISED_BY_EVIDENCE
                };
                h[header::EPISODE_MS] = ts_ms as f64;
                h[header::QUIET] = 0.0;
            }
            Phase::Ongoing => {
                h[header::QUIET] = if self.is_back(h, surprise) {
                    h[header::QUIET] + 1.0
                } else {
                    0.0
                };
            }
            Phase::Returned | Phase::NewNormal => {
                h[header::EPISODE] = 0.0;
                h[header::EPISODE_MS] = 0.0;
                h[header::QUIET] = 0.0;
            }
        }
    }
}
