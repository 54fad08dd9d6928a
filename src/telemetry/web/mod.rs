//! The HTTP front door of both listening ports: the metrics port
//! (`/metrics`, `/healthz`, `/readyz`, the live page) and the remote-write
//! receiver.
//!
//! This module owns what happens between a TCP connection and a route:
//!
//! - **A connection cap** (`max_connections`). At the cap the daemon stops
//!   accepting; further connections wait in the kernel's listen backlog,
//!   where they cost the daemon no file descriptor (Prometheus'
//!   `--web.max-connections` works the same way). Each port has its own
//!   cap, so idle connections to the receiver cannot lock out `/healthz`.
//! - **TLS and authentication** from a `web_config_file` in Prometheus'
//!   `web.config.file` format ([`webconfig`], [`auth`]).
//! - **Three timeouts**, enforced per connection by a watchdog task:
//!   `header_timeout_secs` (the TLS handshake, and from a request's first
//!   byte to the end of its head), `idle_timeout_secs` (no request in
//!   progress: from accepting, and from the end of each response) and
//!   `read_timeout_secs` (a request body that a handler reads while
//!   holding [`Conn::reading_body`]). A connection past a timeout is closed
//!   without an answer: nothing on it was acknowledged, and a sender such
//!   as Prometheus retries on a broken connection.
//! - **The drain.** When the shutdown token fires the port stops
//!   accepting, keep-alive connections close after their current request,
//!   and whatever is still open after the caller's `drain` bound is
//!   closed.
//!
//! It does not own the routes (callers pass an axum [`Router`]) nor what
//! they answer.

pub mod auth;
pub mod webconfig;

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::config::Problems;
use crate::telemetry::RateLimit;

pub use auth::Auth;
pub use webconfig::WebConfigError;

/// Which port, as the `server` label of the `anomalyd_http_*` metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerName {
    /// `metrics.listen_addr`: metrics, probes, the live page.
    Metrics,
    /// `sources.remote_write.listen_addr`.
    RemoteWrite,
}

impl ServerName {
    /// Every port.
    pub const ALL: [ServerName; 2] = [Self::Metrics, Self::RemoteWrite];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Metrics => "metrics",
            Self::RemoteWrite => "remote_write",
        }
    }
}

/// Which timeout closed a connection (`timeout` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// The TLS handshake or a request head took longer than
    /// `header_timeout_secs`.
    Header,
    /// No request in progress for `idle_timeout_secs`.
    Idle,
    /// A request body took longer than `read_timeout_secs`.
    Read,
}

impl Timeout {
    /// Every timeout.
    pub const ALL: [Timeout; 3] = [Self::Header, Self::Idle, Self::Read];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Header => "header",
            Self::Idle => "idle",
            Self::Read => "read",
        }
    }
}

/// The timeouts and the connection cap of one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// TLS handshake; a request's first byte to the end of its head.
    pub header_timeout: Duration,
    /// No request in progress.
    pub idle_timeout: Duration,
    /// A request body read under [`Conn::reading_body`].
    pub read_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            read_timeout: Duration::from_secs(30),
            max_connections: 256,
        }
    }
}

/// Most connections one port may be allowed: far below any descriptor
/// limit worth running with, and the default soft limit (1024) leaves room
/// for the state store, Kafka and both ports' defaults.
pub const MAX_CONNECTIONS: usize = 65_536;

/// Records the problems of a port's timeout and cap keys under `prefix`
/// (`read_timeout_secs` only for a port that reads bodies).
pub fn validate_limits(
    prefix: &str,
    header_timeout_secs: u64,
    idle_timeout_secs: u64,
    read_timeout_secs: Option<u64>,
    max_connections: usize,
    problems: &mut Problems,
) {
    problems.check(
        (1..=3600).contains(&header_timeout_secs),
        format!("{prefix}.header_timeout_secs"),
        format!("{header_timeout_secs} is outside 1..=3600; the default is 10"),
    );
    problems.check(
        (1..=86_400).contains(&idle_timeout_secs),
        format!("{prefix}.idle_timeout_secs"),
        format!(
            "{idle_timeout_secs} is outside 1..=86400; the default is 120 (longer than Go \
             clients' 90 s, so Prometheus closes its idle connections first)"
        ),
    );
    if let Some(read) = read_timeout_secs {
        problems.check(
            (1..=3600).contains(&read),
            format!("{prefix}.read_timeout_secs"),
            format!("{read} is outside 1..=3600; the default is 30"),
        );
    }
    problems.check(
        (1..=MAX_CONNECTIONS).contains(&max_connections),
        format!("{prefix}.max_connections"),
        format!(
            "{max_connections} is outside 1..={MAX_CONNECTIONS}; keep the sum over both ports \
             well below the open-file limit (`ulimit -n`)"
        ),
    );
}

/// Records a problem under `{prefix}.web_config_file` unless the file (and
/// the certificates it names) loads.
pub fn validate_web_config(prefix: &str, path: Option<&Path>, problems: &mut Problems) {
    if let Some(path) = path
        && let Err(e) = Front::load(Some(path))
    {
        problems.push(format!("{prefix}.web_config_file"), e.to_string());
    }
}

/// TLS and authentication of one port, from its `web_config_file`.
#[derive(Clone, Default)]
pub struct Front {
    /// Set when the file has a `tls_server_config`.
    tls: Option<TlsAcceptor>,
    /// Set when the file has users or tokens.
    auth: Option<Arc<Auth>>,
}

impl std::fmt::Debug for Front {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Front")
            .field("tls", &self.tls.is_some())
            .field("auth", &self.auth.is_some())
            .finish()
    }
}

impl Front {
    /// Plain HTTP without authentication when `path` is `None`; otherwise
    /// what the file says (see [`webconfig`]).
    pub fn load(path: Option<&Path>) -> Result<Self, WebConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let config = webconfig::WebConfig::load(path)?;
        let tls = config
            .tls
            .as_ref()
            .map(|t| t.server_config(path).map(TlsAcceptor::from))
            .transpose()?;
        let auth = Auth::new(&config).map(Arc::new);
        Ok(Self { tls, auth })
    }

    /// Whether connections must speak TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether requests must authenticate.
    pub fn has_auth(&self) -> bool {
        self.auth.is_some()
    }
}

/// The `anomalyd_http_*` families, shared by both ports (label `server`).
#[derive(Debug, Clone)]
pub struct WebMetrics {
    open: IntGaugeVec,
    accepted: IntCounterVec,
    timeouts: IntCounterVec,
    auth_failures: IntCounterVec,
    tls_failures: IntCounterVec,
}

impl WebMetrics {
    /// Registers the families in `registry`, every label value at 0.
    pub fn new(registry: &Registry) -> Result<Arc<Self>, prometheus::Error> {
        let open = IntGaugeVec::new(
            Opts::new(
                "anomalyd_http_connections_open",
                "HTTP connections open now, by port (at most its max_connections).",
            ),
            &["server"],
        )?;
        let accepted = IntCounterVec::new(
            Opts::new(
                "anomalyd_http_connections_accepted_total",
                "HTTP connections accepted, by port.",
            ),
            &["server"],
        )?;
        let timeouts = IntCounterVec::new(
            Opts::new(
                "anomalyd_http_timeouts_total",
                "HTTP connections closed by a timeout, by port and timeout (header, idle, read).",
            ),
            &["server", "timeout"],
        )?;
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "anomalyd_http_auth_failures_total",
                "HTTP requests refused 401 for missing or wrong credentials, by port.",
            ),
            &["server"],
        )?;
        let tls_failures = IntCounterVec::new(
            Opts::new(
                "anomalyd_http_tls_handshake_failures_total",
                "TLS handshakes that failed, by port.",
            ),
            &["server"],
        )?;
        for c in [&accepted, &auth_failures, &tls_failures] {
            registry.register(Box::new(c.clone()))?;
        }
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(timeouts.clone()))?;
        for s in ServerName::ALL {
            open.with_label_values(&[s.as_str()]);
            accepted.with_label_values(&[s.as_str()]);
            auth_failures.with_label_values(&[s.as_str()]);
            tls_failures.with_label_values(&[s.as_str()]);
            for t in Timeout::ALL {
                timeouts.with_label_values(&[s.as_str(), t.as_str()]);
            }
        }
        Ok(Arc::new(Self {
            open,
            accepted,
            timeouts,
            auth_failures,
            tls_failures,
        }))
    }

    fn timeout(&self, server: ServerName, t: Timeout) {
        self.timeouts
            .with_label_values(&[server.as_str(), t.as_str()])
            .inc();
    }
}

/// A bound port with its front door, not yet serving.
pub struct Server {
    name: ServerName,
    listener: TcpListener,
    front: Front,
    limits: Limits,
    metrics: Arc<WebMetrics>,
    /// Paths answered without credentials (the probes).
    open_paths: &'static [&'static str],
}

impl Server {
    /// A server on `listener`.
    pub fn new(
        name: ServerName,
        listener: TcpListener,
        front: Front,
        limits: Limits,
        metrics: Arc<WebMetrics>,
    ) -> Self {
        Self {
            name,
            listener,
            front,
            limits,
            metrics,
            open_paths: &[],
        }
    }

    /// Answers `paths` without asking for credentials (Kubernetes probes
    /// cannot send any without writing them into the manifest).
    pub fn open_paths(mut self, paths: &'static [&'static str]) -> Self {
        self.open_paths = paths;
        self
    }

    /// Where it listens.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `router` until `shutdown` fires, then drains: stops
    /// accepting, lets requests in progress finish and closes whatever is
    /// still open `drain` later.
    pub async fn serve(self, router: Router, shutdown: CancellationToken, drain: Duration) {
        let Server {
            name,
            listener,
            front,
            limits,
            metrics,
            open_paths,
        } = self;
        let ctx = Arc::new(ConnCtx {
            name,
            router,
            auth: front.auth.clone(),
            open_paths,
            limits,
            metrics: Arc::clone(&metrics),
        });
        let permits = Arc::new(Semaphore::new(limits.max_connections));
        let stop = CancellationToken::new();
        let mut conns = JoinSet::new();
        let accept_errors = RateLimit::default();
        loop {
            // A slot first: at the cap, new connections wait in the
            // kernel's backlog instead of taking a descriptor.
            let permit = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                p = Arc::clone(&permits).acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break, // never closed
                },
            };
            let accepted = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                r = listener.accept() => r,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    if let Some(suppressed) = accept_errors.allow() {
                        tracing::warn!(
                            server = name.as_str(),
                            error = %e,
                            suppressed,
                            "Failed to accept a connection; retrying shortly."
                        );
                    }
                    // Out of descriptors, typically: give the others a
                    // moment to close instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            metrics.accepted.with_label_values(&[name.as_str()]).inc();
            let ctx = Arc::clone(&ctx);
            let tls = front.tls.clone();
            let stop = stop.clone();
            conns.spawn(async move {
                let _permit = permit;
                // Counted down on drop: also when the drain aborts the task.
                let _open =
                    OpenGuard::new(ctx.metrics.open.with_label_values(&[ctx.name.as_str()]));
                ctx.connection(tcp, peer, tls, stop).await;
            });
            // Reap finished connections so the set does not grow.
            while conns.try_join_next().is_some() {}
        }
        drop(listener);
        stop.cancel();
        let open = conns.len();
        let drained =
            tokio::time::timeout(drain, async { while conns.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            let left = conns.len();
            conns.abort_all();
            while conns.join_next().await.is_some() {}
            tracing::info!(
                server = name.as_str(),
                open,
                closed = left,
                drain_secs = drain.as_secs_f64(),
                "Closed the connections still open after the drain; none of their requests was acknowledged."
            );
        }
    }
}

/// One open connection in `anomalyd_http_connections_open`.
struct OpenGuard(prometheus::IntGauge);

impl OpenGuard {
    fn new(gauge: prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What every connection of one port shares.
struct ConnCtx {
    name: ServerName,
    router: Router,
    auth: Option<Arc<Auth>>,
    open_paths: &'static [&'static str],
    limits: Limits,
    metrics: Arc<WebMetrics>,
}

impl ConnCtx {
    async fn connection(
        self: Arc<Self>,
        tcp: TcpStream,
        peer: SocketAddr,
        tls: Option<TlsAcceptor>,
        stop: CancellationToken,
    ) {
        let Some(tls) = tls else {
            return self.http(tcp, peer, stop).await;
        };
        match tokio::time::timeout(self.limits.header_timeout, tls.accept(tcp)).await {
            Ok(Ok(stream)) => self.http(stream, peer, stop).await,
            Ok(Err(e)) => {
                self.metrics
                    .tls_failures
                    .with_label_values(&[self.name.as_str()])
                    .inc();
                tracing::trace!(server = self.name.as_str(), %peer, error = %e, "TLS handshake failed.");
            }
            Err(_) => {
                self.metrics.timeout(self.name, Timeout::Header);
                tracing::trace!(server = self.name.as_str(), %peer, "TLS handshake timed out.");
            }
        }
    }

    /// Serves HTTP/1.1 on one connection under the watchdog.
    async fn http<S>(self: Arc<Self>, io: S, peer: SocketAddr, stop: CancellationToken)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let state = Arc::new(ConnState::new());
        let io = TokioIo::new(Watched {
            inner: io,
            state: Arc::clone(&state),
        });
        let svc = {
            let (ctx, state) = (Arc::clone(&self), Arc::clone(&state));
            hyper::service::service_fn(move |req: Request<Incoming>| {
                let (ctx, state) = (Arc::clone(&ctx), Arc::clone(&state));
                async move { Ok::<_, Infallible>(ctx.handle(req, state).await) }
            })
        };
        let mut builder = hyper::server::conn::http1::Builder::new();
        // The watchdog below owns every timeout: hyper's own header timer
        // also runs while a connection is idle, which would make the idle
        // timeout the header timeout.
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .keep_alive(true);
        let conn = builder.serve_connection(io, svc);
        tokio::pin!(conn);
        let mut stopping = false;
        loop {
            let deadline = state.deadline(&self.limits);
            let changed = state.notify.notified();
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::trace!(server = self.name.as_str(), %peer, error = %e, "Connection ended with an error.");
                    }
                    return;
                }
                _ = changed => {}
                _ = sleep_until(deadline) => {
                    if let Some((at, kind)) = state.deadline(&self.limits)
                        && at <= Instant::now()
                    {
                        self.metrics.timeout(self.name, kind);
                        tracing::trace!(
                            server = self.name.as_str(),
                            %peer,
                            timeout = kind.as_str(),
                            "Closed a connection past its timeout."
                        );
                        // Dropping the connection drops a request in
                        // progress with it, unanswered.
                        return;
                    }
                }
                _ = stop.cancelled(), if !stopping => {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }

    /// Authenticates, then routes one request. `state` knows the request
    /// is in progress until its response body is dropped.
    async fn handle(&self, mut req: Request<Incoming>, state: Arc<ConnState>) -> Response<Body> {
        state.request_started();
        let guard = RequestGuard(Arc::clone(&state));
        if let Some(auth) = &self.auth
            && !self.open_paths.contains(&req.uri().path())
            && let Err(e) = auth.check(req.headers()).await
        {
            self.metrics
                .auth_failures
                .with_label_values(&[self.name.as_str()])
                .inc();
            tracing::trace!(server = self.name.as_str(), error = %e, "Refused a request without valid credentials.");
            return guarded(auth.challenge(), guard);
        }
        req.extensions_mut().insert(Conn(Some(state)));
        let response = match self.router.clone().oneshot(req.map(Body::new)).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        guarded(response, guard)
    }
}

/// Keeps `guard` alive until the response body is dropped (hyper drops it
/// once written), so the connection counts as busy until then.
fn guarded(response: Response<Body>, guard: RequestGuard) -> Response<Body> {
    response.map(|body| {
        Body::new(body.map_frame(move |frame| {
            let _ = &guard;
            frame
        }))
    })
}

async fn sleep_until(deadline: Option<(Instant, Timeout)>) {
    match deadline {
        Some((at, _)) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Where a connection is, for its watchdog: the phase and when it began.
/// Packed into one atomic (`since_ms << 2 | phase`) so that a reader never
/// pairs a new phase with an old start.
struct ConnState {
    start: Instant,
    phase: AtomicU64,
    /// Requests in progress (hyper serves one at a time; a count keeps
    /// the bookkeeping right whatever the order of the drops).
    busy: AtomicUsize,
    /// Wakes the watchdog when the phase changes.
    notify: Notify,
}

const IDLE: u64 = 0;
const HEAD: u64 = 1;
const BODY: u64 = 2;
const BUSY: u64 = 3;

impl ConnState {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            phase: AtomicU64::new(IDLE),
            busy: AtomicUsize::new(0),
            notify: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX >> 2)
    }

    fn set(&self, phase: u64) {
        self.phase
            .store((self.now_ms() << 2) | phase, Ordering::Release);
        self.notify.notify_one();
    }

    /// Bytes arrived: if nothing was in progress, a request head begins.
    fn bytes_read(&self) {
        let cur = self.phase.load(Ordering::Acquire);
        if cur & 3 == IDLE
            && self
                .phase
                .compare_exchange(
                    cur,
                    (self.now_ms() << 2) | HEAD,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
        {
            self.notify.notify_one();
        }
    }

    fn request_started(&self) {
        self.busy.fetch_add(1, Ordering::AcqRel);
        self.set(BUSY);
    }

    fn request_finished(&self) {
        if self.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.set(IDLE);
        }
    }

    /// When the current phase times out, and which timeout that is.
    fn deadline(&self, limits: &Limits) -> Option<(Instant, Timeout)> {
        let packed = self.phase.load(Ordering::Acquire);
        let since = self.start + Duration::from_millis(packed >> 2);
        let (limit, kind) = match packed & 3 {
            IDLE => (limits.idle_timeout, Timeout::Idle),
            HEAD => (limits.header_timeout, Timeout::Header),
            BODY => (limits.read_timeout, Timeout::Read),
            _ => return None,
        };
        Some((since + limit, kind))
    }
}

/// Marks the end of a request when dropped.
struct RequestGuard(Arc<ConnState>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// The connection a request arrived on (a request extension). A handler
/// that reads a body holds [`Conn::reading_body`] meanwhile, so that the
/// port's `read_timeout_secs` bounds it. Requests served without this
/// module (tests calling a router directly) carry none: take it as
/// `Option<Extension<Conn>>`.
#[derive(Clone, Default)]
pub struct Conn(Option<Arc<ConnState>>);

impl Conn {
    /// Starts the read timeout; it ends when the returned guard drops.
    pub fn reading_body(&self) -> BodyRead {
        if let Some(s) = &self.0 {
            s.set(BODY);
        }
        BodyRead(self.0.clone())
    }
}

/// The body is being read until this drops.
pub struct BodyRead(Option<Arc<ConnState>>);

impl Drop for BodyRead {
    fn drop(&mut self) {
        if let Some(s) = &self.0 {
            s.set(BUSY);
        }
    }
}

/// A stream that tells its [`ConnState`] when bytes arrive.
struct Watched<S> {
    inner: S,
    state: Arc<ConnState>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.bytes_read();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_set_their_deadlines() {
        let limits = Limits {
            header_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(100),
            read_timeout: Duration::from_secs(10),
            max_connections: 1,
        };
        let s = ConnState::new();
        let (at, kind) = s.deadline(&limits).unwrap();
        assert_eq!(kind, Timeout::Idle);
        assert!(at >= s.start + Duration::from_secs(100));
        s.bytes_read();
        assert_eq!(s.deadline(&limits).unwrap().1, Timeout::Header);
        // More bytes of the same head do not restart its clock.
        let first = s.deadline(&limits).unwrap().0;
        s.bytes_read();
        assert_eq!(s.deadline(&limits).unwrap().0, first);
        s.request_started();
        assert_eq!(s.deadline(&limits), None);
        let conn = Conn(Some(Arc::new(ConnState::new())));
        {
            let _reading = conn.reading_body();
            let inner = conn.0.as_ref().unwrap();
            assert_eq!(inner.deadline(&limits).unwrap().1, Timeout::Read);
        }
        assert_eq!(conn.0.as_ref().unwrap().deadline(&limits), None);
        s.request_finished();
        assert_eq!(s.deadline(&limits).unwrap().1, Timeout::Idle);
        // A request's body bytes do not turn a busy connection into a
        // header read.
        s.request_started();
        s.bytes_read();
        assert_eq!(s.deadline(&limits), None);
    }

    #[test]
    fn limits_validation_names_keys() {
        let mut p = Problems::new();
        validate_limits("x", 0, 0, Some(0), 0, &mut p);
        let keys: Vec<_> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "x.header_timeout_secs",
                "x.idle_timeout_secs",
                "x.read_timeout_secs",
                "x.max_connections"
            ]
        );
        let mut p = Problems::new();
        validate_limits("x", 10, 120, None, 64, &mut p);
        assert!(p.is_empty());
    }
}
