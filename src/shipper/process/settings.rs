//! What an input's processing is configured with: the `multiline` table and the
//! `log_processing_rules` list, with the Datadog Agent's names. The configuration embeds these
//! types and checks their ranges; this module only says what they mean.

use serde::{Deserialize, Serialize};

/// `inputs[].multiline`: how lines group into events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MultilineSettings {
    /// A line matching this begins a new event; other lines are appended with `\n`.
    #[serde(with = "crate::optional::string")]
    pub start_pattern: Option<String>,
    /// Instead of `start_pattern`: a shape of stack trace, or `auto`.
    #[serde(with = "crate::optional::parsed")]
    pub preset: Option<Preset>,
    /// A pending event is sent after this long without a new line.
    pub timeout_ms: u64,
    /// Largest event; a longer one is sent and the next line starts a new one (0: the input's
    /// `max_line_bytes`).
    pub max_bytes: usize,
}

impl Default for MultilineSettings {
    fn default() -> Self {
        MultilineSettings {
            start_pattern: None,
            preset: None,
            timeout_ms: 1_000,
            max_bytes: 0,
        }
    }
}

/// Built-in ways lines group into events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// Exception lines, `at` frames, `Caused by:`, `... N more`.
    Java,
    /// Tracebacks up to the final `SomethingError:` line.
    Python,
    /// Panics with their goroutine dumps.
    Go,
    /// A line starting with a timestamp or a level begins an event.
    Auto,
}

impl Preset {
    const ALL: [(Preset, &'static str); 4] = [
        (Preset::Java, "java"),
        (Preset::Python, "python"),
        (Preset::Go, "go"),
        (Preset::Auto, "auto"),
    ];
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = Preset::ALL
            .iter()
            .find(|(p, _)| p == self)
            .map_or("?", |(_, n)| n);
        f.write_str(name)
    }
}

impl std::str::FromStr for Preset {
    type Err = String;

    fn from_str(s: &str) -> Result<Preset, String> {
        Preset::ALL
            .iter()
            .find(|(_, n)| *n == s.trim())
            .map(|(p, _)| *p)
            .ok_or_else(|| format!("{s:?} is not a preset (allowed: java, python, go, auto)"))
    }
}

/// One of `inputs[].log_processing_rules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSettings {
    #[serde(rename = "type")]
    pub kind: RuleKind,
    pub name: String,
    /// RE2 syntax, as the Agent's; `exclude_truncated` has none.
    #[serde(default)]
    pub pattern: String,
    /// For `mask_sequences`: what replaces each match; `$1`, `${1}` and `${name}` are the
    /// match's groups, as in Go's `Regexp.ReplaceAll`.
    #[serde(default)]
    pub replace_placeholder: String,
}

impl RuleSettings {
    pub fn new(kind: RuleKind, name: &str, pattern: &str, replace_placeholder: &str) -> Self {
        RuleSettings {
            kind,
            name: name.into(),
            pattern: pattern.into(),
            replace_placeholder: replace_placeholder.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// Drop events that match.
    ExcludeAtMatch,
    /// Drop events that do not match.
    IncludeAtMatch,
    /// Replace every match with `replace_placeholder`.
    MaskSequences,
    /// A line matching `^` + the pattern begins an event; the others are appended (the
    /// Agent's multi-line rule).
    MultiLine,
    /// Drop the pieces of lines cut at `max_line_bytes`.
    ExcludeTruncated,
}

impl RuleKind {
    /// The Agent's name, for metrics.
    pub fn name(self) -> &'static str {
        match self {
            RuleKind::ExcludeAtMatch => "exclude_at_match",
            RuleKind::IncludeAtMatch => "include_at_match",
            RuleKind::MaskSequences => "mask_sequences",
            RuleKind::MultiLine => "multi_line",
            RuleKind::ExcludeTruncated => "exclude_truncated",
        }
    }
}

/// Everything an input's processing is built from.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    /// Rules for every input, applied before the input's own.
    pub global_rules: &'a [RuleSettings],
    pub rules: &'a [RuleSettings],
    pub multiline: Option<&'a MultilineSettings>,
    pub parse_json: bool,
    /// The input's longest event: multi-line events are capped by it.
    pub max_line_bytes: usize,
}
