//! Processing at the edge, end to end: multi-line events across reads, rotation, timeouts and
//! crashes; processing rules and their order; JSON lines. The real binary and intake.

use std::time::{Duration, Instant};

use crate::harness::*;
use sidelog_shipper::config::{
    Config, Encoding, Input, MultilineSettings, Preset, RuleKind, RuleSettings,
};

const T: Duration = Duration::from_secs(60);

/// A config with 100 ms batches whose input `input` adjusts, and the rest `more` adjusts.
fn config_with(
    h: &Harness,
    input: impl FnOnce(&mut Input),
    more: impl FnOnce(&mut Config),
) -> std::path::PathBuf {
    h.config_with(|c| {
        c.batch.timeout_ms = 100;
        input(&mut c.inputs[0]);
        more(c);
    })
}

/// Multi-line grouping with `timeout_ms`, by a preset or a start pattern.
fn multiline(
    preset: Option<Preset>,
    start_pattern: Option<&str>,
    timeout_ms: u64,
) -> Option<MultilineSettings> {
    Some(MultilineSettings {
        preset,
        start_pattern: start_pattern.map(String::from),
        timeout_ms,
        ..MultilineSettings::default()
    })
}

/// A Java-style trace of `frames` frames for error `n`.
fn java_trace(n: usize, frames: usize) -> Vec<String> {
    let mut lines = vec![
        format!("2026-11-26 10:00:{:02} ERROR request {n} failed", n % 60),
        format!("java.lang.IllegalStateException: state {n}"),
    ];
    for f in 0..frames {
        lines.push(format!(
            "\tat com.example.Service{f}.handle(Service{f}.java:{})",
            10 + f
        ));
    }
    lines.push(format!("Caused by: java.io.IOException: disk {n}"));
    lines.push("\t... 12 more".to_string());
    lines
}

#[test]
fn stack_traces_split_across_reads_arrive_whole() {
    let mut h = Harness::with_intake();
    let mut expected = Vec::new();
    let mut all = Vec::new();
    for n in 0..200 {
        let trace = java_trace(n, 20 + n % 7);
        expected.push(trace.join("\n"));
        all.extend(trace);
    }
    append(&h.log("app.log"), all);
    // 4 KiB reads: almost every trace (1.2-1.5 KB) spans two reads or more.
    let config = config_with(
        &h,
        |i| i.multiline = multiline(Some(Preset::Java), None, 300),
        |c| c.tail.read_buffer_bytes = 4096,
    );
    h.start(&config);
    h.wait_events(200, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    assert_lines(&h.messages(), &expected, "one event per trace");
}

#[test]
fn a_trace_cut_by_rotation_loses_no_line() {
    let mut h = Harness::with_intake();
    let log = h.log("app.log");
    let trace = java_trace(1, 10);
    // The old file ends in the middle of a trace; the rest goes to the new file.
    append(&log, trace[..6].to_vec());
    let config = config_with(
        &h,
        |i| i.multiline = multiline(Some(Preset::Java), None, 60_000),
        |c| c.tail.rotated_linger_ms = 300,
    );
    h.start(&config);
    h.wait_stderr("caught up with file", T);
    std::fs::rename(&log, h.log("app.log.1")).expect("rotate");
    append(&log, trace[6..].to_vec());
    append(&log, vec!["2026-11-26 10:00:09 INFO after".to_string()]);
    // The old file's part goes out when the file is closed, long before its 60 s timeout.
    h.wait_events(2, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    let msgs = h.messages();
    // Two files, two streams: the old part is one event, whenever it arrives.
    let old = trace[..6].join("\n");
    assert!(msgs.contains(&old), "{msgs:?}");
    // The new file's part (continuation lines first) and the next line, shipped at shutdown.
    let rest: Vec<String> = msgs
        .iter()
        .filter(|m| **m != old)
        .flat_map(|m| m.split('\n'))
        .map(String::from)
        .collect();
    let mut want = trace[6..].to_vec();
    // The event is trimmed as a whole, as the Agent trims it: its first line loses its tab.
    want[0] = want[0].trim_start().to_string();
    want.push("2026-11-26 10:00:09 INFO after".into());
    assert_lines(&rest, &want, "no line lost");
}

#[test]
fn a_pending_event_goes_out_after_its_timeout_and_only_then() {
    let mut h = Harness::with_intake();
    let log = h.log("app.log");
    std::fs::write(&log, b"").expect("create");
    let config = config_with(
        &h,
        |i| i.multiline = multiline(None, Some(r"^\d{4}-"), 2000),
        |_| {},
    );
    h.start(&config);
    h.wait_stderr("tailing file", T);
    let written = Instant::now();
    append(
        &log,
        vec![
            "2026-11-26 a lonely line".into(),
            "  with its detail".into(),
        ],
    );
    h.wait_events(1, T);
    let took = written.elapsed();
    assert!(took >= Duration::from_millis(1900), "sent after {took:?}");
    assert!(took < Duration::from_millis(4000), "sent after {took:?}");
    assert_eq!(
        h.messages(),
        vec!["2026-11-26 a lonely line\n  with its detail"]
    );
    assert!(h.terminate().success(), "{}", h.stderr());
}

#[test]
fn checkpoints_never_pass_a_pending_event() {
    let mut h = Harness::with_intake();
    let log = h.log("app.log");
    append(
        &log,
        vec![
            "2026-11-26 first".into(),
            "2026-11-26 second".into(),
            "  detail".into(),
        ],
    );
    let config = config_with(
        &h,
        |i| i.multiline = multiline(None, Some(r"^\d{4}-"), 600_000),
        |_| {},
    );
    let env = [("SIDELOG_CHECKPOINT_INTERVAL_MS", "10")];
    h.start_with_env(&config, &env);
    h.wait_events(1, T);
    // The checkpoint written after "first" was accepted stops before "second", which is
    // still pending (it waits for a line that does not start with a date).
    wait_for("a checkpoint for app.log", T, || {
        h.checkpoint_offsets()
            .is_some_and(|c| c.iter().any(|(_, offset)| *offset > 0))
    });
    let first = "2026-11-26 first\n".len() as u64;
    assert_eq!(
        h.checkpoint_offsets().expect("checkpoints"),
        vec![(log.display().to_string(), first)]
    );
    h.kill9();
    h.start_with_env(&config, &env);
    h.wait_stderr("caught up with file", T);
    // SIGTERM sends the pending event; nothing is lost or repeated.
    assert!(h.terminate().success(), "{}", h.stderr());
    assert_eq!(
        h.messages(),
        vec!["2026-11-26 first", "2026-11-26 second\n  detail"]
    );
}

#[test]
fn rules_apply_in_the_order_given() {
    let lines = vec![
        "GET /healthz 200".to_string(),
        "POST /api/pay card=4111 1111 1111 1111 ok".to_string(),
        "POST /api/pay card=5500-0000-0000-0004 ok".to_string(),
        "GET /api/users 200".to_string(),
        "GET /static/app.js 200".to_string(),
    ];
    let mask = RuleSettings::new(
        RuleKind::MaskSequences,
        "cards",
        r"\b\d{4}(?:[ -]?\d{4}){3}\b",
        "[card]",
    );
    let exclude_health = RuleSettings::new(RuleKind::ExcludeAtMatch, "health", "healthz", "");
    let include_api = RuleSettings::new(RuleKind::IncludeAtMatch, "api", "/api/", "");
    let exclude_masked = RuleSettings::new(RuleKind::ExcludeAtMatch, "masked", r"\[card\]", "");
    for (rules, expected) in [
        (
            vec![mask.clone(), exclude_health.clone(), include_api.clone()],
            vec![
                "POST /api/pay card=[card] ok",
                "POST /api/pay card=[card] ok",
                "GET /api/users 200",
            ],
        ),
        // Masking first, then dropping what was masked: order matters.
        (
            vec![mask.clone(), exclude_masked.clone()],
            vec![
                "GET /healthz 200",
                "GET /api/users 200",
                "GET /static/app.js 200",
            ],
        ),
        // The other way round, the exclusion sees no placeholder yet.
        (
            vec![exclude_masked.clone(), mask.clone()],
            vec![
                "GET /healthz 200",
                "POST /api/pay card=[card] ok",
                "POST /api/pay card=[card] ok",
                "GET /api/users 200",
                "GET /static/app.js 200",
            ],
        ),
    ] {
        let mut h = Harness::with_intake();
        append(&h.log("app.log"), lines.clone());
        let order: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
        let order = order.join(", ");
        let config = config_with(&h, |i| i.log_processing_rules = rules, |_| {});
        let base = h.start_with_admin(&config, &[]);
        h.wait_events(expected.len() as u64, T);
        let metrics = h.rt.block_on(async {
            reqwest::get(format!("{base}/metrics"))
                .await
                .expect("get")
                .text()
                .await
                .expect("text")
        });
        assert!(h.terminate().success(), "{}", h.stderr());
        let expected: Vec<String> = expected.into_iter().map(String::from).collect();
        assert_lines(&h.messages(), &expected, &order);
        assert!(
            metrics.contains("sidelog_processing_rule_matches_total{input=\"0\",rule=\"cards\",type=\"mask_sequences\"} 2"),
            "{metrics}"
        );
    }
}

#[test]
fn a_pathological_pattern_does_not_stall_the_pipeline() {
    let mut h = Harness::with_intake();
    let mut evil = "a".repeat(200_000);
    evil.push('b');
    append(&h.log("app.log"), vec![evil.clone(), "after".to_string()]);
    let evil_rule = RuleSettings::new(RuleKind::ExcludeAtMatch, "evil", "(a+)+$", "");
    let config = config_with(&h, |i| i.log_processing_rules = vec![evil_rule], |_| {});
    let started = Instant::now();
    h.start(&config);
    h.wait_events(2, T);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(h.terminate().success(), "{}", h.stderr());
    assert_lines(&h.messages(), &[evil, "after".to_string()], "both shipped");
}

#[test]
fn json_lines_lift_status_and_timestamp() {
    let mut h = Harness::with_intake();
    let lines = vec![
        r#"{"level":"ERROR","time":"2026-11-26T10:00:00.250Z","msg":"failed","ctx":{"level":"debug","time":"1999-01-01T00:00:00Z"}}"#.to_string(),
        r#"{"severity":"warning","ts":1795687200,"msg":"epoch seconds"}"#.to_string(),
        r#"{"msg":"no level, no time"}"#.to_string(),
        r#"{"level":"info","msg":"broken json"#.to_string(),
        "plain text line".to_string(),
    ];
    append(&h.log("app.log"), lines.clone());
    let config = config_with(&h, |i| i.parse_json = true, |_| {});
    h.start(&config);
    h.wait_events(5, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    let events = h.intake().events();
    let got: Vec<(String, String, bool)> = events
        .iter()
        .map(|e| {
            let ts = e["timestamp"].as_u64().expect("timestamp");
            (
                e["message"].as_str().unwrap_or_default().to_string(),
                e["status"].as_str().unwrap_or_default().to_string(),
                ts == 1_795_687_200_250 || ts == 1_795_687_200_000,
            )
        })
        .collect();
    let expect =
        |i: usize, status: &str, from_line: bool| (lines[i].clone(), status.to_string(), from_line);
    assert_eq!(
        got,
        vec![
            expect(0, "error", true),
            expect(1, "warning", true),
            expect(2, "info", false),
            expect(3, "info", false),
            expect(4, "info", false),
        ]
    );
    assert_eq!(events[0]["timestamp"], 1_795_687_200_250u64);
    for e in &events {
        assert_eq!(
            e.as_object().expect("object").len(),
            7,
            "exactly the Agent fields: {e}"
        );
    }
}

/// The Agent's semantics through the real binary: global rules before an input's own, a
/// mask's `${1}` in the configuration file (not taken for a variable), trimming,
/// `exclude_truncated`, a `multi_line` rule anchored at the start of the line, and a UTF-16
/// file.
#[test]
fn agent_rule_semantics_end_to_end() {
    let mut h = Harness::with_intake();
    let logs = h.logs();
    let config = config_with(
        &h,
        |i| {
            i.max_line_bytes = 1024;
            i.log_processing_rules = vec![
                RuleSettings::new(
                    RuleKind::MaskSequences,
                    "session",
                    r"(session=)\w+",
                    "${1}[masked]",
                ),
                RuleSettings::new(RuleKind::ExcludeTruncated, "cut", "", ""),
            ];
        },
        |c| {
            c.log_processing_rules = vec![RuleSettings::new(
                RuleKind::ExcludeAtMatch,
                "health",
                "(?i)HEALTHZ",
                "",
            )];
            c.inputs.push(Input {
                include: vec![format!("{}/*.txt", logs.display())],
                encoding: Encoding::Utf16Le,
                service: "windows-app".into(),
                log_processing_rules: vec![RuleSettings::new(
                    RuleKind::MultiLine,
                    "dated",
                    r"\d{4}-",
                    "",
                )],
                ..Input::default()
            });
        },
    );
    append(
        &h.log("app.log"),
        vec![
            "  user=1 session=abc123 café  ".to_string(),
            "GET /HealthZ 200".to_string(),
            "x".repeat(3000),
            "\u{A0}last\t".to_string(),
        ],
    );
    let text = "2026-01 first\r\n  detail 2026-\r\nx 2026-01\r\n2026-02 second\r\n";
    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    std::fs::write(h.log("win.txt"), utf16).expect("UTF-16 file");
    h.start(&config);
    h.wait_events(4, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    let by_file = h.messages_by_file();
    assert_eq!(
        by_file["app.log"],
        ["user=1 session=[masked] café", "last"],
        "masked with its group, trimmed; the health check and the cut line dropped"
    );
    assert_eq!(
        by_file["win.txt"],
        ["2026-01 first\n  detail 2026-\nx 2026-01", "2026-02 second"],
        "grouped at lines starting with the pattern"
    );
}
