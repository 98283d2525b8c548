//! The command line: help, version, `check`, and config errors that name the key.

use std::process::Command;

use crate::harness::*;

fn sidelog(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("SIDELOG_CONFIG")
        .output()
        .expect("run sidelog");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_and_version() {
    let (code, out, _) = sidelog(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
    let (code, out, _) = sidelog(&["--help"]);
    assert_eq!(code, 0);
    for word in ["run", "check", "generate", "--config"] {
        assert!(out.contains(word), "--help lacks {word}: {out}");
    }
    // The development tools are there exactly when the binary is built with them.
    for word in ["intake", "bench", "demo"] {
        let listed = out.lines().any(|l| l.trim_start().starts_with(word));
        assert_eq!(
            listed,
            cfg!(feature = "devtools"),
            "--help and {word}: {out}"
        );
    }
}

#[test]
fn check_prints_effective_config_without_the_key() {
    let h = Harness::new();
    let config = h.config_with(|c| c.datadog.endpoint = Some(url("http://127.0.0.1:9")));
    let (code, out, err) = sidelog(&["check", "--config", config.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.contains(API_KEY) && !err.contains(API_KEY),
        "key leaked"
    );
    assert!(out.contains("redacted"), "{out}");
    assert!(
        out.contains("max_events = 1000"),
        "defaults filled in: {out}"
    );
    assert!(out.contains("http://127.0.0.1:9/api/v2/logs"), "{out}");
}

#[test]
fn check_applies_environment_overrides() {
    let h = Harness::new();
    let config = h.config_with(|c| c.datadog.endpoint = Some(url("http://127.0.0.1:9")));
    let out = Command::new(BIN)
        .args(["check", "--config", config.to_str().expect("utf8")])
        .env("SIDELOG_BATCH__MAX_EVENTS", "77")
        .env("SIDELOG_DATADOG__ENDPOINT", "http://127.0.0.1:7")
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("max_events = 77"), "{text}");
    assert!(text.contains("http://127.0.0.1:7/api/v2/logs"), "{text}");
}

/// Each broken config exits non-zero from both `check` and `run`, naming the key.
#[test]
fn config_errors_name_the_key() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "missing include",
            "[[inputs]]\nservice = \"x\"\n",
            "inputs[0].include",
        ),
        (
            "bad compression",
            "[[inputs]]\ninclude = [\"/tmp/*.log\"]\n[datadog]\ncompression = \"lz4\"\n",
            "datadog.compression",
        ),
        (
            "unknown key",
            "[[inputs]]\ninclude = [\"/tmp/*.log\"]\n[batch]\nmax_event = 5\n",
            "max_event",
        ),
        (
            "out of range",
            "[[inputs]]\ninclude = [\"/tmp/*.log\"]\n[batch]\nmax_bytes = 6000000\n",
            "batch.max_bytes",
        ),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    for (what, text, key) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).expect("write");
        for cmd in [&["check", "--config"][..], &["--config"][..]] {
            let mut args = cmd.to_vec();
            args.push(path.to_str().expect("utf8"));
            let (code, _, err) = sidelog(&args);
            assert_ne!(code, 0, "{what}: {args:?} succeeded");
            assert!(
                err.contains(key),
                "{what}: stderr does not name {key}: {err}"
            );
        }
    }
}

#[test]
fn missing_key_file_is_named() {
    let h = Harness::new();
    let config = h.config_with(|c| c.datadog.endpoint = Some(url("http://127.0.0.1:9")));
    std::fs::remove_file(h.dir.path().join("api-key")).expect("remove key");
    let (code, _, err) = sidelog(&["check", "--config", config.to_str().expect("utf8")]);
    assert_ne!(code, 0);
    assert!(err.contains("api-key"), "{err}");
    let (code, _, err) = sidelog(&["--config", config.to_str().expect("utf8")]);
    assert_ne!(code, 0);
    assert!(err.contains("api-key"), "{err}");
}

#[test]
fn no_config_is_a_clear_error() {
    let (code, _, err) = sidelog(&[]);
    assert_eq!(code, 2);
    assert!(err.contains("--config"), "{err}");
}
