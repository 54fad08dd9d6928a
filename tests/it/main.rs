//! The one integration-test binary (one link instead of one per file).

mod adagrad_vectors;
mod backtest;
mod check_config;
mod cli;
mod daemon;
mod demo;
mod deploy;
mod detection;
mod docs;
mod faults;
mod history;
mod incidents;
mod layering;
mod prometheus;
mod real_parts;
mod reference_config;
mod remote_write;
mod sinks_alertmanager;
mod sinks_kafka;
mod sinks_webhook;
mod state;
mod support;
mod tansu;
mod tansu_broker;
mod telemetry_http;
mod ui_browser;
