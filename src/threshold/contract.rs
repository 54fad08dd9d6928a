//! The score contract: how a surprise in nats becomes a score in `[0, 1)`.
//!
//! Every event gets a **surprise** `L ≥ 0` in nats (`L = -ln p`, `p` the
//! probability, under the series' learned normal behaviour, of something at
//! least as unusual), and
//!
//! ```text
//! score = r / (r + 1),  r = (L / SURPRISE_AT_HALF)^1.5     (SURPRISE_AT_HALF = 10 nats)
//! ```
//!
//! - `score` is in `[0, 1)`, and 0 while the series warms up;
//! - for a given series state it is monotone in how improbable the event is
//!   over the whole range: nothing caps it, so on a Gaussian series a 30σ
//!   spike scores above a 10σ one (about 0.99 and 0.9), which scores above
//!   a 4.8σ one (0.5, with the four channels on), and a 3σ one stays below
//!   0.2;
//! - scores of different series are comparable: each is judged against its
//!   own learned distributions;
//! - it never reaches 1.0 (`L` is capped at [`MAX_SURPRISE`]).
//!
//! [`DEFAULT_ALERT_THRESHOLD`] = 0.5 is `L` = 10 nats: what a series' normal
//! behaviour produces about once in 22,000 events, whichever channels are
//! on (the largest channel surprise is corrected for their number: see
//! [`combined_surprise`]).

/// Surprise (nats) at which the score is 0.5.
pub const SURPRISE_AT_HALF: f64 = 10.0;

/// How steeply the score rises with surprise: `score = r / (r + 1)` with
/// `r = (L / SURPRISE_AT_HALF)^SCORE_POWER`. Above 1, so that the scale
/// spreads where it matters: 3 nats below the alert level are far below
/// 0.5 and three times its surprise is 0.84.
pub const SCORE_POWER: f64 = 1.5;

/// Cap on surprise: a residual can never make the score reach 1.0.
pub const MAX_SURPRISE: f64 = 1e6;

/// The score at which to alert by default: [`SURPRISE_AT_HALF`] nats.
pub const DEFAULT_ALERT_THRESHOLD: f64 = 0.5;

/// The surprise of the most surprising of `k` channels that each gave
/// surprise `l` or more: the chance that any of `k` independent channels
/// reaches a surprise of `l` (probability `p = e^-l` each) is
/// `1 - (1 - p)^k`, about `k p` (Šidák's correction). So an event's
/// surprise is a chance per event of the series, whichever channels are
/// on, and [`SURPRISE_AT_HALF`] is once in about 22,000 events of a series,
/// not of each channel. Monotone, 0 at 0, `l - ln k` for large `l`.
#[inline]
pub fn combined_surprise(l: f64, k: usize) -> f64 {
    if k <= 1 || l.is_nan() || l <= 0.0 {
        return l.max(0.0);
    }
    let p = (-l).exp();
    if p < 1e-6 {
        // 1 - (1 - p)^k = k p (1 - (k - 1) p / 2 + ...): exact to 1e-12.
        let k = k as f64;
        l - k.ln() + 0.5 * (k - 1.0) * p
    } else {
        // (k is the number of channels: a handful.)
        -(1.0 - (1.0 - p).powi(k as i32)).ln()
    }
}

/// The surprise each of `k` channels needs for the combined surprise to be
/// `l` (inverse of [`combined_surprise`]).
#[inline]
pub fn channel_surprise(l: f64, k: usize) -> f64 {
    if k <= 1 || l.is_nan() || l <= 0.0 {
        return l.max(0.0);
    }
    let k = k as f64;
    let any = (-l).exp();
    // p = 1 - (1 - any)^(1/k), without cancellation for small `any`.
    let p = -((-any).ln_1p() / k).exp_m1();
    if p > 0.0 { -p.ln() } else { l + k.ln() }
}

/// Maps a surprise in nats to a score in `[0, 1)` (see the module docs).
#[inline]
pub fn score_from_surprise(surprise: f64) -> f64 {
    if surprise > 0.0 {
        // x^SCORE_POWER as x·√x: this runs twice per event.
        const _: () = assert!(SCORE_POWER == 1.5);
        let x = surprise.min(MAX_SURPRISE) / SURPRISE_AT_HALF;
        let r = x * x.sqrt();
        r / (r + 1.0)
    } else {
        // Also maps NaN to 0: a broken estimate must not alert.
        0.0
    }
}

/// The surprise at which the score equals `score` (inverse of
/// [`score_from_surprise`]); `score ≥ 1` maps to [`MAX_SURPRISE`].
#[inline]
pub fn surprise_from_score(score: f64) -> f64 {
    if score <= 0.0 {
        0.0
    } else if score >= 1.0 {
        MAX_SURPRISE
    } else {
        (SURPRISE_AT_HALF * (score / (1.0 - score)).powf(1.0 / SCORE_POWER)).min(MAX_SURPRISE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_map_is_in_range_monotone_and_invertible() {
        let mut last = -1.0;
        for k in 0..2000 {
            let l = k as f64 * 0.37;
            let s = score_from_surprise(l);
            assert!((0.0..1.0).contains(&s));
            assert!(s > last || (l == 0.0 && s == 0.0));
            last = s;
            assert!((surprise_from_score(s) - l).abs() < 1e-9 * l.max(1.0));
        }
        assert_eq!(score_from_surprise(f64::NAN), 0.0);
        for k in [1, 2, 4] {
            let mut last = -1.0;
            for i in 0..4000 {
                let l = i as f64 * 0.01;
                let c = combined_surprise(l, k);
                assert!(
                    c >= 0.0 && c <= l && c > last || (l == 0.0 && c == 0.0),
                    "{k} {l} {c}"
                );
                last = c;
                // Exact: 1 - (1 - p)^k from the definition, in f64.
                let p = (-l).exp();
                let any = 1.0 - (1.0 - p).powi(k as i32);
                if any > 1e-9 {
                    assert!((c + any.ln()).abs() < 1e-6, "{k} {l}");
                }
                assert!(
                    (channel_surprise(c, k) - l).abs() < 1e-6 * l.max(1.0),
                    "{k} {l}"
                );
            }
            assert!((combined_surprise(50.0, k) - (50.0 - (k as f64).ln())).abs() < 1e-12);
            assert_eq!(combined_surprise(f64::INFINITY, k), f64::INFINITY);
        }
        assert_eq!(score_from_surprise(-3.0), 0.0);
        assert!(score_from_surprise(f64::INFINITY) < 1.0);
        assert_eq!(score_from_surprise(SURPRISE_AT_HALF), 0.5);
        assert_eq!(
            surprise_from_score(DEFAULT_ALERT_THRESHOLD),
            SURPRISE_AT_HALF
        );
        // Three times the alert's surprise is a clear 0.84.
        assert!(score_from_surprise(3.0 * SURPRISE_AT_HALF) > 0.83);
    }
}
