//! Configuration: the TOML/YAML file, environment overrides, defaults and validation.
//!
//! This module owns the shape of the configuration and every rule about which values are
//! allowed. Everything downstream receives a [`Config`] that has passed [`Config::validate`], so
//! no other module re-checks ranges. Errors always name the key (`batch.max_events`,
//! `inputs[0].include`) so an operator can find the line to fix.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Environment variables with this prefix override configuration keys.
pub const ENV_PREFIX: &str = "SIDELOG_";
/// Separator between nesting levels in an environment override name.
pub const ENV_SEPARATOR: &str = "__";
/// Environment variables with the prefix that are not configuration keys.
const ENV_NOT_KEYS: &[&str] = &["SIDELOG_CONFIG", "SIDELOG_BENCH_SHIPPER"];
/// Keys whose environment override is a comma-separated list.
const LIST_KEYS: &[&str] = &["include", "exclude", "tags"];

/// The intake's hard limits (Datadog logs API v2).
pub const INTAKE_MAX_EVENTS: usize = 1000;
pub const INTAKE_MAX_BODY_BYTES: usize = 5_000_000;
pub const INTAKE_MAX_EVENT_BYTES: usize = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("config key `{key}`: {reason}")]
    Key { key: String, reason: String },
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory for checkpoints; created if missing.
    pub data_dir: PathBuf,
    /// Level of sidelog's own logs when `RUST_LOG` is not set.
    pub log_level: String,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// The longest a shutdown may take, from the first SIGTERM to the checkpoints written.
    /// Fits Kubernetes' default 30 s grace period with room for the app's own shutdown.
    pub shutdown_timeout_ms: u64,
    /// On SIGTERM, read every file to its end and ship all of it before exiting (a Pod's
    /// `emptyDir` goes with the Pod). False: stop reading at once and ship only what was read
    /// (a host, where the files outlive the process).
    pub shutdown_drain: bool,
    /// While draining, a file still growing is followed until every file was quiet this long.
    pub shutdown_quiet_ms: u64,
    /// Accepted positions are written after every accepted batch; at most this often they
    /// are also made durable against a power cut (directory fsync).
    pub checkpoint_interval_ms: u64,
    /// Address of the admin endpoint (`/metrics`, `/healthz`, `/readyz`, `/status`); empty: off.
    pub metrics_listen: String,
    /// Once this file exists, ship everything left, write checkpoints and exit 0 (for Jobs
    /// without native sidecars: the app creates it when done). Empty: off.
    pub exit_when_file: PathBuf,
    pub inputs: Vec<Input>,
    pub tail: TailConfig,
    pub datadog: DatadogConfig,
    pub batch: BatchConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("/var/lib/sidelog"),
            log_level: "info".into(),
            log_format: LogFormat::Text,
            shutdown_timeout_ms: 20_000,
            shutdown_drain: true,
            shutdown_quiet_ms: 2_000,
            checkpoint_interval_ms: 1_000,
            metrics_listen: String::new(),
            exit_when_file: PathBuf::new(),
            inputs: Vec::new(),
            tail: TailConfig::default(),
            datadog: DatadogConfig::default(),
            batch: BatchConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    Beginning,
    End,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Input {
    /// Globs of files to tail.
    pub include: Vec<String>,
    /// Globs of files never to tail, even when `include` matches.
    pub exclude: Vec<String>,
    /// Where to start in a file that has no checkpoint and exists at startup.
    pub read_from: ReadFrom,
    pub service: String,
    /// Sent as `ddsource`.
    pub source: String,
    /// Sent as `status` on every event of this input.
    pub status: String,
    /// Added to `datadog.tags` for the events of this input.
    pub tags: Vec<String>,
    /// Longest message per event; a longer line is split into several events.
    pub max_line_bytes: usize,
    /// Lines with no bytes (after removing the line ending) are counted and not shipped.
    pub skip_empty_lines: bool,
    /// Files last modified longer ago than this when first found are not read (0: off).
    pub ignore_older_secs: u64,
    /// Delete a rotated file (renamed away from its name) once every line of it was accepted,
    /// so the volume stays under its size limit. Needs the volume mounted read-write.
    pub delete_after_ship: bool,
    /// Multi-line aggregation (a stack trace as one event); off when absent.
    pub multiline: Option<MultilineConfig>,
    /// Datadog Agent processing rules, applied in order to each event.
    pub log_processing_rules: Vec<ProcessingRule>,
    /// A line that is a JSON object has its level lifted to `status` and its time to
    /// `timestamp`; the message is sent as it is.
    pub parse_json: bool,
}

/// `inputs[].multiline`: how lines group into events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MultilineConfig {
    /// A line matching this begins a new event; other lines are appended with `\n`.
    pub start_pattern: String,
    /// Instead of `start_pattern`: `java`, `python`, `go` (stack traces, tracebacks, panics)
    /// or `auto` (lines starting with a timestamp or a level begin events).
    pub preset: String,
    /// A pending event is sent after this long without a new line.
    pub timeout_ms: u64,
    /// Largest event; a longer one is sent and the next line starts a new one (0: the input's
    /// `max_line_bytes`).
    pub max_bytes: usize,
}

impl Default for MultilineConfig {
    fn default() -> Self {
        MultilineConfig {
            start_pattern: String::new(),
            preset: String::new(),
            timeout_ms: 1_000,
            max_bytes: 0,
        }
    }
}

/// One of `inputs[].log_processing_rules`, with the Datadog Agent's names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessingRule {
    #[serde(rename = "type")]
    pub kind: RuleKind,
    pub name: String,
    pub pattern: String,
    /// For `mask_sequences`: what replaces each match.
    #[serde(default)]
    pub replace_placeholder: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// Drop events that match.
    ExcludeAtMatch,
    /// Drop events that do not match.
    IncludeAtMatch,
    /// Replace every match with `replace_placeholder`.
    MaskSequences,
}

impl Default for Input {
    fn default() -> Self {
        Input {
            include: Vec::new(),
            exclude: Vec::new(),
            read_from: ReadFrom::Beginning,
            service: String::new(),
            source: String::new(),
            status: "info".into(),
            tags: Vec::new(),
            max_line_bytes: 900_000,
            skip_empty_lines: true,
            ignore_older_secs: 0,
            delete_after_ship: false,
            multiline: None,
            log_processing_rules: Vec::new(),
            parse_json: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TailConfig {
    /// Safety-net rescan of the globs and of known files' sizes, in case a file event was lost.
    pub rescan_interval_ms: u64,
    /// Size of one read; also the most read from one file before turning to the next.
    pub read_buffer_bytes: usize,
    /// Files held open at once. Above it, files read to their end are closed (and reopened
    /// when they grow); files renamed away or deleted are never closed before they are read.
    pub max_open_files: usize,
    /// A file renamed away or deleted, once read to its end, is kept open this long after it
    /// last grew, for lines its writer still adds through an open descriptor.
    pub rotated_linger_ms: u64,
    /// The longest a file renamed away or deleted is held open; bytes still unread then are
    /// given up, logged and counted. 0: no limit (nothing is ever given up).
    pub rotate_wait_ms: u64,
}

impl Default for TailConfig {
    fn default() -> Self {
        TailConfig {
            rescan_interval_ms: 10_000,
            read_buffer_bytes: 256 * 1024,
            max_open_files: 1024,
            rotated_linger_ms: 5_000,
            rotate_wait_ms: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Gzip,
    Deflate,
    Zstd,
    None,
}

impl Compression {
    /// The `Content-Encoding` header value for this codec.
    pub fn content_encoding(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Deflate => "deflate",
            Compression::Zstd => "zstd",
            Compression::None => "identity",
        }
    }

    fn level_range(self) -> (i32, i32) {
        match self {
            Compression::Gzip | Compression::Deflate => (0, 9),
            Compression::Zstd => (1, 19),
            Compression::None => (i32::MIN, i32::MAX),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatadogConfig {
    pub site: String,
    /// Base URL overriding `site`, e.g. `http://127.0.0.1:8080`.
    pub endpoint: String,
    /// File holding the API key; when empty, the `DD_API_KEY` environment variable is used.
    pub api_key_file: PathBuf,
    /// Sent as `hostname`; empty means the host (pod) name.
    pub hostname: String,
    pub tags: Vec<String>,
    pub compression: Compression,
    pub compression_level: i32,
    /// Batches compressed at once; 0: one more than the cores sidelog may use, at most 3
    /// (a sidecar on a 64-core node must not hold 65 batches in memory).
    pub compression_threads: usize,
    pub request_timeout_ms: u64,
    /// Requests in flight at once: a number, or `"adaptive"` (from 1 up to
    /// `request_concurrency_max`, growing while answers are quick and halving on errors and
    /// slow answers). With 1, each file's lines arrive in order.
    pub request_concurrency: RequestConcurrency,
    /// Upper bound of the adaptive mode.
    pub request_concurrency_max: usize,
    /// While the intake fails, one request probes it after a wait that starts here and
    /// doubles per failed attempt up to `retry_max_ms` (uniform in the upper half of each
    /// step); the others wait for the probe's success.
    pub retry_initial_ms: u64,
    /// The longest wait between probes: also the longest time between the intake's recovery
    /// and sending again (a `Retry-After` is honoured beyond it).
    pub retry_max_ms: u64,
    /// Proxy for every request (`http://host:port`); empty: `HTTPS_PROXY`, `HTTP_PROXY`,
    /// `ALL_PROXY` and `NO_PROXY` from the environment apply.
    pub proxy: String,
    /// PEM file of extra certificate authorities to trust (for a TLS-inspecting proxy or a
    /// private intake), added to the built-in Mozilla roots.
    pub ca_file: PathBuf,
    /// Allow an `http://` endpoint on another host than this one: the API key then crosses
    /// the network unencrypted.
    pub allow_insecure_http: bool,
    /// At start, how long to wait for a missing or empty key file (a Secret mounted late)
    /// before giving up; 0: give up at once.
    pub api_key_wait_secs: u64,
}

impl Default for DatadogConfig {
    fn default() -> Self {
        DatadogConfig {
            site: "datadoghq.com".into(),
            endpoint: String::new(),
            api_key_file: PathBuf::new(),
            hostname: String::new(),
            tags: Vec::new(),
            compression: Compression::Gzip,
            compression_level: 6,
            compression_threads: 0,
            request_timeout_ms: 30_000,
            request_concurrency: RequestConcurrency::Adaptive,
            request_concurrency_max: 16,
            retry_initial_ms: 1_000,
            retry_max_ms: 2_500,
            proxy: String::new(),
            ca_file: PathBuf::new(),
            allow_insecure_http: false,
            api_key_wait_secs: 0,
        }
    }
}

/// `datadog.request_concurrency`: a fixed number of requests in flight, or adaptive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestConcurrency {
    Fixed(usize),
    Adaptive,
}

impl RequestConcurrency {
    /// The most requests that can ever be in flight.
    pub fn max(self, adaptive_max: usize) -> usize {
        match self {
            RequestConcurrency::Fixed(n) => n,
            RequestConcurrency::Adaptive => adaptive_max,
        }
    }
}

impl Serialize for RequestConcurrency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RequestConcurrency::Fixed(n) => s.serialize_u64(*n as u64),
            RequestConcurrency::Adaptive => s.serialize_str("adaptive"),
        }
    }
}

impl<'de> Deserialize<'de> for RequestConcurrency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RequestConcurrency;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number of requests (1 to 64) or \"adaptive\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(RequestConcurrency::Fixed(v as usize))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                usize::try_from(v)
                    .map(RequestConcurrency::Fixed)
                    .map_err(|_| E::custom(format!("{v} is not a number of requests")))
            }
            // Environment overrides arrive as text.
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v.trim() {
                    "adaptive" => Ok(RequestConcurrency::Adaptive),
                    n => n.parse().map(RequestConcurrency::Fixed).map_err(|_| {
                        E::custom(format!(
                            "{v:?} is neither a number of requests nor \"adaptive\""
                        ))
                    }),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Datadog sites and the intake host of each.
pub const SITES: &[(&str, &str)] = &[
    ("datadoghq.com", "http-intake.logs.datadoghq.com"),
    ("us3.datadoghq.com", "http-intake.logs.us3.datadoghq.com"),
    ("us5.datadoghq.com", "http-intake.logs.us5.datadoghq.com"),
    ("datadoghq.eu", "http-intake.logs.datadoghq.eu"),
    ("ap1.datadoghq.com", "http-intake.logs.ap1.datadoghq.com"),
    ("ap2.datadoghq.com", "http-intake.logs.ap2.datadoghq.com"),
    ("ddog-gov.com", "http-intake.logs.ddog-gov.com"),
];

impl DatadogConfig {
    /// Batches compressed at once (see `compression_threads`).
    pub fn compressors(&self) -> usize {
        if self.compression_threads > 0 {
            return self.compression_threads;
        }
        usable_cores().min(2) + 1
    }

    /// The full URL batches are posted to.
    pub fn logs_url(&self) -> String {
        if !self.endpoint.is_empty() {
            return format!("{}/api/v2/logs", self.endpoint.trim_end_matches('/'));
        }
        // Validation refuses unknown sites: a typo must not send the key to a stranger.
        let host = SITES
            .iter()
            .find(|(site, _)| *site == self.site.trim())
            .map_or("http-intake.logs.datadoghq.com", |(_, host)| host);
        format!("https://{host}/api/v2/logs")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    pub max_events: usize,
    /// Uncompressed JSON bytes per request.
    pub max_bytes: usize,
    /// A batch is sent at the latest this long after its first event.
    pub timeout_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: 1000,
            max_bytes: 4_500_000,
            timeout_ms: 1_000,
        }
    }
}

impl Config {
    /// `exit_when_file`, when set.
    pub fn exit_file(&self) -> Option<PathBuf> {
        (!self.exit_when_file.as_os_str().is_empty()).then(|| self.exit_when_file.clone())
    }

    /// Loads a config file (format from its extension: `.toml`, `.yaml`, `.yml`), applies
    /// `SIDELOG_*` environment overrides, and validates the result.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_with_env(path, &env)
    }

    /// As [`Config::load`], with the environment given explicitly (for tests).
    pub fn load_with_env(path: &Path, env: &[(String, String)]) -> Result<Config, ConfigError> {
        if !path.is_file() {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                reason: "no such file".into(),
            });
        }
        let mut builder = config::Config::builder().add_source(config::File::from(path));
        for (name, value) in env {
            let Some((key, value)) = env_override(name, value)? else {
                continue;
            };
            builder = builder
                .set_override(key.clone(), value)
                .map_err(|e| ConfigError::Key {
                    key: key.clone(),
                    reason: format!("from environment variable {name}: {e}"),
                })?;
        }
        let raw = builder.build().map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let config: Config = serde_path_to_error::deserialize(raw).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Key {
                key: if key == "." {
                    "(top level)".into()
                } else {
                    key
                },
                reason: e.into_inner().to_string(),
            }
        })?;
        let config = config.interpolated(env)?;
        config.validate()?;
        Ok(config)
    }

    /// Replaces `${VAR}` and `${VAR:-default}` in every string value with the environment's
    /// (`$$` is a literal `$`), so Downward API variables can become tags and hostname.
    fn interpolated(self, env: &[(String, String)]) -> Result<Config, ConfigError> {
        let vars: std::collections::HashMap<&str, &str> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut value = toml::Value::try_from(&self).map_err(|e| ConfigError::Key {
            key: "(top level)".into(),
            reason: e.to_string(),
        })?;
        let mut errors = Vec::new();
        interpolate_value(&mut value, "", &vars, &mut errors);
        if !errors.is_empty() {
            return Err(ConfigError::Invalid(errors));
        }
        value
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Key {
                key: "(top level)".into(),
                reason: e.to_string(),
            })
    }

    /// Checks every range and cross-key rule; reports all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        let mut range = |key: &str, value: u64, lo: u64, hi: u64| {
            if value < lo || value > hi {
                errors.push(format!(
                    "{key} = {value} is out of range (allowed: {lo} to {hi})"
                ));
            }
        };
        range("shutdown_timeout_ms", self.shutdown_timeout_ms, 0, 600_000);
        range("shutdown_quiet_ms", self.shutdown_quiet_ms, 0, 600_000);
        range(
            "checkpoint_interval_ms",
            self.checkpoint_interval_ms,
            10,
            60_000,
        );
        range(
            "tail.rescan_interval_ms",
            self.tail.rescan_interval_ms,
            100,
            3_600_000,
        );
        range(
            "tail.read_buffer_bytes",
            self.tail.read_buffer_bytes as u64,
            4096,
            16 << 20,
        );
        range(
            "tail.max_open_files",
            self.tail.max_open_files as u64,
            8,
            1_000_000,
        );
        range(
            "tail.rotated_linger_ms",
            self.tail.rotated_linger_ms,
            0,
            86_400_000,
        );
        range(
            "tail.rotate_wait_ms",
            self.tail.rotate_wait_ms,
            0,
            604_800_000,
        );
        range(
            "batch.max_events",
            self.batch.max_events as u64,
            1,
            INTAKE_MAX_EVENTS as u64,
        );
        range(
            "batch.max_bytes",
            self.batch.max_bytes as u64,
            64 * 1024,
            INTAKE_MAX_BODY_BYTES as u64,
        );
        range("batch.timeout_ms", self.batch.timeout_ms, 1, 600_000);
        range(
            "datadog.request_timeout_ms",
            self.datadog.request_timeout_ms,
            100,
            600_000,
        );
        if let RequestConcurrency::Fixed(n) = self.datadog.request_concurrency {
            range("datadog.request_concurrency", n as u64, 1, 64);
        }
        range(
            "datadog.compression_threads",
            self.datadog.compression_threads as u64,
            0,
            64,
        );
        range(
            "datadog.request_concurrency_max",
            self.datadog.request_concurrency_max as u64,
            1,
            64,
        );
        range(
            "datadog.retry_initial_ms",
            self.datadog.retry_initial_ms,
            1,
            600_000,
        );
        range(
            "datadog.retry_max_ms",
            self.datadog.retry_max_ms,
            1,
            3_600_000,
        );
        for (i, input) in self.inputs.iter().enumerate() {
            range(
                &format!("inputs[{i}].max_line_bytes"),
                input.max_line_bytes as u64,
                1024,
                900_000,
            );
        }

        if self.datadog.retry_max_ms < self.datadog.retry_initial_ms {
            errors.push(format!(
                "datadog.retry_max_ms = {} must not be below datadog.retry_initial_ms = {}",
                self.datadog.retry_max_ms, self.datadog.retry_initial_ms
            ));
        }
        let (lo, hi) = self.datadog.compression.level_range();
        if self.datadog.compression != Compression::None
            && !(lo..=hi).contains(&self.datadog.compression_level)
        {
            errors.push(format!(
                "datadog.compression_level = {} is out of range for {} (allowed: {lo} to {hi})",
                self.datadog.compression_level,
                self.datadog.compression.content_encoding()
            ));
        }
        if !self.metrics_listen.is_empty()
            && self.metrics_listen.parse::<std::net::SocketAddr>().is_err()
        {
            errors.push(format!(
                "metrics_listen = {:?} is not an address (e.g. \"0.0.0.0:9500\"; empty turns it off)",
                self.metrics_listen
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            errors.push("data_dir: must not be empty".into());
        }
        if self.log_level.parse::<tracing::Level>().is_err() {
            errors.push(format!(
                "log_level = {:?} is not a level (allowed: error, warn, info, debug, trace)",
                self.log_level
            ));
        }
        let endpoint = &self.datadog.endpoint;
        let has_scheme = endpoint.starts_with("http://") || endpoint.starts_with("https://");
        if !endpoint.is_empty() && !has_scheme {
            errors.push(format!(
                "datadog.endpoint = {endpoint:?} must start with http:// or https://"
            ));
        }
        if endpoint.is_empty()
            && !SITES
                .iter()
                .any(|(site, _)| *site == self.datadog.site.trim())
        {
            let known: Vec<&str> = SITES.iter().map(|(site, _)| *site).collect();
            errors.push(format!(
                "datadog.site = {:?} is not a Datadog site (allowed: {}; set datadog.endpoint for any other intake)",
                self.datadog.site,
                known.join(", ")
            ));
        }
        if let Some(host) = endpoint.strip_prefix("http://")
            && !self.datadog.allow_insecure_http
            && !is_loopback_authority(host)
        {
            errors.push(format!(
                "datadog.endpoint = {endpoint:?}: the API key would cross the network unencrypted; use https:// or set datadog.allow_insecure_http = true"
            ));
        }
        check_tags("datadog.tags", &self.datadog.tags, &mut errors);
        let proxy = &self.datadog.proxy;
        if !proxy.is_empty() && reqwest::Proxy::all(proxy.as_str()).is_err() {
            errors.push(format!(
                "datadog.proxy = {proxy:?} is not a proxy URL (e.g. \"http://proxy.internal:3128\")"
            ));
        }
        let ca = &self.datadog.ca_file;
        if !ca.as_os_str().is_empty() && !ca.is_file() {
            errors.push(format!(
                "datadog.ca_file = {:?}: no such file",
                ca.display().to_string()
            ));
        }

        if self.inputs.is_empty() {
            errors.push("inputs: at least one [[inputs]] table with `include` is required".into());
        }
        for (i, input) in self.inputs.iter().enumerate() {
            if input.include.is_empty() {
                errors.push(format!(
                    "inputs[{i}].include: required, a list of at least one glob"
                ));
            }
            for (kind, globs) in [("include", &input.include), ("exclude", &input.exclude)] {
                for (j, glob) in globs.iter().enumerate() {
                    if let Err(e) = globset::Glob::new(glob) {
                        errors.push(format!("inputs[{i}].{kind}[{j}] = {glob:?}: {e}"));
                    } else if kind == "include" && !Path::new(glob).is_absolute() {
                        errors.push(format!(
                            "inputs[{i}].{kind}[{j}] = {glob:?}: must be an absolute path"
                        ));
                    }
                }
            }
            if input.status.is_empty() {
                errors.push(format!("inputs[{i}].status: must not be empty"));
            }
            if let Err(e) = crate::process::Processor::new(input, i, None) {
                errors.push(e.to_string());
            }
            check_tags(&format!("inputs[{i}].tags"), &input.tags, &mut errors);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }

    /// The effective configuration as TOML, for `sidelog check`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// The cores this process may use (a container's CPU limit counts).
pub fn usable_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Whether the authority (and whatever follows it) of an URL names this host.
fn is_loopback_authority(rest: &str) -> bool {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn check_tags(key: &str, tags: &[String], errors: &mut Vec<String>) {
    for (i, tag) in tags.iter().enumerate() {
        if tag.is_empty() || tag.contains(',') {
            errors.push(format!(
                "{key}[{i}] = {tag:?}: a tag must be non-empty and must not contain a comma"
            ));
        }
    }
}

fn interpolate_value(
    value: &mut toml::Value,
    key: &str,
    vars: &std::collections::HashMap<&str, &str>,
    errors: &mut Vec<String>,
) {
    match value {
        toml::Value::String(s) if s.contains('$') => match interpolate(s, vars) {
            Ok(done) => *s = done,
            Err(reason) => errors.push(format!("{key}: {reason}")),
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_value(item, &format!("{key}[{i}]"), vars, errors);
            }
        }
        toml::Value::Table(table) => {
            for (k, v) in table.iter_mut() {
                let path = if key.is_empty() {
                    k.clone()
                } else {
                    format!("{key}.{k}")
                };
                interpolate_value(v, &path, vars, errors);
            }
        }
        _ => {}
    }
}

/// `${VAR}`, `${VAR:-default}` (default when unset or empty) and `$$` in one string.
pub fn interpolate(
    text: &str,
    vars: &std::collections::HashMap<&str, &str>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some(inner) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(close) = inner.find('}') else {
            return Err(format!("unclosed ${{ in {text:?}"));
        };
        let expr = &inner[..close];
        let (name, default) = match expr.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (expr, None),
        };
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("${{{expr}}} does not name an environment variable"));
        }
        // As in the shell: `${VAR}` takes an empty value as it is, `${VAR:-d}` replaces it.
        let value = vars
            .get(name)
            .filter(|v| default.is_none() || !v.is_empty());
        match (value, default) {
            (Some(v), _) => out.push_str(v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "environment variable {name} is not set (write ${{{name}:-default}} for a default)"
                ));
            }
        }
        rest = &inner[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Turns `SIDELOG_DATADOG__ENDPOINT=x` into `("datadog.endpoint", "x")` and
/// `SIDELOG_INPUTS__0__TAGS=a,b` into `("inputs[0].tags", ["a", "b"])`.
fn env_override(name: &str, value: &str) -> Result<Option<(String, config::Value)>, ConfigError> {
    let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
        return Ok(None);
    };
    if ENV_NOT_KEYS.contains(&name) {
        return Ok(None);
    }
    let mut key = String::new();
    let mut last = String::new();
    for segment in rest.split(ENV_SEPARATOR) {
        let segment = segment.to_ascii_lowercase();
        if segment.is_empty() {
            return Err(ConfigError::Key {
                key: name.into(),
                reason: "empty segment in environment override name".into(),
            });
        }
        if segment.bytes().all(|b| b.is_ascii_digit()) {
            if key.is_empty() {
                return Err(ConfigError::Key {
                    key: name.into(),
                    reason: "environment override cannot start with an index".into(),
                });
            }
            key.push('[');
            key.push_str(&segment);
            key.push(']');
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(&segment);
            last = segment;
        }
    }
    let value = if LIST_KEYS.contains(&last.as_str()) {
        let items: Vec<config::Value> = value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| config::Value::from(s.to_string()))
            .collect();
        config::Value::from(items)
    } else {
        config::Value::from(value.to_string())
    };
    Ok(Some((key, value)))
}

/// Every key path that exists, for documentation checks.
pub fn all_keys() -> BTreeSet<String> {
    // Optional tables and lists of tables are filled in so their keys are listed too.
    let input = Input {
        multiline: Some(MultilineConfig::default()),
        log_processing_rules: vec![ProcessingRule {
            kind: RuleKind::MaskSequences,
            name: String::new(),
            pattern: String::new(),
            replace_placeholder: String::new(),
        }],
        ..Input::default()
    };
    let value = toml::Value::try_from(Config {
        inputs: vec![input],
        ..Config::default()
    })
    .unwrap_or(toml::Value::Table(Default::default()));
    keys_in(&value)
}

/// The key paths present in a parsed config file (array-of-tables entries merged).
pub fn keys_in(value: &toml::Value) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    collect_keys("", value, &mut keys);
    keys
}

fn collect_keys(prefix: &str, value: &toml::Value, keys: &mut BTreeSet<String>) {
    match value {
        toml::Value::Table(table) => {
            for (k, v) in table {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                collect_keys(&path, v, keys);
            }
        }
        toml::Value::Array(items) if items.iter().all(|v| v.is_table()) && !items.is_empty() => {
            for item in items {
                collect_keys(prefix, item, keys);
            }
        }
        _ => {
            keys.insert(prefix.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sidelog.toml");
        std::fs::write(&path, text).expect("write");
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load_with_env(&path, &env)
    }

    const MINIMAL: &str = "[[inputs]]\ninclude = [\"/var/log/app/*.log\"]\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let c = load(MINIMAL, &[]).expect("valid");
        assert_eq!(c.batch.max_events, 1000);
        assert_eq!(c.datadog.compression, Compression::Gzip);
        assert_eq!(c.inputs[0].read_from, ReadFrom::Beginning);
        assert_eq!(
            c.datadog.logs_url(),
            "https://http-intake.logs.datadoghq.com/api/v2/logs"
        );
    }

    #[test]
    fn environment_overrides_nested_and_indexed_keys() {
        let c = load(
            MINIMAL,
            &[
                ("SIDELOG_DATADOG__ENDPOINT", "http://127.0.0.1:9/"),
                ("SIDELOG_BATCH__MAX_EVENTS", "10"),
                ("SIDELOG_INPUTS__0__SERVICE", "svc"),
                ("SIDELOG_DATADOG__TAGS", "a:1, b:2"),
                ("SIDELOG_CONFIG", "/ignored"),
                ("OTHER", "x"),
            ],
        )
        .expect("valid");
        assert_eq!(c.datadog.logs_url(), "http://127.0.0.1:9/api/v2/logs");
        assert_eq!(c.batch.max_events, 10);
        assert_eq!(c.inputs[0].service, "svc");
        assert_eq!(c.datadog.tags, vec!["a:1", "b:2"]);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = load(&format!("{MINIMAL}[datadog]\ncompresion = \"gzip\"\n"), &[])
            .expect_err("unknown key");
        let text = err.to_string();
        assert!(text.contains("compresion"), "{text}");
        assert!(text.contains("datadog"), "{text}");
    }

    #[test]
    fn bad_enum_value_is_named() {
        let err = load(&format!("{MINIMAL}[datadog]\ncompression = \"lz4\"\n"), &[])
            .expect_err("bad value");
        let text = err.to_string();
        assert!(text.contains("datadog.compression"), "{text}");
        assert!(text.contains("lz4"), "{text}");
    }

    #[test]
    fn out_of_range_names_key_and_range() {
        let err =
            load(&format!("{MINIMAL}[batch]\nmax_events = 5000\n"), &[]).expect_err("out of range");
        let text = err.to_string();
        assert!(text.contains("batch.max_events = 5000"), "{text}");
        assert!(text.contains("1 to 1000"), "{text}");
    }

    #[test]
    fn missing_include_is_named() {
        let err = load("[[inputs]]\nservice = \"x\"\n", &[]).expect_err("no include");
        assert!(err.to_string().contains("inputs[0].include"), "{err}");
        let err = load("data_dir = \"/tmp\"\n", &[]).expect_err("no inputs");
        assert!(err.to_string().contains("inputs"), "{err}");
    }

    #[test]
    fn wrong_type_from_environment_is_named() {
        let err = load(MINIMAL, &[("SIDELOG_BATCH__MAX_EVENTS", "many")]).expect_err("type");
        assert!(err.to_string().contains("batch.max_events"), "{err}");
    }

    #[test]
    fn yaml_is_accepted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sidelog.yaml");
        std::fs::write(
            &path,
            "inputs:\n  - include: [\"/var/log/*.log\"]\n    service: web\nbatch:\n  max_events: 5\n",
        )
        .expect("write");
        let c = Config::load_with_env(&path, &[]).expect("valid yaml");
        assert_eq!(c.inputs[0].service, "web");
        assert_eq!(c.batch.max_events, 5);
    }

    #[test]
    fn environment_variables_are_interpolated_in_strings() {
        let text = format!(
            "{MINIMAL}service = \"${{APP:-web}}\"\ntags = [\"pod:${{POD_NAME}}\", \"ns:${{NS:-default}}\", \"cost:$$5\"]\n[datadog]\nhostname = \"${{NODE}}-x\"\n"
        );
        let c = load(
            &text,
            &[
                ("POD_NAME", "user-msvc-7d9f"),
                ("NODE", "node-3"),
                ("NS", ""),
            ],
        )
        .expect("valid");
        assert_eq!(c.inputs[0].service, "web");
        assert_eq!(
            c.inputs[0].tags,
            vec!["pod:user-msvc-7d9f", "ns:default", "cost:$5"]
        );
        assert_eq!(c.datadog.hostname, "node-3-x");
        let err = load(&text, &[("NODE", "n")]).expect_err("POD_NAME unset");
        let text = err.to_string();
        assert!(text.contains("inputs[0].tags[0]"), "{text}");
        assert!(text.contains("POD_NAME"), "{text}");
    }

    #[test]
    fn interpolation_syntax() {
        let vars: std::collections::HashMap<&str, &str> = [("A", "1")].into_iter().collect();
        assert_eq!(interpolate("x${A}y$z$", &vars).as_deref(), Ok("x1y$z$"));
        assert_eq!(interpolate("${B:-d:e}", &vars).as_deref(), Ok("d:e"));
        assert!(interpolate("${A", &vars).is_err());
        assert!(interpolate("${1A}", &vars).is_err());
    }

    #[test]
    fn plain_http_to_another_host_is_refused() {
        for (endpoint, ok) in [
            ("http://127.0.0.1:8080", true),
            ("http://localhost:8080/", true),
            ("http://[::1]:80", true),
            ("https://intake.example", true),
            ("http://intake.example", false),
            ("http://10.0.0.7:8080", false),
            ("http://127.0.0.1.example.com", false),
        ] {
            let text = format!("{MINIMAL}[datadog]\nendpoint = \"{endpoint}\"\n");
            let result = load(&text, &[]);
            assert_eq!(result.is_ok(), ok, "{endpoint}: {result:?}");
            if !ok {
                let text = format!("{}", result.expect_err("refused"));
                assert!(text.contains("allow_insecure_http"), "{text}");
                let allowed = format!(
                    "{MINIMAL}[datadog]\nendpoint = \"{endpoint}\"\nallow_insecure_http = true\n"
                );
                assert!(load(&allowed, &[]).is_ok(), "{endpoint} allowed");
            }
        }
    }

    #[test]
    fn unknown_site_is_refused() {
        let err = load(
            &format!("{MINIMAL}[datadog]\nsite = \"datadoghq.co\"\n"),
            &[],
        )
        .expect_err("typo");
        assert!(err.to_string().contains("datadog.site"), "{err}");
        assert!(err.to_string().contains("datadoghq.eu"), "{err}");
    }

    #[test]
    fn every_site_maps_to_its_intake() {
        for (site, host) in SITES {
            let d = DatadogConfig {
                site: site.to_string(),
                ..DatadogConfig::default()
            };
            assert_eq!(d.logs_url(), format!("https://{host}/api/v2/logs"));
        }
    }
}
