//! The daemon against a real Kafka-protocol broker (librdkafka's mock
//! cluster on loopback): alerts out, offsets, bad input, shutdown, metrics.

use std::time::Duration;

use anomalyd::alert::{Alert, AlertStatus, Severity};
use anomalyd::app;

use crate::support::{self, TestProducer};

/// Generous: the first consumer-group join alone takes ~3 s.
const WAIT: Duration = Duration::from_secs(60);

/// A daily-ish sine with deterministic noise; a spike of 5 points at
/// `spike_at`.
pub fn stream(n: usize, spike_at: usize) -> Vec<f64> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..n)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            let base = 50.0 + 10.0 * (i as f64 * std::f64::consts::TAU / 96.0).sin() + noise;
            if (spike_at..spike_at + 5).contains(&i) {
                base + 200.0
            } else {
                base
            }
        })
        .collect()
}

#[test]
fn a_known_anomaly_fires_then_resolves_and_offsets_match() {
    // The cluster outlives the runtime, so the daemon's clients are gone
    // before it is (a failing test then fails instead of hanging).
    let mock = support::cluster(&[("metrics", 1), ("alerts", 1)]);
    support::runtime().block_on(async {
        let bootstrap = mock.bootstrap_servers();
        let receiver = support::AmReceiver::start().await;
        let mut config = support::config(&bootstrap, "e2e", "metrics");
        config.sinks.alertmanager.enabled = true;
        config.sinks.alertmanager.url = receiver.url();
        let running = app::start(config).await.expect("start");

        let values = stream(800, 600);
        let producer = TestProducer::new(&bootstrap);
        let t0 = 1_767_225_600_000i64; // 2026-01-01T00:00:00Z
        for (i, v) in values.iter().enumerate() {
            let payload = support::event_json("cpu_usage", "a", t0 + i as i64 * 60_000, *v);
            producer.send("metrics", Some(0), "cpu_usage{host=a}", &payload);
        }
        producer.flush();

        let metrics = running.metrics.clone();
        let n = values.len() as u64;
        support::poll_until("all events processed", WAIT, || {
            let m = metrics.clone();
            async move { m.events_processed_total() == n }
        })
        .await;
        // Firing, then resolved, on the alerts topic.
        let alerts: Vec<(String, Alert)> = {
            let raw = support::read_topic(&bootstrap, "alerts", 2, Duration::from_secs(30));
            raw.into_iter()
                .map(|(k, v)| (k, serde_json::from_slice(&v).expect("alert JSON")))
                .collect()
        };
        assert!(
            alerts.len() >= 2,
            "expected firing + resolved, got {alerts:?}"
        );
        let (key, firing) = &alerts[0];
        assert_eq!(firing.status, AlertStatus::Firing);
        assert_eq!(key, &firing.fingerprint, "Kafka key is the fingerprint");
        assert_eq!(firing.series, r#"cpu_usage{host="a"}"#);
        assert_eq!(
            firing.labels.get("__name__").map(String::as_str),
            Some("cpu_usage")
        );
        assert_eq!(firing.labels.get("host").map(String::as_str), Some("a"));
        assert_eq!(
            firing.ts, "2026-01-01T10:00:00.000Z",
            "fires on the first spike point (index 600)"
        );
        assert!(firing.value > 200.0);
        assert!(
            firing.expected < 80.0
                && firing.lower <= firing.expected
                && firing.expected <= firing.upper
        );
        assert!(firing.value > firing.upper);
        assert!(firing.score >= firing.threshold && firing.score < 1.0);
        assert!(firing.ended_at.is_none());
        assert!(matches!(
            firing.severity,
            Severity::Warning | Severity::Critical
        ));
        assert_eq!(firing.model, "regression");
        let (_, resolved) = alerts
            .iter()
            .find(|(_, a)| a.status == AlertStatus::Resolved)
            .expect("a resolved alert");
        assert_eq!(resolved.fingerprint, firing.fingerprint);
        assert_eq!(resolved.started_at, firing.started_at);
        assert!(
            resolved
                .ended_at
                .as_deref()
                .is_some_and(|e| e > firing.started_at.as_str())
        );

        // The Alertmanager-compatible receiver saw the alert firing, then ended.
        support::poll_until(
            "Alertmanager receiver saw firing and resolved",
            WAIT,
            || {
                let posts = receiver.alerts();
                async move {
                    let ours = |a: &&serde_json::Value| a["labels"]["host"] == "a";
                    let firing = posts
                        .iter()
                        .filter(ours)
                        .any(|a| a["annotations"]["score"].is_string());
                    let ended = posts.iter().filter(ours).any(|a| {
                        a["endsAt"]
                            .as_str()
                            .is_some_and(|e| e.starts_with("2026-01-01"))
                    });
                    firing && ended
                }
            },
        )
        .await;

        running.shutdown();
        running.wait().await.expect("clean shutdown");
        let committed = support::committed(&bootstrap, "e2e", "metrics", 1);
        assert_eq!(
            committed.get(&0),
            Some(&(values.len() as i64)),
            "committed offset = events processed"
        );
    });
}

#[test]
fn bad_messages_are_counted_by_reason_and_skipped_without_stalling() {
    // The cluster outlives the runtime, so the daemon's clients are gone
    // before it is (a failing test then fails instead of hanging).
    let mock = support::cluster(&[("metrics", 1), ("alerts", 1)]);
    support::runtime().block_on(async {
        let bootstrap = mock.bootstrap_servers();
        let running = app::start(support::config(&bootstrap, "bad", "metrics"))
            .await
            .expect("start");
        let p = TestProducer::new(&bootstrap);
        let good =
            |i: i64| support::event_json("m", "h", 1_767_225_600_000 + i * 1000, 1.0 + i as f64);
        // 1 MB of garbage fits under the 1 MiB cap: not a known format. One
        // byte over the cap is refused before anything is parsed.
        let garbage = vec![b'x'; 1_000_000];
        let oversized = vec![b'{'; (1 << 20) + 1];
        let bad: Vec<(&str, Vec<u8>)> = vec![
            ("invalid_json", b"{not json".to_vec()),
            (
                "wrong_type",
                br#"{"series":"m","ts":1,"value":"high"}"#.to_vec(),
            ),
            ("missing_field", br#"{"series":"m","ts":1}"#.to_vec()),
            (
                "non_finite",
                br#"{"timestamp":"2026-01-01T00:00:00Z","value":"NaN","name":"up","labels":{}}"#
                    .to_vec(),
            ),
            ("invalid_utf8", vec![b'{', 0xff, 0xfe, b'}']),
            ("too_large", oversized),
            ("unknown_format", b"<html>".to_vec()),
            ("unknown_format", garbage),
        ];
        p.send("metrics", Some(0), "k", &good(0));
        for (_, payload) in &bad {
            p.send("metrics", Some(0), "k", payload);
        }
        p.send_empty("metrics", 0);
        p.send("metrics", Some(0), "k", &good(1));
        p.flush();
        let total = bad.len() as i64 + 3;

        let m = running.metrics.clone();
        support::poll_until("the good event after the bad ones", WAIT, || {
            let m = m.clone();
            async move { m.events_processed_total() == 2 }
        })
        .await;
        let url = format!("http://{}/metrics", running.metrics_addr);
        let (_, text) = support::get(&url).await;
        for (reason, _) in &bad {
            let want = bad.iter().filter(|(r, _)| r == reason).count() as f64;
            // A NaN is data, not a failure: a skipped sample.
            let family = if *reason == "non_finite" {
                "anomalyd_samples_skipped_total"
            } else {
                "anomalyd_events_failed_total"
            };
            let sel = format!("{family}{{reason=\"{reason}\",source=\"kafka\"}}");
            assert_eq!(
                support::metric_value(&text, &sel),
                Some(want),
                "{sel} in\n{text}"
            );
        }
        assert!(
            !text.contains("anomalyd_events_failed_total{reason=\"non_finite\""),
            "{text}"
        );
        let sel = "anomalyd_events_failed_total{reason=\"empty\",source=\"kafka\"}";
        assert_eq!(support::metric_value(&text, sel), Some(1.0), "{sel}");
        assert_eq!(
            support::metric_value(&text, "anomalyd_messages_received_total{source=\"kafka\"}"),
            Some(total as f64)
        );
        running.shutdown();
        running.wait().await.expect("clean shutdown");
        assert_eq!(
            support::committed(&bootstrap, "bad", "metrics", 1).get(&0),
            Some(&total)
        );
    });
}

#[test]
fn shutdown_commits_what_was_processed() {
    // The cluster outlives the runtime, so the daemon's clients are gone
    // before it is (a failing test then fails instead of hanging).
    let mock = support::cluster(&[("metrics", 2), ("alerts", 1)]);
    support::runtime().block_on(async {
        let bootstrap = mock.bootstrap_servers();
        let mut config = support::config(&bootstrap, "stop", "metrics");
        // No periodic commit can happen during the test: only the final one.
        config.kafka.commit_interval_ms = 3_600_000;
        let running = app::start(config).await.expect("start");
        let p = TestProducer::new(&bootstrap);
        for i in 0..30 {
            let payload = support::event_json(
                "m",
                &format!("h{}", i % 3),
                1_767_225_600_000 + i * 1000,
                1.0,
            );
            p.send("metrics", Some((i % 2) as i32), "k", &payload);
        }
        p.flush();
        let m = running.metrics.clone();
        support::poll_until("30 events processed", WAIT, || {
            let m = m.clone();
            async move { m.events_processed_total() == 30 }
        })
        .await;
        assert!(
            support::committed(&bootstrap, "stop", "metrics", 2).is_empty(),
            "nothing committed before shutdown"
        );
        running.shutdown();
        running.wait().await.expect("clean shutdown");
        let c = support::committed(&bootstrap, "stop", "metrics", 2);
        assert_eq!(c.get(&0), Some(&15));
        assert_eq!(c.get(&1), Some(&15));
    });
}

#[test]
fn metrics_endpoint_serves_every_documented_name_and_readiness() {
    // The cluster outlives the runtime, so the daemon's clients are gone
    // before it is (a failing test then fails instead of hanging).
    let mock = support::cluster(&[("metrics", 1), ("alerts", 1)]);
    support::runtime().block_on(async {
        let bootstrap = mock.bootstrap_servers();
        let mut config = support::config(&bootstrap, "scrape", "metrics");
        // The opt-in per-series gauges are documented too.
        config.metrics.per_series.enabled = true;
        // So are the remote-write receiver's, beside Kafka.
        config.sources.remote_write.enabled = true;
        config.sources.remote_write.listen_addr = "127.0.0.1:0".into();
        let running = app::start(config).await.expect("start");
        let base = format!("http://{}", running.metrics_addr);
        let p = TestProducer::new(&bootstrap);
        p.send(
            "metrics",
            Some(0),
            "k",
            &support::event_json("m", "h", 1_767_225_600_000, 1.0),
        );
        p.flush();
        let m = running.metrics.clone();
        support::poll_until("one event", WAIT, || {
            let m = m.clone();
            async move { m.events_processed_total() == 1 }
        })
        .await;
        let names = support::documented_metric_names();
        assert!(names.len() >= 20, "docs/operations.md lists only {names:?}");
        // The consumer-lag gauge appears with the first librdkafka
        // statistics report, so poll until every name is served.
        let url = format!("{base}/metrics");
        let missing = |text: &str| -> Vec<String> {
            names
                .iter()
                .filter(|n| !text.contains(&format!("# TYPE {n} ")))
                .cloned()
                .collect()
        };
        let served = support::poll_some("every documented metric served", WAIT, || {
            let url = url.clone();
            async move {
                let (status, text) = support::get(&url).await;
                (status == 200 && missing(&text).is_empty()).then_some(text)
            }
        })
        .await;
        assert!(missing(&served).is_empty());
        assert_eq!(support::get(&format!("{base}/healthz")).await.0, 200);
        assert_eq!(support::get(&format!("{base}/readyz")).await.0, 200);
        running.shutdown();
        running.wait().await.expect("clean shutdown");
    });
}
