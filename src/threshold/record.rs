//! The record bound: what the largest recent excursions say about a tail.
//!
//! A channel's body (its threshold kind) describes the bulk of its
//! magnitudes; the **record** calibrates the tail from the peaks of the
//! channel's recent *excursions* (runs above its typical magnitude), kept
//! per direction by the channels that have one (a series whose drops are
//! normal, like a sawtooth or a disk that is cleaned up, may still never
//! jump up). A magnitude up to the second-largest peak `t2` (it happened at
//! least twice: once is an anomaly, twice a pattern) has surprise at most
//! `ln((m + 1) / 2)` after `m` excursions, and beyond `t2` the surprise
//! grows as a Weibull tail anchored there: with the body's shape (2 for the
//! Gaussian) when `t2` is where the body expects it, gentler when the
//! series' tail is heavier than its body. For a Gaussian series the bound
//! hardly binds; for a spiky one it calibrates the tail. Records learn from
//! excursion peaks, not events, so a slowly rising magnitude cannot walk its
//! record up a step at a time.

/// How gently a heavy tail extrapolates: the record's shape is the body's
/// divided by `heaviness^TAIL_GENTLENESS` (never below exponential).
const TAIL_GENTLENESS: f64 = 0.25;

/// A record binds only when its second-largest peak is this many times
/// above where the body expects it (the spread of that peak between
/// samples of a Gaussian is about a tenth of it).
const RECORD_TOLERANCE: f64 = 1.3;

/// Records with fewer excursions than `ln((m + 1) / 2)` reaching this bound
/// nothing.
const RECORD_MIN_CAP: f64 = 0.3;

/// The slots of a record's state.
pub(crate) mod slot {
    /// Completed excursions, exponentially weighted.
    pub const EXCURSIONS: usize = 0;
    /// The largest recent peak (fading).
    pub const FIRST: usize = 1;
    /// The second-largest recent peak (fading).
    pub const SECOND: usize = 2;
    /// The peak of the excursion in progress (0: none).
    pub const CURRENT: usize = 3;
    /// Length of a record's state.
    pub const LEN: usize = 4;
}

/// A record's state length.
pub(crate) const RECORD_LEN: usize = slot::LEN;

/// The bound a record's state gives (see the module docs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record {
    /// `ln((m + 1) / 2)`: the surprise of a magnitude seen twice in `m`
    /// excursions.
    pub cap: f64,
    /// Second-largest recent peak (0: no bound).
    pub top: f64,
    /// Shape of the tail beyond it.
    k: f64,
}

impl Record {
    /// The record in state `r`, for a channel whose body has deviation
    /// `scale` and Weibull shape `body_k` (2 Gaussian, 1 exponential).
    #[inline]
    pub fn new(r: &[f64], scale: f64, body_k: f64) -> Self {
        let cap = (0.5 * (r[slot::EXCURSIONS] + 1.0)).ln();
        let t2 = r[slot::SECOND];
        if cap < RECORD_MIN_CAP || t2 <= 0.0 {
            return Self::unbound(body_k);
        }
        // Where t2 would sit if the magnitudes followed the body (the
        // expected second-largest of m) and how much heavier than that the
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
        let heaviness = (t2 / expected).max(1.0);
        if heaviness < RECORD_TOLERANCE {
            // The record is what the body predicts, up to sampling noise:
            // the body alone describes the tail.
            return Self::unbound(body_k);
        }
        let k = (body_k / heaviness.sqrt().sqrt()).max(body_k.min(1.0));
        Self { cap, top: t2, k }
    }

    /// A record that bounds nothing.
    #[inline]
    fn unbound(body_k: f64) -> Self {
        Self {
            cap: f64::INFINITY,
            top: 0.0,
            k: body_k,
        }
    }

    /// Surprise bound of magnitude `a`: `cap` up to the record, then the
    /// Weibull tail `cap (a / top)^k` (for a Gaussian record, the
    /// Gaussian's own tail `a² / 2σ²`).
    #[inline]
    pub fn surprise(&self, a: f64) -> f64 {
        if a <= self.top {
            self.cap
        } else {
            self.cap * (a / self.top).powf(self.k)
        }
    }

    /// Smallest magnitude whose bound reaches `l` (0 if all do, ∞ if none).
    #[inline]
    pub fn magnitude_at(&self, l: f64) -> f64 {
        if l <= self.cap {
            0.0
        } else if self.top <= 0.0 {
            f64::INFINITY
        } else {
            self.top * (l / self.cap).powf(1.0 / self.k)
        }
    }

    /// Learns magnitude `a`: an excursion goes on while `above`, and its
    /// peak joins the record when it ends. `decay` fades the peaks, `keep`
    /// the excursion count.
    #[inline]
    pub fn learn(r: &mut [f64], a: f64, above: bool, decay: f64, keep: f64) {
        r[slot::FIRST] *= decay;
        r[slot::SECOND] *= decay;
        if above {
            r[slot::CURRENT] = r[slot::CURRENT].max(a);
            return;
        }
        r[slot::EXCURSIONS] *= keep;
        if r[slot::CURRENT] > 0.0 {
            let p = r[slot::CURRENT];
            r[slot::EXCURSIONS] += 1.0;
            r[slot::CURRENT] = 0.0;
            if p > r[slot::FIRST] {
                r[slot::SECOND] = r[slot::FIRST];
                r[slot::FIRST] = p;
            } else if p > r[slot::SECOND] {
                r[slot::SECOND] = p;
            }
        }
    }

    /// Joins magnitude `a` to the excursion in progress and ends it at once,
    /// without fading: the record as it will be once that excursion is
    /// learned.
    #[inline]
    pub fn with_peak(r: &[f64], a: f64) -> [f64; RECORD_LEN] {
        let mut out = [0.0; RECORD_LEN];
        out.copy_from_slice(&r[..RECORD_LEN]);
        out[slot::CURRENT] = out[slot::CURRENT].max(a);
        Self::learn(&mut out, 0.0, false, 1.0, 1.0);
        out
    }
}
