//! Memory bounded by configuration whatever the input or the intake does: many files each
//! holding a pending multi-line event of 900 KB, an intake whose error answers are 50 MB
//! pages, a storm of 400s on batches of 1,000 lines of 2 KB. The Pod's manifests give the
//! sidecar a 64Mi limit; each case keeps the shipper's anonymous memory under 48 MiB.

use std::time::Duration;

use crate::harness::*;
use sidelog_devtools::intake::Faults;
use sidelog_shipper::config::{MultilineSettings, RequestConcurrency};

const T: Duration = Duration::from_secs(120);
const LIMIT_KB: u64 = 48 * 1024;

/// 200 files, each a stack trace that never ends: a start line and 900 KB of continuation
/// lines, waiting for the next start. Without a bound across files that is 180 MB held.
#[test]
fn pending_multiline_events_of_many_files_stay_within_the_budget() {
    let mut h = Harness::with_intake();
    let config = h.config_with(|c| {
        c.inputs[0].multiline = Some(MultilineSettings {
            start_pattern: Some("^START".into()),
            timeout_ms: 600_000,
            ..MultilineSettings::default()
        });
        c.batch.timeout_ms = 100;
    });
    h.start(&config);
    h.wait_stderr("globs rescanned", T);
    let sampler = h.sample_anon();
    let continuation = format!("    at com.example.Frame.call({})\n", "x".repeat(60));
    let lines_per_file = 900_000 / continuation.len();
    for f in 0..200 {
        let mut text = format!("START trace {f:03}\n");
        for _ in 0..lines_per_file {
            text.push_str(&continuation);
        }
        std::fs::write(h.log(&format!("trace-{f:03}.log")), text).expect("write");
    }
    // Every file read: their events go out as the budget demands, the rest wait.
    wait_for("every file read", T, || {
        h.stderr().matches("caught up with file").count() >= 200
    });
    let peak = sampler.finish();
    assert!(peak < LIMIT_KB, "peak anonymous memory {peak} kB");
    assert!(h.terminate().success(), "{}", h.stderr());
    // At shutdown the rest went out: one event per file, each whole or cut where the budget
    // sent it early, every line once.
    let messages = h.messages();
    let starts = messages
        .iter()
        .filter(|m| m.starts_with("START trace"))
        .count();
    assert_eq!(starts, 200);
    let frames: usize = messages
        .iter()
        .map(|m| m.matches("at com.example.Frame.call").count())
        .sum();
    assert_eq!(frames, 200 * lines_per_file);
    assert!(
        h.stderr().contains("multiline_pending_bytes"),
        "the budget was met and said so"
    );
}

/// An intake (or a gateway in front of it) whose error answers carry 50 MB pages: only the
/// start of each is read, whether the answer refuses the batch (400) or is unexpected (404).
#[test]
fn error_answers_of_50_mb_are_not_read_whole() {
    for status in [400, 404] {
        let mut h = Harness::with_intake();
        append(&h.log("app.log"), numbered("e", 0..2000));
        h.intake().set_faults(Faults {
            status: Some(status),
            error_body_bytes: 50 << 20,
            ..Faults::default()
        });
        let config = h.default_config();
        h.start(&config);
        let sampler = h.sample_anon();
        h.wait_faults(5, T);
        h.intake().set_faults(Faults::default());
        h.wait_events(2000, T);
        let peak = sampler.finish();
        assert!(peak < LIMIT_KB, "{status}: peak anonymous memory {peak} kB");
        assert!(h.terminate().success(), "{}", h.stderr());
        // A batch held while everything is refused may arrive in another order.
        let mut got = h.messages();
        got.sort();
        assert_lines(&got, &numbered("e", 0..2000), "every line once");
    }
}

/// 40 MB of 2 KB lines meet an intake that refuses everything with 400 for a while: batches
/// of about a thousand lines are refused, split and held, and memory stays bounded.
#[test]
fn a_storm_of_400s_on_large_batches_stays_bounded() {
    let mut h = Harness::with_intake();
    let pad = "p".repeat(2000);
    let lines: Vec<String> = (0..20_000).map(|i| format!("s {i:06} {pad}")).collect();
    append(&h.log("a.log"), lines[..10_000].to_vec());
    append(&h.log("b.log"), lines[10_000..].to_vec());
    h.intake().set_faults(Faults {
        status: Some(400),
        ..Faults::default()
    });
    let config = h.config_with(|c| {
        c.datadog.request_concurrency = RequestConcurrency::Adaptive;
        c.batch.timeout_ms = 100;
    });
    h.start(&config);
    let sampler = h.sample_anon();
    h.wait_stderr("refuses every part of a batch", T);
    h.wait_faults(40, T);
    h.intake().set_faults(Faults::default());
    h.wait_events(20_000, T);
    let peak = sampler.finish();
    assert!(peak < LIMIT_KB, "peak anonymous memory {peak} kB");
    assert!(h.terminate().success(), "{}", h.stderr());
    let mut got = h.messages();
    got.sort();
    assert_lines(&got, &lines, "every line once");
}
