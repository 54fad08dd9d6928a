//! anomalyd: a streaming anomaly detector for metrics.
//!
//! ```text
//!  Kafka partitions / Prometheus remote-write ─► source (decode) ─► router ─► worker[shard]
//!    worker, per event, per series (strictly in order):
//!      features ─► model.predict ─► residual ─► threshold.score ─► model+Adagrad step ─► threshold.observe
//!                                                     └─► alert lifecycle ─► notifier (incidents) ─► sinks (bounded queues, retry)
//!    barrier ─► (snapshot) ─► source acknowledges the positions before it (Kafka commits offsets)
//! ```
//!
//! The detection core ([`optim`], [`model`], [`threshold`], [`detector`]) is
//! pure: no I/O, no clocks, no async. The daemon and `anomalyd backtest`
//! ([`backtest`]) run the same per-event code path,
//! [`detector::Detector::observe`]; [`threshold`] documents the score
//! contract. [`ui`] serves the live page of series, bands and alerts,
//! drawn by [`chart`]. Before a shard scores a series: [`counter`] decides
//! whether its samples are learned as values or as a counter's rate, and
//! [`history`] teaches a new series its past from Prometheus (`anomalyd
//! warm`, [`warm`], does the same offline).

#![forbid(unsafe_code)]

pub mod alert;
pub mod app;
pub mod backtest;
pub mod chart;
pub mod config;
pub mod counter;
pub mod decode;
pub mod demo;
pub mod detector;
pub mod event;
pub mod history;
pub mod model;
pub mod optim;
pub mod pipeline;
pub mod source;
pub mod state;
pub mod telemetry;
pub mod threshold;
pub mod ui;
pub mod units;
pub mod warm;
