//! The metrics of one alert sink: handles labelled with its name, over
//! the families the daemon's [`Metrics`] registers.

use prometheus::{Histogram, IntCounter, IntGauge};

use super::DropReason;
use crate::alert::AlertStatus;
use crate::telemetry::metrics::Metrics;

/// Handles for one alert sink, labelled with its name. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SinkMetrics {
    /// The sink's name, the `sink` label value.
    name: &'static str,
    /// `anomalyd_alerts_delivered_total{sink, status}`, indexed firing, resolved.
    delivered: [IntCounter; 2],
    /// `anomalyd_sink_failures_total{sink}`.
    failures: IntCounter,
    /// `anomalyd_alerts_dropped_total{sink, reason}`, indexed by [`DropReason::index`].
    dropped: Vec<IntCounter>,
    /// `anomalyd_sink_queue_length{sink}`.
    queue_length: IntGauge,
    /// `anomalyd_sink_send_seconds{sink}`.
    send_seconds: Histogram,
}

impl SinkMetrics {
    /// The handles of sink `name`, created at 0 for every status and drop
    /// reason so they show up before the first alert. `name` is a
    /// `'static` string from code, which keeps the `sink` label bounded.
    pub fn new(metrics: &Metrics, name: &'static str) -> Self {
        let f = metrics.sink_families();
        Self {
            name,
            delivered: [
                f.delivered
                    .with_label_values(&[name, AlertStatus::Firing.as_str()]),
                f.delivered
                    .with_label_values(&[name, AlertStatus::Resolved.as_str()]),
            ],
            failures: f.failures.with_label_values(&[name]),
            dropped: DropReason::ALL
                .iter()
                .map(|r| f.dropped.with_label_values(&[name, r.as_str()]))
                .collect(),
            queue_length: f.queue_length.with_label_values(&[name]),
            send_seconds: f.send_seconds.with_label_values(&[name]),
        }
    }

    /// The `sink` label value.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Alerts this sink delivered, by status.
    pub fn delivered(&self, status: AlertStatus) -> &IntCounter {
        match status {
            AlertStatus::Firing => &self.delivered[0],
            AlertStatus::Resolved => &self.delivered[1],
        }
    }

    /// Failed delivery attempts (each retry counts).
    pub fn failures(&self) -> &IntCounter {
        &self.failures
    }

    /// Alerts this sink dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> &IntCounter {
        &self.dropped[reason.index()]
    }

    /// Alerts waiting in this sink's queue (in-flight batch excluded).
    pub fn queue_length(&self) -> &IntGauge {
        &self.queue_length
    }

    /// Duration of one delivery attempt.
    pub fn send_seconds(&self) -> &Histogram {
        &self.send_seconds
    }
}
