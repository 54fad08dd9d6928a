//! Cost of durable state: snapshot and restore time and size, and memory
//! per series held.
//!
//! `cargo bench --bench state` prints two tables (release build):
//!
//! 1. **Snapshot / restore** of 100,000 and 1,000,000 series of the default
//!    regression model through the `dir` store: encode (postcard, per
//!    series) and write (one file, fsync, rename), then read + CRC + decode
//!    (`DirStore::load`) and installing the series in the pipeline shards.
//! 2. **Memory per series held**: a fresh process (this binary re-run with
//!    `--memory N`) feeds N distinct series through a 2-shard pipeline and
//!    reports the RSS growth per series: detector state, alert lifecycle,
//!    key, shard map slot and allocator overhead together.
//!
//! Targets (issue 4): at most 512 bytes of detector state per series, and
//! 1,000,000 series within 1 GiB RSS. `ANOMALYD_BENCH_STATE_SERIES` takes a
//! comma-separated list of series counts instead of the default two.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anomalyd::alert::lifecycle::{AlertRule, AlertRuleConfig, Lifecycle};
use anomalyd::detector::{Detector, DetectorConfig, DetectorState};
use anomalyd::event::{Event, SeriesKey};
use anomalyd::pipeline::{AlertHandoff, BarrierKind, Core, Pipeline, PipelineConfig};
use anomalyd::state::{
    PartitionName, PartitionSnapshot, SnapshotRecord, SourcePartition, StateStore, dir::DirStore,
    encode_series,
};
use anomalyd::telemetry::metrics::{Metrics, MetricsConfig};

const PART: SourcePartition = SourcePartition {
    stream: 0,
    partition: 0,
};

/// Alerts are not what is measured.
struct Discard;
impl AlertHandoff for Discard {
    fn hand_off(&self, _: anomalyd::alert::SeriesAlert) {}
}

fn detector() -> Detector {
    Detector::new(&DetectorConfig::default(), 0.5).expect("default detector")
}

fn pipeline(max_series: usize) -> Pipeline {
    let metrics = Metrics::new(
        prometheus::Registry::new(),
        &MetricsConfig::default(),
        &[],
        &[],
    )
    .expect("metrics");
    let core = Arc::new(Core {
        detector: detector(),
        rule: AlertRule::new(&AlertRuleConfig::default(), "alert").expect("rule"),
        alerts: Arc::new(Discard),
        metrics: Arc::new(metrics),
        options: Default::default(),
    });
    let config = PipelineConfig {
        workers: 2,
        max_series,
        ..PipelineConfig::default()
    };
    Pipeline::start(&config, core).expect("pipeline")
}

/// A realistic key: a metric name and two labels, ~50 bytes of text.
fn key(i: usize) -> SeriesKey {
    SeriesKey::new(
        "node_cpu_seconds_total",
        [
            ("instance", format!("host-{i:07}:9100")),
            ("mode", "user".to_string()),
        ],
    )
}

/// Warm states (300 events each of differently shaped series), cloned
/// round-robin: their encoding is as long as any real series'.
fn templates(d: &Detector) -> Vec<DetectorState> {
    (0..16)
        .map(|k| {
            let mut s = d.new_state();
            for i in 0..300 {
                let v = 50.0 + k as f64 + 10.0 * (i as f64 / (20.0 + k as f64)).sin();
                d.observe(&mut s, 1_700_000_000_000 + 60_000 * i, v)
                    .expect("finite");
            }
            s
        })
        .collect()
}

fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

fn snapshot_restore(n: usize) {
    let d = detector();
    let templates = templates(&d);
    let lifecycle = Lifecycle::default();
    let keys: Vec<SeriesKey> = (0..n).map(key).collect();

    let t = Instant::now();
    let records: Vec<SnapshotRecord> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| SnapshotRecord {
            partition: PART,
            fingerprint: k.fingerprint(),
            bytes: encode_series(k, &templates[i % templates.len()], &lifecycle).expect("encode"),
        })
        .collect();
    let encode = t.elapsed();
    let record_bytes: usize = records.iter().map(|r| r.bytes.len()).sum();

    let dir = tempfile::tempdir().expect("tempdir");
    let store = DirStore::new(dir.path(), d.model_hash(), Duration::from_secs(30)).expect("store");
    let t = Instant::now();
    let name = PartitionName {
        stream: "metrics".into(),
        partition: 0,
    };
    store
        .save(&[PartitionSnapshot {
            name: name.clone(),
            position: n as i64,
            records,
        }])
        .expect("save");
    let write = t.elapsed();
    let file_bytes = std::fs::metadata(store.path(&name))
        .expect("snapshot file")
        .len();

    let t = Instant::now();
    let loaded = store.load(&name).expect("load").expect("a snapshot");
    let load = t.elapsed();
    assert_eq!(loaded.series.len(), n);

    // Room above n: shards split the cap evenly, series by hash unevenly.
    let p = pipeline(2 * n);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let t = Instant::now();
    let report = rt.block_on(async {
        p.restore(PART, loaded.series).await.expect("restore");
        p.barrier(BarrierKind::Sync).await.expect("barrier")
    });
    let install = t.elapsed();
    assert_eq!(report.series, n);
    rt.block_on(p.close());

    println!(
        "| {n:>9} | {:>6} | {:>6} | {:>6} | {:>7} | {:>8} | {:>7} | {:>10.1} | {:>8.1} |",
        secs(encode),
        secs(write),
        secs(load),
        secs(install),
        secs(encode + write),
        file_bytes / 1_000_000,
        record_bytes as f64 / n as f64,
        file_bytes as f64 / n as f64,
    );
}

/// Runs in a fresh process: RSS growth from holding `n` series.
fn memory_child(n: usize) {
    let p = pipeline(2 * n);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    // Warm up the runtime, threads and allocator before the baseline.
    rt.block_on(p.barrier(BarrierKind::Sync)).expect("barrier");
    let before = proc_status_kib("VmRSS:");
    const BATCH: usize = 10_000;
    rt.block_on(async {
        let mut i = 0;
        while i < n {
            let end = (i + BATCH).min(n);
            let events: Vec<Event> = (i..end)
                .map(|i| Event {
                    series: key(i),
                    ts_ms: 1_700_000_000_000,
                    value: i as f64,
                })
                .collect();
            p.dispatch(PART, events, Instant::now())
                .await
                .expect("dispatch");
            // One batch in flight at a time: queued events would count.
            p.barrier(BarrierKind::Sync).await.expect("barrier");
            i = end;
        }
    });
    let report = rt.block_on(p.barrier(BarrierKind::Sync)).expect("barrier");
    assert_eq!(report.series, n);
    let after = proc_status_kib("VmRSS:");
    let peak = proc_status_kib("VmHWM:");
    println!(
        "MEMORY {n} {} {} {}",
        (after - before) * 1024,
        after * 1024,
        peak * 1024
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--memory") {
        let n = args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .expect("--memory N");
        memory_child(n);
        return;
    }
    let counts: Vec<usize> = std::env::var("ANOMALYD_BENCH_STATE_SERIES")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100_000, 1_000_000]);

    let d = detector();
    let t = templates(&d);
    let k = key(0);
    let encoded = encode_series(&k, &t[0], &Lifecycle::default()).expect("encode");
    println!("Detector state per series (default regression model):");
    println!(
        "  in memory {} B (DetectorState::memory_bytes), encoded {} B (postcard); \
         alert lifecycle {} B; series record with key {} B\n",
        t[0].memory_bytes(),
        postcard::to_stdvec(&t[0]).expect("postcard").len(),
        std::mem::size_of::<Lifecycle>(),
        encoded.len()
    );

    println!("Snapshot and restore, dir store (seconds; sizes in MB and bytes/series):");
    println!(
        "| series    | encode  | write  | load   | install | snapshot | file MB | record B/s | file B/s |"
    );
    println!(
        "|-----------|---------|--------|--------|---------|----------|---------|------------|----------|"
    );
    for &n in &counts {
        snapshot_restore(n);
    }

    println!("\nMemory per series held (fresh process, 2 shards, one event per series):");
    println!("| series    | RSS growth MB | bytes/series | RSS MB | peak RSS MB |");
    println!("|-----------|---------------|--------------|--------|-------------|");
    let exe = std::env::current_exe().expect("current exe");
    for &n in &counts {
        let out = Command::new(&exe)
            .args(["--memory", &n.to_string()])
            .output()
            .expect("memory child");
        let text = String::from_utf8_lossy(&out.stdout);
        let Some(line) = text.lines().find(|l| l.starts_with("MEMORY ")) else {
            eprintln!(
                "memory child failed: {}\n{}",
                text,
                String::from_utf8_lossy(&out.stderr)
            );
            continue;
        };
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|s| s.parse().ok())
            .collect();
        let [n, growth, rss, peak] = v[..] else {
            continue;
        };
        println!(
            "| {n:>9} | {:>13.1} | {:>12.0} | {:>6.0} | {:>11.0} |",
            growth as f64 / 1e6,
            growth as f64 / n as f64,
            rss as f64 / 1048576.0,
            peak as f64 / 1048576.0
        );
    }
}
