//! The `[kafka]` section and the librdkafka consumer configuration built
//! from it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rdkafka::config::ClientConfig;
use serde::{Deserialize, Serialize};

use super::SourceError;
use crate::config::Problems;
use crate::config::secret::{ClientOptions, ResolvedOptions, redacted, serialize_redacted};

/// Where a new consumer group starts reading a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OffsetReset {
    /// From the oldest retained message: models warm up on history.
    Earliest,
    /// From new messages only (Kafka's default).
    Latest,
}

impl OffsetReset {
    fn as_str(self) -> &'static str {
        match self {
            Self::Earliest => "earliest",
            Self::Latest => "latest",
        }
    }
}

/// The `[kafka]` section: the input topics and the consumer group.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Consume the topics. Turn it off to run on other sources only (e.g.
    /// `[sources.remote_write]`); the other keys are then ignored.
    pub enabled: bool,
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Consumer group id. Instances with the same id share the partitions.
    pub group_id: String,
    /// Topics to consume.
    pub topics: Vec<String>,
    /// Client id shown in broker logs.
    pub client_id: String,
    /// Where a group without committed offsets starts: `earliest` or `latest`.
    pub auto_offset_reset: OffsetReset,
    /// Consumer group session timeout. A crashed instance's partitions move
    /// after this long.
    pub session_timeout_ms: u64,
    /// How often offsets are committed (a checkpoint). With a state store,
    /// commits follow snapshots instead (`state.snapshot_interval_secs`).
    pub commit_interval_ms: u64,
    /// How often librdkafka reports statistics (consumer lag per partition);
    /// 0 disables the lag metric.
    pub statistics_interval_ms: u64,
    /// Extra librdkafka properties passed through as they are (SASL, TLS,
    /// fetch tuning), e.g. `"security.protocol" = "SASL_SSL"`; they override
    /// anomalyd's `fetch.queue.backoff.ms = 10` (librdkafka: 1000). Values of
    /// secret-looking keys are redacted in every print and log; prefer
    /// `secret_env` or `secret_files` for them.
    #[serde(serialize_with = "serialize_redacted")]
    pub options: BTreeMap<String, String>,
    /// librdkafka properties whose values come from environment variables:
    /// `"sasl.password" = "KAFKA_PASSWORD"` reads `$KAFKA_PASSWORD`.
    pub secret_env: BTreeMap<String, String>,
    /// librdkafka properties whose values come from files (trailing newline
    /// trimmed): `"sasl.password" = "/run/secrets/kafka"`.
    pub secret_files: BTreeMap<String, PathBuf>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            brokers: "localhost:9092".into(),
            group_id: "anomalyd".into(),
            topics: vec!["metrics".into()],
            client_id: "anomalyd".into(),
            auto_offset_reset: OffsetReset::Latest,
            session_timeout_ms: 45_000,
            commit_interval_ms: 1_000,
            statistics_interval_ms: 5_000,
            options: BTreeMap::new(),
            secret_env: BTreeMap::new(),
            secret_files: BTreeMap::new(),
        }
    }
}

/// Redacts the values of secret-looking options.
impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("enabled", &self.enabled)
            .field("brokers", &self.brokers)
            .field("group_id", &self.group_id)
            .field("topics", &self.topics)
            .field("client_id", &self.client_id)
            .field("auto_offset_reset", &self.auto_offset_reset)
            .field("session_timeout_ms", &self.session_timeout_ms)
            .field("commit_interval_ms", &self.commit_interval_ms)
            .field("statistics_interval_ms", &self.statistics_interval_ms)
            .field("options", &redacted(&self.options))
            .field("secret_env", &self.secret_env)
            .field("secret_files", &self.secret_files)
            .finish()
    }
}

/// Properties the source sets itself, with the key to use instead.
const MANAGED: &[(&str, Option<&str>)] = &[
    ("enable.auto.commit", None),
    ("enable.auto.offset.store", None),
    ("group.id", Some("group_id")),
    ("bootstrap.servers", Some("brokers")),
    ("auto.offset.reset", Some("auto_offset_reset")),
    ("session.timeout.ms", Some("session_timeout_ms")),
];

impl KafkaConfig {
    /// Records every problem, with keys under `prefix`.
    pub fn validate(&self, prefix: &str, problems: &mut Problems) {
        problems.check(
            !self.brokers.trim().is_empty(),
            format!("{prefix}.brokers"),
            "is empty; set it to the bootstrap servers, e.g. \"kafka:9092\"",
        );
        problems.check(
            !self.group_id.trim().is_empty(),
            format!("{prefix}.group_id"),
            "is empty; set a consumer group id, e.g. \"anomalyd\"",
        );
        problems.check(
            !self.topics.is_empty() && self.topics.iter().all(|t| !t.trim().is_empty()),
            format!("{prefix}.topics"),
            "needs at least one non-empty topic name, e.g. [\"metrics\"]",
        );
        problems.check(
            self.topics.len() <= usize::from(u16::MAX),
            format!("{prefix}.topics"),
            "lists more than 65535 topics",
        );
        problems.check(
            (1_000..=3_600_000).contains(&self.session_timeout_ms),
            format!("{prefix}.session_timeout_ms"),
            format!(
                "{} is outside 1000..=3600000 (brokers refuse other values by default)",
                self.session_timeout_ms
            ),
        );
        problems.check(
            self.commit_interval_ms >= 10,
            format!("{prefix}.commit_interval_ms"),
            "must be at least 10 ms",
        );
        self.client_options().validate(prefix, MANAGED, problems);
    }

    /// The pass-through librdkafka options.
    pub fn client_options(&self) -> ClientOptions<'_> {
        ClientOptions {
            options: &self.options,
            secret_env: &self.secret_env,
            secret_files: &self.secret_files,
        }
    }

    /// The librdkafka consumer configuration (secrets resolved), and the
    /// resolved options to scrub secrets from librdkafka's errors.
    pub fn consumer_config(&self) -> Result<(ClientConfig, ResolvedOptions), SourceError> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group_id)
            .set("client.id", &self.client_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", self.auto_offset_reset.as_str())
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            // librdkafka stops fetching a partition whose local queue is full
            // and looks again only after this long (default 1000 ms): at
            // hundreds of thousands of events per second that drained the
            // queue and left the daemon idle most of each second.
            .set("fetch.queue.backoff.ms", "10");
        if self.statistics_interval_ms > 0 {
            c.set(
                "statistics.interval.ms",
                self.statistics_interval_ms.to_string(),
            );
        }
        let env = |k: &str| std::env::var(k).ok();
        let resolved = self.client_options().resolve("kafka", &env)?;
        for (k, v) in &resolved.pairs {
            c.set(k, v);
        }
        Ok((c, resolved))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_defaults_can_be_overridden_by_options() {
        let config = KafkaConfig::default();
        let (c, _) = config.consumer_config().unwrap();
        assert_eq!(c.get("fetch.queue.backoff.ms"), Some("10"));
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        let config = KafkaConfig {
            options: BTreeMap::from([("fetch.queue.backoff.ms".into(), "250".into())]),
            ..KafkaConfig::default()
        };
        let (c, _) = config.consumer_config().unwrap();
        assert_eq!(c.get("fetch.queue.backoff.ms"), Some("250"));
    }
}
