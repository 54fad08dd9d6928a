//! The JSON written by prometheus-kafka-adapter (Telefónica).
//!
//! ```json
//! {"timestamp":"2026-01-01T00:00:00Z","value":"1.5","name":"up","labels":{"__name__":"up","job":"x"}}
//! ```
//!
//! - `name` (non-empty string; when absent, `labels.__name__` is used).
//! - `labels`: as in the native format; `__name__` is the name, never a
//!   label.
//! - `timestamp`: RFC 3339 (the adapter writes whole seconds), or a number
//!   read as in the native format; absent → the Kafka message timestamp.
//! - `value`: a string holding a float, as the adapter writes it (`"1.5"`,
//!   `"1e+06"`); a plain JSON number is accepted too. `"NaN"` (Prometheus
//!   staleness markers) and `"+Inf"` / `"-Inf"` are `non_finite` errors.
//!
//! This file owns the meaning of an adapter record; splitting and parsing are
//! in [`super::json`].

use super::DecodeError;
use super::json::{RawRecord, RecordCtx, Scalar};
use crate::event::{Event, KeyCache};

/// Turns one parsed record into an event.
pub(super) fn to_event(
    rec: RawRecord<'_>,
    ctx: &RecordCtx,
    keys: &mut KeyCache,
) -> Result<Event, DecodeError> {
    let (mut labels, name_label) = ctx.labels(rec.labels)?;
    let name = match (rec.name, name_label) {
        (None | Some(Scalar::Null), Some(n)) => ctx.name(Some(Scalar::Str(n.into())), "name")?,
        (name, _) => ctx.name(name, "name")?,
    };
    let value = match &rec.value {
        None | Some(Scalar::Null) => {
            return Err(DecodeError::MissingField {
                line: ctx.line,
                field: "value",
            });
        }
        Some(Scalar::Str(s)) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| DecodeError::WrongType {
                line: ctx.line,
                field: "value".into(),
                expected: "a number or a string holding one",
                found: "a non-numeric string",
            })?,
        Some(v) => v.as_f64().ok_or_else(|| DecodeError::WrongType {
            line: ctx.line,
            field: "value".into(),
            expected: "a number or a string holding one",
            found: v.type_name(),
        })?,
    };
    if !value.is_finite() {
        return Err(DecodeError::NonFinite {
            line: ctx.line,
            field: "value".into(),
        });
    }
    let ts_ms = ctx.timestamp(rec.timestamp.as_ref(), "timestamp")?;
    Ok(Event {
        series: keys.key(&name, &mut labels),
        ts_ms,
        value,
    })
}

#[cfg(test)]
mod tests {
    use crate::decode::{DecodeConfig, DecodeError, Decoder, Format};
    use crate::event::{Event, SeriesKey};

    fn adapter(p: &str) -> (Vec<Event>, Vec<DecodeError>) {
        let d = Decoder::new(&DecodeConfig {
            format: Format::PrometheusAdapter,
            ..DecodeConfig::default()
        });
        let (mut out, mut err) = (Vec::new(), Vec::new());
        d.decode(p.as_bytes(), Some(7), &mut out, &mut err);
        (out, err)
    }

    fn reason(p: &str) -> &'static str {
        let (out, err) = adapter(p);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(err.len(), 1, "{err:?}");
        err[0].reason()
    }

    #[test]
    fn adapter_record() {
        let (out, err) = adapter(
            r#"{"timestamp":"2026-01-01T00:00:00Z","value":"1.5","name":"up","labels":{"__name__":"up","job":"x","instance":"h:9100"}}"#,
        );
        assert!(err.is_empty(), "{err:?}");
        assert_eq!(
            out,
            [Event {
                series: SeriesKey::new("up", [("instance", "h:9100"), ("job", "x")]),
                ts_ms: 1_767_225_600_000,
                value: 1.5
            }]
        );
    }

    #[test]
    fn value_forms() {
        let v = |s: &str| {
            let (out, err) = adapter(&format!(r#"{{"name":"m","value":{s}}}"#));
            assert!(err.is_empty(), "{s}: {err:?}");
            out[0].value
        };
        assert_eq!(v(r#""9876543210""#), 9_876_543_210.0);
        assert_eq!(v(r#""1e+06""#), 1e6);
        assert_eq!(v(r#""-0.25""#), -0.25);
        assert_eq!(v("2.5"), 2.5);
        // No timestamp: the Kafka one.
        assert_eq!(adapter(r#"{"name":"m","value":"1"}"#).0[0].ts_ms, 7);
    }

    #[test]
    fn name_falls_back_to_the_name_label() {
        let (out, err) = adapter(r#"{"value":"1","labels":{"__name__":"up","job":"x"}}"#);
        assert!(err.is_empty(), "{err:?}");
        assert_eq!(out[0].series, SeriesKey::new("up", [("job", "x")]));
    }

    #[test]
    fn staleness_markers_and_infinities_are_non_finite() {
        for v in ["NaN", "+Inf", "-Inf", "Inf", "1e999"] {
            let p = format!(r#"{{"timestamp":"2026-01-01T00:00:00Z","value":"{v}","name":"up"}}"#);
            assert_eq!(reason(&p), "non_finite", "{v}");
        }
    }

    #[test]
    fn bad_records_map_to_reasons() {
        assert_eq!(reason(r#"{"name":"up"}"#), "missing_field");
        assert_eq!(reason(r#"{"value":"1"}"#), "missing_field");
        assert_eq!(reason(r#"{"name":"up","value":"abc"}"#), "wrong_type");
        assert_eq!(reason(r#"{"name":"up","value":[1]}"#), "wrong_type");
        assert_eq!(
            reason(r#"{"name":"up","value":"1","timestamp":"2026-13-01T00:00:00Z"}"#),
            "bad_timestamp"
        );
        assert_eq!(
            reason(r#"{"name":"up","value":"1","timestamp":"1969-12-31T23:59:59Z"}"#),
            "bad_timestamp"
        );
        assert_eq!(reason(r#"{"name":"","value":"1"}"#), "invalid_name");
        assert_eq!(
            reason(r#"{"name":"up","value":"1","labels":"job=x"}"#),
            "wrong_type"
        );
    }
}
