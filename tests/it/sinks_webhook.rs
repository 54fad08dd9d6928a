//! The webhook sink and the runner against a real HTTP receiver (axum on
//! 127.0.0.1:0): auth header, body schema, retry after failures, bounded
//! queue while the receiver is down, isolation from a slow sink.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anomalyd::alert::sink::webhook::{WebhookSink, WebhookSinkConfig};
use anomalyd::alert::sink::{
    AlertSink, DropReason, RetryConfig, SinkError, SinkHandle, SinkOptions, Sinks,
};
use anomalyd::alert::sink::{SinkMetrics, SinkSection};
use anomalyd::alert::{Alert, AlertStatus, Notice};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::support::{firing, free_port, metrics, poll_until, resolved};

/// (value of the header under test, body) of each accepted request.
type Seen = Arc<Mutex<Vec<(Option<String>, serde_json::Value)>>>;

/// What the test receiver saw and how it behaves.
#[derive(Clone, Default)]
struct Receiver {
    /// Answer 503 to this many requests first.
    fail_first: Arc<AtomicUsize>,
    hits: Arc<AtomicUsize>,
    got: Seen,
    header: &'static str,
}

impl Receiver {
    fn alerts(&self) -> Vec<serde_json::Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, b)| b["alerts"].as_array().unwrap().clone())
            .collect()
    }
}

async fn hook(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    r.hits.fetch_add(1, Ordering::SeqCst);
    let left = r.fail_first.load(Ordering::SeqCst);
    if left > 0 {
        r.fail_first.store(left - 1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let auth = headers
        .get(r.header)
        .map(|v| v.to_str().unwrap().to_owned());
    let body: serde_json::Value = serde_json::from_slice(&body).expect("body is JSON");
    r.got.lock().unwrap().push((auth, body));
    StatusCode::OK
}

/// Starts a receiver; returns its URL.
async fn start_receiver(r: Receiver) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/hook", post(hook)).with_state(r);
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/hook")
}

fn fast_retry(max_attempts: u32) -> RetryConfig {
    RetryConfig {
        initial_backoff_ms: 5,
        max_backoff_ms: 20,
        multiplier: 2.0,
        jitter: 0.2,
        max_attempts,
    }
}

fn config(url: String) -> SinkSection<WebhookSinkConfig> {
    let mut c = SinkSection::new(WebhookSinkConfig {
        enabled: true,
        url,
        timeout_ms: 5_000,
        ..WebhookSinkConfig::default()
    });
    c.delivery.retry = fast_retry(0);
    c
}

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn token_file_header_arrives_and_body_matches_schema() {
    let r = Receiver {
        header: "x-token",
        ..Receiver::default()
    };
    let mut cfg = config(start_receiver(r.clone()).await);
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "tok-123\n").unwrap();
    cfg.auth.header = "X-Token".into();
    cfg.auth.scheme = String::new();
    cfg.auth.token_file = Some(token);
    let m = metrics();
    let sink = WebhookSink::new(&cfg, "sinks.webhook", &|_| None).unwrap();
    assert!(
        !format!("{sink:?}").contains("tok-123"),
        "token must not print"
    );
    let h = SinkHandle::spawn(sink, cfg.options(), SinkMetrics::new(&m, "webhook"));

    let a = firing("c1f6d4cd4f8464c4", "web-1", 0.97);
    let b = resolved(&a, "2024-05-01T12:05:00Z");
    h.submit(a.clone());
    h.submit(b.clone());
    poll_until("two alerts at the receiver", WAIT, || async {
        r.alerts().len() == 2
    })
    .await;

    let got = r.got.lock().unwrap().clone();
    for (auth, body) in &got {
        assert_eq!(auth.as_deref(), Some("tok-123"));
        assert_eq!(body["version"], 1);
    }
    let alerts = r.alerts();
    // The documented shape, field by field.
    let first = &alerts[0];
    assert_eq!(first["fingerprint"], "c1f6d4cd4f8464c4");
    assert_eq!(first["status"], "firing");
    assert_eq!(first["series"], "cpu_usage{host=\"web-1\"}");
    assert_eq!(first["labels"]["__name__"], "cpu_usage");
    assert_eq!(first["labels"]["host"], "web-1");
    assert_eq!(first["started_at"], "2024-05-01T12:00:00Z");
    assert!(first["ended_at"].is_null());
    assert_eq!(first["value"], 0.97);
    assert_eq!(first["expected"], 0.42);
    assert_eq!(first["lower"], 0.1);
    assert_eq!(first["upper"], 0.74);
    assert_eq!(first["score"], 0.9991);
    assert_eq!(first["threshold"], 0.99);
    assert_eq!(first["severity"], "warning");
    assert_eq!(first["model"], "regression");
    assert_eq!(alerts[1]["status"], "resolved");
    assert_eq!(alerts[1]["ended_at"], "2024-05-01T12:05:00Z");
    // And it round-trips into the same Alert.
    let back: Vec<Alert> = alerts
        .iter()
        .map(|v| serde_json::from_value(v.clone()).unwrap())
        .collect();
    assert_eq!(back, [a, b]);

    assert!(h.flush(Instant::now() + WAIT).await);
    let s = SinkMetrics::new(&m, "webhook");
    assert_eq!(s.delivered(AlertStatus::Firing).get(), 1);
    assert_eq!(s.delivered(AlertStatus::Resolved).get(), 1);
    let stats = h.shutdown(Instant::now() + WAIT).await;
    assert_eq!((stats.delivered, stats.dropped), (2, 0));
}

#[tokio::test]
async fn token_env_header_arrives_with_scheme() {
    let r = Receiver {
        header: "authorization",
        ..Receiver::default()
    };
    let mut cfg = config(start_receiver(r.clone()).await);
    cfg.auth.token_env = Some("HOOK_TOKEN".into());
    let env = |k: &str| (k == "HOOK_TOKEN").then(|| "s3cr3t".to_owned());
    let h = SinkHandle::spawn(
        WebhookSink::new(&cfg, "sinks.webhook", &env).unwrap(),
        cfg.options(),
        SinkMetrics::new(&metrics(), "webhook"),
    );
    h.submit(firing("01", "a", 1.0));
    poll_until("the alert", WAIT, || async { r.alerts().len() == 1 }).await;
    assert_eq!(r.got.lock().unwrap()[0].0.as_deref(), Some("Bearer s3cr3t"));

    // A missing variable fails at build time and names the key.
    let err = WebhookSink::new(&cfg, "sinks.webhook", &|_| None).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("sinks.webhook.auth.token_env") && msg.contains("HOOK_TOKEN"),
        "{msg}"
    );
}

#[tokio::test]
async fn receiver_failing_three_times_gets_the_alert_after_retries() {
    let r = Receiver {
        fail_first: Arc::new(AtomicUsize::new(3)),
        header: "authorization",
        ..Receiver::default()
    };
    let cfg = config(start_receiver(r.clone()).await);
    let m = metrics();
    let h = SinkHandle::spawn(
        WebhookSink::new(&cfg, "sinks.webhook", &|_| None).unwrap(),
        cfg.options(),
        SinkMetrics::new(&m, "webhook"),
    );
    h.submit(firing("01", "a", 1.0));
    assert!(
        h.flush(Instant::now() + WAIT).await,
        "delivered before the deadline"
    );
    assert_eq!(r.alerts().len(), 1);
    assert_eq!(r.hits.load(Ordering::SeqCst), 4);
    let s = SinkMetrics::new(&m, "webhook");
    assert_eq!(s.failures().get(), 3);
    assert_eq!(s.delivered(AlertStatus::Firing).get(), 1);
    assert_eq!(h.stats().dropped, 0);
}

#[tokio::test]
async fn receiver_rejecting_with_4xx_drops_without_retry() {
    async fn reject() -> StatusCode {
        StatusCode::BAD_REQUEST
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(
        async move { axum::serve(listener, Router::new().route("/hook", post(reject))).await },
    );
    let cfg = config(url);
    let m = metrics();
    let h = SinkHandle::spawn(
        WebhookSink::new(&cfg, "sinks.webhook", &|_| None).unwrap(),
        cfg.options(),
        SinkMetrics::new(&m, "webhook"),
    );
    h.submit(firing("01", "a", 1.0));
    assert!(h.flush(Instant::now() + WAIT).await);
    let s = SinkMetrics::new(&m, "webhook");
    assert_eq!(s.dropped(DropReason::Rejected).get(), 1);
    assert_eq!(s.failures().get(), 1);
}

#[tokio::test]
async fn receiver_down_keeps_the_queue_bounded_and_counts_every_drop() {
    let mut cfg = config(format!("http://127.0.0.1:{}/hook", free_port()));
    cfg.delivery.queue_capacity = 4;
    cfg.delivery.max_batch_alerts = 1;
    let m = metrics();
    let h = SinkHandle::spawn(
        WebhookSink::new(&cfg, "sinks.webhook", &|_| None).unwrap(),
        cfg.options(),
        SinkMetrics::new(&m, "webhook"),
    );
    for i in 0..50 {
        h.submit(firing(&format!("{i:016x}"), &format!("h{i}"), f64::from(i)));
        let s = h.stats();
        assert!(s.queued <= 4, "queue bounded: {s:?}");
    }
    let s = h.stats();
    assert_eq!(s.delivered, 0);
    assert_eq!(
        s.submitted,
        s.dropped + s.queued as u64 + s.in_flight as u64,
        "{s:?}"
    );
    assert!(s.dropped >= 50 - 4 - 1, "{s:?}");
    let sm = SinkMetrics::new(&m, "webhook");
    assert_eq!(sm.dropped(DropReason::QueueFull).get(), s.dropped);
    assert!(sm.queue_length().get() <= 4);
    // It keeps trying (and failing) meanwhile.
    poll_until("repeated failed attempts", WAIT, || async {
        sm.failures().get() >= 3
    })
    .await;

    let end = h
        .shutdown(Instant::now() + Duration::from_millis(100))
        .await;
    assert_eq!(
        (end.delivered, end.dropped, end.queued, end.in_flight),
        (0, 50, 0, 0)
    );
    assert_eq!(
        sm.dropped(DropReason::QueueFull).get() + sm.dropped(DropReason::Shutdown).get(),
        50
    );
    assert_eq!(sm.queue_length().get(), 0);
}

/// A sink whose sends wait for permits the test hands out.
struct Gated {
    gate: Arc<Semaphore>,
    got: Arc<Mutex<Vec<Alert>>>,
}

impl AlertSink for Gated {
    fn name(&self) -> &'static str {
        "gated"
    }

    async fn send(&self, batch: &[Notice]) -> Result<(), SinkError> {
        let permit = self.gate.acquire().await.expect("semaphore open");
        permit.forget();
        self.got.lock().unwrap().extend(
            batch
                .iter()
                .filter_map(|n| Some(n.as_alert()?.alert.clone())),
        );
        Ok(())
    }
}

#[tokio::test]
async fn a_stuck_sink_does_not_stall_another_sink_or_the_submitter() {
    let r = Receiver {
        header: "authorization",
        ..Receiver::default()
    };
    let cfg = config(start_receiver(r.clone()).await);
    let m = metrics();
    let gate = Arc::new(Semaphore::new(0));
    let slow_got = Arc::new(Mutex::new(Vec::new()));
    let slow = SinkHandle::spawn(
        Gated {
            gate: Arc::clone(&gate),
            got: Arc::clone(&slow_got),
        },
        SinkOptions {
            max_batch_alerts: 10,
            ..SinkOptions::default()
        },
        SinkMetrics::new(&m, "gated"),
    );
    let fast = SinkHandle::spawn(
        WebhookSink::new(&cfg, "sinks.webhook", &|_| None).unwrap(),
        cfg.options(),
        SinkMetrics::new(&m, "webhook"),
    );
    let sinks = Sinks::from_handles(vec![slow, fast]);
    for i in 0..3 {
        sinks.submit(firing(&format!("{i:016x}"), "a", f64::from(i)));
    }
    poll_until("the webhook got all three", WAIT, || async {
        r.alerts().len() == 3
    })
    .await;
    let stats = sinks.stats();
    assert_eq!(stats[0].name, "gated");
    assert_eq!(stats[0].delivered, 0);
    assert_eq!(stats[0].queued + stats[0].in_flight, 3);
    assert_eq!(stats[1].delivered, 3);
    assert!(slow_got.lock().unwrap().is_empty());

    // Unblock the slow sink: it catches up.
    gate.add_permits(100);
    assert!(sinks.flush(Instant::now() + WAIT).await);
    assert_eq!(slow_got.lock().unwrap().len(), 3);
    let end = sinks.shutdown(Instant::now() + WAIT).await;
    assert!(
        end.iter().all(|s| s.delivered == 3 && s.dropped == 0),
        "{end:?}"
    );
}

#[tokio::test]
async fn sinks_start_runs_every_enabled_sink() {
    use anomalyd::alert::sink::SinksConfig;
    let r = Receiver {
        header: "authorization",
        ..Receiver::default()
    };
    let mut cfg = SinksConfig {
        webhook: config(start_receiver(r.clone()).await),
        ..SinksConfig::default()
    };
    // Per-series alerts too (the webhook's default is incidents only,
    // which `incidents_go_to_the_webhook_by_default_alerts_on_request`
    // covers).
    cfg.webhook.messages = anomalyd::alert::sink::Messages::Both;
    let mut p = anomalyd::config::Problems::new();
    cfg.validate("sinks", &mut p);
    assert!(p.is_empty(), "{p}");
    let m = metrics();
    let sinks = Sinks::start(&cfg, "sinks", &m, &|_| None).unwrap();
    let names: Vec<&str> = sinks.stats().iter().map(|s| s.name).collect();
    assert_eq!(names, ["log", "webhook"]);
    sinks.submit(firing("01", "a", 1.0));
    assert!(sinks.flush(Instant::now() + WAIT).await);
    assert_eq!(r.alerts().len(), 1);
    let end = sinks.shutdown(Instant::now() + WAIT).await;
    assert!(end.iter().all(|s| s.delivered == 1), "{end:?}");
    assert_eq!(
        SinkMetrics::new(&m, "log")
            .delivered(AlertStatus::Firing)
            .get(),
        1
    );
}

/// Two alerts of one host at one instant, as the notifier sends them: the
/// incident notification first, then the alerts naming it.
fn one_incident() -> Vec<Notice> {
    use anomalyd::alert::incident::{IncidentConfig, Incidents};
    let mut g = Incidents::new(&IncidentConfig::default());
    let mut mem = firing("00000000000000bb", "web-1", 1.483e10);
    mem.series = "node_memory_used_bytes{host=\"web-1\"}".into();
    mem.peak_score = 0.9999;
    g.observe(firing("00000000000000aa", "web-1", 0.97).into());
    g.observe(mem.into());
    g.flush()
}

#[tokio::test]
async fn incidents_go_to_the_webhook_by_default_alerts_on_request() {
    use anomalyd::alert::sink::{Messages, SinksConfig};
    let r = Receiver {
        header: "authorization",
        ..Receiver::default()
    };
    let mut cfg = SinksConfig {
        webhook: config(start_receiver(r.clone()).await),
        ..SinksConfig::default()
    };
    cfg.log.enabled = false;
    assert_eq!(cfg.webhook.messages, Messages::Incidents, "the default");
    let m = metrics();
    let sinks = Sinks::start(&cfg, "sinks", &m, &|_| None).unwrap();
    for n in one_incident() {
        sinks.submit(n);
    }
    assert!(sinks.flush(Instant::now() + WAIT).await);
    let bodies: Vec<serde_json::Value> = r
        .got
        .lock()
        .unwrap()
        .iter()
        .map(|(_, b)| b.clone())
        .collect();
    assert_eq!(bodies.len(), 1, "one POST: {bodies:?}");
    let body = &bodies[0];
    assert_eq!(body["version"], 1);
    assert_eq!(
        body["alerts"],
        serde_json::json!([]),
        "no per-series alerts"
    );
    let incidents = body["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1);
    // The documented shape, field by field.
    let i = &incidents[0];
    assert_eq!(i["id"].as_str().unwrap().len(), 16);
    assert_eq!(i["status"], "firing");
    assert_eq!(i["scope"], "group");
    assert_eq!(i["group"], serde_json::json!({"host": "web-1"}));
    assert_eq!(i["groups"], 1);
    assert_eq!(i["revision"], 1);
    assert_eq!(i["severity"], "warning");
    assert_eq!(
        (i["firing"].as_u64(), i["members_total"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(i["started_at"], "2024-05-01T12:00:00.000Z");
    assert_eq!(i["updated_at"], "2024-05-01T12:00:00.000Z");
    assert!(i["ended_at"].is_null() && i["merged_into"].is_null());
    let members = i["members"].as_array().unwrap();
    // Top peak first.
    assert_eq!(members[0]["fingerprint"], "00000000000000bb");
    assert_eq!(
        members[0]["series"],
        "node_memory_used_bytes{host=\"web-1\"}"
    );
    assert_eq!(members[0]["peak_score"], 0.9999);
    assert_eq!(members[1]["fingerprint"], "00000000000000aa");
    for m in members {
        assert_eq!(m["status"], "firing");
        assert_eq!(m["reason"], "forecast");
        assert_eq!(m["value_kind"], "value");
        assert_eq!(m["started_at"], "2024-05-01T12:00:00Z");
        assert!(m["ended_at"].is_null() && m["resolution"].is_null());
    }
    assert!(
        i["summary"].as_str().unwrap().starts_with(
            "host=\"web-1\": 2 series anomalous (2 firing); top node_memory_used_bytes"
        ),
        "{i}"
    );
    sinks.shutdown(Instant::now() + WAIT).await;

    // `messages = "alerts"`: the per-series alerts, each naming its
    // incident, and no incident.
    let r = Receiver {
        header: "authorization",
        ..Receiver::default()
    };
    cfg.webhook = config(start_receiver(r.clone()).await);
    cfg.webhook.messages = Messages::Alerts;
    let sinks = Sinks::start(&cfg, "sinks", &m, &|_| None).unwrap();
    let notices = one_incident();
    let id = notices[0].as_incident().unwrap().id.clone();
    for n in notices {
        sinks.submit(n);
    }
    assert!(sinks.flush(Instant::now() + WAIT).await);
    let alerts = r.alerts();
    assert_eq!(alerts.len(), 2);
    assert!(
        alerts.iter().all(|a| a["incident"] == id.as_str()),
        "{alerts:?}"
    );
    assert!(
        r.got
            .lock()
            .unwrap()
            .iter()
            .all(|(_, b)| b["incidents"] == serde_json::json!([]))
    );
    sinks.shutdown(Instant::now() + WAIT).await;
}
