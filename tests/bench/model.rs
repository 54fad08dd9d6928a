//! Per-event cost of the detection core, and bytes of state per series.
//!
//! `cargo bench --bench model` first prints, for each model, the bytes one
//! series costs (in memory: `size_of` + heap; and as a postcard snapshot),
//! then measures `Detector::observe` (features + forecast + threshold score +
//! Adagrad step + threshold update) on a synthetic series, and the model
//! alone (`model_only`: features + forecast + Adagrad step). Only the model
//! path is timed: no I/O, no map lookups.

use std::hint::black_box;

use anomalyd::detector::{Detector, DetectorConfig, DetectorState};
use anomalyd::model::{ModelKind, Work};
use anomalyd::optim::Adagrad;
use anomalyd::threshold::DEFAULT_ALERT_THRESHOLD;
use criterion::{Criterion, Throughput, criterion_group};

/// Events per timed batch.
const BATCH: usize = 10_000;

fn config(kind: ModelKind) -> DetectorConfig {
    let mut c = DetectorConfig::default();
    c.model.kind = kind;
    c
}

/// A deterministic series: a daily sine, a slow trend and hashed noise,
/// sampled every minute.
fn series(n: usize) -> Vec<(i64, f64)> {
    (0..n)
        .map(|i| {
            let noise =
                ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f64 / (1u64 << 24) as f64;
            let t = i as f64 / 1440.0;
            (
                1_700_000_000_000 + 60_000 * i as i64,
                100.0 + 10.0 * (std::f64::consts::TAU * t).sin() + 0.01 * i as f64 + noise,
            )
        })
        .collect()
}

/// A series' state after `warm` events (so the timed path is the warm one).
fn warmed(detector: &Detector, data: &[(i64, f64)]) -> DetectorState {
    let mut state = detector.new_state();
    for &(ts, v) in data {
        // The synthetic values are finite, so observe cannot refuse them.
        let _ = detector.observe(&mut state, ts, v);
    }
    state
}

fn print_state_sizes() {
    println!("bytes of state per series (after 5000 events):");
    println!("{:<12} {:>10} {:>14}", "model", "in-memory", "postcard");
    let data = series(5000);
    for kind in [ModelKind::Regression, ModelKind::Autoencoder] {
        let Ok(detector) = Detector::new(&config(kind), DEFAULT_ALERT_THRESHOLD) else {
            panic!("the default config is valid");
        };
        let state = warmed(&detector, &data);
        let snapshot = postcard::to_allocvec(&state).map(|v| v.len()).unwrap_or(0);
        println!(
            "{:<12} {:>10} {:>14}",
            kind.as_str(),
            state.memory_bytes(),
            snapshot
        );
    }
}

fn observe(c: &mut Criterion) {
    let data = series(BATCH + 5000);
    let mut group = c.benchmark_group("observe");
    group.throughput(Throughput::Elements(BATCH as u64));
    for kind in [ModelKind::Regression, ModelKind::Autoencoder] {
        let Ok(detector) = Detector::new(&config(kind), DEFAULT_ALERT_THRESHOLD) else {
            panic!("the default config is valid");
        };
        let start = warmed(&detector, &data[..5000]);
        let events = &data[5000..];
        group.bench_function(kind.as_str(), |b| {
            b.iter_batched_ref(
                || start.clone(),
                |state| {
                    for &(ts, v) in events {
                        let _ = black_box(detector.observe(state, black_box(ts), black_box(v)));
                    }
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// The model alone (features + forecast + Adagrad step), without the
/// threshold, to show where the time goes.
fn model_only(c: &mut Criterion) {
    let data = series(BATCH + 5000);
    let mut group = c.benchmark_group("model_only");
    group.throughput(Throughput::Elements(BATCH as u64));
    for kind in [ModelKind::Regression, ModelKind::Autoencoder] {
        let cfg = config(kind).model;
        let model = cfg.build();
        let Ok(optimizer) = Adagrad::new(cfg.adagrad()) else {
            panic!("the default config is valid");
        };
        let mut start = model.new_state();
        let mut work = Work::default();
        for &(ts, v) in &data[..5000] {
            let _ = model.forecast(&start, ts, v, &mut work);
            model.learn(&mut start, &optimizer, v, &mut work);
        }
        let events = &data[5000..];
        group.bench_function(kind.as_str(), |b| {
            b.iter_batched_ref(
                || start.clone(),
                |state| {
                    for &(ts, v) in events {
                        let f = model.forecast(state, black_box(ts), black_box(v), &mut work);
                        black_box(f);
                        model.learn(state, &optimizer, v, &mut work);
                    }
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, observe, model_only);

fn main() {
    print_state_sizes();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
