//! The Kafka source: a consumer-group member with at-least-once delivery.
//!
//! This module owns the only rdkafka consumer of the daemon. It receives
//! messages ([`StreamConsumer::recv`], cancellation-safe inside `select!`),
//! decodes them, dispatches the events to the pipeline and commits offsets.
//! Messages that have already arrived are gathered (up to 1024 events) and
//! dispatched together, so a busy topic costs one queue hand-off per batch,
//! not per message; the offsets of a batch advance only once it is
//! dispatched, and every checkpoint dispatches what is gathered first.
//!
//! **Delivery.** Offsets are committed only at checkpoints: a pipeline
//! barrier proves that every event dispatched before it has been scored,
//! learned and had its alerts queued, so the committed offset of each
//! partition is the contiguous watermark `last dispatched + 1`. Automatic
//! commits are off. After a crash the daemon re-reads from the last
//! committed offset, so an event is processed at least once.
//!
//! **State.** The source keeps the [contract](super) through its
//! [`Feed`]: positions are next offsets. With a state store the feed's
//! checkpoint takes a snapshot and returns positions only once it is
//! durable, so committed offsets never run ahead of the newest snapshot. On
//! assignment the partition's snapshot is restored, the partition starts at
//! the offset it covers and messages below it are skipped (they are already
//! in the restored state); on revocation the partition's series are
//! snapshotted, dropped and their offsets committed before the partition
//! moves (a released checkpoint).
//!
//! Files: [`config`] (the `[kafka]` section), `checkpoint.rs` (the batch
//! not yet dispatched, checkpoints, commits), `rebalance.rs` (the consumer
//! context: state hand-over on rebalances, lag, client errors), and the
//! receive loop here. This source, the Kafka alert sink and the changelog
//! store are the only users of rdkafka.

mod checkpoint;
pub mod config;
mod lag;
mod rebalance;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_core::Stream;
use rdkafka::consumer::{CommitMode, Consumer, MessageStream, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use tokio_util::sync::CancellationToken;

pub use config::{KafkaConfig, OffsetReset};

use self::checkpoint::{Pending, Shared};
use self::rebalance::SourceContext;
use super::{DecodeErrorReporter, Feed, Source, SourceError, SourceSummary};
use crate::counter::StreamRules;
use crate::decode::Decoder;
use crate::telemetry::RateLimit;

/// The `source` label of the Kafka source's metrics.
pub const NAME: &str = "kafka";

/// Most events the receive loop gathers from messages that are already
/// waiting before it hands them to the pipeline in one dispatch.
const BATCH_EVENTS: usize = 1024;

/// A running Kafka source.
pub struct KafkaSource {
    consumer: StreamConsumer<SourceContext>,
    shared: Arc<Shared>,
    decoder: Decoder,
    /// Which series are counters, and which are skipped (`[decode.counters]`).
    rules: Arc<StreamRules>,
    commit_interval: Duration,
}

impl KafkaSource {
    /// Creates the consumer and subscribes. `feed` was made for
    /// `config.topics`, in order, with `rules`.
    pub fn new(
        config: &KafkaConfig,
        decoder: Decoder,
        feed: Feed,
        rules: Arc<StreamRules>,
    ) -> Result<Self, SourceError> {
        let commit_interval =
            feed.checkpoint_interval(Duration::from_millis(config.commit_interval_ms));
        let shared = Arc::new(Shared {
            metrics: feed.metrics().source(NAME, &[]),
            feed,
            skip_below: Mutex::new(Default::default()),
            pending: Mutex::new(Pending::default()),
            finished: std::sync::atomic::AtomicBool::new(false),
        });
        let (client, resolved) = config.consumer_config()?;
        let setup = |e: KafkaError| {
            SourceError::Setup(format!(
                "kafka consumer setup failed: {}",
                resolved.scrub(&e.to_string())
            ))
        };
        let consumer: StreamConsumer<SourceContext> = client
            .create_with_context(SourceContext {
                shared: Arc::clone(&shared),
                error_log: RateLimit::default(),
                lag_warned: std::sync::atomic::AtomicBool::new(false),
            })
            .map_err(setup)?;
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(setup)?;
        tracing::info!(
            brokers = %config.brokers,
            topics = ?config.topics,
            group_id = %config.group_id,
            "Consuming Kafka."
        );
        Ok(Self {
            consumer,
            shared,
            decoder,
            rules,
            commit_interval,
        })
    }

    /// Decodes one received message into the pending batch (or counts the
    /// consumer error).
    fn take(
        &self,
        received: Result<rdkafka::message::BorrowedMessage<'_>, KafkaError>,
        summary: &mut SourceSummary,
        reporter: &DecodeErrorReporter,
        errors: &mut Vec<crate::decode::DecodeError>,
        error_log: &RateLimit,
    ) {
        let m = &self.shared.metrics;
        let msg = match received {
            Ok(msg) => msg,
            Err(e) => {
                self.shared.feed.metrics().consumer_error();
                if let Some(suppressed) = error_log.allow() {
                    tracing::warn!(error = %e, suppressed, "Kafka consumer error.");
                }
                return;
            }
        };
        summary.messages += 1;
        m.messages_received(1);
        let Some(part) = self.shared.partition_of(msg.topic(), msg.partition()) else {
            return; // not a subscribed topic: cannot happen
        };
        let offset = msg.offset();
        let mut pending = self.shared.pending();
        // Never move backwards (see `flush`): a restored partition starts at
        // its snapshot offset, and any message below it is already in the
        // state.
        let next = pending.next.entry(part).or_insert(offset + 1);
        *next = (*next).max(offset + 1);
        if self
            .shared
            .skip_below()
            .get(&part)
            .is_some_and(|&s| offset < s)
        {
            return;
        }
        if pending.runs.last().is_none_or(|(p, _)| *p != part) {
            pending.runs.push((part, Vec::new()));
        }
        let Some((_, events)) = pending.runs.last_mut() else {
            return; // pushed just above
        };
        let before = events.len();
        errors.clear();
        let fallback_ts = msg.timestamp().to_millis();
        self.decoder
            .decode(msg.payload().unwrap_or(&[]), fallback_ts, events, errors);
        self.rules
            .drop_skipped(events, before, &mut |r| m.samples_skipped(r.as_str(), 1));
        let decoded = events.len() - before;
        if !errors.is_empty() {
            let origin = format!("{}/{}@{}", msg.topic(), msg.partition(), offset);
            reporter.report(m, errors, &origin);
        }
        if decoded > 0 {
            m.events_decoded(decoded as u64);
            summary.events += decoded as u64;
            pending.events += decoded;
            pending.since.get_or_insert_with(Instant::now);
        }
    }

    /// Consumes until `shutdown` is cancelled, then runs a final checkpoint
    /// (snapshot if enabled, synchronous commit) and leaves the group.
    pub async fn run(self, shutdown: CancellationToken) -> Result<SourceSummary, SourceError> {
        let mut summary = SourceSummary::default();
        let mut ticker = tokio::time::interval(self.commit_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick is immediate
        let reporter = DecodeErrorReporter::new(Duration::from_secs(10));
        // recv() fails every ~100 ms while the brokers are unreachable.
        let error_log = RateLimit::default();
        let mut errors = Vec::new();
        // One stream for the whole run: `recv()` builds (and registers a
        // waker slot for) a new stream per message, which halves throughput.
        let mut stream = self.consumer.stream();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {
                    self.shared
                        .checkpoint(&self.consumer, None, false, CommitMode::Async)
                        .await?;
                }
                received = next_message(&mut stream) => {
                    self.take(received, &mut summary, &reporter, &mut errors, &error_log);
                    // Gather what has already arrived (no waiting), so a busy
                    // topic is dispatched in batches instead of one queue
                    // hand-off per message; an idle one still goes at once.
                    while self.shared.pending().events < BATCH_EVENTS {
                        match now_or_never(next_message(&mut stream)) {
                            Some(received) => {
                                self.take(received, &mut summary, &reporter, &mut errors, &error_log);
                            }
                            None => break,
                        }
                    }
                    self.shared.flush().await?;
                }
            }
        }
        tracing::info!("Stopped consuming; writing the final checkpoint.");
        let final_checkpoint = self
            .shared
            .checkpoint(&self.consumer, None, false, CommitMode::Sync)
            .await;
        self.shared
            .finished
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let saved = final_checkpoint?;
        // Leave the group now (not at drop) so partitions move at once.
        self.consumer.unsubscribe();
        if !saved {
            // Nothing is lost (the offsets were not committed, the input is
            // read again), but the run did not end cleanly.
            return Err(SourceError::FinalSnapshot);
        }
        Ok(summary)
    }
}

impl Source for KafkaSource {
    fn name(&self) -> &'static str {
        NAME
    }

    fn run(
        self: Box<Self>,
        shutdown: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = Result<SourceSummary, SourceError>> + Send>> {
        Box::pin((*self).run(shutdown))
    }
}

/// The next message (or consumer error) of `stream`; cancel-safe, as a
/// message is only taken off the queue when it is returned.
async fn next_message<'a>(
    stream: &mut MessageStream<'a, SourceContext>,
) -> Result<BorrowedMessage<'a>, KafkaError> {
    loop {
        // A Kafka message stream never ends; `None` cannot happen.
        if let Some(received) =
            std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream).poll_next(cx)).await
        {
            return received;
        }
    }
}

/// Polls `f` once: its output if it is ready now, else `None` (and `f` is
/// dropped, which `next_message` allows).
fn now_or_never<F: std::future::Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}
