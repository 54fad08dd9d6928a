//! The `log` sink: one structured INFO line per alert and per incident
//! notification.
//!
//! This module owns how alerts and incidents look in the daemon's own log.
//! It is the default sink, so a fresh install shows its alerts somewhere;
//! it takes both kinds of message by default (`messages`): the log is the
//! record, the incident line says what belongs together and each alert
//! line the detail, with `incident=` to join them. Numbers are printed in
//! the series' unit with its SI prefix (`value="14.8 GB"`,
//! [`crate::units`]). Where the log goes is [`crate::telemetry::init`]'s
//! business.

use serde::{Deserialize, Serialize};
use tracing::info;

use super::delivery::SinkTable;
use super::{AlertSink, Messages, SinkError};
use crate::alert::incident::{Incident, IncidentStatus};
use crate::alert::{AlertStatus, Notice, SeriesAlert};
use crate::config::Problems;

/// The `sink` label of this sink.
pub const NAME: &str = "log";

/// Members an incident line names (the top ones).
const NAMED_MEMBERS: usize = 5;

/// The `[sinks.log]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSinkConfig {
    /// Write one INFO line per message.
    pub enabled: bool,
    /// `both` (default), `alerts` or `incidents`.
    pub messages: Messages,
}

impl Default for LogSinkConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            messages: Messages::Both,
        }
    }
}

/// Writing a log line does not fail: the log sink's table has the queue
/// keys but no `[retry]`.
impl SinkTable for LogSinkConfig {
    const KEYS: &'static [&'static str] =
        &["enabled", "messages", "queue_capacity", "max_batch_alerts"];
    const RETRIES: bool = false;

    fn enabled(&self) -> bool {
        self.enabled
    }

    fn validate(&self, _prefix: &str, _problems: &mut Problems) {}
}

/// Writes alerts and incidents to the log.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogSink;

/// One alert's line.
fn log_alert(a: &SeriesAlert) {
    let unit = a.unit();
    let ended_at = a.ended_at.as_deref().unwrap_or("");
    let band = format!("[{}, {}]", unit.format(a.lower), unit.format(a.upper));
    let incident = a.incident.as_deref().unwrap_or("");
    let peak = format!("{:.3}", a.peak_score);
    match a.status {
        AlertStatus::Firing => info!(
            fingerprint = %a.fingerprint,
            status = a.status.as_str(),
            severity = a.severity.as_str(),
            series = %a.display_series(),
            reason = a.reason.as_str(),
            since = %a.started_at,
            value_kind = a.value_kind.as_str(),
            value = %unit.format(a.value),
            expected = %unit.format(a.expected),
            band = %band,
            score = a.score,
            peak_score = %peak,
            threshold = a.threshold,
            model = %a.model,
            incident,
            ts = %a.ts,
            "Anomaly alert firing."
        ),
        AlertStatus::Resolved => info!(
            fingerprint = %a.fingerprint,
            status = a.status.as_str(),
            severity = a.severity.as_str(),
            series = %a.display_series(),
            reason = a.reason.as_str(),
            since = %a.started_at,
            resolution = a.resolution.map_or("", |r| r.as_str()),
            value_kind = a.value_kind.as_str(),
            value = %unit.format(a.value),
            expected = %unit.format(a.expected),
            band = %band,
            score = a.score,
            peak_score = %peak,
            threshold = a.threshold,
            model = %a.model,
            incident,
            ended_at,
            ts = %a.ts,
            "Anomaly alert resolved."
        ),
    }
}

/// One incident notification's line.
fn log_incident(i: &Incident) {
    let group = i
        .group
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let top = i
        .members
        .iter()
        .take(NAMED_MEMBERS)
        .map(|m| {
            format!(
                "{} ({}, peak {:.3})",
                m.series,
                m.reason.as_str(),
                m.peak_score
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let reason = i.members.first().map_or("", |m| m.reason.as_str());
    let ended_at = i.ended_at.as_deref().unwrap_or("");
    let merged_into = i.merged_into.as_deref().unwrap_or("");
    macro_rules! line {
        ($msg:literal) => {
            info!(
                incident = %i.id,
                status = i.status.as_str(),
                scope = i.scope.as_str(),
                group = %group,
                severity = i.severity.as_str(),
                members = i.members_total,
                firing = i.firing,
                reason,
                since = %i.started_at,
                revision = i.revision,
                top = %top,
                ended_at,
                merged_into,
                summary = %i.summary,
                $msg
            )
        };
    }
    match i.status {
        IncidentStatus::Firing if i.opens() => line!("Incident opened."),
        IncidentStatus::Firing => line!("Incident updated."),
        // Opened and over between two flushes (a replay, a short blip).
        IncidentStatus::Resolved if i.opens() => line!("Incident opened and resolved."),
        IncidentStatus::Resolved => line!("Incident resolved."),
        IncidentStatus::Merged => line!("Incident merged into a fleet-wide incident."),
    }
}

impl AlertSink for LogSink {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn send(&self, batch: &[Notice]) -> Result<(), SinkError> {
        for n in batch {
            match n {
                Notice::Alert(a) => log_alert(a),
                Notice::Incident(i) => log_incident(i),
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
        let mut mem = alert("ab", AlertStatus::Firing, 1.483e10);
        mem.labels
            .insert("__name__".into(), "node_memory_used_bytes".into());
        mem.expected = 6.01e9;
        mem.lower = 5.98e9;
        mem.upper = 6.05e9;
        let mut ended = alert("ab", AlertStatus::Resolved, 1.0);
        ended.reason = crate::alert::Reason::Level;
        let mut ended = SeriesAlert::from(ended);
        ended.incident = Some("00000000000000aa".into());
        let mut g = crate::alert::incident::Incidents::new(&Default::default());
        g.observe(SeriesAlert::from(alert("ab", AlertStatus::Firing, 3.5)));
        let inc = g.flush().remove(0);
        tracing::subscriber::with_default(subscriber, || {
            rt.block_on(LogSink.send(&[
                inc,
                alert("ab", AlertStatus::Firing, 3.5).into(),
                ended.into(),
                mem.into(),
            ]))
            .unwrap();
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4, "{text}");
        let (inc, fire, end, mem) = (&lines[0], &lines[1], &lines[2], &lines[3]);
        assert_eq!(inc["level"], "INFO");
        assert_eq!(inc["message"], "Incident opened.");
        assert_eq!(inc["status"], "firing");
        assert_eq!(inc["scope"], "group");
        assert_eq!(inc["members"], 1);
        assert_eq!(inc["reason"], "forecast");
        assert!(
            inc["top"]
                .as_str()
                .unwrap()
                .starts_with("cpu{host=\"ab\"} (forecast"),
            "{inc}"
        );
        assert_eq!(fire["level"], "INFO");
        assert_eq!(fire["message"], "Anomaly alert firing.");
        assert_eq!(fire["fingerprint"], "ab");
        assert_eq!(fire["value"], "3.5");
        assert_eq!(fire["reason"], "forecast");
        assert_eq!(fire["since"], "2024-05-01T12:00:00Z");
        assert_eq!(fire["series"], "cpu{host=\"ab\"}");
        assert_eq!(end["message"], "Anomaly alert resolved.");
        assert_eq!(end["ended_at"], "2024-05-01T12:05:00Z");
        assert_eq!(end["reason"], "level");
        assert_eq!(end["since"], "2024-05-01T12:00:00Z");
        assert_eq!(end["resolution"], "returned");
        assert_eq!(end["incident"], "00000000000000aa");
        // Bytes in their unit, with the SI prefix.
        assert_eq!(mem["value"], "14.8 GB");
        assert_eq!(mem["expected"], "6.01 GB");
        assert_eq!(mem["band"], "[5.98 GB, 6.05 GB]");
    }
}
