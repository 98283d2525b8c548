//! Cost of each processing stage per MB of lines: the rules, multi-line grouping and JSON
//! attributes, next to the line framing every input pays. Run with
//! `cargo bench --bench process`; compare ratios within one run.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sidelog_shipper::config::{Input, MultilineSettings, Preset, RuleKind, RuleSettings};
use sidelog_shipper::process::{Grouping, LineAction, Processor, json_attributes};
use sidelog_shipper::tail::frame::frame;

/// About 1 MiB of mixed access-log and JSON lines, ~200 bytes each.
fn sample() -> Vec<u8> {
    sidelog_sample::corpus(1 << 20)
}

fn lines(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut cont = false;
    frame(data, 900_000, &mut cont, false, |f| {
        out.push(&data[f.text_start..f.text_start + f.text_len])
    });
    out
}

fn processor(rules: Vec<RuleSettings>, multiline: Option<MultilineSettings>) -> Processor {
    let input = Input {
        log_processing_rules: rules,
        multiline,
        ..Input::default()
    };
    match Processor::new(&input.processing(&[]), 0, None) {
        Ok(Some(p)) => p,
        _ => panic!("bench processor"),
    }
}

fn rule(kind: RuleKind, pattern: &str) -> RuleSettings {
    RuleSettings {
        kind,
        name: "bench".into(),
        pattern: pattern.into(),
        replace_placeholder: "[masked]".into(),
    }
}

fn bench(c: &mut Criterion) {
    let data = sample();
    let lines = lines(&data);
    let mut g = c.benchmark_group("process");
    g.throughput(Throughput::Bytes(data.len() as u64));

    g.bench_function("frame_only", |b| {
        b.iter(|| {
            let mut n = 0usize;
            let mut cont = false;
            frame(black_box(&data), 900_000, &mut cont, false, |f| {
                n += f.text_len
            });
            n
        })
    });
    for (name, p) in [
        (
            "mask_card_numbers",
            processor(
                vec![rule(RuleKind::MaskSequences, r"\b\d{4}(?:[ -]?\d{4}){3}\b")],
                None,
            ),
        ),
        (
            "exclude_at_match",
            processor(vec![rule(RuleKind::ExcludeAtMatch, "GET /healthz")], None),
        ),
        (
            "include_at_match",
            processor(vec![rule(RuleKind::IncludeAtMatch, "status|level")], None),
        ),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut kept = 0usize;
                for l in &lines {
                    if let Some(out) = p.finish(std::borrow::Cow::Borrowed(black_box(l)), false) {
                        kept += out.text.len();
                    }
                }
                kept
            })
        });
    }
    for preset in [Preset::Auto, Preset::Java] {
        let p = processor(
            Vec::new(),
            Some(MultilineSettings {
                preset: Some(preset),
                ..MultilineSettings::default()
            }),
        );
        let Some(ml) = p.multiline.as_ref() else {
            panic!("multiline")
        };
        g.bench_function(format!("multiline_{preset}"), |b| {
            b.iter(|| {
                let mut g = Grouping::default();
                let mut starts = 0usize;
                for l in &lines {
                    if ml.classify(black_box(l), &mut g) != LineAction::Append {
                        starts += 1;
                    }
                }
                starts
            })
        });
    }
    g.bench_function("parse_json", |b| {
        b.iter(|| {
            let mut found = 0usize;
            for l in &lines {
                if json_attributes(black_box(l)).0.is_some() {
                    found += 1;
                }
            }
            found
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
