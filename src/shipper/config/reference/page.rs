//! The reference of every key as `docs/configuration.md` carries it (`sidelog check
//! --reference`): a Markdown table from [`super::SETTINGS`], the defaults read from the types.

use std::fmt::Write;

use super::SETTINGS;

/// The reference table in Markdown: key, default, meaning and range, and the Datadog Agent's
/// settings it is translated from.
pub fn markdown() -> String {
    let defaults = crate::config::load::sample_values();
    let mut out = String::from("| key | default | meaning | Datadog Agent |\n|---|---|---|---|\n");
    for s in SETTINGS {
        let default = match s.default {
            Some(text) => text.to_string(),
            None => defaults
                .get(&s.key.replace("[]", ""))
                .map(|v| format!("`{}`", shown(v)))
                .unwrap_or_else(|| "-".to_string()),
        };
        let range = s
            .range
            .map(|(lo, hi)| format!(" (allowed: {} to {})", number(lo), number(hi)))
            .unwrap_or_default();
        let agent = s
            .agent
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let agent = if agent.is_empty() {
            "-".to_string()
        } else {
            agent
        };
        let _ = writeln!(
            out,
            "| `{}` | {default} | {}{range} | {agent} |",
            s.key, s.meaning
        );
    }
    out
}

/// A default as the reference shows it: strings without quotes unless empty.
fn shown(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) if s.is_empty() => "\"\"".to_string(),
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Sizes in binary units where they are round, other numbers as they are.
fn number(n: u64) -> String {
    const MIB: u64 = 1 << 20;
    match n {
        u64::MAX => "unlimited".to_string(),
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{} GiB", n >> 30),
        n if n >= MIB && n % MIB == 0 => format!("{} MiB", n >> 20),
        n => n.to_string(),
    }
}
