//! `sidelog bench idle` and `sidelog bench latency`: the cost of watching quiet files, and
//! write-to-intake latency at a steady rate.

use std::fs::{self, File};
use std::path::PathBuf;
use std::time::Duration;

use super::peer::PeerArgs;
use super::*;
use crate::writer::PacedLines;

#[derive(Debug, Clone, clap::Args)]
pub struct IdleOptions {
    #[arg(long, default_value_t = 20)]
    pub files: usize,
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    #[command(flatten)]
    pub peer: PeerArgs,
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
    let IdleOptions {
        files,
        seconds,
        peer,
    } = opts;
    let files = files.max(1);
    files_told_apart(files)?;
    let (_tmp, dir) = temp_or(&None)?;
    let logs = dir.join("logs");
    fs::create_dir_all(&logs)?;
    let mut rng = fastrand::Rng::with_seed(7);
    let mut buf = Vec::new();
    for f in 0..files {
        buf.clear();
        for seq in 0..10 {
            sample::line(&mut buf, &mut rng, f, seq as u64, 200, 0);
        }
        fs::write(logs.join(format!("idle-{f:04}.log")), &buf)?;
    }
    let (mut intake, url) = start_intake(0)?;
    let include = format!("{}/*.log", logs.display());
    let config = write_config(&dir, &include, &url, DatadogConfig::default(), |_| {})?;
    let log = dir.join("shipper.log");
    let client = reqwest::Client::new();
    let mut shipper = match peer.start(&dir, &logs, &url, &log) {
        Some(started) => started?,
        None => start_shipper(&config, &log)?,
    };
    let pid = shipper.0.id();
    let lines = files as u64 * 10;
    wait_arrived(
        &client,
        &url,
        lines,
        &mut shipper,
        &log,
        Duration::from_secs(120),
    )
    .await?;
    // Let the last batch's checkpoint write happen before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu0 = proc_cpu(pid).unwrap_or(0.0);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let cpu1 = proc_cpu(pid).unwrap_or(0.0);
    let rss = proc_status_kb(pid, "VmRSS").unwrap_or(0);
    let hwm = proc_status_kb(pid, "VmHWM").unwrap_or(0);
    let (anon, file) = (
        proc_status_kb(pid, "RssAnon").unwrap_or(0),
        proc_status_kb(pid, "RssFile").unwrap_or(0),
    );
    let fds = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    terminate(&mut shipper)?;
    terminate(&mut intake)?;
    println!(
        "bench idle, {}: {files} files, {seconds} s idle: CPU {:.3} s, RSS {:.1} MB ({rss} kB: {anon} kB anonymous, {file} kB mapped from files; peak {:.1} MB), {fds} open descriptors",
        peer.name(),
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
        DatadogConfig::default(),
        |c| c.batch.timeout_ms = timeout_ms,
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
    let s = wait_arrived(&client, &url, written, &mut shipper, &log, timeout).await?;
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

#[derive(Debug, Clone, clap::Args)]
pub struct SteadyOptions {
    /// Lines per second, over all files.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    #[arg(long, default_value_t = 1)]
    pub files: usize,
    /// 0 (the default): each line with a write of its own when it is due, as most logging
    /// libraries write; N: one append per file every N ms with the lines due meanwhile.
    #[arg(long, default_value_t = 0)]
    pub interval_ms: u64,
    /// How long to measure, after a warm-up of 5 s.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Bytes per line, newline included.
    #[arg(long, default_value_t = 256)]
    pub line_bytes: usize,
    /// Extra `[datadog]` settings for the shipper, e.g. `compression = "gzip"`.
    #[arg(long, default_value = "")]
    pub datadog: String,
    #[command(flatten)]
    pub peer: PeerArgs,
}

/// What the kernel says a process did over a window.
struct Usage {
    cpu: f64,
    switches: u64,
}

fn usage(pid: u32) -> Usage {
    Usage {
        cpu: proc_cpu(pid).unwrap_or(0.0),
        switches: context_switches(pid),
    }
}

/// Context switches of every thread of a process (each is a wake-up or a preemption).
fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("status")).ok())
        .map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// One thread's CPU time (nanoseconds, from `schedstat`) and wake-ups (voluntary context
/// switches), by the role its name says.
#[derive(Debug, Default, Clone, Copy)]
struct ThreadUse {
    cpu_ns: u64,
    wakeups: u64,
}

/// The shipper's threads by role: the reader, the file-event thread, the runtime (requests,
/// dispatch, checkpoints) and the compressors.
#[derive(Debug, Default, Clone, Copy)]
struct Roles {
    reader: ThreadUse,
    file_events: ThreadUse,
    runtime: ThreadUse,
    compressors: ThreadUse,
}

fn roles(pid: u32) -> Roles {
    let mut r = Roles::default();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return r;
    };
    for task in tasks.flatten() {
        let read = |f: &str| fs::read_to_string(task.path().join(f)).unwrap_or_default();
        let name = read("comm");
        let cpu_ns = read("schedstat")
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let wakeups = read("status")
            .lines()
            .find(|l| l.starts_with("voluntary_ctxt_switches:"))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
            .unwrap_or(0);
        let slot = match name.trim() {
            n if n.starts_with("sidelog-tail") => &mut r.reader,
            n if n.starts_with("notify") => &mut r.file_events,
            n if n.starts_with("sidelog-zip") => &mut r.compressors,
            _ => &mut r.runtime,
        };
        slot.cpu_ns += cpu_ns;
        slot.wakeups += wakeups;
    }
    r
}

impl ThreadUse {
    fn since(self, before: ThreadUse) -> ThreadUse {
        ThreadUse {
            cpu_ns: self.cpu_ns.saturating_sub(before.cpu_ns),
            wakeups: self.wakeups.saturating_sub(before.wakeups),
        }
    }
}

impl Roles {
    fn since(self, b: Roles) -> Roles {
        Roles {
            reader: self.reader.since(b.reader),
            file_events: self.file_events.since(b.file_events),
            runtime: self.runtime.since(b.runtime),
            compressors: self.compressors.since(b.compressors),
        }
    }

    /// Where the CPU went: per request (the runtime and the compressors), per wake-up of the
    /// reader (which reads the file events itself), and by thread; for an older build with a
    /// thread of its own for file events, that thread's CPU per line too.
    fn split(&self, secs: f64, requests: u64, lines: u64) -> String {
        let pct = |t: ThreadUse| 100.0 * t.cpu_ns as f64 / 1e9 / secs;
        let per = |ns: u64, n: u64| ns as f64 / 1e3 / n.max(1) as f64;
        let file_events = if self.file_events.cpu_ns > 0 {
            format!(
                ", file-event thread {:.0} us per line ({:.2}%)",
                per(self.file_events.cpu_ns, lines),
                pct(self.file_events)
            )
        } else {
            String::new()
        };
        format!(
            "split: {:.0} us per request (runtime and compressors), {:.0} us per reader wake-up ({:.0}/s); by thread: reader {:.2}%, runtime {:.2}%, compressors {:.2}%{file_events}",
            per(self.runtime.cpu_ns + self.compressors.cpu_ns, requests),
            per(self.reader.cpu_ns, self.reader.wakeups),
            self.reader.wakeups as f64 / secs,
            pct(self.reader),
            pct(self.runtime),
            pct(self.compressors),
        )
    }
}

/// The everyday cost: an app-like writer at a steady rate; CPU of the shipper alone, its
/// wake-ups, the requests it makes, its memory, and where the CPU went.
pub async fn steady(opts: SteadyOptions) -> anyhow::Result<()> {
    let files = opts.files.max(1);
    let (_tmp, dir) = temp_or(&None)?;
    let logs = dir.join("logs");
    fs::create_dir_all(&logs)?;
    let paths: Vec<PathBuf> = (0..files)
        .map(|i| logs.join(format!("app-{i}.log")))
        .collect();
    let (mut intake, url) = start_intake(0)?;
    // `--datadog` is written as a `[datadog]` table is: read as the shipper reads it.
    let datadog: DatadogConfig = toml::from_str(&opts.datadog).context("--datadog")?;
    let include = format!("{}/*.log", logs.display());
    let config = write_config(&dir, &include, &url, datadog, |_| {})?;
    let log = dir.join("shipper.log");
    let client = reqwest::Client::new();
    let mut shipper = match opts.peer.start(&dir, &logs, &url, &log) {
        Some(started) => started?,
        None => start_shipper(&config, &log)?,
    };
    let pid = shipper.0.id();
    let interval = Duration::from_millis(opts.interval_ms);
    let writer = PacedLines::start(&paths, opts.rate, interval, opts.line_bytes.max(64))?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (before, requests0) = (usage(pid), stats(&client, &url).await?);
    let roles0 = roles(pid);
    let t0 = std::time::Instant::now();
    let lines0 = writer.written();
    tokio::time::sleep(Duration::from_secs(opts.seconds.max(1))).await;
    let (after, requests1) = (usage(pid), stats(&client, &url).await?);
    let by_role = roles(pid).since(roles0);
    let (secs, lines) = (t0.elapsed().as_secs_f64(), writer.written() - lines0);
    let rss = proc_status_kb(pid, "VmRSS").unwrap_or(0);
    let hwm = proc_status_kb(pid, "VmHWM").unwrap_or(0);
    let total = writer.finish()?;
    let s = wait_arrived(
        &client,
        &url,
        total,
        &mut shipper,
        &log,
        Duration::from_secs(60),
    )
    .await?;
    terminate(&mut shipper)?;
    terminate(&mut intake)?;
    let cpu = after.cpu - before.cpu;
    let requests =
        num_of(&requests1, "accepted_requests") - num_of(&requests0, "accepted_requests");
    let wire = num_of(&requests1, "wire_bytes") - num_of(&requests0, "wire_bytes");
    let log_gb = (lines * opts.line_bytes.max(64) as u64) as f64 / 1e9;
    let who = opts.peer.name();
    println!(
        "bench steady, {who}: {} lines/s over {files} files, {}, {:.0} s: CPU {:.2}% of a core, {:.1} ms per 1,000 lines; {:.1} requests/s, {:.0} MB on the wire per GB of lines; {:.0} wake-ups/s; RSS {:.1} MB (peak {:.1} MB); p99 {} ms; {} of {total} lines arrived, {} duplicates",
        opts.rate,
        if opts.interval_ms == 0 {
            "each line written on its own".to_string()
        } else {
            format!("one append per file every {} ms", opts.interval_ms)
        },
        secs,
        100.0 * cpu / secs,
        1000.0 * cpu / (lines.max(1) as f64 / 1000.0),
        requests as f64 / secs,
        wire as f64 / 1e6 / log_gb.max(1e-9),
        (after.switches - before.switches) as f64 / secs,
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        s["latency_p99_ms"],
        s["distinct"],
        s["duplicates"],
    );
    if who == "sidelog" {
        println!("  {}", by_role.split(secs, requests, lines));
    }
    Ok(())
}
