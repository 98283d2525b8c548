//! Multi-line aggregation: which lines begin an event and which are appended to the one
//! before (`start_pattern`, or the `java`, `python`, `go` and `auto` presets), and the
//! per-file state of the event being assembled ([`Grouping`], owned by the reader).

use std::time::Duration;

use regex::bytes::Regex;

use super::ProcessError;
use super::re2::compile;
use super::settings::{MultilineSettings, Preset};

/// Lines looked at before `auto` decides whether a file has event starts at all.
const AUTO_SAMPLE: u32 = 500;

/// Lines that begin an event in `auto` mode: a timestamp (ISO 8601, common log, syslog,
/// klog, Java's `Jul 12, 2021 12:55:15 PM`, epoch) or a level at the start of the line, or
/// a JSON object.
const AUTO_START: &str = r"^(?:\[?\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}|[A-Z][a-z]{2} \d{1,2}, \d{4} \d{1,2}:\d{2}:\d{2}|\d{4}/\d{2}/\d{2}[ T]\d{2}:\d{2}|\[?\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}|[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}|\d{2}:\d{2}:\d{2}[.,]\d|[IWEF]\d{4} \d{2}:\d{2}:\d{2}|\d{10}(?:\.\d+)?\s|\[?(?:TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|ERR|CRITICAL|FATAL|PANIC)\b|\{)";
/// Java: the exception's class line, `at ...` frames, `Caused by:`, `... N more`, and any
/// indented line continue the log line before them.
const JAVA_CONTINUE: &str = r"^(?:\s|Caused by: |\.\.\. \d+ (?:more|common frames omitted)|[a-zA-Z_$][\w$.]*(?:Exception|Error|Throwable)(?::|$))";
/// Python: indented lines, the `Traceback` header, chained-exception sentences and the final
/// `SomethingError: ...` line continue.
const PYTHON_CONTINUE: &str = r"^(?:\s|Traceback \(most recent call last\):|During handling of the above exception|The above exception was the direct cause|[A-Za-z_][\w.]*(?:Error|Exception|Warning|Exit|Interrupt)(?::|$))";
/// Go: after `panic: ...`, goroutine headers, frames, indented lines and `exit status` continue.
const GO_CONTINUE: &str =
    r"^(?:\s|goroutine \d+ \[|[\w.*/()\[\]-]+\(.*\)\s*$|created by |exit status \d+|\[signal )";

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

/// Multi-line settings of an input, compiled.
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

impl Multiline {
    /// Compiles an input's multi-line settings; errors name `inputs[i].multiline...`.
    pub(super) fn new(
        ml: &MultilineSettings,
        max_line_bytes: usize,
        err: &dyn Fn(&str, String) -> ProcessError,
    ) -> Result<Multiline, ProcessError> {
        let preset_pattern = |p: Preset| match p {
            Preset::Java => JAVA_CONTINUE,
            Preset::Python => PYTHON_CONTINUE,
            Preset::Go => GO_CONTINUE,
            Preset::Auto => AUTO_START,
        };
        let grouper = match (&ml.start_pattern, ml.preset) {
            (Some(pattern), None) => Grouper::Start(
                compile(pattern)
                    .map_err(|e| err("multiline.start_pattern", format!("invalid pattern: {e}")))?,
            ),
            (None, Some(preset)) => {
                let re = compile(preset_pattern(preset)).map_err(|e| err("multiline.preset", e))?;
                if preset == Preset::Auto {
                    Grouper::Auto(re)
                } else {
                    Grouper::Continue(re)
                }
            }
            (None, None) => {
                return Err(err(
                    "multiline",
                    "set start_pattern or preset (java, python, go, auto)".into(),
                ));
            }
            (Some(_), Some(_)) => {
                return Err(err(
                    "multiline",
                    "set start_pattern or preset, not both".into(),
                ));
            }
        };
        Ok(Multiline {
            grouper,
            timeout: Duration::from_millis(ml.timeout_ms),
            max_bytes: if ml.max_bytes == 0 {
                max_line_bytes
            } else {
                ml.max_bytes.min(max_line_bytes)
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(ml: &MultilineSettings, lines: &[&str]) -> Vec<String> {
        let no_error = |_: &str, reason: String| -> ProcessError { panic!("{reason}") };
        let m = Multiline::new(ml, 900_000, &no_error).expect("compiles");
        let m = &m;
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
        let java = MultilineSettings {
            preset: Some(Preset::Java),
            ..MultilineSettings::default()
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
        let python = MultilineSettings {
            preset: Some(Preset::Python),
            ..MultilineSettings::default()
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
        let go = MultilineSettings {
            preset: Some(Preset::Go),
            ..MultilineSettings::default()
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
        let auto = MultilineSettings {
            preset: Some(Preset::Auto),
            ..MultilineSettings::default()
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
        let ml = MultilineSettings {
            start_pattern: Some(r"^\d{4}-".into()),
            ..MultilineSettings::default()
        };
        let got = group(&ml, &["2026-1 a", "b", "c", "2026-2 d"]);
        assert_eq!(got, vec!["2026-1 a\nb\nc", "2026-2 d"]);
    }
}
