//! Which values are allowed: every range and cross-key rule, all problems reported at once,
//! each naming its key.

use std::path::Path;

use reqwest::Url;

use super::{
    Compression, Config, ConfigError, INTAKE_MAX_BODY_BYTES, INTAKE_MAX_EVENTS, Input,
    RequestConcurrency,
};

impl Config {
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
        if self.data_dir.as_os_str().is_empty() {
            errors.push("data_dir: must not be empty".into());
        }
        if let Some(endpoint) = &self.datadog.endpoint {
            check_endpoint(endpoint, self.datadog.allow_insecure_http, &mut errors);
        }
        check_tags("datadog.tags", &self.datadog.tags, &mut errors);
        if let Some(proxy) = &self.datadog.proxy
            && reqwest::Proxy::all(proxy.as_str()).is_err()
        {
            errors.push(format!(
                "datadog.proxy = {:?} is not a proxy URL (e.g. \"http://proxy.internal:3128\")",
                proxy.as_str()
            ));
        }
        if let Some(ca) = &self.datadog.ca_file
            && !ca.is_file()
        {
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
            check_multiline(i, input, &mut errors);
            if let Err(e) = crate::process::Processor::new(&input.processing(), i, None) {
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
}

/// `datadog.endpoint`: http or https, and plain http only to this host unless allowed (the
/// key would cross the network unencrypted).
fn check_endpoint(endpoint: &Url, allow_insecure_http: bool, errors: &mut Vec<String>) {
    match endpoint.scheme() {
        "https" => {}
        "http" if allow_insecure_http || is_loopback(endpoint) => {}
        "http" => errors.push(format!(
            "datadog.endpoint = {:?}: the API key would cross the network unencrypted; use https:// or set datadog.allow_insecure_http = true",
            endpoint.as_str()
        )),
        _ => errors.push(format!(
            "datadog.endpoint = {:?} must start with http:// or https://",
            endpoint.as_str()
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

/// `inputs[i].multiline`'s ranges.
fn check_multiline(i: usize, input: &Input, errors: &mut Vec<String>) {
    let Some(ml) = &input.multiline else {
        return;
    };
    if !(1..=600_000).contains(&ml.timeout_ms) {
        errors.push(format!(
            "inputs[{i}].multiline.timeout_ms = {} is out of range (allowed: 1 to 600000)",
            ml.timeout_ms
        ));
    }
    if ml.max_bytes > 900_000 {
        errors.push(format!(
            "inputs[{i}].multiline.max_bytes = {} is out of range (allowed: 0 to 900000)",
            ml.max_bytes
        ));
    }
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
