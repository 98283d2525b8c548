//! Configuration files for the shipper the benchmarks and the tests start: built as the
//! shipper's own typed [`Config`] and written as the TOML it loads, so that a setting renamed
//! or retyped in the shipper breaks them at compile time, not at run time.
//!
//! Only what differs from the defaults is written: the file reads as what a user would write,
//! and an older build measured beside this one (`SIDELOG_BENCH_SHIPPER`) is not given keys it
//! does not know, as long as they are left at their defaults.

use std::path::Path;

use anyhow::Context;
use sidelog_shipper::config::{AdditionalEndpoint, Config, Input};
use toml::{Table, Value};

/// Writes `config` to `path` as TOML. It is not validated here: the shipper does that when
/// it loads the file (and a test may mean to give it a configuration it refuses).
pub fn write(config: &Config, path: &Path) -> anyhow::Result<()> {
    std::fs::write(path, render(config)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `config` as TOML, without what equals the defaults.
pub fn render(config: &Config) -> anyhow::Result<String> {
    let table = |v: Value| match v {
        Value::Table(t) => Ok(t),
        _ => anyhow::bail!("a configuration that is not a table"),
    };
    let mut text = table(Value::try_from(config)?)?;
    prune(&mut text, &table(Value::try_from(Config::default())?)?);
    let input = table(Value::try_from(Input::default())?)?;
    prune_each(text.get_mut("inputs"), &input);
    let endpoint = table(Value::try_from(AdditionalEndpoint::default())?)?;
    let endpoints = text
        .get_mut("datadog")
        .and_then(Value::as_table_mut)
        .and_then(|d| d.get_mut("additional_endpoints"));
    prune_each(endpoints, &endpoint);
    toml::to_string(&text).context("cannot render the configuration as TOML")
}

/// Removes the keys of `table` whose value is the default's, and tables left empty.
fn prune(table: &mut Table, defaults: &Table) {
    table.retain(|key, value| {
        let Some(default) = defaults.get(key) else {
            return true;
        };
        if let (Value::Table(t), Value::Table(d)) = (&mut *value, default) {
            prune(t, d);
            return !t.is_empty();
        }
        value != default
    });
}

/// [`prune`] for each table of an array of tables.
fn prune_each(array: Option<&mut Value>, defaults: &Table) {
    if let Some(Value::Array(items)) = array {
        for item in items {
            if let Value::Table(t) = item {
                prune(t, defaults);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sidelog_shipper::config::RequestConcurrency;

    #[test]
    fn what_is_written_loads_back_the_same_and_holds_only_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config {
            data_dir: dir.path().join("data"),
            shutdown_quiet_ms: 200,
            ..Config::default()
        };
        config.inputs.push(Input {
            include: vec![format!("{}/*.log", dir.path().display())],
            service: "svc".into(),
            tags: vec!["team:a".into()],
            ..Input::default()
        });
        config.datadog.endpoint = Some("http://127.0.0.1:9/".parse().expect("url"));
        config.datadog.api_key_file = Some(dir.path().join("key"));
        config.datadog.request_concurrency = RequestConcurrency::Fixed(3);
        config.batch.timeout_ms = 100;
        let path = dir.path().join("sidelog.toml");
        write(&config, &path).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            !text.contains("max_events"),
            "a default was written:\n{text}"
        );
        assert!(
            !text.contains("[tail]"),
            "a table of defaults was written:\n{text}"
        );
        assert!(
            !text.contains("read_from"),
            "an input's default was written:\n{text}"
        );
        let loaded = Config::load_with_env(&path, &[]).expect("load");
        assert_eq!(
            toml::to_string(&loaded).expect("render"),
            toml::to_string(&config).expect("render")
        );
    }
}
