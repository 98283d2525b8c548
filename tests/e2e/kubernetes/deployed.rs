//! sidelog as a Pod runs it: the configuration of the shipped ConfigMap
//! (`docker/kubernetes/configmap.yaml`, every other key at its default: adaptive concurrency,
//! the default retries, batches, checkpoints and shutdown, info logging in JSON), with only
//! the paths and the endpoint overridden from the environment as docs/operations.md shows. CI runs
//! this file once more against the image's own binary (`SIDELOG_BIN`). Every data path is
//! crossed: tailing through rename and copytruncate rotation, encoding, compression,
//! delivery through an outage and a key rotation, checkpoints across a kill and a restart,
//! the drain at SIGTERM, and the admin endpoint.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::*;
use sidelog_devtools::intake::Faults;

const T: Duration = Duration::from_secs(120);

/// The `sidelog.toml` of the shipped ConfigMap, as the container reads it.
fn configmap_toml() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/kubernetes/configmap.yaml");
    let yaml = std::fs::read_to_string(&path).expect("the ConfigMap");
    let mut lines = yaml.lines().skip_while(|l| l.trim() != "sidelog.toml: |");
    lines.next().expect("a sidelog.toml key in the ConfigMap");
    let body: Vec<&str> = lines
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| l.get(4..).unwrap_or(""))
        .collect();
    assert!(body.len() > 5, "no sidelog.toml in {}", path.display());
    body.join("\n")
}

/// A Pod's sidelog: the ConfigMap's file, the key in a Secret volume laid out as the kubelet
/// does, the log directory, and the environment the Pod gives it.
struct Deployed {
    config: PathBuf,
    secret: KubeletVolume,
    env: Vec<(String, String)>,
}

impl Deployed {
    fn new(h: &Harness, key: &str) -> Deployed {
        let config = h.dir.path().join("sidelog.toml");
        std::fs::write(&config, configmap_toml()).expect("config");
        let secret = KubeletVolume::new(&h.dir.path().join("secret"), "api-key", key)
            .expect("kubelet volume");
        let path = |p: &Path| p.to_str().expect("UTF-8 path").to_string();
        let env = vec![
            ("SIDELOG_DATA_DIR".into(), path(&h.dir.path().join("data"))),
            (
                "SIDELOG_INPUTS__0__INCLUDE".into(),
                format!("{}/*.log", h.logs().display()),
            ),
            ("SIDELOG_DATADOG__API_KEY_FILE".into(), path(&secret.path())),
            ("SIDELOG_DATADOG__ENDPOINT".into(), h.intake().endpoint()),
            ("POD_NAME".into(), "app-7d9f8-x2x4q".into()),
            ("POD_NAMESPACE".into(), "shop".into()),
            ("NODE_NAME".into(), "node-1".into()),
        ];
        Deployed {
            config,
            secret,
            env,
        }
    }

    /// Starts it; returns the admin endpoint's base URL.
    fn start(&self, h: &mut Harness) -> String {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        h.start_with_admin(&self.config, &env)
    }
}

#[test]
fn a_pod_ships_through_both_rotations_and_drains_at_sigterm() {
    let mut h = Harness::with_intake();
    let deployed = Deployed::new(&h, API_KEY);
    let app = h.log("app.log");
    let copied = h.log("copied.log");
    std::fs::write(&app, b"").expect("create");
    std::fs::write(&copied, b"").expect("create");
    deployed.start(&mut h);
    let renamed = PacedWriter::start(&app, "r ", 200, OnRotate::Reopen { late: 20 });
    let copy = PacedWriter::start(&copied, "c ", 200, OnRotate::Keep);
    h.wait_events(400, T);
    // Rename rotation: the app reopens its name after 20 more lines to the old file.
    std::fs::rename(&app, h.log("app.log.1")).expect("rotate");
    renamed.wait_written(200);
    // copytruncate, the writer held still while sidelog catches up and the copy is made
    // (lines not read before the truncation are only in the copy: copytruncate's loss).
    {
        let _still = copy.pause.lock().expect("pause");
        let written = copy.written();
        wait_for("copied.log read to its end", T, || {
            let arrived = h.messages().iter().filter(|m| m.starts_with("c ")).count();
            arrived as u64 >= written
        });
        std::fs::copy(&copied, h.log("copied.log.1")).expect("copy");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&copied)
            .and_then(|f| f.set_len(0))
            .expect("truncate");
    }
    copy.wait_written(200);
    let (r, c) = (renamed.finish(), copy.finish());
    // The Pod is deleted: everything written is shipped before the exit.
    assert!(h.terminate().success(), "{}", h.stderr());
    let messages = h.messages();
    assert_each_once(&messages, "r ", r);
    assert_each_once(&messages, "c ", c);
    let first = &h.intake().events()[0];
    assert_eq!(first["service"], "user-msvc");
    assert_eq!(first["hostname"], "app-7d9f8-x2x4q");
    let tags = first["ddtags"].as_str().unwrap_or_default();
    assert!(tags.contains("kube_namespace:shop"), "{tags}");
    assert!(
        !h.stderr().contains("\"level\":\"ERROR\""),
        "{}",
        h.stderr()
    );
}

#[test]
fn a_pod_rides_out_outages_and_a_key_rotation() {
    let mut h = Harness::new();
    let intake_key = h.dir.path().join("intake-key");
    std::fs::write(&intake_key, "first-key-0123456789\n").expect("key");
    h.start_intake_with(None, |o| o.api_key_file = Some(intake_key.clone()));
    let mut deployed = Deployed::new(&h, "first-key-0123456789\n");
    let log = h.log("app.log");
    std::fs::write(&log, b"").expect("create");
    let base = deployed.start(&mut h);
    let writer = PacedWriter::start(&log, "o ", 50, OnRotate::Keep);
    h.wait_events(50, T);

    // The intake is gone (connections refused) for three failed attempts.
    h.intake_down();
    wait_for("three failed attempts", T, || {
        h.metric(&base, "sidelog_retries_total{reason=\"network\"}")
            .is_some_and(|n| n >= 3.0)
    });
    h.intake_up();
    writer.wait_written(50);
    h.wait_events(writer.written(), T);

    // Then it answers 503 three times.
    h.intake().set_faults(Faults {
        status: Some(503),
        ..Faults::default()
    });
    h.wait_faults(3, T);
    h.intake().set_faults(Faults::default());
    writer.wait_written(50);
    h.wait_events(writer.written(), T);

    // The key is rotated: the intake takes only the new one, and the kubelet updates the
    // Secret volume.
    std::fs::write(&intake_key, "second-key-0123456789\n").expect("key");
    deployed
        .secret
        .update("second-key-0123456789\n")
        .expect("kubelet update");
    writer.wait_written(100);
    h.wait_events(writer.written(), T);

    let n = writer.finish();
    h.wait_events(n, T);
    let sent = h.metric(&base, "sidelog_events_sent_total");
    assert_eq!(sent, Some(n as f64), "metrics agree with the intake");
    assert!(h.terminate().success(), "{}", h.stderr());
    assert_each_once(&h.messages(), "o ", n);
}

#[test]
fn a_pod_killed_and_restarted_loses_nothing() {
    let mut h = Harness::with_intake();
    let deployed = Deployed::new(&h, API_KEY);
    let log = h.log("app.log");
    std::fs::write(&log, b"").expect("create");
    deployed.start(&mut h);
    let writer = PacedWriter::start(&log, "k ", 500, OnRotate::Keep);
    h.wait_events(2000, T);
    // An OOM kill.
    h.kill9();
    writer.wait_written(500);
    deployed.start(&mut h);
    writer.wait_written(500);
    let n = writer.finish();
    let complete = || count_missing_and_repeated(&h.messages(), "k ", n).0 == 0;
    wait_for("every line after the restart", T, complete);
    assert!(h.terminate().success(), "{}", h.stderr());
    let (_, repeated) = count_missing_and_repeated(&h.messages(), "k ", n);
    // What was accepted but not yet checkpointed at the kill: a checkpoint is written once
    // 1,000 accepted events wait for one (checkpoint_interval_ms, 5 s, is longer at this
    // rate), plus the requests in flight, a second of lines each (the batch timeout), two
    // at a time at this rate. Writes held back longer would cross it.
    eprintln!("kill -9 at 500 lines/s with the Pod's settings: {repeated} of {n} lines repeated");
    assert!(repeated <= 1000 + 2 * 500, "{repeated} lines repeated");
    // A clean stop repeats nothing: started again, it sends nothing.
    let arrived = h.intake().event_count();
    let base = deployed.start(&mut h);
    let lag = format!("sidelog_file_lag_bytes{{path=\"{}\"}}", log.display());
    wait_for("the file followed, nothing owed", T, || {
        h.metric(&base, &lag) == Some(0.0)
    });
    assert!(h.terminate().success(), "{}", h.stderr());
    assert_eq!(
        h.intake().event_count(),
        arrived,
        "sent again after a clean stop"
    );
}

/// The shipper's containers in every shipped manifest: their only probe, if any, is liveness
/// on `/healthz` (the Datadog Agent's Pod with only the image changed has none). A readiness
/// probe on a sidecar would make the app leave its Services whenever the intake or the key
/// fails.
#[test]
fn shipped_manifests_probe_liveness_only() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/kubernetes");
    let mut files: Vec<PathBuf> = Vec::new();
    for d in [dir.clone(), dir.join("agent")] {
        for entry in std::fs::read_dir(&d).expect("manifests") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path);
            }
        }
    }
    let (mut shippers, mut probed) = (0, 0);
    for path in files {
        let text = std::fs::read_to_string(&path).expect("read");
        for doc in sidelog_shipper::yaml11::load(&text).expect("YAML") {
            let spec = if doc["kind"].as_str() == Some("Pod") {
                &doc["spec"]
            } else {
                &doc["spec"]["template"]["spec"]
            };
            for list in ["containers", "initContainers"] {
                for c in spec[list].as_vec().into_iter().flatten() {
                    let image = c["image"].as_str().unwrap_or("");
                    let app = c["args"][0].as_str() == Some("generate");
                    if !image.starts_with("sidelog") || app {
                        continue;
                    }
                    shippers += 1;
                    let name = format!("{} {}", path.display(), c["name"].as_str().unwrap_or("?"));
                    assert!(
                        c["readinessProbe"].is_badvalue(),
                        "{name}: a readiness probe"
                    );
                    let liveness = &c["livenessProbe"];
                    if !liveness.is_badvalue() {
                        probed += 1;
                        assert_eq!(
                            liveness["httpGet"]["path"].as_str(),
                            Some("/healthz"),
                            "{name}"
                        );
                    }
                }
            }
        }
    }
    assert!(
        shippers >= 4 && probed >= 3,
        "found {shippers} shipper containers, {probed} with a liveness probe"
    );
}
