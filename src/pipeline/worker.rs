//! One processing shard: the per-series state map and the per-event path.
//!
//! A shard owns the state of its series (model, threshold, alert lifecycle)
//! and nothing else. For every event, strictly in order:
//! [`Detector::observe`] (score, then learn) → alert lifecycle → alerts
//! handed to the sink queues (never waiting on a sink). It also answers
//! barriers (see [`super::Barrier`]), installs restored series and enforces
//! the memory bounds (`max_series`, idle TTL). With the live page on, it
//! also writes each scored event into the page's history
//! ([`crate::ui::history`]), one lock per batch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use hashbrown::hash_map::EntryRef;
use tokio::sync::mpsc;

use super::{BarrierKind, Work};
use crate::alert::Alert;
use crate::alert::lifecycle::{AlertRule, Lifecycle};
use crate::detector::{Detector, DetectorState, Skipped};
use crate::event::{Event, SeriesKey};
use crate::state::{SeriesSnapshot, SnapshotRecord, SourcePartition};
use crate::telemetry::metrics::{Metrics, SeriesSample};
use crate::ui::history::{History, NO_SLOT, Slot};
use prometheus::local::{LocalHistogram, LocalIntCounter};

/// Where a shard hands alerts over. Implementations must not block: the
/// sink set queues them (bounded, with a counted overflow policy).
pub trait AlertHandoff: Send + Sync {
    /// Takes one alert.
    fn hand_off(&self, alert: Alert);
}

/// What every shard shares: the compiled detector and alert rule, the alert
/// hand-off and the metrics.
pub struct Core {
    /// Compiled model/threshold configuration.
    pub detector: Detector,
    /// Compiled alert rule.
    pub rule: AlertRule,
    /// Where alerts go.
    pub alerts: Arc<dyn AlertHandoff>,
    /// The daemon's metrics.
    pub metrics: Arc<Metrics>,
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

/// Per-series entry of the shard's map.
struct Entry {
    detector: DetectorState,
    lifecycle: Lifecycle,
    /// Partition of the latest event: where the series goes on a revoke.
    partition: SourcePartition,
    /// Seconds since the shard started when the last event arrived (u32 is
    /// 136 years; cheaper than an `Instant` per series). Drives the idle TTL.
    last_seen: u32,
    /// The shard's logical clock when the series was last touched: orders
    /// series for eviction at the cap. Seconds are too coarse for that: in
    /// a burst every series shares the same second, and eviction would then
    /// drop established series as readily as the burst's new ones.
    touched: u64,
    /// Changed since its last snapshot.
    dirty: bool,
    /// The series' slot in the live page's history ([`NO_SLOT`] when it has
    /// none): one array index per event instead of a map probe. Two bytes,
    /// which fit in this struct's padding (entries stay 104 bytes).
    ui_slot: Slot,
    /// A snapshot holds a record of it in `partition` (it was saved there,
    /// or restored from there): leaving the partition must delete that
    /// record. Series that never reached a store (a burst of new series
    /// evicted at the cap) need no deletion.
    stored: bool,
}

struct Shard {
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
    /// Shard-local `anomalyd_events_processed_total`, flushed per batch.
    processed: LocalIntCounter,
    /// Shard-local `anomalyd_event_processing_seconds`, observed and
    /// flushed per batch (one clock read per batch).
    latency: LocalHistogram,
    /// This shard's number: its store in the history.
    index: usize,
    /// The live page's history, when the page is on.
    ui: Option<Arc<History>>,
    /// History slots of series this shard let go, `(slot, fingerprint)`,
    /// to drop from the history when the shard next holds its lock.
    ui_gone: Vec<(Slot, u64)>,
}

/// The shard thread's main loop: runs until the queue closes.
pub(super) fn run(
    shard: usize,
    mut rx: mpsc::Receiver<Work>,
    core: Arc<Core>,
    cap: usize,
    idle_ttl: Option<Duration>,
    ui: Option<Arc<History>>,
) {
    tracing::debug!(shard, cap, "Shard started.");
    let (processed, latency) = core.metrics.processing_local();
    let mut s = Shard {
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
        index: shard,
        ui,
        ui_gone: Vec::new(),
    };
    while let Some(work) = rx.blocking_recv() {
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
        }
    }
    let held = s.series.len();
    s.series.clear();
    s.publish_series_count();
    tracing::debug!(shard, series = held, "Shard stopped.");
}

impl Shard {
    fn now_secs(&self) -> u32 {
        u32::try_from(self.started.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    fn process(&mut self, partition: SourcePartition, events: Vec<Event>, received: Instant) {
        let now = self.now_secs();
        let core = Arc::clone(&self.core);
        let m = &core.metrics;
        let mut processed = 0u64;
        // The page's history: one lock for the whole batch, or nothing.
        let history = self.ui.clone();
        let mut ui = history.as_deref().map(|h| h.batch(self.index));
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
                if let Some(ui) = ui.as_mut() {
                    ui.forget(&mut self.ui_gone);
                }
            }
            let entry = match self.series.entry_ref(&event.series) {
                EntryRef::Occupied(o) => o.into_mut(),
                EntryRef::Vacant(v) => v.insert(Box::new(Entry {
                    detector: core.detector.new_state(),
                    lifecycle: Lifecycle::default(),
                    partition,
                    last_seen: now,
                    touched: self.clock,
                    dirty: true,
                    stored: false,
                    ui_slot: NO_SLOT,
                })),
            };
            if entry.partition != partition {
                // Its record in the old partition is stale from now on.
                if entry.stored {
                    self.left
                        .push((entry.partition, event.series.fingerprint()));
                }
                entry.partition = partition;
                entry.stored = false;
            }
            entry.last_seen = now;
            entry.touched = self.clock;
            entry.dirty = true;
            // Scores the event with the model as it was, then trains on it.
            match core
                .detector
                .observe(&mut entry.detector, event.ts_ms, event.value)
            {
                Ok(decision) => {
                    processed += 1;
                    if m.per_series_enabled() {
                        let sample = SeriesSample {
                            value: event.value,
                            expected: decision.expected,
                            lower: decision.lower,
                            upper: decision.upper,
                            score: decision.score,
                        };
                        m.observe_series(&event.series, &sample);
                    }
                    if let Some(t) =
                        entry
                            .lifecycle
                            .step(&core.rule, event.ts_ms, event.value, &decision)
                    {
                        let alert = crate::alert::lifecycle::build_alert(
                            &event.series,
                            &t,
                            event.ts_ms,
                            event.value,
                            &decision,
                            entry.lifecycle.peak_score(),
                            &core.rule,
                            core.detector.model_name(),
                        );
                        m.alert_emitted(alert.status, alert.severity);
                        core.alerts.hand_off(alert);
                    }
                    if let Some(ui) = ui.as_mut() {
                        ui.record(
                            &mut entry.ui_slot,
                            &event.series,
                            event.ts_ms,
                            event.value,
                            &decision,
                            &entry.lifecycle,
                        );
                    }
                }
                Err(skipped) => {
                    m.event_skipped(skipped.reason());
                    if skipped == Skipped::IncompatibleState {
                        // Restored under another model shape: start over so
                        // the series' next events are scored again.
                        entry.detector = core.detector.new_state();
                    }
                }
            }
        }
        // One clock read per batch, not per event: every event of the batch
        // is recorded with the latency of the batch's end (message received
        // → its last event processed), which bounds each event's own.
        let latency = received.elapsed().as_secs_f64();
        for _ in 0..processed {
            self.latency.observe(latency);
        }
        self.processed.inc_by(processed);
        self.processed.flush();
        self.latency.flush();
        self.publish_series_count();
    }

    fn restore(&mut self, partition: SourcePartition, series: Vec<SeriesSnapshot>) {
        let now = self.now_secs();
        for s in series {
            self.clock += 1;
            if self.series.len() >= self.cap {
                self.evict_oldest();
            }
            let detector = s.detector.unwrap_or_else(|| self.core.detector.new_state());
            self.series.insert(
                s.key,
                Box::new(Entry {
                    detector,
                    lifecycle: s.lifecycle,
                    partition,
                    last_seen: now,
                    touched: self.clock,
                    dirty: false,
                    stored: true,
                    ui_slot: NO_SLOT,
                }),
            );
        }
        self.forget_ui();
        self.publish_series_count();
    }

    fn barrier(&mut self, kind: &BarrierKind) -> WorkerReport {
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
                    if wanted && (e.dirty || !only_dirty) {
                        encode(key, e, &mut report);
                        e.dirty = false;
                        e.stored = true;
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
                let released: Vec<SeriesKey> = self
                    .series
                    .iter()
                    .filter(|(_, e)| partitions.binary_search(&e.partition).is_ok())
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in released {
                    if let Some(e) = self.series.remove(&key) {
                        encode(&key, &e, &mut report);
                        if e.ui_slot != NO_SLOT {
                            self.ui_gone.push((e.ui_slot, key.fingerprint()));
                        }
                        // Another instance owns the series now; a gauge
                        // left here would go stale and hold a slot.
                        self.core.metrics.forget_series(&key);
                    }
                }
                self.deletions(true, |p| partitions.binary_search(p).is_ok(), &mut report);
            }
        }
        self.forget_ui();
        self.publish_series_count();
        report.series = self.series.len();
        report
    }

    /// Drops the history of the series let go since the last batch.
    fn forget_ui(&mut self) {
        match &self.ui {
            Some(h) => h.forget(self.index, &mut self.ui_gone),
            None => self.ui_gone.clear(),
        }
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

    /// Removes series idle for longer than the TTL.
    fn evict_idle(&mut self) {
        let Some(ttl) = self.idle_ttl else { return };
        let now = self.now_secs();
        let ttl = u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX);
        let before = self.series.len();
        let (metrics, left, gone) = (&self.core.metrics, &mut self.left, &mut self.ui_gone);
        self.series.retain(|k, e| {
            let keep = now.saturating_sub(e.last_seen) < ttl;
            if !keep {
                metrics.forget_series(k);
                if e.stored {
                    left.push((e.partition, k.fingerprint()));
                }
                if e.ui_slot != NO_SLOT {
                    gone.push((e.ui_slot, k.fingerprint()));
                }
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
    /// amortised per insert instead of a scan each.
    fn evict_oldest(&mut self) {
        let n = self.series.len();
        if n == 0 {
            return;
        }
        let k = (n / 100).max(1);
        let mut ages: Vec<u64> = self.series.values().map(|e| e.touched).collect();
        let (_, &mut cutoff, _) = ages.select_nth_unstable(k - 1);
        // Clock values are unique per series, so exactly the k oldest go.
        let (metrics, left, gone) = (&self.core.metrics, &mut self.left, &mut self.ui_gone);
        self.series.retain(|k, e| {
            let keep = e.touched > cutoff;
            if !keep {
                // Frees the per-series gauge slot (a no-op when disabled).
                metrics.forget_series(k);
                if e.stored {
                    left.push((e.partition, k.fingerprint()));
                }
                if e.ui_slot != NO_SLOT {
                    gone.push((e.ui_slot, k.fingerprint()));
                }
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

fn encode(key: &SeriesKey, e: &Entry, report: &mut WorkerReport) {
    match crate::state::encode_series(key, &e.detector, &e.lifecycle) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::lifecycle::AlertRuleConfig;
    use crate::detector::DetectorConfig;
    use crate::telemetry::metrics::MetricsConfig;

    struct Discard;
    impl AlertHandoff for Discard {
        fn hand_off(&self, _: Alert) {}
    }

    fn shard(cap: usize) -> Shard {
        shard_with(cap, &MetricsConfig::default())
    }

    fn shard_with(cap: usize, metrics: &MetricsConfig) -> Shard {
        let core = Arc::new(Core {
            detector: Detector::new(&DetectorConfig::default(), 0.5).unwrap(),
            rule: AlertRule::new(&AlertRuleConfig::default(), "alert").unwrap(),
            alerts: Arc::new(Discard),
            metrics: Arc::new(
                Metrics::new(prometheus::Registry::new(), metrics, &[], &[]).unwrap(),
            ),
        });
        let (processed, latency) = core.metrics.processing_local();
        Shard {
            processed,
            latency,
            core,
            series: HashMap::new(),
            cap,
            idle_ttl: None,
            started: Instant::now(),
            clock: 0,
            left: Vec::new(),
            published: 0,
            index: 0,
            ui: None,
            ui_gone: Vec::new(),
        }
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

    /// The live page's history follows the shard: scored events are
    /// recorded, and a series the shard evicts or hands over leaves it.
    #[test]
    fn the_page_history_records_events_and_forgets_evicted_series() {
        let mut s = shard(2);
        let limits = crate::ui::UiConfig::default().limits();
        let history = Arc::new(History::new(limits, 1, &prometheus::Registry::new()).unwrap());
        s.ui = Some(Arc::clone(&history));
        let held = |h: &History| {
            let mut fps: Vec<u64> = h.summaries().iter().map(|x| x.key.fingerprint()).collect();
            fps.sort();
            fps
        };
        let fp = |i| event(i).series.fingerprint();
        s.process(P, vec![event(0), event(1), event(0)], Instant::now());
        assert_eq!(held(&history), {
            let mut v = vec![fp(0), fp(1)];
            v.sort();
            v
        });
        let d = history.detail(fp(0)).unwrap();
        assert_eq!(d.samples.len(), 2);
        // At the cap of 2, series 2 evicts the least recent (1): its
        // history goes with it.
        s.process(P, vec![event(0), event(2)], Instant::now());
        assert!(history.detail(fp(1)).is_none());
        assert!(history.detail(fp(2)).is_some());
        // A released partition takes its series' histories along.
        s.barrier(&BarrierKind::Release {
            partitions: vec![P],
        });
        assert!(held(&history).is_empty());
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

    fn incremental(s: &mut Shard) -> Vec<(SourcePartition, u64, bool)> {
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
}
