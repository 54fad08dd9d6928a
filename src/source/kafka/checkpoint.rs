//! Progress and checkpoints of the Kafka source: the batch not yet
//! dispatched, the offsets to skip after a restore, and the checkpoint that
//! turns the [`Feed`]'s positions into committed offsets. Shared by the
//! receive loop and the rebalance callbacks.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::rebalance::SourceContext;
use crate::source::{Feed, SourceError};
use crate::state::SourcePartition;
use crate::telemetry::metrics::SourceMetrics;

/// Messages received and decoded but not yet dispatched: runs of events of
/// one partition, in arrival order, and the offsets they complete.
#[derive(Debug, Default)]
pub(super) struct Pending {
    /// `(partition, events)` in arrival order; consecutive messages of one
    /// partition share a run.
    pub(super) runs: Vec<(SourcePartition, Vec<crate::event::Event>)>,
    /// Events in `runs`.
    pub(super) events: usize,
    /// Next offset per partition once `runs` is dispatched (every received
    /// message counts, with or without events).
    pub(super) next: BTreeMap<SourcePartition, i64>,
    /// When the oldest pending message was received.
    pub(super) since: Option<Instant>,
}

/// Everything the receive loop and the rebalance callbacks share.
pub(super) struct Shared {
    /// The source's side of the pipeline and the state store; its
    /// positions are next offsets (last dispatched + 1).
    pub(super) feed: Feed,
    /// `anomalyd_*{source="kafka"}`.
    pub(super) metrics: SourceMetrics,
    /// Offsets below these are already in the restored state: skip them.
    /// A restored partition is assigned at its snapshot's offset, so this
    /// only matters if librdkafka delivers from earlier anyway (the offset
    /// could not be set on the assignment).
    pub(super) skip_below: Mutex<HashMap<SourcePartition, i64>>,
    /// Decoded, not yet dispatched. Every checkpoint dispatches it first, so
    /// a barrier (and the commit after it) covers every message whose offset
    /// it commits, even when a rebalance callback runs while the receive
    /// loop is gathering a batch.
    pub(super) pending: Mutex<Pending>,
    /// Set once the final checkpoint ran: a revoke during shutdown then has
    /// nothing left to save.
    pub(super) finished: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// The pipeline id of a subscribed topic's partition.
    pub(super) fn partition_of(&self, topic: &str, partition: i32) -> Option<SourcePartition> {
        let idx = self.topics().iter().position(|t| t == topic)?;
        self.feed.partition(idx, partition)
    }

    fn topics(&self) -> &[String] {
        self.feed.streams()
    }

    pub(super) fn topic_name(&self, p: SourcePartition) -> &str {
        self.feed.stream_name(p)
    }

    pub(super) fn skip_below(&self) -> std::sync::MutexGuard<'_, HashMap<SourcePartition, i64>> {
        // A panic while holding this lock would already have ended the
        // source; recovering the data is still correct (a plain map).
        self.skip_below.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        // As for `skip_below`: plain data, valid after any panic.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Dispatches the pending events, then moves the partitions' next
    /// offsets past the messages they came from.
    pub(super) async fn flush(&self) -> Result<(), SourceError> {
        let pending = std::mem::take(&mut *self.pending());
        let received = pending.since.unwrap_or_else(Instant::now);
        for (part, events) in pending.runs {
            self.feed.dispatch(part, events, received).await?;
        }
        for (part, next) in pending.next {
            self.feed.advance(part, next);
        }
        Ok(())
    }

    /// A checkpoint: barrier (and snapshot), then commit. `only` limits it to
    /// some partitions; `release` drops their series afterwards. Returns
    /// whether the snapshot (if any) was saved, i.e. whether positions were
    /// acknowledged.
    pub(super) async fn checkpoint<K: Consumer<SourceContext>>(
        &self,
        consumer: &K,
        only: Option<Vec<SourcePartition>>,
        release: bool,
        mode: CommitMode,
    ) -> Result<bool, SourceError> {
        self.flush().await?;
        match self.feed.checkpoint(only.as_deref(), release).await? {
            Some(positions) => {
                self.commit(consumer, &positions, mode);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    pub(super) fn commit<K: Consumer<SourceContext>>(
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
        let m = self.feed.metrics();
        match consumer.commit(&tpl, mode) {
            Ok(()) => m.offsets_committed(),
            Err(e) => {
                m.commit_failed();
                tracing::warn!(error = %e, "Failed to commit offsets; the next checkpoint retries.");
            }
        }
    }

    /// Restores the snapshots of newly assigned partitions; returns where
    /// each restored partition must resume: the offset its snapshot covers.
    pub(super) async fn on_assign(&self, tpl: &TopicPartitionList) -> Vec<(String, i32, i64)> {
        let mut starts = Vec::new();
        for elem in tpl.elements() {
            let Some(p) = self.partition_of(elem.topic(), elem.partition()) else {
                continue;
            };
            match self.feed.restore(p).await {
                Ok(Some(restored)) => {
                    let offset = restored.position;
                    self.skip_below().insert(p, offset);
                    starts.push((elem.topic().to_owned(), elem.partition(), offset));
                    tracing::info!(
                        topic = elem.topic(),
                        partition = elem.partition(),
                        series = restored.series,
                        offset,
                        "Restored partition state."
                    );
                }
                Ok(None) => {}
                Err(_) => return starts,
            }
        }
        starts
    }
}
