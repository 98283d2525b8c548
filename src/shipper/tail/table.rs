//! The file table: every file being tailed, found by its key, its identity or its name; the
//! descriptor budget (`tail.max_open_files`) with its least-recently-read eviction; and the
//! files waiting for a descriptor. It holds no policy about what to read when: the scheduler
//! in [`super`] decides, the table keeps the indexes consistent.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};

use super::reader::FileReader;
use crate::encode::EventTemplate;
use crate::position::{DevIno, StreamId};
use crate::process::Grouping;

/// A file's key in the table: stable for as long as the file is tailed, whatever happens to
/// its name or its content (a truncation starts a new [`StreamId`] under the same key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct FileKey(u64);

/// One file being tailed: its reader and what its events need.
pub(crate) struct Tailed {
    pub reader: FileReader,
    /// The checkpoint tracker's name for the current content of the file.
    pub stream: StreamId,
    pub input: usize,
    pub template: EventTemplate,
    /// Start of the bytes not yet covered by any event (skipped lines are covered by the
    /// next event).
    pub covered: u64,
    /// May have data to read.
    pub active: bool,
    /// The multi-line event being assembled (inputs with `multiline` only).
    pub grouping: Option<Grouping>,
}

impl Tailed {
    /// Bytes read after the last event that need no event of their own (skipped or
    /// excluded lines). Lines held in a pending multi-line event are owed, so none then.
    pub fn skipped_tail(&self) -> u64 {
        if self.grouping.as_ref().is_some_and(|g| !g.is_empty()) {
            return 0;
        }
        self.reader.pos().saturating_sub(self.covered)
    }

    /// Open, read to its end, still named, nothing to read: may give its descriptor back.
    fn evictable(&self) -> bool {
        self.reader.is_open()
            && !self.reader.is_orphan()
            && !self.active
            && self.reader.is_caught_up()
    }
}

/// A file waiting for a descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Waiting {
    New {
        path: PathBuf,
        input: usize,
        startup: bool,
    },
    Reopen(FileKey),
}

pub(crate) struct FileTable {
    files: BTreeMap<FileKey, Tailed>,
    by_id: HashMap<DevIno, FileKey>,
    by_path: HashMap<PathBuf, FileKey>,
    next_key: u64,
    /// Descriptors held.
    open: usize,
    max_open: usize,
    waiting: VecDeque<Waiting>,
}

impl FileTable {
    pub(crate) fn new(max_open: usize) -> FileTable {
        FileTable {
            files: BTreeMap::new(),
            by_id: HashMap::new(),
            by_path: HashMap::new(),
            next_key: 1,
            open: 0,
            max_open,
            waiting: VecDeque::new(),
        }
    }

    pub(crate) fn get(&self, key: FileKey) -> Option<&Tailed> {
        self.files.get(&key)
    }

    pub(crate) fn get_mut(&mut self, key: FileKey) -> Option<&mut Tailed> {
        self.files.get_mut(&key)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (FileKey, &Tailed)> {
        self.files.iter().map(|(k, t)| (*k, t))
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (FileKey, &mut Tailed)> {
        self.files.iter_mut().map(|(k, t)| (*k, t))
    }

    pub(crate) fn files(&self) -> impl Iterator<Item = &Tailed> {
        self.files.values()
    }

    pub(crate) fn by_id(&self, id: DevIno) -> Option<FileKey> {
        self.by_id.get(&id).copied()
    }

    pub(crate) fn by_path(&self, path: &Path) -> Option<FileKey> {
        self.by_path.get(path).copied()
    }

    /// Adds a file just opened (it holds a descriptor).
    pub(crate) fn insert(&mut self, t: Tailed) -> FileKey {
        let key = FileKey(self.next_key);
        self.next_key += 1;
        self.by_id.insert(t.reader.id(), key);
        self.by_path.insert(t.reader.path().to_path_buf(), key);
        if t.reader.is_open() {
            self.open += 1;
        }
        self.files.insert(key, t);
        key
    }

    /// Takes a file out of the table and its indexes.
    pub(crate) fn remove(&mut self, key: FileKey) -> Option<Tailed> {
        let t = self.files.remove(&key)?;
        if self.by_id.get(&t.reader.id()) == Some(&key) {
            self.by_id.remove(&t.reader.id());
        }
        self.by_path.retain(|_, k| *k != key);
        self.waiting.retain(|w| *w != Waiting::Reopen(key));
        if t.reader.is_open() {
            self.open -= 1;
        }
        Some(t)
    }

    /// `path` no longer leads to the file `key`.
    pub(crate) fn unname(&mut self, path: &Path, key: FileKey) {
        if self.by_path.get(path) == Some(&key) {
            self.by_path.remove(path);
        }
    }

    /// `path` leads to the file `key` (found, or found again, under it).
    pub(crate) fn name(&mut self, path: &Path, key: FileKey) {
        self.by_path.insert(path.to_path_buf(), key);
    }

    /// Whether a descriptor can be taken without closing another.
    pub(crate) fn has_room(&self) -> bool {
        self.open < self.max_open
    }

    #[cfg(test)]
    fn open_count(&self) -> usize {
        self.open
    }

    /// Closes the least recently read file that may give its descriptor back, other than
    /// `except`; returns its name. `None` when no file can be closed. A file is looked at
    /// before it is closed: one that grew since its last read, or that was deleted, keeps
    /// its descriptor and is marked to be read (its file event may not have been handled
    /// yet: closed now, what it still holds would be out of reach once its name is gone).
    pub(crate) fn evict_one(&mut self, except: Option<FileKey>) -> Option<PathBuf> {
        loop {
            let victim = self
                .files
                .iter()
                .filter(|(k, t)| t.evictable() && Some(**k) != except)
                .min_by_key(|(_, t)| t.reader.last_read())
                .map(|(k, _)| *k)?;
            let t = self.files.get_mut(&victim)?;
            if !t.reader.unchanged_since_read() {
                t.active = true;
                continue;
            }
            t.reader.close();
            self.open -= 1;
            return Some(t.reader.path().to_path_buf());
        }
    }

    /// Opens the descriptor of a closed file again (found under its name or a new one).
    /// False when it is gone.
    pub(crate) fn reopen(&mut self, key: FileKey) -> bool {
        let Some(t) = self.files.get_mut(&key) else {
            return false;
        };
        let before = t.reader.path().to_path_buf();
        if !t.reader.reopen() {
            return false;
        }
        self.open += 1;
        let now = t.reader.path().to_path_buf();
        if now != before {
            self.unname(&before, key);
        }
        true
    }

    pub(crate) fn wait_new(&mut self, path: &Path, input: usize, startup: bool) {
        if !self.waiting_for(path) {
            self.waiting.push_back(Waiting::New {
                path: path.to_path_buf(),
                input,
                startup,
            });
        }
    }

    pub(crate) fn wait_reopen(&mut self, key: FileKey) {
        if !self.waiting.contains(&Waiting::Reopen(key)) {
            self.waiting.push_back(Waiting::Reopen(key));
        }
    }

    /// Whether a file not tailed yet waits under `path`.
    pub(crate) fn waiting_for(&self, path: &Path) -> bool {
        self.waiting
            .iter()
            .any(|w| matches!(w, Waiting::New { path: p, .. } if p == path))
    }

    pub(crate) fn next_waiting(&self) -> Option<&Waiting> {
        self.waiting.front()
    }

    pub(crate) fn take_waiting(&mut self) -> Option<Waiting> {
        self.waiting.pop_front()
    }

    pub(crate) fn nothing_waits(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::EventFields;

    fn tailed(dir: &Path, name: &str) -> Tailed {
        let path = dir.join(name);
        std::fs::write(&path, b"a line\n").expect("write");
        let mut reader =
            FileReader::open(&path, &super::super::confine::Confinement::anywhere()).expect("open");
        let mut buf = [0u8; 64];
        // Read to the end, as a caught-up file is.
        while let super::super::reader::Poll::Data { n, .. } = reader.poll(&mut buf) {
            reader.advance(n, n, buf.len(), 64);
        }
        Tailed {
            reader,
            stream: StreamId(1),
            input: 0,
            template: EventTemplate::new(&EventFields {
                status: "info",
                hostname: "h",
                service: "s",
                source: "src",
                tags: "",
            }),
            covered: 0,
            active: false,
            grouping: None,
        }
    }

    #[test]
    fn indexes_follow_inserts_renames_and_removals() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut table = FileTable::new(8);
        let t = tailed(dir.path(), "a.log");
        let id = t.reader.id();
        let key = table.insert(t);
        assert_eq!(table.by_id(id), Some(key));
        assert_eq!(table.by_path(&dir.path().join("a.log")), Some(key));
        table.unname(&dir.path().join("a.log"), key);
        assert_eq!(table.by_path(&dir.path().join("a.log")), None);
        table.name(&dir.path().join("b.log"), key);
        assert_eq!(table.open_count(), 1);
        table.wait_reopen(key);
        assert!(table.remove(key).is_some());
        assert_eq!(
            (table.by_id(id), table.by_path(&dir.path().join("b.log"))),
            (None, None)
        );
        assert_eq!(table.open_count(), 0);
        assert!(table.nothing_waits(), "a removed file no longer waits");
    }

    #[test]
    fn the_least_recently_read_caught_up_file_gives_its_descriptor_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut table = FileTable::new(2);
        let older = table.insert(tailed(dir.path(), "old.log"));
        std::thread::sleep(std::time::Duration::from_millis(5));
        let newer = table.insert(tailed(dir.path(), "new.log"));
        assert!(!table.has_room());
        if let Some(t) = table.get_mut(newer) {
            t.active = true;
        }
        // Never the one excepted, never one with something to read.
        assert_eq!(table.evict_one(Some(older)), None);
        assert_eq!(table.evict_one(None), Some(dir.path().join("old.log")));
        assert!(table.has_room());
        assert!(
            !table.get(older).expect("kept").reader.is_open(),
            "identity kept, closed"
        );
        assert!(table.reopen(older));
        assert_eq!(table.open_count(), 2);
    }

    /// Found by the model check: a file written and deleted in one batch of file events
    /// lost its lines when a new file took its descriptor before the events were handled.
    #[test]
    fn a_file_that_changed_since_its_read_keeps_its_descriptor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut table = FileTable::new(3);
        let grown = table.insert(tailed(dir.path(), "grown.log"));
        let deleted = table.insert(tailed(dir.path(), "deleted.log"));
        let rewritten = table.insert(tailed(dir.path(), "rewritten.log"));
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("grown.log"))
            .expect("open");
        std::io::Write::write_all(&mut f, b"unread\n").expect("append");
        std::fs::remove_file(dir.path().join("deleted.log")).expect("delete");
        // Truncated and written again to the very size it had: only its first bytes tell.
        std::fs::write(dir.path().join("rewritten.log"), b"b line\n").expect("rewrite");
        assert_eq!(table.evict_one(None), None);
        for key in [grown, deleted, rewritten] {
            let t = table.get(key).expect("kept");
            assert!(t.reader.is_open() && t.active, "kept open, to be read");
        }
        assert_eq!(table.open_count(), 3);
    }

    #[test]
    fn files_wait_once_for_a_descriptor() {
        let mut table = FileTable::new(1);
        let p = Path::new("/logs/a.log");
        table.wait_new(p, 0, true);
        table.wait_new(p, 0, true);
        assert!(table.waiting_for(p));
        assert!(matches!(table.take_waiting(), Some(Waiting::New { .. })));
        assert!(table.nothing_waits());
    }
}
