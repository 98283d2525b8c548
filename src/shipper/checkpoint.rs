//! Checkpoints: which bytes of which file the intake has accepted, and their file on disk.
//!
//! The reader registers each stream (one file incarnation) with the position it starts from.
//! Batches carry the byte ranges they cover; when a batch is accepted its ranges are acked
//! here, in whatever order answers arrive. A stream's position is the end of the longest run
//! of acked ranges from its start, so it never jumps over a range still in flight. Positions
//! are written as batches are accepted, atomically (temp file, rename), and made durable
//! (fsync of the file and the directory) every [`DURABLE_EVERY`] and at shutdown: see
//! [`store`].

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::delivery::DeliveryState;
use crate::metrics::Metrics;
use crate::position::{DevIno, Fingerprint, Mark, StreamId};

pub const CHECKPOINT_FILE: &str = "checkpoints.json";

/// The shortest time between two checkpoint writes. At everyday rates batches are further
/// apart, so each accepted batch is written at once; at full speed (hundreds of batches a
/// second) one write a batch costs throughput (docs/performance.md, "Measurements behind the code"),
/// while this caps it at 20 writes a second.
pub const WRITE_SPACING: Duration = Duration::from_millis(50);
/// How often a checkpoint write is also made durable against a power cut (see [`store`]);
/// at shutdown it always is.
pub const DURABLE_EVERY: Duration = Duration::from_secs(10);
/// Accepted bytes not yet written that make a write due after [`WRITE_SPACING`]; below it
/// (and below [`BUSY_EVENTS`]) writes are spaced by `checkpoint_interval_ms`: a crash then
/// repeats at most that long of a quiet Pod's lines, where a write per accepted batch (4 a
/// second at 50 lines/s) cost more than the batches.
const BUSY_BYTES: u64 = 256 * 1024;
/// Accepted events (a full batch) not yet written that make a write due after
/// [`WRITE_SPACING`].
const BUSY_EVENTS: u64 = 1000;
const FORMAT_VERSION: u32 = 1;

impl CheckpointError {
    /// Whether the data directory is full (or over its quota): a bad day, not a fault in
    /// the configuration.
    pub fn is_full(&self) -> bool {
        match self {
            CheckpointError::Write { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
            ),
            _ => false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot write checkpoints to {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read checkpoints from {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("checkpoint file {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("checkpoint file {path} has an unknown format version {version}")]
    UnknownVersion { path: PathBuf, version: u32 },
}

/// One file's accepted position, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub dev: u64,
    pub inode: u64,
    pub fingerprint: Fingerprint,
    /// Everything before this byte was accepted by the intake.
    pub offset: u64,
    /// Last known path, for people reading the file.
    pub path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointFile {
    pub version: u32,
    pub files: Vec<Entry>,
}

/// What a run starts from.
#[derive(Debug, Default)]
pub struct Resume {
    pub entries: Vec<Entry>,
    /// When the checkpoints were written: a file made since then (a copytruncate copy) was
    /// made while sidelog was down.
    pub written_at: Option<std::time::SystemTime>,
    /// The checkpoints were there but unusable, and no earlier durable ones either: which
    /// files were shipped is unknown, so every file found at start is read from its
    /// beginning whatever `read_from` says (lines repeated, none lost).
    pub unknown: bool,
}

/// The last durable checkpoints, kept beside the current ones: what a start falls back on
/// when the current file is unreadable (a power cut between durable writes can leave it
/// empty on some file systems).
pub const DURABLE_CHECKPOINT_FILE: &str = "checkpoints.durable.json";

/// The checkpoints in `data_dir`: the current file; when it is unusable it is moved aside and
/// the last durable ones are used (repeating what was accepted since, never losing it); when
/// neither is usable, [`Resume::unknown`]. A missing file is a first start (delete both files
/// to start afresh).
pub fn resume(data_dir: &Path) -> Resume {
    let current = data_dir.join(CHECKPOINT_FILE);
    let error = match load_file(&current) {
        Ok(Some(resume)) => {
            tracing::info!(files = resume.entries.len(), "checkpoints loaded");
            return resume;
        }
        // A first start (or checkpoints deleted to start afresh).
        Ok(None) => return Resume::default(),
        Err(e) => e,
    };
    match move_aside(data_dir) {
        Ok(to) => {
            tracing::warn!(error = %error, moved_to = %to.display(), "unusable checkpoints moved aside")
        }
        Err(mv) => tracing::warn!(error = %error, move_error = %mv, "unusable checkpoints"),
    }
    match load_file(&data_dir.join(DURABLE_CHECKPOINT_FILE)) {
        Ok(Some(resume)) => {
            tracing::warn!(
                files = resume.entries.len(),
                "resuming from the last durable checkpoints instead: lines accepted since they were written are shipped again"
            );
            resume
        }
        durable => {
            if let Err(e) = durable {
                tracing::warn!(error = %e, "the last durable checkpoints are unusable too");
            }
            tracing::warn!(
                "no usable checkpoints: every file found at start is read from its beginning, whatever read_from says (lines are shipped again rather than lost)"
            );
            Resume {
                unknown: true,
                ..Resume::default()
            }
        }
    }
}

/// Reads the checkpoint file in `data_dir`; a missing file is an empty set.
#[cfg(test)]
fn load(data_dir: &Path) -> Result<Vec<Entry>, CheckpointError> {
    Ok(load_file(&data_dir.join(CHECKPOINT_FILE))?
        .map(|r| r.entries)
        .unwrap_or_default())
}

/// A checkpoint file's entries and when it was written; `None` when there is none.
fn load_file(path: &Path) -> Result<Option<Resume>, CheckpointError> {
    let path = path.to_path_buf();
    let (bytes, written_at) = match fs::read(&path) {
        Ok(b) => (b, fs::metadata(&path).and_then(|m| m.modified()).ok()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(CheckpointError::Read { path, source }),
    };
    let file: CheckpointFile =
        serde_json::from_slice(&bytes).map_err(|source| CheckpointError::Corrupt {
            path: path.clone(),
            source,
        })?;
    if file.version != FORMAT_VERSION {
        return Err(CheckpointError::UnknownVersion {
            path,
            version: file.version,
        });
    }
    Ok(Some(Resume {
        entries: file.files,
        written_at,
        unknown: false,
    }))
}

/// Moves an unusable checkpoint file aside so the next write starts clean; returns where to.
pub fn move_aside(data_dir: &Path) -> io::Result<PathBuf> {
    let from = data_dir.join(CHECKPOINT_FILE);
    let secs = crate::clock::now_ms() / 1000;
    let to = data_dir.join(format!("{CHECKPOINT_FILE}.corrupt-{secs}"));
    fs::rename(&from, &to)?;
    Ok(to)
}

/// Writes `entries` atomically: the file is replaced by a rename, so a reader (or a restart
/// after a kill -9) sees the old content or the new, never a mix.
///
/// Where an fsync is worth its cost: only when `durable`, at most once per [`DURABLE_EVERY`]
/// and at shutdown; then the new file's data is synced before the
/// rename and the directory after it, so a power cut leaves the last durable file or a newer
/// one. A kill -9 or an OOM kill keeps the page cache, so the writes between need no sync for
/// the crashes a sidecar meets. After a power cut one of them may be lost or, on file systems
/// that do not flush data on a rename (XFS; ext4 does with its default `auto_da_alloc`), left
/// empty: an empty file is moved aside as corrupt and the start resumes from the last durable
/// checkpoints, which every durable write also leaves in [`DURABLE_CHECKPOINT_FILE`]; so a
/// power cut can repeat lines, never lose them (about [`DURABLE_EVERY`] of them). An fsync
/// per write costs a quiet Pod a fifth more CPU (docs/performance.md, "Measurements behind the code").
pub fn store(data_dir: &Path, entries: &[Entry], durable: bool) -> Result<(), CheckpointError> {
    let body = serde_json::to_vec_pretty(&CheckpointFile {
        version: FORMAT_VERSION,
        files: entries.to_vec(),
    })
    .map_err(|e| CheckpointError::Write {
        path: data_dir.join(CHECKPOINT_FILE),
        source: io::Error::other(e),
    })?;
    replace(data_dir, CHECKPOINT_FILE, &body, durable)?;
    if durable {
        replace(data_dir, DURABLE_CHECKPOINT_FILE, &body, true)?;
    }
    Ok(())
}

/// Replaces `data_dir/name` with `body` through a temporary file and a rename; with `durable`,
/// the data is synced before the rename and the directory after it.
fn replace(data_dir: &Path, name: &str, body: &[u8], durable: bool) -> Result<(), CheckpointError> {
    let path = data_dir.join(name);
    let tmp = data_dir.join(format!("{name}.tmp"));
    let err = |source| CheckpointError::Write {
        path: path.clone(),
        source,
    };
    let mut f = File::create(&tmp).map_err(err)?;
    f.write_all(body).map_err(err)?;
    if durable {
        f.sync_data().map_err(err)?;
    }
    drop(f);
    fs::rename(&tmp, &path).map_err(err)?;
    if durable {
        File::open(data_dir)
            .and_then(|d| d.sync_all())
            .map_err(err)?;
    }
    Ok(())
}

/// Writes the checkpoints after changes (an accepted batch, a file opened or closed), one
/// write at a time: at most one per [`WRITE_SPACING`] while much is accepted (a batch's
/// worth since the last write), one per `interval` while little is; changes that come
/// meanwhile are taken by the next write. So a kill -9 repeats at most the batches in flight
/// and about a batch or `interval` of accepted lines. At most every [`DURABLE_EVERY`] (and
/// only when something changed) a write is made durable too (see [`store`]). Ends with
/// `stop`; the caller writes the last checkpoints itself.
pub async fn write_as_accepted(
    dir: PathBuf,
    tracker: Arc<Tracker>,
    metrics: Arc<Metrics>,
    delivery: Arc<DeliveryState>,
    interval: Duration,
    stop: CancellationToken,
) {
    let durable_every = DURABLE_EVERY.max(interval);
    let mut last_durable = Instant::now();
    // A durable write still owed for changes written without one.
    let mut durable_due: Option<Instant> = None;
    let mut last_write: Option<Instant> = None;
    loop {
        let durable = tokio::select! {
            _ = tracker.changed() => last_durable.elapsed() >= durable_every,
            _ = sleep_until(durable_due) => {
                tracker.mark_dirty();
                true
            }
            _ = stop.cancelled() => return,
        };
        // Paced after the change, not before the wait: a change long after the last write is
        // written at once, with no timer to wake for. While it waits, more accepted batches
        // may make the write due sooner.
        if let Some(at) = last_write {
            loop {
                let next = tracker.next_write_after(at, interval);
                if next <= Instant::now() {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => break,
                    _ = tracker.changed() => {}
                    _ = stop.cancelled() => return,
                }
            }
        }
        let Some(entries) = tracker.snapshot_if_dirty() else {
            continue;
        };
        last_write = Some(Instant::now());
        // A write without a sync is a few small system calls: done here, with no thread
        // woken for it; one with syncs waits for the disk, on a blocking thread.
        let stored = if durable {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || store(&dir, &entries, durable)).await
        } else {
            Ok(store(&dir, &entries, durable))
        };
        match stored {
            Ok(Ok(())) => {
                if delivery.set_checkpoints_unwritten(false) {
                    tracing::info!("checkpoints written again");
                }
                if durable {
                    last_durable = Instant::now();
                    durable_due = None;
                } else {
                    durable_due.get_or_insert(last_durable + durable_every);
                }
            }
            Ok(Err(e)) => {
                metrics.checkpoint_write_errors.inc();
                tracker.mark_dirty();
                // Said when it begins; shipping goes on, and the positions wait in memory.
                if delivery.set_checkpoints_unwritten(true) {
                    tracing::warn!(error = %e, "checkpoints cannot be written; shipping goes on with them kept in memory, written once the disk allows (a restart meanwhile repeats what was shipped since the last write)");
                }
                // Do not spin on a full disk: try again after the interval.
                tokio::select! {
                    _ = tokio::time::sleep(interval.max(WRITE_SPACING)) => {}
                    _ = stop.cancelled() => return,
                }
            }
            Err(e) => tracing::warn!(error = %e, "checkpoint write task failed"),
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

struct StreamAcks {
    id: DevIno,
    fingerprint: Fingerprint,
    path: String,
    /// Everything before this was accepted.
    done: u64,
    /// Accepted ranges beyond `done`, by start.
    ahead: BTreeMap<u64, u64>,
    /// Set when the reader closed the stream: its last byte. Forgotten once `done` reaches it.
    closed_at: Option<u64>,
    /// A later stream of the same file (after truncation) supersedes this one in the store.
    superseded: bool,
    /// What the reader last saw: its read position and the file's size (for status).
    read: u64,
    size: u64,
    /// Bytes at the end of what was read that need no event (see [`FileProgress::skipped`]).
    skipped: u64,
}

/// One file's progress, for metrics and `sidelog status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileProgress {
    pub path: String,
    /// The file's size: when the reader last looked at it, or larger when looked at again
    /// by [`Tracker::progress`] (a reader held back by a slow intake stops looking).
    pub size: u64,
    /// Bytes framed into batches.
    pub read: u64,
    /// Bytes the intake accepted (the checkpoint).
    pub accepted: u64,
    /// Bytes read after the last event that need none (skipped empty lines, events a rule
    /// excluded): the checkpoint moves past them only with the next event, but nothing is
    /// owed for them.
    #[serde(default)]
    pub skipped: u64,
}

impl FileProgress {
    /// The size `path` has now, when it still leads to the file `id` and has grown.
    fn size_now(path: &str, id: DevIno, known: u64) -> u64 {
        match std::fs::metadata(path) {
            Ok(m) if DevIno::of(&m) == id => known.max(m.len()),
            _ => known,
        }
    }

    /// Bytes in the file not yet accepted by the intake.
    pub fn lag(&self) -> u64 {
        self.size
            .saturating_sub(self.accepted)
            .saturating_sub(self.skipped)
    }
}

#[derive(Default)]
struct Inner {
    streams: HashMap<StreamId, StreamAcks>,
    /// Checkpoints loaded at startup whose file has not been opened yet (it may wait for a
    /// descriptor); written back unchanged so a restart does not forget them.
    carried: HashMap<DevIno, Entry>,
    dirty: bool,
    /// File bytes and events accepted since the entries were last taken to be written.
    unwritten_bytes: u64,
    unwritten_events: u64,
}

/// Accepted positions of every open stream, shared by the reader and the senders.
#[derive(Default)]
pub struct Tracker {
    inner: Mutex<Inner>,
    /// Rung whenever there is something new to write.
    changed: tokio::sync::Notify,
}

impl Tracker {
    pub fn new() -> Tracker {
        Tracker::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        crate::lock(&self.inner)
    }

    /// Keeps loaded checkpoints until their files are opened ([`Tracker::claim`]) or found gone.
    pub fn carry(&self, entries: Vec<Entry>) {
        let mut inner = self.lock();
        for e in entries {
            inner.carried.insert(
                DevIno {
                    dev: e.dev,
                    ino: e.inode,
                },
                e,
            );
        }
    }

    /// Takes the loaded checkpoint of a file about to be opened.
    pub fn claim(&self, id: DevIno) -> Option<Entry> {
        let mut inner = self.lock();
        let entry = inner.carried.remove(&id);
        if entry.is_some() {
            inner.dirty = true;
            self.changed.notify_one();
        }
        entry
    }

    /// The loaded checkpoints not yet claimed whose files are not among `existing`.
    pub fn carried_except(&self, existing: &std::collections::HashSet<DevIno>) -> Vec<Entry> {
        let inner = self.lock();
        inner
            .carried
            .iter()
            .filter(|(id, _)| !existing.contains(id))
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// Forgets loaded checkpoints of files that no longer exist.
    pub fn forget_carried_except(&self, existing: &std::collections::HashSet<DevIno>) {
        let mut inner = self.lock();
        let before = inner.carried.len();
        inner.carried.retain(|id, _| existing.contains(id));
        if inner.carried.len() != before {
            inner.dirty = true;
            self.changed.notify_one();
        }
    }

    /// A stream starts at `start` (its checkpoint, or 0, or its size for `read_from = end`).
    pub fn register(
        &self,
        stream: StreamId,
        id: DevIno,
        fingerprint: Fingerprint,
        path: &Path,
        start: u64,
    ) {
        let mut inner = self.lock();
        for s in inner.streams.values_mut() {
            if s.id == id {
                s.superseded = true;
            }
        }
        inner.streams.insert(
            stream,
            StreamAcks {
                id,
                fingerprint,
                path: path.display().to_string(),
                done: start,
                ahead: BTreeMap::new(),
                closed_at: None,
                superseded: false,
                read: start,
                size: start,
                skipped: 0,
            },
        );
        inner.dirty = true;
        self.changed.notify_one();
    }

    /// The reader's view of a stream: how far it has read, how large the file is, and how
    /// many bytes at the end of what it read need no event.
    pub fn observe(&self, stream: StreamId, read: u64, size: u64, skipped: u64) {
        if let Some(s) = self.lock().streams.get_mut(&stream) {
            s.read = read;
            s.size = size;
            s.skipped = skipped;
        }
    }

    /// Progress of every file being tailed, by path.
    /// Every open file's progress, sizes as the files have them now (a stat each, outside
    /// the lock): while the intake is down the reader stops reading, and a lag that stayed
    /// at what it last saw would hide the backlog from the alerts.
    pub fn progress(&self) -> Vec<FileProgress> {
        let streams: Vec<(DevIno, FileProgress)> = {
            let inner = self.lock();
            inner
                .streams
                .values()
                .filter(|s| !s.superseded)
                .map(|s| {
                    let p = FileProgress {
                        path: s.path.clone(),
                        size: s.size,
                        read: s.read,
                        accepted: s.done,
                        skipped: s.skipped,
                    };
                    (s.id, p)
                })
                .collect()
        };
        let mut out: Vec<FileProgress> = streams
            .into_iter()
            .map(|(id, mut p)| {
                p.size = FileProgress::size_now(&p.path, id, p.size);
                p
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }

    pub fn update_fingerprint(&self, stream: StreamId, fingerprint: Fingerprint) {
        if let Some(s) = self.lock().streams.get_mut(&stream) {
            s.fingerprint = fingerprint;
        }
    }

    pub fn update_path(&self, stream: StreamId, path: &Path) {
        let mut inner = self.lock();
        if let Some(s) = inner.streams.get_mut(&stream) {
            s.path = path.display().to_string();
            inner.dirty = true;
            self.changed.notify_one();
        }
    }

    /// The rest of `stream` is read from another file (copytruncate's copy of it): its
    /// checkpoint is that file's from now on.
    pub fn moved(&self, stream: StreamId, id: DevIno, fingerprint: Fingerprint, path: &Path) {
        let mut inner = self.lock();
        if let Some(s) = inner.streams.get_mut(&stream) {
            s.id = id;
            s.fingerprint = fingerprint;
            s.path = path.display().to_string();
            s.superseded = false;
            inner.dirty = true;
            self.changed.notify_one();
        }
    }

    /// The reader will send nothing more of `stream` beyond `last`.
    pub fn close(&self, stream: StreamId, last: u64) {
        let mut inner = self.lock();
        if let Some(s) = inner.streams.get_mut(&stream) {
            s.closed_at = Some(last);
        }
        inner.streams.retain(|_, s| !s.finished());
        inner.dirty = true;
        self.changed.notify_one();
    }

    /// Records that the intake accepted (or we deliberately gave up) these ranges, which
    /// held `events` events.
    pub fn ack(&self, marks: &[Mark], events: u64) {
        let mut inner = self.lock();
        let mut any_finished = false;
        inner.unwritten_bytes += marks.iter().map(|m| m.end - m.start).sum::<u64>();
        inner.unwritten_events += events;
        for m in marks {
            let Some(s) = inner.streams.get_mut(&m.stream) else {
                continue;
            };
            if m.start == s.done {
                s.done = m.end;
                while let Some(end) = s.ahead.remove(&s.done) {
                    s.done = end;
                }
            } else if m.start > s.done {
                s.ahead.insert(m.start, m.end);
            }
            any_finished |= s.finished();
        }
        if any_finished {
            inner.streams.retain(|_, s| !s.finished());
        }
        inner.dirty = true;
        self.changed.notify_one();
    }

    /// Whether a closed stream has been accepted to its last byte (and forgotten).
    pub fn is_settled(&self, stream: StreamId) -> bool {
        !self.lock().streams.contains_key(&stream)
    }

    /// The accepted position of a stream.
    pub fn position(&self, stream: StreamId) -> Option<u64> {
        self.lock().streams.get(&stream).map(|s| s.done)
    }

    /// The entries to store, if anything changed since the last call.
    pub fn snapshot_if_dirty(&self) -> Option<Vec<Entry>> {
        let mut inner = self.lock();
        if !inner.dirty {
            return None;
        }
        inner.dirty = false;
        inner.unwritten_bytes = 0;
        inner.unwritten_events = 0;
        Some(entries(&inner))
    }

    /// When the next write may come after `last_write`: [`WRITE_SPACING`] later once much was
    /// accepted since, `quiet_spacing` later while little was.
    pub fn next_write_after(&self, last_write: Instant, quiet_spacing: Duration) -> Instant {
        let inner = self.lock();
        if inner.unwritten_bytes >= BUSY_BYTES || inner.unwritten_events >= BUSY_EVENTS {
            last_write + WRITE_SPACING
        } else {
            last_write + quiet_spacing.max(WRITE_SPACING)
        }
    }

    /// Asks for the next [`Tracker::snapshot_if_dirty`] to return entries (after a failed write).
    pub fn mark_dirty(&self) {
        self.lock().dirty = true;
        self.changed.notify_one();
    }

    /// Waits until something changed since the last wait.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    pub fn snapshot(&self) -> Vec<Entry> {
        let mut inner = self.lock();
        inner.dirty = false;
        entries(&inner)
    }
}

impl StreamAcks {
    fn finished(&self) -> bool {
        self.closed_at.is_some_and(|last| self.done >= last)
    }
}

fn entries(inner: &Inner) -> Vec<Entry> {
    let mut out: Vec<Entry> = inner
        .streams
        .values()
        .filter(|s| !s.superseded)
        .map(|s| Entry {
            dev: s.id.dev,
            inode: s.id.ino,
            fingerprint: s.fingerprint,
            offset: s.done,
            path: s.path.clone(),
        })
        .chain(inner.carried.values().cloned())
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path).then(a.inode.cmp(&b.inode)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp() -> Fingerprint {
        Fingerprint { len: 4, hash: 9 }
    }

    fn mark(stream: u64, start: u64, end: u64) -> Mark {
        Mark {
            stream: StreamId(stream),
            start,
            end,
        }
    }

    #[test]
    fn writes_are_spaced_by_how_much_was_accepted() {
        let t = Tracker::new();
        let id = DevIno { dev: 1, ino: 2 };
        t.register(StreamId(1), id, fp(), Path::new("/a"), 0);
        let last = Instant::now();
        let quiet = Duration::from_secs(1);
        assert_eq!(
            t.next_write_after(last, quiet),
            last + quiet,
            "little accepted"
        );
        t.ack(&[mark(1, 0, BUSY_BYTES)], 10);
        assert_eq!(
            t.next_write_after(last, quiet),
            last + WRITE_SPACING,
            "many bytes"
        );
        assert!(t.snapshot_if_dirty().is_some());
        assert_eq!(
            t.next_write_after(last, quiet),
            last + quiet,
            "written: counted again"
        );
        t.ack(&[mark(1, BUSY_BYTES, BUSY_BYTES + 100)], BUSY_EVENTS);
        assert_eq!(
            t.next_write_after(last, quiet),
            last + WRITE_SPACING,
            "many events"
        );
    }

    #[test]
    fn position_never_jumps_a_hole() {
        let t = Tracker::new();
        let id = DevIno { dev: 1, ino: 2 };
        t.register(StreamId(1), id, fp(), Path::new("/a"), 100);
        t.ack(&[mark(1, 150, 200)], 1);
        assert_eq!(t.position(StreamId(1)), Some(100));
        t.ack(&[mark(1, 200, 260)], 1);
        assert_eq!(t.position(StreamId(1)), Some(100));
        t.ack(&[mark(1, 100, 150)], 1);
        assert_eq!(t.position(StreamId(1)), Some(260));
    }

    #[test]
    fn closed_stream_is_forgotten_once_accepted() {
        let t = Tracker::new();
        t.register(
            StreamId(1),
            DevIno { dev: 1, ino: 2 },
            fp(),
            Path::new("/a"),
            0,
        );
        t.close(StreamId(1), 10);
        assert_eq!(t.snapshot().len(), 1);
        t.ack(&[mark(1, 0, 10)], 1);
        assert!(t.snapshot().is_empty());
    }

    #[test]
    fn carried_checkpoints_are_kept_until_claimed_or_gone() {
        let t = Tracker::new();
        let entry = |ino| Entry {
            dev: 1,
            inode: ino,
            fingerprint: fp(),
            offset: 5,
            path: format!("/f{ino}"),
        };
        t.carry(vec![entry(1), entry(2), entry(3)]);
        assert_eq!(t.snapshot().len(), 3);
        assert_eq!(t.claim(DevIno { dev: 1, ino: 2 }), Some(entry(2)));
        t.register(
            StreamId(9),
            DevIno { dev: 1, ino: 2 },
            fp(),
            Path::new("/f2"),
            5,
        );
        assert_eq!(t.snapshot().len(), 3);
        t.forget_carried_except(&[DevIno { dev: 1, ino: 1 }].into_iter().collect());
        let left: Vec<u64> = t.snapshot().iter().map(|e| e.inode).collect();
        assert_eq!(left, vec![1, 2]);
    }

    #[test]
    fn store_is_atomic_and_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(load(dir.path()).expect("empty").is_empty());
        let t = Tracker::new();
        t.register(
            StreamId(1),
            DevIno { dev: 1, ino: 2 },
            fp(),
            Path::new("/a"),
            42,
        );
        store(dir.path(), &t.snapshot(), true).expect("store");
        let back = load(dir.path()).expect("load");
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].offset, 42);
        assert!(!dir.path().join("checkpoints.json.tmp").exists());
    }

    #[test]
    fn format_is_pinned() {
        let entry = Entry {
            dev: 1,
            inode: 2,
            fingerprint: fp(),
            offset: 3,
            path: "/a".into(),
        };
        let text = serde_json::to_string(&CheckpointFile {
            version: 1,
            files: vec![entry],
        })
        .expect("json");
        assert_eq!(
            text,
            r#"{"version":1,"files":[{"dev":1,"inode":2,"fingerprint":{"len":4,"hash":9},"offset":3,"path":"/a"}]}"#
        );
    }

    fn entry(offset: u64) -> Entry {
        Entry {
            dev: 1,
            inode: 2,
            fingerprint: fp(),
            offset,
            path: "/a".into(),
        }
    }

    #[test]
    fn an_unusable_file_falls_back_on_the_last_durable_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        assert!(!resume(d).unknown, "nothing yet: a first start");
        store(d, &[entry(10)], true).expect("durable");
        store(d, &[entry(20)], false).expect("not durable");
        assert_eq!(resume(d).entries, [entry(20)]);
        // A power cut between durable writes left the current file empty.
        fs::write(d.join(CHECKPOINT_FILE), b"").expect("empty");
        let r = resume(d);
        assert_eq!(r.entries, [entry(10)], "the last durable one");
        assert!(!r.unknown && r.written_at.is_some());
        // Both unusable: nothing is known to have been shipped.
        fs::write(d.join(CHECKPOINT_FILE), b"{").expect("corrupt");
        fs::write(d.join(DURABLE_CHECKPOINT_FILE), b"{").expect("corrupt");
        let r = resume(d);
        assert!(r.unknown && r.entries.is_empty());
    }

    #[test]
    fn corrupt_file_is_reported_and_moved_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(CHECKPOINT_FILE), b"{not json").expect("write");
        let err = load(dir.path()).expect_err("corrupt");
        assert!(err.to_string().contains("corrupt"), "{err}");
        let aside = move_aside(dir.path()).expect("move");
        assert!(aside.exists());
        assert!(load(dir.path()).expect("now empty").is_empty());
    }
}
