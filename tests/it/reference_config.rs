//! `config/anomalyd.toml` is the documented reference: it must configure
//! exactly the code's defaults and name every key.

use std::collections::BTreeSet;

use anomalyd::app::config::Config;

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
    // Every key the code accepts (read from the config types themselves,
    // optional keys included) is named: set, or (without a default)
    // shown as a comment in its section. A free map is named by its table.
    let commented = commented_keys(REFERENCE);
    let shape = Config::shape();
    let undocumented: Vec<String> = shape
        .leaf_keys()
        .into_iter()
        .map(|k| k.trim_end_matches(".*").to_owned())
        .filter(|k| !in_file.contains(k) && !commented.contains(k))
        .collect();
    assert!(
        undocumented.is_empty(),
        "keys the code accepts that config/anomalyd.toml does not name: {undocumented:?}"
    );
    // And every commented key is one the code accepts.
    let stale: Vec<&String> = commented.iter().filter(|k| shape.at(k).is_none()).collect();
    assert!(
        stale.is_empty(),
        "commented keys the code does not accept: {stale:?}"
    );
}

/// `# key = value` lines, as dotted keys under the section they are in.
fn commented_keys(text: &str) -> BTreeSet<String> {
    let mut section = String::new();
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else if let Some((key, _)) = line.strip_prefix("# ").and_then(|l| l.split_once(" = "))
            && !key.is_empty()
            && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        {
            out.insert(format!("{section}.{key}"));
        }
    }
    out
}
