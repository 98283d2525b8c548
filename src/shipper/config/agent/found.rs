//! The Agent's settings as found: `datadog.yaml` flattened to the Agent's keys, the `DD_*`
//! variables over it (the Agent's precedence), and typed reads that name the setting and
//! where it was written when a value does not fit.

use std::collections::BTreeMap;
use std::path::Path;

use yaml_rust2::Yaml;

use super::Notes;
use super::settings::{self, Use, known_by_env, known_by_key, other_product};
use super::sources;
use crate::yaml11;

/// One setting's value and where it was found.
pub(super) struct AgentValue {
    /// From `datadog.yaml`, or a variable's text as a string.
    pub value: Yaml,
    pub from_env: bool,
    /// `datadog.yaml: logs_config.batch_wait` or `DD_LOGS_CONFIG_BATCH_WAIT`.
    pub origin: String,
}

/// The Agent's settings that sidelog reads, by key.
#[derive(Default)]
pub(super) struct AgentSettings {
    pub found: BTreeMap<&'static str, AgentValue>,
}

impl AgentSettings {
    /// `datadog.yaml`, flattened to the keys the Agent's settings have.
    pub fn read_file(&mut self, path: &Path, notes: &mut Notes) {
        let doc = match std::fs::read_to_string(path).map(|t| yaml11::load(&t)) {
            Ok(Ok(docs)) => docs.into_iter().next().unwrap_or(Yaml::Null),
            Ok(Err(e)) => return notes.error(format!("datadog.yaml: not YAML: {e}")),
            Err(e) => return notes.error(format!("datadog.yaml: cannot read: {e}")),
        };
        if let Yaml::Hash(_) = doc {
            self.flatten("", &doc, notes);
        }
    }

    fn flatten(&mut self, prefix: &str, value: &Yaml, notes: &mut Notes) {
        let Yaml::Hash(hash) = value else { return };
        for (k, v) in hash {
            let Some(k) = yaml11::text(k) else { continue };
            let key = if prefix.is_empty() {
                k
            } else {
                format!("{prefix}.{k}")
            };
            match known_by_key(&key) {
                Some(known) => self.set(
                    known,
                    v.clone(),
                    false,
                    format!("datadog.yaml: {key}"),
                    notes,
                ),
                None if matches!(v, Yaml::Hash(_)) && !other_product(&key) => {
                    self.flatten(&key, v, notes)
                }
                None if v.is_null() => {}
                None => notes.ignore(format!("datadog.yaml: {key}"), unknown_reason(&key)),
            }
        }
    }

    /// The Agent's variables, over `datadog.yaml` (as in the Agent).
    pub fn read_env(&mut self, env: &[(String, String)], notes: &mut Notes) {
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("DD_") else {
                continue;
            };
            match known_by_env(name) {
                Some(known) => self.set(
                    known,
                    Yaml::String(value.clone()),
                    true,
                    name.clone(),
                    notes,
                ),
                None => notes.ignore(name.clone(), unknown_reason(&rest.to_ascii_lowercase())),
            }
        }
    }

    fn set(
        &mut self,
        known: &'static settings::Known,
        value: Yaml,
        from_env: bool,
        origin: String,
        notes: &mut Notes,
    ) {
        if let Use::Ignored(why) = known.use_ {
            notes.ignore(origin, why);
            return;
        }
        self.found.insert(
            known.key,
            AgentValue {
                value,
                from_env,
                origin,
            },
        );
    }

    pub fn text(&self, key: &str) -> Option<String> {
        self.found
            .get(key)
            .and_then(|f| yaml11::text(&f.value))
            .filter(|s| !s.is_empty())
    }

    pub fn origin(&self, key: &str) -> String {
        self.found
            .get(key)
            .map_or_else(|| key.to_string(), |f| f.origin.clone())
    }

    pub fn bool(&self, key: &str, notes: &mut Notes) -> Option<bool> {
        let f = self.found.get(key)?;
        let parsed = match &f.value {
            // The Agent reads its variables with Go's strconv.ParseBool.
            Yaml::String(s) if f.from_env => match s.trim() {
                "1" | "t" | "T" => Some(true),
                "0" | "f" | "F" => Some(false),
                other => yaml11::bool(&Yaml::String(other.to_string())),
            },
            v => yaml11::bool(v),
        };
        if parsed.is_none() {
            notes.error(format!(
                "{}: {:?} is not true or false",
                f.origin,
                yaml11::text(&f.value).unwrap_or_default()
            ));
        }
        parsed
    }

    pub fn int(&self, key: &str, notes: &mut Notes) -> Option<i64> {
        let f = self.found.get(key)?;
        let parsed = match &f.value {
            Yaml::String(s) => yaml11::int(&Yaml::String(s.trim().to_string())),
            v => yaml11::int(v),
        };
        if parsed.is_none() {
            notes.error(format!(
                "{}: {:?} is not a whole number",
                f.origin,
                yaml11::text(&f.value).unwrap_or_default()
            ));
        }
        parsed
    }

    /// A duration the Agent takes in seconds (whole or not), in milliseconds.
    pub fn seconds_ms(&self, key: &str, notes: &mut Notes) -> Option<u64> {
        let f = self.found.get(key)?;
        let text = yaml11::text(&f.value).unwrap_or_default();
        match text.trim().parse::<f64>() {
            Ok(s) if s >= 0.0 && s.is_finite() => Some((s * 1000.0).round() as u64),
            _ => {
                notes.error(format!("{}: {text:?} is not a number of seconds", f.origin));
                None
            }
        }
    }

    /// A list: a YAML list, or a variable's words (space-separated, as the Agent splits them)
    /// or JSON array.
    pub fn list(&self, key: &str, notes: &mut Notes) -> Vec<String> {
        let Some(f) = self.found.get(key) else {
            return Vec::new();
        };
        match &f.value {
            Yaml::String(s) if f.from_env && s.trim_start().starts_with('[') => {
                match serde_json::from_str::<Vec<String>>(s) {
                    Ok(items) => items,
                    Err(e) => {
                        notes.error(format!("{}: not a JSON list of strings: {e}", f.origin));
                        Vec::new()
                    }
                }
            }
            Yaml::String(s) if f.from_env => s
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|t| !t.is_empty())
                .map(String::from)
                .collect(),
            v => sources::strings(v),
        }
    }

    /// A structured setting: YAML from the file, JSON from a variable.
    pub fn structured(&self, key: &str, notes: &mut Notes) -> Option<Yaml> {
        let f = self.found.get(key)?;
        match &f.value {
            Yaml::String(s) if f.from_env => match serde_json::from_str::<serde_json::Value>(s) {
                Ok(json) => Some(json_to_yaml(&json)),
                Err(e) => {
                    notes.error(format!("{}: not JSON: {e}", f.origin));
                    None
                }
            },
            v => Some(v.clone()),
        }
    }
}

/// Why a setting sidelog does not know is ignored.
fn unknown_reason(key: &str) -> &'static str {
    if key.starts_with("logs_config") {
        "logs settings that sidelog does not know; tell us if one changes what the Agent ships"
    } else if other_product(key) {
        "the Agent's other products and container collection do not apply to a log sidecar"
    } else {
        "not a logs setting of the Agent that sidelog knows"
    }
}

fn json_to_yaml(v: &serde_json::Value) -> Yaml {
    match v {
        serde_json::Value::Null => Yaml::Null,
        serde_json::Value::Bool(b) => Yaml::Boolean(*b),
        serde_json::Value::Number(n) => n
            .as_i64()
            .map_or_else(|| Yaml::Real(n.to_string()), Yaml::Integer),
        serde_json::Value::String(s) => Yaml::String(s.clone()),
        serde_json::Value::Array(items) => Yaml::Array(items.iter().map(json_to_yaml).collect()),
        serde_json::Value::Object(map) => Yaml::Hash(
            map.iter()
                .map(|(k, v)| (Yaml::String(k.clone()), json_to_yaml(v)))
                .collect(),
        ),
    }
}
