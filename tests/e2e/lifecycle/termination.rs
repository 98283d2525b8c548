//! A Pod's life: SIGTERM with a backlog (the volume is deleted with the Pod, so everything
//! must be shipped before exiting), a deadline too short, an app still writing during its own
//! shutdown, a second signal, and a kill -9 in a fast stream. The real binary against the
//! built-in intake; every line is accounted for.

use std::time::{Duration, Instant};

use crate::harness::*;
use sidelog_devtools::intake::Faults;
use sidelog_shipper::config::{DatadogConfig, RequestConcurrency};

const T: Duration = Duration::from_secs(120);

/// Bytes per backlog line, newline included.
const LINE_BYTES: usize = 2000;
/// Files of the backlog, and lines in each: 4 x 12,600 x 2,000 bytes = 100.8 MB.
const FILES: usize = 4;
const LINES_PER_FILE: usize = 12_600;

/// The prefix of file `f`'s backlog lines: padding that makes each line `LINE_BYTES` long,
/// then the sequence number (so [`assert_each_once`] can read it).
fn backlog_prefix(f: usize) -> String {
    // "b<f>", the padding, a space, 8 digits and the newline.
    let pad = LINE_BYTES - 2 - 1 - 8 - 1;
    format!("b{f}{} ", ".".repeat(pad))
}

/// Writes `lines` backlog lines numbered from `from` to file `f` in one go.
fn write_backlog(h: &Harness, f: usize, from: usize, lines: usize) {
    let prefix = backlog_prefix(f);
    append(
        &h.log(&format!("backlog-{f}.log")),
        (from..from + lines).map(|i| format!("{prefix}{i:08}")),
    );
}

/// Checks that every backlog line of every file arrived exactly once.
#[track_caller]
fn assert_backlog_arrived(h: &Harness) {
    let messages = h.messages();
    for f in 0..FILES {
        assert_each_once(&messages, &backlog_prefix(f), LINES_PER_FILE as u64);
    }
}

/// The unshipped bytes a shutdown reported in its log (the summary line).
fn reported_unshipped(log: &str) -> Option<u64> {
    log.lines()
        .filter(|l| l.contains("shutdown left bytes unshipped"))
        .find_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("unshipped_bytes="))
                .and_then(|n| n.parse().ok())
        })
}

#[test]
fn a_100_mb_backlog_from_an_outage_is_shipped_before_exit() {
    let mut h = Harness::with_intake();
    h.intake().force_status(Some(503));
    let config = h.default_config();
    // The files exist before the outage fills the pipeline: a file created while the reader
    // waits for room is found only once there is room again (it is read after the outage).
    for f in 0..FILES {
        write_backlog(&h, f, 0, 0);
    }
    h.start_with_env(&config, &[("SIDELOG_SHUTDOWN_TIMEOUT_MS", "60000")]);
    wait_for("every backlog file followed", T, || {
        h.stderr().matches("tailing file").count() >= FILES
    });
    // The app writes its backlog while the intake refuses everything.
    for f in 0..FILES {
        write_backlog(&h, f, 0, LINES_PER_FILE / 2);
    }
    h.wait_stderr("intake answered 503", T);
    for f in 0..FILES {
        write_backlog(&h, f, LINES_PER_FILE / 2, LINES_PER_FILE / 2);
    }
    // A rotated and a deleted file still held open are part of what must be shipped.
    std::fs::rename(h.log("backlog-1.log"), h.log("backlog-1.log.1")).expect("rotate");
    std::fs::remove_file(h.log("backlog-2.log")).expect("delete");
    // A last line without its newline goes out as it is: nothing more can come.
    std::fs::write(h.log("last.log"), b"the very last line").expect("write");
    // The intake heals and the Pod is deleted at the same moment.
    h.intake().force_status(None);
    let asked = Instant::now();
    let status = h.terminate_within(Duration::from_secs(90));
    let took = asked.elapsed();
    assert!(status.success(), "{status:?}\n{}", h.stderr());
    eprintln!("100 MB backlog drained in {took:?}");
    // Within Kubernetes' default grace period (30 s); it takes a few seconds unloaded.
    assert!(took < Duration::from_secs(30), "drain took {took:?}");
    assert!(h.faults_injected() > 0, "the outage refused nothing");
    assert_backlog_arrived(&h);
    assert!(
        h.messages().iter().any(|m| m == "the very last line"),
        "unterminated last line"
    );
    let log = h.stderr();
    assert!(
        log.contains("every file read to its end and quiet"),
        "{log}"
    );
    assert_eq!(reported_unshipped(&log), None, "{log}");
}

#[test]
fn a_deadline_too_short_is_reported_and_a_restart_ships_the_rest() {
    let mut h = Harness::with_intake();
    for f in 0..FILES {
        write_backlog(&h, f, 0, LINES_PER_FILE);
    }
    // A slow intake: the backlog needs about 25 s, the deadline is 3 s.
    h.intake().set_faults(Faults {
        latency: Duration::from_millis(500),
        ..Faults::default()
    });
    let config = h.default_config();
    h.start_with_env(&config, &[("SIDELOG_SHUTDOWN_TIMEOUT_MS", "3000")]);
    h.wait_events(1, T);
    let asked = Instant::now();
    let status = h.terminate();
    let took = asked.elapsed();
    assert!(status.success(), "{status:?}\n{}", h.stderr());
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(6),
        "exit after {took:?}"
    );
    let log = h.stderr();
    assert!(
        log.contains("shutdown deadline (shutdown_timeout_ms) reached"),
        "{log}"
    );
    assert!(log.contains("left unshipped at shutdown"), "{log}");
    // What the log reports is exactly what the checkpoints say was not accepted.
    let unshipped = reported_unshipped(&log).expect("unshipped bytes reported");
    let written = (FILES * LINES_PER_FILE * LINE_BYTES) as u64;
    let accepted: u64 = (h.checkpoint_offsets().expect("checkpoint file").iter())
        .map(|(_, offset)| offset)
        .sum();
    assert_eq!(unshipped, written - accepted, "{log}");
    assert!(unshipped > 0);

    h.intake().set_faults(Faults::default());
    let config = h.default_config();
    h.start(&config);
    h.wait_events((FILES * LINES_PER_FILE) as u64, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    // Nothing lost; a request abandoned at the deadline may have been taken all the same.
    let messages = h.messages();
    for f in 0..FILES {
        let (missing, repeated) =
            count_missing_and_repeated(&messages, &backlog_prefix(f), LINES_PER_FILE as u64);
        assert_eq!(missing, 0, "file {f}");
        assert!(repeated <= 1000, "file {f}: {repeated} repeated");
    }
}

#[test]
fn an_app_still_writing_after_sigterm_is_followed_until_quiet() {
    let mut h = Harness::with_intake();
    let log = h.log("app.log");
    std::fs::write(&log, b"").expect("create");
    let config = h.default_config();
    h.start_with_env(&config, &[("SIDELOG_SHUTDOWN_QUIET_MS", "1000")]);
    let writer = PacedWriter::start(&log, "w ", 500, OnRotate::Keep);
    writer.wait_written(500);
    // A classic sidecar: SIGTERM reaches sidelog and the app together; the app writes on for
    // another 750 lines (1.5 s) while it shuts down.
    h.send_signal(libc::SIGTERM);
    h.wait_stderr("draining", T);
    writer.wait_written(750);
    let n = writer.finish();
    let status = h.wait_exit(T);
    assert!(status.success(), "{status:?}\n{}", h.stderr());
    assert_each_once(&h.messages(), "w ", n);
}

#[test]
fn a_second_signal_ends_the_drain_at_once() {
    let mut h = Harness::with_intake();
    append(&h.log("app.log"), numbered("s", 0..2000));
    h.intake().force_status(Some(503));
    let config = h.default_config();
    h.start_with_env(&config, &[("SIDELOG_SHUTDOWN_TIMEOUT_MS", "60000")]);
    h.wait_stderr("intake answered 503", T);
    h.send_signal(libc::SIGTERM);
    h.wait_stderr("every file read to its end and quiet", T);
    let asked = Instant::now();
    let status = h.terminate_within(Duration::from_secs(10));
    assert!(status.success(), "{status:?}\n{}", h.stderr());
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );
    let log = h.stderr();
    assert!(log.contains("asked again to stop"), "{log}");
    assert!(reported_unshipped(&log).is_some_and(|n| n > 0), "{log}");
    // The checkpoints were written: a restart ships every line once.
    h.intake().force_status(None);
    h.start(&config);
    h.wait_events(2000, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    assert_lines(
        &h.messages(),
        &numbered("s", 0..2000),
        "after a second signal",
    );
}

#[test]
fn host_mode_stops_reading_at_once() {
    let mut h = Harness::with_intake();
    append(&h.log("app.log"), numbered("h", 0..100));
    let config = h.default_config();
    h.start_with_env(&config, &[("SIDELOG_SHUTDOWN_DRAIN", "false")]);
    h.wait_events(100, T);
    // A line still being written: a host's files outlive the process, so it is left for the
    // next start to read whole.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(h.log("app.log"))
        .expect("open");
    std::io::Write::write_all(&mut f, b"half a li").expect("write");
    h.wait_stderr("caught up with file", T);
    assert!(h.terminate().success(), "{}", h.stderr());
    assert!(!h.stderr().contains("draining"), "{}", h.stderr());
    std::io::Write::write_all(&mut f, b"ne\n").expect("write");
    h.start(&config);
    h.wait_events(101, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    let mut expected = numbered("h", 0..100);
    expected.push("half a line".into());
    assert_lines(&h.messages(), &expected, "host mode");
}

#[test]
fn kill_9_in_a_fast_stream_repeats_at_most_one_percent() {
    let mut h = Harness::with_intake();
    // The defaults, as a user runs them (adaptive concurrency, 1 s batches).
    let config = h.config_with(|c| {
        let defaults = DatadogConfig::default();
        c.datadog.request_concurrency = defaults.request_concurrency;
        c.datadog.retry_initial_ms = defaults.retry_initial_ms;
        c.datadog.retry_max_ms = defaults.retry_max_ms;
    });
    h.start(&config);
    let writers: Vec<PacedWriter> = (0..4)
        .map(|i| {
            let path = h.log(&format!("fast-{i}.log"));
            std::fs::write(&path, b"").expect("create");
            PacedWriter::start(&path, &format!("k{i} "), 5000, OnRotate::Keep)
        })
        .collect();
    writers[0].wait_written(50_000);
    h.kill9();
    h.start(&config);
    writers[0].wait_written(50_000);
    let counts: Vec<u64> = writers.into_iter().map(PacedWriter::finish).collect();
    let total: u64 = counts.iter().sum();
    h.wait_events(total, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    let messages = h.messages();
    let mut repeated = 0;
    for (i, n) in counts.iter().enumerate() {
        let (missing, again) = count_missing_and_repeated(&messages, &format!("k{i} "), *n);
        assert_eq!(missing, 0, "file {i} lost lines");
        repeated += again;
    }
    eprintln!("kill -9 at 20,000 lines/s: {repeated} of {total} lines sent twice");
    assert!(
        repeated as u64 * 100 <= total,
        "{repeated} of {total} lines sent twice"
    );
}

/// An outage in a stream of 1,000 lines/s with the default retry settings: `down` refused
/// probes of 503, then `throttled` of 429 with `Retry-After: 2`. The heal comes right after
/// a refused probe, the worst moment: sending must resume within 3 s all the same, the intake
/// is probed about once every 1.25-2.5 s meanwhile, and every line arrives once.
fn outage(down: u64, throttled: u64) {
    let mut h = Harness::with_intake();
    let log = h.log("app.log");
    std::fs::write(&log, b"").expect("create");
    let config = h.config_with(|c| {
        c.datadog.request_concurrency = RequestConcurrency::Adaptive;
        c.datadog.retry_initial_ms = 1000;
        c.datadog.retry_max_ms = 2500;
        c.batch.timeout_ms = 200;
    });
    h.start(&config);
    let writer = PacedWriter::start(&log, "o ", 1000, OnRotate::Keep);
    h.wait_events(500, T);
    let down_at = Instant::now();
    h.intake().force_status(Some(503));
    h.wait_faults(down, T);
    if throttled > 0 {
        h.intake().set_faults(Faults {
            status: Some(429),
            retry_after_secs: Some(2),
            ..Faults::default()
        });
        h.wait_faults(throttled, T);
    }
    // Right after a refusal: the next probe is as far away as it gets.
    h.wait_faults(1, T);
    let backlog_written = writer.written();
    let backlog = backlog_written - h.intake().event_count();
    let healed_at = Instant::now();
    h.intake().set_faults(Faults::default());
    let first_accepted = || {
        h.intake()
            .recent_requests()
            .iter()
            .find(|r| r.at >= healed_at && r.status == 202)
            .map(|r| r.at)
    };
    wait_for("a request accepted after the heal", T, || {
        first_accepted().is_some()
    });
    let resumed = first_accepted().expect("accepted") - healed_at;
    let refused = h
        .intake()
        .recent_requests()
        .iter()
        .filter(|r| r.at >= down_at && r.at < healed_at)
        .count();
    let outage = healed_at - down_at;
    eprintln!(
        "outage of {outage:?}: {refused} requests meanwhile, sending again {resumed:?} after the heal"
    );
    assert!(
        resumed <= Duration::from_secs(3),
        "resumed {resumed:?} after the heal"
    );
    // Probes are at least 1.25 s apart (half of retry_max_ms), and 2 s apart under
    // Retry-After; a few more for the requests in flight when the outage began and the
    // first, shorter waits. A shipper that does not back off sends hundreds.
    let bound = (outage.as_secs_f64() / 1.25) as usize + 5;
    assert!(
        refused <= bound,
        "{refused} requests during {outage:?} (bound {bound})"
    );
    // The backlog goes out in about as many requests as it needs (1,000 events each), not
    // as the many small batches of the outage's first moments plus the rest.
    wait_for("the backlog delivered", T, || {
        h.intake().event_count() >= backlog_written
    });
    let caught_up = Instant::now();
    let to_catch_up = h
        .intake()
        .recent_requests()
        .iter()
        .filter(|r| r.at >= healed_at && r.at <= caught_up)
        .count() as u64;
    let needed = backlog.div_ceil(1000);
    eprintln!(
        "backlog of {backlog} lines: {to_catch_up} requests until delivered ({needed} needed)"
    );
    assert!(
        to_catch_up <= needed + 4,
        "{to_catch_up} requests for a backlog of {backlog} lines"
    );
    writer.wait_written(500);
    h.finish_stream(writer, "o ");
}

/// About 20 s: 15 of 503 (the backoff reaches its cap), then 2 of 429.
#[test]
fn sending_resumes_within_3_s_of_an_outage_then_throttling() {
    outage(8, 2);
}

/// About a minute of 503: the backoff stays at its cap, and the backlog is 60,000 lines.
#[test]
fn sending_resumes_within_3_s_of_a_long_outage() {
    outage(30, 0);
}

#[test]
fn trailing_skipped_lines_are_not_reported_as_unshipped() {
    let mut h = Harness::with_intake();
    // Empty lines at the end need no event: the checkpoint stays before them, but nothing
    // is owed for them, so a drain has nothing to report.
    std::fs::write(h.log("app.log"), b"one\ntwo\n\n\n").expect("write");
    let config = h.default_config();
    h.start(&config);
    h.wait_events(2, T);
    h.wait_stderr("caught up with file", T);
    assert!(h.terminate().success(), "{}", h.stderr());
    let log = h.stderr();
    assert!(!log.contains("left unshipped"), "{log}");
    assert_lines(
        &h.messages(),
        &["one".into(), "two".into()],
        "trailing empty lines",
    );
}
