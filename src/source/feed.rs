//! [`Feed`]: a source's side of the pipeline and the state store.
//!
//! This file owns what every source shares: dispatching events with the
//! position they complete, restoring a partition's snapshot, and the
//! checkpoint (barrier → snapshot → durable save) whose result tells the
//! source which positions it may acknowledge. It knows nothing of Kafka or
//! HTTP; the contract is in [`super`]'s docs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::counter::{Classifier, StreamRules};
use crate::event::Event;
use crate::pipeline::{BarrierKind, DispatchError, Pipeline, PipelineClosed};
use crate::state::{PartitionName, PartitionSnapshot, SnapshotRecord, SourcePartition, StateStore};
use crate::telemetry::http::Readiness;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::web::WebMetrics;

/// The daemon-wide table of stream names behind [`SourcePartition::stream`].
/// Each source adds its streams once, at start.
#[derive(Debug, Default)]
pub struct Streams(Mutex<Vec<String>>);

impl Streams {
    /// Adds `names` and returns the index of the first (the others follow
    /// in order). Fails when a name is already taken, since two sources
    /// sharing a stream name would share snapshots.
    fn add(&self, names: &[String]) -> Result<u16, String> {
        let mut table = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dup) = names.iter().find(|n| table.contains(n)) {
            return Err(format!("the stream name `{dup}` is used by two sources"));
        }
        let first = u16::try_from(table.len())
            .ok()
            .filter(|f| usize::from(*f) + names.len() <= usize::from(u16::MAX))
            .ok_or_else(|| "more than 65535 streams".to_string())?;
        table.extend(names.iter().cloned());
        Ok(first)
    }
}

/// What every feed shares: the pipeline, the state store, the metrics and
/// the stream table. Built once by the app.
#[derive(Clone)]
pub struct FeedContext {
    /// The processing shards.
    pub pipeline: Arc<Pipeline>,
    /// The state store, if snapshots are on.
    pub state: Option<Arc<dyn StateStore>>,
    /// The daemon's metrics.
    pub metrics: Arc<Metrics>,
    /// Stream names of every source.
    pub streams: Arc<Streams>,
    /// Which series are counters, per stream (the shards ask it).
    pub classifier: Arc<Classifier>,
    /// `/readyz`: a failed snapshot makes the daemon unready until one
    /// succeeds.
    pub readiness: Readiness,
    /// The `anomalyd_http_*` families, for a source that listens.
    pub web: Arc<WebMetrics>,
    /// `pipeline.shutdown_grace_secs`: a source's own drain must leave
    /// room for its final checkpoint within it.
    pub shutdown_grace: Duration,
    /// `pipeline.max_series`: decoders' key caches hold at most this many
    /// keys.
    pub max_series: usize,
}

impl FeedContext {
    /// A feed for a source reading `streams` (Kafka: its topics; a
    /// receiver: its one name), whose series follow `rules`.
    pub fn feed(&self, streams: &[String], rules: Arc<StreamRules>) -> Result<Feed, String> {
        let first = self.streams.add(streams)?;
        self.classifier.register(first, streams.len(), rules);
        Ok(Feed {
            ctx: self.clone(),
            first,
            names: streams.to_vec(),
            progress: Mutex::new(Progress::default()),
        })
    }
}

/// Per-partition bookkeeping of one feed.
#[derive(Debug, Default)]
struct Progress {
    /// The position each partition's dispatched events complete.
    positions: BTreeMap<SourcePartition, i64>,
    /// Partitions whose last incremental save failed: the shards had
    /// already marked their series clean, so their next save takes every
    /// series (then they leave this set).
    resync: BTreeSet<SourcePartition>,
    /// Deletions of a failed incremental save, written with the next one.
    unsaved_deletions: Vec<SnapshotRecord>,
}

/// What [`Feed::restore`] brought back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    /// The position the snapshot covers.
    pub position: i64,
    /// Series installed.
    pub series: usize,
}

/// One source's handle on the pipeline and the state store.
pub struct Feed {
    ctx: FeedContext,
    /// Index of this source's first stream in [`Streams`].
    first: u16,
    /// This source's stream names, in order.
    names: Vec<String>,
    progress: Mutex<Progress>,
}

impl Feed {
    fn progress(&self) -> MutexGuard<'_, Progress> {
        // Plain maps, valid after a panic elsewhere.
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pipeline id of partition `partition` of this source's stream
    /// number `stream` (an index into the names it was built with).
    pub fn partition(&self, stream: usize, partition: i32) -> Option<SourcePartition> {
        if stream >= self.names.len() {
            return None;
        }
        Some(SourcePartition {
            stream: self.first + u16::try_from(stream).ok()?,
            partition,
        })
    }

    /// The durable name of one of this source's partitions.
    pub fn name(&self, p: SourcePartition) -> PartitionName {
        PartitionName {
            stream: self.stream_name(p).to_owned(),
            partition: p.partition,
        }
    }

    /// This source's stream names, in the order it gave them.
    pub fn streams(&self) -> &[String] {
        &self.names
    }

    /// The stream name of one of this source's partitions.
    pub fn stream_name(&self, p: SourcePartition) -> &str {
        &self.names[usize::from(p.stream - self.first)]
    }

    /// The metrics (sources count what they receive there).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.ctx.metrics
    }

    /// The `anomalyd_http_*` families (a source that listens serves its
    /// port through [`crate::telemetry::web`] with them).
    pub fn web_metrics(&self) -> &Arc<WebMetrics> {
        &self.ctx.web
    }

    /// `pipeline.shutdown_grace_secs`: a source's own drain must leave
    /// room for its final checkpoint within it.
    pub fn shutdown_grace(&self) -> Duration {
        self.ctx.shutdown_grace
    }

    /// `pipeline.max_series`: how many series keys a source's key cache
    /// may hold.
    pub fn max_series(&self) -> usize {
        self.ctx.max_series
    }

    /// True while the last snapshot failed: what is acknowledged now could
    /// not be made durable (a receiver refuses meanwhile).
    pub fn snapshot_failing(&self) -> bool {
        self.ctx.state.is_some() && self.ctx.readiness.snapshot_failing()
    }

    /// True when a state store is configured.
    pub fn has_state(&self) -> bool {
        self.ctx.state.is_some()
    }

    /// How often to checkpoint: the store's snapshot interval, else
    /// `otherwise`.
    pub fn checkpoint_interval(&self, otherwise: std::time::Duration) -> std::time::Duration {
        self.ctx
            .state
            .as_ref()
            .map_or(otherwise, |s| s.snapshot_interval())
    }

    /// Hands `events` of partition `p` to the shards (waiting while a queue
    /// is full). The position moves with [`Feed::advance`].
    pub async fn dispatch(
        &self,
        p: SourcePartition,
        events: Vec<Event>,
        received: Instant,
    ) -> Result<(), PipelineClosed> {
        self.ctx.pipeline.dispatch(p, events, received).await
    }

    /// Hands `events` of partition `p` to the shards all or nothing: when
    /// the queues have no room for them before `deadline`, nothing is
    /// dispatched and [`DispatchError::Full`] says so (a receiver answers
    /// its client "retry later" instead of waiting). The position moves
    /// with [`Feed::advance`].
    pub async fn dispatch_within(
        &self,
        p: SourcePartition,
        events: Vec<Event>,
        received: Instant,
        deadline: tokio::time::Instant,
    ) -> Result<(), DispatchError> {
        self.ctx
            .pipeline
            .dispatch_within(p, events, received, deadline)
            .await
    }

    /// Records that everything dispatched for `p` completes `position`
    /// (never moves backwards).
    pub fn advance(&self, p: SourcePartition, position: i64) {
        let mut progress = self.progress();
        let at = progress.positions.entry(p).or_insert(position);
        *at = (*at).max(position);
    }

    /// Restores `p`'s snapshot (when a store holds one): its series are
    /// installed ahead of any event dispatched after this call. Returns the
    /// position it covers, where the source resumes, and how many series
    /// came back (the source logs it in its own terms).
    pub async fn restore(&self, p: SourcePartition) -> Result<Option<Restored>, PipelineClosed> {
        let Some(store) = &self.ctx.state else {
            return Ok(None);
        };
        let name = self.name(p);
        let metrics = &self.ctx.metrics;
        match tokio::task::block_in_place(|| store.load(&name)) {
            Ok(Some(loaded)) => {
                let series = loaded.series.len();
                // Covered from the start, so a checkpoint before the first
                // new event still saves these series.
                self.progress()
                    .positions
                    .entry(p)
                    .or_insert(loaded.position);
                self.ctx.pipeline.restore(p, loaded.series).await?;
                metrics.series_restored(series as u64);
                Ok(Some(Restored {
                    position: loaded.position,
                    series,
                }))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                metrics.snapshot_failed();
                tracing::warn!(
                    partition = %name,
                    error = %e,
                    "Could not restore partition state; its series relearn from scratch."
                );
                Ok(None)
            }
        }
    }

    /// A checkpoint of `scope` (every partition of this feed when `None`):
    /// a barrier behind everything dispatched, then, with a store, a
    /// snapshot of the scope's series saved durably with their positions.
    /// With `release`, the scope's series are dropped after they are saved
    /// (the partitions go to another instance).
    ///
    /// Returns the positions the source may now acknowledge, or `None`
    /// when the save failed (then nothing may be acknowledged; the next
    /// checkpoint tries again).
    pub async fn checkpoint(
        &self,
        scope: Option<&[SourcePartition]>,
        release: bool,
    ) -> Result<Option<BTreeMap<SourcePartition, i64>>, PipelineClosed> {
        let (positions, resync) = {
            let p = self.progress();
            let positions: BTreeMap<SourcePartition, i64> = p
                .positions
                .iter()
                .filter(|(k, _)| scope.is_none_or(|s| s.contains(k)))
                .map(|(k, v)| (*k, *v))
                .collect();
            let resync = positions.keys().any(|k| p.resync.contains(k));
            (positions, resync)
        };
        // Sorted: shards look partitions up by binary search.
        let mut partitions: Vec<SourcePartition> = match scope {
            Some(s) => s.to_vec(),
            None => positions.keys().copied().collect(),
        };
        partitions.sort_unstable();
        partitions.dedup();
        let Some(store) = &self.ctx.state else {
            // Without a store a revoked partition's series stay in memory
            // (the idle TTL and `max_series` bound them): dropping them
            // would lose their learning for nothing.
            self.ctx.pipeline.barrier(BarrierKind::Sync).await?;
            return Ok(Some(positions));
        };
        let kind = if release {
            BarrierKind::Release {
                partitions: partitions.clone(),
            }
        } else {
            BarrierKind::Snapshot {
                partitions: Some(partitions.clone()),
                only_dirty: store.incremental() && !resync,
            }
        };
        let report = self.ctx.pipeline.barrier(kind).await?;
        let started = Instant::now();
        let mut records = report.records;
        let mut deletions = Vec::new();
        if store.incremental() {
            // Deletions a failed save did not write go first, so a series
            // that came back since is saved after them.
            let mut p = self.progress();
            let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut p.unsaved_deletions)
                .into_iter()
                .partition(|r| partitions.binary_search(&r.partition).is_ok());
            p.unsaved_deletions = later;
            records.splice(0..0, now);
            deletions = records
                .iter()
                .filter(|r| r.is_deletion())
                .cloned()
                .collect();
        }
        let bytes: usize = records.iter().map(|r| r.bytes.len()).sum();
        // One snapshot per partition of the scope, with or without series:
        // a partition whose series all left still moves its position.
        let mut by_partition: BTreeMap<SourcePartition, PartitionSnapshot> = positions
            .iter()
            .map(|(p, position)| {
                let snapshot = PartitionSnapshot {
                    name: self.name(*p),
                    position: *position,
                    records: Vec::new(),
                };
                (*p, snapshot)
            })
            .collect();
        for r in records {
            match by_partition.get_mut(&r.partition) {
                Some(s) => s.records.push(r),
                // A partition in scope that never had a position cannot
                // have series; any other record is a bug worth hearing of.
                None => tracing::error!(
                    partition = ?r.partition,
                    "A snapshot record outside the checkpoint; its series relearn after a restart."
                ),
            }
        }
        let snapshots: Vec<PartitionSnapshot> = by_partition.into_values().collect();
        let saved = tokio::task::block_in_place(|| store.save(&snapshots));
        let metrics = &self.ctx.metrics;
        self.ctx.readiness.set_snapshot_ok(saved.is_ok());
        if let Err(e) = saved {
            // Without a durable snapshot the positions must not move on.
            metrics.snapshot_failed();
            if store.incremental() && !release {
                // The shards marked these series clean: unless the next
                // save takes every series, their changes would never reach
                // the store while its position moved past them.
                let mut p = self.progress();
                p.resync.extend(partitions.iter().copied());
                p.unsaved_deletions.extend(deletions);
            }
            tracing::error!(error = %e, "Failed to write the state snapshot; positions are not acknowledged until one succeeds.");
            return Ok(None);
        }
        {
            let mut p = self.progress();
            for part in &partitions {
                p.resync.remove(part);
            }
        }
        metrics.snapshot_written(bytes as u64, started.elapsed());
        Ok(Some(positions))
    }

    /// Forgets partitions that went to another instance: their positions
    /// and pending deletions are the new owner's business.
    pub fn forget(&self, partitions: &[SourcePartition]) {
        let mut p = self.progress();
        for part in partitions {
            p.positions.remove(part);
            p.resync.remove(part);
        }
        p.unsaved_deletions
            .retain(|r| !partitions.contains(&r.partition));
    }
}
