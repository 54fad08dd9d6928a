//! Cost of the live page's history: memory per retained series, and the
//! daemon's event path with the page on and off.
//!
//! `cargo bench --bench ui` prints three tables (release build):
//!
//! 1. **Memory per retained series**: a fresh process (this binary re-run
//!    with `--memory N`) fills the rings of N series (default
//!    `ui.points_per_series`, 720 points each) and reports the RSS growth
//!    per series beside what the history accounts for
//!    (`anomalyd_ui_history_bytes` / N). Keys are built before measuring:
//!    in the daemon the history shares them with the shards.
//! 2. **The recorder alone**: nanoseconds per recorded event, one thread,
//!    for 1,000 series (all retained) and 10,000 (over the cap).
//! 3. **Replay with the page on and off**: `app::replay` (the code of
//!    `anomalyd replay`, whose shards record the history when
//!    `ui.enabled`) on two generated fleets, each run in a fresh process,
//!    five runs per setting, interleaved: 1,000 series × 2,000 events (every
//!    series retained) and 10,000 series × 300 events (above the default 64 MiB
//!    cap, which holds about 1,900 series: admission and eviction at work).
//!
//! The streams are written once to `target/bench/ui-*.ndjson`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anomalyd::alert::lifecycle::Lifecycle;
use anomalyd::app::config::Config;
use anomalyd::demo::fleet::Fleet;
use anomalyd::detector::Decision;
use anomalyd::event::SeriesKey;
use anomalyd::threshold::Reason;
use anomalyd::ui::UiConfig;
use anomalyd::ui::history::{History, HistoryLimits, NO_SLOT};

fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// `n` realistic keys, built before anything is measured (the daemon's
/// history shares its keys with the shards).
fn keys(n: usize) -> Vec<SeriesKey> {
    (0..n)
        .map(|i| {
            SeriesKey::new(
                "node_cpu_seconds_total",
                [("instance", format!("host-{i:07}:9100"))],
            )
        })
        .collect()
}

/// Child: fill N series' rings; print `accounted rss_growth` per series.
fn memory_child(n: usize) {
    let points = UiConfig::default().points_per_series;
    let limits = HistoryLimits {
        points_per_series: points,
        max_bytes: (History::bytes_per_series(points) * n) as u64,
        window_secs: 3600,
    };
    let history = History::new(limits, 1, &prometheus::Registry::new()).expect("history");
    let keys = keys(n);
    let mut slots = vec![NO_SLOT; n];
    let lifecycle = Lifecycle::default();
    let d = Decision {
        score: 0.1,
        onset: 0.1,
        expected: 1.0,
        lower: 0.5,
        upper: 1.5,
        warm: true,
        reason: Reason::Forecast,
        new_normal: false,
    };
    let before = proc_status_kib("VmRSS:");
    for t in 0..points as i64 {
        let mut batch = history.batch(0);
        for (key, slot) in keys.iter().zip(&mut slots) {
            batch.record(slot, key, t * 60_000, 1.0, &d, &lifecycle);
        }
    }
    let after = proc_status_kib("VmRSS:");
    assert_eq!(history.summaries().len(), n);
    println!(
        "{} {}",
        history.bytes() as f64 / n as f64,
        (after.saturating_sub(before) * 1024) as f64 / n as f64
    );
}

/// The recorder alone, single-threaded: nanoseconds per `Batch::record` for
/// `n` series under the default cap (one shard), batches of 512 events,
/// scores spread over [0, 0.6) so admissions at the cap happen.
fn record_ns(n: usize) -> f64 {
    let limits = UiConfig::default().limits();
    let history = History::new(limits, 1, &prometheus::Registry::new()).expect("history");
    let keys = keys(n);
    let mut slots = vec![NO_SLOT; n];
    let lifecycle = Lifecycle::default();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut run = |rounds: usize| {
        let started = Instant::now();
        let mut recorded = 0u64;
        for t in 0..rounds as i64 {
            for chunk in keys.chunks(512).zip(slots.chunks_mut(512)) {
                let mut batch = history.batch(0);
                for (key, slot) in chunk.0.iter().zip(chunk.1.iter_mut()) {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let score = (rng >> 11) as f64 / (1u64 << 53) as f64 * 0.6;
                    let d = Decision {
                        score,
                        onset: score,
                        expected: 1.0,
                        lower: 0.5,
                        upper: 1.5,
                        warm: true,
                        reason: Reason::Forecast,
                        new_normal: false,
                    };
                    batch.record(slot, key, t * 60_000, 1.0, &d, &lifecycle);
                    recorded += 1;
                }
            }
        }
        started.elapsed().as_nanos() as f64 / recorded as f64
    };
    run(50); // fill the rings first
    run(300)
}

/// Child: replay `stream` with the page on or off; print `events seconds cpu`.
fn replay_child(stream: &Path, ui: bool) {
    let mut config = Config::default();
    // The bench streams hold under a day of event time: the default one-day
    // warm-up would leave every series unscored, so they are scored (and
    // alert) as a fleet past its first day would.
    config.detector.threshold.warmup_secs = 0;
    config.ui.enabled = ui;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cpu0 = cpu_seconds();
    let report = rt
        .block_on(anomalyd::app::replay(config, stream))
        .expect("replay");
    println!(
        "{} {} {} {}",
        report.events,
        report.seconds,
        cpu_seconds() - cpu0,
        proc_status_kib("VmHWM:")
    );
}

/// Writes `series` × `events` of the demo's fleet as native NDJSON, once.
fn stream(series: usize, events: u64) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).expect("target/bench");
    let path = dir.join(format!("ui-{series}x{events}.ndjson"));
    if path.exists() {
        return path;
    }
    let mut fleet = Fleet::new(series / 4, 60, 1_767_225_600_000, 200, 7, 42);
    let tmp = path.with_extension("tmp");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).expect("create"));
    for i in 0..events {
        for e in fleet.sample(i) {
            let labels: std::collections::BTreeMap<_, _> =
                e.series.labels().iter().cloned().collect();
            let line = serde_json::json!({"series": e.series.name(), "labels": labels, "ts": e.ts_ms, "value": e.value});
            serde_json::to_writer(&mut out, &line).expect("write");
            out.write_all(b"\n").expect("write");
        }
    }
    out.flush().expect("flush");
    drop(out);
    std::fs::rename(&tmp, &path).expect("rename");
    path
}

fn child(args: &[&str]) -> Vec<f64> {
    let exe = std::env::current_exe().expect("own path");
    let out = Command::new(exe).args(args).output().expect("child");
    assert!(
        out.status.success(),
        "child {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|v| v.parse().expect("number"))
        .collect()
}

fn range(v: &[f64], fmt: impl Fn(f64) -> String) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if fmt(lo) == fmt(hi) {
        fmt(lo)
    } else {
        format!("{}–{}", fmt(lo), fmt(hi))
    }
}

/// The measurements of one replay setting.
struct Runs {
    ui: bool,
    rate: Vec<f64>,
    per_cpu: Vec<f64>,
    rss_mib: Vec<f64>,
}

impl Runs {
    fn new(ui: bool) -> Self {
        Self {
            ui,
            rate: Vec::new(),
            per_cpu: Vec::new(),
            rss_mib: Vec::new(),
        }
    }
}

/// Runs per replay setting (interleaved on/off).
const RUNS: usize = 5;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--memory") {
        memory_child(args[i + 1].parse().expect("series count"));
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--replay") {
        replay_child(Path::new(&args[i + 1]), args[i + 2] == "on");
        return;
    }
    // `cargo bench --bench ui -- memory|recorder|replay` runs one table.
    let only = args.iter().skip(1).find(|a| !a.starts_with('-')).cloned();
    let wanted = |table: &str| only.as_deref().is_none_or(|o| table.contains(o));
    if wanted("memory") {
        memory_table();
    }
    if wanted("recorder") {
        recorder_table();
    }
    if wanted("replay") {
        replay_table();
    }
}

fn memory_table() {
    let points = UiConfig::default().points_per_series;
    println!(
        "\nMemory per retained series ({points} points; formula {} B)\n",
        History::bytes_per_series(points)
    );
    println!(
        "| series retained | accounted (anomalyd_ui_history_bytes / series) | RSS growth per series |"
    );
    println!("|---:|---:|---:|");
    for n in [1_000usize, 5_000] {
        let r = child(&["--memory", &n.to_string()]);
        println!("| {n} | {:.0} B | {:.0} B |", r[0], r[1]);
    }
}

fn recorder_table() {
    let cap = History::capacity(&UiConfig::default().limits(), 1);
    println!("\nThe recorder alone (one thread, default limits, one shard: cap {cap} series)\n");
    println!("| series | ns per recorded event |");
    println!("|---:|---:|");
    for n in [1_000usize, 10_000] {
        let runs: Vec<f64> = (0..3).map(|_| record_ns(n)).collect();
        println!("| {n} | {} |", range(&runs, |v| format!("{v:.0}")));
    }
}

fn replay_table() {
    let started = Instant::now();
    let streams = [(1_000usize, 2_000u64), (10_000, 300)];
    let files: Vec<PathBuf> = streams.iter().map(|&(s, e)| stream(s, e)).collect();
    eprintln!("streams ready in {:.0} s", started.elapsed().as_secs_f64());
    println!("\nReplay (`app::replay`, default config, 2 shards), {RUNS} runs each\n");
    println!("| stream | ui.enabled | events/s | events/CPU-s | peak RSS |");
    println!("|---|---|---:|---:|---:|");
    for (&(series, events), file) in streams.iter().zip(&files) {
        let mut rows = [Runs::new(false), Runs::new(true)];
        // Interleaved, so a burst of load on the shared machine hits both.
        for _ in 0..RUNS {
            for row in &mut rows {
                let on = if row.ui { "on" } else { "off" };
                let r = child(&["--replay", &file.display().to_string(), on]);
                row.rate.push(r[0] / r[1]);
                row.per_cpu.push(r[0] / r[2]);
                row.rss_mib.push(r[3] / 1024.0);
            }
        }
        for row in rows {
            let k = |v: f64| format!("{:.2} M", v / 1e6);
            println!(
                "| {series} series × {events} | {} | {} | {} | {} |",
                if row.ui { "on" } else { "off" },
                range(&row.rate, k),
                range(&row.per_cpu, k),
                range(&row.rss_mib, |v| format!("{v:.0} MiB"))
            );
        }
    }
}
