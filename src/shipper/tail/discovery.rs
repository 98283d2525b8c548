//! What the reader knows of the files it looks for but does not read: the directory watches,
//! the files left alone under `ignore_older_secs` (with their size then), and the files it
//! could not open (each reported once). The tailer asks it what a scan finds and whether a
//! file is left alone; the files being read are the file table's (`table`).

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::InputRuntime;
use super::confine::OpenError;
use super::wake::Watches;
use crate::metrics::Metrics;
use crate::position::DevIno;

pub(super) struct Discovery {
    /// The inotify watches of the inputs' directories (the reader waits on their descriptor).
    pub watches: Watches,
    /// Files skipped for `ignore_older_secs`, with their size then: if one is written again,
    /// only what is new is read.
    ignored: HashMap<DevIno, u64>,
    /// Files that could not be opened, reported once until they can be.
    unreadable: HashSet<PathBuf>,
    /// Names the globs match that are not regular files (a directory where a log file
    /// was), reported once until they are.
    not_regular: HashSet<PathBuf>,
    /// Names the globs match whose real path is outside the included directories (a link
    /// out of the log volume), reported once while they stay so.
    outside: HashSet<PathBuf>,
}

/// A regular file a scan found.
pub(super) struct ScannedFile {
    pub path: PathBuf,
    pub input: usize,
    pub meta: std::fs::Metadata,
}

impl Discovery {
    pub(super) fn start(file_events: bool) -> Discovery {
        Discovery {
            watches: Watches::start(file_events),
            ignored: HashMap::new(),
            unreadable: HashSet::new(),
            not_regular: HashSet::new(),
            outside: HashSet::new(),
        }
    }

    /// Every regular file the inputs' globs match now, with its metadata; the inputs' root
    /// directories are watched first (a root may appear later).
    pub(super) fn scan(&mut self, inputs: &[InputRuntime], metrics: &Metrics) -> Vec<ScannedFile> {
        self.watches
            .ensure(inputs.iter().flat_map(|i| i.matcher.roots.iter()));
        let mut paths = Vec::new();
        let mut found = Vec::new();
        for (input, i) in inputs.iter().enumerate() {
            i.matcher.scan(&mut paths);
            for path in paths.drain(..) {
                if let Some(meta) = self.stat(&path, metrics) {
                    found.push(ScannedFile { path, input, meta });
                }
            }
        }
        found
    }

    /// The metadata of a regular file at `path`; `None` for anything else (reported once and
    /// counted), or when it cannot be read (reported unless it is simply gone).
    pub(super) fn stat(&mut self, path: &Path, metrics: &Metrics) -> Option<std::fs::Metadata> {
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => {
                if !self.not_regular.is_empty() {
                    self.not_regular.remove(path);
                }
                Some(m)
            }
            Ok(m) => {
                if self.not_regular.insert(path.to_path_buf()) {
                    let kind = if m.is_dir() {
                        "a directory"
                    } else {
                        "not a file"
                    };
                    tracing::warn!(path = %path.display(), kind, "not a regular file; skipping it while it is not one");
                    metrics.files_not_regular.inc();
                }
                None
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    self.unreadable(path, &e);
                }
                None
            }
        }
    }

    /// Whether a file is left alone: last modified before `ignore_older` when first found,
    /// or not grown since.
    pub(super) fn leaves_alone(
        &mut self,
        path: &Path,
        ignore_older: Option<Duration>,
        meta: &std::fs::Metadata,
        metrics: &Metrics,
    ) -> bool {
        let id = DevIno::of(meta);
        if let Some(age) = ignore_older
            && !self.ignored.contains_key(&id)
            && meta
                .modified()
                .ok()
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|elapsed| elapsed > age)
        {
            tracing::info!(path = %path.display(), "not reading file last modified before ignore_older_secs");
            metrics.files_ignored_old.inc();
            self.ignored.insert(id, meta.len());
            return true;
        }
        self.ignored
            .get(&id)
            .is_some_and(|&size| meta.len() == size)
    }

    /// A file left alone is read after all (it grew): from the size it had then.
    pub(super) fn no_longer_left_alone(&mut self, id: DevIno) -> Option<u64> {
        self.ignored.remove(&id)
    }

    /// `path` could be opened: a later failure is reported again.
    pub(super) fn opened(&mut self, path: &Path) {
        self.unreadable.remove(path);
        if !self.outside.is_empty() {
            self.outside.remove(path);
        }
    }

    /// `path` was not opened: outside the included directories (said once and counted
    /// while it stays so), not a regular file, or unreadable.
    pub(super) fn refused(&mut self, path: &Path, why: OpenError, metrics: &Metrics) {
        match why {
            OpenError::Outside { real } => {
                if self.outside.insert(path.to_path_buf()) {
                    tracing::warn!(path = %path.display(), real = %real.display(), "not reading a file whose real path is outside the included directories (a link out of the log volume); skipping it while it stays so");
                    metrics.files_outside.inc();
                }
            }
            OpenError::NotRegular => {
                if self.not_regular.insert(path.to_path_buf()) {
                    tracing::warn!(path = %path.display(), kind = "not a file", "not a regular file; skipping it while it is not one");
                    metrics.files_not_regular.inc();
                }
            }
            OpenError::Io(e) => self.unreadable(path, &e),
        }
    }

    /// `path` cannot be read: said once, until it can.
    pub(super) fn unreadable(&mut self, path: &Path, e: &io::Error) {
        if self.unreadable.insert(path.to_path_buf()) {
            tracing::warn!(path = %path.display(), error = %e, "cannot read file; skipping it until it becomes readable");
        }
    }
}
