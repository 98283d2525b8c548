//! Configuration: the shape of the settings, their defaults, and the types the code uses.
//!
//! A value is parsed once, at load ([`load`]: the TOML/YAML file, environment overrides,
//! `${VAR}` interpolation), into the type the code uses: an address, a path, a URL, an enum,
//! or `None` where the file leaves it empty. This module owns every rule about which values
//! are allowed ([`validate`]): everything downstream receives a [`Config`] that has passed it,
//! so no other module re-checks ranges. Errors always name the key (`batch.max_events`,
//! `inputs[0].include`) so an operator can find the line to fix.

pub mod agent;
mod endpoints;
mod kubernetes;
mod load;
pub mod reference;
mod site;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;

use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::compress::{Codec, CodecKind};

pub use crate::process::{MultilineSettings, Preset, RuleKind, RuleSettings};
pub use endpoints::AdditionalEndpoint;
pub use kubernetes::KubernetesConfig;
pub use load::{all_keys, interpolate, keys_in, values_in};
pub use site::Site;

/// Environment variables with this prefix override configuration keys.
pub const ENV_PREFIX: &str = "SIDELOG_";
/// Separator between nesting levels in an environment override name.
pub const ENV_SEPARATOR: &str = "__";
/// Environment variables with the prefix that are not configuration keys.
const ENV_NOT_KEYS: &[&str] = &["SIDELOG_CONFIG", "SIDELOG_AGENT_CONFIG"];
/// Keys whose environment override is a comma-separated list.
const LIST_KEYS: &[&str] = &["include", "exclude", "tags"];

/// The intake's hard limits (Datadog logs API v2).
pub const INTAKE_MAX_EVENTS: usize = 1000;
pub const INTAKE_MAX_BODY_BYTES: usize = 5_000_000;
pub const INTAKE_MAX_EVENT_BYTES: usize = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: no such file")]
    NoFile { path: PathBuf },
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: config::ConfigError,
    },
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
    pub log_level: LogLevel,
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
    /// Accepted positions are written 50 ms after the last write once a batch's worth was
    /// accepted since, else at most this often; every 10 s (or this, if longer) a write is
    /// also made durable against a power cut (fsync).
    pub checkpoint_interval_ms: u64,
    /// Address of the admin endpoint (`/metrics`, `/healthz`, `/readyz`, `/status`); empty: off.
    #[serde(with = "crate::optional::parsed")]
    pub metrics_listen: Option<SocketAddr>,
    /// `/healthz` fails once the reader or the sender is this late (a turn that does not end,
    /// a sleep past its deadline, work waiting with nothing moving past a request's timeout
    /// and the outage gate's wait): sidelog itself is stuck, and a restart helps. An intake
    /// that is down, a rejected key or a full disk never fail it.
    pub liveness_timeout_secs: u64,
    /// Once this file exists, ship everything left, write checkpoints and exit 0 (for Jobs
    /// without native sidecars: the app creates it when done). Empty: off.
    #[serde(with = "crate::optional::path")]
    pub exit_when_file: Option<PathBuf>,
    pub inputs: Vec<Input>,
    pub tail: TailConfig,
    pub datadog: DatadogConfig,
    pub batch: BatchConfig,
    /// Tags from the Pod's labels and annotations (Downward API files).
    pub kubernetes: KubernetesConfig,
    /// Processing rules for every input, applied before each input's own (the Agent's
    /// `logs_config.processing_rules`).
    pub log_processing_rules: Vec<RuleSettings>,
    /// Warnings from loading, logged once when the configuration is put to use (variables
    /// that name no key, settings of the Datadog Agent that do not apply).
    #[serde(skip)]
    pub notices: Vec<String>,
    /// Set when the configuration was derived from the Datadog Agent's files.
    #[serde(skip)]
    pub agent: Option<agent::AgentOrigin>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("/var/lib/sidelog"),
            log_level: LogLevel::Info,
            log_format: LogFormat::Text,
            shutdown_timeout_ms: 20_000,
            shutdown_drain: true,
            shutdown_quiet_ms: 2_000,
            checkpoint_interval_ms: 5_000,
            metrics_listen: None,
            liveness_timeout_secs: 120,
            exit_when_file: None,
            inputs: Vec::new(),
            tail: TailConfig::default(),
            datadog: DatadogConfig::default(),
            batch: BatchConfig::default(),
            kubernetes: KubernetesConfig::default(),
            log_processing_rules: Vec::new(),
            notices: Vec::new(),
            agent: None,
        }
    }
}

/// Level of sidelog's own logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// `inputs[].encoding`: how the files' text is written (the Datadog Agent's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Encoding {
    #[serde(rename = "utf-8")]
    Utf8,
    #[serde(rename = "utf-16-le")]
    Utf16Le,
    #[serde(rename = "utf-16-be")]
    Utf16Be,
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
    /// The files' text encoding; UTF-16 is turned into UTF-8 (a byte order mark is dropped).
    pub encoding: Encoding,
    pub service: String,
    /// Sent as `ddsource`.
    pub source: String,
    /// Sent as `status` on every event of this input.
    pub status: String,
    /// Added to `datadog.tags` for the events of this input.
    pub tags: Vec<String>,
    /// Longest message per event; a longer line is split into several events.
    pub max_line_bytes: usize,
    /// Lines with no bytes (after removing the line ending and trimming) are counted and
    /// not shipped.
    pub skip_empty_lines: bool,
    /// Whitespace (Unicode's, as Go's `bytes.TrimSpace`) is trimmed from both ends of every
    /// message, as the Datadog Agent does; a multi-line event is trimmed as a whole.
    pub trim_whitespace: bool,
    /// Files last modified longer ago than this when first found are not read (0: off).
    pub ignore_older_secs: u64,
    /// Delete a rotated file (renamed away from its name) once every line of it was accepted,
    /// so the volume stays under its size limit. Needs the volume mounted read-write.
    pub delete_after_ship: bool,
    /// Multi-line aggregation (a stack trace as one event); off when absent.
    pub multiline: Option<MultilineSettings>,
    /// Datadog Agent processing rules, applied in order to each event.
    pub log_processing_rules: Vec<RuleSettings>,
    /// A line that is a JSON object has its level lifted to `status` and its time to
    /// `timestamp`; the message is sent as it is.
    pub parse_json: bool,
}

impl Input {
    /// What this input's processing is built from, with the global rules.
    pub fn processing<'a>(
        &'a self,
        global_rules: &'a [RuleSettings],
    ) -> crate::process::Settings<'a> {
        crate::process::Settings {
            global_rules,
            rules: &self.log_processing_rules,
            multiline: self.multiline.as_ref(),
            parse_json: self.parse_json,
            max_line_bytes: self.max_line_bytes,
        }
    }
}

impl Default for Input {
    fn default() -> Self {
        Input {
            include: Vec::new(),
            exclude: Vec::new(),
            read_from: ReadFrom::Beginning,
            encoding: Encoding::Utf8,
            service: String::new(),
            source: String::new(),
            status: "info".into(),
            tags: Vec::new(),
            max_line_bytes: 900_000,
            skip_empty_lines: true,
            trim_whitespace: true,
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
    /// Learn of writes from file events (inotify). Off, or when the node has no inotify
    /// instance left for sidelog, open files are polled every second instead, and new files
    /// are found by the rescans.
    pub file_events: bool,
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
    /// The most memory the multi-line events still being assembled may hold, all files
    /// together; above it the oldest are sent as they are (counted). Each event is also
    /// bounded by its input's `multiline.max_bytes`.
    pub multiline_pending_bytes: usize,
}

impl Default for TailConfig {
    fn default() -> Self {
        TailConfig {
            rescan_interval_ms: 10_000,
            file_events: true,
            read_buffer_bytes: 256 * 1024,
            max_open_files: 1024,
            rotated_linger_ms: 5_000,
            rotate_wait_ms: 0,
            multiline_pending_bytes: 8 << 20,
        }
    }
}

/// `datadog.compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// zstd, as the Datadog Agent sends; gzip from the first time a receiver refuses zstd.
    Auto,
    Zstd,
    Gzip,
    Deflate,
    None,
}

impl std::str::FromStr for Compression {
    type Err = String;

    /// The setting's name as the configuration writes it (`zstd`, `gzip`, ...).
    fn from_str(v: &str) -> Result<Compression, String> {
        serde_json::from_value(serde_json::Value::String(v.trim().to_ascii_lowercase()))
            .map_err(|_| format!("{v:?} is not one of auto, zstd, gzip, deflate, none"))
    }
}

impl Compression {
    /// The codec bodies are compressed with first.
    pub fn codec(self, level: Option<i32>) -> Codec {
        match self {
            Compression::Auto | Compression::Zstd => CodecKind::Zstd.at(level),
            Compression::Gzip => CodecKind::Gzip.at(level),
            Compression::Deflate => CodecKind::Deflate.at(level),
            Compression::None => CodecKind::Identity.at(level),
        }
    }

    /// What a receiver that refuses zstd gets instead: only with `auto`; an explicit setting
    /// is always obeyed.
    pub fn fallback(self) -> Option<Codec> {
        (self == Compression::Auto).then(|| CodecKind::Gzip.at(None))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatadogConfig {
    pub site: Site,
    /// Base URL overriding `site`, e.g. `http://127.0.0.1:8080`.
    #[serde(with = "crate::optional::parsed")]
    pub endpoint: Option<Url>,
    /// File holding the API key; when empty, the `DD_API_KEY` environment variable is used.
    #[serde(with = "crate::optional::path")]
    pub api_key_file: Option<PathBuf>,
    /// A key written out in the Datadog Agent's files (never in sidelog's, never printed).
    #[serde(skip)]
    pub api_key: Option<crate::secret::InlineKey>,
    /// Sent as `hostname`; empty means the host (pod) name.
    #[serde(with = "crate::optional::string")]
    pub hostname: Option<String>,
    pub tags: Vec<String>,
    pub compression: Compression,
    /// Empty: the codec's default (zstd 1, gzip and deflate 6).
    #[serde(with = "crate::optional::number")]
    pub compression_level: Option<i32>,
    /// Batches compressed at once; 0: the cores sidelog may use, at most 2, plus one for
    /// gzip and deflate (a sidecar on a 64-core node must not hold 65 batches in memory).
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
    #[serde(with = "crate::optional::parsed")]
    pub proxy: Option<Url>,
    /// PEM file of extra certificate authorities to trust (for a TLS-inspecting proxy or a
    /// private intake), added to the built-in Mozilla roots.
    #[serde(with = "crate::optional::path")]
    pub ca_file: Option<PathBuf>,
    /// Allow an `http://` endpoint on another host than this one: the API key then crosses
    /// the network unencrypted.
    pub allow_insecure_http: bool,
    /// At start, how long to wait for a missing or empty key file (a Secret mounted late)
    /// before giving up; 0: give up at once.
    pub api_key_wait_secs: u64,
    /// More intakes every batch also goes to, each with its own key and codec.
    pub additional_endpoints: Vec<AdditionalEndpoint>,
}

impl Default for DatadogConfig {
    fn default() -> Self {
        DatadogConfig {
            site: Site::Us1,
            endpoint: None,
            api_key_file: None,
            api_key: None,
            hostname: None,
            tags: Vec::new(),
            compression: Compression::Auto,
            compression_level: None,
            compression_threads: 0,
            request_timeout_ms: 30_000,
            request_concurrency: RequestConcurrency::Adaptive,
            request_concurrency_max: 8,
            retry_initial_ms: 1_000,
            retry_max_ms: 2_500,
            proxy: None,
            ca_file: None,
            allow_insecure_http: false,
            api_key_wait_secs: 0,
            additional_endpoints: Vec::new(),
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

impl std::str::FromStr for RequestConcurrency {
    type Err = String;

    /// `adaptive`, or a number of requests (the range is checked with the configuration).
    fn from_str(v: &str) -> Result<RequestConcurrency, String> {
        match v.trim() {
            "adaptive" => Ok(RequestConcurrency::Adaptive),
            n => n
                .parse()
                .map(RequestConcurrency::Fixed)
                .map_err(|_| format!("{v:?} is neither a number of requests nor \"adaptive\"")),
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
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl DatadogConfig {
    /// Batches compressed at once (see `compression_threads`): by default one per core, at
    /// most two, and one more for the slow deflate codecs (a gzip compressor is often
    /// waiting for a wake-up, which the spare covers: docs/performance.md, "Measurements behind the code").
    /// Each holds an uncompressed batch.
    pub fn compressors(&self) -> usize {
        if self.compression_threads > 0 {
            return self.compression_threads;
        }
        usable_cores().min(2) + usize::from(self.compresses_slowly())
    }

    /// Whether bodies go out with a deflate codec, which compresses slower than the reader
    /// encodes (zstd and none keep up with it).
    pub fn compresses_slowly(&self) -> bool {
        matches!(self.compression, Compression::Gzip | Compression::Deflate)
    }

    /// The full URL batches are posted to.
    pub fn logs_url(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => format!("{}/api/v2/logs", endpoint.as_str().trim_end_matches('/')),
            None => format!("https://{}/api/v2/logs", self.site.intake_host()),
        }
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
    /// Once every file is read to its end, a batch is sent this long after its first event
    /// if no request is in flight: lines reach the intake within about this, at no more
    /// than 1000 / linger_ms requests a second when lines trickle in.
    pub linger_ms: u64,
    /// In a quiet Pod, writes gather (and the batch waits) until a batch can hold about this
    /// many events at the rate lines come, longer than `linger_ms` and up to `timeout_ms`:
    /// a request costs about 0.5 ms of CPU whatever it carries. 0: batches leave after
    /// `linger_ms` however few events they hold.
    pub quiet_min_events: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: 1000,
            // 2 MB: 256-byte lines fill 1,000 events first (420 KB); 2 KB lines make batches of
            // about 900 events, with less peak memory than larger batches (docs/performance.md,
            // "Measurements behind the code").
            max_bytes: 2_000_000,
            timeout_ms: 1_000,
            linger_ms: 200,
            quiet_min_events: 12,
        }
    }
}

impl Config {
    /// The effective configuration as TOML, for `sidelog check`; credentials in URLs (the
    /// endpoints', the proxy's) are shown as `***`.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        let hide = |url: &mut Option<Url>| {
            if let Some(hidden) = url.as_ref().and_then(crate::redact::hidden) {
                *url = Some(hidden);
            }
        };
        hide(&mut shown.datadog.endpoint);
        hide(&mut shown.datadog.proxy);
        for extra in &mut shown.datadog.additional_endpoints {
            hide(&mut extra.endpoint);
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// The cores this process may use (a container's CPU limit counts).
pub fn usable_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
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
    fn zstd_levels_above_3_are_refused_by_name() {
        for (compression, level, ok) in [
            ("zstd", 3, true),
            ("auto", 1, true),
            ("zstd", 4, false),
            ("auto", 19, false),
        ] {
            let text = format!(
                "{MINIMAL}[datadog]\ncompression = \"{compression}\"\ncompression_level = {level}\n"
            );
            match load(&text, &[]) {
                Ok(c) => assert!(
                    ok,
                    "{compression} {level} accepted: {:?}",
                    c.datadog.compression
                ),
                Err(e) => {
                    assert!(!ok, "{compression} {level} refused: {e}");
                    let e = e.to_string();
                    assert!(e.contains(&format!("datadog.compression_level = {level} is out of range for zstd (allowed: 1 to 3)")), "{e}");
                }
            }
        }
    }

    #[test]
    fn additional_endpoints_take_the_main_settings_and_name_their_errors() {
        let text = format!(
            "{MINIMAL}[datadog]\nrequest_timeout_ms = 5000\n[[datadog.additional_endpoints]]\nsite = \"datadoghq.eu\"\napi_key_file = \"/k\"\nreliable = false\n"
        );
        let c = load(&text, &[]).expect("valid");
        let extra = &c.datadog.additional_endpoints[0];
        assert!(!extra.reliable);
        let settings = extra.as_datadog(&c.datadog);
        assert_eq!(
            settings.logs_url(),
            "https://http-intake.logs.datadoghq.eu/api/v2/logs"
        );
        assert_eq!(settings.request_timeout_ms, 5000);
        assert!(settings.additional_endpoints.is_empty());

        let text = format!(
            "{MINIMAL}[[datadog.additional_endpoints]]\nendpoint = \"http://intake.example.com\"\ncompression = \"gzip\"\ncompression_level = 12\n"
        );
        let err = load(&text, &[]).expect_err("invalid").to_string();
        for needle in [
            "datadog.additional_endpoints[0].api_key_file: required",
            "datadog.additional_endpoints[0].compression_level = 12 is out of range",
            "datadog.additional_endpoints[0].endpoint = \"http://intake.example.com/\": the API key would cross the network unencrypted",
        ] {
            assert!(err.contains(needle), "{needle} not in {err}");
        }
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = load(MINIMAL, &[]).expect("valid");
        assert_eq!(c.batch.max_events, 1000);
        assert_eq!(c.datadog.compression, Compression::Auto);
        assert_eq!(
            c.datadog.compression.codec(None),
            CodecKind::Zstd.at(Some(1))
        );
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
    fn variables_that_name_no_key_are_one_notice_and_file_keys_stay_errors() {
        let env = [
            ("SIDELOG_SERVICE_HOST", "10.96.0.10"),
            ("SIDELOG_SERVICE_PORT", "9500"),
            ("SIDELOG_PORT_9500_TCP_ADDR", "10.96.0.10"),
            ("SIDELOG_0__X", "malformed"),
            ("SIDELOG_DATADOG____SITE", "malformed"),
            ("SIDELOG_KUBERNETES__POD_LABELS_AS_TAGS__APP", "kube_app"),
            ("SIDELOG_BATCH__MAX_EVENTS", "10"),
        ];
        let c = load(MINIMAL, &env).expect("valid despite the variables");
        assert_eq!(c.batch.max_events, 10);
        assert_eq!(
            c.kubernetes
                .pod_labels_as_tags
                .get("app")
                .map(String::as_str),
            Some("kube_app")
        );
        assert_eq!(c.notices.len(), 1, "{:?}", c.notices);
        for name in [
            "SIDELOG_SERVICE_HOST",
            "SIDELOG_SERVICE_PORT",
            "SIDELOG_PORT_9500_TCP_ADDR",
            "SIDELOG_0__X",
            "SIDELOG_DATADOG____SITE",
        ] {
            assert!(c.notices[0].contains(name), "{name}: {:?}", c.notices);
        }
        assert!(!c.notices[0].contains("MAX_EVENTS"));
        let err = load(&format!("{MINIMAL}service_port = 9500\n"), &env).expect_err("file key");
        assert!(err.to_string().contains("service_port"), "{err}");
    }

    /// `${1}` in a rule is the match's first group in every format, never a variable.
    #[test]
    fn rule_patterns_and_placeholders_are_taken_as_written() {
        let rules = "[[log_processing_rules]]\ntype = \"mask_sequences\"\nname = \"g\"\npattern = '(key=)\\w+$'\nreplace_placeholder = \"${1}[g]\"\n";
        let input = "[[inputs]]\ninclude = [\"/l/*.log\"]\nservice = \"${SVC:-web}\"\n[[inputs.log_processing_rules]]\ntype = \"mask_sequences\"\nname = \"m\"\npattern = '(id=)${2}'\nreplace_placeholder = \"${1}[masked] $$1\"\n[inputs.multiline]\nstart_pattern = '^${3}'\n";
        let c = load(&format!("{rules}{input}"), &[]).expect("valid TOML");
        assert_eq!(c.log_processing_rules[0].replace_placeholder, "${1}[g]");
        let rule = &c.inputs[0].log_processing_rules[0];
        assert_eq!(rule.replace_placeholder, "${1}[masked] $$1");
        assert_eq!(rule.pattern, "(id=)${2}");
        let ml = c.inputs[0]
            .multiline
            .as_ref()
            .and_then(|m| m.start_pattern.as_deref());
        assert_eq!(ml, Some("^${3}"));
        assert_eq!(
            c.inputs[0].service, "web",
            "other strings are still interpolated"
        );

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sidelog.yaml");
        std::fs::write(
            &path,
            "inputs:\n  - include: [\"/l/*.log\"]\n    log_processing_rules:\n      - type: mask_sequences\n        name: y\n        pattern: '(k=)\\d+'\n        replace_placeholder: '${1}[y]'\n",
        )
        .expect("write");
        let env = [(
            "SIDELOG_INPUTS__0__LOG_PROCESSING_RULES__0__PATTERN".to_string(),
            "(v=)${x}\\d+".to_string(),
        )];
        let c = Config::load_with_env(&path, &env).expect("valid YAML");
        let rule = &c.inputs[0].log_processing_rules[0];
        assert_eq!(rule.replace_placeholder, "${1}[y]");
        assert_eq!(
            rule.pattern, "(v=)${x}\\d+",
            "from the environment, as written"
        );
    }

    #[test]
    fn global_rules_name_their_key_and_multi_line_is_per_input() {
        let text = format!(
            "[[log_processing_rules]]\ntype = \"multi_line\"\nname = \"ml\"\npattern = \"x\"\n[[log_processing_rules]]\ntype = \"exclude_at_match\"\nname = \"bad\"\npattern = \"a(\"\n{MINIMAL}[[inputs]]\ninclude = [\"/b/*.log\"]\n"
        );
        let err = load(&text, &[]).expect_err("invalid").to_string();
        assert!(
            err.contains("log_processing_rules[0]: rule \"ml\": multi_line"),
            "{err}"
        );
        assert_eq!(
            err.matches("log_processing_rules[1]: rule \"bad\": invalid pattern")
                .count(),
            1,
            "once, not once per input: {err}"
        );
        assert!(!err.contains("inputs[0].log_processing_rules[1]"), "{err}");
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
        assert_eq!(c.datadog.hostname.as_deref(), Some("node-3-x"));
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
        for (site, name, host) in Site::ALL {
            let d = DatadogConfig {
                site,
                ..DatadogConfig::default()
            };
            assert_eq!(d.logs_url(), format!("https://{host}/api/v2/logs"));
            assert_eq!(name.parse::<Site>(), Ok(site));
            assert_eq!(site.to_string(), name);
        }
    }

    #[test]
    fn values_are_parsed_into_their_types_after_interpolation() {
        let text = format!(
            "metrics_listen = \"${{POD_IP}}:9500\"\nexit_when_file = \"\"\n{MINIMAL}[inputs.multiline]\npreset = \"java\"\n"
        );
        let c = load(&text, &[("POD_IP", "10.1.2.3")]).expect("valid");
        assert_eq!(
            c.metrics_listen,
            Some("10.1.2.3:9500".parse().expect("addr"))
        );
        assert_eq!(c.exit_when_file, None);
        assert_eq!(c.datadog.endpoint, None);
        let preset = c.inputs[0].multiline.as_ref().and_then(|m| m.preset);
        assert_eq!(preset, Some(Preset::Java));
        let off = load(MINIMAL, &[("SIDELOG_METRICS_LISTEN", "")]).expect("valid");
        assert_eq!(off.metrics_listen, None);
        let err = load(MINIMAL, &[("SIDELOG_METRICS_LISTEN", "nowhere")]).expect_err("bad");
        assert!(err.to_string().contains("metrics_listen"), "{err}");
        let err = load(
            &format!("{MINIMAL}[inputs.multiline]\npreset = \"ruby\"\n"),
            &[],
        )
        .expect_err("bad preset");
        let text = err.to_string();
        assert!(
            text.contains("inputs[0].multiline.preset") && text.contains("ruby"),
            "{text}"
        );
        // Unset values are written back empty, so `sidelog check` shows every key.
        assert!(c.to_toml().contains("exit_when_file = \"\""));
    }

    #[test]
    fn compressors_are_the_cores_plus_a_spare_for_gzip_and_deflate() {
        let cores = usable_cores().min(2);
        for (compression, expected) in [
            (Compression::Auto, cores),
            (Compression::Zstd, cores),
            (Compression::Gzip, cores + 1),
            (Compression::Deflate, cores + 1),
        ] {
            let d = DatadogConfig {
                compression,
                ..DatadogConfig::default()
            };
            assert_eq!(d.compressors(), expected, "{compression:?}");
        }
        let fixed = DatadogConfig {
            compression_threads: 5,
            ..DatadogConfig::default()
        };
        assert_eq!(fixed.compressors(), 5);
    }
}
