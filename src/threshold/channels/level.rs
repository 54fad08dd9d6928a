//! **level**: where the series sits now against its seasonal baseline.
//!
//! A short average, confirmed by the last two values, against the
//! baseline's offset, in deviations of the deseasonalised value; scored by
//! a body and a record per direction ([`Distribution`]). It sees what the
//! forecast follows: a drift, a level the series never sits at, a day
//! without its usual peak.

use super::{Channel, Common, Event, Outcome};
use crate::threshold::baseline::{BaseAt, LEVEL_EVENTS, slot};
use crate::threshold::distribution::{Distribution, Learning};
use crate::threshold::{BandLimits, Observation, Reason};

/// The level channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Level {
    dist: Distribution,
}

impl Level {
    /// The channel with the shared body and records.
    pub fn new(common: &Common) -> Self {
        Self {
            dist: common.dist.without_schedules(),
        }
    }

    /// The signed distance, in baseline deviations: the short average's
    /// distance from the offset, but only as far as the current and the
    /// previous value are off the same way too, so that one stray value (a
    /// jitter, a spike: the forecast channel's business) does not move it,
    /// while a level that has really moved does. (The median of the three
    /// was tried: it raised false alarms on the corpus from 1.8 to 2.3 per
    /// 10,000 events.)
    #[inline]
    fn distance(base: &BaseAt, obs: &Observation) -> f64 {
        let b = &base.b;
        let off = b[slot::OFFSET];
        let f = base.fast_level(obs.value, &obs.season) - off;
        if b[slot::COUNT] < 2.0 {
            return f / base.dev;
        }
        let now = obs.value - base.season(&obs.season) - off;
        let prev = b[slot::PREV] - off;
        if f.signum() != now.signum() || f.signum() != prev.signum() {
            return 0.0;
        }
        f.signum() * f.abs().min(now.abs()).min(prev.abs()) / base.dev
    }

    /// How far below and above the baseline, in the series' units, the
    /// level's distance stays below `l`.
    #[inline]
    fn reach(&self, s: &[f64], ev: &Event, base: &BaseAt, l: f64) -> (f64, f64) {
        let seen = ev.counts(base.dev);
        let at = |up: bool| self.dist.magnitude(s, l, up, &seen).max(0.0) * base.dev;
        (at(false), at(true))
    }
}

impl Channel for Level {
    const REASON: Reason = Reason::Level;
    const VALUE_DRIVEN: bool = true;
    const NEEDS_BASELINE: bool = true;
    const ACCEPTS_NEW_NORMAL: bool = true;

    fn len(&self) -> usize {
        self.dist.len()
    }

    fn init(&self, s: &mut [f64]) {
        self.dist.init(s);
    }

    #[inline]
    fn surprise(&self, s: &[f64], ev: &Event) -> f64 {
        match (&ev.base, ev.slow) {
            (Some(base), true) => {
                self.dist
                    .surprise(s, Self::distance(base, ev.obs), &ev.counts(base.dev))
            }
            _ => 0.0,
        }
    }

    #[inline]
    fn band(&self, s: &[f64], ev: &Event, l: f64, limits: &mut BandLimits) {
        if let Some((lo, hi)) = self.normal_values(s, ev, l) {
            limits.level = (limits.level.0.max(lo), limits.level.1.min(hi));
        }
    }

    /// The open interval of values whose level surprise stays below `l`,
    /// exactly: the distance is `min(|f'|, |now|, |prev|)` when the three
    /// agree in sign (see [`Level::distance`]), with the short average
    /// `f' = f + (value - season - f) / n` and `now = value - season`
    /// (both from the offset) rising with the value and `prev` fixed. So
    /// upwards the channel fires from the value where both `f'` and `now`
    /// reach the magnitude of `l`, and only if `prev` is there already
    /// (else never: one stray value does not move the level); downwards
    /// the same.
    #[inline]
    fn normal_level(&self, s: &[f64], ev: &Event, l: f64) -> Option<(f64, f64)> {
        let (Some(base), true) = (&ev.base, ev.slow) else {
            return None;
        };
        let (down, up) = self.reach(s, ev, base, l);
        let level = base.season(&ev.obs.season) + base.b[slot::OFFSET];
        Some((level - down, level + up))
    }

    #[inline]
    fn normal_values(&self, s: &[f64], ev: &Event, l: f64) -> Option<(f64, f64)> {
        let (Some(base), true) = (&ev.base, ev.slow) else {
            return None;
        };
        let b = &base.b;
        let (down, up) = self.reach(s, ev, base, l);
        let n = (b[slot::COUNT] + 1.0).clamp(1.0, LEVEL_EVENTS);
        let f = b[slot::FAST];
        let off = b[slot::OFFSET];
        let season = base.season(&ev.obs.season);
        // The value at which f' - offset = h, and at which now = h.
        let by_average = |h: f64| season + f + n * (off + h - f);
        let by_value = |h: f64| season + off + h;
        if b[slot::COUNT] < 2.0 {
            return Some((by_average(-down), by_average(up)));
        }
        let prev = b[slot::PREV] - off;
        let hi = if prev >= up {
            by_average(up).max(by_value(up))
        } else {
            f64::INFINITY
        };
        let lo = if prev <= -down {
            by_average(-down).min(by_value(-down))
        } else {
            f64::NEG_INFINITY
        };
        Some((lo, hi))
    }

    #[inline]
    fn learn(&self, s: &mut [f64], ev: &Event, outcome: &Outcome) {
        // The baseline's own deviation needs a few events before distances
        // in it mean anything.
        if let Some(base) = ev.base.as_ref().filter(|b| b.ready()) {
            let x = Self::distance(base, ev.obs);
            // An exact 0 is "nothing to measure" (the three values
            // disagree): the body learns the distances there are, so it is
            // not judged against a spread shrunk by zeros.
            let learning = Learning {
                recorded: true,
                alerted: outcome.alerting,
                zero_counts: false,
                censored: outcome.censored,
            };
            self.dist.learn(s, x, &ev.counts(base.dev), &learning);
        }
    }
}
