//! The alert lifecycle's handles on the daemon's metrics: the typed
//! counters of `anomalyd_alerts_emitted_total`, over the family that
//! [`Metrics`] registers (telemetry knows the label names; this module
//! knows their values, [`AlertStatus`] and [`Severity`]).

use prometheus::IntCounter;

use super::{AlertStatus, Severity};
use crate::telemetry::metrics::Metrics;

/// `anomalyd_alerts_emitted_total{status, severity}`, one handle per pair.
/// Cheap to clone; each shard holds one.
#[derive(Debug, Clone)]
pub struct EmittedCounters {
    /// Indexed `[status][severity]`.
    by_status: [[IntCounter; 2]; 2],
}

impl EmittedCounters {
    /// The handles, created at 0 for every status and severity so that
    /// they show before the first alert.
    pub fn new(metrics: &Metrics) -> Self {
        let family = metrics.alerts_emitted_family();
        let c = |s: AlertStatus, v: Severity| family.with_label_values(&[s.as_str(), v.as_str()]);
        Self {
            by_status: [
                [
                    c(AlertStatus::Firing, Severity::Warning),
                    c(AlertStatus::Firing, Severity::Critical),
                ],
                [
                    c(AlertStatus::Resolved, Severity::Warning),
                    c(AlertStatus::Resolved, Severity::Critical),
                ],
            ],
        }
    }

    /// One alert message produced by the lifecycle.
    pub fn emitted(&self, status: AlertStatus, severity: Severity) {
        let s = match status {
            AlertStatus::Firing => 0,
            AlertStatus::Resolved => 1,
        };
        let v = match severity {
            Severity::Warning => 0,
            Severity::Critical => 1,
        };
        self.by_status[s][v].inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::metrics::MetricsConfig;

    #[test]
    fn every_pair_shows_at_zero_and_counts_apart() {
        let m = Metrics::new(
            prometheus::Registry::new(),
            &MetricsConfig::default(),
            &[],
            &[],
        )
        .unwrap();
        let c = EmittedCounters::new(&m);
        c.emitted(AlertStatus::Firing, Severity::Critical);
        c.emitted(AlertStatus::Firing, Severity::Critical);
        c.emitted(AlertStatus::Resolved, Severity::Warning);
        let text = m.render().unwrap();
        for (status, severity, n) in [
            ("firing", "critical", 2),
            ("firing", "warning", 0),
            ("resolved", "critical", 0),
            ("resolved", "warning", 1),
        ] {
            let line = format!(
                "anomalyd_alerts_emitted_total{{severity=\"{severity}\",status=\"{status}\"}} {n}\n"
            );
            assert!(text.contains(&line), "{line}{text}");
        }
    }
}
