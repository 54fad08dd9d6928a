//! **drift**: small deviations that keep one sign.
//!
//! A two-sided CUSUM (Page 1954) of the deseasonalised value, standardised
//! and discounted for its autocorrelation: a slow drift or a broken season,
//! which no single event shows. Its stationary tail is exponential (about 1
//! nat per unit for Gaussian deviations), capped by the record of its
//! excursions. State: `[S+, S-, record]`.

use super::{Channel, Common, Event, Outcome, SLOW_MARGIN};
use crate::threshold::baseline::{BaseAt, slot as base_slot};
use crate::threshold::record::{Fading, RECORD_LEN, Record};
use crate::threshold::{Observation, Reason};

/// The CUSUM's reference value, in deviations: it accumulates deviations
/// beyond `1.5` standardised units on average.
const CUSUM_K: f64 = 0.75;

/// Largest standardised deviation one event adds to the CUSUM.
const CUSUM_CLIP: f64 = 3.0;

/// The CUSUM is held at the value of this surprise, so it forgets an
/// anomaly within a few dozen events of its end.
const CUSUM_CAP_SURPRISE: f64 = 40.0;

/// Completed CUSUM excursions (exponentially weighted) the channel needs
/// before it scores.
const DRIFT_MIN_EXCURSIONS: f64 = 3.0;

/// Floor on the evidence one autocorrelated deviation carries (see
/// [`Drift::evidence`]).
const EVIDENCE_FLOOR: f64 = 0.5;

/// The slots of the drift channel's state.
mod slot {
    /// The upward CUSUM.
    pub const UP: usize = 0;
    /// The downward CUSUM.
    pub const DOWN: usize = 1;
    /// The record of its excursions.
    pub const RECORD: usize = 2;
}

/// The drift channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Drift {
    fading: Fading,
}

impl Drift {
    /// The channel whose record fades as the others'.
    pub fn new(common: &Common) -> Self {
        Self {
            fading: common.fading,
        }
    }

    /// How much independent evidence one deseasonalised deviation carries:
    /// `√((1 - φ) / (1 + φ))` for its lag-1 autocorrelation `φ > 0` (the
    /// deviation of a sum of `n` such values is `√((1 + φ)/(1 - φ))` times
    /// that of `n` independent ones), at least [`EVIDENCE_FLOOR`], 1 for
    /// `φ ≤ 0`.
    #[inline]
    fn evidence(b: &[f64]) -> f64 {
        let a = &b[base_slot::AUTO..base_slot::AUTO + 3];
        if a[2] <= 0.0 {
            return 1.0;
        }
        let phi = (a[1] / a[2]).clamp(0.0, 0.999);
        ((1.0 - phi) / (1.0 + phi)).sqrt().max(EVIDENCE_FLOOR)
    }

    /// The CUSUM after the event at `obs`.
    #[inline]
    fn cusum(d: &[f64], base: &BaseAt, obs: &Observation) -> (f64, f64) {
        let z = ((obs.value - base.value) / base.dev).clamp(-CUSUM_CLIP, CUSUM_CLIP)
            * Self::evidence(&base.b);
        (
            (d[slot::UP] + z - CUSUM_K).max(0.0),
            (d[slot::DOWN] - z - CUSUM_K).max(0.0),
        )
    }

    /// Whether the channel has seen enough of the series' CUSUM excursions
    /// to judge one: a slowly wandering series makes few, long ones, and
    /// until its record holds [`DRIFT_MIN_EXCURSIONS`] the first of them
    /// would look like a drift.
    #[inline]
    fn ready(d: &[f64]) -> bool {
        d[slot::RECORD] >= DRIFT_MIN_EXCURSIONS
    }

    /// The record of the CUSUM's excursions.
    #[inline]
    fn record(d: &[f64]) -> Record {
        Record::new(
            &d[slot::RECORD..slot::RECORD + RECORD_LEN],
            1.0,
            1.0,
            1.0,
            false,
        )
    }

    /// Drift surprise of CUSUM value `c`.
    #[inline]
    fn cusum_surprise(d: &[f64], c: f64) -> f64 {
        c.min(Self::record(d).surprise(c))
    }

    /// Largest CUSUM value with drift surprise below `l`.
    #[inline]
    fn limit(d: &[f64], l: f64) -> f64 {
        l.max(Self::record(d).magnitude_at(l))
    }
}

impl Channel for Drift {
    const REASON: Reason = Reason::Drift;
    const MARGIN: f64 = SLOW_MARGIN;
    const NEEDS_BASELINE: bool = true;
    const ACCEPTS_NEW_NORMAL: bool = true;

    fn len(&self) -> usize {
        slot::RECORD + RECORD_LEN
    }

    #[inline]
    fn surprise(&self, d: &[f64], ev: &Event) -> f64 {
        match &ev.base {
            Some(base) if ev.slow && Self::ready(d) => {
                let (up, down) = Self::cusum(d, base, ev.obs);
                Self::cusum_surprise(d, up.max(down))
            }
            _ => 0.0,
        }
    }

    #[inline]
    fn learn(&self, d: &mut [f64], ev: &Event, outcome: &Outcome) {
        let Some(base) = ev.base.as_ref().filter(|b| b.ready()) else {
            return;
        };
        let (up, down) = Self::cusum(d, base, ev.obs);
        if !ev.slow {
            // Before the baseline has seen a day, its season is a guess:
            // the CUSUM runs, but its excursions are no evidence of what
            // the series' drifts look like.
            d[slot::UP] = up;
            d[slot::DOWN] = down;
            return;
        }
        let cap = Self::limit(d, CUSUM_CAP_SURPRISE);
        d[slot::UP] = up.min(cap);
        d[slot::DOWN] = down.min(cap);
        let c = d[slot::UP].max(d[slot::DOWN]);
        Record::learn(
            &mut d[slot::RECORD..],
            c,
            c > 0.0 || outcome.censored,
            outcome.alerting,
            &self.fading,
        );
    }

    /// The CUSUM restarts, and the channel learns again what the series'
    /// drifts look like around its new level before it judges one (its
    /// baseline has just moved, and the first excursions around it are no
    /// evidence of a drift).
    fn episode_over(&self, d: &mut [f64]) {
        d[slot::UP] = 0.0;
        d[slot::DOWN] = 0.0;
    }

    fn new_normal(&self, d: &mut [f64]) {
        d[slot::UP] = 0.0;
        d[slot::DOWN] = 0.0;
        d[slot::RECORD..slot::RECORD + RECORD_LEN].fill(0.0);
    }
}

#[cfg(test)]
impl Drift {
    /// Completed excursions in state `d` (for tests).
    pub(crate) fn excursions(d: &[f64]) -> f64 {
        d[slot::RECORD]
    }

    /// See [`DRIFT_MIN_EXCURSIONS`].
    pub(crate) const MIN_EXCURSIONS: f64 = DRIFT_MIN_EXCURSIONS;
}
