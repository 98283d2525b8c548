//! Patterns as the Datadog Agent matches them. The Agent compiles processing rules with Go's
//! `regexp` (RE2 syntax); sidelog with the `regex` crate. Both match characters, not bytes,
//! and run in linear time, but they read a few things differently: in RE2 `\d`, `\w`, `\s`
//! and `\b` are ASCII only (`\s` is `[\t\n\f\r ]`, without the vertical tab), `\Q...\E` quotes
//! text, `[[]` and `[&&]` are plain classes, `a{` and `x{,3}` are literal braces, and `\123`
//! is an octal escape. This module rewrites an RE2 pattern into the `regex` crate's syntax
//! with the same meaning, and refuses, naming it, what neither can match the Agent's way
//! (`\C`, backreferences).
//!
//! The rewrite walks the pattern once; it does not check what the `regex` crate checks
//! anyway (groups, repetition operands), so its errors name the construct and the compiler's
//! name the rest.

use std::fmt::Write;

use regex::bytes::{Regex, RegexBuilder};

/// Compiled patterns may not grow beyond this (a config error, not an allocation storm).
const MAX_PATTERN_BYTES: usize = 4 << 20;

/// RE2's `\s`: no vertical tab (Rust's `[[:space:]]` and Perl's `\s` have one).
const SPACE: &str = r"\t\n\x0C\r ";

/// Compiles an RE2 pattern (the Agent's syntax) to match UTF-8 text by characters.
pub fn compile(pattern: &str) -> Result<Regex, String> {
    let translated = translate(pattern)?;
    RegexBuilder::new(&translated)
        .unicode(true)
        .size_limit(MAX_PATTERN_BYTES)
        .dfa_size_limit(MAX_PATTERN_BYTES)
        .build()
        .map_err(|e| compile_error(&e))
}

/// The `regex` crate's message without its multi-line drawing of the pattern.
fn compile_error(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text.lines().rev().find(|l| !l.trim().is_empty());
    match last {
        Some(l) if l.starts_with("error: ") => l.trim_start_matches("error: ").to_string(),
        _ => text,
    }
}

/// Rewrites an RE2 pattern into the `regex` crate's syntax with the same meaning.
pub fn translate(pattern: &str) -> Result<String, String> {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut rest = pattern;
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        match c {
            '\\' => rest = escape_outside_class(rest, &mut out)?,
            '[' => rest = class(rest, &mut out)?,
            '{' => match repetition(rest) {
                Some(len) => {
                    out.push('{');
                    out.push_str(&rest[..len]);
                    rest = &rest[len..];
                }
                None => out.push_str(r"\{"),
            },
            '}' => out.push_str(r"\}"),
            _ => out.push(c),
        }
    }
    Ok(out)
}

/// The length of `n}`, `n,}` or `n,m}` when one follows a `{` (RE2 takes any other `{` as a
/// literal brace).
fn repetition(after_brace: &str) -> Option<usize> {
    let close = after_brace.find('}')?;
    let inside = &after_brace[..close];
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let valid = match inside.split_once(',') {
        None => digits(inside),
        Some((lo, hi)) => digits(lo) && (hi.is_empty() || digits(hi)),
    };
    valid.then_some(close + 1)
}

/// One escape outside a class (`rest` starts after the backslash); returns what follows it.
fn escape_outside_class<'a>(rest: &'a str, out: &mut String) -> Result<&'a str, String> {
    let Some(c) = rest.chars().next() else {
        return Err("trailing backslash at the end of the pattern".into());
    };
    let after = &rest[c.len_utf8()..];
    match c {
        'd' => out.push_str("[0-9]"),
        'D' => out.push_str("[^0-9]"),
        'w' => out.push_str("[0-9A-Za-z_]"),
        'W' => out.push_str("[^0-9A-Za-z_]"),
        's' => write!(out, "[{SPACE}]").unwrap_or_default(),
        'S' => write!(out, "[^{SPACE}]").unwrap_or_default(),
        'b' => out.push_str(r"(?-u:\b)"),
        'B' => out.push_str(r"(?-u:\B)"),
        'Q' => {
            let (quoted, tail) = match after.find(r"\E") {
                Some(end) => (&after[..end], &after[end + 2..]),
                None => (after, ""),
            };
            out.push_str(&regex::escape(quoted));
            return Ok(tail);
        }
        'E' => {} // an `\E` without `\Q` quotes nothing
        'p' | 'P' => return Ok(unicode_class(c, after, out)),
        _ => return simple_escape(c, after, out),
    }
    Ok(after)
}

/// `\pL`, `\p{Greek}`, `\P{^Greek}` (RE2's negation inside the braces).
fn unicode_class<'a>(p: char, after: &'a str, out: &mut String) -> &'a str {
    let (name, tail) = match after.strip_prefix('{') {
        Some(braced) => match braced.find('}') {
            Some(close) => (&braced[..close], &braced[close + 1..]),
            None => (braced, ""),
        },
        None => match after.chars().next() {
            Some(one) => after.split_at(one.len_utf8()),
            None => ("", ""),
        },
    };
    let (p, name) = match name.strip_prefix('^') {
        Some(n) => (if p == 'p' { 'P' } else { 'p' }, n),
        None => (p, name),
    };
    let _ = write!(out, "\\{p}{{{name}}}");
    tail
}

/// Escapes that mean one character or an assertion, the same inside and outside classes.
fn simple_escape<'a>(c: char, after: &'a str, out: &mut String) -> Result<&'a str, String> {
    match c {
        'C' => Err(r"\C (any single byte) is not supported: patterns match characters".into()),
        '1'..='9' if !after.starts_with(|d: char| ('0'..='7').contains(&d)) || c > '7' => Err(
            format!(r"\{c} (a backreference) is not supported: RE2 patterns have none"),
        ),
        '0'..='7' => {
            let (value, tail) = octal(c, after);
            let _ = write!(out, "\\x{{{value:X}}}");
            Ok(tail)
        }
        'x' => {
            let (value, tail) = hex(after)?;
            let _ = write!(out, "\\x{{{value:X}}}");
            Ok(tail)
        }
        'a' | 'f' | 't' | 'n' | 'r' | 'v' | 'A' | 'z' => {
            out.push('\\');
            out.push(c);
            Ok(after)
        }
        c if c.is_ascii_punctuation() => {
            out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4])));
            Ok(after)
        }
        c => Err(format!(r"\{c} is not an escape RE2 knows")),
    }
}

/// A hex escape after its `x`: two digits, or any number in braces.
fn hex(after: &str) -> Result<(u32, &str), String> {
    let (digits, tail) = match after.strip_prefix('{') {
        Some(braced) => {
            let close = braced.find('}').ok_or(r"\x{ without its closing }")?;
            (&braced[..close], &braced[close + 1..])
        }
        None => (
            after.get(..2).unwrap_or(after),
            after.get(2..).unwrap_or(""),
        ),
    };
    u32::from_str_radix(digits, 16)
        .ok()
        .filter(|v| char::from_u32(*v).is_some())
        .map(|v| (v, tail))
        .ok_or_else(|| format!(r"\x{digits} is not a character code"))
}

/// An octal escape: the first digit and up to two more.
fn octal(first: char, after: &str) -> (u32, &str) {
    let mut value = first.to_digit(8).unwrap_or(0);
    let mut used = 0;
    for d in after.chars().take(2) {
        match d.to_digit(8) {
            Some(v) => {
                value = value * 8 + v;
                used += 1;
            }
            None => break,
        }
    }
    (value, &after[used..])
}

/// A bracketed class (`rest` starts after `[`); returns what follows its `]`.
fn class<'a>(mut rest: &'a str, out: &mut String) -> Result<&'a str, String> {
    out.push('[');
    if let Some(r) = rest.strip_prefix('^') {
        out.push('^');
        rest = r;
    }
    let mut first = true;
    loop {
        let Some(c) = rest.chars().next() else {
            return Err("missing closing ] of a character class".into());
        };
        if c == ']' && !first {
            out.push(']');
            return Ok(&rest[1..]);
        }
        first = false;
        if let Some(after) = posix_class(rest, out) {
            rest = after;
            continue;
        }
        let (lo, after) = class_atom(rest, out)?;
        rest = after;
        let Some(lo) = lo else { continue };
        match rest.strip_prefix('-') {
            Some(r) if !r.starts_with(']') && !r.is_empty() => {
                let (hi, after) = class_atom(r, out)?;
                let hi = hi.ok_or("a class range must end in a character")?;
                push_class_char(out, lo);
                out.push('-');
                push_class_char(out, hi);
                rest = after;
            }
            _ => push_class_char(out, lo),
        }
    }
}

/// `[:alpha:]` and the like, which mean the same in both syntaxes.
fn posix_class<'a>(rest: &'a str, out: &mut String) -> Option<&'a str> {
    let inner = rest.strip_prefix("[:")?;
    let end = inner.find(":]")?;
    let name = &inner[..end];
    if name.is_empty()
        || !name
            .trim_start_matches('^')
            .bytes()
            .all(|b| b.is_ascii_lowercase())
    {
        return None;
    }
    let _ = write!(out, "[:{name}:]");
    Some(&inner[end + 2..])
}

/// One item of a class: a character (returned, to be written by the caller, who may make it
/// the start of a range) or a class escape (written here).
fn class_atom<'a>(rest: &'a str, out: &mut String) -> Result<(Option<char>, &'a str), String> {
    let Some(c) = rest.chars().next() else {
        return Err("missing closing ] of a character class".into());
    };
    let after = &rest[c.len_utf8()..];
    if c != '\\' {
        return Ok((Some(c), after));
    }
    let Some(e) = after.chars().next() else {
        return Err("trailing backslash at the end of the pattern".into());
    };
    let tail = &after[e.len_utf8()..];
    let nested = match e {
        'd' => "[:digit:]",
        'D' => "[:^digit:]",
        'w' => "[:word:]",
        'W' => "[:^word:]",
        's' => SPACE,
        'S' => "[^\\t\\n\\x0C\\r ]",
        'p' | 'P' => return Ok((None, unicode_class(e, tail, out))),
        _ => {
            // A single character: decode it from the escape's own translation.
            let mut one = String::new();
            let tail = simple_escape(e, tail, &mut one)?;
            return Ok((Some(escaped_char(&one)?), tail));
        }
    };
    out.push_str(nested);
    Ok((None, tail))
}

/// The character a translated single-character escape stands for.
fn escaped_char(translated: &str) -> Result<char, String> {
    let body = translated.strip_prefix('\\').unwrap_or(translated);
    let named = match body {
        "a" => Some('\x07'),
        "f" => Some('\x0C'),
        "t" => Some('\t'),
        "n" => Some('\n'),
        "r" => Some('\r'),
        "v" => Some('\x0B'),
        _ => None,
    };
    if let Some(c) = named {
        return Ok(c);
    }
    if let Some(hex) = body.strip_prefix("x{").and_then(|h| h.strip_suffix('}')) {
        return u32::from_str_radix(hex, 16)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| format!(r"\x{{{hex}}} is not a character"));
    }
    let mut chars = body.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Ok(c),
        _ => Err(format!("{translated} cannot be used in a character class")),
    }
}

/// A character inside a class, escaped where the `regex` crate would read an operator
/// (`&&`, `--`, `~~`, a nested `[`).
fn push_class_char(out: &mut String, c: char) {
    if c.is_ascii_punctuation() {
        out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4])));
    } else if c.is_control() {
        let _ = write!(out, "\\x{{{:X}}}", c as u32);
    } else {
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, text: &str) -> bool {
        compile(pattern)
            .unwrap_or_else(|e| panic!("{pattern}: {e}"))
            .is_match(text.as_bytes())
    }

    fn found<'a>(pattern: &str, text: &'a str) -> Vec<&'a str> {
        let re = compile(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
        re.find_iter(text.as_bytes())
            .map(|m| &text[m.start()..m.end()])
            .collect()
    }

    #[test]
    fn classes_are_ascii_as_in_re2() {
        assert!(matches(r"^\d+$", "2026"));
        assert!(!matches(r"\d", "٣"), "Arabic-Indic digit");
        assert!(!matches(r"\w", "é"));
        assert!(
            matches(r"^\W$", "é"),
            "a non-word character is a whole character"
        );
        assert!(!matches(r"\s", "\x0B"), "RE2's \\s has no vertical tab");
        assert!(matches(r"^\s+$", " \t\n\x0C\r"));
        assert!(matches(r"^\S$", "\x0B"));
        assert!(!matches(r"[\s]", "\x0B"));
        assert!(matches(r"^[\S]$", "é"));
        // ASCII word boundaries, as in RE2: `é` is no word character, so none after it.
        assert!(matches(r"\bcaf", "un café noir"));
        assert!(!matches(r"\bcafé\b", "un café noir"));
        assert!(
            matches(r"^[[:space:]]$", "\x0B"),
            "POSIX space has it, in both"
        );
        assert_eq!(found(r"[\w-]+", "a-b é c_d"), ["a-b", "c_d"]);
        assert_eq!(found(r"[^\d\s]+", "ab1 é2"), ["ab", "é"]);
    }

    #[test]
    fn dot_and_negated_classes_take_whole_characters() {
        assert_eq!(found("caf.", "café!"), ["café"]);
        assert_eq!(found("[^a]", "é"), ["é"]);
        assert_eq!(found(r"\p{Greek}+", "abc αβγ"), ["αβγ"]);
        assert_eq!(found(r"\pL+", "x1é"), ["x", "é"]);
        assert_eq!(found(r"\p{^Greek}+", "αb"), ["b"]);
    }

    #[test]
    fn case_folding_is_unicode() {
        assert!(matches("(?i)CAFÉ", "café"));
        assert!(matches("(?i)σ", "Σ"));
        assert!(matches("(?i)straße", "STRAßE"));
    }

    #[test]
    fn re2_only_syntax_is_translated() {
        assert!(matches(r"\Qa.b*c\E$", "xa.b*c"));
        assert!(!matches(r"\Qa.b\E", "axb"));
        assert!(matches(r"^\Q(unclosed", "(unclosed"));
        assert!(matches(r"^a{$", "a{"), "a lone brace is a literal");
        assert!(matches(r"^x{,3}$", "x{,3}"));
        assert!(matches(r"^x{2,3}$", "xxx"));
        assert!(matches(r"^[[]$", "["));
        assert!(matches(r"^[&&]+$", "&&"));
        assert!(matches(r"^[a-c--]+$", "a-c"));
        assert!(matches(r"^[~~]$", "~"));
        assert!(matches(r"^[]a]+$", "]a"));
        assert!(matches(r"^\101\0$", "A\0"), "octal escapes");
        assert!(matches(r"^[\101-\103]+$", "ABC"));
        assert!(
            matches(r"^\<tag\>$", "<tag>"),
            "escaped punctuation is a literal"
        );
        assert!(matches(r"^a}$", "a}"));
        assert!(matches(r"^\x41\x{42}[\x{43}-\x44]$", "ABD"));
    }

    #[test]
    fn what_neither_can_match_is_refused_by_name() {
        for (pattern, needle) in [
            (r"a\Cb", r"\C"),
            (r"(a)\1", r"\1"),
            (r"(a)\8", r"\8"),
            (r"[a", "]"),
            (r"a\", "backslash"),
            (r"\j", r"\j"),
        ] {
            let err = compile(pattern).expect_err(pattern);
            assert!(err.contains(needle), "{pattern}: {err}");
        }
    }
}
