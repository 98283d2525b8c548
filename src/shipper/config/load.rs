//! Loading: the file (TOML, or YAML by extension), `SIDELOG_*` environment overrides, and
//! `${VAR}` interpolation, then one typed parse and the validation. Also the list of every
//! key, which the documentation checks use.
//!
//! The `config` crate merges the file and the overrides into one tree of values; `${VAR}` is
//! expanded in that tree, and the typed configuration is read from it (the crate's reader
//! turns the overrides' text into the numbers and booleans the keys want), so that
//! `metrics_listen = "${POD_IP}:9500"` is an address by the time it is parsed as one.
//!
//! The `SIDELOG_*` names are mapped to keys here rather than by the crate's `Environment`
//! source, which has no array indexes (`SIDELOG_INPUTS__0__INCLUDE`) and would take every
//! variable with the prefix for a key, where Kubernetes' service links must only be named in
//! a warning.

use std::collections::BTreeSet;
use std::path::Path;

use super::{
    AdditionalEndpoint, Config, ConfigError, DatadogConfig, ENV_NOT_KEYS, ENV_PREFIX,
    ENV_SEPARATOR, Input, LIST_KEYS, MultilineSettings, RuleKind, RuleSettings, agent,
};

impl Config {
    /// Loads a config file (format from its extension: `.toml`, `.yaml`, `.yml`), applies
    /// `SIDELOG_*` environment overrides, and validates the result.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_with_env(path, &env)
    }

    /// As [`Config::load`], with the environment given explicitly (for tests).
    pub fn load_with_env(path: &Path, env: &[(String, String)]) -> Result<Config, ConfigError> {
        if !path.is_file() {
            return Err(ConfigError::NoFile {
                path: path.to_path_buf(),
            });
        }
        let (mut tree, ignored) = merged_tree(config::File::from(path), path, env)?;
        let vars: std::collections::HashMap<&str, &str> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut errors = Vec::new();
        interpolate_value(&mut tree, "", &vars, &mut errors);
        if !errors.is_empty() {
            return Err(ConfigError::Invalid(errors));
        }
        let mut config = typed(tree)?;
        config.validate()?;
        if !ignored.is_empty() {
            config.notices.push(ignored_variables_notice(&ignored));
        }
        Ok(config)
    }

    /// Derives the configuration from the Datadog Agent's files in `dir` (`datadog.yaml`,
    /// `conf.d`) and its `DD_*` variables; `SIDELOG_*` variables override the result as they
    /// override a file. Errors name the Agent's settings and files.
    pub fn load_agent(dir: &Path) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_agent_with_env(dir, &env)
    }

    /// As [`Config::load_agent`], with the environment given explicitly (for tests).
    pub fn load_agent_with_env(
        dir: &Path,
        env: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let (derived, notices, errors) = agent::derive(dir, env);
        if !errors.is_empty() {
            return Err(ConfigError::Invalid(errors));
        }
        // The Agent interpolates nothing: the derived values go through as they are.
        let text = derived.to_toml();
        let source = config::File::from_str(&text, config::FileFormat::Toml);
        let (tree, ignored) = merged_tree(source, dir, env)?;
        let mut config = typed(tree)?;
        carry_inline_keys(&derived, &mut config);
        config.agent = derived.agent;
        config.validate().map_err(|e| in_agent_terms(e, &config))?;
        config.notices = notices;
        if !ignored.is_empty() {
            config.notices.push(ignored_variables_notice(&ignored));
        }
        Ok(config)
    }
}

/// Keys written out in the Agent's settings are never in text; they go over as they are.
fn carry_inline_keys(derived: &Config, config: &mut Config) {
    config.datadog.api_key = derived.datadog.api_key.clone();
    let pairs = config
        .datadog
        .additional_endpoints
        .iter_mut()
        .zip(&derived.datadog.additional_endpoints);
    for (ours, theirs) in pairs {
        ours.api_key = theirs.api_key.clone();
    }
}

/// Validation errors of a derived configuration, with the `conf.d` entry of each input named
/// beside sidelog's key.
fn in_agent_terms(e: ConfigError, config: &Config) -> ConfigError {
    let (ConfigError::Invalid(errors), Some(agent)) = (&e, &config.agent) else {
        return e;
    };
    let named = errors
        .iter()
        .map(|err| {
            let origin = agent.inputs.iter().enumerate().find_map(|(i, origin)| {
                let rest = err.strip_prefix(&format!("inputs[{i}]"))?;
                rest.starts_with(['.', ':']).then_some(origin)
            });
            match (origin, err.split_once(": ")) {
                (Some(origin), Some((key, rest))) => format!("{origin} ({key}): {rest}"),
                _ => err.clone(),
            }
        })
        .collect();
    ConfigError::Invalid(named)
}

/// One warning for every `SIDELOG_*` variable that names no key. Kubernetes gives every
/// container `<SERVICE>_SERVICE_HOST`, `<SERVICE>_PORT_...` and so on for each Service in the
/// namespace (`enableServiceLinks`), so a Service named `sidelog` must not stop its sidecars.
fn ignored_variables_notice(names: &[String]) -> String {
    format!(
        "environment variables {} name no configuration key and are ignored (Kubernetes service links of a Service named sidelog look like this; otherwise check the spelling)",
        names.join(", ")
    )
}

/// The file (`source`, read from `path`) with the environment's overrides on top, still
/// untyped (values from the environment are text), and the names of the prefixed variables
/// that name no key.
fn merged_tree<S>(
    source: S,
    path: &Path,
    env: &[(String, String)],
) -> Result<(config::Value, Vec<String>), ConfigError>
where
    S: config::Source + Send + Sync + 'static,
{
    let mut builder = config::Config::builder().add_source(source);
    let known = all_keys();
    let mut ignored = Vec::new();
    for (name, value) in env {
        let (key, value) = match env_override(name, value, &known) {
            EnvOverride::NotOurs => continue,
            EnvOverride::NoKey => {
                ignored.push(name.clone());
                continue;
            }
            EnvOverride::Key(key, value) => (key, value),
        };
        builder = builder
            .set_override(key.clone(), value)
            .map_err(|e| ConfigError::Key {
                key: key.clone(),
                reason: format!("from environment variable {name}: {e}"),
            })?;
    }
    let raw = builder.build().map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    ignored.sort();
    Ok((
        serde_path_to_error::deserialize(raw).map_err(key_error)?,
        ignored,
    ))
}

/// Whether an override's key (`inputs[0].service`) is a key of the configuration, or a
/// name inside one of its maps (`kubernetes.pod_labels_as_tags.app`).
fn names_a_key(key: &str, known: &BTreeSet<String>) -> bool {
    let mut plain = String::with_capacity(key.len());
    let mut in_index = false;
    for c in key.chars() {
        match c {
            '[' => in_index = true,
            ']' => in_index = false,
            c if !in_index => plain.push(c),
            _ => {}
        }
    }
    known.contains(&plain)
        || MAP_KEYS.iter().any(|m| {
            plain
                .strip_prefix(m)
                .is_some_and(|rest| rest.starts_with('.'))
        })
}

/// Reads the typed configuration from the tree, naming the key of the first value that does
/// not fit.
fn typed(tree: config::Value) -> Result<Config, ConfigError> {
    serde_path_to_error::deserialize(tree).map_err(key_error)
}

fn key_error(e: serde_path_to_error::Error<config::ConfigError>) -> ConfigError {
    let key = e.path().to_string();
    ConfigError::Key {
        key: if key == "." {
            "(top level)".into()
        } else {
            key
        },
        reason: e.into_inner().to_string(),
    }
}

fn interpolate_value(
    value: &mut config::Value,
    key: &str,
    vars: &std::collections::HashMap<&str, &str>,
    errors: &mut Vec<String>,
) {
    match &mut value.kind {
        config::ValueKind::String(_) if taken_as_written(key) => {}
        config::ValueKind::String(s) if s.contains('$') => match interpolate(s, vars) {
            Ok(done) => *s = done,
            Err(reason) => errors.push(format!("{key}: {reason}")),
        },
        config::ValueKind::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_value(item, &format!("{key}[{i}]"), vars, errors);
            }
        }
        config::ValueKind::Table(table) => {
            for (k, v) in table.iter_mut() {
                let path = if key.is_empty() {
                    k.clone()
                } else {
                    format!("{key}.{k}")
                };
                interpolate_value(v, &path, vars, errors);
            }
        }
        _ => {}
    }
}

/// Patterns and mask placeholders are not interpolated: `$` is an anchor in a pattern, and
/// `${1}` in a placeholder is the match's first group (as in the Datadog Agent, which has
/// no interpolation there either).
fn taken_as_written(key: &str) -> bool {
    let in_rule =
        key.starts_with("log_processing_rules[") || key.contains(".log_processing_rules[");
    (in_rule && (key.ends_with(".pattern") || key.ends_with(".replace_placeholder")))
        || key.ends_with(".multiline.start_pattern")
}

/// `${VAR}`, `${VAR:-default}` (default when unset or empty) and `$$` in one string.
pub fn interpolate(
    text: &str,
    vars: &std::collections::HashMap<&str, &str>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some(inner) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(close) = inner.find('}') else {
            return Err(format!("unclosed ${{ in {text:?}"));
        };
        let expr = &inner[..close];
        let (name, default) = match expr.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (expr, None),
        };
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("${{{expr}}} does not name an environment variable"));
        }
        // As in the shell: `${VAR}` takes an empty value as it is, `${VAR:-d}` replaces it.
        let value = vars
            .get(name)
            .filter(|v| default.is_none() || !v.is_empty());
        match (value, default) {
            (Some(v), _) => out.push_str(v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "environment variable {name} is not set (write ${{{name}:-default}} for a default)"
                ));
            }
        }
        rest = &inner[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// What a variable of the environment is to the configuration.
enum EnvOverride {
    /// Not one of ours (no prefix, or a prefixed variable that is not a key by design).
    NotOurs,
    /// Prefixed, but its name is no key path (`SIDELOG_PORT`, `SIDELOG_0__X`).
    NoKey,
    /// `SIDELOG_DATADOG__ENDPOINT=x` as `("datadog.endpoint", "x")`, and
    /// `SIDELOG_INPUTS__0__TAGS=a,b` as `("inputs[0].tags", ["a", "b"])`.
    Key(String, config::Value),
}

fn env_override(name: &str, value: &str, known: &BTreeSet<String>) -> EnvOverride {
    let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
        return EnvOverride::NotOurs;
    };
    if ENV_NOT_KEYS.contains(&name) {
        return EnvOverride::NotOurs;
    }
    let Some((key, last)) = key_path(rest) else {
        return EnvOverride::NoKey;
    };
    if !names_a_key(&key, known) {
        return EnvOverride::NoKey;
    }
    let value = if LIST_KEYS.contains(&last.as_str()) {
        let items: Vec<config::Value> = value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| config::Value::from(s.to_string()))
            .collect();
        config::Value::from(items)
    } else {
        config::Value::from(value.to_string())
    };
    EnvOverride::Key(key, value)
}

/// `DATADOG__ENDPOINT` as `datadog.endpoint`, `INPUTS__0__TAGS` as `inputs[0].tags`, with
/// the last named segment; `None` for an empty segment or a leading index.
fn key_path(rest: &str) -> Option<(String, String)> {
    let mut key = String::new();
    let mut last = String::new();
    for segment in rest.split(ENV_SEPARATOR) {
        let segment = segment.to_ascii_lowercase();
        if segment.is_empty() {
            return None;
        }
        if segment.bytes().all(|b| b.is_ascii_digit()) {
            if key.is_empty() {
                return None;
            }
            key.push('[');
            key.push_str(&segment);
            key.push(']');
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(&segment);
            last = segment;
        }
    }
    Some((key, last))
}

/// Every key path that exists, for documentation checks.
pub fn all_keys() -> BTreeSet<String> {
    keys_in(&sample())
}

/// Every key path with its default value (a list of tables' keys from its first entry).
pub(super) fn sample_values() -> std::collections::BTreeMap<String, toml::Value> {
    values_in(&sample())
}

/// The key paths of a parsed config file with their values; a list of tables gives the keys
/// of its first entry.
pub fn values_in(value: &toml::Value) -> std::collections::BTreeMap<String, toml::Value> {
    let mut values = std::collections::BTreeMap::new();
    walk("", value, Entries::First, &mut |key, v| {
        values.insert(key.to_string(), v.clone());
    });
    values
}

/// A configuration at its defaults, with one of each optional table and list of tables
/// filled in, so that their keys show too.
fn sample() -> toml::Value {
    let input = Input {
        multiline: Some(MultilineSettings::default()),
        log_processing_rules: vec![RuleSettings::new(RuleKind::MaskSequences, "", "", "")],
        ..Input::default()
    };
    let mut datadog = DatadogConfig::default();
    datadog
        .additional_endpoints
        .push(AdditionalEndpoint::default());
    let rule = RuleSettings::new(RuleKind::MaskSequences, "", "", "");
    toml::Value::try_from(Config {
        log_processing_rules: vec![rule],
        inputs: vec![input],
        datadog,
        ..Config::default()
    })
    .unwrap_or(toml::Value::Table(Default::default()))
}

/// Keys whose value is a map of the user's names (label to tag name).
const MAP_KEYS: &[&str] = &[
    "kubernetes.pod_labels_as_tags",
    "kubernetes.pod_annotations_as_tags",
];

/// The key paths present in a parsed config file (array-of-tables entries merged).
pub fn keys_in(value: &toml::Value) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    walk("", value, Entries::All, &mut |key, _| {
        keys.insert(key.to_string());
    });
    keys
}

/// Which entries of a list of tables a walk visits.
#[derive(Clone, Copy)]
enum Entries {
    All,
    First,
}

/// Calls `leaf` with each key path under `prefix` and its value. A list of tables adds no
/// level (`inputs.include`); a map of the user's names is one key.
fn walk(
    prefix: &str,
    value: &toml::Value,
    entries: Entries,
    leaf: &mut dyn FnMut(&str, &toml::Value),
) {
    match value {
        // A map's own keys are the user's (label names), not configuration keys.
        toml::Value::Table(table) if !MAP_KEYS.contains(&prefix) => {
            for (k, v) in table {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                walk(&path, v, entries, leaf);
            }
        }
        toml::Value::Array(items) if !items.is_empty() && items.iter().all(|v| v.is_table()) => {
            let visited = match entries {
                Entries::All => &items[..],
                Entries::First => &items[..1],
            };
            for item in visited {
                walk(prefix, item, entries, leaf);
            }
        }
        _ => leaf(prefix, value),
    }
}
