//! Peaks over threshold with a generalised Pareto tail (SPOT/DSPOT, Siffer
//! et al., KDD 2017), in constant space.
//!
//! This module owns the SPOT threshold. The paper keeps every peak and refits
//! the generalised Pareto distribution (GPD) by maximum likelihood; here the
//! tail is fitted by the method of moments on exponentially weighted moments
//! of the excesses, so a series costs seven numbers and an event O(1) work,
//! and old peaks fade as the series changes (the "drift" part of DSPOT is
//! done upstream: residuals are already relative to the model's forecast).
//!
//! On `a = |residual|`:
//! - the initial threshold is `t = μ + k σ` from exponentially weighted
//!   moments of `a`, with `k = √(2 ln(1/(1-q)))` (the Gaussian-tail level of
//!   the `q` quantile);
//! - `φ` is the exponentially weighted rate of events above `t`;
//! - excesses `y = a - t` feed the weighted mean `m` and variance `v`, and
//!   the method of moments gives `ξ = (1 - m²/v) / 2`, `σ = m (1 - ξ)`
//!   (`ξ` limited to [-0.5, 0.5]; an exponential tail, `ξ = 0`, until a few
//!   peaks are seen);
//! - surprise above `t` is `-ln φ + ln(1 + ξ y / σ) / ξ` (the GPD tail in
//!   nats), and below `t` it rises linearly from 0 at `μ` to `-ln φ` at `t`.
//!
//! Heavy-tailed residuals (spiky metrics) fit `ξ > 0` and so score big
//! errors lower than a Gaussian would; a peak enters the excess moments and
//! inflates the tail, which damps alerts on its echoes.
//!
//! State: `[count, μ, σ², φ, m, second moment of excesses, peaks]`.

use super::Threshold;
use super::body::ew_update;

/// Deviation floor of `a`, in residual units.
const SD_FLOOR: f64 = 1e-6;
/// Peaks needed before the GPD shape is fitted.
const MIN_PEAKS: f64 = 8.0;
/// Bounds of the fitted shape; beyond them the method of moments is
/// unreliable (the variance of the GPD is infinite for ξ ≥ 0.5).
const XI_RANGE: (f64, f64) = (-0.5, 0.5);

/// The SPOT threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spot {
    /// Level of the initial threshold, in (0.5, 1).
    q: f64,
    /// Events after which old magnitudes fade at rate `1 / horizon`.
    horizon: f64,
    /// `1 / horizon`.
    inv_horizon: f64,
}

/// The fitted tail at one moment.
struct Tail {
    mu: f64,
    t: f64,
    /// Surprise at `t`: `-ln φ`.
    lt: f64,
    xi: f64,
    sigma: f64,
}

impl Spot {
    /// The threshold at level `q` with memory `horizon` events.
    pub fn new(q: f64, horizon: f64) -> Self {
        Self {
            q,
            horizon,
            inv_horizon: 1.0 / horizon,
        }
    }

    #[inline]
    fn k(&self) -> f64 {
        (2.0 * (1.0 / (1.0 - self.q)).ln()).sqrt()
    }

    #[inline]
    fn tail(&self, s: &[f64]) -> Tail {
        let sd = s[2].sqrt().max(SD_FLOOR);
        let mu = s[1];
        let t = mu + self.k() * sd;
        let phi = if s[0] > 0.0 { s[3] } else { 1.0 - self.q };
        let lt = -(phi.clamp(1e-9, 0.5)).ln();
        let (xi, sigma) = if s[6] >= MIN_PEAKS {
            let m = s[4].max(SD_FLOOR);
            let v = (s[5] - s[4] * s[4]).max(SD_FLOOR * SD_FLOOR);
            let xi = (0.5 * (1.0 - m * m / v)).clamp(XI_RANGE.0, XI_RANGE.1);
            (xi, m * (1.0 - xi))
        } else {
            (0.0, sd)
        };
        Tail {
            mu,
            t,
            lt,
            xi,
            sigma,
        }
    }
}

impl Threshold for Spot {
    fn state_len(&self) -> usize {
        7
    }

    fn init(&self, s: &mut [f64]) {
        s.copy_from_slice(&[0.0, 0.0, 0.0, 1.0 - self.q, 0.0, 0.0, 0.0]);
    }

    #[inline]
    fn surprise(&self, s: &[f64], a: f64) -> f64 {
        let tl = self.tail(s);
        if a <= tl.t {
            return (tl.lt * (a - tl.mu) / (tl.t - tl.mu)).max(0.0);
        }
        let y = (a - tl.t) / tl.sigma;
        let excess = if tl.xi.abs() < 1e-9 {
            y
        } else if tl.xi > 0.0 {
            (tl.xi * y).ln_1p() / tl.xi
        } else {
            // Bounded tail: past the end point the log would be undefined;
            // keep surprise finite and increasing there.
            let end = -1.0 / tl.xi;
            let inside = y.min(end * (1.0 - 1e-12));
            (tl.xi * inside).ln_1p() / tl.xi + (y - inside)
        };
        tl.lt + excess
    }

    #[inline]
    fn magnitude_at(&self, s: &[f64], surprise: f64) -> f64 {
        let tl = self.tail(s);
        let l = surprise.max(0.0);
        if l <= tl.lt {
            return tl.mu + (tl.t - tl.mu) * l / tl.lt;
        }
        let d = l - tl.lt;
        let y = if tl.xi.abs() < 1e-9 {
            d
        } else if tl.xi > 0.0 {
            (tl.xi * d).exp_m1() / tl.xi
        } else {
            let end = -1.0 / tl.xi;
            let inside = end * (1.0 - 1e-12);
            let l_end = (tl.xi * inside).ln_1p() / tl.xi;
            if d <= l_end {
                (tl.xi * d).exp_m1() / tl.xi
            } else {
                inside + (d - l_end)
            }
        };
        tl.t + y * tl.sigma
    }

    #[inline]
    fn observe(&self, s: &mut [f64], a: f64) {
        let tl = self.tail(s);
        let n = (s[0] + 1.0).min(self.horizon);
        let above = a > tl.t;
        s[3] += (f64::from(u8::from(above)) - s[3]) / n;
        if above && s[0] >= 1.0 {
            let y = a - tl.t;
            s[6] += 1.0;
            // Peaks are rarer than events; their memory is scaled so that
            // they fade over about the same stretch of time.
            let np = s[6].min((self.horizon * (1.0 - self.q)).max(MIN_PEAKS));
            s[4] += (y - s[4]) / np;
            s[5] += (y * y - s[5]) / np;
        }
        ew_update(&mut s[..3], self.horizon, self.inv_horizon, a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trained(values: impl Iterator<Item = f64>) -> (Spot, [f64; 7]) {
        let t = Spot::new(0.98, 1000.0);
        let mut s = [0.0; 7];
        t.init(&mut s);
        for a in values {
            t.observe(&mut s, a);
        }
        (t, s)
    }

    #[test]
    fn surprise_is_monotone_and_inverts() {
        // |Laplace-like| magnitudes: a deterministic exponential sample.
        let (t, s) = trained((1..5000).map(|i| -((i as f64 * 0.618_034) % 1.0).max(1e-6).ln()));
        let mut last = -1.0;
        for k in 0..200 {
            let a = k as f64 * 0.1;
            let l = t.surprise(&s, a);
            assert!(l >= last, "a {a}: {l} < {last}");
            last = l;
            if l > 0.0 {
                let back = t.magnitude_at(&s, l);
                assert!((back - a).abs() < 1e-6 * a.max(1.0), "{a} -> {l} -> {back}");
            }
        }
    }

    #[test]
    fn exponential_magnitudes_fit_a_near_zero_shape() {
        let (t, s) = trained((1..20000).map(|i| -((i as f64 * 0.618_034) % 1.0).max(1e-9).ln()));
        let tl = t.tail(&s);
        assert!(tl.xi.abs() < 0.2, "xi {}", tl.xi);
        // P(a > 10) = e^-10 for Exp(1); the fitted tail should be in range.
        let l = t.surprise(&s, 10.0);
        assert!((6.0..14.0).contains(&l), "{l}");
    }

    #[test]
    fn flat_zero_residuals_make_any_error_surprising() {
        let (t, s) = trained(std::iter::repeat_n(0.0, 200));
        assert_eq!(t.surprise(&s, 0.0), 0.0);
        assert!(t.surprise(&s, 1.0) > 1e3);
    }
}
