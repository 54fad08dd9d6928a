//! The `[alert]` section: the alert rule, how old an event may be and
//! still page, and how alerts group into incidents.
//!
//! This module owns [`AlertConfig`], which is the rule's own config
//! ([`AlertRuleConfig`], in [`super::lifecycle`]) with more keys in the
//! same TOML table: `max_event_age_secs`, and the incident keys
//! `group_by`, `group_window_secs`, `fleet_min_groups`
//! ([`IncidentConfig`], in [`super::incident`]). The rule decides when a
//! series fires; the age limit decides which events may make it fire at
//! all: an event whose timestamp is older than this when a shard processes
//! it teaches the model like any other, but the alert lifecycle never sees
//! it (counted in `anomalyd_events_too_old_total`). A consumer group that
//! starts from the earliest retained offset, or a remote-write sender
//! catching up after an outage, then warms the models instead of paging
//! about the past.

use std::ops::{Deref, DerefMut};
use std::sync::OnceLock;

use serde::de::{DeserializeSeed, Error as _, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::incident::IncidentConfig;
use super::lifecycle::AlertRuleConfig;
use crate::config::Problems;

/// Default of [`AlertConfig::max_event_age_secs`]: one hour. Live input is
/// seconds old; an hour covers a consumer catching up after a restart or a
/// short outage (its alerts are late but still about the present), while a
/// week of retained history replayed by a new consumer group does not page.
pub const DEFAULT_MAX_EVENT_AGE_SECS: u64 = 3600;

/// Largest accepted `max_event_age_secs` (10 years).
pub const MAX_MAX_EVENT_AGE_SECS: u64 = 10 * 365 * 86_400;

/// `[alert]`: the rule, the age limit and the incident grouping.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertConfig {
    /// The rule (the rule's keys of the section).
    pub rule: AlertRuleConfig,
    /// Events older than this many seconds (wall clock at processing minus
    /// event time) are learned but never alert; 0 turns the limit off.
    pub max_event_age_secs: u64,
    /// Which alerts are one incident (`group_by`, `group_window_secs`,
    /// `fleet_min_groups`).
    pub incidents: IncidentConfig,
}

impl Default for AlertConfig {
    fn default() -> Self {
        Self {
            rule: AlertRuleConfig::default(),
            max_event_age_secs: DEFAULT_MAX_EVENT_AGE_SECS,
            incidents: IncidentConfig::default(),
        }
    }
}

/// The rule's keys read and write as `config.alert.threshold`.
impl Deref for AlertConfig {
    type Target = AlertRuleConfig;
    fn deref(&self) -> &AlertRuleConfig {
        &self.rule
    }
}

impl DerefMut for AlertConfig {
    fn deref_mut(&mut self) -> &mut AlertRuleConfig {
        &mut self.rule
    }
}

impl AlertConfig {
    /// Records every problem under `prefix` (e.g. `alert`).
    pub fn validate(&self, prefix: &str, problems: &mut Problems) {
        self.rule.validate(prefix, problems);
        problems.check(
            self.max_event_age_secs <= MAX_MAX_EVENT_AGE_SECS,
            format!("{prefix}.max_event_age_secs"),
            format!(
                "must be at most {MAX_MAX_EVENT_AGE_SECS} seconds (10 years) (got {}); \
                 0 turns the limit off",
                self.max_event_age_secs
            ),
        );
        self.incidents.validate(prefix, problems);
    }

    /// The age limit in milliseconds, `None` when off.
    pub fn max_event_age_ms(&self) -> Option<i64> {
        (self.max_event_age_secs > 0).then(|| self.max_event_age_secs as i64 * 1000)
    }
}

/// The keys this struct adds to the rule's table.
const AGE_KEY: &str = "max_event_age_secs";
const GROUP_BY: &str = "group_by";
const GROUP_WINDOW: &str = "group_window_secs";
const FLEET_MIN: &str = "fleet_min_groups";
const OWN_KEYS: [&str; 4] = [AGE_KEY, GROUP_BY, GROUP_WINDOW, FLEET_MIN];

/// One flat table: the rule's keys and this struct's. (serde's `flatten`
/// cannot be combined with the rule's `deny_unknown_fields`, which must
/// keep reporting typos in `[alert]`, and would hide the keys' types from
/// the config schema.)
impl Serialize for AlertConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut table = match serde_json::to_value(&self.rule) {
            Ok(serde_json::Value::Object(t)) => t,
            Ok(_) => return Err(serde::ser::Error::custom("the alert rule is not a table")),
            Err(e) => return Err(serde::ser::Error::custom(e)),
        };
        // Unset options are left out, as serde leaves out `None` fields.
        table.retain(|_, v| !v.is_null());
        table.insert(AGE_KEY.to_owned(), self.max_event_age_secs.into());
        let i = &self.incidents;
        table.insert(GROUP_BY.to_owned(), i.group_by.clone().into());
        table.insert(GROUP_WINDOW.to_owned(), i.group_window_secs.into());
        table.insert(FLEET_MIN.to_owned(), i.fleet_min_groups.into());
        table.serialize(s)
    }
}

/// This struct's own keys as read, each `None` when absent.
#[derive(Default)]
struct Own {
    age: Option<u64>,
    group_by: Option<Vec<String>>,
    group_window_secs: Option<u64>,
    fleet_min_groups: Option<u32>,
}

/// Reads the rule's own table with this struct's keys more: the rule's
/// derived parser does the work (its typo check included), and [`WithOwn`]
/// takes this struct's keys out of the way. The keys are also declared as
/// fields of the struct, so a probe of the type (the config schema,
/// [`crate::config::schema`]) sees them with their types beside the rule's.
impl<'de> Deserialize<'de> for AlertConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut own = Own::default();
        let rule = AlertRuleConfig::deserialize(WithOwn {
            inner: d,
            own: &mut own,
        })?;
        let defaults = IncidentConfig::default();
        Ok(Self {
            rule,
            max_event_age_secs: own.age.unwrap_or(DEFAULT_MAX_EVENT_AGE_SECS),
            incidents: IncidentConfig {
                group_by: own.group_by.unwrap_or(defaults.group_by),
                group_window_secs: own.group_window_secs.unwrap_or(defaults.group_window_secs),
                fleet_min_groups: own.fleet_min_groups.unwrap_or(defaults.fleet_min_groups),
            },
        })
    }
}

/// A deserializer that hands the rule's parser its table without
/// [`OWN_KEYS`], whose values it keeps in `own`.
struct WithOwn<'a, D> {
    inner: D,
    own: &'a mut Own,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for WithOwn<'_, D> {
    type Error = D::Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        // The rule's fields and ours; one list for the process (the rule's
        // field list is a constant), so leaking it is a one-off.
        static FIELDS: OnceLock<&'static [&'static str]> = OnceLock::new();
        let all = FIELDS.get_or_init(|| {
            let mut all = fields.to_vec();
            all.extend(OWN_KEYS);
            Box::leak(all.into_boxed_slice())
        });
        self.inner.deserialize_struct(
            name,
            all,
            OwnVisitor {
                inner: visitor,
                own: self.own,
            },
        )
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_any(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// The rule's visitor, given the table through [`OwnMap`].
struct OwnVisitor<'a, V> {
    inner: V,
    own: &'a mut Own,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for OwnVisitor<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(OwnMap {
            inner: map,
            own: self.own,
        })
    }
}

/// The table without [`OWN_KEYS`].
struct OwnMap<'a, A> {
    inner: A,
    own: &'a mut Own,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for OwnMap<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        loop {
            let Some(key) = self.inner.next_key::<String>()? else {
                return Ok(None);
            };
            let bad =
                |what: &str, e: A::Error| A::Error::custom(format!("`{key}` must be {what}: {e}"));
            match key.as_str() {
                AGE_KEY => {
                    let v = self
                        .inner
                        .next_value::<u64>()
                        .map_err(|e| bad("a whole number of seconds (0 turns the limit off)", e))?;
                    self.own.age = Some(v);
                }
                GROUP_BY => {
                    let v = self.inner.next_value::<Vec<String>>().map_err(|e| {
                        bad("a list of label names, e.g. [\"instance\", \"host\"]", e)
                    })?;
                    self.own.group_by = Some(v);
                }
                GROUP_WINDOW => {
                    let v = self
                        .inner
                        .next_value::<u64>()
                        .map_err(|e| bad("a whole number of seconds", e))?;
                    self.own.group_window_secs = Some(v);
                }
                FLEET_MIN => {
                    let v = self.inner.next_value::<u32>().map_err(|e| {
                        bad(
                            "a whole number of groups (0 turns fleet-wide incidents off)",
                            e,
                        )
                    })?;
                    self.own.fleet_min_groups = Some(v);
                }
                _ => return seed.deserialize(key.into_deserializer()).map(Some),
            }
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.inner.next_value_seed(seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_table_reads_and_writes_both() {
        let c: AlertConfig = toml::from_str(
            "threshold = 0.7\nmax_event_age_secs = 60\nfor_events = 1\n\
             group_by = [\"cluster\", \"instance\"]\ngroup_window_secs = 300\n\
             fleet_min_groups = 0\n",
        )
        .unwrap();
        assert_eq!(c.threshold, 0.7);
        assert_eq!(c.max_event_age_secs, 60);
        assert_eq!(c.incidents.group_by, ["cluster", "instance"]);
        assert_eq!(c.incidents.group_window_secs, 300);
        assert_eq!(c.incidents.fleet_min_groups, 0);
        assert_eq!(c.max_event_age_ms(), Some(60_000));
        let back: AlertConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let d: AlertConfig = toml::from_str("").unwrap();
        assert_eq!(d, AlertConfig::default());
        assert_eq!(
            AlertConfig {
                max_event_age_secs: 0,
                ..AlertConfig::default()
            }
            .max_event_age_ms(),
            None
        );
    }

    #[test]
    fn typos_and_bad_values_are_errors() {
        let e = toml::from_str::<AlertConfig>("treshold = 0.7\n").unwrap_err();
        assert!(e.to_string().contains("treshold"), "{e}");
        let e = toml::from_str::<AlertConfig>("max_event_age_secs = -5\n").unwrap_err();
        assert!(e.to_string().contains("max_event_age_secs"), "{e}");
        let e = toml::from_str::<AlertConfig>("group_by = \"host\"\n").unwrap_err();
        assert!(e.to_string().contains("group_by"), "{e}");
        let e = toml::from_str::<AlertConfig>("group_window_secs = \"2m\"\n").unwrap_err();
        assert!(e.to_string().contains("group_window_secs"), "{e}");
        let mut p = Problems::new();
        AlertConfig {
            max_event_age_secs: MAX_MAX_EVENT_AGE_SECS + 1,
            ..AlertConfig::default()
        }
        .validate("alert", &mut p);
        let keys: Vec<_> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["alert.max_event_age_secs"]);
        let mut p = Problems::new();
        AlertConfig {
            incidents: IncidentConfig {
                group_window_secs: 0,
                ..IncidentConfig::default()
            },
            ..AlertConfig::default()
        }
        .validate("alert", &mut p);
        let keys: Vec<_> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["alert.group_window_secs"]);
    }
}
