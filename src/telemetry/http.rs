//! The operational HTTP endpoint: `/metrics`, `/healthz`, `/readyz`.
//!
//! This module owns the small axum server that Prometheus scrapes and that
//! orchestrators probe, and [`Readiness`], the shared flag behind `/readyz`.
//! It does not decide when the daemon is ready or draining: the app flips
//! the flag. [`run`] takes its listener and its shutdown trigger as
//! parameters, so tests bind port 0 and stop it without signals; [`serve`]
//! serves any router the same way, so the app can merge in the live page's
//! routes ([`crate::ui`]).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::Registry;
use tokio::net::TcpListener;

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
}

impl ReadyState {
    /// The word `/readyz` answers with.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Draining => "draining",
        }
    }
}

/// A shared readiness flag. Clones share the state. Draining is final: once
/// set, [`Readiness::set_ready`] has no effect.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicU8>);

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
            .compare_exchange(STARTING, READY, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Marks the daemon draining (final).
    pub fn set_draining(&self) {
        self.0.store(DRAINING, Ordering::Release);
    }

    /// The current state.
    pub fn state(&self) -> ReadyState {
        match self.0.load(Ordering::Acquire) {
            STARTING => ReadyState::Starting,
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
}

/// The routes, for embedding or for tests that call the service directly.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Serves the endpoints on `listener` until `shutdown` completes, then
/// finishes in-flight requests and returns.
pub async fn run(
    listener: TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    serve(listener, router(state), shutdown).await
}

/// Serves `routes` on `listener` until `shutdown` completes, then finishes
/// in-flight requests and returns.
pub async fn serve(
    listener: TcpListener,
    routes: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    axum::serve(listener, routes)
        .with_graceful_shutdown(shutdown)
        .await?;
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
}
