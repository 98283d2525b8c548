//! Processing at the edge, end to end: multi-line events across reads, rotation, timeouts and
//! crashes; processing rules and their order; JSON lines. The real binary and intake.

mod common;

use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(60);

/// A config whose input has `input_extra` (TOML lines, may open sub-tables last).
fn config_with(h: &Harness, input_extra: &str, extra: &str) -> std::path::PathBuf {
    let endpoint = h.intake().endpoint();
    // Sub-tables of [[inputs]] must come after its keys and before [datadog]: the harness
    // puts input_extra right after the input's keys.
    h.write_config_full(&endpoint, input_extra, "", extra)
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
        "[inputs.multiline]\npreset = \"java\"\ntimeout_ms = 300",
        "[batch]\ntimeout_ms = 100\n\n[tail]\nread_buffer_bytes = 4096\n",
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
        "[inputs.multiline]\npreset = \"java\"\ntimeout_ms = 60000",
        "[batch]\ntimeout_ms = 100\n\n[tail]\nrotated_linger_ms = 300\n",
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
        "[inputs.multiline]\nstart_pattern = '^\\d{4}-'\ntimeout_ms = 2000",
        "[batch]\ntimeout_ms = 100\n",
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
        "[inputs.multiline]\nstart_pattern = '^\\d{4}-'\ntimeout_ms = 600000",
        "[batch]\ntimeout_ms = 100\n",
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
    let mask = "[[inputs.log_processing_rules]]\ntype = \"mask_sequences\"\nname = \"cards\"\npattern = '\\b\\d{4}(?:[ -]?\\d{4}){3}\\b'\nreplace_placeholder = \"[card]\"\n";
    let exclude_health = "[[inputs.log_processing_rules]]\ntype = \"exclude_at_match\"\nname = \"health\"\npattern = \"healthz\"\n";
    let include_api = "[[inputs.log_processing_rules]]\ntype = \"include_at_match\"\nname = \"api\"\npattern = \"/api/\"\n";
    let exclude_masked = "[[inputs.log_processing_rules]]\ntype = \"exclude_at_match\"\nname = \"masked\"\npattern = '\\[card\\]'\n";
    for (rules, expected) in [
        (
            format!("{mask}{exclude_health}{include_api}"),
            vec![
                "POST /api/pay card=[card] ok",
                "POST /api/pay card=[card] ok",
                "GET /api/users 200",
            ],
        ),
        // Masking first, then dropping what was masked: order matters.
        (
            format!("{mask}{exclude_masked}"),
            vec![
                "GET /healthz 200",
                "GET /api/users 200",
                "GET /static/app.js 200",
            ],
        ),
        // The other way round, the exclusion sees no placeholder yet.
        (
            format!("{exclude_masked}{mask}"),
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
        let config = config_with(&h, &rules, "[batch]\ntimeout_ms = 100\n");
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
        assert_lines(&h.messages(), &expected, &rules);
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
    let config = config_with(
        &h,
        "[[inputs.log_processing_rules]]\ntype = \"exclude_at_match\"\nname = \"evil\"\npattern = '(a+)+$'\n",
        "[batch]\ntimeout_ms = 100\n",
    );
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
    let config = config_with(&h, "parse_json = true", "[batch]\ntimeout_ms = 100\n");
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
/// mask's `${1}` in a TOML file, trimming, `exclude_truncated`, a `multi_line` rule anchored
/// at the start of the line, and a UTF-16 file.
#[test]
fn agent_rule_semantics_end_to_end() {
    let mut h = Harness::with_intake();
    let input_rules = concat!(
        "max_line_bytes = 1024\n",
        "[[inputs.log_processing_rules]]\ntype = \"mask_sequences\"\nname = \"session\"\n",
        "pattern = '(session=)\\w+'\nreplace_placeholder = \"${1}[masked]\"\n",
        "[[inputs.log_processing_rules]]\ntype = \"exclude_truncated\"\nname = \"cut\"\n",
    );
    let extra = format!(
        concat!(
            "[batch]\ntimeout_ms = 100\n\n",
            "[[log_processing_rules]]\ntype = \"exclude_at_match\"\nname = \"health\"\npattern = \"(?i)HEALTHZ\"\n\n",
            "[[inputs]]\ninclude = [\"{}/*.txt\"]\nencoding = \"utf-16-le\"\nservice = \"windows-app\"\n",
            "[[inputs.log_processing_rules]]\ntype = \"multi_line\"\nname = \"dated\"\npattern = '\\d{{4}}-'\n",
        ),
        h.logs().display()
    );
    let config = config_with(&h, input_rules, &extra);
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
