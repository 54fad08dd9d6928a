//! Online linear regression on standardised lags and calendar features.
//!
//! This module owns the regression model: its hyper-parameters
//! ([`LinearModel`]), its per-series state ([`LinearState`]) and one
//! predict/learn step. It does not score residuals (see
//! [`crate::threshold`]).
//!
//! The model forecasts the *step* from the last value to the next, in units
//! of the series' typical step ([`Standardizer::scale`]); its inputs are the
//! last value against the running mean (for mean reversion), the last
//! `lags - 1` steps, the calendar features and a bias. The loss is squared error with the error
//! clipped at `error_clip` typical steps in the gradient (a Huber loss), so that
//! an anomaly teaches the model no more than an ordinary large error. With
//! all weights at 0 (the start) the forecast is persistence (`next = last`),
//! a good forecast for most metrics from the first event on, which keeps the
//! warm-up short; and after a level shift the forecast follows the new level
//! at once instead of waiting for Adagrad's decaying steps to move a bias.
//!
//! State is one slab of `f64`: `[standardiser | ring of lags | weights |
//! Adagrad accumulators]`, plus the step counter.

use serde::{Deserialize, Serialize};

use super::features::{Ring, STANDARDIZER_LEN, Standardizer, TimeFeatures, ring_len};
use super::{Forecast, MAX_LAGS, OnlineModel, Work};
use crate::optim::Adagrad;

/// Hyper-parameters of the regression, shared by every series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearModel {
    /// Number of lag inputs.
    pub lags: usize,
    /// Calendar features.
    pub time: TimeFeatures,
    /// Standardiser of the values.
    pub standardizer: Standardizer,
    /// Gradient error clip, in typical steps.
    pub error_clip: f64,
}

/// Per-series state of [`LinearModel`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearState {
    /// `[standardiser | ring | weights | accumulators]`, see the module docs.
    slab: Box<[f64]>,
    /// Adagrad steps taken.
    step: u64,
}

impl LinearState {
    /// Bytes held on the heap (the slab).
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.slab)
    }

    /// Whether every number in the slab is finite.
    pub fn is_finite(&self) -> bool {
        self.slab.iter().all(|x| x.is_finite())
    }
}

impl LinearModel {
    /// Inputs: lags, calendar features, bias.
    #[inline]
    pub fn inputs(&self) -> usize {
        self.lags + self.time.len() + 1
    }

    #[inline]
    fn ring_start(&self) -> usize {
        STANDARDIZER_LEN
    }

    #[inline]
    fn weights_start(&self) -> usize {
        STANDARDIZER_LEN + ring_len(self.lags)
    }

    /// Length of the slab.
    fn slab_len(&self) -> usize {
        self.weights_start() + 2 * self.inputs()
    }

    /// Restarts `state` from `value` (see [`super::Model::rebase`]).
    pub fn rebase(&self, state: &mut LinearState, value: f64) {
        Standardizer::rebase(&mut state.slab[..STANDARDIZER_LEN], value);
        Ring::fill(
            &mut state.slab[self.ring_start()..self.weights_start()],
            value,
        );
    }

    /// Whether `state` has this model's layout (a snapshot taken under
    /// another config does not).
    pub fn fits(&self, state: &LinearState) -> bool {
        state.slab.len() == self.slab_len()
    }
}

impl OnlineModel for LinearModel {
    type State = LinearState;

    fn new_state(&self) -> LinearState {
        let slab = vec![0.0; self.slab_len()].into_boxed_slice();
        // All weights 0: the forecast starts as persistence.
        LinearState { slab, step: 0 }
    }

    #[inline]
    fn forecast(&self, state: &LinearState, ts_ms: i64, value: f64, work: &mut Work) -> Forecast {
        let slab = &state.slab;
        let stats = &slab[..STANDARDIZER_LEN];
        let ring = &slab[self.ring_start()..self.weights_start()];
        let n = self.inputs();
        let w = &slab[self.weights_start()..self.weights_start() + n];
        let x = &mut work.x[..n];
        let mean = Standardizer::mean(stats);
        let scale = Standardizer::scale(stats);
        let inv = 1.0 / scale;
        let mut recent = [0.0; MAX_LAGS];
        let filled = Ring::newest_first(ring, &mut recent[..self.lags]);
        // Forecasts are steps from the last value (persistence when every
        // weight is 0), so a level shift is absorbed by the next event.
        let last = if filled > 0 { recent[0] } else { mean };
        if self.lags > 0 {
            // Input 0: the last level against the mean (lets the model learn
            // mean reversion); inputs 1..lags: the last lags-1 steps. A step
            // not seen yet counts as no step.
            x[0] = Standardizer::z_inv(last, mean, inv);
            for k in 1..self.lags {
                x[k] = if k < filled {
                    Standardizer::z_inv(recent[k - 1], recent[k], inv)
                } else {
                    0.0
                };
            }
        }
        self.time.write(ts_ms, &mut x[self.lags..n - 1]);
        x[n - 1] = 1.0;
        let step_hat: f64 = x.iter().zip(w).map(|(a, b)| a * b).sum();
        let expected = last + scale * step_hat;
        // Scores (and gradients) are meaningful once the lags and the
        // statistics hold real values.
        let ready = filled >= self.lags.max(1) && stats[0] >= 2.0;
        work.target = Standardizer::z_inv(value, last, inv);
        work.y_hat = step_hat;
        work.ready = ready;
        work.last = if filled > 0 { Some(last) } else { None };
        Forecast {
            expected,
            residual: (value - expected) / scale,
            scale,
            mean: Standardizer::mean(stats),
            level_scale: Standardizer::level_scale(stats),
            ready,
        }
    }

    #[inline]
    fn learn(&self, state: &mut LinearState, optimizer: &Adagrad, value: f64, work: &mut Work) {
        let n = self.inputs();
        let ws = self.weights_start();
        if work.ready && !work.censored {
            self.step(state, optimizer, work, n, ws);
        }
        let stats = &mut state.slab[..STANDARDIZER_LEN];
        if work.censored {
            self.standardizer.update_anomalous(stats, value, work.last);
        } else {
            self.standardizer.update(stats, value, work.last);
        }
        Ring::push(&mut state.slab[self.ring_start()..ws], value);
    }
}

impl LinearModel {
    /// The Adagrad step on the squared (clipped) error of the last forecast.
    #[inline]
    fn step(
        &self,
        state: &mut LinearState,
        optimizer: &Adagrad,
        work: &mut Work,
        n: usize,
        ws: usize,
    ) {
        let err = (work.y_hat - work.target).clamp(-self.error_clip, self.error_clip);
        // The gradient of ½(ŷ - y)² is (ŷ - y)·x; computed in place, the
        // inputs are not needed any more.
        let grad = &mut work.x[..n];
        for g in grad.iter_mut() {
            *g *= err;
        }
        let (params, sum) = state.slab[ws..ws + 2 * n].split_at_mut(n);
        optimizer.step(params, sum, &mut state.step, grad);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::AdagradConfig;

    fn model() -> (LinearModel, Adagrad) {
        (
            LinearModel {
                lags: 2,
                time: TimeFeatures {
                    daily: 0,
                    weekly: 0,
                },
                standardizer: Standardizer { horizon: 100.0 },
                error_clip: 3.0,
            },
            Adagrad::new(AdagradConfig {
                lr: 0.05,
                ..Default::default()
            })
            .unwrap(),
        )
    }

    fn run(values: &[f64]) -> Vec<Forecast> {
        let (m, opt) = model();
        let mut st = m.new_state();
        let mut work = Work::default();
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let f = m.forecast(&st, i as i64 * 60_000, v, &mut work);
                m.learn(&mut st, &opt, v, &mut work);
                f
            })
            .collect()
    }

    #[test]
    fn flat_series_is_predicted_exactly() {
        let out = run(&[5.0; 50]);
        for f in &out[3..] {
            assert_eq!(f.expected, 5.0);
            assert_eq!(f.residual, 0.0);
        }
    }

    #[test]
    fn spike_gives_a_large_residual_and_prediction_stays_sane() {
        let mut v: Vec<f64> = (0..200).map(|i| 10.0 + (i % 3) as f64).collect();
        v[150] = 100.0;
        let out = run(&v);
        let typical = out[100..150]
            .iter()
            .map(|f| f.residual.abs())
            .fold(0.0, f64::max);
        assert!(out[150].residual > 10.0 * typical, "{:?}", out[150]);
        assert!(out[150].expected < 15.0, "{:?}", out[150]);
    }

    #[test]
    fn level_shift_is_followed_by_persistence() {
        let mut v = vec![1.0; 100];
        v.extend(std::iter::repeat_n(50.0, 100));
        let out = run(&v);
        assert!(out[100].residual > 5.0);
        // After the shift, the lags carry the new level.
        let last = out.last().unwrap();
        assert!((last.expected - 50.0).abs() < 1.0, "{last:?}");
    }
}
