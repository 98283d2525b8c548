//! `sidelog bench fleet`: the cost of many quiet Pods at once. N shippers, each following its
//! own Pod's file (its own directory, checkpoints and key), against one intake, with one app
//! writer writing each line on its own as it is due, the files in turn. It reports per Pod
//! what users multiply by their Pod count: CPU, resident and anonymous memory, requests.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::*;
use crate::writer::PacedLines;

#[derive(Debug, Clone, clap::Args)]
pub struct FleetOptions {
    /// Pods (shippers) at once.
    #[arg(long, default_value_t = 40)]
    pub pods: usize,
    /// Lines per second each Pod's app writes.
    #[arg(long, default_value_t = 50)]
    pub rate: u64,
    /// How long to measure, after a warm-up of 5 s.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
}

/// One Pod's shipper and where it keeps its things.
struct Pod {
    shipper: ChildGuard,
    log: PathBuf,
}

pub async fn fleet(opts: FleetOptions) -> anyhow::Result<()> {
    let pods = opts.pods.max(1);
    let (_tmp, dir) = temp_or(&None)?;
    let (mut intake, url) = start_intake(0)?;
    let client = reqwest::Client::new();
    let mut fleet = Vec::with_capacity(pods);
    let mut files = Vec::with_capacity(pods);
    for i in 0..pods {
        let pod_dir = dir.join(format!("pod-{i:03}"));
        let logs = pod_dir.join("logs");
        fs::create_dir_all(&logs)?;
        let config = write_config(&pod_dir, &format!("{}/*.log", logs.display()), &url, "")?;
        let log = pod_dir.join("shipper.log");
        fleet.push(Pod {
            shipper: start_shipper(&config, &log)?,
            log,
        });
        files.push(logs.join("app.log"));
    }
    let writer = PacedLines::start(&files, opts.rate * pods as u64, Duration::ZERO, 256)?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = measure(&fleet)?;
    let requests0 = num_of(&stats(&client, &url).await?, "accepted_requests");
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(opts.seconds.max(1))).await;
    let after = measure(&fleet)?;
    let requests1 = num_of(&stats(&client, &url).await?, "accepted_requests");
    let secs = t0.elapsed().as_secs_f64();
    let total = writer.finish()?;
    let first = fleet.first_mut().context("no Pod")?;
    let s = wait_arrived(
        &client,
        &url,
        total,
        &mut first.shipper,
        &first.log,
        Duration::from_secs(120),
    )
    .await?;
    for pod in &mut fleet {
        terminate(&mut pod.shipper)?;
    }
    terminate(&mut intake)?;
    let n = pods as f64;
    let cpu: f64 = after.iter().zip(&before).map(|(a, b)| a.cpu - b.cpu).sum();
    let rss: u64 = after.iter().map(|m| m.rss_kb).sum();
    let anon: u64 = after.iter().map(|m| m.anon_kb).sum();
    println!(
        "sidelog bench fleet: {pods} Pods, {} lines/s each (each line written on its own), {secs:.0} s: per Pod CPU {:.3}% of a core, RSS {:.1} MB ({} kB anonymous), {:.1} requests/s; the fleet {:.2} cores, {:.0} MB RSS ({:.0} MB anonymous); {} of {total} lines arrived, {} duplicates",
        opts.rate,
        100.0 * cpu / secs / n,
        rss as f64 / n / 1024.0,
        anon / pods as u64,
        (requests1 - requests0) as f64 / secs / n,
        cpu / secs,
        rss as f64 / 1024.0,
        anon as f64 / 1024.0,
        s["distinct"],
        s["duplicates"],
    );
    Ok(())
}

/// One shipper's CPU seconds so far and its memory now.
struct Sample {
    cpu: f64,
    rss_kb: u64,
    anon_kb: u64,
}

/// Every shipper's sample; a shipper that cannot be read is an error, not a zero.
fn measure(fleet: &[Pod]) -> anyhow::Result<Vec<Sample>> {
    fleet
        .iter()
        .map(|p| {
            let pid = p.shipper.0.id();
            let field = |f: &str| {
                proc_status_kb(pid, f).with_context(|| format!("cannot read {f} of shipper {pid}"))
            };
            Ok(Sample {
                cpu: threads_cpu_ns(pid)? as f64 / 1e9,
                rss_kb: field("VmRSS")?,
                anon_kb: field("RssAnon")?,
            })
        })
        .collect()
}
