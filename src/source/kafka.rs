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
//! **State.** With a state store ([`crate::state`]), a checkpoint also takes
//! a snapshot and commits only once it is durable, so committed offsets
//! never run ahead of the newest snapshot. On assignment the partition's
//! snapshot is restored and messages below the offset it covers are skipped
//! (they are already in the restored state); on revocation the partition's
//! series are snapshotted, dropped and their offsets committed before the
//! partition moves (see [`SourceContext`]).
//!
//! Rebalance callbacks run inside `recv()` on the async runtime and must
//! finish their work before returning (the next owner of a partition may
//! only start after). They use `tokio::task::block_in_place`, which needs
//! the multi-threaded runtime the daemon runs on.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_core::Stream;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, MessageStream, RebalanceProtocol,
    StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::DecodeErrorReporter;
use crate::config::Problems;
use crate::config::secret::{
    ClientOptions, ResolvedOptions, SecretError, redacted, serialize_redacted,
};
use crate::decode::Decoder;
use crate::pipeline::{BarrierKind, Pipeline, SnapshotRecord, SourcePartition};
use crate::state::StateStore;
use crate::telemetry::RateLimit;
use crate::telemetry::metrics::Metrics;

mod lag;

/// Where a new consumer group starts reading a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OffsetReset {
    /// From the oldest retained message: models warm up on history.
    Earliest,
    /// From new messages only (Kafka's default).
    Latest,
}

impl OffsetReset {
    fn as_str(self) -> &'static str {
        match self {
            Self::Earliest => "earliest",
            Self::Latest => "latest",
        }
    }
}

/// The `[kafka]` section: the input topics and the consumer group.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Consumer group id. Instances with the same id share the partitions.
    pub group_id: String,
    /// Topics to consume.
    pub topics: Vec<String>,
    /// Client id shown in broker logs.
    pub client_id: String,
    /// Where a group without committed offsets starts: `earliest` or `latest`.
    pub auto_offset_reset: OffsetReset,
    /// Consumer group session timeout. A crashed instance's partitions move
    /// after this long.
    pub session_timeout_ms: u64,
    /// How often offsets are committed (a checkpoint). With a state store,
    /// commits follow snapshots instead (`state.snapshot_interval_secs`).
    pub commit_interval_ms: u64,
    /// How often librdkafka reports statistics (consumer lag per partition);
    /// 0 disables the lag metric.
    pub statistics_interval_ms: u64,
    /// Extra librdkafka properties passed through as they are (SASL, TLS,
    /// fetch tuning), e.g. `"security.protocol" = "SASL_SSL"`; they override
    /// anomalyd's `fetch.queue.backoff.ms = 10` (librdkafka: 1000). Values of
    /// secret-looking keys are redacted in every print and log; prefer
    /// `secret_env` or `secret_files` for them.
    #[serde(serialize_with = "serialize_redacted")]
    pub options: BTreeMap<String, String>,
    /// librdkafka properties whose values come from environment variables:
    /// `"sasl.password" = "KAFKA_PASSWORD"` reads `$KAFKA_PASSWORD`.
    pub secret_env: BTreeMap<String, String>,
    /// librdkafka properties whose values come from files (trailing newline
    /// trimmed): `"sasl.password" = "/run/secrets/kafka"`.
    pub secret_files: BTreeMap<String, PathBuf>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "localhost:9092".into(),
            group_id: "anomalyd".into(),
            topics: vec!["metrics".into()],
            client_id: "anomalyd".into(),
            auto_offset_reset: OffsetReset::Latest,
            session_timeout_ms: 45_000,
            commit_interval_ms: 1_000,
            statistics_interval_ms: 5_000,
            options: BTreeMap::new(),
            secret_env: BTreeMap::new(),
            secret_files: BTreeMap::new(),
        }
    }
}

/// Redacts the values of secret-looking options.
impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("group_id", &self.group_id)
            .field("topics", &self.topics)
            .field("client_id", &self.client_id)
            .field("auto_offset_reset", &self.auto_offset_reset)
            .field("session_timeout_ms", &self.session_timeout_ms)
            .field("commit_interval_ms", &self.commit_interval_ms)
            .field("statistics_interval_ms", &self.statistics_interval_ms)
            .field("options", &redacted(&self.options))
            .field("secret_env", &self.secret_env)
            .field("secret_files", &self.secret_files)
            .finish()
    }
}

/// Properties the source sets itself, with the key to use instead.
const MANAGED: &[(&str, Option<&str>)] = &[
    ("enable.auto.commit", None),
    ("enable.auto.offset.store", None),
    ("group.id", Some("group_id")),
    ("bootstrap.servers", Some("brokers")),
    ("auto.offset.reset", Some("auto_offset_reset")),
    ("session.timeout.ms", Some("session_timeout_ms")),
];

impl KafkaConfig {
    /// Records every problem, with keys under `prefix`.
    pub fn validate(&self, prefix: &str, problems: &mut Problems) {
        problems.check(
            !self.brokers.trim().is_empty(),
            format!("{prefix}.brokers"),
            "is empty; set it to the bootstrap servers, e.g. \"kafka:9092\"",
        );
        problems.check(
            !self.group_id.trim().is_empty(),
            format!("{prefix}.group_id"),
            "is empty; set a consumer group id, e.g. \"anomalyd\"",
        );
        problems.check(
            !self.topics.is_empty() && self.topics.iter().all(|t| !t.trim().is_empty()),
            format!("{prefix}.topics"),
            "needs at least one non-empty topic name, e.g. [\"metrics\"]",
        );
        problems.check(
            self.topics.len() <= usize::from(u16::MAX),
            format!("{prefix}.topics"),
            "lists more than 65535 topics",
        );
        problems.check(
            (1_000..=3_600_000).contains(&self.session_timeout_ms),
            format!("{prefix}.session_timeout_ms"),
            format!(
                "{} is outside 1000..=3600000 (brokers refuse other values by default)",
                self.session_timeout_ms
            ),
        );
        problems.check(
            self.commit_interval_ms >= 10,
            format!("{prefix}.commit_interval_ms"),
            "must be at least 10 ms",
        );
        self.client_options().validate(prefix, MANAGED, problems);
    }

    /// The pass-through librdkafka options.
    pub fn client_options(&self) -> ClientOptions<'_> {
        ClientOptions {
            options: &self.options,
            secret_env: &self.secret_env,
            secret_files: &self.secret_files,
        }
    }

    /// The librdkafka consumer configuration (secrets resolved), and the
    /// resolved options to scrub secrets from librdkafka's errors.
    pub fn consumer_config(&self) -> Result<(ClientConfig, ResolvedOptions), SourceError> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group_id)
            .set("client.id", &self.client_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", self.auto_offset_reset.as_str())
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            // librdkafka stops fetching a partition whose local queue is full
            // and looks again only after this long (default 1000 ms): at
            // hundreds of thousands of events per second that drained the
            // queue and left the daemon idle most of each second.
            .set("fetch.queue.backoff.ms", "10");
        if self.statistics_interval_ms > 0 {
            c.set(
                "statistics.interval.ms",
                self.statistics_interval_ms.to_string(),
            );
        }
        let env = |k: &str| std::env::var(k).ok();
        let resolved = self.client_options().resolve("kafka", &env)?;
        for (k, v) in &resolved.pairs {
            c.set(k, v);
        }
        Ok((c, resolved))
    }
}

/// Errors of the Kafka source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// librdkafka refused the configuration or failed to subscribe (secret
    /// values scrubbed from the message).
    #[error("kafka consumer setup failed: {0}")]
    Setup(String),
    /// A secret option could not be read (its value is never printed).
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The pipeline stopped while the source was running.
    #[error("the processing pipeline stopped unexpectedly")]
    PipelineClosed,
}

/// Most events the receive loop gathers from messages that are already
/// waiting before it hands them to the pipeline in one dispatch.
const BATCH_EVENTS: usize = 1024;

/// Messages received and decoded but not yet dispatched: runs of events of
/// one partition, in arrival order, and the offsets they complete.
#[derive(Debug, Default)]
struct Pending {
    /// `(partition, events)` in arrival order; consecutive messages of one
    /// partition share a run.
    runs: Vec<(SourcePartition, Vec<crate::event::Event>)>,
    /// Events in `runs`.
    events: usize,
    /// Next offset per partition once `runs` is dispatched (every received
    /// message counts, with or without events).
    next: BTreeMap<SourcePartition, i64>,
    /// When the oldest pending message was received.
    since: Option<Instant>,
}

/// Per-partition progress, shared by the receive loop and the rebalance
/// callbacks.
#[derive(Debug, Default)]
struct Progress {
    /// Next offset to commit per partition: last dispatched offset + 1.
    next: BTreeMap<SourcePartition, i64>,
    /// Offsets below these are already in the restored state: skip them.
    /// A restored partition is assigned at its snapshot's offset, so this
    /// only matters if librdkafka delivers from earlier anyway (the offset
    /// could not be set on the assignment).
    skip_below: HashMap<SourcePartition, i64>,
}

/// Everything the rebalance callbacks need.
struct Shared {
    topics: Vec<String>,
    pipeline: Arc<Pipeline>,
    state: Option<Arc<dyn StateStore>>,
    metrics: Arc<Metrics>,
    progress: Mutex<Progress>,
    /// Decoded, not yet dispatched. Every checkpoint dispatches it first, so
    /// a barrier (and the commit after it) covers every message whose offset
    /// it commits, even when a rebalance callback runs while the receive
    /// loop is gathering a batch.
    pending: Mutex<Pending>,
    /// Set once the final checkpoint ran: a revoke during shutdown then has
    /// nothing left to save.
    finished: std::sync::atomic::AtomicBool,
    /// Set when an incremental save failed: the shards had already marked
    /// those series clean, so the next checkpoint saves every series (and
    /// clears this once a whole-group save succeeds).
    resync: std::sync::atomic::AtomicBool,
    /// Deletions of a failed incremental save, written with the next one.
    unsaved_deletions: Mutex<Vec<SnapshotRecord>>,
}

impl Shared {
    fn partition_of(&self, topic: &str, partition: i32) -> Option<SourcePartition> {
        let idx = self.topics.iter().position(|t| t == topic)?;
        Some(SourcePartition {
            topic: u16::try_from(idx).ok()?,
            partition,
        })
    }

    fn topic_name(&self, p: SourcePartition) -> &str {
        &self.topics[usize::from(p.topic)]
    }

    fn unsaved_deletions(&self) -> std::sync::MutexGuard<'_, Vec<SnapshotRecord>> {
        // As for `progress`: a plain list, correct after a panic elsewhere.
        self.unsaved_deletions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        // A panic while holding this lock would already have ended the
        // source; recovering the data is still correct (plain maps).
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        // As for `progress`: plain data, valid after any panic.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Dispatches the pending events, then moves the partitions' next
    /// offsets past the messages they came from.
    async fn flush(&self) -> Result<(), SourceError> {
        let pending = std::mem::take(&mut *self.pending());
        let received = pending.since.unwrap_or_else(Instant::now);
        for (part, events) in pending.runs {
            self.pipeline
                .dispatch(part, events, received)
                .await
                .map_err(|_| SourceError::PipelineClosed)?;
        }
        let mut p = self.progress();
        for (part, next) in pending.next {
            let n = p.next.entry(part).or_insert(next);
            *n = (*n).max(next);
        }
        Ok(())
    }

    /// A checkpoint: barrier (and snapshot), then commit. `only` limits it to
    /// some partitions; `release` drops their series afterwards.
    async fn checkpoint<K: Consumer<SourceContext>>(
        &self,
        consumer: &K,
        only: Option<Vec<SourcePartition>>,
        release: bool,
        mode: CommitMode,
    ) -> Result<(), SourceError> {
        self.flush().await?;
        let positions: BTreeMap<SourcePartition, i64> = {
            let p = self.progress();
            p.next
                .iter()
                .filter(|(k, _)| only.as_ref().is_none_or(|o| o.contains(k)))
                .map(|(k, v)| (*k, *v))
                .collect()
        };
        // Without a state store a revoked partition's series stay in memory
        // (the idle TTL and `max_series` bound them): dropping them would
        // lose their learning for nothing.
        let resync = self.resync.load(std::sync::atomic::Ordering::SeqCst);
        let kind = match (&self.state, release) {
            (Some(_), true) => BarrierKind::Release {
                partitions: only.clone().unwrap_or_default(),
            },
            (None, true) => BarrierKind::Sync,
            (Some(store), false) => BarrierKind::Snapshot {
                partitions: only.clone(),
                only_dirty: store.incremental() && !resync,
            },
            (None, false) => BarrierKind::Sync,
        };
        let report = self
            .pipeline
            .barrier(kind)
            .await
            .map_err(|_| SourceError::PipelineClosed)?;
        if let Some(store) = &self.state {
            let partitions: Vec<SourcePartition> = match &only {
                Some(o) => o.clone(),
                None => positions.keys().copied().collect(),
            };
            let started = Instant::now();
            let mut records = report.records;
            let mut deletions = Vec::new();
            if store.incremental() {
                // Deletions a failed save did not write go first, so a
                // series that came back since is saved after them.
                let mut unsaved = self.unsaved_deletions();
                let (now, later): (Vec<_>, Vec<_>) = unsaved
                    .drain(..)
                    .partition(|r| partitions.contains(&r.partition));
                *unsaved = later;
                records.splice(0..0, now);
                deletions = records
                    .iter()
                    .filter(|r| r.is_deletion())
                    .cloned()
                    .collect();
            }
            let bytes: usize = records.iter().map(|r| r.bytes.len()).sum();
            let saved = tokio::task::block_in_place(|| {
                store.save(&self.topics, &partitions, &positions, records)
            });
            if let Err(e) = saved {
                // Without a durable snapshot the offsets must not move on.
                self.metrics.snapshot_failed();
                if store.incremental() && !release {
                    // The shards marked these series clean: unless the next
                    // save takes every series, their changes would never
                    // reach the store while its offset marker moved past
                    // them (a restore would then skip their events).
                    self.resync.store(true, std::sync::atomic::Ordering::SeqCst);
                    self.unsaved_deletions().extend(deletions);
                }
                tracing::error!(error = %e, "Failed to write the state snapshot; offsets are not committed until one succeeds.");
                return Ok(());
            }
            if resync && only.is_none() {
                self.resync
                    .store(false, std::sync::atomic::Ordering::SeqCst);
            }
            self.metrics
                .snapshot_written(bytes as u64, started.elapsed());
        }
        self.commit(consumer, &positions, mode);
        Ok(())
    }

    fn commit<K: Consumer<SourceContext>>(
        &self,
        consumer: &K,
        positions: &BTreeMap<SourcePartition, i64>,
        mode: CommitMode,
    ) {
        if positions.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (p, next) in positions {
            if let Err(e) =
                tpl.add_partition_offset(self.topic_name(*p), p.partition, Offset::Offset(*next))
            {
                tracing::warn!(error = %e, "Failed to build the offset list.");
                return;
            }
        }
        match consumer.commit(&tpl, mode) {
            Ok(()) => self.metrics.offsets_committed(),
            Err(e) => {
                self.metrics.commit_failed();
                tracing::warn!(error = %e, "Failed to commit offsets; the next checkpoint retries.");
            }
        }
    }

    /// Restores the snapshots of newly assigned partitions; returns where
    /// each restored partition must resume: the offset its snapshot covers.
    async fn on_assign(&self, tpl: &TopicPartitionList) -> Vec<(String, i32, i64)> {
        let mut starts = Vec::new();
        let Some(store) = &self.state else {
            return starts;
        };
        for elem in tpl.elements() {
            let Some(p) = self.partition_of(elem.topic(), elem.partition()) else {
                continue;
            };
            match tokio::task::block_in_place(|| store.load(elem.topic(), elem.partition())) {
                Ok(Some(loaded)) => {
                    let n = loaded.series.len();
                    {
                        let mut progress = self.progress();
                        progress.skip_below.insert(p, loaded.offset);
                        // Covered from the start, so a checkpoint before the
                        // first new message still saves these series.
                        progress.next.entry(p).or_insert(loaded.offset);
                    }
                    if self.pipeline.restore(p, loaded.series).await.is_err() {
                        return starts;
                    }
                    starts.push((elem.topic().to_owned(), elem.partition(), loaded.offset));
                    self.metrics.series_restored(n as u64);
                    tracing::info!(
                        topic = elem.topic(),
                        partition = elem.partition(),
                        series = n,
                        offset = loaded.offset,
                        "Restored partition state."
                    );
                }
                Ok(None) => {}
                Err(e) => {
                    self.metrics.snapshot_failed();
                    tracing::warn!(
                        topic = elem.topic(),
                        partition = elem.partition(),
                        error = %e,
                        "Could not restore partition state; its series relearn from scratch."
                    );
                }
            }
        }
        starts
    }
}

/// The consumer context: rebalance hand-over, the lag metric and
/// librdkafka's client errors.
pub struct SourceContext {
    shared: Arc<Shared>,
    /// Client errors repeat several times a second while a broker is down.
    error_log: RateLimit,
    /// Whether an implausible consumer lag was logged (once per consumer).
    lag_warned: std::sync::atomic::AtomicBool,
}

impl SourceContext {
    /// Runs async work to completion from a synchronous rdkafka callback.
    fn block_on<F: std::future::Future>(&self, what: &str, fut: F) -> Option<F::Output> {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::error!(
                what,
                "Rebalance callback outside the runtime; state hand-over skipped."
            );
            return None;
        };
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            tracing::error!(
                what,
                "Rebalance callback needs the multi-threaded runtime; state hand-over skipped."
            );
            return None;
        }
        Some(tokio::task::block_in_place(|| handle.block_on(fut)))
    }
}

impl ClientContext for SourceContext {
    /// librdkafka's client-level errors. Most are transient (a broker down,
    /// a connection refused) and librdkafka recovers by itself, so they are
    /// rate-limited warnings instead of rdkafka's default of one ERROR line
    /// each; a fatal error needs the operator and is always logged.
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::Fatal) {
            tracing::error!(error = %error, reason, "Fatal Kafka client error.");
        } else if let Some(suppressed) = self.error_log.allow() {
            tracing::warn!(error = %error, reason, suppressed, "Kafka client error.");
        }
    }

    fn stats(&self, stats: Statistics) {
        for (topic, t) in &stats.topics {
            for (id, p) in &t.partitions {
                // Partition -1 is librdkafka's internal UA partition.
                if *id < 0 {
                    continue;
                }
                let lag = lag::consumer_lag(p);
                if lag == lag::ConsumerLag::WatermarkBelowCommit
                    && !self
                        .lag_warned
                        .swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    tracing::warn!(
                        topic,
                        partition = id,
                        committed = p.committed_offset,
                        high_watermark = p.hi_offset,
                        "The broker reports a high watermark below the committed offset; \
                         consumer lag is shown as 0 where that happens and cannot be \
                         trusted on this broker (logged once)."
                    );
                }
                if let Some(lag) = lag.gauge() {
                    self.shared.metrics.set_consumer_lag(topic, *id, lag);
                }
            }
        }
    }
}

impl ConsumerContext for SourceContext {
    /// rdkafka's rebalance, with the state hand-over around it. Assigned
    /// partitions are restored before they are assigned, and those with a
    /// snapshot start at the offset it covers rather than at the committed
    /// one: the committed offset may lag the snapshot (then the events in
    /// between are already in the state), or be missing altogether (a new
    /// `group_id`, or offsets expired while the daemon was down), where
    /// `auto_offset_reset` would otherwise skip or re-learn events.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                tracing::info!(partitions = tpl.count(), "Partitions assigned.");
                let shared = Arc::clone(&self.shared);
                let list: &TopicPartitionList = tpl;
                let starts = self
                    .block_on("assign", async move { shared.on_assign(list).await })
                    .unwrap_or_default();
                for (topic, partition, offset) in starts {
                    if let Err(e) =
                        tpl.set_partition_offset(&topic, partition, Offset::Offset(offset))
                    {
                        tracing::warn!(
                            topic,
                            partition,
                            error = %e,
                            "Cannot start at the snapshot's offset; the committed offset applies."
                        );
                    }
                }
                if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.hand_over(consumer, tpl);
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                let code: rdkafka::types::RDKafkaErrorCode = other.into();
                tracing::warn!(error = %code, "Rebalance error.");
                // As rdkafka does: drop the assignment; the group reassigns.
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "Could not apply the rebalance.");
        }
    }
}

impl SourceContext {
    /// Before revoked partitions go: snapshots their series (with a store),
    /// commits, and drops them from the shards.
    fn hand_over(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        if self
            .shared
            .finished
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        let parts: Vec<SourcePartition> = tpl
            .elements()
            .iter()
            .filter_map(|e| self.shared.partition_of(e.topic(), e.partition()))
            .collect();
        if parts.is_empty() {
            return;
        }
        tracing::info!(
            partitions = parts.len(),
            "Partitions revoked; handing their state over."
        );
        let shared = Arc::clone(&self.shared);
        let done = self.block_on("revoke", async move {
            let r = shared
                .checkpoint(consumer, Some(parts.clone()), true, CommitMode::Sync)
                .await;
            // Deletions for partitions now owned elsewhere are theirs to make.
            shared
                .unsaved_deletions()
                .retain(|r| !parts.contains(&r.partition));
            let mut p = shared.progress();
            for part in &parts {
                p.next.remove(part);
                p.skip_below.remove(part);
                shared
                    .metrics
                    .remove_consumer_lag(shared.topic_name(*part), part.partition);
            }
            r
        });
        if let Some(Err(e)) = done {
            tracing::error!(error = %e, "Could not hand over revoked partitions.");
        }
    }
}

/// What the source did, for the final log line and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SourceSummary {
    /// Messages received (including bad and skipped ones).
    pub messages: u64,
    /// Events dispatched to the pipeline.
    pub events: u64,
}

/// A running Kafka source.
pub struct KafkaSource {
    consumer: StreamConsumer<SourceContext>,
    shared: Arc<Shared>,
    decoder: Decoder,
    commit_interval: Duration,
}

impl KafkaSource {
    /// Creates the consumer and subscribes. `state` enables snapshots.
    pub fn new(
        config: &KafkaConfig,
        decoder: Decoder,
        pipeline: Arc<Pipeline>,
        state: Option<Arc<dyn StateStore>>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, SourceError> {
        let commit_interval = match &state {
            Some(store) => store.snapshot_interval(),
            None => Duration::from_millis(config.commit_interval_ms),
        };
        let shared = Arc::new(Shared {
            topics: config.topics.clone(),
            pipeline,
            state,
            metrics,
            progress: Mutex::new(Progress::default()),
            pending: Mutex::new(Pending::default()),
            finished: std::sync::atomic::AtomicBool::new(false),
            resync: std::sync::atomic::AtomicBool::new(false),
            unsaved_deletions: Mutex::new(Vec::new()),
        });
        let (client, resolved) = config.consumer_config()?;
        let setup = |e: KafkaError| SourceError::Setup(resolved.scrub(&e.to_string()));
        let consumer: StreamConsumer<SourceContext> = client
            .create_with_context(SourceContext {
                shared: Arc::clone(&shared),
                error_log: RateLimit::default(),
                lag_warned: std::sync::atomic::AtomicBool::new(false),
            })
            .map_err(setup)?;
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(setup)?;
        Ok(Self {
            consumer,
            shared,
            decoder,
            commit_interval,
        })
    }

    /// Decodes one received message into the pending batch (or counts the
    /// consumer error).
    fn take(
        &self,
        received: Result<rdkafka::message::BorrowedMessage<'_>, KafkaError>,
        summary: &mut SourceSummary,
        reporter: &mut DecodeErrorReporter,
        errors: &mut Vec<crate::decode::DecodeError>,
        error_log: &RateLimit,
    ) {
        let m = &self.shared.metrics;
        let msg = match received {
            Ok(msg) => msg,
            Err(e) => {
                m.consumer_error();
                if let Some(suppressed) = error_log.allow() {
                    tracing::warn!(error = %e, suppressed, "Kafka consumer error.");
                }
                return;
            }
        };
        summary.messages += 1;
        m.message_received();
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
            .progress()
            .skip_below
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
        let mut reporter = DecodeErrorReporter::new(Duration::from_secs(10));
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
                    self.take(received, &mut summary, &mut reporter, &mut errors, &error_log);
                    // Gather what has already arrived (no waiting), so a busy
                    // topic is dispatched in batches instead of one queue
                    // hand-off per message; an idle one still goes at once.
                    while self.shared.pending().events < BATCH_EVENTS {
                        match now_or_never(next_message(&mut stream)) {
                            Some(received) => {
                                self.take(received, &mut summary, &mut reporter, &mut errors, &error_log);
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
        final_checkpoint?;
        // Leave the group now (not at drop) so partitions move at once.
        self.consumer.unsubscribe();
        Ok(summary)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_defaults_can_be_overridden_by_options() {
        let config = KafkaConfig::default();
        let (c, _) = config.consumer_config().unwrap();
        assert_eq!(c.get("fetch.queue.backoff.ms"), Some("10"));
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        let config = KafkaConfig {
            options: BTreeMap::from([("fetch.queue.backoff.ms".into(), "250".into())]),
            ..KafkaConfig::default()
        };
        let (c, _) = config.consumer_config().unwrap();
        assert_eq!(c.get("fetch.queue.backoff.ms"), Some("250"));
    }
}
