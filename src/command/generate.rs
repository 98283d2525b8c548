//! `sidelog generate`: writes sample lines into a file like an application would (the
//! stand-in app of the example Pods), at a steady rate.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::logging;
use super::runtime::block_on;
use sidelog_sample as sample;
use sidelog_shipper::config::{LogFormat, LogLevel};

/// `sidelog generate`.
pub fn generate(opts: GenerateOptions) -> ExitCode {
    logging::init(LogLevel::Warn, LogFormat::Text);
    block_on(|stop| async move {
        tokio::task::spawn_blocking(move || generate_lines(opts, stop)).await?
    })
}

/// `sidelog generate`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateOptions {
    /// File to append to (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Lines per second (0: as fast as possible).
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// Stop after this many lines (default: no limit).
    #[arg(long)]
    lines: Option<u64>,
    /// Stop after this many seconds (default: no limit).
    #[arg(long)]
    seconds: Option<u64>,
    /// Approximate bytes per line, newline included.
    #[arg(long, default_value_t = 256)]
    line_bytes: usize,
    /// Number the lines from here (to continue an earlier run).
    #[arg(long, default_value_t = 0)]
    first: u64,
}

/// Appends numbered sample lines to a file at a steady rate until a limit or `stop`; prints
/// how many it wrote. Lines carry the prefix the verifying intake checks.
fn generate_lines(opts: GenerateOptions, stop: CancellationToken) -> anyhow::Result<()> {
    let line_bytes = opts.line_bytes.max(64);
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
        let now_us = sidelog_shipper::clock::now_us();
        while written < due {
            sample::line(
                &mut buf,
                &mut rng,
                0,
                opts.first + written,
                line_bytes,
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
