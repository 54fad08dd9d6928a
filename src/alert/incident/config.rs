//! The incident keys of `[alert]` and their defaults.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::config::Problems;

/// Default of `alert.group_by`: `instance` is the scrape target every
/// Prometheus series carries (one machine or exporter), `host` what push
/// sources (Kafka, Influx, the demo) name the machine by. A series usually
/// has one of them, so the default groups by whichever it has.
pub const DEFAULT_GROUP_BY: [&str; 2] = ["instance", "host"];

/// Default of `alert.group_window_secs`: two minutes. Two samples at one
/// per minute (the demo's, and the coarsest common scrape), eight at
/// Prometheus' default 15 s: the metrics of a host that react one or two
/// samples apart group together, and unrelated anomalies of a fleet seldom
/// fall in one window.
pub const DEFAULT_GROUP_WINDOW_SECS: u64 = 120;

/// Largest `alert.group_window_secs` (a day).
pub const MAX_GROUP_WINDOW_SECS: u64 = 86_400;

/// Default of `alert.fleet_min_groups`: three groups alerting within one
/// window are one fleet-wide event (two hosts at once happen by chance in
/// a small fleet; a shared cause is likelier from three on).
pub const DEFAULT_FLEET_MIN_GROUPS: u32 = 3;

/// Members a notification lists (the highest peaks); `members_total`
/// counts them all.
pub const MAX_LISTED_MEMBERS: usize = 100;

/// The incident keys of `[alert]` (read and written by
/// [`crate::alert::config::AlertConfig`], beside the rule's keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentConfig {
    /// Labels whose values make a series' group.
    pub group_by: Vec<String>,
    /// Alerts of one group starting within this many seconds (event time)
    /// of an incident's start join it.
    pub group_window_secs: u64,
    /// Alerts of at least this many groups within one window are one
    /// fleet-wide incident; 0 turns fleet-wide incidents off.
    pub fleet_min_groups: u32,
}

impl Default for IncidentConfig {
    fn default() -> Self {
        Self {
            group_by: DEFAULT_GROUP_BY.map(str::to_owned).to_vec(),
            group_window_secs: DEFAULT_GROUP_WINDOW_SECS,
            fleet_min_groups: DEFAULT_FLEET_MIN_GROUPS,
        }
    }
}

impl IncidentConfig {
    /// Records every problem under `prefix` (e.g. `alert`).
    pub fn validate(&self, prefix: &str, problems: &mut Problems) {
        let mut seen = HashSet::new();
        for (i, name) in self.group_by.iter().enumerate() {
            let valid = {
                let mut c = name.chars();
                matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
                    && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
            };
            problems.check(
                valid,
                format!("{prefix}.group_by"),
                format!(
                    "entry {i} (`{name}`) is not a label name; use letters, digits and `_`, \
                     not starting with a digit, e.g. group_by = [\"instance\", \"host\"]"
                ),
            );
            problems.check(
                seen.insert(name.as_str()),
                format!("{prefix}.group_by"),
                format!("`{name}` is listed twice; list each label once"),
            );
        }
        problems.check(
            (1..=MAX_GROUP_WINDOW_SECS).contains(&self.group_window_secs),
            format!("{prefix}.group_window_secs"),
            format!(
                "must be between 1 and {MAX_GROUP_WINDOW_SECS} seconds (got {}); \
                 {DEFAULT_GROUP_WINDOW_SECS} is the default",
                self.group_window_secs
            ),
        );
        problems.check(
            self.fleet_min_groups != 1,
            format!("{prefix}.fleet_min_groups"),
            "must be 0 (no fleet-wide incidents) or at least 2 groups (got 1, which would \
             make every incident fleet-wide)",
        );
    }
}
