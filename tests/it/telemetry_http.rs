//! The telemetry HTTP endpoint over real HTTP: `/metrics` exposition (names,
//! HELP, TYPE, `promtool check metrics`), `/healthz`, `/readyz`
//! transitions, the per-series cap, and shutdown.
//!
//! `promtool` comes from Debian's `prometheus` package (tests/run.sh installs it);
//! `ANOMALYD_TEST_PROMTOOL` may point at another binary.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anomalyd::alert::sink::DropReason;
use anomalyd::alert::sink::SinkMetrics;
use anomalyd::alert::{AlertStatus, Severity};
use anomalyd::event::SeriesKey;
use anomalyd::telemetry::http::{self, HttpState, Readiness};
use anomalyd::telemetry::metrics::{Metrics, MetricsConfig, SeriesSample};
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use crate::support::{client, get};

/// A server on 127.0.0.1:0; returns its base URL, the readiness flag, the
/// stop token and the server task.
async fn serve(
    metrics: &Metrics,
) -> (
    String,
    Readiness,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), http::HttpError>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let readiness = Readiness::new();
    let stop = CancellationToken::new();
    let state = HttpState {
        registry: metrics.registry().clone(),
        readiness: readiness.clone(),
    };
    let task = tokio::spawn(http::run(listener, state, stop.clone().cancelled_owned()));
    (base, readiness, stop, task)
}

/// Metrics with every family touched, per-series on with a cap of 2.
fn busy_metrics() -> Arc<Metrics> {
    let mut cfg = MetricsConfig::default();
    cfg.per_series.enabled = true;
    cfg.per_series.max_series = 2;
    let m = Metrics::new(
        Registry::new(),
        &cfg,
        &["invalid_json", "missing_field"],
        &["non_finite", "out_of_order"],
    )
    .unwrap();
    let src = m.source("kafka", &[]);
    src.messages_received(1);
    src.events_decoded(3);
    src.event_failed("invalid_json");
    m.event_processed(Duration::from_micros(40));
    m.event_skipped("non_finite");
    anomalyd::alert::EmittedCounters::new(&m).emitted(AlertStatus::Firing, Severity::Warning);
    let s = SinkMetrics::new(&m, "webhook");
    s.delivered(AlertStatus::Firing).inc();
    s.dropped(DropReason::QueueFull).inc();
    s.failures().inc();
    s.send_seconds().observe(0.02);
    s.queue_length().set(3);
    m.set_series_active(3);
    m.series_evicted(1);
    m.set_consumer_lag("events", 0, 12);
    m.offsets_committed();
    m.snapshot_written(4096, Duration::from_millis(250));
    m.snapshot_failed();
    for host in ["a", "b", "c"] {
        m.observe_series(
            &SeriesKey::new("cpu", [("host", host)]),
            &SeriesSample {
                value: 1.5,
                expected: 1.0,
                lower: 0.5,
                upper: 1.5,
                score: 0.5,
            },
        );
    }
    Arc::new(m)
}

#[tokio::test]
async fn metrics_endpoint_serves_the_exposition() {
    let m = busy_metrics();
    let (base, _ready, stop, task) = serve(&m).await;
    let resp = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ctype = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let text = resp.text().await.unwrap();
    for (name, kind) in [
        ("anomalyd_build_info", "gauge"),
        ("anomalyd_messages_received_total", "counter"),
        ("anomalyd_events_decoded_total", "counter"),
        ("anomalyd_events_failed_total", "counter"),
        ("anomalyd_events_processed_total", "counter"),
        ("anomalyd_events_skipped_total", "counter"),
        ("anomalyd_event_processing_seconds", "histogram"),
        ("anomalyd_alerts_emitted_total", "counter"),
        ("anomalyd_alerts_delivered_total", "counter"),
        ("anomalyd_sink_failures_total", "counter"),
        ("anomalyd_alerts_dropped_total", "counter"),
        ("anomalyd_sink_queue_length", "gauge"),
        ("anomalyd_sink_send_seconds", "histogram"),
        ("anomalyd_series_active", "gauge"),
        ("anomalyd_series_evicted_total", "counter"),
        ("anomalyd_kafka_consumer_lag", "gauge"),
        ("anomalyd_kafka_offsets_committed_total", "counter"),
        ("anomalyd_snapshots_written_total", "counter"),
        ("anomalyd_snapshot_failures_total", "counter"),
        ("anomalyd_snapshot_seconds", "histogram"),
        ("anomalyd_snapshot_bytes", "gauge"),
        ("anomalyd_series_value", "gauge"),
        ("anomalyd_series_expected", "gauge"),
        ("anomalyd_series_lower", "gauge"),
        ("anomalyd_series_upper", "gauge"),
        ("anomalyd_series_score", "gauge"),
        ("anomalyd_series_exported", "gauge"),
        ("anomalyd_series_export_refused_total", "counter"),
    ] {
        assert!(
            text.contains(&format!("\n# TYPE {name} {kind}\n"))
                || text.starts_with(&format!("# HELP {name} ")),
            "missing TYPE of {name}\n{text}"
        );
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "missing HELP of {name}"
        );
    }
    assert!(text.contains("anomalyd_events_skipped_total{reason=\"out_of_order\"} 0\n"));
    assert!(text.contains("anomalyd_kafka_consumer_lag{partition=\"0\",topic=\"events\"} 12\n"));
    assert!(text.contains("anomalyd_snapshot_bytes 4096\n"));
    // The per-series cap of 2 over HTTP too: a and b exported, c refused.
    let exported: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("anomalyd_series_value{"))
        .collect();
    assert_eq!(exported.len(), 2, "{exported:?}");
    assert!(!text.contains("host=\\\"c\\\""));
    assert!(text.contains("anomalyd_series_export_refused_total 1\n"));

    stop.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn readyz_goes_503_200_503_and_healthz_stays_200() {
    let m = busy_metrics();
    let (base, ready, stop, task) = serve(&m).await;
    let get = |path: &'static str| {
        let url = format!("{base}{path}");
        async move { get(&url).await }
    };
    assert_eq!(get("/healthz").await, (200, "ok\n".to_owned()));
    assert_eq!(get("/readyz").await, (503, "starting\n".to_owned()));
    ready.set_ready();
    assert_eq!(get("/readyz").await, (200, "ready\n".to_owned()));
    ready.set_draining();
    assert_eq!(get("/readyz").await, (503, "draining\n".to_owned()));
    assert_eq!(get("/healthz").await.0, 200);
    assert_eq!(get("/nope").await.0, 404);
    stop.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn exposition_passes_promtool_check_metrics() {
    let promtool = crate::real_parts::PROMTOOL.path();
    let m = busy_metrics();
    let (base, _ready, stop, task) = serve(&m).await;
    let (status, text) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    stop.cancel();
    task.await.unwrap().unwrap();

    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool: {}\n{report}", out.status);
    assert!(
        report.trim().is_empty(),
        "promtool lint findings:\n{report}"
    );
}
