//! The whole configuration and how it is loaded.
//!
//! Layers, later ones win: defaults in code → TOML file (`--config FILE` or
//! `$ANOMALYD_CONFIG`) → environment variables `ANOMALYD__SECTION__KEY`
//! (prefix `ANOMALYD`, separator `__`, because keys themselves contain `_`).
//! The [`config`] crate does the layering (see [`Config::layered`]).
//!
//! Every problem is found in one pass ([`Config::check`], what
//! `anomalyd check-config` prints and `anomalyd run` refuses with exit
//! code 2). The `config` crate reads values loosely (a quoted `"0.7"`
//! passes as a number, `7` as a string), so each layer is first compared
//! with the configuration's [`Shape`], read from the types themselves: the
//! file as written, each variable against the key it sets. An unknown key,
//! a wrong type (a number written as a string) or an unknown choice is
//! reported at its full dotted key with what would be valid (naming the
//! variable that set it), and that key keeps its default so the rest is
//! still read; [`Config::validate`] then checks values and sections
//! against each other, and [`Config::check_secrets`] reads the secrets the
//! enabled parts name. An environment value takes the type of its key, so
//! strings stay strings (`007` is not 7).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::alert::config::AlertConfig;
use crate::alert::sink::SinksConfig;
use crate::config::Problems;
use crate::config::schema::{self, Shape};
use crate::decode::DecodeConfig;
use crate::detector::DetectorConfig;
use crate::history::HistoryConfig;
use crate::pipeline::PipelineConfig;
use crate::source::SourcesConfig;
use crate::source::kafka::KafkaConfig;
use crate::source::remote_write::STREAM as RW_STREAM;
use crate::state::{StateConfig, StoreKind};
use crate::telemetry::LogConfig;
use crate::telemetry::metrics::MetricsConfig;
use crate::telemetry::web;
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
    /// `[alert]`: when a series fires and resolves, and how old an event
    /// may be and still alert.
    pub alert: AlertConfig,
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
    /// `[history]`: new series learn their past from Prometheus.
    pub history: HistoryConfig,
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
    /// The file is not TOML (the message says where it stops parsing).
    #[error("{0}")]
    Parse(String),
    /// Keys, types or values are wrong; every problem is listed, each with
    /// its full dotted key.
    #[error("invalid configuration:\n{0}")]
    Invalid(Problems),
}

/// A configuration as far as it could be read, and every problem with it.
#[derive(Debug)]
pub struct Checked {
    /// The configuration; a key with a problem keeps its default.
    pub config: Config,
    /// Every problem: unknown keys, wrong types, bad values, inconsistent
    /// sections, unreadable secrets. Empty when the daemon would start.
    pub problems: Problems,
}

impl Config {
    /// The shape of the configuration (keys, types, choices), read once
    /// from the types themselves (see [`Shape`]). Should a config type
    /// ever refuse the probe (a unit test probes them all), it is
    /// [`Shape::Any`]: nothing is checked ahead, the typed parser reports
    /// the first mistake, and environment values are typed by their look.
    pub fn shape() -> &'static Shape {
        static SHAPE: OnceLock<Shape> = OnceLock::new();
        SHAPE.get_or_init(|| Shape::of::<Config>().unwrap_or(Shape::Any))
    }

    /// Loads defaults → `path` (or `$ANOMALYD_CONFIG`) → environment, and
    /// checks everything `anomalyd run` needs before it starts: what
    /// [`Config::check`] reports. Any problem is an error.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let checked = Self::check(path)?;
        checked
            .problems
            .into_result()
            .map_err(ConfigError::Invalid)?;
        Ok(checked.config)
    }

    /// What `anomalyd check-config` reports: the configuration and every
    /// problem in it at once: structure (unknown keys, types, choices),
    /// values ([`Config::validate`]) and the secrets it names
    /// ([`Config::check_secrets`]). Errors only when there is nothing to
    /// check (the file is unreadable or not TOML).
    pub fn check(path: Option<&Path>) -> Result<Checked, ConfigError> {
        let text = Self::read(path)?;
        let (config, mut problems) = Self::layered(text.as_deref(), std::env::vars())?;
        if let Err(p) = config.validate() {
            problems.extend(p);
        }
        let env = |k: &str| std::env::var(k).ok();
        problems.extend(config.check_secrets(&env));
        Ok(Checked { config, problems })
    }

    /// Loads without validating values: the structure must hold (unknown
    /// keys, types and choices are errors), the values are the caller's
    /// to check (`backtest` needs only some sections).
    pub fn load_unvalidated(path: Option<&Path>) -> Result<Self, ConfigError> {
        let text = Self::read(path)?;
        let (config, problems) = Self::layered(text.as_deref(), std::env::vars())?;
        problems.into_result().map_err(ConfigError::Invalid)?;
        Ok(config)
    }

    /// The file named by `path`, else by `$ANOMALYD_CONFIG`, if any.
    fn read(path: Option<&Path>) -> Result<Option<String>, ConfigError> {
        let env_path = std::env::var_os(CONFIG_ENV).map(PathBuf::from);
        let Some(path) = path.map(Path::to_path_buf).or(env_path) else {
            return Ok(None);
        };
        // Read it ourselves so a missing file gets an OS error with the
        // path, not a generic "not found".
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        Ok(Some(text))
    }

    /// Parses TOML text over the defaults, without the environment layer
    /// and without validating values: the file layer of
    /// [`Config::load_unvalidated`], through the same code (the config fuzz
    /// target and tests use it).
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        Self::from_sources(Some(text), Some(HashMap::new()))
    }

    /// The layering itself: defaults → `toml` → environment variables
    /// (the process environment, or `env` when given, which lets tests and
    /// tools layer a deployment's variables without touching the process).
    /// Structural problems are errors; values are not validated.
    pub fn from_sources(
        toml: Option<&str>,
        env: Option<HashMap<String, String>>,
    ) -> Result<Self, ConfigError> {
        let (config, problems) = match env {
            Some(env) => Self::layered(toml, env.into_iter())?,
            None => Self::layered(toml, std::env::vars())?,
        };
        problems.into_result().map_err(ConfigError::Invalid)?;
        Ok(config)
    }

    /// Defaults → `toml` → the `ANOMALYD__` variables among `env`, layered
    /// by the [`config`] crate, each layer checked against
    /// [`Config::shape`] first: every unknown key, wrong type or unknown
    /// choice is a problem at its full dotted key (naming the variable when
    /// one set it), and that key is left out of the layering so it keeps
    /// the value below it, and the rest is still read and validated.
    ///
    /// Strings stay strings: a variable is converted to the type of the
    /// key it sets (`ANOMALYD__KAFKA__GROUP_ID=007` is the group `"007"`,
    /// `ANOMALYD__PIPELINE__WORKERS=4` the number 4), and a file must
    /// write numbers and booleans without quotes. A list variable is
    /// split at commas (`ANOMALYD__KAFKA__TOPICS=a,b`).
    ///
    /// What the `config` crate does: the defaults (the serialised
    /// [`Config::default`]), the file ([`config::File`], the checked
    /// TOML), the environment ([`config::Environment`] with prefix
    /// `ANOMALYD` and separator `__`, without `try_parsing`, so every value
    /// stays the string it was and a number key reads its number from it),
    /// the merge, and the typed result. What it cannot do is checked or
    /// done beside it: the type checks above (its values are weakly typed:
    /// a quoted number passes, with `try_parsing` a group `007` becomes 7),
    /// and list variables, which its `Environment` splits only with
    /// `try_parsing` on: they are split here and set as overrides, which
    /// is where the environment layer sits anyway (on top).
    pub fn layered(
        toml: Option<&str>,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<(Self, Problems), ConfigError> {
        let shape = Self::shape();
        let mut file = match toml {
            Some(text) => toml::from_str::<toml::Table>(text).map_err(|e| {
                ConfigError::Parse(format!("the config file is not valid TOML: {e}"))
            })?,
            None => toml::Table::new(),
        };
        // The file as written: a mistake is reported, and the key left out.
        let mut problems = Problems::new();
        shape.check(
            "",
            &toml::Value::Table(file.clone()),
            &|_| None,
            &mut problems,
        );
        for p in problems.iter() {
            schema::remove(&mut file, &p.key);
        }
        // Each variable against the key it sets; sorted, so a problem list
        // is the same on every run.
        let mut vars: Vec<(String, String)> = env
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}{ENV_SEPARATOR}")))
            .collect();
        vars.sort();
        let mut strings = config::Map::new();
        let mut lists = Vec::new();
        for (var, value) in vars {
            match env_layer(shape, &var, &value, &mut problems) {
                Some(EnvValue::Text(text)) => {
                    strings.insert(var, text);
                }
                Some(EnvValue::List(key, items)) => lists.push((key, items)),
                None => {}
            }
        }
        let layers = || -> Result<Config, config::ConfigError> {
            let file =
                toml::to_string(&file).map_err(|e| config::ConfigError::Message(e.to_string()))?;
            let mut builder = config::Config::builder()
                .add_source(config::Config::try_from(&Config::default())?)
                .add_source(config::File::from_str(&file, config::FileFormat::Toml))
                .add_source(
                    config::Environment::with_prefix(ENV_PREFIX)
                        .separator(ENV_SEPARATOR)
                        .source(Some(strings)),
                );
            for (key, items) in lists {
                builder = builder.set_override(key, items)?;
            }
            builder.build()?.try_deserialize()
        };
        let config = match layers() {
            Ok(c) => c,
            Err(e) => {
                // The checks above let only well-formed keys through; a
                // type's own parser may still refuse a value.
                problems.push("(config)", e.to_string());
                Config::default()
            }
        };
        Ok((config, problems))
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
        self.state.validate("state", &mut p);
        self.ui.validate("ui", self.pipeline.worker_count(), &mut p);
        self.history.validate("history", &mut p);
        self.validate_across(&mut p);
        p.into_result()
    }

    /// What no section can see alone: sources and listeners that would
    /// collide when the daemon starts, and a state store in a Kafka the
    /// daemon does not use.
    fn validate_across(&self, p: &mut Problems) {
        let rw = &self.sources.remote_write;
        if rw.enabled
            && let (Ok(metrics), Ok(receiver)) = (
                self.metrics.socket_addr(),
                rw.listen_addr.parse::<SocketAddr>(),
            )
            && same_listener(metrics, receiver)
        {
            p.push(
                "sources.remote_write.listen_addr",
                format!(
                    "`{}` is where metrics.listen_addr (`{}`) listens; the receiver and \
                     the metrics endpoint need a port each, e.g. 127.0.0.1:9201",
                    rw.listen_addr, self.metrics.listen_addr
                ),
            );
        }
        p.check(
            self.state.store != StoreKind::Changelog || self.kafka.enabled,
            "state.store",
            "is \"changelog\", a Kafka topic of the [kafka] cluster, but kafka.enabled = false; \
             use store = \"dir\" (with state.dir) or store = \"none\", or enable [kafka]",
        );
        if rw.enabled && self.kafka.enabled && self.kafka.topics.iter().any(|t| t == RW_STREAM) {
            p.push(
                "kafka.topics",
                format!(
                    "the topic `{RW_STREAM}` has the name the remote-write receiver keeps its \
                     state under; the two would share it. Read the topic under another name, \
                     or disable one of kafka.enabled and sources.remote_write.enabled"
                ),
            );
        }
    }

    /// Reads every secret that an enabled part names, as it will when it
    /// starts (the values are dropped at once): an unset variable or a
    /// missing file is a problem at its key now, not a failed start. So
    /// are the `web_config_file`s of the listening ports, with the
    /// certificates, keys and password hashes they name.
    pub fn check_secrets(&self, env: &dyn Fn(&str) -> Option<String>) -> Problems {
        let mut p = Problems::new();
        web::validate_web_config("metrics", self.metrics.web_config_file.as_deref(), &mut p);
        let rw = &self.sources.remote_write;
        if rw.enabled {
            web::validate_web_config(
                "sources.remote_write",
                rw.web_config_file.as_deref(),
                &mut p,
            );
        }
        // (The changelog store is refused without [kafka] by `validate`.)
        if self.kafka.enabled {
            self.kafka
                .client_options()
                .check_secrets("kafka", env, &mut p);
        }
        let sinks = &self.sinks;
        if sinks.kafka.enabled {
            sinks
                .kafka
                .client_options()
                .check_secrets("sinks.kafka", env, &mut p);
        }
        if sinks.webhook.enabled {
            sinks
                .webhook
                .auth
                .check_secret("sinks.webhook.auth", env, &mut p);
        }
        if sinks.alertmanager.enabled {
            sinks
                .alertmanager
                .auth
                .check_secret("sinks.alertmanager.auth", env, &mut p);
        }
        if self.history.enabled
            && let Err(e) = self.history.auth.read("history.auth", env)
        {
            p.push(e.key(), e.reason());
        }
        p
    }
}

/// Whether two listeners would fight over one port: the same port
/// (not 0, which picks a free one) on the same address, or either on every
/// address.
fn same_listener(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// The `ANOMALYD__…` variable that sets dotted `key`.
fn env_name(key: &str) -> String {
    let mut name = ENV_PREFIX.to_owned();
    for part in key.split('.') {
        name.push_str(ENV_SEPARATOR);
        name.push_str(&part.to_ascii_uppercase());
    }
    name
}

/// What one accepted `ANOMALYD__…` variable hands the `config` crate.
#[derive(Debug)]
enum EnvValue {
    /// The value, for its `Environment` source: as written for a string
    /// key, trimmed for a number or a boolean (which it reads from the
    /// string).
    Text(String),
    /// A list key (dotted) and its items, split at commas.
    List(String, Vec<config::Value>),
}

/// Checks one `ANOMALYD__A__B=value` variable against key `a.b`: the key
/// must exist and the value fit its type (converted as [`env_value`]
/// does, then checked like a file's value, ranges and choices included).
/// A variable that names no key, or whose value does not fit, is a
/// problem naming it, and `None`.
fn env_layer(shape: &Shape, var: &str, value: &str, problems: &mut Problems) -> Option<EnvValue> {
    let rest = &var[ENV_PREFIX.len() + ENV_SEPARATOR.len()..];
    let path: Vec<String> = rest
        .split(ENV_SEPARATOR)
        .map(str::to_ascii_lowercase)
        .collect();
    if path.iter().any(String::is_empty) {
        problems.push(
            var,
            "names no key; write ANOMALYD__SECTION__KEY with `__` between the parts, \
             e.g. ANOMALYD__KAFKA__GROUP_ID",
        );
        return None;
    }
    let key = path.join(".");
    let from = |_: &str| Some(var.to_owned());
    let mut node = shape;
    for (i, part) in path.iter().enumerate() {
        let parent = path[..i].join(".");
        match node.inner() {
            Shape::Table(fields) => match fields.iter().find(|(f, _)| f == part) {
                Some((_, s)) => node = s,
                None => {
                    // The shape words it, as for a key in the file.
                    let mut t = toml::Table::new();
                    t.insert(part.clone(), toml::Value::String(value.to_owned()));
                    node.check(&parent, &toml::Value::Table(t), &from, problems);
                    return None;
                }
            },
            Shape::Map(s) => node = s,
            _ => {
                problems.push(
                    key,
                    format!(
                        "`{parent}` is a value, not a section (set by {var}); set it with {}",
                        env_name(&parent)
                    ),
                );
                return None;
            }
        }
    }
    let typed = match env_value(node, value) {
        Ok(v) => v,
        Err(what) => {
            problems.push(key, format!("{what} (set by {var})"));
            return None;
        }
    };
    let before = problems.len();
    node.check(&key, &typed, &from, problems);
    if problems.len() > before {
        return None;
    }
    Some(match typed {
        toml::Value::Array(items) => EnvValue::List(key, items.iter().map(config_value).collect()),
        toml::Value::String(s) => EnvValue::Text(s),
        _ => EnvValue::Text(value.trim().to_owned()),
    })
}

/// A checked TOML value as the `config` crate holds it.
fn config_value(v: &toml::Value) -> config::Value {
    let kind = match v {
        toml::Value::String(s) => config::ValueKind::String(s.clone()),
        toml::Value::Integer(i) => config::ValueKind::I64(*i),
        toml::Value::Float(f) => config::ValueKind::Float(*f),
        toml::Value::Boolean(b) => config::ValueKind::Boolean(*b),
        toml::Value::Datetime(d) => config::ValueKind::String(d.to_string()),
        toml::Value::Array(items) => {
            config::ValueKind::Array(items.iter().map(config_value).collect())
        }
        toml::Value::Table(t) => config::ValueKind::Table(
            t.iter()
                .map(|(k, v)| (k.clone(), config_value(v)))
                .collect(),
        ),
    };
    config::Value::new(None, kind)
}

/// An environment value as the type `shape` wants: strings stay as
/// written (`007` is not 7), numbers and booleans are parsed, lists are
/// split at commas.
fn env_value(shape: &Shape, value: &str) -> Result<toml::Value, String> {
    let not = || format!("must be {}, not `{value}`", shape.describe());
    let v = value.trim();
    match shape.inner() {
        Shape::Text | Shape::Choice(_) | Shape::Removed | Shape::Optional(_) => {
            Ok(toml::Value::String(value.to_owned()))
        }
        // Unknown type: by its look (only when the shape is unknown).
        Shape::Any => Ok(match v.to_ascii_lowercase().as_str() {
            "true" => toml::Value::Boolean(true),
            "false" => toml::Value::Boolean(false),
            _ => v.parse().map(toml::Value::Integer).unwrap_or_else(|_| {
                v.parse()
                    .map(toml::Value::Float)
                    .unwrap_or_else(|_| toml::Value::String(value.to_owned()))
            }),
        }),
        Shape::Bool => match v.to_ascii_lowercase().as_str() {
            "true" => Ok(toml::Value::Boolean(true)),
            "false" => Ok(toml::Value::Boolean(false)),
            _ => Err(not()),
        },
        Shape::Integer { .. } => v.parse().map(toml::Value::Integer).map_err(|_| not()),
        Shape::Float => v.parse().map(toml::Value::Float).map_err(|_| not()),
        Shape::List(_) if v.is_empty() => Ok(toml::Value::Array(Vec::new())),
        Shape::List(item) => value
            .split(',')
            .map(|part| env_value(item, part.trim()))
            .collect::<Result<Vec<_>, _>>()
            .map(toml::Value::Array),
        Shape::Table(_) | Shape::Map(_) => {
            Err("is a section; set its keys one by one, e.g. ANOMALYD__KAFKA__GROUP_ID".to_owned())
        }
    }
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

    fn layered(toml: &str, env: &[(&str, &str)]) -> (Config, Vec<String>) {
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        let (c, p) = Config::layered(Some(toml), env).unwrap();
        (c, p.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn bad_toml_is_a_parse_error_and_structure_is_checked_whole() {
        let err = Config::from_toml_str("[kafka\n").unwrap_err();
        assert!(matches!(err, ConfigError::Parse(_)), "{err}");
        for text in ["[kafka]\ngroup = \"g\"\n", "kafka = 3\n"] {
            let err = Config::from_toml_str(text).unwrap_err();
            assert!(matches!(err, ConfigError::Invalid(_)), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_config_types_probe_to_a_shape_with_every_key() {
        assert!(Shape::of::<Config>().is_ok(), "{:?}", Shape::of::<Config>());
        let shape = Config::shape();
        for key in [
            "kafka.group_id",
            "alert.critical_threshold",
            "alert.resolve_threshold",
            "sinks.webhook.auth.token_file",
            "sinks.alertmanager.generator_url",
            "kafka.options.anything",
            "history.auth.bearer_token_file",
            "history.step_secs",
            "decode.counters.skip_buckets",
            "sources.remote_write.counters.as_rate",
        ] {
            assert!(shape.at(key).is_some(), "{key}");
        }
        // `[alert]` is the rule's keys and one more, each with its type.
        assert!(matches!(
            shape.at("alert.max_event_age_secs"),
            Some(Shape::Integer { min: 0, .. })
        ));
        assert_eq!(shape.at("alert.threshold"), Some(&Shape::Float));
        assert_eq!(shape.at("alert.treshold"), None);
        assert_eq!(
            shape
                .at("detector.threshold.smoothing_events")
                .map(Shape::inner),
            Some(&Shape::Removed)
        );
        assert!(matches!(
            shape.at("detector.model.kind"),
            Some(Shape::Choice(_))
        ));
    }

    /// `alert.max_event_age_secs` is checked like the rule's own keys.
    #[test]
    fn the_event_age_limit_is_checked_beside_the_rule() {
        let (c, p) = layered("[alert]\nmax_event_age_secs = 60\nthreshold = 0.7\n", &[]);
        assert!(p.is_empty(), "{p:#?}");
        assert_eq!((c.alert.max_event_age_secs, c.alert.threshold), (60, 0.7));
        let (c, p) = layered(
            "[alert]\nmax_event_age_secs = \"60\"\nmax_event_age = 1\n",
            &[("ANOMALYD__HISTORY__LOOKBACK_SECS", "a week")],
        );
        assert_eq!(p.len(), 3, "{p:#?}");
        let find = |key: &str| {
            p.iter()
                .find(|x| x.starts_with(&format!("{key}: ")))
                .unwrap_or_else(|| panic!("no problem at {key}: {p:#?}"))
        };
        assert!(
            find("alert.max_event_age").contains("unknown key; did you mean `max_event_age_secs`?")
        );
        assert!(find("alert.max_event_age_secs").contains(
            "must be a whole number ≥ 0, not the string \"60\"; write 60 without quotes"
        ));
        assert!(
            find("history.lookback_secs").contains("(set by ANOMALYD__HISTORY__LOOKBACK_SECS)")
        );
        assert_eq!(c.alert, Config::default().alert);
    }

    /// Three structural mistakes, three problems, each at its full key;
    /// the rest of the file still counts.
    #[test]
    fn every_structural_mistake_is_reported_at_once() {
        let (c, p) = layered(
            "[kafka]\ngroup = \"g\"\nclient_id = \"mine\"\n[alert]\nthreshold = \"0.7\"\n\
             [detector.model]\nkind = \"lineer\"\n",
            &[],
        );
        assert_eq!(p.len(), 3, "{p:#?}");
        assert!(
            p[0].starts_with("kafka.group: unknown key; did you mean `group_id`?"),
            "{p:#?}"
        );
        assert!(
            p[1].starts_with("alert.threshold: must be a number, not the string \"0.7\""),
            "{p:#?}"
        );
        assert!(
            p[2].starts_with("detector.model.kind: `lineer` is not a valid choice"),
            "{p:#?}"
        );
        assert_eq!(c.kafka.client_id, "mine");
        assert_eq!(c.alert.threshold, Config::default().alert.threshold);
    }

    /// Removed keys are not offered as valid; their own message says
    /// what replaced them.
    #[test]
    fn removed_keys_are_never_listed_as_valid() {
        let (c, p) = layered("[detector.threshold]\nquantil = 0.9\n", &[]);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(p[0].contains("did you mean `quantile`?"), "{p:#?}");
        for removed in ["smoothing_events", "inflation_events", "range_novelty"] {
            assert!(!p[0].contains(removed), "{p:#?}");
        }
        let (c2, p2) = layered("[detector.threshold]\nrange_novelty = true\n", &[]);
        assert!(p2.is_empty(), "{p2:#?}");
        let v = c2.validate().unwrap_err().to_string();
        assert!(
            v.contains("detector.threshold.range_novelty: was removed"),
            "{v}"
        );
        assert_eq!(c, Config::default());
    }

    /// Environment values take the type of their key: strings stay as
    /// written, numbers parse, lists split.
    #[test]
    fn environment_strings_stay_strings() {
        let (c, p) = layered(
            "",
            &[
                ("ANOMALYD__KAFKA__GROUP_ID", "007"),
                ("ANOMALYD__KAFKA__CLIENT_ID", "1e3"),
                ("ANOMALYD__KAFKA__TOPICS", "a, 007"),
                ("ANOMALYD__PIPELINE__WORKERS", "4"),
                ("ANOMALYD__ALERT__THRESHOLD", "1e-1"),
                ("ANOMALYD__UI__ENABLED", "FALSE"),
                ("ANOMALYD__KAFKA__OPTIONS__CLIENT_RACK", "042"),
                ("ANOMALYD_CONFIG", "/not/a/layer"),
            ],
        );
        assert!(p.is_empty(), "{p:#?}");
        assert_eq!(c.kafka.group_id, "007");
        assert_eq!(c.kafka.client_id, "1e3");
        assert_eq!(c.kafka.topics, ["a", "007"]);
        assert_eq!(c.pipeline.workers, 4);
        assert_eq!(c.alert.threshold, 0.1);
        assert!(!c.ui.enabled);
        assert_eq!(c.kafka.options["client_rack"], "042");
    }

    /// Later layers win key by key: a table merges (the file's options
    /// and a variable's), a value or a list is replaced; what neither
    /// sets keeps its default.
    #[test]
    fn the_layers_merge_defaults_then_file_then_environment() {
        let (c, p) = layered(
            "[kafka]\ngroup_id = \"from-file\"\ntopics = [\"a\", \"b\"]\nclient_id = \"file\"\n\
             options = { \"fetch.max.bytes\" = \"1024\" }\n[pipeline]\nworkers = 2\n",
            &[
                ("ANOMALYD__KAFKA__GROUP_ID", "from-env"),
                ("ANOMALYD__KAFKA__TOPICS", "c"),
                ("ANOMALYD__KAFKA__OPTIONS__CLIENT_RACK", "r1"),
                ("ANOMALYD__PIPELINE__WORKERS", " 3 "),
                ("ANOMALYD__ALERT__MAX_EVENT_AGE_SECS", "60"),
                ("ANOMALYD__HISTORY__DROP_LABELS", ""),
            ],
        );
        assert!(p.is_empty(), "{p:#?}");
        assert_eq!(c.kafka.group_id, "from-env");
        assert_eq!(c.kafka.topics, ["c"]);
        assert_eq!(c.kafka.client_id, "file");
        assert_eq!(c.kafka.options["fetch.max.bytes"], "1024");
        assert_eq!(c.kafka.options["client_rack"], "r1");
        assert_eq!(c.pipeline.workers, 3);
        assert_eq!(c.alert.max_event_age_secs, 60);
        assert!(c.history.drop_labels.is_empty());
        let d = Config::default();
        assert_eq!(
            (&c.state, &c.ui, &c.detector),
            (&d.state, &d.ui, &d.detector)
        );
        assert_eq!(c.alert.threshold, d.alert.threshold);
    }

    #[test]
    fn environment_mistakes_name_the_variable() {
        let (c, p) = layered(
            "[pipeline]\nworkers = 2\n",
            &[
                ("ANOMALYD__PIPELINE__WORKERS", "many"),
                ("ANOMALYD__PIPELINE__MAX_SERIES", "-5"),
                ("ANOMALYD__KAFKA__GROUPID", "g"),
                ("ANOMALYD__KAFKA__BROKERS__HOST", "h"),
                ("ANOMALYD__KAFKA", "x"),
                ("ANOMALYD____X", "x"),
            ],
        );
        let find = |key: &str| {
            p.iter()
                .find(|x| x.starts_with(&format!("{key}: ")))
                .unwrap_or_else(|| panic!("no problem at {key}: {p:#?}"))
        };
        assert_eq!(p.len(), 6, "{p:#?}");
        assert!(find("pipeline.workers").contains(
            "must be a whole number ≥ 0, not `many` (set by ANOMALYD__PIPELINE__WORKERS)"
        ));
        assert!(find("pipeline.max_series").contains("(set by ANOMALYD__PIPELINE__MAX_SERIES)"));
        assert!(find("kafka.groupid").contains("did you mean `group_id`? the keys of [kafka] are"));
        assert!(find("kafka.groupid").contains("(set by ANOMALYD__KAFKA__GROUPID)"));
        assert!(find("kafka.brokers.host").contains("`kafka.brokers` is a value, not a section"));
        assert!(find("kafka").contains("is a section"));
        assert!(find("ANOMALYD____X").contains("names no key"));
        // The file's value stands where the variable was refused.
        assert_eq!(c.pipeline.workers, 2);
    }

    #[test]
    fn listeners_and_stream_names_that_would_collide_are_refused() {
        let (c, p) = layered(
            "[kafka]\ntopics = [\"metrics\", \"remote_write\"]\n\
             [sources.remote_write]\nenabled = true\nlisten_addr = \"0.0.0.0:9898\"\n",
            &[],
        );
        assert!(p.is_empty(), "{p:#?}");
        let v = c.validate().unwrap_err().to_string();
        assert!(
            v.contains(
                "sources.remote_write.listen_addr: `0.0.0.0:9898` is where metrics.listen_addr"
            ),
            "{v}"
        );
        assert!(v.contains("kafka.topics: the topic `remote_write`"), "{v}");
        // Port 0 picks a free port: no clash.
        assert!(!same_listener(
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap()
        ));
        assert!(!same_listener(
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.2:1".parse().unwrap()
        ));
    }

    /// The front door's keys pass the strict schema from the file and
    /// from the environment, each with its own type; mistakes are
    /// reported at their full keys.
    #[test]
    fn the_front_door_keys_layer_like_any_other() {
        let (c, p) = layered(
            "[metrics]\nweb_config_file = \"/etc/anomalyd/web.yml\"\nmax_connections = 8\n\
             [sources.remote_write]\nlabel_limit = 16\nmax_sample_age_secs = 0\n",
            &[
                (
                    "ANOMALYD__SOURCES__REMOTE_WRITE__WEB_CONFIG_FILE",
                    "007.yml",
                ),
                ("ANOMALYD__SOURCES__REMOTE_WRITE__READ_TIMEOUT_SECS", "5"),
                ("ANOMALYD__METRICS__IDLE_TIMEOUT_SECS", "60"),
            ],
        );
        assert!(p.is_empty(), "{p:#?}");
        assert_eq!(
            c.metrics.web_config_file.as_deref(),
            Some(Path::new("/etc/anomalyd/web.yml"))
        );
        assert_eq!(
            (c.metrics.max_connections, c.metrics.idle_timeout_secs),
            (8, 60)
        );
        let rw = &c.sources.remote_write;
        assert_eq!(rw.web_config_file.as_deref(), Some(Path::new("007.yml")));
        assert_eq!(
            (rw.label_limit, rw.max_sample_age_secs, rw.read_timeout_secs),
            (16, 0, 5)
        );
        let (_, p) = layered(
            "[sources.remote_write]\nlabel_limit = \"16\"\nmax_conections = 3\n",
            &[("ANOMALYD__METRICS__MAX_CONNECTIONS", "many")],
        );
        let keys: Vec<&str> = p.iter().map(|l| l.split(':').next().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "sources.remote_write.label_limit",
                "sources.remote_write.max_conections",
                "metrics.max_connections"
            ],
            "{p:#?}"
        );
    }

    /// The changelog store is a topic of `[kafka]`: without it, one problem
    /// at `state.store` (and no Kafka secrets read for it).
    #[test]
    fn the_changelog_store_needs_kafka() {
        let (c, p) = layered(
            "[kafka]\nenabled = false\n[sources.remote_write]\nenabled = true\n\
             [state]\nstore = \"changelog\"\n",
            &[],
        );
        assert!(p.is_empty(), "{p:#?}");
        let v = c.validate().unwrap_err();
        let keys: Vec<&str> = v.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["state.store"], "{v}");
        assert!(v.to_string().contains("kafka.enabled = false"), "{v}");
        let (mut c, _) = layered("[state]\nstore = \"changelog\"\n", &[]);
        assert!(c.validate().is_ok());
        c.kafka.secret_env = [("sasl.password".to_owned(), "NO_SUCH_VAR".to_owned())].into();
        assert_eq!(c.check_secrets(&|_| None).len(), 1);
        c.kafka.enabled = false;
        assert!(c.check_secrets(&|_| None).is_empty());
    }

    /// A port's `web_config_file` is read with the secrets, at its own key;
    /// the receiver's only when the receiver runs.
    #[test]
    fn web_config_files_are_read_with_the_secrets() {
        let (mut c, p) = layered(
            "[metrics]\nweb_config_file = \"/nonexistent/web.yml\"\n\
             [sources.remote_write]\nweb_config_file = \"/nonexistent/rw.yml\"\n",
            &[],
        );
        assert!(p.is_empty(), "{p:#?}");
        assert!(c.validate().is_ok(), "reading files is not validation");
        let keys = |c: &Config| -> Vec<String> {
            c.check_secrets(&|_| None)
                .iter()
                .map(|p| p.key.clone())
                .collect()
        };
        assert_eq!(keys(&c), ["metrics.web_config_file"]);
        c.sources.remote_write.enabled = true;
        assert_eq!(
            keys(&c),
            [
                "metrics.web_config_file",
                "sources.remote_write.web_config_file"
            ]
        );
    }

    #[test]
    fn the_default_config_prints_and_reads_back_as_itself() {
        let printed = Config::default().to_toml().unwrap();
        assert_eq!(Config::from_toml_str(&printed).unwrap(), Config::default());
    }
}
