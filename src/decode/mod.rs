//! Input decoders: Kafka message bytes → [`Event`]s.
//!
//! This module owns the wire formats the daemon reads (one file each:
//! `native.rs` JSON, `prometheus_adapter.rs` JSON, `influx.rs` line protocol),
//! format detection (`auto`), the message size cap, timestamp rules shared by
//! the formats, and [`DecodeError`], whose [`DecodeError::reason`] is the
//! closed label set of the "bad input" counter. It does not own what happens
//! to a bad message (counting, logging, dead-lettering): that is the caller's,
//! which gets every error as data and carries on.
//!
//! Rules that hold for every format:
//! - one message may hold many events; every bad line or record yields exactly
//!   one error and the good ones around it still decode;
//! - no decoder ever emits a non-finite value;
//! - every emitted timestamp lies in 1970-01-01T00:00:00Z ..=
//!   9999-12-31T23:59:59.999Z, so it can always be printed as RFC 3339;
//! - an event without a timestamp takes the Kafka message timestamp (the
//!   `fallback_ts_ms` argument); with no fallback either, it is an error.
//!
//! Speed: decoders read borrowed input (no copy of the payload, JSON strings
//! borrowed unless escaped). The JSON formats look series keys up in the
//! decoder's [`KeyCache`], so an event of a known series allocates nothing
//! for its key; line protocol builds a
//! [`SeriesKey`](crate::event::SeriesKey) per event. Native records of the
//! common shape skip serde altogether (`native_fast.rs`); every other record,
//! and every error, goes through serde.

mod influx;
mod json;
mod native;
mod native_fast;
mod prometheus_adapter;

use std::borrow::Cow;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::config::Problems;
use crate::event::{Event, KeyCache};

/// The wire format of the input topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// anomalyd's own JSON: `{"series":"cpu","labels":{..},"ts":..,"value":1.5}`,
    /// one record per message or one per line (NDJSON).
    NativeJson,
    /// The JSON written by prometheus-kafka-adapter:
    /// `{"timestamp":"..","value":"1.5","name":"up","labels":{"__name__":"up",..}}`.
    PrometheusAdapter,
    /// InfluxDB line protocol as Telegraf's Kafka output writes it.
    InfluxLine,
    /// Detect per message: `{` starts JSON (a record with `series` is native,
    /// one with `name` is prometheus-kafka-adapter), a line shaped like
    /// `measurement[,tags] field=value` is line protocol, anything else is an
    /// `unknown_format` error.
    #[default]
    Auto,
}

impl Format {
    /// The config/metric spelling of the format.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::NativeJson => "native_json",
            Self::PrometheusAdapter => "prometheus_adapter",
            Self::InfluxLine => "influx_line",
            Self::Auto => "auto",
        }
    }
}

/// How numeric timestamps in JSON (`ts`, `timestamp`) are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JsonEpochUnit {
    /// Guess the unit from the magnitude: below 1e11 seconds, below 1e14
    /// milliseconds, below 1e17 microseconds, otherwise nanoseconds. Each
    /// band covers the dates 1973-03-03 .. 5138-11-16 in its unit, so any
    /// real timestamp of the last fifty years is read right.
    #[default]
    Auto,
    /// Seconds since the Unix epoch (fractions allowed).
    S,
    /// Milliseconds since the Unix epoch.
    Ms,
    /// Microseconds since the Unix epoch.
    Us,
    /// Nanoseconds since the Unix epoch.
    Ns,
}

/// The unit of line-protocol timestamps (InfluxDB's `precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InfluxPrecision {
    /// Nanoseconds: what Telegraf writes unless told otherwise.
    #[default]
    Ns,
    /// Microseconds.
    Us,
    /// Milliseconds.
    Ms,
    /// Seconds.
    S,
}

/// What to do with boolean line-protocol fields (`up=true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InfluxBooleans {
    /// Skip them silently, like string fields: a two-valued series rarely
    /// suits a forecasting model, and it keeps the series count down.
    #[default]
    Skip,
    /// Read `true` as 1 and `false` as 0.
    AsNumber,
}

/// Default for [`DecodeConfig::max_message_bytes`]: 1 MiB, Kafka's default
/// `message.max.bytes`.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Largest accepted value of [`DecodeConfig::max_message_bytes`] (256 MiB);
/// larger messages would hold one worker for too long.
pub const MAX_MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// Latest timestamp a decoder emits: 9999-12-31T23:59:59.999Z, the last
/// instant RFC 3339 can print.
pub const MAX_TS_MS: i64 = 253_402_300_799_999;

/// How input messages are decoded (`[decode]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecodeConfig {
    /// Wire format of the input: `auto` (default), `native_json`,
    /// `prometheus_adapter` or `influx_line`. Set it explicitly when the
    /// topic carries one format: errors then say what is wrong with a record
    /// instead of `unknown_format`.
    pub format: Format,
    /// Messages larger than this many bytes are skipped unread and counted as
    /// `too_large`. Default 1048576 (1 MiB).
    pub max_message_bytes: usize,
    /// Unit of numeric JSON timestamps: `auto` (default: seconds, ms, µs or
    /// ns guessed from the magnitude), `s`, `ms`, `us` or `ns`. RFC 3339
    /// strings are always accepted as well.
    pub json_timestamp_unit: JsonEpochUnit,
    /// Unit of line-protocol timestamps: `ns` (default, what Telegraf
    /// writes), `us`, `ms` or `s`.
    pub influx_timestamp_precision: InfluxPrecision,
    /// Boolean line-protocol fields: `skip` (default) or `as_number`
    /// (true = 1, false = 0).
    pub influx_booleans: InfluxBooleans,
    /// Which series are counters (learned as rates) or skipped, by
    /// Prometheus' naming conventions (these formats carry no type).
    pub counters: crate::counter::CountersConfig,
}

impl Default for DecodeConfig {
    fn default() -> Self {
        Self {
            format: Format::Auto,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            json_timestamp_unit: JsonEpochUnit::Auto,
            influx_timestamp_precision: InfluxPrecision::Ns,
            influx_booleans: InfluxBooleans::Skip,
            counters: crate::counter::CountersConfig::default(),
        }
    }
}

impl DecodeConfig {
    /// Records every problem under `prefix` (e.g. `decode`).
    pub fn validate(&self, prefix: &str, problems: &mut Problems) {
        problems.check(
            (1..=MAX_MAX_MESSAGE_BYTES).contains(&self.max_message_bytes),
            format!("{prefix}.max_message_bytes"),
            format!(
                "must be between 1 and {MAX_MAX_MESSAGE_BYTES} bytes (got {}); \
                 the default {DEFAULT_MAX_MESSAGE_BYTES} matches Kafka's message.max.bytes",
                self.max_message_bytes
            ),
        );
    }
}

/// Why one message, line or record could not be decoded.
///
/// Line numbers count from 1 inside the message. Every variant maps to one
/// of [`REASONS`] through [`DecodeError::reason`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// The message is empty or only whitespace (e.g. a Kafka tombstone).
    #[error("empty message")]
    Empty,
    /// The message exceeds `max_message_bytes`; it was not read.
    #[error("message of {len} bytes exceeds decode.max_message_bytes = {max}")]
    TooLarge {
        /// Size of the message.
        len: usize,
        /// The configured cap.
        max: usize,
    },
    /// A line is not valid UTF-8.
    #[error("line {line}: invalid UTF-8 at byte {column} of the line")]
    InvalidUtf8 {
        /// Line inside the message.
        line: usize,
        /// 1-based byte offset of the first bad byte inside the line.
        column: usize,
    },
    /// A JSON line or document does not parse.
    #[error("line {line}: invalid JSON: {message}")]
    InvalidJson {
        /// Line inside the message.
        line: usize,
        /// The parser's message.
        message: String,
    },
    /// A required field is absent or `null`.
    #[error("line {line}: missing field `{field}`")]
    MissingField {
        /// Line inside the message.
        line: usize,
        /// The field, e.g. `value`.
        field: &'static str,
    },
    /// A field has the wrong JSON type, or a string that should hold a number
    /// does not.
    #[error("line {line}: field `{field}` must be {expected}, found {found}")]
    WrongType {
        /// Line inside the message.
        line: usize,
        /// The field, e.g. `value` or `labels.host`.
        field: Cow<'static, str>,
        /// What it must be.
        expected: &'static str,
        /// What it was.
        found: &'static str,
    },
    /// A series name or label name is the empty string.
    #[error("line {line}: `{field}` must not be empty")]
    InvalidName {
        /// Line inside the message.
        line: usize,
        /// The field, e.g. `series` or `labels`.
        field: Cow<'static, str>,
    },
    /// A value is NaN or ±Infinity (e.g. a Prometheus staleness marker), or
    /// too large for a 64-bit float. Such a value never reaches a model.
    #[error("line {line}: field `{field}` is not a finite number")]
    NonFinite {
        /// Line inside the message.
        line: usize,
        /// The field, e.g. `value` or a line-protocol field key.
        field: Cow<'static, str>,
    },
    /// A timestamp is malformed, outside 1970..=9999, or absent with no
    /// Kafka timestamp to fall back on.
    #[error("line {line}: bad timestamp in `{field}`: {problem}")]
    BadTimestamp {
        /// Line inside the message.
        line: usize,
        /// The field, e.g. `ts`.
        field: &'static str,
        /// What is wrong.
        problem: &'static str,
    },
    /// A line does not follow the InfluxDB line protocol.
    #[error("line {line}, column {column}: invalid line protocol: {problem}")]
    InvalidLineProtocol {
        /// Line inside the message.
        line: usize,
        /// 1-based byte offset inside the line.
        column: usize,
        /// What is wrong.
        problem: &'static str,
    },
    /// `format = "auto"` could not tell which format a message or record is.
    #[error("line {line}: unknown format: {problem}")]
    UnknownFormat {
        /// Line inside the message.
        line: usize,
        /// Why detection failed.
        problem: &'static str,
    },
}

/// Every value [`DecodeError::reason`] can return, for pre-registering the
/// counter's label values.
pub const REASONS: [&str; 11] = [
    "empty",
    "too_large",
    "invalid_utf8",
    "invalid_json",
    "missing_field",
    "wrong_type",
    "invalid_name",
    "non_finite",
    "bad_timestamp",
    "invalid_line_protocol",
    "unknown_format",
];

/// The [`REASONS`] that are failures (`anomalyd_events_failed_total`):
/// all but `non_finite`. A NaN or ±Inf value is data that cannot be
/// learned, not broken input: it is counted as a skipped sample
/// (`anomalyd_samples_skipped_total{reason="non_finite"}`, see
/// [`DecodeError::is_skipped_sample`]).
pub const FAILURE_REASONS: [&str; 10] = [
    "empty",
    "too_large",
    "invalid_utf8",
    "invalid_json",
    "missing_field",
    "wrong_type",
    "invalid_name",
    "bad_timestamp",
    "invalid_line_protocol",
    "unknown_format",
];

impl DecodeError {
    /// True for a well-formed record whose value is NaN or ±Inf (e.g. the
    /// NaN quantiles of an empty Prometheus summary): counted as a skipped
    /// sample, not as a failure.
    pub fn is_skipped_sample(&self) -> bool {
        matches!(self, Self::NonFinite { .. })
    }

    /// A short, closed-set label for metrics (one of [`REASONS`]).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::TooLarge { .. } => "too_large",
            Self::InvalidUtf8 { .. } => "invalid_utf8",
            Self::InvalidJson { .. } => "invalid_json",
            Self::MissingField { .. } => "missing_field",
            Self::WrongType { .. } => "wrong_type",
            Self::InvalidName { .. } => "invalid_name",
            Self::NonFinite { .. } => "non_finite",
            Self::BadTimestamp { .. } => "bad_timestamp",
            Self::InvalidLineProtocol { .. } => "invalid_line_protocol",
            Self::UnknownFormat { .. } => "unknown_format",
        }
    }

    /// The line inside the message, when the error concerns one line.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Empty | Self::TooLarge { .. } => None,
            Self::InvalidUtf8 { line, .. }
            | Self::InvalidJson { line, .. }
            | Self::MissingField { line, .. }
            | Self::WrongType { line, .. }
            | Self::InvalidName { line, .. }
            | Self::NonFinite { line, .. }
            | Self::BadTimestamp { line, .. }
            | Self::InvalidLineProtocol { line, .. }
            | Self::UnknownFormat { line, .. } => Some(*line),
        }
    }
}

/// Turns message bytes into events, per the configured format.
///
/// `Sync`: one per source or one shared, as convenient. It keeps the series
/// keys it has seen ([`KeyCache`]) so that events of a known series share
/// one key instead of allocating their own; a clone starts with an empty
/// cache.
#[derive(Debug)]
pub struct Decoder {
    /// Series keys seen so far, behind a lock so `decode` can take `&self`
    /// (one uncontended lock per message: a decoder serves one source).
    keys: Mutex<KeyCache>,
    /// The configured format (`Auto` detects per message).
    format: Format,
    /// Messages above this size are rejected unread.
    max_message_bytes: usize,
    /// Settings of the JSON formats.
    json: json::Settings,
    /// Settings of the line-protocol format.
    influx: influx::Settings,
}

impl Clone for Decoder {
    fn clone(&self) -> Self {
        Self {
            keys: Mutex::default(),
            format: self.format,
            max_message_bytes: self.max_message_bytes,
            json: self.json,
            influx: self.influx,
        }
    }
}

impl Decoder {
    /// Builds a decoder. The config should have passed
    /// [`DecodeConfig::validate`]; a zero size cap would reject everything.
    pub fn new(config: &DecodeConfig) -> Self {
        Self {
            keys: Mutex::default(),
            format: config.format,
            max_message_bytes: config.max_message_bytes,
            json: json::Settings {
                epoch_unit: config.json_timestamp_unit,
                fast_native: true,
            },
            influx: influx::Settings {
                precision: config.influx_timestamp_precision,
                booleans: config.influx_booleans,
            },
        }
    }

    /// Holds at most `capacity` series keys (the daemon passes
    /// `pipeline.max_series`; the keys are held weakly, see [`KeyCache`]).
    pub fn with_key_capacity(self, capacity: usize) -> Self {
        *self.keys() = KeyCache::with_capacity(capacity);
        self
    }

    /// Turns the fast path for well-formed native JSON records on (the
    /// default) or off. The events and errors are the same either way; this
    /// exists so tests and the fuzzer can check exactly that.
    pub fn with_fast_path(mut self, on: bool) -> Self {
        self.json.fast_native = on;
        self
    }

    /// The key cache. A panic while holding it cannot leave it
    /// inconsistent (each insert is one map operation), so a poisoned lock
    /// is used as it is.
    fn keys(&self) -> std::sync::MutexGuard<'_, KeyCache> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Decodes one message, appending its events to `out` and one error per
    /// bad line or record to `errors` (neither is cleared, so the caller can
    /// reuse both buffers). `fallback_ts_ms` is the Kafka message timestamp,
    /// used for events that carry none.
    pub fn decode(
        &self,
        payload: &[u8],
        fallback_ts_ms: Option<i64>,
        out: &mut Vec<Event>,
        errors: &mut Vec<DecodeError>,
    ) {
        if payload.len() > self.max_message_bytes {
            errors.push(DecodeError::TooLarge {
                len: payload.len(),
                max: self.max_message_bytes,
            });
            return;
        }
        let Some(start) = payload.iter().position(|b| !b.is_ascii_whitespace()) else {
            errors.push(DecodeError::Empty);
            return;
        };
        let fallback = Fallback::new(fallback_ts_ms);
        match self.format {
            Format::NativeJson => self.json(payload, Flavor::Native, fallback, out, errors),
            Format::PrometheusAdapter => {
                self.json(payload, Flavor::PrometheusAdapter, fallback, out, errors);
            }
            Format::InfluxLine => influx::decode(payload, &self.influx, fallback, out, errors),
            Format::Auto => {
                if payload[start] == b'{' {
                    self.json(payload, Flavor::Auto, fallback, out, errors);
                } else if influx::looks_like_line_protocol(payload) {
                    influx::decode(payload, &self.influx, fallback, out, errors);
                } else {
                    errors.push(undetected(payload, start));
                }
            }
        }
    }

    /// Decodes a JSON message: [`json`] splits it into records, and each
    /// is read as `flavor` says.
    fn json(
        &self,
        payload: &[u8],
        flavor: Flavor,
        fallback: Fallback,
        out: &mut Vec<Event>,
        errors: &mut Vec<DecodeError>,
    ) {
        let keys = &mut *self.keys();
        let settings = &self.json;
        json::decode(
            payload,
            |bytes, line| json_record(bytes, line, flavor, settings, fallback, keys),
            out,
            errors,
        );
    }
}

/// Which JSON format to read a record as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    /// anomalyd's own format.
    Native,
    /// prometheus-kafka-adapter's format.
    PrometheusAdapter,
    /// Decide per record: `series` → native, `name` → adapter.
    Auto,
}

/// Reads one JSON record as `flavor` says.
fn json_record(
    bytes: &[u8],
    line: usize,
    flavor: Flavor,
    settings: &json::Settings,
    fallback: Fallback,
    keys: &mut KeyCache,
) -> Result<Event, DecodeError> {
    let text = json::text(bytes, line)?;
    // The common well-formed native record, without serde; anything else
    // (including every error) is read by serde below.
    if settings.fast_native
        && matches!(flavor, Flavor::Native | Flavor::Auto)
        && let Some(event) = native_fast::event(text, line, settings.epoch_unit, fallback, keys)
    {
        return Ok(event);
    }
    let rec = json::parse(text, line)?;
    let rt = json::RecordCtx {
        line,
        epoch_unit: settings.epoch_unit,
        fallback,
    };
    match flavor {
        Flavor::Native => native::to_event(rec, &rt, keys),
        Flavor::PrometheusAdapter => prometheus_adapter::to_event(rec, &rt, keys),
        Flavor::Auto if rec.series.is_some() => native::to_event(rec, &rt, keys),
        Flavor::Auto if rec.name.is_some() => prometheus_adapter::to_event(rec, &rt, keys),
        Flavor::Auto => Err(DecodeError::UnknownFormat {
            line,
            problem: "a JSON object with neither `series` (native_json) \
                      nor `name` (prometheus_adapter)",
        }),
    }
}

/// The error for a message `auto` cannot place. Binary data (Avro,
/// Protobuf, compressed bytes) shows as `invalid_utf8`, which tells the
/// operator more than `unknown_format`.
fn undetected(payload: &[u8], start: usize) -> DecodeError {
    let line = 1 + payload[..start].iter().filter(|&&b| b == b'\n').count();
    let rest = &payload[start..];
    let first_line = &rest[..rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len())];
    if let Err(e) = std::str::from_utf8(first_line) {
        return DecodeError::InvalidUtf8 {
            line,
            column: e.valid_up_to() + 1,
        };
    }
    let problem = if payload[start] == b'[' {
        "a JSON array; send one JSON object per message or per line"
    } else {
        "neither a JSON object nor InfluxDB line protocol"
    };
    DecodeError::UnknownFormat { line, problem }
}

/// The Kafka message timestamp, checked once per message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fallback(Option<Result<i64, &'static str>>);

impl Fallback {
    /// Wraps the caller's fallback timestamp.
    fn new(ts_ms: Option<i64>) -> Self {
        Self(ts_ms.map(check_ts_ms))
    }

    /// The timestamp for an event without one, or the error to report.
    pub(crate) fn get(&self, line: usize, field: &'static str) -> Result<i64, DecodeError> {
        match self.0 {
            Some(Ok(ts)) => Ok(ts),
            Some(Err(problem)) => Err(DecodeError::BadTimestamp {
                line,
                field: "kafka timestamp",
                problem,
            }),
            None => Err(DecodeError::BadTimestamp {
                line,
                field,
                problem: "absent, and the Kafka message has no timestamp to fall back on",
            }),
        }
    }
}

/// Accepts a timestamp in the printable range (see [`MAX_TS_MS`]).
pub(crate) fn check_ts_ms(ts_ms: i64) -> Result<i64, &'static str> {
    if ts_ms < 0 {
        Err("before 1970-01-01T00:00:00Z")
    } else if ts_ms > MAX_TS_MS {
        Err("after 9999-12-31T23:59:59.999Z")
    } else {
        Ok(ts_ms)
    }
}

/// Parses an RFC 3339 timestamp (`2026-01-01T00:00:00Z`,
/// `2026-01-01T01:00:00.250+01:00`) to epoch milliseconds, dropping
/// sub-millisecond digits.
pub(crate) fn parse_rfc3339_ms(s: &str) -> Result<i64, &'static str> {
    let dt = chrono::DateTime::parse_from_rfc3339(s)
        .map_err(|_| "not an RFC 3339 timestamp such as 2026-01-01T00:00:00Z")?;
    check_ts_ms(dt.timestamp_millis())
}

#[cfg(test)]
mod tests;
