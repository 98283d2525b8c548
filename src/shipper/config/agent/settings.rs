//! What sidelog does with each of the Datadog Agent's settings: the ones it honours, the ones
//! that do not apply to a log sidecar (a warning naming them), and the ones that would change
//! what is shipped in a way sidelog cannot (an error naming them). Every setting has its
//! `datadog.yaml` key and the environment variables the Agent reads it from.

/// What becomes of a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Use {
    /// Turned into sidelog's own settings.
    Honoured,
    /// Does not apply to a log sidecar or is the Agent's own tuning: a warning, ignored.
    Ignored(&'static str),
}

/// A known setting: its key in `datadog.yaml`, its variables (none: `DD_` and the key in
/// capitals, dots as `_`), and its use.
pub(super) struct Known {
    pub key: &'static str,
    pub env: &'static [&'static str],
    pub use_: Use,
}

const fn honoured(key: &'static str, env: &'static [&'static str]) -> Known {
    Known {
        key,
        env,
        use_: Use::Honoured,
    }
}

const fn ignored(key: &'static str, why: &'static str) -> Known {
    Known {
        key,
        env: &[],
        use_: Use::Ignored(why),
    }
}

const NOT_FILES: &str =
    "container and integration log collection do not apply to a sidecar that tails files";
const TUNING: &str = "the Agent's own tuning; sidelog sizes its pipeline itself";
const TAGGER: &str = "container tags come from the Agent's tagger; sidelog tags from the Pod's labels (see docs/kubernetes.md)";

/// Every setting sidelog reads or knows to ignore.
pub(super) const KNOWN: &[Known] = &[
    honoured("api_key", &[]),
    honoured("site", &[]),
    honoured("hostname", &[]),
    honoured("hostname_file", &[]),
    honoured("tags", &[]),
    honoured("extra_tags", &[]),
    honoured("env", &[]),
    // Unified Service Tagging: not datadog.yaml keys, the variables of the Agent's container.
    honoured("service", &["DD_SERVICE"]),
    honoured("version", &["DD_VERSION"]),
    honoured("logs_enabled", &[]),
    honoured("log_level", &[]),
    honoured("log_format_json", &[]),
    honoured("skip_ssl_validation", &[]),
    honoured("proxy.https", &[]),
    honoured("proxy.http", &[]),
    honoured("proxy.no_proxy", &[]),
    honoured("secret_backend_command", &[]),
    honoured("secret_backend_arguments", &[]),
    honoured("confd_path", &[]),
    honoured("kubernetes_pod_labels_as_tags", &[]),
    honoured("kubernetes_pod_annotations_as_tags", &[]),
    honoured(
        "logs_config.logs_dd_url",
        &["DD_LOGS_CONFIG_LOGS_DD_URL", "DD_LOGS_CONFIG_DD_URL"],
    ),
    honoured("logs_config.logs_no_ssl", &[]),
    honoured("logs_config.dev_mode_no_ssl", &[]),
    honoured("logs_config.processing_rules", &[]),
    honoured("logs_config.force_use_http", &[]),
    honoured("logs_config.use_http", &[]),
    honoured("logs_config.force_use_tcp", &[]),
    honoured("logs_config.use_tcp", &[]),
    honoured("logs_config.use_port_443", &[]),
    honoured("logs_config.use_v2_api", &[]),
    honoured("logs_config.use_compression", &[]),
    honoured("logs_config.compression_kind", &[]),
    honoured("logs_config.compression_level", &[]),
    honoured("logs_config.zstd_compression_level", &[]),
    honoured("logs_config.additional_endpoints", &[]),
    honoured("logs_config.batch_wait", &[]),
    honoured("logs_config.batch_max_size", &[]),
    honoured("logs_config.batch_max_content_size", &[]),
    honoured("logs_config.batch_max_concurrent_send", &[]),
    honoured("logs_config.sender_backoff_base", &[]),
    honoured("logs_config.sender_backoff_max", &[]),
    honoured("logs_config.open_files_limit", &[]),
    honoured("logs_config.file_scan_period", &[]),
    honoured("logs_config.close_timeout", &[]),
    honoured("logs_config.max_message_size_bytes", &[]),
    honoured("logs_config.aggregation_timeout", &[]),
    honoured("logs_config.auto_multi_line_detection", &[]),
    honoured("logs_config.run_path", &[]),
    honoured("logs_config.stop_grace_period", &[]),
    honoured("logs_config.tag_truncated_logs", &[]),
    honoured("logs_config.tag_multi_line_logs", &[]),
    honoured("logs_config.socks5_proxy_address", &[]),
    ignored("logs_config.container_collect_all", NOT_FILES),
    ignored("logs_config.docker_container_use_file", NOT_FILES),
    ignored("logs_config.docker_container_force_use_file", NOT_FILES),
    ignored("logs_config.k8s_container_use_file", NOT_FILES),
    ignored("logs_config.k8s_container_use_kubelet_api", NOT_FILES),
    ignored("logs_config.validate_pod_container_id", NOT_FILES),
    ignored("logs_config.docker_client_read_timeout", NOT_FILES),
    ignored("logs_config.use_podman_logs", NOT_FILES),
    ignored("logs_config.integrations_logs_files_max_size", NOT_FILES),
    ignored("logs_config.integrations_logs_total_usage", NOT_FILES),
    ignored("logs_config.expected_tags_duration", TAGGER),
    ignored("logs_config.tagger_warmup_duration", TAGGER),
    ignored(
        "logs_config.file_wildcard_selection_mode",
        "sidelog tails every matching file, above max_open_files by taking turns with descriptors",
    ),
    ignored("logs_config.frame_size", TUNING),
    ignored("logs_config.input_chan_size", TUNING),
    ignored("logs_config.payload_chan_size", TUNING),
    ignored("logs_config.message_channel_size", TUNING),
    ignored("logs_config.pipelines", TUNING),
    ignored("logs_config.sender_backoff_factor", TUNING),
    ignored("logs_config.sender_recovery_interval", TUNING),
    ignored("logs_config.sender_recovery_reset", TUNING),
    ignored("logs_config.connection_reset_interval", TUNING),
    ignored("logs_config.atomic_registry_write", TUNING),
    ignored("logs_config.dev_mode_use_proto", TUNING),
    ignored(
        "logs_config.auto_multi_line_extra_patterns",
        "sidelog's automatic detection has patterns of its own (preset \"auto\")",
    ),
    ignored("logs_config.auto_multi_line_default_sample_size", TUNING),
    ignored("logs_config.auto_multi_line_default_match_timeout", TUNING),
    ignored(
        "logs_config.auto_multi_line_default_match_threshold",
        TUNING,
    ),
    ignored("hostname_fqdn", "the host name is hostname, or the Pod's"),
    ignored(
        "hostname_trust_uts_namespace",
        "the host name is hostname, or the Pod's",
    ),
    ignored("cluster_name", TAGGER),
];

/// Top-level keys and variable prefixes of the Agent's other products and of container
/// collection: named in one warning, ignored.
pub(super) const OTHER_PRODUCTS: &[&str] = &[
    "apm_config",
    "process_config",
    "system_probe_config",
    "network_config",
    "runtime_security_config",
    "compliance_config",
    "dogstatsd",
    "use_dogstatsd",
    "cluster_agent",
    "cluster_checks",
    "orchestrator_explorer",
    "admission_controller",
    "external_metrics_provider",
    "kubelet",
    "kubernetes_kubelet",
    "kubernetes_http_kubelet",
    "kubernetes_https_kubelet",
    "kubernetes_collect",
    "kubernetes_map_services",
    "container",
    "ac_",
    "listeners",
    "config_providers",
    "extra_config_providers",
    "extra_listeners",
    "cmd_port",
    "health_port",
    "expvar_port",
    "gui_port",
    "ipc_port",
    "metadata",
    "enable_metadata_collection",
    "inventories",
    "telemetry",
    "forwarder",
    "dd_url",
    "url",
    "app_key",
    "histogram",
    "checks",
    "check_runners",
    "python",
    "cloud_provider_metadata",
    "exclude_pause_container",
    "eks_fargate",
    "ecs",
    "docker",
    "cri",
    "containerd",
    "sbom",
    "otlp_config",
    "remote_configuration",
    "apm",
    "process_agent",
    "system_probe",
    "trace",
    "collect_",
    "enable_",
    "leader_election",
    "orchestrator",
    "sd_",
    "autoconf",
    "additional_checksd",
    "sslkeylogfile",
    "min_tls_version",
    "host_aliases",
    "tag_value_split_separator",
    "aggregator",
    "serializer",
    "jmx",
    "snmp",
    "network_devices",
    "security_agent",
    "internal_profiling",
    "flare",
    "hpa",
    "clc_",
    "cws",
    "csm",
];

/// The known setting a variable sets, if any.
pub(super) fn known_by_env(name: &str) -> Option<&'static Known> {
    KNOWN.iter().find(|k| {
        if k.env.is_empty() {
            env_name(k.key) == name
        } else {
            k.env.contains(&name)
        }
    })
}

/// The known setting of a `datadog.yaml` key, if any.
pub(super) fn known_by_key(key: &str) -> Option<&'static Known> {
    KNOWN.iter().find(|k| k.key == key)
}

/// Whether a key (or a variable's name without `DD_`, in lower case) belongs to another
/// product of the Agent or to container collection.
pub(super) fn other_product(key: &str) -> bool {
    OTHER_PRODUCTS.iter().any(|p| key.starts_with(p))
}

/// `logs_config.batch_wait` as the Agent's variable: `DD_LOGS_CONFIG_BATCH_WAIT`.
pub(super) fn env_name(key: &str) -> String {
    format!("DD_{}", key.replace('.', "_").to_ascii_uppercase())
}
