//! Telemetry: logs, metrics and the operational HTTP endpoint.
//!
//! This module owns how the daemon reports on itself: [`init`] installs the
//! `tracing` subscriber ([`LogConfig`]), [`metrics`] holds the
//! [`metrics::Metrics`] struct of typed Prometheus handles over an injected
//! registry, and [`http`] serves `/metrics`, `/healthz` and `/readyz`
//! through [`web`], the HTTP front door (TLS, auth, timeouts, connection
//! cap) that the remote-write receiver's port shares. It also provides
//! [`RateLimit`], the gate for noisy warnings. What is measured
//! and when is decided by the code that does the work; this module only
//! offers the handles.

pub mod http;
pub mod metrics;
pub mod series;
pub mod web;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

use crate::config::Problems;

/// The levels a filter may name, least verbose first.
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines (`tracing`'s default formatter).
    #[default]
    Text,
    /// One JSON object per line, event fields flattened into the object, for
    /// log shippers.
    Json,
}

/// The `[log]` section: where the daemon's own log lines go and how verbose
/// they are. Logs are written to standard error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter: a level (`error`, `warn`, `info`, `debug`,
    /// `trace`) or directives such as `info,anomalyd::alert=debug`. The
    /// `RUST_LOG` environment variable, when set and not empty, replaces it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

impl LogConfig {
    /// Records every problem under `prefix` (e.g. `log`). A bare word must
    /// be a level: `tracing` would read `warning` as the name of a target
    /// and silence every line, errors included.
    pub fn validate(&self, prefix: &str, problems: &mut Problems) {
        for directive in self.level.split(',').map(str::trim) {
            if !directive.is_empty()
                && !directive.contains(['=', '[', ':'])
                && !LEVELS.contains(&directive.to_ascii_lowercase().as_str())
            {
                problems.push(
                    format!("{prefix}.level"),
                    format!(
                        "`{directive}` is not a level; write one of {}, or target=level \
                         directives such as `info,anomalyd=debug`",
                        LEVELS.map(|l| format!("`{l}`")).join(", ")
                    ),
                );
                return;
            }
        }
        if let Err(e) = EnvFilter::try_new(&self.level) {
            problems.push(
                format!("{prefix}.level"),
                format!(
                    "`{}` is not a valid log filter ({e}); use a level such as `info` or directives such as `info,anomalyd=debug`",
                    self.level
                ),
            );
        }
    }
}

/// Errors from [`init`].
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The filter from `RUST_LOG` or `log.level` does not parse.
    #[error("invalid log filter `{filter}` (from {source_name}): {message}")]
    Filter {
        /// The filter text.
        filter: String,
        /// Where it came from: `RUST_LOG` or `log.level`.
        source_name: &'static str,
        /// The parser's complaint.
        message: String,
    },
    /// A global subscriber was already installed (init called twice).
    #[error("a tracing subscriber is already installed: {0}")]
    AlreadyInstalled(String),
}

/// Builds the filter: `RUST_LOG` (when set and not empty) wins over
/// `config.level`, so an operator can turn up verbosity without editing the
/// file.
pub fn build_filter(
    config: &LogConfig,
    rust_log: Option<&str>,
) -> Result<EnvFilter, TelemetryError> {
    let (filter, source_name) = match rust_log {
        Some(s) if !s.trim().is_empty() => (s, "RUST_LOG"),
        _ => (config.level.as_str(), "log.level"),
    };
    EnvFilter::try_new(filter).map_err(|e| TelemetryError::Filter {
        filter: filter.to_owned(),
        source_name,
        message: e.to_string(),
    })
}

/// Installs the global `tracing` subscriber, writing to standard error in
/// the configured format. Call once, early in `main`.
pub fn init(config: &LogConfig) -> Result<(), TelemetryError> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = build_filter(config, rust_log.as_deref())?;
    // Colours only on a terminal: journald, container logs and files would
    // otherwise get escape codes around every level and field name.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let result = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| TelemetryError::AlreadyInstalled(e.to_string()))
}

/// Lets one warning through per interval and counts the ones held back, so
/// a flood of identical failures costs one log line per interval instead of
/// one per occurrence.
#[derive(Debug)]
pub struct RateLimit {
    /// Minimum time between two lines.
    interval: Duration,
    /// When the last line went out, and how many were held back since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl RateLimit {
    /// A limiter that allows one line per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(n)` when a line may be written now, `n` being how many were
    /// suppressed since the last one; `None` when this one must be skipped.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now(), 1)
    }

    /// [`RateLimit::allow`] for a line that stands for `n` occurrences
    /// (held back, all `n` are counted).
    pub fn allow_n(&self, n: u64) -> Option<u64> {
        self.allow_at(Instant::now(), n)
    }

    /// [`RateLimit::allow_n`] at a given instant (for tests).
    pub fn allow_at(&self, now: Instant, n: u64) -> Option<u64> {
        // A poisoned lock only means another thread panicked mid-update of
        // two plain numbers; the values are still usable.
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match st.0 {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                st.1 += n;
                None
            }
            _ => {
                let suppressed = st.1;
                *st = (Some(now), 0);
                Some(suppressed)
            }
        }
    }
}

impl Default for RateLimit {
    /// One line per 10 seconds.
    fn default() -> Self {
        Self::new(Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_wins_over_config_and_bad_filters_name_their_source() {
        let cfg = LogConfig::default();
        let f = build_filter(&cfg, Some("debug")).unwrap();
        assert_eq!(f.to_string(), "debug");
        let f = build_filter(&cfg, Some("  ")).unwrap();
        assert_eq!(f.to_string(), "info");
        let bad = LogConfig {
            level: "info,=[".to_owned(),
            ..LogConfig::default()
        };
        let err = build_filter(&bad, None).unwrap_err().to_string();
        assert!(err.contains("log.level"), "{err}");
        let mut p = Problems::new();
        bad.validate("log", &mut p);
        assert_eq!(p.iter().next().unwrap().key, "log.level");
        let mut p = Problems::new();
        cfg.validate("log", &mut p);
        assert!(p.is_empty());
    }

    /// `warning` is a valid `tracing` filter (a target named so, at every
    /// level), which silences the daemon: refused, with the levels.
    #[test]
    fn a_bare_word_must_be_a_level() {
        for (level, ok) in [
            ("warning", false),
            ("info,warning", false),
            ("WARN", true),
            ("info,anomalyd::alert=debug", true),
            ("anomalyd=trace", true),
            ("off", true),
        ] {
            let mut p = Problems::new();
            LogConfig {
                level: level.to_owned(),
                ..LogConfig::default()
            }
            .validate("log", &mut p);
            assert_eq!(p.is_empty(), ok, "{level}: {p}");
            if !ok {
                assert!(
                    p.to_string()
                        .contains("`warning` is not a level; write one of `off`, `error`, `warn`"),
                    "{p}"
                );
            }
        }
    }

    #[test]
    fn log_config_parses_and_rejects_unknown_keys() {
        let c: LogConfig = from_json(r#"{"format":"json","level":"warn"}"#).unwrap();
        assert_eq!(c.format, LogFormat::Json);
        assert!(from_json::<LogConfig>(r#"{"formt":"json"}"#).is_err());
    }

    fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, serde_json::Error> {
        serde_json::from_str(s)
    }

    #[test]
    fn rate_limit_lets_one_line_per_interval_and_counts_the_rest() {
        let rl = RateLimit::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(rl.allow_at(t0, 1), Some(0));
        assert_eq!(rl.allow_at(t0 + Duration::from_secs(1), 1), None);
        assert_eq!(rl.allow_at(t0 + Duration::from_secs(9), 3), None);
        assert_eq!(rl.allow_at(t0 + Duration::from_secs(10), 1), Some(4));
        assert_eq!(rl.allow_at(t0 + Duration::from_secs(11), 1), None);
    }
}
