//! Tailing: finds the files, reads them, frames lines and encodes them into batches.
//!
//! One reader thread owns every open file. It sleeps until a file event, a rescan, a batch
//! deadline or an orphan poll is due; then it reads each file that may have data with one large
//! positional read per turn (so a fast file cannot starve the others), frames the lines in the
//! shared read buffer, and encodes them straight into the open batch. A full batch is handed
//! to the sender with a blocking send: when the senders are behind, this thread stops reading
//! and the files on disk hold the backlog.
//!
//! A file is known by device and inode, checked against a fingerprint of its first bytes, never
//! by its name: a name is only how the file was found. A file whose name stops leading to it
//! (renamed away, deleted) is an *orphan*: it is read to its end through the descriptor still
//! open, then closed once it has stopped growing for `tail.rotated_linger_ms`. A file that
//! shrinks below the read position, or whose first bytes change, was truncated and is read
//! again from its start.
//!
//! Each opening of a file's content is a *stream* with its own id (a truncation starts a new
//! one); batches carry the byte ranges of the streams they cover, and the checkpoint tracker
//! advances each stream over its accepted prefix.
//!
//! Above `tail.max_open_files`, files read to their end are closed and reopened when they grow
//! (their identity and position stay known); orphans are never closed before they are read.

pub mod discover;
pub mod frame;
pub mod identity;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::checkpoint::{Entry, Tracker};
use crate::config::{Config, ReadFrom};
use crate::encode::{Batch, BatchBuilder, EventFields, EventTemplate, LinePiece};
use crate::metrics::Metrics;
use crate::process::{Grouping, LineAction, Processor};
use discover::Matcher;
use identity::{DevIno, FINGERPRINT_BYTES, Fingerprint};

/// How often files whose name no longer leads to them are checked for growth: no file event
/// names them any more.
const ORPHAN_POLL: Duration = Duration::from_secs(1);
/// Pending file-event paths kept before falling back to a full rescan.
const MAX_PENDING_PATHS: usize = 4096;
/// While draining, how often every open file is looked at, file events or not.
const DRAIN_POLL: Duration = Duration::from_millis(200);

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

/// What woke the reader: file events, a rescan request, or a shutdown phase.
#[derive(Default)]
struct WakeState {
    paths: HashSet<PathBuf>,
    rescan: bool,
    stop: bool,
    drain: bool,
    abandon: bool,
}

/// The reader's doorbell. File-event callbacks and shutdown ring it; the reader sleeps on it.
#[derive(Default)]
pub struct Wake {
    state: Mutex<WakeState>,
    cv: Condvar,
}

impl Wake {
    fn lock(&self) -> std::sync::MutexGuard<'_, WakeState> {
        crate::lock(&self.state)
    }

    /// Asks the reader to read nothing more, hand over its open batch and end. A last line
    /// without newline and a pending multi-line event stay unsent: the checkpoint stays
    /// before them and the next start reads them whole.
    pub fn stop(&self) {
        self.lock().stop = true;
        self.cv.notify_all();
    }

    /// Asks the reader to read every file to its end until all are quiet (a last line
    /// without newline and pending multi-line events included), hand over what it read, and
    /// end: at SIGTERM, and at `exit_when_file`.
    pub fn drain(&self) {
        self.lock().drain = true;
        self.cv.notify_all();
    }

    /// Asks the reader to end at once, handing over nothing more.
    pub fn abandon(&self) {
        self.lock().abandon = true;
        self.cv.notify_all();
    }

    fn path(&self, path: PathBuf) {
        let mut s = self.lock();
        if s.paths.len() >= MAX_PENDING_PATHS {
            s.paths.clear();
            s.rescan = true;
        } else {
            s.paths.insert(path);
        }
        drop(s);
        self.cv.notify_all();
    }

    fn rescan(&self) {
        self.lock().rescan = true;
        self.cv.notify_all();
    }

    /// Takes what is pending, waiting up to `timeout` for something when nothing is.
    fn take(&self, timeout: Option<Duration>) -> WakeState {
        let mut s = self.lock();
        if let Some(timeout) = timeout
            && s.paths.is_empty()
            && !s.rescan
            && !s.stop
            && !s.drain
            && !s.abandon
        {
            s = match self.cv.wait_timeout(s, timeout) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        WakeState {
            paths: std::mem::take(&mut s.paths),
            rescan: std::mem::take(&mut s.rescan),
            stop: s.stop,
            drain: s.drain,
            abandon: s.abandon,
        }
    }
}

/// An input's settings as the reader needs them.
struct InputRuntime {
    matcher: Matcher,
    read_from: ReadFrom,
    max_line: usize,
    skip_empty: bool,
    ignore_older: Option<Duration>,
    delete_after_ship: bool,
    /// Multi-line aggregation, rules and JSON attributes; `None` costs nothing.
    processor: Option<Processor>,
    status: String,
    service: String,
    source: String,
    /// Global tags and the input's tags, comma-joined (the file name tag is added per file).
    tags: String,
}

/// One file being tailed. Keyed in [`Tailer::streams`] by a key that never changes, while
/// `id` (the checkpoint tracker's stream) changes when the file is truncated.
struct Stream {
    id: u64,
    input: usize,
    /// The name it was last found under.
    path: PathBuf,
    /// `None` while closed to stay under `tail.max_open_files`.
    file: Option<File>,
    dev_ino: DevIno,
    fingerprint: Fingerprint,
    template: EventTemplate,
    /// Next byte to read: the start of the first line not yet framed.
    read_pos: u64,
    /// Start of the bytes not yet covered by any event (skipped empty lines).
    covered: u64,
    /// The next bytes continue a line that was cut.
    continued: bool,
    /// May have data to read.
    active: bool,
    /// When its name stopped leading to it (renamed away or deleted).
    orphaned_at: Option<Instant>,
    /// Read up to the end of what is there (a partial last line may remain).
    caught_up: bool,
    last_change: Instant,
    last_size: u64,
    last_read: Instant,
    /// The multi-line event being assembled (inputs with `multiline` only).
    grouping: Option<Grouping>,
}

/// A file waiting for a descriptor under `tail.max_open_files`.
enum Waiting {
    New {
        path: PathBuf,
        input: usize,
        startup: bool,
    },
    Reopen(u64),
}

/// A rotated file read to its end, to delete once the intake accepted all of it.
struct PendingDelete {
    stream: u64,
    dev_ino: DevIno,
    fingerprint: Fingerprint,
    /// The name it was tailed under; it was renamed within that directory, or deleted.
    path: PathBuf,
}

/// The reader thread's state.
pub struct Tailer {
    inputs: Vec<InputRuntime>,
    hostname: String,
    streams: BTreeMap<u64, Stream>,
    by_dev_ino: HashMap<DevIno, u64>,
    by_path: HashMap<PathBuf, u64>,
    next_key: u64,
    next_stream: u64,
    open_files: usize,
    max_open: usize,
    waiting: VecDeque<Waiting>,
    /// Files skipped for `ignore_older_secs`, with their size then: if one is written again,
    /// only what is new is read.
    ignored: HashMap<DevIno, u64>,
    unreadable: HashSet<PathBuf>,
    buf: Vec<u8>,
    base_buf_len: usize,
    builder: BatchBuilder,
    ready: Vec<Batch>,
    batch_timeout: Duration,
    rescan_every: Duration,
    linger: Duration,
    rotate_wait: Option<Duration>,
    /// A drain ends once no file grew for this long.
    quiet: Duration,
    turn: Vec<u64>,
    pending_deletes: Vec<PendingDelete>,
    tracker: Arc<Tracker>,
    metrics: Arc<Metrics>,
    wake: Arc<Wake>,
    out: mpsc::Sender<Batch>,
    recycled: std::sync::mpsc::Receiver<Vec<u8>>,
    watcher: Option<notify::RecommendedWatcher>,
    watched: HashSet<PathBuf>,
}

/// Channels and shared state the reader is started with.
pub struct TailerLinks {
    pub tracker: Arc<Tracker>,
    pub metrics: Arc<Metrics>,
    pub wake: Arc<Wake>,
    pub out: mpsc::Sender<Batch>,
    pub recycled: std::sync::mpsc::Receiver<Vec<u8>>,
    /// Checkpoints loaded at startup.
    pub resume: Vec<Entry>,
}

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("inputs[{input}]: {source}")]
    Glob {
        input: usize,
        source: discover::GlobError,
    },
    #[error("{source}")]
    Process {
        source: crate::process::ProcessError,
    },
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The host name events carry when `datadog.hostname` is empty.
pub fn default_hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// What became of an attempt to reopen a closed file.
enum Reopened {
    Yes,
    NoDescriptor,
    Gone,
}

impl Tailer {
    pub fn new(config: &Config, links: TailerLinks) -> Result<Tailer, TailError> {
        let hostname = config
            .datadog
            .hostname
            .clone()
            .unwrap_or_else(default_hostname);
        let mut inputs = Vec::new();
        for (i, input) in config.inputs.iter().enumerate() {
            let matcher = Matcher::new(&input.include, &input.exclude)
                .map_err(|source| TailError::Glob { input: i, source })?;
            let tags: Vec<&str> = config
                .datadog
                .tags
                .iter()
                .chain(&input.tags)
                .map(String::as_str)
                .collect();
            inputs.push(InputRuntime {
                matcher,
                read_from: input.read_from,
                max_line: input.max_line_bytes,
                skip_empty: input.skip_empty_lines,
                ignore_older: (input.ignore_older_secs > 0)
                    .then(|| Duration::from_secs(input.ignore_older_secs)),
                delete_after_ship: input.delete_after_ship,
                processor: Processor::new(&input.processing(), i, Some(&links.metrics))
                    .map_err(|source| TailError::Process { source })?,
                status: input.status.clone(),
                service: input.service.clone(),
                source: input.source.clone(),
                tags: tags.join(","),
            });
        }
        links.tracker.carry(links.resume);
        let base_buf_len = config.tail.read_buffer_bytes;
        Ok(Tailer {
            inputs,
            hostname,
            streams: BTreeMap::new(),
            by_dev_ino: HashMap::new(),
            by_path: HashMap::new(),
            next_key: 1,
            next_stream: 1,
            open_files: 0,
            max_open: config.tail.max_open_files,
            waiting: VecDeque::new(),
            ignored: HashMap::new(),
            unreadable: HashSet::new(),
            buf: vec![0; base_buf_len],
            base_buf_len,
            builder: BatchBuilder::new(config.batch.max_events, config.batch.max_bytes),
            ready: Vec::new(),
            batch_timeout: Duration::from_millis(config.batch.timeout_ms),
            rescan_every: Duration::from_millis(config.tail.rescan_interval_ms),
            linger: Duration::from_millis(config.tail.rotated_linger_ms),
            rotate_wait: (config.tail.rotate_wait_ms > 0)
                .then(|| Duration::from_millis(config.tail.rotate_wait_ms)),
            quiet: Duration::from_millis(config.shutdown_quiet_ms),
            turn: Vec::new(),
            pending_deletes: Vec::new(),
            tracker: links.tracker,
            metrics: links.metrics,
            wake: links.wake,
            out: links.out,
            recycled: links.recycled,
            watcher: None,
            watched: HashSet::new(),
        })
    }

    /// Runs the reader until told to end or until the sender goes away; then tells the
    /// tracker how large each file is, so what is left unshipped can be reported.
    pub fn run(mut self) {
        let end = self.follow();
        match end {
            End::Drained => {
                // Nothing more can come: a last line without its newline goes out as it is,
                // and so do multi-line events still waiting for lines.
                self.read_turn(true);
                self.flush_groups(true);
                self.hand_over_open_batch();
            }
            End::Stopped => self.hand_over_open_batch(),
            End::Abandoned | End::SenderGone => {}
        }
        self.observe_sizes();
    }

    /// The reading loop: sleeps until a file event, a rescan, a batch deadline, an orphan
    /// poll or a shutdown phase is due, then reads.
    fn follow(&mut self) -> End {
        self.start_watcher();
        self.rescan(true);
        let mut next_rescan = Instant::now() + self.rescan_every;
        let mut next_orphan_poll = Instant::now() + ORPHAN_POLL;
        let mut draining = false;
        loop {
            let now = Instant::now();
            let mut timeout = next_rescan.saturating_duration_since(now);
            if let Some(opened) = self.builder.opened_at() {
                timeout = timeout.min((opened + self.batch_timeout).saturating_duration_since(now));
            }
            if draining || self.streams.values().any(|s| s.orphaned_at.is_some()) {
                timeout = timeout.min(next_orphan_poll.saturating_duration_since(now));
            }
            if let Some(due) = self.next_group_deadline() {
                timeout = timeout.min(due.saturating_duration_since(now));
            }
            let busy = self.streams.values().any(|s| s.active);
            if draining && !busy && self.waiting.is_empty() && self.all_quiet_for(self.quiet) {
                tracing::info!(
                    quiet_ms = self.quiet.as_millis() as u64,
                    "every file read to its end and quiet"
                );
                return End::Drained;
            }
            let woken = self.wake.take(if busy { None } else { Some(timeout) });
            if woken.abandon {
                return End::Abandoned;
            }
            if woken.stop {
                return End::Stopped;
            }
            if woken.drain && !draining {
                draining = true;
                tracing::info!("draining: reading every file to its end before exiting");
                self.rescan(false);
                next_orphan_poll = Instant::now() + DRAIN_POLL;
            }
            while let Ok(buf) = self.recycled.try_recv() {
                self.builder.recycle(buf);
            }
            for path in woken.paths {
                self.on_path(&path);
            }
            let now = Instant::now();
            if woken.rescan || now >= next_rescan {
                self.rescan(false);
                next_rescan = now + self.rescan_every;
            }
            if now >= next_orphan_poll {
                // Orphans have no name for file events to name; while draining, nothing may
                // be missed before the files are declared quiet.
                for s in self.streams.values_mut() {
                    if s.orphaned_at.is_some() || (draining && s.file.is_some()) {
                        s.active = true;
                    }
                }
                next_orphan_poll = now + if draining { DRAIN_POLL } else { ORPHAN_POLL };
            }
            self.read_turn(false);
            self.flush_groups(false);
            self.serve_waiting();
            if let Some(opened) = self.builder.opened_at()
                && opened.elapsed() >= self.batch_timeout
                && let Some(batch) = self.builder.take()
            {
                self.ready.push(batch);
            }
            self.close_orphans();
            self.delete_shipped();
            if !self.send_ready() {
                return End::SenderGone;
            }
        }
    }

    /// Whether no file has grown for `quiet` (as the reader saw them).
    fn all_quiet_for(&self, quiet: Duration) -> bool {
        self.streams
            .values()
            .all(|s| s.last_change.elapsed() >= quiet)
    }

    fn hand_over_open_batch(&mut self) {
        if let Some(batch) = self.builder.take() {
            self.ready.push(batch);
        }
        self.send_ready();
    }

    /// Refreshes every open file's size in the tracker (the report of what was not shipped
    /// counts from it).
    fn observe_sizes(&self) {
        for s in self.streams.values() {
            let size = s
                .file
                .as_ref()
                .and_then(|f| f.metadata().ok())
                .map_or(s.last_size, |m| m.len());
            self.tracker
                .observe(s.id, s.read_pos, size, s.skipped_tail());
        }
    }

    /// Hands finished batches to the sender, blocking while it is full. False once the
    /// sender is gone.
    fn send_ready(&mut self) -> bool {
        for batch in self.ready.drain(..) {
            self.metrics.batches_built.inc();
            if self.out.blocking_send(batch).is_err() {
                return false;
            }
        }
        true
    }

    fn start_watcher(&mut self) {
        let wake = self.wake.clone();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            match res {
                Ok(event) => {
                    if event.need_rescan() {
                        wake.rescan();
                    }
                    match event.kind {
                        // Our own reads show up as access events; they say nothing new.
                        EventKind::Access(_) => {}
                        EventKind::Create(notify::event::CreateKind::Folder) => wake.rescan(),
                        _ => {
                            for p in event.paths {
                                wake.path(p);
                            }
                        }
                    }
                }
                Err(e) => {
                    crate::warn_limited!(error = %e, "file watch error; rescanning");
                    wake.rescan();
                }
            }
        });
        match watcher {
            Ok(w) => self.watcher = Some(w),
            Err(e) => tracing::warn!(
                error = %e,
                "cannot watch files; new lines are found by rescans only"
            ),
        }
    }

    fn ensure_watches(&mut self) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        for input in &self.inputs {
            for root in &input.matcher.roots {
                if self.watched.contains(&root.dir) || !root.dir.is_dir() {
                    continue;
                }
                let mode = if root.depth > 1 {
                    RecursiveMode::Recursive
                } else {
                    RecursiveMode::NonRecursive
                };
                match watcher.watch(&root.dir, mode) {
                    Ok(()) => {
                        tracing::debug!(dir = %root.dir.display(), "watching");
                        self.watched.insert(root.dir.clone());
                    }
                    Err(e) => {
                        crate::warn_limited!(dir = %root.dir.display(), error = %e, "cannot watch directory; new lines there are found by rescans")
                    }
                }
            }
        }
    }

    /// Finds new files, notices files whose name no longer leads to them, and checks the
    /// sizes of known files in case a file event was lost.
    fn rescan(&mut self, startup: bool) {
        self.ensure_watches();
        let mut found = Vec::new();
        let mut seen = HashSet::new();
        for i in 0..self.inputs.len() {
            found.clear();
            self.inputs[i].matcher.scan(&mut found);
            for path in std::mem::take(&mut found) {
                if let Some(id) = self.consider(&path, i, startup) {
                    seen.insert(id);
                }
            }
        }
        let now = Instant::now();
        for s in self.streams.values_mut() {
            if s.orphaned_at.is_none() && !seen.contains(&s.dev_ino) {
                // Renamed out of the globs, or deleted: read what is left, then close. A closed
                // file is looked for under its new name when it is reopened.
                s.orphaned_at = Some(now);
                s.last_change = now;
                tracing::debug!(path = %s.path.display(), "file left its name; draining");
            }
            if s.file.is_some() || s.orphaned_at.is_some() {
                s.active = true;
            }
        }
        self.tracker.forget_carried_except(&seen);
    }

    /// A file event named `path`.
    fn on_path(&mut self, path: &Path) {
        if let Some(&key) = self.by_path.get(path)
            && let Some(s) = self.streams.get_mut(&key)
        {
            s.active = true;
            if s.orphaned_at.is_none() && !leads_to(path, s.dev_ino) {
                s.orphaned_at = Some(Instant::now());
                s.last_change = Instant::now();
                self.by_path.remove(path);
                tracing::debug!(path = %path.display(), "file left its name; draining");
            }
        }
        if let Some(i) = self.inputs.iter().position(|i| i.matcher.matches(path)) {
            self.consider(path, i, false);
        }
    }

    /// Starts tailing `path` unless its file is already tailed; returns the file's identity
    /// when it exists (tailed, waiting for a descriptor, ignored or unreadable).
    fn consider(&mut self, path: &Path, input: usize, startup: bool) -> Option<DevIno> {
        let meta = match std::fs::metadata(path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => return None,
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    self.report_unreadable(path, &e);
                }
                return None;
            }
        };
        let dev_ino = DevIno::of(&meta);
        if let Some(&key) = self.by_dev_ino.get(&dev_ino) {
            self.found_again(key, path, meta.len());
            return Some(dev_ino);
        }
        if let Some(&old) = self.by_path.get(path)
            && let Some(s) = self.streams.get_mut(&old)
            && s.orphaned_at.is_none()
        {
            // The name now leads to another file: the old one was rotated away.
            s.orphaned_at = Some(Instant::now());
            s.last_change = Instant::now();
            s.active = true;
        }
        if let Some(age) = self.inputs[input].ignore_older
            && !self.ignored.contains_key(&dev_ino)
            && meta
                .modified()
                .ok()
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|elapsed| elapsed > age)
        {
            tracing::info!(path = %path.display(), "not reading file last modified before ignore_older_secs");
            self.metrics.files_ignored_old.inc();
            self.ignored.insert(dev_ino, meta.len());
            return Some(dev_ino);
        }
        if let Some(&size) = self.ignored.get(&dev_ino)
            && meta.len() == size
        {
            return Some(dev_ino);
        }
        if self.waiting_for(path) {
            return Some(dev_ino);
        }
        if self.open_files >= self.max_open && !self.evict_one(None) {
            tracing::debug!(path = %path.display(), "waiting for a descriptor (tail.max_open_files)");
            self.waiting.push_back(Waiting::New {
                path: path.to_path_buf(),
                input,
                startup,
            });
            return Some(dev_ino);
        }
        self.open_new(path, input, startup);
        Some(dev_ino)
    }

    fn waiting_for(&self, path: &Path) -> bool {
        self.waiting
            .iter()
            .any(|w| matches!(w, Waiting::New { path: p, .. } if p == path))
    }

    /// A tailed file was found (again) under `path`, `size` bytes long.
    fn found_again(&mut self, key: u64, path: &Path, size: u64) {
        let Some(s) = self.streams.get_mut(&key) else {
            return;
        };
        if s.path != path && !leads_to(&s.path, s.dev_ino) {
            // Renamed to another name the globs match: follow it.
            if self.by_path.get(&s.path) == Some(&key) {
                self.by_path.remove(&s.path);
            }
            s.path = path.to_path_buf();
            self.tracker.update_path(s.id, path);
        }
        if s.path == path {
            self.by_path.insert(path.to_path_buf(), key);
            s.orphaned_at = None;
        }
        // A closed file is reopened only when it changed; an open one costs one fstat.
        if s.file.is_some() || size != s.last_size {
            s.active = true;
        }
    }

    /// Opens a file not tailed yet, from its checkpoint or by the start policy.
    fn open_new(&mut self, path: &Path, input: usize, startup: bool) {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) => {
                self.report_unreadable(path, &e);
                return;
            }
        };
        let meta = match file.metadata() {
            Ok(m) => m,
            Err(e) => {
                self.report_unreadable(path, &e);
                return;
            }
        };
        let dev_ino = DevIno::of(&meta);
        if self.by_dev_ino.contains_key(&dev_ino) {
            return;
        }
        self.unreadable.remove(path);
        let size = meta.len();
        let fingerprint = match Fingerprint::of(&file, FINGERPRINT_BYTES) {
            Ok(f) => f,
            Err(e) => {
                self.report_unreadable(path, &e);
                return;
            }
        };
        let ignored_at = self.ignored.remove(&dev_ino);
        let start = match self.tracker.claim(dev_ino) {
            Some(entry) if entry.fingerprint.matches(&file).unwrap_or(false) => {
                if entry.offset <= size {
                    tracing::debug!(path = %path.display(), offset = entry.offset, "resuming");
                    entry.offset
                } else {
                    tracing::info!(path = %path.display(), "file shrank while stopped; reading from its start");
                    0
                }
            }
            Some(_) => {
                tracing::info!(path = %path.display(), "checkpoint belongs to an earlier file with this inode; reading from the start");
                0
            }
            None => match ignored_at {
                Some(at) if at <= size => at,
                _ if startup && self.inputs[input].read_from == ReadFrom::End => size,
                _ => 0,
            },
        };
        let id = self.next_stream;
        self.next_stream += 1;
        let key = self.next_key;
        self.next_key += 1;
        let template = self.template(input, path);
        self.tracker.register(id, dev_ino, fingerprint, path, start);
        self.by_dev_ino.insert(dev_ino, key);
        self.by_path.insert(path.to_path_buf(), key);
        self.open_files += 1;
        self.metrics.files_opened.inc();
        self.metrics.files_open.up();
        tracing::info!(path = %path.display(), offset = start, "tailing file");
        let now = Instant::now();
        self.streams.insert(
            key,
            Stream {
                id,
                input,
                path: path.to_path_buf(),
                file: Some(file),
                dev_ino,
                fingerprint,
                template,
                read_pos: start,
                covered: start,
                continued: false,
                active: true,
                orphaned_at: None,
                caught_up: false,
                last_change: now,
                last_size: size,
                last_read: now,
                grouping: self.inputs[input]
                    .processor
                    .as_ref()
                    .and_then(|p| p.multiline.as_ref())
                    .map(|_| Grouping::default()),
            },
        );
    }

    /// Closes the least recently read file that is read to its end, still has its name and
    /// is not `except`. False when no file can be closed.
    fn evict_one(&mut self, except: Option<u64>) -> bool {
        let victim = self
            .streams
            .iter()
            .filter(|(k, s)| {
                s.file.is_some()
                    && s.orphaned_at.is_none()
                    && !s.active
                    && s.caught_up
                    && Some(**k) != except
            })
            .min_by_key(|(_, s)| s.last_read)
            .map(|(k, _)| *k);
        let Some(key) = victim else {
            return false;
        };
        if let Some(s) = self.streams.get_mut(&key) {
            s.file = None;
            tracing::debug!(path = %s.path.display(), "closed to stay under tail.max_open_files");
        }
        self.open_files -= 1;
        self.metrics.files_evicted.inc();
        self.metrics.files_open.down();
        true
    }

    /// Opens what waits for a descriptor, as far as descriptors allow.
    fn serve_waiting(&mut self) {
        while let Some(w) = self.waiting.front() {
            let reopen = matches!(w, Waiting::Reopen(_));
            if !reopen && self.open_files >= self.max_open && !self.evict_one(None) {
                return;
            }
            match self.waiting.pop_front() {
                Some(Waiting::New {
                    path,
                    input,
                    startup,
                }) => {
                    if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                        self.open_new(&path, input, startup);
                    }
                }
                Some(Waiting::Reopen(key)) => {
                    if let Some(s) = self.streams.get_mut(&key) {
                        s.active = true;
                    }
                    self.read_stream(key, false);
                    if self.streams.get(&key).is_some_and(|s| s.file.is_none()) {
                        // Still no descriptor (read_stream queued it again).
                        return;
                    }
                }
                None => return,
            }
        }
    }

    /// Reopens a file closed under `tail.max_open_files`, following it if it was renamed.
    fn reopen(&mut self, key: u64) -> Reopened {
        if self.open_files >= self.max_open && !self.evict_one(Some(key)) {
            return Reopened::NoDescriptor;
        }
        let Some(s) = self.streams.get(&key) else {
            return Reopened::Gone;
        };
        let (path, dev_ino, fingerprint) = (s.path.clone(), s.dev_ino, s.fingerprint);
        let found = open_if(&path, dev_ino, fingerprint)
            .map(|f| (path.clone(), f))
            .or_else(|| find_in_dir(&path, dev_ino, fingerprint));
        let Some((at, file)) = found else {
            self.forget_gone(key);
            return Reopened::Gone;
        };
        let Some(s) = self.streams.get_mut(&key) else {
            return Reopened::Gone;
        };
        if at != s.path {
            tracing::debug!(from = %s.path.display(), to = %at.display(), "closed file was renamed; reading it to its end");
            if self.by_path.get(&s.path) == Some(&key) {
                self.by_path.remove(&s.path);
            }
            s.path = at;
            s.orphaned_at.get_or_insert_with(Instant::now);
        }
        s.file = Some(file);
        self.open_files += 1;
        self.metrics.files_open.up();
        Reopened::Yes
    }

    /// A closed file could not be found again: whatever was written to it after its last
    /// read is out of reach.
    fn forget_gone(&mut self, key: u64) {
        let Some(s) = self.streams.remove(&key) else {
            return;
        };
        tracing::warn!(
            path = %s.path.display(),
            read_to = s.read_pos,
            "file renamed away or deleted while closed under tail.max_open_files; lines written after its last read cannot be read (raise tail.max_open_files)"
        );
        self.metrics.files_gone_while_closed.inc();
        self.forget(&s);
        // The name may lead to a new file now.
        if let Some(i) = self.inputs.iter().position(|i| i.matcher.matches(&s.path)) {
            self.consider(&s.path.clone(), i, false);
        }
    }

    /// Drops a removed stream from the indexes and the tracker.
    fn forget(&mut self, s: &Stream) {
        if self
            .by_dev_ino
            .get(&s.dev_ino)
            .is_some_and(|&k| self.streams.get(&k).is_none_or(|other| other.id == s.id))
        {
            self.by_dev_ino.remove(&s.dev_ino);
        }
        self.by_path.retain(|_, k| self.streams.contains_key(k));
        self.tracker.close(s.id, s.covered);
    }

    fn template(&self, input: usize, path: &Path) -> EventTemplate {
        let i = &self.inputs[input];
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tags = if i.tags.is_empty() {
            format!("filename:{name}")
        } else {
            format!("{},filename:{name}", i.tags)
        };
        EventTemplate::new(&EventFields {
            status: &i.status,
            hostname: &self.hostname,
            service: &i.service,
            source: &i.source,
            tags: &tags,
        })
    }

    fn report_unreadable(&mut self, path: &Path, e: &io::Error) {
        if self.unreadable.insert(path.to_path_buf()) {
            tracing::warn!(path = %path.display(), error = %e, "cannot read file; skipping it until it becomes readable");
        }
    }

    /// One read for each stream that may have data. With `stopping`, files read to their end
    /// but for a last line without newline have that line framed as it is.
    fn read_turn(&mut self, stopping: bool) {
        let mut keys = std::mem::take(&mut self.turn);
        keys.clear();
        keys.extend(
            self.streams
                .iter()
                .filter(|(_, s)| {
                    if stopping {
                        s.caught_up && s.read_pos < s.last_size
                    } else {
                        s.active
                    }
                })
                .map(|(k, _)| *k),
        );
        for &key in &keys {
            self.read_stream(key, stopping);
        }
        self.turn = keys;
        if self.buf.len() > self.base_buf_len && !self.streams.values().any(|s| s.active) {
            // Caught up after a very long line: give the large buffer back.
            self.buf = vec![0; self.base_buf_len];
        }
    }

    fn read_stream(&mut self, key: u64, stopping: bool) {
        let Some(s) = self.streams.get(&key) else {
            return;
        };
        if s.file.is_none() {
            if stopping {
                return;
            }
            match self.reopen(key) {
                Reopened::Yes => {}
                Reopened::Gone => return,
                Reopened::NoDescriptor => {
                    if let Some(s) = self.streams.get_mut(&key) {
                        s.active = false;
                    }
                    if !self
                        .waiting
                        .iter()
                        .any(|w| matches!(w, Waiting::Reopen(k) if *k == key))
                    {
                        self.waiting.push_back(Waiting::Reopen(key));
                    }
                    return;
                }
            }
        }
        let Some(s) = self.streams.get_mut(&key) else {
            return;
        };
        let Some(file) = s.file.as_ref() else {
            return;
        };
        let size = match file.metadata() {
            Ok(m) => m.len(),
            Err(e) => {
                crate::warn_limited!(path = %s.path.display(), error = %e, "cannot stat open file");
                s.active = false;
                return;
            }
        };
        if size != s.last_size {
            s.last_size = size;
            s.last_change = Instant::now();
        }
        // Truncated: shorter than what was read, or (after copytruncate and new writes) no
        // longer starting with the bytes it started with. The first bytes are checked when a
        // file read to its end has grown, so a fast file pays it once per catch-up, not per read.
        let replaced = size < s.read_pos
            || (s.caught_up
                && s.fingerprint.len > 0
                && !s.fingerprint.matches(file).unwrap_or(true));
        if replaced {
            self.restart_truncated(key);
            return;
        }
        if !s.fingerprint.is_complete()
            && size > s.fingerprint.len as u64
            && let Ok(fp) = Fingerprint::of(file, FINGERPRINT_BYTES)
        {
            s.fingerprint = fp;
            self.tracker.update_fingerprint(s.id, fp);
        }
        if size == s.read_pos {
            s.active = false;
            s.note_caught_up();
            self.tracker
                .observe(s.id, s.read_pos, size, s.skipped_tail());
            return;
        }
        let n = match read_full(file, &mut self.buf, s.read_pos) {
            Ok(n) => n,
            Err(e) => {
                crate::warn_limited!(path = %s.path.display(), error = %e, "read failed; trying again at the next change");
                s.active = false;
                return;
            }
        };
        if n == 0 {
            s.active = false;
            return;
        }
        s.last_read = Instant::now();
        let at_end = s.read_pos + n as u64 >= size;
        // A last line without newline is framed as it is only when nothing more can come:
        // at shutdown, or when its file left its name and stopped growing.
        let finish = at_end
            && (stopping || s.orphaned_at.is_some() && s.last_change.elapsed() >= self.linger);
        let input = &self.inputs[s.input];
        let data = &self.buf[..n];
        // One UTF-8 check for all complete lines of the read, instead of one per line.
        let valid = match memchr::memrchr(b'\n', data) {
            Some(last) => simdutf8::basic::from_utf8(&data[..=last]).is_ok(),
            None => false,
        };
        let timestamp = now_ms();
        let base = s.read_pos;
        let mut lines = 0u64;
        let mut skipped = 0u64;
        let builder = &mut self.builder;
        let ready = &mut self.ready;
        let before = builder.stats;
        let mut joined = 0u64;
        let consumed = frame::frame(data, input.max_line, &mut s.continued, finish, |f| {
            lines += 1;
            if f.text_len == 0 && !f.cut_before && !f.cut_after && input.skip_empty {
                skipped += 1;
                return;
            }
            let end = base + f.end as u64;
            let text_offset = base + f.text_start as u64;
            let text = &data[f.text_start..f.text_start + f.text_len];
            let Some(processor) = &input.processor else {
                builder.append_line(
                    &s.template,
                    timestamp,
                    s.id,
                    s.covered,
                    text_offset,
                    end,
                    LinePiece {
                        text,
                        valid_utf8: valid,
                        cut_before: f.cut_before,
                        cut_after: f.cut_after,
                        status: None,
                    },
                    &mut |b| ready.push(b),
                );
                s.covered = end;
                return;
            };
            let mut sink = Sink {
                builder,
                ready,
                template: &s.template,
                stream: s.id,
                processor,
            };
            let whole_line = !f.cut_before && !f.cut_after;
            if let (Some(ml), Some(g), true) =
                (&processor.multiline, s.grouping.as_mut(), whole_line)
            {
                let action = ml.classify(text, g);
                let fits = g.text.len() + 1 + text.len() <= ml.max_bytes;
                match action {
                    LineAction::Append if !g.is_empty() && fits => {
                        g.append(text, end, valid);
                        joined += 1;
                    }
                    LineAction::Alone => {
                        sink.flush(g, &mut s.covered);
                        let piece = (text, valid, false, false);
                        if sink.event(s.covered, text_offset, end, piece, timestamp) {
                            s.covered = end;
                        }
                    }
                    _ => {
                        sink.flush(g, &mut s.covered);
                        g.begin(text, s.covered, text_offset, end, valid, timestamp);
                        ml.note_begin(g, action);
                    }
                }
                return;
            }
            if let Some(g) = s.grouping.as_mut() {
                // A piece of a line too long for one event goes out on its own, in order.
                sink.flush(g, &mut s.covered);
            }
            let piece = (text, valid, f.cut_before, f.cut_after);
            if sink.event(s.covered, text_offset, end, piece, timestamp) {
                s.covered = end;
            }
        });
        self.metrics.lines_joined.add(joined);
        s.read_pos += consumed as u64;
        self.tracker
            .observe(s.id, s.read_pos, size, s.skipped_tail());
        let after = builder.stats;
        let m = &self.metrics;
        m.lines_read.add(lines);
        m.bytes_read.add(consumed as u64);
        m.lines_skipped_empty.add(skipped);
        m.lines_invalid_utf8
            .add(after.invalid_utf8 - before.invalid_utf8);
        m.lines_split.add(after.split_pieces - before.split_pieces);
        let full_read = n == self.buf.len();
        if consumed == 0 && full_read {
            // A line longer than the buffer: grow, up to what framing needs to progress.
            let need = frame::min_buffer(input.max_line).max(self.base_buf_len);
            if self.buf.len() < need {
                self.buf.resize(need, 0);
                return;
            }
        }
        if !full_read || consumed == 0 {
            // At the end of what is there (or only an unfinished line): wait for more.
            s.active = false;
            s.note_caught_up();
        } else {
            s.caught_up = false;
        }
    }

    fn restart_truncated(&mut self, key: u64) {
        // A multi-line event of the old content goes out first, under the old stream.
        self.flush_group(key);
        let id = self.next_stream;
        self.next_stream += 1;
        let Some(s) = self.streams.get_mut(&key) else {
            return;
        };
        crate::warn_limited!(path = %s.path.display(), at = s.read_pos, "file truncated; reading it again from its start");
        self.metrics.files_truncated.inc();
        self.tracker.close(s.id, s.covered);
        let fingerprint = s
            .file
            .as_ref()
            .and_then(|f| Fingerprint::of(f, FINGERPRINT_BYTES).ok())
            .unwrap_or(Fingerprint { len: 0, hash: 0 });
        s.id = id;
        s.fingerprint = fingerprint;
        s.read_pos = 0;
        s.covered = 0;
        s.continued = false;
        s.caught_up = false;
        s.active = true;
        self.tracker
            .register(id, s.dev_ino, fingerprint, &s.path, 0);
    }

    /// Closes files that left their name once they are read to their end and quiet, or once
    /// `tail.rotate_wait_ms` has passed (counting what is given up).
    fn close_orphans(&mut self) {
        let mut done = Vec::new();
        for (key, s) in &self.streams {
            let Some(orphaned_at) = s.orphaned_at else {
                continue;
            };
            let drained = !s.active && s.read_pos >= s.last_size;
            if drained && s.last_change.elapsed() >= self.linger {
                tracing::info!(path = %s.path.display(), "closing file read to its end");
                if self.inputs[s.input].delete_after_ship {
                    self.pending_deletes.push(PendingDelete {
                        stream: s.id,
                        dev_ino: s.dev_ino,
                        fingerprint: s.fingerprint,
                        path: s.path.clone(),
                    });
                }
                done.push(*key);
            } else if let Some(wait) = self.rotate_wait
                && orphaned_at.elapsed() >= wait
            {
                let unread = s.last_size.saturating_sub(s.read_pos);
                if unread > 0 {
                    tracing::warn!(
                        path = %s.path.display(),
                        unread_bytes = unread,
                        "giving up the unread end of a rotated or deleted file (tail.rotate_wait_ms)"
                    );
                    self.metrics.rotated_bytes_given_up.add(unread);
                }
                done.push(*key);
            }
        }
        for key in done {
            self.flush_group(key);
            let Some(s) = self.streams.remove(&key) else {
                continue;
            };
            if s.file.is_some() {
                self.open_files -= 1;
                self.metrics.files_open.down();
            }
            self.metrics.files_closed.inc();
            self.forget(&s);
        }
    }
}

impl Tailer {
    /// When the earliest multi-line event waiting for more lines is due.
    fn next_group_deadline(&self) -> Option<Instant> {
        self.streams
            .values()
            .filter_map(|s| {
                let last = s.grouping.as_ref()?.last?;
                let ml = self.inputs[s.input]
                    .processor
                    .as_ref()?
                    .multiline
                    .as_ref()?;
                Some(last + ml.timeout)
            })
            .min()
    }

    /// Sends multi-line events that waited `timeout_ms` without a new line (all of them with
    /// `force`, at shutdown).
    fn flush_groups(&mut self, force: bool) {
        let now = Instant::now();
        let due: Vec<u64> = self
            .streams
            .iter()
            .filter(|(_, s)| {
                let Some(last) = s.grouping.as_ref().and_then(|g| g.last) else {
                    return false;
                };
                force
                    || self.inputs[s.input]
                        .processor
                        .as_ref()
                        .and_then(|p| p.multiline.as_ref())
                        .is_some_and(|ml| now >= last + ml.timeout)
            })
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            self.flush_group(key);
        }
    }

    /// Sends the multi-line event a file is assembling, if any.
    fn flush_group(&mut self, key: u64) {
        let Some(s) = self.streams.get_mut(&key) else {
            return;
        };
        let (Some(g), Some(processor)) =
            (s.grouping.as_mut(), self.inputs[s.input].processor.as_ref())
        else {
            return;
        };
        let mut sink = Sink {
            builder: &mut self.builder,
            ready: &mut self.ready,
            template: &s.template,
            stream: s.id,
            processor,
        };
        sink.flush(g, &mut s.covered);
    }

    /// Deletes rotated files (`delete_after_ship`) once the intake accepted every line of
    /// them, so the volume stays under its size limit. A file with any byte not accepted yet
    /// stays; a file given up at `rotate_wait_ms` is never queued here.
    fn delete_shipped(&mut self) {
        if self.pending_deletes.is_empty() {
            return;
        }
        let tracker = &self.tracker;
        let (settled, waiting): (Vec<_>, Vec<_>) = self
            .pending_deletes
            .drain(..)
            .partition(|p| tracker.is_settled(p.stream));
        self.pending_deletes = waiting;
        for p in settled {
            // Deleted by someone else already: nothing to do. Renamed: find it by identity.
            let Some((found, file)) = find_in_dir(&p.path, p.dev_ino, p.fingerprint) else {
                continue;
            };
            drop(file);
            if self.inputs.iter().any(|i| i.matcher.matches(&found)) {
                // Renamed to a name the globs match: it is tailed again, not rotated away.
                continue;
            }
            match std::fs::remove_file(&found) {
                Ok(()) => {
                    tracing::info!(path = %found.display(), "deleted rotated file: every line of it was accepted");
                    self.metrics.files_deleted.inc();
                }
                Err(e) => {
                    tracing::warn!(path = %found.display(), error = %e, "cannot delete rotated file (delete_after_ship needs the volume mounted read-write)")
                }
            }
        }
    }
}

impl Stream {
    /// Bytes read after the last event that need no event of their own (skipped or
    /// excluded lines). Lines held in a pending multi-line event are owed, so none then.
    fn skipped_tail(&self) -> u64 {
        if self.grouping.as_ref().is_some_and(|g| !g.is_empty()) {
            return 0;
        }
        self.read_pos.saturating_sub(self.covered)
    }

    fn note_caught_up(&mut self) {
        if !self.caught_up {
            self.caught_up = true;
            tracing::debug!(path = %self.path.display(), offset = self.read_pos, "caught up with file");
        }
    }
}

/// Where processed events go: the open batch, through the input's [`Processor`].
struct Sink<'a> {
    builder: &'a mut BatchBuilder,
    ready: &'a mut Vec<Batch>,
    template: &'a EventTemplate,
    stream: u64,
    processor: &'a Processor,
}

impl Sink<'_> {
    /// One event covering file bytes `[start, end)`; `piece` is (text, known valid UTF-8,
    /// cut before, cut after). False when a rule dropped it (its bytes are then covered by the
    /// next event's range).
    fn event(
        &mut self,
        start: u64,
        text_offset: u64,
        end: u64,
        piece: (&[u8], bool, bool, bool),
        timestamp_ms: u64,
    ) -> bool {
        let (text, valid, cut_before, cut_after) = piece;
        let Some(out) = self.processor.finish(text) else {
            return false;
        };
        // A masked copy is checked again (a placeholder could meet an invalid neighbour).
        let valid = valid && matches!(out.text, std::borrow::Cow::Borrowed(_));
        let ready = &mut *self.ready;
        self.builder.append_line(
            self.template,
            out.timestamp_ms.unwrap_or(timestamp_ms),
            self.stream,
            start,
            text_offset,
            end,
            LinePiece {
                text: &out.text,
                valid_utf8: valid,
                cut_before,
                cut_after,
                status: out.status.as_deref(),
            },
            &mut |b| ready.push(b),
        );
        true
    }

    /// Sends the multi-line event being assembled, if any.
    fn flush(&mut self, g: &mut Grouping, covered: &mut u64) {
        if g.is_empty() {
            return;
        }
        let text = std::mem::take(&mut g.text);
        if self.event(
            g.start,
            g.text_offset,
            g.end,
            (&text, g.valid_utf8, false, false),
            g.timestamp_ms,
        ) {
            *covered = g.end;
        }
        g.text = text;
        g.clear();
    }
}

/// Whether `path` currently names the file `dev_ino`.
fn leads_to(path: &Path, dev_ino: DevIno) -> bool {
    std::fs::metadata(path).is_ok_and(|m| DevIno::of(&m) == dev_ino)
}

/// Opens `path` if it is the file `dev_ino` and still starts with `fingerprint`'s bytes.
fn open_if(path: &Path, dev_ino: DevIno, fingerprint: Fingerprint) -> Option<File> {
    let file = File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    (DevIno::of(&meta) == dev_ino && fingerprint.matches(&file).unwrap_or(false)).then_some(file)
}

/// Looks for the file `dev_ino` among the entries of `path`'s directory (where a rotated file
/// usually goes).
fn find_in_dir(path: &Path, dev_ino: DevIno, fingerprint: Fingerprint) -> Option<(PathBuf, File)> {
    let dir = path.parent()?;
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| {
            use std::os::unix::fs::DirEntryExt;
            e.ino() == dev_ino.ino
        })
        .find_map(|e| {
            let p = e.path();
            open_if(&p, dev_ino, fingerprint).map(|f| (p, f))
        })
}

/// Reads from `offset` until `buf` is full or the file ends.
fn read_full(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
