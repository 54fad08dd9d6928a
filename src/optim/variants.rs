//! Other published Adagrad rules, for reproducing models trained elsewhere.
//!
//! The daemon's models use [`super::Adagrad`] (PyTorch semantics). These
//! variants differ from it in where ε sits, whether there is a step counter,
//! and whether regularisation is proximal; each is written from the library's
//! documented update and checked against that library's own output in the
//! reference vectors (`tests/fixtures/adagrad/vectors.json`).
//!
//! | variant | update per coordinate |
//! |---|---|
//! | [`AdagradVariant::Keras3`] | `s += g²; θ -= lr·g/√(s + ε)` (ε inside the root) |
//! | [`AdagradVariant::TfV2`] | `s += g²; θ -= lr·g/(√s + ε)` |
//! | [`AdagradVariant::River`] | `s += g²; θ -= lr·g/√(s + ε)`, lazily: zero gradients leave θ and s alone |
//! | [`AdagradVariant::TfProximal`] | `s += g²; η = lr/√s; u = θ - η·g; θ = sign(u)·max(|u| - η·l1, 0)/(1 + η·l2)` |
//! | [`AdagradVariant::FtrlProximal`] | McMahan et al. (2013): `σ = (√(s+g²) - √s)/α; z += g - σ·θ; s += g²; θ = 0` if `|z| ≤ l1`, else `-(z - sign(z)·l1)/((β + √s)/α + l2)` |

use serde::{Deserialize, Serialize};

/// One of the non-PyTorch Adagrad rules, with its hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "variant", rename_all = "snake_case", deny_unknown_fields)]
pub enum AdagradVariant {
    /// `keras.optimizers.Adagrad` (Keras 3).
    Keras3 {
        /// Learning rate.
        lr: f64,
        /// Starting accumulator (Keras default 0.1).
        initial_accumulator_value: f64,
        /// ε, inside the square root.
        epsilon: f64,
    },
    /// TensorFlow's `ApplyAdagradV2` kernel (legacy `tf.keras`).
    TfV2 {
        /// Learning rate.
        lr: f64,
        /// Starting accumulator.
        initial_accumulator_value: f64,
        /// ε, outside the square root.
        epsilon: f64,
    },
    /// `river.optim.AdaGrad`: no step counter, lazy in absent features.
    River {
        /// Learning rate.
        lr: f64,
        /// ε, inside the square root.
        eps: f64,
    },
    /// TensorFlow's `ApplyProximalAdagrad`.
    TfProximal {
        /// Learning rate.
        lr: f64,
        /// l1 strength.
        l1: f64,
        /// l2 strength.
        l2: f64,
        /// Starting accumulator.
        initial_accumulator_value: f64,
    },
    /// FTRL-Proximal (McMahan et al., 2013), per-coordinate.
    FtrlProximal {
        /// α, the learning-rate scale.
        alpha: f64,
        /// β, the learning-rate offset.
        beta: f64,
        /// l1 strength.
        l1: f64,
        /// l2 strength.
        l2: f64,
    },
}

impl AdagradVariant {
    /// The accumulator's starting value.
    pub fn initial_accumulator(&self) -> f64 {
        match *self {
            Self::Keras3 {
                initial_accumulator_value,
                ..
            }
            | Self::TfV2 {
                initial_accumulator_value,
                ..
            }
            | Self::TfProximal {
                initial_accumulator_value,
                ..
            } => initial_accumulator_value,
            Self::River { .. } | Self::FtrlProximal { .. } => 0.0,
        }
    }

    /// One dense step. `z` is used by FTRL only (its linear accumulator) and
    /// may be empty for the others.
    pub fn step(&self, params: &mut [f64], sum: &mut [f64], z: &mut [f64], grad: &[f64]) {
        debug_assert_eq!(params.len(), sum.len());
        debug_assert_eq!(params.len(), grad.len());
        for i in 0..params.len() {
            let (theta, s, g) = (&mut params[i], &mut sum[i], grad[i]);
            match *self {
                Self::Keras3 { lr, epsilon, .. } => {
                    *s += g * g;
                    *theta -= lr * g / (*s + epsilon).sqrt();
                }
                Self::TfV2 { lr, epsilon, .. } => {
                    *s += g * g;
                    *theta -= lr * g / (s.sqrt() + epsilon);
                }
                Self::River { lr, eps } => {
                    if g != 0.0 {
                        *s += g * g;
                        *theta -= lr / (*s + eps).sqrt() * g;
                    }
                }
                Self::TfProximal { lr, l1, l2, .. } => {
                    *s += g * g;
                    let eta = lr / s.sqrt();
                    let u = *theta - eta * g;
                    let shrunk = (u.abs() - eta * l1).max(0.0);
                    *theta = shrunk.copysign(u) / (1.0 + eta * l2);
                }
                Self::FtrlProximal {
                    alpha,
                    beta,
                    l1,
                    l2,
                } => {
                    let s_new = *s + g * g;
                    let sigma = (s_new.sqrt() - s.sqrt()) / alpha;
                    z[i] += g - sigma * *theta;
                    *s = s_new;
                    let zi = z[i];
                    *theta = if zi.abs() <= l1 {
                        0.0
                    } else {
                        -(zi - l1.copysign(zi)) / ((beta + s.sqrt()) / alpha + l2)
                    };
                }
            }
        }
    }
}
