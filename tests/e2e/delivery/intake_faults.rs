//! Delivery through the intake's worst day and through crashes: the real binary against the
//! built-in intake in its fault modes; every line is accounted for at the intake.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::harness::*;
use sidelog_devtools::intake::Faults;
use sidelog_shipper::config::{Compression, DatadogConfig, RequestConcurrency};

const T: Duration = Duration::from_secs(90);

/// Quick batches and quick retries; `datadog` adjusts the `[datadog]` settings.
fn config(h: &Harness, datadog: impl FnOnce(&mut DatadogConfig)) -> std::path::PathBuf {
    h.config_with(|c| {
        c.batch.timeout_ms = 100;
        datadog(&mut c.datadog);
    })
}

/// A paced stream through `fault` (see [`stream_through_fault`]); every line exactly once.
fn stream_through(fault: Faults, times: u64, datadog: impl FnOnce(&mut DatadogConfig)) -> Harness {
    let (h, n) = stream_through_fault(fault, times, datadog, 1000);
    assert_each_once(&h.messages(), "w ", n);
    h
}

#[test]
fn a_503_outage_mid_stream_loses_nothing() {
    // Ten refusals: the retries back off to retry_max_ms and stay there for a while.
    let h = stream_through(
        Faults {
            status: Some(503),
            ..Faults::default()
        },
        10,
        |_| {},
    );
    assert!(h.stderr().contains("intake answered 503"), "{}", h.stderr());
}

#[test]
fn throttling_with_retry_after_is_honoured() {
    let mut h = Harness::with_intake();
    append(&h.log("app.log"), numbered("t", 0..500));
    h.intake().set_faults(Faults {
        status: Some(429),
        retry_after_secs: Some(2),
        ..Faults::default()
    });
    // retry_max_ms is 500 in the test config: only Retry-After explains 2 s gaps.
    let config = config(&h, |_| {});
    h.start(&config);
    wait_for("three refused attempts", T, || {
        h.intake()
            .recent_requests()
            .iter()
            .filter(|r| r.status == 429)
            .count()
            >= 3
    });
    h.intake().set_faults(Faults::default());
    h.wait_events(500, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    let refused: Vec<Instant> = h
        .intake()
        .recent_requests()
        .iter()
        .filter(|r| r.status == 429)
        .map(|r| r.at)
        .collect();
    for pair in refused.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= Duration::from_millis(1900), "retried after {gap:?}");
    }
    assert_lines(&h.messages(), &numbered("t", 0..500), "throttled");
}

#[test]
fn random_500s_lose_and_repeat_nothing() {
    stream_through(
        Faults {
            error_rate: 0.2,
            ..Faults::default()
        },
        10,
        |_| {},
    );
}

#[test]
fn two_second_latency_with_adaptive_concurrency() {
    let h = stream_through(
        Faults {
            latency: Duration::from_secs(2),
            ..Faults::default()
        },
        3,
        |d| d.request_concurrency = RequestConcurrency::Adaptive,
    );
    // Slow answers are not errors: nothing was retried.
    assert!(!h.stderr().contains("retrying"), "{}", h.stderr());
}

#[test]
fn connection_resets_lose_nothing() {
    stream_through(
        Faults {
            reset_rate: 0.3,
            ..Faults::default()
        },
        10,
        |d| d.request_concurrency = RequestConcurrency::Fixed(4),
    );
}

#[test]
fn one_poisoned_event_in_a_thousand_is_the_only_one_dropped() {
    let mut h = Harness::with_intake();
    let mut lines = numbered("p", 0..1000);
    lines[617] = "p line 000617 carries POISON for the intake".to_string();
    append(&h.log("app.log"), lines.clone());
    h.intake().set_faults(Faults {
        poison: Some("POISON".into()),
        ..Faults::default()
    });
    let config = h.config_with(|c| c.batch.timeout_ms = 500);
    h.start(&config);
    h.wait_events(999, T);
    h.wait_stderr("refused one event on its own", T);
    assert!(h.terminate().success(), "{}", h.stderr());
    let mut expected = lines;
    expected.remove(617);
    let mut got = h.messages();
    got.sort();
    expected.sort();
    assert_lines(&got, &expected, "all but the poisoned event");
    let log = h.stderr();
    assert!(
        log.contains("reason=\"invalid\"") || log.contains("reason=invalid"),
        "{log}"
    );
    assert!(log.contains("file=app.log"), "{log}");
    assert!(
        !log.contains("POISON"),
        "the log must not carry the event's content:\n{log}"
    );
    // The checkpoint moved past everything: a restart sends nothing.
    h.assert_restart_sends_nothing(&config, 999);
}

#[test]
fn large_batches_refused_with_413_are_split_until_they_fit() {
    let mut h = Harness::with_intake();
    let mut lines = numbered("s", 0..2000);
    // One event too large for the intake's (lowered) limit even alone: the only drop.
    lines[1500] = format!("s big {}", "x".repeat(30_000));
    append(&h.log("app.log"), lines.clone());
    h.intake().set_faults(Faults {
        max_body_bytes: Some(20_000),
        ..Faults::default()
    });
    let config = config(&h, |_| {});
    h.start(&config);
    h.wait_events(1999, T);
    h.wait_stderr("refused one event on its own", T);
    assert!(h.terminate().success(), "{}", h.stderr());
    let mut expected = lines;
    expected.remove(1500);
    let mut got = h.messages();
    got.sort();
    expected.sort();
    assert_lines(&got, &expected, "all but the oversized event");
    assert!(h.stderr().contains("too large"), "{}", h.stderr());
}

#[test]
fn wrong_key_then_right_key() {
    let mut h = Harness::new();
    let intake_key = h.dir.path().join("intake-key");
    std::fs::write(&intake_key, "the-right-key\n").expect("key");
    h.start_intake_with(None, |o| o.api_key_file = Some(intake_key.clone()));
    append(&h.log("app.log"), numbered("k", 0..300));
    let config = config(&h, |_| {});
    h.start(&config);
    h.wait_stderr("rejects the API key", T);
    assert!(
        h.intake()
            .state
            .key_rejections
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    // The Secret is fixed: the key is re-read on the next rejection.
    std::fs::write(h.dir.path().join("api-key"), "the-right-key\n").expect("key");
    h.wait_events(300, T);
    h.wait_stderr("accepts the API key again", T);
    assert!(h.terminate().success(), "{}", h.stderr());
    assert_lines(
        &h.messages(),
        &numbered("k", 0..300),
        "after the key was fixed",
    );
    assert!(!h.stderr().contains("the-right-key"), "key printed");
}

#[test]
fn kill_9_five_times_during_a_paced_stream() {
    let mut h = Harness::with_intake();
    let log = h.log("app.log");
    std::fs::write(&log, b"").expect("create");
    let config = h.config_with(|c| {
        c.datadog.request_concurrency = RequestConcurrency::Fixed(4);
        c.batch.timeout_ms = 100;
        c.batch.max_events = 200;
    });
    let env = [("SIDELOG_CHECKPOINT_INTERVAL_MS", "200")];
    let writer = PacedWriter::start(&log, "w ", 2000, OnRotate::Keep);
    let mut rng = fastrand::Rng::with_seed(5);
    // How many events had arrived when each kill was done.
    let mut at_kill = Vec::new();
    for kill in 0..5 {
        h.start_with_env(&config, &env);
        let seen = h.intake().event_count();
        wait_for("progress before the kill", T, || {
            h.intake().event_count() > seen + 2000
        });
        // Not a synchronisation: the kill comes anywhere in the next 0.1-1.1 s (mid-batch,
        // mid-request, mid-checkpoint), from a seeded generator.
        std::thread::sleep(Duration::from_millis(100 + rng.u64(..1000)));
        h.kill9();
        at_kill.push(h.intake().event_count() as usize);
        eprintln!("kill {kill} at {} events", h.intake().event_count());
    }
    let n = writer.finish();
    h.start_with_env(&config, &env);
    let mut count: HashMap<u64, u32> = HashMap::new();
    wait_for(&format!("all {n} lines"), T, || {
        count.clear();
        for m in h.messages() {
            if let Some(seq) = m.strip_prefix("w ").and_then(|s| s.parse::<u64>().ok()) {
                *count.entry(seq).or_default() += 1;
            }
        }
        count.len() as u64 >= n
    });
    assert!(h.terminate().success(), "{}", h.stderr());
    let missing = (0..n).filter(|s| !count.contains_key(s)).count();
    assert_eq!(missing, 0);
    // Each repeat is put down to the first kill after the line's first arrival.
    let mut first_seen: HashMap<u64, usize> = HashMap::new();
    let mut per_kill = vec![0usize; at_kill.len()];
    for (i, m) in h.messages().iter().enumerate() {
        let Some(seq) = m.strip_prefix("w ").and_then(|s| s.parse::<u64>().ok()) else {
            continue;
        };
        if let Some(&first) = first_seen.get(&seq) {
            let kill = at_kill
                .iter()
                .position(|&c| c > first)
                .expect("a repeat follows a kill");
            per_kill[kill] += 1;
        } else {
            first_seen.insert(seq, i);
        }
    }
    eprintln!("{n} lines, 5 kills: 0 lost, repeats per kill {per_kill:?}");
    // A kill repeats only what was accepted but not yet checkpointed: at most a checkpoint
    // interval of lines (0.2 s x 2,000 lines/s) and the requests in flight (4 x 200
    // events). Checkpoints written late, or not after every acceptance, cross it.
    for (kill, repeats) in per_kill.iter().enumerate() {
        assert!(
            *repeats <= 400 + 800,
            "kill {kill}: {repeats} lines repeated"
        );
    }
}

#[test]
fn sigterm_during_an_outage_ends_in_time_and_keeps_accepted_checkpoints() {
    let mut h = Harness::with_intake();
    let log = h.log("app.log");
    append(&log, numbered("before", 0..1000));
    let config = config(&h, |_| {});
    h.start_with_env(&config, &[("SIDELOG_SHUTDOWN_TIMEOUT_MS", "2000")]);
    h.wait_events(1000, T);
    h.intake().force_status(Some(503));
    append(&log, numbered("during", 0..1000));
    h.wait_stderr("retrying", T);
    let asked = Instant::now();
    let status = h.terminate();
    let took = asked.elapsed();
    assert!(status.success(), "{status:?}\n{}", h.stderr());
    assert!(took < Duration::from_secs(4), "shutdown took {took:?}");
    let log = h.stderr();
    assert!(
        log.contains("shutdown deadline (shutdown_timeout_ms) reached"),
        "{log}"
    );
    // The lines written during the outage (31 bytes each) are reported as left behind.
    assert!(log.contains("unshipped_bytes=31000"), "{log}");
    h.intake().force_status(None);
    h.start(&config);
    h.wait_events(2000, T);
    h.wait_stderr("caught up with file", T);
    assert!(h.terminate().success(), "{}", h.stderr());
    let mut expected = numbered("before", 0..1000);
    expected.extend(numbered("during", 0..1000));
    assert_lines(&h.messages(), &expected, "across the outage");
}

#[test]
fn corrupt_checkpoint_file_is_moved_aside() {
    let mut h = Harness::with_intake();
    let data = h.dir.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(
        data.join("checkpoints.json"),
        b"{\"version\":1,\"files\":[{\"dev\"",
    )
    .expect("write");
    append(&h.log("app.log"), numbered("c", 0..100));
    let config = config(&h, |_| {});
    h.start(&config);
    h.wait_events(100, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    assert!(
        h.stderr().contains("unusable checkpoints moved aside"),
        "{}",
        h.stderr()
    );
    let aside = std::fs::read_dir(&data).expect("list").flatten().any(|e| {
        e.file_name()
            .to_string_lossy()
            .starts_with("checkpoints.json.corrupt-")
    });
    assert!(aside, "corrupt file kept for inspection");
    assert_lines(
        &h.messages(),
        &numbered("c", 0..100),
        "from the start (no usable checkpoints: nothing is known to be shipped)",
    );
}

#[test]
fn memory_stays_bounded_while_the_intake_is_down() {
    let mut h = Harness::new();
    h.start_intake_with(None, |o| {
        o.keep_events = false;
        o.verify = true;
    });
    // 100 MB of benchmark lines (the verifying intake checks each arrives exactly once).
    let log = h.log("big.log");
    let mut rng = fastrand::Rng::with_seed(9);
    let mut buf = Vec::with_capacity(8 << 20);
    let mut lines = 0u64;
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&log).expect("create");
        while lines < 400_000 {
            sidelog_sample::line(&mut buf, &mut rng, 0, lines, 256, 0);
            lines += 1;
            if buf.len() > (4 << 20) {
                f.write_all(&buf).expect("write");
                buf.clear();
            }
        }
        f.write_all(&buf).expect("write");
    }
    h.intake().force_status(Some(503));
    let config = config(&h, |d| d.compression = Compression::None);
    let base = h.start_with_admin(&config, &[]);
    // Eight refusals (about 2.3 s of backing off): time enough to read the whole file four
    // times over had sidelog not stopped reading.
    h.wait_faults(8, T);
    let rss_kb = h.peak_rss_kb();
    let read = h.bytes_read();
    eprintln!("during the outage: peak RSS {rss_kb} kB, {read} bytes read of 102400000");
    // The lag shows the whole backlog, not only what the reader saw before it stopped.
    let size = std::fs::metadata(&log).expect("stat").len() as f64;
    let lag = format!("sidelog_file_lag_bytes{{path=\"{}\"}}", log.display());
    assert_eq!(h.metric(&base, &lag), Some(size), "lag during the outage");
    assert!(rss_kb < 64 * 1024, "peak RSS {rss_kb} kB");
    assert!(
        read < 20_000_000,
        "read {read} bytes while the intake was down"
    );
    h.intake().force_status(None);
    wait_for(
        "every line after the outage",
        Duration::from_secs(180),
        || h.intake().state.stats()["distinct"].as_u64().unwrap_or(0) >= lines,
    );
    assert!(h.terminate().success(), "{}", h.stderr());
    assert_eq!(h.intake().state.stats()["duplicates"], 0);
}

#[test]
fn a_proxy_from_config_or_environment_carries_the_requests() {
    for via_env in [false, true] {
        let mut h = Harness::with_intake();
        append(&h.log("app.log"), numbered("x", 0..50));
        let proxy = h.intake().endpoint();
        // A host that does not resolve: only the proxy can have delivered.
        let endpoint = "http://intake.sidelog-test.invalid:9";
        // Plain HTTP to a remote host must be allowed explicitly (the key crosses unencrypted).
        let config = config(&h, |d| {
            d.endpoint = Some(url(endpoint));
            d.allow_insecure_http = true;
            if !via_env {
                d.proxy = Some(url(&proxy));
            }
        });
        let env: Vec<(&str, &str)> = if via_env {
            vec![("HTTP_PROXY", proxy.as_str()), ("NO_PROXY", "")]
        } else {
            Vec::new()
        };
        h.start_with_env(&config, &env);
        h.wait_events(50, T);
        assert!(h.terminate().success(), "{}", h.stderr());
        assert!(
            h.intake()
                .recent_requests()
                .iter()
                .all(|r| r.host == "intake.sidelog-test.invalid:9"),
            "{:?}",
            h.intake().recent_requests()
        );
    }
}

/// A CA and a certificate for 127.0.0.1 signed by it, as PEM files; returns the CA's path.
fn tls_files(h: &Harness) -> (std::path::PathBuf, sidelog_devtools::intake::TlsFiles) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("cert");
    let dir = h.dir.path();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("write");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write");
    (
        dir.join("ca.pem"),
        sidelog_devtools::intake::TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        },
    )
}

#[test]
fn https_with_a_private_ca_uses_http2_and_verifies_certificates() {
    let mut h = Harness::new();
    let (ca, files) = tls_files(&h);
    h.start_intake_with(None, |o| o.tls = Some(files));
    append(&h.log("app.log"), numbered("tls", 0..100));
    let endpoint = h.intake().endpoint();
    assert!(endpoint.starts_with("https://"), "{endpoint}");

    // Without the CA the certificate is not trusted: nothing is sent, nothing is lost.
    let untrusted = config(&h, |_| {});
    h.start(&untrusted);
    h.wait_stderr("retrying", T);
    assert!(h.stderr().contains("certificate"), "{}", h.stderr());
    assert_eq!(h.intake().event_count(), 0);
    assert!(h.terminate().success(), "{}", h.stderr());

    let trusted = config(&h, |d| d.ca_file = Some(ca.clone()));
    h.start(&trusted);
    h.wait_events(100, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    assert_lines(&h.messages(), &numbered("tls", 0..100), "over TLS");
    let requests = h.intake().recent_requests();
    assert!(requests.iter().any(|r| r.status == 202));
    assert!(
        requests.iter().all(|r| r.http2),
        "HTTP/2 offered by ALPN was not used"
    );
}

#[test]
fn a_bad_ca_file_is_a_clear_error() {
    let mut h = Harness::with_intake();
    let bad = h.dir.path().join("not-a-ca.pem");
    std::fs::write(&bad, "hello\n").expect("write");
    let config = config(&h, |d| d.ca_file = Some(bad.clone()));
    h.start(&config);
    let mut child = h.child.take().expect("running");
    let status = child.wait().expect("wait");
    assert!(!status.success());
    let log = h.stderr();
    assert!(
        log.contains("datadog.ca_file") && log.contains("not-a-ca.pem"),
        "{log}"
    );
}

#[test]
fn a_receiver_that_refuses_zstd_gets_gzip_from_then_on() {
    let mut h = Harness::new();
    h.start_intake_with(None, |o| o.faults.refuse_zstd = true);
    append(&h.log("app.log"), numbered("z", 0..300));
    // The default compression: zstd, with gzip as the fallback.
    let config = config(&h, |_| {});
    h.start(&config);
    h.wait_events(300, T);
    append(&h.log("app.log"), numbered("z", 300..600));
    h.wait_events(600, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    assert_lines(&h.messages(), &numbered("z", 0..600), "after the fallback");
    let encodings = h.intake().encodings();
    assert_eq!(encodings.get("zstd"), None, "{encodings:?}");
    assert!(
        encodings.get("gzip").is_some_and(|n| *n >= 2),
        "{encodings:?}"
    );
    let log = h.stderr();
    assert_eq!(
        log.matches("the intake cannot decode zstd").count(),
        1,
        "one warning:\n{log}"
    );
    h.assert_restart_sends_nothing(&config, 600);
}

#[test]
fn an_explicit_compression_is_obeyed_even_when_refused() {
    let mut h = Harness::new();
    h.start_intake_with(None, |o| o.faults.refuse_zstd = true);
    append(&h.log("app.log"), numbered("e", 0..100));
    let config = config(&h, |d| d.compression = Compression::Zstd);
    h.start(&config);
    h.wait_stderr("415", T);
    assert_eq!(h.intake().event_count(), 0, "nothing accepted as gzip");
    // The receiver learns zstd: everything arrives, in zstd.
    h.intake().set_faults(Faults::default());
    h.wait_events(100, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    assert_lines(&h.messages(), &numbered("e", 0..100), "explicit zstd");
    let encodings = h.intake().encodings();
    assert_eq!(
        encodings.keys().collect::<Vec<_>>(),
        vec!["zstd"],
        "{encodings:?}"
    );
}

/// An intake that redirects every POST to a second listener: sidelog follows no redirect, so
/// the second listener gets no request (and no key); each redirect is a retried failure,
/// counted by reason; once the first answers 202, every line arrives once.
#[test]
fn redirects_are_never_followed() {
    for status in [301, 302, 303, 307, 308] {
        let mut h = Harness::with_intake();
        let elsewhere =
            h.rt.block_on(sidelog_devtools::intake::Intake::start(
                sidelog_devtools::intake::IntakeOptions {
                    keep_events: true,
                    ..Default::default()
                },
            ))
            .expect("second listener");
        let log = h.log("app.log");
        append(&log, numbered("r", 0..100));
        h.intake().set_faults(Faults {
            redirect: Some(sidelog_devtools::intake::Redirect {
                status,
                location: format!("{}/api/v2/logs", elsewhere.endpoint()),
            }),
            ..Faults::default()
        });
        let config = config(&h, |_| {});
        let base = h.start_with_admin(&config, &[]);
        h.wait_faults(5, T);
        let redirects = h
            .metric(&base, "sidelog_retries_total{reason=\"redirect\"}")
            .expect("a redirect reason");
        assert!(redirects >= 5.0, "{status}: {redirects}");
        h.wait_stderr("sidelog does not follow redirects", T);
        assert_eq!(
            h.stderr()
                .matches("sidelog does not follow redirects")
                .count(),
            1,
            "{status}: said once"
        );
        assert!(
            h.stderr().contains(&elsewhere.endpoint()),
            "the Location is named"
        );
        assert_eq!(
            h.intake().event_count(),
            0,
            "{status}: nothing taken as delivered"
        );
        h.intake().set_faults(Faults::default());
        h.wait_events(100, T);
        assert!(h.terminate().success(), "{}", h.stderr());
        assert_lines(&h.messages(), &numbered("r", 0..100), "after the redirects");
        let second = elsewhere
            .state
            .requests
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(second, 0, "{status}: the second listener got a request");
    }
}

/// Credentials in the endpoint's and the proxy's URLs never show: not in `sidelog check`,
/// `/status`, `/metrics` or the log, errors included.
#[test]
fn credentials_in_urls_are_never_shown() {
    const SECRET: &str = "s3cretpass";
    let mut h = Harness::with_intake();
    append(&h.log("app.log"), numbered("c", 0..10));
    let port = h.intake().addr.port();
    // The proxy refuses connections: its errors are logged, with its URL.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_port = dead.local_addr().expect("addr").port();
    drop(dead);
    let config = config(&h, |d| {
        d.endpoint = Some(url(&format!("http://alice:{SECRET}@127.0.0.1:{port}")));
        d.proxy = Some(url(&format!("http://bob:{SECRET}@127.0.0.1:{dead_port}")));
        d.request_timeout_ms = 1000;
    });
    let out = std::process::Command::new(BIN)
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .expect("check");
    let check =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{check}");
    assert!(check.contains("http://***:***@127.0.0.1"), "{check}");
    let base = h.start_with_admin(&config, &[]);
    h.wait_stderr("request failed", T);
    let get = |path: &str| h.get(&format!("{base}{path}")).1;
    let shown = [check, get("/status"), get("/metrics"), h.stderr()];
    for text in &shown {
        assert!(!text.contains(SECRET), "{text}");
    }
    assert!(shown[1].contains("***"), "{}", shown[1]);
    assert!(h.terminate().success(), "{}", h.stderr());
}

/// An intake (or a gateway in front of it) that answers 400 to everything for 30 s, then
/// accepts: an outage, not poison. 10,000 lines waiting in two files all arrive, once; no
/// event is dropped; the batches are held behind the outage gate, a few requests each.
#[test]
fn an_intake_that_refuses_everything_for_a_while_loses_nothing() {
    let mut h = Harness::with_intake();
    append(&h.log("a.log"), numbered("a", 0..5000));
    append(&h.log("b.log"), numbered("b", 0..5000));
    h.intake().set_faults(Faults {
        status: Some(400),
        ..Faults::default()
    });
    // The default retry waits and concurrency, as a Pod has them.
    let config = config(&h, |d| {
        let defaults = DatadogConfig::default();
        d.retry_initial_ms = defaults.retry_initial_ms;
        d.retry_max_ms = defaults.retry_max_ms;
        d.request_concurrency = defaults.request_concurrency;
    });
    let base = h.start_with_admin(&config, &[]);
    h.wait_stderr("refuses every part of a batch", T);
    let began = Instant::now();
    let requests_at = || {
        h.intake()
            .state
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    wait_for("30 s of refusals", Duration::from_secs(40), || {
        began.elapsed() >= Duration::from_secs(30)
    });
    let refused = requests_at();
    assert_eq!(h.intake().event_count(), 0);
    assert_eq!(
        h.metric(&base, "sidelog_events_dropped_total{reason=\"invalid\"}"),
        Some(0.0)
    );
    assert_eq!(h.metric(&base, "sidelog_intake_failing"), Some(1.0));
    h.intake().set_faults(Faults::default());
    h.wait_events(10_000, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    let mut got = h.messages();
    got.sort();
    let mut want = numbered("a", 0..5000);
    want.extend(numbered("b", 0..5000));
    want.sort();
    assert_lines(&got, &want, "every line once");
    // 10,000 lines make about 10 full batches; what the refusals cost, in requests per
    // batch: the first batch's parts, then one probe per wait.
    let per_batch = refused as f64 / 10.0;
    assert!(per_batch <= 5.0, "{refused} requests while refused");
    assert_eq!(
        h.stderr().matches("refuses every part of a batch").count(),
        1,
        "said once"
    );
}

/// A reload during an outage with a rejected key: the new run's delivery state is its own.
/// Once the intake answers again every line arrives, and neither the metrics nor `/status`
/// keep anything of the outage the old run saw.
#[test]
fn a_reload_during_an_outage_leaves_no_state_behind() {
    let mut h = Harness::with_intake();
    let log = h.log("app.log");
    append(&log, numbered("a", 0..100));
    h.intake().set_faults(Faults {
        status: Some(403),
        ..Faults::default()
    });
    let config = config(&h, |d| {
        d.retry_initial_ms = 100;
        d.retry_max_ms = 400;
    });
    let base = h.start_with_admin(&config, &[]);
    wait_for("the key rejected and the intake failing", T, || {
        h.metric(&base, "sidelog_api_key_rejected") == Some(1.0)
            && h.metric(&base, "sidelog_intake_failing") == Some(1.0)
    });
    h.send_signal(libc::SIGHUP);
    h.wait_stderr("reloading configuration", T);
    append(&log, numbered("b", 0..100));
    h.intake().set_faults(Faults::default());
    h.wait_events(200, T);
    wait_for("the delivery gauges back at 0", T, || {
        h.metric(&base, "sidelog_api_key_rejected") == Some(0.0)
            && h.metric(&base, "sidelog_intake_failing") == Some(0.0)
    });
    let (code, body) = h.get(&format!("{base}/status"));
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&body).expect("status is JSON");
    assert!(status["not_shipping_because"].is_null(), "{body}");
    assert!(h.terminate().success(), "{}", h.stderr());
    let mut expected = numbered("a", 0..100);
    expected.extend(numbered("b", 0..100));
    assert_lines(&h.messages(), &expected, "across the reload");
}
