//! Tailing: finds the files, reads them, frames lines and encodes them into batches.
//!
//! One reader thread owns every open file. This module is its loop: it sleeps on the
//! [`Wake`] until a file event, a rescan, a batch deadline, an orphan poll or a shutdown
//! phase is due; then it gives each file that may have data one large read per turn (so a
//! fast file cannot starve the others) and hands full batches to the sender with a blocking
//! send: when the senders are behind, this thread stops reading and the files on disk hold
//! the backlog. Its state lives in types of their own, each in its own file:
//!
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
//! by its name. Each opening of a file's content is a stream with its own [`StreamId`] (a
//! truncation starts a new one); batches carry the byte ranges of the streams they cover, and
//! the checkpoint tracker advances each stream over its accepted prefix.

#[cfg(test)]
mod agent_cases;
mod confine;
mod discovery;
mod emit;
pub mod frame;
mod globs;
mod lifecycle;
#[cfg(test)]
mod model;
mod opening;
mod reader;
mod retired;
mod schedule;
mod table;
mod wake;

use std::path::PathBuf;
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
use crate::position::{DevIno, Fingerprint, StreamId};
use crate::process::Processor;
use confine::Confinement;
use discovery::Discovery;
use emit::Events;
use globs::Matcher;
use reader::{Poll, Progress};
use schedule::{BatchDue, Schedule, Timing, WRITE_COALESCE};
use table::{FileKey, FileTable, Tailed};
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

/// How long files are held.
struct FileTiming {
    /// A file renamed away or deleted stays open this long after it last grew.
    linger: Duration,
    /// The longest a file renamed away or deleted is held (`None`: no limit).
    rotate_wait: Option<Duration>,
    /// A drain ends once no file grew for this long.
    quiet: Duration,
}

/// A rotated file read to its end, to delete once the intake accepted all of it.
struct PendingDelete {
    stream: StreamId,
    id: DevIno,
    fingerprint: Fingerprint,
    /// The name it was tailed under; it was renamed within that directory, or deleted.
    path: PathBuf,
}

/// The reader thread's state.
pub struct Tailer {
    inputs: Vec<InputRuntime>,
    hostname: String,
    table: FileTable,
    /// The watches, and the files found but not read.
    discovery: Discovery,
    buf: Vec<u8>,
    base_buf_len: usize,
    events: Events,
    timing: FileTiming,
    /// When to sleep, gather, rescan, poll, and let the open batch go.
    schedule: Schedule,
    next_stream: u64,
    /// The files of the current turn (kept to reuse its allocation).
    turn: Vec<FileKey>,
    pending_deletes: Vec<PendingDelete>,
    /// Rotated files closed once read to their end, watched a while for late lines.
    retired: retired::Retirees,
    tracker: Arc<Tracker>,
    metrics: Arc<Metrics>,
    wake: Arc<Wake>,
    out: mpsc::Sender<Batch>,
    recycled: std::sync::mpsc::Receiver<Vec<u8>>,
    /// Requests in flight and endpoints failing (the dispatcher and the senders say).
    delivery: Arc<DeliveryState>,
    /// The Pod's tags, and the generation of them the files' templates were built with.
    pod_tags: Option<(Arc<PodTagsSource>, u64)>,
    /// Told when the reader turns, sleeps and waits for the sender (`/healthz`).
    liveness: Arc<Liveness>,
    /// Where files may be read: under the inputs' roots (every open goes through it).
    confinement: Arc<Confinement>,
    /// When the checkpoints this run started from were written (a copytruncate copy made
    /// since was made while sidelog was down).
    resumed_from: Option<std::time::SystemTime>,
    /// The checkpoints were unusable: no file found at start is known to have been shipped.
    positions_unknown: bool,
    /// Memory the multi-line events being assembled hold, all files together (exact at each
    /// turn's end, kept up to date by each read between), and its bound.
    pending_groups: usize,
    pending_groups_max: usize,
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

fn input_runtime(
    config: &Config,
    i: usize,
    metrics: &Arc<Metrics>,
) -> Result<InputRuntime, TailError> {
    let input = &config.inputs[i];
    let matcher = Matcher::new(&input.include, &input.exclude)
        .map_err(|source| TailError::Glob { input: i, source })?;
    let tags: Vec<&str> = config
        .datadog
        .tags
        .iter()
        .chain(&input.tags)
        .map(String::as_str)
        .collect();
    Ok(InputRuntime {
        matcher,
        read_from: input.read_from,
        max_line: input.max_line_bytes,
        skip_empty: input.skip_empty_lines,
        trim: input.trim_whitespace,
        encoding: input.encoding,
        ignore_older: (input.ignore_older_secs > 0)
            .then(|| Duration::from_secs(input.ignore_older_secs)),
        delete_after_ship: input.delete_after_ship,
        processor: Processor::new(
            &input.processing(&config.log_processing_rules),
            i,
            Some(metrics),
        )?,
        status: input.status.clone(),
        service: input.service.clone(),
        source: input.source.clone(),
        tags: tags.join(","),
    })
}

impl Tailer {
    pub fn new(config: &Config, links: TailerLinks) -> Result<Tailer, TailError> {
        let inputs = (0..config.inputs.len())
            .map(|i| input_runtime(config, i, &links.metrics))
            .collect::<Result<Vec<_>, _>>()?;
        let Resume {
            entries,
            written_at,
            unknown,
        } = links.resume;
        links.tracker.carry(entries);
        let base_buf_len = config.tail.read_buffer_bytes;
        let confinement = Arc::new(Confinement::new(
            inputs
                .iter()
                .flat_map(|i| i.matcher.roots.iter().map(|r| r.dir.as_path())),
        ));
        Ok(Tailer {
            inputs,
            hostname: config
                .datadog
                .hostname
                .clone()
                .unwrap_or_else(default_hostname),
            table: FileTable::new(config.tail.max_open_files),
            discovery: Discovery::start(config.tail.file_events),
            buf: vec![0; base_buf_len],
            base_buf_len,
            events: Events {
                builder: BatchBuilder::new(config.batch.max_events, config.batch.max_bytes),
                ready: Vec::new(),
            },
            timing: FileTiming {
                linger: Duration::from_millis(config.tail.rotated_linger_ms),
                rotate_wait: (config.tail.rotate_wait_ms > 0)
                    .then(|| Duration::from_millis(config.tail.rotate_wait_ms)),
                quiet: Duration::from_millis(config.shutdown_quiet_ms),
            },
            schedule: Schedule::new(
                Timing {
                    batch_timeout: Duration::from_millis(config.batch.timeout_ms),
                    linger_batch: Duration::from_millis(config.batch.linger_ms),
                    quiet_min_events: config.batch.quiet_min_events,
                    rescan_every: Duration::from_millis(config.tail.rescan_interval_ms),
                },
                Instant::now(),
            ),
            next_stream: 1,
            turn: Vec::new(),
            pending_deletes: Vec::new(),
            retired: retired::Retirees::default(),
            tracker: links.tracker,
            metrics: links.metrics,
            wake: links.wake,
            out: links.out,
            recycled: links.recycled,
            delivery: links.delivery,
            pod_tags: links.pod_tags.map(|source| {
                let seen = source.generation();
                (source, seen)
            }),
            liveness: links.liveness,
            confinement,
            resumed_from: written_at,
            positions_unknown: unknown,
            pending_groups: 0,
            pending_groups_max: config.tail.multiline_pending_bytes,
        })
    }

    /// Runs the reader until told to end or until the sender goes away; then tells the
    /// tracker how large each file is, so what is left unshipped can be reported.
    pub fn run(mut self) {
        match self.follow() {
            End::Drained => {
                // Nothing more can come: a last line without its newline goes out as it is,
                // and so do multi-line events still waiting for lines.
                if self.read_turn(true) {
                    self.flush_groups(true);
                }
                self.hand_over_open_batch();
            }
            End::Stopped => self.hand_over_open_batch(),
            End::Abandoned | End::SenderGone => {}
        }
        self.observe_sizes();
        self.liveness.reader_ended();
    }

    /// The reading loop: sleeps until something is due, then takes a turn.
    fn follow(&mut self) -> End {
        self.liveness.reader_turns();
        self.rescan(true);
        loop {
            crate::failpoint::reader_turn();
            let busy = self.table.files().any(|t| t.active);
            let draining = self.schedule.draining();
            if draining && !busy && self.table.nothing_waits() && self.all_quiet() {
                tracing::info!(
                    quiet_ms = self.timing.quiet.as_millis() as u64,
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
                    let mut woken = self.wake.take(sleep, &mut self.discovery.watches);
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
                self.rescan(false);
            }
            for path in woken.paths {
                self.on_path(&path);
            }
            for path in woken.grown {
                self.on_write(&path);
            }
            self.due(woken.rescan);
            self.apply_pod_tags();
            let events_before = self.events.builder.stats.events;
            if !self.take_turn(gathered_since) {
                return End::SenderGone;
            }
            let made = self.events.builder.stats.events - events_before;
            self.schedule.turn_made(Instant::now(), made);
        }
    }

    /// How long the loop may sleep (see [`Schedule::sleep_for`]); while the intake fails,
    /// the open batch sets no deadline, and the loop looks at most every [`HOLD_POLL`]
    /// whether it answers again.
    fn sleep_for(&self, now: Instant) -> Duration {
        let idle = self.delivery.in_flight() == 0;
        let polling =
            !self.discovery.watches.watching() || self.table.files().any(|t| t.reader.is_orphan());
        let holding = self.delivery.holding_back();
        let opened = self.events.builder.opened_at();
        let deadline_from = opened.filter(|_| !holding);
        let sleep = self.schedule.sleep_for(
            now,
            deadline_from,
            idle,
            polling,
            self.next_group_deadline(),
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
            self.rescan(false);
        }
        if due.poll {
            // Orphans have no name for file events to name; while draining, nothing may be
            // missed before the files are declared quiet; without file events, open files
            // are only learnt of this way.
            let every_open = self.schedule.draining() || !self.discovery.watches.watching();
            for (_, t) in self.table.iter_mut() {
                if t.reader.is_orphan() || (every_open && t.reader.is_open()) {
                    t.active = true;
                }
            }
        }
    }

    /// Lets writes gather for as long as the schedule allows (at most `sleep`), then takes
    /// what came; with the time the gathering began when no batch was open yet (the batch
    /// counts from then).
    fn gather(&mut self, sleep: Duration) -> (wake::WakeState, Option<Instant>) {
        let now = Instant::now();
        let opened = self.events.builder.opened_at();
        let since = opened.is_none().then_some(now);
        let window = self.schedule.gather_for(now, opened);
        self.wake.gather(window.min(sleep.max(WRITE_COALESCE)));
        (self.wake.take(None, &mut self.discovery.watches), since)
    }

    /// One turn: a read for every file that may have data, then what follows from it. A
    /// batch begun by writes that gathered since `gathered_since` counts from then, so it
    /// leaves as soon as they are read. False once the sender is gone.
    fn take_turn(&mut self, gathered_since: Option<Instant>) -> bool {
        while let Ok(buf) = self.recycled.try_recv() {
            self.events.builder.recycle(buf);
        }
        if !self.read_turn(false) {
            return false;
        }
        if let Some(at) = gathered_since {
            self.events.builder.backdate(at);
        }
        self.flush_groups(false);
        self.bound_pending_groups(true);
        self.serve_waiting();
        if self.batch_due()
            && let Some(batch) = self.events.builder.take()
        {
            self.events.ready.push(batch);
        }
        self.close_orphans();
        self.delete_shipped();
        self.send_ready()
    }

    /// Whether the open batch leaves now (see [`Schedule::batch_due`]). One that has
    /// lingered leaves now, or when the last request in flight ends: the flag is up before
    /// the count is read, so that request rings.
    fn batch_due(&self) -> bool {
        if self.delivery.holding_back() {
            // While the intake fails a batch leaves only full: the small batches a quiet Pod
            // makes several times a second would all wait behind the outage gate and go at
            // once when the intake heals, a burst of requests per Pod that a fleet
            // multiplies. Held in one open batch, an outage's lines go out in as few
            // requests as they need; the files keep the rest meanwhile.
            self.wake.hold_for_sending(false);
            return false;
        }
        let reading = self.table.files().any(|t| t.active);
        let due = self
            .schedule
            .batch_due(Instant::now(), self.events.builder.opened_at(), reading);
        let lingered = due == BatchDue::WhenIdle;
        self.wake.hold_for_sending(lingered);
        if !lingered {
            return due == BatchDue::Now;
        }
        let idle = self.delivery.is_idle();
        if idle {
            self.wake.hold_for_sending(false);
        }
        idle
    }

    /// Whether no file has grown for `shutdown_quiet_ms` (as the reader saw them).
    fn all_quiet(&self) -> bool {
        self.table
            .files()
            .all(|t| t.reader.quiet_for(self.timing.quiet))
    }

    fn hand_over_open_batch(&mut self) {
        if let Some(batch) = self.events.builder.take() {
            self.events.ready.push(batch);
        }
        self.send_ready();
    }

    /// Refreshes every file's size in the tracker (the report of what was not shipped counts
    /// from it).
    fn observe_sizes(&self) {
        for t in self.table.files() {
            observe(&self.tracker, t, t.reader.current_size());
        }
    }

    /// Hands finished batches to the sender, blocking while it is full. False once the
    /// sender is gone.
    pub(super) fn send_ready(&mut self) -> bool {
        for batch in self.events.ready.drain(..) {
            self.metrics.batches_built.inc();
            self.liveness.reader_waits_for_sender();
            let sent = self.out.blocking_send(batch);
            self.liveness.reader_turns();
            if sent.is_err() {
                return false;
            }
        }
        true
    }

    /// One read for each file that may have data. With `stopping`, files read to their end
    /// but for a last line without newline have that line framed as it is. Batches filled
    /// by a read are handed over before the next file is read (blocking while the sender is
    /// behind): a turn over many files holds one full batch at most, not one per file. False
    /// once the sender is gone.
    fn read_turn(&mut self, stopping: bool) -> bool {
        let mut keys = std::mem::take(&mut self.turn);
        keys.clear();
        keys.extend(self.table.iter().filter_map(|(k, t)| {
            let due = if stopping {
                t.reader.is_caught_up() && t.reader.pos() < t.reader.size()
            } else {
                t.active
            };
            due.then_some(k)
        }));
        let mut sending = true;
        for &key in &keys {
            self.read_file(key, stopping);
            if !self.events.ready.is_empty() && !self.send_ready() {
                sending = false;
                break;
            }
        }
        self.turn = keys;
        if self.buf.len() > self.base_buf_len && !self.table.files().any(|t| t.active) {
            // Caught up after a very long line: give the large buffer back.
            self.buf = vec![0; self.base_buf_len];
        }
        sending
    }

    /// Reads what is new in one file and turns it into events.
    fn read_file(&mut self, key: FileKey, stopping: bool) {
        if !self.has_descriptor(key, stopping) {
            return;
        }
        let Some(t) = self.table.get_mut(key) else {
            return;
        };
        let was_caught_up = t.reader.is_caught_up();
        let poll = t.reader.poll(&mut self.buf);
        if let Some(fp) = t.reader.take_widened() {
            self.tracker.update_fingerprint(t.stream, fp);
        }
        let (n, at_end) = match poll {
            Poll::Data { n, at_end } => (n, at_end),
            Poll::CaughtUp => {
                t.active = false;
                if !was_caught_up {
                    tracing::debug!(path = %t.reader.path().display(), offset = t.reader.pos(), "caught up with file");
                }
                let size = t.reader.size();
                observe(&self.tracker, t, size);
                return;
            }
            Poll::Truncated => return self.restart_truncated(key),
            Poll::Closed => return,
            Poll::Failed(e) => {
                crate::warn_limited!(path = %t.reader.path().display(), error = %e, "cannot read file; trying again at the next change");
                t.active = false;
                return;
            }
        };
        self.emit_read(key, n, at_end, stopping);
    }

    /// Frames the `n` bytes just read from file `key` into events.
    fn emit_read(&mut self, key: FileKey, n: usize, at_end: bool, stopping: bool) {
        let Some(t) = self.table.get_mut(key) else {
            return;
        };
        let input = &self.inputs[t.input];
        // A last line without newline is framed as it is only when nothing more can come:
        // at shutdown, or when its file left its name and stopped growing.
        let finish = at_end && (stopping || t.reader.finished(self.timing.linger));
        let base = t.reader.pos();
        let before = self.events.builder.stats;
        let held_before = t.grouping.as_ref().map_or(0, |g| g.text.capacity());
        let counts = emit::frame_and_emit(&mut self.events, input, t, &self.buf[..n], base, finish);
        t.reader.framed(&self.buf[..counts.consumed]);
        let min_buffer = frame::min_buffer(input.max_line).max(self.base_buf_len);
        let was_caught_up = t.reader.is_caught_up();
        let progress = t
            .reader
            .advance(counts.consumed, n, self.buf.len(), min_buffer);
        match progress {
            Progress::NeedBuffer(len) => self.buf.resize(len, 0),
            Progress::CaughtUp => {
                t.active = false;
                if !was_caught_up {
                    tracing::debug!(path = %t.reader.path().display(), offset = t.reader.pos(), "caught up with file");
                }
            }
            Progress::More => {}
        }
        let held_after = t.grouping.as_ref().map_or(0, |g| g.text.capacity());
        let size = t.reader.size();
        observe(&self.tracker, t, size);
        self.count_read(counts, before);
        if held_after != held_before {
            self.pending_groups = (self.pending_groups + held_after).saturating_sub(held_before);
            self.bound_pending_groups(false);
        }
    }

    fn count_read(&self, counts: emit::ReadCounts, before: crate::encode::EncodeStats) {
        let m = &self.metrics;
        let after = self.events.builder.stats;
        m.lines_read.add(counts.lines);
        m.bytes_read.add(counts.consumed as u64);
        m.lines_skipped_empty.add(counts.skipped_empty);
        m.lines_joined.add(counts.joined);
        m.lines_invalid_utf8
            .add(after.invalid_utf8 - before.invalid_utf8);
        m.lines_split.add(after.split_pieces - before.split_pieces);
    }

    /// The file was truncated: the rest of the old content is read from copytruncate's copy
    /// if there is one (under the old stream, which moves to the copy), and the file is read
    /// again from its start as a new stream.
    fn restart_truncated(&mut self, key: FileKey) {
        let continued = self.continue_in_copy(key);
        if !continued {
            // A multi-line event of the old content goes out first, under the old stream.
            self.flush_group(key);
        }
        let stream = self.new_stream();
        let Some(t) = self.table.get_mut(key) else {
            return;
        };
        let unread = t.reader.size().saturating_sub(t.reader.pos());
        if continued {
            tracing::info!(path = %t.reader.path().display(), at = t.reader.pos(), "file truncated (copytruncate); reading it again from its start, and the rest of what it held from its copy");
        } else if unread > 0 {
            // Seen there, never read, and no copy of it anywhere: gone with the truncation.
            crate::warn_limited!(path = %t.reader.path().display(), at = t.reader.pos(), unread_bytes = unread, "file truncated before it was read to its end, and no copy of it was found in its directory (compressed or moved at once?); the unread bytes are lost");
            self.metrics.truncated_bytes_lost.add(unread);
        } else {
            crate::warn_limited!(path = %t.reader.path().display(), at = t.reader.pos(), "file truncated; reading it again from its start");
        }
        self.metrics.files_truncated.inc();
        if !continued {
            self.tracker.close(t.stream, t.covered);
        }
        t.reader.restart();
        t.stream = stream;
        t.covered = 0;
        t.active = true;
        if continued && let Some(ml) = self.inputs[t.input].processor.as_ref() {
            // The event being grouped went on with the copy.
            t.grouping = ml
                .multiline
                .as_ref()
                .map(|_| crate::process::Grouping::default());
        }
        self.tracker.register(
            stream,
            t.reader.id(),
            t.reader.fingerprint(),
            t.reader.path(),
            0,
        );
    }

    /// Hands the old content of truncated file `key` to a reader of its copy, if one is found
    /// and a descriptor can be had: the copy continues the old stream from where the file
    /// was read to (its events, its checkpoint, the multi-line event being grouped), and is
    /// closed once read to its end. True when it does.
    fn continue_in_copy(&mut self, key: FileKey) -> bool {
        let Some((path, file)) = self
            .table
            .get(key)
            .and_then(|t| t.reader.copy_of_truncated())
        else {
            return false;
        };
        // Taken even at the descriptor budget (when no other file can give one back): the
        // copy is read to its end and closed, and what it holds exists nowhere else.
        if !self.table.has_room() {
            self.evict(Some(key));
        }
        let Some(t) = self.table.get_mut(key) else {
            return false;
        };
        let reader = match t.reader.continued_in(path, file) {
            Ok(r) => r,
            Err(e) => {
                crate::warn_limited!(path = %t.reader.path().display(), error = %e, "cannot read the copy of a truncated file");
                return false;
            }
        };
        self.tracker
            .moved(t.stream, reader.id(), reader.fingerprint(), reader.path());
        let copy = Tailed {
            reader,
            stream: t.stream,
            input: t.input,
            template: t.template.clone(),
            covered: t.covered,
            active: true,
            grouping: t.grouping.take(),
        };
        self.metrics.files_opened.inc();
        self.metrics.files_open.up();
        self.table.insert(copy);
        true
    }

    fn new_stream(&mut self) -> StreamId {
        let id = StreamId(self.next_stream);
        self.next_stream += 1;
        id
    }
}

/// Tells the tracker how far a file was read and how large it is.
fn observe(tracker: &Tracker, t: &table::Tailed, size: u64) {
    tracker.observe(t.stream, t.reader.pos(), size, t.skipped_tail());
}
