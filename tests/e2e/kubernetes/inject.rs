//! `sidelog inject` as users run it: a file or standard input in, YAML out, notes and errors
//! on stderr; nothing on stdout when any document fails. (Every kind's output is validated
//! against the Kubernetes schemas by `.ci/run`; the details are unit-tested in the library.)

// The command is there only in a binary built with it.
#![cfg(feature = "inject")]

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::harness::yaml_alias_bomb;

const BIN: &str = env!("CARGO_BIN_EXE_sidelog");
const WORKLOADS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/e2e/kubernetes/manifests/workloads.yaml"
);

fn inject(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .arg("inject")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sidelog inject");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

/// A manifest whose aliases would expand without end is refused by name, and nothing is
/// written.
#[test]
fn an_alias_bomb_is_refused_by_name() {
    let out = inject(&[], &yaml_alias_bomb());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("alias bomb"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn every_workload_of_a_file_is_injected_and_injecting_again_changes_nothing() {
    let first = inject(&["-f", WORKLOADS], "");
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let yaml = String::from_utf8(first.stdout).expect("UTF-8");
    let notes = String::from_utf8_lossy(&first.stderr);
    assert_eq!(notes.matches(": injected").count(), 7, "{notes}");
    assert!(
        notes.contains("Service web (document 3): skipped"),
        "{notes}"
    );
    assert_eq!(yaml.matches("- name: sidelog\n").count(), 7);
    assert_eq!(
        yaml.matches("kind: ConfigMap").count(),
        2,
        "one per namespace"
    );

    let again = inject(&[], &yaml);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(String::from_utf8(again.stdout).expect("UTF-8"), yaml);
}

#[test]
fn a_document_that_cannot_be_injected_stops_everything() {
    let input = "apiVersion: v1\nkind: Pod\nmetadata: { name: fine }\nspec: { containers: [{ name: a, image: a }] }\n---\napiVersion: v1\nkind: Pod\nmetadata: { name: hollow }\nspec: { containers: [] }\n";
    let out = inject(&["--classic"], input);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "nothing printed half-done");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Pod hollow (document 2): has no containers"),
        "{err}"
    );
}

const YAML_11: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/e2e/kubernetes/manifests/yaml11.yaml"
);

/// kubectl reads YAML 1.1: `defaultMode: 0644` is 420, `readOnly: yes` is true. Injection
/// writes every such scalar back as it was written, so it keeps its meaning.
#[test]
fn yaml_11_scalars_keep_their_meaning_through_injection() {
    let out = inject(&["-f", YAML_11], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).expect("UTF-8");
    for written in [
        "replicas: 0x2",
        "revisionHistoryLimit: 1_0",
        "paused: no",
        "terminationGracePeriodSeconds: 0x3C",
        "automountServiceAccountToken: no",
        "enableServiceLinks: off",
        "stdin: on",
        "tty: off",
        "readOnly: yes",
        "defaultMode: 0644",
        "mode: 0x1A4",
    ] {
        assert!(yaml.contains(written), "{written} not kept:\n{yaml}");
    }
    // The drain fits the grace period as kubectl reads it: 0x3C is 60 s.
    assert!(yaml.contains("value: \"50000\""), "{yaml}");

    // Every form of the family, in a kind inject passes through and in a Pod it injects.
    let forms = [
        "0644", "0o644", "0x1A4", "1_000", ".inf", "-.inf", ".nan", "1:20", "yes", "no", "on",
        "off", "y", "N", "0b101", "1_000.5",
    ];
    let values: String = forms
        .iter()
        .enumerate()
        .map(|(i, f)| format!("    v{i}: {f}\n"))
        .collect();
    let input = format!(
        "apiVersion: example.com/v1\nkind: Example\nmetadata: {{ name: e }}\nspec:\n{values}---\napiVersion: v1\nkind: Pod\nmetadata: {{ name: p }}\nspec:\n  containers: [{{ name: a, image: a }}]\n  x:\n{values}"
    );
    let out = inject(&["--classic"], &input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).expect("UTF-8");
    for (i, form) in forms.iter().enumerate() {
        let line = format!("v{i}: {form}\n");
        assert_eq!(
            yaml.matches(&line).count(),
            2,
            "{line:?} not kept in both:\n{yaml}"
        );
    }
}
