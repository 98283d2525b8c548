//! Log processing at the edge, per input: multi-line aggregation ([`multiline`]: a stack
//! trace is one event), the Datadog Agent's processing rules ([`rules`]: global ones, then
//! the input's, in order) and JSON lines ([`json`]: level and time lifted to `status` and
//! `timestamp`).
//!
//! An input without any of these has no [`Processor`], so the hot path pays nothing for this
//! module. Patterns are the Agent's RE2 syntax, rewritten for the `regex` crate ([`re2`]),
//! whose matching is linear in the input: a hostile line cannot stall the reader. This module decides; the reader owns the per-file state
//! ([`Grouping`]) and the file ranges the events cover. It takes its own [`settings`]; the
//! configuration embeds them and checks their ranges.

mod json;
mod multiline;
mod re2;
mod rules;
pub mod settings;
mod trim;

use std::borrow::Cow;
use std::sync::Arc;

use crate::metrics::Metrics;
pub use json::json_attributes;
pub use multiline::{Grouping, LineAction, Multiline};
use rules::{Apply, Rule, RuleOrigin};
pub use settings::{MultilineSettings, Preset, RuleKind, RuleSettings, Settings};
pub use trim::trim_space;

/// A setting of an input's processing that cannot be used, with its key.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ProcessError {
    key: String,
    reason: String,
}

/// What becomes of an event after the rules.
pub struct Processed<'a> {
    pub text: Cow<'a, [u8]>,
    /// From a JSON line's level (`parse_json`).
    pub status: Option<String>,
    /// From a JSON line's time, Unix milliseconds (`parse_json`).
    pub timestamp_ms: Option<u64>,
}

/// An input's processing: multi-line aggregation, rules and JSON attributes.
pub struct Processor {
    /// The global rules first, then the input's own, as the Agent applies them.
    rules: Vec<Rule>,
    pub multiline: Option<Multiline>,
    parse_json: bool,
    excluded: Option<Arc<Metrics>>,
}

impl Processor {
    /// Compiles input `index`'s processing; `None` when it has none. With `metrics`, each
    /// rule's matches are counted there under the rule's name. Errors name the key.
    pub fn new(
        settings: &Settings<'_>,
        index: usize,
        metrics: Option<&Arc<Metrics>>,
    ) -> Result<Option<Processor>, ProcessError> {
        let err = |key: &str, reason: String| ProcessError {
            key: format!("inputs[{index}].{key}"),
            reason,
        };
        let mut rules = Vec::new();
        let sources = [
            (settings.global_rules, "log_processing_rules".to_string()),
            (
                settings.rules,
                format!("inputs[{index}].log_processing_rules"),
            ),
        ];
        for (list, prefix) in sources {
            for (j, r) in list.iter().enumerate() {
                let key = format!("{prefix}[{j}]");
                if r.kind == RuleKind::MultiLine {
                    continue;
                }
                let origin = RuleOrigin {
                    input: index,
                    metrics,
                };
                let rule = rules::compile_rule(r, origin)
                    .map_err(|reason| ProcessError { key, reason })?;
                rules.push(rule);
            }
        }
        let multiline = multiline_settings(settings, &err)?
            .map(|ml| Multiline::new(&ml, settings.max_line_bytes, &err))
            .transpose()?;
        if rules.is_empty() && multiline.is_none() && !settings.parse_json {
            return Ok(None);
        }
        Ok(Some(Processor {
            rules,
            multiline,
            parse_json: settings.parse_json,
            excluded: metrics.cloned(),
        }))
    }

    /// Applies the rules in order, then `parse_json`; `None` when a rule drops the event.
    /// `truncated`: the event is a piece of a line cut at `max_line_bytes` (its text carries
    /// the `...TRUNCATED...` marks already, as the Agent's does when its rules run).
    pub fn finish<'a>(&self, text: Cow<'a, [u8]>, truncated: bool) -> Option<Processed<'a>> {
        let text = match rules::apply(&self.rules, text, truncated) {
            Apply::Kept(text) => text,
            Apply::Dropped => {
                if let Some(m) = &self.excluded {
                    m.events_excluded.inc();
                }
                return None;
            }
        };
        let (status, timestamp_ms) = if self.parse_json {
            json_attributes(&text)
        } else {
            (None, None)
        };
        Some(Processed {
            text,
            status,
            timestamp_ms,
        })
    }
}

/// The input's multi-line grouping: its `multiline` table, or its `multi_line` rule, which
/// the Agent anchors by putting `^` before the pattern as written (so `a|b` is `^a|b`). With
/// several such rules the last one counts, as in the Agent.
fn multiline_settings(
    settings: &Settings<'_>,
    err: &dyn Fn(&str, String) -> ProcessError,
) -> Result<Option<MultilineSettings>, ProcessError> {
    let rule = settings
        .rules
        .iter()
        .rev()
        .find(|r| r.kind == RuleKind::MultiLine);
    match (settings.multiline, rule) {
        (Some(ml), None) => Ok(Some(ml.clone())),
        (None, None) => Ok(None),
        (Some(_), Some(r)) => Err(err(
            "multiline",
            format!(
                "set a multiline table or a multi_line rule ({:?}), not both",
                r.name
            ),
        )),
        (None, Some(r)) if r.pattern.is_empty() => Err(err(
            "log_processing_rules",
            format!("rule {:?}: pattern must not be empty", r.name),
        )),
        (None, Some(r)) => Ok(Some(MultilineSettings {
            start_pattern: Some(format!("^{}", r.pattern)),
            ..MultilineSettings::default()
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings(rules: &[RuleSettings]) -> Settings<'_> {
        Settings {
            global_rules: &[],
            rules,
            multiline: None,
            parse_json: false,
            max_line_bytes: 900_000,
        }
    }

    fn rule(kind: RuleKind, name: &str, pattern: &str, placeholder: &str) -> RuleSettings {
        RuleSettings::new(kind, name, pattern, placeholder)
    }

    #[test]
    fn no_processing_means_no_processor() {
        assert!(
            Processor::new(&settings(&[]), 0, None)
                .expect("ok")
                .is_none()
        );
    }

    #[test]
    fn rules_apply_in_order_and_count_matches() {
        let metrics = Arc::new(Metrics::default());
        let rules = [
            rule(
                RuleKind::MaskSequences,
                "cards",
                r"\b\d{4}(?:[ -]?\d{4}){3}\b",
                "[card]",
            ),
            rule(RuleKind::ExcludeAtMatch, "health", "GET /healthz", ""),
            rule(RuleKind::IncludeAtMatch, "api", "/api/", ""),
        ];
        let p = Processor::new(&settings(&rules), 0, Some(&metrics))
            .expect("ok")
            .expect("some");
        let out = p
            .finish(
                Cow::Borrowed(b"POST /api/pay card=4111 1111 1111 1111 ok"),
                false,
            )
            .expect("kept");
        assert_eq!(&*out.text, b"POST /api/pay card=[card] ok");
        assert!(
            p.finish(Cow::Borrowed(b"GET /healthz /api/"), false)
                .is_none(),
            "excluded"
        );
        assert!(
            p.finish(Cow::Borrowed(b"GET /other"), false).is_none(),
            "not included"
        );
        let kept = p
            .finish(Cow::Borrowed(b"GET /api/users"), false)
            .expect("kept");
        assert!(
            matches!(kept.text, Cow::Borrowed(_)),
            "no copy without a mask match"
        );
        let counts: Vec<(String, u64)> = metrics
            .rule_counters()
            .iter()
            .map(|c| (c.name.clone(), c.matches.get()))
            .collect();
        assert_eq!(
            counts,
            vec![("cards".into(), 1), ("health".into(), 1), ("api".into(), 2)]
        );
        assert_eq!(metrics.events_excluded.get(), 2);
    }

    #[test]
    fn bad_patterns_and_settings_name_the_rule() {
        let rules = [rule(RuleKind::ExcludeAtMatch, "broken", "a(b", "")];
        let err = Processor::new(&settings(&rules), 2, None)
            .err()
            .expect("error")
            .to_string();
        assert!(err.contains("inputs[2].log_processing_rules[0]"), "{err}");
        assert!(err.contains("broken"), "{err}");
        let both = MultilineSettings {
            start_pattern: Some("^x".into()),
            preset: Some(Preset::Java),
            ..MultilineSettings::default()
        };
        let err = Processor::new(
            &Settings {
                multiline: Some(&both),
                ..settings(&[])
            },
            0,
            None,
        )
        .err()
        .expect("error")
        .to_string();
        assert!(
            err.contains("inputs[0].multiline") && err.contains("not both"),
            "{err}"
        );
        assert!("ruby".parse::<Preset>().is_err_and(|e| e.contains("ruby")));
    }

    #[test]
    fn a_pathological_pattern_runs_in_linear_time() {
        // Catastrophic for a backtracking engine: (a+)+$ against a long run of a's and a b.
        let rules = [rule(RuleKind::ExcludeAtMatch, "evil", r"(a+)+$", "")];
        let p = Processor::new(&settings(&rules), 0, None)
            .expect("ok")
            .expect("some");
        let mut line = vec![b'a'; 100_000];
        line.push(b'b');
        let t = std::time::Instant::now();
        assert!(p.finish(Cow::Borrowed(&line), false).is_some());
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
}
