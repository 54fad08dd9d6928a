//! Fuzzes `backtest::parse_timestamp` (the CSV timestamp column): any text
//! either is refused or gives milliseconds that the alert code can print.
#![no_main]

use anomalyd::alert::lifecycle::rfc3339_ms;
use anomalyd::backtest::parse_timestamp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(ts_ms) = parse_timestamp(&text) {
        let printed = rfc3339_ms(ts_ms);
        assert!(printed.ends_with('Z'), "{text:?} -> {ts_ms} -> {printed}");
    }
});
