//! A small online autoencoder over the last `window` standardised values.
//!
//! This module owns the autoencoder model: hyper-parameters
//! ([`Autoencoder`]), per-series state ([`AutoencoderState`]) and one
//! forecast/learn step. It does not score residuals (see
//! [`crate::threshold`]).
//!
//! The input is the window of the last `window` values (the newest one
//! included), relative to the value before the newest and in units of the
//! series' typical step ([`Standardizer::scale`]); one `tanh`
//! hidden layer of `hidden` units (narrower than the window, so the network
//! must learn the usual shapes instead of copying its input) reconstructs the
//! window linearly. The residual is the reconstruction error of the newest
//! value, and the expected value is that reconstruction, de-standardised. Only
//! the newest value's error is scored, so a spike is scored once and not again
//! on each of the `window - 1` later events while it is still in the window.
//! Training minimises the squared reconstruction error of the whole window
//! (error clipped at `error_clip` typical steps, as in the regression) with one
//! Adagrad step per event.
//!
//! State is one slab: `[standardiser | ring of the previous window-1 values |
//! W1 b1 W2 b2 | accumulators]`, plus the step counter. The weights start from
//! a fixed pseudo-random draw (the same for every series), so the model is
//! deterministic.

use serde::{Deserialize, Serialize};

use super::features::{INPUT_CLAMP, Ring, STANDARDIZER_LEN, Standardizer, ring_len};
use super::{Forecast, MAX_HIDDEN, MAX_PARAMS, MAX_WINDOW, OnlineModel, Work};
use crate::optim::Adagrad;

/// Hyper-parameters of the autoencoder, shared by every series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Autoencoder {
    /// Values in the window (≥ 2).
    pub window: usize,
    /// Hidden units (≥ 1).
    pub hidden: usize,
    /// Standardiser of the values.
    pub standardizer: Standardizer,
    /// Gradient error clip, in typical steps.
    pub error_clip: f64,
}

/// Per-series state of [`Autoencoder`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoencoderState {
    /// See the module docs for the layout.
    slab: Box<[f64]>,
    /// Adagrad steps taken.
    step: u64,
}

impl AutoencoderState {
    /// Bytes held on the heap (the slab).
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.slab)
    }

    /// Whether every number in the slab is finite.
    pub fn is_finite(&self) -> bool {
        self.slab.iter().all(|x| x.is_finite())
    }
}

/// SplitMix64: a tiny fixed generator for the initial weights.
fn splitmix(i: u64) -> f64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    // Uniform in [-1, 1).
    (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

impl Autoencoder {
    /// Number of trained parameters.
    #[inline]
    pub fn params(&self) -> usize {
        2 * self.window * self.hidden + self.hidden + self.window
    }

    #[inline]
    fn ring_end(&self) -> usize {
        STANDARDIZER_LEN + ring_len(self.window - 1)
    }

    /// Restarts `state` from `value` (see [`super::Model::rebase`]).
    pub fn rebase(&self, state: &mut AutoencoderState, value: f64) {
        Standardizer::rebase(&mut state.slab[..STANDARDIZER_LEN], value);
        Ring::fill(&mut state.slab[STANDARDIZER_LEN..self.ring_end()], value);
    }

    fn slab_len(&self) -> usize {
        self.ring_end() + 2 * self.params()
    }

    /// Whether `state` has this model's layout (a snapshot taken under
    /// another config does not).
    pub fn fits(&self, state: &AutoencoderState) -> bool {
        state.slab.len() == self.slab_len()
    }
}

impl OnlineModel for Autoencoder {
    type State = AutoencoderState;

    fn new_state(&self) -> AutoencoderState {
        let mut slab = vec![0.0; self.slab_len()].into_boxed_slice();
        let (w, h) = (self.window, self.hidden);
        let p0 = self.ring_end();
        // Glorot-style uniform scale per layer; biases start at 0.
        let s1 = (6.0 / (w + h) as f64).sqrt();
        for k in 0..w * h {
            slab[p0 + k] = s1 * splitmix(k as u64);
            slab[p0 + w * h + h + k] = s1 * splitmix((w * h + k) as u64);
        }
        AutoencoderState { slab, step: 0 }
    }

    #[inline]
    fn forecast(
        &self,
        state: &AutoencoderState,
        _ts_ms: i64,
        value: f64,
        work: &mut Work,
    ) -> Forecast {
        let (w, h) = (self.window, self.hidden);
        let slab = &state.slab;
        let stats = &slab[..STANDARDIZER_LEN];
        let ring = &slab[STANDARDIZER_LEN..self.ring_end()];
        let p = &slab[self.ring_end()..self.ring_end() + self.params()];
        let (w1, rest) = p.split_at(w * h);
        let (b1, rest) = rest.split_at(h);
        let (w2, b2) = rest.split_at(w * h);
        let scale = Standardizer::scale(stats);
        let inv = 1.0 / scale;
        let mut recent = [0.0; MAX_WINDOW];
        let filled = Ring::newest_first(ring, &mut recent[..w - 1]);
        // The window is expressed relative to the previous value (in units of
        // the typical step), so the autoencoder learns shapes, not levels, and
        // a level shift is absorbed by the next event.
        let origin = if filled > 0 {
            recent[0]
        } else {
            Standardizer::mean(stats)
        };
        let z = (value - origin) * inv;
        // Chronological order: x[w - 1] is the newest value.
        let x = &mut work.x[..w];
        x[w - 1] = z.clamp(-INPUT_CLAMP, INPUT_CLAMP);
        for k in 1..w {
            // A value not seen yet stands at the origin.
            x[w - 1 - k] = if k - 1 < filled {
                Standardizer::z_inv(recent[k - 1], origin, inv)
            } else {
                0.0
            };
        }
        for j in 0..h {
            let row = &w1[j * w..(j + 1) * w];
            let u: f64 = row.iter().zip(x.iter()).map(|(a, b)| a * b).sum::<f64>() + b1[j];
            work.hidden[j] = u.tanh();
        }
        let hid = &work.hidden[..h];
        for i in 0..w {
            let row = &w2[i * h..(i + 1) * h];
            work.out[i] = row.iter().zip(hid).map(|(a, b)| a * b).sum::<f64>() + b2[i];
        }
        let y_hat = work.out[w - 1];
        let ready = filled >= w - 1 && stats[0] >= 2.0;
        work.y_hat = y_hat;
        work.target = x[w - 1];
        work.ready = ready;
        work.last = if filled > 0 { Some(origin) } else { None };
        Forecast {
            expected: origin + scale * y_hat,
            residual: z - y_hat,
            scale,
            mean: Standardizer::mean(stats),
            level_scale: Standardizer::level_scale(stats),
            ready,
        }
    }

    #[inline]
    fn learn(
        &self,
        state: &mut AutoencoderState,
        optimizer: &Adagrad,
        value: f64,
        work: &mut Work,
    ) {
        let (w, h) = (self.window, self.hidden);
        let re = self.ring_end();
        if work.ready && !work.censored {
            let np = self.params();
            let mut grad = [0.0; MAX_PARAMS];
            let (p, sum) = state.slab[re..re + 2 * np].split_at_mut(np);
            {
                let (gw1, rest) = grad[..np].split_at_mut(w * h);
                let (gb1, rest) = rest.split_at_mut(h);
                let (gw2, gb2) = rest.split_at_mut(w * h);
                let w2 = &p[w * h + h..2 * w * h + h];
                let hid = &work.hidden[..h];
                let mut dh = [0.0; MAX_HIDDEN];
                for i in 0..w {
                    let dy = (work.out[i] - work.x[i]).clamp(-self.error_clip, self.error_clip);
                    gb2[i] = dy;
                    for j in 0..h {
                        gw2[i * h + j] = dy * hid[j];
                        dh[j] += w2[i * h + j] * dy;
                    }
                }
                for j in 0..h {
                    let du = dh[j] * (1.0 - hid[j] * hid[j]);
                    gb1[j] = du;
                    for (g, x) in gw1[j * w..(j + 1) * w].iter_mut().zip(&work.x[..w]) {
                        *g = du * x;
                    }
                }
            }
            optimizer.step(p, sum, &mut state.step, &grad[..np]);
        }
        let stats = &mut state.slab[..STANDARDIZER_LEN];
        if work.censored {
            self.standardizer.update_anomalous(stats, value, work.last);
        } else {
            self.standardizer.update(stats, value, work.last);
        }
        Ring::push(&mut state.slab[STANDARDIZER_LEN..re], value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::AdagradConfig;

    fn run(values: &[f64]) -> Vec<Forecast> {
        let m = Autoencoder {
            window: 8,
            hidden: 3,
            standardizer: Standardizer { horizon: 200.0 },
            error_clip: 3.0,
        };
        let opt = Adagrad::new(AdagradConfig {
            lr: 0.05,
            ..Default::default()
        })
        .unwrap();
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
    fn flat_series_reconstructs_to_the_level() {
        let out = run(&[7.0; 300]);
        let last = out.last().unwrap();
        assert!((last.expected - 7.0).abs() < 1e-6, "{last:?}");
        assert!(last.expected.is_finite() && last.residual.is_finite());
    }

    #[test]
    fn learned_shape_reconstructs_and_a_spike_does_not() {
        let mut v: Vec<f64> = (0..3000)
            .map(|i| (i as f64 * std::f64::consts::TAU / 20.0).sin())
            .collect();
        v[2900] = 6.0;
        let out = run(&v);
        let typical = out[2800..2900]
            .iter()
            .map(|f| f.residual.abs())
            .sum::<f64>()
            / 100.0;
        assert!(
            out[2900].residual.abs() > 5.0 * typical,
            "spike {:?}, typical {typical}",
            out[2900]
        );
    }

    #[test]
    fn initial_weights_are_deterministic_and_bounded() {
        let m = Autoencoder {
            window: 4,
            hidden: 2,
            standardizer: Standardizer { horizon: 10.0 },
            error_clip: 3.0,
        };
        assert_eq!(m.new_state(), m.new_state());
        for k in 0..1000 {
            let u = splitmix(k);
            assert!((-1.0..1.0).contains(&u));
        }
    }
}
