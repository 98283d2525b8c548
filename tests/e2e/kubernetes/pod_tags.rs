//! Tags from the Pod's labels and annotations (Downward API volumes), end to end: the real
//! binary against the built-in intake, the files laid out and updated as the kubelet does.

use std::path::Path;
use std::time::Duration;

use crate::harness::*;
use sidelog_shipper::config::{Input, KubernetesConfig};

const T: Duration = Duration::from_secs(60);

const LABELS: &str = "app=\"shop\"\npod-template-hash=\"5d8f\"\ntags.datadoghq.com/env=\"prod\"\ntags.datadoghq.com/service=\"checkout\"\ntags.datadoghq.com/version=\"1.0\"\n";
const ANNOTATIONS: &str = "ad.datadoghq.com/tags=\"{\\\"tier\\\":\\\"web\\\"}\"\nkubernetes.io/config.seen=\"2026-11-26T10:00:00Z\"\n";

/// A config with the usual input (service `user-msvc`) for `*.log`, a second input without a
/// service for `*.txt`, and the `[kubernetes]` settings given.
fn config(h: &Harness, kubernetes: KubernetesConfig) -> std::path::PathBuf {
    h.config_with(|c| {
        c.batch.timeout_ms = 200;
        c.inputs.push(Input {
            include: vec![format!("{}/*.txt", h.logs().display())],
            ..Input::default()
        });
        c.kubernetes = kubernetes;
    })
}

fn kubernetes_settings(labels: &Path, annotations: &Path) -> KubernetesConfig {
    KubernetesConfig {
        labels_file: Some(labels.to_path_buf()),
        annotations_file: Some(annotations.to_path_buf()),
        pod_labels_as_tags: [("app".to_string(), "kube_app".to_string())].into(),
        ..KubernetesConfig::default()
    }
}

/// The events that arrived whose message starts with `prefix`: (service, tags).
fn arrived(h: &Harness, prefix: &str) -> Vec<(String, String)> {
    h.intake()
        .events()
        .iter()
        .filter(|e| e["message"].as_str().is_some_and(|m| m.starts_with(prefix)))
        .map(|e| {
            (
                e["service"].as_str().unwrap_or_default().to_string(),
                e["ddtags"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The lines written with `numbered(prefix, 0..n)` arrived, each once and in order.
#[track_caller]
fn assert_arrived_once(h: &Harness, prefix: &str, n: usize) {
    let got: Vec<String> = h
        .messages()
        .into_iter()
        .filter(|m| m.starts_with(prefix))
        .collect();
    assert_lines(&got, &numbered(prefix, 0..n), prefix);
}

fn tags_of(tags: &str) -> Vec<&str> {
    let mut t: Vec<&str> = tags.split(',').collect();
    t.sort_unstable();
    t
}

#[test]
fn pod_labels_become_tags_and_follow_a_label_change() {
    let mut h = Harness::with_intake();
    let pod = h.dir.path().join("podinfo");
    let mut labels = KubeletVolume::new(&pod, "labels", LABELS).expect("kubelet volume");
    let annotations = pod.join("annotations");
    std::fs::write(&annotations, ANNOTATIONS).expect("annotations");
    let config = config(&h, kubernetes_settings(&labels.path(), &annotations));
    h.start(&config);

    append(&h.log("app.log"), numbered("before-", 0..100));
    append(&h.log("worker.txt"), numbered("worker-", 0..10));
    h.wait_events(110, T);
    for (service, tags) in arrived(&h, "before-") {
        assert_eq!(service, "user-msvc", "an input's own service wins");
        assert_eq!(
            tags_of(&tags),
            [
                "env:prod",
                "env:test",
                "filename:app.log",
                "kube_app:shop",
                "team:users",
                "tier:web",
                "version:1.0"
            ]
        );
    }
    for (service, tags) in arrived(&h, "worker-") {
        assert_eq!(
            service, "checkout",
            "the label names the service of an input without one"
        );
        assert!(tags.contains("env:prod") && tags.contains("filename:worker.txt"));
    }

    labels
        .update(&LABELS.replace("prod", "staging").replace("1.0", "1.1"))
        .expect("kubelet update");
    h.wait_stderr("env:staging", T);
    append(&h.log("app.log"), numbered("after-", 0..100));
    h.wait_events(210, T);
    for (_, tags) in arrived(&h, "after-") {
        let tags = tags_of(&tags);
        assert!(
            tags.contains(&"env:staging") && tags.contains(&"version:1.1"),
            "{tags:?}"
        );
        assert!(
            !tags.contains(&"env:prod") && !tags.contains(&"version:1.0"),
            "{tags:?}"
        );
    }
    assert_eq!(h.terminate().code(), Some(0));
    assert_arrived_once(&h, "before-", 100);
    assert_arrived_once(&h, "after-", 100);
    assert_arrived_once(&h, "worker-", 10);
}

#[test]
fn missing_and_malformed_files_warn_and_lines_still_ship() {
    let mut h = Harness::with_intake();
    let labels = h.dir.path().join("podinfo/labels");
    let annotations = h.dir.path().join("annotations");
    std::fs::write(&annotations, "this is not a downward file\n").expect("annotations");
    let config = config(&h, kubernetes_settings(&labels, &annotations));
    h.start(&config);
    h.wait_stderr("cannot read", T);
    let log = h.stderr();
    assert!(log.contains(&labels.display().to_string()), "{log}");
    assert!(log.contains("as a Downward API file: line 1"), "{log}");

    append(&h.log("app.log"), numbered("plain-", 0..50));
    h.wait_events(50, T);
    for (_, tags) in arrived(&h, "plain-") {
        assert_eq!(
            tags_of(&tags),
            ["env:test", "filename:app.log", "team:users"]
        );
    }

    // The volume appears later (a mount that was late): its tags apply from then on.
    KubeletVolume::new(&h.dir.path().join("podinfo"), "labels", LABELS).expect("kubelet volume");
    h.wait_stderr("env:prod", T);
    append(&h.log("app.log"), numbered("tagged-", 0..50));
    h.wait_events(100, T);
    for (_, tags) in arrived(&h, "tagged-") {
        assert!(
            tags.contains("env:prod") && tags.contains("kube_app:shop"),
            "{tags}"
        );
    }
    assert_eq!(h.terminate().code(), Some(0));
    assert_arrived_once(&h, "plain-", 50);
    assert_arrived_once(&h, "tagged-", 50);
}

/// What the kubelet gives every container started after a Service named `sidelog` with a
/// port named `metrics` 9500 (`enableServiceLinks`, on by default).
const SERVICE_LINKS: &[(&str, &str)] = &[
    ("SIDELOG_SERVICE_HOST", "10.96.12.34"),
    ("SIDELOG_SERVICE_PORT", "9500"),
    ("SIDELOG_SERVICE_PORT_METRICS", "9500"),
    ("SIDELOG_PORT", "tcp://10.96.12.34:9500"),
    ("SIDELOG_PORT_9500_TCP", "tcp://10.96.12.34:9500"),
    ("SIDELOG_PORT_9500_TCP_PROTO", "tcp"),
    ("SIDELOG_PORT_9500_TCP_PORT", "9500"),
    ("SIDELOG_PORT_9500_TCP_ADDR", "10.96.12.34"),
];

#[test]
fn service_links_of_a_service_named_sidelog_are_named_once_and_ignored() {
    let mut h = Harness::with_intake();
    let config = h.default_config();
    let mut env = SERVICE_LINKS.to_vec();
    // A real key beside them still applies.
    env.push(("SIDELOG_INPUTS__0__SERVICE", "from-env"));
    h.start_with_env(&config, &env);
    append(&h.log("app.log"), numbered("linked-", 0..20));
    h.wait_events(20, T);
    assert_eq!(h.terminate().code(), Some(0), "{}", h.stderr());
    assert_arrived_once(&h, "linked-", 20);
    assert!(
        arrived(&h, "linked-").iter().all(|(s, _)| s == "from-env"),
        "the real override applies"
    );
    let log = h.stderr();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("name no configuration key"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning: {log}");
    for (name, _) in SERVICE_LINKS {
        assert!(
            warnings[0].contains(name),
            "{name} not named: {}",
            warnings[0]
        );
    }
    assert!(!warnings[0].contains("SIDELOG_INPUTS__0__SERVICE"));
}
