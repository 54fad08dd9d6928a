//! Fault injection: the daemon against a broker outage, a failing and a
//! slow alert receiver, and a flood of bad input, each on librdkafka's mock
//! cluster with real HTTP receivers on loopback.
//!
//! These tests run for a fixed time on purpose (the outage or flood lasts
//! 30–60 s); everything around the outage polls with deadlines. What they
//! pin down:
//! - the source loses and duplicates nothing across a broker outage, and its
//!   committed offsets catch up with the end of the topic afterwards;
//! - a sink that is down keeps a bounded queue, drops by its documented
//!   overflow policy with every drop counted, and catches up afterwards,
//!   while scoring goes on;
//! - a sink that hangs holds up neither the pipeline nor the other sinks;
//! - a minute of nothing but bad messages is counted exactly, by reason,
//!   and neither stalls the pipeline nor fails the health checks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anomalyd::app;
use tokio::time::Instant;

use crate::support::{self, TestProducer};

/// Deadline of every poll: generous, the first group join alone takes ~3 s
/// and a rejoin after an outage a session timeout more.
const WAIT: Duration = Duration::from_secs(60);

/// Event time of step 0: 2026-01-01T00:00:00Z. Steps are one minute apart.
const T0_MS: i64 = 1_767_225_600_000;

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

#[test]
fn broker_outage_of_30s_loses_and_repeats_nothing() {
    let logs = support::LogCounter::default();
    let started = std::time::Instant::now();
    support::run_logging_to(&logs, broker_outage());
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
async fn broker_outage() {
    const PARTITIONS: i32 = 3;
    const SERIES: usize = 6;
    let mock = support::cluster(&[("metrics", PARTITIONS), ("alerts", 1)]);
    let bootstrap = mock.bootstrap_servers();
    let running = app::start(support::config(&bootstrap, "outage", "metrics"))
        .await
        .expect("start");
    let m = Arc::clone(&running.metrics);
    // The producer keeps what it could not deliver during the outage and
    // retries it afterwards (librdkafka's default timeout is 300 s; pinned
    // here so the test does not depend on it).
    let p = TestProducer::with_options(&bootstrap, &[("message.timeout.ms", "180000")]);

    // Part 1 before the outage, fully processed and committed.
    for step in 0..100 {
        produce_step(&p, "metrics", PARTITIONS, SERIES, step, calm);
    }
    p.flush();
    processed(&m, 600).await;
    committed_at_end(&bootstrap, "outage", "metrics", PARTITIONS).await;

    // Part 2 is produced while the only broker is down: it sits in the
    // producer until the broker is back.
    mock.broker_down(1).expect("broker down");
    for step in 100..200 {
        produce_step(&p, "metrics", PARTITIONS, SERIES, step, calm);
    }
    let outage_ends = Instant::now() + Duration::from_secs(30);
    let mut samples = 0;
    while Instant::now() < outage_ends {
        let (health, ready) = probes(running.metrics_addr).await;
        assert_eq!(health, 200, "/healthz during the broker outage");
        // The daemon is still a working consumer that will resume by
        // itself; /readyz stays 200 (see the report in the module docs).
        assert_eq!(ready, 200, "/readyz during the broker outage");
        assert_eq!(m.events_processed_total(), 600, "nothing to consume");
        samples += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(samples >= 30);
    mock.broker_up(1).expect("broker up");

    // Part 3 after the outage.
    for step in 200..300 {
        produce_step(&p, "metrics", PARTITIONS, SERIES, step, calm);
    }
    p.flush_within(WAIT);
    let end = support::end_offsets(&bootstrap, "metrics", PARTITIONS);
    assert_eq!(end, BTreeMap::from([(0, 600), (1, 600), (2, 600)]));

    // Every event exactly once: processed = produced (a re-read would
    // count twice), nothing skipped or failed.
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
    committed_at_end(&bootstrap, "outage", "metrics", PARTITIONS).await;

    running.shutdown();
    running.wait().await.expect("clean shutdown");
    assert_eq!(m.events_processed_total(), 1800, "no re-read at shutdown");
    assert_eq!(
        support::committed(&bootstrap, "outage", "metrics", PARTITIONS),
        end
    );
}
