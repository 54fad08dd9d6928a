//! Reading a remote-write body in place.
//!
//! The decompressed protobuf is read directly: label names and values are
//! slices of the body, checked one series at a time, and only the samples
//! that will become events are copied out. So one bad series (a label that
//! is not UTF-8, a repeated label name, a limit passed) drops that series
//! and not the request, and no message tree is built: a body of tiny
//! labels would otherwise grow tens of times in memory while parsed.
//!
//! Two messages are read: remote-write 1.0's `prometheus.WriteRequest`
//! (labels inline) and 2.0's `io.prometheus.write.v2.Request` (labels as
//! pairs of references into the request's `symbols` table). Native
//! histograms are counted and skipped in both; exemplars, help texts and
//! units are skipped. Declared metric types are kept: 1.0's
//! `WriteRequest.metadata` by family, 2.0's `TimeSeries.metadata` per
//! series. Field numbers are those of Prometheus' `prompb/remote.proto`,
//! `prompb/types.proto` and `prompb/io/prometheus/write/v2/types.proto`.
//! A body that breaks the protobuf wire format is refused whole, as a
//! generated decoder would refuse it.

use std::ops::Range;

use super::STALE_NAN_BITS;

/// Which message the body holds (from its `Content-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `prometheus.WriteRequest` (remote-write 1.0).
    V1,
    /// `io.prometheus.write.v2.Request` (remote-write 2.0).
    V2,
}

/// What one request may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Series (`TimeSeries` messages) per request; the request is refused
    /// beyond.
    pub max_series: usize,
    /// Samples per request, counted as read; the request is refused
    /// beyond.
    pub max_samples: usize,
    /// Labels per series, `__name__` included (Prometheus' `label_limit`).
    pub label_limit: usize,
    /// Bytes per label name (`label_name_length_limit`).
    pub label_name_length_limit: usize,
    /// Bytes per label value, the metric name included
    /// (`label_value_length_limit`).
    pub label_value_length_limit: usize,
    /// Samples before this (Unix ms) are dropped as out of the window.
    pub min_ts: i64,
    /// Samples after this (Unix ms) are dropped as out of the window.
    pub max_ts: i64,
}

/// Why a whole request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The bytes break the protobuf wire format.
    #[error("the body is not a remote-write {what}: {detail}")]
    Protobuf {
        /// The message expected.
        what: &'static str,
        /// Where and how it broke.
        detail: String,
    },
    /// More series than `max_series_per_request`.
    #[error(
        "the request has more than {limit} series (max_series_per_request); lower the sender's max_samples_per_send"
    )]
    TooManySeries {
        /// The limit.
        limit: usize,
    },
    /// More samples than `max_samples_per_request`.
    #[error(
        "the request has more than {limit} samples (max_samples_per_request); lower the sender's max_samples_per_send"
    )]
    TooManySamples {
        /// The limit.
        limit: usize,
    },
}

/// Why one series was dropped (its samples counted under
/// [`SeriesError::reason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesError {
    /// No `__name__`, or an empty one.
    MissingName,
    /// An empty label name, a name or value that is not UTF-8, or (2.0) a
    /// reference outside the symbols table.
    InvalidLabel,
    /// A label name given twice.
    DuplicateLabel,
    /// More labels than `label_limit`.
    TooManyLabels,
    /// A label name longer than `label_name_length_limit`.
    NameTooLong,
    /// A label value longer than `label_value_length_limit`.
    ValueTooLong,
}

impl SeriesError {
    /// Every error, in [`SeriesError::index`] order.
    pub const ALL: [SeriesError; 6] = [
        Self::MissingName,
        Self::InvalidLabel,
        Self::DuplicateLabel,
        Self::TooManyLabels,
        Self::NameTooLong,
        Self::ValueTooLong,
    ];

    /// The `reason` label of `anomalyd_events_failed_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::MissingName => "missing_name",
            Self::InvalidLabel => "invalid_label",
            Self::DuplicateLabel => "duplicate_label",
            Self::TooManyLabels => "too_many_labels",
            Self::NameTooLong => "label_name_too_long",
            Self::ValueTooLong => "label_value_too_long",
        }
    }

    /// A configured limit was passed: the request is answered 400 (the
    /// other series are still taken), as Prometheus-compatible stores
    /// answer a series over their limits. The other errors are dropped
    /// quietly (204), as Prometheus' own receiver does.
    pub fn is_limit(self) -> bool {
        matches!(
            self,
            Self::TooManyLabels | Self::NameTooLong | Self::ValueTooLong
        )
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Samples of one request that did not become events, by cause.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Stale markers (skipped: they end a series, they are not values).
    pub stale: u64,
    /// NaN (other than the stale marker) or ±Inf.
    pub non_finite: u64,
    /// Samples of `_created` series (see [`crate::counter`]; tallied by
    /// the receiver after parsing).
    pub created: u64,
    /// Samples of histogram buckets, with `counters.skip_buckets` on
    /// (likewise).
    pub bucket: u64,
    /// Timestamps outside 1970-01-01 ..= 9999-12-31.
    pub bad_timestamp: u64,
    /// Timestamps outside the window around now
    /// (`max_sample_age_secs`, `max_sample_future_secs`).
    pub out_of_window: u64,
    /// Native histogram samples (skipped: anomalyd learns floats).
    pub histograms: u64,
    /// Learnable samples of dropped series, by [`SeriesError`].
    pub dropped: [u64; 6],
}

impl Tally {
    /// Samples of series dropped for `e`.
    pub fn dropped(&self, e: SeriesError) -> u64 {
        self.dropped[e.index()]
    }

    /// Samples that could not be learned (a failure:
    /// `anomalyd_events_failed_total`).
    pub fn failed(&self) -> u64 {
        self.bad_timestamp + self.out_of_window + self.dropped.iter().sum::<u64>()
    }

    /// Samples that are data but not learned: non-finite values and the
    /// series the counter rules skip (`anomalyd_samples_skipped_total`).
    pub fn skipped(&self) -> u64 {
        self.non_finite + self.created + self.bucket
    }
}

/// One series that passed, as ranges into [`Parsed`]'s vectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedSeries<'a> {
    /// The metric name.
    pub name: &'a str,
    /// Its labels in [`Parsed::labels`]: sorted, unique, non-empty values,
    /// `__name__` excluded.
    pub labels: Range<usize>,
    /// Its learnable samples in [`Parsed::samples`], in body order.
    pub samples: Range<usize>,
    /// The type its 2.0 metadata declares (`MetricType`: 0 unspecified,
    /// 1 counter, ...); 0 in 1.0, whose types come by family
    /// ([`Parsed::metadata`]).
    pub metric_type: i32,
}

/// A decoded body: the series that passed and their samples.
#[derive(Debug, Default)]
pub struct Parsed<'a> {
    /// Series with at least one learnable sample.
    pub series: Vec<ParsedSeries<'a>>,
    /// Labels of those series.
    pub labels: Vec<(&'a str, &'a str)>,
    /// `(timestamp ms, value)` of those series.
    pub samples: Vec<(i64, f64)>,
    /// 1.0's declared types: `(metric family, MetricType)`, with
    /// `MetricType` 0 unknown, 1 counter, 2 gauge, 3 histogram, 4 gauge
    /// histogram, 5 summary, 6 info, 7 state set.
    pub metadata: Vec<(&'a str, i32)>,
    /// What was skipped.
    pub tally: Tally,
    /// The first series dropped for a limit, described for the 400 answer.
    pub refused: Option<String>,
}

/// Reads `raw` (decompressed) as `version` into `out`.
pub fn parse<'a>(
    raw: &'a [u8],
    version: Version,
    limits: &Limits,
    out: &mut Parsed<'a>,
) -> Result<(), RequestError> {
    let what = match version {
        Version::V1 => "1.0 WriteRequest",
        Version::V2 => "2.0 Request",
    };
    let mut p = Parser {
        limits,
        out,
        series: 0,
        samples: 0,
        raw_labels: Vec::new(),
        refs: Vec::new(),
        symbols: Vec::new(),
        metric_type: 0,
    };
    let r = match version {
        Version::V1 => p.request_v1(raw),
        Version::V2 => p.request_v2(raw),
    };
    r.map_err(|e| match e {
        Stop::Wire(detail) => RequestError::Protobuf { what, detail },
        Stop::Request(e) => e,
    })
}

/// Why parsing stopped.
enum Stop {
    /// A wire-format error, described.
    Wire(String),
    /// A request limit.
    Request(RequestError),
}

impl From<String> for Stop {
    fn from(s: String) -> Self {
        Self::Wire(s)
    }
}

struct Parser<'a, 'l, 'o> {
    limits: &'l Limits,
    out: &'o mut Parsed<'a>,
    /// Series read so far.
    series: usize,
    /// Samples read so far (every kind).
    samples: usize,
    /// The current series' labels, raw.
    raw_labels: Vec<(&'a [u8], &'a [u8])>,
    /// The current series' label references (2.0).
    refs: Vec<u64>,
    /// The symbols table (2.0).
    symbols: Vec<&'a [u8]>,
    /// The current series' declared type (2.0).
    metric_type: i32,
}

impl<'a> Parser<'a, '_, '_> {
    fn request_v1(&mut self, raw: &'a [u8]) -> Result<(), Stop> {
        let mut r = Reader::new(raw);
        while let Some((field, wire)) = r.key()? {
            match (field, wire) {
                (1, LEN) => {
                    let ts = r.bytes()?;
                    self.series_v1(ts)
                        .map_err(|e| in_field(e, "WriteRequest.timeseries"))?;
                }
                (1, _) => return Err(wrong_wire("WriteRequest.timeseries", wire)),
                (3, LEN) => {
                    let (family, t) = metadata_v1(r.bytes()?)
                        .map_err(|e| in_field(e.into(), "WriteRequest.metadata"))?;
                    // A family that is not UTF-8 names no series.
                    if let Ok(family) = std::str::from_utf8(family)
                        && t != 0
                    {
                        self.out.metadata.push((family, t));
                    }
                }
                (3, _) => return Err(wrong_wire("WriteRequest.metadata", wire)),
                _ => r.skip(wire)?,
            }
        }
        Ok(())
    }

    fn request_v2(&mut self, raw: &'a [u8]) -> Result<(), Stop> {
        // The symbols first, wherever they are in the body.
        let mut r = Reader::new(raw);
        while let Some((field, wire)) = r.key()? {
            match (field, wire) {
                (4, LEN) => self.symbols.push(r.bytes()?),
                (4, _) => return Err(wrong_wire("Request.symbols", wire)),
                _ => r.skip(wire)?,
            }
        }
        let mut r = Reader::new(raw);
        while let Some((field, wire)) = r.key()? {
            match (field, wire) {
                (5, LEN) => {
                    let ts = r.bytes()?;
                    self.series_v2(ts)
                        .map_err(|e| in_field(e, "Request.timeseries"))?;
                }
                (5, _) => return Err(wrong_wire("Request.timeseries", wire)),
                _ => r.skip(wire)?,
            }
        }
        Ok(())
    }

    /// Counts a series against the limit.
    fn next_series(&mut self) -> Result<(), Stop> {
        self.series += 1;
        if self.series > self.limits.max_series {
            return Err(Stop::Request(RequestError::TooManySeries {
                limit: self.limits.max_series,
            }));
        }
        Ok(())
    }

    fn series_v1(&mut self, buf: &'a [u8]) -> Result<(), Stop> {
        self.next_series()?;
        self.raw_labels.clear();
        let first = self.out.samples.len();
        // Labels beyond the limit are not kept: a series of millions of
        // empty labels costs no memory.
        let mut overflow = false;
        let mut r = Reader::new(buf);
        while let Some((field, wire)) = r.key()? {
            match (field, wire) {
                (1, LEN) => {
                    let label = label_v1(r.bytes()?).map_err(|e| in_field(e.into(), "labels"))?;
                    if self.raw_labels.len() < self.limits.label_limit {
                        self.raw_labels.push(label);
                    } else {
                        overflow = true;
                    }
                }
                (2, LEN) => self.sample(r.bytes()?)?,
                (4, LEN) => {
                    r.bytes()?;
                    self.histogram()?;
                }
                (1 | 2 | 4, _) => return Err(wrong_wire("TimeSeries field", wire)),
                _ => r.skip(wire)?,
            }
        }
        if overflow {
            self.too_many_labels(first);
            return Ok(());
        }
        let labels = std::mem::take(&mut self.raw_labels);
        self.finish(&labels, first);
        self.raw_labels = labels;
        Ok(())
    }

    /// Drops the current series for passing `label_limit` (unless it has
    /// nothing to learn, like [`Parser::finish`]).
    fn too_many_labels(&mut self, first: usize) {
        if self.out.samples.len() == first {
            return;
        }
        let name = self
            .raw_labels
            .iter()
            .find(|(k, _)| *k == b"__name__")
            .and_then(|(_, v)| std::str::from_utf8(v).ok());
        self.drop_series(SeriesError::TooManyLabels, first, name);
    }

    fn series_v2(&mut self, buf: &'a [u8]) -> Result<(), Stop> {
        self.next_series()?;
        self.refs.clear();
        self.metric_type = 0;
        let first = self.out.samples.len();
        let most = self.limits.label_limit.saturating_mul(2);
        let mut overflow = false;
        let mut r = Reader::new(buf);
        while let Some((field, wire)) = r.key()? {
            match (field, wire) {
                // Packed, as encoders write it, or one by one.
                (1, LEN) => {
                    let mut packed = Reader::new(r.bytes()?);
                    while !packed.is_empty() {
                        let v = packed.varint()?;
                        if self.refs.len() < most {
                            self.refs.push(v);
                        } else {
                            overflow = true;
                        }
                    }
                }
                (1, VARINT) => {
                    let v = r.varint()?;
                    if self.refs.len() < most {
                        self.refs.push(v);
                    } else {
                        overflow = true;
                    }
                }
                (2, LEN) => self.sample(r.bytes()?)?,
                (3, LEN) => {
                    r.bytes()?;
                    self.histogram()?;
                }
                (5, LEN) => {
                    self.metric_type =
                        metadata_v2(r.bytes()?).map_err(|e| in_field(e.into(), "metadata"))?;
                }
                (1..=3 | 5, _) => return Err(wrong_wire("TimeSeries field", wire)),
                _ => r.skip(wire)?,
            }
        }
        self.raw_labels.clear();
        let mut bad_ref = self.refs.len() % 2 == 1;
        for pair in self.refs.chunks_exact(2) {
            let symbol = |i: u64| usize::try_from(i).ok().and_then(|i| self.symbols.get(i));
            match (symbol(pair[0]), symbol(pair[1])) {
                (Some(k), Some(v)) => self.raw_labels.push((k, v)),
                _ => bad_ref = true,
            }
        }
        if overflow {
            self.too_many_labels(first);
            return Ok(());
        }
        if bad_ref {
            self.drop_series(SeriesError::InvalidLabel, first, None);
            return Ok(());
        }
        let labels = std::mem::take(&mut self.raw_labels);
        self.finish(&labels, first);
        self.raw_labels = labels;
        Ok(())
    }

    /// One sample: counted against the limit, then kept or tallied.
    fn sample(&mut self, buf: &[u8]) -> Result<(), Stop> {
        self.samples += 1;
        if self.samples > self.limits.max_samples {
            return Err(Stop::Request(RequestError::TooManySamples {
                limit: self.limits.max_samples,
            }));
        }
        let (ts, value) = sample(buf).map_err(|e| in_field(e.into(), "samples"))?;
        let t = &mut self.out.tally;
        if value.to_bits() == STALE_NAN_BITS {
            t.stale += 1;
        } else if !value.is_finite() {
            t.non_finite += 1;
        } else if !(0..=crate::decode::MAX_TS_MS).contains(&ts) {
            t.bad_timestamp += 1;
        } else if !(self.limits.min_ts..=self.limits.max_ts).contains(&ts) {
            t.out_of_window += 1;
        } else {
            self.out.samples.push((ts, value));
        }
        Ok(())
    }

    /// A native histogram sample: counted against the limit, skipped.
    fn histogram(&mut self) -> Result<(), Stop> {
        self.samples += 1;
        if self.samples > self.limits.max_samples {
            return Err(Stop::Request(RequestError::TooManySamples {
                limit: self.limits.max_samples,
            }));
        }
        self.out.tally.histograms += 1;
        Ok(())
    }

    /// Checks the series' labels; keeps the series (samples from `first`
    /// on) or drops it.
    fn finish(&mut self, raw: &[(&'a [u8], &'a [u8])], first: usize) {
        if self.out.samples.len() == first {
            // Nothing to learn: no key, no checks needed.
            return;
        }
        let start = self.out.labels.len();
        match self.labels(raw) {
            Ok(name) => {
                let end = self.out.labels.len();
                let samples = first..self.out.samples.len();
                self.out.series.push(ParsedSeries {
                    name,
                    labels: start..end,
                    samples,
                    metric_type: self.metric_type,
                });
            }
            Err((e, name)) => {
                self.out.labels.truncate(start);
                self.drop_series(e, first, name);
            }
        }
    }

    fn drop_series(&mut self, e: SeriesError, first: usize, name: Option<&str>) {
        let n = self.out.samples.len() - first;
        self.out.samples.truncate(first);
        self.out.tally.dropped[e.index()] += n as u64;
        if e.is_limit() && self.out.refused.is_none() {
            let l = self.limits;
            let (what, limit) = match e {
                SeriesError::TooManyLabels => ("labels (label_limit)", l.label_limit),
                SeriesError::NameTooLong => (
                    "bytes in a label name (label_name_length_limit)",
                    l.label_name_length_limit,
                ),
                _ => (
                    "bytes in a label value (label_value_length_limit)",
                    l.label_value_length_limit,
                ),
            };
            // A name can be huge: the first 64 characters say enough.
            let name: String = name.unwrap_or("?").chars().take(64).collect();
            self.out.refused = Some(format!(
                "series {name:?} has more than {limit} {what}; it was dropped, the other \
                 series of the request were taken"
            ));
        }
    }

    /// Validates `raw` into `out.labels` (sorted, unique, empty values
    /// dropped, `__name__` aside); returns the metric name.
    fn labels(
        &mut self,
        raw: &[(&'a [u8], &'a [u8])],
    ) -> Result<&'a str, (SeriesError, Option<&'a str>)> {
        let l = self.limits;
        let start = self.out.labels.len();
        let mut name: Option<&'a str> = None;
        let mut first_error = None;
        for &(k, v) in raw {
            let (Ok(k), Ok(v)) = (std::str::from_utf8(k), std::str::from_utf8(v)) else {
                first_error.get_or_insert(SeriesError::InvalidLabel);
                continue;
            };
            if k == "__name__" && name.is_none() {
                name = Some(v);
            }
            let e = if k.is_empty() {
                Some(SeriesError::InvalidLabel)
            } else if k.len() > l.label_name_length_limit {
                Some(SeriesError::NameTooLong)
            } else if v.len() > l.label_value_length_limit {
                Some(SeriesError::ValueTooLong)
            } else {
                None
            };
            if let Some(e) = e {
                first_error.get_or_insert(e);
                continue;
            }
            // Kept with empty values for the duplicate check.
            self.out.labels.push((k, v));
        }
        if let Some(e) = first_error {
            return Err((e, name));
        }
        let mine = &mut self.out.labels[start..];
        // Prometheus senders sort labels; sorting again is a no-op scan.
        if !mine.windows(2).all(|w| w[0].0 < w[1].0) {
            mine.sort_unstable_by(|a, b| a.0.cmp(b.0));
            if mine.windows(2).any(|w| w[0].0 == w[1].0) {
                return Err((SeriesError::DuplicateLabel, name));
            }
        }
        // An empty value means "no such label" in Prometheus.
        let mut kept = start;
        let mut present = 0;
        for i in start..self.out.labels.len() {
            let (k, v) = self.out.labels[i];
            if v.is_empty() {
                continue;
            }
            present += 1;
            if k != "__name__" {
                self.out.labels[kept] = (k, v);
                kept += 1;
            }
        }
        self.out.labels.truncate(kept);
        if present > l.label_limit {
            return Err((SeriesError::TooManyLabels, name));
        }
        match name {
            Some(n) if !n.is_empty() => Ok(n),
            _ => Err((SeriesError::MissingName, name)),
        }
    }
}

/// `prometheus.Label`: `(name, value)`, raw.
fn label_v1(buf: &[u8]) -> Result<(&[u8], &[u8]), String> {
    let (mut name, mut value): (&[u8], &[u8]) = (b"", b"");
    let mut r = Reader::new(buf);
    while let Some((field, wire)) = r.key()? {
        match (field, wire) {
            (1, LEN) => name = r.bytes()?,
            (2, LEN) => value = r.bytes()?,
            (1 | 2, _) => return Err(format!("Label field {field} has wire type {wire}")),
            _ => r.skip(wire)?,
        }
    }
    Ok((name, value))
}

/// `prometheus.MetricMetadata`: `(metric_family_name, type)`, raw.
fn metadata_v1(buf: &[u8]) -> Result<(&[u8], i32), String> {
    let (mut family, mut t): (&[u8], i32) = (b"", 0);
    let mut r = Reader::new(buf);
    while let Some((field, wire)) = r.key()? {
        match (field, wire) {
            (1, VARINT) => t = enum_value(r.varint()?),
            (2, LEN) => family = r.bytes()?,
            (1 | 2, _) => return Err(format!("MetricMetadata field {field} has wire type {wire}")),
            _ => r.skip(wire)?,
        }
    }
    Ok((family, t))
}

/// 2.0's `Metadata`: its `type`.
fn metadata_v2(buf: &[u8]) -> Result<i32, String> {
    let mut t = 0;
    let mut r = Reader::new(buf);
    while let Some((field, wire)) = r.key()? {
        match (field, wire) {
            (1, VARINT) => t = enum_value(r.varint()?),
            (1, _) => return Err(format!("Metadata field 1 has wire type {wire}")),
            _ => r.skip(wire)?,
        }
    }
    Ok(t)
}

/// A protobuf enum's value (an int32 in a varint; one outside `i32` is
/// unknown, 0).
fn enum_value(v: u64) -> i32 {
    i32::try_from(v as i64).unwrap_or(0)
}

/// `Sample` (both versions): `(timestamp, value)`.
fn sample(buf: &[u8]) -> Result<(i64, f64), String> {
    let (mut ts, mut value) = (0i64, 0.0f64);
    let mut r = Reader::new(buf);
    while let Some((field, wire)) = r.key()? {
        match (field, wire) {
            (1, FIXED64) => value = f64::from_bits(r.fixed64()?),
            // int64: two's complement in a varint.
            (2, VARINT) => ts = r.varint()? as i64,
            (1 | 2, _) => return Err(format!("Sample field {field} has wire type {wire}")),
            _ => r.skip(wire)?,
        }
    }
    Ok((ts, value))
}

fn in_field(e: Stop, field: &str) -> Stop {
    match e {
        Stop::Wire(d) => Stop::Wire(format!("{field}: {d}")),
        other => other,
    }
}

fn wrong_wire(field: &str, wire: u8) -> Stop {
    Stop::Wire(format!("{field} has wire type {wire}"))
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// A cursor over protobuf wire format.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for (i, &b) in self.buf.iter().enumerate().take(10) {
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.buf = &self.buf[i + 1..];
                return Ok(v);
            }
        }
        Err(if self.buf.len() < 10 {
            "truncated varint".to_owned()
        } else {
            "varint longer than 10 bytes".to_owned()
        })
    }

    /// The next field number and wire type, `None` at the end.
    fn key(&mut self) -> Result<Option<(u64, u8)>, String> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let k = self.varint()?;
        let field = k >> 3;
        if field == 0 {
            return Err("field number 0".to_owned());
        }
        Ok(Some((field, (k & 7) as u8)))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.buf.len() {
            return Err(format!(
                "truncated: {n} bytes announced, {} left",
                self.buf.len()
            ));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.varint()?;
        self.take(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn fixed64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn skip(&mut self, wire: u8) -> Result<(), String> {
        match wire {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            LEN => self.bytes().map(drop),
            FIXED32 => self.take(4).map(drop),
            other => Err(format!(
                "wire type {other} (groups are not used by remote-write)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::proto::{self, Label, Sample, TimeSeries, WriteRequest};
    use super::*;
    use prost::Message;

    const LIMITS: Limits = Limits {
        max_series: 100,
        max_samples: 1000,
        label_limit: 4,
        label_name_length_limit: 16,
        label_value_length_limit: 32,
        min_ts: 0,
        max_ts: i64::MAX,
    };

    fn label(n: &str, v: &str) -> Label {
        Label {
            name: n.into(),
            value: v.into(),
        }
    }

    fn ts(labels: Vec<Label>, samples: &[(i64, f64)]) -> TimeSeries {
        TimeSeries {
            labels,
            samples: samples
                .iter()
                .map(|&(timestamp, value)| Sample { value, timestamp })
                .collect(),
            histograms: Vec::new(),
        }
    }

    /// A kept series: name, labels, samples.
    type Kept = (String, Vec<(String, String)>, Vec<(i64, f64)>);

    fn run(
        raw: &[u8],
        version: Version,
        limits: &Limits,
    ) -> (Result<(), RequestError>, Vec<Kept>, Tally, Option<String>) {
        let mut out = Parsed::default();
        let r = parse(raw, version, limits, &mut out);
        let series = out
            .series
            .iter()
            .map(|s| {
                (
                    s.name.to_owned(),
                    out.labels[s.labels.clone()]
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                    out.samples[s.samples.clone()].to_vec(),
                )
            })
            .collect();
        (r, series, out.tally, out.refused)
    }

    #[test]
    fn labels_are_checked_per_series_and_a_bad_one_drops_only_its_series() {
        let good = ts(
            vec![
                label("__name__", "up"),
                label("job", "a"),
                label("empty", ""),
            ],
            &[(1, 1.0), (2, 2.0)],
        );
        let dup = ts(
            vec![
                label("__name__", "up"),
                label("job", "a"),
                label("job", "b"),
            ],
            &[(1, 1.0)],
        );
        let long_value = ts(
            vec![label("__name__", "up"), label("v", &"x".repeat(33))],
            &[(1, 1.0), (2, 1.0)],
        );
        let many = ts(
            vec![
                label("__name__", "up"),
                label("a", "1"),
                label("b", "1"),
                label("c", "1"),
                label("d", "1"),
            ],
            &[(1, 1.0)],
        );
        let nameless = ts(vec![label("job", "x")], &[(1, 1.0)]);
        let req = WriteRequest {
            timeseries: vec![good, dup, long_value, many, nameless],
            ..WriteRequest::default()
        };
        let mut raw = req.encode_to_vec();
        // One more series whose label value is not UTF-8 (prost cannot
        // write that, so splice its bytes in by hand).
        let bad = ts(
            vec![label("__name__", "up"), label("bad", "ZZ")],
            &[(5, 5.0)],
        );
        let mut bad_raw = WriteRequest {
            timeseries: vec![bad],
            ..WriteRequest::default()
        }
        .encode_to_vec();
        let at = bad_raw.windows(2).position(|w| w == b"ZZ").unwrap();
        bad_raw[at] = 0xff;
        raw.extend_from_slice(&bad_raw);
        let (r, series, tally, refused) = run(&raw, Version::V1, &LIMITS);
        r.unwrap();
        assert_eq!(
            series,
            [(
                "up".to_owned(),
                vec![("job".to_owned(), "a".to_owned())],
                vec![(1, 1.0), (2, 2.0)]
            )]
        );
        assert_eq!(tally.dropped(SeriesError::DuplicateLabel), 1);
        assert_eq!(tally.dropped(SeriesError::ValueTooLong), 2);
        assert_eq!(tally.dropped(SeriesError::TooManyLabels), 1);
        assert_eq!(tally.dropped(SeriesError::MissingName), 1);
        assert_eq!(tally.dropped(SeriesError::InvalidLabel), 1);
        let refused = refused.unwrap();
        assert!(refused.contains("label_value_length_limit"), "{refused}");
    }

    #[test]
    fn request_limits_refuse_the_whole_request() {
        let req = WriteRequest {
            timeseries: (0..3)
                .map(|i| {
                    ts(
                        vec![label("__name__", &format!("m{i}"))],
                        &[(1, 1.0), (2, 2.0)],
                    )
                })
                .collect(),
            ..WriteRequest::default()
        };
        let raw = req.encode_to_vec();
        let few_series = Limits {
            max_series: 2,
            ..LIMITS
        };
        let (r, ..) = run(&raw, Version::V1, &few_series);
        assert_eq!(r, Err(RequestError::TooManySeries { limit: 2 }));
        let few_samples = Limits {
            max_samples: 5,
            ..LIMITS
        };
        let (r, ..) = run(&raw, Version::V1, &few_samples);
        assert_eq!(r, Err(RequestError::TooManySamples { limit: 5 }));
        let (r, series, ..) = run(&raw, Version::V1, &LIMITS);
        r.unwrap();
        assert_eq!(series.len(), 3);
    }

    #[test]
    fn samples_outside_the_window_and_histograms_are_tallied() {
        let mut series = ts(
            vec![label("__name__", "m")],
            &[(50, 1.0), (100, 2.0), (200, 3.0), (201, 4.0)],
        );
        series.histograms = vec![proto::Histogram::default(); 3];
        let raw = WriteRequest {
            timeseries: vec![series],
            ..WriteRequest::default()
        }
        .encode_to_vec();
        let window = Limits {
            min_ts: 100,
            max_ts: 200,
            ..LIMITS
        };
        let (r, series, tally, _) = run(&raw, Version::V1, &window);
        r.unwrap();
        assert_eq!(series[0].2, [(100, 2.0), (200, 3.0)]);
        assert_eq!(tally.out_of_window, 2);
        assert_eq!(tally.histograms, 3);
    }

    #[test]
    fn version_2_resolves_labels_through_the_symbols_table() {
        let req = proto::v2::Request {
            symbols: ["", "__name__", "up", "job", "node", "zone", "a"]
                .map(String::from)
                .to_vec(),
            timeseries: vec![
                proto::v2::TimeSeries {
                    labels_refs: vec![1, 2, 3, 4, 5, 6],
                    samples: vec![proto::v2::Sample {
                        value: 1.5,
                        timestamp: 7,
                        start_timestamp: 0,
                    }],
                    histograms: vec![proto::Histogram::default()],
                    metadata: None,
                },
                // A reference outside the table drops only this series.
                proto::v2::TimeSeries {
                    labels_refs: vec![1, 2, 3, 99],
                    samples: vec![proto::v2::Sample {
                        value: 1.0,
                        timestamp: 7,
                        start_timestamp: 0,
                    }],
                    histograms: Vec::new(),
                    metadata: None,
                },
            ],
        };
        let (r, series, tally, _) = run(&req.encode_to_vec(), Version::V2, &LIMITS);
        r.unwrap();
        assert_eq!(
            series,
            [(
                "up".to_owned(),
                vec![
                    ("job".to_owned(), "node".to_owned()),
                    ("zone".to_owned(), "a".to_owned())
                ],
                vec![(7, 1.5)]
            )]
        );
        assert_eq!(tally.histograms, 1);
        assert_eq!(tally.dropped(SeriesError::InvalidLabel), 1);
        // A 1.0 body read as 2.0 has no series (its field 1 is reserved in
        // 2.0): nothing is learned from a mislabelled body.
        let v1 = WriteRequest {
            timeseries: vec![ts(vec![label("__name__", "m")], &[(1, 1.0)])],
            ..WriteRequest::default()
        }
        .encode_to_vec();
        let (r, series, ..) = run(&v1, Version::V2, &LIMITS);
        r.unwrap();
        assert!(series.is_empty());
    }

    #[test]
    fn broken_wire_format_is_refused() {
        for raw in [
            &[0xff, 0xff][..],       // truncated varint
            &[0x0a, 0x05, 0x01][..], // length beyond the end
            &[0x0b][..],             // group start
            &[0x08, 0x01][..],       // timeseries as a varint
        ] {
            let (r, ..) = run(raw, Version::V1, &LIMITS);
            assert!(
                matches!(r, Err(RequestError::Protobuf { .. })),
                "{raw:?}: {r:?}"
            );
        }
    }
}
