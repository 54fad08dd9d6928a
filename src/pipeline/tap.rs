//! What the shards let others watch: every scored event, and every series
//! that leaves a shard.
//!
//! A [`Tap`] is handed to [`super::Pipeline::start_with_tap`]; each shard
//! opens one [`TapBatch`] per batch of events (one lock, say, instead of one
//! per event) and reports the series it lets go. The live page's history is
//! the one tap in the daemon; the shards know nothing of the page, and a
//! pipeline without a tap ([`NoTap`]) pays nothing for it.
//!
//! A tap may keep a per-series [`Slot`] that the shard stores in its entry
//! for it (an index instead of a map probe per event); the shard hands back
//! `(slot, fingerprint)` when the series leaves, so the tap can drop it.

use crate::alert::lifecycle::{Lifecycle, Transition};
use crate::counter::Kind;
use crate::detector::Decision;
use crate::event::SeriesKey;

/// A series' place in a tap, cached in the shard's entry for the tap (two
/// bytes, which fit in the entry's padding).
pub type Slot = u16;

/// The slot of a series the tap holds nothing for.
pub const NO_SLOT: Slot = Slot::MAX;

/// Something that watches the shards. Shared by every shard (and by
/// whoever reads what it gathered).
pub trait Tap: Send + Sync + 'static {
    /// A shard's view for one batch of events.
    type Batch<'a>: TapBatch
    where
        Self: 'a;

    /// Opens shard `shard`'s view for one batch of events.
    fn batch(&self, shard: usize) -> Self::Batch<'_>;

    /// Series shard `shard` let go (evicted or handed over), as
    /// `(slot, fingerprint)`, outside a batch; drains `gone`.
    fn forget(&self, shard: usize, gone: &mut Vec<(Slot, u64)>);
}

/// One shard's view of a [`Tap`] for one batch.
pub trait TapBatch {
    /// One scored observation of `key`, with the alert state after it and
    /// the alert transition it caused, if any; `kind` says whether `value`
    /// is a counter's rate. `slot` is the series' cached slot ([`NO_SLOT`]
    /// if none); the tap may set it.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        slot: &mut Slot,
        key: &SeriesKey,
        ts_ms: i64,
        value: f64,
        decision: &Decision,
        lifecycle: &Lifecycle,
        transition: Option<&Transition>,
        kind: Kind,
    );

    /// Series let go during the batch, as `(slot, fingerprint)`; drains
    /// `gone`.
    fn forget(&mut self, gone: &mut Vec<(Slot, u64)>);
}

/// The tap of a pipeline that has none; it cannot be built, so a shard
/// holding `Option<Arc<NoTap>>` always holds `None`.
#[derive(Debug)]
pub enum NoTap {}

impl Tap for NoTap {
    type Batch<'a> = NoTap;

    fn batch(&self, _shard: usize) -> NoTap {
        match *self {}
    }

    fn forget(&self, _shard: usize, _gone: &mut Vec<(Slot, u64)>) {
        match *self {}
    }
}

impl TapBatch for NoTap {
    fn record(
        &mut self,
        _slot: &mut Slot,
        _key: &SeriesKey,
        _ts_ms: i64,
        _value: f64,
        _decision: &Decision,
        _lifecycle: &Lifecycle,
        _transition: Option<&Transition>,
        _kind: Kind,
    ) {
        match *self {}
    }

    fn forget(&mut self, _gone: &mut Vec<(Slot, u64)>) {
        match *self {}
    }
}
