//! Fuzzes the config loader's file layer: any bytes, read as TOML text
//! through `Config::from_toml_str` (the code `Config::load_unvalidated`
//! runs on a file), then `validate()`. Neither may panic; a config that
//! parses and validates must also print (`check-config --print`) and read
//! back as itself.
#![no_main]

use anomalyd::app::config::Config;
use anomalyd::config::secret::REDACTED;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::from_toml_str(text) else {
        return;
    };
    if config.validate().is_err() {
        return;
    }
    // Secrets print redacted, so a config holding one does not round-trip;
    // printing must still work.
    let printed = config.to_toml().expect("a valid config prints as TOML");
    if !printed.contains(REDACTED) {
        let again = Config::from_toml_str(&printed).expect("printed config parses");
        assert_eq!(again, config, "{printed}");
    }
});
