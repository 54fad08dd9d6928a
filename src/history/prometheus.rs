//! A small client of the Prometheus HTTP API: the history of one series,
//! the series matching a selector, and the declared metric types.
//!
//! Queries are POSTed form-encoded (selectors of long label sets do not
//! meet URL length limits), each with its own time limit, each counted in
//! [`HistoryMetrics`] by outcome with its duration. Answers are checked:
//! an `"status": "error"` body, an unexpected result type or a non-2xx
//! status is a [`HistoryError`] naming what Prometheus said.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Url;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{Auth, HistoryConfig, HistoryMetrics, POINTS_PER_QUERY, is_label_name};
use crate::config::secret::SecretError;
use crate::counter::MetricType;
use crate::event::SeriesKey;

/// Window of raw samples read to find a series' own interval.
const PROBE_WINDOW_MS: i64 = 3_600_000;

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The client could not be built.
    #[error("{0}")]
    Setup(String),
    /// A secret could not be read (its value is never printed).
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// No answer within `query_timeout_secs`.
    #[error("{endpoint}: no answer within {secs} s (history.query_timeout_secs)")]
    Timeout {
        /// The API path.
        endpoint: &'static str,
        /// The limit.
        secs: u64,
    },
    /// Connection refused, reset, TLS...
    #[error("{endpoint}: {message}")]
    Http {
        /// The API path.
        endpoint: &'static str,
        /// What went wrong.
        message: String,
    },
    /// Prometheus answered with an error.
    #[error("{endpoint}: Prometheus answered {status}: {message}")]
    Api {
        /// The API path.
        endpoint: &'static str,
        /// HTTP status.
        status: u16,
        /// `errorType: error` from the body, or the body's start.
        message: String,
    },
    /// The answer is not what the API documents.
    #[error("{endpoint}: unexpected answer: {message}")]
    Decode {
        /// The API path.
        endpoint: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl HistoryError {
    /// True for a query that ran out of time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }
}

/// What to fetch for each series.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// How far back (ms).
    pub lookback_ms: i64,
    /// Resolution (ms); `None`: the series' own interval.
    pub step_ms: Option<i64>,
    /// Labels left out of selectors and of the match.
    pub drop_labels: Vec<String>,
}

impl Plan {
    /// The plan of a `[history]` section.
    pub fn new(config: &HistoryConfig) -> Self {
        Self {
            lookback_ms: config.lookback_secs as i64 * 1000,
            step_ms: config.step_secs.map(|s| s as i64 * 1000),
            drop_labels: config.drop_labels.clone(),
        }
    }
}

/// The API's envelope.
#[derive(Deserialize)]
struct Envelope<T> {
    status: String,
    data: Option<T>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

/// `data` of a range or instant query.
#[derive(Deserialize)]
struct QueryData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<MatrixSeries>,
}

/// One series of a matrix.
#[derive(Deserialize)]
struct MatrixSeries {
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

/// `data` of `/api/v1/metadata`: family → declared entries.
#[derive(Deserialize)]
struct MetadataEntry {
    #[serde(rename = "type")]
    kind: String,
}

/// A client of one Prometheus.
pub struct PrometheusClient {
    http: reqwest::Client,
    /// The base URL, ending with `/`.
    base: Url,
    auth: Auth,
    timeout: Duration,
    metrics: Option<Arc<HistoryMetrics>>,
}

impl std::fmt::Debug for PrometheusClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusClient")
            .field("base", &self.base.as_str())
            .finish()
    }
}

/// `{__name__="name", label="value", ...}` for `key` without
/// `drop_labels`; `None` when a label name cannot be written in PromQL (no
/// Prometheus 2 series can have it).
pub fn selector(key: &SeriesKey, drop_labels: &[String]) -> Option<String> {
    let mut s = String::from("{__name__=");
    quote(&mut s, key.name());
    for (k, v) in key.labels() {
        if drop_labels.iter().any(|d| d == k) {
            continue;
        }
        if !is_label_name(k) {
            return None;
        }
        s.push(',');
        s.push_str(k);
        s.push('=');
        quote(&mut s, v);
    }
    s.push('}');
    Some(s)
}

/// Appends `v` as a PromQL double-quoted string.
fn quote(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Unix milliseconds as the API's seconds, exactly.
fn api_time(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// Whether a result series is exactly `key` (less `drop_labels`).
fn same_series(metric: &BTreeMap<String, String>, key: &SeriesKey, drop: &[String]) -> bool {
    if metric.get("__name__").map(String::as_str) != Some(key.name()) {
        return false;
    }
    let mut want = key
        .labels()
        .iter()
        .filter(|(k, _)| !drop.iter().any(|d| d == k));
    let mut got = metric.iter().filter(|(k, _)| k.as_str() != "__name__");
    loop {
        match (want.next(), got.next()) {
            (None, None) => return true,
            (Some((wk, wv)), Some((gk, gv))) if wk == gk && wv == gv => {}
            _ => return false,
        }
    }
}

/// The median gap between consecutive timestamps (ms), if there are two.
fn median_gap(ts: &[i64]) -> Option<i64> {
    let mut gaps: Vec<i64> = ts
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|g| *g > 0)
        .collect();
    if gaps.is_empty() {
        return None;
    }
    let mid = gaps.len() / 2;
    let (_, m, _) = gaps.select_nth_unstable(mid);
    Some(*m)
}

impl PrometheusClient {
    /// A client for `config.prometheus_url` with its auth (secrets looked
    /// up through `env`), counting into `metrics`.
    pub fn new(
        config: &HistoryConfig,
        env: &dyn Fn(&str) -> Option<String>,
        metrics: Option<Arc<HistoryMetrics>>,
    ) -> Result<Self, HistoryError> {
        let mut base = Url::parse(&config.prometheus_url).map_err(|e| {
            HistoryError::Setup(format!(
                "history.prometheus_url = {}: {e}",
                config.prometheus_url
            ))
        })?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let auth = config.auth.read("history.auth", env)?;
        // reqwest is built without a default crypto provider; install
        // ring's once. Err means some provider is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("anomalyd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HistoryError::Setup(format!("history: HTTP client: {e}")))?;
        Ok(Self {
            http,
            base,
            auth,
            timeout: Duration::from_secs(config.query_timeout_secs),
            metrics,
        })
    }

    /// POSTs `form` to `endpoint` and returns the envelope's `data`.
    async fn call<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        form: &[(&str, &str)],
    ) -> Result<T, HistoryError> {
        let started = Instant::now();
        let result = self.call_inner(endpoint, form).await;
        if let Some(m) = &self.metrics {
            m.query_done(&result, started.elapsed());
        }
        result
    }

    async fn call_inner<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        form: &[(&str, &str)],
    ) -> Result<T, HistoryError> {
        let url = self
            .base
            .join(endpoint)
            .map_err(|e| HistoryError::Setup(format!("{endpoint}: {e}")))?;
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut req = self
            .http
            .post(url)
            .timeout(self.timeout)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body);
        req = match &self.auth {
            Auth::None => req,
            Auth::Basic { username, password } => req.basic_auth(username, Some(password.expose())),
            Auth::Bearer(token) => req.bearer_auth(token.expose()),
        };
        let secs = self.timeout.as_secs();
        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                HistoryError::Timeout { endpoint, secs }
            } else {
                HistoryError::Http {
                    endpoint,
                    message: e.to_string(),
                }
            }
        };
        let resp = req.send().await.map_err(failed)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(failed)?;
        let envelope: Result<Envelope<T>, _> = serde_json::from_slice(&bytes);
        match envelope {
            Ok(e) if e.status == "success" && status.is_success() => {
                e.data.ok_or_else(|| HistoryError::Decode {
                    endpoint,
                    message: "no `data`".into(),
                })
            }
            Ok(e) => Err(HistoryError::Api {
                endpoint,
                status: status.as_u16(),
                message: format!(
                    "{}: {}",
                    e.error_type.as_deref().unwrap_or("error"),
                    e.error.as_deref().unwrap_or("(no message)")
                ),
            }),
            Err(_) if !status.is_success() => Err(HistoryError::Api {
                endpoint,
                status: status.as_u16(),
                message: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
            }),
            Err(e) => Err(HistoryError::Decode {
                endpoint,
                message: e.to_string(),
            }),
        }
    }

    /// The samples (range query) or raw samples (instant query of a range
    /// selector) of the series exactly `key`, oldest first; non-finite
    /// values are left out.
    async fn points_of(
        &self,
        endpoint: &'static str,
        form: &[(&str, &str)],
        key: &SeriesKey,
        drop: &[String],
        out: &mut Vec<(i64, f64)>,
    ) -> Result<(), HistoryError> {
        let data: QueryData = self.call(endpoint, form).await?;
        if data.result_type != "matrix" {
            return Err(HistoryError::Decode {
                endpoint,
                message: format!(
                    "a `{}` result where a matrix was expected",
                    data.result_type
                ),
            });
        }
        let Some(series) = data
            .result
            .into_iter()
            .find(|s| same_series(&s.metric, key, drop))
        else {
            return Ok(());
        };
        out.reserve(series.values.len());
        for (t, v) in series.values {
            let Ok(value) = v.parse::<f64>() else {
                return Err(HistoryError::Decode {
                    endpoint,
                    message: format!("the value `{v}` is not a number"),
                });
            };
            if value.is_finite() {
                out.push(((t * 1000.0).round() as i64, value));
            }
        }
        Ok(())
    }

    /// The raw samples of `key` in the `window_ms` up to `end_ms`: their
    /// interval (the median gap, ms; `None` with fewer than two) and the
    /// time of the last one (`None` without any).
    pub async fn probe(
        &self,
        key: &SeriesKey,
        end_ms: i64,
        window_ms: i64,
        plan: &Plan,
    ) -> Result<(Option<i64>, Option<i64>), HistoryError> {
        let Some(sel) = selector(key, &plan.drop_labels) else {
            return Ok((None, None));
        };
        let query = format!("{sel}[{window_ms}ms]");
        let time = api_time(end_ms);
        let mut raw = Vec::new();
        self.points_of(
            "api/v1/query",
            &[("query", &query), ("time", &time)],
            key,
            &plan.drop_labels,
            &mut raw,
        )
        .await?;
        let ts: Vec<i64> = raw.iter().map(|p| p.0).collect();
        Ok((median_gap(&ts), ts.last().copied()))
    }

    /// The history of `key` over `plan.lookback_ms` up to and including
    /// `end_ms`, oldest first: `/api/v1/query_range` at the plan's step
    /// (or the series' own interval), in chunks of at most
    /// [`POINTS_PER_QUERY`] points.
    ///
    /// A range query evaluates the series on a grid of its own; the grid
    /// here ends exactly at the series' last raw sample (read first, with
    /// its interval, from the raw samples of the last hour, or of three
    /// steps), so every point is a sample at its own time and a counter's
    /// last point is a true baseline for the rate of the next live sample.
    /// Empty when Prometheus has no such series, or no raw sample in that
    /// window (fewer than two without a configured step).
    pub async fn series_history(
        &self,
        key: &SeriesKey,
        end_ms: i64,
        plan: &Plan,
    ) -> Result<Vec<(i64, f64)>, HistoryError> {
        let Some(sel) = selector(key, &plan.drop_labels) else {
            return Ok(Vec::new());
        };
        let window = PROBE_WINDOW_MS
            .max(3 * plan.step_ms.unwrap_or(0))
            .min(plan.lookback_ms);
        let (interval, last) = self.probe(key, end_ms, window, plan).await?;
        let (Some(step_ms), Some(end)) = (plan.step_ms.or(interval), last) else {
            return Ok(Vec::new());
        };
        let step = api_time(step_ms);
        let mut points = Vec::new();
        let mut start = end - plan.lookback_ms / step_ms * step_ms;
        while start <= end {
            let stop = (start + (POINTS_PER_QUERY - 1) * step_ms).min(end);
            let (s, e) = (api_time(start), api_time(stop));
            self.points_of(
                "api/v1/query_range",
                &[("query", &sel), ("start", &s), ("end", &e), ("step", &step)],
                key,
                &plan.drop_labels,
                &mut points,
            )
            .await?;
            start = stop + step_ms;
        }
        // Chunks meet without overlap; anything after the end (a point
        // rounded up) would be learned twice.
        points.retain(|p| p.0 <= end);
        points.dedup_by_key(|p| p.0);
        Ok(points)
    }

    /// The label sets of the series matching `selector` between `start_ms`
    /// and `end_ms` (`/api/v1/series`), sorted.
    pub async fn list_series(
        &self,
        selector: &str,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<BTreeMap<String, String>>, HistoryError> {
        let (s, e) = (api_time(start_ms), api_time(end_ms));
        let mut all: Vec<BTreeMap<String, String>> = self
            .call(
                "api/v1/series",
                &[("match[]", selector), ("start", &s), ("end", &e)],
            )
            .await?;
        all.sort();
        Ok(all)
    }

    /// The declared type of every metric family Prometheus knows
    /// (`/api/v1/metadata`; GET, the endpoint takes no POST).
    pub async fn metadata(&self) -> Result<HashMap<String, MetricType>, HistoryError> {
        let endpoint = "api/v1/metadata";
        let started = Instant::now();
        let result = async {
            let url = self
                .base
                .join(endpoint)
                .map_err(|e| HistoryError::Setup(format!("{endpoint}: {e}")))?;
            let mut req = self.http.get(url).timeout(self.timeout);
            req = match &self.auth {
                Auth::None => req,
                Auth::Basic { username, password } => {
                    req.basic_auth(username, Some(password.expose()))
                }
                Auth::Bearer(token) => req.bearer_auth(token.expose()),
            };
            let resp = req.send().await.map_err(|e| HistoryError::Http {
                endpoint,
                message: e.to_string(),
            })?;
            let status = resp.status().as_u16();
            let body: Envelope<HashMap<String, Vec<MetadataEntry>>> =
                resp.json().await.map_err(|e| HistoryError::Decode {
                    endpoint,
                    message: e.to_string(),
                })?;
            match body.data {
                Some(d) if body.status == "success" => Ok(d
                    .into_iter()
                    .filter_map(|(family, entries)| {
                        let t = MetricType::from_name(&entries.first()?.kind);
                        Some((family, t))
                    })
                    .collect()),
                _ => Err(HistoryError::Api {
                    endpoint,
                    status,
                    message: body.error.unwrap_or_default(),
                }),
            }
        }
        .await;
        if let Some(m) = &self.metrics {
            m.query_done(&result, started.elapsed());
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_quote_values_and_drop_external_labels() {
        let k = SeriesKey::new(
            "node_load1",
            [("instance", "a\"b\\c"), ("replica", "r1"), ("job", "node")],
        );
        assert_eq!(
            selector(&k, &["replica".into()]).unwrap(),
            r#"{__name__="node_load1",instance="a\"b\\c",job="node"}"#
        );
        let odd = SeriesKey::new("m", [("host-name", "x")]);
        assert_eq!(selector(&odd, &[]), None);
        assert_eq!(
            selector(&odd, &["host-name".into()]).unwrap(),
            r#"{__name__="m"}"#
        );
    }

    #[test]
    fn exact_match_ignores_dropped_labels_only() {
        let k = SeriesKey::new("up", [("job", "a"), ("replica", "1")]);
        let drop = ["replica".to_owned()];
        let m = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert!(same_series(
            &m(&[("__name__", "up"), ("job", "a")]),
            &k,
            &drop
        ));
        assert!(!same_series(
            &m(&[("__name__", "up"), ("job", "a"), ("x", "y")]),
            &k,
            &drop
        ));
        assert!(!same_series(&m(&[("__name__", "up")]), &k, &drop));
        assert!(!same_series(
            &m(&[("__name__", "down"), ("job", "a")]),
            &k,
            &drop
        ));
    }

    #[test]
    fn times_and_intervals() {
        assert_eq!(api_time(1_700_000_000_123), "1700000000.123");
        assert_eq!(api_time(15_000), "15.000");
        assert_eq!(
            median_gap(&[0, 15_000, 30_000, 46_000, 60_000]),
            Some(15_000)
        );
        assert_eq!(median_gap(&[5]), None);
    }
}
