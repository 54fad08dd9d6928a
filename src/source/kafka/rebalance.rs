//! The consumer context: the state hand-over around rebalances, the lag
//! metric and librdkafka's client errors.
//!
//! Rebalance callbacks run inside `recv()` on the async runtime and must
//! finish their work before returning (the next owner of a partition may
//! only start after). They use `tokio::task::block_in_place`, which needs
//! the multi-threaded runtime the daemon runs on.

use std::sync::Arc;

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;

use super::checkpoint::Shared;
use crate::state::SourcePartition;
use crate::telemetry::RateLimit;

/// The consumer context: rebalance hand-over, the lag metric and
/// librdkafka's client errors.
pub struct SourceContext {
    pub(super) shared: Arc<Shared>,
    /// Client errors repeat several times a second while a broker is down.
    pub(super) error_log: RateLimit,
    /// Whether an implausible consumer lag was logged (once per consumer).
    pub(super) lag_warned: std::sync::atomic::AtomicBool,
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
                let lag = super::lag::consumer_lag(p);
                if lag == super::lag::ConsumerLag::WatermarkBelowCommit
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
                    self.shared.feed.metrics().set_consumer_lag(topic, *id, lag);
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
            // Positions and deletions of partitions now owned elsewhere are
            // the new owner's to keep.
            shared.feed.forget(&parts);
            let mut skip = shared.skip_below();
            for part in &parts {
                skip.remove(part);
                shared
                    .feed
                    .metrics()
                    .remove_consumer_lag(shared.topic_name(*part), part.partition);
            }
            r
        });
        if let Some(Err(e)) = done {
            tracing::error!(error = %e, "Could not hand over revoked partitions.");
        }
    }
}
