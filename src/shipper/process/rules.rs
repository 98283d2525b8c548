//! The Datadog Agent's processing rules, compiled and applied as the Agent applies them:
//! `exclude_at_match`, `include_at_match`, `mask_sequences` and `exclude_truncated`, in order,
//! global rules before an input's own. A mask's `replace_placeholder` is expanded as Go's
//! `Regexp.ReplaceAll` expands it (`$1`, `${1}`, `$name`, `${name}`, `$$`), and a rule counts
//! once per event it acted on, as the Agent's status page does. (`multi_line` rules group
//! lines before any of this; see `multiline`.)

use std::borrow::Cow;
use std::sync::Arc;

use regex::bytes::{Captures, Regex};

use super::re2;
use super::settings::{RuleKind, RuleSettings};
use crate::metrics::{Counter, Metrics, RuleCounter};

/// A compiled rule.
pub(super) struct Rule {
    kind: RuleKind,
    /// `None` for `exclude_truncated`, which needs no pattern.
    re: Option<Regex>,
    placeholder: Template,
    matches: Arc<Counter>,
}

/// Where a rule's matches are counted.
pub(super) struct RuleOrigin<'a> {
    /// The input whose events it counts.
    pub input: usize,
    pub metrics: Option<&'a Arc<Metrics>>,
}

/// Compiles one rule; the error names the rule and the problem (the caller adds its key).
pub(super) fn compile_rule(r: &RuleSettings, origin: RuleOrigin<'_>) -> Result<Rule, String> {
    if r.name.trim().is_empty() {
        return Err("a rule needs a name".into());
    }
    let re = match r.kind {
        RuleKind::ExcludeTruncated => None,
        _ if r.pattern.is_empty() => {
            return Err(format!("rule {:?}: pattern must not be empty", r.name));
        }
        _ => Some(
            re2::compile(&r.pattern)
                .map_err(|e| format!("rule {:?}: invalid pattern: {e}", r.name))?,
        ),
    };
    let placeholder = match &re {
        Some(re) if r.kind == RuleKind::MaskSequences => {
            Template::parse(r.replace_placeholder.as_bytes(), re)
        }
        _ => Template::default(),
    };
    let matches = Arc::new(Counter::default());
    if let Some(m) = origin.metrics {
        m.register_rule(RuleCounter {
            input: origin.input,
            name: r.name.clone(),
            kind: r.kind.name(),
            matches: matches.clone(),
        });
    }
    Ok(Rule {
        kind: r.kind,
        re,
        placeholder,
        matches,
    })
}

/// What the rules made of an event: `None` when one dropped it.
pub(super) fn apply<'a>(rules: &[Rule], text: Cow<'a, [u8]>, truncated: bool) -> Apply<'a> {
    let mut text = text;
    for rule in rules {
        let Some(re) = &rule.re else {
            // exclude_truncated
            if truncated {
                rule.matches.inc();
                return Apply::Dropped;
            }
            continue;
        };
        match rule.kind {
            RuleKind::ExcludeAtMatch if re.is_match(&text) => {
                rule.matches.inc();
                return Apply::Dropped;
            }
            RuleKind::IncludeAtMatch if !re.is_match(&text) => return Apply::Dropped,
            RuleKind::IncludeAtMatch => rule.matches.inc(),
            RuleKind::MaskSequences => {
                if let Some(masked) = mask(re, &rule.placeholder, &text) {
                    rule.matches.inc();
                    text = Cow::Owned(masked);
                }
            }
            _ => {}
        }
    }
    Apply::Kept(text)
}

/// What became of an event.
pub(super) enum Apply<'a> {
    Kept(Cow<'a, [u8]>),
    Dropped,
}

/// `text` with every match replaced; `None` when that changes nothing (the Agent counts a
/// mask only when the content changed).
fn mask(re: &Regex, placeholder: &Template, text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut last = 0;
    if let Some(literal) = placeholder.literal() {
        for m in re.find_iter(text) {
            out.extend_from_slice(&text[last..m.start()]);
            out.extend_from_slice(literal);
            last = m.end();
        }
    } else {
        for caps in re.captures_iter(text) {
            let Some(m) = caps.get(0) else { continue };
            out.extend_from_slice(&text[last..m.start()]);
            placeholder.expand(&caps, &mut out);
            last = m.end();
        }
    }
    if out.is_empty() && last == 0 {
        return None;
    }
    out.extend_from_slice(&text[last..]);
    (out != text).then_some(out)
}

/// A `replace_placeholder`, parsed once: text, and the groups it refers to.
#[derive(Debug, Default, Clone, PartialEq)]
struct Template {
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(Vec<u8>),
    /// A group of the pattern; a reference to a group that does not exist expands to
    /// nothing, as in Go, and is not kept.
    Group(usize),
}

impl Template {
    /// Parses Go's template syntax: `$$` is a `$`; `$name` takes the longest run of letters,
    /// digits and `_` (so `$1x` names the group `1x`); `${name}` ends at the brace; a name of
    /// digits without a leading zero is a group number; any other `$` is itself.
    fn parse(template: &[u8], re: &Regex) -> Template {
        let mut pieces = Vec::new();
        let mut text = Vec::new();
        let mut rest = template;
        while let Some(at) = memchr::memchr(b'$', rest) {
            text.extend_from_slice(&rest[..at]);
            rest = &rest[at + 1..];
            if let Some(after) = rest.strip_prefix(b"$") {
                text.push(b'$');
                rest = after;
                continue;
            }
            let Some((name, after)) = reference(rest) else {
                text.push(b'$');
                continue;
            };
            rest = after;
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            if let Some(group) = group_index(name, re) {
                pieces.push(Piece::Group(group));
            }
        }
        text.extend_from_slice(rest);
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Template { pieces }
    }

    /// The whole template when it refers to no group (a mask then needs no captures).
    fn literal(&self) -> Option<&[u8]> {
        match self.pieces.as_slice() {
            [] => Some(&[]),
            [Piece::Text(t)] => Some(t),
            _ => None,
        }
    }

    fn expand(&self, caps: &Captures<'_>, out: &mut Vec<u8>) {
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.extend_from_slice(t),
                Piece::Group(i) => {
                    if let Some(m) = caps.get(*i) {
                        out.extend_from_slice(m.as_bytes());
                    }
                }
            }
        }
    }
}

/// The name after a `$` (`name` or `{name}`) and what follows it; `None` when there is none.
fn reference(after_dollar: &[u8]) -> Option<(&str, &[u8])> {
    let (braced, body) = match after_dollar.strip_prefix(b"{") {
        Some(b) => (true, b),
        None => (false, after_dollar),
    };
    let text = match std::str::from_utf8(body) {
        Ok(t) => t,
        Err(e) => std::str::from_utf8(&body[..e.valid_up_to()]).unwrap_or_default(),
    };
    let len: usize = text
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .map(char::len_utf8)
        .sum();
    if len == 0 {
        return None;
    }
    let name = &text[..len];
    if braced {
        let after = body[len..].strip_prefix(b"}")?;
        return Some((name, after));
    }
    Some((name, &body[len..]))
}

/// The group a template name refers to: a number (no leading zero), else a group's name.
fn group_index(name: &str, re: &Regex) -> Option<usize> {
    let numeric =
        name.bytes().all(|b| b.is_ascii_digit()) && !(name.len() > 1 && name.starts_with('0'));
    if numeric {
        return name.parse().ok().filter(|&i| i < re.captures_len());
    }
    re.capture_names().position(|n| n == Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Go's `ReplaceAll(text, template)` with `pattern`.
    fn replace_all(pattern: &str, template: &str, text: &str) -> String {
        let re = re2::compile(pattern).expect("pattern");
        let t = Template::parse(template.as_bytes(), &re);
        let out = mask(&re, &t, text.as_bytes()).unwrap_or_else(|| text.as_bytes().to_vec());
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn templates_expand_as_go_does() {
        let p = r"(?P<key>\w+)=(\d+)";
        for (template, expected) in [
            ("${1}", "a b"),
            ("$1", "a b"),
            ("${2}", "1 2"),
            ("$2x", " "), // `$2x` names a group `2x`, which does not exist
            ("${2}x", "1x 2x"),
            ("$key", "a b"),
            ("${key}:$2", "a:1 b:2"),
            ("$$1", "$1 $1"),
            ("$", "$ $"),
            ("$-", "$- $-"),
            ("${1", "${1 ${1"), // unclosed: the `$` is itself
            ("$9", " "),        // no such group: nothing
            ("$01", " "),       // a leading zero is a name, not a number
            ("[$0]", "[a=1] [b=2]"),
            ("${}", "${} ${}"),
        ] {
            assert_eq!(replace_all(p, template, "a=1 b=2"), expected, "{template}");
        }
    }

    #[test]
    fn empty_matches_next_to_a_match_are_skipped_as_in_go() {
        assert_eq!(replace_all("a*", "X", "baaac"), "XbXcX");
        assert_eq!(replace_all("", "-", "abc"), "-a-b-c-");
    }

    #[test]
    fn a_mask_that_changes_nothing_is_no_match() {
        let re = re2::compile("abc").expect("pattern");
        let t = Template::parse(b"abc", &re);
        assert_eq!(mask(&re, &t, b"xabcx"), None);
        assert_eq!(mask(&re, &t, b"none"), None);
    }
}
