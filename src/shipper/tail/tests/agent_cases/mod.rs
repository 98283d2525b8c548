//! The Datadog Agent's own test cases for processing rules and for turning lines into
//! messages (its `pkg/logs/processor/processor_test.go` and
//! `pkg/logs/internal/decoder/{line_handler,decoder}_test.go`), run through sidelog's
//! framing, trimming, rules and encoding, and read back from the batch as the intake would.
//! Each case is named after the test it comes from and its place there. Where sidelog
//! differs on purpose, the case pins sidelog's behaviour and says why:
//!
//! - lines of a multi-line event are joined with a newline, not with the two characters
//!   `\n` the Agent uses inside its own transport (every receiver shows a newline);
//! - a piece of a cut line goes out on its own, trimmed and marked as the Agent's
//!   single-line handler does, also while multi-line grouping is on.

mod decoder;
mod processor;

use std::sync::Arc;

use crate::config::Encoding;
use crate::encode::{BatchBuilder, EventFields, EventTemplate};
use crate::metrics::Metrics;
use crate::position::StreamId;
use crate::process::{Grouping, Processor, RuleKind, RuleSettings, Settings};
use crate::tail::emit::{Events, FileEvents, LineRules, Sink, emit_read};

const M: &str = "...TRUNCATED...";

struct Case {
    from: &'static str,
    global: Vec<RuleSettings>,
    rules: Vec<RuleSettings>,
    max_line: usize,
    encoding: Encoding,
    input: Vec<u8>,
    expected: Vec<String>,
    /// Events each rule acted on, by rule name.
    counts: Vec<(&'static str, u64)>,
}

fn case(from: &'static str, rules: Vec<RuleSettings>, input: &str, expected: &[&str]) -> Case {
    Case {
        from,
        global: Vec::new(),
        rules,
        max_line: 900_000,
        encoding: Encoding::Utf8,
        input: input.as_bytes().to_vec(),
        expected: expected.iter().map(|s| s.to_string()).collect(),
        counts: Vec::new(),
    }
}

impl Case {
    fn global(mut self, rules: Vec<RuleSettings>) -> Case {
        self.global = rules;
        self
    }
    fn max_line(mut self, n: usize) -> Case {
        self.max_line = n;
        self
    }
    fn counts(mut self, counts: &[(&'static str, u64)]) -> Case {
        self.counts = counts.to_vec();
        self
    }
}

fn rule(kind: RuleKind, name: &str, pattern: &str, placeholder: &str) -> RuleSettings {
    RuleSettings::new(kind, name, pattern, placeholder)
}

fn exclude(pattern: &str) -> RuleSettings {
    rule(RuleKind::ExcludeAtMatch, "exclude", pattern, "")
}
fn include(pattern: &str) -> RuleSettings {
    rule(RuleKind::IncludeAtMatch, "include", pattern, "")
}
fn mask(pattern: &str, placeholder: &str) -> RuleSettings {
    rule(RuleKind::MaskSequences, "mask", pattern, placeholder)
}
fn multi_line(pattern: &str) -> RuleSettings {
    rule(RuleKind::MultiLine, "multi", pattern, "")
}

/// The messages a file's bytes become, and each rule's count of events acted on.
fn run(c: &Case) -> (Vec<String>, Vec<(String, u64)>) {
    let metrics = Arc::new(Metrics::default());
    let settings = Settings {
        global_rules: &c.global,
        rules: &c.rules,
        multiline: None,
        parse_json: false,
        max_line_bytes: c.max_line,
    };
    let processor =
        Processor::new(&settings, 0, Some(&metrics)).unwrap_or_else(|e| panic!("{}: {e}", c.from));
    let messages = messages_of(c, processor.as_ref());
    let counts = metrics
        .rule_counters()
        .iter()
        .map(|r| (r.name.clone(), r.matches.get()))
        .collect();
    (messages, counts)
}

fn check(cases: Vec<Case>) {
    let mut failures = Vec::new();
    for c in &cases {
        let (messages, counts) = run(c);
        if messages != c.expected {
            failures.push(format!(
                "{}: got {messages:?}, expected {:?}",
                c.from, c.expected
            ));
        }
        for (name, n) in &c.counts {
            let got: u64 = counts
                .iter()
                .filter(|(r, _)| r == name)
                .map(|(_, n)| n)
                .sum();
            if got != *n {
                failures.push(format!(
                    "{}: rule {name} counted {got}, expected {n}",
                    c.from
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// auto_multiline tests of line_handler_test.go, with sidelog's `auto` preset.
#[test]
fn auto_multi_line_as_the_agent_detects_it() {
    use crate::process::{MultilineSettings, Preset};
    let auto = MultilineSettings {
        preset: Some(Preset::Auto),
        ..MultilineSettings::default()
    };
    let run_auto = |input: &str| {
        let settings = Settings {
            global_rules: &[],
            rules: &[],
            multiline: Some(&auto),
            parse_json: false,
            max_line_bytes: 900_000,
        };
        let p = Processor::new(&settings, 0, None)
            .expect("auto")
            .expect("some");
        messages_of(&case("auto", vec![], input, &[]), Some(&p))
    };
    assert_eq!(
        run_auto("blah\nblah\nblah\nblah\nblah\nblah\n").len(),
        6,
        "TestAutoMultiLineHandlerStaysSingleLineMode"
    );
    let got = run_auto(
        "Jul 12, 2021 12:55:15 PM test message 1\nJul 12, 2021 12:55:15 PM test message 2\njava.lang.Exception: boom\nat Main.funcd(Main.java:62)\nat Main.funcc(Main.java:60)\nat Main.funcb(Main.java:58)\nJul 12, 2021 12:55:15 PM another test message\n",
    );
    assert_eq!(
        got,
        [
            "Jul 12, 2021 12:55:15 PM test message 1",
            "Jul 12, 2021 12:55:15 PM test message 2\njava.lang.Exception: boom\nat Main.funcd(Main.java:62)\nat Main.funcc(Main.java:60)\nat Main.funcb(Main.java:58)",
            "Jul 12, 2021 12:55:15 PM another test message",
        ],
        "TestAutoMultiLineHandlerHandelsMessage"
    );
}

/// What the issue's users met: a mask over `café`, `(?i)` over non-ASCII letters, `\s` and
/// the vertical tab, a `multi_line` rule anchored as the Agent compiles it (`^` + pattern).
#[test]
fn patterns_match_characters_as_re2_does() {
    check(vec![
        case(
            "mask over a two-byte character",
            vec![mask("caf.", "[masked]")],
            "un café noir\n",
            &["un [masked] noir"],
        ),
        case(
            "mask with a negated class",
            vec![mask("[^ ]+é", "X")],
            "un café noir\n",
            &["un X noir"],
        ),
        case(
            "(?i) folds non-ASCII letters",
            vec![exclude("(?i)ÉTÉ")],
            "un été\nwinter\n",
            &["winter"],
        ),
        case(
            "\\s has no vertical tab",
            vec![mask(r"a\sb", "X")],
            "a\u{0B}b a b\n",
            &["a\u{0B}b X"],
        ),
        case(
            "named groups",
            vec![mask(r"(?P<k>token)=\w+", "${k}=***")],
            "token=abc1 ok\n",
            &["token=*** ok"],
        ),
        case(
            "CompileProcessingRules anchors multi_line",
            vec![multi_line(r"\d{4}-")],
            "2026-01 a\nx 2026-02 b\n2026-03 c\n",
            &["2026-01 a\nx 2026-02 b", "2026-03 c"],
        ),
        case(
            "`^` goes before the pattern as written",
            vec![multi_line("a|b")],
            "a1\nxb\nc\n",
            &["a1", "xb\nc"],
        ),
        case(
            "invalid UTF-8 reads as U+FFFD",
            vec![mask("x.y", "[m]")],
            "x\u{FFFD}y\n",
            &["[m]"],
        ),
    ]);
    let (got, _) = run(&Case {
        input: b"x\xFFy\n".to_vec(),
        ..case("invalid byte", vec![mask("x.y", "[m]")], "", &[])
    });
    assert_eq!(
        got,
        ["[m]"],
        "an invalid byte is one character to `.`, as in Go"
    );
}

/// The messages of `c.input` through `processor` (none: lines as they are).
fn messages_of(c: &Case, processor: Option<&Processor>) -> Vec<String> {
    let rules = LineRules {
        max_line: c.max_line,
        skip_empty: true,
        trim: true,
        encoding: c.encoding,
        processor,
    };
    let template = EventTemplate::new(&EventFields {
        status: "info",
        hostname: "h",
        service: "s",
        source: "",
        tags: "",
    });
    let mut events = Events {
        builder: BatchBuilder::new(1000, 2_000_000),
        ready: Vec::new(),
    };
    let multiline = processor.and_then(|p| p.multiline.as_ref());
    let mut grouping = multiline.map(|_| Grouping::default());
    let (mut covered, mut continued) = (0, false);
    let file = FileEvents {
        template: &template,
        stream: StreamId(1),
        covered: &mut covered,
        grouping: grouping.as_mut(),
        continued: &mut continued,
    };
    emit_read(&mut events, &rules, file, &c.input, 0, true);
    if let Some(g) = grouping.as_mut() {
        let mut sink = Sink {
            events: &mut events,
            template: &template,
            stream: StreamId(1),
            processor,
            trim: true,
        };
        sink.flush(g, &mut covered);
    }
    let mut batches = std::mem::take(&mut events.ready);
    batches.extend(events.builder.take());
    batches
        .iter()
        .flat_map(|b| serde_json::from_slice::<Vec<serde_json::Value>>(&b.body).expect("JSON"))
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}
