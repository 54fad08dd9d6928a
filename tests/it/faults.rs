//! Fault injection: the daemon against a broker outage, a failing and a
//! slow alert receiver, and a flood of bad input, each on librdkafka's mock
//! cluster with real HTTP receivers on loopback.
//!
//! These tests run for a fixed time on purpose (the outage or flood lasts
//! 30–60 s); everything around the outage polls with deadlines. What they
//! pin down:
//! - the source loses and duplicates nothing across a broker outage longer
//!   than the group session (so the daemon is also thrown out of its group
//!   and rejoins), and its committed offsets catch up with the end of the
//!   topic afterwards;
//! - a sink that is down keeps a bounded queue, drops by its documented
//!   overflow policy with every drop counted, and catches up afterwards,
//!   while scoring goes on;
//! - a sink that hangs holds up neither the pipeline nor the other sinks;
//! - a minute of nothing but bad messages is counted exactly, by reason,
//!   and neither stalls the pipeline nor fails the health checks;
//! - none of these faults floods the log: repeated failures cost one line
//!   per 10 s.
//!
//! `/readyz` stays 200 through a broker outage, and the test holds it to
//! that: the daemon recovers by itself, nothing routes requests to it, and
//! turning every replica unready at once would only stall rollouts and, with
//! Service-based discovery, hide the very metrics (consumer errors, lag) that
//! show the outage. `/healthz` must stay 200, or the orchestrator would
//! restart replicas that cannot fix a broker.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anomalyd::alert::sink::RetryConfig;
use anomalyd::app;
use anomalyd::decode::{Decoder, REASONS};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::support::{self, TestProducer};

/// Deadline of every poll: generous, the first group join alone takes ~3 s
/// and a rejoin after an outage a session timeout more.
const WAIT: Duration = Duration::from_secs(60);

/// Partitions of the input topic.
const PARTITIONS: i32 = 2;

/// Partitions of the input topic in the broker-outage test.
const OUTAGE_PARTITIONS: i32 = 3;

/// Event time of step 0: 2026-01-01T00:00:00Z. Steps are one minute apart.
const T0_MS: i64 = 1_767_225_600_000;

/// Steps a series learns before its first spike (its warm-up is 100).
const WARM_STEPS: usize = 150;

/// A deterministic hash of (series, step) in [-0.5, 0.5): SplitMix64.
fn noise(series: usize, step: usize) -> f64 {
    let mut z = ((series as u64) << 32 ^ step as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64 - 0.5
}

/// A quiet series: a sine of period 96 steps around a per-series level,
/// with noise. Raises no alert.
fn calm(series: usize, step: usize) -> f64 {
    let level = 50.0 + 10.0 * series as f64;
    level + 10.0 * (step as f64 * std::f64::consts::TAU / 96.0).sin() + noise(series, step)
}

/// [`calm`], then after [`WARM_STEPS`] a spike every 20th step, taking
/// the series in turn: series `s` spikes at steps `20 s + 9` modulo 160
/// after warm-up (8 series keep every 20-step window busy), each spike of
/// a series four times the height of its last. A series that spikes often
/// and at a similar size learns that as its normal; spaced and growing,
/// every spike is a hit, so the default rule (fire on one hit, resolve
/// after 3 quiet events) emits a firing/resolved pair per spike for as
/// long as the stream runs.
fn spiky(series: usize, step: usize) -> f64 {
    let base = calm(series, step);
    match step.checked_sub(WARM_STEPS) {
        Some(k) if k % 160 == 9 + 20 * (series % 8) => base + 50.0 * 4f64.powi((k / 160) as i32),
        _ => base,
    }
}

/// Produces step `step` of `series` series (one event each, series `s` on
/// partition `s % partitions`, keyed by series) to `topic`.
fn produce_step(
    p: &TestProducer,
    topic: &str,
    partitions: i32,
    series: usize,
    step: usize,
    value: fn(usize, usize) -> f64,
) {
    for s in 0..series {
        let host = format!("h{s}");
        let payload =
            support::event_json("cpu", &host, T0_MS + step as i64 * 60_000, value(s, step));
        p.send(topic, Some(s as i32 % partitions), &host, &payload);
    }
}

/// Waits until the daemon has processed `n` events in total.
async fn processed(m: &Arc<anomalyd::telemetry::metrics::Metrics>, n: u64) {
    support::poll_until(&format!("{n} events processed"), WAIT, || {
        let m = Arc::clone(m);
        async move { m.events_processed_total() == n }
    })
    .await;
}

/// Waits until the group's committed offsets equal the end offsets of
/// every partition of `topic`, and returns them.
async fn committed_at_end(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> BTreeMap<i32, i64> {
    let end = support::end_offsets(bootstrap, topic, partitions);
    support::poll_until(
        &format!("committed offsets of {group} to reach {end:?}"),
        WAIT,
        || {
            let c = support::committed(bootstrap, group, topic, partitions);
            let done = c == end;
            async move { done }
        },
    )
    .await;
    end
}

/// GET `/healthz` and `/readyz`: their status codes.
async fn probes(addr: std::net::SocketAddr) -> (u16, u16) {
    let health = support::get(&format!("http://{addr}/healthz")).await.0;
    let ready = support::get(&format!("http://{addr}/readyz")).await.0;
    (health, ready)
}

// Each test owns its runtime and creates the cluster outside it: when an
// assertion fails, the runtime (and the daemon's consumer in it) is gone
// before the cluster is, so the consumer's close does not wait on a
// destroyed broker (seen to hang a failed test forever).

#[test]
fn broker_outage_of_30s_loses_and_repeats_nothing() {
    let mock = support::cluster(&[("metrics", OUTAGE_PARTITIONS), ("alerts", 1)]);
    let logs = support::LogCounter::default();
    let started = std::time::Instant::now();
    support::run_logging_to(&logs, broker_outage(&mock));
    // The consumer and the client fail every ~100 ms while the broker is
    // down; the log gets one line of each per 10 s, not one per failure.
    let bound = started.elapsed().as_secs() as usize / 10 + 2;
    for message in ["Kafka consumer error.", "Kafka client error."] {
        let lines = logs.count(tracing::Level::WARN, "anomalyd", message);
        assert!(
            lines <= bound,
            "{lines} of {message:?} (at most {bound} expected); log: {:#?}",
            logs.all()
        );
    }
    assert!(
        logs.count(tracing::Level::WARN, "anomalyd", "Kafka consumer error.") >= 1,
        "the outage is reported"
    );
}

/// The body of [`broker_outage_of_30s_loses_and_repeats_nothing`].
async fn broker_outage(mock: &support::Cluster) {
    const SERIES: usize = 6;
    let bootstrap = mock.bootstrap_servers();
    let running = app::start(support::config(&bootstrap, "outage", "metrics"))
        .await
        .expect("start");
    let m = Arc::clone(&running.metrics);
    // The producer keeps what it could not deliver during the outage and
    // retries it afterwards (librdkafka's default timeout is 300 s; pinned
    // here so the test does not depend on it).
    let p = TestProducer::with_options(&bootstrap, &[("message.timeout.ms", "180000")]);

    // Part 1 before the outage, fully processed and committed. (An outage
    // longer than the session revokes the partitions, and the commit on
    // revoke fails without a coordinator: what was not committed before
    // would be read again, which at-least-once allows but would make the
    // count below inexact.)
    for step in 0..100 {
        produce_step(&p, "metrics", OUTAGE_PARTITIONS, SERIES, step, calm);
    }
    p.flush();
    processed(&m, 600).await;
    committed_at_end(&bootstrap, "outage", "metrics", OUTAGE_PARTITIONS).await;

    // Part 2 is produced while the only broker is down: it sits in the
    // producer until the broker is back.
    let outage = support::BrokerOutage::start(mock, 1);
    for step in 100..200 {
        produce_step(&p, "metrics", OUTAGE_PARTITIONS, SERIES, step, calm);
    }
    let outage_ends = Instant::now() + Duration::from_secs(30);
    let mut samples = 0;
    while Instant::now() < outage_ends {
        let (health, ready) = probes(running.metrics_addr).await;
        assert_eq!(health, 200, "/healthz during the broker outage");
        // The daemon resumes by itself: it stays ready (module docs).
        assert_eq!(ready, 200, "/readyz during the broker outage");
        assert_eq!(m.events_processed_total(), 600, "nothing to consume");
        samples += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(samples >= 30);
    drop(outage);

    // Part 3 after the outage.
    for step in 200..300 {
        produce_step(&p, "metrics", OUTAGE_PARTITIONS, SERIES, step, calm);
    }
    p.flush_within(WAIT);
    let end = support::end_offsets(&bootstrap, "metrics", OUTAGE_PARTITIONS);
    assert_eq!(end, BTreeMap::from([(0, 600), (1, 600), (2, 600)]));

    // Every event exactly once: processed = produced (a lost event would
    // count less, a re-read one twice), nothing skipped or failed.
    processed(&m, 1800).await;
    let text = support::scrape(running.metrics_addr).await;
    assert_eq!(
        support::metric_sum(&text, "anomalyd_events_skipped_total", &[]),
        0.0
    );
    assert_eq!(
        support::metric_sum(&text, "anomalyd_events_failed_total", &[]),
        0.0
    );
    // The periodic commit resumes: offsets reach the end while running.
    committed_at_end(&bootstrap, "outage", "metrics", OUTAGE_PARTITIONS).await;

    running.shutdown();
    running.wait().await.expect("clean shutdown");
    assert_eq!(m.events_processed_total(), 1800, "no re-read at shutdown");
    assert_eq!(
        support::committed(&bootstrap, "outage", "metrics", OUTAGE_PARTITIONS),
        end
    );
}

/// How the test webhook receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// 200, and the alerts are recorded.
    Healthy,
    /// 503 Service Unavailable (retryable), nothing recorded.
    Failing,
    /// Holds every request until the mode changes, then answers by the new
    /// mode: a receiver slower than any timeout the test would tolerate.
    Hung,
}

/// A webhook receiver on 127.0.0.1:0 that can be switched between healthy,
/// failing and hung while the daemon runs.
#[derive(Clone)]
struct Hook {
    mode: Arc<watch::Sender<Mode>>,
    /// Requests received, whatever the answer.
    requests: Arc<AtomicUsize>,
    /// Alerts of the requests answered 200, in arrival order.
    alerts: Arc<Mutex<Vec<serde_json::Value>>>,
    url: String,
}

impl Hook {
    async fn start(mode: Mode) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook = Hook {
            mode: Arc::new(watch::channel(mode).0),
            requests: Arc::default(),
            alerts: Arc::default(),
            url: format!("http://{}/hook", listener.local_addr().unwrap()),
        };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(Self::handle))
            .with_state(hook.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        hook
    }

    async fn handle(State(hook): State<Hook>, body: Bytes) -> StatusCode {
        hook.requests.fetch_add(1, Ordering::SeqCst);
        let mut mode = hook.mode.subscribe();
        let now = *mode
            .wait_for(|m| *m != Mode::Hung)
            .await
            .expect("the sender lives in the hook");
        if now == Mode::Failing {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
        let alerts = body["alerts"].as_array().expect("alerts array").clone();
        hook.alerts.lock().unwrap().extend(alerts);
        StatusCode::OK
    }

    fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    fn alerts(&self) -> Vec<serde_json::Value> {
        self.alerts.lock().unwrap().clone()
    }
}

/// Alerts the pipeline emitted (every sink gets each of them).
fn emitted(text: &str) -> f64 {
    support::metric_sum(text, "anomalyd_alerts_emitted_total", &[])
}

/// Alerts `sink` delivered.
fn delivered(text: &str, sink: &str) -> f64 {
    support::metric_sum(text, "anomalyd_alerts_delivered_total", &[("sink", sink)])
}

/// Alerts `sink` dropped for `reason`, or for any reason when `None`.
fn dropped(text: &str, sink: &str, reason: Option<&str>) -> f64 {
    let mut labels = vec![("sink", sink)];
    labels.extend(reason.map(|r| ("reason", r)));
    support::metric_sum(text, "anomalyd_alerts_dropped_total", &labels)
}

/// Alerts waiting in `sink`'s queue.
fn queue_length(text: &str, sink: &str) -> f64 {
    support::metric_sum(text, "anomalyd_sink_queue_length", &[("sink", sink)])
}

/// The (status, event time) of each alert, by series fingerprint, in
/// arrival order. Sinks keep the order of each series; alerts of series on
/// different shards may reach two sinks interleaved differently.
fn by_series(alerts: &[serde_json::Value]) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for a in alerts {
        let s = |k: &str| a[k].as_str().unwrap_or_default().to_owned();
        out.entry(s("fingerprint"))
            .or_default()
            .push((s("status"), s("ts")));
    }
    out
}

/// The alerts on the Kafka alert topic, in order (one partition).
fn kafka_alerts(bootstrap: &str, want: usize) -> Vec<serde_json::Value> {
    support::read_topic(bootstrap, "alerts", want, WAIT)
        .into_iter()
        .map(|(_, v)| serde_json::from_slice(&v).expect("alert JSON"))
        .collect()
}

#[test]
fn webhook_down_for_60s_keeps_a_bounded_queue_and_accounts_for_every_alert() {
    let mock = support::cluster(&[("metrics", PARTITIONS), ("alerts", 1)]);
    let logs = support::LogCounter::default();
    let started = std::time::Instant::now();
    support::run_logging_to(&logs, webhook_down(mock.bootstrap_servers()));
    // A minute of failed attempts, a line per 10 s. (Overflow drops are
    // logged from the shard threads, which are not the runtime's and so
    // log elsewhere.)
    let bound = started.elapsed().as_secs() as usize / 10 + 2;
    let message = "Failed to deliver alerts; will retry.";
    let lines = logs.count(tracing::Level::WARN, "anomalyd", message);
    assert!(
        (1..=bound).contains(&lines),
        "{lines} of {message:?} (at most {bound} expected)"
    );
}

/// The body of [`webhook_down_for_60s_keeps_a_bounded_queue_and_accounts_for_every_alert`].
async fn webhook_down(bootstrap: String) {
    // As many alerting series as queue slots: a full queue then always
    // holds two messages of one series, so the overflow policy never has to
    // drop a series' newest message (see alert/sink/queue.rs).
    const SERIES: usize = 8;
    const CAPACITY: usize = 8;
    let hook = Hook::start(Mode::Healthy).await;
    let mut config = support::config(&bootstrap, "sink-down", "metrics");
    let w = &mut config.sinks.webhook;
    w.enabled = true;
    w.url = hook.url.clone();
    // The per-series alerts, which the test accounts for one by one.
    w.messages = anomalyd::alert::sink::Messages::Alerts;
    w.delivery.queue_capacity = CAPACITY;
    w.delivery.max_batch_alerts = 4;
    w.timeout_ms = 5_000;
    // Retry until shutdown, at least every 500 ms: nothing is given up for
    // retries, and recovery is noticed at once.
    w.delivery.retry = RetryConfig {
        initial_backoff_ms: 50,
        max_backoff_ms: 500,
        multiplier: 2.0,
        jitter: 0.2,
        max_attempts: 0,
    };
    let running = app::start(config).await.expect("start");
    let addr = running.metrics_addr;
    let m = Arc::clone(&running.metrics);
    let p = TestProducer::new(&bootstrap);

    for step in 0..WARM_STEPS {
        produce_step(&p, "metrics", PARTITIONS, SERIES, step, spiky);
    }
    p.flush();
    processed(&m, (WARM_STEPS * SERIES) as u64).await;
    assert_eq!(
        emitted(&support::scrape(addr).await),
        0.0,
        "warm-up is quiet"
    );

    // The receiver answers 503 for 60 s while spikes keep coming.
    hook.set(Mode::Failing);
    let outage_ends = Instant::now() + Duration::from_secs(60);
    let mut step = WARM_STEPS;
    let mut max_queue = 0.0f64;
    let mut emitted_at_checkpoints = Vec::new();
    // At least 60 s, and at least 400 steps (about 40 alerts, five times
    // the queue): on a loaded machine the steps come slower, and the
    // outage then lasts longer instead of the test counting on the clock.
    while Instant::now() < outage_ends || step < WARM_STEPS + 400 {
        produce_step(&p, "metrics", PARTITIONS, SERIES, step, spiky);
        step += 1;
        let text = support::scrape(addr).await;
        let queued = queue_length(&text, "webhook");
        assert!(
            queued <= CAPACITY as f64,
            "webhook queue {queued} > capacity"
        );
        max_queue = max_queue.max(queued);
        if step.is_multiple_of(50) {
            // Scoring keeps up with the input during the outage.
            p.flush();
            processed(&m, (step * SERIES) as u64).await;
            emitted_at_checkpoints.push(emitted(&support::scrape(addr).await));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    p.flush();
    processed(&m, (step * SERIES) as u64).await;
    let text = support::scrape(addr).await;
    let total = emitted(&text);
    assert!(
        emitted_at_checkpoints.len() >= 3 && emitted_at_checkpoints.windows(2).all(|w| w[1] > w[0]),
        "alerts kept coming during the outage: {emitted_at_checkpoints:?}"
    );
    assert!(
        total > 4.0 * CAPACITY as f64,
        "only {total} alerts: the queue never overflowed"
    );
    assert_eq!(max_queue, CAPACITY as f64, "the queue filled up");
    assert!(hook.alerts().is_empty(), "a 503 records nothing");
    assert_eq!(delivered(&text, "webhook"), 0.0);
    assert!(
        support::metric_sum(
            &text,
            "anomalyd_sink_failures_total",
            &[("sink", "webhook")]
        ) > 0.0
    );
    // The documented policy: a full queue drops superseded messages first;
    // with no more series than slots there always is one.
    let superseded = dropped(&text, "webhook", Some("superseded"));
    assert!(superseded > 0.0);
    assert_eq!(dropped(&text, "webhook", None), superseded, "{text}");
    // The other sinks are unaffected.
    assert_eq!(dropped(&text, "kafka", None), 0.0);

    // Recovery: the queue drains and every alert is accounted for.
    hook.set(Mode::Healthy);
    let text = support::poll_some("the webhook queue to drain", WAIT, || async {
        let text = support::scrape(addr).await;
        let done = queue_length(&text, "webhook") == 0.0
            && delivered(&text, "webhook") + dropped(&text, "webhook", None) == total;
        done.then_some(text)
    })
    .await;
    assert_eq!(emitted(&text), total, "no alert after the input stopped");
    let got = hook.alerts();
    assert_eq!(got.len() as f64, delivered(&text, "webhook"));
    assert_eq!(
        dropped(&text, "webhook", None),
        superseded,
        "no drop after recovery"
    );
    assert!(
        got.len() >= SERIES,
        "the queued alerts arrived: {}",
        got.len()
    );

    // Against the Kafka sink, which got every alert: per series, the
    // webhook saw a subsequence (some dropped, none reordered or repeated)
    // that ends with the series' newest state.
    support::poll_until("the Kafka sink to deliver everything", WAIT, || async {
        delivered(&support::scrape(addr).await, "kafka") == total
    })
    .await;
    let on_kafka = kafka_alerts(&bootstrap, total as usize);
    assert_eq!(on_kafka.len() as f64, total);
    let all = by_series(&on_kafka);
    let seen = by_series(&got);
    assert_eq!(all.len(), SERIES, "every series alerted");
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        all.keys().collect::<Vec<_>>()
    );
    for (series, alerts) in &seen {
        let mut rest = all[series].iter();
        for a in alerts {
            assert!(
                rest.any(|b| b == a),
                "{series}: {a:?} out of order or repeated at the webhook"
            );
        }
        assert_eq!(
            alerts.last(),
            all[series].last(),
            "{series}: the newest state arrived"
        );
    }

    running.shutdown();
    running.wait().await.expect("clean shutdown");
}

#[test]
fn a_hung_webhook_holds_up_neither_the_pipeline_nor_the_kafka_sink() {
    let mock = support::cluster(&[("metrics", PARTITIONS), ("alerts", 1)]);
    let logs = support::LogCounter::default();
    support::run_logging_to(&logs, hung_webhook(mock.bootstrap_servers()));
}

/// The body of [`a_hung_webhook_holds_up_neither_the_pipeline_nor_the_kafka_sink`].
async fn hung_webhook(bootstrap: String) {
    const SERIES: usize = 4;
    // Every request hangs until the test lets it go.
    let hook = Hook::start(Mode::Hung).await;
    let mut config = support::config(&bootstrap, "sink-slow", "metrics");
    let w = &mut config.sinks.webhook;
    w.enabled = true;
    w.url = hook.url.clone();
    w.messages = anomalyd::alert::sink::Messages::Alerts;
    w.timeout_ms = 120_000;
    let running = app::start(config).await.expect("start");
    let addr = running.metrics_addr;
    let m = Arc::clone(&running.metrics);
    let p = TestProducer::new(&bootstrap);

    let first_part = WARM_STEPS + 100;
    for step in 0..first_part {
        produce_step(&p, "metrics", PARTITIONS, SERIES, step, spiky);
    }
    p.flush();
    support::poll_until("the webhook's first request", WAIT, || async {
        hook.requests.load(Ordering::SeqCst) >= 1
    })
    .await;
    // The webhook is stuck in its first request from here on.
    let emitted_when_stuck = emitted(&support::scrape(addr).await);
    for step in first_part..first_part + 100 {
        produce_step(&p, "metrics", PARTITIONS, SERIES, step, spiky);
    }
    p.flush();
    processed(&m, ((first_part + 100) * SERIES) as u64).await;
    let text = support::poll_some("the Kafka sink to deliver every alert", WAIT, || async {
        let text = support::scrape(addr).await;
        (delivered(&text, "kafka") == emitted(&text)).then_some(text)
    })
    .await;
    let total = emitted(&text);
    assert!(
        total > emitted_when_stuck,
        "alerts raised while the webhook hung: {emitted_when_stuck} → {total}"
    );
    assert_eq!(
        hook.requests.load(Ordering::SeqCst),
        1,
        "still in the first request"
    );
    assert_eq!(delivered(&text, "webhook"), 0.0);
    assert!(
        queue_length(&text, "webhook") >= 1.0,
        "alerts wait in its queue"
    );
    let on_kafka = kafka_alerts(&bootstrap, total as usize);
    assert_eq!(on_kafka.len() as f64, total);

    // Let it go: the webhook catches up, every series in the same order.
    hook.set(Mode::Healthy);
    support::poll_until("the webhook to catch up", WAIT, || async {
        delivered(&support::scrape(addr).await, "webhook") == total
    })
    .await;
    let text = support::scrape(addr).await;
    assert_eq!(dropped(&text, "webhook", None), 0.0);
    assert_eq!(by_series(&hook.alerts()), by_series(&on_kafka));

    running.shutdown();
    running.wait().await.expect("clean shutdown");
}

#[test]
fn a_minute_of_only_bad_messages_is_counted_exactly_and_stalls_nothing() {
    let mock = support::cluster(&[("metrics", PARTITIONS), ("alerts", 1)]);
    let logs = support::LogCounter::default();
    let started = std::time::Instant::now();
    support::run_logging_to(&logs, bad_flood(mock.bootstrap_servers()));
    // Tens of thousands of bad messages, one log line per 10 s.
    let bound = started.elapsed().as_secs() as usize / 10 + 2;
    let lines = logs.count(
        tracing::Level::WARN,
        "anomalyd",
        "Skipped undecodable input.",
    );
    assert!(
        (1..=bound).contains(&lines),
        "{lines} decode warnings (at most {bound} expected)"
    );
}

/// The body of [`a_minute_of_only_bad_messages_is_counted_exactly_and_stalls_nothing`].
async fn bad_flood(bootstrap: String) {
    let mut config = support::config(&bootstrap, "flood", "metrics");
    // Small enough that oversized messages cost the broker little.
    config.decode.max_message_bytes = 4096;
    // One message per kind (reason, payload); None is a Kafka tombstone.
    let kinds: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("empty", None),
        ("empty", Some(b"   \n".to_vec())),
        ("too_large", Some(vec![b'{'; 5000])),
        ("invalid_utf8", Some(vec![b'{', 0xff, 0xfe, b'}'])),
        ("invalid_json", Some(b"{not json".to_vec())),
        ("missing_field", Some(br#"{"series":"m","ts":1}"#.to_vec())),
        (
            "wrong_type",
            Some(br#"{"series":"m","ts":1,"value":"high"}"#.to_vec()),
        ),
        (
            "invalid_name",
            Some(br#"{"series":"","ts":1,"value":1}"#.to_vec()),
        ),
        (
            "non_finite",
            Some(br#"{"series":"m","ts":1,"value":1e999}"#.to_vec()),
        ),
        (
            "bad_timestamp",
            Some(br#"{"series":"m","ts":"yesterday","value":1}"#.to_vec()),
        ),
        ("invalid_line_protocol", Some(b"m,host=a v=abc".to_vec())),
        ("unknown_format", Some(b"<html>".to_vec())),
    ];
    // Each payload is exactly one error of its reason, and every reason is
    // covered.
    let decoder = Decoder::new(&config.decode);
    for (reason, payload) in &kinds {
        let (mut events, mut errors) = (Vec::new(), Vec::new());
        let bytes = payload.as_deref().unwrap_or_default();
        decoder.decode(bytes, Some(T0_MS), &mut events, &mut errors);
        let got: Vec<&str> = errors.iter().map(|e| e.reason()).collect();
        assert_eq!((events.len(), got), (0, vec![*reason]), "{reason}");
    }
    for reason in REASONS {
        assert!(kinds.iter().any(|(r, _)| *r == reason), "{reason} not sent");
    }

    let running = app::start(config).await.expect("start");
    let addr = running.metrics_addr;
    let m = Arc::clone(&running.metrics);
    let p = TestProducer::new(&bootstrap);
    let mut sent: BTreeMap<&str, u64> = BTreeMap::new();
    let mut n = 0i32;
    let mut probed = 0;
    let flood_ends = Instant::now() + Duration::from_secs(60);
    for round in 0u64.. {
        if Instant::now() >= flood_ends {
            break;
        }
        for (reason, payload) in &kinds {
            let partition = n % PARTITIONS;
            match payload {
                Some(bytes) => p.send("metrics", Some(partition), "bad", bytes),
                None => p.send_empty("metrics", partition),
            }
            *sent.entry(*reason).or_default() += 1;
            n += 1;
        }
        if round.is_multiple_of(10) {
            assert_eq!(probes(addr).await, (200, 200), "/healthz, /readyz");
            assert_eq!(m.events_processed_total(), 0);
            probed += 1;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    p.flush();
    assert!(probed >= 30, "probed only {probed} times");
    let bad: u64 = sent.values().sum();

    // Good events after the flood are processed.
    for step in 0..20 {
        produce_step(&p, "metrics", PARTITIONS, 6, step, calm);
    }
    p.flush();
    processed(&m, 120).await;
    let text = support::poll_some("every message received", WAIT, || async {
        let text = support::scrape(addr).await;
        let received = support::metric_sum(&text, "anomalyd_messages_received_total", &[]);
        (received == (bad + 120) as f64).then_some(text)
    })
    .await;
    for reason in REASONS {
        // NaN and Inf are data, not failures: skipped samples.
        let family = if reason == "non_finite" {
            "anomalyd_samples_skipped_total"
        } else {
            "anomalyd_events_failed_total"
        };
        assert_eq!(
            support::metric_sum(&text, family, &[("reason", reason)]),
            sent[reason] as f64,
            "{reason}"
        );
    }
    assert_eq!(
        support::metric_sum(&text, "anomalyd_events_failed_total", &[]),
        (bad - sent["non_finite"]) as f64
    );
    assert_eq!(
        support::metric_sum(&text, "anomalyd_events_skipped_total", &[]),
        0.0
    );
    assert_eq!(probes(addr).await, (200, 200));
    let end = committed_at_end(&bootstrap, "flood", "metrics", PARTITIONS).await;
    assert_eq!(end.values().sum::<i64>(), bad as i64 + 120);

    running.shutdown();
    running.wait().await.expect("clean shutdown");
}
