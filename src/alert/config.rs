//! The `[alert]` section: the alert rule, plus how old an event may be and
//! still page.
//!
//! This module owns [`AlertConfig`], which is the rule's own config
//! ([`AlertRuleConfig`], in [`super::lifecycle`]) with one key more,
//! `max_event_age_secs`, in the same TOML table. The rule decides when a
//! series fires; this key decides which events may make it fire at all:
//! an event whose timestamp is older than this when a shard processes it
//! teaches the model like any other, but the alert lifecycle never sees it
//! (counted in `anomalyd_events_too_old_total`). A consumer group that
//! starts from the earliest retained offset, or a remote-write sender
//! catching up after an outage, then warms the models instead of paging
//! about the past.

use std::ops::{Deref, DerefMut};
use std::sync::OnceLock;

use serde::de::{DeserializeSeed, Error as _, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::lifecycle::AlertRuleConfig;
use crate::config::Problems;

/// Default of [`AlertConfig::max_event_age_secs`]: one hour. Live input is
/// seconds old; an hour covers a consumer catching up after a restart or a
/// short outage (its alerts are late but still about the present), while a
/// week of retained history replayed by a new consumer group does not page.
pub const DEFAULT_MAX_EVENT_AGE_SECS: u64 = 3600;

/// Largest accepted `max_event_age_secs` (10 years).
pub const MAX_MAX_EVENT_AGE_SECS: u64 = 10 * 365 * 86_400;

/// `[alert]`: the rule and the age limit.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertConfig {
    /// The rule (every other key of the section).
    pub rule: AlertRuleConfig,
    /// Events older than this many seconds (wall clock at processing minus
    /// event time) are learned but never alert; 0 turns the limit off.
    pub max_event_age_secs: u64,
}

impl Default for AlertConfig {
    fn default() -> Self {
        Self {
            rule: AlertRuleConfig::default(),
            max_event_age_secs: DEFAULT_MAX_EVENT_AGE_SECS,
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
    }

    /// The age limit in milliseconds, `None` when off.
    pub fn max_event_age_ms(&self) -> Option<i64> {
        (self.max_event_age_secs > 0).then(|| self.max_event_age_secs as i64 * 1000)
    }
}

/// The key this struct adds to the rule's table.
const AGE_KEY: &str = "max_event_age_secs";

/// One flat table: the rule's keys and `max_event_age_secs`. (serde's
/// `flatten` cannot be combined with the rule's `deny_unknown_fields`,
/// which must keep reporting typos in `[alert]`, and would hide the keys'
/// types from the config schema.)
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
        table.serialize(s)
    }
}

/// Reads the rule's own table with one key more: the rule's derived
/// parser does the work (its typo check included), and [`WithAge`] takes
/// `max_event_age_secs` out of the way. The key is also declared as one
/// of the struct's fields, so a probe of the type (the config schema,
/// [`crate::config::schema`]) sees it with its type beside the rule's.
impl<'de> Deserialize<'de> for AlertConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut age = None;
        let rule = AlertRuleConfig::deserialize(WithAge {
            inner: d,
            age: &mut age,
        })?;
        Ok(Self {
            rule,
            max_event_age_secs: age.unwrap_or(DEFAULT_MAX_EVENT_AGE_SECS),
        })
    }
}

/// A deserializer that hands the rule's parser its table without
/// [`AGE_KEY`], whose value it keeps in `age`.
struct WithAge<'a, D> {
    inner: D,
    age: &'a mut Option<u64>,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for WithAge<'_, D> {
    type Error = D::Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        // The rule's fields and the age key; one list for the process
        // (the rule's field list is a constant), so leaking it is a one-off.
        static FIELDS: OnceLock<&'static [&'static str]> = OnceLock::new();
        let all = FIELDS.get_or_init(|| {
            let mut all = fields.to_vec();
            all.push(AGE_KEY);
            Box::leak(all.into_boxed_slice())
        });
        self.inner.deserialize_struct(
            name,
            all,
            AgeVisitor {
                inner: visitor,
                age: self.age,
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

/// The rule's visitor, given the table through [`AgeMap`].
struct AgeVisitor<'a, V> {
    inner: V,
    age: &'a mut Option<u64>,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for AgeVisitor<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(AgeMap {
            inner: map,
            age: self.age,
        })
    }
}

/// The table without [`AGE_KEY`].
struct AgeMap<'a, A> {
    inner: A,
    age: &'a mut Option<u64>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for AgeMap<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        loop {
            let Some(key) = self.inner.next_key::<String>()? else {
                return Ok(None);
            };
            if key != AGE_KEY {
                return seed.deserialize(key.into_deserializer()).map(Some);
            }
            let age = self.inner.next_value::<u64>().map_err(|e| {
                A::Error::custom(format!(
                    "`{AGE_KEY}` must be a whole number of seconds (0 turns the limit off): {e}"
                ))
            })?;
            *self.age = Some(age);
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
        let c: AlertConfig =
            toml::from_str("threshold = 0.7\nmax_event_age_secs = 60\nfor_events = 1\n").unwrap();
        assert_eq!(c.threshold, 0.7);
        assert_eq!(c.max_event_age_secs, 60);
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
        let mut p = Problems::new();
        AlertConfig {
            max_event_age_secs: MAX_MAX_EVENT_AGE_SECS + 1,
            ..AlertConfig::default()
        }
        .validate("alert", &mut p);
        let keys: Vec<_> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["alert.max_event_age_secs"]);
    }
}
