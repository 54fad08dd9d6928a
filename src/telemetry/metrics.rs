//! Prometheus metrics: one [`Metrics`] struct of typed handles.
//!
//! This module owns the daemon's metric names, help texts, types and label
//! sets, registered into a [`prometheus::Registry`] that the caller injects
//! (no globals, so tests build as many as they like). Label values come
//! from enums (the alerts' status and severity, the sinks' drop reasons) or
//! from sets fixed at construction (decode-failure and skip reasons, source
//! and sink names from code, Kafka partitions from the assignment). Where a
//! label's values are another module's enum, this module registers the
//! family and that module builds its typed handles over it, so telemetry
//! imports none of the modules it measures: the alert module's
//! `EmittedCounters` over [`Metrics::alerts_emitted_family`], the sinks'
//! `SinkMetrics` over [`SinkFamilies`]. Beside it, the
//! opt-in, capped per-series gauges are [`super::series`]'s. A source with
//! families of its own (the remote-write receiver) registers them in the
//! same registry. Serving the registry over HTTP is [`super::http`]'s job;
//! deciding when to count is the caller's.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use prometheus::local::{LocalHistogram, LocalIntCounter};
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use serde::{Deserialize, Serialize};

use crate::config::Problems;
use crate::event::SeriesKey;

use super::series::SeriesExport;
pub use super::series::{PerSeriesConfig, SeriesSample};

/// The label value that absorbs reasons nobody registered, so a caller that
/// passes an unexpected reason cannot grow the label set.
pub const OTHER_REASON: &str = "other";

/// The `[metrics]` section: the HTTP endpoint and the opt-in per-series
/// gauges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address the HTTP server (`/metrics`, `/healthz`, `/readyz`) listens
    /// on, as `ip:port`. Loopback by default; use `0.0.0.0:9898` to let a
    /// Prometheus on another host scrape it.
    pub listen_addr: String,
    /// TLS and basic/bearer auth of this port, in Prometheus'
    /// `web.config.file` format ([`super::web::webconfig`]). Unset: plain
    /// HTTP, no auth. `/healthz` and `/readyz` never ask for credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web_config_file: Option<std::path::PathBuf>,
    /// Seconds for the TLS handshake, and from a request's first byte to
    /// the end of its head; a slower connection is closed.
    pub header_timeout_secs: u64,
    /// Seconds a connection may stay open with no request in progress.
    pub idle_timeout_secs: u64,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Per-series gauges of value, expected value, band and score.
    pub per_series: PerSeriesConfig,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen_addr: "127.0.0.1:9898".to_owned(),
            web_config_file: None,
            header_timeout_secs: 10,
            idle_timeout_secs: 120,
            max_connections: 64,
            per_series: PerSeriesConfig::default(),
        }
    }
}

impl MetricsConfig {
    /// The parsed [`MetricsConfig::listen_addr`].
    pub fn socket_addr(&self) -> Result<SocketAddr, std::net::AddrParseError> {
        self.listen_addr.parse()
    }

    /// Records every problem under `prefix` (e.g. `metrics`).
    pub fn validate(&self, prefix: &str, problems: &mut Problems) {
        if let Err(e) = self.socket_addr() {
            problems.push(
                format!("{prefix}.listen_addr"),
                format!(
                    "`{}` is not an `ip:port` address ({e}); write e.g. `127.0.0.1:9898`",
                    self.listen_addr
                ),
            );
        }
        super::web::validate_limits(
            prefix,
            self.header_timeout_secs,
            self.idle_timeout_secs,
            None,
            self.max_connections,
            problems,
        );
        self.per_series
            .validate(&format!("{prefix}.per_series"), problems);
    }

    /// The port's timeouts and connection cap.
    pub fn limits(&self) -> super::web::Limits {
        super::web::Limits {
            header_timeout: Duration::from_secs(self.header_timeout_secs),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            // No route of this port reads a body.
            read_timeout: Duration::from_secs(self.header_timeout_secs),
            max_connections: self.max_connections,
        }
    }
}

/// Errors from building [`Metrics`].
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A metric could not be created or registered (a name clash in the
    /// injected registry, e.g. building two `Metrics` on one registry).
    #[error("cannot register metric: {0}")]
    Register(#[from] prometheus::Error),
}

/// Counters of one reason-labelled family, pre-registered from a fixed list.
#[derive(Debug)]
struct ReasonCounters {
    by_reason: HashMap<String, IntCounter>,
    /// Where unknown reasons go.
    other: IntCounter,
}

impl ReasonCounters {
    fn new(vec: &IntCounterVec, reasons: &[&str]) -> Self {
        let by_reason = reasons
            .iter()
            .filter(|r| **r != OTHER_REASON)
            .map(|r| ((*r).to_owned(), vec.with_label_values(&[*r])))
            .collect();
        Self {
            by_reason,
            other: vec.with_label_values(&[OTHER_REASON]),
        }
    }

    /// Like [`ReasonCounters::new`], under a first label (`source`).
    fn new_labelled(vec: &IntCounterVec, first: &str, reasons: &[&str]) -> Self {
        let by_reason = reasons
            .iter()
            .filter(|r| **r != OTHER_REASON)
            .map(|r| ((*r).to_owned(), vec.with_label_values(&[first, *r])))
            .collect();
        Self {
            by_reason,
            other: vec.with_label_values(&[first, OTHER_REASON]),
        }
    }

    fn get(&self, reason: &str) -> &IntCounter {
        self.by_reason.get(reason).unwrap_or(&self.other)
    }
}

/// Handles for one source, labelled with its name.
#[derive(Debug)]
pub struct SourceMetrics {
    /// The `source` label value.
    name: &'static str,
    /// `anomalyd_messages_received_total{source}`.
    received: IntCounter,
    /// `anomalyd_events_decoded_total{source}`.
    decoded: IntCounter,
    /// `anomalyd_events_failed_total{source, reason}`.
    failed: ReasonCounters,
    /// `anomalyd_samples_skipped_total{source, reason}`.
    skipped: ReasonCounters,
}

impl SourceMetrics {
    /// The `source` label value.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// `n` messages received.
    pub fn messages_received(&self, n: u64) {
        self.received.inc_by(n);
    }

    /// `n` events decoded.
    pub fn events_decoded(&self, n: u64) {
        self.decoded.inc_by(n);
    }

    /// One piece of input failed for `reason` (from the registered list;
    /// anything else counts as `other`).
    pub fn event_failed(&self, reason: &str) {
        self.failed.get(reason).inc();
    }

    /// `n` pieces of input failed for `reason`.
    pub fn events_failed(&self, reason: &str, n: u64) {
        self.failed.get(reason).inc_by(n);
    }

    /// `n` samples were skipped for `reason` (one of
    /// [`SAMPLE_SKIP_REASONS`]): data that is not learned, and not a
    /// failure either.
    pub fn samples_skipped(&self, reason: &str, n: u64) {
        if n > 0 {
            self.skipped.get(reason).inc_by(n);
        }
    }
}

/// Every `reason` of `anomalyd_samples_skipped_total`: NaN and ±Inf
/// samples (`non_finite`), and the series the counter rules skip
/// (`created`, `bucket`; see [`crate::counter`]).
pub const SAMPLE_SKIP_REASONS: [&str; 3] = ["non_finite", "created", "bucket"];

/// The sink metric families, labelled `sink`; the sinks build their
/// handles from them (`crate::alert::sink::SinkMetrics`).
#[derive(Debug, Clone)]
pub struct SinkFamilies {
    /// `anomalyd_alerts_delivered_total{sink, status}`.
    pub delivered: IntCounterVec,
    /// `anomalyd_sink_failures_total{sink}`.
    pub failures: IntCounterVec,
    /// `anomalyd_alerts_dropped_total{sink, reason}`.
    pub dropped: IntCounterVec,
    /// `anomalyd_sink_queue_length{sink}`.
    pub queue_length: IntGaugeVec,
    /// `anomalyd_sink_send_seconds{sink}`.
    pub send_seconds: HistogramVec,
}

/// All metrics of the daemon as typed handles. Build one per process (or
/// per test) over an injected registry and share it behind an `Arc`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    messages_received: IntCounterVec,
    events_decoded: IntCounterVec,
    events_failed: IntCounterVec,
    samples_skipped: IntCounterVec,
    /// The decoder's failure reasons, registered at 0 for every source.
    decode_failure_reasons: Vec<&'static str>,
    events_processed: IntCounter,
    events_skipped: ReasonCounters,
    events_too_old: IntCounter,
    processing_seconds: Histogram,
    /// `anomalyd_alerts_emitted_total{status, severity}`; the alert module
    /// labels it (`crate::alert::EmittedCounters`).
    alerts_emitted: IntCounterVec,
    sinks: SinkFamilies,
    series_active: IntGauge,
    series_evicted: IntCounter,
    consumer_lag: IntGaugeVec,
    offsets_committed: IntCounter,
    commit_failures: IntCounter,
    consumer_errors: IntCounter,
    series_restored: IntCounter,
    snapshots_written: IntCounter,
    snapshot_failures: IntCounter,
    snapshot_seconds: Histogram,
    snapshot_bytes: IntGauge,
    per_series: Option<SeriesExport>,
}

fn counter(registry: &Registry, name: &str, help: &str) -> Result<IntCounter, MetricsError> {
    let c = IntCounter::new(name, help)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, MetricsError> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> Result<IntGauge, MetricsError> {
    let g = IntGauge::new(name, help)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn gauge_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntGaugeVec, MetricsError> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    buckets: Vec<f64>,
) -> Result<Histogram, MetricsError> {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))?;
    registry.register(Box::new(h.clone()))?;
    Ok(h)
}

/// Buckets for per-event processing: 5 µs to ~80 ms, doubling.
fn processing_buckets() -> Vec<f64> {
    (0..15).map(|i| 5e-6 * f64::from(1u32 << i)).collect()
}

/// Buckets for snapshot writes: 10 ms to ~160 s, doubling.
fn snapshot_buckets() -> Vec<f64> {
    (0..15).map(|i| 0.01 * f64::from(1u32 << i)).collect()
}

impl Metrics {
    /// Registers every metric into `registry`.
    ///
    /// `decode_failure_reasons` and `skip_reasons` are the complete label
    /// vocabularies of `anomalyd_events_failed_total` and
    /// `anomalyd_events_skipped_total` (the decoder and pipeline own them);
    /// they are registered at 0 so dashboards see them before the first
    /// failure. A reason outside the list is counted as `other`.
    pub fn new(
        registry: Registry,
        config: &MetricsConfig,
        decode_failure_reasons: &[&'static str],
        skip_reasons: &[&str],
    ) -> Result<Self, MetricsError> {
        let r = &registry;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "anomalyd_build_info",
                "Always 1; the version label says which build is running.",
            ),
            &["version"],
        )?;
        r.register(Box::new(build_info.clone()))?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        let skipped = counter_vec(
            r,
            "anomalyd_events_skipped_total",
            "Decoded events the detector did not process, by reason.",
            &["reason"],
        )?;
        let alerts_emitted = counter_vec(
            r,
            "anomalyd_alerts_emitted_total",
            "Alert messages produced by the alert lifecycle, by status and severity.",
            &["status", "severity"],
        )?;
        let sink_send_seconds = HistogramVec::new(
            HistogramOpts::new(
                "anomalyd_sink_send_seconds",
                "Duration of one delivery attempt of a batch of alerts, by sink.",
            ),
            &["sink"],
        )?;
        r.register(Box::new(sink_send_seconds.clone()))?;

        let per_series = if config.per_series.enabled {
            Some(SeriesExport::new(r, &config.per_series)?)
        } else {
            None
        };

        Ok(Self {
            messages_received: counter_vec(
                r,
                "anomalyd_messages_received_total",
                "Messages (Kafka messages, remote-write requests, replayed lines) received, by source.",
                &["source"],
            )?,
            events_decoded: counter_vec(
                r,
                "anomalyd_events_decoded_total",
                "Events decoded from received messages, by source.",
                &["source"],
            )?,
            events_failed: counter_vec(
                r,
                "anomalyd_events_failed_total",
                "Input that could not be decoded into events, by source and reason.",
                &["source", "reason"],
            )?,
            samples_skipped: counter_vec(
                r,
                "anomalyd_samples_skipped_total",
                "Input samples deliberately not learned (NaN or Inf values, skipped series), by source and reason.",
                &["source", "reason"],
            )?,
            decode_failure_reasons: decode_failure_reasons.to_vec(),
            events_processed: counter(
                r,
                "anomalyd_events_processed_total",
                "Events scored and learned by the detector.",
            )?,
            events_skipped: ReasonCounters::new(&skipped, skip_reasons),
            events_too_old: counter(
                r,
                "anomalyd_events_too_old_total",
                "Events older than alert.max_event_age_secs when processed: learned, never alerted on.",
            )?,
            processing_seconds: histogram(
                r,
                "anomalyd_event_processing_seconds",
                "Time to score and learn one event.",
                processing_buckets(),
            )?,
            alerts_emitted,
            sinks: SinkFamilies {
                delivered: counter_vec(
                    r,
                    "anomalyd_alerts_delivered_total",
                    "Alerts a sink delivered, by sink and alert status.",
                    &["sink", "status"],
                )?,
                failures: counter_vec(
                    r,
                    "anomalyd_sink_failures_total",
                    "Failed delivery attempts, by sink (each retry counts).",
                    &["sink"],
                )?,
                dropped: counter_vec(
                    r,
                    "anomalyd_alerts_dropped_total",
                    "Alerts a sink gave up on, by sink and reason.",
                    &["sink", "reason"],
                )?,
                queue_length: gauge_vec(
                    r,
                    "anomalyd_sink_queue_length",
                    "Alerts waiting in a sink's queue.",
                    &["sink"],
                )?,
                send_seconds: sink_send_seconds,
            },
            series_active: gauge(r, "anomalyd_series_active", "Series with state in memory.")?,
            series_evicted: counter(
                r,
                "anomalyd_series_evicted_total",
                "Series whose state was evicted (idle or over the series limit).",
            )?,
            consumer_lag: gauge_vec(
                r,
                "anomalyd_kafka_consumer_lag",
                "Messages between the consumer position and the high watermark, by topic and partition.",
                &["topic", "partition"],
            )?,
            commit_failures: counter(
                r,
                "anomalyd_kafka_commit_failures_total",
                "Offset commits that failed (the next checkpoint retries).",
            )?,
            consumer_errors: counter(
                r,
                "anomalyd_kafka_consumer_errors_total",
                "Errors reported by the Kafka consumer while receiving.",
            )?,
            series_restored: counter(
                r,
                "anomalyd_series_restored_total",
                "Series whose state was restored from a snapshot.",
            )?,
            offsets_committed: counter(
                r,
                "anomalyd_kafka_offsets_committed_total",
                "Successful offset commits.",
            )?,
            snapshots_written: counter(
                r,
                "anomalyd_snapshots_written_total",
                "State snapshots written.",
            )?,
            snapshot_failures: counter(
                r,
                "anomalyd_snapshot_failures_total",
                "State snapshots that failed to write.",
            )?,
            snapshot_seconds: histogram(
                r,
                "anomalyd_snapshot_seconds",
                "Time to write one state snapshot.",
                snapshot_buckets(),
            )?,
            snapshot_bytes: gauge(
                r,
                "anomalyd_snapshot_bytes",
                "Size of the last state snapshot written.",
            )?,
            per_series,
            registry,
        })
    }

    /// The registry the metrics live in (for the HTTP endpoint).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The handles of source `name` (`kafka`, `remote_write`, `file`),
    /// with every decode failure reason and the source's own `reasons`
    /// registered at 0. `name` is a `'static` string from code, which keeps
    /// the `source` label bounded.
    pub fn source(&self, name: &'static str, reasons: &[&'static str]) -> SourceMetrics {
        let all: Vec<&str> = self
            .decode_failure_reasons
            .iter()
            .chain(reasons)
            .copied()
            .collect();
        SourceMetrics {
            name,
            received: self.messages_received.with_label_values(&[name]),
            decoded: self.events_decoded.with_label_values(&[name]),
            failed: ReasonCounters::new_labelled(&self.events_failed, name, &all),
            skipped: ReasonCounters::new_labelled(
                &self.samples_skipped,
                name,
                &SAMPLE_SKIP_REASONS,
            ),
        }
    }

    /// One event scored and learned, taking `elapsed`.
    pub fn event_processed(&self, elapsed: Duration) {
        self.events_processed.inc();
        self.processing_seconds.observe(elapsed.as_secs_f64());
    }

    /// One event skipped for `reason` (from the registered list; anything
    /// else counts as `other`).
    pub fn event_skipped(&self, reason: &str) {
        self.events_skipped.get(reason).inc();
    }

    /// The family `anomalyd_alerts_emitted_total{status, severity}`; the
    /// alert module builds its typed handles over it
    /// (`crate::alert::EmittedCounters`).
    pub fn alerts_emitted_family(&self) -> &IntCounterVec {
        &self.alerts_emitted
    }

    /// `n` events were too old to alert on (see
    /// `alert.max_event_age_secs`).
    pub fn events_too_old(&self, n: u64) {
        if n > 0 {
            self.events_too_old.inc_by(n);
        }
    }

    /// The sink metric families (the sinks label them with their names).
    pub fn sink_families(&self) -> &SinkFamilies {
        &self.sinks
    }

    /// Sets the number of series held in memory.
    pub fn set_series_active(&self, n: i64) {
        self.series_active.set(n);
    }

    /// Moves the number of series held in memory by `delta` (each shard
    /// reports its own change, so the gauge is their sum).
    pub fn add_series_active(&self, delta: i64) {
        self.series_active.add(delta);
    }

    /// Shard-local handles for the per-event counter and latency histogram:
    /// updated without atomics on the hot path, flushed once per batch.
    pub fn processing_local(&self) -> (LocalIntCounter, LocalHistogram) {
        (
            self.events_processed.local(),
            self.processing_seconds.local(),
        )
    }

    /// Events processed so far (for tests and the final log line).
    pub fn events_processed_total(&self) -> u64 {
        self.events_processed.get()
    }

    /// `n` series restored from a snapshot.
    pub fn series_restored(&self, n: u64) {
        self.series_restored.inc_by(n);
    }

    /// One offset commit failed.
    pub fn commit_failed(&self) {
        self.commit_failures.inc();
    }

    /// One error from the Kafka consumer.
    pub fn consumer_error(&self) {
        self.consumer_errors.inc();
    }

    /// `n` series evicted.
    pub fn series_evicted(&self, n: u64) {
        self.series_evicted.inc_by(n);
    }

    /// Sets the consumer lag of one assigned partition.
    pub fn set_consumer_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.consumer_lag
            .with_label_values(&[topic, &partition.to_string()])
            .set(lag);
    }

    /// Forgets the lag of a partition that was revoked, so a stale value does
    /// not linger.
    pub fn remove_consumer_lag(&self, topic: &str, partition: i32) {
        // Err only means the partition never had a value: nothing to remove.
        let _ = self
            .consumer_lag
            .remove_label_values(&[topic, &partition.to_string()]);
    }

    /// One successful offset commit.
    pub fn offsets_committed(&self) {
        self.offsets_committed.inc();
    }

    /// One snapshot written: `bytes` long, taking `elapsed`.
    pub fn snapshot_written(&self, bytes: u64, elapsed: Duration) {
        self.snapshots_written.inc();
        self.snapshot_seconds.observe(elapsed.as_secs_f64());
        self.snapshot_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// One snapshot failed.
    pub fn snapshot_failed(&self) {
        self.snapshot_failures.inc();
    }

    /// True when per-series gauges are on (callers can skip building a
    /// [`SeriesSample`] otherwise).
    pub fn per_series_enabled(&self) -> bool {
        self.per_series.is_some()
    }

    /// Updates the per-series gauges of `series`, if they are enabled, the
    /// series' metric name is selected and the cap leaves room.
    pub fn observe_series(&self, series: &SeriesKey, sample: &SeriesSample) {
        if let Some(px) = &self.per_series {
            px.observe(series, sample);
        }
    }

    /// Removes the per-series gauges of an evicted series and frees its
    /// slot.
    pub fn forget_series(&self, series: &SeriesKey) {
        if let Some(px) = &self.per_series {
            px.forget(series);
        }
    }

    /// The Prometheus text exposition of everything registered.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        prometheus::TextEncoder::new().encode_to_string(&self.registry.gather())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(config: &MetricsConfig) -> Metrics {
        Metrics::new(
            Registry::new(),
            config,
            &["bad_json", "missing_field"],
            &["non_finite"],
        )
        .unwrap()
    }

    #[test]
    fn families_are_registered_with_help_and_type() {
        let m = metrics(&MetricsConfig::default());
        let sinks = m.sink_families();
        sinks.dropped.with_label_values(&["webhook", "queue_full"]);
        sinks.queue_length.with_label_values(&["webhook"]);
        let src = m.source("kafka", &["stale"]);
        src.event_failed("bad_json");
        src.event_failed("never_registered");
        m.alerts_emitted_family()
            .with_label_values(&["firing", "critical"])
            .inc();
        let text = m.render().unwrap();
        for (name, kind) in [
            ("anomalyd_build_info", "gauge"),
            ("anomalyd_messages_received_total", "counter"),
            ("anomalyd_events_failed_total", "counter"),
            ("anomalyd_event_processing_seconds", "histogram"),
            ("anomalyd_alerts_dropped_total", "counter"),
            ("anomalyd_sink_queue_length", "gauge"),
            ("anomalyd_snapshot_seconds", "histogram"),
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{name}\n{text}"
            );
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
        }
        assert!(text.contains(&format!(
            "anomalyd_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )));
        for (reason, n) in [
            ("bad_json", 1),
            ("missing_field", 0),
            ("stale", 0),
            ("other", 1),
        ] {
            let line = format!(
                "anomalyd_events_failed_total{{reason=\"{reason}\",source=\"kafka\"}} {n}\n"
            );
            assert!(text.contains(&line), "{line}{text}");
        }
        assert!(
            text.contains(
                "anomalyd_alerts_dropped_total{reason=\"queue_full\",sink=\"webhook\"} 0\n"
            )
        );
        assert!(text.contains(
            "anomalyd_alerts_emitted_total{severity=\"critical\",status=\"firing\"} 1\n"
        ));
        assert!(
            !text.contains("anomalyd_series_value"),
            "per-series is opt-in"
        );
    }

    #[test]
    fn two_metrics_on_one_registry_clash() {
        let r = Registry::new();
        let _a = Metrics::new(r.clone(), &MetricsConfig::default(), &[], &[]).unwrap();
        assert!(Metrics::new(r, &MetricsConfig::default(), &[], &[]).is_err());
    }

    #[test]
    fn consumer_lag_is_removed_on_revoke() {
        let m = metrics(&MetricsConfig::default());
        m.set_consumer_lag("events", 3, 42);
        assert!(
            m.render()
                .unwrap()
                .contains("anomalyd_kafka_consumer_lag{partition=\"3\",topic=\"events\"} 42\n")
        );
        m.remove_consumer_lag("events", 3);
        m.remove_consumer_lag("events", 9);
        assert!(!m.render().unwrap().contains("partition=\"3\""));
    }

    #[test]
    fn config_validation_names_keys() {
        let cfg = MetricsConfig {
            listen_addr: "localhost".to_owned(),
            per_series: PerSeriesConfig {
                enabled: true,
                max_series: 0,
                metric_names: vec![],
            },
            ..MetricsConfig::default()
        };
        let mut p = Problems::new();
        cfg.validate("metrics", &mut p);
        let keys: Vec<_> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            ["metrics.listen_addr", "metrics.per_series.max_series"]
        );
        let mut p = Problems::new();
        MetricsConfig::default().validate("metrics", &mut p);
        assert!(p.is_empty(), "{p}");
        assert_eq!(
            MetricsConfig::default().socket_addr().unwrap(),
            "127.0.0.1:9898".parse().unwrap()
        );
    }
}
