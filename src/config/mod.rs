//! What every configuration section shares.
//!
//! Every section is a `*Config` struct with serde defaults and
//! `deny_unknown_fields`, defined beside the code it configures. This module
//! owns the pieces they share: [`Problems`], which collects every mistake in
//! one pass so that `anomalyd check-config` can print them all at once, and
//! [`secret`]. It is a leaf: it imports no other module of the crate. The
//! aggregate of all sections and how it is loaded is the app's
//! ([`crate::app::config`]).

pub mod schema;
pub mod secret;

use std::fmt;

/// One configuration mistake: the full key (e.g. `model.lags`) and what is
/// wrong with it, phrased so the message says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, as written in the TOML file.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// All problems found while validating a configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems(Vec<Problem>);

impl Problems {
    /// No problems yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a problem with `key`.
    pub fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    /// Records a problem unless `ok` holds.
    pub fn check(&mut self, ok: bool, key: impl Into<String>, message: impl Into<String>) {
        if !ok {
            self.push(key, message);
        }
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems, in the order found.
    pub fn iter(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter()
    }

    /// Appends every problem of `other`, in its order.
    pub fn extend(&mut self, other: Problems) {
        self.0.extend(other.0);
    }

    /// How many problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `Ok(())` when empty, otherwise `Err(self)`.
    pub fn into_result(self) -> Result<(), Problems> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}
