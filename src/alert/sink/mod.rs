//! Alert sinks: where alert messages go, and how they get there.
//!
//! This module owns delivery. [`AlertSink`] is the small capability a
//! destination implements (`send` a batch of [`Notice`]s: per-series
//! alerts and incident notifications); [`SinkHandle`] runs one sink in its
//! own task behind its own bounded queue, with retries, and [`Sinks`] fans
//! every message out to the sinks that take its kind ([`Messages`]: the
//! log and Kafka sinks take both by default, the webhook incidents, and
//! Alertmanager alerts only). The notifier ([`crate::alert::notify`])
//! calls [`Sinks::submit`], which never waits on a sink; at shutdown the
//! app calls [`Sinks::shutdown`] with a deadline.
//!
//! Guarantee: every submitted message is either delivered (counted in
//! `anomalyd_alerts_delivered_total{sink,status}`; an incident counts as
//! `firing`, or `resolved` once resolved or merged) or given up with a
//! reason (`anomalyd_alerts_dropped_total{sink,reason}` plus a
//! rate-limited warning). Delivery is at least once: a batch retried after
//! a partial failure may be seen twice; receivers de-duplicate alerts by
//! `fingerprint`, `status` and `ts`, incidents by `id` and `revision`.
//! Memory per sink is bounded by its queue capacity.
//!
//! The sinks themselves: [`log`], [`webhook`], [`alertmanager`], [`kafka`].
//! What an alert says and when it is emitted is decided elsewhere
//! ([`crate::alert::Alert`], the lifecycle).

pub mod alertmanager;
pub mod delivery;
pub mod kafka;
pub mod log;
mod metrics;
pub(crate) mod queue;
mod runner;
pub mod secret;
pub mod webhook;

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use delivery::{DeliveryConfig, SinkSection, SinkTable};
pub use metrics::SinkMetrics;
pub use runner::{SinkHandle, SinkOptions, SinkStats, Sinks};

use crate::alert::{Notice, NoticeKind};
use crate::config::Problems;

/// Which messages a sink takes (`messages` in its table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Messages {
    /// Per-series alerts and incident notifications.
    #[default]
    Both,
    /// Per-series alerts only (as before incidents existed).
    Alerts,
    /// Incident notifications only: one message per incident update.
    Incidents,
}

impl Messages {
    /// Whether a sink set to this takes messages of `kind`.
    pub fn takes(self, kind: NoticeKind) -> bool {
        match self {
            Self::Both => true,
            Self::Alerts => kind == NoticeKind::Alert,
            Self::Incidents => kind == NoticeKind::Incident,
        }
    }
}

/// A destination for alerts.
///
/// Implementations only deliver; queueing, batching, retries, metrics and
/// shutdown are the runner's ([`SinkHandle`]), so a new sink is a `send`.
pub trait AlertSink: Send + Sync + 'static {
    /// The `sink` label of this sink's metrics and logs. A `'static` string
    /// from code, so the label set stays bounded.
    fn name(&self) -> &'static str;

    /// Delivers a batch (oldest first, at most the configured batch size,
    /// all of one kind: alerts or incident notifications). `Ok` means
    /// every message of the batch was accepted. Errors say whether a retry
    /// may help ([`SinkError::is_retryable`]). The future may be dropped
    /// at any await point (shutdown deadline).
    fn send(&self, batch: &[Notice]) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// How often [`AlertSink::heartbeat`] runs while the sink is idle or
    /// between batches; `None` (the default) for never.
    fn heartbeat_interval(&self) -> Option<Duration> {
        None
    }

    /// Periodic work, e.g. re-sending firing alerts to Alertmanager. A
    /// failure is counted and logged; the next heartbeat tries again.
    fn heartbeat(&self) -> impl Future<Output = Result<(), SinkError>> + Send {
        async { Ok(()) }
    }

    /// Told about every alert the runner gave up on and why (already
    /// counted), so a sink that keeps state can forget it. May be called
    /// from the submitting thread: must be quick and must not block.
    fn discarded(&self, _alert: &Notice, _reason: DropReason) {}
}

/// Why a sink gave up on an alert: the `reason` label of
/// `anomalyd_alerts_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The queue was full; this was the oldest queued alert.
    QueueFull,
    /// The queue was full; a newer message of the same series was queued
    /// behind this one.
    Superseded,
    /// The receiver refused the batch in a way a retry cannot fix (HTTP 4xx
    /// other than 408/429, an unencodable message).
    Rejected,
    /// Every attempt allowed by `retry.max_attempts` failed.
    RetriesExhausted,
    /// Still queued or in flight when the shutdown deadline passed, or
    /// submitted after shutdown began.
    Shutdown,
    /// Alertmanager only: delivered, but not tracked for re-sending because
    /// `max_active_alerts` firing alerts are tracked already; Alertmanager
    /// will let it expire at its `endsAt`.
    ResendCapacity,
}

impl DropReason {
    /// Every reason, in [`DropReason::index`] order.
    pub const ALL: [DropReason; 6] = [
        Self::QueueFull,
        Self::Superseded,
        Self::Rejected,
        Self::RetriesExhausted,
        Self::Shutdown,
        Self::ResendCapacity,
    ];

    /// The label value.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::Superseded => "superseded",
            Self::Rejected => "rejected",
            Self::RetriesExhausted => "retries_exhausted",
            Self::Shutdown => "shutdown",
            Self::ResendCapacity => "resend_capacity",
        }
    }

    /// Position in [`DropReason::ALL`].
    pub fn index(&self) -> usize {
        match self {
            Self::QueueFull => 0,
            Self::Superseded => 1,
            Self::Rejected => 2,
            Self::RetriesExhausted => 3,
            Self::Shutdown => 4,
            Self::ResendCapacity => 5,
        }
    }
}

/// A failed delivery attempt.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The HTTP receiver answered with a non-2xx status.
    #[error("receiver answered HTTP {status}")]
    HttpStatus {
        /// The status code.
        status: u16,
    },
    /// The HTTP request failed (connect, timeout, TLS...). The URL is
    /// stripped from the error, as it may carry credentials.
    #[error("HTTP request failed: {0}")]
    Http(reqwest::Error),
    /// The Kafka producer could not deliver a message.
    #[error("Kafka delivery failed: {0}")]
    Kafka(rdkafka::error::KafkaError),
    /// The alert could not be encoded as JSON.
    #[error("cannot encode alert: {0}")]
    Encode(#[from] serde_json::Error),
    /// The destination is unavailable for now (used by sinks outside this
    /// crate and by tests); retryable.
    #[error("sink unavailable: {0}")]
    Unavailable(String),
    /// The destination refused the batch for good; not retryable.
    #[error("sink rejected the batch: {0}")]
    Rejected(String),
}

impl SinkError {
    /// Whether a later attempt may succeed. HTTP 408, 429 and 5xx and
    /// transport failures are retryable; other 4xx answers and encoding
    /// errors are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::HttpStatus { status } => {
                *status == 408 || *status == 429 || (500..600).contains(status)
            }
            Self::Http(e) => !e.is_builder(),
            Self::Kafka(e) => kafka::is_retryable(e),
            Self::Encode(_) | Self::Rejected(_) => false,
            Self::Unavailable(_) => true,
        }
    }

    /// Wraps a reqwest error, dropping its URL.
    pub fn http(e: reqwest::Error) -> Self {
        Self::Http(e.without_url())
    }
}

/// Errors from building sinks at startup.
#[derive(Debug, thiserror::Error)]
pub enum SinkBuildError {
    /// A secret could not be read.
    #[error(transparent)]
    Secret(#[from] crate::config::secret::SecretError),
    /// A secret is empty or cannot be sent as an HTTP header value.
    #[error("{key}: the secret is empty or contains characters not allowed in an HTTP header")]
    BadSecret {
        /// The config key of the secret.
        key: String,
    },
    /// A config value is unusable (run `validate` first to get all
    /// problems at once).
    #[error("{key}: {message}")]
    Config {
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The HTTP client cannot be built.
    #[error("cannot build HTTP client: {0}")]
    HttpClient(reqwest::Error),
}

/// How a sink retries a failed batch: exponential backoff with jitter.
///
/// The n-th retry waits `min(initial_backoff_ms · multiplier^(n-1),
/// max_backoff_ms)`, shortened by a random fraction of up to `jitter`, so
/// many instances that failed together do not retry together. While a batch
/// is retried, newer alerts wait in the (bounded) queue; other sinks and the
/// pipeline are unaffected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Delay before the first retry, in milliseconds.
    pub initial_backoff_ms: u64,
    /// Longest delay between two attempts, in milliseconds.
    pub max_backoff_ms: u64,
    /// Factor by which the delay grows after each failed attempt (≥ 1).
    pub multiplier: f64,
    /// Fraction of each delay that is random, in [0, 1]: the delay is drawn
    /// uniformly from `[d·(1 − jitter), d]`.
    pub jitter: f64,
    /// Attempts per batch (the first one included) before the batch is
    /// dropped with reason `retries_exhausted`; 0 retries until shutdown.
    pub max_attempts: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            initial_backoff_ms: 500,
            max_backoff_ms: 30_000,
            multiplier: 2.0,
            jitter: 0.2,
            max_attempts: 10,
        }
    }
}

impl RetryConfig {
    /// Records every problem under `prefix` (e.g. `sinks.webhook.retry`).
    pub fn validate(&self, prefix: &str, problems: &mut Problems) {
        problems.check(
            self.initial_backoff_ms >= 1,
            format!("{prefix}.initial_backoff_ms"),
            "must be at least 1 (milliseconds)",
        );
        problems.check(
            self.max_backoff_ms >= self.initial_backoff_ms,
            format!("{prefix}.max_backoff_ms"),
            format!(
                "must be at least initial_backoff_ms ({}); raise it",
                self.initial_backoff_ms
            ),
        );
        problems.check(
            self.multiplier.is_finite() && self.multiplier >= 1.0,
            format!("{prefix}.multiplier"),
            "must be a finite number ≥ 1 (2 doubles the delay after each failure)",
        );
        problems.check(
            (0.0..=1.0).contains(&self.jitter),
            format!("{prefix}.jitter"),
            "must be between 0 (no jitter) and 1",
        );
    }
}

/// Checks that `url` is an absolute http(s) URL without credentials.
fn validate_url(key: &str, url: &str, problems: &mut Problems) {
    match reqwest::Url::parse(url) {
        Err(e) => problems.push(
            key,
            format!("`{url}` is not a valid URL ({e}); write e.g. `http://127.0.0.1:9093`"),
        ),
        Ok(u) if u.scheme() != "http" && u.scheme() != "https" => problems.push(
            key,
            format!("scheme `{}` is not supported; use http:// or https://", u.scheme()),
        ),
        Ok(u) if u.password().is_some() || !u.username().is_empty() => problems.push(
            key,
            "must not contain credentials; put the secret in a file or environment variable and reference it from the sink's `auth` section",
        ),
        Ok(_) => {}
    }
}

/// Builds the shared HTTP client of the webhook and Alertmanager sinks.
fn http_client(timeout: Duration) -> Result<reqwest::Client, SinkBuildError> {
    // reqwest is built without a default crypto provider; install ring's
    // once. Err means some provider is installed already, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("anomalyd/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(SinkBuildError::HttpClient)
}

/// The `[sinks]` section: one sub-section per destination, each with the
/// shared queue-and-retry keys ([`SinkSection`]). Every enabled sink gets
/// every alert, through its own queue.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SinksConfig {
    /// One structured log line per alert (on by default).
    pub log: SinkSection<log::LogSinkConfig>,
    /// JSON POST of alerts to any HTTP endpoint.
    pub webhook: SinkSection<webhook::WebhookSinkConfig>,
    /// Prometheus Alertmanager (API v2).
    pub alertmanager: SinkSection<alertmanager::AlertmanagerSinkConfig>,
    /// A Kafka topic.
    pub kafka: SinkSection<kafka::KafkaSinkConfig>,
}

impl SinksConfig {
    /// Records every problem under `prefix` (e.g. `sinks`). Disabled sinks
    /// are not checked.
    pub fn validate(&self, prefix: &str, problems: &mut Problems) {
        self.log.validate(&format!("{prefix}.log"), problems);
        self.webhook
            .validate(&format!("{prefix}.webhook"), problems);
        self.alertmanager
            .validate(&format!("{prefix}.alertmanager"), problems);
        self.kafka.validate(&format!("{prefix}.kafka"), problems);
    }
}

impl Sinks {
    /// Builds and starts every enabled sink (call inside a tokio runtime).
    ///
    /// `env` looks up environment variables for secrets; pass
    /// `&|k| std::env::var(k).ok()` in the daemon. `prefix` is the config
    /// key of the section, for error messages (e.g. `sinks`).
    pub fn start(
        config: &SinksConfig,
        prefix: &str,
        metrics: &crate::telemetry::metrics::Metrics,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Sinks, SinkBuildError> {
        let mut handles = Vec::new();
        let with = |mut o: SinkOptions, messages: Messages| {
            o.messages = messages;
            o
        };
        if config.log.enabled {
            let sink = log::LogSink;
            handles.push(SinkHandle::spawn(
                sink,
                with(config.log.options(), config.log.messages),
                SinkMetrics::new(metrics, log::NAME),
            ));
        }
        if config.webhook.enabled {
            let c = &config.webhook;
            let sink = webhook::WebhookSink::new(c, &format!("{prefix}.webhook"), env)?;
            handles.push(SinkHandle::spawn(
                sink,
                with(c.options(), c.messages),
                SinkMetrics::new(metrics, webhook::NAME),
            ));
        }
        if config.alertmanager.enabled {
            let c = &config.alertmanager;
            let m = SinkMetrics::new(metrics, alertmanager::NAME);
            let sink = alertmanager::AlertmanagerSink::new(
                c,
                &format!("{prefix}.alertmanager"),
                env,
                m.clone(),
            )?;
            // Alertmanager groups alerts itself, by their `incident`
            // label among others.
            handles.push(SinkHandle::spawn(
                sink,
                with(c.options(), Messages::Alerts),
                m,
            ));
        }
        if config.kafka.enabled {
            let c = &config.kafka;
            let sink = kafka::KafkaSink::new(c, &format!("{prefix}.kafka"), env)?;
            handles.push(SinkHandle::spawn(
                sink,
                with(c.options(), c.messages),
                SinkMetrics::new(metrics, kafka::NAME),
            ));
        }
        Ok(Sinks::from_handles(handles))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_reasons_index_their_table() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn retryable_errors() {
        assert!(SinkError::HttpStatus { status: 503 }.is_retryable());
        assert!(SinkError::HttpStatus { status: 429 }.is_retryable());
        assert!(SinkError::HttpStatus { status: 408 }.is_retryable());
        assert!(!SinkError::HttpStatus { status: 400 }.is_retryable());
        assert!(!SinkError::HttpStatus { status: 401 }.is_retryable());
        assert!(SinkError::Unavailable("x".into()).is_retryable());
        assert!(!SinkError::Rejected("x".into()).is_retryable());
    }

    #[test]
    fn default_config_is_valid_and_bad_values_name_their_keys() {
        let mut p = Problems::new();
        SinksConfig::default().validate("sinks", &mut p);
        assert!(p.is_empty(), "{p}");

        let mut c = SinksConfig::default();
        c.webhook.enabled = true;
        c.webhook.url = "not a url".into();
        c.webhook.delivery.retry.jitter = 2.0;
        c.webhook.delivery.max_batch_alerts = 0;
        c.alertmanager.enabled = true;
        c.alertmanager.url = "ftp://am:9093".into();
        let mut p = Problems::new();
        c.validate("sinks", &mut p);
        let keys: Vec<_> = p.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"sinks.webhook.url"), "{p}");
        assert!(keys.contains(&"sinks.webhook.retry.jitter"), "{p}");
        assert!(keys.contains(&"sinks.webhook.max_batch_alerts"), "{p}");
        assert!(keys.contains(&"sinks.alertmanager.url"), "{p}");
    }

    /// Each sink's `KEYS` (what its table offers the config's shape) are
    /// its own keys, read from its type, then the shared ones it has.
    #[test]
    fn every_sink_table_lists_its_keys() {
        use crate::config::schema::Shape;
        fn keys<T: SinkTable + serde::de::DeserializeOwned>() {
            let Shape::Table(own) = Shape::of::<T>().unwrap() else {
                panic!("a sink config is a table");
            };
            let mut want: Vec<&str> = own.iter().map(|(k, _)| *k).collect();
            want.extend(
                delivery::DELIVERY_KEYS
                    .iter()
                    .filter(|k| T::RETRIES || **k != "retry"),
            );
            assert_eq!(T::KEYS, want.as_slice());
        }
        keys::<log::LogSinkConfig>();
        keys::<webhook::WebhookSinkConfig>();
        keys::<alertmanager::AlertmanagerSinkConfig>();
        keys::<kafka::KafkaSinkConfig>();
    }

    /// The keys users write did not move: the reference values read into
    /// the shared type, per sink.
    #[test]
    fn the_shared_keys_stay_in_each_sinks_table() {
        let c: SinksConfig = toml::from_str(
            "[log]\nqueue_capacity = 7\n[alertmanager]\nmax_batch_alerts = 9\n\
             [kafka.retry]\nmax_attempts = 2\n",
        )
        .unwrap();
        assert_eq!(c.log.delivery.queue_capacity, 7);
        assert_eq!(c.alertmanager.delivery.max_batch_alerts, 9);
        assert_eq!(c.kafka.delivery.retry.max_attempts, 2);
        assert_eq!(
            SinksConfig::default()
                .alertmanager
                .delivery
                .max_batch_alerts,
            64
        );
        assert_eq!(
            SinksConfig::default().webhook.delivery.max_batch_alerts,
            100
        );
        assert!(toml::from_str::<SinksConfig>("[log.retry]\nmax_attempts = 2\n").is_err());
    }

    #[test]
    fn urls_with_credentials_are_refused() {
        let mut p = Problems::new();
        validate_url("k", "https://user:pw@example.invalid/hook", &mut p);
        assert!(p.iter().next().unwrap().message.contains("credentials"));
        let mut p = Problems::new();
        validate_url("k", "https://example.invalid/hook", &mut p);
        assert!(p.is_empty());
    }

    #[test]
    fn unknown_keys_are_errors() {
        let r: Result<SinksConfig, _> =
            serde_json::from_str(r#"{"webhook":{"enabled":true,"urll":"http://x"}}"#);
        assert!(r.is_err());
    }
}
