//! The API key from a Kubernetes Secret volume, key hygiene, environment in the config, and
//! reload on SIGHUP: the real binary against the built-in intake.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::*;
use sidelog_shipper::config::Config;

const T: Duration = Duration::from_secs(60);

#[test]
fn a_rotated_secret_is_followed_without_restart_or_loss() {
    let mut h = Harness::new();
    let intake_key = h.dir.path().join("intake-key");
    std::fs::write(&intake_key, "key-one\n").expect("key");
    h.start_intake_with(None, |o| o.api_key_file = Some(intake_key.clone()));
    let mut secret = KubeletVolume::new(&h.dir.path().join("secret"), "api-key", "key-one\n")
        .expect("kubelet volume");
    let log = h.log("app.log");
    std::fs::write(&log, b"").expect("create");
    let config = h.default_config();
    let key_path = secret.path();
    h.start_with_env(
        &config,
        &[(
            "SIDELOG_DATADOG__API_KEY_FILE",
            key_path.to_str().expect("utf8"),
        )],
    );
    let writer = PacedWriter::start(&log, "w ", 500, OnRotate::Keep);
    wait_for("a first stretch with the old key", T, || {
        h.intake().event_count() >= 500
    });
    // The Secret is updated; from now on the intake takes only the new key.
    secret.update("key-two\n").expect("kubelet update");
    let swapped = Instant::now();
    std::fs::write(&intake_key, "key-two\n").expect("key");
    let before = h.intake().event_count();
    wait_for("lines accepted with the new key", T, || {
        h.intake().event_count() > before + 100
    });
    let first_accepted = h
        .intake()
        .recent_requests()
        .iter()
        .filter(|r| r.at > swapped && r.status == 202)
        .map(|r| r.at)
        .min()
        .expect("an accepted request after the swap");
    assert!(
        first_accepted - swapped < Duration::from_secs(5),
        "the new key was used after {:?}",
        first_accepted - swapped
    );
    h.finish_stream(writer, "w ");
    assert!(h.stderr().contains("API key changed"), "{}", h.stderr());
}

#[test]
fn the_key_appears_nowhere_even_at_trace_level() {
    const KEY: &str = "LEAKCHECK-5f3c9a0d1e7b4c2a";
    let mut h = Harness::new();
    std::fs::write(h.dir.path().join("api-key"), format!("  {KEY}\n")).expect("key");
    // The intake first rejects the key (error paths log too), then takes it.
    let intake_key = h.dir.path().join("intake-key");
    std::fs::write(&intake_key, "something-else\n").expect("key");
    h.start_intake_with(None, |o| o.api_key_file = Some(intake_key.clone()));
    append(&h.log("app.log"), numbered("leak", 0..200));
    let config = h.default_config();
    let mut printed = String::new();

    let out = Command::new(BIN)
        .args(["check", "--config", config.to_str().expect("utf8")])
        .env("RUST_LOG", "trace")
        .output()
        .expect("check");
    assert!(out.status.success());
    printed += &String::from_utf8_lossy(&out.stdout);
    printed += &String::from_utf8_lossy(&out.stderr);

    let base = h.start_with_admin(&config, &[("RUST_LOG", "trace")]);
    h.wait_stderr("rejects the API key", T);
    std::fs::write(&intake_key, format!("{KEY}\n")).expect("key");
    h.wait_events(200, T);
    for path in ["/metrics", "/status", "/readyz"] {
        printed += &h.get(&format!("{base}{path}")).1;
    }
    assert!(h.terminate().success());
    printed += &h.stderr();

    // From the environment instead of a file.
    let out = Command::new(BIN)
        .args(["check", "--config", config.to_str().expect("utf8")])
        .env("SIDELOG_DATADOG__API_KEY_FILE", "")
        .env("DD_API_KEY", KEY)
        .env("RUST_LOG", "trace")
        .output()
        .expect("check");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    printed += &String::from_utf8_lossy(&out.stdout);
    printed += &String::from_utf8_lossy(&out.stderr);

    assert!(
        printed.len() > 10_000,
        "trace output expected, got {} bytes",
        printed.len()
    );
    assert!(printed.contains("DEBUG") || printed.contains("TRACE"));
    assert!(!printed.contains(KEY), "the key leaked");
    assert!(
        !printed.contains("5f3c9a0d1e7b4c2a"),
        "part of the key leaked"
    );
}

#[test]
fn downward_api_variables_become_hostname_and_tags() {
    let mut h = Harness::with_intake();
    append(&h.log("app.log"), numbered("env", 0..5));
    // Variables where the harness sets the hostname and the tags.
    let config = h.config_with(|c| {
        c.batch.timeout_ms = 100;
        c.datadog.hostname = Some("${POD_NAME}".into());
        c.datadog.tags = [
            "env:test",
            "pod:${POD_NAME}",
            "ns:${POD_NAMESPACE:-default}",
            "node:${NODE_NAME:-none}",
        ]
        .map(String::from)
        .to_vec();
    });
    h.start_with_env(
        &config,
        &[
            ("POD_NAME", "user-msvc-7d9f8b6c5d-x2x9k"),
            ("NODE_NAME", "node-3"),
        ],
    );
    h.wait_events(5, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    for e in h.intake().events() {
        assert_eq!(e["hostname"], "user-msvc-7d9f8b6c5d-x2x9k");
        let tags = e["ddtags"].as_str().expect("tags");
        assert!(
            tags.starts_with("env:test,pod:user-msvc-7d9f8b6c5d-x2x9k,ns:default,node:node-3,"),
            "{tags}"
        );
    }
    // Without the variable and without a default: an error naming it and the key.
    let out = Command::new(BIN)
        .args(["check", "--config", config.to_str().expect("utf8")])
        .env_remove("POD_NAME")
        .output()
        .expect("check");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("POD_NAME") && err.contains("datadog.hostname"),
        "{err}"
    );
}

#[test]
fn plain_http_to_a_remote_host_is_refused() {
    let h = Harness::new();
    let remote = |c: &mut Config| c.datadog.endpoint = Some(url("http://intake.example.com"));
    let config = h.config_with(remote);
    for args in [&["check", "--config"][..], &["--config"][..]] {
        let out = Command::new(BIN)
            .args(args)
            .arg(&config)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("allow_insecure_http"), "{err}");
    }
    let config = h.config_with(|c| {
        remote(c);
        c.datadog.allow_insecure_http = true;
    });
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_key_mounted_late_is_waited_for() {
    let mut h = Harness::with_intake();
    std::fs::remove_file(h.dir.path().join("api-key")).expect("no key yet");
    append(&h.log("app.log"), numbered("late", 0..20));
    let config = h.config_with(|c| {
        c.datadog.api_key_wait_secs = 60;
        c.batch.timeout_ms = 100;
    });
    let base = h.start_with_admin(&config, &[]);
    h.wait_stderr("waiting for the API key file", T);
    // The Pod stays ready while its Secret is late: only the status and the metric say why
    // nothing ships.
    let get = |path: &str| h.get(&format!("{base}{path}"));
    assert_eq!(get("/readyz"), (200, "ready\n".to_string()));
    assert_eq!(get("/healthz"), (200, "ok\n".to_string()));
    let status = get("/status").1;
    assert!(status.contains("waiting for the API key"), "{status}");
    assert_eq!(h.metric(&base, "sidelog_api_key_missing"), Some(1.0));
    std::fs::write(h.dir.path().join("api-key"), format!("{API_KEY}\n")).expect("key");
    h.wait_events(20, T);
    assert!(h.terminate().success(), "{}", h.stderr());
}

#[test]
fn sighup_reloads_a_good_config_and_refuses_a_bad_one() {
    let mut h = Harness::with_intake();
    let log = h.log("app.log");
    append(&log, numbered("one", 0..100));
    let config = h.default_config();
    h.start(&config);
    h.wait_events(100, T);

    h.config_with(|c| {
        c.batch.timeout_ms = 200;
        c.inputs[0].service = "renamed".into();
    });
    let good = std::fs::read_to_string(&config).expect("read");
    signal(h.child.as_ref().expect("running"), libc::SIGHUP);
    h.wait_stderr("reloading configuration", T);
    append(&log, numbered("two", 0..100));
    h.wait_events(200, T);

    let bad = good.replace("timeout_ms = 200", "timeout_ms = 200\nmax_event = 3");
    assert_ne!(bad, good);
    std::fs::write(&config, bad).expect("write");
    signal(h.child.as_ref().expect("running"), libc::SIGHUP);
    h.wait_stderr("configuration reload refused", T);
    append(&log, numbered("three", 0..100));
    h.wait_events(300, T);
    assert!(h.terminate().success(), "{}", h.stderr());

    let events = h.intake().events();
    let services: Vec<&str> = events
        .iter()
        .map(|e| e["service"].as_str().unwrap_or(""))
        .collect();
    assert!(services[..100].iter().all(|s| *s == "user-msvc"));
    assert!(
        services[100..].iter().all(|s| *s == "renamed"),
        "{services:?}"
    );
    let mut expected = numbered("one", 0..100);
    expected.extend(numbered("two", 0..100));
    expected.extend(numbered("three", 0..100));
    assert_lines(&h.messages(), &expected, "across reloads (positions kept)");
    assert!(
        h.stderr().contains("max_event"),
        "the refusal names the key"
    );
}
