//! The Kafka sink against `rdkafka::mocking::MockCluster` (the real wire
//! protocol on loopback, no broker needed).

use std::time::Duration;

use anomalyd::alert::sink::SinkHandle;
use anomalyd::alert::sink::kafka::{KafkaSink, KafkaSinkConfig, NAME};
use anomalyd::alert::sink::{SinkMetrics, SinkSection};
use anomalyd::alert::{Alert, AlertStatus};
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::mocking::MockCluster;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::time::Instant;

use crate::support::{firing, metrics, resolved};

const WAIT: Duration = Duration::from_secs(30);
const TOPIC: &str = "anomalyd-alerts";

#[tokio::test]
async fn alerts_arrive_keyed_by_fingerprint_as_alert_json() {
    // The cluster must outlive everything that talks to it; it stays on
    // this task's stack (it cannot move into tokio::spawn).
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic(TOPIC, 3, 1).expect("topic");
    let cfg = SinkSection::new(KafkaSinkConfig {
        enabled: true,
        brokers: mock.bootstrap_servers(),
        topic: TOPIC.to_owned(),
        message_timeout_ms: 10_000,
        ..KafkaSinkConfig::default()
    });
    let mut p = anomalyd::config::Problems::new();
    cfg.validate("sinks.kafka", &mut p);
    assert!(p.is_empty(), "{p}");
    let m = metrics();
    let sink = KafkaSink::new(&cfg, "sinks.kafka", &|_| None).expect("producer");
    let h = SinkHandle::spawn(sink, cfg.options(), SinkMetrics::new(&m, NAME));

    let a = firing("c1f6d4cd4f8464c4", "web-1", 0.97);
    let b = firing("00000000000000ff", "web-2", 12.5);
    let a_end = resolved(&a, "2024-05-01T12:05:00Z");
    for x in [&a, &b, &a_end] {
        h.submit(x.clone());
    }
    assert!(h.flush(Instant::now() + WAIT).await, "delivered in time");
    let stats = h.stats();
    assert_eq!((stats.delivered, stats.dropped), (3, 0), "{stats:?}");
    assert_eq!(
        SinkMetrics::new(&m, NAME)
            .delivered(AlertStatus::Firing)
            .get(),
        2
    );
    assert_eq!(
        SinkMetrics::new(&m, NAME)
            .delivered(AlertStatus::Resolved)
            .get(),
        1
    );

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", mock.bootstrap_servers())
        .set("group.id", "it-sinks-kafka")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    // Assign instead of subscribe: no group rebalance to wait for.
    let mut tpl = TopicPartitionList::new();
    for partition in 0..3 {
        tpl.add_partition_offset(TOPIC, partition, Offset::Beginning)
            .expect("offset");
    }
    consumer.assign(&tpl).expect("assign");
    let mut got: Vec<(String, Alert, i32)> = Vec::new();
    let deadline = Instant::now() + WAIT;
    while got.len() < 3 {
        let msg = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .expect("three messages before the deadline")
            .expect("consume");
        let key = String::from_utf8(msg.key().expect("key").to_vec()).unwrap();
        let value: serde_json::Value =
            serde_json::from_slice(msg.payload().expect("payload")).expect("JSON value");
        // The documented JSON is exactly the Alert's serde form.
        let alert: Alert = serde_json::from_value(value.clone()).expect("an Alert");
        assert_eq!(value, serde_json::to_value(&alert).unwrap());
        assert_eq!(value["fingerprint"], key.as_str());
        got.push((key, alert, msg.partition()));
    }
    for x in [&a, &b, &a_end] {
        assert!(
            got.iter().any(|(k, g, _)| k == &x.fingerprint && g == x),
            "{x:?} missing"
        );
    }
    // Same key, same partition, in order: the firing message of `a` comes
    // before its resolution.
    let of_a: Vec<&(String, Alert, i32)> =
        got.iter().filter(|(k, _, _)| k == &a.fingerprint).collect();
    assert_eq!(of_a.len(), 2);
    assert_eq!(of_a[0].2, of_a[1].2);
    assert_eq!(of_a[0].1.status, AlertStatus::Firing);
    assert_eq!(of_a[1].1.status, AlertStatus::Resolved);

    h.shutdown(Instant::now() + WAIT).await;
}
