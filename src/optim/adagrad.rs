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
//! so that `eps = 0` cannot turn `0 / 0` into NaN.
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
            if g != 0.0 {
                *theta -= clr * g / (s.sqrt() + c.eps);
            }
        } else {
            let h = c.eps + s.sqrt();
            let u = if g != 0.0 {
                *theta - clr * g / h
            } else {
                *theta
            };
            let shrunk = (u.abs() - clr * c.l1 / h).max(0.0);
            // `max` maps the NaN of 0/0 (h = 0) to 0, which is the limit.
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
