//! Which values are allowed: every range and cross-key rule, all problems reported at once,
//! each naming its key.

use std::path::Path;

use reqwest::Url;

use super::reference::range_of;
use super::{Compression, Config, ConfigError, Input, RequestConcurrency};

impl Config {
    /// Checks every range and cross-key rule; reports all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        for (key, value, lo, hi) in self.ranges() {
            if value < lo || value > hi {
                errors.push(format!(
                    "{key} = {value} is out of range (allowed: {lo} to {hi})"
                ));
            }
        }
        self.check_datadog(&mut errors);
        if self.data_dir.as_os_str().is_empty() {
            errors.push("data_dir: must not be empty".into());
        }
        if self.inputs.is_empty() {
            errors.push("inputs: at least one [[inputs]] table with `include` is required".into());
        }
        self.check_global_rules(&mut errors);
        for (i, input) in self.inputs.iter().enumerate() {
            check_input(i, input, &self.log_processing_rules, &mut errors);
        }
        // A global rule's problem is found with every input; say it once.
        let mut seen = std::collections::HashSet::new();
        errors.retain(|e| seen.insert(e.clone()));
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }

    /// Every numeric key with its value and allowed range.
    fn ranges(&self) -> Vec<(String, u64, u64, u64)> {
        let mut out = self.fixed_ranges();
        if let RequestConcurrency::Fixed(n) = self.datadog.request_concurrency {
            out.push(range("datadog.request_concurrency", n as u64));
        }
        for (i, input) in self.inputs.iter().enumerate() {
            let each = |k: &str, value: u64| {
                let (lo, hi) = range_of(&format!("inputs[].{k}"));
                (format!("inputs[{i}].{k}"), value, lo, hi)
            };
            out.push(each("max_line_bytes", input.max_line_bytes as u64));
            if let Some(ml) = &input.multiline {
                out.push(each("multiline.timeout_ms", ml.timeout_ms));
                out.push(each("multiline.max_bytes", ml.max_bytes as u64));
            }
        }
        out
    }

    /// The keys that exist once whatever the inputs.
    #[rustfmt::skip]
    fn fixed_ranges(&self) -> Vec<(String, u64, u64, u64)> {
        let (d, t, b) = (&self.datadog, &self.tail, &self.batch);
        vec![
            range("shutdown_timeout_ms", self.shutdown_timeout_ms),
            range("shutdown_quiet_ms", self.shutdown_quiet_ms),
            range("checkpoint_interval_ms", self.checkpoint_interval_ms),
            range("liveness_timeout_secs", self.liveness_timeout_secs),
            range("tail.rescan_interval_ms", t.rescan_interval_ms),
            range("tail.read_buffer_bytes", t.read_buffer_bytes as u64),
            range("tail.max_open_files", t.max_open_files as u64),
            range("tail.rotated_linger_ms", t.rotated_linger_ms),
            range("tail.rotate_wait_ms", t.rotate_wait_ms),
            range("tail.multiline_pending_bytes", t.multiline_pending_bytes as u64),
            range("batch.max_events", b.max_events as u64),
            range("batch.max_bytes", b.max_bytes as u64),
            range("batch.timeout_ms", b.timeout_ms),
            range("batch.linger_ms", b.linger_ms),
            range("batch.quiet_min_events", b.quiet_min_events),
            range("datadog.request_timeout_ms", d.request_timeout_ms),
            range("datadog.compression_threads", d.compression_threads as u64),
            range("datadog.request_concurrency_max", d.request_concurrency_max as u64),
            range("datadog.retry_initial_ms", d.retry_initial_ms),
            range("datadog.retry_max_ms", d.retry_max_ms),
        ]
    }

    /// The `[datadog]` rules that are more than a range.
    fn check_datadog(&self, errors: &mut Vec<String>) {
        let d = &self.datadog;
        if d.retry_max_ms < d.retry_initial_ms {
            errors.push(format!(
                "datadog.retry_max_ms = {} must not be below datadog.retry_initial_ms = {}",
                d.retry_max_ms, d.retry_initial_ms
            ));
        }
        check_level("datadog", d.compression, d.compression_level, errors);
        if let Some(endpoint) = &d.endpoint {
            check_endpoint("datadog.endpoint", endpoint, d.allow_insecure_http, errors);
        }
        check_tags("datadog.tags", &d.tags, errors);
        for (i, extra) in d.additional_endpoints.iter().enumerate() {
            check_additional(i, extra, d.allow_insecure_http, errors);
        }
        if let Some(proxy) = &d.proxy
            && reqwest::Proxy::all(proxy.as_str()).is_err()
        {
            errors.push(format!(
                "datadog.proxy = {:?} is not a proxy URL (e.g. \"http://proxy.internal:3128\")",
                crate::redact::url(proxy)
            ));
        }
        if let Some(ca) = &d.ca_file
            && !ca.is_file()
        {
            errors.push(format!(
                "datadog.ca_file = {:?}: no such file",
                ca.display().to_string()
            ));
        }
    }
}

fn check_additional(
    i: usize,
    extra: &super::AdditionalEndpoint,
    allow_insecure_http: bool,
    errors: &mut Vec<String>,
) {
    let key = format!("datadog.additional_endpoints[{i}]");
    if extra.api_key_file.is_none() && extra.api_key.is_none() {
        errors.push(format!(
            "{key}.api_key_file: required (each endpoint has its own key)"
        ));
    }
    check_level(&key, extra.compression, extra.compression_level, errors);
    if let Some(endpoint) = &extra.endpoint {
        check_endpoint(
            &format!("{key}.endpoint"),
            endpoint,
            allow_insecure_http,
            errors,
        );
    }
}

/// `<table>.compression_level` within the codec's range.
fn check_level(
    table: &str,
    compression: Compression,
    level: Option<i32>,
    errors: &mut Vec<String>,
) {
    let codec = compression.codec(level);
    let (lo, hi) = codec.kind.levels();
    if compression != Compression::None && !(lo..=hi).contains(&codec.level) {
        errors.push(format!(
            "{table}.compression_level = {} is out of range for {} (allowed: {lo} to {hi})",
            codec.level,
            codec.content_encoding()
        ));
    }
}

/// A key's value with its allowed range, as `reference` defines it.
fn range(key: &str, value: u64) -> (String, u64, u64, u64) {
    let (lo, hi) = range_of(key);
    (key.to_string(), value, lo, hi)
}

impl Config {
    /// Global rules act on events; grouping lines is each input's own business.
    fn check_global_rules(&self, errors: &mut Vec<String>) {
        for (j, rule) in self.log_processing_rules.iter().enumerate() {
            if rule.kind == crate::process::RuleKind::MultiLine {
                errors.push(format!(
                    "log_processing_rules[{j}]: rule {:?}: multi_line groups the lines of one input; put it in that input's log_processing_rules",
                    rule.name
                ));
            }
        }
    }
}

/// One `[[inputs]]` table: its globs, status, processing and tags.
fn check_input(
    i: usize,
    input: &Input,
    global_rules: &[crate::process::RuleSettings],
    errors: &mut Vec<String>,
) {
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
    // Compiles the patterns (the processing says which key is wrong).
    if let Err(e) = crate::process::Processor::new(&input.processing(global_rules), i, None) {
        errors.push(e.to_string());
    }
    check_tags(&format!("inputs[{i}].tags"), &input.tags, errors);
}

/// `datadog.endpoint`: http or https, and plain http only to this host unless allowed (the
/// key would cross the network unencrypted).
fn check_endpoint(key: &str, endpoint: &Url, allow_insecure_http: bool, errors: &mut Vec<String>) {
    match endpoint.scheme() {
        "https" => {}
        "http" if allow_insecure_http || is_loopback(endpoint) => {}
        "http" => errors.push(format!(
            "{key} = {:?}: the API key would cross the network unencrypted; use https:// or set datadog.allow_insecure_http = true",
            crate::redact::url(endpoint)
        )),
        _ => errors.push(format!(
            "{key} = {:?} must start with http:// or https://",
            crate::redact::url(endpoint)
        )),
    }
}

/// Whether a URL's host is this host.
fn is_loopback(url: &Url) -> bool {
    let host = url.host_str().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_range_checked_is_defined_in_the_reference() {
        let config = Config {
            inputs: vec![Input {
                multiline: Some(crate::process::MultilineSettings::default()),
                ..Input::default()
            }],
            datadog: super::super::DatadogConfig {
                request_concurrency: RequestConcurrency::Fixed(4),
                ..Default::default()
            },
            ..Config::default()
        };
        for (key, _, _, _) in config.ranges() {
            let generic = key.replace("[0]", "[]");
            let defined = super::super::reference::SETTINGS
                .iter()
                .any(|s| s.key == generic && s.range.is_some());
            assert!(
                defined,
                "{key} is checked against no range of the reference"
            );
        }
    }
}
