//! The `kafka` sink: alerts as messages on a Kafka topic.
//!
//! This module owns the alert producer (with the Kafka source, the only
//! code that imports `rdkafka`). Each per-series alert is one message on
//! `topic`: key = the alert's `fingerprint` (so all messages of a series
//! land in one partition, in order), value = the [`SeriesAlert`] as JSON
//! (the same object as in the webhook body). Each incident notification
//! is one message on `incident_topic`: key = the incident's `id`, value =
//! the [`Incident`] as JSON. Every message has the header
//! `anomalyd-message: alert` or `incident`. `messages` chooses which go
//! out (both by default). The producer always runs with `enable.idempotence=true`,
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
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use serde::{Deserialize, Serialize};

use super::{AlertSink, Messages, SinkBuildError, SinkError, SinkTable};
use crate::alert::{Incident, Notice, SeriesAlert};
use crate::config::Problems;
use crate::config::secret::{ClientOptions, redacted, serialize_redacted};

/// The `sink` label of this sink.
pub const NAME: &str = "kafka";

/// The `[sinks.kafka]` section.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Produce alerts to `topic`.
    pub enabled: bool,
    /// `bootstrap.servers`, e.g. `kafka-1:9092,kafka-2:9092`. Empty (the
    /// default): the input cluster, `kafka.brokers`.
    pub brokers: String,
    /// Topic the per-series alerts go to.
    pub topic: String,
    /// Topic the incident notifications go to.
    pub incident_topic: String,
    /// `both` (default), `alerts` or `incidents`.
    pub messages: Messages,
    /// librdkafka `message.timeout.ms`: how long the producer itself keeps
    /// retrying one message before the sink sees a failure.
    pub message_timeout_ms: u64,
    /// Extra librdkafka producer options (`security.protocol`,
    /// `sasl.mechanism`, `compression.type`, ...); they override anomalyd's
    /// `linger.ms = 0`. Secret-looking values
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
}

impl fmt::Debug for KafkaSinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSinkConfig")
            .field("enabled", &self.enabled)
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("incident_topic", &self.incident_topic)
            .field("messages", &self.messages)
            .field("message_timeout_ms", &self.message_timeout_ms)
            .field("options", &redacted(&self.options))
            .field("secret_env", &self.secret_env)
            .field("secret_files", &self.secret_files)
            .finish()
    }
}

impl Default for KafkaSinkConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            brokers: String::new(),
            topic: "anomalyd-alerts".to_owned(),
            incident_topic: "anomalyd-incidents".to_owned(),
            messages: Messages::Both,
            message_timeout_ms: 30_000,
            options: BTreeMap::new(),
            secret_env: BTreeMap::new(),
            secret_files: BTreeMap::new(),
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

/// Alerts produced per batch before awaiting their delivery:
/// `max_batch_alerts`; `[retry]` after the producer gave up on a batch.
impl SinkTable for KafkaSinkConfig {
    const KEYS: &'static [&'static str] = &[
        "enabled",
        "brokers",
        "topic",
        "incident_topic",
        "messages",
        "message_timeout_ms",
        "options",
        "secret_env",
        "secret_files",
        "queue_capacity",
        "max_batch_alerts",
        "retry",
    ];

    fn enabled(&self) -> bool {
        self.enabled
    }

    fn validate(&self, prefix: &str, problems: &mut Problems) {
        for (key, topic, needed) in [
            ("topic", &self.topic, self.messages != Messages::Incidents),
            (
                "incident_topic",
                &self.incident_topic,
                self.messages != Messages::Alerts,
            ),
        ] {
            problems.check(
                !needed || is_valid_topic(topic),
                format!("{prefix}.{key}"),
                format!("`{topic}` is not a valid topic name; use 1-249 of [a-zA-Z0-9._-]"),
            );
        }
        problems.check(
            self.message_timeout_ms >= 1,
            format!("{prefix}.message_timeout_ms"),
            "must be at least 1 (milliseconds)",
        );
        self.client_options().validate(
            prefix,
            &[
                ("bootstrap.servers", Some("brokers")),
                ("message.timeout.ms", Some("message_timeout_ms")),
                ("enable.idempotence", None),
            ],
            problems,
        );
    }
}

impl KafkaSinkConfig {
    /// The pass-through librdkafka options.
    pub fn client_options(&self) -> ClientOptions<'_> {
        ClientOptions {
            options: &self.options,
            secret_env: &self.secret_env,
            secret_files: &self.secret_files,
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
    incident_topic: String,
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
            .set("message.timeout.ms", config.message_timeout_ms.to_string())
            // `send` hands librdkafka a whole batch at once and then awaits
            // it, so lingering would batch nothing and only delay alerts.
            .set("linger.ms", "0");
        let resolved = config.client_options().resolve(prefix, env)?;
        for (k, v) in &resolved.pairs {
            cc.set(k, v);
        }
        // Last, so no option can turn it off.
        cc.set("enable.idempotence", "true");
        let producer: FutureProducer = cc.create().map_err(|e| {
            // librdkafka may quote a rejected value in its message.
            SinkBuildError::Config {
                key: prefix.to_owned(),
                message: format!(
                    "cannot create Kafka producer: {}",
                    resolved.scrub(&e.to_string())
                ),
            }
        })?;
        Ok(Self {
            producer,
            topic: config.topic.clone(),
            incident_topic: config.incident_topic.clone(),
        })
    }
}

impl AlertSink for KafkaSink {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn send(&self, batch: &[Notice]) -> Result<(), SinkError> {
        // Enqueue the whole batch first, then await the acknowledgements,
        // so the messages travel together instead of one round trip each.
        let mut pending = Vec::with_capacity(batch.len());
        let mut first_error = None;
        for n in batch {
            let (topic, kind, payload) = match n {
                Notice::Alert(a) => (&self.topic, "alert", serde_json::to_vec::<SeriesAlert>(a)?),
                Notice::Incident(i) => (
                    &self.incident_topic,
                    "incident",
                    serde_json::to_vec::<Incident>(i)?,
                ),
            };
            let headers = OwnedHeaders::new().insert(Header {
                key: "anomalyd-message",
                value: Some(kind),
            });
            let record = FutureRecord::to(topic)
                .key(n.key().as_bytes())
                .payload(&payload)
                .headers(headers);
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
    use crate::config::secret::{REDACTED, is_secret_option};

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
                .contains("sinks.kafka.secret_env.\"sasl.password\""),
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
        // Empty brokers are fine: the sink then uses kafka.brokers.
        assert_eq!(
            keys,
            [
                "sinks.kafka.topic",
                "sinks.kafka.options.\"enable.idempotence\""
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
