//! The Agent's settings turned into sidelog's: the intake, the key, tags, compression,
//! batching and retries, global rules, labels as tags, and the inputs from `conf.d` with the
//! Agent's defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;

use yaml_rust2::Yaml;

use super::found::AgentSettings;
use super::secrets::Backend;
use super::sources::{self, Source};
use super::{
    AGENT_MAX_MESSAGE, ANNOTATIONS_FILE, KeyLocation, LABELS_FILE, Notes, RUN_PATH, group_lines,
    key_location, log_level,
};
use crate::config::{
    AdditionalEndpoint, Compression, Config, DatadogConfig, LogFormat, RequestConcurrency, Site,
};
use crate::process::{RuleKind, RuleSettings};
use crate::yaml11;

impl AgentSettings {
    /// Everything but the inputs.
    pub(super) fn to_config(&self, notes: &mut Notes) -> Config {
        let mut c = Config {
            data_dir: PathBuf::from(
                self.text("logs_config.run_path")
                    .unwrap_or_else(|| RUN_PATH.into()),
            ),
            ..Config::default()
        };
        if self.bool("logs_enabled", notes) == Some(false) {
            notes.error(format!(
                "{}: false; the Agent would collect no logs, and collecting them is all sidelog does",
                self.origin("logs_enabled")
            ));
        }
        if let Some(level) = self.text("log_level") {
            c.log_level = log_level(&level);
        }
        if self.bool("log_format_json", notes) == Some(true) {
            c.log_format = LogFormat::Json;
        }
        c.datadog = self.datadog(notes);
        self.tuning(&mut c, notes);
        c.log_processing_rules = self.global_rules(notes);
        self.kubernetes(&mut c, notes);
        c
    }

    fn datadog(&self, notes: &mut Notes) -> DatadogConfig {
        let mut d = DatadogConfig::default();
        if let Some(site) = self.text("site") {
            match site.parse::<Site>() {
                Ok(s) => d.site = s,
                Err(e) => notes.error(format!("{}: {e}", self.origin("site"))),
            }
        }
        self.api_key(&mut d, notes);
        d.hostname = self.text("hostname").or_else(|| self.hostname_file(notes));
        d.tags = self.tags(notes);
        self.endpoint(&mut d, notes);
        self.compression(&mut d, notes);
        self.proxy(&mut d);
        d.additional_endpoints = self.additional_endpoints(notes);
        if self.bool("skip_ssl_validation", notes) == Some(true) {
            notes.warn(format!(
                "{}: sidelog always verifies the intake's certificate; for a private authority set datadog.ca_file (SIDELOG_DATADOG__CA_FILE)",
                self.origin("skip_ssl_validation")
            ));
        }
        d
    }

    fn backend(&self) -> Backend {
        Backend {
            command: self.text("secret_backend_command"),
            argument: self
                .found
                .get("secret_backend_arguments")
                .map(|f| sources::strings(&f.value))
                .and_then(|args| args.into_iter().next()),
        }
    }

    /// `api_key`: a file through `ENC[...]` (followed when the Secret is rotated), or the
    /// key itself.
    fn api_key(&self, d: &mut DatadogConfig, notes: &mut Notes) {
        let Some(value) = self.text("api_key") else {
            notes.error("no API key: set DD_API_KEY (ENC[file@<path>] for a mounted Secret) or api_key in datadog.yaml".into());
            return;
        };
        let origin = self.origin("api_key");
        match key_location(&value, &origin, &self.backend()) {
            Ok(KeyLocation::File(path)) => d.api_key_file = Some(path),
            Ok(KeyLocation::Inline(key)) => d.api_key = Some(key),
            Err(e) => notes.error(format!("{origin}: {e}")),
        }
    }

    fn hostname_file(&self, notes: &mut Notes) -> Option<String> {
        let path = self.text("hostname_file")?;
        match std::fs::read_to_string(&path) {
            Ok(text) => Some(text.trim().to_string()).filter(|h| !h.is_empty()),
            Err(e) => {
                notes.warn(format!(
                    "{}: cannot read {path}: {e}; the host name is the Pod's",
                    self.origin("hostname_file")
                ));
                None
            }
        }
    }

    /// `tags` and `extra_tags`, with Unified Service Tagging's `env` and `version`.
    fn tags(&self, notes: &mut Notes) -> Vec<String> {
        let mut tags = self.list("tags", notes);
        tags.extend(self.list("extra_tags", notes));
        for (key, name) in [("env", "env"), ("version", "version")] {
            if let Some(v) = self.text(key) {
                let tag = format!("{name}:{v}");
                if !tags.contains(&tag) {
                    tags.push(tag);
                }
            }
        }
        tags
    }

    /// `logs_dd_url` (the Agent's `host:port`), over plain HTTP with `logs_no_ssl`.
    fn endpoint(&self, d: &mut DatadogConfig, notes: &mut Notes) {
        let no_ssl = self.bool("logs_config.logs_no_ssl", notes) == Some(true)
            || self.bool("logs_config.dev_mode_no_ssl", notes) == Some(true);
        let tcp = ["logs_config.force_use_tcp", "logs_config.use_tcp"]
            .into_iter()
            .find(|k| self.bool(k, notes) == Some(true));
        let Some(url) = self.text("logs_config.logs_dd_url") else {
            if let Some(k) = tcp {
                notes.warn(format!("{}: sidelog ships over HTTPS, the Agent's recommended transport, to the site's HTTP intake", self.origin(k)));
            }
            return;
        };
        if let Some(k) = tcp {
            notes.error(format!(
                "{}: true with logs_dd_url {url:?}: that endpoint takes the Agent's TCP protocol, and sidelog ships over HTTP(S) only",
                self.origin(k)
            ));
        }
        let scheme = if no_ssl { "http" } else { "https" };
        let full = if url.contains("://") {
            url.clone()
        } else {
            format!("{scheme}://{url}")
        };
        match full.parse() {
            Ok(u) => d.endpoint = Some(u),
            Err(e) => notes.error(format!(
                "{}: {url:?} is not host:port: {e}",
                self.origin("logs_config.logs_dd_url")
            )),
        }
        // logs_no_ssl is the Agent user's explicit consent to plain HTTP.
        d.allow_insecure_http = no_ssl;
        if self.bool("logs_config.use_v2_api", notes) == Some(false) {
            notes.warn(format!(
                "{}: false; sidelog posts to the v2 API (/api/v2/logs)",
                self.origin("logs_config.use_v2_api")
            ));
        }
    }

    /// `use_compression`, `compression_kind` and their levels.
    fn compression(&self, d: &mut DatadogConfig, notes: &mut Notes) {
        if self.bool("logs_config.use_compression", notes) == Some(false) {
            d.compression = Compression::None;
            return;
        }
        let (kind, level_key) = match self.text("logs_config.compression_kind").as_deref() {
            None => (Compression::Auto, "logs_config.zstd_compression_level"),
            Some("zstd") => (Compression::Zstd, "logs_config.zstd_compression_level"),
            Some("gzip") => (Compression::Gzip, "logs_config.compression_level"),
            Some(other) => {
                notes.error(format!(
                    "{}: {other:?} is neither zstd nor gzip",
                    self.origin("logs_config.compression_kind")
                ));
                return;
            }
        };
        d.compression = kind;
        if kind != Compression::Gzip && self.found.contains_key("logs_config.compression_level") {
            notes.warn(format!(
                "{}: the level of gzip; bodies are zstd (set compression_kind: gzip for gzip, zstd_compression_level for zstd's level)",
                self.origin("logs_config.compression_level")
            ));
        }
        let Some(level) = self.int(level_key, notes) else {
            return;
        };
        let max = if kind == Compression::Gzip { 9 } else { 3 };
        if level > max {
            notes.warn(format!(
                "{}: {level}; sidelog compresses at {max} at most (the same bytes arrive, a few percent larger)",
                self.origin(level_key)
            ));
        }
        d.compression_level = Some(level.clamp(if max == 3 { 1 } else { 0 }, max) as i32);
    }

    /// `proxy.https` (or `proxy.http` for a plain HTTP intake), unless `no_proxy` lists the
    /// intake's host.
    fn proxy(&self, d: &mut DatadogConfig) {
        let url = d.logs_url();
        let key = if url.starts_with("http://") {
            "proxy.http"
        } else {
            "proxy.https"
        };
        let Some(proxy) = self.text(key) else { return };
        let host = reqwest::Url::parse(&url)
            .ok()
            .and_then(|u| u.host_str().map(String::from))
            .unwrap_or_default();
        let bypass = self.found.get("proxy.no_proxy").map(|f| match &f.value {
            Yaml::String(s) if f.from_env => s.split_whitespace().map(String::from).collect(),
            v => sources::strings(v),
        });
        let bypassed = bypass.unwrap_or_default().iter().any(|entry: &String| {
            let entry = entry.trim_start_matches('.');
            host == entry || host.ends_with(&format!(".{entry}"))
        });
        if !bypassed {
            d.proxy = proxy.parse().ok();
        }
    }

    /// `logs_config.additional_endpoints`: a list of `api_key`, `Host`, `Port`,
    /// `is_reliable`, `use_compression`, `compression_level` (names in any case, as the Agent
    /// reads them).
    fn additional_endpoints(&self, notes: &mut Notes) -> Vec<AdditionalEndpoint> {
        let Some(Yaml::Array(items)) = self.structured("logs_config.additional_endpoints", notes)
        else {
            return Vec::new();
        };
        let origin = self.origin("logs_config.additional_endpoints");
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| self.additional(item, &format!("{origin}[{i}]"), notes))
            .collect()
    }

    fn additional(
        &self,
        item: &Yaml,
        origin: &str,
        notes: &mut Notes,
    ) -> Option<AdditionalEndpoint> {
        let field = |name: &str| -> Option<&Yaml> {
            let Yaml::Hash(h) = item else { return None };
            h.iter()
                .find(|(k, _)| yaml11::text(k).is_some_and(|k| k.eq_ignore_ascii_case(name)))
                .map(|(_, v)| v)
        };
        let text = |name: &str| field(name).and_then(yaml11::text).filter(|s| !s.is_empty());
        let mut e = AdditionalEndpoint {
            reliable: field("is_reliable").and_then(yaml11::bool).unwrap_or(true),
            ..AdditionalEndpoint::default()
        };
        let Some(host) = text("host") else {
            notes.error(format!("{origin}: needs a Host"));
            return None;
        };
        let port = text("port").unwrap_or_else(|| "443".into());
        let scheme = if field("use_ssl").and_then(yaml11::bool) == Some(false) {
            "http"
        } else {
            "https"
        };
        match format!("{scheme}://{host}:{port}").parse() {
            Ok(u) => e.endpoint = Some(u),
            Err(err) => notes.error(format!("{origin}: {host}:{port} is not host:port: {err}")),
        }
        match text("api_key")
            .map(|k| key_location(&k, &format!("{origin}.api_key"), &self.backend()))
        {
            Some(Ok(KeyLocation::File(p))) => e.api_key_file = Some(p),
            Some(Ok(KeyLocation::Inline(k))) => e.api_key = Some(k),
            Some(Err(err)) => notes.error(format!("{origin}.api_key: {err}")),
            None => notes.error(format!("{origin}: needs an api_key")),
        }
        if field("use_compression").and_then(yaml11::bool) == Some(false) {
            e.compression = Compression::None;
        }
        e.compression_level = field("compression_level")
            .and_then(yaml11::int)
            .map(|l| l.clamp(1, 3) as i32);
        Some(e)
    }

    /// Batching, files, retries and shutdown.
    fn tuning(&self, c: &mut Config, notes: &mut Notes) {
        if let Some(ms) = self.seconds_ms("logs_config.batch_wait", notes) {
            c.batch.timeout_ms = ms.clamp(1, 600_000);
            c.batch.linger_ms = c.batch.linger_ms.min(c.batch.timeout_ms);
        }
        if let Some(n) = self.int("logs_config.batch_max_size", notes) {
            c.batch.max_events = n.clamp(1, 1000) as usize;
        }
        if let Some(n) = self.int("logs_config.batch_max_content_size", notes) {
            c.batch.max_bytes = n.clamp(65_536, 5_000_000) as usize;
        }
        match self.int("logs_config.batch_max_concurrent_send", notes) {
            Some(n) if n > 0 => {
                c.datadog.request_concurrency = RequestConcurrency::Fixed(n.min(64) as usize)
            }
            _ => {}
        }
        if let Some(ms) = self.seconds_ms("logs_config.sender_backoff_base", notes) {
            c.datadog.retry_initial_ms = ms.max(1);
        }
        if let Some(ms) = self.seconds_ms("logs_config.sender_backoff_max", notes) {
            c.datadog.retry_max_ms = ms.max(c.datadog.retry_initial_ms);
        }
        if let Some(n) = self.int("logs_config.open_files_limit", notes) {
            c.tail.max_open_files = n.max(8) as usize;
        }
        if let Some(ms) = self.seconds_ms("logs_config.file_scan_period", notes) {
            c.tail.rescan_interval_ms = ms.clamp(100, 3_600_000);
        }
        if let Some(ms) = self.seconds_ms("logs_config.close_timeout", notes) {
            c.tail.rotated_linger_ms = ms;
        }
        if let Some(ms) = self.seconds_ms("logs_config.stop_grace_period", notes) {
            c.shutdown_timeout_ms = ms.min(600_000);
        }
        for key in [
            "logs_config.tag_truncated_logs",
            "logs_config.tag_multi_line_logs",
        ] {
            if self.bool(key, notes) == Some(true) {
                notes.error(format!(
                    "{}: true; sidelog does not add the Agent's per-event truncated/multiline tags",
                    self.origin(key)
                ));
            }
        }
        if let Some(addr) = self.text("logs_config.socks5_proxy_address") {
            let addr = crate::redact::url_text(&addr);
            notes.error(format!("{}: {addr:?}; sidelog does not ship through a SOCKS5 proxy (proxy.https or datadog.proxy take an HTTP proxy)", self.origin("logs_config.socks5_proxy_address")));
        }
    }

    /// `logs_config.processing_rules`: for every input, before its own. A global `multi_line`
    /// rule does nothing in the Agent, and nothing here.
    fn global_rules(&self, notes: &mut Notes) -> Vec<RuleSettings> {
        let Some(value) = self.structured("logs_config.processing_rules", notes) else {
            return Vec::new();
        };
        let origin = self.origin("logs_config.processing_rules");
        let mut rules = sources::rules(&value, &origin, notes);
        rules.retain(|r| {
            let multi = r.kind == RuleKind::MultiLine;
            if multi {
                notes.ignore(
                    format!("{origin}: rule {:?}", r.name),
                    "a global multi_line rule has no effect in the Agent either",
                );
            }
            !multi
        });
        rules
    }

    /// Labels and annotations as tags: the Agent asks the kubelet; sidelog reads them from a
    /// Downward API volume at /etc/podinfo, and says so.
    fn kubernetes(&self, c: &mut Config, notes: &mut Notes) {
        let pairs = [
            ("kubernetes_pod_labels_as_tags", LABELS_FILE, "labels"),
            (
                "kubernetes_pod_annotations_as_tags",
                ANNOTATIONS_FILE,
                "annotations",
            ),
        ];
        for (key, file, what) in pairs {
            let Some(Yaml::Hash(map)) = self.structured(key, notes) else {
                continue;
            };
            let map: BTreeMap<String, String> = map
                .iter()
                .filter_map(|(k, v)| Some((yaml11::text(k)?, yaml11::text(v)?)))
                .collect();
            if map.is_empty() {
                continue;
            }
            if what == "labels" {
                c.kubernetes.labels_file = Some(file.into());
                c.kubernetes.pod_labels_as_tags = map;
            } else {
                c.kubernetes.annotations_file = Some(file.into());
                c.kubernetes.pod_annotations_as_tags = map;
            }
            notes.warn(format!(
                "{}: the Agent reads the Pod's {what} from the kubelet; sidelog reads them from a downwardAPI volume mounted at /etc/podinfo (a file `{what}` with fieldPath metadata.{what}), followed as they change; without it, these tags are not added",
                self.origin(key)
            ));
        }
    }

    /// The inputs from `conf.d`, with the Agent's defaults and its logs settings that apply
    /// to each; returns where each came from.
    pub(super) fn add_inputs(
        &self,
        c: &mut Config,
        sources: Vec<Source>,
        notes: &mut Notes,
    ) -> Vec<String> {
        let max = self
            .int("logs_config.max_message_size_bytes", notes)
            .unwrap_or(AGENT_MAX_MESSAGE);
        if max > 900_000 {
            notes.warn(format!("{}: {max}; sidelog cuts messages at 900000 bytes (the intake takes 1 MB per event)", self.origin("logs_config.max_message_size_bytes")));
        }
        let timeout = self
            .int("logs_config.aggregation_timeout", notes)
            .map(|ms| ms.clamp(1, 600_000) as u64);
        let auto = self.bool("logs_config.auto_multi_line_detection", notes);
        let service = self.text("service");
        let mut origins = Vec::new();
        for mut s in sources {
            s.input.max_line_bytes = max.clamp(1024, 900_000) as usize;
            if s.input.service.is_empty() {
                s.input.service = service.clone().unwrap_or_default();
            }
            group_lines(&mut s, auto, timeout);
            origins.push(s.origin);
            c.inputs.push(s.input);
        }
        if c.inputs.is_empty() {
            notes.error(
                "no `type: file` entry in conf.d's logs: nothing for sidelog to tail".into(),
            );
        }
        origins
    }
}
