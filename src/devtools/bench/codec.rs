//! `sidelog bench codec`: what each compression setting costs and saves on the shipper's own
//! batches: generated lines of several shapes are framed and encoded into batches exactly as
//! the shipper builds them (JSON arrays of the Agent's fields, up to `batch.max_events` and
//! `batch.max_bytes`), then every batch is compressed with each setting on one thread. It
//! prints, per GB of log lines, the bytes on the wire and the CPU-seconds compression takes.

use super::*;
use sidelog_sample::Shape;
use sidelog_shipper::compress::{Codec, CodecKind};
use sidelog_shipper::encode::{Batch, BatchBuilder, EventFields, EventTemplate};

#[derive(Debug, Clone, clap::Args)]
pub struct CodecOptions {
    /// Megabytes of log lines per shape.
    #[arg(long, default_value_t = 64)]
    pub mb: u64,
    /// `batch.max_bytes` of the shipper.
    #[arg(long, default_value_t = 2_000_000)]
    pub max_bytes: usize,
    /// `batch.max_events` of the shipper.
    #[arg(long, default_value_t = 1000)]
    pub max_events: usize,
    /// Times each setting compresses every batch; the least CPU of them is reported (the
    /// machine's noise only ever adds).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

/// One compression setting to measure.
struct Setting {
    name: &'static str,
    codec: Codec,
    /// zstd parameters set over the level's own (hash log, minimum match), if any.
    zstd_tuning: Option<(u32, u32)>,
}

fn settings() -> Vec<Setting> {
    let zstd = |name, level, zstd_tuning| Setting {
        name,
        codec: Codec {
            kind: CodecKind::Zstd,
            level,
        },
        zstd_tuning,
    };
    let deflate = |name, kind, level| Setting {
        name,
        codec: Codec { kind, level },
        zstd_tuning: None,
    };
    vec![
        zstd("zstd 1 (sidelog's default)", 1, None),
        zstd("zstd 1, hashLog 16", 1, Some((16, 6))),
        zstd("zstd 1, hashLog 17, minMatch 5", 1, Some((17, 5))),
        zstd("zstd 2", 2, None),
        zstd("zstd 3 (Vector's default)", 3, None),
        deflate("gzip 6 (Fluent Bit, Agent)", CodecKind::Gzip, 6),
        deflate("gzip 1", CodecKind::Gzip, 1),
    ]
}

/// The shapes measured: (name, shape, line bytes).
const SHAPES: [(&str, Shape, usize); 4] = [
    ("256-byte lines", Shape::Mixed, 256),
    ("2 KB lines", Shape::Mixed, 2048),
    ("access log", Shape::Access, 0),
    ("JSON log", Shape::Json, 0),
];

pub async fn codec(opts: CodecOptions) -> anyhow::Result<()> {
    println!(
        "sidelog bench codec: {} MB of lines per shape, batches of up to {} events and {} bytes, one thread, least CPU of {} rounds",
        opts.mb,
        opts.max_events,
        opts.max_bytes,
        opts.rounds.max(1)
    );
    println!(
        "{:<16} {:<32} {:>10} {:>10} {:>10} {:>9}",
        "lines", "setting", "wire MB/GB", "CPU-s/GB", "MB/s", "vs zstd 3"
    );
    for (name, shape, line_bytes) in SHAPES {
        let (log_bytes, batches) = encoded_batches(&opts, shape, line_bytes);
        let mut rows = Vec::new();
        for s in settings() {
            let mut best = measure(&s, &batches)?;
            for _ in 1..opts.rounds {
                let (wire, cpu) = measure(&s, &batches)?;
                best = (wire, best.1.min(cpu));
            }
            rows.push((s.name, best));
        }
        let reference = rows
            .iter()
            .find(|(n, _)| n.starts_with("zstd 3"))
            .map_or(1, |(_, (wire, _))| (*wire).max(1));
        let gb = log_bytes as f64 / 1e9;
        for (setting, (wire, cpu)) in rows {
            println!(
                "{:<16} {:<32} {:>10.1} {:>10.2} {:>10.0} {:>8.0}%",
                name,
                setting,
                wire as f64 / 1e6 / gb,
                cpu / gb,
                log_bytes as f64 / 1e6 / cpu.max(1e-9),
                wire as f64 * 100.0 / reference as f64
            );
        }
    }
    Ok(())
}

/// Generates `opts.mb` MB of lines of `shape` and encodes them into batches, as the reader
/// would from one file: (bytes of log lines, batch bodies).
fn encoded_batches(opts: &CodecOptions, shape: Shape, line_bytes: usize) -> (u64, Vec<Vec<u8>>) {
    let mut rng = fastrand::Rng::with_seed(42);
    let mut text = Vec::with_capacity((opts.mb * 1_000_000) as usize + 4096);
    let mut seq = 0;
    while (text.len() as u64) < opts.mb * 1_000_000 {
        sample::line_shaped(&mut text, &mut rng, shape, 0, seq, line_bytes, 0);
        seq += 1;
    }
    let template = EventTemplate::new(&EventFields {
        status: "info",
        hostname: "web-7d9f8c6b5-x2x4q",
        service: "checkout",
        source: "nginx",
        tags: "env:prod,kube_namespace:shop,pod_name:web-7d9f8c6b5-x2x4q,filename:app.log",
    });
    let mut builder = BatchBuilder::new(opts.max_events, opts.max_bytes);
    let mut bodies = Vec::new();
    let mut keep = |b: Batch| bodies.push(b.body);
    // Times that move as lines do, as a real stream's.
    let timestamp = |end: usize| 1_764_000_000_000 + end as u64 / 256;
    frame_into(&mut builder, &template, (1, 0), &text, timestamp, &mut keep);
    if let Some(b) = builder.take() {
        keep(b);
    }
    (text.len() as u64, bodies)
}

/// Compresses every batch with `s`: (compressed bytes, CPU-seconds).
fn measure(s: &Setting, batches: &[Vec<u8>]) -> anyhow::Result<(u64, f64)> {
    let mut out = Vec::new();
    let mut wire = 0u64;
    let mut zstd = match s.zstd_tuning {
        Some((hash_log, min_match)) => {
            use zstd::zstd_safe::CParameter;
            let mut c = zstd::bulk::Compressor::new(s.codec.level)?;
            c.set_parameter(CParameter::HashLog(hash_log))?;
            c.set_parameter(CParameter::MinMatch(min_match))?;
            Some(c)
        }
        None => None,
    };
    let cpu0 = thread_cpu();
    for body in batches {
        match zstd.as_mut() {
            Some(c) => {
                out.clear();
                out.reserve(zstd::compress_bound(body.len()));
                c.compress_to_buffer(body.as_slice(), &mut out)?;
            }
            None => sidelog_shipper::compress::compress(s.codec, body, &mut out)?,
        }
        wire += out.len() as u64;
    }
    Ok((wire, thread_cpu() - cpu0))
}

/// CPU-seconds this thread has used, to the nanosecond.
fn thread_cpu() -> f64 {
    super::cpu_clock(rustix::time::ClockId::ThreadCPUTime)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The batches measured are the shipper's: JSON arrays within the limits, one event per
    /// line, and every setting's output decodes back to them.
    #[test]
    fn batches_hold_every_line_and_every_setting_round_trips() {
        let opts = CodecOptions {
            mb: 1,
            max_bytes: 200_000,
            max_events: 100,
            rounds: 1,
        };
        let (log_bytes, batches) = encoded_batches(&opts, Shape::Json, 0);
        assert!(log_bytes >= 1_000_000);
        let mut events = 0;
        for b in &batches {
            let parsed: Vec<serde_json::Value> = serde_json::from_slice(b).expect("a JSON array");
            assert!(parsed.len() <= 100 && b.len() <= 200_000);
            events += parsed.len();
        }
        let lines = log_bytes as usize / 150;
        assert!(events > lines / 2, "{events} events");
        for s in settings() {
            let (wire, _) = measure(&s, &batches[..2]).expect("compresses");
            assert!(wire > 0 && wire < (batches[0].len() + batches[1].len()) as u64);
        }
    }
}
