//! Bounded recent history per series, for the live page.
//!
//! This module owns what the page can show: for each *retained* series, a
//! ring of its last `ui.points_per_series` observations ([`Sample`]: value,
//! expected, band, score, warm-up and alert state) and its alert summary.
//! It does not decide what an alert is (the lifecycle does) nor draw
//! anything ([`super::page`], [`crate::chart`]).
//!
//! **Who is retained.** Each shard has its own store, sized so that all of
//! them together stay under `ui.max_bytes`: every ring is allocated at its
//! full length when its series is admitted, so the cap is a count of series
//! and never exceeded. While a store has room, every series it sees is
//! admitted (a small fleet is charted whole, from its first event). At the
//! cap a series must outrank the lowest retained one (as ranked at the last
//! scan, at most a second ago) to take its place:
//! firing now ranks highest, then having alerted within
//! `ui.history_minutes` (wall clock; more recent ranks higher), then the
//! recent peak score (decayed by 2% per event of the series). So the series
//! that alerted recently and the highest scores keep their history, and
//! memory stays under the cap.
//!
//! **Cost on the hot path.** The shard takes its store's lock once per
//! batch ([`History::batch`]), not per event. Per event, a retained series
//! writes one 48-byte sample into its ring through a slot number cached in
//! the shard's entry: no allocation, no hashing. At the cap, a series that
//! is not retained compares its rank with a cached admission bar; one that
//! beats it takes the place of the next of a few dozen lowest-ranked
//! series found by one scan, and reuses its ring (no allocation there
//! either).

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use prometheus::{IntCounter, IntGauge, Registry};

use crate::alert::lifecycle::{Lifecycle, Transition};
use crate::alert::{Reason, Resolution, Severity};
use crate::counter::Kind;
use crate::detector::Decision;
use crate::event::SeriesKey;
use crate::pipeline::tap::{Tap, TapBatch};

/// A series' place in its shard's store: the tap slot the shard caches in
/// its entry (two bytes, which fit in the entry's padding: the shards'
/// memory per series does not grow). [`NO_SLOT`]: no history.
pub use crate::pipeline::tap::{NO_SLOT, Slot};

mod sample;

pub use sample::Sample;

/// Most series one shard's store holds (every slot number but [`NO_SLOT`]).
pub const MAX_SERIES_PER_SHARD: usize = NO_SLOT as usize;

/// How much of its peak a retained series' rank keeps per event (see the
/// module docs): a spike counts for roughly the next 35 events.
const PEAK_DECAY: f32 = 0.98;

/// How often a full store re-ranks its series (ranks age with the clock).
const RESCAN: Duration = Duration::from_secs(1);

/// One scan of a full store lists this fraction of its series (at least
/// [`MIN_VICTIMS`]) as the next to make room, lowest rank first: admissions
/// then cost O(1) until the list is used up.
const VICTIM_FRACTION: usize = 64;
const MIN_VICTIMS: usize = 8;

/// Where a series stands with its alerts, as the page lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AlertState {
    /// No alert within `ui.history_minutes`.
    Quiet,
    /// Alerted within `ui.history_minutes`, not firing now.
    Recent,
    /// Firing now.
    Firing,
}

impl AlertState {
    /// `quiet`, `recent` or `firing`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quiet => "quiet",
            Self::Recent => "recent",
            Self::Firing => "firing",
        }
    }
}

/// One retained series.
#[derive(Debug)]
struct Tracked {
    key: SeriesKey,
    /// The key's fingerprint, inline: checking a cached slot then reads
    /// no memory outside the slot.
    fingerprint: u64,
    /// Allocated at full length on admission; filled, then overwritten
    /// from `head` on.
    ring: Vec<Sample>,
    /// Once the ring is full: the oldest sample, where the next one goes.
    head: usize,
    /// Decayed peak score: the rank of a series that has not alerted.
    peak: f32,
    /// Wall-clock seconds (Unix) when it was last seen firing; 0 never.
    alerted_unix: u64,
    /// Event time of the last observation while firing.
    last_alert_ms: Option<i64>,
    /// Severity of the current or last alert.
    severity: Option<Severity>,
    /// When the current alert started (event time), if firing.
    firing_since_ms: Option<i64>,
    /// When the current or last alert started (event time).
    since_ms: Option<i64>,
    /// When the last alert resolved (event time); `None` while firing.
    ended_ms: Option<i64>,
    /// The channel that raised the current or last alert, when seen.
    reason: Option<Reason>,
    /// How the last alert resolved.
    resolution: Option<Resolution>,
    /// The current or last alert's own peak score (the lifecycle's).
    alert_peak: f32,
}

/// A rank: the class (2 firing, 1 alerted within the window, 0 else), then
/// recency of the alert (class 1) or peak score.
type Rank = (u8, f64);

impl Tracked {
    fn push(
        &mut self,
        mut sample: Sample,
        lifecycle: &Lifecycle,
        transition: Option<&Transition>,
        now_unix: u64,
    ) {
        match transition {
            Some(Transition::Firing {
                started_at_ms,
                reason,
                ..
            }) => {
                self.since_ms = Some(*started_at_ms);
                self.reason = Some(*reason);
                self.ended_ms = None;
                self.resolution = None;
            }
            Some(Transition::Escalated {
                started_at_ms,
                reason,
                ..
            }) => {
                self.since_ms = Some(*started_at_ms);
                self.reason = Some(*reason);
            }
            Some(Transition::Resolved {
                started_at_ms,
                reason,
                resolution,
                ..
            }) => {
                self.since_ms = Some(*started_at_ms);
                self.reason = Some(*reason);
                self.ended_ms = Some(sample.ts_ms);
                self.resolution = Some(*resolution);
                self.alert_peak = lifecycle.peak_score() as f32;
            }
            None => {}
        }
        if lifecycle.is_firing() {
            // A series admitted mid-alert learns its start here.
            if self.since_ms.is_none() || self.ended_ms.is_some() {
                self.since_ms = lifecycle.started_at_ms();
                self.ended_ms = None;
            }
            self.alert_peak = lifecycle.peak_score() as f32;
            if self.reason == Some(Reason::Stuck) {
                sample = sample.as_stuck();
            }
        }
        if self.ring.len() < self.ring.capacity() {
            self.ring.push(sample);
        } else {
            self.ring[self.head] = sample;
            // A compare instead of a division, per event.
            self.head += 1;
            if self.head == self.ring.len() {
                self.head = 0;
            }
        }
        self.peak = sample.score.max(self.peak * PEAK_DECAY);
        self.firing_since_ms = lifecycle.started_at_ms();
        if let Some(severity) = lifecycle.severity() {
            self.alerted_unix = now_unix;
            self.last_alert_ms = Some(sample.ts_ms);
            self.severity = Some(severity);
        }
    }

    fn state(&self, now_unix: u64, window_secs: u64) -> AlertState {
        if self.firing_since_ms.is_some() {
            AlertState::Firing
        } else if self.alerted_unix > 0 && now_unix.saturating_sub(self.alerted_unix) <= window_secs
        {
            AlertState::Recent
        } else {
            AlertState::Quiet
        }
    }

    fn rank(&self, now_unix: u64, window_secs: u64) -> Rank {
        match self.state(now_unix, window_secs) {
            AlertState::Firing => (2, f64::from(self.peak)),
            AlertState::Recent => (1, self.alerted_unix as f64),
            AlertState::Quiet => (0, f64::from(self.peak)),
        }
    }

    /// The samples, oldest first.
    fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.ring[self.head..].iter().chain(&self.ring[..self.head])
    }

    fn last(&self) -> Option<&Sample> {
        let n = self.ring.len();
        (n > 0).then(|| &self.ring[(self.head + n - 1) % n])
    }
}

fn cmp_rank(a: Rank, b: Rank) -> std::cmp::Ordering {
    a.0.cmp(&b.0).then(a.1.total_cmp(&b.1))
}

/// A series listed to make room: its slot, fingerprint and rank at the scan.
type Victim = (Slot, u64, Rank);

/// One shard's store.
#[derive(Debug)]
struct ShardHistory {
    /// Retained series by slot; `None` is a free slot (listed in `free`).
    slots: Vec<Option<Tracked>>,
    free: Vec<Slot>,
    retained: usize,
    /// Most series this store may hold.
    capacity: usize,
    /// When full: the lowest-ranked series as of the last scan, with their
    /// ranks then, lowest last (so `pop` gives the next to make room).
    /// Entries whose slot changed hands since are skipped.
    victims: Vec<Victim>,
    scanned: Instant,
    /// What this store last added to the shared gauges.
    published: (i64, i64),
}

impl ShardHistory {
    fn get_mut(&mut self, slot: Slot, fingerprint: u64) -> Option<&mut Tracked> {
        // The fingerprint check catches a slot reused by another series.
        self.slots
            .get_mut(slot as usize)?
            .as_mut()
            .filter(|t| t.fingerprint == fingerprint)
    }

    fn release(&mut self, slot: Slot) -> bool {
        let gone = self
            .slots
            .get_mut(slot as usize)
            .and_then(Option::take)
            .is_some();
        if gone {
            self.free.push(slot);
            self.retained -= 1;
        }
        gone
    }

    fn insert(&mut self, t: Tracked) -> Slot {
        self.retained += 1;
        match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(t);
                slot
            }
            None => {
                // Grow by doubling, but never past the capacity, so the
                // slots and the free list stay within the cap's budget.
                if self.slots.len() == self.slots.capacity() {
                    let len = self.slots.len();
                    let want = (2 * len).max(4).min(self.capacity).max(len + 1);
                    self.slots.reserve_exact(want - len);
                    self.free.reserve_exact(want - self.free.len());
                }
                self.slots.push(Some(t));
                // At most `capacity` ≤ MAX_SERIES_PER_SHARD slots, so the
                // index fits and is never NO_SLOT.
                (self.slots.len() - 1) as Slot
            }
        }
    }

    /// Lists the lowest-ranked series as the next to make room.
    fn scan(&mut self, now_unix: u64, window_secs: u64) {
        self.scanned = Instant::now();
        self.victims.clear();
        // Exactly what the retained series need, so the list stays within
        // the budget `History::bytes_per_series` gives it.
        self.victims.reserve_exact(self.retained);
        self.victims
            .extend(self.slots.iter().enumerate().filter_map(|(i, t)| {
                let t = t.as_ref()?;
                Some((i as Slot, t.fingerprint, t.rank(now_unix, window_secs)))
            }));
        let k = (self.capacity / VICTIM_FRACTION).max(MIN_VICTIMS);
        if self.victims.len() > k {
            self.victims
                .select_nth_unstable_by(k - 1, |a, b| cmp_rank(a.2, b.2));
            self.victims.truncate(k);
        }
        self.victims.sort_unstable_by(|a, b| cmp_rank(b.2, a.2));
    }

    /// The rank a newcomer must beat: the next victim's (a full store with
    /// no victim listed scans first).
    fn bar(&mut self, now_unix: u64, window_secs: u64) -> Option<Rank> {
        if self.victims.is_empty() {
            self.scan(now_unix, window_secs);
        }
        self.victims.last().map(|v| v.2)
    }
}

/// The gauges and the counter of the history (registered by
/// [`History::new`]).
#[derive(Debug)]
struct HistoryMetrics {
    bytes: IntGauge,
    retained: IntGauge,
    dropped: IntCounter,
}

/// The numbers of the `[ui]` section the history needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Ring length per series.
    pub points_per_series: usize,
    /// The hard cap over all shards, bytes.
    pub max_bytes: u64,
    /// How long an alert keeps its series ranked as recent, seconds.
    pub window_secs: u64,
}

/// The history of every shard. Shared by the shards (writers) and the
/// HTTP handlers (readers).
#[derive(Debug)]
pub struct History {
    limits: HistoryLimits,
    shards: Vec<Mutex<ShardHistory>>,
    metrics: HistoryMetrics,
}

/// A retained series' summary: the page's table row.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The series.
    pub key: SeriesKey,
    /// Its last observation.
    pub last: Sample,
    /// Decayed peak score.
    pub peak: f32,
    /// Firing, recently alerted or quiet.
    pub state: AlertState,
    /// Severity of the current or last alert.
    pub severity: Option<Severity>,
    /// When the current alert started (event time), if firing.
    pub firing_since_ms: Option<i64>,
    /// Event time of the last observation while firing.
    pub last_alert_ms: Option<i64>,
    /// When the current or last alert started (event time).
    pub since_ms: Option<i64>,
    /// When the last alert resolved (event time); `None` while firing.
    pub ended_ms: Option<i64>,
    /// The channel that raised the current or last alert, if seen.
    pub reason: Option<Reason>,
    /// How the last alert resolved.
    pub resolution: Option<Resolution>,
    /// The current or last alert's own peak score (0 if none).
    pub alert_peak: f32,
    /// Samples held.
    pub points: usize,
}

/// A retained series with its samples, oldest first.
#[derive(Debug, Clone)]
pub struct Detail {
    /// The summary.
    pub summary: Summary,
    /// The ring's samples in time order.
    pub samples: Vec<Sample>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl History {
    /// Bytes one retained series costs: its ring at full length plus its
    /// slot, its place in the free list and in the victims list (each grown
    /// at most to the store's capacity, see [`ShardHistory::insert`] and
    /// [`ShardHistory::scan`]).
    pub fn bytes_per_series(points_per_series: usize) -> usize {
        points_per_series * std::mem::size_of::<Sample>()
            + std::mem::size_of::<Option<Tracked>>()
            + std::mem::size_of::<Slot>()
            + std::mem::size_of::<Victim>()
    }

    /// Series a store of `shards` shards holds at most under `limits`.
    pub fn capacity(limits: &HistoryLimits, shards: usize) -> usize {
        let per_shard = limits.max_bytes
            / shards.max(1) as u64
            / Self::bytes_per_series(limits.points_per_series) as u64;
        usize::try_from(per_shard)
            .unwrap_or(usize::MAX)
            .min(MAX_SERIES_PER_SHARD)
            * shards.max(1)
    }

    /// A history for `shards` shards, its metrics registered in `registry`.
    pub fn new(
        limits: HistoryLimits,
        shards: usize,
        registry: &Registry,
    ) -> Result<Self, prometheus::Error> {
        let shards = shards.max(1);
        let per_shard = Self::capacity(&limits, shards) / shards;
        let bytes = IntGauge::new(
            "anomalyd_ui_history_bytes",
            "Memory held by the live page's per-series history (rings and slots), bytes.",
        )?;
        let retained = IntGauge::new(
            "anomalyd_ui_series_retained",
            "Series whose recent history the live page holds.",
        )?;
        let dropped = IntCounter::new(
            "anomalyd_ui_series_dropped_total",
            "Series histories dropped at ui.max_bytes to make room for a higher-ranked series.",
        )?;
        registry.register(Box::new(bytes.clone()))?;
        registry.register(Box::new(retained.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        let store = || {
            Mutex::new(ShardHistory {
                slots: Vec::new(),
                free: Vec::new(),
                retained: 0,
                capacity: per_shard,
                victims: Vec::new(),
                scanned: Instant::now(),
                published: (0, 0),
            })
        };
        Ok(Self {
            limits,
            shards: (0..shards).map(|_| store()).collect(),
            metrics: HistoryMetrics {
                bytes,
                retained,
                dropped,
            },
        })
    }

    /// The limits it was built with.
    pub fn limits(&self) -> &HistoryLimits {
        &self.limits
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, ShardHistory> {
        // A poisoned lock means a shard panicked mid-write of plain data;
        // the page still shows what is there.
        self.shards[shard % self.shards.len()]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Opens shard `shard`'s store for one batch of events: one lock and
    /// one clock read for the whole batch.
    pub fn batch(&self, shard: usize) -> Batch<'_> {
        Batch {
            history: self,
            store: self.lock(shard),
            now_unix: now_unix(),
        }
    }

    /// Drops the histories of series the shard let go (evicted or handed
    /// over), given as `(slot, fingerprint)`; drains `gone`.
    pub fn forget(&self, shard: usize, gone: &mut Vec<(Slot, u64)>) {
        if !gone.is_empty() {
            self.batch(shard).forget(gone);
        }
    }

    /// Every retained series' summary, in no particular order.
    pub fn summaries(&self) -> Vec<Summary> {
        let now = now_unix();
        let mut out = Vec::new();
        for shard in 0..self.shards.len() {
            let store = self.lock(shard);
            out.reserve(store.retained);
            out.extend(
                store
                    .slots
                    .iter()
                    .flatten()
                    .filter_map(|t| self.summary(t, now)),
            );
        }
        out
    }

    /// The retained series with this fingerprint and its samples.
    pub fn detail(&self, fingerprint: u64) -> Option<Detail> {
        let now = now_unix();
        (0..self.shards.len()).find_map(|shard| {
            let store = self.lock(shard);
            let t = store
                .slots
                .iter()
                .flatten()
                .find(|t| t.fingerprint == fingerprint)?;
            Some(Detail {
                summary: self.summary(t, now)?,
                samples: t.samples().copied().collect(),
            })
        })
    }

    fn summary(&self, t: &Tracked, now_unix: u64) -> Option<Summary> {
        Some(Summary {
            key: t.key.clone(),
            last: *t.last()?,
            peak: t.peak,
            state: t.state(now_unix, self.limits.window_secs),
            severity: t.severity,
            firing_since_ms: t.firing_since_ms,
            last_alert_ms: t.last_alert_ms,
            since_ms: t.since_ms,
            ended_ms: t.ended_ms,
            reason: t.reason,
            resolution: t.resolution,
            alert_peak: t.alert_peak,
            points: t.ring.len(),
        })
    }

    /// Bytes held now, over all shards (what `anomalyd_ui_history_bytes`
    /// reports once the shards have published).
    pub fn bytes(&self) -> usize {
        let points = self.limits.points_per_series;
        (0..self.shards.len())
            .map(|s| store_bytes(&self.lock(s), points))
            .sum()
    }
}

/// Bytes held by one store: rings, slot, free and victims lists. O(1), as
/// every batch publishes it: each ring is allocated at exactly
/// `points_per_series` samples and never grows (a test checks this sum
/// against the rings' capacities).
fn store_bytes(s: &ShardHistory, points_per_series: usize) -> usize {
    s.slots.capacity() * std::mem::size_of::<Option<Tracked>>()
        + s.free.capacity() * std::mem::size_of::<Slot>()
        + s.victims.capacity() * std::mem::size_of::<Victim>()
        + s.retained * points_per_series * std::mem::size_of::<Sample>()
}

/// A shard's store, locked for one batch (see [`History::batch`]).
pub struct Batch<'a> {
    history: &'a History,
    store: MutexGuard<'a, ShardHistory>,
    now_unix: u64,
}

impl Batch<'_> {
    /// Records one scored observation of `key`, with the alert state after
    /// it. `slot` is the series' cached slot ([`NO_SLOT`] if none); it is
    /// updated when the series is admitted.
    pub fn record(
        &mut self,
        slot: &mut Slot,
        key: &SeriesKey,
        ts_ms: i64,
        value: f64,
        decision: &Decision,
        lifecycle: &Lifecycle,
    ) {
        self.record_kind(
            slot,
            key,
            ts_ms,
            value,
            decision,
            lifecycle,
            None,
            Kind::Value,
        );
    }

    /// [`Batch::record`] with the alert transition the observation caused
    /// (the page shows the alert's reason, start and end from it), of a
    /// series whose values are of `kind` (a rate is marked as one, and the
    /// page says so).
    #[allow(clippy::too_many_arguments)]
    pub fn record_kind(
        &mut self,
        slot: &mut Slot,
        key: &SeriesKey,
        ts_ms: i64,
        value: f64,
        decision: &Decision,
        lifecycle: &Lifecycle,
        transition: Option<&Transition>,
        kind: Kind,
    ) {
        let mut sample = Sample::new(ts_ms, value, decision, lifecycle.severity());
        if kind == Kind::Rate {
            sample = sample.as_rate();
        }
        let now = self.now_unix;
        if let Some(t) = self.store.get_mut(*slot, key.fingerprint()) {
            t.push(sample, lifecycle, transition, now);
            return;
        }
        *slot = self
            .admit(key, sample, lifecycle, transition)
            .unwrap_or(NO_SLOT);
    }

    /// Admits `key` if there is room or it outranks the next victim;
    /// returns its slot.
    fn admit(
        &mut self,
        key: &SeriesKey,
        sample: Sample,
        lifecycle: &Lifecycle,
        transition: Option<&Transition>,
    ) -> Option<Slot> {
        let (now, window) = (self.now_unix, self.history.limits.window_secs);
        let points = self.history.limits.points_per_series;
        let store = &mut *self.store;
        let fresh = |ring: Vec<Sample>| Tracked {
            key: key.clone(),
            fingerprint: key.fingerprint(),
            ring,
            head: 0,
            peak: 0.0,
            alerted_unix: 0,
            last_alert_ms: None,
            severity: None,
            firing_since_ms: None,
            since_ms: None,
            ended_ms: None,
            reason: None,
            resolution: None,
            alert_peak: 0.0,
        };
        if store.retained < store.capacity {
            let mut t = fresh(Vec::with_capacity(points));
            t.push(sample, lifecycle, transition, now);
            return Some(store.insert(t));
        }
        let rank: Rank = (2 * u8::from(lifecycle.is_firing()), f64::from(sample.score));
        if cmp_rank(rank, store.bar(now, window)?).is_le() {
            return None;
        }
        while let Some((slot, fingerprint, _)) = store.victims.pop() {
            let Some(t) = store.get_mut(slot, fingerprint) else {
                continue; // gone since the scan
            };
            if cmp_rank(rank, t.rank(now, window)).is_le() {
                continue; // it rose since the scan
            }
            // Its ring is already allocated and touched: reuse it.
            let mut ring = std::mem::take(&mut t.ring);
            ring.clear();
            *t = fresh(ring);
            t.push(sample, lifecycle, transition, now);
            self.history.metrics.dropped.inc();
            return Some(slot);
        }
        None
    }

    /// Drops the histories in `gone` (`(slot, fingerprint)`), draining it.
    pub fn forget(&mut self, gone: &mut Vec<(Slot, u64)>) {
        for (slot, fingerprint) in gone.drain(..) {
            if self.store.get_mut(slot, fingerprint).is_some() {
                self.store.release(slot);
            }
        }
    }
}

/// The shards write the history through the pipeline's tap: the shards
/// know nothing of the page.
impl Tap for History {
    type Batch<'a> = Batch<'a>;

    fn batch(&self, shard: usize) -> Batch<'_> {
        History::batch(self, shard)
    }

    fn forget(&self, shard: usize, gone: &mut Vec<(Slot, u64)>) {
        History::forget(self, shard, gone);
    }
}

impl TapBatch for Batch<'_> {
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
    ) {
        Batch::record_kind(
            self, slot, key, ts_ms, value, decision, lifecycle, transition, kind,
        );
    }

    fn forget(&mut self, gone: &mut Vec<(Slot, u64)>) {
        Batch::forget(self, gone);
    }
}

impl Drop for Batch<'_> {
    /// Re-ranks a full store now and then, and moves the shared gauges by
    /// this store's change.
    fn drop(&mut self) {
        let window = self.history.limits.window_secs;
        let store = &mut *self.store;
        if store.retained >= store.capacity && store.scanned.elapsed() >= RESCAN {
            store.scan(self.now_unix, window);
        }
        let points = self.history.limits.points_per_series;
        let now = (store_bytes(store, points) as i64, store.retained as i64);
        if now != store.published {
            let m = &self.history.metrics;
            m.bytes.add(now.0 - store.published.0);
            m.retained.add(now.1 - store.published.1);
            store.published = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::lifecycle::{AlertRule, AlertRuleConfig};

    /// A warm decision expecting 10 with band [9, 11].
    fn decision(score: f64) -> Decision {
        Decision::warm_at(score)
    }

    fn key(i: usize) -> SeriesKey {
        SeriesKey::new("m", [("id", i.to_string())])
    }

    fn history(points: usize, series: usize, shards: usize) -> History {
        let limits = HistoryLimits {
            points_per_series: points,
            max_bytes: (History::bytes_per_series(points) * series) as u64,
            window_secs: 3600,
        };
        History::new(limits, shards, &Registry::new()).unwrap()
    }

    /// Feeds `(series, score)` observations through one batch; returns the
    /// slots.
    fn feed(h: &History, slots: &mut [Slot], events: &[(usize, f64)], ts: &mut i64) {
        let rule = AlertRule::new(&AlertRuleConfig::default(), "alert").unwrap();
        let mut b = h.batch(0);
        for &(i, score) in events {
            *ts += 60_000;
            let mut lc = Lifecycle::default();
            let d = decision(score);
            lc.step(&rule, *ts, 10.0 + score * 100.0, &d);
            b.record(&mut slots[i], &key(i), *ts, 10.0 + score, &d, &lc);
        }
    }

    #[test]
    fn samples_are_48_bytes_and_keep_their_flags() {
        assert_eq!(std::mem::size_of::<Sample>(), 48);
        let mut d = decision(0.2);
        let s = Sample::new(1, 2.0, &d, Some(Severity::Critical));
        assert_eq!(s.alert(), Some(Severity::Critical));
        assert!(!s.warming());
        d.warm = false;
        let s = Sample::new(1, 2.0, &d, None);
        assert_eq!((s.alert(), s.warming()), (None, true));
    }

    #[test]
    fn the_ring_keeps_the_last_points_in_time_order() {
        let h = history(5, 10, 1);
        let mut slots = vec![NO_SLOT; 1];
        let mut ts = 0;
        let events: Vec<(usize, f64)> = (0..12).map(|_| (0, 0.1)).collect();
        feed(&h, &mut slots, &events, &mut ts);
        let fp = key(0).fingerprint();
        let d = h.detail(fp).unwrap();
        let times: Vec<i64> = d.samples.iter().map(|s| s.ts_ms).collect();
        assert_eq!(times, [8, 9, 10, 11, 12].map(|i| i * 60_000));
        assert_eq!(d.summary.last.ts_ms, 12 * 60_000);
        assert_eq!(d.summary.points, 5);
        assert!(h.detail(key(1).fingerprint()).is_none());
    }

    #[test]
    fn memory_never_exceeds_the_cap_and_the_gauges_say_so() {
        let registry = Registry::new();
        let limits = HistoryLimits {
            points_per_series: 100,
            max_bytes: 50_000,
            window_secs: 3600,
        };
        let h = History::new(limits, 2, &registry).unwrap();
        let cap = History::capacity(&limits, 2);
        assert_eq!(cap, 2 * (25_000 / History::bytes_per_series(100)));
        let mut slots = vec![NO_SLOT; 100];
        let mut ts = 0;
        for round in 0..3 {
            let events: Vec<(usize, f64)> = (0..100).map(|i| (i, 0.01 * round as f64)).collect();
            feed(&h, &mut slots, &events, &mut ts);
        }
        let bytes = h.bytes();
        assert!(bytes as u64 <= limits.max_bytes, "{bytes}");
        // The O(1) figure is what the rings really hold.
        let allocated: usize = (0..2)
            .map(|s| {
                let st = h.lock(s);
                st.slots.capacity() * std::mem::size_of::<Option<Tracked>>()
                    + st.free.capacity() * std::mem::size_of::<Slot>()
                    + st.victims.capacity() * std::mem::size_of::<Victim>()
                    + st.slots
                        .iter()
                        .flatten()
                        .map(|t| t.ring.capacity() * std::mem::size_of::<Sample>())
                        .sum::<usize>()
            })
            .sum();
        assert_eq!(bytes, allocated);
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(
            text.contains(&format!("anomalyd_ui_history_bytes {bytes}\n")),
            "{text}"
        );
        assert!(text.contains(&format!("anomalyd_ui_series_retained {}\n", cap / 2)));
    }

    #[test]
    fn at_the_cap_alerting_and_high_scores_displace_quiet_low_ones() {
        let h = history(10, 3, 1);
        let mut slots = vec![NO_SLOT; 6];
        let mut ts = 0;
        // Three quiet series fill the store.
        feed(&h, &mut slots, &[(0, 0.1), (1, 0.2), (2, 0.3)], &mut ts);
        // A fourth with a low score is refused; one with a higher score
        // takes the lowest one's place.
        feed(&h, &mut slots, &[(3, 0.05), (4, 0.4)], &mut ts);
        let retained = |h: &History| {
            let mut ids: Vec<String> = h
                .summaries()
                .iter()
                .map(|s| s.key.labels()[0].1.clone())
                .collect();
            ids.sort();
            ids
        };
        assert_eq!(retained(&h), ["1", "2", "4"]);
        assert_eq!(slots[3], NO_SLOT);
        // An alerting series (score 0.9 fires at the default threshold)
        // outranks every quiet one, and then stays: quiet series with
        // higher scores cannot displace it.
        feed(&h, &mut slots, &[(5, 0.9)], &mut ts);
        assert_eq!(retained(&h), ["2", "4", "5"]);
        feed(&h, &mut slots, &[(0, 0.8), (3, 0.85)], &mut ts);
        assert!(retained(&h).contains(&"5".to_owned()));
        let s5 = h.detail(key(5).fingerprint()).unwrap().summary;
        assert_eq!(s5.state, AlertState::Firing);
        assert_eq!(s5.severity, Some(Severity::Critical));
    }

    #[test]
    fn forgotten_series_free_their_slot() {
        let h = history(10, 2, 1);
        let mut slots = vec![NO_SLOT; 3];
        let mut ts = 0;
        feed(&h, &mut slots, &[(0, 0.1), (1, 0.1)], &mut ts);
        let mut gone = vec![(slots[0], key(0).fingerprint())];
        // A stale (slot, fingerprint) pair is ignored.
        gone.push((slots[1], key(2).fingerprint()));
        h.forget(0, &mut gone);
        assert!(gone.is_empty());
        assert_eq!(h.summaries().len(), 1);
        feed(&h, &mut slots, &[(2, 0.0)], &mut ts);
        assert_eq!(h.summaries().len(), 2);
    }
}
