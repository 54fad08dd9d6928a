//! **stuck**: the value has repeated exactly for unusually long.
//!
//! How many times in a row the value repeated, against a two-state Markov
//! estimate of how often this series repeats (a frozen exporter), capped by
//! the record of its completed runs. A repeated zero is an idle counter,
//! not a frozen one.

use super::{Channel, Common, Event, Outcome, SLOW_MARGIN};
use crate::threshold::Reason;
use crate::threshold::distribution::LEARN_CLIP_SURPRISE;
use crate::threshold::record::{Fading, RECORD_LEN, Record, a_day_after, slot as record_slot};

/// Weight (in transitions) of the prior that repeats are independent.
const STUCK_PRIOR: f64 = 20.0;

/// The slots of the stuck channel's state; the counts are exponentially
/// weighted.
mod slot {
    /// The last value.
    pub const LAST: usize = 0;
    /// Repeats in a row up to it.
    pub const RUN: usize = 1;
    /// Transitions from a change.
    pub const CHANGES: usize = 2;
    /// Repeats right after a change.
    pub const STARTS: usize = 3;
    /// Transitions from a repeat.
    pub const REPEATS: usize = 4;
    /// Repeats right after a repeat.
    pub const GOES_ON: usize = 5;
    /// When the run in progress started (ms).
    pub const RUN_MS: usize = 6;
    /// When the longest alerted run started (ms; 0: none).
    pub const SUSPECT_MS: usize = 7;
    /// The record of completed runs.
    pub const RECORD: usize = 8;
}

/// The stuck channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Stuck {
    fading: Fading,
}

impl Stuck {
    /// The channel whose counts fade as the others'.
    pub fn new(common: &Common) -> Self {
        Self {
            fading: common.fading,
        }
    }

    /// The run of repeats the event makes. A zero that repeats is an idle
    /// counter or rate, not a frozen exporter.
    #[inline]
    fn run(st: &[f64], ev: &Event) -> f64 {
        let v = ev.obs.value;
        if ev.seen() && v == st[slot::LAST] && v != 0.0 {
            st[slot::RUN] + 1.0
        } else {
            0.0
        }
    }

    /// Surprise of a run of `m` repeats: the chance of a run that long
    /// under a two-state Markov chain, capped by the record of completed
    /// runs (in proportion to the longest: see [`Record`]).
    #[inline]
    fn run_surprise(st: &[f64], m: f64, ts_ms: f64, days: f64) -> f64 {
        if m < 1.0 {
            return 0.0;
        }
        // P(repeat | the value changed last time), with half a repeat of
        // prior; P(repeat | it repeated), with the prior that repeats are
        // independent worth STUCK_PRIOR transitions, so a frozen value does
        // not teach in its first few events that repeats go on.
        let p_start = (st[slot::STARTS] + 0.5) / (st[slot::CHANGES] + 1.0);
        let p_cont =
            (st[slot::GOES_ON] + STUCK_PRIOR * p_start) / (st[slot::REPEATS] + STUCK_PRIOR);
        let per = -p_cont.ln();
        let geo = -p_start.ln() + (m - 1.0) * per;
        // Beyond the record, a run twice as long as any seen is news; one a
        // few events longer is not. A run that started a day after the
        // longest alerted one is a nightly job's second run: they pair.
        let started = if st[slot::RUN] >= 1.0 {
            st[slot::RUN_MS]
        } else {
            ts_ms
        };
        let scheduled = a_day_after(st[slot::SUSPECT_MS], started);
        // A series' longest runs come in its quiet hours, once a day: its
        // completed runs are as many chances at a record as it has seen
        // days, not as many as it has runs.
        let mut record = [0.0; RECORD_LEN];
        record.copy_from_slice(&st[slot::RECORD..slot::RECORD + RECORD_LEN]);
        record[record_slot::EXCURSIONS] = record[record_slot::EXCURSIONS].min(days + 1.0);
        geo.min(Record::new(&record, 1.0, 1.0, 1.0, scheduled).surprise(m))
    }
}

impl Channel for Stuck {
    const REASON: Reason = Reason::Stuck;
    const MARGIN: f64 = SLOW_MARGIN;

    fn len(&self) -> usize {
        slot::RECORD + RECORD_LEN
    }

    #[inline]
    fn surprise(&self, st: &[f64], ev: &Event) -> f64 {
        let m = Self::run(st, ev);
        // A run as long as all the series remembers is what the series
        // is (a constant, an `up` that never went down), not a freeze: it
        // has never shown that it moves.
        if m >= ev.events {
            return 0.0;
        }
        Self::run_surprise(st, m, ev.obs.ts_ms as f64, ev.days)
    }

    #[inline]
    fn learn(&self, st: &mut [f64], ev: &Event, outcome: &Outcome) {
        let run = Self::run(st, ev);
        // A run that has become surprising does not teach how often the
        // series repeats: a frozen exporter is not its new normal until its
        // run ends and joins the record.
        if ev.seen() && outcome.raw <= LEARN_CLIP_SURPRISE && !outcome.censored {
            let (from, hit) = if st[slot::RUN] >= 1.0 {
                (slot::REPEATS, slot::GOES_ON)
            } else {
                (slot::CHANGES, slot::STARTS)
            };
            for c in &mut st[slot::CHANGES..=slot::GOES_ON] {
                *c *= self.fading.keep;
            }
            st[from] += 1.0;
            if run >= 1.0 {
                st[hit] += 1.0;
            }
        }
        let prev_run = st[slot::RUN];
        st[slot::LAST] = ev.obs.value;
        st[slot::RUN] = run;
        if run >= 1.0 && prev_run < 1.0 {
            st[slot::RUN_MS] = ev.obs.ts_ms as f64;
        }
        let r = &mut st[slot::RECORD..slot::RECORD + RECORD_LEN];
        let peak = r[record_slot::CURRENT];
        if run >= 1.0 {
            r[record_slot::CURRENT] = r[record_slot::CURRENT].max(run);
        }
        Record::learn(r, prev_run, run >= 1.0, outcome.alerting, &self.fading);
        // A run that ends as the longest alerted one: when it started.
        if run < 1.0 && peak > 0.0 && r[record_slot::SUSPECT_FIRST] == peak {
            st[slot::SUSPECT_MS] = st[slot::RUN_MS];
        }
    }
}
