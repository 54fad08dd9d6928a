//! Adagrad against reference vectors computed by PyTorch, Keras, River,
//! TensorFlow and the papers' closed forms.
//!
//! The vectors are `tests/fixtures/adagrad/vectors.json` (copied from the
//! project's shared reference set; see its `README` there). Set
//! `ANOMALYD_ADAGRAD_VECTORS=/path/to/other.json` to run the cases of another
//! file of the same format instead: every step of every case is checked, at
//! the tolerance the file states.

use std::path::PathBuf;

use anomalyd::optim::variants::AdagradVariant;
use anomalyd::optim::{Adagrad, AdagradConfig};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct File {
    tolerance: Tolerance,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Tolerance {
    abs: f64,
    rel: f64,
}

#[derive(Deserialize)]
struct Case {
    id: String,
    variant: String,
    hyperparameters: serde_json::Map<String, Value>,
    initial_params: Vec<f64>,
    steps: Vec<Step>,
    model: Option<Model>,
}

#[derive(Deserialize)]
struct Model {
    loss: String,
    #[serde(default = "yes")]
    bias: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct Step {
    t: u64,
    grad: Option<Vec<f64>>,
    grad_sparse: Option<Sparse>,
    params: Vec<f64>,
    state_sum: Option<Vec<f64>>,
    x: Option<Vec<f64>>,
    y: Option<f64>,
    prediction_before: Option<f64>,
}

#[derive(Deserialize)]
struct Sparse {
    indices: Vec<usize>,
    values: Vec<f64>,
}

fn vectors_path() -> PathBuf {
    match std::env::var_os("ANOMALYD_ADAGRAD_VECTORS") {
        Some(p) => PathBuf::from(p),
        None => {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/adagrad/vectors.json")
        }
    }
}

fn load() -> File {
    let path = vectors_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read Adagrad vectors {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("cannot parse Adagrad vectors {}: {e}", path.display()))
}

fn hp(case: &Case, key: &str, default: f64) -> f64 {
    match case.hyperparameters.get(key) {
        Some(v) => v
            .as_f64()
            .unwrap_or_else(|| panic!("{}: hyperparameter {key} is not a number", case.id)),
        None => default,
    }
}

fn pytorch_config(case: &Case) -> AdagradConfig {
    let d = AdagradConfig::default();
    AdagradConfig {
        lr: hp(case, "lr", d.lr),
        lr_decay: hp(case, "lr_decay", d.lr_decay),
        weight_decay: hp(case, "weight_decay", d.weight_decay),
        initial_accumulator_value: hp(
            case,
            "initial_accumulator_value",
            d.initial_accumulator_value,
        ),
        eps: hp(case, "eps", d.eps),
        maximize: case
            .hyperparameters
            .get("maximize")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        l1: 0.0,
    }
}

struct Checker<'a> {
    tol: &'a Tolerance,
    failures: Vec<String>,
}

impl Checker<'_> {
    fn check(&mut self, case: &str, t: u64, what: &str, actual: &[f64], expected: &[f64]) {
        if actual.len() != expected.len() {
            self.failures.push(format!(
                "{case} step {t}: {what} has {} entries, expected {}",
                actual.len(),
                expected.len()
            ));
            return;
        }
        for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
            let allowed = self.tol.abs + self.tol.rel * e.abs();
            // A NaN difference compares false, so it counts as a failure.
            let within = (a - e).abs() <= allowed;
            if !within {
                self.failures.push(format!(
                    "{case} step {t}: {what}[{i}] = {a:e}, expected {e:e} (diff {:e} > {allowed:e})",
                    (a - e).abs()
                ));
            }
        }
    }
}

/// Runs one case; returns false when the crate does not offer its variant.
fn run_case(case: &Case, ck: &mut Checker) -> bool {
    let n = case.initial_params.len();
    let mut params = case.initial_params.clone();
    match case.variant.as_str() {
        "pytorch" | "cmd_l1" | "linreg" => {
            let config = if case.variant == "cmd_l1" {
                AdagradConfig {
                    lr: hp(case, "lr", 0.01),
                    eps: hp(case, "delta", 0.0),
                    l1: hp(case, "l1", 0.0),
                    ..AdagradConfig::default()
                }
            } else {
                pytorch_config(case)
            };
            let opt = Adagrad::new(config).unwrap_or_else(|e| panic!("{}: {e}", case.id));
            let mut sum = vec![config.initial_accumulator_value; n];
            let mut step = 0u64;
            for s in &case.steps {
                if case.variant == "linreg" {
                    let model = case.model.as_ref().expect("linreg case without model");
                    let x = s.x.as_ref().expect("linreg step without x");
                    let y = s.y.expect("linreg step without y");
                    let (w, b) = if model.bias {
                        (&params[..n - 1], params[n - 1])
                    } else {
                        (&params[..], 0.0)
                    };
                    let pred: f64 = w.iter().zip(x).map(|(w, x)| w * x).sum::<f64>() + b;
                    if let Some(p) = s.prediction_before {
                        ck.check(&case.id, s.t, "prediction_before", &[pred], &[p]);
                    }
                    let scale = match model.loss.as_str() {
                        "half_squared" => 1.0,
                        "squared" => 2.0,
                        other => panic!("{}: unknown loss {other}", case.id),
                    };
                    let r = pred - y;
                    let mut grad: Vec<f64> = x.iter().map(|x| scale * r * x).collect();
                    if model.bias {
                        grad.push(scale * r);
                    }
                    opt.step(&mut params, &mut sum, &mut step, &grad);
                } else if let Some(sp) = &s.grad_sparse {
                    opt.step_sparse(&mut params, &mut sum, &mut step, &sp.indices, &sp.values)
                        .unwrap_or_else(|e| panic!("{}: {e}", case.id));
                } else {
                    let grad = s.grad.as_ref().expect("step without grad");
                    opt.step(&mut params, &mut sum, &mut step, grad);
                }
                assert_eq!(step, s.t, "{}: step counter", case.id);
                ck.check(&case.id, s.t, "params", &params, &s.params);
                if let Some(e) = &s.state_sum {
                    ck.check(&case.id, s.t, "state_sum", &sum, e);
                }
            }
        }
        "keras3" | "tf_v2_op" | "river" | "tf_proximal" | "ftrl_proximal" => {
            let v = match case.variant.as_str() {
                "keras3" => AdagradVariant::Keras3 {
                    lr: hp(case, "lr", 0.001),
                    initial_accumulator_value: hp(case, "initial_accumulator_value", 0.1),
                    epsilon: hp(case, "epsilon", 1e-7),
                },
                "tf_v2_op" => AdagradVariant::TfV2 {
                    lr: hp(case, "lr", 0.001),
                    initial_accumulator_value: hp(case, "initial_accumulator_value", 0.1),
                    epsilon: hp(case, "epsilon", 1e-7),
                },
                "river" => AdagradVariant::River {
                    lr: hp(case, "lr", 0.1),
                    eps: hp(case, "eps", 1e-8),
                },
                "tf_proximal" => AdagradVariant::TfProximal {
                    lr: hp(case, "lr", 0.001),
                    l1: hp(case, "l1", 0.0),
                    l2: hp(case, "l2", 0.0),
                    initial_accumulator_value: hp(case, "initial_accumulator_value", 0.1),
                },
                _ => AdagradVariant::FtrlProximal {
                    alpha: hp(case, "alpha", 0.1),
                    beta: hp(case, "beta", 1.0),
                    l1: hp(case, "l1", 0.0),
                    l2: hp(case, "l2", 0.0),
                },
            };
            let mut sum = vec![v.initial_accumulator(); n];
            let mut z = vec![0.0; n];
            for s in &case.steps {
                let grad = s.grad.as_ref().expect("step without grad");
                v.step(&mut params, &mut sum, &mut z, grad);
                ck.check(&case.id, s.t, "params", &params, &s.params);
                if let Some(e) = &s.state_sum {
                    ck.check(&case.id, s.t, "state_sum", &sum, e);
                }
            }
        }
        _ => return false,
    }
    true
}

#[test]
fn every_reference_case_matches_at_every_step() {
    let file = load();
    let mut ck = Checker {
        tol: &file.tolerance,
        failures: Vec::new(),
    };
    let mut skipped = Vec::new();
    let mut ran = 0;
    for case in &file.cases {
        if run_case(case, &mut ck) {
            ran += 1;
        } else {
            skipped.push(case.id.clone());
        }
    }
    assert!(ran > 0, "no case ran from {}", vectors_path().display());
    assert!(
        skipped.is_empty(),
        "cases with a variant this crate does not offer: {skipped:?}"
    );
    assert!(
        ck.failures.is_empty(),
        "{} mismatches:\n{}",
        ck.failures.len(),
        ck.failures.join("\n")
    );
}

#[test]
fn the_bundled_file_has_every_required_variant() {
    // Guards the default run: if the fixture lost its PyTorch, cmd_l1 or
    // linreg cases, the test above would pass vacuously for them.
    let file = load();
    for variant in ["pytorch", "cmd_l1", "linreg"] {
        assert!(
            file.cases.iter().any(|c| c.variant == variant),
            "{} has no {variant} case",
            vectors_path().display()
        );
    }
}
