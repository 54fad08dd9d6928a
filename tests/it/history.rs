//! Issue 16 end to end: history from a real Prometheus, counters as rates,
//! NaN as data, and old events that learn without paging.
//!
//! - A real Prometheus (Debian's 2.42) whose TSDB holds three days of a
//!   gauge and a counter, written by `promtool tsdb create-blocks-from
//!   openmetrics` (Prometheus' own backfill). The daemon has `[history]`
//!   pointing at it and the remote-write receiver on. The test posts the
//!   live samples of those two series itself (with the `replica` external
//!   label a remote-writing Prometheus adds, which the history query
//!   drops), for precise control of their values and times. That same
//!   Prometheus scrapes a target exporting NaN summaries and remote-writes
//!   it to the daemon, and scrapes the daemon itself, so the shipped
//!   alerting rules are evaluated on what a healthy remote-write setup
//!   exports.
//! - `anomalyd warm` from that Prometheus, restored by a daemon.
//! - A consumer group reading a topic from the earliest offset
//!   (`MockCluster`): only events younger than `alert.max_event_age_secs`
//!   page.
//! - A stand-in Prometheus API for what a real one will not do on cue:
//!   answer late (live events are held, then processed in order), fail,
//!   hang, and a series whose held events overflow.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anomalyd::app;
use anomalyd::app::config::Config;
use anomalyd::event::SeriesKey;
use anomalyd::source::remote_write::{Sample, TimeSeries};
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::prometheus::Prometheus;
use crate::remote_write::{Hook, body, config, labels, send, with_webhook};
use crate::support::{
    self, LogCounter, TestProducer, free_port, metric_sum, poll_some, poll_until, scrape,
};

const WAIT: Duration = Duration::from_secs(120);
const MINUTE: i64 = 60_000;
const DAY: i64 = 86_400_000;

/// A seeded generator (xorshift64*): the same noise on every run.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Roughly normal, mean 0, deviation 1 (a sum of 12 uniforms).
    fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.uniform()).sum::<f64>() - 6.0
    }
}

/// The room temperature at `t_ms`: a daily cycle.
fn temperature(t_ms: i64) -> f64 {
    21.0 + 2.0 * (2.0 * std::f64::consts::PI * t_ms as f64 / DAY as f64).sin()
}

/// The request rate (per second) at `t_ms`: a daily cycle around 10.
fn request_rate(t_ms: i64) -> f64 {
    10.0 * (1.0 + 0.3 * (2.0 * std::f64::consts::PI * t_ms as f64 / DAY as f64).cos())
}

/// What the backfilled past ends with.
struct Past {
    /// Time of the last sample (ms).
    end_ms: i64,
    /// The counter's last value.
    counter: f64,
}

/// Three days of `room_temperature_celsius{room="lab"}` and
/// `http_requests_total{job="api"}` (two restarts) at one-minute steps,
/// ending at `end_ms`, as OpenMetrics text.
fn openmetrics(end_ms: i64) -> (String, Past) {
    let start = end_ms - 3 * DAY;
    let mut rng = Rng(0x5EED_0016);
    let mut s = String::from(
        "# HELP room_temperature_celsius Temperature.\n# TYPE room_temperature_celsius gauge\n",
    );
    let mut t = start;
    while t <= end_ms {
        let v = temperature(t) + 0.1 * rng.normal();
        s.push_str(&format!(
            "room_temperature_celsius{{room=\"lab\"}} {v:.4} {}\n",
            t / 1000
        ));
        t += MINUTE;
    }
    s.push_str("# HELP http_requests Requests served.\n# TYPE http_requests counter\n");
    let (mut total, mut t) = (12_345.0, start);
    while t <= end_ms {
        if t == start + DAY || t == start + 2 * DAY {
            total = request_rate(t) * 25.0; // a restart 25 s before
        } else {
            total += (request_rate(t) + 0.3 * rng.normal()) * 60.0;
        }
        s.push_str(&format!(
            "http_requests_total{{job=\"api\"}} {total:.3} {}\n",
            t / 1000
        ));
        t += MINUTE;
    }
    s.push_str("# EOF\n");
    // As Prometheus reads it back.
    let counter = format!("{total:.3}").parse().unwrap();
    (s, Past { end_ms, counter })
}

/// `promtool`, as deploy.rs finds it.
fn promtool() -> std::path::PathBuf {
    crate::real_parts::PROMTOOL.path()
}

/// Writes the past into `data` as TSDB blocks with Prometheus' backfill.
fn backfill(dir: &Path, data: &Path, end_ms: i64) -> Past {
    let (text, past) = openmetrics(end_ms);
    let file = dir.join("past.om");
    std::fs::write(&file, text).unwrap();
    let out = std::process::Command::new(promtool())
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&file)
        .arg(data)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool tsdb create-blocks-from openmetrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    past
}

/// GET a Prometheus API path; the JSON answer.
async fn api(prom: &Prometheus, path_and_query: &str) -> Value {
    let (status, text) = support::get(&format!("http://{}{path_and_query}", prom.addr)).await;
    assert_eq!(status, 200, "{path_and_query}: {text}\n{}", prom.log());
    serde_json::from_str(&text).expect("JSON")
}

/// The result of an instant query.
async fn query(prom: &Prometheus, promql: &str) -> Vec<Value> {
    let q: String = form_urlencoded::byte_serialize(promql.as_bytes()).collect();
    let v = api(prom, &format!("/api/v1/query?query={q}")).await;
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// Waits until Prometheus is ready and serves the backfilled past.
async fn wait_for_the_past(prom: &Prometheus) {
    poll_until("Prometheus serves the backfilled past", WAIT, || async {
        let ready = support::client()
            .get(format!("http://{}/-/ready", prom.addr))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        ready
            && !query(prom, "count_over_time(room_temperature_celsius[4d]) > 4000")
                .await
                .is_empty()
    })
    .await;
}

/// One sample of one series, with the `replica` external label.
fn sample(name: &str, pairs: &[(&str, &str)], ts_ms: i64, value: f64) -> TimeSeries {
    let mut all: Vec<(&str, &str)> = pairs.to_vec();
    all.push(("replica", "r1"));
    TimeSeries {
        labels: labels(name, &all),
        samples: vec![Sample {
            value,
            timestamp: ts_ms,
        }],
        histograms: Vec::new(),
    }
}

/// The live page's document of one series, once it has `points` points.
async fn page_of(metrics: SocketAddr, key: &SeriesKey, points: u64) -> Value {
    let url = format!("http://{metrics}/api/v1/series/{:016x}", key.fingerprint());
    poll_some("the series on the live page", WAIT, || {
        let url = url.clone();
        async move {
            let (status, text) = support::get(&url).await;
            let v: Value = serde_json::from_str(&text).ok()?;
            (status == 200 && v["points"].as_u64() >= Some(points)).then_some(v)
        }
    })
    .await
}

/// The NaN target: an empty summary (NaN quantiles, as every client
/// library exports it before the first observation) and an empty
/// histogram.
async fn serve_nan_target() -> SocketAddr {
    async fn metrics() -> &'static str {
        "# HELP rpc_duration_seconds RPC latency.\n\
         # TYPE rpc_duration_seconds summary\n\
         rpc_duration_seconds{quantile=\"0.5\"} NaN\n\
         rpc_duration_seconds{quantile=\"0.99\"} NaN\n\
         rpc_duration_seconds_sum 0\n\
         rpc_duration_seconds_count 0\n\
         # HELP rpc_latency_seconds RPC latency.\n\
         # TYPE rpc_latency_seconds histogram\n\
         rpc_latency_seconds_bucket{le=\"0.1\"} 0\n\
         rpc_latency_seconds_bucket{le=\"+Inf\"} 0\n\
         rpc_latency_seconds_sum 0\n\
         rpc_latency_seconds_count 0\n"
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/metrics", get(metrics));
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Every `expr` of the shipped alerting rules.
fn shipped_rule_exprs() -> Vec<(String, String)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/prometheus/anomalyd-rules.yml"
    );
    let docs = yaml_rust2::YamlLoader::load_from_str(&std::fs::read_to_string(path).unwrap())
        .expect("rules YAML");
    let mut out = Vec::new();
    for g in docs[0]["groups"].as_vec().expect("groups") {
        for r in g["rules"].as_vec().expect("rules") {
            out.push((
                r["alert"].as_str().expect("alert").to_owned(),
                r["expr"].as_str().expect("expr").to_owned(),
            ));
        }
    }
    out
}

/// The done-when test of issue 16 (see the module docs).
#[test]
fn a_backfilled_prometheus_warms_new_series_and_a_healthy_setup_raises_nothing() {
    let logs = LogCounter::default();
    support::run_logging_to(&logs, async {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        // The past ends three minutes ago, on a whole minute.
        let now = chrono::Utc::now().timestamp_millis();
        let past = backfill(tmp.path(), &data, now / MINUTE * MINUTE - 3 * MINUTE);
        let prom_addr = format!("127.0.0.1:{}", free_port());

        let (hook, url) = Hook::start().await;
        let mut c = config();
        // The defaults that matter here: a day and 100 events of warm-up,
        // events older than an hour never alert.
        c.detector = Default::default();
        c.alert = Default::default();
        with_webhook(&mut c, url);
        c.history.enabled = true;
        c.history.prometheus_url = format!("http://{prom_addr}");
        c.history.drop_labels = vec!["replica".into()];
        let running = app::start(c).await.expect("start anomalyd");
        let rw = running.source_addr("remote_write").unwrap();
        let metrics = running.metrics_addr;

        let nan_target = serve_nan_target().await;
        let rules = tmp.path().join("anomalyd-rules.yml");
        std::fs::copy(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/deploy/prometheus/anomalyd-rules.yml"
            ),
            &rules,
        )
        .unwrap();
        let yml = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n  \
             external_labels:\n    replica: r1\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: nan\n    static_configs:\n      - targets: ['{nan_target}']\n  \
             - job_name: anomalyd\n    static_configs:\n      - targets: ['{metrics}']\n\
             remote_write:\n  - url: http://{rw}/api/v1/write\n    queue_config:\n      \
             batch_send_deadline: 100ms\n      min_backoff: 50ms\n      max_backoff: 200ms\n    \
             metadata_config:\n      send_interval: 1s\n    write_relabel_configs:\n      \
             - source_labels: [job]\n        regex: nan\n        action: keep\n",
            rules.display()
        );
        let config_path = tmp.path().join("prometheus.yml");
        std::fs::write(&config_path, yml).unwrap();
        let prom = Prometheus::start(&config_path, &data, prom_addr);
        wait_for_the_past(&prom).await;

        // The gauge: its first live sample is scored at once.
        let t1 = past.end_ms + MINUTE;
        let room = SeriesKey::new(
            "room_temperature_celsius",
            [("replica", "r1"), ("room", "lab")],
        );
        let normal = temperature(t1) + 0.05;
        let req = body(vec![sample(
            "room_temperature_celsius",
            &[("room", "lab")],
            t1,
            normal,
        )]);
        assert_eq!(send(rw, req, "snappy").await.0, 204);
        let page = page_of(metrics, &room, 1).await;
        assert_eq!(page["warming"], false, "scored, not warm-up: {page}");
        assert_eq!(page["rate"], false);
        assert!(page["score"].as_f64().unwrap() < 0.5, "{page}");
        let lower = page["lower"].as_f64().unwrap();
        let upper = page["upper"].as_f64().unwrap();
        assert!(
            lower < normal && normal < upper && upper - lower < 3.0,
            "{page}"
        );
        assert!(hook.firing(&room.to_string()).is_empty());

        // A jump within the first live minute alerts.
        let jump = temperature(t1) + 8.0;
        let req = body(vec![sample(
            "room_temperature_celsius",
            &[("room", "lab")],
            t1 + 30_000,
            jump,
        )]);
        assert_eq!(send(rw, req, "snappy").await.0, 204);
        let alert = poll_some("an alert about the jump", WAIT, || {
            let a = hook.firing(&room.to_string()).into_iter().next();
            async move { a }
        })
        .await;
        assert!(
            (alert["value"].as_f64().unwrap() - jump).abs() < 1e-9,
            "{alert}"
        );
        assert!(alert["labels"].get("anomalyd_value").is_none(), "{alert}");
        assert_eq!(alert["value_kind"], "value", "{alert}");

        // The counter: a rate from its first live sample on; a restart
        // does not alert, five times the rate does, as a rate.
        let api_key = SeriesKey::new("http_requests_total", [("job", "api"), ("replica", "r1")]);
        let mut total = past.counter;
        let post = |t: i64, v: f64| {
            let req = body(vec![sample("http_requests_total", &[("job", "api")], t, v)]);
            async move { assert_eq!(send(rw, req, "snappy").await.0, 204) }
        };
        for (i, step) in ["normal", "normal", "restart", "normal"].iter().enumerate() {
            let t = t1 + i as i64 * MINUTE;
            total = match *step {
                "restart" => request_rate(t) * 20.0,
                _ => total + request_rate(t) * 60.0,
            };
            post(t, total).await;
            if *step == "restart" {
                // A new baseline: nothing to learn, nothing to score.
                continue;
            }
            let page = page_of(
                metrics,
                &api_key,
                if i < 2 { i as u64 + 1 } else { i as u64 },
            )
            .await;
            assert_eq!(page["rate"], true, "{page}");
            assert_eq!(page["warming"], false, "{page}");
            assert!(
                (page["value"].as_f64().unwrap() - request_rate(t)).abs() < 0.5,
                "learned per second: {page}"
            );
        }
        let t = t1 + 4 * MINUTE;
        total += 5.0 * request_rate(t) * 60.0;
        post(t, total).await;
        let alert = poll_some("an alert about the rate", WAIT, || {
            let a = hook.firing(&api_key.to_string()).into_iter().next();
            async move { a }
        })
        .await;
        // A field says it is a rate; the labels stay the series' own
        // (Alertmanager alone gets the `anomalyd_value` label).
        assert_eq!(alert["value_kind"], "rate", "{alert}");
        assert!(alert["labels"].get("anomalyd_value").is_none(), "{alert}");
        assert_eq!(
            alert["ts"],
            anomalyd::alert::lifecycle::rfc3339_ms(t),
            "{alert}"
        );
        let v = alert["value"].as_f64().unwrap();
        assert!((v - 5.0 * request_rate(t)).abs() < 0.5, "{alert}");
        assert_eq!(
            hook.firing(&api_key.to_string()).len(),
            1,
            "the restart did not alert"
        );

        // History, as the metrics tell it.
        let text = scrape(metrics).await;
        let n = |name: &str, labels: &[(&str, &str)]| metric_sum(&text, name, labels);
        assert!(n("anomalyd_history_series_total", &[("outcome", "warmed")]) >= 2.0);
        assert_eq!(
            n("anomalyd_history_series_total", &[("outcome", "failed")]),
            0.0
        );
        assert_eq!(
            n("anomalyd_history_series_total", &[("outcome", "timeout")]),
            0.0
        );
        assert!(n("anomalyd_history_points_learned_total", &[]) >= 2.0 * 4300.0);
        assert_eq!(
            n("anomalyd_history_queries_total", &[("outcome", "error")]),
            0.0
        );
        assert_eq!(
            n(
                "anomalyd_events_skipped_total",
                &[("reason", "counter_reset")]
            ),
            1.0
        );

        // The NaN summary, as Prometheus scrapes and remote-writes it: data,
        // not failures, and never a warning.
        poll_until("NaN quantiles and buckets at anomalyd", WAIT, || async {
            let text = scrape(metrics).await;
            let rw = |reason| {
                metric_sum(
                    &text,
                    "anomalyd_samples_skipped_total",
                    &[("source", "remote_write"), ("reason", reason)],
                )
            };
            rw("non_finite") >= 20.0 && rw("bucket") >= 20.0
        })
        .await;
        // The shipped rules over what Prometheus scraped from the daemon:
        // none holds, and Prometheus has nothing pending or firing.
        poll_until(
            "Prometheus sees the daemon's counters move",
            WAIT,
            || async {
                !query(
                    &prom,
                    "rate(anomalyd_events_processed_total[5m]) > 0 and on(job) \
                 anomalyd_samples_skipped_total{reason=\"non_finite\"} > 0",
                )
                .await
                .is_empty()
            },
        )
        .await;
        for (alert, expr) in shipped_rule_exprs() {
            let got = query(&prom, &expr).await;
            assert!(got.is_empty(), "{alert} holds on a healthy setup: {got:?}");
        }
        let alerts = api(&prom, "/api/v1/alerts").await;
        assert_eq!(alerts["data"]["alerts"], json!([]), "{alerts}");
        let text = scrape(metrics).await;
        assert_eq!(metric_sum(&text, "anomalyd_events_failed_total", &[]), 0.0);
        assert_eq!(
            logs.count(
                tracing::Level::WARN,
                "anomalyd",
                "Skipped remote-write samples that cannot be learned."
            ),
            0
        );
        drop(prom);
        running.shutdown();
        running.wait().await.expect("clean shutdown");
    });
}

/// `anomalyd warm` learns from the same kind of Prometheus and writes a
/// state directory; a daemon restoring it scores the first live sample.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_from_prometheus_writes_the_state_a_daemon_restores() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let now = chrono::Utc::now().timestamp_millis();
    let past = backfill(tmp.path(), &data, now / MINUTE * MINUTE - 3 * MINUTE);
    let yml = tmp.path().join("prometheus.yml");
    std::fs::write(&yml, "global:\n  scrape_interval: 1m\n").unwrap();
    let prom = Prometheus::start(&yml, &data, format!("127.0.0.1:{}", free_port()));
    wait_for_the_past(&prom).await;

    let state = tmp.path().join("state");
    let args = anomalyd::warm::WarmArgs {
        config: None,
        input: None,
        series: None,
        selector: Some(r#"{__name__=~"room_temperature_celsius|http_requests_total"}"#.into()),
        prometheus_url: Some(format!("http://{}", prom.addr)),
        labels: vec!["replica=r1".into()],
        state_dir: Some(state.clone()),
        partition: "remote_write/0".into(),
        position: None,
        end: Some(past.end_ms.to_string()),
        replace: false,
    };
    let summary = tokio::task::spawn_blocking(move || anomalyd::warm::run(&args))
        .await
        .unwrap()
        .expect("warm");
    assert_eq!((summary.series, summary.skipped_series), (2, 0));
    assert!(summary.points >= 2 * 4300, "{summary:?}");

    // The snapshot holds both series, the counter as a rate whose baseline
    // is its last sample.
    let defaults = Config::default();
    let detector =
        anomalyd::detector::Detector::new(&defaults.detector, defaults.alert.threshold).unwrap();
    let store =
        anomalyd::state::dir::DirStore::new(&state, detector.model_hash(), Duration::from_secs(30))
            .unwrap();
    use anomalyd::state::StateStore;
    let loaded = store
        .load(&anomalyd::state::PartitionName {
            stream: "remote_write".into(),
            partition: 0,
        })
        .unwrap()
        .expect("a snapshot");
    let by_key: BTreeMap<String, _> = loaded
        .series
        .iter()
        .map(|s| (s.key.to_string(), s))
        .collect();
    let counter = by_key[r#"http_requests_total{job="api",replica="r1"}"#];
    assert_eq!(counter.value.kind, anomalyd::counter::Kind::Rate);
    assert_eq!(counter.value.rate.last(), Some((past.end_ms, past.counter)));
    let room = by_key[r#"room_temperature_celsius{replica="r1",room="lab"}"#];
    assert!(room.detector.as_ref().unwrap().scored_events() > 4000);

    // A daemon restoring it scores the first live sample at once.
    let mut c = config();
    c.detector = Default::default();
    c.state.store = anomalyd::state::StoreKind::Dir;
    c.state.dir = state;
    let running = app::start(c).await.expect("start anomalyd");
    let rw = running.source_addr("remote_write").unwrap();
    let t1 = past.end_ms + MINUTE;
    let req = body(vec![sample(
        "room_temperature_celsius",
        &[("room", "lab")],
        t1,
        temperature(t1),
    )]);
    assert_eq!(send(rw, req, "snappy").await.0, 204);
    let key = SeriesKey::new(
        "room_temperature_celsius",
        [("replica", "r1"), ("room", "lab")],
    );
    let page = page_of(running.metrics_addr, &key, 1).await;
    assert_eq!(page["warming"], false, "{page}");
    drop(prom);
    running.shutdown();
    running.wait().await.expect("clean shutdown");
}

/// A new consumer group reads a week-old topic from the earliest offset:
/// the retained past teaches the model, and only an anomaly younger than
/// `alert.max_event_age_secs` pages.
#[test]
fn a_group_from_the_earliest_offset_pages_only_on_recent_events() {
    let mock = support::cluster(&[("metrics", 1), ("alerts", 1)]);
    support::runtime().block_on(async {
        let bootstrap = mock.bootstrap_servers();
        let mut c = support::config(&bootstrap, "from-earliest", "metrics");
        c.alert.max_event_age_secs = 3600;
        c.pipeline.workers = 1;
        let running = app::start(c).await.expect("start");
        let p = TestProducer::new(&bootstrap);
        let now = chrono::Utc::now().timestamp_millis() / MINUTE * MINUTE;
        let mut rng = Rng(16);
        // Two days up to now, with a spike 30 hours ago and one 10 minutes
        // ago.
        let times: Vec<i64> = (1..=2880).map(|i| now - 2 * DAY + i * MINUTE).collect();
        let old_spike = now - 30 * 3_600_000;
        let new_spike = now - 10 * MINUTE;
        for &t in &times {
            let spike = if t == old_spike || t == new_spike {
                30.0
            } else {
                0.0
            };
            let v = temperature(t) + 0.1 * rng.normal() + spike;
            p.send(
                "metrics",
                Some(0),
                "lab",
                &support::event_json("room_temperature_celsius", "lab", t, v),
            );
        }
        p.flush();
        let m = running.metrics.clone();
        let total = times.len() as u64;
        support::poll_until("every event processed", WAIT, || {
            let m = m.clone();
            async move { m.events_processed_total() == total }
        })
        .await;
        // Every alert there is, once the last event is processed: the
        // firing and the resolve of the recent spike.
        let alerts = support::read_topic(&bootstrap, "alerts", 2, Duration::from_secs(10));
        let firing: Vec<Value> = alerts
            .iter()
            .map(|(_, b)| serde_json::from_slice::<Value>(b).unwrap())
            .filter(|a| a["status"] == "firing")
            .collect();
        assert_eq!(firing.len(), 1, "{firing:?}");
        assert_eq!(
            firing[0]["ts"],
            anomalyd::alert::lifecycle::rfc3339_ms(new_spike),
            "{firing:?}"
        );
        let text = scrape(running.metrics_addr).await;
        let old = times.iter().filter(|&&t| now - t > 3_600_000).count() as f64;
        // `now` is a whole minute, up to one before the clock, and the test
        // takes seconds: up to three more events may have aged past the
        // limit by the time they were processed.
        let too_old = metric_sum(&text, "anomalyd_events_too_old_total", &[]);
        assert!((old..=old + 3.0).contains(&too_old), "{too_old} of {old}");

        // The counter rules apply to the Kafka formats too (by name):
        // `_total` is a rate, `_bucket` and `_created` are skipped.
        for (i, (name, v)) in [
            ("jobs_done_total", 100.0),
            ("lat_bucket", 3.0),
            ("jobs_done_created", 1.7e9),
            ("jobs_done_total", 160.0),
            ("lat_bucket", 5.0),
            ("jobs_done_total", 280.0),
        ]
        .into_iter()
        .enumerate()
        {
            let t = now - 3 * MINUTE + 60_000 * (i as i64 / 2);
            p.send(
                "metrics",
                Some(0),
                "lab",
                &support::event_json(name, "lab", t, v),
            );
        }
        p.flush();
        let jobs = SeriesKey::new("jobs_done_total", [("host", "lab")]);
        let page = page_of(running.metrics_addr, &jobs, 2).await;
        assert_eq!(page["rate"], true, "{page}");
        // 120 more in the minute between the last two samples.
        assert_eq!(page["value"], 2.0, "per second: {page}");
        let text = scrape(running.metrics_addr).await;
        let kafka = |reason| {
            metric_sum(
                &text,
                "anomalyd_samples_skipped_total",
                &[("source", "kafka"), ("reason", reason)],
            )
        };
        assert_eq!((kafka("bucket"), kafka("created")), (2.0, 1.0));
        assert_eq!(
            metric_sum(
                &text,
                "anomalyd_events_skipped_total",
                &[("reason", "counter_first")]
            ),
            1.0
        );
        running.shutdown();
        running.wait().await.expect("clean shutdown");
    });
}

// ---------------------------------------------------------------------------
// A stand-in Prometheus API: answers from a formula, late, wrong or never.

/// How the stand-in answers, by metric name (see `answer`).
#[derive(Clone, Default)]
struct FakeProm {
    /// Released when set: until then `held_temp` gets no answer.
    gate: Arc<AtomicBool>,
    /// The `Authorization` header of the last request.
    auth: Arc<std::sync::Mutex<Option<String>>>,
}

/// A form value of a request body.
fn field(body: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The points of `metric` on a one-minute grid from `from_s` to `to_s`.
fn grid(metric: &str, from_s: f64, to_s: f64) -> Value {
    let mut values = Vec::new();
    let mut t = (from_s / 60.0).ceil() as i64 * 60;
    while (t as f64) <= to_s {
        // Noise that depends on the time only (the same on every query).
        let v = 50.0 + (t.wrapping_mul(2_654_435_761) % 1000) as f64 / 1000.0 - 0.5;
        values.push(json!([t, format!("{v}")]));
        t += 60;
    }
    json!({"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"__name__": metric}, "values": values}
    ]}})
}

async fn answer(
    State(f): State<FakeProm>,
    path: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: String,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    *f.auth.lock().unwrap() = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let q = field(&body, "query").unwrap_or_default();
    let metric = q.split('"').nth(1).unwrap_or_default().to_owned();
    match metric.as_str() {
        "broken_temp" => {
            return (
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                r#"{"status":"error","errorType":"execution","error":"query processing would load too many samples"}"#,
            )
                .into_response();
        }
        "hung_temp" => {
            tokio::time::sleep(Duration::from_secs(600)).await;
        }
        "held_temp" | "busy_temp" => {
            while !f.gate.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        _ => {}
    }
    let doc = if path.path().ends_with("query_range") {
        let s: f64 = field(&body, "start").unwrap().parse().unwrap();
        let e: f64 = field(&body, "end").unwrap().parse().unwrap();
        grid(&metric, s, e)
    } else {
        // The probe: `sel[Nms]` at `time`.
        let t: f64 = field(&body, "time").unwrap().parse().unwrap();
        grid(&metric, t - 3600.0, t)
    };
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        doc.to_string(),
    )
        .into_response()
}

/// Serves the stand-in API; returns its address.
async fn serve_fake(fake: FakeProm) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/api/v1/query", post(answer))
        .route("/api/v1/query_range", post(answer))
        .with_state(fake);
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A receiver-only daemon whose `[history]` is the stand-in at `prom`,
/// with an hour of warm-up (the stand-in serves a day).
fn fake_history_config(prom: SocketAddr) -> Config {
    let mut c = config();
    c.detector = Default::default();
    c.detector.threshold.warmup_secs = 3600;
    c.history.enabled = true;
    c.history.prometheus_url = format!("http://{prom}");
    c.history.lookback_secs = 86_400;
    c.history.max_held_events = 5;
    c
}

/// Posts one sample of `name` at `now + i` minutes.
async fn post_sample(rw: SocketAddr, name: &str, now: i64, i: i64) {
    let req = body(vec![TimeSeries {
        labels: labels(name, &[]),
        samples: vec![Sample {
            value: 50.0 + i as f64 * 0.01,
            timestamp: now + i * MINUTE,
        }],
        histograms: Vec::new(),
    }]);
    assert_eq!(send(rw, req, "snappy").await.0, 204);
}

/// Held events wait for their history and are processed after it, in
/// order; a failing and an overflowing history each leave their series to
/// warm up live, counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_failed_and_overflowing_histories() {
    let fake = FakeProm::default();
    let prom = serve_fake(fake.clone()).await;
    let running = app::start(fake_history_config(prom)).await.expect("start");
    let rw = running.source_addr("remote_write").unwrap();
    let metrics = running.metrics_addr;
    let now = chrono::Utc::now().timestamp_millis() / MINUTE * MINUTE;
    let count = |text: &str, name: &str, labels: &[(&str, &str)]| metric_sum(text, name, labels);

    // Late: three live events wait, then follow the history in order.
    for i in 0..3 {
        post_sample(rw, "held_temp", now, i).await;
    }
    poll_until("three events held", WAIT, || async {
        let t = scrape(metrics).await;
        count(&t, "anomalyd_history_events_held_total", &[]) == 3.0
            && count(&t, "anomalyd_history_series_loading", &[]) == 1.0
    })
    .await;
    // A failing history does not hold the others up.
    post_sample(rw, "broken_temp", now, 0).await;
    let page = page_of(metrics, &SeriesKey::from_name("broken_temp"), 1).await;
    assert_eq!(page["warming"], true, "warms up live: {page}");
    // Overflow: the sixth held event releases the series.
    for i in 0..6 {
        post_sample(rw, "busy_temp", now, i).await;
    }
    let page = page_of(metrics, &SeriesKey::from_name("busy_temp"), 6).await;
    assert_eq!(page["warming"], true, "{page}");
    let t = scrape(metrics).await;
    assert_eq!(count(&t, "anomalyd_history_events_held_total", &[]), 10.0);
    assert_eq!(count(&t, "anomalyd_history_series_loading", &[]), 1.0);
    // The late history arrives.
    fake.gate.store(true, Ordering::SeqCst);
    let page = page_of(metrics, &SeriesKey::from_name("held_temp"), 3).await;
    let ts: Vec<i64> = page["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["ts_ms"].as_i64().unwrap())
        .collect();
    assert_eq!(ts, [now, now + MINUTE, now + 2 * MINUTE], "in order");
    assert_eq!(
        page["samples"][0]["warming"], false,
        "a day of history: {page}"
    );
    let t = scrape(metrics).await;
    for (outcome, n) in [
        ("warmed", 1.0),
        ("failed", 1.0),
        ("timeout", 0.0),
        ("overflow", 1.0),
    ] {
        assert_eq!(
            count(&t, "anomalyd_history_series_total", &[("outcome", outcome)]),
            n,
            "{outcome}\n{t}"
        );
    }
    assert_eq!(count(&t, "anomalyd_history_series_loading", &[]), 0.0);
    assert_eq!(
        count(
            &t,
            "anomalyd_history_queries_total",
            &[("outcome", "error")]
        ),
        1.0
    );
    // A day back from the last sample before the first event, minute by
    // minute, both ends included.
    assert_eq!(
        count(&t, "anomalyd_history_points_learned_total", &[]),
        1441.0
    );
    running.shutdown();
    running.wait().await.expect("clean shutdown");
}

/// A Prometheus that never answers: the query times out and the series
/// warms up live; its held events are processed, counted as a timeout.
/// Its requests carry the configured basic auth, the password read from
/// a file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_prometheus_times_out_and_the_series_warms_up_live() {
    let fake = FakeProm::default();
    let prom = serve_fake(fake.clone()).await;
    let mut c = fake_history_config(prom);
    c.history.query_timeout_secs = 1;
    let secrets = tempfile::tempdir().unwrap();
    let password = secrets.path().join("password");
    std::fs::write(&password, "s3cret\n").unwrap();
    c.history.auth.username = Some("anomalyd".into());
    c.history.auth.password_file = Some(password);
    let running = app::start(c).await.expect("start");
    let rw = running.source_addr("remote_write").unwrap();
    let metrics = running.metrics_addr;
    let now = chrono::Utc::now().timestamp_millis() / MINUTE * MINUTE;
    for i in 0..2 {
        post_sample(rw, "hung_temp", now, i).await;
    }
    let page = page_of(metrics, &SeriesKey::from_name("hung_temp"), 2).await;
    assert_eq!(page["warming"], true, "warms up live: {page}");
    let t = scrape(metrics).await;
    let count = |name: &str, labels: &[(&str, &str)]| metric_sum(&t, name, labels);
    assert_eq!(
        count("anomalyd_history_series_total", &[("outcome", "timeout")]),
        1.0
    );
    assert_eq!(
        count("anomalyd_history_queries_total", &[("outcome", "timeout")]),
        1.0
    );
    assert_eq!(count("anomalyd_history_events_held_total", &[]), 2.0);
    use base64::Engine as _;
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("anomalyd:s3cret")
    );
    assert_eq!(fake.auth.lock().unwrap().as_deref(), Some(want.as_str()));
    running.shutdown();
    running.wait().await.expect("clean shutdown");
}
