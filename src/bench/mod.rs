//! `sidelog bench`: end-to-end measurements of the real binary, run as child processes.
//!
//! - `throughput`: generates log files, ships them to a separate `sidelog intake --verify`
//!   process, checks every line arrived exactly once, and reports MB/s, lines/s, CPU-seconds
//!   per GB and peak RSS of the shipper alone, next to the ceiling: the same lines encoded into
//!   the same batches and compressed on the same number of threads, with no I/O.
//! - `idle`: CPU and memory of a shipper watching files that do not change.
//! - `latency`: write-to-intake latency at a steady line rate.
//!
//! Benchmark lines start with `FF:SSSSSSSSSS:UUUUUUUUUUUUUUUU ` (file, sequence number, write
//! time in Unix microseconds) so the intake can check them; the rest looks like access-log and
//! JSON lines with realistic variety, so compression works as hard as on real logs.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use crate::intake::VERIFY_PREFIX_LEN;

mod pod;
mod steady;
mod throughput;

pub use pod::{CrashOptions, DrainOptions, OutageOptions, crash, drain, outage};
pub use steady::{idle, latency};
pub use throughput::{ThroughputOptions, throughput};

const WORDS: &[&str] = &[
    "user",
    "order",
    "payment",
    "session",
    "cache",
    "miss",
    "hit",
    "retry",
    "upstream",
    "timeout",
    "connection",
    "pool",
    "request",
    "handled",
    "completed",
    "started",
    "queue",
    "worker",
    "shard",
    "replica",
    "token",
    "refresh",
    "account",
    "profile",
    "search",
    "index",
    "inventory",
    "checkout",
    "cart",
    "invoice",
    "shipping",
    "latency",
    "region",
    "eu-west-1",
    "us-east-1",
    "debug",
    "trace_id",
    "span_id",
    "GET",
    "POST",
    "PUT",
    "DELETE",
    "ok",
    "error",
];

/// Appends one benchmark line of about `target` bytes (newline included).
pub fn bench_line(
    out: &mut Vec<u8>,
    rng: &mut fastrand::Rng,
    file: usize,
    seq: u64,
    target: usize,
    write_us: u64,
) {
    let start = out.len();
    let _ = write!(out, "{:02}:{:010}:{:016} ", file % 100, seq, write_us);
    if rng.bool() {
        let _ = write!(
            out,
            r#"10.{}.{}.{} - - [25/Nov/2026:10:{:02}:{:02} +0000] "{} /api/v1/{}/{} HTTP/1.1" {} {} "-" "Mozilla/5.0 (X11; Linux x86_64) rv:{}" rt={}.{:03}"#,
            rng.u8(..),
            rng.u8(..),
            rng.u8(..),
            rng.u8(..60),
            rng.u8(..60),
            WORDS[38 + rng.usize(..4)],
            WORDS[rng.usize(..WORDS.len())],
            rng.u32(..1_000_000),
            [200, 200, 200, 201, 204, 301, 404, 500][rng.usize(..8)],
            rng.u32(..100_000),
            100 + rng.u8(..30),
            rng.u8(..5),
            rng.u16(..1000),
        );
    } else {
        let _ = write!(
            out,
            r#"{{"level":"{}","ts":"2026-11-25T10:{:02}:{:02}.{:06}Z","msg":"{} {} {}","trace_id":"{:016x}","user_id":{},"duration_ms":{}}}"#,
            ["info", "info", "info", "warn", "error", "debug"][rng.usize(..6)],
            rng.u8(..60),
            rng.u8(..60),
            rng.u32(..1_000_000),
            WORDS[rng.usize(..WORDS.len())],
            WORDS[rng.usize(..WORDS.len())],
            WORDS[rng.usize(..WORDS.len())],
            rng.u64(..),
            rng.u32(..10_000_000),
            rng.u16(..5000),
        );
    }
    // Pad with words up to the target size, as real lines carry more fields.
    while out.len() - start + 1 < target {
        out.push(b' ');
        out.extend_from_slice(WORDS[rng.usize(..WORDS.len())].as_bytes());
    }
    out.truncate(start + target.max(VERIFY_PREFIX_LEN + 1) - 1);
    out.push(b'\n');
}

/// What `sidelog generate` writes.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub out: PathBuf,
    /// Lines per second; 0 for as fast as possible.
    pub rate: u64,
    pub lines: Option<u64>,
    pub seconds: Option<u64>,
    pub line_bytes: usize,
    /// Sequence number of the first line.
    pub first: u64,
}

/// Appends numbered sample lines to a file at a steady rate until a limit or `stop`; prints
/// how many it wrote. Lines carry the prefix the verifying intake checks.
pub fn generate_lines(opts: GenerateOptions, stop: CancellationToken) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&opts.out)
        .with_context(|| format!("cannot open {}", opts.out.display()))?;
    let mut rng = fastrand::Rng::with_seed(opts.first ^ 0x5eed);
    let start = Instant::now();
    let mut buf = Vec::with_capacity(1 << 20);
    let mut written = 0u64;
    let limit = opts.lines.unwrap_or(u64::MAX);
    let deadline = opts.seconds.map(|s| start + Duration::from_secs(s));
    while written < limit && !stop.is_cancelled() && deadline.is_none_or(|d| Instant::now() < d) {
        let due = if opts.rate == 0 {
            limit.min(written + 4096)
        } else {
            limit.min((start.elapsed().as_secs_f64() * opts.rate as f64) as u64 + 1)
        };
        if due <= written {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        buf.clear();
        let now_us = crate::clock::now_us();
        while written < due {
            bench_line(
                &mut buf,
                &mut rng,
                0,
                opts.first + written,
                opts.line_bytes,
                now_us,
            );
            written += 1;
        }
        file.write_all(&buf)
            .with_context(|| format!("cannot write {}", opts.out.display()))?;
    }
    println!("{written} lines written to {}", opts.out.display());
    Ok(())
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
        bench_line(&mut buf, &mut rng, f, seqs[f], line_bytes, 0);
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

/// CPU seconds (user + system) this process has used.
fn own_cpu() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct we pass; RUSAGE_SELF is always valid.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return 0.0;
    }
    // SAFETY: initialised by the successful call above.
    let u = unsafe { usage.assume_init() };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

/// CPU seconds (user + system) of another process, from /proc.
pub fn proc_cpu(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5), counted from after the command name (field 3 is index 0).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no memory-safety requirements.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / ticks.max(1.0))
}

/// CPU seconds per thread name of a process, largest first.
pub fn thread_cpu(pid: u32) -> Vec<(String, f64)> {
    let mut by_name: std::collections::BTreeMap<String, f64> = Default::default();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    // SAFETY: sysconf has no memory-safety requirements.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
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
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    Ok(child.0.wait()?)
}

/// Starts `sidelog intake --verify` on a free port; returns it and its base URL.
fn start_intake(latency_ms: u64) -> anyhow::Result<(ChildGuard, String)> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args([
            "intake",
            "--listen",
            "127.0.0.1:0",
            "--verify",
            "--latency-ms",
        ])
        .arg(latency_ms.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
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
const MASK_RULE: &str = "[[inputs.log_processing_rules]]\ntype = \"mask_sequences\"\nname = \"card_numbers\"\npattern = '\\b\\d{4}[ -]\\d{4}[ -]\\d{4}[ -]\\d{4}\\b'\nreplace_placeholder = \"[masked_card]\"\n";

fn write_config(dir: &Path, include: &str, endpoint: &str, extra: &str) -> anyhow::Result<PathBuf> {
    write_config_with(dir, include, "", endpoint, extra)
}

fn write_config_with(
    dir: &Path,
    include: &str,
    input_extra: &str,
    endpoint: &str,
    extra: &str,
) -> anyhow::Result<PathBuf> {
    let key = dir.join("api-key");
    fs::write(&key, "bench-key\n")?;
    let path = dir.join("sidelog.toml");
    fs::write(
        &path,
        format!(
            "data_dir = \"{}\"\nlog_level = \"warn\"\n\n[[inputs]]\ninclude = [\"{include}\"]\nservice = \"bench\"\nsource = \"bench\"\n{input_extra}\n[datadog]\nendpoint = \"{endpoint}\"\napi_key_file = \"{}\"\nhostname = \"bench-host\"\ntags = [\"env:bench\"]\n{extra}",
            dir.join("data").display(),
            key.display()
        ),
    )?;
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

async fn stats(client: &reqwest::Client, url: &str) -> anyhow::Result<serde_json::Value> {
    let body = client
        .get(format!("{url}/stats"))
        .send()
        .await?
        .bytes()
        .await?;
    Ok(serde_json::from_slice(&body)?)
}

/// Polls the intake until `distinct >= lines` or the shipper dies. Each poll's (time since
/// `progress.0`, distinct lines) is appended to `progress.1`.
async fn wait_arrived(
    client: &reqwest::Client,
    url: &str,
    lines: u64,
    shipper: &mut ChildGuard,
    log: &Path,
    timeout: Duration,
    mut progress: Option<(Instant, &mut Vec<(f64, u64)>)>,
) -> anyhow::Result<serde_json::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let s = stats(client, url).await?;
        let distinct = s["distinct"].as_u64().unwrap_or(0);
        if let Some((t0, samples)) = progress.as_mut() {
            samples.push((t0.elapsed().as_secs_f64(), distinct));
        }
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

fn concurrency_value(c: crate::config::RequestConcurrency) -> String {
    match c {
        crate::config::RequestConcurrency::Fixed(n) => n.to_string(),
        crate::config::RequestConcurrency::Adaptive => "\"adaptive\"".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_lines_have_the_verify_prefix_and_size() {
        let mut rng = fastrand::Rng::with_seed(1);
        for target in [64, 256, 1000] {
            let mut out = Vec::new();
            bench_line(&mut out, &mut rng, 3, 12345, target, 99);
            assert_eq!(out.len(), target, "{}", String::from_utf8_lossy(&out));
            assert!(out.starts_with(b"03:0000012345:0000000000000099 "));
            assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        }
    }
}
