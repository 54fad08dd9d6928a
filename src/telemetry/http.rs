//! The operational HTTP endpoint: `/metrics`, `/healthz`, `/readyz`.
//!
//! This module owns the small axum server that Prometheus scrapes and that
//! orchestrators probe, and [`Readiness`], the shared flag behind `/readyz`.
//! It does not decide when the daemon is ready or draining: the app flips
//! the flag. [`run`] takes its listener and its shutdown trigger as
//! parameters, so tests bind port 0 and stop it without signals; the app
//! serves [`router`] merged with the live page's routes ([`crate::ui`])
//! through [`super::web`], the front door (TLS, auth, timeouts,
//! connection cap) both ports share.
//!
//! `/readyz` is 503 while starting, while draining, and while the state
//! store fails to take snapshots (what the daemon acknowledges could not
//! be made durable): an orchestrator then routes around the instance, and
//! it is ready again after the next snapshot that succeeds.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::telemetry::web::{Front, Limits, Server, ServerName, WebMetrics};

/// Where the daemon is in its life, as `/readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyState {
    /// Still starting (restoring state, joining the consumer group): 503.
    Starting,
    /// Consuming and alerting: 200.
    Ready,
    /// Shutdown has begun: 503, so load balancers and rollouts stop
    /// counting on this instance.
    Draining,
    /// Running, but the last snapshot failed (full or read-only state
    /// directory, unreachable changelog): 503 until one succeeds.
    SnapshotFailing,
}

impl ReadyState {
    /// The word `/readyz` answers with.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Draining => "draining",
            Self::SnapshotFailing => "snapshot failing",
        }
    }
}

/// A shared readiness flag. Clones share the state. Draining is final: once
/// set, [`Readiness::set_ready`] has no effect.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<ReadinessInner>);

#[derive(Debug, Default)]
struct ReadinessInner {
    phase: AtomicU8,
    /// The last snapshot failed.
    snapshot_failing: AtomicBool,
}

const STARTING: u8 = 0;
const READY: u8 = 1;
const DRAINING: u8 = 2;

impl Readiness {
    /// A flag in the starting state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the daemon ready, unless it is already draining.
    pub fn set_ready(&self) {
        // Only starting → ready; a late set_ready must not undo draining.
        let _ = self
            .0
            .phase
            .compare_exchange(STARTING, READY, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Marks the daemon draining (final).
    pub fn set_draining(&self) {
        self.0.phase.store(DRAINING, Ordering::Release);
    }

    /// Records whether the last snapshot was saved.
    pub fn set_snapshot_ok(&self, ok: bool) {
        self.0.snapshot_failing.store(!ok, Ordering::Release);
    }

    /// Whether the last snapshot failed.
    pub fn snapshot_failing(&self) -> bool {
        self.0.snapshot_failing.load(Ordering::Acquire)
    }

    /// The current state.
    pub fn state(&self) -> ReadyState {
        match self.0.phase.load(Ordering::Acquire) {
            STARTING => ReadyState::Starting,
            READY if self.snapshot_failing() => ReadyState::SnapshotFailing,
            READY => ReadyState::Ready,
            _ => ReadyState::Draining,
        }
    }
}

/// What the handlers need.
#[derive(Debug, Clone)]
pub struct HttpState {
    /// Rendered on `/metrics`.
    pub registry: Registry,
    /// Read by `/readyz`.
    pub readiness: Readiness,
}

/// Errors from [`run`].
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The server failed (accept loop I/O error).
    #[error("metrics HTTP server failed: {0}")]
    Serve(#[from] std::io::Error),
    /// Its metrics could not be registered.
    #[error("metrics HTTP server: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Paths answered without credentials when the port has a
/// `web_config_file` with users: the probes, which cannot send any
/// without writing them into a manifest.
pub const OPEN_PATHS: &[&str] = &["/healthz", "/readyz"];

/// The routes, for embedding or for tests that call the service directly.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Serves the endpoints on `listener` (plain HTTP, default limits, the
/// `anomalyd_http_*` families registered in the state's registry) until
/// `shutdown` completes, then finishes in-flight requests and returns.
pub async fn run(
    listener: TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    let web = WebMetrics::new(&state.registry)?;
    let server = Server::new(
        ServerName::Metrics,
        listener,
        Front::default(),
        Limits::default(),
        web,
    )
    .open_paths(OPEN_PATHS);
    let stop = CancellationToken::new();
    let trigger = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        trigger.cancel();
    });
    server
        .serve(router(state), stop, std::time::Duration::from_secs(5))
        .await;
    Ok(())
}

async fn metrics(State(state): State<HttpState>) -> Response {
    match prometheus::TextEncoder::new().encode_to_string(&state.registry.gather()) {
        Ok(body) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "Failed to encode metrics.");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n").into_response()
        }
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<HttpState>) -> (StatusCode, String) {
    let s = state.readiness.state();
    let code = if s == ReadyState::Ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, format!("{}\n", s.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draining_is_final() {
        let r = Readiness::new();
        assert_eq!(r.state(), ReadyState::Starting);
        r.set_ready();
        assert_eq!(r.state(), ReadyState::Ready);
        r.set_draining();
        r.set_ready();
        assert_eq!(r.state(), ReadyState::Draining);
    }

    #[test]
    fn a_failing_snapshot_makes_a_ready_daemon_unready_until_one_succeeds() {
        let r = Readiness::new();
        r.set_snapshot_ok(false);
        assert_eq!(r.state(), ReadyState::Starting);
        r.set_ready();
        assert_eq!(r.state(), ReadyState::SnapshotFailing);
        r.set_snapshot_ok(true);
        assert_eq!(r.state(), ReadyState::Ready);
        r.set_snapshot_ok(false);
        r.set_draining();
        assert_eq!(r.state(), ReadyState::Draining);
    }
}
