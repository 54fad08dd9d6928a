//! Counters as rates: which series are counters, and how their cumulative
//! samples become the per-second rates their models learn.
//!
//! This module owns the classification of a series ([`classify`]: from
//! the metric type a remote-write sender declared, else from Prometheus'
//! naming conventions), the per-source rules ([`CountersConfig`], one per
//! source), the table the shards ask at a series' first event
//! ([`Classifier`]), and the per-series step from raw samples to rates
//! ([`RateState`]). It does not decide anything about anomalies: a rate is
//! a value like any other to the detector.
//!
//! Rules, when `as_rate` is on (the default):
//! - a counter (declared `counter`, or named `*_total`; the `_count` and
//!   `_sum` of a histogram or summary, declared or by name) is learned as
//!   its per-second increase between consecutive samples;
//! - `*_created` series (a counter's creation time) are skipped;
//! - `*_bucket` series are skipped unless `skip_buckets = false`, which
//!   learns each bucket as a rate;
//! - everything else is learned as its value.
//!
//! Resets: Prometheus' `rate()` reads a decrease as a counter reset and
//! counts the new value as the increase since it. Every other pair of
//! samples gives here the same per-second increase `rate()` would; the one
//! pair that spans a reset is not turned into a rate at all (the sample
//! after the reset becomes the new baseline), so a restart, which `rate()`
//! shows as a dip, can never alert.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::event::{Event, SeriesKey};

/// How a source's series are classified (`[decode.counters]` for Kafka and
/// replay, `[sources.remote_write.counters]` for the receiver).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CountersConfig {
    /// Learn counters as their per-second rate (and skip `_created`
    /// series). Off: every series is learned as its raw value, as before
    /// 0.2.
    pub as_rate: bool,
    /// Trust the metric type a sender declares (remote-write metadata) over
    /// the naming conventions. Kafka formats carry no type.
    pub use_metadata: bool,
    /// Skip histogram `_bucket` series (one per bucket boundary: many,
    /// and rarely worth a model each). Off: learn each as a rate.
    pub skip_buckets: bool,
}

impl Default for CountersConfig {
    fn default() -> Self {
        Self {
            as_rate: true,
            use_metadata: true,
            skip_buckets: true,
        }
    }
}

/// A metric type as Prometheus declares it (`# TYPE`, remote-write
/// metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// Type not given.
    Unknown,
    /// A monotonic counter.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A histogram (`_bucket`, `_count`, `_sum`).
    Histogram,
    /// A gauge histogram (its buckets and totals go up and down).
    GaugeHistogram,
    /// A summary (quantiles, `_count`, `_sum`).
    Summary,
    /// An info metric (always 1).
    Info,
    /// A state set (0 or 1 per state).
    StateSet,
}

impl MetricType {
    /// The remote-write `MetricMetadata.type` enum value.
    pub fn from_remote_write(v: i32) -> Self {
        match v {
            1 => Self::Counter,
            2 => Self::Gauge,
            3 => Self::Histogram,
            4 => Self::GaugeHistogram,
            5 => Self::Summary,
            6 => Self::Info,
            7 => Self::StateSet,
            _ => Self::Unknown,
        }
    }

    /// The type of Prometheus' `/api/v1/metadata` (`counter`, `gauge`, ...).
    pub fn from_name(s: &str) -> Self {
        match s {
            "counter" => Self::Counter,
            "gauge" => Self::Gauge,
            "histogram" => Self::Histogram,
            "gaugehistogram" => Self::GaugeHistogram,
            "summary" => Self::Summary,
            "info" => Self::Info,
            "stateset" => Self::StateSet,
            _ => Self::Unknown,
        }
    }
}

/// How a series' samples become the values its model learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Kind {
    /// The sample value itself.
    #[default]
    Value,
    /// The per-second increase since the previous sample (a counter).
    Rate,
}

/// Why a series is not learned at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// A `_created` series: when its counter started, not a measurement.
    Created,
    /// A histogram bucket, with `skip_buckets` on.
    Bucket,
}

impl SkipReason {
    /// The `reason` label of `anomalyd_samples_skipped_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Bucket => "bucket",
        }
    }
}

/// What [`classify`] decided for a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Learned, as this kind.
    Learn(Kind),
    /// Not learned.
    Skip(SkipReason),
}

/// The suffixes the rules look at, longest match not needed: none is a
/// suffix of another.
const SUFFIXES: [&str; 5] = ["_total", "_count", "_sum", "_bucket", "_created"];

/// Splits `name` into its family and one of [`SUFFIXES`], if it ends with
/// one.
fn split_suffix(name: &str) -> Option<(&str, &'static str)> {
    SUFFIXES
        .iter()
        .find_map(|s| name.strip_suffix(s).map(|base| (base, *s)))
}

/// The class of a series named `name` under `config`; `lookup` gives the
/// declared type of a metric family, if the sender declared one (see the
/// module docs for the rules).
pub fn classify(
    name: &str,
    config: &CountersConfig,
    lookup: &dyn Fn(&str) -> Option<MetricType>,
) -> Class {
    if !config.as_rate {
        return Class::Learn(Kind::Value);
    }
    let bucket = || {
        if config.skip_buckets {
            Class::Skip(SkipReason::Bucket)
        } else {
            Class::Learn(Kind::Rate)
        }
    };
    let suffix = split_suffix(name);
    if config.use_metadata {
        match lookup(name) {
            Some(MetricType::Counter) => return Class::Learn(Kind::Rate),
            Some(MetricType::Unknown) | None => {}
            // The family itself: a gauge, or a summary's quantiles.
            Some(_) => return Class::Learn(Kind::Value),
        }
        if let Some((base, suffix)) = suffix {
            match (lookup(base), suffix) {
                (Some(MetricType::Counter), "_total") => return Class::Learn(Kind::Rate),
                (
                    Some(MetricType::Counter | MetricType::Histogram | MetricType::Summary),
                    "_created",
                ) => return Class::Skip(SkipReason::Created),
                (Some(MetricType::Histogram | MetricType::Summary), "_count" | "_sum") => {
                    return Class::Learn(Kind::Rate);
                }
                (Some(MetricType::Histogram), "_bucket") => return bucket(),
                (Some(MetricType::GaugeHistogram), "_bucket") => {
                    return if config.skip_buckets {
                        Class::Skip(SkipReason::Bucket)
                    } else {
                        Class::Learn(Kind::Value)
                    };
                }
                _ => {}
            }
        }
    }
    match suffix {
        Some((_, "_total" | "_count" | "_sum")) => Class::Learn(Kind::Rate),
        Some((_, "_bucket")) => bucket(),
        Some((_, "_created")) => Class::Skip(SkipReason::Created),
        _ => Class::Learn(Kind::Value),
    }
}

/// The metric family a series named `name`, declared of type `t`, belongs
/// to: the suffixed series of a counter, histogram or summary (`x_total`,
/// `x_count`, `x_sum`, `x_bucket`, `x_created`) belong to `x`; any other
/// series is its own family. Remote-write 2.0 declares a type per series,
/// not per family: the receiver records it under this family, as 1.0's
/// metadata would name it, so that [`classify`] reads both alike.
pub fn declared_family(name: &str, t: MetricType) -> &str {
    match (t, split_suffix(name)) {
        (
            MetricType::Counter
            | MetricType::Histogram
            | MetricType::GaugeHistogram
            | MetricType::Summary,
            Some((base, _)),
        ) if !base.is_empty() => base,
        _ => name,
    }
}

/// Most metric families a [`Metadata`] table holds; at this size it starts
/// over (a sender re-sends its metadata every minute).
pub const METADATA_CAPACITY: usize = 100_000;

/// The metric types one sender declared, by family name.
#[derive(Debug, Default)]
pub struct Metadata(RwLock<HashMap<String, MetricType>>);

impl Metadata {
    /// Records the declared types (`Unknown` ones are not kept).
    pub fn update<'a>(&self, declared: impl IntoIterator<Item = (&'a str, MetricType)>) {
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        for (family, t) in declared {
            if t == MetricType::Unknown || map.get(family) == Some(&t) {
                continue;
            }
            if map.len() >= METADATA_CAPACITY {
                map.clear();
            }
            map.insert(family.to_owned(), t);
        }
    }

    /// The declared type of `family`.
    pub fn get(&self, family: &str) -> Option<MetricType> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(family)
            .copied()
    }

    /// Families held.
    pub fn len(&self) -> usize {
        self.0.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The rules of one source: its config and, for a sender that declares
/// types, what it declared.
#[derive(Debug, Default)]
pub struct StreamRules {
    /// The source's `counters` section.
    pub config: CountersConfig,
    /// Declared types (the remote-write receiver fills it).
    pub metadata: Option<Arc<Metadata>>,
}

impl StreamRules {
    /// Rules of `config`, without declared types.
    pub fn new(config: CountersConfig) -> Self {
        Self {
            config,
            metadata: None,
        }
    }

    /// The class of a series named `name`.
    pub fn classify(&self, name: &str) -> Class {
        match &self.metadata {
            Some(m) => classify(name, &self.config, &|f| m.get(f)),
            None => classify(name, &self.config, &|_| None),
        }
    }

    /// Removes the events from `from` on whose series are skipped
    /// (`_created`, `_bucket`), keeping the others in order, and counts
    /// them by reason with `count`. Costs a suffix check per event, and
    /// nothing at all with `as_rate` off.
    pub fn drop_skipped(
        &self,
        events: &mut Vec<Event>,
        from: usize,
        count: &mut dyn FnMut(SkipReason),
    ) {
        if !self.config.as_rate {
            return;
        }
        let mut i = from;
        let mut keep = from;
        while i < events.len() {
            let name = events[i].series.name();
            let skip = if name.ends_with("_created") || name.ends_with("_bucket") {
                match self.classify(name) {
                    Class::Skip(r) => Some(r),
                    Class::Learn(_) => None,
                }
            } else {
                None
            };
            match skip {
                Some(r) => count(r),
                None => {
                    events.swap(keep, i);
                    keep += 1;
                }
            }
            i += 1;
        }
        events.truncate(keep);
    }
}

/// Which rules apply to each input stream; the shards ask it for the kind
/// of a series they see for the first time. Sources register their
/// streams when they start; a stream without rules learns raw values.
#[derive(Debug, Default)]
pub struct Classifier {
    /// Indexed by stream (see [`crate::state::SourcePartition::stream`]).
    streams: RwLock<Vec<Option<Arc<StreamRules>>>>,
}

impl Classifier {
    /// Sets the rules of streams `first .. first + count`.
    pub fn register(&self, first: u16, count: usize, rules: Arc<StreamRules>) {
        let mut s = self.streams.write().unwrap_or_else(|e| e.into_inner());
        let end = usize::from(first) + count;
        if s.len() < end {
            s.resize(end, None);
        }
        for slot in &mut s[usize::from(first)..end] {
            *slot = Some(Arc::clone(&rules));
        }
    }

    /// The rules of `stream`, if registered.
    pub fn rules(&self, stream: u16) -> Option<Arc<StreamRules>> {
        self.streams
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(usize::from(stream))
            .cloned()
            .flatten()
    }

    /// How the series `key` of `stream` is learned. Skipped series never
    /// reach the shards (their source drops them); should one arrive, it is
    /// learned as its value.
    pub fn kind(&self, stream: u16, key: &SeriesKey) -> Kind {
        match self.rules(stream).map(|r| r.classify(key.name())) {
            Some(Class::Learn(kind)) => kind,
            Some(Class::Skip(_)) | None => Kind::Value,
        }
    }
}

/// A series' value rule and the state it needs: 24 bytes, kept with every
/// series in the shards and saved with it (only a rate's is saved: a
/// series saved without one learns its raw values).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SeriesValue {
    /// How samples become values.
    pub kind: Kind,
    /// The previous raw sample (a rate's baseline).
    pub rate: RateState,
}

impl SeriesValue {
    /// A series learned as `kind`, before its first sample.
    pub fn new(kind: Kind) -> Self {
        Self {
            kind,
            rate: RateState::default(),
        }
    }

    /// The value to learn from sample `(ts_ms, raw)`.
    #[inline]
    pub fn apply(&mut self, ts_ms: i64, raw: f64) -> Step {
        self.rate.apply(self.kind, ts_ms, raw)
    }
}

/// What [`RateState::step`] made of one raw sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// The value to learn.
    Value(f64),
    /// The first sample: the baseline of the next rate.
    First,
    /// The counter went down (a restart): the sample is the new baseline.
    Reset,
    /// Not later than the previous sample: ignored, the baseline stays.
    NotNewer,
}

impl Step {
    /// The `reason` label of `anomalyd_events_skipped_total` for a sample
    /// that gave no value.
    pub fn skip_reason(self) -> Option<&'static str> {
        match self {
            Self::Value(_) => None,
            Self::First => Some("counter_first"),
            Self::Reset => Some("counter_reset"),
            Self::NotNewer => Some("counter_not_newer"),
        }
    }
}

/// The [`Step::skip_reason`]s, for registering the counter's labels.
pub const SKIP_REASONS: [&str; 3] = ["counter_first", "counter_reset", "counter_not_newer"];

/// The `reason`s of `anomalyd_samples_skipped_total` this module adds.
pub const SAMPLE_SKIP_REASONS: [&str; 2] = ["created", "bucket"];

/// A series' previous raw sample: 16 bytes, for every series (a gauge
/// leaves it empty).
#[derive(Debug, Clone, Copy)]
pub struct RateState {
    /// Event time of the previous sample (ms).
    last_ts_ms: i64,
    /// Its raw value; NaN before the first sample.
    last_raw: f64,
}

/// Equal when they hold the same previous sample, or none (the "none"
/// marker is a NaN, which is never equal to itself).
impl PartialEq for RateState {
    fn eq(&self, other: &Self) -> bool {
        self.last() == other.last()
    }
}

impl Default for RateState {
    fn default() -> Self {
        Self {
            last_ts_ms: 0,
            last_raw: f64::NAN,
        }
    }
}

impl RateState {
    /// A baseline at `(ts_ms, raw)` (restored from a snapshot).
    pub fn at(ts_ms: i64, raw: f64) -> Self {
        Self {
            last_ts_ms: ts_ms,
            last_raw: raw,
        }
    }

    /// The previous sample `(ts_ms, raw)`, if there is one.
    pub fn last(&self) -> Option<(i64, f64)> {
        (!self.last_raw.is_nan()).then_some((self.last_ts_ms, self.last_raw))
    }

    /// The value of sample `(ts_ms, raw)` for a series of `kind`; a rate
    /// also moves the baseline.
    #[inline]
    pub fn apply(&mut self, kind: Kind, ts_ms: i64, raw: f64) -> Step {
        match kind {
            Kind::Value => Step::Value(raw),
            Kind::Rate => self.step(ts_ms, raw),
        }
    }

    /// The per-second increase since the previous sample.
    pub fn step(&mut self, ts_ms: i64, raw: f64) -> Step {
        if self.last_raw.is_nan() {
            *self = Self::at(ts_ms, raw);
            return Step::First;
        }
        if ts_ms <= self.last_ts_ms {
            return Step::NotNewer;
        }
        if raw < self.last_raw {
            *self = Self::at(ts_ms, raw);
            return Step::Reset;
        }
        let rate = (raw - self.last_raw) / ((ts_ms - self.last_ts_ms) as f64 / 1000.0);
        *self = Self::at(ts_ms, raw);
        Step::Value(rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(config: &CountersConfig, lookup: &dyn Fn(&str) -> Option<MetricType>) -> Vec<Class> {
        [
            "node_cpu_seconds_total",
            "http_request_duration_seconds_count",
            "http_request_duration_seconds_sum",
            "http_request_duration_seconds_bucket",
            "http_requests_created",
            "node_load1",
            "rpc_duration_seconds",
        ]
        .iter()
        .map(|n| classify(n, config, lookup))
        .collect()
    }

    /// Types declared per series (remote-write 2.0), recorded under their
    /// family, classify each series as the family's declaration would.
    #[test]
    fn types_declared_per_series_classify_as_their_family() {
        use Class::*;
        let declared = [
            ("node_cpu_seconds_total", MetricType::Counter),
            ("http_requests_created", MetricType::Counter),
            ("bytes_in", MetricType::Counter),
            ("lat_bucket", MetricType::Histogram),
            ("lat_count", MetricType::Histogram),
            ("rpc_duration_seconds", MetricType::Summary),
            ("queue_total", MetricType::Gauge),
        ];
        let m = Metadata::default();
        m.update(declared.iter().map(|&(n, t)| (declared_family(n, t), t)));
        assert_eq!(m.get("node_cpu_seconds"), Some(MetricType::Counter));
        assert_eq!(m.get("queue_total"), Some(MetricType::Gauge));
        let c = CountersConfig::default();
        let classes: Vec<Class> = declared
            .iter()
            .map(|(n, _)| classify(n, &c, &|f| m.get(f)))
            .collect();
        assert_eq!(
            classes,
            [
                Learn(Kind::Rate),
                Skip(SkipReason::Created),
                Learn(Kind::Rate),
                Skip(SkipReason::Bucket),
                Learn(Kind::Rate),
                Learn(Kind::Value),
                // A gauge named like a counter is a gauge.
                Learn(Kind::Value),
            ]
        );
    }

    #[test]
    fn naming_conventions_without_metadata() {
        use Class::*;
        let c = CountersConfig::default();
        assert_eq!(
            names(&c, &|_| None),
            [
                Learn(Kind::Rate),
                Learn(Kind::Rate),
                Learn(Kind::Rate),
                Skip(SkipReason::Bucket),
                Skip(SkipReason::Created),
                Learn(Kind::Value),
                Learn(Kind::Value),
            ]
        );
        let buckets = CountersConfig {
            skip_buckets: false,
            ..c.clone()
        };
        assert_eq!(classify("x_bucket", &buckets, &|_| None), Learn(Kind::Rate));
        let off = CountersConfig {
            as_rate: false,
            ..c
        };
        assert!(
            names(&off, &|_| None)
                .iter()
                .all(|c| *c == Learn(Kind::Value))
        );
    }

    #[test]
    fn declared_types_win_over_names() {
        use Class::*;
        let c = CountersConfig::default();
        let declared = |f: &str| match f {
            // A gauge that is named like a counter, a counter that is not.
            "queue_depth_total" => Some(MetricType::Gauge),
            "bytes_in" => Some(MetricType::Counter),
            // OpenMetrics names the counter family without `_total`.
            "http_requests" => Some(MetricType::Counter),
            "rpc_duration_seconds" => Some(MetricType::Summary),
            "lat" => Some(MetricType::Histogram),
            "gh" => Some(MetricType::GaugeHistogram),
            _ => None,
        };
        let got: Vec<Class> = [
            "queue_depth_total",
            "bytes_in",
            "http_requests_total",
            "http_requests_created",
            "rpc_duration_seconds",
            "rpc_duration_seconds_sum",
            "lat_count",
            "lat_bucket",
            "gh_bucket",
        ]
        .iter()
        .map(|n| classify(n, &c, &declared))
        .collect();
        assert_eq!(
            got,
            [
                Learn(Kind::Value),
                Learn(Kind::Rate),
                Learn(Kind::Rate),
                Skip(SkipReason::Created),
                Learn(Kind::Value),
                Learn(Kind::Rate),
                Learn(Kind::Rate),
                Skip(SkipReason::Bucket),
                Skip(SkipReason::Bucket),
            ]
        );
        // Told not to trust declarations, names decide.
        let names_only = CountersConfig {
            use_metadata: false,
            ..c
        };
        assert_eq!(
            classify("queue_depth_total", &names_only, &declared),
            Learn(Kind::Rate)
        );
        assert_eq!(
            classify("bytes_in", &names_only, &declared),
            Learn(Kind::Value)
        );
    }

    /// Reference values: the per-second increase Prometheus' `rate()`
    /// reports over any two samples of a counter without a reset between
    /// them is (v1 - v0) / (t1 - t0); a decrease is a reset.
    #[test]
    fn rates_follow_prometheus_and_resets_rebase() {
        let mut r = RateState::default();
        let s = |r: &mut RateState, t: i64, v: f64| r.step(t * 1000, v);
        assert_eq!(r.last(), None);
        assert_eq!(s(&mut r, 0, 100.0), Step::First);
        assert_eq!(s(&mut r, 15, 250.0), Step::Value(10.0));
        assert_eq!(s(&mut r, 30, 250.0), Step::Value(0.0));
        // Same or older timestamp: ignored, the baseline stays.
        assert_eq!(s(&mut r, 30, 999.0), Step::NotNewer);
        assert_eq!(s(&mut r, 20, 999.0), Step::NotNewer);
        assert_eq!(r.last(), Some((30_000, 250.0)));
        // A restart: the next rate starts from the new value.
        assert_eq!(s(&mut r, 45, 3.0), Step::Reset);
        assert_eq!(s(&mut r, 60, 153.0), Step::Value(10.0));
        assert_eq!(r.last(), Some((60_000, 153.0)));
        // Fractions of a second count.
        assert_eq!(r.step(60_500, 158.0), Step::Value(10.0));
        // A gauge passes through and leaves the state alone.
        let mut g = RateState::default();
        assert_eq!(g.apply(Kind::Value, 1, 5.0), Step::Value(5.0));
        assert_eq!(g.last(), None);
        assert_eq!(Step::Reset.skip_reason(), Some("counter_reset"));
    }

    #[test]
    fn skipped_series_are_dropped_in_order_and_counted() {
        let rules = StreamRules::new(CountersConfig::default());
        let ev = |name: &str, v: f64| Event {
            series: SeriesKey::from_name(name),
            ts_ms: 0,
            value: v,
        };
        let mut events = vec![
            ev("keep_me", 0.0),
            ev("a_total", 1.0),
            ev("a_created", 2.0),
            ev("lat_bucket", 3.0),
            ev("b", 4.0),
        ];
        let mut counted = Vec::new();
        rules.drop_skipped(&mut events, 1, &mut |r| counted.push(r.as_str()));
        let kept: Vec<f64> = events.iter().map(|e| e.value).collect();
        assert_eq!(kept, [0.0, 1.0, 4.0]);
        assert_eq!(counted, ["created", "bucket"]);
    }

    #[test]
    fn the_classifier_answers_per_stream() {
        let c = Classifier::default();
        let key = SeriesKey::from_name("x_total");
        assert_eq!(c.kind(0, &key), Kind::Value, "no rules: raw values");
        let meta = Arc::new(Metadata::default());
        meta.update([("x_total", MetricType::Gauge)]);
        c.register(
            2,
            2,
            Arc::new(StreamRules {
                config: CountersConfig::default(),
                metadata: Some(Arc::clone(&meta)),
            }),
        );
        c.register(0, 1, Arc::new(StreamRules::new(CountersConfig::default())));
        assert_eq!(c.kind(0, &key), Kind::Rate);
        assert_eq!(c.kind(1, &key), Kind::Value);
        assert_eq!(c.kind(3, &key), Kind::Value, "declared a gauge");
        meta.update([("x_total", MetricType::Counter)]);
        assert_eq!(c.kind(2, &key), Kind::Rate);
        assert_eq!(meta.len(), 1);
    }
}
