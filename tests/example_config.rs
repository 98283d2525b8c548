//! The documentation of the configuration cannot drift from the code: `config/sidelog.toml` is
//! valid and names every key, and the reference table in `docs/configuration.md` lists every
//! key, no more.

use std::collections::BTreeSet;

#[test]
fn example_config_is_valid_and_complete() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/sidelog.toml");
    let env: Vec<(String, String)> = Vec::new();
    sidelog_shipper::config::Config::load_with_env(&path, &env).expect("example config is valid");
    let text = std::fs::read_to_string(&path).expect("read example");
    let value: toml::Value = toml::from_str(&text).expect("toml");
    let mut documented = sidelog_shipper::config::keys_in(&value);
    // Tables that must not be active in the example (it is the image's default config) are
    // documented commented out; they must still be valid TOML once uncommented.
    let commented: toml::Value = toml::from_str(&commented_tables(&text)).expect("commented TOML");
    documented.extend(sidelog_shipper::config::keys_in(&commented));
    let missing: Vec<String> = sidelog_shipper::config::all_keys()
        .difference(&documented)
        .cloned()
        .collect();
    assert!(
        missing.is_empty(),
        "config/sidelog.toml lacks keys: {missing:?}"
    );
}

#[test]
fn reference_table_lists_every_key() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
    let page = std::fs::read_to_string(path).expect("docs/configuration.md");
    // The reference is the page's first section, before "## Dual shipping".
    let section = page.split("\n## ").next().expect("a reference section");
    // Rows look like "| `inputs[].include` | default | meaning |".
    let listed: BTreeSet<String> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(|k| k.replace("[]", ""))
        .collect();
    let keys = sidelog_shipper::config::all_keys();
    let missing: Vec<&String> = keys.difference(&listed).collect();
    let unknown: Vec<&String> = listed.difference(&keys).collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md lacks keys: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "docs/configuration.md lists keys that do not exist: {unknown:?}"
    );
}

/// The commented-out tables of the example, uncommented: a `# [table]` or `# [[table]]` line
/// and the `# key = value` lines right after it.
fn commented_tables(text: &str) -> String {
    let mut out = String::new();
    let mut in_table = false;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# ") else {
            in_table = false;
            continue;
        };
        if rest.starts_with('[') {
            in_table = true;
        } else if !(in_table && rest.contains(" = ")) {
            in_table = false;
            continue;
        }
        out.push_str(rest);
        out.push('\n');
    }
    out
}
