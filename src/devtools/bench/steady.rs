//! `sidelog bench idle` and `sidelog bench latency`: the cost of watching quiet files, and
//! write-to-intake latency at a steady rate.

use std::fs::{self, File};
use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::devtools::writer::PacedLines;

#[derive(Debug, Clone, clap::Args)]
pub struct IdleOptions {
    #[arg(long, default_value_t = 20)]
    pub files: usize,
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LatencyOptions {
    #[arg(long, default_value_t = 2000)]
    pub rate: u64,
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    #[arg(long, default_value_t = 4)]
    pub files: usize,
    #[arg(long, default_value_t = 1000)]
    pub timeout_ms: u64,
}

pub async fn idle(opts: IdleOptions) -> anyhow::Result<()> {
    let IdleOptions { files, seconds } = opts;
    let files = files.max(1);
    let (_tmp, dir) = temp_or(&None)?;
    let logs = dir.join("logs");
    fs::create_dir_all(&logs)?;
    let mut rng = fastrand::Rng::with_seed(7);
    let mut buf = Vec::new();
    for f in 0..files {
        buf.clear();
        for seq in 0..10 {
            sample::line(
                &mut buf,
                &mut rng,
                f % 100,
                (f / 100 * 10 + seq) as u64,
                200,
                0,
            );
        }
        fs::write(logs.join(format!("idle-{f:04}.log")), &buf)?;
    }
    let (mut intake, url) = start_intake(0)?;
    let config = write_config(&dir, &format!("{}/*.log", logs.display()), &url, "")?;
    let log = dir.join("shipper.log");
    let client = reqwest::Client::new();
    let mut shipper = start_shipper(&config, &log)?;
    let pid = shipper.0.id();
    let lines = files as u64 * 10;
    wait_arrived(
        &client,
        &url,
        lines,
        &mut shipper,
        &log,
        Duration::from_secs(120),
        None,
    )
    .await?;
    // Let the last batch's checkpoint write happen before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu0 = proc_cpu(pid).unwrap_or(0.0);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let cpu1 = proc_cpu(pid).unwrap_or(0.0);
    let rss = proc_status_kb(pid, "VmRSS").unwrap_or(0);
    let hwm = proc_status_kb(pid, "VmHWM").unwrap_or(0);
    let fds = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    terminate(&mut shipper)?;
    terminate(&mut intake)?;
    println!(
        "sidelog bench idle: {files} files, {seconds} s idle: CPU {:.3} s, RSS {:.1} MB (peak {:.1} MB), {fds} open descriptors",
        cpu1 - cpu0,
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    Ok(())
}

pub async fn latency(opts: LatencyOptions) -> anyhow::Result<()> {
    let LatencyOptions {
        rate,
        seconds,
        files,
        timeout_ms,
    } = opts;
    let (rate, files) = (rate.max(1), files.max(1));
    let (_tmp, dir) = temp_or(&None)?;
    let logs = dir.join("logs");
    fs::create_dir_all(&logs)?;
    let paths: Vec<PathBuf> = (0..files)
        .map(|i| logs.join(format!("lat-{i}.log")))
        .collect();
    for p in &paths {
        File::create(p)?;
    }
    let (mut intake, url) = start_intake(0)?;
    let config = write_config(
        &dir,
        &format!("{}/*.log", logs.display()),
        &url,
        &format!("\n[batch]\ntimeout_ms = {timeout_ms}\n"),
    )?;
    let log = dir.join("shipper.log");
    let client = reqwest::Client::new();
    let mut shipper = start_shipper(&config, &log)?;
    // Let the shipper find the (empty) files, so no line waits for its start.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let writer = PacedLines::start(&paths, rate, Duration::from_millis(10), 256)?;
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let written = writer.finish()?;
    let timeout = Duration::from_secs(60);
    let s = wait_arrived(&client, &url, written, &mut shipper, &log, timeout, None).await?;
    terminate(&mut shipper)?;
    terminate(&mut intake)?;
    println!(
        "sidelog bench latency: {rate} lines/s for {seconds} s over {files} files (appends every 10 ms), batch.timeout_ms = {timeout_ms}: p50 {} ms, p99 {} ms, max {} ms; {:.1} requests/s ({} lines, {} duplicates)",
        s["latency_p50_ms"],
        s["latency_p99_ms"],
        s["latency_max_ms"],
        s["accepted_requests"].as_u64().unwrap_or(0) as f64 / seconds.max(1) as f64,
        s["distinct"],
        s["duplicates"]
    );
    Ok(())
}
