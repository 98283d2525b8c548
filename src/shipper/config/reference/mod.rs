//! One definition of each setting's meaning and allowed range. Validation takes its ranges
//! from here, and the reference in `docs/configuration.md` is generated from it
//! (`sidelog check --reference`), its defaults read from the types' own `Default` (so they
//! cannot drift either); a test fails when the committed page is stale.

mod page;

use super::{INTAKE_MAX_BODY_BYTES, INTAKE_MAX_EVENTS};
pub use page::markdown;

/// One configuration key.
pub struct Setting {
    /// Its path: `tail.max_open_files`; `inputs[].include` for a key of each input.
    pub key: &'static str,
    /// What the reference shows as its default when it is not a value (`required`, `unset`);
    /// otherwise the default comes from the types' `Default`.
    pub default: Option<&'static str>,
    /// The allowed values of a numeric key, both ends included.
    pub range: Option<(u64, u64)>,
    /// The Datadog Agent's settings it is translated from when sidelog reads the Agent's
    /// configuration: `datadog.yaml` keys, and `logs[].…` for the keys of a `conf.d` entry.
    pub agent: &'static [&'static str],
    /// What it does, in Markdown.
    pub meaning: &'static str,
}

/// Every key, in the order the reference lists them.
pub const SETTINGS: &[Setting] = &[
    Setting {
        key: "data_dir",
        default: None,
        range: None,
        agent: &["logs_config.run_path"],
        meaning: "where checkpoints live (`checkpoints.json`)",
    },
    Setting {
        key: "log_level",
        default: None,
        range: None,
        agent: &["log_level"],
        meaning: "sidelog's own log level; `RUST_LOG` overrides",
    },
    Setting {
        key: "log_format",
        default: None,
        range: None,
        agent: &["log_format_json"],
        meaning: "`text` or `json`",
    },
    Setting {
        key: "shutdown_timeout_ms",
        default: None,
        range: Some((0, 600_000)),
        agent: &["logs_config.stop_grace_period"],
        meaning: "the longest a shutdown may take from the first SIGTERM; what is not accepted by then is logged and counted",
    },
    Setting {
        key: "shutdown_drain",
        default: None,
        range: None,
        agent: &[],
        meaning: "on SIGTERM, read every file to its end and ship it before exiting; `false`: stop reading at once (hosts)",
    },
    Setting {
        key: "shutdown_quiet_ms",
        default: None,
        range: Some((0, 600_000)),
        agent: &[],
        meaning: "while draining, files are followed until none has grown for this long",
    },
    Setting {
        key: "exit_when_file",
        default: None,
        range: None,
        agent: &[],
        meaning: "once this file exists: ship everything left, write checkpoints, exit 0 (Jobs without native sidecars)",
    },
    Setting {
        key: "metrics_listen",
        default: None,
        range: None,
        agent: &[],
        meaning: "address of `/metrics`, `/healthz`, `/readyz`, `/status` (e.g. `0.0.0.0:9500`); empty: off",
    },
    Setting {
        key: "liveness_timeout_secs",
        default: None,
        range: Some((1, 86_400)),
        agent: &[],
        meaning: "`/healthz` fails once the reader or the sender is this late: sidelog itself is stuck; an intake that is down, a rejected key or a full disk never fail it",
    },
    Setting {
        key: "checkpoint_interval_ms",
        default: None,
        range: Some((10, 60_000)),
        agent: &[],
        meaning: "accepted positions are written 50 ms after the last write once a batch's worth (1,000 events or 256 KB) was accepted since, else at most this often; a write is made durable against a power cut every 10 s (or this, if longer) and at shutdown",
    },
    Setting {
        key: "log_processing_rules[].type",
        default: Some("-"),
        range: None,
        agent: &["logs_config.processing_rules"],
        meaning: "global rules, applied to every input's events before the input's own (the Agent's `logs_config.processing_rules`): any type but `multi_line`",
    },
    Setting {
        key: "log_processing_rules[].name",
        default: Some("-"),
        range: None,
        agent: &["logs_config.processing_rules"],
        meaning: "names the rule in errors and metrics",
    },
    Setting {
        key: "log_processing_rules[].pattern",
        default: Some("-"),
        range: None,
        agent: &["logs_config.processing_rules"],
        meaning: "as `inputs[].log_processing_rules[].pattern`",
    },
    Setting {
        key: "log_processing_rules[].replace_placeholder",
        default: None,
        range: None,
        agent: &["logs_config.processing_rules"],
        meaning: "as `inputs[].log_processing_rules[].replace_placeholder`",
    },
    Setting {
        key: "inputs[].include",
        default: Some("required"),
        range: None,
        agent: &["logs[].path"],
        meaning: "absolute globs of files to tail",
    },
    Setting {
        key: "inputs[].exclude",
        default: None,
        range: None,
        agent: &["logs[].exclude_paths"],
        meaning: "globs never tailed",
    },
    Setting {
        key: "inputs[].read_from",
        default: None,
        range: None,
        agent: &["logs[].start_position"],
        meaning: "start of a file found at startup without checkpoint: `beginning` or `end`",
    },
    Setting {
        key: "inputs[].encoding",
        default: None,
        range: None,
        agent: &["logs[].encoding"],
        meaning: "the files' encoding: `utf-8`, `utf-16-le` or `utf-16-be` (turned into UTF-8, a byte order mark dropped)",
    },
    Setting {
        key: "inputs[].service",
        default: None,
        range: None,
        agent: &["logs[].service", "service"],
        meaning: "event `service`",
    },
    Setting {
        key: "inputs[].source",
        default: None,
        range: None,
        agent: &["logs[].source"],
        meaning: "event `ddsource`",
    },
    Setting {
        key: "inputs[].status",
        default: None,
        range: None,
        agent: &[],
        meaning: "event `status`",
    },
    Setting {
        key: "inputs[].tags",
        default: None,
        range: None,
        agent: &["logs[].tags"],
        meaning: "added to `datadog.tags`",
    },
    Setting {
        key: "inputs[].max_line_bytes",
        default: None,
        range: Some((1024, 900_000)),
        agent: &["logs_config.max_message_size_bytes"],
        meaning: "longest message per event; longer lines are split",
    },
    Setting {
        key: "inputs[].skip_empty_lines",
        default: None,
        range: None,
        agent: &[],
        meaning: "empty lines (after trimming) are counted, not shipped",
    },
    Setting {
        key: "inputs[].trim_whitespace",
        default: None,
        range: None,
        agent: &[],
        meaning: "trim white space (Unicode's) around each message, as the Datadog Agent does; a multi-line event is trimmed as a whole",
    },
    Setting {
        key: "inputs[].delete_after_ship",
        default: None,
        range: None,
        agent: &[],
        meaning: "delete rotated files once every line was accepted (needs the volume read-write)",
    },
    Setting {
        key: "inputs[].parse_json",
        default: None,
        range: None,
        agent: &[],
        meaning: "a JSON object line's level becomes `status` and its time `timestamp`",
    },
    Setting {
        key: "inputs[].multiline.start_pattern",
        default: Some("unset"),
        range: None,
        agent: &[],
        meaning: "a line matching this begins an event; other lines are appended",
    },
    Setting {
        key: "inputs[].multiline.preset",
        default: Some("unset"),
        range: None,
        agent: &[
            "logs[].auto_multi_line_detection",
            "logs_config.auto_multi_line_detection",
        ],
        meaning: "instead of `start_pattern`: `java`, `python`, `go` or `auto`",
    },
    Setting {
        key: "inputs[].multiline.timeout_ms",
        default: None,
        range: Some((1, 600_000)),
        agent: &["logs_config.aggregation_timeout"],
        meaning: "a pending event is sent after this long without a new line",
    },
    Setting {
        key: "inputs[].multiline.max_bytes",
        default: None,
        range: Some((0, 900_000)),
        agent: &[],
        meaning: "largest multi-line event (0: `max_line_bytes`)",
    },
    Setting {
        key: "inputs[].log_processing_rules[].type",
        default: Some("-"),
        range: None,
        agent: &["logs[].log_processing_rules"],
        meaning: "`exclude_at_match`, `include_at_match`, `mask_sequences`, `exclude_truncated` or `multi_line`",
    },
    Setting {
        key: "inputs[].log_processing_rules[].name",
        default: Some("-"),
        range: None,
        agent: &["logs[].log_processing_rules"],
        meaning: "names the rule in errors and metrics",
    },
    Setting {
        key: "inputs[].log_processing_rules[].pattern",
        default: Some("-"),
        range: None,
        agent: &["logs[].log_processing_rules"],
        meaning: "a regex in RE2 syntax, as the Datadog Agent's (linear-time matching); none for `exclude_truncated`",
    },
    Setting {
        key: "inputs[].log_processing_rules[].replace_placeholder",
        default: None,
        range: None,
        agent: &["logs[].log_processing_rules"],
        meaning: "what replaces each match of `mask_sequences`; `$1`, `${1}`, `${name}` are the match's groups",
    },
    Setting {
        key: "inputs[].ignore_older_secs",
        default: None,
        range: None,
        agent: &[],
        meaning: "files last modified longer ago than this when found are not read (0: off); if written again, only new lines are",
    },
    Setting {
        key: "tail.rescan_interval_ms",
        default: None,
        range: Some((100, 3_600_000)),
        agent: &["logs_config.file_scan_period"],
        meaning: "safety-net rescan of globs and file sizes",
    },
    Setting {
        key: "tail.file_events",
        default: None,
        range: None,
        agent: &[],
        meaning: "learn of writes from inotify; `false` polls the open files every second (network filesystems)",
    },
    Setting {
        key: "tail.read_buffer_bytes",
        default: None,
        range: Some((4096, 16 << 20)),
        agent: &[],
        meaning: "size of one read",
    },
    Setting {
        key: "tail.max_open_files",
        default: None,
        range: Some((8, 1_000_000)),
        agent: &["logs_config.open_files_limit"],
        meaning: "files held open at once; above it, files read to their end are closed and reopened when they grow",
    },
    Setting {
        key: "tail.rotated_linger_ms",
        default: None,
        range: Some((0, 86_400_000)),
        agent: &["logs_config.close_timeout"],
        meaning: "a renamed or deleted file, once read to its end, stays open this long after it last grew",
    },
    Setting {
        key: "tail.rotate_wait_ms",
        default: None,
        range: Some((0, 604_800_000)),
        agent: &[],
        meaning: "longest a renamed or deleted file is held open; unread bytes are then given up and counted (0: no limit)",
    },
    Setting {
        key: "tail.multiline_pending_bytes",
        default: None,
        range: Some((1 << 20, 1 << 30)),
        agent: &[],
        meaning: "the most memory the multi-line events still being assembled may hold, all files together; above it the oldest are sent as they are, counted (`multiline_flushed_for_memory`)",
    },
    Setting {
        key: "datadog.site",
        default: None,
        range: None,
        agent: &["site"],
        meaning: "Datadog site (one of the list below; anything else is refused); the intake is `https://http-intake.logs.<site>/api/v2/logs`",
    },
    Setting {
        key: "datadog.endpoint",
        default: None,
        range: None,
        agent: &["logs_config.logs_dd_url"],
        meaning: "base URL that replaces `site`, e.g. `http://127.0.0.1:8080`",
    },
    Setting {
        key: "datadog.api_key_file",
        default: None,
        range: None,
        agent: &["api_key"],
        meaning: "file holding the API key; empty means use `$DD_API_KEY`; re-read every 2 s (and at once when the intake rejects the key), so a rotated Secret is followed",
    },
    Setting {
        key: "datadog.api_key_wait_secs",
        default: None,
        range: None,
        agent: &[],
        meaning: "at start, how long to wait for a missing or empty key file (0: fail at once)",
    },
    Setting {
        key: "datadog.allow_insecure_http",
        default: None,
        range: None,
        agent: &["logs_config.logs_no_ssl", "logs_config.dev_mode_no_ssl"],
        meaning: "allow an `http://` endpoint on another host (the key would travel unencrypted)",
    },
    Setting {
        key: "datadog.hostname",
        default: Some("host name"),
        range: None,
        agent: &["hostname", "hostname_file"],
        meaning: "event `hostname`",
    },
    Setting {
        key: "datadog.tags",
        default: None,
        range: None,
        agent: &["tags", "extra_tags", "env", "version"],
        meaning: "tags on every event",
    },
    Setting {
        key: "datadog.compression",
        default: None,
        range: None,
        agent: &[
            "logs_config.use_compression",
            "logs_config.compression_kind",
        ],
        meaning: "`auto` (zstd, as the Datadog Agent sends; gzip from the first time a receiver answers 415 to zstd), or exactly `zstd`, `gzip`, `deflate` or `none`",
    },
    Setting {
        key: "datadog.compression_threads",
        default: None,
        range: Some((0, 64)),
        agent: &[],
        meaning: "batches compressed at once; 0: the cores, at most 2, plus one for gzip and deflate",
    },
    Setting {
        key: "datadog.compression_level",
        default: None,
        range: None,
        agent: &["logs_config.compression_level"],
        meaning: "empty: the codec's default (zstd 1, gzip and deflate 6); gzip/deflate 0 to 9, zstd 1 to 3 (higher zstd levels cost 3 to 5 times the CPU for 8-12% fewer bytes, and are left out of the build)",
    },
    Setting {
        key: "datadog.request_timeout_ms",
        default: None,
        range: Some((100, 600_000)),
        agent: &[],
        meaning: "per request",
    },
    Setting {
        key: "datadog.request_concurrency",
        default: None,
        range: Some((1, 64)),
        agent: &["logs_config.batch_max_concurrent_send"],
        meaning: "requests in flight: `\"adaptive\"` or a number; 1 keeps each file's batches in order",
    },
    Setting {
        key: "datadog.request_concurrency_max",
        default: None,
        range: Some((1, 64)),
        agent: &[],
        meaning: "upper bound of the adaptive mode",
    },
    Setting {
        key: "datadog.retry_initial_ms",
        default: None,
        range: Some((1, 600_000)),
        agent: &["logs_config.sender_backoff_base"],
        meaning: "first wait before the intake is probed again after a failure",
    },
    Setting {
        key: "datadog.retry_max_ms",
        default: None,
        range: Some((1, 3_600_000)),
        agent: &["logs_config.sender_backoff_max"],
        meaning: "longest wait between probes of a failing intake, so sending resumes at most this long after it recovers (a longer `Retry-After` is honoured, up to 10 minutes)",
    },
    Setting {
        key: "datadog.proxy",
        default: None,
        range: None,
        agent: &["proxy.https"],
        meaning: "proxy for every request; empty: `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`/`NO_PROXY` apply. Credentials in this or any endpoint URL are shown as `***` in `check`, `/status`, logs and errors",
    },
    Setting {
        key: "datadog.ca_file",
        default: None,
        range: None,
        agent: &[],
        meaning: "PEM file of extra certificate authorities, added to the built-in Mozilla roots",
    },
    Setting {
        key: "datadog.additional_endpoints[].site",
        default: None,
        range: None,
        agent: &[],
        meaning: "dual shipping: every batch also goes to each additional endpoint; its Datadog site",
    },
    Setting {
        key: "datadog.additional_endpoints[].endpoint",
        default: None,
        range: None,
        agent: &["logs_config.additional_endpoints"],
        meaning: "base URL overriding its `site`",
    },
    Setting {
        key: "datadog.additional_endpoints[].api_key_file",
        default: Some("required"),
        range: None,
        agent: &["logs_config.additional_endpoints"],
        meaning: "its own API key file (followed through Secret rotations like the main one)",
    },
    Setting {
        key: "datadog.additional_endpoints[].compression",
        default: None,
        range: None,
        agent: &["logs_config.additional_endpoints"],
        meaning: "its codec, as `datadog.compression`; a batch is compressed once per distinct codec",
    },
    Setting {
        key: "datadog.additional_endpoints[].compression_level",
        default: None,
        range: None,
        agent: &[],
        meaning: "as `datadog.compression_level`",
    },
    Setting {
        key: "datadog.additional_endpoints[].reliable",
        default: None,
        range: None,
        agent: &[],
        meaning: "`true`: checkpoints advance only once it accepted the lines too, and the others wait while it is down; `false`: best effort, copies dropped and counted when it is behind or down",
    },
    Setting {
        key: "batch.max_events",
        default: None,
        range: Some((1, INTAKE_MAX_EVENTS as u64)),
        agent: &["logs_config.batch_max_size"],
        meaning: "events per request",
    },
    Setting {
        key: "batch.max_bytes",
        default: None,
        range: Some((64 * 1024, INTAKE_MAX_BODY_BYTES as u64)),
        agent: &["logs_config.batch_max_content_size"],
        meaning: "uncompressed JSON bytes per request",
    },
    Setting {
        key: "batch.timeout_ms",
        default: None,
        range: Some((1, 600_000)),
        agent: &["logs_config.batch_wait"],
        meaning: "a batch leaves at most this long after its first event",
    },
    Setting {
        key: "batch.linger_ms",
        default: None,
        range: Some((0, 600_000)),
        agent: &[],
        meaning: "once every file is read to its end, a batch leaves this long after its first event if no request is in flight",
    },
    Setting {
        key: "batch.quiet_min_events",
        default: None,
        range: Some((0, INTAKE_MAX_EVENTS as u64)),
        agent: &[],
        meaning: "in a quiet Pod, writes gather until a batch can hold about this many events at the rate lines come, longer than `linger_ms` and up to `timeout_ms` (a request costs about 0.5 ms of CPU whatever it carries); 0: a batch leaves after `linger_ms` however small",
    },
    Setting {
        key: "kubernetes.labels_file",
        default: None,
        range: None,
        agent: &["kubernetes_pod_labels_as_tags"],
        meaning: "Downward API file of the Pod's labels: `tags.datadoghq.com/env`, `service`, `version` become `env:`, the service (of inputs without one) and `version:`; re-read every 2 s",
    },
    Setting {
        key: "kubernetes.annotations_file",
        default: None,
        range: None,
        agent: &["kubernetes_pod_annotations_as_tags"],
        meaning: "Downward API file of the Pod's annotations: `ad.datadoghq.com/tags` (a JSON object) adds its tags; the Unified Service Tagging keys count when the labels lack them",
    },
    Setting {
        key: "kubernetes.pod_labels_as_tags",
        default: None,
        range: None,
        agent: &["kubernetes_pod_labels_as_tags"],
        meaning: "label name to tag name (`app = \"kube_app\"`); a `\"*\"` key maps every other label, `%%label%%` standing for its name",
    },
    Setting {
        key: "kubernetes.pod_annotations_as_tags",
        default: None,
        range: None,
        agent: &["kubernetes_pod_annotations_as_tags"],
        meaning: "the same for annotations",
    },
];

/// The allowed range of a numeric key. The keys asked for are the code's own (validation),
/// and a unit test checks each has a range here.
pub(super) fn range_of(key: &str) -> (u64, u64) {
    SETTINGS
        .iter()
        .find(|s| s.key == key)
        .and_then(|s| s.range)
        .unwrap_or((0, u64::MAX))
}

/// Every key with its default value (`inputs.include`: a list of tables' keys without `[]`).
pub fn defaults() -> std::collections::BTreeMap<String, toml::Value> {
    super::load::sample_values()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_defined_once_and_every_defined_key_exists() {
        let keys = super::super::all_keys();
        let mut seen = std::collections::BTreeSet::new();
        for s in SETTINGS {
            assert!(seen.insert(s.key.replace("[]", "")), "{} twice", s.key);
        }
        let missing: Vec<_> = keys.difference(&seen).collect();
        let unknown: Vec<_> = seen.difference(&keys).collect();
        assert!(missing.is_empty(), "keys without a definition: {missing:?}");
        assert!(unknown.is_empty(), "definitions of no key: {unknown:?}");
    }

    #[test]
    fn every_agent_counterpart_is_a_setting_the_translation_honours() {
        for s in SETTINGS {
            for key in s.agent {
                let known = match key.strip_prefix("logs[].") {
                    Some(entry) => super::super::agent::reads_entry_key(entry),
                    None => super::super::agent::honours(key),
                };
                assert!(
                    known,
                    "{}: `{key}` is not read from the Agent's files",
                    s.key
                );
            }
        }
    }

    #[test]
    fn ranges_are_ordered() {
        for s in SETTINGS {
            if let Some((lo, hi)) = s.range {
                assert!(lo <= hi, "{}", s.key);
            }
        }
    }
}
