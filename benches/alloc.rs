//! Heap allocations per line in the steady state of framing + encoding + batching, counted by
//! a wrapping global allocator. Run with `cargo bench --bench alloc`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use sidelog_shipper::encode::{BatchBuilder, EventFields, EventRange, EventTemplate, LinePiece};
use sidelog_shipper::position::StreamId;
use sidelog_shipper::tail::frame::frame;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() {
    let data = sidelog_sample::corpus(4 << 20);
    let template = EventTemplate::new(&EventFields {
        status: "info",
        hostname: "host",
        service: "svc",
        source: "go",
        tags: "env:prod,filename:app.log",
    });
    let mut builder = BatchBuilder::new(1000, 4_500_000);
    let run = |builder: &mut BatchBuilder| -> u64 {
        let mut lines = 0u64;
        let mut full = Vec::new();
        let mut cont = false;
        frame(&data, 900_000, &mut cont, false, |f| {
            lines += 1;
            builder.append_line(
                &template,
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
                    cut_before: false,
                    cut_after: false,
                    status: None,
                },
                &mut |b| full.push(b),
            );
            // As the pipeline does: sent batches give their buffers back.
            for b in full.drain(..) {
                builder.recycle(b.body);
            }
        });
        lines
    };
    // Warm up: buffers reach their steady-state size.
    run(&mut builder);
    let (a0, b0) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    let mut lines = 0;
    for _ in 0..10 {
        lines += run(&mut builder);
    }
    let allocs = ALLOCS.load(Ordering::Relaxed) - a0;
    let bytes = BYTES.load(Ordering::Relaxed) - b0;
    println!(
        "steady state: {lines} lines, {allocs} allocations ({:.4} per line, {:.1} bytes per line)",
        allocs as f64 / lines as f64,
        bytes as f64 / lines as f64
    );
}
