//! Runs each sink in its own task behind its own bounded queue.
//!
//! This module owns the delivery loop: taking batches off the queue,
//! calling [`AlertSink::send`], retrying with backoff, counting every
//! outcome, heartbeats, and the drain at shutdown. It does not know any
//! concrete sink.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::SinkMetrics;
use super::queue::AlertQueue;
use super::{AlertSink, DropReason, Messages, RetryConfig};
use crate::alert::Notice;
use crate::telemetry::RateLimit;

/// Queue and retry settings of one running sink.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkOptions {
    /// Alerts held while the sink is busy or down; beyond it the overflow
    /// policy gives one up (see the `queue` module docs).
    pub queue_capacity: usize,
    /// Alerts handed to one [`AlertSink::send`] call.
    pub max_batch_alerts: usize,
    /// Backoff between attempts.
    pub retry: RetryConfig,
    /// Seed of the jitter generator. `None` seeds from the process id and
    /// the clock, so replicas that fail together spread their retries.
    pub jitter_seed: Option<u64>,
    /// Which messages the sink takes: per-series alerts, incident
    /// notifications, or both ([`Sinks::submit`] routes by it).
    pub messages: Messages,
}

impl Default for SinkOptions {
    fn default() -> Self {
        Self {
            queue_capacity: 10_000,
            max_batch_alerts: 100,
            retry: RetryConfig::default(),
            jitter_seed: None,
            messages: Messages::Both,
        }
    }
}

/// What one sink has done so far. At rest (nothing in flight),
/// `submitted == delivered + dropped + queued`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkStats {
    /// The sink's name.
    pub name: &'static str,
    /// Alerts handed to this sink.
    pub submitted: u64,
    /// Alerts the sink accepted.
    pub delivered: u64,
    /// Alerts given up (any reason).
    pub dropped: u64,
    /// Alerts waiting in the queue.
    pub queued: usize,
    /// Alerts in the batch being sent or retried.
    pub in_flight: usize,
}

/// Mutable state behind the lock.
#[derive(Debug)]
struct State {
    queue: AlertQueue,
    /// Size of the batch currently being delivered.
    in_flight: usize,
    /// Set by shutdown: no more submissions; the runner exits once empty.
    closed: bool,
}

/// The sink's [`AlertSink::discarded`], type-erased so the handle is not
/// generic.
type DiscardHook = Box<dyn Fn(&Notice, DropReason) + Send + Sync>;

/// State shared by the handle (submit side) and the runner task.
struct Shared {
    name: &'static str,
    state: Mutex<State>,
    /// Wakes the runner when something is queued or shutdown begins.
    wake: Notify,
    /// queued + in flight, for `flush` to wait on.
    pending: watch::Sender<usize>,
    submitted: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    metrics: SinkMetrics,
    /// One limiter per drop reason, so a flood of one kind cannot hide
    /// another.
    drop_log: [RateLimit; DropReason::ALL.len()],
    fail_log: RateLimit,
    /// The sink's [`AlertSink::discarded`].
    on_discard: DiscardHook,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the queue half-updated
        // in a way that matters more than losing the daemon: keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes queue length and pending count; call with the lock held so
    /// updates cannot be reordered.
    fn publish(&self, st: &State) {
        let queued = st.queue.len();
        self.metrics
            .queue_length()
            .set(i64::try_from(queued).unwrap_or(i64::MAX));
        self.pending.send_replace(queued + st.in_flight);
    }

    /// Counts, logs and reports alerts given up for `reason`.
    fn give_up(&self, alerts: &[Notice], reason: DropReason) {
        if alerts.is_empty() {
            return;
        }
        let n = alerts.len() as u64;
        self.dropped.fetch_add(n, Ordering::Relaxed);
        self.metrics.dropped(reason).inc_by(n);
        for a in alerts {
            (self.on_discard)(a, reason);
        }
        if let Some(suppressed) = self.drop_log[reason.index()].allow() {
            warn!(
                sink = self.name,
                reason = reason.as_str(),
                count = n,
                suppressed,
                "Dropped alerts."
            );
        }
    }

    fn stats(&self) -> SinkStats {
        let st = self.lock();
        SinkStats {
            name: self.name,
            submitted: self.submitted.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            queued: st.queue.len(),
            in_flight: st.in_flight,
        }
    }
}

/// One running sink: the submit side of its queue and its task.
pub struct SinkHandle {
    shared: Arc<Shared>,
    /// The messages it takes.
    messages: Messages,
    /// Hard stop: cancels the send or backoff in progress.
    abort: CancellationToken,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for SinkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkHandle")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl SinkHandle {
    /// Starts `sink` in its own task (call inside a tokio runtime).
    pub fn spawn<S: AlertSink>(sink: S, options: SinkOptions, metrics: SinkMetrics) -> Self {
        let sink = Arc::new(sink);
        let discard_sink = Arc::clone(&sink);
        let (pending, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            name: sink.name(),
            state: Mutex::new(State {
                queue: AlertQueue::new(options.queue_capacity),
                in_flight: 0,
                closed: false,
            }),
            wake: Notify::new(),
            pending,
            submitted: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            metrics,
            drop_log: std::array::from_fn(|_| RateLimit::default()),
            fail_log: RateLimit::default(),
            on_discard: Box::new(move |a, r| discard_sink.discarded(a, r)),
        });
        let abort = CancellationToken::new();
        let messages = options.messages;
        let task = tokio::spawn(run(sink, Arc::clone(&shared), options, abort.clone()));
        Self {
            shared,
            messages,
            abort,
            task,
        }
    }

    /// The sink's name.
    pub fn name(&self) -> &'static str {
        self.shared.name
    }

    /// The messages it takes.
    pub fn messages(&self) -> Messages {
        self.messages
    }

    /// Queues `alert` (a per-series alert or an incident notification)
    /// for delivery without waiting, whatever the sink takes. When the
    /// queue is full the overflow policy gives up one message (counted);
    /// after shutdown began it is dropped with reason `shutdown`.
    pub fn submit(&self, alert: impl Into<Notice>) {
        let alert = alert.into();
        self.shared.submitted.fetch_add(1, Ordering::Relaxed);
        let evicted = {
            let mut st = self.shared.lock();
            if st.closed {
                drop(st);
                self.shared.give_up(&[alert], DropReason::Shutdown);
                return;
            }
            let evicted = st.queue.push(alert);
            self.shared.publish(&st);
            evicted
        };
        self.shared.wake.notify_one();
        if let Some((a, reason)) = evicted {
            self.shared.give_up(&[a], reason);
        }
    }

    /// Counters for tests and the shutdown report.
    pub fn stats(&self) -> SinkStats {
        self.shared.stats()
    }

    /// Waits until nothing is queued or in flight, or `deadline` passes;
    /// true when everything was handled (delivered or dropped). The sink
    /// keeps running.
    pub async fn flush(&self, deadline: Instant) -> bool {
        let mut rx = self.shared.pending.subscribe();
        // The sender lives as long as `self.shared`, so wait_for cannot fail
        // with a closed channel while we hold it.
        matches!(
            tokio::time::timeout_at(deadline, rx.wait_for(|p| *p == 0)).await,
            Ok(Ok(_))
        )
    }

    /// Refuses new alerts and lets the runner deliver what is queued.
    fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
    }

    /// Stops the sink: delivers what is queued until `deadline`, then
    /// cancels and drops the rest with reason `shutdown`. Returns the final
    /// counters.
    pub async fn shutdown(self, deadline: Instant) -> SinkStats {
        self.close();
        self.join(deadline).await
    }

    async fn join(mut self, deadline: Instant) -> SinkStats {
        if tokio::time::timeout_at(deadline, &mut self.task)
            .await
            .is_err()
        {
            self.abort.cancel();
            if let Err(e) = (&mut self.task).await {
                warn!(sink = self.shared.name, error = %e, "Sink task ended abnormally.");
            }
        }
        self.shared.stats()
    }
}

impl Drop for SinkHandle {
    /// A handle dropped without [`SinkHandle::shutdown`] stops its task (what
    /// is left is counted as dropped, reason `shutdown`) instead of leaving
    /// it waiting forever.
    fn drop(&mut self) {
        self.abort.cancel();
    }
}

/// Every running sink; each alert goes to all of them.
#[derive(Debug, Default)]
pub struct Sinks {
    handles: Vec<SinkHandle>,
}

impl Sinks {
    /// A set of already running sinks.
    pub fn from_handles(handles: Vec<SinkHandle>) -> Self {
        Self { handles }
    }

    /// True when no sink is enabled.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Hands `alert` to the queue of every sink that takes its kind
    /// (see [`Messages`]); never waits.
    pub fn submit(&self, alert: impl Into<Notice>) {
        let alert = alert.into();
        let kind = alert.kind();
        let mut takers = self.handles.iter().filter(|h| h.messages.takes(kind));
        let Some(mut h) = takers.next() else { return };
        for next in takers {
            h.submit(alert.clone());
            h = next;
        }
        h.submit(alert);
    }

    /// Counters of every sink.
    pub fn stats(&self) -> Vec<SinkStats> {
        self.handles.iter().map(SinkHandle::stats).collect()
    }

    /// Waits until every sink is idle or `deadline` passes; true when all
    /// are idle.
    pub async fn flush(&self, deadline: Instant) -> bool {
        let mut all = true;
        for h in &self.handles {
            all &= h.flush(deadline).await;
        }
        all
    }

    /// Graceful drain for shutdown: stops accepting alerts, lets every sink
    /// deliver its queue until `deadline`, then cancels and counts the rest
    /// as dropped (`shutdown`). Call after the pipeline has drained.
    pub async fn shutdown(self, deadline: Instant) -> Vec<SinkStats> {
        // Close all first so they drain in parallel, then join in turn.
        for h in &self.handles {
            h.close();
        }
        let mut out = Vec::with_capacity(self.handles.len());
        for h in self.handles {
            out.push(h.join(deadline).await);
        }
        out
    }
}

/// SplitMix64: a tiny, seedable generator, enough for jitter.
#[derive(Debug)]
struct Jitter(u64);

impl Jitter {
    fn new(seed: Option<u64>) -> Self {
        Self(seed.unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            nanos ^ (u64::from(std::process::id()) << 32)
        }))
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `base` shortened by a random fraction of up to `jitter`.
    fn apply(&mut self, base: Duration, jitter: f64) -> Duration {
        base.mul_f64(1.0 - jitter.clamp(0.0, 1.0) * self.next_f64())
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// The task of one sink.
async fn run<S: AlertSink>(
    sink: Arc<S>,
    shared: Arc<Shared>,
    options: SinkOptions,
    abort: CancellationToken,
) {
    let mut jitter = Jitter::new(options.jitter_seed);
    let every = sink.heartbeat_interval();
    let mut next_beat = every.map(|d| Instant::now() + d);
    let max_batch = options.max_batch_alerts.max(1);
    loop {
        let (batch, closed) = {
            let mut st = shared.lock();
            let batch = st.queue.pop_batch(max_batch);
            st.in_flight = batch.len();
            shared.publish(&st);
            (batch, st.closed)
        };
        if batch.is_empty() {
            if closed {
                break;
            }
            tokio::select! {
                () = shared.wake.notified() => {}
                () = sleep_until_opt(next_beat) => {
                    beat(&*sink, &shared, &abort).await;
                    next_beat = every.map(|d| Instant::now() + d);
                }
                () = abort.cancelled() => break,
            }
            continue;
        }
        deliver(&*sink, &shared, batch, &options.retry, &abort, &mut jitter).await;
        if abort.is_cancelled() {
            break;
        }
        if let (Some(at), Some(d)) = (next_beat, every)
            && Instant::now() >= at
        {
            beat(&*sink, &shared, &abort).await;
            next_beat = Some(Instant::now() + d);
        }
    }
    // Whatever is still queued will not be delivered.
    let rest = {
        let mut st = shared.lock();
        st.closed = true;
        let rest = st.queue.drain();
        st.in_flight = rest.len();
        shared.publish(&st);
        rest
    };
    shared.give_up(&rest, DropReason::Shutdown);
    let mut st = shared.lock();
    st.in_flight = 0;
    shared.publish(&st);
}

/// Runs one heartbeat, counting and logging a failure.
async fn beat<S: AlertSink>(sink: &S, shared: &Shared, abort: &CancellationToken) {
    let result = tokio::select! {
        r = sink.heartbeat() => r,
        () = abort.cancelled() => return,
    };
    if let Err(e) = result {
        shared.metrics.failures().inc();
        if let Some(suppressed) = shared.fail_log.allow() {
            warn!(sink = shared.name, error = %e, suppressed, "Failed to refresh alerts.");
        }
    }
}

/// Delivers one batch, retrying as configured; counts the outcome.
async fn deliver<S: AlertSink>(
    sink: &S,
    shared: &Shared,
    batch: Vec<Notice>,
    retry: &RetryConfig,
    abort: &CancellationToken,
    jitter: &mut Jitter,
) {
    let max_backoff = Duration::from_millis(retry.max_backoff_ms);
    let mut backoff = Duration::from_millis(retry.initial_backoff_ms).min(max_backoff);
    let mut attempt: u32 = 1;
    let outcome = loop {
        let started = std::time::Instant::now();
        let result = tokio::select! {
            r = sink.send(&batch) => r,
            () = abort.cancelled() => break Err(DropReason::Shutdown),
        };
        shared
            .metrics
            .send_seconds()
            .observe(started.elapsed().as_secs_f64());
        let e = match result {
            Ok(()) => break Ok(()),
            Err(e) => e,
        };
        shared.metrics.failures().inc();
        if !e.is_retryable() {
            warn!(sink = shared.name, error = %e, count = batch.len(), "Receiver rejected alerts.");
            break Err(DropReason::Rejected);
        }
        if retry.max_attempts != 0 && attempt >= retry.max_attempts {
            warn!(sink = shared.name, error = %e, attempt, count = batch.len(), "Giving up on alerts after the last attempt.");
            break Err(DropReason::RetriesExhausted);
        }
        let delay = jitter.apply(backoff, retry.jitter);
        if let Some(suppressed) = shared.fail_log.allow() {
            warn!(
                sink = shared.name,
                error = %e,
                attempt,
                retry_in_ms = delay.as_millis() as u64,
                suppressed,
                "Failed to deliver alerts; will retry."
            );
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = abort.cancelled() => break Err(DropReason::Shutdown),
        }
        backoff = backoff.mul_f64(retry.multiplier.max(1.0)).min(max_backoff);
        attempt = attempt.saturating_add(1);
    };
    match outcome {
        Ok(()) => {
            for a in &batch {
                shared.metrics.delivered(a.status()).inc();
            }
            shared
                .delivered
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        Err(reason) => shared.give_up(&batch, reason),
    }
    // Counted before in_flight clears, so whoever sees pending == 0 also
    // sees the outcome in the counters.
    let mut st = shared.lock();
    st.in_flight = 0;
    shared.publish(&st);
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use prometheus::Registry;

    use super::*;
    use crate::alert::AlertStatus;
    use crate::alert::sink::SinkError;
    use crate::alert::sink::queue::tests::alert;
    use crate::telemetry::metrics::{Metrics, MetricsConfig};

    fn metrics() -> Metrics {
        Metrics::new(Registry::new(), &MetricsConfig::default(), &[], &[]).unwrap()
    }

    /// Fails the first `fail` sends, then records what it gets.
    struct Flaky {
        fail: usize,
        calls: AtomicUsize,
        got: Mutex<Vec<f64>>,
    }

    impl AlertSink for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }
        async fn send(&self, batch: &[Notice]) -> Result<(), SinkError> {
            if self.calls.fetch_add(1, Ordering::SeqCst) < self.fail {
                return Err(SinkError::Unavailable("down".into()));
            }
            self.got
                .lock()
                .unwrap()
                .extend(batch.iter().filter_map(|a| Some(a.as_alert()?.value)));
            Ok(())
        }
    }

    fn opts(max_attempts: u32) -> SinkOptions {
        SinkOptions {
            queue_capacity: 8,
            max_batch_alerts: 4,
            retry: RetryConfig {
                initial_backoff_ms: 1,
                max_backoff_ms: 4,
                multiplier: 2.0,
                jitter: 0.5,
                max_attempts,
            },
            jitter_seed: Some(7),
            messages: Messages::Both,
        }
    }

    #[tokio::test]
    async fn retries_until_delivered_and_counts_failures() {
        let m = metrics();
        let h = SinkHandle::spawn(
            Flaky {
                fail: 3,
                calls: AtomicUsize::new(0),
                got: Mutex::new(vec![]),
            },
            opts(0),
            SinkMetrics::new(&m, "flaky"),
        );
        h.submit(alert("a", AlertStatus::Firing, 1.0));
        assert!(h.flush(Instant::now() + Duration::from_secs(60)).await);
        let s = h.stats();
        assert_eq!((s.submitted, s.delivered, s.dropped), (1, 1, 0));
        let sm = SinkMetrics::new(&m, "flaky");
        assert_eq!(sm.failures().get(), 3);
        assert_eq!(sm.delivered(AlertStatus::Firing).get(), 1);
        h.shutdown(Instant::now() + Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts() {
        let m = metrics();
        let h = SinkHandle::spawn(
            Flaky {
                fail: usize::MAX,
                calls: AtomicUsize::new(0),
                got: Mutex::new(vec![]),
            },
            opts(3),
            SinkMetrics::new(&m, "flaky"),
        );
        h.submit(alert("a", AlertStatus::Firing, 1.0));
        assert!(h.flush(Instant::now() + Duration::from_secs(60)).await);
        assert_eq!(h.stats().dropped, 1);
        assert_eq!(
            SinkMetrics::new(&m, "flaky")
                .dropped(DropReason::RetriesExhausted)
                .get(),
            1
        );
        assert_eq!(SinkMetrics::new(&m, "flaky").failures().get(), 3);
    }

    #[tokio::test]
    async fn shutdown_deadline_drops_the_rest_with_reason_shutdown() {
        let m = metrics();
        let h = SinkHandle::spawn(
            Flaky {
                fail: usize::MAX,
                calls: AtomicUsize::new(0),
                got: Mutex::new(vec![]),
            },
            opts(0),
            SinkMetrics::new(&m, "flaky"),
        );
        for i in 0..20 {
            h.submit(alert(&format!("s{i}"), AlertStatus::Firing, f64::from(i)));
        }
        let s = h.shutdown(Instant::now() + Duration::from_millis(50)).await;
        assert_eq!(s.submitted, 20);
        assert_eq!(s.delivered, 0);
        assert_eq!(s.dropped, 20);
        assert_eq!((s.queued, s.in_flight), (0, 0));
        let sm = SinkMetrics::new(&m, "flaky");
        assert_eq!(
            sm.dropped(DropReason::QueueFull).get() + sm.dropped(DropReason::Shutdown).get(),
            20
        );
        assert!(sm.dropped(DropReason::QueueFull).get() >= 20 - 8 - 4);
    }

    #[test]
    fn jitter_stays_within_its_band_and_is_seeded() {
        let mut a = Jitter::new(Some(1));
        let mut b = Jitter::new(Some(1));
        for _ in 0..1000 {
            let d = a.apply(Duration::from_millis(1000), 0.2);
            assert!(d >= Duration::from_millis(800) && d <= Duration::from_millis(1000));
            assert_eq!(d, b.apply(Duration::from_millis(1000), 0.2));
        }
    }
}
