//! Detection behaviour a user relies on, through the daemon's own per-event
//! path (`Detector::observe`, then the alert lifecycle and the alert
//! message), with the default configuration:
//!
//! - the score is evidence: monotone in the size of an anomaly, a 3σ event
//!   does not alert, a 10σ one does, a 20σ one is critical and a 30σ one
//!   scores at least 0.75, at any age of the series after its warm-up (a
//!   young series is humble about jumps: see the jump bound);
//! - a clean series is silent from its first event on, through warm-up and
//!   after it, and again after a restore, an eviction and re-creation, and a
//!   config change that relearns its model;
//! - a level shift is one alert: resolved when the series is back, or as
//!   the new normal once it has lasted the maximum episode; the return is
//!   no new alert; stuck values and drifts are detected; every alert says
//!   which channel raised it.
//!
//! The series are generated here with a seeded generator, so the tests
//! stand alone and fail the same way every run.

use anomalyd::alert::Resolution;
use anomalyd::alert::lifecycle::{AlertRule, AlertRuleConfig, Lifecycle, Transition, build_alert};
use anomalyd::alert::{Reason, Severity};
use anomalyd::demo::fleet::Rng;
use anomalyd::detector::{Decision, Detector, DetectorConfig, DetectorState, Skipped};
use anomalyd::event::SeriesKey;
use anomalyd::threshold::DEFAULT_MAX_EPISODE_SECS;

const MINUTE: i64 = 60_000;
/// 2026-01-05T00:00:00Z, a Monday.
const T0: i64 = 1_767_571_200_000;

/// A Poisson draw of mean `lambda` (Knuth's product of uniforms).
fn poisson(rng: &mut Rng, lambda: f64) -> f64 {
    let (limit, mut k, mut p) = ((-lambda).exp(), 0.0, rng.uniform());
    while p > limit {
        k += 1.0;
        p *= rng.uniform();
    }
    k
}

/// A noisy seasonal series with unit noise (σ = 1): a daily cycle of
/// amplitude 10 around 100, one value a minute.
fn seasonal(seed: u64, n: usize) -> Vec<f64> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|i| {
            let day = (i as f64 * MINUTE as f64 / 86_400_000.0) * std::f64::consts::TAU;
            100.0 + 10.0 * day.sin() + rng.normal()
        })
        .collect()
}

fn detector() -> Detector {
    Detector::new(&DetectorConfig::default(), 0.5).unwrap()
}

fn rule() -> AlertRule {
    AlertRule::new(&AlertRuleConfig::default(), "alert").unwrap()
}

/// What happened to a series: every decision and every transition.
struct Run {
    decisions: Vec<Decision>,
    transitions: Vec<(usize, Transition)>,
}

impl Run {
    fn firings(&self) -> Vec<usize> {
        self.transitions
            .iter()
            .filter(|(_, t)| matches!(t, Transition::Firing { .. }))
            .map(|(i, _)| *i)
            .collect()
    }
}

/// Runs `values` (one a minute from `start`) through the detector and the
/// default alert rule, from `state` and `lifecycle`.
fn run_from(
    d: &Detector,
    state: &mut DetectorState,
    lifecycle: &mut Lifecycle,
    start: usize,
    values: &[f64],
) -> Run {
    let rule = rule();
    let mut out = Run {
        decisions: Vec::new(),
        transitions: Vec::new(),
    };
    for (k, &v) in values.iter().enumerate() {
        let i = start + k;
        let ts = T0 + i as i64 * MINUTE;
        let x = d.observe(state, ts, v).unwrap();
        if let Some(t) = lifecycle.step(&rule, ts, v, &x) {
            out.transitions.push((i, t));
        }
        out.decisions.push(x);
    }
    out
}

fn run(values: &[f64]) -> Run {
    let d = detector();
    run_from(&d, &mut d.new_state(), &mut Lifecycle::new(), 0, values)
}

#[test]
fn the_score_grows_with_the_size_of_a_spike_at_any_age_after_warm_up() {
    let d = detector();
    let rule = rule();
    let series = seasonal(7, 12_000);
    let sizes = [3.0, 4.0, 6.0, 10.0, 20.0, 30.0, 100.0];
    // Ages past the one-day warm-up, up to a week of minutes.
    for at in [2_000usize, 4_000, 11_000] {
        let mut st = d.new_state();
        for (i, &v) in series[..at].iter().enumerate() {
            d.observe(&mut st, T0 + i as i64 * MINUTE, v).unwrap();
        }
        for sign in [1.0, -1.0] {
            let mut last = -1.0;
            for k in sizes {
                let v = series[at] + sign * k;
                let x = d
                    .observe(&mut st.clone(), T0 + at as i64 * MINUTE, v)
                    .unwrap();
                assert!(x.warm);
                assert!(
                    x.score > last,
                    "at {at}, {sign}x{k}σ: {} after {last}",
                    x.score
                );
                last = x.score;
                let hit = rule.is_hit(v, &x, false);
                match k {
                    3.0 => assert!(!hit && x.score < 0.5, "3σ alerts at {at}: {x:?}"),
                    10.0 => assert!(hit, "10σ at {at}: {x:?}"),
                    20.0 => assert_eq!(
                        rule.severity(x.score),
                        Severity::Critical,
                        "20σ at {at}: {x:?}"
                    ),
                    30.0 => assert!(x.score >= 0.74, "30σ at {at}: {x:?}"),
                    _ => {}
                }
                if k >= 10.0 {
                    assert_eq!(x.reason, Reason::Forecast);
                    assert!(x.value_outside_band(v), "{k}σ inside the band: {x:?}");
                }
            }
        }
    }
}

/// Clean series of the kinds a fleet reports.
fn clean_fleet() -> Vec<(&'static str, Vec<f64>)> {
    let n = 20_000;
    let mut rng = Rng(11);
    let white: Vec<f64> = (0..n).map(|_| 50.0 + 5.0 * rng.normal()).collect();
    let mut rng = Rng(12);
    let counts: Vec<f64> = (0..n)
        .map(|i| {
            let day = (i as f64 / 1440.0) * std::f64::consts::TAU;
            poisson(&mut rng, 40.0 + 25.0 * day.sin())
        })
        .collect();
    let mut rng = Rng(13);
    let mut e = 0.0;
    let cpu: Vec<f64> = (0..n)
        .map(|i| {
            e = 0.5 * e + 1.5 * rng.normal();
            let day = (i as f64 / 1440.0) * std::f64::consts::TAU;
            ((30.0 + 20.0 * day.sin() + e) * 10.0).round() / 10.0
        })
        .collect();
    vec![
        ("seasonal", seasonal(14, n)),
        ("white", white),
        ("counts", counts),
        ("cpu", cpu),
    ]
}

/// The pager budget: false alarms per 10,000 events.
const BUDGET_PER_10K: f64 = 2.0;

/// Asserts what a clean series may do: nothing before it is warm, and at
/// most the pager budget over the run. Returns how many alerts fell in the
/// day after warm-up, where a warm-up burst would show.
fn assert_quiet(name: &str, r: &Run, events: usize) -> usize {
    let first_warm = r.decisions.iter().position(|x| x.warm).unwrap();
    let firings = r.firings();
    assert!(
        firings.iter().all(|&i| i >= first_warm),
        "{name}: {firings:?}"
    );
    let rate = 1e4 * firings.len() as f64 / events as f64;
    assert!(
        rate <= BUDGET_PER_10K,
        "{name}: {rate} per 10k: {firings:?}"
    );
    firings.iter().filter(|&&i| i < first_warm + 1440).count()
}

#[test]
fn a_clean_series_is_silent_through_warm_up_and_within_budget_after() {
    let (mut total, mut early) = (0, 0);
    for (name, values) in clean_fleet() {
        let r = run(&values);
        // Warm-up: a day of minutes at least, and scores of 0 until then.
        let first_warm = r.decisions.iter().position(|x| x.warm).unwrap();
        assert!(first_warm >= 1440, "{name}: warm at {first_warm}");
        assert!(r.decisions[..first_warm].iter().all(|x| x.score == 0.0));
        early += assert_quiet(name, &r, values.len());
        total += r.firings().len();
    }
    // No burst after warm-up: the day after it (4 x 1,440 events) holds no
    // more than its share of the budget (about 1).
    assert!(early <= 1, "{early} alerts in the day after warm-up");
    // The fleet as a whole keeps the budget: 80,000 events, at most 16.
    assert!(total <= 8, "{total} alerts on 80,000 clean events");
}

#[test]
fn restore_eviction_and_relearning_stay_silent() {
    let d = detector();
    let mut early = 0;
    for (name, values) in clean_fleet() {
        let half = values.len() / 2;
        let mut st = d.new_state();
        let mut lc = Lifecycle::new();
        let first = run_from(&d, &mut st, &mut lc, 0, &values[..half]);
        assert_quiet(name, &first, half);

        // Restore: the snapshot continues bit-identically, warm at once.
        let bytes = postcard::to_allocvec(&st).unwrap();
        let mut restored: DetectorState = postcard::from_bytes(&bytes).unwrap();
        let a = run_from(&d, &mut st, &mut lc.clone(), half, &values[half..]);
        let b = run_from(&d, &mut restored, &mut lc.clone(), half, &values[half..]);
        assert_eq!(a.decisions, b.decisions, "{name}");
        assert!(b.decisions[0].warm);
        assert_eq!(a.firings(), b.firings(), "{name}");

        // Eviction and re-creation: a new state mid-stream warms up again
        // and stays silent.
        let fresh = run_from(
            &d,
            &mut d.new_state(),
            &mut Lifecycle::new(),
            half,
            &values[half..],
        );
        assert_eq!(fresh.decisions[0].score, 0.0);
        assert!(!fresh.decisions[0].warm);
        early += assert_quiet(name, &fresh, values.len() - half);

        // A config change: the old state is refused, a new one relearns
        // silently.
        let mut other = DetectorConfig::default();
        other.model.lags = 6;
        let changed = Detector::new(&other, 0.5).unwrap();
        let mut old = restored.clone();
        assert_eq!(
            changed.observe(&mut old, T0, values[0]),
            Err(Skipped::IncompatibleState)
        );
        let relearned = run_from(
            &changed,
            &mut changed.new_state(),
            &mut Lifecycle::new(),
            half,
            &values[half..],
        );
        early += assert_quiet(name, &relearned, values.len() - half);
    }
    // Re-created and relearned series warm up without a burst either.
    assert!(early <= 1, "{early} alerts in the day after a new warm-up");
}

#[test]
fn a_lasting_level_shift_is_one_alert_that_ends_as_the_new_normal() {
    let mut values = seasonal(21, 12_000);
    for v in &mut values[4_000..] {
        *v += 15.0;
    }
    let r = run(&values);
    assert_eq!(r.firings(), vec![4_000], "{:?}", r.transitions);
    assert_eq!(r.transitions[0].1.reason(), Reason::Forecast);
    // One alert from the onset until the shift has lasted the maximum
    // episode (six hours of minutes): then it is the series' new normal,
    // and the alert says so.
    let resolved: Vec<(usize, Option<Resolution>)> = r
        .transitions
        .iter()
        .filter(|(_, t)| matches!(t, Transition::Resolved { .. }))
        .map(|(i, t)| (*i, t.resolution()))
        .collect();
    let max_episode = (DEFAULT_MAX_EPISODE_SECS * 1000 / MINUTE as u64) as usize;
    assert_eq!(
        resolved,
        vec![(4_000 + max_episode, Some(Resolution::NewNormal))],
        "{:?}",
        r.transitions
    );
    // The plateau scores as anomalous to the end of the episode: the
    // expected value is the normal level, and the band says where it is.
    let plateau = &r.decisions[4_100];
    assert!(plateau.score >= 0.32, "{plateau:?}");
    assert!(plateau.value_outside_band(values[4_100]), "{plateau:?}");
    assert!(plateau.upper < values[4_100] - 5.0, "{plateau:?}");
}

#[test]
fn a_shift_that_comes_back_is_one_alert_and_the_return_no_new_one() {
    // Four hours at +15, then back: one alert spanning the shift, resolved
    // as returned shortly after the return, and the return is no new
    // alert.
    let mut values = seasonal(22, 8_000);
    for v in &mut values[4_000..4_240] {
        *v += 15.0;
    }
    let r = run(&values);
    assert_eq!(r.firings(), vec![4_000], "{:?}", r.transitions);
    let resolved: Vec<(usize, Option<Resolution>)> = r
        .transitions
        .iter()
        .filter(|(_, t)| matches!(t, Transition::Resolved { .. }))
        .map(|(i, t)| (*i, t.resolution()))
        .collect();
    assert_eq!(resolved.len(), 1, "{:?}", r.transitions);
    let (at, why) = resolved[0];
    assert!((4_240..4_240 + 60).contains(&at), "resolved at {at}");
    assert_eq!(why, Some(Resolution::Returned));
}

#[test]
fn a_stuck_value_is_detected_and_said_to_be_stuck() {
    let mut values = seasonal(31, 6_000);
    let frozen = values[3_000];
    for v in &mut values[3_000..3_300] {
        *v = frozen;
    }
    let r = run(&values);
    let f = r.firings();
    assert_eq!(f.len(), 1, "{:?}", r.transitions);
    assert!((3_000..3_030).contains(&f[0]), "fired at {}", f[0]);
    assert_eq!(r.transitions[0].1.reason(), Reason::Stuck);
}

#[test]
fn a_drift_is_detected_before_it_ends() {
    let mut values = seasonal(41, 8_000);
    // 12σ over 400 minutes, then it stays.
    for (i, v) in values.iter_mut().enumerate().skip(3_000) {
        *v += 12.0 * ((i - 3_000) as f64 / 400.0).min(1.0);
    }
    let r = run(&values);
    let f = r.firings();
    assert!(!f.is_empty(), "no alert");
    assert!((3_000..3_400).contains(&f[0]), "first alert at {}", f[0]);
    let first = r.transitions.iter().find(|(i, _)| *i == f[0]).unwrap();
    assert!(
        matches!(first.1.reason(), Reason::Drift | Reason::Level),
        "{:?}",
        first.1
    );
}

#[test]
fn alerts_carry_the_channel_that_raised_them() {
    let d = detector();
    let rule = rule();
    let key = SeriesKey::new("cpu", [("host", "a")]);
    let mut spiky = seasonal(51, 3_000);
    spiky[2_500] += 20.0;
    let mut stuck = seasonal(52, 3_000);
    let frozen = stuck[2_500];
    for v in &mut stuck[2_500..] {
        *v = frozen;
    }
    for (values, reason) in [(spiky, "forecast"), (stuck, "stuck")] {
        let mut st = d.new_state();
        let mut lc = Lifecycle::new();
        let mut alert = None;
        for (i, &v) in values.iter().enumerate() {
            let ts = T0 + i as i64 * MINUTE;
            let x = d.observe(&mut st, ts, v).unwrap();
            if let Some(t) = lc.step(&rule, ts, v, &x) {
                alert.get_or_insert_with(|| {
                    build_alert(&key, &t, ts, v, &x, lc.peak_score(), &rule, "regression")
                });
            }
        }
        let json = serde_json::to_value(alert.expect("an alert")).unwrap();
        assert_eq!(json["reason"], reason, "{json}");
    }
}
