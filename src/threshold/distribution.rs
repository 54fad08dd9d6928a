//! A signed magnitude's learned distribution: a symmetric body (the
//! threshold kind) and a [`Record`] per direction.
//!
//! This is what the forecast and level channels score with: the surprise of
//! a signed deviation `x` is the body's surprise of `|x|`, bounded by the
//! record of `x`'s direction. State: `[kind state, record up, record down]`,
//! at the start of the channel's slots.

use super::body::Kind;
use super::record::{RECORD_LEN, Record};

/// Magnitudes beyond this many deviations are all "impossible"; the cap
/// keeps the statistics finite.
pub(crate) const MAX_MAGNITUDE: f64 = 1e12;

/// A channel's body learns a magnitude of at most the one with this
/// surprise, so an anomaly moves it no more than an event past the alert
/// threshold.
pub const LEARN_CLIP_SURPRISE: f64 = 12.0;

/// The Weibull shape of the bodies' tails as the records see them (the
/// Gaussian's).
const BODY_SHAPE: f64 = 2.0;

/// How a body and two records are laid out and learned (shared by every
/// series).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Distribution {
    kind: Kind,
    /// The kind's state length.
    kind_len: usize,
    /// Per-event decay of the records' peaks (half over the horizon).
    top_decay: f64,
    /// Per-event weight kept by the records' excursion counts.
    keep: f64,
}

impl Distribution {
    /// The distribution of `kind` whose records fade by `top_decay` and
    /// `keep` per event.
    pub fn new(kind: Kind, top_decay: f64, keep: f64) -> Self {
        Self {
            kind,
            kind_len: kind.state_len(),
            top_decay,
            keep,
        }
    }

    /// Slots it takes.
    pub fn len(&self) -> usize {
        self.kind_len + 2 * RECORD_LEN
    }

    /// Sets fresh state.
    pub fn init(&self, s: &mut [f64]) {
        self.kind.init(&mut s[..self.kind_len]);
    }

    /// The kind's state.
    #[inline]
    pub fn body<'a>(&self, s: &'a [f64]) -> &'a [f64] {
        &s[..self.kind_len]
    }

    /// The body's surprise of magnitude `a`.
    #[inline]
    pub fn body_surprise(&self, s: &[f64], a: f64) -> f64 {
        self.kind.surprise(self.body(s), a)
    }

    /// Where the record of direction `up` starts.
    #[inline]
    fn record_at(&self, up: bool) -> usize {
        self.kind_len + if up { 0 } else { RECORD_LEN }
    }

    /// The typical magnitude (surprise ½ nat, 1σ for the Gaussian body):
    /// the floor of the excursions and of the tail.
    #[inline]
    pub fn scale(&self, s: &[f64]) -> f64 {
        self.kind.magnitude_at(self.body(s), 0.5)
    }

    /// The record of direction `up`.
    #[inline]
    fn record(&self, s: &[f64], up: bool) -> Record {
        let r = self.record_at(up);
        Record::new(&s[r..r + RECORD_LEN], self.scale(s), BODY_SHAPE)
    }

    /// Surprise of signed deviation `x`: the body is symmetric, the records
    /// are kept per direction.
    #[inline]
    pub fn surprise(&self, s: &[f64], x: f64) -> f64 {
        let a = x.abs().min(MAX_MAGNITUDE);
        let body = self.body_surprise(s, a);
        body.min(self.record(s, x >= 0.0).surprise(a))
    }

    /// Surprise of signed deviation `x` once the excursion it belongs to has
    /// joined its record: what the series will make of this magnitude after
    /// it has learned it. Equal to [`Self::surprise`] for a first large
    /// excursion; for one that repeats an earlier excursion of similar size
    /// it is the record's tempered bound.
    #[inline]
    pub fn learned_surprise(&self, s: &[f64], x: f64) -> f64 {
        let a = x.abs().min(MAX_MAGNITUDE);
        let at = self.record_at(x >= 0.0);
        let r = Record::with_peak(&s[at..at + RECORD_LEN], a);
        let body = self.body_surprise(s, a);
        body.min(Record::new(&r, self.scale(s), BODY_SHAPE).surprise(a))
    }

    /// Largest magnitude in direction `up` whose surprise is below `l`.
    #[inline]
    pub fn magnitude(&self, s: &[f64], l: f64, up: bool) -> f64 {
        let body = self.kind.magnitude_at(self.body(s), l);
        body.max(self.record(s, up).magnitude_at(l))
    }

    /// Learns signed deviation `x`: the body with the magnitude clipped at
    /// the one of [`LEARN_CLIP_SURPRISE`] (once the series has `seen` an
    /// event), the record of `x`'s direction with the magnitude as it is
    /// when `recorded`. An exact 0 teaches the body only when `zero_counts`
    /// (for the level channel it means "nothing to measure"). Returns the
    /// clipped magnitude.
    #[inline]
    pub fn learn(
        &self,
        s: &mut [f64],
        x: f64,
        seen: bool,
        recorded: bool,
        zero_counts: bool,
    ) -> f64 {
        let a = x.abs().min(MAX_MAGNITUDE);
        let up = x >= 0.0;
        let clip = self.magnitude(s, LEARN_CLIP_SURPRISE, up);
        let floor = self.scale(s);
        let clipped = if clip.is_finite() && clip > 0.0 && seen {
            a.min(clip)
        } else {
            a
        };
        if x != 0.0 || zero_counts {
            self.kind.observe(&mut s[..self.kind_len], clipped);
        }
        let (a_up, a_down) = match (recorded, up) {
            (false, _) => (0.0, 0.0),
            (true, true) => (a, 0.0),
            (true, false) => (0.0, a),
        };
        for (up, a) in [(true, a_up), (false, a_down)] {
            let r = self.record_at(up);
            Record::learn(
                &mut s[r..r + RECORD_LEN],
                a,
                a > floor,
                self.top_decay,
                self.keep,
            );
        }
        clipped
    }
}
