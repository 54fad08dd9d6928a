//! The `[sources.remote_write]` section: where the receiver listens, what
//! one request may hold, and its timeouts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::wire;
use crate::config::Problems;
use crate::counter::CountersConfig;
use crate::telemetry::web::Limits;

/// The `[sources.remote_write]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// Serve `POST /api/v1/write`.
    pub enabled: bool,
    /// Address to listen on, `ip:port`. Loopback by default; use
    /// `0.0.0.0:9201` for a Prometheus on another host.
    pub listen_addr: String,
    /// TLS and basic/bearer auth of this port, in Prometheus'
    /// `web.config.file` format ([`crate::telemetry::web::webconfig`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web_config_file: Option<PathBuf>,
    /// Largest request body accepted, compressed and decompressed (413
    /// beyond). Prometheus sends at most `max_samples_per_send` samples
    /// (2,000 by default) per request, far below the default.
    pub max_body_bytes: usize,
    /// How long a request may wait for a decoding slot and for room in the
    /// shard queues before it is answered 503 (Prometheus then retries
    /// with backoff).
    pub queue_timeout_ms: u64,
    /// Requests read and decoded at once; each holds up to two bodies of
    /// `max_body_bytes` and its samples.
    pub max_concurrent_requests: usize,
    /// Series per request; more is refused whole (400).
    pub max_series_per_request: usize,
    /// Samples (floats and histograms) per request; more is refused whole
    /// (400).
    pub max_samples_per_request: usize,
    /// Labels per series, `__name__` included; a series with more is
    /// dropped and the request answered 400 (Prometheus' `label_limit`).
    pub label_limit: usize,
    /// Bytes per label name (`label_name_length_limit`), likewise.
    pub label_name_length_limit: usize,
    /// Bytes per label value, the metric name included
    /// (`label_value_length_limit`), likewise.
    pub label_value_length_limit: usize,
    /// Samples older than this many seconds (receive time) are dropped and
    /// counted (`out_of_window`). 0: no limit.
    pub max_sample_age_secs: u64,
    /// Samples more than this many seconds in the future are dropped and
    /// counted (`out_of_window`). 0: no limit.
    pub max_sample_future_secs: u64,
    /// Seconds for the TLS handshake and for a request's head.
    pub header_timeout_secs: u64,
    /// Seconds to receive a request body; a slower request is closed
    /// unanswered (the sender retries it).
    pub read_timeout_secs: u64,
    /// Seconds a connection may stay open with no request in progress.
    pub idle_timeout_secs: u64,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Which series are counters (learned as rates) or skipped: from the
    /// types the sender declares, else from their names.
    pub counters: CountersConfig,
}

impl Default for RemoteWriteConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen_addr: "127.0.0.1:9201".into(),
            web_config_file: None,
            max_body_bytes: 16 * 1024 * 1024,
            queue_timeout_ms: 1_000,
            max_concurrent_requests: 4,
            max_series_per_request: 10_000,
            max_samples_per_request: 50_000,
            label_limit: 64,
            label_name_length_limit: 1_024,
            label_value_length_limit: 4_096,
            max_sample_age_secs: 86_400,
            max_sample_future_secs: 600,
            header_timeout_secs: 10,
            read_timeout_secs: 30,
            idle_timeout_secs: 120,
            max_connections: 256,
            counters: CountersConfig::default(),
        }
    }
}

impl RemoteWriteConfig {
    /// Records every problem, with keys under `prefix`.
    pub fn validate(&self, prefix: &str, problems: &mut Problems) {
        if let Err(e) = self.listen_addr.parse::<SocketAddr>() {
            problems.push(
                format!("{prefix}.listen_addr"),
                format!(
                    "`{}` is not an `ip:port` address ({e}); write e.g. `127.0.0.1:9201`",
                    self.listen_addr
                ),
            );
        }
        problems.check(
            (1024..=1 << 30).contains(&self.max_body_bytes),
            format!("{prefix}.max_body_bytes"),
            format!(
                "{} is outside 1024..=1073741824; the default is 16777216 (16 MiB)",
                self.max_body_bytes
            ),
        );
        problems.check(
            (1..=60_000).contains(&self.queue_timeout_ms),
            format!("{prefix}.queue_timeout_ms"),
            format!(
                "{} is outside 1..=60000; keep it well below Prometheus' remote_timeout (30 s)",
                self.queue_timeout_ms
            ),
        );
        let ranges: [(&str, usize, usize, usize, &str); 6] = [
            (
                "max_concurrent_requests",
                self.max_concurrent_requests,
                1,
                1024,
                "4",
            ),
            (
                "max_series_per_request",
                self.max_series_per_request,
                1,
                10_000_000,
                "10000",
            ),
            (
                "max_samples_per_request",
                self.max_samples_per_request,
                1,
                100_000_000,
                "50000",
            ),
            ("label_limit", self.label_limit, 1, 10_000, "64"),
            (
                "label_name_length_limit",
                self.label_name_length_limit,
                8,
                1 << 20,
                "1024",
            ),
            (
                "label_value_length_limit",
                self.label_value_length_limit,
                1,
                1 << 24,
                "4096",
            ),
        ];
        for (key, value, lo, hi, default) in ranges {
            problems.check(
                (lo..=hi).contains(&value),
                format!("{prefix}.{key}"),
                format!("{value} is outside {lo}..={hi}; the default is {default}"),
            );
        }
        for (key, value) in [
            ("max_sample_age_secs", self.max_sample_age_secs),
            ("max_sample_future_secs", self.max_sample_future_secs),
        ] {
            problems.check(
                value <= 100 * 365 * 86_400,
                format!("{prefix}.{key}"),
                format!("{value} is more than a century; use 0 for no limit"),
            );
        }
        crate::telemetry::web::validate_limits(
            prefix,
            self.header_timeout_secs,
            self.idle_timeout_secs,
            Some(self.read_timeout_secs),
            self.max_connections,
            problems,
        );
    }

    /// The port's timeouts and connection cap.
    pub fn limits(&self) -> Limits {
        Limits {
            header_timeout: Duration::from_secs(self.header_timeout_secs),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            read_timeout: Duration::from_secs(self.read_timeout_secs),
            max_connections: self.max_connections,
        }
    }

    /// What one request may hold, for a request received at `now_ms`.
    pub fn request_limits(&self, now_ms: i64) -> wire::Limits {
        let secs = |s: u64| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
        wire::Limits {
            max_series: self.max_series_per_request,
            max_samples: self.max_samples_per_request,
            label_limit: self.label_limit,
            label_name_length_limit: self.label_name_length_limit,
            label_value_length_limit: self.label_value_length_limit,
            min_ts: if self.max_sample_age_secs == 0 {
                i64::MIN
            } else {
                now_ms.saturating_sub(secs(self.max_sample_age_secs))
            },
            max_ts: if self.max_sample_future_secs == 0 {
                i64::MAX
            } else {
                now_ms.saturating_add(secs(self.max_sample_future_secs))
            },
        }
    }
}
