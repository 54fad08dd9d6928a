//! A Gaussian body for a magnitude, from an exponentially weighted mean
//! absolute value.
//!
//! This module owns the default threshold kind. It keeps an exponentially
//! weighted mean `m` and mean square of `a = |x|` for a quantity `x` that is
//! centred on 0 (a forecast residual, a level's distance from its mean),
//! reads the deviation of `x` off the mean absolute value, `σ = m √(π/2)`
//! (exact for a Gaussian and far less moved by one outlier than a variance),
//! and gives the Gaussian tail's surprise in nats through its Chernoff bound,
//! `L = (a/σ)² / 2` (`P(|X| > a) ≤ exp(-a²/2σ²)`), which inverts in closed
//! form for the band. Heavier tails are the record stage's job
//! (the record): the body alone is what a Gaussian series needs.
//!
//! State: `[count, m, mean square]`; the mean square gives the spread of
//! `a` itself, from which the warm-up judges how well `σ` is known.

use super::Threshold;
use super::body::ew_update_mean;

/// `√(π/2)`: the ratio of a Gaussian's deviation to its mean absolute value.
pub const SQRT_HALF_PI: f64 = 1.253_314_137_315_500_3;

/// Deviation floor, in the magnitude's units (typical steps of the series
/// for a forecast residual, deviations of its level for a level): a tenth
/// of the series' own unit. Below it, errors are the model's rounding, not
/// news: a series that stood still for days has a body of exact zeros, and
/// once it moves, the forecast misses its usual value by a few hundredths
/// of a step while its weights learn (at a hundredth, such misses alerted
/// every few events). A series predicted perfectly still gets a finite
/// surprise for its first real error (one step is 10σ).
const SD_FLOOR: f64 = 0.1;

/// The floor of the deviation the winsorising below is measured in: finer
/// than [`SD_FLOOR`], since it only measures how well `σ` is known (the
/// warm-up's question), not what is news.
const SPREAD_FLOOR: f64 = 0.01;

/// Magnitudes enter the mean square (which only measures how well `σ` is
/// known) winsorised at this many deviations, so one wild value cannot hold
/// a heavy-tailed series in warm-up for ever.
const SPREAD_WINSOR: f64 = 4.0;

/// The Gaussian body threshold.
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

    /// The deviation `σ` of the quantity (state `s`).
    #[inline]
    pub fn sigma(s: &[f64]) -> f64 {
        (s[1] * SQRT_HALF_PI).max(SD_FLOOR)
    }

    /// Relative standard error of `σ`: the coefficient of variation of the
    /// magnitudes over the square root of how many were seen. `∞` before
    /// two magnitudes; 0 when every magnitude was 0 (a constant series, or
    /// one forecast perfectly: its deviation is the floor, known exactly).
    #[inline]
    pub fn relative_error(s: &[f64]) -> f64 {
        if s[0] < 2.0 {
            return f64::INFINITY;
        }
        if s[1] <= 0.0 {
            return 0.0;
        }
        let cv2 = (s[2] / (s[1] * s[1]) - 1.0).max(0.0);
        (cv2 / s[0]).sqrt()
    }
}

impl Threshold for Ewma {
    fn state_len(&self) -> usize {
        3
    }

    fn init(&self, s: &mut [f64]) {
        s.fill(0.0);
    }

    #[inline]
    fn surprise(&self, s: &[f64], a: f64) -> f64 {
        let u = a / Self::sigma(s);
        0.5 * u * u
    }

    #[inline]
    fn magnitude_at(&self, s: &[f64], surprise: f64) -> f64 {
        Self::sigma(s) * (2.0 * surprise.max(0.0)).sqrt()
    }

    #[inline]
    fn observe(&self, s: &mut [f64], a: f64) {
        let w = a.min(SPREAD_WINSOR * (s[1] * SQRT_HALF_PI).max(SPREAD_FLOOR));
        let alpha = ew_update_mean(&mut s[..2], self.horizon, self.inv_horizon, a);
        s[2] += alpha * (w * w - s[2]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surprise_is_half_u_squared_and_inverts() {
        let t = Ewma::new(100.0);
        let mut s = [0.0; 3];
        for a in [1.0, 3.0, 1.0, 3.0] {
            t.observe(&mut s, a);
        }
        // m = 2, σ = 2 √(π/2).
        let sigma = 2.0 * SQRT_HALF_PI;
        assert!((t.surprise(&s, 3.0 * sigma) - 4.5).abs() < 1e-12);
        assert!((t.magnitude_at(&s, 4.5) - 3.0 * sigma).abs() < 1e-9);
        assert_eq!(t.surprise(&s, 0.0), 0.0);
    }

    #[test]
    fn gaussian_magnitudes_give_their_deviation() {
        // |x| of a standard Gaussian, by inverse transform on a fixed grid.
        let t = Ewma::new(1e9);
        let mut s = [0.0; 3];
        let n = 20_000;
        for i in 0..n {
            let p = (i as f64 + 0.5) / n as f64;
            // Quantile of |Z| at p: Φ⁻¹((1 + p) / 2), by bisection.
            let (mut lo, mut hi) = (0.0f64, 10.0f64);
            for _ in 0..60 {
                let mid = 0.5 * (lo + hi);
                if libm_erf(mid / std::f64::consts::SQRT_2) < p {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            t.observe(&mut s, 0.5 * (lo + hi));
        }
        assert!((Ewma::sigma(&s) - 1.0).abs() < 0.01, "{}", Ewma::sigma(&s));
        // CV of |Z| is √(π/2 - 1) ≈ 0.756.
        let rel = Ewma::relative_error(&s) * (n as f64).sqrt();
        assert!((rel - 0.756).abs() < 0.01, "{rel}");
    }

    /// erf by its Abramowitz & Stegun 7.1.26 approximation (|error| < 1.5e-7).
    fn libm_erf(x: f64) -> f64 {
        let t = 1.0 / (1.0 + 0.327_591_1 * x);
        let y = t
            * (0.254_829_592
                + t * (-0.284_496_736
                    + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
        1.0 - y * (-x * x).exp()
    }

    #[test]
    fn flat_zero_magnitudes_make_any_error_surprising() {
        let t = Ewma::new(100.0);
        let mut s = [0.0; 3];
        for _ in 0..100 {
            t.observe(&mut s, 0.0);
        }
        assert_eq!(t.surprise(&s, 0.0), 0.0);
        // The floor is a tenth of the unit: one unit is 10σ.
        assert!(t.surprise(&s, 1.0) >= 50.0);
        assert!(t.surprise(&s, 0.05) < 0.5, "a twentieth of a step");
        // Every magnitude 0: the deviation is the floor, known exactly, so
        // a constant series is trusted (and its first change surprising).
        assert_eq!(Ewma::relative_error(&s), 0.0);
    }
}
