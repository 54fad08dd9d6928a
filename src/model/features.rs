//! Feature extraction shared by the models: online standardisation of the
//! value, a ring of recent raw values, and calendar (Fourier) features.
//!
//! This module owns how a raw value becomes a model input. It stores nothing
//! itself: every piece of per-series state lives in the model's slab (a
//! single `Box<[f64]>`), and these helpers read and write slices of it, so a
//! series costs one allocation.
//!
//! Why raw values in the ring and not standardised ones: the standardiser
//! moves with the series, and re-standardising the lags with the *current*
//! mean and deviation keeps every input on today's scale after a level shift,
//! instead of mixing scales from the past.

use serde::{Deserialize, Serialize};

/// Inputs are clamped to ±this many deviations, so that one wild value (or a
/// change on a series that was flat, whose deviation is tiny) cannot push the
/// optimizer into huge steps.
pub const INPUT_CLAMP: f64 = 10.0;

/// Milliseconds per day.
const DAY_MS: i64 = 86_400_000;

/// Relative floor on the deviation: values from 1e-9 to 1e12 must all
/// standardise to finite numbers, and a flat series has zero variance. Far
/// above f64 rounding (2e-16), far below any real relative change, so a
/// large offset (a counter near 1e9) does not blunt the scale.
const REL_SD_FLOOR: f64 = 1e-12;

/// Absolute floor on the deviation (below any meaningful metric resolution,
/// above subnormal numbers).
const ABS_SD_FLOOR: f64 = 1e-12;

/// Online scaling of one series' values: an exponentially weighted mean of
/// the values and an exponentially weighted mean square of their first
/// differences, whose horizon grows from 1 to `horizon` events, so the first
/// events are averaged equally (fast warm-up) and later ones forget at rate
/// `1 / horizon`.
///
/// The unit of every model input and residual is the RMS of the first
/// differences (the typical step of the series), not the deviation of the
/// level: a level shift enters it once, as one large step, instead of
/// inflating the level's variance for a whole horizon and muting every
/// residual after the shift.
///
/// It also keeps the variance of the level, for the level channel of the
/// threshold (how far a value is from what the series usually is).
///
/// State layout in a slab: `[count, mean, mean square of differences,
/// variance of the level, scale, level scale, mean size of the non-zero
/// differences, how many of them were seen (saturating at the horizon)]` (the two scales are kept so the per-event path takes no
/// square roots to read them).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    /// Events after which the weights stop growing.
    pub horizon: f64,
}

/// Largest step, in typical steps, that the typical step learns.
const STEP_CLIP: f64 = 10.0;

/// Number of `f64` a [`Standardizer`] keeps in the slab.
pub const STANDARDIZER_LEN: usize = 8;

/// The typical step is at least this share of the typical *change* (the
/// mean size of the steps that are not zero): a series that mostly stands
/// still (a replica count, a config gauge, an error counter) keeps a unit
/// of its own size instead of collapsing to the float floor, where every
/// change would be the same "impossible" residual and every band zero
/// wide.
const CHANGE_SHARE: f64 = 0.1;

impl Standardizer {
    /// Mean of the series so far (slab view `s`).
    #[inline]
    pub fn mean(s: &[f64]) -> f64 {
        s[1]
    }

    /// The scale (RMS of the first differences), floored so it is never
    /// zero: relative to the mean's magnitude (a flat series at 1e12 and one
    /// at 1e-9 both get a floor on their own scale) and absolutely.
    #[inline]
    pub fn scale(s: &[f64]) -> f64 {
        // Before the first update the stored scale is 0.
        s[4].max(ABS_SD_FLOOR)
    }

    /// The deviation of the level (floored like [`Standardizer::scale`]).
    #[inline]
    pub fn level_scale(s: &[f64]) -> f64 {
        s[5].max(ABS_SD_FLOOR)
    }

    /// `(x - origin) * inv_scale`, clamped to ±[`INPUT_CLAMP`] (for callers
    /// that standardise many values with one scale).
    #[inline]
    pub fn z_inv(x: f64, origin: f64, inv_scale: f64) -> f64 {
        ((x - origin) * inv_scale).clamp(-INPUT_CLAMP, INPUT_CLAMP)
    }

    /// `(x - origin) / scale`, clamped to ±[`INPUT_CLAMP`].
    #[inline]
    pub fn z(s: &[f64], x: f64, origin: f64) -> f64 {
        ((x - origin) / Self::scale(s)).clamp(-INPUT_CLAMP, INPUT_CLAMP)
    }

    /// The series now sits at `x`, its new normal: the running mean moves
    /// there, and the typical step and the level's deviation are learned
    /// afresh from the next events (equal weights), as a new series'
    /// are: the episode that led here taught them nothing, and a series
    /// that went from idle to busy has a new step. (The typical *change*,
    /// the unit's floor, stays.)
    pub fn rebase(s: &mut [f64], x: f64) {
        s[0] = s[0].min(1.0);
        s[1] = x;
    }

    /// Learns `x` (after it has been scored); `prev` is the value before it,
    /// if any.
    #[inline]
    pub fn update(&self, s: &mut [f64], x: f64, prev: Option<f64>) {
        let n = (s[0] + 1.0).min(self.horizon);
        s[0] = n;
        let alpha = 1.0 / n;
        let delta = x - s[1];
        s[1] += alpha * delta;
        s[3] = (1.0 - alpha) * (s[3] + alpha * delta * delta);
        if let Some(p) = prev {
            // The first difference has weight from the second event on; the
            // count lags by one, which only matters during warm-up.
            // One wild step (a glitch, a level shift) counts as at most
            // STEP_CLIP typical steps, so the unit of every residual is not
            // blown up for a whole horizon by one event; a lasting change
            // of volatility still moves it within a few dozen events.
            let raw = x - p;
            if raw != 0.0 {
                // The typical change, from the changes only (equal weights
                // at first), one wild change counting as at most ten.
                let c = (s[7] + 1.0).min(self.horizon);
                s[7] = c;
                let size = if c > 5.0 {
                    raw.abs().min(STEP_CLIP * s[6])
                } else {
                    raw.abs()
                };
                s[6] += (size - s[6]) / c;
            }
            let d = raw;
            let d = if n > 20.0 && s[4] > 0.0 {
                d.clamp(-STEP_CLIP * s[4], STEP_CLIP * s[4])
            } else {
                d
            };
            let beta = 1.0 / (n - 1.0).max(1.0);
            s[2] += beta * (d * d - s[2]);
        }
        Self::rescale(s);
    }

    /// Learns `x`, which was anomalous: it teaches nothing of the series'
    /// scale, except where the series has none yet. A series that has
    /// never changed has no unit (its typical step is the float floor, in
    /// which any change is some 10¹¹ steps, and a residual body learned in
    /// that unit is nonsense in any later one), so its first change,
    /// anomalous or not, sets the typical change its later steps are
    /// measured against.
    #[inline]
    pub fn update_anomalous(&self, s: &mut [f64], x: f64, prev: Option<f64>) {
        if let Some(p) = prev
            && s[7] == 0.0
            && x != p
        {
            s[7] = 1.0;
            s[6] = (x - p).abs();
            Self::rescale(s);
        }
    }

    /// The scales from the moments, floored.
    #[inline]
    fn rescale(s: &mut [f64]) {
        let floor = (REL_SD_FLOOR * s[1].abs()).max(ABS_SD_FLOOR);
        s[4] = s[2].sqrt().max(CHANGE_SHARE * s[6]).max(floor);
        s[5] = s[3].sqrt().max(floor);
    }
}

/// A ring of the last `len` raw values. Slab layout: `[filled, head,
/// v_0 .. v_{len-1}]`; `head` is where the next value goes.
pub struct Ring;

/// Number of `f64` of a ring of `len` values, header included.
#[inline]
pub const fn ring_len(len: usize) -> usize {
    2 + len
}

impl Ring {
    /// How many values are held (up to the capacity).
    #[inline]
    pub fn filled(r: &[f64]) -> usize {
        r[0] as usize
    }

    /// The `k`-th most recent value (`k = 0` is the newest). The caller checks
    /// `k < filled`.
    #[inline]
    pub fn get(r: &[f64], k: usize) -> f64 {
        let cap = r.len() - 2;
        let head = r[1] as usize;
        // head points past the newest; step back k + 1 slots, wrapping.
        let idx = (head + cap - 1 - k % cap) % cap;
        r[2 + idx]
    }

    /// Copies the held values into `out`, newest first, and returns how many
    /// were copied (at most `out.len()`). One pass, no per-element modulo.
    #[inline]
    pub fn newest_first(r: &[f64], out: &mut [f64]) -> usize {
        let cap = r.len() - 2;
        let filled = Self::filled(r).min(out.len());
        let head = r[1] as usize;
        let vals = &r[2..];
        // Walk back from head - 1 to 0, then from cap - 1 down.
        let (before, after) = vals.split_at(head);
        let wrapped = before.iter().rev().chain(after.iter().rev());
        for (o, v) in out[..filled].iter_mut().zip(wrapped) {
            *o = *v;
        }
        debug_assert!(cap == 0 || filled <= cap);
        filled
    }

    /// Fills the ring with `x`.
    pub fn fill(r: &mut [f64], x: f64) {
        let cap = r.len() - 2;
        r[0] = cap as f64;
        r[1] = 0.0;
        r[2..].fill(x);
    }

    /// Appends `x`, dropping the oldest value when full.
    #[inline]
    pub fn push(r: &mut [f64], x: f64) {
        let cap = r.len() - 2;
        if cap == 0 {
            return;
        }
        let head = r[1] as usize;
        r[2 + head] = x;
        // A compare instead of `%`: an integer division costs more here than
        // the rest of the push.
        r[1] = if head + 1 == cap {
            0.0
        } else {
            (head + 1) as f64
        };
        if (r[0] as usize) < cap {
            r[0] += 1.0;
        }
    }
}

/// Calendar features of a timestamp: `daily` harmonics of the time of day and
/// `weekly` harmonics of the time of week, each as a (sin, cos) pair, so the
/// model can learn daily and weekly shapes without knowing the sampling rate
/// (irregular sampling and gaps do not disturb them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeFeatures {
    /// Harmonics of the day (0 disables).
    pub daily: usize,
    /// Harmonics of the week (0 disables).
    pub weekly: usize,
}

impl TimeFeatures {
    /// Number of features written by [`TimeFeatures::write`].
    #[inline]
    pub fn len(&self) -> usize {
        2 * (self.daily + self.weekly)
    }

    /// True when no calendar feature is used.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the features of `ts_ms` (milliseconds since the Unix epoch, UTC)
    /// into `out[..self.len()]`.
    #[inline]
    pub fn write(&self, ts_ms: i64, out: &mut [f64]) {
        if self.is_empty() {
            return;
        }
        const INV_DAY: f64 = 1.0 / DAY_MS as f64;
        const INV_WEEK: f64 = 1.0 / (7 * DAY_MS) as f64;
        let day_phase = turns(ts_ms, INV_DAY);
        // Days since the epoch, modulo 7; 1970-01-01 was a Thursday, which
        // only shifts the phase and does not matter to a learned model.
        let week_phase = if self.weekly > 0 {
            turns(ts_ms, INV_WEEK)
        } else {
            0.0
        };
        let mut i = 0;
        for (phase, harmonics) in [(day_phase, self.daily), (week_phase, self.weekly)] {
            if harmonics == 0 {
                continue;
            }
            // One sin_cos per period; higher harmonics by the angle-addition
            // recurrence (sin/cos are the costliest part of the features).
            let (s1, c1) = sin_cos_turns(phase);
            let (mut s, mut c) = (s1, c1);
            for _ in 0..harmonics {
                out[i] = s;
                out[i + 1] = c;
                i += 2;
                (s, c) = (s * c1 + c * s1, c * c1 - s * s1);
            }
        }
    }
}

/// The fraction of a period (of `1 / inv_period` ms) elapsed at `ts_ms`, in
/// [0, 1]. Floating point instead of an integer remainder: a 64-bit division
/// costs more than the rest of the features, and `ts_ms` is exact in `f64`
/// for ±285,000 years, so the phase is exact to well under a millisecond.
#[inline]
fn turns(ts_ms: i64, inv_period: f64) -> f64 {
    let x = ts_ms as f64 * inv_period;
    let f = x - (x as i64) as f64;
    // Truncation rounds towards zero; before 1970 the fraction is negative.
    if f < 0.0 { f + 1.0 } else { f }
}

/// `sin` and `cos` of `turns` full turns (angle `2π·turns`), for `turns` in
/// [0, 1), to about 1e-11. A fixed polynomial: as fast as a few
/// multiplications, and bit-identical on every platform (libm's `sin_cos`
/// is the costliest step of the regression otherwise, and its last bit is
/// not specified).
#[inline]
pub fn sin_cos_turns(turns: f64) -> (f64, f64) {
    // Quadrant q and a remainder angle in [-π/4, π/4]; turns ≥ 0, so the
    // cast truncates like floor.
    let q4 = turns * 4.0;
    let q = (q4 + 0.5) as i64;
    let t = (q4 - q as f64) * std::f64::consts::FRAC_PI_2;
    let t2 = t * t;
    // Taylor series to t^11 / t^12 in Horner form with reciprocal constants
    // (multiplications, not divisions, on the hot path); the first omitted
    // terms are below 1e-11 on [-π/4, π/4].
    const S: [f64; 5] = [1.0 / 6.0, 1.0 / 20.0, 1.0 / 42.0, 1.0 / 72.0, 1.0 / 110.0];
    const C: [f64; 6] = [
        1.0 / 2.0,
        1.0 / 12.0,
        1.0 / 30.0,
        1.0 / 56.0,
        1.0 / 90.0,
        1.0 / 132.0,
    ];
    let mut s = 1.0;
    for k in S.iter().rev() {
        s = 1.0 - t2 * k * s;
    }
    let s = t * s;
    let mut c = 1.0;
    for k in C.iter().rev() {
        c = 1.0 - t2 * k * c;
    }
    match q.rem_euclid(4) {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_is_the_rms_of_differences() {
        let st = Standardizer { horizon: 100.0 };
        let mut s = [0.0; STANDARDIZER_LEN];
        let mut prev = None;
        for x in [1.0, 3.0, 1.0, 3.0, 1.0] {
            st.update(&mut s, x, prev);
            prev = Some(x);
        }
        assert_eq!(Standardizer::mean(&s), 1.8);
        assert_eq!(Standardizer::scale(&s), 2.0);
        assert_eq!(Standardizer::z(&s, 5.0, 1.0), 2.0);
    }

    #[test]
    fn flat_series_has_a_scale_relative_floor_and_clamped_inputs() {
        let st = Standardizer { horizon: 10.0 };
        for level in [1e-9, 1.0, 1e12] {
            let mut s = [0.0; STANDARDIZER_LEN];
            for _ in 0..50 {
                st.update(&mut s, level, Some(level));
            }
            assert_eq!(Standardizer::z(&s, level, level), 0.0);
            let sd = Standardizer::scale(&s);
            assert!(sd > 0.0 && sd <= (level * 1e-12).max(1e-12), "{sd}");
            assert_eq!(Standardizer::z(&s, level * 2.0, level), INPUT_CLAMP);
        }
    }

    #[test]
    fn ring_keeps_the_newest_values() {
        let mut r = [0.0; ring_len(3)];
        for x in 1..=5 {
            Ring::push(&mut r, x as f64);
        }
        assert_eq!(Ring::filled(&r), 3);
        let mut out = [0.0; 4];
        assert_eq!(Ring::newest_first(&r, &mut out), 3);
        assert_eq!(out[..3], [5.0, 4.0, 3.0]);
        assert_eq!(
            [Ring::get(&r, 0), Ring::get(&r, 1), Ring::get(&r, 2)],
            [5.0, 4.0, 3.0]
        );
    }

    #[test]
    fn polynomial_sin_cos_matches_libm() {
        for i in 0..10_000 {
            let x = i as f64 / 10_000.0;
            let (s, c) = sin_cos_turns(x);
            let (es, ec) = (std::f64::consts::TAU * x).sin_cos();
            assert!(
                (s - es).abs() < 1e-10 && (c - ec).abs() < 1e-10,
                "{x}: {s} {c}"
            );
        }
    }

    #[test]
    fn time_features_are_periodic() {
        let tf = TimeFeatures {
            daily: 2,
            weekly: 1,
        };
        let mut a = [0.0; 6];
        let mut b = [0.0; 6];
        tf.write(3 * 3_600_000, &mut a);
        tf.write(3 * 3_600_000 + 7 * DAY_MS, &mut b);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-9, "{a:?} {b:?}");
        }
        // 06:00 is a quarter day: sin = 1, cos = 0 for the first harmonic.
        tf.write(6 * 3_600_000, &mut a);
        assert!((a[0] - 1.0).abs() < 1e-12 && a[1].abs() < 1e-12);
        // Negative timestamps (before 1970) stay in phase.
        tf.write(6 * 3_600_000 - DAY_MS, &mut b);
        assert!((b[0] - 1.0).abs() < 1e-12);
    }
}
