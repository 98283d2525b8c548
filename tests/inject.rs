//! `sidelog inject` as users run it: a file or standard input in, YAML out, notes and errors
//! on stderr; nothing on stdout when any document fails. (Every kind's output is validated
//! against the Kubernetes schemas by `.ci/run`; the details are unit-tested in the library.)

use std::io::Write;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_sidelog");
const WORKLOADS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/inject/workloads.yaml");

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
