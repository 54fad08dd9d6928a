//! JSON plumbing shared by the two JSON wire formats.
//!
//! This file owns how a JSON message is split into records (one document, or
//! one record per line), the borrowed [`RawRecord`] every record is read
//! into, and the mapping of parser errors to [`DecodeError`]s. What a record
//! *means* belongs to [`super::native`] and [`super::prometheus_adapter`],
//! and which of them (or the native fast path) reads a record is decided by
//! the caller ([`super`]), so this file depends on neither.
//!
//! Records are read with hand-written serde visitors that accept any JSON
//! type for every known key, so a wrong type becomes a precise `wrong_type`
//! error naming the field instead of an opaque parse failure, and strings
//! are borrowed from the message unless they contain escapes.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{DecodeError, Fallback, JsonEpochUnit, check_ts_ms};
use crate::event::Event;

/// Settings of the JSON formats, from [`super::DecodeConfig`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Settings {
    /// Unit of numeric timestamps.
    pub(super) epoch_unit: JsonEpochUnit,
    /// Try [`super::native_fast`] before serde for native records. Off only
    /// to compare the two paths in tests and fuzzing.
    pub(super) fast_native: bool,
}

/// Decodes a JSON message: NDJSON (one record per non-blank line), or a
/// single record spread over several lines when the first non-blank line is
/// a lone `{` (as pretty-printers write it). `record` reads one record
/// (its bytes, trimmed, and the line it starts on).
pub(super) fn decode(
    payload: &[u8],
    mut record: impl FnMut(&[u8], usize) -> Result<Event, DecodeError>,
    out: &mut Vec<Event>,
    errors: &mut Vec<DecodeError>,
) {
    // One record per message or per replayed line is the common case: find
    // that out with one vectorised scan instead of splitting byte by byte.
    // (Newlines in the surrounding whitespace only shift the line number.)
    let whole = payload.trim_ascii();
    if !whole.contains(&b'\n') {
        if !whole.is_empty() {
            let line = 1 + leading_newlines(payload);
            push(record(whole, line), out, errors);
        }
        return;
    }
    let first = payload
        .split(|&b| b == b'\n')
        .map(<[u8]>::trim_ascii)
        .find(|l| !l.is_empty());
    if first == Some(b"{".as_slice()) {
        push(
            record(payload.trim_ascii(), 1 + leading_newlines(payload)),
            out,
            errors,
        );
        return;
    }
    for (i, line) in payload.split(|&b| b == b'\n').enumerate() {
        let line = line.trim_ascii();
        if !line.is_empty() {
            push(record(line, i + 1), out, errors);
        }
    }
}

/// Number of newlines before the first non-whitespace byte.
fn leading_newlines(payload: &[u8]) -> usize {
    payload
        .iter()
        .take_while(|b| b.is_ascii_whitespace())
        .filter(|&&b| b == b'\n')
        .count()
}

/// Appends one record's outcome.
fn push(r: Result<Event, DecodeError>, out: &mut Vec<Event>, errors: &mut Vec<DecodeError>) {
    match r {
        Ok(e) => out.push(e),
        Err(e) => errors.push(e),
    }
}

/// The record's text, or `invalid_utf8` with where it went wrong.
pub(super) fn text(bytes: &[u8], line: usize) -> Result<&str, DecodeError> {
    std::str::from_utf8(bytes).map_err(|e| DecodeError::InvalidUtf8 {
        line: line
            + bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count(),
        column: column_of(bytes, e.valid_up_to()),
    })
}

/// Parses one record's text (starting on `line`) into a [`RawRecord`].
pub(super) fn parse(text: &str, line: usize) -> Result<RawRecord<'_>, DecodeError> {
    let doc: RawDoc<'_> = serde_json::from_str(text).map_err(|e| parse_error(&e, text, line))?;
    match doc {
        RawDoc::Record(r) => Ok(r),
        RawDoc::Other(found) => Err(DecodeError::WrongType {
            line,
            field: Cow::Borrowed("(record)"),
            expected: "a JSON object",
            found,
        }),
    }
}

/// 1-based column of byte `at` inside its line.
fn column_of(bytes: &[u8], at: usize) -> usize {
    let line_start = bytes[..at]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    at - line_start + 1
}

/// What a format's interpretation step needs to know.
pub(super) struct RecordCtx {
    /// Line of the record inside the message.
    pub(super) line: usize,
    /// Unit of numeric timestamps.
    pub(super) epoch_unit: JsonEpochUnit,
    /// The Kafka message timestamp.
    pub(super) fallback: Fallback,
}

impl RecordCtx {
    /// The event time from a timestamp field (`None` when absent).
    pub(super) fn timestamp(
        &self,
        v: Option<&Scalar<'_>>,
        field: &'static str,
    ) -> Result<i64, DecodeError> {
        let bad = |problem| DecodeError::BadTimestamp {
            line: self.line,
            field,
            problem,
        };
        match v {
            None | Some(Scalar::Null) => self.fallback.get(self.line, field),
            Some(Scalar::Str(s)) => super::parse_rfc3339_ms(s).map_err(bad),
            Some(Scalar::Int(n)) => epoch_int_to_ms(i128::from(*n), self.epoch_unit).map_err(bad),
            Some(Scalar::UInt(n)) => epoch_int_to_ms(i128::from(*n), self.epoch_unit).map_err(bad),
            Some(Scalar::Float(x)) => epoch_float_to_ms(*x, self.epoch_unit).map_err(bad),
            Some(other) => Err(DecodeError::WrongType {
                line: self.line,
                field: Cow::Borrowed(field),
                expected: "an RFC 3339 string or a number of seconds or milliseconds",
                found: other.type_name(),
            }),
        }
    }

    /// The labels, checked: `None` becomes no labels.
    pub(super) fn labels<'a>(
        &self,
        labels: Option<RawLabels<'a>>,
    ) -> Result<(LabelPairs<'a>, Option<String>), DecodeError> {
        match labels {
            None => Ok((Vec::new(), None)),
            Some(RawLabels::Other(found)) => Err(DecodeError::WrongType {
                line: self.line,
                field: Cow::Borrowed("labels"),
                expected: "an object of strings",
                found,
            }),
            Some(RawLabels::Map {
                pairs,
                name,
                problem,
            }) => match problem {
                None => Ok((pairs, name)),
                Some(LabelProblem::EmptyName) => Err(DecodeError::InvalidName {
                    line: self.line,
                    field: Cow::Borrowed("labels (a label name)"),
                }),
                Some(LabelProblem::NotAString { key, found }) => Err(DecodeError::WrongType {
                    line: self.line,
                    field: Cow::Owned(format!("labels.{key}")),
                    expected: "a string",
                    found,
                }),
            },
        }
    }

    /// A required non-empty string naming the series.
    pub(super) fn name<'a>(
        &self,
        v: Option<Scalar<'a>>,
        field: &'static str,
    ) -> Result<Cow<'a, str>, DecodeError> {
        match v {
            Some(Scalar::Str(s)) if !s.is_empty() => Ok(s),
            Some(Scalar::Str(_)) => Err(DecodeError::InvalidName {
                line: self.line,
                field: Cow::Borrowed(field),
            }),
            None | Some(Scalar::Null) => Err(DecodeError::MissingField {
                line: self.line,
                field,
            }),
            Some(other) => Err(DecodeError::WrongType {
                line: self.line,
                field: Cow::Borrowed(field),
                expected: "a string",
                found: other.type_name(),
            }),
        }
    }
}

/// Label pairs in input order, borrowed from the message unless escaped, as
/// [`KeyCache::key`](crate::event::KeyCache::key) takes them.
pub(super) type LabelPairs<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

/// Converts an integer epoch timestamp to milliseconds (sub-millisecond
/// digits are dropped, rounding toward the past).
pub(super) fn epoch_int_to_ms(n: i128, unit: JsonEpochUnit) -> Result<i64, &'static str> {
    let ms = match resolve_unit(n.unsigned_abs() as f64, unit) {
        JsonEpochUnit::S => n.saturating_mul(1000),
        JsonEpochUnit::Us => n.div_euclid(1000),
        JsonEpochUnit::Ns => n.div_euclid(1_000_000),
        JsonEpochUnit::Ms | JsonEpochUnit::Auto => n,
    };
    check_ts_ms(i64::try_from(ms).map_err(|_| "out of range")?)
}

/// Converts a fractional epoch timestamp to milliseconds, rounded to the
/// nearest millisecond (so `1700000000.123` s is exactly `...123` ms despite
/// binary floating point).
pub(super) fn epoch_float_to_ms(x: f64, unit: JsonEpochUnit) -> Result<i64, &'static str> {
    let ms = match resolve_unit(x.abs(), unit) {
        JsonEpochUnit::S => x * 1e3,
        JsonEpochUnit::Us => x / 1e3,
        JsonEpochUnit::Ns => x / 1e6,
        JsonEpochUnit::Ms | JsonEpochUnit::Auto => x,
    }
    .round();
    if !ms.is_finite() {
        return Err("not a finite number");
    }
    // The range check is on the float so the cast below cannot saturate.
    if ms < 0.0 {
        return Err("before 1970-01-01T00:00:00Z");
    }
    if ms > super::MAX_TS_MS as f64 {
        return Err("after 9999-12-31T23:59:59.999Z");
    }
    check_ts_ms(ms as i64)
}

/// The unit to use for a number of magnitude `abs` (see [`JsonEpochUnit::Auto`]).
fn resolve_unit(abs: f64, unit: JsonEpochUnit) -> JsonEpochUnit {
    match unit {
        JsonEpochUnit::Auto if abs < 1e11 => JsonEpochUnit::S,
        JsonEpochUnit::Auto if abs < 1e14 => JsonEpochUnit::Ms,
        JsonEpochUnit::Auto if abs < 1e17 => JsonEpochUnit::Us,
        JsonEpochUnit::Auto => JsonEpochUnit::Ns,
        u => u,
    }
}

/// A JSON value reduced to what the decoders need: numbers and strings in
/// full (strings borrowed when unescaped), containers only by kind.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Scalar<'a> {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A negative integer.
    Int(i64),
    /// A non-negative integer.
    UInt(u64),
    /// Any other number.
    Float(f64),
    /// A string.
    Str(Cow<'a, str>),
    /// An array (skipped).
    Array,
    /// An object (skipped).
    Object,
}

impl Scalar<'_> {
    /// The JSON type, for error messages.
    pub(super) fn type_name(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "a boolean",
            Self::Int(_) | Self::UInt(_) | Self::Float(_) => "a number",
            Self::Str(_) => "a string",
            Self::Array => "an array",
            Self::Object => "an object",
        }
    }

    /// The value of a JSON number.
    pub(super) fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::Int(n) => Some(n as f64),
            Self::UInt(n) => Some(n as f64),
            Self::Float(x) => Some(x),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

/// Visitor behind [`Scalar`].
struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        Scalar::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(if v >= 0 {
            Scalar::UInt(v.unsigned_abs())
        } else {
            Scalar::Int(v)
        })
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::UInt(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Object)
    }
}

/// An object key, borrowed unless it contains escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// Visitor behind [`Key`].
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// The `labels` object as read: the pairs that will form the series key
/// (borrowed: the key cache copies them only for a new series), `__name__`
/// apart, and the first problem seen (reported after the whole record
/// parsed).
pub(super) enum RawLabels<'a> {
    /// An object.
    Map {
        /// Labels with non-empty string values, in input order.
        pairs: LabelPairs<'a>,
        /// The `__name__` label, never part of `pairs`.
        name: Option<String>,
        /// The first bad entry.
        problem: Option<LabelProblem>,
    },
    /// Something other than an object or `null` (its JSON type).
    Other(&'static str),
}

/// What can be wrong with one label.
pub(super) enum LabelProblem {
    /// A label name is `""`.
    EmptyName,
    /// A label value is not a string.
    NotAString {
        /// The label name.
        key: String,
        /// The JSON type found.
        found: &'static str,
    },
}

/// Reads `labels`; `null` reads as absent (`Option::None` at the field).
fn deserialize_labels<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RawLabels<'de>>, D::Error> {
    /// Visitor behind [`RawLabels`].
    struct LabelsVisitor;
    impl<'de> Visitor<'de> for LabelsVisitor {
        type Value = Option<RawLabels<'de>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object of labels")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(4));
            let mut name = None;
            let mut problem = None;
            while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
                let v: Scalar<'de> = map.next_value()?;
                match v {
                    Scalar::Str(v) if k == "__name__" => name = Some(v.into_owned()),
                    // Prometheus semantics: an empty value is the same as no
                    // label, and `null` is the same as absent everywhere.
                    Scalar::Null => {}
                    Scalar::Str(v) if v.is_empty() => {}
                    Scalar::Str(_) if k.is_empty() => {
                        problem.get_or_insert(LabelProblem::EmptyName);
                    }
                    Scalar::Str(v) => pairs.push((k, v)),
                    other => {
                        problem.get_or_insert(LabelProblem::NotAString {
                            key: k.into_owned(),
                            found: other.type_name(),
                        });
                    }
                }
            }
            Ok(Some(RawLabels::Map {
                pairs,
                name,
                problem,
            }))
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Some(RawLabels::Other("a boolean")))
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Some(RawLabels::Other("a number")))
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Some(RawLabels::Other("a number")))
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Some(RawLabels::Other("a number")))
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(Some(RawLabels::Other("a string")))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Some(RawLabels::Other("an array")))
        }
    }
    d.deserialize_any(LabelsVisitor)
}

/// Wrapper so `labels` can be read with `MapAccess::next_value`.
struct LabelsField<'a>(Option<RawLabels<'a>>);

impl<'de> Deserialize<'de> for LabelsField<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_labels(d).map(LabelsField)
    }
}

/// Every key either JSON format knows, read permissively. Unknown keys are
/// skipped (forward compatibility); a repeated key keeps its last value.
#[derive(Default)]
pub(super) struct RawRecord<'a> {
    /// Native: the metric name.
    pub(super) series: Option<Scalar<'a>>,
    /// Adapter: the metric name.
    pub(super) name: Option<Scalar<'a>>,
    /// Both: the labels.
    pub(super) labels: Option<RawLabels<'a>>,
    /// Native: the event time.
    pub(super) ts: Option<Scalar<'a>>,
    /// Adapter: the event time.
    pub(super) timestamp: Option<Scalar<'a>>,
    /// Both: the observed value.
    pub(super) value: Option<Scalar<'a>>,
}

/// A whole JSON document: a record, or the type of whatever else it was.
enum RawDoc<'a> {
    /// An object.
    Record(RawRecord<'a>),
    /// Not an object (its JSON type).
    Other(&'static str),
}

impl<'de> Deserialize<'de> for RawDoc<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DocVisitor)
    }
}

/// Visitor behind [`RawDoc`].
struct DocVisitor;

impl<'de> Visitor<'de> for DocVisitor {
    type Value = RawDoc<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut r = RawRecord::default();
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            match &*k {
                "series" => r.series = Some(map.next_value()?),
                "name" => r.name = Some(map.next_value()?),
                "labels" => r.labels = map.next_value::<LabelsField>()?.0,
                "ts" => r.ts = Some(map.next_value()?),
                "timestamp" => r.timestamp = Some(map.next_value()?),
                "value" => r.value = Some(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(RawDoc::Record(r))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(RawDoc::Other("null"))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(RawDoc::Other("a boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(RawDoc::Other("a number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(RawDoc::Other("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(RawDoc::Other("a number"))
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(RawDoc::Other("a string"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(RawDoc::Other("an array"))
    }
}

/// Maps a parser error to a decode error. JSON has no NaN or Infinity, but
/// Python's `json.dumps` writes them and numbers like `1e400` overflow: both
/// are reported as `non_finite` rather than `invalid_json`, since that is
/// what the operator needs to hear.
fn parse_error(e: &serde_json::Error, text: &str, first_line: usize) -> DecodeError {
    let line = first_line + e.line().saturating_sub(1);
    let at = byte_index(text, e.line(), e.column());
    let message = e.to_string();
    if message.starts_with("number out of range") || at.is_some_and(|i| non_finite_literal(text, i))
    {
        let field = at
            .and_then(|i| key_before_value(text, i))
            .map_or(Cow::Borrowed("value"), |k| Cow::Owned(k.to_owned()));
        return DecodeError::NonFinite { line, field };
    }
    DecodeError::InvalidJson { line, message }
}

/// Byte offset of serde_json's (line, column) position inside `text`.
fn byte_index(text: &str, line: usize, column: usize) -> Option<usize> {
    if line == 0 {
        return None;
    }
    let mut start = 0;
    for _ in 1..line {
        start += text[start..].find('\n')? + 1;
    }
    Some((start + column).min(text.len()))
}

/// Bytes that can belong to a number or a bare word like `NaN`.
fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'+' || c == b'.'
}

/// The bare word (`NaN`, `-Infinity`, `1e400`, ...) around byte `at`, as
/// `(start, end)`. Works on bytes: serde_json's position may fall inside a
/// multi-byte character, and word bytes are ASCII, so the bounds are always
/// character boundaries.
fn word_around(b: &[u8], at: usize) -> (usize, usize) {
    let at = at.min(b.len());
    let mut s = at;
    while s > 0 && is_word_byte(b[s - 1]) {
        s -= 1;
    }
    let mut e = at;
    while e < b.len() && is_word_byte(b[e]) {
        e += 1;
    }
    (s, e)
}

/// Whether the error position `at` lies in a `NaN`, `Infinity`, `-Infinity`
/// or `inf`-like word.
fn non_finite_literal(text: &str, at: usize) -> bool {
    let b = text.as_bytes();
    let (s, e) = word_around(b, at);
    let mut word = &b[s..e];
    while let [b'-' | b'+', rest @ ..] = word {
        word = rest;
    }
    [&b"nan"[..], b"infinity", b"inf"]
        .iter()
        .any(|w| word.eq_ignore_ascii_case(w))
}

/// The object key whose value is the word around `at` (`"key": <value>`),
/// if the text just before the value has that shape.
fn key_before_value(text: &str, at: usize) -> Option<&str> {
    let b = text.as_bytes();
    let (mut i, _) = word_around(b, at);
    while i > 0 && b[i - 1].is_ascii_whitespace() {
        i -= 1;
    }
    i = i.checked_sub(1).filter(|&j| b[j] == b':')?;
    while i > 0 && b[i - 1].is_ascii_whitespace() {
        i -= 1;
    }
    let close = i.checked_sub(1).filter(|&j| b[j] == b'"')?;
    let open = b[..close].iter().rposition(|&c| c == b'"')?;
    // Both bounds are ASCII quotes, hence character boundaries.
    std::str::from_utf8(&b[open + 1..close]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_units_are_guessed_by_magnitude() {
        let a = JsonEpochUnit::Auto;
        // 2023-11-14T22:13:20Z in four units.
        assert_eq!(epoch_int_to_ms(1_700_000_000, a), Ok(1_700_000_000_000));
        assert_eq!(epoch_int_to_ms(1_700_000_000_000, a), Ok(1_700_000_000_000));
        assert_eq!(
            epoch_int_to_ms(1_700_000_000_000_123, a),
            Ok(1_700_000_000_000)
        );
        assert_eq!(
            epoch_int_to_ms(1_700_000_000_123_456_789, a),
            Ok(1_700_000_000_123)
        );
        assert_eq!(
            epoch_float_to_ms(1_700_000_000.123, a),
            Ok(1_700_000_000_123)
        );
        // The band edges: just below 1e11 is seconds, 1e11 is milliseconds.
        assert_eq!(epoch_int_to_ms(99_999_999_999, a), Ok(99_999_999_999_000));
        assert_eq!(epoch_int_to_ms(100_000_000_000, a), Ok(100_000_000_000));
        // Forced units ignore the magnitude.
        assert_eq!(epoch_int_to_ms(5, JsonEpochUnit::Ms), Ok(5));
        assert_eq!(epoch_int_to_ms(5, JsonEpochUnit::S), Ok(5000));
        assert_eq!(epoch_int_to_ms(5_999, JsonEpochUnit::Us), Ok(5));
        assert_eq!(epoch_int_to_ms(5_999_999, JsonEpochUnit::Ns), Ok(5));
    }

    #[test]
    fn epoch_out_of_range_is_an_error() {
        let a = JsonEpochUnit::Auto;
        assert!(epoch_int_to_ms(-1, a).is_err());
        assert!(epoch_float_to_ms(-0.6, a).is_err());
        assert!(epoch_int_to_ms(i128::from(u64::MAX), JsonEpochUnit::S).is_err());
        assert!(epoch_float_to_ms(1e300, JsonEpochUnit::S).is_err());
        assert!(epoch_int_to_ms(253_402_300_800_000, JsonEpochUnit::Ms).is_err());
        assert_eq!(
            epoch_int_to_ms(253_402_300_799_999, JsonEpochUnit::Ms),
            Ok(253_402_300_799_999)
        );
    }

    #[test]
    fn key_before_value_finds_the_key() {
        let t = r#"{"series":"a","value": NaN}"#;
        let at = t.find("NaN").unwrap() + 1;
        assert_eq!(key_before_value(t, at), Some("value"));
        assert!(non_finite_literal(t, at));
        assert!(!non_finite_literal(r#"{"a": nope}"#, 7));
    }
}
