//! Rotation at full speed, and rotation of a quiet file: every line checked at the intake.
//!
//! Four files at 5,000 lines/s each (400,000 lines), rotated at 4 MB by copytruncate after a
//! 300 ms pause, or by rename with the app reopening. copytruncate loses what the reader has
//! not read when the file is truncated unless that is read from the copy: a reader behind (a
//! busy machine, a slow intake) or asleep gathering writes (a quiet Pod) met it, and lost
//! lines. CI runs this file beside a CPU hog too.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::harness::*;

const FILES: usize = 4;
const RATE_PER_FILE: u64 = 5_000;
const LINES_PER_FILE: u64 = 100_000;
const LINE_BYTES: usize = 200;
const ROTATE_AT: u64 = 4 << 20;
const PAUSE: Duration = Duration::from_millis(300);

#[derive(Clone, Copy)]
enum Rotation {
    /// Pause, copy to `.N`, truncate in place, go on writing through the same descriptor.
    CopyTruncate,
    /// Pause, rename to `.N`, reopen the name.
    Rename,
}

/// One app writing `LINES_PER_FILE` sample lines to `path` at `RATE_PER_FILE`, rotating it.
fn app(path: PathBuf, file: usize, rotation: Rotation, rotations: Arc<AtomicU64>) {
    let open = |p: &Path| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .expect("open log")
    };
    let mut out = open(&path);
    let mut rng = fastrand::Rng::with_seed(file as u64);
    let mut buf = Vec::with_capacity(LINE_BYTES * 2);
    let start = Instant::now();
    let per_line = Duration::from_secs_f64(1.0 / RATE_PER_FILE as f64);
    let mut since_rotation = 0u64;
    let mut generation = 0;
    for seq in 0..LINES_PER_FILE {
        if let Some(wait) =
            (start + per_line.mul_f64(seq as f64)).checked_duration_since(Instant::now())
        {
            std::thread::sleep(wait);
        }
        buf.clear();
        sidelog_sample::line(
            &mut buf,
            &mut rng,
            file,
            seq,
            LINE_BYTES,
            sidelog_shipper::clock::now_us(),
        );
        out.write_all(&buf).expect("write line");
        since_rotation += buf.len() as u64;
        if since_rotation >= ROTATE_AT {
            std::thread::sleep(PAUSE);
            generation += 1;
            let rotated = PathBuf::from(format!("{}.{generation}", path.display()));
            match rotation {
                Rotation::CopyTruncate => {
                    fs::copy(&path, &rotated).expect("copy");
                    OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .and_then(|f| f.set_len(0))
                        .expect("truncate");
                }
                Rotation::Rename => {
                    fs::rename(&path, &rotated).expect("rename");
                    out = open(&path);
                }
            }
            rotations.fetch_add(1, Ordering::Relaxed);
            since_rotation = 0;
        }
    }
}

fn rotate_at_full_speed(rotation: Rotation) {
    let mut h = Harness::new();
    h.start_intake_with(None, |o| {
        o.keep_events = false;
        o.verify = true;
    });
    let config = h.config_with(|c| {
        c.batch.timeout_ms = 100;
        c.tail.rotated_linger_ms = 1000;
    });
    h.start(&config);
    h.wait_stderr("globs rescanned", Duration::from_secs(30));
    let rotations = Arc::new(AtomicU64::new(0));
    let apps: Vec<_> = (0..FILES)
        .map(|i| {
            let path = h.log(&format!("app-{i}.log"));
            let r = rotations.clone();
            std::thread::spawn(move || app(path, i, rotation, r))
        })
        .collect();
    for a in apps {
        a.join().expect("app");
    }
    let total = FILES as u64 * LINES_PER_FILE;
    let deadline = Instant::now() + Duration::from_secs(60);
    while h.intake().state.stats()["distinct"].as_u64() < Some(total) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(h.terminate().success(), "{}", h.stderr());
    let s = h.intake().state.stats();
    assert!(rotations.load(Ordering::Relaxed) >= FILES as u64 * 4, "{s}");
    assert_eq!(
        (s["distinct"].as_u64(), s["duplicates"].as_u64()),
        (Some(total), Some(0)),
        "{s}"
    );
}

/// A quiet app (20 lines/s) whose log is copytruncated after a 300 ms pause, with the
/// default batch settings: the reader gathers a quiet Pod's writes for up to a batch's
/// timeout (1 s) before it reads them, so the last lines before the pause were often unread
/// at the truncation (5 or 6 lost per rotation); they are read from the copy now.
#[test]
fn copytruncate_of_a_quiet_file_loses_nothing() {
    let mut h = Harness::with_intake();
    let config = h.config_with(|_| {});
    h.start(&config);
    h.wait_stderr("globs rescanned", Duration::from_secs(30));
    let path = h.log("app.log");
    let mut out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("open");
    let mut seq = 0;
    for round in 0..5 {
        for _ in 0..30 {
            writeln!(out, "q {seq:08}").expect("write");
            seq += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(PAUSE);
        fs::copy(&path, h.log(&format!("app.log.{round}"))).expect("copy");
        out.set_len(0).expect("truncate");
    }
    for _ in 0..10 {
        writeln!(out, "q {seq:08}").expect("write");
        seq += 1;
    }
    h.wait_events(seq, Duration::from_secs(60));
    assert!(h.terminate().success(), "{}", h.stderr());
    assert_each_once(&h.messages(), "q ", seq);
}

#[test]
fn copytruncate_after_a_pause_loses_nothing_at_full_speed() {
    rotate_at_full_speed(Rotation::CopyTruncate);
}

#[test]
fn rename_and_reopen_loses_nothing_at_full_speed() {
    rotate_at_full_speed(Rotation::Rename);
}
