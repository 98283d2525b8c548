//! The Datadog Agent's configuration, read as the Agent reads it and turned into sidelog's:
//! `datadog.yaml` with the `DD_*` variables on top (the Agent's precedence), and the `logs:`
//! entries of `conf.d`. A Pod that ran the Agent as its log sidecar runs sidelog with the
//! image changed and nothing else.
//!
//! Each setting is honoured, ignored with a warning naming it (it does not apply to a
//! sidecar: other products, container collection, the Agent's own tuning), or refused with an
//! error naming it (it would change what is shipped in a way sidelog cannot). The result is a
//! [`Config`] like any other: `SIDELOG_*` variables still override it, it is validated the
//! same way, and `sidelog check --agent-config DIR` prints it as sidelog's own TOML.

mod found;
mod secrets;
mod settings;
mod sources;
mod translate;

use std::path::{Path, PathBuf};

use super::{Config, LogLevel, MultilineSettings};
use crate::process::{Preset, RuleKind};
use crate::secret::{ApiKey, InlineKey};
use found::AgentSettings;
use secrets::Backend;
use sources::Source;

/// Where the Agent keeps its configuration.
pub const AGENT_DIR: &str = "/etc/datadog-agent";

/// Whether the translation turns the Agent's `datadog.yaml` setting `key` into sidelog's.
#[cfg(test)]
pub(super) fn honours(key: &str) -> bool {
    settings::KNOWN
        .iter()
        .any(|k| k.key == key && k.use_ == settings::Use::Honoured)
}

/// Whether the translation reads `key` of a `conf.d` log entry.
#[cfg(test)]
pub(super) fn reads_entry_key(key: &str) -> bool {
    sources::ENTRY_KEYS.contains(&key)
}
/// The Agent's `logs_config.run_path`: where its registry of positions lives, and where
/// sidelog keeps its checkpoints when it takes the Agent's place.
const RUN_PATH: &str = "/opt/datadog-agent/run";
/// The Agent's `logs_config.max_message_size_bytes`.
const AGENT_MAX_MESSAGE: i64 = 256_000;
/// Where a Pod's labels are found when the Agent's labels-as-tags settings ask for them (the
/// Downward API volume that `sidelog inject` and Kubernetes' documentation use).
const LABELS_FILE: &str = "/etc/podinfo/labels";
const ANNOTATIONS_FILE: &str = "/etc/podinfo/annotations";

/// What was derived from the Agent's files, for `sidelog check` and for errors.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentOrigin {
    pub dir: PathBuf,
    /// For each input, the `conf.d` entry it comes from.
    pub inputs: Vec<String>,
}

/// Warnings and errors gathered while reading the Agent's configuration.
#[derive(Default)]
pub(super) struct Notes {
    /// Settings ignored, each with why (named in one warning per reason).
    ignored: Vec<(String, &'static str)>,
    warnings: Vec<String>,
    errors: Vec<String>,
}

impl Notes {
    fn ignore(&mut self, what: String, why: &'static str) {
        if !self.ignored.iter().any(|(w, _)| *w == what) {
            self.ignored.push((what, why));
        }
    }

    fn warn(&mut self, text: String) {
        self.warnings.push(text);
    }

    fn error(&mut self, text: String) {
        self.errors.push(text);
    }

    /// The warnings, the ignored settings grouped by reason.
    fn into_notices(self) -> Vec<String> {
        let mut out = self.warnings;
        let mut reasons: Vec<&'static str> = Vec::new();
        for (_, why) in &self.ignored {
            if !reasons.contains(why) {
                reasons.push(why);
            }
        }
        for why in reasons {
            let names: Vec<&str> = self
                .ignored
                .iter()
                .filter(|(_, w)| *w == why)
                .map(|(n, _)| n.as_str())
                .collect();
            out.push(format!(
                "Datadog Agent settings ignored ({why}): {}",
                names.join(", ")
            ));
        }
        out
    }
}

/// Reads the Agent's configuration in `dir` with the variables `env`: the derived settings
/// (not yet validated) and what was noted on the way.
pub(super) fn derive(dir: &Path, env: &[(String, String)]) -> (Config, Vec<String>, Vec<String>) {
    let mut notes = Notes::default();
    let mut settings = AgentSettings::default();
    let datadog_yaml = dir.join("datadog.yaml");
    if datadog_yaml.is_file() {
        settings.read_file(&datadog_yaml, &mut notes);
    }
    settings.read_env(env, &mut notes);
    let conf_d = settings
        .text("confd_path")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("conf.d"));
    if !datadog_yaml.is_file() && !conf_d.is_dir() {
        notes.error(format!(
            "no Datadog Agent configuration in {}: neither datadog.yaml nor conf.d",
            dir.display()
        ));
    }
    let mut config = settings.to_config(&mut notes);
    let sources = read_sources(&conf_d, dir, &mut notes);
    let inputs = settings.add_inputs(&mut config, sources, &mut notes);
    config.agent = Some(AgentOrigin {
        dir: dir.to_path_buf(),
        inputs,
    });
    let errors = std::mem::take(&mut notes.errors);
    (config, notes.into_notices(), errors)
}

/// Every `type: file` entry of `conf.d`, with paths shown relative to the Agent's directory.
fn read_sources(conf_d: &Path, dir: &Path, notes: &mut Notes) -> Vec<Source> {
    sources::files(conf_d)
        .iter()
        .flat_map(|path| {
            let shown = path.strip_prefix(dir).unwrap_or(path).display().to_string();
            sources::read(path, &shown, notes)
        })
        .collect()
}

/// An input's multi-line grouping: its `multi_line` rule with the Agent's
/// `aggregation_timeout`, or automatic detection where the Agent would detect.
fn group_lines(s: &mut Source, global_auto: Option<bool>, timeout: Option<u64>) {
    let has_rule = s
        .input
        .log_processing_rules
        .iter()
        .any(|r| r.kind == RuleKind::MultiLine);
    let timeout_ms = timeout.unwrap_or(MultilineSettings::default().timeout_ms);
    if has_rule {
        if timeout.is_some() {
            // The rule's grouping with the Agent's timeout: the same `^` + pattern, as a table.
            let rules = &mut s.input.log_processing_rules;
            if let Some(at) = rules.iter().rposition(|r| r.kind == RuleKind::MultiLine) {
                let rule = rules.remove(at);
                rules.retain(|r| r.kind != RuleKind::MultiLine);
                s.input.multiline = Some(MultilineSettings {
                    start_pattern: Some(format!("^{}", rule.pattern)),
                    timeout_ms,
                    ..MultilineSettings::default()
                });
            }
        }
        return;
    }
    if s.auto_multi_line.or(global_auto) == Some(true) {
        s.input.multiline = Some(MultilineSettings {
            preset: Some(Preset::Auto),
            timeout_ms,
            ..MultilineSettings::default()
        });
    }
}

/// Where a key given in the Agent's settings is.
enum KeyLocation {
    File(PathBuf),
    Inline(InlineKey),
}

fn key_location(value: &str, origin: &str, backend: &Backend) -> Result<KeyLocation, String> {
    if let Some(handle) = secrets::handle(value) {
        return backend.file_of(handle).map(KeyLocation::File);
    }
    match ApiKey::parse(value, origin) {
        Ok(Some(key)) => Ok(KeyLocation::Inline(InlineKey {
            key,
            origin: origin.to_string(),
        })),
        Ok(None) => Err("empty".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// The Agent's levels as sidelog's (`critical` and `off` keep errors).
fn log_level(level: &str) -> LogLevel {
    match level.trim().to_ascii_lowercase().as_str() {
        "trace" => LogLevel::Trace,
        "debug" => LogLevel::Debug,
        "warn" | "warning" => LogLevel::Warn,
        "error" | "critical" | "off" => LogLevel::Error,
        _ => LogLevel::Info,
    }
}
