//! Where events come from, and the contract every source keeps.
//!
//! # The source contract
//!
//! A source turns outside input into [`Event`](crate::event::Event)s. It
//! talks to the rest of the daemon only through its [`Feed`]:
//!
//! - **Partitions.** A source's input is split into *partitions*, each
//!   read in order: a Kafka topic partition, or the whole of a receiver.
//!   The pipeline knows a partition by a compact
//!   [`SourcePartition`](crate::state::SourcePartition) (from
//!   [`Feed::partition`]); the state store by its durable
//!   [`PartitionName`](crate::state::PartitionName), `stream/partition`
//!   (`metrics/3`, `remote_write/0`). State is keyed by partition, and a
//!   series belongs to the partition of its latest event.
//! - **Events plus a position.** [`Feed::dispatch`] hands a batch of one
//!   partition's events to the shards (waiting for queue room), or
//!   [`Feed::dispatch_within`] all or nothing by a deadline (a receiver
//!   that answers "retry later" instead); [`Feed::advance`] then records the
//!   *position* the batch completes: an `i64` only the source interprets
//!   (Kafka: the next offset; the remote-write receiver: the receive time
//!   in Unix milliseconds). Positions never move backwards.
//! - **Checkpoints acknowledge positions.** [`Feed::checkpoint`] puts a
//!   barrier behind everything dispatched; with a state store it then
//!   snapshots the series of the checkpoint's partitions and saves them
//!   durably with their positions. It returns the positions that are now
//!   safe to acknowledge (none when the save failed), and the source
//!   acknowledges them its own way: Kafka commits offsets, the receiver
//!   has already answered its clients and acknowledges nothing. A source
//!   may checkpoint some partitions only and *release* them (their series
//!   are saved and dropped): a Kafka revoke.
//! - **Restore.** [`Feed::restore`] installs a partition's snapshot ahead
//!   of anything dispatched later and returns the position it covers,
//!   where the source resumes (Kafka seeks there; the receiver cannot ask
//!   for the past, so what arrived after the snapshot is relearned).
//! - **Running.** A source is a [`Source`]: it runs until the shutdown
//!   token is cancelled, then takes a final checkpoint and returns a
//!   [`SourceSummary`], or [`SourceError::FinalSnapshot`] when that
//!   checkpoint's save failed (the exit code then says not everything
//!   acknowledged was persisted). A source that listens acknowledges
//!   nothing after its final checkpoint began, and refuses while
//!   [`Feed::snapshot_failing`]. Bad input is counted in its
//!   [`SourceMetrics`] (labelled
//!   `source`) and logged rate-limited by a [`DecodeErrorReporter`]; it
//!   never stops the source.
//!
//! The sources: [`kafka`] (a consumer-group member, the only rdkafka
//! consumer), [`remote_write`] (a Prometheus remote-write receiver), and
//! [`file`](mod@file) (replay of a file or stdin through the same decoder and
//! pipeline, for benchmarks and debugging; it needs no feed). A new source
//! is its own file, a field of [`SourcesConfig`] and a line in
//! [`start`].

mod feed;
pub mod file;
pub mod kafka;
pub mod remote_write;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use feed::{Feed, FeedContext, Restored, Streams};

use crate::config::Problems;
use crate::config::secret::SecretError;
use crate::counter::StreamRules;
use crate::decode::{DecodeConfig, DecodeError};
use crate::telemetry::RateLimit;
use crate::telemetry::metrics::SourceMetrics;

/// A running source; see the contract above.
pub trait Source: Send {
    /// The `source` label of its metrics, and its name in logs.
    fn name(&self) -> &'static str;

    /// The address it serves on, for a source that listens (a receiver).
    fn listen_addr(&self) -> Option<std::net::SocketAddr> {
        None
    }

    /// Runs until `shutdown` is cancelled, then takes the final checkpoint.
    fn run(
        self: Box<Self>,
        shutdown: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = Result<SourceSummary, SourceError>> + Send>>;
}

/// What a source did, for the final log line and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SourceSummary {
    /// Messages (Kafka messages, requests) received, bad and skipped ones
    /// included.
    pub messages: u64,
    /// Events dispatched to the pipeline.
    pub events: u64,
}

impl SourceSummary {
    /// Adds another source's summary to this one.
    pub fn merge(&mut self, other: &SourceSummary) {
        self.messages += other.messages;
        self.events += other.events;
    }
}

/// Errors of the sources.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A client or server could not be set up (secret values scrubbed from
    /// the message).
    #[error("{0}")]
    Setup(String),
    /// A secret option could not be read (its value is never printed).
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The pipeline stopped while the source was running.
    #[error("the processing pipeline stopped unexpectedly")]
    PipelineClosed,
    /// The final snapshot failed: what was acknowledged since the last
    /// snapshot that succeeded is not persisted.
    #[error(
        "the final state snapshot could not be written (see the log); what was acknowledged \
         since the last snapshot that succeeded is not persisted"
    )]
    FinalSnapshot,
}

impl From<crate::pipeline::PipelineClosed> for SourceError {
    fn from(_: crate::pipeline::PipelineClosed) -> Self {
        Self::PipelineClosed
    }
}

/// The `[sources]` section: inputs besides Kafka (which keeps its own
/// `[kafka]` section).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourcesConfig {
    /// `[sources.remote_write]`: the Prometheus remote-write receiver.
    pub remote_write: remote_write::RemoteWriteConfig,
}

impl SourcesConfig {
    /// Whether any source of this section is enabled.
    pub fn any_enabled(&self) -> bool {
        self.remote_write.enabled
    }

    /// Records every problem, with keys under `prefix`.
    pub fn validate(&self, prefix: &str, problems: &mut Problems) {
        self.remote_write
            .validate(&format!("{prefix}.remote_write"), problems);
    }
}

/// Starts every enabled source, each with its own [`Feed`]: Kafka (its
/// own `[kafka]` section, decoded as `[decode]` says), then the others.
pub async fn start(
    kafka: &kafka::KafkaConfig,
    decode: &DecodeConfig,
    others: &SourcesConfig,
    ctx: &FeedContext,
) -> Result<Vec<Box<dyn Source>>, SourceError> {
    let mut sources: Vec<Box<dyn Source>> = Vec::new();
    if kafka.enabled {
        let rules = Arc::new(StreamRules::new(decode.counters.clone()));
        let feed = ctx
            .feed(&kafka.topics, Arc::clone(&rules))
            .map_err(SourceError::Setup)?;
        let decoder = crate::decode::Decoder::new(decode).with_key_capacity(ctx.max_series);
        sources.push(Box::new(kafka::KafkaSource::new(
            kafka, decoder, feed, rules,
        )?));
    }
    if others.remote_write.enabled {
        let rules = Arc::new(StreamRules {
            config: others.remote_write.counters.clone(),
            metadata: Some(Arc::default()),
        });
        let feed = ctx
            .feed(&[remote_write::STREAM.to_owned()], Arc::clone(&rules))
            .map_err(SourceError::Setup)?;
        let receiver =
            remote_write::RemoteWriteSource::bind(&others.remote_write, feed, rules).await?;
        sources.push(Box::new(receiver));
    }
    Ok(sources)
}

/// Counts each decode error by reason and logs a sample, at most one line
/// per interval (a flood of bad messages must not flood the log). NaN and
/// ±Inf values are not failures: they are counted as skipped samples and
/// logged at debug only (an empty Prometheus summary exports NaN on every
/// scrape).
pub struct DecodeErrorReporter {
    log: RateLimit,
}

impl DecodeErrorReporter {
    /// A reporter that logs at most once per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            log: RateLimit::new(interval),
        }
    }

    /// Counts `errors` and logs the first failure among them unless a line
    /// was logged less than the interval ago. `origin` says where the input
    /// came from.
    pub fn report(
        &self,
        metrics: &SourceMetrics,
        errors: &[DecodeError],
        origin: &dyn std::fmt::Display,
    ) {
        let mut failures = 0u64;
        let mut first = None;
        let mut non_finite = 0u64;
        for e in errors {
            if e.is_skipped_sample() {
                non_finite += 1;
            } else {
                metrics.event_failed(e.reason());
                failures += 1;
                first.get_or_insert(e);
            }
        }
        if non_finite > 0 {
            metrics.samples_skipped("non_finite", non_finite);
            tracing::debug!(%origin, non_finite, "Skipped NaN or infinite values.");
        }
        let Some(first) = first else { return };
        if let Some(suppressed) = self.log.allow_n(failures) {
            tracing::warn!(
                %origin,
                reason = first.reason(),
                error = %first,
                errors_in_message = failures,
                suppressed_since_last_log = suppressed,
                "Skipped undecodable input."
            );
        }
    }
}
