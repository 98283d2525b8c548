//! The documentation of the configuration cannot drift from the code: `config/sidelog.toml` is
//! valid, names every key and gives each its default, and the reference in
//! `docs/configuration.md` is the one generated from the code.

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

/// The reference in `docs/configuration.md` is what `sidelog check --reference` prints from
/// the code's one definition of each key. `SIDELOG_BLESS=1 cargo test --test e2e -- docs::example_config`
/// writes it.
#[test]
fn committed_reference_is_the_generated_one() {
    const BEGIN: &str = "<!-- generated: ";
    const END: &str = "<!-- end of the generated table -->";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
    let page = std::fs::read_to_string(&path).expect("docs/configuration.md");
    let begin = page
        .find(BEGIN)
        .expect("the generated table's opening marker");
    let body_start = begin + page[begin..].find('\n').expect("a marker line") + 1;
    let body_end = page
        .find(END)
        .expect("the generated table's closing marker");
    let generated = sidelog_shipper::config::reference::markdown();
    if page[body_start..body_end] == generated {
        return;
    }
    if std::env::var_os("SIDELOG_BLESS").is_some() {
        let updated = format!("{}{generated}{}", &page[..body_start], &page[body_end..]);
        std::fs::write(&path, updated).expect("write docs/configuration.md");
        return;
    }
    panic!(
        "docs/configuration.md's reference is stale: run `SIDELOG_BLESS=1 cargo test --test e2e -- docs::example_config`"
    );
}

/// The example's first input and its global keys are at their defaults (bar what has no
/// useful default, listed).
#[test]
fn example_values_are_the_defaults() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/sidelog.toml");
    let text = std::fs::read_to_string(&path).expect("read example");
    let example: toml::Value = toml::from_str(&text).expect("toml");
    let defaults = sidelog_shipper::config::reference::defaults();
    // What has no useful default: the files to read, the key's file, what the events say.
    let image = [
        "inputs.include",
        "datadog.api_key_file",
        "inputs.service",
        "inputs.source",
        "datadog.tags",
        "inputs.tags",
    ];
    let mut differs = Vec::new();
    // The first input is the one at its defaults; the second shows rules and grouping.
    for (key, value) in sidelog_shipper::config::values_in(&example) {
        if image.contains(&key.as_str()) {
            continue;
        }
        match defaults.get(&key) {
            Some(default) if *default == value => {}
            Some(default) => differs.push(format!("{key} = {value} (default {default})")),
            None => {}
        }
    }
    assert!(
        differs.is_empty(),
        "config/sidelog.toml differs from the defaults: {differs:#?}"
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
