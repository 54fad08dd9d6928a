//! State persistence and scale-out (issue 4): a SIGKILL mid-stream and a
//! restart, two instances handing partitions over through the changelog,
//! damaged and incompatible snapshots, config changes across a restart, and
//! memory bounds under a burst of new series.
//!
//! The reference for "what an uninterrupted run would have said" is
//! [`Oracle`]: the library's own per-series path (decoder, detector, alert
//! lifecycle) fed every event exactly once, in order. The daemon under test
//! must agree with it bit for bit (asserted to 1e-9) after any restore;
//! a series that learned an event twice, or skipped one, or restarted from
//! scratch, predicts something else.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anomalyd::alert::lifecycle::{AlertRule, Lifecycle, build_alert};
use anomalyd::alert::{Alert, AlertStatus};
use anomalyd::app;
use anomalyd::app::config::Config;
use anomalyd::decode::Decoder;
use anomalyd::detector::{Decision, Detector, DetectorState};
use anomalyd::event::{Event, SeriesKey};
use anomalyd::pipeline::{AlertHandoff, BarrierKind, Core, Pipeline, PipelineConfig};
use anomalyd::state::{
    PartitionName, PartitionSnapshot, SnapshotRecord, SourcePartition, StateStore, StoreKind,
    dir::DirStore,
};
use anomalyd::telemetry::metrics::{Metrics, MetricsConfig};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::support::{self, TestProducer};

/// Generous: a consumer-group join alone takes ~3 s on the mock cluster,
/// and a debug build on a shared 2-core machine is slow.
pub(crate) const WAIT: Duration = Duration::from_secs(90);

/// Event time of index 0: 2026-01-01T00:00:00Z; one event per minute.
const T0_MS: i64 = 1_767_225_600_000;

// ---------------------------------------------------------------------------
// The deterministic stream
// ---------------------------------------------------------------------------

/// `series` series `s0..`, series `j` on partition `j % partitions`, one
/// event per series per minute. Values: a daily-ish sine with seeded noise,
/// plus a spike of 3 points at each index in `spikes` (shifted by `j` so
/// the series do not all fire at once), each spike five times the height
/// of the last.
#[derive(Debug, Clone)]
pub(crate) struct Stream {
    pub(crate) series: usize,
    pub(crate) partitions: i32,
    pub(crate) spikes: Vec<usize>,
}

impl Stream {
    pub(crate) fn name(j: usize) -> String {
        format!("s{j}")
    }

    pub(crate) fn partition(&self, j: usize) -> i32 {
        (j % self.partitions as usize) as i32
    }

    fn series_of(&self, partition: i32) -> impl Iterator<Item = usize> + '_ {
        (0..self.series).filter(move |&j| self.partition(j) == partition)
    }

    fn value(&self, j: usize, i: usize) -> f64 {
        // xorshift64 seeded per (series, index): any event's value without
        // generating the ones before it.
        let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ ((j as u64) << 32 | i as u64);
        for _ in 0..3 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        let noise = (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
        let level = 20.0 + 5.0 * j as f64;
        let base = level + 4.0 * (i as f64 * std::f64::consts::TAU / 96.0).sin() + noise;
        // Each spike is far above the one before: spikes that recur at a
        // similar size become the series' normal tail and stop alerting
        // (the detector's "twice is a pattern"), which is not what these
        // tests are about.
        let spike = self
            .spikes
            .iter()
            .position(|&s| (s + j..s + j + 3).contains(&i));
        base + spike.map_or(0.0, |k| 60.0 * 5f64.powi(k as i32))
    }

    pub(crate) fn ts(i: usize) -> i64 {
        T0_MS + i as i64 * 60_000
    }

    /// The native-JSON message of event `i` of series `j`.
    pub(crate) fn payload(&self, j: usize, i: usize) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "series": Self::name(j), "ts": Self::ts(i), "value": self.value(j, i)
        }))
        .unwrap()
    }

    /// Produces events `from..to` of every series, in time order, each to
    /// its series' partition.
    pub(crate) fn produce(&self, p: &TestProducer, topic: &str, from: usize, to: usize) {
        for i in from..to {
            for j in 0..self.series {
                p.send(
                    topic,
                    Some(self.partition(j)),
                    &Self::name(j),
                    &self.payload(j, i),
                );
            }
        }
        p.flush();
    }
}

// ---------------------------------------------------------------------------
// The reference: an uninterrupted run
// ---------------------------------------------------------------------------

/// One series as the reference sees it.
#[derive(Clone)]
pub(crate) struct OracleSeries {
    pub(crate) key: SeriesKey,
    pub(crate) state: DetectorState,
    lifecycle: Lifecycle,
    /// Decision on every event so far, by index.
    decisions: Vec<Decision>,
}

/// The per-series path of the daemon, fed every event exactly once.
pub(crate) struct Oracle {
    detector: Detector,
    rule: AlertRule,
    decoder: Decoder,
    pub(crate) series: Vec<OracleSeries>,
    /// Every alert, with the event index that caused it.
    pub(crate) alerts: Vec<(usize, Alert)>,
}

impl Oracle {
    pub(crate) fn new(config: &Config, stream: &Stream) -> Self {
        let detector = Detector::new(&config.detector, config.alert.threshold).unwrap();
        let rule = AlertRule::new(&config.alert, "alert").unwrap();
        let decoder = Decoder::new(&config.decode);
        let series = (0..stream.series)
            .map(|j| OracleSeries {
                key: decode(&decoder, &stream.payload(j, 0)).series,
                state: detector.new_state(),
                lifecycle: Lifecycle::default(),
                decisions: Vec::new(),
            })
            .collect();
        Self {
            detector,
            rule,
            decoder,
            series,
            alerts: Vec::new(),
        }
    }

    /// Feeds events `from..to` of every series.
    pub(crate) fn run(&mut self, stream: &Stream, from: usize, to: usize) {
        for i in from..to {
            for j in 0..stream.series {
                self.feed(j, i, &stream.payload(j, i));
            }
        }
    }

    fn feed(&mut self, j: usize, i: usize, payload: &[u8]) {
        let event = decode(&self.decoder, payload);
        let s = &mut self.series[j];
        assert_eq!(s.decisions.len(), i, "the oracle takes events in order");
        let d = self
            .detector
            .observe(&mut s.state, event.ts_ms, event.value)
            .unwrap();
        s.decisions.push(d);
        if let Some(t) = s.lifecycle.step(&self.rule, event.ts_ms, event.value, &d) {
            let alert = build_alert(
                &s.key,
                &t,
                event.ts_ms,
                event.value,
                &d,
                s.lifecycle.peak_score(),
                &self.rule,
                self.detector.model_name(),
            );
            self.alerts.push((i, alert));
        }
    }

    /// The reference alert for (fingerprint, ts), if there is one.
    fn alert(&self, fingerprint: &str, ts: &str) -> Option<&Alert> {
        self.alerts
            .iter()
            .map(|(_, a)| a)
            .find(|a| a.fingerprint == fingerprint && a.ts == ts)
    }

    /// The snapshot records of the series of `partition`, as a shard would
    /// write them.
    pub(crate) fn records(&self, stream: &Stream, partition: i32) -> Vec<SnapshotRecord> {
        stream
            .series_of(partition)
            .map(|j| {
                let s = &self.series[j];
                SnapshotRecord {
                    partition: part(partition),
                    fingerprint: s.key.fingerprint(),
                    bytes: anomalyd::state::encode_series(&s.key, &s.state, &s.lifecycle).unwrap(),
                }
            })
            .collect()
    }
}

fn decode(decoder: &Decoder, payload: &[u8]) -> Event {
    let (mut events, mut errors) = (Vec::new(), Vec::new());
    decoder.decode(payload, None, &mut events, &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(events.len(), 1);
    events.pop().unwrap()
}

/// The durable name of partition `partition` of the `metrics` topic.
fn name(partition: i32) -> PartitionName {
    PartitionName {
        stream: "metrics".into(),
        partition,
    }
}

pub(crate) fn part(partition: i32) -> SourcePartition {
    SourcePartition {
        stream: 0,
        partition,
    }
}

/// Asserts `got` agrees with the reference alert of the same series and
/// event, to 1e-9 on every number the model produces.
pub(crate) fn assert_matches_reference(got: &Alert, oracle: &Oracle, context: &str) {
    let want = oracle.alert(&got.fingerprint, &got.ts).unwrap_or_else(|| {
        panic!(
            "{context}: alert {} {:?} at {} has no counterpart in an uninterrupted run",
            got.series, got.status, got.ts
        )
    });
    assert_eq!(
        got.status, want.status,
        "{context}: {} at {}",
        got.series, got.ts
    );
    assert_eq!(got.started_at, want.started_at, "{context}: {}", got.series);
    for (what, g, w) in [
        ("expected", got.expected, want.expected),
        ("lower", got.lower, want.lower),
        ("upper", got.upper, want.upper),
        ("score", got.score, want.score),
    ] {
        assert!(
            (g - w).abs() <= 1e-9,
            "{context}: {what} of {} at {}: {g} vs {w} uninterrupted",
            got.series,
            got.ts
        );
    }
}

// ---------------------------------------------------------------------------
// Kafka and process helpers
// ---------------------------------------------------------------------------

/// A mock cluster that lives until the process ends. If a test fails while
/// an in-process daemon runs, the runtime drops the daemon after the test's
/// locals: with the broker already gone, closing its consumer would wait
/// forever and turn the failure into a hang.
fn cluster(
    topics: &[(&str, i32)],
) -> &'static rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    Box::leak(Box::new(support::cluster(topics)))
}

/// A daemon config for the state tests: `support::config` plus a state
/// store, one-second snapshots and quick group membership.
pub(crate) fn state_config(bootstrap: &str, group: &str, store: StoreKind, dir: &Path) -> Config {
    let mut c = support::config(bootstrap, group, "metrics");
    c.state.store = store;
    c.state.dir = dir.to_path_buf();
    c.state.changelog_topic = "state".into();
    c.state.snapshot_interval_secs = 1;
    // A killed member leaves the group after the session timeout; keep the
    // restart quick. Heartbeats must come well within it.
    c.kafka.session_timeout_ms = 3_000;
    c.kafka
        .options
        .insert("heartbeat.interval.ms".into(), "500".into());
    c.metrics.per_series.enabled = true;
    c
}

/// All messages of a single-partition topic, decoded as alerts, with their
/// offsets: from the beginning to the end a fetch finds at the time of the
/// call (not to the high watermark of ListOffsets, which tansu reports at
/// the first record of the last batch).
pub(crate) fn alerts_in(bootstrap: &str, topic: &str) -> Vec<(i64, Alert)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "alerts-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        let m = match consumer.poll(Duration::from_millis(100)) {
            None => continue,
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return out,
            Some(m) => m.unwrap(),
        };
        let alert: Alert = serde_json::from_slice(m.payload().unwrap()).unwrap();
        out.push((m.offset(), alert));
    }
}

/// The end of partition 0 of an alert topic: its last offset + 1.
fn alerts_end(bootstrap: &str, topic: &str) -> i64 {
    alerts_in(bootstrap, topic).last().map_or(0, |(o, _)| o + 1)
}

/// Commits `offsets` (partition → offset) of `topic` for `group`, as if a
/// previous member had got that far.
fn commit_offsets(bootstrap: &str, group: &str, topic: &str, offsets: &[(i32, i64)]) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for &(p, o) in offsets {
        tpl.add_partition_offset(topic, p, Offset::Offset(o))
            .unwrap();
    }
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
}

/// GET /metrics of a daemon; `None` while it is not up.
pub(crate) async fn scrape(addr: &str) -> Option<String> {
    let r = support::client()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .ok()?;
    r.text().await.ok()
}

/// A metric's value in an exposition, 0 when absent.
pub(crate) fn metric(text: &str, selector: &str) -> f64 {
    support::metric_value(text, selector).unwrap_or(0.0)
}

/// `anomalyd_series_expected` of series `s{j}` (unlabelled series).
fn expected_gauge(text: &str, j: usize) -> Option<f64> {
    support::metric_value(
        text,
        &format!("anomalyd_series_expected{{series=\"{}\"}}", Stream::name(j)),
    )
}

/// The `anomalyd` binary running `run --config <file>`, its stderr in a
/// file.
pub(crate) struct Daemon {
    child: std::process::Child,
    pub(crate) metrics_addr: String,
    log: PathBuf,
}

impl Daemon {
    pub(crate) fn spawn(mut config: Config, dir: &Path, name: &str) -> Self {
        let port = support::free_port();
        config.metrics.listen_addr = format!("127.0.0.1:{port}");
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config.to_toml().unwrap()).unwrap();
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_anomalyd"))
            .arg("run")
            .arg("--config")
            .arg(&path)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self {
            child,
            metrics_addr: format!("127.0.0.1:{port}"),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls /metrics until `check` holds; panics with the log otherwise.
    pub(crate) async fn wait_for(&mut self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(text) = scrape(&self.metrics_addr).await
                && check(&text)
            {
                return text;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "anomalyd exited ({status}) waiting for {what}:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(sig)
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} failed");
    }

    /// SIGKILL: no drain, no final snapshot, no commit.
    fn kill9(mut self) {
        self.signal("-9");
        self.child.wait().unwrap();
    }

    /// SIGTERM and wait for a clean exit (status 0).
    pub(crate) async fn stop(mut self) -> String {
        self.signal("-TERM");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = self.log();
                assert!(status.success(), "anomalyd exited with {status}:\n{log}");
                return log;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // A failed test must not leave the child running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// 5. A burst of new series stays within max_series
// ---------------------------------------------------------------------------

/// Set in the child process that runs the burst alone, so its memory
/// figures are not mixed with other tests running in parallel threads.
const BURST_CHILD: &str = "ANOMALYD_TEST_BURST_CHILD";

#[test]
fn a_burst_of_new_series_stays_within_max_series() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "state::burst_of_new_series_in_own_process",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(BURST_CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("1 passed"),
        "the child ran no test:\n{stdout}\n{stderr}"
    );
    eprintln!("{stderr}");
}

/// No-op alert hand-off: the burst is about memory, not alerts.
struct Discard;
impl AlertHandoff for Discard {
    fn hand_off(&self, _: anomalyd::alert::SeriesAlert) {}
}

/// `VmRSS` or `VmHWM` of this process, in bytes.
fn proc_status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"));
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

#[test]
#[ignore = "run by a_burst_of_new_series_stays_within_max_series in a process of its own"]
fn burst_of_new_series_in_own_process() {
    if std::env::var_os(BURST_CHILD).is_none() {
        eprintln!(
            "skipped: runs only as the child of a_burst_of_new_series_stays_within_max_series"
        );
        return;
    }
    // 200,000 new series at a cap of 20,000 in the debug build (1,000,000
    // at 100,000 took ~50 s of CPU there); ANOMALYD_TEST_BURST_SERIES sets
    // another count, e.g. 1000000 with `--release`. The cap is a tenth.
    let new: usize = std::env::var("ANOMALYD_TEST_BURST_SERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let cap = new / 10;
    const HOT: usize = 100;
    const BATCH: usize = 2_000;
    let metrics = Arc::new(
        Metrics::new(
            prometheus::Registry::new(),
            &MetricsConfig::default(),
            &[],
            &[],
        )
        .unwrap(),
    );
    let config = Config::default();
    let core = Arc::new(Core {
        detector: Detector::new(&config.detector, config.alert.threshold).unwrap(),
        rule: AlertRule::new(&config.alert, "alert").unwrap(),
        alerts: Arc::new(Discard),
        metrics: Arc::clone(&metrics),
        options: Default::default(),
    });
    let pipeline = Pipeline::start(
        &PipelineConfig {
            workers: 2,
            max_series: cap,
            ..PipelineConfig::default()
        },
        core,
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let key = |kind: &str, i: usize| {
        SeriesKey::new("burst", [("kind", kind.to_string()), ("id", i.to_string())])
    };
    let hot: Vec<SeriesKey> = (0..HOT).map(|i| key("hot", i)).collect();
    let rss_before = proc_status_bytes("VmRSS:");
    let started = Instant::now();
    let mut max_active = 0.0f64;
    rt.block_on(async {
        let mut ts = T0_MS;
        for b in 0..new / BATCH {
            // The hot series get an event in every batch, among the new.
            let mut events: Vec<Event> = hot
                .iter()
                .map(|k| Event {
                    series: k.clone(),
                    ts_ms: ts,
                    value: 1.0,
                })
                .collect();
            events.extend((b * BATCH..(b + 1) * BATCH).map(|i| Event {
                series: key("new", i),
                ts_ms: ts,
                value: (i % 7) as f64,
            }));
            ts += 60_000;
            pipeline
                .dispatch(part(0), events, Instant::now())
                .await
                .unwrap();
            if b % 25 == 0 {
                pipeline.barrier(BarrierKind::Sync).await.unwrap();
                let text = metrics.render().unwrap();
                let active = metric(&text, "anomalyd_series_active");
                max_active = max_active.max(active);
                assert!(active <= cap as f64, "{active} series held after batch {b}");
            }
        }
    });
    let report = rt
        .block_on(pipeline.barrier(BarrierKind::Snapshot {
            partitions: None,
            only_dirty: false,
        }))
        .unwrap();
    let elapsed = started.elapsed();
    let text = metrics.render().unwrap();
    let active = metric(&text, "anomalyd_series_active");
    let evicted = metric(&text, "anomalyd_series_evicted_total");
    let held = report.series;
    let seen = new + HOT;
    assert_eq!(active, held as f64, "the gauge is the number held");
    assert!(held <= cap, "{held} > {cap}");
    // Each shard evicts 1% of its share at a time: it stays near the cap.
    assert!(held >= cap * 97 / 100, "only {held} held");
    assert_eq!(evicted, (seen - held) as f64, "evicted = seen - held");
    // The hot series were seen in every batch: never the least recent.
    let kept: std::collections::HashSet<u64> =
        report.records.iter().map(|r| r.fingerprint).collect();
    let lost = hot
        .iter()
        .filter(|k| !kept.contains(&k.fingerprint()))
        .count();
    assert_eq!(lost, 0, "{lost} of {HOT} hot series were evicted");
    let hwm = proc_status_bytes("VmHWM:");
    let rss = proc_status_bytes("VmRSS:");
    let growth = hwm.saturating_sub(rss_before);
    eprintln!(
        "burst: {seen} series, cap {cap}: held {held} (max {max_active}), evicted {evicted}; \
         RSS {:.0} MiB before, {:.0} MiB after, peak {:.0} MiB; {:.1} s",
        rss_before as f64 / 1048576.0,
        rss as f64 / 1048576.0,
        hwm as f64 / 1048576.0,
        elapsed.as_secs_f64()
    );
    // The bound: 4 KiB per series the cap allows. A held series costs
    // ~1.5 KiB (1,056 B of detector state, the key, the map slot;
    // `cargo bench --bench state`); the rest covers the snapshot records
    // just taken (~0.7 KiB each), batches queued in the shards and freed
    // memory the allocator keeps, which vary from run to run: 3.1 to 3.5
    // KiB in all, measured on 2 cores (60 to 69 MiB here; at 3.5 KiB the
    // bound failed one run in four). Holding every series instead would
    // cost >= 10 x 1.5 KiB per allowed series, nearly four times the bound.
    let bound = cap as u64 * 4 * 1024;
    assert!(
        growth < bound,
        "peak RSS grew by {} MiB, over the {} MiB bound",
        growth / 1048576,
        bound / 1048576
    );
}

// ---------------------------------------------------------------------------
// 1. kill -9 mid-stream, restart
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_then_restart_continues_as_if_uninterrupted() {
    let mock = cluster(&[("metrics", 3), ("alerts", 1)]);
    kill_9_mid_stream_then_restart(&mock.bootstrap_servers()).await;
}

/// The daemon binary on the dir store, SIGKILLed mid-stream and restarted,
/// against the broker at `bootstrap` (topics `metrics` with 3 partitions and
/// `alerts` with 1): every series restored, exactly the events after the
/// snapshots learned again, every alert after the kill as an uninterrupted
/// run has it.
pub(crate) async fn kill_9_mid_stream_then_restart(bootstrap: &str) {
    let stream = Stream {
        series: 6,
        partitions: 3,
        spikes: vec![250, 450, 620, 850, 1050],
    };
    const N: usize = 1200;
    const PHASE_A: usize = 500; // before the first snapshot we wait for
    const PHASE_B: usize = 800; // the kill lands in here
    let s = stream.series;
    let tmp = tempfile::tempdir().unwrap();
    let config = state_config(
        bootstrap,
        "kill9",
        StoreKind::Dir,
        &tmp.path().join("state"),
    );
    let mut oracle = Oracle::new(&config, &stream);
    oracle.run(&stream, 0, N);
    let producer = Arc::new(TestProducer::new(bootstrap));

    // Phase A, then a snapshot that covers it.
    let mut first = Daemon::spawn(config.clone(), tmp.path(), "first");
    stream.produce(&producer, "metrics", 0, PHASE_A);
    first
        .wait_for("phase A processed", |t| {
            metric(t, "anomalyd_events_processed_total") >= (s * PHASE_A) as f64
        })
        .await;
    let written = metric(
        &scrape(&first.metrics_addr).await.unwrap(),
        "anomalyd_snapshots_written_total",
    );
    first
        .wait_for("a snapshot after phase A", |t| {
            metric(t, "anomalyd_snapshots_written_total") > written
        })
        .await;

    // Phase B goes in at a steady pace from another thread; SIGKILL lands
    // while it is being consumed, with messages still to come.
    let sent = Arc::new(AtomicUsize::new(PHASE_A));
    let pacer = {
        let (stream, producer, sent) = (stream.clone(), Arc::clone(&producer), Arc::clone(&sent));
        std::thread::spawn(move || {
            for i in PHASE_A..PHASE_B {
                stream.produce(&producer, "metrics", i, i + 1);
                sent.store(i + 1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(4));
            }
        })
    };
    let kill_at = (PHASE_A + PHASE_B) / 2;
    first
        .wait_for("half of phase B processed", |t| {
            metric(t, "anomalyd_events_processed_total") >= (s * kill_at) as f64
        })
        .await;
    first.kill9();
    let sent_at_kill = sent.load(Ordering::SeqCst);
    assert!(sent_at_kill < PHASE_B, "the kill was not mid-stream");
    let committed_at_kill = support::committed(bootstrap, "kill9", "metrics", 3);
    let alerts_before = alerts_end(bootstrap, "alerts");
    assert!(alerts_before > 0, "the stream alerts before the kill");

    // Restart; phase B finishes meanwhile, then phase C after the restart.
    let mut second = Daemon::spawn(config.clone(), tmp.path(), "second");
    pacer.join().unwrap();
    second
        .wait_for("the restart restored the snapshots", |t| {
            metric(t, "anomalyd_series_restored_total") >= s as f64
        })
        .await;
    stream.produce(&producer, "metrics", PHASE_B, N);
    let per_partition = (N * s / stream.partitions as usize) as i64;
    support::poll_until("committed offsets reach the end", WAIT, || {
        let c = support::committed(bootstrap, "kill9", "metrics", 3);
        async move { (0..3).all(|p| c.get(&p) == Some(&per_partition)) }
    })
    .await;
    let text = scrape(&second.metrics_addr).await.unwrap();
    let log = second.stop().await;

    // Every series restored (not relearned), and the restart re-read only
    // what the snapshot did not cover.
    assert_eq!(
        metric(&text, "anomalyd_series_restored_total"),
        s as f64,
        "{log}"
    );
    let processed_again = metric(&text, "anomalyd_events_processed_total") as usize;
    let snapshot_offsets: Vec<i64> = log
        .lines()
        .filter(|l| l.contains("Restored partition state."))
        .filter_map(|l| {
            l.split("offset=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(
        snapshot_offsets.len(),
        3,
        "one restore per partition:\n{log}"
    );
    let covered: i64 = snapshot_offsets.iter().sum();
    assert!(
        covered >= (s * PHASE_A) as i64,
        "the snapshots cover phase A"
    );
    assert_eq!(
        processed_again as i64,
        (N * s) as i64 - covered,
        "after the restart, exactly the events after the snapshots are learned"
    );
    for (p, o) in &committed_at_kill {
        let restored = snapshot_offsets.iter().any(|s| s >= o);
        assert!(
            restored,
            "partition {p}: a snapshot at or past the committed {o}"
        );
    }

    // Alerts from the restarted daemon agree with an uninterrupted run.
    let all = alerts_in(bootstrap, "alerts");
    let after: Vec<&Alert> = all
        .iter()
        .filter(|(o, _)| *o >= alerts_before)
        .map(|(_, a)| a)
        .collect();
    eprintln!(
        "kill -9 at event {sent_at_kill} of {N}; committed then {committed_at_kill:?}; \
         snapshots at {snapshot_offsets:?}; {processed_again} events learned after the \
         restart; {alerts_before} alerts before, {} after",
        after.len()
    );
    for a in &after {
        assert_matches_reference(a, &oracle, "after the restart");
    }
    // ... and it emitted every alert of the events it had not seen before
    // the kill (the spikes at 620+, 850+ and 1050+ at least).
    let late: Vec<&Alert> = oracle
        .alerts
        .iter()
        .filter(|(i, _)| *i >= sent_at_kill)
        .map(|(_, a)| a)
        .collect();
    assert!(
        late.len() >= 2 * s,
        "the stream alerts late: {}",
        late.len()
    );
    for want in late {
        assert!(
            after
                .iter()
                .any(|a| a.fingerprint == want.fingerprint && a.ts == want.ts),
            "missing after the restart: {} {:?} at {}",
            want.series,
            want.status,
            want.ts
        );
    }
    // Before the kill, too, every alert matched (at-least-once may repeat
    // some after the restart; none may differ).
    for (_, a) in all.iter().filter(|(o, _)| *o < alerts_before) {
        assert_matches_reference(a, &oracle, "before the kill");
    }
}

// ---------------------------------------------------------------------------
// 2. Two instances, one group, the changelog store
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_split_partitions_and_a_survivor_continues_from_the_changelog() {
    let mock = cluster(&[("metrics", 4), ("alerts", 1), ("state", 4)]);
    two_instances_hand_over_through_the_changelog(&mock.bootstrap_servers()).await;
}

/// Two daemons in one group on the changelog store, against the broker at
/// `bootstrap` (topics `metrics` and `state` with 4 partitions, `alerts`
/// with 1): they split the partitions, and when one stops the other takes
/// its series over from the changelog and continues them as an
/// uninterrupted run would.
pub(crate) async fn two_instances_hand_over_through_the_changelog(bootstrap: &str) {
    let stream = Stream {
        series: 8,
        partitions: 4,
        // 300 is the first event after the move: a fresh series would still
        // be warming up (score 0, no alert) for 100 events.
        spikes: vec![180, 300],
    };
    const HALF: usize = 150;
    const MOVE_AT: usize = 300;
    const N: usize = 330;
    let s = stream.series;
    let tmp = tempfile::tempdir().unwrap();
    let config = state_config(bootstrap, "scale", StoreKind::Changelog, tmp.path());
    let mut oracle = Oracle::new(&config, &stream);
    oracle.run(&stream, 0, N);
    let a = app::start(config.clone()).await.expect("start A");
    let b = app::start(config.clone()).await.expect("start B");
    let (a_addr, b_addr) = (a.metrics_addr.to_string(), b.metrics_addr.to_string());
    let active = |addr: String| async move {
        scrape(&addr)
            .await
            .map_or(0.0, |t| metric(&t, "anomalyd_series_active"))
    };

    // The first half of phase 1 goes in while the group forms: whoever
    // joins first may take every partition and hand half of them over
    // (through the changelog) when the other joins.
    let producer = TestProducer::new(bootstrap);
    stream.produce(&producer, "metrics", 0, HALF);
    support::poll_until("both members to hold series", WAIT, || {
        let (a_addr, b_addr) = (a_addr.clone(), b_addr.clone());
        let done = a.metrics.events_processed_total() + b.metrics.events_processed_total()
            >= (s * HALF) as u64;
        async move {
            let (na, nb) = (active(a_addr).await, active(b_addr).await);
            done && na > 0.0 && nb > 0.0 && na + nb == s as f64
        }
    })
    .await;
    stream.produce(&producer, "metrics", HALF, MOVE_AT);
    let (ma, mb) = (Arc::clone(&a.metrics), Arc::clone(&b.metrics));
    support::poll_until("phase 1 processed by the two", WAIT, || {
        let total = ma.events_processed_total() + mb.events_processed_total();
        async move { total >= (s * MOVE_AT) as u64 }
    })
    .await;
    assert_eq!(
        a.metrics.events_processed_total() + b.metrics.events_processed_total(),
        (s * MOVE_AT) as u64,
        "every event learned once, whoever held its partition"
    );
    // Each member holds whole partitions: both series of a partition on
    // the same member, and each member some.
    let a_text = scrape(&a_addr).await.unwrap();
    let b_text = scrape(&b_addr).await.unwrap();
    let on_a = |j: usize| expected_gauge(&a_text, j).is_some();
    for j in 0..s {
        assert_ne!(
            on_a(j),
            expected_gauge(&b_text, j).is_some(),
            "s{j} on exactly one member"
        );
    }
    let a_parts: Vec<i32> = (0..4).filter(|&p| stream.series_of(p).all(on_a)).collect();
    let b_parts: Vec<i32> = (0..4)
        .filter(|&p| stream.series_of(p).all(|j| !on_a(j)))
        .collect();
    assert_eq!(
        a_parts.len() + b_parts.len(),
        4,
        "split by partition: A {a_parts:?}, B {b_parts:?}"
    );
    assert!(
        !a_parts.is_empty() && !b_parts.is_empty(),
        "A {a_parts:?}, B {b_parts:?}"
    );
    eprintln!("A holds partitions {a_parts:?}, B {b_parts:?}");

    // A stops gracefully: final snapshot to the changelog, commit, leave.
    // B takes A's partitions over and restores their series.
    a.shutdown();
    a.wait().await.expect("A stops cleanly");
    support::poll_until("B to hold every series", WAIT, || {
        let n = active(b_addr.clone());
        async move { n.await == s as f64 }
    })
    .await;

    // The moved series continue where A left them.
    let b_before = b.metrics.events_processed_total();
    stream.produce(&producer, "metrics", MOVE_AT, N);
    support::poll_until("phase 2 processed by B", WAIT, || {
        let total = b.metrics.events_processed_total();
        async move { total >= b_before + ((N - MOVE_AT) * s) as u64 }
    })
    .await;
    let text = scrape(&b_addr).await.unwrap();
    assert_eq!(
        b.metrics.events_processed_total() - b_before,
        ((N - MOVE_AT) * s) as u64,
        "nothing learned twice across the hand-over"
    );
    for j in 0..s {
        let got = expected_gauge(&text, j).unwrap_or_else(|| panic!("s{j} on B"));
        let want = oracle.series[j].decisions[N - 1].expected;
        assert!(
            (got - want).abs() <= 1e-9,
            "s{j}: expected {got} on B, {want} uninterrupted"
        );
    }
    let per_partition = (N * s / 4) as i64;
    support::poll_until("committed offsets reach the end", WAIT, || {
        let c = support::committed(bootstrap, "scale", "metrics", 4);
        async move { (0..4).all(|p| c.get(&p) == Some(&per_partition)) }
    })
    .await;
    b.shutdown();
    b.wait().await.expect("B stops cleanly");

    // The spike right after the move alerted, on every series, with the
    // uninterrupted run's numbers: no warm-up happened.
    let alerts = alerts_in(bootstrap, "alerts");
    for j in 0..s {
        let ts = anomalyd::alert::lifecycle::rfc3339_ms(Stream::ts(MOVE_AT + j));
        let fired = alerts
            .iter()
            .map(|(_, a)| a)
            .find(|a| a.series == Stream::name(j) && a.ts == ts && a.status == AlertStatus::Firing)
            .unwrap_or_else(|| panic!("s{j} did not fire at {ts} right after the move"));
        assert_matches_reference(fired, &oracle, "after the move");
    }
    for (_, a) in &alerts {
        assert_matches_reference(a, &oracle, "any time");
    }
}

// ---------------------------------------------------------------------------
// 3 + 4. Damaged and incompatible snapshots
// ---------------------------------------------------------------------------

/// Writes the dir-store snapshot of every partition of `stream` as it
/// stands in `oracle`, covering `offset` per partition.
fn write_snapshots(config: &Config, stream: &Stream, oracle: &Oracle, offset: i64) -> DirStore {
    let store = DirStore::new(
        &config.state.dir,
        store_hash(config),
        Duration::from_secs(1),
    )
    .unwrap();
    let snapshots: Vec<PartitionSnapshot> = (0..stream.partitions)
        .map(|p| PartitionSnapshot {
            name: name(p),
            position: offset,
            records: oracle.records(stream, p),
        })
        .collect();
    store.save(&snapshots).unwrap();
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_or_foreign_snapshots_are_named_in_the_log_and_their_series_relearn() {
    let stream = Stream {
        series: 8,
        partitions: 4,
        spikes: vec![],
    };
    const K: usize = 200; // events in the snapshots
    const N: usize = 240;
    let s = stream.series;
    let per_partition = |i: usize| (i * s / 4) as i64;
    let mock = cluster(&[("metrics", 4), ("alerts", 1)]);
    let bootstrap = mock.bootstrap_servers();
    let tmp = tempfile::tempdir().unwrap();
    let config = state_config(
        &bootstrap,
        "damaged",
        StoreKind::Dir,
        &tmp.path().join("state"),
    );

    let mut at_k = Oracle::new(&config, &stream);
    at_k.run(&stream, 0, K);
    let store = write_snapshots(&config, &stream, &at_k, per_partition(K));
    let mut full = Oracle::new(&config, &stream);
    full.run(&stream, 0, N);
    // What a series that starts from scratch at event K predicts.
    let mut fresh = Oracle::new(&config, &stream);
    for i in K..N {
        for j in 0..s {
            let payload = stream.payload(j, i);
            let event = decode(&fresh.decoder, &payload);
            let d = fresh
                .detector
                .observe(&mut fresh.series[j].state, event.ts_ms, event.value)
                .unwrap();
            fresh.series[j].decisions.push(d);
        }
    }

    // Partition 0: one flipped byte in a record. 1: cut in half. 2: a
    // future schema version. 3: intact.
    let path = |p: i32| store.path(&name(p));
    let mut bytes = std::fs::read(path(0)).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(path(0), &bytes).unwrap();
    let bytes = std::fs::read(path(1)).unwrap();
    std::fs::write(path(1), &bytes[..bytes.len() / 2]).unwrap();
    let mut foreign = std::fs::read(path(2)).unwrap();
    let future = anomalyd::state::SCHEMA_VERSION + 1;
    foreign[8..12].copy_from_slice(&future.to_le_bytes());
    std::fs::write(path(2), &foreign).unwrap();

    // Partitions 0-2 resume after the snapshot (their state is lost, so
    // their series start from scratch at K); partition 3 from the
    // beginning, so its restore must skip what the snapshot holds.
    let k = per_partition(K);
    commit_offsets(
        &bootstrap,
        "damaged",
        "metrics",
        &[(0, k), (1, k), (2, k), (3, 0)],
    );
    stream.produce(&TestProducer::new(&bootstrap), "metrics", 0, N);

    let mut daemon = Daemon::spawn(config.clone(), tmp.path(), "damaged");
    let want = ((N - K) * s) as f64;
    let text = daemon
        .wait_for("the events after the snapshots", |t| {
            metric(t, "anomalyd_events_processed_total") >= want
        })
        .await;
    support::poll_until("offsets committed to the end", WAIT, || {
        let c = support::committed(&bootstrap, "damaged", "metrics", 4);
        async move { (0..4).all(|p| c.get(&p) == Some(&per_partition(N))) }
    })
    .await;
    let text_end = scrape(&daemon.metrics_addr).await.unwrap();
    let log = daemon.stop().await;

    assert_eq!(
        metric(&text_end, "anomalyd_events_processed_total"),
        want,
        "partition 3 skipped the events its snapshot holds; log:\n{log}"
    );
    assert_eq!(
        metric(&text, "anomalyd_series_restored_total"),
        2.0,
        "{log}"
    );
    assert_eq!(metric(&text_end, "anomalyd_series_active"), s as f64);
    for j in 0..s {
        let got = expected_gauge(&text_end, j).unwrap();
        let (want, what) = if stream.partition(j) == 3 {
            (full.series[j].decisions[N - 1].expected, "continued")
        } else {
            (fresh.series[j].decisions[N - K - 1].expected, "relearned")
        };
        assert!(
            (got - want).abs() <= 1e-9,
            "s{j} should have {what}: expected {got}, want {want}"
        );
        let other = full.series[j].decisions[N - 1].expected;
        assert!(
            what == "continued" || (got - other).abs() > 1e-6,
            "s{j}: the test cannot tell"
        );
    }

    // One warning per damaged file, naming it and saying what happened.
    let line = |p: i32| {
        let name = path(p).display().to_string();
        log.lines()
            .find(|l| l.contains("WARN") && l.contains(&name))
            .unwrap_or_else(|| panic!("no warning names {name}:\n{log}"))
            .to_string()
    };
    for p in [0, 1] {
        let l = line(p);
        assert!(l.contains("is corrupted") && l.contains("relearn"), "{l}");
    }
    assert!(line(1).contains("truncated"), "{}", line(1));
    let l = line(2);
    eprintln!("version warning: {l}");
    let current = anomalyd::state::SCHEMA_VERSION;
    assert!(
        l.contains(&format!("schema version {future}"))
            && l.contains(&format!("reads version {current}")),
        "{l}"
    );
    // It says what to do, and the state of the other version is kept.
    let kept = path(2).with_extension(format!("snap.v{future}"));
    assert!(l.contains(&format!("moved to {}", kept.display())), "{l}");
    assert!(
        l.contains(&format!("run an anomalyd that reads version {future}")),
        "{l}"
    );
    assert_eq!(std::fs::read(&kept).unwrap(), foreign);
    assert!(!log.contains(&format!("{}\n", path(3).display())), "{log}");
    // The final snapshot replaced every damaged file with a good one.
    for p in 0..4 {
        let bytes = std::fs::read(path(p)).unwrap();
        let what = path(p).display().to_string();
        let loaded = anomalyd::state::dir::parse(&bytes, &what, store_hash(&config)).unwrap();
        assert_eq!(loaded.position, per_partition(N), "{what}");
        assert_eq!(loaded.series.len(), 2, "{what}");
    }
}

pub(crate) fn store_hash(config: &Config) -> u64 {
    Detector::new(&config.detector, config.alert.threshold)
        .unwrap()
        .model_hash()
}

// ---------------------------------------------------------------------------
// 4. Config changes across a restart
// ---------------------------------------------------------------------------

/// Snapshots both series of `stream` (one partition) after `k` events,
/// then runs the daemon with `changed` from offset `k` on to `n` events;
/// returns its final metrics and the alerts it emitted.
async fn restart_with(
    stream: &Stream,
    original: &Oracle,
    changed: impl FnOnce(&mut Config),
    group: &str,
    k: usize,
    n: usize,
) -> (String, Vec<Alert>, Config) {
    let mock = cluster(&[("metrics", 1), ("alerts", 1)]);
    let bootstrap = mock.bootstrap_servers();
    let tmp = tempfile::tempdir().unwrap();
    let mut config = state_config(&bootstrap, group, StoreKind::Dir, tmp.path());
    write_snapshots(&config, stream, original, (k * stream.series) as i64);
    changed(&mut config);
    commit_offsets(
        &bootstrap,
        group,
        "metrics",
        &[(0, (k * stream.series) as i64)],
    );
    stream.produce(&TestProducer::new(&bootstrap), "metrics", 0, n);
    let want = ((n - k) * stream.series) as u64;
    let text = run_daemon(&config, async |r| processed(r, want).await).await;
    let alerts = alerts_in(&bootstrap, "alerts")
        .into_iter()
        .map(|(_, a)| a)
        .collect();
    (text, alerts, config)
}

/// The committed offset may be missing while a snapshot exists: a new
/// `group_id` on the same state, or group offsets that expired while the
/// daemon was down. The snapshot says where its state stopped, so the
/// daemon resumes there, not where `auto_offset_reset` points (here the
/// end of the topic, which would skip every event after the snapshot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_committed_offsets_a_restored_partition_resumes_at_its_snapshot() {
    const K: usize = 300;
    const N: usize = 360;
    let stream = Stream {
        series: 2,
        partitions: 2,
        spikes: vec![K + 30],
    };
    let mock = cluster(&[("metrics", 2), ("alerts", 1)]);
    let bootstrap = mock.bootstrap_servers();
    let tmp = tempfile::tempdir().unwrap();
    let mut config = state_config(&bootstrap, "fresh-group", StoreKind::Dir, tmp.path());
    config.kafka.auto_offset_reset = anomalyd::source::kafka::OffsetReset::Latest;
    let mut oracle = Oracle::new(&config, &stream);
    oracle.run(&stream, 0, K);
    // One series per partition: each partition's snapshot covers K events.
    write_snapshots(&config, &stream, &oracle, K as i64);
    stream.produce(&TestProducer::new(&bootstrap), "metrics", 0, N);
    oracle.run(&stream, K, N);

    let want = ((N - K) * stream.series) as u64;
    let mut counters = None;
    let text = run_daemon(&config, async |r| {
        counters = Some(Arc::clone(&r.metrics));
        processed(r, want).await
    })
    .await;
    // Exactly the events after the snapshot (counted after the shutdown
    // drained everything): none skipped, none twice.
    let counters = counters.expect("the daemon ran");
    assert_eq!(counters.events_processed_total(), want);
    assert_eq!(metric(&text, "anomalyd_series_restored_total"), 2.0);
    for j in 0..stream.series {
        let got = expected_gauge(&text, j).unwrap();
        let want = oracle.series[j].decisions[N - 1].expected;
        assert!(
            (got - want).abs() <= 1e-9,
            "s{j}: {got} vs uninterrupted {want}"
        );
    }
    // The spike after the snapshot alerts as in the uninterrupted run.
    let alerts = alerts_in(&bootstrap, "alerts");
    for (i, a) in oracle.alerts.iter().filter(|(i, _)| *i >= K) {
        let got = alerts
            .iter()
            .find(|(_, g)| g.fingerprint == a.fingerprint && g.ts == a.ts && g.status == a.status)
            .unwrap_or_else(|| panic!("the alert of event {i} ({}) is missing", a.series));
        assert_matches_reference(&got.1, &oracle, &format!("event {i}"));
    }
    assert!(
        oracle.alerts.iter().any(|(i, _)| *i >= K),
        "the stream must alert after the snapshot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_change_relearns_models_but_keeps_firing_alerts() {
    const K: usize = 300;
    const N: usize = 340;
    // Both series spike just before the snapshot and are firing in it
    // (only a spike's first point is a hit: the threshold inflates after
    // an anomaly; three quiet events resolve).
    let stream = Stream {
        series: 2,
        partitions: 1,
        spikes: vec![K - 2],
    };
    let base = state_config("unused", "unused", StoreKind::Dir, Path::new("unused"));
    let mut original = Oracle::new(&base, &stream);
    original.run(&stream, 0, K);
    let firing: Vec<&Alert> = original
        .alerts
        .iter()
        .filter(|(i, a)| *i >= K - 2 && a.status == AlertStatus::Firing)
        .map(|(_, a)| a)
        .collect();
    assert_eq!(firing.len(), 2, "both series fire before the snapshot");
    assert!(original.series.iter().all(|s| s.lifecycle.is_firing()));

    let (text, alerts, config) = restart_with(
        &stream,
        &original,
        |c| c.detector.model.lags = 4,
        "model",
        K,
        N,
    )
    .await;
    assert_eq!(metric(&text, "anomalyd_series_restored_total"), 2.0);
    // Models relearned: they predict what a fresh model of the new shape
    // predicts from event K on ...
    let mut fresh = Oracle::new(&config, &stream);
    for (j, s) in fresh.series.iter_mut().enumerate() {
        for i in K..N {
            let e = decode(&fresh.decoder, &stream.payload(j, i));
            let d = fresh
                .detector
                .observe(&mut s.state, e.ts_ms, e.value)
                .unwrap();
            s.decisions.push(d);
        }
    }
    for j in 0..2 {
        let got = expected_gauge(&text, j).unwrap();
        let want = fresh.series[j].decisions[N - K - 1].expected;
        assert!((got - want).abs() <= 1e-9, "s{j}: {got} vs fresh {want}");
    }
    // ... and the alerts that were firing still resolve (a lost lifecycle
    // would never resolve them), while the new models warm up (score 0).
    for f in firing {
        let resolved = alerts
            .iter()
            .find(|a| a.fingerprint == f.fingerprint && a.status == AlertStatus::Resolved)
            .unwrap_or_else(|| panic!("{} firing at {} never resolved", f.series, f.ts));
        assert_eq!(resolved.started_at, f.started_at);
        assert_eq!(resolved.score, 0.0, "a relearning model cannot score yet");
        let end = anomalyd::alert::lifecycle::rfc3339_ms(Stream::ts(K + 3));
        assert!(
            resolved.ts < end,
            "resolved at {} (3 quiet events)",
            resolved.ts
        );
    }
    assert!(
        alerts.iter().all(|a| a.status == AlertStatus::Resolved),
        "{alerts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_rule_change_keeps_the_learned_models() {
    const K: usize = 300;
    const N: usize = 390;
    let stream = Stream {
        series: 2,
        partitions: 1,
        // The second spike comes once the threshold's inflation after the
        // first (50 events) has passed.
        spikes: vec![K - 2, K + 70],
    };
    let base = state_config("unused", "unused", StoreKind::Dir, Path::new("unused"));
    let mut original = Oracle::new(&base, &stream);
    original.run(&stream, 0, K);
    assert!(original.series.iter().all(|s| s.lifecycle.is_firing()));
    let mut full = Oracle::new(&base, &stream);
    full.run(&stream, 0, N);

    let (text, alerts, _) = restart_with(
        &stream,
        &original,
        // (The alert and resolve thresholds also say where the detector's
        // episodes start and end; the severity and the cooldown do not.)
        |c| {
            c.alert.critical_threshold = Some(0.9);
            c.alert.cooldown_secs = 60;
        },
        "rule",
        K,
        N,
    )
    .await;
    assert_eq!(metric(&text, "anomalyd_series_restored_total"), 2.0);
    // The models continued: every number matches an uninterrupted run of
    // the detector, which the alert rule does not affect.
    for j in 0..2 {
        let got = expected_gauge(&text, j).unwrap();
        let want = full.series[j].decisions[N - 1].expected;
        assert!(
            (got - want).abs() <= 1e-9,
            "s{j}: {got} vs uninterrupted {want}"
        );
    }
    // Warm models alert on the spike after the restart, right away.
    for j in 0..2 {
        let i = K + 70 + j;
        let ts = anomalyd::alert::lifecycle::rfc3339_ms(Stream::ts(i));
        let a = alerts
            .iter()
            .find(|a| a.series == Stream::name(j) && a.ts == ts && a.status == AlertStatus::Firing)
            .unwrap_or_else(|| panic!("s{j} did not fire at {ts}: {alerts:?}"));
        let d = full.series[j].decisions[i];
        assert!((a.expected - d.expected).abs() <= 1e-9);
        assert!((a.score - d.score).abs() <= 1e-9 && a.score >= 0.5);
        // The new rule applies: a score under 0.9 is a warning now.
        assert_eq!(
            a.severity,
            if a.score >= 0.9 {
                anomalyd::alert::Severity::Critical
            } else {
                anomalyd::alert::Severity::Warning
            },
            "{a:?}"
        );
    }
    // The alerts firing in the snapshot resolved under the new rule.
    for j in 0..2 {
        let started = original
            .alerts
            .iter()
            .rev()
            .find(|(_, a)| a.series == Stream::name(j));
        let started = &started.unwrap().1.started_at;
        assert!(
            alerts.iter().any(|a| a.series == Stream::name(j)
                && a.status == AlertStatus::Resolved
                && &a.started_at == started),
            "s{j}: {alerts:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Changelog bookkeeping: series that move or go away
// ---------------------------------------------------------------------------

/// Starts a daemon on `config`, runs `feed` against it, stops it, and
/// returns its last metrics.
async fn run_daemon(config: &Config, feed: impl AsyncFnOnce(&app::Running)) -> String {
    let running = app::start(config.clone()).await.expect("start");
    feed(&running).await;
    let text = scrape(&running.metrics_addr.to_string()).await.unwrap();
    running.shutdown();
    running.wait().await.expect("clean shutdown");
    text
}

/// Waits for a snapshot taken after this call.
async fn next_snapshot(running: &app::Running) {
    let addr = running.metrics_addr.to_string();
    let written =
        |t: Option<String>| t.map_or(0.0, |t| metric(&t, "anomalyd_snapshots_written_total"));
    let before = written(scrape(&addr).await);
    support::poll_until("a snapshot", WAIT, || {
        let addr = addr.clone();
        async move { written(scrape(&addr).await) > before }
    })
    .await;
}

async fn processed(running: &app::Running, n: u64) {
    let m = Arc::clone(&running.metrics);
    support::poll_until(&format!("{n} events processed"), WAIT, || {
        let done = m.events_processed_total() >= n;
        async move { done }
    })
    .await;
}

/// A series keyed to another partition (e.g. after the input topic grew)
/// leaves a record in its old changelog partition; restoring both would let
/// the stale one win when its partition is restored last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_series_that_moved_partition_is_restored_from_its_new_partition_only() {
    let stream = Stream {
        series: 1,
        partitions: 1,
        spikes: vec![],
    };
    let mock = cluster(&[("metrics", 2), ("alerts", 1), ("state", 2)]);
    let bootstrap = mock.bootstrap_servers();
    let tmp = tempfile::tempdir().unwrap();
    let config = state_config(&bootstrap, "moved", StoreKind::Changelog, tmp.path());
    let mut oracle = Oracle::new(&config, &stream);
    oracle.run(&stream, 0, 300);
    let p = TestProducer::new(&bootstrap);
    let send = |from: usize, to: usize, partition: i32| {
        for i in from..to {
            p.send("metrics", Some(partition), "s0", &stream.payload(0, i));
        }
        p.flush();
    };
    // Events 0..200 on partition 1, then 200..260 on partition 0.
    run_daemon(&config, async |r| {
        send(0, 200, 1);
        processed(r, 200).await;
        next_snapshot(r).await; // s0 saved in partition 1
        send(200, 260, 0);
        processed(r, 260).await;
    })
    .await;
    let text = run_daemon(&config, async |r| {
        send(260, 300, 0);
        processed(r, 40).await;
    })
    .await;
    assert_eq!(
        metric(&text, "anomalyd_series_restored_total"),
        1.0,
        "restored once, from partition 0"
    );
    let got = expected_gauge(&text, 0).unwrap();
    let want = oracle.series[0].decisions[299].expected;
    assert!((got - want).abs() <= 1e-9, "{got} vs uninterrupted {want}");
}

/// Idle series are evicted with a state store too, and an evicted series
/// is forgotten by the changelog: it does not come back on restore.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_series_are_evicted_and_do_not_come_back_from_the_changelog() {
    let stream = Stream {
        series: 2,
        partitions: 1,
        spikes: vec![],
    };
    let mock = cluster(&[("metrics", 1), ("alerts", 1), ("state", 1)]);
    let bootstrap = mock.bootstrap_servers();
    let tmp = tempfile::tempdir().unwrap();
    let mut config = state_config(&bootstrap, "idle", StoreKind::Changelog, tmp.path());
    config.pipeline.idle_ttl_secs = 3;
    let p = TestProducer::new(&bootstrap);
    let addr = std::sync::Mutex::new(String::new());
    run_daemon(&config, async |r| {
        *addr.lock().unwrap() = r.metrics_addr.to_string();
        stream.produce(&p, "metrics", 0, 10);
        processed(r, 20).await;
        next_snapshot(r).await; // both saved
        // s1 keeps reporting, s0 goes quiet.
        let mut i = 10;
        support::poll_until("s0 evicted after its idle TTL", WAIT, || {
            p.send("metrics", Some(0), "s1", &stream.payload(1, i));
            p.flush();
            i += 1;
            let addr = addr.lock().unwrap().clone();
            async move {
                scrape(&addr)
                    .await
                    .is_some_and(|t| metric(&t, "anomalyd_series_active") == 1.0)
            }
        })
        .await;
    })
    .await;
    let text = run_daemon(&config, async |r| {
        let addr = r.metrics_addr.to_string();
        support::poll_until("the restore", WAIT, || {
            let addr = addr.clone();
            async move {
                scrape(&addr)
                    .await
                    .is_some_and(|t| metric(&t, "anomalyd_series_restored_total") > 0.0)
            }
        })
        .await;
    })
    .await;
    assert_eq!(
        metric(&text, "anomalyd_series_restored_total"),
        1.0,
        "only s1 comes back"
    );
}

/// An incremental save that fails must not lose the changes it carried:
/// the shards had marked those series clean, and a later save's offset
/// marker would cover their events without their state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_changelog_save_is_made_good_by_the_next_one() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let stream = Stream {
        series: 2,
        partitions: 1,
        spikes: vec![],
    };
    let mock = cluster(&[("metrics", 1), ("state", 1)]);
    let bootstrap = mock.bootstrap_servers();
    let tmp = tempfile::tempdir().unwrap();
    let mut config = state_config(&bootstrap, "resync", StoreKind::Changelog, tmp.path());
    // Only the changelog produces while errors are injected.
    config.sinks.kafka.enabled = false;
    let mut oracle = Oracle::new(&config, &stream);
    let p = TestProducer::new(&bootstrap);
    let send = |oracle: &mut Oracle, j: usize, from: usize, to: usize| {
        for i in from..to {
            let payload = stream.payload(j, i);
            p.send("metrics", Some(0), &Stream::name(j), &payload);
            oracle.feed(j, i, &payload);
        }
        p.flush();
    };
    let failures =
        |t: Option<String>| t.map_or(0.0, |t| metric(&t, "anomalyd_snapshot_failures_total"));
    run_daemon(&config, async |r| {
        send(&mut oracle, 0, 0, 150);
        send(&mut oracle, 1, 0, 150);
        processed(r, 300).await;
        next_snapshot(r).await;
        // s0 changes; the save that carries the change fails.
        send(&mut oracle, 0, 150, 200);
        processed(r, 350).await;
        mock.request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 64],
        );
        let addr = r.metrics_addr.to_string();
        support::poll_until("a failed snapshot", WAIT, || {
            let addr = addr.clone();
            async move { failures(scrape(&addr).await) >= 1.0 }
        })
        .await;
        mock.clear_request_errors(RDKafkaApiKey::Produce);
        // Only s1 changes from here; the next saves succeed.
        send(&mut oracle, 1, 150, 200);
        processed(r, 400).await;
        next_snapshot(r).await;
    })
    .await;
    let text = run_daemon(&config, async |r| {
        send(&mut oracle, 0, 200, 210);
        send(&mut oracle, 1, 200, 210);
        processed(r, 20).await;
    })
    .await;
    assert_eq!(metric(&text, "anomalyd_series_restored_total"), 2.0);
    for j in 0..2 {
        let got = expected_gauge(&text, j).unwrap();
        let want = oracle.series[j].decisions[209].expected;
        assert!(
            (got - want).abs() <= 1e-9,
            "s{j}: {got} vs uninterrupted {want}"
        );
    }
}

/// The changelog store on its own: an empty topic, an unfinished save after
/// the last marker, and a topic with too few partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changelog_load_keeps_only_what_a_marker_confirmed() {
    use anomalyd::state::changelog::ChangelogStore;
    let stream = Stream {
        series: 2,
        partitions: 2,
        spikes: vec![],
    };
    let mock = cluster(&[("state", 1)]);
    let bootstrap = mock.bootstrap_servers();
    let config = state_config(
        &bootstrap,
        "unused",
        StoreKind::Changelog,
        Path::new("unused"),
    );
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &bootstrap);
    let hash = store_hash(&config);
    let store = tokio::task::spawn_blocking(move || {
        ChangelogStore::new(&client, "state", hash, Duration::from_secs(1)).unwrap()
    })
    .await
    .unwrap();
    let store = Arc::new(store);
    let blocking = |f: Box<dyn FnOnce(&ChangelogStore) + Send>| {
        let store = Arc::clone(&store);
        tokio::task::spawn_blocking(move || f(&store))
    };

    // Nothing written yet.
    blocking(Box::new(|s| assert!(s.load(&name(0)).unwrap().is_none())))
        .await
        .unwrap();

    // A save of s0 (partition 0) at offset 10, then a record of s1 with no
    // marker after it (a save that died half-way).
    let mut oracle = Oracle::new(&config, &stream);
    oracle.run(&stream, 0, 120);
    let s0 = oracle.records(&stream, 0);
    let s1 = oracle.records(&stream, 1);
    let (s0k, s1k) = (oracle.series[0].key.clone(), oracle.series[1].key.clone());
    let want = oracle.series[0].state.clone();
    let p = TestProducer::new(&bootstrap);
    blocking(Box::new(move |s| {
        s.save(&[PartitionSnapshot {
            name: name(0),
            position: 10,
            records: s0,
        }])
        .unwrap();
    }))
    .await
    .unwrap();
    let mut value = b"ANMD".to_vec();
    value.extend_from_slice(&anomalyd::state::SCHEMA_VERSION.to_le_bytes());
    value.extend_from_slice(&hash.to_le_bytes());
    value.extend_from_slice(&s1[0].bytes);
    p.send(
        "state",
        Some(0),
        &format!("metrics/0/{:016x}", s1[0].fingerprint),
        &value,
    );
    p.flush();
    blocking(Box::new(move |s| {
        let loaded = s.load(&name(0)).unwrap().unwrap();
        assert_eq!(loaded.position, 10);
        assert_eq!(loaded.series.len(), 1, "the unconfirmed record is ignored");
        assert_eq!(loaded.series[0].key, s0k);
        assert_ne!(loaded.series[0].key, s1k);
        assert_eq!(loaded.series[0].detector.as_ref(), Some(&want));
    }))
    .await
    .unwrap();

    // Input partition 1 has no changelog partition: a plain message.
    blocking(Box::new(|s| {
        let e = s.load(&name(1)).unwrap_err().to_string();
        assert!(
            e.contains("has 1 partition(s), input partition 1 needs at least 2"),
            "{e}"
        );
    }))
    .await
    .unwrap();
}
