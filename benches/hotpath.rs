//! Hot-path micro-benchmarks: framing, UTF-8 check, JSON escaping, batch building, codecs.
//! Run with `cargo bench --bench hotpath`; compare ratios within one run.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sidelog_shipper::compress::CodecKind;
use sidelog_shipper::encode::{
    BatchBuilder, EventFields, EventRange, EventTemplate, LinePiece, escape_str,
};
use sidelog_shipper::position::StreamId;
use sidelog_shipper::tail::frame::frame;

/// About 1 MiB of mixed access-log and JSON lines, ~200 bytes each.
fn sample() -> Vec<u8> {
    sidelog_sample::corpus(1 << 20)
}

fn template() -> EventTemplate {
    EventTemplate::new(&EventFields {
        status: "info",
        hostname: "user-msvc-7d9f8b6c5d-x2x9k",
        service: "user-msvc",
        source: "go",
        tags: "env:prod,team:users,filename:user-msvc.log",
    })
}

fn bench(c: &mut Criterion) {
    let data = sample();
    let lines = data.iter().filter(|&&b| b == b'\n').count();
    let mut g = c.benchmark_group("hotpath");
    g.throughput(Throughput::Bytes(data.len() as u64));

    g.bench_function("frame", |b| {
        b.iter(|| {
            let mut n = 0usize;
            let mut cont = false;
            frame(black_box(&data), 900_000, &mut cont, false, |f| {
                n += f.text_len
            });
            n
        })
    });
    g.bench_function("utf8_check", |b| {
        b.iter(|| simdutf8::basic::from_utf8(black_box(&data)).is_ok())
    });
    g.bench_function("escape", |b| {
        let mut out = Vec::with_capacity(data.len() * 2);
        b.iter(|| {
            out.clear();
            escape_str(&mut out, black_box(&data));
            out.len()
        })
    });
    let t = template();
    g.bench_function("frame_encode_batch", |b| {
        let mut builder = BatchBuilder::new(1000, 4_500_000);
        b.iter(|| {
            let mut batches = 0;
            let mut cont = false;
            let mut emit = |batch: sidelog_shipper::encode::Batch| {
                batches += 1;
                black_box(batch.body.len());
            };
            frame(&data, 900_000, &mut cont, false, |f| {
                builder.append_line(
                    &t,
                    1_764_000_000_000,
                    EventRange {
                        stream: StreamId(1),
                        start: f.text_start as u64,
                        text_offset: f.text_start as u64,
                        end: f.end as u64,
                    },
                    LinePiece {
                        text: &data[f.text_start..f.text_start + f.text_len],
                        valid_utf8: true,
                        cut_before: f.cut_before,
                        cut_after: f.cut_after,
                        status: None,
                    },
                    &mut emit,
                );
            });
            if let Some(batch) = builder.take() {
                emit(batch);
            }
            batches
        })
    });
    g.finish();

    // Codecs on one encoded batch's worth of JSON.
    let mut builder = BatchBuilder::new(1000, 4_500_000);
    let mut json = Vec::new();
    let mut cont = false;
    frame(&data, 900_000, &mut cont, false, |f| {
        builder.append_line(
            &t,
            1_764_000_000_000,
            EventRange {
                stream: StreamId(1),
                start: 0,
                text_offset: 0,
                end: 0,
            },
            LinePiece {
                text: &data[f.text_start..f.text_start + f.text_len],
                valid_utf8: true,
                cut_before: false,
                cut_after: false,
                status: None,
            },
            &mut |b| {
                if json.is_empty() {
                    json = b.body;
                }
            },
        );
    });
    let mut g = c.benchmark_group("compress");
    g.throughput(Throughput::Bytes(json.len() as u64));
    g.sample_size(20);
    for (name, codec) in [
        ("gzip1", CodecKind::Gzip.at(Some(1))),
        ("gzip6", CodecKind::Gzip.at(Some(6))),
        ("deflate6", CodecKind::Deflate.at(Some(6))),
        ("zstd1", CodecKind::Zstd.at(Some(1))),
        ("zstd3", CodecKind::Zstd.at(Some(3))),
    ] {
        let mut out = Vec::with_capacity(json.len());
        g.bench_function(name, |b| {
            b.iter(|| {
                sidelog_shipper::compress::compress(codec, black_box(&json), &mut out)
                    .map(|()| out.len())
            })
        });
    }
    g.finish();
    eprintln!(
        "sample: {} bytes, {lines} lines; batch JSON {} bytes",
        data.len(),
        json.len()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
