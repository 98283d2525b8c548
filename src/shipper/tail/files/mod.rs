//! The files being tailed, from the time a scan or a file event finds them to the time they
//! are closed or deleted: which to open and from where (`opening`), one read of each file that
//! may have data turned into events of the batcher's open batch (here), and the rest of a
//! file's life (`lifecycle`): descriptors under `tail.max_open_files`, rotated files closed and
//! retired, truncations, multi-line events sent on time or for memory, rotated files deleted
//! once shipped.
//!
//! It owns the file table, the discovery state, the read buffer and the inputs' settings; the
//! reader's loop (`tail/mod.rs`) tells it what woke it and when, and passes the batcher its
//! events go to.

mod lifecycle;
mod opening;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::batcher::Batcher;
use super::confine::Confinement;
use super::discovery::Discovery;
use super::emit;
use super::frame;
use super::globs::Matcher;
use super::reader::{Poll, Progress};
use super::retired;
use super::table::{self, FileKey, FileTable, Tailed};
use super::wake::Watches;
use super::{InputRuntime, TailError, default_hostname};
use crate::checkpoint::{Resume, Tracker};
use crate::config::Config;
use crate::encode::EncodeStats;
use crate::metrics::Metrics;
use crate::podtags::PodTagsSource;
use crate::position::{DevIno, Fingerprint, StreamId};
use crate::process::Processor;

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

/// Every file found, open or waiting, and what reading them needs.
pub(crate) struct FileSet {
    inputs: Vec<InputRuntime>,
    hostname: String,
    table: FileTable,
    /// The watches, and the files found but not read.
    discovery: Discovery,
    buf: Vec<u8>,
    base_buf_len: usize,
    timing: FileTiming,
    next_stream: u64,
    /// The files of the current turn (kept to reuse its allocation).
    turn: Vec<FileKey>,
    pending_deletes: Vec<PendingDelete>,
    /// Rotated files closed once read to their end, watched a while for late lines.
    retired: retired::Retirees,
    tracker: Arc<Tracker>,
    metrics: Arc<Metrics>,
    /// The Pod's tags, and the generation of them the files' templates were built with.
    pod_tags: Option<(Arc<PodTagsSource>, u64)>,
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

/// What the file set is started with.
pub(crate) struct FileSetLinks {
    pub tracker: Arc<Tracker>,
    pub metrics: Arc<Metrics>,
    pub resume: Resume,
    pub pod_tags: Option<Arc<PodTagsSource>>,
}

impl FileSet {
    pub(crate) fn new(config: &Config, links: FileSetLinks) -> Result<FileSet, TailError> {
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
        Ok(FileSet {
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
            timing: FileTiming {
                linger: Duration::from_millis(config.tail.rotated_linger_ms),
                rotate_wait: (config.tail.rotate_wait_ms > 0)
                    .then(|| Duration::from_millis(config.tail.rotate_wait_ms)),
                quiet: Duration::from_millis(config.shutdown_quiet_ms),
            },
            next_stream: 1,
            turn: Vec::new(),
            pending_deletes: Vec::new(),
            retired: retired::Retirees::default(),
            tracker: links.tracker,
            metrics: links.metrics,
            pod_tags: links.pod_tags.map(|source| {
                let seen = source.generation();
                (source, seen)
            }),
            confinement,
            resumed_from: written_at,
            positions_unknown: unknown,
            pending_groups: 0,
            pending_groups_max: config.tail.multiline_pending_bytes,
        })
    }

    /// The file table, for the model check to look into.
    #[cfg(test)]
    pub(crate) fn table(&self) -> &FileTable {
        &self.table
    }

    /// The directory watches, for the reader's wait.
    pub(crate) fn watches(&mut self) -> &mut Watches {
        &mut self.discovery.watches
    }

    /// Whether file events are watched (without them, files are polled).
    pub(crate) fn watching(&self) -> bool {
        self.discovery.watches.watching()
    }

    /// Whether a file has data to read now.
    pub(crate) fn busy(&self) -> bool {
        self.table.files().any(|t| t.active)
    }

    /// Whether a file that left its name is still read.
    pub(crate) fn has_orphans(&self) -> bool {
        self.table.files().any(|t| t.reader.is_orphan())
    }

    /// Whether no file waits for a descriptor.
    pub(crate) fn nothing_waits(&self) -> bool {
        self.table.nothing_waits()
    }

    /// How long every file must have been quiet before a drain ends (`shutdown_quiet_ms`).
    pub(crate) fn quiet(&self) -> Duration {
        self.timing.quiet
    }

    /// A poll is due: files that left their name are read again, and, with `every_open`
    /// (draining, or no file events), every open file.
    pub(crate) fn poll(&mut self, every_open: bool) {
        for (_, t) in self.table.iter_mut() {
            if t.reader.is_orphan() || (every_open && t.reader.is_open()) {
                t.active = true;
            }
        }
    }

    /// Refreshes every file's size in the tracker (the report of what was not shipped counts
    /// from it).
    pub(crate) fn observe_sizes(&self) {
        for t in self.table.files() {
            observe(&self.tracker, t, t.reader.current_size());
        }
    }

    /// Whether no file has grown for `shutdown_quiet_ms` (as the reader saw them).
    pub(crate) fn all_quiet(&self) -> bool {
        self.table
            .files()
            .all(|t| t.reader.quiet_for(self.timing.quiet))
    }

    /// One read for each file that may have data. With `stopping`, files read to their end
    /// but for a last line without newline have that line framed as it is. Batches filled
    /// by a read are handed over before the next file is read (blocking while the sender is
    /// behind): a turn over many files holds one full batch at most, not one per file. False
    /// once the sender is gone.
    pub(crate) fn read_turn(&mut self, stopping: bool, out: &mut Batcher) -> bool {
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
            self.read_file(key, stopping, out);
            if out.has_ready() && !out.send_ready() {
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
    pub(crate) fn read_file(&mut self, key: FileKey, stopping: bool, out: &mut Batcher) {
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
            Poll::Truncated => return self.restart_truncated(key, out),
            Poll::Closed => return,
            Poll::Failed(e) => {
                crate::warn_limited!(path = %t.reader.path().display(), error = %e, "cannot read file; trying again at the next change");
                t.active = false;
                return;
            }
        };
        self.emit_read(key, n, at_end, stopping, out);
    }

    /// Frames the `n` bytes just read from file `key` into events.
    fn emit_read(
        &mut self,
        key: FileKey,
        n: usize,
        at_end: bool,
        stopping: bool,
        out: &mut Batcher,
    ) {
        let Some(t) = self.table.get_mut(key) else {
            return;
        };
        let input = &self.inputs[t.input];
        // A last line without newline is framed as it is only when nothing more can come:
        // at shutdown, or when its file left its name and stopped growing.
        let finish = at_end && (stopping || t.reader.finished(self.timing.linger));
        let base = t.reader.pos();
        let before = out.stats();
        let held_before = t.grouping.as_ref().map_or(0, |g| g.text.capacity());
        let counts = emit::frame_and_emit(out.events(), input, t, &self.buf[..n], base, finish);
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
        self.count_read(counts, before, out.stats());
        if held_after != held_before {
            self.pending_groups = (self.pending_groups + held_after).saturating_sub(held_before);
            self.bound_pending_groups(false, out);
        }
    }

    fn count_read(&self, counts: emit::ReadCounts, before: EncodeStats, after: EncodeStats) {
        let m = &self.metrics;
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
    fn restart_truncated(&mut self, key: FileKey, out: &mut Batcher) {
        let continued = self.continue_in_copy(key);
        if !continued {
            // A multi-line event of the old content goes out first, under the old stream.
            self.flush_group(key, out);
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

    pub(super) fn new_stream(&mut self) -> StreamId {
        let id = StreamId(self.next_stream);
        self.next_stream += 1;
        id
    }
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

/// Tells the tracker how far a file was read and how large it is.
fn observe(tracker: &Tracker, t: &table::Tailed, size: u64) {
    tracker.observe(t.stream, t.reader.pos(), size, t.skipped_tail());
}
