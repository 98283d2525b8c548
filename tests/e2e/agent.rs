//! Taking the Datadog Agent's place: its `datadog.yaml`, `conf.d` and `DD_*` variables read as
//! the Agent reads them; settings honoured, ignored with a warning, or refused by name; and
//! the real binary run from an Agent sidecar's files alone, its key followed through a Secret
//! rotation.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::*;
use sidelog_shipper::config::{
    Compression, Config, Encoding, Preset, ReadFrom, RequestConcurrency, RuleKind,
};

const T: Duration = Duration::from_secs(60);

/// An Agent configuration directory: `datadog.yaml` and `conf.d` files.
fn agent_dir(root: &Path, datadog_yaml: Option<&str>, conf_d: &[(&str, &str)]) -> PathBuf {
    let dir = root.join("datadog-agent");
    std::fs::create_dir_all(dir.join("conf.d")).expect("conf.d");
    if let Some(text) = datadog_yaml {
        std::fs::write(dir.join("datadog.yaml"), text).expect("datadog.yaml");
    }
    for (name, text) in conf_d {
        let path = dir.join("conf.d").join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("conf.yaml");
    }
    dir
}

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const APP_CONF: &str = r#"
logs:
  - type: file
    path: /var/log/app/*.log
    exclude_paths: ["/var/log/app/debug.log"]
    service: user-msvc
    source: go
    sourcecategory: http
    tags: ["team:users", "tier:web"]
    start_position: beginning
    log_processing_rules:
      - type: exclude_at_match
        name: health
        pattern: GET /healthz
      - type: mask_sequences
        name: session
        replace_placeholder: "${1}[masked]"
        pattern: (session=)\w+
  - type: file
    path: /var/log/app/legacy/*.txt
    encoding: utf-16-le
    log_processing_rules:
      - type: multi_line
        name: dated
        pattern: \d{4}-\d{2}-\d{2}
  - type: docker
    image: nginx
  - type: journald
"#;

#[test]
fn the_agents_files_and_variables_become_sidelogs_settings() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let datadog_yaml = r#"
api_key: ENC[file@/etc/datadog-agent/secret/api_key]
secret_backend_command: /readsecret_multiple_providers.sh
logs_enabled: yes
site: datadoghq.eu
tags: ["cluster:east"]
apm_config:
  enabled: false
process_config:
  enabled: "false"
logs_config:
  container_collect_all: true
  use_compression: true
  compression_kind: gzip
  compression_level: 4
  batch_wait: 2
  open_files_limit: 200
  max_message_size_bytes: 100000
  processing_rules:
    - type: exclude_at_match
      name: debug
      pattern: level=debug
"#;
    let dir = agent_dir(
        tmp.path(),
        Some(datadog_yaml),
        &[("app.d/conf.yaml", APP_CONF)],
    );
    let vars = env(&[
        ("DD_HOSTNAME", "user-msvc-0"),
        ("DD_TAGS", "region:eu team:platform"),
        ("DD_EXTRA_TAGS", "extra:1"),
        ("DD_ENV", "prod"),
        ("DD_SERVICE", "fallback-svc"),
        ("DD_VERSION", "1.4.2"),
        ("DD_LOGS_CONFIG_LOGS_DD_URL", "intake.internal:8443"),
        ("DD_LOGS_CONFIG_FORCE_USE_HTTP", "true"),
        ("DD_LOGS_CONFIG_AUTO_MULTI_LINE_DETECTION", "false"),
        (
            "DD_LOGS_CONFIG_PROCESSING_RULES",
            r#"[{"type":"mask_sequences","name":"cards","pattern":"\\d{16}","replace_placeholder":"[card]"}]"#,
        ),
        (
            "DD_LOGS_CONFIG_ADDITIONAL_ENDPOINTS",
            r#"[{"api_key":"second-key","Host":"http-intake.logs.datadoghq.com","Port":443,"is_reliable":false}]"#,
        ),
        ("DD_PROXY_HTTPS", "http://proxy.internal:3128"),
        ("DD_KUBERNETES_POD_LABELS_AS_TAGS", r#"{"app":"kube_app"}"#),
        ("DD_APM_ENABLED", "false"),
        ("DD_DOGSTATSD_NON_LOCAL_TRAFFIC", "true"),
        ("SIDELOG_METRICS_LISTEN", "0.0.0.0:9500"),
        ("PATH", "/usr/bin"),
    ]);
    let c = Config::load_agent_with_env(&dir, &vars).expect("derived");

    // datadog.yaml, with the variables over it.
    let d = &c.datadog;
    assert_eq!(d.site.to_string(), "datadoghq.eu");
    assert_eq!(
        d.api_key_file.as_deref(),
        Some(Path::new("/etc/datadog-agent/secret/api_key"))
    );
    assert_eq!(d.hostname.as_deref(), Some("user-msvc-0"));
    assert_eq!(
        d.tags,
        [
            "region:eu",
            "team:platform",
            "extra:1",
            "env:prod",
            "version:1.4.2"
        ],
        "DD_TAGS replaces tags"
    );
    assert_eq!(d.logs_url(), "https://intake.internal:8443/api/v2/logs");
    assert_eq!(d.compression, Compression::Gzip);
    assert_eq!(d.compression_level, Some(4));
    assert_eq!(
        d.proxy.as_ref().map(|u| u.as_str()),
        Some("http://proxy.internal:3128/")
    );
    assert_eq!(c.batch.timeout_ms, 2000);
    assert_eq!(c.tail.max_open_files, 200);
    assert_eq!(c.data_dir, Path::new("/opt/datadog-agent/run"));
    assert_eq!(
        c.metrics_listen,
        Some("0.0.0.0:9500".parse().expect("addr")),
        "SIDELOG_* still apply"
    );
    let extra = &d.additional_endpoints[0];
    assert!(!extra.reliable);
    assert!(
        extra.api_key.is_some() && extra.api_key_file.is_none(),
        "an inline key, never printed"
    );
    assert!(
        !format!("{c:?}").contains("second-key"),
        "the key is redacted"
    );
    assert_eq!(
        c.kubernetes
            .pod_labels_as_tags
            .get("app")
            .map(String::as_str),
        Some("kube_app")
    );
    assert_eq!(
        c.kubernetes.labels_file.as_deref(),
        Some(Path::new("/etc/podinfo/labels"))
    );
    // The variable replaces datadog.yaml's global rules, as in the Agent.
    assert_eq!(c.log_processing_rules.len(), 1);
    assert_eq!(c.log_processing_rules[0].name, "cards");

    // conf.d: the two file entries, with the Agent's defaults and meanings.
    assert_eq!(c.inputs.len(), 2);
    let app = &c.inputs[0];
    assert_eq!(app.include, ["/var/log/app/*.log"]);
    assert_eq!(app.exclude, ["/var/log/app/debug.log"]);
    assert_eq!(
        (app.service.as_str(), app.source.as_str()),
        ("user-msvc", "go")
    );
    assert_eq!(app.tags, ["team:users", "tier:web", "sourcecategory:http"]);
    assert_eq!(app.read_from, ReadFrom::Beginning);
    assert_eq!(app.max_line_bytes, 100_000);
    assert_eq!(
        app.log_processing_rules[1].replace_placeholder,
        "${1}[masked]"
    );
    let legacy = &c.inputs[1];
    assert_eq!(legacy.encoding, Encoding::Utf16Le);
    assert_eq!(legacy.read_from, ReadFrom::End, "the Agent's default");
    assert_eq!(
        legacy.service, "fallback-svc",
        "DD_SERVICE for entries without one"
    );
    assert_eq!(legacy.log_processing_rules[0].kind, RuleKind::MultiLine);
    assert_eq!(c.agent.as_ref().map(|a| a.inputs.len()), Some(2));

    // What does not apply is named, once.
    let notices = c.notices.join("\n");
    for named in [
        "datadog.yaml: apm_config",
        "datadog.yaml: process_config",
        "DD_APM_ENABLED",
        "DD_DOGSTATSD_NON_LOCAL_TRAFFIC",
        "datadog.yaml: logs_config.container_collect_all",
        "conf.d/app.d/conf.yaml, logs[2] (type: docker)",
        "conf.d/app.d/conf.yaml, logs[3] (type: journald)",
        "DD_KUBERNETES_POD_LABELS_AS_TAGS",
    ] {
        assert_eq!(
            notices.matches(named).count(),
            1,
            "{named} once in:\n{notices}"
        );
    }
    assert!(!notices.contains("PATH"), "{notices}");
}

#[test]
fn the_agents_defaults_where_nothing_is_said() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = agent_dir(
        tmp.path(),
        None,
        &[(
            "app.d/conf.yaml",
            "logs:\n  - type: file\n    path: /var/log/app/*.log\n    auto_multi_line_detection: true\n",
        )],
    );
    let c = Config::load_agent_with_env(&dir, &env(&[("DD_API_KEY", "plain-key-1234")]))
        .expect("derived");
    assert_eq!(
        c.datadog.compression,
        Compression::Auto,
        "zstd, as the Agent sends"
    );
    assert_eq!(
        c.datadog.logs_url(),
        "https://http-intake.logs.datadoghq.com/api/v2/logs"
    );
    assert!(c.datadog.api_key.is_some(), "the key from DD_API_KEY");
    assert_eq!(c.inputs[0].read_from, ReadFrom::End);
    assert_eq!(c.inputs[0].max_line_bytes, 256_000);
    let ml = c.inputs[0].multiline.as_ref().expect("auto multi-line");
    assert_eq!(ml.preset, Some(Preset::Auto));
    assert_eq!(c.datadog.request_concurrency, RequestConcurrency::Adaptive);
    let gzip_level = env(&[
        ("DD_API_KEY", "k"),
        ("DD_LOGS_CONFIG_COMPRESSION_LEVEL", "6"),
    ]);
    let c = Config::load_agent_with_env(&dir, &gzip_level).expect("derived");
    assert_eq!(
        c.datadog.compression_level, None,
        "gzip's level leaves zstd's alone"
    );
    assert!(
        c.notices
            .iter()
            .any(|n| n.contains("DD_LOGS_CONFIG_COMPRESSION_LEVEL: the level of gzip")),
        "{:?}",
        c.notices
    );

    // aggregation_timeout turns a multi_line rule into the same grouping with that timeout.
    let dir = agent_dir(
        tmp.path(),
        Some("logs_config:\n  aggregation_timeout: 3000\n"),
        &[(
            "app.d/conf.yaml",
            "logs:\n  - type: file\n    path: /l/*.log\n    log_processing_rules:\n      - {type: multi_line, name: m, pattern: 'a|b'}\n",
        )],
    );
    let c = Config::load_agent_with_env(&dir, &env(&[("DD_API_KEY", "k")])).expect("derived");
    let ml = c.inputs[0].multiline.as_ref().expect("grouping");
    assert_eq!(ml.start_pattern.as_deref(), Some("^a|b"));
    assert_eq!(ml.timeout_ms, 3000);
}

/// A refused configuration: what it is, its `datadog.yaml`, its `conf.d` file, its
/// variables, and what the error must name.
type Refusal<'a> = (
    &'a str,
    Option<&'a str>,
    &'a str,
    &'a [(&'a str, &'a str)],
    &'a str,
);

/// Each setting that would change what is shipped, and that sidelog cannot honour, is an
/// error naming it and where it was written.
#[test]
fn what_cannot_be_honoured_is_refused_by_name() {
    let cases: &[Refusal<'_>] = &[
        (
            "TCP to a TCP endpoint",
            None,
            APP_CONF,
            &[
                ("DD_LOGS_CONFIG_FORCE_USE_TCP", "true"),
                ("DD_LOGS_CONFIG_LOGS_DD_URL", "proxy:10514"),
            ],
            "DD_LOGS_CONFIG_FORCE_USE_TCP",
        ),
        (
            "truncated tags",
            Some("logs_config:\n  tag_truncated_logs: true\n"),
            APP_CONF,
            &[],
            "datadog.yaml: logs_config.tag_truncated_logs",
        ),
        (
            "force start",
            None,
            "logs:\n  - type: file\n    path: /l/*.log\n    start_position: forceBeginning\n",
            &[],
            "conf.d/app.d/conf.yaml, logs[0]: start_position \"forceBeginning\"",
        ),
        (
            "rule type",
            None,
            "logs:\n  - type: file\n    path: /l/*.log\n    log_processing_rules:\n      - {type: exclude_at_match_ottl, name: o, pattern: x}\n",
            &[],
            "log_processing_rules[0]: rule type \"exclude_at_match_ottl\"",
        ),
        (
            "encoding",
            None,
            "logs:\n  - type: file\n    path: /l/*.log\n    encoding: shift-jis\n",
            &[],
            "encoding \"shift-jis\"",
        ),
        (
            "Secret through the API",
            None,
            APP_CONF,
            &[("DD_API_KEY", "ENC[k8s_secret@default/dd/api-key]")],
            "k8s_secret@default/dd/api-key",
        ),
        (
            "logs off",
            Some("logs_enabled: false\n"),
            APP_CONF,
            &[],
            "datadog.yaml: logs_enabled: false",
        ),
        (
            "no files",
            None,
            "logs:\n  - type: docker\n",
            &[],
            "no `type: file` entry",
        ),
        (
            "relative path",
            None,
            "logs:\n  - type: file\n    path: logs/*.log\n",
            &[],
            "path \"logs/*.log\" must be absolute",
        ),
        (
            "not a bool",
            None,
            APP_CONF,
            &[("DD_LOGS_CONFIG_USE_COMPRESSION", "maybe")],
            "DD_LOGS_CONFIG_USE_COMPRESSION: \"maybe\" is not true or false",
        ),
        (
            "unknown site",
            None,
            APP_CONF,
            &[("DD_SITE", "datadoghq.co")],
            "DD_SITE",
        ),
        (
            "a bad pattern",
            None,
            "logs:\n  - type: file\n    path: /l/*.log\n    log_processing_rules:\n      - {type: exclude_at_match, name: broken, pattern: 'a(\\1)'}\n",
            &[],
            "conf.d/app.d/conf.yaml, logs[0] (inputs[0].log_processing_rules[0]): rule \"broken\"",
        ),
        (
            "no key",
            None,
            APP_CONF,
            &[("DD_API_KEY", "")],
            "no API key",
        ),
    ];
    for (what, datadog_yaml, conf, vars, needle) in cases {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = agent_dir(tmp.path(), *datadog_yaml, &[("app.d/conf.yaml", conf)]);
        let mut all = vec![("DD_API_KEY", "some-key")];
        all.retain(|(k, _)| !vars.iter().any(|(v, _)| v == k));
        all.extend_from_slice(vars);
        let err = Config::load_agent_with_env(&dir, &env(&all))
            .expect_err(what)
            .to_string();
        assert!(err.contains(needle), "{what}: {needle:?} not in: {err}");
    }
}

fn run_check(args: &[&str], vars: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("SIDELOG_CONFIG");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("DD_")) {
        cmd.env_remove(k);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run sidelog check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `sidelog check --agent-config DIR` prints the translation, which is a valid sidelog
/// configuration of its own.
#[test]
fn check_prints_the_translation_as_sidelogs_own_configuration() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = agent_dir(
        tmp.path(),
        Some("apm_config:\n  enabled: false\n"),
        &[("app.d/conf.yaml", APP_CONF)],
    );
    let key = tmp.path().join("key");
    std::fs::write(&key, "file-key-12345\n").expect("key");
    let key_var = format!("ENC[file@{}]", key.display());
    let dir_arg = dir.to_str().expect("UTF-8");
    let (code, out, err) = run_check(
        &["check", "--agent-config", dir_arg],
        &[("DD_API_KEY", &key_var)],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("# inputs[0]: conf.d/app.d/conf.yaml, logs[0]"),
        "{out}"
    );
    assert!(
        out.contains("(14 bytes, redacted)") && !out.contains("file-key-12345"),
        "{out}"
    );
    assert!(err.contains("datadog.yaml: apm_config"), "warned: {err}");
    assert!(
        out.contains("replace_placeholder = \"${1}[masked]\""),
        "{out}"
    );
    let native = tmp.path().join("sidelog.toml");
    std::fs::write(&native, &out).expect("save");
    let c = Config::load_with_env(&native, &[]).expect("the translation is sidelog's own config");
    assert_eq!(c.inputs.len(), 2);
    assert_eq!(
        c.inputs[0].log_processing_rules[1].replace_placeholder,
        "${1}[masked]"
    );

    let (code, _, err) = run_check(
        &["check", "--agent-config", dir_arg],
        &[
            ("DD_LOGS_CONFIG_TAG_TRUNCATED_LOGS", "true"),
            ("DD_API_KEY", "k"),
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("DD_LOGS_CONFIG_TAG_TRUNCATED_LOGS"), "{err}");
    let (code, _, err) = run_check(
        &["check", "--config", "x.toml", "--agent-config", dir_arg],
        &[],
    );
    assert_eq!(code, 2, "one or the other: {err}");
}

/// A `datadog.yaml` or a `conf.d` file whose aliases would expand without end is refused
/// by name, at once and in bounded memory, never read until memory runs out.
#[test]
fn an_alias_bomb_in_the_agents_files_is_refused_by_name() {
    let bomb = yaml_alias_bomb();
    for (datadog_yaml, conf) in [(bomb.as_str(), APP_CONF), ("logs_enabled: true\n", &bomb)] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = agent_dir(tmp.path(), Some(datadog_yaml), &[("app.d/conf.yaml", conf)]);
        let started = std::time::Instant::now();
        let (code, _, err) = run_check(
            &["check", "--agent-config", dir.to_str().expect("UTF-8")],
            &[("DD_API_KEY", "k")],
        );
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("alias bomb"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }
}

/// What an Agent sidecar's Pod gives it: the key read through the secret backend from
/// `key_file`, the intake as `logs_dd_url` (plain HTTP), and `more`.
fn agent_env(h: &Harness, key_file: &Path, more: &[(&str, &str)]) -> Vec<(String, String)> {
    let url = h
        .intake()
        .endpoint()
        .trim_start_matches("http://")
        .to_string();
    let mut vars = vec![
        (
            "DD_API_KEY".to_string(),
            format!("ENC[file@{}]", key_file.display()),
        ),
        (
            "DD_SECRET_BACKEND_COMMAND".into(),
            "/readsecret_multiple_providers.sh".into(),
        ),
        ("DD_LOGS_CONFIG_LOGS_DD_URL".into(), url),
        ("DD_LOGS_CONFIG_LOGS_NO_SSL".into(), "true".into()),
    ];
    vars.extend(more.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    vars
}

/// The real binary from an Agent sidecar's files alone: the key from a Secret volume through
/// `ENC[file@...]`, followed when the kubelet rotates it; every line arrives with the
/// service, source and tags the Agent's configuration asks for, masked as its rules say.
#[test]
fn runs_from_the_agents_files_and_follows_a_rotated_key() {
    let mut h = Harness::with_intake();
    let conf = format!(
        "logs:\n  - type: file\n    path: {}/*.log\n    service: user-msvc\n    source: go\n    tags: [\"team:users\"]\n    start_position: beginning\n    log_processing_rules:\n      - type: mask_sequences\n        name: session\n        replace_placeholder: \"${{1}}[masked]\"\n        pattern: (session=)\\w+\n",
        h.logs().display()
    );
    let datadog_yaml = format!(
        "logs_enabled: true\nlogs_config:\n  run_path: {}\n  batch_wait: 1\n",
        h.dir.path().join("run").display()
    );
    let dir = agent_dir(
        h.dir.path(),
        Some(&datadog_yaml),
        &[("user-msvc.d/conf.yaml", &conf)],
    );
    let mut secret = KubeletVolume::new(
        &h.dir.path().join("secret"),
        "api_key",
        &format!("{API_KEY}\n"),
    )
    .expect("kubelet volume");
    let dir_arg = dir.to_str().expect("UTF-8").to_string();
    let env = agent_env(
        &h,
        &secret.path(),
        &[
            ("DD_HOSTNAME", "user-msvc-0"),
            ("DD_ENV", "seed"),
            ("DD_TAGS", "cluster:east"),
            ("DD_APM_ENABLED", "false"),
        ],
    );
    let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let lines = |prefix: &str| -> Vec<String> {
        (0..50)
            .map(|i| format!("{prefix}-{i:04} user=u{i} session=s{i}x"))
            .collect()
    };
    append(&h.log("app.log"), lines("before"));
    h.start_args(&["--agent-config", &dir_arg], &vars);
    h.wait_events(50, T);

    // The kubelet swaps the Secret's ..data; the intake takes only the new key from now on.
    let new_key = "rotated-key-9876543210";
    secret
        .update(&format!("{new_key}\n"))
        .expect("kubelet update");
    std::fs::write(h.dir.path().join("api-key"), format!("{new_key}\n")).expect("intake key");
    append(&h.log("app.log"), lines("after"));
    h.wait_events(100, T);
    assert_eq!(h.terminate().code(), Some(0), "{}", h.stderr());

    let events = h.intake().events();
    let mut got: Vec<String> = events
        .iter()
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect();
    got.sort();
    let mut want: Vec<String> = ["after", "before"]
        .iter()
        .flat_map(|p| (0..50).map(move |i| format!("{p}-{i:04} user=u{i} session=[masked]")))
        .collect();
    want.sort();
    assert_eq!(got, want, "every line once, masked with its group kept");
    for e in &events {
        assert_eq!(e["service"], "user-msvc");
        assert_eq!(e["ddsource"], "go");
        assert_eq!(e["hostname"], "user-msvc-0");
        let tags = e["ddtags"].as_str().unwrap_or_default();
        for tag in ["team:users", "cluster:east", "env:seed", "filename:app.log"] {
            assert!(tags.split(',').any(|t| t == tag), "{tag} not in {tags}");
        }
    }
    let log = h.stderr();
    assert!(log.contains("API key changed"), "{log}");
    assert!(log.contains("DD_APM_ENABLED"), "named in a warning: {log}");
    assert!(
        h.dir.path().join("run/checkpoints.json").is_file(),
        "checkpoints in run_path"
    );
}

/// Under the Agent's configuration with its default `start_position: end`, an unreadable
/// checkpoint file loses nothing: files known before resume from the last durable checkpoints
/// (kept beside the current ones), and only a file never seen starts at its end. With neither
/// file usable, every file is read from its start (repeats, no loss).
#[test]
fn an_unreadable_checkpoint_file_loses_nothing_with_start_position_end() {
    let mut h = Harness::with_intake();
    let conf = format!(
        "logs:\n  - type: file\n    path: {}/*.log\n    service: user-msvc\n    source: go\n",
        h.logs().display()
    );
    let run = h.dir.path().join("run");
    let datadog_yaml = format!(
        "logs_enabled: true\nlogs_config:\n  run_path: {}\n  batch_wait: 1\n",
        run.display()
    );
    let dir = agent_dir(
        h.dir.path(),
        Some(&datadog_yaml),
        &[("user-msvc.d/conf.yaml", &conf)],
    );
    let dir_arg = dir.to_str().expect("UTF-8").to_string();
    let env = agent_env(&h, &h.dir.path().join("api-key"), &[]);
    let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let known = h.log("known.log");
    std::fs::write(&known, b"").expect("create");
    h.start_args(&["--agent-config", &dir_arg], &vars);
    h.wait_stderr("tailing file", T);
    append(&known, numbered("a", 0..50));
    h.wait_events(50, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    assert!(
        run.join("checkpoints.durable.json").is_file(),
        "written at shutdown"
    );

    // While sidelog is down: more lines in the known file, a file never seen, and the
    // checkpoint file left unreadable (a power cut between durable writes can leave it so).
    append(&known, numbered("b", 0..50));
    append(&h.log("new.log"), numbered("n", 0..5));
    std::fs::write(run.join("checkpoints.json"), b"").expect("empty checkpoints");
    h.start_args(&["--agent-config", &dir_arg], &vars);
    h.wait_events(100, T);
    append(&h.log("new.log"), numbered("m", 0..5));
    h.wait_events(105, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    assert!(
        h.stderr().contains("last durable checkpoints"),
        "{}",
        h.stderr()
    );
    let mut want = numbered("a", 0..50);
    want.extend(numbered("b", 0..50));
    want.extend(numbered("m", 0..5));
    let mut got = h.messages();
    got.sort();
    want.sort();
    assert_lines(&got, &want, "the backlog once, the new file from its end");

    // Neither file usable: every file from its start, whatever start_position says.
    append(&known, numbered("c", 0..10));
    std::fs::write(run.join("checkpoints.json"), b"{").expect("corrupt");
    std::fs::write(run.join("checkpoints.durable.json"), b"{").expect("corrupt");
    h.start_args(&["--agent-config", &dir_arg], &vars);
    h.wait_events(105 + 110 + 10, T);
    assert!(h.terminate().success(), "{}", h.stderr());
    let got = h.messages();
    for line in numbered("c", 0..10) {
        assert!(got.contains(&line), "{line} lost");
    }
}

const SEED_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/kubernetes/agent");

/// The Pod's manifests without their comments.
fn manifest_body(name: &str) -> String {
    let text = std::fs::read_to_string(Path::new(SEED_DIR).join(name)).expect("manifest");
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_seed_pod_moves_to_sidelog_by_its_image_alone() {
    let agent = manifest_body("datadog-agent-pod.yaml");
    let sidelog = manifest_body("sidelog-pod.yaml");
    let changed: Vec<(&str, &str)> = agent
        .lines()
        .zip(sidelog.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(agent.lines().count(), sidelog.lines().count());
    assert_eq!(
        changed,
        [(
            "      image: gcr.io/datadoghq/agent:7",
            "      image: sidelog:0.1.0"
        )]
    );
}

/// The seed Pod's `datadog-agent` container, run as the real binary from the files and
/// variables its manifest gives it (paths moved into a temporary directory, the intake
/// local): every line arrives as the Agent's configuration asks, debug lines dropped, user
/// ids and client addresses masked with their groups kept.
#[test]
fn the_seed_pods_agent_configuration_ships_what_the_agent_would() {
    let docs = sidelog_shipper::yaml11::load(
        &std::fs::read_to_string(Path::new(SEED_DIR).join("sidelog-pod.yaml")).expect("pod"),
    )
    .expect("YAML");
    let mut h = Harness::with_intake();
    let log = h.log("user-msvc.log");
    let conf = docs[0]["data"]["conf.yaml"]
        .as_str()
        .expect("conf.yaml")
        .replace("/var/log/user-msvc.log", log.to_str().expect("UTF-8"));
    let dir = agent_dir(h.dir.path(), None, &[("user-msvc.d/conf.yaml", &conf)]);
    let secret = KubeletVolume::new(
        &h.dir.path().join("secret"),
        "api_key",
        &format!("{API_KEY}\n"),
    )
    .expect("kubelet volume");
    let container = &docs[2]["spec"]["containers"][1];
    assert_eq!(container["name"].as_str(), Some("datadog-agent"));
    let mut vars: Vec<(String, String)> = container["env"]
        .as_vec()
        .expect("env")
        .iter()
        .map(|e| {
            let name = e["name"].as_str().expect("name").to_string();
            let value = match e["value"].as_str() {
                Some(v) => v.replace(
                    "/etc/datadog-agent/secret/api_key",
                    secret.path().to_str().expect("UTF-8"),
                ),
                None => "user-msvc".to_string(), // the Downward API's metadata.name
            };
            (name, value)
        })
        .collect();
    let url = h
        .intake()
        .endpoint()
        .trim_start_matches("http://")
        .to_string();
    vars.push(("DD_LOGS_CONFIG_LOGS_DD_URL".into(), url));
    vars.push(("DD_LOGS_CONFIG_LOGS_NO_SSL".into(), "true".into()));
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();

    let mut rng = fastrand::Rng::with_seed(7);
    let mut written = Vec::new();
    for seq in 0..400 {
        let mut line = Vec::new();
        sidelog_sample::line(&mut line, &mut rng, 0, seq, 200, 0);
        written.push(
            String::from_utf8(line)
                .expect("UTF-8")
                .trim_end_matches('\n')
                .to_string(),
        );
    }
    append(&log, written.clone());
    h.start_args(&["--agent-config", dir.to_str().expect("UTF-8")], &vars);
    let expected = expected_messages(&written);
    h.wait_events(expected.len() as u64, T);
    assert_eq!(h.terminate().code(), Some(0), "{}", h.stderr());

    let events = h.intake().events();
    let got: Vec<String> = events
        .iter()
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_lines(&got, &expected, "what the Agent's configuration asks for");
    assert!(
        expected.len() < written.len(),
        "some debug lines were dropped"
    );
    for e in &events {
        assert_eq!(
            (e["service"].as_str(), e["ddsource"].as_str()),
            (Some("user-msvc"), Some("go"))
        );
        assert_eq!(e["hostname"].as_str(), Some("user-msvc"));
        let tags: Vec<&str> = e["ddtags"]
            .as_str()
            .unwrap_or_default()
            .split(',')
            .collect();
        for tag in [
            "cluster:seed",
            "region:eu-west-1",
            "env:seed",
            "version:1.0",
            "team:users",
            "sourcecategory:http",
            "filename:user-msvc.log",
        ] {
            assert!(tags.contains(&tag), "{tag} not in {tags:?}");
        }
    }
    let log_text = h.stderr();
    for named in [
        "DD_APM_ENABLED",
        "DD_PROCESS_AGENT_ENABLED",
        "DD_DOGSTATSD_NON_LOCAL_TRAFFIC",
        "DD_KUBERNETES_KUBELET_HOST",
    ] {
        assert_eq!(
            log_text.matches(named).count(),
            1,
            "{named} named once: {log_text}"
        );
    }
}

/// What the seed Pod's Agent configuration makes of each line: the global rule (client
/// addresses) first, then the source's (debug lines dropped, user ids masked), trimmed.
fn expected_messages(written: &[String]) -> Vec<String> {
    let ip = regex::Regex::new(r"(10\.)\d+\.\d+\.\d+").expect("regex");
    let user = regex::Regex::new(r#"("user_id":)\d+"#).expect("regex");
    written
        .iter()
        .map(|l| ip.replace_all(l, "${1}x.x.x").into_owned())
        .filter(|l| !l.contains(r#""level":"debug""#))
        .map(|l| user.replace_all(&l, r#"${1}"[masked]""#).trim().to_string())
        .collect()
}
