//! End-to-end: the real binary ships files to the built-in intake; what arrives is compared
//! line for line with what was written.

use std::collections::HashSet;
use std::time::Duration;

use crate::harness::*;
use sidelog_shipper::config::{Compression, RequestConcurrency};

const T: Duration = Duration::from_secs(60);

#[test]
fn three_files_arrive_exactly_once_in_order_with_metadata() {
    let mut h = Harness::with_intake();
    let names = ["a.log", "b.log", "c.log"];
    // Half written before start, half while running.
    for name in names {
        append(&h.log(name), numbered(name, 0..5_000));
    }
    let config = h.default_config();
    h.start(&config);
    for name in names {
        append(&h.log(name), numbered(name, 5_000..10_000));
    }
    h.wait_events(30_000, T);
    let status = h.terminate();
    assert!(status.success(), "exit {status:?}\n{}", h.stderr());

    let by_file = h.messages_by_file();
    assert_eq!(by_file.len(), 3, "{:?}", by_file.keys());
    for name in names {
        assert_lines(&by_file[name], &numbered(name, 0..10_000), name);
    }
    let events = h.intake().events();
    assert_eq!(events.len(), 30_000, "duplicates arrived");
    for e in &events {
        let obj = e.as_object().expect("object");
        assert_eq!(obj.len(), 7, "exactly the seven Agent fields: {e}");
        assert_eq!(e["service"], "user-msvc");
        assert_eq!(e["ddsource"], "go");
        assert_eq!(e["hostname"], "test-host");
        assert_eq!(e["status"], "info");
        assert!(
            e["timestamp"]
                .as_u64()
                .is_some_and(|t| t > 1_600_000_000_000),
            "{e}"
        );
        let tags = e["ddtags"].as_str().expect("tags");
        assert!(tags.starts_with("env:test,team:users,filename:"), "{tags}");
    }
    assert!(
        h.intake()
            .user_agents()
            .keys()
            .all(|ua| ua.starts_with("sidelog/")),
        "{:?}",
        h.intake().user_agents()
    );
}

#[test]
fn restart_after_clean_shutdown_neither_loses_nor_repeats() {
    let mut h = Harness::with_intake();
    let log = h.log("app.log");
    append(&log, numbered("run1", 0..1_000));
    let config = h.default_config();
    h.start(&config);
    h.wait_events(1_000, T);
    assert!(h.terminate().success(), "{}", h.stderr());

    // Written while sidelog is down, plus a new file.
    append(&log, numbered("down", 0..1_000));
    append(&h.log("new.log"), numbered("new", 0..500));
    h.start(&config);
    append(&log, numbered("run2", 0..1_000));
    h.wait_events(3_500, T);
    assert!(h.terminate().success(), "{}", h.stderr());

    let by_file = h.messages_by_file();
    let mut expected = numbered("run1", 0..1_000);
    expected.extend(numbered("down", 0..1_000));
    expected.extend(numbered("run2", 0..1_000));
    assert_lines(&by_file["app.log"], &expected, "app.log");
    assert_lines(&by_file["new.log"], &numbered("new", 0..500), "new.log");
    assert_eq!(h.intake().event_count(), 3_500, "a line was sent twice");
}

#[test]
fn intake_down_at_start_then_up_loses_nothing() {
    let mut h = Harness::with_intake();
    h.intake_down();
    let config = h.default_config();
    append(&h.log("app.log"), numbered("early", 0..2_000));
    h.start(&config);
    // Wait until sidelog has really failed to connect, then bring the intake up.
    h.wait_stderr("request failed", T);
    h.intake_up();
    append(&h.log("app.log"), numbered("late", 0..1_000));
    h.wait_events(3_000, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    let mut expected = numbered("early", 0..2_000);
    expected.extend(numbered("late", 0..1_000));
    assert_lines(&h.messages_by_file()["app.log"], &expected, "app.log");
}

#[test]
fn every_compression_round_trips() {
    for (codec, level) in [("gzip", 6), ("deflate", 6), ("zstd", 3), ("none", 0)] {
        let compression: Compression = codec.parse().expect("a codec");
        let mut h = Harness::with_intake();
        append(&h.log("app.log"), numbered(codec, 0..3_000));
        // Unicode, quotes, backslashes and control bytes survive every codec.
        append(&h.log("app.log"), vec!["é \"q\" \\ \t ✓".to_string()]);
        let config = h.config_with(|c| {
            c.datadog.compression = compression;
            c.datadog.compression_level = Some(level);
            c.batch.timeout_ms = 200;
        });
        h.start(&config);
        h.wait_events(3_001, T);
        assert!(h.terminate().success(), "{codec}: {}", h.stderr());
        let mut expected = numbered(codec, 0..3_000);
        expected.push("é \"q\" \\ \t ✓".to_string());
        assert_lines(&h.messages_by_file()["app.log"], &expected, codec);
        let encoding = if codec == "none" { "identity" } else { codec };
        assert_eq!(
            h.intake().encodings().keys().cloned().collect::<Vec<_>>(),
            vec![encoding.to_string()],
            "{codec}"
        );
    }
}

#[test]
fn sigterm_delivers_a_partly_filled_batch_before_exit() {
    let mut h = Harness::with_intake();
    // A batch that would otherwise wait ten minutes.
    let config = h.config_with(|c| c.batch.timeout_ms = 600_000);
    append(&h.log("app.log"), numbered("partial", 0..10));
    h.start(&config);
    h.wait_stderr("caught up with file", T);
    assert_eq!(h.intake().event_count(), 0, "batch left before its timeout");
    let status = h.terminate();
    assert!(status.success(), "{status:?}\n{}", h.stderr());
    assert_lines(
        &h.messages_by_file()["app.log"],
        &numbered("partial", 0..10),
        "app.log",
    );
    // And the checkpoint says so: a restart sends nothing again.
    h.assert_restart_sends_nothing(&config, 10);
}

#[test]
fn file_created_after_start_is_shipped() {
    let mut h = Harness::with_intake();
    let config = h.default_config();
    h.start(&config);
    h.wait_stderr("shipping to intake", T);
    let log = h.log("later.log");
    append(&log, numbered("later", 0..100));
    h.wait_events(100, T);
    // An appended line follows quickly without any rescan (the rescan interval is 10 s).
    append(&log, numbered("more", 0..1));
    h.wait_events(101, Duration::from_secs(5));
    assert!(h.terminate().success(), "{}", h.stderr());
    let mut expected = numbered("later", 0..100);
    expected.extend(numbered("more", 0..1));
    assert_lines(&h.messages_by_file()["later.log"], &expected, "later.log");
}

#[test]
fn invalid_utf8_empty_and_crlf_lines() {
    let mut h = Harness::with_intake();
    let log = h.log("odd.log");
    std::fs::write(&log, b"one\r\n\n\ntwo \xff\xfe bytes\nthree\x00nul\r\n").expect("write");
    let config = h.default_config();
    h.start(&config);
    h.wait_events(3, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    assert_eq!(
        h.messages_by_file()["odd.log"],
        vec!["one", "two \u{FFFD}\u{FFFD} bytes", "three\u{0}nul"]
    );
}

#[test]
fn no_duplicates_across_many_batches_in_flight() {
    let mut h = Harness::with_intake();
    let config = h.config_with(|c| {
        c.datadog.request_concurrency = RequestConcurrency::Fixed(8);
        c.batch.timeout_ms = 100;
        c.batch.max_events = 50;
    });
    append(&h.log("x.log"), numbered("x", 0..20_000));
    h.start(&config);
    h.wait_events(20_000, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    let msgs = &h.messages_by_file()["x.log"];
    let unique: HashSet<&String> = msgs.iter().collect();
    assert_eq!(unique.len(), 20_000);
    assert_eq!(msgs.len(), 20_000);
    // Restart: the checkpoint covers all 400 batches although answers came back in any order.
    h.assert_restart_sends_nothing(&config, 20_000);
}
