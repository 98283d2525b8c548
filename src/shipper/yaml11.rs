//! YAML as Kubernetes and the Datadog Agent read it. Both read YAML through Go packages that
//! follow YAML 1.1 and Go's number syntax: `0644` is the octal 420, `0x1A4` and `0o644` are
//! 420 too, `1_000` is 1000, and `yes`, `no`, `on`, `off`, `y`, `n` are booleans. `yaml-rust2`
//! reads YAML 1.2, where `0644` is 644 and `yes` is a string, and writes what it read in its
//! own form: a manifest passed through it unchanged would change meaning (`defaultMode: 644`,
//! which the API server refuses; `readOnly: "yes"`, a string).
//!
//! This module owns that difference. [`load`] keeps every plain scalar whose YAML 1.1 reading
//! is not the YAML 1.2 one exactly as it was written (as a `Yaml::Real`, which the emitter
//! prints verbatim), so whoever reads the output reads what they read in the input; and
//! [`int`] and [`bool`] read scalars the way those Go readers do.
//!
//! It also owns the bounds on what a document may cost: aliases are copied, so a document of a
//! few lines whose aliases nest ("billion laughs") would expand without end. Copies of aliased
//! nodes may add at most as many nodes as the document itself holds (and
//! [`ALIAS_NODES_FLOOR`] in any case), as Kubernetes' own YAML reader refuses excessive
//! aliasing; and nesting deeper than [`MAX_DEPTH`] is refused. Both are errors with the place in
//! the document, never an allocation that fails.

use std::collections::BTreeMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};
use yaml_rust2::yaml::Hash;
use yaml_rust2::{ScanError, Yaml};

/// Nodes that copies of aliased nodes may add whatever the document's size: ordinary reuse
/// of a block of settings stays far below it.
pub const ALIAS_NODES_FLOOR: usize = 10_000;
/// The deepest nesting of collections read; Kubernetes objects and the Agent's files stay
/// below 30.
pub const MAX_DEPTH: usize = 512;

/// Every document of `text`, its plain scalars kept as YAML 1.1 readers read them.
pub fn load(text: &str) -> Result<Vec<Yaml>, ScanError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    // Event by event rather than `Parser::load`, which recurses once per level of nesting:
    // the builder refuses what is too deep before any stack could run out, and the reading
    // stops at the first error.
    loop {
        let (event, mark) = parser.next_token()?;
        if event == Event::StreamEnd || builder.error.is_some() {
            break;
        }
        builder.on_event(event, mark);
    }
    match builder.error {
        Some(e) => Err(e),
        None => Ok(builder.docs),
    }
}

/// An integer as Go's YAML readers take it: decimal, `0x`, `0o`, `0b`, a leading `0` for
/// octal (YAML 1.1), `_` between digits, and YAML 1.1's base 60 (`1:20` is 80).
pub fn int(value: &Yaml) -> Option<i64> {
    match value {
        Yaml::Integer(i) => Some(*i),
        Yaml::Real(text) | Yaml::String(text) => parse_int(text),
        _ => None,
    }
}

/// A boolean as YAML 1.1 has them (`true`, `yes`, `on`, `y` and their opposites, in the
/// three cases YAML allows).
pub fn bool(value: &Yaml) -> Option<bool> {
    match value {
        Yaml::Boolean(b) => Some(*b),
        Yaml::Real(text) | Yaml::String(text) => parse_bool(text),
        _ => None,
    }
}

/// A scalar as text, whatever YAML made of it (`8080` and `"8080"` alike), for settings that
/// are text to the program that reads them.
pub fn text(value: &Yaml) -> Option<String> {
    match value {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "y" | "Y" => {
            Some(true)
        }
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "n" | "N" => {
            Some(false)
        }
        _ => None,
    }
}

fn parse_int(text: &str) -> Option<i64> {
    let (negative, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    // Underscores may separate digits, not start or end the number.
    if body.starts_with('_') || body.ends_with('_') || body.is_empty() {
        return None;
    }
    let digits: String = body.chars().filter(|&c| c != '_').collect();
    let magnitude = if digits.contains(':') {
        base_60(&digits)?
    } else {
        let (radix, rest) = match digits.get(..2) {
            Some("0x" | "0X") => (16, &digits[2..]),
            Some("0o" | "0O") => (8, &digits[2..]),
            Some("0b" | "0B") => (2, &digits[2..]),
            _ if digits.len() > 1 && digits.starts_with('0') => (8, &digits[1..]),
            _ => (10, digits.as_str()),
        };
        if rest.is_empty() || rest.starts_with(['+', '-']) {
            return None;
        }
        i64::from_str_radix(rest, radix).ok()?
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// `1:20:30` as 1 * 3600 + 20 * 60 + 30; every part after the first is below 60.
fn base_60(digits: &str) -> Option<i64> {
    let mut parts = digits.split(':');
    let first: i64 = parts.next()?.parse().ok()?;
    parts.try_fold(first, |acc, part| {
        let p: i64 = part.parse().ok()?;
        (part.len() <= 2 && p < 60).then(|| acc.checked_mul(60)?.checked_add(p))?
    })
}

/// Whether a plain scalar means something else than a string to a YAML 1.1 reader (so that
/// writing it back quoted, as a string, would change what it means).
fn typed_in_yaml_11(text: &str) -> bool {
    if parse_bool(text).is_some() || parse_int(text).is_some() {
        return true;
    }
    if matches!(text, "~" | "null" | "Null" | "NULL" | "") {
        return true;
    }
    // Floats: `.inf`, `.nan`, `1_000.5`, `6.8523015e+5`, base 60 (`190:20:30.15`).
    let lower = text.to_ascii_lowercase();
    let bare = lower.trim_start_matches(['+', '-']);
    if bare == ".inf" || lower == ".nan" {
        return true;
    }
    let float_chars =
        |c: char| c.is_ascii_digit() || matches!(c, '.' | '_' | ':' | 'e' | '+' | '-');
    bare.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && bare.chars().any(|c| c.is_ascii_digit())
        && bare.chars().all(float_chars)
}

/// The value of a plain scalar: as `yaml-rust2` reads it where that is also what a YAML 1.1
/// reader takes and is written back the same way; otherwise its text, kept verbatim.
fn plain_scalar(text: String) -> Yaml {
    match Yaml::from_str(&text) {
        Yaml::String(_) if !typed_in_yaml_11(&text) => Yaml::String(text),
        Yaml::Integer(i) if i.to_string() == text => Yaml::Integer(i),
        Yaml::Boolean(b) if text == b.to_string() => Yaml::Boolean(b),
        Yaml::Null if text == "~" || text == "null" => Yaml::Null,
        _ => Yaml::Real(text),
    }
}

/// Builds the documents from the parser's events; anchors are resolved by copying, within
/// the budget the module's header gives.
#[derive(Default)]
struct Builder {
    docs: Vec<Yaml>,
    /// Open collections with their anchor and the nodes in them so far, innermost last.
    stack: Vec<Open>,
    /// For each open mapping, the key waiting for its value.
    keys: Vec<Option<Yaml>>,
    /// Each anchored node, with the nodes it holds (itself included).
    anchors: BTreeMap<usize, (Yaml, usize)>,
    /// Nodes the parser produced, and nodes the copies of aliases added.
    parsed: usize,
    copied: usize,
    /// Whether the current document has its root node yet (an empty one has none).
    has_root: bool,
    error: Option<ScanError>,
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let node = match event {
            Event::SequenceStart(anchor, _) => {
                self.open(Yaml::Array(Vec::new()), anchor, mark);
                return;
            }
            Event::MappingStart(anchor, _) => {
                self.open(Yaml::Hash(Hash::new()), anchor, mark);
                self.keys.push(None);
                return;
            }
            Event::SequenceEnd => self.stack.pop().map(Open::closed),
            Event::MappingEnd => {
                self.keys.pop();
                self.stack.pop().map(Open::closed)
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.parsed += 1;
                Some(Built {
                    node: scalar(text, style, tag),
                    anchor,
                    nodes: 1,
                })
            }
            Event::Alias(anchor) => match self.copy_of(anchor, mark) {
                Some(built) => Some(built),
                None => return,
            },
            Event::DocumentStart => {
                self.has_root = false;
                return;
            }
            Event::DocumentEnd => {
                if !self.has_root {
                    self.docs.push(Yaml::BadValue);
                }
                return;
            }
            _ => return,
        };
        if let Some(node) = node {
            self.insert(node, mark);
        }
    }
}

/// A scalar with its style and tag: quoted and block scalars are strings; a plain one is
/// read as [`plain_scalar`] says unless a standard tag says what it is.
fn scalar(text: String, style: TScalarStyle, tag: Option<Tag>) -> Yaml {
    if style != TScalarStyle::Plain {
        return Yaml::String(text);
    }
    match tag {
        Some(Tag { handle, suffix }) if handle == "tag:yaml.org,2002:" && suffix == "str" => {
            Yaml::String(text)
        }
        Some(_) => Yaml::Real(text),
        None => plain_scalar(text),
    }
}

/// A collection being built.
struct Open {
    node: Yaml,
    anchor: usize,
    /// Nodes in it so far, itself included.
    nodes: usize,
}

impl Open {
    fn closed(self) -> Built {
        Built {
            node: self.node,
            anchor: self.anchor,
            nodes: self.nodes,
        }
    }
}

/// A node ready to go into its parent.
struct Built {
    node: Yaml,
    anchor: usize,
    /// Nodes it holds, itself included.
    nodes: usize,
}

impl Builder {
    /// A collection begins, unless it would nest deeper than [`MAX_DEPTH`].
    fn open(&mut self, node: Yaml, anchor: usize, mark: Marker) {
        if self.stack.len() >= MAX_DEPTH {
            self.fail(
                mark,
                format!("collections nested deeper than {MAX_DEPTH} levels"),
            );
            return;
        }
        self.parsed += 1;
        self.stack.push(Open {
            node,
            anchor,
            nodes: 1,
        });
    }

    /// A copy of the node `anchor` names, unless the copies of aliases would then hold more
    /// nodes than the document itself (or [`ALIAS_NODES_FLOOR`]).
    fn copy_of(&mut self, anchor: usize, mark: Marker) -> Option<Built> {
        let Some((node, nodes)) = self.anchors.get(&anchor) else {
            return Some(Built {
                node: Yaml::BadValue,
                anchor: 0,
                nodes: 1,
            });
        };
        let copied = self.copied.saturating_add(*nodes);
        if copied > ALIAS_NODES_FLOOR.max(self.parsed) {
            let message = format!(
                "aliases expand to more than {} nodes, more than the document itself holds (a YAML alias bomb?)",
                ALIAS_NODES_FLOOR.max(self.parsed)
            );
            self.fail(mark, message);
            return None;
        }
        self.copied = copied;
        Some(Built {
            node: node.clone(),
            anchor: 0,
            nodes: *nodes,
        })
    }

    fn fail(&mut self, mark: Marker, message: String) {
        self.error = Some(ScanError::new_string(mark, message));
    }

    fn insert(&mut self, built: Built, mark: Marker) {
        let Built {
            node,
            anchor,
            nodes,
        } = built;
        if anchor > 0 {
            self.anchors.insert(anchor, (node.clone(), nodes));
        }
        let Some(open) = self.stack.last_mut() else {
            self.docs.push(node);
            self.has_root = true;
            return;
        };
        open.nodes = open.nodes.saturating_add(nodes);
        match &mut open.node {
            Yaml::Array(items) => items.push(node),
            Yaml::Hash(hash) => {
                let Some(slot) = self.keys.last_mut() else {
                    return;
                };
                match slot.take() {
                    None => *slot = Some(node),
                    Some(key) => {
                        if hash.contains_key(&key) {
                            self.error = Some(ScanError::new_string(
                                mark,
                                format!("{key:?}: duplicated key in mapping"),
                            ));
                        }
                        hash.insert(key, node);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yaml_rust2::YamlEmitter;

    fn round_trip(text: &str) -> String {
        let docs = load(text).expect("yaml");
        let mut out = String::new();
        YamlEmitter::new(&mut out).dump(&docs[0]).expect("emit");
        out
    }

    /// Every form that a YAML 1.1 reader (kubectl, the Agent) takes otherwise than YAML 1.2
    /// comes out as it went in.
    #[test]
    fn yaml_11_scalars_come_out_as_they_went_in() {
        for form in [
            "0644",
            "0o644",
            "0x1A4",
            "0b110100100",
            "1_000",
            "-0644",
            "+12",
            "1:20",
            "190:20:30",
            ".inf",
            "-.Inf",
            ".NaN",
            "1_000.5",
            "6.8523015e+5",
            "yes",
            "no",
            "on",
            "off",
            "y",
            "N",
            "Yes",
            "OFF",
            "Null",
            "NULL",
        ] {
            let out = round_trip(&format!("value: {form}\n"));
            assert_eq!(out, format!("---\nvalue: {form}"), "{form}");
        }
    }

    #[test]
    fn plain_strings_numbers_and_quoted_values_keep_their_meaning() {
        let out = round_trip(
            "a: 420\nb: true\nc: web\nd: \"0644\"\ne: 'yes'\nf: ~\ng: [x, 7]\nh: !!str 0644\n",
        );
        assert_eq!(
            out,
            "---\na: 420\nb: true\nc: web\nd: \"0644\"\ne: \"yes\"\nf: ~\ng:\n  - x\n  - 7\nh: \"0644\""
        );
    }

    #[test]
    fn integers_and_booleans_read_as_go_reads_them() {
        let docs = load(
            "a: 0644\nb: 0o644\nc: 0x1A4\nd: 1_000\ne: 1:20\nf: 30\ng: yes\nh: off\ni: \"30\"\nj: 08\n",
        )
        .expect("yaml");
        let get = |k: &str| &docs[0][k];
        assert_eq!(int(get("a")), Some(420));
        assert_eq!(int(get("b")), Some(420));
        assert_eq!(int(get("c")), Some(420));
        assert_eq!(int(get("d")), Some(1000));
        assert_eq!(int(get("e")), Some(80));
        assert_eq!(int(get("f")), Some(30));
        assert_eq!(int(get("j")), None, "8 is not an octal digit");
        assert_eq!(bool(get("g")), Some(true));
        assert_eq!(bool(get("h")), Some(false));
        assert_eq!(text(get("i")).as_deref(), Some("30"));
        assert_eq!(text(get("f")).as_deref(), Some("30"));
    }

    /// Twelve levels of nine aliases: 9^12 copies of a short string if expanded.
    fn alias_bomb() -> String {
        let mut text = String::from("a0: &a0 [\"lol\"]\n");
        for level in 1..=12 {
            let refs: Vec<String> = (0..9).map(|_| format!("*a{}", level - 1)).collect();
            text.push_str(&format!("a{level}: &a{level} [{}]\n", refs.join(", ")));
        }
        text
    }

    #[test]
    fn an_alias_bomb_is_refused_quickly_and_by_name() {
        let started = std::time::Instant::now();
        let err = load(&alias_bomb()).expect_err("refused");
        assert!(err.to_string().contains("alias bomb"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        // Ordinary reuse of a block is read.
        let docs = load("base: &b {a: 1, bs: [1, 2, 3]}\none: *b\ntwo: *b\n").expect("yaml");
        assert_eq!(docs[0]["two"]["bs"][2], Yaml::Integer(3));
    }

    #[test]
    fn deep_nesting_is_refused() {
        // Block sequences nested on one line (`- - - x`): flow collections stop at the
        // scanner's own limit of 255 levels.
        let nested = |levels: usize| format!("{}x\n", "- ".repeat(levels));
        let err = load(&nested(MAX_DEPTH + 1)).expect_err("refused");
        assert!(err.to_string().contains("nested deeper"), "{err}");
        assert!(load(&nested(100)).is_ok());
        // Far deeper than any stack would take in recursion.
        let err = load(&nested(1_000_000)).expect_err("refused");
        assert!(err.to_string().contains("nested deeper"), "{err}");
    }

    #[test]
    fn anchors_and_duplicate_keys() {
        let docs = load("base: &b {x: 0644}\ncopy: *b\n").expect("yaml");
        assert_eq!(docs[0]["copy"], docs[0]["base"]);
        assert!(load("a: 1\na: 2\n").is_err());
        assert_eq!(load("---\n---\nk: v\n").expect("docs").len(), 2);
    }
}
