//! When a series starts firing, escalates and resolves.
//!
//! This module owns the alert rule ([`AlertRuleConfig`], compiled once into a
//! shared [`AlertRule`]), the per-series state machine ([`Lifecycle`], kept
//! for every series and in snapshots, hence small), and the building of the
//! [`Alert`] message from a [`Transition`]. It is pure: no I/O and no clock —
//! time is the event time passed in, so a backtest and the live daemon make
//! the same decisions. Delivering alerts is the sinks' job.
//!
//! The rule, per event of one series:
//! - a *hit* is a warm decision whose score is at or above `threshold`, whose
//!   deviation `value - expected` points in `direction`, and whose size
//!   passes both floors (`min_abs_deviation`, `min_rel_deviation`);
//! - the rule *holds* when at least `for_events` of the last
//!   `window_events` events were hits;
//! - a quiet series starts firing on the first event where the rule holds,
//!   unless it resolved less than `cooldown_secs` ago (event time);
//! - a firing series resolves once the rule has not held for
//!   `resolve_after_events` consecutive events;
//! - a firing `warning` escalates to `critical` (once, never back) when a
//!   hit scores at or above the critical threshold.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat};
use serde::{Deserialize, Serialize};

use super::{Alert, AlertStatus, Resolution, Severity};
use crate::config::Problems;
use crate::detector::Decision;
use crate::event::SeriesKey;
use crate::threshold::{AlertTargets, Reason};

/// Default alert threshold: the score contract's documented default.
pub use crate::threshold::DEFAULT_ALERT_THRESHOLD;

/// Largest `window_events`: the window is one 64-bit mask per series.
pub const MAX_WINDOW_EVENTS: u32 = 64;

/// Largest `cooldown_secs` (365 days).
pub const MAX_COOLDOWN_SECS: u64 = 365 * 24 * 3600;

/// Smallest `max_episode_secs` (one minute).
pub const MIN_EPISODE_SECS: u64 = 60;

/// Largest `max_episode_secs` (30 days).
pub const MAX_EPISODE_SECS: u64 = 30 * 24 * 3600;

pub use crate::threshold::DEFAULT_MAX_EPISODE_SECS;

/// Which deviations can alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Only values above the expectation (`value > expected`), e.g. latency.
    Above,
    /// Only values below the expectation (`value < expected`), e.g.
    /// throughput.
    Below,
    /// Either way.
    #[default]
    Both,
}

/// The default critical threshold for alert threshold `t`: the score of a
/// tail 100 times rarer (surprise `ln 100` nats higher, see the score
/// contract in [`crate::threshold`]).
pub fn default_critical(t: f64) -> f64 {
    use crate::threshold::{score_from_surprise, surprise_from_score};
    score_from_surprise(surprise_from_score(t) + 100f64.ln())
}

/// The default resolve threshold for alert threshold `t`: the score of
/// 60 % of its surprise (0.32 for 0.5), so a firing alert is not resolved
/// and re-fired by scores that hover around the threshold.
pub fn default_resolve(t: f64) -> f64 {
    AlertTargets::at(t).resolve_threshold
}

/// When a series alerts (`[alert]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertRuleConfig {
    /// Anomaly score (0..1, unitless) at or above which an event is a hit.
    /// Default 0.5.
    pub threshold: f64,
    /// Score at or above which a hit is `critical` instead of `warning`.
    /// Unset (default): the score of a tail 100 times rarer than the alert
    /// threshold's (`ln 100` more nats of surprise; 0.64 for threshold 0.5).
    pub critical_threshold: Option<f64>,
    /// While firing, an event still counts as a hit when its score is at or
    /// above this (hysteresis). Unset (default): the score of 60 % of the
    /// threshold's surprise (0.32 for threshold 0.5).
    pub resolve_threshold: Option<f64>,
    /// Fire when at least this many of the last `window_events` events are
    /// hits (events). Default 1.
    pub for_events: u32,
    /// Length of that window (events, 1..=64). Default 1: fire on the first
    /// hit. `3` of `5` rides out single spikes.
    pub window_events: u32,
    /// Resolve after the rule has not held for this many consecutive events
    /// (events). Default 3.
    pub resolve_after_events: u32,
    /// After a resolve, do not fire again for this long (seconds of event
    /// time). Default 0.
    pub cooldown_secs: u64,
    /// `above` (value > expected), `below` (value < expected) or `both`
    /// (default).
    pub direction: Direction,
    /// Ignore deviations with `|value - expected|` below this (in the
    /// metric's own unit). Default 0 (off).
    pub min_abs_deviation: f64,
    /// Ignore deviations with `|value - expected|` below this fraction of
    /// `|expected|` (0.1 = 10 %). Default 0 (off).
    pub min_rel_deviation: f64,
    /// A change that lasts longer than this (seconds of event time) is the
    /// series' new normal: its alert resolves saying so (`resolution:
    /// "new_normal"`) and the detector learns the series where it now sits.
    /// Default 21600 (six hours). Between 60 and 2592000 (30 days).
    pub max_episode_secs: u64,
}

impl Default for AlertRuleConfig {
    fn default() -> Self {
        Self {
            threshold: DEFAULT_ALERT_THRESHOLD,
            critical_threshold: None,
            resolve_threshold: None,
            for_events: 1,
            window_events: 1,
            resolve_after_events: 3,
            cooldown_secs: 0,
            direction: Direction::Both,
            min_abs_deviation: 0.0,
            min_rel_deviation: 0.0,
            max_episode_secs: DEFAULT_MAX_EPISODE_SECS,
        }
    }
}

impl AlertRuleConfig {
    /// Records every problem under `prefix` (e.g. `alert`).
    pub fn validate(&self, prefix: &str, problems: &mut Problems) {
        let t = self.threshold;
        problems.check(
            t.is_finite() && t > 0.0 && t < 1.0,
            format!("{prefix}.threshold"),
            format!("must be a score strictly between 0 and 1 (got {t})"),
        );
        if let Some(c) = self.critical_threshold {
            problems.check(
                c.is_finite() && c >= t && c < 1.0,
                format!("{prefix}.critical_threshold"),
                format!(
                    "must be at least threshold ({t}) and below 1 (got {c}); \
                     remove it to use the default (a tail 100 times rarer)"
                ),
            );
        }
        if let Some(r) = self.resolve_threshold {
            problems.check(
                r.is_finite() && r > 0.0 && r <= t,
                format!("{prefix}.resolve_threshold"),
                format!(
                    "must be above 0 and at most threshold ({t}) (got {r}); \
                     remove it to use the default (60 % of the threshold's surprise)"
                ),
            );
        }
        problems.check(
            (1..=MAX_WINDOW_EVENTS).contains(&self.window_events),
            format!("{prefix}.window_events"),
            format!(
                "must be between 1 and {MAX_WINDOW_EVENTS} events (got {})",
                self.window_events
            ),
        );
        problems.check(
            self.for_events >= 1 && self.for_events <= self.window_events,
            format!("{prefix}.for_events"),
            format!(
                "must be between 1 and window_events ({}) (got {}); raise window_events \
                 to require more hits",
                self.window_events, self.for_events
            ),
        );
        problems.check(
            self.resolve_after_events >= 1,
            format!("{prefix}.resolve_after_events"),
            "must be at least 1 event",
        );
        problems.check(
            self.cooldown_secs <= MAX_COOLDOWN_SECS,
            format!("{prefix}.cooldown_secs"),
            format!(
                "must be at most {MAX_COOLDOWN_SECS} seconds (365 days) (got {})",
                self.cooldown_secs
            ),
        );
        problems.check(
            (MIN_EPISODE_SECS..=MAX_EPISODE_SECS).contains(&self.max_episode_secs),
            format!("{prefix}.max_episode_secs"),
            format!(
                "must be between {MIN_EPISODE_SECS} and {MAX_EPISODE_SECS} seconds (30 days) \
                 (got {}); {DEFAULT_MAX_EPISODE_SECS}, six hours, is the default",
                self.max_episode_secs
            ),
        );
        for (key, v) in [
            ("min_abs_deviation", self.min_abs_deviation),
            ("min_rel_deviation", self.min_rel_deviation),
        ] {
            problems.check(
                v.is_finite() && v >= 0.0,
                format!("{prefix}.{key}"),
                format!("must be a finite number >= 0; 0 turns the floor off (got {v})"),
            );
        }
    }
}

/// A validated rule, shared by all series.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    /// Hit threshold on the score.
    threshold: f64,
    /// Critical threshold on the score (derived when unset).
    critical_threshold: f64,
    /// Hit threshold while firing (derived when unset).
    resolve_threshold: f64,
    /// N of N-of-M.
    for_events: u32,
    /// Low `window_events` bits set: the M of N-of-M.
    window_mask: u64,
    /// K: consecutive non-holding events before resolving.
    resolve_after_events: u32,
    /// Cooldown in event-time milliseconds.
    cooldown_ms: i64,
    /// Which deviations count.
    direction: Direction,
    /// Absolute deviation floor.
    min_abs_deviation: f64,
    /// Relative deviation floor.
    min_rel_deviation: f64,
    /// When a change is the new normal (seconds).
    max_episode_secs: u64,
}

impl AlertRule {
    /// Validates `config` (problems are keyed under `prefix`) and compiles it.
    pub fn new(config: &AlertRuleConfig, prefix: &str) -> Result<Self, Problems> {
        let mut problems = Problems::new();
        config.validate(prefix, &mut problems);
        problems.into_result()?;
        let critical_threshold = config
            .critical_threshold
            .unwrap_or_else(|| default_critical(config.threshold));
        let resolve_threshold = config
            .resolve_threshold
            .unwrap_or_else(|| default_resolve(config.threshold));
        Ok(Self {
            threshold: config.threshold,
            critical_threshold,
            resolve_threshold,
            for_events: config.for_events,
            window_mask: if config.window_events >= 64 {
                u64::MAX
            } else {
                (1u64 << config.window_events) - 1
            },
            resolve_after_events: config.resolve_after_events,
            // At most 365 days, so the product fits easily.
            cooldown_ms: (config.cooldown_secs * 1000) as i64,
            direction: config.direction,
            min_abs_deviation: config.min_abs_deviation,
            min_rel_deviation: config.min_rel_deviation,
            max_episode_secs: config.max_episode_secs,
        })
    }

    /// The alert threshold (score).
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// The critical threshold (score), derived when not configured.
    pub fn critical_threshold(&self) -> f64 {
        self.critical_threshold
    }

    /// The severity a score earns.
    pub fn severity(&self, score: f64) -> Severity {
        if score >= self.critical_threshold {
            Severity::Critical
        } else {
            Severity::Warning
        }
    }

    /// The resolve threshold (score).
    pub fn resolve_threshold(&self) -> f64 {
        self.resolve_threshold
    }

    /// What the detector needs of this rule: where an anomaly starts and
    /// ends, and when a change is the new normal.
    pub fn targets(&self) -> AlertTargets {
        AlertTargets {
            threshold: self.threshold,
            resolve_threshold: self.resolve_threshold,
            resolve_after_events: self.resolve_after_events,
            max_episode_secs: self.max_episode_secs,
        }
    }

    /// Whether one observation counts toward firing (`firing`: the series
    /// already fires, and the resolve threshold applies). Anything
    /// non-finite, or a decision still warming up, never does.
    pub fn is_hit(&self, value: f64, decision: &Decision, firing: bool) -> bool {
        let bar = if firing {
            self.resolve_threshold
        } else {
            self.threshold
        };
        // A quiet series fires on what is new (the onset score: an
        // anomaly's echo and plateau do not fire it again); a firing one
        // holds while the series is still anomalous (the score). False for
        // a NaN score, which therefore is not a hit.
        let scored = if firing {
            decision.score >= bar
        } else {
            decision.onset >= bar
        };
        if !decision.warm || !scored || !value.is_finite() || !decision.expected.is_finite() {
            return false;
        }
        let deviation = value - decision.expected;
        let direction_ok = match self.direction {
            Direction::Above => deviation > 0.0,
            Direction::Below => deviation < 0.0,
            Direction::Both => true,
        };
        direction_ok
            && deviation.abs() >= self.min_abs_deviation
            && deviation.abs() >= self.min_rel_deviation * decision.expected.abs()
    }
}

/// A change of a series' alert state, as returned by [`Lifecycle::step`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Transition {
    /// The series started firing at this event.
    Firing {
        /// Severity from this event's score.
        severity: Severity,
        /// This event's time.
        started_at_ms: i64,
        /// The channel that raised it.
        reason: Reason,
    },
    /// A firing warning became critical at this event.
    Escalated {
        /// Always [`Severity::Critical`].
        severity: Severity,
        /// When the alert started firing.
        started_at_ms: i64,
        /// The channel of the critical event.
        reason: Reason,
    },
    /// The series stopped firing at this event.
    Resolved {
        /// The highest severity the alert reached.
        severity: Severity,
        /// When the alert started firing.
        started_at_ms: i64,
        /// The channel that raised (or escalated) the alert.
        reason: Reason,
        /// Why: the series is back, or its change is the new normal.
        resolution: Resolution,
    },
}

impl Transition {
    /// The status of the message this transition sends.
    pub fn status(&self) -> AlertStatus {
        match self {
            Self::Firing { .. } | Self::Escalated { .. } => AlertStatus::Firing,
            Self::Resolved { .. } => AlertStatus::Resolved,
        }
    }

    /// The alert's severity.
    pub fn severity(&self) -> Severity {
        match *self {
            Self::Firing { severity, .. }
            | Self::Escalated { severity, .. }
            | Self::Resolved { severity, .. } => severity,
        }
    }

    /// When the alert started firing.
    pub fn started_at_ms(&self) -> i64 {
        match *self {
            Self::Firing { started_at_ms, .. }
            | Self::Escalated { started_at_ms, .. }
            | Self::Resolved { started_at_ms, .. } => started_at_ms,
        }
    }

    /// The channel that raised the alert (see [`Reason`]).
    pub fn reason(&self) -> Reason {
        match *self {
            Self::Firing { reason, .. }
            | Self::Escalated { reason, .. }
            | Self::Resolved { reason, .. } => reason,
        }
    }

    /// Why it resolved (resolved transitions only).
    pub fn resolution(&self) -> Option<Resolution> {
        match *self {
            Self::Resolved { resolution, .. } => Some(resolution),
            _ => None,
        }
    }

    /// A label value for metrics and logs: `firing`, `escalated` or
    /// `resolved`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Firing { .. } => "firing",
            Self::Escalated { .. } => "escalated",
            Self::Resolved { .. } => "resolved",
        }
    }
}

/// The alert state of one series: 32 bytes, `Copy`, snapshotted with the
/// series. A rule change between snapshots is tolerated: the window is
/// re-masked on the next event.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Lifecycle {
    /// Hit flags of the last events, newest in bit 0.
    hits: u64,
    /// Firing: when it started. Quiet: when it last resolved (for the
    /// cooldown), `i64::MIN` if never. One field serves both because the
    /// two are never needed at once.
    since_ms: i64,
    /// Firing: consecutive events on which the rule did not hold.
    clear_run: u32,
    /// Whether the series is firing.
    firing: bool,
    /// Firing: the alert's severity so far.
    severity: Severity,
    /// Firing: the channel that raised it (or escalated it).
    reason: Reason,
    /// Firing: the highest score of the alert so far.
    peak: f64,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            hits: 0,
            since_ms: i64::MIN,
            clear_run: 0,
            firing: false,
            severity: Severity::Warning,
            reason: Reason::Forecast,
            peak: 0.0,
        }
    }
}

impl Lifecycle {
    /// A quiet series that never fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the series is firing.
    pub fn is_firing(&self) -> bool {
        self.firing
    }

    /// When the current alert started, if firing.
    pub fn started_at_ms(&self) -> Option<i64> {
        self.firing.then_some(self.since_ms)
    }

    /// The current alert's severity, if firing.
    pub fn severity(&self) -> Option<Severity> {
        self.firing.then_some(self.severity)
    }

    /// The highest score of the current (or, just after it resolved, the
    /// last) alert.
    pub fn peak_score(&self) -> f64 {
        self.peak
    }

    /// Feeds one observation (in event-time order) and returns the
    /// transition it causes, if any.
    pub fn step(
        &mut self,
        rule: &AlertRule,
        ts_ms: i64,
        value: f64,
        decision: &Decision,
    ) -> Option<Transition> {
        let hit = rule.is_hit(value, decision, self.firing);
        self.hits = ((self.hits << 1) | u64::from(hit)) & rule.window_mask;
        let holds = self.hits.count_ones() >= rule.for_events;

        if self.firing {
            if decision.score.is_finite() {
                self.peak = self.peak.max(decision.score);
            }
            if decision.new_normal {
                // The change lasted past the rule's maximum episode: the
                // detector has taken the series' present as its normal.
                return Some(self.resolve(ts_ms, Resolution::NewNormal));
            }
            if holds {
                self.clear_run = 0;
                // Severity follows how anomalous the events are (the score),
                // not only what is new: a value stuck for longer and longer
                // becomes critical.
                if decision.warm
                    && self.severity == Severity::Warning
                    && rule.severity(decision.score) == Severity::Critical
                {
                    self.severity = Severity::Critical;
                    self.reason = decision.reason;
                    return Some(Transition::Escalated {
                        severity: Severity::Critical,
                        started_at_ms: self.since_ms,
                        reason: self.reason,
                    });
                }
                return None;
            }
            self.clear_run = self.clear_run.saturating_add(1);
            if self.clear_run < rule.resolve_after_events {
                return None;
            }
            return Some(self.resolve(ts_ms, Resolution::Returned));
        }

        // `since_ms` is `i64::MIN` before the first resolve: no cooldown.
        if holds && ts_ms >= self.since_ms.saturating_add(rule.cooldown_ms) {
            self.firing = true;
            self.since_ms = ts_ms;
            self.clear_run = 0;
            // The rule can hold on an event that is not itself a hit (N of
            // M): its score says nothing, so start at warning.
            self.severity = if hit {
                rule.severity(decision.score)
            } else {
                Severity::Warning
            };
            self.reason = decision.reason;
            self.peak = if decision.score.is_finite() {
                decision.score
            } else {
                0.0
            };
            return Some(Transition::Firing {
                severity: self.severity,
                started_at_ms: ts_ms,
                reason: self.reason,
            });
        }
        None
    }
}

impl Lifecycle {
    /// Stops firing at `ts_ms` for `resolution`.
    fn resolve(&mut self, ts_ms: i64, resolution: Resolution) -> Transition {
        let started_at_ms = self.since_ms;
        self.firing = false;
        self.clear_run = 0;
        self.since_ms = ts_ms;
        Transition::Resolved {
            severity: self.severity,
            started_at_ms,
            reason: self.reason,
            resolution,
        }
    }
}

/// Earliest instant [`rfc3339_ms`] prints as itself: 0000-01-01T00:00:00Z.
const MIN_RFC3339_MS: i64 = -62_167_219_200_000;
/// Latest instant [`rfc3339_ms`] prints as itself: 9999-12-31T23:59:59.999Z.
const MAX_RFC3339_MS: i64 = 253_402_300_799_999;

/// Formats epoch milliseconds as RFC 3339 UTC with milliseconds
/// (`2026-01-01T00:00:00.000Z`). Times outside years 0000..=9999, which RFC
/// 3339 cannot write, are clamped to its range.
pub fn rfc3339_ms(ts_ms: i64) -> String {
    DateTime::from_timestamp_millis(ts_ms.clamp(MIN_RFC3339_MS, MAX_RFC3339_MS))
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `x` if finite; NaN becomes `nan_to`, ±Inf the largest finite float of
/// that sign. Alert consumers get numbers, never `null`.
fn finite(x: f64, nan_to: f64) -> f64 {
    if x.is_nan() {
        nan_to
    } else {
        x.clamp(f64::MIN, f64::MAX)
    }
}

/// Builds the message for `transition`, caused by the observation
/// (`ts_ms`, `value`, `decision`) of series `key`, whose alert peaked at
/// score `peak` (see [`Lifecycle::peak_score`]). `model` names the model
/// kind (e.g. `regression`). All numbers in the message are finite.
#[allow(clippy::too_many_arguments)]
pub fn build_alert(
    key: &SeriesKey,
    transition: &Transition,
    ts_ms: i64,
    value: f64,
    decision: &Decision,
    peak: f64,
    rule: &AlertRule,
    model: &str,
) -> Alert {
    let mut labels: BTreeMap<String, String> = key
        .labels()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // Inserted last so a stray `__name__` label cannot override the name.
    labels.insert("__name__".to_owned(), key.name().to_owned());
    let value = finite(value, finite(decision.expected, 0.0));
    let expected = finite(decision.expected, value);
    let status = transition.status();
    Alert {
        fingerprint: format!("{:016x}", key.fingerprint()),
        status,
        series: key.to_string(),
        labels,
        started_at: rfc3339_ms(transition.started_at_ms()),
        ended_at: (status == AlertStatus::Resolved).then(|| rfc3339_ms(ts_ms)),
        ts: rfc3339_ms(ts_ms),
        value,
        expected,
        lower: finite(decision.lower, expected),
        upper: finite(decision.upper, expected),
        score: finite(decision.score, 0.0).clamp(0.0, 1.0),
        peak_score: finite(peak, 0.0).clamp(0.0, 1.0),
        threshold: rule.threshold(),
        severity: transition.severity(),
        model: model.to_owned(),
        reason: transition.reason(),
        resolution: transition.resolution(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(f: impl FnOnce(&mut AlertRuleConfig)) -> AlertRule {
        let mut c = AlertRuleConfig::default();
        f(&mut c);
        AlertRule::new(&c, "alert").unwrap()
    }

    /// A warm decision expecting 10 with band [9, 11].
    fn d(score: f64) -> Decision {
        Decision::warm_at(score)
    }

    /// Runs events `(ts_ms, value, score)` and returns each step's
    /// transition kind ("" for none).
    fn run(rule: &AlertRule, lc: &mut Lifecycle, events: &[(i64, f64, f64)]) -> Vec<&'static str> {
        events
            .iter()
            .map(|&(ts, v, s)| lc.step(rule, ts, v, &d(s)).map_or("", |t| t.as_str()))
            .collect()
    }

    /// Events one second apart with value 20 (above 10) and these scores.
    fn scores(s: &[f64]) -> Vec<(i64, f64, f64)> {
        s.iter()
            .enumerate()
            .map(|(i, &s)| (i as i64 * 1000, 20.0, s))
            .collect()
    }

    const H: f64 = 0.55; // a warning-level hit with threshold 0.5
    const L: f64 = 0.1; // not a hit

    #[test]
    fn defaults_fire_on_first_hit_and_resolve_after_three() {
        let r = rule(|_| {});
        let mut lc = Lifecycle::new();
        assert_eq!(
            run(&r, &mut lc, &scores(&[L, H, H, L, L, H, L, L, L, L])),
            ["", "firing", "", "", "", "", "", "", "resolved", ""]
        );
        assert!(!lc.is_firing());
    }

    #[test]
    fn n_of_m_firing() {
        let r = rule(|c| {
            c.for_events = 2;
            c.window_events = 3;
            c.resolve_after_events = 1;
        });
        // Hits 3 apart never share a window of 3.
        let mut lc = Lifecycle::new();
        assert!(
            run(&r, &mut lc, &scores(&[H, L, L, H, L, L, H]))
                .iter()
                .all(|t| t.is_empty())
        );
        // Two hits within 3 events fire on the second.
        let mut lc = Lifecycle::new();
        assert_eq!(
            run(&r, &mut lc, &scores(&[H, L, H, H, L, L])),
            ["", "", "firing", "", "", "resolved"],
            "holds while 2 of the last 3 are hits ([L,H,H], [H,H,L]); resolves \
             when the window drops to 1 hit ([H,L,L], K = 1)"
        );
    }

    #[test]
    fn full_64_event_window() {
        let r = rule(|c| {
            c.for_events = 64;
            c.window_events = 64;
        });
        let mut lc = Lifecycle::new();
        let t = run(&r, &mut lc, &scores(&[H; 64]));
        assert_eq!(t.iter().filter(|t| !t.is_empty()).count(), 1);
        assert_eq!(t[63], "firing");
    }

    #[test]
    fn resolve_after_k_consecutive_and_started_at_is_kept() {
        let r = rule(|c| c.resolve_after_events = 3);
        let mut lc = Lifecycle::new();
        let ev = scores(&[H, L, L, H, L, L, L]);
        let mut got = Vec::new();
        for &(ts, v, s) in &ev {
            got.push(lc.step(&r, ts, v, &d(s)));
        }
        assert_eq!(
            got[0],
            Some(Transition::Firing {
                severity: Severity::Warning,
                started_at_ms: 0,
                reason: Reason::Forecast,
            })
        );
        assert!(
            got[1..6].iter().all(Option::is_none),
            "a hit resets the count"
        );
        assert_eq!(
            got[6],
            Some(Transition::Resolved {
                severity: Severity::Warning,
                started_at_ms: 0,
                reason: Reason::Forecast,
                resolution: Resolution::Returned,
            })
        );
    }

    #[test]
    fn cooldown_blocks_refiring_in_event_time() {
        let r = rule(|c| {
            c.resolve_after_events = 1;
            c.cooldown_secs = 60;
        });
        let mut lc = Lifecycle::new();
        let t = run(
            &r,
            &mut lc,
            &[
                (0, 20.0, H),      // fires
                (1_000, 20.0, L),  // resolves at t = 1 s
                (30_000, 20.0, H), // inside the cooldown
                (60_999, 20.0, H), // still inside (ends at 61 s)
                (61_000, 20.0, H), // cooldown over, rule holds: fires
                (62_000, 20.0, L), // resolves at 62 s
                (70_000, 20.0, L),
                (122_000, 20.0, H), // exactly 60 s later: allowed
            ],
        );
        assert_eq!(
            t,
            [
                "firing", "resolved", "", "", "firing", "resolved", "", "firing"
            ]
        );
    }

    #[test]
    fn direction_filter() {
        let above = rule(|c| c.direction = Direction::Above);
        let below = rule(|c| c.direction = Direction::Below);
        let both = rule(|c| c.direction = Direction::Both);
        let (hi, lo) = (20.0, 0.0);
        assert!(above.is_hit(hi, &d(H), false));
        assert!(!above.is_hit(lo, &d(H), false));
        assert!(below.is_hit(lo, &d(H), false));
        assert!(!below.is_hit(hi, &d(H), false));
        assert!(both.is_hit(lo, &d(H), false) && both.is_hit(hi, &d(H), false));
        let mut lc = Lifecycle::new();
        assert_eq!(
            run(&above, &mut lc, &[(0, lo, 0.99), (1, hi, 0.99)]),
            ["", "firing"]
        );
    }

    #[test]
    fn deviation_floors() {
        let abs = rule(|c| c.min_abs_deviation = 1.0);
        assert!(!abs.is_hit(10.5, &d(H), false), "|0.5| < 1");
        assert!(abs.is_hit(11.0, &d(H), false), "|1| is not below 1");
        assert!(abs.is_hit(8.0, &d(H), false));
        let rel = rule(|c| c.min_rel_deviation = 0.1);
        assert!(!rel.is_hit(10.9, &d(H), false), "0.9 < 0.1 * 10");
        assert!(rel.is_hit(11.5, &d(H), false));
        let neg = Decision {
            expected: -100.0,
            ..d(H)
        };
        assert!(!rel.is_hit(-95.0, &neg, false), "uses |expected|");
        assert!(rel.is_hit(-111.0, &neg, false));
        let both = rule(|c| {
            c.min_abs_deviation = 5.0;
            c.min_rel_deviation = 0.1;
        });
        assert!(
            !both.is_hit(12.0, &d(H), false),
            "passes rel (2 >= 1), fails abs"
        );
        assert!(both.is_hit(15.0, &d(H), false));
    }

    #[test]
    fn severity_and_escalation() {
        let r = rule(|_| {});
        // 10 nats (score 0.5) + ln 100 nats: r = 1.4605^1.5, c = r / (r + 1).
        let c = r.critical_threshold();
        let x = (14.605_170_185_988_09f64 / 10.0).powf(1.5);
        assert!((c - x / (x + 1.0)).abs() < 1e-12, "{c}");
        assert_eq!(r.severity(c - 1e-9), Severity::Warning);
        assert_eq!(r.severity(c), Severity::Critical);
        let mut lc = Lifecycle::new();
        let ev = scores(&[H, 0.97, 0.99, H, L, L, L]);
        let t: Vec<_> = ev
            .iter()
            .map(|&(ts, v, s)| lc.step(&r, ts, v, &d(s)))
            .collect();
        assert_eq!(
            t[0],
            Some(Transition::Firing {
                severity: Severity::Warning,
                started_at_ms: 0,
                reason: Reason::Forecast,
            })
        );
        assert_eq!(
            t[1],
            Some(Transition::Escalated {
                severity: Severity::Critical,
                started_at_ms: 0,
                reason: Reason::Forecast,
            })
        );
        assert_eq!(t[2], None, "escalates once");
        assert_eq!(t[3], None, "never de-escalates");
        assert_eq!(
            t[6],
            Some(Transition::Resolved {
                severity: Severity::Critical,
                started_at_ms: 0,
                reason: Reason::Forecast,
                resolution: Resolution::Returned,
            })
        );
        // A critical first hit fires as critical.
        let mut lc = Lifecycle::new();
        assert_eq!(
            lc.step(&r, 5, 20.0, &d(0.99)).map(|t| t.severity()),
            Some(Severity::Critical)
        );
        // Explicit critical threshold.
        let r = rule(|c| c.critical_threshold = Some(0.8));
        assert_eq!(r.severity(0.8), Severity::Critical);
    }

    #[test]
    fn warm_up_never_fires() {
        let r = rule(|_| {});
        let mut lc = Lifecycle::new();
        let cold = Decision {
            warm: false,
            ..d(0.999)
        };
        for ts in 0..100 {
            assert_eq!(lc.step(&r, ts, 1e9, &cold), None);
        }
        // And a cold event counts as a miss toward resolving.
        lc.step(&r, 100, 20.0, &d(H));
        assert!(lc.is_firing());
        for ts in 101..103 {
            assert_eq!(lc.step(&r, ts, 20.0, &cold), None);
        }
        assert!(matches!(
            lc.step(&r, 103, 20.0, &cold),
            Some(Transition::Resolved { .. })
        ));
    }

    #[test]
    fn non_finite_inputs_never_hit_and_messages_stay_finite() {
        let r = rule(|_| {});
        let nan_score = d(f64::NAN);
        let nan_expected = Decision {
            expected: f64::NAN,
            ..d(0.99)
        };
        assert!(!r.is_hit(20.0, &nan_score, false));
        assert!(!r.is_hit(20.0, &nan_expected, false));
        assert!(!r.is_hit(f64::NAN, &d(0.99), false));
        assert!(!r.is_hit(f64::INFINITY, &d(0.99), false));

        let key = SeriesKey::new("m", [("k", "v")]);
        let t = Transition::Resolved {
            severity: Severity::Warning,
            started_at_ms: 0,
            reason: Reason::Forecast,
            resolution: Resolution::Returned,
        };
        let wild = Decision {
            score: f64::NAN,
            expected: f64::NAN,
            lower: f64::NEG_INFINITY,
            upper: f64::NAN,
            warm: true,
            reason: Reason::Forecast,
            onset: f64::NAN,
            new_normal: false,
        };
        let a = build_alert(&key, &t, 1000, f64::NAN, &wild, f64::NAN, &r, "regression");
        for x in [a.value, a.expected, a.lower, a.upper, a.score, a.threshold] {
            assert!(x.is_finite(), "{a:?}");
        }
        assert_eq!(a.lower, f64::MIN);
        let json = serde_json::to_string(&a).unwrap();
        assert!(!json.contains("null"), "{json}");
    }

    #[test]
    fn serde_round_trip_continues_identically() {
        let r = rule(|c| {
            c.for_events = 2;
            c.window_events = 4;
            c.resolve_after_events = 2;
            c.cooldown_secs = 3;
        });
        // A deterministic pseudo-random sequence of scores (seeded LCG).
        let mut x: u64 = 0x5eed;
        let ev: Vec<(i64, f64, f64)> = (0..400)
            .map(|i| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let s = (x >> 11) as f64 / (1u64 << 53) as f64;
                (i * 700, if x & 1 == 0 { 20.0 } else { 0.0 }, s)
            })
            .collect();
        let mut straight = Lifecycle::new();
        let expected = run(&r, &mut straight, &ev);
        assert!(expected.iter().filter(|t| **t == "firing").count() >= 3);

        for cut in [1, 57, 133, 250] {
            let mut lc = Lifecycle::new();
            let mut got = run(&r, &mut lc, &ev[..cut]);
            let bytes = postcard::to_stdvec(&lc).unwrap();
            let mut from_postcard: Lifecycle = postcard::from_bytes(&bytes).unwrap();
            let mut from_json: Lifecycle =
                serde_json::from_str(&serde_json::to_string(&lc).unwrap()).unwrap();
            assert_eq!(from_postcard, lc);
            assert_eq!(from_json, lc);
            let rest_json = run(&r, &mut from_json, &ev[cut..]);
            got.extend(run(&r, &mut from_postcard, &ev[cut..]));
            assert_eq!(got, expected, "cut at {cut}");
            assert_eq!(rest_json, expected[cut..]);
        }
    }

    #[test]
    fn state_is_small() {
        assert_eq!(std::mem::size_of::<Lifecycle>(), 32);
    }

    #[test]
    fn alert_message() {
        let r = rule(|_| {});
        let key = SeriesKey::new("up", [("job", "x")]);
        let dec = Decision {
            score: 0.97,
            expected: 1.0,
            lower: 0.9,
            upper: 1.1,
            warm: true,
            reason: Reason::Forecast,
            onset: 0.97,
            new_normal: false,
        };
        let start = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        let fire = Transition::Firing {
            severity: Severity::Critical,
            started_at_ms: start,
            reason: Reason::Forecast,
        };
        let a = build_alert(&key, &fire, start, 0.0, &dec, 0.97, &r, "regression");
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::json!({
                "fingerprint": "c1f6d4cd4f8464c4",
                "status": "firing",
                "series": "up{job=\"x\"}",
                "labels": {"__name__": "up", "job": "x"},
                "started_at": "2026-01-01T00:00:00.000Z",
                "ended_at": null,
                "ts": "2026-01-01T00:00:00.000Z",
                "value": 0.0,
                "expected": 1.0,
                "lower": 0.9,
                "upper": 1.1,
                "score": 0.97,
                "peak_score": 0.97,
                "threshold": 0.5,
                "severity": "critical",
                "model": "regression",
                "reason": "forecast",
                "resolution": null
            })
        );
        let resolved = Transition::Resolved {
            severity: Severity::Critical,
            started_at_ms: start,
            reason: Reason::Forecast,
            resolution: Resolution::Returned,
        };
        let a = build_alert(
            &key,
            &resolved,
            start + 90_250,
            1.0,
            &d(0.1),
            0.97,
            &r,
            "regression",
        );
        assert_eq!(a.status, AlertStatus::Resolved);
        assert_eq!(a.started_at, "2026-01-01T00:00:00.000Z");
        assert_eq!(a.ended_at.as_deref(), Some("2026-01-01T00:01:30.250Z"));
        assert_eq!(a.ts, "2026-01-01T00:01:30.250Z");
        // Zero-padded to 16 digits.
        let f = build_alert(
            &SeriesKey::from_name("a"),
            &fire,
            0,
            0.0,
            &dec,
            0.97,
            &r,
            "m",
        )
        .fingerprint;
        assert_eq!(f.len(), 16);
        assert!(
            f.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
    }

    #[test]
    fn rfc3339_formatting_and_clamping() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_ms(MAX_RFC3339_MS), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_ms(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_ms(i64::MIN), "0000-01-01T00:00:00.000Z");
    }

    #[test]
    fn config_defaults_keys_and_validation() {
        let c: AlertRuleConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, AlertRuleConfig::default());
        assert!(serde_json::from_str::<AlertRuleConfig>(r#"{"treshold":0.9}"#).is_err());
        let c: AlertRuleConfig =
            serde_json::from_str(r#"{"direction":"below","critical_threshold":0.99}"#).unwrap();
        assert_eq!(c.direction, Direction::Below);

        let bad = AlertRuleConfig {
            threshold: 1.0,
            critical_threshold: Some(0.2),
            resolve_threshold: Some(-1.0),
            for_events: 5,
            window_events: 65,
            resolve_after_events: 0,
            cooldown_secs: MAX_COOLDOWN_SECS + 1,
            direction: Direction::Both,
            min_abs_deviation: -1.0,
            min_rel_deviation: f64::NAN,
            max_episode_secs: DEFAULT_MAX_EPISODE_SECS,
        };
        let err = AlertRule::new(&bad, "alert").unwrap_err();
        let keys: Vec<&str> = err.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "alert.threshold",
                "alert.critical_threshold",
                "alert.resolve_threshold",
                "alert.window_events",
                "alert.resolve_after_events",
                "alert.cooldown_secs",
                "alert.min_abs_deviation",
                "alert.min_rel_deviation",
            ]
        );
        let bad = AlertRuleConfig {
            for_events: 3,
            window_events: 2,
            ..AlertRuleConfig::default()
        };
        let err = AlertRule::new(&bad, "r").unwrap_err();
        assert_eq!(
            err.iter().map(|p| p.key.as_str()).collect::<Vec<_>>(),
            ["r.for_events"]
        );
    }
}

/// Property tests: for any rule and any sequence of observations (scores,
/// values and expectations finite or not, warm or not, timestamps in any
/// order), firing and resolved alternate, and every message is finite.
#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;

    fn any_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            3 => 0.0..1.0f64,
            1 => any::<f64>(),
            1 => prop::sample::select(&[f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1.0][..]),
        ]
    }

    fn rule_config() -> impl Strategy<Value = AlertRuleConfig> {
        (
            0.01..0.99f64,
            prop::option::of(0.0..1.0f64),
            1u32..=MAX_WINDOW_EVENTS,
            1u32..=MAX_WINDOW_EVENTS,
            1u32..=5,
            prop::sample::select(&[0u64, 1, 60, MAX_COOLDOWN_SECS][..]),
            prop::sample::select(&[Direction::Both, Direction::Above, Direction::Below][..]),
            prop::sample::select(&[0.0, 0.5, 1e9][..]),
            prop::sample::select(&[0.0, 0.1][..]),
        )
            .prop_map(|(t, c, a, b, k, cooldown, direction, abs, rel)| {
                let (for_events, window_events) = (a.min(b), a.max(b));
                AlertRuleConfig {
                    threshold: t,
                    // Valid critical thresholds lie in [t, 1).
                    critical_threshold: c.map(|c| t + c * (1.0 - t)),
                    // Valid resolve thresholds lie in (0, t].
                    resolve_threshold: c.map(|c| t * (1.0 - 0.9 * c)),
                    for_events,
                    window_events,
                    resolve_after_events: k,
                    cooldown_secs: cooldown,
                    direction,
                    min_abs_deviation: abs,
                    min_rel_deviation: rel,
                    max_episode_secs: DEFAULT_MAX_EPISODE_SECS,
                }
            })
    }

    /// One observation: timestamp step, value, and the decision's score,
    /// expectation and warmth.
    fn observation() -> impl Strategy<Value = (i64, f64, f64, f64, bool)> {
        (
            prop_oneof![4 => Just(1000i64), 1 => Just(0), 1 => -100_000i64..0, 1 => any::<i64>()],
            any_f64(),
            any_f64(),
            any_f64(),
            prop::bool::weighted(0.9),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 512,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0xA1E7_11FE),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn firing_and_resolved_alternate_and_messages_are_finite(
            config in rule_config(),
            events in prop::collection::vec(observation(), 0..200),
        ) {
            let rule = AlertRule::new(&config, "alert").unwrap();
            let key = SeriesKey::new("m", [("k", "v")]);
            let mut lc = Lifecycle::new();
            // (started_at, escalated) of the open alert.
            let mut open: Option<(i64, bool)> = None;
            let mut resolved_at: Option<i64> = None;
            let mut ts = 0i64;
            for (step, value, score, expected, warm) in events {
                // Small steps move the clock; a big one (from `any`) sets it.
                ts = if step.unsigned_abs() > 100_000 { step } else { ts.saturating_add(step) };
                let d = Decision {
                    score,
                    expected,
                    lower: expected - 1.0,
                    upper: expected + 1.0,
                    warm,
                    reason: Reason::Forecast,
                    onset: score,
                    new_normal: false,
                };
                let hit = rule.is_hit(value, &d, lc.is_firing());
                let t = lc.step(&rule, ts, value, &d);
                match (t, open) {
                    (None, _) => {}
                    (Some(Transition::Firing { started_at_ms, severity, .. }), None) => {
                        prop_assert_eq!(started_at_ms, ts);
                        if let Some(r) = resolved_at {
                            prop_assert!(ts >= r.saturating_add(config.cooldown_secs as i64 * 1000));
                        }
                        if !hit {
                            prop_assert_eq!(severity, Severity::Warning);
                        }
                        open = Some((ts, severity == Severity::Critical));
                    }
                    (Some(Transition::Escalated { started_at_ms, severity, .. }), Some((s, false))) => {
                        // Severity follows the score, hit or not.
                        prop_assert!(warm && rule.severity(score) == Severity::Critical);
                        prop_assert_eq!(severity, Severity::Critical);
                        prop_assert_eq!(started_at_ms, s);
                        open = Some((s, true));
                    }
                    (Some(Transition::Resolved { started_at_ms, severity, .. }), Some((s, escalated))) => {
                        // With N of M (N > 1) a lone hit need not hold.
                        if config.for_events == 1 {
                            prop_assert!(!hit);
                        }
                        prop_assert_eq!(started_at_ms, s);
                        prop_assert_eq!(severity == Severity::Critical, escalated);
                        open = None;
                        resolved_at = Some(ts);
                    }
                    (Some(t), open) => prop_assert!(false, "{t:?} with open alert {open:?}"),
                }
                prop_assert_eq!(lc.is_firing(), open.is_some());
                prop_assert_eq!(lc.started_at_ms(), open.map(|o| o.0));
                if let Some(t) = t {
                    let a = build_alert(&key, &t, ts, value, &d, lc.peak_score(), &rule, "regression");
                    for x in [a.value, a.expected, a.lower, a.upper, a.score] {
                        prop_assert!(x.is_finite(), "{a:?}");
                    }
                    prop_assert!((0.0..=1.0).contains(&a.score));
                    prop_assert_eq!(a.ended_at.is_some(), t.status() == AlertStatus::Resolved);
                }
            }
        }

        #[test]
        fn a_firing_series_resolves_after_enough_quiet_events(
            config in rule_config(),
            quiet in prop::sample::select(&[f64::NAN, 0.0, 1e-4][..]),
        ) {
            let rule = AlertRule::new(&config, "alert").unwrap();
            let mut lc = Lifecycle::new();
            let hit = Decision {
                score: 0.999,
                expected: 0.0,
                lower: -1.0,
                upper: 1.0,
                warm: true,
                reason: Reason::Forecast,
                onset: 0.999,
                new_normal: false,
            };
            let value = match config.direction {
                Direction::Below => -1e12,
                _ => 1e12,
            };
            let mut ts = 0;
            while !lc.is_firing() {
                prop_assert!(ts < 1000, "never fired");
                lc.step(&rule, ts, value, &hit);
                ts += 1;
            }
            let calm = Decision { score: quiet, onset: quiet, ..hit };
            // The window empties of hits, then the resolve count runs.
            let needed = config.window_events + config.resolve_after_events;
            let mut resolved = None;
            for i in 0..needed {
                if let Some(t) = lc.step(&rule, ts + i64::from(i), value, &calm) {
                    prop_assert_eq!(t.as_str(), "resolved");
                    resolved = Some(i + 1);
                    break;
                }
            }
            prop_assert!(resolved.is_some_and(|n| n >= config.resolve_after_events));
            prop_assert!(!lc.is_firing());
        }
    }
}
