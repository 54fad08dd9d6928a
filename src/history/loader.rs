//! The [`Loader`]: fetches the histories the shards ask for, a few at a
//! time, and hands each back to its shard.
//!
//! A shard thread calls [`Loader::request`] (it never waits on it); a task
//! on the daemon's runtime takes one of `max_concurrent_queries` slots,
//! runs the series' queries and sends a [`Loaded`] to the shard's
//! [`Reply`] channel, then nudges the shard awake. The slot travels with
//! the points and is freed when the shard has learned them, so at most
//! that many histories are held in memory at once. Whatever happens, a
//! request is answered within `max_wait_secs` of being made: a query that
//! fails, a Prometheus that is slow or down, a shutdown ([`Loader::cancel`])
//! all answer with an [`Outcome`] and leave the series to warm up live.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::HistoryConfig;
use super::prometheus::{HistoryError, Plan, PrometheusClient};
use crate::event::SeriesKey;
use crate::telemetry::RateLimit;
use crate::telemetry::metrics::Metrics;

/// How a series' history request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// History learned.
    Warmed,
    /// Prometheus has no usable history of the series.
    Empty,
    /// A query failed.
    Failed,
    /// A query took longer than `query_timeout_secs`, or the whole history
    /// longer than `max_wait_secs`.
    Timeout,
    /// More than `max_held_events` live events arrived while it loaded.
    Overflow,
    /// The daemon is shutting down.
    Cancelled,
}

impl Outcome {
    /// Every outcome, for registering the counter's labels.
    pub const ALL: [Outcome; 6] = [
        Self::Warmed,
        Self::Empty,
        Self::Failed,
        Self::Timeout,
        Self::Overflow,
        Self::Cancelled,
    ];

    /// The `outcome` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Warmed => "warmed",
            Self::Empty => "empty",
            Self::Failed => "failed",
            Self::Timeout => "timeout",
            Self::Overflow => "overflow",
            Self::Cancelled => "cancelled",
        }
    }
}

/// The history metrics, registered (at 0) whether or not `[history]` is
/// on, so dashboards and rules see the same families everywhere.
#[derive(Debug)]
pub struct HistoryMetrics {
    /// `anomalyd_history_series_total{outcome}`.
    series: IntCounterVec,
    /// `anomalyd_history_points_learned_total`.
    points: IntCounter,
    /// `anomalyd_history_queries_total{outcome}`.
    queries: IntCounterVec,
    /// `anomalyd_history_query_seconds`.
    seconds: Histogram,
    /// `anomalyd_history_series_loading`.
    loading: IntGauge,
    /// `anomalyd_history_events_held_total`.
    held: IntCounter,
}

impl HistoryMetrics {
    /// Registers the families in `metrics`' registry.
    pub fn new(metrics: &Metrics) -> Result<Self, prometheus::Error> {
        let r = metrics.registry();
        let series = IntCounterVec::new(
            Opts::new(
                "anomalyd_history_series_total",
                "New series whose history was requested from Prometheus, by outcome (warmed: learned it).",
            ),
            &["outcome"],
        )?;
        r.register(Box::new(series.clone()))?;
        for o in Outcome::ALL {
            series.with_label_values(&[o.as_str()]);
        }
        let points = IntCounter::new(
            "anomalyd_history_points_learned_total",
            "Points of history learned by new series (no alert, no sink).",
        )?;
        r.register(Box::new(points.clone()))?;
        let queries = IntCounterVec::new(
            Opts::new(
                "anomalyd_history_queries_total",
                "Prometheus API queries made for histories, by outcome.",
            ),
            &["outcome"],
        )?;
        r.register(Box::new(queries.clone()))?;
        for o in ["ok", "error", "timeout"] {
            queries.with_label_values(&[o]);
        }
        let seconds = Histogram::with_opts(
            HistogramOpts::new(
                "anomalyd_history_query_seconds",
                "Duration of one Prometheus API query made for a history.",
            )
            .buckets((0..14).map(|i| 0.005 * f64::from(1u32 << i)).collect()),
        )?;
        r.register(Box::new(seconds.clone()))?;
        let loading = IntGauge::new(
            "anomalyd_history_series_loading",
            "Series waiting for their history now (their live events are held).",
        )?;
        r.register(Box::new(loading.clone()))?;
        let held = IntCounter::new(
            "anomalyd_history_events_held_total",
            "Live events held while their series' history loaded (processed after it, in order).",
        )?;
        r.register(Box::new(held.clone()))?;
        Ok(Self {
            series,
            points,
            queries,
            seconds,
            loading,
            held,
        })
    }

    /// One query ended.
    pub(super) fn query_done<T>(&self, result: &Result<T, HistoryError>, took: Duration) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) if e.is_timeout() => "timeout",
            Err(_) => "error",
        };
        self.queries.with_label_values(&[outcome]).inc();
        self.seconds.observe(took.as_secs_f64());
    }

    /// One series' request ended with `outcome`, `points` learned.
    pub fn series_done(&self, outcome: Outcome, points: u64) {
        self.series.with_label_values(&[outcome.as_str()]).inc();
        self.points.inc_by(points);
    }

    /// Moves the number of series loading now by `delta`.
    pub fn add_loading(&self, delta: i64) {
        self.loading.add(delta);
    }

    /// `n` live events held.
    pub fn held(&self, n: u64) {
        self.held.inc_by(n);
    }
}

/// A history (or why there is none), on its way to its shard.
pub struct Loaded {
    /// The series.
    pub key: SeriesKey,
    /// The shard's number for this request (a series given up and asked
    /// again must not take the answer to the first request).
    pub id: u64,
    /// The points, oldest first, or how the request ended without them.
    pub result: Result<Vec<(i64, f64)>, Outcome>,
    /// The query slot, freed when this is dropped (after learning).
    _slot: Option<OwnedSemaphorePermit>,
}

/// Where a shard receives its histories.
#[derive(Clone)]
pub struct Reply {
    tx: mpsc::Sender<Loaded>,
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl Reply {
    /// A reply path: `tx`, then `wake()` to get the shard to look (it must
    /// not block; a shard that is busy looks anyway before its next work).
    pub fn new(tx: mpsc::Sender<Loaded>, wake: Arc<dyn Fn() + Send + Sync>) -> Self {
        Self { tx, wake }
    }

    fn send(&self, loaded: Loaded) {
        // A shard that stopped needs no answer.
        if self.tx.send(loaded).is_ok() {
            (self.wake)();
        }
    }
}

/// Fetches histories for the shards (see the module docs).
pub struct Loader {
    client: Arc<PrometheusClient>,
    plan: Arc<Plan>,
    runtime: tokio::runtime::Handle,
    slots: Arc<Semaphore>,
    max_wait: Duration,
    max_held: usize,
    cancel: CancellationToken,
    metrics: Arc<HistoryMetrics>,
    log: Arc<RateLimit>,
}

impl Loader {
    /// A loader for `config` on the current runtime (call inside one).
    pub fn new(
        config: &HistoryConfig,
        client: PrometheusClient,
        metrics: Arc<HistoryMetrics>,
    ) -> Self {
        Self {
            client: Arc::new(client),
            plan: Arc::new(Plan::new(config)),
            runtime: tokio::runtime::Handle::current(),
            slots: Arc::new(Semaphore::new(config.max_concurrent_queries)),
            max_wait: Duration::from_secs(config.max_wait_secs),
            max_held: config.max_held_events,
            cancel: CancellationToken::new(),
            metrics,
            log: Arc::new(RateLimit::default()),
        }
    }

    /// Live events a loading series may hold.
    pub fn max_held(&self) -> usize {
        self.max_held
    }

    /// How long after a request its answer may take at most (the shards
    /// stop waiting a little later, should a task have died).
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }

    /// The metrics.
    pub fn metrics(&self) -> &HistoryMetrics {
        &self.metrics
    }

    /// Answers every request in flight and every later one with
    /// [`Outcome::Cancelled`] (the drain at shutdown).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Whether [`Loader::cancel`] was called: every answer is then
    /// immediate.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Fetches the history of `key` up to `end_ms` (inclusive) and sends it
    /// to `reply` as request `id`. Returns at once.
    pub fn request(&self, key: SeriesKey, end_ms: i64, id: u64, reply: Reply) {
        let client = Arc::clone(&self.client);
        let plan = Arc::clone(&self.plan);
        let slots = Arc::clone(&self.slots);
        let cancel = self.cancel.clone();
        let max_wait = self.max_wait;
        let log = Arc::clone(&self.log);
        self.runtime.spawn(async move {
            let started = Instant::now();
            let work = async {
                // The semaphore is never closed.
                let slot = slots.acquire_owned().await.ok();
                let points = client.series_history(&key, end_ms, &plan).await;
                (slot, points)
            };
            let (slot, result) = tokio::select! {
                _ = cancel.cancelled() => (None, Err(Outcome::Cancelled)),
                r = tokio::time::timeout(max_wait, work) => match r {
                    Ok((slot, Ok(points))) if points.is_empty() => (slot, Err(Outcome::Empty)),
                    Ok((slot, Ok(points))) => (slot, Ok(points)),
                    Ok((_, Err(e))) => {
                        if let Some(suppressed) = log.allow() {
                            tracing::warn!(
                                series = %key,
                                error = %e,
                                suppressed,
                                "Could not load the series' history from Prometheus; it warms up live."
                            );
                        }
                        let outcome = if e.is_timeout() {
                            Outcome::Timeout
                        } else {
                            Outcome::Failed
                        };
                        (None, Err(outcome))
                    }
                    Err(_) => {
                        if let Some(suppressed) = log.allow() {
                            tracing::warn!(
                                series = %key,
                                waited_secs = started.elapsed().as_secs(),
                                suppressed,
                                "No history from Prometheus within history.max_wait_secs; the series warms up live."
                            );
                        }
                        (None, Err(Outcome::Timeout))
                    }
                },
            };
            reply.send(Loaded {
                key,
                id,
                result,
                _slot: slot,
            });
        });
    }
}
