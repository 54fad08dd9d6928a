//! A real Prometheus (Debian's 2.42) sending to anomalyd over remote-write,
//! as a user would set it up: prometheus.yml scrapes a target and has a
//! `remote_write` to the daemon, which runs without Kafka. The target's
//! value is the test's to set; after it jumps, an alert arrives at a
//! webhook, and Prometheus reports that no sample failed to send. A second
//! test has Prometheus write and scrape over TLS with basic auth, both
//! ports configured by one `web_config_file`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anomalyd::app;
use axum::Router;
use axum::extract::State;
use axum::routing::get;

use crate::remote_write::{Hook, config, with_webhook};
use crate::support::{self, free_port, metric_sum, poll_some, poll_until};

const WAIT: Duration = Duration::from_secs(90);

/// A Prometheus process, killed when dropped (also when the test fails).
pub(crate) struct Prometheus {
    child: Child,
    /// `host:port` of its API and UI.
    pub(crate) addr: String,
    log: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus with `config` (a prometheus.yml) on `addr`, its
    /// TSDB in `data` (which may already hold blocks) and its log beside
    /// the config.
    pub(crate) fn start(config: &std::path::Path, data: &std::path::Path, addr: String) -> Self {
        let log = config.with_extension("log");
        let child = Command::new(crate::real_parts::PROMETHEUS.path())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start prometheus");
        Self { child, addr, log }
    }

    /// What it logged so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The scrape target: one gauge, flat at the value the test sets plus a
/// small deterministic wobble per scrape.
#[derive(Clone, Default)]
struct Target {
    base: Arc<AtomicU64>,
    scrapes: Arc<AtomicU64>,
}

impl Target {
    fn set(&self, v: f64) {
        self.base.store(v.to_bits(), Ordering::SeqCst);
    }

    async fn serve(self) -> std::net::SocketAddr {
        async fn metrics(State(t): State<Target>) -> String {
            let n = t.scrapes.fetch_add(1, Ordering::SeqCst);
            let wobble = [0.0, 0.03, -0.02, 0.01, -0.03, 0.02][(n % 6) as usize];
            let v = f64::from_bits(t.base.load(Ordering::SeqCst)) + wobble;
            format!(
                "# HELP room_temperature_celsius Temperature.\n\
                 # TYPE room_temperature_celsius gauge\n\
                 room_temperature_celsius{{room=\"lab\"}} {v}\n"
            )
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/metrics", get(metrics))
            .with_state(self);
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_remote_writes_and_a_jump_alerts() {
    let bin = crate::real_parts::PROMETHEUS.path();
    let (hook, url) = Hook::start().await;
    let mut c = config();
    c.detector.threshold.warmup_events = 20;
    with_webhook(&mut c, url);
    let running = app::start(c).await.expect("start anomalyd");
    let rw_addr = running.source_addr("remote_write").unwrap();

    let target = Target::default();
    target.set(20.0);
    let target_addr = target.clone().serve().await;

    // The three lines a user adds are the `remote_write` entry; the queue
    // settings only make a test of seconds send at once.
    let tmp = tempfile::tempdir().unwrap();
    let yml = format!(
        "global:\n  scrape_interval: 100ms\n  scrape_timeout: 90ms\n\
         scrape_configs:\n  - job_name: lab\n    static_configs:\n      - targets: ['{target_addr}']\n\
         remote_write:\n  - url: http://{rw_addr}/api/v1/write\n    queue_config:\n      \
         batch_send_deadline: 100ms\n      min_backoff: 50ms\n      max_backoff: 200ms\n"
    );
    let config_path = tmp.path().join("prometheus.yml");
    std::fs::write(&config_path, yml).unwrap();
    let prom_addr = format!("127.0.0.1:{}", free_port());
    let log = tmp.path().join("prometheus.log");
    let child = Command::new(bin)
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            tmp.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={prom_addr}"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start prometheus");
    let prom = Prometheus {
        child,
        addr: prom_addr,
        log,
    };

    // Warm-up: the series has reached anomalyd well past its warm-up (and
    // past the first hundred events, where the band is still wide).
    let metrics_addr = running.metrics_addr;
    let decoded = || async move {
        let text = support::scrape(metrics_addr).await;
        metric_sum(
            &text,
            "anomalyd_events_decoded_total",
            &[("source", "remote_write")],
        )
    };
    let scrapes = Arc::clone(&target.scrapes);
    poll_until("samples of 250 scrapes at anomalyd", WAIT, || async move {
        // Each scrape sends the gauge plus Prometheus' 5 scrape series.
        decoded().await >= 250.0 * 6.0
    })
    .await;
    assert!(scrapes.load(Ordering::SeqCst) >= 250);
    let lab = |a: &serde_json::Value| {
        a["labels"]["__name__"] == "room_temperature_celsius" && a["labels"]["room"] == "lab"
    };
    let early: Vec<_> = hook.all().into_iter().filter(lab).collect();
    assert!(early.is_empty(), "no alert while flat: {early:?}");

    // The jump: many times the wobble.
    target.set(45.0);
    let alert = poll_some("an alert about the jump", WAIT, || {
        let a = hook
            .all()
            .into_iter()
            .find(|a| lab(a) && a["status"] == "firing");
        async move { a }
    })
    .await;
    let value = alert["value"].as_f64().unwrap();
    assert!((44.9..45.1).contains(&value), "{alert}");
    assert_eq!(alert["labels"]["job"], "lab", "{alert}");

    // Prometheus' side: it sent samples and none failed.
    let (status, text) = support::get(&format!("http://{}/metrics", prom.addr)).await;
    assert_eq!(status, 200);
    assert!(
        text.contains("prometheus_remote_storage_samples_failed_total{"),
        "{text}\n{}",
        prom.log()
    );
    assert_eq!(
        metric_sum(&text, "prometheus_remote_storage_samples_failed_total", &[]),
        0.0,
        "{}",
        prom.log()
    );
    assert!(metric_sum(&text, "prometheus_remote_storage_samples_total", &[]) > 0.0);
    let anomalyd_text = support::scrape(metrics_addr).await;
    assert_eq!(
        metric_sum(
            &anomalyd_text,
            "anomalyd_remote_write_requests_total",
            &[("code", "400")]
        ),
        0.0
    );
    drop(prom);
    running.shutdown();
    running.wait().await.expect("clean shutdown");
}

/// Starts Prometheus on `yml` (in `dir`), logging to a file there.
fn start_prometheus(dir: &std::path::Path, yml: &str) -> Prometheus {
    let config_path = dir.join("prometheus.yml");
    std::fs::write(&config_path, yml).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let log = dir.join("prometheus.log");
    let child = Command::new(crate::real_parts::PROMETHEUS.path())
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start prometheus");
    Prometheus { child, addr, log }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_writes_and_scrapes_over_tls_with_basic_auth() {
    let tmp = tempfile::tempdir().unwrap();
    let web = crate::front_door::web_config(tmp.path(), "prometheus", "correct horse", "unused");
    let mut c = config();
    c.sources.remote_write.web_config_file = Some(web.clone());
    c.metrics.web_config_file = Some(web);
    let running = app::start(c).await.expect("start anomalyd");
    let rw = running.source_addr("remote_write").unwrap();
    let metrics_addr = running.metrics_addr;
    let target = Target::default();
    target.set(20.0);
    let target_addr = target.clone().serve().await;
    let ca = crate::front_door::fixture("ca.crt");
    let ca = ca.display();
    let lines = [
        "global:".to_owned(),
        "  scrape_interval: 100ms".to_owned(),
        "  scrape_timeout: 90ms".to_owned(),
        "scrape_configs:".to_owned(),
        "  - job_name: lab".to_owned(),
        format!("    static_configs: [{{targets: ['{target_addr}']}}]"),
        "  - job_name: anomalyd".to_owned(),
        "    scheme: https".to_owned(),
        "    basic_auth: {username: prometheus, password: correct horse}".to_owned(),
        format!("    tls_config: {{ca_file: '{ca}'}}"),
        format!("    static_configs: [{{targets: ['{metrics_addr}']}}]"),
        "remote_write:".to_owned(),
        format!("  - url: https://{rw}/api/v1/write"),
        "    basic_auth: {username: prometheus, password: correct horse}".to_owned(),
        format!("    tls_config: {{ca_file: '{ca}'}}"),
        "    queue_config: {batch_send_deadline: 100ms, min_backoff: 50ms, max_backoff: 200ms}"
            .to_owned(),
    ];
    let yml = lines.join("\n") + "\n";
    let prom = start_prometheus(tmp.path(), &yml);
    let client = crate::front_door::tls_client();
    let scrape = || {
        let client = client.clone();
        async move {
            client
                .get(format!("https://{metrics_addr}/metrics"))
                .basic_auth("prometheus", Some("correct horse"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    // Samples arrive over TLS (the lab target and anomalyd's own metrics,
    // which Prometheus scrapes over TLS with the same password).
    poll_until("remote-written samples of both jobs", WAIT, || async {
        let text = scrape().await;
        metric_sum(
            &text,
            "anomalyd_events_decoded_total",
            &[("source", "remote_write")],
        ) >= 500.0
    })
    .await;
    let up = poll_some("Prometheus scraping anomalyd over TLS", WAIT, || async {
        let (status, body) = support::get(&format!(
            "http://{}/api/v1/query?query=up%7Bjob%3D%22anomalyd%22%7D",
            prom.addr
        ))
        .await;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let value = v["data"]["result"][0]["value"][1].as_str()?.to_owned();
        (status == 200 && value == "1").then_some(value)
    })
    .await;
    assert_eq!(up, "1", "{}", prom.log());
    let (status, text) = support::get(&format!("http://{}/metrics", prom.addr)).await;
    assert_eq!(status, 200);
    assert_eq!(
        metric_sum(&text, "prometheus_remote_storage_samples_failed_total", &[]),
        0.0,
        "{}",
        prom.log()
    );
    assert!(metric_sum(&text, "prometheus_remote_storage_samples_total", &[]) > 0.0);
    let ours = scrape().await;
    for server in ["metrics", "remote_write"] {
        assert_eq!(
            metric_sum(
                &ours,
                "anomalyd_http_auth_failures_total",
                &[("server", server)]
            ),
            0.0,
            "{server}"
        );
    }
    // anomalyd's own series came through Prometheus: scraped over TLS.
    let list = scrape().await;
    assert!(
        metric_sum(
            &list,
            "anomalyd_http_connections_accepted_total",
            &[("server", "remote_write")]
        ) >= 1.0
    );
    drop(prom);
    running.shutdown();
    running.wait().await.expect("clean shutdown");
}
