//! The one integration-test binary (one link instead of one per file).

mod adagrad_vectors;
mod daemon;
mod deploy;
mod sinks_alertmanager;
mod sinks_kafka;
mod sinks_webhook;
mod support;
mod telemetry_http;
