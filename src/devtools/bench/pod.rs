//! A Pod's bad moments, measured with the default settings: `outage` (the intake down for a
//! while under a steady stream: load on the failing intake, and how soon sending resumes),
//! `drain` (a backlog at SIGTERM: is everything shipped before exit), and `crash` (kill -9
//! in a fast stream: how much is sent twice).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::bail;

use super::*;
use crate::writer::PacedLines;

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

/// What every run here starts from: a temporary directory with `logs/`, a separate intake, the
/// shipper's config (the defaults) and log file, and a client for the intake's statistics.
struct Rig {
    _tmp: Option<tempfile::TempDir>,
    logs: PathBuf,
    intake: ChildGuard,
    url: String,
    config: PathBuf,
    log: PathBuf,
    client: reqwest::Client,
}

impl Rig {
    fn start() -> anyhow::Result<Rig> {
        let (tmp, dir) = temp_or(&None)?;
        let logs = dir.join("logs");
        fs::create_dir_all(&logs)?;
        let (intake, url) = start_intake(0)?;
        let include = format!("{}/*.log", logs.display());
        let config = write_config(&dir, &include, &url, DatadogConfig::default(), |_| {})?;
        Ok(Rig {
            _tmp: tmp,
            logs,
            intake,
            url,
            config,
            log: dir.join("shipper.log"),
            client: reqwest::Client::new(),
        })
    }

    fn start_shipper(&self) -> anyhow::Result<ChildGuard> {
        start_shipper(&self.config, &self.log)
    }

    /// Waits until all `total` lines written arrived, then stops the shipper and the intake:
    /// the intake's statistics and the shipper's exit status.
    async fn finish(
        mut self,
        mut shipper: ChildGuard,
        total: u64,
    ) -> anyhow::Result<(serde_json::Value, std::process::ExitStatus)> {
        let arrived = wait_arrived(
            &self.client,
            &self.url,
            total,
            &mut shipper,
            &self.log,
            Duration::from_secs(120),
        )
        .await?;
        let status = terminate(&mut shipper)?;
        terminate(&mut self.intake)?;
        Ok((arrived, status))
    }
}

/// Paths `dir/<stem>-<i>.log`.
fn log_paths(dir: &Path, stem: &str, files: usize) -> Vec<PathBuf> {
    (0..files.max(1))
        .map(|i| dir.join(format!("{stem}-{i}.log")))
        .collect()
}

fn num(s: &serde_json::Value, key: &str) -> u64 {
    s[key].as_u64().unwrap_or(0)
}

pub async fn outage(opts: OutageOptions) -> anyhow::Result<()> {
    let rig = Rig::start()?;
    let paths = log_paths(&rig.logs, "outage", opts.files.max(1));
    let (client, url) = (rig.client.clone(), rig.url.clone());
    let mut shipper = rig.start_shipper()?;
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
        &rig.log,
        Duration::from_secs(30),
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
    let (resumed, caught_up) = recovery(&client, &url, &during, writer.written()).await?;
    let total = writer.finish()?;
    let (fin, status) = rig.finish(shipper, total).await?;
    let refused = num(&during, "rejected_requests") - num(&before, "rejected_requests");
    let down = down_at.elapsed().min(healed - down_at);
    println!(
        "  during the outage  {refused} requests in {:.1} s: one every {:.2} s",
        down.as_secs_f64(),
        down.as_secs_f64() / refused.max(1) as f64
    );
    println!(
        "  after the heal     first request accepted after {} ms; the backlog of the outage delivered after {:.1} s",
        resumed.as_millis(),
        caught_up.as_secs_f64()
    );
    println!(
        "  verified           {} of {total} lines arrived, {} duplicates; shipper exit {status}",
        num(&fin, "distinct"),
        num(&fin, "duplicates")
    );
    Ok(())
}

/// From the heal on: how long until the first request was accepted, and until the lines
/// written up to the heal (`backlog_to`) all arrived.
async fn recovery(
    client: &reqwest::Client,
    url: &str,
    at_heal: &serde_json::Value,
    backlog_to: u64,
) -> anyhow::Result<(Duration, Duration)> {
    let healed = Instant::now();
    let mut resumed = None;
    loop {
        let s = stats(client, url).await?;
        if resumed.is_none() && num(&s, "accepted_requests") > num(at_heal, "accepted_requests") {
            resumed = Some(healed.elapsed());
        }
        if num(&s, "distinct") >= backlog_to {
            return Ok((resumed.unwrap_or_default(), healed.elapsed()));
        }
        if healed.elapsed() > Duration::from_secs(600) {
            bail!("the backlog did not arrive within 10 minutes of the heal");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn drain(opts: DrainOptions) -> anyhow::Result<()> {
    let mut rig = Rig::start()?;
    let (client, url) = (rig.client.clone(), rig.url.clone());
    set_faults(&client, &url, r#"{"status":503}"#).await?;
    let text = fs::read_to_string(&rig.config)?;
    fs::write(
        &rig.config,
        format!("shutdown_timeout_ms = {}\n{text}", opts.timeout_ms),
    )?;
    let mut shipper = rig.start_shipper()?;
    let (_, lines, bytes) = generate(
        &rig.logs,
        opts.mb,
        opts.files.max(1),
        opts.line_bytes.max(64),
    )?;
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
    terminate(&mut rig.intake)?;
    println!(
        "  exit {status} {:.2} s after SIGTERM: {} of {lines} lines arrived ({:.1} MB/s while draining), {} duplicates",
        took.as_secs_f64(),
        num(&s, "distinct"),
        bytes as f64 / 1e6 / took.as_secs_f64(),
        num(&s, "duplicates")
    );
    let left = fs::read_to_string(&rig.log)?
        .lines()
        .filter(|l| l.contains("unshipped"))
        .count();
    if left > 0 {
        println!("  the shipper reported bytes left unshipped (see its log)");
    }
    Ok(())
}

pub async fn crash(opts: CrashOptions) -> anyhow::Result<()> {
    let rig = Rig::start()?;
    let paths = log_paths(&rig.logs, "crash", opts.files.max(1));
    let mut shipper = rig.start_shipper()?;
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
    let shipper = rig.start_shipper()?;
    tokio::time::sleep(Duration::from_secs_f64(opts.seconds as f64 / 2.0)).await;
    let total = writer.finish()?;
    let (s, status) = rig.finish(shipper, total).await?;
    let dups = num(&s, "duplicates");
    println!(
        "  killed after {at_kill} lines; {} of {total} lines arrived, {dups} sent twice ({:.3}%); shipper exit {status}",
        num(&s, "distinct"),
        100.0 * dups as f64 / total.max(1) as f64
    );
    Ok(())
}
