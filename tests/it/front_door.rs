//! Issue 19, "the front door holds": each finding reproduced and shown
//! fixed, on loopback with bounded loads.
//!
//! 1. A stalled client cannot block the drain: after SIGTERM the daemon
//!    closes it, writes the final snapshot and exits 0, and every sample
//!    it answered 204 is in the restored state.
//! 2. Memory follows the configuration: a stream of distinct series with
//!    large labels keeps the daemon's RSS under [`anomalyd::app::budget`]'s
//!    bound (read from `/proc`).
//! 3. Header, read and idle timeouts and a connection cap on both ports.
//! 4. `/healthz` answers while decoding is saturated; page queries are
//!    bounded.
//! 5. Remote-write 2.0 is decoded; unknown protocols get 415; native
//!    histograms are counted as skipped.
//! 6. Failing snapshots make the daemon unready (and the receiver answer
//!    503), a failed final snapshot exits 1, an unwritable state directory
//!    refuses to start, and the changelog store without Kafka is a config
//!    error.
//! 8. Samples outside the time window or out of order, duplicate label
//!    names, labels that are not UTF-8 and labels over the limits.
//! 9. TLS and basic/bearer auth on both ports (a real Prometheus over TLS
//!    with basic auth: `prometheus.rs`).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anomalyd::app;
use anomalyd::app::config::Config;
use anomalyd::detector::Detector;
use anomalyd::source::remote_write::{Histogram, Label, Sample, TimeSeries, WriteRequest, v2};
use anomalyd::state::dir::DirStore;
use anomalyd::state::{PartitionName, StateStore};
use prost::Message;

use crate::support::{self, free_port, metric_sum, poll_some, poll_until, scrape};

const BIN: &str = env!("CARGO_BIN_EXE_anomalyd");
const WAIT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------
// Helpers

/// The daemon binary, `anomalyd run --config FILE`, killed on drop.
struct Daemon {
    child: Child,
    metrics: SocketAddr,
    rw: SocketAddr,
    log: PathBuf,
}

impl Daemon {
    /// Starts the binary on `toml`, whose `{metrics}` and `{rw}` are
    /// replaced by free loopback addresses.
    fn start(toml: &str, dir: &Path) -> Self {
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let rw: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let text = toml
            .replace("{metrics}", &metrics.to_string())
            .replace("{rw}", &rw.to_string());
        let config = dir.join("anomalyd.toml");
        std::fs::write(&config, text).unwrap();
        let log = dir.join("anomalyd.log");
        let mut cmd = Command::new(BIN);
        cmd.args(["run", "--config", config.to_str().unwrap()]);
        for (k, _) in std::env::vars() {
            if k.starts_with("ANOMALYD") || k == "RUST_LOG" {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start anomalyd");
        Self {
            child,
            metrics,
            rw,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for `/readyz` 200 (panics with the log if the process ends).
    async fn ready(&mut self) {
        let url = format!("http://{}/readyz", self.metrics);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("anomalyd exited ({status}) before ready:\n{}", self.log());
            }
            if let Ok(r) = support::client().get(&url).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not ready:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM (bash's builtin `kill`: no procps needed).
    fn term(&self) {
        let ok = Command::new("bash")
            .args(["-c", &format!("kill -TERM {}", self.child.id())])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM");
    }

    /// Waits for the process to end; its exit code.
    async fn exit_code(&mut self) -> i32 {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "still running:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A `/proc/<pid>/status` field in bytes (`VmRSS`, `VmHWM`).
    fn memory(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with(&format!("{field}:")))
            .unwrap_or_else(|| panic!("{field} in /proc status"));
        let kb: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap();
        kb * 1024
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn label(name: &str, value: &str) -> Label {
    Label {
        name: name.into(),
        value: value.into(),
    }
}

/// A series of `values` one minute apart from `t0`.
fn series(name: &str, pairs: &[(&str, &str)], t0: i64, values: &[f64]) -> TimeSeries {
    TimeSeries {
        labels: std::iter::once(label("__name__", name))
            .chain(pairs.iter().map(|(k, v)| label(k, v)))
            .collect(),
        samples: values
            .iter()
            .enumerate()
            .map(|(i, &value)| Sample {
                value,
                timestamp: t0 + 60_000 * i as i64,
            })
            .collect(),
        histograms: Vec::new(),
    }
}

fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).unwrap()
}

fn body(timeseries: Vec<TimeSeries>) -> Vec<u8> {
    snappy(
        &WriteRequest {
            timeseries,
            ..WriteRequest::default()
        }
        .encode_to_vec(),
    )
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// POSTs a remote-write body (1.0 unless `content_type` says otherwise).
async fn post_as(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    content_type: &str,
) -> Result<reqwest::Response, reqwest::Error> {
    client
        .post(url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", content_type)
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
}

async fn post(addr: SocketAddr, body: Vec<u8>) -> u16 {
    post_as(
        &support::client(),
        &format!("http://{addr}/api/v1/write"),
        body,
        "application/x-protobuf",
    )
    .await
    .expect("POST")
    .status()
    .as_u16()
}

/// Reads until the server closes the connection; what it sent before.
/// Panics if it is still open after `WAIT`.
fn read_to_close(mut s: TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("the server did not close the connection: {e}"),
        }
    }
}

/// The receiver on, Kafka off, ephemeral loopback ports, no log sink.
fn rw_config() -> Config {
    let mut c = Config::default();
    c.kafka.enabled = false;
    c.sources.remote_write.enabled = true;
    c.sources.remote_write.listen_addr = "127.0.0.1:0".into();
    c.metrics.listen_addr = "127.0.0.1:0".into();
    c.sinks.log.enabled = false;
    c.pipeline.workers = 2;
    c
}

fn count(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_sum(text, name, labels)
}

fn failed(text: &str, reason: &str) -> f64 {
    count(
        text,
        "anomalyd_events_failed_total",
        &[("source", "remote_write"), ("reason", reason)],
    )
}

// ---------------------------------------------------------------------------
// 1. Acknowledged means kept.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_samples_survive_sigterm_despite_a_stalled_client() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    // Only the final snapshot counts: the interval is never reached.
    let toml = format!(
        r#"
[kafka]
enabled = false
[sources.remote_write]
enabled = true
listen_addr = "{{rw}}"
read_timeout_secs = 2
max_sample_age_secs = 0
[metrics]
listen_addr = "{{metrics}}"
[state]
store = "dir"
dir = "{}"
snapshot_interval_secs = 3600
[pipeline]
workers = 2
shutdown_grace_secs = 30
[sinks.log]
enabled = false
"#,
        state.display()
    );
    let mut d = Daemon::start(&toml, tmp.path());
    d.ready().await;
    const N: usize = 20;
    let values: Vec<f64> = (0..N).map(|i| 10.0 + (i % 3) as f64).collect();
    let t0 = 1_767_225_600_000;
    assert_eq!(
        post(d.rw, body(vec![series("control", &[], t0, &values)])).await,
        204
    );

    // Half a request, then nothing: the client that used to block the
    // drain until the grace period ran out.
    let mut stalled = TcpStream::connect(d.rw).unwrap();
    stalled
        .write_all(
            b"POST /api/v1/write HTTP/1.1\r\nHost: anomalyd\r\nContent-Encoding: snappy\r\n\
              Content-Type: application/x-protobuf\r\nContent-Length: 100000\r\n\r\n",
        )
        .unwrap();
    stalled.write_all(&[0u8; 1000]).unwrap();

    // Senders of fresh series, each request one series of N samples,
    // until the daemon stops answering 204.
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let url = format!("http://{}/api/v1/write", d.rw);
    let senders: Vec<_> = (0..4)
        .map(|c| {
            let (acked, url, values) = (Arc::clone(&acked), url.clone(), values.clone());
            tokio::spawn(async move {
                let client = support::client();
                for i in 0.. {
                    let id = format!("c{c}-{i}");
                    let b = body(vec![series("load", &[("id", &id)], t0, &values)]);
                    match post_as(&client, &url, b, "application/x-protobuf").await {
                        Ok(r) if r.status() == 204 => {
                            acked.lock().unwrap().push(format!("load{{id=\"{id}\"}}"));
                        }
                        _ => return,
                    }
                }
            })
        })
        .collect();
    let a = Arc::clone(&acked);
    poll_until("200 acknowledged requests", WAIT, || {
        let n = a.lock().unwrap().len();
        async move { n >= 200 }
    })
    .await;
    d.term();
    let code = d.exit_code().await;
    for s in senders {
        s.await.unwrap();
    }
    assert_eq!(code, 0, "a clean drain:\n{}", d.log());
    // The stalled request was closed, unanswered.
    let answer = read_to_close(stalled);
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));

    // The restored state holds every acknowledged sample.
    let config = Config::from_toml_str(
        &toml
            .replace("{rw}", "127.0.0.1:1")
            .replace("{metrics}", "127.0.0.1:2"),
    )
    .unwrap();
    let detector = Detector::new(&config.detector, config.alert.threshold).unwrap();
    let store = DirStore::new(&state, detector.model_hash(), Duration::from_secs(3600)).unwrap();
    let loaded = store
        .load(&PartitionName {
            stream: "remote_write".into(),
            partition: 0,
        })
        .unwrap()
        .expect("the final snapshot");
    let scored: HashMap<String, u32> = loaded
        .series
        .iter()
        .map(|s| {
            let st = s.detector.as_ref().expect("the same model");
            (s.key.to_string(), st.scored_events())
        })
        .collect();
    let per_series = scored["control"];
    assert!(per_series > 0);
    let acked = acked.lock().unwrap();
    let lost: Vec<&String> = acked
        .iter()
        .filter(|k| scored.get(*k) != Some(&per_series))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged series ({} samples) missing or partial after restore: {:?}",
        lost.len(),
        acked.len(),
        acked.len() * N,
        &lost[..lost.len().min(5)]
    );
}

// ---------------------------------------------------------------------------
// 6. Failing state is not reported ready.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_snapshots_make_the_daemon_unready_and_the_exit_code_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let toml = format!(
        r#"
[kafka]
enabled = false
[sources.remote_write]
enabled = true
listen_addr = "{{rw}}"
max_sample_age_secs = 0
[metrics]
listen_addr = "{{metrics}}"
[state]
store = "dir"
dir = "{}"
snapshot_interval_secs = 1
[pipeline]
workers = 1
[sinks.log]
enabled = false
"#,
        state.display()
    );
    let mut d = Daemon::start(&toml, tmp.path());
    d.ready().await;
    let t0 = 1_767_225_600_000;
    let req = || body(vec![series("m", &[], t0, &[1.0, 2.0])]);
    assert_eq!(post(d.rw, req()).await, 204);
    let partition_dir = state.join("remote_write");
    poll_until("a first snapshot", WAIT, || {
        let f = partition_dir.join("0.snap");
        async move { f.is_file() }
    })
    .await;

    // Break the store in a way root cannot write through either: a file
    // where the partition's directory must be.
    let break_store = || {
        let _ = std::fs::remove_dir_all(&partition_dir);
        std::fs::write(&partition_dir, b"not a directory").unwrap();
    };
    break_store();
    let readyz = format!("http://{}/readyz", d.metrics);
    let (status, text) = poll_some("/readyz to report the failing snapshots", WAIT, || {
        let url = readyz.clone();
        async move {
            let (status, text) = support::get(&url).await;
            (status == 503).then_some((status, text))
        }
    })
    .await;
    assert_eq!((status, text.as_str()), (503, "snapshot failing\n"));
    // Meanwhile nothing is acknowledged: Prometheus keeps it and retries.
    let r = post_as(
        &support::client(),
        &format!("http://{}/api/v1/write", d.rw),
        req(),
        "application/x-protobuf",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let metrics = scrape(d.metrics).await;
    assert!(count(&metrics, "anomalyd_snapshot_failures_total", &[]) >= 1.0);

    // Repaired: ready again and taking samples.
    std::fs::remove_file(&partition_dir).unwrap();
    poll_until("/readyz ready again", WAIT, || {
        let url = readyz.clone();
        async move { support::get(&url).await.0 == 200 }
    })
    .await;
    assert_eq!(post(d.rw, req()).await, 204);

    // Broken at shutdown: the final snapshot fails and the exit code says
    // what was acknowledged is not persisted.
    break_store();
    poll_until("/readyz failing again", WAIT, || {
        let url = readyz.clone();
        async move { support::get(&url).await.0 == 503 }
    })
    .await;
    d.term();
    assert_eq!(d.exit_code().await, 1, "{}", d.log());
    assert!(d.log().contains("final state snapshot"), "{}", d.log());

    // A state directory that cannot be written refuses to start.
    let blocker = tmp.path().join("a-file");
    std::fs::write(&blocker, b"x").unwrap();
    let bad = toml.replace(
        &format!("dir = \"{}\"", state.display()),
        &format!("dir = \"{}\"", blocker.join("state").display()),
    );
    let dir2 = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(&bad, dir2.path());
    assert_eq!(d.exit_code().await, 1, "{}", d.log());
    assert!(d.log().contains("state.dir"), "{}", d.log());
    let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    if !root {
        // (root writes through permissions, so only others can check this)
        use std::os::unix::fs::PermissionsExt;
        let ro = tmp.path().join("read-only");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        let bad = toml.replace(
            &format!("dir = \"{}\"", state.display()),
            &format!("dir = \"{}\"", ro.display()),
        );
        let dir3 = tempfile::tempdir().unwrap();
        let mut d = Daemon::start(&bad, dir3.path());
        assert_eq!(d.exit_code().await, 1, "{}", d.log());
    }

    // The changelog store lives in Kafka: without Kafka it is a config
    // error, caught by check-config.
    let changelog = tmp.path().join("changelog.toml");
    std::fs::write(
        &changelog,
        "[kafka]\nenabled = false\n[sources.remote_write]\nenabled = true\n[state]\nstore = \"changelog\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config", changelog.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("state.store"), "{text}");
}

// ---------------------------------------------------------------------------
// 2. Memory bounded by configuration.

/// A label value of exactly `len` bytes, unique to `id` (it compresses
/// well, so the test sends little; the daemon holds every byte).
fn big_value(id: usize, len: usize) -> String {
    let mut v = format!("{id:08}-");
    v.extend(std::iter::repeat_n('x', len - v.len()));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_series_with_large_labels_stay_under_the_memory_bound() {
    const SERIES: usize = 12_000;
    const PER_REQUEST: usize = 20;
    const VALUE: usize = 8192;
    let tmp = tempfile::tempdir().unwrap();
    let toml = r#"
[kafka]
enabled = false
[sources.remote_write]
enabled = true
listen_addr = "{rw}"
max_sample_age_secs = 0
max_body_bytes = 4194304
max_concurrent_requests = 2
max_series_per_request = 1000
max_samples_per_request = 1000
label_limit = 3
label_name_length_limit = 64
label_value_length_limit = 8192
[metrics]
listen_addr = "{metrics}"
[pipeline]
workers = 2
queue_capacity = 16
max_series = 2000
[ui]
max_bytes = 8388608
[sinks.log]
enabled = false
"#;
    let config = Config::from_toml_str(
        &toml
            .replace("{rw}", "127.0.0.1:1")
            .replace("{metrics}", "127.0.0.1:2"),
    )
    .unwrap();
    config.validate().unwrap();
    let bound = anomalyd::app::budget::of(&config).unwrap();
    let mut d = Daemon::start(toml, tmp.path());
    d.ready().await;
    let start_rss = d.memory("VmRSS");
    let t = now_ms();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let url = format!("http://{}/api/v1/write", d.rw);
    let senders: Vec<_> = (0..2)
        .map(|_| {
            let (next, url) = (Arc::clone(&next), url.clone());
            tokio::spawn(async move {
                let client = support::client();
                loop {
                    let first = next.fetch_add(PER_REQUEST, std::sync::atomic::Ordering::SeqCst);
                    if first >= SERIES {
                        return;
                    }
                    let req: Vec<TimeSeries> = (first..first + PER_REQUEST)
                        .map(|i| {
                            let (a, b) = (big_value(i, VALUE), big_value(i + SERIES, VALUE));
                            series("soak", &[("a", &a), ("b", &b)], t, &[1.0])
                        })
                        .collect();
                    loop {
                        let r = post_as(&client, &url, body(req.clone()), "application/x-protobuf")
                            .await
                            .expect("POST");
                        match r.status().as_u16() {
                            204 => break,
                            503 => tokio::time::sleep(Duration::from_millis(10)).await,
                            other => panic!("answer {other}"),
                        }
                    }
                }
            })
        })
        .collect();
    for s in senders {
        s.await.unwrap();
    }
    let metrics_addr = d.metrics;
    poll_until("every series processed", WAIT, || async move {
        let text = scrape(metrics_addr).await;
        count(&text, "anomalyd_events_processed_total", &[]) >= SERIES as f64
    })
    .await;
    let text = scrape(d.metrics).await;
    assert!(count(&text, "anomalyd_series_active", &[]) <= 2000.0);
    assert!(count(&text, "anomalyd_series_evicted_total", &[]) >= (SERIES - 2000) as f64);
    let peak = d.memory("VmHWM");
    let grew = peak.saturating_sub(start_rss);
    let held = SERIES as u64 * 2 * VALUE as u64;
    eprintln!(
        "memory: start {} MiB, peak {} MiB, grew {} MiB; bound on growth {} MiB; labels sent {} MiB\n{bound}",
        start_rss >> 20,
        peak >> 20,
        grew >> 20,
        bound.growth() >> 20,
        held >> 20
    );
    assert!(
        grew <= bound.growth(),
        "RSS grew {grew} B, more than the configuration's bound {} B:\n{bound}",
        bound.growth()
    );
    // The bound is far below what holding every key would take.
    assert!(bound.growth() < held / 2, "{bound}");
    d.term();
    assert_eq!(d.exit_code().await, 0, "{}", d.log());
}

// ---------------------------------------------------------------------------
// 3. Timeouts and connection caps.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_read_and_idle_timeouts_close_connections_on_both_ports() {
    let mut c = rw_config();
    c.metrics.header_timeout_secs = 1;
    c.metrics.idle_timeout_secs = 1;
    c.sources.remote_write.header_timeout_secs = 1;
    c.sources.remote_write.read_timeout_secs = 1;
    c.sources.remote_write.idle_timeout_secs = 1;
    let running = app::start(c).await.expect("start");
    let rw = running.source_addr("remote_write").unwrap();
    let metrics = running.metrics_addr;
    for addr in [metrics, rw] {
        // Idle: connected, nothing sent.
        let idle = TcpStream::connect(addr).unwrap();
        assert!(read_to_close(idle).is_empty());
        // A head that never ends.
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        assert!(read_to_close(slow).is_empty());
        // Idle after a request: answered, then closed.
        let mut kept = TcpStream::connect(addr).unwrap();
        kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let answer = String::from_utf8(read_to_close(kept)).unwrap();
        assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
    }
    // A body that stalls: closed without an answer, so the sender retries.
    let mut stalled = TcpStream::connect(rw).unwrap();
    stalled
        .write_all(
            b"POST /api/v1/write HTTP/1.1\r\nHost: x\r\nContent-Encoding: snappy\r\n\
              Content-Length: 5000\r\n\r\n0123456789",
        )
        .unwrap();
    assert!(read_to_close(stalled).is_empty());
    let text = scrape(metrics).await;
    let timeouts = |server, timeout| {
        count(
            &text,
            "anomalyd_http_timeouts_total",
            &[("server", server), ("timeout", timeout)],
        )
    };
    for server in ["metrics", "remote_write"] {
        assert!(timeouts(server, "idle") >= 2.0, "{server}\n{text}");
        assert!(timeouts(server, "header") >= 1.0, "{server}");
    }
    assert_eq!(timeouts("remote_write", "read"), 1.0);
    // Both ports still serve.
    assert_eq!(
        support::get(&format!("http://{metrics}/healthz")).await.0,
        200
    );
    let t0 = 1_767_225_600_000;
    assert_eq!(
        post(rw, body(vec![series("m", &[], t0, &[1.0])])).await,
        204
    );
    running.shutdown();
    running.wait().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_connection_cap_waits_without_locking_out_the_other_port() {
    let mut c = rw_config();
    c.sources.remote_write.max_connections = 2;
    c.sources.remote_write.idle_timeout_secs = 3;
    c.sources.remote_write.max_sample_age_secs = 0;
    let running = app::start(c).await.expect("start");
    let rw = running.source_addr("remote_write").unwrap();
    let metrics = running.metrics_addr;
    let held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(rw).unwrap()).collect();
    poll_until("two open connections", WAIT, || async move {
        let text = scrape(metrics).await;
        count(
            &text,
            "anomalyd_http_connections_open",
            &[("server", "remote_write")],
        ) == 2.0
    })
    .await;
    let t0 = 1_767_225_600_000;
    let third = tokio::spawn(post(rw, body(vec![series("m", &[], t0, &[1.0])])));
    // The metrics port has its own cap: health answers meanwhile...
    assert_eq!(
        support::get(&format!("http://{metrics}/healthz")).await.0,
        200
    );
    // ...while the third request waits in the backlog.
    assert!(!third.is_finished(), "served beyond the cap");
    // It is served once an idle connection is closed.
    assert_eq!(third.await.unwrap(), 204);
    for h in held {
        assert!(read_to_close(h).is_empty());
    }
    let text = scrape(metrics).await;
    assert!(
        count(
            &text,
            "anomalyd_http_timeouts_total",
            &[("server", "remote_write"), ("timeout", "idle")]
        ) >= 2.0
    );
    running.shutdown();
    running.wait().await.expect("clean shutdown");
}

// ---------------------------------------------------------------------------
// 4. Health under decode load; bounded page queries.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_while_decoding_is_saturated_and_page_queries_are_bounded() {
    const REQUESTS: usize = 64;
    const SAMPLES: usize = 200_000;
    // The default four decoding slots: the other requests wait for one
    // (without using CPU), the four decode on the blocking pool.
    let mut c = rw_config();
    c.sources.remote_write.max_samples_per_request = SAMPLES;
    c.sources.remote_write.max_sample_age_secs = 0;
    c.sources.remote_write.queue_timeout_ms = 60_000;
    let running = app::start(c).await.expect("start");
    let rw = running.source_addr("remote_write").unwrap();
    let metrics = running.metrics_addr;
    // Heavy bodies: many series of many samples, all NaN, so the work is
    // the decoding alone (nothing reaches the shards).
    let t0 = 1_767_225_600_000;
    let values = vec![f64::NAN; SAMPLES / 100];
    let heavy = body(
        (0..100)
            .map(|s| series("load", &[("s", &s.to_string())], t0, &values))
            .collect(),
    );
    let bodies = vec![heavy; REQUESTS];
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|b| {
            let done = Arc::clone(&done);
            tokio::spawn(async move {
                let status = post(rw, b).await;
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                status
            })
        })
        .collect();
    // Once requests are in the daemon, health must answer before the
    // decoding is through (the polls below are answered meanwhile too).
    poll_until("requests in the daemon", WAIT, || async move {
        let text = scrape(metrics).await;
        count(
            &text,
            "anomalyd_messages_received_total",
            &[("source", "remote_write")],
        ) >= 8.0
    })
    .await;
    let (status, _) = support::get(&format!("http://{metrics}/healthz")).await;
    let answered_before = done.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(status, 200);
    // Four decode at a time, off the runtime: health does not wait for a
    // decode to finish. (Decoding on the runtime's threads instead, it
    // waited for 8 of 64 when measured; with the old unbounded
    // concurrency, for 62.)
    assert!(
        answered_before < 4,
        "/healthz answered only after {answered_before} of {REQUESTS} requests"
    );
    for t in tasks {
        assert_eq!(t.await.unwrap(), 204);
    }
    eprintln!("/healthz answered with {answered_before} of {REQUESTS} requests done");

    // A page query that once grew the page quadratically: refused at once.
    let many: String = (0..3000)
        .map(|i| format!("label=k{i}%3Dv{i}"))
        .collect::<Vec<_>>()
        .join("&");
    assert!(many.len() > 40_000);
    for path in ["/", "/api/v1/series"] {
        let (status, text) = support::get(&format!("http://{metrics}{path}?{many}")).await;
        assert_eq!(status, 400, "{path}");
        assert!(text.len() < 4096, "{path}: {} bytes", text.len());
    }
    // Sixteen filters are fine.
    let ok: String = (0..16)
        .map(|i| format!("label=k{i}%3Dv"))
        .collect::<Vec<_>>()
        .join("&");
    assert_eq!(
        support::get(&format!("http://{metrics}/?{ok}")).await.0,
        200
    );
    running.shutdown();
    running.wait().await.expect("clean shutdown");
}

// ---------------------------------------------------------------------------
// 5. Remote-write 2.0 and native histograms.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_2_is_decoded_and_native_histograms_are_counted() {
    let mut c = rw_config();
    c.sources.remote_write.max_sample_age_secs = 0;
    let running = app::start(c).await.expect("start");
    let rw = running.source_addr("remote_write").unwrap();
    let url = format!("http://{rw}/api/v1/write");
    let client = support::client();
    let t0 = 1_767_225_600_000;
    let req = v2::Request {
        symbols: ["", "__name__", "http_requests", "job", "api", "code", "200"]
            .map(String::from)
            .to_vec(),
        timeseries: vec![v2::TimeSeries {
            labels_refs: vec![1, 2, 3, 4, 5, 6],
            samples: (0..5)
                .map(|i| v2::Sample {
                    value: i as f64,
                    timestamp: t0 + 15_000 * i,
                    start_timestamp: 0,
                })
                .collect(),
            histograms: vec![Histogram { timestamp: t0 }; 2],
            metadata: None,
        }],
    };
    let v2_type = "application/x-protobuf;proto=io.prometheus.write.v2.Request";
    let r = post_as(&client, &url, snappy(&req.encode_to_vec()), v2_type)
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let h = |k: &str| r.headers()[k].to_str().unwrap().to_owned();
    assert_eq!(h("x-prometheus-remote-write-samples-written"), "5");
    assert_eq!(h("x-prometheus-remote-write-histograms-written"), "0");
    // A protocol it does not know: 415, so the sender can fall back.
    let r = post_as(
        &client,
        &url,
        snappy(&req.encode_to_vec()),
        "application/x-protobuf;proto=io.prometheus.write.v3.Request",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 415);
    // 1.0 with histograms: the floats learned, the histograms counted.
    let mut s = series("latency", &[], t0, &[1.0, 2.0]);
    s.histograms = vec![Histogram { timestamp: t0 }; 3];
    assert_eq!(post(rw, body(vec![s])).await, 204);
    let m = running.metrics.clone();
    poll_until("7 events processed", WAIT, || {
        let m = m.clone();
        async move { m.events_processed_total() == 7 }
    })
    .await;
    let text = scrape(running.metrics_addr).await;
    assert_eq!(
        count(&text, "anomalyd_remote_write_histograms_skipped_total", &[]),
        5.0
    );
    assert_eq!(
        count(
            &text,
            "anomalyd_remote_write_requests_total",
            &[("code", "415")]
        ),
        1.0
    );
    let series: serde_json::Value = serde_json::from_str(
        &support::get(&format!("http://{}/api/v1/series", running.metrics_addr))
            .await
            .1,
    )
    .unwrap();
    let names: Vec<&str> = series["series"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["series"].as_str())
        .collect();
    assert!(
        names.contains(&r#"http_requests{code="200",job="api"}"#),
        "{names:?}"
    );
    running.shutdown();
    running.wait().await.expect("clean shutdown");
}

// ---------------------------------------------------------------------------
// 8. Inputs a store refuses.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_a_store_refuses_are_dropped_and_counted_series_by_series() {
    let mut c = rw_config();
    c.sources.remote_write.label_value_length_limit = 64;
    let running = app::start(c).await.expect("start");
    let rw = running.source_addr("remote_write").unwrap();
    let now = now_ms();
    let minute = 60_000;
    // Inside the window (a day back, ten minutes ahead by default), one
    // sample far outside each way, one year-9000 sample.
    let window = series(
        "temp",
        &[("room", "a")],
        now - 10 * minute,
        &[20.0, 20.1, 20.2],
    );
    let mut outside = series("temp", &[("room", "b")], now, &[1.0, 2.0, 3.0, 4.0]);
    outside.samples[0].timestamp = now - 2 * 86_400_000;
    outside.samples[1].timestamp = now + 3_600_000;
    outside.samples[2].timestamp = 221_845_392_000_000; // year 9000
    outside.samples[3].timestamp = -5; // before 1970
    assert_eq!(post(rw, body(vec![window, outside])).await, 204);

    // Out of order within a series: the older sample is dropped.
    let mut ooo = series(
        "disk",
        &[("dev", "sda")],
        now - 5 * minute,
        &[1.0, 2.0, 3.0, 4.0],
    );
    ooo.samples.swap(1, 2);
    assert_eq!(post(rw, body(vec![ooo])).await, 204);

    // One invalid series in a batch of 2,000 samples drops that series
    // only: a duplicate label name, then a label that is not UTF-8.
    let values: Vec<f64> = (0..1000).map(|i| (i % 5) as f64).collect();
    let good = series(
        "batch",
        &[("n", "good")],
        now - 1000 * minute,
        &values[..999],
    );
    let mut dup = series(
        "batch",
        &[("n", "dup"), ("n", "again")],
        now - 5 * minute,
        &[1.0],
    );
    dup.labels.sort_by(|a, b| a.name.cmp(&b.name));
    let bad_utf8 = series("batch", &[("n", "ZZbad")], now - 1000 * minute, &values);
    let mut raw = WriteRequest {
        timeseries: vec![good, dup, bad_utf8],
        ..WriteRequest::default()
    }
    .encode_to_vec();
    let at = raw.windows(5).position(|w| w == b"ZZbad").unwrap();
    raw[at] = 0xc3;
    raw[at + 1] = 0x28; // an invalid two-byte sequence
    assert_eq!(post(rw, snappy(&raw)).await, 204);

    // A label over the value limit: that series dropped, the other taken,
    // the answer 400 naming the limit.
    let long = series("m", &[("v", &"x".repeat(65))], now, &[1.0]);
    let short = series("m", &[("v", "ok")], now, &[1.0]);
    let r = post_as(
        &support::client(),
        &format!("http://{rw}/api/v1/write"),
        body(vec![long, short]),
        "application/x-protobuf",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap();
    assert!(text.contains("label_value_length_limit"), "{text}");

    // 3 + 3 (of 4) + 999 + 1 processed.
    let m = running.metrics.clone();
    poll_until("1006 events processed", WAIT, || {
        let m = m.clone();
        async move { m.events_processed_total() == 1006 }
    })
    .await;
    let text = scrape(running.metrics_addr).await;
    assert_eq!(failed(&text, "out_of_window"), 3.0);
    assert_eq!(failed(&text, "bad_timestamp"), 1.0);
    assert_eq!(failed(&text, "duplicate_label"), 1.0);
    assert_eq!(failed(&text, "invalid_label"), 1000.0);
    assert_eq!(failed(&text, "label_value_too_long"), 1.0);
    assert_eq!(
        count(
            &text,
            "anomalyd_events_skipped_total",
            &[("reason", "out_of_order")]
        ),
        1.0
    );
    assert_eq!(
        count(
            &text,
            "anomalyd_remote_write_requests_total",
            &[("code", "400")]
        ),
        1.0
    );
    running.shutdown();
    running.wait().await.expect("clean shutdown");
}

// ---------------------------------------------------------------------------
// 9. TLS and authentication on both ports.

pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(rel)
}

/// A web config file with the test certificate, one user and one bearer
/// token (bcrypt cost 4: fast tests).
pub fn web_config(dir: &Path, user: &str, password: &str, token: &str) -> PathBuf {
    let path = dir.join("web.yml");
    std::fs::write(
        &path,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n\
             basic_auth_users:\n  {user}: {}\n\
             bearer_tokens:\n  ci: {}\n",
            fixture("server.crt").display(),
            fixture("server.key").display(),
            bcrypt::hash(password, 4).unwrap(),
            bcrypt::hash(token, 4).unwrap(),
        ),
    )
    .unwrap();
    path
}

/// A client that trusts the test CA only.
pub fn tls_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(fixture("ca.crt")).unwrap()).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_ports_speak_tls_and_ask_for_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    let web = web_config(tmp.path(), "prom", "s3cret", "tok-123");
    let mut c = rw_config();
    c.sources.remote_write.max_sample_age_secs = 0;
    c.metrics.web_config_file = Some(web.clone());
    c.sources.remote_write.web_config_file = Some(web);
    let running = app::start(c).await.expect("start");
    assert!(running.metrics_tls);
    let rw = running.source_addr("remote_write").unwrap();
    let m = running.metrics_addr.port();
    let client = tls_client();
    let t0 = 1_767_225_600_000;
    let write = format!("https://127.0.0.1:{}/api/v1/write", rw.port());
    let send = |auth: Option<(&'static str, &'static str)>, bearer: Option<&'static str>| {
        let mut r = client
            .post(&write)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .body(body(vec![series("m", &[], t0, &[1.0])]));
        if let Some((u, p)) = auth {
            r = r.basic_auth(u, Some(p));
        }
        if let Some(t) = bearer {
            r = r.bearer_auth(t);
        }
        async move { r.send().await.unwrap() }
    };
    let r = send(None, None).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers().get_all("www-authenticate").iter().count(), 2);
    assert_eq!(send(Some(("prom", "wrong")), None).await.status(), 401);
    assert_eq!(send(Some(("other", "s3cret")), None).await.status(), 401);
    assert_eq!(send(Some(("prom", "s3cret")), None).await.status(), 204);
    assert_eq!(send(None, Some("tok-123")).await.status(), 204);
    assert_eq!(send(None, Some("tok-999")).await.status(), 401);
    // The metrics port: probes open, everything else behind the password.
    let get = |path: &str, auth: bool| {
        let mut r = client.get(format!("https://127.0.0.1:{m}{path}"));
        if auth {
            r = r.basic_auth("prom", Some("s3cret"));
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get("/healthz", false).await, 200);
    assert_eq!(get("/readyz", false).await, 200);
    assert_eq!(get("/metrics", false).await, 401);
    assert_eq!(get("/", false).await, 401);
    assert_eq!(get("/metrics", true).await, 200);
    // Plain HTTP to a TLS port gets no answer.
    assert!(
        support::client()
            .get(format!("http://127.0.0.1:{m}/healthz"))
            .send()
            .await
            .is_err()
    );
    let text = client
        .get(format!("https://127.0.0.1:{m}/metrics"))
        .basic_auth("prom", Some("s3cret"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        count(
            &text,
            "anomalyd_http_auth_failures_total",
            &[("server", "remote_write")]
        ),
        4.0
    );
    assert!(
        count(
            &text,
            "anomalyd_http_tls_handshake_failures_total",
            &[("server", "metrics")]
        ) >= 1.0
    );
    running.shutdown();
    running.wait().await.expect("clean shutdown");
}

#[test]
fn web_config_mistakes_are_config_errors_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let web = tmp.path().join("web.yml");
    std::fs::write(&web, "basic_auth_users:\n  prom: plaintext-password\n").unwrap();
    let cfg = tmp.path().join("anomalyd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[kafka]\nenabled = false\n[sources.remote_write]\nenabled = true\nweb_config_file = \"{}\"\n\
             [metrics]\nweb_config_file = \"{}\"\n",
            web.display(),
            tmp.path().join("missing.yml").display()
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("sources.remote_write.web_config_file"),
        "{text}"
    );
    assert!(text.contains("basic_auth_users.prom"), "{text}");
    assert!(text.contains("metrics.web_config_file"), "{text}");
    assert!(text.contains("missing.yml"), "{text}");
}
