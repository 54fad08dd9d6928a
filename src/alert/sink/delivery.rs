//! The queue-and-retry keys every sink's table shares.
//!
//! Users write one table per sink (`[sinks.webhook]`): the sink's own keys
//! (`url`, `topic`, ...) beside `queue_capacity`, `max_batch_alerts` and,
//! for the sinks that retry, `[sinks.<name>.retry]`. In the code the shared
//! keys are one type, [`DeliveryConfig`], held beside the sink's own config
//! in a [`SinkSection`]; the section reads and writes them back into the
//! one table, so the keys users write are the same. A new sink implements
//! [`SinkTable`] for its own config and gets the shared keys, their
//! defaults, validation and runner settings from here.
//!
//! Why not `#[serde(flatten)]`: a flattened struct cannot refuse unknown
//! keys reliably, takes its defaults from its own type rather than the
//! sink's (the Alertmanager sink batches 64, the others 100), and hides
//! its keys from the configuration's [`Shape`](crate::config::schema::Shape),
//! which `check-config` reads them from.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{RetryConfig, SinkOptions};
use crate::config::Problems;

/// The keys of [`DeliveryConfig`], as written in a sink's table.
pub const DELIVERY_KEYS: [&str; 3] = ["queue_capacity", "max_batch_alerts", "retry"];

/// How a sink's runner queues, batches and retries its alerts.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryConfig {
    /// Alerts held while the sink is slow or down; beyond it the overflow
    /// policy gives one up (counted).
    pub queue_capacity: usize,
    /// Alerts handed to one delivery (one POST, one produce batch).
    pub max_batch_alerts: usize,
    /// Backoff between attempts (the `[retry]` sub-table; sinks that cannot
    /// fail, such as the log, have none).
    pub retry: RetryConfig,
}

impl DeliveryConfig {
    /// The shared keys with a sink's batch size, the usual queue and the
    /// usual backoff.
    pub fn with_batch(max_batch_alerts: usize) -> Self {
        Self {
            queue_capacity: 10_000,
            max_batch_alerts,
            retry: RetryConfig::default(),
        }
    }

    /// Records every problem under `prefix` (the sink's table);
    /// `retries` says whether the sink has a `[retry]` table.
    pub fn validate(&self, prefix: &str, retries: bool, problems: &mut Problems) {
        problems.check(
            self.queue_capacity >= 1,
            format!("{prefix}.queue_capacity"),
            "must be at least 1; it bounds the alerts held while the sink is slow or down",
        );
        problems.check(
            (1..=self.queue_capacity.max(1)).contains(&self.max_batch_alerts),
            format!("{prefix}.max_batch_alerts"),
            format!(
                "must be between 1 and queue_capacity ({})",
                self.queue_capacity
            ),
        );
        if retries {
            self.retry.validate(&format!("{prefix}.retry"), problems);
        }
    }

    /// The runner settings.
    pub fn options(&self) -> SinkOptions {
        SinkOptions {
            queue_capacity: self.queue_capacity,
            max_batch_alerts: self.max_batch_alerts,
            retry: self.retry.clone(),
            jitter_seed: None,
            messages: super::Messages::Both,
        }
    }
}

/// What a sink's own config tells its [`SinkSection`].
pub trait SinkTable: Default {
    /// Every key of the sink's table: its own, then those of
    /// [`DELIVERY_KEYS`] it has (a test checks this against the type).
    const KEYS: &'static [&'static str];

    /// Whether the sink retries, i.e. has a `[retry]` table.
    const RETRIES: bool = true;

    /// The sink's defaults for the shared keys.
    fn default_delivery() -> DeliveryConfig {
        DeliveryConfig::with_batch(100)
    }

    /// Whether the sink is on (a sink that is off is not validated).
    fn enabled(&self) -> bool;

    /// Records every problem of the sink's own keys under `prefix`.
    fn validate(&self, prefix: &str, problems: &mut Problems);
}

/// One sink's table: its own keys ([`SinkSection::sink`], also reached
/// through `Deref`) beside the shared queue-and-retry keys
/// ([`SinkSection::delivery`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SinkSection<T> {
    /// The sink's own keys.
    pub sink: T,
    /// `queue_capacity`, `max_batch_alerts`, `retry`.
    pub delivery: DeliveryConfig,
}

impl<T: SinkTable> Default for SinkSection<T> {
    fn default() -> Self {
        Self {
            sink: T::default(),
            delivery: T::default_delivery(),
        }
    }
}

/// The table is one section to its users; `config.sinks.webhook.url`
/// reads as they write it.
impl<T> Deref for SinkSection<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.sink
    }
}

impl<T> DerefMut for SinkSection<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.sink
    }
}

impl<T: SinkTable> SinkSection<T> {
    /// `sink` with its default queue-and-retry keys.
    pub fn new(sink: T) -> Self {
        Self {
            sink,
            delivery: T::default_delivery(),
        }
    }

    /// Records every problem under `prefix` (e.g. `sinks.webhook`); a sink
    /// that is off is not checked.
    pub fn validate(&self, prefix: &str, problems: &mut Problems) {
        if !self.sink.enabled() {
            return;
        }
        self.sink.validate(prefix, problems);
        self.delivery.validate(prefix, T::RETRIES, problems);
    }

    /// The runner settings.
    pub fn options(&self) -> SinkOptions {
        self.delivery.options()
    }
}

impl<T: Serialize + SinkTable> Serialize for SinkSection<T> {
    /// One table: the sink's keys, then the shared ones.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut table = toml::Table::try_from(&self.sink).map_err(S::Error::custom)?;
        let d = &self.delivery;
        let count = |n: usize| toml::Value::Integer(i64::try_from(n).unwrap_or(i64::MAX));
        table.insert("queue_capacity".into(), count(d.queue_capacity));
        table.insert("max_batch_alerts".into(), count(d.max_batch_alerts));
        if T::RETRIES {
            table.insert(
                "retry".into(),
                toml::Value::try_from(&d.retry).map_err(S::Error::custom)?,
            );
        }
        table.serialize(s)
    }
}

impl<'de, T: Deserialize<'de> + SinkTable> Deserialize<'de> for SinkSection<T> {
    /// One table: the shared keys are taken out as they come, the others
    /// go to the sink's own (derived) deserializer, which refuses unknown
    /// ones.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_struct("SinkSection", T::KEYS, SectionVisitor(PhantomData))
    }
}

struct SectionVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de> + SinkTable> Visitor<'de> for SectionVisitor<T> {
    type Value = SinkSection<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table of the sink's keys")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut delivery = T::default_delivery();
        let sink = T::deserialize(Routed {
            map: &mut map,
            delivery: &mut delivery,
            retries: T::RETRIES,
        })?;
        Ok(SinkSection { sink, delivery })
    }
}

/// The section's map as the sink's own deserializer sees it: without the
/// shared keys, which are read into `delivery` on the way.
struct Routed<'a, A> {
    map: &'a mut A,
    delivery: &'a mut DeliveryConfig,
    retries: bool,
}

impl<'de, A: MapAccess<'de>> Deserializer<'de> for Routed<'_, A> {
    type Error = A::Error;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, A::Error> {
        v.visit_map(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Routed<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        loop {
            let Some(key) = self.map.next_key::<String>()? else {
                return Ok(None);
            };
            match key.as_str() {
                "queue_capacity" => self.delivery.queue_capacity = self.map.next_value()?,
                "max_batch_alerts" => self.delivery.max_batch_alerts = self.map.next_value()?,
                "retry" if self.retries => self.delivery.retry = self.map.next_value()?,
                _ => {
                    let key: de::value::StringDeserializer<A::Error> = key.into_deserializer();
                    return seed.deserialize(key).map(Some);
                }
            }
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schema::Shape;

    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Toy {
        enabled: bool,
        url: String,
    }

    impl SinkTable for Toy {
        const KEYS: &'static [&'static str] = &[
            "enabled",
            "url",
            "queue_capacity",
            "max_batch_alerts",
            "retry",
        ];

        fn default_delivery() -> DeliveryConfig {
            DeliveryConfig::with_batch(64)
        }

        fn enabled(&self) -> bool {
            self.enabled
        }

        fn validate(&self, prefix: &str, problems: &mut Problems) {
            problems.check(!self.url.is_empty(), format!("{prefix}.url"), "is empty");
        }
    }

    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Quiet {
        enabled: bool,
    }

    impl SinkTable for Quiet {
        const KEYS: &'static [&'static str] = &["enabled", "queue_capacity", "max_batch_alerts"];
        const RETRIES: bool = false;

        fn enabled(&self) -> bool {
            self.enabled
        }

        fn validate(&self, _prefix: &str, _problems: &mut Problems) {}
    }

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Sinks {
        toy: SinkSection<Toy>,
        quiet: SinkSection<Quiet>,
    }

    #[test]
    fn one_table_reads_into_the_sink_and_the_shared_keys() {
        let s: Sinks = toml::from_str(
            "[toy]\nenabled = true\nqueue_capacity = 5\nurl = \"u\"\n[toy.retry]\nmax_attempts = 3\n\
             [quiet]\nmax_batch_alerts = 7\n",
        )
        .unwrap();
        assert_eq!(s.toy.url, "u");
        assert_eq!(s.toy.delivery.queue_capacity, 5);
        // The sink's own default for what the table leaves out.
        assert_eq!(s.toy.delivery.max_batch_alerts, 64);
        assert_eq!(s.toy.delivery.retry.max_attempts, 3);
        assert_eq!(s.quiet.delivery.max_batch_alerts, 7);
        // Written back as one table with the same keys.
        let text = toml::to_string(&s).unwrap();
        let again: Sinks = toml::from_str(&text).unwrap();
        assert_eq!(again.toy, s.toy);
        assert!(!text.contains("[quiet.retry]"), "{text}");
    }

    #[test]
    fn unknown_keys_are_refused_and_a_sink_without_retries_has_no_retry() {
        for text in [
            "[toy]\nqueue_capcity = 5\n",
            "[quiet]\nretry = { max_attempts = 3 }\n",
        ] {
            assert!(toml::from_str::<Sinks>(text).is_err(), "{text}");
        }
        let shape = Shape::of::<Sinks>().unwrap();
        assert!(shape.at("toy.queue_capacity").is_some());
        assert!(shape.at("toy.retry.max_attempts").is_some());
        assert!(shape.at("quiet.retry").is_none());
    }

    #[test]
    fn validation_covers_both_halves_and_skips_a_sink_that_is_off() {
        let mut s = Sinks::default();
        s.toy.delivery.max_batch_alerts = 0;
        let mut p = Problems::new();
        s.toy.validate("sinks.toy", &mut p);
        assert!(p.is_empty(), "off: {p}");
        s.toy.enabled = true;
        s.toy.delivery.retry.jitter = 2.0;
        s.toy.validate("sinks.toy", &mut p);
        let keys: Vec<&str> = p.iter().map(|x| x.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "sinks.toy.url",
                "sinks.toy.max_batch_alerts",
                "sinks.toy.retry.jitter"
            ]
        );
    }
}
