//! The whole configuration and how it is loaded.
//!
//! Layers, later ones win: defaults in code → TOML file (`--config FILE` or
//! `$ANOMALYD_CONFIG`) → environment variables `ANOMALYD__SECTION__KEY`
//! (prefix `ANOMALYD`, separator `__`, because keys themselves contain `_`).
//! Unknown keys are errors everywhere (`deny_unknown_fields`), so a typo is
//! reported instead of silently ignored. [`Config::validate`] then checks
//! values and reports every problem at once.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Problems;
use crate::alert::lifecycle::AlertRuleConfig;
use crate::alert::sink::SinksConfig;
use crate::decode::DecodeConfig;
use crate::detector::DetectorConfig;
use crate::pipeline::PipelineConfig;
use crate::source::SourcesConfig;
use crate::source::kafka::KafkaConfig;
use crate::state::StateConfig;
use crate::telemetry::LogConfig;
use crate::telemetry::metrics::MetricsConfig;
use crate::ui::UiConfig;

/// Environment variable prefix (`ANOMALYD__KAFKA__GROUP_ID`).
pub const ENV_PREFIX: &str = "ANOMALYD";
/// Separator between prefix, sections and keys in environment variables.
pub const ENV_SEPARATOR: &str = "__";
/// Environment variable naming the config file when `--config` is absent.
pub const CONFIG_ENV: &str = "ANOMALYD_CONFIG";

/// The daemon's configuration: one field per TOML section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[kafka]`: input topics and consumer group.
    pub kafka: KafkaConfig,
    /// `[sources]`: inputs besides Kafka (the remote-write receiver).
    pub sources: SourcesConfig,
    /// `[decode]`: wire format of the input messages.
    pub decode: DecodeConfig,
    /// `[detector]`: model and adaptive threshold, per series.
    pub detector: DetectorConfig,
    /// `[alert]`: when a series fires and resolves.
    pub alert: AlertRuleConfig,
    /// `[sinks]`: where alerts go.
    pub sinks: SinksConfig,
    /// `[metrics]`: the Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// `[log]`: log format and level.
    pub log: LogConfig,
    /// `[pipeline]`: shards, queues, memory bounds.
    pub pipeline: PipelineConfig,
    /// `[state]`: snapshots and restore.
    pub state: StateConfig,
    /// `[ui]`: the live page and its history.
    pub ui: UiConfig,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is missing or unreadable.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file or an environment variable does not parse or has an unknown
    /// key or a wrong type (the message names the key).
    #[error("{0}")]
    Parse(String),
    /// Values are out of range or inconsistent; every problem is listed.
    #[error("invalid configuration:\n{0}")]
    Invalid(Problems),
}

impl Config {
    /// Loads defaults → `path` (or `$ANOMALYD_CONFIG`) → environment, then
    /// validates.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let config = Self::load_unvalidated(path)?;
        config.validate().map_err(ConfigError::Invalid)?;
        Ok(config)
    }

    /// Loads without validating values (`check-config` validates itself to
    /// print every problem).
    pub fn load_unvalidated(path: Option<&Path>) -> Result<Self, ConfigError> {
        let env_path = std::env::var_os(CONFIG_ENV).map(PathBuf::from);
        let path = path.map(Path::to_path_buf).or(env_path);
        let text = match &path {
            // Read it ourselves so a missing file gets an OS error with the
            // path, not a generic "not found".
            Some(path) => {
                Some(
                    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                        path: path.clone(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        Self::from_sources(text.as_deref(), None).map_err(|e| {
            let source = path.as_deref().map_or_else(
                || "environment".to_string(),
                |p| format!("{} (or environment)", p.display()),
            );
            ConfigError::Parse(describe(&e, &source))
        })
    }

    /// Parses TOML text over the defaults, without the environment layer
    /// and without validating values: the file layer of
    /// [`Config::load_unvalidated`], through the same code (the config fuzz
    /// target and tests use it).
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        Self::from_sources(Some(text), Some(std::collections::HashMap::new()))
            .map_err(|e| ConfigError::Parse(describe(&e, "config text")))
    }

    /// The layering itself: defaults → `toml` → environment variables
    /// (the process environment, or `env` when given, which lets tests and
    /// tools layer a deployment's variables without touching the process).
    pub fn from_sources(
        toml: Option<&str>,
        env: Option<std::collections::HashMap<String, String>>,
    ) -> Result<Self, config::ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(text) = toml {
            builder = builder.add_source(config::File::from_str(text, config::FileFormat::Toml));
        }
        // An empty map (not `None`) means "no environment at all".
        let env_source = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator(ENV_SEPARATOR)
            .separator(ENV_SEPARATOR)
            .list_separator(",")
            .with_list_parse_key("kafka.topics")
            .try_parsing(true)
            .source(env.map(|m| m.into_iter().collect()));
        builder.add_source(env_source).build()?.try_deserialize()
    }

    /// Defaults that depend on other keys, applied when the daemon starts
    /// (the loaded config keeps what the user wrote): the Kafka alert sink
    /// talks to the input cluster unless `sinks.kafka.brokers` names another
    /// one.
    pub fn fill_derived_defaults(&mut self) {
        if self.sinks.kafka.brokers.trim().is_empty() {
            self.sinks.kafka.brokers = self.kafka.brokers.clone();
        }
    }

    /// The effective configuration as TOML, as `check-config --print` shows
    /// it. Secret option values are redacted (their maps serialise
    /// redacted), so the output is safe to paste into an issue.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string_pretty(self)
    }

    /// Checks every value; returns all problems at once.
    pub fn validate(&self) -> Result<(), Problems> {
        let mut p = Problems::new();
        if self.kafka.enabled {
            self.kafka.validate("kafka", &mut p);
        }
        p.check(
            self.kafka.enabled || self.sources.any_enabled(),
            "kafka.enabled",
            "is false and no other source is enabled; set kafka.enabled = true or \
             enable one under [sources], e.g. sources.remote_write.enabled = true",
        );
        self.sources.validate("sources", &mut p);
        self.decode.validate("decode", &mut p);
        self.detector.validate("detector", &mut p);
        self.alert.validate("alert", &mut p);
        self.sinks.validate("sinks", &mut p);
        self.metrics.validate("metrics", &mut p);
        self.log.validate("log", &mut p);
        self.pipeline.validate("pipeline", &mut p);
        self.state.validate("state", self.kafka.enabled, &mut p);
        self.ui.validate("ui", self.pipeline.worker_count(), &mut p);
        p.into_result()
    }
}

fn describe(e: &config::ConfigError, source: &str) -> String {
    format!(
        "{source}: {e}. Check the key's spelling and type against config/anomalyd.toml; \
         environment overrides look like ANOMALYD__KAFKA__GROUP_ID"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_text_layers_over_the_defaults() {
        let c = Config::from_toml_str(
            "[kafka]\ngroup_id = \"g\"\ntopics = [\"a\", \"b\"]\n[detector.model]\nlags = 3\n",
        )
        .unwrap();
        assert_eq!(c.kafka.group_id, "g");
        assert_eq!(c.kafka.topics, ["a", "b"]);
        assert_eq!(c.detector.model.lags, 3);
        assert_eq!(c.alert, Config::default().alert);
        assert_eq!(Config::from_toml_str("").unwrap(), Config::default());
    }

    #[test]
    fn unknown_keys_and_bad_toml_are_parse_errors() {
        for text in ["[kafka]\ngroup = \"g\"\n", "[kafka\n", "kafka = 3\n"] {
            let err = Config::from_toml_str(text).unwrap_err();
            assert!(matches!(err, ConfigError::Parse(_)), "{text:?}: {err}");
            assert!(err.to_string().starts_with("config text: "), "{err}");
        }
    }

    #[test]
    fn the_default_config_prints_and_reads_back_as_itself() {
        let printed = Config::default().to_toml().unwrap();
        assert_eq!(Config::from_toml_str(&printed).unwrap(), Config::default());
    }
}
