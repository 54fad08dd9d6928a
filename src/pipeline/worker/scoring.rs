//! The per-event path of one batch: value rule, score and learn, alert
//! lifecycle, tap.

use super::{Core, Entry, Tally};
use crate::alert::{EmittedCounters, SeriesAlert, ValueKind};
use crate::counter::{Kind, Step};
use crate::detector::Skipped;
use crate::event::SeriesKey;
use crate::pipeline::tap::TapBatch;
use crate::telemetry::metrics::SeriesSample;

/// Wall-clock time in Unix milliseconds (read once per batch).
pub(super) fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The per-event path for one batch: what its events share.
pub(super) struct Scoring<'a, B> {
    pub(super) core: &'a Core,
    pub(super) emitted: &'a EmittedCounters,
    /// The batch's wall clock (Unix ms), against which an event's age is
    /// measured.
    pub(super) now_ms: i64,
    /// The tap's view for this batch, if there is a tap.
    pub(super) tap: Option<B>,
    pub(super) tally: Tally,
}

impl<B: TapBatch> Scoring<'_, B> {
    /// One live event of series `key`: value rule, score and learn, then
    /// (unless too old) the alert lifecycle, then the tap.
    #[inline]
    pub(super) fn observe(&mut self, key: &SeriesKey, e: &mut Entry, ts_ms: i64, raw: f64) {
        let core = self.core;
        let m = &core.metrics;
        let value = match e.rate.apply(e.kind, ts_ms, raw) {
            Step::Value(v) => v,
            step => {
                if let Some(reason) = step.skip_reason() {
                    m.event_skipped(reason);
                }
                return;
            }
        };
        // Scores the event with the model as it was, then trains on it.
        match core.detector.observe(&mut e.detector, ts_ms, value) {
            Ok(decision) => {
                self.tally.processed += 1;
                if m.per_series_enabled() {
                    let sample = SeriesSample {
                        value,
                        expected: decision.expected,
                        lower: decision.lower,
                        upper: decision.upper,
                        score: decision.score,
                    };
                    m.observe_series(key, &sample);
                }
                let too_old = core
                    .options
                    .max_event_age_ms
                    .is_some_and(|max| self.now_ms.saturating_sub(ts_ms) > max);
                let transition = if too_old {
                    // Learned above; the past does not page.
                    self.tally.too_old += 1;
                    None
                } else {
                    e.lifecycle.step(&core.rule, ts_ms, value, &decision)
                };
                if let Some(t) = &transition {
                    let alert = crate::alert::lifecycle::build_alert(
                        key,
                        t,
                        ts_ms,
                        value,
                        &decision,
                        e.lifecycle.peak_score(),
                        &core.rule,
                        core.detector.model_name(),
                    );
                    let kind = match e.kind {
                        Kind::Rate => ValueKind::Rate,
                        Kind::Value => ValueKind::Value,
                    };
                    self.emitted.emitted(alert.status, alert.severity);
                    core.alerts.hand_off(SeriesAlert::new(alert, kind));
                }
                if let Some(tap) = self.tap.as_mut() {
                    tap.record(
                        &mut e.tap_slot,
                        key,
                        ts_ms,
                        value,
                        &decision,
                        &e.lifecycle,
                        transition.as_ref(),
                        e.kind,
                    );
                }
            }
            Err(skipped) => {
                m.event_skipped(skipped.reason());
                if skipped == Skipped::IncompatibleState {
                    // Restored under another model shape: start over so
                    // the series' next events are scored again.
                    e.detector = core.detector.new_state();
                }
            }
        }
    }
}
