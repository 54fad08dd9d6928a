//! The Prometheus remote-write receiver end to end, through `app::start`:
//! samples to alerts without Kafka, the status codes Prometheus acts on,
//! backpressure, state across a restart, and Kafka beside it in one daemon.
//! (A real Prometheus sending to it: `prometheus.rs`.)

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anomalyd::app;
use anomalyd::app::config::Config;
use anomalyd::source::remote_write::{Label, STALE_NAN_BITS, Sample, TimeSeries, WriteRequest};
use anomalyd::state::StoreKind;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use prost::Message;

use crate::support::{self, TestProducer, metric_sum, poll_until, scrape};

const WAIT: Duration = Duration::from_secs(60);

/// A daemon with Kafka off and the receiver on ephemeral loopback ports,
/// a short warm-up and no log sink.
pub fn config() -> Config {
    let mut c = Config::default();
    c.kafka.enabled = false;
    c.sources.remote_write.enabled = true;
    c.sources.remote_write.listen_addr = "127.0.0.1:0".into();
    c.metrics.listen_addr = "127.0.0.1:0".into();
    c.sinks.log.enabled = false;
    c.detector.threshold.warmup_events = 30;
    // The test series span minutes, not the default day of warm-up.
    c.detector.threshold.warmup_secs = 0;
    // Some are of 2026-01-01: they must alert.
    c.alert.max_event_age_secs = 0;
    c.pipeline.workers = 2;
    // The test series are of 2026-01-01, whatever today is.
    c.sources.remote_write.max_sample_age_secs = 0;
    c
}

/// Alerts POSTed to a webhook sink, as JSON objects.
#[derive(Clone, Default)]
pub struct Hook(Arc<Mutex<Vec<serde_json::Value>>>);

impl Hook {
    /// Starts a receiver; returns it and the URL to give the sink.
    pub async fn start() -> (Self, String) {
        async fn take(State(h): State<Hook>, body: Bytes) {
            let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
            let alerts = v["alerts"].as_array().expect("alerts").clone();
            h.0.lock().unwrap().extend(alerts);
        }
        let hook = Self::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/hook", post(take))
            .with_state(hook.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (hook, url)
    }

    /// Every alert received so far.
    pub fn all(&self) -> Vec<serde_json::Value> {
        self.0.lock().unwrap().clone()
    }

    /// Firing alerts of the series `selector`.
    pub fn firing(&self, selector: &str) -> Vec<serde_json::Value> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a["status"] == "firing" && a["series"] == selector)
            .cloned()
            .collect()
    }
}

/// Turns the webhook sink on, pointed at `url`, with the per-series
/// alerts these tests look for (not the incident notifications that are
/// its default).
pub fn with_webhook(c: &mut Config, url: String) {
    c.sinks.webhook.enabled = true;
    c.sinks.webhook.url = url;
    c.sinks.webhook.messages = anomalyd::alert::sink::Messages::Alerts;
    c.sinks.webhook.delivery.retry.initial_backoff_ms = 10;
}

pub(crate) fn labels(name: &str, pairs: &[(&str, &str)]) -> Vec<Label> {
    std::iter::once(("__name__", name))
        .chain(pairs.iter().copied())
        .map(|(n, v)| Label {
            name: n.into(),
            value: v.into(),
        })
        .collect()
}

/// One series with `values` at 15 s steps from `t0_ms`.
fn series(name: &str, pairs: &[(&str, &str)], t0_ms: i64, values: &[f64]) -> TimeSeries {
    TimeSeries {
        labels: labels(name, pairs),
        samples: values
            .iter()
            .enumerate()
            .map(|(i, &value)| Sample {
                value,
                timestamp: t0_ms + 15_000 * i as i64,
            })
            .collect(),
        histograms: Vec::new(),
    }
}

/// The snappy-compressed body of a request.
pub(crate) fn body(timeseries: Vec<TimeSeries>) -> Vec<u8> {
    let raw = WriteRequest {
        timeseries,
        ..WriteRequest::default()
    }
    .encode_to_vec();
    snap::raw::Encoder::new().compress_vec(&raw).unwrap()
}

/// POSTs a body as Prometheus does; returns the status and `Retry-After`.
pub(crate) async fn send(addr: SocketAddr, body: Vec<u8>, encoding: &str) -> (u16, Option<String>) {
    let r = support::client()
        .post(format!("http://{addr}/api/v1/write"))
        .header("Content-Encoding", encoding)
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .expect("POST");
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (r.status().as_u16(), retry)
}

/// Flat at 20 with deterministic noise of ±0.05.
fn flat(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            20.0 + ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 0.1
        })
        .collect()
}

const T0: i64 = 1_767_225_600_000;

fn processed(running: &app::Running) -> u64 {
    running.metrics.events_processed_total()
}

async fn wait_processed(running: &app::Running, n: u64) {
    let m = running.metrics.clone();
    poll_until(&format!("{n} events processed"), WAIT, || {
        let m = m.clone();
        async move { m.events_processed_total() >= n }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_become_alerts_without_kafka_and_bad_samples_are_counted() {
    let (hook, url) = Hook::start().await;
    let mut c = config();
    with_webhook(&mut c, url);
    let running = app::start(c).await.expect("start");
    let addr = running
        .source_addr("remote_write")
        .expect("receiver address");
    let values = flat(200, 7);
    // 200 samples in requests of 50, two series per request.
    for chunk in 0..4 {
        let at = chunk * 50;
        let t0 = T0 + 15_000 * at as i64;
        let req = body(vec![
            series("room_temp", &[("room", "a")], t0, &values[at..at + 50]),
            series("room_temp", &[("room", "b")], t0, &values[at..at + 50]),
        ]);
        assert_eq!(send(addr, req, "snappy").await, (204, None));
    }
    wait_processed(&running, 400).await;
    assert!(hook.firing(r#"room_temp{room="a"}"#).is_empty(), "flat");
    // Room a jumps by 100 (2,000 noise widths); room b sends a stale
    // marker, a NaN and a sample of 1960 (before the epoch... of ms: -1).
    let t = T0 + 15_000 * 200;
    let req = body(vec![
        series("room_temp", &[("room", "a")], t, &[120.0]),
        TimeSeries {
            labels: labels("room_temp", &[("room", "b")]),
            samples: vec![
                Sample {
                    value: f64::from_bits(STALE_NAN_BITS),
                    timestamp: t,
                },
                Sample {
                    value: f64::NAN,
                    timestamp: t,
                },
                Sample {
                    value: 1.0,
                    timestamp: -1,
                },
            ],
            histograms: Vec::new(),
        },
        // No metric name.
        TimeSeries {
            labels: vec![Label {
                name: "job".into(),
                value: "x".into(),
            }],
            samples: vec![Sample {
                value: 1.0,
                timestamp: t,
            }],
            histograms: Vec::new(),
        },
    ]);
    assert_eq!(send(addr, req, "snappy").await.0, 204);
    let fired = support::poll_some("an alert for room a", WAIT, || {
        let a = hook.firing(r#"room_temp{room="a"}"#);
        async move { a.into_iter().next() }
    })
    .await;
    assert_eq!(fired["labels"]["__name__"], "room_temp");
    assert_eq!(fired["labels"]["room"], "a");
    assert_eq!(fired["value"], 120.0);
    assert!(hook.firing(r#"room_temp{room="b"}"#).is_empty());

    let text = scrape(running.metrics_addr).await;
    let rw = [("source", "remote_write")];
    let count = |name: &str, labels: &[(&str, &str)]| metric_sum(&text, name, labels);
    assert_eq!(count("anomalyd_messages_received_total", &rw), 5.0);
    assert_eq!(count("anomalyd_events_decoded_total", &rw), 401.0);
    assert_eq!(processed(&running), 401);
    assert_eq!(
        count("anomalyd_remote_write_requests_total", &[("code", "204")]),
        5.0
    );
    assert_eq!(count("anomalyd_remote_write_stale_markers_total", &[]), 1.0);
    for reason in ["bad_timestamp", "missing_name"] {
        let labels = [("source", "remote_write"), ("reason", reason)];
        assert_eq!(
            count("anomalyd_events_failed_total", &labels),
            1.0,
            "{reason}"
        );
    }
    // A NaN is data, not a failure.
    let nan = [("source", "remote_write"), ("reason", "non_finite")];
    assert_eq!(count("anomalyd_samples_skipped_total", &nan), 1.0);
    assert_eq!(count("anomalyd_events_failed_total", &nan), 0.0);
    running.shutdown();
    let summary = running.wait().await.expect("clean shutdown");
    assert_eq!((summary.messages, summary.events), (5, 401));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_answers_prometheus_acts_on_and_are_counted() {
    let mut c = config();
    c.sources.remote_write.max_body_bytes = 4096;
    let running = app::start(c).await.expect("start");
    let addr = running.source_addr("remote_write").unwrap();
    let big = body(vec![series(
        "m",
        &[("pad", &"x".repeat(10_000))],
        T0,
        &[1.0],
    )]);
    let incompressible: Vec<u8> = flat(8000, 11)
        .iter()
        .map(|v| (v.to_bits() >> 8) as u8)
        .collect();
    let not_proto = snap::raw::Encoder::new()
        .compress_vec(&[0xff, 0xff, 0xff])
        .unwrap();
    let cases: [(Vec<u8>, &str, u16); 5] = [
        (b"plain text".to_vec(), "snappy", 400),
        (not_proto, "snappy", 400),
        (big, "snappy", 413),            // small compressed, large decoded
        (incompressible, "snappy", 413), // large as sent
        (body(vec![series("m", &[], T0, &[1.0])]), "gzip", 415),
    ];
    for (b, enc, want) in cases {
        assert_eq!(send(addr, b, enc).await.0, want, "{enc}");
    }
    let (status, _) = support::get(&format!("http://{addr}/api/v1/write")).await;
    assert_eq!(status, 405, "GET is not remote-write");
    let text = scrape(running.metrics_addr).await;
    for (code, n) in [("400", 2.0), ("413", 2.0), ("415", 1.0), ("204", 0.0)] {
        let got = metric_sum(
            &text,
            "anomalyd_remote_write_requests_total",
            &[("code", code)],
        );
        assert_eq!(got, n, "code {code}");
    }
    for (reason, n) in [
        ("invalid_snappy", 1.0),
        ("invalid_protobuf", 1.0),
        ("too_large", 2.0),
    ] {
        let labels = [("source", "remote_write"), ("reason", reason)];
        let got = metric_sum(&text, "anomalyd_events_failed_total", &labels);
        assert_eq!(got, n, "{reason}");
    }
    assert_eq!(processed(&running), 0);
    running.shutdown();
    running.wait().await.expect("clean shutdown");
}

/// With one shard and room for one batch, concurrent requests find the
/// queue full: each is answered 204 (dispatched whole) or 503 with
/// Retry-After (dispatched not at all), and retrying the 503s as
/// Prometheus does processes every sample exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queues_answer_503_and_retries_lose_and_repeat_nothing() {
    let mut c = config();
    c.pipeline.workers = 1;
    c.pipeline.queue_capacity = 1;
    c.sources.remote_write.queue_timeout_ms = 1;
    let running = app::start(c).await.expect("start");
    let addr = running.source_addr("remote_write").unwrap();
    const REQUESTS: usize = 40;
    const PER_REQUEST: usize = 2_000;
    let tasks: Vec<_> = (0..REQUESTS)
        .map(|r| {
            tokio::spawn(async move {
                let id = r.to_string();
                let values = flat(PER_REQUEST / 4, r as u64);
                let mut req: Vec<TimeSeries> = (0..4)
                    .map(|s| {
                        let s = s.to_string();
                        series("load", &[("req", &id), ("s", &s)], T0, &values)
                    })
                    .collect();
                // One stale marker each: counted once, however often the
                // request is refused and retried.
                let stale = f64::from_bits(STALE_NAN_BITS);
                req.push(series("gone", &[("req", &id)], T0, &[stale]));
                let b = body(req);
                let mut refused = 0;
                loop {
                    match send(addr, b.clone(), "snappy").await {
                        (204, _) => return refused,
                        (503, Some(retry)) => {
                            assert_eq!(retry, "1");
                            refused += 1;
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        other => panic!("unexpected answer {other:?}"),
                    }
                }
            })
        })
        .collect();
    let mut refused = 0;
    for t in tasks {
        refused += t.await.unwrap();
    }
    assert!(refused > 0, "no request met a full queue");
    wait_processed(&running, (REQUESTS * PER_REQUEST) as u64).await;
    let text = scrape(running.metrics_addr).await;
    let codes = |code| {
        metric_sum(
            &text,
            "anomalyd_remote_write_requests_total",
            &[("code", code)],
        )
    };
    assert_eq!(codes("503"), refused as f64);
    assert_eq!(codes("204"), REQUESTS as f64);
    assert_eq!(
        metric_sum(&text, "anomalyd_remote_write_stale_markers_total", &[]),
        REQUESTS as f64
    );
    let m = running.metrics.clone();
    running.shutdown();
    let summary = running.wait().await.expect("clean shutdown");
    assert_eq!(summary.events, (REQUESTS * PER_REQUEST) as u64);
    assert_eq!(m.events_processed_total(), (REQUESTS * PER_REQUEST) as u64);
}

/// Learns `series` flat for 200 samples through a daemon with a dir store,
/// stops it cleanly.
async fn learn_and_stop(c: Config, names: &[&str]) {
    let running = app::start(c).await.expect("start");
    let addr = running.source_addr("remote_write").unwrap();
    let values = flat(200, 3);
    let req: Vec<TimeSeries> = names
        .iter()
        .map(|n| series("disk_io", &[("dev", n)], T0, &values))
        .collect();
    assert_eq!(send(addr, body(req), "snappy").await.0, 204);
    wait_processed(&running, 200 * names.len() as u64).await;
    running.shutdown();
    running.wait().await.expect("clean shutdown");
}

fn with_dir_store(c: &mut Config, dir: &Path) {
    c.state.store = StoreKind::Dir;
    c.state.dir = dir.to_path_buf();
    c.state.snapshot_interval_secs = 1;
}

/// A clean shutdown snapshots the receiver's series under
/// `remote_write/0`; the next start restores them before serving, so a
/// jump right after the restart alerts at once: fresh series would still
/// be warming up (the warm-up here is 100 events, more than the 1 sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learned_series_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let (hook, url) = Hook::start().await;
    let mut c = config();
    c.detector.threshold.warmup_events = 100;
    with_dir_store(&mut c, tmp.path());
    with_webhook(&mut c, url);
    learn_and_stop(c.clone(), &["sda", "sdb", "sdc"]).await;
    assert!(tmp.path().join("remote_write/0.snap").is_file());

    let running = app::start(c).await.expect("restart");
    let text = scrape(running.metrics_addr).await;
    assert_eq!(
        metric_sum(&text, "anomalyd_series_restored_total", &[]),
        3.0
    );
    assert_eq!(metric_sum(&text, "anomalyd_series_active", &[]), 3.0);
    let addr = running.source_addr("remote_write").unwrap();
    let t = T0 + 15_000 * 200;
    let req = body(vec![series("disk_io", &[("dev", "sdb")], t, &[500.0])]);
    assert_eq!(send(addr, req, "snappy").await.0, 204);
    support::poll_until("an alert right after the restart", WAIT, || {
        let n = hook.firing(r#"disk_io{dev="sdb"}"#).len();
        async move { n > 0 }
    })
    .await;
    running.shutdown();
    running.wait().await.expect("clean shutdown");
}

/// Kafka and remote-write in one daemon: both feed the shards, metrics
/// tell them apart by `source`, each keeps its own snapshots, and a restart
/// restores both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_and_remote_write_run_side_by_side() {
    let mock = support::cluster(&[("metrics", 2), ("alerts", 1)]);
    let bootstrap = mock.bootstrap_servers();
    let tmp = tempfile::tempdir().unwrap();
    let mut c = support::config(&bootstrap, "both", "metrics");
    c.sources.remote_write.enabled = true;
    c.sources.remote_write.listen_addr = "127.0.0.1:0".into();
    c.sources.remote_write.max_sample_age_secs = 0;
    with_dir_store(&mut c, tmp.path());

    let running = app::start(c.clone()).await.expect("start");
    let p = TestProducer::new(&bootstrap);
    for i in 0..100 {
        let ts = T0 + 15_000 * i;
        p.send(
            "metrics",
            Some((i % 2) as i32),
            "k",
            &support::event_json("kafka_metric", &format!("h{}", i % 2), ts, 1.0),
        );
    }
    p.flush();
    let addr = running.source_addr("remote_write").unwrap();
    let req = body(vec![series("rw_metric", &[], T0, &flat(100, 5))]);
    assert_eq!(send(addr, req, "snappy").await.0, 204);
    wait_processed(&running, 200).await;
    let text = scrape(running.metrics_addr).await;
    let by = |name, source| metric_sum(&text, name, &[("source", source)]);
    assert_eq!(by("anomalyd_messages_received_total", "kafka"), 100.0);
    assert_eq!(by("anomalyd_events_decoded_total", "kafka"), 100.0);
    assert_eq!(by("anomalyd_messages_received_total", "remote_write"), 1.0);
    assert_eq!(by("anomalyd_events_decoded_total", "remote_write"), 100.0);
    assert_eq!(metric_sum(&text, "anomalyd_series_active", &[]), 3.0);
    running.shutdown();
    let summary = running.wait().await.expect("clean shutdown");
    assert_eq!((summary.messages, summary.events), (101, 200));
    for file in ["metrics/0.snap", "metrics/1.snap", "remote_write/0.snap"] {
        assert!(tmp.path().join(file).is_file(), "{file}");
    }
    assert_eq!(
        support::committed(&bootstrap, "both", "metrics", 2),
        [(0, 50), (1, 50)].into()
    );

    let running = app::start(c).await.expect("restart");
    let m = running.metrics.clone();
    let addr = running.metrics_addr;
    poll_until("both sources restored", WAIT, || async move {
        let text = scrape(addr).await;
        metric_sum(&text, "anomalyd_series_restored_total", &[]) == 3.0
    })
    .await;
    assert_eq!(m.events_processed_total(), 0, "nothing re-read");
    running.shutdown();
    running.wait().await.expect("clean shutdown");
}
