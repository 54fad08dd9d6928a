//! InfluxDB line protocol, as Telegraf's Kafka output writes it.
//!
//! ```text
//! cpu,host=a,cpu=cpu0 usage_user=0.5,usage_system=0.1 1465839830100400200
//! ```
//!
//! Every numeric field becomes its own series, named
//! `<measurement>_<field>` (as Telegraf's Prometheus output names them) with
//! the tags as labels: the line above yields `cpu_usage_user{cpu="cpu0",host="a"}`
//! and `cpu_usage_system{..}`.
//!
//! - Field values: floats (`0.5`, `-1.2e-3`, `1.`), integers (`42i`),
//!   unsigned integers (`42u`) are metrics. Integers beyond 2^53 lose
//!   precision as 64-bit floats. Strings (`"text"`) are not metrics and are
//!   skipped without an error. Booleans (`t`, `T`, `true`, `True`, `TRUE`
//!   and the `f` forms) are skipped too, or read as 1/0 with
//!   `influx_booleans = "as_number"`. `NaN`/`Inf` tokens and floats that
//!   overflow are `non_finite` errors for that field; the line's other
//!   fields still decode.
//! - Timestamp: optional integer in `influx_timestamp_precision` units
//!   (default ns); sub-millisecond digits are dropped. Absent → the Kafka
//!   message timestamp.
//! - Escapes, exactly as the reference decoder (influxdata/line-protocol)
//!   reads them: a backslash escapes `,` and space in the measurement; `,`,
//!   `=` and space in tag keys, tag values and field keys; `"` and `\` (and
//!   `\n`, `\r`, `\t`) inside string fields. Any other backslash is a
//!   literal backslash.
//! - Lines end with `\n` or `\r\n`; blank lines and `#` comments are skipped;
//!   fields, tags and timestamp are separated by one or more spaces.
//!
//! A syntax error rejects the whole line (one `invalid_line_protocol` error,
//! none of its fields emitted); the next line is read normally.
//!
//! The parser works on the message bytes in place: names and tags are
//! borrowed until the [`SeriesKey`] takes owned copies, and only escaped
//! tokens are copied early.

use std::borrow::Cow;

use super::{DecodeError, Fallback, InfluxBooleans, InfluxPrecision, check_ts_ms};
use crate::event::{Event, SeriesKey};

/// Settings of the line-protocol format, from [`super::DecodeConfig`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Settings {
    /// Unit of timestamps.
    pub(super) precision: InfluxPrecision,
    /// What boolean fields become.
    pub(super) booleans: InfluxBooleans,
}

/// Bytes a backslash escapes in a measurement.
const MEASUREMENT_ESCAPES: &[u8] = b", ";
/// Bytes a backslash escapes in tag keys, tag values and field keys.
const KEY_ESCAPES: &[u8] = b",= ";

/// Whether the first entry of `payload` has the shape
/// `measurement[,tags] field=...` (used by `format = "auto"`).
pub(super) fn looks_like_line_protocol(payload: &[u8]) -> bool {
    for line in payload.split(|&b| b == b'\n') {
        let l = line.trim_ascii();
        if l.is_empty() || l[0] == b'#' {
            continue;
        }
        let mut i = 0;
        while i < l.len() && l[i] != b' ' {
            i += if l[i] == b'\\' { 2 } else { 1 };
        }
        return i > 0 && i < l.len() && l[i..].contains(&b'=');
    }
    false
}

/// Decodes every line of a message.
pub(super) fn decode(
    payload: &[u8],
    settings: &Settings,
    fallback: Fallback,
    out: &mut Vec<Event>,
    errors: &mut Vec<DecodeError>,
) {
    let mut p = Parser {
        buf: payload,
        pos: 0,
        line: 1,
        line_start: 0,
    };
    loop {
        p.skip_blank_lines();
        if p.pos >= p.buf.len() {
            break;
        }
        let (out_mark, err_mark) = (out.len(), errors.len());
        if let Err(e) = p.entry(settings, fallback, out, errors) {
            // A line is all or nothing: drop what it emitted so far.
            out.truncate(out_mark);
            errors.truncate(err_mark);
            errors.push(e);
            p.skip_rest_of_line();
        }
    }
}

/// A field value, classified.
enum FieldValue {
    /// A metric value.
    Number(f64),
    /// NaN, ±Inf, or a float that overflows.
    NonFinite,
    /// A string, or a boolean that is skipped.
    Skip,
}

/// A cursor over the message.
struct Parser<'a> {
    /// The whole message.
    buf: &'a [u8],
    /// Next byte to read.
    pos: usize,
    /// Current line number (1-based).
    line: usize,
    /// Byte index where the current line starts, for columns.
    line_start: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn err(&self, problem: &'static str) -> DecodeError {
        DecodeError::InvalidLineProtocol {
            line: self.line,
            column: self.pos - self.line_start + 1,
            problem,
        }
    }

    /// Notes that a `\n` was consumed just before `pos`.
    fn newline(&mut self) {
        self.line += 1;
        self.line_start = self.pos;
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    /// Skips spaces, empty lines and comment lines.
    fn skip_blank_lines(&mut self) {
        loop {
            self.skip_spaces();
            match self.peek() {
                Some(b'\n') => {
                    self.pos += 1;
                    self.newline();
                }
                Some(b'\r') if self.buf.get(self.pos + 1) == Some(&b'\n') => {
                    self.pos += 2;
                    self.newline();
                }
                Some(b'#') => {
                    while self.peek().is_some_and(|b| b != b'\n') {
                        self.pos += 1;
                    }
                }
                _ => return,
            }
        }
    }

    /// Recovery after an error: continue on the next line.
    fn skip_rest_of_line(&mut self) {
        match self.buf[self.pos.min(self.buf.len())..]
            .iter()
            .position(|&b| b == b'\n')
        {
            Some(n) => {
                self.pos += n + 1;
                self.newline();
            }
            None => self.pos = self.buf.len(),
        }
    }

    /// Takes bytes up to the first unescaped stop byte. A backslash escapes
    /// the next byte only when it is in `escapes` (otherwise it is literal).
    /// Returns the raw bytes and whether they contain an escape.
    fn take(&mut self, stop: fn(u8) -> bool, escapes: &[u8]) -> (&'a [u8], bool) {
        let start = self.pos;
        let mut escaped = false;
        while let Some(b) = self.peek() {
            if b == b'\\'
                && self
                    .buf
                    .get(self.pos + 1)
                    .is_some_and(|n| escapes.contains(n))
            {
                escaped = true;
                self.pos += 2;
            } else if stop(b) {
                break;
            } else {
                self.pos += 1;
            }
        }
        (&self.buf[start..self.pos], escaped)
    }

    /// Checks that a token starting at byte `start` is UTF-8.
    fn utf8(&self, raw: &'a [u8], start: usize) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(raw).map_err(|e| {
            // A string field may span lines, so the bad byte can sit on an
            // earlier line than the cursor: locate it from scratch.
            let at = start + e.valid_up_to();
            let later_newlines = self.buf[at..self.pos]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            let line_start = self.buf[..at]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1);
            DecodeError::InvalidUtf8 {
                line: self.line - later_newlines,
                column: at - line_start + 1,
            }
        })
    }

    /// Takes an escaped token and returns it unescaped.
    fn token(&mut self, stop: fn(u8) -> bool, escapes: &[u8]) -> Result<Cow<'a, str>, DecodeError> {
        let start = self.pos;
        let (raw, escaped) = self.take(stop, escapes);
        let s = self.utf8(raw, start)?;
        Ok(if escaped {
            Cow::Owned(unescape(s, escapes))
        } else {
            Cow::Borrowed(s)
        })
    }

    /// Parses one entry (point) and its line end, emitting its events.
    fn entry(
        &mut self,
        settings: &Settings,
        fallback: Fallback,
        out: &mut Vec<Event>,
        errors: &mut Vec<DecodeError>,
    ) -> Result<(), DecodeError> {
        let out_mark = out.len();
        let entry_line = self.line;

        let measurement = self.token(is_measurement_stop, MEASUREMENT_ESCAPES)?;
        if measurement.is_empty() {
            return Err(self.err("expected a measurement name"));
        }
        let mut tags: Vec<(String, String)> = Vec::new();
        while self.peek() == Some(b',') {
            self.pos += 1;
            let key = self.token(is_key_stop, KEY_ESCAPES)?;
            if key.is_empty() {
                return Err(self.err("expected a tag key after ','"));
            }
            if self.peek() != Some(b'=') {
                return Err(self.err("expected '=' after a tag key"));
            }
            self.pos += 1;
            let value = self.token(is_key_stop, KEY_ESCAPES)?;
            if value.is_empty() {
                return Err(self.err("expected a tag value after '='"));
            }
            tags.push((key.into_owned(), value.into_owned()));
        }
        match self.peek() {
            Some(b' ') => self.skip_spaces(),
            None | Some(b'\n' | b'\r') => {
                return Err(self.err("expected a space and fields after the measurement"));
            }
            Some(_) => return Err(self.err("unexpected character in the measurement or tags")),
        }

        // The last numeric field is held back so it can take `tags` by move
        // instead of by clone.
        let mut pending: Option<(String, f64)> = None;
        loop {
            let key = self.token(is_key_stop, KEY_ESCAPES)?;
            if key.is_empty() {
                return Err(self.err("expected a field key"));
            }
            if self.peek() != Some(b'=') {
                return Err(self.err("expected '=' after a field key"));
            }
            self.pos += 1;
            match self.field_value(settings)? {
                FieldValue::Number(v) => {
                    let mut name = String::with_capacity(measurement.len() + 1 + key.len());
                    name.push_str(&measurement);
                    name.push('_');
                    name.push_str(&key);
                    if let Some((n, v)) = pending.replace((name, v)) {
                        out.push(Event {
                            series: SeriesKey::new(n, tags.clone()),
                            ts_ms: 0, // set below, once the timestamp is read
                            value: v,
                        });
                    }
                }
                FieldValue::NonFinite => errors.push(DecodeError::NonFinite {
                    line: entry_line,
                    field: Cow::Owned(key.into_owned()),
                }),
                FieldValue::Skip => {}
            }
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b' ') => {
                    self.skip_spaces();
                    break;
                }
                None | Some(b'\n' | b'\r') => break,
                Some(_) => return Err(self.err("unexpected character after a field value")),
            }
        }

        let ts_ms = match self.peek() {
            Some(b'-' | b'0'..=b'9') => self.timestamp(settings.precision)?,
            None | Some(b'\n' | b'\r') => fallback.get(entry_line, "timestamp")?,
            Some(_) => return Err(self.err("invalid timestamp")),
        };
        self.skip_spaces();
        match self.peek() {
            None => {}
            Some(b'\n') => {
                self.pos += 1;
                self.newline();
            }
            Some(b'\r') if matches!(self.buf.get(self.pos + 1), None | Some(b'\n')) => {
                self.pos = (self.pos + 2).min(self.buf.len());
                self.newline();
            }
            Some(_) => return Err(self.err("unexpected text after the timestamp")),
        }

        if let Some((n, v)) = pending {
            out.push(Event {
                series: SeriesKey::new(n, tags),
                ts_ms,
                value: v,
            });
        }
        for e in &mut out[out_mark..] {
            e.ts_ms = ts_ms;
        }
        Ok(())
    }

    /// Parses a field value (the bytes after `=`).
    fn field_value(&mut self, settings: &Settings) -> Result<FieldValue, DecodeError> {
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                let start = self.pos;
                loop {
                    match self.peek() {
                        None => return Err(self.err("unterminated string field value")),
                        Some(b'"') => break,
                        // Any escaped byte is skipped: that is enough to
                        // find the closing quote, and the text is not kept.
                        // An escaped newline is still a new line.
                        Some(b'\\') if self.buf.get(self.pos + 1) == Some(&b'\n') => {
                            self.pos += 2;
                            self.newline();
                        }
                        Some(b'\\') => self.pos = (self.pos + 2).min(self.buf.len()),
                        Some(b'\n') => {
                            self.pos += 1;
                            self.newline();
                        }
                        Some(_) => self.pos += 1,
                    }
                }
                self.utf8(&self.buf[start..self.pos], start)?;
                self.pos += 1;
                Ok(FieldValue::Skip)
            }
            Some(b't' | b'T' | b'f' | b'F') => {
                let (tok, _) = self.take(is_value_stop, b"");
                let v = match tok {
                    b"t" | b"T" | b"true" | b"True" | b"TRUE" => true,
                    b"f" | b"F" | b"false" | b"False" | b"FALSE" => false,
                    _ => return Err(self.err("invalid boolean field value")),
                };
                Ok(match settings.booleans {
                    InfluxBooleans::Skip => FieldValue::Skip,
                    InfluxBooleans::AsNumber => FieldValue::Number(if v { 1.0 } else { 0.0 }),
                })
            }
            Some(b'-' | b'0'..=b'9' | b'.' | b'+' | b'n' | b'N' | b'i' | b'I') => {
                let (tok, _) = self.take(is_value_stop, b"");
                number(tok).ok_or_else(|| self.err("invalid number in a field value"))
            }
            None | Some(b' ' | b',' | b'\n' | b'\r') => Err(self.err("expected a field value")),
            Some(_) => Err(self.err("field value has an unrecognized type")),
        }
    }

    /// Parses the timestamp and converts it to milliseconds.
    fn timestamp(&mut self, precision: InfluxPrecision) -> Result<i64, DecodeError> {
        let start = self.pos;
        while self.peek().is_some_and(|b| b == b'-' || b.is_ascii_digit()) {
            self.pos += 1;
        }
        if !matches!(self.peek(), None | Some(b' ' | b'\n' | b'\r')) {
            return Err(self.err("invalid timestamp"));
        }
        let bad = |problem| DecodeError::BadTimestamp {
            line: self.line,
            field: "timestamp",
            problem,
        };
        // The bytes are ASCII digits and '-', so this cannot fail; parse
        // errors below are syntax or range problems.
        let text = std::str::from_utf8(&self.buf[start..self.pos]).unwrap_or("");
        let n: i64 = text.parse().map_err(|e: std::num::ParseIntError| {
            use std::num::IntErrorKind::{NegOverflow, PosOverflow};
            match e.kind() {
                PosOverflow | NegOverflow => bad("out of range"),
                _ => DecodeError::InvalidLineProtocol {
                    line: self.line,
                    column: start - self.line_start + 1,
                    problem: "invalid timestamp",
                },
            }
        })?;
        let ms = match precision {
            InfluxPrecision::Ns => n.div_euclid(1_000_000),
            InfluxPrecision::Us => n.div_euclid(1_000),
            InfluxPrecision::Ms => n,
            InfluxPrecision::S => n.checked_mul(1000).ok_or_else(|| bad("out of range"))?,
        };
        check_ts_ms(ms).map_err(bad)
    }
}

/// Reads a numeric field token: `12i`, `12u`, or a float. `None` is a
/// syntax error.
fn number(tok: &[u8]) -> Option<FieldValue> {
    // The token is ASCII if it is a number at all.
    let text = std::str::from_utf8(tok).ok()?;
    if let Some(int) = text.strip_suffix('i') {
        return int
            .parse::<i64>()
            .ok()
            .map(|n| FieldValue::Number(n as f64));
    }
    if let Some(uint) = text.strip_suffix('u') {
        return uint
            .parse::<u64>()
            .ok()
            .map(|n| FieldValue::Number(n as f64));
    }
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    if ["nan", "inf", "infinity"]
        .iter()
        .any(|w| unsigned.eq_ignore_ascii_case(w))
    {
        return Some(FieldValue::NonFinite);
    }
    // Line protocol floats are digits with optional '.', exponent and a
    // leading '-': reject what Rust's parser would accept beyond that.
    if text.starts_with('+')
        || !unsigned
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_digit() || b == b'.')
    {
        return None;
    }
    let v: f64 = text.parse().ok()?;
    Some(if v.is_finite() {
        FieldValue::Number(v)
    } else {
        FieldValue::NonFinite
    })
}

/// Removes the backslash of every escape of a byte in `escapes`.
fn unescape(s: &str, escapes: &[u8]) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let (mut seg, mut i) = (0, 0);
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1).is_some_and(|n| escapes.contains(n)) {
            // Escapable bytes are ASCII, so `i` and `i + 1` are char
            // boundaries.
            out.push_str(&s[seg..i]);
            seg = i + 1;
            i += 2;
        } else {
            i += 1;
        }
    }
    out.push_str(&s[seg..]);
    out
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

fn is_measurement_stop(b: u8) -> bool {
    b == b',' || b == b' ' || is_control(b)
}

fn is_key_stop(b: u8) -> bool {
    b == b',' || b == b'=' || b == b' ' || is_control(b)
}

fn is_value_stop(b: u8) -> bool {
    b == b',' || b == b' ' || is_control(b)
}

#[cfg(test)]
mod tests {
    use crate::decode::{
        DecodeConfig, DecodeError, Decoder, Format, InfluxBooleans, InfluxPrecision,
    };
    use crate::event::{Event, SeriesKey};

    fn influx_with(cfg: DecodeConfig, p: &[u8], fb: Option<i64>) -> (Vec<Event>, Vec<DecodeError>) {
        let d = Decoder::new(&DecodeConfig {
            format: Format::InfluxLine,
            ..cfg
        });
        let (mut out, mut err) = (Vec::new(), Vec::new());
        d.decode(p, fb, &mut out, &mut err);
        (out, err)
    }

    fn influx(p: &str) -> (Vec<Event>, Vec<DecodeError>) {
        influx_with(DecodeConfig::default(), p.as_bytes(), Some(5))
    }

    fn ok(p: &str) -> Vec<Event> {
        let (out, err) = influx(p);
        assert!(err.is_empty(), "{p:?}: {err:?}");
        out
    }

    fn reason(p: &str) -> &'static str {
        let (out, err) = influx(p);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(err.len(), 1, "{err:?}");
        err[0].reason()
    }

    fn ev(name: &str, labels: &[(&str, &str)], ts_ms: i64, value: f64) -> Event {
        Event {
            series: SeriesKey::new(name, labels.iter().copied()),
            ts_ms,
            value,
        }
    }

    #[test]
    fn telegraf_line_with_several_fields() {
        assert_eq!(
            ok("cpu,host=a,cpu=cpu0 usage_user=0.5,usage_system=0.1 1465839830100400200\n"),
            [
                ev(
                    "cpu_usage_user",
                    &[("cpu", "cpu0"), ("host", "a")],
                    1_465_839_830_100,
                    0.5
                ),
                ev(
                    "cpu_usage_system",
                    &[("cpu", "cpu0"), ("host", "a")],
                    1_465_839_830_100,
                    0.1
                ),
            ]
        );
    }

    #[test]
    fn value_types() {
        let out = ok(
            r#"m a=1i,b=18446744073709551615u,c=-2.5e-3,d="text, with = signs",e=true,f=F,g=1.,h=.5,i=-0 10"#,
        );
        let got: Vec<(&str, f64)> = out.iter().map(|e| (e.series.name(), e.value)).collect();
        assert_eq!(
            got,
            [
                ("m_a", 1.0),
                ("m_b", 1.8446744073709552e19),
                ("m_c", -0.0025),
                ("m_g", 1.0),
                ("m_h", 0.5),
                ("m_i", -0.0)
            ]
        );
        assert!(out.iter().all(|e| e.ts_ms == 0), "10 ns is 0 ms");
    }

    #[test]
    fn booleans_as_numbers() {
        let cfg = DecodeConfig {
            influx_booleans: InfluxBooleans::AsNumber,
            ..DecodeConfig::default()
        };
        let (out, err) = influx_with(cfg, b"svc up=true,down=FALSE,x=\"s\"", Some(1));
        assert!(err.is_empty());
        let got: Vec<(&str, f64)> = out.iter().map(|e| (e.series.name(), e.value)).collect();
        assert_eq!(got, [("svc_up", 1.0), ("svc_down", 0.0)]);
    }

    #[test]
    fn only_string_fields_yield_nothing_and_no_error() {
        let (out, err) = influx(r#"log,host=a msg="hello \"world\"\\" 1"#);
        assert!(out.is_empty());
        assert!(err.is_empty());
    }

    #[test]
    fn escapes() {
        let out = ok(concat!(
            r"my\ meas\,ure=x,tag\ key=a\,b\=c\ d,path=C:\Windows field\=k=1 1000000",
            "\n"
        ));
        assert_eq!(
            out,
            [ev(
                "my meas,ure=x_field=k",
                &[("tag key", "a,b=c d"), ("path", r"C:\Windows")],
                1,
                1.0
            )]
        );
        // A backslash before a non-escapable byte stays; before an
        // escapable one it escapes it, even after another backslash.
        let out = ok(r"m,t=a\\b,u=b\\\,c f=1");
        assert_eq!(
            out[0].series.labels(),
            &[
                ("t".to_owned(), r"a\\b".to_owned()),
                ("u".to_owned(), r"b\\,c".to_owned())
            ]
        );
        // So a tag value cannot end in a backslash before another tag (which
        // is why Telegraf trims trailing backslashes from tag values).
        assert_eq!(reason(r"m,t=a\\,u=b f=1"), "invalid_line_protocol");
        // Unicode passes through.
        assert_eq!(
            ok("température,lieu=Zürich °C=21.5")[0].series.name(),
            "température_°C"
        );
    }

    #[test]
    fn string_fields_with_escapes_and_separators() {
        let out = ok(r#"m s="a \"quoted\" ,= string\\",v=2,t="x\ny" 3000000"#);
        assert_eq!(out, [ev("m_v", &[], 3, 2.0)]);
        // A raw newline inside a string is accepted (as the reference
        // decoder does) and counted as a line.
        let (out, err) = influx("m s=\"two\nlines\",v=1 1000000\nm v=x\n");
        assert_eq!(out, [ev("m_v", &[], 1, 1.0)]);
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].line(), Some(3));
    }

    #[test]
    fn whitespace_comments_crlf_and_missing_timestamp() {
        let out = ok("# a comment\r\n\n  m,h=a   v=1   2000000  \r\n\n# end\nm v=2\r\n");
        assert_eq!(
            out,
            [ev("m_v", &[("h", "a")], 2, 1.0), ev("m_v", &[], 5, 2.0)]
        );
    }

    #[test]
    fn precisions() {
        let at = |precision, ts: &str| {
            let cfg = DecodeConfig {
                influx_timestamp_precision: precision,
                ..DecodeConfig::default()
            };
            let (out, err) = influx_with(cfg, format!("m v=1 {ts}").as_bytes(), None);
            assert!(err.is_empty(), "{err:?}");
            out[0].ts_ms
        };
        assert_eq!(
            at(InfluxPrecision::Ns, "1767225600123456789"),
            1_767_225_600_123
        );
        assert_eq!(
            at(InfluxPrecision::Us, "1767225600123456"),
            1_767_225_600_123
        );
        assert_eq!(at(InfluxPrecision::Ms, "1767225600123"), 1_767_225_600_123);
        assert_eq!(at(InfluxPrecision::S, "1767225600"), 1_767_225_600_000);
    }

    #[test]
    fn several_lines_with_a_bad_middle_line() {
        let (out, err) = influx("m v=1 1000000\nm,host v=2 1000000\nm v=3 1000000\n");
        assert_eq!(out, [ev("m_v", &[], 1, 1.0), ev("m_v", &[], 1, 3.0)]);
        assert_eq!(
            err,
            [DecodeError::InvalidLineProtocol {
                line: 2,
                column: 7,
                problem: "expected '=' after a tag key"
            }]
        );
    }

    #[test]
    fn non_finite_field_is_one_error_and_the_rest_decodes() {
        let (out, err) = influx("m a=NaN,b=2,c=-inf,d=1e999 1000000");
        assert_eq!(out, [ev("m_b", &[], 1, 2.0)]);
        let fields: Vec<String> = err
            .iter()
            .map(|e| match e {
                DecodeError::NonFinite { field, .. } => field.to_string(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(fields, ["a", "c", "d"]);
    }

    #[test]
    fn syntax_error_after_good_fields_drops_the_whole_line() {
        let (out, err) = influx("m a=1,b=NaN,c=2 12x");
        assert!(out.is_empty());
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].reason(), "invalid_line_protocol");
    }

    #[test]
    fn bad_lines_map_to_reasons() {
        for bad in [
            "m",
            "m ",
            "m,",
            "m,t=a",
            "m,=a v=1",
            "m,t= v=1",
            "m, t=a v=1",
            "m v",
            "m v=",
            "m =1",
            "m v=1,",
            "m v=abc",
            "m v=1.5i",
            "m v=-1u",
            "m v=99999999999999999999i",
            "m v=+1",
            "m v=\"open",
            "m v=tru",
            "m v=1 1 2",
            "m v=1 12a",
            "m v=1 -",
            "m\tv=1",
            ",t=a v=1",
            " v=1",
        ] {
            assert_eq!(reason(bad), "invalid_line_protocol", "{bad:?}");
        }
        assert_eq!(reason("m v=1 -5000000"), "bad_timestamp");
        assert_eq!(reason("m v=1 99999999999999999999"), "bad_timestamp");
        assert_eq!(reason("m,t=\u{0}x v=1"), "invalid_line_protocol");
        let (_, err) = influx_with(DecodeConfig::default(), b"m,t=\xff v=1", None);
        assert_eq!(err, [DecodeError::InvalidUtf8 { line: 1, column: 5 }]);
        let (_, err) = influx_with(DecodeConfig::default(), b"m v=\"\xff\"", Some(1));
        assert_eq!(err[0].reason(), "invalid_utf8");
        // Found by cargo fuzz: invalid UTF-8 on a string field's first line,
        // with a raw newline later in the same string.
        let (_, err) = influx_with(DecodeConfig::default(), b"m s=\"a\xff\nb\" 1", Some(1));
        assert_eq!(err, [DecodeError::InvalidUtf8 { line: 1, column: 7 }]);
        let (_, err) = influx_with(
            DecodeConfig::default(),
            b"2 #=\" \x83\n \xff \"\xff\"\xff\xff\xff",
            Some(1),
        );
        assert_eq!(err[0].reason(), "invalid_utf8");
        // Also found by cargo fuzz: a backslash-escaped raw newline in a
        // string still counts as a line.
        let (_, err) = influx_with(DecodeConfig::default(), b"m s=\"\xff\\\nx\" 1", Some(1));
        assert_eq!(err, [DecodeError::InvalidUtf8 { line: 1, column: 6 }]);
        let (out, err) = influx("m s=\"a\\\nb\",v=1 1000000\nm v=x");
        assert_eq!(out.len(), 1);
        assert_eq!(err[0].line(), Some(3));
        let (_, err) = influx_with(DecodeConfig::default(), b"m v=1", None);
        assert_eq!(err[0].reason(), "bad_timestamp");
        let cfg = DecodeConfig {
            influx_timestamp_precision: InfluxPrecision::S,
            ..DecodeConfig::default()
        };
        let (_, err) = influx_with(cfg, b"m v=1 9223372036854775807", None);
        assert_eq!(err[0].reason(), "bad_timestamp");
    }

    #[test]
    fn shape_detection() {
        use super::looks_like_line_protocol as l;
        assert!(l(b"cpu,host=a v=1 1"));
        assert!(l(b"# c\n\nm v=1"));
        assert!(l(br"my\ m v=1"));
        assert!(!l(b"hello world"));
        assert!(!l(b"novalue"));
        assert!(!l(b""));
    }
}
