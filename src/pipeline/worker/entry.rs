//! A series' entry in the shard's map, its flag bits, the one way out of
//! the shard and the saving of an entry.

use super::{NO_SLOT, WorkerReport};
use crate::alert::lifecycle::Lifecycle;
use crate::counter::{Kind, RateState, SeriesValue};
use crate::detector::DetectorState;
use crate::event::SeriesKey;
use crate::pipeline::tap::Slot;
use crate::state::{SnapshotRecord, SourcePartition};
use crate::telemetry::metrics::Metrics;

/// Bits of [`Entry::flags`].
pub(super) mod flag {
    /// Changed since its last snapshot.
    pub const DIRTY: u8 = 1;
    /// A snapshot holds a record of it in `partition` (it was saved there,
    /// or restored from there): leaving the partition must delete that
    /// record. Series that never reached a store (a burst of new series
    /// evicted at the cap) need no deletion.
    pub const STORED: u8 = 2;
    /// Its history is loading: its events are held in the shard's
    /// `loading` map, and it is never evicted meanwhile.
    pub const LOADING: u8 = 4;
}

/// Per-series entry of the shard's map: 128 bytes (the value rule added
/// 16: a counter's previous sample; its kind and the loading bit fit in
/// bytes that were padding; the out-of-order check 8: the latest event
/// time).
pub(super) struct Entry {
    pub(super) detector: DetectorState,
    pub(super) lifecycle: Lifecycle,
    /// A counter's previous sample (unused by a series of raw values).
    pub(super) rate: RateState,
    /// How samples become values.
    pub(super) kind: Kind,
    /// Partition of the latest event: where the series goes on a revoke.
    pub(super) partition: SourcePartition,
    /// Seconds since the shard started when the last event arrived (u32 is
    /// 136 years; cheaper than an `Instant` per series). Drives the idle TTL.
    pub(super) last_seen: u32,
    /// The shard's logical clock when the series was last touched: orders
    /// series for eviction at the cap. Seconds are too coarse for that: in
    /// a burst every series shares the same second, and eviction would then
    /// drop established series as readily as the burst's new ones.
    pub(super) touched: u64,
    /// [`flag`] bits.
    pub(super) flags: u8,
    /// The series' slot in the tap ([`NO_SLOT`] when it has none): one
    /// array index per event instead of a map probe. Two bytes, which fit
    /// in this struct's padding.
    pub(super) tap_slot: Slot,
    /// Event time of the latest event taken: an older one from the same
    /// partition is out of order and dropped (a store refuses it too;
    /// learning it would teach the calendar features time running
    /// backwards). Not snapshotted: a restored series takes whatever comes
    /// first.
    pub(super) last_ts: i64,
}

impl Entry {
    /// A series first seen now, learned as `kind`, with `flags`.
    pub(super) fn new(
        detector: DetectorState,
        lifecycle: Lifecycle,
        value: SeriesValue,
        partition: SourcePartition,
        last_seen: u32,
        touched: u64,
        flags: u8,
    ) -> Self {
        Self {
            detector,
            lifecycle,
            rate: value.rate,
            kind: value.kind,
            partition,
            last_seen,
            touched,
            flags,
            tap_slot: NO_SLOT,
            last_ts: i64::MIN,
        }
    }

    pub(super) fn is(&self, f: u8) -> bool {
        self.flags & f != 0
    }

    pub(super) fn set(&mut self, f: u8, on: bool) {
        if on {
            self.flags |= f;
        } else {
            self.flags &= !f;
        }
    }

    /// The value rule and its state, as snapshots and [`history::learn`]
    /// take them.
    pub(super) fn value(&self) -> SeriesValue {
        SeriesValue {
            kind: self.kind,
            rate: self.rate,
        }
    }
}

/// What must forget a series when it leaves the shard, besides the map:
/// borrowed beside the map so that a `retain` over it can call
/// [`Leaving::leave`].
pub(super) struct Leaving<'a> {
    pub(super) metrics: &'a Metrics,
    pub(super) left: &'a mut Vec<(SourcePartition, u64)>,
    pub(super) tap_gone: &'a mut Vec<(Slot, u64)>,
}

impl Leaving<'_> {
    /// The one way out of the shard (evicted at the cap, idle, or handed
    /// over with its partition), called for an entry just taken out of the
    /// map: its per-series gauges go, an incremental store deletes its
    /// record in its partition (unless the same snapshot saves it there
    /// again, see `Shard::deletions`), and the tap drops it.
    pub(super) fn leave(&mut self, key: &SeriesKey, e: &Entry) {
        // Frees the per-series gauge slot (a no-op when disabled).
        self.metrics.forget_series(key);
        if e.is(flag::STORED) {
            self.left.push((e.partition, key.fingerprint()));
        }
        if e.tap_slot != NO_SLOT {
            self.tap_gone.push((e.tap_slot, key.fingerprint()));
        }
    }
}

/// Saves the entry of `key` into `report` (a failure is counted and
/// logged: the series relearns after a restart).
pub(super) fn encode(key: &SeriesKey, e: &Entry, report: &mut WorkerReport) {
    match crate::state::encode_series_value(key, &e.detector, &e.lifecycle, &e.value()) {
        Ok(bytes) => report.records.push(SnapshotRecord {
            partition: e.partition,
            fingerprint: key.fingerprint(),
            bytes,
        }),
        Err(err) => {
            report.encode_failures += 1;
            tracing::error!(series = %key, error = %err, "Failed to encode series state; it will relearn after a restart.");
        }
    }
}
