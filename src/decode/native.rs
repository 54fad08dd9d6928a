//! anomalyd's native JSON format.
//!
//! One record per message, or one per line (NDJSON):
//!
//! ```json
//! {"series":"cpu_usage","labels":{"host":"a"},"ts":"2026-01-01T00:00:00Z","value":0.93}
//! ```
//!
//! - `series` (required, non-empty string): the metric name.
//! - `labels` (optional object of strings): empty-valued and `null` labels
//!   are dropped (Prometheus semantics); `__name__` is never a label.
//! - `ts` (optional): an RFC 3339 string, or a number of seconds /
//!   milliseconds / µs / ns since the epoch. With the default
//!   `json_timestamp_unit = "auto"` the unit follows the magnitude: below
//!   1e11 is seconds (fractions allowed), below 1e14 milliseconds, below 1e17
//!   microseconds, above that nanoseconds. Absent or `null`: the Kafka
//!   message timestamp.
//! - `value` (required number).
//! - Other keys are ignored; `null` always means "absent".
//!
//! This file owns the meaning of a native record; splitting and parsing are
//! in [`super::json`].

use super::DecodeError;
use super::json::{RawRecord, RecordCtx};
use crate::event::{Event, KeyCache};

/// Turns one parsed record into an event.
pub(super) fn to_event(
    rec: RawRecord<'_>,
    ctx: &RecordCtx,
    keys: &mut KeyCache,
) -> Result<Event, DecodeError> {
    let name = ctx.name(rec.series, "series")?;
    let value = match &rec.value {
        None | Some(super::json::Scalar::Null) => {
            return Err(DecodeError::MissingField {
                line: ctx.line,
                field: "value",
            });
        }
        Some(v) => v.as_f64().ok_or_else(|| DecodeError::WrongType {
            line: ctx.line,
            field: "value".into(),
            expected: "a number",
            found: v.type_name(),
        })?,
    };
    // JSON numbers are finite once parsed (overflow is a parse error), but
    // the promise "never a non-finite value" is checked here, not assumed.
    if !value.is_finite() {
        return Err(DecodeError::NonFinite {
            line: ctx.line,
            field: "value".into(),
        });
    }
    let ts_ms = ctx.timestamp(rec.ts.as_ref(), "ts")?;
    let (mut labels, _name_label) = ctx.labels(rec.labels)?;
    Ok(Event {
        series: keys.key(&name, &mut labels),
        ts_ms,
        value,
    })
}

#[cfg(test)]
mod tests {
    use crate::decode::{DecodeConfig, DecodeError, Decoder, Format, JsonEpochUnit};
    use crate::event::{Event, SeriesKey};

    fn decode_with(
        cfg: &DecodeConfig,
        p: impl AsRef<[u8]>,
        fb: Option<i64>,
    ) -> (Vec<Event>, Vec<DecodeError>) {
        let d = Decoder::new(cfg);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        d.decode(p.as_ref(), fb, &mut out, &mut err);
        (out, err)
    }

    fn native(p: impl AsRef<[u8]>) -> (Vec<Event>, Vec<DecodeError>) {
        let cfg = DecodeConfig {
            format: Format::NativeJson,
            ..DecodeConfig::default()
        };
        decode_with(&cfg, p, Some(42))
    }

    fn one(p: impl AsRef<[u8]>) -> Event {
        let (out, err) = native(p);
        assert!(err.is_empty(), "{err:?}");
        assert_eq!(out.len(), 1);
        out.into_iter().next().unwrap()
    }

    fn reason(p: impl AsRef<[u8]>) -> &'static str {
        let (out, err) = native(p);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(err.len(), 1, "{err:?}");
        err[0].reason()
    }

    #[test]
    fn full_record() {
        let e = one(
            r#"{"series":"cpu_usage","labels":{"host":"a","dc":"x"},"ts":"2026-01-01T00:00:00Z","value":0.93}"#,
        );
        assert_eq!(
            e.series,
            SeriesKey::new("cpu_usage", [("dc", "x"), ("host", "a")])
        );
        assert_eq!(e.ts_ms, 1_767_225_600_000);
        assert_eq!(e.value, 0.93);
    }

    #[test]
    fn all_timestamp_forms() {
        let at = |ts: &str| one(format!(r#"{{"series":"m","ts":{ts},"value":1}}"#)).ts_ms;
        assert_eq!(at(r#""2026-01-01T00:00:00Z""#), 1_767_225_600_000);
        assert_eq!(at(r#""2026-01-01T00:00:00.250Z""#), 1_767_225_600_250);
        assert_eq!(at(r#""2026-01-01T01:00:00.250+01:00""#), 1_767_225_600_250);
        assert_eq!(at(r#""2026-01-01T00:00:00.123456789Z""#), 1_767_225_600_123);
        assert_eq!(at("1767225600"), 1_767_225_600_000);
        assert_eq!(at("1767225600.5"), 1_767_225_600_500);
        assert_eq!(at("1767225600250"), 1_767_225_600_250);
        assert_eq!(at("1767225600250000"), 1_767_225_600_250);
        assert_eq!(at("1767225600250000000"), 1_767_225_600_250);
        assert_eq!(at("1.7672256e9"), 1_767_225_600_000);
        // Absent or null: the Kafka timestamp (42 in these tests).
        assert_eq!(at("null"), 42);
        assert_eq!(one(r#"{"series":"m","value":1}"#).ts_ms, 42);
    }

    #[test]
    fn forced_epoch_unit() {
        let cfg = DecodeConfig {
            format: Format::NativeJson,
            json_timestamp_unit: JsonEpochUnit::Ms,
            ..DecodeConfig::default()
        };
        let (out, err) = decode_with(&cfg, r#"{"series":"m","ts":1000,"value":1}"#, None);
        assert!(err.is_empty());
        assert_eq!(out[0].ts_ms, 1000);
    }

    #[test]
    fn escapes_and_unicode_in_strings() {
        let e =
            one(r#"{"series":"a\"b\\c","labels":{"p\u00e4th":"C:\\tmp\n","z":"ü"},"value":-1e-3}"#);
        assert_eq!(e.series.name(), "a\"b\\c");
        assert_eq!(
            e.series.labels(),
            &[
                ("päth".to_owned(), "C:\\tmp\n".to_owned()),
                ("z".to_owned(), "ü".to_owned())
            ]
        );
        assert_eq!(e.value, -0.001);
    }

    #[test]
    fn labels_rules() {
        let e = one(
            r#"{"series":"m","labels":{"__name__":"other","empty":"","nul":null,"k":"v"},"value":1,"extra":[1,{"x":2}]}"#,
        );
        assert_eq!(e.series, SeriesKey::new("m", [("k", "v")]));
        assert_eq!(
            one(r#"{"series":"m","labels":null,"value":1}"#).series,
            SeriesKey::from_name("m")
        );
        assert_eq!(
            one(r#"{"series":"m","labels":{},"value":1}"#).series,
            SeriesKey::from_name("m")
        );
    }

    #[test]
    fn integers_and_large_numbers() {
        assert_eq!(
            one(r#"{"series":"m","value":18446744073709551615}"#).value,
            1.8446744073709552e19
        );
        assert_eq!(
            one(r#"{"series":"m","value":-9223372036854775808}"#).value,
            -9.223372036854776e18
        );
        assert_eq!(one(r#"{"series":"m","value":1e308}"#).value, 1e308);
    }

    #[test]
    fn pretty_printed_single_record() {
        let (out, err) = native("\n{\n  \"series\": \"m\",\n  \"value\": 2\n}\n");
        assert!(err.is_empty(), "{err:?}");
        assert_eq!(out.len(), 1);
        let (out, err) = native("{\n  \"series\": \"m\",\n  \"value\": \"x\"\n}");
        assert!(out.is_empty());
        assert_eq!(err[0].reason(), "wrong_type");
    }

    #[test]
    fn ndjson_with_a_bad_middle_line() {
        let p = concat!(
            r#"{"series":"a","value":1}"#,
            "\n",
            r#"{"series":"b","value":"oops"}"#,
            "\r\n\n",
            r#"{"series":"c","value":3}"#,
            "\n"
        );
        let (out, err) = native(p);
        assert_eq!(
            out.iter().map(|e| e.series.name()).collect::<Vec<_>>(),
            ["a", "c"]
        );
        assert_eq!(
            err,
            [DecodeError::WrongType {
                line: 2,
                field: "value".into(),
                expected: "a number",
                found: "a string"
            }]
        );
    }

    #[test]
    fn bad_records_map_to_reasons() {
        assert_eq!(reason("not json"), "invalid_json");
        assert_eq!(reason(r#"{"series":"a","value":1"#), "invalid_json");
        assert_eq!(reason(r#"{"series":"a","value":1}{}"#), "invalid_json");
        assert_eq!(reason(r#"[{"series":"a","value":1}]"#), "wrong_type");
        assert_eq!(reason(r#""a string""#), "wrong_type");
        assert_eq!(reason(r#"{"series":"a"}"#), "missing_field");
        assert_eq!(reason(r#"{"series":"a","value":null}"#), "missing_field");
        assert_eq!(reason(r#"{"value":1}"#), "missing_field");
        assert_eq!(reason(r#"{"series":"","value":1}"#), "invalid_name");
        assert_eq!(
            reason(r#"{"series":"a","labels":{"":"x"},"value":1}"#),
            "invalid_name"
        );
        assert_eq!(reason(r#"{"series":1,"value":1}"#), "wrong_type");
        assert_eq!(reason(r#"{"series":"a","value":"1.5"}"#), "wrong_type");
        assert_eq!(reason(r#"{"series":"a","value":true}"#), "wrong_type");
        assert_eq!(
            reason(r#"{"series":"a","labels":["x"],"value":1}"#),
            "wrong_type"
        );
        assert_eq!(
            reason(r#"{"series":"a","labels":{"k":1},"value":1}"#),
            "wrong_type"
        );
        assert_eq!(
            reason(r#"{"series":"a","ts":"yesterday","value":1}"#),
            "bad_timestamp"
        );
        assert_eq!(
            reason(r#"{"series":"a","ts":-5,"value":1}"#),
            "bad_timestamp"
        );
        assert_eq!(
            reason(r#"{"series":"a","ts":1e300,"value":1}"#),
            "bad_timestamp"
        );
        assert_eq!(
            reason(r#"{"series":"a","ts":true,"value":1}"#),
            "wrong_type"
        );
        assert_eq!(reason(r#"{"series":"a","value":1e400}"#), "non_finite");
        assert_eq!(reason(r#"{"series":"a","value":NaN}"#), "non_finite");
        assert_eq!(reason(r#"{"series":"a","value":-Infinity}"#), "non_finite");
        assert_eq!(reason(r#"{"series":"a","value": Infinity }"#), "non_finite");
        assert_eq!(
            reason(b"{\"series\":\"a\xff\",\"value\":1}"),
            "invalid_utf8"
        );
    }

    #[test]
    fn error_context_names_line_and_field() {
        let (_, err) = native(
            "{\"series\":\"a\",\"value\":1}\n{\"series\":\"a\",\"labels\":{\"host\":7},\"value\":1}",
        );
        assert_eq!(
            err,
            [DecodeError::WrongType {
                line: 2,
                field: "labels.host".into(),
                expected: "a string",
                found: "a number"
            }]
        );
        let (_, err) = native("\n\n{\"series\":\"a\",\"value\":NaN}");
        assert_eq!(
            err,
            [DecodeError::NonFinite {
                line: 3,
                field: "value".into()
            }]
        );
        assert_eq!(
            err[0].to_string(),
            "line 3: field `value` is not a finite number"
        );
    }

    #[test]
    fn missing_timestamp_without_fallback_is_an_error() {
        let cfg = DecodeConfig {
            format: Format::NativeJson,
            ..DecodeConfig::default()
        };
        let (out, err) = decode_with(&cfg, r#"{"series":"a","value":1}"#, None);
        assert!(out.is_empty());
        assert_eq!(err[0].reason(), "bad_timestamp");
        let (out, err) = decode_with(&cfg, r#"{"series":"a","value":1}"#, Some(-1));
        assert!(out.is_empty());
        assert_eq!(err[0].reason(), "bad_timestamp");
    }

    #[test]
    fn invalid_utf8_reports_the_right_line() {
        let (out, err) =
            native(b"{\"series\":\"a\",\"value\":1}\n{\"series\":\"\xc3\x28\",\"value\":1}");
        assert_eq!(out.len(), 1);
        assert_eq!(
            err,
            [DecodeError::InvalidUtf8 {
                line: 2,
                column: 12
            }]
        );
    }
}
