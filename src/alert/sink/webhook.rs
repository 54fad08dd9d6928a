//! The `webhook` sink: a JSON POST of alert batches to any HTTP endpoint.
//!
//! This module owns the webhook body and its HTTP exchange. The body is
//!
//! ```json
//! {"version": 1, "alerts": [ <Alert>, ... ], "incidents": [ <Incident>, ... ]}
//! ```
//!
//! where each `<Alert>` is a [`crate::alert::SeriesAlert`] and each
//! `<Incident>` an [`crate::alert::Incident`] notification, serialised as
//! is (the same JSON as the Kafka sink's message values). One POST carries
//! one kind; the other list is empty. By default (`messages =
//! "incidents"`) the webhook gets incident notifications only: a receiver
//! that pages gets one message per incident update, not one per series
//! (`messages = "both"` or `"alerts"` adds or keeps the per-series
//! alerts). `version` changes only if the envelope changes incompatibly.
//! Any 2xx answer is success; 408, 429, 5xx and transport errors are
//! retried; other answers drop the batch (reason `rejected`).

use std::time::Duration;

use reqwest::Url;
use reqwest::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use super::secret::AuthConfig;
use super::{AlertSink, Messages, SinkBuildError, SinkError, SinkTable, http_client, validate_url};
use crate::alert::Notice;
use crate::config::Problems;

/// The `sink` label of this sink.
pub const NAME: &str = "webhook";

/// Version of the body envelope.
pub const BODY_VERSION: u32 = 1;

/// The JSON body of one POST.
#[derive(Debug, Serialize, Deserialize)]
pub struct WebhookBody<A, I> {
    /// Envelope version, [`BODY_VERSION`].
    pub version: u32,
    /// Per-series alerts, oldest first.
    pub alerts: A,
    /// Incident notifications, oldest first.
    #[serde(default)]
    pub incidents: I,
}

/// The `[sinks.webhook]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSinkConfig {
    /// POST alerts to `url`.
    pub enabled: bool,
    /// Receiver URL (`http://` or `https://`, no credentials in it).
    pub url: String,
    /// Time limit of one request, in milliseconds.
    pub timeout_ms: u64,
    /// Optional auth header; the token comes from an env var or a file.
    pub auth: AuthConfig,
    /// `incidents` (default: one message per incident update), `alerts`
    /// (one per series) or `both`.
    pub messages: Messages,
}

impl Default for WebhookSinkConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            url: String::new(),
            timeout_ms: 10_000,
            auth: AuthConfig::default(),
            messages: Messages::Incidents,
        }
    }
}

/// Alerts per POST: `max_batch_alerts`.
impl SinkTable for WebhookSinkConfig {
    const KEYS: &'static [&'static str] = &[
        "enabled",
        "url",
        "timeout_ms",
        "auth",
        "messages",
        "queue_capacity",
        "max_batch_alerts",
        "retry",
    ];

    fn enabled(&self) -> bool {
        self.enabled
    }

    fn validate(&self, prefix: &str, problems: &mut Problems) {
        if self.url.is_empty() {
            problems.push(
                format!("{prefix}.url"),
                "is required when the webhook sink is enabled; set the receiver URL or `enabled = false`",
            );
        } else {
            validate_url(&format!("{prefix}.url"), &self.url, problems);
        }
        problems.check(
            self.timeout_ms >= 1,
            format!("{prefix}.timeout_ms"),
            "must be at least 1 (milliseconds)",
        );
        self.auth.validate(&format!("{prefix}.auth"), problems);
    }
}

/// POSTs alert batches as JSON.
#[derive(Debug)]
pub struct WebhookSink {
    client: reqwest::Client,
    url: Url,
    /// The auth header, marked sensitive so it never shows in Debug.
    auth: Option<(HeaderName, HeaderValue)>,
}

impl WebhookSink {
    /// Builds the sink; reads the auth token now, so a missing secret fails
    /// startup instead of every delivery. `prefix` is the section's key.
    pub fn new(
        config: &WebhookSinkConfig,
        prefix: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, SinkBuildError> {
        let url = Url::parse(&config.url).map_err(|e| SinkBuildError::Config {
            key: format!("{prefix}.url"),
            message: format!("`{}` is not a valid URL: {e}", config.url),
        })?;
        Ok(Self {
            client: http_client(Duration::from_millis(config.timeout_ms))?,
            url,
            auth: config.auth.header(&format!("{prefix}.auth"), env)?,
        })
    }
}

impl AlertSink for WebhookSink {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn send(&self, batch: &[Notice]) -> Result<(), SinkError> {
        let alerts: Vec<_> = batch.iter().filter_map(Notice::as_alert).collect();
        let incidents: Vec<_> = batch.iter().filter_map(Notice::as_incident).collect();
        let body = serde_json::to_vec(&WebhookBody {
            version: BODY_VERSION,
            alerts,
            incidents,
        })?;
        let mut req = self
            .client
            .post(self.url.clone())
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
}
