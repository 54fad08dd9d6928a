//! Secrets and librdkafka pass-through options, shared by every client.
//!
//! This module owns the rules that keep secrets out of config files and
//! out of every print: [`Secret`] (a string whose `Debug` is redacted),
//! [`read_secret`] (from an environment variable or a file), and the
//! pass-through librdkafka options that the Kafka source, the Kafka alert
//! sink and the state changelog all accept in the same shape:
//!
//! ```toml
//! options = { "security.protocol" = "SASL_SSL", "sasl.mechanism" = "PLAIN" }
//! secret_env = { "sasl.password" = "KAFKA_PASSWORD" }       # option → variable
//! secret_files = { "ssl.key.password" = "/run/secrets/kp" } # option → file
//! ```
//!
//! Values of secret-looking options are redacted whenever a config is
//! printed, and scrubbed from librdkafka's error messages.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Serialize, Serializer};

use super::Problems;

/// Shown instead of a secret value.
pub const REDACTED: &str = "<redacted>";

/// A secret value. `Debug` prints `Secret(<redacted>)`; there is no
/// `Display` and no `Serialize`, so it cannot end up in a log or a config
/// dump by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A secret that could not be read. The value itself is never part of it.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The environment variable is unset or empty.
    #[error(
        "{key}: environment variable `{var}` is not set or empty; export it or use the *_file option"
    )]
    Env {
        /// The config key that names the variable.
        key: String,
        /// The variable.
        var: String,
    },
    /// The file cannot be read.
    #[error("{key}: cannot read secret file `{path}`: {source}")]
    File {
        /// The config key that names the file.
        key: String,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is empty.
    #[error("{key}: the secret file is empty")]
    Empty {
        /// The config key of the secret.
        key: String,
    },
}

impl SecretError {
    /// The config key that names the secret.
    pub fn key(&self) -> &str {
        match self {
            Self::Env { key, .. } | Self::File { key, .. } | Self::Empty { key } => key,
        }
    }

    /// What is wrong, without the key.
    pub fn reason(&self) -> String {
        let text = self.to_string();
        text.strip_prefix(&format!("{}: ", self.key()))
            .map_or(text.clone(), str::to_owned)
    }
}

/// Reads a secret from environment variable `env_var` (looked up through
/// `env`) or from `file` (trailing whitespace trimmed). `key` is the config
/// key naming the source, for error messages. `Ok(None)` when neither is
/// given.
pub fn read_secret(
    key: &str,
    env_var: Option<&str>,
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, SecretError> {
    if let Some(var) = env_var {
        return match env(var) {
            Some(v) if !v.is_empty() => Ok(Some(Secret(v))),
            _ => Err(SecretError::Env {
                key: key.to_owned(),
                var: var.to_owned(),
            }),
        };
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| SecretError::File {
            key: key.to_owned(),
            path: path.display().to_string(),
            source,
        })?;
        let value = text.trim_end().to_owned();
        if value.is_empty() {
            return Err(SecretError::Empty {
                key: key.to_owned(),
            });
        }
        return Ok(Some(Secret(value)));
    }
    Ok(None)
}

/// True for librdkafka options whose value is a secret.
pub fn is_secret_option(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password")
        || k.contains("secret")
        || k.ends_with("key.pem")
        || k == "ssl_key"
        || k == "sasl.oauthbearer.config"
}

/// The options with secret values replaced by [`REDACTED`].
pub fn redacted(options: &BTreeMap<String, String>) -> BTreeMap<&str, &str> {
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

/// `serialize_with` for an options map: serialises it redacted, so a
/// printed config never shows a secret.
pub fn serialize_redacted<S: Serializer>(
    options: &BTreeMap<String, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    redacted(options).serialize(s)
}

/// The pass-through options of one Kafka client, borrowed from its config
/// section.
#[derive(Debug, Clone, Copy)]
pub struct ClientOptions<'a> {
    /// Plain options.
    pub options: &'a BTreeMap<String, String>,
    /// Option → environment variable.
    pub secret_env: &'a BTreeMap<String, String>,
    /// Option → file.
    pub secret_files: &'a BTreeMap<String, PathBuf>,
}

/// Options resolved to values, and the secrets among them (to scrub error
/// messages).
#[derive(Default)]
pub struct ResolvedOptions {
    /// `(option, value)` in the order to apply them.
    pub pairs: Vec<(String, String)>,
    secrets: Vec<String>,
}

impl fmt::Debug for ResolvedOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: Vec<(&str, &str)> = self
            .pairs
            .iter()
            .map(|(k, v)| {
                let secret = is_secret_option(k) || self.secrets.contains(v);
                (k.as_str(), if secret { REDACTED } else { v.as_str() })
            })
            .collect();
        f.debug_struct("ResolvedOptions")
            .field("pairs", &shown)
            .finish()
    }
}

impl ResolvedOptions {
    /// `msg` with every secret value replaced by [`REDACTED`] (librdkafka
    /// may quote a rejected value in its error).
    pub fn scrub(&self, msg: &str) -> String {
        let mut out = msg.to_owned();
        for s in self.secrets.iter().filter(|s| !s.is_empty()) {
            out = out.replace(s.as_str(), REDACTED);
        }
        out
    }
}

impl ClientOptions<'_> {
    /// Records every problem under `prefix`. `managed` lists options the
    /// daemon sets itself, with the key to use instead (`None`: not
    /// settable at all).
    pub fn validate(
        &self,
        prefix: &str,
        managed: &[(&str, Option<&str>)],
        problems: &mut Problems,
    ) {
        let keys = self
            .options
            .keys()
            .chain(self.secret_env.keys())
            .chain(self.secret_files.keys());
        for k in keys {
            if let Some((_, instead)) = managed.iter().find(|(m, _)| m == k) {
                let fix = match instead {
                    Some(key) => format!("set it with `{prefix}.{key}` instead"),
                    None => "anomalyd manages it (delivery depends on it); remove it".to_owned(),
                };
                problems.push(format!("{prefix}.options.\"{k}\""), fix);
            }
        }
        // librdkafka refuses unknown properties and bad values when the
        // client is made; say so now. Secrets are checked by name only
        // (their values are read at start, see `check_secrets`).
        for (k, v) in self.options {
            if let Some(why) = librdkafka_refuses(k, v, false) {
                problems.push(format!("{prefix}.options.\"{k}\""), why);
            }
        }
        for (section, k) in self
            .secret_env
            .keys()
            .map(|k| ("secret_env", k))
            .chain(self.secret_files.keys().map(|k| ("secret_files", k)))
        {
            if let Some(why) = librdkafka_refuses(k, "", true) {
                problems.push(format!("{prefix}.{section}.\"{k}\""), why);
            }
        }
        for (k, var) in self.secret_env {
            problems.check(
                !var.is_empty(),
                format!("{prefix}.secret_env.\"{k}\""),
                "names no environment variable",
            );
            problems.check(
                !self.options.contains_key(k) && !self.secret_files.contains_key(k),
                format!("{prefix}.secret_env.\"{k}\""),
                "is also set in options or secret_files; keep one",
            );
        }
        for k in self.secret_files.keys() {
            problems.check(
                !self.options.contains_key(k),
                format!("{prefix}.secret_files.\"{k}\""),
                "is also set in options; keep one",
            );
        }
    }

    /// Reads every secret (and drops it): each unset variable, missing or
    /// empty file is a problem at its key (`prefix` is the section).
    pub fn check_secrets(
        &self,
        prefix: &str,
        env: &dyn Fn(&str) -> Option<String>,
        problems: &mut Problems,
    ) {
        for (k, var) in self.secret_env {
            let key = format!("{prefix}.secret_env.\"{k}\"");
            if let Err(e) = read_secret(&key, Some(var), None, env) {
                problems.push(e.key(), e.reason());
            }
        }
        for (k, path) in self.secret_files {
            let key = format!("{prefix}.secret_files.\"{k}\"");
            if let Err(e) = read_secret(&key, None, Some(path), env) {
                problems.push(e.key(), e.reason());
            }
        }
    }

    /// Reads the secrets and returns every option with its value.
    pub fn resolve(
        &self,
        prefix: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ResolvedOptions, SecretError> {
        let mut r = ResolvedOptions::default();
        for (k, v) in self.options {
            if is_secret_option(k) {
                r.secrets.push(v.clone());
            }
            r.pairs.push((k.clone(), v.clone()));
        }
        for (k, var) in self.secret_env {
            let key = format!("{prefix}.secret_env.\"{k}\"");
            if let Some(s) = read_secret(&key, Some(var), None, env)? {
                r.secrets.push(s.expose().to_owned());
                r.pairs.push((k.clone(), s.0));
            }
        }
        for (k, path) in self.secret_files {
            let key = format!("{prefix}.secret_files.\"{k}\"");
            if let Some(s) = read_secret(&key, None, Some(path), env)? {
                r.secrets.push(s.expose().to_owned());
                r.pairs.push((k.clone(), s.0));
            }
        }
        Ok(r)
    }
}

/// Why librdkafka would refuse property `key` set to `value`, if it
/// would (checked on a bare configuration: no client is made, nothing
/// connects). With `name_only`, only an unknown name counts. A secret's
/// value never appears in the answer.
fn librdkafka_refuses(key: &str, value: &str, name_only: bool) -> Option<String> {
    use rdkafka::config::ClientConfig;
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaConfRes;
    let mut c = ClientConfig::new();
    c.set(key, value);
    let err = c.create_native_config().err()?;
    let (unknown, text) = match &err {
        KafkaError::ClientConfig(res, description, _, _) => (
            *res == RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN,
            description.clone(),
        ),
        other => (false, other.to_string()),
    };
    if name_only && !unknown {
        return None;
    }
    let text = if is_secret_option(key) && !value.is_empty() {
        text.replace(value, REDACTED)
    } else {
        text
    };
    Some(if unknown {
        format!(
            "librdkafka has no such property ({text}); see its CONFIGURATION.md for the \
             names, e.g. \"fetch.max.bytes\""
        )
    } else {
        format!("librdkafka refuses this value ({text})")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn options_resolve_from_env_and_files_and_scrub_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let options = BTreeMap::from([
            ("security.protocol".to_string(), "SASL_SSL".to_string()),
            ("sasl.password".to_string(), "inline-pw".to_string()),
        ]);
        let secret_env = BTreeMap::from([("sasl.username".to_string(), "USER".to_string())]);
        let secret_files = BTreeMap::from([("ssl.key.password".to_string(), file)]);
        let o = ClientOptions {
            options: &options,
            secret_env: &secret_env,
            secret_files: &secret_files,
        };
        let env = |k: &str| (k == "USER").then(|| "alice-secret-user".to_owned());
        let r = o.resolve("kafka", &env).unwrap();
        assert!(
            r.pairs
                .contains(&("ssl.key.password".into(), "from-file".into()))
        );
        assert!(
            r.pairs
                .contains(&("sasl.username".into(), "alice-secret-user".into()))
        );
        let dbg = format!("{r:?}");
        for s in ["inline-pw", "from-file", "alice-secret-user"] {
            assert!(!dbg.contains(s), "{s} in {dbg}");
            assert!(!r.scrub(&format!("bad value {s}")).contains(s));
        }
        assert!(dbg.contains("SASL_SSL"));
        assert_eq!(redacted(&options)["sasl.password"], REDACTED);

        let none = |_: &str| None;
        let err = o.resolve("kafka", &none).unwrap_err().to_string();
        assert!(
            err.contains("kafka.secret_env.\"sasl.username\"") && err.contains("USER"),
            "{err}"
        );
    }

    #[test]
    fn validate_names_managed_and_duplicate_options() {
        let options = BTreeMap::from([
            ("enable.auto.commit".to_string(), "true".to_string()),
            ("bootstrap.servers".to_string(), "x".to_string()),
            ("sasl.password".to_string(), "x".to_string()),
        ]);
        let secret_env = BTreeMap::from([("sasl.password".to_string(), "PW".to_string())]);
        let o = ClientOptions {
            options: &options,
            secret_env: &secret_env,
            secret_files: &BTreeMap::new(),
        };
        let mut p = Problems::new();
        o.validate(
            "kafka",
            &[
                ("enable.auto.commit", None),
                ("bootstrap.servers", Some("brokers")),
            ],
            &mut p,
        );
        let text = p.to_string();
        assert!(
            text.contains("kafka.options.\"enable.auto.commit\": anomalyd manages it"),
            "{text}"
        );
        assert!(
            text.contains(
                "kafka.options.\"bootstrap.servers\": set it with `kafka.brokers` instead"
            ),
            "{text}"
        );
        assert!(
            text.contains("kafka.secret_env.\"sasl.password\": is also set"),
            "{text}"
        );
    }

    #[test]
    fn librdkafka_names_and_values_are_checked_without_a_client() {
        let options = BTreeMap::from([
            ("fetch.max.bytes".to_string(), "1048576".to_string()),
            ("fetch_max_bytes".to_string(), "1".to_string()),
            ("queued.min.messages".to_string(), "lots".to_string()),
            ("ssl.key.password".to_string(), "s3cr3t-value".to_string()),
        ]);
        let secret_env = BTreeMap::from([
            ("sasl.password".to_string(), "PW".to_string()),
            ("sasl.pasword".to_string(), "PW2".to_string()),
        ]);
        let o = ClientOptions {
            options: &options,
            secret_env: &secret_env,
            secret_files: &BTreeMap::new(),
        };
        let mut p = Problems::new();
        o.validate("kafka", &[], &mut p);
        let keys: Vec<&str> = p.iter().map(|x| x.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "kafka.options.\"fetch_max_bytes\"",
                "kafka.options.\"queued.min.messages\"",
                "kafka.secret_env.\"sasl.pasword\""
            ],
            "{p}"
        );
        assert!(p.to_string().contains("no such property"), "{p}");
        assert!(!p.to_string().contains("s3cr3t"), "{p}");
    }

    #[test]
    fn every_unreadable_secret_is_a_problem_at_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let secret_env = BTreeMap::from([("sasl.password".to_string(), "UNSET".to_string())]);
        let secret_files = BTreeMap::from([
            ("ssl.key.password".to_string(), dir.path().join("missing")),
            ("sasl.username".to_string(), empty),
        ]);
        let o = ClientOptions {
            options: &BTreeMap::new(),
            secret_env: &secret_env,
            secret_files: &secret_files,
        };
        let mut p = Problems::new();
        o.check_secrets("sinks.kafka", &|_| None, &mut p);
        let got: Vec<String> = p.iter().map(ToString::to_string).collect();
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(
            got[0].starts_with(
                "sinks.kafka.secret_env.\"sasl.password\": environment variable `UNSET`"
            ),
            "{got:?}"
        );
        assert!(
            got.iter().any(
                |g| g.starts_with("sinks.kafka.secret_files.\"ssl.key.password\": cannot read")
            ),
            "{got:?}"
        );
        assert!(
            got.iter().any(|g| g.starts_with(
                "sinks.kafka.secret_files.\"sasl.username\": the secret file is empty"
            )),
            "{got:?}"
        );
    }
}
