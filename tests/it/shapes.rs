//! The shapes a fleet has, and what the detector promises on each of them
//! (issue 15's "every shape", issue 17's "the band is the decision"):
//!
//! - constant, constant with rare steps, sparse counts, values quantised to
//!   0.01, small integer gauges, ratios in [0, 1], heavy tails: no score is
//!   NaN, a warm band is finite with `lower < upper`, and a jump alerts with
//!   a score that grows with the jump (never silently 0);
//! - the band is the decision: a value outside it scores at or above the
//!   alert threshold; an alert inside it comes only from the drift or the
//!   stuck channel;
//! - a young series is humble about a jump its short history cannot vouch
//!   for, and earns its trust as it runs calm;
//! - after an anomaly the band is back to its width before it within an
//!   hour, and the same anomaly again still alerts.
//!
//! Series are generated here with a seeded generator (one event a minute).

use anomalyd::alert::Reason;
use anomalyd::demo::fleet::Rng;
use anomalyd::detector::{Decision, Detector, DetectorConfig, DetectorState};

const MINUTE: i64 = 60_000;
/// 2026-01-05T00:00:00Z, a Monday.
const T0: i64 = 1_767_571_200_000;
const DAY: usize = 1440;
const THRESHOLD: f64 = 0.5;

fn detector() -> Detector {
    Detector::new(&DetectorConfig::default(), THRESHOLD).unwrap()
}

fn ts(i: usize) -> i64 {
    T0 + i as i64 * MINUTE
}

/// A Poisson draw of mean `lambda`.
fn poisson(rng: &mut Rng, lambda: f64) -> f64 {
    let (limit, mut k, mut p) = ((-lambda).exp(), 0.0, rng.uniform());
    while p > limit {
        k += 1.0;
        p *= rng.uniform();
    }
    k
}

/// A shape: its name, its values, and the size of a jump that must alert
/// on it (in the series' units).
struct Shape {
    name: &'static str,
    values: Vec<f64>,
    jump: f64,
}

/// Four days of each shape.
fn shapes() -> Vec<Shape> {
    let n = 4 * DAY;
    let day = |i: usize| (i as f64 / DAY as f64) * std::f64::consts::TAU;
    let mut rng = Rng(41);
    let mut out = vec![
        Shape {
            name: "constant",
            values: vec![545.5; n],
            jump: 0.05 * 545.5,
        },
        Shape {
            // A config gauge: flat, a small step every day and a half.
            name: "constant with rare steps",
            values: (0..n)
                .map(|i| 545.5 + 0.12 * ((i / (DAY * 3 / 2)) % 2) as f64)
                .collect(),
            jump: 0.07 * 545.5,
        },
        Shape {
            // Errors: mostly 0, sometimes 1 to 4.
            name: "sparse counts",
            values: (0..n).map(|_| poisson(&mut rng, 0.15)).collect(),
            jump: 30.0,
        },
        Shape {
            name: "quantised to 0.01",
            values: (0..n)
                .map(|i| {
                    ((0.5 + 0.2 * day(i).sin() + 0.004 * rng.normal()) * 100.0).round() / 100.0
                })
                .collect(),
            jump: 0.3,
        },
        Shape {
            // Replicas: 3, sometimes 4.
            name: "small integer gauge",
            values: (0..n)
                .map(|i| if (i / 97) % 11 == 0 { 4.0 } else { 3.0 })
                .collect(),
            jump: 12.0,
        },
        Shape {
            name: "ratio in [0, 1]",
            values: (0..n)
                .map(|i| (0.9 + 0.05 * day(i).sin() + 0.01 * rng.normal()).clamp(0.0, 1.0))
                .collect(),
            jump: -0.6,
        },
    ];
    // Heavy tails: Student-t-like noise (a normal over the root of a chi
    // square of 3) around a daily cycle.
    let heavy = (0..n)
        .map(|i| {
            let chi: f64 = (0..3).map(|_| rng.normal().powi(2)).sum::<f64>() / 3.0;
            100.0 + 10.0 * day(i).sin() + rng.normal() / chi.sqrt().max(0.05)
        })
        .collect();
    out.push(Shape {
        name: "heavy tails",
        values: heavy,
        jump: 300.0,
    });
    out
}

/// Learns `values` from event `from`; returns the decisions.
fn feed(d: &Detector, st: &mut DetectorState, from: usize, values: &[f64]) -> Vec<Decision> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| d.observe(st, ts(from + i), v).unwrap())
        .collect()
}

/// What `value` at event `i` would score, without learning it.
fn probe(d: &Detector, st: &DetectorState, i: usize, value: f64) -> Decision {
    d.observe(&mut st.clone(), ts(i), value).unwrap()
}

#[test]
fn every_shape_keeps_its_scores_and_bands_sane_and_a_jump_alerts() {
    let d = detector();
    for shape in shapes() {
        let mut st = d.new_state();
        let out = feed(&d, &mut st, 0, &shape.values);
        for (i, x) in out.iter().enumerate() {
            assert!(
                x.score.is_finite() && (0.0..1.0).contains(&x.score),
                "{}: {i}: {x:?}",
                shape.name
            );
            if x.warm {
                assert!(
                    x.lower.is_finite() && x.upper.is_finite(),
                    "{}: {i}: {x:?}",
                    shape.name
                );
                assert!(
                    x.lower < x.upper,
                    "{}: zero-width band at {i}: {x:?}",
                    shape.name
                );
            }
        }
        let last = *shape.values.last().unwrap();
        let i = shape.values.len();
        let small = probe(&d, &st, i, last + shape.jump);
        let large = probe(&d, &st, i, last + 3.0 * shape.jump);
        assert!(small.warm, "{}: {small:?}", shape.name);
        assert!(
            small.onset >= THRESHOLD,
            "{}: the jump does not alert: {small:?}",
            shape.name
        );
        assert!(
            large.score > small.score,
            "{}: the score does not grow with the jump: {small:?} then {large:?}",
            shape.name
        );
        assert!(
            small.value_outside_band(last + shape.jump),
            "{}: {small:?}",
            shape.name
        );
    }
}

#[test]
fn sparse_counts_get_a_band_of_their_own_size() {
    // Mostly 0, sometimes 1 to 4: the band must not be ±30.
    let d = detector();
    let shape = shapes()
        .into_iter()
        .find(|s| s.name == "sparse counts")
        .unwrap();
    let mut st = d.new_state();
    let out = feed(&d, &mut st, 0, &shape.values);
    let widths: Vec<f64> = out[2 * DAY..]
        .iter()
        .filter(|x| x.warm)
        .map(|x| x.upper - x.lower)
        .collect();
    let mut sorted = widths.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    assert!(median < 12.0, "median band width {median}");
}

#[test]
fn the_band_is_the_decision_on_every_shape() {
    let d = detector();
    let mut checked = 0;
    for shape in shapes() {
        let mut st = d.new_state();
        let values = &shape.values;
        for (i, &v) in values.iter().enumerate() {
            if i >= 2 * DAY && i % 97 == 0 {
                let here = probe(&d, &st, i, v);
                if here.warm {
                    let (lo, hi) = (here.lower, here.upper);
                    let span = (hi - lo).max(1e-9);
                    // Values on both sides of each edge (as close as the
                    // values' own float resolution allows), and far out.
                    let eps = (1e-6 * span).max(1e-12 * lo.abs().max(hi.abs()));
                    for p in [
                        lo - span,
                        lo - eps,
                        lo + eps,
                        0.5 * (lo + hi),
                        hi - eps,
                        hi + eps,
                        hi + span,
                    ] {
                        if p.abs() > anomalyd::detector::MAX_ABS_VALUE {
                            // An unbounded side: no value that way alerts.
                            continue;
                        }
                        let x = probe(&d, &st, i, p);
                        if x.value_outside_band(p) {
                            assert!(
                                x.score >= THRESHOLD,
                                "{}: {p} outside [{lo}, {hi}] scores {x:?}",
                                shape.name
                            );
                        } else if x.score >= THRESHOLD {
                            assert!(
                                matches!(x.reason, Reason::Drift | Reason::Stuck),
                                "{}: {p} inside [{lo}, {hi}] alerts by {:?}: {x:?}",
                                shape.name,
                                x.reason
                            );
                        }
                        checked += 1;
                    }
                }
            }
            d.observe(&mut st, ts(i), v).unwrap();
        }
    }
    assert!(checked > 500, "{checked} probes");
}

/// A calm daily cycle with unit noise.
fn calm(seed: u64, n: usize) -> Vec<f64> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|i| {
            let day = (i as f64 / DAY as f64) * std::f64::consts::TAU;
            100.0 + 10.0 * day.sin() + rng.normal()
        })
        .collect()
}

#[test]
fn a_young_series_is_humble_about_a_jump_and_earns_its_trust() {
    // A calm daily cycle sampled every 5 minutes, and the same 7σ jump a
    // day after warm-up and two weeks in: the young series has seen 576
    // events and cannot vouch that its tail is Gaussian; the older one has
    // seen 4,000 calm events.
    let d = detector();
    let mut rng = Rng(51);
    let five = 5 * MINUTE;
    let values: Vec<f64> = (0..4_100)
        .map(|i| {
            let day = (i as f64 / 288.0) * std::f64::consts::TAU;
            100.0 + 10.0 * day.sin() + rng.normal()
        })
        .collect();
    let at = |i: usize| T0 + i as i64 * five;
    let score_at = |n: usize| {
        let mut st = d.new_state();
        for (i, &v) in values[..n].iter().enumerate() {
            d.observe(&mut st, at(i), v).unwrap();
        }
        let e = d
            .observe(&mut st.clone(), at(n), values[n])
            .unwrap()
            .expected;
        d.observe(&mut st.clone(), at(n), e + 7.0).unwrap().score
    };
    let young = score_at(2 * 288);
    let old = score_at(4_000);
    assert!(young < old, "young {young}, old {old}");
    assert!(
        young < THRESHOLD,
        "a young series pages on a 7σ jump: {young}"
    );
    assert!(
        old >= THRESHOLD,
        "an old calm series misses a 7σ jump: {old}"
    );
}

#[test]
fn after_an_anomaly_the_band_is_back_within_an_hour_and_the_next_one_alerts() {
    // A 3.5-hour drop, then normal: the band an hour after the drop ended is
    // as wide as the hour before it began, and the same drop a day later
    // alerts again.
    let d = detector();
    let mut values = calm(52, 7 * DAY);
    let (start, len) = (4 * DAY, 210);
    for k in [0, DAY] {
        for v in &mut values[start + k..start + k + len] {
            *v -= 20.0;
        }
    }
    let mut st = d.new_state();
    let out = feed(&d, &mut st, 0, &values);
    let width = |r: std::ops::Range<usize>| {
        let mut w: Vec<f64> = out[r].iter().map(|x| x.upper - x.lower).collect();
        w.sort_by(f64::total_cmp);
        w[w.len() / 2]
    };
    let before = width(start - 60..start);
    let after = width(start + len + 60..start + len + 120);
    assert!(
        (after / before - 1.0).abs() < 0.15,
        "band width {before} before, {after} an hour after"
    );
    assert!(out[start].onset >= THRESHOLD, "{:?}", out[start]);
    let again = out[start + DAY..start + DAY + 3]
        .iter()
        .map(|x| x.onset)
        .fold(0.0, f64::max);
    assert!(again >= THRESHOLD, "the same drop a day later: {again}");
}
