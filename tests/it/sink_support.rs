//! Helpers shared by the sink and telemetry integration tests.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use anomalyd::alert::{Alert, AlertStatus, Severity};
use anomalyd::telemetry::metrics::{Metrics, MetricsConfig};
use prometheus::Registry;

/// A fresh `Metrics` on its own registry.
pub fn metrics() -> Metrics {
    Metrics::new(Registry::new(), &MetricsConfig::default(), &[], &[]).expect("metrics")
}

/// A firing alert of series `cpu_usage{host=<host>}` with `value`.
pub fn firing(fingerprint: &str, host: &str, value: f64) -> Alert {
    Alert {
        fingerprint: fingerprint.to_owned(),
        status: AlertStatus::Firing,
        series: format!("cpu_usage{{host=\"{host}\"}}"),
        labels: BTreeMap::from([
            ("__name__".to_owned(), "cpu_usage".to_owned()),
            ("host".to_owned(), host.to_owned()),
        ]),
        started_at: "2024-05-01T12:00:00Z".to_owned(),
        ended_at: None,
        ts: "2024-05-01T12:00:00Z".to_owned(),
        value,
        expected: 0.42,
        lower: 0.1,
        upper: 0.74,
        score: 0.9991,
        threshold: 0.99,
        severity: Severity::Warning,
        model: "regression".to_owned(),
    }
}

/// The resolution of `a`, ended at `ended_at`.
pub fn resolved(a: &Alert, ended_at: &str) -> Alert {
    Alert {
        status: AlertStatus::Resolved,
        ended_at: Some(ended_at.to_owned()),
        ts: ended_at.to_owned(),
        value: a.expected,
        score: 0.1,
        ..a.clone()
    }
}

/// Polls `check` every 20 ms until it returns true; panics with `what`
/// after `timeout`.
pub async fn poll_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    poll_some(what, timeout, || {
        let fut = check();
        async move { fut.await.then_some(()) }
    })
    .await
}

/// Polls `check` every 20 ms until it returns `Some`, and returns that;
/// panics with `what` after `timeout`.
pub async fn poll_some<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A loopback port nobody listens on (bound, then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// An HTTP client for tests (installs the ring crypto provider that
/// reqwest's `rustls-no-provider` build needs; Err means already there).
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// GET `url`: status and body.
pub async fn get(url: &str) -> (u16, String) {
    let r = client().get(url).send().await.expect("GET");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}
