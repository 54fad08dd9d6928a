//! The consumer-lag gauge from librdkafka's statistics, on brokers whose
//! watermarks cannot be trusted too.
//!
//! librdkafka reports a partition's `consumer_lag` (end of the partition −
//! committed offset) as -1 both while it knows no committed offset or
//! watermark and when the committed offset is past the end it knows
//! (`rd_kafka_stats_emit_toppar`). The second happens only on a broker that
//! misreports its watermarks; skipping it like the first would leave the
//! last value, possibly a large one, on the gauge for good.

use rdkafka::statistics::Partition;

/// The consumer lag of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ConsumerLag {
    /// Messages between the committed offset and the end of the partition.
    Known(i64),
    /// Nothing committed yet, or no watermark seen yet.
    Unknown,
    /// The broker's watermark is below the committed offset, which a broker
    /// that reports watermarks correctly never does.
    WatermarkBelowCommit,
}

impl ConsumerLag {
    /// What the gauge shows: never negative; unchanged while unknown.
    pub(super) fn gauge(self) -> Option<i64> {
        match self {
            ConsumerLag::Known(lag) => Some(lag),
            // As far as the broker says, nothing is left to read.
            ConsumerLag::WatermarkBelowCommit => Some(0),
            ConsumerLag::Unknown => None,
        }
    }
}

/// Tells librdkafka's -1 cases apart by the offsets it reports beside it.
pub(super) fn consumer_lag(p: &Partition) -> ConsumerLag {
    if p.consumer_lag >= 0 {
        ConsumerLag::Known(p.consumer_lag)
    } else if p.committed_offset >= 0 && p.hi_offset >= 0 && p.ls_offset >= 0 {
        ConsumerLag::WatermarkBelowCommit
    } else {
        ConsumerLag::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What librdkafka reports for a partition (-1001: invalid offset).
    fn reported(hi: i64, committed: i64, lag: i64) -> Partition {
        Partition {
            hi_offset: hi,
            ls_offset: hi,
            committed_offset: committed,
            consumer_lag: lag,
            ..Partition::default()
        }
    }

    #[test]
    fn the_gauge_is_never_negative_nor_stale_when_the_watermark_is_below_the_commit() {
        use ConsumerLag::*;
        for (hi, committed, lag, want, gauge) in [
            (6_000, 5_000, 1_000, Known(1_000), Some(1_000)),
            (6_000, 6_000, 0, Known(0), Some(0)),
            // Nothing committed yet, or no fetch answered yet.
            (6_000, -1_001, -1, Unknown, None),
            (-1_001, 6_000, -1, Unknown, None),
            // A broker reporting its high watermark below what was read
            // and committed (tansu's ListOffsets: 5,363 of 6,000).
            (5_363, 6_000, -1, WatermarkBelowCommit, Some(0)),
        ] {
            let got = consumer_lag(&reported(hi, committed, lag));
            assert_eq!(got, want, "hi {hi}, committed {committed}, lag {lag}");
            assert_eq!(got.gauge(), gauge, "hi {hi}, committed {committed}");
        }
    }
}
