//! Incidents: the alerts that belong together, delivered as one
//! notification.
//!
//! This module owns the grouping rule, its `[alert]` keys
//! ([`IncidentConfig`]) and the incident notification ([`Incident`], whose
//! JSON docs/operations.md documents). It is pure: no I/O, no clock, no
//! locks. Time is the alerts' own event time, so `anomalyd backtest` and
//! the daemon group alike; delivering and showing incidents is the
//! caller's job (the daemon's [`super::notify`], the backtest).
//!
//! **The rule.** Each series belongs to a *group*: the values of the
//! `alert.group_by` labels (a label the series lacks counts as empty, as
//! in Alertmanager's `group_by`; a series with none of them is a group of
//! its own). A firing alert joins the open incident of its group when it
//! started within `alert.group_window_secs` of that incident's start;
//! otherwise it opens a new incident (so a later anomaly on the same host
//! is news, and pages). When alerts of `alert.fleet_min_groups` or more
//! groups start within one window, their incidents become one *fleet-wide*
//! incident, which every alert starting within its window then joins,
//! whatever its group. An incident resolves when all its members have
//! resolved, and is closed then: a later alert opens a new one.
//!
//! **Notifications.** [`Incidents::observe`] takes the alerts in order;
//! [`Incidents::flush`] then returns, for everything observed since the
//! last flush, one notification per incident that changed (its whole
//! current state: opened, a member joined or resolved, resolved, merged)
//! and the per-series alerts, each naming its incident. So alerts that
//! start together are one notification however many there are: the
//! backtest flushes when event time moves on, the daemon every
//! [`super::notify::FLUSH_INTERVAL`]. An incident's first notification
//! (`revision` 1) is the one that pages. An incident merged into a
//! fleet-wide one before it was ever announced is not announced at all.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::lifecycle::rfc3339_ms;
use super::{AlertStatus, Notice, Reason, Resolution, SeriesAlert, Severity, ValueKind};

mod config;

pub use config::{
    DEFAULT_FLEET_MIN_GROUPS, DEFAULT_GROUP_BY, DEFAULT_GROUP_WINDOW_SECS, IncidentConfig,
    MAX_GROUP_WINDOW_SECS, MAX_LISTED_MEMBERS,
};

/// Where an incident stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    /// At least one member is firing.
    Firing,
    /// Every member has resolved; the incident is closed.
    Resolved,
    /// It became part of a fleet-wide incident (`merged_into`); closed.
    Merged,
}

impl IncidentStatus {
    /// The name in JSON, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Resolved => "resolved",
            Self::Merged => "merged",
        }
    }
}

/// What an incident spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The series of one group (one host).
    Group,
    /// Series of many groups at once.
    Fleet,
}

impl Scope {
    /// Every scope, for metric labels.
    pub const ALL: [Scope; 2] = [Scope::Group, Scope::Fleet];

    /// The name in JSON, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Group => "group",
            Self::Fleet => "fleet",
        }
    }
}

/// One series of an incident, as its notification lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// The series' fingerprint (its alerts' `fingerprint`).
    pub fingerprint: String,
    /// The series in selector form.
    pub series: String,
    /// `value`, or `rate` when the numbers are a counter's per-second rate.
    pub value_kind: ValueKind,
    /// Its alert is firing or resolved.
    pub status: AlertStatus,
    /// Its alert's severity.
    pub severity: Severity,
    /// The channel that raised its alert.
    pub reason: Reason,
    /// The score of its latest alert message.
    pub score: f64,
    /// Its alert's peak score.
    pub peak_score: f64,
    /// When its alert started (event time).
    pub started_at: String,
    /// When its alert resolved; `null` while firing.
    pub ended_at: Option<String>,
    /// How its alert resolved; `null` while firing.
    pub resolution: Option<Resolution>,
}

/// One incident notification: the incident's whole current state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// 16 hex digits, stable for the incident's life; the Kafka key.
    pub id: String,
    /// `firing`, `resolved` or `merged`.
    pub status: IncidentStatus,
    /// `group` (one group's series) or `fleet` (many groups).
    pub scope: Scope,
    /// The `group_by` labels the members share (those they have); empty
    /// for a fleet-wide incident and for a series without any of them.
    pub group: BTreeMap<String, String>,
    /// How many groups its members come from.
    pub groups: usize,
    /// 1 for the notification that opens it (the one that pages), then
    /// 2, 3, ... for each update; receivers keep the highest.
    pub revision: u64,
    /// The highest severity among the members.
    pub severity: Severity,
    /// Members firing now.
    pub firing: usize,
    /// All members, firing or resolved.
    pub members_total: usize,
    /// The members, highest peak score first (at most
    /// [`MAX_LISTED_MEMBERS`]).
    pub members: Vec<Member>,
    /// When its first member started (event time).
    pub started_at: String,
    /// Event time of the latest alert message it took in.
    pub updated_at: String,
    /// When it resolved or merged; `null` while firing.
    pub ended_at: Option<String>,
    /// The fleet-wide incident it merged into; `null` unless merged.
    pub merged_into: Option<String>,
    /// One line for humans: where, how many, the top member and why.
    pub summary: String,
}

impl Incident {
    /// Whether this notification opens the incident (it pages).
    pub fn opens(&self) -> bool {
        self.revision == 1
    }
}

/// A series' group: the values of the `group_by` labels, or the series
/// alone when it has none of them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum GroupKey {
    Labels(Vec<String>),
    Series(String),
}

/// A member and its times.
#[derive(Debug, Clone)]
struct MemberState {
    member: Member,
    started_ms: i64,
    ended_ms: Option<i64>,
}

/// An incident being tracked.
#[derive(Debug, Clone)]
struct State {
    id: u64,
    status: IncidentStatus,
    scope: Scope,
    /// Its group (group scope).
    key: GroupKey,
    /// The group's labels, as shown.
    group: BTreeMap<String, String>,
    /// The groups of its members.
    groups: BTreeSet<GroupKey>,
    started_ms: i64,
    updated_ms: i64,
    ended_ms: Option<i64>,
    members: Vec<MemberState>,
    /// Member position by fingerprint.
    index: HashMap<String, usize>,
    /// Notifications sent so far.
    revision: u64,
    merged_into: Option<u64>,
}

fn hex(id: u64) -> String {
    format!("{id:016x}")
}

/// Milliseconds of an RFC 3339 time, if it reads.
fn parse_ms(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// A duration in one readable unit: `42 s`, `14 min`, `3.2 h`, `2.1 d`.
pub fn duration_text(ms: i64) -> String {
    let s = ms.max(0) as f64 / 1000.0;
    if s < 60.0 {
        format!("{s:.0} s")
    } else if s < 3600.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 48.0 * 3600.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.1} d", s / 86_400.0)
    }
}

impl State {
    /// A firing incident with no member yet.
    fn open(
        id: u64,
        scope: Scope,
        key: GroupKey,
        group: BTreeMap<String, String>,
        started_ms: i64,
        updated_ms: i64,
    ) -> Self {
        Self {
            id,
            status: IncidentStatus::Firing,
            scope,
            key,
            group,
            groups: BTreeSet::new(),
            started_ms,
            updated_ms,
            ended_ms: None,
            members: Vec::new(),
            index: HashMap::new(),
            revision: 0,
            merged_into: None,
        }
    }

    fn member_mut(&mut self, fingerprint: &str) -> Option<&mut MemberState> {
        let i = *self.index.get(fingerprint)?;
        self.members.get_mut(i)
    }

    fn add(&mut self, m: MemberState, key: GroupKey) {
        self.started_ms = self.started_ms.min(m.started_ms);
        self.index
            .insert(m.member.fingerprint.clone(), self.members.len());
        self.members.push(m);
        self.groups.insert(key);
    }

    fn all_resolved(&self) -> bool {
        self.members
            .iter()
            .all(|m| m.member.status == AlertStatus::Resolved)
    }

    /// The notification of the current state (`revision` as it stands).
    fn notice(&self, listed: usize) -> Incident {
        let mut members: Vec<&MemberState> = self.members.iter().collect();
        members.sort_by(|a, b| {
            b.member
                .peak_score
                .total_cmp(&a.member.peak_score)
                .then_with(|| a.member.series.cmp(&b.member.series))
        });
        let firing = members
            .iter()
            .filter(|m| m.member.status == AlertStatus::Firing)
            .count();
        let severity = members
            .iter()
            .map(|m| m.member.severity)
            .max()
            .unwrap_or(Severity::Warning);
        let place = match self.scope {
            Scope::Fleet => format!("fleet-wide ({} groups)", self.groups.len()),
            Scope::Group if self.group.is_empty() => "one series".to_owned(),
            Scope::Group => self
                .group
                .iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect::<Vec<_>>()
                .join(", "),
        };
        let n = members.len();
        let top = members.first().map_or(String::new(), |m| {
            format!(
                "; top {} ({}, peak {:.3})",
                m.member.series,
                m.member.reason.as_str(),
                m.member.peak_score
            )
        });
        let summary = match (self.status, self.merged_into) {
            (IncidentStatus::Merged, Some(into)) => format!(
                "{place}: {n} series, merged into fleet-wide incident {}",
                hex(into)
            ),
            (IncidentStatus::Resolved, _) | (IncidentStatus::Merged, None) => format!(
                "{place}: {n} series, resolved after {}{top}",
                duration_text(self.ended_ms.unwrap_or(self.updated_ms) - self.started_ms)
            ),
            (IncidentStatus::Firing, _) => {
                format!("{place}: {n} series anomalous ({firing} firing){top}")
            }
        };
        Incident {
            id: hex(self.id),
            status: self.status,
            scope: self.scope,
            group: self.group.clone(),
            groups: self.groups.len(),
            revision: self.revision,
            severity,
            firing,
            members_total: n,
            members: members
                .iter()
                .take(listed)
                .map(|m| m.member.clone())
                .collect(),
            started_at: rfc3339_ms(self.started_ms),
            updated_at: rfc3339_ms(self.updated_ms),
            ended_at: self.ended_ms.map(rfc3339_ms),
            merged_into: self.merged_into.map(hex),
            summary,
        }
    }
}

/// The grouping state: open incidents and what changed since the last
/// [`Incidents::flush`]. Memory is bounded by the alerts in flight: an
/// open incident has a firing member, and a member joins only within its
/// incident's window.
#[derive(Debug)]
pub struct Incidents {
    group_by: Vec<String>,
    window_ms: i64,
    /// 0: no fleet-wide incidents.
    fleet_min_groups: usize,
    /// Open incidents by id.
    open: HashMap<u64, State>,
    /// The newest open group incident of each group.
    by_group: HashMap<GroupKey, u64>,
    /// The newest open fleet-wide incident.
    fleet: Option<u64>,
    /// The open incident each series with an alert in one belongs to.
    member_of: HashMap<String, u64>,
    /// Closed since the last flush, for their last notification.
    closed: HashMap<u64, State>,
    /// Incidents changed since the last flush, in the order they changed.
    dirty: Vec<u64>,
    dirty_set: HashSet<u64>,
    /// Merged since the last flush: old id → the fleet-wide one.
    merged: HashMap<u64, u64>,
    /// Alert messages since the last flush, with their incident.
    pending: Vec<(SeriesAlert, Option<u64>)>,
}

impl Incidents {
    /// Empty state for `config` (validated).
    pub fn new(config: &IncidentConfig) -> Self {
        Self {
            group_by: config.group_by.clone(),
            window_ms: i64::try_from(config.group_window_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            fleet_min_groups: config.fleet_min_groups as usize,
            open: HashMap::new(),
            by_group: HashMap::new(),
            fleet: None,
            member_of: HashMap::new(),
            closed: HashMap::new(),
            dirty: Vec::new(),
            dirty_set: HashSet::new(),
            merged: HashMap::new(),
            pending: Vec::new(),
        }
    }

    /// Open incidents.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Whether anything waits for [`Incidents::flush`].
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty() || !self.dirty.is_empty()
    }

    /// The group of a series with `labels`, and the labels shown for it.
    fn group_of(&self, a: &SeriesAlert) -> (GroupKey, BTreeMap<String, String>) {
        let values: Vec<String> = self
            .group_by
            .iter()
            .map(|k| a.labels.get(k).cloned().unwrap_or_default())
            .collect();
        if values.iter().all(String::is_empty) {
            return (GroupKey::Series(a.fingerprint.clone()), BTreeMap::new());
        }
        let shown = self
            .group_by
            .iter()
            .zip(&values)
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        (GroupKey::Labels(values), shown)
    }

    fn within(&self, a_ms: i64, b_ms: i64) -> bool {
        a_ms.abs_diff(b_ms) <= self.window_ms.unsigned_abs()
    }

    fn touch(&mut self, id: u64) {
        if self.dirty_set.insert(id) {
            self.dirty.push(id);
        }
    }

    /// A fresh id for an incident of `key` starting at `started_ms` with
    /// `first` as its first member: the same inputs give the same id.
    fn new_id(&self, scope: Scope, key: &GroupKey, started_ms: i64, first: &str) -> u64 {
        let mut buf = Vec::with_capacity(64);
        buf.push(scope as u8);
        match key {
            GroupKey::Labels(v) => {
                for s in v {
                    buf.extend_from_slice(s.as_bytes());
                    buf.push(0xFF);
                }
            }
            GroupKey::Series(fp) => buf.extend_from_slice(fp.as_bytes()),
        }
        buf.push(0xFE);
        buf.extend_from_slice(&started_ms.to_le_bytes());
        buf.extend_from_slice(first.as_bytes());
        let mut id = xxhash_rust::xxh3::xxh3_64(&buf);
        // Two live incidents never share an id.
        while self.open.contains_key(&id) || self.closed.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        id
    }

    /// Takes one alert message (in event-time order, as the lifecycle
    /// emits them). Its notifications come out of the next
    /// [`Incidents::flush`].
    pub fn observe(&mut self, alert: SeriesAlert) {
        let ts = parse_ms(&alert.ts).unwrap_or(0);
        let started = parse_ms(&alert.started_at).unwrap_or(ts);
        let fp = alert.fingerprint.clone();
        let member = |a: &SeriesAlert| MemberState {
            member: Member {
                fingerprint: a.fingerprint.clone(),
                series: a.series.clone(),
                value_kind: a.value_kind,
                status: a.status,
                severity: a.severity,
                reason: a.reason,
                score: a.score,
                peak_score: a.peak_score.max(a.score),
                started_at: a.started_at.clone(),
                ended_at: a.ended_at.clone(),
                resolution: a.resolution,
            },
            started_ms: started,
            ended_ms: a.ended_at.as_deref().and_then(parse_ms),
        };
        let window_ms = self.window_ms;
        let known = self.member_of.get(&fp).copied();
        let id = match (alert.status, known) {
            (AlertStatus::Resolved, None) => {
                // Its incident is unknown (it started before a restart, or
                // its incident closed): the alert goes out alone.
                self.pending.push((alert, None));
                return;
            }
            (AlertStatus::Resolved, Some(id)) => {
                if let Some(s) = self.open.get_mut(&id) {
                    s.updated_ms = s.updated_ms.max(ts);
                    if let Some(m) = s.member_mut(&fp) {
                        *m = MemberState {
                            member: Member {
                                peak_score: m.member.peak_score.max(alert.peak_score),
                                ..member(&alert).member
                            },
                            ..member(&alert)
                        };
                    }
                }
                self.touch(id);
                if self.open.get(&id).is_some_and(State::all_resolved) {
                    self.close(id, ts);
                }
                Some(id)
            }
            (AlertStatus::Firing, Some(id)) => {
                let s = self.open.get_mut(&id);
                let placed = s.and_then(|s| {
                    let inc_start = s.started_ms;
                    s.updated_ms = s.updated_ms.max(ts);
                    let m = s.member_mut(&fp)?;
                    let same = m.started_ms == started || m.member.status == AlertStatus::Firing;
                    // The same alert (escalated), or a new alert of a
                    // member that resolved, still within the window.
                    (same || started.abs_diff(inc_start) <= window_ms.unsigned_abs()).then(|| {
                        let peak = if same { m.member.peak_score } else { 0.0 };
                        *m = member(&alert);
                        m.member.peak_score = m.member.peak_score.max(peak);
                        id
                    })
                });
                match placed {
                    Some(id) => {
                        self.touch(id);
                        Some(id)
                    }
                    None => {
                        // Too late for its earlier incident: news.
                        self.member_of.remove(&fp);
                        Some(self.place(&alert, member(&alert), ts))
                    }
                }
            }
            (AlertStatus::Firing, None) => Some(self.place(&alert, member(&alert), ts)),
        };
        self.pending.push((alert, id));
    }

    /// Puts a new firing member into the incident it joins or opens;
    /// returns that incident's id.
    fn place(&mut self, a: &SeriesAlert, m: MemberState, ts: i64) -> u64 {
        let (key, shown) = self.group_of(a);
        let started = m.started_ms;
        let fp = a.fingerprint.clone();
        // A fleet-wide incident in its window takes every group.
        let fleet = self.fleet.filter(|id| {
            self.open
                .get(id)
                .is_some_and(|f| self.within(f.started_ms, started))
        });
        let group = self.by_group.get(&key).copied().filter(|id| {
            self.open
                .get(id)
                .is_some_and(|s| self.within(s.started_ms, started))
        });
        if let Some(id) = fleet.or(group) {
            if let Some(s) = self.open.get_mut(&id) {
                s.add(m, key);
                s.updated_ms = s.updated_ms.max(ts);
            }
            self.member_of.insert(fp, id);
            self.touch(id);
            return id;
        }
        // Other groups whose incidents started within the window: with
        // this one, are they the fleet?
        if self.fleet_min_groups > 0 {
            let mut near: Vec<u64> = self
                .by_group
                .iter()
                .filter(|(k, _)| **k != key)
                .filter(|(_, id)| {
                    self.open.get(id).is_some_and(|s| {
                        s.scope == Scope::Group && self.within(s.started_ms, started)
                    })
                })
                .map(|(_, id)| *id)
                .collect();
            if near.len() + 1 >= self.fleet_min_groups {
                near.sort_unstable();
                return self.merge_into_fleet(&near, m, key, ts);
            }
        }
        let id = self.new_id(Scope::Group, &key, started, &fp);
        let mut s = State::open(id, Scope::Group, key.clone(), shown, started, ts);
        s.add(m, key.clone());
        self.open.insert(id, s);
        self.by_group.insert(key, id);
        self.member_of.insert(fp, id);
        self.touch(id);
        id
    }

    /// Opens a fleet-wide incident of the group incidents `near` and the
    /// new member `m` (of group `key`); the group incidents close as
    /// merged.
    fn merge_into_fleet(&mut self, near: &[u64], m: MemberState, key: GroupKey, ts: i64) -> u64 {
        let fp = m.member.fingerprint.clone();
        let started = near
            .iter()
            .filter_map(|id| self.open.get(id).map(|s| s.started_ms))
            .fold(m.started_ms, i64::min);
        let id = self.new_id(Scope::Fleet, &GroupKey::Labels(Vec::new()), started, &fp);
        let fleet_key = GroupKey::Labels(Vec::new());
        let mut fleet = State::open(id, Scope::Fleet, fleet_key, BTreeMap::new(), started, ts);
        for old in near {
            let Some(mut g) = self.open.remove(old) else {
                continue;
            };
            if self.by_group.get(&g.key) == Some(old) {
                self.by_group.remove(&g.key);
            }
            for ms in &g.members {
                self.member_of.insert(ms.member.fingerprint.clone(), id);
                fleet.add(ms.clone(), g.key.clone());
            }
            fleet.updated_ms = fleet.updated_ms.max(g.updated_ms);
            g.status = IncidentStatus::Merged;
            g.merged_into = Some(id);
            g.ended_ms = Some(ts);
            g.updated_ms = g.updated_ms.max(ts);
            self.merged.insert(*old, id);
            if g.revision > 0 {
                // Announced: its last notification says where it went.
                self.closed.insert(*old, g);
                self.touch(*old);
            } else {
                self.dirty_set.remove(old);
            }
        }
        fleet.add(m, key);
        self.open.insert(id, fleet);
        self.fleet = Some(id);
        self.member_of.insert(fp, id);
        self.touch(id);
        id
    }

    /// Closes incident `id`, whose members have all resolved.
    fn close(&mut self, id: u64, ts: i64) {
        let Some(mut s) = self.open.remove(&id) else {
            return;
        };
        s.status = IncidentStatus::Resolved;
        s.ended_ms = Some(
            s.members
                .iter()
                .filter_map(|m| m.ended_ms)
                .max()
                .unwrap_or(ts),
        );
        if self.by_group.get(&s.key) == Some(&id) {
            self.by_group.remove(&s.key);
        }
        if self.fleet == Some(id) {
            self.fleet = None;
        }
        for m in &s.members {
            if self.member_of.get(&m.member.fingerprint) == Some(&id) {
                self.member_of.remove(&m.member.fingerprint);
            }
        }
        self.closed.insert(id, s);
        self.touch(id);
    }

    /// What happened since the last flush: one notification per incident
    /// that changed (in the order they first changed), then the alert
    /// messages in the order observed, each naming its incident.
    pub fn flush(&mut self) -> Vec<Notice> {
        let mut out = Vec::with_capacity(self.dirty.len() + self.pending.len());
        for id in std::mem::take(&mut self.dirty) {
            let state = match self.open.get_mut(&id) {
                Some(s) => Some(s),
                None => self.closed.get_mut(&id),
            };
            if let Some(s) = state {
                s.revision += 1;
                out.push(Notice::Incident(s.notice(MAX_LISTED_MEMBERS)));
            }
        }
        self.dirty_set.clear();
        self.closed.clear();
        for (mut alert, id) in std::mem::take(&mut self.pending) {
            let mut id = id;
            // Follow merges (a fleet-wide incident never merges further).
            if let Some(into) = id.and_then(|i| self.merged.get(&i)) {
                id = Some(*into);
            }
            alert.incident = id.map(hex);
            out.push(Notice::Alert(alert));
        }
        self.merged.clear();
        out
    }

    /// The current state of every open incident, as a notification would
    /// show it (without counting a revision), newest first.
    pub fn snapshot(&self) -> Vec<Incident> {
        let mut all: Vec<Incident> = self
            .open
            .values()
            .map(|s| s.notice(MAX_LISTED_MEMBERS))
            .collect();
        all.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(a.id.cmp(&b.id)));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Alert;
    use crate::config::Problems;

    const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    /// A firing alert of `name{<labels>}` started `at_s` seconds after T0.
    fn fire(name: &str, labels: &[(&str, &str)], at_s: i64, peak: f64) -> SeriesAlert {
        let mut l: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let series = format!(
            "{name}{{{}}}",
            labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        l.insert("__name__".into(), name.into());
        let key = crate::event::SeriesKey::new(name, labels.iter().copied());
        let t = rfc3339_ms(T0 + at_s * 1000);
        SeriesAlert::from(Alert {
            fingerprint: format!("{:016x}", key.fingerprint()),
            status: AlertStatus::Firing,
            series,
            labels: l,
            started_at: t.clone(),
            ended_at: None,
            ts: t,
            value: 5.0,
            expected: 1.0,
            lower: 0.5,
            upper: 1.5,
            score: peak,
            peak_score: peak,
            threshold: 0.5,
            severity: Severity::Warning,
            model: "regression".into(),
            reason: Reason::Level,
            resolution: None,
        })
    }

    fn resolve(a: &SeriesAlert, at_s: i64) -> SeriesAlert {
        let t = rfc3339_ms(T0 + at_s * 1000);
        let mut r = a.clone();
        r.alert.status = AlertStatus::Resolved;
        r.alert.ts = t.clone();
        r.alert.ended_at = Some(t);
        r.alert.score = 0.1;
        r.alert.resolution = Some(Resolution::Returned);
        r
    }

    fn incidents(notices: &[Notice]) -> Vec<&Incident> {
        notices
            .iter()
            .filter_map(|n| match n {
                Notice::Incident(i) => Some(i),
                Notice::Alert(_) => None,
            })
            .collect()
    }

    fn alerts(notices: &[Notice]) -> Vec<&SeriesAlert> {
        notices
            .iter()
            .filter_map(|n| match n {
                Notice::Alert(a) => Some(a),
                Notice::Incident(_) => None,
            })
            .collect()
    }

    fn grouper() -> Incidents {
        Incidents::new(&IncidentConfig::default())
    }

    #[test]
    fn alerts_of_one_host_at_once_are_one_notification_top_peak_first() {
        let mut g = grouper();
        let host = [("instance", "db-1:9100")];
        g.observe(fire("cpu", &host, 0, 0.7));
        g.observe(fire("mem_bytes", &host, 0, 0.95));
        g.observe(fire("load", &host, 60, 0.8));
        let out = g.flush();
        let inc = incidents(&out);
        assert_eq!(inc.len(), 1, "{inc:?}");
        let i = inc[0];
        assert_eq!(i.revision, 1);
        assert!(i.opens());
        assert_eq!(i.status, IncidentStatus::Firing);
        assert_eq!(i.scope, Scope::Group);
        assert_eq!(
            i.group,
            BTreeMap::from([("instance".to_owned(), "db-1:9100".to_owned())])
        );
        assert_eq!((i.firing, i.members_total, i.groups), (3, 3, 1));
        let peaks: Vec<f64> = i.members.iter().map(|m| m.peak_score).collect();
        assert_eq!(peaks, [0.95, 0.8, 0.7]);
        assert_eq!(i.started_at, "2026-01-01T00:00:00.000Z");
        assert!(
            i.summary.contains("instance=\"db-1:9100\": 3 series"),
            "{}",
            i.summary
        );
        assert!(i.summary.contains("top mem_bytes"), "{}", i.summary);
        // Every alert names it.
        let a = alerts(&out);
        assert_eq!(a.len(), 3);
        assert!(
            a.iter()
                .all(|a| a.incident.as_deref() == Some(i.id.as_str()))
        );
    }

    #[test]
    fn the_window_bounds_an_incident_and_a_later_alert_opens_a_new_one() {
        let mut g = grouper();
        let host = [("host", "web-01")];
        let a = fire("cpu", &host, 0, 0.9);
        g.observe(a.clone());
        let first = incidents(&g.flush())[0].id.clone();
        // Within 120 s: joins (an update, not a page).
        g.observe(fire("mem", &host, 120, 0.9));
        let out = g.flush();
        let i = incidents(&out)[0];
        assert_eq!(
            (i.id.as_str(), i.revision, i.members_total),
            (first.as_str(), 2, 2)
        );
        assert!(!i.opens());
        // 121 s after the start: a new incident, which pages.
        g.observe(fire("disk", &host, 121, 0.9));
        let out = g.flush();
        let i = incidents(&out)[0];
        assert_ne!(i.id, first);
        assert!(i.opens());
        assert_eq!(g.open_count(), 2);
    }

    #[test]
    fn group_by_separates_hosts_and_missing_labels_count_as_empty() {
        // Fleet-wide merging off, to see the groups themselves.
        let mut g = Incidents::new(&IncidentConfig {
            fleet_min_groups: 0,
            ..IncidentConfig::default()
        });
        g.observe(fire("cpu", &[("instance", "a:9100")], 0, 0.9));
        g.observe(fire(
            "mem",
            &[("instance", "a:9100"), ("job", "node")],
            0,
            0.9,
        ));
        g.observe(fire("cpu", &[("instance", "b:9100")], 0, 0.9));
        g.observe(fire("x", &[], 0, 0.9));
        g.observe(fire("y", &[], 0, 0.9));
        g.observe(fire("cpu", &[("host", "web-01"), ("dc", "eu")], 0, 0.9));
        g.observe(fire("mem", &[("host", "web-01"), ("dc", "us")], 0, 0.9));
        let out = g.flush();
        let mut sizes: Vec<(usize, BTreeMap<String, String>)> = incidents(&out)
            .iter()
            .map(|i| (i.members_total, i.group.clone()))
            .collect();
        sizes.sort();
        let m = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(
            sizes,
            [
                (1, m(&[])),
                (1, m(&[])),
                (1, m(&[("instance", "b:9100")])),
                (2, m(&[("host", "web-01")])),
                (2, m(&[("instance", "a:9100")])),
            ]
        );
    }

    #[test]
    fn joins_and_resolves_update_it_and_the_last_resolve_closes_it() {
        let mut g = grouper();
        let host = [("instance", "a")];
        let a = fire("cpu", &host, 0, 0.9);
        let b = fire("mem", &host, 30, 0.6);
        g.observe(a.clone());
        g.observe(b.clone());
        let id = incidents(&g.flush())[0].id.clone();
        g.observe(resolve(&a, 300));
        let out = g.flush();
        let i = incidents(&out)[0];
        assert_eq!(
            (i.status, i.firing, i.revision),
            (IncidentStatus::Firing, 1, 2)
        );
        let ra = i
            .members
            .iter()
            .find(|m| m.fingerprint == a.fingerprint)
            .unwrap();
        assert_eq!(ra.status, AlertStatus::Resolved);
        assert_eq!(ra.peak_score, 0.9, "the member keeps its alert's peak");
        assert_eq!(ra.resolution, Some(Resolution::Returned));
        assert_eq!(alerts(&out)[0].incident.as_deref(), Some(id.as_str()));
        g.observe(resolve(&b, 600));
        let out = g.flush();
        let i = incidents(&out)[0];
        assert_eq!(i.status, IncidentStatus::Resolved);
        assert_eq!(i.ended_at.as_deref(), Some("2026-01-01T00:10:00.000Z"));
        assert!(i.summary.contains("resolved after 10 min"), "{}", i.summary);
        assert_eq!(g.open_count(), 0);
        // Closed: the next alert of the host opens a new incident (and an
        // alert whose incident is unknown goes out alone).
        g.observe(fire("cpu", &host, 610, 0.9));
        g.observe(resolve(&fire("other", &[("instance", "z")], 0, 0.9), 620));
        let out = g.flush();
        let i = incidents(&out)[0];
        assert!(i.opens() && i.id != id);
        assert_eq!(alerts(&out)[1].incident, None);
    }

    #[test]
    fn nothing_changed_nothing_sent_and_an_escalation_updates_the_member() {
        let mut g = grouper();
        let a = fire("cpu", &[("instance", "a")], 0, 0.6);
        g.observe(a.clone());
        assert_eq!(g.flush().len(), 2);
        assert!(g.flush().is_empty());
        let mut esc = a.clone();
        esc.alert.severity = Severity::Critical;
        esc.alert.score = 0.99;
        esc.alert.peak_score = 0.99;
        esc.alert.ts = rfc3339_ms(T0 + 60_000);
        g.observe(esc);
        let out = g.flush();
        let i = incidents(&out)[0];
        assert_eq!((i.members_total, i.severity), (1, Severity::Critical));
        assert_eq!(i.members[0].peak_score, 0.99);
        assert_eq!(i.updated_at, "2026-01-01T00:01:00.000Z");
    }

    #[test]
    fn many_groups_at_once_are_one_fleet_wide_incident() {
        // 43 series over four servers at one instant: one page.
        let mut g = grouper();
        for host in ["s1", "s2", "s3", "s4"] {
            for m in 0..11 {
                if host == "s4" && m == 10 {
                    continue;
                }
                g.observe(fire(&format!("m{m}"), &[("instance", host)], 0, 0.9));
            }
        }
        let out = g.flush();
        let inc = incidents(&out);
        assert_eq!(inc.len(), 1, "{inc:#?}");
        let f = inc[0];
        assert_eq!((f.scope, f.groups, f.members_total), (Scope::Fleet, 4, 43));
        assert!(f.group.is_empty());
        assert!(
            f.summary.starts_with("fleet-wide (4 groups): 43 series"),
            "{}",
            f.summary
        );
        // Every alert, those before the merge included, names the fleet.
        let a = alerts(&out);
        assert_eq!(a.len(), 43);
        assert!(
            a.iter()
                .all(|a| a.incident.as_deref() == Some(f.id.as_str()))
        );
        // A fifth host within the window joins it; after it, a new group
        // incident.
        g.observe(fire("m0", &[("instance", "s5")], 100, 0.9));
        g.observe(fire("m0", &[("instance", "s6")], 200, 0.9));
        let out = g.flush();
        let inc = incidents(&out);
        assert_eq!(inc.len(), 2);
        assert_eq!((inc[0].id.as_str(), inc[0].groups), (f.id.as_str(), 5));
        assert_eq!(inc[1].scope, Scope::Group);
    }

    #[test]
    fn announced_group_incidents_merge_and_say_where_they_went() {
        let mut g = grouper();
        g.observe(fire("cpu", &[("instance", "a")], 0, 0.9));
        g.observe(fire("cpu", &[("instance", "b")], 10, 0.9));
        let out = g.flush();
        let ids: Vec<String> = incidents(&out).iter().map(|i| i.id.clone()).collect();
        assert_eq!(ids.len(), 2);
        let a_fp = alerts(&out)[0].fingerprint.clone();
        g.observe(fire("cpu", &[("instance", "c")], 20, 0.9));
        let out = g.flush();
        let inc = incidents(&out);
        let fleet = inc.iter().find(|i| i.scope == Scope::Fleet).unwrap();
        assert!(fleet.opens());
        assert_eq!((fleet.groups, fleet.members_total), (3, 3));
        assert_eq!(fleet.started_at, "2026-01-01T00:00:00.000Z");
        let merged: Vec<&&Incident> = inc
            .iter()
            .filter(|i| i.status == IncidentStatus::Merged)
            .collect();
        assert_eq!(merged.len(), 2);
        for m in merged {
            assert!(ids.contains(&m.id));
            assert_eq!(m.revision, 2, "an update, not a page");
            assert_eq!(m.merged_into.as_deref(), Some(fleet.id.as_str()));
            assert!(m.summary.contains("merged into fleet-wide incident"));
        }
        // The earlier members' later messages name the fleet.
        let a = fire("cpu", &[("instance", "a")], 0, 0.9);
        assert_eq!(a.fingerprint, a_fp);
        g.observe(resolve(&a, 300));
        let out = g.flush();
        assert_eq!(alerts(&out)[0].incident.as_deref(), Some(fleet.id.as_str()));
        assert_eq!(incidents(&out)[0].id, fleet.id);
    }

    #[test]
    fn fleet_wide_can_be_turned_off_and_needs_its_groups_within_one_window() {
        let mut off = Incidents::new(&IncidentConfig {
            fleet_min_groups: 0,
            ..IncidentConfig::default()
        });
        let mut on = grouper();
        for (i, host) in ["a", "b", "c"].iter().enumerate() {
            // 100 s apart: a and c are 200 s apart, but each pair of
            // neighbours is within the window of the newest.
            let at = 100 * i as i64;
            off.observe(fire("cpu", &[("instance", host)], at, 0.9));
            on.observe(fire("cpu", &[("instance", host)], at, 0.9));
        }
        assert_eq!(incidents(&off.flush()).len(), 3);
        // c (200 s) sees only b (100 s) within 120 s: no fleet.
        let out = on.flush();
        assert!(incidents(&out).iter().all(|i| i.scope == Scope::Group));
        assert_eq!(incidents(&out).len(), 3);
    }

    #[test]
    fn a_refire_within_the_window_rejoins_after_it_opens_anew() {
        let mut g = grouper();
        let host = [("instance", "a")];
        let a = fire("cpu", &host, 0, 0.9);
        let b = fire("mem", &host, 0, 0.9);
        g.observe(a.clone());
        g.observe(b.clone());
        g.observe(resolve(&a, 30));
        let id = incidents(&g.flush())[0].id.clone();
        // a fires again at 60 s: back in the same incident.
        g.observe(fire("cpu", &host, 60, 0.8));
        let out = g.flush();
        let i = incidents(&out)[0];
        assert_eq!(
            (i.id.as_str(), i.firing, i.members_total),
            (id.as_str(), 2, 2)
        );
        g.observe(resolve(&fire("cpu", &host, 60, 0.8), 90));
        g.flush();
        // ... and at 500 s, past the window: a new incident, while b's
        // is still open.
        g.observe(fire("cpu", &host, 500, 0.8));
        let out = g.flush();
        let i = incidents(&out)[0];
        assert!(i.opens() && i.id != id);
        assert_eq!(g.open_count(), 2);
    }

    #[test]
    fn ids_are_deterministic_and_json_is_as_documented() {
        let run = || {
            let mut g = grouper();
            g.observe(fire("cpu", &[("instance", "a")], 0, 0.9));
            incidents(&g.flush())[0].clone()
        };
        let (x, y) = (run(), run());
        assert_eq!(x.id, y.id);
        assert_eq!(x.id.len(), 16);
        let v = serde_json::to_value(&x).unwrap();
        for key in [
            "id",
            "status",
            "scope",
            "group",
            "groups",
            "revision",
            "severity",
            "firing",
            "members_total",
            "members",
            "started_at",
            "updated_at",
            "ended_at",
            "merged_into",
            "summary",
        ] {
            assert!(v.get(key).is_some(), "{key} missing: {v}");
        }
        assert_eq!(v["status"], "firing");
        assert_eq!(v["scope"], "group");
        let m = &v["members"][0];
        for key in [
            "fingerprint",
            "series",
            "value_kind",
            "status",
            "severity",
            "reason",
            "score",
            "peak_score",
            "started_at",
            "ended_at",
            "resolution",
        ] {
            assert!(m.get(key).is_some(), "member {key} missing: {m}");
        }
        let back: Incident = serde_json::from_value(v).unwrap();
        assert_eq!(back, x);
    }

    #[test]
    fn validation_names_the_dotted_keys() {
        let mut p = Problems::new();
        IncidentConfig::default().validate("alert", &mut p);
        assert!(p.is_empty(), "{p}");
        let bad = IncidentConfig {
            group_by: vec!["host".into(), "9x".into(), "host".into()],
            group_window_secs: 0,
            fleet_min_groups: 1,
        };
        let mut p = Problems::new();
        bad.validate("alert", &mut p);
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "alert.group_by",
                "alert.group_by",
                "alert.group_window_secs",
                "alert.fleet_min_groups"
            ],
            "{p}"
        );
    }

    #[test]
    fn durations_read_in_one_unit() {
        assert_eq!(duration_text(42_000), "42 s");
        assert_eq!(duration_text(14 * 60_000), "14 min");
        assert_eq!(duration_text(3 * 3_600_000 + 720_000), "3.2 h");
        assert_eq!(duration_text(50 * 3_600_000), "2.1 d");
    }
}
