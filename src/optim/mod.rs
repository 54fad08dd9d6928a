//! Online optimizers.
//!
//! This module owns the update rules that train every per-series model, and
//! nothing else: it does no I/O, keeps no clock and allocates nothing on the
//! step path. Hyper-parameters live in a config value shared by all series;
//! the per-series state (parameters, accumulators, step counter) lives in the
//! model that owns it, so a million series do not carry a million copies of
//! the hyper-parameters.
//!
//! [`Adagrad`] is the optimizer the models use. Its semantics are exactly
//! those of PyTorch's `torch.optim.Adagrad`, with the composite-mirror-descent
//! l1 update of Duchi, Hazan & Singer (2011) as an option. [`variants`] holds
//! the other published Adagrad rules (Keras 3, TensorFlow, River, proximal and
//! FTRL), which differ in small but score-changing ways; they exist so that a
//! model trained elsewhere can be reproduced, and they are tested against the
//! same reference vectors.

pub mod adagrad;
pub mod variants;

pub use adagrad::{Adagrad, AdagradConfig, AdagradError};
