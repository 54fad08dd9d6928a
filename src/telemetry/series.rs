//! The opt-in per-series gauges: `anomalyd_series_{value,expected,lower,
//! upper,score}{series}`, capped, with their `[metrics.per_series]`
//! section. [`super::metrics::Metrics`] holds them when they are on.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use prometheus::{Gauge, GaugeVec, IntCounter, IntGauge, Opts, Registry};
use serde::{Deserialize, Serialize};

use crate::config::Problems;
use crate::event::SeriesKey;

/// The `[metrics.per_series]` section. Each exported series adds five time
/// series to every scrape, so this is off by default and capped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PerSeriesConfig {
    /// Export `anomalyd_series_{value,expected,lower,upper,score}` per series.
    pub enabled: bool,
    /// At most this many series are exported (first come, first served;
    /// a slot frees when its series is evicted). Updates for further series
    /// are counted in `anomalyd_series_export_refused_total`.
    pub max_series: usize,
    /// Only series whose metric name is listed are exported; empty means
    /// every metric name.
    pub metric_names: Vec<String>,
}

impl Default for PerSeriesConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_series: 100,
            metric_names: Vec::new(),
        }
    }
}

impl PerSeriesConfig {
    /// Records every problem under `prefix` (e.g. `metrics.per_series`).
    pub fn validate(&self, prefix: &str, problems: &mut Problems) {
        problems.check(
            !self.enabled || self.max_series >= 1,
            format!("{prefix}.max_series"),
            "must be at least 1 when per-series gauges are enabled; set `enabled = false` to export none",
        );
        problems.check(
            self.max_series <= 100_000,
            format!("{prefix}.max_series"),
            "is above 100000; every series adds five time series per scrape, lower it",
        );
    }
}

/// The numbers the opt-in per-series gauges show for one observation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesSample {
    /// The observed value.
    pub value: f64,
    /// The model's expectation.
    pub expected: f64,
    /// Lower edge of the normal band.
    pub lower: f64,
    /// Upper edge of the normal band.
    pub upper: f64,
    /// Anomaly score in [0, 1).
    pub score: f64,
}

/// One exported series: its label value and its five gauges.
#[derive(Debug)]
struct SeriesSlot {
    label: String,
    gauges: [Gauge; 5],
}

/// The opt-in per-series gauges with their cap.
#[derive(Debug)]
pub(super) struct SeriesExport {
    max_series: usize,
    /// Metric names to export; empty = all.
    names: HashSet<String>,
    /// value, expected, lower, upper, score: one vec per quantity.
    vecs: [GaugeVec; 5],
    exported: IntGauge,
    refused: IntCounter,
    /// Exported series by fingerprint, so the hot path hashes a u64 instead
    /// of formatting the series name.
    slots: Mutex<HashMap<u64, SeriesSlot>>,
}

/// Registers `c` in `r` and returns it.
fn register<C: prometheus::core::Collector + Clone + 'static>(
    r: &Registry,
    c: C,
) -> Result<C, prometheus::Error> {
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

impl SeriesExport {
    /// Registers the gauges in `r`.
    pub(super) fn new(r: &Registry, config: &PerSeriesConfig) -> Result<Self, prometheus::Error> {
        let v = |name: &str, help: &str| -> Result<GaugeVec, prometheus::Error> {
            let g = GaugeVec::new(Opts::new(name, help), &["series"])?;
            r.register(Box::new(g.clone()))?;
            Ok(g)
        };
        Ok(Self {
            max_series: config.max_series,
            names: config.metric_names.iter().cloned().collect(),
            vecs: [
                v(
                    "anomalyd_series_value",
                    "Last observed value of the series (opt-in, capped).",
                )?,
                v(
                    "anomalyd_series_expected",
                    "The model's expected value for the last observation (opt-in, capped).",
                )?,
                v(
                    "anomalyd_series_lower",
                    "Lower edge of the normal band at the last observation (opt-in, capped).",
                )?,
                v(
                    "anomalyd_series_upper",
                    "Upper edge of the normal band at the last observation (opt-in, capped).",
                )?,
                v(
                    "anomalyd_series_score",
                    "Anomaly score of the last observation, in [0, 1) (opt-in, capped).",
                )?,
            ],
            exported: register(
                r,
                IntGauge::new(
                    "anomalyd_series_exported",
                    "Series currently exported by the per-series gauges.",
                )?,
            )?,
            refused: register(
                r,
                IntCounter::new(
                    "anomalyd_series_export_refused_total",
                    "Per-series gauge updates not exported because metrics.per_series.max_series was reached.",
                )?,
            )?,
            slots: Mutex::new(HashMap::new()),
        })
    }

    /// Updates the per-series gauges of `series`, if they are enabled, the
    /// series' metric name is selected and the cap leaves room.
    pub(super) fn observe(&self, series: &SeriesKey, sample: &SeriesSample) {
        let px = self;
        if !px.names.is_empty() && !px.names.contains(series.name()) {
            return;
        }
        let fp = series.fingerprint();
        let mut slots = px.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = match slots.get(&fp) {
            Some(slot) => slot,
            None if slots.len() < px.max_series => {
                let label = series.to_string();
                let gauges = [0, 1, 2, 3, 4].map(|i| px.vecs[i].with_label_values(&[&label]));
                px.exported.inc();
                slots.entry(fp).or_insert(SeriesSlot { label, gauges })
            }
            None => {
                px.refused.inc();
                return;
            }
        };
        let values = [
            sample.value,
            sample.expected,
            sample.lower,
            sample.upper,
            sample.score,
        ];
        for (g, v) in slot.gauges.iter().zip(values) {
            g.set(v);
        }
    }

    /// Removes the per-series gauges of an evicted series and frees its
    /// slot.
    pub(super) fn forget(&self, series: &SeriesKey) {
        let px = self;
        let mut slots = px.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.remove(&series.fingerprint()) {
            for v in &px.vecs {
                // Err only if already absent, which the slot map rules out.
                let _ = v.remove_label_values(&[&slot.label]);
            }
            px.exported.dec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::metrics::{Metrics, MetricsConfig};

    fn metrics(config: &MetricsConfig) -> Metrics {
        Metrics::new(Registry::new(), config, &[], &[]).unwrap()
    }

    #[test]
    fn per_series_cap_is_honoured_and_slots_free_on_eviction() {
        let mut cfg = MetricsConfig::default();
        cfg.per_series.enabled = true;
        cfg.per_series.max_series = 2;
        let m = metrics(&cfg);
        let s = SeriesSample {
            value: 1.0,
            expected: 2.0,
            lower: 0.5,
            upper: 3.5,
            score: 0.25,
        };
        let keys: Vec<SeriesKey> = (0..3)
            .map(|i| SeriesKey::new("cpu", [("host", format!("h{i}"))]))
            .collect();
        for k in &keys {
            m.observe_series(k, &s);
        }
        m.observe_series(&keys[0], &SeriesSample { value: 7.0, ..s });
        let text = m.render().unwrap();
        assert!(
            text.contains("anomalyd_series_value{series=\"cpu{host=\\\"h0\\\"}\"} 7\n"),
            "{text}"
        );
        assert!(text.contains("anomalyd_series_score{series=\"cpu{host=\\\"h1\\\"}\"} 0.25\n"));
        assert!(!text.contains("h2"), "third series is beyond the cap");
        assert!(text.contains("anomalyd_series_exported 2\n"));
        assert!(text.contains("anomalyd_series_export_refused_total 1\n"));

        m.forget_series(&keys[0]);
        m.observe_series(&keys[2], &s);
        let text = m.render().unwrap();
        assert!(!text.contains("h0"));
        assert!(text.contains("h2"));
        assert!(text.contains("anomalyd_series_exported 2\n"));
    }

    #[test]
    fn per_series_name_filter_selects_metric_names() {
        let mut cfg = MetricsConfig::default();
        cfg.per_series.enabled = true;
        cfg.per_series.metric_names = vec!["mem".to_owned()];
        let m = metrics(&cfg);
        let s = SeriesSample {
            value: 1.0,
            expected: 1.0,
            lower: 0.0,
            upper: 2.0,
            score: 0.0,
        };
        m.observe_series(&SeriesKey::from_name("cpu"), &s);
        m.observe_series(&SeriesKey::from_name("mem"), &s);
        let text = m.render().unwrap();
        assert!(text.contains("anomalyd_series_value{series=\"mem\"} 1\n"));
        assert!(!text.contains("series=\"cpu\""));
        assert!(text.contains("anomalyd_series_export_refused_total 0\n"));
    }
}
