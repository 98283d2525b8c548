//! The `sidelog` command: argument parsing, logging setup, signals. The work is in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use sidelog::config::{Config, LogFormat};
use sidelog::metrics::Metrics;
use sidelog::pipeline::{Pipeline, StopMode};

#[derive(Parser)]
#[command(
    name = "sidelog",
    version,
    about = "Tails log files and ships them to Datadog, at least once, in a few megabytes",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// Config file (TOML or YAML); runs the shipper.
    #[arg(short, long, env = "SIDELOG_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the shipper (the same as `sidelog --config FILE`).
    Run {
        #[arg(short, long, env = "SIDELOG_CONFIG")]
        config: PathBuf,
    },
    /// Validate a config and print the effective configuration (API key redacted).
    Check {
        #[arg(short, long, env = "SIDELOG_CONFIG")]
        config: PathBuf,
    },
    /// Run a local Datadog-compatible logs intake.
    Intake {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Require this API key (the file is re-read for every request).
        #[arg(long)]
        api_key_file: Option<PathBuf>,
        /// Append every accepted event to this file, one JSON object per line.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Benchmark sink: check benchmark lines for loss, duplicates and latency (see
        /// `GET /stats`) without parsing the JSON; events are not written to --out.
        #[arg(long)]
        verify: bool,
        /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key for --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        #[command(flatten)]
        faults: FaultArgs,
    },
    /// Measure throughput, idle cost or latency of the real binary (see README).
    Bench {
        #[command(subcommand)]
        mode: BenchMode,
    },
    /// Print the files, positions and delivery state of a running sidelog (from its
    /// `metrics_listen` endpoint).
    Status {
        /// Base URL of the admin endpoint (default: from --config's metrics_listen, else
        /// http://127.0.0.1:9500).
        #[arg(long)]
        url: Option<String>,
        /// Config of the running instance, to find its metrics_listen.
        #[arg(short, long, env = "SIDELOG_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Write sample log lines (access-log and JSON) to a file, like an application would.
    Generate {
        /// File to append to (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Lines per second (0: as fast as possible).
        #[arg(long, default_value_t = 100)]
        rate: u64,
        /// Stop after this many lines (default: no limit).
        #[arg(long)]
        lines: Option<u64>,
        /// Stop after this many seconds (default: no limit).
        #[arg(long)]
        seconds: Option<u64>,
        /// Approximate bytes per line, newline included.
        #[arg(long, default_value_t = 256)]
        line_bytes: usize,
        /// Number the lines from here (to continue an earlier run).
        #[arg(long, default_value_t = 0)]
        first: u64,
    },
    /// Run intake, a sample log writer and the shipper together, printing live progress.
    Demo {
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        seconds: Option<u64>,
        /// Lines written per second.
        #[arg(long, default_value_t = 20_000)]
        rate: u64,
        /// Number of log files written.
        #[arg(long, default_value_t = 2)]
        files: usize,
    },
}

/// Faults the built-in intake injects, to see how a shipper copes.
#[derive(clap::Args)]
struct FaultArgs {
    /// Answer every request with this status (e.g. 503).
    #[arg(long, value_name = "STATUS")]
    fail_status: Option<u16>,
    /// Send `Retry-After: SECONDS` with 429 and 503 answers.
    #[arg(long, value_name = "SECONDS")]
    retry_after: Option<u64>,
    /// Answer this fraction of requests (0 to 1) with 500.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Drop this fraction of connections (0 to 1) without an answer.
    #[arg(long, default_value_t = 0.0)]
    reset_rate: f64,
    /// Wait this long before every answer.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    latency_ms: u64,
    /// Answer 400 to a batch holding an event that contains this text.
    #[arg(long, value_name = "TEXT")]
    poison: Option<String>,
    /// Answer 413 to bodies above this many uncompressed bytes.
    #[arg(long, value_name = "BYTES")]
    max_body_bytes: Option<usize>,
}

impl FaultArgs {
    fn into_faults(self) -> sidelog::intake::Faults {
        sidelog::intake::Faults {
            status: self.fail_status,
            retry_after_secs: self.retry_after,
            error_rate: self.error_rate.clamp(0.0, 1.0),
            reset_rate: self.reset_rate.clamp(0.0, 1.0),
            latency: std::time::Duration::from_millis(self.latency_ms),
            poison: self.poison,
            max_body_bytes: self.max_body_bytes,
        }
    }
}

#[derive(Subcommand)]
enum BenchMode {
    /// Ship generated files to a separate intake; compare with the encode+compress ceiling.
    Throughput {
        /// Megabytes of log lines to generate.
        #[arg(long, default_value_t = 1024)]
        mb: u64,
        #[arg(long, default_value_t = 4)]
        files: usize,
        /// Approximate bytes per line, newline included.
        #[arg(long, default_value_t = 256)]
        line_bytes: usize,
        #[arg(long, default_value = "gzip")]
        compression: String,
        #[arg(long, default_value_t = 6)]
        level: i32,
        /// Requests in flight: a number or "adaptive" (the shipper's default).
        #[arg(long, default_value = "adaptive")]
        request_concurrency: String,
        /// Delay the intake adds to every answer (a distant intake).
        #[arg(long, default_value_t = 0)]
        intake_latency_ms: u64,
        /// Ship with one mask_sequences rule (card numbers) to measure a rule's cost.
        #[arg(long)]
        mask: bool,
        #[arg(long, default_value_t = 4_500_000)]
        max_bytes: usize,
        /// Threads for the ceiling (default: number of cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Directory for the generated files (default: a temporary one).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// CPU and memory of a shipper watching files that do not change.
    Idle {
        #[arg(long, default_value_t = 20)]
        files: usize,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
    /// The intake down for a while under a steady stream: requests during the outage, and
    /// how soon sending resumes after it (default retry settings).
    Outage {
        #[arg(long, default_value_t = 10_000)]
        rate: u64,
        #[arg(long, default_value_t = 4)]
        files: usize,
        /// Length of the outage.
        #[arg(long, default_value_t = 20)]
        down_secs: u64,
        /// Answer 429 with this Retry-After instead of 503.
        #[arg(long)]
        retry_after: Option<u64>,
    },
    /// A backlog written while the intake refuses; the intake heals as SIGTERM arrives: is
    /// everything shipped before the exit, and how long does it take.
    Drain {
        #[arg(long, default_value_t = 100)]
        mb: u64,
        #[arg(long, default_value_t = 4)]
        files: usize,
        #[arg(long, default_value_t = 256)]
        line_bytes: usize,
        /// shutdown_timeout_ms of the shipper.
        #[arg(long, default_value_t = 20_000)]
        timeout_ms: u64,
    },
    /// kill -9 halfway through a fast stream, then a restart: how much is sent twice.
    Crash {
        #[arg(long, default_value_t = 20_000)]
        rate: u64,
        #[arg(long, default_value_t = 4)]
        files: usize,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
    /// Write-to-intake latency at a steady rate.
    Latency {
        #[arg(long, default_value_t = 2000)]
        rate: u64,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        #[arg(long, default_value_t = 4)]
        files: usize,
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match (cli.command, cli.config) {
        (Some(c), _) => c,
        (None, Some(config)) => Command::Run { config },
        (None, None) => {
            eprintln!("sidelog: no config given; use --config FILE (or see `sidelog --help`)");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Run { config } => run(config),
        Command::Check { config } => check(config),
        Command::Intake {
            listen,
            api_key_file,
            out,
            verify,
            tls_cert,
            tls_key,
            faults,
        } => {
            init_logging("info", LogFormat::Text);
            let opts = sidelog::intake::IntakeOptions {
                listen: Some(listen),
                api_key_file,
                out,
                keep_events: false,
                verify,
                faults: faults.into_faults(),
                tls: tls_cert
                    .zip(tls_key)
                    .map(|(cert, key)| sidelog::intake::TlsFiles { cert, key }),
            };
            block_on(|stop| sidelog::intake::run_cli(opts, stop))
        }
        Command::Bench { mode } => {
            init_logging("warn", LogFormat::Text);
            bench(mode)
        }
        Command::Status { url, config } => {
            init_logging("warn", LogFormat::Text);
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
            block_on(|_| status(url))
        }
        Command::Generate {
            out,
            rate,
            lines,
            seconds,
            line_bytes,
            first,
        } => {
            init_logging("warn", LogFormat::Text);
            let opts = sidelog::bench::GenerateOptions {
                out,
                rate,
                lines,
                seconds,
                line_bytes: line_bytes.max(64),
                first,
            };
            block_on(|stop| async move {
                tokio::task::spawn_blocking(move || sidelog::bench::generate_lines(opts, stop))
                    .await?
            })
        }
        Command::Demo {
            seconds,
            rate,
            files,
        } => {
            init_logging("warn", LogFormat::Text);
            let opts = sidelog::demo::DemoOptions {
                seconds,
                rate,
                files,
            };
            block_on(|stop| sidelog::demo::run(opts, stop))
        }
    }
}

fn bench(mode: BenchMode) -> ExitCode {
    use sidelog::bench;
    match mode {
        BenchMode::Throughput {
            mb,
            files,
            line_bytes,
            compression,
            level,
            request_concurrency,
            intake_latency_ms,
            mask,
            max_bytes,
            threads,
            dir,
        } => {
            let compression = match compression.as_str() {
                "gzip" => sidelog::config::Compression::Gzip,
                "deflate" => sidelog::config::Compression::Deflate,
                "zstd" => sidelog::config::Compression::Zstd,
                "none" => sidelog::config::Compression::None,
                other => {
                    eprintln!("sidelog: --compression {other:?}: use gzip, deflate, zstd or none");
                    return ExitCode::from(2);
                }
            };
            let request_concurrency = match request_concurrency.trim() {
                "adaptive" => sidelog::config::RequestConcurrency::Adaptive,
                n => match n.parse::<usize>() {
                    Ok(n) if (1..=64).contains(&n) => sidelog::config::RequestConcurrency::Fixed(n),
                    _ => {
                        eprintln!("sidelog: --request-concurrency {n:?}: use 1 to 64 or adaptive");
                        return ExitCode::from(2);
                    }
                },
            };
            let opts = bench::ThroughputOptions {
                mb,
                files: files.max(1),
                line_bytes: line_bytes.max(64),
                compression,
                level,
                request_concurrency,
                intake_latency_ms,
                mask,
                max_bytes,
                threads,
                dir,
            };
            block_on(|stop| bench::throughput(opts, stop))
        }
        BenchMode::Idle { files, seconds } => block_on(|_| bench::idle(files.max(1), seconds)),
        BenchMode::Outage {
            rate,
            files,
            down_secs,
            retry_after,
        } => block_on(|_| {
            bench::outage(bench::OutageOptions {
                rate,
                files: files.max(1),
                down_secs,
                retry_after,
            })
        }),
        BenchMode::Drain {
            mb,
            files,
            line_bytes,
            timeout_ms,
        } => block_on(|_| {
            bench::drain(bench::DrainOptions {
                mb,
                files: files.max(1),
                line_bytes: line_bytes.max(64),
                timeout_ms,
            })
        }),
        BenchMode::Crash {
            rate,
            files,
            seconds,
        } => block_on(|_| {
            bench::crash(bench::CrashOptions {
                rate,
                files: files.max(1),
                seconds,
            })
        }),
        BenchMode::Latency {
            rate,
            seconds,
            files,
            timeout_ms,
        } => block_on(|_| bench::latency(rate.max(1), seconds, files.max(1), timeout_ms)),
    }
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

async fn status(url: String) -> anyhow::Result<()> {
    use anyhow::Context;
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
    let s: sidelog::admin::Status =
        serde_json::from_slice(&body).with_context(|| format!("unexpected answer from {url}"))?;
    print!("{}", sidelog::admin::render_status(&s));
    Ok(())
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("sidelog: {e}");
        ExitCode::from(2)
    })
}

fn run(path: PathBuf) -> ExitCode {
    let config = match load(&path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let log_level = init_logging(config.log_level.as_str(), config.log_format);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), config = %path.display(), "sidelog starting");
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sidelog: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(ship(path, config, log_level)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("sidelog: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the shipper until SIGTERM or SIGINT. SIGHUP re-reads the config file (and with it
/// the key): a valid one replaces the running shipper after an orderly stop (positions are
/// kept through the checkpoints); an invalid one is refused and the running one kept.
async fn ship(path: PathBuf, mut config: Config, log_level: LogLevel) -> anyhow::Result<()> {
    use anyhow::Context;
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let metrics = Arc::new(Metrics::default());
    let admin = sidelog::admin::AdminState::new(metrics.clone());
    let admin_stop = CancellationToken::new();
    let _admin_stop = admin_stop.clone().drop_guard();
    if let Some(addr) = config.metrics_listen {
        let bound = sidelog::admin::serve(addr, admin.clone(), admin_stop)
            .await
            .with_context(|| format!("cannot listen on metrics_listen {addr}"))?;
        tracing::info!(addr = %bound, "serving /metrics, /healthz, /readyz and /status");
    }
    let stop_mode = |config: &Config| {
        if config.shutdown_drain {
            StopMode::Drain
        } else {
            StopMode::Immediate
        }
    };
    loop {
        let mut shipper = Pipeline::start(config.clone(), metrics.clone(), Some(admin.clone()));
        let next = loop {
            tokio::select! {
                ended = shipper.wait() => return ended,
                _ = term.recv() => break None,
                _ = int.recv() => break None,
                _ = hup.recv() => match Config::load(&path) {
                    Ok(new) => break Some(new),
                    Err(e) => tracing::error!("configuration reload refused; the running configuration stays: {e}"),
                },
            }
        };
        match &next {
            None => {
                let mode = stop_mode(&config);
                match mode {
                    StopMode::Drain => tracing::info!(
                        deadline_ms = config.shutdown_timeout_ms,
                        "signal received; shipping everything left before exiting (a second signal stops at once)"
                    ),
                    StopMode::Immediate => tracing::info!("signal received; stopping"),
                }
                shipper.stop(mode);
            }
            Some(_) => {
                tracing::info!(config = %path.display(), "SIGHUP: reloading configuration and API key");
                shipper.stop(StopMode::Immediate);
            }
        }
        // A second SIGTERM or SIGINT ends the drain at once; checkpoints are still written.
        loop {
            tokio::select! {
                ended = shipper.wait() => {
                    ended?;
                    break;
                }
                _ = term.recv() => shipper.abandon(),
                _ = int.recv() => shipper.abandon(),
            }
        }
        let Some(new) = next else {
            return Ok(());
        };
        if new.metrics_listen != config.metrics_listen {
            tracing::warn!("a change of metrics_listen takes effect at the next start");
        }
        if new.log_format != config.log_format {
            tracing::warn!("a change of log_format takes effect at the next start");
        }
        log_level.set(new.log_level);
        config = new;
    }
}

fn check(path: PathBuf) -> ExitCode {
    let config = match load(&path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let key = match sidelog::secret::KeySource::load(config.datadog.api_key_file.as_deref()) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("sidelog: datadog.api_key_file: {e}");
            return ExitCode::from(2);
        }
    };
    println!("# effective configuration of {}", path.display());
    println!(
        "# API key: loaded from {} ({} bytes, redacted)",
        key.origin(),
        key.current().len()
    );
    println!("# intake URL: {}", config.datadog.logs_url());
    print!("{}", config.to_toml());
    ExitCode::SUCCESS
}

/// Changes sidelog's own log level after a reload (unless `RUST_LOG` rules).
struct LogLevel(
    Option<tracing_subscriber::reload::Handle<EnvFilter, tracing_subscriber::Registry>>,
);

impl LogLevel {
    fn set(&self, level: sidelog::config::LogLevel) {
        if let Some(handle) = &self.0
            && std::env::var_os("RUST_LOG").is_none()
            && let Err(e) =
                handle.reload(EnvFilter::new(format!("warn,sidelog={}", level.as_str())))
        {
            tracing::warn!(error = %e, "cannot change the log level");
        }
    }
}

fn init_logging(level: &str, format: LogFormat) -> LogLevel {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,sidelog={level}")));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    LogLevel(result.ok().map(|()| handle))
}

/// Two async workers at most: the work that needs cores (reading, compressing) has threads of
/// its own, and a sidecar on a 64-core node should not start 64 workers.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(sidelog::config::usable_cores().min(2))
        .enable_all()
        .thread_name("sidelog-rt")
        .build()
}

/// Runs `f` on a Tokio runtime with a token cancelled by SIGTERM or SIGINT.
fn block_on<F, Fut>(f: F) -> ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sidelog: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let stop = CancellationToken::new();
        let signals = stop.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received; stopping");
            signals.cancel();
        });
        f(stop).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("sidelog: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers we can still be killed; never return early.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
