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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use crate::config::Compression;
use crate::encode::{Batch, BatchBuilder, EventFields, EventTemplate, LinePiece};
use crate::intake::VERIFY_PREFIX_LEN;
use crate::tail::frame::frame;

#[derive(Debug, Clone)]
pub struct ThroughputOptions {
    pub mb: u64,
    pub files: usize,
    pub line_bytes: usize,
    pub compression: Compression,
    pub level: i32,
    /// `datadog.request_concurrency`: a number or `adaptive`.
    pub request_concurrency: crate::config::RequestConcurrency,
    /// Delay the intake adds to every answer, to stand for a distant intake.
    pub intake_latency_ms: u64,
    /// Ship with one `mask_sequences` rule (card numbers), to measure what a rule costs.
    pub mask: bool,
    pub max_bytes: usize,
    /// Threads for the ceiling; default: the cores sidelog compresses on.
    pub threads: Option<usize>,
    /// Where to write the files (a temporary directory by default).
    pub dir: Option<PathBuf>,
}

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
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
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

struct CeilingResult {
    wall: Duration,
    cpu: f64,
    json_bytes: u64,
    compressed_bytes: u64,
}

/// Encodes and compresses the files' lines exactly as the shipper does, from memory.
fn ceiling(
    paths: &[PathBuf],
    threads: usize,
    opts: &ThroughputOptions,
) -> anyhow::Result<CeilingResult> {
    let data: Vec<Vec<u8>> = paths.iter().map(fs::read).collect::<Result<_, _>>()?;
    let mut chunks = Vec::new();
    for (f, d) in data.iter().enumerate() {
        let mut start = 0;
        while start < d.len() {
            let mut end = (start + 256 * 1024).min(d.len());
            if end < d.len() {
                end = memchr::memrchr(b'\n', &d[start..end]).map_or(end, |i| start + i + 1);
            }
            chunks.push((f, start, end));
            start = end;
        }
    }
    let next = AtomicUsize::new(0);
    let json = AtomicUsize::new(0);
    let compressed = AtomicUsize::new(0);
    let cpu0 = own_cpu();
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let templates: Vec<EventTemplate> =
                    paths.iter().map(|p| bench_template(p)).collect();
                let mut builder = BatchBuilder::new(1000, opts.max_bytes);
                let mut out = Vec::new();
                let mut finish = |batch: Batch, builder: &mut BatchBuilder| {
                    json.fetch_add(batch.body.len(), Ordering::Relaxed);
                    if crate::compress::compress(
                        opts.compression,
                        opts.level,
                        &batch.body,
                        &mut out,
                    )
                    .is_ok()
                    {
                        compressed.fetch_add(out.len(), Ordering::Relaxed);
                    }
                    builder.recycle(batch.body);
                };
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(f, start, end)) = chunks.get(i) else {
                        break;
                    };
                    let buf = &data[f][start..end];
                    let valid = simdutf8::basic::from_utf8(buf).is_ok();
                    let mut ready = Vec::new();
                    let mut cont = false;
                    frame(buf, 900_000, &mut cont, false, |fr| {
                        builder.append_line(
                            &templates[f],
                            1_764_000_000_000,
                            f as u64,
                            (start + fr.text_start) as u64,
                            (start + fr.text_start) as u64,
                            (start + fr.end) as u64,
                            LinePiece {
                                text: &buf[fr.text_start..fr.text_start + fr.text_len],
                                valid_utf8: valid,
                                cut_before: fr.cut_before,
                                cut_after: fr.cut_after,
                                status: None,
                            },
                            &mut |b| ready.push(b),
                        );
                    });
                    for b in ready {
                        finish(b, &mut builder);
                    }
                }
                if let Some(b) = builder.take() {
                    finish(b, &mut builder);
                }
            });
        }
    });
    Ok(CeilingResult {
        wall: t0.elapsed(),
        cpu: own_cpu() - cpu0,
        json_bytes: json.load(Ordering::Relaxed) as u64,
        compressed_bytes: compressed.load(Ordering::Relaxed) as u64,
    })
}

fn bench_template(path: &Path) -> EventTemplate {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    EventTemplate::new(&EventFields {
        status: "info",
        hostname: "bench-host",
        service: "bench",
        source: "bench",
        tags: &format!("env:bench,filename:{name}"),
    })
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

fn start_shipper(config: &Path, log: &Path) -> anyhow::Result<ChildGuard> {
    let exe = std::env::current_exe()?;
    let child = Command::new(exe)
        .arg("run")
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
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

pub async fn throughput(opts: ThroughputOptions, _stop: CancellationToken) -> anyhow::Result<()> {
    let (_tmp, dir) = temp_or(&opts.dir)?;
    let logs = dir.join("logs");
    let _ = fs::remove_dir_all(&logs);
    let _ = fs::remove_dir_all(dir.join("data"));
    fs::create_dir_all(&logs)?;
    let threads = opts
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    println!(
        "sidelog bench throughput: {} MB in {} files, ~{} byte lines, {} level {}, request_concurrency {}, intake latency {} ms",
        opts.mb,
        opts.files,
        opts.line_bytes,
        opts.compression.content_encoding(),
        opts.level,
        concurrency_value(opts.request_concurrency),
        opts.intake_latency_ms
    );
    let t = Instant::now();
    let (paths, lines, bytes) = generate(&logs, opts.mb, opts.files, opts.line_bytes)?;
    println!(
        "  generated    {lines} lines, {:.1} MB in {:.1} s",
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    let c = ceiling(&paths, threads, &opts)?;
    let gb = bytes as f64 / 1e9;
    let c_mbps = bytes as f64 / 1e6 / c.wall.as_secs_f64();
    let c_cpu_gb = c.cpu / gb;
    println!(
        "  ceiling      {c_mbps:7.1} MB/s  {:9.0} lines/s  CPU {c_cpu_gb:5.1} s/GB   (encode + compress, {threads} threads, no I/O; JSON {:.0} MB -> {:.0} MB)",
        lines as f64 / c.wall.as_secs_f64(),
        c.json_bytes as f64 / 1e6,
        c.compressed_bytes as f64 / 1e6,
    );

    let (mut intake, url) = start_intake(opts.intake_latency_ms)?;
    let config = write_config_with(
        &dir,
        &format!("{}/*.log", logs.display()),
        if opts.mask { MASK_RULE } else { "" },
        &url,
        &format!(
            "compression = \"{}\"\ncompression_level = {}\nrequest_concurrency = {}\n\n[batch]\nmax_bytes = {}\n",
            match opts.compression {
                Compression::None => "none",
                other => other.content_encoding(),
            },
            opts.level,
            concurrency_value(opts.request_concurrency),
            opts.max_bytes
        ),
    )?;
    let log = dir.join("shipper.log");
    let client = reqwest::Client::new();
    let t0 = Instant::now();
    let mut samples = Vec::new();
    let mut shipper = start_shipper(&config, &log)?;
    let pid = shipper.0.id();
    let s = wait_arrived(
        &client,
        &url,
        lines,
        &mut shipper,
        &log,
        Duration::from_secs(3600),
        Some((t0, &mut samples)),
    )
    .await?;
    let wall = t0.elapsed();
    let cpu = proc_cpu(pid).unwrap_or(0.0);
    let hwm_kb = proc_status_kb(pid, "VmHWM").unwrap_or(0);
    let intake_cpu = proc_cpu(intake.0.id()).unwrap_or(0.0);
    let threads_cpu = thread_cpu(pid);
    let status = terminate(&mut shipper)?;
    let fin = stats(&client, &url).await?;
    terminate(&mut intake)?;

    let mbps = bytes as f64 / 1e6 / wall.as_secs_f64();
    let cpu_gb = cpu / gb;
    println!(
        "  end-to-end   {mbps:7.1} MB/s  {:9.0} lines/s  CPU {cpu_gb:5.1} s/GB   peak RSS {:.1} MB   ({:.1} s; intake used {:.1} CPU s)",
        lines as f64 / wall.as_secs_f64(),
        hwm_kb as f64 / 1024.0,
        wall.as_secs_f64(),
        intake_cpu,
    );
    let per_thread: Vec<String> = threads_cpu
        .iter()
        .map(|(name, cpu)| format!("{name} {cpu:.1} s"))
        .collect();
    println!("  threads      {}", per_thread.join(", "));
    // Start-up and the final partial batch (which waits `batch.timeout_ms`) are fixed costs
    // of a finite run; the rate between 5% and 95% arrived is the sustained one.
    let steady = steady_rate(&samples, lines)
        .map(|lines_per_s| lines_per_s * bytes as f64 / lines as f64 / 1e6);
    if let Some(steady) = steady {
        println!(
            "  steady       {steady:7.1} MB/s  {:9.0} lines/s  (between 5% and 95% of lines arrived)",
            steady * 1e6 * lines as f64 / bytes as f64
        );
    }
    println!(
        "  ratio        {:.0}% of ceiling throughput end to end{}, {:.2}x ceiling CPU per GB",
        100.0 * mbps / c_mbps,
        steady.map_or(String::new(), |s| format!(
            " ({:.0}% steady)",
            100.0 * s / c_mbps
        )),
        cpu_gb / c_cpu_gb
    );
    let dups = fin["duplicates"].as_u64().unwrap_or(0);
    let distinct = s["distinct"].as_u64().unwrap_or(0);
    println!(
        "  verified     {distinct} of {lines} lines arrived, {dups} duplicates, {} unrecognised; shipper exit {status}",
        fin["unrecognised"]
    );
    if distinct != lines || dups != 0 || !status.success() {
        bail!("verification failed");
    }
    Ok(())
}

/// Lines per second between the samples where 5% and 95% of `lines` had arrived.
fn steady_rate(samples: &[(f64, u64)], lines: u64) -> Option<f64> {
    let at = |fraction: f64| {
        let target = (lines as f64 * fraction) as u64;
        samples.iter().find(|(_, n)| *n >= target).copied()
    };
    let (t1, n1) = at(0.05)?;
    let (t2, n2) = at(0.95)?;
    (t2 > t1 && n2 > n1).then(|| (n2 - n1) as f64 / (t2 - t1))
}

pub async fn idle(files: usize, seconds: u64) -> anyhow::Result<()> {
    let (_tmp, dir) = temp_or(&None)?;
    let logs = dir.join("logs");
    fs::create_dir_all(&logs)?;
    let mut rng = fastrand::Rng::with_seed(7);
    let mut buf = Vec::new();
    for f in 0..files {
        buf.clear();
        for seq in 0..10 {
            bench_line(
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

pub async fn latency(rate: u64, seconds: u64, files: usize, timeout_ms: u64) -> anyhow::Result<()> {
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
    // Wait until the shipper watches the files (its first line arrives).
    let mut handles: Vec<File> = paths
        .iter()
        .map(|p| OpenOptions::new().append(true).open(p))
        .collect::<Result<_, _>>()?;
    let mut rng = fastrand::Rng::with_seed(3);
    let mut seqs = vec![0u64; files];
    let now_us = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0)
    };
    let mut buf = Vec::new();
    bench_line(&mut buf, &mut rng, 0, 0, 200, 0);
    handles[0].write_all(&buf)?;
    seqs[0] = 1;
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
    let start = Instant::now();
    let mut written = 1u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        let due = 1 + (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while written < due {
            let f = (written % files as u64) as usize;
            buf.clear();
            bench_line(&mut buf, &mut rng, f, seqs[f], 200, now_us());
            seqs[f] += 1;
            handles[f].write_all(&buf)?;
            written += 1;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let s = wait_arrived(
        &client,
        &url,
        written,
        &mut shipper,
        &log,
        Duration::from_secs(60),
        None,
    )
    .await?;
    terminate(&mut shipper)?;
    terminate(&mut intake)?;
    println!(
        "sidelog bench latency: {rate} lines/s for {seconds} s over {files} files, batch.timeout_ms = {timeout_ms}: p50 {} ms, p99 {} ms, max {} ms ({} lines, {} duplicates)",
        s["latency_p50_ms"],
        s["latency_p99_ms"],
        s["latency_max_ms"],
        s["distinct"],
        s["duplicates"]
    );
    Ok(())
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
