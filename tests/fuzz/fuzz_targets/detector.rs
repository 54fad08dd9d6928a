//! Fuzzes the per-event path: an arbitrary (valid) detector and alert rule,
//! then an arbitrary sequence of (timestamp, value) pairs, with NaN, ±Inf,
//! ±1e300, subnormals, repeats and timestamps going backwards all likely.
//!
//! Checked on every event: `observe` never panics; a non-finite value, or
//! one beyond ±`MAX_ABS_VALUE`, is refused and leaves the state alone; every
//! decision is finite with its score in [0, 1) and `lower <= upper`; the
//! state stays finite and its size never changes; the alert lifecycle
//! alternates firing and resolved.
#![no_main]

use anomalyd::alert::lifecycle::{AlertRule, AlertRuleConfig, Direction, Lifecycle, Transition};
use anomalyd::detector::{Detector, DetectorConfig, MAX_ABS_VALUE, Skipped};
use anomalyd::model::ModelKind;
use anomalyd::threshold::ThresholdKind;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

/// Values a fuzzer rarely builds from raw bits but a metric can carry.
const SPECIAL: [f64; 20] = [
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    1e300,
    -1e300,
    1e-300,
    -1e-300,
    0.0,
    -0.0,
    f64::MAX,
    f64::MIN,
    f64::MIN_POSITIVE,
    5e-324,
    1e12,
    -1e12,
    1e154,
    -1e154,
    1e155,
    1.0,
    -1.0,
];

/// Events per input at most, so one execution stays fast.
const MAX_EVENTS: usize = 4096;

fn pick<T: Copy>(u: &mut Unstructured<'_>, from: &[T]) -> Result<T> {
    Ok(*u.choose(from)?)
}

fn detector_config(u: &mut Unstructured<'_>) -> Result<DetectorConfig> {
    let mut c = DetectorConfig::default();
    let m = &mut c.model;
    m.kind = pick(u, &[ModelKind::Regression, ModelKind::Autoencoder])?;
    m.lags = u.int_in_range(0..=8)?;
    m.daily_harmonics = u.int_in_range(0..=2)?;
    m.weekly_harmonics = u.int_in_range(0..=1)?;
    m.window = u.int_in_range(2..=8)?;
    m.hidden = u.int_in_range(1..=m.window - 1)?;
    m.standardize_events = pick(u, &[2, 10, 1000])?;
    m.error_clip = pick(u, &[3.0, 0.1, 1e6])?;
    m.learning_rate = pick(u, &[0.05, 1e-6, 1.0, 100.0])?;
    m.initial_accumulator = pick(u, &[0.0, 0.1, 1e6])?;
    let t = &mut c.threshold;
    t.kind = pick(
        u,
        &[
            ThresholdKind::Ewma,
            ThresholdKind::Quantile,
            ThresholdKind::Spot,
        ],
    )?;
    // Short warm-ups and horizons, so short inputs reach every stage.
    t.warmup_events = u.int_in_range(1..=10)?;
    t.horizon_events = pick(u, &[10, 20, 2000])?;
    t.quantile = pick(u, &[0.98, 0.5 + 1e-9, 1.0 - 1e-9])?;
    t.warmup_secs = pick(u, &[0, 60, 86_400])?;
    t.level_memory_secs = pick(u, &[60, 3600, 259_200])?;
    t.level_channel = u.arbitrary()?;
    t.drift_channel = u.arbitrary()?;
    t.stuck_channel = u.arbitrary()?;
    Ok(c)
}

fn rule_config(u: &mut Unstructured<'_>) -> Result<AlertRuleConfig> {
    let window_events = u.int_in_range(1..=8)?;
    Ok(AlertRuleConfig {
        threshold: pick(u, &[0.5, 0.01, 0.99])?,
        critical_threshold: None,
        resolve_threshold: None,
        for_events: u.int_in_range(1..=window_events)?,
        window_events,
        resolve_after_events: u.int_in_range(1..=4)?,
        cooldown_secs: pick(u, &[0, 60, 365 * 24 * 3600])?,
        direction: pick(u, &[Direction::Both, Direction::Above, Direction::Below])?,
        min_abs_deviation: pick(u, &[0.0, 1.0])?,
        min_rel_deviation: pick(u, &[0.0, 0.1])?,
    })
}

fn next_ts(u: &mut Unstructured<'_>, ts: i64) -> Result<i64> {
    // Repeated, backwards, anywhere (i64::MIN and MAX included), a jump.
    Ok(match u.int_in_range(0u8..=7)? {
        0 => ts,
        1 => ts.saturating_sub(i64::from(u.arbitrary::<u16>()?) * 1000),
        2 => u.arbitrary()?,
        3 => ts.saturating_add(i64::from(u.arbitrary::<u32>()?)),
        _ => ts.saturating_add(60_000),
    })
}

fn next_value(u: &mut Unstructured<'_>, last: f64) -> Result<f64> {
    Ok(match u.int_in_range(0u8..=7)? {
        0 => f64::from_bits(u.arbitrary()?),
        1 => pick(u, &SPECIAL)?,
        2 | 3 => last,
        // An ordinary value on some scale.
        _ => f64::from(u.arbitrary::<i8>()?) * pick(u, &[1.0, 1e-9, 1e9, 1e300])?,
    })
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let config = detector_config(u)?;
    let rule = rule_config(u)?;
    let Ok(detector) = Detector::new(&config, rule.threshold) else {
        return Ok(()); // e.g. no lag and no harmonic: refused by validation
    };
    let rule = AlertRule::new(&rule, "alert").expect("the rule is valid by construction");
    let mut state = detector.new_state();
    let size = postcard::to_allocvec(&state)
        .expect("state serialises")
        .len();
    let bytes = state.memory_bytes();
    let mut lifecycle = Lifecycle::new();
    let mut firing = false;
    let (mut ts, mut value) = (0i64, 0.0f64);
    for _ in 0..MAX_EVENTS {
        if u.is_empty() {
            break;
        }
        ts = next_ts(u, ts)?;
        value = next_value(u, value)?;
        let refused = !value.is_finite() || value.abs() > MAX_ABS_VALUE;
        let before = refused.then(|| state.clone());
        let d = match detector.observe(&mut state, ts, value) {
            Ok(d) => d,
            Err(Skipped::NonFinite { .. } | Skipped::OutOfRange { .. }) if refused => {
                assert_eq!(
                    Some(&state),
                    before.as_ref(),
                    "a refused value changed the state"
                );
                continue;
            }
            Err(e) => panic!("{value}: {e}"),
        };
        assert!(!refused, "{value} accepted");
        assert!((0.0..1.0).contains(&d.score), "{value}: {d:?}");
        assert!(
            d.expected.is_finite() && d.lower.is_finite() && d.upper.is_finite(),
            "{value}: {d:?}"
        );
        assert!(d.lower <= d.upper, "{value}: {d:?}");
        assert!(state.is_finite(), "{value}: {d:?}: {state:?}");
        assert_eq!(state.memory_bytes(), bytes, "the state changed size");
        match lifecycle.step(&rule, ts, value, &d) {
            Some(Transition::Firing { .. }) => {
                assert!(!firing, "fired twice without a resolve");
                firing = true;
            }
            Some(Transition::Resolved { .. }) => {
                assert!(firing, "resolved while quiet");
                firing = false;
            }
            Some(Transition::Escalated { .. }) => assert!(firing, "escalated while quiet"),
            None => {}
        }
        assert_eq!(lifecycle.is_firing(), firing);
    }
    let now = postcard::to_allocvec(&state)
        .expect("state serialises")
        .len();
    // postcard writes the step counters as varints: allow their growth.
    assert!(now <= size + 16, "state grew from {size} to {now} bytes");
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
