//! `sidelog bench`: end-to-end measurements of the real binary, run as child processes.
//!
//! - `throughput`: generates log files, ships them to a separate `sidelog intake --verify`
//!   process, checks every line arrived exactly once, and reports MB/s, lines/s, CPU-seconds
//!   per GB and peak RSS of the shipper alone, next to the ceiling: the same lines encoded into
//!   the same batches and compressed on the same number of threads, with no I/O.
//! - `idle`: CPU and memory of a shipper watching files that do not change.
//! - `latency`: write-to-intake latency at a steady line rate.
//!
//! The lines are [`sidelog_sample`] lines, whose prefix the verifying intake checks.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rustix::process::{Pid, Signal, kill_process};
use rustix::time::{ClockId, clock_gettime};

use sidelog_sample as sample;
use sidelog_shipper::config::{Config, DatadogConfig, Input, LogLevel, RuleKind, RuleSettings};
use sidelog_shipper::encode::{Batch, BatchBuilder, EventRange, EventTemplate, LinePiece};
use sidelog_shipper::position::StreamId;
use sidelog_shipper::tail::frame::frame;

mod codec;
mod fleet;
mod peer;
mod pod;
mod soak;
mod steady;
mod throughput;

pub use codec::CodecOptions;
pub use fleet::FleetOptions;
pub use pod::{CrashOptions, DrainOptions, OutageOptions};
pub use soak::SoakOptions;
pub use steady::{IdleOptions, LatencyOptions, SteadyOptions};
pub use throughput::ThroughputOptions;

/// `sidelog bench ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum BenchCommand {
    /// Ship generated files to a separate intake; compare with the encode+compress ceiling.
    Throughput(ThroughputOptions),
    /// CPU and memory of a shipper watching files that do not change.
    Idle(IdleOptions),
    /// The intake down for a while under a steady stream: requests during the outage, and
    /// how soon sending resumes after it (default retry settings).
    Outage(OutageOptions),
    /// A backlog written while the intake refuses; the intake heals as SIGTERM arrives: is
    /// everything shipped before the exit, and how long does it take.
    Drain(DrainOptions),
    /// kill -9 halfway through a fast stream, then a restart: how much is sent twice.
    Crash(CrashOptions),
    /// Write-to-intake latency at a steady rate.
    Latency(LatencyOptions),
    /// The everyday cost: CPU, wake-ups, requests and memory under an app-like writer.
    Steady(SteadyOptions),
    /// Many quiet Pods at once: N shippers, each with its own file, against one intake; CPU
    /// and memory per Pod.
    Fleet(FleetOptions),
    /// Bytes on the wire and CPU per GB of each compression setting, on the shipper's own
    /// batches of several shapes of lines.
    Codec(CodecOptions),
    /// A Pod's bad days in minutes: 2,000 lines/s over 20 files, rotations, 1% failed
    /// requests, an outage every 5 minutes, a key rotation and a SIGHUP every minute; the
    /// shipper's memory, descriptors, threads and CPU each minute, every line at the end.
    Soak(SoakOptions),
}

/// Runs one benchmark.
pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Throughput(o) => throughput::throughput(o).await,
        BenchCommand::Idle(o) => steady::idle(o).await,
        BenchCommand::Outage(o) => pod::outage(o).await,
        BenchCommand::Drain(o) => pod::drain(o).await,
        BenchCommand::Crash(o) => pod::crash(o).await,
        BenchCommand::Latency(o) => steady::latency(o).await,
        BenchCommand::Steady(o) => steady::steady(o).await,
        BenchCommand::Fleet(o) => fleet::fleet(o).await,
        BenchCommand::Codec(o) => codec::codec(o).await,
        BenchCommand::Soak(o) => soak::soak(o).await,
    }
}

/// Writes about `mb` MB of lines round-robin into `files` files; returns (paths, lines, bytes).
fn generate(
    dir: &Path,
    mb: u64,
    files: usize,
    line_bytes: usize,
) -> anyhow::Result<(Vec<PathBuf>, u64, u64)> {
    let target = mb * 1_000_000;
    let paths: Vec<PathBuf> = (0..files)
        .map(|i| dir.join(format!("bench-{i}.log")))
        .collect();
    let mut writers = Vec::new();
    for p in &paths {
        writers.push(BufWriter::with_capacity(
            1 << 20,
            File::create(p).with_context(|| format!("create {}", p.display()))?,
        ));
    }
    let mut rng = fastrand::Rng::with_seed(42);
    let mut buf = Vec::with_capacity(1024);
    let (mut lines, mut bytes) = (0u64, 0u64);
    let mut seqs = vec![0u64; files];
    while bytes < target {
        let f = (lines % files as u64) as usize;
        buf.clear();
        sample::line(&mut buf, &mut rng, f, seqs[f], line_bytes, 0);
        seqs[f] += 1;
        writers[f].write_all(&buf)?;
        lines += 1;
        bytes += buf.len() as u64;
    }
    for mut w in writers {
        w.flush()?;
    }
    Ok((paths, lines, bytes))
}

/// Frames `buf`, bytes from `start` of stream `stream`, into `builder` as the reader does
/// (lines cut at 900,000 bytes), each event stamped `timestamp_ms(end of its line)`; full
/// batches go to `emit`.
fn frame_into(
    builder: &mut BatchBuilder,
    template: &EventTemplate,
    (stream, start): (u64, usize),
    buf: &[u8],
    timestamp_ms: impl Fn(usize) -> u64,
    emit: &mut dyn FnMut(Batch),
) {
    let valid = simdutf8::basic::from_utf8(buf).is_ok();
    let mut cont = false;
    frame(buf, 900_000, &mut cont, false, |fr| {
        builder.append_line(
            template,
            timestamp_ms(start + fr.end),
            EventRange {
                stream: StreamId(stream),
                start: (start + fr.text_start) as u64,
                text_offset: (start + fr.text_start) as u64,
                end: (start + fr.end) as u64,
            },
            LinePiece {
                text: &buf[fr.text_start..fr.text_start + fr.text_len],
                valid_utf8: valid,
                cut_before: fr.cut_before,
                cut_after: fr.cut_after,
                status: None,
            },
            emit,
        );
    });
}

/// CPU seconds (user + system) this process has used.
fn own_cpu() -> f64 {
    cpu_clock(ClockId::ProcessCPUTime)
}

/// A CPU-time clock in seconds, to the nanosecond (`getrusage` counts in scheduler ticks on
/// some kernels, too coarse for a fraction of a second).
fn cpu_clock(id: ClockId) -> f64 {
    let t = clock_gettime(id);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// The kernel's clock ticks per second, the unit of CPU times in `/proc`.
fn clock_ticks() -> f64 {
    (rustix::param::clock_ticks_per_second() as f64).max(1.0)
}

/// CPU seconds (user + system) of another process, from /proc.
pub fn proc_cpu(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5), counted from after the command name (field 3 is index 0).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// CPU seconds per thread name of a process, largest first.
pub fn thread_cpu(pid: u32) -> Vec<(String, f64)> {
    let mut by_name: std::collections::BTreeMap<String, f64> = Default::default();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let ticks = clock_ticks();
    for t in tasks.flatten() {
        let Ok(stat) = fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let cpu = fields
            .get(11)
            .and_then(|u| u.parse::<f64>().ok())
            .unwrap_or(0.0)
            + fields
                .get(12)
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(0.0);
        *by_name.entry(name).or_default() += cpu / ticks.max(1.0);
    }
    let mut v: Vec<(String, f64)> = by_name.into_iter().collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v
}

/// CPU time of every thread of a process, in nanoseconds (`schedstat`, precise where the
/// clock ticks of `stat` are 10 ms).
pub fn threads_cpu_ns(pid: u32) -> anyhow::Result<u64> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task"))
        .with_context(|| format!("cannot read the threads of {pid}"))?;
    let mut total = 0;
    for task in tasks.flatten() {
        let text = match fs::read_to_string(task.path().join("schedstat")) {
            Ok(text) => text,
            // A thread that ended since the listing (a blocking task's): nothing to count.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", task.path().display()));
            }
        };
        total += text
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .context("schedstat without a run time")?;
    }
    Ok(total)
}

/// A number from the intake's `/stats`.
fn num_of(s: &serde_json::Value, key: &str) -> u64 {
    s[key].as_u64().unwrap_or(0)
}

/// A `/proc/<pid>/status` field in kB (e.g. `VmHWM`, `VmRSS`).
pub fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// A child process killed when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn terminate(child: &mut ChildGuard) -> anyhow::Result<std::process::ExitStatus> {
    // Already gone is fine: wait() reports how it ended.
    let _ = kill_process(Pid::from_child(&child.0), Signal::TERM);
    Ok(child.0.wait()?)
}

/// Starts `sidelog intake --verify` on a free port; returns it and its base URL.
fn start_intake(latency_ms: u64) -> anyhow::Result<(ChildGuard, String)> {
    start_intake_with(latency_ms, "--verify")
}

/// Starts `sidelog intake` with `verify` (`--verify` or `--verify-later`) on a free port.
fn start_intake_with(latency_ms: u64, verify: &str) -> anyhow::Result<(ChildGuard, String)> {
    start_intake_args(&[verify, "--latency-ms", &latency_ms.to_string()], None)
}

/// Starts `sidelog intake <args>` on a port of the system's choosing, which the intake
/// reports, its log going to `log` (or nowhere); returns it and its base URL.
fn start_intake_args(args: &[&str], log: Option<&Path>) -> anyhow::Result<(ChildGuard, String)> {
    let exe = std::env::current_exe()?;
    let stderr = match log {
        Some(path) => Stdio::from(File::create(path)?),
        None => Stdio::null(),
    };
    let mut child = Command::new(exe)
        .args(["intake", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .context("cannot start intake")?;
    let stdout = child.stdout.take().context("intake stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .context("intake did not report its address")?
        .to_string();
    Ok((ChildGuard(child), url))
}

/// A processing rule for `bench throughput --mask`: card numbers written in groups, as users
/// mask them (it leaves the benchmark's 16-digit line prefix alone, which the intake checks).
fn mask_rule() -> RuleSettings {
    RuleSettings::new(
        RuleKind::MaskSequences,
        "card_numbers",
        r"\b\d{4}[ -]\d{4}[ -]\d{4}[ -]\d{4}\b",
        "[masked_card]",
    )
}

/// Writes the shipper's configuration for a benchmark in `dir`: one input over `include`
/// (service and source `bench`), warn logging, `datadog`'s settings with the intake at
/// `endpoint` and a key written beside; `adjust` changes the rest. Only what differs from
/// the defaults is written (see [`crate::config`]).
fn write_config(
    dir: &Path,
    include: &str,
    endpoint: &str,
    datadog: DatadogConfig,
    adjust: impl FnOnce(&mut Config),
) -> anyhow::Result<PathBuf> {
    let key = dir.join("api-key");
    fs::write(&key, "bench-key\n")?;
    let mut config = Config {
        data_dir: dir.join("data"),
        log_level: LogLevel::Warn,
        datadog,
        ..Config::default()
    };
    config.inputs.push(Input {
        include: vec![include.to_string()],
        service: "bench".into(),
        source: "bench".into(),
        ..Input::default()
    });
    let d = &mut config.datadog;
    d.endpoint = Some(endpoint.parse().context("the intake's URL")?);
    d.api_key_file = Some(key);
    d.hostname = Some("bench-host".into());
    d.tags = vec!["env:bench".into()];
    adjust(&mut config);
    let path = dir.join("sidelog.toml");
    crate::config::write(&config, &path)?;
    Ok(path)
}

/// Names another `sidelog` binary to measure as the shipper (an older build, to compare
/// before and after a change in one run); the intake and the harness stay this one.
pub const SHIPPER_ENV: &str = "SIDELOG_BENCH_SHIPPER";

fn start_shipper(config: &Path, log: &Path) -> anyhow::Result<ChildGuard> {
    let exe = match std::env::var_os(SHIPPER_ENV) {
        Some(other) => PathBuf::from(other),
        None => std::env::current_exe()?,
    };
    let child = Command::new(exe)
        .arg("run")
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        // It would read as a configuration key (it has the prefix).
        .env_remove(SHIPPER_ENV)
        .stdout(Stdio::null())
        .stderr(File::create(log)?)
        .spawn()
        .context("cannot start shipper")?;
    Ok(ChildGuard(child))
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

async fn stats(client: &reqwest::Client, url: &str) -> anyhow::Result<serde_json::Value> {
    get_json(client, url, "/stats").await
}

/// `GET {url}{path}`, parsed as JSON.
async fn get_json(
    client: &reqwest::Client,
    url: &str,
    path: &str,
) -> anyhow::Result<serde_json::Value> {
    let body = client
        .get(format!("{url}{path}"))
        .send()
        .await?
        .bytes()
        .await?;
    Ok(serde_json::from_slice(&body)?)
}

/// Polls the intake until `distinct >= lines` or the shipper dies.
async fn wait_arrived(
    client: &reqwest::Client,
    url: &str,
    lines: u64,
    shipper: &mut ChildGuard,
    log: &Path,
    timeout: Duration,
) -> anyhow::Result<serde_json::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let s = stats(client, url).await?;
        let distinct = s["distinct"].as_u64().unwrap_or(0);
        if distinct >= lines {
            return Ok(s);
        }
        if s["unrecognised"].as_u64().unwrap_or(0) > 0 {
            bail!(
                "the intake received lines it cannot check ({} so far)",
                s["unrecognised"]
            );
        }
        if let Some(status) = shipper.0.try_wait()? {
            bail!(
                "shipper exited early ({status}):\n{}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        if Instant::now() > deadline {
            bail!("timed out: {} of {lines} lines arrived", s["distinct"]);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The verifying intake tells the lines of at most [`sample::FILES`] files apart.
fn files_told_apart(files: usize) -> anyhow::Result<()> {
    if files > sample::FILES {
        bail!(
            "at most {} files (or Pods): their lines' prefixes could not be told apart",
            sample::FILES
        );
    }
    Ok(())
}

fn temp_or(dir: &Option<PathBuf>) -> anyhow::Result<(Option<tempfile::TempDir>, PathBuf)> {
    match dir {
        Some(d) => {
            fs::create_dir_all(d)?;
            Ok((None, d.clone()))
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("sidelog-bench-")
                .tempdir()?;
            let p = t.path().to_path_buf();
            Ok((Some(t), p))
        }
    }
}

fn concurrency_value(c: sidelog_shipper::config::RequestConcurrency) -> String {
    match c {
        sidelog_shipper::config::RequestConcurrency::Fixed(n) => n.to_string(),
        sidelog_shipper::config::RequestConcurrency::Adaptive => "\"adaptive\"".into(),
    }
}
