//! Log processing at the edge, per input: multi-line aggregation (a stack trace is one event),
//! the Datadog Agent's processing rules (`exclude_at_match`, `include_at_match`,
//! `mask_sequences`, in order) and JSON lines (level and time lifted to `status` and
//! `timestamp`).
//!
//! An input without any of these has no [`Processor`], so the hot path pays nothing for this
//! module. Patterns use the `regex` crate, whose matching is linear in the input: a hostile
//! line cannot stall the reader. This module decides; the reader owns the per-file state
//! ([`Grouping`]) and the file ranges the events cover.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use regex::bytes::{Regex, RegexBuilder};

use crate::config::{Input, RuleKind};
use crate::metrics::{Counter, Metrics, RuleCounter};

/// Compiled patterns may not grow beyond this (a config error, not an allocation storm).
const MAX_PATTERN_BYTES: usize = 4 << 20;
/// Lines looked at before `auto` decides whether a file has event starts at all.
const AUTO_SAMPLE: u32 = 500;

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

/// How lines group into events.
enum Grouper {
    /// A matching line begins an event; others are appended.
    Start(Regex),
    /// A matching line is appended to the event before it; others begin events.
    Continue(Regex),
    /// Lines that start with a timestamp or a level begin events; other lines are appended
    /// to such an event, and stand alone in a file where no line starts that way.
    Auto(Regex),
}

/// Multi-line settings of an input.
pub struct Multiline {
    grouper: Grouper,
    pub timeout: Duration,
    pub max_bytes: usize,
}

/// What to do with a line, given the event being assembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineAction {
    /// Append it to the pending event (or start one if there is none).
    Append,
    /// Send the pending event; this line starts the next one.
    StartNew,
    /// Send the pending event; send this line as an event of its own.
    Alone,
}

/// The per-file state of multi-line aggregation: the event being assembled and, for `auto`,
/// what the file looks like so far.
#[derive(Default)]
pub struct Grouping {
    pub text: Vec<u8>,
    /// File range the event covers (from the first byte not covered by an earlier event).
    pub start: u64,
    pub end: u64,
    /// Where the first line's text begins in the file.
    pub text_offset: u64,
    pub valid_utf8: bool,
    pub lines: u32,
    /// Read time of the first line, Unix milliseconds.
    pub timestamp_ms: u64,
    /// When the last line was added.
    pub last: Option<std::time::Instant>,
    started_by_match: bool,
    seen: u32,
    starts: u32,
    auto_off: bool,
}

impl Grouping {
    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }

    /// Starts a new event with this line.
    pub fn begin(
        &mut self,
        line: &[u8],
        covered: u64,
        text_offset: u64,
        end: u64,
        valid: bool,
        ts: u64,
    ) {
        self.text.clear();
        self.text.extend_from_slice(line);
        self.start = covered;
        self.text_offset = text_offset;
        self.end = end;
        self.valid_utf8 = valid;
        self.lines = 1;
        self.timestamp_ms = ts;
        self.last = Some(std::time::Instant::now());
    }

    /// Appends a line (joined with `\n`).
    pub fn append(&mut self, line: &[u8], end: u64, valid: bool) {
        self.text.push(b'\n');
        self.text.extend_from_slice(line);
        self.end = end;
        self.valid_utf8 &= valid;
        self.lines += 1;
        self.last = Some(std::time::Instant::now());
    }

    /// Forgets the event once it was sent; keeps the buffer for the next one.
    pub fn clear(&mut self) {
        self.text.clear();
        self.lines = 0;
        self.last = None;
        if self.text.capacity() > 64 * 1024 {
            // One huge event must not pin its buffer for the life of the file.
            self.text = Vec::new();
        }
    }
}

impl Multiline {
    /// Decides what `line` does to the event being assembled.
    pub fn classify(&self, line: &[u8], g: &mut Grouping) -> LineAction {
        match &self.grouper {
            Grouper::Start(re) => {
                if re.is_match(line) {
                    LineAction::StartNew
                } else {
                    LineAction::Append
                }
            }
            Grouper::Continue(re) => {
                if re.is_match(line) {
                    LineAction::Append
                } else {
                    LineAction::StartNew
                }
            }
            Grouper::Auto(re) => {
                if g.auto_off {
                    return LineAction::Alone;
                }
                g.seen = g.seen.saturating_add(1);
                let start = re.is_match(line);
                if start {
                    g.starts = g.starts.saturating_add(1);
                }
                // Like the Datadog Agent's detection: a file where event starts are rare is
                // not multi-line; its lines go out one by one from then on.
                if g.seen >= AUTO_SAMPLE && g.starts * 10 < g.seen {
                    g.auto_off = true;
                    return LineAction::Alone;
                }
                if start {
                    LineAction::StartNew
                } else if !g.is_empty() && g.started_by_match {
                    LineAction::Append
                } else {
                    LineAction::Alone
                }
            }
        }
    }

    /// Records whether the event just begun began with a start line (for `auto`).
    pub fn note_begin(&self, g: &mut Grouping, action: LineAction) {
        g.started_by_match = match self.grouper {
            Grouper::Auto(_) => action == LineAction::StartNew,
            _ => true,
        };
    }
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

/// Lines that begin an event in `auto` mode: a timestamp (ISO 8601, common log, syslog,
/// klog, epoch) or a level at the start of the line, or a JSON object.
const AUTO_START: &str = r"^(?:\[?\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}|\d{4}/\d{2}/\d{2}[ T]\d{2}:\d{2}|\[?\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}|[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}|\d{2}:\d{2}:\d{2}[.,]\d|[IWEF]\d{4} \d{2}:\d{2}:\d{2}|\d{10}(?:\.\d+)?\s|\[?(?:TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|ERR|CRITICAL|FATAL|PANIC)\b|\{)";
/// Java: the exception's class line, `at ...` frames, `Caused by:`, `... N more`, and any
/// indented line continue the log line before them.
const JAVA_CONTINUE: &str = r"^(?:\s|Caused by: |\.\.\. \d+ (?:more|common frames omitted)|[a-zA-Z_$][\w$.]*(?:Exception|Error|Throwable)(?::|$))";
/// Python: indented lines, the `Traceback` header, chained-exception sentences and the final
/// `SomethingError: ...` line continue.
const PYTHON_CONTINUE: &str = r"^(?:\s|Traceback \(most recent call last\):|During handling of the above exception|The above exception was the direct cause|[A-Za-z_][\w.]*(?:Error|Exception|Warning|Exit|Interrupt)(?::|$))";
/// Go: after `panic: ...`, goroutine headers, frames, indented lines and `exit status` continue.
const GO_CONTINUE: &str =
    r"^(?:\s|goroutine \d+ \[|[\w.*/()\[\]-]+\(.*\)\s*$|created by |exit status \d+|\[signal )";

impl Processor {
    /// Compiles an input's processing; `None` when it has none. With `metrics`, each rule's
    /// matches are counted there under the rule's name.
    pub fn new(
        input: &Input,
        index: usize,
        metrics: Option<&Arc<Metrics>>,
    ) -> Result<Option<Processor>, ProcessError> {
        let err = |key: String, reason: String| ProcessError {
            input: index,
            key,
            reason,
        };
        let mut rules = Vec::new();
        for (j, r) in input.log_processing_rules.iter().enumerate() {
            let key = format!("log_processing_rules[{j}]");
            if r.name.trim().is_empty() {
                return Err(err(key, "a rule needs a name".into()));
            }
            let re = compile(&r.pattern).map_err(|e| {
                err(
                    key.clone(),
                    format!("rule {:?}: invalid pattern: {e}", r.name),
                )
            })?;
            if r.pattern.is_empty() {
                return Err(err(
                    key,
                    format!("rule {:?}: pattern must not be empty", r.name),
                ));
            }
            let matches = Arc::new(Counter::default());
            if let Some(m) = metrics {
                m.register_rule(RuleCounter {
                    input: index,
                    name: r.name.clone(),
                    kind: rule_kind_name(r.kind),
                    matches: matches.clone(),
                });
            }
            rules.push(Rule {
                kind: r.kind,
                re,
                placeholder: r.replace_placeholder.clone().into_bytes(),
                matches,
            });
        }
        let multiline = match &input.multiline {
            None => None,
            Some(ml) => {
                let grouper = match (ml.start_pattern.is_empty(), ml.preset.as_str()) {
                    (false, "") => Grouper::Start(compile(&ml.start_pattern).map_err(|e| {
                        err(
                            "multiline.start_pattern".into(),
                            format!("invalid pattern: {e}"),
                        )
                    })?),
                    (true, "auto") => Grouper::Auto(
                        compile(AUTO_START)
                            .map_err(|e| err("multiline.preset".into(), e.to_string()))?,
                    ),
                    (true, preset @ ("java" | "python" | "go")) => {
                        let pattern = match preset {
                            "java" => JAVA_CONTINUE,
                            "python" => PYTHON_CONTINUE,
                            _ => GO_CONTINUE,
                        };
                        Grouper::Continue(
                            compile(pattern)
                                .map_err(|e| err("multiline.preset".into(), e.to_string()))?,
                        )
                    }
                    (true, "") => {
                        return Err(err(
                            "multiline".into(),
                            "set start_pattern or preset (java, python, go, auto)".into(),
                        ));
                    }
                    (true, other) => {
                        return Err(err(
                            "multiline.preset".into(),
                            format!("{other:?} is not a preset (allowed: java, python, go, auto)"),
                        ));
                    }
                    (false, _) => {
                        return Err(err(
                            "multiline".into(),
                            "set start_pattern or preset, not both".into(),
                        ));
                    }
                };
                if !(1..=600_000).contains(&ml.timeout_ms) {
                    return Err(err(
                        "multiline.timeout_ms".into(),
                        format!("{} is out of range (allowed: 1 to 600000)", ml.timeout_ms),
                    ));
                }
                if ml.max_bytes > 900_000 {
                    return Err(err(
                        "multiline.max_bytes".into(),
                        format!("{} is out of range (allowed: 0 to 900000)", ml.max_bytes),
                    ));
                }
                Some(Multiline {
                    grouper,
                    timeout: Duration::from_millis(ml.timeout_ms),
                    max_bytes: if ml.max_bytes == 0 {
                        input.max_line_bytes
                    } else {
                        ml.max_bytes.min(input.max_line_bytes)
                    },
                })
            }
        };
        if rules.is_empty() && multiline.is_none() && !input.parse_json {
            return Ok(None);
        }
        Ok(Some(Processor {
            rules,
            multiline,
            parse_json: input.parse_json,
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

fn rule_kind_name(kind: RuleKind) -> &'static str {
    match kind {
        RuleKind::ExcludeAtMatch => "exclude_at_match",
        RuleKind::IncludeAtMatch => "include_at_match",
        RuleKind::MaskSequences => "mask_sequences",
    }
}

/// The attributes of a JSON line Datadog reserves for status and date. Only these fields
/// are kept; the others are skipped without being built.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct JsonAttributes {
    status: Option<serde_json::Value>,
    level: Option<serde_json::Value>,
    severity: Option<serde_json::Value>,
    lvl: Option<serde_json::Value>,
    timestamp: Option<serde_json::Value>,
    #[serde(rename = "@timestamp")]
    at_timestamp: Option<serde_json::Value>,
    #[serde(rename = "_timestamp")]
    underscore_timestamp: Option<serde_json::Value>,
    #[serde(rename = "Timestamp")]
    capital_timestamp: Option<serde_json::Value>,
    #[serde(rename = "eventTime")]
    event_time: Option<serde_json::Value>,
    date: Option<serde_json::Value>,
    time: Option<serde_json::Value>,
    ts: Option<serde_json::Value>,
}

/// Status and time of a JSON object line; nothing for anything else.
pub fn json_attributes(text: &[u8]) -> (Option<String>, Option<u64>) {
    let first = text.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return (None, None);
    }
    let Ok(attrs) = serde_json::from_slice::<JsonAttributes>(text) else {
        return (None, None);
    };
    let status = [attrs.status, attrs.level, attrs.severity, attrs.lvl]
        .into_iter()
        .flatten()
        .find_map(|v| match v {
            serde_json::Value::String(s) if !s.trim().is_empty() && s.len() <= 32 => {
                Some(s.trim().to_ascii_lowercase())
            }
            _ => None,
        });
    let timestamp = [
        attrs.timestamp,
        attrs.at_timestamp,
        attrs.underscore_timestamp,
        attrs.capital_timestamp,
        attrs.event_time,
        attrs.date,
        attrs.time,
        attrs.ts,
    ]
    .into_iter()
    .flatten()
    .find_map(|v| match v {
        serde_json::Value::Number(n) => n.as_f64().and_then(epoch_ms),
        serde_json::Value::String(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(epoch_ms)
            .or_else(|| rfc3339_ms(s.trim())),
        _ => None,
    });
    (status, timestamp)
}

/// Seconds, milliseconds, microseconds or nanoseconds since the epoch, told apart by size.
fn epoch_ms(v: f64) -> Option<u64> {
    if !v.is_finite() || v <= 0.0 {
        return None;
    }
    let ms = if v >= 1e17 {
        v / 1e6
    } else if v >= 1e14 {
        v / 1e3
    } else if v >= 1e11 {
        v
    } else {
        v * 1e3
    };
    Some(ms as u64)
}

/// `2026-11-26T10:00:00.123Z`, `2026-11-26 10:00:00+01:00` and the like, to Unix
/// milliseconds.
pub fn rfc3339_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') || b.get(i) == Some(&b',') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let frac = &s[start..i];
        if frac.is_empty() {
            return None;
        }
        let padded: String = frac.chars().chain("000".chars()).take(3).collect();
        millis = padded.parse().ok()?;
    }
    let offset_secs = match b.get(i) {
        None => 0,
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) => {
            let rest = &s[i + 1..];
            let (h, m) = rest
                .split_once(':')
                .unwrap_or((rest.get(..2)?, rest.get(2..)?));
            let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
            let secs = h * 3600 + m * 60;
            if *sign == b'+' { secs } else { -secs }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    u64::try_from(secs * 1000 + millis).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{MultilineConfig, ProcessingRule};

    fn input_with(rules: Vec<ProcessingRule>) -> Input {
        Input {
            log_processing_rules: rules,
            ..Input::default()
        }
    }

    fn rule(kind: RuleKind, name: &str, pattern: &str, placeholder: &str) -> ProcessingRule {
        ProcessingRule {
            kind,
            name: name.into(),
            pattern: pattern.into(),
            replace_placeholder: placeholder.into(),
        }
    }

    #[test]
    fn no_processing_means_no_processor() {
        assert!(
            Processor::new(&Input::default(), 0, None)
                .expect("ok")
                .is_none()
        );
    }

    #[test]
    fn rules_apply_in_order_and_count_matches() {
        let metrics = Arc::new(Metrics::default());
        let input = input_with(vec![
            rule(
                RuleKind::MaskSequences,
                "cards",
                r"\b\d{4}(?:[ -]?\d{4}){3}\b",
                "[card]",
            ),
            rule(RuleKind::ExcludeAtMatch, "health", "GET /healthz", ""),
            rule(RuleKind::IncludeAtMatch, "api", "/api/", ""),
        ]);
        let p = Processor::new(&input, 0, Some(&metrics))
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
        let input = input_with(vec![rule(RuleKind::ExcludeAtMatch, "broken", "a(b", "")]);
        let err = Processor::new(&input, 2, None)
            .err()
            .expect("error")
            .to_string();
        assert!(err.contains("inputs[2].log_processing_rules[0]"), "{err}");
        assert!(err.contains("broken"), "{err}");
        let input = Input {
            multiline: Some(MultilineConfig {
                preset: "ruby".into(),
                ..MultilineConfig::default()
            }),
            ..Input::default()
        };
        let err = Processor::new(&input, 0, None)
            .err()
            .expect("error")
            .to_string();
        assert!(
            err.contains("multiline.preset") && err.contains("ruby"),
            "{err}"
        );
    }

    #[test]
    fn a_pathological_pattern_runs_in_linear_time() {
        // Catastrophic for a backtracking engine: (a+)+$ against a long run of a's and a b.
        let input = input_with(vec![rule(RuleKind::ExcludeAtMatch, "evil", r"(a+)+$", "")]);
        let p = Processor::new(&input, 0, None).expect("ok").expect("some");
        let mut line = vec![b'a'; 100_000];
        line.push(b'b');
        let t = std::time::Instant::now();
        assert!(p.finish(&line).is_some());
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }

    #[test]
    fn json_lines_lift_status_and_timestamp() {
        let (s, t) =
            json_attributes(br#"{"level":"WARN","time":"2026-11-26T10:00:00.123Z","msg":"x"}"#);
        assert_eq!(s.as_deref(), Some("warn"));
        assert_eq!(t, Some(1_795_687_200_123));
        let (s, t) = json_attributes(
            br#"{"severity":"error","ts":1795687200.5,"nested":{"level":"debug"}}"#,
        );
        assert_eq!(s.as_deref(), Some("error"));
        assert_eq!(t, Some(1_795_687_200_500));
        let (s, t) =
            json_attributes(br#"{"status":"info","@timestamp":"2026-11-26 11:00:00+01:00"}"#);
        assert_eq!((s.as_deref(), t), (Some("info"), Some(1_795_687_200_000)));
        assert_eq!(json_attributes(b"not json {"), (None, None));
        assert_eq!(
            json_attributes(br#"{"level": 3, "msg": "no string level"}"#),
            (None, None)
        );
        assert_eq!(json_attributes(br#"{"broken": "#), (None, None));
        assert_eq!(json_attributes(br#"["an","array"]"#), (None, None));
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            rfc3339_ms("2000-02-29T12:34:56.789-02:30"),
            Some(951_836_696_789)
        );
        assert_eq!(rfc3339_ms("2026-13-01T00:00:00Z"), None);
        assert_eq!(rfc3339_ms("yesterday"), None);
    }

    fn group(ml: &MultilineConfig, lines: &[&str]) -> Vec<String> {
        let input = Input {
            multiline: Some(ml.clone()),
            ..Input::default()
        };
        let p = Processor::new(&input, 0, None).expect("ok").expect("some");
        let m = p.multiline.as_ref().expect("multiline");
        let mut g = Grouping::default();
        let mut out = Vec::new();
        for line in lines {
            let action = m.classify(line.as_bytes(), &mut g);
            let flush = |g: &mut Grouping, out: &mut Vec<String>| {
                if !g.is_empty() {
                    out.push(String::from_utf8_lossy(&g.text).into_owned());
                    g.clear();
                }
            };
            match action {
                LineAction::Append if !g.is_empty() => g.append(line.as_bytes(), 0, true),
                LineAction::Alone => {
                    flush(&mut g, &mut out);
                    out.push(line.to_string());
                }
                _ => {
                    flush(&mut g, &mut out);
                    g.begin(line.as_bytes(), 0, 0, 0, true, 0);
                    m.note_begin(&mut g, action);
                }
            }
        }
        if !g.is_empty() {
            out.push(String::from_utf8_lossy(&g.text).into_owned());
        }
        out
    }

    #[test]
    fn presets_group_stack_traces() {
        let java = MultilineConfig {
            preset: "java".into(),
            ..MultilineConfig::default()
        };
        let got = group(
            &java,
            &[
                "2026-11-26 10:00:00 INFO before",
                "2026-11-26 10:00:00 ERROR boom",
                "java.lang.IllegalStateException: bad",
                "\tat com.example.A.run(A.java:10)",
                "Caused by: java.io.IOException: disk",
                "\t... 3 more",
                "2026-11-26 10:00:01 INFO next",
            ],
        );
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(
            got[1].starts_with("2026-11-26 10:00:00 ERROR boom\njava.lang.")
                && got[1].ends_with("... 3 more"),
            "{got:?}"
        );
        let python = MultilineConfig {
            preset: "python".into(),
            ..MultilineConfig::default()
        };
        let got = group(
            &python,
            &[
                "ERROR handler failed",
                "Traceback (most recent call last):",
                "  File \"app.py\", line 3, in <module>",
                "    main()",
                "ValueError: nope",
                "INFO recovered",
            ],
        );
        assert_eq!(got, vec![
            "ERROR handler failed\nTraceback (most recent call last):\n  File \"app.py\", line 3, in <module>\n    main()\nValueError: nope".to_string(),
            "INFO recovered".to_string(),
        ]);
        let go = MultilineConfig {
            preset: "go".into(),
            ..MultilineConfig::default()
        };
        let got = group(
            &go,
            &[
                "panic: runtime error: index out of range [5] with length 3",
                "goroutine 1 [running]:",
                "main.main()",
                "\t/app/main.go:8 +0x1d",
                "exit status 2",
                "server started",
            ],
        );
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].ends_with("exit status 2"));
    }

    #[test]
    fn auto_groups_after_timestamps_and_leaves_plain_files_alone() {
        let auto = MultilineConfig {
            preset: "auto".into(),
            ..MultilineConfig::default()
        };
        let got = group(
            &auto,
            &[
                "plain line before any timestamp",
                "2026-11-26T10:00:00Z ERROR failed",
                "  detail one",
                "  detail two",
                "[2026-11-26 10:00:01] INFO ok",
            ],
        );
        assert_eq!(
            got,
            vec![
                "plain line before any timestamp",
                "2026-11-26T10:00:00Z ERROR failed\n  detail one\n  detail two",
                "[2026-11-26 10:00:01] INFO ok",
            ]
        );
        let plain: Vec<String> = (0..600).map(|i| format!("line {i}")).collect();
        let refs: Vec<&str> = plain.iter().map(String::as_str).collect();
        assert_eq!(group(&auto, &refs).len(), 600);
    }

    #[test]
    fn start_pattern_appends_everything_else() {
        let ml = MultilineConfig {
            start_pattern: r"^\d{4}-".into(),
            ..MultilineConfig::default()
        };
        let got = group(&ml, &["2026-1 a", "b", "c", "2026-2 d"]);
        assert_eq!(got, vec!["2026-1 a\nb\nc", "2026-2 d"]);
    }
}
