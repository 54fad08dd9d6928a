//! **forecast**: `value - expected`, in the series' typical steps.
//!
//! The model's residual, scored by a body and a record per direction
//! ([`Distribution`]). Its body's moments also tell the warm-up how well
//! the residual's deviation is known (a separate [`Ewma`] of them when the
//! kind keeps no moments of its own).

use super::{Channel, Common, Event, Outcome};
use crate::threshold::distribution::{Distribution, Learning};
use crate::threshold::ewma::Ewma;
use crate::threshold::{BandLimits, Reason, Threshold};

/// Length of the moments block (an [`Ewma`] state).
const MOMENTS_LEN: usize = 3;

/// The forecast channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Forecast {
    dist: Distribution,
    /// Learns the residual's moments when the kind does not.
    moments: Option<Ewma>,
}

impl Forecast {
    /// The channel with the shared body and records.
    pub fn new(common: &Common) -> Self {
        Self {
            dist: common.dist,
            moments: common.moments,
        }
    }

    /// The residual's moments (an [`Ewma`] state): what the warm-up reads.
    #[inline]
    pub fn moments<'a>(&self, s: &'a [f64]) -> &'a [f64] {
        if self.moments.is_some() {
            let at = self.dist.len();
            &s[at..at + MOMENTS_LEN]
        } else {
            self.dist.body(s)
        }
    }

    /// The residual's body and moments start over: the series has a new
    /// normal, and warms up again until its deviation is known.
    pub fn restart(&self, s: &mut [f64]) {
        self.dist.restart_body(s);
        if self.moments.is_some() {
            let at = self.dist.len();
            s[at..at + MOMENTS_LEN].fill(0.0);
        }
    }

    /// The residual's distribution.
    #[cfg(test)]
    pub fn dist(&self) -> &Distribution {
        &self.dist
    }
}

impl Channel for Forecast {
    const REASON: Reason = Reason::Forecast;
    const VALUE_DRIVEN: bool = true;

    fn len(&self) -> usize {
        self.dist.len()
            + if self.moments.is_some() {
                MOMENTS_LEN
            } else {
                0
            }
    }

    fn init(&self, s: &mut [f64]) {
        self.dist.init(s);
    }

    #[inline]
    fn surprise(&self, s: &[f64], ev: &Event) -> f64 {
        self.dist
            .surprise(s, ev.obs.residual, &ev.counts(ev.obs.scale))
    }

    #[inline]
    fn band(&self, s: &[f64], ev: &Event, l: f64, limits: &mut BandLimits) {
        limits.residual = (
            self.dist
                .magnitude(s, l, false, &ev.counts(ev.obs.scale))
                .max(0.0),
            self.dist
                .magnitude(s, l, true, &ev.counts(ev.obs.scale))
                .max(0.0),
        );
    }

    /// The echo holds what the anomaly will mean once learned: a spike that
    /// repeats an earlier one's size holds the record's bound, not the
    /// body's (which would hide the next larger spike for hundreds of
    /// events).
    #[inline]
    fn held(&self, s: &[f64], ev: &Event, surprise: f64) -> f64 {
        surprise.min(
            self.dist
                .learned_surprise(s, ev.obs.residual, &ev.counts(ev.obs.scale))
                - Self::MARGIN,
        )
    }

    #[inline]
    fn learn(&self, s: &mut [f64], ev: &Event, outcome: &Outcome) {
        let learning = Learning {
            recorded: !outcome.echoed,
            alerted: outcome.alerting,
            zero_counts: true,
            censored: outcome.censored,
        };
        let a = self
            .dist
            .learn(s, ev.obs.residual, &ev.counts(ev.obs.scale), &learning);
        if let (Some(m), false) = (&self.moments, outcome.censored) {
            let at = self.dist.len();
            m.observe(&mut s[at..at + MOMENTS_LEN], a);
        }
    }
}
