//! History for new series: learn a series' recent past from Prometheus
//! before its first live event is scored.
//!
//! A Prometheus that remote-writes to anomalyd (or that scrapes what a
//! Kafka producer sends) already holds days of every series. When
//! `[history]` is on and a shard sees a series it holds no state for (new,
//! evicted, or absent from the restored snapshot), it asks
//! [`Loader::request`] for that series' last `lookback_secs` (up to the
//! series' first live event, exclusive), holds the series' live events
//! meanwhile, learns the history through [`learn`], then processes the
//! held events in order. A series whose history covers the warm-up is
//! scored from its first live event on.
//!
//! This module owns:
//! - [`HistoryConfig`] (`[history]`) and its validation;
//! - [`learn`], the one function that teaches a series its history: each
//!   point goes through the series' value rule ([`crate::counter`]: a
//!   counter's points become rates) and [`Detector::observe`], the very
//!   per-event function of the daemon, with the decision thrown away: no
//!   alert lifecycle, no sink, nothing on the page. `anomalyd warm`
//!   ([`crate::warm`]) calls it too;
//! - the Prometheus HTTP API client ([`prometheus::PrometheusClient`]):
//!   `/api/v1/query_range` in chunks under Prometheus' 11,000-points
//!   limit, at `step_secs` or the series' own interval (read from its raw
//!   samples of the last hour), exact label match;
//! - the [`Loader`]: at most `max_concurrent_queries` series queried at
//!   once, a series given up after `max_wait_secs` (it then warms up live),
//!   cancelled at shutdown, every outcome counted and logged
//!   (rate-limited).
//!
//! The shard side (holding live events, applying a loaded history,
//! barriers that wait for histories in flight) is
//! [`crate::pipeline::worker`]'s.
//!
//! **Remote-write labels.** Prometheus adds its `external_labels` to what
//! it remote-writes, but its own queries do not see them. The labels in
//! `drop_labels` are left out of the query's selector (and of the exact
//! match on the answer), so `node_load1{instance="a",replica="r1"}` as
//! received is looked up as `node_load1{instance="a"}`. The list is
//! explicit rather than read from the sender's `/api/v1/status/config`:
//! the Prometheus that is queried need not be the one that sends (a Thanos
//! or a central Prometheus), and a label list in the config is what an
//! operator can review.

mod loader;
pub mod prometheus;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use loader::{HistoryMetrics, Loaded, Loader, Outcome, Reply};

use crate::config::Problems;
use crate::config::secret::{Secret, SecretError, read_secret};
use crate::counter::{SeriesValue, Step};
use crate::detector::{Detector, DetectorState, Skipped};

/// Default `lookback_secs`: 7 days, a week of daily cycles.
pub const DEFAULT_LOOKBACK_SECS: u64 = 7 * 86_400;

/// Points per `query_range` call: below Prometheus' limit of 11,000 per
/// series.
pub const POINTS_PER_QUERY: i64 = 10_000;

/// `[history]`: where a new series' past comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// Load the history of every new series from `prometheus_url`.
    pub enabled: bool,
    /// Base URL of the Prometheus (or compatible API: Thanos, Mimir's
    /// Prometheus API) that holds the series, e.g. `http://127.0.0.1:9090`.
    pub prometheus_url: String,
    /// How far back to learn (seconds). 7 days by default; the default
    /// warm-up needs one day and 100 points.
    pub lookback_secs: u64,
    /// Resolution of the history (seconds). Unset (default): the series'
    /// own interval, read from its raw samples of the last hour (a series
    /// with fewer than two samples there gets no history unless this is
    /// set).
    pub step_secs: Option<u64>,
    /// Series whose history is queried at the same time.
    pub max_concurrent_queries: usize,
    /// Time limit of one HTTP query (seconds).
    pub query_timeout_secs: u64,
    /// How long a new series waits for its history, from its first event
    /// (waiting for a free query slot included): then it warms up live.
    /// Checkpoints (offset commits, snapshots) wait for histories in
    /// flight, so this also bounds how long one can be delayed.
    pub max_wait_secs: u64,
    /// Live events of one series held while its history loads; one more
    /// and the series stops waiting (warms up live), so memory stays
    /// bounded.
    pub max_held_events: usize,
    /// Labels to leave out of the query: the `external_labels` of the
    /// Prometheus that remote-writes (it adds them to what it sends, its
    /// own queries do not see them), e.g. `["replica", "cluster"]`.
    pub drop_labels: Vec<String>,
    /// Optional credentials for the Prometheus API.
    pub auth: HistoryAuthConfig,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            prometheus_url: "http://127.0.0.1:9090".to_owned(),
            lookback_secs: DEFAULT_LOOKBACK_SECS,
            step_secs: None,
            max_concurrent_queries: 4,
            query_timeout_secs: 10,
            max_wait_secs: 60,
            max_held_events: 1000,
            drop_labels: Vec::new(),
            auth: HistoryAuthConfig::default(),
        }
    }
}

/// `[history.auth]`: HTTP basic auth or a bearer token, secrets from the
/// environment or a file (never the config file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryAuthConfig {
    /// Basic auth user name (then `password_env` or `password_file`).
    pub username: Option<String>,
    /// Environment variable holding the basic auth password.
    pub password_env: Option<String>,
    /// File holding the basic auth password (trailing newline ignored).
    pub password_file: Option<PathBuf>,
    /// Environment variable holding a bearer token.
    pub bearer_token_env: Option<String>,
    /// File holding a bearer token (trailing newline ignored), e.g. a
    /// mounted Kubernetes service account token.
    pub bearer_token_file: Option<PathBuf>,
}

/// Credentials, read.
#[derive(Debug, Clone, Default)]
pub enum Auth {
    /// None.
    #[default]
    None,
    /// HTTP basic auth.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: Secret,
    },
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
}

impl HistoryAuthConfig {
    /// Records every problem under `prefix` (e.g. `history.auth`).
    pub fn validate(&self, prefix: &str, problems: &mut Problems) {
        let basic = self.username.is_some();
        let password = self.password_env.is_some() || self.password_file.is_some();
        let bearer = self.bearer_token_env.is_some() || self.bearer_token_file.is_some();
        problems.check(
            !(self.password_env.is_some() && self.password_file.is_some()),
            format!("{prefix}.password_file"),
            "set either password_env or password_file, not both",
        );
        problems.check(
            !(self.bearer_token_env.is_some() && self.bearer_token_file.is_some()),
            format!("{prefix}.bearer_token_file"),
            "set either bearer_token_env or bearer_token_file, not both",
        );
        problems.check(
            basic == password,
            format!("{prefix}.username"),
            "basic auth needs both username and password_env (or password_file)",
        );
        problems.check(
            !(basic && bearer),
            format!("{prefix}.bearer_token_env"),
            "set either basic auth (username, password) or a bearer token, not both",
        );
        for (key, v) in [
            ("password_env", &self.password_env),
            ("bearer_token_env", &self.bearer_token_env),
            ("username", &self.username),
        ] {
            problems.check(
                v.as_deref() != Some(""),
                format!("{prefix}.{key}"),
                "is empty; set a value or remove the key",
            );
        }
    }

    /// Reads the secrets (`env` looks variables up).
    pub fn read(
        &self,
        prefix: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Auth, SecretError> {
        if let Some(username) = &self.username {
            let key = if self.password_env.is_some() {
                format!("{prefix}.password_env")
            } else {
                format!("{prefix}.password_file")
            };
            let password = read_secret(
                &key,
                self.password_env.as_deref(),
                self.password_file.as_deref(),
                env,
            )?
            .ok_or(SecretError::Empty { key })?;
            return Ok(Auth::Basic {
                username: username.clone(),
                password,
            });
        }
        let key = if self.bearer_token_env.is_some() {
            format!("{prefix}.bearer_token_env")
        } else {
            format!("{prefix}.bearer_token_file")
        };
        Ok(read_secret(
            &key,
            self.bearer_token_env.as_deref(),
            self.bearer_token_file.as_deref(),
            env,
        )?
        .map_or(Auth::None, Auth::Bearer))
    }
}

/// A valid Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl HistoryConfig {
    /// Records every problem under `prefix` (e.g. `history`). A disabled
    /// section is not checked (`anomalyd warm` checks it itself).
    pub fn validate(&self, prefix: &str, problems: &mut Problems) {
        if self.enabled {
            self.validate_always(prefix, problems);
        }
    }

    /// [`HistoryConfig::validate`], enabled or not.
    pub fn validate_always(&self, prefix: &str, problems: &mut Problems) {
        let key = |k: &str| format!("{prefix}.{k}");
        match reqwest::Url::parse(&self.prometheus_url) {
            Err(e) => problems.push(
                key("prometheus_url"),
                format!(
                    "`{}` is not a valid URL ({e}); write e.g. `http://127.0.0.1:9090`",
                    self.prometheus_url
                ),
            ),
            Ok(u) if u.scheme() != "http" && u.scheme() != "https" => problems.push(
                key("prometheus_url"),
                format!(
                    "scheme `{}` is not supported; use http:// or https://",
                    u.scheme()
                ),
            ),
            Ok(u) if u.password().is_some() || !u.username().is_empty() => problems.push(
                key("prometheus_url"),
                "must not contain credentials; use [history.auth] with a password or token \
                 from the environment or a file",
            ),
            Ok(_) => {}
        }
        problems.check(
            (60..=400 * 86_400).contains(&self.lookback_secs),
            key("lookback_secs"),
            format!(
                "{} is outside 60..=34560000 (400 days); the default is {DEFAULT_LOOKBACK_SECS} (7 days)",
                self.lookback_secs
            ),
        );
        if let Some(step) = self.step_secs {
            problems.check(
                (1..=86_400).contains(&step),
                key("step_secs"),
                format!("{step} is outside 1..=86400; remove it to use each series' own interval"),
            );
        }
        problems.check(
            (1..=64).contains(&self.max_concurrent_queries),
            key("max_concurrent_queries"),
            format!(
                "{} is outside 1..=64; Prometheus runs 20 queries at once by default",
                self.max_concurrent_queries
            ),
        );
        problems.check(
            (1..=300).contains(&self.query_timeout_secs),
            key("query_timeout_secs"),
            format!("{} is outside 1..=300", self.query_timeout_secs),
        );
        problems.check(
            (1..=3600).contains(&self.max_wait_secs),
            key("max_wait_secs"),
            format!(
                "{} is outside 1..=3600; checkpoints wait up to this long for histories in flight",
                self.max_wait_secs
            ),
        );
        problems.check(
            (1..=1_000_000).contains(&self.max_held_events),
            key("max_held_events"),
            format!("{} is outside 1..=1000000", self.max_held_events),
        );
        for l in &self.drop_labels {
            problems.check(
                is_label_name(l) && l != "__name__",
                key("drop_labels"),
                format!("`{l}` is not a label name that can be dropped"),
            );
        }
        self.auth.validate(&key("auth"), problems);
    }
}

/// What [`learn`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Learned {
    /// Points the model learned.
    pub points: u64,
    /// Points that gave no value (a counter's first point, its resets) or
    /// that the detector refused.
    pub skipped: u64,
}

/// Teaches a series its history: every point `(ts_ms, raw value)`, oldest
/// first, goes through the series' value rule (`value`, which moves on: a
/// counter's baseline is its last point) and [`Detector::observe`], the
/// daemon's per-event function. The decisions are thrown away: history
/// never reaches an alert lifecycle or a sink.
pub fn learn(
    detector: &Detector,
    state: &mut DetectorState,
    value: &mut SeriesValue,
    points: &[(i64, f64)],
) -> Learned {
    let mut out = Learned::default();
    for &(ts_ms, raw) in points {
        let Step::Value(v) = value.apply(ts_ms, raw) else {
            out.skipped += 1;
            continue;
        };
        match detector.observe(state, ts_ms, v) {
            Ok(_) => out.points += 1,
            Err(Skipped::IncompatibleState) => {
                *state = detector.new_state();
                out.skipped += 1;
            }
            Err(_) => out.skipped += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counter::Kind;
    use crate::detector::DetectorConfig;

    /// Learning a history and then scoring the next event gives exactly
    /// what the same events fed one by one through `observe` would: the
    /// same function, in the same order.
    #[test]
    fn learning_history_is_observing_each_point() {
        let d = Detector::new(&DetectorConfig::default(), 0.5).unwrap();
        let points: Vec<(i64, f64)> = (0..3000)
            .map(|i| (i * 60_000, 100.0 * i as f64 + (i % 7) as f64))
            .collect();
        let mut a = d.new_state();
        let mut va = SeriesValue::new(Kind::Rate);
        let learned = learn(&d, &mut a, &mut va, &points);
        assert_eq!(
            learned,
            Learned {
                points: 2999,
                skipped: 1
            }
        );
        let mut b = d.new_state();
        let mut prev = None;
        for &(ts, v) in &points {
            if let Some((pt, pv)) = prev {
                let rate = (v - pv) / ((ts - pt) as f64 / 1000.0);
                d.observe(&mut b, ts, rate).unwrap();
            }
            prev = Some((ts, v));
        }
        assert_eq!(a, b);
        // The counter's baseline is the last point: the next live sample
        // is a rate at once, and it is scored.
        let next = (3000 * 60_000, 300_000.0 + 4.0);
        let Step::Value(rate) = va.apply(next.0, next.1) else {
            panic!("a rate");
        };
        let decision = d.observe(&mut a, next.0, rate).unwrap();
        assert!(decision.warm, "two days of history cover the warm-up");
    }

    #[test]
    fn validation_names_keys() {
        let c = HistoryConfig {
            enabled: true,
            prometheus_url: "http://user:pw@prom:9090".into(),
            lookback_secs: 5,
            step_secs: Some(0),
            max_concurrent_queries: 0,
            query_timeout_secs: 0,
            max_wait_secs: 0,
            max_held_events: 0,
            drop_labels: vec!["bad-name".into()],
            auth: HistoryAuthConfig {
                username: Some("u".into()),
                bearer_token_env: Some("T".into()),
                ..HistoryAuthConfig::default()
            },
        };
        let mut p = Problems::new();
        c.validate("history", &mut p);
        let keys: Vec<_> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "history.prometheus_url",
                "history.lookback_secs",
                "history.step_secs",
                "history.max_concurrent_queries",
                "history.query_timeout_secs",
                "history.max_wait_secs",
                "history.max_held_events",
                "history.drop_labels",
                "history.auth.username",
                "history.auth.bearer_token_env",
            ]
        );
        let mut p = Problems::new();
        HistoryConfig {
            enabled: true,
            ..HistoryConfig::default()
        }
        .validate("history", &mut p);
        assert!(p.is_empty(), "{p}");
    }

    #[test]
    fn auth_reads_secrets_from_env_and_files() {
        let env = |k: &str| (k == "PROM_PW").then(|| "s3cret".to_owned());
        let basic = HistoryAuthConfig {
            username: Some("anomalyd".into()),
            password_env: Some("PROM_PW".into()),
            ..HistoryAuthConfig::default()
        };
        match basic.read("history.auth", &env).unwrap() {
            Auth::Basic { username, password } => {
                assert_eq!(
                    (username.as_str(), password.expose()),
                    ("anomalyd", "s3cret")
                );
            }
            other => panic!("{other:?}"),
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "tok\n").unwrap();
        let bearer = HistoryAuthConfig {
            bearer_token_file: Some(path),
            ..HistoryAuthConfig::default()
        };
        assert!(matches!(bearer.read("a", &env).unwrap(), Auth::Bearer(t) if t.expose() == "tok"));
        let missing = HistoryAuthConfig {
            bearer_token_env: Some("NOPE".into()),
            ..HistoryAuthConfig::default()
        };
        let e = missing.read("history.auth", &env).unwrap_err().to_string();
        assert!(e.contains("history.auth.bearer_token_env"), "{e}");
        assert!(matches!(
            HistoryAuthConfig::default().read("a", &env).unwrap(),
            Auth::None
        ));
    }
}
