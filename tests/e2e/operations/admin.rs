//! The admin endpoint scraped while the real binary ships: metrics agree with what arrived,
//! health and readiness answer, `sidelog status` prints the files.

use std::time::Duration;

use crate::harness::*;

const T: Duration = Duration::from_secs(60);

fn get(h: &Harness, url: &str) -> (u16, String) {
    h.get(url)
}

/// The value of one sample line (`name{labels}`) in a Prometheus exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_health_and_status_agree_with_what_was_shipped() {
    let mut h = Harness::with_intake();
    let log = h.log("app.log");
    let mut lines = numbered("m", 0..1000);
    lines.push(String::new());
    lines.push("bad \u{FFFD}".into());
    append(&log, lines);
    let config = h.default_config();
    let base = h.start_with_admin(&config, &[]);
    h.wait_events(1001, T);
    wait_for("the checkpoint to catch up", T, || {
        let (_, text) = get(&h, &format!("{base}/metrics"));
        sample(
            &text,
            &format!("sidelog_file_lag_bytes{{path=\"{}\"}}", log.display()),
        ) == Some(0.0)
    });
    let (code, text) = get(&h, &format!("{base}/metrics"));
    assert_eq!(code, 200);
    assert_eq!(
        sample(&text, "sidelog_events_sent_total"),
        Some(1001.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "sidelog_lines_read_total"),
        Some(1002.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "sidelog_lines_skipped_empty_total"),
        Some(1.0),
        "{text}"
    );
    let size = std::fs::metadata(&log).expect("stat").len() as f64;
    assert_eq!(
        sample(&text, "sidelog_bytes_read_total"),
        Some(size),
        "{text}"
    );
    assert_eq!(sample(&text, "sidelog_files_watched"), Some(1.0), "{text}");
    assert_eq!(sample(&text, "sidelog_files_open"), Some(1.0), "{text}");
    assert_eq!(
        sample(&text, "sidelog_events_dropped_total{reason=\"invalid\"}"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "sidelog_api_key_rejected"),
        Some(0.0),
        "{text}"
    );
    // The gauge agrees with the intake's clock: the last request it accepted was answered
    // `since` seconds ago (within the time a request and this scrape take).
    let since = sample(&text, "sidelog_seconds_since_last_accepted").expect("gauge");
    let last = h
        .intake()
        .recent_requests()
        .last()
        .map(|r| r.at)
        .expect("a request");
    let seen = last.elapsed().as_secs_f64();
    assert!(
        (since - seen).abs() <= 0.5,
        "gauge {since} s, intake {seen} s"
    );
    let sent_compressed = sample(&text, "sidelog_bytes_sent_compressed_total").expect("bytes");
    assert!(sent_compressed > 0.0);
    // What the benchmarks report as bytes on the wire is what the shipper counts as sent.
    let received = h.intake().state.stats()["wire_bytes"].as_u64();
    assert_eq!(received.map(|b| b as f64), Some(sent_compressed));

    assert_eq!(get(&h, &format!("{base}/healthz")).0, 200);
    assert_eq!(get(&h, &format!("{base}/readyz")), (200, "ready\n".into()));
    assert_eq!(get(&h, &format!("{base}/nothing")).0, 404);

    let out = std::process::Command::new(BIN)
        .args(["status", "--url", &base])
        .output()
        .expect("status");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{printed}");
    assert!(printed.contains(": shipping\n"), "{printed}");
    assert!(printed.contains("1001 events sent"), "{printed}");
    let row = printed
        .lines()
        .find(|l| l.starts_with(&log.display().to_string()))
        .expect("a row for the file");
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &cols[1..],
        [
            &*size.to_string(),
            &*size.to_string(),
            &*size.to_string(),
            "0"
        ]
    );
    assert!(h.terminate().success(), "{}", h.stderr());
}

#[test]
fn readiness_and_liveness_hold_while_the_key_is_rejected() {
    let mut h = Harness::new();
    let intake_key = h.dir.path().join("intake-key");
    std::fs::write(&intake_key, "right-key\n").expect("key");
    h.start_intake_with(None, |o| o.api_key_file = Some(intake_key.clone()));
    append(&h.log("app.log"), numbered("r", 0..10));
    let config = h.default_config();
    let base = h.start_with_admin(&config, &[]);
    h.wait_stderr("rejects the API key", T);
    // A rejected key must not take the Pod's app out of its Services, nor restart sidelog:
    // the metric, the status and the log say why nothing ships.
    assert_eq!(get(&h, &format!("{base}/readyz")), (200, "ready\n".into()));
    assert_eq!(get(&h, &format!("{base}/healthz")), (200, "ok\n".into()));
    let (_, status) = get(&h, &format!("{base}/status"));
    assert!(status.contains("rejects the API key"), "{status}");
    let (_, text) = get(&h, &format!("{base}/metrics"));
    assert_eq!(
        sample(&text, "sidelog_api_key_rejected"),
        Some(1.0),
        "{text}"
    );
    assert!(sample(&text, "sidelog_retries_total{reason=\"key_rejected\"}").unwrap_or(0.0) >= 1.0);
    assert_eq!(h.intake().event_count(), 0);
    std::fs::write(h.dir.path().join("api-key"), "right-key\n").expect("key");
    h.wait_events(10, T);
    wait_for("the status to say it ships again", T, || {
        !get(&h, &format!("{base}/status")).1.contains("rejects")
    });
    assert!(h.terminate().success(), "{}", h.stderr());
}

/// A stage stopped for good (by the test build's failpoint, fired with SIGUSR2) fails
/// `/healthz` once it is `liveness_timeout_secs` late, naming the stage; readiness stays.
/// Only a binary built with the `failpoints` feature (the default build) can be stopped so.
#[cfg(feature = "failpoints")]
fn stuck_stage_fails_liveness(stage: &str) {
    let mut h = Harness::with_intake();
    let log = h.log("app.log");
    append(&log, numbered("l", 0..10));
    let config = h.config_with(|c| c.batch.timeout_ms = 100);
    let base = h.start_with_admin(
        &config,
        &[
            ("SIDELOG_FAILPOINT", stage),
            ("SIDELOG_LIVENESS_TIMEOUT_SECS", "1"),
        ],
    );
    h.wait_events(10, T);
    assert_eq!(get(&h, &format!("{base}/healthz")).0, 200);
    h.send_signal(libc::SIGUSR2);
    h.wait_stderr("failpoint fired", T);
    // The stuck stage must be given work for the sender's case: the reader then waits on it.
    append(&log, numbered("m", 0..3000));
    wait_for("/healthz to fail", T, || {
        get(&h, &format!("{base}/healthz")).0 == 503
    });
    let (_, body) = get(&h, &format!("{base}/healthz"));
    assert!(
        body.starts_with(&format!("stuck: the {stage} has not turned")),
        "{body}"
    );
    assert_eq!(get(&h, &format!("{base}/readyz")).0, 200);
    let (_, status) = get(&h, &format!("{base}/status"));
    assert!(
        status.contains(&format!("the {stage} has not turned")),
        "{status}"
    );
    h.kill9();
}

#[cfg(feature = "failpoints")]
#[test]
fn a_stuck_reader_fails_liveness() {
    stuck_stage_fails_liveness("reader");
}

#[cfg(feature = "failpoints")]
#[test]
fn a_stuck_sender_fails_liveness() {
    stuck_stage_fails_liveness("sender");
}

#[test]
fn liveness_holds_through_an_outage() {
    // An intake that is down for longer than the liveness timeout is no reason to restart.
    let mut h = Harness::with_intake();
    let log = h.log("app.log");
    append(&log, numbered("o", 0..10));
    let config = h.config_with(|c| {
        c.datadog.retry_initial_ms = 200;
        c.datadog.retry_max_ms = 400;
        c.datadog.request_timeout_ms = 500;
        c.batch.timeout_ms = 100;
    });
    let base = h.start_with_admin(&config, &[("SIDELOG_LIVENESS_TIMEOUT_SECS", "1")]);
    h.wait_events(10, T);
    h.intake_down();
    append(&log, numbered("p", 0..5000));
    let until = std::time::Instant::now() + Duration::from_secs(4);
    while std::time::Instant::now() < until {
        assert_eq!(get(&h, &format!("{base}/healthz")), (200, "ok\n".into()));
        assert_eq!(get(&h, &format!("{base}/readyz")).0, 200);
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, status) = get(&h, &format!("{base}/status"));
    assert!(status.contains("the intake fails"), "{status}");
    h.intake_up();
    h.wait_events(5010, T);
    assert!(h.terminate().success(), "{}", h.stderr());
}

/// Raises this process's soft limit of open files to its hard limit (the test opens
/// thousands of sockets).
fn raise_open_files_limit() {
    // SAFETY: getrlimit/setrlimit on a struct we own; no memory is shared.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
}

/// 2,000 connections to the admin endpoint that never send a byte: delivery goes on,
/// `/metrics` answers, and sidelog holds no more descriptors than its connection limit.
#[test]
fn two_thousand_idle_connections_change_nothing() {
    raise_open_files_limit();
    let mut h = Harness::with_intake();
    let log = h.log("app.log");
    append(&log, numbered("i", 0..100));
    let config = h.default_config();
    let base = h.start_with_admin(&config, &[]);
    h.wait_events(100, T);
    let fds_before = h.open_fds();
    let addr: std::net::SocketAddr = base
        .trim_start_matches("http://")
        .parse()
        .expect("admin address");
    let mut idle = Vec::new();
    for _ in 0..2000 {
        if let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            idle.push(s);
        }
    }
    assert!(idle.len() >= 1000, "{} connected", idle.len());
    // The ones the endpoint keeps open (64), once those it closed for newer ones are gone;
    // nothing of the tailer's is crowded out. (A single count is no proof: connections still
    // in the listen backlog are accepted, one over the bound until the oldest is closed.)
    let held = || h.open_fds() <= fds_before + 64 + 2;
    wait_for("the connections held to settle", T, held);
    let started = std::time::Instant::now();
    append(&log, numbered("j", 0..100));
    h.wait_events(200, T);
    let delivered = started.elapsed();
    let started = std::time::Instant::now();
    let (code, text) = get(&h, &format!("{base}/metrics"));
    let scraped = started.elapsed();
    assert_eq!(code, 200);
    assert!(text.contains("sidelog_events_sent_total 200"), "{text}");
    wait_for("the connections held to stay within the bound", T, held);
    assert!(
        delivered < Duration::from_secs(5),
        "delivered in {delivered:?}"
    );
    assert!(scraped < Duration::from_secs(2), "scraped in {scraped:?}");
    drop(idle);
    assert!(h.terminate().success(), "{}", h.stderr());
}

/// `/metrics` over 10,000 files answers within 100 ms (its stats are taken off the runtime
/// that sends), and lines keep arriving while it is scraped back to back.
#[test]
fn metrics_of_ten_thousand_files_answer_quickly_without_holding_up_sending() {
    const FILES: usize = 10_000;
    let mut h = Harness::with_intake();
    for i in 0..FILES {
        append(&h.log(&format!("f{i:05}.log")), numbered("f", 0..1));
    }
    let config = h.default_config();
    let base = h.start_with_admin(&config, &[]);
    h.wait_events(FILES as u64, Duration::from_secs(300));
    let scrape = || {
        let started = std::time::Instant::now();
        let (code, text) = get(&h, &format!("{base}/metrics"));
        assert_eq!(code, 200);
        assert_eq!(text.matches("sidelog_file_lag_bytes{").count(), FILES);
        started.elapsed()
    };
    let mut took: Vec<Duration> = (0..7).map(|_| scrape()).collect();
    took.sort();
    assert!(
        took[3] < Duration::from_millis(100),
        "median scrape {:?}",
        took[3]
    );
    // Lines of one file keep coming while the endpoint is scraped back to back.
    let writer = PacedWriter::start(&h.log("f00000.log"), "w ", 200, OnRotate::Keep);
    let until = std::time::Instant::now() + Duration::from_secs(3);
    let from = h.intake().recent_requests().len();
    while std::time::Instant::now() < until {
        scrape();
    }
    let n = writer.finish();
    h.wait_events(FILES as u64 + n, T);
    let at: Vec<std::time::Instant> = h.intake().recent_requests()[from..]
        .iter()
        .map(|r| r.at)
        .collect();
    let widest = at
        .windows(2)
        .map(|w| w[1].duration_since(w[0]))
        .max()
        .unwrap_or_default();
    assert!(
        widest < Duration::from_secs(1),
        "a {widest:?} gap between requests"
    );
    assert!(h.terminate().success(), "{}", h.stderr());
}

/// A connection that sends half a request and goes silent (slowloris), or nothing at all, is
/// closed after 10 s.
#[test]
fn a_silent_connection_is_closed() {
    use std::io::{Read, Write};
    let mut h = Harness::with_intake();
    let config = h.default_config();
    let base = h.start_with_admin(&config, &[]);
    let addr = base.trim_start_matches("http://");
    let mut half = std::net::TcpStream::connect(addr).expect("connect");
    half.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .expect("half a request");
    let mut silent = std::net::TcpStream::connect(addr).expect("connect");
    let started = std::time::Instant::now();
    for s in [&mut half, &mut silent] {
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut buf = [0u8; 64];
        // Closed: end of stream (or an error answer, then the end).
        while s.read(&mut buf).expect("closed, not timed out") > 0 {}
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(20),
        "closed after {took:?}"
    );
    assert!(h.terminate().success(), "{}", h.stderr());
}
