//! The record bound: what the largest recent excursions say about a tail.
//!
//! A channel's body (its threshold kind) describes the bulk of its
//! magnitudes; the **record** calibrates the tail from the peaks of the
//! channel's recent *excursions* (runs above its typical magnitude), kept
//! per direction by the channels that have one (a series whose drops are
//! normal, like a sawtooth or a disk that is cleaned up, may still never
//! jump up). It rests on one fact that needs no model: of `m + 1`
//! exchangeable excursions, the newest is the largest with probability
//! `1 / (m + 1)`.
//!
//! - A peak that raised no alert is the series' own: up to the largest such
//!   peak `t1` the surprise is at most `ln(m + 1)`, however young the series
//!   (its *normal anchor*).
//! - A peak that raised an alert, or would have while the series was not
//!   yet trusted, is *suspect*: it fades faster and bounds only once two are
//!   remembered (once is an anomaly, twice a pattern): up to the second
//!   largest, `ln((m + 1) / 2)`.
//!
//! Beyond an anchor the surprise grows as a Weibull tail: with the body's
//! shape (2 for the Gaussian) when the peak is where the body expects it,
//! gentler when the series' tail is heavier than its body. For a Gaussian
//! series the bound hardly binds; for a spiky one it calibrates the tail.
//! Records learn from excursion peaks, not events, so a slowly rising
//! magnitude cannot walk its record up a step at a time, and what an alert
//! was raised on never widens the normal tail on its own.

/// How gently a heavy tail extrapolates: the record's shape is the body's
/// divided by `heaviness^TAIL_GENTLENESS` (never below exponential).
const TAIL_GENTLENESS: f64 = 0.25;

/// An anchor binds only when its peak is this many times above where the
/// body expects it (the spread of a largest peak between samples of a
/// Gaussian is about a tenth of it).
const RECORD_TOLERANCE: f64 = 1.3;

/// Anchors whose surprise is below this bound nothing (too few
/// excursions).
const RECORD_MIN_CAP: f64 = 0.3;

/// How far from a day after an alerted excursion another may come to pair
/// with it (a daily job): a quarter of an hour, a scheduled job's start and
/// its sampling's jitter.
pub const SCHEDULE_TOLERANCE_MS: f64 = 15.0 * 60_000.0;

/// A day, in ms.
const DAY_MS: f64 = 86_400_000.0;

/// Whether `now_ms` is a day after `then_ms` (0: never), within
/// [`SCHEDULE_TOLERANCE_MS`].
#[inline]
pub(crate) fn a_day_after(then_ms: f64, now_ms: f64) -> bool {
    then_ms > 0.0 && (now_ms - then_ms - DAY_MS).abs() <= SCHEDULE_TOLERANCE_MS
}

/// The slots of a record's state.
pub(crate) mod slot {
    /// Completed excursions, exponentially weighted.
    pub const EXCURSIONS: usize = 0;
    /// The largest recent peak of an excursion that raised no alert
    /// (fading).
    pub const NORMAL: usize = 1;
    /// The largest recent peak of an excursion that raised one (fading
    /// faster).
    pub const SUSPECT_FIRST: usize = 2;
    /// The second-largest such peak.
    pub const SUSPECT_SECOND: usize = 3;
    /// The peak of the excursion in progress (0: none).
    pub const CURRENT: usize = 4;
    /// Whether the excursion in progress raised an alert (0 or 1).
    pub const CURRENT_ALERTED: usize = 5;
    /// Length of a record's state.
    pub const LEN: usize = 6;
}

/// A record's state length.
pub(crate) const RECORD_LEN: usize = slot::LEN;

/// How fast a record's peaks fade (shared by every series).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Fading {
    /// Per-event weight kept by the jump counts (a longer memory: jumps
    /// are rare).
    pub jump_keep: f64,
    /// Per-event decay of the normal peak.
    pub normal: f64,
    /// Per-event decay of the alerted peaks.
    pub suspect: f64,
    /// Per-event weight kept by the excursion count.
    pub keep: f64,
}

/// One anchor of the bound: up to `top` the surprise is at most `cap`,
/// beyond it a Weibull tail of shape `k`.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    cap: f64,
    top: f64,
    k: f64,
}

impl Anchor {
    /// A record that bounds nothing.
    const NONE: Self = Self {
        cap: f64::INFINITY,
        top: 0.0,
        k: 1.0,
    };

    /// The anchor at peak `top` whose surprise is `cap`, for a body of
    /// deviation `scale` and Weibull shape `body_k`.
    #[inline]
    fn new(cap: f64, top: f64, scale: f64, body_k: f64) -> Self {
        if cap < RECORD_MIN_CAP || top <= 0.0 {
            return Self::NONE;
        }
        // Where the peak would sit if the magnitudes followed the body (the
        // magnitude of surprise `cap`) and how much heavier than that the
        // tail is: a tail like the body's extrapolates with the body's
        // shape, a heavier one more gently (never below exponential).
        // (k·cap)^(1/k), and below h^-TAIL_GENTLENESS, by square roots for
        // the Gaussian body and the quarter power (this runs several times
        // per event).
        const _: () = assert!(TAIL_GENTLENESS == 0.25);
        let kc = body_k * cap;
        let root = if body_k == 2.0 {
            kc.sqrt()
        } else {
            kc.powf(1.0 / body_k)
        };
        let expected = root * scale.max(1e-300);
        let heaviness = (top / expected).max(1.0);
        if heaviness < RECORD_TOLERANCE {
            // The peak is what the body predicts, up to sampling noise: the
            // body alone describes the tail.
            return Self::NONE;
        }
        let k = (body_k / heaviness.sqrt().sqrt()).max(body_k.min(1.0));
        Self { cap, top, k }
    }

    #[inline]
    fn surprise(&self, a: f64) -> f64 {
        if a <= self.top {
            self.cap
        } else {
            self.cap * (a / self.top).powf(self.k)
        }
    }

    #[inline]
    fn magnitude_at(&self, l: f64) -> f64 {
        if l <= self.cap {
            0.0
        } else if self.top <= 0.0 {
            f64::INFINITY
        } else {
            self.top * (l / self.cap).powf(1.0 / self.k)
        }
    }
}

/// The bound a record's state gives (see the module docs): the more
/// permissive of the normal peak's and the alerted peaks' anchors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record {
    normal: Anchor,
    suspect: Anchor,
}

impl Record {
    /// The record in state `r`, for a channel whose body has deviation
    /// `scale` and Weibull shape `body_k` (2 Gaussian, 1 exponential); its
    /// peaks are kept in units `1 / per` of the magnitude (see
    /// [`super::distribution::Seen::unit`]). `scheduled`: the largest
    /// alerted peak came at this time of day on an earlier day, so it and
    /// the excursion now are a pair (a daily job), and it bounds as the
    /// second largest does.
    #[inline]
    pub fn new(r: &[f64], scale: f64, body_k: f64, per: f64, scheduled: bool) -> Self {
        let m = r[slot::EXCURSIONS];
        // An anchor without a peak bounds nothing: its logarithm is not
        // computed (this runs several times per event, and most series
        // hold no second alerted peak).
        let anchor = |p: f64, top: f64| {
            if top > 0.0 {
                Anchor::new(p.ln(), top, scale, body_k)
            } else {
                Anchor::NONE
            }
        };
        Self {
            // The largest of m: exceeded with probability 1 / (m + 1).
            normal: anchor(m + 1.0, r[slot::NORMAL] * per),
            // The second largest: with probability 2 / (m + 1).
            suspect: anchor(
                0.5 * (m + 1.0),
                if scheduled {
                    r[slot::SUSPECT_FIRST]
                } else {
                    r[slot::SUSPECT_SECOND]
                } * per,
            ),
        }
    }

    /// Surprise bound of magnitude `a`: `cap` up to the record, then the
    /// Weibull tail `cap (a / top)^k` (for a Gaussian record, the
    /// Gaussian's own tail `a² / 2σ²`).
    #[inline]
    pub fn surprise(&self, a: f64) -> f64 {
        self.normal.surprise(a).min(self.suspect.surprise(a))
    }

    /// Smallest magnitude whose bound reaches `l` (0 if all do, ∞ if none).
    #[inline]
    pub fn magnitude_at(&self, l: f64) -> f64 {
        self.normal
            .magnitude_at(l)
            .max(self.suspect.magnitude_at(l))
    }

    /// Learns magnitude `a`: an excursion goes on while `above` (and
    /// `alerted` says whether this event raised an alert), and its peak
    /// joins the record when it ends: as a normal peak, or as an alerted
    /// one, which fades faster and bounds only once two are remembered
    /// (once is an anomaly, twice a pattern).
    #[inline]
    pub fn learn(r: &mut [f64], a: f64, above: bool, alerted: bool, fading: &Fading) {
        r[slot::NORMAL] *= fading.normal;
        r[slot::SUSPECT_FIRST] *= fading.suspect;
        r[slot::SUSPECT_SECOND] *= fading.suspect;
        if above {
            r[slot::CURRENT] = r[slot::CURRENT].max(a);
            if alerted {
                r[slot::CURRENT_ALERTED] = 1.0;
            }
            return;
        }
        r[slot::EXCURSIONS] *= fading.keep;
        if r[slot::CURRENT] > 0.0 {
            Self::close(r);
        }
    }

    /// Ends the excursion in progress.
    #[inline]
    fn close(r: &mut [f64]) {
        let p = r[slot::CURRENT];
        r[slot::EXCURSIONS] += 1.0;
        r[slot::CURRENT] = 0.0;
        if r[slot::CURRENT_ALERTED] > 0.0 {
            r[slot::CURRENT_ALERTED] = 0.0;
            if p > r[slot::SUSPECT_FIRST] {
                r[slot::SUSPECT_SECOND] = r[slot::SUSPECT_FIRST];
                r[slot::SUSPECT_FIRST] = p;
            } else if p > r[slot::SUSPECT_SECOND] {
                r[slot::SUSPECT_SECOND] = p;
            }
        } else {
            r[slot::NORMAL] = r[slot::NORMAL].max(p);
        }
    }

    /// The record as it will be once the excursion in progress, joined by
    /// the alerted magnitude `a`, has ended.
    #[inline]
    pub fn with_alerted_peak(r: &[f64], a: f64) -> [f64; RECORD_LEN] {
        let mut out = [0.0; RECORD_LEN];
        out.copy_from_slice(&r[..RECORD_LEN]);
        out[slot::CURRENT] = out[slot::CURRENT].max(a);
        out[slot::CURRENT_ALERTED] = 1.0;
        Self::close(&mut out);
        out
    }
}
