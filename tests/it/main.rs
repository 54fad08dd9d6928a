//! The one integration-test binary (one link instead of one per file).

mod adagrad_vectors;
mod sink_support;
mod sinks_alertmanager;
mod sinks_kafka;
mod sinks_webhook;
mod telemetry_http;
