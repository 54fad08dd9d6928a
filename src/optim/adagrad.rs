//! Adagrad with the exact semantics of PyTorch's `torch.optim.Adagrad`.
//!
//! For every parameter coordinate `i`, at step `t` (1-based, counted for the
//! whole parameter vector, not per coordinate):
//!
//! ```text
//! g   = maximize ? -grad : grad
//! g   = g + weight_decay * θ                    (coupled weight decay)
//! clr = lr / (1 + (t - 1) * lr_decay)
//! s   = s + g²                                  (s starts at initial_accumulator_value)
//! θ   = θ - clr * g / (√s + eps)                (eps outside the root)
//! ```
//!
//! With `l1 > 0` the last line becomes the composite-mirror-descent step of
//! Duchi, Hazan & Singer (2011, eq. 19), with `eps` in the role of their δ:
//!
//! ```text
//! H = eps + √s
//! u = θ - clr * g / H
//! θ = sign(u) * max(|u| - clr * l1 / H, 0)      (every coordinate, every step)
//! ```
//!
//! which reduces to the PyTorch step when `l1 = 0`.
//!
//! A coordinate whose gradient is exactly zero keeps its value in the PyTorch
//! step (PyTorch computes `0 / (√s + eps) = 0`); the code skips the division
//! so that `eps = 0` cannot turn `0 / 0` into NaN. For the same reason, with
//! `eps = 0` a gradient so tiny (below about 1e-162) that its square
//! underflows to 0 moves nothing while the accumulator is still 0: it added
//! nothing to `s`, and PyTorch's `g / 0` would write ±∞ into the parameter.
//! And once an accumulator has overflowed to +∞ (a gradient beyond about
//! 1e154), that coordinate's steps are 0, which is what PyTorch computes as
//! long as `lr·g` is finite; where `lr·g` overflows too, PyTorch's `∞ / ∞`
//! would write NaN. Everywhere else the two agree bit for bit.
//!
//! The optimizer value holds only hyper-parameters. Parameters, accumulators
//! and the step counter belong to the caller ([`AdagradState`] is a
//! convenience owner for tests and small users), so that a per-series model
//! stores them inline in its own fixed-size arrays.

use serde::{Deserialize, Serialize};

/// Hyper-parameters of [`Adagrad`], named and defaulted as in PyTorch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdagradConfig {
    /// Base learning rate (`lr`).
    pub lr: f64,
    /// Learning-rate decay: step `t` uses `lr / (1 + (t - 1) * lr_decay)`.
    pub lr_decay: f64,
    /// Coupled L2 penalty: `weight_decay * θ` is added to the gradient before
    /// it is accumulated.
    pub weight_decay: f64,
    /// Starting value of every accumulator.
    pub initial_accumulator_value: f64,
    /// Added to `√s` (outside the root) to keep the step finite.
    pub eps: f64,
    /// Ascend instead of descend: the gradient is negated first, before weight
    /// decay is added, as PyTorch does.
    pub maximize: bool,
    /// Strength of the l1 term of composite mirror descent; 0 disables it and
    /// gives the plain PyTorch update.
    pub l1: f64,
}

impl Default for AdagradConfig {
    fn default() -> Self {
        Self {
            lr: 0.01,
            lr_decay: 0.0,
            weight_decay: 0.0,
            initial_accumulator_value: 0.0,
            eps: 1e-10,
            maximize: false,
            l1: 0.0,
        }
    }
}

/// A hyper-parameter outside its domain, or a sparse update PyTorch refuses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AdagradError {
    /// A hyper-parameter is negative, NaN or infinite. The field names the key.
    #[error("adagrad.{field} = {value} is invalid: it must be a finite number >= 0")]
    InvalidHyperParameter {
        /// The config key.
        field: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// PyTorch cannot combine weight decay with sparse gradients, and neither
    /// can this implementation (the decay term is dense by nature).
    #[error("weight_decay is not supported with sparse gradients; set adagrad.weight_decay = 0")]
    SparseWeightDecay,
    /// A sparse index is outside the parameter vector.
    #[error("sparse gradient index {index} is out of range for {len} parameters")]
    IndexOutOfRange {
        /// The offending index.
        index: usize,
        /// The number of parameters.
        len: usize,
    },
}

impl AdagradConfig {
    /// Checks every hyper-parameter and returns the first problem found.
    pub fn validate(&self) -> Result<(), AdagradError> {
        let fields = [
            ("lr", self.lr),
            ("lr_decay", self.lr_decay),
            ("weight_decay", self.weight_decay),
            ("initial_accumulator_value", self.initial_accumulator_value),
            ("eps", self.eps),
            ("l1", self.l1),
        ];
        for (field, value) in fields {
            if !value.is_finite() || value < 0.0 {
                return Err(AdagradError::InvalidHyperParameter { field, value });
            }
        }
        Ok(())
    }
}

/// The Adagrad update rule (hyper-parameters only; see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adagrad {
    config: AdagradConfig,
}

impl Adagrad {
    /// Builds the optimizer after validating `config`.
    pub fn new(config: AdagradConfig) -> Result<Self, AdagradError> {
        config.validate()?;
        Ok(Self { config })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &AdagradConfig {
        &self.config
    }

    /// The learning rate of step `t` (1-based).
    #[inline]
    pub fn step_lr(&self, t: u64) -> f64 {
        self.config.lr / (1.0 + (t.saturating_sub(1)) as f64 * self.config.lr_decay)
    }

    /// One dense step. `step` is the number of steps taken so far and is
    /// incremented first, as PyTorch does. `params`, `sum` and `grad` must
    /// have the same length.
    #[inline]
    pub fn step(&self, params: &mut [f64], sum: &mut [f64], step: &mut u64, grad: &[f64]) {
        debug_assert_eq!(params.len(), sum.len());
        debug_assert_eq!(params.len(), grad.len());
        *step += 1;
        let clr = self.step_lr(*step);
        let c = &self.config;
        for ((theta, s), &raw) in params.iter_mut().zip(sum.iter_mut()).zip(grad) {
            let mut g = if c.maximize { -raw } else { raw };
            if c.weight_decay != 0.0 {
                g += c.weight_decay * *theta;
            }
            *s += g * g;
            self.apply(theta, *s, g, clr);
        }
    }

    /// One sparse step, as PyTorch's sparse-gradient path: only the listed
    /// coordinates are touched, but the step counter (and so the decayed
    /// learning rate) is the whole vector's. Repeated indices are summed
    /// first, as `Tensor::coalesce` does.
    pub fn step_sparse(
        &self,
        params: &mut [f64],
        sum: &mut [f64],
        step: &mut u64,
        indices: &[usize],
        values: &[f64],
    ) -> Result<(), AdagradError> {
        debug_assert_eq!(params.len(), sum.len());
        debug_assert_eq!(indices.len(), values.len());
        if self.config.weight_decay != 0.0 {
            return Err(AdagradError::SparseWeightDecay);
        }
        let len = params.len();
        if let Some(&index) = indices.iter().find(|&&i| i >= len) {
            return Err(AdagradError::IndexOutOfRange { index, len });
        }
        *step += 1;
        let clr = self.step_lr(*step);
        for (k, &i) in indices.iter().enumerate() {
            if indices[..k].contains(&i) {
                continue; // already applied as part of the coalesced sum
            }
            let raw: f64 = indices[k..]
                .iter()
                .zip(&values[k..])
                .filter(|(j, _)| **j == i)
                .map(|(_, v)| *v)
                .sum();
            let g = if self.config.maximize { -raw } else { raw };
            sum[i] += g * g;
            self.apply(&mut params[i], sum[i], g, clr);
        }
        if self.config.l1 > 0.0 {
            // Composite mirror descent shrinks every coordinate at every step,
            // including those without a gradient.
            for i in (0..len).filter(|i| !indices.contains(i)) {
                self.apply(&mut params[i], sum[i], 0.0, clr);
            }
        }
        Ok(())
    }

    /// The parameter update for one coordinate, given its new accumulator.
    #[inline(always)]
    fn apply(&self, theta: &mut f64, s: f64, g: f64, clr: f64) {
        let c = &self.config;
        if c.l1 == 0.0 {
            let denom = s.sqrt() + c.eps;
            // `denom` is 0 only with eps = 0 and an accumulator that is 0 or
            // underflowed, and ∞ once it overflowed (see the module docs).
            if g != 0.0 && denom > 0.0 && denom < f64::INFINITY {
                *theta -= clr * g / denom;
            }
        } else {
            let h = c.eps + s.sqrt();
            let u = if g != 0.0 && h > 0.0 && h < f64::INFINITY {
                *theta - clr * g / h
            } else {
                *theta
            };
            let shrunk = (u.abs() - clr * c.l1 / h).max(0.0);
            // h = 0: the shrink is ∞ and θ goes to 0, the limit; h = ∞: no
            // shrink, as no step.
            *theta = if shrunk > 0.0 {
                shrunk.copysign(u)
            } else {
                0.0
            };
        }
    }
}

/// Owned parameters plus Adagrad state, for callers that do not embed the
/// state in a larger structure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdagradState {
    /// The parameters θ.
    pub params: Vec<f64>,
    /// The accumulators s (sum of squared gradients + initial value).
    pub sum: Vec<f64>,
    /// Steps taken so far.
    pub step: u64,
}

impl AdagradState {
    /// Fresh state for `params`, with accumulators at the configured start.
    pub fn new(params: Vec<f64>, config: &AdagradConfig) -> Self {
        let sum = vec![config.initial_accumulator_value; params.len()];
        Self {
            params,
            sum,
            step: 0,
        }
    }

    /// A dense step with `optimizer`.
    pub fn step(&mut self, optimizer: &Adagrad, grad: &[f64]) {
        optimizer.step(&mut self.params, &mut self.sum, &mut self.step, grad);
    }

    /// A sparse step with `optimizer`.
    pub fn step_sparse(
        &mut self,
        optimizer: &Adagrad,
        indices: &[usize],
        values: &[f64],
    ) -> Result<(), AdagradError> {
        optimizer.step_sparse(
            &mut self.params,
            &mut self.sum,
            &mut self.step,
            indices,
            values,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt(config: AdagradConfig) -> Adagrad {
        Adagrad::new(config).unwrap()
    }

    #[test]
    fn first_step_moves_each_coordinate_by_lr() {
        // With s = g² after one step, θ moves by lr·g/|g| = lr·sign(g).
        let o = opt(AdagradConfig {
            lr: 0.5,
            eps: 0.0,
            ..Default::default()
        });
        let mut st = AdagradState::new(vec![1.0, -2.0, 3.0], o.config());
        st.step(&o, &[4.0, -0.001, 0.0]);
        assert_eq!(st.params, vec![0.5, -1.5, 3.0]);
        assert_eq!(st.sum, vec![16.0, 0.000001, 0.0]);
        assert_eq!(st.step, 1);
    }

    #[test]
    fn lr_decay_uses_t_minus_one() {
        let o = opt(AdagradConfig {
            lr: 1.0,
            lr_decay: 0.5,
            ..Default::default()
        });
        assert_eq!(o.step_lr(1), 1.0);
        assert_eq!(o.step_lr(2), 1.0 / 1.5);
        assert_eq!(o.step_lr(3), 0.5);
    }

    #[test]
    fn zero_eps_and_zero_gradient_stay_finite() {
        let o = opt(AdagradConfig {
            eps: 0.0,
            ..Default::default()
        });
        let mut st = AdagradState::new(vec![0.25], o.config());
        st.step(&o, &[0.0]);
        assert_eq!(st.params, vec![0.25]);
    }

    #[test]
    fn zero_eps_and_a_gradient_whose_square_underflows_stay_finite() {
        // Found by the property test below: g² = 0, so √s + eps = 0, and
        // the PyTorch step g / 0 wrote -∞ into the parameter.
        let o = opt(AdagradConfig {
            lr: 1e-6,
            eps: 0.0,
            ..Default::default()
        });
        let mut st = AdagradState::new(vec![1.0, 1.0], o.config());
        st.step_sparse(&o, &[0], &[3.2670006624449545e-221])
            .unwrap();
        st.step(&o, &[0.0, -5e-324]);
        assert_eq!(st.params, vec![1.0, 1.0]);
        assert_eq!(st.sum, vec![0.0, 0.0]);
        // Once the accumulator holds something, tiny gradients move again.
        st.step(&o, &[1e-100, 0.0]);
        assert_eq!(st.params[0], 1.0 - 1e-6);
    }

    #[test]
    fn an_overflowed_accumulator_stops_the_coordinate_instead_of_nan() {
        // Found by the property test below: s = ∞ and lr·g = ∞, so the
        // PyTorch step ∞ / ∞ wrote NaN.
        for l1 in [0.0, 0.1] {
            let o = opt(AdagradConfig {
                lr: 100.0,
                eps: 0.0,
                l1,
                ..Default::default()
            });
            let mut st = AdagradState::new(vec![0.5, 0.5], o.config());
            st.step(&o, &[f64::MAX, 1e200]);
            assert_eq!(st.sum, vec![f64::INFINITY, f64::INFINITY]);
            assert_eq!(st.params, vec![0.5, 0.5], "l1 {l1}");
            st.step(&o, &[1.0, -1.0]);
            assert_eq!(st.params, vec![0.5, 0.5], "l1 {l1}");
        }
    }

    #[test]
    fn l1_shrinks_coordinates_without_gradient_to_zero() {
        let o = opt(AdagradConfig {
            lr: 0.1,
            l1: 1.0,
            eps: 0.0,
            ..Default::default()
        });
        let mut st = AdagradState::new(vec![0.05, 2.0], o.config());
        st.step(&o, &[1.0, 0.0]);
        // Coordinate 0: u = 0.05 - 0.1 = -0.05, shrink 0.1 → 0.
        // Coordinate 1: s = 0, H = 0, shrink = ∞ → 0.
        assert_eq!(st.params, vec![0.0, 0.0]);
    }

    #[test]
    fn sparse_coalesces_repeated_indices_and_refuses_weight_decay() {
        let o = opt(AdagradConfig {
            lr: 1.0,
            eps: 0.0,
            ..Default::default()
        });
        let mut st = AdagradState::new(vec![0.0, 0.0], o.config());
        st.step_sparse(&o, &[1, 1], &[1.0, 2.0]).unwrap();
        assert_eq!(st.sum, vec![0.0, 9.0]);
        assert_eq!(st.params, vec![0.0, -1.0]);
        assert_eq!(
            st.step_sparse(&o, &[2], &[1.0]),
            Err(AdagradError::IndexOutOfRange { index: 2, len: 2 })
        );
        let wd = opt(AdagradConfig {
            weight_decay: 0.1,
            ..Default::default()
        });
        assert_eq!(
            st.step_sparse(&wd, &[0], &[1.0]),
            Err(AdagradError::SparseWeightDecay)
        );
    }

    #[test]
    fn invalid_hyper_parameters_name_the_key() {
        let err = Adagrad::new(AdagradConfig {
            lr: -1.0,
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("adagrad.lr"), "{err}");
        assert!(
            Adagrad::new(AdagradConfig {
                eps: f64::NAN,
                ..Default::default()
            })
            .is_err()
        );
    }
}

/// Property tests: finiteness and step bounds for any finite gradients.
#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;

    /// Any finite gradient, small and huge ones both likely.
    fn gradient() -> impl Strategy<Value = f64> {
        prop_oneof![
            3 => -10.0..10.0f64,
            1 => prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO,
            1 => prop::sample::select(&[0.0, -0.0, f64::MAX, f64::MIN, 1e154, -1e300, 5e-324][..]),
        ]
    }

    fn config() -> impl Strategy<Value = AdagradConfig> {
        (
            prop::sample::select(&[1e-6, 0.01, 1.0, 100.0][..]),
            prop::sample::select(&[0.0, 0.1][..]),
            prop::sample::select(&[0.0, 1e-4, 0.5][..]),
            prop::sample::select(&[0.0, 0.1, 1e6][..]),
            prop::sample::select(&[0.0, 1e-10, 1.0][..]),
            any::<bool>(),
            prop::sample::select(&[0.0, 0.0, 0.01][..]),
        )
            .prop_map(|(lr, lr_decay, weight_decay, acc, eps, maximize, l1)| {
                AdagradConfig {
                    lr,
                    lr_decay,
                    weight_decay,
                    initial_accumulator_value: acc,
                    eps,
                    maximize,
                    l1,
                }
            })
    }

    const DIM: usize = 4;

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 512,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0xADA6_2AD0),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Parameters stay finite for ANY finite gradients, and each step
        /// moves a coordinate by at most the step's learning rate (Adagrad's
        /// `|g| / √s ≤ 1`, since `s` includes `g²`). Accumulators can only
        /// overflow to +∞ when the squared gradients do (|g| > 1e154), which
        /// is the PyTorch semantics; they are finite otherwise.
        #[test]
        fn parameters_stay_finite_and_steps_are_bounded_by_lr(
            config in config(),
            start in prop::array::uniform4(-10.0..10.0f64),
            grads in prop::collection::vec(prop::array::uniform4(gradient()), 0..100),
        ) {
            let o = Adagrad::new(config).unwrap();
            let mut st = AdagradState::new(start.to_vec(), &config);
            let mut squares = [config.initial_accumulator_value; DIM];
            for (t, g) in grads.iter().enumerate() {
                let before = st.params.clone();
                st.step(&o, g);
                let clr = o.step_lr(t as u64 + 1);
                for i in 0..DIM {
                    prop_assert!(st.params[i].is_finite(), "{:?}", st);
                    prop_assert!(!st.sum[i].is_nan(), "{:?}", st);
                    let moved = (st.params[i] - before[i]).abs();
                    // Rounding: of θ - step (a few ulp of θ), and of √s,
                    // which is coarse when s is subnormal.
                    let ulps = 4.0 * f64::EPSILON * before[i].abs().max(st.params[i].abs());
                    let rel = if st.sum[i] < 1e3 * f64::MIN_POSITIVE { 1e-2 } else { 1e-12 };
                    // l1 shrinks by up to clr·l1/H more, or to 0, which is no
                    // further than where it was.
                    let shrink = if config.l1 > 0.0 {
                        clr * config.l1 / (config.eps + st.sum[i].sqrt())
                    } else {
                        0.0
                    };
                    prop_assert!(
                        moved <= clr * (1.0 + rel) + shrink + ulps
                            || (config.l1 > 0.0 && st.params[i] == 0.0),
                        "step {t}: moved {moved} > lr {clr}: {:?}",
                        st
                    );
                    let eff = g[i] + config.weight_decay * before[i];
                    squares[i] += eff * eff;
                    if squares[i].is_finite() {
                        prop_assert!(st.sum[i].is_finite());
                    }
                }
            }
        }

        /// With weight decay and gradients bounded by `G`, every parameter
        /// stays within `max(|θ₀|, G / weight_decay) + lr`: beyond `G / wd`
        /// the decayed gradient points back towards 0.
        #[test]
        fn weight_decay_bounds_the_parameters(
            lr in prop::sample::select(&[0.01, 1.0][..]),
            weight_decay in prop::sample::select(&[1e-3, 0.1, 1.0][..]),
            bound in prop::sample::select(&[1.0, 1e3][..]),
            start in prop::array::uniform4(-10.0..10.0f64),
            grads in prop::collection::vec(prop::array::uniform4(-1.0..=1.0f64), 0..300),
        ) {
            let config = AdagradConfig { lr, weight_decay, ..AdagradConfig::default() };
            let o = Adagrad::new(config).unwrap();
            let mut st = AdagradState::new(start.to_vec(), &config);
            for g in &grads {
                let g = g.map(|x| x * bound);
                st.step(&o, &g);
                for (i, p) in st.params.iter().enumerate() {
                    let limit = start[i].abs().max(bound / weight_decay) + lr;
                    prop_assert!(p.abs() <= limit * (1.0 + 1e-12), "{p} > {limit}");
                }
            }
        }

        /// The sparse path keeps parameters finite too, as long as the
        /// coalesced sum of a coordinate's values does not overflow (then
        /// `±∞ / ∞` is NaN, in PyTorch as here; the daemon's models only
        /// take dense steps).
        #[test]
        fn sparse_steps_stay_finite(
            config in config().prop_map(|c| AdagradConfig { weight_decay: 0.0, ..c }),
            steps in prop::collection::vec(
                prop::collection::vec((0usize..DIM, gradient().prop_map(|g| g.clamp(-1e300, 1e300))), 0..6),
                0..50,
            ),
        ) {
            let o = Adagrad::new(config).unwrap();
            let mut st = AdagradState::new(vec![1.0; DIM], &config);
            for s in &steps {
                let (idx, vals): (Vec<usize>, Vec<f64>) = s.iter().copied().unzip();
                st.step_sparse(&o, &idx, &vals).unwrap();
                prop_assert!(st.params.iter().all(|p| p.is_finite()), "{:?}", st);
            }
        }
    }
}
