//! One processing shard: the per-series state map and the per-event path.
//!
//! A shard owns the state of its series (value rule, model, threshold,
//! alert lifecycle) and nothing else. For every event, strictly in order:
//! the series' value rule (a counter's sample becomes its per-second rate,
//! see [`crate::counter`]) → [`Detector::observe`] (score, then learn) →
//! alert lifecycle, unless the event is older than
//! `alert.max_event_age_secs` (then it only teaches the model) → alerts
//! handed over (the daemon's notifier groups them into incidents and
//! queues them for the sinks; never waiting on a sink). It also answers
//! barriers (see [`super::Barrier`]), installs restored series and enforces
//! the memory bounds (`max_series`, idle TTL). With a [`Tap`] (the live
//! page), it also reports each scored event to it, one [`TapBatch`] per
//! batch, and the series it lets go. A series leaves the shard by one path,
//! [`Leaving::leave`], whatever the cause (the cap, the idle TTL, a
//! revoked partition).
//!
//! **History.** With `[history]` on, a series the shard holds no state for
//! is not scored at once: its history is requested ([`crate::history`]),
//! its live events are held (at most `history.max_held_events`), and when
//! the history arrives the shard learns it with [`history::learn`] (no
//! alert, no sink, no page) and then processes the held events in order. A
//! request that fails, times out or overflows releases the held events
//! without history: the series warms up live. Snapshot and release
//! barriers first wait until no series of the shard is loading (each
//! request is answered within `history.max_wait_secs`), so a snapshot
//! never misses a held event and the positions it saves cover only
//! processed events. A `Sync` barrier (without a state store) does not
//! wait, so a slow Prometheus never stalls a shard: an offset committed
//! then may cover events still held, which a crash would skip (a crash
//! without a store loses every series' state anyway).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use hashbrown::hash_map::EntryRef;
use tokio::sync::mpsc;

use super::tap::{NO_SLOT, Slot, Tap, TapBatch};
use super::{BarrierKind, Work};
use crate::alert::lifecycle::{AlertRule, Lifecycle};
use crate::alert::{EmittedCounters, SeriesAlert};
use crate::counter::{Classifier, SeriesValue};
use crate::detector::{Detector, Skipped};
use crate::event::{Event, SeriesKey};
use crate::history::{self, Loaded, Loader, Outcome, Reply};
use crate::state::{SeriesSnapshot, SnapshotRecord, SourcePartition};
use crate::telemetry::metrics::Metrics;
use prometheus::local::{LocalHistogram, LocalIntCounter};

mod entry;
mod scoring;

use entry::{Entry, Leaving, encode, flag};
use scoring::{Scoring, wall_ms};

/// `anomalyd_events_skipped_total` reason of an event older than its
/// series' latest from the same partition.
pub const OUT_OF_ORDER: &str = "out_of_order";

/// Every `reason` of `anomalyd_events_skipped_total`, the reasons the
/// shards skip an event for (to register the label values up front): the
/// detector's, the counter rules' and [`OUT_OF_ORDER`].
pub fn skip_reasons() -> Vec<&'static str> {
    Skipped::REASONS
        .iter()
        .chain(&crate::counter::SKIP_REASONS)
        .copied()
        .chain([OUT_OF_ORDER])
        .collect()
}

/// Where a shard hands alerts over. Implementations must not block: the
/// notifier groups them and the sinks queue them (bounded, with a counted
/// overflow policy).
pub trait AlertHandoff: Send + Sync {
    /// Takes one alert.
    fn hand_off(&self, alert: SeriesAlert);
}

/// What every shard shares: the compiled detector and alert rule, the alert
/// hand-off, the metrics and the options of the per-event path.
pub struct Core {
    /// Compiled model/threshold configuration.
    pub detector: Detector,
    /// Compiled alert rule.
    pub rule: AlertRule,
    /// Where alerts go.
    pub alerts: Arc<dyn AlertHandoff>,
    /// The daemon's metrics.
    pub metrics: Arc<Metrics>,
    /// Event age limit, value rules, histories.
    pub options: ShardOptions,
}

/// What the shards do besides scoring and learning. The default is what
/// a shard did before these existed: every event may alert, every series
/// learns its raw values, no history.
#[derive(Default)]
pub struct ShardOptions {
    /// Events older than this (milliseconds, wall clock at processing
    /// minus event time) teach the model but never reach the alert
    /// lifecycle (`alert.max_event_age_secs`); `None`: no limit.
    pub max_event_age_ms: Option<i64>,
    /// Which series are counters, learned as rates (asked once per new
    /// series, by its stream).
    pub classifier: Arc<Classifier>,
    /// Where a new series' history comes from (`[history]`), if anywhere.
    pub history: Option<Arc<Loader>>,
}

/// A shard's answer to a barrier.
#[derive(Debug, Default)]
pub struct WorkerReport {
    /// Serialized series, for snapshot and release barriers.
    pub records: Vec<SnapshotRecord>,
    /// Series held after the barrier.
    pub series: usize,
    /// Series that could not be serialized (logged; should never happen).
    pub encode_failures: usize,
}

impl WorkerReport {
    /// Adds another shard's report to this one.
    pub fn merge(&mut self, other: WorkerReport) {
        self.records.extend(other.records);
        self.series += other.series;
        self.encode_failures += other.encode_failures;
    }
}

/// A series whose history is on its way.
struct Loading {
    /// The request's number (see [`Loaded::id`]).
    id: u64,
    /// Its live events since, in order.
    held: Vec<Event>,
    /// When it was requested.
    since: Instant,
}

/// The shard's end of the history loader.
struct ShardHistory {
    loader: Arc<Loader>,
    rx: std::sync::mpsc::Receiver<Loaded>,
    reply: Reply,
}

/// How long past `history.max_wait_secs` a barrier still waits for an
/// answer (the loader answers by then; this only covers a task that died).
const HISTORY_SLACK: Duration = Duration::from_secs(5);

/// Counts of one batch, flushed to the metrics once.
#[derive(Default)]
struct Tally {
    /// Events scored and learned.
    processed: u64,
    /// Of those, too old to alert.
    too_old: u64,
}

struct Shard<T: Tap> {
    core: Arc<Core>,
    /// Entries are boxed: the table then holds 16-byte slots, so the
    /// doubling of a table of a million series copies 16 MB, not 100 MB
    /// (and holds both copies at once), and its empty half costs a sixth.
    series: HashMap<SeriesKey, Box<Entry>>,
    /// At most this many series; at the cap the least recently seen go.
    cap: usize,
    idle_ttl: Option<Duration>,
    started: Instant,
    /// Logical clock: advanced for every event and restored series.
    clock: u64,
    /// Series that left a partition where a snapshot holds them, since the
    /// last snapshot barrier (moved to another partition, or evicted), by
    /// fingerprint: an incremental store deletes their records there.
    /// Cleared at `Sync` barriers, which run only without a store.
    left: Vec<(SourcePartition, u64)>,
    /// This shard's contribution to `anomalyd_series_active`.
    published: i64,
    /// `anomalyd_alerts_emitted_total`, by status and severity.
    emitted: EmittedCounters,
    /// Shard-local `anomalyd_events_processed_total`, flushed per batch.
    processed: LocalIntCounter,
    /// Shard-local `anomalyd_event_processing_seconds`, observed and
    /// flushed per batch (one clock read per batch).
    latency: LocalHistogram,
    /// This shard's number: its store in the tap.
    index: usize,
    /// Who watches this shard (the live page's history), if anyone.
    tap: Option<Arc<T>>,
    /// Tap slots of series this shard let go, `(slot, fingerprint)`, to
    /// hand to the tap when the shard next opens it.
    tap_gone: Vec<(Slot, u64)>,
    /// The history loader and this shard's reply channel, with `[history]`.
    history: Option<ShardHistory>,
    /// Series waiting for their history, with their held events.
    loading: HashMap<SeriesKey, Loading>,
    /// The last history request's number.
    requests: u64,
}

/// The shard thread's main loop: runs until the queue closes. `wake`
/// reaches this shard's own queue (weakly, so the queue still closes when
/// the pipeline drops its senders): the history loader nudges the shard
/// through it.
pub(super) fn run<T: Tap>(
    shard: usize,
    mut rx: mpsc::Receiver<Work>,
    core: Arc<Core>,
    cap: usize,
    idle_ttl: Option<Duration>,
    tap: Option<Arc<T>>,
    wake: mpsc::WeakSender<Work>,
) {
    tracing::debug!(shard, cap, "Shard started.");
    let mut s = Shard::new(shard, core, cap, idle_ttl, tap, wake);
    while let Some(work) = rx.blocking_recv() {
        s.take_histories();
        match work {
            Work::Events {
                partition,
                events,
                received,
            } => s.process(partition, events, received),
            Work::Restore { partition, series } => s.restore(partition, series),
            Work::Barrier(b) => {
                let report = s.barrier(&b.kind);
                // The requester may have given up (shutdown); nothing to do.
                let _ = b.reply.send(report);
            }
            Work::Wake => {}
        }
    }
    let held = s.series.len();
    if let Some(h) = &s.history {
        h.loader.metrics().add_loading(-(s.loading.len() as i64));
    }
    s.series.clear();
    s.publish_series_count();
    tracing::debug!(shard, series = held, "Shard stopped.");
}

impl<T: Tap> Shard<T> {
    fn new(
        index: usize,
        core: Arc<Core>,
        cap: usize,
        idle_ttl: Option<Duration>,
        tap: Option<Arc<T>>,
        wake: mpsc::WeakSender<Work>,
    ) -> Self {
        let (processed, latency) = core.metrics.processing_local();
        let history = core.options.history.as_ref().map(|loader| {
            let (tx, rx) = std::sync::mpsc::channel();
            let nudge = move || {
                // Full queue: the shard is busy and looks before its next
                // work anyway. Closed: it is stopping.
                if let Some(q) = wake.upgrade() {
                    let _ = q.try_send(Work::Wake);
                }
            };
            ShardHistory {
                loader: Arc::clone(loader),
                rx,
                reply: Reply::new(tx, Arc::new(nudge)),
            }
        });
        Self {
            emitted: EmittedCounters::new(&core.metrics),
            processed,
            latency,
            core,
            series: HashMap::new(),
            cap,
            idle_ttl,
            started: Instant::now(),
            clock: 0,
            left: Vec::new(),
            published: 0,
            index,
            tap,
            tap_gone: Vec::new(),
            history,
            loading: HashMap::new(),
            requests: 0,
        }
    }

    fn now_secs(&self) -> u32 {
        u32::try_from(self.started.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    fn process(&mut self, partition: SourcePartition, events: Vec<Event>, received: Instant) {
        let now = self.now_secs();
        let core = Arc::clone(&self.core);
        let emitted = self.emitted.clone();
        // The tap (the page's history): opened once for the whole batch.
        let tap = self.tap.clone();
        let mut sc = Scoring {
            core: &core,
            emitted: &emitted,
            now_ms: wall_ms(),
            tap: tap.as_deref().map(|t| t.batch(self.index)),
            tally: Tally::default(),
        };
        let mut events = events.into_iter().peekable();
        while let Some(event) = events.next() {
            // Read the next event's entry now: with many series it is not in
            // the cache, and the load can complete while this event is
            // processed instead of stalling the next one.
            if let Some(next) = events.peek()
                && let Some(e) = self.series.get(&next.series)
            {
                std::hint::black_box(e.touched);
            }
            self.clock += 1;
            // At the cap a new series first makes room; below it (the usual
            // case) one probe of the map finds or inserts the series.
            if self.series.len() >= self.cap && !self.series.contains_key(&event.series) {
                self.evict_oldest();
                if let Some(t) = sc.tap.as_mut() {
                    t.forget(&mut self.tap_gone);
                }
            }
            let entry = match self.series.entry_ref(&event.series) {
                EntryRef::Occupied(o) => o.into_mut(),
                EntryRef::Vacant(v) => {
                    let kind = core
                        .options
                        .classifier
                        .kind(partition.stream, &event.series);
                    let entry = v.insert(Box::new(Entry::new(
                        core.detector.new_state(),
                        Lifecycle::default(),
                        SeriesValue::new(kind),
                        partition,
                        now,
                        self.clock,
                        flag::DIRTY,
                    )));
                    // No state: its past comes from Prometheus first, up to
                    // (not including) this event.
                    if let Some(h) = &self.history {
                        self.requests += 1;
                        h.loader.request(
                            event.series.clone(),
                            event.ts_ms.saturating_sub(1),
                            self.requests,
                            h.reply.clone(),
                        );
                        h.loader.metrics().add_loading(1);
                        entry.set(flag::LOADING, true);
                        self.loading.insert(
                            event.series.clone(),
                            Loading {
                                id: self.requests,
                                held: Vec::new(),
                                since: Instant::now(),
                            },
                        );
                    }
                    entry
                }
            };
            // Order exists within a partition only: a series whose events
            // come from several Kafka partitions interleaves them freely.
            if entry.partition == partition && event.ts_ms < entry.last_ts {
                core.metrics.event_skipped(OUT_OF_ORDER);
                continue;
            }
            entry.last_ts = event.ts_ms;
            if entry.partition != partition {
                // Its record in the old partition is stale from now on.
                if entry.is(flag::STORED) {
                    self.left
                        .push((entry.partition, event.series.fingerprint()));
                }
                entry.partition = partition;
                entry.set(flag::STORED, false);
            }
            entry.last_seen = now;
            entry.touched = self.clock;
            entry.set(flag::DIRTY, true);
            if entry.is(flag::LOADING) {
                let (Some(h), Some(l)) = (&self.history, self.loading.get_mut(&event.series))
                else {
                    // A loading entry always has both; should it not, the
                    // event is processed live.
                    entry.set(flag::LOADING, false);
                    sc.observe(&event.series, entry, event.ts_ms, event.value);
                    continue;
                };
                h.loader.metrics().held(1);
                l.held.push(event);
                if l.held.len() > h.loader.max_held() {
                    // Too many waiting: the series warms up live, now.
                    let key = l.held[0].series.clone();
                    if let Some(l) = self.loading.remove(&key) {
                        h.loader.metrics().add_loading(-1);
                        h.loader.metrics().series_done(Outcome::Overflow, 0);
                        entry.set(flag::LOADING, false);
                        for ev in l.held {
                            sc.observe(&key, entry, ev.ts_ms, ev.value);
                        }
                    }
                }
                continue;
            }
            sc.observe(&event.series, entry, event.ts_ms, event.value);
        }
        // Closes the tap's view before the shard's counts move.
        drop(sc.tap);
        self.flush(&sc.tally, received);
        self.publish_series_count();
    }

    /// Moves one batch's counts to the metrics. One clock read per batch,
    /// not per event: every event of the batch is recorded with the latency
    /// of the batch's end (message received → its last event processed),
    /// which bounds each event's own.
    fn flush(&mut self, tally: &Tally, received: Instant) {
        let latency = received.elapsed().as_secs_f64();
        for _ in 0..tally.processed {
            self.latency.observe(latency);
        }
        self.processed.inc_by(tally.processed);
        self.processed.flush();
        self.latency.flush();
        self.core.metrics.events_too_old(tally.too_old);
    }

    /// Applies every history that has arrived (cheap when none has).
    fn take_histories(&mut self) {
        let Some(h) = &self.history else { return };
        let mut arrived = Vec::new();
        while let Ok(l) = h.rx.try_recv() {
            arrived.push(l);
        }
        for l in arrived {
            self.apply_history(l);
        }
    }

    /// Learns an arrived history, then processes the series' held events
    /// in order. An answer to a request given up since is dropped (which
    /// frees its query slot).
    fn apply_history(&mut self, loaded: Loaded) {
        let current = self
            .loading
            .get(&loaded.key)
            .is_some_and(|l| l.id == loaded.id);
        if !current {
            return;
        }
        let outcome = match &loaded.result {
            Ok(_) => Outcome::Warmed,
            Err(o) => *o,
        };
        let key = loaded.key.clone();
        self.release(&key, outcome, Some(loaded));
    }

    /// Ends the loading of `key` with `outcome`: learns `loaded`'s points
    /// if there are some, then processes the held events.
    fn release(&mut self, key: &SeriesKey, mut outcome: Outcome, loaded: Option<Loaded>) {
        let Some(loading) = self.loading.remove(key) else {
            return;
        };
        let core = Arc::clone(&self.core);
        let Some(h) = &self.history else { return };
        let metrics = h.loader.metrics();
        metrics.add_loading(-1);
        let Some(entry) = self.series.get_mut(key) else {
            // Loading series are never evicted; nothing to hold events for.
            metrics.series_done(outcome, 0);
            return;
        };
        entry.set(flag::LOADING, false);
        entry.set(flag::DIRTY, true);
        let mut learned = 0;
        if let Some(Loaded {
            result: Ok(points), ..
        }) = &loaded
        {
            let mut value = entry.value();
            let l = history::learn(&core.detector, &mut entry.detector, &mut value, points);
            entry.rate = value.rate;
            learned = l.points;
            if learned == 0 {
                outcome = Outcome::Empty;
            }
            tracing::debug!(
                series = %key,
                points = l.points,
                skipped = l.skipped,
                waited_ms = loading.since.elapsed().as_millis() as u64,
                "Learned the series' history."
            );
        }
        // The points are learned: their query slot is free again.
        drop(loaded);
        metrics.series_done(outcome, learned);
        let tap = self.tap.clone();
        let mut sc = Scoring {
            core: &core,
            emitted: &self.emitted,
            now_ms: wall_ms(),
            tap: tap.as_deref().map(|t| t.batch(self.index)),
            tally: Tally::default(),
        };
        for ev in loading.held {
            sc.observe(key, entry, ev.ts_ms, ev.value);
        }
        drop(sc.tap);
        // The held events' latency includes their wait for the history.
        self.flush(&sc.tally, loading.since);
    }

    /// Waits until no series of this shard is loading: applies histories
    /// as they arrive, and gives up on a request unanswered past its
    /// deadline (its held events are then processed live).
    fn settle_histories(&mut self) {
        loop {
            self.take_histories();
            let Some(h) = &self.history else { return };
            let Some(oldest) = self.loading.values().map(|l| l.since).min() else {
                return;
            };
            let limit = h.loader.max_wait() + HISTORY_SLACK;
            let wait = limit.saturating_sub(oldest.elapsed());
            match h.rx.recv_timeout(wait) {
                Ok(l) => self.apply_history(l),
                Err(_) => {
                    let late: Vec<SeriesKey> = self
                        .loading
                        .iter()
                        .filter(|(_, l)| l.since.elapsed() >= limit)
                        .map(|(k, _)| k.clone())
                        .collect();
                    for key in late {
                        self.release(&key, Outcome::Timeout, None);
                    }
                }
            }
        }
    }

    fn restore(&mut self, partition: SourcePartition, series: Vec<SeriesSnapshot>) {
        let now = self.now_secs();
        for s in series {
            self.clock += 1;
            if self.loading.contains_key(&s.key) {
                // Its live events so far are processed on the state being
                // replaced, as they would have been without history.
                self.release(&s.key, Outcome::Cancelled, None);
            }
            if self.series.len() >= self.cap {
                self.evict_oldest();
            }
            // A series saved under another value rule (the counter rules
            // changed) relearns: its model learned other numbers.
            let kind = self.core.options.classifier.kind(partition.stream, &s.key);
            let (detector, value) = match s.detector {
                Some(d) if s.value.kind == kind => (d, s.value),
                _ if s.value.kind == kind => (self.core.detector.new_state(), s.value),
                _ => (self.core.detector.new_state(), SeriesValue::new(kind)),
            };
            self.series.insert(
                s.key,
                Box::new(Entry::new(
                    detector,
                    s.lifecycle,
                    value,
                    partition,
                    now,
                    self.clock,
                    flag::STORED,
                )),
            );
        }
        self.forget_tapped();
        self.publish_series_count();
    }

    fn barrier(&mut self, kind: &BarrierKind) -> WorkerReport {
        // A snapshot must hold every event dispatched before it, held
        // events included: wait for the histories in flight. A `Sync`
        // barrier (no state store: a checkpoint that saves nothing) does
        // not stall the shard for them, except in the drain, where every
        // answer is immediate.
        let draining = self
            .history
            .as_ref()
            .is_some_and(|h| h.loader.is_cancelled());
        if draining || !matches!(kind, BarrierKind::Sync) {
            self.settle_histories();
        } else {
            self.take_histories();
        }
        let mut report = WorkerReport::default();
        match kind {
            BarrierKind::Sync => {
                self.evict_idle();
                // No store takes deletions (see `left`).
                self.left.clear();
            }
            BarrierKind::Snapshot {
                partitions,
                only_dirty,
            } => {
                // With a state store, checkpoints are snapshots, never
                // `Sync`: the idle TTL must apply here too. Before encoding,
                // so an evicted series is not saved again.
                self.evict_idle();
                for (key, e) in self.series.iter_mut() {
                    let wanted = partitions
                        .as_ref()
                        .is_none_or(|p| p.binary_search(&e.partition).is_ok());
                    if wanted && (e.is(flag::DIRTY) || !only_dirty) {
                        encode(key, e, &mut report);
                        e.set(flag::DIRTY, false);
                        e.set(flag::STORED, true);
                    }
                }
                // A full snapshot replaces each partition whole: nothing to
                // delete. An incremental one must delete what went away.
                let wanted = |p: &SourcePartition| {
                    partitions
                        .as_ref()
                        .is_none_or(|w| w.binary_search(p).is_ok())
                };
                self.deletions(*only_dirty, wanted, &mut report);
            }
            BarrierKind::Release { partitions } => {
                // Another instance owns these series now: saved, then gone
                // (a gauge left here would go stale and hold a slot). Their
                // records are saved in the same partitions, so leaving adds
                // no deletion, unless encoding failed: then the stale record
                // goes too, and the series relearns as the log line says.
                let (series, mut out) = self.split();
                series.retain(|k, e| {
                    let keep = partitions.binary_search(&e.partition).is_err();
                    if !keep {
                        encode(k, e, &mut report);
                        out.leave(k, e);
                    }
                    keep
                });
                self.deletions(true, |p| partitions.binary_search(p).is_ok(), &mut report);
            }
        }
        self.forget_tapped();
        self.publish_series_count();
        report.series = self.series.len();
        report
    }

    /// Tells the tap of the series let go since the last batch.
    fn forget_tapped(&mut self) {
        match &self.tap {
            Some(t) => t.forget(self.index, &mut self.tap_gone),
            None => self.tap_gone.clear(),
        }
    }

    /// The series map, and what must forget a series that leaves it.
    fn split(&mut self) -> (&mut HashMap<SeriesKey, Box<Entry>>, Leaving<'_>) {
        let out = Leaving {
            metrics: &self.core.metrics,
            left: &mut self.left,
            tap_gone: &mut self.tap_gone,
        };
        (&mut self.series, out)
    }

    /// Moves the entries of `left` in the `wanted` partitions into the
    /// report as deletions (when `emit`), except where the series is being
    /// saved in that same partition (it came back). Others stay for a later
    /// barrier.
    fn deletions(
        &mut self,
        emit: bool,
        wanted: impl Fn(&SourcePartition) -> bool,
        report: &mut WorkerReport,
    ) {
        if self.left.is_empty() {
            return;
        }
        let saved: hashbrown::HashSet<(SourcePartition, u64)> = report
            .records
            .iter()
            .map(|r| (r.partition, r.fingerprint))
            .collect();
        let mut seen = hashbrown::HashSet::new();
        self.left.retain(|&(partition, fingerprint)| {
            if !wanted(&partition) {
                return true;
            }
            let gone = !saved.contains(&(partition, fingerprint));
            if emit && gone && seen.insert((partition, fingerprint)) {
                report.records.push(SnapshotRecord {
                    partition,
                    fingerprint,
                    bytes: Vec::new(),
                });
            }
            false
        });
    }

    /// Removes series idle for longer than the TTL (a series waiting for
    /// its history stays: its events are held).
    fn evict_idle(&mut self) {
        let Some(ttl) = self.idle_ttl else { return };
        let now = self.now_secs();
        let ttl = u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX);
        let before = self.series.len();
        let (series, mut out) = self.split();
        series.retain(|k, e| {
            let keep = now.saturating_sub(e.last_seen) < ttl || e.is(flag::LOADING);
            if !keep {
                out.leave(k, e);
            }
            keep
        });
        let evicted = before - self.series.len();
        if evicted > 0 {
            self.core.metrics.series_evicted(evicted as u64);
            tracing::debug!(evicted, "Evicted idle series.");
        }
    }

    /// Makes room at the cap: evicts the least recently seen ~1% of series
    /// (at least one) in one O(n) pass, so a burst of new series costs O(1)
    /// amortised per insert instead of a scan each. Series waiting for
    /// their history stay (their events are held).
    fn evict_oldest(&mut self) {
        let n = self.series.len();
        if n == 0 {
            return;
        }
        let k = (n / 100).max(1);
        let mut ages: Vec<u64> = self.series.values().map(|e| e.touched).collect();
        let (_, &mut cutoff, _) = ages.select_nth_unstable(k - 1);
        // Clock values are unique per series, so exactly the k oldest go.
        let (series, mut out) = self.split();
        series.retain(|k, e| {
            let keep = e.touched > cutoff || e.is(flag::LOADING);
            if !keep {
                out.leave(k, e);
            }
            keep
        });
        let evicted = n - self.series.len();
        self.core.metrics.series_evicted(evicted as u64);
    }

    /// Moves the shared `anomalyd_series_active` gauge by this shard's change
    /// since it last published (shards add up to the total).
    fn publish_series_count(&mut self) {
        let now = self.series.len() as i64;
        if now != self.published {
            self.core.metrics.add_series_active(now - self.published);
            self.published = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::ValueKind;
    use crate::alert::lifecycle::AlertRuleConfig;
    use crate::counter::Kind;
    use crate::detector::DetectorConfig;
    use crate::telemetry::metrics::MetricsConfig;

    struct Discard;
    impl AlertHandoff for Discard {
        fn hand_off(&self, _: SeriesAlert) {}
    }

    /// A tap that keeps what the shard tells it: the series it holds a
    /// slot for, and how many events of each it saw.
    #[derive(Default)]
    struct Recorder(std::sync::Mutex<Recorded>);

    #[derive(Default)]
    struct Recorded {
        /// Fingerprint by slot; a slot is never reused here.
        held: std::collections::BTreeMap<Slot, u64>,
        /// Events recorded, by fingerprint.
        events: std::collections::BTreeMap<u64, usize>,
    }

    impl Recorded {
        fn forget(&mut self, gone: &mut Vec<(Slot, u64)>) {
            for (slot, fp) in gone.drain(..) {
                assert_eq!(self.held.remove(&slot), Some(fp), "slot {slot}");
            }
        }
    }

    impl Tap for Recorder {
        type Batch<'a> = std::sync::MutexGuard<'a, Recorded>;

        fn batch(&self, _shard: usize) -> Self::Batch<'_> {
            self.0.lock().unwrap()
        }

        fn forget(&self, _shard: usize, gone: &mut Vec<(Slot, u64)>) {
            self.0.lock().unwrap().forget(gone);
        }
    }

    impl TapBatch for std::sync::MutexGuard<'_, Recorded> {
        fn record(
            &mut self,
            slot: &mut Slot,
            key: &SeriesKey,
            _ts_ms: i64,
            _value: f64,
            _decision: &crate::detector::Decision,
            _lifecycle: &Lifecycle,
            _transition: Option<&crate::alert::lifecycle::Transition>,
            _kind: Kind,
        ) {
            let fp = key.fingerprint();
            if *slot == NO_SLOT {
                *slot = Slot::try_from(self.events.len() + self.held.len()).unwrap();
                self.held.insert(*slot, fp);
            }
            assert_eq!(self.held.get(slot), Some(&fp));
            *self.events.entry(fp).or_default() += 1;
        }

        fn forget(&mut self, gone: &mut Vec<(Slot, u64)>) {
            Recorded::forget(self, gone);
        }
    }

    fn shard(cap: usize) -> Shard<Recorder> {
        shard_with(cap, &MetricsConfig::default())
    }

    fn shard_with(cap: usize, metrics: &MetricsConfig) -> Shard<Recorder> {
        let core = Arc::new(Core {
            detector: Detector::new(&DetectorConfig::default(), 0.5).unwrap(),
            rule: AlertRule::new(&AlertRuleConfig::default(), "alert").unwrap(),
            alerts: Arc::new(Discard),
            metrics: Arc::new(
                Metrics::new(prometheus::Registry::new(), metrics, &[], &skip_reasons()).unwrap(),
            ),
            options: ShardOptions::default(),
        });
        let (tx, _) = mpsc::channel(1);
        Shard::new(0, core, cap, None, None, tx.downgrade())
    }

    fn event(i: usize) -> Event {
        Event {
            series: SeriesKey::new("m", [("id", i.to_string())]),
            ts_ms: 0,
            value: 1.0,
        }
    }

    const P: SourcePartition = SourcePartition {
        stream: 0,
        partition: 0,
    };

    /// An event older than its series' latest from the same partition is
    /// dropped and counted; across partitions, which have no order between
    /// them, events are taken as they come.
    #[test]
    fn out_of_order_events_within_a_partition_are_dropped() {
        let mut s = shard_with(10, &MetricsConfig::default());
        let at = |ts_ms: i64| Event { ts_ms, ..event(1) };
        let q = SourcePartition {
            stream: 0,
            partition: 1,
        };
        s.process(
            P,
            vec![at(10), at(20), at(15), at(20), at(30)],
            Instant::now(),
        );
        assert_eq!(s.core.metrics.events_processed_total(), 4);
        // From another partition, an older event is taken...
        s.process(q, vec![at(25)], Instant::now());
        // ...and order is then kept within that partition.
        s.process(q, vec![at(24), at(26)], Instant::now());
        assert_eq!(s.core.metrics.events_processed_total(), 6);
        let text = s.core.metrics.render().unwrap();
        assert!(
            text.contains("anomalyd_events_skipped_total{reason=\"out_of_order\"} 2"),
            "{text}"
        );
    }

    /// At the cap, the series evicted is the one least recently seen, even
    /// when every event arrives within the same second (a burst is exactly
    /// when the cap matters).
    #[test]
    fn eviction_at_the_cap_takes_the_least_recently_seen_series() {
        for stale in 0..10 {
            let mut s = shard(10);
            for i in 0..10 {
                s.process(P, vec![event(i)], Instant::now());
            }
            // Touch every series but `stale`, then add an 11th series.
            let touched: Vec<Event> = (0..10).filter(|&i| i != stale).map(event).collect();
            s.process(P, touched, Instant::now());
            s.process(P, vec![event(10)], Instant::now());
            assert_eq!(s.series.len(), 10);
            assert!(
                !s.series.contains_key(&event(stale).series),
                "series {stale} was the least recently seen and should have been evicted"
            );
        }
    }

    /// Evicted series free their per-series gauge slot, so new series can
    /// still be exported once the cap has turned the first ones over.
    #[test]
    fn evicted_series_leave_the_per_series_gauges() {
        let mut config = MetricsConfig::default();
        config.per_series.enabled = true;
        config.per_series.max_series = 10;
        let mut s = shard_with(10, &config);
        for i in 0..30 {
            s.process(P, vec![event(i)], Instant::now());
        }
        let text = s.core.metrics.render().unwrap();
        let exported = text
            .lines()
            .find_map(|l| l.strip_prefix("anomalyd_series_exported "))
            .unwrap();
        assert_eq!(exported, "10");
        assert!(
            text.contains("anomalyd_series_export_refused_total 0"),
            "{text}"
        );
        // The newest series is exported; the first one is gone.
        assert!(text.contains(r#"series="m{id=\"29\"}""#), "{text}");
        assert!(!text.contains(r#"series="m{id=\"0\"}""#), "{text}");
    }

    /// The tap follows the shard: scored events are recorded, and a
    /// series the shard evicts (at the cap or idle) or hands over leaves
    /// it, by its slot.
    #[test]
    fn the_tap_sees_events_and_every_series_that_leaves() {
        let mut s = shard(2);
        let tap = Arc::new(Recorder::default());
        s.tap = Some(Arc::clone(&tap));
        let held = || -> Vec<u64> {
            let mut fps: Vec<u64> = tap.0.lock().unwrap().held.values().copied().collect();
            fps.sort();
            fps
        };
        let sorted = |mut v: Vec<u64>| {
            v.sort();
            v
        };
        let fp = |i| event(i).series.fingerprint();
        s.process(P, vec![event(0), event(1), event(0)], Instant::now());
        assert_eq!(held(), sorted(vec![fp(0), fp(1)]));
        assert_eq!(tap.0.lock().unwrap().events[&fp(0)], 2);
        // At the cap of 2, series 2 evicts the least recent (1).
        s.process(P, vec![event(0), event(2)], Instant::now());
        assert_eq!(held(), sorted(vec![fp(0), fp(2)]));
        // Idle: series 0 was seen 5 s ago, series 2 now.
        s.idle_ttl = Some(Duration::from_secs(2));
        s.started -= Duration::from_secs(5);
        s.process(P, vec![event(2)], Instant::now());
        s.barrier(&BarrierKind::Sync);
        assert_eq!(held(), [fp(2)]);
        // A released partition takes its series along.
        s.barrier(&BarrierKind::Release {
            partitions: vec![P],
        });
        assert!(held().is_empty());
        assert!(s.series.is_empty() && s.tap_gone.is_empty());
    }

    /// A series handed over with its partition is saved, and its record
    /// there is not deleted by the same snapshot (leaving the shard must
    /// not cancel the save).
    #[test]
    fn a_released_series_is_saved_not_deleted() {
        let mut s = shard(10);
        s.process(P, vec![event(0), event(1)], Instant::now());
        // Stored once, so leaving would ask for a deletion.
        incremental(&mut s);
        s.process(P, vec![event(0)], Instant::now());
        let report = s.barrier(&BarrierKind::Release {
            partitions: vec![P],
        });
        let mut got: Vec<(u64, bool)> = report
            .records
            .iter()
            .map(|r| (r.fingerprint, r.is_deletion()))
            .collect();
        got.sort();
        let mut want = vec![
            (event(0).series.fingerprint(), false),
            (event(1).series.fingerprint(), false),
        ];
        want.sort();
        assert_eq!(got, want);
        assert_eq!(report.series, 0);
        assert!(s.left.is_empty());
    }

    /// With a state store every checkpoint is a snapshot barrier: the idle
    /// TTL must apply there, and an evicted series is not saved again.
    #[test]
    fn snapshot_barriers_evict_idle_series_too() {
        let mut s = shard(10);
        s.idle_ttl = Some(Duration::from_secs(2));
        s.process(P, vec![event(0)], Instant::now());
        s.started -= Duration::from_secs(5); // event(0) is now 5 s old
        s.process(P, vec![event(1)], Instant::now());
        let report = s.barrier(&BarrierKind::Snapshot {
            partitions: None,
            only_dirty: false,
        });
        assert_eq!(report.series, 1);
        assert_eq!(report.records.len(), 1);
        assert_eq!(report.records[0].fingerprint, event(1).series.fingerprint());
    }

    fn incremental(s: &mut Shard<Recorder>) -> Vec<(SourcePartition, u64, bool)> {
        let mut r: Vec<_> = s
            .barrier(&BarrierKind::Snapshot {
                partitions: None,
                only_dirty: true,
            })
            .records
            .iter()
            .map(|r| (r.partition, r.fingerprint, r.is_deletion()))
            .collect();
        r.sort();
        r
    }

    /// An incremental store learns that a series left a partition (it moved,
    /// or was evicted), so a restore cannot bring back its stale record.
    #[test]
    fn series_that_leave_a_partition_are_deleted_there() {
        const Q: SourcePartition = SourcePartition {
            stream: 0,
            partition: 1,
        };
        let fp = |i| event(i).series.fingerprint();
        let mut s = shard(2);
        s.process(P, vec![event(0)], Instant::now());
        assert_eq!(incremental(&mut s), [(P, fp(0), false)]);
        // Moves to Q: saved there, deleted in P.
        s.process(Q, vec![event(0)], Instant::now());
        let mut want = vec![(P, fp(0), true), (Q, fp(0), false)];
        want.sort();
        assert_eq!(incremental(&mut s), want);
        // Moves back to P before the next snapshot: saved in P, deleted in
        // Q, nothing deleted in P.
        s.process(P, vec![event(0)], Instant::now());
        s.process(Q, vec![event(1)], Instant::now());
        s.process(P, vec![event(0)], Instant::now());
        let mut want = vec![(Q, fp(0), true), (P, fp(0), false), (Q, fp(1), false)];
        want.sort();
        assert_eq!(incremental(&mut s), want);
        // At the cap of 2, a third series evicts the least recent (1).
        s.process(P, vec![event(0), event(2)], Instant::now());
        let mut want = vec![(P, fp(0), false), (P, fp(2), false), (Q, fp(1), true)];
        want.sort();
        assert_eq!(incremental(&mut s), want);
        // A full snapshot (or no store at all) needs no deletions.
        s.process(P, vec![event(3)], Instant::now());
        let full = s.barrier(&BarrierKind::Snapshot {
            partitions: None,
            only_dirty: false,
        });
        assert!(full.records.iter().all(|r| !r.is_deletion()));
        assert!(s.left.is_empty());
        // A series no snapshot holds needs no deletion when it moves or is
        // evicted (a burst of new series must not flood the changelog).
        let mut s = shard(1);
        s.process(P, vec![event(10)], Instant::now());
        s.process(Q, vec![event(10)], Instant::now());
        s.process(P, vec![event(11)], Instant::now()); // evicts 10
        assert_eq!(incremental(&mut s), [(P, fp(11), false)]);
    }

    /// The per-series entry stays small: a million series hold 136 MB of
    /// entries (plus their keys and detector slabs). (The alert lifecycle
    /// keeps the alert's peak score since 0.2.0.)
    #[test]
    fn entries_are_136_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 136);
    }

    /// Alerts handed over, for the tests that check them.
    #[derive(Default)]
    struct Collect(std::sync::Mutex<Vec<SeriesAlert>>);
    impl AlertHandoff for Collect {
        fn hand_off(&self, alert: SeriesAlert) {
            self.0.lock().unwrap().push(alert);
        }
    }

    /// A shard whose detector is warm after 20 events, alerting into
    /// `alerts`, with `options`.
    fn shard_alerting(alerts: Arc<Collect>, options: ShardOptions) -> Shard<Recorder> {
        let mut detector = DetectorConfig::default();
        detector.threshold.warmup_events = 20;
        detector.threshold.warmup_secs = 0;
        let core = Arc::new(Core {
            detector: Detector::new(&detector, 0.5).unwrap(),
            rule: AlertRule::new(&AlertRuleConfig::default(), "alert").unwrap(),
            alerts,
            metrics: Arc::new(
                Metrics::new(
                    prometheus::Registry::new(),
                    &MetricsConfig::default(),
                    &[],
                    &crate::counter::SKIP_REASONS,
                )
                .unwrap(),
            ),
            options,
        });
        let (tx, _) = mpsc::channel(1);
        Shard::new(0, core, 100, None, None, tx.downgrade())
    }

    /// A steady, slightly noisy value (seeded), then a jump at `jump`.
    fn steady(key: &SeriesKey, t0_ms: i64, n: usize, jump: Option<usize>) -> Vec<Event> {
        (0..n)
            .map(|i| Event {
                series: key.clone(),
                ts_ms: t0_ms + 60_000 * i as i64,
                value: 50.0
                    + [0.0, 0.4, -0.3, 0.2, -0.4, 0.3, -0.1][i % 7]
                    + if Some(i) == jump { 40.0 } else { 0.0 },
            })
            .collect()
    }

    /// Events older than `alert.max_event_age_secs` teach the model and
    /// never reach the lifecycle; the same jump among recent events alerts.
    #[test]
    fn old_events_learn_and_recent_ones_alert() {
        let now = wall_ms();
        let key = SeriesKey::from_name("temp");
        let options = || ShardOptions {
            max_event_age_ms: Some(3_600_000),
            ..ShardOptions::default()
        };
        // Three days ago: 300 events, a jump at event 250.
        let alerts = Arc::new(Collect::default());
        let mut s = shard_alerting(Arc::clone(&alerts), options());
        let old = steady(&key, now - 3 * 86_400_000, 300, Some(250));
        s.process(P, old.clone(), Instant::now());
        assert!(alerts.0.lock().unwrap().is_empty());
        let text = s.core.metrics.render().unwrap();
        assert!(text.contains("anomalyd_events_too_old_total 300"), "{text}");
        assert!(
            text.contains("anomalyd_events_processed_total 300"),
            "{text}"
        );
        assert!(s.series[&key].detector.scored_events() >= 280, "learned");
        // The same stream ending now: the jump alerts.
        let alerts = Arc::new(Collect::default());
        let mut s = shard_alerting(Arc::clone(&alerts), options());
        let recent = steady(&key, now - 299 * 60_000, 300, Some(250));
        s.process(P, recent, Instant::now());
        let got = alerts.0.lock().unwrap();
        assert!(
            got.iter()
                .any(|a| a.status == crate::alert::AlertStatus::Firing && a.value > 85.0),
            "{got:?}"
        );
        assert!(got.iter().all(|a| !a.is_rate()));
        // Without a limit, old events alert as before.
        let alerts = Arc::new(Collect::default());
        let mut s = shard_alerting(Arc::clone(&alerts), ShardOptions::default());
        s.process(P, old, Instant::now());
        assert!(!alerts.0.lock().unwrap().is_empty());
    }

    /// A counter is learned as its rate: resets re-baseline (no alert,
    /// counted), a five-fold rate alerts, and the alert says "rate".
    #[test]
    fn counters_are_learned_as_rates() {
        let classifier = Arc::new(crate::counter::Classifier::default());
        classifier.register(
            0,
            1,
            Arc::new(crate::counter::StreamRules::new(Default::default())),
        );
        let alerts = Arc::new(Collect::default());
        let mut s = shard_alerting(
            Arc::clone(&alerts),
            ShardOptions {
                classifier,
                ..ShardOptions::default()
            },
        );
        let key = SeriesKey::new("http_requests_total", [("job", "api")]);
        let t0 = 1_767_225_600_000;
        let mut total = 1_000.0;
        let mut events = Vec::new();
        // Seeded noise (xorshift), uniform in [-15, 15).
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        let mut noise = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64 * 30.0 - 15.0
        };
        for i in 0..200 {
            // About 10 per second; restarts at 80 and 150.
            if i == 80 || i == 150 {
                total = 7.0;
            } else {
                total += 600.0 + noise();
            }
            events.push(Event {
                series: key.clone(),
                ts_ms: t0 + 60_000 * i as i64,
                value: total,
            });
        }
        s.process(P, events, Instant::now());
        assert!(
            alerts.0.lock().unwrap().is_empty(),
            "resets do not alert: {:?}",
            alerts
                .0
                .lock()
                .unwrap()
                .iter()
                .map(|a| (a.ts.clone(), a.value, a.expected, a.reason))
                .collect::<Vec<_>>()
        );
        let e = &s.series[&key];
        assert_eq!(e.kind, Kind::Rate);
        assert_eq!(e.rate.last(), Some((t0 + 199 * 60_000, total)));
        let text = s.core.metrics.render().unwrap();
        for (reason, n) in [("counter_first", 1), ("counter_reset", 2)] {
            let line = format!("anomalyd_events_skipped_total{{reason=\"{reason}\"}} {n}\n");
            assert!(text.contains(&line), "{line}{text}");
        }
        // Five times the rate for a minute.
        total += 3000.0;
        s.process(
            P,
            vec![Event {
                series: key.clone(),
                ts_ms: t0 + 200 * 60_000,
                value: total,
            }],
            Instant::now(),
        );
        let got = alerts.0.lock().unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].is_rate(), "{:?}", got[0].labels);
        // A field, not a label: the series' labels stay its own.
        assert_eq!(got[0].value_kind, ValueKind::Rate);
        assert!(!got[0].labels.contains_key(crate::alert::VALUE_LABEL));
        assert!(
            (got[0].value - 50.0).abs() < 1e-9,
            "per second: {}",
            got[0].value
        );
        assert!((got[0].expected - 10.0).abs() < 2.0, "{}", got[0].expected);
    }
}
