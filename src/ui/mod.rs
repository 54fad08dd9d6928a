//! The live page: series that alerted recently and the most anomalous now,
//! each with a chart of its recent values, the expected line, the band and
//! the alert spans, updating live.
//!
//! This module owns the `[ui]` section ([`UiConfig`]), the routes it adds
//! to the daemon's HTTP server ([`router`]: `/`, `/series/<fingerprint>`,
//! the JSON API under `/api/v1/series` and two static files), and, in its
//! submodules, the bounded per-series history the shards write
//! ([`history`]), the JSON documents ([`api`]) and the HTML ([`page`]).
//! Charts are drawn by [`crate::chart`], shared with `backtest --plot`.
//!
//! Everything is served by the binary itself: server-rendered HTML, one
//! small script and one stylesheet, no external fetch at view time. Every
//! label value and series name is HTML-escaped on the server, and the
//! script inserts text with `textContent` only; a Content-Security-Policy
//! allows scripts and styles from the daemon alone, so even markup that
//! slipped through could not run.

pub mod api;
pub mod history;
pub mod page;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use crate::config::Problems;
use history::{History, HistoryLimits};

/// The `[ui]` section: the live page and the history behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UiConfig {
    /// Serve the page on `metrics.listen_addr` and keep the history. Off,
    /// the per-event cost is one branch and `/` answers 404.
    pub enabled: bool,
    /// A series that alerted within this many minutes (wall clock) is
    /// listed as recently alerted and keeps its history ahead of quiet
    /// series.
    pub history_minutes: u64,
    /// Quiet series listed on `/` (the highest scores now), besides every
    /// series that is firing or alerted recently.
    pub top_series: usize,
    /// Observations kept per retained series (the chart's length).
    pub points_per_series: usize,
    /// Hard cap on the history's memory, bytes, split evenly between the
    /// shards. Each retained series costs `points_per_series` × 48 bytes
    /// plus about 140 (docs/performance.md has the measured figure); at the cap,
    /// lower-ranked series make room. A shard holds at most 65,535 series
    /// whatever the cap.
    pub max_bytes: u64,
}

impl Default for UiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            history_minutes: 60,
            top_series: 50,
            points_per_series: 720,
            max_bytes: 64 << 20,
        }
    }
}

/// Most observations per series (a chart of more points than pixels says
/// nothing more).
pub const MAX_POINTS_PER_SERIES: usize = 100_000;

impl UiConfig {
    /// The limits the history is built with.
    pub fn limits(&self) -> HistoryLimits {
        HistoryLimits {
            points_per_series: self.points_per_series,
            max_bytes: self.max_bytes,
            window_secs: self.history_minutes.saturating_mul(60),
        }
    }

    /// Records every problem under `prefix` (e.g. `ui`), for a pipeline of
    /// `shards` shards (the cap is split evenly between them).
    pub fn validate(&self, prefix: &str, shards: usize, problems: &mut Problems) {
        problems.check(
            (10..=MAX_POINTS_PER_SERIES).contains(&self.points_per_series),
            format!("{prefix}.points_per_series"),
            format!(
                "must be between 10 and {MAX_POINTS_PER_SERIES} (got {})",
                self.points_per_series
            ),
        );
        problems.check(
            (1..=10_000).contains(&self.top_series),
            format!("{prefix}.top_series"),
            format!("must be between 1 and 10000 (got {})", self.top_series),
        );
        problems.check(
            self.history_minutes <= 7 * 24 * 60,
            format!("{prefix}.history_minutes"),
            format!(
                "must be at most 10080 (a week; got {})",
                self.history_minutes
            ),
        );
        let shards = shards.max(1) as u64;
        let per_series = History::bytes_per_series(self.points_per_series) as u64;
        // Each shard holds a whole number of series.
        let needed = per_series.saturating_mul((self.top_series as u64).div_ceil(shards) * shards);
        problems.check(
            !self.enabled || History::capacity(&self.limits(), shards as usize) >= self.top_series,
            format!("{prefix}.max_bytes"),
            format!(
                "{} bytes hold {} series of {} points ({per_series} bytes each, over {shards} \
                 shards), fewer than {prefix}.top_series = {}; raise it to at least {needed}, or \
                 lower {prefix}.points_per_series or {prefix}.top_series",
                self.max_bytes,
                History::capacity(&self.limits(), shards as usize),
                self.points_per_series,
                self.top_series
            ),
        );
    }
}

/// What the page's handlers share.
#[derive(Debug)]
pub struct UiState {
    /// The per-series history the shards write.
    pub history: Arc<History>,
    /// The incidents the notifier last sent (open, and recently closed).
    pub incidents: Arc<crate::alert::notify::IncidentBoard>,
    /// The `[ui]` section.
    pub config: UiConfig,
    /// The alert rule's threshold, shown beside the scores.
    pub threshold: f64,
}

/// The page's routes. With `None` (the UI is off), `/` says so and the
/// other routes do not exist.
pub fn router(ui: Option<Arc<UiState>>) -> Router {
    let Some(ui) = ui else {
        return Router::new().route("/", get(disabled));
    };
    Router::new()
        .route("/", get(index))
        .route("/series/{fingerprint}", get(series))
        .route("/series/{fingerprint}/chart.svg", get(chart))
        .route("/api/v1/series", get(api_list))
        .route("/api/v1/series/{fingerprint}", get(api_detail))
        .route("/ui/app.js", get(script))
        .route("/ui/style.css", get(style))
        .with_state(ui)
}

/// Scripts, styles, data and images from the daemon only; no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn typed(content_type: &'static str, body: impl IntoResponse) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn json(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_string(body) {
        Ok(text) => typed("application/json", (status, text)),
        Err(e) => {
            tracing::warn!(error = %e, "Failed to encode a UI response.");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode\n").into_response()
        }
    }
}

async fn disabled() -> Response {
    (
        StatusCode::NOT_FOUND,
        "The live page is off (ui.enabled = false). /metrics, /healthz and /readyz are served.\n",
    )
        .into_response()
}

/// Renders on the blocking pool: a page of thousands of rows is CPU work
/// that must not hold up the threads answering `/healthz`.
async fn rendered(f: impl FnOnce() -> Response + Send + 'static) -> Response {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "Failed to render a UI response.");
        (StatusCode::INTERNAL_SERVER_ERROR, "cannot render\n").into_response()
    })
}

async fn index(State(ui): State<Arc<UiState>>, RawQuery(q): RawQuery) -> Response {
    rendered(
        move || match api::ListQuery::parse(q.as_deref(), ui.config.top_series) {
            Ok(query) => {
                let list = api::list(&ui, &query);
                html(StatusCode::OK, page::index(&ui, &query, &list))
            }
            Err(e) => html(StatusCode::BAD_REQUEST, page::error(&e)),
        },
    )
    .await
}

async fn series(State(ui): State<Arc<UiState>>, Path(fp): Path<String>) -> Response {
    rendered(move || match api::detail(&ui, &fp) {
        Ok(d) => html(StatusCode::OK, page::series(&ui, &d)),
        Err(e) => html(e.status(), page::error(&e.to_string())),
    })
    .await
}

async fn chart(State(ui): State<Arc<UiState>>, Path(fp): Path<String>) -> Response {
    rendered(move || match api::detail(&ui, &fp) {
        Ok(d) => typed("image/svg+xml", page::chart(&d)),
        Err(e) => (e.status(), e.to_string()).into_response(),
    })
    .await
}

async fn api_list(State(ui): State<Arc<UiState>>, RawQuery(q): RawQuery) -> Response {
    rendered(
        move || match api::ListQuery::parse(q.as_deref(), ui.config.top_series) {
            Ok(query) => json(StatusCode::OK, &api::list(&ui, &query)),
            Err(e) => json(StatusCode::BAD_REQUEST, &api::ApiError { error: e }),
        },
    )
    .await
}

async fn api_detail(State(ui): State<Arc<UiState>>, Path(fp): Path<String>) -> Response {
    rendered(move || match api::detail(&ui, &fp) {
        Ok(d) => json(StatusCode::OK, &d),
        Err(e) => json(
            e.status(),
            &api::ApiError {
                error: e.to_string(),
            },
        ),
    })
    .await
}

async fn script() -> Response {
    typed(
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    )
}

async fn style() -> Response {
    typed("text/css; charset=utf-8", include_str!("assets/style.css"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_key_and_the_fix() {
        let mut p = Problems::new();
        UiConfig::default().validate("ui", 64, &mut p);
        assert!(p.is_empty(), "{p}");
        let bad = UiConfig {
            points_per_series: 5,
            top_series: 0,
            history_minutes: 100_000,
            max_bytes: 1000,
            ..UiConfig::default()
        };
        let mut p = Problems::new();
        bad.validate("ui", 1, &mut p);
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "ui.points_per_series",
                "ui.top_series",
                "ui.history_minutes"
            ]
        );
        let small = UiConfig {
            max_bytes: 1 << 20,
            ..UiConfig::default()
        };
        let mut p = Problems::new();
        small.validate("ui", 2, &mut p);
        let text = p.to_string();
        assert!(text.contains("ui.max_bytes"), "{text}");
        assert!(text.contains("raise it to at least"), "{text}");
        // The figure it names is enough.
        let needed: u64 = text
            .split("at least ")
            .nth(1)
            .and_then(|t| t.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        let mut p = Problems::new();
        UiConfig {
            max_bytes: needed,
            ..small.clone()
        }
        .validate("ui", 2, &mut p);
        assert!(p.is_empty(), "{p}");
        // Off, the cap does not matter.
        let mut p = Problems::new();
        UiConfig {
            enabled: false,
            ..small
        }
        .validate("ui", 2, &mut p);
        assert!(p.is_empty());
    }
}
