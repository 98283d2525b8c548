//! `sidelog demo`: the built-in intake, a sample log writer and the shipper in one process,
//! on temporary directories, with a live progress line. Needs no Datadog account.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::intake::{Intake, IntakeOptions};
use super::writer::PacedLines;
use sidelog_shipper::config::{Config, Input};
use sidelog_shipper::metrics::Metrics;
use sidelog_shipper::pipeline::{Pipeline, StopMode};

/// `sidelog demo`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoOptions {
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Lines written per second, over all files.
    #[arg(long, default_value_t = 20_000)]
    pub rate: u64,
    /// Number of log files written.
    #[arg(long, default_value_t = 2)]
    pub files: usize,
}

/// The demo's configuration: the shipper as a user runs it, on temporary directories,
/// shipping to the built-in intake.
fn demo_config(dir: &Path, intake: &Intake) -> anyhow::Result<Config> {
    let key_file = dir.join("api-key");
    std::fs::write(&key_file, "demo-api-key\n")?;
    let mut config = Config {
        data_dir: dir.join("data"),
        ..Config::default()
    };
    config.inputs.push(Input {
        include: vec![format!("{}/*.log", dir.join("logs").display())],
        service: "demo-app".into(),
        source: "demo".into(),
        tags: vec!["team:demo".into()],
        ..Input::default()
    });
    config.datadog.endpoint = Some(intake.endpoint().parse()?);
    config.datadog.api_key_file = Some(key_file);
    config.datadog.tags = vec!["env:demo".into()];
    // The writer has stopped when the drain begins: no need to wait for late lines.
    config.shutdown_quiet_ms = 200;
    config.validate()?;
    Ok(config)
}

pub async fn run(opts: DemoOptions, shutdown: CancellationToken) -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new().prefix("sidelog-demo-").tempdir()?;
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let intake = Intake::start(IntakeOptions {
        api_key_file: Some(tmp.path().join("api-key")),
        ..IntakeOptions::default()
    })
    .await
    .context("cannot start the built-in intake")?;
    let config = demo_config(tmp.path(), &intake)?;
    println!("sidelog demo");
    println!(
        "  log files:  {}/app-*.log ({} files, {} lines/s)",
        logs.display(),
        opts.files,
        opts.rate
    );
    println!(
        "  intake:     {} (built in, Datadog-compatible)",
        intake.endpoint()
    );
    let until = opts.seconds.map(|s| format!(" or after {s} s"));
    println!("  stop with Ctrl-C{}", until.unwrap_or_default());
    let metrics = Arc::new(Metrics::default());
    let mut shipper = Pipeline::start(config, metrics.clone(), None);
    let paths: Vec<PathBuf> = (0..opts.files.max(1))
        .map(|i| logs.join(format!("app-{i}.log")))
        .collect();
    let writer = PacedLines::start(&paths, opts.rate, Duration::from_millis(10), 256)?;
    show_progress(&opts, &intake, &metrics, &writer, &shipper, shutdown).await;
    let bytes = writer.written_bytes();
    let total = writer.finish()?;
    // As at a Pod's end: every file is read to its end and shipped before the shipper exits.
    shipper.stop(StopMode::Drain);
    shipper.wait().await?;
    let shipped = intake.event_count();
    let all = if shipped == total {
        " - every line arrived"
    } else {
        ""
    };
    println!(
        "done: {total} lines written ({:.1} MB), {shipped} events accepted by the intake{all}",
        bytes as f64 / 1e6
    );
    if shipped < total {
        anyhow::bail!("{} lines did not arrive", total - shipped);
    }
    Ok(())
}

/// A line a second: written, shipped, rate and lag, until the time is up or Ctrl-C.
async fn show_progress(
    opts: &DemoOptions,
    intake: &Intake,
    metrics: &Metrics,
    writer: &PacedLines,
    shipper: &Pipeline,
    shutdown: CancellationToken,
) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = (0u64, 0u64);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let shipped = intake.event_count();
        let bytes = metrics.line_bytes_sent.get();
        let written = writer.written();
        println!(
            "{:>4}s  written {:>9} lines  shipped {:>9} lines  {:>7} lines/s  {:>6.2} MB/s  lag {:>6} lines",
            started.elapsed().as_secs(),
            written,
            shipped,
            shipped - last.0,
            (bytes - last.1) as f64 / 1e6,
            written.saturating_sub(shipped),
        );
        last = (shipped, bytes);
        let time_up = opts
            .seconds
            .is_some_and(|s| started.elapsed() >= Duration::from_secs(s));
        if time_up || shipper.is_finished() {
            return;
        }
    }
}
