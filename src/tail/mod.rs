//! Tailing: finds the files, reads them, frames lines and encodes them into batches.
//!
//! One reader thread owns every open file. It sleeps until a file event, a rescan, a batch
//! deadline or an orphan poll is due; then it reads each file that may have data with one large
//! positional read per turn (so a fast file cannot starve the others), frames the lines in the
//! shared read buffer, and encodes them straight into the open batch. A full batch is handed
//! to the sender with a blocking send: when the senders are behind, this thread stops reading
//! and the files on disk hold the backlog.
//!
//! A file is a *stream* from the moment it is opened until it is closed or truncated; streams
//! have ids, and batches carry the byte ranges of the streams they cover.

pub mod discover;
pub mod frame;
pub mod identity;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::checkpoint::{Entry, Tracker};
use crate::config::{Config, ReadFrom};
use crate::encode::{Batch, BatchBuilder, EventFields, EventTemplate, LinePiece};
use crate::metrics::Metrics;
use discover::Matcher;
use identity::{DevIno, FINGERPRINT_BYTES, Fingerprint};

/// How often files whose name no longer leads to them are checked for growth.
const ORPHAN_POLL: Duration = Duration::from_secs(1);
/// A file renamed away or deleted is closed once it has been at its end, unchanged, this long.
const ORPHAN_IDLE_CLOSE: Duration = Duration::from_secs(5);
/// Pending file-event paths kept before falling back to a full rescan.
const MAX_PENDING_PATHS: usize = 4096;

/// What woke the reader: file events, a rescan request, or the order to stop.
#[derive(Default)]
struct WakeState {
    paths: HashSet<PathBuf>,
    rescan: bool,
    stop: bool,
}

/// The reader's doorbell. File-event callbacks and shutdown ring it; the reader sleeps on it.
#[derive(Default)]
pub struct Wake {
    state: Mutex<WakeState>,
    cv: Condvar,
}

impl Wake {
    fn lock(&self) -> std::sync::MutexGuard<'_, WakeState> {
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Asks the reader to flush its open batch and end.
    pub fn stop(&self) {
        self.lock().stop = true;
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
        }
    }
}

/// An input's settings as the reader needs them.
struct InputRuntime {
    matcher: Matcher,
    read_from: ReadFrom,
    max_line: usize,
    skip_empty: bool,
    status: String,
    service: String,
    source: String,
    /// Global tags and the input's tags, comma-joined (the file name tag is added per file).
    tags: String,
}

struct Stream {
    id: u64,
    input: usize,
    path: PathBuf,
    file: File,
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
    /// Its path no longer leads to it (renamed away or deleted).
    orphaned: bool,
    /// Read up to the end of what is there (logged once per catch-up).
    caught_up: bool,
    last_change: Instant,
    last_size: u64,
}

/// The reader thread's state.
pub struct Tailer {
    inputs: Vec<InputRuntime>,
    hostname: String,
    streams: Vec<Stream>,
    by_dev_ino: HashMap<DevIno, u64>,
    resume: HashMap<DevIno, Entry>,
    unreadable: HashSet<PathBuf>,
    next_stream: u64,
    buf: Vec<u8>,
    base_buf_len: usize,
    builder: BatchBuilder,
    ready: Vec<Batch>,
    batch_timeout: Duration,
    rescan_every: Duration,
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

impl Tailer {
    pub fn new(config: &Config, links: TailerLinks) -> Result<Tailer, TailError> {
        let hostname = if config.datadog.hostname.is_empty() {
            default_hostname()
        } else {
            config.datadog.hostname.clone()
        };
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
                status: input.status.clone(),
                service: input.service.clone(),
                source: input.source.clone(),
                tags: tags.join(","),
            });
        }
        let base_buf_len = config.tail.read_buffer_bytes;
        Ok(Tailer {
            inputs,
            hostname,
            streams: Vec::new(),
            by_dev_ino: HashMap::new(),
            resume: links
                .resume
                .into_iter()
                .map(|e| {
                    (
                        DevIno {
                            dev: e.dev,
                            ino: e.inode,
                        },
                        e,
                    )
                })
                .collect(),
            unreadable: HashSet::new(),
            next_stream: 1,
            buf: vec![0; base_buf_len],
            base_buf_len,
            builder: BatchBuilder::new(config.batch.max_events, config.batch.max_bytes),
            ready: Vec::new(),
            batch_timeout: Duration::from_millis(config.batch.timeout_ms),
            rescan_every: Duration::from_millis(config.tail.rescan_interval_ms),
            tracker: links.tracker,
            metrics: links.metrics,
            wake: links.wake,
            out: links.out,
            recycled: links.recycled,
            watcher: None,
            watched: HashSet::new(),
        })
    }

    /// Runs the reader until stopped or until the sender goes away.
    pub fn run(mut self) {
        self.start_watcher();
        self.rescan(true);
        let mut next_rescan = Instant::now() + self.rescan_every;
        let mut next_orphan_poll = Instant::now() + ORPHAN_POLL;
        loop {
            let now = Instant::now();
            let mut timeout = next_rescan.saturating_duration_since(now);
            if let Some(opened) = self.builder.opened_at() {
                timeout = timeout.min((opened + self.batch_timeout).saturating_duration_since(now));
            }
            if self.streams.iter().any(|s| s.orphaned) {
                timeout = timeout.min(next_orphan_poll.saturating_duration_since(now));
            }
            let busy = self.streams.iter().any(|s| s.active);
            let woken = self.wake.take(if busy { None } else { Some(timeout) });
            if woken.stop {
                break;
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
                for s in self.streams.iter_mut().filter(|s| s.orphaned) {
                    s.active = true;
                }
                next_orphan_poll = now + ORPHAN_POLL;
            }
            self.read_turn();
            if let Some(opened) = self.builder.opened_at()
                && opened.elapsed() >= self.batch_timeout
                && let Some(batch) = self.builder.take()
            {
                self.ready.push(batch);
            }
            self.close_drained_orphans();
            if !self.send_ready() {
                return;
            }
        }
        // Stopping: what was read goes out; what was not is read again after a restart.
        if let Some(batch) = self.builder.take() {
            self.ready.push(batch);
        }
        self.send_ready();
    }

    /// Hands finished batches to the sender, blocking while it is full. False once the
    /// sender is gone.
    fn send_ready(&mut self) -> bool {
        for batch in self.ready.drain(..) {
            Metrics::add(&self.metrics.batches_built, 1);
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
                    tracing::warn!(error = %e, "file watch error; rescanning");
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
                        tracing::warn!(dir = %root.dir.display(), error = %e, "cannot watch directory")
                    }
                }
            }
        }
    }

    /// Finds new files, notices files whose name now leads elsewhere, and checks sizes of
    /// idle files in case a file event was lost.
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
        for s in &mut self.streams {
            if !seen.contains(&s.dev_ino) && !s.orphaned {
                // Renamed out of the globs, or deleted: read what is left, then close.
                s.orphaned = true;
                s.last_change = Instant::now();
                tracing::debug!(path = %s.path.display(), "file left its name; draining");
            }
            s.active = true;
        }
    }

    fn on_path(&mut self, path: &Path) {
        if let Some(i) = self.inputs.iter().position(|i| i.matcher.matches(path)) {
            self.consider(path, i, false);
        }
        for s in &mut self.streams {
            if s.path == path {
                s.active = true;
                if !s.orphaned && !leads_to(path, s.dev_ino) {
                    s.orphaned = true;
                    tracing::debug!(path = %s.path.display(), "file left its name; draining");
                }
            }
        }
    }

    /// Opens `path` as a new stream unless it is already one; returns its identity.
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
        if let Some(&id) = self.by_dev_ino.get(&dev_ino) {
            if let Some(s) = self.streams.iter_mut().find(|s| s.id == id) {
                s.active = true;
                if s.path != path && !leads_to(&s.path, dev_ino) {
                    s.path = path.to_path_buf();
                    self.tracker.update_path(id, path);
                }
                s.orphaned = false;
            }
            return Some(dev_ino);
        }
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) => {
                self.report_unreadable(path, &e);
                return None;
            }
        };
        self.unreadable.remove(path);
        let size = meta.len();
        let fingerprint = match Fingerprint::of(&file, FINGERPRINT_BYTES) {
            Ok(f) => f,
            Err(e) => {
                self.report_unreadable(path, &e);
                return None;
            }
        };
        let start = match self.resume.remove(&dev_ino) {
            Some(entry) if entry.fingerprint.matches(&file).unwrap_or(false) => {
                if entry.offset <= size {
                    tracing::debug!(path = %path.display(), offset = entry.offset, "resuming");
                    entry.offset
                } else {
                    tracing::info!(path = %path.display(), "file shrank while stopped; reading from its start");
                    0
                }
            }
            _ if startup && self.inputs[input].read_from == ReadFrom::End => size,
            _ => 0,
        };
        let id = self.next_stream;
        self.next_stream += 1;
        let template = self.template(input, path);
        self.tracker.register(id, dev_ino, fingerprint, path, start);
        self.by_dev_ino.insert(dev_ino, id);
        Metrics::add(&self.metrics.files_opened, 1);
        self.metrics.files_open.fetch_add(1, Ordering::Relaxed);
        tracing::info!(path = %path.display(), offset = start, "tailing file");
        self.streams.push(Stream {
            id,
            input,
            path: path.to_path_buf(),
            file,
            dev_ino,
            fingerprint,
            template,
            read_pos: start,
            covered: start,
            continued: false,
            active: true,
            orphaned: false,
            caught_up: false,
            last_change: Instant::now(),
            last_size: size,
        });
        Some(dev_ino)
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

    /// One read for each stream that may have data.
    fn read_turn(&mut self) {
        for idx in 0..self.streams.len() {
            if self.streams[idx].active {
                self.read_stream(idx);
            }
        }
        if self.buf.len() > self.base_buf_len && !self.streams.iter().any(|s| s.active) {
            // Caught up after a very long line: give the large buffer back.
            self.buf = vec![0; self.base_buf_len];
        }
    }

    fn read_stream(&mut self, idx: usize) {
        let size = match self.streams[idx].file.metadata() {
            Ok(m) => m.len(),
            Err(e) => {
                tracing::warn!(path = %self.streams[idx].path.display(), error = %e, "cannot stat open file");
                self.streams[idx].active = false;
                return;
            }
        };
        let s = &mut self.streams[idx];
        if size != s.last_size {
            s.last_size = size;
            s.last_change = Instant::now();
        }
        if size < s.read_pos {
            self.restart_truncated(idx);
            return;
        }
        let s = &mut self.streams[idx];
        if !s.fingerprint.is_complete()
            && size > s.fingerprint.len as u64
            && let Ok(fp) = Fingerprint::of(&s.file, FINGERPRINT_BYTES)
        {
            s.fingerprint = fp;
            self.tracker.update_fingerprint(s.id, fp);
        }
        if size == s.read_pos {
            s.active = false;
            s.note_caught_up();
            return;
        }
        let finish = s.orphaned && s.last_change.elapsed() >= ORPHAN_IDLE_CLOSE;
        let n = match read_full(&s.file, &mut self.buf, s.read_pos) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(path = %s.path.display(), error = %e, "read failed");
                s.active = false;
                return;
            }
        };
        if n == 0 {
            s.active = false;
            return;
        }
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
        let consumed = frame::frame(data, input.max_line, &mut s.continued, finish, |f| {
            lines += 1;
            if f.text_len == 0 && !f.cut_before && !f.cut_after && input.skip_empty {
                skipped += 1;
                return;
            }
            let end = base + f.end as u64;
            builder.append_line(
                &s.template,
                timestamp,
                s.id,
                s.covered,
                base + f.text_start as u64,
                end,
                LinePiece {
                    text: &data[f.text_start..f.text_start + f.text_len],
                    valid_utf8: valid,
                    cut_before: f.cut_before,
                    cut_after: f.cut_after,
                },
                &mut |b| ready.push(b),
            );
            s.covered = end;
        });
        s.read_pos += consumed as u64;
        let after = builder.stats;
        let m = &self.metrics;
        Metrics::add(&m.lines_read, lines);
        Metrics::add(&m.bytes_read, consumed as u64);
        Metrics::add(&m.lines_skipped_empty, skipped);
        Metrics::add(
            &m.lines_invalid_utf8,
            after.invalid_utf8 - before.invalid_utf8,
        );
        Metrics::add(&m.lines_split, after.split_pieces - before.split_pieces);
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

    fn restart_truncated(&mut self, idx: usize) {
        let id = self.next_stream;
        self.next_stream += 1;
        let s = &mut self.streams[idx];
        tracing::warn!(path = %s.path.display(), at = s.read_pos, "file truncated; reading it again from its start");
        Metrics::add(&self.metrics.files_truncated, 1);
        self.tracker.close(s.id, s.covered);
        let fingerprint =
            Fingerprint::of(&s.file, FINGERPRINT_BYTES).unwrap_or(Fingerprint { len: 0, hash: 0 });
        s.id = id;
        s.fingerprint = fingerprint;
        s.read_pos = 0;
        s.covered = 0;
        s.continued = false;
        s.active = true;
        self.by_dev_ino.insert(s.dev_ino, id);
        self.tracker
            .register(id, s.dev_ino, fingerprint, &s.path, 0);
    }

    fn close_drained_orphans(&mut self) {
        let mut i = 0;
        while i < self.streams.len() {
            let s = &self.streams[i];
            let drained = s.orphaned
                && !s.active
                && s.read_pos >= s.last_size
                && s.last_change.elapsed() >= ORPHAN_IDLE_CLOSE;
            if drained {
                let s = self.streams.swap_remove(i);
                tracing::info!(path = %s.path.display(), "closing file read to its end");
                self.by_dev_ino.remove(&s.dev_ino);
                self.tracker.close(s.id, s.covered);
                Metrics::add(&self.metrics.files_closed, 1);
                self.metrics.files_open.fetch_sub(1, Ordering::Relaxed);
            } else {
                i += 1;
            }
        }
    }
}

impl Stream {
    fn note_caught_up(&mut self) {
        if !self.caught_up {
            self.caught_up = true;
            tracing::debug!(path = %self.path.display(), offset = self.read_pos, "caught up with file");
        }
    }
}

/// Whether `path` currently names the file `dev_ino`.
fn leads_to(path: &Path, dev_ino: DevIno) -> bool {
    std::fs::metadata(path).is_ok_and(|m| DevIno::of(&m) == dev_ino)
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
