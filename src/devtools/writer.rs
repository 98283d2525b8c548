//! A writer like an application's: sample lines at a steady rate over some files, on a thread
//! of its own, either each line with a write(2) of its own when it is due (as most logging
//! libraries write) or one append per file per interval. The demo and the benchmarks write
//! with it.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Writes benchmark lines like an app: `rate` lines/s over some files, one append per file
/// every `interval` (zero: each line on its own when it is due), on a thread of its own.
pub struct PacedLines {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    handle: std::thread::JoinHandle<std::io::Result<()>>,
}

impl PacedLines {
    pub fn start(
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
        let bytes = Arc::new(AtomicU64::new(0));
        let counts = Counts {
            stop: stop.clone(),
            lines: written.clone(),
            bytes: bytes.clone(),
        };
        let handle =
            std::thread::spawn(move || write_paced(files, rate, interval, line_bytes, &counts));
        Ok(PacedLines {
            stop,
            written,
            bytes,
            handle,
        })
    }

    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    pub fn written_bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Stops writing; returns how many lines were written.
    pub fn finish(self) -> anyhow::Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.join() {
            Ok(r) => r.context("writer failed")?,
            Err(_) => bail!("writer panicked"),
        }
        Ok(self.written.load(Ordering::Relaxed))
    }
}

/// What the writer thread shares.
struct Counts {
    stop: Arc<AtomicBool>,
    lines: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
}

fn write_paced(
    files: Vec<fs::File>,
    rate: u64,
    interval: Duration,
    line_bytes: usize,
    counts: &Counts,
) -> std::io::Result<()> {
    if interval.is_zero() {
        write_each_line(files, rate, line_bytes, counts)
    } else {
        write_batched(files, rate, interval, line_bytes, counts)
    }
}

/// Each line with a write of its own at its due time (line k at k / rate), the files in turn.
fn write_each_line(
    mut files: Vec<fs::File>,
    rate: u64,
    line_bytes: usize,
    counts: &Counts,
) -> std::io::Result<()> {
    let n = files.len();
    pace_lines(n, rate, line_bytes, 11, &counts.stop, |f, line, total| {
        files[f].write_all(line)?;
        counts.bytes.fetch_add(line.len() as u64, Ordering::Relaxed);
        counts.lines.store(total, Ordering::Relaxed);
        Ok(())
    })
}

/// Makes sample lines at `rate` over `files` files until `stop`: line k at k / rate, the
/// files in turn, each handed to `write` with its file, its bytes and how many lines there
/// are with it. The writer's and the soak's apps (which rotate the files under it) both
/// write this way.
pub(crate) fn pace_lines(
    files: usize,
    rate: u64,
    line_bytes: usize,
    seed: u64,
    stop: &AtomicBool,
    mut write: impl FnMut(usize, &[u8], u64) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let n = files.max(1);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut seqs = vec![0u64; n];
    let mut buf = Vec::new();
    let pace = Pace::new(rate);
    let mut total = 0u64;
    while !stop.load(Ordering::Relaxed) {
        pace.wait_for(total);
        let f = (total % n as u64) as usize;
        buf.clear();
        sidelog_sample::line(
            &mut buf,
            &mut rng,
            f,
            seqs[f],
            line_bytes,
            sidelog_shipper::clock::now_us(),
        );
        seqs[f] += 1;
        total += 1;
        write(f, &buf, total)?;
    }
    Ok(())
}

/// When the lines of a writer like an app's are due: line k at k / rate after it started.
/// The benchmarks' writers and the tests' numbered writer keep time with it.
pub struct Pace {
    start: Instant,
    per_line: Duration,
}

impl Pace {
    /// Lines at `rate` a second, from now.
    pub fn new(rate: u64) -> Pace {
        Pace {
            start: Instant::now(),
            per_line: Duration::from_secs_f64(1.0 / rate.max(1) as f64),
        }
    }

    /// Sleeps until line `k` (from 0) is due; at once if it is late.
    pub fn wait_for(&self, k: u64) {
        let due_at = self.start + self.per_line.mul_f64(k as f64);
        if let Some(wait) = due_at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

/// One append per file every `interval`, holding the lines due since the last one.
fn write_batched(
    mut files: Vec<fs::File>,
    rate: u64,
    interval: Duration,
    line_bytes: usize,
    counts: &Counts,
) -> std::io::Result<()> {
    let n = files.len().max(1);
    let mut rng = fastrand::Rng::with_seed(11);
    let mut seqs = vec![0u64; n];
    let mut buf = Vec::new();
    let start = Instant::now();
    let mut total = 0u64;
    let mut tick = 0u32;
    while !counts.stop.load(Ordering::Relaxed) {
        tick += 1;
        let due_at = start + interval * tick;
        let due = (rate as f64 * (due_at - start).as_secs_f64()) as u64;
        if let Some(wait) = due_at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let now_us = sidelog_shipper::clock::now_us();
        // This tick's lines, one append per file.
        let lines = due.saturating_sub(total);
        for (f, file) in files.iter_mut().enumerate() {
            buf.clear();
            let share = lines / n as u64 + u64::from((f as u64) < lines % n as u64);
            for _ in 0..share {
                sidelog_sample::line(&mut buf, &mut rng, f, seqs[f], line_bytes, now_us);
                seqs[f] += 1;
            }
            if !buf.is_empty() {
                file.write_all(&buf)?;
                counts.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
            }
        }
        total += lines;
        counts.lines.store(total, Ordering::Relaxed);
    }
    Ok(())
}
