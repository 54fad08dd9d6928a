//! Random Cut Forest peer of anomalyd's detection-quality benchmark.
//!
//! Scores ONE stream: reads one finite number a line on stdin (the values
//! of a series, in order) and writes one raw forest score a line on stdout.
//! The forest is `krcflib` (a port of AWS's Rust Random Cut Forest):
//! shingle 8 built inside the forest, 50 trees, sample size 256, a fixed
//! seed, the library's defaults otherwise (time decay 0.1/256, initial accept
//! fraction 0.125, scores after 1 + 256/4 = 65 full shingles). Each value is
//! scored, then the forest learns it (test-then-train). The score is 0 until
//! the forest says its output is ready.
//!
//! The CSV is read, checked and written by `../peers.py`, the same code for
//! all three peers, so they all see the same rows; the map of the raw score
//! into [0, 1) lives there too.
//!
//! Usage: `rcf-quality-peer [--seed S] [--shingle-size N] [--trees N]
//! [--time-decay X] < values > scores`. The options exist to compare with
//! other published settings (NAB's own run used shingle 1, 100 trees, time
//! decay 1e-5); the benchmark runs the defaults.

use std::io::{BufRead, BufWriter, Write};
use std::process::ExitCode;

use rcflib::rcf::{RCFBuilder, RCFOptionsBuilder};

/// The forest's settings; the defaults are the benchmark's.
struct Settings {
    shingle_size: usize,
    number_of_trees: usize,
    sample_size: usize,
    /// `None`: the library's default, 0.1 / sample size.
    time_decay: Option<f64>,
    /// Fixed so that a rerun gives the same scores.
    seed: u64,
}

const USAGE: &str = "usage: rcf-quality-peer [--seed S] [--shingle-size N] [--trees N] \
                     [--time-decay X] < values > scores";

fn parse_args() -> Result<Settings, String> {
    let mut settings = Settings {
        shingle_size: 8,
        number_of_trees: 50,
        sample_size: 256,
        time_decay: None,
        seed: 42,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value; {USAGE}"))?;
        let bad = |what: &str| format!("{flag} needs {what}, got {value:?}");
        match flag.as_str() {
            "--seed" => settings.seed = value.parse().map_err(|_| bad("an integer >= 0"))?,
            "--shingle-size" => {
                settings.shingle_size = value.parse().map_err(|_| bad("an integer >= 1"))?
            }
            "--trees" => {
                settings.number_of_trees = value.parse().map_err(|_| bad("an integer >= 1"))?
            }
            "--time-decay" => {
                settings.time_decay = Some(value.parse().map_err(|_| bad("a number >= 0"))?)
            }
            _ => return Err(format!("unknown option {flag}; {USAGE}")),
        }
    }
    Ok(settings)
}

fn run(settings: Settings) -> Result<(), String> {
    let mut builder = RCFBuilder::new(1, settings.shingle_size);
    builder
        .number_of_trees(settings.number_of_trees)
        .tree_capacity(settings.sample_size)
        .internal_shingling(true)
        .parallel_enabled(false)
        .random_seed(settings.seed);
    if let Some(decay) = settings.time_decay {
        builder.time_decay(decay);
    }
    let mut forest = builder
        .build_default()
        .map_err(|e| format!("cannot build the forest: {e:?}"))?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    for (n, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.map_err(|e| format!("stdin: {e}"))?;
        let value: f64 = line
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| format!("stdin line {}: {line:?} is not a finite number", n + 1))?;
        // The forest takes f32 points; with internal shingling a point is one
        // value and the forest appends it to its last shingle.
        let point = [value as f32];
        // Test-then-train: score the value before the forest learns it.
        let score = if forest.is_output_ready() {
            forest
                .score(&point)
                .map_err(|e| format!("score at line {}: {e:?}", n + 1))?
        } else {
            0.0
        };
        forest
            .update(&point, 0)
            .map_err(|e| format!("update at line {}: {e:?}", n + 1))?;
        writeln!(out, "{score}").map_err(|e| format!("stdout: {e}"))?;
    }
    out.flush().map_err(|e| format!("stdout: {e}"))
}

fn main() -> ExitCode {
    match parse_args().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rcf-quality-peer: {e}");
            ExitCode::FAILURE
        }
    }
}
