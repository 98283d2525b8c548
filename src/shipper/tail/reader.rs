//! One file's reader: its descriptor, identity, read position and what has become of it
//! (still named, renamed away or deleted, truncated, closed to save a descriptor).
//!
//! The reader knows nothing of batches, checkpoints or other files: [`FileReader::poll`]
//! looks at the file and reads what is new into a buffer it is given, and
//! [`FileReader::advance`] is told how much of it was framed into whole lines. A file whose
//! name stops leading to it is an *orphan*: it is still read through the open descriptor. A
//! file that shrinks below the read position, or whose first bytes change, was *truncated*:
//! the caller restarts it from 0 ([`FileReader::restart`]).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::confine::{Confinement, OpenError};
use crate::position::{DevIno, FINGERPRINT_BYTES, Fingerprint};

/// How many of the bytes just before the read position [`EndMark`] covers.
const END_MARK_BYTES: usize = 64;

/// What one look at a file found.
#[derive(Debug)]
pub(crate) enum Poll {
    /// `n` new bytes, from the read position, are at the start of the buffer; `at_end`:
    /// they reach the end of the file as it is now.
    Data { n: usize, at_end: bool },
    /// Read to the end of what is there.
    CaughtUp,
    /// Shorter than what was read, or no longer starting with the bytes it started with.
    Truncated,
    /// No descriptor: closed to stay under the budget.
    Closed,
    /// The stat or the read failed.
    Failed(io::Error),
}

/// What [`FileReader::advance`] made of a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// More may be there: read again in the next turn.
    More,
    /// At the end of what is there (a partial last line may remain).
    CaughtUp,
    /// A line longer than the buffer: read again with a buffer of at least this many bytes.
    NeedBuffer(usize),
}

pub(crate) struct FileReader {
    /// The name it was last found under.
    path: PathBuf,
    /// `None` while closed to stay under `tail.max_open_files`.
    file: Option<File>,
    id: DevIno,
    fingerprint: Fingerprint,
    /// Next byte to read: the start of the first line not yet framed.
    pos: u64,
    /// The next bytes continue a line that was cut (too long for one event).
    continued: bool,
    /// Size when last looked at.
    size: u64,
    /// When the size was last seen to change (or the file was opened).
    last_change: Instant,
    /// When data was last read.
    last_read: Instant,
    /// Read to the end of what is there.
    caught_up: bool,
    /// When its name stopped leading to it (renamed away or deleted).
    orphaned_at: Option<Instant>,
    /// A wider fingerprint was taken and not yet collected by [`FileReader::take_widened`].
    widened: bool,
    /// The bytes just before `pos`: what tells copytruncate's copy of this file from other
    /// files that start the same way.
    end_mark: EndMark,
    /// Where it may be opened (again).
    confinement: Arc<Confinement>,
}

/// A hash of the `len` bytes of a file that end at the read position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct EndMark {
    len: u8,
    hash: u64,
}

impl EndMark {
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn of(bytes: &[u8]) -> EndMark {
        let tail = &bytes[bytes.len().saturating_sub(END_MARK_BYTES)..];
        EndMark {
            len: tail.len() as u8,
            hash: crate::position::fnv1a(tail),
        }
    }

    /// Whether `file` holds these bytes just before `pos`.
    pub(crate) fn found_in(&self, file: &File, pos: u64) -> bool {
        let len = u64::from(self.len);
        let Some(start) = pos.checked_sub(len) else {
            return false;
        };
        let mut buf = [0u8; END_MARK_BYTES];
        let buf = &mut buf[..self.len as usize];
        file.read_exact_at(buf, start).is_ok() && EndMark::of(buf) == *self
    }
}

impl FileReader {
    /// Opens `path` (where `confinement` allows) with its identity and size; reading starts
    /// at [`FileReader::start_at`].
    pub(crate) fn open(
        path: &Path,
        confinement: &Arc<Confinement>,
    ) -> Result<FileReader, OpenError> {
        let file = confinement.open(path)?;
        Ok(FileReader::of(path, file, confinement)?)
    }

    /// A reader of `file`, opened (through `confinement`) at `path`.
    pub(crate) fn of(
        path: &Path,
        file: File,
        confinement: &Arc<Confinement>,
    ) -> io::Result<FileReader> {
        let meta = file.metadata()?;
        let fingerprint = Fingerprint::of(&file, FINGERPRINT_BYTES)?;
        let now = Instant::now();
        Ok(FileReader {
            path: path.to_path_buf(),
            id: DevIno::of(&meta),
            size: meta.len(),
            file: Some(file),
            fingerprint,
            pos: 0,
            continued: false,
            last_change: now,
            last_read: now,
            caught_up: false,
            orphaned_at: None,
            widened: false,
            end_mark: EndMark::default(),
            confinement: confinement.clone(),
        })
    }

    pub(crate) fn start_at(&mut self, pos: u64) {
        self.pos = pos;
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn id(&self) -> DevIno {
        self.id
    }

    pub(crate) fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    pub(crate) fn pos(&self) -> u64 {
        self.pos
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    pub(crate) fn continued(&mut self) -> &mut bool {
        &mut self.continued
    }

    pub(crate) fn is_open(&self) -> bool {
        self.file.is_some()
    }

    pub(crate) fn is_caught_up(&self) -> bool {
        self.caught_up
    }

    pub(crate) fn last_read(&self) -> Instant {
        self.last_read
    }

    /// The file as it is now (for checks of its first bytes).
    pub(crate) fn file(&self) -> Option<&File> {
        self.file.as_ref()
    }

    /// Whether it has not grown for `quiet`.
    pub(crate) fn quiet_for(&self, quiet: Duration) -> bool {
        self.last_change.elapsed() >= quiet
    }

    pub(crate) fn is_orphan(&self) -> bool {
        self.orphaned_at.is_some()
    }

    pub(crate) fn orphaned_at(&self) -> Option<Instant> {
        self.orphaned_at
    }

    /// Its name no longer leads to it: it is read to its end through the descriptor.
    pub(crate) fn leave_name(&mut self) {
        if self.orphaned_at.is_none() {
            let now = Instant::now();
            self.orphaned_at = Some(now);
            self.last_change = now;
        }
    }

    /// Found again under its name.
    pub(crate) fn named(&mut self) {
        self.orphaned_at = None;
    }

    /// Found under another name (renamed while tailed); `orphan` if that name is not one of
    /// ours.
    pub(crate) fn renamed(&mut self, to: PathBuf, orphan: bool) {
        self.path = to;
        if orphan {
            self.leave_name();
        }
    }

    /// Whether `path` currently names this file.
    pub(crate) fn named_by(&self, path: &Path) -> bool {
        std::fs::metadata(path).is_ok_and(|m| DevIno::of(&m) == self.id)
    }

    /// A last line without newline is framed as it is only when nothing more can come: its
    /// file left its name and has been quiet for `linger`.
    pub(crate) fn finished(&self, linger: Duration) -> bool {
        self.is_orphan() && self.quiet_for(linger)
    }

    /// Gives the descriptor back (the budget is full); identity and position stay.
    pub(crate) fn close(&mut self) {
        self.file = None;
    }

    /// Takes a descriptor again: the file at its last name if it is still this file (same
    /// identity and first bytes), else this file in the same directory under another name.
    /// False when it cannot be found.
    pub(crate) fn reopen(&mut self) -> bool {
        let c = &self.confinement;
        let found = open_if(&self.path, self.id, self.fingerprint, c)
            .map(|f| (self.path.clone(), f))
            .or_else(|| find_in_dir(&self.path, self.id, self.fingerprint, c));
        let Some((at, file)) = found else {
            return false;
        };
        if at != self.path {
            tracing::debug!(from = %self.path.display(), to = %at.display(), "closed file was renamed; reading it to its end");
            self.path = at;
            self.leave_name();
        }
        self.file = Some(file);
        true
    }

    /// A wider fingerprint taken since the last call (the file grew past the old one).
    pub(crate) fn take_widened(&mut self) -> Option<Fingerprint> {
        std::mem::take(&mut self.widened).then_some(self.fingerprint)
    }

    /// Looks at the file and reads what is new into `buf`.
    pub(crate) fn poll(&mut self, buf: &mut [u8]) -> Poll {
        let Some(file) = self.file.as_ref() else {
            return Poll::Closed;
        };
        let size = match file.metadata() {
            Ok(m) => m.len(),
            Err(e) => return Poll::Failed(e),
        };
        // Truncated: shorter than what was read, or (after copytruncate and new writes) no
        // longer starting with the bytes it started with. The first bytes are checked when a
        // file read to its end has grown, so a fast file pays it once per catch-up, not per
        // read, and while reading within them (a file truncated before its first read). The
        // size seen before is kept until the restart: what was not read of it is what the
        // truncation took.
        if size < self.pos
            || ((self.caught_up || self.pos < u64::from(self.fingerprint.len))
                && self.fingerprint.len > 0
                && !self.fingerprint.matches(file).unwrap_or(true))
        {
            return Poll::Truncated;
        }
        if size != self.size {
            self.size = size;
            self.last_change = Instant::now();
        }
        if !self.fingerprint.is_complete()
            && size > self.fingerprint.len as u64
            && let Ok(fp) = Fingerprint::of(file, FINGERPRINT_BYTES)
        {
            self.fingerprint = fp;
            self.widened = true;
        }
        if size == self.pos {
            self.caught_up = true;
            return Poll::CaughtUp;
        }
        // No further than the size just seen: a read that only finds the end costs a system
        // call per turn, and whatever is written after the stat brings its own file event.
        let want = buf
            .len()
            .min(usize::try_from(size - self.pos).unwrap_or(usize::MAX));
        match read_full(file, &mut buf[..want], self.pos) {
            Ok(0) => Poll::CaughtUp,
            Ok(n) => {
                self.last_read = Instant::now();
                Poll::Data {
                    n,
                    at_end: self.pos + n as u64 >= size,
                }
            }
            Err(e) => Poll::Failed(e),
        }
    }

    /// The mark of the bytes just before the read position (empty when nothing was framed
    /// since the reader started where it is).
    pub(crate) fn end_mark(&self) -> EndMark {
        self.end_mark
    }

    /// The bytes just framed (they end at the new read position, after
    /// [`FileReader::advance`]): kept as a mark to find this content in a copy.
    pub(crate) fn framed(&mut self, consumed: &[u8]) {
        if !consumed.is_empty() {
            self.end_mark = EndMark::of(consumed);
        }
    }

    /// `consumed` of the `n` bytes just read (into a buffer of `buf_len`) were framed.
    pub(crate) fn advance(
        &mut self,
        consumed: usize,
        n: usize,
        buf_len: usize,
        min_buffer: usize,
    ) -> Progress {
        self.pos += consumed as u64;
        let full_read = n == buf_len;
        if consumed == 0 && full_read && buf_len < min_buffer {
            return Progress::NeedBuffer(min_buffer);
        }
        if !full_read || consumed == 0 {
            // At the end of what is there (or only an unfinished line): wait for more.
            self.caught_up = true;
            Progress::CaughtUp
        } else {
            self.caught_up = false;
            Progress::More
        }
    }

    /// After a truncation: copytruncate's copy of the content that was truncated, in the same
    /// directory, opened: a regular file other than this one that starts with this file's
    /// first bytes and holds the bytes read last just before the read position (the newest
    /// such file, should several). The rest of the old content is read from it. `None` when
    /// there is none (or nothing was read to know it by).
    pub(crate) fn copy_of_truncated(&self) -> Option<(PathBuf, File)> {
        // No mark when nothing was framed since the reader started there (a checkpoint):
        // the first bytes and the length then tell the copy.
        let of = CopyOf {
            id: self.id,
            fingerprint: self.fingerprint,
            pos: self.pos,
            mark: (self.pos > 0 && self.end_mark.len > 0).then_some(self.end_mark),
            made_since: None,
        };
        find_copy(&self.path, &of, &self.confinement)
    }

    /// A reader of copytruncate's copy of this file's content, from where this reader is:
    /// it reads the rest to the copy's end, then the copy is closed (it has no name of ours).
    pub(crate) fn continued_in(&self, path: PathBuf, file: File) -> io::Result<FileReader> {
        let mut copy = FileReader::of(&path, file, &self.confinement)?;
        copy.pos = self.pos;
        copy.continued = self.continued;
        copy.end_mark = self.end_mark;
        copy.leave_name();
        Ok(copy)
    }

    /// After a truncation: the content starts again at 0, with a new fingerprint.
    pub(crate) fn restart(&mut self) {
        self.fingerprint = self
            .file
            .as_ref()
            .and_then(|f| Fingerprint::of(f, FINGERPRINT_BYTES).ok())
            .unwrap_or(Fingerprint { len: 0, hash: 0 });
        self.size = self.current_size();
        self.last_change = Instant::now();
        self.pos = 0;
        self.continued = false;
        self.caught_up = false;
        self.end_mark = EndMark::default();
    }

    /// Whether the open file is, now, as its last read left it: the same size, the same first
    /// bytes (not truncated and rewritten to that size), and still linked (a deleted file
    /// cannot be opened again). A stat and a short read: asked only before closing a file.
    pub(crate) fn unchanged_since_read(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        self.file.as_ref().is_some_and(|f| {
            f.metadata()
                .is_ok_and(|m| m.len() == self.size && m.nlink() > 0)
                && self.fingerprint.matches(f).unwrap_or(false)
        })
    }

    /// Whether the open file still has a name (renamed, not deleted): it can be found and
    /// written to again.
    pub(crate) fn is_linked(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        self.file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .is_some_and(|m| m.nlink() > 0)
    }

    /// The size now (the last one seen when the file is closed).
    pub(crate) fn current_size(&self) -> u64 {
        self.file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(self.size, |m| m.len())
    }
}

/// Where to resume a file that has a checkpoint: there, if the checkpoint is of this file
/// (its first bytes match) and the file is still that long; from its start otherwise (an
/// inode reused by another file, or a file truncated while sidelog was stopped). The last
/// part says whether the checkpoint was of this content.
pub(crate) fn resume_position(
    checkpoint: Fingerprint,
    offset: u64,
    file: &File,
    size: u64,
) -> (u64, &'static str, bool) {
    if !checkpoint.matches(file).unwrap_or(false) {
        return (
            0,
            "checkpoint belongs to earlier content of this inode (truncated, or another file); reading from the start",
            false,
        );
    }
    if offset > size {
        return (
            0,
            "file shrank while stopped; reading from its start",
            false,
        );
    }
    (offset, "resuming", true)
}

/// Opens `path` if it is the file `id` and still starts with `fingerprint`'s bytes.
pub(crate) fn open_if(
    path: &Path,
    id: DevIno,
    fingerprint: Fingerprint,
    confinement: &Confinement,
) -> Option<File> {
    let file = confinement.open(path).ok()?;
    let meta = file.metadata().ok()?;
    (DevIno::of(&meta) == id && fingerprint.matches(&file).unwrap_or(false)).then_some(file)
}

/// Looks for the file `id` among the entries of `path`'s directory (where a rotated file
/// usually goes). A file that was empty has no fingerprint to tell it from another that got
/// its inode (a copy made by copytruncate, say): under another name, it is never found.
pub(crate) fn find_in_dir(
    path: &Path,
    id: DevIno,
    fingerprint: Fingerprint,
    confinement: &Confinement,
) -> Option<(PathBuf, File)> {
    if fingerprint.len == 0 {
        return None;
    }
    siblings(path)?
        .filter(|(_, ino)| *ino == id.ino)
        .find_map(|(p, _)| open_if(&p, id, fingerprint, confinement).map(|f| (p, f)))
}

/// The names in `path`'s directory, with their inodes: where rotation leaves a file's other
/// names and its copies.
fn siblings(path: &Path) -> Option<impl Iterator<Item = (PathBuf, u64)>> {
    use std::os::unix::fs::DirEntryExt;
    let entries = std::fs::read_dir(path.parent()?).ok()?;
    Some(entries.flatten().map(|e| (e.path(), e.ino())))
}

/// What tells copytruncate's copy of a file's content from other files.
#[derive(Clone, Copy)]
pub(crate) struct CopyOf {
    /// The file that was truncated (the copy is another one).
    pub id: DevIno,
    /// The content's first bytes.
    pub fingerprint: Fingerprint,
    /// How far the content was read: the copy is at least this long.
    pub pos: u64,
    /// The bytes just before `pos`, when known.
    pub mark: Option<EndMark>,
    /// The copy was made since then (while sidelog was down: the checkpoints' time).
    pub made_since: Option<std::time::SystemTime>,
}

/// copytruncate's copy of the content the file at `path` had: a regular file in the same
/// directory, other than that file, that starts with the content's first bytes, is long
/// enough and, with a mark, holds the bytes read last at the same place; the newest, should
/// several. `None` without a fingerprint to know it by.
pub(crate) fn find_copy(
    path: &Path,
    of: &CopyOf,
    confinement: &Confinement,
) -> Option<(PathBuf, File)> {
    let CopyOf {
        id,
        fingerprint,
        pos,
        mark,
        made_since,
    } = *of;
    if fingerprint.len == 0 {
        return None;
    }
    siblings(path)?
        .filter(|(_, ino)| *ino != id.ino)
        .filter_map(|(path, _)| {
            let meta = std::fs::metadata(&path).ok()?;
            let recent = made_since.is_none_or(|t| meta.modified().is_ok_and(|m| m >= t));
            (meta.is_file() && meta.len() >= pos && recent).then_some((path, meta))
        })
        .filter_map(|(path, meta)| {
            let file = confinement.open(&path).ok()?;
            let same = DevIno::of(&file.metadata().ok()?) != id
                && fingerprint.matches(&file).unwrap_or(false)
                && mark.is_none_or(|m| m.found_in(&file, pos));
            same.then(|| (meta.modified().ok(), path, file))
        })
        .max_by_key(|(modified, _, _)| *modified)
        .map(|(_, path, file)| (path, file))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A log file in a fresh directory, and a writer that appends to it like an app.
    struct Log {
        dir: tempfile::TempDir,
        path: PathBuf,
        writer: File,
    }

    impl Log {
        fn new(content: &[u8]) -> Log {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("app.log");
            let mut writer = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .expect("create");
            writer.write_all(content).expect("write");
            Log { dir, path, writer }
        }

        fn append(&mut self, bytes: &[u8]) {
            self.writer.write_all(bytes).expect("append");
        }

        fn other(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }
    }

    /// Reads everything there is, framing whole lines the way the tailer does (a partial
    /// last line stays unread), and returns the whole lines read.
    fn read_lines(r: &mut FileReader) -> Vec<String> {
        let mut buf = vec![0u8; 64];
        let mut lines = Vec::new();
        loop {
            match r.poll(&mut buf) {
                Poll::Data { n, .. } => {
                    let data = &buf[..n];
                    let consumed = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                    lines.extend(
                        String::from_utf8_lossy(&data[..consumed])
                            .lines()
                            .map(str::to_string),
                    );
                    r.framed(&data[..consumed]);
                    if r.advance(consumed, n, buf.len(), 64) != Progress::More {
                        return lines;
                    }
                }
                Poll::CaughtUp => return lines,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    fn numbered(from: usize, to: usize) -> Vec<u8> {
        (from..to)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect()
    }

    fn expect(from: usize, to: usize) -> Vec<String> {
        (from..to).map(|i| format!("line {i}")).collect()
    }

    #[test]
    fn reads_what_is_new_and_waits_for_a_partial_last_line() {
        let mut log = Log::new(b"one\ntwo\nthr");
        let mut r = FileReader::open(&log.path, &Confinement::anywhere()).expect("open");
        assert_eq!(read_lines(&mut r), vec!["one", "two"]);
        assert_eq!(r.pos(), 8, "the partial line is not passed");
        assert!(r.is_caught_up());
        log.append(b"ee\n");
        assert_eq!(read_lines(&mut r), vec!["three"]);
        assert_eq!(read_lines(&mut r), Vec::<String>::new());
    }

    #[test]
    fn rotation_by_rename_keeps_reading_the_old_file() {
        let mut log = Log::new(&numbered(0, 10));
        let mut r = FileReader::open(&log.path, &Confinement::anywhere()).expect("open");
        assert_eq!(read_lines(&mut r), expect(0, 10));
        let rotated = log.other("app.log.1");
        std::fs::rename(&log.path, &rotated).expect("rename");
        // The app writes on through its descriptor before it reopens.
        log.append(&numbered(10, 15));
        assert!(!r.named_by(&log.path), "the name no longer leads to it");
        r.leave_name();
        assert_eq!(read_lines(&mut r), expect(10, 15));
        assert!(r.is_orphan());
    }

    #[test]
    fn rotation_by_create_leaves_the_new_file_to_a_new_reader() {
        let mut log = Log::new(&numbered(0, 5));
        let mut old = FileReader::open(&log.path, &Confinement::anywhere()).expect("open");
        assert_eq!(read_lines(&mut old), expect(0, 5));
        std::fs::rename(&log.path, log.other("app.log.1")).expect("rename");
        std::fs::write(&log.path, numbered(100, 103)).expect("create");
        log.append(&numbered(5, 7));
        assert!(!old.named_by(&log.path));
        let mut new = FileReader::open(&log.path, &Confinement::anywhere()).expect("open new");
        assert_ne!(new.id(), old.id());
        assert_eq!(read_lines(&mut old), expect(5, 7));
        assert_eq!(read_lines(&mut new), expect(100, 103));
    }

    #[test]
    fn copytruncate_is_seen_as_truncation() {
        let log = Log::new(&numbered(0, 10));
        let mut r = FileReader::open(&log.path, &Confinement::anywhere()).expect("open");
        read_lines(&mut r);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log.path)
            .expect("open")
            .set_len(0)
            .expect("truncate");
        std::fs::write(&log.path, b"x\n").expect("write");
        let mut buf = vec![0u8; 64];
        assert!(matches!(r.poll(&mut buf), Poll::Truncated));
        r.restart();
        assert_eq!(r.pos(), 0);
        assert_eq!(read_lines(&mut r), vec!["x"]);
    }

    #[test]
    fn truncated_and_rewritten_past_the_position_is_caught_by_the_first_bytes() {
        let log = Log::new(&numbered(0, 3));
        let mut r = FileReader::open(&log.path, &Confinement::anywhere()).expect("open");
        read_lines(&mut r);
        // Truncated and rewritten longer than before, before the reader looked: only the
        // first bytes tell.
        std::fs::write(&log.path, numbered(500, 600)).expect("rewrite");
        let mut buf = vec![0u8; 64];
        assert!(matches!(r.poll(&mut buf), Poll::Truncated));
        r.restart();
        assert_eq!(read_lines(&mut r), expect(500, 600));
    }

    #[test]
    fn a_deleted_file_is_read_to_its_end() {
        let mut log = Log::new(&numbered(0, 3));
        let mut r = FileReader::open(&log.path, &Confinement::anywhere()).expect("open");
        std::fs::remove_file(&log.path).expect("delete");
        log.append(&numbered(3, 6));
        assert!(!r.named_by(&log.path));
        r.leave_name();
        assert_eq!(read_lines(&mut r), expect(0, 6));
        assert!(
            !r.finished(Duration::from_secs(60)),
            "not quiet for long yet"
        );
        assert!(r.finished(Duration::ZERO));
    }

    #[test]
    fn a_reused_inode_does_not_inherit_the_old_files_checkpoint() {
        let log = Log::new(b"first file's content\n");
        let old = FileReader::open(&log.path, &Confinement::anywhere()).expect("open");
        let checkpoint = (old.fingerprint(), 21);
        drop(old);
        // Same inode or not, what decides is the content: another file now has this name.
        std::fs::write(&log.path, b"another file entirely, longer than the first\n")
            .expect("rewrite");
        let file = File::open(&log.path).expect("open");
        let size = file.metadata().expect("stat").len();
        assert_eq!(
            resume_position(checkpoint.0, checkpoint.1, &file, size).0,
            0
        );
        // The same file resumes where it was; a file that shrank starts over.
        std::fs::write(&log.path, b"first file's content\nmore\n").expect("write");
        let file = File::open(&log.path).expect("open");
        assert_eq!(resume_position(checkpoint.0, 21, &file, 26).0, 21);
        assert_eq!(resume_position(checkpoint.0, 40, &file, 26).0, 0);
    }

    #[test]
    fn a_fast_file_gets_one_buffer_per_turn() {
        let fast = Log::new(&numbered(0, 10_000));
        let slow = Log::new(b"the slow file's line\n");
        let mut rf = FileReader::open(&fast.path, &Confinement::anywhere()).expect("open");
        let mut rs = FileReader::open(&slow.path, &Confinement::anywhere()).expect("open");
        let mut buf = vec![0u8; 4096];
        // One turn: each file gets one read of at most one buffer.
        let Poll::Data { n, at_end } = rf.poll(&mut buf) else {
            panic!("data");
        };
        assert_eq!(n, 4096);
        assert!(!at_end);
        let consumed = buf[..n]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        assert_eq!(rf.advance(consumed, n, buf.len(), 4096), Progress::More);
        assert!(matches!(
            rs.poll(&mut buf),
            Poll::Data {
                n: 21,
                at_end: true
            }
        ));
    }

    #[test]
    fn a_closed_file_is_found_again_after_a_rename() {
        let log = Log::new(&numbered(0, 3));
        let mut r = FileReader::open(&log.path, &Confinement::anywhere()).expect("open");
        read_lines(&mut r);
        r.close();
        assert!(matches!(r.poll(&mut [0u8; 8]), Poll::Closed));
        std::fs::rename(&log.path, log.other("app.log.1")).expect("rename");
        assert!(r.reopen());
        assert_eq!(r.path(), log.other("app.log.1"));
        assert!(r.is_orphan());
        std::fs::remove_file(log.other("app.log.1")).expect("delete");
        r.close();
        assert!(!r.reopen(), "gone for good");
    }

    /// Found by the model check: a closed empty file matched any file that got its inode,
    /// and a copytruncate copy was read again as if it were the empty file renamed.
    #[test]
    fn a_closed_empty_file_is_not_taken_for_another_name() {
        let log = Log::new(b"");
        let mut r = FileReader::open(&log.path, &Confinement::anywhere()).expect("open");
        read_lines(&mut r);
        r.close();
        std::fs::rename(&log.path, log.other("copy.log.1")).expect("rename");
        assert!(
            !r.reopen(),
            "nothing tells it from another file with its inode"
        );
    }

    #[test]
    fn a_line_longer_than_the_buffer_asks_for_a_bigger_one() {
        let log = Log::new(&[b'x'; 100]);
        let mut r = FileReader::open(&log.path, &Confinement::anywhere()).expect("open");
        let mut buf = vec![0u8; 64];
        assert!(matches!(r.poll(&mut buf), Poll::Data { n: 64, .. }));
        assert_eq!(r.advance(0, 64, 64, 256), Progress::NeedBuffer(256));
    }
}
