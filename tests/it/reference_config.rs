//! `config/anomalyd.toml` is the documented reference: it must configure
//! exactly the code's defaults and name every key.

use std::collections::BTreeSet;

use anomalyd::config::load::Config;

const REFERENCE: &str = include_str!("../../config/anomalyd.toml");

fn keys(prefix: &str, table: &toml::Table, out: &mut BTreeSet<String>) {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) if !t.is_empty() => keys(&path, t, out),
            _ => {
                out.insert(path);
            }
        }
    }
}

#[test]
fn reference_file_values_are_the_code_defaults() {
    let mut from_file: Config = toml::from_str(REFERENCE).expect("config/anomalyd.toml parses");
    from_file.fill_derived_defaults();
    let mut defaults = Config::default();
    defaults.fill_derived_defaults();
    assert_eq!(
        from_file, defaults,
        "config/anomalyd.toml differs from the defaults in code"
    );
    from_file.validate().expect("the defaults are valid");
}

#[test]
fn reference_file_names_every_key() {
    let documented: toml::Table = toml::from_str(REFERENCE).unwrap();
    let mut in_file = BTreeSet::new();
    keys("", &documented, &mut in_file);
    let defaults = toml::Table::try_from(Config::default()).unwrap();
    let mut in_code = BTreeSet::new();
    keys("", &defaults, &mut in_code);
    let missing: Vec<_> = in_code.difference(&in_file).collect();
    assert!(
        missing.is_empty(),
        "keys missing from config/anomalyd.toml: {missing:?}"
    );
    // Optional keys without a default are documented as comments.
    for optional in [
        "critical_threshold",
        "token_env",
        "token_file",
        "generator_url",
        "web_config_file",
    ] {
        assert!(
            REFERENCE.contains(&format!("# {optional} = ")),
            "{optional} is not documented in config/anomalyd.toml"
        );
    }
}
