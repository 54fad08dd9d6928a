//! The Prometheus remote-write receiver: a source without Kafka.
//!
//! Prometheus pushes every sample it scrapes to `POST /api/v1/write`
//! (`remote_write` in prometheus.yml). This module serves that endpoint on
//! its own `listen_addr` (through [`crate::telemetry::web`]: TLS, auth,
//! timeouts and a connection cap) and speaks protocols 1.0 and 2.0: the body is a
//! snappy-compressed (block format) protobuf, `prometheus.WriteRequest`
//! or, with `Content-Type:
//! application/x-protobuf;proto=io.prometheus.write.v2.Request`, 2.0's
//! `Request` ([`wire`] reads both in place). Each float sample becomes one
//! event of the series "metric name + labels". The answers are the ones
//! Prometheus acts on:
//!
//! | answer | when | Prometheus |
//! |---|---|---|
//! | 204 | the samples are dispatched to the shards (bad ones counted) | next batch |
//! | 400 | not snappy, not protobuf, more series or samples than allowed; or a series passed a label limit (that series dropped, the others taken) | drops the batch |
//! | 413 | the body, compressed or not, exceeds `max_body_bytes` | drops the batch |
//! | 415 | `Content-Encoding` is not `snappy`, or a `Content-Type` that is neither 1.0 nor 2.0 | drops the batch (a 2.0 sender falls back to 1.0) |
//! | 503 + `Retry-After` | no room: `max_concurrent_requests` busy or the shard queues full for `queue_timeout_ms`; snapshots failing; shutting down | retries with backoff |
//!
//! 503 rather than 429: Prometheus 2.x retries 429 only when
//! `retry_on_http_429` is set, but always retries 5xx. A 2.0 request's
//! answer carries the `X-Prometheus-Remote-Write-*-Written` headers.
//!
//! **Memory.** At most `max_concurrent_requests` bodies are read and
//! decoded at once (a slot is taken before the body is read, so stalled
//! or slow bodies cannot pile up); decoding runs on the blocking pool, off
//! the threads that answer `/healthz`. The key cache follows
//! `pipeline.max_series` and holds keys weakly ([`KeyCache`]).
//!
//! **State.** The receiver is one partition, `remote_write/0`; its
//! position is the receive time (Unix ms) of the last dispatched request.
//! With a state store its series are snapshotted every
//! `state.snapshot_interval_secs` and restored at start. Prometheus cannot
//! resend the past, so samples accepted after the last snapshot are lost
//! in a crash and those series relearn them. A clean shutdown loses
//! nothing: the port stops accepting, requests in progress get
//! `read_timeout_secs + queue_timeout_ms` (at most half the shutdown
//! grace) to finish, a stalled one is then closed unanswered, no request
//! is acknowledged after that, and the final snapshot covers every 204
//! (if it fails, the run ends with an error). While snapshots fail the
//! receiver answers 503.
//!
//! **Per-sample problems** are counted, never fatal: stale markers
//! (`anomalyd_remote_write_stale_markers_total`) and native histograms
//! (`anomalyd_remote_write_histograms_skipped_total`); NaN and ±Inf
//! values (the quantiles of every empty summary) and the series the
//! counter rules skip, as
//! `anomalyd_samples_skipped_total{source="remote_write",reason}`
//! (`non_finite`, `created`, `bucket`: data, not failures, logged at debug
//! only); and `anomalyd_events_failed_total{source="remote_write",reason}`
//! for the rest ([`REASONS`]: timestamps outside 1970..9999 or the window
//! around now, series dropped for their labels).
//!
//! **Types.** A sender declares each metric family's type: Prometheus'
//! 1.0 sends them (`MetricMetadata`) every minute in requests of their
//! own, 2.0 with every series. The receiver keeps them
//! ([`crate::counter::Metadata`]) so that a counter is learned as a rate
//! even when its name does not say so; see [`crate::counter`].

mod config;
mod proto;
pub mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use prometheus::{IntCounter, IntCounterVec, Opts};
use tokio::net::TcpListener;
use tokio::sync::{RwLock, Semaphore};
use tokio_util::sync::CancellationToken;

pub use config::RemoteWriteConfig;
pub use proto::{Histogram, Label, MetricMetadata, Sample, TimeSeries, WriteRequest, v2};
pub use wire::{RequestError, SeriesError, Tally, Version};

use super::{Feed, Source, SourceError, SourceSummary};
use crate::counter::{Class, MetricType, SkipReason, StreamRules};
use crate::event::{Event, KeyCache};
use crate::pipeline::DispatchError;
use crate::state::SourcePartition;
use crate::telemetry::RateLimit;
use crate::telemetry::metrics::{Metrics, SourceMetrics};
use crate::telemetry::web::{Conn, Front, Server, ServerName};

/// The `source` label of the receiver's metrics.
pub const NAME: &str = "remote_write";

/// The receiver's stream name: its state is `remote_write/0`.
pub const STREAM: &str = "remote_write";

/// The path Prometheus posts to.
pub const PATH: &str = "/api/v1/write";

/// Bits of Prometheus' stale marker, a NaN that means "this series is
/// gone" rather than a value.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// `Content-Type` parameter value of a 2.0 body.
pub const PROTO_V2: &str = "io.prometheus.write.v2.Request";

/// `Content-Type` parameter value of a 1.0 body (also the default).
pub const PROTO_V1: &str = "prometheus.WriteRequest";

/// Failure reasons of this source beyond the decoder's
/// (`anomalyd_events_failed_total{source="remote_write",reason}`).
pub const REASONS: [&str; 11] = [
    "invalid_snappy",
    "invalid_protobuf",
    "too_many_series",
    "too_many_samples",
    "missing_name",
    "invalid_label",
    "duplicate_label",
    "too_many_labels",
    "label_name_too_long",
    "label_value_too_long",
    "out_of_window",
];

/// How often the receiver checkpoints without a state store: the barrier
/// is what evicts idle series.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// Why a request body was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// Compressed or decompressed size above the limit.
    #[error("the body is larger than max_body_bytes ({limit} bytes)")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// Not snappy block format.
    #[error("the body is not snappy-compressed (block format): {0}")]
    Snappy(String),
    /// Not a remote-write message, or over a request limit.
    #[error(transparent)]
    Request(#[from] RequestError),
}

impl Reject {
    fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::Snappy(_) => "invalid_snappy",
            Self::Request(RequestError::Protobuf { .. }) => "invalid_protobuf",
            Self::Request(RequestError::TooManySeries { .. }) => "too_many_series",
            Self::Request(RequestError::TooManySamples { .. }) => "too_many_samples",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// A decoded request: its events and what was skipped.
#[derive(Debug, Default)]
pub struct Decoded {
    /// One per learnable sample.
    pub events: Vec<Event>,
    /// What did not become an event.
    pub tally: Tally,
    /// The first series dropped for a label limit (then the answer is 400).
    pub refused: Option<String>,
}

/// Decompresses a body, checking both sizes against `limit` before
/// allocating.
pub fn decompress(body: &[u8], limit: usize) -> Result<Vec<u8>, Reject> {
    if body.len() > limit {
        return Err(Reject::TooLarge { limit });
    }
    // The decompressed length is in the header: check it before allocating.
    let len = snap::raw::decompress_len(body).map_err(|e| Reject::Snappy(e.to_string()))?;
    if len > limit {
        return Err(Reject::TooLarge { limit });
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| Reject::Snappy(e.to_string()))
}

/// Decodes a request body (snappy, then protobuf of `version`) into events,
/// one per learnable sample, keys from `keys`. The types the request
/// declares are recorded in `rules` first; then the series `rules` skip
/// are counted in the tally (once per series, not per sample).
pub fn decode(
    body: &[u8],
    version: Version,
    max_body_bytes: usize,
    limits: &wire::Limits,
    keys: &Mutex<KeyCache>,
    rules: &StreamRules,
) -> Result<Decoded, Reject> {
    let raw = decompress(body, max_body_bytes)?;
    let mut parsed = wire::Parsed::default();
    wire::parse(&raw, version, limits, &mut parsed)?;
    record_metadata(&parsed, rules);
    let mut events = Vec::with_capacity(parsed.samples.len());
    {
        // Decompressing and parsing ran unlocked; only the key lookups
        // share the cache.
        let mut keys = keys.lock().unwrap_or_else(|e| e.into_inner());
        for s in &parsed.series {
            // Only these suffixes can be skipped: the others need no lookup.
            if (s.name.ends_with("_created") || s.name.ends_with("_bucket"))
                && let Class::Skip(reason) = rules.classify(s.name)
            {
                let n = s.samples.len() as u64;
                match reason {
                    SkipReason::Created => parsed.tally.created += n,
                    SkipReason::Bucket => parsed.tally.bucket += n,
                }
                continue;
            }
            let key = keys.key_sorted(s.name, &parsed.labels[s.labels.clone()]);
            events.extend(
                parsed.samples[s.samples.clone()]
                    .iter()
                    .map(|&(ts_ms, value)| Event {
                        series: key.clone(),
                        ts_ms,
                        value,
                    }),
            );
        }
    }
    Ok(Decoded {
        events,
        tally: parsed.tally,
        refused: parsed.refused,
    })
}

/// Records the metric types `parsed` declares in `rules` (when they keep
/// declared types): 1.0's metadata by family, 2.0's per series, each
/// under the family its name belongs to
/// ([`crate::counter::declared_family`]).
pub fn record_metadata(parsed: &wire::Parsed<'_>, rules: &StreamRules) {
    let Some(m) = rules
        .metadata
        .as_ref()
        .filter(|_| rules.config.use_metadata)
    else {
        return;
    };
    if !parsed.metadata.is_empty() {
        m.update(
            parsed
                .metadata
                .iter()
                .map(|&(family, t)| (family, MetricType::from_remote_write(t))),
        );
    }
    if parsed.series.iter().any(|s| s.metric_type != 0) {
        m.update(
            parsed
                .series
                .iter()
                .filter(|s| s.metric_type != 0)
                .map(|s| {
                    let t = MetricType::from_remote_write(s.metric_type);
                    (crate::counter::declared_family(s.name, t), t)
                }),
        );
    }
}

/// The protocol a request's headers ask for, or why they are refused
/// (415).
pub fn negotiate(headers: &HeaderMap) -> Result<Version, String> {
    if let Some(enc) = headers.get(header::CONTENT_ENCODING)
        && !enc.as_bytes().eq_ignore_ascii_case(b"snappy")
    {
        return Err("Content-Encoding must be snappy\n".into());
    }
    // No Content-Type: 1.0, as the specification says.
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(Version::V1);
    };
    let ct = ct
        .to_str()
        .map_err(|_| "unreadable Content-Type\n".to_owned())?;
    let mut parts = ct.split(';');
    let media = parts.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/x-protobuf") {
        return Err(format!(
            "Content-Type `{media}` is not application/x-protobuf (remote-write 1.0 or 2.0)\n"
        ));
    }
    let proto = parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("proto"))
        .map(|(_, v)| v.trim().trim_matches('"'));
    match proto {
        None | Some(PROTO_V1) => Ok(Version::V1),
        Some(PROTO_V2) => Ok(Version::V2),
        Some(other) => Err(format!(
            "proto={other} is not supported; this receiver reads {PROTO_V1} (1.0) and {PROTO_V2} (2.0)\n"
        )),
    }
}

/// The receiver's metrics: its `source`-labelled handles and its own
/// families, registered at 0.
pub struct ReceiverMetrics {
    /// `anomalyd_messages_received_total{source}` and friends.
    source: SourceMetrics,
    /// `anomalyd_remote_write_requests_total{code}`.
    requests: IntCounterVec,
    /// `anomalyd_remote_write_stale_markers_total`.
    stale: IntCounter,
    /// `anomalyd_remote_write_histograms_skipped_total`.
    histograms: IntCounter,
}

impl ReceiverMetrics {
    /// Registers the receiver's families in `metrics`' registry.
    pub fn new(metrics: &Metrics) -> Result<Self, prometheus::Error> {
        let registry = metrics.registry();
        let requests = IntCounterVec::new(
            Opts::new(
                "anomalyd_remote_write_requests_total",
                "Remote-write requests answered, by HTTP status code.",
            ),
            &["code"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        for code in ["204", "400", "413", "415", "503"] {
            requests.with_label_values(&[code]);
        }
        let stale = IntCounter::new(
            "anomalyd_remote_write_stale_markers_total",
            "Remote-write stale markers skipped (they end a series; they are not values).",
        )?;
        registry.register(Box::new(stale.clone()))?;
        let histograms = IntCounter::new(
            "anomalyd_remote_write_histograms_skipped_total",
            "Remote-write native histogram samples skipped (anomalyd learns float samples).",
        )?;
        registry.register(Box::new(histograms.clone()))?;
        Ok(Self {
            source: metrics.source(NAME, &REASONS),
            requests,
            stale,
            histograms,
        })
    }

    fn answered(&self, status: StatusCode) {
        self.requests.with_label_values(&[status.as_str()]).inc();
    }

    fn count(&self, tally: &Tally) {
        self.stale.inc_by(tally.stale);
        self.histograms.inc_by(tally.histograms);
        for (reason, n) in [
            ("bad_timestamp", tally.bad_timestamp),
            ("out_of_window", tally.out_of_window),
        ] {
            self.source.events_failed(reason, n);
        }
        for (reason, n) in [
            ("non_finite", tally.non_finite),
            ("created", tally.created),
            ("bucket", tally.bucket),
        ] {
            self.source.samples_skipped(reason, n);
        }
        for e in SeriesError::ALL {
            self.source.events_failed(e.reason(), tally.dropped(e));
        }
    }
}

/// What the request handlers share.
struct Receiver {
    feed: Feed,
    partition: SourcePartition,
    /// Counter rules and the types the sender declared.
    rules: Arc<StreamRules>,
    metrics: ReceiverMetrics,
    config: RemoteWriteConfig,
    queue_timeout: Duration,
    /// Requests being read or decoded (`max_concurrent_requests`).
    slots: Semaphore,
    /// Series keys shared with the shards (a lock per request, held only
    /// while its keys are looked up).
    keys: Mutex<KeyCache>,
    /// Closed (true) before the final checkpoint: no request dispatches
    /// after it, so every 204 is covered by the final snapshot. Handlers
    /// hold it shared from the check to the end of their dispatch.
    closed: RwLock<bool>,
    /// One warning per interval for refused requests and bad samples.
    log: RateLimit,
    requests: AtomicU64,
    events: AtomicU64,
}

impl Receiver {
    async fn write(self: &Arc<Self>, conn: Conn, headers: &HeaderMap, body: Body) -> Response {
        let received = Instant::now();
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.metrics.source.messages_received(1);
        let version = match negotiate(headers) {
            Ok(v) => v,
            Err(msg) => {
                return self.refuse(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    &msg,
                );
            }
        };
        let written = |r: Response, n: u64| match version {
            Version::V2 => written_headers(r, n),
            Version::V1 => r,
        };
        if self.feed.snapshot_failing() {
            let msg = "the state store cannot save snapshots; retry later\n";
            return written(self.retry_later("state_unavailable", msg), 0);
        }
        // A slot before the body is read: bodies in memory stay bounded.
        let slot = match tokio::time::timeout(self.queue_timeout, self.slots.acquire()).await {
            Ok(Ok(slot)) => slot,
            _ => {
                let msg = "every decoding slot is busy; retry later\n";
                return written(self.retry_later("busy", msg), 0);
            }
        };
        let limit = self.config.max_body_bytes;
        let body = {
            // A body that stalls past read_timeout_secs closes the
            // connection (crate::telemetry::web), and this future with it.
            let _reading = conn.reading_body();
            axum::body::to_bytes(body, limit).await
        };
        let body: Bytes = match body {
            Ok(b) => b,
            Err(e) => {
                let too_large = e
                    .into_inner()
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some();
                if !too_large {
                    // The connection broke mid-body: nobody reads this.
                    let msg = "the request body could not be read\n";
                    return written(
                        self.refuse(StatusCode::BAD_REQUEST, "unreadable_body", msg),
                        0,
                    );
                }
                let e = Reject::TooLarge { limit };
                self.metrics.source.event_failed(e.reason());
                return written(self.refuse(e.status(), e.reason(), &format!("{e}\n")), 0);
            }
        };
        // Decompressing and parsing are CPU work: on the blocking pool.
        let rx = Arc::clone(self);
        let decoded = tokio::task::spawn_blocking(move || {
            let limits = rx.config.request_limits(now_ms());
            decode(&body, version, limit, &limits, &rx.keys, &rx.rules)
        })
        .await;
        let decoded = match decoded {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                self.metrics.source.event_failed(e.reason());
                return written(self.refuse(e.status(), e.reason(), &format!("{e}\n")), 0);
            }
            Err(e) => {
                tracing::error!(error = %e, "A remote-write decode task failed.");
                let msg = "internal error while decoding; retry later\n";
                return written(self.retry_later("internal", msg), 0);
            }
        };
        let Decoded {
            events,
            tally,
            refused,
        } = decoded;
        let n = events.len() as u64;
        {
            let closed = self.closed.read().await;
            if *closed {
                return written(
                    self.retry_later("shutting_down", "shutting down; retry later\n"),
                    0,
                );
            }
            if n > 0 {
                let deadline = tokio::time::Instant::now() + self.queue_timeout;
                let dispatched = self
                    .feed
                    .dispatch_within(self.partition, events, received, deadline)
                    .await;
                if let Err(e) = dispatched {
                    // Nothing of the request was taken: Prometheus retries
                    // it, and its samples are counted then.
                    let msg = match e {
                        DispatchError::Full => "the processing queues are full; retry later\n",
                        DispatchError::Closed => "shutting down; retry later\n",
                    };
                    return written(self.retry_later("backpressure", msg), 0);
                }
                self.feed.advance(self.partition, now_ms());
            }
        }
        drop(slot);
        self.metrics.source.events_decoded(n);
        self.events.fetch_add(n, Ordering::Relaxed);
        self.metrics.count(&tally);
        if tally.skipped() > 0 {
            // Every empty summary exports NaN quantiles on every scrape:
            // data, not a problem worth a warning.
            tracing::debug!(
                non_finite = tally.non_finite,
                created = tally.created,
                bucket = tally.bucket,
                "Skipped remote-write samples that are not learned."
            );
        }
        if tally.failed() > 0
            && let Some(suppressed) = self.log.allow()
        {
            tracing::warn!(
                bad_timestamp = tally.bad_timestamp,
                out_of_window = tally.out_of_window,
                series_dropped_samples = tally.dropped.iter().sum::<u64>(),
                suppressed,
                "Skipped remote-write samples that cannot be learned."
            );
        }
        if let Some(msg) = refused {
            // The series within the limits were taken; this one was not.
            self.metrics.answered(StatusCode::BAD_REQUEST);
            let r = (StatusCode::BAD_REQUEST, format!("{msg}\n")).into_response();
            return written(r, n);
        }
        self.metrics.answered(StatusCode::NO_CONTENT);
        written(StatusCode::NO_CONTENT.into_response(), n)
    }

    /// Answers 503 with `Retry-After` (Prometheus retries).
    fn retry_later(&self, reason: &'static str, msg: &str) -> Response {
        let mut r = self.refuse(StatusCode::SERVICE_UNAVAILABLE, reason, msg);
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        r
    }

    /// Answers a refused request, counted, with a rate-limited warning.
    fn refuse(&self, status: StatusCode, reason: &'static str, msg: &str) -> Response {
        self.metrics.answered(status);
        if let Some(suppressed) = self.log.allow() {
            tracing::warn!(
                status = status.as_u16(),
                reason,
                error = msg.trim_end(),
                suppressed,
                "Refused a remote-write request."
            );
        }
        (status, msg.to_owned()).into_response()
    }
}

/// The headers a 2.0 sender reads: how much was written. Histograms and
/// exemplars never are.
fn written_headers(mut r: Response, samples: u64) -> Response {
    let h = r.headers_mut();
    h.insert(
        "x-prometheus-remote-write-samples-written",
        HeaderValue::from(samples),
    );
    for k in [
        "x-prometheus-remote-write-histograms-written",
        "x-prometheus-remote-write-exemplars-written",
    ] {
        h.insert(k, HeaderValue::from_static("0"));
    }
    r
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

async fn write(
    State(rx): State<Arc<Receiver>>,
    conn: Option<Extension<Conn>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let conn = conn.map(|Extension(c)| c).unwrap_or_default();
    rx.write(conn, &headers, body).await
}

/// A bound receiver, its state restored, not yet serving.
pub struct RemoteWriteSource {
    server: Server,
    receiver: Arc<Receiver>,
    /// How long requests in progress may finish after shutdown.
    drain: Duration,
}

impl RemoteWriteSource {
    /// Binds `config.listen_addr`, loads its web config and restores the
    /// receiver's snapshot (when a store holds one) before any request is
    /// served. `rules` are the ones `feed` was made with. The key cache
    /// holds up to `pipeline.max_series` keys.
    pub async fn bind(
        config: &RemoteWriteConfig,
        feed: Feed,
        rules: Arc<StreamRules>,
    ) -> Result<Self, SourceError> {
        let front = Front::load(config.web_config_file.as_deref()).map_err(|e| {
            SourceError::Setup(format!("sources.remote_write.web_config_file: {e}"))
        })?;
        let addr = &config.listen_addr;
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            SourceError::Setup(format!(
                "sources.remote_write.listen_addr = {addr}: cannot listen: {e}"
            ))
        })?;
        let partition = feed
            .partition(0, 0)
            .ok_or_else(|| SourceError::Setup("remote_write: no stream".into()))?;
        let metrics = ReceiverMetrics::new(feed.metrics())
            .map_err(|e| SourceError::Setup(format!("remote_write metrics: {e}")))?;
        if let Some(restored) = feed.restore(partition).await? {
            tracing::info!(
                series = restored.series,
                snapshot_ms = restored.position,
                "Restored the remote-write series; samples received after the snapshot were lost."
            );
        }
        let server = Server::new(
            ServerName::RemoteWrite,
            listener,
            front,
            config.limits(),
            Arc::clone(feed.web_metrics()),
        );
        // Requests in progress at shutdown finish within their read and
        // queue timeouts; the final checkpoint needs the rest of the grace.
        let drain = (Duration::from_secs(config.read_timeout_secs)
            + Duration::from_millis(config.queue_timeout_ms)
            + Duration::from_secs(1))
        .min(feed.shutdown_grace() / 2);
        let max_series = feed.max_series();
        Ok(Self {
            server,
            drain,
            receiver: Arc::new(Receiver {
                feed,
                partition,
                rules,
                metrics,
                config: config.clone(),
                queue_timeout: Duration::from_millis(config.queue_timeout_ms),
                slots: Semaphore::new(config.max_concurrent_requests),
                keys: Mutex::new(KeyCache::with_capacity(max_series)),
                closed: RwLock::new(false),
                log: RateLimit::default(),
                requests: AtomicU64::new(0),
                events: AtomicU64::new(0),
            }),
        })
    }

    /// Where it listens (the port is known even when 0 was asked for).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.server.local_addr()
    }

    /// Serves until `shutdown`, checkpointing on the way; then lets the
    /// requests in progress finish (within the drain bound), stops
    /// acknowledging and takes the final checkpoint. An error if that
    /// checkpoint's snapshot fails.
    pub async fn run(self, shutdown: CancellationToken) -> Result<SourceSummary, SourceError> {
        let rx = self.receiver;
        let router = Router::new()
            .route(PATH, post(write))
            .with_state(Arc::clone(&rx));
        tracing::info!(
            addr = %self.server.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string()),
            path = PATH,
            "Receiving Prometheus remote-write."
        );
        let server = self.server.serve(router, shutdown.clone(), self.drain);
        let mut server = std::pin::pin!(server);
        let mut ticker = tokio::time::interval(rx.feed.checkpoint_interval(SYNC_INTERVAL));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick is immediate
        loop {
            tokio::select! {
                () = &mut server => break,
                _ = ticker.tick() => {
                    rx.feed.checkpoint(None, false).await?;
                }
            }
        }
        // Whatever is still in a handler now is past the drain: it may not
        // acknowledge anything from here on.
        *rx.closed.write().await = true;
        tracing::info!("Stopped receiving remote-write; writing the final checkpoint.");
        let saved = rx.feed.checkpoint(None, false).await?;
        if saved.is_none() {
            return Err(SourceError::FinalSnapshot);
        }
        Ok(SourceSummary {
            messages: rx.requests.load(Ordering::Relaxed),
            events: rx.events.load(Ordering::Relaxed),
        })
    }
}

impl Source for RemoteWriteSource {
    fn name(&self) -> &'static str {
        NAME
    }

    fn listen_addr(&self) -> Option<SocketAddr> {
        self.local_addr().ok()
    }

    fn run(
        self: Box<Self>,
        shutdown: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = Result<SourceSummary, SourceError>> + Send>> {
        Box::pin((*self).run(shutdown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Problems;
    use crate::counter::CountersConfig;
    use prost::Message;

    fn body(request: &WriteRequest) -> Vec<u8> {
        snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .unwrap()
    }

    fn label(name: &str, value: &str) -> Label {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }

    fn sample(value: f64, timestamp: i64) -> Sample {
        Sample { value, timestamp }
    }

    fn series(labels: Vec<Label>, samples: Vec<Sample>) -> TimeSeries {
        TimeSeries {
            labels,
            samples,
            histograms: Vec::new(),
        }
    }

    fn run(body: &[u8], limit: usize) -> (Result<(), Reject>, Vec<Event>, Tally) {
        let rules = StreamRules::new(CountersConfig::default());
        run_with(body, Version::V1, limit, &rules)
    }

    fn run_with(
        body: &[u8],
        version: Version,
        limit: usize,
        rules: &StreamRules,
    ) -> (Result<(), Reject>, Vec<Event>, Tally) {
        let mut config = RemoteWriteConfig {
            max_sample_age_secs: 0,
            ..RemoteWriteConfig::default()
        };
        config.max_body_bytes = limit;
        let keys = Mutex::new(KeyCache::default());
        match decode(
            body,
            version,
            limit,
            &config.request_limits(now_ms()),
            &keys,
            rules,
        ) {
            Ok(d) => (Ok(()), d.events, d.tally),
            Err(e) => (Err(e), Vec::new(), Tally::default()),
        }
    }

    #[test]
    fn each_sample_is_an_event_of_name_plus_labels() {
        let req = WriteRequest {
            timeseries: vec![
                series(
                    vec![
                        label("__name__", "up"),
                        label("empty", ""),
                        label("job", "node"),
                    ],
                    vec![sample(1.0, 1_000), sample(0.0, 2_000)],
                ),
                series(
                    vec![label("room", "a"), label("__name__", "temp")],
                    vec![sample(21.5, 1_500)],
                ),
            ],
            ..WriteRequest::default()
        };
        let (r, out, tally) = run(&body(&req), 1 << 20);
        r.unwrap();
        assert_eq!(tally, Tally::default());
        let got: Vec<(String, i64, f64)> = out
            .iter()
            .map(|e| (e.series.to_string(), e.ts_ms, e.value))
            .collect();
        assert_eq!(
            got,
            [
                (r#"up{job="node"}"#.to_string(), 1_000, 1.0),
                (r#"up{job="node"}"#.to_string(), 2_000, 0.0),
                (r#"temp{room="a"}"#.to_string(), 1_500, 21.5),
            ]
        );
        assert_eq!(
            out[2].series,
            crate::event::SeriesKey::new("temp", [("room", "a")])
        );
    }

    #[test]
    fn stale_markers_and_unlearnable_samples_are_counted_not_emitted() {
        let stale = f64::from_bits(STALE_NAN_BITS);
        assert!(stale.is_nan());
        let req = WriteRequest {
            timeseries: vec![
                series(
                    vec![label("__name__", "m")],
                    vec![
                        sample(stale, 1),
                        sample(f64::NAN, 2),
                        sample(f64::INFINITY, 3),
                        sample(5.0, -1),
                        sample(5.0, crate::decode::MAX_TS_MS + 1),
                        sample(7.0, 4),
                    ],
                ),
                series(
                    vec![label("job", "no-name")],
                    vec![sample(1.0, 1), sample(2.0, 2)],
                ),
                series(
                    vec![label("__name__", "m"), label("", "x")],
                    vec![sample(1.0, 1)],
                ),
            ],
            ..WriteRequest::default()
        };
        let (r, out, tally) = run(&body(&req), 1 << 20);
        r.unwrap();
        assert_eq!(
            (tally.stale, tally.non_finite, tally.bad_timestamp),
            (1, 2, 2)
        );
        assert_eq!(tally.dropped(SeriesError::MissingName), 2);
        assert_eq!(tally.dropped(SeriesError::InvalidLabel), 1);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].ts_ms, out[0].value), (4, 7.0));
    }

    /// `_created` and bucket series are skipped by the counter rules, from
    /// their names or from the types the request declares (1.0 by family,
    /// 2.0 per series); declared types are remembered for later requests.
    #[test]
    fn skipped_series_are_counted_and_declared_types_remembered() {
        let named = |name: &str| {
            series(
                vec![label("__name__", name)],
                vec![sample(1.0, 1), sample(2.0, 2)],
            )
        };
        let req = WriteRequest {
            timeseries: vec![
                named("http_requests_created"),
                named("lat_bucket"),
                named("http_requests_total"),
                named("up"),
            ],
            metadata: vec![MetricMetadata {
                r#type: 1,
                metric_family_name: "bytes_in".into(),
            }],
        };
        let rules = StreamRules {
            config: CountersConfig::default(),
            metadata: Some(Arc::default()),
        };
        let (r, out, tally) = run_with(&body(&req), Version::V1, 1 << 20, &rules);
        r.unwrap();
        assert_eq!((tally.created, tally.bucket), (2, 2));
        assert_eq!(tally.skipped(), 4);
        assert_eq!(tally.failed(), 0);
        let names: Vec<&str> = out.iter().map(|e| e.series.name()).collect();
        assert_eq!(
            names,
            ["http_requests_total", "http_requests_total", "up", "up"]
        );
        assert_eq!(
            rules.classify("bytes_in"),
            Class::Learn(crate::counter::Kind::Rate)
        );
        // 2.0 declares types per series: a counter not named like one.
        let v2 = v2::Request {
            symbols: ["", "__name__", "packets_in"].map(String::from).to_vec(),
            timeseries: vec![v2::TimeSeries {
                labels_refs: vec![1, 2],
                samples: vec![v2::Sample {
                    value: 1.0,
                    timestamp: 1,
                    start_timestamp: 0,
                }],
                histograms: Vec::new(),
                metadata: Some(v2::Metadata { r#type: 1 }),
            }],
        };
        let v2_body = snap::raw::Encoder::new()
            .compress_vec(&v2.encode_to_vec())
            .unwrap();
        assert_eq!(
            rules.classify("packets_in"),
            Class::Learn(crate::counter::Kind::Value)
        );
        let (r, out, _) = run_with(&v2_body, Version::V2, 1 << 20, &rules);
        r.unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(
            rules.classify("packets_in"),
            Class::Learn(crate::counter::Kind::Rate)
        );
        // With the rules off, every series is learned.
        let off = StreamRules::new(CountersConfig {
            as_rate: false,
            ..CountersConfig::default()
        });
        let (_, out, tally) = run_with(&body(&req), Version::V1, 1 << 20, &off);
        assert_eq!((out.len(), tally.created + tally.bucket), (8, 0));
    }

    #[test]
    fn malformed_and_oversized_bodies_are_rejected_whole() {
        let req = WriteRequest {
            timeseries: vec![series(
                vec![label("__name__", "m"), label("pad", &"x".repeat(4000))],
                vec![sample(1.0, 1)],
            )],
            ..WriteRequest::default()
        };
        let good = body(&req);
        let (r, _, _) = run(b"not snappy at all", 1 << 20);
        assert!(matches!(r, Err(Reject::Snappy(_))), "{r:?}");
        // Valid snappy around bytes that are not a WriteRequest.
        let junk = snap::raw::Encoder::new()
            .compress_vec(&[0xff, 0xff, 0xff, 0xff])
            .unwrap();
        let (r, _, _) = run(&junk, 1 << 20);
        assert!(
            matches!(r, Err(Reject::Request(RequestError::Protobuf { .. }))),
            "{r:?}"
        );
        // Over the limit compressed, and (the padding compresses well)
        // over it only once decompressed.
        let (r, _, _) = run(&good, good.len() - 1);
        assert_eq!(
            r,
            Err(Reject::TooLarge {
                limit: good.len() - 1
            })
        );
        assert!(good.len() < 1000);
        let (r, out, _) = run(&good, 1000);
        assert_eq!(r, Err(Reject::TooLarge { limit: 1000 }));
        assert!(out.is_empty());
        let (r, out, _) = run(&good, 1 << 20);
        r.unwrap();
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn content_type_and_encoding_choose_the_protocol_or_refuse() {
        let h = |pairs: &[(&str, &str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(
                    axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            m
        };
        assert_eq!(negotiate(&h(&[])), Ok(Version::V1));
        assert_eq!(
            negotiate(&h(&[("content-type", "application/x-protobuf")])),
            Ok(Version::V1)
        );
        assert_eq!(
            negotiate(&h(&[(
                "content-type",
                "application/x-protobuf;proto=prometheus.WriteRequest"
            )])),
            Ok(Version::V1)
        );
        assert_eq!(
            negotiate(&h(&[(
                "content-type",
                "application/x-protobuf; proto=io.prometheus.write.v2.Request"
            )])),
            Ok(Version::V2)
        );
        for bad in [
            vec![("content-type", "application/json")],
            vec![(
                "content-type",
                "application/x-protobuf;proto=io.prometheus.write.v3.Request",
            )],
            vec![("content-encoding", "gzip")],
        ] {
            assert!(negotiate(&h(&bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_window_follows_the_receive_time() {
        let c = RemoteWriteConfig::default();
        let l = c.request_limits(1_000_000_000);
        assert_eq!(l.min_ts, 1_000_000_000 - 86_400_000);
        assert_eq!(l.max_ts, 1_000_000_000 + 600_000);
        let open = RemoteWriteConfig {
            max_sample_age_secs: 0,
            max_sample_future_secs: 0,
            ..c
        }
        .request_limits(5);
        assert_eq!((open.min_ts, open.max_ts), (i64::MIN, i64::MAX));
    }

    #[test]
    fn config_validation_names_keys() {
        let cfg = RemoteWriteConfig {
            enabled: true,
            listen_addr: "localhost".into(),
            max_body_bytes: 10,
            queue_timeout_ms: 0,
            max_concurrent_requests: 0,
            label_limit: 0,
            read_timeout_secs: 0,
            ..RemoteWriteConfig::default()
        };
        let mut p = Problems::new();
        cfg.validate("sources.remote_write", &mut p);
        let keys: Vec<_> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "sources.remote_write.listen_addr",
                "sources.remote_write.max_body_bytes",
                "sources.remote_write.queue_timeout_ms",
                "sources.remote_write.max_concurrent_requests",
                "sources.remote_write.label_limit",
                "sources.remote_write.read_timeout_secs",
            ]
        );
        let mut p = Problems::new();
        RemoteWriteConfig::default().validate("sources.remote_write", &mut p);
        assert!(p.is_empty(), "{p}");
    }
}
