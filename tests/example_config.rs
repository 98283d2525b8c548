//! `config/sidelog.toml` is valid and documents every key that exists.

#[test]
fn example_config_is_valid_and_complete() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/sidelog.toml");
    let env: Vec<(String, String)> = Vec::new();
    sidelog::config::Config::load_with_env(&path, &env).expect("example config is valid");
    let text = std::fs::read_to_string(&path).expect("read example");
    let value: toml::Value = toml::from_str(&text).expect("toml");
    let documented = sidelog::config::keys_in(&value);
    let missing: Vec<String> = sidelog::config::all_keys()
        .difference(&documented)
        .cloned()
        .collect();
    assert!(
        missing.is_empty(),
        "config/sidelog.toml lacks keys: {missing:?}"
    );
}
