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
    /// Then the intake answers 503 for this long, and heals: requests while it is down, the
    /// busiest second after the heal, and the time until every Pod's backlog is in (0: no
    /// outage).
    #[arg(long, default_value_t = 60)]
    pub outage_secs: u64,
    /// Keep the Pods' files (logs, checkpoints, the shippers' logs) here instead of in a
    /// temporary directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// One Pod's shipper and where it keeps its things.
struct Pod {
    shipper: ChildGuard,
    log: PathBuf,
}

pub async fn fleet(opts: FleetOptions) -> anyhow::Result<()> {
    let pods = opts.pods.max(1);
    files_told_apart(pods)?;
    let (_tmp, dir) = temp_or(&opts.dir)?;
    let (mut intake, url) = start_intake(0)?;
    let client = reqwest::Client::new();
    let mut fleet = Vec::with_capacity(pods);
    let mut files = Vec::with_capacity(pods);
    for i in 0..pods {
        let pod_dir = dir.join(format!("pod-{i:03}"));
        let logs = pod_dir.join("logs");
        fs::create_dir_all(&logs)?;
        let include = format!("{}/*.log", logs.display());
        let config = write_config(&pod_dir, &include, &url, DatadogConfig::default(), |_| {})?;
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
    let outage = if opts.outage_secs > 0 {
        let down = Duration::from_secs(opts.outage_secs);
        Some(outage(&client, &url, &writer, down).await?)
    } else {
        None
    };
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
    if let Some(o) = outage {
        let steady = (requests1 - requests0) as f64 / secs;
        o.print(pods, steady);
    }
    Ok(())
}

/// What the fleet did around an outage of the intake.
struct Outage {
    down: Duration,
    /// Requests the intake saw while it answered 503.
    while_down: u64,
    /// Lines written but not arrived when the intake healed.
    backlog: u64,
    /// (seconds since the heal, requests so far) every 50 ms.
    samples: Vec<(f64, u64)>,
    /// Seconds from the heal until every line written before it had arrived.
    recovered: Option<f64>,
}

/// The intake answers 503 for `down`, then heals; the fleet is watched until every line
/// written before the heal has arrived, and 3 s more.
async fn outage(
    client: &reqwest::Client,
    url: &str,
    writer: &PacedLines,
    down: Duration,
) -> anyhow::Result<Outage> {
    super::set_faults(client, url, "{\"status\": 503}").await?;
    let before = num_of(&stats(client, url).await?, "requests");
    // The outage's length is what is measured, not a wait for something to happen.
    tokio::time::sleep(down).await;
    let written = writer.written();
    let at_heal = stats(client, url).await?;
    super::set_faults(client, url, "{}").await?;
    let healed = Instant::now();
    let requests = num_of(&at_heal, "requests");
    let mut samples = vec![(0.0, requests)];
    let mut recovered = None;
    while healed.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let s = stats(client, url).await?;
        let t = healed.elapsed().as_secs_f64();
        samples.push((t, num_of(&s, "requests")));
        if recovered.is_none() && num_of(&s, "distinct") >= written {
            recovered = Some(t);
        }
        if recovered.is_some_and(|r| t > r + 3.0) {
            break;
        }
    }
    Ok(Outage {
        down,
        while_down: requests - before,
        backlog: written.saturating_sub(num_of(&at_heal, "distinct")),
        samples,
        recovered,
    })
}

impl Outage {
    /// The most requests in any second after the heal, and when that second began.
    fn busiest_second(&self) -> (u64, f64) {
        let mut best = (0, 0.0);
        for (i, &(t, n)) in self.samples.iter().enumerate() {
            let end = self.samples[i..]
                .iter()
                .take_while(|(u, _)| *u <= t + 1.0)
                .last()
                .map_or(n, |&(_, m)| m);
            if end - n > best.0 {
                best = (end - n, t);
            }
        }
        best
    }

    /// Requests from the heal until the backlog was in.
    fn until_recovered(&self) -> Option<u64> {
        let r = self.recovered?;
        let first = self.samples.first()?.1;
        let at = self.samples.iter().find(|(t, _)| *t >= r)?.1;
        Some(at - first)
    }

    fn print(&self, pods: usize, steady_per_s: f64) {
        let n = pods as f64;
        let (busiest, at) = self.busiest_second();
        let backlog = self.backlog as f64 / n;
        let needed = (backlog / 1000.0).ceil().max(1.0);
        println!(
            "outage of {} s: {:.2} requests/s per Pod while down; backlog {backlog:.0} lines per Pod ({needed:.0} requests of 1,000 events); after the heal the busiest second ({at:.1}-{:.1} s) had {busiest} requests, {:.1} per Pod ({:.1} above the {:.1} per Pod of the steady state); every Pod's backlog in after {}, in {} requests ({} per Pod)",
            self.down.as_secs(),
            self.while_down as f64 / self.down.as_secs_f64() / n,
            at + 1.0,
            busiest as f64 / n,
            busiest as f64 / n - steady_per_s / n,
            steady_per_s / n,
            self.recovered
                .map_or("(not within 30 s)".into(), |r| format!("{r:.2} s")),
            self.until_recovered().map_or("?".into(), |r| r.to_string()),
            self.until_recovered()
                .map_or("?".into(), |r| format!("{:.1}", r as f64 / n)),
        );
    }
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
