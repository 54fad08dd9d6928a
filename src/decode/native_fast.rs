//! A fast path for the common shape of a native JSON record.
//!
//! Producers write native records in one regular shape:
//! `{"series":"cpu","labels":{"host":"a"},"ts":1767225600000,"value":0.5}`
//! (keys in any order). This file reads exactly that shape with a small
//! hand-written scanner, without serde's generic machinery and without
//! moving a large intermediate record around. It owns *only* the happy
//! path: the moment a record is anything else (an escape in a string, a key
//! it does not know, a repeated key, `null`, a nested value, a number out of
//! range, a semantic error such as an empty name or a bad timestamp, or
//! malformed JSON), it gives up and [`super::json`] reads the record again
//! with serde. Errors therefore always come from the serde path, with its
//! exact messages and reasons, and an event that comes out of here is the
//! event the serde path would have produced (a property test and the
//! `decode_native` fuzz target compare the two).
//!
//! What it accepts:
//! - an object whose keys are `series`, `labels`, `ts`, `value`, each at
//!   most once, strings without backslash escapes or control characters,
//!   JSON whitespace (space, tab, CR, LF) between tokens;
//! - `series`: a non-empty string;
//! - `labels` (optional): an object of at most [`MAX_LABELS`] string values
//!   (empty values and `__name__` are dropped as the serde path drops them;
//!   an empty label name gives up);
//! - `ts` (optional, else the Kafka timestamp): a string, a non-negative
//!   integer that fits `u64`, or a number with a fraction or exponent;
//! - `value`: any JSON number whose value is finite. Numbers are parsed by
//!   the standard library's correctly rounded `str::parse::<f64>`, which
//!   gives the same `f64` as serde_json with `float_roundtrip` (both round
//!   correctly; integers become the nearest `f64`, as `u64 as f64` does).

use std::borrow::Cow;

use super::json::{RecordCtx, Scalar};
use super::{Fallback, JsonEpochUnit};
use crate::event::{Event, KeyCache};

/// Most labels the fast path takes (on the stack); more go to serde.
pub(super) const MAX_LABELS: usize = 16;

/// Reads `text` (one whole record, trimmed) if it has the common shape and
/// yields an event; `None` means "read it with serde instead".
pub(super) fn event(
    text: &str,
    line: usize,
    epoch_unit: JsonEpochUnit,
    fallback: Fallback,
    keys: &mut KeyCache,
) -> Option<Event> {
    let mut s = Scanner {
        text,
        b: text.as_bytes(),
        i: 0,
    };
    let mut series: Option<&str> = None;
    let mut ts: Option<Scalar<'_>> = None;
    let mut value: Option<f64> = None;
    let mut labels = Labels::default();
    let mut seen_labels = false;
    s.eat(b'{')?;
    s.ws();
    if s.peek()? != b'}' {
        loop {
            let key = s.string()?;
            s.ws();
            s.eat(b':')?;
            s.ws();
            match key {
                "series" if series.is_none() => series = Some(s.string()?),
                "value" if value.is_none() => {
                    let (num, _) = s.number()?;
                    let x = num.parse::<f64>().ok()?;
                    // Beyond f64 range serde_json reports an error: let it.
                    if !x.is_finite() {
                        return None;
                    }
                    value = Some(x);
                }
                "ts" if ts.is_none() => ts = Some(s.timestamp()?),
                "labels" if !seen_labels => {
                    seen_labels = true;
                    s.labels(&mut labels)?;
                }
                // Unknown or repeated keys: serde's rules apply.
                _ => return None,
            }
            s.ws();
            match s.next()? {
                b',' => s.ws(),
                b'}' => break,
                _ => return None,
            }
        }
    } else {
        s.i += 1;
    }
    // serde_json accepts only whitespace after the document; the record is
    // trimmed, so the object must end the text.
    if s.i != s.b.len() {
        return None;
    }
    let series = series.filter(|n| !n.is_empty())?;
    let value = value?;
    // The same conversion the serde path applies to the same scalar.
    let rt = RecordCtx {
        line,
        epoch_unit,
        fallback,
    };
    let ts_ms = rt.timestamp(ts.as_ref(), "ts").ok()?;
    let pairs = &labels.pairs[..labels.len];
    let key = if labels.sorted {
        keys.key_sorted(series, pairs)
    } else {
        let mut owned: Vec<(Cow<'_, str>, Cow<'_, str>)> = pairs
            .iter()
            .map(|&(k, v)| (Cow::Borrowed(k), Cow::Borrowed(v)))
            .collect();
        keys.key(series, &mut owned)
    };
    Some(Event {
        series: key,
        ts_ms,
        value,
    })
}

/// Label pairs of one record, in input order, on the stack.
struct Labels<'a> {
    pairs: [(&'a str, &'a str); MAX_LABELS],
    len: usize,
    /// Names strictly increasing so far: already what the key holds (sorted,
    /// unique), so the key cache can skip normalising them.
    sorted: bool,
}

impl Default for Labels<'_> {
    fn default() -> Self {
        Self {
            pairs: [("", ""); MAX_LABELS],
            len: 0,
            sorted: true,
        }
    }
}

/// A cursor over the record's bytes.
struct Scanner<'a> {
    /// The record (valid UTF-8: slices cut at ASCII bytes are `str`s).
    text: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    /// Skips JSON whitespace (not the wider ASCII set: serde_json rejects
    /// e.g. a form feed, so must this).
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    /// A string without escapes or control characters.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        loop {
            match self.next()? {
                b'"' => break,
                // An escape, or a control character serde_json rejects.
                b'\\' | 0x00..=0x1F => return None,
                _ => {}
            }
        }
        // Both ends are ASCII quotes, hence character boundaries.
        self.text.get(start..self.i - 1)
    }

    /// A JSON number: its text, and whether it is an integer (no fraction,
    /// no exponent).
    fn number(&mut self) -> Option<(&'a str, bool)> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.next()? {
            // A leading zero stands alone.
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.digit()?;
            self.digits();
            integer = false;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.digit()?;
            self.digits();
            integer = false;
        }
        Some((self.text.get(start..self.i)?, integer))
    }

    /// One required digit.
    fn digit(&mut self) -> Option<()> {
        self.next().filter(u8::is_ascii_digit).map(|_| ())
    }

    /// Any number of digits.
    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
    }

    /// A `ts` value as the serde path's [`Scalar`] would hold it.
    fn timestamp(&mut self) -> Option<Scalar<'a>> {
        if self.peek()? == b'"' {
            return self.string().map(|s| Scalar::Str(Cow::Borrowed(s)));
        }
        let (num, integer) = self.number()?;
        if integer {
            // serde_json: a non-negative integer within u64 is `UInt`;
            // negative ones and larger ones go to serde.
            if num.starts_with('-') {
                return None;
            }
            return num.parse::<u64>().ok().map(Scalar::UInt);
        }
        let x = num.parse::<f64>().ok()?;
        x.is_finite().then_some(Scalar::Float(x))
    }

    /// A `labels` object of plain strings.
    fn labels(&mut self, out: &mut Labels<'a>) -> Option<()> {
        self.eat(b'{')?;
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            let k = self.string()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            let v = self.string()?;
            // The serde path's rules: `__name__` is never a label, and an
            // empty value means no label; an empty name is an error there.
            if k != "__name__" && !v.is_empty() {
                if k.is_empty() || out.len == MAX_LABELS {
                    return None;
                }
                if out.len > 0 && out.pairs[out.len - 1].0 >= k {
                    out.sorted = false;
                }
                out.pairs[out.len] = (k, v);
                out.len += 1;
            }
            self.ws();
            match self.next()? {
                b',' => self.ws(),
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use crate::decode::{DecodeConfig, DecodeError, Decoder, Format, JsonEpochUnit};
    use crate::event::{Event, KeyCache};

    use super::*;

    /// Whether the fast path takes `text` (a single record).
    fn fast(text: &str) -> Option<Event> {
        event(
            text,
            1,
            JsonEpochUnit::Auto,
            Fallback::new(Some(42)),
            &mut KeyCache::default(),
        )
    }

    /// Decodes `payload` with and without the fast path.
    fn both(
        format: Format,
        unit: JsonEpochUnit,
        fallback: Option<i64>,
        payload: &[u8],
    ) -> [(Vec<Event>, Vec<DecodeError>); 2] {
        let cfg = DecodeConfig {
            format,
            json_timestamp_unit: unit,
            ..DecodeConfig::default()
        };
        [true, false].map(|on| {
            let d = Decoder::new(&cfg).with_fast_path(on);
            let (mut out, mut err) = (Vec::new(), Vec::new());
            d.decode(payload, fallback, &mut out, &mut err);
            (out, err)
        })
    }

    /// Events equal in every bit (`==` on f64 would equate 0.0 and -0.0)
    /// and errors equal.
    fn assert_same(
        payload: &[u8],
        a: &(Vec<Event>, Vec<DecodeError>),
        b: &(Vec<Event>, Vec<DecodeError>),
    ) {
        let text = String::from_utf8_lossy(payload);
        assert_eq!(a.1, b.1, "errors differ for {text}");
        assert_eq!(a.0.len(), b.0.len(), "event counts differ for {text}");
        for (x, y) in a.0.iter().zip(&b.0) {
            assert_eq!(x.series, y.series, "{text}");
            assert_eq!(x.series.fingerprint(), y.series.fingerprint(), "{text}");
            assert_eq!(x.ts_ms, y.ts_ms, "{text}");
            assert_eq!(x.value.to_bits(), y.value.to_bits(), "{text}");
        }
    }

    fn check(payload: &str) {
        for format in [Format::NativeJson, Format::Auto] {
            let [a, b] = both(format, JsonEpochUnit::Auto, Some(42), payload.as_bytes());
            assert_same(payload.as_bytes(), &a, &b);
        }
    }

    #[test]
    fn takes_the_common_shapes() {
        let e =
            fast(r#"{"series":"cpu","labels":{"host":"h1"},"ts":1767225600000,"value":208.0368}"#)
                .unwrap();
        assert_eq!(
            e.series,
            crate::event::SeriesKey::new("cpu", [("host", "h1")])
        );
        assert_eq!((e.ts_ms, e.value), (1_767_225_600_000, 208.0368));
        for ok in [
            r#"{"value":1,"ts":"2026-01-01T00:00:00Z","labels":{"b":"2","a":"1"},"series":"m"}"#,
            r#"{ "series" : "m" , "value" : -0 }"#,
            r#"{"series":"m","labels":{},"value":1e-3,"ts":1767225600.5}"#,
            r#"{"series":"m","labels":{"__name__":"x","e":"","k":"ü"},"value":18446744073709551616}"#,
            r#"{"series":"m","labels":{"k":"1","k":"2"},"value":1}"#,
        ] {
            assert!(fast(ok).is_some(), "{ok}");
            check(ok);
        }
    }

    #[test]
    fn leaves_everything_else_to_serde() {
        for other in [
            r#"{"series":"a\"b","value":1}"#,
            r#"{"series":"a","value":1,"extra":2}"#,
            r#"{"series":"a","value":1,"value":2}"#,
            r#"{"series":"a","value":null}"#,
            r#"{"series":"a","ts":null,"value":1}"#,
            r#"{"series":"a","labels":null,"value":1}"#,
            r#"{"series":"a","labels":{"":"x"},"value":1}"#,
            r#"{"series":"a","labels":{"k":1},"value":1}"#,
            r#"{"series":"","value":1}"#,
            r#"{"series":"a","value":1e400}"#,
            r#"{"series":"a","value":01}"#,
            r#"{"series":"a","value":1.}"#,
            r#"{"series":"a","value":"1"}"#,
            r#"{"series":"a","ts":-1,"value":1}"#,
            r#"{"series":"a","ts":"yesterday","value":1}"#,
            r#"{"series":"a","value":1}x"#,
            "{\"series\":\"a\",\"value\":1\u{c}}",
            r#"{"series":"a","value":1,}"#,
            r#"{"series":"a"}"#,
        ] {
            assert!(fast(other).is_none(), "{other}");
            check(other);
        }
    }

    /// Pieces of records: valid, near-valid and wrong.
    fn series_value() -> BoxedStrategy<String> {
        prop_oneof![
            4 => "[a-z_]{1,8}".prop_map(|s| format!("\"{s}\"")),
            1 => Just("\"\"".to_owned()),
            1 => Just(r#""a\"b""#.to_owned()),
            1 => Just(r#""\u0041x""#.to_owned()),
            1 => Just("\"ü\"".to_owned()),
            1 => Just("\"a\u{1}\"".to_owned()),
            1 => prop::sample::select(vec!["1", "null", "true", "[]", "{}", "[\"a\"]"])
                .prop_map(str::to_owned),
        ]
        .boxed()
    }

    fn number() -> BoxedStrategy<String> {
        prop_oneof![
            2 => any::<f64>().prop_filter("finite", |x| x.is_finite()).prop_map(|x| format!("{x}")),
            2 => any::<f64>().prop_filter("finite", |x| x.is_finite()).prop_map(|x| format!("{x:e}")),
            2 => any::<f64>().prop_filter("finite", |x| x.is_finite()).prop_map(|x| format!("{x:E}")),
            2 => any::<i64>().prop_map(|n| n.to_string()),
            2 => any::<u64>().prop_map(|n| n.to_string()),
            1 => "-?[0-9]{1,30}(\\.[0-9]{0,25})?([eE][+-]?[0-9]{1,4})?",
            1 => "[0-9]{1,3}(\\.[0-9]{1,3})?",
            1 => prop::sample::select(vec![
                "-0", "-0.0", "0", "01", "1.", ".5", "-", "1e", "1E+2", "1e400", "-1e400",
                "1e-400", "NaN", "Infinity", "-Infinity", "\"1.5\"", "null", "true", "+1",
                "18446744073709551616", "-9223372036854775809", "9007199254740993",
                "0e99999999999999999999", "1e99999999999999999999",
            ])
            .prop_map(str::to_owned),
        ]
        .boxed()
    }

    fn ts_value() -> BoxedStrategy<String> {
        prop_oneof![
            3 => (0u64..300_000_000_000_000_000).prop_map(|n| n.to_string()),
            2 => prop::sample::select(vec![
                "1767225600", "1767225600000", "1767225600250000", "1767225600250000000",
                "1767225600.5", "1.7672256e9", "-5", "1e300", "null", "true",
                "\"2026-01-01T00:00:00Z\"", "\"2026-01-01T01:00:00.250+01:00\"",
                "\"yesterday\"", "\"2026-01-01T00:00:00\\u005A\"", "99999999999999999999999",
            ])
            .prop_map(str::to_owned),
            1 => number(),
        ]
        .boxed()
    }

    fn labels_value() -> BoxedStrategy<String> {
        let name = prop_oneof![
            6 => prop::sample::select(vec!["\"a\"", "\"b\"", "\"host\"", "\"dc\"", "\"ü\""]),
            1 => prop::sample::select(vec!["\"__name__\"", "\"\"", "\"h\\u0041\""]),
        ];
        let value = prop_oneof![
            6 => prop::sample::select(vec!["\"x\"", "\"y\"", "\"ü\"", "\"h00001\""]),
            1 => prop::sample::select(vec!["\"\"", "\"a\\nb\"", "null", "1", "{}", "[]"]),
        ];
        prop_oneof![
            8 => prop::collection::vec((name, value, ws()), 0..5).prop_map(|pairs| {
                let inner: Vec<String> =
                    pairs.iter().map(|(k, v, w)| format!("{w}{k}{w}:{w}{v}{w}")).collect();
                format!("{{{}}}", inner.join(","))
            }),
            1 => prop::sample::select(vec!["null", "[\"x\"]", "\"s\"", "1", "{\"a\":\"x\",}"])
                .prop_map(str::to_owned),
        ]
        .boxed()
    }

    fn ws() -> BoxedStrategy<&'static str> {
        prop_oneof![
            40 => Just(""),
            10 => Just(" "),
            3 => Just("\t"),
            3 => Just("\r"),
            1 => Just("\u{c}"),
        ]
        .boxed()
    }

    /// One `"key": value` member, as (key, value).
    fn field() -> BoxedStrategy<(&'static str, String)> {
        prop_oneof![
            3 => series_value().prop_map(|v| ("series", v)),
            3 => number().prop_map(|v| ("value", v)),
            3 => ts_value().prop_map(|v| ("ts", v)),
            3 => labels_value().prop_map(|v| ("labels", v)),
            1 => number().prop_map(|v| ("extra", v)),
            1 => series_value().prop_map(|v| ("name", v)),
            1 => ts_value().prop_map(|v| ("timestamp", v)),
            1 => Just(("ser\\u0069es", "\"m\"".to_owned())),
        ]
        .boxed()
    }

    /// The members of a record shaped like real input: `series` and
    /// `value`, often `ts` and `labels`, sometimes one more member, in
    /// random order.
    fn usual_fields() -> BoxedStrategy<Vec<(&'static str, String)>> {
        (
            series_value(),
            number(),
            prop::option::weighted(0.8, ts_value()),
            prop::option::weighted(0.8, labels_value()),
            prop::option::weighted(0.1, field()),
        )
            .prop_map(|(series, value, ts, labels, extra)| {
                let mut f = vec![("series", series), ("value", value)];
                f.extend(ts.map(|v| ("ts", v)));
                f.extend(labels.map(|v| ("labels", v)));
                f.extend(extra);
                f
            })
            .prop_shuffle()
            .boxed()
    }

    /// A record: usual members, or any members (some missing, repeated or
    /// unknown), then possibly damaged (truncated, or a byte changed).
    fn record() -> BoxedStrategy<String> {
        let fields = prop_oneof![
            3 => usual_fields(),
            1 => prop::collection::vec(field(), 0..6),
        ];
        let fields = fields.prop_flat_map(|f| {
            let n = f.len();
            (Just(f), prop::collection::vec(ws(), n))
        });
        let damage = prop_oneof![
            8 => Just(None),
            1 => (any::<prop::sample::Index>(), Just(None)).prop_map(|(i, b)| Some((i, b))),
            1 => (any::<prop::sample::Index>(), any::<u8>().prop_map(Some))
                .prop_map(|(i, b)| Some((i, b))),
        ];
        ((fields), damage)
            .prop_map(|((fields, ws), damage)| {
                let inner: Vec<String> = fields
                    .iter()
                    .zip(ws)
                    .map(|((k, v), w)| format!("{w}\"{k}\"{w}:{w}{v}{w}"))
                    .collect();
                let mut text = format!("{{{}}}", inner.join(","));
                match damage {
                    Some((i, None)) => text.truncate(text.floor_char_boundary(i.index(text.len()))),
                    Some((i, Some(b))) => {
                        let mut bytes = text.into_bytes();
                        let at = i.index(bytes.len());
                        bytes[at] = b;
                        text = String::from_utf8_lossy(&bytes).into_owned();
                    }
                    None => {}
                }
                text
            })
            .boxed()
    }

    /// The committed fuzz corpora (inputs that each reached new code in
    /// the decoders) decode alike with and without the fast path.
    #[test]
    fn fuzz_corpora_decode_alike() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fuzz");
        let mut files = 0;
        for dir in [
            "corpus/decode_native",
            "corpus/decode_auto",
            "seeds/decode_native",
            "seeds/decode_auto",
        ] {
            for entry in std::fs::read_dir(format!("{root}/{dir}")).unwrap() {
                let payload = std::fs::read(entry.unwrap().path()).unwrap();
                for format in [Format::NativeJson, Format::Auto] {
                    let [a, b] = both(format, JsonEpochUnit::Auto, Some(42), &payload);
                    assert_same(&payload, &a, &b);
                }
                files += 1;
            }
        }
        assert!(files > 1000, "{files} files");
    }

    /// The generator must feed the fast path often, or the property below
    /// would test little but the fallback.
    #[test]
    fn generated_records_often_take_the_fast_path() {
        use proptest::strategy::ValueTree;
        let mut runner = proptest::test_runner::TestRunner::new_with_rng(
            ProptestConfig::default(),
            proptest::test_runner::TestRng::deterministic_rng(
                proptest::test_runner::RngAlgorithm::ChaCha,
            ),
        );
        let strategy = record();
        let taken = (0..2000)
            .filter(|_| {
                let text = strategy.new_tree(&mut runner).unwrap().current();
                fast(&text).is_some()
            })
            .count();
        assert!(
            taken > 200,
            "only {taken} of 2000 records took the fast path"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 4096,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0xFA57_DEC0),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// The fast path plus its fallback gives exactly what serde alone
        /// gives: the same events (bit for bit) and the same errors, for
        /// whole NDJSON messages of valid, near-valid and broken records,
        /// under each epoch unit, with and without a Kafka timestamp.
        #[test]
        fn fast_path_equals_serde(
            records in prop::collection::vec(record(), 1..4),
            format in prop::sample::select(vec![Format::NativeJson, Format::Auto]),
            unit in prop::sample::select(vec![JsonEpochUnit::Auto, JsonEpochUnit::Ms, JsonEpochUnit::S, JsonEpochUnit::Ns]),
            fallback in prop::option::of(-1i64..2_000_000_000_000),
        ) {
            let payload = records.join("\n");
            let [a, b] = both(format, unit, fallback, payload.as_bytes());
            assert_same(payload.as_bytes(), &a, &b);
        }
    }
}
