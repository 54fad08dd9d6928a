//! Fuzzes the `auto` decoder: no input may panic, emit a non-finite
//! value, or emit a timestamp outside the printable range.
#![no_main]

use anomalyd::decode::{DecodeConfig, Decoder, Format, MAX_TS_MS, REASONS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoder = Decoder::new(&DecodeConfig {
        format: Format::Auto,
        ..DecodeConfig::default()
    });
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
});
