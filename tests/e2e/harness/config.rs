//! The configurations the tests give the shipper: the shipper's own typed `Config`, built from
//! the tests' usual settings and changed where a test needs, written as the TOML file the
//! shipper loads (by the development tools' writer, as the benchmarks write theirs).

use super::*;
use sidelog_shipper::config::{Config, Input, LogLevel, RequestConcurrency};

impl Harness {
    /// The tests' usual configuration: one input over `logs/*.log` (service `user-msvc`, source
    /// `go`, tag `team:users`); the running intake, if any, with the key in `api-key`; host
    /// `test-host` and tag `env:test`; one request at a time (tests compare lines in order)
    /// and quick retries (the defaults wait up to 2.5 s); debug logging, a 10 s shutdown and
    /// 200 ms of quiet before a drain ends. Batches keep their default timeout.
    pub fn base_config(&self) -> Config {
        let mut c = Config {
            data_dir: self.dir.path().join("data"),
            log_level: LogLevel::Debug,
            shutdown_timeout_ms: 10_000,
            shutdown_quiet_ms: 200,
            ..Config::default()
        };
        c.inputs.push(Input {
            include: vec![format!("{}/*.log", self.logs().display())],
            service: "user-msvc".into(),
            source: "go".into(),
            tags: vec!["team:users".into()],
            ..Input::default()
        });
        let d = &mut c.datadog;
        d.endpoint = self
            .intake
            .as_ref()
            .map(|i| i.endpoint().parse().expect("the intake's URL"));
        d.api_key_file = Some(self.dir.path().join("api-key"));
        d.hostname = Some("test-host".into());
        d.tags = vec!["env:test".into()];
        d.retry_initial_ms = 50;
        d.retry_max_ms = 500;
        d.request_concurrency = RequestConcurrency::Fixed(1);
        c
    }

    /// [`Harness::base_config`] as `adjust` changes it, written to `sidelog.toml`.
    pub fn config_with(&self, adjust: impl FnOnce(&mut Config)) -> PathBuf {
        let mut config = self.base_config();
        adjust(&mut config);
        self.write_config(&config)
    }

    /// Writes `config` to `sidelog.toml` (replacing the one before) and returns its path.
    pub fn write_config(&self, config: &Config) -> PathBuf {
        let path = self.dir.path().join("sidelog.toml");
        sidelog_devtools::config::write(config, &path).expect("write config");
        path
    }

    /// The usual configuration with 200 ms batches.
    pub fn default_config(&self) -> PathBuf {
        self.config_with(|c| c.batch.timeout_ms = 200)
    }
}

/// The URL `text` names, for `datadog.endpoint` and `datadog.proxy`.
pub fn url(text: &str) -> reqwest::Url {
    text.parse().expect("a URL")
}
