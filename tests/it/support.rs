//! Shared helpers for the integration tests: alerts and metrics for the
//! sink tests, a mock Kafka cluster with producing, reading and committed
//! offsets for the daemon tests, polling with deadlines, HTTP.

#![allow(dead_code)]

use anomalyd::alert::{Alert, AlertStatus, Severity};
use anomalyd::app::config::Config;
use anomalyd::source::kafka::OffsetReset;
use anomalyd::telemetry::metrics::{Metrics, MetricsConfig};
use prometheus::Registry;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
        reason: anomalyd::alert::Reason::Forecast,
        peak_score: 0.9991,
        resolution: None,
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
        resolution: Some(anomalyd::alert::Resolution::Returned),
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

/// librdkafka's mock cluster, as [`cluster`] makes it.
pub type Cluster = MockCluster<'static, DefaultProducerContext>;

/// A mock cluster with the given topics (name, partitions).
pub fn cluster(topics: &[(&str, i32)]) -> Cluster {
    let mock = MockCluster::new(1).expect("mock cluster");
    for (t, p) in topics {
        mock.create_topic(t, *p, 1).expect("create topic");
    }
    mock
}

/// A config for the daemon on `bootstrap`: unique group, fast commits and
/// rebalances, metrics on an ephemeral loopback port, no log sink, alerts
/// (and no incident notifications) to the `alerts` topic.
pub fn config(bootstrap: &str, group: &str, topic: &str) -> Config {
    let mut c = Config::default();
    c.kafka.brokers = bootstrap.into();
    c.kafka.group_id = group.into();
    c.kafka.topics = vec![topic.into()];
    c.kafka.auto_offset_reset = OffsetReset::Earliest;
    c.kafka.session_timeout_ms = 6_000;
    c.kafka.commit_interval_ms = 200;
    c.kafka.statistics_interval_ms = 500;
    c.metrics.listen_addr = "127.0.0.1:0".into();
    c.sinks.log.enabled = false;
    c.sinks.kafka.enabled = true;
    c.sinks.kafka.brokers = bootstrap.into();
    c.sinks.kafka.topic = "alerts".into();
    // The per-series alerts, which these tests count against the sink's
    // metrics and the topic (incident notifications on Kafka: see
    // sinks_kafka.rs and the demo).
    c.sinks.kafka.messages = anomalyd::alert::sink::Messages::Alerts;
    c.pipeline.workers = 2;
    // The test streams span hours, not the default day of warm-up.
    c.detector.threshold.warmup_secs = 0;
    // Their events are of 2026-01-01 (and earlier): they must alert.
    c.alert.max_event_age_secs = 0;
    c
}

/// A broker of a mock cluster taken down until this is dropped (also when a
/// test fails mid-outage, so the daemon can leave its group cleanly).
pub struct BrokerOutage<'a> {
    cluster: &'a Cluster,
    broker: i32,
}

impl<'a> BrokerOutage<'a> {
    /// Takes `broker` (ids start at 1) down.
    pub fn start(cluster: &'a Cluster, broker: i32) -> Self {
        cluster.broker_down(broker).expect("broker down");
        Self { cluster, broker }
    }
}

impl Drop for BrokerOutage<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.cluster.broker_up(self.broker) {
            eprintln!("cannot bring broker {} back up: {e}", self.broker);
        }
    }
}

/// A synchronous producer for test input.
pub struct TestProducer(ThreadedProducer<DefaultProducerContext>);

impl TestProducer {
    pub fn new(bootstrap: &str) -> Self {
        Self::with_options(bootstrap, &[])
    }

    /// A producer with extra librdkafka properties on top of the defaults,
    /// e.g. a `message.timeout.ms` that outlasts a broker outage.
    pub fn with_options(bootstrap: &str, options: &[(&str, &str)]) -> Self {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", bootstrap)
            .set("linger.ms", "0")
            .set("message.max.bytes", "10000000");
        for (k, v) in options {
            c.set(*k, *v);
        }
        Self(c.create().expect("producer"))
    }

    /// Sends one message to an explicit partition (or by key hash when
    /// `partition` is None).
    pub fn send(&self, topic: &str, partition: Option<i32>, key: &str, payload: &[u8]) {
        let mut rec = BaseRecord::to(topic).key(key).payload(payload);
        if let Some(p) = partition {
            rec = rec.partition(p);
        }
        self.0.send(rec).map_err(|(e, _)| e).expect("send");
    }

    /// Sends a message without a payload (a tombstone).
    pub fn send_empty(&self, topic: &str, partition: i32) {
        let rec: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic).key("k").partition(partition);
        self.0.send(rec).map_err(|(e, _)| e).expect("send");
    }

    pub fn flush(&self) {
        self.flush_within(Duration::from_secs(10));
    }

    /// Waits until every queued message is delivered; panics after
    /// `timeout` (e.g. longer than an injected broker outage).
    pub fn flush_within(&self, timeout: Duration) {
        self.0.flush(timeout).expect("flush");
    }
}

/// One native-format JSON event.
pub fn event_json(series: &str, host: &str, ts_ms: i64, value: f64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "series": series, "labels": {"host": host}, "ts": ts_ms, "value": value
    }))
    .unwrap()
}

/// Reads `topic` (all partitions) from the beginning until `want` messages
/// arrived or `deadline` passed; returns (key, payload) pairs.
pub fn read_topic(
    bootstrap: &str,
    topic: &str,
    want: usize,
    deadline: Duration,
) -> Vec<(String, Vec<u8>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("reader-{topic}-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let end = Instant::now() + deadline;
    let mut out = Vec::new();
    while out.len() < want && Instant::now() < end {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let key = m
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default();
            out.push((key, m.payload().unwrap_or_default().to_vec()));
        }
    }
    out
}

/// The group's committed offsets for `topic`, by partition (absent when
/// nothing was committed).
pub fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let c = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    c.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// The end offsets (high watermarks) of partitions `0..partitions` of
/// `topic`: where a consumer that has read everything commits.
pub fn end_offsets(bootstrap: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set(
            "group.id",
            format!("watermarks-{topic}-{}", std::process::id()),
        )
        .create()
        .expect("consumer");
    (0..partitions)
        .map(|p| {
            let (_, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks");
            (p, high)
        })
        .collect()
}

/// The text exposition served on `/metrics` at `addr`.
pub async fn scrape(addr: std::net::SocketAddr) -> String {
    let (status, text) = get(&format!("http://{addr}/metrics")).await;
    assert_eq!(status, 200, "GET /metrics");
    text
}

/// The sum of every sample of the metric family `name` whose labels include
/// all of `labels` (0 when none does): e.g. every drop reason of one sink.
pub fn metric_sum(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (selector, value) = l.rsplit_once(' ')?;
            let (n, rest) = match selector.find('{') {
                Some(i) => (&selector[..i], &selector[i..]),
                None => (selector, ""),
            };
            let has = |k: &str, v: &str| {
                let pair = format!("{k}=\"{v}\"");
                rest.contains(&format!("{{{pair}")) || rest.contains(&format!(",{pair}"))
            };
            let wanted = n == name && labels.iter().all(|(k, v)| has(k, v));
            wanted.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// The value of a metric line `name{labels} value` in an exposition (the
/// first line starting with `selector`).
pub fn metric_value(exposition: &str, selector: &str) -> Option<f64> {
    exposition
        .lines()
        .find(|l| l.starts_with(selector) && l[selector.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// An Alertmanager-compatible receiver: records the alerts POSTed to
/// `/api/v2/alerts` (as Alertmanager v2 JSON objects).
#[derive(Clone, Default)]
pub struct AmReceiver {
    posts: Arc<Mutex<Vec<serde_json::Value>>>,
    url: String,
}

impl AmReceiver {
    /// Listens on an ephemeral loopback port.
    pub async fn start() -> Self {
        use axum::routing::post;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let r = AmReceiver {
            posts: Arc::default(),
            url: format!("http://{addr}"),
        };
        let posts = Arc::clone(&r.posts);
        let app = axum::Router::new().route(
            "/api/v2/alerts",
            post(move |body: axum::body::Bytes| {
                let posts = Arc::clone(&posts);
                async move {
                    let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
                    posts
                        .lock()
                        .unwrap()
                        .extend(v.as_array().expect("array").iter().cloned());
                    axum::http::StatusCode::OK
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        r
    }

    /// The base URL to configure as `sinks.alertmanager.url`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Every alert object received so far.
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        self.posts.lock().unwrap().clone()
    }
}

/// The metric names the metrics tables document (backticked
/// `anomalyd_*` names in the section headed "Metrics" of
/// docs/operations.md).
pub fn documented_metric_names() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
            .expect("docs/operations.md");
    let start = readme
        .find("\n## Metrics")
        .expect("a \"## Metrics\" section in docs/operations.md");
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut names: Vec<String> = section
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| {
            w.starts_with("anomalyd_") && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// A log line's level, target and message.
pub type LogKey = (tracing::Level, String, String);

/// Counts log events at INFO and above by (level, target, message), for
/// tests that check a fault does not flood the log.
#[derive(Clone, Default)]
pub struct LogCounter(Arc<Mutex<BTreeMap<LogKey, usize>>>);

impl LogCounter {
    /// How many events at `level` from a target starting with `target`
    /// carried `message`.
    pub fn count(&self, level: tracing::Level, target: &str, message: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|((l, t, m), _)| *l == level && t.starts_with(target) && m == message)
            .map(|(_, n)| n)
            .sum()
    }

    /// Every (level, target, message) seen, with its count.
    pub fn all(&self) -> BTreeMap<LogKey, usize> {
        self.0.lock().unwrap().clone()
    }

    /// A subscriber that counts into `self`.
    fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + 'static {
        use tracing_subscriber::layer::SubscriberExt;
        tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::INFO)
            .with(self.clone())
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LogCounter {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "message" {
                    value.clone_into(&mut self.0);
                }
            }
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        let meta = event.metadata();
        let key = (*meta.level(), meta.target().to_owned(), message.0);
        *self.0.lock().unwrap().entry(key).or_default() += 1;
    }
}

/// Runs `test` on a multi-threaded runtime (2 workers, like the daemon
/// tests) whose every thread, and the calling one, logs into `logs`. The
/// subscriber is per thread, so tests running in parallel do not mix; lines
/// from threads outside the runtime (the pipeline's shard threads,
/// librdkafka's) are not seen.
pub fn run_logging_to<F: Future>(logs: &LogCounter, test: F) -> F::Output {
    let worker_logs = logs.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            // Runtime threads live until the runtime is dropped; the guard
            // must live as long as the thread.
            std::mem::forget(tracing::subscriber::set_default(worker_logs.subscriber()));
        })
        .build()
        .expect("runtime");
    let _guard = tracing::subscriber::set_default(logs.subscriber());
    runtime.block_on(test)
}

/// A 2-worker multi-threaded runtime for a test whose mock cluster must
/// outlive it (create the cluster first, then `runtime().block_on(...)`).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
