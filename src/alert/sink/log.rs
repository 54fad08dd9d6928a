//! The `log` sink: one structured INFO line per alert.
//!
//! This module owns how an alert looks in the daemon's own log. It is the
//! default sink, so a fresh install shows its alerts somewhere. Where the
//! log goes is [`crate::telemetry::init`]'s business.

use serde::{Deserialize, Serialize};
use tracing::info;

use super::delivery::SinkTable;
use super::{AlertSink, SinkError};
use crate::alert::{Alert, AlertStatus};
use crate::config::Problems;

/// The `sink` label of this sink.
pub const NAME: &str = "log";

/// The `[sinks.log]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSinkConfig {
    /// Write one INFO line per alert.
    pub enabled: bool,
}

impl Default for LogSinkConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// Writing a log line does not fail: the log sink's table has the queue
/// keys but no `[retry]`.
impl SinkTable for LogSinkConfig {
    const KEYS: &'static [&'static str] = &["enabled", "queue_capacity", "max_batch_alerts"];
    const RETRIES: bool = false;

    fn enabled(&self) -> bool {
        self.enabled
    }

    fn validate(&self, _prefix: &str, _problems: &mut Problems) {}
}

/// Writes alerts to the log.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogSink;

impl AlertSink for LogSink {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn send(&self, batch: &[Alert]) -> Result<(), SinkError> {
        for a in batch {
            let ended_at = a.ended_at.as_deref().unwrap_or("");
            // "rate" when the numbers are a counter's per-second rate.
            let value_kind = if a.is_rate() { "rate" } else { "value" };
            match a.status {
                AlertStatus::Firing => info!(
                    fingerprint = %a.fingerprint,
                    status = a.status.as_str(),
                    severity = a.severity.as_str(),
                    series = %a.series,
                    value_kind,
                    value = a.value,
                    expected = a.expected,
                    lower = a.lower,
                    upper = a.upper,
                    score = a.score,
                    threshold = a.threshold,
                    model = %a.model,
                    started_at = %a.started_at,
                    ts = %a.ts,
                    "Anomaly alert firing."
                ),
                AlertStatus::Resolved => info!(
                    fingerprint = %a.fingerprint,
                    status = a.status.as_str(),
                    severity = a.severity.as_str(),
                    series = %a.series,
                    value_kind,
                    value = a.value,
                    expected = a.expected,
                    lower = a.lower,
                    upper = a.upper,
                    score = a.score,
                    threshold = a.threshold,
                    model = %a.model,
                    started_at = %a.started_at,
                    ended_at,
                    ts = %a.ts,
                    "Anomaly alert resolved."
                ),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::alert::sink::queue::tests::alert;

    /// A `Write` into a shared buffer, for capturing log output.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn one_structured_info_line_per_alert() {
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        tracing::subscriber::with_default(subscriber, || {
            rt.block_on(LogSink.send(&[
                alert("ab", AlertStatus::Firing, 3.5),
                alert("ab", AlertStatus::Resolved, 1.0),
            ]))
            .unwrap();
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["message"], "Anomaly alert firing.");
        assert_eq!(lines[0]["fingerprint"], "ab");
        assert_eq!(lines[0]["value"], 3.5);
        assert_eq!(lines[0]["series"], "cpu{host=\"ab\"}");
        assert_eq!(lines[1]["message"], "Anomaly alert resolved.");
        assert_eq!(lines[1]["ended_at"], "2024-05-01T12:05:00Z");
    }
}
