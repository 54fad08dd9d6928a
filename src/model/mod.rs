//! Per-series online models: they forecast the next value and learn it.
//!
//! This module owns the models' configuration ([`ModelConfig`]), the
//! [`OnlineModel`] trait that gives every model the same shape, and the
//! [`Model`] / [`ModelState`] enums the detector dispatches through (an enum
//! and not a `dyn` trait object: the call is inlined on the hot path, and the
//! per-series state is one compact value with no vtable pointer). It does not
//! own thresholds or scores ([`crate::threshold`]) or the optimizer
//! ([`crate::optim`]); models are handed the shared [`Adagrad`] to step with.
//!
//! Every model works in units of the series' own typical step (the RMS of
//! its first differences, [`features::Standardizer`]) and forecasts relative
//! to the last value, and reports its residual in those units, so residuals
//! of series on any scale (1e-9 to 1e12) are comparable and a level shift is
//! absorbed by the next event.
//!
//! Values are finite and within ±[`crate::detector::MAX_ABS_VALUE`]: the
//! detector refuses others before a model sees them, because squares of
//! larger differences overflow.

pub mod autoencoder;
pub mod features;
pub mod linear;

use serde::{Deserialize, Serialize};

use crate::config::Problems;
use crate::optim::{Adagrad, AdagradConfig};
use autoencoder::{Autoencoder, AutoencoderState};
use features::{Standardizer, TimeFeatures};
use linear::{LinearModel, LinearState};

/// Most inputs any model takes (regression: lags + calendar + bias;
/// autoencoder: the window).
pub const MAX_INPUTS: usize = 64;
/// Most hidden units of the autoencoder.
pub const MAX_HIDDEN: usize = 16;
/// Most autoencoder inputs (its window).
pub const MAX_WINDOW: usize = 32;
/// Most trained parameters of any model (the largest autoencoder).
pub const MAX_PARAMS: usize = 2 * MAX_WINDOW * MAX_HIDDEN + MAX_HIDDEN + MAX_WINDOW;
/// Most lags of the regression.
pub const MAX_LAGS: usize = 32;
/// Most harmonics per calendar period.
pub const MAX_HARMONICS: usize = 6;

/// Which model learns each series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Online linear regression on lags and calendar features
    /// ([`linear`]). Fast and small; the default.
    Regression,
    /// Online autoencoder over a window of recent values ([`autoencoder`]).
    Autoencoder,
}

impl ModelKind {
    /// The name used in config, logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Regression => "regression",
            Self::Autoencoder => "autoencoder",
        }
    }
}

/// `[detector.model]`: the per-series forecasting model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// `regression` (default) or `autoencoder`.
    pub kind: ModelKind,
    /// Regression: how many past values are inputs (0 to 32).
    pub lags: usize,
    /// Regression: harmonics of the time of day used as inputs (0 to 6; 0
    /// disables). Helps series with a daily shape.
    pub daily_harmonics: usize,
    /// Regression: harmonics of the time of week used as inputs (0 to 6; 0
    /// disables).
    pub weekly_harmonics: usize,
    /// Autoencoder: how many recent values it reconstructs (2 to 32).
    pub window: usize,
    /// Autoencoder: hidden units (1 to 16, fewer than `window`).
    pub hidden: usize,
    /// Events over which the running mean, deviation and typical step of the
    /// values are averaged (after that many events, older values fade out at
    /// rate 1/`standardize_events`). At least 2.
    pub standardize_events: u32,
    /// Errors larger than this many typical steps count as this large in the
    /// gradient (Huber loss), so anomalies do not drag the model. > 0.
    pub error_clip: f64,
    /// Adagrad base learning rate (PyTorch `lr`). > 0.
    pub learning_rate: f64,
    /// Adagrad starting accumulator (PyTorch `initial_accumulator_value`).
    /// ≥ 0.
    pub initial_accumulator: f64,
    /// Adagrad learning-rate decay (PyTorch `lr_decay`): step `t` uses
    /// `learning_rate / (1 + (t - 1) lr_decay)`. ≥ 0; 0 (default) keeps the
    /// rate, so a series keeps adapting however old it is.
    pub lr_decay: f64,
    /// Adagrad coupled L2 penalty (PyTorch `weight_decay`). ≥ 0; 0 (default)
    /// is off.
    pub weight_decay: f64,
    /// Adagrad's term added to `√accumulator` (PyTorch `eps`). > 0.
    pub eps: f64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            kind: ModelKind::Regression,
            lags: 8,
            daily_harmonics: 1,
            weekly_harmonics: 0,
            window: 16,
            hidden: 4,
            standardize_events: 1000,
            error_clip: 3.0,
            learning_rate: 0.05,
            initial_accumulator: 0.0,
            lr_decay: 0.0,
            weight_decay: 0.0,
            eps: 1e-10,
        }
    }
}

impl ModelConfig {
    /// Records every problem with its full key (`prefix` is e.g.
    /// `detector.model`).
    pub fn validate(&self, prefix: &str, problems: &mut Problems) {
        let key = |k: &str| format!("{prefix}.{k}");
        problems.check(
            self.lags <= MAX_LAGS,
            key("lags"),
            format!("must be at most {MAX_LAGS}; use fewer lags"),
        );
        problems.check(
            self.kind != ModelKind::Regression || self.lags > 0 || self.daily_harmonics > 0,
            key("lags"),
            "a regression needs at least one lag or one daily harmonic; set lags = 8",
        );
        for (name, v) in [
            ("daily_harmonics", self.daily_harmonics),
            ("weekly_harmonics", self.weekly_harmonics),
        ] {
            problems.check(
                v <= MAX_HARMONICS,
                key(name),
                format!("must be at most {MAX_HARMONICS}"),
            );
        }
        problems.check(
            (2..=MAX_WINDOW).contains(&self.window),
            key("window"),
            format!("must be between 2 and {MAX_WINDOW}"),
        );
        problems.check(
            (1..=MAX_HIDDEN).contains(&self.hidden) && self.hidden < self.window,
            key("hidden"),
            format!("must be between 1 and {MAX_HIDDEN} and less than window"),
        );
        problems.check(
            self.standardize_events >= 2,
            key("standardize_events"),
            "must be at least 2 (1000 is a good start)",
        );
        problems.check(
            self.error_clip.is_finite() && self.error_clip > 0.0,
            key("error_clip"),
            "must be a finite number > 0 (3 is a good start)",
        );
        problems.check(
            self.learning_rate.is_finite() && self.learning_rate > 0.0,
            key("learning_rate"),
            "must be a finite number > 0 (0.05 is a good start)",
        );
        problems.check(
            self.initial_accumulator.is_finite() && self.initial_accumulator >= 0.0,
            key("initial_accumulator"),
            "must be a finite number >= 0",
        );
        for (name, v) in [
            ("lr_decay", self.lr_decay),
            ("weight_decay", self.weight_decay),
        ] {
            problems.check(
                v.is_finite() && v >= 0.0,
                key(name),
                "must be a finite number >= 0 (0, the default, turns it off)",
            );
        }
        problems.check(
            self.eps.is_finite() && self.eps > 0.0,
            key("eps"),
            "must be a finite number > 0 (1e-10 is PyTorch's default)",
        );
    }

    /// The Adagrad hyper-parameters: PyTorch's `torch.optim.Adagrad(lr,
    /// lr_decay, weight_decay, initial_accumulator_value, eps)`.
    pub fn adagrad(&self) -> AdagradConfig {
        AdagradConfig {
            lr: self.learning_rate,
            lr_decay: self.lr_decay,
            weight_decay: self.weight_decay,
            initial_accumulator_value: self.initial_accumulator,
            eps: self.eps,
            ..AdagradConfig::default()
        }
    }

    /// Builds the model. Call [`ModelConfig::validate`] first; out-of-range
    /// sizes are clamped here so that a skipped validation cannot index out
    /// of the fixed work buffers.
    pub fn build(&self) -> Model {
        let standardizer = Standardizer {
            horizon: f64::from(self.standardize_events.max(2)),
        };
        match self.kind {
            ModelKind::Regression => Model::Linear(LinearModel {
                lags: self.lags.min(MAX_LAGS),
                time: TimeFeatures {
                    daily: self.daily_harmonics.min(MAX_HARMONICS),
                    weekly: self.weekly_harmonics.min(MAX_HARMONICS),
                },
                standardizer,
                error_clip: self.error_clip,
            }),
            ModelKind::Autoencoder => {
                let window = self.window.clamp(2, MAX_WINDOW);
                Model::Autoencoder(Autoencoder {
                    window,
                    hidden: self.hidden.clamp(1, MAX_HIDDEN.min(window - 1)),
                    standardizer,
                    error_clip: self.error_clip,
                })
            }
        }
    }
}

/// What a model says about one event before learning it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Forecast {
    /// The expected value, in the series' units.
    pub expected: f64,
    /// `(value - expected) / scale`: the error in typical steps of the series.
    pub residual: f64,
    /// The series' typical step (the unit of `residual`), > 0.
    pub scale: f64,
    /// The series' long-run mean (before this value).
    pub mean: f64,
    /// The deviation of the series' level around that mean, > 0.
    pub level_scale: f64,
    /// False while the model has too little history for the forecast to mean
    /// anything (lags not filled yet).
    pub ready: bool,
}

/// Scratch space for one event, on the stack: the forecast leaves here what
/// the learning step needs (inputs, activations), so nothing is computed
/// twice and nothing is allocated.
#[derive(Debug, Clone)]
pub struct Work {
    /// Model inputs.
    pub x: [f64; MAX_INPUTS],
    /// Autoencoder hidden activations.
    pub hidden: [f64; MAX_HIDDEN],
    /// Autoencoder outputs.
    pub out: [f64; MAX_WINDOW],
    /// The standardised (clamped) target of the newest value.
    pub target: f64,
    /// The model's output for the newest value, standardised.
    pub y_hat: f64,
    /// Whether the forecast was ready (no training before that).
    pub ready: bool,
    /// The previous value of the series, if any (for the step statistics).
    pub last: Option<f64>,
    /// The event is anomalous (within an episode): its value enters the
    /// lags, but it teaches neither the weights nor the statistics (set by
    /// the caller before [`OnlineModel::learn`]).
    pub censored: bool,
}

impl Default for Work {
    fn default() -> Self {
        Self {
            x: [0.0; MAX_INPUTS],
            hidden: [0.0; MAX_HIDDEN],
            out: [0.0; MAX_WINDOW],
            target: 0.0,
            y_hat: 0.0,
            ready: false,
            last: None,
            censored: false,
        }
    }
}

/// The shape every model has: fresh per-series state, a forecast that reads
/// the state, and a learning step that updates it.
pub trait OnlineModel {
    /// Per-series state.
    type State;
    /// State of a series never seen.
    fn new_state(&self) -> Self::State;
    /// Forecasts the event at `ts_ms` from the state, without learning it.
    /// `value` is needed to express the residual (and, for the autoencoder,
    /// as the newest input).
    fn forecast(&self, state: &Self::State, ts_ms: i64, value: f64, work: &mut Work) -> Forecast;
    /// Learns the event just forecast (`work` as the forecast left it):
    /// one Adagrad step, then the statistics and lags take the value.
    /// `work` may be used as scratch (e.g. for the gradient).
    fn learn(&self, state: &mut Self::State, optimizer: &Adagrad, value: f64, work: &mut Work);
}

/// A configured model (hyper-parameters only, shared by all series).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Model {
    /// See [`linear`].
    Linear(LinearModel),
    /// See [`autoencoder`].
    Autoencoder(Autoencoder),
}

/// Per-series state of a [`Model`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ModelState {
    /// State of [`Model::Linear`].
    Linear(LinearState),
    /// State of [`Model::Autoencoder`].
    Autoencoder(AutoencoderState),
}

impl ModelState {
    /// Bytes on the heap.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Self::Linear(s) => s.heap_bytes(),
            Self::Autoencoder(s) => s.heap_bytes(),
        }
    }

    /// Whether every parameter, accumulator, statistic and lag is finite.
    pub fn is_finite(&self) -> bool {
        match self {
            Self::Linear(s) => s.is_finite(),
            Self::Autoencoder(s) => s.is_finite(),
        }
    }
}

impl Model {
    /// The model's name, as in the config.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Linear(_) => ModelKind::Regression.as_str(),
            Self::Autoencoder(_) => ModelKind::Autoencoder.as_str(),
        }
    }

    /// Fresh per-series state.
    pub fn new_state(&self) -> ModelState {
        match self {
            Self::Linear(m) => ModelState::Linear(m.new_state()),
            Self::Autoencoder(m) => ModelState::Autoencoder(m.new_state()),
        }
    }

    /// Whether `state` belongs to this kind of model (and has the slab size
    /// it expects). A mismatch means a snapshot from another config.
    pub fn owns(&self, state: &ModelState) -> bool {
        match (self, state) {
            (Self::Linear(m), ModelState::Linear(s)) => m.fits(s),
            (Self::Autoencoder(m), ModelState::Autoencoder(s)) => m.fits(s),
            _ => false,
        }
    }

    /// Forecast (see [`OnlineModel::forecast`]); `None` when the state is of
    /// another model.
    #[inline]
    pub fn forecast(
        &self,
        state: &ModelState,
        ts_ms: i64,
        value: f64,
        work: &mut Work,
    ) -> Option<Forecast> {
        match (self, state) {
            (Self::Linear(m), ModelState::Linear(s)) => Some(m.forecast(s, ts_ms, value, work)),
            (Self::Autoencoder(m), ModelState::Autoencoder(s)) => {
                Some(m.forecast(s, ts_ms, value, work))
            }
            _ => None,
        }
    }

    /// Restarts the forecast from `value`: the series now sits there (its new
    /// normal), so every lag holds it and the running mean moves to it.
    pub fn rebase(&self, state: &mut ModelState, value: f64) {
        match (self, state) {
            (Self::Linear(m), ModelState::Linear(s)) => m.rebase(s, value),
            (Self::Autoencoder(m), ModelState::Autoencoder(s)) => m.rebase(s, value),
            _ => {}
        }
    }

    /// Learn (see [`OnlineModel::learn`]); a state of another model is left
    /// alone.
    #[inline]
    pub fn learn(&self, state: &mut ModelState, optimizer: &Adagrad, value: f64, work: &mut Work) {
        match (self, state) {
            (Self::Linear(m), ModelState::Linear(s)) => m.learn(s, optimizer, value, work),
            (Self::Autoencoder(m), ModelState::Autoencoder(s)) => {
                m.learn(s, optimizer, value, work)
            }
            _ => {}
        }
    }
}

/// Property tests: for any model settings and any finite values (±1e300,
/// subnormals, repeats included), forecasts are finite and the state stays
/// finite.
#[cfg(test)]
pub(crate) mod proptests {
    use proptest::prelude::*;

    use super::*;
    use crate::detector::MAX_ABS_VALUE;

    fn config() -> impl Strategy<Value = ModelConfig> {
        (
            prop::sample::select(&[ModelKind::Regression, ModelKind::Autoencoder][..]),
            1usize..=8,
            0usize..=2,
            2usize..=8,
            prop::sample::select(&[2u32, 10, 1000][..]),
            prop::sample::select(&[0.1, 3.0, 1e6][..]),
            prop::sample::select(&[1e-6, 0.05, 100.0][..]),
        )
            .prop_map(
                |(kind, lags, harmonics, window, std, clip, lr)| ModelConfig {
                    kind,
                    lags,
                    daily_harmonics: harmonics,
                    weekly_harmonics: harmonics.min(1),
                    window,
                    hidden: (window - 1).min(4),
                    standardize_events: std,
                    error_clip: clip,
                    learning_rate: lr,
                    initial_accumulator: 0.0,
                    ..ModelConfig::default()
                },
            )
    }

    /// Values a series may carry: mostly ordinary, some at the extremes
    /// of the modelled range (shared with the threshold properties).
    pub(crate) fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            4 => -100.0..100.0f64,
            1 => (prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO)
                .prop_map(|v| v.clamp(-MAX_ABS_VALUE, MAX_ABS_VALUE)),
            1 => prop::sample::select(&[MAX_ABS_VALUE, -MAX_ABS_VALUE, 1e-300, 5e-324][..]),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 256,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x0DE1_5747),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn forecasts_and_state_stay_finite(
            config in config(),
            values in prop::collection::vec(value(), 0..200),
        ) {
            let model = config.build();
            let optimizer = Adagrad::new(config.adagrad()).unwrap();
            let mut st = model.new_state();
            let mut work = Work::default();
            for (i, v) in values.into_iter().enumerate() {
                let f = model.forecast(&st, i as i64 * 60_000, v, &mut work).unwrap();
                prop_assert!(f.expected.is_finite() && f.residual.is_finite(), "{v}: {f:?}");
                prop_assert!(f.scale > 0.0 && f.scale.is_finite(), "{v}: {f:?}");
                prop_assert!(f.level_scale > 0.0 && f.level_scale.is_finite(), "{v}: {f:?}");
                prop_assert!(f.mean.is_finite(), "{v}: {f:?}");
                model.learn(&mut st, &optimizer, v, &mut work);
                prop_assert!(st.is_finite(), "after {v}: {st:?}");
            }
        }
    }
}
