//! The shipper's commands: `run` (with its signals: SIGTERM/SIGINT drain and stop, a second
//! one stops at once, SIGHUP reloads), `check` and `status`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

use super::logging::{self, LogHandle};
use super::runtime::{block_on, shipper_runtime};
use sidelog_shipper::config::agent::AGENT_DIR;
use sidelog_shipper::config::{Config, LogFormat, LogLevel};
use sidelog_shipper::metrics::Metrics;
use sidelog_shipper::pipeline::{Pipeline, StopMode};

/// Where the configuration comes from: sidelog's own file, or the Datadog Agent's files.
pub enum Source {
    File(PathBuf),
    Agent(PathBuf),
}

impl Source {
    /// The configuration, or the problem as the operator reads it.
    fn load(&self) -> Result<Config, String> {
        let loaded = match self {
            Source::File(path) => Config::load(path),
            Source::Agent(dir) => Config::load_agent(dir),
        };
        loaded.map_err(|e| e.to_string())
    }

    fn describe(&self) -> String {
        match self {
            Source::File(path) => path.display().to_string(),
            Source::Agent(dir) => format!("the Datadog Agent's files in {}", dir.display()),
        }
    }
}

/// The configuration's source: `--config`, else `--agent-config`, else the Datadog Agent's
/// files at their standard place if they are there. Nothing: exit code 2.
pub fn source(config: Option<PathBuf>, agent: Option<PathBuf>) -> Result<Source, ExitCode> {
    if let Some(path) = config {
        return Ok(Source::File(path));
    }
    if let Some(dir) = agent {
        return Ok(Source::Agent(dir));
    }
    let standard = Path::new(AGENT_DIR);
    if standard.join("datadog.yaml").is_file() || standard.join("conf.d").is_dir() {
        return Ok(Source::Agent(standard.to_path_buf()));
    }
    eprintln!(
        "sidelog: no config given; use --config FILE, or --agent-config DIR for the Datadog Agent's files (none in {AGENT_DIR}); see `sidelog --help`"
    );
    Err(ExitCode::from(2))
}

/// Loads a configuration; a problem is printed and becomes exit code 2.
pub fn load(path: &Path) -> Result<Config, ExitCode> {
    load_from(&Source::File(path.to_path_buf()))
}

fn load_from(source: &Source) -> Result<Config, ExitCode> {
    source.load().map_err(|e| {
        eprintln!("sidelog: {e}");
        ExitCode::from(2)
    })
}

/// 3 when `data_dir` cannot hold checkpoints (an environment to fix, not a bug to report),
/// 1 for any other failure.
fn exit_code_of(e: &anyhow::Error) -> ExitCode {
    if e.chain()
        .any(|c| c.is::<sidelog_shipper::pipeline::DataDirError>())
    {
        ExitCode::from(3)
    } else {
        ExitCode::FAILURE
    }
}

/// `sidelog run`.
pub fn run(source: Source) -> ExitCode {
    let config = match load_from(&source) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let log = logging::init(config.log_level, config.log_format);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), config = %source.describe(), "sidelog starting");
    log_notices(&config);
    let runtime = match shipper_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sidelog: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(ship(source, config, log)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("sidelog: {e:#}");
            exit_code_of(&e)
        }
    }
}

/// The signals the shipper answers.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            hup: signal(SignalKind::hangup()).context("cannot handle SIGHUP")?,
        })
    }

    async fn stop(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// What ended a running shipper's turn.
enum Next {
    Exit,
    Reload(Box<Config>),
}

/// Runs the shipper until SIGTERM or SIGINT. SIGHUP re-reads the config file (and with it
/// the key): a valid one replaces the running shipper after an orderly stop (positions are
/// kept through the checkpoints); an invalid one is refused and the running one kept.
async fn ship(source: Source, mut config: Config, log: LogHandle) -> anyhow::Result<()> {
    let mut signals = Signals::install()?;
    sidelog_shipper::failpoint::install();
    let metrics = Arc::new(Metrics::default());
    let admin = sidelog_shipper::admin::AdminState::new(metrics.clone());
    let admin_stop = CancellationToken::new();
    let _admin_stop = admin_stop.clone().drop_guard();
    if let Some(addr) = config.metrics_listen {
        let bound = sidelog_shipper::admin::serve(addr, admin.clone(), admin_stop)
            .await
            .with_context(|| format!("cannot listen on metrics_listen {addr}"))?;
        tracing::info!(addr = %bound, "serving /metrics, /healthz, /readyz and /status");
    }
    loop {
        let mut shipper = Pipeline::start(config.clone(), metrics.clone(), Some(admin.clone()));
        let next = tokio::select! {
            ended = shipper.wait() => return ended,
            next = until_stop_or_reload(&mut signals, &source) => next,
        };
        let mode = match &next {
            Next::Exit => stop_mode(&config),
            Next::Reload(_) => {
                tracing::info!(config = %source.describe(), "SIGHUP: reloading configuration and API key");
                StopMode::Immediate
            }
        };
        shipper.stop(mode);
        // A second SIGTERM or SIGINT ends the drain at once; checkpoints are still written.
        loop {
            tokio::select! {
                ended = shipper.wait() => break ended?,
                _ = signals.stop() => shipper.abandon(),
            }
        }
        let Next::Reload(new) = next else {
            return Ok(());
        };
        warn_restart_only(&config, &new);
        log_notices(&new);
        log.set(new.log_level);
        config = *new;
    }
}

/// Waits for SIGTERM/SIGINT, or for a SIGHUP with a valid configuration (an invalid one is
/// refused and waiting goes on).
async fn until_stop_or_reload(signals: &mut Signals, source: &Source) -> Next {
    loop {
        tokio::select! {
            _ = signals.term.recv() => return Next::Exit,
            _ = signals.int.recv() => return Next::Exit,
            _ = signals.hup.recv() => match source.load() {
                Ok(new) => return Next::Reload(Box::new(new)),
                Err(e) => tracing::error!("configuration reload refused; the running configuration stays: {e}"),
            },
        }
    }
}

/// The warnings of loading (variables that name no key, Agent settings that do not apply),
/// once each.
fn log_notices(config: &Config) {
    for notice in &config.notices {
        tracing::warn!("{notice}");
    }
}

/// SIGTERM drains in a Pod (the volume goes with it), and stops at once on a host.
fn stop_mode(config: &Config) -> StopMode {
    if config.shutdown_drain {
        tracing::info!(
            deadline_ms = config.shutdown_timeout_ms,
            "signal received; shipping everything left before exiting (a second signal stops at once)"
        );
        StopMode::Drain
    } else {
        tracing::info!("signal received; stopping");
        StopMode::Immediate
    }
}

fn warn_restart_only(old: &Config, new: &Config) {
    if new.metrics_listen != old.metrics_listen {
        tracing::warn!("a change of metrics_listen takes effect at the next start");
    }
    if new.log_format != old.log_format {
        tracing::warn!("a change of log_format takes effect at the next start");
    }
}

/// `sidelog check`: the effective configuration, the key's origin and length (never the key);
/// for the Agent's files, what each input came from and the settings left aside.
pub fn check(source: Source) -> ExitCode {
    let config = match load_from(&source) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let d = &config.datadog;
    let key = match sidelog_shipper::secret::KeySource::load(
        d.api_key_file.as_deref(),
        d.api_key.as_ref(),
    ) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("sidelog: datadog.api_key_file: {e}");
            return ExitCode::from(2);
        }
    };
    match &source {
        Source::File(_) => println!("# effective configuration of {}", source.describe()),
        Source::Agent(_) => {
            println!(
                "# sidelog's configuration derived from {}",
                source.describe()
            );
            println!(
                "# (save it as a file and run `sidelog --config FILE` to move to sidelog's own)"
            );
        }
    }
    println!(
        "# API key: loaded from {} ({} bytes, redacted)",
        key.origin(),
        key.current().len()
    );
    println!(
        "# intake URL: {}",
        sidelog_shipper::redact::url_text(&config.datadog.logs_url())
    );
    if let Some(agent) = &config.agent {
        for (i, origin) in agent.inputs.iter().enumerate() {
            println!("# inputs[{i}]: {origin}");
        }
    }
    for notice in &config.notices {
        eprintln!("sidelog: warning: {notice}");
        println!("# warning: {notice}");
    }
    print!("{}", config.to_toml());
    ExitCode::SUCCESS
}

/// `sidelog status`: the admin endpoint's `/status` as a table.
pub fn status(url: Option<String>, config: Option<PathBuf>) -> ExitCode {
    logging::init(LogLevel::Warn, LogFormat::Text);
    let url = match (url, config) {
        (Some(u), _) => u,
        (None, Some(path)) => match load(&path) {
            Ok(Config {
                metrics_listen: Some(addr),
                ..
            }) => format!("http://{}", reachable(addr)),
            Ok(_) => {
                eprintln!(
                    "sidelog: {} has no metrics_listen; the admin endpoint is off",
                    path.display()
                );
                return ExitCode::from(2);
            }
            Err(code) => return code,
        },
        (None, None) => "http://127.0.0.1:9500".to_string(),
    };
    block_on(|_| fetch_status(url))
}

async fn fetch_status(url: String) -> anyhow::Result<()> {
    let url = format!("{}/status", url.trim_end_matches('/'));
    let body = reqwest::Client::new()
        .get(&url)
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .with_context(|| format!("cannot reach {url} (is sidelog running with metrics_listen?)"))?
        .bytes()
        .await?;
    let s: sidelog_shipper::admin::Status =
        serde_json::from_slice(&body).with_context(|| format!("unexpected answer from {url}"))?;
    print!("{}", sidelog_shipper::admin::render_status(&s));
    Ok(())
}

/// Where a client on this host reaches a server listening on `addr` (an unspecified address
/// listens on every interface, loopback included).
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, addr.port()))
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}
