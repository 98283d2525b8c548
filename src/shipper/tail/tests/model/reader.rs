//! The reader under test, driven as its loop would drive it, and sidelog as a change to the
//! files finds it (running, or down with its checkpoints).

use std::fs::{self, File};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use tokio::sync::mpsc;

use super::{MAX_OPEN, Model};
use crate::checkpoint::{Entry, Resume, Tracker};
use crate::config::{Config, ReadFrom};
use crate::encode::Batch;
use crate::metrics::Metrics;
use crate::position::DevIno;
use crate::tail::{Tailer, TailerLinks, Wake};

/// The reader under test, with what it needs around it.
pub(super) struct Reader {
    pub(super) tailer: Tailer,
    pub(super) tracker: Arc<Tracker>,
    pub(super) batches: mpsc::Receiver<Batch>,
}

pub(super) fn config(dir: &Path) -> Config {
    let path = dir.join("sidelog.toml");
    let text = format!(
        "[[inputs]]\ninclude = [\"{}/*.log\"]\nread_from = \"beginning\"\n",
        dir.display()
    );
    fs::write(&path, text).expect("write config");
    let mut config = Config::load_with_env(&path, &[]).expect("valid config");
    // Below what the configuration allows, to exercise the descriptor budget with few files.
    config.tail.max_open_files = MAX_OPEN;
    config.tail.rotated_linger_ms = 0;
    config.tail.read_buffer_bytes = 64;
    assert_eq!(config.inputs[0].read_from, ReadFrom::Beginning);
    config
}

impl Reader {
    pub(super) fn start(config: &Config, resume: Resume) -> Reader {
        let tracker = Arc::new(Tracker::new());
        let (out, batches) = mpsc::channel(4096);
        let (_recycle, recycled) = std::sync::mpsc::channel();
        let mut tailer = Tailer::new(
            config,
            TailerLinks {
                tracker: tracker.clone(),
                metrics: Arc::new(Metrics::default()),
                wake: Arc::new(Wake::default()),
                out,
                recycled,
                delivery: Arc::default(),
                resume,
                pod_tags: None,
                liveness: Arc::new(crate::health::Liveness::new(
                    Duration::from_secs(60),
                    Duration::from_secs(30),
                    Arc::default(),
                )),
            },
        )
        .expect("tailer");
        tailer.files.rescan(true);
        Reader {
            tailer,
            tracker,
            batches,
        }
    }

    /// Whether the file under `path` has a descriptor the reader can read it through.
    pub(super) fn has_descriptor(&self, path: &Path) -> bool {
        let Ok(meta) = fs::metadata(path) else {
            return false;
        };
        let table = self.tailer.files.table();
        table
            .by_id(DevIno::of(&meta))
            .and_then(|k| table.get(k))
            .is_some_and(|t| t.reader.is_open())
    }

    /// Turns until nothing is new (as file events and polls would have it), every batch
    /// accepted by the intake.
    pub(super) fn look(&mut self, model: &mut Model) -> Result<(), TestCaseError> {
        for _ in 0..256 {
            let events = self.turn(model, true)?;
            let table = self.tailer.files.table();
            let busy = table.files().any(|f| f.active || f.reader.is_orphan());
            if events == 0 && !busy && table.nothing_waits() {
                return Ok(());
            }
        }
        Err(TestCaseError::fail("the reader never settled"))
    }

    /// One turn, as the reader's loop takes it when it wakes: the file events (and a rescan
    /// when `rescan`), one read of each file that may have data, the open batch handed over
    /// and accepted. Returns how many events it made.
    pub(super) fn turn(&mut self, model: &mut Model, rescan: bool) -> Result<usize, TestCaseError> {
        let Tailer {
            files,
            batcher: out,
            wake,
            ..
        } = &mut self.tailer;
        let woken = wake.take(Some(Duration::ZERO), files.watches());
        for path in woken.paths {
            files.on_path(&path);
        }
        for path in woken.grown {
            files.on_write(&path);
        }
        if rescan {
            files.rescan(false);
        }
        assert!(files.read_turn(false, out), "the batches' receiver is kept");
        files.serve_waiting(out);
        files.close_orphans(out);
        assert!(out.hand_over_open_batch(), "the batches' receiver is kept");
        let mut events = 0;
        while let Ok(batch) = self.batches.try_recv() {
            let body: Vec<serde_json::Value> =
                serde_json::from_slice(&batch.body).expect("a batch is JSON");
            for event in &body {
                let message = event["message"].as_str().expect("a message");
                model.record(message)?;
            }
            events += batch.events;
            self.tracker.ack(&batch.marks, batch.events as u64);
        }
        Ok(events)
    }
}

/// sidelog as a change to the files finds it: running, or down with its checkpoints.
pub(super) enum Sidelog<'a> {
    Up(&'a mut Reader),
    Down(&'a [Entry]),
}

impl Sidelog<'_> {
    pub(super) fn reader(&self) -> Option<&Reader> {
        match self {
            Sidelog::Up(r) => Some(r),
            Sidelog::Down(_) => None,
        }
    }

    /// Whether sidelog knows the content under `path` well enough to find a copy of it: the
    /// first bytes of this content, taken by the running reader or kept in a checkpoint.
    pub(super) fn knows_content(&self, path: &Path) -> bool {
        let Ok(file) = File::open(path) else {
            return false;
        };
        let Ok(meta) = file.metadata() else {
            return false;
        };
        let id = DevIno::of(&meta);
        let known =
            |fp: crate::position::Fingerprint| fp.len > 0 && fp.matches(&file).unwrap_or(false);
        match self {
            Sidelog::Up(r) => {
                let table = r.tailer.files.table();
                table
                    .by_id(id)
                    .and_then(|k| table.get(k))
                    .is_some_and(|t| known(t.reader.fingerprint()))
            }
            Sidelog::Down(entries) => entries
                .iter()
                .any(|e| e.dev == id.dev && e.inode == id.ino && known(e.fingerprint)),
        }
    }
}
