//! Exponentially weighted mean/variance z-score of the residual magnitude.
//!
//! This module owns the simplest threshold: it keeps an exponentially
//! weighted mean μ and variance σ² of `a = |residual|` and reads surprise off
//! a Gaussian tail, `L = max(z, 0)² / 2` with `z = (a - μ) / σ` (the Chernoff
//! bound of the Gaussian upper tail, `P(Z > z) ≤ exp(-z²/2)`, in nats). The
//! bound is exact enough to rank events and inverts in closed form, which the
//! band needs. An outlier enters σ² with its full weight, so the threshold
//! inflates after an anomaly and repeated alerts on its echo are rarer.
//!
//! State: `[count, μ, σ²]`.

use super::{Threshold, ew_update};

/// Deviation floor (in residual units, i.e. deviations of the series): a
/// series that was predicted perfectly still has a finite z for the first
/// error.
const SD_FLOOR: f64 = 1e-6;

/// The EWMA z-score threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ewma {
    /// Events after which old magnitudes fade at rate `1 / horizon`.
    horizon: f64,
    /// `1 / horizon`.
    inv_horizon: f64,
}

impl Ewma {
    /// The threshold with memory `horizon` events.
    pub fn new(horizon: f64) -> Self {
        Self {
            horizon,
            inv_horizon: 1.0 / horizon,
        }
    }

    #[inline]
    fn sd(s: &[f64]) -> f64 {
        s[3].max(SD_FLOOR)
    }
}

impl Threshold for Ewma {
    fn state_len(&self) -> usize {
        4
    }

    fn init(&self, s: &mut [f64]) {
        s.fill(0.0);
    }

    #[inline]
    fn surprise(&self, s: &[f64], a: f64) -> f64 {
        let z = ((a - s[1]) / Self::sd(s)).max(0.0);
        0.5 * z * z
    }

    #[inline]
    fn magnitude_at(&self, s: &[f64], surprise: f64) -> f64 {
        s[1] + Self::sd(s) * (2.0 * surprise.max(0.0)).sqrt()
    }

    #[inline]
    fn observe(&self, s: &mut [f64], a: f64) {
        ew_update(&mut s[..3], self.horizon, self.inv_horizon, a);
        s[3] = s[2].sqrt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surprise_is_half_z_squared_and_inverts() {
        let t = Ewma::new(100.0);
        let mut s = [0.0; 4];
        for a in [1.0, 3.0, 1.0, 3.0] {
            t.observe(&mut s, a);
        }
        // μ = 2, σ = 1.
        assert!((t.surprise(&s, 5.0) - 4.5).abs() < 1e-12);
        assert_eq!(t.surprise(&s, 1.0), 0.0);
        assert!((t.magnitude_at(&s, 4.5) - 5.0).abs() < 1e-12);
    }

    #[test]
    fn flat_zero_residuals_make_any_error_surprising() {
        let t = Ewma::new(100.0);
        let mut s = [0.0; 4];
        for _ in 0..100 {
            t.observe(&mut s, 0.0);
        }
        assert_eq!(t.surprise(&s, 0.0), 0.0);
        assert!(t.surprise(&s, 1.0) > 1e10);
    }

    #[test]
    fn an_outlier_inflates_the_threshold() {
        let t = Ewma::new(200.0);
        let mut s = [0.0; 4];
        for i in 0..500 {
            t.observe(&mut s, (i % 2) as f64);
        }
        let before = t.surprise(&s, 6.0);
        t.observe(&mut s, 30.0);
        assert!(t.surprise(&s, 6.0) < before / 2.0);
    }
}
