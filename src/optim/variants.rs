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
        /// β, the learning-rate offset. Keep it > 0 (the paper uses 1) or
        /// `l2` > 0: with both 0 the update divides by `√s`, which is 0
        /// when the squares of tiny gradients underflow, and writes ±∞.
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

/// Property tests: every variant, with hyper-parameters in its library's
/// documented domain, keeps its parameters finite for any finite gradients
/// whose squares do not overflow.
#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;

    fn variant() -> impl Strategy<Value = AdagradVariant> {
        let lr = prop::sample::select(&[1e-3, 0.1, 10.0][..]);
        let eps = prop::sample::select(&[1e-10, 1e-7, 1.0][..]);
        let acc = prop::sample::select(&[0.0, 0.1, 10.0][..]);
        let reg = prop::sample::select(&[0.0, 0.01, 1.0][..]);
        prop_oneof![
            (lr.clone(), acc.clone(), eps.clone()).prop_map(|(lr, a, e)| AdagradVariant::Keras3 {
                lr,
                initial_accumulator_value: a,
                epsilon: e
            }),
            (lr.clone(), acc.clone(), eps.clone()).prop_map(|(lr, a, e)| AdagradVariant::TfV2 {
                lr,
                initial_accumulator_value: a,
                epsilon: e
            }),
            (lr.clone(), eps).prop_map(|(lr, eps)| AdagradVariant::River { lr, eps }),
            // TensorFlow requires a positive starting accumulator here.
            (
                lr.clone(),
                reg.clone(),
                reg.clone(),
                prop::sample::select(&[0.1, 10.0][..])
            )
                .prop_map(|(lr, l1, l2, a)| AdagradVariant::TfProximal {
                    lr,
                    l1,
                    l2,
                    initial_accumulator_value: a
                }),
            // β > 0 (see its docs); β = 0 with l2 = 0 fails here with a
            // gradient of 1e-300.
            (lr, prop::sample::select(&[1e-3, 1.0][..]), reg.clone(), reg).prop_map(
                |(alpha, beta, l1, l2)| AdagradVariant::FtrlProximal {
                    alpha,
                    beta,
                    l1,
                    l2
                }
            ),
        ]
    }

    fn gradient() -> impl Strategy<Value = f64> {
        prop_oneof![
            3 => -10.0..10.0f64,
            1 => prop::sample::select(&[0.0, -0.0, 1e100, -1e100, 1e-300, 5e-324][..]),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 512,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x0A1A_6A2D),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn parameters_and_accumulators_stay_finite(
            v in variant(),
            grads in prop::collection::vec(prop::array::uniform3(gradient()), 0..100),
        ) {
            let mut params = [0.5, -2.0, 0.0];
            let mut sum = [v.initial_accumulator(); 3];
            let mut z = [0.0; 3];
            for g in &grads {
                v.step(&mut params, &mut sum, &mut z, g);
                prop_assert!(params.iter().chain(&sum).chain(&z).all(|x| x.is_finite()),
                    "{v:?}: {params:?} {sum:?} {z:?}");
            }
        }
    }
}
