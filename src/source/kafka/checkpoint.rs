//! Progress and checkpoints of the Kafka source: the batch not yet
//! dispatched, the offsets dispatched per partition, and the checkpoint
//! that turns them into committed offsets (with a snapshot first when a
//! state store is configured). Shared by the receive loop and the
//! rebalance callbacks.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::SourceError;
use super::rebalance::SourceContext;
use crate::pipeline::{BarrierKind, Pipeline};
use crate::state::{SnapshotRecord, SourcePartition, StateStore};
use crate::telemetry::metrics::Metrics;

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

/// Per-partition progress, shared by the receive loop and the rebalance
/// callbacks.
#[derive(Debug, Default)]
pub(super) struct Progress {
    /// Next offset to commit per partition: last dispatched offset + 1.
    pub(super) next: BTreeMap<SourcePartition, i64>,
    /// Offsets below these are already in the restored state: skip them.
    /// A restored partition is assigned at its snapshot's offset, so this
    /// only matters if librdkafka delivers from earlier anyway (the offset
    /// could not be set on the assignment).
    pub(super) skip_below: HashMap<SourcePartition, i64>,
}

/// Everything the rebalance callbacks need.
pub(super) struct Shared {
    pub(super) topics: Vec<String>,
    pub(super) pipeline: Arc<Pipeline>,
    pub(super) state: Option<Arc<dyn StateStore>>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) progress: Mutex<Progress>,
    /// Decoded, not yet dispatched. Every checkpoint dispatches it first, so
    /// a barrier (and the commit after it) covers every message whose offset
    /// it commits, even when a rebalance callback runs while the receive
    /// loop is gathering a batch.
    pub(super) pending: Mutex<Pending>,
    /// Set once the final checkpoint ran: a revoke during shutdown then has
    /// nothing left to save.
    pub(super) finished: std::sync::atomic::AtomicBool,
    /// Set when an incremental save failed: the shards had already marked
    /// those series clean, so the next checkpoint saves every series (and
    /// clears this once a whole-group save succeeds).
    pub(super) resync: std::sync::atomic::AtomicBool,
    /// Deletions of a failed incremental save, written with the next one.
    pub(super) unsaved_deletions: Mutex<Vec<SnapshotRecord>>,
}

impl Shared {
    pub(super) fn partition_of(&self, topic: &str, partition: i32) -> Option<SourcePartition> {
        let idx = self.topics.iter().position(|t| t == topic)?;
        Some(SourcePartition {
            topic: u16::try_from(idx).ok()?,
            partition,
        })
    }

    pub(super) fn topic_name(&self, p: SourcePartition) -> &str {
        &self.topics[usize::from(p.topic)]
    }

    pub(super) fn unsaved_deletions(&self) -> std::sync::MutexGuard<'_, Vec<SnapshotRecord>> {
        // As for `progress`: a plain list, correct after a panic elsewhere.
        self.unsaved_deletions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        // A panic while holding this lock would already have ended the
        // source; recovering the data is still correct (plain maps).
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        // As for `progress`: plain data, valid after any panic.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Dispatches the pending events, then moves the partitions' next
    /// offsets past the messages they came from.
    pub(super) async fn flush(&self) -> Result<(), SourceError> {
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
    pub(super) async fn checkpoint<K: Consumer<SourceContext>>(
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
    pub(super) async fn on_assign(&self, tpl: &TopicPartitionList) -> Vec<(String, i32, i64)> {
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
