//! The `alertmanager` sink: Prometheus Alertmanager, API v2.
//!
//! This module owns the mapping from an alert ([`SeriesAlert`]) to Alertmanager's
//! postable alert and the re-sending that Alertmanager expects. It POSTs to
//! `<url>/api/v2/alerts`:
//!
//! - `labels`: the series' labels (`__name__` becomes `metric`; names that
//!   Alertmanager would refuse get invalid characters replaced by `_`;
//!   empty values are left out), `extra_labels` where the series has no
//!   label of that name, `anomalyd_value="rate"` on a counter's rate, then
//!   `alertname` (config, default `AnomalyDetected`), `severity`
//!   (`warning`/`critical`) and `incident` (the id of the alert's
//!   incident, so `group_by: [incident]` in a route makes Alertmanager
//!   send one notification per incident), which always win;
//! - `annotations`: `summary` (one sentence saying what is wrong, by
//!   reason, its numbers in the series' unit: `14.8 GB`), `reason`,
//!   `since` (when it started), `series`, `value`, `expected`, `lower`,
//!   `upper`, `score`, `peak_score`, `threshold`, `model`, `fingerprint`,
//!   and `resolution` once resolved;
//! - `startsAt`: the alert's `started_at`;
//! - `endsAt`: while firing, now + 4 × `resend_interval_secs`, so
//!   Alertmanager resolves the alert by itself if this daemon stops sending
//!   (the same rule Prometheus uses); on resolve, the alert's `ended_at`;
//! - `generatorURL`: `generator_url` with `{fingerprint}` substituted, if
//!   set.
//!
//! Alertmanager forgets alerts that are not re-sent, so the sink keeps the
//! firing alerts it has sent (at most `max_active_alerts`) and re-sends them
//! every `resend_interval_secs` (the runner's heartbeat). When the severity
//! of a firing series changes, the label set changes: the old label set is
//! resolved in the same request.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::Url;
use reqwest::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::SinkMetrics;
use super::secret::AuthConfig;
use super::{
    AlertSink, DeliveryConfig, DropReason, SinkBuildError, SinkError, SinkSection, SinkTable,
    http_client, validate_url,
};
use crate::alert::{AlertStatus, Notice, RATE, Reason, SeriesAlert, VALUE_LABEL};
use crate::config::Problems;
use crate::telemetry::RateLimit;

/// The `sink` label of this sink.
pub const NAME: &str = "alertmanager";

/// A firing alert's `endsAt` is this many resend intervals ahead.
const VALIDITY_INTERVALS: u32 = 4;

/// The `[sinks.alertmanager]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertmanagerSinkConfig {
    /// Send alerts to Alertmanager.
    pub enabled: bool,
    /// Base URL of Alertmanager, e.g. `http://127.0.0.1:9093` (a path
    /// prefix is kept: `http://host/am` posts to `/am/api/v2/alerts`).
    pub url: String,
    /// Time limit of one request, in milliseconds.
    pub timeout_ms: u64,
    /// The `alertname` label.
    pub alertname: String,
    /// How often firing alerts are re-sent, in seconds. Alertmanager
    /// resolves an alert that is not re-sent before its `endsAt`
    /// (4 × this).
    pub resend_interval_secs: u64,
    /// Most firing alerts tracked for re-sending; beyond it a new alert is
    /// sent once and counted as dropped with reason `resend_capacity`.
    pub max_active_alerts: usize,
    /// Optional link shown in Alertmanager (`generatorURL`); `{fingerprint}`
    /// is replaced by the alert's fingerprint.
    pub generator_url: Option<String>,
    /// Labels added to every alert (e.g. `env = "prod"`); a series label
    /// of the same name wins.
    pub extra_labels: BTreeMap<String, String>,
    /// Optional auth header (e.g. for an authenticating proxy).
    pub auth: AuthConfig,
}

impl Default for AlertmanagerSinkConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            url: "http://127.0.0.1:9093".to_owned(),
            timeout_ms: 10_000,
            alertname: "AnomalyDetected".to_owned(),
            resend_interval_secs: 60,
            max_active_alerts: 10_000,
            generator_url: None,
            extra_labels: BTreeMap::new(),
            auth: AuthConfig::default(),
        }
    }
}

/// Alerts per POST, and the chunk size of re-sends: `max_batch_alerts`,
/// 64 by default.
impl SinkTable for AlertmanagerSinkConfig {
    const KEYS: &'static [&'static str] = &[
        "enabled",
        "url",
        "timeout_ms",
        "alertname",
        "resend_interval_secs",
        "max_active_alerts",
        "generator_url",
        "extra_labels",
        "auth",
        "queue_capacity",
        "max_batch_alerts",
        "retry",
    ];

    fn default_delivery() -> DeliveryConfig {
        DeliveryConfig::with_batch(64)
    }

    fn enabled(&self) -> bool {
        self.enabled
    }

    fn validate(&self, prefix: &str, problems: &mut Problems) {
        validate_url(&format!("{prefix}.url"), &self.url, problems);
        problems.check(
            self.timeout_ms >= 1,
            format!("{prefix}.timeout_ms"),
            "must be at least 1 (milliseconds)",
        );
        problems.check(
            !self.alertname.is_empty(),
            format!("{prefix}.alertname"),
            "must not be empty; the default is `AnomalyDetected`",
        );
        problems.check(
            self.resend_interval_secs >= 1,
            format!("{prefix}.resend_interval_secs"),
            "must be at least 1 (seconds); Alertmanager drops alerts that are not re-sent",
        );
        problems.check(
            self.max_active_alerts >= 1,
            format!("{prefix}.max_active_alerts"),
            "must be at least 1",
        );
        if let Some(g) = &self.generator_url {
            validate_url(
                &format!("{prefix}.generator_url"),
                &g.replace("{fingerprint}", "0"),
                problems,
            );
        }
        for name in self.extra_labels.keys() {
            problems.check(
                is_valid_label_name(name),
                format!("{prefix}.extra_labels.{name}"),
                "is not a valid label name; use letters, digits and `_`, not starting with a digit",
            );
        }
        self.auth.validate(&format!("{prefix}.auth"), problems);
    }
}

/// One alert as Alertmanager's `POST /api/v2/alerts` takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostableAlert {
    /// Identity of the alert in Alertmanager.
    pub labels: BTreeMap<String, String>,
    /// Details shown in notifications.
    pub annotations: BTreeMap<String, String>,
    /// When it started (RFC 3339).
    #[serde(rename = "startsAt", skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<String>,
    /// When it ends or ended (RFC 3339).
    #[serde(rename = "endsAt")]
    pub ends_at: String,
    /// Link back to the source.
    #[serde(rename = "generatorURL", skip_serializing_if = "Option::is_none")]
    pub generator_url: Option<String>,
}

/// A firing alert kept for re-sending.
#[derive(Debug, Clone)]
struct Tracked {
    postable: PostableAlert,
    starts: Option<DateTime<Utc>>,
}

/// Sends alerts to Alertmanager and re-sends the firing ones.
#[derive(Debug)]
pub struct AlertmanagerSink {
    client: reqwest::Client,
    endpoint: Url,
    auth: Option<(HeaderName, HeaderValue)>,
    alertname: String,
    resend_interval: Duration,
    max_active: usize,
    chunk: usize,
    generator_url: Option<String>,
    extra_labels: BTreeMap<String, String>,
    /// Firing alerts by fingerprint.
    active: Mutex<HashMap<String, Tracked>>,
    /// Old label sets ended by a severity change, until delivered.
    ended: Mutex<Vec<PostableAlert>>,
    metrics: SinkMetrics,
    cap_log: RateLimit,
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, what Alertmanager 0.25 accepts.
pub fn is_valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Makes `s` a valid label name by replacing invalid characters with `_`
/// (and prefixing `_` to a leading digit).
fn sanitize_label_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl AlertmanagerSink {
    /// Builds the sink. `prefix` is the section's key; `metrics` counts
    /// `resend_capacity` drops.
    pub fn new(
        section: &SinkSection<AlertmanagerSinkConfig>,
        prefix: &str,
        env: &dyn Fn(&str) -> Option<String>,
        metrics: SinkMetrics,
    ) -> Result<Self, SinkBuildError> {
        let config = &section.sink;
        let endpoint = Url::parse(&format!(
            "{}/api/v2/alerts",
            config.url.trim_end_matches('/')
        ))
        .map_err(|e| SinkBuildError::Config {
            key: format!("{prefix}.url"),
            message: format!("`{}` is not a valid URL: {e}", config.url),
        })?;
        Ok(Self {
            client: http_client(Duration::from_millis(config.timeout_ms))?,
            endpoint,
            auth: config.auth.header(&format!("{prefix}.auth"), env)?,
            alertname: config.alertname.clone(),
            resend_interval: Duration::from_secs(config.resend_interval_secs.max(1)),
            max_active: config.max_active_alerts,
            chunk: section.delivery.max_batch_alerts.max(1),
            generator_url: config.generator_url.clone(),
            extra_labels: config.extra_labels.clone(),
            active: Mutex::new(HashMap::new()),
            ended: Mutex::new(Vec::new()),
            metrics,
            cap_log: RateLimit::default(),
        })
    }

    /// Alertmanager's labels for `a`.
    pub fn labels(&self, a: &SeriesAlert) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = self.extra_labels.clone();
        // The metric name first, so a real series label `metric` wins.
        if let Some(name) = a.labels.get("__name__").filter(|v| !v.is_empty()) {
            out.insert("metric".to_owned(), name.clone());
        }
        for (k, v) in &a.labels {
            if k != "__name__" && !v.is_empty() {
                out.insert(sanitize_label_name(k), v.clone());
            }
        }
        if a.is_rate() {
            out.insert(VALUE_LABEL.to_owned(), RATE.to_owned());
        }
        out.insert("alertname".to_owned(), self.alertname.clone());
        out.insert("severity".to_owned(), a.severity.as_str().to_owned());
        if let Some(id) = &a.incident {
            out.insert("incident".to_owned(), id.clone());
        }
        out
    }

    /// The postable form of `a` at wall-clock time `now`.
    pub fn postable(&self, a: &SeriesAlert, now: DateTime<Utc>) -> PostableAlert {
        let starts = parse_time(&a.started_at);
        let ends = match a.status {
            AlertStatus::Firing => self.firing_ends_at(now, starts),
            AlertStatus::Resolved => {
                let ended = a.ended_at.as_deref().and_then(parse_time).unwrap_or(now);
                // Alertmanager refuses endsAt before startsAt.
                starts.map_or(ended, |s| ended.max(s))
            }
        };
        let mut annotations = BTreeMap::from([
            ("summary".to_owned(), summary(a)),
            ("reason".to_owned(), a.reason.as_str().to_owned()),
            ("since".to_owned(), a.started_at.clone()),
            ("series".to_owned(), a.series.clone()),
            ("value".to_owned(), a.value.to_string()),
            ("expected".to_owned(), a.expected.to_string()),
            ("lower".to_owned(), a.lower.to_string()),
            ("upper".to_owned(), a.upper.to_string()),
            ("score".to_owned(), a.score.to_string()),
            ("peak_score".to_owned(), a.peak_score.to_string()),
            ("threshold".to_owned(), a.threshold.to_string()),
            ("model".to_owned(), a.model.clone()),
            ("fingerprint".to_owned(), a.fingerprint.clone()),
        ]);
        if let Some(r) = a.resolution {
            annotations.insert("resolution".to_owned(), r.as_str().to_owned());
        }
        PostableAlert {
            labels: self.labels(a),
            annotations,
            starts_at: starts.map(rfc3339),
            ends_at: rfc3339(ends),
            generator_url: self
                .generator_url
                .as_ref()
                .map(|g| g.replace("{fingerprint}", &a.fingerprint)),
        }
    }

    fn firing_ends_at(&self, now: DateTime<Utc>, starts: Option<DateTime<Utc>>) -> DateTime<Utc> {
        let validity = chrono::Duration::from_std(self.resend_interval * VALIDITY_INTERVALS)
            .unwrap_or(chrono::Duration::hours(1));
        let ends = now + validity;
        // An event time ahead of the wall clock must still give endsAt >
        // startsAt.
        starts.map_or(ends, |s| ends.max(s + chrono::Duration::seconds(1)))
    }

    /// The body for `batch`, updating the set of tracked firing alerts.
    /// The body starts with the ended label sets not yet delivered; the
    /// second value says how many, for [`Self::settle`].
    fn prepare(&self, batch: &[SeriesAlert], now: DateTime<Utc>) -> (Vec<PostableAlert>, usize) {
        let mut body = Vec::with_capacity(batch.len());
        let mut over_cap = 0u64;
        let mut ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
        {
            let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
            for a in batch {
                let p = self.postable(a, now);
                let prev = match a.status {
                    AlertStatus::Firing => {
                        let tracked = Tracked {
                            postable: p.clone(),
                            starts: parse_time(&a.started_at),
                        };
                        if active.contains_key(&a.fingerprint) || active.len() < self.max_active {
                            active.insert(a.fingerprint.clone(), tracked)
                        } else {
                            over_cap += 1;
                            None
                        }
                    }
                    AlertStatus::Resolved => active.remove(&a.fingerprint),
                };
                // A different label set (severity changed) is a different
                // Alertmanager alert: end the old one now. It is kept until
                // a request carrying it succeeds, because the tracking map
                // has already moved on and a retried batch would not
                // produce it again.
                if let Some(old) = prev.filter(|t| t.postable.labels != p.labels) {
                    ended.push(PostableAlert {
                        ends_at: rfc3339(now),
                        ..old.postable
                    });
                }
                body.push(p);
            }
        }
        // Bounded like the tracking map; the oldest go first (Alertmanager
        // still expires them at their last endsAt).
        if ended.len() > self.max_active {
            let excess = ended.len() - self.max_active;
            ended.drain(..excess);
        }
        let n_ended = ended.len();
        body.splice(0..0, ended.iter().cloned());
        drop(ended);
        if over_cap > 0 {
            self.metrics
                .dropped(DropReason::ResendCapacity)
                .inc_by(over_cap);
            if let Some(suppressed) = self.cap_log.allow() {
                warn!(
                    sink = NAME,
                    count = over_cap,
                    max_active_alerts = self.max_active,
                    suppressed,
                    "Too many firing alerts to re-send; Alertmanager will expire the excess."
                );
            }
        }
        (body, n_ended)
    }

    /// Forgets the first `n` ended label sets after a request carrying them
    /// succeeded. `send` and `heartbeat` run one at a time on the sink's
    /// task, so nothing was added in front of them meanwhile.
    fn settle(&self, n: usize) {
        let mut ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
        let n = n.min(ended.len());
        ended.drain(..n);
    }

    async fn post(&self, alerts: &[PostableAlert]) -> Result<(), SinkError> {
        let body = serde_json::to_vec(alerts)?;
        let mut req = self
            .client
            .post(self.endpoint.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some((name, value)) = &self.auth {
            req = req.header(name.clone(), value.clone());
        }
        let resp = req.send().await.map_err(SinkError::http)?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(SinkError::HttpStatus {
                status: status.as_u16(),
            })
        }
    }

    /// Firing alerts currently tracked for re-sending.
    pub fn active_len(&self) -> usize {
        self.active.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl AlertSink for AlertmanagerSink {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn send(&self, batch: &[Notice]) -> Result<(), SinkError> {
        // Incidents are Alertmanager's own business (its grouping, by the
        // `incident` label); this sink takes alerts only.
        let alerts: Vec<SeriesAlert> = batch.iter().filter_map(Notice::as_alert).cloned().collect();
        if alerts.is_empty() {
            return Ok(());
        }
        let (body, n_ended) = self.prepare(&alerts, Utc::now());
        self.post(&body).await?;
        self.settle(n_ended);
        Ok(())
    }

    fn heartbeat_interval(&self) -> Option<Duration> {
        Some(self.resend_interval)
    }

    async fn heartbeat(&self) -> Result<(), SinkError> {
        let now = Utc::now();
        let (alerts, n_ended) = {
            let ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
            let active = self.active.lock().unwrap_or_else(|p| p.into_inner());
            let mut alerts: Vec<PostableAlert> = ended.clone();
            alerts.extend(active.values().map(|t| PostableAlert {
                ends_at: rfc3339(self.firing_ends_at(now, t.starts)),
                ..t.postable.clone()
            }));
            (alerts, ended.len())
        };
        // The ended label sets lead the list; forget each once its chunk
        // went through.
        let (mut sent, mut settled) = (0, 0);
        for chunk in alerts.chunks(self.chunk) {
            self.post(chunk).await?;
            sent += chunk.len();
            let ended_sent = sent.min(n_ended);
            self.settle(ended_sent - settled);
            settled = ended_sent;
        }
        Ok(())
    }

    fn discarded(&self, alert: &Notice, reason: DropReason) {
        let Notice::Alert(alert) = alert else { return };
        // A lost resolution must not be re-sent as firing forever: stop
        // tracking, and Alertmanager resolves the alert at its endsAt. A
        // firing alert Alertmanager refused would be refused on every
        // re-send. Other lost firing alerts stay tracked: the next
        // heartbeat re-sends their state once Alertmanager is back.
        let forget = alert.status == AlertStatus::Resolved || reason == DropReason::Rejected;
        if forget {
            let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
            let same = active
                .get(&alert.fingerprint)
                .is_some_and(|t| t.postable.labels == self.labels(alert));
            if alert.status == AlertStatus::Resolved || same {
                active.remove(&alert.fingerprint);
            }
        }
    }
}

/// The one-line summary Alertmanager shows: what is wrong, in the words of
/// the channel that raised the alert, its numbers in the series' unit.
fn summary(a: &SeriesAlert) -> String {
    let u = a.unit();
    let (value, lower, upper, expected) = (
        u.format(a.value),
        u.format(a.lower),
        u.format(a.upper),
        u.format(a.expected),
    );
    let what = match a.reason {
        Reason::Forecast => format!(
            "= {value} is outside the expected band [{lower}, {upper}] (expected {expected})"
        ),
        Reason::Level => {
            format!("= {value} is far from its usual level (band [{lower}, {upper}])")
        }
        Reason::Drift => format!(
            "has drifted: values keep falling on one side of the expected {expected} (now {value})"
        ),
        Reason::Stuck => format!("has repeated {value} for unusually long"),
    };
    // A counter's numbers are its per-second rate: say so as PromQL would.
    let series = a.display_series();
    match a.status {
        AlertStatus::Firing => format!("{series} {what} (score {})", a.score),
        AlertStatus::Resolved if a.resolution == Some(crate::alert::Resolution::NewNormal) => {
            format!("{series} has settled at a new normal (was: {what})")
        }
        AlertStatus::Resolved => format!("{series} is back to normal (was: {what})"),
    }
}

#[cfg(test)]
mod tests {
    use prometheus::Registry;

    use super::*;
    use crate::alert::Severity;

    /// A test alert as the sinks get it.
    fn alert(fp: &str, status: AlertStatus, value: f64) -> SeriesAlert {
        crate::alert::sink::queue::tests::alert(fp, status, value).into()
    }
    use crate::telemetry::metrics::{Metrics, MetricsConfig};

    fn sink(cfg: &AlertmanagerSinkConfig) -> (AlertmanagerSink, Metrics) {
        let m = Metrics::new(Registry::new(), &MetricsConfig::default(), &[], &[]).unwrap();
        let s = AlertmanagerSink::new(
            &SinkSection::new(cfg.clone()),
            "sinks.alertmanager",
            &|_| None,
            SinkMetrics::new(&m, NAME),
        )
        .unwrap();
        (s, m)
    }

    fn now() -> DateTime<Utc> {
        parse_time("2024-05-01T12:10:00Z").unwrap()
    }

    #[test]
    fn labels_and_annotations_follow_the_documented_mapping() {
        let cfg = AlertmanagerSinkConfig {
            extra_labels: BTreeMap::from([
                ("env".into(), "prod".into()),
                ("host".into(), "overridden".into()),
            ]),
            generator_url: Some("http://dash/s/{fingerprint}".into()),
            ..AlertmanagerSinkConfig::default()
        };
        let (s, _) = sink(&cfg);
        let mut a = alert("00ab", AlertStatus::Firing, 9.5);
        a.labels.insert("k8s.pod".into(), "p-1".into());
        a.labels.insert("empty".into(), String::new());
        a.labels.insert("severity".into(), "ignored".into());
        let p = s.postable(&a, now());
        let want: BTreeMap<String, String> = [
            ("alertname", "AnomalyDetected"),
            ("env", "prod"),
            ("host", "00ab"),
            ("k8s_pod", "p-1"),
            ("metric", "cpu"),
            ("severity", "warning"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(p.labels, want);
        assert_eq!(p.annotations["value"], "9.5");
        assert_eq!(p.annotations["upper"], "1.5");
        assert_eq!(p.annotations["series"], a.series);
        assert!(p.annotations["summary"].contains("is outside"));
        assert_eq!(p.annotations["reason"], "forecast");
        // The summary says what is wrong in the words of the reason.
        let mut stuck = a.clone();
        stuck.reason = Reason::Stuck;
        let p = s.postable(&stuck, now());
        assert_eq!(p.annotations["reason"], "stuck");
        assert!(p.annotations["summary"].contains("has repeated 9.5 for unusually long"));
        let mut drift = a.clone();
        drift.reason = Reason::Drift;
        assert!(s.postable(&drift, now()).annotations["summary"].contains("has drifted"));
        // A counter's alert is about its rate, and says so.
        let mut rate = alert("00ab", AlertStatus::Firing, 50.0);
        rate.value_kind = crate::alert::ValueKind::Rate;
        let pr = s.postable(&rate, now());
        assert!(
            pr.annotations["summary"].starts_with("rate("),
            "{:?}",
            pr.annotations
        );
        assert_eq!(pr.labels[crate::alert::VALUE_LABEL], "rate");
        assert_eq!(p.starts_at.as_deref(), Some("2024-05-01T12:00:00.000Z"));
        // 4 × 60 s after now.
        assert_eq!(p.ends_at, "2024-05-01T12:14:00.000Z");
        assert_eq!(p.generator_url.as_deref(), Some("http://dash/s/00ab"));

        let r = s.postable(&alert("00ab", AlertStatus::Resolved, 1.0), now());
        assert_eq!(r.ends_at, "2024-05-01T12:05:00.000Z");
        assert_eq!(r.annotations["resolution"], "returned");
        assert!(r.annotations["summary"].contains("is back to normal"));
        // A change that lasted past `alert.max_episode_secs` says so.
        let mut settled = alert("00ab", AlertStatus::Resolved, 20.0);
        settled.resolution = Some(crate::alert::Resolution::NewNormal);
        let n = s.postable(&settled, now());
        assert_eq!(n.annotations["resolution"], "new_normal");
        assert!(n.annotations["summary"].contains("has settled at a new normal"));

        // The incident is a label, so Alertmanager can group by it.
        let mut inc = alert("00ab", AlertStatus::Firing, 9.5);
        inc.incident = Some("00000000000000ff".into());
        assert_eq!(
            s.postable(&inc, now()).labels["incident"],
            "00000000000000ff"
        );
        assert!(!p.labels.contains_key("incident"));
        // Numbers in the summary are in the series' unit.
        let mut mem = alert("00ab", AlertStatus::Firing, 1.483e10);
        mem.labels
            .insert("__name__".into(), "node_memory_used_bytes".into());
        (mem.alert.expected, mem.alert.lower, mem.alert.upper) = (6.0e9, 5.9e9, 6.1e9);
        let summary = &s.postable(&mem, now()).annotations["summary"];
        assert!(
            summary.contains(
                "= 14.8 GB is outside the expected band [5.9 GB, 6.1 GB] (expected 6 GB)"
            ),
            "{summary}"
        );
        assert_eq!(s.postable(&mem, now()).annotations["value"], "14830000000");
    }

    #[test]
    fn end_never_precedes_start() {
        let (s, _) = sink(&AlertmanagerSinkConfig::default());
        let mut a = alert("x", AlertStatus::Firing, 1.0);
        a.started_at = "2030-01-01T00:00:00Z".into();
        let p = s.postable(&a, now());
        assert_eq!(p.ends_at, "2030-01-01T00:00:01.000Z");
        a.status = AlertStatus::Resolved;
        a.ended_at = Some("2024-01-01T00:00:00Z".into());
        assert_eq!(s.postable(&a, now()).ends_at, "2030-01-01T00:00:00.000Z");
    }

    #[test]
    fn tracking_follows_firing_and_resolved_and_severity_changes_resolve_the_old_labels() {
        let (s, _) = sink(&AlertmanagerSinkConfig::default());
        let (body, n) = s.prepare(&[alert("a", AlertStatus::Firing, 5.0)], now());
        assert_eq!((body.len(), n), (1, 0));
        assert_eq!(s.active_len(), 1);

        let mut crit = alert("a", AlertStatus::Firing, 9.0);
        crit.severity = Severity::Critical;
        let (body, n) = s.prepare(std::slice::from_ref(&crit), now());
        assert_eq!(
            (body.len(), n),
            (2, 1),
            "old warning ended, new critical started"
        );
        assert_eq!(body[0].labels["severity"], "warning");
        assert_eq!(body[0].ends_at, rfc3339(now()));
        assert_eq!(body[1].labels["severity"], "critical");
        assert_eq!(s.active_len(), 1);

        // The request failed and the runner retries the same batch: the
        // ended warning must still be in it.
        let (body, n) = s.prepare(&[crit], now());
        assert_eq!((body.len(), n), (2, 1));
        assert_eq!(body[0].labels["severity"], "warning");
        s.settle(n);

        let mut res = alert("a", AlertStatus::Resolved, 1.0);
        res.severity = Severity::Critical;
        let (body, n) = s.prepare(&[res], now());
        assert_eq!((body.len(), n), (1, 0));
        assert_eq!(s.active_len(), 0);
    }

    #[test]
    fn tracking_is_capped_and_counted() {
        let cfg = AlertmanagerSinkConfig {
            max_active_alerts: 2,
            ..AlertmanagerSinkConfig::default()
        };
        let (s, m) = sink(&cfg);
        let batch: Vec<SeriesAlert> = (0..3)
            .map(|i| alert(&format!("s{i}"), AlertStatus::Firing, 1.0))
            .collect();
        let (body, _) = s.prepare(&batch, now());
        assert_eq!(body.len(), 3, "all are sent once");
        assert_eq!(s.active_len(), 2);
        assert_eq!(
            SinkMetrics::new(&m, NAME)
                .dropped(DropReason::ResendCapacity)
                .get(),
            1
        );
    }

    #[test]
    fn discarded_resolution_stops_resending() {
        let (s, _) = sink(&AlertmanagerSinkConfig::default());
        s.prepare(&[alert("a", AlertStatus::Firing, 5.0)], now());
        s.discarded(
            &alert("a", AlertStatus::Firing, 5.0).into(),
            DropReason::QueueFull,
        );
        assert_eq!(s.active_len(), 1, "kept: the heartbeat restores it");
        s.discarded(
            &alert("a", AlertStatus::Resolved, 1.0).into(),
            DropReason::QueueFull,
        );
        assert_eq!(s.active_len(), 0);
    }

    #[test]
    fn label_names_are_sanitised() {
        assert_eq!(sanitize_label_name("a.b-c"), "a_b_c");
        assert_eq!(sanitize_label_name("1x"), "_1x");
        assert!(is_valid_label_name("_ok9"));
        assert!(!is_valid_label_name("9no"));
        assert!(!is_valid_label_name(""));
    }

    #[test]
    fn validation_names_keys() {
        let cfg = AlertmanagerSinkConfig {
            enabled: true,
            url: "http://am:9093".into(),
            alertname: String::new(),
            resend_interval_secs: 0,
            extra_labels: BTreeMap::from([("bad-name".into(), "x".into())]),
            ..AlertmanagerSinkConfig::default()
        };
        let mut p = Problems::new();
        cfg.validate("sinks.alertmanager", &mut p);
        let keys: Vec<_> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "sinks.alertmanager.alertname",
                "sinks.alertmanager.resend_interval_secs",
                "sinks.alertmanager.extra_labels.bad-name"
            ]
        );
    }
}
