//! The `kafka` sink: alerts as messages on a Kafka topic.
//!
//! This module owns the alert producer (with the Kafka source, the only
//! code that imports `rdkafka`). Each alert is one message: key = the
//! alert's `fingerprint` (so all messages of a series land in one partition,
//! in order), value = the [`Alert`] as JSON (the same object as in the
//! webhook body). The producer always runs with `enable.idempotence=true`,
//! so librdkafka's own retries neither duplicate nor reorder messages.
//! Free-form librdkafka options pass through; options that look secret
//! (passwords, secrets, private keys) are redacted in `Debug`, in
//! serialised config and in error messages, and can be read from an
//! environment variable or a file instead of the config file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use serde::{Deserialize, Serialize, Serializer};

use super::secret::read_secret;
use super::{AlertSink, RetryConfig, SinkBuildError, SinkError, SinkOptions, validate_queue};
use crate::alert::Alert;
use crate::config::Problems;

/// The `sink` label of this sink.
pub const NAME: &str = "kafka";

/// Shown instead of a secret value.
pub const REDACTED: &str = "<redacted>";

/// True for librdkafka options whose value is a secret.
pub fn is_secret_option(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password")
        || k.contains("secret")
        || k.ends_with("key.pem")
        || k == "ssl_key"
        || k == "sasl.oauthbearer.config"
}

fn redacted(options: &BTreeMap<String, String>) -> BTreeMap<&str, &str> {
    options
        .iter()
        .map(|(k, v)| {
            let v = if is_secret_option(k) {
                REDACTED
            } else {
                v.as_str()
            };
            (k.as_str(), v)
        })
        .collect()
}

fn serialize_redacted<S: Serializer>(
    options: &BTreeMap<String, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    redacted(options).serialize(s)
}

/// The `[sinks.kafka]` section.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Produce alerts to `topic`.
    pub enabled: bool,
    /// `bootstrap.servers`, e.g. `kafka-1:9092,kafka-2:9092`.
    pub brokers: String,
    /// Topic the alerts go to.
    pub topic: String,
    /// librdkafka `message.timeout.ms`: how long the producer itself keeps
    /// retrying one message before the sink sees a failure.
    pub message_timeout_ms: u64,
    /// Extra librdkafka producer options (`security.protocol`,
    /// `sasl.mechanism`, `compression.type`, ...). Secret-looking values
    /// are redacted whenever the config is printed; prefer `secret_env` or
    /// `secret_files` for them.
    #[serde(serialize_with = "serialize_redacted")]
    pub options: BTreeMap<String, String>,
    /// librdkafka options read from environment variables: option name →
    /// variable name, e.g. `"sasl.password" = "KAFKA_PASSWORD"`.
    pub secret_env: BTreeMap<String, String>,
    /// librdkafka options read from files: option name → path (trailing
    /// newline ignored).
    pub secret_files: BTreeMap<String, PathBuf>,
    /// Alerts held while the cluster is slow or down.
    pub queue_capacity: usize,
    /// Alerts produced per batch before awaiting their delivery.
    pub max_batch_alerts: usize,
    /// Backoff between attempts after the producer gave up on a batch.
    pub retry: RetryConfig,
}

impl fmt::Debug for KafkaSinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSinkConfig")
            .field("enabled", &self.enabled)
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("message_timeout_ms", &self.message_timeout_ms)
            .field("options", &redacted(&self.options))
            .field("secret_env", &self.secret_env)
            .field("secret_files", &self.secret_files)
            .field("queue_capacity", &self.queue_capacity)
            .field("max_batch_alerts", &self.max_batch_alerts)
            .field("retry", &self.retry)
            .finish()
    }
}

impl Default for KafkaSinkConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            brokers: String::new(),
            topic: "anomalyd-alerts".to_owned(),
            message_timeout_ms: 30_000,
            options: BTreeMap::new(),
            secret_env: BTreeMap::new(),
            secret_files: BTreeMap::new(),
            queue_capacity: 10_000,
            max_batch_alerts: 100,
            retry: RetryConfig::default(),
        }
    }
}

/// Kafka's rule for topic names.
fn is_valid_topic(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 249
        && t != "."
        && t != ".."
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl KafkaSinkConfig {
    /// Records every problem under `prefix` (e.g. `sinks.kafka`).
    pub fn validate(&self, prefix: &str, problems: &mut Problems) {
        if !self.enabled {
            return;
        }
        problems.check(
            !self.brokers.trim().is_empty(),
            format!("{prefix}.brokers"),
            "is required when the Kafka sink is enabled; e.g. `kafka:9092`",
        );
        problems.check(
            is_valid_topic(&self.topic),
            format!("{prefix}.topic"),
            format!(
                "`{}` is not a valid topic name; use 1-249 of [a-zA-Z0-9._-]",
                self.topic
            ),
        );
        problems.check(
            self.message_timeout_ms >= 1,
            format!("{prefix}.message_timeout_ms"),
            "must be at least 1 (milliseconds)",
        );
        for (k, v) in &self.options {
            let key = format!("{prefix}.options.{k}");
            match k.as_str() {
                "enable.idempotence" if v != "true" => problems.push(
                    key,
                    "the alert producer always uses idempotence; remove this option",
                ),
                "bootstrap.servers" | "message.timeout.ms" => problems.push(
                    key,
                    format!(
                        "set it with `{prefix}.{}` instead",
                        if k == "bootstrap.servers" {
                            "brokers"
                        } else {
                            "message_timeout_ms"
                        }
                    ),
                ),
                _ => {}
            }
        }
        for (k, var) in &self.secret_env {
            problems.check(
                !var.is_empty(),
                format!("{prefix}.secret_env.{k}"),
                "names no environment variable",
            );
            problems.check(
                !self.options.contains_key(k) && !self.secret_files.contains_key(k),
                format!("{prefix}.secret_env.{k}"),
                "is also set in options or secret_files; keep one",
            );
        }
        for k in self.secret_files.keys() {
            problems.check(
                !self.options.contains_key(k),
                format!("{prefix}.secret_files.{k}"),
                "is also set in options; keep one",
            );
        }
        validate_queue(prefix, self.queue_capacity, self.max_batch_alerts, problems);
        self.retry.validate(&format!("{prefix}.retry"), problems);
    }

    /// Runner settings.
    pub fn options(&self) -> SinkOptions {
        SinkOptions {
            queue_capacity: self.queue_capacity,
            max_batch_alerts: self.max_batch_alerts,
            retry: self.retry.clone(),
            jitter_seed: None,
        }
    }
}

/// Whether a failed produce may succeed later. A message the broker calls
/// invalid or too large will stay so.
pub(crate) fn is_retryable(e: &KafkaError) -> bool {
    !matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidRecord
        )
    )
}

/// Produces alerts to a topic.
pub struct KafkaSink {
    producer: FutureProducer,
    topic: String,
}

impl fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSink")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaSink {
    /// Creates the producer (it connects lazily). `prefix` is the
    /// section's key.
    pub fn new(
        config: &KafkaSinkConfig,
        prefix: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, SinkBuildError> {
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", &config.brokers)
            .set("message.timeout.ms", config.message_timeout_ms.to_string());
        let mut secrets: Vec<String> = Vec::new();
        for (k, v) in &config.options {
            if is_secret_option(k) {
                secrets.push(v.clone());
            }
            cc.set(k, v);
        }
        for (k, var) in &config.secret_env {
            let key = format!("{prefix}.secret_env.{k}");
            if let Some(s) = read_secret(&key, Some(var), None, env)? {
                secrets.push(s.expose().to_owned());
                cc.set(k, s.expose());
            }
        }
        for (k, path) in &config.secret_files {
            let key = format!("{prefix}.secret_files.{k}");
            if let Some(s) = read_secret(&key, None, Some(path), env)? {
                secrets.push(s.expose().to_owned());
                cc.set(k, s.expose());
            }
        }
        // Last, so no option can turn it off.
        cc.set("enable.idempotence", "true");
        let producer: FutureProducer = cc.create().map_err(|e| {
            // librdkafka may quote a rejected value in its message.
            let mut msg = e.to_string();
            for s in secrets.iter().filter(|s| !s.is_empty()) {
                msg = msg.replace(s.as_str(), REDACTED);
            }
            SinkBuildError::Config {
                key: prefix.to_owned(),
                message: format!("cannot create Kafka producer: {msg}"),
            }
        })?;
        Ok(Self {
            producer,
            topic: config.topic.clone(),
        })
    }
}

impl AlertSink for KafkaSink {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn send(&self, batch: &[Alert]) -> Result<(), SinkError> {
        // Enqueue the whole batch first, then await the acknowledgements,
        // so the messages travel together instead of one round trip each.
        let mut pending = Vec::with_capacity(batch.len());
        let mut first_error = None;
        for a in batch {
            let payload = serde_json::to_vec(a)?;
            let record = FutureRecord::to(&self.topic)
                .key(a.fingerprint.as_bytes())
                .payload(&payload);
            match self.producer.send_result(record) {
                Ok(delivery) => pending.push(delivery),
                Err((e, _)) => {
                    first_error = Some(e);
                    break;
                }
            }
        }
        for delivery in pending {
            let err = match delivery.await {
                Ok(Ok(_)) => continue,
                Ok(Err((e, _))) => e,
                Err(_canceled) => KafkaError::Canceled,
            };
            first_error.get_or_insert(err);
        }
        match first_error {
            None => Ok(()),
            Some(e) => Err(SinkError::Kafka(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_debug_and_serialisation() {
        let cfg = KafkaSinkConfig {
            options: BTreeMap::from([
                ("sasl.password".into(), "hunter2".into()),
                ("ssl.key.pem".into(), "-----BEGIN".into()),
                ("sasl.username".into(), "svc".into()),
            ]),
            ..KafkaSinkConfig::default()
        };
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("hunter2") && !dbg.contains("BEGIN"), "{dbg}");
        assert!(dbg.contains("svc"));
        let json = serde_json::to_string(&cfg).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
        assert!(json.contains(REDACTED));
    }

    #[test]
    fn secret_options_come_from_env() {
        let cfg = KafkaSinkConfig {
            enabled: true,
            brokers: "127.0.0.1:1".into(),
            secret_env: BTreeMap::from([("sasl.password".into(), "KPW".into())]),
            ..KafkaSinkConfig::default()
        };
        let err = KafkaSink::new(&cfg, "sinks.kafka", &|_| None).unwrap_err();
        assert!(
            err.to_string()
                .contains("sinks.kafka.secret_env.sasl.password"),
            "{err}"
        );
        let ok = KafkaSink::new(&cfg, "sinks.kafka", &|k| (k == "KPW").then(|| "pw".into()));
        assert!(ok.is_ok());
    }

    #[test]
    fn validation_names_keys() {
        let cfg = KafkaSinkConfig {
            enabled: true,
            brokers: String::new(),
            topic: "bad topic".into(),
            options: BTreeMap::from([("enable.idempotence".into(), "false".into())]),
            ..KafkaSinkConfig::default()
        };
        let mut p = Problems::new();
        cfg.validate("sinks.kafka", &mut p);
        let keys: Vec<_> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "sinks.kafka.brokers",
                "sinks.kafka.topic",
                "sinks.kafka.options.enable.idempotence"
            ]
        );
    }

    #[test]
    fn secret_option_names() {
        for k in [
            "sasl.password",
            "ssl.key.password",
            "sasl.oauthbearer.client.secret",
            "ssl.key.pem",
        ] {
            assert!(is_secret_option(k), "{k}");
        }
        for k in ["sasl.username", "security.protocol", "ssl.ca.location"] {
            assert!(!is_secret_option(k), "{k}");
        }
    }
}
