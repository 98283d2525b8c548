//! Log processing at the edge, per input: multi-line aggregation ([`multiline`]: a stack
//! trace is one event), the Datadog Agent's processing rules (`exclude_at_match`,
//! `include_at_match`, `mask_sequences`, in order) and JSON lines ([`json`]: level and time
//! lifted to `status` and `timestamp`).
//!
//! An input without any of these has no [`Processor`], so the hot path pays nothing for this
//! module. Patterns use the `regex` crate, whose matching is linear in the input: a hostile
//! line cannot stall the reader. This module decides; the reader owns the per-file state
//! ([`Grouping`]) and the file ranges the events cover. It takes its own [`settings`]; the
//! configuration embeds them and checks their ranges.

mod json;
mod multiline;
pub mod settings;

use std::borrow::Cow;
use std::sync::Arc;

use regex::bytes::{Regex, RegexBuilder};

use crate::metrics::{Counter, Metrics, RuleCounter};
pub use json::json_attributes;
pub use multiline::{Grouping, LineAction, Multiline};
pub use settings::{MultilineSettings, Preset, RuleKind, RuleSettings, Settings};

/// Compiled patterns may not grow beyond this (a config error, not an allocation storm).
const MAX_PATTERN_BYTES: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
#[error("inputs[{input}].{key}: {reason}")]
pub struct ProcessError {
    input: usize,
    key: String,
    reason: String,
}

struct Rule {
    kind: RuleKind,
    re: Regex,
    placeholder: Vec<u8>,
    matches: Arc<Counter>,
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
    rules: Vec<Rule>,
    pub multiline: Option<Multiline>,
    parse_json: bool,
    excluded: Option<Arc<Metrics>>,
}

/// ASCII classes, as in the Datadog Agent's Go patterns: `\d`, `\w`, `\s` and `\b` mean
/// what they mean in RE2, and sidelog carries no Unicode tables.
fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .unicode(false)
        .size_limit(MAX_PATTERN_BYTES)
        .dfa_size_limit(MAX_PATTERN_BYTES)
        .build()
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
            input: index,
            key: key.to_string(),
            reason,
        };
        let rules = settings
            .rules
            .iter()
            .enumerate()
            .map(|(j, r)| compile_rule(r, index, j, metrics))
            .collect::<Result<Vec<_>, _>>()?;
        let multiline = settings
            .multiline
            .map(|ml| Multiline::new(ml, settings.max_line_bytes, &err))
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
    pub fn finish<'a>(&self, text: &'a [u8]) -> Option<Processed<'a>> {
        let mut text = Cow::Borrowed(text);
        for rule in &self.rules {
            match rule.kind {
                RuleKind::ExcludeAtMatch => {
                    if rule.re.is_match(&text) {
                        rule.matches.inc();
                        self.count_excluded();
                        return None;
                    }
                }
                RuleKind::IncludeAtMatch => {
                    if rule.re.is_match(&text) {
                        rule.matches.inc();
                    } else {
                        self.count_excluded();
                        return None;
                    }
                }
                RuleKind::MaskSequences => {
                    let mut found = 0u64;
                    let masked = rule
                        .re
                        .replace_all(&text, |_: &regex::bytes::Captures<'_>| {
                            found += 1;
                            rule.placeholder.as_slice()
                        });
                    if found > 0 {
                        rule.matches.add(found);
                        text = Cow::Owned(masked.into_owned());
                    }
                }
            }
        }
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

    fn count_excluded(&self) {
        if let Some(m) = &self.excluded {
            m.events_excluded.inc();
        }
    }
}

/// Compiles rule `j` of input `index`, registering its match counter.
fn compile_rule(
    r: &RuleSettings,
    index: usize,
    j: usize,
    metrics: Option<&Arc<Metrics>>,
) -> Result<Rule, ProcessError> {
    let err = |reason: String| ProcessError {
        input: index,
        key: format!("log_processing_rules[{j}]"),
        reason,
    };
    if r.name.trim().is_empty() {
        return Err(err("a rule needs a name".into()));
    }
    if r.pattern.is_empty() {
        return Err(err(format!("rule {:?}: pattern must not be empty", r.name)));
    }
    let re =
        compile(&r.pattern).map_err(|e| err(format!("rule {:?}: invalid pattern: {e}", r.name)))?;
    let matches = Arc::new(Counter::default());
    if let Some(m) = metrics {
        m.register_rule(RuleCounter {
            input: index,
            name: r.name.clone(),
            kind: r.kind.name(),
            matches: matches.clone(),
        });
    }
    Ok(Rule {
        kind: r.kind,
        re,
        placeholder: r.replace_placeholder.clone().into_bytes(),
        matches,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings(rules: &[RuleSettings]) -> Settings<'_> {
        Settings {
            rules,
            multiline: None,
            parse_json: false,
            max_line_bytes: 900_000,
        }
    }

    fn rule(kind: RuleKind, name: &str, pattern: &str, placeholder: &str) -> RuleSettings {
        RuleSettings {
            kind,
            name: name.into(),
            pattern: pattern.into(),
            replace_placeholder: placeholder.into(),
        }
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
            .finish(b"POST /api/pay card=4111 1111 1111 1111 ok")
            .expect("kept");
        assert_eq!(&*out.text, b"POST /api/pay card=[card] ok");
        assert!(p.finish(b"GET /healthz /api/").is_none(), "excluded");
        assert!(p.finish(b"GET /other").is_none(), "not included");
        let kept = p.finish(b"GET /api/users").expect("kept");
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
        assert!(p.finish(&line).is_some());
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
}
