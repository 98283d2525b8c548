//! `config/sidelog.toml` is valid and documents every key that exists.

use std::collections::BTreeSet;

#[test]
fn example_config_is_valid_and_complete() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/sidelog.toml");
    let env: Vec<(String, String)> = Vec::new();
    sidelog::config::Config::load_with_env(&path, &env).expect("example config is valid");
    let text = std::fs::read_to_string(&path).expect("read example");
    let value: toml::Value = toml::from_str(&text).expect("toml");
    let mut documented = BTreeSet::new();
    collect("", &value, &mut documented);
    let missing: Vec<String> = sidelog::config::all_keys()
        .difference(&documented)
        .cloned()
        .collect();
    assert!(
        missing.is_empty(),
        "config/sidelog.toml lacks keys: {missing:?}"
    );
}

fn collect(prefix: &str, value: &toml::Value, out: &mut BTreeSet<String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                collect(&p, v, out);
            }
        }
        toml::Value::Array(items) if !items.is_empty() && items.iter().all(|v| v.is_table()) => {
            for item in items {
                collect(prefix, item, out);
            }
        }
        _ => {
            out.insert(prefix.to_string());
        }
    }
}
