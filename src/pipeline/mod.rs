//! Routing events to per-shard workers, and the barriers that make
//! positions and snapshots consistent.
//!
//! This module owns the processing threads. Events are routed by the stable
//! fingerprint of their series to one of `workers` shards, so every series is
//! processed by exactly one thread, strictly in arrival order. Each shard is a
//! dedicated OS thread (the work is CPU-bound and must not stall the async
//! runtime that serves the sources, sinks and HTTP) fed by a bounded queue:
//! when a shard falls behind, [`Pipeline::dispatch`] waits, and so the Kafka
//! source stops pulling; [`Pipeline::dispatch_within`] lets a receiver refuse
//! instead (backpressure instead of unbounded memory).
//!
//! A [`Barrier`] is queued behind everything dispatched before it on every
//! shard. When all shards have answered, every event dispatched before the
//! barrier is fully processed: its model is updated and its alerts are in the
//! sink queues. Sources acknowledge positions (Kafka commits offsets) only
//! after barriers, which is what makes an acknowledged position a contiguous
//! watermark; snapshots are taken at barriers too, so a snapshot and the
//! positions it records describe the same cut of the stream.
//!
//! What happens to one event inside a shard is [`worker`]'s business; where
//! events come from is [`crate::source`]'s. Who watches the shards (the
//! live page) does so through a [`tap::Tap`].

pub mod tap;
pub mod worker;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::config::Problems;
use crate::event::Event;

pub use tap::{NoTap, Tap};
pub use worker::{AlertHandoff, Core, ShardOptions, WorkerReport};

use crate::state::{SeriesSnapshot, SourcePartition};

/// Settings of the processing shards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// Number of worker threads (shards). 0 means one per CPU core.
    pub workers: usize,
    /// Batches each shard may have queued before the source waits
    /// (backpressure). A batch is the events of one message for one shard.
    pub queue_capacity: usize,
    /// Most series held in memory at once, over all shards. When a shard
    /// reaches its share, its least recently seen series are evicted.
    pub max_series: usize,
    /// A series that has received no event for this long (processing time) is
    /// evicted at the next checkpoint (commit or snapshot). 0 keeps idle
    /// series forever.
    pub idle_ttl_secs: u64,
    /// How long the graceful drain on shutdown (final snapshot and commit,
    /// queued events, queued alerts) may take before the daemon gives up.
    pub shutdown_grace_secs: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            workers: 0,
            queue_capacity: 1024,
            max_series: 1_000_000,
            idle_ttl_secs: 0,
            shutdown_grace_secs: 30,
        }
    }
}

impl PipelineConfig {
    /// Records every problem, with keys under `prefix`.
    pub fn validate(&self, prefix: &str, problems: &mut Problems) {
        problems.check(
            self.workers <= 1024,
            format!("{prefix}.workers"),
            format!(
                "{} workers is more than 1024; use 0 for one per core",
                self.workers
            ),
        );
        problems.check(
            self.queue_capacity > 0,
            format!("{prefix}.queue_capacity"),
            "must be at least 1",
        );
        problems.check(
            self.max_series > 0,
            format!("{prefix}.max_series"),
            "must be at least 1",
        );
    }

    /// The number of shards this config asks for.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// What a barrier asks every shard to do once everything before it is done.
#[derive(Debug, Clone, PartialEq)]
pub enum BarrierKind {
    /// Nothing more: the barrier itself proves the events before it are
    /// processed. Shards also evict idle series.
    Sync,
    /// Serialize the series of these partitions (all series when `None`).
    /// With `only_dirty`, only series changed since the previous snapshot.
    /// Shards evict idle series first.
    Snapshot {
        /// Which partitions, sorted; `None` for all.
        partitions: Option<Vec<SourcePartition>>,
        /// Only series changed since their last snapshot.
        only_dirty: bool,
    },
    /// Serialize the series of these partitions, then drop them: the
    /// partitions were revoked and another instance takes them over.
    Release {
        /// The revoked partitions, sorted.
        partitions: Vec<SourcePartition>,
    },
}

/// A barrier request sent to one shard.
pub struct Barrier {
    /// What to do.
    pub kind: BarrierKind,
    /// Where to answer.
    pub reply: oneshot::Sender<WorkerReport>,
}

/// A unit of work for one shard, processed in queue order.
pub enum Work {
    /// Events of one message that belong to this shard.
    Events {
        /// Where they came from.
        partition: SourcePartition,
        /// The events, in message order.
        events: Vec<Event>,
        /// When the source received the message (latency measurement).
        received: Instant,
    },
    /// Install restored series (after a restart or a partition assignment).
    Restore {
        /// The partition they belong to.
        partition: SourcePartition,
        /// The series.
        series: Vec<SeriesSnapshot>,
    },
    /// See [`Barrier`].
    Barrier(Barrier),
    /// A history has arrived for this shard (see [`crate::history`]): the
    /// shard looks at its history channel, as it does before any work.
    Wake,
}

/// The pipeline has shut down (a shard thread ended).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the processing pipeline has stopped")]
pub struct PipelineClosed;

/// Why [`Pipeline::dispatch_within`] dispatched nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    /// A shard queue stayed full until the deadline.
    #[error("the processing queues are full")]
    Full,
    /// The pipeline has shut down.
    #[error("the processing pipeline has stopped")]
    Closed,
}

/// Handle to the running shards.
pub struct Pipeline {
    /// One queue per shard; index = shard.
    senders: Vec<mpsc::Sender<Work>>,
    /// The shard threads, joined on close.
    threads: Vec<JoinHandle<()>>,
}

impl Pipeline {
    /// Starts `config.worker_count()` shard threads sharing `core`.
    pub fn start(config: &PipelineConfig, core: Arc<Core>) -> std::io::Result<Self> {
        Self::start_with_tap::<NoTap>(config, core, None)
    }

    /// [`Pipeline::start`], the shards also reporting to `tap` (the live
    /// page's history, built for `config.worker_count()` shards).
    pub fn start_with_tap<T: Tap>(
        config: &PipelineConfig,
        core: Arc<Core>,
        tap: Option<Arc<T>>,
    ) -> std::io::Result<Self> {
        let n = config.worker_count();
        let per_shard_cap = config.max_series.div_ceil(n);
        let idle_ttl = (config.idle_ttl_secs > 0)
            .then(|| std::time::Duration::from_secs(config.idle_ttl_secs));
        let mut senders = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for shard in 0..n {
            let (tx, rx) = mpsc::channel(config.queue_capacity);
            let core = Arc::clone(&core);
            let tap = tap.clone();
            let wake = tx.downgrade();
            let handle = std::thread::Builder::new()
                .name(format!("anomalyd-shard-{shard}"))
                .spawn(move || worker::run(shard, rx, core, per_shard_cap, idle_ttl, tap, wake))?;
            senders.push(tx);
            threads.push(handle);
        }
        Ok(Self { senders, threads })
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.senders.len()
    }

    /// The shard that owns a series with this fingerprint.
    pub fn shard_of(&self, fingerprint: u64) -> usize {
        // The fingerprint is already a good hash; its high bits feed the
        // hash map inside the shard, the low bits choose the shard.
        (fingerprint % self.senders.len() as u64) as usize
    }

    /// Routes the events of one message to their shards, in order. Waits when
    /// a shard's queue is full.
    pub async fn dispatch(
        &self,
        partition: SourcePartition,
        events: Vec<Event>,
        received: Instant,
    ) -> Result<(), PipelineClosed> {
        if self.senders.len() == 1 {
            return self
                .send(
                    0,
                    Work::Events {
                        partition,
                        events,
                        received,
                    },
                )
                .await;
        }
        let mut per_shard: Vec<Vec<Event>> = vec![Vec::new(); self.senders.len()];
        for event in events {
            per_shard[self.shard_of(event.series.fingerprint())].push(event);
        }
        for (shard, events) in per_shard.into_iter().enumerate() {
            if !events.is_empty() {
                self.send(
                    shard,
                    Work::Events {
                        partition,
                        events,
                        received,
                    },
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Like [`Pipeline::dispatch`], but all or nothing within `deadline`:
    /// room is reserved in every shard queue the events need (in shard
    /// order, so concurrent callers cannot deadlock) before any is sent.
    /// When the room is not there in time nothing is dispatched and
    /// [`DispatchError::Full`] says so, for a receiver that answers its
    /// client "retry later" instead of waiting.
    pub async fn dispatch_within(
        &self,
        partition: SourcePartition,
        events: Vec<Event>,
        received: Instant,
        deadline: tokio::time::Instant,
    ) -> Result<(), DispatchError> {
        let mut per_shard: Vec<Vec<Event>> = vec![Vec::new(); self.senders.len()];
        for event in events {
            per_shard[self.shard_of(event.series.fingerprint())].push(event);
        }
        let mut permits = Vec::with_capacity(per_shard.len());
        for (shard, events) in per_shard.iter().enumerate() {
            if events.is_empty() {
                continue;
            }
            let permit = tokio::time::timeout_at(deadline, self.senders[shard].reserve())
                .await
                .map_err(|_| DispatchError::Full)?
                .map_err(|_| DispatchError::Closed)?;
            permits.push((permit, shard));
        }
        for (permit, shard) in permits {
            permit.send(Work::Events {
                partition,
                events: std::mem::take(&mut per_shard[shard]),
                received,
            });
        }
        Ok(())
    }

    /// Installs restored series on their shards, ahead of any event
    /// dispatched after this call.
    pub async fn restore(
        &self,
        partition: SourcePartition,
        series: Vec<SeriesSnapshot>,
    ) -> Result<(), PipelineClosed> {
        let mut per_shard: Vec<Vec<SeriesSnapshot>> = vec![Vec::new(); self.senders.len()];
        for s in series {
            per_shard[self.shard_of(s.key.fingerprint())].push(s);
        }
        for (shard, series) in per_shard.into_iter().enumerate() {
            if !series.is_empty() {
                self.send(shard, Work::Restore { partition, series })
                    .await?;
            }
        }
        Ok(())
    }

    /// Queues a barrier on every shard and waits until all have passed it.
    /// The reports are merged: snapshots of all shards, total series.
    pub async fn barrier(&self, kind: BarrierKind) -> Result<WorkerReport, PipelineClosed> {
        let mut waiting = Vec::with_capacity(self.senders.len());
        for shard in 0..self.senders.len() {
            let (reply, rx) = oneshot::channel();
            let kind = kind.clone();
            self.send(shard, Work::Barrier(Barrier { kind, reply }))
                .await?;
            waiting.push(rx);
        }
        let mut merged = WorkerReport::default();
        for rx in waiting {
            let report = rx.await.map_err(|_| PipelineClosed)?;
            merged.merge(report);
        }
        Ok(merged)
    }

    async fn send(&self, shard: usize, work: Work) -> Result<(), PipelineClosed> {
        self.senders[shard]
            .send(work)
            .await
            .map_err(|_| PipelineClosed)
    }

    /// Closes the queues and waits for the shards to finish what is queued.
    pub async fn close(self) {
        drop(self.senders);
        let threads = self.threads;
        // Joining blocks; do it off the async threads.
        let joined = tokio::task::spawn_blocking(move || {
            for t in threads {
                if t.join().is_err() {
                    tracing::error!("A processing shard panicked; its series were lost.");
                }
            }
        })
        .await;
        if joined.is_err() {
            tracing::error!("Could not join the processing shards.");
        }
    }
}
