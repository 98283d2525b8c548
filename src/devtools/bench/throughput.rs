//! `sidelog bench throughput`: ships generated files as fast as it can, next to the ceiling
//! (the same lines encoded into the same batches and compressed on the same number of
//! threads, with no I/O).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;

use super::*;
use sidelog_shipper::compress::CodecKind;
use sidelog_shipper::config::Compression;
use sidelog_shipper::encode::{Batch, BatchBuilder, EventFields, EventTemplate};

#[derive(Debug, Clone, clap::Args)]
pub struct ThroughputOptions {
    /// Megabytes of log lines to generate.
    #[arg(long, default_value_t = 1024)]
    pub mb: u64,
    #[arg(long, default_value_t = 4)]
    pub files: usize,
    /// Approximate bytes per line, newline included.
    #[arg(long, default_value_t = 256)]
    pub line_bytes: usize,
    /// auto, zstd, gzip, deflate or none.
    #[arg(long, default_value = "gzip")]
    pub compression: Compression,
    /// Compression level (default: the codec's).
    #[arg(long)]
    pub level: Option<i32>,
    /// Requests in flight: a number or "adaptive" (the shipper's default).
    #[arg(long, default_value = "adaptive")]
    pub request_concurrency: sidelog_shipper::config::RequestConcurrency,
    /// Delay the intake adds to every answer (a distant intake).
    #[arg(long, default_value_t = 0)]
    pub intake_latency_ms: u64,
    /// Ship with one mask_sequences rule (card numbers) to measure a rule's cost.
    #[arg(long)]
    pub mask: bool,
    /// `batch.max_bytes` of the shipper.
    #[arg(long, default_value_t = 2_000_000)]
    pub max_bytes: usize,
    /// `datadog.compression_threads` of the shipper (default: its own default).
    #[arg(long)]
    pub compression_threads: Option<usize>,
    /// Threads for the ceiling (default: number of cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Directory for the generated files (default: a temporary one).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Let the intake decompress and check each body before answering (by default it answers
    /// at once and checks later, when a core is free, so that its work does not compete with
    /// the shipper's for the machine's cores; every line is checked either way).
    #[arg(long)]
    pub verify_inline: bool,
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
    let chunks = chunks_of(&data);
    let next = AtomicUsize::new(0);
    let totals = (AtomicUsize::new(0), AtomicUsize::new(0));
    let cpu0 = own_cpu();
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut worker = CeilingWorker::new(paths, opts, &totals);
                while let Some(&(f, start, end)) = chunks.get(next.fetch_add(1, Ordering::Relaxed))
                {
                    worker.encode(f, start, &data[f][start..end]);
                }
                worker.finish();
            });
        }
    });
    Ok(CeilingResult {
        wall: t0.elapsed(),
        cpu: own_cpu() - cpu0,
        json_bytes: totals.0.load(Ordering::Relaxed) as u64,
        compressed_bytes: totals.1.load(Ordering::Relaxed) as u64,
    })
}

/// The files cut into reads of 256 KiB ending at a newline, as the reader reads them:
/// (file, start, end).
fn chunks_of(data: &[Vec<u8>]) -> Vec<(usize, usize, usize)> {
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
    chunks
}

/// One thread of the ceiling: frames, encodes and compresses chunks, counting JSON and
/// compressed bytes into `totals`.
struct CeilingWorker<'a> {
    templates: Vec<EventTemplate>,
    builder: BatchBuilder,
    out: Vec<u8>,
    opts: &'a ThroughputOptions,
    totals: &'a (AtomicUsize, AtomicUsize),
}

impl<'a> CeilingWorker<'a> {
    fn new(
        paths: &[PathBuf],
        opts: &'a ThroughputOptions,
        totals: &'a (AtomicUsize, AtomicUsize),
    ) -> CeilingWorker<'a> {
        CeilingWorker {
            templates: paths.iter().map(|p| bench_template(p)).collect(),
            builder: BatchBuilder::new(1000, opts.max_bytes),
            out: Vec::new(),
            opts,
            totals,
        }
    }

    fn encode(&mut self, f: usize, start: usize, buf: &[u8]) {
        let mut ready = Vec::new();
        frame_into(
            &mut self.builder,
            &self.templates[f],
            (f as u64, start),
            buf,
            |_| 1_764_000_000_000,
            &mut |b| ready.push(b),
        );
        for b in ready {
            self.compress(b);
        }
    }

    fn compress(&mut self, batch: Batch) {
        self.totals.0.fetch_add(batch.body.len(), Ordering::Relaxed);
        let o = self.opts;
        let codec = o.compression.codec(o.level);
        if sidelog_shipper::compress::compress(codec, &batch.body, &mut self.out).is_ok() {
            self.totals.1.fetch_add(self.out.len(), Ordering::Relaxed);
        }
        self.builder.recycle(batch.body);
    }

    fn finish(mut self) {
        if let Some(b) = self.builder.take() {
            self.compress(b);
        }
    }
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

pub async fn throughput(mut opts: ThroughputOptions) -> anyhow::Result<()> {
    opts.files = opts.files.max(1);
    opts.line_bytes = opts.line_bytes.max(64);
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
        opts.compression.codec(opts.level).content_encoding(),
        opts.compression.codec(opts.level).level,
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
    println!(
        "  ceiling      {:7.1} MB/s  {:9.0} lines/s  CPU {:5.1} s/GB   (encode + compress, {threads} threads, no I/O; JSON {:.0} MB -> {:.0} MB)",
        bytes as f64 / 1e6 / c.wall.as_secs_f64(),
        lines as f64 / c.wall.as_secs_f64(),
        c.cpu / (bytes as f64 / 1e9),
        c.json_bytes as f64 / 1e6,
        c.compressed_bytes as f64 / 1e6,
    );
    let run = ship_all(&dir, &logs, &opts, lines).await?;
    report(&run, &c, lines, bytes)?;
    report_memory(&opts, &c, run.hwm_kb);
    Ok(())
}

/// The shipper's memory bound for these settings (docs/design.md, "How it works"), next to its peak.
fn report_memory(opts: &ThroughputOptions, c: &CeilingResult, hwm_kb: u64) {
    let mut d = sidelog_shipper::config::DatadogConfig {
        compression: opts.compression,
        compression_threads: opts.compression_threads.unwrap_or(0),
        request_concurrency: opts.request_concurrency,
        ..Default::default()
    };
    d.compression_level = opts.level;
    let compressors = d.compressors() as f64;
    let slow = f64::from(u8::from(d.compression.codec(None).kind != CodecKind::Zstd));
    let in_flight = d.request_concurrency.max(d.request_concurrency_max) as f64;
    // A batch: max_bytes, or 1,000 events of the line's JSON (about 200 bytes more).
    let batch = (opts.max_bytes as f64).min(1000.0 * (opts.line_bytes as f64 + 200.0)) / 1e6;
    let ratio = c.compressed_bytes as f64 / c.json_bytes.max(1) as f64;
    let bound = MEMORY_BASE_MB
        + (compressors + 3.0 + slow) * batch
        + (in_flight + 2.0 * compressors) * batch * ratio;
    let peak = hwm_kb as f64 / 1024.0;
    println!(
        "  memory       peak {peak:.1} MB, bound {bound:.1} MB = {MEMORY_BASE_MB} + ({compressors} compressors + {}) x {batch:.2} MB batches + ({in_flight} requests + {}) x {:.2} MB compressed{}",
        3.0 + slow,
        2.0 * compressors,
        batch * ratio,
        if peak <= bound {
            ""
        } else {
            "  OVER THE BOUND"
        }
    );
}

/// What the shipper holds besides batches: code, runtime, threads, TLS, HTTP and codec state
/// (measured: 6.5-7.5 MB idle, about 16 MB at full speed with small batches).
const MEMORY_BASE_MB: f64 = 16.0;

/// What shipping the generated files measured.
struct ShipRun {
    /// From the shipper's start until the intake received the body with the last new line.
    wall: Duration,
    cpu: f64,
    hwm_kb: u64,
    intake_cpu: f64,
    /// The intake checked bodies after answering, on idle cores (not `--verify-inline`).
    checked_later: bool,
    threads_cpu: Vec<(String, f64)>,
    /// (seconds since the shipper's start, distinct lines received by then).
    samples: Vec<(f64, u64)>,
    status: std::process::ExitStatus,
    distinct: u64,
    /// Request bodies as they came over the wire.
    wire_bytes: u64,
    duplicates: u64,
    unrecognised: u64,
}

/// Ships the files in `logs` with a shipper of its own against a verifying intake, until
/// every line arrived.
async fn ship_all(
    dir: &Path,
    logs: &Path,
    opts: &ThroughputOptions,
    lines: u64,
) -> anyhow::Result<ShipRun> {
    let verify = if opts.verify_inline {
        "--verify"
    } else {
        "--verify-later"
    };
    let (mut intake, url) = start_intake_with(opts.intake_latency_ms, verify)?;
    // Only what differs from the defaults is written, so an older build can be measured
    // with the same options.
    let mut datadog = DatadogConfig {
        compression: opts.compression,
        compression_level: opts.level,
        request_concurrency: opts.request_concurrency,
        ..DatadogConfig::default()
    };
    if let Some(threads) = opts.compression_threads {
        datadog.compression_threads = threads;
    }
    let config = write_config(
        dir,
        &format!("{}/*.log", logs.display()),
        &url,
        datadog,
        |c| {
            c.batch.max_bytes = opts.max_bytes;
            if opts.mask {
                c.inputs[0].log_processing_rules.push(mask_rule());
            }
        },
    )?;
    let log = dir.join("shipper.log");
    let client = reqwest::Client::new();
    let t0_us = sidelog_shipper::clock::now_us();
    let mut shipper = start_shipper(&config, &log)?;
    let pid = shipper.0.id();
    let timeout = Duration::from_secs(3600);
    let s = wait_arrived(&client, &url, lines, &mut shipper, &log, timeout).await?;
    // The shipper is asleep once everything is accepted, so its CPU and peak memory read
    // after a deferred check are the run's.
    let (cpu, hwm_kb) = (
        proc_cpu(pid).unwrap_or(0.0),
        proc_status_kb(pid, "VmHWM").unwrap_or(0),
    );
    let (intake_cpu, threads_cpu) = (proc_cpu(intake.0.id()).unwrap_or(0.0), thread_cpu(pid));
    let status = terminate(&mut shipper)?;
    let fin = stats(&client, &url).await?;
    let samples = arrival_curve(&client, &url, t0_us).await?;
    terminate(&mut intake)?;
    let last_us = s["last_new_us"].as_u64().unwrap_or(t0_us);
    Ok(ShipRun {
        wall: Duration::from_micros(last_us.saturating_sub(t0_us)),
        cpu,
        hwm_kb,
        intake_cpu,
        checked_later: !opts.verify_inline,
        threads_cpu,
        samples,
        status,
        distinct: s["distinct"].as_u64().unwrap_or(0),
        wire_bytes: fin["wire_bytes"].as_u64().unwrap_or(0),
        duplicates: fin["duplicates"].as_u64().unwrap_or(0),
        unrecognised: fin["unrecognised"].as_u64().unwrap_or(0),
    })
}

/// The intake's arrival curve as (seconds since `t0_us`, distinct lines).
async fn arrival_curve(
    client: &reqwest::Client,
    url: &str,
    t0_us: u64,
) -> anyhow::Result<Vec<(f64, u64)>> {
    let curve = get_json(client, url, "/arrivals").await?;
    let points = curve["arrivals"].as_array().cloned().unwrap_or_default();
    Ok(points
        .iter()
        .filter_map(|p| {
            let at = p.get(0)?.as_u64()?;
            let n = p.get(1)?.as_u64()?;
            Some((at.saturating_sub(t0_us) as f64 / 1e6, n))
        })
        .collect())
}

/// Prints the end-to-end figures next to the ceiling's; fails unless every line arrived once.
fn report(run: &ShipRun, c: &CeilingResult, lines: u64, bytes: u64) -> anyhow::Result<()> {
    let gb = bytes as f64 / 1e9;
    let c_mbps = bytes as f64 / 1e6 / c.wall.as_secs_f64();
    let mbps = bytes as f64 / 1e6 / run.wall.as_secs_f64();
    let cpu_gb = run.cpu / gb;
    println!(
        "  on the wire  {:.1} MB per GB of log lines",
        run.wire_bytes as f64 / 1e6 / gb
    );
    println!(
        "  end-to-end   {mbps:7.1} MB/s  {:9.0} lines/s  CPU {cpu_gb:5.1} s/GB   peak RSS {:.1} MB   ({:.1} s; intake used {:.1} CPU s{})",
        lines as f64 / run.wall.as_secs_f64(),
        run.hwm_kb as f64 / 1024.0,
        run.wall.as_secs_f64(),
        run.intake_cpu,
        if run.checked_later {
            ", checking mostly after the run"
        } else {
            ", checking as it received"
        },
    );
    let per_thread: Vec<String> = run
        .threads_cpu
        .iter()
        .map(|(name, cpu)| format!("{name} {cpu:.1} s"))
        .collect();
    println!("  threads      {}", per_thread.join(", "));
    // Start-up and the final partial batch (which waits `batch.timeout_ms`) are fixed costs
    // of a finite run; the rate between 5% and 95% arrived is the sustained one.
    let steady = steady_rate(&run.samples, lines)
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
        cpu_gb / (c.cpu / gb)
    );
    println!(
        "  verified     {} of {lines} lines arrived, {} duplicates, {} unrecognised; shipper exit {}",
        run.distinct, run.duplicates, run.unrecognised, run.status
    );
    if run.distinct != lines || run.duplicates != 0 || !run.status.success() {
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
