//! The body of a magnitude's distribution: the threshold *kinds*.
//!
//! This module owns the [`Threshold`] shape every kind has ([`Ewma`] by
//! default, [`Quantile`], [`Spot`]), the `Kind` a config selects, and the
//! exponentially weighted means the kinds share. What lies beyond the body
//! (the records, the channels) is elsewhere.

use super::MAX_SURPRISE;
use super::ewma::Ewma;
use super::quantile::Quantile;
use super::spot::Spot;

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

/// The configured kind, dispatched statically so that its code inlines into
/// the per-event path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    Ewma(Ewma),
    Quantile(Quantile),
    Spot(Spot),
}

/// Runs `$body` with `$t` bound to the concrete kind.
macro_rules! with_kind {
    ($kind:expr, $t:ident => $body:expr) => {
        match $kind {
            Kind::Ewma($t) => $body,
            Kind::Quantile($t) => $body,
            Kind::Spot($t) => $body,
        }
    };
}

impl Kind {
    /// How many `f64` of state the kind keeps.
    #[inline]
    pub(crate) fn state_len(&self) -> usize {
        with_kind!(self, t => t.state_len())
    }

    /// Sets fresh state.
    pub(crate) fn init(&self, state: &mut [f64]) {
        with_kind!(self, t => t.init(state))
    }

    /// Surprise of magnitude `a`, never NaN and at most [`MAX_SURPRISE`].
    #[inline]
    pub(crate) fn surprise(&self, state: &[f64], a: f64) -> f64 {
        let l = with_kind!(self, t => t.surprise(state, a));
        if l.is_nan() { 0.0 } else { l.min(MAX_SURPRISE) }
    }

    /// The magnitude whose surprise is `surprise`.
    #[inline]
    pub(crate) fn magnitude_at(&self, state: &[f64], surprise: f64) -> f64 {
        with_kind!(self, t => t.magnitude_at(state, surprise))
    }

    /// Learns magnitude `a`.
    #[inline]
    pub(crate) fn observe(&self, state: &mut [f64], a: f64) {
        with_kind!(self, t => t.observe(state, a))
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
