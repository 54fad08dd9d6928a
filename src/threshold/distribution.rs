//! A signed magnitude's learned distribution: a symmetric body (the
//! threshold kind), a [`Record`] per direction and the chance of a jump.
//!
//! This is what the forecast and level channels score with: the surprise of
//! a signed deviation `x` is the body's surprise of `|x|`, bounded by the
//! record of `x`'s direction and by the **jump bound**.
//!
//! # The jump bound: how young the series is
//!
//! A body fitted on a few days of a series says nothing about the rare
//! jumps real metrics make (a restart, a batch job, a failover): a series
//! that looked Gaussian for two days may jump seven deviations on the
//! third, and a plug-in Gaussian calls that impossible. So every magnitude
//! beyond the *jump floor* (where the body's surprise is [`JUMP_FLOOR`]
//! nats) is also judged as a jump: the chance that this event is a jump at
//! all, by Laplace's rule of succession from the `k` jumps (beyond the
//! floor, raising no alert) among the `n` events the series has seen
//! (both exponentially weighted over [`JUMP_MEMORY_HORIZONS`] horizons),
//! `(k + 1) / (n + 2)`, times the chance that a jump is this large, a power
//! law of index [`JUMP_SIZE_INDEX`] beyond the floor:
//!
//! ```text
//! surprise ≤ ln((n + 2) / (k + 1)) + JUMP_SIZE_INDEX · ln(a / floor)
//! ```
//!
//! A young series (small `n`) is humble about large errors; one that has
//! run calm for thousands of events trusts its body; one that jumps now
//! and then expects it to. The bound needs no warm-up of its own and
//! follows from the series' own counts.
//!
//! # Schedules
//!
//! An alerted excursion bounds the tail only once two are remembered (once
//! is an anomaly, twice a pattern; see [`Record`]). A daily job is a
//! pattern from its second run: an excursion a day after the largest
//! alerted peak (within [`record::SCHEDULE_TOLERANCE_MS`]) pairs with it.
//!
//! State: `[kind state, record up, record down, jumps up, jumps down, then
//! per direction the excursion's peak time and the largest alerted peak's
//! time]`, at the start of the channel's slots.

use super::body::Kind;
use super::record::{self, Fading, RECORD_LEN, Record, a_day_after};

/// The time slots of a direction (after the jump counts).
mod time {
    /// When the excursion in progress peaked (ms).
    pub const PEAK: usize = 0;
    /// When the largest alerted peak came (ms; 0: none).
    pub const SUSPECT: usize = 1;
    /// Slots per direction.
    pub const LEN: usize = 2;
}

/// Magnitudes beyond this many deviations are all "impossible"; the cap
/// keeps the statistics finite.
pub(crate) const MAX_MAGNITUDE: f64 = 1e12;

/// A channel's body learns a magnitude of at most the one with this
/// surprise, so an anomaly moves it no more than an event past the alert
/// threshold.
pub const LEARN_CLIP_SURPRISE: f64 = 12.0;

/// The body's surprise (nats) at the jump floor: a magnitude the body calls
/// rarer than this is a jump, and its size is judged as one (see the module
/// docs). About one event in a thousand, per direction, of a Gaussian body.
pub const JUMP_FLOOR: f64 = 7.0;

/// How fast large jumps get rarer beyond the floor: a jump twice the floor
/// is `2^8 = 256` times rarer than one at the floor. (Chosen on the
/// synthetic corpus, where a lighter index keeps the recall of spikes on
/// calm series, and NAB; see docs/quality.md.)
pub const JUMP_SIZE_INDEX: f64 = 8.0;

/// How many horizons (`detector.threshold.horizon_events`) the jump
/// counts remember: jumps are rare, and a series that has run calm for a
/// long time has earned its trust in its body.
pub const JUMP_MEMORY_HORIZONS: f64 = 5.0;

/// The Weibull shape of the bodies' tails as the records see them (the
/// Gaussian's).
const BODY_SHAPE: f64 = 2.0;

/// How a body, two records and the jump counts are laid out and learned
/// (shared by every series).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Distribution {
    kind: Kind,
    /// The kind's state length.
    kind_len: usize,
    /// Whether it keeps the times schedules pair by (see the module docs).
    schedules: bool,
    /// How the records fade (and the jump counts).
    fading: Fading,
}

/// What a distribution is told besides the magnitude.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen {
    /// Events the series has learned (saturating at the horizon).
    pub events: f64,
    /// Events the series has learned over the jumps' memory.
    pub jump_events: f64,
    /// The event's time (ms).
    pub ts_ms: f64,
    /// The magnitude's unit in the series' own units (its typical step
    /// for the forecast's residual, its level deviation for the level's
    /// distance), > 0. The records keep their peaks in the series' units:
    /// the unit moves as the series calms down or gets busier, and a spike
    /// as large as the last one is as large, whatever the unit says now.
    pub unit: f64,
    /// Magnitudes per series unit, `1 / unit`.
    pub per: f64,
}

impl Seen {
    /// What a distribution is told of an event at `ts_ms` after `events`
    /// (`jump_events` over the jumps' memory), in `unit`s of the series.
    #[inline]
    pub fn new(events: f64, jump_events: f64, ts_ms: f64, unit: f64) -> Self {
        let unit = unit.max(f64::MIN_POSITIVE);
        Self {
            events,
            jump_events,
            ts_ms,
            unit,
            per: 1.0 / unit,
        }
    }
}

impl Distribution {
    /// The distribution of `kind` whose records fade as `fading` says.
    pub fn new(kind: Kind, fading: Fading) -> Self {
        Self {
            kind,
            kind_len: kind.state_len(),
            schedules: true,
            fading,
        }
    }

    /// The same without schedules (for a magnitude whose excursions last
    /// hours, as a level's: a daily job is the forecast's business).
    pub fn without_schedules(self) -> Self {
        Self {
            schedules: false,
            ..self
        }
    }

    /// Slots it takes.
    pub fn len(&self) -> usize {
        self.kind_len + 2 * RECORD_LEN + 2 + if self.schedules { 2 * time::LEN } else { 0 }
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

    /// The body starts over (a new normal: see
    /// [`super::Thresholds::observe_prepared`]); records and jump counts stay,
    /// since what was rare is.
    pub fn restart_body(&self, s: &mut [f64]) {
        self.kind.init(&mut s[..self.kind_len]);
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

    /// Where the jump count of direction `up` is.
    #[inline]
    fn jumps_at(&self, up: bool) -> usize {
        self.kind_len + 2 * RECORD_LEN + usize::from(!up)
    }

    /// Where the time slots of direction `up` start.
    #[inline]
    fn times_at(&self, up: bool) -> usize {
        self.kind_len + 2 * RECORD_LEN + 2 + if up { 0 } else { time::LEN }
    }

    /// Whether the largest alerted peak of direction `up` came a day before
    /// this event (see the module docs).
    #[inline]
    fn scheduled(&self, s: &[f64], up: bool, seen: &Seen) -> bool {
        self.schedules && a_day_after(s[self.times_at(up) + time::SUSPECT], seen.ts_ms)
    }

    /// The typical magnitude (surprise ½ nat, 1σ for the Gaussian body):
    /// the floor of the excursions and of the tail.
    #[inline]
    pub fn scale(&self, s: &[f64]) -> f64 {
        self.kind.magnitude_at(self.body(s), 0.5)
    }

    /// The magnitude beyond which an error is a jump.
    #[inline]
    fn jump_floor(&self, s: &[f64]) -> f64 {
        self.kind.magnitude_at(self.body(s), JUMP_FLOOR)
    }

    /// `ln((n + 2) / (k + 1))`: the surprise of a jump at all in
    /// direction `up`.
    #[inline]
    fn jump_cap(&self, s: &[f64], up: bool, seen: &Seen) -> f64 {
        ((seen.jump_events + 2.0) / (s[self.jumps_at(up)] + 1.0)).ln()
    }

    /// The jump bound of magnitude `a` (∞ below the floor).
    #[inline]
    fn jump_surprise(&self, s: &[f64], a: f64, up: bool, seen: &Seen) -> f64 {
        let floor = self.jump_floor(s);
        if a > floor {
            self.jump_cap(s, up, seen) + JUMP_SIZE_INDEX * (a / floor).ln()
        } else {
            f64::INFINITY
        }
    }

    /// Smallest magnitude whose jump bound reaches `l`.
    #[inline]
    fn jump_magnitude(&self, s: &[f64], l: f64, up: bool, seen: &Seen) -> f64 {
        let excess = (l - self.jump_cap(s, up, seen)).max(0.0);
        self.jump_floor(s) * (excess / JUMP_SIZE_INDEX).exp()
    }

    /// The record of direction `up`, in the magnitude's current unit.
    #[inline]
    fn record(&self, s: &[f64], up: bool, seen: &Seen) -> Record {
        let r = self.record_at(up);
        Record::new(
            &s[r..r + RECORD_LEN],
            self.scale(s),
            BODY_SHAPE,
            seen.per,
            self.scheduled(s, up, seen),
        )
    }

    /// Surprise of signed deviation `x`: the body is symmetric, the records
    /// and the jump counts are kept per direction.
    #[inline]
    pub fn surprise(&self, s: &[f64], x: f64, seen: &Seen) -> f64 {
        let a = x.abs().min(MAX_MAGNITUDE);
        let up = x >= 0.0;
        self.body_surprise(s, a)
            .min(self.record(s, up, seen).surprise(a))
            .min(self.jump_surprise(s, a, up, seen))
    }

    /// Surprise of signed deviation `x` once the excursion it belongs to has
    /// joined its record as an alerted one: what the series will make of
    /// this magnitude after it has learned it. Equal to [`Self::surprise`]
    /// for a first large excursion; for one that repeats an earlier alerted
    /// excursion of similar size it is the record's tempered bound.
    #[inline]
    pub fn learned_surprise(&self, s: &[f64], x: f64, seen: &Seen) -> f64 {
        let a = x.abs().min(MAX_MAGNITUDE);
        let up = x >= 0.0;
        let at = self.record_at(up);
        let r = Record::with_alerted_peak(&s[at..at + RECORD_LEN], a * seen.unit);
        // The scheduled peak still leads unless this one outgrows it.
        let scheduled = self.scheduled(s, up, seen)
            && r[record::slot::SUSPECT_FIRST] == s[at + record::slot::SUSPECT_FIRST];
        self.body_surprise(s, a)
            .min(Record::new(&r, self.scale(s), BODY_SHAPE, seen.per, scheduled).surprise(a))
            .min(self.jump_surprise(s, a, up, seen))
    }

    /// Largest magnitude in direction `up` whose surprise is below `l`.
    #[inline]
    pub fn magnitude(&self, s: &[f64], l: f64, up: bool, seen: &Seen) -> f64 {
        self.kind
            .magnitude_at(self.body(s), l)
            .max(self.record(s, up, seen).magnitude_at(l))
            .max(self.jump_magnitude(s, l, up, seen))
    }

    /// Learns signed deviation `x` (after it was scored):
    /// - the body, with the magnitude clipped at the one of
    ///   [`LEARN_CLIP_SURPRISE`] (once the series has seen an event), unless
    ///   the event is `censored` (anomalous, within an episode); an exact 0
    ///   teaches the body only when `zero_counts` (for the level channel it
    ///   means "nothing to measure");
    /// - the record of `x`'s direction with the magnitude as it is, when
    ///   `recorded` (`alerted`: the event raised an alert, or would have);
    /// - the jump count, when the magnitude is beyond the jump floor and
    ///   raised no alert.
    ///
    /// Returns the clipped magnitude.
    #[inline]
    pub fn learn(&self, s: &mut [f64], x: f64, seen: &Seen, learning: &Learning) -> f64 {
        let a = x.abs().min(MAX_MAGNITUDE);
        let up = x >= 0.0;
        // The body learns no more than the body and the record allow at the
        // clip: the jump bound's humility is for scoring, not a licence to
        // learn a jump as ordinary.
        let clip = self
            .kind
            .magnitude_at(self.body(s), LEARN_CLIP_SURPRISE)
            .max(self.record(s, up, seen).magnitude_at(LEARN_CLIP_SURPRISE));
        let floor = self.scale(s);
        let jump_floor = self.jump_floor(s);
        let clipped = if clip.is_finite() && clip > 0.0 && seen.events >= 1.0 {
            a.min(clip)
        } else {
            a
        };
        if (x != 0.0 || learning.zero_counts) && !learning.censored {
            self.kind.observe(&mut s[..self.kind_len], clipped);
        }
        let (a_up, a_down) = match (learning.recorded, up) {
            (false, _) => (0.0, 0.0),
            (true, true) => (a, 0.0),
            (true, false) => (0.0, a),
        };
        for (up, a) in [(true, a_up), (false, a_down)] {
            let r = self.record_at(up);
            // Within an episode the excursion goes on: one anomaly is one
            // suspect peak, however its errors wander.
            let goes_on = learning.censored && s[r + record::slot::CURRENT] > 0.0;
            let peak = s[r + record::slot::CURRENT];
            let above = a > floor || goes_on;
            Record::learn(
                &mut s[r..r + RECORD_LEN],
                a * seen.unit,
                above,
                learning.alerted,
                &self.fading,
            );
            // When the excursion peaked, and when the largest alerted peak
            // came (an excursion that ends is the largest when its peak is).
            if self.schedules {
                let t = self.times_at(up);
                if above && a * seen.unit > peak {
                    s[t + time::PEAK] = seen.ts_ms;
                } else if !above && peak > 0.0 && s[r + record::slot::SUSPECT_FIRST] == peak {
                    s[t + time::SUSPECT] = s[t + time::PEAK];
                }
            }
            let j = self.jumps_at(up);
            s[j] = s[j] * self.fading.jump_keep
                + f64::from(u8::from(a > jump_floor && !learning.alerted));
        }
        clipped
    }
}

/// How one event is learned (see [`Distribution::learn`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Learning {
    /// The record learns the magnitude (an echo's does not).
    pub recorded: bool,
    /// The event raised an alert, or would have on a warm series.
    pub alerted: bool,
    /// An exact 0 teaches the body.
    pub zero_counts: bool,
    /// The event is anomalous within an episode: the body does not learn.
    pub censored: bool,
}
