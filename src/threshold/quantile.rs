//! Streaming quantiles of the residual magnitude (P², Jain & Chlamtac 1985)
//! with an exponential tail beyond them.
//!
//! This module owns the quantile threshold. Five P² markers track the
//! minimum, the `q/2`, `q` and `(1+q)/2` quantiles and the maximum of
//! `a = |residual|` in constant space without storing the stream. Surprise
//! is read off the line through the `q/2` and `q` markers on a log-tail
//! scale, relative to the typical magnitude: 0 at the `q/2` marker (about
//! the median) and below, `ln((1 - q/2) / (1 - q))` at the `q` marker, and
//! growing linearly in `a` beyond (an exponential tail, the maximum-entropy
//! guess when only two quantiles are known). Linear in `a` means the band
//! inverts in closed form.
//!
//! P² estimates the quantiles of the whole history (it does not forget); use
//! it for stable series, and [`super::ewma`] or [`super::spot`] when the noise
//! level drifts.
//!
//! State: `[heights h0..h4, positions n0..n4, count]`.

use super::Threshold;

/// Floor on the spread between the two quantiles, in residual units.
const SPREAD_FLOOR: f64 = 1e-6;

/// The P² quantile threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantile {
    /// The tracked upper quantile, in (0.5, 1).
    pub q: f64,
}

impl Quantile {
    /// Marker probabilities.
    #[inline]
    fn probs(&self) -> [f64; 5] {
        [0.0, self.q / 2.0, self.q, (1.0 + self.q) / 2.0, 1.0]
    }

    /// (height, surprise) of the two reference points and the slope of
    /// surprise per unit of magnitude.
    #[inline]
    fn line(&self, s: &[f64]) -> (f64, f64, f64) {
        let (h1, h2) = if s[10] >= 5.0 {
            (s[1], s[2])
        } else {
            // Too few points for markers: a flat line at 0, so every early
            // error is scored against a small spread (warm-up hides it).
            (0.0, 0.0)
        };
        // Surprise relative to the median, as the other kinds measure it
        // from a typical magnitude: a perfect forecast is not surprising.
        let l1 = 0.0;
        let l2 = ((1.0 - self.q / 2.0) / (1.0 - self.q)).ln();
        let slope = (l2 - l1) / (h2 - h1).max(SPREAD_FLOOR);
        (h1, l1, slope)
    }
}

/// Piecewise-parabolic (P²) prediction of marker `i` moved by `d` (±1).
fn parabolic(h: &[f64; 5], n: &[f64; 5], i: usize, d: f64) -> f64 {
    h[i] + d / (n[i + 1] - n[i - 1])
        * ((n[i] - n[i - 1] + d) * (h[i + 1] - h[i]) / (n[i + 1] - n[i])
            + (n[i + 1] - n[i] - d) * (h[i] - h[i - 1]) / (n[i] - n[i - 1]))
}

impl Threshold for Quantile {
    fn state_len(&self) -> usize {
        11
    }

    fn init(&self, s: &mut [f64]) {
        s.fill(0.0);
    }

    #[inline]
    fn surprise(&self, s: &[f64], a: f64) -> f64 {
        let (h1, l1, slope) = self.line(s);
        (l1 + (a - h1) * slope).max(0.0)
    }

    #[inline]
    fn magnitude_at(&self, s: &[f64], surprise: f64) -> f64 {
        let (h1, l1, slope) = self.line(s);
        h1 + (surprise.max(0.0) - l1) / slope
    }

    fn observe(&self, s: &mut [f64], a: f64) {
        let count = s[10] as usize;
        s[10] += 1.0;
        if count < 5 {
            // Collect the first five values sorted; they seed the markers.
            let mut i = count;
            while i > 0 && s[i - 1] > a {
                s[i] = s[i - 1];
                i -= 1;
            }
            s[i] = a;
            if count == 4 {
                s[5..10].copy_from_slice(&[1.0, 2.0, 3.0, 4.0, 5.0]);
            }
            return;
        }
        let mut h = [s[0], s[1], s[2], s[3], s[4]];
        let mut n = [s[5], s[6], s[7], s[8], s[9]];
        let k = if a < h[0] {
            h[0] = a;
            0
        } else if a >= h[4] {
            h[4] = a;
            3
        } else {
            (0..4).find(|&i| a < h[i + 1]).unwrap_or(3)
        };
        for ni in n[k + 1..].iter_mut() {
            *ni += 1.0;
        }
        let total = s[10];
        let probs = self.probs();
        for i in 1..4 {
            let desired = 1.0 + (total - 1.0) * probs[i];
            let d = desired - n[i];
            if (d >= 1.0 && n[i + 1] - n[i] > 1.0) || (d <= -1.0 && n[i - 1] - n[i] < -1.0) {
                let d = d.signum();
                let p = parabolic(&h, &n, i, d);
                h[i] = if h[i - 1] < p && p < h[i + 1] {
                    p
                } else {
                    // Linear fallback keeps the markers ordered.
                    let j = if d > 0.0 { i + 1 } else { i - 1 };
                    h[i] + d * (h[j] - h[i]) / (n[j] - n[i])
                };
                n[i] += d;
            }
        }
        s[..5].copy_from_slice(&h);
        s[5..10].copy_from_slice(&n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_uniform_quantiles() {
        let t = Quantile { q: 0.9 };
        let mut s = [0.0; 11];
        // A deterministic permutation of 0..10000 (7919 is prime to 10000).
        for i in 0..10_000u64 {
            t.observe(&mut s, ((i * 7919) % 10_000) as f64 / 10_000.0);
        }
        assert!((s[1] - 0.45).abs() < 0.02, "median-ish {}", s[1]);
        assert!((s[2] - 0.9).abs() < 0.02, "q {}", s[2]);
        assert_eq!(s[0], 0.0);
        assert_eq!(s[4], 0.9999);
    }

    #[test]
    fn surprise_hits_the_reference_points_and_inverts() {
        let t = Quantile { q: 0.9 };
        let mut s = [0.0; 11];
        for i in 0..1000u64 {
            t.observe(&mut s, ((i * 7919) % 1000) as f64);
        }
        let l_q = (0.55f64 / 0.1).ln();
        assert!((t.surprise(&s, s[2]) - l_q).abs() < 1e-9);
        let a = t.magnitude_at(&s, 7.0);
        assert!((t.surprise(&s, a) - 7.0).abs() < 1e-9);
        assert!(t.surprise(&s, 2.0 * s[2]) > t.surprise(&s, s[2]));
    }

    #[test]
    fn flat_zero_residuals_make_any_error_surprising() {
        let t = Quantile { q: 0.99 };
        let mut s = [0.0; 11];
        for _ in 0..100 {
            t.observe(&mut s, 0.0);
        }
        assert!(t.surprise(&s, 0.0) < 1.0);
        assert!(t.surprise(&s, 1.0) > 1e5);
    }
}
