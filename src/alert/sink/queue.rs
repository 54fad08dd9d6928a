//! The bounded per-sink queue and its overflow policy.
//!
//! This module owns which alert is given up when a sink's queue is full. It
//! is plain data (no locks, no clocks); the runner wraps it in a mutex.
//!
//! Policy, in order:
//! 1. drop the oldest *superseded* message: one whose series (fingerprint)
//!    has a newer message queued behind it. Every alert message carries the
//!    series' full current state, so a superseded message adds history but
//!    no state a receiver needs (reason `superseded`);
//! 2. otherwise drop the oldest message (reason `queue_full`): under a
//!    flood the newest news is the most useful, and a sink that is down
//!    long enough to fill the queue will see the newest state first when it
//!    recovers.
//!
//! Below capacity nothing is coalesced: every message is delivered.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::DropReason;
use crate::alert::Alert;

/// A FIFO of alerts with a hard capacity.
#[derive(Debug)]
pub(crate) struct AlertQueue {
    capacity: usize,
    /// Sequence number of the next message pushed.
    next_seq: u64,
    /// Queued messages by sequence number (= arrival order).
    entries: BTreeMap<u64, Alert>,
    /// The newest queued sequence number of each fingerprint. Invariant:
    /// every value is a key of `entries`.
    latest: HashMap<String, u64>,
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

    /// Appends `alert`; when that overflows the capacity, returns the alert
    /// given up and why.
    pub(crate) fn push(&mut self, alert: Alert) -> Option<(Alert, DropReason)> {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(prev) = self.latest.insert(alert.fingerprint.clone(), seq) {
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

    /// Takes up to `max` of the oldest alerts, in order.
    pub(crate) fn pop_batch(&mut self, max: usize) -> Vec<Alert> {
        let mut out = Vec::with_capacity(max.min(self.entries.len()));
        while out.len() < max {
            let Some((s, a)) = self.entries.pop_first() else {
                break;
            };
            self.forget_latest(&a, s);
            out.push(a);
        }
        out
    }

    /// Takes everything.
    pub(crate) fn drain(&mut self) -> Vec<Alert> {
        self.superseded.clear();
        self.latest.clear();
        std::mem::take(&mut self.entries).into_values().collect()
    }

    fn forget_latest(&mut self, alert: &Alert, seq: u64) {
        if self.latest.get(&alert.fingerprint) == Some(&seq) {
            self.latest.remove(&alert.fingerprint);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::alert::{AlertStatus, Severity};

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

    fn values(v: &[Alert]) -> Vec<f64> {
        v.iter().map(|a| a.value).collect()
    }

    #[test]
    fn below_capacity_everything_is_kept_in_order() {
        let mut q = AlertQueue::new(3);
        assert!(q.push(alert("a", AlertStatus::Firing, 1.0)).is_none());
        assert!(q.push(alert("a", AlertStatus::Resolved, 2.0)).is_none());
        assert!(q.push(alert("b", AlertStatus::Firing, 3.0)).is_none());
        assert_eq!(values(&q.pop_batch(2)), [1.0, 2.0]);
        assert_eq!(values(&q.pop_batch(5)), [3.0]);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn overflow_drops_superseded_before_oldest() {
        let mut q = AlertQueue::new(3);
        q.push(alert("a", AlertStatus::Firing, 1.0));
        q.push(alert("b", AlertStatus::Firing, 2.0));
        q.push(alert("b", AlertStatus::Resolved, 3.0));
        // Full; "b" firing (2.0) is superseded by "b" resolved.
        let (gone, why) = q.push(alert("c", AlertStatus::Firing, 4.0)).unwrap();
        assert_eq!((gone.value, why), (2.0, DropReason::Superseded));
        // No superseded message left: the oldest goes.
        let (gone, why) = q.push(alert("d", AlertStatus::Firing, 5.0)).unwrap();
        assert_eq!((gone.value, why), (1.0, DropReason::QueueFull));
        assert_eq!(q.len(), 3);
        assert_eq!(values(&q.drain()), [3.0, 4.0, 5.0]);
    }

    #[test]
    fn delivered_messages_are_not_counted_as_superseded() {
        let mut q = AlertQueue::new(2);
        q.push(alert("a", AlertStatus::Firing, 1.0));
        assert_eq!(values(&q.pop_batch(1)), [1.0]);
        // "a" again: its predecessor is gone, so overflow drops the oldest.
        q.push(alert("a", AlertStatus::Resolved, 2.0));
        q.push(alert("b", AlertStatus::Firing, 3.0));
        let (gone, why) = q.push(alert("c", AlertStatus::Firing, 4.0)).unwrap();
        assert_eq!((gone.value, why), (2.0, DropReason::QueueFull));
    }

    #[test]
    fn bookkeeping_stays_bounded_under_churn() {
        let mut q = AlertQueue::new(4);
        for i in 0..10_000 {
            q.push(alert("a", AlertStatus::Firing, f64::from(i)));
            if i % 3 == 0 {
                q.pop_batch(1);
            }
            assert!(q.len() <= 4);
            assert!(q.superseded.len() <= 2 * 4 + 16 + 1);
            assert!(q.latest.len() <= q.len());
        }
        // The newest state of "a" survived.
        let all = q.drain();
        assert_eq!(all.last().unwrap().value, 9999.0);
    }
}
