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

/// The episode rule (shared by every series).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Episodes {
    /// Surprise that starts one (the alert's).
    pub alert_surprise: f64,
    /// Surprise below which an event is back to normal (the resolve
    /// threshold's).
    pub resolve_surprise: f64,
    /// Events back to normal in a row that end it.
    pub resolve_events: f64,
    /// Event time (ms) after which it is the new normal.
    pub max_ms: f64,
}

impl Episodes {
    /// The phase after an event of `surprise` at `ts_ms`, from header `h`.
    /// An episode starts at any warm event at the alert's surprise (an
    /// onset, or a slow channel that has grown into it), so that whatever
    /// holds the series at alert level ends, one way or the other.
    #[inline]
    pub fn phase(&self, h: &[f64], warm: bool, surprise: f64, ts_ms: i64) -> Phase {
        if h[header::EPISODE] <= 0.0 {
            if warm && surprise >= self.alert_surprise {
                Phase::Started
            } else {
                Phase::Quiet
            }
        } else if ts_ms as f64 - h[header::EPISODE_MS] >= self.max_ms {
            Phase::NewNormal
        } else if surprise < self.resolve_surprise && h[header::QUIET] + 1.0 >= self.resolve_events
        {
            Phase::Returned
        } else {
            Phase::Ongoing
        }
    }

    /// Whether the event is censored: anomalous (at the resolve level or
    /// above), within an episode, so it teaches nothing of the normal.
    #[inline]
    pub fn censors(&self, phase: Phase, surprise: f64) -> bool {
        match phase {
            Phase::Started => true,
            Phase::Ongoing => surprise >= self.resolve_surprise,
            _ => false,
        }
    }

    /// Applies `phase` to header `h` after an event of `surprise` at
    /// `ts_ms`.
    #[inline]
    pub fn apply(&self, h: &mut [f64], phase: Phase, surprise: f64, ts_ms: i64) {
        match phase {
            Phase::Quiet => {}
            Phase::Started => {
                h[header::EPISODE] = 1.0;
                h[header::EPISODE_MS] = ts_ms as f64;
                h[header::QUIET] = 0.0;
            }
            Phase::Ongoing => {
                h[header::QUIET] = if surprise < self.resolve_surprise {
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
