//! The daemon end to end against tansu, a Kafka-compatible broker that
//! librdkafka's authors did not write (see [`crate::tansu_broker`]): alerts
//! to a topic and a commit on SIGTERM, the consumer lag against a broker
//! whose watermarks cannot be trusted, kill -9 and a restart on the dir
//! store, two instances handing partitions over through the changelog, and
//! the broker's own limits that anomalyd works around.
//!
//! Each test starts its own broker (memory storage, free loopback port).
//! The kill -9 and hand-over scenarios are the very ones the mock-cluster
//! tests in `state.rs` run.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use anomalyd::app;
use anomalyd::state::changelog::ChangelogStore;
use anomalyd::state::{PartitionName, PartitionSnapshot, StateStore, StoreKind};
use rdkafka::ClientConfig;

use crate::state::{
    self, Daemon, Oracle, Stream, WAIT, alerts_in, assert_matches_reference, metric, state_config,
    store_hash,
};
use crate::support::{self, TestProducer};
use crate::tansu_broker::Tansu;

/// A broker with the input topic `metrics`, the alert topic `alerts` and,
/// when `changelog` is set, a compacted `state` topic.
fn broker(metrics_partitions: i32, changelog: bool) -> Tansu {
    let broker = Tansu::start();
    broker.create_topic("metrics", metrics_partitions, &[]);
    broker.create_topic("alerts", 1, &[]);
    if changelog {
        broker.create_topic(
            "state",
            metrics_partitions,
            &[("cleanup.policy", "compact")],
        );
    }
    broker
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_events_alert_as_an_uninterrupted_run_and_sigterm_commits_them() {
    let broker = broker(4, false);
    let bootstrap = broker.bootstrap();
    let stream = Stream {
        series: 20,
        partitions: 4,
        spikes: vec![300, 600, 900],
    };
    const N: usize = 1_000;
    let total = stream.series * N;
    let tmp = tempfile::tempdir().unwrap();
    let mut config = state_config(bootstrap, "tansu-run", StoreKind::None, tmp.path());
    // No periodic commit: what is committed at the end, SIGTERM committed.
    config.kafka.commit_interval_ms = 3_600_000;
    let mut oracle = Oracle::new(&config, &stream);
    oracle.run(&stream, 0, N);

    let mut daemon = Daemon::spawn(config, tmp.path(), "run");
    stream.produce(&TestProducer::new(bootstrap), "metrics", 0, N);
    daemon
        .wait_for("every event processed", |t| {
            metric(t, "anomalyd_events_processed_total") >= total as f64
        })
        .await;

    // Every alert of an uninterrupted in-process run, with the same
    // numbers, and nothing else.
    let want = oracle.alerts.len();
    assert!(want >= 2 * 3 * stream.series, "the stream alerts: {want}");
    let alerts = support::poll_some("every alert on the alert topic", WAIT, || async {
        let got = alerts_in(bootstrap, "alerts");
        (got.len() >= want).then_some(got)
    })
    .await;
    for (_, a) in &alerts {
        assert_matches_reference(a, &oracle, "on tansu");
    }
    let key = |a: &anomalyd::alert::Alert| (a.fingerprint.clone(), a.ts.clone(), a.status);
    let got: HashSet<_> = alerts.iter().map(|(_, a)| key(a)).collect();
    let reference: HashSet<_> = oracle.alerts.iter().map(|(_, a)| key(a)).collect();
    assert_eq!(alerts.len(), want, "no alert twice");
    assert_eq!(got, reference);

    assert!(
        support::committed(bootstrap, "tansu-run", "metrics", 4).is_empty(),
        "nothing committed before SIGTERM"
    );
    let log = daemon.stop().await;
    let per_partition = (total / 4) as i64;
    assert_eq!(
        support::committed(bootstrap, "tansu-run", "metrics", 4),
        (0..4)
            .map(|p| (p, per_partition))
            .collect::<BTreeMap<_, _>>(),
        "SIGTERM commits every processed event; log:\n{log}"
    );
}

/// Every `anomalyd_kafka_consumer_lag` sample in an exposition.
fn lag_samples(exposition: &str) -> Vec<(String, f64)> {
    exposition
        .lines()
        .filter(|l| l.starts_with("anomalyd_kafka_consumer_lag{"))
        .filter_map(|l| {
            let (selector, value) = l.rsplit_once(' ')?;
            Some((selector.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// tansu's watermarks cannot be trusted (ListOffsets reports the first
/// offset of the last batch + 1; see the test of its limits below): the lag
/// gauge must never go negative nor stay stale, and consuming must not
/// stall, while batches of many messages go in and are committed.
#[test]
fn consumer_lag_is_never_negative_and_consuming_never_stalls() {
    let broker = broker(4, false);
    let bootstrap = broker.bootstrap().to_owned();
    support::runtime().block_on(async {
        let mut config = support::config(&bootstrap, "tansu-lag", "metrics");
        config.kafka.session_timeout_ms = 3_000;
        config.kafka.statistics_interval_ms = 100;
        let running = app::start(config).await.expect("start");
        // Lingering batches many messages into each produce request.
        let producer = TestProducer::with_options(&bootstrap, &[("linger.ms", "20")]);
        const ROUNDS: i64 = 6;
        const PER_ROUND: i64 = 1_000;
        let mut samples = Vec::new();
        for round in 0..ROUNDS {
            for i in round * PER_ROUND..(round + 1) * PER_ROUND {
                let host = format!("h{}", i % 8);
                let payload =
                    support::event_json("m", &host, 1_767_225_600_000 + i * 1_000, (i % 13) as f64);
                producer.send("metrics", Some((i % 4) as i32), &host, &payload);
            }
            producer.flush();
            for _ in 0..20 {
                samples.extend(lag_samples(&support::scrape(running.metrics_addr).await));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let total = (ROUNDS * PER_ROUND) as u64;
        let m = running.metrics.clone();
        support::poll_until("every event processed", WAIT, || {
            let done = m.events_processed_total() == total;
            async move { done }
        })
        .await;
        // Once everything is committed, every partition's gauge says 0.
        let addr = running.metrics_addr;
        let last = support::poll_some("a lag of 0 on every partition", WAIT, || async move {
            let now = lag_samples(&support::scrape(addr).await);
            (now.len() == 4 && now.iter().all(|(_, v)| *v == 0.0)).then_some(now)
        })
        .await;
        samples.extend(last);
        running.shutdown();
        running.wait().await.expect("clean shutdown");
        assert!(!samples.is_empty());
        let negative: Vec<_> = samples.iter().filter(|(_, v)| *v < 0.0).collect();
        assert!(negative.is_empty(), "negative lag: {negative:?}");
        let per_partition = ROUNDS * PER_ROUND / 4;
        assert_eq!(
            support::committed(&bootstrap, "tansu-lag", "metrics", 4),
            (0..4)
                .map(|p| (p, per_partition))
                .collect::<BTreeMap<_, _>>()
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_then_restart_on_the_dir_store_loses_no_alert() {
    let broker = broker(3, false);
    state::kill_9_mid_stream_then_restart(broker.bootstrap()).await;
}

/// The broker outlives the runtime: a failing test then fails instead of
/// hanging in the in-process daemons' consumer close.
#[test]
fn two_instances_split_partitions_and_hand_over_through_the_changelog() {
    let broker = broker(4, true);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
        .block_on(state::two_instances_hand_over_through_the_changelog(
            broker.bootstrap(),
        ));
}

/// One save lands in one produce batch, which tansu's ListOffsets reports
/// as one record long: a load that stopped at that watermark would miss the
/// marker and relearn every series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changelog_save_in_one_batch_is_restored_whole() {
    let broker = Tansu::start();
    broker.create_topic("state", 1, &[("cleanup.policy", "compact")]);
    let stream = Stream {
        series: 2,
        partitions: 1,
        spikes: vec![],
    };
    let config = state_config(
        broker.bootstrap(),
        "unused",
        StoreKind::Changelog,
        Path::new("unused"),
    );
    let mut oracle = Oracle::new(&config, &stream);
    oracle.run(&stream, 0, 120);
    let records = oracle.records(&stream, 0);
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", broker.bootstrap());
    let hash = store_hash(&config);
    let loaded = tokio::task::spawn_blocking(move || {
        let store = ChangelogStore::new(&client, "state", hash, Duration::from_secs(1)).unwrap();
        let name = PartitionName {
            stream: "metrics".into(),
            partition: 0,
        };
        store
            .save(&[PartitionSnapshot {
                name: name.clone(),
                position: 240,
                records,
            }])
            .unwrap();
        store.load(&name).unwrap()
    })
    .await
    .unwrap()
    .expect("the save is found");
    assert_eq!(loaded.position, 240);
    assert_eq!(loaded.series.len(), 2);
    for s in &oracle.series {
        let got = loaded
            .series
            .iter()
            .find(|l| l.key == s.key)
            .unwrap_or_else(|| panic!("{:?} not restored", s.key));
        assert_eq!(got.detector.as_ref(), Some(&s.state));
    }
}

/// Documents tansu 0.6's departures from Kafka that anomalyd and these
/// tests work around (docs/operations.md, "Brokers: tansu"). If this
/// fails, tansu changed: update that section and this test.
///
/// - ListOffsets reports as high watermark the first offset of the last
///   produce batch + 1, not the end of the partition: consumer-lag figures
///   and anything that reads "up to the high watermark" fall short. The
///   daemon's lag gauge and changelog load, and these tests, read to the
///   end a fetch finds instead.
/// - A compacted topic is never compacted: every save of the changelog
///   store stays in the topic (a restore reads them all and keeps the
///   newest per series, so it stays correct, but the topic grows).
#[test]
fn documents_broker_limits_a_short_high_watermark_and_no_compaction() {
    let broker = Tansu::start();
    let bootstrap = broker.bootstrap();
    broker.create_topic("batches", 1, &[]);
    let singles = TestProducer::new(bootstrap);
    for i in 0..10 {
        singles.send("batches", Some(0), "k", format!("single {i}").as_bytes());
        singles.flush();
    }
    let batched = TestProducer::with_options(bootstrap, &[("linger.ms", "100")]);
    for i in 0..100 {
        batched.send("batches", Some(0), "k", format!("batched {i}").as_bytes());
    }
    batched.flush();
    assert_eq!(
        support::read_topic(bootstrap, "batches", 111, Duration::from_secs(10)).len(),
        110,
        "every message is there"
    );
    assert_eq!(
        support::end_offsets(bootstrap, "batches", 1)[&0],
        11,
        "ListOffsets: the last batch starts at offset 10"
    );

    // Compaction as eager as Kafka allows: segments roll every 100 ms and
    // any dirty ratio qualifies; Kafka's cleaner looks every 15 s by
    // default.
    broker.create_topic(
        "compacted",
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.ms", "100"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ],
    );
    for version in 0..20 {
        for key in 0..5 {
            singles.send(
                "compacted",
                Some(0),
                &format!("key-{key}"),
                format!("{version}").as_bytes(),
            );
        }
        singles.flush();
        std::thread::sleep(Duration::from_millis(150));
    }
    std::thread::sleep(Duration::from_secs(16));
    assert_eq!(
        support::read_topic(bootstrap, "compacted", 101, Duration::from_secs(10)).len(),
        100,
        "every version of every key is still there"
    );
}
