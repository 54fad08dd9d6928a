//! The daemon's notifier: alerts from every shard, grouped into
//! incidents, handed to the sinks; the incidents the live page lists.
//!
//! This module owns the daemon's side of [`super::incident`]: one
//! [`Incidents`] state behind a lock, fed by every shard
//! ([`Notifier::take`], which never waits on a sink), flushed every
//! [`FLUSH_INTERVAL`] of wall-clock time ([`Notifier::run`]) and once more
//! at shutdown ([`Notifier::flush`]). Shards deliver the alerts of one
//! instant within milliseconds of each other, so a flush sends them as
//! one notification per incident; the interval is also the most a
//! per-series alert waits. Each flush's notices go to the sinks
//! ([`Sinks::submit`], which routes them by the kinds each sink takes) and
//! to the [`IncidentBoard`] the page reads. Counts opened incidents
//! (`anomalyd_incidents_opened_total{scope}`, the pages) and open ones
//! (`anomalyd_incidents_open`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use tokio_util::sync::CancellationToken;

use super::incident::{Incident, IncidentConfig, IncidentStatus, Incidents, Scope};
use super::sink::Sinks;
use super::{Notice, SeriesAlert};

/// How often the daemon flushes: the longest an alert waits before its
/// sinks get it, and how far apart alerts of one instant may reach the
/// notifier and still make one notification.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(500);

/// Closed incidents the board keeps for the page (the newest).
pub const MAX_CLOSED_SHOWN: usize = 100;

/// The incidents the live page lists: the open ones, and those closed
/// within its window (wall clock), newest first. Updated at each flush.
#[derive(Debug)]
pub struct IncidentBoard {
    /// How long a closed incident stays listed.
    keep: Duration,
    state: Mutex<Board>,
}

#[derive(Debug, Default)]
struct Board {
    open: BTreeMap<String, Incident>,
    closed: VecDeque<(Instant, Incident)>,
}

impl IncidentBoard {
    /// An empty board that lists closed incidents for `keep`.
    pub fn new(keep: Duration) -> Self {
        Self {
            keep,
            state: Mutex::new(Board::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Board> {
        // Plain data: a panic elsewhere cannot leave it half-written in a
        // way that matters more than the page going blank.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes an incident's latest notification.
    pub fn record(&self, i: &Incident) {
        let mut b = self.lock();
        if i.status == IncidentStatus::Firing {
            b.open.insert(i.id.clone(), i.clone());
            return;
        }
        b.open.remove(&i.id);
        // A merged incident lives on in the fleet-wide one it joined.
        if i.status == IncidentStatus::Resolved {
            b.closed.push_back((Instant::now(), i.clone()));
            while b.closed.len() > MAX_CLOSED_SHOWN {
                b.closed.pop_front();
            }
        }
    }

    /// Open incidents, then those closed within the window, each newest
    /// start first.
    pub fn list(&self) -> Vec<Incident> {
        let mut b = self.lock();
        let keep = self.keep;
        while b.closed.front().is_some_and(|(t, _)| t.elapsed() > keep) {
            b.closed.pop_front();
        }
        let newest_first =
            |a: &Incident, b: &Incident| b.started_at.cmp(&a.started_at).then(a.id.cmp(&b.id));
        let mut open: Vec<Incident> = b.open.values().cloned().collect();
        open.sort_by(newest_first);
        let mut closed: Vec<Incident> = b.closed.iter().map(|(_, i)| i.clone()).collect();
        closed.sort_by(newest_first);
        open.extend(closed);
        open
    }
}

/// Counters of the incidents.
#[derive(Debug)]
struct IncidentMetrics {
    /// `anomalyd_incidents_opened_total{scope}`, by [`Scope::ALL`].
    opened: [IntCounter; 2],
    /// `anomalyd_incidents_open`.
    open: IntGauge,
}

impl IncidentMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let opened = IntCounterVec::new(
            Opts::new(
                "anomalyd_incidents_opened_total",
                "Incidents opened (each one notification that pages), by scope: group or fleet.",
            ),
            &["scope"],
        )?;
        let open = IntGauge::new(
            "anomalyd_incidents_open",
            "Incidents with at least one firing member.",
        )?;
        registry.register(Box::new(opened.clone()))?;
        registry.register(Box::new(open.clone()))?;
        Ok(Self {
            opened: Scope::ALL.map(|s| opened.with_label_values(&[s.as_str()])),
            open,
        })
    }
}

/// Groups the shards' alerts into incidents and hands everything to the
/// sinks (see the module docs).
#[derive(Debug)]
pub struct Notifier {
    incidents: Mutex<Incidents>,
    sinks: Sinks,
    board: Option<std::sync::Arc<IncidentBoard>>,
    metrics: IncidentMetrics,
}

impl Notifier {
    /// A notifier grouping by `config` (validated) into `sinks`, showing
    /// incidents on `board` (the page's, if it is on); its metrics are
    /// registered in `registry`.
    pub fn new(
        config: &IncidentConfig,
        sinks: Sinks,
        board: Option<std::sync::Arc<IncidentBoard>>,
        registry: &Registry,
    ) -> Result<Self, prometheus::Error> {
        Ok(Self {
            incidents: Mutex::new(Incidents::new(config)),
            sinks,
            board,
            metrics: IncidentMetrics::new(registry)?,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Incidents> {
        // A panic while grouping leaves at worst a stale incident; keep
        // delivering alerts.
        self.incidents.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one alert from a shard; quick, never waits on a sink.
    pub fn take(&self, alert: SeriesAlert) {
        self.lock().observe(alert);
    }

    /// Sends what was taken since the last flush: incident notifications,
    /// then the alerts.
    pub fn flush(&self) {
        let (notices, open) = {
            let mut g = self.lock();
            if !g.has_pending() {
                return;
            }
            (g.flush(), g.open_count())
        };
        self.metrics.open.set(open as i64);
        for n in notices {
            if let Notice::Incident(i) = &n {
                if i.opens() && i.status != IncidentStatus::Merged {
                    let s = Scope::ALL.iter().position(|s| *s == i.scope).unwrap_or(0);
                    self.metrics.opened[s].inc();
                }
                if let Some(b) = &self.board {
                    b.record(i);
                }
            }
            self.sinks.submit(n);
        }
    }

    /// Flushes every [`FLUSH_INTERVAL`] until `stop` is cancelled, then
    /// once more.
    pub async fn run(&self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(FLUSH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.flush(),
                () = stop.cancelled() => break,
            }
        }
        self.flush();
    }

    /// The sinks.
    pub fn sinks(&self) -> &Sinks {
        &self.sinks
    }

    /// Flushes, then gives the sinks back (for their shutdown).
    pub fn into_sinks(self) -> Sinks {
        self.flush();
        self.sinks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::AlertStatus;
    use crate::alert::sink::queue::tests::alert;

    fn with_host(fp: &str, host: &str) -> SeriesAlert {
        let mut a = alert(fp, AlertStatus::Firing, 1.0);
        a.labels.insert("host".into(), host.into());
        a.into()
    }

    #[tokio::test]
    async fn a_flush_sends_one_incident_and_its_alerts_and_counts_the_page() {
        let registry = Registry::new();
        let board = std::sync::Arc::new(IncidentBoard::new(Duration::from_secs(3600)));
        let n = Notifier::new(
            &IncidentConfig::default(),
            Sinks::default(),
            Some(board.clone()),
            &registry,
        )
        .unwrap();
        n.take(with_host("a", "h1"));
        n.take(with_host("b", "h1"));
        assert!(board.list().is_empty(), "nothing before the flush");
        n.flush();
        let listed = board.list();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].members_total, 2);
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(
            text.contains("anomalyd_incidents_opened_total{scope=\"group\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("anomalyd_incidents_opened_total{scope=\"fleet\"} 0\n"));
        assert!(text.contains("anomalyd_incidents_open 1\n"), "{text}");
        // Resolved: listed as closed, no longer open.
        let mut r = with_host("a", "h1");
        r.alert.status = AlertStatus::Resolved;
        n.take(r.clone());
        r.alert.fingerprint = "b".into();
        n.take(r);
        n.flush();
        let listed = board.list();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].status, IncidentStatus::Resolved);
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(text.contains("anomalyd_incidents_open 0\n"), "{text}");
    }
}
