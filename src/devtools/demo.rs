//! `sidelog demo`: the built-in intake, a sample log writer and the shipper in one process,
//! on temporary directories, with a live progress line. Needs no Datadog account.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::intake::{Intake, IntakeOptions};
use crate::config::{Config, Input};
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, StopMode};

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

fn write_lines(
    dir: &Path,
    opts_rate: u64,
    files: usize,
    stop: &AtomicBool,
    written: &AtomicU64,
    written_bytes: &AtomicU64,
) -> std::io::Result<()> {
    let mut handles = Vec::new();
    for i in 0..files {
        handles.push(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(format!("app-{i}.log")))?,
        );
    }
    let start = Instant::now();
    let mut seq = 0u64;
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut rng = fastrand::Rng::with_seed(7);
    while !stop.load(Ordering::Relaxed) {
        let due = (start.elapsed().as_secs_f64() * opts_rate as f64) as u64;
        if seq >= due {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        for (i, f) in handles.iter_mut().enumerate() {
            buf.clear();
            let mut n = 0;
            let mut s = seq + i as u64;
            while s < due && n < 10_000 {
                crate::sample::line(&mut buf, &mut rng, i, s / files as u64, 256, 0);
                s += files as u64;
                n += 1;
            }
            f.write_all(&buf)?;
            written.fetch_add(n, Ordering::Relaxed);
            written_bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        }
        seq = due.div_ceil(files as u64) * files as u64;
    }
    Ok(())
}

pub async fn run(opts: DemoOptions, shutdown: CancellationToken) -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new().prefix("sidelog-demo-").tempdir()?;
    let logs = tmp.path().join("logs");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&logs)?;
    let key_file = tmp.path().join("api-key");
    std::fs::write(&key_file, "demo-api-key\n")?;
    let intake = Intake::start(IntakeOptions {
        api_key_file: Some(key_file.clone()),
        ..IntakeOptions::default()
    })
    .await
    .context("cannot start the built-in intake")?;

    let mut config = Config {
        data_dir: data,
        ..Config::default()
    };
    config.inputs.push(Input {
        include: vec![format!("{}/*.log", logs.display())],
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
    println!(
        "  stop with Ctrl-C{}",
        opts.seconds
            .map(|s| format!(" or after {s} s"))
            .unwrap_or_default()
    );

    let metrics = Arc::new(Metrics::default());
    let mut shipper = Pipeline::start(config, metrics.clone(), None);

    let stop_writer = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let written_bytes = Arc::new(AtomicU64::new(0));
    let writer = {
        let (logs, stop, w, wb) = (
            logs.clone(),
            stop_writer.clone(),
            written.clone(),
            written_bytes.clone(),
        );
        let (rate, files) = (opts.rate, opts.files.max(1));
        std::thread::spawn(move || write_lines(&logs, rate, files, &stop, &w, &wb))
    };

    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = (0u64, 0u64);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => break,
        }
        let shipped = intake.event_count();
        let bytes = metrics.line_bytes_sent.get();
        let w = written.load(Ordering::Relaxed);
        println!(
            "{:>4}s  written {:>9} lines  shipped {:>9} lines  {:>7} lines/s  {:>6.2} MB/s  lag {:>6} lines",
            started.elapsed().as_secs(),
            w,
            shipped,
            shipped - last.0,
            (bytes - last.1) as f64 / 1e6,
            w.saturating_sub(shipped),
        );
        last = (shipped, bytes);
        if opts
            .seconds
            .is_some_and(|s| started.elapsed() >= Duration::from_secs(s))
        {
            break;
        }
        if shipper.is_finished() {
            break;
        }
    }
    stop_writer.store(true, Ordering::Relaxed);
    match writer.join() {
        Ok(r) => r.context("demo writer failed")?,
        Err(_) => anyhow::bail!("demo writer panicked"),
    }
    let total = written.load(Ordering::Relaxed);
    // As at a Pod's end: every file is read to its end and shipped before the shipper exits.
    shipper.stop(StopMode::Drain);
    shipper.wait().await?;
    let shipped = intake.event_count();
    println!(
        "done: {total} lines written ({:.1} MB), {shipped} events accepted by the intake{}",
        written_bytes.load(Ordering::Relaxed) as f64 / 1e6,
        if shipped == total {
            " - every line arrived"
        } else {
            ""
        }
    );
    if shipped < total {
        anyhow::bail!("{} lines did not arrive", total - shipped);
    }
    Ok(())
}
