//! The Prometheus remote-write receiver: a source without Kafka.
//!
//! Prometheus pushes every sample it scrapes to `POST /api/v1/write`
//! (`remote_write` in prometheus.yml). This module serves that endpoint on
//! its own `listen_addr` and speaks protocol 1.0: the body is a
//! snappy-compressed (block format) protobuf `WriteRequest`. Each sample
//! becomes one event of the series "metric name + labels". The answers are
//! the ones Prometheus acts on:
//!
//! | answer | when | Prometheus |
//! |---|---|---|
//! | 204 | the samples are dispatched to the shards (bad ones counted) | next batch |
//! | 400 | the body is not snappy, or not a `WriteRequest` | drops the batch |
//! | 413 | the body, compressed or not, exceeds `max_body_bytes` | drops the batch |
//! | 415 | `Content-Encoding` is not `snappy` | drops the batch |
//! | 503 + `Retry-After` | the shard queues stayed full for `queue_timeout_ms` | retries with backoff |
//!
//! 503 rather than 429: Prometheus 2.x retries 429 only when
//! `retry_on_http_429` is set, but always retries 5xx.
//!
//! **State.** The receiver is one partition, `remote_write/0`; its
//! position is the receive time (Unix ms) of the last dispatched request.
//! With a state store its series are snapshotted every
//! `state.snapshot_interval_secs` and restored at start. Prometheus cannot
//! resend the past, so samples accepted after the last snapshot are lost
//! in a crash and those series relearn them (a clean shutdown snapshots
//! everything). Per-sample problems are counted, never fatal: stale
//! markers (`anomalyd_remote_write_stale_markers_total`); NaN and ±Inf
//! values (the quantiles of every empty summary) and the series the
//! counter rules skip, as
//! `anomalyd_samples_skipped_total{source="remote_write",reason}`
//! (`non_finite`, `created`, `bucket`: data, not failures, logged at debug
//! only); and `anomalyd_events_failed_total{source="remote_write",reason}`
//! for timestamps outside 1970..9999 and series without a name.
//!
//! **Types.** Prometheus sends each metric family's declared type
//! (`MetricMetadata`) every minute, in requests of their own. The receiver
//! keeps them ([`crate::counter::Metadata`]) so that a counter is learned
//! as a rate even when its name does not say so; see [`crate::counter`].

mod proto;

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use prometheus::{IntCounter, IntCounterVec, Opts};
use prost::Message;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use proto::{Label, MetricMetadata, Sample, TimeSeries, WriteRequest};

use super::{Feed, Source, SourceError, SourceSummary};
use crate::config::Problems;
use crate::counter::{Class, CountersConfig, MetricType, SkipReason, StreamRules};
use crate::event::{Event, KeyCache};
use crate::pipeline::DispatchError;
use crate::state::SourcePartition;
use crate::telemetry::RateLimit;
use crate::telemetry::metrics::{Metrics, SourceMetrics};

/// The `source` label of the receiver's metrics.
pub const NAME: &str = "remote_write";

/// The receiver's stream name: its state is `remote_write/0`.
pub const STREAM: &str = "remote_write";

/// The path Prometheus posts to.
pub const PATH: &str = "/api/v1/write";

/// Bits of Prometheus' stale marker, a NaN that means "this series is
/// gone" rather than a value.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Failure reasons of this source beyond the decoder's
/// (`anomalyd_events_failed_total{source="remote_write",reason}`).
pub const REASONS: [&str; 3] = ["invalid_snappy", "invalid_protobuf", "missing_name"];

/// How often the receiver checkpoints without a state store: the barrier
/// is what evicts idle series.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// The `[sources.remote_write]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// Serve `POST /api/v1/write`.
    pub enabled: bool,
    /// Address to listen on, `ip:port`. Loopback by default; use
    /// `0.0.0.0:9201` for a Prometheus on another host.
    pub listen_addr: String,
    /// Largest request body accepted, compressed and decompressed (413
    /// beyond). Prometheus sends at most `max_samples_per_send` samples
    /// (2,000 by default) per request, far below the default.
    pub max_body_bytes: usize,
    /// How long a request may wait for room in the shard queues before it
    /// is answered 503 (Prometheus then retries with backoff).
    pub queue_timeout_ms: u64,
    /// Which series are counters (learned as rates) or skipped: from the
    /// types Prometheus declares, else from their names.
    pub counters: CountersConfig,
}

impl Default for RemoteWriteConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen_addr: "127.0.0.1:9201".into(),
            max_body_bytes: 16 * 1024 * 1024,
            queue_timeout_ms: 1_000,
            counters: CountersConfig::default(),
        }
    }
}

impl RemoteWriteConfig {
    /// Records every problem, with keys under `prefix`.
    pub fn validate(&self, prefix: &str, problems: &mut Problems) {
        if let Err(e) = self.listen_addr.parse::<SocketAddr>() {
            problems.push(
                format!("{prefix}.listen_addr"),
                format!(
                    "`{}` is not an `ip:port` address ({e}); write e.g. `127.0.0.1:9201`",
                    self.listen_addr
                ),
            );
        }
        problems.check(
            (1024..=1 << 30).contains(&self.max_body_bytes),
            format!("{prefix}.max_body_bytes"),
            format!(
                "{} is outside 1024..=1073741824; the default is 16777216 (16 MiB)",
                self.max_body_bytes
            ),
        );
        problems.check(
            (1..=60_000).contains(&self.queue_timeout_ms),
            format!("{prefix}.queue_timeout_ms"),
            format!(
                "{} is outside 1..=60000; keep it well below Prometheus' remote_timeout (30 s)",
                self.queue_timeout_ms
            ),
        );
    }
}

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
    /// Not a `WriteRequest`.
    #[error("the body is not a remote-write WriteRequest: {0}")]
    Protobuf(String),
}

impl Reject {
    fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::Snappy(_) => "invalid_snappy",
            Self::Protobuf(_) => "invalid_protobuf",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// Samples of one request that did not become events, by cause.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Stale markers (skipped: they end a series, they are not values).
    pub stale: u64,
    /// NaN (other than the stale marker) or ±Inf.
    pub non_finite: u64,
    /// Samples of `_created` series (see [`crate::counter`]).
    pub created: u64,
    /// Samples of histogram buckets, with `counters.skip_buckets` on.
    pub bucket: u64,
    /// Timestamps outside 1970-01-01 ..= 9999-12-31.
    pub bad_timestamp: u64,
    /// Samples of series without a `__name__` (or with an empty label
    /// name).
    pub missing_name: u64,
}

/// Decodes a request body (snappy, then protobuf) into events, one per
/// sample, appended to `out`; skipped samples are counted in `tally`.
/// `rules` say which series are skipped (their declared types are
/// recorded in them first).
pub fn decode(
    body: &[u8],
    limit: usize,
    keys: &mut KeyCache,
    rules: &StreamRules,
    out: &mut Vec<Event>,
    tally: &mut Tally,
) -> Result<(), Reject> {
    let request = parse(body, limit)?;
    record_metadata(&request, rules);
    to_events(&request, keys, rules, out, tally);
    Ok(())
}

/// Records the metric types `request` declares in `rules` (when they keep
/// declared types).
pub fn record_metadata(request: &WriteRequest, rules: &StreamRules) {
    if let Some(m) = &rules.metadata
        && rules.config.use_metadata
        && !request.metadata.is_empty()
    {
        m.update(request.metadata.iter().map(|d| {
            (
                d.metric_family_name.as_str(),
                MetricType::from_remote_write(d.r#type),
            )
        }));
    }
}

/// Decompresses and parses a request body.
pub fn parse(body: &[u8], limit: usize) -> Result<WriteRequest, Reject> {
    if body.len() > limit {
        return Err(Reject::TooLarge { limit });
    }
    // The decompressed length is in the header: check it before allocating.
    let len = snap::raw::decompress_len(body).map_err(|e| Reject::Snappy(e.to_string()))?;
    if len > limit {
        return Err(Reject::TooLarge { limit });
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| Reject::Snappy(e.to_string()))?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| Reject::Protobuf(e.to_string()))
}

/// One event per learnable sample of `request`, appended to `out`; the
/// others are counted in `tally`. The series `rules` skip are classified
/// once per series of the request, not per sample.
pub fn to_events(
    request: &WriteRequest,
    keys: &mut KeyCache,
    rules: &StreamRules,
    out: &mut Vec<Event>,
    tally: &mut Tally,
) {
    out.reserve(request.timeseries.iter().map(|t| t.samples.len()).sum());
    let mut labels: Vec<(Cow<'_, str>, Cow<'_, str>)> = Vec::new();
    for ts in &request.timeseries {
        labels.clear();
        let mut name = None;
        let mut bad_label = false;
        for l in &ts.labels {
            if l.name == "__name__" {
                name = Some(l.value.as_str());
            } else if l.name.is_empty() {
                bad_label = true;
            } else if !l.value.is_empty() {
                // An empty value means "no such label" in Prometheus.
                labels.push((Cow::Borrowed(&l.name), Cow::Borrowed(&l.value)));
            }
        }
        let name = match name {
            Some(n) if !n.is_empty() && !bad_label => n,
            _ => {
                tally.missing_name += ts.samples.len() as u64;
                continue;
            }
        };
        // Only these suffixes can be skipped: the others need no lookup.
        if (name.ends_with("_created") || name.ends_with("_bucket"))
            && let Class::Skip(reason) = rules.classify(name)
        {
            let n = ts.samples.len() as u64;
            match reason {
                SkipReason::Created => tally.created += n,
                SkipReason::Bucket => tally.bucket += n,
            }
            continue;
        }
        let mut key = None;
        for s in &ts.samples {
            if s.value.to_bits() == STALE_NAN_BITS {
                tally.stale += 1;
                continue;
            }
            if !s.value.is_finite() {
                tally.non_finite += 1;
                continue;
            }
            if !(0..=crate::decode::MAX_TS_MS).contains(&s.timestamp) {
                tally.bad_timestamp += 1;
                continue;
            }
            let series = key
                .get_or_insert_with(|| keys.key(name, &mut labels))
                .clone();
            out.push(Event {
                series,
                ts_ms: s.timestamp,
                value: s.value,
            });
        }
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
        Ok(Self {
            source: metrics.source(NAME, &REASONS),
            requests,
            stale,
        })
    }

    fn answered(&self, status: StatusCode) {
        self.requests.with_label_values(&[status.as_str()]).inc();
    }

    fn count(&self, tally: &Tally) {
        self.stale.inc_by(tally.stale);
        for (reason, n) in [
            ("bad_timestamp", tally.bad_timestamp),
            ("missing_name", tally.missing_name),
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
    }
}

/// What the request handlers share.
struct Receiver {
    feed: Feed,
    partition: SourcePartition,
    /// Counter rules and the types the sender declared.
    rules: Arc<StreamRules>,
    metrics: ReceiverMetrics,
    limit: usize,
    queue_timeout: Duration,
    /// Series keys shared with the shards (a lock per request, held only
    /// while its keys are looked up).
    keys: Mutex<KeyCache>,
    /// One warning per interval for refused requests and bad samples.
    log: RateLimit,
    requests: AtomicU64,
    events: AtomicU64,
}

impl Receiver {
    async fn write(&self, headers: &HeaderMap, body: Body) -> Response {
        let received = Instant::now();
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.metrics.source.messages_received(1);
        if let Some(enc) = headers.get(header::CONTENT_ENCODING)
            && !enc.as_bytes().eq_ignore_ascii_case(b"snappy")
        {
            let msg = "Content-Encoding must be snappy (remote-write 1.0)\n";
            return self.refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                msg,
            );
        }
        // Reading stops at the limit, so an error here is the limit (a
        // connection that breaks mid-body gets no answer anyway).
        let body = match axum::body::to_bytes(body, self.limit).await {
            Ok(b) => b,
            Err(_) => {
                let e = Reject::TooLarge { limit: self.limit };
                self.metrics.source.event_failed(e.reason());
                return self.refuse(e.status(), e.reason(), &format!("{e}\n"));
            }
        };
        let request = match parse(&body, self.limit) {
            Ok(r) => r,
            Err(e) => {
                self.metrics.source.event_failed(e.reason());
                return self.refuse(e.status(), e.reason(), &format!("{e}\n"));
            }
        };
        let mut events = Vec::new();
        let mut tally = Tally::default();
        record_metadata(&request, &self.rules);
        {
            // Decompressing and parsing ran unlocked; only the key lookups
            // share the cache.
            let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            to_events(&request, &mut keys, &self.rules, &mut events, &mut tally);
        }
        let n = events.len() as u64;
        if n > 0 {
            let deadline = tokio::time::Instant::now() + self.queue_timeout;
            let dispatched = self
                .feed
                .dispatch_within(self.partition, events, received, deadline)
                .await;
            if let Err(e) = dispatched {
                // Nothing of the request was taken: Prometheus retries it,
                // and its samples are counted then.
                let msg = match e {
                    DispatchError::Full => "the processing queues are full; retry later\n",
                    DispatchError::Closed => "shutting down; retry later\n",
                };
                let mut r = self.refuse(StatusCode::SERVICE_UNAVAILABLE, "backpressure", msg);
                r.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
                return r;
            }
            self.feed.advance(self.partition, now_ms());
            self.metrics.source.events_decoded(n);
            self.events.fetch_add(n, Ordering::Relaxed);
        }
        self.metrics.count(&tally);
        if tally.non_finite + tally.created + tally.bucket > 0 {
            // Every empty summary exports NaN quantiles on every scrape:
            // data, not a problem worth a warning.
            tracing::debug!(
                non_finite = tally.non_finite,
                created = tally.created,
                bucket = tally.bucket,
                "Skipped remote-write samples that are not learned."
            );
        }
        let bad = tally.bad_timestamp + tally.missing_name;
        if bad > 0
            && let Some(suppressed) = self.log.allow()
        {
            tracing::warn!(
                bad_timestamp = tally.bad_timestamp,
                missing_name = tally.missing_name,
                suppressed,
                "Skipped remote-write samples that cannot be learned."
            );
        }
        self.metrics.answered(StatusCode::NO_CONTENT);
        StatusCode::NO_CONTENT.into_response()
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

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

async fn write(State(rx): State<Arc<Receiver>>, headers: HeaderMap, body: Body) -> Response {
    rx.write(&headers, body).await
}

/// A bound receiver, its state restored, not yet serving.
pub struct RemoteWriteSource {
    listener: TcpListener,
    receiver: Arc<Receiver>,
}

impl RemoteWriteSource {
    /// Binds `config.listen_addr` and restores the receiver's snapshot
    /// (when a store holds one) before any request is served. `rules` are
    /// the ones `feed` was made with.
    pub async fn bind(
        config: &RemoteWriteConfig,
        feed: Feed,
        rules: Arc<StreamRules>,
    ) -> Result<Self, SourceError> {
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
        Ok(Self {
            listener,
            receiver: Arc::new(Receiver {
                feed,
                partition,
                rules,
                metrics,
                limit: config.max_body_bytes,
                queue_timeout: Duration::from_millis(config.queue_timeout_ms),
                keys: Mutex::new(KeyCache::default()),
                log: RateLimit::default(),
                requests: AtomicU64::new(0),
                events: AtomicU64::new(0),
            }),
        })
    }

    /// Where it listens (the port is known even when 0 was asked for).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown`, checkpointing on the way; then finishes the
    /// requests in flight and takes the final checkpoint.
    pub async fn run(self, shutdown: CancellationToken) -> Result<SourceSummary, SourceError> {
        let rx = self.receiver;
        let router = Router::new()
            .route(PATH, post(write))
            .with_state(Arc::clone(&rx));
        tracing::info!(
            addr = %self.listener.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string()),
            path = PATH,
            "Receiving Prometheus remote-write."
        );
        let server = axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        let mut server = std::pin::pin!(server.into_future());
        let mut ticker = tokio::time::interval(rx.feed.checkpoint_interval(SYNC_INTERVAL));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick is immediate
        let served = loop {
            tokio::select! {
                r = &mut server => break r,
                _ = ticker.tick() => {
                    rx.feed.checkpoint(None, false).await?;
                }
            }
        };
        if let Err(e) = served {
            tracing::error!(error = %e, "The remote-write server failed.");
        }
        tracing::info!("Stopped receiving remote-write; writing the final checkpoint.");
        rx.feed.checkpoint(None, false).await?;
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

    fn run(body: &[u8], limit: usize) -> (Result<(), Reject>, Vec<Event>, Tally) {
        let rules = StreamRules::new(CountersConfig::default());
        run_with(body, limit, &rules)
    }

    fn run_with(
        body: &[u8],
        limit: usize,
        rules: &StreamRules,
    ) -> (Result<(), Reject>, Vec<Event>, Tally) {
        let (mut out, mut tally) = (Vec::new(), Tally::default());
        let r = decode(
            body,
            limit,
            &mut KeyCache::default(),
            rules,
            &mut out,
            &mut tally,
        );
        (r, out, tally)
    }

    #[test]
    fn each_sample_is_an_event_of_name_plus_labels() {
        let req = WriteRequest {
            timeseries: vec![
                TimeSeries {
                    labels: vec![
                        label("__name__", "up"),
                        label("empty", ""),
                        label("job", "node"),
                    ],
                    samples: vec![sample(1.0, 1_000), sample(0.0, 2_000)],
                },
                TimeSeries {
                    labels: vec![label("__name__", "temp"), label("room", "a")],
                    samples: vec![sample(21.5, 1_500)],
                },
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
    }

    #[test]
    fn stale_markers_and_unlearnable_samples_are_counted_not_emitted() {
        let stale = f64::from_bits(STALE_NAN_BITS);
        assert!(stale.is_nan());
        let req = WriteRequest {
            timeseries: vec![
                TimeSeries {
                    labels: vec![label("__name__", "m")],
                    samples: vec![
                        sample(stale, 1),
                        sample(f64::NAN, 2),
                        sample(f64::INFINITY, 3),
                        sample(5.0, -1),
                        sample(5.0, crate::decode::MAX_TS_MS + 1),
                        sample(7.0, 4),
                    ],
                },
                TimeSeries {
                    labels: vec![label("job", "no-name")],
                    samples: vec![sample(1.0, 1), sample(2.0, 2)],
                },
                TimeSeries {
                    labels: vec![label("__name__", "m"), label("", "x")],
                    samples: vec![sample(1.0, 1)],
                },
            ],
            ..WriteRequest::default()
        };
        let (r, out, tally) = run(&body(&req), 1 << 20);
        r.unwrap();
        assert_eq!(
            tally,
            Tally {
                stale: 1,
                non_finite: 2,
                bad_timestamp: 2,
                missing_name: 3,
                ..Tally::default()
            }
        );
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].ts_ms, out[0].value), (4, 7.0));
    }

    /// `_created` and bucket series are skipped by the counter rules, from
    /// their names or from the types the request declares; declared types
    /// are remembered for later requests.
    #[test]
    fn skipped_series_are_counted_and_declared_types_remembered() {
        let series = |name: &str| TimeSeries {
            labels: vec![label("__name__", name)],
            samples: vec![sample(1.0, 1), sample(2.0, 2)],
        };
        let req = WriteRequest {
            timeseries: vec![
                series("http_requests_created"),
                series("lat_bucket"),
                series("http_requests_total"),
                series("up"),
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
        let (r, out, tally) = run_with(&body(&req), 1 << 20, &rules);
        r.unwrap();
        assert_eq!((tally.created, tally.bucket), (2, 2));
        let names: Vec<&str> = out.iter().map(|e| e.series.name()).collect();
        assert_eq!(
            names,
            ["http_requests_total", "http_requests_total", "up", "up"]
        );
        assert_eq!(
            rules.classify("bytes_in"),
            Class::Learn(crate::counter::Kind::Rate)
        );
        // With the rules off, every series is learned.
        let off = StreamRules::new(CountersConfig {
            as_rate: false,
            ..CountersConfig::default()
        });
        let (_, out, tally) = run_with(&body(&req), 1 << 20, &off);
        assert_eq!((out.len(), tally.created + tally.bucket), (8, 0));
    }

    #[test]
    fn malformed_and_oversized_bodies_are_rejected_whole() {
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![label("__name__", "m"), label("pad", &"x".repeat(4000))],
                samples: vec![sample(1.0, 1)],
            }],
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
        assert!(matches!(r, Err(Reject::Protobuf(_))), "{r:?}");
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
    fn config_validation_names_keys() {
        let cfg = RemoteWriteConfig {
            enabled: true,
            listen_addr: "localhost".into(),
            max_body_bytes: 10,
            queue_timeout_ms: 0,
            counters: CountersConfig::default(),
        };
        let mut p = Problems::new();
        cfg.validate("sources.remote_write", &mut p);
        let keys: Vec<_> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "sources.remote_write.listen_addr",
                "sources.remote_write.max_body_bytes",
                "sources.remote_write.queue_timeout_ms"
            ]
        );
        let mut p = Problems::new();
        RemoteWriteConfig::default().validate("sources.remote_write", &mut p);
        assert!(p.is_empty(), "{p}");
    }
}
