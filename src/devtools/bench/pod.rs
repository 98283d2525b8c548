//! A Pod's bad moments, measured with the default settings: `outage` (the intake down for a
//! while under a steady stream: load on the failing intake, and how soon sending resumes),
//! `drain` (a backlog at SIGTERM: is everything shipped before exit), and `crash` (kill -9
//! in a fast stream: how much is sent twice).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::*;

#[derive(Debug, Clone, clap::Args)]
pub struct OutageOptions {
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
    #[arg(long, default_value_t = 4)]
    pub files: usize,
    /// Length of the outage.
    #[arg(long, default_value_t = 20)]
    pub down_secs: u64,
    /// Answer 429 with this Retry-After instead of 503.
    #[arg(long)]
    pub retry_after: Option<u64>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DrainOptions {
    #[arg(long, default_value_t = 100)]
    pub mb: u64,
    #[arg(long, default_value_t = 4)]
    pub files: usize,
    #[arg(long, default_value_t = 256)]
    pub line_bytes: usize,
    /// shutdown_timeout_ms of the shipper.
    #[arg(long, default_value_t = 20_000)]
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CrashOptions {
    #[arg(long, default_value_t = 20_000)]
    pub rate: u64,
    #[arg(long, default_value_t = 4)]
    pub files: usize,
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
}

/// Writes benchmark lines like an app: `rate` lines/s over some files, one append per file
/// every `interval`, on a thread of its own.
pub(super) struct PacedLines {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    handle: std::thread::JoinHandle<std::io::Result<()>>,
}

impl PacedLines {
    pub(super) fn start(
        paths: &[PathBuf],
        rate: u64,
        interval: Duration,
        line_bytes: usize,
    ) -> anyhow::Result<PacedLines> {
        let mut files = Vec::new();
        for p in paths {
            files.push(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("cannot open {}", p.display()))?,
            );
        }
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let (s, w) = (stop.clone(), written.clone());
        let handle =
            std::thread::spawn(move || write_paced(files, rate, interval, line_bytes, &s, &w));
        Ok(PacedLines {
            stop,
            written,
            handle,
        })
    }

    pub(super) fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Stops writing; returns how many lines were written.
    pub(super) fn finish(self) -> anyhow::Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.join() {
            Ok(r) => r.context("writer failed")?,
            Err(_) => bail!("writer panicked"),
        }
        Ok(self.written.load(Ordering::Relaxed))
    }
}

fn write_paced(
    mut files: Vec<fs::File>,
    rate: u64,
    interval: Duration,
    line_bytes: usize,
    stop: &AtomicBool,
    written: &AtomicU64,
) -> std::io::Result<()> {
    let n = files.len().max(1);
    let mut rng = fastrand::Rng::with_seed(11);
    let mut seqs = vec![0u64; n];
    let mut buf = Vec::new();
    let start = Instant::now();
    let mut total = 0u64;
    let mut tick = 0u32;
    while !stop.load(Ordering::Relaxed) {
        tick += 1;
        let due_at = start + interval * tick;
        let due = (rate as f64 * (due_at - start).as_secs_f64()) as u64;
        if let Some(wait) = due_at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let now_us = crate::clock::now_us();
        // This tick's lines, one append per file.
        let lines = due.saturating_sub(total);
        for (f, file) in files.iter_mut().enumerate() {
            buf.clear();
            let share = lines / n as u64 + u64::from((f as u64) < lines % n as u64);
            for _ in 0..share {
                sample::line(&mut buf, &mut rng, f, seqs[f], line_bytes, now_us);
                seqs[f] += 1;
            }
            if !buf.is_empty() {
                file.write_all(&buf)?;
            }
        }
        total += lines;
        written.store(total, Ordering::Relaxed);
    }
    Ok(())
}

/// Paths `dir/<stem>-<i>.log`.
fn log_paths(dir: &Path, stem: &str, files: usize) -> Vec<PathBuf> {
    (0..files.max(1))
        .map(|i| dir.join(format!("{stem}-{i}.log")))
        .collect()
}

/// Sets the faults of an intake started by [`start_intake`] (`{}` heals it).
async fn set_faults(client: &reqwest::Client, url: &str, body: &str) -> anyhow::Result<()> {
    client
        .put(format!("{url}/faults"))
        .body(body.to_string())
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

fn num(s: &serde_json::Value, key: &str) -> u64 {
    s[key].as_u64().unwrap_or(0)
}

pub async fn outage(opts: OutageOptions) -> anyhow::Result<()> {
    let (_tmp, dir) = temp_or(&None)?;
    let logs = dir.join("logs");
    fs::create_dir_all(&logs)?;
    let paths = log_paths(&logs, "outage", opts.files.max(1));
    let (mut intake, url) = start_intake(0)?;
    let config = write_config(&dir, &format!("{}/*.log", logs.display()), &url, "")?;
    let log = dir.join("shipper.log");
    let client = reqwest::Client::new();
    let mut shipper = start_shipper(&config, &log)?;
    let writer = PacedLines::start(&paths, opts.rate, Duration::from_millis(10), 256)?;
    let kind = match opts.retry_after {
        Some(s) => format!("429 with Retry-After {s}"),
        None => "503".into(),
    };
    println!(
        "sidelog bench outage: {} lines/s over {} files, the intake answering {kind} for {} s, default retry settings",
        opts.rate, opts.files, opts.down_secs
    );
    wait_arrived(
        &client,
        &url,
        1,
        &mut shipper,
        &log,
        Duration::from_secs(30),
        None,
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let fault = match opts.retry_after {
        Some(s) => format!(r#"{{"status":429,"retry_after_secs":{s}}}"#),
        None => r#"{"status":503}"#.into(),
    };
    let before = stats(&client, &url).await?;
    set_faults(&client, &url, &fault).await?;
    let down_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(opts.down_secs)).await;
    let during = stats(&client, &url).await?;
    set_faults(&client, &url, "{}").await?;
    let healed = Instant::now();
    let backlog_to = writer.written();
    let mut resumed = None;
    let caught_up = loop {
        let s = stats(&client, &url).await?;
        if resumed.is_none() && num(&s, "accepted_requests") > num(&during, "accepted_requests") {
            resumed = Some(healed.elapsed());
        }
        if num(&s, "distinct") >= backlog_to {
            break healed.elapsed();
        }
        if healed.elapsed() > Duration::from_secs(600) {
            bail!("the backlog did not arrive within 10 minutes of the heal");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let total = writer.finish()?;
    let fin = wait_arrived(
        &client,
        &url,
        total,
        &mut shipper,
        &log,
        Duration::from_secs(120),
        None,
    )
    .await?;
    let status = terminate(&mut shipper)?;
    terminate(&mut intake)?;
    let refused = num(&during, "rejected_requests") - num(&before, "rejected_requests");
    let down = down_at.elapsed().min(healed - down_at);
    println!(
        "  during the outage  {refused} requests in {:.1} s: one every {:.2} s",
        down.as_secs_f64(),
        down.as_secs_f64() / refused.max(1) as f64
    );
    println!(
        "  after the heal     first request accepted after {} ms; the backlog of the outage delivered after {:.1} s",
        resumed.map_or(0, |d| d.as_millis()),
        caught_up.as_secs_f64()
    );
    println!(
        "  verified           {} of {total} lines arrived, {} duplicates; shipper exit {status}",
        num(&fin, "distinct"),
        num(&fin, "duplicates")
    );
    Ok(())
}

pub async fn drain(opts: DrainOptions) -> anyhow::Result<()> {
    let (_tmp, dir) = temp_or(&None)?;
    let logs = dir.join("logs");
    fs::create_dir_all(&logs)?;
    let (mut intake, url) = start_intake(0)?;
    let client = reqwest::Client::new();
    set_faults(&client, &url, r#"{"status":503}"#).await?;
    let config = write_config(&dir, &format!("{}/*.log", logs.display()), &url, "")?;
    let text = fs::read_to_string(&config)?;
    fs::write(
        &config,
        format!("shutdown_timeout_ms = {}\n{text}", opts.timeout_ms),
    )?;
    let log = dir.join("shipper.log");
    let mut shipper = start_shipper(&config, &log)?;
    let (_, lines, bytes) = generate(&logs, opts.mb, opts.files.max(1), opts.line_bytes.max(64))?;
    println!(
        "sidelog bench drain: {:.1} MB ({lines} lines) in {} files written while the intake answers 503; then it heals as SIGTERM arrives (shutdown_timeout_ms {})",
        bytes as f64 / 1e6,
        opts.files,
        opts.timeout_ms
    );
    // Let the shipper find the files and meet the outage.
    tokio::time::sleep(Duration::from_secs(2)).await;
    set_faults(&client, &url, "{}").await?;
    let asked = Instant::now();
    let status = terminate(&mut shipper)?;
    let took = asked.elapsed();
    let s = stats(&client, &url).await?;
    terminate(&mut intake)?;
    println!(
        "  exit {status} {:.2} s after SIGTERM: {} of {lines} lines arrived ({:.1} MB/s while draining), {} duplicates",
        took.as_secs_f64(),
        num(&s, "distinct"),
        bytes as f64 / 1e6 / took.as_secs_f64(),
        num(&s, "duplicates")
    );
    let left = fs::read_to_string(&log)?
        .lines()
        .filter(|l| l.contains("unshipped"))
        .count();
    if left > 0 {
        println!("  the shipper reported bytes left unshipped (see its log)");
    }
    Ok(())
}

pub async fn crash(opts: CrashOptions) -> anyhow::Result<()> {
    let (_tmp, dir) = temp_or(&None)?;
    let logs = dir.join("logs");
    fs::create_dir_all(&logs)?;
    let paths = log_paths(&logs, "crash", opts.files.max(1));
    let (mut intake, url) = start_intake(0)?;
    let config = write_config(&dir, &format!("{}/*.log", logs.display()), &url, "")?;
    let log = dir.join("shipper.log");
    let client = reqwest::Client::new();
    let mut shipper = start_shipper(&config, &log)?;
    println!(
        "sidelog bench crash: {} lines/s over {} files for {} s, kill -9 halfway, then a restart",
        opts.rate, opts.files, opts.seconds
    );
    let writer = PacedLines::start(&paths, opts.rate, Duration::from_millis(10), 256)?;
    tokio::time::sleep(Duration::from_secs_f64(opts.seconds as f64 / 2.0)).await;
    shipper.0.kill()?;
    shipper.0.wait()?;
    let at_kill = writer.written();
    drop(shipper);
    let mut shipper = start_shipper(&config, &log)?;
    tokio::time::sleep(Duration::from_secs_f64(opts.seconds as f64 / 2.0)).await;
    let total = writer.finish()?;
    let s = wait_arrived(
        &client,
        &url,
        total,
        &mut shipper,
        &log,
        Duration::from_secs(120),
        None,
    )
    .await?;
    let status = terminate(&mut shipper)?;
    terminate(&mut intake)?;
    let dups = num(&s, "duplicates");
    println!(
        "  killed after {at_kill} lines; {} of {total} lines arrived, {dups} sent twice ({:.3}%); shipper exit {status}",
        num(&s, "distinct"),
        100.0 * dups as f64 / total.max(1) as f64
    );
    Ok(())
}
