//! Random Cut Forest peer of anomalyd's end-to-end benchmark.
//!
//! Reads an NDJSON stream in anomalyd's native format (see
//! `tests/bench/gen_stream.py`) and keeps one forest per series from
//! `krcflib` (a port of AWS's Rust Random Cut Forest): shingle 8 built inside
//! the forest, 50 trees, sample size 256, the library's defaults otherwise
//! (time decay 0.1/256, no parallelism). Each event is scored, then the
//! forest learns it (test-then-train, like anomalyd). It prints one JSON line
//! with the throughput and memory; it does not judge the scores.
//!
//! Usage: `rcf-peer [--max-events N] [--max-series K] [--seed S] STREAM`.
//! The forest runs the first series seen, each in full: as many as the event
//! budget `--max-events` covers, and at most `--max-series` (a forest holds
//! over a megabyte, so this keeps a run within memory). Events of the other
//! series are read and skipped; the line says what was run.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::process::ExitCode;
use std::time::Instant;

use rcflib::rcf::{RCF, RCFBuilder, RCFOptionsBuilder};

const SHINGLE_SIZE: usize = 8;
const NUMBER_OF_TREES: usize = 50;
const SAMPLE_SIZE: usize = 256;
/// Must match the pin in `Cargo.toml.in`.
const KRCFLIB_VERSION: &str = "4.0.2";

/// One line of the stream; `ts` is not needed by the forest.
#[derive(serde::Deserialize)]
struct Line {
    series: String,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    value: f64,
}

/// The one line printed; the field order is the order of the JSON keys.
#[derive(serde::Serialize)]
struct Report {
    peer: &'static str,
    /// Events scored and learned (skipped ones excluded).
    events: u64,
    /// Forests built, one per series.
    series: usize,
    wall_s: f64,
    cpu_s: f64,
    events_per_s: f64,
    events_per_cpu_s: f64,
    peak_rss_bytes: u64,
    /// RSS growth over the run divided by the series: what a forest costs.
    rss_growth_per_series_bytes: u64,
    /// The library's own estimate of a forest's size (`RCF::size`).
    forest_size_per_series_bytes: u64,
    /// Events of the series not run, read and parsed (timed) but skipped.
    skipped_events: u64,
    series_in_stream: usize,
    events_in_stream: u64,
    /// Mean forest score: the scores are computed, and this keeps them used.
    mean_score: f64,
    config: Config,
}

#[derive(serde::Serialize)]
struct Config {
    krcflib: &'static str,
    shingle_size: usize,
    number_of_trees: usize,
    sample_size: usize,
}

struct Args {
    stream: String,
    max_events: u64,
    max_series: usize,
    seed: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        stream: String::new(),
        max_events: u64::MAX,
        max_series: usize::MAX,
        seed: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} needs a non-negative integer"))
        };
        match a.as_str() {
            "--max-events" => args.max_events = number("--max-events")?,
            "--max-series" => args.max_series = number("--max-series")? as usize,
            "--seed" => args.seed = number("--seed")?,
            _ if a.starts_with("--") => return Err(format!("unknown option {a}")),
            _ => args.stream = a,
        }
    }
    if args.stream.is_empty() {
        return Err("usage: rcf-peer [--max-events N] [--max-series K] [--seed S] STREAM".into());
    }
    Ok(args)
}

/// Process CPU seconds (user + system) and peak RSS in bytes, from the same
/// `getrusage` call Python's `resource` module makes for the River peer.
fn rusage() -> (f64, u64) {
    // SAFETY: getrusage only writes the struct we hand it; zeroed is a valid
    // value of that plain C struct.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    // Linux reports ru_maxrss in KiB.
    (
        secs(ru.ru_utime) + secs(ru.ru_stime),
        ru.ru_maxrss as u64 * 1024,
    )
}

/// Current RSS in bytes (Linux `/proc/self/statm`, in pages), 0 if unknown.
fn current_rss() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

fn new_forest(seed: u64) -> Result<Box<dyn RCF + Send + Sync>, String> {
    RCFBuilder::new(1, SHINGLE_SIZE)
        .number_of_trees(NUMBER_OF_TREES)
        .tree_capacity(SAMPLE_SIZE)
        .internal_shingling(true)
        .parallel_enabled(false)
        .random_seed(seed)
        .build_default()
        .map_err(|e| format!("cannot build a forest: {e:?}"))
}

/// Reads the stream line by line as `(series key, value)`.
fn events(path: &str) -> Result<impl Iterator<Item = Result<(String, f64), String>>, String> {
    let file = File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let path = path.to_owned();
    let lines = BufReader::with_capacity(1 << 20, file).lines();
    Ok(lines.enumerate().map(move |(n, line)| {
        let line = line.map_err(|e| format!("{path}: {e}"))?;
        let line: Line =
            serde_json::from_str(&line).map_err(|e| format!("{path}:{}: {e}", n + 1))?;
        // The series key: the name and its labels (sorted by the BTreeMap).
        let mut key = line.series;
        for (k, v) in &line.labels {
            key.push_str(&format!(",{k}={v}"));
        }
        Ok((key, line.value))
    }))
}

fn run(args: &Args) -> Result<String, String> {
    // Untimed first pass: how many series, and events per series. A forest's
    // cost per event depends on its history (no scoring before its 72nd
    // value, trees filling up to 256 points), so the event budget buys whole
    // series, not a prefix of the round-robin stream, which would measure
    // only the warm-up.
    let mut keys = HashSet::new();
    let mut events_in_stream = 0u64;
    for event in events(&args.stream)? {
        keys.insert(event?.0);
        events_in_stream += 1;
    }
    let series_in_stream = keys.len();
    drop(keys);
    let per_series = events_in_stream
        .div_ceil(series_in_stream.max(1) as u64)
        .max(1);
    let run_series = args.max_series.min(
        args.max_events
            .div_ceil(per_series)
            .try_into()
            .unwrap_or(usize::MAX),
    );

    let rss_start = current_rss();
    let (cpu_start, _) = rusage();
    let wall_start = Instant::now();
    let mut forests: HashMap<String, Box<dyn RCF + Send + Sync>> = HashMap::new();
    let (mut events_run, mut skipped, mut score_sum) = (0u64, 0u64, 0.0f64);
    for event in events(&args.stream)? {
        if events_run >= args.max_events {
            break;
        }
        let (key, value) = event?;
        let full = forests.len() >= run_series;
        let seed = args.seed.wrapping_add(forests.len() as u64);
        let forest = match forests.entry(key) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(_) if full => {
                skipped += 1;
                continue;
            }
            Entry::Vacant(e) => e.insert(new_forest(seed)?),
        };
        let point = [value as f32];
        // Test-then-train: score the point before the forest learns it.
        score_sum += forest.score(&point).map_err(|e| format!("score: {e:?}"))?;
        forest
            .update(&point, 0)
            .map_err(|e| format!("update: {e:?}"))?;
        events_run += 1;
    }
    let events = events_run;

    let wall_s = wall_start.elapsed().as_secs_f64();
    let (cpu_end, peak_rss_bytes) = rusage();
    let cpu_s = cpu_end - cpu_start;
    let series = forests.len();
    let rss_growth = current_rss().saturating_sub(rss_start);
    let forest_bytes: usize = forests.values().map(|f| f.size()).sum();
    let per_series = |bytes: u64| {
        if series == 0 {
            0
        } else {
            bytes / series as u64
        }
    };
    let report = Report {
        peer: "rcf",
        events,
        series,
        wall_s,
        cpu_s,
        events_per_s: events as f64 / wall_s,
        events_per_cpu_s: events as f64 / cpu_s,
        peak_rss_bytes,
        rss_growth_per_series_bytes: per_series(rss_growth),
        forest_size_per_series_bytes: per_series(forest_bytes as u64),
        skipped_events: skipped,
        series_in_stream,
        events_in_stream,
        mean_score: if events == 0 {
            0.0
        } else {
            score_sum / events as f64
        },
        config: Config {
            krcflib: KRCFLIB_VERSION,
            shingle_size: SHINGLE_SIZE,
            number_of_trees: NUMBER_OF_TREES,
            sample_size: SAMPLE_SIZE,
        },
    };
    serde_json::to_string(&report).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    match parse_args().and_then(|a| run(&a)) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rcf-peer: {e}");
            ExitCode::FAILURE
        }
    }
}
