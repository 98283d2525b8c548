//! Tailing: finds the files, reads them, frames lines and encodes them into batches.
//!
//! One reader thread owns every open file. This module is its loop: it sleeps on the
//! [`Wake`] until a file event, a rescan, a batch deadline, an orphan poll or a shutdown
//! phase is due; then it gives each file that may have data one large read per turn (so a
//! fast file cannot starve the others) and hands full batches to the sender with a blocking
//! send: when the senders are behind, this thread stops reading and the files on disk hold
//! the backlog. The loop owns no state of its own beyond its parts:
//!
//! - `files`: the file set, from a file's discovery to its close or deletion, and the reads
//!   that turn files into events (`files/opening.rs`: what a scan or file event found;
//!   `files/lifecycle.rs`: descriptors, rotated files, multi-line timeouts, deletion);
//! - `batcher`: the open batch, its handover to the sender, and when it leaves;
//! - `schedule`: when to sleep, gather writes, rescan, poll, and let the open batch go;
//! - `discovery`: the directory watches and the files found but not read (left alone under
//!   `ignore_older_secs`, or unreadable); `globs`: what the globs match, and scans;
//! - `wake`: what wakes the reader (the directory watches' file events, the doorbell);
//! - `table`: every tailed file by key, identity and name, and the descriptor budget;
//! - `reader`: one file's reader (position, partial line, renamed away, truncated, closed);
//! - `emit`: from the bytes of a read to events in the open batch;
//! - [`frame`] (lines); a file's identity (device, inode and fingerprint) is
//!   [`crate::position`], shared with the checkpoints.
//!
//! A file is known by device and inode, checked against a fingerprint of its first bytes, never
//! by its name. Each opening of a file's content is a stream with its own [`crate::position::StreamId`] (a
//! truncation starts a new one); batches carry the byte ranges of the streams they cover, and
//! the checkpoint tracker advances each stream over its accepted prefix.

mod batcher;
mod confine;
mod discovery;
mod emit;
mod files;
pub mod frame;
mod globs;
mod reader;
mod retired;
mod schedule;
mod table;
#[cfg(test)]
mod tests;
mod wake;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::checkpoint::{Resume, Tracker};
use crate::config::{Config, ReadFrom};
use crate::delivery::DeliveryState;
use crate::encode::{Batch, BatchBuilder};
use crate::health::Liveness;
use crate::metrics::Metrics;
use crate::podtags::PodTagsSource;
use crate::process::Processor;
use batcher::{Batcher, BatcherLinks};
use files::{FileSet, FileSetLinks};
use globs::Matcher;
use schedule::{Schedule, Timing, WRITE_COALESCE};
pub use wake::Wake;

/// How often the reader looks whether a failing intake answers again while it holds an open
/// batch (the sender does not ring it).
const HOLD_POLL: Duration = Duration::from_millis(250);

/// Why the reading loop ended.
enum End {
    /// Every file read to its end and quiet (a drain).
    Drained,
    /// Told to read no more.
    Stopped,
    /// Told to end at once.
    Abandoned,
    /// The pipeline is gone.
    SenderGone,
}

/// An input's settings as the reader needs them.
pub(crate) struct InputRuntime {
    pub matcher: Matcher,
    pub read_from: ReadFrom,
    pub max_line: usize,
    pub skip_empty: bool,
    /// Trim whitespace around each message, as the Agent does.
    pub trim: bool,
    pub encoding: crate::config::Encoding,
    pub ignore_older: Option<Duration>,
    pub delete_after_ship: bool,
    /// Multi-line aggregation, rules and JSON attributes; `None` costs nothing.
    pub processor: Option<Processor>,
    pub status: String,
    pub service: String,
    pub source: String,
    /// Global tags and the input's tags, comma-joined (the file name tag is added per file).
    pub tags: String,
}

/// The reader thread: the loop that composes the file set, the batcher and the schedule.
pub struct Tailer {
    files: FileSet,
    batcher: Batcher,
    /// When to sleep, gather, rescan, poll, and let the open batch go.
    schedule: Schedule,
    wake: Arc<Wake>,
    /// Told when the reader turns and sleeps (`/healthz`).
    liveness: Arc<Liveness>,
}

/// Channels and shared state the reader is started with.
pub struct TailerLinks {
    pub tracker: Arc<Tracker>,
    pub metrics: Arc<Metrics>,
    pub wake: Arc<Wake>,
    pub out: mpsc::Sender<Batch>,
    pub recycled: std::sync::mpsc::Receiver<Vec<u8>>,
    /// Requests in flight (a lingering batch waits while there are any) and endpoints
    /// failing (batches are held while they fail).
    pub delivery: Arc<DeliveryState>,
    /// Checkpoints loaded at startup.
    pub resume: Resume,
    /// Tags from the Pod's labels and annotations, when configured.
    pub pod_tags: Option<Arc<PodTagsSource>>,
    pub liveness: Arc<Liveness>,
}

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("inputs[{input}]: {source}")]
    Glob {
        input: usize,
        source: globs::GlobError,
    },
    #[error(transparent)]
    Process(#[from] crate::process::ProcessError),
}

/// The host name events carry when `datadog.hostname` is empty.
pub fn default_hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

impl Tailer {
    pub fn new(config: &Config, links: TailerLinks) -> Result<Tailer, TailError> {
        let files = FileSet::new(
            config,
            FileSetLinks {
                tracker: links.tracker,
                metrics: links.metrics.clone(),
                resume: links.resume,
                pod_tags: links.pod_tags,
            },
        )?;
        let batcher = Batcher::new(
            BatchBuilder::new(config.batch.max_events, config.batch.max_bytes),
            BatcherLinks {
                out: links.out,
                recycled: links.recycled,
                delivery: links.delivery,
                wake: links.wake.clone(),
                liveness: links.liveness.clone(),
                metrics: links.metrics,
            },
        );
        Ok(Tailer {
            files,
            batcher,
            schedule: Schedule::new(
                Timing {
                    batch_timeout: Duration::from_millis(config.batch.timeout_ms),
                    linger_batch: Duration::from_millis(config.batch.linger_ms),
                    quiet_min_events: config.batch.quiet_min_events,
                    rescan_every: Duration::from_millis(config.tail.rescan_interval_ms),
                },
                Instant::now(),
            ),
            wake: links.wake,
            liveness: links.liveness,
        })
    }

    /// Runs the reader until told to end or until the sender goes away; then tells the
    /// tracker how large each file is, so what is left unshipped can be reported.
    pub fn run(mut self) {
        match self.follow() {
            End::Drained => {
                // Nothing more can come: a last line without its newline goes out as it is,
                // and so do multi-line events still waiting for lines.
                if self.files.read_turn(true, &mut self.batcher) {
                    self.files.flush_groups(true, &mut self.batcher);
                }
                self.batcher.hand_over_open_batch();
            }
            End::Stopped => {
                self.batcher.hand_over_open_batch();
            }
            End::Abandoned | End::SenderGone => {}
        }
        self.files.observe_sizes();
        self.liveness.reader_ended();
    }

    /// The reading loop: sleeps until something is due, then takes a turn.
    fn follow(&mut self) -> End {
        self.liveness.reader_turns();
        self.files.rescan(true);
        loop {
            crate::failpoint::reader_turn();
            let busy = self.files.busy();
            let draining = self.schedule.draining();
            if draining && !busy && self.files.nothing_waits() && self.files.all_quiet() {
                tracing::info!(
                    quiet_ms = self.files.quiet().as_millis() as u64,
                    "every file read to its end and quiet"
                );
                return End::Drained;
            }
            let sleep = (!busy).then(|| self.sleep_for(Instant::now()));
            if let Some(sleep) = sleep {
                self.liveness.reader_sleeps(sleep.max(WRITE_COALESCE));
            }
            let (woken, gathered_since) = match sleep {
                Some(sleep) if self.schedule.flowing() => self.gather(sleep),
                _ => {
                    let mut woken = self.wake.take(sleep, self.files.watches());
                    match sleep {
                        Some(sleep) if !draining && woken.only_writes() => {
                            let (more, since) = self.gather(sleep);
                            woken.merge(more);
                            (woken, since)
                        }
                        _ => (woken, None),
                    }
                }
            };
            self.liveness.reader_turns();
            if woken.abandon {
                return End::Abandoned;
            }
            if woken.stop {
                return End::Stopped;
            }
            if woken.drain && !draining {
                tracing::info!("draining: reading every file to its end before exiting");
                self.schedule.start_drain(Instant::now());
                self.files.rescan(false);
            }
            for path in woken.paths {
                self.files.on_path(&path);
            }
            for path in woken.grown {
                self.files.on_write(&path);
            }
            self.due(woken.rescan);
            self.files.apply_pod_tags();
            let events_before = self.batcher.stats().events;
            if !self.take_turn(gathered_since) {
                return End::SenderGone;
            }
            let made = self.batcher.stats().events - events_before;
            self.schedule.turn_made(Instant::now(), made);
        }
    }

    /// How long the loop may sleep (see [`Schedule::sleep_for`]); while the intake fails,
    /// the open batch sets no deadline, and the loop looks at most every [`HOLD_POLL`]
    /// whether it answers again.
    fn sleep_for(&self, now: Instant) -> Duration {
        let idle = self.batcher.senders_idle();
        let polling = !self.files.watching() || self.files.has_orphans();
        let holding = self.batcher.holding_back();
        let opened = self.batcher.opened_at();
        let deadline_from = opened.filter(|_| !holding);
        let sleep = self.schedule.sleep_for(
            now,
            deadline_from,
            idle,
            polling,
            self.files.next_group_deadline(),
        );
        if holding && opened.is_some() {
            sleep.min(HOLD_POLL)
        } else {
            sleep
        }
    }

    /// Rescans and polls that are due.
    fn due(&mut self, rescan_asked: bool) {
        let due = self.schedule.due(Instant::now(), rescan_asked);
        if due.rescan {
            self.files.rescan(false);
        }
        if due.poll {
            // Orphans have no name for file events to name; while draining, nothing may be
            // missed before the files are declared quiet; without file events, open files
            // are only learnt of this way.
            let every_open = self.schedule.draining() || !self.files.watching();
            self.files.poll(every_open);
        }
    }

    /// Lets writes gather for as long as the schedule allows (at most `sleep`), then takes
    /// what came; with the time the gathering began when no batch was open yet (the batch
    /// counts from then).
    fn gather(&mut self, sleep: Duration) -> (wake::WakeState, Option<Instant>) {
        let now = Instant::now();
        let opened = self.batcher.opened_at();
        let since = opened.is_none().then_some(now);
        let window = self.schedule.gather_for(now, opened);
        self.wake.gather(window.min(sleep.max(WRITE_COALESCE)));
        (self.wake.take(None, self.files.watches()), since)
    }

    /// One turn: a read for every file that may have data, then what follows from it. A
    /// batch begun by writes that gathered since `gathered_since` counts from then, so it
    /// leaves as soon as they are read. False once the sender is gone.
    fn take_turn(&mut self, gathered_since: Option<Instant>) -> bool {
        let (files, out) = (&mut self.files, &mut self.batcher);
        out.take_recycled();
        if !files.read_turn(false, out) {
            return false;
        }
        if let Some(at) = gathered_since {
            out.backdate(at);
        }
        files.flush_groups(false, out);
        files.bound_pending_groups(true, out);
        files.serve_waiting(out);
        out.close_if_due(&self.schedule, files.busy());
        files.close_orphans(out);
        files.delete_shipped();
        out.send_ready()
    }
}
