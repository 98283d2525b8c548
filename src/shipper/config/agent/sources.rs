//! The `logs:` entries of the Agent's `conf.d` (`conf.d/<name>.d/conf.yaml` and any other
//! `.yaml` under it), read as the Agent reads them: an entry of `type: file` becomes one of
//! sidelog's inputs; entries of other types (`docker`, `journald`, `tcp`, ...) and checks'
//! `instances` do not apply to a sidecar that tails files, and are named in a warning.

use std::path::{Path, PathBuf};

use yaml_rust2::Yaml;

use super::Notes;
use crate::config::{Encoding, Input, ReadFrom};
use crate::process::{RuleKind, RuleSettings};
use crate::yaml11;

/// One `type: file` entry, as an input, with where it was written.
pub(super) struct Source {
    pub input: Input,
    /// `conf.d/app.d/conf.yaml, logs[0]`, for messages.
    pub origin: String,
    /// Its own `auto_multi_line_detection`, when it has one.
    pub auto_multi_line: Option<bool>,
}

/// Every `.yaml` file under `dir`, in name order (as the Agent loads them).
pub(super) fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The file inputs of one `conf.d` file; problems go to `notes`.
pub(super) fn read(path: &Path, shown: &str, notes: &mut Notes) -> Vec<Source> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            notes.error(format!("{shown}: cannot read: {e}"));
            return Vec::new();
        }
    };
    let doc = match yaml11::load(&text) {
        Ok(docs) => docs.into_iter().next().unwrap_or(Yaml::Null),
        Err(e) => {
            notes.error(format!("{shown}: not YAML: {e}"));
            return Vec::new();
        }
    };
    if !doc["instances"].is_badvalue() || !doc["ad_identifiers"].is_badvalue() {
        notes.ignore(
            format!("{shown} (a check's instances or an Autodiscovery template)"),
            "checks and Autodiscovery do not apply to a log sidecar",
        );
    }
    let Yaml::Array(entries) = &doc["logs"] else {
        return Vec::new();
    };
    entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| entry(e, &format!("{shown}, logs[{i}]"), notes))
        .collect()
}

/// One `logs:` entry: an input for `type: file`, `None` for the others.
fn entry(e: &Yaml, origin: &str, notes: &mut Notes) -> Option<Source> {
    let kind = yaml11::text(&e["type"]).unwrap_or_default();
    if kind != "file" {
        notes.ignore(
            format!(
                "{origin} (type: {})",
                if kind.is_empty() { "none" } else { &kind }
            ),
            "only `type: file` entries apply to a sidecar that tails files",
        );
        return None;
    }
    let mut input = Input {
        read_from: ReadFrom::End,
        ..Input::default()
    };
    match yaml11::text(&e["path"]) {
        Some(path) if Path::new(&path).is_absolute() => input.include = vec![path],
        Some(path) => notes.error(format!("{origin}: path {path:?} must be absolute")),
        None => notes.error(format!("{origin}: a file entry needs a path")),
    }
    input.exclude = strings(&e["exclude_paths"]);
    input.service = yaml11::text(&e["service"]).unwrap_or_default();
    input.source = yaml11::text(&e["source"]).unwrap_or_default();
    input.tags = strings(&e["tags"]);
    if let Some(category) = yaml11::text(&e["sourcecategory"]) {
        input.tags.push(format!("sourcecategory:{category}"));
    }
    set_encoding(&mut input, &e["encoding"], origin, notes);
    set_start(&mut input, &e["start_position"], origin, notes);
    input.log_processing_rules = rules(&e["log_processing_rules"], origin, notes);
    note_unused_keys(e, origin, notes);
    Some(Source {
        input,
        origin: origin.to_string(),
        auto_multi_line: yaml11::bool(&e["auto_multi_line_detection"]),
    })
}

/// The keys of a file entry that sidelog reads.
pub(super) const ENTRY_KEYS: &[&str] = &[
    "type",
    "path",
    "exclude_paths",
    "service",
    "source",
    "tags",
    "sourcecategory",
    "encoding",
    "start_position",
    "log_processing_rules",
    "auto_multi_line_detection",
];

fn note_unused_keys(e: &Yaml, origin: &str, notes: &mut Notes) {
    let Yaml::Hash(hash) = e else { return };
    for key in hash.keys().filter_map(yaml11::text) {
        if !ENTRY_KEYS.contains(&key.as_str()) {
            let why = if key.starts_with("auto_multi_line") || key == "fingerprint_config" {
                "the Agent's tuning of its own detection; sidelog has its own"
            } else {
                "not a setting of file entries"
            };
            notes.ignore(format!("{origin}: {key}"), why);
        }
    }
}

/// A list of strings, or one string of comma-separated items.
pub(super) fn strings(value: &Yaml) -> Vec<String> {
    match value {
        Yaml::Array(items) => items.iter().filter_map(yaml11::text).collect(),
        other => yaml11::text(other)
            .map(|s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn set_encoding(input: &mut Input, value: &Yaml, origin: &str, notes: &mut Notes) {
    input.encoding = match yaml11::text(value).as_deref() {
        None | Some("" | "utf-8" | "utf8") => Encoding::Utf8,
        Some("utf-16-le") => Encoding::Utf16Le,
        Some("utf-16-be") => Encoding::Utf16Be,
        Some(other) => {
            notes.error(format!(
                "{origin}: encoding {other:?} is not one sidelog reads (utf-8, utf-16-le, utf-16-be)"
            ));
            Encoding::Utf8
        }
    };
}

/// `start_position`: where a file without a checkpoint is read from, `end` by default as in
/// the Agent. The `force` forms would ignore checkpoints at every start, sending a file
/// again or skipping what was not sent: refused.
fn set_start(input: &mut Input, value: &Yaml, origin: &str, notes: &mut Notes) {
    input.read_from = match yaml11::text(value).as_deref() {
        None | Some("end") => ReadFrom::End,
        Some("beginning") => ReadFrom::Beginning,
        Some(other) => {
            notes.error(format!(
                "{origin}: start_position {other:?} would ignore the positions already shipped at every start; sidelog takes beginning or end, and always resumes where it was"
            ));
            ReadFrom::End
        }
    };
}

/// `log_processing_rules` (a source's, or the global ones), with the Agent's names.
pub(super) fn rules(value: &Yaml, origin: &str, notes: &mut Notes) -> Vec<RuleSettings> {
    let Yaml::Array(items) = value else {
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(j, r)| rule(r, &format!("{origin}: log_processing_rules[{j}]"), notes))
        .collect()
}

fn rule(r: &Yaml, origin: &str, notes: &mut Notes) -> Option<RuleSettings> {
    let text = |k: &str| yaml11::text(&r[k]).unwrap_or_default();
    let kind = match text("type").as_str() {
        "exclude_at_match" => RuleKind::ExcludeAtMatch,
        "include_at_match" => RuleKind::IncludeAtMatch,
        "mask_sequences" => RuleKind::MaskSequences,
        "multi_line" => RuleKind::MultiLine,
        "exclude_truncated" => RuleKind::ExcludeTruncated,
        other => {
            notes.error(format!(
                "{origin}: rule type {other:?} is not one sidelog applies (exclude_at_match, include_at_match, mask_sequences, multi_line, exclude_truncated)"
            ));
            return None;
        }
    };
    Some(RuleSettings {
        kind,
        name: text("name"),
        pattern: text("pattern"),
        replace_placeholder: text("replace_placeholder"),
    })
}
