//! Where events come from.
//!
//! [`kafka`] is the daemon's source: a consumer-group member that decodes
//! messages, feeds the pipeline and commits offsets at barriers. [`file`]
//! replays a file or stdin through the same decoder and pipeline (benchmarks,
//! debugging). Both report bad input the same way ([`report_decode_errors`]).
//! Only `kafka.rs` imports rdkafka.

pub mod file;
pub mod kafka;

use std::time::{Duration, Instant};

use crate::decode::DecodeError;
use crate::telemetry::metrics::Metrics;

/// Counts each decode error by reason and logs a sample, at most one line
/// per `interval` (a flood of bad messages must not flood the log).
pub struct DecodeErrorReporter {
    interval: Duration,
    last_log: Option<Instant>,
    suppressed: u64,
}

impl DecodeErrorReporter {
    /// A reporter that logs at most once per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last_log: None,
            suppressed: 0,
        }
    }

    /// Counts `errors` and logs the first of them unless a line was logged
    /// less than `interval` ago. `origin` says where the message came from.
    pub fn report(
        &mut self,
        metrics: &Metrics,
        errors: &[DecodeError],
        origin: &dyn std::fmt::Display,
    ) {
        report_decode_errors(metrics, errors);
        let Some(first) = errors.first() else { return };
        let due = self.last_log.is_none_or(|t| t.elapsed() >= self.interval);
        if due {
            tracing::warn!(
                %origin,
                reason = first.reason(),
                error = %first,
                errors_in_message = errors.len(),
                suppressed_since_last_log = self.suppressed,
                "Skipped undecodable input."
            );
            self.last_log = Some(Instant::now());
            self.suppressed = 0;
        } else {
            self.suppressed += errors.len() as u64;
        }
    }
}

/// Counts decode errors by reason in `anomalyd_events_failed_total`.
pub fn report_decode_errors(metrics: &Metrics, errors: &[DecodeError]) {
    for e in errors {
        metrics.event_failed(e.reason());
    }
}
