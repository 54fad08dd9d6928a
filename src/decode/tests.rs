//! Tests of what every format shares: size cap, empty messages, `auto`
//! detection, the reason set, config, and a property test over arbitrary
//! bytes. Per-format cases live beside each format.

use proptest::prelude::*;

use super::*;
use crate::config::Problems;

fn decode_as(format: Format, max: usize, p: &[u8]) -> (Vec<Event>, Vec<DecodeError>) {
    let d = Decoder::new(&DecodeConfig {
        format,
        max_message_bytes: max,
        ..DecodeConfig::default()
    });
    let (mut out, mut err) = (Vec::new(), Vec::new());
    d.decode(p, Some(1_000), &mut out, &mut err);
    (out, err)
}

fn auto(p: &[u8]) -> (Vec<Event>, Vec<DecodeError>) {
    decode_as(Format::Auto, DEFAULT_MAX_MESSAGE_BYTES, p)
}

const FORMATS: [Format; 4] = [
    Format::Auto,
    Format::NativeJson,
    Format::PrometheusAdapter,
    Format::InfluxLine,
];

/// Deterministic pseudo-random garbage (xorshift, fixed seed).
fn garbage(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn auto_detects_each_format() {
    let (out, err) = auto(br#"{"series":"cpu","value":1,"ts":1767225600}"#);
    assert!(err.is_empty(), "{err:?}");
    assert_eq!(out[0].series.name(), "cpu");
    let (out, err) = auto(br#"{"timestamp":"2026-01-01T00:00:00Z","value":"2","name":"up","labels":{"__name__":"up"}}"#);
    assert!(err.is_empty(), "{err:?}");
    assert_eq!((out[0].series.name(), out[0].value), ("up", 2.0));
    let (out, err) = auto(b"\n  cpu,host=a usage=3 1767225600000000000\n");
    assert!(err.is_empty(), "{err:?}");
    assert_eq!((out[0].series.name(), out[0].value), ("cpu_usage", 3.0));
}

#[test]
fn auto_decides_per_record_in_ndjson() {
    let (out, err) =
        auto(b"{\"series\":\"a\",\"value\":1}\n{\"name\":\"b\",\"value\":\"2\"}\n{\"value\":3}\n");
    assert_eq!(
        out.iter().map(|e| e.series.name()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(err.len(), 1);
    assert_eq!(err[0].reason(), "unknown_format");
    assert_eq!(err[0].line(), Some(3));
}

#[test]
fn auto_rejects_what_it_cannot_place() {
    for p in [
        &b"hello world"[..],
        b"12345",
        b"[{\"series\":\"a\",\"value\":1}]",
        b"<xml/>",
    ] {
        let (out, err) = auto(p);
        assert!(out.is_empty());
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].reason(), "unknown_format", "{p:?}");
    }
    // Binary (e.g. an Avro or Protobuf producer on the wrong topic).
    let (_, err) = auto(b"\x00\x01\xfe\xff binary");
    assert_eq!(err[0].reason(), "invalid_utf8");
}

#[test]
fn empty_messages() {
    for f in FORMATS {
        for p in [&b""[..], b"   ", b"\n\r\n\t"] {
            let (out, err) = decode_as(f, DEFAULT_MAX_MESSAGE_BYTES, p);
            assert!(out.is_empty());
            assert_eq!(err, [DecodeError::Empty], "{f:?} {p:?}");
        }
    }
}

#[test]
fn size_cap_applies_before_reading() {
    let cap = 1024 * 1024;
    for f in FORMATS {
        // One byte over the cap: rejected unread, one error.
        let (out, err) = decode_as(f, cap, &garbage(cap + 1, 7));
        assert!(out.is_empty());
        assert_eq!(
            err,
            [DecodeError::TooLarge {
                len: cap + 1,
                max: cap
            }]
        );
        // At the cap: read (and found bad for some other reason).
        let (out, err) = decode_as(f, cap, &garbage(cap, 7));
        assert!(out.is_empty(), "{f:?}");
        assert!(!err.is_empty());
        assert!(err.iter().all(|e| e.reason() != "too_large"), "{f:?}");
    }
    // A valid message exactly at the cap decodes.
    let p = br#"{"series":"a","value":1}"#;
    let (out, err) = decode_as(Format::NativeJson, p.len(), p);
    assert!(err.is_empty());
    assert_eq!(out.len(), 1);
}

#[test]
fn buffers_are_appended_not_cleared() {
    let d = Decoder::new(&DecodeConfig::default());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    d.decode(b"m v=1", Some(1), &mut out, &mut err);
    d.decode(b"", Some(1), &mut out, &mut err);
    d.decode(b"m v=2", Some(1), &mut out, &mut err);
    assert_eq!(out.len(), 2);
    assert_eq!(err.len(), 1);
}

#[test]
fn every_reason_is_listed_once() {
    let samples = [
        DecodeError::Empty,
        DecodeError::TooLarge { len: 2, max: 1 },
        DecodeError::InvalidUtf8 { line: 1, column: 1 },
        DecodeError::InvalidJson {
            line: 1,
            message: String::new(),
        },
        DecodeError::MissingField {
            line: 1,
            field: "value",
        },
        DecodeError::WrongType {
            line: 1,
            field: "value".into(),
            expected: "",
            found: "",
        },
        DecodeError::InvalidName {
            line: 1,
            field: "series".into(),
        },
        DecodeError::NonFinite {
            line: 1,
            field: "value".into(),
        },
        DecodeError::BadTimestamp {
            line: 1,
            field: "ts",
            problem: "",
        },
        DecodeError::InvalidLineProtocol {
            line: 1,
            column: 1,
            problem: "",
        },
        DecodeError::UnknownFormat {
            line: 1,
            problem: "",
        },
    ];
    let reasons: Vec<&str> = samples.iter().map(DecodeError::reason).collect();
    assert_eq!(reasons, REASONS);
}

#[test]
fn series_key_is_independent_of_format_and_label_order() {
    let a = auto(br#"{"series":"cpu_usage","labels":{"host":"a","dc":"x"},"value":1}"#).0;
    let b = auto(br#"{"name":"cpu_usage","labels":{"dc":"x","__name__":"cpu_usage","host":"a"},"value":"1"}"#).0;
    let c = auto(b"cpu,host=a,dc=x usage=1").0;
    assert_eq!(a[0].series, b[0].series);
    assert_eq!(a[0].series, c[0].series);
    assert_eq!(a[0].series.fingerprint(), c[0].series.fingerprint());
}

#[test]
fn config_defaults_and_validation() {
    let c: DecodeConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(c, DecodeConfig::default());
    assert_eq!(c.max_message_bytes, 1_048_576);
    let c: DecodeConfig = serde_json::from_str(
        r#"{"format":"influx_line","influx_timestamp_precision":"s","influx_booleans":"as_number","json_timestamp_unit":"ms"}"#,
    )
    .unwrap();
    assert_eq!(c.format, Format::InfluxLine);
    assert!(serde_json::from_str::<DecodeConfig>(r#"{"formats":"auto"}"#).is_err());
    assert!(serde_json::from_str::<DecodeConfig>(r#"{"format":"avro"}"#).is_err());

    let mut p = Problems::new();
    DecodeConfig::default().validate("decode", &mut p);
    assert!(p.is_empty());
    let bad = DecodeConfig {
        max_message_bytes: 0,
        ..DecodeConfig::default()
    };
    bad.validate("decode", &mut p);
    let keys: Vec<&str> = p.iter().map(|x| x.key.as_str()).collect();
    assert_eq!(keys, ["decode.max_message_bytes"]);
}

/// Payloads near the valid grammar find more paths than uniform bytes.
fn near_valid() -> impl Strategy<Value = Vec<u8>> {
    let pieces: Vec<&'static [u8]> = vec![
        b"{",
        b"}",
        b"\"series\":",
        b"\"name\":",
        b"\"value\":",
        b"\"ts\":",
        b"\"labels\":",
        b"\"timestamp\":",
        b"\"a\"",
        b",",
        b":",
        b"1",
        b"-1e400",
        b"NaN",
        b"\"NaN\"",
        b"\"+Inf\"",
        b"1767225600",
        b"\"2026-01-01T00:00:00Z\"",
        b"null",
        b"true",
        b"[",
        b"]",
        b"\n",
        b"\r\n",
        b"m",
        b",t=a",
        b" ",
        b"v=",
        b"1i",
        b"1u",
        b"\\",
        b"\\ ",
        b"\"",
        b"=",
        b"#",
        "\u{e9}".as_bytes(),
        b"\0",
        b"\xff",
        b"\xc3",
        b"99999999999999999999",
        b"-",
        b".",
        b"e9",
        b"inf",
        b"t",
        b"F",
    ];
    let pieces = prop::sample::select(pieces);
    prop::collection::vec(pieces, 0..40).prop_map(|v| v.concat())
}

fn check_invariants(payload: &[u8]) {
    for f in FORMATS {
        let (out, err) = decode_as(f, 4096, payload);
        for e in &out {
            assert!(e.value.is_finite(), "{f:?} {payload:?} -> {e:?}");
            assert!((0..=MAX_TS_MS).contains(&e.ts_ms), "{e:?}");
            assert!(!e.series.name().is_empty());
        }
        for e in &err {
            assert!(REASONS.contains(&e.reason()));
            let _ = e.to_string();
        }
    }
}

proptest! {
    // Fixed seed: the same cases every run; no regression files in src/.
    #![proptest_config(ProptestConfig {
        cases: 2000,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed_dec0),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_panic_nor_emit_non_finite(payload in prop::collection::vec(any::<u8>(), 0..512)) {
        check_invariants(&payload);
    }

    #[test]
    fn near_valid_payloads_never_panic_nor_emit_non_finite(payload in near_valid()) {
        check_invariants(&payload);
    }
}
