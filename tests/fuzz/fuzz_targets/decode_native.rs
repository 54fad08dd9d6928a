//! Fuzzes the `native` decoder: no input may panic, emit a non-finite
//! value, or emit a timestamp outside the printable range; and the fast
//! path for well-formed records plus its serde fallback must give exactly
//! what serde alone gives (the same events, bit for bit, and the same
//! errors).
#![no_main]

use anomalyd::decode::{DecodeConfig, Decoder, Format, MAX_TS_MS, REASONS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let config = DecodeConfig {
        format: Format::NativeJson,
        ..DecodeConfig::default()
    };
    let decoder = Decoder::new(&config);
    let (mut out, mut errors) = (Vec::new(), Vec::new());
    decoder.decode(data, Some(1_767_225_600_000), &mut out, &mut errors);
    for e in &out {
        assert!(e.value.is_finite(), "{e:?}");
        assert!((0..=MAX_TS_MS).contains(&e.ts_ms), "{e:?}");
        assert!(!e.series.name().is_empty(), "{e:?}");
    }
    for e in &errors {
        assert!(REASONS.contains(&e.reason()), "{e:?}");
    }

    let serde_only = Decoder::new(&config).with_fast_path(false);
    let (mut out2, mut errors2) = (Vec::new(), Vec::new());
    serde_only.decode(data, Some(1_767_225_600_000), &mut out2, &mut errors2);
    assert_eq!(errors, errors2);
    assert_eq!(out.len(), out2.len());
    for (a, b) in out.iter().zip(&out2) {
        assert_eq!(a.series, b.series);
        assert_eq!(a.series.fingerprint(), b.series.fingerprint());
        assert_eq!(a.ts_ms, b.ts_ms);
        assert_eq!(a.value.to_bits(), b.value.to_bits(), "{a:?} vs {b:?}");
    }
});
