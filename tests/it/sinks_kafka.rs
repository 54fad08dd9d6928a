//! The Kafka sink against `rdkafka::mocking::MockCluster` (the real wire
//! protocol on loopback, no broker needed): alerts on their topic keyed by
//! fingerprint, incident notifications on theirs keyed by id, each with
//! its `anomalyd-message` header.

use std::time::Duration;

use anomalyd::alert::incident::{Incident, IncidentConfig, Incidents};
use anomalyd::alert::sink::SinkHandle;
use anomalyd::alert::sink::kafka::{KafkaSink, KafkaSinkConfig, NAME};
use anomalyd::alert::sink::{SinkMetrics, SinkSection};
use anomalyd::alert::{AlertStatus, SeriesAlert};
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use rdkafka::mocking::MockCluster;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::time::Instant;

use crate::support::{firing, metrics, resolved};

const WAIT: Duration = Duration::from_secs(30);
const TOPIC: &str = "anomalyd-alerts";
const INCIDENTS: &str = "anomalyd-incidents";

/// The `anomalyd-message` header of `msg`.
fn kind_header<M: Message>(msg: &M) -> String {
    let h = msg.headers().expect("headers");
    let h = h
        .iter()
        .find(|h| h.key == "anomalyd-message")
        .expect("the anomalyd-message header");
    String::from_utf8(h.value.expect("a value").to_vec()).unwrap()
}

#[tokio::test]
async fn alerts_arrive_keyed_by_fingerprint_as_alert_json() {
    // The cluster must outlive everything that talks to it; it stays on
    // this task's stack (it cannot move into tokio::spawn).
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic(TOPIC, 3, 1).expect("topic");
    mock.create_topic(INCIDENTS, 1, 1).expect("incident topic");
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

    // Two alerts of one incident, as the notifier sends them.
    let mut g = Incidents::new(&IncidentConfig::default());
    g.observe(firing("c1f6d4cd4f8464c4", "web-1", 0.97).into());
    g.observe(firing("00000000000000ff", "web-1", 12.5).into());
    let sent = g.flush();
    let incident: Incident = sent[0].as_incident().expect("the incident first").clone();
    let a: SeriesAlert = sent[1].as_alert().unwrap().clone();
    let b: SeriesAlert = sent[2].as_alert().unwrap().clone();
    assert_eq!(a.incident.as_deref(), Some(incident.id.as_str()));
    let a_end = SeriesAlert {
        alert: resolved(&a, "2024-05-01T12:05:00Z"),
        ..a.clone()
    };
    for n in sent {
        h.submit(n);
    }
    h.submit(a_end.clone());
    assert!(h.flush(Instant::now() + WAIT).await, "delivered in time");
    let stats = h.stats();
    assert_eq!((stats.delivered, stats.dropped), (4, 0), "{stats:?}");
    assert_eq!(
        SinkMetrics::new(&m, NAME)
            .delivered(AlertStatus::Firing)
            .get(),
        3,
        "two alerts and the firing incident"
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
    tpl.add_partition_offset(INCIDENTS, 0, Offset::Beginning)
        .expect("offset");
    consumer.assign(&tpl).expect("assign");
    let mut got: Vec<(String, SeriesAlert, i32)> = Vec::new();
    let mut incidents: Vec<(String, Incident)> = Vec::new();
    let deadline = Instant::now() + WAIT;
    while got.len() + incidents.len() < 4 {
        let msg = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .expect("four messages before the deadline")
            .expect("consume");
        let key = String::from_utf8(msg.key().expect("key").to_vec()).unwrap();
        let value: serde_json::Value =
            serde_json::from_slice(msg.payload().expect("payload")).expect("JSON value");
        if msg.topic() == INCIDENTS {
            assert_eq!(kind_header(&msg), "incident");
            let i: Incident = serde_json::from_value(value.clone()).expect("an Incident");
            assert_eq!(value, serde_json::to_value(&i).unwrap());
            assert_eq!(value["id"], key.as_str());
            incidents.push((key, i));
            continue;
        }
        assert_eq!(msg.topic(), TOPIC);
        assert_eq!(kind_header(&msg), "alert");
        // The documented JSON is exactly the alert's serde form: the
        // Alert's fields, `value_kind` and `incident`.
        let alert: SeriesAlert = serde_json::from_value(value.clone()).expect("an alert");
        assert_eq!(value, serde_json::to_value(&alert).unwrap());
        assert_eq!(value["fingerprint"], key.as_str());
        assert_eq!(value["value_kind"], "value");
        assert_eq!(value["incident"], incident.id.as_str());
        got.push((key, alert, msg.partition()));
    }
    // One notification for the incident, listing both, top peak first.
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].1, incident);
    assert_eq!(incidents[0].1.members_total, 2);
    for x in [&a, &b, &a_end] {
        assert!(
            got.iter().any(|(k, g, _)| k == &x.fingerprint && g == x),
            "{x:?} missing"
        );
    }
    // Same key, same partition, in order: the firing message of `a` comes
    // before its resolution.
    let of_a: Vec<&(String, SeriesAlert, i32)> =
        got.iter().filter(|(k, _, _)| k == &a.fingerprint).collect();
    assert_eq!(of_a.len(), 2);
    assert_eq!(of_a[0].2, of_a[1].2);
    assert_eq!(of_a[0].1.status, AlertStatus::Firing);
    assert_eq!(of_a[1].1.status, AlertStatus::Resolved);

    h.shutdown(Instant::now() + WAIT).await;
}
