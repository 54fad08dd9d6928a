//! The bounded per-sink queue and its overflow policy.
//!
//! This module owns which alert is given up when a sink's queue is full. It
//! is plain data (no locks, no clocks); the runner wraps it in a mutex.
//!
//! Policy, in order:
//! 1. drop the oldest *superseded* message: one whose series (fingerprint)
//!    or incident (id) has a newer message queued behind it. Every message
//!    carries the series' or the incident's full current state, so a
//!    superseded message adds history but no state a receiver needs
//!    (reason `superseded`);
//! 2. otherwise drop the oldest message (reason `queue_full`): under a
//!    flood the newest news is the most useful, and a sink that is down
//!    long enough to fill the queue will see the newest state first when it
//!    recovers.
//!
//! Below capacity nothing is coalesced: every message is delivered.
//!
//! A batch ([`AlertQueue::pop_batch`]) holds messages of one kind, alerts
//! or incident notifications, so a sink that delivers them differently
//! (the Kafka sink: two topics) fails or succeeds per kind.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::DropReason;
use crate::alert::{Notice, NoticeKind};

/// What a newer message replaces: its kind and its series' fingerprint
/// or incident's id.
type Key = (bool, String);

fn key_of(n: &Notice) -> Key {
    (n.kind() == NoticeKind::Incident, n.key().to_owned())
}

/// A FIFO of messages with a hard capacity.
#[derive(Debug)]
pub(crate) struct AlertQueue {
    capacity: usize,
    /// Sequence number of the next message pushed.
    next_seq: u64,
    /// Queued messages by sequence number (= arrival order).
    entries: BTreeMap<u64, Notice>,
    /// The newest queued sequence number of each key. Invariant: every
    /// value is a key of `entries`.
    latest: HashMap<Key, u64>,
    /// Sequence numbers that were superseded, oldest first. May hold numbers
    /// already delivered (skipped lazily, pruned when it grows).
    superseded: VecDeque<u64>,
}

impl AlertQueue {
    /// An empty queue holding at most `capacity` (at least 1) alerts.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            next_seq: 0,
            entries: BTreeMap::new(),
            latest: HashMap::new(),
            superseded: VecDeque::new(),
        }
    }

    /// Alerts queued.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Appends `alert`; when that overflows the capacity, returns the
    /// message given up and why.
    pub(crate) fn push(&mut self, alert: Notice) -> Option<(Notice, DropReason)> {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(prev) = self.latest.insert(key_of(&alert), seq) {
            self.superseded.push_back(prev);
        }
        self.entries.insert(seq, alert);
        if self.superseded.len() > 2 * self.capacity + 16 {
            let entries = &self.entries;
            self.superseded.retain(|s| entries.contains_key(s));
        }
        if self.entries.len() <= self.capacity {
            return None;
        }
        while let Some(s) = self.superseded.pop_front() {
            if let Some(a) = self.entries.remove(&s) {
                // A superseded entry is never the latest of its fingerprint.
                return Some((a, DropReason::Superseded));
            }
        }
        let (s, a) = self.entries.pop_first()?;
        self.forget_latest(&a, s);
        Some((a, DropReason::QueueFull))
    }

    /// Takes up to `max` of the oldest messages, in order, all of the
    /// oldest one's kind.
    pub(crate) fn pop_batch(&mut self, max: usize) -> Vec<Notice> {
        let mut out = Vec::with_capacity(max.min(self.entries.len()));
        let kind = self.entries.first_key_value().map(|(_, n)| n.kind());
        while out.len() < max {
            let Some(entry) = self.entries.first_entry() else {
                break;
            };
            if Some(entry.get().kind()) != kind {
                break;
            }
            let (s, a) = entry.remove_entry();
            self.forget_latest(&a, s);
            out.push(a);
        }
        out
    }

    /// Takes everything.
    pub(crate) fn drain(&mut self) -> Vec<Notice> {
        self.superseded.clear();
        self.latest.clear();
        std::mem::take(&mut self.entries).into_values().collect()
    }

    fn forget_latest(&mut self, alert: &Notice, seq: u64) {
        let key = key_of(alert);
        if self.latest.get(&key) == Some(&seq) {
            self.latest.remove(&key);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::alert::{Alert, AlertStatus, Severity};

    /// A test alert of series `fp` with `value`.
    pub(crate) fn alert(fp: &str, status: AlertStatus, value: f64) -> Alert {
        Alert {
            fingerprint: fp.to_owned(),
            status,
            series: format!("cpu{{host=\"{fp}\"}}"),
            labels: BTreeMap::from([
                ("__name__".to_owned(), "cpu".to_owned()),
                ("host".to_owned(), fp.to_owned()),
            ]),
            started_at: "2024-05-01T12:00:00Z".to_owned(),
            ended_at: (status == AlertStatus::Resolved).then(|| "2024-05-01T12:05:00Z".to_owned()),
            ts: "2024-05-01T12:00:00Z".to_owned(),
            value,
            expected: 1.0,
            lower: 0.5,
            upper: 1.5,
            score: 0.999,
            threshold: 0.99,
            severity: Severity::Warning,
            model: "regression".to_owned(),
            reason: crate::alert::Reason::Forecast,
            peak_score: 0.999,
            resolution: (status == AlertStatus::Resolved)
                .then_some(crate::alert::Resolution::Returned),
        }
    }

    fn values(v: &[Notice]) -> Vec<f64> {
        v.iter()
            .map(|n| n.as_alert().map_or(-1.0, |a| a.value))
            .collect()
    }

    fn n(fp: &str, status: AlertStatus, value: f64) -> Notice {
        alert(fp, status, value).into()
    }

    #[test]
    fn a_batch_is_of_one_kind_and_incidents_supersede_by_id() {
        use crate::alert::incident::{IncidentConfig, Incidents};
        let mut g = Incidents::new(&IncidentConfig::default());
        g.observe(alert("a", AlertStatus::Firing, 1.0).into());
        let out = g.flush();
        let inc = out[0].clone();
        assert!(inc.as_incident().is_some());
        let mut q = AlertQueue::new(3);
        q.push(n("a", AlertStatus::Firing, 1.0));
        q.push(inc.clone());
        q.push(inc.clone());
        // Full; the first incident notice is superseded by the second.
        let (gone, why) = q.push(n("b", AlertStatus::Firing, 2.0)).unwrap();
        assert!(gone.as_incident().is_some());
        assert_eq!(why, DropReason::Superseded);
        assert_eq!(values(&q.pop_batch(10)), [1.0]);
        let b = q.pop_batch(10);
        assert!(b.len() == 1 && b[0].as_incident().is_some());
        assert_eq!(values(&q.pop_batch(10)), [2.0]);
    }

    #[test]
    fn below_capacity_everything_is_kept_in_order() {
        let mut q = AlertQueue::new(3);
        assert!(q.push(n("a", AlertStatus::Firing, 1.0)).is_none());
        assert!(q.push(n("a", AlertStatus::Resolved, 2.0)).is_none());
        assert!(q.push(n("b", AlertStatus::Firing, 3.0)).is_none());
        assert_eq!(values(&q.pop_batch(2)), [1.0, 2.0]);
        assert_eq!(values(&q.pop_batch(5)), [3.0]);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn overflow_drops_superseded_before_oldest() {
        let mut q = AlertQueue::new(3);
        q.push(n("a", AlertStatus::Firing, 1.0));
        q.push(n("b", AlertStatus::Firing, 2.0));
        q.push(n("b", AlertStatus::Resolved, 3.0));
        // Full; "b" firing (2.0) is superseded by "b" resolved.
        let (gone, why) = q.push(n("c", AlertStatus::Firing, 4.0)).unwrap();
        assert_eq!((values(&[gone])[0], why), (2.0, DropReason::Superseded));
        // No superseded message left: the oldest goes.
        let (gone, why) = q.push(n("d", AlertStatus::Firing, 5.0)).unwrap();
        assert_eq!((values(&[gone])[0], why), (1.0, DropReason::QueueFull));
        assert_eq!(q.len(), 3);
        assert_eq!(values(&q.drain()), [3.0, 4.0, 5.0]);
    }

    #[test]
    fn delivered_messages_are_not_counted_as_superseded() {
        let mut q = AlertQueue::new(2);
        q.push(n("a", AlertStatus::Firing, 1.0));
        assert_eq!(values(&q.pop_batch(1)), [1.0]);
        // "a" again: its predecessor is gone, so overflow drops the oldest.
        q.push(n("a", AlertStatus::Resolved, 2.0));
        q.push(n("b", AlertStatus::Firing, 3.0));
        let (gone, why) = q.push(n("c", AlertStatus::Firing, 4.0)).unwrap();
        assert_eq!((values(&[gone])[0], why), (2.0, DropReason::QueueFull));
    }

    #[test]
    fn bookkeeping_stays_bounded_under_churn() {
        let mut q = AlertQueue::new(4);
        for i in 0..10_000 {
            q.push(n("a", AlertStatus::Firing, f64::from(i)));
            if i % 3 == 0 {
                q.pop_batch(1);
            }
            assert!(q.len() <= 4);
            assert!(q.superseded.len() <= 2 * 4 + 16 + 1);
            assert!(q.latest.len() <= q.len());
        }
        // The newest state of "a" survived.
        let all = q.drain();
        assert_eq!(values(&all).last(), Some(&9999.0));
    }
}
