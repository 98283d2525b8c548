//! Dual shipping (`datadog.additional_endpoints`), end to end: the real binary against two
//! built-in intakes. Both get every line; a reliable one that is down holds the checkpoint
//! and catches up; a best-effort one that is down loses only its own copies.

use std::time::Duration;

use crate::harness::*;
use sidelog_devtools::intake::{Intake, IntakeOptions};
use sidelog_shipper::config::{AdditionalEndpoint, Compression};

const T: Duration = Duration::from_secs(60);

/// A second intake, checking the same key, keeping what it receives.
fn second_intake(h: &Harness) -> Intake {
    let opts = IntakeOptions {
        api_key_file: Some(h.dir.path().join("api-key")),
        keep_events: true,
        ..IntakeOptions::default()
    };
    h.rt.block_on(Intake::start(opts))
        .expect("start second intake")
}

/// `second` as an additional endpoint (zstd is the main endpoint's codec; the second gets
/// gzip, so each batch is compressed twice).
fn additional(h: &Harness, second: &Intake, reliable: bool) -> AdditionalEndpoint {
    AdditionalEndpoint {
        endpoint: Some(url(&second.endpoint())),
        api_key_file: Some(h.dir.path().join("api-key")),
        compression: Compression::Gzip,
        reliable,
        ..AdditionalEndpoint::default()
    }
}

/// A harness with both intakes, the second answering `status` (None: healthy), and sidelog
/// started with it as an additional endpoint.
fn start_with_second(
    reliable: bool,
    status: Option<u16>,
    batch_events: Option<usize>,
) -> (Harness, Intake, std::path::PathBuf) {
    let mut h = Harness::with_intake();
    let second = second_intake(&h);
    second.force_status(status);
    let endpoint = additional(&h, &second, reliable);
    let config = h.config_with(|c| {
        c.datadog.additional_endpoints.push(endpoint);
        c.batch.timeout_ms = 200;
        if let Some(n) = batch_events {
            c.batch.max_events = n;
        }
    });
    h.start(&config);
    (h, second, config)
}

fn messages(intake: &Intake) -> Vec<String> {
    intake
        .events()
        .iter()
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The accepted offset of `app.log` in the checkpoint file (0 when it has none yet).
fn checkpoint_of_app_log(h: &Harness) -> u64 {
    h.checkpoint_offsets()
        .unwrap_or_default()
        .into_iter()
        .filter(|(path, _)| path.ends_with("app.log"))
        .map(|(_, offset)| offset)
        .max()
        .unwrap_or(0)
}

/// Waits until the checkpoint of `app.log` is at the file's current end.
fn wait_checkpoint_at_end_of_app_log(h: &Harness) {
    let size = std::fs::metadata(h.log("app.log")).expect("app.log").len();
    wait_for("the checkpoint at the end of app.log", T, || {
        checkpoint_of_app_log(h) == size
    });
}

#[test]
fn both_endpoints_receive_every_line() {
    let (mut h, second, _) = start_with_second(true, None, None);
    let lines = numbered("d", 0..3000);
    append(&h.log("app.log"), lines.clone());
    h.wait_events(3000, T);
    wait_for("3000 lines at the second intake", T, || {
        second.event_count() >= 3000
    });
    assert!(h.terminate().success(), "{}", h.stderr());
    assert_lines(&h.messages(), &lines, "main endpoint");
    assert_lines(&messages(&second), &lines, "additional endpoint");
    let (main_codecs, second_codecs) = (h.intake().encodings(), second.encodings());
    assert!(main_codecs.contains_key("zstd"), "{main_codecs:?}");
    assert!(
        second_codecs.contains_key("gzip") && !second_codecs.contains_key("zstd"),
        "{second_codecs:?}"
    );
}

#[test]
fn a_reliable_endpoint_down_holds_the_checkpoint_and_catches_up() {
    let (mut h, second, config) = start_with_second(true, Some(503), None);
    let lines = numbered("r", 0..500);
    append(&h.log("app.log"), lines.clone());
    h.wait_events(500, T);
    h.wait_stderr(&format!("{}/api/v2/logs", second.endpoint()), T);
    wait_for("retries at the second intake", T, || {
        second.recent_requests().len() >= 3
    });
    assert_eq!(
        checkpoint_of_app_log(&h),
        0,
        "the main endpoint accepted the lines, the reliable one did not: no checkpoint yet"
    );

    second.force_status(None);
    wait_for("500 lines at the second intake", T, || {
        second.event_count() >= 500
    });
    wait_checkpoint_at_end_of_app_log(&h);
    assert!(h.terminate().success(), "{}", h.stderr());
    assert_lines(&h.messages(), &lines, "main endpoint");
    assert_lines(
        &messages(&second),
        &lines,
        "additional endpoint, after it healed",
    );
    h.assert_restart_sends_nothing(&config, 500);
}

#[test]
fn a_best_effort_endpoint_down_loses_only_its_own_copies() {
    let (mut h, second, _) = start_with_second(false, Some(503), Some(100));
    let lines = numbered("b", 0..20_000);
    append(&h.log("app.log"), lines.clone());
    h.wait_events(20_000, T);
    wait_checkpoint_at_end_of_app_log(&h);
    h.wait_stderr("best-effort endpoint is behind or down", T);
    assert!(
        h.peak_rss_kb() < 64 * 1024,
        "peak RSS {} kB with a best-effort endpoint down",
        h.peak_rss_kb()
    );

    // Once it is back it gets copies again: a few lines at a time until one arrives there.
    second.force_status(None);
    let mut written: u64 = 20_000;
    let mut later = Vec::new();
    while !messages(&second).iter().any(|m| m.starts_with("after")) {
        assert!(
            later.len() < 2_000,
            "the best-effort endpoint got nothing after it healed"
        );
        let more = numbered("after", later.len()..later.len() + 10);
        append(&h.log("app.log"), more.clone());
        later.extend(more);
        written += 10;
        h.wait_events(written, T);
    }
    assert!(h.terminate().success(), "{}", h.stderr());
    let mut all = lines;
    all.extend(later);
    assert_lines(
        &h.messages(),
        &all,
        "main endpoint: every line, the other one down or not",
    );
    let early = messages(&second)
        .iter()
        .filter(|m| m.starts_with('b'))
        .count();
    assert!(
        early <= 300,
        "while down, only the copy in hand and its queue of 2 may wait (100 events each): {early}"
    );
}
