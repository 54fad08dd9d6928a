//! The seasonal baseline the level and drift channels measure against.
//!
//! A slow offset plus a daily season (three harmonics, learned by least
//! mean squares), and the deviation of the deseasonalised value around it.
//! It also keeps what those channels read off it each event: a short
//! average (the level channel's "where the series sits now"), the previous
//! deseasonalised value and the lag-1 autocorrelation of its residual (how
//! much evidence one deviation carries for the drift channel). During an
//! episode it measures but does not learn, so the level channel goes on
//! judging against the level before it.

use super::Observation;
use super::ewma::{self, Ewma};
use crate::threshold::Threshold;

/// Time constant of the seasonal coefficients (three days).
const SEASON_MEMORY_MS: f64 = 3.0 * 86_400_000.0;

/// Events in the level channel's short average.
pub(crate) const LEVEL_EVENTS: f64 = 10.0;

/// The baseline learns deviations clipped at this many of its own.
const BASE_CLIP: f64 = 5.0;

/// Events the baseline learns before its clip applies.
const CLIP_AFTER: f64 = 10.0;

/// Events the baseline learns before the level and drift channels learn
/// distances in its deviation.
const BASE_READY: f64 = 20.0;

/// Most events the offset's least step counts (it still follows a series
/// whose clock stands still).
const OFFSET_MIN_STEP_EVENTS: f64 = 1e4;

/// The slots of the baseline's state.
pub(crate) mod slot {
    /// Events learned.
    pub const COUNT: usize = 0;
    /// The slow offset.
    pub const OFFSET: usize = 1;
    /// The latest event time learned (ms).
    pub const LAST_MS: usize = 2;
    /// The 6 daily coefficients: harmonics 1 to 3, cos and sin.
    pub const SEASON: usize = 3;
    /// The residual's moments (an [`super::Ewma`] state, 3 slots).
    pub const MOMENTS: usize = 9;
    /// Lag-1 statistics of the clipped residual: its last value, the EW
    /// mean of `e_t e_{t-1}` and of `e_t²`.
    pub const AUTO: usize = 12;
    /// The short average (deseasonalised).
    pub const FAST: usize = 15;
    /// The previous deseasonalised value.
    pub const PREV: usize = 16;
    /// Length of the baseline's state.
    pub const LEN: usize = 17;
}

const DAY_MS: f64 = 86_400_000.0;

/// A day, in ms, as the integer event times are (their remainder is exact,
/// as the float one is, without a call to `fmod`).
const DAY_MS_INT: i64 = 86_400_000;

/// The daily basis at `ts_ms`: harmonics 1 to 3, cos and sin.
#[inline]
pub(crate) fn season_basis(ts_ms: i64) -> [f64; 6] {
    let (s1, c1) =
        crate::model::features::sin_cos_turns(ts_ms.rem_euclid(DAY_MS_INT) as f64 / DAY_MS);
    let (c2, s2) = (c1 * c1 - s1 * s1, 2.0 * s1 * c1);
    let (c3, s3) = (c1 * c2 - s1 * s2, s1 * c2 + c1 * s2);
    [c1, s1, c2, s2, c3, s3]
}

/// The baseline at one event, before it learns the event.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BaseAt {
    /// The baseline's state (a copy: the channels read it while the slab
    /// learns).
    pub b: [f64; slot::LEN],
    /// Offset plus season at the event's time.
    pub value: f64,
    /// Deviation of values around it, in the series' units.
    pub dev: f64,
}

impl BaseAt {
    /// The baseline in state `b` at the time of `obs`.
    #[inline]
    pub fn new(b: &[f64], obs: &Observation) -> Self {
        let mut copy = [0.0; slot::LEN];
        copy.copy_from_slice(&b[..slot::LEN]);
        let (value, dev) = Baseline::value_and_dev(&copy, &obs.season);
        Self {
            b: copy,
            value,
            dev,
        }
    }

    /// Whether the deviation is known well enough for distances in it to be
    /// learned.
    #[inline]
    pub fn ready(&self) -> bool {
        self.b[slot::COUNT] >= BASE_READY
    }

    /// The seasonal part at the time of `basis`.
    #[inline]
    pub fn season(&self, basis: &[f64; 6]) -> f64 {
        Baseline::season(&self.b, basis)
    }

    /// The short average after `value` at the time of `basis`
    /// (deseasonalised).
    #[inline]
    pub fn fast_level(&self, value: f64, basis: &[f64; 6]) -> f64 {
        Baseline::fast_level(&self.b, value, basis)
    }
}

/// How the baseline learns (shared by every series).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Baseline {
    /// Learns the deviation.
    moments: Ewma,
    /// Time constant of the offset (ms).
    level_memory_ms: f64,
}

impl Baseline {
    /// A baseline whose deviation has memory `body_events` and whose offset
    /// has time constant `level_memory_ms`.
    pub fn new(body_events: f64, level_memory_ms: f64) -> Self {
        Self {
            moments: Ewma::new(body_events),
            level_memory_ms,
        }
    }

    /// The seasonal part of the baseline `b` at the time of `basis`.
    #[inline]
    fn season(b: &[f64], basis: &[f64; 6]) -> f64 {
        basis
            .iter()
            .zip(&b[slot::SEASON..slot::SEASON + 6])
            .map(|(x, w)| x * w)
            .sum()
    }

    /// The baseline's value at the time of `basis` (offset plus season)
    /// and the deviation of values around it, in the series' units.
    #[inline]
    fn value_and_dev(b: &[f64], basis: &[f64; 6]) -> (f64, f64) {
        let m = &b[slot::MOMENTS..slot::MOMENTS + 3];
        let floor = (1e-9 * b[slot::OFFSET].abs()).max(1e-300);
        (
            b[slot::OFFSET] + Self::season(b, basis),
            (m[1] * ewma::SQRT_HALF_PI).max(floor),
        )
    }

    /// The short average after `value` at the time of `basis`
    /// (deseasonalised).
    #[inline]
    fn fast_level(b: &[f64], value: f64, basis: &[f64; 6]) -> f64 {
        let d = value - Self::season(b, basis);
        if b[slot::COUNT] < 1.0 {
            return d;
        }
        let n = (b[slot::COUNT] + 1.0).min(LEVEL_EVENTS);
        b[slot::FAST] + (d - b[slot::FAST]) / n
    }

    /// Learns the event: the offset is an exponentially weighted mean of
    /// the deseasonalised value with time constant `level_memory`, the
    /// daily coefficients a least-mean-squares fit with time constant
    /// [`SEASON_MEMORY_MS`] (both shorter while the series is younger than
    /// them, so a new series learns fast), the deviation an [`Ewma`] of the
    /// residual's magnitude. Time constants in event time keep it
    /// independent of the sampling rate. `first_ms` is the series' first
    /// event time.
    pub fn learn(&self, b: &mut [f64], obs: &Observation, first_ms: f64, censored: bool) {
        let t = obs.ts_ms as f64;
        b[slot::FAST] = Self::fast_level(b, obs.value, &obs.season);
        b[slot::PREV] = obs.value - Self::season(b, &obs.season);
        if censored {
            return;
        }
        if b[slot::COUNT] < 1.0 {
            b[slot::COUNT] = 1.0;
            b[slot::OFFSET] = obs.value;
            b[slot::LAST_MS] = t;
            return;
        }
        let (base, dev) = Self::value_and_dev(b, &obs.season);
        let e = obs.value - base;
        // The clip needs a deviation to be relative to: one at its floor (a
        // series that stood still so far) would hold it there for ever.
        let floor = (1e-9 * b[slot::OFFSET].abs()).max(1e-300);
        let e_clip = if b[slot::COUNT] >= CLIP_AFTER && dev > 1e3 * floor {
            e.clamp(-BASE_CLIP * dev, BASE_CLIP * dev)
        } else {
            e
        };
        self.moments
            .observe(&mut b[slot::MOMENTS..slot::MOMENTS + 3], e_clip.abs());
        // Lag-1 autocorrelation of the clipped residual.
        let alpha = 1.0 / b[slot::MOMENTS].max(1.0);
        let au = &mut b[slot::AUTO..slot::AUTO + 3];
        au[1] += alpha * (e_clip * au[0] - au[1]);
        au[2] += alpha * (e_clip * e_clip - au[2]);
        au[0] = e_clip;
        b[slot::COUNT] += 1.0;
        let dt = (t - b[slot::LAST_MS]).max(0.0);
        b[slot::LAST_MS] = b[slot::LAST_MS].max(t);
        let age = (t - first_ms).max(dt).max(1.0);
        let rate = |tau: f64| {
            if dt <= 0.0 {
                0.0
            } else {
                -(-dt / tau.min(age)).exp_m1()
            }
        };
        // At least a little per event, so that a series whose clock stands
        // still still follows its level.
        b[slot::OFFSET] += rate(self.level_memory_ms)
            .max(1.0 / b[slot::COUNT].min(OFFSET_MIN_STEP_EVENTS))
            * e_clip;
        // Gradient of ½e² on each coefficient, normalised by E[x²] = ½.
        let a_s = 2.0 * rate(SEASON_MEMORY_MS) * e_clip;
        for (w, x) in b[slot::SEASON..slot::SEASON + 6].iter_mut().zip(obs.season) {
            *w += a_s * x;
        }
    }

    /// The series' present is its new normal (an episode lasted): the
    /// offset moves to where the series sits now.
    pub fn rebase(b: &mut [f64]) {
        b[slot::OFFSET] = b[slot::FAST];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daily_basis_is_the_time_of_day_exactly() {
        // The remainder is taken on the integer time: the same as the float
        // remainder (exact for times below 2^53 ms), before 1970 too, and a
        // day later the basis repeats bit for bit.
        let day = DAY_MS_INT;
        for ts in [
            -3 * day - 1,
            -1,
            0,
            1,
            43_200_000,
            1_767_571_200_000 + 12_345_678,
            4_102_444_800_000 - 1,
        ] {
            let float =
                crate::model::features::sin_cos_turns((ts as f64).rem_euclid(DAY_MS) / DAY_MS);
            let b = season_basis(ts);
            assert_eq!((b[1], b[0]), float, "at {ts}");
            assert_eq!(season_basis(ts + day), b, "a day after {ts}");
        }
        // Noon: half a turn.
        let noon = season_basis(43_200_000);
        assert!((noon[0] + 1.0).abs() < 1e-11 && noon[1].abs() < 1e-11);
    }
}
